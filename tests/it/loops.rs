//! The fix loop: scope violations, gate failures, verifier rejections and commit-hook refusals go
//! back to the builder, with what went wrong in its next prompt.

use crate::common::TestRepo;

#[test]
fn scope_violation_goes_back_to_the_builder_and_gates_only_see_clean_work() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            "1:write:src/new.rs:x",
            "1:write:secrets/leak.txt:x",
            "2:delete:secrets",
        ],
        &["*:approve"],
        r#"
[scope]
allow = ["src/**"]
[[gates]]
name = "count"
command = ["sh", "-c", "echo ran >> LOGS/gate.log"]
"#,
    );
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["metrics"]["fix_attempts"], 1);
    assert_eq!(repo.calls_of("builder"), 2);
    // The gate ran once: never on the attempt that was out of scope.
    let gate_runs = std::fs::read_to_string(repo.logs.join("gate.log")).expect("gate log");
    assert_eq!(gate_runs.lines().count(), 1);
    let prompt = repo.prompt("builder", 2);
    assert!(
        prompt.contains("A secrets/leak.txt: not in scope.create"),
        "{prompt}"
    );
    assert_eq!(r["changed_paths"], serde_json::json!(["src/new.rs"]));
}

#[test]
fn gate_failure_is_fixed_by_a_retry_with_the_gate_output_in_the_prompt() {
    let repo = TestRepo::new();
    repo.agents(
        &["1:write:src/value.txt:41", "2:write:src/value.txt:42"],
        &["*:approve"],
        r#"
[[gates]]
name = "answer"
command = ["sh", "-c", "v=$(cat src/value.txt); [ \"$v\" = 42 ] || { echo \"expected 42, got $v\"; exit 1; }"]
"#,
    );
    let out = repo.pipeline(&["run", "--json", "set the value"]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["metrics"]["fix_attempts"], 1);
    let gates: Vec<(String, u64)> = r["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .map(|g| {
            (
                g["status"].as_str().unwrap_or("").to_owned(),
                g["attempt"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(gates, vec![("fail".to_owned(), 1), ("pass".to_owned(), 2)]);
    let prompt = repo.prompt("builder", 2);
    assert!(prompt.contains("Gate `answer`"), "{prompt}");
    assert!(prompt.contains("expected 42, got 41"), "{prompt}");
}

#[test]
fn verifier_rejection_sends_its_issues_to_the_builder_then_approval_ships() {
    let repo = TestRepo::new();
    repo.agents(
        &["1:write:src/new.rs:x", "2:write:tests/new.rs:test"],
        &["1:reject:tests for empty input missing", "2:approve"],
        "",
    );
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["verification"]["rounds"], 2);
    assert_eq!(r["verification"]["approved"], true);
    assert_eq!(
        r["metrics"]["fix_attempts"], 0,
        "a rejection is not a fix attempt"
    );
    assert_eq!(repo.calls_of("verifier"), 2);
    let prompt = repo.prompt("builder", 2);
    assert!(prompt.contains("tests for empty input missing"), "{prompt}");
    // The verifier saw the diff; its own session differs from the builder's across rounds.
    let vprompt = repo.prompt("verifier", 1);
    assert!(vprompt.contains("+x"), "{vprompt}");
    let sessions: Vec<String> = repo
        .calls()
        .iter()
        .map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("session="))
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    // builder, verifier, builder, verifier
    assert_eq!(sessions.len(), 4);
    assert_eq!(
        sessions[0], sessions[2],
        "all execution attempts share one session"
    );
    assert_eq!(
        sessions[1], sessions[3],
        "all verification rounds share one session"
    );
    assert_ne!(sessions[0], sessions[1]);
    let commit = r["commit"].as_str().expect("commit");
    assert_eq!(
        repo.git(&["show", &format!("{commit}:tests/new.rs")]),
        "test"
    );
}

#[test]
fn an_agent_that_commits_on_its_own_is_folded_into_one_attested_commit() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            "1:write:src/a.rs:a",
            "1:commit:agent commit one",
            "1:write:src/b.rs:b",
            "1:commit:agent commit two",
            "1:write:src/c.rs:uncommitted",
        ],
        &["*:approve"],
        "[scope]\nallow = [\"src/**\"]\n",
    );
    let base = repo.git(&["rev-parse", "HEAD"]);
    let out = repo.pipeline(&["run", "--json", "add files"]);
    out.assert_code(0);
    let r = out.json();
    let commit = r["commit"].as_str().expect("commit");
    assert_eq!(
        repo.git(&["rev-parse", &format!("{commit}^")]),
        base,
        "one commit on the base"
    );
    assert_eq!(
        repo.git(&["diff-tree", "-r", "--name-only", "--no-commit-id", commit]),
        "src/a.rs\nsrc/b.rs\nsrc/c.rs"
    );
    assert_eq!(
        r["changed_paths"],
        serde_json::json!(["src/a.rs", "src/b.rs", "src/c.rs"])
    );
}

