//! Reading and writing git config: the hooks' `notes.rewriteRef`, remotes, and where config
//! files are (what containment fingerprints).

use std::path::{Path, PathBuf};

use super::{Git, Opts};
use crate::error::Result;

/// Every value of `key` (none when unset).
pub fn get_all(git: &Git, key: &str) -> Result<Vec<String>> {
    let out = git.output(["config", "--get-all", key], Opts::default())?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// The value of `key`, `None` when unset.
pub fn get(git: &Git, key: &str) -> Result<Option<String>> {
    git.optional_text(["config", "--get", key])
}

/// A path setting as git reads it (`~/` expanded), when set.
pub fn get_path(git: &Git, key: &str) -> Result<Option<String>> {
    git.optional_text(["config", "--get", "--type=path", key])
}

/// A boolean setting as git reads it (`yes`, `on`, `1`...), when set. A value git would not take
/// as a boolean is an error, never a silent default.
pub fn get_bool(git: &Git, key: &str) -> Result<Option<bool>> {
    let Some(value) = get(git, key)? else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(Some(true)),
        "false" | "no" | "off" | "0" | "" => Ok(Some(false)),
        _ => Err(crate::error::Error::usage_hint(
            format!("git config {key} = {value:?} is not a boolean"),
            format!("set it with: git config {key} true (or false)"),
        )),
    }
}

/// `(key, value)` for every key matching the regular expression.
pub fn get_regexp(git: &Git, pattern: &str) -> Result<Vec<(String, String)>> {
    let out = git.output(["config", "--get-regexp", pattern], Opts::default())?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Add a value to a multi-valued key in the repository's config.
pub fn add(git: &Git, key: &str, value: &str) -> Result<()> {
    git.run(["config", "--add", key, value])?;
    Ok(())
}

/// Remove every value of `key` equal to `value`.
pub fn unset_value(git: &Git, key: &str, value: &str) -> Result<()> {
    git.run(["config", "--unset-all", "--fixed-value", key, value])?;
    Ok(())
}

/// The config files git read for `git`'s directory, resolved against `base` (git names the
/// repository's own files relative to it).
pub fn files_read(git: &Git, base: &Path) -> Result<Vec<PathBuf>> {
    let out = git.output(
        ["config", "--list", "--show-origin", "--name-only", "-z"],
        Opts::default(),
    )?;
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter_map(|f| f.strip_prefix(b"file:"))
        .map(|f| base.join(super::path_from_bytes(f)))
        .collect())
}

/// The names of the repository's remotes.
pub fn remotes(git: &Git) -> Result<Vec<String>> {
    Ok(git.text(["remote"])?.lines().map(str::to_owned).collect())
}

/// Where git's own programs are (`<prefix>/libexec/git-core`).
pub fn exec_path(git: &Git) -> Result<PathBuf> {
    Ok(PathBuf::from(git.text(["--exec-path"])?))
}

/// `git --version` as (major, minor, text), `None` when git cannot be run.
pub fn version() -> Option<(u32, u32, String)> {
    let out = std::process::Command::new("git")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let v = text.split_whitespace().nth(2)?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor, v.to_owned()))
}
