//! `git pipeline resume RUN`, `git pipeline abandon RUN`, `git pipeline clean`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::emit;
use crate::cleanup;
use crate::cleanup::Action;
use crate::cleanup::CleanOptions;
use crate::cli::CleanCmd;
use crate::cli::RunRef;
use crate::config::Config;
use crate::config::PROJECT_FILE;
use crate::error::Error;
use crate::error::Exit;
use crate::error::Result;
use crate::git::Repo;
use crate::git::objects;
use crate::redact::Redactor;
use crate::store::Store;
use crate::store::record::Status;
use crate::ui::Ui;

pub fn resume(cmd: RunRef, cwd: &Path, out: &mut dyn Write, ui: &Ui) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let store = Store::new(&repo.pipeline_dir());
    let dir = store.find(&cmd.run, Arc::new(Redactor::default()))?;
    if crate::bundle::record::is_bundle(&dir.path) {
        return super::bundle::resume(dir, cwd, out, ui, cmd.json);
    }
    refuse_candidate(&dir, "resume")?;
    let (plan, dir, rec, lock) = crate::run::resume::reopen(cwd, dir, ui)?;
    let plan = &plan;
    let outcome = super::interruptible(|cancel| async move {
        crate::run::resume::resume(
            plan,
            ui,
            dir,
            rec,
            lock,
            cancel,
            &crate::fanout::threads::Threads,
        )
        .await
    })?;
    super::run::conclude(plan, &outcome, out, ui, cmd.json)
}

pub fn abandon(cmd: RunRef, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let store = Store::new(&repo.pipeline_dir());
    let dir = store.find(&cmd.run, Arc::new(Redactor::default()))?;
    if crate::bundle::record::is_bundle(&dir.path) {
        return super::bundle::abandon(dir, cwd, out, cmd.json);
    }
    refuse_candidate(&dir, "abandon")?;
    let _lock = dir.lock()?;
    let rec = dir.read_record()?;
    if rec.status == Status::Abandoned {
        return Err(Error::usage(format!(
            "run {} is already abandoned",
            rec.run_id
        )));
    }
    // A best-of-N run goes down with its candidates, each archived first.
    let mut family = Vec::new();
    for c in &rec.candidates {
        let cdir = store.find(&c.run_id, Arc::new(Redactor::default()))?;
        let _clock = cdir.lock()?;
        let crec = cdir.read_record()?;
        if cdir.effective_status(&crec).is_final() {
            continue;
        }
        let why = format!("its best-of-N run {} was abandoned by the user", rec.run_id);
        family.push(crate::run::abandon::abandon(&repo, &cdir, crec, &why)?);
    }
    let rec = crate::run::abandon::abandon(&repo, &dir, rec, "abandoned by the user")?;
    if cmd.json {
        emit(
            out,
            &format!(
                "{}\n",
                serde_json::to_string_pretty(&rec).unwrap_or_default()
            ),
        )?;
    } else {
        let mut t = format!("abandoned run {}", rec.run_id);
        match &rec.archive {
            Some(a) => t.push_str(&format!("; its work is saved at {a}\n")),
            None if family.is_empty() => t.push_str("; it had changed nothing\n"),
            None => t.push('\n'),
        }
        for c in &family {
            let index = c.candidate_of.as_ref().map_or(0, |r| r.index);
            match &c.archive {
                Some(a) => t.push_str(&format!(
                    "abandoned its candidate {index} (run {}); its work is saved at {a}\n",
                    c.run_id
                )),
                None => t.push_str(&format!(
                    "abandoned its candidate {index} (run {}); it had changed nothing\n",
                    c.run_id
                )),
            }
        }
        emit(out, &t)?;
    }
    Ok(Exit::Success)
}

/// A best-of-N candidate is resumed and abandoned only through its parent: on its own it would
/// ship without being compared, or leave the parent waiting for it.
fn refuse_candidate(dir: &crate::store::RunDir, verb: &str) -> Result<()> {
    let rec = dir.read_record()?;
    match &rec.candidate_of {
        Some(c) => Err(Error::usage_hint(
            format!(
                "run {} is candidate {} of best-of-N run {}: a candidate is {verb}d only through its run",
                rec.run_id, c.index, c.parent
            ),
            format!("git pipeline {verb} {}", c.parent),
        )),
        None => Ok(()),
    }
}

