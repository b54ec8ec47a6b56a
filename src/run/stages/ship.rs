//! Shipping approved work: one commit on the run branch (made by `git commit`, so the project's
//! commit hooks run), its attestation note, and for `ship = "merge"` a fast-forward of the base
//! branch when that is safe.

use serde_json::json;

use crate::attest;
use crate::attest::sign::Signer;
use crate::attest::statement;
use crate::attest::statement::{AgentUse, Statement};
use crate::config::{ShipMode, SignMode, Trailer};
use crate::error::Error;
use crate::error::Result;
use crate::git::Git;
use crate::git::advance;
use crate::git::objects;
use crate::git::{Oid, TreeId};
use crate::ids;
use crate::run::state::Run;
use crate::store::EventKind;
use crate::store::record::Checkpoint;
use crate::store::record::StageName;
use crate::store::record::StageRecord;
use crate::store::record::StageStatus;

pub enum Committed {
    Ok {
        commit: Oid,
        tree: TreeId,
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
    base: &Oid,
    approved_tree: &TreeId,
    message: &str,
    maintenance_apart: bool,
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
    match objects::commit_index(git, message, maintenance_apart)? {
        objects::Committed::Made => {}
        objects::Committed::Refused(refused) => return Ok(Committed::HookFailed(refused)),
        objects::Committed::Interrupted => return Err(Error::Interrupted),
    }
    // Read the result from the repository, not through the worktree: a post-commit hook may
    // have changed the worktree, but the branch is what ships.
    let made = objects::commit_facts(repo, branch_ref)?
        .ok_or_else(|| Error::other(format!("{branch_ref} vanished after the commit")))?;
    let (commit, tree) = (made.id, made.tree);
    if commit == *base {
        return Ok(Committed::HookFailed(
            "`git commit` succeeded but the run branch did not move".to_owned(),
        ));
    }
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

/// The commit message: the task's first line as subject, the rest as body, then the trailers
/// (`Assisted-by: ...` lines as given) and `Pipeline-Run`.
pub fn message(task: &str, run_id: &str, trailers: &[String]) -> String {
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
    for t in trailers {
        msg.push_str(t);
        msg.push('\n');
    }
    msg.push_str(&format!("Pipeline-Run: {run_id}\n"));
    msg
}

/// `Assisted-by: <cli>:<model or CLI version>` for each agent whose edits ship (once each).
pub fn assisted_by(agents: &[AgentUse]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for a in agents.iter().filter(|a| a.changed_tree) {
        let who = clean_trailer_value(&a.cli);
        let line = match a.model.as_ref().or(a.version.as_ref()) {
            Some(m) => format!("Assisted-by: {who}:{}", clean_trailer_value(m)),
            None => format!("Assisted-by: {who}"),
        };
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

/// A trailer value on one line, without the separator characters that would split it.
fn clean_trailer_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == ':' {
                '-'
            } else {
                c
            }
        })
        .collect()
}

/// Write the note: the statement, in a DSSE envelope signed with git's signing key when the
/// config asks for signing and git has a key. Says how it was signed, or why not.
pub fn attest(
    repo: &Git,
    commit: &str,
    statement: &Statement,
    sign: SignMode,
    ahead: Option<crate::attest::sign::Ahead>,
) -> Result<Signed> {
    let (note, signed) = note_of(statement, sign, ahead, repo);
    objects::add_note(repo, attest::NOTES_REF, commit, &note)?;
    Ok(signed)
}

/// [`attest`], with the note written by a thread of its own: the caller joins it.
fn attest_on_thread(
    repo: &Git,
    commit: &str,
    statement: &Statement,
    sign: SignMode,
    ahead: Option<crate::attest::sign::Ahead>,
) -> PendingNote {
    let (note, signed) = note_of(statement, sign, ahead, repo);
    let (repo, commit) = (repo.clone(), commit.to_owned());
    PendingNote {
        writing: std::thread::spawn(move || {
            objects::add_note(&repo, attest::NOTES_REF, &commit, &note)
        }),
        signed,
    }
}

/// An attestation note being written.
struct PendingNote {
    writing: std::thread::JoinHandle<Result<()>>,
    signed: Signed,
}

impl PendingNote {
    fn finish(self) -> Result<Signed> {
        self.writing
            .join()
            .map_err(|_| Error::other("writing the attestation note stopped"))??;
        Ok(self.signed)
    }
}

/// The note's text (the statement, signed where it can be) and how it was signed.
fn note_of(
    statement: &Statement,
    sign: SignMode,
    ahead: Option<crate::attest::sign::Ahead>,
    repo: &Git,
) -> (String, Signed) {
    let payload = statement.to_json();
    let (note, signed) = match sign {
        SignMode::Off => (payload.clone(), Signed::Off),
        SignMode::Auto => match ahead
            .and_then(|a| a.join().ok())
            .unwrap_or_else(|| Signer::from_git(repo))
        {
            Err(e) => (payload.clone(), Signed::Failed(e.to_string())),
            Ok(None) => (payload.clone(), Signed::NoKey),
            Ok(Some(signer)) => match signer.sign(statement::PAYLOAD_TYPE, payload.as_bytes()) {
                Ok(envelope) => (envelope.to_json(), Signed::With(signer.describe())),
                Err(e) => (payload.clone(), Signed::Failed(e)),
            },
        },
    };
    (format!("{note}\n"), signed)
}

/// How an attestation was signed.
pub enum Signed {
    With(String),
    /// Signing is off in the config.
    Off,
    /// git has no signing key (`user.signingKey`).
    NoKey,
    /// Signing was set up and failed: the note is unsigned.
    Failed(String),
}

impl Run<'_> {
    /// The agents that ran, from the record, each once; `changed_tree` for those whose edits
    /// ship (builders and fixers, and the docs agent when it changed docs).
    pub(crate) fn agents_used(&self) -> Vec<AgentUse> {
        let mut used: Vec<AgentUse> = Vec::new();
        for s in &self.log.rec.stages {
            let (Some(info), Some(name)) = (&s.agent_info, &s.agent) else {
                continue;
            };
            let changed = match s.stage {
                StageName::Execution => true,
                StageName::Docs => !self.docs_changes.is_empty(),
                _ => false,
            };
            if let Some(u) = used.iter_mut().find(|u| {
                u.role == info.role && &u.name == name && u.cli == info.cli && u.model == info.model
            }) {
                u.changed_tree |= changed;
                continue;
            }
            used.push(AgentUse {
                role: info.role.clone(),
                name: name.clone(),
                cli: info.cli.clone(),
                version: self.cli_versions.get(&info.cli).cloned(),
                model: info.model.clone(),
                changed_tree: changed,
            });
        }
        used
    }

