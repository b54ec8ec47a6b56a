//! `git pipeline show RUN`: one run in detail.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::emit;
use crate::cli::ShowCmd;
use crate::error::Error;
use crate::error::Exit;
use crate::error::Result;
use crate::git::Repo;
use crate::redact::Redactor;
use crate::store::Store;
use crate::store::record::StageStatus;

pub fn show(cmd: ShowCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let store = Store::new(&repo.pipeline_dir());
    let dir = store.find(&cmd.run, Arc::new(Redactor::default()))?;
    if crate::bundle::record::is_bundle(&dir.path) {
        return super::bundle::show(&dir, out, cmd.json);
    }
    let mut r = dir.read_record()?;
    r.status = dir.effective_status(&r);
    if cmd.json {
        let text = serde_json::to_string_pretty(&r)
            .map_err(|e| Error::other(format!("cannot encode the run: {e}")))?;
        emit(out, &format!("{text}\n"))?;
        return Ok(Exit::Success);
    }
    let mut t = String::new();
    t.push_str(&format!("run       {}\n", r.run_id));
    let state = match (r.reason, &r.stage) {
        (Some(reason), _) => format!("{} ({})", r.status.name(), reason.name()),
        (None, Some(stage)) => format!("{} ({stage})", r.status.name()),
        _ => r.status.name().to_owned(),
    };
    t.push_str(&format!("state     {state}\n"));
    if let Some(e) = &r.error {
        t.push_str(&format!("error     {e}\n"));
    }
    t.push_str(&format!(
        "risk      {} ({})\n",
        r.risk.name(),
        r.risk_reasons.join("; ")
    ));
    t.push_str(&format!("base      {} ({})\n", r.base, r.base_ref));
    t.push_str(&format!(
        "branch    {}{}\n",
        r.branch,
        if r.rolled_back { " (deleted)" } else { "" }
    ));
    if let Some(c) = &r.commit {
        t.push_str(&format!("commit    {c}\n"));
    }
    if let Some(b) = &r.split_into {
        // The run "succeeded" in splitting; what the task came to is the bundle's outcome.
        let outcome = store
            .find(b, Arc::new(Redactor::default()))
            .ok()
            .and_then(|d| crate::bundle::record::read(&d.path).ok())
            .map_or_else(
                || "its record is gone".to_owned(),
                |rec| rec.status.name().to_owned(),
            );
        t.push_str(&format!(
            "split     the plan became bundle {b}: {outcome} (git pipeline show {b})\n"
        ));
    }
    if let Some(sb) = &r.sandbox {
        t.push_str(&format!("sandbox   {sb} (every agent and gate step)\n"));
    }
    if let Some(m) = &r.merge {
        t.push_str(&format!("merge     {m}\n"));
    }
    if let Some(w) = &r.worktree {
        t.push_str(&format!("worktree  {}\n", w.display()));
    }
    if let Some(a) = &r.archive {
        t.push_str(&format!("archive   {a}\n"));
    }
    t.push_str(&format!("record    {}\n", dir.path.display()));
    t.push_str(&format!(
        "\ntask\n  {}\n",
        r.task.trim().replace('\n', "\n  ")
    ));
    t.push_str("\nstages\n");
    for s in &r.stages {
        let status = match s.status {
            StageStatus::Pass => "pass",
            StageStatus::Fail => "FAIL",
            StageStatus::Skip => "skip",
        };
        let who = s
            .agent
            .as_deref()
            .map(|a| format!(" {a}"))
            .unwrap_or_default();
        let extra = s
            .error
            .as_deref()
            .or(s.note.as_deref())
            .map(|e| format!("  {e}"))
            .unwrap_or_default();
        let tokens = if s.tokens > 0 {
            format!(
                "  {}{} tokens",
                if s.tokens_estimated { "~" } else { "" },
                s.tokens
            )
        } else {
            String::new()
        };
        t.push_str(&format!(
            "  {:<13} #{:<2} {status}{who}{tokens}{extra}\n",
            s.stage, s.attempt
        ));
    }
    if !r.gates.is_empty() {
        t.push_str("\ngates\n");
        for g in &r.gates {
            let status = if g.status == StageStatus::Pass {
                "pass"
            } else {
                "FAIL"
            };
            let err = g
                .error
                .as_deref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default();
            t.push_str(&format!(
                "  {:<13} #{:<2} {status} {:.1}s{err}\n",
                g.name, g.attempt, g.duration_s
            ));
        }
    }
    t.push_str(&format!(
        "\nverification\n  rounds {}, {}\n",
        r.verification.rounds,
        if r.verification.approved {
            "approved"
        } else {
            "not approved"
        }
    ));
    for i in &r.verification.issues {
        t.push_str(&format!("  - {i}\n"));
    }
    if !r.candidates.is_empty() {
        t.push_str("\ncandidates\n");
        for c in &r.candidates {
            t.push_str(&format!(
                "  {}  {:<20}  {:<12}  {:<10}  {}\n",
                c.index,
                c.run_id,
                c.agent,
                c.state,
                c.error.as_deref().unwrap_or("")
            ));
        }
    }
    if let Some(of) = &r.candidate_of {
        t.push_str(&format!(
            "\ncandidate {} of run {} (git pipeline show {})\n",
            of.index, of.parent, of.parent
        ));
    }
    if !r.changed_paths.is_empty() {
        t.push_str("\nchanged paths\n");
        for p in &r.changed_paths {
            t.push_str(&format!("  {p}\n"));
        }
    }
    t.push_str(&format!("\nfiles in {}\n", dir.path.display()));
    for sub in ["prompts", "outputs"] {
        let mut names: Vec<String> = std::fs::read_dir(dir.path.join(sub))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for n in names {
            t.push_str(&format!("  {n}\n"));
        }
    }
    for a in r.artifacts.values() {
        t.push_str(&format!("  {a}\n"));
    }
    t.push_str("  events.jsonl (git pipeline events RUN)\n");
    let m = &r.metrics;
    t.push_str(&format!(
        "\nmetrics\n  time {:.1}s, tokens {}, fix attempts {}, verification rounds {}, stages run {}, skipped {}\n",
        m.total_time_s, m.tokens, m.fix_attempts, m.verification_rounds, m.stages_executed, m.stages_skipped
    ));
    emit(out, &t)?;
    Ok(Exit::Success)
}
