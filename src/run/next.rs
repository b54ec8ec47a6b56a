//! The run's state machine in one type: every step of a run answers with a [`Next`]. The driver
//! (`run/mod.rs` for the stages, `stages/execution.rs` for the fix loop) reads it; a step never
//! decides by itself what a retry costs or when the loop gives up.
//!
//! ```text
//!   step ──► Continue(value) ──► the next step
//!        ──► Retry(Again)    ──► back to the builder (a fix attempt or a new round), unless a
//!                                cap or a circuit breaker ends the run
//!        ──► End(Ending)     ──► the run ends (shipped, failed, interrupted, split, ...)
//! ```

use crate::run::outcome::Ending;

/// What a step of the run decides.
#[must_use]
pub(crate) enum Next<T = ()> {
    /// Go on, with what the step produced.
    Continue(T),
    /// The work goes back to the builder.
    Retry(Again),
    /// The run ends here.
    End(Ending),
}

/// Why the work goes back to the builder, and what it is told.
pub(crate) enum Again {
    /// The scope check, a gate or the commit hook refused it: a fix attempt, counted against
    /// `run.max_fix_attempts`.
    Fix(Fix),
    /// The verifier (or the plan's reviewer) rejected it: a new round, counted against
    /// `verify.max_rounds`.
    Rejected { issues: Vec<String> },
}

impl Again {
    /// What the builder (or planner) is to address, as issue lines.
    pub(crate) fn into_issues(self) -> Vec<String> {
        match self {
            Again::Rejected { issues } => issues,
            Again::Fix(fix) => vec![fix.why],
        }
    }
}

pub(crate) struct Fix {
    /// What refused: "scope", "gate lint", "the commit hook".
    pub what: String,
    /// For the progress line: "gate lint failed".
    pub why: String,
    /// What the builder is told.
    pub feedback: String,
    /// What the refusal printed, for the same-error circuit breaker (`None`: not compared).
    pub output: Option<String>,
    /// How the run ends when no fix attempt is left.
    pub exhausted: Ending,
}

/// Take a step's value, or hand its `Retry`/`End` up to the caller.
macro_rules! proceed {
    ($step:expr) => {
        match $step {
            $crate::run::next::Next::Continue(v) => v,
            $crate::run::next::Next::Retry(a) => return Ok($crate::run::next::Next::Retry(a)),
            $crate::run::next::Next::End(e) => return Ok($crate::run::next::Next::End(e)),
        }
    };
}
pub(crate) use proceed;
