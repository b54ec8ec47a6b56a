//! Taking runs apart without losing anything: `abandon` (one run, for good) and `clean` (what
//! crashed or finished runs left behind). Both archive work to `refs/pipeline/archive/<id>`
//! before removing it, never touch a live run, and never touch a worktree or branch they cannot
//! tie to a run of their own.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::Error;

use crate::error::Result;
use crate::git::Git;
use crate::git::Repo;
use crate::git::objects;
use crate::git::worktree;
use crate::ids;
use crate::run::abandon::{archive_run, run_worktree};
use crate::run::stages::rollback;
use crate::run::stages::rollback::ARCHIVE_PREFIX;
use crate::store::lock::acquire_repo;
use crate::store::lock::{self, Liveness};
use crate::store::record::Status;
use crate::store::slots;

/// One thing `clean` does (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Archive a run's work, remove its worktree and branch, record it abandoned.
    AbandonRun { run_id: String, why: String },
    /// Remove a finished run's leftover worktree (archived first when it holds work).
    RemoveWorktree { run_id: String, path: PathBuf },
    /// Delete a finished run's branch (archived first when it holds work).
    DeleteBranch {
        run_id: String,
        branch: String,
        why: String,
    },
    /// A worktree of ours whose run record is gone.
    RemoveOrphanWorktree {
        run_id: String,
        path: PathBuf,
        branch: Option<String>,
    },
    /// Delete an archive older than `run.archive_days`.
    ExpireArchive { reference: String, age_days: u64 },
    /// Finish deleting a removed worktree's files (renamed aside; the deletion was cut short).
    RemoveTrash { path: PathBuf },
    /// Remove an idle worktree slot and its build caches (`clean --slots`).
    RemoveSlot {
        number: u32,
        path: PathBuf,
        bytes: u64,
    },
}

/// Something `clean` leaves in place, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub what: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CleanPlan {
    pub actions: Vec<Action>,
    pub kept: Vec<Kept>,
}

pub struct CleanOptions {
    /// Interrupted runs older than this are abandoned.
    pub older_than: Duration,
    /// Abandon every interrupted run, whatever its age.
    pub all_interrupted: bool,
    pub worktree_root: PathBuf,
    pub branch_prefix: String,
    pub archive_days: u32,
    /// Remove idle worktree slots too (their caches go with them).
    pub slots: bool,
    /// The caches slots keep (`run.caches`, or the project's defaults), for the report.
    pub caches: Vec<String>,
}

fn age(rfc3339: &str) -> Option<Duration> {
    let t = humantime::parse_rfc3339_weak(rfc3339).ok()?;
    SystemTime::now().duration_since(t).ok()
}