pub fn clean(cmd: CleanCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let store = Store::new(&repo.pipeline_dir());
    let older_than = crate::config::parse_duration(&cmd.older_than)
        .map_err(|e| Error::usage(format!("--older-than: {e}")))?;
    // Where our worktrees live and how our branches are named: the config at HEAD, if any.
    let config: Option<Config> = objects::resolve_commit(&repo.git(), "HEAD")?
        .and_then(|head| {
            objects::read_blob(&repo.git(), &head, PROJECT_FILE)
                .ok()
                .flatten()
        })
        .and_then(|b| toml::from_str(&String::from_utf8_lossy(&b)).ok());
    let run_cfg = config.map(|c| c.run).unwrap_or_default();
    let root = crate::plan::worktree_root(&repo, &run_cfg.worktree_root)?;
    let caches = match objects::resolve_commit(&repo.git(), "HEAD")? {
        Some(head) => {
            let tree = objects::tree_of(&repo.git(), &head)?;
            crate::plan::caches::caches(&repo.git(), &tree, run_cfg.caches.as_deref())?
        }
        None => Vec::new(),
    };
    let opts = CleanOptions {
        older_than,
        all_interrupted: cmd.all,
        worktree_root: root,
        branch_prefix: run_cfg.branch_prefix,
        archive_days: run_cfg.archive_days,
        slots: cmd.slots,
        caches,
    };
    let plan = cleanup::plan(&repo, &store, &opts)?;
    let freed = if cmd.dry_run {
        None
    } else {
        Some(cleanup::apply(&repo, &store, &plan)?)
    };
    if cmd.json {
        let v = serde_json::json!({
            "dry_run": cmd.dry_run,
            "actions": plan.actions,
            "kept": plan.kept,
            "freed": freed,
        });
        emit(
            out,
            &format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()),
        )?;
        let failed = freed.as_ref().is_some_and(|f| !f.failed.is_empty());
        return Ok(if failed {
            Exit::StageFailure
        } else {
            Exit::Success
        });
    }
    let mut t = String::new();
    let verb = if cmd.dry_run { "would" } else { "did" };
    if plan.actions.is_empty() {
        t.push_str("nothing to clean\n");
    } else {
        t.push_str(&format!(
            "{} ({verb}):\n",
            if cmd.dry_run {
                "clean --dry-run"
            } else {
                "clean"
            }
        ));
        for a in &plan.actions {
            t.push_str(&format!("  {}\n", describe(a)));
        }
    }
    for k in &plan.kept {
        t.push_str(&format!("  kept {}: {}\n", k.what, k.why));
    }
    if let Some(f) = freed {
        t.push_str(&format!(
            "freed {} worktree(s) ({:.1} MB), {} branch(es), {} archive(s); abandoned {} interrupted run(s)\n",
            f.worktrees,
            f.bytes as f64 / 1_000_000.0,
            f.branches,
            f.archives_expired,
            f.runs_abandoned
        ));
        for failed in &f.failed {
            t.push_str(&format!("  not done: {failed}\n"));
        }
        emit(out, &t)?;
        if !f.failed.is_empty() {
            return Ok(Exit::StageFailure);
        }
        return Ok(Exit::Success);
    }
    emit(out, &t)?;
    Ok(Exit::Success)
}

fn describe(a: &Action) -> String {
    match a {
        Action::AbandonRun { run_id, why } => {
            format!(
                "abandon run {run_id} ({why}): archive its work, remove its worktree and branch"
            )
        }
        Action::RemoveWorktree { run_id, path } => {
            format!("remove the worktree {} of run {run_id}", path.display())
        }
        Action::DeleteBranch {
            run_id,
            branch,
            why,
        } => {
            format!("delete branch {branch} of run {run_id} ({why})")
        }
        Action::RemoveOrphanWorktree { run_id, path, .. } => format!(
            "remove the worktree {} of run {run_id}, whose record is gone (its work is archived first)",
            path.display()
        ),
        Action::ExpireArchive {
            reference,
            age_days,
        } => {
            format!("delete {reference} ({age_days} days old)")
        }
        Action::RemoveTrash { path } => format!(
            "finish deleting {}, a removed worktree's files",
            path.display()
        ),
        Action::RemoveSlot {
            number,
            path,
            bytes,
        } => format!(
            "remove worktree slot {number} ({}, {:.1} MB with its build caches)",
            path.display(),
            *bytes as f64 / 1_000_000.0
        ),
    }
}
