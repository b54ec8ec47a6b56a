//! The user keeps working while runs run: what the user, or another run, does in the repository
//! during a step (stash, tags, commits on other branches, fetches, another run's merge) neither
//! fails the run nor is undone. An agent's own change to the user's refs still is.

use std::process::Child;

use crate::common::TestRepo;

/// A builder action that waits, bounded, until the test creates `ROOT/go` (after writing
/// `LOGS/started-<run id>`), when the task mentions "wait".
const WAIT_FOR_GO: &str = "*:run:touch LOGS/started-$PIPELINE_RUN_ID; if grep -q wait \"$PIPELINE_PROMPT_FILE\"; then i=0; while [ ! -e ROOT/go ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; fi";

/// Start a run in the background and wait until its builder is running.
fn start(repo: &TestRepo, task: &str) -> Child {
    let before = started(repo);
    let child = repo
        .pipeline_cmd()
        .args(["run", "--json", task])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn git-pipeline");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while started(repo) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the builder never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

fn started(repo: &TestRepo) -> usize {
    std::fs::read_dir(repo.root().join("logs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("started-"))
                .count()
        })
        .unwrap_or(0)
}

fn go(repo: &TestRepo) {
    std::fs::write(repo.root().join("go"), "").expect("go");
}

/// Wait for a run and return (exit code, record, stderr).
fn finish(child: Child) -> (i32, serde_json::Value, String) {
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let record =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    (out.status.code().unwrap_or(-1), record, stderr)
}

fn ref_of(repo: &TestRepo, name: &str) -> String {
    repo.git(&["rev-parse", "--verify", "-q", name])
}

#[test]
fn stash_tags_commits_and_fetches_in_another_worktree_survive_and_the_run_ships() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/new.rs:x", WAIT_FOR_GO], &["*:approve"], "");
    // A remote with work the user will fetch during the run.
    let remote = repo.root().join("remote.git");
    repo.git(&["clone", "-q", "--bare", ".", &remote.to_string_lossy()]);
    repo.git(&["remote", "add", "origin", &remote.to_string_lossy()]);
    let upstream = repo.root().join("upstream");
    repo.git(&[
        "clone",
        "-q",
        &remote.to_string_lossy(),
        &upstream.to_string_lossy(),
    ]);
    repo.git_in(
        &upstream,
        &["commit", "-q", "--allow-empty", "-m", "upstream"],
    );
    repo.git_in(
        &upstream,
        &["push", "-q", "origin", "HEAD:refs/heads/upstream"],
    );
    // The user's other worktree, with uncommitted work to stash.
    let other = repo.root().join("other");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        "feature",
        &other.to_string_lossy(),
    ]);
    std::fs::write(other.join("README.md"), "# my uncommitted work\n").expect("edit");

    let run = start(&repo, "add new.rs, wait for the user");
    repo.git_in(&other, &["stash", "-q"]);
    repo.git_in(&other, &["tag", "mytag"]);
    repo.git_in(
        &other,
        &["commit", "-q", "--allow-empty", "-m", "my commit"],
    );
    repo.git(&["fetch", "-q", "origin"]);
    let feature = ref_of(&repo, "refs/heads/feature");
    go(&repo);
    let (code, r, stderr) = finish(run);

    assert_eq!(code, 0, "{stderr}");
    assert!(r["commit"].is_string(), "{r}");
    assert!(
        stderr.contains("not by this run"),
        "the user's changes are reported: {stderr}"
    );
    assert!(!stderr.contains("deleted refs/"), "{stderr}");
    // Everything the user did is still there.
    assert_eq!(
        repo.git_in(&other, &["stash", "list"]).lines().count(),
        1,
        "the stash survives"
    );
    repo.git_in(&other, &["stash", "pop", "-q"]);
    assert_eq!(
        std::fs::read_to_string(other.join("README.md")).expect("read"),
        "# my uncommitted work\n"
    );
    assert!(!ref_of(&repo, "refs/tags/mytag").is_empty());
    assert_eq!(ref_of(&repo, "refs/heads/feature"), feature);
    assert!(!ref_of(&repo, "refs/remotes/origin/upstream").is_empty());
}

