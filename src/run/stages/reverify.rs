//! Reverify: an existing commit (work done by hand, or rebased) goes through the scope check
//! against its parent, the gates and the verifier, in a detached worktree of its own; approved,
//! it gets the attestation a pipeline run would have given it. Nothing is built and nothing is
//! committed, so there is no fix loop: a violation, a failing gate or a rejection ends the run.

use crate::error::Result;
use crate::run::next::{Again, Next};
use crate::run::outcome::Ending;
use crate::run::state::Run;
use crate::safety::process::Cancel;
use crate::store::record::Reason;

impl Run<'_> {
    pub(crate) async fn reverify(
        &mut self,
        commit: &crate::git::Oid,
        tree: &crate::git::TreeId,
        cancel: &mut Cancel,
    ) -> Result<Ending> {
        use crate::store::record::StageName;
        for stage in [
            StageName::Discovery,
            StageName::Planning,
            StageName::Execution,
        ] {
            self.skip_stage(stage, "reverify: the commit is the work");
        }
        let snapshot = self.snapshot()?;
        if snapshot.tree != *tree {
            return Ok(Ending::failed(
                Reason::SetupFailed,
                "the checkout of the commit differs from the commit itself (a filter or a hook changed files)",
            ));
        }
        self.log.rec.changed_paths = snapshot
            .changes
            .iter()
            .map(|c| c.path.to_string_lossy().into_owned())
            .collect();
        let mut violations = self.scope.check(&snapshot.changes);
        violations.extend(crate::policy::scope::Scope::escaping_symlinks(
            &self.ws.worktree,
            &snapshot.changes,
        ));
        if !violations.is_empty() {
            return Ok(Ending::Failed {
                reason: Reason::ScopeViolation,
                message: format!(
                    "{} changed path(s) of the commit are outside the scope",
                    violations.len()
                ),
                details: violations.iter().map(ToString::to_string).collect(),
            });
        }
        self.ui.step(format!(
            "scope: ok ({} changed path{})",
            snapshot.changes.len(),
            if snapshot.changes.len() == 1 { "" } else { "s" }
        ));
        match self.run_gates(1, cancel).await? {
            Next::Continue(()) => {}
            Next::End(ending) => return Ok(ending),
            Next::Retry(again) => {
                let what = match again {
                    Again::Fix(fix) => fix.what,
                    Again::Rejected { .. } => "a gate".to_owned(),
                };
                return Ok(Ending::failed(
                    Reason::GateFailed,
                    format!("{what} fails on the commit"),
                ));
            }
        }
        match self.verify(1, &snapshot, cancel).await? {
            Next::Continue(()) => {}
            Next::End(ending) => return Ok(ending),
            Next::Retry(again) => {
                return Ok(Ending::Failed {
                    reason: Reason::VerifyRejected,
                    message: "the verifier rejected the commit".to_owned(),
                    details: again.into_issues(),
                });
            }
        }
        let _guard = self.repo_lock()?;
        // Saved before the note is written: containment of other runs' steps honours a note
        // only from a run that shipped that commit or is shipping now.
        self.log.rec.stage = Some(StageName::Ship);
        self.save()?;
        let attested = self.write_attestation(commit, tree, 1)?;
        self.log.rec.commit = Some(commit.clone());
        self.ui.step(format!(
            "{attested} {} (git notes --ref=pipeline show {})",
            commit.short(),
            commit.short()
        ));
        if let Err(e) = self.put_away_worktree() {
            self.ui
                .warn(format!("the run's worktree could not be removed: {e}"));
        } else {
            self.log.rec.worktree = None;
        }
        Ok(Ending::Shipped)
    }
}
