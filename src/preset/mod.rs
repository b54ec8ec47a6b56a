//! Built-in agent presets: `command = "claude"` instead of an argv. Each preset runs its CLI
//! headless with the prompt, in the current folder (the run's worktree), and has two forms:
//! roles that edit files (builder, docs) and roles that must only read (verifier, reviewer,
//! planner, discovery), using the CLI's own read-only mode where it has one. git-pipeline's
//! read-only checks hold either way.
//!
//! Written against the versions in [`Preset::version`], whose `--help` was read on 2026-11-21
//! (goose excepted: not installable here; written from its documentation). See docs/agents.md.

use serde::Serialize;

pub mod argv;
pub mod version;

/// What an agent is asked to do in a run; each preset has an argv per role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Builder,
    Verifier,
    Planner,
    Reviewer,
    Discovery,
    Docs,
    Router,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Builder,
        Role::Verifier,
        Role::Planner,
        Role::Reviewer,
        Role::Discovery,
        Role::Docs,
        Role::Router,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Builder => "builder",
            Role::Verifier => "verifier",
            Role::Planner => "planner",
            Role::Reviewer => "reviewer",
            Role::Discovery => "discovery",
            Role::Docs => "docs",
            Role::Router => "router",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

pub struct Preset {
    pub name: &'static str,
    /// The CLI version the argv was written against.
    pub version: &'static str,
    pub edit: &'static [&'static str],
    pub read_only: &'static [&'static str],
    /// Appended the first time a session id is used by this agent in a run, and on later uses.
    pub session_start: &'static [&'static str],
    pub session_resume: &'static [&'static str],
    pub notes: &'static str,
    /// The CLI's own sandbox flag and the value that turns it off: inside git-pipeline's sandbox
    /// its own cannot start (bubblewrap needs mounts, which Landlock refuses; Seatbelt does not
    /// nest), so ours holds instead, read-only roles included.
    pub own_sandbox: Option<(&'static str, &'static str)>,
    /// The CLI names its sessions itself (git-pipeline cannot choose the id): where its output
    /// says which one it started, to resume on the next attempt.
    pub names_sessions: Option<SessionIdIn>,
    /// The resume flags go before the prompt (`codex exec … resume <id> <prompt>`).
    pub resume_before_prompt: bool,
    /// A resumed session reports the usage of the whole session, not of this call (codex).
    pub usage_of_whole_session: bool,
}

/// Where a CLI's output names the session it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionIdIn {
    /// codex's `--json`: `{"type":"thread.started","thread_id":"…"}`.
    CodexThread,
    /// opencode's `--format json`: every event's `sessionID` (`ses_…`).
    OpencodeEvents,
}

