//! Every way a run can fail ends with the right exit code, a clear error line, the work archived,
//! and nothing of the run left behind (unless asked to keep it).

use serde_json::Value;

use crate::common::{TestRepo, assert_process_gone, assert_untouched, read_pid};

/// The run's record after a failed `run --json`.
fn failed(repo: &TestRepo, args: &[&str], code: i32) -> Value {
    let out = repo.pipeline(args);
    out.assert_code(code);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("error: run ") && l.contains(" failed: ")),
        "{}",
        out.stderr
    );
    let r = out.json();
    assert_eq!(r["status"], "failed");
    assert_eq!(r["exit_code"], code);
    r
}

/// Rolled back: no worktree, no branch, the archive ref holds the work.
#[track_caller]
fn assert_rolled_back(repo: &TestRepo, r: &Value) {
    assert_discarded(repo, r);
    let id = r["run_id"].as_str().expect("id");
    let archive = format!("refs/pipeline/archive/{id}");
    assert_eq!(r["archive"], archive.as_str());
    assert_eq!(
        repo.git(&["rev-parse", &format!("{archive}^")]),
        r["base"].as_str().expect("base"),
        "the archive commit sits on the base"
    );
}

/// No worktree, no branch left of the run.
#[track_caller]
fn assert_discarded(repo: &TestRepo, r: &Value) {
    let id = r["run_id"].as_str().expect("id");
    assert_eq!(r["rolled_back"], true);
    assert_eq!(r["worktree"], Value::Null);
    assert!(
        repo.pipeline_branches().is_empty(),
        "{:?}",
        repo.pipeline_branches()
    );
    assert!(repo.busy_worktrees().is_empty());
    assert!(!repo.worktree_root().join(id).exists());
    assert_eq!(repo.worktree_of(id), None);
}

#[test]
fn scope_violation_to_the_end_exits_6_without_running_gates_and_archives_the_work() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            "*:write:src/ok.rs:ok",
            "*:append:Cargo.lock:changed",
            "*:write:new dir/ünïcode file.txt:x",
        ],
        &["*:approve"],
        r#"
[scope]
allow = ["src/**", "Cargo.lock"]
deny = ["Cargo.lock"]
[limits]
max_fix_attempts = 2
[[gates]]
name = "never"
command = ["sh", "-c", "echo ran >> LOGS/gate.log"]
"#,
    );
    let before = repo.user_state();
    let r = failed(&repo, &["run", "--json", "add the helper"], 6);
    assert_eq!(r["reason"], "scope_violation");
    assert_eq!(repo.calls_of("builder"), 3, "1 attempt + 2 fixes");
    assert_eq!(repo.calls_of("verifier"), 0);
    assert!(
        !repo.logs.join("gate.log").exists(),
        "gates must never see out-of-scope work"
    );
    assert_rolled_back(&repo, &r);
    let id = r["run_id"].as_str().expect("id");
    // The out-of-scope work is not lost.
    assert_eq!(
        repo.git(&[
            "show",
            &format!("refs/pipeline/archive/{id}:new dir/ünïcode file.txt")
        ]),
        "x"
    );
    let out = repo.pipeline(&["show", id]);
    assert!(out.stdout.contains("scope_violation"), "{}", out.stdout);
    assert_untouched(&before, &repo.user_state());
}

