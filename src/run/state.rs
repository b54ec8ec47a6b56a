//! The state of one live run, and what every stage shares: recording steps, snapshots, the
//! read-only check, setting up the worktree, finishing and rolling back.

use std::time::Instant;

use serde_json::json;

use crate::agent::RoleAgent;
use crate::error::Error;
use crate::error::Result;
use crate::git::Git;
use crate::git::objects;
use crate::git::refs::BranchName;
use crate::git::snapshot::Snapshot;
use crate::git::snapshot::Snapshotter;
use crate::git::worktree;
use crate::ids;
use crate::plan::Mode;
use crate::plan::RunPlan;
use crate::policy::scope::Scope;
use crate::process_end::End;
use crate::run::breaker::Breakers;
use crate::run::outcome::Ending;
use crate::run::outcome::Outcome;
use crate::run::outcome::exit_of;
use crate::run::stages::rollback;
use crate::run::step;
use crate::run::step::AgentRun;
use crate::run::step::StepCtx;
use crate::safety::process::Cancel;
use crate::store::EventKind;
use crate::store::RunDir;
use crate::store::record::Checkpoint;
use crate::store::record::Metrics;
use crate::store::record::Reason;
use crate::store::record::ResumeState;
use crate::store::record::RunRecord;
use crate::store::record::Sessions;
use crate::store::record::StageName;
use crate::store::record::StageRecord;
use crate::store::record::StageStatus;
use crate::store::record::Status;
use crate::store::record::Verification;
use crate::ui::Ui;
use std::path::PathBuf;

/// What a run writes down: its folder (events, prompts, outputs) and its record.
pub(crate) struct Recorder {
    pub dir: RunDir,
    pub rec: RunRecord,
}

/// Where a run works: the repository, its worktree and branch, and what snapshots, watches and
/// sandboxes them. Made by `setup` (run/workspace.rs) or brought back by `reattach`.
pub(crate) struct Workspace {
    pub repo: Git,
    pub worktree: PathBuf,
    /// `None` for a reverify run, which works on a detached checkout.
    pub branch: Option<BranchName>,
    pub snap: Option<Snapshotter>,
    /// The tree of the last snapshot, for the archive when the worktree is gone.
    pub last_tree: Option<crate::git::TreeId>,
    /// Fingerprints of what no step may change (set once the worktree exists).
    pub guard: Option<crate::safety::containment::Guard>,
    /// How agents and gates are sandboxed, once the worktree exists.
    pub sandbox: Option<crate::sandbox::Setup>,
    /// This run's `PIPELINE_SLOT`, held while it lives.
    pub slot: Option<crate::store::lock::Slot>,
    /// Whether the worktree is a slot (made now, or reused) or a folder of the run's own.
    pub place: crate::store::slots::Place,
    /// The run's worktree, watched for read-only steps.
    pub wt_watch: Option<crate::safety::watch::CheckoutWatch>,
    /// What git ignores in the user's checkouts, listed while the worktree was made (for the
    /// guard's watches), by checkout.
    pub ignored_ahead: Vec<(
        PathBuf,
        crate::git::ignored::Ignored,
        Option<crate::safety::watch::CheckoutWatch>,
    )>,
    /// The slot's `git config --list`, taken while it was reset (see `Places::config_ahead`).
    pub config_ahead: Option<(PathBuf, crate::git::config::Listing)>,
    /// Ref files and other runs' records read while the worktree was made, for the guard.
    pub warm: Option<crate::safety::containment::Warm>,
    /// git's signing settings, being read while the ship commit is made.
    pub signer_ahead: Option<crate::attest::sign::Ahead>,
    /// git's automatic maintenance after the ship commit, running while the run finishes.
    pub maintenance: Option<std::thread::JoinHandle<()>>,
}

/// What [`Run::after_step`] compares against.
pub struct StepStart {
    fingerprint: Option<crate::safety::containment::Fingerprint>,
    in_worktree: std::collections::BTreeSet<(i32, Option<u64>)>,
}

