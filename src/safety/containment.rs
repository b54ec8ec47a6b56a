//! Containment checks: an agent is code running with the user's rights, so the scope check of its
//! worktree is not enough. Around every agent and gate step, cheap fingerprints of what the run
//! must not change are compared:
//!
//! - the user's checkout: the `git status` entries (tracked changes, untracked and ignored files
//!   at the granularity git lists them) with each entry's size and mtime, the index's stat, HEAD;
//! - the shared git dir: its `config`, the hooks folder (honouring `core.hooksPath`), `info/`;
//! - the effective git configuration of the run's worktree (`git config --list`, every level):
//!   a new filter driver, `core.fsmonitor` or `core.hooksPath` would make later git commands run
//!   the agent's code;
//! - refs other than the run's own and those git-pipeline itself manages;
//! - the run branch: still checked out in the worktree, and not reset below its base.
//!
//! A difference stops the run (`containment`, exit 1) before anything is shipped. The checks
//! compare before and after each step, so the user may work between steps, but not in their
//! checkout while an agent runs (`[containment] checkout = false` turns that check off).
//!
//! Refs are the user's to move at any time, from any worktree: a ref change counts against the
//! step only when it is attributed to it for certain. Every agent and gate runs with a marked
//! committer name ([`Guard::committer_name`]) and with reflogs for every ref
//! (`core.logAllRefUpdates=always`), so each ref a step's git moves or creates gets a reflog entry
//! carrying the mark. A change whose entries since the step began all carry the mark is the
//! step's: it stops the run and is put back. Any other change (the user's commit, stash, tag or
//! fetch, another run's ship or merge, a deletion, whose reflog goes with the ref) is reported and
//! left as it is. A step that scrubs its environment escapes attribution: its ref changes are
//! then reported, not undone (docs/security.md says where the line is).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::git::Git;
use crate::git::objects;
use crate::safety::records::{self, Records};

/// What to check; from `[containment]`.
#[derive(Debug, Clone)]
pub struct Checks {
    pub checkout: bool,
    pub git_dir: bool,
    pub refs: bool,
}

/// A run's containment checks, armed.
#[derive(Debug)]
pub struct Guard {
    /// Where to look.
    pub at: Places,
    /// Found once when the guard is armed (a change to what decides them is itself a breach):
    /// each checkout's git dir, the hooks folder, and every file git reads configuration from.
    checkout_git_dirs: Vec<PathBuf>,
    /// Per checkout, its inotify watch; `None` falls back to comparing `git status` listings.
    watches: Vec<Option<crate::safety::watch::CheckoutWatch>>,
    /// Whether [`Guard::release_watches`] took them.
    released: bool,
    /// Per checkout, what git ignores: changes inside ignored folders never count.
    ignored: Vec<crate::git::ignored::Ignored>,
    hooks_dir: PathBuf,
    config_files: Vec<PathBuf>,
    /// Whether the run's worktree has a filter driver configured when the guard was armed.
    filter_driver: bool,
    /// Whether any of git's `gc.*` or `maintenance.*` settings is set for the worktree.
    maintenance_configured: bool,
    /// Whether git writes loose objects the default way for the worktree (no settings change it).
    objects_plain: bool,
    /// Whether the config may set up signing (see [`Guard::signing_configured`]).
    signing_configured: bool,
    /// The last run-branch tip known to contain the base.
    sound_tip: std::sync::Mutex<Option<String>>,
    /// Control and config files as last read.
    reread: crate::safety::reread::Reread,
    /// Loose ref files as last read (see [`crate::git::refs::all_again`]).
    refs_seen: std::sync::Mutex<crate::git::refs::Seen>,
    /// Where the platform can watch them, the refs' watch: a check after which nothing happened
    /// to them takes the last listing instead of walking every ref file.
    refs_watch: Option<crate::platform::RefsWatch>,
    /// The refs as last listed.
    refs_last: std::sync::Mutex<Option<RefsPrint>>,
    /// Other runs' records as the last fingerprint (or the read ahead) listed them: the next
    /// step's baseline (see [`Guard::take_at_step_start`]).
    records: std::sync::Mutex<Records>,
    /// The committer name steps run with: the user's, marked with the run id.
    marked_name: Option<String>,
}

/// The watches a guard held, released (see [`Guard::release_watches`]): dropping this closes
/// them, which waits for the kernel to let go of every watch (tens of milliseconds with
/// thousands of them), so callers drop it on a thread of its own.
pub struct Watches {
    checkouts: Vec<Option<crate::safety::watch::CheckoutWatch>>,
    refs: Option<crate::platform::RefsWatch>,
    records: Option<crate::platform::RecordsWatch>,
}

impl Watches {
    /// Close each watch on a thread of its own, so that the kernel's waits overlap each other
    /// and what the caller does next.
    pub fn close_apart(self) {
        for watch in self.checkouts.into_iter().flatten() {
            crate::platform::close_on_thread(watch);
        }
        if let Some(watch) = self.refs {
            crate::platform::close_on_thread(watch);
        }
        if let Some(watch) = self.records {
            crate::platform::close_on_thread(watch);
        }
    }
}

/// What a step changed outside its worktree.
#[derive(Debug, Default)]
pub struct Review {
    /// Changes made by the step, or that cannot be told apart from its own: they stop the run.
    pub breaches: Vec<String>,
    /// Changes someone else made meanwhile (the user, another run): reported, never undone.
    pub others: Vec<String>,
    /// Refs the step changed, with their value before it (`None`: it created them).
    step_refs: Vec<(String, Option<String>)>,
    /// Other runs' records the step cut, rewrote or deleted.
    step_records: Vec<PathBuf>,
    /// Attestation notes no run wrote, with the note each object had before (`None`: none).
    step_notes: Vec<(String, Option<String>)>,
    /// When every note change was one no run wrote: the notes ref's value before the step and
    /// as the review saw it, to put it back exactly if nothing moved it since.
    notes_whole: Option<(Option<String>, String)>,
}

