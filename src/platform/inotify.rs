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
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::error::Error;

use crate::error::Result;
use crate::git::ignored::Ignored;

pub struct CheckoutWatch {
    inotify: Inotify,
    top: PathBuf,
    /// Watched folders, by watch; folders made after the watch began join as their events
    /// arrive, up to [`LATER_FOLDERS`] of them (the second field: how many more may).
    dirs: Mutex<(HashMap<WatchDescriptor, PathBuf>, usize)>,
    /// Folders git ignores as a whole: not watched.
    ignored_dirs: HashSet<PathBuf>,
    git_dir: Option<WatchDescriptor>,
    /// Ignored files that existed when the watch began: rewriting them is not a change.
    ignored: HashSet<PathBuf>,
    /// Whether folders made later join ([`CheckoutWatch::following_new_folders`]).
    follow: bool,
    /// A folder made later could not be watched (out of watches): every look then reports a
    /// change, so that the caller compares listings instead of trusting the watch.
    blind: AtomicBool,
}

/// What a look reports when a folder could not be watched.
const BLIND: &str = "(a new folder could not be watched)";

/// Folders made after the watch began that it follows. A build writing thousands (`target/`)
/// would take inotify watches the user's own tools share (`max_user_watches`); past this many
/// the watch reports [`BLIND`] and the caller compares listings, as without a watch.
const LATER_FOLDERS: usize = 1000;

impl std::fmt::Debug for CheckoutWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.dirs.lock().map_or(0, |d| d.0.len());
        write!(f, "CheckoutWatch({n} folders)")
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
        let mut all = usize::MAX;
        if !watch_tree(
            &inotify,
            checkout,
            Path::new(""),
            &ignored_dirs,
            &mut dirs,
            &mut all,
        ) {
            // Out of watches: a status comparison will do.
            return Ok(None);
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
            top: checkout.to_owned(),
            dirs: Mutex::new((dirs, LATER_FOLDERS)),
            ignored_dirs,
            git_dir,
            ignored,
            follow: false,
            blind: AtomicBool::new(false),
        }))
    }

    /// Folders made after the watch began are watched too, from the first look after they
    /// appear, with what they hold by then. For the run's worktree, where a later step may write
    /// in a folder an earlier one made. Not for the user's checkout, where a build of theirs
    /// making thousands of folders would leave the watch blind and every later step's check
    /// reporting a change.
    pub fn following_new_folders(mut self) -> CheckoutWatch {
        self.follow = true;
        self
    }

    /// Forget what changed so far.
    pub fn drain(&self) -> Result<()> {
        self.changes().map(|_| ())
    }

    /// What changed since the last call: paths relative to the checkout, `(index)` and
    /// `(HEAD)` for the checkout's git index and HEAD.
    pub fn changes(&self) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        let mut guard = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        let (dirs, budget) = &mut *guard;
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
                    // A folder made meanwhile may be among the events lost: never watched.
                    if self.follow {
                        self.blind.store(true, Ordering::Relaxed);
                    }
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
                let Some(dir) = dirs.get(&ev.wd) else {
                    continue;
                };
                let path = match &ev.name {
                    Some(n) => dir.join(n),
                    None => dir.clone(),
                };
                // A folder made or moved in: watched from now on, with what it already holds
                // (made before this look), so that a later step's writes inside it show.
                let arrived = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO;
                if self.follow
                    && ev.mask.contains(AddWatchFlags::IN_ISDIR)
                    && ev.mask.intersects(arrived)
                    && !watch_tree(
                        &self.inotify,
                        &self.top.join(&path),
                        &path,
                        &self.ignored_dirs,
                        dirs,
                        budget,
                    )
                {
                    self.blind.store(true, Ordering::Relaxed);
                }
                let rewrite = AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_ATTRIB;
                if self.ignored.contains(&path) && rewrite.contains(ev.mask) {
                    continue;
                }
                out.insert(path.to_string_lossy().into_owned());
            }
        }
        if self.blind.load(Ordering::Relaxed) {
            out.insert(BLIND.to_owned());
        }
        Ok(out)
    }
}

/// Watch `folder` (at `rel` from the checkout's top) and every folder in it, except `.git` and
/// folders git ignores as a whole, taking one of `budget` for each. False when inotify ran out
/// of watches or the budget ran out.
fn watch_tree(
    inotify: &Inotify,
    folder: &Path,
    rel: &Path,
    ignored_dirs: &HashSet<PathBuf>,
    dirs: &mut HashMap<WatchDescriptor, PathBuf>,
    budget: &mut usize,
) -> bool {
    let rel_of = |p: &Path| match p.strip_prefix(folder) {
        Ok(inside) if inside.as_os_str().is_empty() => rel.to_path_buf(),
        Ok(inside) => rel.join(inside),
        Err(_) => p.to_path_buf(),
    };
    let walk = walkdir::WalkDir::new(folder)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !(e.file_name() == ".git" || ignored_dirs.contains(&rel_of(e.path()))));
    for entry in walk {
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_dir() {
            continue;
        }
        if *budget == 0 {
            return false;
        }
        match inotify.add_watch(entry.path(), tree_mask()) {
            Ok(wd) => {
                *budget -= 1;
                dirs.insert(wd, rel_of(entry.path()));
            }
            Err(Errno::ENOSPC | Errno::ENOMEM) => return false,
            // Gone meanwhile, or unreadable: git would not list inside it either.
            Err(_) => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(w: &CheckoutWatch) -> Vec<String> {
        w.changes().expect("changes").into_iter().collect()
    }

    /// Folders made after the watch began are watched from the next look on, with the folders
    /// already inside them; past the budget the watch says it is blind instead of missing
    /// writes.
    #[test]
    fn folders_made_later_are_watched_and_too_many_make_it_say_so() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let top = tmp.path();
        std::fs::create_dir_all(top.join("src")).expect("mkdir");
        let w = CheckoutWatch::new(top, None, Ignored::default())
            .expect("watch")
            .expect("inotify")
            .following_new_folders();
        std::fs::create_dir_all(top.join("src/made/deeper")).expect("mkdir");
        assert_eq!(changes(&w), ["src/made"]);
        assert_eq!(changes(&w), Vec::<String>::new());
        std::fs::write(top.join("src/made/deeper/f.rs"), "x").expect("write");
        assert_eq!(changes(&w), ["src/made/deeper/f.rs"]);
        // A folder moved in from outside, with a folder in it.
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(outside.path().join("m/n")).expect("mkdir");
        std::fs::rename(outside.path().join("m"), top.join("m")).expect("move");
        assert_eq!(changes(&w), ["m"]);
        std::fs::write(top.join("m/n/g.rs"), "x").expect("write");
        assert_eq!(changes(&w), ["m/n/g.rs"]);

        for i in 0..LATER_FOLDERS {
            std::fs::create_dir_all(top.join(format!("many/{i}"))).expect("mkdir");
        }
        let seen = changes(&w);
        assert!(seen.contains(&BLIND.to_owned()), "{seen:?}");
        // Blind for good: every later look says so, even with nothing new.
        assert_eq!(changes(&w), [BLIND]);
    }
}
