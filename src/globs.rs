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

/// A compiled list of scope globs that remembers which glob matched.
#[derive(Debug, Clone)]
pub struct Globs {
    pub(crate) patterns: Vec<String>,
    set: GlobSet,
}

impl Globs {
    pub fn new(patterns: &[String]) -> Result<Globs, GlobError> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(compile_glob(p)?);
        }
        let set = b.build().map_err(|e| GlobError {
            pattern: patterns.join(", "),
            why: e.kind().to_string(),
        })?;
        Ok(Globs {
            patterns: patterns.to_vec(),
            set,
        })
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_match(&self, path: &Path) -> bool {
        self.set.is_match(path)
    }

    /// Which patterns match `path` (their indexes in [`Globs::patterns`]).
    pub fn matching(&self, path: &Path) -> Vec<usize> {
        self.set.matches(path)
    }

    pub(crate) fn first_match(&self, c: &Candidate<'_>) -> Option<&str> {
        self.set
            .matches_candidate(c)
            .first()
            .map(|&i| self.patterns[i].as_str())
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
