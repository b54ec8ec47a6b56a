//! Runs on threads of their own: a bundle's workstreams and a best-of-N run's candidates. Each
//! gets a current-thread runtime: git commands are synchronous processes, so runs sharing one
//! runtime would wait on each other's `git add`; apart, each waits only on its own processes.

use crate::error::{Error, Result};
use crate::run::launch::{Done, Launch, Work};
use crate::run::outcome::Outcome;
use crate::run::{execute_in, resume};
use crate::safety::process::Cancel;
use crate::ui::Ui;

/// The [`Launch`] every command hands to the runs it starts: one thread per run.
pub struct Threads;

impl Launch for Threads {
    fn launch(&self, name: String, work: Work, ui: Ui, cancel: Cancel, done: Done) -> Result<()> {
        spawn(name, work, ui, cancel, done)
    }
}

/// Start `work` on a new thread; `done` gets its outcome there.
pub fn spawn(
    name: String,
    work: Work,
    ui: Ui,
    cancel: Cancel,
    done: impl FnOnce(Result<Outcome>) + Send + 'static,
) -> Result<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || done(run(work, &ui, cancel)))
        .map(|_| ())
        .map_err(|e| Error::io("cannot start a thread for a run", e))
}

fn run(work: Work, ui: &Ui, cancel: Cancel) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    match work {
        Work::Fresh(plan, dir) => runtime.block_on(execute_in(&plan, ui, cancel, dir, &Threads)),
        Work::Resume { cwd, dir, judge } => {
            let (mut plan, dir, rec, lock) = resume::reopen(&cwd, dir, ui)?;
            plan.agents.judge = judge;
            runtime.block_on(resume::resume(&plan, ui, dir, rec, lock, cancel, &Threads))
        }
    }
}
