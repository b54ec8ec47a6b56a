//! git-pipeline: run AI coding agents through a gated pipeline in isolated git worktrees.
//!
//! Layers, top to bottom (see docs/architecture.md):
//! - `cli`, `commands`: parse arguments, print results, map errors to exit codes;
//! - `pipeline`: the run driver (state machine) and its stages: execution, scope check, gates,
//!   verification, ship, rollback;
//! - `agent`, `process`, `childenv`: how agents and gates are started, stopped and read;
//! - `scope`, `risk`, `attest`, `config`: policy;
//! - `git`: every git command, in one audited place;
//! - `store`: run records, events and locks under `.git/pipeline/`.

pub mod agent;
pub mod attest;
pub mod bundle;
pub mod cleanup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod fanout;
pub mod files;
pub mod gates;
pub mod git;
pub mod globs;
pub mod ids;
pub mod plan;
pub mod platform;
pub mod policy;
pub mod preset;
pub mod process_end;
pub mod redact;
pub mod run;
pub mod safety;
pub mod sandbox;
pub mod store;
pub mod text;
pub mod ui;
