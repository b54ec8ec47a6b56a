//! The command line. `main.rs` parses it; `commands::dispatch` acts on it.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::policy::risk::Risk;

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

    /// Colour progress on a terminal (NO_COLOR is honoured with auto)
    #[arg(long, value_enum, value_name = "WHEN", default_value_t, global = true)]
    pub color: crate::ui::ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive one task through the pipeline in its own worktree (or a bundle of them)
    Run(RunCmd),
    /// Check a bundle of workstreams and show its DAG and order; creates nothing
    Plan(PlanCmd),
    /// List runs with their state, newest first
    Status(StatusCmd),
    /// Show one run: stages, attempts, gates, verdicts, metrics, paths
    Show(ShowCmd),
    /// Write a commented starter .pipeline.toml
    Init(InitCmd),
    /// Check commits for valid attestations (what the hooks run; CI can too)
    Verify(VerifyCmd),
    /// Manage the pre-push hook that refuses unattested commits
    Hooks(HooksCmd),
    /// Run a git hook's check (called by the installed hooks; see docs/hooks.md)
    Hook(HookCmd),
    /// Check an existing commit (scope against its parent, gates, verifier) and attest it
    Reverify(ReverifyCmd),
    /// Continue an interrupted run from where it stopped
    Resume(RunRef),
    /// Stop a run for good: its work archived, its worktree and branch removed, its record kept
    Abandon(RunRef),
    /// Remove what finished, abandoned, crashed and old interrupted runs left behind
    Clean(CleanCmd),
    /// A run's event log
    Events(EventsCmd),
    /// Numbers over all recorded runs
    Stats(StatsCmd),
    /// Trust this repository's .pipeline.toml (by content) so that its commands may run
    Trust(TrustCmd),
    /// Check config, agents, gates, trust, hooks and the worktree folder; say what to fix
    Doctor(DoctorCmd),
    /// Write the git-pipeline(1) man pages (what `git pipeline --help` opens)
    Man(ManCmd),
    /// Print shell completions (bash, zsh, fish)
    Completions(CompletionsCmd),
}

