//! Best-of-N (`run --candidates N`): N builders work on the task at once, each in a run of its
//! own (its worktree, branch, session, scope check, gates and fix loop). A candidate that passes
//! its gates does not call a verifier: it hands its work to its parent run and waits. When every
//! candidate still in the race is ready, the parent's verifier compares them and either chooses
//! one (`"choice": k`), which the parent then ships as an ordinary run would, or rejects them
//! all, which sends its issues back to every builder as a verifier rejection would. Candidates
//! not chosen are rolled back (their work archived).
//!
//! ```text
//!            ┌─ candidate 1: builder ⇄ scope ⇄ gates ─┐ ready
//! parent ────┼─ candidate 2: builder ⇄ scope ⇄ gates ─┼──────► verifier compares ──► choice k:
//! (discovery,└─ candidate 3: builder ⇄ scope ⇄ gates ─┘            │ reject all     parent ships k,
//!  planning)        ▲                                              │                the rest dropped
//!                   └──────────── issues to every builder ◄────────┘
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::git::TreeId;
use crate::plan::RunPlan;
use crate::store::EventKind;
use crate::store::record::StageName;

use crate::agent;
use crate::agent::RoleAgent;
use crate::error::Error;
use crate::error::Result;
use crate::git::snapshot;
use crate::git::snapshot::Snapshot;
use crate::plan::Stage;
use crate::plan::links::{Decision, Inherited, Judge, Submission};
use crate::plan::prompts;
use crate::preset::Role;
use crate::run::create_run_dir;
use crate::run::launch::Work;
use crate::run::next::{Again, Next};
use crate::run::outcome::Ending;
use crate::run::outcome::Outcome;
use crate::run::state::Run;
use crate::safety::process::Cancel;
use crate::store::Store;
use crate::store::record::CandidateRecord;
use crate::store::record::CandidateRef;
use crate::store::record::CandidateState;
use crate::store::record::Checkpoint;
use crate::store::record::GateRecord;
use crate::store::record::Reason;
use crate::store::record::StageStatus;
use crate::store::record::Status;
use crate::store::record::Verification;

impl RunPlan {
    /// The plan of candidate `index`: the parent's, built by `builder`, starting at execution.
    fn candidate(
        &self,
        index: u32,
        builder: (&str, RoleAgent),
        judge: Judge,
        inherited: Inherited,
        parent: &str,
    ) -> RunPlan {
        let mut p = self.clone();
        p.agents.candidates = 1;
        p.agents.judge = Some(judge);
        p.agents.inherited = Some(inherited);
        p.agents.builder = Some(builder.1);
        p.routing.start = Stage::Execution;
        p.routing.start_reason = format!(
            "candidate {index} of {} of run {parent}: planned there",
            self.agents.candidates
        );
        p.warnings.clear();
        p.target.args.candidates = None;
        p.target.args.candidate_of = Some(CandidateRef {
            parent: parent.to_owned(),
            index,
        });
        p.target.args.stage = Some("execution".to_owned());
        p.target.args.agents.retain(|a| !a.starts_with("builder="));
        p.target.args.agents.push(format!("builder={}", builder.0));
        p
    }

    /// The builder of each candidate: the `--agent builder=NAME` given, in turn, or the
    /// configured builder for all.
    fn candidate_builders(&self) -> Result<Vec<(String, RoleAgent)>> {
        let named: Vec<String> = agent::parse_overrides(&self.target.args.agents)?
            .into_iter()
            .filter(|(r, _)| *r == Role::Builder)
            .map(|(_, n)| n)
            .collect();
        let names = if named.is_empty() {
            vec![Role::Builder.name().to_owned()]
        } else {
            named
        };
        let search_dir = self
            .target
            .repo
            .work_tree
            .clone()
            .or_else(|| self.target.repo.main_worktree.clone())
            .unwrap_or_else(|| self.target.repo.common_dir.clone());
        (0..self.agents.candidates as usize)
            .map(|k| {
                let name = names[k % names.len()].clone();
                let agent = agent::resolve(
                    &self.policy.loaded,
                    Role::Builder,
                    &[(Role::Builder, name.clone())],
                    &search_dir,
                )?
                .ok_or_else(|| Error::usage(format!("no builder agent {name:?}")))?;
                Ok((name, agent))
            })
            .collect()
    }
}

