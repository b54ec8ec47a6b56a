//! Linux: processes from `/proc`.

use super::{Capabilities, ProcessView};

/// See [`super::stamp_at`]: `statx`, which also gives the birth time where the filesystem
/// keeps one (ext4, xfs, btrfs, tmpfs).
pub fn stamp_at(dir: &std::fs::File, rel: &std::path::Path) -> Option<crate::files::Stamp> {
    use rustix::fs::{AtFlags, StatxFlags};
    let x = rustix::fs::statx(
        dir,
        rel,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )
    .ok()?;
    let ns = |t: rustix::fs::StatxTimestamp| {
        i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
    };
    let birth = if StatxFlags::from_bits_truncate(x.stx_mask).contains(StatxFlags::BTIME) {
        ns(x.stx_btime)
    } else {
        0
    };
    // As `st_dev` gives it (the records' copies are kept with the stat of the file read).
    let dev = rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor);
    Some((
        x.stx_size,
        ns(x.stx_mtime),
        ns(x.stx_ctime),
        x.stx_ino,
        dev,
        birth,
    ))
}

pub const CAPABILITIES: Capabilities = Capabilities {
    os: "linux",
    checkout_watch: "inotify",
    process_listing: "/proc",
};

/// Every process, with what is asked of it: its environment, its folder. Each costs a read of
/// `/proc` per process, so only what the caller uses is read.
pub fn processes(with_environ: bool, with_cwd: bool) -> Vec<ProcessView> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let base = entry.path();
        let environ = if with_environ {
            std::fs::read(base.join("environ"))
                .map(|env| env.split(|b| *b == 0).map(<[u8]>::to_vec).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let cwd = if with_cwd {
            std::fs::read_link(base.join("cwd")).ok()
        } else {
            None
        };
        out.push(ProcessView { pid, environ, cwd });
    }
    out
}

/// A controlling terminal: `tty_nr` (`/proc/<pid>/stat` field 7) is not 0.
pub fn has_tty(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // Fields resume after the command name's last ')': state, ppid, pgrp, session, tty_nr.
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(4))
            .is_some_and(|tty| tty != "0")
    })
}

pub fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// Clock ticks since boot (`/proc/<pid>/stat` field 22).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}
