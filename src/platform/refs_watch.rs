//! Watching a repository's ref files with inotify (Linux), so that "did any ref move during the
//! step?" costs a read of the watch instead of a walk of every loose ref: a repository keeps a
//! branch for every run that shipped, and with thousands of them the walk was most of a step's
//! fixed cost.
//!
//! Watched: every folder under `refs/` (names made, removed or renamed), every loose ref file
//! itself (its inode: a write through a hard link made elsewhere, or through a descriptor opened
//! long before, shows too), `packed-refs` (its inode), and the git dir for the names that decide
//! how refs are read (`packed-refs` replaced, a `reftable` or `commondir` appearing, `refs`
//! moved). The watch only says whether anything happened; the listing stays the caller's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::watch_files::{Added, Held, add, file_mask, folder_mask, identity, most_watches};

/// Names in the git dir whose change changes what the refs are.
const DECISIVE: &[&str] = &["packed-refs", "reftable", "commondir", "refs"];

pub struct RefsWatch {
    inotify: Inotify,
    git_dir: PathBuf,
    /// See [`most_watches`].
    most: usize,
    state: Mutex<State>,
}

struct State {
    /// The folder under `refs/` or the file each watch is on.
    by_wd: HashMap<WatchDescriptor, PathBuf>,
    git_dir: WatchDescriptor,
    /// The git dir and its `refs/` as watched (device, inode).
    ids: [Option<(u64, u64)>; 2],
    /// Ref files held open.
    held: Held,
    /// Events were lost, `refs/` itself moved, or a watch could not be added: every later look
    /// says so.
    blind: bool,
}

impl std::fmt::Debug for RefsWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.state.lock().map_or(0, |s| s.by_wd.len());
        write!(f, "RefsWatch({n} watches)")
    }
}