impl Review {
    /// A change to a place the sandbox forbids: when the step ran sandboxed it cannot have made
    /// it (someone else did: reported); otherwise it is the step's. True when it is a breach.
    fn by_the_step_unless_sandboxed(&mut self, what: String, sandboxed: bool) -> bool {
        if sandboxed {
            self.others
                .push(format!("{what} (the sandboxed step could not write there)"));
            false
        } else {
            self.breaches.push(what);
            true
        }
    }
}

/// Where a guard is to look.
#[derive(Debug)]
pub struct Places {
    /// What to check.
    pub checks: Checks,
    /// The user's checkouts: the main worktree, and the one the run was started from.
    pub checkouts: Vec<PathBuf>,
    /// Their git dirs where already known (the checkout the run was started from), by index.
    pub known_git_dirs: Vec<Option<PathBuf>>,
    /// What git ignores in them where already listed, by index.
    pub known_ignored: Vec<Option<crate::git::ignored::Ignored>>,
    /// Their watches where already started (with the ignored files above), by index.
    pub known_watches: Vec<Option<crate::safety::watch::CheckoutWatch>>,
    pub common_dir: PathBuf,
    pub repo: Git,
    pub worktree: PathBuf,
    pub worktree_git_dir: PathBuf,
    /// `refs/heads/<branch>` of the run, or empty for a detached (reverify) run.
    pub branch_ref: String,
    pub base: crate::git::Oid,
    pub branch_prefix: String,
    /// Marks the committer name of the run's steps.
    pub run_id: String,
    /// The name git commits as, which the mark is added to.
    pub committer: Option<String>,
    /// The repository's hooks folder, when already known.
    pub hooks_dir: Option<PathBuf>,
    /// `git config --list` of the worktree, taken while its checkout was being reset (for the
    /// admin folder it names): used where the checkout cannot have changed it.
    pub config_ahead: Option<(PathBuf, crate::git::config::Listing)>,
    /// What the first fingerprint would read first, read while the worktree was made.
    pub warm: Option<Warm>,
}

/// Ref files and other runs' records read ahead of the guard (see [`Warm::read`]): its first
/// fingerprint then reads only what changed since.
#[derive(Debug, Default)]
pub struct Warm {
    refs: crate::git::refs::Seen,
    refs_watch: Option<crate::platform::RefsWatch>,
    /// Other runs' records, followed from then on: the first step's baseline.
    records: Option<Records>,
}

impl Warm {
    /// Read what a guard's first fingerprint reads most of: every ref file, and the records of
    /// every run but `own`. Nothing read here is trusted beyond its stat: a file whose stat moved
    /// by the first fingerprint is read again then.
    pub fn read(repo: &Git, common_dir: &Path, own: &str) -> Warm {
        let mut refs = crate::git::refs::Seen::default();
        let _ = crate::git::refs::all_again(repo, &mut refs);
        // After the read: a ref file this process opens later is stat'ed at every check from
        // then on (a read is an open), which a first read of every ref would do to all of them.
        // The first check's listing, taken after the watch began, is the baseline.
        let refs_watch = crate::git::refs::files_store(repo)
            .filter(|dir| {
                let many = walkdir::WalkDir::new(dir.join("refs"))
                    .into_iter()
                    .filter(|e| e.as_ref().is_ok_and(|e| e.file_type().is_file()))
                    .count();
                crate::safety::watch::worth_watching(many, REFS_WATCHED_FROM)
            })
            .and_then(crate::platform::RefsWatch::new);
        Warm {
            refs,
            refs_watch,
            records: Some(Records::follow(common_dir, own)),
        }
    }
}

/// The loose ref files from which a watch pays for itself (see
/// [`crate::safety::watch::worth_watching`]): a walk costs a stat and a few allocations a ref.
const REFS_WATCHED_FROM: usize = 600;

/// What a checkout looked like, or what changed in it since the last look.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CheckoutPrint {
    /// Its status entries with their stat, plus index and HEAD.
    Status(BTreeMap<String, u64>),
    /// The paths its watch saw change since the fingerprint before.
    Changed(std::collections::BTreeSet<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    checkouts: Vec<CheckoutPrint>,
    /// The contents of the repository's small control files (config, hooks, info/), so that a
    /// change can be put back exactly.
    files: BTreeMap<PathBuf, Kept>,
    config: u64,
    refs: Arc<BTreeMap<String, String>>,
    /// git-pipeline's own refs (other runs' branches, notes, archives): other runs move them all
    /// the time, so only what the step itself did to them counts.
    managed: Arc<BTreeMap<String, String>>,
    /// The run branch's tip, as the same listing saw it.
    branch_tip: Option<String>,
    /// What the worktree's `.git` file says.
    pointer: Option<Vec<u8>>,
    /// The worktree folder's identity: a folder or symlink put in its place is a breach.
    folder: Option<(u64, u64)>,
    /// When it was taken, in seconds since the epoch: reflog entries from then on are the step's
    /// or someone else's.
    at: i64,
    /// Other runs' records by stat (see [`crate::safety::records`]).
    records: records::Stamps,
    /// Their contents, while they fit in memory: what a breach of them is put back from.
    record_copies: records::Copies,
}

/// The user's checkouts put under watch (where the platform can watch), each with what git
/// ignores in it.
type Watched = (
    Vec<Option<crate::safety::watch::CheckoutWatch>>,
    Vec<crate::git::ignored::Ignored>,
);

fn watch_checkouts(p: &mut Places, git_dirs: &[PathBuf]) -> Result<Watched> {
    let mut watches = Vec::new();
    let mut ignored = Vec::new();
    for (i, (c, git_dir)) in p.checkouts.iter().zip(git_dirs).enumerate() {
        let started = p.known_watches.get_mut(i).and_then(Option::take);
        let known = p.known_ignored.get(i).cloned().flatten();
        let ig = if p.checks.checkout {
            match known {
                Some(ig) => ig,
                None => crate::git::ignored::Ignored::of(c)?,
            }
        } else {
            Default::default()
        };
        watches.push(if started.is_some() {
            started
        } else if p.checks.checkout && crate::safety::watch::enabled() {
            crate::safety::watch::CheckoutWatch::new(c, Some(git_dir), ig.clone())?
        } else {
            None
        });
        ignored.push(ig);
    }
    Ok((watches, ignored))
}

