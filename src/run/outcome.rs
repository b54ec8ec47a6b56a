//! How a run ends: the [`Ending`] the stages reach, and the [`Outcome`] handed to the commands.

use std::path::PathBuf;

use crate::error::Exit;
use crate::store::record::{Reason, RunRecord, Status};

/// How a run ended, before its record is finalised.
pub(crate) enum Ending {
    Shipped,
    /// The approved plan is a bundle of workstreams: nothing is built here; the bundle runs.
    Split(crate::bundle::spec::Bundle),
    /// A candidate of a best-of-N run was chosen: its parent ships its tree.
    Chosen,
    /// A candidate that was not chosen: rolled back, its work archived.
    Dropped(String),
    Failed {
        reason: Reason,
        message: String,
        details: Vec<String>,
    },
    Interrupted,
    /// Stopped by something outside the work that clears up (a git lock file in the way): kept
    /// like an interrupted run, so that `resume` continues where it stopped, with the reason.
    Stopped {
        reason: Reason,
        message: String,
        details: Vec<String>,
    },
}

impl Ending {
    pub(crate) fn failed(reason: Reason, message: impl Into<String>) -> Ending {
        Ending::Failed {
            reason,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

/// The finished run: its record, and detail lines for the user (violations, gate output...).
pub struct Outcome {
    pub record: RunRecord,
    pub details: Vec<String>,
    pub dir: PathBuf,
    /// The bundle the run's plan split the task into, to run next.
    pub split: Option<crate::bundle::spec::Bundle>,
}

impl Outcome {
    pub fn exit(&self) -> Exit {
        exit_of(&self.record)
    }
}

/// The exit code a run's record stands for (SPEC section 3).
pub fn exit_of(rec: &RunRecord) -> Exit {
    match (rec.status, rec.reason) {
        (Status::Succeeded, _) => Exit::Success,
        // Stopped for a reason (a lock in the way): that reason's code; by a signal: 130.
        (Status::Interrupted, Some(r)) => r.exit(),
        (Status::Interrupted, None) => Exit::Interrupted,
        (_, Some(r)) => r.exit(),
        _ => Exit::StageFailure,
    }
}
