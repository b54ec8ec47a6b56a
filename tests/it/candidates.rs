//! Best-of-N (`run --candidates N`): candidates build in parallel worktrees, each through its
//! own scope check and gates; the verifier compares those that pass and the chosen one ships.

use crate::common::{TestRepo, assert_untouched};

/// Builders write `v=<candidate>`; the gate refuses candidate 1's work.
fn candidates_repo(verifier: &[&str], extra: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.write("value.txt", "v=0\n");
    repo.commit_all("value");
    let list: Vec<String> = verifier.iter().map(|a| format!("{a:?}")).collect();
    repo.config(&format!(
        "version = 1\n[scope]\nallow = [\"value.txt\"]\n[limits]\nmax_fix_attempts = 0\n{extra}\n\
         [agents.builder]\ncommand = [\"AGENT\", \"*:run:echo v=$PIPELINE_CANDIDATE-$PIPELINE_ATTEMPT > value.txt\"]\n\
         [agents.verifier]\ncommand = [\"AGENT\", {}]\n\
         [[gates]]\nname = \"test\"\ncommand = [\"sh\", \"-c\", \"! grep -q v=1- value.txt\"]\n",
        list.join(", ")
    ));
    repo
}

#[test]
fn the_verifier_picks_a_passing_candidate_and_the_others_are_removed() {
    let repo = candidates_repo(
        &["*:say:Candidate 3 is clearer. {\"approved\": true, \"choice\": 3}"],
        "",
    );
    let before = repo.user_state();
    let out = repo.pipeline(&["run", "--candidates", "3", "--json", "fix the typo"]);
    out.assert_code(0);
    let r = out.json();
    let branch = r["branch"].as_str().expect("branch");
    assert_eq!(repo.git(&["show", &format!("{branch}:value.txt")]), "v=3-1");
    let states: Vec<&str> = r["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| c["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["failed", "dropped", "chosen"]);
    // The verifier saw the two that passed their gates, and not the one that did not.
    let prompt = repo.prompt("verifier", 1);
    assert!(
        prompt.contains("## Candidate 2") && prompt.contains("## Candidate 3"),
        "{prompt}"
    );
    assert!(!prompt.contains("## Candidate 1"), "{prompt}");
    // Only the shipped branch is left; the others' work is archived.
    assert_eq!(repo.pipeline_branches(), [branch.to_owned()]);
    assert!(
        repo.busy_worktrees().is_empty(),
        "{:?}",
        repo.busy_worktrees()
    );
    let archives = repo.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/pipeline/archive/",
    ]);
    // Every candidate's work is archived, the chosen one's too (pinned before it was told).
    assert_eq!(archives.lines().count(), 3, "{archives}");
    // The shipped commit is attested like any run's.
    repo.pipeline(&["verify", &format!("main..{branch}")])
        .assert_code(0);
    assert_untouched(&before, &repo.user_state());
    let status = repo.pipeline(&["status"]);
    assert!(status.stdout.contains("└ candidate 3"), "{}", status.stdout);
}

#[test]
fn a_rejection_goes_back_to_every_candidate() {
    let repo = candidates_repo(
        &[
            "1:reject:both miss the newline check",
            "2:say:{\"approved\": true, \"choice\": 2}",
        ],
        "",
    );
    let out = repo.pipeline(&["run", "--candidates", "2", "--json", "fix the typo"]);
    // Candidate 1 fails its gate at once (no fix attempts), so candidate 2 alone goes round twice.
    out.assert_code(0);
    let r = out.json();
    let branch = r["branch"].as_str().expect("branch");
    assert_eq!(repo.git(&["show", &format!("{branch}:value.txt")]), "v=2-2");
    assert_eq!(r["verification"]["rounds"], 2);
    let second = repo.prompt("builder", 2);
    assert!(second.contains("both miss the newline check"), "{second}");
}

#[test]
fn when_no_candidate_passes_the_run_fails_like_its_candidates() {
    // Two candidates that both fail their gate: the run fails with the gate's exit code.
    let both_fail = TestRepo::new();
    both_fail.config(
        "version = 1\n[limits]\nmax_fix_attempts = 0\n[agents.builder]\ncommand = [\"AGENT\", \"*:write:x.txt:x\"]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n[[gates]]\nname = \"never\"\ncommand = [\"false\"]\n",
    );
    let out = both_fail.pipeline(&["run", "--candidates", "2", "fix the typo"]);
    out.assert_code(4);
    assert!(
        out.stderr.contains("none of the 2 candidates passed"),
        "{}",
        out.stderr
    );
    assert!(both_fail.pipeline_branches().is_empty());
    assert!(both_fail.busy_worktrees().is_empty());
}

#[test]
fn candidates_can_use_different_builders() {
    let repo = candidates_repo(
        &["*:say:{\"approved\": true, \"choice\": 2}"],
        "[agents.other]\ncommand = [\"AGENT\", \"*:write:value.txt:from-other\"]\n",
    );
    let out = repo.pipeline(&[
        "run",
        "--candidates",
        "2",
        "--agent",
        "builder=builder",
        "--agent",
        "builder=other",
        "--json",
        "fix the typo",
    ]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["candidates"][1]["agent"], "other");
    let branch = r["branch"].as_str().expect("branch");
    assert_eq!(
        repo.git(&["show", &format!("{branch}:value.txt")]),
        "from-other"
    );
}

