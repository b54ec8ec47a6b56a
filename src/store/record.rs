//! The run record (`run.json`): SPEC section 7's object, plus the fields `status`, `show` and
//! `resume` need (current stage, error text, archive ref, scope, times).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::git::{Oid, TreeId};

use crate::error::Exit;
use crate::policy::risk::Risk;
use crate::policy::scope::ScopeRecord;

pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Running,
    Succeeded,
    Failed,
    Interrupted,
    Abandoned,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
            Status::Abandoned => "abandoned",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Abandoned)
    }
}

/// Why a run failed. `setup_failed` (the worktree could not be prepared: a failing checkout
/// filter, an unreachable submodule) is our addition to SPEC's list; see docs/state-machine.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    AgentError,
    Timeout,
    ScopeViolation,
    GateFailed,
    VerifyRejected,
    PlanRejected,
    BreakerTripped,
    MergeConflict,
    SetupFailed,
    /// Something outside the run's worktree changed during a step (docs/security.md).
    Containment,
    /// A git lock file was in the way (another git command, or a stale lock).
    GitLocked,
}

impl Reason {
    pub fn exit(self) -> Exit {
        match self {
            Reason::AgentError
            | Reason::Timeout
            | Reason::BreakerTripped
            | Reason::MergeConflict
            | Reason::Containment
            | Reason::GitLocked => Exit::StageFailure,
            Reason::VerifyRejected | Reason::PlanRejected => Exit::RetriesExhausted,
            Reason::GateFailed => Exit::GateFailure,
            Reason::ScopeViolation => Exit::ScopeViolation,
            Reason::SetupFailed => Exit::Usage,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reason::AgentError => "agent_error",
            Reason::Timeout => "timeout",
            Reason::ScopeViolation => "scope_violation",
            Reason::GateFailed => "gate_failed",
            Reason::VerifyRejected => "verify_rejected",
            Reason::PlanRejected => "plan_rejected",
            Reason::BreakerTripped => "breaker_tripped",
            Reason::MergeConflict => "merge_conflict",
            Reason::SetupFailed => "setup_failed",
            Reason::Containment => "containment",
            Reason::GitLocked => "git_locked",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageStatus {
    Pass,
    Fail,
    Skip,
}

/// A step of a run, by the name records and events give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageName {
    /// The `[agents.router]` agent classifying the task's risk.
    Routing,
    Discovery,
    Planning,
    Execution,
    Gates,
    Verification,
    Docs,
    Ship,
}

impl StageName {
    pub fn name(self) -> &'static str {
        match self {
            StageName::Routing => "routing",
            StageName::Discovery => "discovery",
            StageName::Planning => "planning",
            StageName::Execution => "execution",
            StageName::Gates => "gates",
            StageName::Verification => "verification",
            StageName::Docs => "docs",
            StageName::Ship => "ship",
        }
    }
}

impl std::fmt::Display for StageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: StageName,
    pub status: StageStatus,
    pub attempt: u32,
    pub session_id: Option<String>,
    pub agent: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub tokens: u64,
    pub tokens_estimated: bool,
    pub cost_usd: Option<f64>,
    /// Credits of a CLI that bills in credits (droid), never converted to dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<f64>,
    pub error: Option<String>,
    /// Why a stage was skipped, or what it produced ("3 paths changed").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Which CLI ran for which role, and the model it reported: what attestations and
    /// `Assisted-by` trailers name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_info: Option<AgentInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub role: String,
    /// The preset, or the program's file name.
    pub cli: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateRecord {
    pub name: String,
    pub status: StageStatus,
    pub attempt: u32,
    pub duration_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verification {
    pub rounds: u32,
    pub approved: bool,
    pub issues: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub total_time_s: f64,
    pub tokens: u64,
    pub fix_attempts: u32,
    pub verification_rounds: u32,
    pub stages_executed: u32,
    pub stages_skipped: u32,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<f64>,
    /// Builder attempts whose changes went outside the scope.
    #[serde(default)]
    pub scope_violations: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub version: u32,
    pub run_id: String,
    pub task: String,
    pub risk: Risk,
    pub risk_reasons: Vec<String>,
    pub status: Status,
    pub reason: Option<Reason>,
    pub exit_code: Option<i32>,
    pub base: Oid,
    pub branch: String,
    pub commit: Option<Oid>,
    pub worktree: Option<PathBuf>,
    /// The worktree folder's device and inode when the run made it: a folder or symlink put in
    /// its place is never entered, reset or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree_identity: Option<(u64, u64)>,
    /// Each submodule's remote-tracking tips and URL when the worktree was made, before any
    /// agent ran: a gitlink ships only to a commit those tips or that remote contain.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub submodule_origins: BTreeMap<String, crate::git::submodules::Origin>,
    pub rolled_back: bool,
    pub stages: Vec<StageRecord>,
    pub changed_paths: Vec<String>,
    pub gates: Vec<GateRecord>,
    pub verification: Verification,
    pub metrics: Metrics,
    /// The step running now (`execution`, `gates`, `verification`, `ship`...).
    pub stage: Option<StageName>,
    /// One line saying why the run failed, for people.
    pub error: Option<String>,
    /// What the user typed as base (`HEAD`, a branch...), resolved into `base`.
    pub base_ref: String,
    /// `refs/pipeline/archive/<run-id>` once a rolled-back run's work was saved.
    pub archive: Option<String>,
    pub scope: ScopeRecord,
    pub created_at: String,
    pub ended_at: Option<String>,
    /// For `ship = "merge"`: what happened to the base branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<String>,
    /// Files kept in the run folder: `spec`, `plan`, `manifest` (paths relative to it).
    #[serde(default)]
    pub artifacts: std::collections::BTreeMap<String, String>,
    /// What `resume` needs to continue exactly where the run stopped.
    #[serde(default)]
    pub resume: ResumeState,
    /// The bundle this run is a workstream of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    /// The bundle this run's approved plan split the task into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_into: Option<String>,
    /// A best-of-N run's candidates (each a run of its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateRecord>,
    /// The best-of-N run this run is a candidate of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_of: Option<CandidateRef>,
    /// The OS sandbox every agent and gate step of the run ran in, in words ("landlock ABI 7,
    /// fully enforced", "off (run.sandbox = \"off\")").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// A run's place among the candidates of a best-of-N run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CandidateRef {
    pub parent: String,
    pub index: u32,
}

/// Where a candidate of a best-of-N run is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CandidateState {
    Building,
    /// Passed scope and gates, waiting for the verifier.
    Ready,
    Chosen,
    /// Another was chosen, or all were rejected.
    Dropped,
    Failed,
    Interrupted,
}

impl CandidateState {
    pub fn name(self) -> &'static str {
        match self {
            CandidateState::Building => "building",
            CandidateState::Ready => "ready",
            CandidateState::Chosen => "chosen",
            CandidateState::Dropped => "dropped",
            CandidateState::Failed => "failed",
            CandidateState::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for CandidateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // pad, not write_str: `show` aligns it in a column.
        f.pad(self.name())
    }
}

/// One candidate of a best-of-N run, as its parent sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CandidateRecord {
    pub index: u32,
    pub run_id: String,
    /// The builder it used.
    pub agent: String,
    pub state: CandidateState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeId>,
}

