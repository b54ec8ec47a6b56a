//! Reading a notes ref as a whole: which commits have a note, and which blob holds it.

use std::collections::HashMap;

use super::{Git, Opts, split_z};
use crate::error::Result;

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
