//! The run driver: one task, in its own worktree, from the first stage the router chose to a
//! shipped, attested commit or a rollback that archives the work.
//!
//! ```text
//! setup ─► [discovery] ─► [planning] ─► execution ─► scope check ─► gates ─► verification ─► [docs] ─► ship
//!                                          ▲   violation │   failure │  rejection │          hook fails │
//!                                          └─────────────┴───────────┴────────────┴─────────────────────┘
//!                                            fix loop, capped; circuit breakers on repeats
//! any terminal failure ─► rollback (archive ref, then worktree + branch removed)
//! SIGINT/SIGTERM ─► interrupted (worktree kept)
//! ```
//!
//! One module per stage (`discovery`, `planning`, `execution`, `verification`, `docs`, `ship`),
//! all acting on the [`run::Run`] state.

pub mod abandon;
mod breaker;
pub mod launch;
pub(crate) mod next;
pub mod outcome;
pub mod resume;
pub(crate) mod slot;
pub mod stages;
pub(crate) mod state;
pub mod step;
pub(crate) mod workspace;

use std::sync::Arc;

use serde_json::json;

use crate::error::Error;
use crate::store::EventKind;
use crate::store::record::StageName;

use crate::error::Result;
use crate::plan::RunPlan;
use crate::redact::Redactor;
use crate::run::state::Run;
use crate::safety::process::Cancel;
use crate::store::Store;
use crate::store::record as store_record;
use crate::store::record::Reason;
use crate::store::record::Status;
use crate::ui::Ui;
use next::Next;
use outcome::{Ending, Outcome};