impl SessionIdIn {
    /// The session id the output names, when it names exactly one (a session id is a short
    /// token; anything else is not taken).
    pub fn find(self, stdout: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(stdout);
        let mut found: Option<String> = None;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let id = match self {
                SessionIdIn::CodexThread => (v.get("type").and_then(|t| t.as_str())
                    == Some("thread.started"))
                .then(|| v.get("thread_id").and_then(|t| t.as_str()))
                .flatten(),
                SessionIdIn::OpencodeEvents => v.get("sessionID").and_then(|t| t.as_str()),
            };
            // It becomes an argument of the next run: never one that reads as an option.
            let Some(id) = id.filter(|id| {
                id.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && id.len() <= 100
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }) else {
                continue;
            };
            match &found {
                Some(f) if f != id => return None,
                _ => found = Some(id.to_owned()),
            }
        }
        found
    }
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "claude",
        version: "Claude Code 2.1.197",
        edit: &[
            "claude",
            "-p",
            "{prompt}",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
        ],
        read_only: &[
            "claude",
            "-p",
            "{prompt}",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "plan",
        ],
        session_start: &["--session-id", "{session}"],
        session_resume: &["--resume", "{session}"],
        notes: "stream-json for live activity (print mode needs --verbose for it); usage of every call (modelUsage) and cost from its result event; acceptEdits lets it edit but asks before running commands, which -p mode refuses: allow the commands your gates need with --allowedTools in your own argv",
        own_sandbox: None,
        names_sessions: None,
        resume_before_prompt: false,
        usage_of_whole_session: false,
    },
    Preset {
        name: "codex",
        version: "codex-cli 0.171.0",
        edit: &[
            "codex",
            "exec",
            "--sandbox",
            "workspace-write",
            "--skip-git-repo-check",
            "--json",
            "{prompt}",
        ],
        read_only: &[
            "codex",
            "exec",
            "--sandbox",
            "read-only",
            "--skip-git-repo-check",
            "--json",
            "{prompt}",
        ],
        session_start: &[],
        session_resume: &["resume", "{session}"],
        notes: "usage from its turn.completed events (a resumed session reports the whole session's, so the earlier calls are taken off); it names its sessions itself, so the id is read from its thread.started event and resumed with `exec … resume <id>` on later attempts",
        own_sandbox: Some(("--sandbox", "danger-full-access")),
        names_sessions: Some(SessionIdIn::CodexThread),
        resume_before_prompt: true,
        usage_of_whole_session: true,
    },
    Preset {
        name: "aider",
        version: "aider 0.86.2",
        edit: &[
            "aider",
            "--message",
            "{prompt}",
            "--yes-always",
            "--no-auto-commits",
            "--no-check-update",
            "--no-show-model-warnings",
            "--no-pretty",
            "--no-stream",
            "--analytics-disable",
            "--no-gitignore",
            "--chat-history-file",
            "/dev/null",
            "--input-history-file",
            "/dev/null",
            "--map-tokens",
            "0",
        ],
        read_only: &[
            "aider",
            "--message",
            "{prompt}",
            "--chat-mode",
            "ask",
            "--yes-always",
            "--no-auto-commits",
            "--no-check-update",
            "--no-show-model-warnings",
            "--no-pretty",
            "--no-stream",
            "--analytics-disable",
            "--no-gitignore",
            "--chat-history-file",
            "/dev/null",
            "--input-history-file",
            "/dev/null",
            "--map-tokens",
            "0",
        ],
        session_start: &[],
        session_resume: &[],
        notes: "usage from its Tokens/Cost lines (it rounds thousands); ask mode for the read-only roles; --no-gitignore, the history files in /dev/null and no repo map (--map-tokens 0), so that it writes nothing but the task's edits into the worktree",
        own_sandbox: None,
        names_sessions: None,
        resume_before_prompt: false,
        usage_of_whole_session: false,
    },
    Preset {
        name: "gemini",
        version: "Gemini CLI 0.61.0",
        edit: &[
            "gemini",
            "-p",
            "{prompt}",
            "--approval-mode",
            "auto_edit",
            "--skip-trust",
            "--output-format",
            "stream-json",
        ],
        read_only: &[
            "gemini",
            "-p",
            "{prompt}",
            "--approval-mode",
            "plan",
            "--skip-trust",
            "--output-format",
            "stream-json",
        ],
        session_start: &["--session-id", "{session}"],
        session_resume: &["--resume", "{session}"],
        notes: "its answer is read from the JSON response field; --skip-trust because a new worktree is a folder it has never been told to trust (it exits 55 otherwise)",
        own_sandbox: None,
        names_sessions: None,
        resume_before_prompt: false,
        usage_of_whole_session: false,
    },
    Preset {
        name: "opencode",
        version: "opencode 1.18.33",
        edit: &[
            "opencode",
            "run",
            "--dir",
            "{worktree}",
            "--format",
            "json",
            "{prompt}",
        ],
        read_only: &[
            "opencode",
            "run",
            "--dir",
            "{worktree}",
            "--agent",
            "plan",
            "--format",
            "json",
            "{prompt}",
        ],
        session_start: &[],
        session_resume: &["--session", "{session}"],
        notes: "--dir because it takes its project folder from $PWD, not its working directory; the plan agent for the read-only roles; its answer from the text parts and usage and cost from the step_finish events of --format json; permissions it would ask for are refused (headless), so allow what your gates need in opencode.json; it names its sessions itself (ses_…): the id is read from its events and resumed with --session on later attempts",
        own_sandbox: None,
        names_sessions: Some(SessionIdIn::OpencodeEvents),
        resume_before_prompt: false,
        usage_of_whole_session: false,
    },
    Preset {
        name: "goose",
        version: "goose 1.x (from its documentation; not run here)",
        edit: &["goose", "run", "--no-session", "--text", "{prompt}"],
        read_only: &["goose", "run", "--no-session", "--text", "{prompt}"],
        session_start: &[],
        session_resume: &[],
        notes: "no read-only mode of its own: git-pipeline's read-only checks still stop a verifier that writes",
        own_sandbox: None,
        names_sessions: None,
        resume_before_prompt: false,
        usage_of_whole_session: false,
    },
    Preset {
        name: "droid",
        version: "Factory droid 0.225.2",
        edit: &[
            "droid",
            "exec",
            "--auto",
            "medium",
            "--output-format",
            "stream-json",
            "{prompt}",
        ],
        read_only: &[
            "droid",
            "exec",
            "--output-format",
            "stream-json",
            "{prompt}",
        ],
        session_start: &[],
        session_resume: &[],
        notes: "--auto medium lets it edit and run build and test commands; without --auto it is read-only; usage from its JSON result",
        own_sandbox: None,
        names_sessions: None,
        resume_before_prompt: false,
        usage_of_whole_session: false,
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

impl Preset {
    /// The argv for a role.
    pub fn argv(&self, role: Role) -> Vec<String> {
        let list = if role_edits(role) {
            self.edit
        } else {
            self.read_only
        };
        list.iter().map(|s| (*s).to_owned()).collect()
    }
}

impl Preset {
    /// `argv` for a step inside git-pipeline's sandbox: the CLI's own sandbox off.
    pub fn inside_sandbox(&self, mut argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
        if let Some((flag, off)) = self.own_sandbox
            && let Some(i) = argv.iter().position(|a| a == flag)
            && let Some(value) = argv.get_mut(i + 1)
        {
            *value = off.into();
        }
        argv
    }
}

/// Builders and the docs agent change files; every other role only reads.
pub fn role_edits(role: Role) -> bool {
    matches!(role, Role::Builder | Role::Docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_a_valid_template_that_passes_the_prompt() {
        for p in PRESETS {
            for role in Role::ALL {
                let argv = p.argv(role);
                assert!(crate::preset::argv::check(&argv).is_ok(), "{}", p.name);
                assert!(
                    crate::preset::argv::uses_prompt(&argv),
                    "{} {:?}",
                    p.name,
                    role
                );
                assert_eq!(argv[0], p.name, "the program is the preset's name");
            }
            assert!(crate::preset::argv::check(&to_vec(p.session_start)).is_ok());
            assert!(crate::preset::argv::check(&to_vec(p.session_resume)).is_ok());
        }
    }

    #[test]
    fn inside_our_sandbox_codex_runs_without_its_own_and_others_are_unchanged() {
        let os =
            |v: Vec<String>| -> Vec<std::ffi::OsString> { v.into_iter().map(Into::into).collect() };
        for role in [Role::Builder, Role::Verifier] {
            let codex = find("codex").expect("codex");
            let argv = codex.inside_sandbox(os(codex.argv(role)));
            let i = argv
                .iter()
                .position(|a| a == "--sandbox")
                .expect("flag kept");
            assert_eq!(argv[i + 1], "danger-full-access");
            assert_eq!(argv.len(), codex.argv(role).len());
        }
        let claude = find("claude").expect("claude");
        assert_eq!(
            claude.inside_sandbox(os(claude.argv(Role::Builder))),
            os(claude.argv(Role::Builder))
        );
    }

    #[test]
    fn session_ids_are_read_from_what_the_cli_printed() {
        let codex = b"{\"type\":\"thread.started\",\"thread_id\":\"01a2-38f\"}\n{\"type\":\"turn.started\"}\n";
        assert_eq!(
            SessionIdIn::CodexThread.find(codex).as_deref(),
            Some("01a2-38f")
        );
        let open = b"{\"type\":\"step_start\",\"sessionID\":\"ses_1\"}\n{\"type\":\"text\",\"sessionID\":\"ses_1\"}\n";
        assert_eq!(
            SessionIdIn::OpencodeEvents.find(open).as_deref(),
            Some("ses_1")
        );
        // Two different ids, or one that is no token: none is taken.
        let two = b"{\"sessionID\":\"ses_1\"}\n{\"sessionID\":\"ses_2\"}\n";
        assert_eq!(SessionIdIn::OpencodeEvents.find(two), None);
        let odd = b"{\"type\":\"thread.started\",\"thread_id\":\"--config x\"}\n";
        assert_eq!(SessionIdIn::CodexThread.find(odd), None);
        let option = b"{\"type\":\"thread.started\",\"thread_id\":\"--dangerously-bypass\"}\n";
        assert_eq!(SessionIdIn::CodexThread.find(option), None);
        assert_eq!(SessionIdIn::CodexThread.find(b"plain text"), None);
    }

    fn to_vec(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }
}

#[cfg(test)]
mod snapshots {
    use std::ffi::OsStr;

    use super::*;

    /// Each preset's argv for a sample prompt, for the editing and the read-only roles, with its
    /// session flags: reviewed by people when a preset changes.
    #[test]
    fn preset_argv_for_a_sample_prompt() -> Result<(), Box<dyn std::error::Error>> {
        let vars = crate::preset::argv::Vars {
            prompt: OsStr::new("Fix the off-by-one in the pager"),
            prompt_file: OsStr::new("/tmp/prompt.md"),
            worktree: OsStr::new("/work/repo.pipeline/20261121-120000-0000"),
            run_id: OsStr::new("20261121-120000-0000"),
            stage: OsStr::new("execution"),
            session: OsStr::new("123e4567-e89b-12d3-a456-426614174000"),
        };
        let mut text = String::new();
        for p in PRESETS {
            text.push_str(&format!("{} ({})\n", p.name, p.version));
            for (label, role) in [
                ("  edit     ", Role::Builder),
                ("  read-only", Role::Verifier),
            ] {
                let argv = crate::preset::argv::render(&p.argv(role), &vars)?;
                let shown: Vec<String> = argv
                    .iter()
                    .map(|a| format!("{:?}", a.to_string_lossy()))
                    .collect();
                text.push_str(&format!("{label} {}\n", shown.join(" ")));
            }
            for (label, extra) in [
                ("  start    ", p.session_start),
                ("  resume   ", p.session_resume),
            ] {
                if !extra.is_empty() {
                    let v: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
                    let argv = crate::preset::argv::render(&v, &vars)?;
                    let shown: Vec<String> = argv
                        .iter()
                        .map(|a| format!("{:?}", a.to_string_lossy()))
                        .collect();
                    text.push_str(&format!("{label} + {}\n", shown.join(" ")));
                }
            }
        }
        insta::assert_snapshot!(text);
        Ok(())
    }
}
