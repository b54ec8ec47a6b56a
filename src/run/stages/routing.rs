//! Routing by an agent: `[agents.router]` reads the task (and may read the worktree) and says how
//! risky it is, as `{"risk": ..., "why": ...}`. The word rules are the floor: the agent can raise
//! the risk, so the run starts earlier (discovery, planning), never lower it. A missing or
//! unreadable answer leaves the word rules' risk.

use serde_json::json;

use crate::agent::risk_answer;
use crate::error::Result;
use crate::plan::prompts;
use crate::policy::risk::Risk;
use crate::run::next::{Next, proceed};
use crate::run::state::Run;
use crate::safety::process::Cancel;
use crate::store::events::EventKind;
use crate::store::record::StageName;

impl Run<'_> {
    /// Whether the router agent is to be asked: one is configured, neither `--risk` nor
    /// `--stage` decided already, and this run has not asked it yet (a resumed run keeps the
    /// answer in its record).
    pub(crate) fn routing_due(&self) -> bool {
        let args = &self.plan.target.args;
        self.plan.agents.router.is_some()
            && args.risk.is_none()
            && args.stage.is_none()
            && !self
                .log
                .rec
                .stages
                .iter()
                .any(|s| s.stage == StageName::Routing)
    }

    /// Ask the router agent; raise the run's risk when it says more than the word rules did.
    pub(crate) async fn routing(&mut self, cancel: &mut Cancel) -> Result<Next> {
        let Some(router) = self.plan.agents.router.clone() else {
            return Ok(Next::Continue(()));
        };
        self.begin(
            StageName::Routing,
            format!("routing: {} classifies the task", router.name),
        )?;
        let scope = if self.plan.policy.user_scope {
            self.scope.describe()
        } else {
            Vec::new()
        };
        let words = self.plan.routing.risk.clone();
        let prompt = self.plan.agents.templates.render(
            "router",
            prompts::RouterVars {
                run_id: &self.log.dir.id,
                base: &self.plan.target.base,
                task: &self.plan.target.task,
                scope: &scope,
                words_risk: words.risk.name(),
                words_reasons: &words.reasons,
            },
        )?;
        let session = self.plan_session.clone();
        self.save()?;
        self.before_read_only()?;
        let step = (StageName::Routing, 1, session.as_str());
        let ran = proceed!(
            self.run_reader(&router, step, &prompt, "the router", cancel)
                .await?
        );
        let answer = risk_answer::parse(&ran.outcome.stdout.bytes).map(|a| {
            let risk = match a.risk {
                "high" => Risk::High,
                "medium" => Risk::Medium,
                _ => Risk::Low,
            };
            (risk, a.why)
        });
        let raised = answer
            .as_ref()
            .filter(|(risk, _)| *risk > self.log.rec.risk)
            .map(|(risk, _)| *risk);
        let line = match (&answer, raised) {
            (None, _) => {
                self.fail_last_step("no answer");
                format!(
                    "routing: {} gave no {{\"risk\": ...}} answer; risk stays {}",
                    router.name,
                    words.risk.name()
                )
            }
            (Some((_, why)), Some(risk)) => {
                self.log.rec.risk = risk;
                self.log.rec.risk_reasons.push(format!(
                    "raised to {} by the router agent {}: {}",
                    risk.name(),
                    router.name,
                    why
                ));
                format!(
                    "routing: {} says {} ({}); the run starts at {}",
                    router.name,
                    risk.name(),
                    why,
                    crate::plan::Stage::for_risk(risk).name()
                )
            }
            (Some((said, why)), None) => format!(
                "routing: {} says {} ({}); risk stays {} (the word rules are the floor)",
                router.name,
                said.name(),
                why,
                self.log.rec.risk.name()
            ),
        };
        self.log.dir.event(
            Some(StageName::Routing),
            EventKind::Routed,
            json!({
                "agent": router.name,
                "answer": answer.as_ref().map(|(risk, why)| json!({"risk": risk, "why": why})),
                "words": words.risk,
                "risk": self.log.rec.risk,
            }),
        )?;
        self.ui.step(line);
        self.finished_stage(StageName::Routing, "pass");
        self.save()?;
        Ok(Next::Continue(()))
    }

    /// Where the run starts: the plan's routing, or earlier when the router agent raised the
    /// risk; with the reason to give for a skipped stage.
    pub(crate) fn start(&self) -> (crate::plan::Stage, String) {
        let planned = self.plan.routing.start;
        let args = &self.plan.target.args;
        if args.risk.is_some()
            || args.stage.is_some()
            || self.log.rec.risk <= self.plan.routing.risk.risk
        {
            return (planned, self.plan.routing.start_reason.clone());
        }
        let raised = crate::plan::Stage::for_risk(self.log.rec.risk).min(planned);
        (
            raised,
            format!(
                "risk {} (raised by the router agent) starts at {}",
                self.log.rec.risk.name(),
                raised.name()
            ),
        )
    }
}
