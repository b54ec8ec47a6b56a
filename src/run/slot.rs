//! Worktree slots: a run works in `<worktree_root>/slot-<n>`, a worktree git-pipeline keeps from
//! one run to the next, so that build caches (`target/`, `node_modules/`) and the checkout
//! itself are warm. A slot is taken with its lock (the run's `PIPELINE_SLOT`), reset to the
//! run's base as a new checkout would be, and given back when the run ends.
//!
//! Preference: an idle slot, then a slot not made yet (up to `run.max_slots`), then the slot of
//! a run that was stopped (killed, interrupted) after its state is archived; otherwise a worktree
//! of the run's own, as without slots. A slot whose folder is not the one recorded (a symlink,
//! another folder, not registered with git) is never entered: it is left alone and reported.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{Error, Result};
use crate::git::{TreeId, objects, worktree};
use crate::run::stages::rollback;
use crate::run::state::Run;
use crate::store::lock::{self, Slot};
use crate::store::record::Status;
use crate::store::slots::{self, Place, SlotState};
use crate::store::{EventKind, Store};

/// What a slot is to a run looking for one.
enum Found {
    /// Given back: reset it and use it.
    Idle(SlotState),
    /// No folder yet.
    Empty,
    /// Held by a run that is not alive and not finished (killed, interrupted).
    Stopped(SlotState, String),
    /// Kept for a person, or not the folder git-pipeline made: left alone.
    Unavailable(Option<String>),
}

/// The lock reason of a slot's worktree: `git worktree prune` and `gc` leave it alone.
fn lock_reason(n: u32) -> String {
    format!(
        "git-pipeline worktree slot {n} (reused by runs; git pipeline clean --slots removes it)"
    )
}

fn classify(
    (pipeline_dir, common_dir): (&Path, &Path),
    path: &Path,
    state: Option<SlotState>,
    registered: &[worktree::Entry],
) -> Found {
    let is_symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let exists = is_symlink || path.exists();
    let Some(state) = state else {
        return if exists {
            Found::Unavailable(Some(format!(
                "{} exists but git-pipeline did not make it",
                path.display()
            )))
        } else {
            Found::Empty
        };
    };
    if !exists {
        // Its folder was deleted, but a stopped run's record may still name it: taking the slot
        // points that record elsewhere first.
        if let Some(run_id) = state.run.clone().filter(|r| crate::ids::is_run_id(r))
            && Store::new(pipeline_dir)
                .open(&run_id, Default::default())
                .read_record()
                .is_ok_and(|r| !r.status.is_final())
        {
            return Found::Stopped(state, run_id);
        }
        return Found::Empty;
    }
    let is_registered = registered
        .iter()
        .any(|e| worktree::same_path(&e.path, path));
    // Made, but killed before git filled it: still empty, and ours.
    let empty_and_ours = !is_symlink
        && !is_registered
        && state.identity.is_some()
        && worktree::is_the_same_folder(path, state.identity)
        && std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none());
    if empty_and_ours {
        return Found::Empty;
    }
    if is_symlink
        || state.identity.is_none()
        || !worktree::is_the_same_folder(path, state.identity)
        || !is_registered
        || !worktree::pointer_is_sound(path, common_dir)
    {
        return Found::Unavailable(Some(format!(
            "{} is no longer the worktree git-pipeline made (moved, replaced or unregistered)",
            path.display()
        )));
    }
    if state.kept {
        return Found::Unavailable(None);
    }
    let Some(run_id) = state.run.clone() else {
        return Found::Idle(state);
    };
    if !crate::ids::is_run_id(&run_id) {
        return Found::Unavailable(Some(format!(
            "its state names {run_id:?}, which is no run id"
        )));
    }
    let store = Store::new(pipeline_dir);
    let dir = store.open(&run_id, Default::default());
    match dir.read_record() {
        Ok(rec) if rec.status.is_final() => Found::Idle(state),
        Ok(_) => Found::Stopped(state, run_id),
        // Its record is gone: nothing refers to the slot's work but the slot.
        Err(_) if !dir.path.exists() => Found::Stopped(state, run_id),
        Err(_) => Found::Unavailable(Some(format!(
            "slot of run {run_id}, whose record cannot be read"
        ))),
    }
}

