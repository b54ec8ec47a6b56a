//! Watching a repository's ref files with inotify (Linux), so that "did any ref move during the
//! step?" costs a read of the watch instead of a walk of every loose ref: a repository keeps a
//! branch for every run that shipped, and with thousands of them the walk was most of a step's
//! fixed cost.
//!
//! Watched: every folder under `refs/` (names made, removed or renamed), every loose ref file
//! itself (its inode: a write through a hard link made elsewhere, or through a descriptor opened
//! long before, shows too), `packed-refs` (its inode), and the git dir for the names that decide
//! how refs are read (`packed-refs` replaced, a `reftable` or `commondir` appearing, `refs`
//! moved). The watch only says whether anything happened; the listing stays the caller's. The
//! rules that keep it honest are in `watch_files.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::watch_files::{Added, add, drain, file_mask, folder_mask, identity, most_watches};

/// Names in the git dir whose change changes what the refs are (a `commondir` or `reftable`
/// appearing leaves the watch blind instead: git then reads refs from elsewhere).
const DECISIVE: &[&str] = &["packed-refs", "refs"];

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
    /// Every file something happened to since the watch began (opened, written, made, moved
    /// in), with its stat at the last look: stat'ed again at every look, because a write
    /// through a memory map sends no event, and a file moved in may have been mapped before.
    suspects: HashMap<PathBuf, Option<Stamp>>,
    /// Events were lost, `refs/` itself moved, a symlink or a `commondir` or `reftable` came, or
    /// a watch could not be added: every later look says so.
    blind: bool,
}

