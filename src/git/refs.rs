//! Listing and moving refs by name: what containment fingerprints and puts back, what `clean`
//! expires, and which branch a checkout is on.

use super::{Git, Opts};
use crate::error::Result;

/// Where local branches live.
pub const HEADS: &str = "refs/heads/";

/// A local branch, by its short name (`pipeline/20261202-101502-1234`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchName(String);

impl BranchName {
    pub fn new(name: impl Into<String>) -> BranchName {
        BranchName(name.into())
    }

    /// A branch as a run's record writes it: an empty name is no branch (a reverify run works
    /// detached).
    pub fn from_record(name: &str) -> Option<BranchName> {
        (!name.is_empty()).then(|| BranchName::new(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its full ref, `refs/heads/<name>`.
    pub fn full(&self) -> String {
        format!("{HEADS}{}", self.0)
    }
}

impl std::fmt::Display for BranchName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

/// `refs/heads/<name>` for a branch name that may be a prefix (`pipeline/`).
pub fn heads(name: &str) -> String {
    format!("{HEADS}{name}")
}

/// Every ref with the object it points at.
pub fn all(git: &Git) -> Result<Vec<(String, String)>> {
    all_again(git, &mut Seen::default())
}

/// What [`all_again`] read last time, so that it reads only the ref files that changed since.
pub use super::files_refs::Seen;

/// [`all`] for a listing taken again and again (around every step of a run): the ref files
/// whose stat did not move since `seen` saw them are not read again.
pub fn all_again(git: &Git, seen: &mut Seen) -> Result<Vec<(String, String)>> {
    if let Some(dir) = files_store(git)
        && let Some(refs) = super::files_refs::all_again(dir, seen)
    {
        return Ok(refs);
    }
    let out = git.run(["for-each-ref", "--format=%(refname)%00%(objectname)"])?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_once('\0'))
        .map(|(n, o)| (n.to_owned(), o.to_owned()))
        .collect())
}

/// The git dir whose ref files [`all_again`] reads itself (a main git dir named by path),
/// when it does: every ref it lists is then a file under its `refs/` or a line of its
/// `packed-refs`.
pub fn files_store(git: &Git) -> Option<&std::path::Path> {
    git.named_git_dir()
        .filter(|dir| !dir.join("commondir").exists())
}

/// The names of the refs under `prefix` (`refs/notes/remotes/`).
pub fn names_under(git: &Git, prefix: &str) -> Result<Vec<String>> {
    let out = git.run(["for-each-ref", "--format=%(refname)", prefix])?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// The refs under `prefix` with their commit's committer date (unix seconds).
pub fn with_dates(git: &Git, prefix: &str) -> Result<Vec<(String, u64)>> {
    let out = git.run([
        "for-each-ref",
        "--format=%(refname) %(committerdate:unix)",
        prefix,
    ])?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(n, d)| Some((n.to_owned(), d.parse().ok()?)))
        .collect())
}

/// The refs matching `patterns` (for-each-ref patterns) whose history contains `commit_ish`.
pub fn containing(git: &Git, commit_ish: &str, patterns: &[&str]) -> Result<Vec<String>> {
    let mut args = vec![
        "for-each-ref".to_owned(),
        "--format=%(refname)".to_owned(),
        "--contains".to_owned(),
        commit_ish.to_owned(),
    ];
    args.extend(patterns.iter().map(|p| (*p).to_owned()));
    let out = git.run(&args)?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Which of `names` exist.
pub fn existing(git: &Git, names: &[String]) -> Result<Vec<String>> {
    let mut args = vec!["for-each-ref".to_owned(), "--format=%(refname)".to_owned()];
    args.extend(names.iter().cloned());
    let out = git.run(&args)?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter(|r| names.iter().any(|n| n == r))
        .map(str::to_owned)
        .collect())
}

/// Set `name` back to `old`, expecting it at `current` (`None`: it was deleted).
pub fn put_back(git: &Git, name: &str, old: &str, current: Option<&str>, why: &str) -> Result<()> {
    let zero = "0".repeat(old.len());
    git.run([
        "update-ref",
        "-m",
        why,
        name,
        old,
        current.unwrap_or(zero.as_str()),
    ])?;
    Ok(())
}

/// Delete `name`, only if it still points at `expected` when given.
pub fn delete(git: &Git, name: &str, expected: Option<&str>) -> Result<()> {
    let mut args = vec!["update-ref", "-d", name];
    args.extend(expected);
    git.run(args)?;
    Ok(())
}

/// Delete several refs in one transaction.
pub fn delete_all(git: &Git, names: &[String]) -> Result<()> {
    let script: String = names.iter().map(|r| format!("delete {r}\n")).collect();
    git.run_opts(
        ["update-ref", "--stdin"],
        Opts {
            stdin: Some(script.as_bytes()),
            ..Default::default()
        },
    )?;
    Ok(())
}

/// The branch ref HEAD is on (`refs/heads/...`), `None` when detached.
pub fn head_branch(git: &Git) -> Result<Option<String>> {
    if let Some(branch) = git.named_git_dir().and_then(super::files_refs::head_branch) {
        return Ok(branch);
    }
    let out = git.output(["symbolic-ref", "--quiet", "HEAD"], Opts::default())?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok((!name.is_empty()).then_some(name))
}

/// The commit HEAD names, `None` on an unborn branch.
pub fn head_commit(git: &Git) -> Result<Option<super::Oid>> {
    Ok(git
        .optional_text(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])?
        .map(super::Oid::from_git))
}

/// The upstream of the current branch (`origin/main`), `None` without one.
pub fn upstream(git: &Git) -> Result<Option<String>> {
    git.optional_text([
        "rev-parse",
        "--abbrev-ref",
        "--symbolic-full-name",
        "@{upstream}",
    ])
}

/// Whether git accepts `name` as a branch name (`git check-ref-format --branch`'s rules, checked
/// against git itself in the tests).
pub fn is_valid_branch_name(name: &str) -> bool {
    super::files_refs::valid_branch_name(name)
}
