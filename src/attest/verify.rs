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

use crate::attest;

use crate::attest::Unattested;
use crate::error::Error;
use crate::error::Result;
use crate::git::Git;
use crate::git::history::Commit;
use crate::git::merge::Merge;
use crate::git::notes::read_notes_index;

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
            Err(why) if c.parents.len() > 1 => match merge_problem(git, &c)? {
                None => (None, None),
                Some(merge_why) => (
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
/// `None` when the merge is exactly the clean merge of its two parents; otherwise why not.
fn merge_problem(git: &Git, c: &Commit) -> Result<Option<String>> {
    if c.parents.len() != 2 {
        return Ok(Some(format!(
            "octopus merge of {} parents without a note",
            c.parents.len()
        )));
    }
    match crate::git::merge::merge_trees(git, &c.parents[0], &c.parents[1])? {
        Merge::Clean(tree) if tree == c.tree => Ok(None),
        Merge::Clean(_) => Ok(Some(
            "merge without a note whose tree differs from the clean merge of its parents"
                .to_owned(),
        )),
        Merge::Conflict(_) => Ok(Some(
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
