//! `git pipeline events RUN [--follow]` and `git pipeline stats`.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::emit;
use crate::cli::EventsCmd;
use crate::cli::StatsCmd;
use crate::error::Error;
use crate::error::Exit;
use crate::error::Result;
use crate::git::Repo;
use crate::redact::Redactor;
use crate::store::RunDir;
use crate::store::Store;
use crate::store::lock::Liveness;
use crate::store::parse_events;
use crate::store::record::StageName;
use crate::store::record::StageStatus;
use crate::store::record::Status;

pub fn events(cmd: EventsCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let store = Store::new(&repo.pipeline_dir());
    let dir = store.find(&cmd.run, Arc::new(Redactor::default()))?;
    let path = dir.events_path();
    let mut offset: u64 = 0;
    let mut pending = String::new();
    let print = |out: &mut dyn Write, text: &str| -> Result<()> {
        for ev in parse_events(text) {
            emit(
                out,
                &(if cmd.json {
                    format!("{ev}\n")
                } else {
                    human(&ev)
                }),
            )?;
        }
        Ok(())
    };
    loop {
        let chunk = read_from(&path, &mut offset)?;
        pending.push_str(&chunk);
        // Only whole lines: a line still being written is kept for the next read.
        let upto = pending.rfind('\n').map_or(0, |i| i + 1);
        let complete: String = pending.drain(..upto).collect();
        print(out, &complete)?;
        let _ = out.flush();
        if !cmd.follow || !still_running(&dir) {
            if !cmd.follow {
                // A torn last line is not an event.
                break;
            }
            // Read what the run wrote just before it ended, then stop.
            let tail = read_from(&path, &mut offset)?;
            pending.push_str(&tail);
            print(out, &pending)?;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Exit::Success)
}

fn still_running(dir: &RunDir) -> bool {
    matches!(dir.liveness(), Liveness::Alive(_))
}

fn read_from(path: &Path, offset: &mut u64) -> Result<String> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(Error::io_path("open", path, e)),
    };
    f.seek(SeekFrom::Start(*offset))
        .map_err(|e| Error::io_path("read", path, e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| Error::io_path("read", path, e))?;
    *offset += buf.len() as u64;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `12:04:05.123  execution  agent_exited  role=builder end=exit status 0 ...`
fn human(ev: &Value) -> String {
    let ts = ev["ts"].as_str().unwrap_or("");
    let time = ts.split('T').nth(1).unwrap_or(ts).trim_end_matches('Z');
    let stage = match (ev["workstream"].as_str(), ev["stage"].as_str()) {
        (Some(w), Some(s)) => format!("[{w}] {s}"),
        (Some(w), None) => format!("[{w}]"),
        (None, s) => s.unwrap_or("-").to_owned(),
    };
    let event = ev["event"].as_str().unwrap_or("?");
    let data = match &ev["data"] {
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    format!("{time:<12}  {stage:<12}  {event:<14}  {data}\n")
}

pub fn stats(cmd: StatsCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let store = Store::new(&repo.pipeline_dir());
    let mut by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut finished, mut succeeded) = (0u64, 0u64);
    let (mut verified, mut first_pass) = (0u64, 0u64);
    let (mut fix_sum, mut scope_violations, mut runs) = (0u64, 0u64, 0u64);
    let (mut tokens, mut cost, mut costed) = (0u64, 0f64, 0u64);
    let mut with_tokens = 0u64;
    let mut stage_time: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let mut unreadable = 0u64;
    for id in store.list()? {
        let dir = store.open(&id, Arc::new(Redactor::default()));
        let Ok(r) = dir.read_record() else {
            unreadable += 1;
            continue;
        };
        // A best-of-N candidate is part of its run's task: its tokens and cost are already in
        // the run's totals, and its outcome is the run's.
        if r.candidate_of.is_some() {
            continue;
        }
        runs += 1;
        let status = dir.effective_status(&r);
        *by_status.entry(status.name()).or_default() += 1;
        if status.is_final() {
            finished += 1;
            fix_sum += u64::from(r.metrics.fix_attempts);
        }
        if status == Status::Succeeded {
            succeeded += 1;
        }
        if let Some(first) = r.stages.iter().find(|s| s.stage == StageName::Verification) {
            verified += 1;
            if first.status == StageStatus::Pass {
                first_pass += 1;
            }
        }
        scope_violations += u64::from(r.metrics.scope_violations);
        tokens += r.metrics.tokens;
        if r.metrics.tokens > 0 {
            with_tokens += 1;
        }
        if let Some(c) = r.metrics.cost_usd {
            cost += c;
            costed += 1;
        }
        for s in &r.stages {
            if let (Some(a), Some(b)) = (&s.started_at, &s.ended_at)
                && let (Ok(a), Ok(b)) = (
                    humantime::parse_rfc3339_weak(a),
                    humantime::parse_rfc3339_weak(b),
                )
                && let Ok(d) = b.duration_since(a)
            {
                let e = stage_time.entry(s.stage.name().to_owned()).or_default();
                e.0 += d.as_secs_f64();
                e.1 += 1;
            }
        }
    }
    let rate = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    let mean = |n: f64, d: u64| (d > 0).then(|| n / d as f64);
    let stage_means: BTreeMap<String, f64> = stage_time
        .iter()
        .map(|(k, (sum, n))| (k.clone(), sum / *n as f64))
        .collect();
    let v = json!({
        "runs": runs,
        "by_status": by_status,
        "unreadable": unreadable,
        "success_rate": rate(succeeded, finished),
        "first_pass_verification_rate": rate(first_pass, verified),
        "mean_fix_attempts": mean(fix_sum as f64, finished),
        "scope_violations": scope_violations,
        "mean_stage_seconds": stage_means,
        "finished": finished,
        "verified": verified,
        "mean_tokens_per_run": mean(tokens as f64, with_tokens),
        "runs_with_tokens": with_tokens,
        "mean_cost_usd_per_run": mean(cost, costed),
        "runs_with_cost": costed,
        "total_cost_usd": (costed > 0).then_some(cost),
    });
    if cmd.json {
        emit(
            out,
            &format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()),
        )?;
        return Ok(Exit::Success);
    }
    let pct = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{:.0}%", x * 100.0));
    let num = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.1}"));
    let mut t = format!("runs (tasks)               {runs}");
    if !by_status.is_empty() {
        let parts: Vec<String> = by_status.iter().map(|(k, n)| format!("{n} {k}")).collect();
        t.push_str(&format!(" ({})", parts.join(", ")));
    }
    t.push('\n');
    let over = |n: u64, what: &str| {
        if n == runs {
            String::new()
        } else {
            format!(" (over {n} {what})")
        }
    };
    t.push_str(&format!(
        "success rate               {}{}\n",
        pct(rate(succeeded, finished)),
        over(finished, "finished")
    ));
    t.push_str(&format!(
        "first-pass verification    {}{}\n",
        pct(rate(first_pass, verified)),
        over(verified, "that reached verification")
    ));
    t.push_str(&format!(
        "mean fix attempts          {}{}\n",
        num(mean(fix_sum as f64, finished)),
        over(finished, "finished")
    ));
    t.push_str(&format!("scope violations           {scope_violations}\n"));
    t.push_str(&format!(
        "mean tokens per run        {}{}\n",
        num(mean(tokens as f64, with_tokens)),
        over(with_tokens, "that reported tokens")
    ));
    t.push_str(&format!(
        "mean cost per run          {}{}\n",
        mean(cost, costed).map_or("-".to_owned(), |c| format!("${c:.4}")),
        if costed == 0 {
            " (no run reported a cost)".to_owned()
        } else {
            over(costed, "that reported a cost")
        }
    ));
    if !stage_means.is_empty() {
        t.push_str("mean time per stage\n");
        for (k, s) in &stage_means {
            t.push_str(&format!("  {k:<24} {s:.1}s\n"));
        }
    }
    emit(out, &t)?;
    Ok(Exit::Success)
}