/// A control file's content (or, past [`KEEP_LIMIT`], its stat) and mode; `None` when absent.
type Kept = Option<(Vec<u8>, u32)>;

/// Files larger than this in the repository's control folders are compared by stat only.
const KEEP_LIMIT: u64 = 1024 * 1024;

impl Guard {
    /// Arm a guard: find once what every fingerprint will look at.
    pub fn new(mut p: Places) -> Result<Guard> {
        let mut checkout_git_dirs = Vec::new();
        for (i, c) in p.checkouts.iter().enumerate() {
            checkout_git_dirs.push(match p.known_git_dirs.get(i).cloned().flatten() {
                Some(dir) => dir,
                None => crate::git::repo::absolute_git_dir(&Git::in_dir(c))?,
            });
        }
        let hooks_dir = match &p.hooks_dir {
            Some(dir) => dir.clone(),
            None => crate::git::repo::hooks_dir(&p.repo)?,
        };
        let marked_name = p.committer.as_deref().map(|name| marked(name, &p.run_id));
        let ahead = p.config_ahead.take();
        let warm = p.warm.take().unwrap_or_default();
        let records = match warm.records {
            Some(records) => records,
            None if p.checks.refs => Records::follow(&p.common_dir, &p.run_id),
            None => Records::unfollowed(&p.common_dir, &p.run_id),
        };
        let ConfigFacts {
            files: config_files,
            filter_driver,
            maintenance_configured,
            objects_plain,
            signing_configured,
        } = config_files(&p, ahead)?;
        tracing::trace!("guard: config files listed");
        let (watches, ignored) = watch_checkouts(&mut p, &checkout_git_dirs)?;
        tracing::trace!("guard: checkouts watched");
        Ok(Guard {
            watches,
            released: false,
            ignored,
            at: p,
            checkout_git_dirs,
            hooks_dir,
            config_files,
            filter_driver,
            maintenance_configured,
            objects_plain,
            signing_configured,
            sound_tip: std::sync::Mutex::new(None),
            reread: Default::default(),
            refs_seen: std::sync::Mutex::new(warm.refs),
            refs_watch: warm.refs_watch,
            refs_last: std::sync::Mutex::new(None),
            records: std::sync::Mutex::new(records),
            marked_name,
        })
    }

    /// Whether a filter driver was configured for the run's worktree when the guard was armed
    /// (read from the same `git config --list` as the config files).
    pub fn filter_driver(&self) -> bool {
        self.filter_driver
    }

    /// Whether any of git's `gc.*` or `maintenance.*` settings was set when the guard was armed
    /// (with none, [`crate::git::maintenance::due`] is git's own test).
    pub fn maintenance_configured(&self) -> bool {
        self.maintenance_configured
    }

    /// Whether git writes loose objects the default way for the worktree, as the guard's config
    /// listing says ([`crate::git::tree_write::objects_plain`]).
    pub fn objects_plain(&self) -> bool {
        self.objects_plain
    }

    /// Whether git's config may set up signing for the repository: a `gpg.*` or
    /// `user.signingKey` setting, or a conditional include (whose condition can differ between
    /// the worktree and the repository). Without any, git has no signing key.
    pub fn signing_configured(&self) -> bool {
        self.signing_configured
    }

    /// The committer name the run's agents and gates get: the user's, marked with the run id, so
    /// that the reflog entries their git commands write name the run.
    pub fn committer_name(&self) -> Option<&str> {
        self.marked_name.as_deref()
    }

    /// The checkout watches, taken out of the guard (which takes no fingerprint after this):
    /// closing an inotify instance waits for the kernel to retire its marks, so the caller ends
    /// them where nothing waits for it.
    pub fn release_watches(&mut self) -> Watches {
        self.released = true;
        let n = self.watches.len();
        let records = self.records.get_mut().map_or(None, |r| r.release_watch());
        Watches {
            checkouts: std::mem::replace(&mut self.watches, (0..n).map(|_| None).collect()),
            refs: self.refs_watch.take(),
            records,
        }
    }

    pub fn take(&self) -> Result<Fingerprint> {
        self.take_with(false)
    }

    /// A step's baseline: as [`Guard::take`], except that other runs' records are the ones the
    /// last fingerprint listed (or the read ahead, for the first step). Only git-pipeline's own
    /// work ran since (every step ends with a fingerprint), so a change made meanwhile still
    /// shows when the step ends; and a listing costs a stat of every record of every run, which
    /// in a repository with thousands of runs was most of a step's fixed cost.
    pub fn take_at_step_start(&self) -> Result<Fingerprint> {
        self.take_with(true)
    }

    fn take_with(&self, reuse_records: bool) -> Result<Fingerprint> {
        if self.released {
            return Err(crate::error::Error::other(
                "the containment guard's checkout watches were released: no fingerprint can be taken",
            ));
        }
        let mut checkouts = Vec::new();
        if self.at.checks.checkout {
            for (i, c) in self.at.checkouts.iter().enumerate() {
                checkouts.push(match &self.watches[i] {
                    Some(w) => CheckoutPrint::Changed(w.changes()?),
                    None => CheckoutPrint::Status(checkout_print(
                        c,
                        &self.checkout_git_dirs[i],
                        &self.ignored[i],
                        !self.at.checks.refs,
                    )?),
                });
            }
        }
        let (files, config) = if self.at.checks.git_dir {
            (self.control_files(), self.config_print())
        } else {
            (BTreeMap::new(), 0)
        };
        tracing::trace!("take: checkouts and control files");
        let RefsPrint {
            refs,
            managed,
            branch_tip,
        } = self.refs()?;
        tracing::trace!("take: refs");
        let (records, record_copies) = if self.at.checks.refs {
            let mut followed = self.records.lock().unwrap_or_else(|p| p.into_inner());
            let records = if reuse_records {
                followed.last_or_list()
            } else {
                followed.list()
            };
            tracing::trace!("take: records listed");
            let copies = followed.copies(&records);
            (records, copies)
        } else {
            Default::default()
        };
        tracing::trace!("take: records copied");
        Ok(Fingerprint {
            checkouts,
            files,
            config,
            refs: if self.at.checks.refs {
                refs
            } else {
                Default::default()
            },
            managed: if self.at.checks.refs {
                managed
            } else {
                Default::default()
            },
            branch_tip,
            pointer: std::fs::read(self.at.worktree.join(".git")).ok(),
            folder: crate::git::worktree::identity(&self.at.worktree),
            at: now_secs(),
            record_copies,
            records,
        })
    }

