//! Attestation format 2: an in-toto Statement v1 whose subject is the shipped commit and its tree,
//! and whose predicate says what was gated and verified, from which base. Supply-chain verifiers
//! read this shape; `docs/attestations.md` describes every field.

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::git::{Oid, TreeId};

/// in-toto's Statement type, version 1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Ours: an identifier, versioned with the predicate's shape (documented in docs/attestations.md).
pub const PREDICATE_TYPE: &str = "https://git-pipeline.dev/attestation/v2";
/// DSSE's payload type for in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predicate {
    pub run_id: String,
    pub approved: bool,
    /// The parent the change was gated and verified on: a commit with this tree is the only
    /// parent this attestation vouches for.
    pub base: Base,
    pub task: TaskDigest,
    #[serde(default)]
    pub agents: Vec<AgentUse>,
    #[serde(default)]
    pub gates: Vec<GateUse>,
    pub verifier: Verifier,
    #[serde(default)]
    pub scope: ScopeUse,
    #[serde(default)]
    pub usage: UsageTotal,
    /// Paths the docs agent changed after verification (held to `docs.paths`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docs: Vec<String>,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Base {
    pub commit: Oid,
    pub tree: TreeId,
}

/// The task is private to the run; its digest lets a reader match it to a record without it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDigest {
    pub sha256: String,
}

impl TaskDigest {
    pub fn of(task: &str) -> TaskDigest {
        let digest = sha2::Sha256::digest(task.as_bytes());
        TaskDigest {
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentUse {
    /// `builder`, `fixer`, `docs`, `verifier`...
    pub role: String,
    /// The `[agents.<name>]` entry.
    pub name: String,
    /// The CLI (program name, or preset).
    pub cli: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// It changed the files that ship (a builder, fixer or docs agent that wrote).
    pub changed_tree: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateUse {
    pub name: String,
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verifier {
    pub agent: String,
    pub verdict: String,
    pub rounds: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeUse {
    /// `None`: no allow list (everything not denied).
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
    /// The paths the change touches.
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotal {
    pub tokens: u64,
    pub tokens_estimated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Statement {
    pub fn new(commit: &str, tree: &str, predicate: Predicate) -> Statement {
        let subject = |name: &str, algo: &str, id: &str| Subject {
            name: name.to_owned(),
            digest: [(algo.to_owned(), id.to_owned())].into_iter().collect(),
        };
        Statement {
            kind: STATEMENT_TYPE.to_owned(),
            subject: vec![
                subject("commit", "gitCommit", commit),
                subject("tree", "gitTree", tree),
            ],
            predicate_type: PREDICATE_TYPE.to_owned(),
            predicate,
        }
    }

    /// The canonical bytes: one line of JSON (the DSSE payload, and the unsigned note).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn digest(&self, name: &str, algo: &str) -> Option<&str> {
        self.subject
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.digest.get(algo))
            .map(String::as_str)
    }

    /// The commit and tree it vouches for, when it is a statement of ours with both.
    pub fn commit_and_tree(&self) -> Result<(Oid, TreeId), String> {
        if self.kind != STATEMENT_TYPE {
            return Err(format!(
                "not an in-toto Statement v1 (_type {:?})",
                self.kind
            ));
        }
        if self.predicate_type != PREDICATE_TYPE {
            return Err(format!(
                "predicate type {:?} is not git-pipeline's",
                self.predicate_type
            ));
        }
        match (
            self.digest("commit", "gitCommit"),
            self.digest("tree", "gitTree"),
        ) {
            (Some(c), Some(t)) => match (Oid::parse(c), TreeId::parse(t)) {
                (Some(c), Some(t)) => Ok((c, t)),
                _ => Err(
                    "its subject's gitCommit or gitTree digest is not a full object id".to_owned(),
                ),
            },
            _ => Err("its subject lacks a gitCommit or gitTree digest".to_owned()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn predicate(base_tree: &str) -> Predicate {
        Predicate {
            run_id: "r".to_owned(),
            approved: true,
            base: Base {
                commit: Oid::parse(&"b".repeat(40)).expect("an id"),
                tree: TreeId::parse(base_tree).expect("an id"),
            },
            task: TaskDigest::of("fix"),
            agents: vec![],
            gates: vec![],
            verifier: Verifier {
                agent: "v".to_owned(),
                verdict: "approved".to_owned(),
                rounds: 1,
            },
            scope: ScopeUse::default(),
            usage: UsageTotal::default(),
            docs: vec![],
            at: "t".to_owned(),
        }
    }

    #[test]
    fn a_statement_names_its_commit_and_tree_and_round_trips() {
        let (c, t) = ("c".repeat(40), "a".repeat(64));
        let s = Statement::new(&c, &t, predicate(&"e".repeat(40)));
        let json = s.to_json();
        assert!(!json.contains('\n'));
        assert!(json.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"commit","digest":{"gitCommit":"ccc"#), "{json}");
        let back: Statement = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, s);
        let ids = back
            .commit_and_tree()
            .map(|(c, t)| (c.to_string(), t.to_string()));
        assert_eq!(ids, Ok((c, t)));
        assert_eq!(
            TaskDigest::of("fix").sha256,
            "1c6e6c4c02e55178e85890fc9bbed4ce046415ec8122bf38f711b779184ae2a0"
        );
    }

    #[test]
    fn only_our_statements_with_full_ids_count() {
        let mut s = Statement::new(&"c".repeat(40), &"a".repeat(40), predicate(&"e".repeat(40)));
        s.predicate_type = "https://slsa.dev/provenance/v1".to_owned();
        assert!(s.commit_and_tree().is_err());
        let mut s = Statement::new(&"c".repeat(39), &"a".repeat(40), predicate(&"e".repeat(40)));
        assert!(s.commit_and_tree().is_err());
        s = Statement::new(&"C".repeat(40), &"a".repeat(40), predicate(&"e".repeat(40)));
        assert!(s.commit_and_tree().is_err());
        s.kind = "https://in-toto.io/Statement/v0.1".to_owned();
        assert!(s.commit_and_tree().is_err());
    }
}