#[test]
fn concurrent_merge_runs_never_undo_each_others_merge() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            "*:run:echo $PIPELINE_RUN_ID > src/$PIPELINE_RUN_ID.txt",
            WAIT_FOR_GO,
        ],
        &["*:approve"],
        "[run]\nship = \"merge\"\n[scope]\nallow = [\"src/**\"]\n",
    );
    // Two runs wait in their builders while a third ships and fast-forwards main, which is
    // checked out (clean) in the user's checkout.
    let b = start(&repo, "add a file, wait");
    let c = start(&repo, "add another file, wait");
    let a = repo.pipeline(&["run", "--json", "add a third file"]);
    a.assert_code(0);
    let a = a.json();
    let a_commit = a["commit"].as_str().expect("a shipped").to_owned();
    assert_eq!(ref_of(&repo, "refs/heads/main"), a_commit, "{a}");
    go(&repo);
    for run in [b, c] {
        let (code, r, stderr) = finish(run);
        assert_eq!(code, 0, "{stderr}");
        assert!(r["commit"].is_string(), "{r}");
        let merge = r["merge"].as_str().unwrap_or("");
        assert!(
            merge.starts_with("not merged into main: it moved since the run started"),
            "{merge}"
        );
        let branch = r["branch"].as_str().expect("branch");
        assert_eq!(
            ref_of(&repo, &format!("refs/heads/{branch}")),
            r["commit"].as_str().unwrap_or(""),
            "the work stays on its branch"
        );
        assert!(!stderr.contains("put refs/heads/main back"), "{stderr}");
        assert!(
            stderr.contains("fast-forwarded by another git-pipeline run"),
            "{stderr}"
        );
    }
    // The first run's merge stands, and the user's checkout is clean at it.
    assert_eq!(ref_of(&repo, "refs/heads/main"), a_commit);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert!(
        repo.path
            .join(format!("src/{}.txt", a["run_id"].as_str().unwrap_or("?")))
            .exists()
    );
}

#[test]
fn a_branch_is_not_merged_under_a_dirty_worktree_or_during_a_rebase() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/new.rs:x"],
        &["*:approve"],
        "[run]\nship = \"merge\"\n[scope]\nallow = [\"src/**\"]\n",
    );
    // Dirty: main checked out with an uncommitted change to a tracked file.
    repo.write("README.md", "# my edit\n");
    let out = repo.pipeline(&["run", "--json", "add new.rs"]);
    out.assert_code(0);
    let r = out.json();
    let merge = r["merge"].as_str().unwrap_or("");
    assert!(merge.contains("with uncommitted changes"), "{merge}");
    assert_eq!(repo.read("README.md"), "# my edit\n");
    assert!(!repo.path.join("src/new.rs").exists());
    repo.git(&["checkout", "-q", "--", "README.md"]);

    // A rebase of main in progress in another worktree (main itself is then detached there).
    repo.git(&["checkout", "-q", "--detach"]);
    let other = repo.root().join("rebasing");
    repo.git(&["worktree", "add", "-q", &other.to_string_lossy(), "main"]);
    repo.git_in(&other, &["commit", "-q", "--allow-empty", "-m", "mine"]);
    let main_before = ref_of(&repo, "refs/heads/main");
    repo.git_in(
        &other,
        &[
            "-c",
            "sequence.editor=sed -i 1s/^pick/edit/",
            "rebase",
            "-q",
            "-i",
            "HEAD~1",
        ],
    );
    assert!(
        repo.pipeline(&["run", "--json", "--base", "main", "add new.rs"])
            .assert_code(0)
            .json()["merge"]
            .as_str()
            .unwrap_or("")
            .contains("a rebase of main is in progress"),
    );
    assert_eq!(ref_of(&repo, "refs/heads/main"), main_before);
    repo.git_in(&other, &["rebase", "--abort"]);
}

