//! Verification attestations: a git note on `refs/notes/pipeline` per shipped commit, bound to
//! the commit's tree. A commit is attested when its note parses, says approved, and names the
//! commit's own tree (so amending the code un-attests it, rewording the message does not).

pub mod hooks;
pub mod verify;

use serde::{Deserialize, Serialize};

use crate::agent::json_scan;

pub const NOTES_REF: &str = "refs/notes/pipeline";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attestation {
    pub version: u32,
    pub run_id: String,
    pub commit: String,
    pub tree: String,
    pub base: String,
    pub approved: bool,
    /// The verifier agent: `<config entry> (<program>)`.
    pub verifier: String,
    pub rounds: u32,
    pub gates: Vec<GateResult>,
    pub at: String,
    /// Paths the docs agent changed after verification (held to `docs.paths`), if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docs: Vec<String>,
}

impl Attestation {
    pub fn to_note(&self) -> String {
        // One line of JSON: `git notes show` prints it whole and tools can grep it.
        serde_json::to_string(self).unwrap_or_default() + "\n"
    }
}

/// Why a commit is not attested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "why", content = "detail")]
pub enum Unattested {
    NoNote,
    Rejected,
    /// The note was made for another tree: the code changed after verification.
    TreeMismatch(String),
    Unreadable(String),
    /// A merge that is not the clean merge of its parents (or an octopus merge) and has no note.
    Merge(String),
}

impl Unattested {
    pub fn describe(&self) -> String {
        match self {
            Unattested::NoNote => "no note".to_owned(),
            Unattested::Rejected => "the note says not approved".to_owned(),
            Unattested::TreeMismatch(t) => format!(
                "tree mismatch: the code changed after verification (note is for tree {})",
                &t[..t.len().min(12)]
            ),
            Unattested::Unreadable(e) => format!("unreadable note: {e}"),
            Unattested::Merge(why) => why.clone(),
        }
    }
}

/// Judge a commit by its note. Several attestations may share a note (notes concatenated by a
/// rewrite): one approved attestation for this tree is enough.
pub fn judge(note: Option<&[u8]>, tree: &str) -> Result<Attestation, Unattested> {
    let Some(note) = note else {
        return Err(Unattested::NoNote);
    };
    let text = String::from_utf8_lossy(note);
    let mut found: Vec<Attestation> = Vec::new();
    let mut last_error = None;
    for obj in json_scan::objects(&text) {
        match serde_json::from_value::<Attestation>(serde_json::Value::Object(obj)) {
            Ok(a) => found.push(a),
            Err(e) => last_error = Some(e.to_string()),
        }
    }
    if found.is_empty() {
        return Err(Unattested::Unreadable(
            last_error.unwrap_or_else(|| "no attestation in it".to_owned()),
        ));
    }
    if let Some(a) = found.iter().find(|a| a.approved && a.tree == tree) {
        return Ok(a.clone());
    }
    match found.iter().find(|a| a.approved) {
        Some(a) => Err(Unattested::TreeMismatch(a.tree.clone())),
        None => Err(Unattested::Rejected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_problem_reads_as_a_line() {
        assert_eq!(Unattested::NoNote.describe(), "no note");
        assert_eq!(
            Unattested::Rejected.describe(),
            "the note says not approved"
        );
        assert_eq!(
            Unattested::TreeMismatch("0123456789abcdef".to_owned()).describe(),
            "tree mismatch: the code changed after verification (note is for tree 0123456789ab)"
        );
        assert_eq!(
            Unattested::Unreadable("bad json".to_owned()).describe(),
            "unreadable note: bad json"
        );
        assert_eq!(Unattested::Merge("why".to_owned()).describe(), "why");
    }

    fn note(tree: &str, approved: bool) -> String {
        Attestation {
            version: 1,
            run_id: "r".to_owned(),
            commit: "c".to_owned(),
            tree: tree.to_owned(),
            base: "b".to_owned(),
            approved,
            verifier: "v".to_owned(),
            rounds: 1,
            gates: vec![],
            at: "t".to_owned(),
            docs: vec![],
        }
        .to_note()
    }

    #[test]
    fn judges_by_tree_and_approval() {
        assert!(judge(Some(note("t1", true).as_bytes()), "t1").is_ok());
        assert_eq!(
            judge(Some(note("t1", true).as_bytes()), "t2"),
            Err(Unattested::TreeMismatch("t1".to_owned()))
        );
        assert_eq!(
            judge(Some(note("t1", false).as_bytes()), "t1"),
            Err(Unattested::Rejected)
        );
        assert_eq!(judge(None, "t1"), Err(Unattested::NoNote));
        assert!(matches!(
            judge(Some(b"hello"), "t1"),
            Err(Unattested::Unreadable(_))
        ));
        let both = format!("{}\n{}", note("old", true), note("t2", true));
        assert!(
            judge(Some(both.as_bytes()), "t2").is_ok(),
            "concatenated notes"
        );
    }

    proptest! {
        /// No note content attests a tree unless it holds an approved attestation for it.
        #[test]
        fn arbitrary_notes_never_attest(bytes in proptest::collection::vec(any::<u8>(), 0..500)) {
            if judge(Some(&bytes), "f00d").is_ok() {
                let text = String::from_utf8_lossy(&bytes);
                prop_assert!(text.contains("f00d") && text.contains("approved"));
            }
        }
    }
}