#[test]
fn an_approval_that_chooses_nothing_valid_is_a_rejection() {
    let repo = candidates_repo(&["*:say:{\"approved\": true, \"choice\": 7}"], "");
    let out = repo.pipeline(&["run", "--candidates", "3", "--json", "fix the typo"]);
    out.assert_code(2);
    let r = out.json();
    assert_eq!(r["reason"], "verify_rejected");
    let issues = r["verification"]["issues"].to_string();
    assert!(
        issues.contains("the verifier chose candidate 7, and there are only 3 candidates"),
        "{issues}"
    );
    assert!(issues.contains("ready to ship: 2, 3"), "{issues}");
    assert!(repo.pipeline_branches().is_empty());
    // A failed candidate, and a choice that is no number, are named as such.
    for (choice, says) in [
        (
            "1",
            "chose candidate 1, which is not ready to ship (it failed: gate_failed)",
        ),
        ("-1", "gave \\\"choice\\\": -1, which names no candidate"),
    ] {
        let repo = candidates_repo(
            &[&format!(
                "*:say:{{\"approved\": true, \"choice\": {choice}}}"
            )],
            "",
        );
        let out = repo.pipeline(&["run", "--candidates", "3", "--json", "fix the typo"]);
        out.assert_code(2);
        let issues = out.json()["verification"]["issues"].to_string();
        assert!(issues.contains(says), "{choice}: {issues}");
    }
}

#[test]
fn candidates_are_validated() {
    let repo = candidates_repo(&["*:approve"], "");
    let out = repo.pipeline(&["run", "--candidates", "9", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.stderr.contains("give 1 to 8 candidates"),
        "{}",
        out.stderr
    );
    let dry = repo.pipeline(&["run", "--candidates", "3", "--dry-run", "fix the typo"]);
    dry.assert_code(0);
    assert!(
        dry.stdout.contains("3 candidates in parallel worktrees"),
        "{}",
        dry.stdout
    );
}

/// kill -9 while the candidates build; resume brings them back and the comparison happens.
#[test]
fn a_best_of_n_run_resumes_after_kill_9() {
    let repo = TestRepo::new();
    repo.write("value.txt", "v=0\n");
    repo.commit_all("value");
    let builder = "*:run:echo v=$PIPELINE_CANDIDATE > value.txt; echo $PIPELINE_CANDIDATE >> LOGS/builds.log; if [ $PIPELINE_CANDIDATE = 2 ] && [ ! -e LOGS/killed ]; then sleep 0.5; touch LOGS/killed; kill -9 $(ps -o ppid= -p $PPID); sleep 5; fi";
    // The step kills git-pipeline itself, which the sandbox refuses (signals stay inside it).
    repo.config(&format!(
        "version = 1\n[run]\nsandbox = \"off\"\n[agents.builder]\ncommand = [\"AGENT\", {builder:?}]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:say:{{\\\"approved\\\": true, \\\"choice\\\": 2}}\"]\n"
    ));
    let out = repo.pipeline(&["run", "--candidates", "2", "fix the typo"]);
    assert_eq!(out.code, 137, "{}", out.stderr);
    let parent = parent_run(&repo);
    let resumed = repo.pipeline(&["resume", &parent, "--json"]);
    resumed.assert_code(0);
    let r = resumed.json();
    let branch = r["branch"].as_str().expect("branch");
    assert_eq!(repo.git(&["show", &format!("{branch}:value.txt")]), "v=2");
    assert_eq!(repo.pipeline_branches(), [branch.to_owned()]);
    assert!(
        repo.busy_worktrees().is_empty(),
        "{:?}",
        repo.busy_worktrees()
    );
}

/// The parent of a `--candidates 2` run, found in `status --json`.
fn parent_run(repo: &TestRepo) -> String {
    repo.pipeline(&["status", "--json"])
        .json()
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|r| r["candidate_of"].is_null() && r["kind"] != "bundle")
                .and_then(|r| r["run_id"].as_str().map(str::to_owned))
        })
        .expect("parent run")
}