impl Command {
    /// Whether the caller asked for JSON: an error before any result is then a JSON object on
    /// stdout too, so that a script reading stdout never gets nothing.
    pub fn wants_json(&self) -> bool {
        match self {
            Command::Run(c) => c.json,
            Command::Plan(c) => c.json,
            Command::Status(c) => c.json,
            Command::Show(c) => c.json,
            Command::Verify(c) => c.json,
            Command::Reverify(c) => c.json,
            Command::Resume(c) | Command::Abandon(c) => c.json,
            Command::Clean(c) => c.json,
            Command::Events(c) => c.json,
            Command::Stats(c) => c.json,
            Command::Doctor(c) => c.json,
            _ => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorCmd {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ManCmd {
    /// Folder to write git-pipeline.1 and a page per subcommand into (e.g.
    /// ~/.local/share/man/man1); without it, the main page goes to stdout
    #[arg(value_name = "DIR")]
    pub folder: Option<std::path::PathBuf>,
    /// Write them beside the binary (`<prefix>/bin/git-pipeline` -> `<prefix>/share/man/man1`),
    /// where man finds them without MANPATH; every command does this once per version
    #[arg(long, conflicts_with = "folder")]
    pub install: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsCmd {
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct TrustCmd {
    /// The commit whose .pipeline.toml to trust
    #[arg(long, value_name = "REF", default_value = "HEAD")]
    pub base: String,
}

#[derive(Debug, Args)]
pub struct RunRef {
    /// Run id or a unique prefix of one
    #[arg(value_name = "RUN")]
    pub run: String,

    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CleanCmd {
    /// List what would be removed, and remove nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,

    /// Abandon interrupted runs older than this (e.g. 7d, 12h)
    #[arg(long, value_name = "AGE", default_value = "7d")]
    pub older_than: String,

    /// Abandon every interrupted run, whatever its age
    #[arg(long)]
    pub all: bool,

    /// Also remove idle worktree slots, with their build caches
    #[arg(long)]
    pub slots: bool,

    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EventsCmd {
    /// Run id or a unique prefix of one
    #[arg(value_name = "RUN")]
    pub run: String,

    /// Keep printing new events until the run ends
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// Print the raw JSON lines
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsCmd {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReverifyCmd {
    /// The commit to check (work done by hand, or rebased)
    #[arg(value_name = "REV")]
    pub rev: String,

    /// Use the configured agent NAME for ROLE (repeatable), e.g. verifier=codex
    #[arg(long = "agent", value_name = "ROLE=NAME")]
    pub agent: Vec<String>,

    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyCmd {
    /// Commits to check (default: the current branch's commits not on its upstream)
    #[arg(value_name = "RANGE")]
    pub range: Vec<String>,

    /// Refuse attestations without a signature that verifies (SSH: against
    /// gpg.ssh.allowedSignersFile; OpenPGP: the gpg keyring). Also on with git config
    /// pipeline.requireSignature = true
    #[arg(long)]
    pub require_signature: bool,

    /// Fetch REMOTE's refs/notes/pipeline first and judge by its notes and the local ones
    #[arg(long, value_name = "REMOTE")]
    pub fetch: Option<String>,

    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HooksCmd {
    #[command(subcommand)]
    pub action: HooksAction,
}

#[derive(Debug, Subcommand)]
pub enum HooksAction {
    /// Install the pre-push hook (an existing hook is kept and runs first)
    Install {
        /// Also make `git push` and `git fetch` carry refs/notes/pipeline for each remote
        #[arg(long)]
        notes: bool,
        /// With --notes: only this remote (default: every remote)
        #[arg(long, value_name = "NAME", requires = "notes")]
        remote: Option<String>,
    },
    /// Remove the pre-push hook and put back the one it replaced
    Uninstall {
        /// Also remove the notes refspecs `install --notes` added
        #[arg(long)]
        notes: bool,
    },
    /// Say what is installed where
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct HookCmd {
    #[command(subcommand)]
    pub kind: HookKind,
}

#[derive(Debug, Subcommand)]
pub enum HookKind {
    /// git's pre-push hook: reads `<local ref> <local oid> <remote ref> <remote oid>` lines
    PrePush {
        /// The remote's name (git passes it)
        remote: Option<String>,
        /// The remote's URL (git passes it; never printed)
        url: Option<String>,
    },
    /// A server's pre-receive hook: reads `<old oid> <new oid> <ref>` lines
    PreReceive,
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

impl From<StageArg> for crate::plan::Stage {
    fn from(s: StageArg) -> Self {
        use crate::plan::Stage;
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
pub struct PlanCmd {
    /// The bundle: a JSON file, or a folder of one-workstream JSON files
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Check scopes against the files of this commit [default: run.base, else HEAD]
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,

    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunCmd {
    /// What to do; `-` reads it from stdin
    #[arg(value_name = "TASK", allow_hyphen_values = false)]
    pub task: Option<String>,

    /// Read the task from a file
    #[arg(long, value_name = "FILE")]
    pub task_file: Option<PathBuf>,

    /// Run a bundle of workstreams (a JSON file, or a folder of them) as a DAG of runs
    #[arg(long, value_name = "PATH", conflicts_with_all = ["task", "task_file", "scope", "create"])]
    pub bundle: Option<PathBuf>,

    /// With --bundle: how many workstreams run at once [default: the CPUs, at most 4]
    #[arg(long, short = 'j', value_name = "N", requires = "bundle")]
    pub jobs: Option<usize>,

    /// Build N candidates in parallel worktrees; the verifier ships the best that passes its
    /// gates (builders: each --agent builder=NAME in turn, else the configured one)
    #[arg(long, value_name = "N", conflicts_with = "bundle")]
    pub candidates: Option<u32>,

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

    /// A scope glob that matches no file at the base is an error, not a warning
    #[arg(long)]
    pub strict: bool,

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
