//! Running one agent or gate as a step of a run: its prompt and outputs stored (secrets masked),
//! its environment per SPEC section 5, its end recorded as an event.

use std::ffi::OsStr;
use std::path::Path;

use serde_json::json;

use crate::agent::RoleAgent;
use crate::store::EventKind;
use crate::store::record::StageName;

use crate::preset::argv;

use crate::agent::usage;
use crate::config::DEFAULT_TIMEOUT;
use crate::config::GateConfig;
use crate::error::Result;
use crate::process_end::End;
use crate::safety::childenv::StepEnv;
use crate::safety::process;
use crate::safety::process::Cancel;
use crate::safety::process::Outcome;
use crate::store::RunDir;

/// What every step of one run shares.
pub struct StepCtx<'a> {
    pub run_id: &'a str,
    pub worktree: &'a Path,
    pub base: &'a crate::git::Oid,
    pub slot: u32,
    pub workstream: Option<&'a str>,
    pub candidate: Option<u32>,
    pub dir: &'a RunDir,
    /// Bytes of each output stream kept (`limits.output_bytes`).
    pub capture_limit: usize,
    /// The marked committer name steps run with (containment's attribution of ref changes).
    pub committer_name: Option<&'a str>,
    /// The OS sandbox steps run in, where there is one.
    pub sandbox: Option<&'a crate::sandbox::Setup>,
}

/// A [`StepCtx`] that owns its parts, for a step spawned as a task of its own.
#[derive(Clone)]
pub struct OwnedStepCtx {
    run_id: String,
    worktree: std::path::PathBuf,
    base: crate::git::Oid,
    slot: u32,
    workstream: Option<String>,
    candidate: Option<u32>,
    dir: RunDir,
    capture_limit: usize,
    committer_name: Option<String>,
    sandbox: Option<crate::sandbox::Setup>,
}

impl StepCtx<'_> {
    pub fn to_owned_ctx(&self) -> OwnedStepCtx {
        OwnedStepCtx {
            run_id: self.run_id.to_owned(),
            worktree: self.worktree.to_owned(),
            base: self.base.clone(),
            slot: self.slot,
            workstream: self.workstream.map(str::to_owned),
            candidate: self.candidate,
            dir: self.dir.clone(),
            capture_limit: self.capture_limit,
            committer_name: self.committer_name.map(str::to_owned),
            sandbox: self.sandbox.cloned(),
        }
    }
}

impl OwnedStepCtx {
    pub fn borrow(&self) -> StepCtx<'_> {
        StepCtx {
            run_id: &self.run_id,
            worktree: &self.worktree,
            base: &self.base,
            slot: self.slot,
            workstream: self.workstream.as_deref(),
            candidate: self.candidate,
            dir: &self.dir,
            capture_limit: self.capture_limit,
            committer_name: self.committer_name.as_deref(),
            sandbox: self.sandbox.as_ref(),
        }
    }
}

/// A step's argv and environment, put in the sandbox when there is one. A program that cannot be
/// found is started as it is, so that it fails exactly as it would without a sandbox.
fn sandboxed(
    ctx: &StepCtx<'_>,
    argv: Vec<std::ffi::OsString>,
    env: &mut Vec<(String, std::ffi::OsString)>,
    wrap: impl FnOnce(&crate::sandbox::Setup, &[std::ffi::OsString]) -> Vec<std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let Some(sb) = ctx.sandbox else {
        return argv;
    };
    let Some(program) = argv.first() else {
        return argv;
    };
    if crate::sandbox::resolve(program, ctx.worktree).is_none() {
        return argv;
    }
    for var in ["TMPDIR", "TMP", "TEMP"] {
        env.push((var.to_owned(), sb.tmp.as_os_str().to_owned()));
    }
    wrap(sb, &argv)
}

pub struct AgentRun {
    pub outcome: Outcome,
    pub usage: usage::Usage,
    /// `<entry>` or `<entry>#<n>` when a later candidate of the role ran.
    pub agent: String,
    pub program: String,
    /// The preset it came from, or the program's file name.
    pub cli: String,
    /// The models the CLI said it used (main model first).
    pub models: Vec<String>,
    pub started_at: String,
    pub ended_at: String,
    /// The agent's own tool calls that failed, as its events said (the last few).
    pub failed_tools: Vec<String>,
}

pub struct AgentCall<'a> {
    pub agent: &'a RoleAgent,
    pub stage: crate::store::record::StageName,
    pub attempt: u32,
    /// The run's session for this stage (`PIPELINE_SESSION_ID`, `{session}` in the argv).
    pub session: &'a str,
    pub prompt: &'a str,
    /// The agent's own CLI session: what its session flags name.
    pub cli_session: &'a CliSession,
    /// Where its live activity is shown.
    pub ui: &'a crate::ui::Ui,
}

