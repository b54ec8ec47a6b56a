//! `.pipeline.toml` (project policy, read from the base commit) and the personal config (which
//! agent CLIs this person has). Every key is documented in `docs/config.md`.

pub mod gates;
pub mod load;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use load::{LoadedConfig, Source, load, personal_config_path};

pub const PROJECT_FILE: &str = ".pipeline.toml";
/// Agents and gates that do not say otherwise are stopped after this long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: Option<Spanned<i64>>,
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub scope: ScopeConfig,
    #[serde(default)]
    pub agents: BTreeMap<String, AgentEntry>,
    #[serde(default)]
    pub gates: Vec<GateConfig>,
    /// `[[setup]]`: commands that prepare a worktree before its gates (`npm ci`), run again
    /// only when their `when_changed` files differ from the last time in that worktree slot.
    #[serde(default)]
    pub setup: Vec<SetupConfig>,
    #[serde(default)]
    pub verify: VerifyConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub risk: RiskConfig,
    #[serde(default)]
    pub push: PushConfig,
    #[serde(default)]
    pub plan: PlanConfig,
    #[serde(default)]
    pub docs: DocsConfig,
    #[serde(default)]
    pub containment: ContainmentConfig,
    #[serde(default)]
    pub sandbox: SandboxConfig,
    #[serde(default)]
    pub attest: AttestConfig,
    #[serde(default)]
    pub ship: ShipConfig,
}

/// `[attest]`: how attestations are written (docs/attestations.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttestConfig {
    pub sign: SignMode,
    /// Also write an Agent Trace record of the shipped commit on `refs/notes/agent-trace`.
    pub agent_trace: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignMode {
    /// Sign when git's own signing is set up (`user.signingKey`).
    #[default]
    Auto,
    Off,
}

/// `[ship]`: what a shipped commit carries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShipConfig {
    /// Trailers added to the commit message besides `Pipeline-Run` (only `Assisted-by` is known).
    pub trailers: Vec<Trailer>,
}

impl Default for ShipConfig {
    fn default() -> Self {
        ShipConfig {
            trailers: vec![Trailer::AssistedBy],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Trailer {
    /// `Assisted-by: <agent>:<model or CLI version>`, one per agent that changed the files.
    #[serde(rename = "Assisted-by")]
    AssistedBy,
}

/// `[sandbox]`: what a sandboxed step may write besides what every run needs (docs/security.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// More folders (absolute, or `~/...`) agents and gates may write: a tool's state or cache.
    pub writable: Vec<String>,
    /// Gates may open TCP connections and listen (`false`: none, where the kernel can say so).
    pub network: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            writable: Vec::new(),
            network: true,
        }
    }
}

/// `[sandbox]` of the personal config: only folders of this person's own tools.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalSandbox {
    #[serde(default)]
    pub writable: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainmentConfig {
    /// Fail the run when the user's checkout changes while an agent or gate runs.
    pub checkout: bool,
    /// Fail the run when the repository's config, hooks or info/ (or the effective git config)
    /// change while an agent or gate runs.
    pub git_dir: bool,
    /// Fail the run when refs other than its own change while an agent or gate runs.
    pub refs: bool,
}

impl Default for ContainmentConfig {
    fn default() -> Self {
        ContainmentConfig {
            checkout: true,
            git_dir: true,
            refs: true,
        }
    }
}

/// `$XDG_CONFIG_HOME/git-pipeline/config.toml`: only what belongs to a person, not a project.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalConfig {
    pub version: Option<Spanned<i64>>,
    #[serde(default)]
    pub agents: BTreeMap<String, AgentEntry>,
    #[serde(default)]
    pub sandbox: PersonalSandbox,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub base: String,
    pub branch_prefix: String,
    pub worktree_root: String,
    pub ship: ShipMode,
    pub keep_failed: bool,
    pub include: Vec<String>,
    pub archive_days: u32,
    /// Run agents and gates in the OS sandbox: `auto`, `required` or `off`.
    pub sandbox: crate::sandbox::Mode,
    /// Worktree slots kept for reuse (`<worktree_root>/slot-<n>`), so that build caches survive
    /// from one run to the next; 0: a new worktree for every run.
    pub max_slots: u32,
    /// Ignored folders a slot keeps between runs (gitignore patterns: `/target/`,
    /// `node_modules/`); unset: chosen by the project's files (docs/config.md).
    pub caches: Option<Vec<String>>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            base: "HEAD".to_owned(),
            branch_prefix: "pipeline/".to_owned(),
            worktree_root: String::new(),
            ship: ShipMode::Branch,
            keep_failed: false,
            include: Vec::new(),
            archive_days: 30,
            sandbox: crate::sandbox::Mode::Auto,
            max_slots: 4,
            caches: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShipMode {
    /// Commit on the run branch, remove the worktree, keep the branch.
    #[default]
    Branch,
    /// Also fast-forward the base branch when that is safe.
    Merge,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    pub allow: Option<Vec<Spanned<String>>>,
    pub create: Option<Vec<Spanned<String>>>,
    pub deny: Option<Vec<Spanned<String>>>,
}

