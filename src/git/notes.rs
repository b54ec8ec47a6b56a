//! Reading a notes ref as a whole: which commits have a note, and which blob holds it.

use std::collections::HashMap;

use super::{Git, Opts, split_z};
use crate::error::Result;

/// The notes of a notes ref (or notes commit): commit id -> note blob id.
pub fn read_notes_index(git: &Git, notes_rev: &str) -> Result<HashMap<String, String>> {
    Ok(entries(git, notes_rev)?.into_iter().collect())
}

/// Every (commit id, note blob id) entry of a notes tree, duplicates included: a note can be
/// stored both fanned out (`ab/cdef...`) and flat, and git then shows the two concatenated.
fn entries(git: &Git, notes_rev: &str) -> Result<Vec<(String, String)>> {
    let out = git.output(
        ["ls-tree", "-r", "-z", "--full-tree", notes_rev],
        Opts::default(),
    )?;
    if !out.status.success() {
        // No notes ref yet: no commit is attested.
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
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
            found.push((commit, blob.to_owned()));
        }
    }
    Ok(found)
}

/// Where `remote`'s copy of a notes ref is fetched to: `refs/notes/remotes/<remote>/<name>`.
pub fn remote_mirror(notes_ref: &str, remote: &str) -> String {
    let name = notes_ref.strip_prefix("refs/notes/").unwrap_or(notes_ref);
    format!("refs/notes/remotes/{remote}/{name}")
}

/// The fetched copies of `notes_ref` from every remote (see [`remote_mirror`]).
pub fn remote_mirrors(git: &Git, notes_ref: &str) -> Result<Vec<String>> {
    let name = notes_ref.strip_prefix("refs/notes/").unwrap_or(notes_ref);
    Ok(super::refs::names_under(git, "refs/notes/remotes/")?
        .into_iter()
        .filter(|r| {
            r.strip_prefix("refs/notes/remotes/")
                .and_then(|rest| rest.strip_suffix(name))
                .is_some_and(|remote| remote.ends_with('/') && remote.len() > 1)
        })
        .collect())
}

/// Fetch `notes_ref` from `remote` (a remote's name or a URL) into `into`, replacing what `into`
/// held: it mirrors the remote and is never written otherwise. `false` when the remote has no
/// such ref.
pub fn fetch_notes(git: &Git, remote: &str, notes_ref: &str, into: &str) -> Result<bool> {
    if remote.starts_with('-') || remote.is_empty() {
        return Err(crate::error::Error::usage(format!(
            "{remote:?} is not a remote"
        )));
    }
    let out = git.output(
        [
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            remote,
            &format!("+{notes_ref}:{into}"),
        ],
        Opts::default(),
    )?;
    if out.status.success() {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("couldn't find remote ref") {
        return Ok(false);
    }
    let why = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("git fetch failed")
        .trim()
        .trim_start_matches("fatal: ");
    // git's message may hold the URL, and a URL may hold credentials: the remote is not echoed.
    let why = if why.contains("://") || why.contains('@') {
        "git fetch failed"
    } else {
        why
    };
    Err(crate::error::Error::usage_hint(
        format!("cannot fetch {notes_ref} from the remote: {why}"),
        "check the remote's name or URL, and that this machine can fetch from it",
    ))
}

/// One note that differs between two values of a notes ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteChange {
    /// The annotated object.
    pub object: String,
    /// Its note blob before and after (`None`: no note).
    pub old: Option<String>,
    pub new: Option<String>,
}

/// The notes that differ between two values of a notes ref (`None`: the ref did not exist).
pub fn changes(git: &Git, old: Option<&str>, new: Option<&str>) -> Result<Vec<NoteChange>> {
    let read = |rev: Option<&str>| match rev {
        Some(r) => read_notes_index(git, r),
        None => Ok(HashMap::new()),
    };
    let (before, after) = (read(old)?, read(new)?);
    // A second entry for one commit (stored fanned out and flat) adds to its note unseen by a
    // map: it is reported as a change with no single blob.
    let mut seen = std::collections::HashSet::new();
    let doubled: Vec<NoteChange> = match new {
        Some(r) => entries(git, r)?
            .into_iter()
            .filter(|(object, _)| !seen.insert(object.clone()))
            .map(|(object, _)| NoteChange {
                old: before.get(&object).cloned(),
                object,
                new: Some(String::new()),
            })
            .collect(),
        None => Vec::new(),
    };
    let mut out: Vec<NoteChange> = after
        .iter()
        .filter(|(object, blob)| before.get(*object) != Some(*blob))
        .map(|(object, blob)| NoteChange {
            object: object.clone(),
            old: before.get(object).cloned(),
            new: Some(blob.clone()),
        })
        .chain(
            before
                .iter()
                .filter(|(object, _)| !after.contains_key(*object))
                .map(|(object, blob)| NoteChange {
                    object: object.clone(),
                    old: Some(blob.clone()),
                    new: None,
                }),
        )
        .collect();
    out.extend(doubled);
    out.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(out)
}

/// Make `object`'s note on `notes_ref` the blob `blob` again, or remove it (`None`), keeping
/// every other note as it is now.
pub fn put_note_back(git: &Git, notes_ref: &str, object: &str, blob: Option<&str>) -> Result<()> {
    match blob {
        Some(blob) => git.run(["notes", "--ref", notes_ref, "add", "-f", "-C", blob, object])?,
        None => git.run([
            "notes",
            "--ref",
            notes_ref,
            "remove",
            "--ignore-missing",
            object,
        ])?,
    };
    Ok(())
}
