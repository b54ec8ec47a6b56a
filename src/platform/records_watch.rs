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
//! stays the caller's. The rules that keep it honest are in `watch_files.rs`.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::watch_files::{Added, add, drain, file_mask, folder_mask, identity, most_watches};

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
    /// Every run something happened to since the watch began (a record opened, written,
    /// made, moved): looked at again at every look, because a write through a memory map sends
    /// no event, and a record moved in may have been mapped before.
    touched: BTreeSet<OsString>,
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
                touched: BTreeSet::new(),
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
        let Some(events) = drain(&self.inotify) else {
            state.blind = true;
            return None;
        };
        for ev in events {
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

        // A record may be written through a memory map, which sends no event: a run something
        // happened to is looked at again at every look from then on.
        state.touched.extend(runs.iter().cloned());
        runs.extend(state.touched.iter().cloned());
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

    /// Every way a record changes names its run, and a run something happened to is named at
    /// every look from then on (a write through a memory map sends no event): written in place,
    /// through a hard link made elsewhere before the watch, through a descriptor opened before
    /// it, replaced whole, made later, in a run folder made later, deleted, its folder removed.
    /// The own run is never named.
    #[test]
    fn every_change_to_a_record_names_its_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path().join("runs");
        for run in ["a", "b", "c", "d", "e", "g", "h", "own"] {
            std::fs::create_dir_all(runs.join(run)).expect("mkdir");
            std::fs::write(runs.join(run).join("run.json"), "{}").expect("write");
        }
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::hard_link(runs.join("b/run.json"), &elsewhere).expect("link");
        let early = std::fs::OpenOptions::new()
            .append(true)
            .open(runs.join("c/run.json"))
            .expect("open");
        let w = RecordsWatch::new(&runs, OsStr::new("own"), NAMES).expect("inotify");
        let mut touched: Vec<&str> = Vec::new();
        let mut expect = |w: &RecordsWatch, run: Option<&'static str>, why: &str| {
            touched.extend(run);
            touched.sort();
            touched.dedup();
            assert_eq!(changed(w), touched, "{why}");
        };
        expect(&w, None, "nothing yet");
        std::fs::write(runs.join("own/run.json"), "{\"x\":1}").expect("write");
        expect(&w, None, "the own run is not watched");

        std::fs::write(runs.join("a/run.json"), "{\"x\":1}").expect("write");
        expect(&w, Some("a"), "written in place");
        expect(&w, None, "and named again");
        std::fs::write(&elsewhere, "forged").expect("write");
        expect(&w, Some("b"), "through a hard link made before the watch");
        use std::io::Write;
        let mut early = early;
        early.write_all(b" ").expect("write");
        expect(
            &w,
            Some("c"),
            "through a descriptor opened before the watch",
        );
        std::fs::write(runs.join("d/.tmp"), "{}").expect("write");
        std::fs::rename(runs.join("d/.tmp"), runs.join("d/run.json")).expect("rename");
        expect(&w, Some("d"), "replaced whole");
        std::fs::write(runs.join("e/events.jsonl"), "").expect("write");
        expect(&w, Some("e"), "a record made later");
        std::fs::create_dir_all(runs.join("f")).expect("mkdir");
        std::fs::write(runs.join("f/run.json"), "{}").expect("write");
        expect(&w, Some("f"), "a run folder made later");
        std::fs::remove_file(runs.join("g/run.json")).expect("rm");
        expect(&w, Some("g"), "a record deleted");
        std::fs::remove_dir_all(runs.join("h")).expect("rm");
        expect(&w, Some("h"), "a run folder removed");
    }

    /// A record written through a shared memory map (no event) by a process that mapped it
    /// after the watch began: its run is named at every look, so the caller's stat sees it.
    #[test]
    fn a_record_written_through_a_memory_map_stays_in_sight() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path().join("runs");
        for run in ["a", "b"] {
            std::fs::create_dir_all(runs.join(run)).expect("mkdir");
            std::fs::write(runs.join(run).join("run.json"), "{\"state\":\"shipped\"}")
                .expect("write");
        }
        let w = RecordsWatch::new(&runs, OsStr::new("own"), NAMES).expect("inotify");
        let mut writer =
            super::super::watch_files::tests::MappedWriter::start(&runs.join("a/run.json"));
        assert_eq!(changed(&w), ["a"], "mapped: opened");
        writer.write();
        assert_eq!(changed(&w), ["a"], "written through the map: still named");
        drop(writer);
        assert_eq!(changed(&w), ["a"]);
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