    /// Put back what can be put back safely: the repository's control files and other refs. The
    /// user's checkout is never written to (their own edits could be lost); it is reported.
    /// Refs are put back only when the step changed them ([`Review`]): a change someone else
    /// made meanwhile is theirs.
    pub fn restore(&self, before: &Fingerprint, review: &Review) -> Result<Vec<String>> {
        use std::os::unix::fs::PermissionsExt;
        let mut done = Vec::new();
        let now = self.control_files();
        for (path, old) in &before.files {
            if now.get(path) == Some(old) {
                continue;
            }
            match old {
                Some((bytes, mode)) => {
                    std::fs::write(path, bytes)
                        .and_then(|()| {
                            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                        })
                        .map_err(|e| crate::error::Error::io_path("restore", path, e))?;
                    done.push(format!("restored {}", path.display()));
                }
                None => {
                    if std::fs::remove_file(path).is_ok() {
                        done.push(format!("removed {}", path.display()));
                    }
                }
            }
        }
        for path in now.keys() {
            if !before.files.contains_key(path) && std::fs::remove_file(path).is_ok() {
                done.push(format!("removed {}", path.display()));
            }
        }
        for path in &review.step_records {
            if let Some(bytes) = before.record_copies.get(path.as_os_str()) {
                crate::store::atomic::write(path, bytes.as_slice())?;
                done.push(format!("restored {}", path.display()));
            }
        }
        for (name, old) in &review.step_refs {
            let RefsPrint { refs, managed, .. } = self.refs()?;
            let current = refs.get(name).or_else(|| managed.get(name));
            if current == old.as_ref() {
                continue;
            }
            match (old, current) {
                (Some(old), current) => {
                    crate::git::refs::put_back(
                        &self.at.repo,
                        name,
                        old,
                        current.map(String::as_str),
                        "git-pipeline: undo a change made during a run",
                    )?;
                    done.push(format!("put {name} back"));
                }
                (None, Some(new)) => {
                    crate::git::refs::delete(&self.at.repo, name, Some(new))?;
                    done.push(format!("deleted {name}"));
                }
                (None, None) => {}
            }
        }
        if !review.step_notes.is_empty() {
            // Under the repository lock, as runs write their notes: `git notes` itself does not
            // compare the ref's old value, so an unlocked write could lose another run's note.
            let _lock = crate::store::lock::acquire_repo(&self.at.common_dir.join("pipeline"))?;
            let notes = crate::attest::NOTES_REF;
            // Exactly as it was, if nothing moved the ref since the review; else note by note.
            let whole = match &review.notes_whole {
                Some((Some(old), seen)) => crate::git::refs::put_back(
                    &self.at.repo,
                    notes,
                    old,
                    Some(seen),
                    "git-pipeline: undo notes written during a run",
                )
                .is_ok(),
                Some((None, seen)) => {
                    crate::git::refs::delete(&self.at.repo, notes, Some(seen)).is_ok()
                }
                None => false,
            };
            if whole {
                done.push(format!("put {notes} back"));
            } else {
                for (object, blob) in &review.step_notes {
                    crate::git::notes::put_note_back(
                        &self.at.repo,
                        notes,
                        object,
                        blob.as_deref(),
                    )?;
                    done.push(format!("put the attestation note of {object} back"));
                }
            }
        }
        // Never through a replaced folder: the pointer file would be someone else's.
        if let Some(p) = &before.pointer
            && crate::git::worktree::identity(&self.at.worktree) == before.folder
            && std::fs::read(self.at.worktree.join(".git")).ok().as_ref() != Some(p)
        {
            std::fs::write(self.at.worktree.join(".git"), p).map_err(|e| {
                crate::error::Error::io_path("restore", &self.at.worktree.join(".git"), e)
            })?;
            done.push("restored the worktree's .git pointer".to_owned());
        }
        Ok(done)
    }

