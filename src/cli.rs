//! The command line. `main.rs` parses it; `commands::dispatch` acts on it.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::risk::Risk;

#[derive(Debug, Parser)]
#[command(
    name = "git-pipeline",
    bin_name = "git pipeline",
    version,
    about = "Run AI coding agents through a gated pipeline in isolated git worktrees",
    long_about = "Run AI coding agents through a gated pipeline in isolated git worktrees.\n\n\
        Each run gets its own worktree and branch; the builder's changes are checked against the \
        run's file scope, then gates (lint, types, tests), then an independent verifier. Approved \
        work is committed with an attestation; anything else is rolled back, its work archived."
)]
pub struct Cli {
    /// Run as if git-pipeline was started in DIR
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,

    /// More diagnostics on stderr (-v: debug, -vv: trace); GIT_PIPELINE_LOG overrides
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// No progress lines; only results and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive one task through the pipeline in its own worktree
    Run(RunCmd),
    /// List runs with their state, newest first
    Status(StatusCmd),
    /// Show one run: stages, attempts, gates, verdicts, metrics, paths
    Show(ShowCmd),
    /// Write a commented starter .pipeline.toml
    Init(InitCmd),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RiskArg {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StageArg {
    Discovery,
    Planning,
    Execution,
}

impl From<StageArg> for crate::pipeline::plan::Stage {
    fn from(s: StageArg) -> Self {
        use crate::pipeline::plan::Stage;
        match s {
            StageArg::Discovery => Stage::Discovery,
            StageArg::Planning => Stage::Planning,
            StageArg::Execution => Stage::Execution,
        }
    }
}

impl From<RiskArg> for Risk {
    fn from(r: RiskArg) -> Risk {
        match r {
            RiskArg::Low => Risk::Low,
            RiskArg::Medium => Risk::Medium,
            RiskArg::High => Risk::High,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunCmd {
    /// What to do; `-` reads it from stdin
    #[arg(value_name = "TASK", allow_hyphen_values = false)]
    pub task: Option<String>,

    /// Read the task from a file
    #[arg(long, value_name = "FILE")]
    pub task_file: Option<PathBuf>,

    /// Existing paths the run may modify or delete (repeatable; replaces scope.allow)
    #[arg(long = "scope", value_name = "GLOB")]
    pub scope: Vec<String>,

    /// Where the run may add files (repeatable; replaces scope.create)
    #[arg(long = "create", value_name = "GLOB")]
    pub create: Vec<String>,

    /// Commit to start from [default: run.base, else HEAD]
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,

    /// Keep the worktree and branch of a failed run for inspection
    #[arg(long)]
    pub keep: bool,

    /// Override the risk router (low starts at execution, medium at planning, high at discovery)
    #[arg(long, value_enum)]
    pub risk: Option<RiskArg>,

    /// Start at this stage, whatever the risk
    #[arg(long, value_enum)]
    pub stage: Option<StageArg>,

    /// Use the configured agent NAME for ROLE (repeatable), e.g. builder=codex
    #[arg(long = "agent", value_name = "ROLE=NAME")]
    pub agent: Vec<String>,

    /// Show what would run and create nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusCmd {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowCmd {
    /// Run id or a unique prefix of one
    #[arg(value_name = "RUN")]
    pub run: String,

    /// Print the run's JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitCmd {
    /// Overwrite an existing .pipeline.toml
    #[arg(long)]
    pub force: bool,
}
