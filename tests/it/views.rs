//! What a person reads, kept as snapshots: `show`, `status` and `events` of a run, and the
//! message of each class of error. Run ids come from the tests' fixed clock, so they are in the
//! snapshots as they are; only what differs by machine or by moment is filtered (paths under
//! the test's temporary folder, commit and session ids, times, durations, token estimates).

use crate::common::TestRepo;

/// Snapshot `text` with the machine- and moment-dependent parts replaced.
fn snapshot(repo: &TestRepo, name: &str, text: &str) {
    crate::common::snapshot_settings(repo).bind(|| insta::assert_snapshot!(name, text));
}

/// One run that needed a fix attempt and a second verification round, then shipped.
fn shipped_run() -> (TestRepo, String) {
    let repo = TestRepo::new();
    repo.agents(
        &["1:write:src/value.txt:41", "2:write:src/value.txt:42", "3:append:src/value.txt:done"],
        &["1:reject:say why it is 42", "2:approve"],
        "[scope]\nallow = [\"src/**\"]\n[[gates]]\nname = \"answer\"\ncommand = [\"sh\", \"-c\", \"grep -q 42 src/value.txt\"]\n",
    );
    let out = repo.pipeline(&["run", "--json", "fix the typo in the readme text"]);
    out.assert_code(0);
    let id = out.json()["run_id"].as_str().expect("run id").to_owned();
    (repo, id)
}

#[test]
fn show_status_and_events_of_a_run() {
    let (repo, id) = shipped_run();
    assert_eq!(
        id, "20270115-080000-0000",
        "the fixed test clock names runs"
    );
    let show = repo.pipeline(&["show", &id]);
    show.assert_code(0);
    snapshot(&repo, "show", &show.stdout);
    let status = repo.pipeline(&["status"]);
    status.assert_code(0);
    snapshot(&repo, "status", &status.stdout);
    let events = repo.pipeline(&["events", &id]);
    events.assert_code(0);
    snapshot(&repo, "events", &events.stdout);
    // The record's keys are names, not session UUIDs.
    let rec = repo.pipeline(&["show", "--json", &id]).json();
    let keys: Vec<String> = rec["resume"]["agent_sessions"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        ["builder#1:execution", "verifier#1:verification"],
        "{rec:#}"
    );
}

/// The error and hint lines of each class of failure, with its exit code.
#[test]
fn each_error_class_reads_the_same() {
    let mut seen = String::new();
    let mut record = |what: &str, repo: &TestRepo, args: &[&str]| {
        let out = repo.pipeline(args);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:") || l.starts_with("hint:") || l.starts_with("  "))
            .collect();
        seen.push_str(&format!(
            "## {what} (exit {})\n{}\n\n",
            out.code,
            lines.join("\n")
        ));
    };

    let repo = TestRepo::new();
    record("an unknown flag", &repo, &["run", "--no-such-flag", "x"]);
    record("no run of that name", &repo, &["show", "nope"]);
    record("an empty task", &repo, &["run", ""]);
    repo.config("version = 1\n[agents.builder]\ncommand = [\"AGENT\"]\n[[gates]]\nname = \"x\"\n");
    record("a config that is not valid", &repo, &["run", "fix it"]);

    let repo = TestRepo::new();
    repo.agents(
        &["*:write:README.md:x"],
        &["*:approve"],
        "[scope]\nallow = [\"src/**\"]\n[limits]\nmax_fix_attempts = 0\n",
    );
    record("a scope violation", &repo, &["run", "fix the typo"]);

    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/x.txt:x"],
        &["*:approve"],
        "[limits]\nmax_fix_attempts = 0\n[[gates]]\nname = \"never\"\ncommand = [\"false\"]\n",
    );
    record("a gate that keeps failing", &repo, &["run", "fix the typo"]);

    let repo = TestRepo::new();
    repo.agents(
        &["1:write:src/x.txt:1", "2:write:src/x.txt:2"],
        &["*:reject:not good"],
        "[verify]\nmax_rounds = 2\n",
    );
    record(
        "a verifier that keeps rejecting",
        &repo,
        &["run", "fix the typo"],
    );

    let outside = tempfile::tempdir().expect("tempdir");
    let repo = TestRepo::new();
    let out = repo.pipeline_in(outside.path(), &["status"]);
    seen.push_str(&format!(
        "## not a repository (exit {})\n{}\n",
        out.code,
        out.stderr
            .replace(&*outside.path().to_string_lossy(), "<elsewhere>")
            .trim_end()
    ));
    snapshot(&repo, "error-classes", &seen);
}

/// An agent that streams events: what it does is kept as `agent_activity` events (what
/// `events --follow` and the live progress line show), and when its tool calls failed and it
/// changed nothing, the run says what failed rather than only that nothing changed.
#[test]
fn streamed_agent_activity_is_kept_and_failed_tool_calls_are_reported() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            r#"*:say:{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Write","input":{"file_path":"src/a.txt","content":"x"}}]}}"#,
            r#"*:say:{"type":"user","message":{"content":[{"type":"tool_result","is_error":true,"content":"Failed to write file src/a.txt: Permission denied"}]}}"#,
            r#"*:say:{"type":"result","result":"I could not write it."}"#,
        ],
        &["*:approve"],
        "",
    );
    let out = repo.pipeline(&["run", "--json", "add a"]);
    out.assert_code(1);
    let message = out.json()["error"].as_str().unwrap_or("").to_owned();
    assert!(
        message.contains(
            "without changing any file; its own tool calls failed, the last with: Failed to write file src/a.txt: Permission denied"
        ),
        "{}",
        out.stdout
    );
    let id = out.json()["run_id"].as_str().expect("id").to_owned();
    let events = repo.pipeline(&["events", &id]);
    events.assert_code(0);
    assert!(
        events.stdout.contains("agent_activity") && events.stdout.contains("Write src/a.txt"),
        "{}",
        events.stdout
    );
    assert!(
        events.stdout.contains("failed: Failed to write file"),
        "{}",
        events.stdout
    );
}