#[test]
fn scope_violation_message_lists_the_paths() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:new dir/ünïcode file.txt:x"],
        &["*:approve"],
        "[scope]\nallow = [\"src/**\"]\n[limits]\nmax_fix_attempts = 0\n",
    );
    let out = repo.pipeline(&["run", "do it"]);
    out.assert_code(6);
    assert!(
        out.error_line().contains("outside the scope"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("A new dir/ünïcode file.txt: not in scope.create"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("refs/pipeline/archive/"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_gate_failing_to_the_end_exits_4() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:append:src/new.rs:x"],
        &["*:approve"],
        "[limits]\nmax_fix_attempts = 2\nmax_same_error = 0\n[[gates]]\nname = \"test\"\ncommand = [\"sh\", \"-c\", \"echo boom; exit 1\"]\n",
    );
    let r = failed(&repo, &["run", "--json", "add the helper"], 4);
    assert_eq!(r["reason"], "gate_failed");
    assert_eq!(repo.calls_of("builder"), 3);
    assert_eq!(repo.calls_of("verifier"), 0);
    assert_eq!(r["gates"].as_array().map(Vec::len), Some(3));
    assert_rolled_back(&repo, &r);
}

#[test]
fn a_missing_gate_binary_fails_closed_with_exit_4() {
    // A program missing when the run starts stops it with exit 3 before any agent
    // (ux::a_missing_gate_program_stops_the_run_before_any_agent); one that a gate's own
    // script cannot find fails the gate, closed.
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/new.rs:x"],
        &["*:approve"],
        "[limits]\nmax_fix_attempts = 0\n[[gates]]\nname = \"lint\"\ncommand = [\"sh\", \"-c\", \"no-such-linter-xyz --check\"]\n",
    );
    let r = failed(&repo, &["run", "--json", "add the helper"], 4);
    assert_eq!(r["gates"][0]["status"], "fail");
    assert_eq!(r["gates"][0]["error"], "exit status 127");
    assert_eq!(repo.calls_of("verifier"), 0);
}

#[test]
fn a_gate_that_times_out_or_crashes_fails() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/new.rs:x"],
        &["*:approve"],
        "[limits]\nmax_fix_attempts = 0\n[[gates]]\nname = \"slow\"\ncommand = [\"sleep\", \"30\"]\ntimeout = \"1s\"\n",
    );
    let r = failed(&repo, &["run", "--json", "add the helper"], 4);
    assert_eq!(r["gates"][0]["error"], "timed out after 1s");

    repo.agents(
        &["*:write:src/new.rs:x"],
        &["*:approve"],
        "[limits]\nmax_fix_attempts = 0\n[[gates]]\nname = \"crash\"\ncommand = [\"sh\", \"-c\", \"kill -SEGV $$\"]\n",
    );
    let r = failed(&repo, &["run", "--json", "add the helper"], 4);
    assert_eq!(r["gates"][0]["error"], "killed by signal SIGSEGV");
}

#[test]
fn the_verifier_rejecting_twice_exits_2_after_exactly_two_rounds() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:append:src/new.rs:x"],
        &["1:reject:first problem", "2:reject:second problem"],
        "",
    );
    let r = failed(&repo, &["run", "--json", "add the helper"], 2);
    assert_eq!(r["reason"], "verify_rejected");
    assert_eq!(repo.calls_of("verifier"), 2);
    assert_eq!(repo.calls_of("builder"), 2);
    assert_eq!(r["verification"]["rounds"], 2);
    assert_eq!(
        r["verification"]["issues"],
        serde_json::json!(["second problem"])
    );
    assert_rolled_back(&repo, &r);
}

#[test]
fn garbage_from_the_verifier_is_a_rejection() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/new.rs:x"],
        &["*:garbage"],
        "[verify]\nmax_rounds = 1\n",
    );
    let r = failed(&repo, &["run", "--json", "add the helper"], 2);
    assert_eq!(r["verification"]["approved"], false);
    let issue = r["verification"]["issues"][0].as_str().unwrap_or("");
    assert!(issue.starts_with("no verdict"), "{issue}");
    assert_eq!(repo.pipeline_branches().len(), 0);
}

#[test]
fn a_verdict_inside_an_agent_json_envelope_counts_with_its_usage() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/new.rs:x"], &["*:claude-approve"], "");
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    let r = out.json();
    let v = &r["stages"][3];
    assert_eq!(v["stage"], "verification");
    assert_eq!(v["tokens"], 1280);
    assert_eq!(v["tokens_estimated"], false);
    assert_eq!(v["cost_usd"], 0.0123);
    assert_eq!(r["stages"][2]["tokens_estimated"], true);
}

