//! The test harness: hermetic temporary repositories made with the real `git`, the real
//! `git-pipeline` binary, and the fixture agent `fixtures/agents/fake-agent`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const FAKE_AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/agents/fake-agent");
pub const BIN: &str = env!("CARGO_BIN_EXE_git-pipeline");

#[must_use = "a command's result is there to be checked"]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn from(o: Output) -> Out {
        use std::os::unix::process::ExitStatusExt;
        Out {
            code: o
                .status
                .code()
                .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// The `--json` result object.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The first line of stderr, which SPEC says states the error.
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line in stderr:\n{}", self.stderr))
    }
}

pub struct TestRepo {
    pub tmp: tempfile::TempDir,
    pub path: PathBuf,
    pub home: PathBuf,
    pub logs: PathBuf,
}

/// PATH with the binary under test first, so that `git pipeline` and installed hooks find it.
pub fn test_path() -> std::ffi::OsString {
    let bin_dir = Path::new(BIN).parent().expect("binary folder").to_owned();
    let mut dirs = vec![bin_dir];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).expect("PATH")
}

/// Variables a test process keeps from the environment the suite runs in: what the machine
/// needs to run programs at all, and the switches CI sets for the whole suite.
const PASSED_THROUGH: &[&str] = &[
    "TMPDIR",
    "CI",
    "GIT_PIPELINE_WATCH",
    "RUST_BACKTRACE",
    "LLVM_PROFILE_FILE",
];

/// Every command a test starts sees only this environment (the way jj's tests do it): nothing
/// of the developer's shell, git config or agent keys leaks in, and git may not guess an
/// identity (`user.useConfigOnly` in the test's gitconfig).
pub fn hermetic(cmd: &mut Command, home: &Path, logs: &Path) {
    cmd.env_clear();
    for v in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(v) {
            cmd.env(v, value);
        }
    }
    cmd.env("PATH", test_path());
    // Run ids from a fixed clock (one millisecond per run already in the store): a run's id,
    // its branch and its worktree folder are the same on every machine and every run.
    cmd.env("GIT_PIPELINE_TEST_CLOCK", "1800000000");
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_GLOBAL", home.join(".gitconfig"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .env("GIT_EDITOR", ":")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("NO_COLOR", "1")
        .env("FIXTURE_LOG_DIR", logs);
}

impl TestRepo {
    /// A repository on `main` with one commit: README.md and src/lib.rs.
    pub fn new() -> TestRepo {
        let repo = TestRepo::empty();
        repo.write("README.md", "# demo\n");
        repo.write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n");
        repo.commit_all("init");
        repo
    }

