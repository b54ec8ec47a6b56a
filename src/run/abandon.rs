//! Abandoning a run from its record: stop what it left running, archive its work, remove its
//! worktree and branch. Used by `abandon`, by `clean`, and by a best-of-N parent for the
//! candidates it did not choose.

use std::path::Path;

use crate::error::{Error, Result};
use crate::git::snapshot::Snapshotter;
use crate::git::{Git, Repo, objects, worktree};
use crate::ids;
use crate::run::stages::rollback;
use crate::safety::process;
use crate::store::EventKind;
use crate::store::RunDir;
use crate::store::lock::acquire_repo;
use crate::store::record::{RunRecord, Status};

/// Save a run's work (its worktree as it is, its branch) on its archive ref, when there is any
/// work beyond the base. Returns the archive ref.
pub(crate) fn archive_run(
    git: &Git,
    dir: &RunDir,
    rec: &RunRecord,
    worktree: Option<&Path>,
    why: &str,
) -> Result<Option<String>> {
    let base_tree = objects::tree_of(git, &rec.base).ok();
    let tip = if rec.branch.is_empty() {
        None
    } else {
        objects::ref_value(git, &crate::git::refs::heads(&rec.branch))?
    };
    let tree = match worktree {
        Some(wt) if wt.join(".git").exists() => {
            let paths = worktree::paths(wt)?;
            // The run's own index when it kept one (the agent's is not trusted).
            let snap = Snapshotter::new(wt, &paths.git_dir, dir.scratch("index")?);
            Some(snap.tree_for_archive()?)
        }
        _ => match &tip {
            Some(t) => Some(objects::tree_of(git, t)?),
            None => None,
        },
    };
    let agent_committed = tip.as_deref().is_some_and(|t| t != rec.base);
    match tree {
        Some(t) if Some(&t) != base_tree.as_ref() || agent_committed => Ok(Some(
            rollback::archive(git, &rec.run_id, &t, &rec.base, tip.as_deref(), why)?,
        )),
        _ => Ok(None),
    }
}

/// Save what a worktree slot holds for a run whose record is gone, on that run's archive ref,
/// with the slot's HEAD as the base. Returns the archive ref, `None` when it holds nothing new.
pub(crate) fn archive_orphan(
    git: &Git,
    run_id: &str,
    wt: &Path,
    why: &str,
) -> Result<Option<String>> {
    let paths = worktree::paths(wt)?;
    let scratch = tempfile::tempdir().map_err(|e| Error::io("make a temporary folder", e))?;
    let snap = Snapshotter::new(wt, &paths.git_dir, scratch.path().join("index"));
    let tree = snap.tree_for_archive()?;
    let (head, head_tree) = worktree::head_and_tree(wt)?;
    if tree == head_tree {
        return Ok(None);
    }
    Ok(Some(rollback::archive(
        git, run_id, &tree, &head, None, why,
    )?))
}

/// The worktree of a run: the one its record names, or one git knows under the run's branch.
/// A path that is now a symlink, or another folder than the one the run made, is not it: it is
/// left alone, never entered or removed.
pub(crate) fn run_worktree(git: &Git, rec: &RunRecord) -> Result<Option<worktree::Entry>> {
    let wanted = crate::git::refs::heads(&rec.branch);
    let reason = format!("git-pipeline run {} ", rec.run_id);
    Ok(worktree::list(git)?.into_iter().find(|e| {
        let named = rec
            .worktree
            .as_deref()
            .is_some_and(|w| worktree::same_path(&e.path, w))
            || (!rec.branch.is_empty() && e.branch.as_deref() == Some(wanted.as_str()))
            || e.locked.as_deref().is_some_and(|r| r.starts_with(&reason));
        let replaced = worktree::was_replaced(&e.path, rec.worktree_identity);
        named && !replaced
    }))
}

/// Stop a run for good: stop what it left running, archive its work, remove its worktree and
/// branch, keep its record as `abandoned`. The caller holds the run's lock.
pub fn abandon(repo: &Repo, dir: &RunDir, mut rec: RunRecord, why: &str) -> Result<RunRecord> {
    if rec.commit.is_some() && rec.status == Status::Succeeded {
        return Err(Error::usage_hint(
            format!("run {} shipped; there is nothing to abandon", rec.run_id),
            format!("its branch {} is yours to merge or delete", rec.branch),
        ));
    }
    let leftovers = process::run_processes(&dir.path, rec.worktree.as_deref());
    process::stop_pids(&leftovers);
    let git = repo.git();
    let _guard = acquire_repo(&repo.pipeline_dir())?;
    let entry = run_worktree(&git, &rec)?;
    let wt_path = entry.as_ref().map(|e| e.path.clone());
    if let Some(a) = archive_run(&git, dir, &rec, wt_path.as_deref(), why)? {
        rec.archive = Some(a);
    }
    if let Some(e) = &entry {
        // A worktree slot goes back to the pool; any other worktree is removed.
        let owner = rollback::Owner {
            pipeline_dir: repo.pipeline_dir(),
            run_id: rec.run_id.clone(),
            base: rec.base.clone(),
            holds_slot: false,
        };
        match rollback::put_away(&git, &e.path, &owner) {
            Ok(()) => {}
            // A slot that is no longer the folder made for it is left alone (its work is
            // archived above); the run is abandoned all the same.
            Err(_) if crate::store::slots::number_of(&e.path).is_some() => {}
            Err(e) => return Err(e),
        }
    }
    let branch_ref = crate::git::refs::heads(&rec.branch);
    // A worktree left alone (replaced by a symlink or another folder) still holds the branch.
    let held = worktree::list(&git)?
        .iter()
        .any(|e| e.branch.as_deref() == Some(branch_ref.as_str()));
    if !rec.branch.is_empty() && !held && objects::ref_value(&git, &branch_ref)?.is_some() {
        worktree::delete_branch(&git, &rec.branch)?;
    }
    rec.status = Status::Abandoned;
    rec.stage = None;
    rec.worktree = None;
    rec.rolled_back = true;
    rec.ended_at = Some(ids::now_rfc3339());
    rec.error.get_or_insert_with(|| why.to_owned());
    dir.write_record(&rec)?;
    dir.event(
        None,
        EventKind::RolledBack,
        serde_json::json!({"abandoned": true, "archive": rec.archive, "stopped_processes": leftovers}),
    )?;
    let _ = dir.clear_scratch();
    Ok(rec)
}
