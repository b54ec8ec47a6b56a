//! Other runs' records (`run.json`, `checkpoint.json`, `events.jsonl`, `bundle.json`) as a
//! run's containment checks follow them: by stat, with a copy of each to put back what a step
//! rewrote. A live run writes its own; a change to a finished run's record is a step's doing.
//!
//! Records are kept for good, so a repository's history grows with every run. Where the
//! platform can watch files ([`crate::platform::RecordsWatch`], inotify), a check stats again
//! only the runs in whose folder something happened since the last look; elsewhere, or once the
//! watch lost events, it stats every record, as a step once cost in a repository with thousands
//! of runs.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A record file's stat (see [`crate::files::Stamp`]).
pub type Stamp = crate::files::Stamp;

/// A record's content, shared between the fingerprints that saw it unchanged.
pub type Copy = Arc<Vec<u8>>;

/// The record files of every run but the own, by their whole paths.
pub type Stamps = Arc<BTreeMap<OsString, Stamp>>;

/// Their contents, by the same paths.
pub type Copies = Arc<BTreeMap<OsString, Copy>>;

/// The files of a run folder that are records.
const NAMES: &[&str] = &[
    "run.json",
    crate::store::CHECKPOINT_RECORD,
    "events.jsonl",
    "bundle.json",
];

/// The runs from which a watch pays for itself (see [`crate::safety::watch::worth_watching`]):
/// four stats a run at every check.
const WATCHED_FROM: usize = 400;

/// The most of other runs' records kept in memory to put them back (a repository with hundreds
/// of runs fits; beyond it, a change to them is reported, not undone).
const KEPT: u64 = 8 * 1024 * 1024;

/// Other runs' records as one run's guard follows them.
#[derive(Debug)]
pub struct Records {
    runs: PathBuf,
    own: OsString,
    watch: Option<crate::platform::RecordsWatch>,
    /// The stamps as last listed.
    last: Option<Stamps>,
    /// Contents as last read, with the stamp of the very file read.
    seen: BTreeMap<OsString, (Stamp, Copy)>,
    /// The copies made for a listing, while it is the last one.
    copied: Option<(Stamps, Copies)>,
}

impl Records {
    /// Follow the records of every run in `<common_dir>/pipeline/runs` but `own`: the watch
    /// first, then the listing and the copies, so that a change made meanwhile shows at the next
    /// look.
    pub fn follow(common_dir: &Path, own: &str) -> Records {
        let mut records = Records::unfollowed(common_dir, own);
        let many = std::fs::read_dir(&records.runs).map_or(0, Iterator::count);
        if crate::safety::watch::worth_watching(many, WATCHED_FROM) {
            // Read before the watch begins: a record this process opens later marks its run
            // for a look at every check (a read is an open), which the first read of every
            // record would do to all of them. Kept only where the baseline's stat is the same.
            let first = Arc::new(stamps(&records.runs, &records.own));
            records.copies(&first);
            records.watch = crate::platform::RecordsWatch::new(&records.runs, own.as_ref(), NAMES);
        }
        let listed = records.list();
        records.copies(&listed);
        records
    }

    /// Records not followed (the checks that need them are off): no watch, nothing listed yet.
    pub fn unfollowed(common_dir: &Path, own: &str) -> Records {
        Records {
            runs: common_dir.join("pipeline").join("runs"),
            own: own.into(),
            watch: None,
            last: None,
            seen: BTreeMap::new(),
            copied: None,
        }
    }

    /// Stop watching: later listings stat every record. The watch is handed back to be closed
    /// where its closing costs no waiting.
    pub fn release_watch(&mut self) -> Option<crate::platform::RecordsWatch> {
        self.watch.take()
    }

    /// The stamps now. With a watch, only the runs it saw something happen to are looked at
    /// again; without one (or once it lost events), every record is.
    pub fn list(&mut self) -> Stamps {
        if let (Some(watch), Some(last)) = (&self.watch, &self.last)
            && let Some(runs) = watch.changed()
            && let Some(now) = self.restamped(last, &runs)
        {
            self.last = Some(now.clone());
            return now;
        }
        let listed = Arc::new(stamps(&self.runs, &self.own));
        self.last = Some(listed.clone());
        listed
    }

    /// The stamps as last listed (as [`Records::list`] when there are none yet).
    pub fn last_or_list(&mut self) -> Stamps {
        match &self.last {
            Some(last) => last.clone(),
            None => self.list(),
        }
    }

