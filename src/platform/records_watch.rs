//! Watching other runs' records with inotify (Linux), so that "did a step touch another run's
//! record?" costs a read of the watch instead of a stat of every record of every run: records are
//! kept for good, and in a repository with thousands of runs that stat was most of a step's fixed
//! cost.
//!
//! Each record file is watched itself (its inode), not only through its folder: a write through a
//! hard link made elsewhere, or through a file descriptor opened long before, is seen all the
//! same. Each run's folder is watched for names made, removed or renamed in it (a record replaced
//! whole is a new inode), and the runs folder for run folders made or removed. What the watch
//! reports is only which run folders to look at again; the stat comparison that judges a change
//! stays the caller's.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::watch_files::{Added, Held, add, file_mask, folder_mask, identity, most_watches};

pub struct RecordsWatch {
    inotify: Inotify,
    runs: PathBuf,
    names: &'static [&'static str],
    own: OsString,
    /// See [`most_watches`].
    most: usize,
    state: Mutex<State>,
}

struct State {
    /// The run folder each watch belongs to (`None`: the runs folder itself).
    by_wd: HashMap<WatchDescriptor, Option<OsString>>,
    /// Record files held open.
    held: Held,
    /// The runs folder watched (device, inode).
    runs_id: (u64, u64),
    /// Events were lost, the runs folder is another, or a watch could not be added or belongs to
    /// two runs: every later look says so.
    blind: bool,
}

impl std::fmt::Debug for RecordsWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.state.lock().map_or(0, |s| s.by_wd.len());
        write!(f, "RecordsWatch({n} watches)")
    }
}