/// An `[agents.<name>]` entry: one table, or an array of tables (candidates in order).
#[derive(Debug, Clone)]
pub struct AgentEntry(pub Vec<AgentSpec>);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub command: Spanned<CommandSpec>,
    #[serde(default, with = "duration_opt")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub max_prompt_bytes: Option<u64>,
    /// Arguments appended the first time this agent uses a session id in a run...
    pub session_start: Option<Vec<String>>,
    /// ...and on every later use (e.g. `["--resume", "{session}"]`).
    pub session_resume: Option<Vec<String>>,
}

/// An agent's command: an argv template, or the name of a built-in preset (`"claude"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSpec {
    Argv(Vec<String>),
    Preset(String),
}

impl CommandSpec {
    /// As it reads in the config, for messages.
    pub fn describe(&self) -> String {
        match self {
            CommandSpec::Argv(v) => v.join(" "),
            CommandSpec::Preset(p) => format!("preset {p}"),
        }
    }
}

impl<'de> Deserialize<'de> for CommandSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CommandVisitor;
        impl<'de> Visitor<'de> for CommandVisitor {
            type Value = CommandSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an argv list (e.g. [\"claude\", \"-p\", \"{prompt}\"]) or a preset name (e.g. \"claude\")")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CommandSpec, E> {
                Ok(CommandSpec::Preset(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CommandSpec, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(CommandSpec::Argv)
            }
        }
        d.deserialize_any(CommandVisitor)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    pub name: Spanned<String>,
    /// The program and its arguments; empty for a builtin gate.
    #[serde(default = "no_command")]
    pub command: Spanned<Vec<String>>,
    /// A gate git-pipeline runs itself: `"duplicates"` (src/gates/).
    #[serde(default)]
    pub builtin: Option<Spanned<String>>,
    /// `duplicates`: tokens a repeat must span (default 50).
    #[serde(default)]
    pub min_tokens: Option<usize>,
    /// `duplicates`: lines a repeat must span (default 5).
    #[serde(default)]
    pub min_lines: Option<u32>,
    /// `duplicates`: languages looked at (default: every one it knows).
    #[serde(default)]
    pub languages: Vec<String>,
    /// `duplicates`: globs of paths never looked at.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// `duplicates`: `"auto"` (jscpd 5.x when on PATH, else in-process), `"builtin"`, `"jscpd"`.
    #[serde(default)]
    pub engine: Option<String>,
    #[serde(default, with = "duration_opt")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Runs one at a time across every run of the repository (a shared database, a fixed
    /// port): other runs wait for it.
    #[serde(default)]
    pub exclusive: bool,
    /// The gate edits files (a formatter): its edits become part of the change, scope-checked
    /// again. Without it, a gate that changes files fails.
    #[serde(default)]
    pub fixes: bool,
}

/// A `[[setup]]` step: like a command gate, but it prepares the worktree (it may write ignored
/// files only) and is skipped while its `when_changed` files are what they were the last time it
/// succeeded in the same slot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupConfig {
    pub name: Spanned<String>,
    pub command: Spanned<Vec<String>>,
    /// Globs of files (from the repository root) whose content decides whether it runs again;
    /// empty: it runs before the gates of every run.
    #[serde(default)]
    pub when_changed: Vec<String>,
    #[serde(default, with = "duration_opt")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl SetupConfig {
    /// As a command gate, which is how it runs (sandbox, environment, timeout, output).
    pub fn as_gate(&self) -> GateConfig {
        GateConfig {
            name: self.name.clone(),
            command: self.command.clone(),
            builtin: None,
            min_tokens: None,
            min_lines: None,
            languages: Vec::new(),
            ignore: Vec::new(),
            engine: None,
            timeout: self.timeout,
            env: self.env.clone(),
            exclusive: false,
            fixes: false,
        }
    }
}

fn no_command() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

impl GateConfig {
    /// What the gate runs, for people: its command line, or `builtin NAME`.
    pub fn describe(&self) -> String {
        match &self.builtin {
            Some(b) => format!("builtin {}", b.get_ref()),
            None => self.command.get_ref().join(" "),
        }
    }

    /// The program it starts; `None` for a builtin gate.
    pub fn program(&self) -> Option<&str> {
        if self.builtin.is_some() {
            return None;
        }
        self.command.get_ref().first().map(String::as_str)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    pub max_rounds: u32,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig { max_rounds: 2 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    /// Plan review rounds before the run stops with exit 2.
    pub max_rounds: u32,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig { max_rounds: 2 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocsConfig {
    /// Changed paths that make the docs agent run (public surface).
    pub when: Vec<Spanned<String>>,
    /// The only paths the docs agent may change.
    pub paths: Vec<Spanned<String>>,
}

fn spanned(list: &[&str]) -> Vec<Spanned<String>> {
    list.iter()
        .map(|s| Spanned::new(0..0, (*s).to_owned()))
        .collect()
}

impl Default for DocsConfig {
    fn default() -> Self {
        DocsConfig {
            when: spanned(&["src/**/lib.rs", "docs/**", "*.toml", "*.yaml", "*.yml"]),
            paths: spanned(&["CHANGELOG.md", "README.md", "docs/**"]),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_fix_attempts: u32,
    pub max_same_error: u32,
    pub oscillation: bool,
    /// Bytes of each agent's and gate's stdout and stderr kept (the end); the cut is marked.
    pub output_bytes: u64,
    /// The longest task accepted, in bytes (argument, stdin or --task-file).
    pub max_task_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_fix_attempts: 3,
            max_same_error: 2,
            oscillation: true,
            output_bytes: 4 * 1024 * 1024,
            max_task_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    pub high: Vec<String>,
    pub medium: Vec<String>,
    pub low: Vec<String>,
    /// Words that say nothing about risk ("the", "fix", "file"): a low-risk task may use them.
    pub neutral: Vec<String>,
    /// A low-risk task whose scope covers more existing files than this is medium.
    pub max_files_low: usize,
    /// A medium-risk task whose scope covers more existing files than this is high.
    pub max_files_medium: usize,
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            high: words(&[
                // Access and secrets.
                "auth",
                "oauth",
                "authori",
                "authenti",
                "login",
                "session",
                "token",
                "jwt",
                "security",
                "secret",
                "credential",
                "crypt",
                "passw",
                "permission",
                "sudo",
                "privilege",
                "cert",
                "tls",
                "ssl",
                "sanitiz",
                "inject",
                // Data and money.
                "migrat",
                "database",
                "schema",
                "sql",
                "data",
                "backup",
                "payment",
                "billing",
                "invoice",
                "prod",
                "production",
                // Destructive verbs.
                "drop",
                "delete",
                "truncate",
                "wipe",
                "purge",
                "destroy",
                "erase",
            ]),
            medium: words(&[
                "api",
                "endpoint",
                "refactor",
                "config",
                "dependenc",
                "upgrade",
                "performance",
                "concurren",
                "thread",
                "async",
                "cache",
                "deploy",
                "release",
                "build",
                "ci",
                "remove",
                "replace",
                "rewrite",
                "move",
            ]),
            low: words(&[
                "typo",
                "comment",
                "docs",
                "readme",
                "rename",
                "format",
                "wording",
                "spelling",
                "grammar",
                "whitespace",
                "indentation",
                "changelog",
                "docstring",
                "lint",
            ]),
            neutral: words(&[
                "a",
                "an",
                "the",
                "in",
                "on",
                "of",
                "for",
                "to",
                "and",
                "or",
                "with",
                "by",
                "at",
                "from",
                "into",
                "this",
                "that",
                "these",
                "those",
                "it",
                "its",
                "is",
                "are",
                "be",
                "all",
                "some",
                "any",
                "each",
                "our",
                "my",
                "your",
                "their",
                "so",
                "as",
                "up",
                "out",
                "not",
                "no",
                "please",
                "fix",
                "fixes",
                "fixed",
                "correct",
                "update",
                "improve",
                "tidy",
                "clean",
                "small",
                "minor",
                "simple",
                "file",
                "files",
                "line",
                "lines",
                "text",
                "message",
                "messages",
                "word",
                "words",
                "sentence",
                "paragraph",
                "title",
                "heading",
                "section",
                "page",
                "example",
                "examples",
                "link",
                "links",
                "md",
                "txt",
                "again",
            ]),
            max_files_low: 10,
            max_files_medium: 200,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    pub branches: Vec<String>,
    /// The pre-push hook (and `verify`) refuse attestations without a valid signature.
    pub require_signature: bool,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            branches: vec!["*".to_owned()],
            require_signature: false,
        }
    }
}

impl<'de> Deserialize<'de> for AgentEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = AgentEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an agent table or an array of agent tables")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AgentEntry, A::Error> {
                AgentSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|a| AgentEntry(vec![a]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<AgentEntry, A::Error> {
                let list =
                    Vec::<AgentSpec>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                if list.is_empty() {
                    return Err(de::Error::custom("an agent list needs at least one entry"));
                }
                Ok(AgentEntry(list))
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// Durations such as `90s`, `5m`, `1h`.
mod duration_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// A duration in the config that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {text:?} ({why}); write it like \"90s\", \"5m\" or \"1h\"")]
    Unreadable { text: String, why: String },
    #[error("invalid duration {text:?}: it must be more than zero")]
    Zero { text: String },
}

pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| DurationError::Unreadable {
        text: text.to_owned(),
        why: e.to_string(),
    })?;
    if d.is_zero() {
        return Err(DurationError::Zero {
            text: text.to_owned(),
        });
    }
    Ok(d)
}
