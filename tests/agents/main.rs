//! The agent contract suite: every preset run end to end with the real agent CLI (installed at
//! the versions of `src/preset/tested.tsv` by `tests/agents/install`) against the scripted model
//! server `tests/agents/modelserver.py` on 127.0.0.1.
//!
//! Each case is a real `git pipeline run`: the builder writes a file through the CLI's own tool
//! call; a gate fails attempt 1 and asks for another word, so the builder runs again (and resumes
//! its session where the preset can); the verifier, in the CLI's read-only mode, tries to write a
//! file and must be refused; its verdict is parsed; the usage recorded is what the server sent.
//!
//! The CLIs are big downloads, so the cases are ignored in a plain `cargo test`:
//! `tests/agents/run` installs the CLIs and runs them, and prints which CLIs passed, failed or
//! were skipped (a CLI that could not be installed), with the reason. Each case writes its result
//! under `$AGENT_CLIS_DIR/report/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_git-pipeline");
const HERE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agents");

/// Where `tests/agents/install` put the CLIs.
fn clis_dir() -> PathBuf {
    match std::env::var_os("AGENT_CLIS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME"))
            .join(".cache/git-pipeline-agents"),
    }
}

/// The scripted model server, stopped when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let (log, ready) = (dir.join("server.jsonl"), dir.join("server.port"));
        let child = Command::new("python3")
            .arg(format!("{HERE}/modelserver.py"))
            .args(["serve", "--log"])
            .arg(&log)
            .arg("--ready")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.err")).expect("server.err"))
            .spawn()
            .expect("start python3 modelserver.py");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&ready) {
                break p.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "the model server did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Every request the server answered, as it logged them.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment a CLI needs to use the server, its config written into `home`.
fn cli_env(preset: &str, url: &str, home: &Path) -> Vec<(String, String)> {
    let out = Command::new("python3")
        .arg(format!("{HERE}/modelserver.py"))
        .args(["env", "--cli", preset, "--url", url, "--home"])
        .arg(home)
        .output()
        .expect("modelserver.py env");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Which environment a case runs in.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Env {
    /// git-pipeline's sandbox where the machine has one (`run.sandbox = "auto"`), no bubblewrap.
    Plain,
    /// The same with `bwrap` on PATH (Debian's bubblewrap, unpacked by the install script):
    /// CLIs that sandbox with it find it.
    Bwrap,
    /// `run.sandbox = "off"`, bubblewrap on PATH: the CLI's own sandbox is the only one.
    NoSandbox,
}

impl Env {
    fn name(self) -> &'static str {
        match self {
            Env::Plain => "plain",
            Env::Bwrap => "bwrap",
            Env::NoSandbox => "no-sandbox",
        }
    }
}

/// How a preset is expected to behave, per what its CLI can do.
struct Expect {
    /// Its session is resumed on fix attempt 2 (the server sees the earlier conversation).
    resumes: bool,
    usage: Reported,
    /// Its read-only mode refuses every write. droid's runs shell commands the model itself
    /// calls low-risk, `printf > file` included: without git-pipeline's sandbox only the
    /// read-only check after the step stops that write, and the run fails.
    read_only_holds: bool,
    /// It prints events as it goes (aider prints text).
    streams: bool,
}

/// How exactly a CLI reports the tokens the server sent.
#[derive(PartialEq)]
enum Reported {
    /// Every token of every call.
    Exact,
    /// Every call, rounded (aider prints `1.0k`).
    Rounded,
    /// Exact, but not its side calls (opencode's title call is in no event).
    WithoutSideCalls,
}

fn expect(preset: &str) -> Expect {
    let (resumes, usage) = match preset {
        "claude" | "gemini" | "codex" => (true, Reported::Exact),
        "aider" => (false, Reported::Rounded),
        "opencode" => (true, Reported::WithoutSideCalls),
        _ => (false, Reported::Exact),
    };
    Expect {
        resumes,
        usage,
        read_only_holds: preset != "droid",
        streams: preset != "aider",
    }
}

/// What a case found, for the report.
struct Found {
    notes: Vec<String>,
}

fn report(preset: &str, env: Env, result: &str) {
    let dir = clis_dir().join("report");
    let _ = std::fs::create_dir_all(&dir);
    let name = format!("{preset}-{}", env.name());
    if let Ok(mut f) = std::fs::File::create(dir.join(name)) {
        let _ = writeln!(f, "{result}");
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One preset, end to end; a CLI that was not installed is reported as skipped, with why.
fn contract(preset: &str, case: Env) {
    let status = std::fs::read_to_string(clis_dir().join("status").join(preset))
        .unwrap_or_else(|_| "skipped not installed: run tests/agents/install".to_owned());
    if let Some(why) = status.trim().strip_prefix("skipped ") {
        eprintln!("SKIPPED {preset}: {why}");
        report(preset, case, &format!("skipped: {why}"));
        return;
    }
    let bwrap_bin = clis_dir().join("bwrap/usr/bin");
    if case != Env::Plain && !bwrap_bin.join("bwrap").exists() {
        let why = "no bwrap: run tests/agents/install --bwrap";
        eprintln!("SKIPPED {preset} ({}): {why}", case.name());
        report(preset, case, &format!("skipped: {why}"));
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical tmp");
    let server = Server::start(&root);
    let home = root.join("home");
    let env = cli_env(preset, &server.url, &home);
    let repo = root.join("repo");
    std::fs::create_dir_all(repo.join("src")).expect("repo");
    std::fs::write(repo.join("src/lib.rs"), "pub fn f() {}\n").expect("lib.rs");
    std::fs::write(
        repo.join(".pipeline.toml"),
        format!(
            r#"version = 1
[run]
sandbox = "{sandbox}"

[scope]
allow = ["src/**"]

[agents.builder]
command = "{preset}"
timeout = "4m"

[agents.verifier]
command = "{preset}"
timeout = "4m"

[[gates]]
name = "contract"
command = ["sh", "-c", "grep -qx two src/contract.txt || {{ echo 'CONTRACT-WRITE src/contract.txt two'; exit 1; }}"]
"#,
            sandbox = if case == Env::NoSandbox { "off" } else { "auto" }
        ),
    )
    .expect("config");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.name", "Contract"]);
    git(&repo, &["config", "user.email", "contract@example.invalid"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "start"]);
    let mut path = vec![clis_dir().join("bin")];
    if case != Env::Plain {
        path.push(bwrap_bin);
    }
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).expect("PATH");
    // The config runs a gate: trust it first, as its user would.
    // Hermetic: nothing of the developer's shell (API keys, base URLs, git config) reaches the
    // CLIs; only what modelserver.py env set up for them.
    let hermetic = |cmd: &mut Command| {
        cmd.current_dir(&repo)
            .env_clear()
            .env("PATH", &path)
            .env("LC_ALL", "C.UTF-8")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
    };
    let mut trust = Command::new(BIN);
    hermetic(trust.arg("trust"));
    let trusted = trust.output().expect("trust");
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let task = "Make the contract file. CONTRACT-WRITE src/contract.txt one CONTRACT-TRY-WRITE src/verifier.txt";
    let started = Instant::now();
    let mut run = Command::new(BIN);
    hermetic(run.args(["run", "--json", "--risk", "low", task]));
    let out = run.output().expect("git pipeline run");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let context = format!(
        "{preset} ({}): exit {:?} after {took:?}\nstdout: {stdout}\nstderr: {stderr}\nserver: {:#?}",
        case.name(),
        out.status.code(),
        server.requests()
    );
    let found = if case == Env::NoSandbox && !expect(preset).read_only_holds {
        detected(&repo, &stdout, out.status.code())
    } else {
        check(preset, &repo, &server, &stdout, out.status.code())
    };
    match found {
        Ok(found) => {
            let notes = found.notes.join("; ");
            eprintln!("PASSED {preset} ({}) in {took:.1?}: {notes}", case.name());
            report(preset, case, &format!("passed in {took:.1?}: {notes}"));
        }
        Err(why) => {
            report(preset, case, &format!("failed: {why}"));
            let kept = tmp.keep();
            panic!("{why}\n(kept: {})\n\n{context}", kept.display());
        }
    }
}

/// A CLI whose read-only mode let the verifier write, without git-pipeline's sandbox: the
/// write is detected, the run fails, and nothing ships.
fn detected(repo: &Path, stdout: &str, code: Option<i32>) -> Result<Found, String> {
    let rec: Value = serde_json::from_str(stdout).map_err(|e| format!("no JSON result: {e}"))?;
    let error = rec["error"].as_str().unwrap_or("");
    if code != Some(1) || !error.contains("changed files in the worktree; it must only read") {
        return Err(format!(
            "expected the read-only check to fail the run (exit 1), got exit {code:?}: {error}"
        ));
    }
    if !rec["commit"].is_null() || !git(repo, &["branch", "--list", "pipeline/*"]).is_empty() {
        return Err("a run whose verifier wrote files left a commit or a branch".to_owned());
    }
    Ok(Found {
        notes: vec![
            "its read-only mode let the verifier's shell write; detected, the run failed, nothing shipped"
                .to_owned(),
        ],
    })
}

/// The contract, checked on what the run did and what the server saw.
fn check(
    preset: &str,
    repo: &Path,
    server: &Server,
    stdout: &str,
    code: Option<i32>,
) -> Result<Found, String> {
    let expect = expect(preset);
    let mut notes = Vec::new();
    let rec: Value = serde_json::from_str(stdout).map_err(|e| format!("no JSON result: {e}"))?;
    if code != Some(0) {
        return Err(format!(
            "the run did not ship: {} ({})",
            rec["status"], rec["error"]
        ));
    }
    // The builder's edit is what shipped, and nothing else: no CLI litter, no verifier write.
    let shipped = rec["commit"].as_str().ok_or("no commit in the result")?;
    let changed = git(
        repo,
        &["diff", "--name-only", &format!("{shipped}^"), shipped],
    );
    if changed != "src/contract.txt" {
        return Err(format!(
            "the commit changed {changed:?}, not only src/contract.txt"
        ));
    }
    let content = git(repo, &["show", &format!("{shipped}:src/contract.txt")]);
    if content != "two" {
        return Err(format!(
            "src/contract.txt is {content:?}, not the second attempt's word"
        ));
    }
    // The attestation names the real CLI with the version it reported, and what the run used.
    let note: Value = serde_json::from_str(&git(
        repo,
        &["notes", "--ref=refs/notes/pipeline", "show", shipped],
    ))
    .map_err(|e| format!("the attestation note is not JSON: {e}"))?;
    let predicate = &note["predicate"];
    let by_builder = predicate["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["role"] == "builder"))
        .ok_or_else(|| format!("no builder in the attestation: {note}"))?;
    let version = by_builder["version"].as_str().unwrap_or("");
    if !version.chars().any(|c| c.is_ascii_digit()) {
        return Err(format!(
            "the attestation has no version of the builder's CLI: {by_builder}"
        ));
    }
    if predicate["usage"]["tokens"].as_u64().unwrap_or(0) == 0 {
        return Err(format!(
            "the attestation counts no tokens: {}",
            predicate["usage"]
        ));
    }
    notes.push(format!("attested with {} {version}", by_builder["cli"]));
    let requests = server.requests();
    let builder: Vec<&Value> = requests.iter().filter(|r| r["kind"] == "builder").collect();
    // Edited through the CLI's own tool call (aider: its edit block).
    let edits: Vec<&str> = builder
        .iter()
        .filter_map(|r| r["reply"].as_str())
        .filter(|r| *r != "text")
        .collect();
    if edits.is_empty() {
        return Err("the builder never made a tool call".to_owned());
    }
    let mut tools: Vec<&str> = Vec::new();
    for e in &edits {
        if !tools.contains(e) {
            tools.push(e);
        }
    }
    notes.push(format!("edits by {}", tools.join(", ")));
    // The read-only role: whatever the verifier tried, the file is not there (the run would
    // have failed otherwise) and the CLI refused it or never offered a tool that writes.
    let verifier: Vec<&Value> = requests
        .iter()
        .filter(|r| r["kind"] == "verifier")
        .collect();
    if verifier.is_empty() {
        return Err("the verifier never reached the server".to_owned());
    }
    let tried = verifier
        .iter()
        .filter_map(|r| r["reply"].as_str())
        .find(|r| r.starts_with("tool:"));
    let refusal = verifier
        .iter()
        .flat_map(|r| r["tool_results"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .next_back();
    notes.push(match (tried, refusal) {
        (Some(t), Some(r)) => format!(
            "verifier's {t} refused: {}",
            r.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(90)
                .collect::<String>()
        ),
        (Some(t), None) => format!("verifier's {t} had no result"),
        (None, _) => "verifier offered no write tool".to_owned(),
    });
    if repo.join("src/verifier.txt").exists() {
        return Err("the verifier's write reached the user's checkout".to_owned());
    }
    if rec["verification"]["approved"] != true {
        return Err(format!(
            "the verdict was not read as an approval: {}",
            rec["verification"]
        ));
    }
    // Session resume on attempt 2: the conversation holds attempt 1's prompt too.
    let second: Vec<&&Value> = builder
        .iter()
        .filter(|r| r["prompts"].as_u64().unwrap_or(0) >= 2)
        .collect();
    if expect.resumes && second.is_empty() {
        return Err("attempt 2 did not resume the builder's session".to_owned());
    }
    notes.push(if second.is_empty() {
        "fresh session per attempt".to_owned()
    } else {
        "session resumed on attempt 2".to_owned()
    });
    // Live activity: a CLI that streams events shows its builder's tool calls as they come.
    let id = rec["run_id"].as_str().ok_or("no run id")?;
    let events =
        std::fs::read_to_string(repo.join(format!(".git/pipeline/runs/{id}/events.jsonl")))
            .map_err(|e| format!("no events: {e}"))?;
    let activity = events
        .lines()
        .filter(|l| l.contains("\"agent_activity\"") && l.contains("\"role\":\"builder\""))
        .count();
    if expect.streams && activity == 0 {
        return Err("no agent_activity event from the builder's stream".to_owned());
    }
    if expect.streams {
        notes.push(format!("{activity} activity events"));
    }
    // Usage: what the run recorded against what the server sent.
    let sent: u64 = requests
        .iter()
        .filter(|r| expect.usage != Reported::WithoutSideCalls || r["kind"] != "side")
        .map(|r| r["input_tokens"].as_u64().unwrap_or(0) + r["output_tokens"].as_u64().unwrap_or(0))
        .sum();
    let recorded = rec["metrics"]["tokens"]
        .as_u64()
        .ok_or("no tokens in the result")?;
    let estimated = rec["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["tokens_estimated"] == true);
    let close = match expect.usage {
        Reported::Rounded => recorded.abs_diff(sent) as f64 / sent.max(1) as f64 <= 0.05,
        _ => recorded == sent,
    };
    if estimated || !close {
        return Err(format!(
            "usage: the run recorded {recorded} tokens (estimated: {estimated}), the server sent {sent}"
        ));
    }
    notes.push(match expect.usage {
        Reported::Exact => format!("usage exact ({sent} tokens)"),
        Reported::Rounded => format!("usage {recorded} of {sent} tokens (the CLI rounds)"),
        Reported::WithoutSideCalls => format!("usage exact ({sent} tokens; side calls unreported)"),
    });
    Ok(Found { notes })
}

macro_rules! cases {
    ($($name:ident: $preset:literal, $env:expr;)*) => {$(
        #[test]
        #[ignore = "needs the agent CLIs: tests/agents/run"]
        fn $name() {
            contract($preset, $env);
        }
    )*};
}

cases! {
    claude: "claude", Env::Plain;
    claude_with_bubblewrap: "claude", Env::Bwrap;
    claude_without_our_sandbox: "claude", Env::NoSandbox;
    codex: "codex", Env::Plain;
    codex_with_bubblewrap: "codex", Env::Bwrap;
    codex_without_our_sandbox: "codex", Env::NoSandbox;
    gemini: "gemini", Env::Plain;
    gemini_with_bubblewrap: "gemini", Env::Bwrap;
    gemini_without_our_sandbox: "gemini", Env::NoSandbox;
    opencode: "opencode", Env::Plain;
    opencode_with_bubblewrap: "opencode", Env::Bwrap;
    opencode_without_our_sandbox: "opencode", Env::NoSandbox;
    aider: "aider", Env::Plain;
    aider_with_bubblewrap: "aider", Env::Bwrap;
    aider_without_our_sandbox: "aider", Env::NoSandbox;
    droid: "droid", Env::Plain;
    droid_with_bubblewrap: "droid", Env::Bwrap;
    droid_without_our_sandbox: "droid", Env::NoSandbox;
}
