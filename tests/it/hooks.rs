//! Attestations, `verify`, `reverify`, and the pre-push hook, with real pushes to a local bare
//! remote.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{Out, TestRepo};

/// A repository with a pipeline config, pushed (unattested, before the hook) to a bare remote,
/// with the hook installed afterwards.
pub struct Remote {
    pub repo: TestRepo,
    pub bare: PathBuf,
}

/// A bare remote `origin` next to the repository, holding its main (pushed before any hook).
fn add_remote(repo: &TestRepo) -> PathBuf {
    let bare = repo.root().join("remote.git");
    repo.git_in(
        repo.root(),
        &["init", "-q", "--bare", &bare.to_string_lossy()],
    );
    repo.git(&["remote", "add", "origin", &bare.to_string_lossy()]);
    repo.git(&["push", "-q", "-u", "origin", "main"]);
    bare
}

impl Remote {
    pub fn new() -> Remote {
        let repo = TestRepo::new();
        repo.agents(&["*:append:log.txt:a line"], &["*:approve"], "");
        let bare = add_remote(&repo);
        repo.pipeline(&["hooks", "install"]).assert_code(0);
        Remote { repo, bare }
    }

    /// Run the pipeline and fast-forward main to its attested commit.
    pub fn attested_commit(&self) -> String {
        let out = self.repo.pipeline(&["run", "--json", "fix the typo"]);
        out.assert_code(0);
        let commit = out.json()["commit"].as_str().expect("commit").to_owned();
        self.repo.git(&["merge", "-q", "--ff-only", &commit]);
        commit
    }

    pub fn manual_commit(&self, file: &str, text: &str) -> String {
        self.repo.write(file, text);
        self.repo.commit_all(&format!("by hand: {file}"));
        self.repo.git(&["rev-parse", "HEAD"])
    }

    pub fn push(&self, args: &[&str]) -> Out {
        let mut all = vec!["push"];
        all.extend_from_slice(args);
        self.repo.git_out(&all)
    }

