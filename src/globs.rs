//! Scope globs: anchored at the repository root, `*` never crosses a `/`, a trailing `/` means
//! everything below. Scope, plan manifests, bundle specs and gates all compile globs here.

use std::path::Path;

use globset::{Candidate, Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A compiled list of scope globs that remembers which glob matched.
#[derive(Debug, Clone)]
pub struct Globs {
    pub(crate) patterns: Vec<String>,
    set: GlobSet,
}

impl Globs {
    pub fn new(patterns: &[String]) -> Result<Globs, String> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(compile_glob(p)?);
        }
        let set = b.build().map_err(|e| e.to_string())?;
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

    pub(crate) fn first_match(&self, c: &Candidate<'_>) -> Option<&str> {
        self.set
            .matches_candidate(c)
            .first()
            .map(|&i| self.patterns[i].as_str())
    }
}

/// Compile one scope glob, or say which glob is wrong and why.
pub fn compile_glob(pattern: &str) -> Result<Glob, String> {
    let normalized = normalize(pattern);
    if normalized.is_empty() {
        return Err(format!("invalid glob {pattern:?}: it is empty"));
    }
    GlobBuilder::new(&normalized)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid glob {pattern:?}: {}", e.kind()))
}

fn normalize(pattern: &str) -> String {
    // Not trimmed: a file name may start or end with a space.
    let mut p = pattern;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    let p = p.trim_start_matches('/');
    if let Some(dir) = p.strip_suffix('/') {
        format!("{dir}/**")
    } else {
        p.to_owned()
    }
}
