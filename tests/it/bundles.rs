//! Workstream bundles: validation (`plan`), DAG execution in parallel worktrees, blocking,
//! integration, conflicts, resume after kill -9, slots and exclusive gates.

use crate::common::{TestRepo, assert_untouched};

/// A repository with four folders, and a builder that, in workstream X, writes `src/X/out.txt`
/// listing the other workstreams' outputs it can see, logs its slot, and sleeps `sleep` seconds.
fn bundle_repo(sleep: &str, extra: &str) -> TestRepo {
    let repo = TestRepo::new();
    for x in ["a", "b", "c", "d"] {
        repo.write(&format!("src/{x}/f.txt"), x);
    }
    repo.commit_all("four folders");
    let builder = format!(
        "*:run:mkdir -p src/$PIPELINE_WORKSTREAM && (ls src/*/out.txt 2>/dev/null || true) | tr \"\\n\" \" \" > src/$PIPELINE_WORKSTREAM/out.txt && echo \"$PIPELINE_WORKSTREAM $PIPELINE_SLOT\" >> LOGS/builds.log && sleep {sleep}"
    );
    repo.config(&format!(
        "version = 1\n{extra}\n[agents.builder]\ncommand = [\"AGENT\", {builder:?}]\ntimeout = \"30s\"\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n"
    ));
    repo
}

fn write_bundle(repo: &TestRepo, name: &str, json: &str) -> String {
    let path = repo.root().join(name);
    std::fs::write(&path, json).expect("bundle");
    path.to_string_lossy().into_owned()
}

const DIAMOND: &str = r#"{"version":1,"workstreams":[
 {"id":"a","task":"do a","scope":["src/a/**"]},
 {"id":"b","task":"do b","scope":["src/b/**"],"depends_on":["a"]},
 {"id":"c","task":"do c","scope":["src/c/**"],"depends_on":["a"]},
 {"id":"d","task":"do d","scope":["src/d/**"],"depends_on":["b","c"]}]}"#;

