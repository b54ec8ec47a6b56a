//! Everything a run needs, resolved and validated before anything is created. `--dry-run` prints
//! this and stops; a real run executes it. Every error here is a usage/config error (exit 3) or a
//! task error (exit 5), and leaves no trace.

pub mod caches;
pub mod links;
pub mod prompts;

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::agent;

use crate::preset::Role;

use crate::agent::RoleAgent;
use crate::config;
use crate::config::GateConfig;
use crate::config::LoadedConfig;
use crate::config::ShipMode;
use crate::error::Error;
use crate::error::Result;
use crate::git::objects;
use crate::git::prepare;
use crate::git::{Oid, Repo, TreeId};
use crate::globs::Globs;
use crate::plan::prompts::Templates;
use crate::policy::risk;
use crate::policy::risk::Assessment;
use crate::policy::risk::Risk;
use crate::policy::scope::Scope;
use crate::store::record::ArgsRecord;

/// The most candidates `--candidates` builds at once.
pub const MAX_CANDIDATES: u32 = 8;

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    pub task: Option<String>,
    pub task_file: Option<PathBuf>,
    pub scope: Vec<String>,
    pub create: Vec<String>,
    pub base: Option<String>,
    pub keep: bool,
    pub agents: Vec<String>,
    pub risk: Option<Risk>,
    pub stage: Option<Stage>,
    /// Only these gates, in this order (a workstream's `gates`).
    pub gates: Option<Vec<String>>,
    /// The bundle this run is a workstream of: it ships on its branch, never merging.
    pub bundle: Option<crate::store::record::BundleRef>,
    /// Build this many candidates in parallel and let the verifier choose (`--candidates`).
    pub candidates: Option<u32>,
    /// This run is a candidate of a best-of-N run.
    pub candidate_of: Option<crate::store::record::CandidateRef>,
    /// A scope glob that matches no file is an error, not a warning (`--strict`).
    pub strict: bool,
}

/// Where a run may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Discovery,
    Planning,
    Execution,
}

impl Stage {
    pub fn parse(s: &str) -> Option<Stage> {
        [Stage::Discovery, Stage::Planning, Stage::Execution]
            .into_iter()
            .find(|x| x.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Discovery => "discovery",
            Stage::Planning => "planning",
            Stage::Execution => "execution",
        }
    }

    /// LOW starts at execution, MEDIUM at planning, HIGH at discovery.
    pub fn for_risk(risk: Risk) -> Stage {
        match risk {
            Risk::Low => Stage::Execution,
            Risk::Medium => Stage::Planning,
            Risk::High => Stage::Discovery,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustState {
    pub blob: Option<String>,
    pub needed: bool,
    pub trusted: bool,
}

impl TrustState {
    /// Refuse to run commands from a config nobody trusted on this machine.
    pub fn require(&self, loaded: &LoadedConfig, base_ref: &str) -> Result<()> {
        if !self.needed || self.trusted {
            return Ok(());
        }
        let commands: Vec<String> = crate::policy::trust::project_commands(loaded)
            .into_iter()
            .map(|(what, argv)| format!("{what}: {argv}"))
            .collect();
        Err(Error::usage_hint(
            format!(
                "this repository's {} (at {base_ref}) is not trusted on this machine; it would run: {}",
                config::PROJECT_FILE,
                commands.join("; ")
            ),
            "read it, then trust it with: git pipeline trust   (git pipeline run --dry-run shows the plan without running anything)",
        ))
    }
}

/// What a run does with its worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Agents build the change, then it is checked and shipped.
    Build,
    /// An existing commit is checked (scope against its parent, gates, verifier) and attested.
    Reverify { commit: Oid, tree: TreeId },
}

/// How the run's agents and gates are sandboxed (`run.sandbox`, `[sandbox]`).
#[derive(Debug, Clone)]
pub struct SandboxPlan {
    pub mode: crate::sandbox::Mode,
    /// What the platform enforces here; `None` when the mode is `off`.
    pub found: Option<crate::sandbox::Availability>,
    /// `sandbox.writable`, expanded.
    pub writable: Vec<PathBuf>,
    pub gate_network: bool,
}

impl SandboxPlan {
    /// Whether steps run sandboxed.
    pub fn active(&self) -> bool {
        self.found.as_ref().is_some_and(|f| f.kind != "none")
    }

    /// In words, for the run's header and record.
    pub fn describe(&self) -> String {
        match (&self.found, self.mode) {
            (_, crate::sandbox::Mode::Off) => "off (run.sandbox = \"off\")".to_owned(),
            (Some(f), _) => f.detail.clone(),
            (None, _) => "none".to_owned(),
        }
    }
}

/// Everything a run needs, resolved and checked before it exists, in five parts.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub target: Target,
    pub agents: Agents,
    pub policy: Policy,
    pub routing: Routing,
    pub landing: Landing,
    /// Things the user should know that do not stop the run.
    pub warnings: Vec<String>,
}

/// What the run works on: the repository, the task and the base.
#[derive(Debug, Clone)]
pub struct Target {
    pub repo: Repo,
    pub mode: Mode,
    /// The arguments as given, kept in the record for `resume`.
    pub args: ArgsRecord,
    pub task: String,
    /// The base commit id, and what the user called it.
    pub base: Oid,
    pub base_ref: String,
    pub base_tree: TreeId,
    /// `refs/heads/<name>` when the base is a branch (for `ship = "merge"`).
    pub base_branch: Option<String>,
    /// The bundle workstream this run is.
    pub bundle: Option<crate::store::record::BundleRef>,
    /// The name git commits as (`git var GIT_COMMITTER_IDENT`), read once: containment marks
    /// each step's ref updates with it.
    pub committer: Option<String>,
}

/// Who works: the agent of each role, their prompt templates, and best-of-N's candidates.
#[derive(Debug, Clone)]
pub struct Agents {
    /// Required to build; a reverify run has no builder.
    pub builder: Option<RoleAgent>,
    pub verifier: RoleAgent,
    pub discovery: Option<RoleAgent>,
    pub planner: Option<RoleAgent>,
    pub reviewer: Option<RoleAgent>,
    pub docs: Option<RoleAgent>,
    /// Classifies the task's risk before any other agent; it may raise the word rules' risk,
    /// never lower it.
    pub router: Option<RoleAgent>,
    pub templates: Templates,
    /// How many candidates to build (1: an ordinary run).
    pub candidates: u32,
    /// A candidate's link to its parent: where to send its work for judging, and where its
    /// parent's discovery and planning results are.
    pub judge: Option<links::Judge>,
    pub inherited: Option<links::Inherited>,
}

/// What holds the run: the config, scope, gates, caps, containment, sandbox and trust.
#[derive(Debug, Clone)]
pub struct Policy {
    pub loaded: LoadedConfig,
    pub scope: Scope,
    /// True when the CLI or the config gave a scope; otherwise an approved plan's manifest
    /// becomes the scope.
    pub user_scope: bool,
    pub deny: Vec<String>,
    pub gates: Vec<GateConfig>,
    /// `[[setup]]` steps, in order.
    pub setup: Vec<crate::config::SetupConfig>,
    pub docs_when: Globs,
    pub docs_paths: Vec<String>,
    pub max_fix_attempts: u32,
    pub max_rounds: u32,
    pub plan_max_rounds: u32,
    pub max_same_error: u32,
    pub oscillation: bool,
    pub containment: crate::safety::containment::Checks,
    pub sandbox: SandboxPlan,
    /// The config's blob id, and whether it must be trusted before it runs anything.
    pub trust: TrustState,
    pub output_bytes: usize,
}

/// How risky the task is, and so where the run starts.
#[derive(Debug, Clone)]
pub struct Routing {
    pub risk: Assessment,
    pub start: Stage,
    pub start_reason: String,
}

/// Where the run's worktree and branch go, and how its result lands.
#[derive(Debug, Clone)]
pub struct Landing {
    pub worktree_root: PathBuf,
    pub branch_prefix: String,
    pub keep_failed: bool,
    pub ship: ShipMode,
    pub include: Vec<String>,
    /// Worktree slots kept for reuse; 0: a new worktree every run.
    pub max_slots: u32,
    /// Ignored folders a reused slot keeps (gitignore patterns).
    pub caches: Vec<String>,
    pub sign: crate::config::SignMode,
    pub trailers: Vec<crate::config::Trailer>,
    pub agent_trace: bool,
}

/// Never read more of a task than this, whatever `limits.max_task_bytes` says: `--task-file
/// /dev/zero` or an endless stdin must not grow memory without bound.
pub const TASK_READ_CAP: u64 = 64 * 1024 * 1024;

fn too_long(what: &str, limit: u64) -> Error {
    Error::task(
        format!("the task {what} is longer than {limit} bytes"),
        "give a shorter task (limits.max_task_bytes raises the limit, up to 64 MiB)",
    )
}

/// Read up to [`TASK_READ_CAP`] bytes, and say when there was more.
fn read_bounded(r: &mut dyn Read, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(TASK_READ_CAP + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            Error::task(
                format!("cannot read the task from {what}: {e}"),
                "check where the task comes from",
            )
        })?;
    if buf.len() as u64 > TASK_READ_CAP {
        return Err(too_long(&format!("from {what}"), TASK_READ_CAP));
    }
    Ok(buf)
}