impl RefsWatch {
    /// Watch the refs of the (main) git dir `git_dir`. `None` when inotify is not available or the
    /// watches would pass [`most_watches`]. List the refs after this returns: a change made
    /// between the two then shows at the next look.
    pub fn new(git_dir: &Path) -> Option<RefsWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let top = inotify
            .add_watch(
                git_dir,
                folder_mask() | AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CLOSE_WRITE,
            )
            .ok()?;
        let watch = RefsWatch {
            inotify,
            git_dir: git_dir.to_owned(),
            most: most_watches(),
            state: Mutex::new(State {
                by_wd: HashMap::new(),
                git_dir: top,
                ids: [identity(git_dir), identity(&git_dir.join("refs"))],
                held: Held::default(),
                blind: false,
            }),
        };
        let complete = watch.state.lock().is_ok_and(|mut state| {
            watch.watch_file(&mut state, &git_dir.join("packed-refs"))
                && watch.watch_tree(&mut state, &git_dir.join("refs"))
                && watch.same_folders(&state)
        });
        if !complete {
            // Closing thousands of watches takes the kernel a while: not on the caller's time.
            super::close_on_thread(watch);
            return None;
        }
        Some(watch)
    }

    /// The git dir and its `refs/` at their paths are still the ones watched.
    fn same_folders(&self, state: &State) -> bool {
        state.ids[0].is_some()
            && state.ids
                == [
                    identity(&self.git_dir),
                    identity(&self.git_dir.join("refs")),
                ]
    }

    /// Watch `path` (a file) if it is there. False when out of watches.
    fn watch_file(&self, state: &mut State, path: &Path) -> bool {
        self.add(state, path, file_mask())
    }

    /// Watch the folder `top` with every folder and file in it. False when out of watches.
    fn watch_tree(&self, state: &mut State, top: &Path) -> bool {
        let walk = walkdir::WalkDir::new(top).follow_links(false);
        for entry in walk.into_iter().flatten() {
            let mask = if entry.file_type().is_dir() {
                folder_mask()
            } else {
                file_mask()
            };
            if !self.add(state, entry.path(), mask) {
                return false;
            }
        }
        true
    }

    fn add(&self, state: &mut State, path: &Path, mask: AddWatchFlags) -> bool {
        match add(&self.inotify, path, mask, state.by_wd.len(), self.most) {
            Added::Watch(wd) => {
                state.by_wd.insert(wd, path.to_owned());
                true
            }
            // Gone meanwhile: the listing says what is there.
            Added::Absent => true,
            Added::Failed => false,
        }
    }

    /// Whether anything happened to the refs since the last look (what was made meanwhile is
    /// watched from now on); `None` when events were lost or a watch could not be added, from
    /// then on: the caller then walks the refs every time.
    pub fn changed(&self) -> Option<bool> {
        let mut state = self.state.lock().ok()?;
        if state.blind || !self.same_folders(&state) {
            state.blind = true;
            return None;
        }
        let mut changed = false;
        let mut arrived: Vec<PathBuf> = Vec::new();
        loop {
            let events = match self.inotify.read_events() {
                Ok(e) if !e.is_empty() => e,
                Ok(_) | Err(Errno::EAGAIN) => break,
                Err(_) => {
                    state.blind = true;
                    return None;
                }
            };
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    state.blind = true;
                    return None;
                }
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    state.by_wd.remove(&ev.wd);
                    state.held.forget(ev.wd);
                    continue;
                }
                // Reads that ended change nothing (git reads ref files all the time); a file held
                // open counts below.
                if state.held.count(ev.wd, ev.mask)
                    && !ev
                        .mask
                        .intersects(AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MODIFY)
                {
                    continue;
                }
                if ev.wd == state.git_dir {
                    let Some(name) = ev.name.as_ref() else {
                        // The git dir itself moved or went away.
                        state.blind = true;
                        return None;
                    };
                    if DECISIVE.iter().any(|d| name == d) {
                        changed = true;
                        arrived.push(self.git_dir.join(name));
                    }
                    continue;
                }
                let Some(at) = state.by_wd.get(&ev.wd).cloned() else {
                    continue;
                };
                changed = true;
                if at == self.git_dir.join("refs")
                    && ev
                        .mask
                        .intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
                {
                    state.blind = true;
                    return None;
                }
                let made = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO;
                if let Some(name) = &ev.name
                    && ev.mask.intersects(made)
                {
                    arrived.push(at.join(name));
                }
            }
        }
        // A ref file held open may be written through a memory map, which sends no event.
        if state.held.open().next().is_some() {
            changed = true;
        }
        // What arrived (a new ref, a new folder of them, a new packed-refs or refs folder) is
        // watched from now on: whatever happens to it next shows at the next look.
        for path in arrived {
            let ok = if path.file_name().is_some_and(|n| n == "packed-refs") {
                self.watch_file(&mut state, &path)
            } else if path.parent() == Some(self.git_dir.as_path()) {
                path.file_name().is_none_or(|n| n != "refs") || self.watch_tree(&mut state, &path)
            } else {
                self.watch_tree(&mut state, &path)
            };
            if !ok {
                state.blind = true;
                return None;
            }
        }
        Some(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .output()
            .expect("git");
        assert!(out.status.success(), "{args:?}: {out:?}");
    }

    /// Every way a ref changes shows: git's own updates, packing, a loose ref written in place
    /// (also through a hard link made elsewhere, and in a folder made later), a deletion; and
    /// what does not touch the refs (the index, HEAD's reflog) does not.
    #[test]
    fn every_change_to_a_ref_shows_and_nothing_else_does() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path();
        git(repo, &["init", "-q", "-b", "main"]);
        git(repo, &["commit", "-q", "--allow-empty", "-m", "one"]);
        git(repo, &["branch", "keep"]);
        let g = repo.join(".git");
        let w = RefsWatch::new(&g).expect("inotify");
        assert_eq!(w.changed(), Some(false));

        std::fs::write(repo.join("f"), "x").expect("write");
        git(repo, &["add", "f"]);
        assert_eq!(w.changed(), Some(false), "the index is no ref");

        git(repo, &["commit", "-q", "-m", "two"]);
        assert_eq!(w.changed(), Some(true));
        assert_eq!(w.changed(), Some(false));

        git(repo, &["branch", "pipeline/a/b"]);
        assert_eq!(w.changed(), Some(true));
        let deep = g.join("refs/heads/pipeline/a/b");
        std::fs::write(&deep, "0000000000000000000000000000000000000000\n").expect("write");
        assert_eq!(w.changed(), Some(true), "a ref in a folder made later");

        let elsewhere = tmp.path().join("elsewhere");
        std::fs::hard_link(g.join("refs/heads/keep"), &elsewhere).expect("link");
        assert_eq!(w.changed(), Some(true), "the link count changed");
        std::fs::write(&elsewhere, "1111111111111111111111111111111111111111\n").expect("write");
        assert_eq!(w.changed(), Some(true), "written through a hard link");
        std::fs::remove_file(&elsewhere).expect("rm");
        std::fs::write(
            g.join("refs/heads/keep"),
            std::fs::read(g.join("refs/heads/main")).expect("main"),
        )
        .expect("write");
        assert_eq!(w.changed(), Some(true));

        git(repo, &["pack-refs", "--all"]);
        assert_eq!(w.changed(), Some(true));
        let packed = g.join("packed-refs");
        let text = std::fs::read_to_string(&packed).expect("packed");
        std::fs::write(&packed, text.replace("keep", "kept")).expect("write");
        assert_eq!(w.changed(), Some(true), "packed-refs written in place");

        git(repo, &["branch", "-D", "kept"]);
        assert_eq!(w.changed(), Some(true));
        assert_eq!(w.changed(), Some(false));
    }

    /// A ref file held open counts as a change at every look until it is closed (a write
    /// through a memory map sends no event); reads that ended, as git's, do not.
    #[test]
    fn a_ref_held_open_is_a_change_until_it_is_closed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        git(tmp.path(), &["init", "-q", "-b", "main"]);
        git(tmp.path(), &["commit", "-q", "--allow-empty", "-m", "one"]);
        let g = tmp.path().join(".git");
        let w = RefsWatch::new(&g).expect("inotify");
        git(tmp.path(), &["rev-parse", "main"]);
        std::fs::read(g.join("refs/heads/main")).expect("read");
        assert_eq!(w.changed(), Some(false), "reads that ended");
        let held = std::fs::OpenOptions::new()
            .write(true)
            .open(g.join("refs/heads/main"))
            .expect("open");
        assert_eq!(w.changed(), Some(true));
        assert_eq!(w.changed(), Some(true), "still open");
        drop(held);
        assert_eq!(w.changed(), Some(true), "closed after a write open");
        assert_eq!(w.changed(), Some(false));
    }

    /// The git dir swapped from above (the repository's folder renamed, another made in its
    /// place): the watch was told nothing, and says it is blind.
    #[test]
    fn a_git_dir_swapped_from_above_leaves_the_watch_blind() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        let w = RefsWatch::new(&repo.join(".git")).expect("inotify");
        std::fs::rename(&repo, tmp.path().join("moved")).expect("move");
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        assert_eq!(w.changed(), None);
    }

    /// `refs/` moved away: the watch cannot follow, and says so for good.
    #[test]
    fn a_moved_refs_folder_leaves_the_watch_blind() {
        let tmp = tempfile::tempdir().expect("tempdir");
        git(tmp.path(), &["init", "-q", "-b", "main"]);
        let g = tmp.path().join(".git");
        let w = RefsWatch::new(&g).expect("inotify");
        std::fs::rename(g.join("refs"), g.join("moved")).expect("move");
        assert_eq!(w.changed(), None);
        assert_eq!(w.changed(), None);
    }
}
