//! The bundle scheduler. Every workstream is a full pipeline run (its own worktree, branch,
//! scope, gates, verifier and record), driven on a thread of its own so that runs progress in
//! parallel, up to `--jobs` at once. A workstream becomes ready when all its dependencies
//! shipped; it starts from their merged results. A shipped result is merged onto the
//! integration branch at once; a failure or a conflict blocks everything downstream, and the
//! rest goes on.
//!
//! The bundle's record is saved at every change of state, and each workstream's run keeps its
//! own, so a bundle killed at any point resumes: finished workstreams are skipped, interrupted
//! ones resumed, the others started.

use crate::bundle::validate::{Checked, check};
use crate::git::Oid;
use crate::store::EventKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tokio::sync::mpsc;

use crate::bundle::dag::Graph;
use crate::bundle::integrate;
use crate::bundle::integrate::Integrated;
use crate::bundle::record;
use crate::bundle::record::BUNDLE_INPUT;
use crate::bundle::record::BundleRecord;
use crate::bundle::record::BundleStatus;
use crate::bundle::record::WsRecord;
use crate::bundle::record::WsState;
use crate::bundle::spec::Bundle;
use crate::config::LoadedConfig;
use crate::error::Error;
use crate::error::Result;
use crate::fanout::threads;
use crate::git::Git;
use crate::git::Repo;
use crate::git::objects;
use crate::plan::RunArgs;
use crate::plan::RunPlan;
use crate::plan::TrustState;
use crate::redact::Redactor;
use crate::run::launch::Work;
use crate::run::outcome::Outcome;
use crate::safety::process::Cancel;
use crate::store::RunDir;
use crate::store::Store;
use crate::store::record::BundleRef;
use crate::store::record::Reason;
use crate::store::record::Status;
use crate::ui::Ui;

/// Everything a bundle run needs, checked before anything is created.
pub struct BundlePlan {
    pub repo: Repo,
    pub bundle: Bundle,
    pub graph: Graph,
    pub base: Oid,
    pub base_ref: String,
    pub loaded: LoadedConfig,
    pub trust: TrustState,
    /// What the bundle was read from, for messages and the record.
    pub source: String,
    pub jobs: usize,
    /// The run arguments every workstream shares (agents, keep).
    pub shared: RunArgs,
    pub branch_prefix: String,
    /// The run whose planner wrote the bundle.
    pub parent_run: Option<String>,
    /// The first workstream's plan, made in full: the others are derived from it.
    pub sample: RunPlan,
}