/// The task within `limits.max_task_bytes` (checked once the config is read).
pub fn check_task_length(task: &str, limit: u64) -> Result<()> {
    if task.len() as u64 > limit {
        return Err(too_long(&format!("({} bytes)", task.len()), limit));
    }
    Ok(())
}

/// Read the task from the argument, `-` (stdin) or `--task-file`.
pub fn read_task(args: &RunArgs, stdin: &mut dyn Read) -> Result<String> {
    let raw: Vec<u8> = match (&args.task, &args.task_file) {
        (Some(_), Some(_)) => {
            return Err(Error::usage(
                "give the task either as an argument or with --task-file, not both",
            ));
        }
        (Some(t), None) if t == "-" => read_bounded(stdin, "stdin")?,
        (Some(t), None) => t.clone().into_bytes(),
        (None, Some(f)) => {
            let mut file = std::fs::File::open(f).map_err(|e| {
                Error::task(
                    format!("cannot read the task file {}: {e}", f.display()),
                    "check the path given to --task-file",
                )
            })?;
            read_bounded(&mut file, &format!("the file {}", f.display()))?
        }
        (None, None) => {
            return Err(Error::task(
                "no task given",
                "say what to do: git pipeline run \"fix the typo in README\" (or --task-file FILE, or - for stdin)",
            ));
        }
    };
    let task = String::from_utf8(raw).map_err(|_| {
        Error::task(
            "the task is not valid UTF-8 text",
            "save the task file as UTF-8",
        )
    })?;
    if task.contains('\0') {
        return Err(Error::task(
            "the task contains a NUL byte",
            "remove it: agents receive the task as a command-line argument",
        ));
    }
    if task.trim().is_empty() {
        return Err(Error::task(
            "the task is empty",
            "say what to do: git pipeline run \"fix the typo in README\"",
        ));
    }
    Ok(task)
}

impl RunPlan {
    pub fn prepare(cwd: &Path, args: &RunArgs, stdin: &mut dyn Read) -> Result<RunPlan> {
        let repo = Repo::discover_reading(cwd)?;
        objects::committer_identity_ahead(&repo.git());
        let task = read_task(args, stdin)?;
        let (base, base_ref, loaded) = base_and_config(&repo, args.base.as_deref())?;
        check_task_length(&task, loaded.config.limits.max_task_bytes)?;
        RunPlan::build(repo, Mode::Build, task, base, base_ref, loaded, args)
    }