    /// Ask the preset CLIs whose edits ship for their version, for the attestation (their
    /// `--version` only prints; other programs are never run for it).
    pub(crate) async fn learn_cli_versions(&mut self) {
        for a in self.agents_used() {
            if !a.changed_tree || self.cli_versions.contains_key(&a.cli) {
                continue;
            }
            let Some(preset) = crate::preset::find(&a.cli) else {
                continue;
            };
            let Some(program) = preset.edit.first() else {
                continue;
            };
            let program = std::path::PathBuf::from(program);
            let asked = tokio::task::spawn_blocking(move || {
                crate::preset::version::ask(&program, std::time::Duration::from_secs(10))
            })
            .await;
            if let Ok(Some(v)) = asked {
                self.cli_versions.insert(a.cli.clone(), v);
            }
        }
    }

    /// The attestation of an approved commit: an in-toto statement of the change from the
    /// run's base to `tree`.
    pub(crate) fn attestation(&self, commit: &Oid, tree: &TreeId, rounds: u32) -> Statement {
        let rec = &self.log.rec;
        let gates = self
            .plan
            .policy
            .gates
            .iter()
            .map(|g| {
                let name = g.name.get_ref().clone();
                let last = rec.gates.iter().rev().find(|r| r.name == name);
                statement::GateUse {
                    result: "pass".to_owned(),
                    duration_s: last.map(|r| r.duration_s),
                    name,
                }
            })
            .collect();
        let scope = self.scope.record();
        let cost: Option<f64> = rec
            .stages
            .iter()
            .filter_map(|s| s.cost_usd)
            .fold(None, |sum, c| Some(sum.unwrap_or(0.0) + c));
        Statement::new(
            commit,
            tree,
            statement::Predicate {
                run_id: self.log.dir.id.clone(),
                approved: true,
                base: statement::Base {
                    commit: self.plan.target.base.clone(),
                    tree: self.plan.target.base_tree.clone(),
                },
                task: statement::TaskDigest::of(&self.plan.target.task),
                agents: self.agents_used(),
                gates,
                verifier: statement::Verifier {
                    agent: self
                        .verifier_label
                        .clone()
                        .unwrap_or_else(|| self.plan.agents.verifier.name.clone()),
                    verdict: "approved".to_owned(),
                    rounds,
                },
                scope: statement::ScopeUse {
                    allow: scope.allow,
                    deny: scope.deny,
                    changed: rec.changed_paths.clone(),
                },
                usage: statement::UsageTotal {
                    tokens: rec.stages.iter().map(|s| s.tokens).sum(),
                    tokens_estimated: rec.stages.iter().any(|s| s.tokens_estimated),
                    cost_usd: cost,
                },
                docs: self.docs_changes.clone(),
                at: ids::now_rfc3339(),
            },
        )
    }

