//! The links a best-of-N run's plan carries: a candidate inherits its parent's discovery and
//! planning, and hands its work to the parent's judge.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};

use crate::store::record::GateRecord;

/// What a candidate starts from: its parent's discovery findings, plan and manifest.
#[derive(Debug, Clone)]
pub struct Inherited {
    pub parent_dir: PathBuf,
    pub artifacts: BTreeMap<String, String>,
}

/// Where a candidate hands in its work.
#[derive(Clone)]
pub struct Judge {
    pub(crate) tx: mpsc::UnboundedSender<Submission>,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Judge")
    }
}

/// A candidate's work, ready for the verifier.
pub struct Submission {
    pub index: u32,
    pub agent: String,
    pub worktree: PathBuf,
    pub tree: crate::git::TreeId,
    pub changed_paths: Vec<String>,
    pub patch: Vec<u8>,
    pub gates: Vec<GateRecord>,
    pub(crate) reply: oneshot::Sender<Decision>,
}

/// What the parent decides about a candidate's work.
pub enum Decision {
    Chosen,
    /// Every candidate rejected, with the verifier's issues.
    Rejected(Vec<String>),
    Dropped(String),
}
