//! Rolling a run back without destroying anything an agent made: its last state is committed on
//! `refs/pipeline/archive/<run-id>` first, then the worktree and branch go (or stay, with
//! `--keep`).

use std::path::Path;

use crate::error::Result;
use crate::git::objects;
use crate::git::refs::BranchName;
use crate::git::worktree;
use crate::git::{Git, TreeId};

pub const ARCHIVE_PREFIX: &str = "refs/pipeline/archive/";

/// Save `tree` (the worktree's last state) as a commit on the run's archive ref. The branch tip
/// becomes a second parent when the agent committed on its own, so those commits stay reachable.
pub fn archive(
    repo: &Git,
    run_id: &str,
    tree: &TreeId,
    base: &crate::git::Oid,
    branch_tip: Option<&str>,
    why: &str,
) -> Result<String> {
    let mut parents = vec![base.as_str()];
    if let Some(tip) = branch_tip
        && tip != base
    {
        parents.push(tip);
    }
    let message = format!(
        "git-pipeline: archive of run {run_id}\n\nThe run was rolled back: {why}\nThis commit holds the worktree as the run left it.\n\nPipeline-Run: {run_id}\n"
    );
    let commit = objects::commit_tree(repo, tree, &parents, &message, &[])?;
    let name = format!("{ARCHIVE_PREFIX}{run_id}");
    let old = objects::ref_value(repo, &name)?;
    objects::update_ref(
        repo,
        &name,
        &commit,
        old.as_deref(),
        "git-pipeline: archive a rolled-back run",
    )?;
    Ok(name)
}

/// Remove the run's worktree and branch (both ours: made by this run).
pub fn discard(repo: &Git, wt: &Path, branch: Option<&BranchName>) -> Result<()> {
    // `git worktree remove --force` also forgets a worktree whose folder was deleted by hand;
    // unlike `git worktree prune` it touches no other worktree.
    if worktree::list(repo)?
        .iter()
        .any(|e| worktree::same_path(&e.path, wt))
    {
        worktree::remove(repo, wt)?;
    }
    if let Some(b) = branch
        && objects::ref_value(repo, &b.full())?.is_some()
    {
        worktree::delete_branch(repo, b.as_str())?;
    }
    Ok(())
}
