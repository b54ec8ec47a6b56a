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

/// The most watches one run takes for the records: a sixteenth of the user's limit
/// (`max_user_watches`), never more than 20,000. inotify watches are shared with the user's own
/// tools (an editor, a file-watching build): a run must never leave them short. Past it (a
/// history of thousands of runs) the caller stats every record at every check, as without a
/// watch.
fn most_watches() -> usize {
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    share_of(limit)
}

fn share_of(limit: Option<usize>) -> usize {
    // 8,192 is the kernel's smallest default.
    (limit.unwrap_or(8192) / 16).min(20_000)
}

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
    /// Events were lost, or a watch could not be added: every later look says so.
    blind: bool,
}

impl std::fmt::Debug for RecordsWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.state.lock().map_or(0, |s| s.by_wd.len());
        write!(f, "RecordsWatch({n} watches)")
    }
}

fn folder_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::IN_DONT_FOLLOW
}

fn file_mask() -> AddWatchFlags {
    AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_DONT_FOLLOW
}

impl RecordsWatch {
    /// Watch the files `names` in every folder of `runs` but `own`, and the folders themselves.
    /// `None` when inotify is not available, or the watches would pass [`most_watches`]. Take the stats of the baseline after this returns: a change made between
    /// the two then shows at the next look.
    pub fn new(runs: &Path, own: &OsStr, names: &'static [&'static str]) -> Option<RecordsWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let watch = RecordsWatch {
            inotify,
            runs: runs.to_owned(),
            names,
            own: own.to_owned(),
            most: most_watches(),
            state: Mutex::new(State {
                by_wd: HashMap::new(),
                blind: false,
            }),
        };
        {
            let mut state = watch.state.lock().ok()?;
            let wd = watch.inotify.add_watch(runs, folder_mask()).ok()?;
            state.by_wd.insert(wd, None);
            for entry in std::fs::read_dir(runs).ok()? {
                let name = entry.ok()?.file_name();
                if !watch.watch_run(&mut state, &name) {
                    return None;
                }
            }
        }
        Some(watch)
    }

    /// Watch the run folder `name` and its record files (again: a record replaced whole is a new
    /// file). False when out of watches.
    fn watch_run(&self, state: &mut State, name: &OsStr) -> bool {
        if name == self.own {
            return true;
        }
        let folder = self.runs.join(name);
        for (path, mask) in std::iter::once((folder.clone(), folder_mask())).chain(
            self.names
                .iter()
                .map(|file| (folder.join(file), file_mask())),
        ) {
            if state.by_wd.len() >= self.most {
                return false;
            }
            match self.inotify.add_watch(&path, mask) {
                Ok(wd) => {
                    state.by_wd.insert(wd, Some(name.to_owned()));
                }
                Err(Errno::ENOSPC | Errno::ENOMEM) => return false,
                // Not there (a record a run does not have), not a folder: the stat says so too.
                Err(_) => {}
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

    #[test]
    fn a_run_takes_a_sixteenth_of_the_users_watches_at_most() {
        assert_eq!(share_of(Some(8192)), 512);
        assert_eq!(share_of(Some(192_530)), 12_033);
        assert_eq!(share_of(Some(1_048_576)), 20_000);
        assert_eq!(share_of(None), 512);
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
