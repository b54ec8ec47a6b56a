//! Run records under the repository's common git dir: `.git/pipeline/runs/<run-id>/` holds
//! `run.json` (replaced atomically), `checkpoint.json` (its last durable version),
//! `events.jsonl` (append-only), `lock` (the owning process),
//! and the prompts and outputs of every step.

pub mod atomic;
pub mod events;
pub mod lock;
pub mod record;
pub mod slots;

pub use events::EventKind;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::Error;

use crate::error::Result;
use crate::ids;
use crate::redact::Redactor;
pub use record::RunRecord;

/// The run record's last durable version, beside `run.json` (see [`RunDir::checkpoint_path`]).
pub const CHECKPOINT_RECORD: &str = "checkpoint.json";

/// JSON whose end is missing (a file whose last blocks a power loss never wrote, its size cut
/// to what was): what is there parses, then ends too soon. An edit that breaks the syntax is
/// not this, and is reported.
fn cut_short(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err_and(|e| e.is_eof())
}

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
        let clock = ids::TestClock::from_env();
        for attempt in 0..16 {
            let id = match &clock {
                Some(c) => c.run_id(self.list()?.len() as u64 + attempt),
                None => ids::new_run_id(std::time::SystemTime::now()),
            };
            let path = self.runs.join(&id);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(RunDir {
                        id,
                        path,
                        redactor,
                        workstream: None,
                    });
                }
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

    /// The run folder of an id that [`Store::list`] returned (no search: listing the folder once
    /// per run would make `status` quadratic).
    pub fn open(&self, id: &str, redactor: Arc<Redactor>) -> RunDir {
        RunDir {
            path: self.runs.join(id),
            id: id.to_owned(),
            redactor,
            workstream: None,
        }
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
            workstream: None,
        })
    }
}

#[derive(Clone)]
pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
    redactor: Arc<Redactor>,
    /// The bundle workstream this run is, named in each of its events.
    workstream: Option<String>,
}

#[derive(Serialize)]
struct Event<'a> {
    ts: String,
    run_id: &'a str,
    workstream: Option<&'a str>,
    stage: Option<crate::store::record::StageName>,
    event: EventKind,
    data: serde_json::Value,
}

impl RunDir {
    /// The same run folder, storing through another redactor.
    pub fn with_redactor(self, redactor: Arc<Redactor>) -> RunDir {
        RunDir { redactor, ..self }
    }

    /// The same run folder, its events naming the bundle workstream it is.
    pub fn with_workstream(self, workstream: Option<String>) -> RunDir {
        RunDir { workstream, ..self }
    }

    pub fn record_path(&self) -> PathBuf {
        self.path.join("run.json")
    }

