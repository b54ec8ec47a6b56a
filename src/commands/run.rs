//! `git pipeline run`.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::emit;
use crate::cli::RunCmd;
use crate::error::Error;
use crate::error::Exit;
use crate::error::Result;
use crate::plan::RunArgs;
use crate::plan::RunPlan;
use crate::run::outcome::Outcome;
use crate::store::record::Status;
use crate::ui::Ui;

pub fn run(cmd: RunCmd, cwd: &Path, out: &mut dyn Write, ui: &Ui) -> Result<Exit> {
    // The sandbox probe runs on a thread of its own: it answers while the plan is made.
    crate::sandbox::probe_in_background();
    if let Some(path) = &cmd.bundle {
        let shared = RunArgs {
            base: cmd.base.clone(),
            keep: cmd.keep,
            agents: cmd.agent.clone(),
            risk: cmd.risk.map(Into::into),
            stage: cmd.stage.map(Into::into),
            ..RunArgs::default()
        };
        return super::bundle::run(
            path,
            cmd.jobs,
            shared,
            cwd,
            out,
            ui,
            (cmd.dry_run, cmd.json),
        );
    }
    let args = RunArgs {
        task: cmd.task,
        task_file: cmd.task_file,
        scope: cmd.scope,
        create: cmd.create,
        base: cmd.base,
        keep: cmd.keep,
        agents: cmd.agent,
        risk: cmd.risk.map(Into::into),
        stage: cmd.stage.map(Into::into),
        candidates: cmd.candidates,
        strict: cmd.strict,
        ..RunArgs::default()
    };
    let plan = RunPlan::prepare(cwd, &args, &mut std::io::stdin().lock())?;
    if cmd.dry_run {
        dry_run(&plan, out, cmd.json)?;
        return Ok(Exit::Success);
    }
    plan.policy
        .trust
        .require(&plan.policy.loaded, &plan.target.base_ref)?;
    execute(&plan, out, ui, cmd.json)
}

/// Execute a prepared plan, print its result, and return its exit code.
pub fn execute(plan: &RunPlan, out: &mut dyn Write, ui: &Ui, json: bool) -> Result<Exit> {
    let outcome = super::interruptible(|cancel| async move {
        crate::run::execute(plan, ui, cancel, &crate::fanout::threads::Threads).await
    })?;
    conclude(plan, &outcome, out, ui, json)
}

/// Report a run; when its plan split the task into a bundle, run the bundle and report that.
pub fn conclude(
    plan: &RunPlan,
    outcome: &Outcome,
    out: &mut dyn Write,
    ui: &Ui,
    json: bool,
) -> Result<Exit> {
    let Some(bundle) = outcome.split.clone() else {
        return report(outcome, out, ui, json);
    };
    let id = &outcome.record.run_id;
    ui.info(format!(
        "run {id}: the approved plan splits the task into {} workstreams; running them as a bundle",
        bundle.workstreams.len()
    ));
    let (graph, _) = crate::bundle::dag::Graph::new(&bundle.workstreams);
    // Planned already: its workstreams start at execution (unless one asks for a risk).
    let shared = RunArgs {
        agents: plan.target.args.agents.clone(),
        keep: plan.target.args.keep,
        stage: Some(crate::plan::Stage::Execution),
        ..RunArgs::default()
    };
    let mut bundle_plan = crate::fanout::bundle::BundlePlan::from_checked(
        plan.target.repo.clone(),
        crate::bundle::validate::Checked {
            bundle,
            graph,
            notes: Vec::new(),
        },
        format!("the plan of run {id}"),
        plan.target.base.clone(),
        plan.target.base_ref.clone(),
        plan.policy.loaded.clone(),
        super::bundle::default_jobs(),
        shared,
    )?;
    bundle_plan.parent_run = Some(id.clone());
    super::bundle::execute(&bundle_plan, out, ui, json)
}

/// Print a finished (or interrupted) run and return its exit code.
pub fn report(outcome: &Outcome, out: &mut dyn Write, ui: &Ui, json: bool) -> Result<Exit> {
    if json {
        let text = serde_json::to_string_pretty(&outcome.record)
            .map_err(|e| Error::other(format!("cannot encode the result: {e}")))?;
        emit(out, &format!("{text}\n"))?;
    }
    summarize(outcome, out, ui, json)?;
    Ok(outcome.exit())
}