/// Watch a run's record until `pred` holds, then kill -9 the process; the kill must land
/// before the process ends on its own.
fn kill_when(
    repo: &TestRepo,
    mut child: std::process::Child,
    pred: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the moment never came"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before the moment to kill it");
        }
        let hit = repo.run_ids().iter().any(|id| {
            std::fs::read_to_string(repo.path.join(format!(".git/pipeline/runs/{id}/run.json")))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| pred(&v))
        });
        if hit {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// kill -9 right after the verifier chose (while the other candidate, with 3,000 files, is
/// being archived): resume ships exactly the chosen tree, once.
#[test]
fn a_kill_after_the_choice_resumes_to_shipping_the_chosen_candidate() {
    let repo = TestRepo::new();
    repo.write("value.txt", "v=0\n");
    repo.commit_all("value");
    // Candidate 2 writes 3,000 files; the ship's commit hook is slow, so the window from the
    // choice to the commit is wide.
    let builder = "*:run:echo v=$PIPELINE_CANDIDATE > value.txt; if [ $PIPELINE_CANDIDATE = 2 ]; then mkdir -p many && for i in $(seq 3000); do echo $i > many/f$i; done; fi";
    repo.config(&format!(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", {builder:?}]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:say:{{\\\"approved\\\": true, \\\"choice\\\": 1}}\"]\n"
    ));
    repo.hook("pre-commit", "sleep 1\n");
    let child = repo
        .pipeline_cmd()
        .args(["run", "--candidates", "2", "fix the typo"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // The moment: the parent's record says the verifier approved.
    kill_when(&repo, child, |v| {
        v["verification"]["approved"] == true && v["candidate_of"].is_null()
    });
    let parent = parent_run(&repo);
    // A process the run had just started may hold its lock for a moment after the kill.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while repo
        .pipeline(&["status", "--json"])
        .json()
        .as_array()
        .is_some_and(|l| l.iter().any(|r| r["status"] == "running"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let resumed = repo.pipeline(&["resume", &parent, "--json"]);
    resumed.assert_code(0);
    let r = resumed.json();
    let branch = r["branch"].as_str().expect("branch");
    assert_eq!(repo.git(&["show", &format!("{branch}:value.txt")]), "v=1");
    // One task, one attested commit: no other branch, no other note.
    assert_eq!(repo.pipeline_branches(), [branch.to_owned()]);
    let notes = repo.git(&["notes", "--ref=pipeline", "list"]);
    assert_eq!(notes.lines().count(), 1, "{notes}");
    assert!(
        repo.busy_worktrees().is_empty(),
        "{:?}",
        repo.busy_worktrees()
    );
    // Both candidates' work is archived, candidate 2's 3,000 files included.
    let archives = repo.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/pipeline/archive/",
    ]);
    assert_eq!(archives.lines().count(), 2, "{archives}");
    let c2 = r["candidates"][1]["run_id"]
        .as_str()
        .expect("c2")
        .to_owned();
    let files = repo.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        &format!("refs/pipeline/archive/{c2}"),
    ]);
    assert!(files.lines().count() >= 3000, "{}", files.lines().count());
}

/// A candidate is resumed and abandoned only through its run; abandoning the run takes every
/// candidate down, archived, with its processes.
#[test]
fn candidates_go_through_their_run_and_abandon_takes_the_family_down() {
    let repo = TestRepo::new();
    repo.write("value.txt", "v=0\n");
    repo.commit_all("value");
    let builder = "*:run:echo v=$PIPELINE_CANDIDATE > value.txt; echo $$ > LOGS/pid-$PIPELINE_CANDIDATE; if [ $PIPELINE_CANDIDATE = 2 ] && [ ! -e LOGS/killed ]; then for i in $(seq 400); do [ -e LOGS/pid-1 ] && break; sleep 0.05; done; touch LOGS/killed; kill -9 $(ps -o ppid= -p $PPID); fi; sleep 30";
    // The step kills git-pipeline itself, which the sandbox refuses (signals stay inside it).
    repo.config(&format!(
        "version = 1\n[run]\nsandbox = \"off\"\n[agents.builder]\ncommand = [\"AGENT\", {builder:?}]\ntimeout = \"60s\"\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n"
    ));
    let out = repo.pipeline(&["run", "--candidates", "2", "fix the typo"]);
    assert_eq!(out.code, 137, "{}", out.stderr);
    let parent = parent_run(&repo);
    let candidates: Vec<String> = repo
        .run_ids()
        .into_iter()
        .filter(|id| *id != parent)
        .collect();
    assert_eq!(candidates.len(), 2);
    for verb in ["resume", "abandon"] {
        let out = repo.pipeline(&[verb, &candidates[0]]);
        out.assert_code(3);
        assert!(
            out.error_line().contains("a candidate is") && out.error_line().contains(&parent),
            "{verb}: {}",
            out.stderr
        );
    }
    let out = repo.pipeline(&["abandon", &parent]);
    out.assert_code(0);
    assert_eq!(
        out.stdout.matches("abandoned its candidate").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("its work is saved at refs/pipeline/archive/"),
        "{}",
        out.stdout
    );
    assert!(
        repo.pipeline_branches().is_empty(),
        "{:?}",
        repo.pipeline_branches()
    );
    assert!(
        repo.busy_worktrees().is_empty(),
        "{:?}",
        repo.busy_worktrees()
    );
    for k in ["1", "2"] {
        let pid = crate::common::read_pid(&repo.root().join(format!("logs/pid-{k}")));
        crate::common::assert_process_gone(pid, "a candidate's builder");
    }
    let status = repo.pipeline(&["status", "--json"]).json();
    for row in status.as_array().expect("rows") {
        assert_eq!(row["status"], "abandoned", "{row}");
    }
    // clean has nothing left to suggest.
    let clean = repo.pipeline(&["clean", "--dry-run"]);
    assert!(!clean.stdout.contains("resume"), "{}", clean.stdout);
}
