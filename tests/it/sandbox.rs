//! The OS sandbox (Landlock here): the hostile agents' writes outside what the policy allows fail
//! in the agent with a permission error and the run says so; normal edits and commits inside
//! the worktree still work; one run cannot write into another's worktree; gates can be kept off
//! the network.

use serde_json::Value;

use crate::common::TestRepo;

/// This machine's kernel must offer Landlock for these tests to mean anything: say so loudly
/// rather than pass.
fn require_landlock(repo: &TestRepo) {
    let out = repo.pipeline(&["doctor", "--json"]);
    let v = out.json();
    let sandbox = v["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["check"] == "sandbox"))
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        sandbox["detail"]
            .as_str()
            .unwrap_or("")
            .contains("fully enforced"),
        "these tests need a kernel with Landlock: {sandbox}"
    );
}

/// A sandboxed run whose builder does `trick`; returns the record.
fn sandboxed(repo: &TestRepo, trick: &str) -> Value {
    repo.agents(
        &["*:write:src/new.rs:x", trick],
        &["*:approve"],
        "[run]\nsandbox = \"required\"\n[limits]\nmax_fix_attempts = 0\n",
    );
    require_landlock(repo);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    let r = out.json();
    assert_eq!(r["commit"], Value::Null, "nothing may ship: {}", out.stderr);
    r
}

fn stderr_of_builder(repo: &TestRepo, r: &Value) -> String {
    let id = r["run_id"].as_str().unwrap_or("");
    let dir = repo
        .path
        .join(".git/pipeline/runs")
        .join(id)
        .join("outputs");
    std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".stderr"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect::<String>()
        })
        .unwrap_or_default()
}

#[test]
fn writes_outside_the_policy_fail_in_the_agent_and_the_run_says_so() {
    // (what the agent tries, what must stay as it was)
    let cases: [(&str, &str); 6] = [
        ("*:write:ROOT/repo/src/lib.rs:pwned", "the user's checkout"),
        ("*:run:git config core.hooksPath /tmp/evil", ".git/config"),
        (
            "*:run:printf 'echo pwned' > \"$(git rev-parse --git-common-dir)/hooks/pre-commit\"",
            "hooks",
        ),
        (
            "*:run:git notes --ref=pipeline add -f -m '{\"approved\":true}' HEAD",
            "refs/notes/pipeline",
        ),
        (
            "*:run:git update-ref refs/heads/main $(git commit-tree -m x $(git write-tree))",
            "main",
        ),
        ("*:run:echo x > \"$HOME/planted\"", "the home folder"),
    ];
    for (trick, what) in cases {
        let repo = TestRepo::new();
        let config = std::fs::read(repo.path.join(".git/config")).expect("config");
        let r = sandboxed(&repo, trick);
        assert_eq!(r["reason"], "agent_error", "{what}: {r}");
        let err = stderr_of_builder(&repo, &r);
        assert!(
            [
                "Permission denied",
                "Operation not permitted",
                "unable to create",
                "cannot lock"
            ]
            .iter()
            .any(|w| err.contains(w)),
            "{what}: the agent saw a permission error: {err}"
        );
        let last: String = err
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .chars()
            .take(60)
            .collect();
        assert!(
            r["error"].as_str().unwrap_or("").contains(&last),
            "{what}: the run's error carries the agent's last words ({last}): {r}"
        );
        assert_eq!(repo.read("src/lib.rs"), "pub fn answer() -> u32 { 42 }\n");
        assert_eq!(
            std::fs::read(repo.path.join(".git/config")).expect("config"),
            config
        );
        assert!(!repo.path.join(".git/hooks/pre-commit").exists(), "{what}");
        assert!(
            repo.git_out(&["rev-parse", "-q", "--verify", "refs/notes/pipeline"])
                .stdout
                .trim()
                .is_empty(),
            "{what}"
        );
        assert_eq!(
            repo.git(&["rev-parse", "main"]).trim(),
            r["base"].as_str().unwrap_or(""),
            "{what}"
        );
        assert!(!repo.home.join("planted").exists(), "{what}");
    }
}