    /// The plan of a workstream made from another workstream's plan of the same bundle: the
    /// agents, templates, trust and identity checked for it hold for all (no workstream can
    /// change `.pipeline.toml` or `.pipeline/`), so only the task, base, scope, routing and
    /// gates are made again. Saves a bundle's scheduler some eight git processes per start.
    pub fn derive_workstream(
        &self,
        w: &crate::bundle::spec::Workstream,
        base: Oid,
        base_ref: String,
        shared: &RunArgs,
    ) -> Result<RunPlan> {
        let args = workstream_args(w, shared);
        let git = self.target.repo.git();
        let mut p = self.clone();
        if base != self.target.base {
            p.target.base_tree = objects::tree_of(&git, &base)?;
            // A dependency may have changed .gitattributes, or added a project's files.
            prepare::check_lfs(&git, &base)?;
            let configured = p.policy.loaded.config.run.caches.clone();
            p.landing.caches = caches::caches(&git, &p.target.base_tree, configured.as_deref())?;
        }
        let (scope, routing, scope_warnings) = scope_and_routing(
            &git,
            (&base, self.target.repo.work_tree.as_deref()),
            &w.task,
            &p.policy.loaded,
            &args,
        )?;
        p.policy.scope = scope;
        p.routing = routing;
        p.policy.user_scope = user_scope(&p.policy.loaded, &args);
        p.policy.gates = pick_gates(&p.policy.loaded, &args)?;
        p.target.args = args_record(&args, &p.target.mode);
        p.target.bundle = args.bundle.clone();
        p.target.base_branch = None;
        p.landing.ship = ShipMode::Branch;
        p.landing.keep_failed = args.keep || p.policy.loaded.config.run.keep_failed;
        p.target.task = w.task.clone();
        p.target.base = base;
        p.target.base_ref = base_ref;
        p.warnings = scope_warnings;
        p.warnings.extend(unrestricted_warning(
            &p.policy.scope,
            &p.routing,
            p.agents.planner.is_some(),
        ));
        Ok(p)
    }

    /// The plan of one workstream of a bundle, starting from `base` (the bundle's base, or the
    /// merge of its dependencies' results).
    pub fn for_workstream(
        repo: Repo,
        loaded: LoadedConfig,
        w: &crate::bundle::spec::Workstream,
        base: Oid,
        base_ref: String,
        shared: &RunArgs,
    ) -> Result<RunPlan> {
        let args = workstream_args(w, shared);
        RunPlan::build(
            repo,
            Mode::Build,
            w.task.clone(),
            base,
            base_ref,
            loaded,
            &args,
        )
    }

    /// Check an existing commit: the scope against its first parent (the policy there too), the
    /// gates, and the verifier, with the commit message as the task.
    pub fn for_reverify(cwd: &Path, rev: &str, agents: &[String]) -> Result<RunPlan> {
        let repo = Repo::discover(cwd)?;
        let git = repo.git();
        if rev.starts_with('-') {
            return Err(Error::usage(format!("{rev:?} is not a revision")));
        }
        let commit = objects::resolve_commit(&git, rev)?.ok_or_else(|| {
            Error::usage_hint(
                format!("{rev:?} does not name a commit"),
                "give a branch, tag or commit id",
            )
        })?;
        let tree = objects::tree_of(&git, &commit)?;
        let Some(base) = objects::resolve_commit(&git, &format!("{commit}^"))? else {
            // The rules (config, prompts) come from the parent, where the change cannot have
            // written them; a root commit has none to be judged by.
            return Err(Error::usage_hint(
                format!(
                    "{rev:?} is a root commit: reverify judges a commit's change by the config of its parent, and a root commit has no parent"
                ),
                "re-verify the commits after it; a repository's first commit cannot be attested",
            ));
        };
        let base_ref = format!("{}^", &commit[..commit.len().min(12)]);
        let message = objects::message_of(&git, &commit)?;
        let loaded = load_config(&repo, &base, &base_ref)?;
        let args = RunArgs {
            agents: agents.to_vec(),
            ..RunArgs::default()
        };
        let task = if message.trim().is_empty() {
            format!("(commit {commit} has no message)")
        } else {
            message
        };
        RunPlan::build(
            repo,
            Mode::Reverify { commit, tree },
            task,
            base,
            base_ref,
            loaded,
            &args,
        )
    }

    /// The plan of an interrupted run, made again from its record: the same task, base commit,
    /// arguments and (read from that base) configuration.
    pub fn for_resume(cwd: &Path, rec: &crate::store::RunRecord) -> Result<RunPlan> {
        let a = &rec.resume.args;
        if let Some(commit) = &a.reverify {
            return RunPlan::for_reverify(cwd, commit, &a.agents);
        }
        let repo = Repo::discover(cwd)?;
        let loaded = load_config(&repo, &rec.base, &rec.base_ref)?;
        let args = RunArgs {
            scope: a.scope.clone(),
            create: a.create.clone(),
            agents: a.agents.clone(),
            risk: a.risk,
            stage: a.stage.as_deref().and_then(Stage::parse),
            keep: a.keep,
            gates: a.gates.clone(),
            bundle: a.bundle.clone(),
            candidates: a.candidates,
            candidate_of: a.candidate_of.clone(),
            ..RunArgs::default()
        };
        RunPlan::build(
            repo,
            Mode::Build,
            rec.task.clone(),
            rec.base.clone(),
            rec.base_ref.clone(),
            loaded,
            &args,
        )
    }

    /// What the worktree is made from: the base, or the commit being reverified.
    pub fn checkout(&self) -> (&Oid, &TreeId) {
        match &self.target.mode {
            Mode::Build => (&self.target.base, &self.target.base_tree),
            Mode::Reverify { commit, tree } => (commit, tree),
        }
    }

