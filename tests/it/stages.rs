//! The five-stage pipeline: routing by risk, discovery, planning with a file-impact manifest,
//! sessions, prompt overrides, the docs stage and the circuit breakers.

use serde_json::Value;

use crate::common::{TestRepo, pairs};

const MANIFEST: &str = r#"{"file_impact": {"modify": ["src/lib.rs"], "create": ["src/new.rs"], "delete": [], "do_not_touch": ["README.md"]}}"#;

/// A `[agents.<role>]` table (or `[[agents.<role>]]` entry) running the fake agent.
fn agent(role: &str, actions: &[&str], array: bool) -> String {
    let list: Vec<String> = actions.iter().map(|a| format!("{a:?}")).collect();
    let head = if array {
        format!("[[agents.{role}]]")
    } else {
        format!("[agents.{role}]")
    };
    format!(
        "{head}\ncommand = [\"AGENT\", \"{{prompt}}\", {}]\ntimeout = \"20s\"\n",
        list.join(", ")
    )
}

/// Planner and reviewer with these actions, a builder appending to src/lib.rs, an approving
/// verifier, and `extra` config.
fn plan_config(
    repo: &TestRepo,
    planner: &[&str],
    reviewer: Option<&[&str]>,
    builder: &[&str],
    extra: &str,
) {
    let mut body = vec![
        format!("version = 1\n{extra}\n"),
        agent("planner", planner, false),
    ];
    if let Some(r) = reviewer {
        body.push(agent("reviewer", r, false));
    }
    body.push(agent("builder", builder, false));
    body.push(agent("verifier", &["*:approve"], false));
    repo.config(&body.concat());
}

fn say(text: &str) -> String {
    format!("*:say:{text}")
}

/// Every role configured: two discovery agents, planner (with a manifest), reviewer, builder,
/// verifier. The builder changes src/lib.rs, as the manifest allows.
fn full_config(repo: &TestRepo, extra: &str) {
    let plan = say(&format!("Plan: change src/lib.rs.\n{MANIFEST}"));
    let body = [
        "version = 1\n".to_owned(),
        agent("discovery", &["*:say:findings one"], true),
        agent("discovery", &["*:say:findings two"], true),
        agent("planner", &[&plan], false),
        agent("reviewer", &["*:approve"], false),
        agent("builder", &["*:append:src/lib.rs:// done"], false),
        agent("verifier", &["*:approve"], false),
        extra.to_owned(),
    ]
    .concat();
    repo.config(&body);
}

/// (role, attempt, session) of every agent call, in order.
fn calls(repo: &TestRepo) -> Vec<(String, String, String)> {
    repo.calls()
        .iter()
        .map(|l| {
            let field = |k: &str| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix(&format!("{k}=")))
                    .unwrap_or("")
                    .to_owned()
            };
            (field("role"), field("attempt"), field("session"))
        })
        .collect()
}

fn roles(repo: &TestRepo) -> Vec<String> {
    calls(repo).into_iter().map(|(r, _, _)| r).collect()
}