/// A CLI session of one agent candidate in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliSession {
    pub id: String,
    /// Started by an earlier step: the flags resume it rather than start it.
    pub resumed: bool,
}

pub async fn run_agent(
    ctx: &StepCtx<'_>,
    call: AgentCall<'_>,
    cancel: &mut Cancel,
) -> Result<AgentRun> {
    let role = call.agent.role.name();
    let label = format!("{}-{}.{role}", call.stage, call.attempt);
    let started_at = crate::ids::now_rfc3339();
    ctx.dir
        .artifact(&format!("prompts/{label}.md"), call.prompt.as_bytes())?;
    let Some((index, spec)) = call.agent.pick(call.prompt.len()) else {
        let msg = format!(
            "no {role} agent accepts a prompt of {} bytes (max_prompt_bytes)",
            call.prompt.len()
        );
        return Ok(AgentRun {
            outcome: Outcome {
                end: End::SpawnFailed(msg),
                stdout: Default::default(),
                stderr: Default::default(),
                duration: Default::default(),
            },
            usage: usage::Usage::default(),
            agent: call.agent.name.clone(),
            program: String::new(),
            cli: String::new(),
            models: Vec::new(),
            started_at: started_at.clone(),
            ended_at: started_at,
            failed_tools: Vec::new(),
        });
    };
    let agent = if index == 0 {
        call.agent.name.clone()
    } else {
        format!("{}#{}", call.agent.name, index + 1)
    };
    // The agent reads the real prompt; the stored copy above has secrets masked.
    let prompt_file = ctx.dir.scratch(&format!("{label}.prompt.md"))?;
    write_private(&prompt_file, call.prompt.as_bytes())?;
    // The session flags start the agent's CLI session the first time, resume it afterwards.
    let flags = if call.cli_session.resumed {
        &spec.session_resume
    } else {
        &spec.session_start
    };
    let program = spec.program().to_owned();
    let cli = spec.preset.map(str::to_owned).unwrap_or_else(|| {
        std::path::Path::new(&program)
            .file_name()
            .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned())
    });
    let vars = argv::Vars {
        prompt: OsStr::new(call.prompt),
        prompt_file: prompt_file.as_os_str(),
        worktree: ctx.worktree.as_os_str(),
        run_id: OsStr::new(ctx.run_id),
        stage: OsStr::new(call.stage.name()),
        session: OsStr::new(call.session),
    };
    let flag_vars = argv::Vars {
        session: OsStr::new(&call.cli_session.id),
        ..vars
    };
    let mut failed_tools = Vec::new();
    let rendered = argv::render(&spec.argv, &vars).and_then(|mut argv| {
        let flags = argv::render(flags, &flag_vars)?;
        // `codex exec [options] resume <id> <prompt>`: the flags go before a trailing prompt.
        if spec.resume_before_prompt
            && call.cli_session.resumed
            && spec.argv.last().is_some_and(|a| a == "{prompt}")
        {
            let at = argv.len().saturating_sub(1);
            argv.splice(at..at, flags);
        } else {
            argv.extend(flags);
        }
        Ok(argv)
    });
    let outcome = match rendered {
        Err(e) => Outcome {
            end: End::SpawnFailed(e.to_string()),
            stdout: Default::default(),
            stderr: Default::default(),
            duration: Default::default(),
        },
        Ok(argv) => {
            let (mut env, env_remove) = StepEnv {
                run_id: ctx.run_id,
                run_dir: &ctx.dir.path,
                stage: call.stage.name(),
                role,
                session: call.session,
                worktree: ctx.worktree,
                prompt_file: Some(&prompt_file),
                base: ctx.base,
                attempt: call.attempt,
                slot: ctx.slot,
                workstream: ctx.workstream,
                candidate: ctx.candidate,
                committer_name: ctx.committer_name,
                git_config: &[],
            }
            .build(&spec.env);
            let (preset, edits) = (spec.preset, crate::preset::role_edits(call.agent.role));
            let argv = sandboxed(ctx, argv, &mut env, |sb, argv| {
                let argv = match preset.and_then(crate::preset::find) {
                    Some(p) => p.inside_sandbox(argv.to_vec()),
                    None => argv.to_vec(),
                };
                sb.agent_argv(preset, edits, &argv)
            });
            let (tx, mut rx) = tokio::sync::mpsc::channel(LINES_QUEUED);
            let mut watch = Watch::new(ctx, &call);
            let step = in_worktree(ctx, argv, (env, env_remove), spec.timeout, cancel, Some(tx));
            tokio::pin!(step);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut step => break outcome,
                    Some(line) = rx.recv() => watch.line(&line),
                }
            };
            while let Ok(line) = rx.try_recv() {
                watch.line(&line);
            }
            failed_tools = watch.failed;
            outcome
        }
    };
    let _ = std::fs::remove_file(&prompt_file);
    ctx.dir
        .artifact(&format!("outputs/{label}.stdout"), &outcome.stdout.marked())?;
    ctx.dir
        .artifact(&format!("outputs/{label}.stderr"), &outcome.stderr.marked())?;
    let usage = usage::measure(call.prompt.len(), &outcome.stdout.bytes);
    let models = usage::models(&outcome.stdout.bytes);
    let ended_at = crate::ids::now_rfc3339();
    ctx.dir.event(
        Some(call.stage),
        EventKind::AgentExited,
        json!({
            "role": role,
            "agent": agent,
            "attempt": call.attempt,
            "session_id": call.session,
            "end": outcome.end.describe(),
            "success": outcome.end.success(),
            "duration_s": secs(outcome.duration),
            "tokens": usage.tokens,
            "tokens_estimated": usage.estimated,
        }),
    )?;
    Ok(AgentRun {
        outcome,
        usage,
        agent,
        program,
        cli,
        models,
        started_at,
        ended_at,
        failed_tools,
    })
}

