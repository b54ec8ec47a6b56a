//! Bundles on the command line: `git pipeline plan PATH`, `git pipeline run --bundle PATH`, and
//! what `show`, `status`, `resume` and `abandon` do with a bundle id.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::emit;
use crate::bundle::dag::Graph;
use crate::bundle::record;
use crate::bundle::record::BUNDLE_INPUT;
use crate::bundle::record::BundleRecord;
use crate::bundle::record::BundleStatus;
use crate::bundle::record::WsState;
use crate::bundle::spec::Bundle;
use crate::bundle::validate::Checked;
use crate::cli::PlanCmd;
use crate::error::Error;
use crate::error::Exit;
use crate::error::Result;
use crate::fanout::bundle::BundlePlan;
use crate::git::Repo;
use crate::plan::RunArgs;
use crate::store::EventKind;
use crate::store::RunDir;
use crate::store::Store;
use crate::ui::Ui;

/// `git pipeline plan PATH`: every problem at once (exit 3), or the DAG and its order.
pub fn plan(cmd: PlanCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let checked = match Repo::discover(cwd) {
        Ok(repo) => {
            let (base, _, loaded) = match crate::plan::base_and_config(&repo, cmd.base.as_deref()) {
                Ok(x) => (Some(x.0), x.1, Some(x.2)),
                Err(_) if cmd.base.is_none() => (None, String::new(), None),
                Err(e) => return Err(e),
            };
            match (&base, &loaded) {
                (Some(b), Some(l)) => {
                    crate::bundle::validate::check(&cmd.path, Some((&repo, b, l)))
                }
                _ => crate::bundle::validate::check(&cmd.path, None).map(|mut c| {
                    c.notes = vec![
                        "no committed .pipeline.toml: gates and overlapping scopes were not checked"
                            .to_owned(),
                    ];
                    c
                }),
            }
        }
        Err(_) => crate::bundle::validate::check(&cmd.path, None),
    };
    let checked = match checked {
        Ok(c) => c,
        Err(Error::Invalid {
            message, problems, ..
        }) if cmd.json => {
            let v = json!({"valid": false, "message": message, "problems": problems});
            emit(out, &format!("{}\n", pretty(&v)))?;
            return Ok(Exit::Usage);
        }
        Err(e) => return Err(e),
    };
    let source = cmd.path.display().to_string();
    if cmd.json {
        let levels = named_levels(&checked.graph);
        let v = json!({
            "valid": true,
            "source": source,
            "workstreams": checked.bundle.workstreams.len(),
            "levels": levels,
            "order": levels.concat(),
            "notes": checked.notes,
        });
        emit(out, &format!("{}\n", pretty(&v)))?;
    } else {
        emit(out, &describe(&source, &checked))?;
    }
    Ok(Exit::Success)
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn named_levels(g: &Graph) -> Vec<Vec<String>> {
    g.levels()
        .iter()
        .map(|l| l.iter().map(|&i| g.ids[i].clone()).collect())
        .collect()
}

/// The DAG as text: each workstream on its level, with what it waits for.
fn describe(source: &str, c: &Checked) -> String {
    let g = &c.graph;
    let levels = g.levels();
    let widest = levels.iter().map(Vec::len).max().unwrap_or(0);
    let mut t = format!(
        "bundle {source}: valid; {} workstream{} in {} level{} (at most {widest} at once)\n",
        g.ids.len(),
        plural(g.ids.len()),
        levels.len(),
        plural(levels.len()),
    );
    for n in &c.notes {
        t.push_str(&format!("note: {n}\n"));
    }
    t.push('\n');
    let width = g
        .ids
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .min(24);
    for (l, members) in levels.iter().enumerate() {
        for (k, &i) in members.iter().enumerate() {
            let label = if k == 0 {
                format!("level {}", l + 1)
            } else {
                String::new()
            };
            let waits = if g.deps[i].is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = g.deps[i].iter().map(|&d| g.ids[d].as_str()).collect();
                format!("  ◄── {}", names.join(", "))
            };
            let task = crate::text::one_line(&c.bundle.workstreams[i].task, 60);
            t.push_str(&format!("{label:<9} {:<width$}  {task}{waits}\n", g.ids[i]));
        }
    }
    let order: Vec<String> = named_levels(g).concat();
    t.push_str(&format!("\norder: {}\n", order.join(", ")));
    t
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// How many workstreams run at once unless `--jobs` says.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4)
}