fn summarize(o: &Outcome, out: &mut dyn Write, ui: &Ui, json: bool) -> Result<()> {
    let r = &o.record;
    let m = &r.metrics;
    let estimated = r.stages.iter().any(|s| s.tokens_estimated);
    let mut cost = m.cost_usd.map(|c| format!(", ${c:.2}")).unwrap_or_default();
    if let Some(c) = m.credits {
        cost.push_str(&format!(", {c} credits"));
    }
    let stats = format!(
        "{} stage{} run, {} path{}, {} fix attempt{}, {} verification round{}, {}{} tokens{cost}, {}",
        m.stages_executed,
        plural(m.stages_executed as usize),
        r.changed_paths.len(),
        plural(r.changed_paths.len()),
        m.fix_attempts,
        plural(m.fix_attempts as usize),
        m.verification_rounds,
        plural(m.verification_rounds as usize),
        if estimated { "~" } else { "" },
        human_count(m.tokens),
        human_secs(m.total_time_s)
    );
    match r.status {
        Status::Succeeded if r.branch.is_empty() => {
            if !json {
                let commit = r.commit.as_deref().unwrap_or("");
                emit(
                    out,
                    &format!("attested {} ({stats})\n", &commit[..commit.len().min(12)]),
                )?;
            }
        }
        Status::Succeeded => {
            if !json {
                let commit = r.commit.as_deref().unwrap_or("");
                let mut text = format!(
                    "shipped {} at {} (attested): {stats}\n",
                    r.branch,
                    &commit[..commit.len().min(12)]
                );
                match &r.merge {
                    Some(m) => text.push_str(&format!("  {m}\n")),
                    None => text.push_str(&format!("  merge it: git merge {}\n", r.branch)),
                }
                emit(out, &text)?;
            }
        }
        Status::Interrupted => {
            match &r.error {
                // Stopped by something that clears up (a lock in the way): what, and the fix.
                Some(why) => {
                    ui.error(format!("run {} stopped: {why}", r.run_id));
                    for d in &o.details {
                        ui.detail(d);
                    }
                }
                None => ui.error(format!("run {} interrupted", r.run_id)),
            }
            if let Some(w) = &r.worktree {
                ui.detail(format!("its worktree is kept at {}", w.display()));
            }
            ui.detail(format!(
                "continue it: git pipeline resume {0}   (or drop it: git pipeline abandon {0})",
                r.run_id
            ));
        }
        _ => {
            ui.error(format!(
                "run {} failed: {}",
                r.run_id,
                r.error.as_deref().unwrap_or("unknown error")
            ));
            for d in &o.details {
                ui.detail(d);
            }
            if let Some(a) = &r.archive {
                let kept = match &r.worktree {
                    Some(w) => format!("kept at {} (branch {})", w.display(), r.branch),
                    None => "rolled back".to_owned(),
                };
                ui.detail(format!(
                    "{kept}; the work is saved at {a} (see it: git show --stat {a})"
                ));
            }
            ui.detail(format!("details: git pipeline show {}", r.run_id));
        }
    }
    Ok(())
}