    pub fn remote_has(&self, rev: &str) -> Option<String> {
        let out = self
            .repo
            .command("git", &self.bare)
            .args(["rev-parse", "--verify", "--quiet", rev])
            .output()
            .expect("git");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

#[test]
fn an_attested_push_passes_and_notes_can_follow() {
    let r = Remote::new();
    let commit = r.attested_commit();
    r.push(&["origin", "main"]).assert_code(0);
    assert_eq!(r.remote_has("main").as_deref(), Some(commit.as_str()));
    r.push(&["origin", "refs/notes/pipeline"]).assert_code(0);
    assert!(r.remote_has("refs/notes/pipeline").is_some());
}

#[test]
fn an_unattested_commit_is_refused_with_its_id() {
    let r = Remote::new();
    r.attested_commit();
    let manual = r.manual_commit("hand.txt", "by hand\n");
    let out = r.push(&["origin", "main"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(&manual[..12]), "{}", out.stderr);
    assert!(
        out.stderr.contains("by hand: hand.txt: no note"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("git pipeline reverify <commit>"),
        "{}",
        out.stderr
    );
    // git itself names the remote in its last line; git-pipeline's lines never do.
    let ours: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("error: failed to push"))
        .collect();
    let url = r.bare.to_string_lossy().into_owned();
    assert!(
        ours.iter().all(|l| !l.contains(&url)),
        "the remote URL must not be printed: {}",
        out.stderr
    );
    // Only the unattested one is listed.
    assert_eq!(out.stderr.matches(": no note").count(), 1, "{}", out.stderr);
    assert_ne!(r.remote_has("main").as_deref(), Some(manual.as_str()));
}

#[test]
fn amending_the_code_unattests_and_rewording_keeps_the_attestation() {
    let r = Remote::new();
    r.attested_commit();
    r.repo
        .git(&["commit", "-q", "--amend", "-m", "A better message"]);
    let out = r.push(&["origin", "main"]);
    out.assert_code(0);

    r.attested_commit();
    r.repo.write("sneaky.txt", "changed after verification\n");
    r.repo.git(&["add", "sneaky.txt"]);
    r.repo.git(&["commit", "-q", "--amend", "--no-edit"]);
    let out = r.push(&["origin", "main"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("tree mismatch"), "{}", out.stderr);
}

#[test]
fn deletions_tags_and_notes_pass() {
    let r = Remote::new();
    r.manual_commit("a.txt", "a\n");
    r.push(&["--no-verify", "origin", "main:refs/heads/old"])
        .assert_code(0);
    r.push(&["origin", "--delete", "old"]).assert_code(0);
    assert!(r.remote_has("old").is_none());
    r.repo.git(&["tag", "v1"]);
    r.push(&["origin", "v1"]).assert_code(0);
    r.attested_commit();
    r.push(&["origin", "refs/notes/pipeline"]).assert_code(0);
}

#[test]
fn a_new_branch_is_checked_only_for_what_the_remote_lacks() {
    let r = Remote::new();
    // The remote's main holds unattested history from before the hook; that is not re-judged.
    r.repo.git(&["checkout", "-q", "-b", "feature"]);
    r.attested_commit();
    r.push(&["origin", "feature"]).assert_code(0);

    r.repo.git(&["checkout", "-q", "-b", "feature2"]);
    let manual = r.manual_commit("b.txt", "b\n");
    let out = r.push(&["origin", "feature2"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(&manual[..12]), "{}", out.stderr);
    assert_eq!(out.stderr.matches(": no note").count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("to branch feature2"), "{}", out.stderr);
}

#[test]
fn no_verify_skips_the_hook_as_git_defines() {
    let r = Remote::new();
    let manual = r.manual_commit("c.txt", "c\n");
    r.push(&["--no-verify", "origin", "main"]).assert_code(0);
    assert_eq!(r.remote_has("main").as_deref(), Some(manual.as_str()));
}

#[test]
fn only_branches_in_push_branches_are_enforced() {
    let r = Remote::new();
    r.repo.config(
        &r.repo.expand("version = 1\n[push]\nbranches = [\"main\", \"release/*\"]\n[agents.builder]\ncommand = [\"AGENT\", \"*:append:log.txt:x\"]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n"),
    );
    r.push(&["--no-verify", "origin", "main"]).assert_code(0);
    r.manual_commit("d.txt", "d\n");
    assert_ne!(r.push(&["origin", "HEAD:refs/heads/release/1.0"]).code, 0);
    assert_ne!(r.push(&["origin", "HEAD:main"]).code, 0);
    r.push(&["origin", "HEAD:refs/heads/scratch"])
        .assert_code(0);
}

#[test]
fn a_users_hook_keeps_running_and_is_restored_exactly() {
    let repo = TestRepo::new();
    repo.agents(&["*:append:log.txt:x"], &["*:approve"], "");
    add_remote(&repo);
    let marker = repo.root().join("user-hook-ran");
    let user_hook = format!(
        "#!/bin/sh\n# the user's own pre-push hook\necho \"$1 $(wc -l)\" >> {}\nexit 0\n",
        marker.display()
    );
    repo.hook("pre-push", &user_hook);
    let hook_path = repo.path.join(".git/hooks/pre-push");
    let before = std::fs::read(&hook_path).expect("hook");

    let out = repo.pipeline(&["hooks", "install"]);
    out.assert_code(0);
    assert!(out.stdout.contains("still runs first"), "{}", out.stdout);
    let status = repo.pipeline(&["hooks", "status", "--json"]);
    let s = status.json();
    assert_eq!(s["pre_push"], "installed");
    assert!(
        s["chained"]
            .as_str()
            .unwrap_or("")
            .ends_with("pre-push.before-git-pipeline")
    );
    assert_eq!(s["notes_follow_rewrites"], true);

    // The user's hook still runs, with git's arguments and input; then ours refuses.
    repo.write("e.txt", "e\n");
    repo.commit_all("by hand");
    let out = repo.git_out(&["push", "origin", "main"]);
    assert_ne!(out.code, 0);
    assert_eq!(
        std::fs::read_to_string(&marker).expect("user hook ran"),
        "origin 1\n"
    );

    let out = repo.pipeline(&["hooks", "uninstall"]);
    out.assert_code(0);
    assert_eq!(std::fs::read(&hook_path).expect("restored"), before);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&hook_path)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(
        !repo
            .path
            .join(".git/hooks/pre-push.before-git-pipeline")
            .exists()
    );
    assert_eq!(
        repo.git_out(&["config", "--get-all", "notes.rewriteRef"])
            .stdout,
        ""
    );
    // Back to the user's hook alone: the push goes through.
    repo.git_out(&["push", "origin", "main"]).assert_code(0);
}

#[test]
fn core_hooks_path_is_honoured() {
    let repo = TestRepo::new();
    repo.agents(&["*:append:log.txt:x"], &["*:approve"], "");
    add_remote(&repo);
    repo.git(&["config", "core.hooksPath", ".githooks"]);
    repo.pipeline(&["hooks", "install"]).assert_code(0);
    assert!(repo.path.join(".githooks/pre-push").exists());
    assert!(!repo.path.join(".git/hooks/pre-push").exists());
    let status = repo.pipeline(&["hooks", "status"]);
    assert!(
        status.stdout.contains("core.hooksPath = .githooks"),
        "{}",
        status.stdout
    );
    repo.write("f.txt", "f\n");
    repo.git(&["add", "f.txt"]);
    repo.git(&["commit", "-q", "-m", "by hand"]);
    assert_ne!(repo.git_out(&["push", "origin", "main"]).code, 0);
}

#[test]
fn pushing_from_a_linked_worktree_uses_the_shared_hook() {
    let r = Remote::new();
    let wt = r.repo.root().join("linked");
    r.repo
        .git(&["worktree", "add", "-q", "-b", "side", &wt.to_string_lossy()]);
    std::fs::write(wt.join("g.txt"), "g\n").expect("write");
    r.repo.git_in(&wt, &["add", "g.txt"]);
    r.repo
        .git_in(&wt, &["commit", "-q", "-m", "by hand in a worktree"]);
    let out = r
        .repo
        .command("git", &wt)
        .args(["push", "origin", "side"])
        .output()
        .expect("push");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("by hand in a worktree: no note"));
}

#[test]
fn a_push_of_more_than_a_thousand_refs_is_handled() {
    let r = Remote::new();
    r.attested_commit();
    let mut refspecs = Vec::new();
    for i in 0..1005 {
        refspecs.push(format!("HEAD:refs/heads/b{i:04}"));
    }
    let mut args = vec!["push", "-q", "origin"];
    args.extend(refspecs.iter().map(String::as_str));
    let started = std::time::Instant::now();
    r.repo.git_out(&args).assert_code(0);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(r.remote_has("refs/heads/b1004").is_some());
}

#[test]
fn sha256_repositories_work_end_to_end() {
    let repo = TestRepo::empty();
    std::fs::remove_dir_all(repo.path.join(".git")).expect("remove the sha1 repository");
    repo.git(&["init", "-q", "--object-format=sha256", "."]);
    repo.write("README.md", "# demo\n");
    repo.commit_all("init");
    assert_eq!(repo.git(&["rev-parse", "HEAD"]).len(), 64);
    repo.agents(&["*:append:log.txt:x"], &["*:approve"], "");
    let bare = repo.root().join("remote.git");
    repo.git_in(
        repo.root(),
        &[
            "init",
            "-q",
            "--bare",
            "--object-format=sha256",
            &bare.to_string_lossy(),
        ],
    );
    repo.git(&["remote", "add", "origin", &bare.to_string_lossy()]);
    repo.git(&["push", "-q", "origin", "main"]);
    repo.pipeline(&["hooks", "install"]).assert_code(0);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    assert_eq!(commit.len(), 64);
    // A new branch: the remote's old id is 64 zeros.
    repo.git_out(&["push", "origin", &format!("{commit}:refs/heads/topic")])
        .assert_code(0);
    repo.write("h.txt", "h\n");
    repo.commit_all("by hand");
    assert_ne!(
        repo.git_out(&["push", "origin", "HEAD:refs/heads/topic2"])
            .code,
        0
    );
}

#[test]
fn pre_receive_on_the_server_refuses_the_same_commits_and_cannot_be_skipped() {
    let r = Remote::new();
    let hook = r.bare.join("hooks/pre-receive");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/pre-receive"),
        &hook,
    )
    .expect("copy");
    let manual = r.manual_commit("i.txt", "i\n");
    let out = r.push(&["--no-verify", "origin", "main"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("refusing to receive"), "{}", out.stderr);
    assert!(out.stderr.contains(&manual[..12]), "{}", out.stderr);

    // Attested work with its notes in the same push is received.
    r.repo.git(&["reset", "-q", "--hard", "HEAD^"]);
    let commit = r.attested_commit();
    r.push(&["origin", "main", "refs/notes/pipeline"])
        .assert_code(0);
    assert_eq!(r.remote_has("main").as_deref(), Some(commit.as_str()));
    // Without its notes, the server cannot see the attestation.
    let c2 = r.attested_commit();
    let out = r.push(&["origin", "main"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(&c2[..12]));
}

#[test]
fn verify_in_ci_judges_a_range_and_explains_itself() {
    let r = Remote::new();
    let good = r.attested_commit();
    let bad = r.manual_commit("j.txt", "j\n");
    let out = r.repo.pipeline(&["verify", "origin/main..HEAD"]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("2 commits in origin/main..HEAD: 1 attested, 1 not"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&bad[..12]));
    assert!(!out.stdout.contains(&good[..12]));
    // The default range is the branch's commits not on its upstream.
    let json = r.repo.pipeline(&["verify", "--json"]);
    json.assert_code(1);
    let v = json.json();
    assert_eq!(v["range"], "origin/main..HEAD");
    assert_eq!(v["unattested"][0]["commit"], bad.as_str());
    assert_eq!(v["unattested"][0]["why"], "no_note");
    r.repo.git(&["reset", "-q", "--hard", &good]);
    r.repo.pipeline(&["verify"]).assert_code(0);
    let out = r.repo.pipeline(&["verify", "--bad-flag"]);
    out.assert_code(3);
}

#[test]
fn a_clean_merge_of_attested_work_needs_no_note_but_a_hand_resolved_one_does() {
    let r = Remote::new();
    let base = r.repo.git(&["rev-parse", "HEAD"]);
    // Two attested changes on two branches, merged.
    let a = {
        let out = r.repo.pipeline(&["run", "--json", "fix the typo"]);
        out.json()["commit"].as_str().expect("a").to_owned()
    };
    r.repo.config(&r.repo.expand(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", \"*:append:other.txt:x\"]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
    ));
    // The config commit itself is on main; work from it.
    let b = {
        let out = r.repo.pipeline(&["run", "--json", "fix the typo"]);
        out.json()["commit"].as_str().expect("b").to_owned()
    };
    r.repo.git(&["checkout", "-q", "--detach", &b]);
    r.repo.git(&["merge", "-q", "--no-edit", &a]);
    let merge = r.repo.git(&["rev-parse", "HEAD"]);
    let out = r
        .repo
        .pipeline(&["verify", "--json", &format!("{merge}^1..{merge}")]);
    let v = out.json();
    let unattested: Vec<String> = v["unattested"]
        .as_array()
        .expect("list")
        .iter()
        .map(|u| u["commit"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        !unattested.contains(&merge),
        "a clean merge of attested parents passes: {v}"
    );
    assert!(!unattested.contains(&a));

    // A merge with a conflict resolved by hand needs its own attestation.
    r.repo.git(&["checkout", "-q", "--detach", &base]);
    r.manual_commit("log.txt", "one side\n");
    let side = r.repo.git(&["rev-parse", "HEAD"]);
    let merged = r.repo.git_out(&["merge", "--no-edit", &a]);
    assert_ne!(merged.code, 0, "expected a conflict");
    r.repo.write("log.txt", "resolved\n");
    r.repo.git(&["add", "log.txt"]);
    r.repo.git(&["commit", "-q", "--no-edit"]);
    let hand = r.repo.git(&["rev-parse", "HEAD"]);
    let out = r
        .repo
        .pipeline(&["verify", "--json", &format!("{side}..{hand}")]);
    let v = out.json();
    let why: Vec<String> = v["unattested"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|u| u["commit"] == hand.as_str())
        .map(|u| u["detail"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        why,
        vec!["merge without a note whose conflicts were resolved by hand"]
    );
}

#[test]
fn reverify_attests_a_commit_made_by_hand_and_refuses_out_of_scope_work() {
    let r = Remote::new();
    r.repo.config(&r.repo.expand(
        "version = 1\n[scope]\nallow = [\"src/**\"]\n[[gates]]\nname = \"ok\"\ncommand = [\"true\"]\n[agents.builder]\ncommand = [\"AGENT\", \"*:append:src/x:x\"]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
    ));
    r.push(&["--no-verify", "origin", "main"]).assert_code(0);
    let manual = r.manual_commit("src/lib.rs", "pub fn by_hand() {}\n");
    let out = r.repo.pipeline(&["reverify", "--json", "HEAD"]);
    out.assert_code(0);
    let rec = out.json();
    assert_eq!(rec["status"], "succeeded");
    assert_eq!(rec["commit"], manual.as_str());
    assert_eq!(rec["changed_paths"], serde_json::json!(["src/lib.rs"]));
    assert_eq!(r.repo.calls_of("builder"), 0);
    assert_eq!(r.repo.calls_of("verifier"), 1);
    assert!(
        r.repo.prompt("verifier", 1).contains("by hand: src/lib.rs"),
        "the commit message is the task"
    );
    let note: Value =
        serde_json::from_str(
            &r.repo
                .git(&["notes", "--ref=refs/notes/pipeline", "show", &manual]),
        )
        .expect("note");
    assert_eq!(
        note["subject"][1]["digest"]["gitTree"],
        r.repo.git(&["rev-parse", "HEAD^{tree}"]).as_str()
    );
    // Checked against its parent: that is the base it vouches for.
    assert_eq!(
        note["predicate"]["base"]["tree"],
        r.repo.git(&["rev-parse", "HEAD^^{tree}"]).as_str()
    );
    assert!(r.repo.busy_worktrees().is_empty());
    assert!(
        r.repo.pipeline_branches().is_empty(),
        "reverify makes no branch"
    );
    r.push(&["origin", "main"]).assert_code(0);

    let outside = r.manual_commit("docs/out.md", "out of scope\n");
    let out = r.repo.pipeline(&["reverify", "HEAD"]);
    out.assert_code(6);
    assert!(
        out.stderr.contains("A docs/out.md: not in scope.create"),
        "{}",
        out.stderr
    );
    assert!(
        r.repo
            .git_out(&["notes", "--ref=refs/notes/pipeline", "show", &outside])
            .code
            != 0
    );
    assert!(r.repo.busy_worktrees().is_empty());
    let out = r.repo.pipeline(&["reverify", "no-such-rev"]);
    out.assert_code(3);
}

#[test]
fn the_pre_commit_framework_contract_is_understood() {
    // pre-commit runs pre-push hooks once per ref with PRE_COMMIT_* variables and no stdin.
    let r = Remote::new();
    let remote_main = r.repo.git(&["rev-parse", "origin/main"]);
    let manual = r.manual_commit("k.txt", "k\n");
    let run = |to: &str| {
        r.repo
            .pipeline_cmd()
            .args(["hook", "pre-push", "origin", "ignored-url"])
            .env("PRE_COMMIT_FROM_REF", &remote_main)
            .env("PRE_COMMIT_TO_REF", to)
            .env("PRE_COMMIT_REMOTE_BRANCH", "refs/heads/main")
            .env("PRE_COMMIT_REMOTE_NAME", "origin")
            .output()
            .expect("hook")
    };
    let out = run(&manual);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&manual[..12]));
    r.repo.git(&["reset", "-q", "--hard", &remote_main]);
    let good = r.attested_commit();
    assert_eq!(run(&good).status.code(), Some(0));
}