#[test]
fn commits_made_by_the_agent_are_scope_checked_too() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:docs/x.md:x", "*:commit:sneaky"],
        &["*:approve"],
        "[scope]\nallow = [\"src/**\"]\n[limits]\nmax_fix_attempts = 0\n",
    );
    let out = repo.pipeline(&["run", "--json", "add files"]);
    out.assert_code(6);
    assert_eq!(
        out.json()["changed_paths"],
        serde_json::json!(["docs/x.md"])
    );
}

#[test]
fn a_commit_hook_refusal_counts_as_a_failing_gate_and_is_fixed() {
    let repo = TestRepo::new();
    repo.agents(
        &["1:write:src/new.rs:FIXME later", "2:write:src/new.rs:done"],
        &["*:approve"],
        "",
    );
    repo.hook("pre-commit", "#!/bin/sh\nif git diff --cached | grep -q FIXME; then echo 'pre-commit: FIXME found' >&2; exit 1; fi\n");
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["metrics"]["fix_attempts"], 1);
    assert_eq!(r["gates"][0]["name"], "commit-hook");
    assert_eq!(r["gates"][0]["status"], "fail");
    assert!(
        repo.prompt("builder", 2)
            .contains("pre-commit: FIXME found")
    );
    let commit = r["commit"].as_str().expect("commit");
    assert_eq!(repo.git(&["show", &format!("{commit}:src/new.rs")]), "done");
}

#[test]
fn renames_and_deletions_are_checked_at_both_ends_and_odd_names_ship() {
    let repo = TestRepo::new();
    repo.write("docs/guide.md", "guide\n");
    repo.commit_all("docs");
    repo.agents(
        &[
            "1:rename:src/lib.rs:src/core.rs",
            "1:delete:docs/guide.md",
            "1:write:src/dir with space/naïve – file.rs:x",
            "2:write:docs/guide.md:guide",
        ],
        &["*:approve"],
        "[scope]\nallow = [\"src/**\"]\n",
    );
    let out = repo.pipeline(&["run", "--json", "move the code"]);
    out.assert_code(0);
    // Attempt 1 deleted docs/guide.md, outside the scope; the rename inside it was fine.
    let prompt = repo.prompt("builder", 2);
    assert!(
        prompt.contains("D docs/guide.md: not in scope.allow"),
        "{prompt}"
    );
    assert!(!prompt.contains("src/core.rs"), "{prompt}");
    let r = out.json();
    assert_eq!(
        r["changed_paths"],
        serde_json::json!([
            "src/core.rs",
            "src/dir with space/naïve – file.rs",
            "src/lib.rs"
        ])
    );
    let commit = r["commit"].as_str().expect("commit");
    assert_eq!(
        repo.git(&[
            "show",
            &format!("{commit}:src/dir with space/naïve – file.rs")
        ]),
        "x"
    );
}

/// The ship commit leaves git's automatic maintenance to git-pipeline, which runs it only when
/// git would act: a repository with more loose objects than `gc.auto` allows is still packed
/// after a run, as after a `git commit` of yours.
#[test]
fn a_shipped_run_still_gets_git_s_automatic_maintenance() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/a.rs:a"], &["*:approve"], "");
    // Loose objects until more than 27 (gc.auto 6700 / 256) are in objects/17, git's sample.
    let blobs = repo.root().join("blobs");
    std::fs::create_dir(&blobs).expect("mkdir");
    let mut in_17: Vec<String> = Vec::new();
    let mut next = 0;
    while in_17.len() < 30 {
        let paths: Vec<String> = (next..next + 2048)
            .map(|i| {
                let p = blobs.join(i.to_string());
                std::fs::write(&p, format!("{i}\n")).expect("write");
                p.to_string_lossy().into_owned()
            })
            .collect();
        next += 2048;
        let ids = hash_paths(&repo, &paths, false);
        for (id, path) in ids.lines().zip(&paths) {
            if id.starts_with("17") {
                in_17.push(path.clone());
            }
        }
    }
    hash_paths(&repo, &in_17, true);
    std::fs::remove_dir_all(&blobs).expect("rm");
    let packs = || {
        std::fs::read_dir(repo.path.join(".git/objects/pack"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(packs(), 0);
    repo.pipeline(&["run", "add a file"]).assert_code(0);
    // gc detaches itself (gc.autoDetach): wait for the pack it makes of what is reachable (the
    // loose blobs above are not, and stay loose until they are two weeks old).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while packs() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(packs() > 0, "git's automatic maintenance did not run");
}

/// `git hash-object --stdin-paths` (with `-w`: written) on `paths`; its output.
fn hash_paths(repo: &TestRepo, paths: &[String], write: bool) -> String {
    let mut cmd = repo.command("git", &repo.path);
    cmd.args(["hash-object", "--stdin-paths"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    if write {
        cmd.arg("-w");
    }
    let mut child = cmd.spawn().expect("git");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(paths.join("\n").as_bytes())
            .expect("write paths");
    }
    let out = child.wait_with_output().expect("git");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}