    fn build(
        repo: Repo,
        mode: Mode,
        task: String,
        base: Oid,
        base_ref: String,
        loaded: LoadedConfig,
        args: &RunArgs,
    ) -> Result<RunPlan> {
        let git = repo.git();
        let base_tree = objects::tree_of(&git, &base)?;
        let base_branch = objects::branch_ref_of(&git, &base_ref)?;
        let c = &loaded.config;
        let (scope, routing, scope_warnings) = scope_and_routing(
            &git,
            (&base, repo.work_tree.as_deref()),
            &task,
            &loaded,
            args,
        )?;
        let overrides = agent::parse_overrides(&args.agents)?;
        let search_dir = repo
            .work_tree
            .clone()
            .or_else(|| repo.main_worktree.clone())
            .unwrap_or_else(|| repo.common_dir.clone());
        let builder = match mode {
            Mode::Build => Some(required_role(
                &loaded,
                Role::Builder,
                &overrides,
                &search_dir,
            )?),
            Mode::Reverify { .. } => None,
        };
        let verifier = required_role(&loaded, Role::Verifier, &overrides, &search_dir)?;
        let optional = |role| agent::resolve(&loaded, role, &overrides, &search_dir);
        let discovery = optional(Role::Discovery)?;
        let planner = optional(Role::Planner)?;
        let reviewer = optional(Role::Reviewer)?;
        let docs = optional(Role::Docs)?;
        let router = optional(Role::Router)?;

        let user_scope = user_scope(&loaded, args);
        let deny: Vec<String> = c
            .scope
            .deny
            .iter()
            .flatten()
            .map(|s| s.get_ref().clone())
            .collect();
        let strings =
            |v: &[toml::Spanned<String>]| v.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>();
        let docs_when =
            Globs::new(&strings(&c.docs.when)).map_err(|e| Error::usage(e.to_string()))?;
        let docs_paths = strings(&c.docs.paths);
        let templates = Templates::load(&git, &base)?;
        let trust = {
            let blob = crate::policy::trust::key(&git, &base)?;
            let needed = crate::policy::trust::needs_trust(&loaded);
            let trusted = blob
                .as_deref()
                .is_some_and(crate::policy::trust::is_trusted);
            TrustState {
                blob,
                needed,
                trusted,
            }
        };

        let worktree_root = worktree_root(&repo, &c.run.worktree_root)?;
        let probe = format!("{}20260101-000000-0000", c.run.branch_prefix);
        if !crate::git::refs::is_valid_branch_name(&probe) {
            return Err(Error::usage(format!(
                "run.branch_prefix {:?} does not make valid branch names (git check-ref-format)",
                c.run.branch_prefix
            )));
        }
        let checkout = match &mode {
            Mode::Build => base.as_str(),
            Mode::Reverify { commit, .. } => commit.as_str(),
        };
        tracing::trace!("plan: agents, templates and trust read");
        prepare::check_lfs(&git, checkout)?;
        tracing::trace!("plan: LFS checked");
        let identity = objects::committer_identity(&git)?;
        tracing::trace!("plan: identity known");
        if let objects::Identity::Missing(why) = &identity {
            return Err(Error::usage_hint(
                format!("git has no identity to commit the run's work with ({why})"),
                "set one: git config --global user.name \"Your Name\" && git config --global user.email you@example.com",
            ));
        }
        let mut warnings = Vec::new();
        if let Some(d) = &discovery
            && !d.missing.is_empty()
        {
            warnings.push(format!(
                "discovery: {} not found; running {} of {} discovery agents",
                d.missing.join(", "),
                d.candidates.len(),
                d.candidates.len() + d.missing.len()
            ));
        }
        if let Some(w) = uncommitted_config_warning(&repo, &loaded, &base_ref) {
            warnings.push(w);
        }
        warnings.extend(scope_warnings);
        warnings.extend(where_you_are(&repo, &worktree_root, &base_ref, &base));
        warnings.extend(unrestricted_warning(&scope, &routing, planner.is_some()));
        let sandbox = sandbox_plan(&loaded.config)?;
        tracing::trace!("plan: sandbox probed");
        if let Some(f) = &sandbox.found
            && !f.enforced
        {
            warnings.push(format!(
                "sandbox: {}; agents and gates run with your rights, checked after each step",
                f.detail
            ));
        }
        let args_record = args_record(args, &mode);
        if let Some(n) = args.candidates
            && !(1..=MAX_CANDIDATES).contains(&n)
        {
            return Err(Error::usage(format!(
                "--candidates {n}: give 1 to {MAX_CANDIDATES} candidates"
            )));
        }
        let gates = pick_gates(&loaded, args)?;
        tracing::trace!("plan: gates picked");
        check_gate_programs(&git, &base, ("gate", &gates), &search_dir)?;
        let setup_gates: Vec<GateConfig> = c.setup.iter().map(|s| s.as_gate()).collect();
        check_gate_programs(&git, &base, ("setup step", &setup_gates), &search_dir)?;
        // A workstream's result goes to its bundle's integration branch, not to the base.
        let (ship, base_branch) = if args.bundle.is_some() {
            (ShipMode::Branch, None)
        } else {
            (c.run.ship, base_branch)
        };
        let landing = Landing {
            worktree_root,
            branch_prefix: c.run.branch_prefix.clone(),
            keep_failed: args.keep || c.run.keep_failed,
            ship,
            include: c.run.include.clone(),
            max_slots: c.run.max_slots,
            caches: caches::caches(&git, &base_tree, c.run.caches.as_deref())?,
            sign: c.attest.sign,
            trailers: c.ship.trailers.clone(),
            agent_trace: c.attest.agent_trace,
        };
        Ok(RunPlan {
            target: Target {
                repo,
                mode,
                args: args_record,
                task,
                base,
                base_ref,
                base_tree,
                base_branch,
                bundle: args.bundle.clone(),
                committer: identity.name().map(str::to_owned),
            },
            agents: Agents {
                builder,
                verifier,
                discovery,
                planner,
                reviewer,
                router,
                docs,
                templates,
                candidates: args.candidates.unwrap_or(1),
                judge: None,
                inherited: None,
            },
            policy: Policy {
                scope,
                user_scope,
                deny,
                gates,
                setup: c.setup.clone(),
                docs_when,
                docs_paths,
                max_fix_attempts: c.limits.max_fix_attempts,
                max_rounds: c.verify.max_rounds,
                plan_max_rounds: c.plan.max_rounds,
                max_same_error: c.limits.max_same_error,
                oscillation: c.limits.oscillation,
                containment: crate::safety::containment::Checks {
                    checkout: c.containment.checkout,
                    git_dir: c.containment.git_dir,
                    refs: c.containment.refs,
                },
                sandbox,
                trust,
                output_bytes: usize::try_from(c.limits.output_bytes)
                    .unwrap_or(usize::MAX)
                    .max(1024),
                loaded,
            },
            routing,
            landing,
            warnings,
        })
    }
}

