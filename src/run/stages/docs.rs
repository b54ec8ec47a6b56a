//! Documentation: when the verified change touches public surface (`docs.when`), the docs agent
//! (`agents.docs`, its own session) updates the docs. It may only change `docs.paths`, checked by
//! the scope machinery; the gates run again over its edits. Whatever goes wrong with it, its edits
//! are undone and the verified change ships as it was: documentation never breaks verified code.

use crate::error::Error;
use crate::error::Result;
use crate::git::TreeId;
use crate::git::snapshot;
use crate::git::snapshot::Snapshot;
use crate::plan::prompts;
use crate::policy::scope::Scope;
use crate::run::next::{Again, Next};
use crate::run::state::Run;
use crate::safety::process::Cancel;
use crate::store::record::StageName;

impl Run<'_> {
    /// The tree that ships when the docs agent changed something, else `None`.
    pub(crate) async fn docs(
        &mut self,
        approved: &Snapshot,
        attempt: u32,
        cancel: &mut Cancel,
    ) -> Result<Option<TreeId>> {
        self.docs_changes.clear();
        let Some(agent) = self.plan.agents.docs.clone() else {
            if !self
                .log
                .rec
                .stages
                .iter()
                .any(|s| s.stage == StageName::Docs)
            {
                self.skip_stage(StageName::Docs, "no [agents.docs] configured");
            }
            return Ok(None);
        };
        let triggers: Vec<String> = approved
            .changes
            .iter()
            .filter(|c| self.plan.policy.docs_when.is_match(&c.path))
            .map(|c| c.path.to_string_lossy().into_owned())
            .collect();
        if triggers.is_empty() {
            self.skip_stage(
                StageName::Docs,
                "the change touches no public surface (docs.when)",
            );
            return Ok(None);
        }
        self.begin(
            StageName::Docs,
            format!(
                "docs: documentation agent ({}) for {}",
                agent.name,
                triggers.join(", ")
            ),
        )?;
        let patch = snapshot::patch(&self.ws.repo, &self.plan.target.base_tree, &approved.tree)?;
        let (diff, diff_cut) = prompts::head(&String::from_utf8_lossy(&patch), prompts::DIFF_LIMIT);
        let prompt = self.plan.agents.templates.render(
            "docs",
            prompts::DocsVars {
                run_id: &self.log.dir.id,
                task: &self.plan.target.task,
                paths: &self.plan.policy.docs_paths,
                changed_paths: self.log.rec.changed_paths.clone(),
                diff,
                diff_cut,
                diff_limit: prompts::DIFF_LIMIT,
            },
        )?;
        let session = self.docs_session.clone();
        let ran = self
            .run_role(&agent, StageName::Docs, attempt, &session, &prompt, cancel)
            .await?;
        if let Some(ending) = self.record_agent(StageName::Docs, attempt, &session, &ran, &agent) {
            if matches!(ending, crate::run::outcome::Ending::Interrupted) {
                return Err(Error::Interrupted);
            }
            let why = match ending {
                crate::run::outcome::Ending::Failed { message, .. } => message,
                _ => "the docs agent failed".to_owned(),
            };
            return self.discard_docs(approved, &why).map(|()| None);
        }
        let after = self.snapshot()?;
        let delta = snapshot::diff_trees(&self.ws.repo, &approved.tree, &after.tree)?;
        if delta.is_empty() {
            self.ui.step("docs: no documentation change");
            return Ok(None);
        }
        let docs_scope = Scope::only(
            &self.plan.policy.docs_paths,
            &self.plan.policy.deny,
            "docs.paths",
        )
        .map_err(|e| Error::usage(e.to_string()))?;
        let mut violations = docs_scope.check(&delta);
        violations.extend(Scope::escaping_symlinks(&self.ws.worktree, &delta));
        if !violations.is_empty() {
            let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
            self.fail_last_step(&format!(
                "changed paths outside docs.paths: {}",
                list.join("; ")
            ));
            return self
                .discard_docs(
                    approved,
                    &format!(
                        "the docs agent changed paths outside docs.paths ({})",
                        list.join("; ")
                    ),
                )
                .map(|()| None);
        }
        self.docs_changes = delta
            .iter()
            .map(|c| c.path.to_string_lossy().into_owned())
            .collect();
        if !self.plan.policy.gates.is_empty()
            && let Next::Retry(Again::Fix(fix)) = self.run_gates(attempt, cancel).await?
        {
            let what = fix.what;
            self.fail_last_step(&format!("{what} failed after the docs changes"));
            return self
                .discard_docs(approved, &format!("{what} failed with the docs changes"))
                .map(|()| None);
        }
        self.ui
            .step(format!("docs: updated {}", self.docs_changes.join(", ")));
        Ok(Some(after.tree))
    }

    /// Undo the docs agent's edits and ship the verified change without them.
    fn discard_docs(&mut self, approved: &Snapshot, why: &str) -> Result<()> {
        self.ui.warn(format!(
            "docs: {why}; shipping the verified change without docs edits"
        ));
        self.restore_to(&approved.tree, "the docs agent's edits")?;
        self.docs_changes.clear();
        Ok(())
    }

    /// Undo docs edits before the builder works again (after a commit-hook refusal).
    pub(crate) fn undo_docs(&mut self, approved: &Snapshot) -> Result<()> {
        if self.docs_changes.is_empty() {
            return Ok(());
        }
        self.restore_to(&approved.tree, "the docs agent's edits")?;
        self.docs_changes.clear();
        Ok(())
    }
}
