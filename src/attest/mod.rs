//! Verification attestations: a git note on `refs/notes/pipeline` per shipped commit, bound to
//! the change: the commit's tree and its parent's tree. A commit is attested when its note holds
//! an approved attestation for both (so amending the code or rebasing un-attests it, rewording
//! the message does not); with signatures required, one whose signature verifies.

pub mod dsse;
pub mod hooks;
pub mod sign;
pub mod statement;
pub mod trace;
pub mod verify;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::agent::json_scan;
use crate::git::{Oid, TreeId};
use statement::Statement;

pub const NOTES_REF: &str = "refs/notes/pipeline";
/// Format 1: git-pipeline's own JSON (still read); format 2: an in-toto Statement (written).
pub const FORMAT_1: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub status: String,
}

/// Format 1, as versions before format 2 wrote it: read so that repositories keep their history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttestationV1 {
    pub version: u32,
    pub run_id: String,
    pub commit: Oid,
    pub tree: TreeId,
    pub base: Oid,
    pub approved: bool,
    pub verifier: String,
    pub rounds: u32,
    pub gates: Vec<GateResult>,
    pub at: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docs: Vec<String>,
}

/// The parent an attestation vouches for.
#[derive(Debug, Clone, PartialEq)]
pub enum BaseClaim {
    /// Format 2: the parent's tree.
    Tree(TreeId),
    /// Format 1: the base commit (its tree is looked up).
    Commit(Oid),
}

/// What one attestation in a note claims, whatever its format.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub format: u32,
    pub run_id: String,
    pub tree: TreeId,
    pub approved: bool,
    pub base: BaseClaim,
    /// The DSSE envelope it came in, when it was signed.
    pub envelope: Option<dsse::Envelope>,
}

/// Every attestation in a note (notes concatenated by a rewrite hold several), and why the last
/// object that is not one could not be read.
pub fn claims(note: &[u8]) -> (Vec<Claim>, Option<String>) {
    let text = String::from_utf8_lossy(note);
    let mut found = Vec::new();
    let mut last_error = None;
    for obj in json_scan::objects(&text) {
        match claim(serde_json::Value::Object(obj)) {
            Ok(c) => found.push(c),
            Err(e) => last_error = Some(e),
        }
    }
    (found, last_error)
}

fn claim(value: serde_json::Value) -> Result<Claim, String> {
    if value.get("payloadType").is_some() {
        let envelope: dsse::Envelope = serde_json::from_value(value)
            .map_err(|e| format!("a DSSE envelope that does not parse: {e}"))?;
        if envelope.payload_type != statement::PAYLOAD_TYPE {
            return Err(format!(
                "a DSSE envelope of payload type {:?}, not an in-toto statement",
                envelope.payload_type
            ));
        }
        let payload = envelope.payload_bytes()?;
        let statement: Statement = serde_json::from_slice(&payload)
            .map_err(|e| format!("a signed statement that does not parse: {e}"))?;
        let mut c = from_statement(&statement)?;
        c.envelope = Some(envelope);
        return Ok(c);
    }
    if value.get("_type").is_some() {
        let statement: Statement = serde_json::from_value(value)
            .map_err(|e| format!("a statement that does not parse: {e}"))?;
        return from_statement(&statement);
    }
    let v1: AttestationV1 = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if v1.version != FORMAT_1 {
        return Err(format!(
            "attestation format {} is not known here",
            v1.version
        ));
    }
    Ok(Claim {
        format: FORMAT_1,
        run_id: v1.run_id,
        tree: v1.tree,
        approved: v1.approved,
        base: BaseClaim::Commit(v1.base),
        envelope: None,
    })
}

fn from_statement(s: &Statement) -> Result<Claim, String> {
    let (_, tree) = s.commit_and_tree()?;
    Ok(Claim {
        format: 2,
        run_id: s.predicate.run_id.clone(),
        tree,
        approved: s.predicate.approved,
        base: BaseClaim::Tree(s.predicate.base.tree.clone()),
        envelope: None,
    })
}