/// The parts of a plan that depend on the task: its scope, and where it starts. Shared by a
/// run's plan and a workstream's plan derived from another.
fn scope_and_routing(
    git: &crate::git::Git,
    (base, root): (&str, Option<&Path>),
    task: &str,
    loaded: &LoadedConfig,
    args: &RunArgs,
) -> Result<(Scope, Routing, Vec<String>)> {
    let scope = build_scope(loaded, args, root)?;
    // How many files the scope covers (the router weighs it), and which allow globs match none
    // (a typo the user hears of now, not after a builder ran into it). Skipped when the risk is
    // set by hand: nothing needs the count.
    let (covered, warnings) = if args.risk.is_some() || scope.unrestricted() {
        (None, Vec::new())
    } else {
        let (n, w) = scope_at_base(git, base, &scope)?;
        (Some(n), w)
    };
    if args.strict
        && let Some(first) = warnings.first()
    {
        return Err(Error::usage_hint(
            first.trim_start_matches("scope: ").to_owned(),
            "fix the glob, or run without --strict to be warned only",
        ));
    }
    let (risk, start, start_reason) = route(task, loaded, covered, args);
    Ok((
        scope,
        Routing {
            risk,
            start,
            start_reason,
        },
        warnings,
    ))
}

/// One pass over the base's files: how many the scope lets a run modify, and a warning for each
/// allow glob that matches none (with a did-you-mean for a folder named without `/**`).
pub fn scope_at_base(
    git: &crate::git::Git,
    base: &str,
    scope: &Scope,
) -> Result<(usize, Vec<String>)> {
    let allow = scope.allow_globs();
    let patterns = allow.map(|g| g.patterns()).unwrap_or_default();
    let mut hit = vec![false; patterns.len()];
    let mut under = vec![false; patterns.len()];
    let mut n = 0;
    objects::for_each_file(git, base, |p| {
        if scope.may_modify(p) {
            n += 1;
        }
        if let Some(g) = allow {
            for i in g.matching(p) {
                hit[i] = true;
            }
            for (i, pat) in patterns.iter().enumerate() {
                if !hit[i] && p.starts_with(pat) {
                    under[i] = true;
                }
            }
        }
    })?;
    let warnings = patterns
        .iter()
        .enumerate()
        .filter(|(i, _)| !hit[*i])
        .map(|(i, pat)| {
            if under[i] {
                format!(
                    "scope: {pat:?} matches no file at the base; a glob names files: did you mean \"{}/**\"?",
                    pat.trim_end_matches('/')
                )
            } else {
                format!("scope: {pat:?} matches no file at the base (a typo?)")
            }
        })
        .collect();
    Ok((n, warnings))
}

/// Places from which a run surprises: in the middle of a bisect (the run starts from the commit
/// bisect checked out), or inside another run's worktree (it starts from that run's HEAD).
fn where_you_are(repo: &Repo, worktree_root: &Path, base_ref: &str, base: &str) -> Vec<String> {
    let mut w = Vec::new();
    if repo.git_dir.join("BISECT_LOG").is_file() {
        w.push(format!(
            "a bisect is in progress here: this run starts from {base_ref} ({}), the commit bisect checked out",
            &base[..base.len().min(12)]
        ));
    }
    if let Some(wt) = &repo.work_tree
        && wt.starts_with(worktree_root)
    {
        w.push(format!(
            "{} is a run's worktree: this run starts from its {base_ref}, and works in a worktree of its own",
            wt.display()
        ));
    }
    w
}

/// A run that may change every path and has no planner to narrow it is told so.
fn unrestricted_warning(scope: &Scope, routing: &Routing, has_planner: bool) -> Option<String> {
    (scope.unrestricted() && (routing.start == Stage::Execution || !has_planner))
    .then(|| "scope: unrestricted: no --scope/--create and no scope.allow/scope.create; every path except scope.deny may change".to_owned())
}

/// How risky the task is, where the run starts, and why. The number of existing files the scope
/// lets it modify counts too, unless the risk was set by hand (then that listing is skipped).
fn route(
    task: &str,
    loaded: &LoadedConfig,
    covered: Option<usize>,
    args: &RunArgs,
) -> (Assessment, Stage, String) {
    let risk = match args.risk {
        Some(r) => Assessment {
            risk: r,
            reasons: vec![format!("set with --risk {}", r.name())],
        },
        None => risk::assess(task, &loaded.config.risk, covered),
    };
    let (start, reason) = match args.stage {
        Some(s) => (s, format!("--stage {}", s.name())),
        None => (
            Stage::for_risk(risk.risk),
            format!(
                "risk {} starts at {}",
                risk.risk.name(),
                Stage::for_risk(risk.risk).name()
            ),
        ),
    };
    (risk, start, reason)
}

/// A workstream's run arguments: its scope, create and gates; its own risk routes it, otherwise
/// the bundle's defaults do.
fn workstream_args(w: &crate::bundle::spec::Workstream, shared: &RunArgs) -> RunArgs {
    RunArgs {
        scope: w.scope.clone(),
        create: w.create.clone(),
        risk: w.risk.or(shared.risk),
        stage: if w.risk.is_some() { None } else { shared.stage },
        gates: w.gates.clone(),
        ..shared.clone()
    }
}

/// True when the command line or the config gave a scope (otherwise a plan's manifest may).
fn user_scope(loaded: &LoadedConfig, args: &RunArgs) -> bool {
    let c = &loaded.config;
    !args.scope.is_empty()
        || !args.create.is_empty()
        || c.scope.allow.is_some()
        || c.scope.create.is_some()
}

/// The configured gates, or only those a workstream names, in its order.
fn pick_gates(loaded: &LoadedConfig, args: &RunArgs) -> Result<Vec<GateConfig>> {
    let all = &loaded.config.gates;
    match &args.gates {
        None => Ok(all.clone()),
        Some(names) => names
            .iter()
            .map(|n| {
                all.iter()
                    .find(|g| g.name.get_ref() == n)
                    .cloned()
                    .ok_or_else(|| Error::usage(format!("gate {n:?} is not configured")))
            })
            .collect(),
    }
}

