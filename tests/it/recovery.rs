//! Crash safety: kill -9 at any stage, then `status`, `resume` or `abandon`; SIGINT; concurrent
//! runs; `clean`; and the views (`events`, `stats`).

use serde_json::Value;

use crate::common::{Out, TestRepo};

/// A gate or hook command that kills git-pipeline the first time it runs.
const KILL_GATE: &str =
    r#"[ -e "$FIXTURE_LOG_DIR/killed" ] || { : > "$FIXTURE_LOG_DIR/killed"; kill -9 $PPID; }"#;

fn only_run(repo: &TestRepo) -> String {
    let ids = repo.run_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

fn record(repo: &TestRepo, id: &str) -> Value {
    let out = repo.pipeline(&["show", "--json", id]);
    out.assert_code(0);
    out.json()
}

#[track_caller]
fn assert_killed(out: &Out) {
    assert_eq!(
        out.code, 137,
        "git-pipeline should have died of SIGKILL: {}",
        out.stderr
    );
}

/// The tree an uninterrupted run of the same config makes, in a fresh repository.
fn uninterrupted_tree(config: &str) -> String {
    let repo = TestRepo::new();
    repo.config(config);
    std::fs::create_dir_all(&repo.logs).expect("logs");
    std::fs::write(repo.logs.join("killed"), "").expect("marker");
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    repo.git(&["rev-parse", &format!("{commit}^{{tree}}")])
}

fn config_killing_in(stage: &str) -> String {
    let (builder, gate) = match stage {
        "execution" => (
            "\"*:write:src/new.rs:x\", \"*:killparent\", \"*:append:src/new.rs:y\"",
            "true".to_owned(),
        ),
        _ => (
            "\"*:write:src/new.rs:x\", \"*:append:src/new.rs:y\"",
            format!("{KILL_GATE:?}"),
        ),
    };
    let gate_cmd = if stage == "gates" {
        format!("[\"sh\", \"-c\", {gate}]")
    } else {
        "[\"true\"]".to_owned()
    };
    // The fixture kills git-pipeline from inside the step, which the OS sandbox refuses
    // (signals stay inside it): off here, standing for a kill -9 from outside.
    format!(
        "version = 1\n[run]\nsandbox = \"off\"\n[scope]\nallow = [\"src/**\"]\n[agents.builder]\ncommand = [\"AGENT\", {builder}]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n[[gates]]\nname = \"check\"\ncommand = {gate_cmd}\n"
    )
}

fn crash(stage: &str) -> (TestRepo, String, String) {
    let repo = TestRepo::new();
    let config = config_killing_in(stage);
    repo.config(&config);
    if stage == "ship" {
        repo.hook(
            "post-commit",
            &format!(
                "#!/bin/sh\n{}\n",
                KILL_GATE.replace("$PPID", "$(awk '{print $4}' /proc/$PPID/stat)")
            ),
        );
    }
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    assert_killed(&out);
    let id = only_run(&repo);
    (repo, id, config)
}

fn resume_completes_like_an_uninterrupted_run(stage: &str) {
    let (repo, id, config) = crash(stage);
    // The next command that looks sees the run as interrupted.
    let status = repo.pipeline(&["status", "--json"]);
    assert_eq!(
        status.json()[0]["status"],
        "interrupted",
        "{}",
        status.stdout
    );
    assert_eq!(record(&repo, &id)["status"], "interrupted");

    let out = repo.pipeline(&["resume", "--json", &id[..10]]);
    out.assert_code(0);
    // Where it goes on, in words: "builder attempt 1 was running: it runs again".
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("resuming run"))
        .unwrap_or_default();
    assert!(
        !line.contains('{')
            && (line.contains("attempt")
                || line.contains("was approved")
                || line.contains("was made")),
        "{line}"
    );
    let r = out.json();
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["run_id"], id.as_str());
    let commit = r["commit"].as_str().expect("commit").to_owned();
    let tree = repo.git(&["rev-parse", &format!("{commit}^{{tree}}")]);
    assert_eq!(
        tree,
        uninterrupted_tree(&config),
        "the resumed run shipped a different tree"
    );
    assert_eq!(repo.git(&["show", &format!("{commit}:src/new.rs")]), "x\ny");
    assert_eq!(
        repo.git(&["rev-parse", &format!("{commit}^")]),
        r["base"].as_str().expect("base")
    );
    repo.pipeline(&["verify", &format!("{commit}^..{commit}")])
        .assert_code(0);
    assert!(repo.busy_worktrees().is_empty());
    assert_eq!(repo.pipeline_branches().len(), 1);
    let events = repo.pipeline(&["events", "--json", &id]);
    assert!(
        events.stdout.contains("\"event\":\"resumed\""),
        "{}",
        events.stdout
    );
    // Nothing was done twice that did not need to be.
    match stage {
        "gates" => assert_eq!(repo.calls_of("builder"), 1, "the builder had finished"),
        "ship" => {
            assert_eq!(repo.calls_of("builder"), 1);
            assert_eq!(repo.calls_of("verifier"), 1, "the verifier had approved");
            let commits = repo.git(&[
                "rev-list",
                "--count",
                &format!("{}..{commit}", r["base"].as_str().unwrap_or("")),
            ]);
            assert_eq!(commits, "1", "one commit, not two");
        }
        _ => {}
    }
}