#[test]
fn a_bundles_integration_branch_checked_out_elsewhere_moves_only_with_a_clean_worktree() {
    let repo = TestRepo::new();
    for x in ["a", "b"] {
        repo.write(&format!("src/{x}/f.txt"), x);
    }
    repo.commit_all("two folders");
    let builder = "*:run:echo done > src/$PIPELINE_WORKSTREAM/out.txt; touch LOGS/started-$PIPELINE_WORKSTREAM; if [ $PIPELINE_WORKSTREAM = b ]; then i=0; while [ ! -e ROOT/go ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; fi";
    repo.config(&format!(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", {builder:?}]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n"
    ));
    let path = repo.root().join("b.json");
    std::fs::write(
        &path,
        r#"{"workstreams":[
          {"id":"a","task":"do a","scope":["src/a/**"]},
          {"id":"b","task":"do b","scope":["src/b/**"],"depends_on":["a"]}]}"#,
    )
    .expect("bundle");
    let bundle = repo
        .pipeline_cmd()
        .args(["run", "--json", "--bundle", &path.to_string_lossy()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !repo.root().join("logs/started-b").exists() {
        assert!(std::time::Instant::now() < deadline, "b never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The user checks the integration branch out (a is merged on it) and edits a file there.
    let integration = repo
        .git(&[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/pipeline/*/integration",
        ])
        .trim()
        .to_owned();
    let other = repo.root().join("integration");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        &other.to_string_lossy(),
        &integration,
    ]);
    std::fs::write(other.join("README.md"), "# reviewing\n").expect("edit");
    let tip = ref_of(&repo, &integration);
    go(&repo);
    let (code, r, stderr) = finish(bundle);
    assert_ne!(code, 0, "{stderr}");
    assert_eq!(r["status"], "interrupted", "{r}");
    assert!(
        stderr.contains("with uncommitted changes"),
        "the reason is given: {stderr}"
    );
    assert_eq!(ref_of(&repo, &integration), tip, "not moved under the edit");
    assert_eq!(
        std::fs::read_to_string(other.join("README.md")).expect("read"),
        "# reviewing\n"
    );
    assert_eq!(
        repo.git_in(&other, &["status", "--porcelain"]).trim(),
        "M README.md",
        "the worktree shows only the user's edit, no reverts"
    );
    // Once the worktree is clean, resume merges b there, moving its files along.
    repo.git_in(&other, &["checkout", "-q", "--", "README.md"]);
    let id = r["bundle_id"].as_str().expect("id");
    let resumed = repo.pipeline(&["resume", id, "--json"]);
    resumed.assert_code(0);
    assert_eq!(resumed.json()["status"], "completed");
    assert!(other.join("src/b/out.txt").exists());
    assert_eq!(repo.git_in(&other, &["status", "--porcelain"]), "");
}

/// Editing your own checkout while a step runs: where the step is in a fully enforced sandbox it
/// cannot have written there, so the change is yours (reported, the run ships); without a
/// sandbox, file changes carry no author and the run stops (docs/security.md).
#[test]
fn editing_your_checkout_during_a_sandboxed_step_is_yours() {
    for (sandbox, ships) in [("required", true), ("off", false)] {
        let repo = TestRepo::new();
        repo.agents(
            &["*:write:src/new.rs:x", WAIT_FOR_GO],
            &["*:approve"],
            &format!("[run]\nsandbox = \"{sandbox}\"\n"),
        );
        let run = start(&repo, "add new.rs, wait for the user");
        repo.write("README.md", "# my edit while the agent works\n");
        go(&repo);
        let (code, r, stderr) = finish(run);
        assert_eq!(code == 0, ships, "sandbox {sandbox}: {stderr}");
        if ships {
            assert!(r["commit"].is_string(), "{r}");
            assert!(
                stderr.contains("the sandboxed step could not write there"),
                "{stderr}"
            );
        } else {
            assert_eq!(r["reason"], "containment", "{r}");
        }
        assert_eq!(repo.read("README.md"), "# my edit while the agent works\n");
    }
}