fn args_record(args: &RunArgs, mode: &Mode) -> ArgsRecord {
    ArgsRecord {
        scope: args.scope.clone(),
        create: args.create.clone(),
        agents: args.agents.clone(),
        risk: args.risk,
        stage: args.stage.map(|s| s.name().to_owned()),
        keep: args.keep,
        reverify: match mode {
            Mode::Build => None,
            Mode::Reverify { commit, .. } => Some(commit.to_string()),
        },
        gates: args.gates.clone(),
        bundle: args.bundle.clone(),
        candidates: args.candidates,
        candidate_of: args.candidate_of.clone(),
    }
}

/// The base commit (`--base`, else `run.base` from the config at HEAD, else HEAD) and the
/// config read from it.
pub fn base_and_config(repo: &Repo, base_arg: Option<&str>) -> Result<(Oid, String, LoadedConfig)> {
    let mut base_ref = base_arg.unwrap_or("HEAD").to_owned();
    let mut base = resolve_base(repo, &base_ref)?;
    let mut loaded = load_config(repo, &base, &base_ref)?;
    // `run.base` comes from the config at HEAD; the config itself is then read from that base.
    if base_arg.is_none() && loaded.config.run.base != "HEAD" {
        base_ref = loaded.config.run.base.clone();
        base = resolve_base(repo, &base_ref)?;
        loaded = load_config(repo, &base, &base_ref)?;
    }
    Ok((base, base_ref, loaded))
}

fn resolve_base(repo: &Repo, base_ref: &str) -> Result<Oid> {
    if base_ref.trim().is_empty() || base_ref.starts_with('-') {
        return Err(Error::usage(format!("invalid base {base_ref:?}")));
    }
    objects::resolve_commit(&repo.git(), base_ref)?.ok_or_else(|| {
        if base_ref == "HEAD" {
            Error::usage_hint(
                "the repository has no commits yet (HEAD names no commit)",
                "make a first commit, then run again",
            )
        } else {
            Error::usage_hint(
                format!("base {base_ref:?} does not name a commit"),
                "give an existing branch, tag or commit with --base",
            )
        }
    })
}

pub fn load_config(repo: &Repo, base: &str, base_ref: &str) -> Result<LoadedConfig> {
    if let Some(loaded) = config::load(repo, base, base_ref)? {
        return Ok(loaded);
    }
    let on_disk = repo
        .work_tree
        .as_ref()
        .is_some_and(|w| w.join(config::PROJECT_FILE).exists());
    if on_disk {
        return Err(Error::usage_hint(
            format!(
                "{} is not committed at {base_ref}: git-pipeline reads the project config from the base commit, where agents cannot edit it",
                config::PROJECT_FILE
            ),
            format!(
                "commit it: git add {0} && git commit -m \"Add git-pipeline config\"",
                config::PROJECT_FILE
            ),
        ));
    }
    let personal = config::personal_config_path().map_or_else(
        || "~/.config/git-pipeline/config.toml".to_owned(),
        |p| p.display().to_string(),
    );
    Err(Error::usage_hint(
        format!(
            "no configuration: no {} at {base_ref} and no {personal}",
            config::PROJECT_FILE
        ),
        "run `git pipeline init` to write a starter .pipeline.toml, edit and commit it, then run again",
    ))
}

fn build_scope(loaded: &LoadedConfig, args: &RunArgs, root: Option<&Path>) -> Result<Scope> {
    let strings = |v: &Option<Vec<toml::Spanned<String>>>| {
        v.as_ref()
            .map(|l| l.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>())
    };
    let given = |flag: &str, globs: &[String]| -> Result<Vec<String>> {
        globs.iter().map(|g| user_glob(flag, g, root)).collect()
    };
    let (scope_flag, create_flag) = (
        given("--scope", &args.scope)?,
        given("--create", &args.create)?,
    );
    let s = &loaded.config.scope;
    let allow = if scope_flag.is_empty() {
        strings(&s.allow)
    } else {
        Some(scope_flag)
    };
    let create = if create_flag.is_empty() {
        strings(&s.create)
    } else {
        Some(create_flag)
    };
    let mut deny = strings(&s.deny).unwrap_or_default();
    deny.extend(checker_programs(loaded));
    Scope::new(allow, create, deny).map_err(|e| Error::usage(e.to_string()))
}

/// A gate whose program cannot be found would fail every attempt, after agents were paid to
/// build: refuse before the first agent starts. A path in the repository is looked for at the
/// base (it is in the worktree the gate runs in); a bare name on PATH.
fn check_gate_programs(
    git: &crate::git::Git,
    base: &str,
    (what, gates): (&str, &[GateConfig]),
    search_dir: &Path,
) -> Result<()> {
    for g in gates {
        let Some(program) = g.program() else {
            continue;
        };
        let found = if program.contains('/') && !Path::new(program).is_absolute() {
            let rel = program.trim_start_matches("./");
            objects::resolve_blob(git, base, rel)?.is_some()
        } else {
            agent::find_program(program, search_dir).is_some()
        };
        if !found {
            return Err(Error::usage_hint(
                format!(
                    "{what} {:?}: `{program}` is not found, so the {what} would fail every attempt",
                    g.name.get_ref()
                ),
                format!(
                    "install {program}, or change the {what}'s command (git pipeline doctor checks each one)"
                ),
            ));
        }
    }
    Ok(())
}

/// A `--scope`/`--create` glob as the scope holds it: relative to the repository root (an
/// absolute path inside the checkout is made relative; one outside it, or one climbing out
/// with `..`, is refused), compiled.
fn user_glob(flag: &str, glob: &str, root: Option<&Path>) -> Result<String> {
    let mut g = glob.to_owned();
    if Path::new(glob).is_absolute() {
        match root.and_then(|r| Path::new(glob).strip_prefix(r).ok()) {
            Some(rel) => g = rel.to_string_lossy().into_owned(),
            None => {
                return Err(Error::usage_hint(
                    format!("{flag} {glob:?}: an absolute path outside the repository"),
                    "give paths relative to the repository root, e.g. src/**",
                ));
            }
        }
    }
    if Path::new(&g)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::usage_hint(
            format!("{flag} {glob:?}: `..` leaves the repository"),
            "give paths relative to the repository root, e.g. src/**",
        ));
    }
    crate::globs::compile_glob(&g).map_err(|e| Error::usage(format!("{flag}: {e}")))?;
    Ok(g)
}

