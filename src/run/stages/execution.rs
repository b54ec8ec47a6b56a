//! Execution and its fix loop: the builder works, its changes are checked against the scope,
//! the gates run, the verifier judges, the docs agent may follow, and the work ships. What fails
//! goes back to the builder (capped), unless a circuit breaker says the loop is going nowhere.

use serde_json::json;

use crate::agent::RoleAgent;
use crate::error::Error;
use crate::error::Result;
use crate::git::TreeId;
use crate::git::snapshot::Snapshot;
use crate::plan::prompts;
use crate::policy::scope::Violation;
use crate::process_end::End;
use crate::run::next::{Again, Fix, Next, proceed};
use crate::run::outcome::Ending;
use crate::run::state::Run;
use crate::run::step;
use crate::safety::process::Cancel;
use crate::store::EventKind;
use crate::store::record::Checkpoint;
use crate::store::record::GateRecord;
use crate::store::record::Reason;
use crate::store::record::StageName;
use crate::store::record::StageStatus;

/// Where a (resumed) execution enters its loop.
enum Entry {
    /// Run the builder.
    Build,
    /// Check what an earlier builder run left (it finished before the interruption).
    Check,
    /// Check it, and ship it at once if it is the tree the verifier approved.
    Approved(TreeId),
}

impl Run<'_> {
    /// The fix loop: rounds of build, scope check, gates, judgement and ship, until one ships or
    /// the run ends. Every step answers with a [`Next`]; [`Run::retry`] decides what a retry
    /// costs.
    pub(crate) async fn execution(&mut self, cancel: &mut Cancel) -> Result<Ending> {
        let builder = self
            .plan
            .agents
            .builder
            .clone()
            .ok_or_else(|| Error::other("this run has no builder"))?;
        if matches!(
            self.log.rec.resume.checkpoint,
            Some(Checkpoint::Committed { .. })
        ) {
            // A resumed run attests its commit: the attestation names the CLIs' versions too.
            self.learn_cli_versions().await;
        }
        let mut entry = match self.entry()? {
            Ok(entry) => entry,
            Err(ending) => return Ok(ending),
        };
        loop {
            if cancel.is_cancelled() {
                return Ok(Ending::Interrupted);
            }
            match self.round(&builder, entry, cancel).await? {
                Next::Continue(()) => return Ok(Ending::Shipped),
                Next::End(ending) => return Ok(ending),
                Next::Retry(again) => {
                    if let Some(ending) = self.retry(again)? {
                        return Ok(ending);
                    }
                    entry = Entry::Build;
                }
            }
        }
    }

    /// Where to enter the loop: a fresh run starts with the builder; a resumed one continues
    /// from its checkpoint (re-run an interrupted builder, re-check what it built, or ship what
    /// the verifier approved when the worktree still holds exactly that). `Err`: the run ends.
    fn entry(&mut self) -> Result<std::result::Result<Entry, Ending>> {
        Ok(Ok(match self.log.rec.resume.checkpoint.clone() {
            None => Entry::Build,
            Some(Checkpoint::Built { .. }) => Entry::Check,
            Some(Checkpoint::Approved { tree }) => Entry::Approved(tree),
            Some(Checkpoint::Builder { attempt }) => {
                // That attempt never finished: run it again under the same number.
                self.log.rec.resume.attempt = attempt.saturating_sub(1);
                Entry::Build
            }
            Some(Checkpoint::Committed { commit, tree }) => {
                // The commit was made; only its attestation and the cleanup were left.
                let tip = crate::git::objects::ref_value(
                    &self.ws.repo,
                    &self
                        .ws
                        .branch
                        .as_ref()
                        .map(|b| b.full())
                        .unwrap_or_default(),
                )?;
                if tip.as_deref() == Some(commit.as_str()) {
                    self.ui.step("resume: the commit was made; attesting it");
                    self.complete_ship(&commit, &tree)?;
                    return Ok(Err(Ending::Shipped));
                }
                Entry::Approved(tree)
            }
        }))
    }

    /// One round: the builder works (unless resuming after it), then its change is checked,
    /// gated, judged and shipped. `Continue`: shipped.
    async fn round(
        &mut self,
        builder: &RoleAgent,
        entry: Entry,
        cancel: &mut Cancel,
    ) -> Result<Next> {
        let resumed = !matches!(entry, Entry::Build);
        let failed_tools = if resumed {
            Vec::new()
        } else {
            proceed!(self.build_attempt(builder, cancel).await?)
        };
        let attempt = self.log.rec.resume.attempt.max(1);
        let snapshot = proceed!(self.changes(attempt, resumed, &failed_tools)?);
        if let Entry::Approved(tree) = &entry
            && *tree == snapshot.tree
        {
            self.ui
                .step("resume: the worktree holds the approved change; shipping it");
            return self.docs_and_ship(&snapshot, attempt, cancel).await;
        }
        proceed!(self.scope_check(attempt, &snapshot)?);
        let snapshot = proceed!(self.gates(attempt, snapshot, cancel).await?);
        proceed!(self.judgement(&snapshot, cancel).await?);
        self.docs_and_ship(&snapshot, attempt, cancel).await
    }

    /// The builder's turn: a new attempt, with the feedback of the last one. `Continue` with
    /// the builder's own tool calls that failed.
    async fn build_attempt(
        &mut self,
        builder: &RoleAgent,
        cancel: &mut Cancel,
    ) -> Result<Next<Vec<String>>> {
        self.log.rec.resume.attempt += 1;
        let attempt = self.log.rec.resume.attempt;
        let feedback = self.log.rec.resume.feedback.take();
        let prompt = self.builder_prompt(attempt, feedback)?;
        let label = if attempt == 1 {
            format!("execution: builder ({})", builder.name)
        } else {
            format!(
                "execution attempt {attempt}: builder ({}) {}",
                builder.name, self.log.rec.resume.why_again
            )
        };
        self.begin(StageName::Execution, label)?;
        self.checkpoint(Checkpoint::Builder { attempt })?;
        let session = self.exec_session.clone();
        let ran = self
            .run_role(
                builder,
                StageName::Execution,
                attempt,
                &session,
                &prompt,
                cancel,
            )
            .await?;
        if let Some(ending) =
            self.record_agent(StageName::Execution, attempt, &session, &ran, builder)
        {
            return Ok(Next::End(ending));
        }
        self.checkpoint(Checkpoint::Built { attempt })?;
        Ok(Next::Continue(ran.failed_tools))
    }

    /// Work the superproject's tree cannot carry: files changed inside a submodule without a
    /// commit there, or a gitlink moved to a commit on no remote-tracking branch of the
    /// submodule (it exists only in this worktree, which goes when the run ends).
    fn submodule_problem(&self, snapshot: &Snapshot) -> Result<Option<String>> {
        if !self.ws.worktree.join(".gitmodules").exists() {
            return Ok(None);
        }
        let Some(snap) = self.ws.snap.as_ref() else {
            return Ok(None);
        };
        let dirty = snap.dirty_submodules()?;
        if !dirty.is_empty() {
            return Ok(Some(format!(
                "the builder changed files inside submodule {} without committing them there; a submodule's change ships as a commit of it (the superproject records only its commit id)",
                dirty.join(", ")
            )));
        }
        let unpublished = crate::git::submodules::unpublished(
            &self.ws.repo,
            &self.ws.worktree,
            &self.plan.target.base_tree,
            &snapshot.tree,
            &self.log.rec.submodule_origins,
        )?;
        if let Some((path, commit)) = unpublished.first() {
            return Ok(Some(format!(
                "the change moves submodule {path} to {}, a commit on no remote-tracking branch of it: it exists only in this run's worktree, so the shipped commit would point at nothing; push it to the submodule's remote first",
                &commit[..commit.len().min(12)]
            )));
        }
        Ok(None)
    }

    /// What the builder changed, as a snapshot; the run ends when it changed nothing or when the
    /// tree repeats an earlier attempt's (oscillation). A resumed check of an attempt already
    /// recorded is not a new attempt.
    fn changes(
        &mut self,
        attempt: u32,
        resumed: bool,
        failed_tools: &[String],
    ) -> Result<Next<Snapshot>> {
        let snapshot = self.snapshot()?;
        self.log.rec.changed_paths = snapshot
            .changes
            .iter()
            .map(|c| c.path.to_string_lossy().into_owned())
            .collect();
        if let Some(why) = self.submodule_problem(&snapshot)? {
            // The archive holds the superproject's tree only: the worktree is the work.
            self.keep_reason = Some(why.clone());
            return Ok(Next::End(Ending::failed(Reason::AgentError, why)));
        }
        if snapshot.changes.is_empty() {
            // Its own tool calls failing is the likelier cause than having nothing to do.
            let why = match failed_tools.last() {
                Some(last) => format!(
                    "the builder finished without changing any file; its own tool calls failed, the last with: {last}"
                ),
                None => "the builder finished without changing any file".to_owned(),
            };
            return Ok(Next::End(Ending::failed(Reason::AgentError, why)));
        }
        if !resumed && let Some(why) = self.breakers.attempt(attempt, &snapshot.tree) {
            return Ok(Next::End(self.trip("oscillation", &why, Vec::new())));
        }
        Ok(Next::Continue(snapshot))
    }

    /// The scope check, before any gate or verifier sees the work.
    fn scope_check(&mut self, attempt: u32, snapshot: &Snapshot) -> Result<Next> {
        let mut violations = self.scope.check(&snapshot.changes);
        violations.extend(crate::policy::scope::Scope::escaping_symlinks(
            &self.ws.worktree,
            &snapshot.changes,
        ));
        self.log.dir.event(
            Some(StageName::Execution),
            EventKind::ScopeChecked,
            json!({
                "attempt": attempt,
                "changed": snapshot.changes.len(),
                "violations": violations.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        )?;
        self.save()?;
        if !violations.is_empty() {
            self.log.rec.metrics.scope_violations += 1;
            self.ui.step(format!(
                "scope: {} of {} changed paths outside the scope",
                violations.len(),
                snapshot.changes.len()
            ));
            let mut details: Vec<String> = violations.iter().map(ToString::to_string).collect();
            details.truncate(50);
            return Ok(Next::Retry(Again::Fix(Fix {
                what: "scope".to_owned(),
                why: "scope violation".to_owned(),
                feedback: scope_feedback(&violations),
                output: None,
                exhausted: Ending::Failed {
                    reason: Reason::ScopeViolation,
                    message: format!(
                        "{} changed path(s) outside the scope after {} fix attempt(s)",
                        violations.len(),
                        self.log.rec.resume.fixes
                    ),
                    details,
                },
            })));
        }
        self.ui.step(format!(
            "scope: ok ({} changed path{})",
            snapshot.changes.len(),
            if snapshot.changes.len() == 1 { "" } else { "s" }
        ));
        Ok(Next::Continue(()))
    }

    /// The gates, fail-closed, in order. A gate that fixes (a formatter) made a new snapshot:
    /// that is what is judged and shipped.
    async fn gates(
        &mut self,
        attempt: u32,
        snapshot: Snapshot,
        cancel: &mut Cancel,
    ) -> Result<Next<Snapshot>> {
        proceed!(self.run_gates(attempt, cancel).await?);
        if cancel.is_cancelled() {
            return Ok(Next::End(Ending::Interrupted));
        }
        if self.ws.last_tree.as_deref() == Some(snapshot.tree.as_str()) {
            Ok(Next::Continue(snapshot))
        } else {
            Ok(Next::Continue(self.snapshot()?))
        }
    }

    /// Verification, in a session the builder never sees (or, for a candidate, its parent's
    /// comparison). Rounds number verifier runs; the cap counts rejections (a commit-hook
    /// refusal after an approval sends the work round again without counting against it).
    async fn judgement(&mut self, snapshot: &Snapshot, cancel: &mut Cancel) -> Result<Next> {
        self.log.rec.resume.verifier_runs += 1;
        let round = self.log.rec.resume.verifier_runs;
        match self.plan.agents.judge.clone() {
            Some(judge) => proceed!(self.submit(&judge, round, snapshot, cancel).await?),
            None => proceed!(self.verify(round, snapshot, cancel).await?),
        }
        self.checkpoint(Checkpoint::Approved {
            tree: snapshot.tree.clone(),
        })?;
        Ok(Next::Continue(()))
    }

    /// What a retry costs: `Some(ending)` when a cap or a circuit breaker ends the run instead.
    fn retry(&mut self, again: Again) -> Result<Option<Ending>> {
        match again {
            Again::Fix(fix) => {
                if let Some(output) = &fix.output
                    && let Some(why) = self.breakers.error(&fix.what, output)
                {
                    return Ok(Some(self.trip("same_error", &why, first_lines(output, 5))));
                }
                if self.log.rec.resume.fixes >= self.plan.policy.max_fix_attempts {
                    return Ok(Some(fix.exhausted));
                }
                self.again(fix.why, fix.feedback)?;
                Ok(None)
            }
            Again::Rejected { issues } => {
                self.log.rec.resume.rejections += 1;
                let rejections = self.log.rec.resume.rejections;
                if rejections >= self.plan.policy.max_rounds {
                    return Ok(Some(Ending::Failed {
                        reason: Reason::VerifyRejected,
                        message: format!(
                            "the verifier rejected the work {rejections} time(s) (verify.max_rounds = {})",
                            self.plan.policy.max_rounds
                        ),
                        details: issues,
                    }));
                }
                if let Some(why) = self.breakers.error("the verifier", &issues.join("\n")) {
                    return Ok(Some(self.trip("same_error", &why, issues)));
                }
                self.log.rec.resume.why_again = format!(
                    "(verification round {} rejected)",
                    self.log.rec.resume.verifier_runs
                );
                self.log.rec.resume.feedback = Some(verifier_feedback(&issues));
                self.save()?;
                Ok(None)
            }
        }
    }

    /// Count a fix attempt and say what the builder is told next.
    fn again(&mut self, why: String, feedback: String) -> Result<()> {
        self.log.rec.resume.fixes += 1;
        self.log.rec.metrics.fix_attempts = self.log.rec.resume.fixes;
        self.log.rec.resume.why_again = format!(
            "(fix {}/{}: {why})",
            self.log.rec.resume.fixes, self.plan.policy.max_fix_attempts
        );
        self.log.rec.resume.feedback = Some(feedback);
        self.save()
    }

    /// Docs, then ship. `Continue`: shipped; `Retry`: the commit hook refused.
    pub(crate) async fn docs_and_ship(
        &mut self,
        snapshot: &Snapshot,
        attempt: u32,
        cancel: &mut Cancel,
    ) -> Result<Next> {
        let shipped_tree = match self.docs(snapshot, attempt, cancel).await? {
            Some(tree) => tree,
            None => snapshot.tree.clone(),
        };
        self.begin(StageName::Ship, "ship: committing".to_owned())?;
        self.learn_cli_versions().await;
        let shipped = match self.ship(&shipped_tree) {
            Err(Error::Interrupted) => None,
            other => Some(other?),
        };
        let hook_output = match shipped {
            Some(None) => return Ok(Next::Continue(())),
            Some(Some(output)) => Some(output),
            None => None,
        };
        let Some(hook_output) = hook_output.filter(|_| !cancel.is_cancelled()) else {
            // Ctrl-C reached the commit hook too: its failure says nothing about the approved
            // work, which a resume ships (from the verified state) without building again.
            self.undo_docs(snapshot)?;
            return Ok(Next::End(Ending::Interrupted));
        };
        self.ui.step("ship: the commit hook refused");
        self.log.rec.gates.push(GateRecord {
            name: "commit-hook".to_owned(),
            status: StageStatus::Fail,
            attempt,
            duration_s: 0.0,
            error: Some(first_line(&hook_output)),
        });
        // The builder works from the verified state, without the docs agent's edits.
        self.undo_docs(snapshot)?;
        Ok(Next::Retry(Again::Fix(Fix {
            what: "the commit hook".to_owned(),
            why: "commit hook failed".to_owned(),
            feedback: format!(
                "The work was approved, but the repository's commit hook refused the commit:\n\n```\n{}\n```",
                prompts::tail(&hook_output, prompts::GATE_OUTPUT_LIMIT)
            ),
            exhausted: Ending::Failed {
                reason: Reason::GateFailed,
                message: format!(
                    "the commit hook still refuses after {} fix attempt(s)",
                    self.log.rec.resume.fixes
                ),
                details: vec![first_line(&hook_output)],
            },
            output: Some(hook_output),
        })))
    }

    /// Stop the loop on a circuit breaker: recorded, with its evidence.
    fn trip(&mut self, breaker: &str, why: &str, evidence: Vec<String>) -> Ending {
        self.ui.step(why);
        let _ = self.log.dir.event(
            Some(StageName::Execution),
            EventKind::BreakerTripped,
            json!({"breaker": breaker, "reason": why, "evidence": evidence}),
        );
        Ending::Failed {
            reason: Reason::BreakerTripped,
            message: why.to_owned(),
            details: evidence,
        }
    }

    fn builder_prompt(&self, attempt: u32, feedback: Option<String>) -> Result<String> {
        let scope = self.scope.describe();
        let spec = self
            .spec
            .as_deref()
            .map(|s| prompts::bounded(s, prompts::TEXT_LIMIT));
        let plan = self.bounded_plan();
        self.plan.agents.templates.render(
            "builder",
            prompts::BuilderVars {
                run_id: &self.log.dir.id,
                attempt,
                branch: self.ws.branch.as_ref().map_or("", |b| b.as_str()),
                base: &self.plan.target.base,
                task: &self.plan.target.task,
                spec: spec.as_deref(),
                plan: plan.as_deref(),
                scope: &scope,
                gates: self
                    .plan
                    .policy
                    .gates
                    .iter()
                    .map(|g| g.name.get_ref().as_str())
                    .collect(),
                feedback,
            },
        )
    }

    /// Wait until no other run of the repository is running the exclusive gate `name`.
    async fn exclusive_gate(
        &self,
        name: &str,
        cancel: &mut Cancel,
    ) -> Result<crate::store::lock::GateLock> {
        let dir = self.plan.target.repo.pipeline_dir();
        let mut told = false;
        loop {
            if let Some(lock) = crate::store::lock::try_gate_lock(&dir, name)? {
                return Ok(lock);
            }
            if !told {
                self.ui.step(format!(
                    "gate {name}: waiting (exclusive; another run has it)"
                ));
                told = true;
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                () = cancel.cancelled() => return Err(Error::Interrupted),
            }
        }
    }

    /// Run the gates in order; the first failure stops the rest.
    pub(crate) async fn run_gates(&mut self, attempt: u32, cancel: &mut Cancel) -> Result<Next> {
        if let Some(next) = self.setup_before_gates(attempt, cancel).await? {
            return Ok(next);
        }
        for gate in &self.plan.policy.gates {
            let name = gate.name.get_ref().clone();
            self.log.rec.stage = Some(StageName::Gates);
            let _exclusive = if gate.exclusive {
                Some(self.exclusive_gate(&name, cancel).await?)
            } else {
                None
            };
            let before = self.step_start().await?;
            self.ui.start(format!("gate {name}: running"));
            let tree = self.ws.last_tree.clone();
            let ran = step::run_gate(
                &self.ctx(),
                gate,
                (attempt, tree.as_ref()),
                &self.exec_session,
                cancel,
            )
            .await?;
            // A gate runs code the agent wrote (its tests): held to the same containment.
            self.after_step(before, &format!("gate {name}")).await?;
            let end = &ran.outcome.end;
            if *end == End::Interrupted {
                return Err(Error::Interrupted);
            }
            // What ships is the snapshot the gates judged: a gate's edits are taken into it
            // (`fixes = true`, scope-checked again) or fail the gate.
            let edits = if gate.builtin.is_none() {
                match self.gate_edits(&name, gate.fixes, end.success())? {
                    GateEdits::None => None,
                    GateEdits::Refused(why) => Some(why),
                    // Not the builder's to fix: another attempt would meet the same edits.
                    GateEdits::NotTheBuilders(why) => {
                        self.ui.step(format!("gate {name}: FAIL ({why})"));
                        return Ok(Next::End(Ending::Failed {
                            reason: Reason::GateFailed,
                            message: why,
                            details: vec![format!(
                                "commit those files, add them to .gitignore, or set fixes = true on gate {name}"
                            )],
                        }));
                    }
                }
            } else {
                None
            };
            let end = &match &edits {
                Some(_) => End::Exited(1),
                None => end.clone(),
            };
            let passed = end.success();
            self.log.rec.gates.push(GateRecord {
                name: name.clone(),
                status: if passed {
                    StageStatus::Pass
                } else {
                    StageStatus::Fail
                },
                attempt,
                duration_s: step::secs(ran.outcome.duration),
                error: (!passed).then(|| edits.clone().unwrap_or_else(|| end.describe())),
            });
            self.save()?;
            if passed {
                self.ui.step(format!(
                    "gate {name}: pass ({:.1}s)",
                    ran.outcome.duration.as_secs_f64()
                ));
                continue;
            }
            let why = edits.clone().unwrap_or_else(|| end.describe());
            self.ui.step(format!("gate {name}: FAIL ({why})"));
            let mut output = String::from_utf8_lossy(&step::combined(&ran.outcome)).into_owned();
            if let Some(e) = &edits {
                output = format!("{e}\n{output}");
            }
            let feedback = format!(
                "Gate `{name}` (`{}`) failed: {}.\nIts output (the end of it):\n\n```\n{}\n```",
                gate.describe(),
                end.describe(),
                prompts::tail(output.trim_end(), prompts::GATE_OUTPUT_LIMIT)
            );
            let output = format!("{}\n{output}", end.describe());
            return Ok(self.fix_again(format!("gate {name}"), feedback, output));
        }
        Ok(Next::Continue(()))
    }
}

impl Run<'_> {
    /// The setup steps whose files the attempt changed (a new dependency in the lockfile) run
    /// again before its gates; one that fails now is the change's to fix.
    async fn setup_before_gates(
        &mut self,
        attempt: u32,
        cancel: &mut Cancel,
    ) -> Result<Option<Next>> {
        let Some(tree) = self.ws.last_tree.clone() else {
            return Ok(None);
        };
        if self.plan.policy.setup.is_empty() {
            return Ok(None);
        }
        let Some(failed) = self.run_setup(&tree, attempt, cancel).await? else {
            return Ok(None);
        };
        let name = failed.name;
        let feedback = format!(
            "Setup step `{name}` (`{}`) failed on your change: {}.\nIts output (the end of it):\n\n```\n{}\n```",
            failed.command,
            failed.why,
            prompts::tail(failed.output.trim_end(), prompts::GATE_OUTPUT_LIMIT)
        );
        let output = format!("{}\n{}", failed.why, failed.output);
        Ok(Some(self.fix_again(
            format!("setup {name}"),
            feedback,
            output,
        )))
    }

    /// A check (`what`: "gate lint") failed on the change: the builder gets `feedback` and
    /// another attempt, until the fix attempts run out.
    fn fix_again(&self, what: String, feedback: String, output: String) -> Next {
        Next::Retry(Again::Fix(Fix {
            why: format!("{what} failed"),
            feedback,
            output: Some(output),
            exhausted: Ending::Failed {
                reason: Reason::GateFailed,
                message: format!(
                    "{what} still fails after {} fix attempt(s)",
                    self.log.rec.resume.fixes
                ),
                details: vec![format!(
                    "its output is in {}",
                    self.log.dir.path.join("outputs").display()
                )],
            },
            what,
        }))
    }
}