/// Why a commit is not attested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "why", content = "detail")]
pub enum Unattested {
    NoNote,
    Rejected,
    /// The note was made for another tree: the code changed after verification.
    TreeMismatch(String),
    /// The tree is the attested one, but the parent is not the one it was gated on: a rebase or
    /// re-parenting keeps the tree and changes what the commit does.
    ParentMismatch(ParentMismatch),
    Unreadable(String),
    /// A merge that is not the clean merge of its parents (or an octopus merge) and has no note.
    Merge(String),
    /// Signatures are required and the attestation has none.
    Unsigned,
    /// Signatures are required and none of the attestation's verifies (why).
    BadSignature(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParentMismatch {
    /// The parent tree the attestation vouches for (or, format 1, the base commit).
    pub attested_base: String,
    /// This commit's parent tree; `None` for a root commit.
    pub parent_tree: Option<TreeId>,
}

/// The first 12 characters (never cut inside a character: ids in notes are untrusted text).
fn short(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(i, _)| &id[..i])
}

impl Unattested {
    pub fn describe(&self) -> String {
        match self {
            Unattested::NoNote => "no note".to_owned(),
            Unattested::Rejected => "the note says not approved".to_owned(),
            Unattested::TreeMismatch(t) => format!(
                "tree mismatch: the code changed after verification (note is for tree {})",
                short(t)
            ),
            Unattested::ParentMismatch(p) => format!(
                "attested for another parent: the change was verified on {}, this commit's parent is {} (a rebase or re-parenting changes what it does; re-check it with git pipeline reverify)",
                p.attested_base.split_once(' ').map_or_else(
                    || p.attested_base.clone(),
                    |(kind, id)| format!("{kind} {}", short(id))
                ),
                p.parent_tree.as_deref().map_or_else(
                    || "none (a root commit)".to_owned(),
                    |t| format!("tree {}", short(t))
                )
            ),
            Unattested::Unreadable(e) => format!("unreadable note: {e}"),
            Unattested::Merge(why) => why.clone(),
            Unattested::Unsigned => {
                "unsigned: signatures are required and this attestation has none".to_owned()
            }
            Unattested::BadSignature(why) => format!("bad signature: {why}"),
        }
    }
}

/// The commit being judged.
pub struct Subject<'a> {
    pub tree: &'a TreeId,
    /// Its first parent, and that parent's tree; `None` for a root commit.
    pub parent: Option<(&'a Oid, &'a TreeId)>,
}

/// Checks an envelope's signatures: who signed, or why none holds.
pub type SignatureCheck<'a> = &'a dyn Fn(&dsse::Envelope) -> Result<String, String>;

pub struct Context<'a> {
    /// Trees of the commits format 1 attestations name as their base.
    pub base_trees: &'a HashMap<String, TreeId>,
    /// Set when signatures are required.
    pub check_signature: Option<SignatureCheck<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attested {
    pub run_id: String,
    /// Who signed it, when signatures were checked.
    pub signer: Option<String>,
}

impl BaseClaim {
    fn holds_for(
        &self,
        parent: Option<(&Oid, &TreeId)>,
        base_trees: &HashMap<String, TreeId>,
    ) -> bool {
        let Some((parent, parent_tree)) = parent else {
            return false;
        };
        match self {
            BaseClaim::Tree(t) => t == parent_tree,
            BaseClaim::Commit(c) => {
                c == parent || base_trees.get(c.as_str()).is_some_and(|t| t == parent_tree)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            BaseClaim::Tree(t) => format!("tree {t}"),
            BaseClaim::Commit(c) => format!("commit {c}"),
        }
    }
}

/// Judge a commit by its note: one approved attestation for its tree and its parent (signed, when
/// signatures are required) is enough.
pub fn judge(
    note: Option<&[u8]>,
    subject: &Subject,
    ctx: &Context,
) -> Result<Attested, Unattested> {
    let Some(note) = note else {
        return Err(Unattested::NoNote);
    };
    let (found, last_error) = claims(note);
    judge_claims(&found, last_error, subject, ctx)
}

/// [`judge`] for a note already read into its attestations (and why the last object that is not
/// one could not be read).
pub fn judge_claims(
    found: &[Claim],
    last_error: Option<String>,
    subject: &Subject,
    ctx: &Context,
) -> Result<Attested, Unattested> {
    if found.is_empty() {
        return Err(Unattested::Unreadable(
            last_error.unwrap_or_else(|| "no attestation in it".to_owned()),
        ));
    }
    let approved: Vec<&Claim> = found.iter().filter(|c| c.approved).collect();
    let Some(first) = approved.first() else {
        return Err(Unattested::Rejected);
    };
    let same_tree: Vec<&Claim> = approved
        .iter()
        .copied()
        .filter(|c| c.tree == subject.tree)
        .collect();
    if same_tree.is_empty() {
        return Err(Unattested::TreeMismatch(first.tree.to_string()));
    }
    let holding: Vec<&Claim> = same_tree
        .iter()
        .copied()
        .filter(|c| c.base.holds_for(subject.parent, ctx.base_trees))
        .collect();
    let Some(first_holding) = holding.first() else {
        return Err(Unattested::ParentMismatch(ParentMismatch {
            attested_base: same_tree[0].base.describe(),
            parent_tree: subject.parent.map(|(_, t)| t.clone()),
        }));
    };
    let Some(check) = ctx.check_signature else {
        return Ok(Attested {
            run_id: first_holding.run_id.clone(),
            signer: None,
        });
    };
    let mut why = None;
    // Each check starts a program: a note stuffed with envelopes gets only a few looked at.
    let signed = holding
        .iter()
        .filter_map(|c| c.envelope.as_ref().map(|e| (c, e)));
    for (c, envelope) in signed.take(8) {
        match check(envelope) {
            Ok(signer) => {
                return Ok(Attested {
                    run_id: c.run_id.clone(),
                    signer: Some(signer),
                });
            }
            Err(e) => why = Some(e),
        }
    }
    Err(why.map_or(Unattested::Unsigned, Unattested::BadSignature))
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
        assert_eq!(
            Unattested::ParentMismatch(ParentMismatch {
                attested_base: "tree 0123456789abcdef".to_owned(),
                parent_tree: Some(tid(&"fedcba9876543210".repeat(3)[..40])),
            })
            .describe(),
            "attested for another parent: the change was verified on tree 0123456789ab, this commit's parent is tree fedcba987654 (a rebase or re-parenting changes what it does; re-check it with git pipeline reverify)"
        );
        assert_eq!(
            Unattested::BadSignature("no key".to_owned()).describe(),
            "bad signature: no key"
        );
    }