/// Programs of agents and gates given by a path inside the repository (`./tools/verify.sh`, or
/// the script of `sh tools/check.sh`): a builder that rewrote them would decide its own
/// verdict or gate, so they are never in its scope.
fn checker_programs(loaded: &LoadedConfig) -> Vec<String> {
    let mut out = Vec::new();
    for config::AgentEntry(list) in loaded.config.agents.values() {
        for spec in list {
            if let config::CommandSpec::Argv(argv) = spec.command.get_ref() {
                out.extend(argv_programs(argv));
            }
        }
    }
    for g in &loaded.config.gates {
        out.extend(argv_programs(g.command.get_ref()));
    }
    out.sort();
    out.dedup();
    out
}

/// The paths inside the repository that a command line runs, as globs: its program; through
/// `env [VAR=value]...`, the program after; for an interpreter, the script (after its options),
/// the programs of a shell's `-c` script, and a dotted `-m` module's file or package.
fn argv_programs(argv: &[String]) -> Vec<String> {
    argv_programs_at(argv, 0)
}

fn argv_programs_at(argv: &[String], depth: u32) -> Vec<String> {
    const INTERPRETERS: &[&str] = &[
        "sh", "bash", "dash", "zsh", "python", "python3", "node", "ruby", "perl", "deno", "bun",
    ];
    let in_repo = |p: &str| -> Option<String> {
        let path = Path::new(p);
        if path.is_absolute() || !p.contains('/') || p.contains('{') || p.starts_with('-') {
            return None;
        }
        let clean: std::path::PathBuf = path
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        Some(globset::escape(&clean.to_string_lossy()))
    };
    let mut out = Vec::new();
    // `A=1 ./tools/v`, `env -i A=1 ./tools/v`: the program is the first word that is neither an
    // option of `env` nor an assignment.
    let assignments = argv
        .iter()
        .take_while(|a| a.contains('=') && !a.starts_with('-'))
        .count();
    let mut rest = &argv[assignments..];
    // Words that run the command after them: `env`, shell keywords and wrappers (`if ./v`,
    // `! ./v`, `exec`, `time`, `timeout 60 ./v`, `nice -n 5 ./v`); and `.`/`source`, whose
    // argument is itself a script.
    loop {
        let Some(first) = rest.first() else {
            return out;
        };
        let name = match first.as_str() {
            "." => ".",
            f => Path::new(f)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(""),
        };
        rest = match name {
            "env" => {
                let mut i = 1;
                while let Some(a) = rest.get(i) {
                    match a.as_str() {
                        // Options of env that take a value.
                        "-u" | "-C" | "--unset" | "--chdir" => i += 2,
                        "-S" | "--split-string" => {
                            // `env -S "prog args"`: the string is the command line.
                            if let Some(line) = rest.get(i + 1) {
                                let words: Vec<String> =
                                    line.split_whitespace().map(str::to_owned).collect();
                                out.extend(argv_programs_at(&words, depth + 1));
                            }
                            return out;
                        }
                        a if a.starts_with('-') || a.contains('=') => i += 1,
                        _ => break,
                    }
                }
                rest.get(i..).unwrap_or_default()
            }
            "if" | "then" | "else" | "elif" | "do" | "while" | "until" | "!" | "{" | "exec"
            | "time" | "command" | "nohup" | "builtin" => &rest[1..],
            "timeout" | "nice" => {
                // Their options, then (timeout) the duration.
                let opts = rest[1..].iter().take_while(|a| a.starts_with('-')).count();
                let value = usize::from(matches!(rest.get(1).map(String::as_str), Some("-n")));
                let duration = usize::from(name == "timeout");
                rest.get(1 + opts + value + duration..).unwrap_or_default()
            }
            "." | "source" => {
                if let Some(script) = rest.get(1) {
                    out.extend(
                        in_repo(script)
                            .or_else(|| (!script.contains('{')).then(|| globset::escape(script))),
                    );
                }
                return out;
            }
            _ => break,
        };
    }
    let Some(first) = rest.first() else {
        return out;
    };
    out.extend(in_repo(first));
    let base = Path::new(first)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    // `python3.12` is python.
    let base = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if !INTERPRETERS.contains(&base) && !INTERPRETERS.contains(&format!("{base}3").as_str()) {
        return out;
    }
    let mut args = rest[1..].iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" if depth < 3 => {
                // A shell script given as text: each of its commands, as a command line.
                if let Some(text) = args.next() {
                    for command in text.split(|c: char| "\n;&|()`".contains(c)) {
                        let words: Vec<String> = command
                            .split(|c: char| c.is_whitespace() || "'\"<>".contains(c))
                            .filter(|w| !w.is_empty())
                            .map(str::to_owned)
                            .collect();
                        out.extend(argv_programs_at(&words, depth + 1));
                    }
                }
                break;
            }
            "-c" | "-e" => break,
            "-m" => {
                // `python -m tools.verify`: a dotted module is the repository's own (`pytest`
                // is not).
                if let Some(module) = args.next().filter(|m| m.contains('.')) {
                    let path = module.replace('.', "/");
                    out.push(globset::escape(&format!("{path}.py")));
                    out.push(format!("{}/**", globset::escape(&path)));
                }
                break;
            }
            // Interpreter options that take the next word as their value.
            "-o" | "-O" | "-W" | "-X" | "-r" | "--require" | "-I" | "--rcfile" | "--init-file" => {
                args.next();
            }
            a if a.starts_with('-') => continue,
            script => {
                // A bare name (`sh check.sh`) is a file at the top of the repository.
                out.extend(
                    in_repo(script)
                        .or_else(|| (!script.contains('{')).then(|| globset::escape(script))),
                );
                break;
            }
        }
    }
    out
}

