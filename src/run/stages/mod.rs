//! The stages of a run, one module each, all acting on the run's state ([`super::state::Run`]).

pub mod best_of;
pub mod discovery;
pub mod docs;
pub mod execution;
pub mod planning;
pub mod reverify;
pub mod rollback;
pub mod routing;
pub mod setup_steps;
pub mod ship;
pub mod verification;