fn builds(repo: &TestRepo) -> Vec<(String, String)> {
    std::fs::read_to_string(repo.root().join("logs/builds.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

#[test]
fn a_valid_bundle_is_drawn_with_its_levels_and_order() {
    let repo = bundle_repo("0", "");
    let path = write_bundle(&repo, "b.json", DIAMOND);
    let before = repo.user_state();
    let out = repo.pipeline(&["plan", &path]);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("4 workstreams in 3 levels (at most 2 at once)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("level 3   d  do d  ◄── b, c"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("order: a, b, c, d"), "{}", out.stdout);
    let json = repo.pipeline(&["plan", "--json", &path]);
    json.assert_code(0);
    let v = json.json();
    assert_eq!(v["levels"], serde_json::json!([["a"], ["b", "c"], ["d"]]));
    // plan creates nothing.
    assert_untouched(&before, &repo.user_state());
    assert!(repo.run_ids().is_empty());
}

/// Each problem alone, then all together: exit 3, every one named.
#[test]
fn every_validation_problem_is_reported_alone_and_together() {
    let repo = bundle_repo("0", "[[gates]]\nname = \"test\"\ncommand = [\"true\"]\n");
    let cases: [(&str, &str, &str); 6] = [
        (
            "duplicate",
            r#"{"workstreams":[{"id":"a","task":"x","scope":["src/a/**"]},{"id":"a","task":"y","scope":["src/b/**"]}]}"#,
            "duplicate id",
        ),
        (
            "unknown",
            r#"{"workstreams":[{"id":"a","task":"x","scope":["src/a/**"],"depends_on":["ghost"]}]}"#,
            "depends on \"ghost\", which is not a workstream",
        ),
        (
            "cycle",
            r#"{"workstreams":[{"id":"a","task":"x","scope":["src/a/**"],"depends_on":["c"]},{"id":"b","task":"y","scope":["src/b/**"],"depends_on":["a"]},{"id":"c","task":"z","scope":["src/c/**"],"depends_on":["b"]}]}"#,
            "dependency cycle: a → c → b → a",
        ),
        (
            "glob",
            r#"{"workstreams":[{"id":"a","task":"x","scope":["src/[a/**"]}]}"#,
            "invalid glob \"src/[a/**\"",
        ),
        (
            "overlap",
            r#"{"workstreams":[{"id":"a","task":"x","scope":["src/a/**"]},{"id":"b","task":"y","scope":["src/*/f.txt"]}]}"#,
            "overlaps with \"b\": both may modify src/a/f.txt",
        ),
        (
            "gate",
            r#"{"workstreams":[{"id":"a","task":"x","scope":["src/a/**"],"gates":["lint"]}]}"#,
            "gate \"lint\" is not configured",
        ),
    ];
    for (name, json, expected) in cases {
        let path = write_bundle(&repo, &format!("{name}.json"), json);
        let out = repo.pipeline(&["plan", &path]);
        out.assert_code(3);
        assert!(out.stderr.contains("(1 problem)"), "{name}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{name}: {}", out.stderr);
        // The same bundle cannot run either, and nothing is created.
        let run = repo.pipeline(&["run", "--bundle", &path]);
        run.assert_code(3);
        assert!(run.stderr.contains(expected), "{name}: {}", run.stderr);
    }
    let all = write_bundle(
        &repo,
        "all.json",
        r#"{"workstreams":[
          {"id":"a","task":"x","scope":["src/a/**"],"depends_on":["c","ghost"]},
          {"id":"b","task":"y","scope":["src/[b/**"],"depends_on":["a"],"gates":["lint"]},
          {"id":"c","task":"z","scope":["src/*/f.txt"],"depends_on":["b"]},
          {"id":"a","task":"w","scope":["docs/**"]}]}"#,
    );
    let out = repo.pipeline(&["plan", &all]);
    out.assert_code(3);
    for expected in [
        "duplicate id",
        "\"ghost\", which is not a workstream",
        "dependency cycle: a → c → b → a",
        "invalid glob \"src/[b/**\"",
        "overlaps with \"c\": both may modify src/a/f.txt",
        "gate \"lint\" is not configured",
        "(6 problems)",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {}", out.stderr);
    }
    let json = repo.pipeline(&["plan", "--json", &all]);
    json.assert_code(3);
    assert_eq!(json.json()["problems"].as_array().map(Vec::len), Some(6));
    assert!(repo.run_ids().is_empty(), "nothing was created");
    assert_eq!(repo.pipeline_branches(), Vec::<String>::new());
}

#[test]
fn a_bundle_that_is_not_json_or_an_empty_folder_exits_3() {
    let repo = bundle_repo("0", "");
    let path = write_bundle(
        &repo,
        "bad.json",
        "{\"workstreams\": [\n  {\"id\": \"a\",, }]}",
    );
    let out = repo.pipeline(&["run", "--bundle", &path]);
    out.assert_code(3);
    assert!(out.stderr.contains("bad.json:2:"), "{}", out.stderr);
    let empty = repo.root().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let out = repo.pipeline(&["plan", &empty.to_string_lossy()]);
    out.assert_code(3);
    assert!(
        out.stderr.contains("no *.json workstream files"),
        "{}",
        out.stderr
    );
    let missing = repo.pipeline(&["plan", "no-such-bundle.json"]);
    missing.assert_code(3);
}

#[test]
fn a_folder_of_workstream_files_is_a_bundle() {
    let repo = bundle_repo("0", "");
    let dir = repo.root().join("ws");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("1-a.json"),
        r#"{"id":"a","task":"do a","scope":["src/a/**"]}"#,
    )
    .expect("a");
    std::fs::write(
        dir.join("2-b.json"),
        r#"{"id":"b","task":"do b","scope":["src/b/**"],"depends_on":["a"]}"#,
    )
    .expect("b");
    std::fs::write(dir.join("notes.txt"), "not a workstream").expect("notes");
    let out = repo.pipeline(&["plan", &dir.to_string_lossy()]);
    out.assert_code(0);
    assert!(out.stdout.contains("order: a, b"), "{}", out.stdout);
    let out = repo.pipeline(&["run", "--bundle", &dir.to_string_lossy()]);
    out.assert_code(0);
}

/// a → b, a → c, (b, c) → d: d starts from the merge of b's and c's results and sees both.
#[test]
fn a_diamond_runs_in_order_and_the_last_sees_both_branches() {
    let repo = bundle_repo("0", "");
    let path = write_bundle(&repo, "b.json", DIAMOND);
    let before = repo.user_state();
    let out = repo.pipeline(&["run", "--bundle", &path, "--jobs", "2", "--json"]);
    out.assert_code(0);
    let rec = out.json();
    assert_eq!(rec["status"], "completed");
    let integration = rec["integration_branch"]
        .as_str()
        .expect("branch")
        .to_owned();
    let seen = repo.git(&["show", &format!("{integration}:src/d/out.txt")]);
    for dep in ["src/a/out.txt", "src/b/out.txt", "src/c/out.txt"] {
        assert!(seen.contains(dep), "d saw: {seen}");
    }
    let b_saw = repo.git(&["show", &format!("{integration}:src/b/out.txt")]);
    assert!(
        b_saw.contains("src/a/out.txt") && !b_saw.contains("src/c/out.txt"),
        "{b_saw}"
    );
    // a ran before b and c, which ran before d.
    let order: Vec<String> = builds(&repo).into_iter().map(|(w, _)| w).collect();
    assert_eq!(order.first().map(String::as_str), Some("a"));
    assert_eq!(order.last().map(String::as_str), Some("d"));
    // Every commit on the integration branch passes the attestation check.
    let verify = repo.pipeline(&["verify", &format!("main..{integration}")]);
    verify.assert_code(0);
    // The user's checkout is untouched; each workstream's run is listed under the bundle.
    assert_untouched(&before, &repo.user_state());
    let status = repo.pipeline(&["status"]);
    assert!(
        status.stdout.contains("completed (4/4)"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("  └ d"), "{}", status.stdout);
    let id = rec["bundle_id"].as_str().expect("id");
    let show = repo.pipeline(&["show", id]);
    show.assert_code(0);
    assert!(show.stdout.contains("after b, c"), "{}", show.stdout);
    let events = repo.pipeline(&["events", "--json", id]);
    assert!(
        events.stdout.contains("\"workstream\":\"d\""),
        "{}",
        events.stdout
    );
}

/// Three independent workstreams, three at a time: each builder waits until all three have
/// started (a rendezvous, not a stopwatch; one after the other, they wait in vain).
#[test]
fn independent_workstreams_run_in_parallel_with_distinct_slots() {
    let repo = bundle_repo(
        "0; i=0; while [ \"$(wc -l < LOGS/builds.log)\" -lt 3 ]; do i=$((i+1)); \
         if [ $i -gt 150 ]; then echo $PIPELINE_WORKSTREAM >> LOGS/alone.log; break; fi; sleep 0.1; done",
        "",
    );
    let path = write_bundle(
        &repo,
        "b.json",
        r#"{"workstreams":[
          {"id":"a","task":"do a","scope":["src/a/**"]},
          {"id":"b","task":"do b","scope":["src/b/**"]},
          {"id":"c","task":"do c","scope":["src/c/**"]}]}"#,
    );
    let out = repo.pipeline(&["run", "--bundle", &path, "--jobs", "3"]);
    out.assert_code(0);
    let alone = std::fs::read_to_string(repo.root().join("logs/alone.log")).unwrap_or_default();
    assert_eq!(alone, "", "workstreams that ran without the others");
    let mut slots: Vec<String> = builds(&repo).into_iter().map(|(_, s)| s).collect();
    slots.sort();
    assert_eq!(slots, ["0", "1", "2"]);
}

