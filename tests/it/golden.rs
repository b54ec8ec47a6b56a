//! The golden path, the dry run, and the promise that the user's checkout is never touched.

use serde_json::Value;

use crate::common::{TestRepo, assert_untouched, pairs, stage_list};

const SCOPE_AND_GATE: &str = r#"
[scope]
allow = ["src/**"]
[[gates]]
name = "has-new"
command = ["test", "-f", "src/new.rs"]
"#;

#[test]
fn golden_path_ships_one_attested_commit_and_removes_the_worktree() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            "1:write:src/new.rs:pub fn added() {}",
            "1:append:src/lib.rs:// more",
        ],
        &["*:approve"],
        SCOPE_AND_GATE,
    );
    let before = repo.user_state();
    let base = repo.git(&["rev-parse", "HEAD"]);

    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["reason"], Value::Null);
    assert_eq!(r["rolled_back"], false);
    assert_eq!(r["worktree"], Value::Null);
    assert_eq!(r["base"], base.as_str());
    let run_id = r["run_id"].as_str().expect("run id");
    let branch = r["branch"].as_str().expect("branch");
    assert_eq!(branch, format!("pipeline/{run_id}"));
    assert_eq!(
        r["changed_paths"],
        serde_json::json!(["src/lib.rs", "src/new.rs"])
    );

    // One commit on the run branch, on top of the base, with the task and a trailer.
    let commit = r["commit"].as_str().expect("commit");
    assert_eq!(repo.git(&["rev-parse", branch]), commit);
    assert_eq!(repo.git(&["rev-parse", &format!("{commit}^")]), base);
    assert_eq!(
        repo.git(&["show", &format!("{commit}:src/new.rs")]),
        "pub fn added() {}"
    );
    let message = repo.git(&["log", "-1", "--format=%B", commit]);
    assert!(message.starts_with("add the helper\n"), "{message}");
    assert!(
        message.contains(&format!("Pipeline-Run: {run_id}")),
        "{message}"
    );
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae>", commit]),
        "Test User <test@example.com>"
    );

    // The attestation is bound to the commit's tree.
    let note: Value =
        serde_json::from_str(&repo.git(&["notes", "--ref=refs/notes/pipeline", "show", commit]))
            .expect("note is JSON");
    // Format 2: an in-toto statement of the change from the base's tree to the commit's.
    assert_eq!(note["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        note["predicateType"],
        "https://git-pipeline.dev/attestation/v2"
    );
    let tree = repo.git(&["rev-parse", &format!("{commit}^{{tree}}")]);
    assert_eq!(
        note["subject"],
        serde_json::json!([
            {"name": "commit", "digest": {"gitCommit": commit}},
            {"name": "tree", "digest": {"gitTree": tree}},
        ])
    );
    let p = &note["predicate"];
    assert_eq!(p["approved"], true);
    assert_eq!(p["run_id"], run_id);
    assert_eq!(p["base"]["commit"], base.as_str());
    assert_eq!(
        p["base"]["tree"],
        repo.git(&["rev-parse", &format!("{base}^{{tree}}")])
            .as_str()
    );
    assert_eq!(p["verifier"]["rounds"], 1);
    assert_eq!(p["verifier"]["verdict"], "approved");
    assert_eq!(p["gates"][0]["name"], "has-new");
    assert_eq!(p["gates"][0]["result"], "pass");
    assert!(p["gates"][0]["duration_s"].as_f64().is_some(), "{p}");
    assert_eq!(p["task"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(
        p["scope"]["changed"],
        serde_json::json!(["src/lib.rs", "src/new.rs"])
    );
    let roles: Vec<&str> = p["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter_map(|a| a["role"].as_str())
        .collect();
    assert_eq!(roles, ["builder", "verifier"], "{p}");
    assert_eq!(p["agents"][0]["changed_tree"], true);
    assert_eq!(p["agents"][1]["changed_tree"], false);

    // The worktree went back to the pool: slot 0 stays, detached and idle, for the next run's
    // caches; no folder of the run's own is left; the branch stays.
    assert!(repo.busy_worktrees().is_empty());
    assert!(!repo.worktree_root().join(run_id).exists());
    assert_eq!(
        repo.linked_worktrees(),
        vec![repo.slot(0).display().to_string()]
    );
    assert_eq!(repo.pipeline_branches(), vec![branch.to_owned()]);

    // Stages per SPEC: skipped routing stages, then execution, verification, ship.
    let expect = pairs(&[
        ("discovery", "skip"),
        ("planning", "skip"),
        ("execution", "pass"),
        ("verification", "pass"),
        ("docs", "skip"),
        ("ship", "pass"),
    ]);
    assert_eq!(stage_list(&r), expect);
    assert_eq!(r["metrics"]["stages_executed"], 3);
    assert_eq!(r["metrics"]["stages_skipped"], 3);
    assert_eq!(r["metrics"]["fix_attempts"], 0);
    assert_eq!(
        r["verification"],
        serde_json::json!({"rounds": 1, "approved": true, "issues": []})
    );
    assert_eq!(r["gates"][0]["name"], "has-new");
    assert_eq!(r["gates"][0]["status"], "pass");

    // Builder and verifier ran in different sessions, in the worktree.
    let calls = repo.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let session = |l: &str| {
        l.split(' ')
            .find_map(|f| f.strip_prefix("session="))
            .unwrap_or("")
            .to_owned()
    };
    assert_ne!(session(&calls[0]), session(&calls[1]));
    assert!(calls[0].contains(&format!("cwd={}", repo.slot(0).display())));
    assert_eq!(
        r["stages"][2]["session_id"].as_str(),
        Some(session(&calls[0]).as_str())
    );

    // The record on disk is what `show --json` prints, and the events tell the story.
    let shown = repo.pipeline(&["show", "--json", &run_id[..12]]);
    shown.assert_code(0);
    assert_eq!(shown.json(), r);
    let events = std::fs::read_to_string(
        repo.path
            .join(format!(".git/pipeline/runs/{run_id}/events.jsonl")),
    )
    .expect("events");
    let kinds: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("event line")["event"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    for k in [
        "run_started",
        "stage_started",
        "agent_exited",
        "scope_checked",
        "gate_finished",
        "verdict",
        "shipped",
    ] {
        assert!(
            kinds.iter().any(|x| x == k),
            "missing event {k} in {kinds:?}"
        );
    }
    assert_eq!(kinds.first().map(String::as_str), Some("run_started"));

    assert_untouched(&before, &repo.user_state());
}

#[test]
fn human_output_names_the_branch_and_how_to_merge() {
    let repo = TestRepo::new();
    repo.agents(&["1:write:src/new.rs:x"], &["*:approve"], SCOPE_AND_GATE);
    let out = repo.pipeline(&["run", "add the helper"]);
    out.assert_code(0);
    assert!(
        out.stdout.starts_with("shipped pipeline/"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("merge it: git merge pipeline/"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("gate has-new: pass"), "{}", out.stderr);
    assert!(
        out.stderr.contains("verification 1/2: approved"),
        "{}",
        out.stderr
    );
}

#[test]
fn dry_run_shows_the_plan_and_creates_nothing() {
    let repo = TestRepo::new();
    repo.agents(&["1:write:src/new.rs:x"], &["*:approve"], SCOPE_AND_GATE);
    let before = repo.user_state();
    let out = repo.pipeline(&["run", "--dry-run", "fix the typo in the docs"]);
    out.assert_code(0);
    for needle in [
        "dry run",
        "risk:     low",
        "typo",
        "pipeline/<run-id>",
        "repo.pipeline/<run-id>",
        "builder `builder`",
        "verifier `verifier`",
        "gate has-new",
        "may modify or delete: src/**",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle:?} in:\n{}",
            out.stdout
        );
    }
    assert!(repo.pipeline_branches().is_empty());
    assert!(repo.busy_worktrees().is_empty());
    assert!(!repo.worktree_root().exists());
    assert!(repo.run_ids().is_empty());
    assert!(repo.calls().is_empty(), "no agent may run in a dry run");
    assert_untouched(&before, &repo.user_state());

    let json = repo.pipeline(&["run", "--dry-run", "--json", "fix the typo"]);
    json.assert_code(0);
    let v = json.json();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["risk"], "low");
    assert_eq!(v["gates"][0]["found"], true);
    assert!(repo.run_ids().is_empty());
}

#[test]
fn a_dirty_checkout_is_left_byte_for_byte_as_it_was() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            "1:write:src/new.rs:x",
            "1:append:README.md:agent line",
            "2:append:src/new.rs:y",
        ],
        &["1:reject:no", "2:approve"],
        "[scope]\nallow = [\"src/**\", \"README.md\"]\n",
    );
    // Uncommitted, staged, untracked and ignored work of the user.
    repo.write(".gitignore", ".env\n");
    repo.commit_all("ignore env");
    repo.write("README.md", "# demo\nuser edit not committed\n");
    repo.write("src/lib.rs", "pub fn answer() -> u32 { 41 }\n");
    repo.git(&["add", "src/lib.rs"]);
    repo.write("notes.txt", "user's untracked notes\n");
    repo.write(".env", "TOKEN=user\n");
    let before = repo.user_state();

    repo.pipeline(&["run", "add the helper"]).assert_code(0);
    assert_untouched(&before, &repo.user_state());

    // A failing run leaves it alone too.
    repo.agents(
        &["*:write:outside.txt:x"],
        &["*:approve"],
        "[scope]\nallow = [\"src/**\"]\n[limits]\nmax_fix_attempts = 0\n",
    );
    repo.write("README.md", "# demo\nuser edit not committed\n");
    let before = repo.user_state();
    repo.pipeline(&["run", "add the helper"]).assert_code(6);
    assert_untouched(&before, &repo.user_state());
}

