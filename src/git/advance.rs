//! Moving a branch that is not the run's own (the base branch for `ship = "merge"`, a bundle's
//! integration branch) to a newer commit, only in the ways that cannot undo anyone's work:
//!
//! - compare-and-swap: only from the value the caller expects (`update-ref <ref> <new> <old>`);
//! - never while a rebase, bisect, merge, cherry-pick or revert is in progress on it in any
//!   worktree (moving it then breaks `git rebase --continue` and the like);
//! - where it is checked out, only when that worktree has no changes to tracked files, and then
//!   with `git merge --ff-only` there, so the worktree's index and files move with it.
//!
//! Callers serialise moves among runs with the repository lock.

use std::path::{Path, PathBuf};

use super::{Git, objects, worktree};
use crate::error::Result;

/// What [`advance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    Moved,
    /// Left where it was, and why.
    Refused(String),
}

/// Who moves a branch, and how to say it.
pub struct Move<'a> {
    pub branch_ref: &'a str,
    pub expected: &'a str,
    /// A descendant of `expected`.
    pub new: &'a str,
    pub message: &'a str,
    /// The committer name the reflog entry is written with: the moving run's marked name, so
    /// that other runs' containment checks know the move was a run's, not their agent's.
    pub mover: Option<&'a str>,
}