/// Look at everything and decide, changing nothing.
pub fn plan(repo: &Repo, store: &crate::store::Store, o: &CleanOptions) -> Result<CleanPlan> {
    let git = repo.git();
    let mut actions = Vec::new();
    let mut kept = Vec::new();
    let worktrees = worktree::list(&git)?;
    let mut known_ids = std::collections::HashSet::new();
    for id in store.list()? {
        known_ids.insert(id.clone());
        let dir = store.open(&id, Default::default());
        // A bundle owns nothing itself: its workstreams' runs are cleaned one by one, and its
        // integration branch is its result.
        if crate::bundle::record::is_bundle(&dir.path) {
            continue;
        }
        let rec = match dir.read_record() {
            Ok(r) => r,
            Err(e) => {
                kept.push(Kept {
                    what: format!("run {id}"),
                    why: format!("its record cannot be read ({e})"),
                });
                continue;
            }
        };
        match dir.liveness() {
            Liveness::Alive(o) => {
                kept.push(Kept {
                    what: format!("run {id}"),
                    why: format!("it is running ({})", o.describe()),
                });
                continue;
            }
            Liveness::OtherHost(o) => {
                kept.push(Kept {
                    what: format!("run {id}"),
                    why: format!("it may be running on another host ({})", o.describe()),
                });
                continue;
            }
            Liveness::Free => {}
        }
        let entry = run_worktree(&git, &rec)?;
        let branch_exists = !rec.branch.is_empty()
            && objects::ref_value(&git, &crate::git::refs::heads(&rec.branch))?.is_some();
        match rec.status {
            Status::Pending | Status::Running | Status::Interrupted => {
                let old = age(&rec.created_at).is_some_and(|a| a >= o.older_than);
                if o.all_interrupted || old {
                    actions.push(Action::AbandonRun {
                        run_id: id.clone(),
                        why: if old {
                            format!(
                                "interrupted, older than {}",
                                humantime::format_duration(o.older_than)
                            )
                        } else {
                            "interrupted (--all)".to_owned()
                        },
                    });
                } else if entry.is_some() || branch_exists {
                    kept.push(Kept {
                        what: format!("run {id}"),
                        why: "interrupted recently; resume it with git pipeline resume, or pass --all".to_owned(),
                    });
                }
            }
            Status::Failed | Status::Abandoned => {
                if let Some(e) = entry {
                    actions.push(Action::RemoveWorktree {
                        run_id: id.clone(),
                        path: e.path,
                    });
                }
                if branch_exists && rec.commit.is_none() {
                    actions.push(Action::DeleteBranch {
                        run_id: id.clone(),
                        branch: rec.branch.clone(),
                        why: format!("run {}", rec.status.name()),
                    });
                }
            }
            Status::Succeeded => {
                if let Some(e) = entry {
                    actions.push(Action::RemoveWorktree {
                        run_id: id.clone(),
                        path: e.path,
                    });
                }
                if branch_exists {
                    if merged(&git, &rec.branch, &o.branch_prefix)? {
                        actions.push(Action::DeleteBranch {
                            run_id: id.clone(),
                            branch: rec.branch.clone(),
                            why: "shipped and merged".to_owned(),
                        });
                    } else {
                        kept.push(Kept {
                            what: format!("branch {}", rec.branch),
                            why: "shipped, not merged yet".to_owned(),
                        });
                    }
                }
            }
        }
    }
    // Worktrees of ours whose record is gone: in our worktree root, named like a run id, and on
    // that run's branch or locked by that run. Anything else is not ours.
    for e in &worktrees {
        let Some(name) = e.path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if known_ids.contains(name) || !ids::is_run_id(name) {
            continue;
        }
        let under_root = e
            .path
            .parent()
            .is_some_and(|p| same_folder(p, &o.worktree_root));
        let our_branch = crate::git::refs::heads(&format!("{}{name}", o.branch_prefix));
        let ours_by_branch = e.branch.as_deref() == Some(our_branch.as_str());
        let ours_by_lock = e
            .locked
            .as_deref()
            .is_some_and(|r| r.starts_with(&format!("git-pipeline run {name} ")));
        if under_root && (ours_by_branch || ours_by_lock) {
            actions.push(Action::RemoveOrphanWorktree {
                run_id: name.to_owned(),
                path: e.path.clone(),
                branch: ours_by_branch.then(|| format!("{}{name}", o.branch_prefix)),
            });
        }
    }
    // Worktrees renamed aside for deletion whose deletion did not finish (a crash, a reboot).
    // Only folders of our own naming, in our worktree root. One still being deleted is
    // harmless to delete too.
    for entry in std::fs::read_dir(&o.worktree_root)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(worktree::TRASH_PREFIX) && entry.file_type().is_ok_and(|t| t.is_dir()) {
            actions.push(Action::RemoveTrash { path: entry.path() });
        }
    }
    plan_slots(repo, o, &mut actions, &mut kept)?;
    // Archives past their time.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (reference, when) in crate::git::refs::with_dates(&git, ARCHIVE_PREFIX)? {
        let age_days = now.saturating_sub(when) / 86_400;
        if age_days >= u64::from(o.archive_days) {
            actions.push(Action::ExpireArchive {
                reference,
                age_days,
            });
        }
    }
    Ok(CleanPlan { actions, kept })
}

