//! `git pipeline status`: runs with their state, newest first.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::{age, emit, short_task};
use crate::cli::StatusCmd;
use crate::error::{Exit, Result};
use crate::git::Repo;
use crate::redact::Redactor;
use crate::store::Store;

pub fn status(cmd: StatusCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let store = Store::new(&repo.pipeline_dir());
    let redactor = Arc::new(Redactor::default());
    let mut rows = Vec::new();
    for id in store.list()? {
        let dir = store.find(&id, redactor.clone())?;
        match dir.read_record() {
            Ok(mut r) => {
                r.status = dir.effective_status(&r);
                rows.push(Ok(r));
            }
            Err(e) => rows.push(Err((id, e.to_string()))),
        }
    }
    if cmd.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| match row {
                Ok(r) => json!({
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
                }),
                Err((id, e)) => json!({"run_id": id, "status": "unreadable", "error": e}),
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
    let mut text = format!(
        "{:<20}  {:<22}  {:>4}  {:<40}  {}\n",
        "RUN", "STATE", "AGE", "TASK", "BRANCH"
    );
    for row in &rows {
        match row {
            Ok(r) => {
                let state = match (&r.stage, r.reason) {
                    (Some(stage), _) if !r.status.is_final() => {
                        format!("{} ({stage})", r.status.name())
                    }
                    (_, Some(reason)) => format!("{} ({})", r.status.name(), reason.name()),
                    _ => r.status.name().to_owned(),
                };
                let branch = if r.rolled_back {
                    "-"
                } else {
                    r.branch.as_str()
                };
                text.push_str(&format!(
                    "{:<20}  {:<22}  {:>4}  {:<40}  {}\n",
                    r.run_id,
                    state,
                    age(&r.created_at),
                    short_task(&r.task, 40),
                    branch
                ));
            }
            Err((id, e)) => text.push_str(&format!("{id:<20}  unreadable: {e}\n")),
        }
    }
    emit(out, &text)?;
    Ok(Exit::Success)
}
