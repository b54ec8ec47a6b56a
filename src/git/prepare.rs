//! Making a fresh worktree usable like the user's checkout: Git LFS present when the project
//! needs it, submodules initialised, and the ignored files the project needs (`.env`, local
//! config) copied from the main worktree.

use std::path::{Path, PathBuf};

use super::{Git, Opts, path_from_bytes, split_z};
use crate::error::Error;
use crate::error::Result;

/// Stop before creating anything when the base commit stores files in Git LFS and `git-lfs` is
/// not installed: a worktree of pointer files would silently differ from the user's checkout.
pub fn check_lfs(repo: &Git, base: &str) -> Result<()> {
    if super::objects::attributes_mention(repo, base, "filter=lfs")? == Some(false) {
        return Ok(());
    }
    let out = repo.output(
        [
            "grep",
            "--no-color",
            "-l",
            "-F",
            "-e",
            "filter=lfs",
            base,
            "--",
            ".gitattributes",
            "*/.gitattributes",
        ],
        Opts::default(),
    )?;
    if out.stdout.is_empty() {
        return Ok(());
    }
    let lfs = super::program()
        .args(["lfs", "version"])
        .stdin(std::process::Stdio::null())
        .output();
    match lfs {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err(Error::usage_hint(
            "this repository stores files in Git LFS (filter=lfs in .gitattributes), but git-lfs is not installed",
            "install Git LFS (https://git-lfs.com) and run `git lfs install`, then run again",
        )),
    }
}

/// `git submodule update --init --recursive` when the base tree has submodules.
pub fn init_submodules(worktree: &Path) -> Result<bool> {
    if !worktree.join(".gitmodules").exists() {
        return Ok(false);
    }
    Git::in_dir(worktree).run(["submodule", "update", "--init", "--recursive", "--quiet"])?;
    Ok(true)
}

/// Patterns of ignored files to copy: `.worktreeinclude` in the main worktree (gitignore
/// syntax), then `run.include`.
pub fn include_patterns(main_worktree: &Path, configured: &[String]) -> Result<Vec<String>> {
    let mut patterns = Vec::new();
    let file = main_worktree.join(".worktreeinclude");
    match std::fs::read_to_string(&file) {
        Ok(text) => patterns.extend(
            text.lines()
                .map(str::trim_end)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io_path("read", &file, e)),
    }
    patterns.extend(configured.iter().cloned());
    Ok(patterns)
}

/// Copy the main worktree's untracked, *ignored* files matching `patterns` into `worktree`.
/// Untracked files that are not ignored are the user's own work and are never copied (they would
/// also show up as changes of the run). Returns the copied paths.
pub fn copy_includes(
    main_worktree: &Path,
    worktree: &Path,
    patterns: &[String],
    pattern_file: &Path,
) -> Result<Vec<PathBuf>> {
    if patterns.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::write(pattern_file, patterns.join("\n") + "\n")
        .map_err(|e| Error::io_path("write", pattern_file, e))?;
    let main = Git::in_dir(main_worktree);
    let mut exclude_from = std::ffi::OsString::from("--exclude-from=");
    exclude_from.push(pattern_file);
    let candidates = main.run([
        std::ffi::OsStr::new("ls-files"),
        "-z".as_ref(),
        "--others".as_ref(),
        "--ignored".as_ref(),
        exclude_from.as_os_str(),
    ])?;
    let _ = std::fs::remove_file(pattern_file);
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // check-ignore exits 1 when nothing is ignored; that is an answer, not a failure.
    let out = main.output(
        ["check-ignore", "-z", "--stdin"],
        Opts {
            stdin: Some(&candidates),
            ..Opts::default()
        },
    )?;
    if !out.status.success() && out.status.code() != Some(1) {
        return Err(super::failure(
            &["check-ignore".into(), "-z".into(), "--stdin".into()],
            &out,
        ));
    }
    let mut copied = Vec::new();
    for rel in split_z(&out.stdout) {
        let rel = path_from_bytes(rel);
        let from = main_worktree.join(&rel);
        let to = worktree.join(&rel);
        if to.symlink_metadata().is_ok() {
            continue;
        }
        copy_one(&from, &to)?;
        copied.push(rel);
    }
    Ok(copied)
}

fn copy_one(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io_path("create", parent, e))?;
    }
    let meta = from
        .symlink_metadata()
        .map_err(|e| Error::io_path("read", from, e))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| Error::io_path("read", from, e))?;
        std::os::unix::fs::symlink(target, to).map_err(|e| Error::io_path("create", to, e))?;
    } else {
        // std::fs::copy keeps the permission bits and uses copy_file_range/reflinks.
        std::fs::copy(from, to).map_err(|e| Error::io_path("copy to", to, e))?;
    }
    Ok(())
}
