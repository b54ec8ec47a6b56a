//! `git pipeline stats` against a hand-computed mix of runs: shipped, failed at each stage,
//! abandoned, interrupted, best-of-N and a bundle. It counts tasks: a best-of-N run is one,
//! whatever its candidates; a bundle's workstreams are one each.

use serde_json::Value;

use crate::common::TestRepo;

fn agents(repo: &TestRepo, builder: &[&str], verifier: &[&str], extra: &str) {
    repo.agents(builder, verifier, extra);
}

/// A run's record; `None` for a bundle (its folder holds `bundle.json`).
fn record(repo: &TestRepo, id: &str) -> Option<Value> {
    let text = std::fs::read_to_string(repo.path.join(format!(".git/pipeline/runs/{id}/run.json")))
        .ok()?;
    serde_json::from_str(&text).ok()
}

#[test]
fn stats_count_tasks_and_say_what_each_mean_is_over() {
    let repo = TestRepo::new();
    let scope = "[scope]\nallow = [\"src/**\"]\n[limits]\nmax_fix_attempts = 0\n";
    // 1. shipped, approved at the first verification.
    agents(&repo, &["*:write:src/a.rs:a"], &["*:approve"], scope);
    repo.pipeline(&["run", "fix the typo"]).assert_code(0);
    // 2. failed at its gate.
    agents(
        &repo,
        &["*:write:src/a.rs:b"],
        &["*:approve"],
        &format!("{scope}[[gates]]\nname = \"no\"\ncommand = [\"false\"]\n"),
    );
    repo.pipeline(&["run", "fix the typo"]).assert_code(4);
    // 3. failed its scope check.
    agents(&repo, &["*:write:secrets.txt:x"], &["*:approve"], scope);
    repo.pipeline(&["run", "fix the typo"]).assert_code(6);
    // 4. rejected at its only verification.
    agents(
        &repo,
        &["*:write:src/a.rs:c"],
        &["*:reject:no"],
        &format!("{scope}[verify]\nmax_rounds = 1\n"),
    );
    repo.pipeline(&["run", "fix the typo"]).assert_code(2);
    // 5. its agent failed.
    agents(&repo, &["*:exit:1"], &["*:approve"], scope);
    repo.pipeline(&["run", "fix the typo"]).assert_code(1);
    // 6. killed, then abandoned; 7. killed and left interrupted.
    agents(
        &repo,
        &["*:write:src/a.rs:d", "*:killparent"],
        &["*:approve"],
        // The kill comes from inside the step, which the sandbox refuses: off here.
        &format!("{scope}[run]\nsandbox = \"off\"\n"),
    );
    assert_eq!(repo.pipeline(&["run", "fix the typo"]).code, 137);
    let killed = repo.run_ids().into_iter().max().expect("id");
    repo.pipeline(&["abandon", &killed]).assert_code(0);
    let _ = std::fs::remove_file(repo.root().join("logs/killed"));
    assert_eq!(repo.pipeline(&["run", "fix the typo"]).code, 137);
    // 8. best-of-N: two candidates, one task.
    agents(
        &repo,
        &["*:run:echo v=$PIPELINE_CANDIDATE > src/v.txt"],
        &["*:say:{\"approved\": true, \"choice\": 1}"],
        scope,
    );
    repo.pipeline(&["run", "--candidates", "2", "fix the typo"])
        .assert_code(0);
    // 9, 10. a bundle of two workstreams.
    agents(
        &repo,
        &["*:run:echo $PIPELINE_WORKSTREAM > src/$PIPELINE_WORKSTREAM.txt"],
        &["*:approve"],
        "",
    );
    let bundle = repo.root().join("b.json");
    std::fs::write(
        &bundle,
        r#"{"workstreams":[{"id":"x","task":"do x","scope":["src/x.txt"],"create":["src/x.txt"]},{"id":"y","task":"do y","scope":["src/y.txt"],"create":["src/y.txt"]}]}"#,
    )
    .expect("bundle");
    repo.pipeline(&["run", "--bundle", &bundle.to_string_lossy()])
        .assert_code(0);

    let v = repo.pipeline(&["stats", "--json"]).json();
    // By hand: 10 tasks (the 2 candidates are not tasks), 4 succeeded (1, 8, 9, 10), 4 failed
    // (2-5), 1 abandoned, 1 interrupted; 9 finished; 5 reached verification (1, 4, 8, 9, 10),
    // 4 of them passed it the first time.
    assert_eq!(v["runs"], 10, "{v}");
    assert_eq!(
        v["by_status"],
        serde_json::json!({"abandoned": 1, "failed": 4, "interrupted": 1, "succeeded": 4})
    );
    assert_eq!(v["finished"], 9);
    assert_eq!(v["success_rate"].as_f64(), Some(4.0 / 9.0));
    assert_eq!(v["verified"], 5);
    assert_eq!(v["first_pass_verification_rate"], 0.8);
    assert_eq!(v["scope_violations"], 1);
    // No fixture agent reports a cost: no mean is made up.
    assert_eq!(v["runs_with_cost"], 0);
    assert_eq!(v["mean_cost_usd_per_run"], Value::Null);
    // Tokens: each task's own total (a best-of-N run's already holds its candidates'), never a
    // candidate's again.
    let mut sum = 0u64;
    let mut tasks = 0u64;
    for id in repo.run_ids() {
        let Some(r) = record(&repo, &id) else {
            continue;
        };
        if r["candidate_of"].is_null() {
            sum += r["metrics"]["tokens"].as_u64().unwrap_or(0);
            tasks += 1;
        }
    }
    assert_eq!(tasks, 10);
    // 6 and 7 were killed while their builder ran: nothing was recorded, and the mean is over
    // the other 8.
    assert_eq!(v["runs_with_tokens"], 8);
    assert_eq!(v["mean_tokens_per_run"].as_f64(), Some(sum as f64 / 8.0));
    let human = repo.pipeline(&["stats"]);
    for line in [
        "runs (tasks)               10 (1 abandoned, 4 failed, 1 interrupted, 4 succeeded)",
        "success rate               44% (over 9 finished)",
        "first-pass verification    80% (over 5 that reached verification)",
        "mean cost per run          - (no run reported a cost)",
    ] {
        assert!(human.stdout.contains(line), "{line}\n{}", human.stdout);
    }
}

