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
        repo.linked_worktrees().is_empty(),
        "{:?}",
        repo.linked_worktrees()
    );
    let archives = repo.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/pipeline/archive/",
    ]);
    assert_eq!(archives.lines().count(), 2, "{archives}");
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
    assert!(both_fail.linked_worktrees().is_empty());
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
        issues.contains("without choosing one of the candidates"),
        "{issues}"
    );
    assert!(repo.pipeline_branches().is_empty());
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
    repo.config(&format!(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", {builder:?}]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:say:{{\\\"approved\\\": true, \\\"choice\\\": 2}}\"]\n"
    ));
    let out = repo.pipeline(&["run", "--candidates", "2", "fix the typo"]);
    assert_eq!(out.code, 137, "{}", out.stderr);
    let parent = repo
        .pipeline(&["status", "--json"])
        .json()
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|r| r["candidate_of"].is_null())
                .and_then(|r| r["run_id"].as_str().map(str::to_owned))
        })
        .expect("parent run");
    let resumed = repo.pipeline(&["resume", &parent, "--json"]);
    resumed.assert_code(0);
    let r = resumed.json();
    let branch = r["branch"].as_str().expect("branch");
    assert_eq!(repo.git(&["show", &format!("{branch}:value.txt")]), "v=2");
    assert_eq!(repo.pipeline_branches(), [branch.to_owned()]);
    assert!(
        repo.linked_worktrees().is_empty(),
        "{:?}",
        repo.linked_worktrees()
    );
}