/// What a gate's own edits of the worktree mean.
enum GateEdits {
    /// None, or a fixing gate's edits within the scope: part of the change now.
    None,
    /// The gate fails: a builder's next attempt may avoid it (a formatter rewrote its files).
    Refused(String),
    /// The gate fails on files the builder never touched (a lock file a build writes): no
    /// attempt of the builder changes that.
    NotTheBuilders(String),
}

impl Run<'_> {
    /// After a gate: files it changed since the snapshot. Edits of a gate that may (`fixes =
    /// true`) and passed are part of the change when within the scope (a new snapshot); any
    /// other gate's edits are undone, so that the builder is never held to what a gate wrote,
    /// and a gate that passed fails for them.
    fn gate_edits(&mut self, name: &str, fixes: bool, passed: bool) -> Result<GateEdits> {
        let edited = self.changed_since_snapshot()?;
        if edited.is_empty() {
            return Ok(GateEdits::None);
        }
        let list = edited.join(", ");
        if !fixes || !passed {
            let Some(judged) = self.ws.last_tree.clone() else {
                return Ok(GateEdits::Refused(format!(
                    "gate {name} changed files: {list}"
                )));
            };
            let undone = self.restore_to(&judged, &format!("gate {name}'s edits"))?;
            if !passed {
                self.ui
                    .step(format!("gate {name}: its edits are undone: {list}"));
                return Ok(GateEdits::None);
            }
            let why = format!(
                "gate {name} changed files: {list} (a gate that edits must say so: fixes = true)"
            );
            let builders = &self.log.rec.changed_paths;
            let touched = undone
                .iter()
                .any(|c| builders.iter().any(|p| std::path::Path::new(p) == c.path));
            return Ok(if touched {
                GateEdits::Refused(why)
            } else {
                GateEdits::NotTheBuilders(why)
            });
        }
        let snapshot = self.snapshot()?;
        let mut violations = self.scope.check(&snapshot.changes);
        violations.extend(crate::policy::scope::Scope::escaping_symlinks(
            &self.ws.worktree,
            &snapshot.changes,
        ));
        if !violations.is_empty() {
            let v: Vec<String> = violations.iter().map(ToString::to_string).collect();
            return Ok(GateEdits::Refused(format!(
                "gate {name} changed files outside the scope: {}",
                v.join("; ")
            )));
        }
        self.log.rec.changed_paths = snapshot
            .changes
            .iter()
            .map(|c| c.path.to_string_lossy().into_owned())
            .collect();
        self.ui.step(format!(
            "gate {name}: its edits are part of the change: {list}"
        ));
        Ok(GateEdits::None)
    }
}

fn scope_feedback(violations: &[Violation]) -> String {
    let mut text = String::from(
        "These changed paths are outside the run's scope. Undo those changes (restore modified or deleted files, remove added ones) and do the task within the scope:\n\n",
    );
    for v in violations.iter().take(100) {
        text.push_str(&format!("- {v}\n"));
    }
    if violations.len() > 100 {
        text.push_str(&format!("- ... and {} more\n", violations.len() - 100));
    }
    text
}

fn verifier_feedback(issues: &[String]) -> String {
    let mut text =
        String::from("An independent verifier reviewed your change and rejected it:\n\n");
    for issue in issues {
        text.push_str(&format!("- {issue}\n"));
    }
    text
}

pub(crate) fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

fn first_lines(s: &str, n: usize) -> Vec<String> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(|l| l.trim().to_owned())
        .collect()
}
