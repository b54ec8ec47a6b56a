//! The kinds of event a run writes to its `events.jsonl`, by the names on disk.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Abandoned,
    /// What an agent is doing now (its last tool call or message), from the events it streams.
    AgentActivity,
    AgentExited,
    Blocked,
    BreakerTripped,
    BundleFinished,
    BundleStarted,
    CandidateChosen,
    CandidateStarted,
    ContainmentBreach,
    GateFinished,
    Integrated,
    Interrupted,
    NotIntegrated,
    OutsideChanges,
    PlanRejected,
    Resumed,
    /// The router agent's classification of the task, and the risk the run goes on with.
    Routed,
    RollbackFailed,
    RolledBack,
    RunStarted,
    ScopeChecked,
    /// A `[[setup]]` step ran, or was skipped because its files had not changed.
    SetupFinished,
    Shipped,
    /// Another run took this stopped run's worktree slot, after archiving its state.
    SlotTaken,
    Split,
    StageFinished,
    StageStarted,
    StoppedProcesses,
    Verdict,
    WorkstreamFinished,
    WorkstreamStarted,
    WorktreeReady,
}