/// `950`, `18.2k`, `1.3M`: a glance, not an invoice (the record keeps the exact count).
fn human_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// `4.2s` under a minute, `3m 12s` under an hour, `1h 05m` beyond.
fn human_secs(s: f64) -> String {
    let whole = s.round() as u64;
    match whole {
        _ if s < 60.0 => format!("{s:.1}s"),
        60..3600 => format!("{}m {:02}s", whole / 60, whole % 60),
        _ => format!("{}h {:02}m", whole / 3600, whole % 3600 / 60),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn dry_run(plan: &RunPlan, out: &mut dyn Write, as_json: bool) -> Result<()> {
    let branch = format!("{}<run-id>", plan.landing.branch_prefix);
    let worktree = plan.landing.worktree_root.join("<run-id>");
    // The builder's command is picked by the size of its prompt: the first attempt's, as the
    // run would render it.
    let builder_prompt = first_builder_prompt_bytes(plan);
    let agent_argv = |a: &crate::agent::RoleAgent| -> Vec<String> {
        let pick = match (a.role, builder_prompt) {
            (crate::preset::Role::Builder, Some(n)) => a.pick(n).map(|(_, c)| c),
            _ => a.candidates.first(),
        };
        pick.map(|c| c.argv.clone()).unwrap_or_default()
    };
    let gates: Vec<serde_json::Value> = plan
        .policy
        .gates
        .iter()
        .map(|g| {
            let found = g.program().is_none_or(|program| {
                crate::agent::find_program(program, &search_dir(plan)).is_some()
            });
            json!({
                "name": g.name.get_ref(),
                "command": g.command.get_ref(),
                "builtin": g.builtin.as_ref().map(|b| b.get_ref()),
                "found": found,
            })
        })
        .collect();
    let stages = pipeline_stages(plan);
    if as_json {
        let v = json!({
            "version": 1,
            "dry_run": true,
            "task": plan.target.task,
            "risk": plan.routing.risk.risk,
            "risk_reasons": plan.routing.risk.reasons,
            "start": plan.routing.start,
            "base": plan.target.base,
            "base_ref": plan.target.base_ref,
            "branch": branch,
            "worktree": worktree,
            "stages": stages.iter().map(|(s, d)| json!({"stage": s, "plan": d})).collect::<Vec<_>>(),
            "agents": {
                "builder": plan.agents.builder.as_ref().map(|b| json!({"name": b.name, "command": agent_argv(b)})),
                "verifier": {"name": plan.agents.verifier.name, "command": agent_argv(&plan.agents.verifier)},
            },
            "gates": gates,
            "scope": plan.policy.scope.record(),
            "ship": plan.landing.ship,
            "trust": {"needed": plan.policy.trust.needed, "trusted": plan.policy.trust.trusted, "config_blob": plan.policy.trust.blob},
            "warnings": plan.warnings,
        });
        let text = serde_json::to_string_pretty(&v)
            .map_err(|e| Error::other(format!("cannot encode the plan: {e}")))?;
        return emit(out, &format!("{text}\n"));
    }
    let mut t = String::new();
    t.push_str(&format!(
        "dry run: nothing will be created\n\ntask:     {}\nrisk:     {} ({}); {}\nbase:     {} ({})\nbranch:   {branch}\nworktree: {}\n\nstages:\n",
        crate::text::one_line(&plan.target.task, 70),
        plan.routing.risk.risk.name(),
        plan.routing.risk.reasons.join("; "),
        plan.routing.start_reason,
        plan.target.base_ref,
        &plan.target.base[..plan.target.base.len().min(12)],
        worktree.display(),
    ));
    for (stage, what) in &stages {
        t.push_str(&format!("  {stage:<13} {what}\n"));
    }
    t.push_str("\nscope:\n");
    for line in plan.policy.scope.describe() {
        t.push_str(&format!("  {line}\n"));
    }
    if plan.policy.trust.needed {
        t.push_str(if plan.policy.trust.trusted {
            "\ntrust: this .pipeline.toml is trusted on this machine\n"
        } else {
            "\ntrust: NOT trusted on this machine; a run refuses until you check it and run: git pipeline trust\n"
        });
    }
    if !plan.agents.templates.overridden.is_empty() {
        t.push_str(&format!(
            "\nprompts overridden by .pipeline/prompts/: {}\n",
            plan.agents.templates.overridden.join(", ")
        ));
    }
    for w in &plan.warnings {
        t.push_str(&format!("\nwarning: {w}\n"));
    }
    emit(out, &t)
}

/// The size of the builder's first prompt, as a run would render it (without discovery
/// findings or a plan, which a later stage may add).
fn first_builder_prompt_bytes(plan: &RunPlan) -> Option<usize> {
    let scope = plan.policy.scope.describe();
    plan.agents
        .templates
        .render(
            "builder",
            crate::plan::prompts::BuilderVars {
                run_id: "20260101-000000-0000",
                attempt: 1,
                branch: &format!("{}20260101-000000-0000", plan.landing.branch_prefix),
                base: &plan.target.base,
                task: &plan.target.task,
                spec: None,
                plan: None,
                scope: &scope,
                gates: plan
                    .policy
                    .gates
                    .iter()
                    .map(|g| g.name.get_ref().as_str())
                    .collect(),
                feedback: None,
            },
        )
        .ok()
        .map(|p| p.len())
}

fn pipeline_stages(plan: &RunPlan) -> Vec<(String, String)> {
    use crate::plan::Stage;
    let builder_prompt = first_builder_prompt_bytes(plan);
    let argv = |a: &crate::agent::RoleAgent| {
        let pick = match (a.role, builder_prompt) {
            (crate::preset::Role::Builder, Some(n)) => a.pick(n).map(|(_, c)| c),
            _ => a.candidates.first(),
        };
        pick.map(|c| c.argv.join(" ")).unwrap_or_default()
    };
    let mut v = Vec::new();
    let forced = plan.target.args.risk.is_some() || plan.target.args.stage.is_some();
    if let Some(r) = &plan.agents.router {
        v.push((
            "routing".to_owned(),
            if forced {
                "skipped: --risk or --stage decided".to_owned()
            } else {
                format!(
                    "`{}` ({}) may raise the risk (and start earlier), never lower it",
                    r.name,
                    argv(r)
                )
            },
        ));
    }
    let discovery = match (
        &plan.agents.discovery,
        plan.routing.start <= Stage::Discovery,
    ) {
        (_, false) => format!("skipped: {}", plan.routing.start_reason),
        (None, true) => "skipped: no [agents.discovery] configured".to_owned(),
        (Some(d), true) => format!(
            "{} agent(s) at once: {}",
            d.candidates.len(),
            d.each()
                .iter()
                .map(|a| a.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    v.push(("discovery".to_owned(), discovery));
    let planning = match (&plan.agents.planner, plan.routing.start <= Stage::Planning) {
        (_, false) => format!("skipped: {}", plan.routing.start_reason),
        (None, true) => "skipped: no [agents.planner] configured".to_owned(),
        (Some(p), true) => format!(
            "planner `{}` ({}), reviewer {}, up to {} round(s){}",
            p.name,
            argv(p),
            plan.agents.reviewer.as_ref().map_or(
                "none (the plan is not reviewed)".to_owned(),
                |r| format!("`{}` ({})", r.name, argv(r))
            ),
            plan.policy.plan_max_rounds,
            if plan.policy.user_scope {
                ""
            } else {
                "; the approved manifest becomes the scope"
            }
        ),
    };
    v.push(("planning".to_owned(), planning));
    if let Some(b) = &plan.agents.builder {
        let text = if plan.agents.candidates > 1 {
            format!(
                "{} candidates in parallel worktrees, each up to {} fix attempts; the verifier compares those that pass",
                plan.agents.candidates, plan.policy.max_fix_attempts
            )
        } else {
            format!(
                "builder `{}` ({}), up to {} fix attempts",
                b.name,
                argv(b),
                plan.policy.max_fix_attempts
            )
        };
        v.push(("execution".to_owned(), text));
    }
    v.push((
        "scope check".to_owned(),
        "changed paths against the scope".to_owned(),
    ));
    for g in &plan.policy.gates {
        let missing = match g.program() {
            Some(program) if crate::agent::find_program(program, &search_dir(plan)).is_none() => {
                "  [not found on PATH: this gate will fail]"
            }
            _ => "",
        };
        v.push((
            format!("gate {}", g.name.get_ref()),
            format!("{}{missing}", g.describe()),
        ));
    }
    v.push((
        "verification".to_owned(),
        format!(
            "verifier `{}` ({}), up to {} round(s)",
            plan.agents.verifier.name,
            argv(&plan.agents.verifier),
            plan.policy.max_rounds
        ),
    ));
    v.push((
        "docs".to_owned(),
        match &plan.agents.docs {
            None => "skipped: no [agents.docs] configured".to_owned(),
            Some(d) => format!(
                "`{}` ({}) when the change touches {}; may edit {}",
                d.name,
                argv(d),
                plan.policy.docs_when.patterns().join(", "),
                plan.policy.docs_paths.join(", ")
            ),
        },
    ));
    v.push((
        "ship".to_owned(),
        match plan.landing.ship {
            crate::config::ShipMode::Branch => "commit + attestation on the run branch".to_owned(),
            crate::config::ShipMode::Merge => format!(
                "commit + attestation, then fast-forward {} when safe",
                plan.target
                    .base_branch
                    .as_deref()
                    .unwrap_or(&plan.target.base_ref)
            ),
        },
    ));
    v
}

/// Where relative program paths are looked up before the worktree exists.
fn search_dir(plan: &RunPlan) -> std::path::PathBuf {
    plan.target
        .repo
        .work_tree
        .clone()
        .or_else(|| plan.target.repo.main_worktree.clone())
        .unwrap_or_else(|| plan.target.repo.common_dir.clone())
}

#[cfg(test)]
mod tests {
    use super::{human_count, human_secs};

    #[test]
    fn summaries_read_at_a_glance() {
        assert_eq!(human_count(950), "950");
        assert_eq!(human_count(18_234), "18.2k");
        assert_eq!(human_count(1_250_000), "1.2M");
        assert_eq!(human_secs(4.21), "4.2s");
        assert_eq!(human_secs(192.4), "3m 12s");
        assert_eq!(human_secs(3900.0), "1h 05m");
    }
}
