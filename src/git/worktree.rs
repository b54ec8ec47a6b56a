//! Creating and removing the run's worktree and branch, through `git worktree` so that filters,
//! LFS, line endings and the post-checkout hook behave exactly as in the user's own checkouts.

use std::path::{Path, PathBuf};

use super::{Git, Opts, path_from_bytes, split_z};
use crate::error::Result;

/// `git worktree add --lock -b <branch> -- <path> <base>`.
///
/// The lock keeps `git worktree prune` and `gc` away from a worktree whose run is alive.
pub fn add(repo: &Git, path: &Path, branch: &str, base: &str, lock_reason: &str) -> Result<()> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "worktree".into(),
        "add".into(),
        "--quiet".into(),
        "--lock".into(),
        "--reason".into(),
        lock_reason.into(),
        "-b".into(),
        branch.into(),
        "--".into(),
    ];
    args.push(path.as_os_str().to_owned());
    args.push(base.into());
    repo.run(args)?;
    Ok(())
}

pub fn unlock(repo: &Git, path: &Path) -> Result<()> {
    let out = repo.output(
        [
            std::ffi::OsStr::new("worktree"),
            "unlock".as_ref(),
            path.as_os_str(),
        ],
        Opts::default(),
    )?;
    // "is not locked" is fine: unlocking is idempotent for us.
    if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("not locked") {
        Ok(())
    } else {
        Err(super::failure(
            &[
                "worktree".into(),
                "unlock".into(),
                path.as_os_str().to_owned(),
            ],
            &out,
        ))
    }
}

/// Remove a worktree we created (unlocking it first). Its work must already be saved: this
/// discards uncommitted changes.
pub fn remove(repo: &Git, path: &Path) -> Result<()> {
    unlock(repo, path)?;
    repo.run([
        std::ffi::OsStr::new("worktree"),
        "remove".as_ref(),
        "--force".as_ref(),
        path.as_os_str(),
    ])?;
    Ok(())
}

pub fn delete_branch(repo: &Git, branch: &str) -> Result<()> {
    repo.run(["branch", "-D", "--", branch])?;
    Ok(())
}

/// One entry of `git worktree list --porcelain -z`.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub path: PathBuf,
    pub head: Option<String>,
    pub branch: Option<String>,
    pub locked: Option<String>,
    pub prunable: bool,
    pub bare: bool,
}

pub fn list(repo: &Git) -> Result<Vec<Entry>> {
    let out = repo.run(["worktree", "list", "--porcelain", "-z"])?;
    let mut entries: Vec<Entry> = Vec::new();
    for field in split_z(&out) {
        if let Some(p) = field.strip_prefix(b"worktree ") {
            entries.push(Entry {
                path: path_from_bytes(p),
                ..Entry::default()
            });
            continue;
        }
        let Some(e) = entries.last_mut() else {
            continue;
        };
        let text = String::from_utf8_lossy(field);
        if let Some(h) = text.strip_prefix("HEAD ") {
            e.head = Some(h.to_owned());
        } else if let Some(b) = text.strip_prefix("branch ") {
            e.branch = Some(b.to_owned());
        } else if text == "locked" {
            e.locked = Some(String::new());
        } else if let Some(r) = text.strip_prefix("locked ") {
            e.locked = Some(r.to_owned());
        } else if text == "prunable" || text.starts_with("prunable ") {
            e.prunable = true;
        } else if text == "bare" {
            e.bare = true;
        }
    }
    Ok(entries)
}

/// The worktree's own git dir (`<common>/worktrees/<name>`), where its index lives.
pub fn git_dir_of(worktree: &Path) -> Result<PathBuf> {
    let text = Git::in_dir(worktree).text(["rev-parse", "--path-format=absolute", "--git-dir"])?;
    Ok(PathBuf::from(text))
}