#[test]
fn edits_and_commits_inside_the_worktree_still_work_and_the_run_records_its_sandbox() {
    let repo = TestRepo::new();
    // The gate's build output is ignored, as a build folder is.
    repo.write(".gitignore", "target/\n");
    repo.commit_all("ignore the build");
    repo.agents(
        &["*:write:src/new.rs:x", "*:commit:agent commit", "*:write:src/more.rs:y"],
        &["*:approve"],
        "[run]\nsandbox = \"required\"\n[[gates]]\nname = \"build\"\ncommand = [\"sh\", \"-c\", \"mkdir -p target && echo built > target/out && test -n \\\"$TMPDIR\\\" && echo t > \\\"$TMPDIR/scratch\\\"\"]\n",
    );
    require_landlock(&repo);
    let out = repo.pipeline(&["run", "--json", "add new.rs"]);
    out.assert_code(0);
    let r = out.json();
    assert!(
        r["sandbox"]
            .as_str()
            .unwrap_or("")
            .starts_with("landlock ABI"),
        "{r}"
    );
    let mut changed: Vec<String> = r["changed_paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    changed.sort();
    assert_eq!(changed, ["src/more.rs", "src/new.rs"]);
    let id = r["run_id"].as_str().expect("id");
    let show = repo.pipeline(&["show", id]);
    assert!(
        show.stdout.contains("sandbox   landlock ABI"),
        "{}",
        show.stdout
    );
}

#[test]
fn a_run_cannot_write_into_another_runs_worktree() {
    let repo = TestRepo::new();
    // B waits in its builder; A's builder tries to plant a file in every other run's worktree.
    let wait = "*:run:touch LOGS/started-$PIPELINE_RUN_ID; if grep -q wait \"$PIPELINE_PROMPT_FILE\"; then i=0; while [ ! -e ROOT/go ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; fi";
    let plant = "*:run:for w in ROOT/repo.pipeline/*/; do [ \"$w\" = \"$PIPELINE_WORKTREE/\" ] || { echo evil > \"$w/src/evil.txt\"; } 2>> LOGS/plant.err || true; done";
    repo.agents(
        &["*:write:src/new.rs:x", wait, plant],
        &["*:approve"],
        "[run]\nsandbox = \"required\"\n",
    );
    require_landlock(&repo);
    let b = repo
        .pipeline_cmd()
        .args(["run", "--json", "add new.rs, wait"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while repo.run_ids().is_empty()
        || !std::fs::read_dir(repo.root().join("logs"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("started-"))
            })
            .unwrap_or(false)
    {
        assert!(std::time::Instant::now() < deadline, "B never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let a = repo.pipeline(&["run", "--json", "add new.rs now"]);
    a.assert_code(0);
    std::fs::write(repo.root().join("go"), "").expect("go");
    let out = b.wait_with_output().expect("b");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["changed_paths"], serde_json::json!(["src/new.rs"]), "{r}");
    let planted = std::fs::read_to_string(repo.root().join("logs/plant.err")).unwrap_or_default();
    assert!(planted.contains("Permission denied"), "{planted}");
}

/// A build tool's cache that the user's environment moved (`CARGO_HOME` elsewhere than
/// `~/.cargo`) is as writable to gates as the default one: a `cargo` gate that downloads crates
/// works as in the user's shell. Its `bin` folder is not.
#[test]
fn a_cache_moved_by_the_environment_is_writable_to_gates_but_not_its_bin() {
    let repo = TestRepo::new();
    let cargo_home = repo.root().join("cargo-home");
    std::fs::create_dir_all(cargo_home.join("registry")).expect("mkdir");
    std::fs::create_dir_all(cargo_home.join("bin")).expect("mkdir");
    let gate = "[[gates]]\nname = \"fetch\"\ncommand = [\"bash\", \"-c\", \"echo crate > \\\"$CARGO_HOME/registry/c\\\" && { echo planted > \\\"$CARGO_HOME/bin/cargo\\\" || true; }\"]\n";
    repo.agents(
        &["*:write:src/new.rs:x"],
        &["*:approve"],
        &format!("[run]\nsandbox = \"required\"\n[limits]\nmax_fix_attempts = 0\n{gate}"),
    );
    require_landlock(&repo);
    let out = repo.pipeline_env(
        &["run", "--json", "add new.rs"],
        &[("CARGO_HOME", cargo_home.to_str().expect("utf-8"))],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(cargo_home.join("registry/c")).expect("written"),
        "crate\n"
    );
    assert!(
        !cargo_home.join("bin/cargo").exists(),
        "bin stays read-only"
    );
}

#[test]
fn gates_can_be_kept_off_the_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let gate = format!(
        "[[gates]]\nname = \"net\"\ncommand = [\"bash\", \"-c\", \"exec 3<>/dev/tcp/127.0.0.1/{port}\"]\n"
    );
    for (network, code) in [("true", 0), ("false", 4)] {
        let repo = TestRepo::new();
        repo.agents(
            &["*:write:src/new.rs:x"],
            &["*:approve"],
            &format!(
                "[run]\nsandbox = \"required\"\n[sandbox]\nnetwork = {network}\n[limits]\nmax_fix_attempts = 0\n{gate}"
            ),
        );
        require_landlock(&repo);
        let out = repo.pipeline(&["run", "--json", "add new.rs"]);
        assert_eq!(out.code, code, "network = {network}: {}", out.stderr);
    }
    drop(listener);
}

#[test]
fn the_sandbox_can_be_turned_off_and_an_unknown_mode_is_a_usage_error() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:ROOT/outside.txt:x", "*:write:src/new.rs:x"],
        &["*:approve"],
        "[run]\nsandbox = \"off\"\n",
    );
    let out = repo.pipeline(&["run", "--json", "add new.rs"]);
    out.assert_code(0);
    assert!(repo.root().join("outside.txt").exists());
    assert_eq!(out.json()["sandbox"], "off (run.sandbox = \"off\")");
    repo.agents(
        &["*:write:src/new.rs:x"],
        &["*:approve"],
        "[run]\nsandbox = \"maybe\"\n",
    );
    let out = repo.pipeline(&["run", "add new.rs"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("unknown variant `maybe`"),
        "{}",
        out.stderr
    );
}

/// Prevention for the read-only roles: in the sandbox, a verifier's or a planner's write to the
/// worktree fails in the agent itself (whatever its CLI's own read-only mode lets through, such
/// as a shell command a model calls harmless), the run fails and nothing of it is written.
#[test]
fn read_only_roles_cannot_write_the_worktree() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/new.rs:x"],
        &["*:write:src/new.rs:tampered", "*:approve"],
        "[run]\nsandbox = \"required\"\n",
    );
    require_landlock(&repo);
    let out = repo.pipeline(&["run", "--json", "--keep", "add the helper"]);
    out.assert_code(1);
    let r = out.json();
    let error = r["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("the verifier (verifier) failed") && error.contains("Permission denied"),
        "{r}"
    );
    let wt = std::path::PathBuf::from(r["worktree"].as_str().expect("kept worktree"));
    assert_eq!(
        std::fs::read_to_string(wt.join("src/new.rs")).expect("the builder's file"),
        "x\n",
        "the builder's work is as it left it"
    );
}

/// A step cannot signal what runs outside its sandbox: its `kill -9` of git-pipeline (which
/// would skip the checks after the step) is refused, and the run goes on and ships.
#[test]
fn a_step_cannot_kill_git_pipeline() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            "*:write:src/new.rs:x",
            "*:run:kill -9 $(awk '{print $4}' /proc/$PPID/stat) || echo refused >&2",
        ],
        &["*:approve"],
        "[run]\nsandbox = \"required\"\n",
    );
    require_landlock(&repo);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    let r = out.json();
    assert!(r["commit"].is_string(), "{}", out.stderr);
    assert!(
        stderr_of_builder(&repo, &r).contains("refused"),
        "{}",
        out.stderr
    );
}
