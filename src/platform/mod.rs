//! Everything that differs between the operating systems git-pipeline runs on, behind one small
//! interface: watching the user's checkout, listing the processes a step left running, telling
//! whether a process still runs, and reading a process's start time. Process groups and signals
//! are POSIX (`nix`) and need nothing here.
//!
//! The per-OS files only gather facts; what the facts mean (which processes belong to a run, what
//! counts as a change) is decided in shared code that the Linux test suite exercises.
//!
//! | mechanism | Linux | macOS |
//! |---|---|---|
//! | checkout watch | inotify | none: every containment check compares `git status` listings |
//! | other runs' records watch | inotify, on each record file | none: every check stats them all |
//! | refs watch | inotify, on each loose ref file and folder, `packed-refs` | none: every check walks the refs |
//! | processes of a run | `/proc/<pid>/environ` and `cwd` | `sysinfo` (`KERN_PROCARGS2`, `proc_pidinfo`) |
//! | is a process running | `/proc/<pid>/stat`, zombies excluded | `sysinfo`, zombies excluded |
//! | a process's start time | clock ticks since boot | seconds since the epoch |
//! | OS sandbox of agents and gates | Landlock (`landlock` crate) | Seatbelt (`/usr/bin/sandbox-exec -p`) |
//! | a file's stat with its birth time, relative to a folder | `statx` | `fstatat` (`st_birthtime`) |

use std::path::{Path, PathBuf};

#[cfg(target_os = "linux")]
mod inotify;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod records_watch;
#[cfg(target_os = "linux")]
mod refs_watch;
#[cfg(target_os = "linux")]
mod watch_files;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("git-pipeline runs on Linux and macOS; on Windows, use it inside WSL");

#[cfg(target_os = "linux")]
pub use inotify::CheckoutWatch;
#[cfg(target_os = "macos")]
pub use macos::{CheckoutWatch, RecordsWatch, RefsWatch};
#[cfg(target_os = "linux")]
pub use records_watch::RecordsWatch;
#[cfg(target_os = "linux")]
pub use refs_watch::RefsWatch;

/// Close a watch on a thread of its own: closing an inotify instance waits for a kernel grace
/// period (up to ~20 ms on a 2-core VM), which nothing needs to wait for. (On macOS there are no
/// watches to close.)
pub fn close_on_thread<T: Send + 'static>(watch: T) {
    std::thread::spawn(move || drop(watch));
}

/// The stamp ([`crate::files::Stamp`]) of `rel` inside the open folder `dir`, the last
/// component not followed: one short lookup, where a whole path costs one per folder of it.
pub fn stamp_at(dir: &std::fs::File, rel: &Path) -> Option<crate::files::Stamp> {
    os::stamp_at(dir, rel)
}

/// What this platform offers, for `doctor` and the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub os: &'static str,
    /// How a change in the user's checkout during a step is seen.
    pub checkout_watch: &'static str,
    /// How the processes a step left running are found.
    pub process_listing: &'static str,
}

pub const CAPABILITIES: Capabilities = os::CAPABILITIES;

/// A process as the leftover scan sees it: its environment entries (`NAME=value`, as bytes) and
/// its working directory, where the OS lets us read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessView {
    pub pid: i32,
    pub environ: Vec<Vec<u8>>,
    pub cwd: Option<PathBuf>,
}

/// Whether a process belongs to a run: its environment names the run's folder
/// (`PIPELINE_RUN_DIR`, which every agent and gate gets and their children inherit), or it works
/// inside the run's worktree. The folder, not the id: ids are unique within a repository only.
pub fn belongs_to_run(p: &ProcessView, run_dir: &Path, worktree: Option<&Path>) -> bool {
    let mut needle = b"PIPELINE_RUN_DIR=".to_vec();
    needle.extend_from_slice(run_dir.as_os_str().as_encoded_bytes());
    p.environ.contains(&needle)
        || worktree.is_some_and(|w| p.cwd.as_deref().is_some_and(|c| c.starts_with(w)))
}

/// The processes of a run, other than this one.
pub fn run_processes(run_dir: &Path, worktree: Option<&Path>) -> Vec<i32> {
    let me = std::process::id() as i32;
    os::processes(true, worktree.is_some())
        .into_iter()
        .filter(|p| p.pid != me && belongs_to_run(p, run_dir, worktree))
        .map(|p| p.pid)
        .collect()
}

/// The processes working inside `worktree` (by their folder), other than this one and those with a
/// controlling terminal, each with its start time: what is new in this set after a step was left
/// running by the step, even when it dropped `PIPELINE_RUN_DIR` from its environment. A person's
/// shell or editor in the worktree has a terminal, or was there before the step: never stopped.
pub fn worktree_processes(worktree: &Path) -> std::collections::BTreeSet<(i32, Option<u64>)> {
    let me = std::process::id() as i32;
    os::processes(false, true)
        .into_iter()
        .filter(|p| p.pid != me && works_unattended_in(p, worktree))
        .map(|p| (p.pid, started(p.pid)))
        .collect()
}

