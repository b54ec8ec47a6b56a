//! The `duplicates` gate: code the run added that repeats code already in the repository, or
//! repeats itself, goes back to the builder with both places named.
//!
//! Files are cut into tokens (whitespace and comments dropped; names, literals and punctuation
//! kept as written), and every window of `min_tokens` consecutive tokens gets a rolling hash. A
//! window whose lines were all added by the run and whose tokens appear elsewhere (in a file of
//! the same language in the run's tree, or in another added place) is a repeat; neighbouring
//! repeats of the same place merge into one region, reported when it spans `min_lines` lines.
//! Code that was duplicated before the run was never added by it, so it never fails the gate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The gate's settings (`[[gates]] builtin = "duplicates"`).
#[derive(Debug, Clone)]
pub struct Options {
    pub min_tokens: usize,
    pub min_lines: u32,
    /// Languages looked at, by name (`rust`, `python`...); empty: every one known.
    pub languages: Vec<String>,
    /// Paths never looked at (generated code, vendored copies).
    pub ignore: crate::globs::Globs,
}

pub const DEFAULT_MIN_TOKENS: usize = 50;
pub const DEFAULT_MIN_LINES: u32 = 5;

/// How a language writes comments: line comments, and whether `/* */` blocks exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Syntax {
    line: &'static [&'static str],
    block: bool,
}

const C_LIKE: Syntax = Syntax {
    line: &["//"],
    block: true,
};
const HASH: Syntax = Syntax {
    line: &["#"],
    block: false,
};

/// Known languages: name, extensions, comment syntax.
const LANGUAGES: &[(&str, &[&str], Syntax)] = &[
    ("rust", &["rs"], C_LIKE),
    ("go", &["go"], C_LIKE),
    ("c", &["c", "h"], C_LIKE),
    ("cpp", &["cc", "cpp", "cxx", "hpp", "hh", "hxx"], C_LIKE),
    ("java", &["java"], C_LIKE),
    ("kotlin", &["kt", "kts"], C_LIKE),
    ("csharp", &["cs"], C_LIKE),
    ("javascript", &["js", "jsx", "mjs", "cjs"], C_LIKE),
    ("typescript", &["ts", "tsx", "mts", "cts"], C_LIKE),
    ("swift", &["swift"], C_LIKE),
    ("scala", &["scala"], C_LIKE),
    (
        "php",
        &["php"],
        Syntax {
            line: &["//", "#"],
            block: true,
        },
    ),
    ("python", &["py"], HASH),
    ("ruby", &["rb"], HASH),
    ("shell", &["sh", "bash"], HASH),
];

/// The language of a path, by its extension.
pub fn language_of(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?;
    LANGUAGES
        .iter()
        .find(|(_, exts, _)| exts.contains(&ext))
        .map(|(name, _, _)| *name)
}

pub fn known_languages() -> Vec<&'static str> {
    LANGUAGES.iter().map(|(n, _, _)| *n).collect()
}

fn syntax_of(language: &str) -> Syntax {
    LANGUAGES
        .iter()
        .find(|(n, _, _)| *n == language)
        .map_or(C_LIKE, |(_, _, s)| *s)
}

/// A token: a hash of its text, and its line (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    hash: u64,
    line: u32,
}