#[test]
fn works_from_a_subdirectory_and_with_dash_c() {
    let repo = TestRepo::new();
    repo.agents(&["1:write:src/new.rs:x"], &["*:approve"], SCOPE_AND_GATE);
    repo.pipeline_in(&repo.path.join("src"), &["run", "add the helper"])
        .assert_code(0);
    let out = repo.pipeline_in(
        repo.root(),
        &["-C", "repo", "run", "--json", "add another helper"],
    );
    out.assert_code(0);
    assert_eq!(repo.pipeline_branches().len(), 2);
    let status = repo.pipeline_in(&repo.path.join("src"), &["status"]);
    status.assert_code(0);
    assert!(status.stdout.contains("succeeded"), "{}", status.stdout);
    assert_eq!(status.stdout.lines().count(), 3, "{}", status.stdout);
}

#[test]
fn ship_merge_fast_forwards_the_checked_out_branch_when_safe() {
    let repo = TestRepo::new();
    repo.agents(
        &["1:write:src/new.rs:x"],
        &["*:approve"],
        "[run]\nship = \"merge\"\n[scope]\nallow = [\"src/**\"]\n",
    );
    repo.write("notes.txt", "untracked, unrelated\n");
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    let r = out.json();
    let commit = r["commit"].as_str().expect("commit");
    assert_eq!(repo.git(&["rev-parse", "main"]), commit);
    assert!(
        r["merge"]
            .as_str()
            .unwrap_or("")
            .starts_with("fast-forwarded main"),
        "{r}"
    );
    // The checkout followed, and the user's untracked file is still there.
    assert_eq!(repo.read("src/new.rs"), "x\n");
    assert_eq!(repo.read("notes.txt"), "untracked, unrelated\n");
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
}

