//! Verification attestations: a git note on `refs/notes/pipeline` per shipped commit, bound to
//! the commit's tree. A commit is attested when its note parses, says approved, and names the
//! commit's own tree (so amending the code un-attests it, rewording the message does not).

use serde::{Deserialize, Serialize};

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
    /// The verifier agent: `<config entry>` and the program that ran.
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
        // One line of JSON: `git notes` shows it whole and tools can grep it.
        serde_json::to_string(self).unwrap_or_default() + "\n"
    }
}