/// The fields `status` lists, read without the rest of a record (stages, gates, outputs): with
/// thousands of runs, most of the time went into building what was not shown.
#[derive(Debug, Clone, Deserialize)]
pub struct RunSummary {
    pub version: u32,
    pub run_id: String,
    pub task: String,
    pub status: Status,
    pub reason: Option<Reason>,
    pub stage: Option<StageName>,
    pub branch: String,
    pub commit: Option<Oid>,
    pub worktree: Option<PathBuf>,
    pub rolled_back: bool,
    pub created_at: String,
    pub ended_at: Option<String>,
    #[serde(default)]
    pub bundle: Option<BundleRef>,
    #[serde(default)]
    pub candidate_of: Option<CandidateRef>,
    /// The bundle its approved plan became, when it split the task.
    #[serde(default)]
    pub split_into: Option<String>,
}

/// A run's place in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleRef {
    pub id: String,
    pub workstream: String,
}

/// What the user asked for, kept so that a resumed run is planned the same way.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArgsRecord {
    pub scope: Vec<String>,
    pub create: Vec<String>,
    pub agents: Vec<String>,
    pub risk: Option<Risk>,
    pub stage: Option<String>,
    pub keep: bool,
    /// For a reverify run: the commit being checked.
    pub reverify: Option<String>,
    /// A workstream's own gates (by name), when it names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    /// `--candidates N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_of: Option<CandidateRef>,
}

