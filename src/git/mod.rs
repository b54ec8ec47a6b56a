//! Every git command git-pipeline runs goes through [`Git`], so there is one place to audit what
//! runs, with which environment and which safety switches.
//!
//! We drive the `git` program rather than a library: worktree creation must run filters, LFS and
//! the post-checkout hook exactly as git does, ship commits must run the repository's commit hooks,
//! and `docs/benchmarks.md` / `shared/MEASURED.md` show the CLI is the fastest of the three for the
//! changed-path listing we do after every attempt. Reads that a run makes often go through
//! cheaper paths that give git's own answers: a kept `cat-file --batch-command` ([`batch`]), ref
//! files read directly ([`files_refs`], where the store is plain files), git's admin files.

pub mod advance;
mod batch;
pub mod clean;
pub mod config;
mod config_text;
pub mod diff;
mod files_refs;
pub mod history;
pub mod ignored;
mod index_file;
pub mod maintenance;
pub mod merge;
pub mod notes;
pub mod objects;
pub mod oid;
pub mod prepare;
pub mod reflog;
pub mod refs;
pub mod repo;
pub mod snapshot;
pub mod status;
pub mod strays;
pub mod submodules;
mod tree_diff;
pub mod tree_write;
pub mod worktree;

#[cfg(test)]
pub(crate) mod testing;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::Error;

use crate::error::Result;

pub use oid::{Oid, TreeId};
pub use repo::Repo;

/// End the kept object readers ([`batch`]); the next lookup starts a new one. After a step that
/// ran outside the OS sandbox, whose processes could have reached the old one's pipes.
pub fn forget_kept_readers() {
    batch::forget_all();
}

/// A command for the `git` program PATH named when git-pipeline started, found once as the
/// spawn's own search would find it (the first PATH entry holding an executable `git`) and
/// started by its path with `git` as its name: a search per command tried every PATH entry
/// before it (a failed exec each, ~0.15 ms apiece here), and a `git` placed earlier in PATH
/// while a run goes on is not picked up halfway. With a relative or empty PATH entry (which
/// depends on the folder a command runs in) the search is left to each spawn.
pub fn program() -> Command {
    static FOUND: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let path = std::env::var_os("PATH")?;
        let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        if dirs.iter().any(|d| !d.is_absolute()) {
            return None;
        }
        dirs.into_iter()
            .map(|d| d.join("git"))
            .find(|p| p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
    });
    match found {
        Some(path) => {
            use std::os::unix::process::CommandExt;
            let mut cmd = Command::new(path);
            cmd.arg0("git");
            cmd
        }
        None => Command::new("git"),
    }
}

/// What `git rev-parse --local-env-vars` prints: variables that point git at another repository,
/// index or object store than the one of the directory it runs in. A test keeps this in sync with
/// the installed git.
pub const LOCAL_ENV_VARS: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
];

/// Our own commands keep the user's `git -c k=v pipeline ...` settings; everything that would
/// redirect them to another repository is dropped because we always name the repository.
fn is_kept_for_own_commands(var: &str) -> bool {
    matches!(var, "GIT_CONFIG_PARAMETERS" | "GIT_CONFIG_COUNT")
}

/// A handle that runs git either inside a directory (`-C dir`, for worktrees) or against a
/// repository (`--git-dir=...`, for refs and objects).
#[derive(Debug, Clone)]
pub struct Git {
    target: Target,
    /// Keep git's object-store variables (a pre-receive hook's quarantine).
    keep_object_env: bool,
}

#[derive(Debug, Clone)]
enum Target {
    Dir(PathBuf),
    GitDir(PathBuf),
    /// A worktree whose git dir we name ourselves, never trusting its `.git` file (an agent can
    /// rewrite it to point our commands at another repository).
    Worktree {
        dir: PathBuf,
        git_dir: PathBuf,
    },
}

/// Extra settings of one git invocation.
#[derive(Default)]
pub struct Opts<'a> {
    pub stdin: Option<&'a [u8]>,
    pub env: &'a [(&'a str, &'a OsStr)],
}

