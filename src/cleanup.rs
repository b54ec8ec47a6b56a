//! Taking runs apart without losing anything: `abandon` (one run, for good) and `clean` (what
//! crashed or finished runs left behind). Both archive work to `refs/pipeline/archive/<id>`
//! before removing it, never touch a live run, and never touch a worktree or branch they cannot
//! tie to a run of their own.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::git::snapshot::Snapshotter;
use crate::git::{Git, Repo, objects, worktree};
use crate::ids;
use crate::pipeline::rollback::{self, ARCHIVE_PREFIX};
use crate::process;
use crate::store::RunDir;
use crate::store::lock::{Liveness, acquire_repo};
use crate::store::record::{RunRecord, Status};

/// Save a run's work (its worktree as it is, its branch) on its archive ref, when there is any
/// work beyond the base. Returns the archive ref.
fn archive_run(
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
        objects::ref_value(git, &format!("refs/heads/{}", rec.branch))?
    };
    let tree = match worktree {
        Some(wt) if wt.join(".git").exists() => {
            let paths = worktree::paths(wt)?;
            // The run's own index when it kept one (the agent's is not trusted).
            let snap = Snapshotter::new(wt, &paths.git_dir, dir.scratch("index")?);
            Some(snap.tree()?)
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

/// The worktree of a run: the one its record names, or one git knows under the run's branch.
/// A path that is now a symlink, or another folder than the one the run made, is not it: it is
/// left alone, never entered or removed.
fn run_worktree(git: &Git, rec: &RunRecord) -> Result<Option<worktree::Entry>> {
    let wanted = format!("refs/heads/{}", rec.branch);
    let reason = format!("git-pipeline run {} ", rec.run_id);
    Ok(worktree::list(git)?.into_iter().find(|e| {
        let named = rec
            .worktree
            .as_deref()
            .is_some_and(|w| worktree::same_path(&e.path, w))
            || (!rec.branch.is_empty() && e.branch.as_deref() == Some(wanted.as_str()))
            || e.locked.as_deref().is_some_and(|r| r.starts_with(&reason));
        let replaced = std::fs::symlink_metadata(&e.path).is_ok_and(|m| m.file_type().is_symlink())
            || (e.path.exists() && !worktree::is_the_same_folder(&e.path, rec.worktree_identity));
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
    let leftovers = process::run_processes(&rec.run_id, rec.worktree.as_deref());
    process::stop_pids(&leftovers);
    let git = repo.git();
    let _guard = acquire_repo(&repo.pipeline_dir())?;
    let entry = run_worktree(&git, &rec)?;
    let wt_path = entry.as_ref().map(|e| e.path.clone());
    if let Some(a) = archive_run(&git, dir, &rec, wt_path.as_deref(), why)? {
        rec.archive = Some(a);
    }
    if let Some(e) = &entry {
        worktree::remove(&git, &e.path)?;
    }
    let branch_ref = format!("refs/heads/{}", rec.branch);
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
        "rolled_back",
        serde_json::json!({"abandoned": true, "archive": rec.archive, "stopped_processes": leftovers}),
    )?;
    let _ = dir.clear_scratch();
    Ok(rec)
}

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
            && objects::ref_value(&git, &format!("refs/heads/{}", rec.branch))?.is_some();
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
        let our_branch = format!("refs/heads/{}{name}", o.branch_prefix);
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
    // Archives past their time.
    let out = git.run([
        "for-each-ref",
        "--format=%(refname) %(committerdate:unix)",
        ARCHIVE_PREFIX,
    ])?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for line in String::from_utf8_lossy(&out).lines() {
        let Some((reference, when)) = line.split_once(' ') else {
            continue;
        };
        let Ok(when) = when.parse::<u64>() else {
            continue;
        };
        let age_days = now.saturating_sub(when) / 86_400;
        if age_days >= u64::from(o.archive_days) {
            actions.push(Action::ExpireArchive {
                reference: reference.to_owned(),
                age_days,
            });
        }
    }
    Ok(CleanPlan { actions, kept })
}

/// Whether a shipped branch's commit is also on another branch (local, not ours, or remote).
fn merged(git: &Git, branch: &str, prefix: &str) -> Result<bool> {
    let out = git.run([
        "for-each-ref",
        "--format=%(refname)",
        "--contains",
        &format!("refs/heads/{branch}"),
        "refs/heads/",
        "refs/remotes/",
    ])?;
    let ours = format!("refs/heads/{prefix}");
    Ok(String::from_utf8_lossy(&out)
        .lines()
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
}

/// Carry out a plan.
pub fn apply(repo: &Repo, store: &crate::store::Store, plan: &CleanPlan) -> Result<Freed> {
    let git = repo.git();
    let mut freed = Freed::default();
    // Orphans' branches go in one transaction at the end (one git process, not one each).
    let mut orphan_branches = Vec::new();
    for action in &plan.actions {
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
                    && objects::ref_value(&git, &format!("refs/heads/{}", rec.branch))?.is_some()
                {
                    freed.branches += 1;
                }
                abandon(repo, &dir, rec, &format!("cleaned: {why}"))?;
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
                freed.bytes += size_of(path);
                worktree::remove(&git, path)?;
                freed.worktrees += 1;
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
                    let paths = worktree::paths(path)?;
                    // The runs folder may not exist: these worktrees' records are gone.
                    std::fs::create_dir_all(store.runs_dir())
                        .map_err(|e| Error::io_path("create", store.runs_dir(), e))?;
                    let scratch = store.runs_dir().join(format!(".orphan-{run_id}.index"));
                    let snap = Snapshotter::new(path, &paths.git_dir, scratch.clone());
                    let tree = snap.tree();
                    let _ = std::fs::remove_file(&scratch);
                    let tree = tree?;
                    let head = Git::in_dir(path).text(["rev-parse", "HEAD", "HEAD^{tree}"])?;
                    let (head, head_tree) = head.split_once('\n').unwrap_or((&head, ""));
                    // A worktree that holds nothing but its commit has nothing to save.
                    if tree != head_tree.trim() {
                        rollback::archive(&git, run_id, &tree, head, None, "orphaned worktree")?;
                    }
                }
                freed.bytes += size_of(path);
                worktree::remove(&git, path)?;
                freed.worktrees += 1;
                if let Some(b) = branch {
                    orphan_branches.push(format!("refs/heads/{b}"));
                }
            }
            Action::ExpireArchive { reference, .. } => {
                let _guard = acquire_repo(&repo.pipeline_dir())?;
                git.run(["update-ref", "-d", reference])?;
                freed.archives_expired += 1;
            }
            Action::RemoveTrash { path } => {
                freed.bytes += size_of(path);
                match std::fs::remove_dir_all(path) {
                    Ok(()) => {}
                    // Its own deletion got there first.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io_path("remove", path, e)),
                }
            }
        }
    }
    if !orphan_branches.is_empty() {
        let _guard = acquire_repo(&repo.pipeline_dir())?;
        let listed = git.run(
            std::iter::once("for-each-ref".to_owned())
                .chain(["--format=%(refname)".to_owned()])
                .chain(orphan_branches.iter().cloned()),
        )?;
        let existing: Vec<&str> = std::str::from_utf8(&listed)
            .unwrap_or_default()
            .lines()
            .filter(|r| orphan_branches.iter().any(|b| b == r))
            .collect();
        if !existing.is_empty() {
            let script: String = existing.iter().map(|r| format!("delete {r}\n")).collect();
            git.run_opts(
                ["update-ref", "--stdin"],
                crate::git::Opts {
                    stdin: Some(script.as_bytes()),
                    ..Default::default()
                },
            )?;
            freed.branches += existing.len();
        }
    }
    Ok(freed)
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
