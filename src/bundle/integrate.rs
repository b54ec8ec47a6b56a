//! The merges a bundle makes, all in the object store (no worktree, no index, nothing of the
//! user's touched): the base of a workstream with several dependencies, and the integration
//! branch that collects every shipped result. Merge commits are exactly what `git merge-tree`
//! makes of their parents, so `git pipeline verify` and the hooks accept them without a note.

use std::path::PathBuf;

use crate::error::Result;
use crate::git::merge::Merge;
use crate::git::merge::merge_trees;
use crate::git::objects;
use crate::git::{Git, Oid};

/// Where a workstream starts: the bundle's base, its one dependency's commit, or the merge of
/// its dependencies' commits. `Err` holds the paths where they conflict.
pub fn base_for(
    git: &Git,
    bundle_base: &Oid,
    deps: &[(String, Oid)],
) -> Result<std::result::Result<Oid, Vec<PathBuf>>> {
    let Some(((_, first), rest)) = deps.split_first() else {
        return Ok(Ok(bundle_base.clone()));
    };
    let mut acc = first.clone();
    let mut merged = vec![deps[0].0.as_str()];
    for (id, commit) in rest {
        if objects::is_ancestor(git, commit, &acc)? {
            continue;
        }
        if objects::is_ancestor(git, &acc, commit)? {
            acc = commit.clone();
            merged.push(id);
            continue;
        }
        match merge_trees(git, &acc, commit)? {
            Merge::Conflict(paths) => return Ok(Err(paths)),
            Merge::Clean(tree) => {
                merged.push(id);
                let message = format!("Merge the results of {}", merged.join(", "));
                acc = objects::commit_tree(git, &tree, &[&acc, commit], &message, &[])?;
            }
        }
    }
    Ok(Ok(acc))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrated {
    /// The integration branch now points here.
    Moved(Oid),
    /// The commit was already on it.
    Already,
    Conflict(Vec<PathBuf>),
    /// The branch could not be moved without undoing someone's work (see `git::advance`).
    Refused(String),
}

/// Bring `commit` onto the integration branch `branch_ref`: a fast-forward when the branch has
/// not moved past the commit's history, a merge commit otherwise. The branch is moved with
/// compare-and-swap; the caller holds the repository lock.
pub fn integrate(
    git: &Git,
    common_dir: &std::path::Path,
    branch_ref: &str,
    commit: &Oid,
    message: &str,
) -> Result<Integrated> {
    let tip = objects::ref_value(git, branch_ref)?.ok_or_else(|| {
        crate::error::Error::other(format!(
            "the integration branch {branch_ref} is gone; the bundle cannot merge its results"
        ))
    })?;
    if objects::is_ancestor(git, commit, &tip)? {
        return Ok(Integrated::Already);
    }
    let new = if objects::is_ancestor(git, &tip, commit)? {
        commit.clone()
    } else {
        match merge_trees(git, &tip, commit)? {
            Merge::Conflict(paths) => return Ok(Integrated::Conflict(paths)),
            Merge::Clean(tree) => objects::commit_tree(git, &tree, &[&tip, commit], message, &[])?,
        }
    };
    let m = crate::git::advance::Move {
        branch_ref,
        expected: &tip,
        new: &new,
        message,
        mover: None,
    };
    match crate::git::advance::advance(git, common_dir, &m)? {
        crate::git::advance::Advance::Moved => Ok(Integrated::Moved(new)),
        crate::git::advance::Advance::Refused(why) => Ok(Integrated::Refused(why)),
    }
}
