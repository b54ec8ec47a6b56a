//! The `duplicates` gate through jscpd (npm `jscpd`, 5.x), when it is installed: a well-kept
//! detector of many languages. It scans the run's worktree; its pairs are then judged by the same
//! rule as the in-process detector's: a pair counts only when one side is code the run added.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::duplicates::{Options, Repeat, language_of, report};
use crate::error::Error;
use crate::error::Result;

/// The jscpd on PATH and its version (`"5.3.2"`), when it is a 5.x.
pub fn installed(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("jscpd")
        .arg("--version")
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().trim_start_matches("jscpd").trim().to_owned();
    (out.status.success() && version.starts_with("5.")).then_some(version)
}

#[derive(Deserialize)]
struct ReportFile {
    duplicates: Vec<Duplicate>,
}

#[derive(Deserialize)]
struct Duplicate {
    #[serde(rename = "firstFile")]
    first: Place,
    #[serde(rename = "secondFile")]
    second: Place,
    #[serde(default)]
    tokens: usize,
}

#[derive(Deserialize)]
struct Place {
    name: String,
    start: u32,
    end: u32,
}

/// Run jscpd over `worktree` and keep the pairs where the run added one side.
pub fn check(
    worktree: &Path,
    added: &BTreeMap<PathBuf, Vec<u32>>,
    opts: &Options,
) -> Result<(bool, String)> {
    let out_dir = tempfile::tempdir().map_err(|e| Error::io("make a folder for jscpd", e))?;
    let mut cmd = std::process::Command::new("jscpd");
    cmd.current_dir(worktree)
        .stdin(std::process::Stdio::null())
        .args(["--reporters", "json", "--silent", "--output"])
        .arg(out_dir.path())
        .args(["--min-tokens", &opts.min_tokens.to_string()])
        .args(["--min-lines", &opts.min_lines.to_string()])
        .args(["--ignore", "**/.git/**"])
        .arg(".");
    let out = cmd
        .output()
        .map_err(|e| Error::other(format!("cannot run jscpd: {e}")))?;
    let path = out_dir.path().join("jscpd-report.json");
    let text = std::fs::read(&path).map_err(|_| {
        Error::other(format!(
            "jscpd wrote no report ({}): {}",
            crate::process_end::describe_status(&out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })?;
    let parsed: ReportFile = serde_json::from_slice(&text)
        .map_err(|e| Error::other(format!("cannot read jscpd's report: {e}")))?;
    let added_set: BTreeMap<&Path, BTreeSet<u32>> = added
        .iter()
        .map(|(p, l)| (p.as_path(), l.iter().copied().collect()))
        .collect();
    let looked_at = |p: &Path| {
        language_of(p)
            .is_some_and(|l| opts.languages.is_empty() || opts.languages.iter().any(|x| x == l))
            && !opts.ignore.is_match(p)
    };
    let is_added = |p: &Place| {
        added_set
            .get(Path::new(&p.name))
            .is_some_and(|set| (p.start..=p.end).all(|l| set.contains(&l)))
    };
    let mut repeats = Vec::new();
    for d in parsed.duplicates {
        if !looked_at(Path::new(&d.first.name)) || !looked_at(Path::new(&d.second.name)) {
            continue;
        }
        let (a, b) = (is_added(&d.first), is_added(&d.second));
        let (new, old) = match (a, b) {
            (false, false) => continue,
            (true, false) => (&d.first, &d.second),
            // Both added, or only the second: the second place is the repeat.
            _ => (&d.second, &d.first),
        };
        repeats.push(Repeat {
            new_path: PathBuf::from(&new.name),
            new_lines: (new.start, new.end),
            old_path: PathBuf::from(&old.name),
            old_lines: (old.start, old.end),
            old_added: a && b,
            tokens: d.tokens,
        });
    }
    let changed = added.keys().filter(|p| looked_at(p)).count();
    Ok((repeats.is_empty(), report(&repeats, changed, None)))
}
