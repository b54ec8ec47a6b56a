//! Where a run works, and its whole life: `setup` makes the worktree and branch for a new run,
//! `reattach` brings them back for a resumed one (reusing the folder, or checking the branch
//! out again and refilling it from the last snapshot), and both go through `attach` and
//! `attached`: the run's own index, the containment guard, the sandbox and the watch.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{Error, Result};
use crate::git::snapshot::Snapshotter;
use crate::git::{objects, prepare, worktree};
use crate::run::state::Run;
use crate::store::EventKind;
use crate::store::slots::Place;

impl Run<'_> {
    /// The run's own index (never the agent's), the containment guard and the sandbox, for
    /// the worktree that is now there.
    fn attach(&mut self, known: Option<worktree::Paths>) -> Result<worktree::Paths> {
        let wt_paths = match known {
            Some(p) => p,
            None => worktree::paths(&self.ws.worktree)?,
        };
        self.ws.snap = Some(Snapshotter::new(
            &self.ws.worktree,
            &wt_paths.git_dir,
            self.log.dir.scratch("index")?,
        ));
        self.arm_guard(&wt_paths.git_dir)?;
        let plain = self.ws.guard.as_ref().is_some_and(|g| g.objects_plain());
        if let Some(snap) = &mut self.ws.snap {
            snap.write_trees_here(
                &self.ws.repo,
                &self.plan.target.repo.common_dir,
                self.plan.target.base.as_str(),
                plain,
            );
        }
        Ok(wt_paths)
    }

    /// The worktree is ready: watched, and named in the record with its identity (what resume,
    /// abandon and clean check before they enter it).
    fn attached(&mut self) -> Result<()> {
        self.watch_worktree()?;
        self.log.rec.worktree = Some(self.ws.worktree.clone());
        self.log.rec.worktree_identity = worktree::identity(&self.ws.worktree);
        self.save()
    }

    pub fn setup(&mut self) -> Result<()> {
        let root = &self.plan.landing.worktree_root;
        std::fs::create_dir_all(root).map_err(|e| Error::io_path("create", root, e))?;
        let reason = format!("git-pipeline run {} in progress", self.log.dir.id);
        let (checkout, checkout_tree) = self.plan.checkout();
        let branch = self.ws.branch.as_ref().map(|b| b.as_str());
        let guard = self.repo_lock()?;
        // The user's checkouts are listed for the guard (a git process each) while the
        // worktree is made: neither waits for the other.
        let checkouts = if self.plan.policy.containment.checkout {
            self.user_checkouts()
        } else {
            Vec::new()
        };
        // A reused slot's config is listed for the guard while the slot is reset, in the admin
        // folder its pointer names (the guard takes the listing only if the reset kept that
        // folder and the checkout cannot have changed what git reads).
        let admin_ahead = match self.ws.place {
            Place::Reused(_) => worktree::known_paths(
                &self.ws.worktree,
                &self.plan.target.repo.common_dir,
                &self.plan.target.repo.hooks_dir,
            )
            .map(|p| p.git_dir),
            _ => None,
        };
        let (added, ignored, config, warm) = std::thread::scope(|s| {
            let listing = s.spawn(|| {
                checkouts
                    .iter()
                    .filter_map(|c| {
                        let ignored = crate::git::ignored::Ignored::of(c).ok()?;
                        // Watched from now on, while the slot is reset: the first step's
                        // baseline takes in what changed meanwhile, as from any later start.
                        let repo = &self.plan.target.repo;
                        let watch = (repo.work_tree.as_ref() == Some(c)
                            && crate::safety::watch::enabled())
                        .then(|| {
                            crate::safety::watch::CheckoutWatch::new(
                                c,
                                Some(&repo.git_dir),
                                ignored.clone(),
                            )
                        })
                        .and_then(|w| w.ok().flatten());
                        Some((c.clone(), ignored, watch))
                    })
                    .collect::<Vec<_>>()
            });
            let warm = self.plan.policy.containment.refs.then(|| {
                let (repo, common) = (&self.ws.repo, &self.plan.target.repo.common_dir);
                let own = self.log.dir.id.as_str();
                s.spawn(move || crate::safety::containment::Warm::read(repo, common, own))
            });
            let config = admin_ahead.map(|admin| {
                let wt = &self.ws.worktree;
                s.spawn(move || {
                    let git = crate::git::Git::worktree(wt, &admin);
                    crate::git::config::files_read(&git, wt)
                        .ok()
                        .map(|l| (admin, l))
                })
            });
            let added = match self.ws.place {
                Place::OwnFolder => {
                    worktree::add(&self.ws.repo, &self.ws.worktree, branch, checkout, &reason)
                        .map(|()| None)
                }
                Place::NewSlot(n) => self.make_slot(n, branch, checkout).map(|()| None),
                Place::Reused(n) => self.reset_slot(n, branch, checkout),
            };
            let config = config.and_then(|c| c.join().ok().flatten());
            let warm = warm.and_then(|w| w.join().ok());
            (added, listing.join().unwrap_or_default(), config, warm)
        });
        self.ws.ignored_ahead = ignored;
        self.ws.warm = warm;
        // Only a slot reset in place keeps the admin folder that was listed: one made again
        // (its git state pointed elsewhere) gets a new listing.
        self.ws.config_ahead = config.filter(|_| matches!(added, Ok(Some(_))));
        drop(guard);
        let known = match added {
            Ok(known) => known,
            Err(e) => {
                // git may leave a half-made worktree or branch behind; both are ours to remove.
                let _ = self.discard_worktree();
                return Err(e);
            }
        };
        let wt_paths = self.attach(known)?;
        tracing::trace!("setup: guard armed");
        // Before any agent runs: from now on the worktree's index is the agent's.
        if let Some(snap) = &self.ws.snap {
            snap.seed()?;
        }
        self.trust_slot_index(&self.log.dir.scratch("index")?, checkout_tree)?;
        tracing::trace!("setup: index seeded");
        let submodules = prepare::init_submodules(&self.ws.worktree)?;
        self.log.rec.submodule_origins = if submodules {
            crate::git::submodules::origins(
                &self.ws.worktree,
                &self.ws.repo,
                &self.plan.target.repo.common_dir,
            )?
        } else {
            Default::default()
        };
        let copied = match &self.plan.target.repo.main_worktree {
            Some(main) => {
                let patterns = prepare::include_patterns(main, &self.plan.landing.include)?;
                prepare::copy_includes(
                    main,
                    &self.ws.worktree,
                    &patterns,
                    &self.log.dir.scratch("worktreeinclude")?,
                )?
            }
            None => Vec::new(),
        };
        // The starting point must be the base itself: a post-checkout hook or a filter that
        // leaves changes behind would be blamed on the agent (and shipped) otherwise. Without
        // either, git's checkout is the base by construction and the check is skipped.
        let start = if worktree::checkout_may_differ(
            &self.ws.worktree,
            &wt_paths,
            self.ws.guard.as_ref().map(|g| g.filter_driver()),
        )? {
            let s = self.snapshot()?;
            crate::git::snapshot::diff_trees(&self.ws.repo, checkout_tree, &s.tree)?
        } else {
            Vec::new()
        };
        if !start.is_empty() {
            let paths: Vec<String> = start
                .iter()
                .take(5)
                .map(|c| format!("{} {}", c.kind.letter(), c.path.display()))
                .collect();
            return Err(Error::other_hint(
                format!(
                    "right after checkout the worktree already differs from the base: {}",
                    paths.join(", ")
                ),
                "a post-checkout hook or a filter changed files; make it write ignored files only",
            ));
        }
        // Recorded only now: a run stopped before this point has no worktree worth keeping, and
        // `resume` makes it again from scratch.
        self.attached()?;
        tracing::trace!("setup: worktree recorded");
        self.log.dir.event(
            None,
            EventKind::WorktreeReady,
            json!({
                "worktree": self.ws.worktree,
                "branch": self.ws.branch.as_ref().map(|b| b.as_str()),
                "submodules": submodules,
                "included": copied.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
            }),
        )?;
        self.ui.info(match &self.ws.branch {
            None => format!(
                "  worktree {} (detached at {checkout})",
                self.ws.worktree.display()
            ),
            Some(branch) => format!(
                "  worktree {} on branch {branch}",
                self.ws.worktree.display(),
            ),
        });
        self.ui
            .info(format!("  sandbox {}", self.plan.policy.sandbox.describe()));
        Ok(())
    }

    /// Make the worktree usable again: reuse it when it is there, otherwise check the run's
    /// branch out again (never with `-B`) and refill it from the last snapshot. A setup that
    /// never completed is simply done again.
    pub(crate) fn reattach(&mut self) -> Result<()> {
        let replaced = worktree::was_replaced(&self.ws.worktree, self.log.rec.worktree_identity);
        if replaced {
            return Err(Error::usage_hint(
                format!(
                    "run {}'s worktree {} was replaced (moved away, or a symlink or another folder put in its place): git-pipeline will not enter it",
                    self.log.dir.id,
                    self.ws.worktree.display()
                ),
                format!(
                    "look at it yourself; `git pipeline abandon {}` archives the run's branch and leaves that path alone",
                    self.log.dir.id
                ),
            ));
        }
        self.clear_stale_git_locks();
        let registered = worktree::list(&self.ws.repo)?
            .into_iter()
            .any(|e| worktree::same_path(&e.path, &self.ws.worktree));
        if self.log.rec.worktree.is_none() && self.ws.place != Place::OwnFolder {
            // Stopped during setup, now in a slot: its reset makes it as new, on the run's branch
            // made again (an earlier reset may have made it, at the base: no agent ran yet).
            if let Some(b) = &self.ws.branch
                && let Some(tip) = objects::ref_value(&self.ws.repo, &b.full())?
            {
                if tip != self.plan.target.base {
                    return Err(Error::other(format!(
                        "run {}'s branch {b} moved before its worktree was ready; not resetting it",
                        self.log.dir.id
                    )));
                }
                if registered
                    && worktree::pointer_is_sound(
                        &self.ws.worktree,
                        &self.plan.target.repo.common_dir,
                    )
                {
                    worktree::detach_head(&self.ws.worktree, &self.plan.target.base)?;
                }
                worktree::delete_branch(&self.ws.repo, b.as_str())?;
            }
            return self.setup();
        }
        if self.log.rec.worktree.is_none() {
            // Stopped during setup: nothing an agent made is in there yet.
            if registered || self.ws.worktree.exists() {
                self.discard_worktree()?;
            }
            if self.ws.worktree.exists() {
                std::fs::remove_dir_all(&self.ws.worktree)
                    .map_err(|e| Error::io_path("remove", &self.ws.worktree, e))?;
            }
            return self.setup();
        }
        let reason = format!("git-pipeline run {} in progress", self.log.dir.id);
        if registered && self.ws.worktree.join(".git").exists() {
            worktree::lock(&self.ws.repo, &self.ws.worktree, &reason)?;
        } else {
            if registered {
                // Its folder was deleted by hand: let git forget it first.
                worktree::remove(&self.ws.repo, &self.ws.worktree)?;
            }
            let existing = match &self.ws.branch {
                Some(b) if objects::ref_value(&self.ws.repo, &b.full())?.is_some() => Some(b),
                _ => None,
            };
            let (checkout, _) = self.plan.checkout();
            let _guard = crate::store::lock::acquire_repo(&self.plan.target.repo.pipeline_dir())?;
            if let Some(b) = existing {
                worktree::add_existing(&self.ws.repo, &self.ws.worktree, b.as_str(), &reason)?;
            } else {
                let branch = self.ws.branch.as_ref().map(|b| b.as_str());
                worktree::add(&self.ws.repo, &self.ws.worktree, branch, checkout, &reason)?;
            }
            if let Some(tree) = &self.log.rec.resume.snapshot_tree {
                // Bring back the work the lost folder held.
                worktree::fill_from_tree(&self.ws.worktree, tree)?;
            }
            if let Place::Reused(n) = self.ws.place {
                // The slot's folder is a new one now, and holds no index of ours.
                self.slot_remade(n)?;
            }
            self.ui.step(format!(
                "resume: the worktree was gone; made it again at {}",
                self.ws.worktree.display()
            ));
        }
        self.attach(None)?;
        self.attached()
    }

    /// Lock files a killed git leaves behind, in what belongs to this run only.
    fn clear_stale_git_locks(&self) {
        let mut candidates = vec![
            self.log.dir.path.join("tmp/index.lock"),
            self.plan
                .target
                .repo
                .common_dir
                .join("worktrees")
                .join(&self.log.dir.id)
                .join("index.lock"),
        ];
        if let Some(b) = &self.ws.branch {
            candidates.push(
                self.plan
                    .target
                    .repo
                    .common_dir
                    .join(format!("{}.lock", b.full())),
            );
        }
        for path in candidates {
            if path.exists() && std::fs::remove_file(&path).is_ok() {
                self.ui
                    .step(format!("resume: removed a stale lock {}", path.display()));
            }
        }
    }

    /// The sandbox of the run's steps: the worktree, what git needs to commit on the run's
    /// branch (objects, the worktree's admin folder, the folder of its branch ref and reflog), a
    /// private temporary folder, build caches and `sandbox.writable`.
    fn sandbox_setup(&self, worktree_git_dir: &Path) -> Result<Option<crate::sandbox::Setup>> {
        if !self.plan.policy.sandbox.active() {
            return Ok(None);
        }
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("find git-pipeline itself for the sandbox", e))?;
        let common = &self.plan.target.repo.common_dir;
        // Not the run's own scratch folder (`tmp`, where its index is): the agent's.
        let tmp = self.log.dir.path.join("agent-tmp");
        let mut work = vec![
            self.ws.worktree.clone(),
            common.join("objects"),
            worktree_git_dir.to_owned(),
        ];
        if let Some(b) = &self.ws.branch {
            // git updates a ref through `<ref>.lock` beside it, so the ref's folder must be
            // writable: other runs' branches share it, and containment keeps watching them.
            let rel = PathBuf::from(b.full());
            for base in [common.clone(), common.join("logs")] {
                if let Some(dir) = base.join(&rel).parent() {
                    std::fs::create_dir_all(dir).map_err(|e| Error::io_path("create", dir, e))?;
                    work.push(dir.to_owned());
                }
            }
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io_path("create", &tmp, e))?;
        let mut writable = vec![tmp.clone()];
        let home = std::env::var_os("HOME").map(PathBuf::from);
        if let Some(h) = &home {
            writable.extend(crate::sandbox::caches(h));
        }
        writable.extend(self.plan.policy.sandbox.writable.iter().cloned());
        Ok(Some(crate::sandbox::Setup {
            exe,
            work,
            writable,
            tmp,
            home,
            gate_network: self.plan.policy.sandbox.gate_network,
            required: self.plan.policy.sandbox.mode == crate::sandbox::Mode::Required,
        }))
    }

    /// The user's checkouts the guard watches: the main worktree, and the one the run was
    /// started from.
    fn user_checkouts(&self) -> Vec<PathBuf> {
        let mut checkouts: Vec<PathBuf> = Vec::new();
        for c in [
            &self.plan.target.repo.main_worktree,
            &self.plan.target.repo.work_tree,
        ]
        .into_iter()
        .flatten()
        {
            if !checkouts.iter().any(|x| x == c) {
                checkouts.push(c.clone());
            }
        }
        checkouts
    }

    /// Set up the containment checks and the sandbox for this run's worktree.
    pub fn arm_guard(&mut self, worktree_git_dir: &Path) -> Result<()> {
        self.ws.sandbox = self.sandbox_setup(worktree_git_dir)?;
        let checkouts = self.user_checkouts();
        let ahead = std::mem::take(&mut self.ws.ignored_ahead);
        self.ws.guard = Some(crate::safety::containment::Guard::new(
            crate::safety::containment::Places {
                checks: self.plan.policy.containment.clone(),
                known_git_dirs: checkouts
                    .iter()
                    .map(|c| {
                        let repo = &self.plan.target.repo;
                        (repo.work_tree.as_ref() == Some(c)).then(|| repo.git_dir.clone())
                    })
                    .collect(),
                known_ignored: checkouts
                    .iter()
                    .map(|c| {
                        ahead
                            .iter()
                            .find(|(p, ..)| p == c)
                            .map(|(_, i, _)| i.clone())
                    })
                    .collect(),
                known_watches: {
                    let mut ahead = ahead;
                    checkouts
                        .iter()
                        .map(|c| {
                            let i = ahead.iter().position(|(p, ..)| p == c)?;
                            ahead.swap_remove(i).2
                        })
                        .collect()
                },
                checkouts,
                common_dir: self.plan.target.repo.common_dir.clone(),
                repo: self.ws.repo.clone(),
                worktree: self.ws.worktree.clone(),
                worktree_git_dir: worktree_git_dir.to_owned(),
                branch_ref: self
                    .ws
                    .branch
                    .as_ref()
                    .map(|b| b.full())
                    .unwrap_or_default(),
                base: self.plan.target.base.clone(),
                branch_prefix: self.plan.landing.branch_prefix.clone(),
                run_id: self.log.dir.id.clone(),
                committer: self.plan.target.committer.clone(),
                hooks_dir: Some(self.plan.target.repo.hooks_dir.clone()),
                config_ahead: self.ws.config_ahead.take(),
                warm: self.ws.warm.take(),
            },
        )?);
        Ok(())
    }

    /// Watch the run's worktree, so that a read-only step that wrote nothing costs no pass over
    /// it.
    pub fn watch_worktree(&mut self) -> Result<()> {
        self.ws.wt_watch = if crate::safety::watch::enabled() {
            crate::safety::watch::CheckoutWatch::new(&self.ws.worktree, None, Default::default())?
                .map(|w| w.following_new_folders())
        } else {
            None
        };
        Ok(())
    }
}