impl BundlePlan {
    pub fn prepare(
        cwd: &Path,
        path: &Path,
        base: Option<&str>,
        jobs: usize,
        shared: RunArgs,
    ) -> Result<BundlePlan> {
        let repo = Repo::discover(cwd)?;
        let (base, base_ref, loaded) = crate::plan::base_and_config(&repo, base)?;
        let checked = check(path, Some((&repo, &base, &loaded)))?;
        BundlePlan::from_checked(
            repo,
            checked,
            path.display().to_string(),
            base,
            base_ref,
            loaded,
            jobs,
            shared,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn from_checked(
        repo: Repo,
        checked: Checked,
        source: String,
        base: Oid,
        base_ref: String,
        loaded: LoadedConfig,
        jobs: usize,
        shared: RunArgs,
    ) -> Result<BundlePlan> {
        if jobs == 0 {
            return Err(Error::usage("--jobs must be at least 1"));
        }
        // One workstream's plan made in full checks what every run needs (agents installed,
        // prompt templates, git identity, Git LFS, trust) before anything is created.
        let sample = RunPlan::for_workstream(
            repo.clone(),
            loaded.clone(),
            &checked.bundle.workstreams[0],
            base.clone(),
            base_ref.clone(),
            &shared,
        )?;
        Ok(BundlePlan {
            trust: sample.policy.trust.clone(),
            branch_prefix: sample.landing.branch_prefix.clone(),
            sample,
            repo,
            bundle: checked.bundle,
            graph: checked.graph,
            base,
            base_ref,
            loaded,
            source,
            jobs,
            shared,
            parent_run: None,
        })
    }

    pub fn integration_branch(&self, bundle_id: &str) -> String {
        format!("{}{bundle_id}/integration", self.branch_prefix)
    }
}

/// How a workstream's thread ended.
type Done = (usize, Result<Outcome>);

struct Driver<'a> {
    plan: &'a BundlePlan,
    ui: &'a Ui,
    dir: RunDir,
    rec: BundleRecord,
    git: Git,
    started: Instant,
    running: usize,
    tx: mpsc::UnboundedSender<Done>,
    rx: mpsc::UnboundedReceiver<Done>,
}

/// Run a bundle from the start. Errors returned here happened before the bundle existed.
pub async fn run(plan: &BundlePlan, ui: &Ui, cancel: Cancel) -> Result<BundleRecord> {
    let store = Store::new(&plan.repo.pipeline_dir());
    let dir = store.create_run(Arc::new(bundle_redactor(plan)))?;
    let lock = dir.lock()?;
    let integration = plan.integration_branch(&dir.id);
    let rec = BundleRecord {
        version: 1,
        kind: "bundle".to_owned(),
        bundle_id: dir.id.clone(),
        source: plan.source.clone(),
        status: BundleStatus::Running,
        exit_code: None,
        base: plan.base.clone(),
        base_ref: plan.base_ref.clone(),
        integration_branch: integration.clone(),
        integration_commit: None,
        jobs: plan.jobs,
        workstreams: plan
            .bundle
            .workstreams
            .iter()
            .map(|w| WsRecord {
                id: w.id.clone(),
                task: w.task.clone(),
                depends_on: w.depends_on.clone(),
                state: WsState::Pending,
                run_id: None,
                base: None,
                branch: None,
                commit: None,
                reason: None,
                error: None,
                blocked_by: None,
                conflicts: Vec::new(),
                integrated: false,
                tokens: 0,
                cost_usd: None,
            })
            .collect(),
        created_at: crate::ids::now_rfc3339(),
        ended_at: None,
        total_time_s: 0.0,
        agents: plan.shared.agents.clone(),
        keep: plan.shared.keep,
        risk: plan.shared.risk,
        stage: plan.shared.stage.map(|s| s.name().to_owned()),
        parent_run: plan.parent_run.clone(),
    };
    let input = serde_json::to_vec_pretty(&plan.bundle)
        .map_err(|e| Error::other(format!("cannot encode the bundle: {e}")))?;
    dir.artifact(BUNDLE_INPUT, &input)?;
    {
        let _guard = crate::store::lock::acquire_repo(&plan.repo.pipeline_dir())?;
        objects::update_ref(
            &plan.repo.git(),
            &crate::git::refs::heads(&integration),
            &plan.base,
            None,
            &format!("git-pipeline: bundle {} starts", dir.id),
        )?;
    }
    if let Some(parent) = &plan.parent_run {
        link_parent(&store, parent, &dir.id)?;
    }
    let mut d = Driver::new(plan, ui, dir, rec);
    d.save()?;
    d.dir.event(
        None,
        EventKind::BundleStarted,
        json!({
            "source": plan.source,
            "base": plan.base,
            "workstreams": plan.bundle.workstreams.len(),
            "jobs": plan.jobs,
            "integration_branch": integration,
        }),
    )?;
    let levels = plan.graph.levels();
    ui.info(format!(
        "bundle {}: {} workstream{} in {} level{}, up to {} at once; results merge onto {integration}",
        d.rec.bundle_id,
        plan.bundle.workstreams.len(),
        plural(plan.bundle.workstreams.len()),
        levels.len(),
        plural(levels.len()),
        plan.jobs.min(levels.iter().map(Vec::len).max().unwrap_or(1)),
    ));
    let rec = d.drive(cancel).await?;
    drop(lock);
    Ok(rec)
}

/// Continue an interrupted bundle: finished workstreams are skipped, interrupted runs resumed,
/// shipped results not yet merged are merged, and the rest is scheduled as usual.
pub async fn resume(
    plan: &BundlePlan,
    ui: &Ui,
    dir: RunDir,
    rec: BundleRecord,
    cancel: Cancel,
) -> Result<BundleRecord> {
    let lock = dir.lock()?;
    let mut d = Driver::new(plan, ui, dir, rec);
    d.rec.status = BundleStatus::Running;
    d.rec.exit_code = None;
    d.rec.ended_at = None;
    d.dir.event(None, EventKind::Resumed, json!({}))?;
    ui.info(format!(
        "resuming bundle {} ({})",
        d.rec.bundle_id,
        d.rec.counts()
    ));
    let store = Store::new(&plan.repo.pipeline_dir());
    let mut to_resume = Vec::new();
    for i in 0..d.rec.workstreams.len() {
        let w = &d.rec.workstreams[i];
        if !matches!(w.state, WsState::Running | WsState::Interrupted) {
            continue;
        }
        let Some(run_id) = w.run_id.clone() else {
            d.rec.workstreams[i].state = WsState::Pending;
            continue;
        };
        let run_dir = match store.find(&run_id, Default::default()) {
            Ok(r) if r.record_path().exists() => r,
            // Killed between making the run's folder and writing its record: start it afresh.
            _ => {
                d.rec.workstreams[i].state = WsState::Pending;
                d.rec.workstreams[i].run_id = None;
                continue;
            }
        };
        let run_rec = run_dir.read_record()?;
        match run_dir.effective_status(&run_rec) {
            Status::Succeeded => d.shipped(i, &run_rec)?,
            Status::Failed | Status::Abandoned => d.failed(i, &run_rec),
            Status::Running | Status::Pending => {
                return Err(Error::usage(format!(
                    "workstream {} (run {run_id}) is still running",
                    d.rec.workstreams[i].id
                )));
            }
            Status::Interrupted => to_resume.push((i, run_dir)),
        }
    }
    // Shipped before the crash but not merged yet.
    for i in 0..d.rec.workstreams.len() {
        let w = &d.rec.workstreams[i];
        if w.state == WsState::Succeeded && !w.integrated {
            d.integrate(i)?;
        }
    }
    d.save()?;
    let cwd = plan
        .repo
        .work_tree
        .clone()
        .or_else(|| plan.repo.main_worktree.clone())
        .unwrap_or_else(|| plan.repo.common_dir.clone());
    for (i, run_dir) in to_resume {
        let work = Work::Resume {
            cwd: cwd.clone(),
            dir: run_dir,
            judge: None,
        };
        d.spawn(i, work, &cancel)?;
    }
    let rec = d.drive(cancel).await?;
    drop(lock);
    Ok(rec)
}

/// The run whose plan made this bundle says so in its record.
fn link_parent(store: &Store, parent: &str, bundle_id: &str) -> Result<()> {
    let dir = store.find(parent, Default::default())?;
    let _lock = dir.lock()?;
    let mut rec = dir.read_record()?;
    rec.split_into = Some(bundle_id.to_owned());
    dir.write_record(&rec)
}

pub fn bundle_redactor(plan: &BundlePlan) -> Redactor {
    let mut extra: Vec<(&str, &str)> = Vec::new();
    for entry in plan.loaded.config.agents.values() {
        for spec in &entry.0 {
            extra.extend(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
    }
    Redactor::from_env(extra)
}

impl<'a> Driver<'a> {
    fn new(plan: &'a BundlePlan, ui: &'a Ui, dir: RunDir, rec: BundleRecord) -> Driver<'a> {
        let (tx, rx) = mpsc::unbounded_channel();
        Driver {
            git: plan.repo.git(),
            plan,
            ui,
            dir,
            rec,
            started: Instant::now(),
            running: 0,
            tx,
            rx,
        }
    }

    fn save(&mut self) -> Result<()> {
        self.dir.write_json(record::BUNDLE_RECORD, &self.rec)?;
        self.ui.board_summary(format!(
            "bundle {}/{} done: {}",
            self.rec.counts().succeeded,
            self.rec.workstreams.len(),
            self.rec.counts()
        ));
        Ok(())
    }

    /// Launch what is ready, take what finishes, until nothing runs and nothing can start.
    async fn drive(&mut self, cancel: Cancel) -> Result<BundleRecord> {
        self.ui.board_begin();
        let result = self.schedule(&cancel).await;
        self.ui.board_end();
        result?;
        self.finish(cancel.is_cancelled())?;
        Ok(self.rec.clone())
    }

    async fn schedule(&mut self, cancel: &Cancel) -> Result<()> {
        loop {
            while !cancel.is_cancelled() && self.running < self.plan.jobs {
                let Some(i) = self.next_ready() else {
                    break;
                };
                self.launch(i, cancel)?;
            }
            if self.running == 0 {
                return Ok(());
            }
            let Some((i, result)) = self.rx.recv().await else {
                return Err(Error::other("a workstream thread vanished"));
            };
            self.running -= 1;
            self.ui.lane_done(&self.rec.workstreams[i].id);
            self.settle(i, result)?;
            self.save()?;
        }
    }

    /// The first pending workstream (in the bundle's order) whose dependencies all shipped.
    fn next_ready(&self) -> Option<usize> {
        (0..self.rec.workstreams.len()).find(|&i| {
            self.rec.workstreams[i].state == WsState::Pending
                && self.plan.graph.deps[i]
                    .iter()
                    .all(|&d| self.rec.workstreams[d].state == WsState::Succeeded)
        })
    }

    fn launch(&mut self, i: usize, cancel: &Cancel) -> Result<()> {
        let ws = self.plan.bundle.workstreams[i].clone();
        let deps: Vec<(String, Oid)> = self.plan.graph.deps[i]
            .iter()
            .map(|&d| {
                let w = &self.rec.workstreams[d];
                // The scheduler starts a workstream only after its dependencies shipped.
                let commit = w.commit.clone().ok_or_else(|| {
                    Error::other(format!(
                        "workstream {} depends on {}, which has no commit",
                        ws.id, w.id
                    ))
                })?;
                Ok((w.id.clone(), commit))
            })
            .collect::<Result<_>>()?;
        let base = match integrate::base_for(&self.git, &self.plan.base, &deps)? {
            Ok(b) => b,
            Err(paths) => {
                let names: Vec<&str> = deps.iter().map(|(id, _)| id.as_str()).collect();
                self.block(
                    i,
                    None,
                    format!(
                        "the results of {} conflict in {}",
                        names.join(" and "),
                        list_paths(&paths)
                    ),
                    paths,
                );
                return self.save();
            }
        };
        let base_ref = if deps.is_empty() {
            self.plan.base_ref.clone()
        } else {
            format!(
                "{} + {}",
                self.plan.base_ref,
                deps.iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let shared = RunArgs {
            bundle: Some(BundleRef {
                id: self.rec.bundle_id.clone(),
                workstream: ws.id.clone(),
            }),
            ..self.plan.shared.clone()
        };
        let run_plan =
            match self
                .plan
                .sample
                .derive_workstream(&ws, base.clone(), base_ref, &shared)
            {
                Ok(p) => p,
                Err(e) => {
                    let w = &mut self.rec.workstreams[i];
                    w.state = WsState::Failed;
                    w.reason = Some(Reason::SetupFailed);
                    w.error = Some(e.to_string());
                    self.ui
                        .step(format!("{}: FAIL (could not plan it: {e})", ws.id));
                    self.block_downstream(i);
                    return self.save();
                }
            };
        let run_dir = crate::run::create_run_dir(&run_plan)?;
        {
            let w = &mut self.rec.workstreams[i];
            w.state = WsState::Running;
            w.run_id = Some(run_dir.id.clone());
            w.base = Some(base.clone());
            w.branch = Some(format!("{}{}", run_plan.landing.branch_prefix, run_dir.id));
        }
        // Recorded before the run starts: after a crash, resume finds it by this id.
        self.save()?;
        self.dir.event_of(
            Some(&ws.id),
            None,
            EventKind::WorkstreamStarted,
            json!({"run_id": run_dir.id, "base": base}),
        )?;
        self.ui.step(format!(
            "{}: started (run {}, from {})",
            ws.id,
            run_dir.id,
            &base[..base.len().min(12)]
        ));
        self.spawn(i, Work::Fresh(Box::new(run_plan), run_dir), cancel)
    }

    fn spawn(&mut self, i: usize, work: Work, cancel: &Cancel) -> Result<()> {
        let tx = self.tx.clone();
        threads::spawn(
            format!("workstream-{i}"),
            work,
            self.ui.lane(&self.rec.workstreams[i].id),
            cancel.clone(),
            move |result| {
                let _ = tx.send((i, result));
            },
        )?;
        self.running += 1;
        self.rec.workstreams[i].state = WsState::Running;
        Ok(())
    }

    /// Take in a finished workstream run.
    fn settle(&mut self, i: usize, result: Result<Outcome>) -> Result<()> {
        let id = self.rec.workstreams[i].id.clone();
        match result {
            Err(e) => {
                let w = &mut self.rec.workstreams[i];
                w.state = WsState::Failed;
                w.reason = Some(Reason::SetupFailed);
                w.error = Some(e.to_string());
                self.ui.step(format!("{id}: FAIL ({e})"));
                self.block_downstream(i);
            }
            Ok(outcome) => {
                let r = &outcome.record;
                self.rec.workstreams[i].tokens = r.metrics.tokens;
                self.rec.workstreams[i].cost_usd = r.metrics.cost_usd;
                match r.status {
                    Status::Succeeded => self.shipped(i, r)?,
                    Status::Interrupted => {
                        self.rec.workstreams[i].state = WsState::Interrupted;
                        self.ui.step(format!("{id}: interrupted"));
                    }
                    _ => self.failed(i, r),
                }
            }
        }
        self.dir.event_of(
            Some(&id),
            None,
            EventKind::WorkstreamFinished,
            json!({
                "state": self.rec.workstreams[i].state,
                "reason": self.rec.workstreams[i].reason,
                "error": self.rec.workstreams[i].error,
            }),
        )
    }

    fn shipped(&mut self, i: usize, r: &crate::store::RunRecord) -> Result<()> {
        let w = &mut self.rec.workstreams[i];
        w.state = WsState::Succeeded;
        w.commit = r.commit.clone();
        w.branch = Some(r.branch.clone());
        w.reason = None;
        w.error = None;
        self.integrate(i)
    }

    fn failed(&mut self, i: usize, r: &crate::store::RunRecord) {
        let w = &mut self.rec.workstreams[i];
        w.state = WsState::Failed;
        w.reason = r.reason;
        w.error = r.error.clone();
        let why = match (r.reason, &r.error) {
            (Some(reason), Some(e)) => format!("{}: {e}", reason.name()),
            (Some(reason), None) => reason.name().to_owned(),
            (None, _) => r.status.name().to_owned(),
        };
        let id = w.id.clone();
        let blocked = self.block_downstream(i);
        let tail = if blocked.is_empty() {
            String::new()
        } else {
            format!("; blocks {}", blocked.join(", "))
        };
        self.ui.step(format!("{id}: FAIL ({why}){tail}"));
    }

    /// Merge a shipped workstream onto the integration branch.
    fn integrate(&mut self, i: usize) -> Result<()> {
        let w = &self.rec.workstreams[i];
        let (id, run_id) = (w.id.clone(), w.run_id.clone().unwrap_or_default());
        let Some(commit) = w.commit.clone() else {
            return Ok(());
        };
        let branch_ref = crate::git::refs::heads(&self.rec.integration_branch);
        let message = format!(
            "Merge workstream {id} (run {run_id}) of bundle {}",
            self.rec.bundle_id
        );
        let outcome = {
            let _guard = crate::store::lock::acquire_repo(&self.plan.repo.pipeline_dir())?;
            integrate::integrate(
                &self.git,
                &self.plan.repo.common_dir,
                &branch_ref,
                &commit,
                &message,
            )?
        };
        match outcome {
            Integrated::Moved(_) | Integrated::Already => {
                self.rec.workstreams[i].integrated = true;
                self.rec.workstreams[i].error = None;
                self.dir.event_of(
                    Some(&id),
                    None,
                    EventKind::Integrated,
                    json!({"commit": commit}),
                )?;
                self.ui.step(format!(
                    "{id}: shipped {}; merged onto {}",
                    &commit[..commit.len().min(12)],
                    self.rec.integration_branch
                ));
            }
            Integrated::Conflict(paths) => {
                let why = format!(
                    "its result conflicts with the integration branch in {}",
                    list_paths(&paths)
                );
                self.block(i, Some(Reason::MergeConflict), why, paths);
            }
            Integrated::Refused(why) => {
                // Shipped, not merged: `resume` merges what succeeded and is not integrated.
                let why = format!(
                    "not merged onto {}: {why}; `git pipeline resume {}` merges it once that is settled",
                    self.rec.integration_branch, self.rec.bundle_id
                );
                self.rec.workstreams[i].error = Some(why.clone());
                self.dir.event_of(
                    Some(&id),
                    None,
                    EventKind::NotIntegrated,
                    json!({"why": why}),
                )?;
                self.ui.step(format!(
                    "{id}: shipped {}; {why}",
                    &commit[..commit.len().min(12)]
                ));
            }
        }
        Ok(())
    }

    /// `i` will not run or not be merged: say why, and block what depends on it.
    fn block(&mut self, i: usize, reason: Option<Reason>, why: String, paths: Vec<PathBuf>) {
        let w = &mut self.rec.workstreams[i];
        w.state = WsState::Blocked;
        w.reason = reason.or(Some(Reason::MergeConflict));
        w.error = Some(why.clone());
        w.conflicts = paths.iter().map(|p| p.display().to_string()).collect();
        let id = w.id.clone();
        let _ = self.dir.event_of(
            Some(&id),
            None,
            EventKind::Blocked,
            json!({"why": why, "conflicts": w.conflicts}),
        );
        let blocked = self.block_downstream(i);
        let tail = if blocked.is_empty() {
            String::new()
        } else {
            format!("; blocks {}", blocked.join(", "))
        };
        self.ui.step(format!("{id}: BLOCKED ({why}){tail}"));
    }

    /// Everything downstream of `i` that has not started is blocked by it.
    fn block_downstream(&mut self, i: usize) -> Vec<String> {
        let cause = self.rec.workstreams[i].id.clone();
        let state = self.rec.workstreams[i].state;
        let mut names = Vec::new();
        for d in self.plan.graph.downstream(i) {
            let w = &mut self.rec.workstreams[d];
            if w.state == WsState::Pending {
                w.state = WsState::Blocked;
                w.blocked_by = Some(cause.clone());
                w.error = Some(format!("{cause} {}", state.name()));
                names.push(w.id.clone());
            }
        }
        names
    }

    fn finish(&mut self, interrupted: bool) -> Result<()> {
        let c = self.rec.counts();
        let unmerged = self
            .rec
            .workstreams
            .iter()
            .any(|w| w.state == WsState::Succeeded && !w.integrated && w.commit.is_some());
        self.rec.status = if interrupted || c.interrupted > 0 || c.pending > 0 || unmerged {
            BundleStatus::Interrupted
        } else if c.succeeded == self.rec.workstreams.len() {
            BundleStatus::Completed
        } else if c.succeeded == 0 {
            BundleStatus::Failed
        } else {
            BundleStatus::Partial
        };
        self.rec.integration_commit = objects::ref_value(
            &self.git,
            &crate::git::refs::heads(&self.rec.integration_branch),
        )?;
        self.rec.total_time_s += self.started.elapsed().as_secs_f64();
        self.rec.ended_at =
            (self.rec.status != BundleStatus::Interrupted).then(crate::ids::now_rfc3339);
        self.rec.exit_code = Some(self.rec.exit().code());
        self.save()?;
        self.dir.event(
            None,
            EventKind::BundleFinished,
            json!({"status": self.rec.status, "counts": c.to_string()}),
        )
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    let mut names: Vec<String> = paths
        .iter()
        .take(5)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > 5 {
        names.push(format!("{} more", paths.len() - 5));
    }
    names.join(", ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