impl Git {
    /// Run git with `-C dir`: for commands that act on a worktree.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Git {
            target: Target::Dir(dir.into()),
            keep_object_env: false,
        }
    }

    /// Run git with `--git-dir=dir`: for commands on refs and objects, independent of any cwd.
    pub fn at_git_dir(dir: impl Into<PathBuf>) -> Self {
        Git {
            target: Target::GitDir(dir.into()),
            keep_object_env: false,
        }
    }

    /// Inside a pre-receive hook, git puts the pushed objects in a quarantine named by
    /// `GIT_OBJECT_DIRECTORY` and `GIT_ALTERNATE_OBJECT_DIRECTORIES`; keep those so the pushed
    /// commits can be read.
    pub fn keeping_object_env(mut self) -> Self {
        self.keep_object_env = true;
        self
    }

    /// Git for a run's worktree, with its git dir named explicitly.
    pub fn worktree(dir: impl Into<PathBuf>, git_dir: impl Into<PathBuf>) -> Self {
        Git {
            target: Target::Worktree {
                dir: dir.into(),
                git_dir: git_dir.into(),
            },
            keep_object_env: false,
        }
    }

    pub fn dir(&self) -> &Path {
        match &self.target {
            Target::Dir(d) | Target::GitDir(d) | Target::Worktree { dir: d, .. } => d,
        }
    }

    /// The repository a kept object reader ([`batch`]) may serve: `--git-dir` handles only,
    /// and not inside a pre-receive hook's quarantine.
    fn batch_key(&self) -> Option<PathBuf> {
        match &self.target {
            Target::GitDir(d) if !self.keep_object_env => Some(d.clone()),
            _ => None,
        }
    }

    /// The git dir this handle names itself (`--git-dir`, or a worktree's), where git-pipeline
    /// may read ref files directly; `None` when git finds it (`-C`).
    fn named_git_dir(&self) -> Option<&Path> {
        match &self.target {
            Target::GitDir(d) | Target::Worktree { git_dir: d, .. } => Some(d),
            Target::Dir(_) => None,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = program();
        for var in LOCAL_ENV_VARS {
            let object_var = matches!(
                *var,
                "GIT_OBJECT_DIRECTORY" | "GIT_ALTERNATE_OBJECT_DIRECTORIES"
            );
            let keep = is_kept_for_own_commands(var) || (self.keep_object_env && object_var);
            if !keep {
                cmd.env_remove(var);
            }
        }
        // Replace refs (`refs/replace/*`, which anyone who can push refs can create) make git
        // show one commit's content in place of another's: what is checked, committed and
        // attested is always the objects as they are.
        cmd.env("GIT_NO_REPLACE_OBJECTS", "1");
        match &self.target {
            Target::Dir(d) => {
                cmd.arg("-C").arg(d);
            }
            Target::GitDir(d) => {
                let mut a = OsString::from("--git-dir=");
                a.push(d);
                cmd.arg(a);
            }
            Target::Worktree { dir, git_dir } => {
                let mut g = OsString::from("--git-dir=");
                g.push(git_dir);
                let mut w = OsString::from("--work-tree=");
                w.push(dir);
                cmd.arg("-C").arg(dir).arg(g).arg(w);
            }
        }
        // An agent can write `core.fsmonitor` into the repository config; never let our own
        // commands execute it.
        cmd.args(["-c", "core.fsmonitor=false"]);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Run and return the whole output, whatever the exit status.
    pub(in crate::git) fn output<I, S>(&self, args: I, opts: Opts<'_>) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut cmd = self.command();
        cmd.args(&args);
        for (k, v) in opts.env {
            cmd.env(k, v);
        }
        tracing::debug!(dir = %self.dir().display(), args = %show_args(&args), "git");
        let output = match opts.stdin {
            None => cmd.output(),
            Some(input) => run_with_stdin(cmd, input),
        };
        output.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::usage_hint(
                    "git is not installed or not on PATH",
                    "install git 2.38 or newer",
                )
            } else {
                Error::io(format!("cannot run git {}", show_args(&args)), e)
            }
        })
    }

    /// Run with a deadline (a command that talks to a remote): `None` when it took longer and
    /// was killed. No terminal prompt is ever shown.
    pub(in crate::git) fn output_within(
        &self,
        args: &[&str],
        deadline: std::time::Duration,
    ) -> Result<Option<Output>> {
        use std::io::Read;
        let mut cmd = self.command();
        cmd.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("SSH_ASKPASS_REQUIRE", "never")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tracing::debug!(dir = %self.dir().display(), args = %args.join(" "), "git");
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("cannot run git {}", args.join(" ")), e))?;
        let read = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut out);
                }
                out
            })
        };
        let stdout = read(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = read(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| Error::io("wait for git", e))? {
                break status;
            }
            if started.elapsed() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        Ok(Some(Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }))
    }

    /// Run, fail with the command, status and stderr on a non-zero exit, return stdout.
    pub(in crate::git) fn run<I, S>(&self, args: I) -> Result<Vec<u8>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_opts(args, Opts::default())
    }

    pub(in crate::git) fn run_opts<I, S>(&self, args: I, opts: Opts<'_>) -> Result<Vec<u8>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.output(&args, opts)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(failure(&args, &out))
        }
    }

    /// Run and return stdout as trimmed text.
    /// Trimmed stdout when git succeeds, `None` when it says no (a rev that names nothing, an
    /// unset key): for the queries whose "no" is an answer, not an error.
    pub(in crate::git) fn optional_text<I, S>(&self, args: I) -> Result<Option<String>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.output(args, Opts::default())?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    }

    pub(in crate::git) fn text<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args)?;
        Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
    }
}