    /// What changed between two fingerprints, and whether the run branch is still sound: one
    /// sentence per breach, and one per change someone else made.
    /// `sandboxed`: the step ran in a fully enforced OS sandbox, where it cannot write your
    /// checkout; a change there is then yours (reported, never a breach).
    pub fn review(
        &self,
        before: &Fingerprint,
        after: &Fingerprint,
        sandboxed: bool,
    ) -> Result<Review> {
        let mut review = Review::default();
        for (i, (b, a)) in before.checkouts.iter().zip(&after.checkouts).enumerate() {
            let changed: Vec<&str> = match (b, a) {
                (CheckoutPrint::Status(b), CheckoutPrint::Status(a)) => b
                    .iter()
                    .filter(|(k, v)| a.get(*k) != Some(v))
                    .map(|(k, _)| k.as_str())
                    .chain(a.keys().filter(|k| !b.contains_key(*k)).map(String::as_str))
                    .collect(),
                // What the watch saw between the two looks: during the step.
                (_, CheckoutPrint::Changed(seen)) => seen.iter().map(String::as_str).collect(),
                (CheckoutPrint::Changed(_), CheckoutPrint::Status(_)) => Vec::new(),
            };
            if !changed.is_empty()
                && self.moved_by_another_run(i, &changed, &before.refs, before.at)?
            {
                review.others.push(format!(
                    "your checkout {} was fast-forwarded by another git-pipeline run",
                    self.at.checkouts[i].display()
                ));
                continue;
            }
            if !changed.is_empty() {
                let shown: Vec<&str> = changed.iter().take(5).copied().collect();
                let what = format!(
                    "your checkout {} changed: {}",
                    self.at.checkouts[i].display(),
                    shown.join(", ")
                );
                review.by_the_step_unless_sandboxed(what, sandboxed);
            }
        }
        let files: Vec<String> = before
            .files
            .iter()
            .filter(|(k, v)| after.files.get(*k) != Some(v))
            .map(|(k, _)| k.display().to_string())
            .chain(
                after
                    .files
                    .keys()
                    .filter(|k| !before.files.contains_key(*k))
                    .map(|k| k.display().to_string()),
            )
            .collect();
        if !files.is_empty() {
            review.breaches.push(format!(
                "the repository's git config, hooks or info/ changed: {}",
                files.join(", ")
            ));
        }
        if before.folder != after.folder {
            review.breaches.push(
                "the worktree folder was replaced (moved away, or a symlink or another folder put in its place)"
                    .to_owned(),
            );
        } else if before.pointer != after.pointer {
            review
                .breaches
                .push("the worktree's .git pointer was rewritten".to_owned());
        }
        // Other runs' records. A live run writes its own (and a starting one makes its folder);
        // git-pipeline's commands (`abandon`, `clean`) only ever replace a `run.json` whole (a new
        // file renamed into place) and append to `events.jsonl`. Anything else done to a record
        // of a run that is not running (truncated, edited in place, deleted, an event log cut or
        // swapped) is the step's: the run stops, says which, and puts it back from the copy taken
        // before the step (when the records fit in memory). The sandbox prevents it where it runs.
        let names: std::collections::BTreeSet<&OsString> =
            if Arc::ptr_eq(&before.records, &after.records) {
                Default::default()
            } else {
                before.records.keys().chain(after.records.keys()).collect()
            };
        for name in names {
            let (old, new) = (before.records.get(name), after.records.get(name));
            let path = Path::new(name);
            let tampered = records::tampered(path, old, new);
            let live = || {
                path.parent().is_some_and(|d| {
                    matches!(
                        crate::store::lock::liveness(&d.join("lock")),
                        crate::store::lock::Liveness::Alive(_)
                    )
                })
            };
            if !tampered || live() {
                continue;
            }
            let what = format!(
                "the record {} of another run was {}",
                path.display(),
                if new.is_none() {
                    "deleted"
                } else {
                    "cut or rewritten in place"
                }
            );
            if review.by_the_step_unless_sandboxed(what, sandboxed) {
                review.step_records.push(path.to_owned());
            }
        }
        // The submodules' git dirs lie in the worktree's admin folder, which steps may write, and
        // git-pipeline's own git runs there after the step (a status that looks into them).
        if let Some(why) = crate::git::worktree::submodule_git_dirs_run_commands(
            &self.at.worktree_git_dir.join("modules"),
        ) {
            review
                .breaches
                .push(format!("{why}: git would run it outside any step"));
        }
        if before.config != after.config {
            review.breaches.push(
                "the git configuration seen by the run changed (a filter driver, core.hooksPath or core.fsmonitor could run code later)".to_owned(),
            );
        }
        let names: std::collections::BTreeSet<&String> = if Arc::ptr_eq(&before.refs, &after.refs) {
            Default::default()
        } else {
            before.refs.keys().chain(after.refs.keys()).collect()
        };
        for name in names {
            let (old, new) = (before.refs.get(name), after.refs.get(name));
            let what = match (old, new) {
                (Some(o), Some(n)) if o == n => continue,
                (Some(_), Some(_)) => "was moved",
                (Some(_), None) => "was deleted",
                (None, _) => "was created",
            };
            if self.by_the_step(
                name,
                old.map(String::as_str),
                new.map(String::as_str),
                before.at,
            ) {
                review.breaches.push(format!("{name} {what}"));
                review.step_refs.push((name.clone(), old.cloned()));
            } else {
                let recover = match (what, old) {
                    ("was deleted", Some(o)) => format!(" (it was at {o})"),
                    _ => String::new(),
                };
                review
                    .others
                    .push(format!("{name} {what}{recover}, not by this run"));
            }
        }
        // Our own refs: what the step did to them is a breach; an attestation note or an archive
        // that vanished is one too (no run deletes those while others run; `clean` expires
        // archives outside any run's step).
        let names: std::collections::BTreeSet<&String> =
            if Arc::ptr_eq(&before.managed, &after.managed) {
                Default::default()
            } else {
                before.managed.keys().chain(after.managed.keys()).collect()
            };
        for name in names {
            let (old, new) = (before.managed.get(name), after.managed.get(name));
            let what = match (old, new) {
                (Some(o), Some(n)) if o == n => continue,
                (Some(_), Some(_)) => "was moved",
                (Some(_), None) => "was deleted",
                (None, _) => "was created",
            };
            let kept = name == crate::attest::NOTES_REF
                || name.starts_with("refs/pipeline/archive/")
                || self.shipped_branch(name);
            let by_step = self.by_the_step(
                name,
                old.map(String::as_str),
                new.map(String::as_str),
                before.at,
            );
            if by_step || (kept && new.is_none()) {
                review
                    .breaches
                    .push(format!("{name} (git-pipeline's own) {what}"));
                review.step_refs.push((name.clone(), old.cloned()));
            } else if name == crate::attest::NOTES_REF {
                // A step that scrubbed its environment leaves no mark: judge the notes themselves.
                let changes = crate::git::notes::changes(
                    &self.at.repo,
                    old.map(String::as_str),
                    new.map(String::as_str),
                )?;
                let mut bad = Vec::new();
                for change in changes.iter() {
                    if !self.note_vouched_for(change, before)? {
                        bad.push(change);
                    }
                }
                // When nothing else moved the ref, it goes back exactly as it was; otherwise
                // only the notes no run wrote are undone, and other runs' notes stay.
                if !bad.is_empty()
                    && bad.len() == changes.len()
                    && let Some(seen) = new
                {
                    review.notes_whole = Some((old.cloned(), seen.clone()));
                }
                for change in bad {
                    let did = match (&change.old, &change.new) {
                        (None, _) => "added",
                        (Some(_), Some(_)) => "rewritten",
                        (Some(_), None) => "removed",
                    };
                    review.breaches.push(format!(
                        "{name} (git-pipeline's own): a note for {} was {did} that no run wrote",
                        change.object
                    ));
                    review
                        .step_notes
                        .push((change.object.clone(), change.old.clone()));
                }
            }
        }
        if let Some(b) = self.branch_breach(after.branch_tip.as_deref())? {
            review.breaches.push(b);
        }
        Ok(review)
    }

