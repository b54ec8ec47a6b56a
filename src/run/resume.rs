//! Resume: an interrupted run (Ctrl-C, or a process killed outright) continues where it stopped.
//! Its record says how far it got: the spec and the approved plan are kept, the worktree with its
//! partial changes is reused (or made again from the run's branch and refilled from the last
//! snapshot when its folder is gone), and the execution loop enters at its last checkpoint.

use std::path::Path;

use serde_json::json;

use crate::error::Error;
use crate::error::Result;
use crate::plan::RunPlan;
use crate::policy::manifest::Manifest;
use crate::run::outcome::Ending;
use crate::run::outcome::Outcome;
use crate::run::state::Run;
use crate::safety::process::Cancel;
use crate::store::EventKind;
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
    plan.policy
        .trust
        .require(&plan.policy.loaded, &plan.target.base_ref)?;
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
    // The commit was made and the worktree already put away (the process stopped, or the note
    // failed, after that): only the attestation is left, which needs no worktree.
    let put_away = run.log.rec.worktree.is_none() && run.committed_on_its_branch()?;
    match run.slot_in_record() {
        _ if put_away => {}
        // Its own slot, which it left when it stopped.
        Some(n) => run.retake_slot(n)?,
        // Stopped before its worktree was made: it takes a slot as a new run does.
        None if run.log.rec.worktree.is_none() => run.take_slot()?,
        None => {
            run.ws.slot = Some(crate::store::lock::acquire_slot_from(
                &plan.target.repo.pipeline_dir(),
                plan.landing.max_slots,
            )?);
        }
    }
    run.log.rec.status = Status::Running;
    run.log.rec.reason = None;
    run.log.rec.error = None;
    run.log.rec.exit_code = None;
    run.log.rec.ended_at = None;
    run.save()?;
    run.log.dir.event(
        None,
        EventKind::Resumed,
        json!({"checkpoint": run.log.rec.resume.checkpoint, "worktree": run.log.rec.worktree}),
    )?;
    ui.info(format!(
        "resuming run {} ({})",
        run.log.dir.id,
        match &run.log.rec.resume.checkpoint {
            Some(c) => c.describe(),
            None => "from the start".to_owned(),
        }
    ));
    let ending = match if put_away { Ok(()) } else { run.reattach() } {
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

impl<'a> Run<'a> {
    /// Whether the record's checkpoint is the commit made and the run's branch still points at
    /// it.
    fn committed_on_its_branch(&self) -> Result<bool> {
        let Some(crate::store::record::Checkpoint::Committed { commit, .. }) =
            &self.log.rec.resume.checkpoint
        else {
            return Ok(false);
        };
        let Some(branch) = &self.ws.branch else {
            return Ok(false);
        };
        let tip = crate::git::objects::ref_value(&self.ws.repo, &branch.full())?;
        Ok(tip.as_deref() == Some(commit.as_str()))
    }

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
            run.ws.worktree = w.clone();
        }
        run.ws.last_tree = rec.resume.snapshot_tree.clone();
        run.plan_session = rec.resume.sessions.plan.clone();
        run.exec_session = rec.resume.sessions.execution.clone();
        run.verify_session = rec.resume.sessions.verification.clone();
        run.docs_session = rec.resume.sessions.docs.clone();
        run.breakers
            .restore(&rec.resume.error_counts, &rec.resume.attempt_trees);
        run.log.rec = rec;
        run.load_artifacts()?;
        Ok(run)
    }

    /// The discovery findings, the approved plan and its manifest (the scope) that the record's
    /// artifacts hold.
    pub fn load_artifacts(&mut self) -> Result<()> {
        let read = |name: &str| -> Option<String> {
            self.log
                .rec
                .artifacts
                .get(name)
                .and_then(|p| std::fs::read_to_string(self.log.dir.path.join(p)).ok())
        };
        self.spec = read("spec");
        if let Some(m) = read("manifest") {
            let m: Manifest = serde_json::from_str(&m)
                .map_err(|e| Error::other(format!("the kept manifest is unreadable: {e}")))?;
            self.scope = if self.plan.policy.user_scope {
                self.scope.clone().with_deny(&m.do_not_touch)
            } else {
                m.scope(&self.plan.policy.deny)
            }
            .map_err(|e| Error::other(e.to_string()))?;
            self.plan_text = read("plan");
        }
        self.log.rec.scope = self.scope.record();
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
                self.log.dir.artifact(rel, &bytes)?;
                self.log.rec.artifacts.insert(name.clone(), rel.clone());
            }
        }
        self.load_artifacts()
    }
}