    /// A repository with no commits.
    pub fn empty() -> TestRepo {
        let tmp = tempfile::Builder::new()
            .prefix("gp-test-")
            .tempdir()
            .expect("tempdir");
        let home = tmp.path().join("home");
        let path = tmp.path().join("repo");
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(home.join(".config")).expect("home");
        std::fs::create_dir_all(&path).expect("repo dir");
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = Test User\n\temail = test@example.com\n\tuseConfigOnly = true\n[init]\n\tdefaultBranch = main\n[protocol \"file\"]\n\tallow = always\n",
        )
        .expect("gitconfig");
        // The person's own config: the fixture agents log outside the repository, which the
        // sandbox must let them write (as a user would list their tool's folders).
        std::fs::create_dir_all(home.join(".config/git-pipeline")).expect("personal config dir");
        std::fs::create_dir_all(&logs).expect("logs dir");
        std::fs::write(
            home.join(".config/git-pipeline/config.toml"),
            format!(
                "version = 1\n[sandbox]\nwritable = [{:?}]\n",
                logs.to_string_lossy()
            ),
        )
        .expect("personal config");
        let repo = TestRepo {
            tmp,
            path,
            home,
            logs,
        };
        repo.git(&["init", "-q"]);
        repo
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn command(&self, program: &str, dir: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(dir).stdin(Stdio::null());
        hermetic(&mut cmd, &self.home, &self.logs);
        cmd
    }

    /// Run git in the repository; panics on failure (test setup must not fail silently).
    #[track_caller]
    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.path, args)
    }

    #[track_caller]
    pub fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let out = self
            .command("git", dir)
            .args(args)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }

    /// Run git, returning the whole outcome.
    pub fn git_out(&self, args: &[&str]) -> Out {
        Out::from(
            self.command("git", &self.path)
                .args(args)
                .output()
                .expect("run git"),
        )
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }

    /// Install an executable hook in the repository's (shared) hooks folder.
    pub fn hook(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path.join(".git/hooks").join(name);
        std::fs::write(&path, body).expect("write hook");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod hook");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path.join(rel)).expect("read")
    }

    pub fn commit_all(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
    }

    /// Write `.pipeline.toml` (AGENT stands for the fake agent's path, LOGS for the log folder,
    /// ROOT for the test's temp folder) and commit it.
    pub fn config(&self, body: &str) {
        self.config_untrusted(body);
        // As its user would after reading it. A config that does not load is not trusted, which
        // the tests of bad configs want anyway.
        let _ = self.pipeline(&["trust"]);
    }

    /// Write the personal config (`~/.config/git-pipeline/config.toml`): `body`, plus the
    /// sandbox's writable logs folder that every test's personal config has.
    pub fn personal(&self, body: &str) {
        let path = self.home.join(".config/git-pipeline/config.toml");
        std::fs::write(
            &path,
            format!(
                "{}\n[sandbox]\nwritable = [{:?}]\n",
                self.expand(body),
                self.logs.to_string_lossy()
            ),
        )
        .expect("personal config");
    }

    /// No personal config at all.
    pub fn no_personal_config(&self) {
        let _ = std::fs::remove_file(self.home.join(".config/git-pipeline/config.toml"));
    }

    /// Commit a config without trusting it.
    pub fn config_untrusted(&self, body: &str) {
        self.write(".pipeline.toml", &self.expand(body));
        self.git(&["add", ".pipeline.toml"]);
        self.git(&[
            "commit",
            "-q",
            "-m",
            "pipeline config",
            "--",
            ".pipeline.toml",
        ]);
    }

    pub fn expand(&self, text: &str) -> String {
        text.replace("AGENT", FAKE_AGENT)
            .replace("LOGS", &self.logs.to_string_lossy())
            .replace("ROOT", &self.root().to_string_lossy())
    }

    /// A config with a builder and a verifier running the fake agent with these actions.
    pub fn agents(&self, builder: &[&str], verifier: &[&str], extra: &str) {
        let list = |v: &[&str]| {
            v.iter()
                .map(|a| format!("{:?}", a))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let body = format!(
            "version = 1\n{extra}\n[agents.builder]\ncommand = [\"AGENT\", \"{{prompt}}\", {}]\ntimeout = \"20s\"\n[agents.verifier]\ncommand = [\"AGENT\", {}]\ntimeout = \"20s\"\n",
            list(builder),
            list(verifier)
        );
        self.config(&body);
    }

    pub fn pipeline(&self, args: &[&str]) -> Out {
        self.pipeline_in(&self.path, args)
    }

    pub fn pipeline_in(&self, dir: &Path, args: &[&str]) -> Out {
        Out::from(
            self.command(BIN, dir)
                .args(args)
                .output()
                .expect("run git-pipeline"),
        )
    }

    /// [`TestRepo::pipeline`] with more environment.
    pub fn pipeline_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = self.command(BIN, &self.path);
        cmd.args(args).envs(env.iter().copied());
        Out::from(cmd.output().expect("run git-pipeline"))
    }

    pub fn pipeline_cmd(&self) -> Command {
        self.command(BIN, &self.path)
    }

    /// Start `git pipeline` in the background (stdout and stderr captured) and wait until
    /// `marker` exists (written by an agent of that run).
    pub fn spawn_until(&self, args: &[&str], marker: &Path) -> std::process::Child {
        let child = self
            .pipeline_cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn git-pipeline");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !marker.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} never appeared",
                marker.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child
    }

    /// Lines of the fixture agents' call log.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.logs.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn calls_of(&self, role: &str) -> usize {
        self.calls()
            .iter()
            .filter(|l| l.starts_with(&format!("role={role} ")))
            .count()
    }

    /// The prompt the fixture agent received for a role and attempt.
    pub fn prompt(&self, role: &str, attempt: u32) -> String {
        std::fs::read_to_string(self.logs.join(format!("{role}-{attempt}.prompt")))
            .unwrap_or_else(|_| panic!("no prompt for {role} attempt {attempt}"))
    }

    /// The argv the fixture agent received (without argv[0]).
    pub fn argv(&self, role: &str, attempt: u32) -> Vec<String> {
        let raw =
            std::fs::read(self.logs.join(format!("{role}-{attempt}.argv"))).expect("argv log");
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    pub fn branches(&self) -> Vec<String> {
        self.git(&["for-each-ref", "--format=%(refname:short)", "refs/heads/"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn pipeline_branches(&self) -> Vec<String> {
        self.branches()
            .into_iter()
            .filter(|b| b.starts_with("pipeline/"))
            .collect()
    }

    pub fn worktree_root(&self) -> PathBuf {
        self.root().join("repo.pipeline")
    }

    /// Worktree slot `n`: where runs work (one at a time starts in slot 0).
    pub fn slot(&self, n: u32) -> PathBuf {
        self.worktree_root().join(format!("slot-{n}"))
    }

    /// The worktree a run's record names, `None` when it has none (shipped, rolled back).
    pub fn worktree_of(&self, id: &str) -> Option<PathBuf> {
        let text =
            std::fs::read_to_string(self.path.join(format!(".git/pipeline/runs/{id}/run.json")))
                .ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["worktree"].as_str().map(PathBuf::from)
    }

    /// Worktrees git knows, other than the main one.
    pub fn linked_worktrees(&self) -> Vec<String> {
        self.git(&["worktree", "list", "--porcelain"])
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .skip(1)
            .map(str::to_owned)
            .collect()
    }

    /// Linked worktrees that hold a run: all but idle worktree slots. An idle slot is detached,
    /// named `slot-<n>`, and its state says no run has it.
    pub fn busy_worktrees(&self) -> Vec<String> {
        let listing = self.git(&["worktree", "list", "--porcelain"]);
        let mut busy = Vec::new();
        for entry in listing.split("\n\n").skip(1) {
            let Some(path) = entry.lines().find_map(|l| l.strip_prefix("worktree ")) else {
                continue;
            };
            let detached = entry.lines().any(|l| l == "detached");
            let slot = Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("slot-"))
                .map(str::to_owned);
            let idle = detached
                && slot.is_some_and(|n| {
                    std::fs::read_to_string(self.path.join(format!(".git/pipeline/slots/{n}.json")))
                        .ok()
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                        .is_some_and(|v| v["run"].is_null())
                });
            if !idle {
                busy.push(path.to_owned());
            }
        }
        busy
    }

    pub fn run_ids(&self) -> Vec<String> {
        let dir = self.path.join(".git/pipeline/runs");
        let mut ids: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Everything of the user's that a run must leave alone.
    pub fn user_state(&self) -> UserState {
        let refs = self
            .git(&["for-each-ref", "--format=%(refname) %(objectname)"])
            .lines()
            .filter(|l| {
                !l.starts_with("refs/heads/pipeline/")
                    && !l.starts_with("refs/pipeline/")
                    && !l.starts_with("refs/notes/pipeline ")
            })
            .map(str::to_owned)
            .collect();
        let mut files = BTreeMap::new();
        for entry in walkdir::WalkDir::new(&self.path)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".git")
        {
            let entry = entry.expect("walk");
            let rel = entry
                .path()
                .strip_prefix(&self.path)
                .expect("rel")
                .to_owned();
            let meta = entry.path().symlink_metadata().expect("meta");
            use std::os::unix::fs::PermissionsExt;
            let content = if meta.is_file() {
                std::fs::read(entry.path()).expect("read")
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(entry.path())
                    .expect("link")
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes()
            } else {
                Vec::new()
            };
            files.insert(rel, (meta.permissions().mode(), content));
        }
        UserState {
            head: std::fs::read_to_string(self.path.join(".git/HEAD")).expect("HEAD"),
            refs,
            index: std::fs::read(self.path.join(".git/index")).unwrap_or_default(),
            files,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct UserState {
    pub head: String,
    pub refs: Vec<String>,
    pub index: Vec<u8>,
    pub files: BTreeMap<PathBuf, (u32, Vec<u8>)>,
}

/// Assert that the user's checkout is exactly as before (without printing megabytes on failure).
#[track_caller]
pub fn assert_untouched(before: &UserState, after: &UserState) {
    assert_eq!(before.head, after.head, "HEAD changed");
    assert_eq!(before.refs, after.refs, "the user's refs changed");
    assert!(before.index == after.index, "the user's index changed");
    let b: Vec<_> = before.files.keys().collect();
    let a: Vec<_> = after.files.keys().collect();
    assert_eq!(b, a, "the set of files in the user's checkout changed");
    for (path, v) in &before.files {
        assert!(
            after.files.get(path) == Some(v),
            "{} changed",
            path.display()
        );
    }
}

/// Assert that a process no longer runs (gone, or a zombie waiting for its parent).
#[track_caller]
pub fn assert_process_gone(pid: i32, what: &str) {
    let alive =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "{what} (pid {pid}) is still running");
}

/// Read a pid written by the fixture agent's `spawn` action.
pub fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .expect("the agent started a child")
        .trim()
        .parse()
        .expect("pid")
}

/// `(stage, status)` of each entry of a run's `stages`.
pub fn stage_list(r: &serde_json::Value) -> Vec<(String, String)> {
    r["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap_or("").to_owned(),
                s["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Owned pairs, for comparing with `stage_list`.
pub fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// The tool on PATH, or `None` (a panic in CI, where .ci/run installs it).
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have {name} on PATH (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {name} is not on PATH");
    }
    found
}

/// insta filters for what a snapshot of git-pipeline's output must not hold: paths under the
/// test's temporary folder, commit and session ids, clock times, durations, token estimates
/// (they follow the prompts' length, which holds temp paths) and what this machine's sandbox
/// enforces (tests/it/sandbox.rs checks that). Run ids stay: the tests' clock fixes them.
pub fn snapshot_settings(repo: &TestRepo) -> insta::Settings {
    let root: String = repo
        .root()
        .to_string_lossy()
        .chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect();
    [
        (root.as_str(), "<tmp>"),
        (r"\S*gp-test-[A-Za-z0-9_]+", "<tmp>"),
        (r"(?m)^(\s*sandbox\s+).*$", "$1<what this machine enforces>"),
        (r"(?m)^\[\s*\d+(\.\d+)?s\]", "[time]"),
        (r"(?m)^\d\d:\d\d:\d\d\.\d{3}", "<hh:mm:ss>"),
        (
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            "<uuid>",
        ),
        (r"\b[0-9a-f]{40}\b", "<commit>"),
        (r"\b[0-9a-f]{12}\b", "<commit>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>"),
        (r"(duration_s|tokens)=[0-9.]+", "$1=<n>"),
        (r"\b\d+(\.\d+)?(ms|s)\b", "<secs>"),
        (r"\b\d+m \d+s\b", "<secs>"),
        (r"(just now|\d+[smhd] ago)", "<age>"),
        (r"~?\d+(\.\d+)?[kM]? tokens", "<n> tokens"),
        (r"tokens \d+", "tokens <n>"),
    ]
    .into_iter()
    .fold(insta::Settings::clone_current(), |mut s, (regex, with)| {
        s.add_filter(regex, with);
        s
    })
}
