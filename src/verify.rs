//! Checking commits for valid attestations: what `git pipeline verify`, the pre-push hook and
//! the pre-receive hook share.
//!
//! The whole notes tree is read with one `git ls-tree`, the commits with one `git rev-list`, and
//! the notes of those commits with one `git cat-file --batch`, so checking ten thousand commits
//! costs three processes (plus one `git merge-tree` per merge commit without a note).
//!
//! Merge rule: a merge commit without a valid note of its own passes when it has two parents and
//! its tree is exactly what `git merge-tree` makes of them without conflicts. Its parents are
//! judged on their own when they are in the checked range. An octopus merge, or a merge whose
//! conflicts were resolved by hand, needs its own attestation (`git pipeline reverify`).

use std::collections::HashMap;

use serde::Serialize;

use crate::attest::{self, Unattested};
use crate::error::{Error, Result};
use crate::git::merge::Merge;
use crate::git::{Git, Opts, split_z};

#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    pub commit: String,
    pub tree: String,
    pub parents: Vec<String>,
    pub subject: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    #[serde(flatten)]
    pub commit: Commit,
    /// The run that attested it, or `None` for a clean merge of its parents.
    pub run_id: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Unattested>,
}

impl Judged {
    pub fn attested(&self) -> bool {
        self.problem.is_none()
    }
}

/// The commits that `revs` select (`git rev-list` arguments, already checked), newest first.
pub fn list_commits(git: &Git, revs: &[String]) -> Result<Vec<Commit>> {
    let mut args: Vec<String> = vec![
        "rev-list".into(),
        "--no-commit-header".into(),
        "--format=%H%x00%T%x00%P%x00%s%x00".into(),
    ];
    args.extend(revs.iter().cloned());
    let out = git.output(&args, crate::git::Opts::default())?;
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
            commit: id,
            tree: String::from_utf8_lossy(tree).into_owned(),
            parents: String::from_utf8_lossy(parents)
                .split_whitespace()
                .map(str::to_owned)
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

/// The notes of a notes ref (or notes commit): commit id -> note blob id.
pub fn read_notes_index(git: &Git, notes_rev: &str) -> Result<HashMap<String, String>> {
    let out = git.output(
        ["ls-tree", "-r", "-z", "--full-tree", notes_rev],
        Opts::default(),
    )?;
    if !out.status.success() {
        // No notes ref yet: no commit is attested.
        return Ok(HashMap::new());
    }
    let mut map = HashMap::new();
    for entry in split_z(&out.stdout) {
        // "<mode> blob <oid>\t<path>"; the path is the annotated commit id, maybe fanned out.
        let text = String::from_utf8_lossy(entry);
        let Some((meta, path)) = text.split_once('\t') else {
            continue;
        };
        let mut meta = meta.split(' ');
        let (Some(_), Some("blob"), Some(blob)) = (meta.next(), meta.next(), meta.next()) else {
            continue;
        };
        let commit: String = path.chars().filter(|c| *c != '/').collect();
        if commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            map.insert(commit, blob.to_owned());
        }
    }
    Ok(map)
}

/// Judge every commit against the notes of `notes_rev`.
pub fn judge_commits(git: &Git, commits: Vec<Commit>, notes_rev: &str) -> Result<Vec<Judged>> {
    let index = read_notes_index(git, notes_rev)?;
    let wanted: Vec<String> = commits
        .iter()
        .filter_map(|c| index.get(&c.commit).cloned())
        .collect();
    let blobs: HashMap<String, Vec<u8>> = wanted
        .iter()
        .cloned()
        .zip(crate::git::objects::cat_blobs(git, &wanted)?)
        .filter_map(|(id, blob)| blob.map(|b| (id, b)))
        .collect();
    let mut judged = Vec::with_capacity(commits.len());
    for c in commits {
        let note = index.get(&c.commit).and_then(|b| blobs.get(b));
        let (run_id, problem) = match attest::judge(note.map(Vec::as_slice), &c.tree) {
            Ok(a) => (Some(a.run_id), None),
            Err(why) if c.parents.len() > 1 => match clean_merge(git, &c)? {
                Ok(()) => (None, None),
                Err(merge_why) => (
                    None,
                    Some(if why == Unattested::NoNote {
                        Unattested::Merge(merge_why)
                    } else {
                        why
                    }),
                ),
            },
            Err(why) => (None, Some(why)),
        };
        judged.push(Judged {
            commit: c,
            run_id,
            problem,
        });
    }
    Ok(judged)
}

/// `Ok` when the merge commit's tree is the conflict-free merge of its two parents.
fn clean_merge(git: &Git, c: &Commit) -> Result<std::result::Result<(), String>> {
    if c.parents.len() != 2 {
        return Ok(Err(format!(
            "octopus merge of {} parents without a note",
            c.parents.len()
        )));
    }
    match crate::git::merge::merge_trees(git, &c.parents[0], &c.parents[1])? {
        Merge::Clean(tree) if tree == c.tree => Ok(Ok(())),
        Merge::Clean(_) => Ok(Err(
            "merge without a note whose tree differs from the clean merge of its parents"
                .to_owned(),
        )),
        Merge::Conflict(_) => Ok(Err(
            "merge without a note whose conflicts were resolved by hand".to_owned(),
        )),
    }
}

/// Revision arguments from a user: revisions and ranges only, never options.
pub fn check_revs(revs: &[String]) -> Result<()> {
    for r in revs {
        if r.starts_with('-') || r.is_empty() || r.contains('\0') {
            return Err(Error::usage(format!(
                "{r:?} is not a revision or range (give e.g. origin/main..HEAD)"
            )));
        }
    }
    Ok(())
}

/// "All zeros" ids mean "no object" in hook input, whatever the hash length (40 or 64).
pub fn is_zero_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}
