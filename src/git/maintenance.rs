//! git's automatic maintenance after a ship commit. `git commit` would run `git maintenance run
//! --auto` after the commit, before the run can go on. Where git's own test is known, the ship
//! commit turns that off and git-pipeline runs it itself, on a thread beside the note, and only
//! when it has something to do. That test, with none of git's `gc.*` or `maintenance.*`
//! settings and before git 2.54 (which made the geometric strategy the default), is gc's
//! `need_to_gc`: more loose objects in `objects/17` than `gc.auto` (6700) / 256, or more packs
//! than `gc.autoPackLimit` (50). Anywhere else `git commit` runs it as always.

use std::path::Path;

use super::{Git, Opts};

/// `gc.auto` / 256, rounded up: git's count of loose objects in `objects/17` beyond which
/// `gc --auto` packs.
const LOOSE_IN_17: usize = 6700_usize.div_ceil(256);
/// `gc.autoPackLimit`.
const PACKS: usize = 50;

/// Whether `git maintenance run --auto` would act in a repository whose objects are in
/// `objects` (object names `hex_len` digits long) and that has none of git's `gc.*` or
/// `maintenance.*` settings.
pub fn due(objects: &Path, hex_len: usize) -> bool {
    let count = |dir: &Path, keep: &dyn Fn(&str) -> bool| {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_str().is_some_and(keep))
                .count()
        })
    };
    let loose = count(&objects.join("17"), &|name| {
        name.len() + 2 == hex_len
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    });
    let pack_dir = objects.join("pack");
    let packs = count(&pack_dir, &|name| {
        name.strip_suffix(".pack")
            .is_some_and(|stem| !pack_dir.join(format!("{stem}.keep")).exists())
    });
    loose > LOOSE_IN_17 || packs > PACKS
}

/// git's version when git-pipeline may decide for git with [`due`]: none of git's `gc.*` or
/// `maintenance.*` settings (`configured`), and a git whose default is still gc's test.
pub fn decided_here(configured: bool) -> Option<(u32, u32)> {
    if configured {
        return None;
    }
    super::config::version_cached().filter(|v| *v < (2, 54))
}

/// `git maintenance run --auto` as `git commit` of git `version` starts it with no settings (`--detach` from
/// git 2.47, where `git commit` passes it; before, `gc --auto` detaches itself), on a thread of
/// its own in the repository (not in a run's worktree). What it may do there (pack refs, expire
/// reflogs, repack) runs beside other git commands: git's ref locks wait for each other. Its
/// failure is git's to report, as after a commit.
pub fn start(git: &Git, version: (u32, u32)) -> std::thread::JoinHandle<()> {
    let git = git.clone();
    let detach = version >= (2, 47);
    std::thread::spawn(move || {
        let mut args = vec!["maintenance", "run", "--auto", "--quiet"];
        if detach {
            args.push("--detach");
        }
        let _ = git.output(args, Opts::default());
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::git;

    /// Counted as git counts them, and at git's own threshold: a trace of `git maintenance run
    /// --auto` shows `gc --auto` starting exactly when [`due`] says so.
    #[test]
    fn due_when_git_s_own_maintenance_would_act() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        git(d, &["commit", "-q", "--allow-empty", "-m", "one"]);
        let objects = d.join(".git/objects");
        let dir = objects.join("17");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let gc_started = || {
            let trace = d.join("trace.json");
            let _ = std::fs::remove_file(&trace);
            let out = std::process::Command::new("git")
                .current_dir(d)
                .args([
                    "-c",
                    "gc.autoDetach=false",
                    "maintenance",
                    "run",
                    "--auto",
                    "--quiet",
                ])
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_TRACE2_EVENT", &trace)
                .output()
                .expect("git runs");
            assert!(out.status.code().is_some());
            let events = std::fs::read_to_string(&trace).unwrap_or_default();
            events
                .lines()
                .any(|l| l.contains("\"child_start\"") && l.contains("\"gc\""))
        };
        // Names git counts (38 lowercase hex digits), and two it does not.
        std::fs::write(dir.join("ABCDEF0123456789abcdef0123456789abcdef"), b"").expect("write");
        std::fs::write(dir.join("tmp_obj_x"), b"").expect("write");
        for i in 0..LOOSE_IN_17 {
            std::fs::write(dir.join(format!("{i:038x}")), b"").expect("write");
        }
        assert!(!due(&objects, 40));
        assert!(
            !gc_started(),
            "git agrees: {LOOSE_IN_17} loose objects are not too many"
        );
        std::fs::write(dir.join(format!("{:038x}", LOOSE_IN_17)), b"").expect("write");
        assert!(due(&objects, 40));
        assert!(gc_started(), "git agrees: one more is");
    }
}
