//! Which version of each agent CLI the contract suite passed on (`tested.tsv`, the one list that
//! `tests/agents/install` installs from), and what version a CLI on this machine says it is.

use std::path::Path;
use std::time::Duration;

/// One row of `tested.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tested {
    pub preset: &'static str,
    /// The version the suite passed on; `None` for a CLI it could not install.
    pub version: Option<&'static str>,
    /// Why a CLI is untested.
    pub why_untested: Option<&'static str>,
}

const TABLE: &str = include_str!("tested.tsv");

/// Every row of the table, in its order.
pub fn table() -> Vec<Tested> {
    TABLE
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let cols: Vec<&'static str> = l.split('\t').collect();
            let preset = *cols.first()?;
            let version = cols.get(4).copied().filter(|v| *v != "-");
            Some(Tested {
                preset,
                version,
                why_untested: cols.get(5).copied(),
            })
        })
        .collect()
}

pub fn tested(preset: &str) -> Option<Tested> {
    table().into_iter().find(|t| t.preset == preset)
}

/// The first word of `text` that reads as a version (`2.1.197 (Claude Code)`, `codex-cli
/// 0.171.0`, `aider v0.86.2`).
pub fn version_in(text: &str) -> Option<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_start_matches('v')
                .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        })
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
        .map(str::to_owned)
}

/// `<program> --version`, asked with no stdin and a deadline: the version it prints, or `None`
/// when it fails, prints none, or takes longer than `deadline` (it is then killed). Only preset
/// CLIs are asked: their `--version` only prints.
pub fn ask(program: &Path, deadline: Duration) -> Option<String> {
    use std::io::Read;
    let mut child = std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // Read aside, bounded: a child that prints a lot, or leaves a process holding the pipe
    // after it exits, must not block past the deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout.take(64 * 1024).read_to_string(&mut out);
            let _ = tx.send(out);
        });
    }
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let left = deadline.saturating_sub(started.elapsed());
                let out = rx.recv_timeout(left.max(Duration::from_millis(200))).ok()?;
                return status.success().then(|| version_in(&out)).flatten();
            }
            Ok(None) if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_clis_print() {
        assert_eq!(
            version_in("2.1.197 (Claude Code)\n").as_deref(),
            Some("2.1.197")
        );
        assert_eq!(version_in("codex-cli 0.171.0").as_deref(), Some("0.171.0"));
        assert_eq!(version_in("aider v0.86.2").as_deref(), Some("0.86.2"));
        assert_eq!(version_in("no version here 7"), None);
    }

    #[test]
    fn every_preset_has_a_row_and_untested_ones_say_why() {
        for p in crate::preset::PRESETS {
            let t = tested(p.name).unwrap_or_else(|| panic!("{} has no row", p.name));
            assert!(
                t.version.is_some() != t.why_untested.is_some(),
                "{}: a version or a reason, not both",
                p.name
            );
        }
        assert_eq!(tested("claude").and_then(|t| t.version), Some("2.1.197"));
        assert!(tested("goose").and_then(|t| t.why_untested).is_some());
    }

    #[test]
    fn a_hanging_version_command_is_cut_at_the_deadline() {
        let dir = tempfile::tempdir().expect("tmp");
        let prog = dir.path().join("slow");
        std::fs::write(&prog, "#!/bin/sh\nsleep 30\necho 1.2.3\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let started = std::time::Instant::now();
        assert_eq!(ask(&prog, Duration::from_millis(300)), None);
        assert!(started.elapsed() < Duration::from_secs(10));
        let fast = dir.path().join("fast");
        std::fs::write(&fast, "#!/bin/sh\necho 'tool v4.5.6'\n").expect("write");
        std::fs::set_permissions(&fast, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(
            ask(&fast, Duration::from_secs(10)).as_deref(),
            Some("4.5.6")
        );
    }
}