    /// Whether the only change to checkout `i` is another run's fast-forward of its branch
    /// (`ship = "merge"`, which moves a checked-out branch only when its worktree is clean): its
    /// reflog entries since the step began were all written by other runs and lead to its value
    /// now; every changed path is one that the fast-forward changed; none of those is modified
    /// now. Anything else in the checkout stays a breach.
    fn moved_by_another_run(
        &self,
        i: usize,
        changed: &[&str],
        before_refs: &BTreeMap<String, String>,
        since: i64,
    ) -> Result<bool> {
        let Some(head) = std::fs::read_to_string(self.checkout_git_dirs[i].join("HEAD"))
            .ok()
            .and_then(|h| h.trim().strip_prefix("ref: ").map(str::to_owned))
        else {
            return Ok(false);
        };
        let entries = crate::git::reflog::since(&self.at.common_dir, &head, since - 1);
        // A name is only a claim (an agent sets its own environment): the entry counts as a
        // run's only when that run exists and shipped exactly the commit the branch moved to.
        let store = crate::store::Store::new(&self.at.common_dir.join("pipeline"));
        let by_a_run = |e: &crate::git::reflog::Entry| {
            let Some(id) = e
                .name
                .strip_suffix(')')
                .and_then(|n| n.rsplit_once(" (git-pipeline "))
                .map(|(_, id)| id)
                .filter(|id| crate::ids::is_run_id(id))
            else {
                return false;
            };
            Some(&e.name) != self.marked_name.as_ref()
                && store
                    .open(id, Default::default())
                    .read_record()
                    .is_ok_and(|r| r.commit.as_deref() == Some(e.new.as_str()))
        };
        // The entries since the value the branch had before the step, newest last.
        let Some(was) = before_refs.get(&head) else {
            return Ok(false);
        };
        let Some(start) = entries.iter().rposition(|e| &e.old == was) else {
            return Ok(false);
        };
        let chain = &entries[start..];
        let (Some(first), Some(last)) = (chain.first(), chain.last()) else {
            return Ok(false);
        };
        if !chain.iter().all(by_a_run)
            || objects::ref_value(&self.at.repo, &head)?.as_deref() != Some(last.new.as_str())
        {
            return Ok(false);
        }
        let moved: std::collections::BTreeSet<String> =
            crate::git::snapshot::diff_trees(&self.at.repo, &first.old, &last.new)?
                .into_iter()
                .map(|c| c.path.to_string_lossy().into_owned())
                .collect();
        // Folders the fast-forward created or emptied show as changes of their own.
        let folders: std::collections::BTreeSet<&str> = moved
            .iter()
            .flat_map(|p| Path::new(p).ancestors().skip(1))
            .filter_map(|a| a.to_str())
            .filter(|a| !a.is_empty())
            .collect();
        if changed
            .iter()
            .any(|p| *p != "(index)" && !moved.contains(*p) && !folders.contains(p))
        {
            return Ok(false);
        }
        crate::git::status::paths_clean(&self.at.checkouts[i], &moved)
    }

    /// Whether `name` is the branch of a run that shipped: git-pipeline never deletes those
    /// while other runs run (`clean` is the user's command).
    fn shipped_branch(&self, name: &str) -> bool {
        let ours = crate::git::refs::heads(&self.at.branch_prefix);
        let Some(id) = name
            .strip_prefix(&ours)
            .filter(|r| crate::ids::is_run_id(r))
        else {
            return false;
        };
        let store = crate::store::Store::new(&self.at.common_dir.join("pipeline"));
        store
            .open(id, Default::default())
            .read_record()
            .is_ok_and(|r| {
                r.commit.is_some() && r.status == crate::store::record::Status::Succeeded
            })
    }

