//! Run records under the repository's common git dir: `.git/pipeline/runs/<run-id>/` holds
//! `run.json` (replaced atomically), `events.jsonl` (append-only), `lock` (the owning process),
//! and the prompts and outputs of every step.

pub mod atomic;
pub mod record;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ids;
use crate::redact::Redactor;
pub use record::RunRecord;

pub struct Store {
    runs: PathBuf,
}

impl Store {
    pub fn new(pipeline_dir: &Path) -> Self {
        Store {
            runs: pipeline_dir.join("runs"),
        }
    }

    pub fn runs_dir(&self) -> &Path {
        &self.runs
    }

    /// Make a new, empty run folder with a fresh id (retrying on the rare same-second clash).
    pub fn create_run(&self, redactor: Arc<Redactor>) -> Result<RunDir> {
        std::fs::create_dir_all(&self.runs).map_err(|e| Error::io_path("create", &self.runs, e))?;
        for _ in 0..16 {
            let id = ids::new_run_id(std::time::SystemTime::now());
            let path = self.runs.join(&id);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { id, path, redactor }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io_path("create", &path, e)),
            }
        }
        Err(Error::other("could not pick an unused run id"))
    }

    /// Run ids, newest first.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.runs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io_path("read", &self.runs, e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| ids::is_valid_run_ref(n))
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// The run named by a full id or a unique prefix.
    pub fn find(&self, reference: &str, redactor: Arc<Redactor>) -> Result<RunDir> {
        if !ids::is_valid_run_ref(reference) {
            return Err(Error::usage(format!(
                "{reference:?} is not a run id (ids look like 20261121-051200-ab12)"
            )));
        }
        let all = self.list()?;
        let chosen = if all.iter().any(|id| id == reference) {
            reference.to_owned()
        } else {
            let found: Vec<&String> = all.iter().filter(|id| id.starts_with(reference)).collect();
            match found.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(Error::usage_hint(
                        format!("no run matches {reference:?}"),
                        "list runs with `git pipeline status`",
                    ));
                }
                many => {
                    return Err(Error::usage_hint(
                        format!(
                            "{reference:?} matches {} runs: {}",
                            many.len(),
                            many.iter()
                                .take(5)
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        "give more of the run id",
                    ));
                }
            }
        };
        Ok(RunDir {
            path: self.runs.join(&chosen),
            id: chosen,
            redactor,
        })
    }
}

pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
    redactor: Arc<Redactor>,
}

#[derive(Serialize)]
struct Event<'a> {
    ts: String,
    run_id: &'a str,
    workstream: Option<&'a str>,
    stage: Option<&'a str>,
    event: &'a str,
    data: serde_json::Value,
}

impl RunDir {
    pub fn record_path(&self) -> PathBuf {
        self.path.join("run.json")
    }

    pub fn events_path(&self) -> PathBuf {
        self.path.join("events.jsonl")
    }

    pub fn write_record(&self, rec: &RunRecord) -> Result<()> {
        let json = serde_json::to_string_pretty(rec)
            .map_err(|e| Error::other(format!("cannot encode the run record: {e}")))?;
        let json = self.redactor.text(&json);
        atomic::write(&self.record_path(), format!("{json}\n").as_bytes())
    }

    pub fn read_record(&self) -> Result<RunRecord> {
        let path = self.record_path();
        let bytes = std::fs::read(&path).map_err(|e| Error::io_path("read", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::other_hint(
                format!("the run record {} is unreadable: {e}", path.display()),
                "the file was edited or damaged; its events.jsonl still tells what happened",
            )
        })
    }

    /// Append one event line. A single `write` on an `O_APPEND` file, so concurrent writers do
    /// not interleave within a line.
    pub fn event(&self, stage: Option<&str>, event: &str, data: serde_json::Value) -> Result<()> {
        let ev = Event {
            ts: ids::now_rfc3339(),
            run_id: &self.id,
            workstream: None,
            stage,
            event,
            data,
        };
        let line = serde_json::to_string(&ev)
            .map_err(|e| Error::other(format!("cannot encode an event: {e}")))?;
        let line = format!("{}\n", self.redactor.text(&line));
        let path = self.events_path();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io_path("open", &path, e))?;
        f.write_all(line.as_bytes())
            .map_err(|e| Error::io_path("append to", &path, e))
    }

    /// Store an artifact (prompt, output) with secrets masked. Returns its path.
    pub fn artifact(&self, rel: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io_path("create", parent, e))?;
        }
        std::fs::write(&path, self.redactor.bytes(bytes))
            .map_err(|e| Error::io_path("write", &path, e))?;
        Ok(path)
    }

    /// A private scratch path inside the run folder (never inside the worktree).
    pub fn scratch(&self, name: &str) -> Result<PathBuf> {
        let dir = self.path.join("tmp");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io_path("create", &dir, e))?;
        Ok(dir.join(name))
    }

    /// Drop the scratch files of a finished run (an interrupted run keeps them for resume).
    pub fn clear_scratch(&self) -> Result<()> {
        let dir = self.path.join("tmp");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io_path("remove", &dir, e)),
        }
    }

    /// Take the run's lock, naming this process as its owner.
    pub fn lock(&self) -> Result<RunLock> {
        let path = self.path.join("lock");
        let owner = serde_json::json!({
            "pid": std::process::id(),
            "process_start": process_start_ticks(std::process::id()),
            "host": nix::unistd::gethostname().ok().map(|h| h.to_string_lossy().into_owned()),
            "at": ids::now_rfc3339(),
        });
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::usage(format!("run {} is locked by another process", self.id))
                } else {
                    Error::io_path("create", &path, e)
                }
            })?;
        f.write_all(format!("{owner}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io_path("write", &path, e))?;
        Ok(RunLock { path })
    }
}

/// Removes the lock file when the owning process is done with the run.
pub struct RunLock {
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The start time of a process in clock ticks since boot (`/proc/<pid>/stat` field 22): with the
/// pid, it tells a live owner from a recycled pid.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}