/// Redactor for a run: the process environment plus every agent's and gate's `env` table.
pub fn redactor_for(plan: &RunPlan) -> Redactor {
    let mut extra: Vec<(&str, &str)> = Vec::new();
    for entry in plan.policy.loaded.config.agents.values() {
        for spec in &entry.0 {
            extra.extend(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
    }
    for gate in &plan.policy.gates {
        extra.extend(gate.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    Redactor::from_env(extra)
}

/// Execute a prepared plan. Errors returned here happened before the run existed (its record
/// could not be created); everything after that ends in a record.
pub async fn execute(
    plan: &RunPlan,
    ui: &Ui,
    cancel: Cancel,
    launch: &dyn launch::Launch,
) -> Result<Outcome> {
    let dir = create_run_dir(plan)?;
    execute_in(plan, ui, cancel, dir, launch).await
}

/// A new run folder for `plan`, storing through its redactor.
pub fn create_run_dir(plan: &RunPlan) -> Result<crate::store::RunDir> {
    let redactor = Arc::new(redactor_for(plan));
    let store = Store::new(&plan.target.repo.pipeline_dir());
    Ok(store
        .create_run(redactor)?
        .with_workstream(plan.target.bundle.as_ref().map(|b| b.workstream.clone())))
}

/// Execute a prepared plan in a run folder made for it by [`create_run_dir`].
pub async fn execute_in(
    plan: &RunPlan,
    ui: &Ui,
    mut cancel: Cancel,
    dir: crate::store::RunDir,
    launch: &dyn launch::Launch,
) -> Result<Outcome> {
    let lock = dir.lock()?;
    let mut run = Run::new(plan, ui, dir, launch);
    if let Some(from) = &plan.agents.inherited {
        run.inherit(&from.parent_dir, &from.artifacts)?;
    }
    run.take_slot()?;
    run.save()?;
    run.log.dir.event(
        None,
        EventKind::RunStarted,
        json!({
            "task": plan.target.task,
            "base": plan.target.base,
            "base_ref": plan.target.base_ref,
            "branch": run.ws.branch.as_ref().map(|b| b.as_str()),
            "risk": plan.routing.risk.risk,
            "risk_reasons": plan.routing.risk.reasons,
            "start": plan.routing.start,
            "scope": plan.policy.scope.record(),
        }),
    )?;
    ui.info(match &plan.target.mode {
        crate::plan::Mode::Build => format!(
            "run {}: risk {} ({}); {}",
            run.log.dir.id,
            plan.routing.risk.risk.name(),
            plan.routing.risk.reasons.join("; "),
            plan.routing.start_reason
        ),
        crate::plan::Mode::Reverify { commit, .. } => format!(
            "run {}: reverify {} against {}",
            run.log.dir.id,
            &commit[..commit.len().min(12)],
            plan.target.base_ref
        ),
    });
    ui.info(agents_line(plan));
    for w in &plan.warnings {
        ui.warn(w);
    }
    run.log.rec.status = Status::Running;
    let ending = match run.setup() {
        Ok(()) => {
            let driven = run.drive(&mut cancel).await;
            run.ending_of(driven, &cancel)
        }
        Err(_) if cancel.is_cancelled() => {
            let _ = run.discard_worktree();
            run.log.rec.worktree = None;
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
    Ok(run.into_outcome())
}

impl Run<'_> {
    /// How the stages' result ends the run. Ctrl-C reaches our own git commands too (they share
    /// our process group), so a git error while a stop was requested is the interruption, not a
    /// failure; and once the commit is attested, a later error cannot undo the shipping.
    fn ending_of(&self, driven: Result<Ending>, cancel: &Cancel) -> Ending {
        match driven {
            Ok(e) => e,
            Err(e) if self.log.rec.commit.is_some() => {
                self.ui
                    .warn(format!("the run shipped, but a last step failed: {e}"));
                Ending::Shipped
            }
            Err(_) if cancel.is_cancelled() => Ending::Interrupted,
            Err(Error::Interrupted) => Ending::Interrupted,
            Err(Error::Containment(message)) => Ending::Failed {
                reason: Reason::Containment,
                message,
                details: vec![
                    "nothing was shipped; see docs/security.md ([containment] turns checks off)"
                        .to_owned(),
                ],
            },
            Err(e @ Error::Locked { .. }) => {
                let lock = match &e {
                    Error::Locked { lock, .. } => lock.display().to_string(),
                    _ => String::new(),
                };
                Ending::Stopped {
                    reason: Reason::GitLocked,
                    message: e.to_string(),
                    details: vec![format!(
                        "if no git command is running, remove it (rm {lock}), then: git pipeline resume {}",
                        self.log.dir.id
                    )],
                }
            }
            Err(e) => Ending::Failed {
                reason: Reason::AgentError,
                message: e.to_string(),
                details: e.hint().map(str::to_owned).into_iter().collect(),
            },
        }
    }

    /// The stages in order, from where the router said to start, for a new run and a resumed
    /// one alike: discovery and planning that finished (their artifacts are kept) are not run
    /// again, and once execution has a checkpoint it continues from there.
    async fn drive(&mut self, cancel: &mut Cancel) -> Result<Ending> {
        use crate::plan::Stage;
        if let Some(end) = self.setup_before_agents(cancel).await? {
            return Ok(end);
        }
        if let crate::plan::Mode::Reverify { commit, tree } = &self.plan.target.mode {
            return self.reverify(commit, tree, cancel).await;
        }
        if self.routing_due()
            && let Some(end) = before_execution(self.routing(cancel).await?)
        {
            return Ok(end);
        }
        let (start, start_reason) = self.start();
        // A run that recorded no stage yet starts from the router's choice (a candidate's
        // inherited plan included); otherwise what its artifacts hold is done.
        let fresh = self
            .log
            .rec
            .stages
            .iter()
            .all(|s| s.stage == StageName::Routing);
        let executing = self.log.rec.resume.checkpoint.is_some();
        let planned = !fresh && self.plan_text.is_some();
        let discovered = !fresh && self.spec.is_some();
        if !executing && !planned && !discovered {
            if start <= Stage::Discovery {
                if let Some(end) = before_execution(self.discovery(cancel).await?) {
                    return Ok(end);
                }
            } else {
                self.skip_stage(StageName::Discovery, &start_reason);
            }
        }
        if !executing && !planned {
            if start <= Stage::Planning {
                if let Some(end) = before_execution(self.planning(cancel).await?) {
                    return Ok(end);
                }
            } else {
                self.skip_stage(StageName::Planning, &start_reason);
            }
        }
        self.build(cancel).await
    }

    /// The `[[setup]]` steps that are due, on the worktree as it is, before any agent works in
    /// it (a shipping run has nothing left for them to prepare).
    async fn setup_before_agents(&mut self, cancel: &mut Cancel) -> Result<Option<Ending>> {
        let shipping = matches!(
            self.log.rec.resume.checkpoint,
            Some(store_record::Checkpoint::Committed { .. })
        );
        if self.plan.policy.setup.is_empty() || shipping {
            return Ok(None);
        }
        let tree = self.snapshot()?.tree;
        let Some(failed) = self.run_setup(&tree, 0, cancel).await? else {
            return Ok(None);
        };
        Ok(Some(Ending::Failed {
            reason: Reason::SetupFailed,
            message: format!(
                "setup {} failed before any agent ran: {}",
                failed.name, failed.why
            ),
            details: vec![
                format!(
                    "`{}` must succeed in a new checkout of the base",
                    failed.command
                ),
                format!(
                    "its output is in {}",
                    self.log.dir.path.join("outputs").display()
                ),
            ],
        }))
    }

    /// Execution: by this run's builder, or by several candidates it compares.
    async fn build(&mut self, cancel: &mut Cancel) -> Result<Ending> {
        let shipping = matches!(
            self.log.rec.resume.checkpoint,
            Some(
                store_record::Checkpoint::Approved { .. }
                    | store_record::Checkpoint::Committed { .. }
            )
        );
        if self.plan.agents.candidates > 1 && !shipping {
            self.best_of(cancel).await
        } else {
            self.execution(cancel).await
        }
    }
}

/// A stage before execution either lets the run go on or ends it; it has no builder to send
/// work back to.
fn before_execution(next: Next) -> Option<Ending> {
    match next {
        Next::Continue(()) => None,
        Next::End(ending) => Some(ending),
        Next::Retry(again) => Some(Ending::Failed {
            reason: Reason::AgentError,
            message: "a stage before execution asked for another round".to_owned(),
            details: again.into_issues(),
        }),
    }
}

/// Which agent each role runs and the config file it came from (a personal entry overrides the
/// project's): `  agents builder claude (.pipeline.toml (at HEAD)), verifier ...`.
fn agents_line(plan: &RunPlan) -> String {
    let a = &plan.agents;
    let roles = [
        ("router", a.router.as_ref()),
        ("discovery", a.discovery.as_ref()),
        ("planner", a.planner.as_ref()),
        ("reviewer", a.reviewer.as_ref()),
        ("builder", a.builder.as_ref()),
        ("verifier", Some(&a.verifier)),
        ("docs", a.docs.as_ref()),
    ];
    let loaded = &plan.policy.loaded;
    let parts: Vec<String> = roles
        .into_iter()
        .filter_map(|(role, agent)| {
            let agent = agent?;
            let from = loaded
                .agent_origin
                .get(&agent.name)
                .and_then(|o| loaded.source(*o))
                .map_or_else(|| "built in".to_owned(), |s| s.name.clone());
            Some(format!("{role} {} ({from})", agent.name))
        })
        .collect();
    format!("  agents {}", parts.join(", "))
}
