//! Resume: an interrupted run (Ctrl-C, or a process killed outright) continues where it stopped.
//! Its record says how far it got: the spec and the approved plan are kept, the worktree with its
//! partial changes is reused (or made again from the run's branch and refilled from the last
//! snapshot when its folder is gone), and the execution loop enters at its last checkpoint.

use std::path::Path;

use serde_json::json;

use crate::error::Error;
use crate::error::Result;
use crate::git::objects;
use crate::git::snapshot::Snapshotter;
use crate::git::worktree;
use crate::plan::RunPlan;
use crate::policy::manifest::Manifest;
use crate::policy::scope::Scope;
use crate::run::outcome::Ending;
use crate::run::outcome::Outcome;
use crate::run::stages::rollback;
use crate::run::state::Run;
use crate::safety::process::Cancel;
use crate::store::RunDir;
use crate::store::lock::RunLock;
use crate::store::record::RunRecord;
use crate::store::record::Status;
use crate::ui::Ui;

/// Get an interrupted run ready to continue: its lock taken (a live run cannot be resumed, nor
/// resumed twice at once), the processes it left running stopped, its plan made again from its
/// record, and its config trusted.
pub fn reopen(cwd: &Path, dir: RunDir, ui: &Ui) -> Result<(RunPlan, RunDir, RunRecord, RunLock)> {
    let lock = dir.lock()?;
    let rec = dir.read_record()?;
    if rec.status.is_final() {
        return Err(Error::usage_hint(
            format!(
                "run {} already ended ({}); nothing to resume",
                rec.run_id,
                rec.status.name()
            ),
            "start a new run with git pipeline run",
        ));
    }
    let leftovers = crate::safety::process::run_processes(&dir.path, rec.worktree.as_deref());
    if !leftovers.is_empty() {
        ui.warn(format!(
            "stopping {} process(es) the interrupted run left running: {:?}",
            leftovers.len(),
            leftovers
        ));
        crate::safety::process::stop_pids(&leftovers);
    }
    let plan = RunPlan::for_resume(cwd, &rec)?;
    plan.trust.require(&plan.loaded, &plan.base_ref)?;
    let dir = dir
        .with_redactor(std::sync::Arc::new(crate::run::redactor_for(&plan)))
        .with_workstream(rec.bundle.as_ref().map(|b| b.workstream.clone()));
    Ok((plan, dir, rec, lock))
}

/// Continue `rec` (its lock is held by the caller, and its leftover processes are stopped).
pub async fn resume(
    plan: &RunPlan,
    ui: &Ui,
    dir: RunDir,
    rec: RunRecord,
    lock: RunLock,
    mut cancel: Cancel,
    launch: &dyn crate::run::launch::Launch,
) -> Result<Outcome> {
    let mut run = Run::from_record(plan, ui, dir, rec, launch)?;
    run.slot = Some(crate::store::lock::acquire_slot(&plan.repo.pipeline_dir())?);
    run.rec.status = Status::Running;
    run.rec.reason = None;
    run.rec.error = None;
    run.rec.exit_code = None;
    run.rec.ended_at = None;
    run.save()?;
    run.dir.event(
        None,
        "resumed",
        json!({"checkpoint": run.rec.resume.checkpoint, "worktree": run.rec.worktree}),
    )?;
    ui.info(format!(
        "resuming run {} ({})",
        run.dir.id,
        match &run.rec.resume.checkpoint {
            Some(c) => c.describe(),
            None => "from the start".to_owned(),
        }
    ));
    let ending = match run.reattach() {
        Ok(()) => {
            let driven = run.drive(&mut cancel).await;
            run.ending_of(driven, &cancel)
        }
        Err(_) if cancel.is_cancelled() => Ending::Interrupted,
        Err(e) => Ending::Failed {
            reason: crate::store::record::Reason::SetupFailed,
            message: format!("could not bring back the worktree: {e}"),
            details: e.hint().map(str::to_owned).into_iter().collect(),
        },
    };
    run.finish(ending)?;
    drop(lock);
    Ok(run.into_outcome())
}