/// The last point a run reached, written before and after each step that changes the worktree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Checkpoint {
    /// The builder was started for this attempt (and may not have finished).
    Builder { attempt: u32 },
    /// The builder finished this attempt; scope, gates and verification come next.
    Built { attempt: u32 },
    /// The verifier approved this tree; docs and ship come next.
    Approved { tree: TreeId },
    /// `git commit` made this commit; the attestation and cleanup come next.
    Committed { commit: Oid, tree: TreeId },
}

impl Checkpoint {
    /// Where a resumed run goes on, in words.
    pub fn describe(&self) -> String {
        let short = |id: &str| id[..id.len().min(12)].to_owned();
        match self {
            Checkpoint::Builder { attempt } => {
                format!("builder attempt {attempt} was running: it runs again")
            }
            Checkpoint::Built { attempt } => {
                format!("builder attempt {attempt} finished: scope, gates and verification next")
            }
            Checkpoint::Approved { tree } => {
                format!("tree {} was approved: docs and ship next", short(tree))
            }
            Checkpoint::Committed { commit, .. } => {
                format!(
                    "commit {} was made: attestation and cleanup next",
                    short(commit)
                )
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sessions {
    pub plan: String,
    pub execution: String,
    pub verification: String,
    pub docs: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResumeState {
    pub args: ArgsRecord,
    pub checkpoint: Option<Checkpoint>,
    pub sessions: Sessions,
    /// Builder attempts started, fix attempts spent, verifier rejections and runs.
    pub attempt: u32,
    pub fixes: u32,
    pub rejections: u32,
    pub verifier_runs: u32,
    /// What the builder is told on its next attempt.
    pub feedback: Option<String>,
    pub why_again: String,
    /// The circuit breakers' memory: error signatures with their counts, and attempt trees.
    pub error_counts: Vec<(u64, u32)>,
    pub attempt_trees: Vec<(u32, TreeId)>,
    /// The tree of the last snapshot: a recreated worktree is filled from it.
    pub snapshot_tree: Option<TreeId>,
    /// The CLI session each agent candidate got for a run session, keyed `<agent>#<n>:<session>`:
    /// a later use resumes it. The first agent of a run session gets that session's id; any other
    /// gets a fresh one, so two agents never share one CLI conversation.
    #[serde(default)]
    pub agent_sessions: std::collections::BTreeMap<String, String>,
    /// Best-of-N: the candidate the verifier chose, recorded (and its tree archived on the
    /// candidate's archive ref) before the candidate is told, so a resume ships exactly it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<u32>,
}

impl RunRecord {
    /// Refuse records written by a newer git-pipeline instead of misreading them.
    pub fn check_version(&self, path: &std::path::Path) -> Result<(), Error> {
        if self.version > RECORD_VERSION {
            return Err(Error::usage_hint(
                format!(
                    "{} was written by a newer git-pipeline (record version {}; this one reads {RECORD_VERSION})",
                    path.display(),
                    self.version
                ),
                "upgrade git-pipeline to read it",
            ));
        }
        Ok(())
    }
}