    /// `last` with the records of `runs` stat'ed again; `None` when the runs folder cannot be
    /// opened.
    fn restamped(&self, last: &Stamps, runs: &BTreeSet<OsString>) -> Option<Stamps> {
        let runs: Vec<&OsString> = runs.iter().filter(|r| **r != self.own).collect();
        if runs.is_empty() {
            return Some(last.clone());
        }
        let folder = open_folder(&self.runs)?;
        let mut now = (**last).clone();
        for run in runs {
            for name in NAMES {
                let rel = Path::new(run).join(name);
                let key = self.runs.join(&rel).into_os_string();
                match crate::platform::stamp_at(&folder, &rel) {
                    Some(stamp) => now.insert(key, stamp),
                    None => now.remove(&key),
                };
            }
        }
        Some(Arc::new(now))
    }

    /// The contents of the records `stamps` lists, when they fit in [`KEPT`] together. A record
    /// whose stamp is the one it had at the last look is not read again: finished runs' records
    /// never change, so a step costs a stat of each, not a read of them all.
    pub fn copies(&mut self, stamps: &Stamps) -> Copies {
        if let Some((listed, copies)) = &self.copied
            && Arc::ptr_eq(listed, stamps)
        {
            return copies.clone();
        }
        let copies = Arc::new(self.read_copies(stamps));
        self.copied = Some((stamps.clone(), copies.clone()));
        copies
    }

    fn read_copies(&mut self, records: &BTreeMap<OsString, Stamp>) -> BTreeMap<OsString, Copy> {
        // A run's `checkpoint.json` is often its `run.json` (a hard link): one file, kept once.
        let mut files: BTreeMap<u64, u64> = BTreeMap::new();
        for (len, _, _, ino, _, _) in records.values() {
            files.insert(*ino, *len);
        }
        if files.values().sum::<u64>() > KEPT {
            return BTreeMap::new();
        }
        let seen = &mut self.seen;
        seen.retain(|p, _| records.contains_key(p));
        let mut copies = BTreeMap::new();
        let mut by_inode: BTreeMap<(u64, u64), Copy> = BTreeMap::new();
        for (path, stamp) in records {
            let file = (stamp.3, stamp.4);
            let copy = match seen.get(path) {
                Some((s, copy)) if s == stamp => copy.clone(),
                _ if by_inode.contains_key(&file) => by_inode[&file].clone(),
                _ => {
                    // Kept with the stat of the very file read, which may not be the one listed
                    // (changed or swapped since): then it is read again next time, and not
                    // shared.
                    let Some((meta, bytes)) =
                        crate::files::read_regular(Path::new(path), crate::files::Follow::No)
                    else {
                        continue;
                    };
                    let read = crate::files::stamp(&meta);
                    let copy = Arc::new(bytes);
                    seen.insert(path.clone(), (read, copy.clone()));
                    if read != *stamp {
                        copies.insert(path.clone(), copy);
                        continue;
                    }
                    copy
                }
            };
            by_inode.entry(file).or_insert_with(|| copy.clone());
            copies.insert(path.clone(), copy);
        }
        copies
    }
}

fn open_folder(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
        .ok()
}

/// The record files of every run in `runs` but `own`, by stat (size, mtime in nanoseconds,
/// inode). Keyed by their paths as bytes: a `PathBuf` key compares component by component,
/// which over hundreds of records was a good part of each fingerprint.
fn stamps(runs: &Path, own: &OsString) -> BTreeMap<OsString, Stamp> {
    let mut print = BTreeMap::new();
    let (Ok(listing), Some(folder)) = (std::fs::read_dir(runs), open_folder(runs)) else {
        return print;
    };
    for run in listing.flatten() {
        if run.file_name() == *own {
            continue;
        }
        for name in NAMES {
            // Relative to the open runs folder and not followed: two short lookups, where the
            // whole path cost one per folder of it, for every file of every run.
            let rel = Path::new(&run.file_name()).join(name);
            if let Some(stamp) = crate::platform::stamp_at(&folder, &rel) {
                print.insert(runs.join(&rel).into_os_string(), stamp);
            }
        }
    }
    print
}

