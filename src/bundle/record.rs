//! `bundle.json`: the state of a bundle run, next to its workstreams' own run records. It lives in
//! `.git/pipeline/runs/<bundle-id>/`, so a bundle id works wherever a run id does (`show`,
//! `events`, `resume`, `abandon`), and is replaced atomically like `run.json`.

use serde::{Deserialize, Serialize};

use crate::error::Error;

use crate::error::Exit;

use crate::error::Result;
use crate::store::record::Reason;

pub const BUNDLE_RECORD: &str = "bundle.json";
/// The bundle as validated when it started: resume reads this, never the user's file again.
pub const BUNDLE_INPUT: &str = "input.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleStatus {
    Running,
    /// Every workstream shipped and was merged onto the integration branch.
    Completed,
    /// Some did, some did not.
    Partial,
    /// None did.
    Failed,
    Interrupted,
    Abandoned,
}

impl BundleStatus {
    pub fn name(self) -> &'static str {
        match self {
            BundleStatus::Running => "running",
            BundleStatus::Completed => "completed",
            BundleStatus::Partial => "partial",
            BundleStatus::Failed => "failed",
            BundleStatus::Interrupted => "interrupted",
            BundleStatus::Abandoned => "abandoned",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            BundleStatus::Completed
                | BundleStatus::Partial
                | BundleStatus::Failed
                | BundleStatus::Abandoned
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsState {
    /// Waiting for its dependencies, or for a free job.
    Pending,
    Running,
    /// Shipped and merged onto the integration branch.
    Succeeded,
    Failed,
    /// Will not run: a dependency failed or was blocked, or its result conflicts.
    Blocked,
    /// Stopped by Ctrl-C or a crash; `resume` continues it.
    Interrupted,
}

impl WsState {
    pub fn name(self) -> &'static str {
        match self {
            WsState::Pending => "pending",
            WsState::Running => "running",
            WsState::Succeeded => "succeeded",
            WsState::Failed => "failed",
            WsState::Blocked => "blocked",
            WsState::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WsRecord {
    pub id: String,
    pub task: String,
    pub depends_on: Vec<String>,
    pub state: WsState,
    /// Its run, once started.
    pub run_id: Option<String>,
    /// The commit it started from: the bundle's base, or the merge of its dependencies.
    pub base: Option<crate::git::Oid>,
    pub branch: Option<String>,
    pub commit: Option<crate::git::Oid>,
    pub reason: Option<Reason>,
    /// Why it failed or is blocked, in one line.
    pub error: Option<String>,
    /// The workstream whose failure blocks this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<String>,
    /// Paths that conflict when its result is merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Its commit is on the integration branch.
    #[serde(default)]
    pub integrated: bool,
    #[serde(default)]
    pub tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleRecord {
    pub version: u32,
    pub kind: String,
    pub bundle_id: String,
    /// The file or folder it was read from.
    pub source: String,
    pub status: BundleStatus,
    pub exit_code: Option<i32>,
    pub base: crate::git::Oid,
    pub base_ref: String,
    pub integration_branch: String,
    /// The integration branch's commit when the bundle ended.
    pub integration_commit: Option<crate::git::Oid>,
    pub jobs: usize,
    pub workstreams: Vec<WsRecord>,
    pub created_at: String,
    pub ended_at: Option<String>,
    pub total_time_s: f64,
    /// The run arguments every workstream shares (agents, keep), for resume.
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub keep: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::policy::risk::Risk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The run whose planner split its task into this bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run: Option<String>,
}

impl BundleRecord {
    /// The exit code the bundle's state stands for: 0 only when every workstream shipped.
    /// Otherwise the code of the first failed workstream's reason, 1 when only conflicts or
    /// blocks stopped it, 130 when interrupted.
    pub fn exit(&self) -> Exit {
        match self.status {
            BundleStatus::Completed => Exit::Success,
            BundleStatus::Interrupted | BundleStatus::Running => Exit::Interrupted,
            _ => self
                .workstreams
                .iter()
                .find(|w| w.state == WsState::Failed)
                .and_then(|w| w.reason)
                .map_or(Exit::StageFailure, Reason::exit),
        }
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for w in &self.workstreams {
            match w.state {
                WsState::Succeeded => c.succeeded += 1,
                WsState::Failed => c.failed += 1,
                WsState::Blocked => c.blocked += 1,
                WsState::Running => c.running += 1,
                WsState::Pending => c.pending += 1,
                WsState::Interrupted => c.interrupted += 1,
            }
        }
        c
    }

    pub fn tokens(&self) -> u64 {
        self.workstreams.iter().map(|w| w.tokens).sum()
    }

    pub fn cost(&self) -> Option<f64> {
        let costs: Vec<f64> = self.workstreams.iter().filter_map(|w| w.cost_usd).collect();
        (!costs.is_empty()).then(|| costs.iter().sum())
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: usize,
    pub failed: usize,
    pub blocked: usize,
    pub running: usize,
    pub pending: usize,
    pub interrupted: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.succeeded, "succeeded"),
            (self.running, "running"),
            (self.pending, "pending"),
            (self.failed, "failed"),
            (self.blocked, "blocked"),
            (self.interrupted, "interrupted"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        f.write_str(&parts.join(", "))
    }
}

/// Whether a run folder holds a bundle rather than a run.
pub fn is_bundle(dir: &std::path::Path) -> bool {
    dir.join(BUNDLE_RECORD).is_file() && !dir.join("run.json").exists()
}

pub fn read(dir: &std::path::Path) -> Result<BundleRecord> {
    let path = dir.join(BUNDLE_RECORD);
    let bytes = std::fs::read(&path).map_err(|e| Error::io_path("read", &path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::other_hint(
            format!("the bundle record {} is unreadable: {e}", path.display()),
            "the file was edited or damaged; its events.jsonl still tells what happened",
        )
    })
}

pub fn write(dir: &std::path::Path, rec: &BundleRecord) -> Result<()> {
    let json = serde_json::to_string_pretty(rec)
        .map_err(|e| Error::other(format!("cannot encode the bundle record: {e}")))?;
    crate::store::atomic::write(&dir.join(BUNDLE_RECORD), format!("{json}\n").as_bytes())
}