/// A failing workstream blocks exactly what depends on it; the rest ships; the bundle is partial.
#[test]
fn a_failure_blocks_exactly_its_dependents() {
    let repo = bundle_repo(
        "0",
        "[limits]\nmax_fix_attempts = 0\n[[gates]]\nname = \"test\"\ncommand = [\"sh\", \"-c\", \"test \\\"$PIPELINE_WORKSTREAM\\\" != b\"]\n",
    );
    let path = write_bundle(
        &repo,
        "b.json",
        r#"{"workstreams":[
          {"id":"a","task":"do a","scope":["src/a/**"]},
          {"id":"b","task":"do b","scope":["src/b/**"],"depends_on":["a"]},
          {"id":"c","task":"do c","scope":["src/c/**"],"depends_on":["a"]},
          {"id":"d","task":"do d","scope":["src/d/**"],"depends_on":["b"]}]}"#,
    );
    let out = repo.pipeline(&["run", "--bundle", &path, "--json"]);
    // The first failure's reason gives the code: gate_failed.
    out.assert_code(4);
    let rec = out.json();
    assert_eq!(rec["status"], "partial");
    let state = |id: &str| {
        rec["workstreams"]
            .as_array()
            .and_then(|l| l.iter().find(|w| w["id"] == id))
            .map(|w| w["state"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        [state("a"), state("b"), state("c"), state("d")],
        ["succeeded", "failed", "succeeded", "blocked"]
    );
    let d = &rec["workstreams"][3];
    assert_eq!(d["blocked_by"], "b");
    assert!(d["run_id"].is_null(), "a blocked workstream never starts");
    let integration = rec["integration_branch"].as_str().expect("branch");
    let files = repo.git(&["ls-tree", "-r", "--name-only", integration]);
    assert!(
        files.contains("src/a/out.txt") && files.contains("src/c/out.txt"),
        "{files}"
    );
    assert!(!files.contains("src/b/out.txt"), "{files}");
    let text = repo.pipeline(&["run", "--bundle", &path]);
    assert!(
        text.stderr.contains("d blocked: b failed"),
        "{}",
        text.stderr
    );
}

/// Two workstreams allowed to overlap change the same file differently: the one merged second
/// is blocked, naming the file.
#[test]
fn an_integration_conflict_names_the_paths() {
    let repo = TestRepo::new();
    repo.write("shared.txt", "base\n");
    repo.commit_all("shared");
    repo.config(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", \"*:run:echo $PIPELINE_WORKSTREAM > shared.txt\"]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
    );
    let path = write_bundle(
        &repo,
        "b.json",
        r#"{"allow_overlap":true,"workstreams":[
          {"id":"left","task":"x","scope":["shared.txt"]},
          {"id":"right","task":"y","scope":["shared.txt"]},
          {"id":"after","task":"z","scope":["shared.txt"],"depends_on":["right"]}]}"#,
    );
    let out = repo.pipeline(&["run", "--bundle", &path, "--json", "--jobs", "1"]);
    out.assert_code(1);
    let rec = out.json();
    assert_eq!(rec["status"], "partial");
    let right = &rec["workstreams"][1];
    assert_eq!(right["state"], "blocked", "{rec:#}");
    assert_eq!(right["reason"], "merge_conflict");
    assert_eq!(right["conflicts"], serde_json::json!(["shared.txt"]));
    assert!(
        right["error"]
            .as_str()
            .is_some_and(|e| e.contains("conflicts with the integration branch in shared.txt")),
        "{right}"
    );
    assert_eq!(rec["workstreams"][2]["state"], "blocked");
    // Without allow_overlap the bundle is refused before anything runs.
    let strict = write_bundle(
        &repo,
        "strict.json",
        r#"{"workstreams":[{"id":"left","task":"x","scope":["shared.txt"]},{"id":"right","task":"y","scope":["shared.txt"]}]}"#,
    );
    repo.pipeline(&["plan", &strict]).assert_code(3);
}

