//! The push check under the hook managers people use, with the real tools: pre-commit (PyPI),
//! lefthook and husky (npm). Whatever they pass or keep from git, the check never passes
//! unattested commits: a first push to an empty remote, a new branch, an update; a deletion
//! passes. CI installs the tools (.ci/run); elsewhere a missing tool says so loudly.

use std::path::{Path, PathBuf};

use crate::common::TestRepo;

fn push(repo: &TestRepo, args: &[&str]) -> crate::common::Out {
    let mut all = vec!["push", "-q"];
    all.extend_from_slice(args);
    repo.git_out(&all)
}

/// A repository with a pipeline config and an empty bare remote `origin`.
fn setup() -> (TestRepo, PathBuf) {
    let repo = TestRepo::new();
    repo.agents(
        &["*:append:log.txt:a line"],
        &["*:approve"],
        "[run]\nsandbox = \"off\"\n",
    );
    let bare = repo.root().join("remote.git");
    repo.git_in(
        repo.root(),
        &["init", "-q", "--bare", &bare.to_string_lossy()],
    );
    repo.git(&["remote", "add", "origin", &bare.to_string_lossy()]);
    (repo, bare)
}

fn remote_has(repo: &TestRepo, bare: &Path, rev: &str) -> bool {
    repo.command("git", bare)
        .args(["rev-parse", "--verify", "--quiet", rev])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The scenarios, once the manager's hook is installed.
fn scenarios(repo: &TestRepo, bare: &Path, who: &str) {
    // A first push to a remote with no refs: unattested commits are refused.
    let out = push(repo, &["origin", "main"]);
    assert!(out.code != 0, "{who}: first push passed: {}", out.stderr);
    assert!(!remote_has(repo, bare, "refs/heads/main"), "{who}");
    // The base goes up without the check (as a person would, once).
    repo.git(&["push", "-q", "--no-verify", "origin", "main"]);
    // A new branch with an unattested commit: refused.
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("by-hand.txt", "x\n");
    repo.commit_all("by hand");
    let out = push(repo, &["origin", "feature"]);
    assert!(out.code != 0, "{who}: new branch passed: {}", out.stderr);
    // An attested commit on a new branch passes, and as an update of main.
    repo.git(&["checkout", "-q", "main"]);
    let run = repo.pipeline(&["run", "--json", "fix the typo"]);
    run.assert_code(0);
    let commit = run.json()["commit"].as_str().expect("commit").to_owned();
    repo.git(&["merge", "-q", "--ff-only", &commit]);
    let out = push(repo, &["origin", "main", "refs/notes/pipeline"]);
    assert!(
        out.code == 0,
        "{who}: attested update refused: {}",
        out.stderr
    );
    // An update with an unattested commit: refused.
    repo.write("more.txt", "y\n");
    repo.commit_all("more by hand");
    let out = push(repo, &["origin", "main"]);
    assert!(
        out.code != 0,
        "{who}: unattested update passed: {}",
        out.stderr
    );
    repo.git(&["reset", "-q", "--hard", "HEAD~1"]);
    // A deletion passes.
    repo.git(&[
        "push",
        "-q",
        "--no-verify",
        "origin",
        &format!("{commit}:refs/heads/gone"),
    ]);
    let out = push(repo, &["origin", "--delete", "gone"]);
    assert!(out.code == 0, "{who}: deletion refused: {}", out.stderr);
}

#[test]
fn pre_commit_framework() {
    let Some(pre_commit) = crate::common::tool("pre-commit") else {
        return;
    };
    let (repo, bare) = setup();
    // This project's own `.pre-commit-hooks.yaml`, as users get it: from a repository at a rev.
    let hooks_repo = repo.root().join("git-pipeline-hooks");
    std::fs::create_dir_all(&hooks_repo).expect("hooks repo");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.pre-commit-hooks.yaml"),
        hooks_repo.join(".pre-commit-hooks.yaml"),
    )
    .expect("copy .pre-commit-hooks.yaml");
    repo.git_in(&hooks_repo, &["init", "-q"]);
    repo.git_in(&hooks_repo, &["add", ".pre-commit-hooks.yaml"]);
    repo.git_in(&hooks_repo, &["commit", "-q", "-m", "hooks"]);
    let rev = repo.git_in(&hooks_repo, &["rev-parse", "HEAD"]);
    repo.write(
        ".pre-commit-config.yaml",
        &format!(
            "repos:\n- repo: {}\n  rev: {rev}\n  hooks:\n  - id: git-pipeline-attested\n",
            hooks_repo.display()
        ),
    );
    repo.commit_all("pre-commit config");
    let out = repo
        .command(&pre_commit.to_string_lossy(), &repo.path)
        .args(["install", "--hook-type", "pre-push"])
        .output()
        .expect("pre-commit install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scenarios(&repo, &bare, "pre-commit");
}

fn lefthook_with(repo: &TestRepo, lefthook: &Path, config: &str) {
    repo.write("lefthook.yml", config);
    repo.commit_all("lefthook config");
    let out = repo
        .command(&lefthook.to_string_lossy(), &repo.path)
        .args(["install", "--force"])
        .output()
        .expect("lefthook install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn lefthook_with_and_without_use_stdin() {
    let Some(lefthook) = crate::common::tool("lefthook") else {
        return;
    };
    // Without use_stdin, git-pipeline is told nothing: what is pushed cannot be known, so a push
    // is refused, with the fix named.
    let (repo, _bare) = setup();
    lefthook_with(
        &repo,
        &lefthook,
        "pre-push:\n  commands:\n    attestations:\n      run: git-pipeline hook pre-push\n",
    );
    repo.git(&["push", "-q", "--no-verify", "origin", "main"]);
    let run = repo.pipeline(&["run", "--json", "fix the typo"]);
    run.assert_code(0);
    let commit = run.json()["commit"].as_str().expect("commit").to_owned();
    repo.git(&["merge", "-q", "--ff-only", &commit]);
    let out = push(&repo, &["origin", "main", "refs/notes/pipeline"]);
    assert!(out.code != 0, "passed without knowing what was pushed");
    // What the refusal says (lefthook may not relay it): the hook told nothing.
    let told_nothing = repo.pipeline(&["hook", "pre-push", "origin", "unused-url"]);
    assert_ne!(told_nothing.code, 0);
    assert!(
        told_nothing.stderr.contains("use_stdin: true"),
        "{}",
        told_nothing.stderr
    );
    // With it, the check is exact.
    let (repo, bare) = setup();
    lefthook_with(
        &repo,
        &lefthook,
        "pre-push:\n  commands:\n    attestations:\n      run: git-pipeline hook pre-push {1} {2}\n      use_stdin: true\n",
    );
    scenarios(&repo, &bare, "lefthook");
}

#[test]
fn husky() {
    let Some(husky) = crate::common::tool("husky") else {
        return;
    };
    let (repo, bare) = setup();
    let out = repo
        .command(&husky.to_string_lossy(), &repo.path)
        .output()
        .expect("husky");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo.write(".husky/pre-push", "git-pipeline hook pre-push \"$@\"\n");
    repo.commit_all("husky hook");
    scenarios(&repo, &bare, "husky");
}
