//! Integration tests: one binary, real git, real processes.

mod architecture;
mod attestations;
mod bundles;
mod candidates;
mod common;

mod config_errors;
mod duplicates;
mod failures;
mod golden;
mod hook_managers;
mod hooks;
mod hostile;
mod loops;
mod recovery;
mod sandbox;
mod slots;
mod stages;
mod stats;
mod user_works;
mod ux;
mod views;
mod worktree_prep;
