//! Shipping approved work: one commit on the run branch (made by `git commit`, so the project's
//! commit hooks run), its attestation note, and for `ship = "merge"` a fast-forward of the base
//! branch when that is safe.

use serde_json::json;

use crate::attest;
use crate::attest::Attestation;
use crate::config::ShipMode;
use crate::error::Error;
use crate::error::Result;
use crate::git::Git;
use crate::git::advance;
use crate::git::objects;
use crate::git::worktree;
use crate::ids;
use crate::run::state::Run;
use crate::store::EventKind;
use crate::store::record::Checkpoint;
use crate::store::record::StageName;
use crate::store::record::StageRecord;
use crate::store::record::StageStatus;

pub enum Committed {
    Ok {
        commit: String,
        tree: String,
    },
    /// A commit hook refused (its output), or changed what was approved.
    HookFailed(String),
}

/// Commit the worktree's index (the caller installed the approved snapshot in it) on the run
/// branch as one commit whose parent is `base`. Commits the agent made itself are folded in: the
/// attestation covers exactly one reviewed change.
pub fn commit(
    repo: &Git,
    git: &Git,
    branch_ref: &str,
    base: &str,
    approved_tree: &str,
    message: &str,
) -> Result<Committed> {
    let head = crate::git::refs::head_branch(git)?;
    if head.as_deref() != Some(branch_ref) {
        return Err(Error::other(format!(
            "the run's worktree is no longer on {branch_ref} (HEAD is {}); the agent switched branches",
            head.as_deref().unwrap_or("detached")
        )));
    }
    // Move the branch back to the base with compare-and-swap: the commit then has one parent,
    // the base, and holds the whole change.
    let tip = objects::ref_value(repo, branch_ref)?
        .ok_or_else(|| Error::other(format!("{branch_ref} vanished before the commit")))?;
    if tip != base {
        objects::update_ref(
            repo,
            branch_ref,
            base,
            Some(&tip),
            "git-pipeline: fold the run's commits",
        )?;
    }
    if let objects::Committed::Refused(refused) = objects::commit_index(git, message)? {
        return Ok(Committed::HookFailed(refused));
    }
    // Read the result from the repository, not through the worktree: a post-commit hook may
    // have changed the worktree, but the branch is what ships.
    let commit = objects::ref_value(repo, branch_ref)?
        .ok_or_else(|| Error::other(format!("{branch_ref} vanished after the commit")))?;
    if commit == base {
        return Ok(Committed::HookFailed(
            "`git commit` succeeded but the run branch did not move".to_owned(),
        ));
    }
    let tree = objects::tree_of(repo, &commit)?;
    if tree != approved_tree {
        // A hook rewrote files: what would ship is not what was verified. Put the branch back.
        objects::update_ref(
            repo,
            branch_ref,
            base,
            Some(&commit),
            "git-pipeline: undo a commit a hook changed",
        )?;
        return Ok(Committed::HookFailed(
            "a commit hook changed the files after verification (the committed tree differs from the approved one); the changes it made are now in the worktree".to_owned(),
        ));
    }
    Ok(Committed::Ok { commit, tree })
}

/// The most of a task a commit message body carries.
const MESSAGE_BODY_LIMIT: usize = 4096;

pub fn message(task: &str, run_id: &str) -> String {
    let trimmed = task.trim();
    let (first, rest) = trimmed.split_once('\n').unwrap_or((trimmed, ""));
    let first = first.trim();
    let truncated = first.chars().count() > 72;
    let subject = if truncated {
        let cut: String = first.chars().take(71).collect();
        format!("{}…", cut.trim_end())
    } else {
        first.to_owned()
    };
    // A cut subject keeps the task in the body; otherwise the body is what follows it. Either way
    // a long task stays a short message: the whole task is in the run's record.
    let body = if truncated { trimmed } else { rest.trim() };
    let body = if body.len() > MESSAGE_BODY_LIMIT {
        let mut end = MESSAGE_BODY_LIMIT;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        format!(
            "{}\n\n[the task is longer: see `git pipeline show {run_id}`]",
            body[..end].trim_end()
        )
    } else {
        body.to_owned()
    };
    let mut msg = subject;
    msg.push_str("\n\n");
    if !body.is_empty() {
        msg.push_str(&body);
        msg.push_str("\n\n");
    }
    msg.push_str(&format!("Pipeline-Run: {run_id}\n"));
    msg
}

pub fn attest(repo: &Git, note: &Attestation) -> Result<()> {
    objects::add_note(repo, attest::NOTES_REF, &note.commit, &note.to_note())
}