/// One live run: its plan, what it records, where it works, and the state of its stages.
pub(crate) struct Run<'a> {
    pub plan: &'a RunPlan,
    pub ui: &'a Ui,
    pub log: Recorder,
    pub ws: Workspace,
    /// Discovery and planning share one session, execution another, verification a third that
    /// no builder sees, docs a fourth.
    pub plan_session: String,
    pub exec_session: String,
    pub verify_session: String,
    pub docs_session: String,
    /// The scope the builder is held to: the user's, or the approved plan's manifest.
    pub scope: Scope,
    /// Discovery findings and the approved plan, carried into later prompts.
    pub spec: Option<String>,
    pub plan_text: Option<String>,
    pub breakers: Breakers,
    started: Instant,
    pub details: Vec<String>,
    /// `<config entry> (<program>)` of the verifier that last ran, for the attestation.
    pub verifier_label: Option<String>,
    /// Why the worktree must be kept whatever happens (work the archive cannot hold: edits
    /// inside a submodule, a submodule commit that exists nowhere else).
    pub keep_reason: Option<String>,
    /// `[[setup]]` steps that succeeded in this run, with the digest of their files then.
    pub setup_done: std::collections::BTreeMap<String, String>,
    /// `--version` of the preset CLIs whose edits ship (attestations and trailers name them).
    pub cli_versions: std::collections::BTreeMap<String, String>,
    /// Paths the docs agent changed in what ships (unverified by design, limited to docs.paths).
    pub docs_changes: Vec<String>,
    /// The bundle an approved plan split the task into.
    pub split: Option<crate::bundle::spec::Bundle>,
    /// How this run starts the runs it fans out to (a best-of-N parent's candidates).
    pub launch: &'a dyn crate::run::launch::Launch,
    /// The next step's [`StepStart`], taken by its stage while other work went on (the
    /// verifier's, while git writes the diff it reads): the step itself does not take another.
    pub step_ahead: Option<StepStart>,
}