impl Run<'_> {
    /// The candidate side: hand the work in and wait for the parent's decision.
    pub(crate) async fn submit(
        &mut self,
        judge: &Judge,
        round: u32,
        snapshot: &Snapshot,
        cancel: &mut Cancel,
    ) -> Result<Next> {
        let index = self
            .plan
            .target
            .args
            .candidate_of
            .as_ref()
            .map_or(0, |c| c.index);
        let patch = snapshot::patch(&self.ws.repo, &self.plan.target.base_tree, &snapshot.tree)?;
        let gates: Vec<GateRecord> = self.last_gates().cloned().collect();
        let (reply, answer) = oneshot::channel();
        self.begin(
            StageName::Verification,
            format!("verification {round}: waiting for the other candidates and the verifier"),
        )?;
        let agent = self
            .plan
            .agents
            .builder
            .as_ref()
            .map(|b| b.name.clone())
            .unwrap_or_default();
        judge
            .tx
            .send(Submission {
                index,
                agent,
                worktree: self.ws.worktree.clone(),
                tree: snapshot.tree.clone(),
                changed_paths: self.log.rec.changed_paths.clone(),
                patch,
                gates,
                reply,
            })
            .map_err(|_| Error::other("the run comparing the candidates is gone"))?;
        let decision = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(Error::Interrupted),
            d = answer => d.map_err(|_| {
                if cancel.is_cancelled() {
                    Error::Interrupted
                } else {
                    Error::other("the run comparing the candidates is gone")
                }
            })?,
        };
        let step = self.log.rec.stages.last_mut();
        match decision {
            Decision::Chosen => {
                if let Some(s) = step {
                    s.status = StageStatus::Pass;
                    s.note = Some("chosen by the verifier".to_owned());
                }
                // The verifier read this folder; what it chose must be what is here.
                let now = self.snapshot()?;
                if now.tree != snapshot.tree {
                    return Ok(Next::End(Ending::failed(
                        Reason::AgentError,
                        "the verifier changed this candidate's files while comparing",
                    )));
                }
                self.ui.step("verification: chosen");
                Ok(Next::End(Ending::Chosen))
            }
            Decision::Rejected(issues) => {
                if let Some(s) = step {
                    s.status = StageStatus::Fail;
                    s.error = Some(format!(
                        "every candidate rejected ({} issue(s))",
                        issues.len()
                    ));
                }
                self.log.rec.verification = Verification {
                    rounds: round,
                    approved: false,
                    issues: issues.clone(),
                };
                self.log.rec.metrics.verification_rounds = round;
                self.ui.step(format!(
                    "verification {round}: every candidate rejected ({} issue(s))",
                    issues.len()
                ));
                Ok(Next::Retry(Again::Rejected { issues }))
            }
            Decision::Dropped(why) => {
                if let Some(s) = step {
                    s.status = StageStatus::Fail;
                    s.error = Some(why.clone());
                }
                self.ui.step(format!("verification: not chosen ({why})"));
                Ok(Next::End(Ending::Dropped(why)))
            }
        }
    }

    /// The parent side: build the candidates, have them compared, ship the chosen one.
    pub(crate) async fn best_of(&mut self, cancel: &mut Cancel) -> Result<Ending> {
        let (sub_tx, mut submissions) = mpsc::unbounded_channel::<Submission>();
        let (done_tx, mut finished) = mpsc::unbounded_channel::<(u32, Result<Outcome>)>();
        let judge = Judge { tx: sub_tx };
        let mut live = BTreeSet::new();
        let spawn = |work: Work, index: u32, ui: &crate::ui::Ui, cancel: &Cancel| {
            let done = done_tx.clone();
            self.launch.launch(
                format!("candidate-{index}"),
                work,
                ui.lane(&format!("c{index}")),
                cancel.clone(),
                Box::new(move |r| {
                    let _ = done.send((index, r));
                }),
            )
        };
        if self.log.rec.candidates.is_empty() {
            let inherited = Inherited {
                parent_dir: self.log.dir.path.clone(),
                artifacts: self.log.rec.artifacts.clone(),
            };
            let builders = self.plan.candidate_builders()?;
            self.ui.step(format!(
                "execution: {} candidates ({})",
                builders.len(),
                builders
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            for (k, (name, agent)) in builders.into_iter().enumerate() {
                let index = k as u32 + 1;
                let plan = self.plan.candidate(
                    index,
                    (&name, agent),
                    judge.clone(),
                    inherited.clone(),
                    &self.log.dir.id,
                );
                let dir = create_run_dir(&plan)?;
                self.log.rec.candidates.push(CandidateRecord {
                    index,
                    run_id: dir.id.clone(),
                    agent: name,
                    state: CandidateState::Building,
                    reason: None,
                    error: None,
                    tree: None,
                });
                // Recorded before it starts: a resumed parent finds its candidates.
                self.save()?;
                self.log.dir.event(
                    Some(StageName::Execution),
                    EventKind::CandidateStarted,
                    json!({"index": index, "run_id": dir.id}),
                )?;
                spawn(Work::Fresh(Box::new(plan), dir), index, self.ui, cancel)?;
                live.insert(index);
            }
        } else if let Some(k) = self.log.rec.resume.chosen {
            return self.ship_recorded_choice(k, cancel).await;
        } else {
            let store = Store::new(&self.plan.target.repo.pipeline_dir());
            let cwd = self
                .plan
                .target
                .repo
                .work_tree
                .clone()
                .or_else(|| self.plan.target.repo.main_worktree.clone())
                .unwrap_or_else(|| self.plan.target.repo.common_dir.clone());
            for i in 0..self.log.rec.candidates.len() {
                let c = self.log.rec.candidates[i].clone();
                let dir = store.find(&c.run_id, Default::default())?;
                let rec = dir.read_record()?;
                match dir.effective_status(&rec) {
                    Status::Interrupted => {
                        self.ui.step(format!("resume: candidate {}", c.index));
                        let work = Work::Resume {
                            cwd: cwd.clone(),
                            dir,
                            judge: Some(judge.clone()),
                        };
                        spawn(work, c.index, self.ui, cancel)?;
                        live.insert(c.index);
                    }
                    Status::Running | Status::Pending => {
                        return Err(Error::usage(format!(
                            "candidate {} (run {}) is still running",
                            c.index, c.run_id
                        )));
                    }
                    _ => self.candidate_ended(c.index, &rec),
                }
            }
        }
        drop(done_tx);
        let mut ready: BTreeMap<u32, Submission> = BTreeMap::new();
        loop {
            if !ready.is_empty() && ready.len() == live.len() {
                match self.compare(&ready, cancel).await? {
                    Next::Continue(k) => {
                        let Some(chosen) = ready.remove(&k) else {
                            return Err(Error::other(format!("candidate {k} is not ready")));
                        };
                        let Submission {
                            tree,
                            changed_paths,
                            gates,
                            reply,
                            ..
                        } = chosen;
                        // Durable before anyone acts on it: a kill from here on resumes to
                        // shipping exactly this tree.
                        self.keep_choice(k, &tree)?;
                        let _ = reply.send(Decision::Chosen);
                        let why = format!("the verifier chose candidate {k}");
                        drop_all(&mut ready, &why);
                        self.wait_all(&mut finished, &mut live).await;
                        return self
                            .ship_candidate(k, &tree, (changed_paths, gates), cancel)
                            .await;
                    }
                    Next::Retry(again) => {
                        let issues = again.into_issues();
                        self.log.rec.resume.rejections += 1;
                        let rejections = self.log.rec.resume.rejections;
                        if rejections >= self.plan.policy.max_rounds {
                            drop_all(&mut ready, "every candidate was rejected");
                            self.wait_all(&mut finished, &mut live).await;
                            return Ok(Ending::Failed {
                                reason: Reason::VerifyRejected,
                                message: format!(
                                    "the verifier rejected every candidate {rejections} time(s) (verify.max_rounds = {})",
                                    self.plan.policy.max_rounds
                                ),
                                details: issues,
                            });
                        }
                        for (_, s) in std::mem::take(&mut ready) {
                            let _ = s.reply.send(Decision::Rejected(issues.clone()));
                        }
                        self.save()?;
                    }
                    Next::End(ending) => {
                        if !matches!(ending, Ending::Interrupted) {
                            drop_all(&mut ready, "the comparison failed");
                        }
                        // Interrupted: the candidates stop on their own and resume later.
                        ready.clear();
                        self.wait_all(&mut finished, &mut live).await;
                        return Ok(ending);
                    }
                }
                continue;
            }
            if live.is_empty() {
                break;
            }
            tokio::select! {
                Some(sub) = submissions.recv() => {
                    let c = &mut self.log.rec.candidates[sub.index as usize - 1];
                    c.state = CandidateState::Ready;
                    c.tree = Some(sub.tree.clone());
                    self.ui.step(format!("candidate {}: ready for the verifier", sub.index));
                    self.save()?;
                    ready.insert(sub.index, sub);
                }
                Some((k, result)) = finished.recv() => {
                    live.remove(&k);
                    ready.remove(&k);
                    self.candidate_finished(k, result);
                    self.save()?;
                }
            }
        }
        if cancel.is_cancelled() {
            return Ok(Ending::Interrupted);
        }
        Ok(self.none_passed())
    }

    /// Every candidate still running ends (dropped, interrupted, or after a decision).
    async fn wait_all(
        &mut self,
        finished: &mut mpsc::UnboundedReceiver<(u32, Result<Outcome>)>,
        live: &mut BTreeSet<u32>,
    ) {
        while !live.is_empty() {
            let Some((k, result)) = finished.recv().await else {
                break;
            };
            live.remove(&k);
            self.candidate_finished(k, result);
        }
        let _ = self.save();
    }

    fn candidate_finished(&mut self, k: u32, result: Result<Outcome>) {
        match result {
            Ok(o) => self.candidate_ended(k, &o.record),
            Err(e) => {
                let c = &mut self.log.rec.candidates[k as usize - 1];
                c.state = CandidateState::Failed;
                c.reason = Some(Reason::SetupFailed);
                c.error = Some(e.to_string());
            }
        }
    }

    fn candidate_ended(&mut self, k: u32, r: &crate::store::RunRecord) {
        let c = &mut self.log.rec.candidates[k as usize - 1];
        c.state = match r.status {
            Status::Succeeded => CandidateState::Chosen,
            Status::Abandoned => CandidateState::Dropped,
            Status::Interrupted | Status::Running | Status::Pending => CandidateState::Interrupted,
            Status::Failed => CandidateState::Failed,
        };
        c.reason = r.reason;
        c.error = r.error.clone();
        let line = match (&c.reason, &c.error) {
            (Some(reason), Some(e)) => {
                format!("candidate {k}: {} ({}: {e})", c.state, reason.name())
            }
            _ => format!("candidate {k}: {}", c.state),
        };
        self.ui.step(line);
        // The candidates' work counts towards the parent's totals.
        self.log.rec.stages.push(crate::store::record::StageRecord {
            stage: StageName::Execution,
            status: if r.status == Status::Failed {
                StageStatus::Fail
            } else {
                StageStatus::Pass
            },
            attempt: r.metrics.fix_attempts + 1,
            session_id: None,
            agent: Some(format!("candidate {k} ({})", c.agent)),
            started_at: Some(r.created_at.clone()),
            ended_at: r.ended_at.clone(),
            tokens: r.metrics.tokens,
            tokens_estimated: r.stages.iter().any(|s| s.tokens_estimated),
            cost_usd: r.metrics.cost_usd,
            credits: r.metrics.credits,
            error: r.error.clone(),
            note: Some(format!("run {}", c.run_id)),
            // The candidate's builder, as its own record names it.
            agent_info: r
                .stages
                .iter()
                .rev()
                .find(|s| s.stage == StageName::Execution && s.agent_info.is_some())
                .and_then(|s| s.agent_info.clone()),
        });
    }

    /// No candidate got to the verifier: the run fails as its first candidate did.
    fn none_passed(&self) -> Ending {
        let first = self.log.rec.candidates.iter().find(|c| c.reason.is_some());
        let details = self
            .log
            .rec
            .candidates
            .iter()
            .map(|c| {
                format!(
                    "candidate {} ({}): {} {}",
                    c.index,
                    c.run_id,
                    c.state,
                    c.error.as_deref().unwrap_or("")
                )
            })
            .collect();
        Ending::Failed {
            reason: first.and_then(|c| c.reason).unwrap_or(Reason::AgentError),
            message: format!(
                "none of the {} candidates passed its scope check and gates",
                self.log.rec.candidates.len()
            ),
            details,
        }
    }

    /// The verifier compares the ready candidates.
    async fn compare(
        &mut self,
        ready: &BTreeMap<u32, Submission>,
        cancel: &mut Cancel,
    ) -> Result<Next<u32>> {
        self.log.rec.resume.verifier_runs += 1;
        let round = self.log.rec.resume.verifier_runs;
        let max = self.plan.policy.max_rounds;
        let verifier = self.plan.agents.verifier.clone();
        self.begin(
            StageName::Verification,
            format!(
                "verification {round}/{max}: verifier ({}) compares {} candidate{}",
                verifier.name,
                ready.len(),
                if ready.len() == 1 { "" } else { "s" }
            ),
        )?;
        // The diffs share the budget of one.
        let limit = prompts::DIFF_LIMIT / ready.len().max(1);
        let candidates = ready
            .values()
            .map(|s| {
                let (diff, diff_cut) = prompts::head(&String::from_utf8_lossy(&s.patch), limit);
                prompts::CandidateVars {
                    index: s.index,
                    agent: s.agent.clone(),
                    worktree: s.worktree.display().to_string(),
                    gates: s
                        .gates
                        .iter()
                        .map(|g| format!("{} ({:.1}s)", g.name, g.duration_s))
                        .collect(),
                    changed_paths: s.changed_paths.clone(),
                    diff,
                    diff_cut,
                }
            })
            .collect();
        let scope = self.scope.describe();
        let plan = self.bounded_plan();
        let prompt = self.plan.agents.templates.render(
            "candidates",
            prompts::CandidatesVars {
                run_id: &self.log.dir.id,
                round,
                max_rounds: max,
                task: &self.plan.target.task,
                plan: plan.as_deref(),
                scope: &scope,
                candidates,
            },
        )?;
        let mut v = crate::run::next::proceed!(self.run_verifier(round, &prompt, cancel).await?);
        let choice = match (v.approved, v.choice) {
            (true, Some(k)) if ready.contains_key(&k) => Some(k),
            (true, None) if ready.len() == 1 => ready.keys().next().copied(),
            (true, named) => {
                // An approval that names no candidate that is ready chooses nothing.
                v.approved = false;
                v.issues = vec![self.invalid_choice(named, v.choice_written.as_deref(), ready)];
                None
            }
            (false, _) => None,
        };
        self.log.rec.verification = Verification {
            rounds: round,
            approved: choice.is_some(),
            issues: v.issues.clone(),
        };
        self.log.rec.metrics.verification_rounds = round;
        if let Some(last) = self.log.rec.stages.last_mut() {
            last.status = if choice.is_some() {
                StageStatus::Pass
            } else {
                StageStatus::Fail
            };
            match choice {
                Some(k) => {
                    last.note = Some(format!("chose candidate {k} ({} compared)", ready.len()));
                }
                None => last.error = Some(format!("rejected ({} issue(s))", v.issues.len())),
            }
        }
        self.log.dir.event(
            Some(StageName::Verification),
            EventKind::Verdict,
            json!({"round": round, "approved": choice.is_some(), "choice": choice, "parsed": v.parsed, "issues": v.issues}),
        )?;
        self.save()?;
        Ok(match choice {
            Some(k) => {
                self.ui.step(format!(
                    "verification {round}/{max}: approved candidate {k}"
                ));
                Next::Continue(k)
            }
            None => {
                self.ui.step(format!(
                    "verification {round}/{max}: rejected every candidate ({} issue(s))",
                    v.issues.len()
                ));
                Next::Retry(Again::Rejected { issues: v.issues })
            }
        })
    }

    /// Record the verifier's choice and keep the chosen tree reachable (the candidate's archive
    /// ref), before the candidates hear of it.
    fn keep_choice(&mut self, k: u32, tree: &TreeId) -> Result<()> {
        let run_id = self.log.rec.candidates[k as usize - 1].run_id.clone();
        let archive = crate::run::stages::rollback::archive(
            &self.ws.repo,
            &run_id,
            tree,
            &self.plan.target.base,
            None,
            &format!("chosen by the verifier of run {}", self.log.dir.id),
        )?;
        let c = &mut self.log.rec.candidates[k as usize - 1];
        c.state = CandidateState::Chosen;
        c.tree = Some(tree.clone());
        self.log.rec.resume.chosen = Some(k);
        self.save()?;
        self.log.dir.event(
            Some(StageName::Verification),
            EventKind::CandidateChosen,
            json!({"index": k, "tree": tree, "archive": archive}),
        )
    }

    /// A resumed run whose verifier had already chosen: the candidates still unfinished are
    /// abandoned (their work archived) and the chosen tree ships.
    async fn ship_recorded_choice(&mut self, k: u32, cancel: &mut Cancel) -> Result<Ending> {
        let store = Store::new(&self.plan.target.repo.pipeline_dir());
        let mut chosen_rec = None;
        for i in 0..self.log.rec.candidates.len() {
            let c = self.log.rec.candidates[i].clone();
            let dir = store.find(&c.run_id, Default::default())?;
            let mut rec = dir.read_record()?;
            if !dir.effective_status(&rec).is_final() {
                let _lock = dir.lock()?;
                let why = format!(
                    "the verifier of run {} chose candidate {k}",
                    self.log.dir.id
                );
                rec = crate::run::abandon::abandon(&self.plan.target.repo, &dir, rec, &why)?;
            }
            if c.index == k && rec.status != Status::Failed {
                chosen_rec = Some(rec);
            } else {
                if c.index == k {
                    chosen_rec = Some(rec.clone());
                }
                self.candidate_ended(c.index, &rec);
            }
        }
        let c = &self.log.rec.candidates[k as usize - 1];
        let Some(tree) = c.tree.clone() else {
            return Err(Error::other(format!(
                "candidate {k} was chosen but its record holds no tree"
            )));
        };
        let rec = chosen_rec.ok_or_else(|| Error::other(format!("candidate {k} is gone")))?;
        let gates = {
            let n = rec.gates.len();
            rec.gates[n.saturating_sub(self.plan.policy.gates.len())..].to_vec()
        };
        self.ui.step(format!(
            "resume: shipping candidate {k}, which the verifier chose"
        ));
        self.ship_candidate(k, &tree, (rec.changed_paths.clone(), gates), cancel)
            .await
    }

    /// Bring the chosen candidate's tree into this run's worktree and ship it.
    async fn ship_candidate(
        &mut self,
        k: u32,
        tree: &TreeId,
        (changed_paths, gates): (Vec<String>, Vec<GateRecord>),
        cancel: &mut Cancel,
    ) -> Result<Ending> {
        // The chosen tree is what the verifier judged, kept on the candidate's archive ref
        // (keep_choice). It ships unless the candidate failed after the choice (it found the
        // verifier had changed its files while comparing).
        let c = &mut self.log.rec.candidates[k as usize - 1];
        if c.state == CandidateState::Failed {
            return Ok(Ending::Failed {
                reason: c.reason.unwrap_or(Reason::AgentError),
                message: format!(
                    "candidate {k} was chosen but failed: {}",
                    c.error.as_deref().unwrap_or("it ended")
                ),
                details: Vec::new(),
            });
        }
        c.state = CandidateState::Chosen;
        // This worktree has stayed at the base: a two-tree read-tree moves it to the tree.
        crate::git::worktree::switch_files_to(&self.ws.worktree, tree)?;
        let snapshot = self.snapshot()?;
        if snapshot.tree != tree {
            return Err(Error::other(format!(
                "the worktree does not hold candidate {k}'s tree after checking it out"
            )));
        }
        self.log.rec.changed_paths = changed_paths;
        self.log.rec.gates.extend(gates);
        self.checkpoint(Checkpoint::Approved { tree: tree.clone() })?;
        match self.docs_and_ship(&snapshot, 1, cancel).await? {
            Next::Continue(()) => Ok(Ending::Shipped),
            Next::End(end) => Ok(end),
            // No builder here to fix what the commit hook refused.
            Next::Retry(_) => Ok(Ending::Failed {
                reason: Reason::GateFailed,
                message: format!("the repository's commit hook refused candidate {k}"),
                details: Vec::new(),
            }),
        }
    }
}

impl Run<'_> {
    /// Why an approval's choice ships nothing, in words: what it chose, and why that is not a
    /// candidate that can ship.
    fn invalid_choice(
        &self,
        named: Option<u32>,
        written: Option<&str>,
        ready: &BTreeMap<u32, Submission>,
    ) -> String {
        let ready_list = ready
            .keys()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let why = match (named, written) {
            (Some(k), _) => match k
                .checked_sub(1)
                .and_then(|i| self.log.rec.candidates.get(i as usize))
            {
                Some(c) => format!(
                    "chose candidate {k}, which is not ready to ship (it {}{})",
                    c.state,
                    c.reason
                        .map(|r| format!(": {}", r.name()))
                        .unwrap_or_default()
                ),
                None => format!(
                    "chose candidate {k}, and there are only {} candidates",
                    self.log.rec.candidates.len()
                ),
            },
            (None, Some(w)) => format!("gave \"choice\": {w}, which names no candidate"),
            (None, None) => "approved without choosing (\"choice\": N)".to_owned(),
        };
        format!("the verifier {why}; the candidates ready to ship: {ready_list}")
    }
}

fn drop_all(ready: &mut BTreeMap<u32, Submission>, why: &str) {
    for (_, s) in std::mem::take(ready) {
        let _ = s.reply.send(Decision::Dropped(why.to_owned()));
    }
}
