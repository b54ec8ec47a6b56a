//! Circuit breakers for the fix loop (SPEC `[limits]`):
//! - the same error, `max_same_error` times: an error's signature is its text with numbers, hex
//!   ids, paths and times removed, so "line 41" and "line 43" of the same failure match;
//! - oscillation: an attempt whose changes equal an earlier attempt's (same tree).

use std::collections::HashMap;

use crate::git::TreeId;

/// What the breakers remember, for a resumed run: error signatures with how often each was seen,
/// and each attempt's tree.
pub type Memory = (Vec<(u64, u32)>, Vec<(u32, TreeId)>);

pub struct Breakers {
    max_same: u32,
    oscillation: bool,
    seen: HashMap<u64, u32>,
    trees: Vec<(u32, TreeId)>,
}

impl Breakers {
    pub fn new(max_same: u32, oscillation: bool) -> Self {
        Breakers {
            max_same,
            oscillation,
            seen: HashMap::new(),
            trees: Vec::new(),
        }
    }

    /// Continue from a saved memory (a resumed run).
    pub fn restore(&mut self, counts: &[(u64, u32)], trees: &[(u32, TreeId)]) {
        self.seen = counts.iter().copied().collect();
        self.trees = trees.to_vec();
    }

    /// The memory to save: error signatures with counts, and attempt trees.
    pub fn memory(&self) -> Memory {
        let mut counts: Vec<(u64, u32)> = self.seen.iter().map(|(k, v)| (*k, *v)).collect();
        counts.sort_unstable();
        (counts, self.trees.clone())
    }

    /// Count an error; the reason to stop when it has now been seen `max_same` times.
    pub fn error(&mut self, source: &str, text: &str) -> Option<String> {
        if self.max_same == 0 {
            return None;
        }
        let n = self.seen.entry(signature(source, text)).or_insert(0);
        *n += 1;
        (*n >= self.max_same).then(|| {
            format!(
                "circuit breaker: {source} failed {n} times with the same error (limits.max_same_error = {})",
                self.max_same
            )
        })
    }

    /// Record an attempt's tree; the reason to stop when an earlier attempt had the same one.
    pub fn attempt(&mut self, attempt: u32, tree: &TreeId) -> Option<String> {
        let earlier = self.trees.iter().find(|(_, t)| t == tree).map(|(a, _)| *a);
        self.trees.push((attempt, tree.clone()));
        match earlier {
            Some(a) if self.oscillation => Some(format!(
                "circuit breaker: attempt {attempt} reproduced the changes of attempt {a} (oscillation)"
            )),
            _ => None,
        }
    }
}

/// A stable hash of the normalised error (FNV-1a, so that it is the same in every process).
pub fn signature(source: &str, text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in source.bytes().chain([0]).chain(normalize(text).bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Drop what changes between two runs of the same failure: paths, hex ids, numbers (which also
/// covers times and durations), and spacing.
pub fn normalize(text: &str) -> String {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let t = token.trim_matches(|c: char| {
            matches!(c, '(' | ')' | '[' | ']' | ',' | ';' | '\'' | '"' | '`')
        });
        if t.contains('/') || t.contains('\\') {
            out.push("<path>".to_owned());
            continue;
        }
        if t.len() >= 7
            && t.chars().all(|c| c.is_ascii_hexdigit())
            && t.chars().any(|c| c.is_ascii_digit())
        {
            out.push("<hex>".to_owned());
            continue;
        }
        let mut word = String::new();
        let mut in_number = false;
        for c in t.chars() {
            if c.is_ascii_digit() {
                if !in_number {
                    word.push('#');
                    in_number = true;
                }
            } else {
                in_number = false;
                word.push(c);
            }
        }
        out.push(word);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(digit: char) -> TreeId {
        TreeId::parse(&digit.to_string().repeat(40)).expect("a tree id")
    }

    #[test]
    fn the_signature_is_fnv_1a_the_same_in_every_process() {
        assert_eq!(signature("gate x", "boom"), 12_123_443_224_099_722_821);
        assert_ne!(signature("gate x", "boom"), signature("gate y", "boom"));
        assert_eq!(
            signature("gate x", "failed after 1.2s"),
            signature("gate x", "failed after 3.4s")
        );
    }

    #[test]
    fn a_resumed_run_remembers_errors_and_trees() {
        let mut b = Breakers::new(2, true);
        assert_eq!(b.error("gate x", "boom"), None);
        assert_eq!(b.attempt(1, &tree('1')), None);
        let (counts, trees) = b.memory();
        assert_eq!(counts.len(), 1);
        let mut resumed = Breakers::new(2, true);
        resumed.restore(&counts, &trees);
        assert!(
            resumed.error("gate x", "boom").is_some(),
            "the second time trips it"
        );
        assert!(
            resumed.attempt(2, &tree('1')).is_some(),
            "the tree of attempt 1 is remembered"
        );
    }

    #[test]
    fn paths_either_way_and_hex_with_a_digit_are_dropped_words_are_kept() {
        assert_eq!(normalize(r"failed at C:\work\a.rs"), "failed at <path>");
        assert_eq!(normalize("failed at src/a.rs"), "failed at <path>");
        assert_eq!(normalize("commit 1a2b3c4d"), "commit <hex>");
        assert_eq!(normalize("a facade of decade"), "a facade of decade");
        // Long, with digits, but not hex: its numbers go, the word stays.
        assert_eq!(normalize("step42xyz"), "step#xyz");
        // Short hex is a word with numbers, not an id.
        assert_eq!(normalize("id 1a2b"), "id #a#b");
    }

    use proptest::prelude::*;

    #[test]
    fn the_same_failure_matches_across_runs() {
        let a =
            "test pager::wraps failed at /tmp/run1/src/pager.rs:41:9 after 0.53s (id 3f9a2b7c1d)";
        let b =
            "test pager::wraps failed at /tmp/run2/src/pager.rs:43:9 after 1.20s (id 77aa00b1e2)";
        assert_eq!(signature("gate test", a), signature("gate test", b));
        assert_ne!(signature("gate test", a), signature("gate lint", a));
        assert_ne!(
            signature("gate test", a),
            signature("gate test", "test pager::other failed")
        );
    }

    #[test]
    fn trips_on_the_nth_same_error_and_on_a_repeated_tree() {
        let mut b = Breakers::new(2, true);
        assert!(b.error("gate test", "boom 1").is_none());
        assert!(b.error("gate test", "boom 2").is_some());
        let mut b = Breakers::new(2, true);
        assert!(b.attempt(1, &tree('a')).is_none());
        assert!(b.attempt(2, &tree('b')).is_none());
        let msg = b.attempt(3, &tree('a')).unwrap_or_default();
        assert!(
            msg.contains("attempt 3 reproduced the changes of attempt 1"),
            "{msg}"
        );
        let mut off = Breakers::new(0, false);
        assert!(off.error("g", "x").is_none() && off.error("g", "x").is_none());
        assert!(off.attempt(1, &tree('a')).is_none() && off.attempt(2, &tree('a')).is_none());
    }

    proptest! {
        /// Numbers never change a signature; words do.
        #[test]
        fn numbers_do_not_matter(words in proptest::collection::vec("[a-z]{1,8}", 1..8), n1 in 0u64..1_000_000, n2 in 0u64..1_000_000) {
            let text = words.join(" ");
            prop_assert_eq!(
                signature("g", &format!("{text} {n1}")),
                signature("g", &format!("{text} {n2}"))
            );
        }
    }
}
