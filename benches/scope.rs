//! `cargo bench --bench scope`: the scope check on 10,000 changed paths against 200 globs
//! (target: under 20 ms), and, given a worktree (`SNAPSHOT_WORKTREE=/path`), the changed-path
//! listing git-pipeline makes (`git add -A` into a copy of the index, `write-tree`,
//! `diff-tree`) against `git status --porcelain` of the same worktree.
//!
//! Plain `std::time` medians: the numbers go into docs/benchmarks.md, no assertions.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use git_pipeline::git::snapshot::{Change, ChangeKind, Snapshotter};
use git_pipeline::policy::scope::Scope;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn scope_check() {
    // 200 globs of the shapes people write: folders, extensions, single files.
    let mut allow = Vec::new();
    for i in 0..150 {
        allow.push(format!("src/m{i:03}/**"));
    }
    for i in 0..40 {
        allow.push(format!("tests/t{i:02}/*.rs"));
    }
    for i in 0..10 {
        allow.push(format!("docs/page{i}.md"));
    }
    let deny = vec!["**/*.lock".to_owned(), "src/m000/secret/**".to_owned()];
    let scope = Scope::new(Some(allow), None, deny).expect("scope");
    let changes: Vec<Change> = (0..10_000)
        .map(|i| Change {
            // Four in five inside the scope, the rest outside.
            path: if i % 5 == 4 {
                PathBuf::from(format!("vendor/lib{i}/file{i}.c"))
            } else {
                PathBuf::from(format!("src/m{:03}/sub/file{i}.rs", i % 200))
            },
            kind: if i % 7 == 0 {
                ChangeKind::Added
            } else {
                ChangeKind::Modified
            },
            mode: 0o100644,
        })
        .collect();
    let mut times = Vec::new();
    let mut violations = 0;
    for _ in 0..25 {
        let t = Instant::now();
        violations = scope.check(&changes).len();
        times.push(t.elapsed());
    }
    println!(
        "scope check: 10,000 changed paths, 200 globs: {:.2} ms (median of 25; {violations} violations)",
        median(times).as_secs_f64() * 1000.0
    );
}

fn listing(worktree: PathBuf) {
    let git_dir = PathBuf::from(
        String::from_utf8_lossy(
            &std::process::Command::new("git")
                .arg("-C")
                .arg(&worktree)
                .args(["rev-parse", "--path-format=absolute", "--git-dir"])
                .output()
                .expect("git")
                .stdout,
        )
        .trim(),
    );
    let base_tree = String::from_utf8_lossy(
        &std::process::Command::new("git")
            .arg("-C")
            .arg(&worktree)
            .args(["rev-parse", "HEAD^{tree}"])
            .output()
            .expect("git")
            .stdout,
    )
    .trim()
    .to_owned();
    let scratch = std::env::temp_dir().join(format!("gp-bench-index-{}", std::process::id()));
    let snap = Snapshotter::new(&worktree, &git_dir, scratch.clone());
    let (mut ours, mut status) = (Vec::new(), Vec::new());
    let mut n = 0;
    for _ in 0..9 {
        let t = Instant::now();
        n = snap
            .take(
                &git_pipeline::git::Git::at_git_dir(&git_dir),
                &git_pipeline::git::TreeId::parse(&base_tree).expect("a tree id"),
            )
            .expect("snapshot")
            .changes
            .len();
        ours.push(t.elapsed());
        let t = Instant::now();
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&worktree)
            .args(["status", "--porcelain"])
            .output()
            .expect("git status");
        status.push(t.elapsed());
        assert!(out.status.success());
    }
    let _ = std::fs::remove_file(scratch);
    let (a, b) = (median(ours), median(status));
    println!(
        "changed-path listing, {n} changed: snapshot {:.1} ms, git status --porcelain {:.1} ms, ratio {:.2}",
        a.as_secs_f64() * 1000.0,
        b.as_secs_f64() * 1000.0,
        a.as_secs_f64() / b.as_secs_f64()
    );
}

fn main() {
    scope_check();
    if let Some(wt) = std::env::var_os("SNAPSHOT_WORKTREE") {
        listing(PathBuf::from(wt));
    }
}