/// kill -9 in the middle of a bundle; resume skips what finished, resumes what was running,
/// starts what was pending.
#[test]
fn a_bundle_resumes_after_kill_9_skipping_finished_workstreams() {
    let repo = TestRepo::new();
    for x in ["a", "b", "c"] {
        repo.write(&format!("src/{x}/f.txt"), x);
    }
    repo.commit_all("three folders");
    let kill = "*:run:echo $PIPELINE_WORKSTREAM >> LOGS/builds.log; echo done > src/$PIPELINE_WORKSTREAM/out.txt; if [ $PIPELINE_WORKSTREAM = b ] && [ ! -e LOGS/killed ]; then touch LOGS/killed; kill -9 $(ps -o ppid= -p $PPID); sleep 5; fi";
    // The step kills git-pipeline itself, which the sandbox refuses (signals stay inside it).
    repo.config(&format!(
        "version = 1\n[run]\nsandbox = \"off\"\n[agents.builder]\ncommand = [\"AGENT\", {kill:?}]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n"
    ));
    let path = write_bundle(
        &repo,
        "b.json",
        r#"{"workstreams":[
          {"id":"a","task":"do a","scope":["src/a/**"]},
          {"id":"b","task":"do b","scope":["src/b/**"],"depends_on":["a"]},
          {"id":"c","task":"do c","scope":["src/c/**"]}]}"#,
    );
    let out = repo.pipeline(&["run", "--bundle", &path, "--jobs", "3"]);
    assert_eq!(out.code, 137, "killed: {}", out.stderr);
    let status = repo.pipeline(&["status", "--json"]);
    let list = status.json();
    let bundle = list
        .as_array()
        .and_then(|l| l.iter().find(|r| r["kind"] == "bundle"))
        .expect("bundle row")
        .clone();
    assert_eq!(bundle["status"], "interrupted");
    let id = bundle["bundle_id"].as_str().expect("id");
    let resumed = repo.pipeline(&["resume", id, "--json"]);
    resumed.assert_code(0);
    let rec = resumed.json();
    assert_eq!(rec["status"], "completed");
    let log = std::fs::read_to_string(repo.root().join("logs/builds.log")).expect("log");
    let count = |w: &str| log.lines().filter(|l| *l == w).count();
    assert_eq!((count("a"), count("b"), count("c")), (1, 2, 1), "{log}");
    let integration = rec["integration_branch"].as_str().expect("branch");
    let files = repo.git(&["ls-tree", "-r", "--name-only", integration]);
    for f in ["src/a/out.txt", "src/b/out.txt", "src/c/out.txt"] {
        assert!(files.contains(f), "{files}");
    }
    // A finished bundle is not resumed again.
    repo.pipeline(&["resume", id]).assert_code(3);
}

