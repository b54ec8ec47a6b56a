//! Keeping agents and gates in their place: how their processes are started, stopped and
//! environment-scrubbed, the checkout watch, and containment (fingerprints before and after every
//! step, with what they changed outside the worktree put back).

pub mod childenv;
pub mod containment;
pub mod process;
pub mod records;
pub mod reread;
pub mod watch;