fn required_role(
    loaded: &LoadedConfig,
    role: Role,
    overrides: &[(Role, String)],
    search_dir: &Path,
) -> Result<RoleAgent> {
    agent::resolve(loaded, role, overrides, search_dir)?.ok_or_else(|| {
        Error::usage_hint(
            format!("no {} agent configured", role.name()),
            format!(
                "add [agents.{0}] with a command to .pipeline.toml (or to your personal config), e.g. command = [\"claude\", \"-p\", \"{{prompt}}\"]",
                role.name()
            ),
        )
    })
}

/// `run.worktree_root`, or the default sibling folder; never inside the main worktree.
pub fn worktree_root(repo: &Repo, configured: &str) -> Result<PathBuf> {
    let root = if configured.trim().is_empty() {
        repo.default_worktree_root()
    } else {
        // `~/wt` is the user's home, as in a shell (a folder named `~` is never meant).
        let p = match (configured.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
            (Some(_), None) => {
                return Err(Error::usage(format!(
                    "run.worktree_root {configured:?} starts with ~/ but HOME is not set"
                )));
            }
            (None, _) => PathBuf::from(configured),
        };
        let anchor = repo.main_worktree.as_deref().unwrap_or(&repo.common_dir);
        normalize(&anchor.join(p))
    };
    if let Some(main) = &repo.main_worktree
        && root.starts_with(main)
    {
        return Err(Error::usage_hint(
            format!(
                "run.worktree_root {} is inside the main worktree {}",
                root.display(),
                main.display()
            ),
            "use a folder outside the checkout, e.g. \"../<repo>.pipeline\" (the default when empty)",
        ));
    }
    if root.starts_with(&repo.common_dir) {
        return Err(Error::usage(format!(
            "run.worktree_root {} is inside the git dir",
            root.display()
        )));
    }
    Ok(root)
}

/// Remove `.` and `..` without touching the filesystem (the folder may not exist yet).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

pub fn uncommitted_config_warning(
    repo: &Repo,
    loaded: &LoadedConfig,
    base_ref: &str,
) -> Option<String> {
    let work_tree = repo.work_tree.as_ref()?;
    let on_disk = std::fs::read_to_string(work_tree.join(config::PROJECT_FILE)).ok()?;
    match loaded.project.as_ref().map(|s| s.text.as_str()) {
        None => Some(format!(
            "{} is not committed: runs read the config at {base_ref}, which has none",
            config::PROJECT_FILE
        )),
        Some(committed) if committed != on_disk => Some(format!(
            "{} has uncommitted changes; this run uses the version at {base_ref}",
            config::PROJECT_FILE
        )),
        Some(_) => None,
    }
}

/// `run.sandbox` and `[sandbox]` made concrete: `required` where nothing can be enforced is a
/// usage error (exit 3) before anything starts.
fn sandbox_plan(c: &crate::config::Config) -> Result<SandboxPlan> {
    use crate::sandbox::Mode;
    use crate::sandbox::expand;
    use crate::sandbox::probe;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let writable = c
        .sandbox
        .writable
        .iter()
        .map(|w| expand(w, home.as_deref()))
        .collect::<std::result::Result<Vec<_>, crate::sandbox::WritableError>>()
        .map_err(|e| Error::usage(e.to_string()))?;
    let found = (c.run.sandbox != Mode::Off).then(probe);
    if let Some(why) = crate::sandbox::refusal(c.run.sandbox, found.as_ref()) {
        return Err(Error::usage_hint(
            why,
            "use Linux 5.13 or newer with Landlock enabled, or macOS; or set run.sandbox = \"auto\"",
        ));
    }
    Ok(SandboxPlan {
        mode: c.run.sandbox,
        found,
        writable,
        gate_network: c.sandbox.network,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_checkers_scripts_are_found_however_it_is_started() {
        let programs = |argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|a| (*a).to_owned()).collect();
            super::argv_programs(&argv)
        };
        assert_eq!(programs(&["./tools/verify.sh"]), ["tools/verify.sh"]);
        assert_eq!(
            programs(&["bash", "-eu", "tools/check.sh"]),
            ["tools/check.sh"]
        );
        assert_eq!(programs(&["sh", "check.sh"]), ["check.sh"]);
        assert_eq!(
            programs(&[
                "sh",
                "-c",
                "./tools/v.sh && cargo test --manifest-path crates/a/Cargo.toml"
            ]),
            ["tools/v.sh"]
        );
        assert_eq!(
            programs(&["env", "-i", "X=1", "python3", "-u", "tools/v.py"]),
            ["tools/v.py"]
        );
        assert_eq!(programs(&["X=1", "./tools/v"]), ["tools/v"]);
        assert_eq!(
            programs(&["sh", "-c", "A=1 env B=2 bash tools/x.sh | tee out"]),
            ["tools/x.sh"]
        );
        assert_eq!(
            programs(&["python3.12", "-m", "tools.verify"]),
            ["tools/verify.py", "tools/verify/**"]
        );
        assert!(programs(&["python3", "-m", "pytest", "tests/"]).is_empty());
        assert!(programs(&["cargo", "test", "--manifest-path", "crates/a/Cargo.toml"]).is_empty());
        assert!(programs(&["claude", "-p", "{prompt}"]).is_empty());
        // Options with values, env's own options, shell keywords and wrappers.
        assert_eq!(programs(&["bash", "-o", "pipefail", "x.sh"]), ["x.sh"]);
        assert_eq!(programs(&["python3", "-W", "ignore", "t/v.py"]), ["t/v.py"]);
        assert_eq!(programs(&["env", "-u", "HOME", "./v"]), ["v"]);
        assert_eq!(programs(&["env", "-S", "./tools/v --flag"]), ["tools/v"]);
        assert_eq!(
            programs(&[
                "sh",
                "-c",
                "if ./a; then ! ./b; fi; exec ./c; time ./d; timeout 60 ./e; . tools/lib.sh"
            ]),
            ["a", "b", "c", "d", "e", "tools/lib.sh"]
        );
    }
}