impl RecordsWatch {
    /// Watch the files `names` in every folder of `runs` but `own`, and the folders themselves.
    /// `None` when inotify is not available, or the watches would pass [`most_watches`]. Take the stats of the baseline after this returns: a change made between
    /// the two then shows at the next look.
    pub fn new(runs: &Path, own: &OsStr, names: &'static [&'static str]) -> Option<RecordsWatch> {
        let most = most_watches();
        let listed: Vec<OsString> = std::fs::read_dir(runs)
            .ok()?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .ok()?;
        // A run takes three watches at least (its folder, `run.json` with its `checkpoint.json`,
        // `events.jsonl`): a history past the share is not even tried, which would cost as much
        // as the stats it saves.
        if listed.len().saturating_mul(3) >= most {
            return None;
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let watch = RecordsWatch {
            inotify,
            runs: runs.to_owned(),
            names,
            own: own.to_owned(),
            most,
            state: Mutex::new(State {
                by_wd: HashMap::new(),
                held: Held::default(),
                runs_id: identity(runs)?,
                blind: false,
            }),
        };
        let complete = watch.watch_all(&listed);
        if !complete {
            // Closing thousands of watches takes the kernel a while: not on the caller's time.
            super::close_on_thread(watch);
            return None;
        }
        Some(watch)
    }

    fn watch_all(&self, listed: &[OsString]) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let Ok(wd) = self.inotify.add_watch(&self.runs, folder_mask()) else {
            return false;
        };
        state.by_wd.insert(wd, None);
        if identity(&self.runs) != Some(state.runs_id) {
            return false;
        }
        // Run folders made after the listing above show as events of the runs folder's watch.
        listed.iter().all(|name| self.watch_run(&mut state, name))
    }

    /// Watch the run folder `name` and its record files (again: a record replaced whole is a new
    /// file). A run "folder" that is a symlink or a file is not watched (what it leads to is not a
    /// run's own). False when the watch can no longer vouch: out of watches, an error other than
    /// "not there", or a file another run's watch already has (a hard link between runs).
    fn watch_run(&self, state: &mut State, name: &OsStr) -> bool {
        if name == self.own {
            return true;
        }
        let folder = self.runs.join(name);
        if identity(&folder).is_none() {
            return true;
        }
        for (path, mask) in std::iter::once((folder.clone(), folder_mask())).chain(
            self.names
                .iter()
                .map(|file| (folder.join(file), file_mask())),
        ) {
            match add(&self.inotify, &path, mask, state.by_wd.len(), self.most) {
                Added::Watch(wd) => match state.by_wd.get(&wd) {
                    Some(Some(other)) if other != name => return false,
                    Some(None) => return false,
                    _ => {
                        state.by_wd.insert(wd, Some(name.to_owned()));
                    }
                },
                Added::Absent => {}
                Added::Failed => return false,
            }
        }
        true
    }

    /// The run folders in which anything happened since the last look (their watches renewed
    /// first, so that what happens next shows too); `None` when events were lost or a watch could
    /// not be added, from then on: the caller then stats every record.
    pub fn changed(&self) -> Option<BTreeSet<OsString>> {
        let mut state = self.state.lock().ok()?;
        if state.blind {
            return None;
        }
        // The runs folder at its path is still the one watched (a folder above it renamed and
        // another made in its place would send the watch nothing).
        if identity(&self.runs) != Some(state.runs_id) {
            state.blind = true;
            return None;
        }
        let mut runs = BTreeSet::new();
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
                let opened_or_closed = state.held.count(ev.wd, ev.mask);
                // Reads that ended change nothing; a file held open is looked at below.
                if opened_or_closed
                    && !ev
                        .mask
                        .intersects(AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MODIFY)
                {
                    continue;
                }
                match state.by_wd.get(&ev.wd).cloned() {
                    Some(Some(run)) => {
                        runs.insert(run);
                    }
                    // The runs folder: a run folder made, removed or renamed.
                    Some(None) => match &ev.name {
                        Some(name) => {
                            runs.insert(name.clone());
                        }
                        // The runs folder itself moved or removed.
                        None => {
                            state.blind = true;
                            return None;
                        }
                    },
                    None => {}
                }
            }
        }
        // A record held open may be written through a memory map, which sends no event: its run
        // is looked at again at every look while it stays open.
        let held: Vec<OsString> = state
            .held
            .open()
            .filter_map(|wd| state.by_wd.get(wd).cloned().flatten())
            .collect();
        runs.extend(held);
        for run in &runs {
            if !self.watch_run(&mut state, run) {
                state.blind = true;
                return None;
            }
        }
        Some(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["run.json", "events.jsonl"];

    fn changed(w: &RecordsWatch) -> Vec<String> {
        w.changed()
            .expect("not blind")
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    /// Every way a record changes names its run: written in place, through a hard link made
    /// elsewhere, through a descriptor opened before the watch began, replaced whole, deleted;
    /// a run folder made later is watched from then on; the own run is never reported.
    #[test]
    fn every_change_to_a_record_names_its_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path().join("runs");
        for run in ["a", "b", "own"] {
            std::fs::create_dir_all(runs.join(run)).expect("mkdir");
            std::fs::write(runs.join(run).join("run.json"), "{}").expect("write");
        }
        let early = std::fs::OpenOptions::new()
            .append(true)
            .open(runs.join("b/run.json"))
            .expect("open");
        let w = RecordsWatch::new(&runs, OsStr::new("own"), NAMES).expect("inotify");
        assert_eq!(changed(&w), Vec::<String>::new());

        std::fs::write(runs.join("own/run.json"), "{\"x\":1}").expect("write");
        assert_eq!(
            changed(&w),
            Vec::<String>::new(),
            "the own run is not watched"
        );

        std::fs::write(runs.join("a/run.json"), "{\"x\":1}").expect("write");
        assert_eq!(changed(&w), ["a"]);

        // A hard link outside the runs folder, written through later.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::hard_link(runs.join("a/run.json"), &elsewhere).expect("link");
        assert_eq!(changed(&w), ["a"], "the link count changed");
        std::fs::write(&elsewhere, "forged").expect("write");
        assert_eq!(changed(&w), ["a"]);

        use std::io::Write;
        let mut early = early;
        early.write_all(b" ").expect("write");
        assert_eq!(changed(&w), ["b"]);

        // Replaced whole, then written in place: the new file is watched too.
        std::fs::write(runs.join("b/.tmp"), "{}").expect("write");
        std::fs::rename(runs.join("b/.tmp"), runs.join("b/run.json")).expect("rename");
        assert_eq!(changed(&w), ["b"]);
        std::fs::write(runs.join("b/run.json"), "in place").expect("write");
        assert_eq!(changed(&w), ["b"]);

        // A record made later, and a run folder made later, with a record in it.
        std::fs::write(runs.join("a/events.jsonl"), "").expect("write");
        assert_eq!(changed(&w), ["a"]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(runs.join("a/events.jsonl"))
            .and_then(|mut f| f.write_all(b"{}\n"))
            .expect("append");
        assert_eq!(changed(&w), ["a"]);
        std::fs::create_dir_all(runs.join("c")).expect("mkdir");
        std::fs::write(runs.join("c/run.json"), "{}").expect("write");
        assert_eq!(changed(&w), ["c"]);
        std::fs::write(runs.join("c/run.json"), "{\"y\":2}").expect("write");
        assert_eq!(changed(&w), ["c"]);

        std::fs::remove_file(runs.join("a/run.json")).expect("rm");
        assert_eq!(changed(&w), ["a"]);
        std::fs::remove_dir_all(runs.join("c")).expect("rm");
        assert_eq!(changed(&w), ["c"]);
    }

    /// Past its share of watches, the watch is not made at all: every check then stats.
    #[test]
    fn a_history_past_the_share_is_not_watched() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path().join("runs");
        // A watch for each folder (these runs have no records) and one for the runs folder.
        for i in 0..most_watches() {
            std::fs::create_dir_all(runs.join(format!("{i}"))).expect("mkdir");
        }
        assert!(RecordsWatch::new(&runs, OsStr::new("own"), NAMES).is_none());
    }

    /// A record held open counts as changed at every look until it is closed: a write through
    /// a shared memory map sends no event. A read that ended changes nothing.
    #[test]
    fn a_record_held_open_is_looked_at_until_it_is_closed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path().join("runs");
        std::fs::create_dir_all(runs.join("a")).expect("mkdir");
        std::fs::write(runs.join("a/run.json"), "{}").expect("write");
        let w = RecordsWatch::new(&runs, OsStr::new("own"), NAMES).expect("inotify");
        std::fs::read(runs.join("a/run.json")).expect("read");
        assert_eq!(changed(&w), Vec::<String>::new(), "a read that ended");
        let held = std::fs::OpenOptions::new()
            .write(true)
            .open(runs.join("a/run.json"))
            .expect("open");
        assert_eq!(changed(&w), ["a"]);
        assert_eq!(changed(&w), ["a"], "still open");
        drop(held);
        assert_eq!(changed(&w), ["a"], "closed after a write open");
        assert_eq!(changed(&w), Vec::<String>::new());
    }

    /// A folder above the runs folder renamed and another runs folder made in its place: the
    /// watch was told nothing, and says it is blind.
    #[test]
    fn a_runs_folder_swapped_from_above_leaves_the_watch_blind() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path().join("pipeline/runs");
        std::fs::create_dir_all(runs.join("a")).expect("mkdir");
        let w = RecordsWatch::new(&runs, OsStr::new("own"), NAMES).expect("inotify");
        std::fs::rename(tmp.path().join("pipeline"), tmp.path().join("moved")).expect("move");
        std::fs::create_dir_all(runs.join("own")).expect("mkdir");
        assert!(w.changed().is_none());
    }

    /// A run "folder" that is a symlink to another run's folder is not watched (its watches
    /// would be the other run's), so changing where it points later hides nothing; a record
    /// hard-linked into another run's folder leaves the watch blind.
    #[test]
    fn symlinked_or_hard_linked_runs_never_hide_another_runs_record() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path().join("runs");
        for run in ["a", "own"] {
            std::fs::create_dir_all(runs.join(run)).expect("mkdir");
            std::fs::write(runs.join(run).join("events.jsonl"), "{}\n").expect("write");
        }
        let w = RecordsWatch::new(&runs, OsStr::new("own"), NAMES).expect("inotify");
        std::os::unix::fs::symlink(runs.join("a"), runs.join("z")).expect("symlink");
        assert_eq!(changed(&w), ["z"]);
        std::os::unix::fs::symlink(runs.join("own"), runs.join("z.new")).expect("symlink");
        std::fs::rename(runs.join("z.new"), runs.join("z")).expect("retarget");
        std::fs::write(runs.join("a/events.jsonl"), "").expect("cut");
        assert_eq!(changed(&w), ["a", "z", "z.new"]);

        std::fs::create_dir_all(runs.join("b")).expect("mkdir");
        std::fs::hard_link(runs.join("a/events.jsonl"), runs.join("b/events.jsonl")).expect("link");
        assert!(w.changed().is_none(), "one file in two runs");
    }

    /// The runs folder moved away: the watch cannot say what happened inside, and says so for
    /// good.
    #[test]
    fn a_moved_runs_folder_leaves_the_watch_blind() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path().join("runs");
        std::fs::create_dir_all(runs.join("a")).expect("mkdir");
        let w = RecordsWatch::new(&runs, OsStr::new("own"), NAMES).expect("inotify");
        std::fs::rename(&runs, tmp.path().join("moved")).expect("move");
        assert!(w.changed().is_none());
        std::fs::create_dir_all(&runs).expect("mkdir");
        assert!(w.changed().is_none(), "blind for good");
    }
}
