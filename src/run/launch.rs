//! How a run starts other runs (a best-of-N parent its candidates) without the run driver
//! depending on fan-out: the caller hands in a [`Launch`], and `fanout::threads` is the one
//! that starts each run on a thread of its own.

use std::path::PathBuf;

use crate::error::Result;
use crate::plan::RunPlan;
use crate::plan::links::Judge;
use crate::run::outcome::Outcome;
use crate::safety::process::Cancel;
use crate::store::RunDir;
use crate::ui::Ui;

/// What a launched run does: a fresh run in a folder made for it, or an interrupted one resumed
/// (found from `cwd`), a candidate's with its judge.
pub enum Work {
    Fresh(Box<RunPlan>, RunDir),
    Resume {
        cwd: PathBuf,
        dir: RunDir,
        judge: Option<Judge>,
    },
}

/// Gets a launched run's outcome, on the thread it ran on.
pub type Done = Box<dyn FnOnce(Result<Outcome>) + Send>;

/// Starts runs apart from the caller's; `done` is called with each one's outcome.
pub trait Launch: Sync {
    fn launch(&self, name: String, work: Work, ui: Ui, cancel: Cancel, done: Done) -> Result<()>;
}
