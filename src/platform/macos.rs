//! macOS: processes through `sysinfo`; no checkout watch.
//!
//! FSEvents delivers changes late and coalesced (its latency is a setting, not a bound), so "did
//! the checkout change during this step?" could be answered before the step's own writes arrive.
//! kqueue needs an open descriptor per file. Containment must not miss a change, so every check
//! compares `git status` listings instead, as on Linux with `GIT_PIPELINE_WATCH=0`.

use std::os::unix::ffi::OsStrExt;

use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

use super::{Capabilities, ProcessView};
use crate::error::Result;
use crate::git::ignored::Ignored;

/// See [`super::stamp_at`]: `fstatat`, whose `st_birthtime` is the birth time.
pub fn stamp_at(dir: &std::fs::File, rel: &std::path::Path) -> Option<crate::files::Stamp> {
    let m = nix::sys::stat::fstatat(dir, rel, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    #[allow(clippy::unnecessary_cast)]
    let (dev, ino) = (m.st_dev as u64, m.st_ino as u64);
    Some((
        u64::try_from(m.st_size).unwrap_or(0),
        ns(m.st_mtime, m.st_mtime_nsec),
        ns(m.st_ctime, m.st_ctime_nsec),
        ino,
        dev,
        ns(m.st_birthtime, m.st_birthtime_nsec),
    ))
}

pub const CAPABILITIES: Capabilities = Capabilities {
    os: "macos",
    checkout_watch: "none (git status comparison)",
    process_listing: "sysinfo",
};

pub fn processes(with_environ: bool, with_cwd: bool) -> Vec<ProcessView> {
    let mut kind = ProcessRefreshKind::nothing();
    if with_environ {
        kind = kind.with_environ(UpdateKind::Always);
    }
    if with_cwd {
        kind = kind.with_cwd(UpdateKind::Always);
    }
    let mut sys = System::new();
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    sys.processes()
        .values()
        .map(|p| ProcessView {
            pid: p.pid().as_u32() as i32,
            environ: p.environ().iter().map(|e| e.as_bytes().to_vec()).collect(),
            cwd: p.cwd().map(std::path::Path::to_path_buf),
        })
        .collect()
}

/// sysinfo does not read the controlling terminal: only the start time spares a person's
/// process in the worktree here.
pub fn has_tty(_pid: i32) -> bool {
    false
}

fn one(pid: u32) -> Option<(ProcessStatus, u64)> {
    let pid = Pid::from_u32(pid);
    let mut sys = System::new();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing(),
    );
    sys.process(pid).map(|p| (p.status(), p.start_time()))
}

pub fn is_running(pid: i32) -> bool {
    u32::try_from(pid)
        .ok()
        .and_then(one)
        .is_some_and(|(status, _)| status != ProcessStatus::Zombie)
}

/// Seconds since the epoch.
pub fn process_start(pid: u32) -> Option<u64> {
    one(pid).map(|(_, start)| start)
}

/// There is no checkout watch on macOS (see the module's comment): `new` always answers `None`,
/// which makes every containment check compare `git status` listings.
#[derive(Debug)]
pub struct CheckoutWatch {
    never: std::convert::Infallible,
}

impl CheckoutWatch {
    pub fn new(
        _checkout: &std::path::Path,
        _git_dir: Option<&std::path::Path>,
        _ignored: Ignored,
    ) -> Result<Option<CheckoutWatch>> {
        Ok(None)
    }

    pub fn following_new_folders(self) -> CheckoutWatch {
        self
    }

    pub fn drain(&self) -> Result<()> {
        match self.never {}
    }

    pub fn changes(&self) -> Result<std::collections::BTreeSet<String>> {
        match self.never {}
    }
}

/// There is no records watch on macOS either: `new` always answers `None`, and every containment
/// check stats the other runs' records.
#[derive(Debug)]
pub struct RecordsWatch {
    never: std::convert::Infallible,
}

impl RecordsWatch {
    pub fn new(
        _runs: &std::path::Path,
        _own: &std::ffi::OsStr,
        _names: &'static [&'static str],
    ) -> Option<RecordsWatch> {
        None
    }

    pub fn changed(&self) -> Option<std::collections::BTreeSet<std::ffi::OsString>> {
        match self.never {}
    }
}

/// No refs watch on macOS: `new` always answers `None`, and every containment check walks the
/// refs.
#[derive(Debug)]
pub struct RefsWatch {
    never: std::convert::Infallible,
}

impl RefsWatch {
    pub fn new(_git_dir: &std::path::Path) -> Option<RefsWatch> {
        None
    }

    pub fn changed(&self) -> Option<bool> {
        match self.never {}
    }
}
