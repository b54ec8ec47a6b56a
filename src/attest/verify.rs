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

use std::collections::{HashMap, HashSet};

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
    /// Who signed the attestation, when signatures were checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Unattested>,
}

impl Judged {
    pub fn attested(&self) -> bool {
        self.problem.is_none()
    }
}

/// Where attestations are read from, and what they must carry.
pub struct Sources<'a> {
    /// Notes refs (or notes commits), read together: a commit's notes in all of them count.
    pub notes: &'a [String],
    pub require_signature: bool,
}

/// The notes of several notes refs: commit -> note blobs.
fn notes_index(git: &Git, revs: &[String]) -> Result<HashMap<String, Vec<String>>> {
    let mut index: HashMap<String, Vec<String>> = HashMap::new();
    for rev in revs {
        for (commit, blob) in read_notes_index(git, rev)? {
            let blobs = index.entry(commit).or_default();
            if !blobs.contains(&blob) {
                blobs.push(blob);
            }
        }
    }
    Ok(index)
}

/// Read blobs, concatenated per key (a commit's notes from several refs form one note).
fn read_notes(git: &Git, wanted: &[(String, Vec<String>)]) -> Result<HashMap<String, Vec<u8>>> {
    let ids: Vec<String> = wanted.iter().flat_map(|(_, b)| b.iter().cloned()).collect();
    let mut blobs: HashMap<String, Vec<u8>> = ids
        .iter()
        .cloned()
        .zip(crate::git::objects::cat_blobs(git, &ids)?)
        .filter_map(|(id, blob)| blob.map(|b| (id, b)))
        .collect();
    let mut notes = HashMap::new();
    for (key, ids) in wanted {
        let mut note = Vec::new();
        for id in ids {
            if let Some(b) = blobs.remove(id).or_else(|| blobs.get(id).cloned()) {
                note.extend_from_slice(&b);
                note.push(b'\n');
            }
        }
        notes.insert(key.clone(), note);
    }
    Ok(notes)
}

/// A note read into its attestations, and why the last object that is not one could not be read.
type Parsed = (Vec<attest::Claim>, Option<String>);

fn parse_all(notes: HashMap<String, Vec<u8>>) -> HashMap<String, Parsed> {
    notes
        .into_iter()
        .map(|(k, note)| (k, attest::claims(&note)))
        .collect()
}

/// The base commits that format 1 attestations name.
fn format_1_bases<'a>(claims: impl Iterator<Item = &'a attest::Claim>) -> Vec<String> {
    let mut bases: Vec<String> = Vec::new();
    for c in claims {
        if let attest::BaseClaim::Commit(b) = &c.base
            && !bases.iter().any(|known| b == known)
        {
            bases.push(b.to_string());
        }
    }
    bases
}