impl Run<'_> {
    /// The attestation of an approved commit.
    pub(crate) fn attestation(&self, commit: &str, tree: &str, rounds: u32) -> Attestation {
        Attestation {
            version: attest::VERSION,
            run_id: self.log.dir.id.clone(),
            commit: commit.to_owned(),
            tree: tree.to_owned(),
            base: self.plan.target.base.clone(),
            approved: true,
            verifier: self
                .verifier_label
                .clone()
                .unwrap_or_else(|| self.plan.agents.verifier.name.clone()),
            rounds,
            gates: self
                .plan
                .policy
                .gates
                .iter()
                .map(|g| attest::GateResult {
                    name: g.name.get_ref().clone(),
                    status: "pass".to_owned(),
                })
                .collect(),
            at: ids::now_rfc3339(),
            docs: self.docs_changes.clone(),
        }
    }

    /// Commit `tree` (the scratch index holds it), attest it, remove the worktree, and for
    /// `ship = "merge"` fast-forward the base branch. `Some(output)` when the commit hook refused.
    pub(crate) fn ship(&mut self, tree: &str) -> Result<Option<String>> {
        let message = message(&self.plan.target.task, &self.log.dir.id);
        let branch =
            self.ws.branch.clone().ok_or_else(|| {
                Error::other("a run without a branch of its own has nothing to ship")
            })?;
        let branch_ref = branch.full();
        self.ws
            .snap
            .as_ref()
            .ok_or_else(|| Error::other("the worktree was not set up"))?
            .install()?;
        let wt_git = self
            .ws
            .snap
            .as_ref()
            .ok_or_else(|| Error::other("the worktree was not set up"))?
            .git();
        let (commit, tree) = match commit(
            &self.ws.repo,
            &wt_git,
            &branch_ref,
            &self.plan.target.base,
            tree,
            &message,
        )? {
            Committed::HookFailed(out) => return Ok(Some(out)),
            Committed::Ok { commit, tree } => (commit, tree),
        };
        self.checkpoint(Checkpoint::Committed {
            commit: commit.clone(),
            tree: tree.clone(),
        })?;
        self.complete_ship(&commit, &tree)?;
        Ok(None)
    }

    /// After the commit: attest it, remove the worktree, fast-forward when asked. Also what a
    /// resumed run does when it finds its commit already made.
    pub(crate) fn complete_ship(&mut self, commit: &str, tree: &str) -> Result<()> {
        let _guard = self.repo_lock()?;
        let commit = commit.to_owned();
        let run_branch = self
            .ws
            .branch
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default();
        let note = self.attestation(&commit, tree, self.log.rec.verification.rounds);
        attest(&self.ws.repo, &note)?;
        self.log.rec.commit = Some(commit.clone());
        // From here the work is shipped: what fails now is reported, never rolled back.
        match worktree::remove(&self.ws.repo, &self.ws.worktree) {
            Ok(()) => self.log.rec.worktree = None,
            Err(e) => {
                self.ui.warn(format!(
                    "the shipped run's worktree could not be removed: {e}"
                ));
                self.details.push(format!(
                    "remove it with: git worktree remove --force {}",
                    self.ws.worktree.display()
                ));
            }
        }
        let short = &commit[..commit.len().min(12)];
        self.log.rec.stages.push(StageRecord {
            stage: StageName::Ship,
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
            note: Some(format!("committed {commit} on {}", run_branch)),
        });
        self.ui.step(format!(
            "ship: committed {short} on {} (attested)",
            run_branch
        ));
        if self.plan.landing.ship == ShipMode::Merge {
            let merge = match &self.plan.target.base_branch {
                None => format!(
                    "not merged: the base {} is not a branch",
                    self.plan.target.base_ref
                ),
                Some(b) => {
                    let branch = b.strip_prefix(crate::git::refs::HEADS).unwrap_or(b);
                    // Under the repository lock taken above: one run moves a branch at a time.
                    match advance::advance(
                        &self.ws.repo,
                        &self.plan.target.repo.common_dir,
                        &advance::Move {
                            branch_ref: b,
                            expected: &self.plan.target.base,
                            new: &commit,
                            message: "git-pipeline: fast-forward to a verified run",
                            mover: self.ws.guard.as_ref().and_then(|g| g.committer_name()),
                        },
                    ) {
                        Err(e) => format!("not merged into {branch}: {e}"),
                        Ok(advance::Advance::Moved) => {
                            format!("fast-forwarded {branch} to {short}")
                        }
                        Ok(advance::Advance::Refused(why)) => format!(
                            "not merged into {branch}: {why}; the work stays on {}",
                            run_branch
                        ),
                    }
                }
            };
            self.ui.step(format!("ship: {merge}"));
            self.log.rec.merge = Some(merge);
        }
        self.finished_stage(StageName::Ship, "pass");
        if let Err(e) = self.log.dir.event(
            Some(StageName::Ship),
            EventKind::Shipped,
            json!({"commit": commit, "branch": run_branch, "merge": self.log.rec.merge}),
        ) {
            self.ui
                .warn(format!("could not log the shipped event: {e}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn messages() {
        assert_eq!(
            message("Fix typo\n", "r1"),
            "Fix typo\n\nPipeline-Run: r1\n"
        );
        let long = "x".repeat(100);
        let m = message(&long, "r1");
        assert!(
            m.starts_with(&format!("{}…\n\n{long}\n\n", "x".repeat(71))),
            "{m}"
        );
        let multi = message("Title\n\nbody line", "r");
        assert_eq!(multi, "Title\n\nbody line\n\nPipeline-Run: r\n");
        // A megabyte of task is a few kilobytes of message, trailer kept.
        let huge = format!("Title\n\n{}", "é".repeat(500_000));
        let m = message(&huge, "r");
        assert!(m.len() < 5000, "{}", m.len());
        assert!(m.contains("[the task is longer: see `git pipeline show r`]"));
        assert!(m.ends_with("Pipeline-Run: r\n"));
    }
}