/// `git pipeline run --bundle PATH`.
pub fn run(
    path: &Path,
    jobs: Option<usize>,
    shared: RunArgs,
    cwd: &Path,
    out: &mut dyn Write,
    ui: &Ui,
    flags: (bool, bool),
) -> Result<Exit> {
    let (dry_run, json) = flags;
    let base = shared.base.clone();
    let plan = BundlePlan::prepare(
        cwd,
        path,
        base.as_deref(),
        jobs.unwrap_or_else(default_jobs),
        shared,
    )?;
    if dry_run {
        let checked = Checked {
            bundle: plan.bundle.clone(),
            graph: plan.graph.clone(),
            notes: Vec::new(),
        };
        let mut t = describe(&plan.source, &checked);
        t.push_str(&format!(
            "\nbase {} ({}); {} at once; results would merge onto {}\n",
            plan.base,
            plan.base_ref,
            plan.jobs,
            plan.integration_branch("<bundle-id>")
        ));
        if plan.trust.needed && !plan.trust.trusted {
            t.push_str("the config is not trusted yet: run git pipeline trust first\n");
        }
        emit(out, &t)?;
        return Ok(Exit::Success);
    }
    plan.trust.require(&plan.loaded, &plan.base_ref)?;
    execute(&plan, out, ui, json)
}

/// Run a prepared bundle and print how it ended.
pub fn execute(plan: &BundlePlan, out: &mut dyn Write, ui: &Ui, json: bool) -> Result<Exit> {
    let rec = super::interruptible(|cancel| async move {
        crate::fanout::bundle::run(plan, ui, cancel).await
    })?;
    report(&rec, out, ui, json)
}

/// `git pipeline resume BUNDLE`.
pub fn resume(dir: RunDir, cwd: &Path, out: &mut dyn Write, ui: &Ui, json: bool) -> Result<Exit> {
    let rec = record::read(&dir.path)?;
    if rec.status.is_final() {
        return Err(Error::usage_hint(
            format!(
                "bundle {} already ended ({}); nothing to resume",
                rec.bundle_id,
                rec.status.name()
            ),
            "start a new one with git pipeline run --bundle",
        ));
    }
    let input = dir.path.join(BUNDLE_INPUT);
    let bytes = std::fs::read(&input).map_err(|e| Error::io_path("read", &input, e))?;
    let bundle: Bundle = serde_json::from_slice(&bytes).map_err(|e| {
        Error::other(format!(
            "the bundle kept in {} is unreadable: {e}",
            input.display()
        ))
    })?;
    let repo = Repo::discover(cwd)?;
    let loaded = crate::plan::load_config(&repo, &rec.base, &rec.base_ref)?;
    let (graph, _) = Graph::new(&bundle.workstreams);
    let shared = RunArgs {
        agents: rec.agents.clone(),
        keep: rec.keep,
        risk: rec.risk,
        stage: rec.stage.as_deref().and_then(crate::plan::Stage::parse),
        ..RunArgs::default()
    };
    let mut plan = BundlePlan::from_checked(
        repo,
        Checked {
            bundle,
            graph,
            notes: Vec::new(),
        },
        rec.source.clone(),
        rec.base.clone(),
        rec.base_ref.clone(),
        loaded,
        rec.jobs,
        shared,
    )?;
    plan.parent_run = rec.parent_run.clone();
    plan.trust.require(&plan.loaded, &plan.base_ref)?;
    let dir = dir.with_redactor(Arc::new(crate::fanout::bundle::bundle_redactor(&plan)));
    let plan = &plan;
    let rec = super::interruptible(|cancel| async move {
        crate::fanout::bundle::resume(plan, ui, dir, rec, cancel).await
    })?;
    report(&rec, out, ui, json)
}

/// Print how a bundle ended; its exit code.
pub fn report(rec: &BundleRecord, out: &mut dyn Write, ui: &Ui, json: bool) -> Result<Exit> {
    let exit = rec.exit();
    if json {
        emit(out, &format!("{}\n", pretty(&json!(rec))))?;
        return Ok(exit);
    }
    let c = rec.counts();
    let n = rec.workstreams.len();
    let tip = rec
        .integration_commit
        .as_deref()
        .map(|c| format!(" at {}", &c[..c.len().min(12)]))
        .unwrap_or_default();
    match rec.status {
        BundleStatus::Completed => {
            emit(
                out,
                &format!(
                    "bundle {} completed: {n} of {n} workstreams shipped onto {}{tip}\n  merge it: git merge {}\n",
                    rec.bundle_id, rec.integration_branch, rec.integration_branch
                ),
            )?;
        }
        BundleStatus::Interrupted => {
            ui.error(format!("bundle {} interrupted ({c})", rec.bundle_id));
            ui.detail(format!(
                "continue it: git pipeline resume {0}   (or drop it: git pipeline abandon {0})",
                rec.bundle_id
            ));
        }
        _ => {
            ui.error(format!(
                "bundle {} {}: {} of {n} workstreams shipped ({c})",
                rec.bundle_id,
                rec.status.name(),
                c.succeeded
            ));
            for w in &rec.workstreams {
                if matches!(w.state, WsState::Failed | WsState::Blocked) {
                    let run = w
                        .run_id
                        .as_deref()
                        .map(|r| format!("  (git pipeline show {r})"))
                        .unwrap_or_default();
                    ui.detail(format!(
                        "{} {}: {}{run}",
                        w.id,
                        w.state.name(),
                        w.error.as_deref().unwrap_or("")
                    ));
                }
            }
            if c.succeeded > 0 {
                emit(
                    out,
                    &format!(
                        "bundle {} {}: {} of {n} workstreams shipped onto {}{tip}\n",
                        rec.bundle_id,
                        rec.status.name(),
                        c.succeeded,
                        rec.integration_branch
                    ),
                )?;
            }
        }
    }
    Ok(exit)
}