/// Judge every commit: by its own notes; a single-parent commit without one by any attestation
/// for the same change (its tree on its parent's tree: a squash merge or a cherry-pick of
/// attested work onto the base it was verified on).
pub fn judge_commits(git: &Git, commits: Vec<Commit>, sources: &Sources) -> Result<Vec<Judged>> {
    let index = notes_index(git, sources.notes)?;
    let wanted: Vec<(String, Vec<String>)> = commits
        .iter()
        .filter_map(|c| {
            index
                .get(c.commit.as_str())
                .map(|b| (c.commit.to_string(), b.clone()))
        })
        .collect();
    let notes = parse_all(read_notes(git, &wanted)?);
    // Parents' trees, and the trees of format 1 bases: one process for all.
    let known: HashMap<&str, &crate::git::TreeId> = commits
        .iter()
        .map(|c| (c.commit.as_str(), &c.tree))
        .collect();
    let mut lookup: Vec<String> = commits
        .iter()
        .filter_map(|c| c.parents.first())
        .filter(|p| !known.contains_key(p.as_str()))
        .map(|p| p.to_string())
        .collect();
    lookup.extend(format_1_bases(notes.values().flat_map(|(c, _)| c)));
    let mut trees = crate::git::objects::trees_of(git, &lookup)?;
    for (c, t) in &known {
        trees.insert((*c).to_owned(), (*t).clone());
    }
    let checker = if sources.require_signature {
        Some(crate::attest::sign::Checker::from_git(git)?)
    } else {
        None
    };
    let check = |e: &crate::attest::dsse::Envelope| match &checker {
        Some(c) => c.check(e),
        None => Err("signatures are not checked".to_owned()),
    };
    let ctx = attest::Context {
        base_trees: &trees,
        check_signature: checker.as_ref().map(|_| &check as attest::SignatureCheck),
    };
    // Commits without a note of its own may be attested by a note on another commit with the
    // same tree (the squashed or cherry-picked original): those notes are read, once.
    let wanted_trees: HashSet<&str> = commits
        .iter()
        .filter(|c| c.parents.len() == 1 && !index.contains_key(c.commit.as_str()))
        .map(|c| c.tree.as_str())
        .collect();
    let by_change = if wanted_trees.is_empty() {
        ByChange::default()
    } else {
        ByChange::read(git, &index, &trees, &wanted_trees)?
    };
    let mut judged = Vec::with_capacity(commits.len());
    for c in commits {
        let parent = c
            .parents
            .first()
            .and_then(|p| trees.get(p.as_str()).map(|t| (p, t)));
        let subject = attest::Subject {
            tree: &c.tree,
            parent,
        };
        let mut verdict = match notes.get(c.commit.as_str()) {
            None => Err(Unattested::NoNote),
            Some((claims, why)) => attest::judge_claims(claims, why.clone(), &subject, &ctx),
        };
        if verdict == Err(Unattested::NoNote) && c.parents.len() == 1 {
            let all = &by_change;
            if let Some(claims) = all.by_tree.get(c.tree.as_str()) {
                let ctx = attest::Context {
                    base_trees: &all.base_trees,
                    check_signature: ctx.check_signature,
                };
                match attest::judge_claims(claims, None, &subject, &ctx) {
                    Ok(a) => verdict = Ok(a),
                    // An attestation of this tree for another parent says more than "no note".
                    Err(why @ Unattested::ParentMismatch(_)) => verdict = Err(why),
                    Err(_) => {}
                }
            }
        }
        let (run_id, signer, problem) = match verdict {
            Ok(a) => (Some(a.run_id), a.signer, None),
            Err(why) if c.parents.len() > 1 => match merge_problem(git, &c)? {
                None => (None, None, None),
                Some(merge_why) => (
                    None,
                    None,
                    Some(if why == Unattested::NoNote {
                        Unattested::Merge(merge_why)
                    } else {
                        why
                    }),
                ),
            },
            Err(why) => (None, None, Some(why)),
        };
        judged.push(Judged {
            commit: c,
            run_id,
            signer,
            problem,
        });
    }
    Ok(judged)
}

/// Every approved attestation, grouped by the tree it is for: read once, when a commit without a
/// note of its own needs it.
#[derive(Default)]
struct ByChange {
    by_tree: HashMap<String, Vec<attest::Claim>>,
    base_trees: HashMap<String, crate::git::TreeId>,
}

impl ByChange {
    /// The approved attestations for the `wanted` trees, from every note.
    fn read(
        git: &Git,
        index: &HashMap<String, Vec<String>>,
        trees: &HashMap<String, crate::git::TreeId>,
        wanted: &HashSet<&str>,
    ) -> Result<ByChange> {
        // Reading every note (one `cat-file --batch`) costs less than asking git for the tree of
        // every noted commit, which makes it parse each commit.
        let all: Vec<(String, Vec<String>)> =
            index.iter().map(|(c, b)| (c.clone(), b.clone())).collect();
        let mut by_tree: HashMap<String, Vec<attest::Claim>> = HashMap::new();
        for (claims, _) in parse_all(read_notes(git, &all)?).into_values() {
            for claim in claims
                .into_iter()
                .filter(|c| c.approved && wanted.contains(c.tree.as_str()))
            {
                by_tree
                    .entry(claim.tree.to_string())
                    .or_default()
                    .push(claim);
            }
        }
        let bases: Vec<String> = format_1_bases(by_tree.values().flatten())
            .into_iter()
            .filter(|b| !trees.contains_key(b))
            .collect();
        let mut base_trees = crate::git::objects::trees_of(git, &bases)?;
        base_trees.extend(trees.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(ByChange {
            by_tree,
            base_trees,
        })
    }
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