    /// The Agent Trace record of `commit`: every line the change added, by the builder.
    fn write_agent_trace(&self, commit: &Oid) -> Result<()> {
        let added = crate::git::diff::added_lines(&self.ws.repo, &self.plan.target.base, commit)?;
        let builder = self.agents_used().into_iter().find(|a| a.changed_tree);
        let author = attest::trace::Author {
            cli: builder.as_ref().map_or("unknown", |b| b.cli.as_str()),
            model: builder.as_ref().and_then(|b| b.model.as_deref()),
        };
        let record = attest::trace::record(
            commit,
            &added,
            &author,
            &self.log.dir.id,
            (&ids::new_uuid(), &ids::now_rfc3339()),
        );
        objects::add_note(
            &self.ws.repo,
            attest::trace::TRACE_REF,
            commit,
            &format!("{record}\n"),
        )
    }

    /// Write the attestation of `commit`, and say how it was signed.
    pub(crate) fn write_attestation(
        &mut self,
        commit: &Oid,
        tree: &TreeId,
        rounds: u32,
    ) -> Result<&'static str> {
        let statement = self.attestation(commit, tree, rounds);
        let signed = attest(
            &self.ws.repo,
            commit,
            &statement,
            self.plan.landing.sign,
            self.ws.signer_ahead.take(),
        )?;
        Ok(self.attested(signed))
    }

    /// [`Run::write_attestation`], the note written on a thread while the caller goes on.
    fn start_attestation(&mut self, commit: &Oid, tree: &TreeId, rounds: u32) -> PendingNote {
        let statement = self.attestation(commit, tree, rounds);
        attest_on_thread(
            &self.ws.repo,
            commit,
            &statement,
            self.plan.landing.sign,
            self.ws.signer_ahead.take(),
        )
    }

    /// How the attestation was signed, in the ship line's words (a failed signing is warned).
    fn attested(&mut self, signed: Signed) -> &'static str {
        match signed {
            Signed::With(how) => {
                self.details.push(format!("attestation signed with {how}"));
                "attested, signed"
            }
            Signed::Off | Signed::NoKey => "attested",
            Signed::Failed(why) => {
                self.ui.warn(format!(
                    "the attestation could not be signed, so it is unsigned: {why}"
                ));
                "attested, unsigned"
            }
        }
    }

    /// Commit `tree` (the scratch index holds it), attest it, remove the worktree, and for
    /// `ship = "merge"` fast-forward the base branch. `Some(output)` when the commit hook refused.
    pub(crate) fn ship(&mut self, tree: &TreeId) -> Result<Option<String>> {
        let trailers = if self.plan.landing.trailers.contains(&Trailer::AssistedBy) {
            assisted_by(&self.agents_used())
        } else {
            Vec::new()
        };
        let message = message(&self.plan.target.task, &self.log.dir.id, &trailers);
        let branch =
            self.ws.branch.clone().ok_or_else(|| {
                Error::other("a run without a branch of its own has nothing to ship")
            })?;
        let branch_ref = branch.full();
        if self.plan.landing.sign == SignMode::Auto {
            let repo = self.ws.repo.clone();
            // Where the guard's config listing has nothing that could set up signing, git has
            // no key, and no git process is started to ask.
            let asked = self
                .ws
                .guard
                .as_ref()
                .is_none_or(|g| g.signing_configured());
            self.ws.signer_ahead = Some(std::thread::spawn(move || match asked {
                true => Signer::from_git(&repo),
                false => Ok(None),
            }));
        }
        // What ships must be what was judged: an object of the change rewritten since (by a
        // process a step left behind) would otherwise be committed under the judged name.
        if let Some(what) = crate::git::objects::first_rewritten(
            &self.ws.repo,
            self.plan.target.base_tree.as_str(),
            tree.as_str(),
        )? {
            return Err(Error::other_hint(
                format!(
                    "an object of the change was rewritten after it was judged: {what} no longer holds what its name says"
                ),
                "something wrote .git/objects after the steps (a process a step left behind?): run git fsck, then run the task again",
            ));
        }
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
        // Where git's test is known (crate::git::maintenance), the maintenance `git commit`
        // would run and wait for runs only when it has work, beside the note and the slot's
        // return. Elsewhere `git commit` runs it as always.
        let maintenance_here = self
            .ws
            .guard
            .as_ref()
            .and_then(|g| crate::git::maintenance::decided_here(g.maintenance_configured()));
        let (commit, tree) = match commit(
            &self.ws.repo,
            &wt_git,
            &branch_ref,
            &self.plan.target.base,
            tree,
            &message,
            maintenance_here.is_some(),
        )? {
            Committed::HookFailed(out) => return Ok(Some(out)),
            Committed::Ok { commit, tree } => (commit, tree),
        };
        // No step runs after the commit: the watches end, each on a thread of its own. Closing
        // an inotify instance waits for an RCU grace period (~10 ms on a 2-core VM), which the
        // note and the slot's return need not wait for, and apart their waits overlap.
        crate::platform::close_on_thread(self.ws.wt_watch.take());
        if let Some(watches) = self.ws.guard.as_mut().map(|g| g.release_watches()) {
            watches.close_apart();
        }
        let objects = self.plan.target.repo.common_dir.join("objects");
        if let Some(version) = maintenance_here
            && crate::git::maintenance::due(&objects, commit.len())
        {
            self.ws.maintenance = Some(crate::git::maintenance::start(&self.ws.repo, version));
        }
        self.checkpoint(Checkpoint::Committed {
            commit: commit.clone(),
            tree: tree.clone(),
        })?;
        self.complete_ship(&commit, &tree)?;
        Ok(None)
    }

    /// After the commit: attest it, remove the worktree, fast-forward when asked. Also what a
    /// resumed run does when it finds its commit already made.
    pub(crate) fn complete_ship(&mut self, commit: &Oid, tree: &TreeId) -> Result<()> {
        let _guard = self.repo_lock()?;
        // Signed with the owner's key: what is attested is read from the repository, never taken
        // from the record (which a step could have rewritten before a resume).
        let facts = objects::commit_facts(&self.ws.repo, commit)?;
        if facts.as_ref().map(|f| (&f.tree, f.parents.first()))
            != Some((tree, Some(&self.plan.target.base)))
        {
            return Err(Error::other(format!(
                "commit {commit} is not the approved change on {} (its tree or parent differ from what was verified); not attesting it",
                self.plan.target.base
            )));
        }
        let commit = commit.clone();
        let run_branch = self
            .ws
            .branch
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default();
        // The note is written while the worktree is put away: the two touch different refs (a
        // slot's HEAD, or the removed worktree's), and a note that fails still fails the run,
        // which a resume finishes from the commit.
        let note = self.start_attestation(&commit, tree, self.log.rec.verification.rounds);
        if self.plan.landing.agent_trace
            && let Err(e) = self.write_agent_trace(&commit)
        {
            // The attestation is what gates pushes; a missing trace record is only reported.
            self.ui
                .warn(format!("the Agent Trace record could not be written: {e}"));
        }
        // From here the work is shipped: what fails now is reported, never rolled back.
        match self.put_away_worktree() {
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
        let attested = note.finish();
        if let Some(m) = self.ws.maintenance.take() {
            let _ = m.join();
        }
        let attested = self.attested(attested?);
        self.log.rec.commit = Some(commit.clone());
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
            credits: None,
            error: None,
            note: Some(format!("committed {commit} on {}", run_branch)),
            agent_info: None,
        });
        self.ui.step(format!(
            "ship: committed {short} on {run_branch} ({attested})"
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
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            message("Fix typo\n", "r1", &[]),
            "Fix typo\n\nPipeline-Run: r1\n"
        );
        let long = "x".repeat(100);
        let m = message(&long, "r1", &[]);
        assert!(
            m.starts_with(&format!("{}…\n\n{long}\n\n", "x".repeat(71))),
            "{m}"
        );
        let multi = message("Title\n\nbody line", "r", &[]);
        assert_eq!(multi, "Title\n\nbody line\n\nPipeline-Run: r\n");
        // A megabyte of task is a few kilobytes of message, trailer kept.
        let huge = format!("Title\n\n{}", "é".repeat(500_000));
        let m = message(&huge, "r", &[]);
        assert!(m.len() < 5000, "{}", m.len());
        assert!(m.contains("[the task is longer: see `git pipeline show r`]"));
        assert!(m.ends_with("Pipeline-Run: r\n"));
    }

    fn used(cli: &str, model: Option<&str>, version: Option<&str>, changed: bool) -> AgentUse {
        AgentUse {
            role: "builder".to_owned(),
            name: "builder".to_owned(),
            cli: cli.to_owned(),
            version: version.map(str::to_owned),
            model: model.map(str::to_owned),
            changed_tree: changed,
        }
    }

    #[test]
    fn assisted_by_names_each_agent_whose_edits_ship_once() {
        let agents = [
            used("claude", Some("claude-sonnet-4-5"), Some("2.1.197"), true),
            used("codex", None, Some("0.171.0"), true),
            used("claude", Some("claude-sonnet-4-5"), None, true),
            used("gemini", Some("gemini-2.5-pro"), None, false),
            used("my agent", None, None, true),
            used("x", Some("evil\nSigned-off-by: someone:else"), None, true),
        ];
        assert_eq!(
            assisted_by(&agents),
            [
                "Assisted-by: claude:claude-sonnet-4-5",
                "Assisted-by: codex:0.171.0",
                "Assisted-by: my-agent",
                "Assisted-by: x:evil-Signed-off-by--someone-else",
            ]
        );
        let m = message("Fix typo", "r1", &assisted_by(&agents[..2]));
        assert!(m.ends_with("\n\nAssisted-by: claude:claude-sonnet-4-5\nAssisted-by: codex:0.171.0\nPipeline-Run: r1\n"), "{m}");
    }
}
