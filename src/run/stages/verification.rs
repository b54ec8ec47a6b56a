//! Verification: an independent agent, in a session no builder sees, reads the task, the plan,
//! the diff and the gate results, and answers with a JSON verdict. It must not write.

use serde_json::json;

use crate::agent::verdict;
use crate::agent::verdict::Verdict;
use crate::error::Result;
use crate::git::snapshot;
use crate::git::snapshot::Snapshot;
use crate::plan::prompts;
use crate::run::next::{Again, Next, proceed};
use crate::run::state::Run;
use crate::safety::process::Cancel;
use crate::store::EventKind;
use crate::store::record::StageName;
use crate::store::record::StageStatus;
use crate::store::record::Verification;

impl Run<'_> {
    /// Run the verifier on `prompt` in its own session; its verdict, or how the run ends.
    pub(crate) async fn run_verifier(
        &mut self,
        round: u32,
        prompt: &str,
        cancel: &mut Cancel,
    ) -> Result<Next<Verdict>> {
        let verifier = self.plan.agents.verifier.clone();
        let session = self.verify_session.clone();
        // The verifier reads; if it wrote, what it approved is not what would ship.
        let step = (StageName::Verification, round, session.as_str());
        let ran = proceed!(
            self.run_reader(&verifier, step, prompt, "the verifier", cancel)
                .await?
        );
        let program = std::path::Path::new(&ran.program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.verifier_label = Some(format!("{} ({program})", ran.agent));
        Ok(Next::Continue(verdict::parse(&ran.outcome.stdout.bytes)))
    }

    pub(crate) async fn verify(
        &mut self,
        round: u32,
        snapshot: &Snapshot,
        cancel: &mut Cancel,
    ) -> Result<Next> {
        let max = self.plan.policy.max_rounds;
        let label = if round <= max {
            format!("verification {round}/{max}")
        } else {
            format!("verification {round}")
        };
        self.begin(
            StageName::Verification,
            format!("{label}: verifier ({})", self.plan.agents.verifier.name),
        )?;
        // git writes the diff while the step's "before" is taken: neither waits for the other.
        let (repo, base, tree) = (
            self.ws.repo.clone(),
            self.plan.target.base_tree.clone(),
            snapshot.tree.clone(),
        );
        let patch = tokio::task::spawn_blocking(move || snapshot::patch(&repo, &base, &tree));
        let start = self.step_start().await?;
        let patch = patch
            .await
            .map_err(|e| crate::error::Error::other(format!("the diff stopped: {e}")))??;
        let (diff, diff_cut) = prompts::head(&String::from_utf8_lossy(&patch), prompts::DIFF_LIMIT);
        let scope = self.scope.describe();
        let gates = self
            .last_gates()
            .map(|g| format!("{} ({:.1}s)", g.name, g.duration_s))
            .collect();
        let plan = self.bounded_plan();
        let prompt = self.plan.agents.templates.render(
            "verifier",
            prompts::VerifierVars {
                run_id: &self.log.dir.id,
                round,
                max_rounds: max,
                task: &self.plan.target.task,
                base: &self.plan.target.base,
                plan: plan.as_deref(),
                scope: &scope,
                gates,
                changed_paths: self.log.rec.changed_paths.clone(),
                diff,
                diff_cut,
                diff_limit: prompts::DIFF_LIMIT,
            },
        )?;
        self.step_ahead = Some(start);
        let v = proceed!(self.run_verifier(round, &prompt, cancel).await?);
        self.log.rec.verification = Verification {
            rounds: round,
            approved: v.approved,
            issues: v.issues.clone(),
        };
        self.log.rec.metrics.verification_rounds = round;
        if let Some(last) = self.log.rec.stages.last_mut() {
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
        self.log.dir.event(
            Some(StageName::Verification),
            EventKind::Verdict,
            json!({"round": round, "approved": v.approved, "parsed": v.parsed, "issues": v.issues}),
        )?;
        self.save()?;
        if v.approved {
            self.ui.step(format!("{label}: approved"));
            Ok(Next::Continue(()))
        } else {
            let what = if v.parsed {
                format!("rejected ({} issue(s))", v.issues.len())
            } else {
                "rejected: no verdict in the verifier's output".to_owned()
            };
            self.ui.step(format!("{label}: {what}"));
            Ok(Next::Retry(Again::Rejected { issues: v.issues }))
        }
    }
}