/// Working inside `worktree` without a controlling terminal. The terminal is read last: it
/// costs more than the folder, and few processes are in the worktree.
fn works_unattended_in(p: &ProcessView, worktree: &Path) -> bool {
    p.cwd.as_deref().is_some_and(|c| c.starts_with(worktree)) && !os::has_tty(p.pid)
}

fn started(pid: i32) -> Option<u64> {
    u32::try_from(pid).ok().and_then(os::process_start)
}

/// After a step, in one pass over the processes: those of the run (by
/// [`belongs_to_run`]'s environment rule) and those working inside `worktree` that were not
/// there before the step (`known`, as [`worktree_processes`] found them).
pub fn step_leftovers(
    run_dir: &Path,
    worktree: &Path,
    known: &std::collections::BTreeSet<(i32, Option<u64>)>,
) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    for p in os::processes(true, true) {
        if p.pid == me {
            continue;
        }
        if belongs_to_run(&p, run_dir, None)
            || (works_unattended_in(&p, worktree) && !known.contains(&(p.pid, started(p.pid))))
        {
            pids.push(p.pid);
        }
    }
    pids
}

/// Alive and not a zombie waiting for its parent.
pub fn is_running(pid: i32) -> bool {
    os::is_running(pid)
}

/// When a process started, in the platform's own unit (see the table above): with the pid, it
/// tells a live lock owner from a recycled pid, for people to read.
pub fn process_start(pid: u32) -> Option<u64> {
    os::process_start(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(pid: i32, env: &[&str], cwd: Option<&str>) -> ProcessView {
        ProcessView {
            pid,
            environ: env.iter().map(|e| e.as_bytes().to_vec()).collect(),
            cwd: cwd.map(PathBuf::from),
        }
    }

    #[test]
    fn a_process_belongs_to_a_run_by_its_environment_or_its_folder() {
        let wt = Some(Path::new("/wt/r1"));
        let r1 = Path::new("/a/runs/r1");
        assert!(belongs_to_run(
            &view(1, &["PIPELINE_RUN_DIR=/a/runs/r1"], None),
            r1,
            None
        ));
        // The same run id in another repository is another run.
        assert!(!belongs_to_run(
            &view(
                1,
                &["PIPELINE_RUN_DIR=/b/runs/r1", "PIPELINE_RUN_ID=r1"],
                None
            ),
            r1,
            None
        ));
        assert!(!belongs_to_run(
            &view(1, &["PIPELINE_RUN_DIR=/a/runs/r10"], None),
            r1,
            None
        ));
        assert!(!belongs_to_run(
            &view(1, &["X=PIPELINE_RUN_DIR=/a/runs/r1"], None),
            r1,
            None
        ));
        assert!(belongs_to_run(&view(1, &[], Some("/wt/r1/src")), r1, wt));
        assert!(!belongs_to_run(&view(1, &[], Some("/wt/r10")), r1, wt));
        assert!(!belongs_to_run(&view(1, &[], Some("/wt/r1")), r1, None));
    }

    #[test]
    fn this_platform_finds_a_child_by_its_environment_and_sees_it_end() -> crate::error::Result<()>
    {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("PIPELINE_RUN_DIR", "/platform-test/runs/r")
            .spawn()
            .map_err(|e| crate::error::Error::io("spawn sleep", e))?;
        let pid = child.id() as i32;
        assert!(is_running(pid));
        assert!(process_start(child.id()).is_some());
        // Until the child has exec'd, /proc shows the parent's environment: poll a little.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = run_processes(Path::new("/platform-test/runs/r"), None);
        while found.is_empty() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = run_processes(Path::new("/platform-test/runs/r"), None);
        }
        assert_eq!(found, vec![pid]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(!is_running(pid));
        assert!(run_processes(Path::new("/platform-test/runs/r"), None).is_empty());
        Ok(())
    }

    #[test]
    fn this_platform_finds_a_process_by_its_folder_with_its_start_time() -> crate::error::Result<()>
    {
        let dir = tempfile::tempdir().map_err(|e| crate::error::Error::io("tempdir", e))?;
        let dir = dir
            .path()
            .canonicalize()
            .map_err(|e| crate::error::Error::io("canonicalize", e))?;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| crate::error::Error::io("spawn sleep", e))?;
        let pid = child.id() as i32;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = worktree_processes(&dir);
        while found.is_empty() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = worktree_processes(&dir);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.len(), 1, "{found:?}");
        let (found_pid, started) = found.iter().next().copied().unwrap_or_default();
        assert_eq!(found_pid, pid);
        assert!(
            started.is_some(),
            "the start time tells a recycled pid apart"
        );
        assert!(worktree_processes(&dir).is_empty());
        Ok(())
    }
}