#[test]
fn a_builder_exiting_non_zero_fails_with_exit_1_and_rolls_back() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/half.rs:x", "*:exit:3"], &["*:approve"], "");
    let r = failed(&repo, &["run", "--json", "add the helper"], 1);
    assert_eq!(r["reason"], "agent_error");
    assert!(
        r["error"].as_str().unwrap_or("").contains("exit status 3"),
        "{r}"
    );
    assert_eq!(repo.calls_of("verifier"), 0);
    assert_rolled_back(&repo, &r);
    let id = r["run_id"].as_str().expect("id");
    assert_eq!(
        repo.git(&["show", &format!("refs/pipeline/archive/{id}:src/half.rs")]),
        "x"
    );
}

#[test]
fn a_builder_that_changes_nothing_fails_clearly() {
    let repo = TestRepo::new();
    repo.agents(&["*:say:nothing to do"], &["*:approve"], "");
    let r = failed(&repo, &["run", "--json", "add the helper"], 1);
    assert_eq!(r["error"], "the builder finished without changing any file");
    assert_eq!(repo.calls_of("verifier"), 0);
}

#[test]
fn a_builder_timing_out_is_killed_with_everything_it_started() {
    let repo = TestRepo::new();
    let pidfile = repo.root().join("logs/child.pid");
    repo.config(&format!(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", \"*:spawn:{}\", \"*:sleep:60\"]\ntimeout = \"1s\"\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
        pidfile.display()
    ));
    let started = std::time::Instant::now();
    let r = failed(&repo, &["run", "--json", "add the helper"], 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(r["reason"], "timeout");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("timed out after 1s"),
        "{r}"
    );
    assert_process_gone(read_pid(&pidfile), "the builder's child");
    assert_discarded(&repo, &r);
    assert_eq!(
        r["archive"],
        Value::Null,
        "nothing changed, nothing to archive"
    );
}

/// A builder writes `path`, then the verifier overwrites it: the run fails, nothing ships.
fn a_verifier_that_edits(path: &str) {
    let repo = TestRepo::new();
    repo.agents(
        &[&format!("*:write:{path}:x")],
        &[&format!("*:write:{path}:tampered"), "*:approve"],
        "[run]\nsandbox = \"off\"\n",
    );
    let r = failed(&repo, &["run", "--json", "add the helper"], 1);
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("verifier (verifier) changed files"),
        "{path}: {r}"
    );
    assert!(repo.pipeline_branches().is_empty());
}

/// Detection, where no OS sandbox prevents the write (tests/it/sandbox.rs has prevention).
#[test]
fn a_verifier_that_edits_files_fails_the_run() {
    a_verifier_that_edits("src/new.rs");
}

/// The same inside a folder the builder made (and so one no watch was set on when the
/// worktree was made), and in a folder made inside that one.
#[test]
fn a_verifier_that_edits_files_in_a_folder_the_builder_made_fails_the_run() {
    a_verifier_that_edits("src/made/new.rs");
    a_verifier_that_edits("src/made/deeper/new.rs");
}

#[test]
fn keep_leaves_the_failed_worktree_and_branch_for_inspection() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/new.rs:x"],
        &["*:reject:no"],
        "[verify]\nmax_rounds = 1\n",
    );
    let out = repo.pipeline(&["run", "--json", "--keep", "add the helper"]);
    out.assert_code(2);
    let r = out.json();
    let id = r["run_id"].as_str().expect("id");
    let wt = repo.slot(0);
    assert_eq!(r["rolled_back"], false);
    assert_eq!(r["worktree"], wt.to_string_lossy().as_ref());
    assert_eq!(
        std::fs::read_to_string(wt.join("src/new.rs")).expect("kept file"),
        "x\n"
    );
    assert_eq!(repo.pipeline_branches(), vec![format!("pipeline/{id}")]);
    assert!(
        out.stderr.contains(&format!("kept at {}", wt.display())),
        "{}",
        out.stderr
    );
    // Unlocked, so the user can remove it with git alone.
    repo.git(&["worktree", "remove", "--force", &wt.to_string_lossy()]);
}