fn hash_bytes(b: &[u8]) -> u64 {
    // FNV-1a: stable across runs and platforms, and plenty for tokens.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in b {
        h ^= u64::from(*x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Cut source text into tokens, without whitespace and comments.
pub fn tokenize(text: &[u8], language: &str) -> Vec<Token> {
    let syntax = syntax_of(language);
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut i = 0usize;
    let n = text.len();
    while i < n {
        let c = text[i];
        if c == b'\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if syntax
            .line
            .iter()
            .any(|m| text[i..].starts_with(m.as_bytes()))
        {
            while i < n && text[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if syntax.block && text[i..].starts_with(b"/*") {
            i += 2;
            while i < n && !text[i..].starts_with(b"*/") {
                if text[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            i = (i + 2).min(n);
            continue;
        }
        let start = i;
        let start_line = line;
        if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < n && text[i] != c {
                if text[i] == b'\\' {
                    i += 1;
                }
                if i < n && text[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            i = (i + 1).min(n);
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            while i < n && (text[i].is_ascii_alphanumeric() || text[i] == b'_' || text[i] >= 0x80) {
                i += 1;
            }
        } else {
            i += 1;
        }
        out.push(Token {
            hash: hash_bytes(&text[start..i.min(n)]),
            line: start_line,
        });
    }
    out
}

/// One file as the detector sees it.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub language: &'static str,
    pub tokens: Vec<Token>,
    /// Lines the run added (empty for a file it did not touch).
    pub added: BTreeSet<u32>,
}

/// A repeat: the added place, the place it repeats, and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    pub new_path: PathBuf,
    pub new_lines: (u32, u32),
    pub old_path: PathBuf,
    pub old_lines: (u32, u32),
    /// Whether the repeated place was also added by the run.
    pub old_added: bool,
    pub tokens: usize,
}

const BASE: u64 = 1_000_003;

/// Hashes of every window of `w` tokens.
fn windows(tokens: &[Token], w: usize) -> Vec<u64> {
    if tokens.len() < w || w == 0 {
        return Vec::new();
    }
    let pow = (1..w).fold(1u64, |p, _| p.wrapping_mul(BASE));
    let mut h = tokens[..w]
        .iter()
        .fold(0u64, |h, t| h.wrapping_mul(BASE).wrapping_add(t.hash));
    let mut out = Vec::with_capacity(tokens.len() - w + 1);
    out.push(h);
    for i in w..tokens.len() {
        h = h
            .wrapping_sub(tokens[i - w].hash.wrapping_mul(pow))
            .wrapping_mul(BASE)
            .wrapping_add(tokens[i].hash);
        out.push(h);
    }
    out
}

/// Every place an added window repeats, merged into regions.
pub fn find(sources: &[Source], min_tokens: usize, min_lines: u32) -> Vec<Repeat> {
    let w = min_tokens.max(1);
    let hashes: Vec<Vec<u64>> = sources.iter().map(|s| windows(&s.tokens, w)).collect();
    let all_added = |s: &Source, start: usize| {
        !s.added.is_empty()
            && (s.tokens[start].line..=s.tokens[start + w - 1].line).all(|l| s.added.contains(&l))
    };
    let mut index: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
    for (f, hs) in hashes.iter().enumerate() {
        for (start, h) in hs.iter().enumerate() {
            index.entry(*h).or_default().push((f, start));
        }
    }
    // (new file, other file) -> (new start, other start) of matching windows.
    let mut hits: BTreeMap<(usize, usize), Vec<(usize, usize)>> = BTreeMap::new();
    for (f, s) in sources.iter().enumerate() {
        if s.added.is_empty() {
            continue;
        }
        for (start, h) in hashes[f].iter().enumerate() {
            if !all_added(s, start) {
                continue;
            }
            let Some(places) = index.get(h) else {
                continue;
            };
            let other = places.iter().find(|(g, o)| {
                let same_place = *g == f && o.abs_diff(start) < w;
                // Two added places repeat each other: report the later one only.
                let earlier_added = all_added(&sources[*g], *o) && (*g, *o) > (f, start);
                !same_place
                    && !earlier_added
                    && sources[*g].tokens[*o..*o + w]
                        .iter()
                        .zip(&s.tokens[start..start + w])
                        .all(|(a, b)| a.hash == b.hash)
            });
            if let Some((g, o)) = other {
                hits.entry((f, *g)).or_default().push((start, *o));
            }
        }
    }
    let mut out = Vec::new();
    for ((f, g), mut list) in hits {
        list.sort_unstable();
        let (s, o) = (&sources[f], &sources[g]);
        let mut i = 0;
        while i < list.len() {
            let (ns, os) = list[i];
            let mut j = i;
            while j + 1 < list.len() && list[j + 1].0 <= list[j].0 + w && list[j + 1].1 > list[j].1
            {
                j += 1;
            }
            let (ne, oe) = (list[j].0 + w - 1, list[j].1 + w - 1);
            let new_lines = (s.tokens[ns].line, s.tokens[ne].line);
            let old_lines = (o.tokens[os].line, o.tokens[oe].line);
            if new_lines.1 - new_lines.0 + 1 >= min_lines {
                out.push(Repeat {
                    new_path: s.path.clone(),
                    new_lines,
                    old_path: o.path.clone(),
                    old_lines,
                    old_added: all_added(o, os),
                    tokens: ne - ns + 1,
                });
            }
            i = j + 1;
        }
    }
    out
}

/// What the gate prints: the builder's feedback.
pub fn report(repeats: &[Repeat], changed: usize, corpus: Option<usize>) -> String {
    if repeats.is_empty() {
        let within = corpus.map_or(String::new(), |n| format!(" in the {n} file(s) looked at"));
        return format!(
            "no duplicated code: the {changed} changed file(s) repeat nothing{within}\n"
        );
    }
    let mut t = format!(
        "duplicated code: {} place(s) the run added repeat code that exists already\n",
        repeats.len()
    );
    for r in repeats.iter().take(20) {
        t.push_str(&format!(
            "  {}:{}-{} repeats {}:{}-{}{} ({} tokens)\n",
            r.new_path.display(),
            r.new_lines.0,
            r.new_lines.1,
            r.old_path.display(),
            r.old_lines.0,
            r.old_lines.1,
            if r.old_added {
                " (also added by this run)"
            } else {
                ""
            },
            r.tokens
        ));
    }
    if repeats.len() > 20 {
        t.push_str(&format!("  ... and {} more\n", repeats.len() - 20));
    }
    t.push_str(
        "Reuse the existing code instead of repeating it: call it, or move it where both places can use it.\n",
    );
    t
}

/// Run the gate on a run's change: the files of `tree` that differ from `base`, against every
/// file of the same languages in `tree`. `(passed, output)`.
pub fn check(
    git: &crate::git::Git,
    base: &crate::git::Oid,
    tree: &crate::git::TreeId,
    opts: &Options,
) -> crate::error::Result<(bool, String)> {
    let added = crate::git::diff::added_lines(git, base, tree)?;
    let wanted = |p: &Path| -> Option<&'static str> {
        let lang = language_of(p)?;
        let chosen = opts.languages.is_empty() || opts.languages.iter().any(|l| l == lang);
        (chosen && !opts.ignore.is_match(p) && !p.to_string_lossy().contains('\n')).then_some(lang)
    };
    let changed_langs: BTreeSet<&str> = added.keys().filter_map(|p| wanted(p)).collect();
    if changed_langs.is_empty() {
        return Ok((
            true,
            "no duplicated code: the run changed no file of a language looked at\n".to_owned(),
        ));
    }
    let mut paths: Vec<(PathBuf, &'static str)> = Vec::new();
    crate::git::objects::for_each_file(git, tree, |p| {
        if let Some(lang) = wanted(p)
            && changed_langs.contains(lang)
        {
            paths.push((p.to_owned(), lang));
        }
    })?;
    let names: Vec<String> = paths
        .iter()
        .map(|(p, _)| format!("{tree}:{}", p.display()))
        .collect();
    let blobs = crate::git::objects::cat_blobs(git, &names)?;
    let mut sources = Vec::with_capacity(paths.len());
    for ((path, language), blob) in paths.into_iter().zip(blobs) {
        let Some(bytes) = blob else { continue };
        let added = added
            .get(&path)
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default();
        sources.push(Source {
            tokens: tokenize(&bytes, language),
            path,
            language,
            added,
        });
    }
    let changed = sources.iter().filter(|s| !s.added.is_empty()).count();
    let repeats = find(&sources, opts.min_tokens, opts.min_lines);
    Ok((
        repeats.is_empty(),
        report(&repeats, changed, Some(sources.len())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, text: &str, added: impl IntoIterator<Item = u32>) -> Source {
        Source {
            path: PathBuf::from(path),
            language: "rust",
            tokens: tokenize(text.as_bytes(), "rust"),
            added: added.into_iter().collect(),
        }
    }

    const ORIGINAL: &str = "fn parse(input: &str) -> Vec<u32> {\n    let mut out = Vec::new();\n    for part in input.split(',') {\n        if let Ok(n) = part.trim().parse() {\n            out.push(n);\n        }\n    }\n    out\n}\n";

    #[test]
    fn comments_and_whitespace_do_not_count() {
        let a = tokenize(
            b"let x = 1; // one\n/* two\nlines */ let y = \"a // b\";",
            "rust",
        );
        let b = tokenize(b"let   x=1;\nlet y = \"a // b\" ;", "rust");
        let h = |v: &[Token]| v.iter().map(|t| t.hash).collect::<Vec<_>>();
        assert_eq!(h(&a), h(&b));
        assert_eq!(a.last().map(|t| t.line), Some(3), "lines are kept");
        let py = tokenize(b"x = 1  # note\n", "python");
        assert_eq!(py.len(), 3);
    }

    #[test]
    fn a_copied_function_is_named_with_its_original() {
        let copy = ORIGINAL.replace("fn parse", "fn parse_again");
        let new_file = format!("use x;\n{copy}");
        let sources = vec![
            source("src/old.rs", ORIGINAL, []),
            source("src/new.rs", &new_file, 1..=10),
        ];
        let found = find(&sources, 20, 3);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].new_path, PathBuf::from("src/new.rs"));
        assert_eq!(found[0].old_path, PathBuf::from("src/old.rs"));
        assert!(!found[0].old_added);
        assert!(
            found[0].new_lines.1 - found[0].new_lines.0 >= 6,
            "{found:?}"
        );
        let text = report(&found, 1, Some(2));
        assert!(text.contains("src/new.rs:"), "{text}");
        assert!(text.contains("repeats src/old.rs:1-"), "{text}");
    }

    #[test]
    fn new_code_and_old_duplication_pass() {
        let fresh = "fn total(xs: &[u64]) -> u64 {\n    xs.iter().copied().sum::<u64>()\n}\n";
        let sources = vec![
            // Duplicated before the run: neither copy was added.
            source("src/a.rs", ORIGINAL, []),
            source("src/b.rs", ORIGINAL, []),
            source("src/c.rs", fresh, 1..=3),
        ];
        assert_eq!(find(&sources, 20, 3), Vec::new());
        // An edit inside the old duplicate is not a new repeat either.
        let edited = ORIGINAL.replace("out.push(n)", "out.push(n + 1)");
        let sources = vec![
            source("src/a.rs", ORIGINAL, []),
            source("src/b.rs", &edited, [5]),
        ];
        assert_eq!(find(&sources, 20, 3), Vec::new());
    }

    #[test]
    fn an_addition_that_repeats_itself_is_reported_once() {
        let twice = format!("{ORIGINAL}\n{}", ORIGINAL.replace("parse", "parse2"));
        let sources = vec![source("src/new.rs", &twice, 1..=40)];
        let found = find(&sources, 20, 3);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].old_added);
        assert!(found[0].new_lines.0 > found[0].old_lines.1, "{found:?}");
    }

    proptest::proptest! {
        /// Whatever the files hold, code the run did not add never fails the gate.
        #[test]
        fn nothing_is_reported_without_added_lines(
            a in "[a-z(){};=, \n]{0,400}",
            b in "[a-z(){};=, \n]{0,400}",
        ) {
            let sources = vec![source("a.rs", &a, []), source("b.rs", &b, [])];
            proptest::prop_assert!(find(&sources, 5, 1).is_empty());
        }

        /// A file added whole as a copy of another is always reported.
        #[test]
        fn a_whole_copy_is_always_reported(body in "[a-z]{1,6}( [a-z]{1,6}){30,60}") {
            let lines: Vec<String> = body.split(' ').map(|w| format!("let {w} = {w};")).collect();
            let text = lines.join("\n");
            let n = lines.len() as u32;
            let sources = vec![source("old.rs", &text, []), source("new.rs", &text, 1..=n)];
            let found = find(&sources, 20, 3);
            proptest::prop_assert!(!found.is_empty());
            proptest::prop_assert!(found.iter().all(|r| r.new_path == Path::new("new.rs")));
        }
    }
}
