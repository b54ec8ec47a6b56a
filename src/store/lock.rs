//! Locks that survive nothing: an exclusive `flock` is released by the kernel when its owner
//! dies, even by `kill -9`, so "is the owner alive?" is simply "is the lock still held?". The
//! lock file also names its owner (pid, process start time, host) for people to read.
//!
//! - A run's `lock`: held by the process driving the run for its whole life.
//! - The repository's `pipeline/repo.lock`: held briefly around changes to refs and worktrees,
//!   so that concurrent runs never race on `refs/notes/pipeline`, `git worktree` or a branch.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::Error;

use crate::error::Result;
use crate::ids;

/// Who holds (or held) a lock.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub process_start: Option<u64>,
    pub host: Option<String>,
    pub at: String,
}

impl Owner {
    fn me() -> Owner {
        Owner {
            pid: std::process::id(),
            process_start: crate::platform::process_start(std::process::id()),
            host: hostname(),
            at: ids::now_rfc3339(),
        }
    }

    pub fn describe(&self) -> String {
        match &self.host {
            Some(h) => format!("pid {} on {h}, since {}", self.pid, self.at),
            None => format!("pid {}, since {}", self.pid, self.at),
        }
    }
}

fn hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
}

/// The state of a run's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// A live process holds it.
    Alive(Owner),
    /// Held by a process on another host: we cannot tell whether it still runs.
    OtherHost(Owner),
    /// Nobody holds it (the owner finished or died).
    Free,
}

/// The run's lock, held until dropped.
pub struct RunLock {
    path: PathBuf,
    _flock: Flock<File>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Remove first, then the flock goes with the file handle.
        let _ = std::fs::remove_file(&self.path);
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io_path("open", path, e))
}

fn read_owner(file: &mut File) -> Option<Owner> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Take a run's lock, or say who holds it.
pub fn acquire_run(path: &Path, run_id: &str) -> Result<RunLock> {
    let file = open_lock_file(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut flock) => {
            if let Some(owner) = read_owner(&mut flock)
                && owner.host.is_some()
                && owner.host != hostname()
            {
                return Err(Error::usage_hint(
                    format!(
                        "run {run_id} is locked by a process on another host ({})",
                        owner.describe()
                    ),
                    format!(
                        "if that process is gone, remove {} and try again",
                        path.display()
                    ),
                ));
            }
            let me = serde_json::to_string(&Owner::me()).unwrap_or_default();
            flock
                .set_len(0)
                .and_then(|()| flock.rewind())
                .and_then(|()| flock.write_all(format!("{me}\n").as_bytes()))
                .and_then(|()| flock.sync_all())
                .map_err(|e| Error::io_path("write", path, e))?;
            Ok(RunLock {
                path: path.to_owned(),
                _flock: flock,
            })
        }
        Err((mut file, _)) => {
            let who = read_owner(&mut file)
                .map(|o| format!(" ({})", o.describe()))
                .unwrap_or_default();
            Err(Error::usage_hint(
                format!("run {run_id} is still running{who}"),
                "wait for it, or stop it (Ctrl-C, or kill that process) and resume it then",
            ))
        }
    }
}

/// Whether a run's owner is alive, without taking its lock for long.
pub fn liveness(path: &Path) -> Liveness {
    let Ok(file) = OpenOptions::new().read(true).write(true).open(path) else {
        return Liveness::Free;
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut flock) => match read_owner(&mut flock) {
            Some(o) if o.host.is_some() && o.host != hostname() => Liveness::OtherHost(o),
            _ => Liveness::Free,
        },
        Err((mut file, _)) => Liveness::Alive(read_owner(&mut file).unwrap_or_default()),
    }
}

/// The repository-wide lock for ref and worktree changes, held until dropped.
pub struct RepoLock {
    _flock: Flock<File>,
}

/// Wait for the repository lock (changes under it take milliseconds).
pub fn acquire_repo(pipeline_dir: &Path) -> Result<RepoLock> {
    std::fs::create_dir_all(pipeline_dir).map_err(|e| Error::io_path("create", pipeline_dir, e))?;
    let path = pipeline_dir.join("repo.lock");
    let file = open_lock_file(&path)?;
    let flock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io_path("lock", &path, std::io::Error::from(e)))?;
    Ok(RepoLock { _flock: flock })
}

/// A `PIPELINE_SLOT` number, held until dropped: distinct among the runs alive at the same
/// time in this repository (in this process or another), so that gates can pick their own
/// ports, databases and temp dirs from it.
pub struct Slot {
    pub number: u32,
    _flock: Flock<File>,
}

/// The lowest slot no live run holds.
pub fn acquire_slot(pipeline_dir: &Path) -> Result<Slot> {
    acquire_slot_from(pipeline_dir, 0)
}

/// The lowest slot from `first` on that no live run holds.
pub fn acquire_slot_from(pipeline_dir: &Path, first: u32) -> Result<Slot> {
    for number in first..first.saturating_add(4096) {
        if let Some(slot) = try_slot(pipeline_dir, number)? {
            return Ok(slot);
        }
    }
    Err(Error::other(format!(
        "4096 runs hold a slot in {}; no slot is free",
        pipeline_dir.join("slots").display()
    )))
}

/// Slot `number`, unless a live run holds it.
pub fn try_slot(pipeline_dir: &Path, number: u32) -> Result<Option<Slot>> {
    let dir = pipeline_dir.join("slots");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io_path("create", &dir, e))?;
    let file = open_lock_file(&dir.join(number.to_string()))?;
    Ok(Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .ok()
        .map(|flock| Slot {
            number,
            _flock: flock,
        }))
}

/// An exclusive gate's lock, held while it runs.
pub struct GateLock {
    _flock: Flock<File>,
}

/// Take the lock of the exclusive gate `name` if nobody holds it.
pub fn try_gate_lock(pipeline_dir: &Path, name: &str) -> Result<Option<GateLock>> {
    let dir = pipeline_dir.join("gates");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io_path("create", &dir, e))?;
    // Gate names are free text: a safe file name for each (two names sharing one only wait
    // for each other needlessly).
    let safe: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file = open_lock_file(&dir.join(format!("{safe}.lock")))?;
    Ok(Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .ok()
        .map(|flock| GateLock { _flock: flock }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_alive_and_a_dropped_one_is_free() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("lock");
        let lock = acquire_run(&path, "r")?;
        assert!(matches!(liveness(&path), Liveness::Alive(o) if o.pid == std::process::id()));
        assert!(
            acquire_run(&path, "r").is_err(),
            "a second owner is refused"
        );
        drop(lock);
        assert_eq!(liveness(&path), Liveness::Free);
        // A stale lock file left by a dead owner is taken over.
        std::fs::write(&path, "{\"pid\":1,\"at\":\"x\"}\n").map_err(|e| Error::io("write", e))?;
        assert_eq!(liveness(&path), Liveness::Free);
        let _again = acquire_run(&path, "r")?;
        Ok(())
    }

    #[test]
    fn live_slots_are_distinct_and_freed_ones_reused() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let a = acquire_slot(dir.path())?;
        let b = acquire_slot(dir.path())?;
        let c = acquire_slot(dir.path())?;
        assert_eq!((a.number, b.number, c.number), (0, 1, 2));
        drop(b);
        assert_eq!(acquire_slot(dir.path())?.number, 1);
        let g = try_gate_lock(dir.path(), "db tests")?;
        assert!(g.is_some());
        assert!(try_gate_lock(dir.path(), "db tests")?.is_none());
        drop(g);
        assert!(try_gate_lock(dir.path(), "db tests")?.is_some());
        Ok(())
    }
}
