//! Rolling a run back without destroying anything an agent made: its last state is committed on
//! `refs/pipeline/archive/<run-id>` first, then the worktree and branch go (or stay, with
//! `--keep`).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::git::objects;
use crate::git::refs::BranchName;
use crate::git::worktree;
use crate::git::{Git, TreeId};
use crate::store::{lock, slots};

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
    let name = format!("{ARCHIVE_PREFIX}{run_id}");
    let old = objects::ref_value(repo, &name)?;
    // An earlier archive of the same run (its slot was taken while it was stopped) stays
    // reachable from the new one: archiving again never drops work.
    if let Some(o) = &old
        && !parents.contains(&o.as_str())
    {
        parents.push(o.as_str());
    }
    let message = format!(
        "git-pipeline: archive of run {run_id}\n\nThe run was rolled back: {why}\nThis commit holds the worktree as the run left it.\n\nPipeline-Run: {run_id}\n"
    );
    let commit = objects::commit_tree(repo, tree, &parents, &message, &[])?;
    objects::update_ref(
        repo,
        &name,
        &commit,
        old.as_deref(),
        "git-pipeline: archive a rolled-back run",
    )?;
    Ok(name)
}

/// Whose worktree is being put away, and what of it is worth keeping.
pub struct Owner {
    pub pipeline_dir: PathBuf,
    pub run_id: String,
    /// Where a slot's HEAD goes when it names no commit (the run's base).
    pub base: crate::git::Oid,
    /// Whether the caller holds the slot's lock already (the run itself does).
    pub holds_slot: bool,
}

/// The slot `wt` is, when it is a worktree slot that `run_id` has: named like one, the folder
/// recorded for it (device and inode), that run's, and its `.git` pointer its own.
pub fn slot_of(pipeline_dir: &Path, wt: &Path, run_id: &str) -> Result<Option<u32>> {
    let Some(n) = slots::number_of(wt) else {
        return Ok(None);
    };
    // `pipeline_dir` is `<common dir>/pipeline`.
    let common_dir = pipeline_dir.parent().unwrap_or(pipeline_dir);
    let ours = slots::read(pipeline_dir, n)?.is_some_and(|s| {
        s.run.as_deref() == Some(run_id)
            && s.identity.is_some()
            && worktree::is_the_same_folder(wt, s.identity)
            && worktree::pointer_is_sound(wt, common_dir)
    });
    Ok(ours.then_some(n))
}

/// Put a run's worktree away: a worktree slot goes back to the pool (HEAD detached where it is,
/// so that the run's branch is free; its files stay for the next run, which resets them), any
/// other worktree of the run is removed.
pub fn put_away(repo: &Git, wt: &Path, owner: &Owner) -> Result<()> {
    if let Some(n) = slots::number_of(wt)
        && slot_of(&owner.pipeline_dir, wt, &owner.run_id)?.is_none()
    {
        // Named like a slot but not this run's slot (or not the folder made for it): a run's
        // own worktree is named by its id, so this is never removed.
        let held = slots::read(&owner.pipeline_dir, n)?
            .is_some_and(|s| s.run.as_deref() == Some(owner.run_id.as_str()));
        if held {
            return Err(crate::error::Error::other(format!(
                "worktree slot {n} at {} is no longer the worktree git-pipeline made (replaced, or its .git pointer or admin folder changed); it is left alone",
                wt.display()
            )));
        }
        return Ok(());
    }
    if let Some(n) = slot_of(&owner.pipeline_dir, wt, &owner.run_id)? {
        // Another process giving it back holds it: nothing is left to do here.
        let _lock = match owner.holds_slot {
            true => None,
            false => match lock::try_slot(&owner.pipeline_dir, n)? {
                Some(l) => Some(l),
                None => return Ok(()),
            },
        };
        worktree::detach_head(wt, &owner.base)?;
        let mut state = slots::read(&owner.pipeline_dir, n)?.unwrap_or_default();
        state.run = None;
        state.kept = false;
        return slots::write(&owner.pipeline_dir, n, &state);
    }
    // `git worktree remove --force` also forgets a worktree whose folder was deleted by hand;
    // unlike `git worktree prune` it touches no other worktree.
    if worktree::list(repo)?
        .iter()
        .any(|e| worktree::same_path(&e.path, wt))
    {
        worktree::remove(repo, wt)?;
    }
    Ok(())
}

/// Keep a run's worktree slot out of the pool (a failed run kept for a person to look at):
/// `abandon` or `clean` gives it back.
pub fn keep_slot(pipeline_dir: &Path, wt: &Path, run_id: &str) -> Result<()> {
    if let Some(n) = slot_of(pipeline_dir, wt, run_id)? {
        let mut state = slots::read(pipeline_dir, n)?.unwrap_or_default();
        state.kept = true;
        slots::write(pipeline_dir, n, &state)?;
    }
    Ok(())
}

/// Put the run's worktree away and delete its branch (both ours: made by this run).
pub fn discard(repo: &Git, wt: &Path, branch: Option<&BranchName>, owner: &Owner) -> Result<()> {
    put_away(repo, wt, owner)?;
    if let Some(b) = branch
        && objects::ref_value(repo, &b.full())?.is_some()
    {
        worktree::delete_branch(repo, b.as_str())?;
    }
    Ok(())
}