/// `git pipeline show BUNDLE`.
pub fn show(dir: &RunDir, out: &mut dyn Write, json: bool) -> Result<Exit> {
    let mut rec = record::read(&dir.path)?;
    rec.status = effective_status(dir, &rec);
    if json {
        emit(out, &format!("{}\n", pretty(&json!(rec))))?;
        return Ok(Exit::Success);
    }
    let mut t = String::new();
    t.push_str(&format!("bundle       {}\n", rec.bundle_id));
    t.push_str(&format!(
        "state        {} ({})\n",
        rec.status.name(),
        rec.counts()
    ));
    t.push_str(&format!("source       {}\n", rec.source));
    t.push_str(&format!("base         {} ({})\n", rec.base, rec.base_ref));
    t.push_str(&format!(
        "integration  {}{}\n",
        rec.integration_branch,
        rec.integration_commit
            .as_deref()
            .map(|c| format!(" at {c}"))
            .unwrap_or_default()
    ));
    if let Some(p) = &rec.parent_run {
        t.push_str(&format!("planned by   run {p}\n"));
    }
    t.push_str(&format!(
        "jobs         {}\ntime         {:.1}s, {} tokens{}\n",
        rec.jobs,
        rec.total_time_s,
        rec.tokens(),
        rec.cost().map(|c| format!(", ${c:.2}")).unwrap_or_default()
    ));
    t.push_str("\nworkstreams\n");
    let width = rec
        .workstreams
        .iter()
        .map(|w| w.id.chars().count())
        .max()
        .unwrap_or(0)
        .min(24);
    for w in &rec.workstreams {
        let detail = match w.state {
            WsState::Succeeded => w
                .commit
                .as_deref()
                .map(|c| {
                    format!(
                        "{} at {}",
                        w.branch.as_deref().unwrap_or(""),
                        &c[..c.len().min(12)]
                    )
                })
                .unwrap_or_default(),
            _ => w.error.clone().unwrap_or_default(),
        };
        t.push_str(&format!(
            "  {:<width$}  {:<11}  {:<20}  {detail}\n",
            w.id,
            w.state.name(),
            w.run_id.as_deref().unwrap_or("-"),
        ));
        if !w.depends_on.is_empty() {
            t.push_str(&format!(
                "  {:<width$}  after {}\n",
                "",
                w.depends_on.join(", ")
            ));
        }
    }
    emit(out, &t)?;
    Ok(Exit::Success)
}

/// A bundle recorded as running whose process is gone is interrupted.
pub fn effective_status(dir: &RunDir, rec: &BundleRecord) -> BundleStatus {
    match (rec.status, dir.liveness()) {
        (BundleStatus::Running, crate::store::lock::Liveness::Free) => BundleStatus::Interrupted,
        (s, _) => s,
    }
}

/// `git pipeline abandon BUNDLE`: every unfinished workstream run abandoned, the bundle too.
pub fn abandon(dir: RunDir, cwd: &Path, out: &mut dyn Write, json: bool) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let _lock = dir.lock()?;
    let mut rec = record::read(&dir.path)?;
    if rec.status == BundleStatus::Abandoned {
        return Err(Error::usage(format!(
            "bundle {} is already abandoned",
            rec.bundle_id
        )));
    }
    let store = Store::new(&repo.pipeline_dir());
    let mut abandoned = Vec::new();
    for w in &mut rec.workstreams {
        let Some(run_id) = &w.run_id else { continue };
        let Ok(run_dir) = store.find(run_id, Default::default()) else {
            continue;
        };
        let Ok(run_rec) = run_dir.read_record() else {
            continue;
        };
        if run_rec.status.is_final() {
            continue;
        }
        let _run_lock = run_dir.lock()?;
        crate::run::abandon::abandon(
            &repo,
            &run_dir,
            run_rec,
            &format!("abandoned with bundle {}", dir.id),
        )?;
        w.state = WsState::Failed;
        w.error = Some("abandoned".to_owned());
        abandoned.push(w.id.clone());
    }
    rec.status = BundleStatus::Abandoned;
    rec.ended_at = Some(crate::ids::now_rfc3339());
    dir.write_json(record::BUNDLE_RECORD, &rec)?;
    dir.event(
        None,
        EventKind::Abandoned,
        json!({"workstreams": abandoned}),
    )?;
    if json {
        emit(out, &format!("{}\n", pretty(&json!(rec))))?;
    } else {
        emit(
            out,
            &format!(
                "abandoned bundle {}{}; its integration branch {} keeps what shipped\n",
                rec.bundle_id,
                if abandoned.is_empty() {
                    String::new()
                } else {
                    format!(" and the runs of {}", abandoned.join(", "))
                },
                rec.integration_branch
            ),
        )?;
    }
    Ok(Exit::Success)
}
