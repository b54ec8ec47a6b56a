//! `git pipeline status`: runs and bundles with their state, newest first. A bundle's
//! workstream runs are listed under it.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::{age, emit};
use crate::bundle::record as bundle_record;
use crate::bundle::record::BundleRecord;
use crate::cli::StatusCmd;
use crate::error::Exit;
use crate::error::Result;
use crate::git::Repo;
use crate::redact::Redactor;
use crate::store::Store;
use crate::store::record::RunSummary;
use crate::text::one_line;

enum Row {
    Run(Box<RunSummary>),
    Bundle(Box<BundleRecord>),
    Unreadable(String, String),
}

pub fn status(cmd: StatusCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let store = Store::new(&repo.pipeline_dir());
    let redactor = Arc::new(Redactor::default());
    let mut rows = Vec::new();
    for id in store.list()? {
        let dir = store.open(&id, redactor.clone());
        if bundle_record::is_bundle(&dir.path) {
            match bundle_record::read(&dir.path) {
                Ok(mut b) => {
                    b.status = super::bundle::effective_status(&dir, &b);
                    rows.push(Row::Bundle(Box::new(b)));
                }
                Err(e) => rows.push(Row::Unreadable(id, e.to_string())),
            }
            continue;
        }
        match dir.read_summary() {
            Ok(mut r) => {
                r.status = dir.effective(r.status);
                rows.push(Row::Run(Box::new(r)));
            }
            Err(e) => rows.push(Row::Unreadable(id, e.to_string())),
        }
    }
    if cmd.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| match row {
                Row::Run(r) => json!({
                    "run_id": r.run_id,
                    "status": r.status,
                    "stage": r.stage,
                    "reason": r.reason,
                    "task": r.task,
                    "branch": r.branch,
                    "commit": r.commit,
                    "worktree": r.worktree,
                    "created_at": r.created_at,
                    "ended_at": r.ended_at,
                    "bundle": r.bundle,
                    "candidate_of": r.candidate_of,
                    "split_into": r.split_into,
                }),
                Row::Bundle(b) => json!({
                    "bundle_id": b.bundle_id,
                    "kind": "bundle",
                    "status": b.status,
                    "source": b.source,
                    "integration_branch": b.integration_branch,
                    "workstreams": b.workstreams.iter().map(|w| json!({
                        "id": w.id, "state": w.state, "run_id": w.run_id,
                    })).collect::<Vec<_>>(),
                    "created_at": b.created_at,
                    "ended_at": b.ended_at,
                }),
                Row::Unreadable(id, e) => json!({"run_id": id, "status": "unreadable", "error": e}),
            })
            .collect();
        let text = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".to_owned());
        emit(out, &format!("{text}\n"))?;
        return Ok(Exit::Success);
    }
    if rows.is_empty() {
        emit(
            out,
            "no runs yet (start one with: git pipeline run \"<task>\")\n",
        )?;
        return Ok(Exit::Success);
    }
    // A run that split its task "succeeded" at splitting; what the task came to is its bundle's.
    let bundle_status: std::collections::HashMap<&str, &str> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Bundle(b) => Some((b.bundle_id.as_str(), b.status.name())),
            _ => None,
        })
        .collect();
    let split_state = |r: &RunSummary| {
        r.split_into.as_deref().map(|b| {
            format!(
                "split: {}",
                bundle_status.get(b).copied().unwrap_or("bundle gone")
            )
        })
    };
    let runs_of_bundles: std::collections::HashMap<String, &RunSummary> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Run(r) if r.bundle.is_some() => Some((r.run_id.clone(), r.as_ref())),
            _ => None,
        })
        .collect();
    let mut text = format!(
        "{:<20}  {:<22}  {:>4}  {:<40}  {}\n",
        "RUN", "STATE", "AGE", "TASK", "BRANCH"
    );
    for row in &rows {
        match row {
            // Listed under their bundle, or under the run they are candidates of.
            Row::Run(r) if r.bundle.is_some() || r.candidate_of.is_some() => {}
            Row::Run(r) => {
                text.push_str(&match split_state(r) {
                    Some(state) => run_line_with(r, &r.run_id, 40, &state),
                    None => run_line(r, &r.run_id, 40),
                });
                for row in &rows {
                    if let Row::Run(c) = row
                        && let Some(of) = &c.candidate_of
                        && of.parent == r.run_id
                    {
                        text.push_str(&run_line(c, &format!("  └ candidate {}", of.index), 40));
                    }
                }
            }
            Row::Bundle(b) => {
                text.push_str(&format!(
                    "{:<20}  {:<22}  {:>4}  {:<40}  {}\n",
                    b.bundle_id,
                    format!(
                        "{} ({}/{})",
                        b.status.name(),
                        b.counts().succeeded,
                        b.workstreams.len()
                    ),
                    age(&b.created_at),
                    one_line(
                        &format!("bundle of {} workstreams", b.workstreams.len()),
                        40
                    ),
                    b.integration_branch
                ));
                for w in &b.workstreams {
                    let label: String = format!("  └ {}", w.id).chars().take(20).collect();
                    match w.run_id.as_deref().and_then(|id| runs_of_bundles.get(id)) {
                        Some(r) => {
                            let mut line = run_line(r, &label, 40);
                            // The run shipped, but the bundle did not take its result: say
                            // what the bundle says (blocked by a conflict, not merged yet).
                            let ws = match (w.state, w.integrated) {
                                (crate::bundle::record::WsState::Blocked, _) => Some(format!(
                                    "blocked ({})",
                                    w.reason.map_or("blocked", |r| r.name())
                                )),
                                (crate::bundle::record::WsState::Succeeded, false)
                                    if r.status == crate::store::record::Status::Succeeded =>
                                {
                                    Some("shipped, not merged".to_owned())
                                }
                                _ => None,
                            };
                            if let Some(ws) = ws {
                                line = run_line_with(r, &label, 40, &ws);
                            }
                            text.push_str(&line);
                        }
                        None => text.push_str(&format!(
                            "{:<20}  {:<22}  {:>4}  {:<40}  -\n",
                            label,
                            w.state.name(),
                            "",
                            one_line(&w.task, 40)
                        )),
                    }
                }
            }
            Row::Unreadable(id, e) => text.push_str(&format!("{id:<20}  unreadable: {e}\n")),
        }
    }
    emit(out, &text)?;
    Ok(Exit::Success)
}

fn run_line(r: &RunSummary, label: &str, width: usize) -> String {
    let state = match (&r.stage, r.reason) {
        (Some(stage), _) if !r.status.is_final() => format!("{} ({stage})", r.status.name()),
        (_, Some(reason)) => format!("{} ({})", r.status.name(), reason.name()),
        _ => r.status.name().to_owned(),
    };
    run_line_with(r, label, width, &state)
}

fn run_line_with(r: &RunSummary, label: &str, width: usize, state: &str) -> String {
    let branch = if r.rolled_back {
        "-"
    } else {
        r.branch.as_str()
    };
    format!(
        "{:<20}  {:<22}  {:>4}  {:<width$}  {}\n",
        label,
        state,
        age(&r.created_at),
        one_line(&r.task, width),
        branch
    )
}