    fn v1(tree: &str, approved: bool) -> String {
        serde_json::to_string(&AttestationV1 {
            version: 1,
            run_id: "r".to_owned(),
            commit: oid(&"c".repeat(40)),
            tree: tid(tree),
            base: oid(BASE),
            approved,
            verifier: "v".to_owned(),
            rounds: 1,
            gates: vec![],
            at: "t".to_owned(),
            docs: vec![],
        })
        .unwrap_or_default()
            + "\n"
    }

    fn v2(tree: &str, base_tree: &str) -> String {
        let mut p = statement::tests::predicate(base_tree);
        p.run_id = "r2".to_owned();
        Statement::new(&"c".repeat(40), tree, p).to_json() + "\n"
    }

    const T1: &str = "1111111111111111111111111111111111111111";
    const T2: &str = "2222222222222222222222222222222222222222";
    const PT: &str = "3333333333333333333333333333333333333333";
    const BASE: &str = "4444444444444444444444444444444444444444";

    const OTHER: &str = "5555555555555555555555555555555555555555";

    fn oid(text: &str) -> Oid {
        Oid::parse(text).expect("a test id")
    }

    fn tid(text: &str) -> TreeId {
        TreeId::parse(text).expect("a test id")
    }

    fn run(note: &str, tree: &str, parent: Option<(&str, &str)>) -> Result<Attested, Unattested> {
        let trees = HashMap::from([(BASE.to_owned(), tid(PT))]);
        let tree = tid(tree);
        let parent = parent.map(|(c, t)| (oid(c), tid(t)));
        judge(
            Some(note.as_bytes()),
            &Subject {
                tree: &tree,
                parent: parent.as_ref().map(|(c, t)| (c, t)),
            },
            &Context {
                base_trees: &trees,
                check_signature: None,
            },
        )
    }

    #[test]
    fn format_1_judges_by_tree_approval_and_base() {
        let on_base = Some((BASE, PT));
        assert!(run(&v1(T1, true), T1, on_base).is_ok());
        // Another parent commit with the base's tree: the same change.
        assert!(run(&v1(T1, true), T1, Some((OTHER, PT))).is_ok());
        assert!(matches!(
            run(&v1(T1, true), T1, Some((OTHER, T2))),
            Err(Unattested::ParentMismatch(_))
        ));
        assert_eq!(
            run(&v1(T1, true), T2, on_base),
            Err(Unattested::TreeMismatch(T1.to_owned()))
        );
        assert_eq!(run(&v1(T1, false), T1, on_base), Err(Unattested::Rejected));
        assert!(matches!(
            run("hello", T1, on_base),
            Err(Unattested::Unreadable(_))
        ));
        let both = format!("{}{}", v1(PT, true), v1(T2, true));
        assert!(run(&both, T2, on_base).is_ok(), "concatenated notes");
        let none = HashMap::new();
        let ctx = Context {
            base_trees: &none,
            check_signature: None,
        };
        let (t1, base, pt) = (tid(T1), oid(BASE), tid(PT));
        assert_eq!(
            judge(
                None,
                &Subject {
                    tree: &t1,
                    parent: Some((&base, &pt))
                },
                &ctx
            ),
            Err(Unattested::NoNote)
        );
    }