fn run_with_stdin(mut cmd: Command, input: &[u8]) -> std::io::Result<Output> {
    use std::io::Write;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("git stdin was not captured"))?;
    // Write from a thread so a large input cannot deadlock against a full stdout pipe.
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output()?;
    match writer.join() {
        Ok(Ok(())) => {}
        // git may exit before reading everything (it failed); its status tells the story.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(std::io::Error::other("git stdin writer panicked")),
    }
    Ok(output)
}

pub(crate) fn show_args(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn failure(args: &[OsString], out: &Output) -> Error {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(lock) = lock_in_the_way(&stderr) {
        let what = lock
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".lock").to_owned())
            .unwrap_or_default();
        let what = match lock.to_string_lossy().split_once("/refs/") {
            Some((_, r)) => format!("refs/{}", r.trim_end_matches(".lock")),
            None => what,
        };
        return Error::Locked { what, lock };
    }
    let stderr = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    Error::Git {
        args: show_args(args),
        status: crate::process_end::describe_status(&out.status),
        stderr: if stderr.is_empty() {
            "no error output".to_owned()
        } else {
            stderr
        },
    }
}

/// git's "Unable to create '<path>.lock': File exists." names the lock file in the way.
fn lock_in_the_way(stderr: &str) -> Option<PathBuf> {
    let rest = stderr.split("Unable to create '").nth(1)?;
    let (path, after) = rest.split_once("': ")?;
    (path.ends_with(".lock") && after.starts_with("File exists")).then(|| PathBuf::from(path))
}

/// Split NUL-terminated records (`-z` output).
pub fn split_z(out: &[u8]) -> impl Iterator<Item = &[u8]> {
    out.split(|b| *b == 0).filter(|s| !s.is_empty())
}

/// The path a git pointer file names (a `.git` file: `gitdir: <path>`; `commondir`: `<path>`),
/// read as git reads one: only trailing newlines and carriage returns are dropped, so a path
/// ending in a space names that path, as it does for git. `None` without the prefix or a path.
pub fn pointer_path(bytes: &[u8], prefix: &str) -> Option<PathBuf> {
    let rest = bytes.strip_prefix(prefix.as_bytes())?;
    let end = rest
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    (end > 0).then(|| path_from_bytes(&rest[..end]))
}

/// A path from git's `-z` output. Unix paths are bytes; keep them byte for byte.
pub fn path_from_bytes(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(OsStr::from_bytes(b))
}

#[cfg(test)]
mod tests {
    /// Only newlines and carriage returns end a pointer's path, as in git's
    /// `read_gitfile_gently` and `get_common_dir_noenv`.
    #[test]
    fn a_pointer_keeps_every_character_but_its_line_ends() {
        let p = |b: &[u8]| super::pointer_path(b, "gitdir: ");
        assert_eq!(p(b"gitdir: /a/b\n"), Some("/a/b".into()));
        assert_eq!(p(b"gitdir: /a/b\r\n\n"), Some("/a/b".into()));
        assert_eq!(p(b"gitdir: /a/b \n"), Some("/a/b ".into()));
        assert_eq!(p(b"gitdir: /a/b\t"), Some("/a/b\t".into()));
        assert_eq!(p(b"gitdir: \n"), None);
        assert_eq!(p(b"gitdir:/a\n"), None);
        assert_eq!(super::pointer_path(b"../..\n", ""), Some("../..".into()));
    }
}