/// An agent's live activity: shown as it comes, kept as events, its failed tool calls collected.
struct Watch<'a> {
    ctx: &'a StepCtx<'a>,
    ui: &'a crate::ui::Ui,
    stage: StageName,
    role: &'static str,
    attempt: u32,
    worktree: String,
    last: Option<String>,
    failed: Vec<String>,
    events: usize,
}

/// Lines waiting to be read for live activity; more are dropped (it is a view).
const LINES_QUEUED: usize = 256;

/// The `agent_activity` events one step writes at most: a flood of lines fills no disk.
const EVENTS_KEPT: usize = 2_000;

/// The failed tool calls a step keeps (the last ones: what went wrong just before the end).
const FAILED_KEPT: usize = 5;

impl<'a> Watch<'a> {
    fn new(ctx: &'a StepCtx<'a>, call: &AgentCall<'a>) -> Self {
        Watch {
            ctx,
            ui: call.ui,
            stage: call.stage,
            role: call.agent.role.name(),
            attempt: call.attempt,
            worktree: ctx.worktree.to_string_lossy().into_owned(),
            last: None,
            failed: Vec::new(),
            events: 0,
        }
    }

    fn line(&mut self, line: &[u8]) {
        use crate::agent::activity::{Seen, read};
        for seen in read(line, &self.worktree) {
            let text = match seen {
                Seen::Doing(t) => t,
                Seen::Failed(t) => {
                    if self.failed.len() == FAILED_KEPT {
                        self.failed.remove(0);
                    }
                    self.failed.push(t.clone());
                    format!("failed: {t}")
                }
            };
            if self.last.as_deref() == Some(text.as_str()) || self.events >= EVENTS_KEPT {
                continue;
            }
            self.events += 1;
            self.ui.activity(self.role, &text);
            // Live activity is a view: a full disk must not stop the agent's step.
            let _ = self.ctx.dir.event(
                Some(self.stage),
                EventKind::AgentActivity,
                json!({"role": self.role, "attempt": self.attempt, "text": text}),
            );
            self.last = Some(text);
        }
    }
}

pub struct GateRun {
    pub outcome: Outcome,
}

/// Run one gate on attempt `attempt`, whose snapshot is `tree` (what a builtin gate judges).
pub async fn run_gate(
    ctx: &StepCtx<'_>,
    gate: &GateConfig,
    (attempt, tree): (u32, Option<&crate::git::TreeId>),
    session: &str,
    cancel: &mut Cancel,
) -> Result<GateRun> {
    let name = gate.name.get_ref();
    let outcome = if gate.builtin.is_some() {
        builtin_gate(ctx, gate, tree).await?
    } else {
        command_gate(ctx, gate, ("gates", "gate", attempt), session, cancel).await
    };
    ctx.dir.artifact(
        &format!("outputs/gate-{attempt}.{}.log", file_safe(name)),
        &combined(&outcome),
    )?;
    ctx.dir.event(
        Some(StageName::Gates),
        EventKind::GateFinished,
        json!({
            "gate": name,
            "attempt": attempt,
            "end": outcome.end.describe(),
            "status": if outcome.end.success() { "pass" } else { "fail" },
            "duration_s": secs(outcome.duration),
        }),
    )?;
    Ok(GateRun { outcome })
}