    #[test]
    fn format_2_binds_the_parent_tree() {
        let note = v2(T1, PT);
        let ok = run(&note, T1, Some((OTHER, PT)));
        assert_eq!(ok.map(|a| a.run_id), Ok("r2".to_owned()));
        let moved = run(&note, T1, Some((OTHER, T2)));
        assert_eq!(
            moved,
            Err(Unattested::ParentMismatch(ParentMismatch {
                attested_base: format!("tree {PT}"),
                parent_tree: Some(tid(T2)),
            }))
        );
        assert!(matches!(
            run(&note, T1, None),
            Err(Unattested::ParentMismatch(_))
        ));
        // Old and new formats side by side in one note.
        let both = format!("{}{}", v1(T2, true), note);
        assert!(run(&both, T1, Some((OTHER, PT))).is_ok());
        assert!(run(&both, T2, Some((BASE, T2))).is_ok());
    }

    #[test]
    fn required_signatures_are_checked_and_unsigned_ones_refused() {
        let trees = HashMap::new();
        let statement = v2(T1, PT);
        let envelope = dsse::Envelope::new(
            statement::PAYLOAD_TYPE,
            statement.trim_end().as_bytes(),
            vec![dsse::Signature {
                keyid: String::new(),
                sig: "c2ln".to_owned(),
            }],
        )
        .to_json();
        let good = |_: &dsse::Envelope| -> Result<String, String> { Ok("alice".to_owned()) };
        let bad = |_: &dsse::Envelope| -> Result<String, String> { Err("forged".to_owned()) };
        let (t1, other, pt) = (tid(T1), oid(OTHER), tid(PT));
        let with = |note: &str, check: SignatureCheck| {
            judge(
                Some(note.as_bytes()),
                &Subject {
                    tree: &t1,
                    parent: Some((&other, &pt)),
                },
                &Context {
                    base_trees: &trees,
                    check_signature: Some(check),
                },
            )
        };
        assert_eq!(
            with(&envelope, &good).map(|a| a.signer),
            Ok(Some("alice".to_owned()))
        );
        assert_eq!(
            with(&envelope, &bad),
            Err(Unattested::BadSignature("forged".to_owned()))
        );
        assert_eq!(with(&statement, &good), Err(Unattested::Unsigned));
        assert_eq!(
            with(&v1(T1, true), &good),
            Err(Unattested::ParentMismatch(ParentMismatch {
                attested_base: format!("commit {BASE}"),
                parent_tree: Some(tid(PT)),
            }))
        );
        // Unsigned, the envelope still attests.
        assert!(run(&envelope, T1, Some((OTHER, PT))).is_ok());
        // An envelope of another payload type is not ours.
        let other = envelope.replace("application/vnd.in-toto+json", "text/plain");
        assert!(matches!(
            run(&other, T1, Some((OTHER, PT))),
            Err(Unattested::Unreadable(_))
        ));
    }

    #[test]
    fn ids_in_notes_are_checked_and_never_cut_inside_a_character() {
        assert_eq!(short("aééééééééééééé"), "aééééééééééé");
        assert_eq!(short("abc"), "abc");
        let bad = v1(T1, true).replace(T1, "aéééééé");
        assert!(matches!(
            run(&bad, T1, Some((BASE, PT))),
            Err(Unattested::Unreadable(_))
        ));
        let describe = Unattested::TreeMismatch("aéééééééééééééé".to_owned()).describe();
        assert!(describe.contains("aééééééééééé"), "{describe}");
    }

    proptest! {
        /// No note content attests a tree unless it holds an approved attestation for it.
        #[test]
        fn arbitrary_notes_never_attest(bytes in proptest::collection::vec(any::<u8>(), 0..500)) {
            let trees = HashMap::new();
            let ctx = Context { base_trees: &trees, check_signature: None };
            let (tree, parent, parent_tree) = (tid(&"f00d".repeat(10)), oid(OTHER), tid(PT));
            let subject = Subject { tree: &tree, parent: Some((&parent, &parent_tree)) };
            if judge(Some(&bytes), &subject, &ctx).is_ok() {
                let text = String::from_utf8_lossy(&bytes);
                prop_assert!(text.contains("f00d") && text.contains("approved"));
            }
        }
    }
}