#[test]
fn task_text_reaches_the_agent_byte_for_byte_and_nothing_is_executed() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/new.rs:x"], &["*:approve"], "");
    let marker = repo.root().join("pwned");
    let task = format!(
        "fix it $(touch {m}) `touch {m}` ; touch {m}\n\"double\" 'single' {{worktree}} {{{{prompt}}}}\nline 3 \\n $HOME",
        m = marker.display()
    );
    let out = repo.pipeline(&["run", "--json", &task]);
    out.assert_code(0);
    assert!(!marker.exists(), "the task was executed by a shell");
    let argv = repo.argv("builder", 1);
    // argv[0] is the prompt ({prompt}); it contains the task exactly.
    assert!(argv[0].contains(&task), "prompt argument:\n{}", argv[0]);
    assert!(repo.prompt("builder", 1).contains(&task));
    assert_eq!(out.json()["task"], task.as_str());
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    let message = repo.git(&["log", "-1", "--format=%B", &commit]);
    assert!(
        message.contains("\"double\" 'single' {worktree}"),
        "{message}"
    );
}

#[test]
fn task_from_stdin_and_from_a_file() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/new.rs:x"], &["*:approve"], "");
    let task_file = repo.root().join("task.md");
    std::fs::write(&task_file, "task from a file\nsecond line\n").expect("write");
    let out = repo.pipeline(&["run", "--json", "--task-file", &task_file.to_string_lossy()]);
    out.assert_code(0);
    assert_eq!(out.json()["task"], "task from a file\nsecond line\n");

    let mut cmd = repo.pipeline_cmd();
    cmd.args(["run", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"task from stdin")
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(v["task"], "task from stdin");
}

#[test]
fn secrets_from_the_environment_never_reach_stored_outputs() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            "*:write:src/new.rs:x",
            "*:env:MY_API_KEY",
            "*:env:DATABASE_URL",
            "*:env:SOME_SETTING",
            "*:env:GH_PAT",
            "*:env:ANTHROPIC_AUTH",
            "*:env:CREDENTIALS",
            "*:env:OTHER_THING",
        ],
        &["*:approve"],
        "",
    );
    let mut cmd = repo.pipeline_cmd();
    // By name, and by shape under names that say nothing.
    cmd.args(["run", "--json", "add the helper"])
        .env("MY_API_KEY", "sk-very-secret-value-123")
        .env("DATABASE_URL", "postgres://app:hunter2-db-pass@db:5432/x")
        .env("SOME_SETTING", "ghp_16C7e42F292c6912E7710c838347Ae178B4a")
        .env("GH_PAT", "plain-looking-pat-value")
        .env("ANTHROPIC_AUTH", "plain-anthropic-auth-value")
        .env("CREDENTIALS", "plain-credentials-value")
        .env(
            "OTHER_THING",
            "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        );
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = repo.path.join(".git/pipeline/runs");
    let mut found_mask = false;
    for entry in walkdir::WalkDir::new(&runs) {
        let entry = entry.expect("walk");
        if entry.file_type().is_file() {
            let text =
                String::from_utf8_lossy(&std::fs::read(entry.path()).expect("read")).into_owned();
            for secret in [
                "sk-very-secret-value-123",
                "hunter2-db-pass",
                "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
                "plain-looking-pat-value",
                "plain-anthropic-auth-value",
                "plain-credentials-value",
                "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            ] {
                assert!(
                    !text.contains(secret),
                    "{secret} in {}",
                    entry.path().display()
                );
            }
            found_mask |= text.contains("MY_API_KEY=***");
        }
    }
    // The agent printed `MY_API_KEY=<value>`: it received the value, and it was stored masked.
    assert!(
        found_mask,
        "the agent's output was stored with the secret masked"
    );
}

#[test]
fn sigint_stops_the_agent_records_interrupted_keeps_the_worktree_and_exits_130() {
    let repo = TestRepo::new();
    let pidfile = repo.root().join("logs/child.pid");
    repo.config(&format!(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", \"*:write:src/wip.rs:wip\", \"*:spawn:{}\", \"*:sleep:60\"]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
        pidfile.display()
    ));
    // Wait until the builder is running (it wrote its pid file), then press Ctrl-C.
    let child = repo.spawn_until(&["run", "--json", "add the helper"], &pidfile);
    nix_kill(child.id(), "INT");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["status"], "interrupted");
    assert_eq!(r["exit_code"], 130);
    let wt = repo
        .worktree_of(r["run_id"].as_str().expect("id"))
        .expect("the worktree is recorded");
    assert_eq!(wt, repo.slot(0));
    assert_eq!(
        std::fs::read_to_string(wt.join("src/wip.rs")).expect("kept work"),
        "wip\n"
    );
    assert_eq!(repo.pipeline_branches().len(), 1);
    // Still locked, so `git worktree prune` and gc leave it for `resume`.
    let list = repo.git(&["worktree", "list", "--porcelain"]);
    assert!(list.contains("locked git-pipeline"), "{list}");
    assert_process_gone(read_pid(&pidfile), "the agent's child");
    let status = repo.pipeline(&["status"]);
    assert!(status.stdout.contains("interrupted"), "{}", status.stdout);
}