impl Run<'_> {
    /// Make the worktree usable again: reuse it when it is there, otherwise check the run's
    /// branch out again (never with `-B`) and refill it from the last snapshot. A setup that
    /// never completed is simply done again.
    fn reattach(&mut self) -> Result<()> {
        let replaced = std::fs::symlink_metadata(&self.worktree)
            .is_ok_and(|m| m.file_type().is_symlink())
            || (self.worktree.exists()
                && !worktree::is_the_same_folder(&self.worktree, self.rec.worktree_identity));
        if replaced {
            return Err(Error::usage_hint(
                format!(
                    "run {}'s worktree {} was replaced (moved away, or a symlink or another folder put in its place): git-pipeline will not enter it",
                    self.dir.id,
                    self.worktree.display()
                ),
                format!(
                    "look at it yourself; `git pipeline abandon {}` archives the run's branch and leaves that path alone",
                    self.dir.id
                ),
            ));
        }
        self.clear_stale_git_locks();
        let registered = worktree::list(&self.repo)?
            .into_iter()
            .any(|e| worktree::same_path(&e.path, &self.worktree));
        if self.rec.worktree.is_none() {
            // Stopped during setup: nothing an agent made is in there yet.
            if registered || self.worktree.exists() {
                rollback::discard(&self.repo, &self.worktree, &self.branch)?;
            }
            if self.worktree.exists() {
                std::fs::remove_dir_all(&self.worktree)
                    .map_err(|e| Error::io_path("remove", &self.worktree, e))?;
            }
            return self.setup();
        }
        let reason = format!("git-pipeline run {} in progress", self.dir.id);
        if registered && self.worktree.join(".git").exists() {
            worktree::lock(&self.repo, &self.worktree, &reason)?;
        } else {
            if registered {
                // Its folder was deleted by hand: let git forget it first.
                worktree::remove(&self.repo, &self.worktree)?;
            }
            let branch_exists = !self.branch.is_empty()
                && objects::ref_value(&self.repo, &format!("refs/heads/{}", self.branch))?
                    .is_some();
            let (checkout, _) = self.plan.checkout();
            let _guard = crate::store::lock::acquire_repo(&self.plan.repo.pipeline_dir())?;
            if branch_exists {
                worktree::add_existing(&self.repo, &self.worktree, &self.branch, &reason)?;
            } else {
                let branch = (!self.branch.is_empty()).then_some(self.branch.as_str());
                worktree::add(&self.repo, &self.worktree, branch, checkout, &reason)?;
            }
            if let Some(tree) = &self.rec.resume.snapshot_tree {
                // Bring back the work the lost folder held.
                worktree::fill_from_tree(&self.worktree, tree)?;
            }
            self.ui.step(format!(
                "resume: the worktree was gone; made it again at {}",
                self.worktree.display()
            ));
        }
        let wt_paths = worktree::paths(&self.worktree)?;
        self.snap = Some(Snapshotter::new(
            &self.worktree,
            &wt_paths.git_dir,
            self.dir.scratch("index")?,
        ));
        self.arm_guard(&wt_paths.git_dir)?;
        self.watch_worktree()?;
        self.rec.worktree = Some(self.worktree.clone());
        self.rec.worktree_identity = worktree::identity(&self.worktree);
        self.save()
    }

    /// Lock files a killed git leaves behind, in what belongs to this run only.
    fn clear_stale_git_locks(&self) {
        let mut candidates = vec![
            self.dir.path.join("tmp/index.lock"),
            self.plan
                .repo
                .common_dir
                .join("worktrees")
                .join(&self.dir.id)
                .join("index.lock"),
        ];
        if !self.branch.is_empty() {
            candidates.push(
                self.plan
                    .repo
                    .common_dir
                    .join(format!("refs/heads/{}.lock", self.branch)),
            );
        }
        for path in candidates {
            if path.exists() && std::fs::remove_file(&path).is_ok() {
                self.ui
                    .step(format!("resume: removed a stale lock {}", path.display()));
            }
        }
    }
}

impl<'a> Run<'a> {
    /// The run as its record left it.
    pub fn from_record(
        plan: &'a RunPlan,
        ui: &'a Ui,
        dir: RunDir,
        rec: RunRecord,
        launch: &'a dyn crate::run::launch::Launch,
    ) -> Result<Run<'a>> {
        let mut run = Run::new(plan, ui, dir, launch);
        if let Some(w) = &rec.worktree {
            run.worktree = w.clone();
        }
        run.last_tree = rec.resume.snapshot_tree.clone();
        run.plan_session = rec.resume.sessions.plan.clone();
        run.exec_session = rec.resume.sessions.execution.clone();
        run.verify_session = rec.resume.sessions.verification.clone();
        run.docs_session = rec.resume.sessions.docs.clone();
        run.breakers
            .restore(&rec.resume.error_counts, &rec.resume.attempt_trees);
        run.rec = rec;
        run.load_artifacts()?;
        Ok(run)
    }

    /// The discovery findings, the approved plan and its manifest (the scope) that the record's
    /// artifacts hold.
    pub fn load_artifacts(&mut self) -> Result<()> {
        let read = |name: &str| -> Option<String> {
            self.rec
                .artifacts
                .get(name)
                .and_then(|p| std::fs::read_to_string(self.dir.path.join(p)).ok())
        };
        self.spec = read("spec");
        if let Some(m) = read("manifest") {
            let m: Manifest = serde_json::from_str(&m)
                .map_err(|e| Error::other(format!("the kept manifest is unreadable: {e}")))?;
            self.scope = if self.plan.user_scope {
                self.scope.clone().with_deny(&m.do_not_touch)
            } else {
                Scope::from_manifest(&m, &self.plan.deny)
            }
            .map_err(|e| Error::other(e.to_string()))?;
            self.plan_text = read("plan");
        }
        self.rec.scope = self.scope.record();
        Ok(())
    }

    /// A candidate of a best-of-N run starts with what its parent's discovery and planning
    /// produced: the files are copied into its own record, so that it also resumes alone.
    pub fn inherit(
        &mut self,
        parent_dir: &Path,
        artifacts: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        for (name, rel) in artifacts {
            let from = parent_dir.join(rel);
            if let Ok(bytes) = std::fs::read(&from) {
                self.dir.artifact(rel, &bytes)?;
                self.rec.artifacts.insert(name.clone(), rel.clone());
            }
        }
        self.load_artifacts()
    }
}
