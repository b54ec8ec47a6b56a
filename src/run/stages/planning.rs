//! Planning: the planner writes a plan ending in a file-impact manifest, the reviewer answers
//! with a verdict. A rejection (or a plan without a valid manifest) goes back to the planner, up to
//! `plan.max_rounds`; then the run stops with exit 2 and keeps the plan for a human. An approved
//! manifest becomes the builder's scope when the user gave none.

use serde_json::json;

use crate::agent::text;
use crate::agent::verdict;
use crate::bundle::spec::Bundle;
use crate::error::Error;
use crate::error::Result;
use crate::plan::prompts;
use crate::policy::manifest;
use crate::policy::manifest::Manifest;
use crate::run::next::{Again, Next, proceed};
use crate::run::outcome::Ending;
use crate::run::state::Run;
use crate::safety::process::Cancel;
use crate::store::EventKind;
use crate::store::record::Reason;
use crate::store::record::StageName;
use crate::store::record::StageStatus;

impl Run<'_> {
    /// Planning and its review rounds: `Continue` with an adopted plan, `End` when the run
    /// stops here (or splits into a bundle).
    pub(crate) async fn planning(&mut self, cancel: &mut Cancel) -> Result<Next> {
        let Some(planner) = self.plan.agents.planner.clone() else {
            self.skip_stage(StageName::Planning, "no [agents.planner] configured");
            return Ok(Next::Continue(()));
        };
        let reviewer = self.plan.agents.reviewer.clone();
        let max = self.plan.policy.plan_max_rounds;
        let session = self.plan_session.clone();
        let user_scope = if self.plan.policy.user_scope {
            self.scope.describe()
        } else {
            Vec::new()
        };
        let spec = self
            .spec
            .as_deref()
            .map(|s| prompts::bounded(s, prompts::TEXT_LIMIT));
        let mut feedback: Option<String> = None;
        let mut last_issues = Vec::new();
        for round in 1..=max {
            self.begin(
                StageName::Planning,
                format!("planning {round}/{max}: planner ({})", planner.name),
            )?;
            let prompt = self.plan.agents.templates.render(
                "planner",
                prompts::PlannerVars {
                    run_id: &self.log.dir.id,
                    round,
                    max_rounds: max,
                    base: &self.plan.target.base,
                    task: &self.plan.target.task,
                    spec: spec.as_deref(),
                    scope: &user_scope,
                    feedback: feedback.take(),
                    may_split: self.may_split(),
                },
            )?;
            let step = (StageName::Planning, round, session.as_str());
            let ran = proceed!(
                self.run_reader(&planner, step, &prompt, "the planner", cancel)
                    .await?
            );
            let plan_text = text::final_text(&ran.outcome.stdout.bytes);
            self.log
                .dir
                .artifact(&format!("plan-{round}.md"), plan_text.as_bytes())?;
            let plan_path = self.log.dir.artifact("plan.md", plan_text.as_bytes())?;
            self.log
                .rec
                .artifacts
                .insert("plan".to_owned(), "plan.md".to_owned());

            // A bundle instead of a manifest: validated like `git pipeline plan`, then reviewed.
            let split = if self.may_split() {
                crate::bundle::spec::find_in_text(&plan_text)
            } else {
                None
            };
            let issues = if let Some(value) = split {
                match self.check_split(&value) {
                    Err(issues) => {
                        self.fail_last_step("the plan's bundle is not valid");
                        self.ui.step(format!(
                            "planning {round}/{max}: the plan's bundle has {} problem(s)",
                            issues.len()
                        ));
                        issues
                    }
                    Ok(bundle) => {
                        let lines = describe_bundle(&bundle);
                        let verdict = match &reviewer {
                            None => Next::Continue(()),
                            Some(reviewer) => {
                                self.review(
                                    round,
                                    reviewer,
                                    &plan_text,
                                    lines,
                                    spec.as_deref(),
                                    cancel,
                                )
                                .await?
                            }
                        };
                        match verdict {
                            Next::End(ending) => return Ok(Next::End(ending)),
                            Next::Continue(()) => {
                                return self.adopt_split(plan_text, bundle).map(Next::End);
                            }
                            Next::Retry(again) => again.into_issues(),
                        }
                    }
                }
            } else {
                // The manifest is checked mechanically before any reviewer reads the plan.
                match manifest::parse(&plan_text) {
                    Err(why) => {
                        self.fail_last_step("no valid file-impact manifest");
                        self.ui.step(format!("planning {round}/{max}: {why}"));
                        vec![why.to_string()]
                    }
                    Ok(m) => match &reviewer {
                        None => {
                            if round == 1 {
                                self.skip_role(
                                    StageName::Planning,
                                    Some("reviewer"),
                                    "no [agents.reviewer] configured: the plan is not reviewed",
                                );
                            }
                            return self.adopt_plan(plan_text, &m).map(Next::Continue);
                        }
                        Some(reviewer) => {
                            match self
                                .review(
                                    round,
                                    reviewer,
                                    &plan_text,
                                    m.describe(),
                                    spec.as_deref(),
                                    cancel,
                                )
                                .await?
                            {
                                Next::End(ending) => return Ok(Next::End(ending)),
                                Next::Continue(()) => {
                                    return self.adopt_plan(plan_text, &m).map(Next::Continue);
                                }
                                Next::Retry(again) => again.into_issues(),
                            }
                        }
                    },
                }
            };
            self.log.dir.event(
                Some(StageName::Planning),
                EventKind::PlanRejected,
                json!({"round": round, "issues": issues}),
            )?;
            last_issues = issues.clone();
            if round == max {
                return Ok(Next::End(Ending::Failed {
                    reason: Reason::PlanRejected,
                    message: format!(
                        "the plan was rejected {round} time(s) (plan.max_rounds = {max}); it is kept at {}",
                        plan_path.display()
                    ),
                    details: last_issues,
                }));
            }
            feedback = Some(rejection_feedback(&issues));
        }
        Err(Error::other(format!(
            "planning ended without a decision: {}",
            last_issues.join("; ")
        )))
    }

    async fn review(
        &mut self,
        round: u32,
        reviewer: &crate::agent::RoleAgent,
        plan_text: &str,
        manifest: Vec<String>,
        spec: Option<&str>,
        cancel: &mut Cancel,
    ) -> Result<Next> {
        let max = self.plan.policy.plan_max_rounds;
        let session = self.plan_session.clone();
        self.ui.step(format!(
            "planning {round}/{max}: reviewer ({})",
            reviewer.name
        ));
        let prompt = self.plan.agents.templates.render(
            "reviewer",
            prompts::ReviewerVars {
                run_id: &self.log.dir.id,
                round,
                max_rounds: max,
                base: &self.plan.target.base,
                task: &self.plan.target.task,
                spec,
                plan: &prompts::bounded(plan_text, prompts::TEXT_LIMIT),
                manifest,
            },
        )?;
        let step = (StageName::Planning, round, session.as_str());
        let ran = proceed!(
            self.run_reader(reviewer, step, &prompt, "the plan reviewer", cancel)
                .await?
        );
        let v = verdict::parse(&ran.outcome.stdout.bytes);
        self.log.dir.event(
            Some(StageName::Planning),
            EventKind::Verdict,
            json!({"round": round, "role": "reviewer", "approved": v.approved, "parsed": v.parsed, "issues": v.issues}),
        )?;
        if v.approved {
            self.ui
                .step(format!("planning {round}/{max}: plan approved"));
            Ok(Next::Continue(()))
        } else {
            self.fail_last_step(if v.parsed { "rejected" } else { "no verdict" });
            self.ui.step(format!(
                "planning {round}/{max}: plan rejected ({} issue(s))",
                v.issues.len()
            ));
            Ok(Next::Retry(Again::Rejected { issues: v.issues }))
        }
    }

    /// The approved plan feeds the builder; its manifest holds the builder when the user gave no
    /// scope, and its do-not-touch list holds it always.
    fn adopt_plan(&mut self, plan_text: String, m: &Manifest) -> Result<()> {
        let scope = if self.plan.policy.user_scope {
            self.scope.clone().with_deny(&m.do_not_touch)
        } else {
            m.scope(&self.plan.policy.deny)
        }
        .map_err(|e| Error::other(format!("the plan's manifest: {e}")))?;
        self.scope = scope;
        self.log.rec.scope = self.scope.record();
        self.log.dir.artifact(
            "manifest.json",
            serde_json::to_string_pretty(m)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        self.log
            .rec
            .artifacts
            .insert("manifest".to_owned(), "manifest.json".to_owned());
        self.plan_text = Some(plan_text);
        if let Some(last) = self
            .log
            .rec
            .stages
            .iter_mut()
            .rev()
            .find(|s| s.stage == StageName::Planning && s.status != StageStatus::Skip)
        {
            last.note = Some(if self.plan.policy.user_scope {
                "plan approved; its do-not-touch list joins the scope".to_owned()
            } else {
                "plan approved; its manifest is the scope".to_owned()
            });
        }
        self.ui.step(if self.plan.policy.user_scope {
            "planning: the builder follows the plan within the given scope".to_owned()
        } else {
            "planning: the plan's manifest is now the scope".to_owned()
        });
        self.save()
    }
}

