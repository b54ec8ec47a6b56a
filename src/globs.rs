//! Scope globs: anchored at the repository root, `*` never crosses a `/`, a trailing `/` means
//! everything below. Scope, plan manifests, bundle specs and gates all compile globs here.

use std::path::Path;

use globset::{Candidate, Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A glob that cannot be compiled, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid glob {pattern:?}: {why}")]
pub struct GlobError {
    pub pattern: String,
    pub why: String,
}

/// A list of scope globs that remembers which glob matched. Each glob is checked when the list
/// is made; the matcher of them all (a regular expression set, the costly part) is built on the
/// first match, so a list a run never matches against costs nothing.
#[derive(Debug, Clone)]
pub struct Globs {
    pub(crate) patterns: Vec<String>,
    globs: Vec<Glob>,
    matcher: std::sync::OnceLock<Matcher>,
}

/// The globs compiled together, or (when the set is too large for the regex engine) one by one.
#[derive(Debug, Clone)]
enum Matcher {
    Set(GlobSet),
    Each(Vec<globset::GlobMatcher>),
}

impl Globs {
    pub fn new(patterns: &[String]) -> Result<Globs, GlobError> {
        let globs = patterns
            .iter()
            .map(|p| compile_glob(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Globs {
            patterns: patterns.to_vec(),
            globs,
            matcher: std::sync::OnceLock::new(),
        })
    }

    fn matcher(&self) -> &Matcher {
        self.matcher.get_or_init(|| {
            let mut b = GlobSetBuilder::new();
            for g in &self.globs {
                b.add(g.clone());
            }
            match b.build() {
                Ok(set) => Matcher::Set(set),
                Err(_) => Matcher::Each(self.globs.iter().map(Glob::compile_matcher).collect()),
            }
        })
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_match(&self, path: &Path) -> bool {
        match self.matcher() {
            Matcher::Set(set) => set.is_match(path),
            Matcher::Each(each) => each.iter().any(|m| m.is_match(path)),
        }
    }

    /// Which patterns match `path` (their indexes in [`Globs::patterns`]).
    pub fn matching(&self, path: &Path) -> Vec<usize> {
        match self.matcher() {
            Matcher::Set(set) => set.matches(path),
            Matcher::Each(each) => (0..each.len())
                .filter(|&i| each[i].is_match(path))
                .collect(),
        }
    }

    pub(crate) fn first_match(&self, c: &Candidate<'_>) -> Option<&str> {
        let first = match self.matcher() {
            Matcher::Set(set) => set.matches_candidate(c).first().copied(),
            Matcher::Each(each) => each.iter().position(|m| m.is_match_candidate(c)),
        };
        first.map(|i| self.patterns[i].as_str())
    }
}

/// Compile one scope glob, or say which glob is wrong and why.
pub fn compile_glob(pattern: &str) -> Result<Glob, GlobError> {
    let error = |why: String| GlobError {
        pattern: pattern.to_owned(),
        why,
    };
    let normalized = normalize(pattern);
    if normalized.is_empty() {
        return Err(error("it is empty".to_owned()));
    }
    GlobBuilder::new(&normalized)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| error(e.kind().to_string()))
}

fn normalize(pattern: &str) -> String {
    // Not trimmed: a file name may start or end with a space.
    let mut p = pattern;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    let p = p.trim_start_matches('/');
    let mut p = p.to_owned();
    while p.contains("//") {
        p = p.replace("//", "/");
    }
    match p.strip_suffix('/') {
        Some(dir) => format!("{dir}/**"),
        None => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubled_slashes_and_a_leading_dot_slash_are_the_same_path() -> Result<(), GlobError> {
        let g = Globs::new(&["./src//lib.rs".to_owned(), "docs/".to_owned()])?;
        assert!(g.is_match(Path::new("src/lib.rs")));
        assert!(g.is_match(Path::new("docs/a/b.md")));
        assert_eq!(g.matching(Path::new("docs/x.md")), [1]);
        Ok(())
    }
}