impl Run<'_> {
    /// Take this run's `PIPELINE_SLOT` and decide where its worktree goes.
    pub(crate) fn take_slot(&mut self) -> Result<()> {
        let pipeline_dir = self.plan.target.repo.pipeline_dir();
        let max = self.plan.landing.max_slots;
        let _guard = self.repo_lock()?;
        tracing::trace!("slot: taking one");
        let registered = match worktree::registered(&self.plan.target.repo.common_dir) {
            Some(r) => r,
            None => worktree::list(&self.ws.repo)?,
        };
        let mut empty: Option<Slot> = None;
        let mut stopped: Option<(Slot, SlotState, String)> = None;
        for n in 0..max {
            let Some(held) = lock::try_slot(&pipeline_dir, n)? else {
                continue;
            };
            let path = slots::folder(&self.plan.landing.worktree_root, n);
            match classify(
                (&pipeline_dir, &self.plan.target.repo.common_dir),
                &path,
                slots::read(&pipeline_dir, n)?,
                &registered,
            ) {
                Found::Idle(state) => return self.claim(held, Place::Reused(n), state),
                Found::Empty if empty.is_none() => empty = Some(held),
                // Its own slot from before it was stopped (during its setup: nothing of an
                // agent's is in it).
                Found::Stopped(state, other) if other == self.log.dir.id => {
                    return self.reclaim(held, state, &registered);
                }
                Found::Stopped(state, other) if stopped.is_none() => {
                    stopped = Some((held, state, other));
                }
                Found::Unavailable(Some(why)) => {
                    self.ui
                        .warn(format!("worktree slot {n}: {why}; left alone"));
                }
                _ => {}
            }
        }
        if let Some(held) = empty {
            return self.reclaim(held, SlotState::default(), &registered);
        }
        if let Some((held, state, other)) = stopped
            && self.take_over(held.number, &other)?
        {
            return self.reclaim(held, state, &registered);
        }
        // Every slot is in use: a worktree of the run's own, as without slots.
        self.ws.slot = Some(lock::acquire_slot_from(&pipeline_dir, max)?);
        self.ws.place = Place::OwnFolder;
        Ok(())
    }

    /// Slot `held` is this run's: reused when its folder is there, else made again (a folder
    /// deleted by hand may still be registered with git: it is forgotten first).
    fn reclaim(
        &mut self,
        held: Slot,
        state: SlotState,
        registered: &[worktree::Entry],
    ) -> Result<()> {
        let n = held.number;
        let path = slots::folder(&self.plan.landing.worktree_root, n);
        let is_registered = registered
            .iter()
            .any(|e| worktree::same_path(&e.path, &path));
        if path.exists() && is_registered {
            return self.claim(held, Place::Reused(n), state);
        }
        if is_registered {
            worktree::remove(&self.ws.repo, &path)?;
        } else if path.exists() {
            // Only an empty folder of ours comes here (`classify`).
            std::fs::remove_dir(&path).map_err(|e| Error::io_path("remove", &path, e))?;
        }
        slots::forget(&self.plan.target.repo.pipeline_dir(), n)?;
        self.claim(held, Place::NewSlot(n), SlotState::default())
    }

    /// Slot `held` is this run's: recorded as such before anything is done in it.
    fn claim(&mut self, held: Slot, place: Place, mut state: SlotState) -> Result<()> {
        let n = held.number;
        state.run = Some(self.log.dir.id.clone());
        state.kept = false;
        slots::write(&self.plan.target.repo.pipeline_dir(), n, &state)?;
        self.ws.worktree = slots::folder(&self.plan.landing.worktree_root, n);
        self.ws.slot = Some(held);
        self.ws.place = place;
        Ok(())
    }

    /// Archive what stopped run `other` left in slot `n`, and point its record at a worktree of
    /// its own, so that `resume` makes one and fills it from the archived state. `false` when
    /// the run turned out to be alive (it holds its lock).
    fn take_over(&mut self, n: u32, other: &str) -> Result<bool> {
        let store = Store::new(&self.plan.target.repo.pipeline_dir());
        let dir = store.open(other, Default::default());
        let path = slots::folder(&self.plan.landing.worktree_root, n);
        let Ok(rec) = dir.read_record() else {
            let leftovers = crate::safety::process::run_processes(&dir.path, Some(&path));
            crate::safety::process::stop_pids(&leftovers);
            // No record: the archive ref is all that will know of the work.
            let why = "its worktree slot was reused after its record was lost";
            let rec_less = crate::run::abandon::archive_orphan(&self.ws.repo, other, &path, why)?;
            self.ui.step(format!(
                "worktree slot {n}: its unrecorded work is archived at {}",
                rec_less.unwrap_or_else(|| "nothing to archive".to_owned())
            ));
            return Ok(true);
        };
        let Ok(_other_lock) = dir.lock() else {
            return Ok(false);
        };
        // Its agents outlive a kill -9 of git-pipeline (process groups of their own): stopped
        // before its state is archived, so nothing of theirs lands in the next run's worktree.
        let leftovers = crate::safety::process::run_processes(&dir.path, Some(&path));
        crate::safety::process::stop_pids(&leftovers);
        let why = format!(
            "its worktree slot was taken by run {} while it was stopped",
            self.log.dir.id
        );
        let holds_work = rec.worktree.as_deref().is_some_and(|w| w == path);
        let archive = if holds_work {
            crate::run::abandon::archive_run(&self.ws.repo, &dir, &rec, Some(&path), &why)?
        } else {
            None
        };
        let mut rec = rec;
        if holds_work {
            // The state it had is archived; resume rebuilds it elsewhere from that tree.
            let tree = match &archive {
                Some(name) => Some(crate::git::objects::tree_of(&self.ws.repo, name)?),
                None => Some(crate::git::objects::tree_of(&self.ws.repo, &rec.base)?),
            };
            rec.resume.snapshot_tree = tree;
            rec.archive = archive.clone();
            rec.worktree = Some(self.plan.landing.worktree_root.join(other));
            rec.worktree_identity = None;
            if rec.status == Status::Running {
                rec.status = Status::Interrupted;
            }
            dir.write_record(&rec)?;
        }
        dir.event(
            None,
            EventKind::SlotTaken,
            json!({"slot": n, "by": self.log.dir.id, "archive": archive}),
        )?;
        self.ui.step(format!(
            "worktree slot {n}: taken from stopped run {other}{}",
            match &archive {
                Some(a) => format!(" (its work is archived at {a}; resume rebuilds it)"),
                None => String::new(),
            }
        ));
        Ok(true)
    }

    /// The run's worktree goes back to the pool (a slot) or is removed, with its branch. The
    /// record says so first: a kill in between leaves a record that no longer names the slot,
    /// never one that names a slot another run then takes.
    pub(crate) fn discard_worktree(&mut self) -> Result<()> {
        let named = self.forget_worktree()?;
        let done = rollback::discard(
            &self.ws.repo,
            &self.ws.worktree,
            self.ws.branch.as_ref(),
            &self.owner(),
        );
        self.remember_worktree_if(named && done.is_err());
        done
    }

    /// The run's worktree goes back to the pool (a slot) or is removed; its branch stays.
    pub(crate) fn put_away_worktree(&mut self) -> Result<()> {
        let named = self.forget_worktree()?;
        let done = rollback::put_away(&self.ws.repo, &self.ws.worktree, &self.owner());
        self.remember_worktree_if(named && done.is_err());
        done
    }

    /// The record no longer names a worktree, durably; whether it named one.
    fn forget_worktree(&mut self) -> Result<bool> {
        let named = self.log.rec.worktree.take().is_some();
        if named {
            self.save()?;
        }
        Ok(named)
    }

    /// The worktree stayed (it could not be put away): the record names it again.
    fn remember_worktree_if(&mut self, stayed: bool) {
        if stayed {
            self.log.rec.worktree = Some(self.ws.worktree.clone());
            let _ = self.save();
        }
    }

    /// This run as the owner of its worktree.
    fn owner(&self) -> rollback::Owner {
        rollback::Owner {
            pipeline_dir: self.plan.target.repo.pipeline_dir(),
            run_id: self.log.dir.id.clone(),
            base: self.plan.target.base.clone(),
            holds_slot: true,
        }
    }

    /// Keep the index git-pipeline's own checkout just wrote (before any agent) as the slot's
    /// trusted index: the next reset rewrites every file whose stat changed since, which is
    /// every file an agent or a gate touched.
    pub(crate) fn trust_slot_index(&self, index: &Path, tree: &TreeId) -> Result<()> {
        let (Place::NewSlot(n) | Place::Reused(n)) = self.ws.place else {
            return Ok(());
        };
        let pipeline_dir = self.plan.target.repo.pipeline_dir();
        slots::keep_index(&pipeline_dir, n, index)?;
        let mut state = slots::read(&pipeline_dir, n)?.unwrap_or_default();
        state.index_tree = Some(tree.clone());
        slots::write(&pipeline_dir, n, &state)
    }

    /// Make the worktree in a new slot: registered, locked, recorded with its identity.
    pub(crate) fn make_slot(&self, n: u32, branch: Option<&str>, checkout: &str) -> Result<()> {
        let pipeline_dir = self.plan.target.repo.pipeline_dir();
        // The folder and its identity first, then git fills it: a kill -9 during the checkout
        // leaves a slot that is known to be ours (its run resumes, or another takes it over).
        std::fs::create_dir(&self.ws.worktree)
            .map_err(|e| Error::io_path("create", &self.ws.worktree, e))?;
        let mut state = slots::read(&pipeline_dir, n)?.unwrap_or_default();
        state.identity = worktree::identity(&self.ws.worktree);
        state.index_tree = None;
        slots::write(&pipeline_dir, n, &state)?;
        if let Err(e) = worktree::add(
            &self.ws.repo,
            &self.ws.worktree,
            branch,
            checkout,
            &lock_reason(n),
        ) {
            // Nothing of it is a slot yet: what git left half-made is forgotten.
            let half_made = worktree::list(&self.ws.repo)?
                .iter()
                .any(|entry| worktree::same_path(&entry.path, &self.ws.worktree));
            if half_made {
                let _ = worktree::remove(&self.ws.repo, &self.ws.worktree);
            } else {
                // Only the empty folder made above (never one with anything in it).
                let _ = std::fs::remove_dir(&self.ws.worktree);
            }
            slots::forget(&pipeline_dir, n)?;
            return Err(e);
        }
        Ok(())
    }

    /// Reset slot `n` to the run's base, as a new checkout of it would be: the slot's own index
    /// (never the last agent's) decides which files are written; with none, or when a
    /// `.gitattributes` changed, every file is.
    /// Its git paths when it was reset in place (`None`: made again).
    pub(crate) fn reset_slot(
        &self,
        n: u32,
        branch: Option<&str>,
        checkout: &str,
    ) -> Result<Option<worktree::Paths>> {
        let pipeline_dir = self.plan.target.repo.pipeline_dir();
        let common_dir = &self.plan.target.repo.common_dir;
        let path = &self.ws.worktree;
        let state = slots::read(&pipeline_dir, n)?.unwrap_or_default();
        if worktree::was_replaced(path, state.identity)
            || state.identity.is_none()
            || !worktree::pointer_is_sound(path, common_dir)
        {
            return Err(Error::other(format!(
                "worktree slot {n} at {} is not the folder git-pipeline made; not entering it",
                path.display()
            )));
        }
        let repo = &self.plan.target.repo;
        let paths = match worktree::known_paths(path, common_dir, &repo.hooks_dir) {
            Some(p) => p,
            None => worktree::paths(path)?,
        };
        let admin = paths.git_dir.clone();
        let reset = match worktree::admin_tampering(path, &admin, common_dir) {
            Some(why) => Err(why),
            None => self.reset_in_place(n, (&state, &admin), branch, checkout),
        };
        let trusted = match reset {
            Ok(trusted) => trusted,
            // What a reset cannot make as new (a folder the last run made unreadable, a file the
            // caches would have kept that is not ignored, git state pointing elsewhere) is not
            // fixed in place: the slot is removed and made again, cold.
            Err(why) => {
                self.ui.warn(format!(
                    "worktree slot {n}: {why}; making it again (its caches are lost)"
                ));
                worktree::remove(&self.ws.repo, path)?;
                // The reset may have made the run's branch already (at the base: no agent ran).
                if let Some(b) = branch
                    && objects::ref_value(&self.ws.repo, &crate::git::refs::heads(b))?.is_some()
                {
                    worktree::delete_branch(&self.ws.repo, b)?;
                }
                slots::forget(&pipeline_dir, n)?;
                let fresh = SlotState {
                    run: Some(self.log.dir.id.clone()),
                    ..SlotState::default()
                };
                slots::write(&pipeline_dir, n, &fresh)?;
                return self.make_slot(n, branch, checkout).map(|()| None);
            }
        };
        self.ui.step(format!(
            "worktree slot {n}: reset to {} ({}; kept {})",
            &checkout[..checkout.len().min(12)],
            if trusted {
                "only changed files written"
            } else {
                "every file written"
            },
            if self.plan.landing.caches.is_empty() {
                "no caches".to_owned()
            } else {
                self.plan.landing.caches.join(", ")
            }
        ));
        Ok(Some(paths))
    }

    /// The reset itself; `Err` says why the slot must be made again instead. `Ok(true)` when the
    /// slot's trusted index decided which files were written.
    fn reset_in_place(
        &self,
        n: u32,
        (state, admin): (&SlotState, &Path),
        branch: Option<&str>,
        checkout: &str,
    ) -> std::result::Result<bool, String> {
        let pipeline_dir = self.plan.target.repo.pipeline_dir();
        let attempt = || -> Result<(bool, Option<String>)> {
            let trusted = match &state.index_tree {
                Some(t) if !worktree::attributes_differ(&self.ws.repo, t, checkout)? => {
                    slots::install_index(&pipeline_dir, n, &admin.join("index"))?
                }
                _ => {
                    slots::forget_index(&pipeline_dir, n)?;
                    slots::install_index(&pipeline_dir, n, &admin.join("index"))?
                }
            };
            tracing::trace!("slot: index installed");
            // A killed git may have left its lock behind in the slot's admin folder.
            let _ = std::fs::remove_file(admin.join("index.lock"));
            worktree::lock_at(&self.ws.repo, &self.ws.worktree, admin, &lock_reason(n))?;
            worktree::reset_to(
                &self.ws.worktree,
                &admin.join("index"),
                branch,
                checkout,
                &self.plan.landing.caches,
            )?;
            let caches = &self.plan.landing.caches;
            tracing::trace!("slot: reset");
            Ok((trusted, worktree::first_change(&self.ws.worktree, caches)?))
        };
        match attempt() {
            Ok((trusted, None)) => Ok(trusted),
            Ok((_, Some(change))) => Err(format!(
                "after its reset it still differs from the base ({})",
                change.trim()
            )),
            Err(e) => Err(format!("its reset failed ({e})")),
        }
    }

    /// Slot `n`'s folder was made again (its old one was deleted): recorded as the slot's.
    pub(crate) fn slot_remade(&self, n: u32) -> Result<()> {
        let pipeline_dir = self.plan.target.repo.pipeline_dir();
        let mut state = slots::read(&pipeline_dir, n)?.unwrap_or_default();
        state.identity = worktree::identity(&self.ws.worktree);
        state.index_tree = None;
        slots::forget_index(&pipeline_dir, n)?;
        slots::write(&pipeline_dir, n, &state)
    }

    /// The worktree root's slot folder of the record's worktree, when the run works in one.
    pub(crate) fn slot_in_record(&self) -> Option<u32> {
        let wt = self.log.rec.worktree.as_deref()?;
        let n = slots::number_of(wt)?;
        (slots::folder(&self.plan.landing.worktree_root, n) == wt).then_some(n)
    }

    /// A resumed run takes its own slot back (it is free: the run was stopped), waiting a little
    /// for a run that is looking at it right now.
    pub(crate) fn retake_slot(&mut self, n: u32) -> Result<()> {
        let pipeline_dir = self.plan.target.repo.pipeline_dir();
        for _ in 0..50 {
            if let Some(held) = lock::try_slot(&pipeline_dir, n)? {
                let ours = slots::read(&pipeline_dir, n)?
                    .is_some_and(|s| s.run.as_deref() == Some(self.log.dir.id.as_str()));
                if !ours {
                    return Err(Error::other_hint(
                        format!(
                            "worktree slot {n} no longer holds run {}'s worktree",
                            self.log.dir.id
                        ),
                        format!(
                            "its last state is archived at refs/pipeline/archive/{} when it had work; git pipeline abandon {} ends it",
                            self.log.dir.id, self.log.dir.id
                        ),
                    ));
                }
                self.ws.slot = Some(held);
                self.ws.place = Place::Reused(n);
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(Error::other_hint(
            format!(
                "worktree slot {n}, where run {} works, is in use",
                self.log.dir.id
            ),
            "wait for the run that holds it to finish, then resume again",
        ))
    }
}

/// Slot folders of a worktree root, with their numbers.
pub fn slot_folders(root: &Path) -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| slots::number_of(&e.path()).map(|n| (n, e.path())))
        .collect();
    found.sort();
    found
}