    /// Whether a note change another process made during the step is a run's own attestation:
    /// every claim in the new note names a run of this repository (not this one) that either
    /// shipped exactly that commit (a note added for it) or is in its ship stage now with that
    /// commit (its branch is at it; a reverify run, the commit it checks). A note rewritten on
    /// a commit is vouched for only by a run shipping it now (so a signed note cannot be swapped
    /// for an unsigned one by naming the run that shipped it). A run whose record appeared
    /// during the step counts only when its branch is at the commit. A removed note never is:
    /// no run removes notes.
    fn note_vouched_for(
        &self,
        change: &crate::git::notes::NoteChange,
        before: &Fingerprint,
    ) -> Result<bool> {
        let Some(blob) = &change.new else {
            return Ok(false);
        };
        let Some(Some(bytes)) =
            objects::cat_blobs(&self.at.repo, std::slice::from_ref(blob))?.pop()
        else {
            return Ok(false);
        };
        let (claims, _) = crate::attest::claims(&bytes);
        if claims.is_empty() {
            return Ok(false);
        }
        let store = crate::store::Store::new(&self.at.common_dir.join("pipeline"));
        let commit = change.object.as_str();
        for claim in &claims {
            if claim.run_id == self.at.run_id || !crate::ids::is_run_id(&claim.run_id) {
                return Ok(false);
            }
            let dir = store.open(&claim.run_id, Default::default());
            let Ok(rec) = dir.read_record() else {
                return Ok(false);
            };
            let branch_at_commit = !rec.branch.is_empty()
                && rec.base.as_str() != commit
                && objects::ref_value(&self.at.repo, &crate::git::refs::heads(&rec.branch))?
                    .is_some_and(|tip| tip.as_str() == commit);
            let known = before
                .records
                .contains_key(dir.path.join("run.json").as_os_str());
            if !known && !branch_at_commit {
                return Ok(false);
            }
            let shipped = change.old.is_none() && rec.commit.as_deref() == Some(commit);
            let shipping = rec.status == crate::store::record::Status::Running
                && rec.stage == Some(crate::store::record::StageName::Ship)
                && (branch_at_commit
                    || (rec.branch.is_empty()
                        && rec.resume.args.reverify.as_deref() == Some(commit)));
            if !(shipped || shipping) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether a ref's change from `old` to `now` was made by the step: the reflog entries that
    /// lead from `old` to `now` (written since the step began, allowing for the clock's second)
    /// were all written under the run's marked name. A deleted ref has no reflog left: never
    /// attributed.
    fn by_the_step(&self, name: &str, old: Option<&str>, now: Option<&str>, since: i64) -> bool {
        let (Some(mark), Some(now)) = (&self.marked_name, now) else {
            return false;
        };
        let entries = crate::git::reflog::since(&self.at.common_dir, name, since - 1);
        if entries.last().is_none_or(|e| e.new != now) {
            return false;
        }
        let from_old = |e: &crate::git::reflog::Entry| match old {
            Some(o) => e.old == o,
            None => e.old.bytes().all(|b| b == b'0'),
        };
        for e in entries.iter().rev() {
            if &e.name != mark {
                return false;
            }
            if from_old(e) {
                return true;
            }
        }
        false
    }

    /// What the worktree's HEAD names: read from its file, asking git only when the file does
    /// not hold it (the reftable backend keeps HEAD in its tables).
    fn worktree_head(&self) -> Result<String> {
        if let Ok(text) = std::fs::read_to_string(self.at.worktree_git_dir.join("HEAD")) {
            let text = text.trim();
            match text.strip_prefix("ref: ") {
                Some(r) if r != "refs/heads/.invalid" => return Ok(r.to_owned()),
                None if !text.is_empty() => return Ok(String::new()),
                _ => {}
            }
        }
        let wt = Git::worktree(&self.at.worktree, &self.at.worktree_git_dir);
        Ok(crate::git::refs::head_branch(&wt)?.unwrap_or_default())
    }

    /// The run branch must still be checked out in the worktree and contain its base.
    fn branch_breach(&self, tip: Option<&str>) -> Result<Option<String>> {
        if self.at.branch_ref.is_empty() || !self.at.worktree.exists() {
            return Ok(None);
        }
        let head = self.worktree_head()?;
        if head != self.at.branch_ref {
            return Ok(Some(if head.is_empty() {
                format!(
                    "the worktree's HEAD was detached from {}",
                    self.at.branch_ref
                )
            } else {
                format!(
                    "the worktree was switched from {} to {head}",
                    self.at.branch_ref
                )
            }));
        }
        let Some(tip) = tip else {
            return Ok(Some(format!("{} was deleted", self.at.branch_ref)));
        };
        // Agents rarely commit: the tip is usually the base, or the tip checked last time.
        let known = self.sound_tip.lock().ok().and_then(|t| t.clone());
        if tip == self.at.base || known.as_deref() == Some(tip) {
            return Ok(None);
        }
        if objects::is_ancestor(&self.at.repo, &self.at.base, tip)? {
            if let Ok(mut t) = self.sound_tip.lock() {
                *t = Some(tip.to_owned());
            }
            return Ok(None);
        }
        Ok(Some(format!(
            "{} was reset below its base",
            self.at.branch_ref
        )))
    }

    /// The repository's control files: config (shared and per-worktree), the hooks folder
    /// (honouring `core.hooksPath`) and `info/`.
    fn control_files(&self) -> BTreeMap<PathBuf, Kept> {
        let mut files = BTreeMap::new();
        let mut add = |path: PathBuf| {
            let kept = std::fs::symlink_metadata(&path).ok().map(|m| {
                let bytes = if m.len() <= KEEP_LIMIT {
                    self.reread
                        .read(&path)
                        .map(|b| b.to_vec())
                        .unwrap_or_default()
                } else {
                    format!("{}:{}:{}", m.len(), m.mtime(), m.mtime_nsec()).into_bytes()
                };
                (bytes, m.mode() & 0o7777)
            });
            files.insert(path, kept);
        };
        add(self.at.common_dir.join("config"));
        add(self.at.common_dir.join("config.worktree"));
        add(self.at.worktree_git_dir.join("config.worktree"));
        // Where git finds the shared repository from the worktree: pointed elsewhere, our own
        // commands would read another repository's config (and run its filters).
        add(self.at.worktree_git_dir.join("commondir"));
        add(self.at.worktree_git_dir.join("gitdir"));
        let mut dirs = vec![self.hooks_dir.clone()];
        for dir in [
            self.at.common_dir.join("hooks"),
            self.at.common_dir.join("info"),
        ] {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry
                    .file_type()
                    .is_ok_and(|t| t.is_file() || t.is_symlink())
                {
                    add(entry.path());
                }
            }
        }
        // A file that did not exist is recorded as such, so its creation shows.
        files
    }

    /// Every file git reads configuration from, by content (absent ones too, so that creating
    /// one shows). A new include would be added in one of them.
    fn config_print(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for f in &self.config_files {
            f.hash(&mut h);
            self.reread.read(f).hash(&mut h);
        }
        h.finish()
    }

    /// Refs that neither the run nor git-pipeline itself (other runs, notes, archives) nor
    /// fetches (remote-tracking refs) may change; and the run branch's tip, from the same
    /// listing.
    #[allow(clippy::type_complexity)]
    /// The refs now: the last listing when the watch saw nothing happen to them since, else a
    /// walk of the ref files (only those whose stat moved are read).
    fn refs(&self) -> Result<RefsPrint> {
        let mut last = self.refs_last.lock().unwrap_or_else(|p| p.into_inner());
        let unchanged = self.refs_watch.as_ref().and_then(|w| w.changed()) == Some(false);
        if unchanged && let Some(print) = last.as_ref() {
            return Ok(print.clone());
        }
        let all = {
            let mut seen = self.refs_seen.lock().unwrap_or_else(|p| p.into_inner());
            crate::git::refs::all_again(&self.at.repo, &mut seen)?
        };
        let ours = crate::git::refs::heads(&self.at.branch_prefix);
        let mut refs = BTreeMap::new();
        let mut own = BTreeMap::new();
        let mut tip = None;
        for (name, oid) in &all {
            let (name, oid) = (name.as_str(), oid.as_str());
            if name == self.at.branch_ref {
                tip = Some(oid.to_owned());
            }
            if name == self.at.branch_ref || name.starts_with("refs/remotes/") {
                continue;
            }
            let managed = name == crate::attest::NOTES_REF
                || name.starts_with("refs/pipeline/")
                || name.strip_prefix(&ours).is_some_and(managed_branch);
            if managed {
                own.insert(name.to_owned(), oid.to_owned());
            } else {
                refs.insert(name.to_owned(), oid.to_owned());
            }
        }
        let print = RefsPrint {
            refs: Arc::new(refs),
            managed: Arc::new(own),
            branch_tip: tip,
        };
        *last = Some(print.clone());
        Ok(print)
    }
}

/// The refs as one listing saw them: other refs, git-pipeline's own, the run branch's tip.
#[derive(Debug, Clone)]
struct RefsPrint {
    refs: Arc<BTreeMap<String, String>>,
    managed: Arc<BTreeMap<String, String>>,
    branch_tip: Option<String>,
}

/// Where git reads configuration from for the run: what it lists now, and the standard places
/// where a new file would be read (global, XDG, system, the repository's and the worktree's).
/// What the guard learns from the worktree's config listing.
struct ConfigFacts {
    files: Vec<PathBuf>,
    filter_driver: bool,
    maintenance_configured: bool,
    objects_plain: bool,
    signing_configured: bool,
}

fn config_files(
    p: &Places,
    ahead: Option<(PathBuf, crate::git::config::Listing)>,
) -> Result<ConfigFacts> {
    let listing = match ahead {
        Some((admin, listing))
            if admin == p.worktree_git_dir && listing.holds_after_checkout(&p.worktree) =>
        {
            listing
        }
        _ => {
            let (dir, base) = if p.worktree.exists() {
                (
                    Git::worktree(&p.worktree, &p.worktree_git_dir),
                    p.worktree.clone(),
                )
            } else {
                (p.repo.clone(), p.common_dir.clone())
            };
            crate::git::config::files_read(&dir, &base)?
        }
    };
    let filter_driver = listing.has_filter_driver();
    let maintenance_configured = listing
        .keys
        .iter()
        .any(|k| k.starts_with("gc.") || k.starts_with("maintenance."));
    let objects_plain = crate::git::tree_write::objects_plain(&listing.keys);
    // Includes (conditional or not: an included file empty now may set a key later) and
    // per-worktree config (the repository's own worktree may set a key the slot does not see)
    // count as "may", and git is asked.
    let signing_configured = listing.keys.iter().any(|k| {
        k.starts_with("gpg.")
            || k == "user.signingkey"
            || k.starts_with("includeif.")
            || k == "include.path"
            || k == "extensions.worktreeconfig"
    });
    let mut files = listing.files;
    let env_path = |v: &str| std::env::var_os(v).map(PathBuf::from);
    let home = env_path("HOME").unwrap_or_default();
    files.extend(env_path("GIT_CONFIG_GLOBAL"));
    files.extend(env_path("GIT_CONFIG_SYSTEM"));
    files.push(home.join(".gitconfig"));
    files.push(
        env_path("XDG_CONFIG_HOME")
            .unwrap_or_else(|| home.join(".config"))
            .join("git/config"),
    );
    files.push(PathBuf::from("/etc/gitconfig"));
    if let Ok(exec) = crate::git::config::exec_path(&p.repo) {
        // <prefix>/libexec/git-core: the system config of a git built with that prefix.
        if let Some(prefix) = Path::new(&exec).parent().and_then(Path::parent) {
            files.push(prefix.join("etc/gitconfig"));
        }
    }
    files.push(p.common_dir.join("config"));
    files.push(p.common_dir.join("config.worktree"));
    files.push(p.worktree_git_dir.join("config.worktree"));
    files.sort();
    files.dedup();
    Ok(ConfigFacts {
        files,
        filter_driver,
        maintenance_configured,
        objects_plain,
        signing_configured,
    })
}

/// The committer name a run's steps get.
pub fn marked(name: &str, run_id: &str) -> String {
    format!("{name} (git-pipeline {run_id})")
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Branches git-pipeline moves itself under its prefix: runs' (`<run-id>`) and bundles'
/// integration branches (`<bundle-id>/integration`).
fn managed_branch(rest: &str) -> bool {
    crate::ids::is_run_id(rest)
        || rest
            .split_once('/')
            .is_some_and(|(id, what)| crate::ids::is_run_id(id) && what == "integration")
}

/// The status entries of a checkout with each entry's stat, its index's stat, and its HEAD.
fn checkout_print(
    checkout: &Path,
    git_dir: &Path,
    ignored: &crate::git::ignored::Ignored,
    with_head_commit: bool,
) -> Result<BTreeMap<String, u64>> {
    let git = Git::in_dir(checkout);
    let out = crate::git::status::listing_with_ignored(checkout)?;
    let mut entries = BTreeMap::new();
    // Ignored entries (build outputs an editor or a background build keeps writing) count by
    // name only; every other entry also by its stat, so editing an already-changed file shows.
    for e in crate::git::status::entries(&out) {
        if e.kind == '!' && ignored.within_dir(Path::new(e.path.trim_end_matches('/'))) {
            continue;
        }
        let print = if e.kind == '!' {
            0
        } else {
            stat_print(&checkout.join(&e.path))
        };
        entries.insert(e.path, print);
    }
    entries.insert("(index)".to_owned(), stat_print(&git_dir.join("index")));
    let mut h = DefaultHasher::new();
    std::fs::read(git_dir.join("HEAD")).ok().hash(&mut h);
    // The commit HEAD names moves with its branch, which the refs check watches; without it,
    // ask git.
    if with_head_commit {
        crate::git::refs::head_commit(&git)?.hash(&mut h);
    }
    entries.insert("(HEAD)".to_owned(), h.finish());
    Ok(entries)
}

fn stat_print(path: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    match std::fs::symlink_metadata(path) {
        Ok(m) => (m.len(), m.mtime(), m.mtime_nsec(), m.mode(), m.ino()).hash(&mut h),
        Err(_) => 0u8.hash(&mut h),
    }
    h.finish()
}