#[test]
fn kill_during_execution_then_resume() {
    resume_completes_like_an_uninterrupted_run("execution");
}

#[test]
fn kill_during_gates_then_resume() {
    resume_completes_like_an_uninterrupted_run("gates");
}

#[test]
fn kill_during_ship_then_resume() {
    resume_completes_like_an_uninterrupted_run("ship");
}

/// Progress saves are not fsynced: a power loss can leave `run.json` empty or with NUL bytes
/// where its blocks never reached the disk. The run is then read from its last durable save
/// (`checkpoint.json`, a hard link to that `run.json`) and resumes from there, shipping the same
/// tree as a run that was never interrupted.
#[test]
fn a_record_a_power_loss_emptied_is_read_from_its_last_durable_save() {
    let (repo, id, config) = crash("gates");
    let dir = repo.path.join(".git/pipeline/runs").join(&id);
    let progress = std::fs::read(dir.join("run.json")).expect("run.json");
    let durable: Value =
        serde_json::from_slice(&std::fs::read(dir.join("checkpoint.json")).expect("checkpoint"))
            .expect("the durable copy is a record");
    assert_eq!(durable["resume"]["checkpoint"]["at"], "built", "{durable}");
    // What XFS leaves of a file whose blocks were not written: its length in NUL bytes.
    std::fs::write(dir.join("run.json"), vec![0u8; progress.len()]).expect("power loss");
    let status = repo.pipeline(&["status", "--json"]);
    status.assert_code(0);
    assert_eq!(
        status.json()[0]["status"],
        "interrupted",
        "{}",
        status.stdout
    );
    assert_eq!(record(&repo, &id)["status"], "interrupted");
    let out = repo.pipeline(&["resume", "--json", &id]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    assert_eq!(
        repo.git(&["rev-parse", &format!("{commit}^{{tree}}")]),
        uninterrupted_tree(&config)
    );
    assert_eq!(repo.calls_of("builder"), 1, "the builder had finished");
    // An empty one (ext4 without auto_da_alloc) reads the same way; anything else is not a
    // power loss and is reported, not papered over. (Written as a new file: the last save was
    // durable, so `run.json` and its copy are one file until the next progress save.)
    std::fs::remove_file(dir.join("run.json")).expect("remove");
    std::fs::write(dir.join("run.json"), b"").expect("power loss");
    repo.pipeline(&["show", "--json", &id]).assert_code(0);
    // Its size cut to the blocks that were written: what is there parses, then ends.
    let whole = std::fs::read(dir.join("checkpoint.json")).expect("checkpoint");
    std::fs::remove_file(dir.join("run.json")).expect("remove");
    std::fs::write(dir.join("run.json"), &whole[..whole.len() / 2]).expect("power loss");
    let shown = repo.pipeline(&["show", "--json", &id]);
    shown.assert_code(0);
    assert_eq!(shown.json()["status"], "succeeded");
    std::fs::remove_file(dir.join("run.json")).expect("remove");
    std::fs::write(dir.join("run.json"), b"{ edited").expect("damage");
    let shown = repo.pipeline(&["show", "--json", &id]);
    assert_ne!(shown.code, 0);
    assert!(
        shown.error_line().contains("unreadable"),
        "{}",
        shown.stderr
    );
}

fn abandon_leaves_only_the_record(stage: &str) {
    let (repo, id, _) = crash(stage);
    let before_branches = repo.pipeline_branches();
    assert_eq!(before_branches.len(), 1);
    let out = repo.pipeline(&["abandon", "--json", &id]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["status"], "abandoned");
    assert!(repo.busy_worktrees().is_empty());
    assert!(repo.pipeline_branches().is_empty() || stage == "ship" && r["commit"].is_string());
    assert!(!repo.worktree_root().join(&id).exists());
    let archive = r["archive"]
        .as_str()
        .expect("the work is archived")
        .to_owned();
    assert!(
        repo.git(&["show", &format!("{archive}:src/new.rs")])
            .starts_with('x')
    );
    assert_eq!(record(&repo, &id)["status"], "abandoned");
    // Abandoned is final.
    repo.pipeline(&["resume", &id]).assert_code(3);
    repo.pipeline(&["abandon", &id]).assert_code(3);
}

#[test]
fn kill_during_execution_then_abandon() {
    abandon_leaves_only_the_record("execution");
}

#[test]
fn kill_during_gates_then_abandon() {
    abandon_leaves_only_the_record("gates");
}

#[test]
fn kill_during_ship_then_abandon() {
    // The commit was made but never attested: abandoning archives it and removes the branch.
    let (repo, id, _) = crash("ship");
    let out = repo.pipeline(&["abandon", "--json", &id]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["status"], "abandoned");
    assert!(repo.pipeline_branches().is_empty());
    assert!(repo.busy_worktrees().is_empty());
    let archive = r["archive"].as_str().expect("archived").to_owned();
    assert_eq!(
        repo.git(&["show", &format!("{archive}:src/new.rs")]),
        "x\ny"
    );
}

#[test]
fn sigint_then_resume_completes() {
    let repo = TestRepo::new();
    let pidfile = repo.root().join("logs/started");
    repo.config(&format!(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", \"*:write:src/wip.rs:wip\", \"1:spawn:{}\", \"1:pause:60\"]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
        pidfile.display()
    ));
    let child = repo.spawn_until(&["run", "fix the typo"], &pidfile);
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let id = only_run(&repo);
    let out = repo.pipeline(&["resume", "--json", &id]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    assert_eq!(repo.git(&["show", &format!("{commit}:src/wip.rs")]), "wip");
    // The interrupted attempt ran again under its own number: two builder calls, attempt 1 both.
    assert_eq!(repo.calls_of("builder"), 2);
    assert!(
        repo.calls()
            .iter()
            .filter(|l| l.starts_with("role=builder"))
            .all(|l| l.contains("attempt=1"))
    );
}

/// Ctrl-C while the commit hook runs reaches the hook too (one process group): the hook's
/// failure is not the work's, so a resume ships the approved change without building again.
#[test]
fn ctrl_c_during_the_commit_hook_resumes_at_ship() {
    use std::os::unix::process::CommandExt;
    let repo = TestRepo::new();
    let marker = repo.root().join("logs/in-hook");
    repo.config(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", \"*:write:src/wip.rs:wip\"]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
    );
    repo.hook(
        "pre-commit",
        &format!(
            "#!/bin/sh\n[ -e {m} ] && exit 0\ntouch {m}\nsleep 30\n",
            m = marker.display()
        ),
    );
    let child = repo
        .pipeline_cmd()
        .args(["run", "fix the typo"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "the hook never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // What a terminal's Ctrl-C does: SIGINT to the whole foreground process group.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("killpg");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = only_run(&repo);
    assert_eq!(record(&repo, &id)["status"], "interrupted");
    let out = repo.pipeline(&["resume", "--json", &id]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    assert_eq!(repo.git(&["show", &format!("{commit}:src/wip.rs")]), "wip");
    assert_eq!(
        repo.calls_of("builder"),
        1,
        "the approved work is not built again"
    );
    assert_eq!(repo.calls_of("verifier"), 1);
}

#[test]
fn a_live_run_cannot_be_resumed_or_abandoned() {
    let repo = TestRepo::new();
    let pidfile = repo.root().join("logs/started");
    repo.config(&format!(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", \"*:spawn:{}\", \"*:sleep:30\"]\ntimeout = \"40s\"\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
        pidfile.display()
    ));
    let mut child = repo.spawn_until(&["run", "fix the typo"], &pidfile);
    let id = only_run(&repo);
    let out = repo.pipeline(&["resume", &id]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("is still running"),
        "{}",
        out.stderr
    );
    assert!(
        out.error_line().contains(&format!("pid {}", child.id())),
        "{}",
        out.stderr
    );
    repo.pipeline(&["abandon", &id]).assert_code(3);
    let status = repo.pipeline(&["status", "--json"]);
    assert_eq!(status.json()[0]["status"], "running");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn four_concurrent_runs_all_ship_and_the_repository_stays_sound() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/new.rs:x", "*:sleep:0.3"],
        &["*:approve"],
        "[scope]\nallow = [\"src/**\"]\n",
    );
    let children: Vec<_> = (0..4)
        .map(|_| {
            repo.pipeline_cmd()
                .args(["run", "--json", "fix the typo"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut branches = Vec::new();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        branches.push(v["branch"].as_str().expect("branch").to_owned());
        repo.git(&[
            "notes",
            "--ref=refs/notes/pipeline",
            "show",
            v["commit"].as_str().expect("commit"),
        ]);
    }
    branches.sort();
    branches.dedup();
    assert_eq!(branches.len(), 4);
    assert_eq!(repo.pipeline_branches().len(), 4);
    repo.git(&["fsck", "--no-progress", "--strict"]);
    assert!(repo.busy_worktrees().is_empty());
}

#[test]
fn clean_removes_what_runs_left_and_nothing_else() {
    // Worktrees of the runs' own (no slots): what `clean` removes of them. Slots: `slots.rs`.
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/new.rs:x"],
        &["*:approve"],
        "[run]\nmax_slots = 0\n[scope]\nallow = [\"src/**\"]\n",
    );
    // A shipped run merged into main, and one not merged.
    let merged = repo.pipeline(&["run", "--json", "fix the typo"]).json();
    repo.git(&[
        "merge",
        "-q",
        "--ff-only",
        merged["commit"].as_str().expect("c"),
    ]);
    repo.agents(
        &["*:write:src/other.rs:y"],
        &["*:approve"],
        "[run]\nmax_slots = 0\n[scope]\nallow = [\"src/**\"]\n",
    );
    let unmerged = repo
        .pipeline(&["run", "--json", "fix the typo again"])
        .json();
    assert_eq!(unmerged["status"], "succeeded");
    // A failed run kept for inspection, and one whose kept folder was deleted by hand.
    repo.agents(
        &["*:write:src/fail.rs:x"],
        &["*:reject:no"],
        "[run]\nmax_slots = 0\n[verify]\nmax_rounds = 1\n",
    );
    let kept = repo
        .pipeline(&["run", "--json", "--keep", "fix the typo"])
        .json();
    let gone = repo
        .pipeline(&["run", "--json", "--keep", "fix the typo"])
        .json();
    std::fs::remove_dir_all(gone["worktree"].as_str().expect("kept folder")).expect("rm");
    // An interrupted run (killed).
    repo.agents(
        &["*:write:src/int.rs:x", "*:killparent"],
        &["*:approve"],
        "[run]\nmax_slots = 0\nsandbox = \"off\"\n",
    );
    assert_killed(&repo.pipeline(&["run", "fix the typo"]));
    let interrupted = repo.run_ids().into_iter().max().expect("id");
    // The user's own worktree and branches.
    let own_wt = repo.root().join("my-worktree");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        "mine",
        &own_wt.to_string_lossy(),
    ]);
    repo.git(&["branch", "pipeline/not-a-run"]);
    // A live run.
    let started = repo.root().join("logs/live-started");
    repo.config(&repo.expand(&format!(
        "version = 1\n[run]\nmax_slots = 0\n[agents.builder]\ncommand = [\"AGENT\", \"*:spawn:{}\", \"*:sleep:30\"]\ntimeout = \"40s\"\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
        started.display()
    )));
    let mut live = repo.spawn_until(&["run", "fix the typo"], &started);
    let live_id = repo.run_ids().into_iter().max().expect("live id");

    // A removed worktree whose background deletion was cut short, and a folder not ours.
    let trash = repo.worktree_root().join(".git-pipeline-trash-x-1");
    std::fs::create_dir_all(trash.join("src")).expect("trash");
    std::fs::write(trash.join("src/f"), "x").expect("trash file");
    let decoy = repo.worktree_root().join(".not-ours");
    std::fs::create_dir_all(&decoy).expect("decoy");

    let refs_before = repo.git(&["for-each-ref"]);
    let worktrees_before = repo.git(&["worktree", "list", "--porcelain"]);
    let dry = repo.pipeline(&["clean", "--dry-run", "--json"]);
    dry.assert_code(0);
    assert_eq!(
        repo.git(&["for-each-ref"]),
        refs_before,
        "--dry-run changed refs"
    );
    assert_eq!(
        repo.git(&["worktree", "list", "--porcelain"]),
        worktrees_before
    );
    let planned = dry.json();
    let actions = planned["actions"].as_array().expect("actions").clone();

    let out = repo.pipeline(&["clean", "--json"]);
    out.assert_code(0);
    let did = out.json();
    assert_eq!(
        did["actions"].as_array().expect("actions"),
        &actions,
        "clean did what --dry-run said"
    );
    assert!(did["freed"]["worktrees"].as_u64().unwrap_or(0) >= 1);
    assert!(!trash.exists(), "the cut-short deletion is finished");
    assert!(decoy.exists(), "a folder not ours is kept");

    let branches = repo.branches();
    let merged_branch = merged["branch"].as_str().expect("b").to_owned();
    let unmerged_branch = unmerged["branch"].as_str().expect("b").to_owned();
    assert!(
        !branches.contains(&merged_branch),
        "merged shipped branch removed"
    );
    assert!(
        branches.contains(&unmerged_branch),
        "unmerged shipped work is kept"
    );
    assert!(!branches.contains(&kept["branch"].as_str().expect("b").to_owned()));
    assert!(!branches.contains(&gone["branch"].as_str().expect("b").to_owned()));
    assert!(
        !repo
            .worktree_root()
            .join(kept["run_id"].as_str().expect("id"))
            .exists()
    );
    // Kept work is archived, not lost.
    let kept_archive = format!(
        "refs/pipeline/archive/{}",
        kept["run_id"].as_str().expect("id")
    );
    assert_eq!(
        repo.git(&["show", &format!("{kept_archive}:src/fail.rs")]),
        "x"
    );
    // The interrupted run is recent: kept, and resumable.
    assert_eq!(record(&repo, &interrupted)["status"], "interrupted");
    assert!(repo.worktree_root().join(&interrupted).exists());
    // Never the user's, never a live run.
    assert!(
        branches.contains(&"mine".to_owned())
            && branches.contains(&"pipeline/not-a-run".to_owned())
    );
    assert!(own_wt.exists());
    assert!(repo.worktree_root().join(&live_id).exists());
    let kept_list: Vec<String> = did["kept"]
        .as_array()
        .expect("kept")
        .iter()
        .map(|k| k["why"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        kept_list.iter().any(|w| w.starts_with("it is running")),
        "{kept_list:?}"
    );

    // --all takes the interrupted run too (archived first).
    let out = repo.pipeline(&["clean", "--all"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains(&format!("abandon run {interrupted}")),
        "{}",
        out.stdout
    );
    assert_eq!(record(&repo, &interrupted)["status"], "abandoned");
    assert!(!repo.worktree_root().join(&interrupted).exists());
    assert!(
        repo.worktree_root().join(&live_id).exists(),
        "still not the live run"
    );
    let _ = live.kill();
    let _ = live.wait();
    repo.git(&["fsck", "--no-progress"]);
}

#[test]
fn a_torn_event_line_is_read_back_and_events_follow_a_run() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/new.rs:x"], &["*:approve"], "");
    repo.pipeline(&["run", "fix the typo"]).assert_code(0);
    let id = only_run(&repo);
    let path = repo
        .path
        .join(format!(".git/pipeline/runs/{id}/events.jsonl"));
    let complete = std::fs::read_to_string(&path).expect("events");
    let n = complete.lines().count();
    let mut torn = complete.clone();
    torn.push_str("{\"ts\":\"2026-11-21T00:00:00Z\",\"event\":\"half");
    std::fs::write(&path, torn).expect("write");
    let out = repo.pipeline(&["events", "--json", &id]);
    out.assert_code(0);
    assert_eq!(out.stdout.lines().count(), n);
    let human = repo.pipeline(&["events", &id]);
    assert!(
        human.stdout.contains("run_started") && human.stdout.contains("shipped"),
        "{}",
        human.stdout
    );
    // --follow on a finished run prints everything and returns.
    let follow = repo.pipeline(&["events", "--follow", "--json", &id]);
    follow.assert_code(0);
    assert_eq!(follow.stdout.lines().count(), n);
}

#[test]
fn stats_and_a_record_from_the_future() {
    let repo = TestRepo::new();
    repo.agents(
        &["1:write:src/a.rs:a", "2:write:src/a.rs:b"],
        &["1:reject:again", "2:approve"],
        "",
    );
    repo.pipeline(&["run", "fix the typo"]).assert_code(0);
    repo.agents(
        &["*:write:secrets.txt:x"],
        &["*:approve"],
        "[scope]\nallow = [\"src/**\"]\n[limits]\nmax_fix_attempts = 0\n",
    );
    repo.pipeline(&["run", "fix the typo"]).assert_code(6);
    let s = repo.pipeline(&["stats", "--json"]);
    s.assert_code(0);
    let v = s.json();
    assert_eq!(v["runs"], 2);
    assert_eq!(v["success_rate"], 0.5);
    assert_eq!(v["first_pass_verification_rate"], 0.0);
    assert_eq!(v["scope_violations"], 1);
    assert!(v["mean_stage_seconds"]["execution"].as_f64().is_some());
    let human = repo.pipeline(&["stats"]);
    assert!(
        human.stdout.contains("success rate               50%"),
        "{}",
        human.stdout
    );

    let id = repo.run_ids()[0].clone();
    let path = repo.path.join(format!(".git/pipeline/runs/{id}/run.json"));
    let text = std::fs::read_to_string(&path).expect("record");
    std::fs::write(&path, text.replacen("\"version\": 1", "\"version\": 99", 1)).expect("write");
    let out = repo.pipeline(&["show", &id]);
    out.assert_code(3);
    assert!(
        out.error_line()
            .contains("newer git-pipeline (record version 99"),
        "{}",
        out.stderr
    );
    let status = repo.pipeline(&["status"]);
    status.assert_code(0);
    assert!(status.stdout.contains("unreadable"), "{}", status.stdout);
}

/// A worktree of ours whose records are all gone (even the runs folder) is still cleaned.
#[test]
fn clean_removes_orphans_when_no_record_is_left_at_all() {
    let repo = TestRepo::new();
    let id = "20250101-000000-000b";
    let path = repo.worktree_root().join(id);
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--lock",
        "--reason",
        &format!("git-pipeline run {id} in progress"),
        "-b",
        &format!("pipeline/{id}"),
        &path.to_string_lossy(),
        "HEAD",
    ]);
    std::fs::write(path.join("work.txt"), "unsaved\n").expect("work");
    assert!(!repo.path.join(".git/pipeline/runs").exists());
    let out = repo.pipeline(&["clean"]);
    out.assert_code(0);
    assert!(repo.busy_worktrees().is_empty());
    assert!(repo.pipeline_branches().is_empty());
    // Its work was archived before the worktree went.
    let archived = repo.git(&["show", &format!("refs/pipeline/archive/{id}:work.txt")]);
    assert_eq!(archived, "unsaved");
}

/// The owner's key signs what a resume attests: a record rewritten between the crash and the
/// resume (its checkpoint naming another tree) gets no attestation.
#[test]
fn a_resume_never_attests_a_tree_the_record_was_rewritten_to() {
    let (repo, id, _) = crash("ship");
    let path = repo.path.join(format!(".git/pipeline/runs/{id}/run.json"));
    let mut rec: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("record")).expect("json");
    // Killed in the post-commit hook: the commit is on the run branch. The record is made to
    // say it was committed with another tree (what a rewrite of the record would claim).
    let branch = rec["branch"].as_str().expect("branch").to_owned();
    let commit = repo.git(&["rev-parse", &branch]);
    let other_tree = repo.git(&["rev-parse", "HEAD^{tree}"]);
    rec["resume"]["checkpoint"] =
        serde_json::json!({"at": "committed", "commit": commit, "tree": other_tree});
    std::fs::write(&path, serde_json::to_string(&rec).expect("json")).expect("write");
    let out = repo.pipeline(&["resume", &id]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("is not the approved change"),
        "{}",
        out.stderr
    );
    assert_ne!(
        repo.git_out(&["notes", "--ref=pipeline", "show", &commit])
            .code,
        0,
        "no attestation for it"
    );
}