/// A file's stat, its path not followed (a symlink put in its place is another stat).
type Stamp = (u64, i64, i64, i64, i64, u64, u32);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| {
        (
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.len(),
            m.mode(),
        )
    })
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
                suspects: HashMap::new(),
                blind: false,
            }),
        };
        let complete = watch.state.lock().is_ok_and(|mut state| {
            watch.watch_file(&mut state, &git_dir.join("packed-refs"))
                && watch.watch_tree(&mut state, &git_dir.join("refs"), false)
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

    /// Watch `path` (a file) if it is there. False when out of watches, or when it is a
    /// symlink (git would read through it; what it leads to is not watched).
    fn watch_file(&self, state: &mut State, path: &Path) -> bool {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => false,
            _ => self.add(state, path, file_mask()),
        }
    }

    /// Watch the folder `top` with every folder and file in it; with `suspect`, its files are
    /// stat'ed at every look from now on. False when out of watches, or at a symlink.
    fn watch_tree(&self, state: &mut State, top: &Path, suspect: bool) -> bool {
        let walk = walkdir::WalkDir::new(top).follow_links(false);
        for entry in walk.into_iter().flatten() {
            if entry.file_type().is_symlink() {
                return false;
            }
            let dir = entry.file_type().is_dir();
            let mask = if dir { folder_mask() } else { file_mask() };
            if !self.add(state, entry.path(), mask) {
                return false;
            }
            if suspect && !dir {
                state
                    .suspects
                    .entry(entry.path().to_owned())
                    .or_insert(None);
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
        let Some(events) = drain(&self.inotify) else {
            state.blind = true;
            return None;
        };
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                state.by_wd.remove(&ev.wd);
                continue;
            }
            if ev.wd == state.git_dir {
                let Some(name) = ev.name.as_ref() else {
                    // The git dir itself moved or went away.
                    state.blind = true;
                    return None;
                };
                // Another ref store, or refs read from another folder: not what is watched.
                if name == "commondir" || name == "reftable" {
                    state.blind = true;
                    return None;
                }
                if DECISIVE.iter().any(|d| name == d) {
                    changed = true;
                    arrived.push(self.git_dir.join(name));
                }
                continue;
            }
            let Some(at) = state.by_wd.get(&ev.wd).cloned() else {
                continue;
            };
            let opened = AddWatchFlags::IN_OPEN | AddWatchFlags::IN_CLOSE_NOWRITE;
            if ev.name.is_none() && !ev.mask.is_empty() {
                // An event of a watched file itself: from now on it is stat'ed at every look
                // (a read that ended changes nothing by itself).
                state.suspects.entry(at.clone()).or_insert(None);
                if opened.contains(ev.mask) {
                    continue;
                }
            }
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

        // What arrived (a new ref, a new folder of them, a new packed-refs or refs folder) is
        // watched from now on: whatever happens to it next shows at the next look.
        for path in arrived {
            let ok = if path.file_name().is_some_and(|n| n == "packed-refs") {
                state.suspects.entry(path.clone()).or_insert(None);
                self.watch_file(&mut state, &path)
            } else if path.parent() == Some(self.git_dir.as_path()) {
                path.file_name().is_none_or(|n| n != "refs")
                    || self.watch_tree(&mut state, &path, true)
            } else {
                self.watch_tree(&mut state, &path, true)
            };
            if !ok {
                state.blind = true;
                return None;
            }
        }
        // Every suspect's stat against the last look's: a write through a memory map moves its
        // mtime and ctime without an event.
        for (path, seen) in state.suspects.iter_mut() {
            let now = stamp(path);
            if *seen != now || now.is_none() {
                changed |= seen.is_some() || now.is_some();
                *seen = now;
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

    /// A ref file something happened to is stat'ed at every look: one that git only read is a
    /// change once (its first sighting), then not; one written through a shared memory map (no
    /// event) by a process that mapped it after the watch began is a change when written.
    #[test]
    fn a_ref_written_through_a_memory_map_is_a_change() {
        let tmp = tempfile::tempdir().expect("tempdir");
        git(tmp.path(), &["init", "-q", "-b", "main"]);
        git(tmp.path(), &["commit", "-q", "--allow-empty", "-m", "one"]);
        let g = tmp.path().join(".git");
        let w = RefsWatch::new(&g).expect("inotify");
        git(tmp.path(), &["rev-parse", "main"]);
        assert_eq!(w.changed(), Some(true), "first sighting of a ref git read");
        assert_eq!(
            w.changed(),
            Some(false),
            "a read changes nothing after that"
        );
        let mut writer =
            super::super::watch_files::tests::MappedWriter::start(&g.join("refs/heads/main"));
        w.changed();
        assert_eq!(w.changed(), Some(false), "mapped, nothing written yet");
        writer.write();
        assert_eq!(w.changed(), Some(true), "written through the map");
        assert_eq!(w.changed(), Some(false));
    }

    /// A symlink under `refs/` or in `packed-refs`' place, a `commondir` or a `reftable`: git
    /// would read refs from somewhere the watch is not, so it says it is blind.
    #[test]
    fn symlinks_and_other_ref_stores_leave_the_watch_blind() {
        let outside = tempfile::tempdir().expect("tempdir");
        type Trick = fn(&Path, &Path);
        let tricks: [(&str, Trick); 4] = [
            ("a symlinked ref folder", |g: &Path, out: &Path| {
                std::os::unix::fs::symlink(out, g.join("refs/heads/d")).expect("symlink")
            }),
            (
                "packed-refs replaced by a symlink",
                |g: &Path, out: &Path| {
                    std::fs::write(out.join("p"), "").expect("write");
                    std::os::unix::fs::symlink(out.join("p"), g.join("pr.new")).expect("symlink");
                    std::fs::rename(g.join("pr.new"), g.join("packed-refs")).expect("rename");
                },
            ),
            ("a commondir", |g: &Path, _: &Path| {
                std::fs::write(g.join("commondir"), "../other\n").expect("write")
            }),
            ("a reftable", |g: &Path, _: &Path| {
                std::fs::create_dir_all(g.join("reftable")).expect("mkdir")
            }),
        ];
        for (what, trick) in tricks {
            let tmp = tempfile::tempdir().expect("tempdir");
            git(tmp.path(), &["init", "-q", "-b", "main"]);
            let g = tmp.path().join(".git");
            let w = RefsWatch::new(&g).expect("inotify");
            trick(&g, outside.path());
            assert_eq!(w.changed(), None, "{what}");
        }
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
