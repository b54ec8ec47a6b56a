//! Agents: which configured program plays which role, how its argv is built, and how its output
//! is read (verdicts, usage). Running it is the pipeline's job (`pipeline::step`).

pub mod activity;
pub mod json_scan;
pub mod risk_answer;
pub mod text;
pub mod usage;
pub mod verdict;

use std::path::{Path, PathBuf};

use crate::config::AgentEntry;

use crate::config::AgentSpec;
use crate::preset::Role;

use crate::config::CommandSpec;

use crate::config::LoadedConfig;
use crate::error::Error;
use crate::error::Result;

/// One way to run an agent for a role: a preset expanded, or the config's argv.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub argv: Vec<String>,
    pub timeout: Option<std::time::Duration>,
    pub env: std::collections::BTreeMap<String, String>,
    pub max_prompt_bytes: Option<u64>,
    pub session_start: Vec<String>,
    pub session_resume: Vec<String>,
    /// The preset it came from, if any.
    pub preset: Option<&'static str>,
    /// The CLI names its sessions: `{session}` in the resume flags is the id its output gave.
    pub names_sessions: Option<crate::preset::SessionIdIn>,
    /// The resume flags go before a trailing `{prompt}`.
    pub resume_before_prompt: bool,
    /// A resumed session reports the usage of the whole session.
    pub usage_of_whole_session: bool,
}

impl Candidate {
    /// The config entry made concrete for a role (a preset's argv depends on the role).
    pub fn for_role(spec: &AgentSpec, role: Role) -> Candidate {
        let own_flags = spec.session_start.is_some() || spec.session_resume.is_some();
        let found = match spec.command.get_ref() {
            CommandSpec::Preset(name) => crate::preset::find(name),
            CommandSpec::Argv(_) => None,
        };
        // Session flags of the config's own replace the preset's, ids and all.
        let preset_sessions = found.filter(|_| !own_flags);
        let (argv, preset, start, resume) = match spec.command.get_ref() {
            CommandSpec::Argv(v) => (v.clone(), None, Vec::new(), Vec::new()),
            CommandSpec::Preset(name) => match crate::preset::find(name) {
                Some(p) => (
                    p.argv(role),
                    Some(p.name),
                    p.session_start.iter().map(|s| (*s).to_owned()).collect(),
                    p.session_resume.iter().map(|s| (*s).to_owned()).collect(),
                ),
                None => (vec![name.clone()], None, Vec::new(), Vec::new()),
            },
        };
        Candidate {
            argv,
            timeout: spec.timeout,
            env: spec.env.clone(),
            max_prompt_bytes: spec.max_prompt_bytes,
            session_start: spec.session_start.clone().unwrap_or(start),
            session_resume: spec.session_resume.clone().unwrap_or(resume),
            preset,
            names_sessions: preset_sessions.and_then(|p| p.names_sessions),
            resume_before_prompt: preset_sessions.is_some_and(|p| p.resume_before_prompt),
            usage_of_whole_session: preset_sessions.is_some_and(|p| p.usage_of_whole_session),
        }
    }

    pub fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }
}

/// The agent chosen for a role: the config entry's name and its candidates whose program exists.
#[derive(Debug, Clone)]
pub struct RoleAgent {
    pub role: Role,
    /// The `[agents.<name>]` key it came from.
    pub name: String,
    pub candidates: Vec<Candidate>,
    /// Programs of configured candidates that are not installed.
    pub missing: Vec<String>,
}

impl RoleAgent {
    /// Each candidate as an agent of its own (discovery runs them all): `name`, `name#2`...
    pub fn each(&self) -> Vec<RoleAgent> {
        self.candidates
            .iter()
            .enumerate()
            .map(|(i, c)| RoleAgent {
                role: self.role,
                name: if i == 0 {
                    self.name.clone()
                } else {
                    format!("{}#{}", self.name, i + 1)
                },
                candidates: vec![c.clone()],
                missing: Vec::new(),
            })
            .collect()
    }

    /// The first candidate whose prompt limit fits `prompt_bytes`.
    pub fn pick(&self, prompt_bytes: usize) -> Option<(usize, &Candidate)> {
        self.candidates.iter().enumerate().find(|(_, c)| {
            c.max_prompt_bytes
                .is_none_or(|max| prompt_bytes as u64 <= max)
        })
    }
}

/// Parse `--agent ROLE=NAME` overrides.
pub fn parse_overrides(items: &[String]) -> Result<Vec<(Role, String)>> {
    items
        .iter()
        .map(|item| {
            let (role, name) = item.split_once('=').ok_or_else(|| {
                Error::usage(format!(
                    "--agent {item:?}: expected ROLE=NAME, e.g. builder=codex"
                ))
            })?;
            let role = Role::parse(role.trim()).ok_or_else(|| {
                Error::usage(format!(
                    "--agent {item:?}: unknown role {role:?}; roles: {}",
                    Role::ALL.map(Role::name).join(", ")
                ))
            })?;
            Ok((role, name.trim().to_owned()))
        })
        .collect()
}

/// The agent configured for `role` (or named by an override), with the candidates whose program
/// is installed. `Ok(None)` when the role has no agent.
pub fn resolve(
    loaded: &LoadedConfig,
    role: Role,
    overrides: &[(Role, String)],
    search_dir: &Path,
) -> Result<Option<RoleAgent>> {
    let (name, explicit) = match overrides.iter().rev().find(|(r, _)| *r == role) {
        Some((_, n)) => (n.clone(), true),
        None => (role.name().to_owned(), false),
    };
    let Some(AgentEntry(list)) = loaded.config.agents.get(&name) else {
        if explicit {
            let known: Vec<_> = loaded.config.agents.keys().cloned().collect();
            return Err(Error::usage_hint(
                format!(
                    "unknown agent {name:?} for role {}; configured agents: {}",
                    role.name(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
                format!("add [agents.{name}] to .pipeline.toml or to your personal config"),
            ));
        }
        return Ok(None);
    };
    let mut missing = Vec::new();
    let mut candidates = Vec::new();
    for spec in list {
        let c = Candidate::for_role(spec, role);
        if find_program(c.program(), search_dir).is_some() {
            candidates.push(c);
        } else {
            missing.push(c.program().to_owned());
        }
    }
    if candidates.is_empty() {
        return Err(Error::usage_hint(
            format!(
                "agent {name:?} ({}): program {} not found",
                role.name(),
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "install it or put it on PATH, or point agents.<name>.command at it",
        ));
    }
    Ok(Some(RoleAgent {
        role,
        name,
        candidates,
        missing,
    }))
}

/// Find a program the way `execvp` would: as given when it holds a `/` (relative to `dir`),
/// else on `PATH`.
pub fn find_program(program: &str, dir: &Path) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let p = dir.join(program);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
