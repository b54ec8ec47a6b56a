//! The run driver: one task, in its own worktree, from the builder's first attempt to a shipped,
//! attested commit or a rollback that archives the work.
//!
//! ```text
//! setup ─► execution ─► scope check ─► gates ─► verification ─► ship
//!              ▲   violation │   failure │  rejection │ commit hook fails
//!              └─────────────┴───────────┴────────────┘  (fix loop, capped)
//! any terminal failure ─► rollback (archive ref, then worktree + branch removed)
//! SIGINT/SIGTERM ─► interrupted (worktree kept)
//! ```

pub mod plan;
pub mod prompts;
pub mod rollback;
pub mod ship;
pub mod step;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::agent::verdict::{self, Verdict};
use crate::agent::{Role, RoleAgent};
use crate::attest::{self, Attestation};
use crate::config::ShipMode;
use crate::error::{Error, Exit, Result};
use crate::git::snapshot::{self, Snapshot, Snapshotter};
use crate::git::{Git, objects, prepare, worktree};
use crate::ids;
use crate::process::{Cancel, End};
use crate::redact::Redactor;
use crate::risk::Risk;
use crate::scope::Violation;
use crate::store::record::{
    GateRecord, Metrics, Reason, RunRecord, StageRecord, StageStatus, Status, Verification,
};
use crate::store::{RunDir, Store};
use crate::ui::Ui;
use plan::RunPlan;
use step::{AgentCall, StepCtx};

/// How a run ended, before its record is finalised.
enum Ending {
    Shipped,
    Failed {
        reason: Reason,
        message: String,
        details: Vec<String>,
    },
    Interrupted,
}

