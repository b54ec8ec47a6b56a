//! `[[setup]]` steps: commands that prepare a worktree for its gates (`npm ci`, `uv sync`). Each
//! runs only when its `when_changed` files differ from the last time it succeeded in the same
//! worktree slot (a new worktree: the last time in this run), so a warm slot skips them. They run
//! before any agent (on the base) and again before the gates of an attempt whose change touched
//! those files. Fail-closed like gates; and like a gate that does not fix, a setup step may write
//! ignored files only.

use serde_json::json;
use sha2::Digest;

use crate::config::SetupConfig;
use crate::error::{Error, Result};
use crate::git::{TreeId, objects};
use crate::process_end::End;
use crate::run::state::Run;
use crate::run::step;
use crate::safety::process::Cancel;
use crate::store::EventKind;
use crate::store::slots;
use crate::store::slots::Place;

/// A setup step that failed: which, why, and the end of its output.
pub(crate) struct SetupFailure {
    pub name: String,
    pub command: String,
    pub why: String,
    pub output: String,
}

impl Run<'_> {
    /// What decides whether `step` runs again: its command, environment and the content of its
    /// `when_changed` files in `tree`; with no such files, this run (once per run).
    fn setup_digest(&self, step: &SetupConfig, tree: &TreeId) -> Result<String> {
        let mut h = sha2::Sha256::new();
        for arg in step.command.get_ref() {
            h.update(arg.as_bytes());
            h.update([0]);
        }
        for (k, v) in &step.env {
            h.update(format!("{k}={v}\0").as_bytes());
        }
        if step.when_changed.is_empty() {
            h.update(self.log.dir.id.as_bytes());
        }
        let globs = crate::globs::Globs::new(&step.when_changed).map_err(|e| {
            Error::usage(format!("setup {}: when_changed: {e}", step.name.get_ref()))
        })?;
        for (path, blob) in objects::files_matching(&self.ws.repo, tree, &globs)? {
            h.update(format!("{path}\0{blob}\n").as_bytes());
        }
        Ok(format!("{:x}", h.finalize()))
    }

    /// The worktree slot the run works in, if any.
    fn slot_number(&self) -> Option<u32> {
        match self.ws.place {
            Place::NewSlot(n) | Place::Reused(n) => Some(n),
            Place::OwnFolder => None,
        }
    }

    /// The digest `name` had when it last succeeded here.
    fn setup_last(&self, name: &str) -> Result<Option<String>> {
        Ok(match self.slot_number() {
            Some(n) => slots::read(&self.plan.target.repo.pipeline_dir(), n)?
                .and_then(|s| s.setup.get(name).cloned()),
            None => self.setup_done.get(name).cloned(),
        })
    }

    /// Remember (or, `None`, forget) that `name` succeeded with `digest`.
    fn setup_remember(&mut self, name: &str, digest: Option<String>) -> Result<()> {
        match &digest {
            Some(d) => self.setup_done.insert(name.to_owned(), d.clone()),
            None => self.setup_done.remove(name),
        };
        if let Some(n) = self.slot_number() {
            let pipeline_dir = self.plan.target.repo.pipeline_dir();
            let mut state = slots::read(&pipeline_dir, n)?.unwrap_or_default();
            match digest {
                Some(d) => state.setup.insert(name.to_owned(), d),
                None => state.setup.remove(name),
            };
            slots::write(&pipeline_dir, n, &state)?;
        }
        Ok(())
    }

    /// Run the setup steps that are due, judged on `tree` (the worktree's last snapshot); the
    /// first that fails ends them.
    pub(crate) async fn run_setup(
        &mut self,
        tree: &TreeId,
        attempt: u32,
        cancel: &mut Cancel,
    ) -> Result<Option<SetupFailure>> {
        for step in self.plan.policy.setup.clone() {
            let name = step.name.get_ref().clone();
            let digest = self.setup_digest(&step, tree)?;
            if self.setup_last(&name)?.as_deref() == Some(digest.as_str()) {
                let why = if step.when_changed.is_empty() {
                    "it ran in this run already".to_owned()
                } else {
                    format!(
                        "{} unchanged since it last ran in this worktree",
                        step.when_changed.join(", ")
                    )
                };
                self.ui.step(format!("setup {name}: skipped ({why})"));
                self.log.dir.event(
                    None,
                    EventKind::SetupFinished,
                    json!({"setup": name, "attempt": attempt, "ran": false}),
                )?;
                continue;
            }
            self.ui.start(format!("setup {name}: running"));
            let before = self.step_start().await?;
            let gate = step.as_gate();
            let outcome =
                step::run_setup(&self.ctx(), &gate, attempt, &self.exec_session, cancel).await?;
            self.after_step(before, &format!("setup {name}")).await?;
            if outcome.end == End::Interrupted {
                return Err(Error::Interrupted);
            }
            let edited = self.changed_since_snapshot()?;
            let why = if !edited.is_empty() {
                self.restore_to(tree, &format!("setup {name}'s edits"))?;
                Some(format!(
                    "it changed files that are not ignored: {} (a setup step may write ignored files only)",
                    edited.join(", ")
                ))
            } else if outcome.end.success() {
                None
            } else {
                Some(outcome.end.describe())
            };
            let seconds = outcome.duration.as_secs_f64();
            self.log.dir.event(
                None,
                EventKind::SetupFinished,
                json!({
                    "setup": name,
                    "attempt": attempt,
                    "ran": true,
                    "status": if why.is_none() { "pass" } else { "fail" },
                    "duration_s": step::secs(outcome.duration),
                }),
            )?;
            match why {
                None => {
                    self.setup_remember(&name, Some(digest))?;
                    self.ui.step(format!("setup {name}: done ({seconds:.1}s)"));
                }
                Some(why) => {
                    self.setup_remember(&name, None)?;
                    self.ui.step(format!("setup {name}: FAIL ({why})"));
                    return Ok(Some(SetupFailure {
                        name,
                        command: gate.describe(),
                        why,
                        output: String::from_utf8_lossy(&step::combined(&outcome)).into_owned(),
                    }));
                }
            }
        }
        Ok(None)
    }
}
