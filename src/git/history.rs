//! Listing commits: what `verify` and the push hooks check.

use serde::Serialize;

use super::{Git, Oid, TreeId};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    pub commit: Oid,
    pub tree: TreeId,
    pub parents: Vec<Oid>,
    pub subject: String,
}

/// The commits that `revs` select (`git rev-list` arguments, already checked), newest first.
pub fn list_commits(git: &Git, revs: &[String]) -> Result<Vec<Commit>> {
    let mut args: Vec<String> = vec![
        "rev-list".into(),
        "--no-commit-header".into(),
        "--format=%H%x00%T%x00%P%x00%s%x00".into(),
    ];
    args.extend(revs.iter().cloned());
    let out = git.output(&args, super::Opts::default())?;
    if !out.status.success() {
        // A revision that names nothing is the user's mistake: one line, exit 3.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let fatal = stderr
            .lines()
            .find_map(|l| l.strip_prefix("fatal: "))
            .unwrap_or("git rev-list refused it");
        let fatal = fatal.split(": unknown revision").next().unwrap_or(fatal);
        return Err(Error::usage_hint(
            format!(
                "{} does not name commits here (git: {fatal})",
                revs.join(" ")
            ),
            "give commits or ranges that exist here, e.g. origin/main..HEAD",
        ));
    }
    let out = out.stdout;
    let mut commits = Vec::new();
    let mut fields = split_z_keep_empty(&out);
    while let Some(id) = fields.next() {
        let id = String::from_utf8_lossy(id).trim().to_owned();
        if id.is_empty() {
            continue;
        }
        let (Some(tree), Some(parents), Some(subject)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(Error::other("unexpected end of git rev-list output"));
        };
        commits.push(Commit {
            commit: Oid::from_git(id),
            tree: TreeId::from_git(String::from_utf8_lossy(tree)),
            parents: String::from_utf8_lossy(parents)
                .split_whitespace()
                .map(Oid::from_git)
                .collect(),
            subject: String::from_utf8_lossy(subject).into_owned(),
        });
    }
    Ok(commits)
}

/// Split on NUL keeping empty fields (a root commit has no parents).
fn split_z_keep_empty(out: &[u8]) -> impl Iterator<Item = &[u8]> {
    out.split(|b| *b == 0)
}
