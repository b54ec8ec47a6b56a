//! Merges without a worktree: `git merge-tree --write-tree` (git 2.38) computes the merge of two
//! commits in the object store, exactly as `git merge` would, and names the conflicted paths.

use std::path::PathBuf;

use super::{Git, Opts, TreeId, path_from_bytes};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// The merged tree.
    Clean(TreeId),
    /// The paths that conflict.
    Conflict(Vec<PathBuf>),
}

/// The merge of commits `ours` and `theirs` (their merge base found by git).
pub fn merge_trees(git: &Git, ours: &str, theirs: &str) -> Result<Merge> {
    let out = git.output(
        [
            "merge-tree",
            "--write-tree",
            "--no-messages",
            "--name-only",
            "-z",
            ours,
            theirs,
        ],
        Opts::default(),
    )?;
    // "<tree>\0" then, on conflicts, "<path>\0" per conflicted path.
    let mut fields = out.stdout.split(|b| *b == 0);
    let tree = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    match out.status.code() {
        Some(0) => Ok(Merge::Clean(TreeId::from_git(tree))),
        Some(1) => {
            let mut paths: Vec<PathBuf> = fields
                .take_while(|f| !f.is_empty())
                .map(path_from_bytes)
                .collect();
            paths.dedup();
            Ok(Merge::Conflict(paths))
        }
        _ => Err(super::failure(
            &["merge-tree".into(), "--write-tree".into()],
            &out,
        )),
    }
}