/// Worktree slots: each is reported with its size; idle ones are removed with `--slots`. A slot
/// in use, or holding a stopped run's work, stays; a folder named like a slot that git-pipeline
/// did not make (or that was replaced) is never touched.
fn plan_slots(
    repo: &Repo,
    o: &CleanOptions,
    actions: &mut Vec<Action>,
    kept: &mut Vec<Kept>,
) -> Result<()> {
    let pipeline_dir = repo.pipeline_dir();
    let store = crate::store::Store::new(&pipeline_dir);
    for (n, path) in crate::run::slot::slot_folders(&o.worktree_root) {
        let what = format!("worktree slot {n} ({})", path.display());
        let state = slots::read(&pipeline_dir, n)?.filter(|s| {
            s.identity.is_some()
                && !worktree::was_replaced(&path, s.identity)
                && worktree::pointer_is_sound(&path, &repo.common_dir)
        });
        let Some(state) = state else {
            kept.push(Kept {
                what,
                why: "git-pipeline did not make this folder, or it was replaced; not touching it"
                    .to_owned(),
            });
            continue;
        };
        let bytes = size_of(&path);
        let cached: u64 = o
            .caches
            .iter()
            .map(|c| c.trim_matches('/'))
            .filter(|c| !c.is_empty() && !c.contains(['*', '?', '[', '/']))
            .map(|c| size_of(&path.join(c)))
            .sum();
        let size = format!(
            "{:.1} MB, {:.1} MB of it build caches",
            bytes as f64 / 1_000_000.0,
            cached as f64 / 1_000_000.0
        );
        if lock::try_slot(&pipeline_dir, n)?.is_none() {
            kept.push(Kept {
                what,
                why: format!("in use by a run ({size})"),
            });
            continue;
        }
        let holder = state.run.as_deref().filter(|run| {
            state.kept
                || store
                    .open(run, Default::default())
                    .read_record()
                    .is_ok_and(|r| !r.status.is_final())
        });
        if let Some(run) = holder {
            kept.push(Kept {
                what,
                why: format!("holds run {run}'s work ({size}); resume or abandon it first"),
            });
        } else if o.slots {
            actions.push(Action::RemoveSlot {
                number: n,
                path,
                bytes,
            });
        } else {
            kept.push(Kept {
                what,
                why: format!("idle, {size}; clean --slots removes it"),
            });
        }
    }
    Ok(())
}

/// Whether a shipped branch's commit is also on another branch (local, not ours, or remote).
fn merged(git: &Git, branch: &str, prefix: &str) -> Result<bool> {
    let ours = crate::git::refs::heads(prefix);
    Ok(crate::git::refs::containing(
        git,
        &crate::git::refs::heads(branch),
        &[crate::git::refs::HEADS, "refs/remotes/"],
    )?
    .iter()
    .any(|r| !r.starts_with(&ours)))
}

/// What `clean` freed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Freed {
    pub worktrees: usize,
    pub branches: usize,
    pub runs_abandoned: usize,
    pub archives_expired: usize,
    pub bytes: u64,
    /// Actions that could not be carried out (a worktree whose work cannot be archived, say):
    /// what was left as it is, and why. The others went ahead.
    pub failed: Vec<String>,
}

/// Carry out a plan. An action that fails leaves its target as it was and the others go on:
/// nothing is removed without its work archived first.
pub fn apply(repo: &Repo, store: &crate::store::Store, plan: &CleanPlan) -> Result<Freed> {
    let git = repo.git();
    let mut freed = Freed::default();
    // Orphans' branches go in one transaction at the end (one git process, not one each).
    let mut orphan_branches = Vec::new();
    for action in &plan.actions {
        if let Err(e) = apply_one(repo, store, action, &mut freed, &mut orphan_branches) {
            freed
                .failed
                .push(format!("{}: {e}", describe_target(action)));
        }
    }
    if !orphan_branches.is_empty() {
        let _guard = acquire_repo(&repo.pipeline_dir())?;
        let existing = crate::git::refs::existing(&git, &orphan_branches)?;
        if !existing.is_empty() {
            crate::git::refs::delete_all(&git, &existing)?;
            freed.branches += existing.len();
        }
    }
    Ok(freed)
}

/// What an action works on, for the line that says it was left alone.
fn describe_target(action: &Action) -> String {
    match action {
        Action::AbandonRun { run_id, .. } => format!("run {run_id} left as it is"),
        Action::RemoveWorktree { path, .. } | Action::RemoveOrphanWorktree { path, .. } => {
            format!("worktree {} kept", path.display())
        }
        Action::DeleteBranch { branch, .. } => format!("branch {branch} kept"),
        Action::ExpireArchive { reference, .. } => format!("archive {reference} kept"),
        Action::RemoveTrash { path } => format!("{} left", path.display()),
        Action::RemoveSlot { path, .. } => format!("worktree slot {} kept", path.display()),
    }
}