/// Move a branch as [`Move`] says, or say why not.
pub fn advance(repo: &Git, common_dir: &Path, m: &Move<'_>) -> Result<Advance> {
    let Move {
        branch_ref,
        expected,
        new,
        message,
        mover,
    } = *m;
    let mover_os = mover.map(std::ffi::OsStr::new);
    let env: Vec<(&str, &std::ffi::OsStr)> = mover_os
        .map(|n| ("GIT_COMMITTER_NAME", n))
        .into_iter()
        .collect();
    let current = objects::ref_value(repo, branch_ref)?;
    if current.as_deref() != Some(expected) {
        return Ok(Advance::Refused(format!(
            "it moved since the run started (now at {})",
            current
                .as_deref()
                .map_or("nothing", |c| &c[..c.len().min(12)])
        )));
    }
    if let Some(why) = operation_in_progress(common_dir, branch_ref) {
        return Ok(Advance::Refused(why));
    }
    let holders: Vec<PathBuf> = worktree::list(repo)?
        .into_iter()
        .filter(|e| e.branch.as_deref() == Some(branch_ref))
        .map(|e| e.path)
        .collect();
    if holders.len() > 1 {
        return Ok(Advance::Refused(format!(
            "it is checked out in {} worktrees",
            holders.len()
        )));
    }
    let checked_out = holders.into_iter().next();
    let Some(path) = checked_out else {
        objects::update_ref_as(repo, branch_ref, new, Some(expected), message, &env)?;
        return Ok(Advance::Moved);
    };
    let wt = Git::in_dir(&path);
    let changes = wt.run([
        "--no-optional-locks",
        "status",
        "--porcelain=v2",
        "-z",
        "--untracked-files=no",
        "--ignore-submodules=none",
    ])?;
    if !changes.is_empty() {
        return Ok(Advance::Refused(format!(
            "it is checked out at {} with uncommitted changes",
            path.display()
        )));
    }
    let out = wt.output(
        ["merge", "--ff-only", "--quiet", new],
        super::Opts {
            stdin: None,
            env: &env,
        },
    )?;
    if out.status.success() {
        return Ok(Advance::Moved);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("git merge --ff-only refused")
        .trim()
        .to_owned();
    Ok(Advance::Refused(format!(
        "{why} (checked out at {})",
        path.display()
    )))
}

/// A rebase, bisect, merge, cherry-pick, revert or sequence in progress on `branch_ref` in any
/// worktree of the repository, said in words.
pub fn operation_in_progress(common_dir: &Path, branch_ref: &str) -> Option<String> {
    let branch = branch_ref.strip_prefix("refs/heads/").unwrap_or(branch_ref);
    let mut admin_dirs = vec![common_dir.to_owned()];
    if let Ok(entries) = std::fs::read_dir(common_dir.join("worktrees")) {
        admin_dirs.extend(entries.flatten().map(|e| e.path()));
    }
    let read = |p: PathBuf| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    for dir in admin_dirs {
        let place = read(dir.join("gitdir"))
            .and_then(|g| Path::new(&g).parent().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "the main worktree".to_owned());
        for (file, what) in [
            ("rebase-merge/head-name", "a rebase"),
            ("rebase-apply/head-name", "a rebase"),
        ] {
            if read(dir.join(file)).as_deref() == Some(branch_ref) {
                return Some(format!("{what} of {branch} is in progress at {place}"));
            }
        }
        if read(dir.join("BISECT_START")).as_deref() == Some(branch) {
            return Some(format!("a bisect of {branch} is in progress at {place}"));
        }
        let on_it = read(dir.join("HEAD")).as_deref() == Some(&format!("ref: {branch_ref}"));
        if on_it {
            for (file, what) in [
                ("MERGE_HEAD", "a merge"),
                ("CHERRY_PICK_HEAD", "a cherry-pick"),
                ("REVERT_HEAD", "a revert"),
                ("sequencer", "a sequence of picks"),
            ] {
                if dir.join(file).exists() {
                    return Some(format!("{what} on {branch} is in progress at {place}"));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run git in `dir` as a person would; panics on failure unless `may_fail`.
    fn git(dir: &Path, args: &[&str], may_fail: bool) -> String {
        let out = crate::git::testing::git(dir, args);
        assert!(
            may_fail || out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A repository on main whose `f` conflicts with branch `other`'s.
    fn conflicting(dir: &Path) {
        git(dir, &["init", "-q", "-b", "main"], false);
        std::fs::write(dir.join("f"), "base\n").expect("write");
        git(dir, &["add", "f"], false);
        git(dir, &["commit", "-q", "-m", "base"], false);
        git(dir, &["checkout", "-q", "-b", "other"], false);
        std::fs::write(dir.join("f"), "other\n").expect("write");
        git(dir, &["commit", "-q", "-am", "other"], false);
        git(dir, &["checkout", "-q", "main"], false);
        std::fs::write(dir.join("f"), "main\n").expect("write");
        git(dir, &["commit", "-q", "-am", "main"], false);
    }

    #[test]
    fn every_operation_in_progress_on_the_branch_is_named() {
        let cases: [(&[&str], &str, &[&str]); 4] = [
            (
                &["merge", "other"],
                "a merge on main is in progress",
                &["merge", "--abort"],
            ),
            (
                &["cherry-pick", "other"],
                "a cherry-pick on main is in progress",
                &["cherry-pick", "--abort"],
            ),
            (
                &["revert", "--no-edit", "HEAD~1"],
                "",
                &["revert", "--abort"],
            ),
            (
                &["bisect", "start"],
                "a bisect of main is in progress",
                &["bisect", "reset"],
            ),
        ];
        for (start, expected, abort) in cases {
            let tmp = tempfile::tempdir().expect("tempdir");
            conflicting(tmp.path());
            let git_dir = tmp.path().join(".git");
            assert_eq!(operation_in_progress(&git_dir, "refs/heads/main"), None);
            if start[0] == "revert" {
                // A revert that conflicts: undo "main" on top of a commit that changed f again.
                std::fs::write(tmp.path().join("f"), "again\n").expect("write");
                git(tmp.path(), &["commit", "-q", "-am", "again"], false);
            }
            git(tmp.path(), start, true);
            let found = operation_in_progress(&git_dir, "refs/heads/main");
            assert!(
                found.as_deref().is_some_and(|f| f.starts_with(expected)),
                "{start:?}: {found:?}"
            );
            assert_eq!(operation_in_progress(&git_dir, "refs/heads/other"), None);
            git(tmp.path(), abort, false);
            assert_eq!(operation_in_progress(&git_dir, "refs/heads/main"), None);
        }
    }
}