    /// The record as last saved durably (a hard link to that `run.json`): what is read when a
    /// power loss took the progress saved after it.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join(CHECKPOINT_RECORD)
    }

    /// `run.json`'s bytes, or the durable copy's where a power loss left `run.json` empty or
    /// with unwritten blocks (progress saves are not fsynced).
    fn record_bytes(&self) -> Result<(PathBuf, Vec<u8>)> {
        let path = self.record_path();
        let bytes = std::fs::read(&path).map_err(|e| Error::io_path("read", &path, e))?;
        if (atomic::lost_to_power(&bytes) || cut_short(&bytes))
            && let Ok(copy) = std::fs::read(self.checkpoint_path())
            && !atomic::lost_to_power(&copy)
            && !cut_short(&copy)
        {
            return Ok((self.checkpoint_path(), copy));
        }
        Ok((path, bytes))
    }

    pub fn events_path(&self) -> PathBuf {
        self.path.join("events.jsonl")
    }

    /// Save the record durably (fsynced), with its copy `checkpoint.json`: what a resume after a
    /// power loss goes on from.
    pub fn write_record(&self, rec: &RunRecord) -> Result<()> {
        atomic::write_with_copy(
            &self.record_path(),
            &self.checkpoint_path(),
            &self.encode("run.json", rec)?,
        )
    }

    /// Save the record's progress atomically but without fsync: a later durable save (the next
    /// checkpoint, the run's end) supersedes it, and after a power loss that left `run.json`
    /// unreadable the last durable one (`checkpoint.json`) is read. Until there is one (the
    /// run's first saves, through discovery and planning), progress is saved durably too.
    pub fn write_progress(&self, rec: &RunRecord) -> Result<()> {
        if !self.checkpoint_path().exists() {
            return self.write_record(rec);
        }
        atomic::replace(&self.path.join("run.json"), &self.encode("run.json", rec)?)
    }

    /// Replace `name` in the run folder with `value` as JSON, atomically, secrets masked.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        atomic::write(&self.path.join(name), &self.encode(name, value)?)
    }

    fn encode<T: Serialize>(&self, name: &str, value: &T) -> Result<Vec<u8>> {
        let json = serde_json::to_string_pretty(value)
            .map_err(|e| Error::other(format!("cannot encode {name}: {e}")))?;
        Ok(format!("{}\n", self.redactor.text(&json)).into_bytes())
    }

    pub fn read_record(&self) -> Result<RunRecord> {
        let (path, bytes) = self.record_bytes()?;
        // The version first: a newer record may not even parse as this version's schema.
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(version) = v.get("version").and_then(serde_json::Value::as_u64)
            && version > u64::from(record::RECORD_VERSION)
        {
            return Err(Error::usage_hint(
                format!(
                    "{} was written by a newer git-pipeline (record version {version}; this one reads {})",
                    path.display(),
                    record::RECORD_VERSION
                ),
                "upgrade git-pipeline to read it",
            ));
        }
        let rec: RunRecord = serde_json::from_slice(&bytes).map_err(|e| {
            Error::other_hint(
                format!("the run record {} is unreadable: {e}", path.display()),
                "the file was edited or damaged; its events.jsonl still tells what happened",
            )
        })?;
        rec.check_version(&path)?;
        Ok(rec)
    }

    /// The events, one JSON value per line. A torn last line (the writer died mid-write) is
    /// skipped; a damaged line elsewhere is kept as a note so nothing is silently lost.
    pub fn read_events(&self) -> Result<Vec<serde_json::Value>> {
        let path = self.events_path();
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io_path("read", &path, e)),
        };
        Ok(parse_events(&text))
    }

    /// Append one event line. A single `write` on an `O_APPEND` file, so concurrent writers do
    /// not interleave within a line.
    pub fn event(
        &self,
        stage: Option<crate::store::record::StageName>,
        event: EventKind,
        data: serde_json::Value,
    ) -> Result<()> {
        self.event_of(self.workstream.as_deref(), stage, event, data)
    }

    /// An event about a workstream (a bundle's events name the workstream they concern).
    pub fn event_of(
        &self,
        workstream: Option<&str>,
        stage: Option<crate::store::record::StageName>,
        event: EventKind,
        data: serde_json::Value,
    ) -> Result<()> {
        let ev = Event {
            ts: ids::now_rfc3339(),
            run_id: &self.id,
            workstream,
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
        for name in ["tmp", "agent-tmp"] {
            let dir = self.path.join(name);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io_path("remove", &dir, e)),
            }
        }
        Ok(())
    }

    /// Take the run's lock, naming this process as its owner.
    pub fn lock(&self) -> Result<lock::RunLock> {
        lock::acquire_run(&self.path.join("lock"), &self.id)
    }

    /// The status to show: a run recorded as running whose owner is gone (killed, machine
    /// rebooted) is interrupted, whatever the record still says.
    pub fn effective_status(&self, rec: &RunRecord) -> record::Status {
        self.effective(rec.status)
    }

    /// What a recorded status means now (see [`RunDir::effective_status`]).
    pub fn effective(&self, status: record::Status) -> record::Status {
        use record::Status;
        match status {
            Status::Running | Status::Pending => match self.liveness() {
                lock::Liveness::Free => Status::Interrupted,
                _ => status,
            },
            s => s,
        }
    }

    /// The fields of the record that `status` lists.
    pub fn read_summary(&self) -> Result<record::RunSummary> {
        let (path, bytes) = self.record_bytes()?;
        let s: record::RunSummary = serde_json::from_slice(&bytes).map_err(|e| {
            Error::other(format!(
                "the run record {} is unreadable: {e}",
                path.display()
            ))
        })?;
        if s.version > record::RECORD_VERSION {
            return Err(Error::usage(format!(
                "{} was written by a newer git-pipeline (record version {})",
                path.display(),
                s.version
            )));
        }
        Ok(s)
    }

    /// Whether the process driving this run is alive.
    pub fn liveness(&self) -> lock::Liveness {
        lock::liveness(&self.path.join("lock"))
    }
}

/// Parse JSONL events, tolerating a torn last line.
pub fn parse_events(text: &str) -> Vec<serde_json::Value> {
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            // The last line of a file the writer did not finish.
            Err(_) if i + 1 == lines.len() && !complete => {}
            Err(e) => out.push(serde_json::json!({"event": "unreadable", "data": {"line": i + 1, "error": e.to_string()}})),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_event_line_is_skipped_and_a_damaged_one_reported() {
        let text = "{\"event\":\"a\"}\n{\"event\":\"b\"}\n{\"event\":\"c\",\"da";
        let ev = parse_events(text);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1]["event"], "b");
        let damaged = parse_events("{\"event\":\"a\"}\nnot json\n{\"event\":\"b\"}\n");
        assert_eq!(damaged.len(), 3);
        assert_eq!(damaged[1]["event"], "unreadable");
    }
}