fn rejection_feedback(issues: &[String]) -> String {
    let mut f = String::from("Your plan was rejected:\n\n");
    for i in issues {
        f.push_str(&format!("- {i}\n"));
    }
    f
}

/// A bundle as the reviewer reads it, one line per workstream.
fn describe_bundle(b: &Bundle) -> Vec<String> {
    b.workstreams
        .iter()
        .map(|w| {
            let after = if w.depends_on.is_empty() {
                String::new()
            } else {
                format!("; after {}", w.depends_on.join(", "))
            };
            format!(
                "workstream {}: {} (modify {}; create {}{after})",
                w.id,
                crate::text::one_line(&w.task, 80),
                if w.scope.is_empty() {
                    "-".to_owned()
                } else {
                    w.scope.join(", ")
                },
                if w.create.is_empty() {
                    "-".to_owned()
                } else {
                    w.create.join(", ")
                },
            )
        })
        .collect()
}

impl Run<'_> {
    /// Only a high-risk run without a scope of its own, not itself a workstream, may split.
    fn may_split(&self) -> bool {
        self.log.rec.risk == crate::policy::risk::Risk::High
            && !self.plan.policy.user_scope
            && self.plan.target.bundle.is_none()
            && matches!(self.plan.target.mode, crate::plan::Mode::Build)
    }

    /// The planner's bundle, checked like `git pipeline plan` checks a file.
    fn check_split(&self, value: &serde_json::Value) -> std::result::Result<Bundle, Vec<String>> {
        let text = value.to_string();
        let source = "the plan's bundle";
        let bundle = crate::bundle::spec::parse(text.as_bytes(), source)
            .map_err(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let repo = (
            &self.plan.target.repo,
            self.plan.target.base.as_str(),
            &self.plan.policy.loaded,
        );
        match crate::bundle::validate::check_bundle(bundle, source, Some(repo)) {
            Ok(c) => Ok(c.bundle),
            Err(Error::Invalid { problems, .. }) => Err(problems),
            Err(e) => Err(vec![e.to_string()]),
        }
    }

    /// The plan splits the task: the run ends here, and its bundle runs next.
    fn adopt_split(&mut self, plan_text: String, bundle: Bundle) -> Result<Ending> {
        self.plan_text = Some(plan_text);
        let json = serde_json::to_vec_pretty(&bundle)
            .map_err(|e| Error::other(format!("cannot encode the plan's bundle: {e}")))?;
        self.log.dir.artifact("split.json", &json)?;
        self.log
            .rec
            .artifacts
            .insert("bundle".to_owned(), "split.json".to_owned());
        if let Some(last) = self
            .log
            .rec
            .stages
            .iter_mut()
            .rev()
            .find(|s| s.stage == StageName::Planning && s.status != StageStatus::Skip)
        {
            last.note = Some(format!(
                "plan approved: a bundle of {} workstreams",
                bundle.workstreams.len()
            ));
        }
        self.ui.step(format!(
            "planning: the plan splits the task into {} workstreams",
            bundle.workstreams.len()
        ));
        self.save()?;
        Ok(Ending::Split(bundle))
    }
}
