//! The OS sandbox agents and gates run in: prevention where the platform offers it, on top of the
//! containment checks (which stay, because a sandboxed process can still ask a service outside
//! it, such as `systemd-run --user`, to act for it).
//!
//! A step's program is started through git-pipeline itself: `git-pipeline __sandbox [--write
//! PATH]... [--no-network] [--required] -- PROGRAM ARGS...` restricts its own process (Landlock on
//! Linux; `sandbox-exec` with a Seatbelt profile on macOS) and then `exec`s the program, which
//! inherits the restriction with everything it starts. No `unsafe` code and no helper binary.
//!
//! The policy: the whole filesystem stays readable and executable; writable are only the paths
//! the caller lists (the run's worktree, what git needs to commit on the run's branch, a private
//! temporary folder, the agent CLI's state and the usual build caches) and the terminal and null
//! devices. See `docs/security.md` for the list and its limits.

#[cfg(target_os = "linux")]
mod landlock;
pub mod seatbelt;

#[cfg(target_os = "linux")]
use landlock::{exec as os_exec, probe as os_probe};
#[cfg(target_os = "macos")]
use seatbelt::{exec as os_exec, probe as os_probe};

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `run.sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// On where the platform offers a sandbox; the run says which.
    #[default]
    Auto,
    /// Like `auto`, but a run fails (exit 3) where no sandbox can be enforced.
    Required,
    Off,
}

/// What a sandboxed step may write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub writable: Vec<PathBuf>,
    /// TCP connections and binds allowed (Landlock ABI 4 and later can forbid them).
    pub network: bool,
    /// Refuse to run the program unless the sandbox is fully enforced.
    pub required: bool,
}

/// The hidden subcommand that applies a policy and then runs the program.
pub const SUBCOMMAND: &str = "__sandbox";

impl Policy {
    /// The argv that runs `argv` under this policy, through `exe` (git-pipeline itself).
    pub fn wrap(&self, exe: &Path, argv: &[OsString]) -> Vec<OsString> {
        let mut out = vec![exe.as_os_str().to_owned(), SUBCOMMAND.into()];
        for w in &self.writable {
            out.push("--write".into());
            out.push(w.as_os_str().to_owned());
        }
        if !self.network {
            out.push("--no-network".into());
        }
        if self.required {
            out.push("--required".into());
        }
        out.push("--".into());
        out.extend(argv.iter().cloned());
        out
    }

    /// The inverse of [`Policy::wrap`]'s arguments after the subcommand: the policy and the argv.
    pub fn parse(args: &[OsString]) -> std::result::Result<(Policy, Vec<OsString>), ArgsError> {
        let mut policy = Policy {
            network: true,
            ..Policy::default()
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.to_str() {
                Some("--write") => match it.next() {
                    Some(p) => policy.writable.push(PathBuf::from(p)),
                    None => return Err(ArgsError("--write needs a path".to_owned())),
                },
                Some("--no-network") => policy.network = false,
                Some("--required") => policy.required = true,
                Some("--") => {
                    let argv: Vec<OsString> = it.cloned().collect();
                    if argv.is_empty() {
                        return Err(ArgsError("no program to run after --".to_owned()));
                    }
                    return Ok((policy, argv));
                }
                _ => return Err(ArgsError(format!("unexpected argument {a:?}"))),
            }
        }
        Err(ArgsError("no program to run (missing --)".to_owned()))
    }
}

/// What the platform's sandbox can enforce here, found once per process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Availability {
    /// `landlock`, `seatbelt`, or `none`.
    pub kind: String,
    /// Fully enforced: every write outside the policy is refused.
    pub enforced: bool,
    /// In words: "landlock ABI 7, fully enforced", or why there is none.
    pub detail: String,
}

impl Availability {
    pub fn none(why: impl Into<String>) -> Availability {
        Availability {
            kind: "none".to_owned(),
            enforced: false,
            detail: why.into(),
        }
    }
}

static FOUND: std::sync::OnceLock<Availability> = std::sync::OnceLock::new();

/// Start [`probe`] on a thread of its own; the first caller of [`probe`] then waits only for
/// what is left of it.
pub fn probe_in_background() {
    std::thread::spawn(|| {
        let _ = probe();
    });
}

/// What the sandbox enforces here. Linux: a throwaway thread restricts itself (Landlock binds
/// only that thread) and starts nothing. Elsewhere: a child (`git-pipeline __sandbox --probe`)
/// is asked, because restricting is for a process's whole life.
pub fn probe() -> Availability {
    FOUND
        .get_or_init(|| {
            #[cfg(target_os = "linux")]
            return landlock::probe_on_thread();
            #[cfg(not(target_os = "linux"))]
            probe_child()
        })
        .clone()
}

#[cfg(not(target_os = "linux"))]
fn probe_child() -> Availability {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return Availability::none(format!("cannot find git-pipeline: {e}")),
    };
    let out = std::process::Command::new(&exe)
        .args([SUBCOMMAND, "--probe"])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) => serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
            Availability::none(format!(
                "the sandbox probe answered nothing readable: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }),
        Err(e) => Availability::none(format!("cannot run the sandbox probe: {e}")),
    }
}

/// `git-pipeline __sandbox ...`: apply the policy and exec the program; returns only on error,
/// with the exit code to end with.
pub fn main(args: &[OsString]) -> i32 {
    if args.first().and_then(|a| a.to_str()) == Some("--probe") {
        let found = os_probe();
        println!(
            "{}",
            serde_json::to_string(&found).unwrap_or_else(|_| "{}".to_owned())
        );
        return 0;
    }
    let (policy, argv) = match Policy::parse(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("git-pipeline {SUBCOMMAND}: {e}");
            return 2;
        }
    };
    let err = os_exec(&policy, &argv);
    eprintln!("git-pipeline: {err}");
    // The shell's codes: 127 for a program that cannot be found, 126 for anything else.
    if err.contains("No such file") {
        127
    } else {
        126
    }
}

/// A program as the spawn would find it: `None` when it cannot be found, so that the caller
/// starts it unwrapped and reports "not found" exactly as without a sandbox.
pub fn resolve(program: &OsStr, cwd: &Path) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 || p.is_absolute() {
        let full = cwd.join(p);
        return full.is_file().then_some(full);
    }
    // Relative PATH entries (`node_modules/.bin`) are searched from the step's folder, as the
    // child's own lookup does.
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| if d.is_relative() { cwd.join(d) } else { d }.join(p))
        .find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache the user's environment moved is as writable as the default one; its `bin` is
    /// not; a relative setting counts for nothing.
    #[test]
    fn caches_follow_the_environment_but_never_a_bin_folder() {
        let env = |name: &str| match name {
            "CARGO_HOME" => Some(OsString::from("/opt/cargo")),
            "XDG_CACHE_HOME" => Some(OsString::from("/var/cache/me")),
            "GOPATH" => Some(OsString::from("/srv/go:/other/go")),
            "GRADLE_USER_HOME" => Some(OsString::from("relative/gradle")),
            _ => None,
        };
        let caches = caches_with(Path::new("/home/u"), env);
        for want in [
            "/home/u/.cargo/registry",
            "/opt/cargo/registry",
            "/opt/cargo/git",
            "/var/cache/me",
            "/srv/go/pkg/mod",
        ] {
            assert!(caches.contains(&PathBuf::from(want)), "{want}: {caches:?}");
        }
        assert!(caches.iter().all(|c| !c.ends_with("bin")), "{caches:?}");
        assert!(
            !caches.iter().any(|c| c.starts_with("relative")),
            "{caches:?}"
        );
        assert!(!caches.contains(&PathBuf::from("/other/go/pkg/mod")));
    }

    /// A read-only role never gets the run's work writable, not even through a writable folder
    /// above it; an editing role and gates get all of it.
    #[test]
    fn read_only_roles_get_no_folder_that_holds_the_work() {
        let setup = Setup {
            exe: PathBuf::from("/bin/gp"),
            work: vec![
                PathBuf::from("/h/.cache/wt/run"),
                PathBuf::from("/r/.git/objects"),
            ],
            writable: vec![
                PathBuf::from("/h/.cache"),
                PathBuf::from("/r/.git/pipeline/tmp"),
            ],
            tmp: PathBuf::from("/r/.git/pipeline/tmp"),
            home: None,
            gate_network: true,
            required: true,
        };
        let writes = |argv: Vec<OsString>| {
            let (policy, _) = Policy::parse(&argv[2..]).expect("parses");
            policy.writable
        };
        let prog: Vec<OsString> = vec!["agent".into()];
        assert_eq!(
            writes(setup.agent_argv(None, false, &prog)),
            [PathBuf::from("/r/.git/pipeline/tmp")]
        );
        let edit = writes(setup.agent_argv(None, true, &prog));
        assert!(
            edit.contains(&PathBuf::from("/h/.cache"))
                && edit.contains(&PathBuf::from("/h/.cache/wt/run"))
        );
        assert_eq!(writes(setup.gate_argv(&prog)).len(), 4);
    }

    #[test]
    fn wrapped_arguments_parse_back_to_the_same_policy_and_program() {
        let policy = Policy {
            writable: vec![PathBuf::from("/w/one"), PathBuf::from("/w/two three")],
            network: false,
            required: true,
        };
        let argv: Vec<OsString> = vec!["prog".into(), "--write".into(), "--".into()];
        let wrapped = policy.wrap(Path::new("/bin/gp"), &argv);
        assert_eq!(wrapped[1], OsString::from(SUBCOMMAND));
        let (back, rest) = Policy::parse(&wrapped[2..]).expect("parses");
        assert_eq!(back, policy);
        assert_eq!(rest, argv, "the program's own arguments are untouched");
        assert!(Policy::parse(&["--write".into()]).is_err());
        assert!(Policy::parse(&["--".into()]).is_err());
        assert!(Policy::parse(&["--bogus".into()]).is_err());
    }

    #[test]
    fn required_refuses_where_nothing_is_fully_enforced() {
        let none = Availability::none("this kernel has no Landlock");
        let partial = Availability {
            kind: "landlock".to_owned(),
            enforced: false,
            detail: "landlock ABI 3, partially enforced (an older kernel)".to_owned(),
        };
        let full = Availability {
            kind: "landlock".to_owned(),
            enforced: true,
            detail: "landlock ABI 7, fully enforced".to_owned(),
        };
        let why = refusal(Mode::Required, Some(&none)).expect("refused");
        assert!(why.contains("this kernel has no Landlock"), "{why}");
        assert!(refusal(Mode::Required, Some(&partial)).is_some());
        assert_eq!(refusal(Mode::Required, Some(&full)), None);
        assert_eq!(refusal(Mode::Auto, Some(&none)), None);
        assert_eq!(refusal(Mode::Off, None), None);
    }

    #[test]
    fn the_seatbelt_profile_denies_writes_except_beneath_the_policy() {
        let p = seatbelt::profile(&Policy {
            writable: vec![PathBuf::from("/Users/me/wt \"x\"")],
            network: false,
            required: false,
        });
        assert!(p.contains("(deny file-write*)"));
        assert!(p.contains("(allow file-write* (subpath \"/Users/me/wt \\\"x\\\"\"))"));
        assert!(p.contains("(deny network-outbound (remote tcp))"));
    }
}

/// Why a run cannot start under `mode` with what the platform enforces (`found`, `None` when the
/// mode is `off`): `required` where nothing is fully enforced.
pub fn refusal(mode: Mode, found: Option<&Availability>) -> Option<String> {
    match (mode, found) {
        (Mode::Required, Some(f)) if !f.enforced => Some(format!(
            "run.sandbox = \"required\", but no sandbox can be enforced here: {}",
            f.detail
        )),
        _ => None,
    }
}

/// What a run's steps are sandboxed with: everything but the program to run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// git-pipeline itself, which applies the policy.
    pub exe: PathBuf,
    /// The run's work: its worktree and what git needs to commit on its branch. Writable for
    /// the agents that edit and for gates; read-only for the agents of the read-only roles.
    pub work: Vec<PathBuf>,
    /// Writable for every step.
    pub writable: Vec<PathBuf>,
    /// The private temporary folder (`TMPDIR`), one of `writable`.
    pub tmp: PathBuf,
    pub home: Option<PathBuf>,
    pub gate_network: bool,
    pub required: bool,
}

impl Setup {
    /// The argv of an agent step: its CLI's own state folders are writable too, and the run's
    /// work only when its role `edits`: a read-only role's writes fail in the agent, whatever
    /// its CLI's own read-only mode lets through.
    pub fn agent_argv(
        &self,
        preset: Option<&str>,
        edits: bool,
        argv: &[OsString],
    ) -> Vec<OsString> {
        let mut writable = if edits { self.work.clone() } else { Vec::new() };
        // Landlock rules add up: for a read-only role, a writable folder that holds the run's
        // work (a worktree root under `~/.cache`, a `sandbox.writable` entry above it) would
        // make the work writable again, so it is left out.
        writable.extend(
            self.writable
                .iter()
                .filter(|w| edits || !self.work.iter().any(|p| p.starts_with(w)))
                .cloned(),
        );
        if let (Some(p), Some(home)) = (preset, &self.home) {
            let state = agent_state(p, home);
            // A rule can only name what exists: a CLI's first run in the sandbox would find
            // its state folder unwritable (Claude Code then keeps no session to resume).
            for dir in state.iter().filter(|d| d.extension().is_none()) {
                if !dir.exists() {
                    let _ = std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir);
                }
            }
            writable.extend(state);
        }
        Policy {
            writable,
            network: true,
            required: self.required,
        }
        .wrap(&self.exe, argv)
    }

    pub fn gate_argv(&self, argv: &[OsString]) -> Vec<OsString> {
        Policy {
            writable: self.work.iter().chain(&self.writable).cloned().collect(),
            network: self.gate_network,
            required: self.required,
        }
        .wrap(&self.exe, argv)
    }
}

/// Where each preset's CLI keeps its state (sessions, settings, logs): writable for its steps.
pub fn agent_state(preset: &str, home: &Path) -> Vec<PathBuf> {
    let rel: &[&str] = match preset {
        "claude" => &[".claude", ".claude.json", ".claude.json.backup"],
        "codex" => &[".codex"],
        "gemini" => &[".gemini"],
        "opencode" => &[
            ".config/opencode",
            ".local/share/opencode",
            ".local/state/opencode",
            ".cache/opencode",
        ],
        "aider" => &[".aider"],
        "droid" => &[".factory"],
        "goose" => &[".config/goose", ".local/share/goose", ".local/state/goose"],
        _ => &[],
    };
    rel.iter().map(|r| home.join(r)).collect()
}

/// Build tools' download caches, writable so that gates (and the agents' own test runs) work
/// as in the user's shell: where the tools keep them by default under `home`, and where the
/// user's environment moved them (`CARGO_HOME`, `XDG_CACHE_HOME`, `npm_config_cache`,
/// `GOMODCACHE` or `GOPATH`, `GRADLE_USER_HOME`, ...). Not their `bin` folders: a planted
/// program there would run later, outside any sandbox.
pub fn caches(home: &Path) -> Vec<PathBuf> {
    caches_with(home, |name| std::env::var_os(name))
}

fn caches_with(home: &Path, env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = [
        ".cache",
        ".cargo/registry",
        ".cargo/git",
        ".npm",
        ".pnpm-store",
        ".yarn",
        ".m2/repository",
        ".gradle/caches",
        "go/pkg/mod",
    ]
    .iter()
    .map(|r| home.join(r))
    .collect();
    // Only absolute settings count: a relative one would name a folder of the step's own.
    let set = |name: &str| env(name).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(cargo) = set("CARGO_HOME") {
        out.push(cargo.join("registry"));
        out.push(cargo.join("git"));
    }
    for name in [
        "XDG_CACHE_HOME",
        "npm_config_cache",
        "NPM_CONFIG_CACHE",
        "YARN_CACHE_FOLDER",
        "PIP_CACHE_DIR",
        "UV_CACHE_DIR",
        "GOMODCACHE",
    ] {
        out.extend(set(name));
    }
    if set("GOMODCACHE").is_none()
        && let Some(gopath) = env("GOPATH")
        && let Some(first) = std::env::split_paths(&gopath).next()
        && first.is_absolute()
    {
        out.push(first.join("pkg").join("mod"));
    }
    if let Some(gradle) = set("GRADLE_USER_HOME") {
        out.push(gradle.join("caches"));
    }
    out.sort();
    out.dedup();
    out
}

/// A `sandbox.writable` entry as a path: absolute, or `~/...` under `home`.
pub fn expand(entry: &str, home: Option<&Path>) -> std::result::Result<PathBuf, WritableError> {
    if let Some(rest) = entry.strip_prefix("~/") {
        return home
            .map(|h| h.join(rest))
            .ok_or_else(|| WritableError::NoHome(entry.to_owned()));
    }
    let p = PathBuf::from(entry);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(WritableError::Relative(entry.to_owned()))
    }
}

/// `git-pipeline __sandbox` arguments that are not what [`Policy::wrap`] writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgsError(String);

/// A `sandbox.writable` entry that names no folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WritableError {
    #[error("sandbox.writable {0:?}: HOME is not set")]
    NoHome(String),
    #[error("sandbox.writable {0:?}: give an absolute path or one under ~/")]
    Relative(String),
}
