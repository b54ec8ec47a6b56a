//! Watching the user's checkout with inotify (Linux), so that "did anything change in your
//! checkout while the agent ran?" costs nothing when nothing did. A `git status` of a large
//! checkout costs tens to hundreds of milliseconds, and the containment check needed two per step.
//!
//! Every folder of the checkout is watched except `.git` and folders git ignores as a whole
//! (their contents count by name only, as in `git status --ignored`); of the git dir, only
//! `index` and `HEAD`. Changes to ignored files that already existed are not changes (a build
//! or an editor rewriting them); anything else is. When the checkout has more folders than
//! inotify watches allow, the caller falls back to comparing `git status` listings.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::error::Error;

use crate::error::Result;
use crate::git::ignored::Ignored;

pub struct CheckoutWatch {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    git_dir: Option<WatchDescriptor>,
    /// Ignored files that existed when the watch began: rewriting them is not a change.
    ignored: HashSet<PathBuf>,
}

impl std::fmt::Debug for CheckoutWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckoutWatch({} folders)", self.dirs.len())
    }
}

fn tree_mask() -> AddWatchFlags {
    AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::IN_DONT_FOLLOW
}

impl CheckoutWatch {
    /// Watch `checkout`, except what `ignored` says git ignores as a whole, and the `index` and
    /// `HEAD` of `git_dir` when given. `None` when inotify cannot cover it.
    pub fn new(
        checkout: &Path,
        git_dir: Option<&Path>,
        ignored: Ignored,
    ) -> Result<Option<CheckoutWatch>> {
        let Ok(inotify) = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) else {
            return Ok(None);
        };
        let Ignored {
            dirs: ignored_dirs,
            files: ignored,
        } = ignored;
        let mut dirs = HashMap::new();
        let walk = walkdir::WalkDir::new(checkout)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| {
                let rel = e.path().strip_prefix(checkout).unwrap_or(e.path());
                !(e.file_name() == ".git" || ignored_dirs.contains(rel))
            });
        for entry in walk {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_dir() {
                continue;
            }
            match inotify.add_watch(entry.path(), tree_mask()) {
                Ok(wd) => {
                    let rel = entry
                        .path()
                        .strip_prefix(checkout)
                        .unwrap_or(entry.path())
                        .to_owned();
                    dirs.insert(wd, rel);
                }
                // Out of watches: a status comparison will do.
                Err(Errno::ENOSPC | Errno::ENOMEM) => return Ok(None),
                // Gone meanwhile, or unreadable: git would not list inside it either.
                Err(_) => {}
            }
        }
        let git_dir = git_dir.and_then(|git_dir| {
            inotify
                .add_watch(
                    git_dir,
                    AddWatchFlags::IN_CLOSE_WRITE
                        | AddWatchFlags::IN_MOVED_TO
                        | AddWatchFlags::IN_CREATE
                        | AddWatchFlags::IN_DELETE
                        | AddWatchFlags::IN_MODIFY
                        | AddWatchFlags::IN_ONLYDIR,
                )
                .ok()
        });
        Ok(Some(CheckoutWatch {
            inotify,
            dirs,
            git_dir,
            ignored,
        }))
    }

    /// Forget what changed so far.
    pub fn drain(&self) -> Result<()> {
        self.changes().map(|_| ())
    }

    /// What changed since the last call: paths relative to the checkout, `(index)` and
    /// `(HEAD)` for the checkout's git index and HEAD.
    pub fn changes(&self) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        loop {
            let events = match self.inotify.read_events() {
                Ok(e) => e,
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    return Err(Error::io(
                        "cannot read the checkout watch",
                        std::io::Error::from(e),
                    ));
                }
            };
            if events.is_empty() {
                break;
            }
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    out.insert("(more changes than could be listed)".to_owned());
                    continue;
                }
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    continue;
                }
                if Some(ev.wd) == self.git_dir {
                    if let Some(name) = ev.name.as_ref().and_then(|n| n.to_str())
                        && (name == "index" || name == "HEAD")
                    {
                        out.insert(format!("({name})"));
                    }
                    continue;
                }
                let Some(dir) = self.dirs.get(&ev.wd) else {
                    continue;
                };
                let path = match &ev.name {
                    Some(n) => dir.join(n),
                    None => dir.clone(),
                };
                let rewrite = AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_ATTRIB;
                if self.ignored.contains(&path) && rewrite.contains(ev.mask) {
                    continue;
                }
                out.insert(path.to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }
}