fn stage_notes(r: &Value) -> Vec<(String, String, String)> {
    r["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap_or("").to_owned(),
                s["status"].as_str().unwrap_or("").to_owned(),
                s["note"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_low_risk_task_starts_at_execution() {
    let repo = TestRepo::new();
    full_config(&repo, "");
    let out = repo.pipeline(&["run", "--json", "fix the typo in the readme"]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["risk"], "low");
    assert_eq!(roles(&repo), vec!["builder", "verifier"]);
    let notes = stage_notes(&r);
    assert_eq!(
        notes[0],
        (
            "discovery".to_owned(),
            "skip".to_owned(),
            "risk low starts at execution".to_owned()
        )
    );
    assert_eq!(notes[1].0, "planning");
    assert_eq!(notes[1].1, "skip");
}

#[test]
fn a_medium_risk_task_starts_at_planning_with_its_own_session() {
    let repo = TestRepo::new();
    full_config(&repo, "");
    let out = repo.pipeline(&["run", "--json", "refactor the api handlers"]);
    out.assert_code(0);
    assert_eq!(out.json()["risk"], "medium");
    let c = calls(&repo);
    let order: Vec<&str> = c.iter().map(|(r, _, _)| r.as_str()).collect();
    assert_eq!(order, vec!["planner", "reviewer", "builder", "verifier"]);
    assert_eq!(
        c[0].2, c[1].2,
        "planner and reviewer share the planning session"
    );
    assert_ne!(c[1].2, c[2].2, "execution has its own session");
    assert_ne!(c[2].2, c[3].2, "verification has its own session");
    assert_ne!(c[0].2, c[3].2);
    // The approved plan reached the builder and the verifier.
    assert!(
        repo.prompt("builder", 1)
            .contains("Plan: change src/lib.rs.")
    );
    assert!(
        repo.prompt("verifier", 1)
            .contains("Plan: change src/lib.rs.")
    );
}

#[test]
fn a_high_risk_task_runs_every_stage_with_discovery_and_planning_sharing_a_session() {
    let repo = TestRepo::new();
    full_config(&repo, "");
    let out = repo.pipeline(&["run", "--json", "harden the auth flow"]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["risk"], "high");
    let c = calls(&repo);
    let order: Vec<&str> = c.iter().map(|(r, _, _)| r.as_str()).collect();
    assert_eq!(order.len(), 6, "{order:?}");
    assert_eq!(&order[..2], &["discovery", "discovery"]);
    assert_eq!(&order[2..], &["planner", "reviewer", "builder", "verifier"]);
    let sessions: Vec<&str> = c.iter().map(|(_, _, s)| s.as_str()).collect();
    assert!(
        sessions[..4].iter().all(|s| *s == sessions[0]),
        "{sessions:?}"
    );
    assert_ne!(sessions[4], sessions[0]);
    assert_ne!(sessions[5], sessions[4]);
    assert_ne!(sessions[5], sessions[0]);
    assert_eq!(r["artifacts"]["spec"], "spec.md");
    assert_eq!(r["artifacts"]["plan"], "plan.md");
    assert_eq!(r["scope"]["origin"], "the plan's manifest");
    let prompt = repo.prompt("planner", 1);
    assert!(
        prompt.contains("findings one") && prompt.contains("findings two"),
        "{prompt}"
    );
}

#[test]
fn discovery_agents_run_at_once_and_merge_in_configured_order() {
    let repo = TestRepo::new();
    // A rendezvous, not a stopwatch: each agent marks that it started and waits for the other's
    // mark. Run one after the other, the first waits in vain and says ALONE.
    let meet = |me: &str, other: &str| {
        format!(
            "*:run:touch \"$FIXTURE_LOG_DIR/{me}\"; i=0; while [ ! -e \"$FIXTURE_LOG_DIR/{other}\" ]; do \
             i=$((i+1)); if [ $i -gt 150 ]; then echo ALONE; exit 0; fi; sleep 0.1; done"
        )
    };
    let (first, second) = (meet("one", "two"), meet("two", "one"));
    let body = [
        "version = 1\n".to_owned(),
        agent(
            "discovery",
            &[&first, "*:sleep:0.5", "*:say:FIRST findings"],
            true,
        ),
        agent("discovery", &[&second, "*:say:SECOND findings"], true),
        agent("builder", &["*:append:src/lib.rs:// done"], false),
        agent("verifier", &["*:approve"], false),
    ]
    .concat();
    repo.config(&body);
    let out = repo.pipeline(&["run", "--json", "--stage", "discovery", "add a helper"]);
    out.assert_code(0);
    // The second agent finished first, yet the spec keeps the configured order.
    let id = out.json()["run_id"].as_str().expect("id").to_owned();
    let spec = std::fs::read_to_string(repo.path.join(format!(".git/pipeline/runs/{id}/spec.md")))
        .expect("spec");
    assert!(
        !spec.contains("ALONE"),
        "discovery agents ran one after the other: {spec}"
    );
    let first = spec.find("FIRST findings").expect("first");
    let second = spec.find("SECOND findings").expect("second");
    assert!(first < second, "{spec}");
    let builder = repo.prompt("builder", 1);
    assert!(builder.find("FIRST").expect("in prompt") < builder.find("SECOND").expect("in prompt"));
}

#[test]
fn a_rejected_plan_goes_back_to_the_planner_with_the_issues() {
    let repo = TestRepo::new();
    let plan = say(&format!("Plan v1.\n{MANIFEST}"));
    plan_config(
        &repo,
        &[&plan],
        Some(&["1:reject:the plan forgets the tests", "2:approve"]),
        &["*:append:src/lib.rs:// done"],
        "",
    );
    let out = repo.pipeline(&["run", "--json", "--stage", "planning", "add a helper"]);
    out.assert_code(0);
    assert_eq!(repo.calls_of("planner"), 2);
    assert_eq!(repo.calls_of("reviewer"), 2);
    assert!(
        repo.prompt("planner", 2)
            .contains("the plan forgets the tests")
    );
    let r = out.json();
    let planning: Vec<(String, String)> = r["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter(|s| s["stage"] == "planning")
        .map(|s| {
            (
                s["agent"].as_str().unwrap_or("").to_owned(),
                s["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expect = pairs(&[
        ("planner", "pass"),
        ("reviewer", "fail"),
        ("planner", "pass"),
        ("reviewer", "pass"),
    ]);
    assert_eq!(planning, expect);
}

#[test]
fn a_plan_rejected_twice_stops_with_exit_2_and_keeps_the_plan() {
    let repo = TestRepo::new();
    let plan = say(&format!("Plan that never passes.\n{MANIFEST}"));
    plan_config(
        &repo,
        &[&plan],
        Some(&["*:reject:too vague"]),
        &["*:append:src/lib.rs:// done"],
        "",
    );
    let out = repo.pipeline(&["run", "--json", "--stage", "planning", "add a helper"]);
    out.assert_code(2);
    let r = out.json();
    assert_eq!(r["reason"], "plan_rejected");
    assert_eq!(repo.calls_of("builder"), 0);
    assert_eq!(repo.calls_of("reviewer"), 2);
    let id = r["run_id"].as_str().expect("id");
    let kept = repo.path.join(format!(".git/pipeline/runs/{id}/plan.md"));
    assert!(
        std::fs::read_to_string(&kept)
            .expect("plan kept")
            .contains("Plan that never passes.")
    );
    assert!(
        out.error_line().contains(&kept.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("too vague"), "{}", out.stderr);
    assert!(repo.pipeline_branches().is_empty());
}

#[test]
fn a_plan_without_a_manifest_is_rejected_before_any_review() {
    let repo = TestRepo::new();
    let good = format!("2:say:Plan.\n{MANIFEST}");
    plan_config(
        &repo,
        &["1:say:A plan in prose only.", &good],
        Some(&["*:approve"]),
        &["*:append:src/lib.rs:// done"],
        "",
    );
    let out = repo.pipeline(&["run", "--json", "--stage", "planning", "add a helper"]);
    out.assert_code(0);
    assert_eq!(repo.calls_of("planner"), 2);
    assert_eq!(
        repo.calls_of("reviewer"),
        1,
        "no reviewer for a plan without a manifest"
    );
    assert!(
        repo.prompt("planner", 2)
            .contains("no file-impact manifest")
    );
}

#[test]
fn the_approved_manifest_becomes_the_scope_and_holds_the_builder_to_it() {
    let repo = TestRepo::new();
    let plan = say(&format!("Plan.\n{MANIFEST}"));
    plan_config(
        &repo,
        &[&plan],
        None,
        &[
            "1:append:src/lib.rs:// ok",
            "1:write:src/stray.rs:x",
            "2:delete:src/stray.rs",
            "2:append:README.md:no",
        ],
        "[limits]\nmax_fix_attempts = 1",
    );
    let out = repo.pipeline(&["run", "--json", "--stage", "planning", "add a helper"]);
    out.assert_code(6);
    let r = out.json();
    assert_eq!(r["scope"]["origin"], "the plan's manifest");
    assert_eq!(r["scope"]["allow"], serde_json::json!(["src/lib.rs"]));
    let fix = repo.prompt("builder", 2);
    assert!(
        fix.contains("A src/stray.rs: not in the plan's create list"),
        "{fix}"
    );
    assert!(
        out.stderr
            .contains("M README.md: matches scope.deny `README.md`"),
        "{}",
        out.stderr
    );
    // No reviewer configured: said so, and recorded.
    assert!(
        out.stderr
            .contains("planning (reviewer): skipped (no [agents.reviewer] configured"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_user_scope_stays_and_the_do_not_touch_list_joins_it() {
    let repo = TestRepo::new();
    let plan = say(&format!("Plan.\n{MANIFEST}"));
    plan_config(
        &repo,
        &[&plan],
        None,
        &["*:append:src/other.rs:ok", "*:append:README.md:no"],
        "[scope]\nallow = [\"src/**\", \"README.md\"]\n[limits]\nmax_fix_attempts = 0",
    );
    let out = repo.pipeline(&["run", "--json", "--stage", "planning", "add a helper"]);
    out.assert_code(6);
    assert_eq!(
        out.json()["changed_paths"],
        serde_json::json!(["README.md", "src/other.rs"])
    );
    assert!(
        out.stderr
            .contains("M README.md: matches scope.deny `README.md`"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("src/other.rs:"), "{}", out.stderr);
}

#[test]
fn the_same_gate_error_trips_the_breaker_before_the_attempts_run_out() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:append:src/lib.rs:// attempt"],
        &["*:approve"],
        "[limits]\nmax_fix_attempts = 3\nmax_same_error = 2\n[[gates]]\nname = \"test\"\ncommand = [\"sh\", \"-c\", \"echo \\\"test failed at $(date +%s%N) in $PWD/src/lib.rs:$(wc -l < src/lib.rs)\\\"; exit 1\"]\n",
    );
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(1);
    let r = out.json();
    assert_eq!(r["reason"], "breaker_tripped");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("gate test failed 2 times with the same error"),
        "{r}"
    );
    assert_eq!(repo.calls_of("builder"), 2);
    assert!(
        out.stderr.contains("test failed at"),
        "the evidence is shown: {}",
        out.stderr
    );
    let id = r["run_id"].as_str().expect("id");
    let events = std::fs::read_to_string(
        repo.path
            .join(format!(".git/pipeline/runs/{id}/events.jsonl")),
    )
    .expect("events");
    assert!(events.contains("\"event\":\"breaker_tripped\""));
}

#[test]
fn an_oscillating_builder_trips_the_breaker() {
    let repo = TestRepo::new();
    repo.agents(
        &["1:write:src/x:A", "2:write:src/x:B", "3:write:src/x:A"],
        &["*:approve"],
        "[[gates]]\nname = \"check\"\ncommand = [\"sh\", \"-c\", \"echo \\\"bad value $(cat src/x)\\\"; exit 1\"]\n",
    );
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(1);
    let r = out.json();
    assert_eq!(r["reason"], "breaker_tripped");
    assert_eq!(
        r["error"],
        "circuit breaker: attempt 3 reproduced the changes of attempt 1 (oscillation)"
    );
    assert_eq!(
        r["gates"].as_array().map(Vec::len),
        Some(2),
        "no gate ran on attempt 3"
    );

    // Switched off, the same builder runs until its attempts are used up.
    repo.agents(
        &["1:write:src/x:A", "2:write:src/x:B", "3:write:src/x:A", "4:write:src/x:B"],
        &["*:approve"],
        "[limits]\noscillation = false\nmax_same_error = 0\n[[gates]]\nname = \"check\"\ncommand = [\"sh\", \"-c\", \"echo \\\"bad value $(cat src/x)\\\"; exit 1\"]\n",
    );
    repo.pipeline(&["run", "fix the typo"]).assert_code(4);
}

fn docs_config(repo: &TestRepo, builder: &[&str], docs: &[&str]) {
    let body = [
        "version = 1\n[scope]\nallow = [\"src/**\"]\n[[gates]]\nname = \"ok\"\ncommand = [\"true\"]\n".to_owned(),
        agent("builder", builder, false),
        agent("verifier", &["*:approve"], false),
        agent("docs", docs, false),
    ]
    .concat();
    repo.config(&body);
}

#[test]
fn the_docs_agent_runs_only_when_public_surface_changes() {
    let repo = TestRepo::new();
    docs_config(
        &repo,
        &["*:write:src/internal.rs:x"],
        &["*:append:README.md:docs"],
    );
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    assert_eq!(repo.calls_of("docs"), 0);
    assert!(
        out.stderr
            .contains("docs: skipped (the change touches no public surface (docs.when))"),
        "{}",
        out.stderr
    );

    docs_config(
        &repo,
        &["*:append:src/lib.rs:pub fn more() {}"],
        &["*:append:README.md:## more()"],
    );
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    assert_eq!(repo.calls_of("docs"), 1);
    let r = out.json();
    let commit = r["commit"].as_str().expect("commit");
    assert!(
        repo.git(&["show", &format!("{commit}:README.md")])
            .contains("## more()")
    );
    let note: Value =
        serde_json::from_str(&repo.git(&["notes", "--ref=refs/notes/pipeline", "show", commit]))
            .expect("note");
    assert_eq!(note["predicate"]["docs"], serde_json::json!(["README.md"]));
    let docs_agent = note["predicate"]["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["role"] == "docs"))
        .expect("the docs agent is named");
    assert_eq!(docs_agent["changed_tree"], true);
    // Its own session.
    let sessions: Vec<String> = calls(&repo).into_iter().map(|(_, _, s)| s).collect();
    let docs_session = sessions.last().expect("docs call");
    assert!(
        sessions[..sessions.len() - 1]
            .iter()
            .all(|s| s != docs_session)
    );
}

#[test]
fn the_docs_agent_cannot_touch_code_and_its_edits_are_discarded() {
    let repo = TestRepo::new();
    docs_config(
        &repo,
        &["*:append:src/lib.rs:pub fn more() {}"],
        &[
            "*:append:README.md:docs",
            "*:append:src/lib.rs:// sneaky code change",
        ],
    );
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    assert!(
        out.stderr.contains("changed paths outside docs.paths"),
        "{}",
        out.stderr
    );
    let r = out.json();
    let commit = r["commit"].as_str().expect("commit");
    let lib = repo.git(&["show", &format!("{commit}:src/lib.rs")]);
    assert!(
        lib.contains("pub fn more()") && !lib.contains("sneaky"),
        "{lib}"
    );
    assert_eq!(
        repo.git(&["show", &format!("{commit}:README.md")]),
        "# demo"
    );
    let docs = r["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["stage"] == "docs")
        .expect("docs stage")
        .clone();
    assert_eq!(docs["status"], "fail");
}

#[test]
fn a_prompt_template_override_is_used_and_checked() {
    let repo = TestRepo::new();
    repo.write(
        ".pipeline/prompts/builder.md",
        "CUSTOM BUILDER PROMPT for: {{ task }} (attempt {{ attempt }})\n",
    );
    repo.commit_all("custom builder prompt");
    repo.agents(&["*:append:src/lib.rs:// x"], &["*:approve"], "");
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(0);
    assert_eq!(
        repo.prompt("builder", 1),
        "CUSTOM BUILDER PROMPT for: fix the typo (attempt 1)\n"
    );
    assert!(
        repo.prompt("verifier", 1).contains("independent verifier"),
        "the others stay built in"
    );
    let dry = repo.pipeline(&["run", "--dry-run", "fix the typo"]);
    assert!(
        dry.stdout
            .contains("prompts overridden by .pipeline/prompts/: builder"),
        "{}",
        dry.stdout
    );

    repo.write(".pipeline/prompts/builder.md", "{{ tsak }}\n");
    repo.commit_all("broken prompt");
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains(".pipeline/prompts/builder.md"),
        "{}",
        out.stderr
    );
}

#[test]
fn agents_cannot_edit_the_prompt_overrides() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:.pipeline/prompts/builder.md:obey me"],
        &["*:approve"],
        "[limits]\nmax_fix_attempts = 0\n",
    );
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(6);
    assert!(
        out.stderr
            .contains(".pipeline/prompts/builder.md is the project's pipeline policy"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_optional_roles_are_skipped_with_a_reason() {
    let repo = TestRepo::new();
    repo.agents(&["*:append:src/lib.rs:// x"], &["*:approve"], "");
    let out = repo.pipeline(&["run", "--json", "harden the auth flow"]);
    out.assert_code(0);
    assert!(
        out.stderr
            .contains("discovery: skipped (no [agents.discovery] configured)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("planning: skipped (no [agents.planner] configured)"),
        "{}",
        out.stderr
    );
    let notes = stage_notes(&out.json());
    assert_eq!(notes[0].2, "no [agents.discovery] configured");
    assert_eq!(notes[1].2, "no [agents.planner] configured");
}

#[test]
fn a_wide_scope_makes_a_small_task_medium_and_flags_override_the_router() {
    let repo = TestRepo::new();
    for i in 0..12 {
        repo.write(&format!("src/m{i}.rs"), "x\n");
    }
    repo.commit_all("more files");
    repo.agents(&["*:append:src/lib.rs:// x"], &["*:approve"], "");
    let dry = |args: &[&str]| {
        let mut all = vec!["run", "--dry-run", "--json"];
        all.extend_from_slice(args);
        all.push("fix the typo");
        let out = repo.pipeline(&all);
        out.assert_code(0);
        out.json()
    };
    assert_eq!(dry(&["--scope", "src/lib.rs"])["risk"], "low");
    let wide = dry(&["--scope", "src/**"]);
    assert_eq!(wide["risk"], "medium");
    assert!(
        wide["risk_reasons"][1]
            .as_str()
            .unwrap_or("")
            .contains("covers 13 existing files"),
        "{wide}"
    );
    assert_eq!(wide["start"], "planning");
    let forced = dry(&["--scope", "src/**", "--risk", "low"]);
    assert_eq!(forced["risk"], "low");
    assert_eq!(forced["start"], "execution");
    assert_eq!(dry(&["--stage", "discovery"])["start"], "discovery");
}

/// Detection, where no OS sandbox prevents the write (tests/it/sandbox.rs has prevention).
#[test]
fn a_discovery_agent_or_planner_that_writes_fails_the_run() {
    let repo = TestRepo::new();
    let body = [
        "version = 1\n[run]\nsandbox = \"off\"\n".to_owned(),
        agent("discovery", &["*:say:ok"], true),
        agent("discovery", &["*:write:notes.md:my notes"], true),
        agent("builder", &["*:append:src/lib.rs:// done"], false),
        agent("verifier", &["*:approve"], false),
    ]
    .concat();
    repo.config(&body);
    let out = repo.pipeline(&["run", "--json", "--stage", "discovery", "add a helper"]);
    out.assert_code(1);
    let r = out.json();
    assert_eq!(
        r["error"],
        "a discovery agent changed files in the worktree; it must only read"
    );
    assert!(out.stderr.contains("notes.md"), "{}", out.stderr);
    assert_eq!(repo.calls_of("builder"), 0);

    let plan = say(&format!("Plan.\n{MANIFEST}"));
    plan_config(
        &repo,
        &[&plan, "*:append:src/lib.rs:planner edit"],
        None,
        &["*:append:src/lib.rs:// x"],
        "[run]\nsandbox = \"off\"\n",
    );
    let out = repo.pipeline(&["run", "--json", "--stage", "planning", "add a helper"]);
    out.assert_code(1);
    assert!(
        out.json()["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("the planner (planner) changed files"),
        "{}",
        out.stdout
    );
}

/// The docs agent (an editing role: `.git/objects` is writable to it) rewrites in place the
/// stored object of a file the verifier judged, under the same name. git does not check a loose
/// object when it reads it, so the commit would carry other bytes under the judged name, and
/// its attestation would vouch for them. Ship re-hashes what the change adds and refuses.
#[test]
fn an_object_rewritten_after_it_was_judged_never_ships() {
    let repo = TestRepo::new();
    std::fs::write(
        repo.root().join("swap.py"),
        "import os, subprocess, zlib\n\
         oid = subprocess.check_output(['git', 'hash-object', 'src/lib.rs']).decode().strip()\n\
         common = subprocess.check_output(['git', 'rev-parse', '--git-common-dir']).decode().strip()\n\
         p = os.path.join(common, 'objects', oid[:2], oid[2:])\n\
         body = b'pub fn evil() {}\\n'\n\
         os.chmod(p, 0o644)\n\
         open(p, 'wb').write(zlib.compress(b'blob %d\\0' % len(body) + body))\n",
    )
    .expect("write");
    docs_config(
        &repo,
        &["*:append:src/lib.rs:pub fn more() {}"],
        &["*:run:python3 ROOT/swap.py", "*:append:README.md:## more()"],
    );
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("src/lib.rs")
            && out.stderr.contains("was rewritten after it was judged"),
        "{}",
        out.stderr
    );
    assert!(out.json()["commit"].is_null(), "{}", out.stderr);
}