fn apply_one(
    repo: &Repo,
    store: &crate::store::Store,
    action: &Action,
    freed: &mut Freed,
    orphan_branches: &mut Vec<String>,
) -> Result<()> {
    let git = repo.git();
    {
        match action {
            Action::AbandonRun { run_id, why } => {
                let dir = store.find(run_id, Default::default())?;
                // Taking the lock proves the run is still not alive now.
                let _lock = dir.lock()?;
                let rec = dir.read_record()?;
                if let Some(e) = run_worktree(&git, &rec)? {
                    freed.bytes += size_of(&e.path);
                    freed.worktrees += 1;
                }
                if !rec.branch.is_empty()
                    && objects::ref_value(&git, &crate::git::refs::heads(&rec.branch))?.is_some()
                {
                    freed.branches += 1;
                }
                crate::run::abandon::abandon(repo, &dir, rec, &format!("cleaned: {why}"))?;
                freed.runs_abandoned += 1;
            }
            Action::RemoveWorktree { run_id, path } => {
                let dir = store.find(run_id, Default::default())?;
                let _lock = dir.lock()?;
                let mut rec = dir.read_record()?;
                let _guard = acquire_repo(&repo.pipeline_dir())?;
                if rec.commit.is_none()
                    && let Some(a) = archive_run(&git, &dir, &rec, Some(path), "cleaned")?
                {
                    rec.archive = Some(a);
                }
                let owner = rollback::Owner {
                    pipeline_dir: repo.pipeline_dir(),
                    run_id: run_id.clone(),
                    base: rec.base.clone(),
                    holds_slot: false,
                };
                if rollback::slot_of(&owner.pipeline_dir, path, run_id)?.is_none() {
                    freed.bytes += size_of(path);
                    freed.worktrees += 1;
                }
                // A slot goes back to the pool; any other worktree is removed.
                rollback::put_away(&git, path, &owner)?;
                rec.worktree = None;
                dir.write_record(&rec)?;
            }
            Action::DeleteBranch { run_id, branch, .. } => {
                let dir = store.find(run_id, Default::default())?;
                let _lock = dir.lock()?;
                let mut rec = dir.read_record()?;
                let _guard = acquire_repo(&repo.pipeline_dir())?;
                if rec.commit.is_none()
                    && rec.archive.is_none()
                    && let Some(a) = archive_run(&git, &dir, &rec, None, "cleaned")?
                {
                    rec.archive = Some(a);
                }
                worktree::delete_branch(&git, branch)?;
                freed.branches += 1;
                rec.rolled_back = rec.commit.is_none();
                dir.write_record(&rec)?;
            }
            Action::RemoveOrphanWorktree {
                run_id,
                path,
                branch,
            } => {
                let _guard = acquire_repo(&repo.pipeline_dir())?;
                // No record to archive from: archive the worktree's state directly.
                if path.join(".git").exists() {
                    crate::run::abandon::archive_orphan(&git, run_id, path, "orphaned worktree")?;
                }
                freed.bytes += size_of(path);
                worktree::remove(&git, path)?;
                freed.worktrees += 1;
                if let Some(b) = branch {
                    orphan_branches.push(crate::git::refs::heads(b));
                }
            }
            Action::ExpireArchive { reference, .. } => {
                let _guard = acquire_repo(&repo.pipeline_dir())?;
                crate::git::refs::delete(&git, reference, None)?;
                freed.archives_expired += 1;
            }
            Action::RemoveTrash { path } => {
                freed.bytes += size_of(path);
                worktree::delete_now(path)?;
            }
            Action::RemoveSlot {
                number,
                path,
                bytes,
            } => {
                let pipeline_dir = repo.pipeline_dir();
                let _guard = acquire_repo(&pipeline_dir)?;
                // Taken now: no run starts in it while it goes.
                let Some(_slot) = lock::try_slot(&pipeline_dir, *number)? else {
                    return Err(Error::other("a run took it meanwhile"));
                };
                let idle = slots::read(&pipeline_dir, *number)?.is_some_and(|s| {
                    s.identity.is_some()
                        && !worktree::was_replaced(path, s.identity)
                        && worktree::pointer_is_sound(path, &repo.common_dir)
                        && (s.run.is_none()
                            || s.run.as_deref().is_some_and(|r| {
                                store
                                    .open(r, Default::default())
                                    .read_record()
                                    .is_ok_and(|rec| rec.status.is_final())
                            }))
                        && !s.kept
                });
                if !idle {
                    return Err(Error::other("it is no longer idle"));
                }
                worktree::remove(&git, path)?;
                slots::forget(&pipeline_dir, *number)?;
                freed.worktrees += 1;
                freed.bytes += bytes;
            }
        }
    }
    Ok(())
}

fn size_of(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Two folders are one (the worktree root may be reached through a symlink of the user's).
fn same_folder(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (a.canonicalize(), b.canonicalize()),
            (Ok(x), Ok(y)) if x == y
        )
}