/// Whether a record went from stamp `old` to `new` in a way git-pipeline never changes one: a
/// log (`events.jsonl`) replaced or cut, another record rewritten in place (git-pipeline
/// replaces them whole), any record deleted or moved to another device.
pub fn tampered(path: &Path, old: Option<&Stamp>, new: Option<&Stamp>) -> bool {
    match (old, new) {
        (Some(o), Some(n)) if o == n => false,
        (None, Some(_)) | (None, None) => false,
        (Some(_), None) => true,
        (
            Some(&(old_len, _, _, old_ino, old_dev, old_birth)),
            Some(&(new_len, _, _, new_ino, new_dev, new_birth)),
        ) => {
            let log = path.file_name().is_some_and(|n| n == "events.jsonl");
            // The same file, not a new one given a freed inode's number (ext4 hands one back
            // after two replacements): where no birth time is kept, the same inode is taken for
            // the same file.
            let same_file =
                new_ino == old_ino && (old_birth == 0 || new_birth == 0 || new_birth == old_birth);
            // Another device: a filesystem mounted over the record's folder.
            new_dev != old_dev
                || if log {
                    !same_file || new_len < old_len
                } else {
                    same_file
                }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_tampered_with_only_when_the_same_file_changed_in_place() {
        let run = Path::new("/r/runs/x/run.json");
        let log = Path::new("/r/runs/x/events.jsonl");
        let s = |len: u64, ctime: i128, ino: u64, birth: i128| (len, 1, ctime, ino, 7, birth);
        let was = s(10, 1, 100, 5);
        // Replaced whole (a new inode): git-pipeline's way.
        assert!(!tampered(run, Some(&was), Some(&s(12, 2, 101, 6))));
        // A new file given the freed inode's number back: not the same file.
        assert!(!tampered(run, Some(&was), Some(&s(12, 3, 100, 9))));
        // Rewritten in place.
        assert!(tampered(run, Some(&was), Some(&s(12, 3, 100, 5))));
        // Where no birth time is kept, the same inode is the same file.
        assert!(tampered(
            run,
            Some(&s(10, 1, 100, 0)),
            Some(&s(12, 3, 100, 0))
        ));
        // Deleted; on another device.
        assert!(tampered(run, Some(&was), None));
        let mut mounted = s(12, 2, 101, 6);
        mounted.4 = 8;
        assert!(tampered(run, Some(&was), Some(&mounted)));
        // A log grows in place; cut, or replaced by a new file, it is not git-pipeline's doing.
        assert!(!tampered(log, Some(&was), Some(&s(20, 2, 100, 5))));
        assert!(tampered(log, Some(&was), Some(&s(5, 2, 100, 5))));
        assert!(tampered(log, Some(&was), Some(&s(20, 2, 100, 9))));
        assert!(tampered(log, Some(&was), Some(&s(20, 2, 101, 6))));
    }

    fn repo_with_runs(runs: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pipeline").join("runs");
        for run in runs {
            std::fs::create_dir_all(dir.join(run)).expect("mkdir");
            std::fs::write(
                dir.join(run).join("run.json"),
                format!("{{\"id\":\"{run}\"}}"),
            )
            .expect("write");
            std::fs::write(dir.join(run).join("events.jsonl"), "{}\n").expect("write");
        }
        (tmp, dir)
    }

    /// Whatever happens to the runs folder, a listing through the watch is the listing a full
    /// stat of every record gives; and with nothing changed it is the same listing, not a copy.
    #[test]
    fn a_listing_through_the_watch_is_the_full_listing() {
        let (tmp, dir) = repo_with_runs(&["a", "b", "own"]);
        let mut records = Records::follow(tmp.path(), "own");
        // Three runs are too few to watch: watched here all the same, as a long history is.
        records.watch =
            crate::platform::RecordsWatch::new(&records.runs, records.own.as_ref(), NAMES);
        records.last = None;
        records.list();
        let own = OsString::from("own");
        let first = records.list();
        assert_eq!(*first, stamps(&dir, &own));
        assert_eq!(first.len(), 4, "{first:?}");
        assert!(Arc::ptr_eq(&first, &records.list()), "nothing changed");
        let copies = records.copies(&first);
        assert!(Arc::ptr_eq(&copies, &records.copies(&first)));
        assert_eq!(
            copies
                .get(dir.join("a/run.json").as_os_str())
                .map(|c| c.as_slice()),
            Some(&b"{\"id\":\"a\"}"[..])
        );

        let steps: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| std::fs::write(dir.join("a/run.json"), "in place").expect("write")),
            Box::new(|| {
                std::fs::write(dir.join("b/.tmp"), "{}").expect("write");
                std::fs::rename(dir.join("b/.tmp"), dir.join("b/run.json")).expect("rename");
            }),
            Box::new(|| std::fs::remove_file(dir.join("b/events.jsonl")).expect("rm")),
            Box::new(|| {
                std::fs::create_dir_all(dir.join("c")).expect("mkdir");
                std::fs::write(dir.join("c/bundle.json"), "{}").expect("write");
            }),
            Box::new(|| std::fs::write(dir.join("own/run.json"), "mine").expect("write")),
            Box::new(|| std::fs::remove_dir_all(dir.join("a")).expect("rm")),
            Box::new(|| std::fs::write(dir.join("stray-file"), "x").expect("write")),
        ];
        for step in steps {
            step();
            let listed = records.list();
            assert_eq!(*listed, stamps(&dir, &own));
        }
        // Those listings came through the watch, not through a full listing after it went blind.
        assert!(
            records
                .watch
                .as_ref()
                .is_some_and(|w| w.changed().is_some())
        );
    }
}