/// An exclusive gate runs one at a time across parallel workstreams.
#[test]
fn exclusive_gates_never_overlap() {
    let repo = bundle_repo(
        "0",
        "[[gates]]\nname = \"db\"\nexclusive = true\ncommand = [\"sh\", \"-c\", \"echo start >> LOGS/gate.log; sleep 0.4; echo end >> LOGS/gate.log\"]\n",
    );
    let path = write_bundle(
        &repo,
        "b.json",
        r#"{"workstreams":[
          {"id":"a","task":"do a","scope":["src/a/**"]},
          {"id":"b","task":"do b","scope":["src/b/**"]},
          {"id":"c","task":"do c","scope":["src/c/**"]}]}"#,
    );
    let out = repo.pipeline(&["run", "--bundle", &path, "--jobs", "3"]);
    out.assert_code(0);
    let log = std::fs::read_to_string(repo.root().join("logs/gate.log")).expect("gate log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        ["start", "end", "start", "end", "start", "end"],
        "{log}"
    );
    assert!(out.stderr.contains("waiting (exclusive"), "{}", out.stderr);
}

/// A high-risk task whose planner splits it: an invalid bundle goes back to the planner as a
/// rejected round; the valid one fans out into workstreams.
#[test]
fn a_planner_can_split_a_task_into_a_bundle() {
    let repo = TestRepo::new();
    for x in ["a", "b"] {
        repo.write(&format!("src/{x}/f.txt"), x);
    }
    repo.commit_all("two folders");
    let cycle = r#"{"version":1,"workstreams":[{"id":"a","task":"do a","scope":["src/a/**"],"depends_on":["b"]},{"id":"b","task":"do b","scope":["src/b/**"],"depends_on":["a"]}]}"#;
    let good = r#"{"version":1,"workstreams":[{"id":"a","task":"do a","scope":["src/a/**"]},{"id":"b","task":"do b","scope":["src/b/**"],"depends_on":["a"]}]}"#;
    repo.config(&format!(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", \"*:run:echo done > src/$PIPELINE_WORKSTREAM/out.txt\"]\n\
         [agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n\
         [agents.planner]\ncommand = [\"AGENT\", {:?}, {:?}]\n\
         [agents.reviewer]\ncommand = [\"AGENT\", \"*:approve\"]\n",
        format!("1:say:Two parts.\n{cycle}"),
        format!("2:say:Two parts, in order.\n{good}"),
    ));
    let out = repo.pipeline(&[
        "run",
        "--risk",
        "high",
        "--json",
        "rework the storage layer",
    ]);
    out.assert_code(0);
    let rec = out.json();
    assert_eq!(rec["status"], "completed", "{rec:#}");
    let parent = rec["parent_run"].as_str().expect("parent run");
    let feedback = repo.prompt("planner", 2);
    assert!(
        feedback.contains("dependency cycle: a → b → a"),
        "{feedback}"
    );
    let integration = rec["integration_branch"].as_str().expect("branch");
    let files = repo.git(&["ls-tree", "-r", "--name-only", integration]);
    assert!(
        files.contains("src/a/out.txt") && files.contains("src/b/out.txt"),
        "{files}"
    );
    let show = repo.pipeline(&["show", "--json", parent]);
    let p = show.json();
    assert_eq!(p["status"], "succeeded");
    assert_eq!(p["split_into"], rec["bundle_id"]);
    assert!(p["commit"].is_null());
    // What the task came to is the bundle's outcome, shown with the split.
    let human = repo.pipeline(&["show", parent]);
    let bundle_id = rec["bundle_id"].as_str().unwrap_or("");
    assert!(
        human.stdout.contains(&format!(
            "split     the plan became bundle {bundle_id}: completed"
        )),
        "{}",
        human.stdout
    );
    // `status` says the same on the run's line, and in its JSON.
    let status = repo.pipeline(&["status"]);
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with(parent))
        .unwrap_or_default();
    assert!(line.contains("split: completed"), "{}", status.stdout);
    let list = repo.pipeline(&["status", "--json"]).json();
    let row = list
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["run_id"] == parent))
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["split_into"], rec["bundle_id"]);
    // The split run left no worktree or branch of its own.
    let branches = repo.pipeline_branches();
    assert!(
        !branches.iter().any(|b| b.ends_with(parent)),
        "{branches:?}"
    );
}