#[test]
fn ship_merge_refuses_to_overwrite_local_changes_and_says_so() {
    let repo = TestRepo::new();
    repo.agents(
        &["1:append:src/lib.rs:// agent"],
        &["*:approve"],
        "[run]\nship = \"merge\"\n[scope]\nallow = [\"src/**\"]\n",
    );
    let main_before = repo.git(&["rev-parse", "main"]);
    repo.write("src/lib.rs", "user's uncommitted edit\n");
    let before = repo.user_state();
    let out = repo.pipeline(&["run", "--json", "change lib"]);
    out.assert_code(0);
    let r = out.json();
    assert!(
        r["merge"]
            .as_str()
            .unwrap_or("")
            .starts_with("not merged into main"),
        "{r}"
    );
    assert_eq!(repo.git(&["rev-parse", "main"]), main_before);
    assert_untouched(&before, &repo.user_state());
    assert!(
        out.stderr.contains("not merged into main"),
        "{}",
        out.stderr
    );
}

/// The dry run names the builder command a run would really start: the first whose
/// max_prompt_bytes fits the builder's first prompt.
#[test]
fn the_dry_run_names_the_builder_command_that_fits_the_prompt() {
    let repo = TestRepo::new();
    repo.config(
        "version = 1\n[[agents.builder]]\ncommand = [\"AGENT\", \"small\"]\nmax_prompt_bytes = 100\n[[agents.builder]]\ncommand = [\"AGENT\", \"large\"]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
    );
    let v = repo
        .pipeline(&["run", "--dry-run", "--json", "fix the typo"])
        .json();
    let argv = v["agents"]["builder"]["command"].clone();
    assert_eq!(argv[1], "large", "{v:#}");
}