impl<'a> Run<'a> {
    pub fn new(
        plan: &'a RunPlan,
        ui: &'a Ui,
        dir: RunDir,
        launch: &'a dyn crate::run::launch::Launch,
    ) -> Run<'a> {
        // A reverify run works on a detached checkout of the commit: no branch of its own.
        let branch = match plan.target.mode {
            Mode::Build => Some(BranchName::new(format!(
                "{}{}",
                plan.landing.branch_prefix, dir.id
            ))),
            Mode::Reverify { .. } => None,
        };
        let worktree = plan.landing.worktree_root.join(&dir.id);
        let rec = RunRecord {
            version: crate::store::record::RECORD_VERSION,
            run_id: dir.id.clone(),
            task: plan.target.task.clone(),
            risk: plan.routing.risk.risk,
            risk_reasons: plan.routing.risk.reasons.clone(),
            status: Status::Pending,
            reason: None,
            exit_code: None,
            base: plan.target.base.clone(),
            branch: branch.as_ref().map(|b| b.to_string()).unwrap_or_default(),
            commit: None,
            worktree: None,
            rolled_back: false,
            stages: Vec::new(),
            changed_paths: Vec::new(),
            gates: Vec::new(),
            verification: Verification::default(),
            metrics: Metrics::default(),
            stage: None,
            error: None,
            base_ref: plan.target.base_ref.clone(),
            archive: None,
            scope: plan.policy.scope.record(),
            created_at: ids::now_rfc3339(),
            ended_at: None,
            merge: None,
            artifacts: Default::default(),
            bundle: plan.target.bundle.clone(),
            split_into: None,
            candidates: Vec::new(),
            candidate_of: plan.target.args.candidate_of.clone(),
            sandbox: Some(plan.policy.sandbox.describe()),
            worktree_identity: None,
            submodule_origins: Default::default(),
            resume: ResumeState {
                args: plan.target.args.clone(),
                sessions: Sessions {
                    plan: ids::new_session_id(),
                    execution: ids::new_session_id(),
                    verification: ids::new_session_id(),
                    docs: ids::new_session_id(),
                },
                ..ResumeState::default()
            },
        };
        Run {
            plan,
            ui,
            ws: Workspace {
                repo: plan.target.repo.git(),
                worktree,
                branch,
                snap: None,
                last_tree: None,
                guard: None,
                sandbox: None,
                slot: None,
                place: crate::store::slots::Place::OwnFolder,
                wt_watch: None,
                ignored_ahead: Vec::new(),
                config_ahead: None,
                warm: None,
                signer_ahead: None,
                maintenance: None,
            },
            plan_session: rec.resume.sessions.plan.clone(),
            exec_session: rec.resume.sessions.execution.clone(),
            verify_session: rec.resume.sessions.verification.clone(),
            docs_session: rec.resume.sessions.docs.clone(),
            scope: plan.policy.scope.clone(),
            spec: None,
            plan_text: None,
            breakers: Breakers::new(plan.policy.max_same_error, plan.policy.oscillation),
            started: Instant::now(),
            details: Vec::new(),
            verifier_label: None,
            step_ahead: None,
            keep_reason: None,
            setup_done: Default::default(),
            cli_versions: std::collections::BTreeMap::new(),
            docs_changes: Vec::new(),
            split: None,
            launch,
            log: Recorder { dir, rec },
        }
    }

    pub fn into_outcome(self) -> Outcome {
        Outcome {
            dir: self.log.dir.path.clone(),
            record: self.log.rec,
            details: self.details,
            split: self.split,
        }
    }

    /// Save the run's progress (for `status`, and for a resume after the process was killed).
    pub fn save(&mut self) -> Result<()> {
        self.prepare_record();
        self.log.dir.write_progress(&self.log.rec)
    }

    /// Save it so that it survives a power loss too: at checkpoints and at the run's end.
    pub fn save_durably(&mut self) -> Result<()> {
        self.prepare_record();
        self.log.dir.write_record(&self.log.rec)
    }

    fn prepare_record(&mut self) {
        self.update_metrics();
        let (counts, trees) = self.breakers.memory();
        self.log.rec.resume.error_counts = counts;
        self.log.rec.resume.attempt_trees = trees;
        self.log.rec.resume.snapshot_tree = self.ws.last_tree.clone();
    }

    /// Serialise our ref and worktree changes with other runs of this repository.
    pub fn repo_lock(&self) -> Result<crate::store::lock::RepoLock> {
        crate::store::lock::acquire_repo(&self.plan.target.repo.pipeline_dir())
    }

    /// Record how far the run got, durably, before going on.
    pub fn checkpoint(&mut self, at: Checkpoint) -> Result<()> {
        self.log.rec.resume.checkpoint = Some(at);
        self.save_durably()
    }

    fn update_metrics(&mut self) {
        let m = &mut self.log.rec.metrics;
        m.total_time_s = step::secs(self.started.elapsed());
        m.tokens = self.log.rec.stages.iter().map(|s| s.tokens).sum();
        // `None` when no stage reported any: unknown, not zero.
        let total = |of: fn(&StageRecord) -> Option<f64>| {
            let v: Vec<f64> = self.log.rec.stages.iter().filter_map(of).collect();
            (!v.is_empty()).then(|| v.iter().sum())
        };
        let (cost, credits) = (total(|s| s.cost_usd), total(|s| s.credits));
        let m = &mut self.log.rec.metrics;
        m.cost_usd = cost;
        m.credits = credits;
        let distinct = |skip: bool| {
            let mut names: Vec<&str> = self
                .log
                .rec
                .stages
                .iter()
                .filter(|s| (s.status == StageStatus::Skip) == skip)
                .map(|s| s.stage.name())
                .collect();
            names.sort_unstable();
            names.dedup();
            names.len() as u32
        };
        let executed = distinct(false);
        let skipped = distinct(true);
        let m = &mut self.log.rec.metrics;
        m.stages_executed = executed;
        m.stages_skipped = skipped;
    }

    pub fn ctx(&self) -> StepCtx<'_> {
        StepCtx {
            run_id: &self.log.dir.id,
            worktree: &self.ws.worktree,
            base: &self.plan.target.base,
            slot: self.ws.slot.as_ref().map_or(0, |s| s.number),
            workstream: self
                .plan
                .target
                .bundle
                .as_ref()
                .map(|b| b.workstream.as_str()),
            candidate: self.plan.target.args.candidate_of.as_ref().map(|c| c.index),
            dir: &self.log.dir,
            capture_limit: self.plan.policy.output_bytes,
            committer_name: self.ws.guard.as_ref().and_then(|g| g.committer_name()),
            sandbox: self.ws.sandbox.as_ref(),
        }
    }

    /// Whether this run's steps run in an OS sandbox that is fully enforced.
    fn step_was_sandboxed(&self) -> bool {
        self.ws.sandbox.is_some()
            && self
                .plan
                .policy
                .sandbox
                .found
                .as_ref()
                .is_some_and(|f| f.enforced)
    }

    /// Before a step: the containment fingerprint, and the processes already working in the
    /// worktree (the step is answerable only for new ones).
    pub async fn step_start(&self) -> Result<StepStart> {
        let worktree = self.ws.worktree.clone();
        // A scan of every process: off the runtime's thread, while the fingerprint is taken here.
        let scan =
            tokio::task::spawn_blocking(move || crate::platform::worktree_processes(&worktree));
        // The fingerprint to compare after the step.
        let fingerprint = self
            .ws
            .guard
            .as_ref()
            .map(|g| g.take_at_step_start())
            .transpose();
        tracing::trace!("step start: fingerprint taken");
        let in_worktree = scan
            .await
            .map_err(|e| Error::other(format!("the process scan stopped: {e}")))?;
        tracing::trace!("step start: processes scanned");
        Ok(StepStart {
            fingerprint: fingerprint?,
            in_worktree,
        })
    }

    /// After a step: processes it left running (a daemon, a `setsid` escapee, one that dropped
    /// `PIPELINE_RUN_DIR` but works in the worktree) are stopped, and a change outside the
    /// worktree stops the run.
    pub async fn after_step(&self, start: StepStart, what: &str) -> Result<()> {
        let before = start.fingerprint;
        let run_dir = self.log.dir.path.clone();
        let worktree = self.ws.worktree.clone();
        let known = start.in_worktree;
        // Reading every process's environment is a scan of /proc: off the runtime's thread. The
        // fingerprint comes after it, once what the step left running is stopped: a leftover
        // could still change things, and a fingerprint drains the checkout watch.
        let escaped = tokio::task::spawn_blocking(move || {
            crate::platform::step_leftovers(&run_dir, &worktree, &known)
        })
        .await
        .map_err(|e| Error::other(format!("the process scan stopped: {e}")))?;
        if !escaped.is_empty() {
            self.ui.warn(format!(
                "{what} left {} process(es) running; stopping them",
                escaped.len()
            ));
            crate::safety::process::stop_pids_async(&escaped).await;
            let _ = self.log.dir.event(
                None,
                EventKind::StoppedProcesses,
                json!({"after": what, "pids": escaped}),
            );
        }
        let (Some(guard), Some(before)) = (&self.ws.guard, before) else {
            return Ok(());
        };
        // A step that ran outside the OS sandbox could reach the kept object reader's pipes
        // (`/proc/<pid>/fd`): what is read from now on comes from a new one.
        if !self.step_was_sandboxed() {
            crate::git::forget_kept_readers();
        }
        let after = guard.take()?;
        tracing::trace!("after step: processes scanned, fingerprint taken");
        let review = guard.review(&before, &after, self.step_was_sandboxed())?;
        if !review.others.is_empty() {
            self.ui.warn(format!(
                "while {what} ran, things changed that this run did not change (left as they are): {}",
                review.others.join("; ")
            ));
            let _ = self.log.dir.event(
                None,
                EventKind::OutsideChanges,
                json!({"after": what, "changes": review.others}),
            );
        }
        if review.breaches.is_empty() {
            return Ok(());
        }
        let breaches = &review.breaches;
        let restored = guard.restore(&before, &review)?;
        for r in &restored {
            self.ui.warn(format!("containment: {r}"));
        }
        let _ = self.log.dir.event(
            None,
            EventKind::ContainmentBreach,
            json!({"after": what, "breaches": breaches, "restored": restored}),
        );
        Err(Error::Containment(format!(
            "{what} changed things outside its worktree: {}",
            breaches.join("; ")
        )))
    }

    /// The approved plan, bounded as prompts carry it.
    pub fn bounded_plan(&self) -> Option<String> {
        self.plan_text
            .as_deref()
            .map(|s| crate::plan::prompts::bounded(s, crate::plan::prompts::TEXT_LIMIT))
    }

    /// The gate results of the last attempt (each attempt records every gate in order).
    pub fn last_gates(&self) -> impl Iterator<Item = &crate::store::record::GateRecord> {
        let n = self.log.rec.gates.len();
        self.log.rec.gates[n.saturating_sub(self.plan.policy.gates.len())..].iter()
    }

    /// The CLI session of the candidate that will run `agent` for a prompt of `prompt_bytes`.
    pub fn cli_session(
        &mut self,
        agent: &RoleAgent,
        session: &str,
        prompt_bytes: usize,
    ) -> (String, step::CliSession) {
        let picked = agent.pick(prompt_bytes);
        let index = picked.map_or(0, |(i, _)| i);
        let names_sessions = picked.is_some_and(|(_, c)| c.names_sessions.is_some());
        // Keyed by names that mean something in run.json (`builder#1:execution`), not by the
        // run session's UUID; a record written before keyed it by the UUID, still found.
        let run_sessions = &self.log.rec.resume.sessions;
        let named = [
            (&run_sessions.plan, "planning"),
            (&run_sessions.execution, "execution"),
            (&run_sessions.verification, "verification"),
            (&run_sessions.docs, "docs"),
        ]
        .into_iter()
        .find(|(id, _)| id.as_str() == session)
        .map_or(session, |(_, name)| name);
        let key = format!("{}#{}:{named}", agent.name, index + 1);
        let old_key = format!("{}#{}:{session}", agent.name, index + 1);
        let sessions = &mut self.log.rec.resume.agent_sessions;
        if let Some(id) = sessions.get(&key).or_else(|| sessions.get(&old_key)) {
            let id = id.clone();
            return (key, step::CliSession { id, resumed: true });
        }
        if names_sessions {
            // Its id is known once it has run (`remember_cli_session`).
            return (
                key,
                step::CliSession {
                    id: String::new(),
                    resumed: false,
                },
            );
        }
        let id = if sessions.values().any(|v| v == session) {
            ids::new_session_id()
        } else {
            session.to_owned()
        };
        sessions.insert(key.clone(), id.clone());
        (key, step::CliSession { id, resumed: false })
    }

    /// For a CLI that names its own sessions: keep the id its output gave, to resume it on the
    /// next attempt; and when it reports a resumed session's usage as the whole session's, take
    /// off what the earlier calls of that session were already counted for.
    fn remember_cli_session(
        &mut self,
        agent: &RoleAgent,
        key: &str,
        cli_session: &step::CliSession,
        ran: &mut step::AgentRun,
        (session, prompt_bytes): (&str, usize),
    ) {
        // The candidate that ran: the one picked for this prompt, as `run_agent` picks it.
        let Some((_, candidate)) = agent.pick(prompt_bytes) else {
            return;
        };
        if !cli_session.resumed
            && let Some(id) = candidate
                .names_sessions
                .and_then(|n| n.find(&ran.outcome.stdout.bytes))
        {
            self.log
                .rec
                .resume
                .agent_sessions
                .insert(key.to_owned(), id);
        }
        if cli_session.resumed && candidate.usage_of_whole_session && !ran.usage.estimated {
            let earlier: u64 = self
                .log
                .rec
                .stages
                .iter()
                .filter(|s| {
                    s.agent.as_deref() == Some(ran.agent.as_str())
                        && s.session_id.as_deref() == Some(session)
                })
                .map(|s| s.tokens)
                .sum();
            ran.usage.tokens = ran.usage.tokens.saturating_sub(earlier);
        }
    }

    /// Run one agent of a role as a step of `stage`.
    pub async fn run_role(
        &mut self,
        agent: &RoleAgent,
        stage: StageName,
        attempt: u32,
        session: &str,
        prompt: &str,
        cancel: &mut Cancel,
    ) -> Result<AgentRun> {
        let before = match self.step_ahead.take() {
            Some(start) => start,
            None => self.step_start().await?,
        };
        if !crate::preset::role_edits(agent.role) {
            self.before_read_only()?;
        }
        let (key, cli_session) = self.cli_session(agent, session, prompt.len());
        if !cli_session.resumed {
            // Saved before the agent starts: after a crash its session exists and is resumed.
            self.save()?;
        }
        let mut ran = step::run_agent(
            &self.ctx(),
            step::AgentCall {
                agent,
                stage,
                attempt,
                session,
                prompt,
                cli_session: &cli_session,
                ui: self.ui,
            },
            cancel,
        )
        .await?;
        if matches!(ran.outcome.end, crate::process_end::End::SpawnFailed(_))
            && !cli_session.resumed
        {
            // Nothing started, so there is nothing to resume.
            self.log.rec.resume.agent_sessions.remove(&key);
        }
        self.remember_cli_session(agent, &key, &cli_session, &mut ran, (session, prompt.len()));
        self.after_step(
            before,
            &format!("the {} ({})", agent.role.name(), agent.name),
        )
        .await?;
        Ok(ran)
    }

    pub fn begin(&mut self, stage: StageName, line: String) -> Result<()> {
        self.log.rec.stage = Some(stage.to_owned());
        self.save()?;
        self.log
            .dir
            .event(Some(stage), EventKind::StageStarted, json!({}))?;
        self.ui.start(line);
        Ok(())
    }

    /// The `stage_finished` event. Best effort: the record holds the same facts.
    pub fn finished_stage(&self, stage: StageName, status: &str) {
        let _ = self.log.dir.event(
            Some(stage),
            EventKind::StageFinished,
            json!({"status": status}),
        );
    }

    /// A stage (or one role of it) that does not run, and why; shown and recorded.
    pub fn skip_stage(&mut self, stage: StageName, why: &str) {
        self.skip_role(stage, None, why);
    }

    pub fn skip_role(&mut self, stage: StageName, agent: Option<&str>, why: &str) {
        let who = agent.map(|a| format!(" ({a})")).unwrap_or_default();
        self.ui.step(format!("{stage}{who}: skipped ({why})"));
        // A resumed run passes the same skips again; record each once.
        let known = self.log.rec.stages.iter().any(|s| {
            s.stage == stage
                && s.status == StageStatus::Skip
                && s.agent.as_deref() == agent
                && s.note.as_deref() == Some(why)
        });
        if known {
            return;
        }
        self.log.rec.stages.push(StageRecord {
            stage: stage.to_owned(),
            status: StageStatus::Skip,
            attempt: 0,
            session_id: None,
            agent: agent.map(str::to_owned),
            started_at: None,
            ended_at: None,
            tokens: 0,
            tokens_estimated: false,
            cost_usd: None,
            credits: None,
            error: None,
            note: Some(why.to_owned()),
            agent_info: None,
        });
        let _ = self.log.dir.event(
            Some(stage),
            EventKind::StageFinished,
            json!({"status": "skip", "agent": agent, "reason": why}),
        );
    }

    /// Run an agent of a role that only reads (planner, reviewer, verifier): recorded, and held
    /// to reading. `who` names it in the message when it wrote ("the planner").
    pub async fn run_reader(
        &mut self,
        agent: &RoleAgent,
        (stage, round, session): (StageName, u32, &str),
        prompt: &str,
        who: &str,
        cancel: &mut Cancel,
    ) -> Result<crate::run::next::Next<AgentRun>> {
        use crate::run::next::Next;
        let ran = self
            .run_role(agent, stage, round, session, prompt, cancel)
            .await?;
        if let Some(ending) = self.record_agent(stage, round, session, &ran, agent) {
            return Ok(Next::End(ending));
        }
        if let Some(ending) = self.check_read_only(&format!("{who} ({})", ran.agent))? {
            return Ok(Next::End(ending));
        }
        Ok(Next::Continue(ran))
    }

    /// Record an agent step; the ending when it failed.
    pub fn record_agent(
        &mut self,
        stage: StageName,
        attempt: u32,
        session: &str,
        ran: &AgentRun,
        agent: &RoleAgent,
    ) -> Option<Ending> {
        let end = &ran.outcome.end;
        let error = (!end.success()).then(|| end.describe());
        self.log.rec.stages.push(StageRecord {
            stage: stage.to_owned(),
            status: if end.success() {
                StageStatus::Pass
            } else {
                StageStatus::Fail
            },
            attempt,
            session_id: Some(session.to_owned()),
            agent: Some(ran.agent.clone()),
            started_at: Some(ran.started_at.clone()),
            ended_at: Some(ran.ended_at.clone()),
            tokens: ran.usage.tokens,
            tokens_estimated: ran.usage.estimated,
            cost_usd: ran.usage.cost_usd,
            credits: ran.usage.credits,
            error: error.clone(),
            note: None,
            agent_info: (!ran.cli.is_empty()).then(|| crate::store::record::AgentInfo {
                role: agent.role.name().to_owned(),
                cli: ran.cli.clone(),
                model: ran.models.first().cloned(),
            }),
        });
        self.finished_stage(stage, if end.success() { "pass" } else { "fail" });
        let role = agent.role.name();
        match end {
            End::Exited(0) => None,
            End::Interrupted => Some(Ending::Interrupted),
            End::TimedOut(_) => Some(Ending::failed(
                Reason::Timeout,
                format!("the {role} ({}) {}", ran.agent, end.describe()),
            )),
            _ => {
                // Agent CLIs in JSON mode say why on stdout ("Not logged in"), others on stderr.
                let stderr = String::from_utf8_lossy(&ran.outcome.stderr.bytes).into_owned();
                let said = if stderr.trim().is_empty() {
                    crate::agent::text::final_text(&ran.outcome.stdout.bytes)
                } else {
                    stderr
                };
                let mut details: Vec<String> = said
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .rev()
                    .take(5)
                    .map(str::to_owned)
                    .collect();
                details.reverse();
                // Its last words say why (a permission error from the sandbox, a bad flag).
                let last: String = details
                    .last()
                    .map(|l| format!(": {}", l.trim().chars().take(200).collect::<String>()))
                    .unwrap_or_default();
                Some(Ending::Failed {
                    reason: Reason::AgentError,
                    message: format!(
                        "the {role} ({}) failed: {}{last}",
                        ran.agent,
                        end.describe()
                    ),
                    details,
                })
            }
        }
    }

    /// Mark the last recorded step as failed with `why`.
    pub fn fail_last_step(&mut self, why: &str) {
        if let Some(last) = self.log.rec.stages.last_mut() {
            last.status = StageStatus::Fail;
            last.error = Some(why.to_owned());
        }
    }

    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let snap = self
            .ws
            .snap
            .as_ref()
            .ok_or_else(|| Error::other("the worktree was not set up"))?;
        let s = snap.take(&self.ws.repo, &self.plan.target.base_tree)?;
        self.ws.last_tree = Some(s.tree.clone());
        Ok(s)
    }

    /// Paths changed since the last snapshot (or since the base, when none was taken yet).
    pub fn changed_since_snapshot(&mut self) -> Result<Vec<String>> {
        if self.ws.last_tree.is_some() {
            let snap = self
                .ws
                .snap
                .as_ref()
                .ok_or_else(|| Error::other("the worktree was not set up"))?;
            return snap.changed_since_last(10);
        }
        let s = self.snapshot()?;
        Ok(s.changes
            .iter()
            .take(10)
            .map(|c| format!("{} {}", c.kind.letter(), c.path.display()))
            .collect())
    }

    /// Bring the worktree back to `tree` (a snapshot of it) and make the scratch index hold it
    /// again; what was undone (`what`: "the docs agent's edits") is returned.
    pub(crate) fn restore_to(
        &mut self,
        tree: &crate::git::TreeId,
        what: &str,
    ) -> Result<Vec<crate::git::snapshot::Change>> {
        let now = self.snapshot()?;
        let delta = crate::git::snapshot::diff_trees(&self.ws.repo, tree, &now.tree)?;
        let git = self
            .ws
            .snap
            .as_ref()
            .ok_or_else(|| Error::other("the worktree was not set up"))?
            .git();
        crate::git::snapshot::restore(&git, &self.ws.worktree, tree, &delta)?;
        let back = self.snapshot()?;
        if back.tree != tree {
            return Err(Error::other(format!(
                "could not undo {what}: the worktree still differs from the state it was judged in"
            )));
        }
        Ok(delta)
    }

    /// Before a step that must only read: forget earlier changes (the builder's, a gate's
    /// build output), so that what the watch sees after it is the step's own.
    pub fn before_read_only(&self) -> Result<()> {
        match &self.ws.wt_watch {
            Some(w) => w.drain(),
            None => Ok(()),
        }
    }

    /// Discovery, planning, review and verification only read: if the worktree changed, the
    /// run stops.
    pub fn check_read_only(&mut self, who: &str) -> Result<Option<Ending>> {
        // Nothing happened in the worktree during the step: nothing to compare. (Whatever did
        // happen is compared with the last snapshot, the tree that was judged.)
        if let Some(w) = &self.ws.wt_watch
            && w.changes()?.is_empty()
        {
            return Ok(None);
        }
        let paths = self.changed_since_snapshot()?;
        if paths.is_empty() {
            return Ok(None);
        }
        self.fail_last_step("changed files in the worktree");
        Ok(Some(Ending::Failed {
            reason: Reason::AgentError,
            message: format!("{who} changed files in the worktree; it must only read"),
            details: paths,
        }))
    }

    pub fn finish(&mut self, ending: Ending) -> Result<()> {
        self.log.rec.stage = None;
        self.log.rec.ended_at = Some(ids::now_rfc3339());
        match ending {
            Ending::Shipped => {
                self.log.rec.status = Status::Succeeded;
            }
            Ending::Chosen => {
                // Its tree ships in the parent's commit; nothing here needs keeping.
                self.log.rec.status = Status::Succeeded;
                let _guard = self.repo_lock()?;
                self.discard_worktree()?;
                self.log.rec.worktree = None;
                self.log.rec.rolled_back = true;
            }
            Ending::Dropped(why) => {
                self.log.rec.status = Status::Abandoned;
                self.log.rec.error = Some(why.clone());
                if let Err(e) = self.roll_back(&why) {
                    self.details.push(format!("rollback incomplete: {e}"));
                }
            }
            Ending::Split(bundle) => {
                // Nothing was built here: the worktree and branch go, the workstreams make theirs.
                self.log.rec.status = Status::Succeeded;
                let _guard = self.repo_lock()?;
                self.discard_worktree()?;
                self.log.rec.worktree = None;
                self.log.rec.branch = String::new();
                self.log.dir.event(
                    None,
                    EventKind::Split,
                    json!({"workstreams": bundle.workstreams.len()}),
                )?;
                self.split = Some(bundle);
            }
            Ending::Interrupted => {
                self.log.rec.status = Status::Interrupted;
                self.log.dir.event(
                    None,
                    EventKind::Interrupted,
                    json!({"worktree": self.log.rec.worktree}),
                )?;
                self.ui.step("interrupted: the worktree is kept");
            }
            Ending::Stopped {
                reason,
                message,
                details,
            } => {
                self.log.rec.status = Status::Interrupted;
                self.log.rec.reason = Some(reason);
                self.log.rec.error = Some(message);
                self.details = details;
                self.log.dir.event(
                    None,
                    EventKind::Interrupted,
                    json!({"worktree": self.log.rec.worktree, "reason": reason.name()}),
                )?;
                self.ui.step(if self.log.rec.worktree.is_some() {
                    "stopped: the worktree and branch are kept for resume"
                } else {
                    "stopped: the branch is kept for resume"
                });
            }
            Ending::Failed {
                reason,
                message,
                details,
            } => {
                self.log.rec.status = Status::Failed;
                self.log.rec.reason = Some(reason);
                self.log.rec.error = Some(message.clone());
                self.details = details;
                if let Err(e) = self.roll_back(&message) {
                    self.details.push(format!("rollback incomplete: {e}"));
                    let _ = self.log.dir.event(
                        None,
                        EventKind::RollbackFailed,
                        json!({"error": e.to_string()}),
                    );
                }
            }
        }
        if self.log.rec.status.is_final() {
            self.log.dir.clear_scratch()?;
        }
        self.log.rec.exit_code = Some(exit_of(&self.log.rec).code());
        self.save_durably()
    }

    /// Archive the work, then discard the worktree and branch (unless kept).
    fn roll_back(&mut self, why: &str) -> Result<()> {
        let _guard = self.repo_lock()?;
        // A worktree folder replaced during the run (a symlink to elsewhere, another folder) is
        // never read, reset or removed: what the run saved (its last snapshot, its branch) is
        // archived instead, and the path is left alone.
        let replaced = worktree::was_replaced(&self.ws.worktree, self.log.rec.worktree_identity);
        if replaced {
            self.ui.warn(format!(
                "the run's worktree {} was replaced (moved away, or a symlink put in its place); leaving that path alone",
                self.ws.worktree.display()
            ));
        }
        let wt_exists = self.log.rec.worktree.is_some() && self.ws.worktree.exists() && !replaced;
        // Take the state as the agent left it. When that cannot be read (a nested repository
        // without a commit, unreadable files), the worktree is the only copy of the work: it is
        // kept, whatever else happens.
        let (tree, mut unarchivable) = if wt_exists {
            match self.ws.snap.as_ref().map(|s| s.tree()) {
                Some(Ok(t)) => (Some(t), self.keep_reason.clone()),
                Some(Err(e)) => (self.ws.last_tree.clone(), Some(e.to_string())),
                None => (self.ws.last_tree.clone(), self.keep_reason.clone()),
            }
        } else {
            (self.ws.last_tree.clone(), None)
        };
        let tip = match &self.ws.branch {
            None => None,
            Some(b) => objects::ref_value(&self.ws.repo, &b.full())?,
        };
        let agent_committed = tip.as_deref().is_some_and(|t| t != self.plan.target.base);
        // The worktree is gone (the agent removed it) but its commits are on the branch.
        let tree = match (tree, &tip) {
            (None, Some(t)) if agent_committed => Some(objects::tree_of(&self.ws.repo, t)?),
            (tree, _) => tree,
        };
        match tree {
            // Nothing was changed: there is no work to keep. A reverified commit is its own record.
            _ if matches!(self.plan.target.mode, Mode::Reverify { .. }) => {}
            Some(t) if t == self.plan.target.base_tree && !agent_committed => {}
            Some(tree) => match rollback::archive(
                &self.ws.repo,
                &self.log.dir.id,
                &tree,
                &self.plan.target.base,
                tip.as_deref(),
                why,
            ) {
                Ok(name) => self.log.rec.archive = Some(name),
                // A full disk, a ref that cannot be written: the worktree (and the branch) are
                // then the only copy of the work, and are kept.
                Err(e) if wt_exists => {
                    unarchivable = Some(format!("the archive could not be written: {e}"));
                }
                Err(e) => return Err(e),
            },
            None => {}
        }
        if let Some(why) = &unarchivable {
            self.ui.warn(format!(
                "the worktree's state could not be archived ({why}); it is kept with its work at {}",
                self.ws.worktree.display()
            ));
            self.details.push(format!(
                "the work is in {} (not archived: {why}); remove it with git worktree remove --force once you have looked",
                self.ws.worktree.display()
            ));
            let _ = worktree::unlock(&self.ws.repo, &self.ws.worktree);
            let pipeline_dir = self.plan.target.repo.pipeline_dir();
            rollback::keep_slot(&pipeline_dir, &self.ws.worktree, &self.log.dir.id)?;
            self.log.dir.event(
                None,
                EventKind::RolledBack,
                json!({"kept": true, "unarchivable": why, "archive": self.log.rec.archive}),
            )?;
            return Ok(());
        }
        if self.plan.landing.keep_failed {
            if wt_exists {
                // Kept for a person to inspect: no longer locked, so `git worktree remove` works.
                worktree::unlock(&self.ws.repo, &self.ws.worktree)?;
                let pipeline_dir = self.plan.target.repo.pipeline_dir();
                rollback::keep_slot(&pipeline_dir, &self.ws.worktree, &self.log.dir.id)?;
            }
            self.log.dir.event(
                None,
                EventKind::RolledBack,
                json!({"kept": true, "archive": self.log.rec.archive}),
            )?;
            return Ok(());
        }
        if self.log.rec.commit.is_some() {
            // Never discard a branch that holds a shipped, attested commit.
            return Ok(());
        }
        if replaced {
            // git still has the worktree registered on the branch: both stay for the user.
        } else if self.log.rec.worktree.is_some() || tip.is_some() {
            self.discard_worktree()?;
        }
        self.log.rec.worktree = None;
        self.log.rec.rolled_back = true;
        self.log.dir.event(
            None,
            EventKind::RolledBack,
            json!({"kept": false, "archive": self.log.rec.archive}),
        )?;
        Ok(())
    }
}