impl Ending {
    fn failed(reason: Reason, message: impl Into<String>) -> Ending {
        Ending::Failed {
            reason,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

/// The finished run: its record, and detail lines for the user (violations, gate output...).
pub struct Outcome {
    pub record: RunRecord,
    pub details: Vec<String>,
    pub dir: PathBuf,
}

impl Outcome {
    pub fn exit(&self) -> Exit {
        exit_of(&self.record)
    }
}

/// The exit code a run's record stands for (SPEC section 3).
pub fn exit_of(rec: &RunRecord) -> Exit {
    match (rec.status, rec.reason) {
        (Status::Succeeded, _) => Exit::Success,
        (Status::Interrupted, _) => Exit::Interrupted,
        (_, Some(r)) => r.exit(),
        _ => Exit::StageFailure,
    }
}

/// Redactor for a run: the process environment plus every agent's and gate's `env` table.
pub fn redactor_for(plan: &RunPlan) -> Redactor {
    let mut extra: Vec<(&str, &str)> = Vec::new();
    for entry in plan.loaded.config.agents.values() {
        for spec in &entry.0 {
            extra.extend(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
    }
    for gate in &plan.gates {
        extra.extend(gate.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    Redactor::from_env(extra)
}

/// Execute a prepared plan. Errors returned here happened before the run existed (its record
/// could not be created); everything after that ends in a record.
pub async fn execute(plan: &RunPlan, ui: &Ui, mut cancel: Cancel) -> Result<Outcome> {
    let redactor = Arc::new(redactor_for(plan));
    let store = Store::new(&plan.repo.pipeline_dir());
    let dir = store.create_run(redactor)?;
    let lock = dir.lock()?;
    let branch = format!("{}{}", plan.branch_prefix, dir.id);
    let worktree = plan.worktree_root.join(&dir.id);
    let rec = initial_record(plan, &dir.id, &branch);
    let mut run = Run {
        plan,
        ui,
        repo: plan.repo.git(),
        worktree,
        branch,
        snap: None,
        exec_session: ids::new_session_id(),
        verify_session: ids::new_session_id(),
        started: Instant::now(),
        details: Vec::new(),
        last_tree: None,
        verifier_label: None,
        rec,
        dir,
    };
    run.save()?;
    run.dir.event(
        None,
        "run_started",
        json!({
            "task": plan.task,
            "base": plan.base,
            "base_ref": plan.base_ref,
            "branch": run.branch,
            "risk": plan.risk.risk,
            "risk_reasons": plan.risk.reasons,
            "scope": plan.scope.record(),
        }),
    )?;
    ui.info(format!(
        "run {}: risk {} ({})",
        run.dir.id,
        plan.risk.risk.name(),
        plan.risk.reasons.join("; ")
    ));
    for w in &plan.warnings {
        ui.warn(w);
    }
    run.rec.status = Status::Running;
    // Ctrl-C reaches our own git commands too (they share our process group), so a git error
    // while a stop was requested is the interruption, not a failure of the run.
    let ending = match run.setup() {
        Ok(()) => match run.drive(&mut cancel).await {
            Ok(e) => e,
            Err(e) if run.rec.commit.is_some() => {
                ui.warn(format!("the run shipped, but a last step failed: {e}"));
                Ending::Shipped
            }
            Err(_) if cancel.is_cancelled() => Ending::Interrupted,
            Err(Error::Interrupted) => Ending::Interrupted,
            Err(e) => Ending::Failed {
                reason: Reason::AgentError,
                message: e.to_string(),
                details: e.hint().map(str::to_owned).into_iter().collect(),
            },
        },
        Err(_) if cancel.is_cancelled() => {
            let _ = rollback::discard(&run.repo, &run.worktree, &run.branch);
            run.rec.worktree = None;
            Ending::Interrupted
        }
        Err(e) => Ending::Failed {
            reason: Reason::SetupFailed,
            message: format!("could not prepare the worktree: {e}"),
            details: e.hint().map(str::to_owned).into_iter().collect(),
        },
    };
    run.finish(ending)?;
    drop(lock);
    Ok(Outcome {
        dir: run.dir.path.clone(),
        record: run.rec,
        details: run.details,
    })
}

fn initial_record(plan: &RunPlan, id: &str, branch: &str) -> RunRecord {
    RunRecord {
        version: crate::store::record::RECORD_VERSION,
        run_id: id.to_owned(),
        task: plan.task.clone(),
        risk: plan.risk.risk,
        risk_reasons: plan.risk.reasons.clone(),
        status: Status::Pending,
        reason: None,
        exit_code: None,
        base: plan.base.clone(),
        branch: branch.to_owned(),
        commit: None,
        worktree: None,
        rolled_back: false,
        stages: skipped_stages(plan),
        changed_paths: Vec::new(),
        gates: Vec::new(),
        verification: Verification::default(),
        metrics: Metrics::default(),
        stage: None,
        error: None,
        base_ref: plan.base_ref.clone(),
        archive: None,
        scope: plan.scope.record(),
        created_at: ids::now_rfc3339(),
        ended_at: None,
        merge: None,
    }
}

/// The stages before execution that this run skips, and why.
pub fn skipped_stages(plan: &RunPlan) -> Vec<StageRecord> {
    let start = match plan.risk.risk {
        Risk::Low => "execution",
        Risk::Medium => "planning",
        Risk::High => "discovery",
    };
    let mut skipped = Vec::new();
    for (stage, role) in [("discovery", Role::Discovery), ("planning", Role::Planner)] {
        let before_start = stage == "discovery" && start != "discovery"
            || stage == "planning" && start == "execution";
        let note = if before_start {
            format!("risk {}: starts at {start}", plan.risk.risk.name())
        } else {
            format!("no [agents.{}] configured", role.name())
        };
        skipped.push(StageRecord {
            stage: stage.to_owned(),
            status: StageStatus::Skip,
            attempt: 0,
            session_id: None,
            agent: None,
            started_at: None,
            ended_at: None,
            tokens: 0,
            tokens_estimated: false,
            cost_usd: None,
            error: None,
            note: Some(note),
        });
    }
    skipped
}

struct Run<'a> {
    plan: &'a RunPlan,
    ui: &'a Ui,
    dir: RunDir,
    rec: RunRecord,
    repo: Git,
    worktree: PathBuf,
    branch: String,
    snap: Option<Snapshotter>,
    exec_session: String,
    verify_session: String,
    started: Instant,
    details: Vec<String>,
    /// The tree of the last snapshot, for the archive when the worktree is gone.
    last_tree: Option<String>,
    /// `<config entry> (<program>)` of the verifier that last ran, for the attestation.
    verifier_label: Option<String>,
}

enum GatesEnd {
    Passed,
    Failed { gate: String, feedback: String },
}

enum VerifyEnd {
    Approved,
    Rejected(Verdict),
    Stop(Ending),
}

impl Run<'_> {
    fn save(&mut self) -> Result<()> {
        self.update_metrics();
        self.dir.write_record(&self.rec)
    }

    fn update_metrics(&mut self) {
        let m = &mut self.rec.metrics;
        m.total_time_s = step::secs(self.started.elapsed());
        m.tokens = self.rec.stages.iter().map(|s| s.tokens).sum();
        let costs: Vec<f64> = self.rec.stages.iter().filter_map(|s| s.cost_usd).collect();
        m.cost_usd = (!costs.is_empty()).then(|| costs.iter().sum());
        let mut executed: Vec<&str> = self
            .rec
            .stages
            .iter()
            .filter(|s| s.status != StageStatus::Skip)
            .map(|s| s.stage.as_str())
            .collect();
        executed.sort_unstable();
        executed.dedup();
        m.stages_executed = executed.len() as u32;
        m.stages_skipped = self
            .rec
            .stages
            .iter()
            .filter(|s| s.status == StageStatus::Skip)
            .count() as u32;
    }

    fn ctx(&self) -> StepCtx<'_> {
        StepCtx {
            run_id: &self.dir.id,
            worktree: &self.worktree,
            base: &self.plan.base,
            slot: 0,
            dir: &self.dir,
        }
    }

    fn begin(&mut self, stage: &str, line: String) -> Result<()> {
        self.rec.stage = Some(stage.to_owned());
        self.save()?;
        self.dir.event(Some(stage), "stage_started", json!({}))?;
        self.ui.step(line);
        Ok(())
    }

    fn setup(&mut self) -> Result<()> {
        for s in &self.rec.stages {
            self.ui.step(format!(
                "{}: skipped ({})",
                s.stage,
                s.note.as_deref().unwrap_or("")
            ));
        }
        let root = &self.plan.worktree_root;
        std::fs::create_dir_all(root).map_err(|e| Error::io_path("create", root, e))?;
        let reason = format!("git-pipeline run {} in progress", self.dir.id);
        if let Err(e) = worktree::add(
            &self.repo,
            &self.worktree,
            &self.branch,
            &self.plan.base,
            &reason,
        ) {
            // git may leave a half-made worktree or branch behind; both are ours to remove.
            let _ = rollback::discard(&self.repo, &self.worktree, &self.branch);
            return Err(e);
        }
        self.rec.worktree = Some(self.worktree.clone());
        self.save()?;
        let wt_git_dir = worktree::git_dir_of(&self.worktree)?;
        self.snap = Some(Snapshotter::new(
            &self.worktree,
            &wt_git_dir,
            self.dir.scratch("index")?,
        ));
        let submodules = prepare::init_submodules(&self.worktree)?;
        let copied = match &self.plan.repo.main_worktree {
            Some(main) => {
                let patterns = prepare::include_patterns(main, &self.plan.include)?;
                prepare::copy_includes(
                    main,
                    &self.worktree,
                    &patterns,
                    &self.dir.scratch("worktreeinclude")?,
                )?
            }
            None => Vec::new(),
        };
        self.dir.event(
            None,
            "worktree_ready",
            json!({
                "worktree": self.worktree,
                "branch": self.branch,
                "submodules": submodules,
                "included": copied.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
            }),
        )?;
        self.ui.info(format!(
            "  worktree {} on branch {}",
            self.worktree.display(),
            self.branch
        ));
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        let snap = self
            .snap
            .as_ref()
            .ok_or_else(|| Error::other("the worktree was not set up"))?;
        let s = snap.take(&self.plan.base_tree)?;
        self.last_tree = Some(s.tree.clone());
        Ok(s)
    }

    async fn drive(&mut self, cancel: &mut Cancel) -> Result<Ending> {
        let max_fix = self.plan.max_fix_attempts;
        let mut feedback: Option<String> = None;
        let mut why_again = String::new();
        let mut attempt = 0u32;
        let mut fixes = 0u32;
        let mut rejections = 0u32;
        let mut verifier_runs = 0u32;
        loop {
            attempt += 1;
            if cancel.is_cancelled() {
                return Ok(Ending::Interrupted);
            }
            // Execution.
            let prompt = self.builder_prompt(attempt, feedback.take())?;
            let label = if attempt == 1 {
                format!("execution: builder ({})", self.plan.builder.name)
            } else {
                format!(
                    "execution attempt {attempt}: builder ({}) {why_again}",
                    self.plan.builder.name
                )
            };
            self.begin("execution", label)?;
            let builder = self.plan.builder.clone();
            let ran = step::run_agent(
                &self.ctx(),
                AgentCall {
                    agent: &builder,
                    stage: "execution",
                    attempt,
                    session: &self.exec_session.clone(),
                    prompt: &prompt,
                },
                cancel,
            )
            .await?;
            let session = self.exec_session.clone();
            if let Some(ending) = self.record_agent("execution", attempt, &session, &ran, &builder)
            {
                return Ok(ending);
            }

            // Scope check, before any gate or verifier sees the work.
            let snapshot = self.snapshot()?;
            self.rec.changed_paths = snapshot
                .changes
                .iter()
                .map(|c| c.path.to_string_lossy().into_owned())
                .collect();
            if snapshot.changes.is_empty() {
                return Ok(Ending::failed(
                    Reason::AgentError,
                    "the builder finished without changing any file",
                ));
            }
            let violations = self.plan.scope.check(&snapshot.changes);
            self.dir.event(
                Some("execution"),
                "scope_checked",
                json!({
                    "attempt": attempt,
                    "changed": snapshot.changes.len(),
                    "violations": violations.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
            )?;
            self.save()?;
            if !violations.is_empty() {
                self.ui.step(format!(
                    "scope: {} of {} changed paths outside the scope",
                    violations.len(),
                    snapshot.changes.len()
                ));
                if fixes < max_fix {
                    fixes += 1;
                    self.rec.metrics.fix_attempts = fixes;
                    why_again = format!("(fix {fixes}/{max_fix}: scope violation)");
                    feedback = Some(scope_feedback(&violations));
                    continue;
                }
                let mut details: Vec<String> = violations.iter().map(ToString::to_string).collect();
                details.truncate(50);
                return Ok(Ending::Failed {
                    reason: Reason::ScopeViolation,
                    message: format!(
                        "{} changed path(s) outside the scope after {fixes} fix attempt(s)",
                        violations.len()
                    ),
                    details,
                });
            }
            self.ui.step(format!(
                "scope: ok ({} changed path{})",
                snapshot.changes.len(),
                if snapshot.changes.len() == 1 { "" } else { "s" }
            ));

            // Gates, fail-closed, in order.
            match self.run_gates(attempt, cancel).await? {
                GatesEnd::Passed => {}
                GatesEnd::Failed { gate, feedback: f } => {
                    if fixes < max_fix {
                        fixes += 1;
                        self.rec.metrics.fix_attempts = fixes;
                        why_again = format!("(fix {fixes}/{max_fix}: gate {gate} failed)");
                        feedback = Some(f);
                        continue;
                    }
                    return Ok(Ending::Failed {
                        reason: Reason::GateFailed,
                        message: format!("gate {gate} still fails after {fixes} fix attempt(s)"),
                        details: vec![format!(
                            "its output is in {}",
                            self.dir.path.join("outputs").display()
                        )],
                    });
                }
            }
            if cancel.is_cancelled() {
                return Ok(Ending::Interrupted);
            }

            // Verification, in a session the builder never sees.
            // Rounds number verifier runs; the cap counts rejections (a commit-hook refusal after an
            // approval sends the work round again without counting against it).
            verifier_runs += 1;
            let round = verifier_runs;
            match self.verify(round, &snapshot, cancel).await? {
                VerifyEnd::Stop(ending) => return Ok(ending),
                VerifyEnd::Rejected(v) => {
                    rejections += 1;
                    if rejections >= self.plan.max_rounds {
                        return Ok(Ending::Failed {
                            reason: Reason::VerifyRejected,
                            message: format!(
                                "the verifier rejected the work {rejections} time(s) (verify.max_rounds = {})",
                                self.plan.max_rounds
                            ),
                            details: v.issues.clone(),
                        });
                    }
                    why_again = format!("(verification round {round} rejected)");
                    feedback = Some(verifier_feedback(&v));
                    continue;
                }
                VerifyEnd::Approved => {}
            }

            // Ship.
            self.begin("ship", "ship: committing".to_owned())?;
            match self.ship(&snapshot)? {
                None => return Ok(Ending::Shipped),
                Some(hook_output) => {
                    self.ui.step("ship: the commit hook refused");
                    self.rec.gates.push(GateRecord {
                        name: "commit-hook".to_owned(),
                        status: StageStatus::Fail,
                        attempt,
                        duration_s: 0.0,
                        error: Some(first_line(&hook_output)),
                    });
                    if fixes < max_fix {
                        fixes += 1;
                        self.rec.metrics.fix_attempts = fixes;
                        why_again = format!("(fix {fixes}/{max_fix}: commit hook failed)");
                        feedback = Some(format!(
                            "The work was approved, but the repository's commit hook refused the commit:\n\n```\n{}\n```",
                            prompts::tail(&hook_output, prompts::GATE_OUTPUT_LIMIT)
                        ));
                        continue;
                    }
                    return Ok(Ending::Failed {
                        reason: Reason::GateFailed,
                        message: format!(
                            "the commit hook still refuses after {fixes} fix attempt(s)"
                        ),
                        details: vec![first_line(&hook_output)],
                    });
                }
            }
        }
    }

    /// Record an agent step; the ending when it failed.
    fn record_agent(
        &mut self,
        stage: &str,
        attempt: u32,
        session: &str,
        ran: &step::AgentRun,
        agent: &RoleAgent,
    ) -> Option<Ending> {
        let end = &ran.outcome.end;
        let error = (!end.success()).then(|| end.describe());
        self.rec.stages.push(StageRecord {
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
            error: error.clone(),
            note: None,
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
                let stderr = String::from_utf8_lossy(&ran.outcome.stderr.bytes);
                let details = stderr
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .map(str::to_owned)
                    .collect();
                Some(Ending::Failed {
                    reason: Reason::AgentError,
                    message: format!("the {role} ({}) failed: {}", ran.agent, end.describe()),
                    details,
                })
            }
        }
    }

    fn builder_prompt(&self, attempt: u32, feedback: Option<String>) -> Result<String> {
        let scope = self.plan.scope.describe();
        prompts::render(
            "builder.md",
            prompts::BUILDER,
            prompts::BuilderVars {
                run_id: &self.dir.id,
                attempt,
                branch: &self.branch,
                base: &self.plan.base,
                task: &self.plan.task,
                plan: None,
                scope: &scope,
                gates: self
                    .plan
                    .gates
                    .iter()
                    .map(|g| g.name.get_ref().as_str())
                    .collect(),
                feedback,
            },
        )
    }

    async fn run_gates(&mut self, attempt: u32, cancel: &mut Cancel) -> Result<GatesEnd> {
        for gate in &self.plan.gates {
            let name = gate.name.get_ref().clone();
            self.rec.stage = Some("gates".to_owned());
            let ran =
                step::run_gate(&self.ctx(), gate, attempt, &self.exec_session, cancel).await?;
            let end = &ran.outcome.end;
            if *end == End::Interrupted {
                return Err(Error::Interrupted);
            }
            let passed = end.success();
            self.rec.gates.push(GateRecord {
                name: name.clone(),
                status: if passed {
                    StageStatus::Pass
                } else {
                    StageStatus::Fail
                },
                attempt,
                duration_s: step::secs(ran.outcome.duration),
                error: (!passed).then(|| end.describe()),
            });
            self.save()?;
            if passed {
                self.ui.step(format!(
                    "gate {name}: pass ({:.1}s)",
                    ran.outcome.duration.as_secs_f64()
                ));
                continue;
            }
            self.ui
                .step(format!("gate {name}: FAIL ({})", end.describe()));
            let output = String::from_utf8_lossy(&step::combined(&ran.outcome)).into_owned();
            let feedback = format!(
                "Gate `{name}` (`{}`) failed: {}.\nIts output (the end of it):\n\n```\n{}\n```",
                gate.command.get_ref().join(" "),
                end.describe(),
                prompts::tail(output.trim_end(), prompts::GATE_OUTPUT_LIMIT)
            );
            return Ok(GatesEnd::Failed {
                gate: name,
                feedback,
            });
        }
        Ok(GatesEnd::Passed)
    }

    async fn verify(
        &mut self,
        round: u32,
        snapshot: &Snapshot,
        cancel: &mut Cancel,
    ) -> Result<VerifyEnd> {
        let max = self.plan.max_rounds;
        let label = if round <= max {
            format!("verification {round}/{max}")
        } else {
            format!("verification {round}")
        };
        self.begin(
            "verification",
            format!("{label}: verifier ({})", self.plan.verifier.name),
        )?;
        let patch = snapshot::patch(&self.repo, &self.plan.base_tree, &snapshot.tree)?;
        let (diff, diff_cut) = prompts::head(&String::from_utf8_lossy(&patch), prompts::DIFF_LIMIT);
        let scope = self.plan.scope.describe();
        let gates = self
            .rec
            .gates
            .iter()
            .rev()
            .take(self.plan.gates.len())
            .rev()
            .map(|g| format!("{} ({:.1}s)", g.name, g.duration_s))
            .collect();
        let prompt = prompts::render(
            "verifier.md",
            prompts::VERIFIER,
            prompts::VerifierVars {
                run_id: &self.dir.id,
                round,
                max_rounds: max,
                task: &self.plan.task,
                base: &self.plan.base,
                scope: &scope,
                gates,
                changed_paths: self.rec.changed_paths.clone(),
                diff,
                diff_cut,
                diff_limit: prompts::DIFF_LIMIT,
            },
        )?;
        let verifier = self.plan.verifier.clone();
        let session = self.verify_session.clone();
        let ran = step::run_agent(
            &self.ctx(),
            AgentCall {
                agent: &verifier,
                stage: "verification",
                attempt: round,
                session: &session,
                prompt: &prompt,
            },
            cancel,
        )
        .await?;
        if let Some(ending) = self.record_agent("verification", round, &session, &ran, &verifier) {
            return Ok(VerifyEnd::Stop(ending));
        }
        // The verifier reads; if it wrote, what it approved is not what would ship.
        let after = self.snapshot()?;
        if after.tree != snapshot.tree {
            if let Some(last) = self.rec.stages.last_mut() {
                last.status = StageStatus::Fail;
                last.error = Some("changed files in the worktree".to_owned());
            }
            return Ok(VerifyEnd::Stop(Ending::failed(
                Reason::AgentError,
                format!(
                    "the verifier ({}) changed files in the worktree; a verifier must only read",
                    ran.agent
                ),
            )));
        }
        let program = std::path::Path::new(&ran.program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.verifier_label = Some(format!("{} ({program})", ran.agent));
        let v = verdict::parse(&ran.outcome.stdout.bytes);
        self.rec.verification = Verification {
            rounds: round,
            approved: v.approved,
            issues: v.issues.clone(),
        };
        self.rec.metrics.verification_rounds = round;
        if let Some(last) = self.rec.stages.last_mut() {
            last.status = if v.approved {
                StageStatus::Pass
            } else {
                StageStatus::Fail
            };
            if !v.approved {
                last.error = Some(if v.parsed {
                    format!("rejected ({} issue(s))", v.issues.len())
                } else {
                    "no verdict".to_owned()
                });
            }
        }
        self.dir.event(
            Some("verification"),
            "verdict",
            json!({"round": round, "approved": v.approved, "parsed": v.parsed, "issues": v.issues}),
        )?;
        self.save()?;
        if v.approved {
            self.ui.step(format!("{label}: approved"));
            Ok(VerifyEnd::Approved)
        } else {
            let what = if v.parsed {
                format!("rejected ({} issue(s))", v.issues.len())
            } else {
                "rejected: no verdict in the verifier's output".to_owned()
            };
            self.ui.step(format!("{label}: {what}"));
            Ok(VerifyEnd::Rejected(v))
        }
    }

    /// Commit, attest, remove the worktree. `Some(output)` when the commit hook refused.
    fn ship(&mut self, snapshot: &Snapshot) -> Result<Option<String>> {
        let message = ship::message(&self.plan.task, &self.dir.id);
        let branch_ref = format!("refs/heads/{}", self.branch);
        self.snap
            .as_ref()
            .ok_or_else(|| Error::other("the worktree was not set up"))?
            .install()?;
        let (commit, tree) = match ship::commit(
            &self.repo,
            &self.worktree,
            &branch_ref,
            &self.plan.base,
            &snapshot.tree,
            &message,
        )? {
            ship::Committed::HookFailed(out) => return Ok(Some(out)),
            ship::Committed::Ok { commit, tree } => (commit, tree),
        };
        let verifier = self
            .verifier_label
            .clone()
            .unwrap_or_else(|| self.plan.verifier.name.clone());
        let note = Attestation {
            version: attest::VERSION,
            run_id: self.dir.id.clone(),
            commit: commit.clone(),
            tree,
            base: self.plan.base.clone(),
            approved: true,
            verifier,
            rounds: self.rec.verification.rounds,
            gates: self
                .plan
                .gates
                .iter()
                .map(|g| attest::GateResult {
                    name: g.name.get_ref().clone(),
                    status: "pass".to_owned(),
                })
                .collect(),
            at: ids::now_rfc3339(),
        };
        ship::attest(&self.repo, &note)?;
        self.rec.commit = Some(commit.clone());
        // From here the work is shipped: what fails now is reported, never rolled back.
        match worktree::remove(&self.repo, &self.worktree) {
            Ok(()) => self.rec.worktree = None,
            Err(e) => {
                self.ui.warn(format!(
                    "the shipped run's worktree could not be removed: {e}"
                ));
                self.details.push(format!(
                    "remove it with: git worktree remove --force {}",
                    self.worktree.display()
                ));
            }
        }
        self.rec.stages.push(StageRecord {
            stage: "ship".to_owned(),
            status: StageStatus::Pass,
            attempt: 1,
            session_id: None,
            agent: None,
            started_at: None,
            ended_at: Some(ids::now_rfc3339()),
            tokens: 0,
            tokens_estimated: false,
            cost_usd: None,
            error: None,
            note: Some(format!("committed {commit} on {}", self.branch)),
        });
        self.ui.step(format!(
            "ship: committed {} on {} (attested)",
            &commit[..commit.len().min(12)],
            self.branch
        ));
        if self.plan.ship == ShipMode::Merge {
            let merge = match &self.plan.base_branch {
                None => format!(
                    "not merged: the base {} is not a branch",
                    self.plan.base_ref
                ),
                Some(b) => match ship::fast_forward(&self.repo, b, &self.plan.base, &commit) {
                    Err(e) => format!("not merged into {b}: {e}"),
                    Ok(ship::Merge::FastForwarded { branch }) => {
                        format!(
                            "fast-forwarded {branch} to {}",
                            &commit[..commit.len().min(12)]
                        )
                    }
                    Ok(ship::Merge::NotSafe { branch, why }) => {
                        format!("not merged into {branch}: {why}")
                    }
                },
            };
            self.ui.step(format!("ship: {merge}"));
            self.rec.merge = Some(merge);
        }
        self.finished_stage("ship", "pass");
        if let Err(e) = self.dir.event(
            Some("ship"),
            "shipped",
            json!({"commit": commit, "branch": self.branch, "merge": self.rec.merge}),
        ) {
            self.ui
                .warn(format!("could not log the shipped event: {e}"));
        }
        Ok(None)
    }

    /// The `stage_finished` event. Best effort: the record holds the same facts.
    fn finished_stage(&self, stage: &str, status: &str) {
        let _ = self
            .dir
            .event(Some(stage), "stage_finished", json!({"status": status}));
    }

    fn finish(&mut self, ending: Ending) -> Result<()> {
        self.rec.stage = None;
        self.rec.ended_at = Some(ids::now_rfc3339());
        match ending {
            Ending::Shipped => {
                self.rec.status = Status::Succeeded;
            }
            Ending::Interrupted => {
                self.rec.status = Status::Interrupted;
                self.dir
                    .event(None, "interrupted", json!({"worktree": self.rec.worktree}))?;
                self.ui.step("interrupted: the worktree is kept");
            }
            Ending::Failed {
                reason,
                message,
                details,
            } => {
                self.rec.status = Status::Failed;
                self.rec.reason = Some(reason);
                self.rec.error = Some(message.clone());
                self.details = details;
                if let Err(e) = self.roll_back(&message) {
                    self.details.push(format!("rollback incomplete: {e}"));
                    let _ =
                        self.dir
                            .event(None, "rollback_failed", json!({"error": e.to_string()}));
                }
            }
        }
        if self.rec.status.is_final() {
            self.dir.clear_scratch()?;
        }
        self.rec.exit_code = Some(exit_of(&self.rec).code());
        self.save()
    }

    /// Archive the work, then discard the worktree and branch (unless kept).
    fn roll_back(&mut self, why: &str) -> Result<()> {
        let wt_exists = self.rec.worktree.is_some() && self.worktree.exists();
        let tree = if wt_exists {
            // Take the state as the agent left it; fall back to the last snapshot.
            self.snap
                .as_ref()
                .and_then(|s| s.tree().ok())
                .or_else(|| self.last_tree.clone())
        } else {
            self.last_tree.clone()
        };
        let tip = objects::ref_value(&self.repo, &format!("refs/heads/{}", self.branch))?;
        if let Some(tree) = tree {
            let name = rollback::archive(
                &self.repo,
                &self.dir.id,
                &tree,
                &self.plan.base,
                tip.as_deref(),
                why,
            )?;
            self.rec.archive = Some(name);
        }
        if self.plan.keep_failed {
            if wt_exists {
                // Kept for a person to inspect: no longer locked, so `git worktree remove` works.
                worktree::unlock(&self.repo, &self.worktree)?;
            }
            self.dir.event(
                None,
                "rolled_back",
                json!({"kept": true, "archive": self.rec.archive}),
            )?;
            return Ok(());
        }
        if self.rec.commit.is_some() {
            // Never discard a branch that holds a shipped, attested commit.
            return Ok(());
        }
        if self.rec.worktree.is_some() || tip.is_some() {
            rollback::discard(&self.repo, &self.worktree, &self.branch)?;
        }
        self.rec.worktree = None;
        self.rec.rolled_back = true;
        self.dir.event(
            None,
            "rolled_back",
            json!({"kept": false, "archive": self.rec.archive}),
        )?;
        Ok(())
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

fn verifier_feedback(v: &Verdict) -> String {
    let mut text =
        String::from("An independent verifier reviewed your change and rejected it:\n\n");
    for issue in &v.issues {
        text.push_str(&format!("- {issue}\n"));
    }
    text
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}