/// `[agents.router]` classifies the task before any other agent: it may raise the word rules'
/// risk (the run then starts earlier), never lower it; no answer leaves the word rules' risk;
/// `--risk` decides without asking it.
#[test]
fn a_router_agent_may_raise_the_risk_never_lower_it() {
    let router = |answer: &str| {
        format!(
            "[agents.router]\ncommand = [\"AGENT\", \"*:run:echo asked >> LOGS/router\", \"*:say:{}\"]\n",
            answer.replace('"', "\\\"")
        )
    };
    let run = |answer: &str, task: &str, extra_args: &[&str]| {
        let repo = TestRepo::new();
        repo.agents(&["*:write:src/new.rs:x"], &["*:approve"], &router(answer));
        let mut args = vec!["run", "--json"];
        args.extend_from_slice(extra_args);
        args.push(task);
        let out = repo.pipeline(&args);
        let asked = std::fs::read_to_string(repo.logs.join("router")).is_ok();
        (out, asked)
    };

    // "fix the typo" is low by its words; the router says high: the run starts at discovery
    // (none is configured here, so it says that instead of "starts at execution").
    let (out, asked) = run(
        r#"{"risk": "high", "why": "it edits the auth check"}"#,
        "fix the typo",
        &[],
    );
    out.assert_code(0);
    assert!(asked);
    let r = out.json();
    assert_eq!(r["risk"], "high", "{r}");
    assert!(
        out.stderr
            .contains("says high (it edits the auth check); the run starts at discovery"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("planning: skipped (no [agents.planner] configured)"),
        "{}",
        out.stderr
    );

    // A destructive task is high by its words; the router's "low" does not lower it.
    let (out, asked) = run(
        r#"{"risk": "low", "why": "just a small change"}"#,
        "drop the production database tables",
        &[],
    );
    assert!(asked);
    assert_eq!(out.json()["risk"], "high");
    assert!(
        out.stderr
            .contains("risk stays high (the word rules are the floor)"),
        "{}",
        out.stderr
    );

    // No answer: the word rules' risk stands, and the step says so.
    let (out, _) = run("looks fine to me", "fix the typo", &[]);
    out.assert_code(0);
    assert_eq!(out.json()["risk"], "low");
    assert!(
        out.stderr
            .contains("gave no {\"risk\": ...} answer; risk stays low"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("planning: skipped (risk low starts at execution)"),
        "{}",
        out.stderr
    );

    // --risk decides: the router is not asked.
    let (out, asked) = run(
        r#"{"risk": "high", "why": "x"}"#,
        "fix the typo",
        &["--risk", "low"],
    );
    out.assert_code(0);
    assert!(!asked, "--risk low: the router is not asked");
    assert_eq!(out.json()["risk"], "low");
}