#[test]
fn a_workstream_blocked_by_a_conflict_is_not_shown_as_succeeded() {
    let repo = TestRepo::new();
    repo.write("src/shared.txt", "base\n");
    repo.commit_all("shared");
    repo.agents(
        &["*:run:echo $PIPELINE_WORKSTREAM > src/shared.txt"],
        &["*:approve"],
        "",
    );
    let bundle = repo.root().join("b.json");
    std::fs::write(
        &bundle,
        r#"{"allow_overlap":true,"workstreams":[{"id":"x","task":"do x","scope":["src/shared.txt"]},{"id":"y","task":"do y","scope":["src/shared.txt"]}]}"#,
    )
    .expect("bundle");
    let out = repo.pipeline(&["run", "--jobs", "1", "--bundle", &bundle.to_string_lossy()]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    let status = repo.pipeline(&["status"]);
    let y = status
        .stdout
        .lines()
        .find(|l| l.contains("└ y"))
        .unwrap_or_default()
        .to_owned();
    assert!(y.contains("blocked (merge_conflict)"), "{}", status.stdout);
}

#[test]
fn a_root_commit_cannot_be_reverified_and_says_why() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/a.rs:a"], &["*:approve"], "");
    let root = repo.git(&["rev-list", "--max-parents=0", "HEAD"]);
    let out = repo.pipeline(&["reverify", root.trim()]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("is a root commit") && out.error_line().contains("has no parent"),
        "{}",
        out.stderr
    );
}