#[test]
fn an_interrupted_bundle_can_be_abandoned_and_a_dry_run_creates_nothing() {
    let repo = TestRepo::new();
    for x in ["a", "b"] {
        repo.write(&format!("src/{x}/f.txt"), x);
    }
    repo.commit_all("two folders");
    let kill = "*:run:echo done > src/$PIPELINE_WORKSTREAM/out.txt; if [ $PIPELINE_WORKSTREAM = b ]; then kill -9 $(ps -o ppid= -p $PPID); sleep 5; fi";
    // The step kills git-pipeline itself, which the sandbox refuses (signals stay inside it).
    repo.config(&format!(
        "version = 1\n[run]\nsandbox = \"off\"\n[agents.builder]\ncommand = [\"AGENT\", {kill:?}]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n"
    ));
    let path = write_bundle(
        &repo,
        "b.json",
        r#"{"workstreams":[{"id":"a","task":"do a","scope":["src/a/**"]},{"id":"b","task":"do b","scope":["src/b/**"],"depends_on":["a"]}]}"#,
    );
    let before = repo.user_state();
    let dry = repo.pipeline(&["run", "--bundle", &path, "--dry-run"]);
    dry.assert_code(0);
    assert!(dry.stdout.contains("order: a, b"), "{}", dry.stdout);
    assert!(repo.run_ids().is_empty(), "a dry run creates nothing");
    let out = repo.pipeline(&["run", "--bundle", &path]);
    assert_eq!(out.code, 137, "{}", out.stderr);
    let list = repo.pipeline(&["status", "--json"]).json();
    let id = list
        .as_array()
        .and_then(|l| l.iter().find(|r| r["kind"] == "bundle"))
        .and_then(|b| b["bundle_id"].as_str())
        .expect("bundle")
        .to_owned();
    let gone = repo.pipeline(&["abandon", &id]);
    gone.assert_code(0);
    assert!(gone.stdout.contains("and the runs of b"), "{}", gone.stdout);
    let show = repo.pipeline(&["show", "--json", &id]).json();
    assert_eq!(show["status"], "abandoned");
    // b's worktree is gone; a's shipped branch and the integration branch stay.
    assert!(
        repo.busy_worktrees().is_empty(),
        "{:?}",
        repo.busy_worktrees()
    );
    let branches = repo.pipeline_branches();
    assert!(
        branches.iter().any(|b| b.ends_with("/integration")),
        "{branches:?}"
    );
    assert_untouched(&before, &repo.user_state());
    repo.pipeline(&["resume", &id]).assert_code(3);
}