fn nix_kill(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
}

#[test]
fn a_failure_after_the_ship_commit_never_discards_the_shipped_branch() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/new.rs:x"], &["*:approve"], "");
    // A post-commit hook that makes git forget the worktree, so that removing it fails after
    // the commit.
    repo.hook(
        "post-commit",
        "#!/bin/sh\n[ \"$BREAK_WORKTREE\" = 1 ] && rm -rf \"$(git rev-parse --absolute-git-dir)\"\nexit 0\n",
    );
    let out = repo
        .pipeline_cmd()
        .args(["run", "--json", "add the helper"])
        .env("BREAK_WORKTREE", "1")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("worktree could not be removed"), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["status"], "succeeded");
    let commit = r["commit"].as_str().expect("commit");
    let branch = r["branch"].as_str().expect("branch");
    assert_eq!(repo.git(&["rev-parse", branch]), commit);
    assert!(
        r["worktree"].is_string(),
        "the leftover worktree is recorded: {r}"
    );
    repo.git(&["notes", "--ref=refs/notes/pipeline", "show", commit]);
}

/// An agent CLI that says why it failed in its JSON result on stdout (Claude Code's "Not logged
/// in"), with nothing on stderr: the error shows what it said.
#[test]
fn an_agent_failure_shows_what_the_agent_said_on_stdout() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            "*:say:{\"type\":\"result\",\"is_error\":true,\"result\":\"Not logged in · Please run /login\"}",
            "*:exit:1",
        ],
        &["*:approve"],
        "",
    );
    let before = repo.user_state();
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("failed: exit status 1"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Not logged in · Please run /login"),
        "{}",
        out.stderr
    );
    assert_untouched(&before, &repo.user_state());
}

/// A stale `refs/notes/pipeline.lock` (a git command that crashed while writing notes): the run
/// names the lock and how to clear it; once it is gone, `resume` attests the commit it made.
#[test]
fn a_stale_notes_lock_is_named_and_resume_finishes_after_it_is_removed() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/new.rs:x"], &["*:approve"], "");
    let lock = repo.path.join(".git/refs/notes/pipeline.lock");
    std::fs::create_dir_all(lock.parent().expect("parent")).expect("notes dir");
    std::fs::write(&lock, "").expect("lock");
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    let r = out.json();
    assert_eq!(r["reason"], "git_locked", "{r}");
    let line = out.error_line();
    assert!(
        line.contains(&format!("the lock file {} exists", lock.display())),
        "{line}"
    );
    let id = r["run_id"].as_str().expect("id").to_owned();
    assert!(
        out.stderr.contains(&format!(
            "rm {}), then: git pipeline resume {id}",
            lock.display()
        )),
        "{}",
        out.stderr
    );
    // The note is written while the worktree is put away: the slot went back to the pool
    // with the commit made, so the resume attests it without taking a worktree.
    assert!(
        repo.busy_worktrees().is_empty(),
        "{:?}",
        repo.busy_worktrees()
    );
    std::fs::remove_file(&lock).expect("remove the lock");
    let out = repo.pipeline(&["resume", "--json", &id]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    repo.pipeline(&["verify", &format!("{commit}^..{commit}")])
        .assert_code(0);
    assert!(
        repo.busy_worktrees().is_empty(),
        "{:?}",
        repo.busy_worktrees()
    );
    assert_eq!(repo.linked_worktrees().len(), 1, "one slot, not a second");
    assert_eq!(repo.pipeline_branches().len(), 1);
}