/// A builtin gate, in-process, on the attempt's snapshot (exactly the tree that would ship).
async fn builtin_gate(
    ctx: &StepCtx<'_>,
    gate: &GateConfig,
    tree: Option<&crate::git::TreeId>,
) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let tree = tree
        .ok_or_else(|| {
            crate::error::Error::other("a builtin gate ran before the attempt's snapshot")
        })?
        .clone();
    let builtin = crate::config::gates::builtin(gate)?.ok_or_else(|| {
        crate::error::Error::other(format!(
            "gate {:?} is not a builtin gate",
            gate.name.get_ref()
        ))
    })?;
    let (git, base) = (crate::git::Git::in_dir(ctx.worktree), ctx.base.clone());
    let (passed, text) =
        tokio::task::spawn_blocking(move || crate::gates::run(&git, &builtin, &base, &tree))
            .await
            .map_err(|e| crate::error::Error::other(format!("the builtin gate stopped: {e}")))??;
    Ok(Outcome {
        end: End::Exited(if passed { 0 } else { 1 }),
        stdout: crate::safety::process::Captured {
            bytes: text.into_bytes(),
            cut: 0,
        },
        stderr: Default::default(),
        duration: started.elapsed(),
    })
}

/// A `[[setup]]` step, run as a command gate is (sandbox, environment, timeout), before the
/// gates of attempt `attempt` (0: before any agent). Its output is kept in
/// `outputs/setup-<attempt>.<name>.log`.
pub async fn run_setup(
    ctx: &StepCtx<'_>,
    step: &GateConfig,
    attempt: u32,
    session: &str,
    cancel: &mut Cancel,
) -> Result<Outcome> {
    let name = step.name.get_ref();
    let outcome = command_gate(ctx, step, ("setup", "setup", attempt), session, cancel).await;
    ctx.dir.artifact(
        &format!("outputs/setup-{attempt}.{}.log", file_safe(name)),
        &combined(&outcome),
    )?;
    Ok(outcome)
}

/// A name as part of a file name: letters, digits, `-` and `_` kept, anything else `_`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

async fn command_gate(
    ctx: &StepCtx<'_>,
    gate: &GateConfig,
    (stage, role, attempt): (&str, &str, u32),
    session: &str,
    cancel: &mut Cancel,
) -> Outcome {
    let name = gate.name.get_ref();
    let mut extra = gate.env.clone();
    extra.insert("PIPELINE_GATE".to_owned(), name.clone());
    let (mut env, env_remove) = StepEnv {
        run_id: ctx.run_id,
        run_dir: &ctx.dir.path,
        stage,
        role,
        session,
        worktree: ctx.worktree,
        prompt_file: None,
        base: ctx.base,
        attempt,
        slot: ctx.slot,
        workstream: ctx.workstream,
        candidate: ctx.candidate,
        committer_name: ctx.committer_name,
        // Gates run code the agent wrote (its tests): a bare repository planted in the worktree
        // must not be used by their git commands.
        git_config: &[("safe.bareRepository", "explicit")],
    }
    .build(&extra);
    let argv = sandboxed(
        ctx,
        gate.command.get_ref().iter().map(Into::into).collect(),
        &mut env,
        |sb, argv| sb.gate_argv(argv),
    );
    in_worktree(ctx, argv, (env, env_remove), gate.timeout, cancel, None).await
}

/// Run a step's program in the run's worktree, with its environment and timeout.
async fn in_worktree(
    ctx: &StepCtx<'_>,
    argv: Vec<std::ffi::OsString>,
    (env, env_remove): (Vec<(String, std::ffi::OsString)>, Vec<String>),
    timeout: Option<std::time::Duration>,
    cancel: &mut Cancel,
    lines: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
) -> Outcome {
    process::run(
        process::Spec {
            argv,
            cwd: ctx.worktree.to_owned(),
            env,
            env_remove,
            timeout: Some(timeout.unwrap_or(DEFAULT_TIMEOUT)),
            capture_limit: ctx.capture_limit,
            // Agents' stdout is what verdicts are read from.
            socket_stdout: lines.is_some(),
            lines,
        },
        cancel,
    )
    .await
}

/// stdout then stderr, as one text for logs and for the builder's next prompt.
pub fn combined(outcome: &Outcome) -> Vec<u8> {
    let mut v = outcome.stdout.marked();
    if !v.is_empty() && !v.ends_with(b"\n") {
        v.push(b'\n');
    }
    v.extend_from_slice(&outcome.stderr.marked());
    v
}

pub fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| crate::error::Error::io_path("create", path, e))?;
    f.write_all(bytes)
        .map_err(|e| crate::error::Error::io_path("write", path, e))
}
