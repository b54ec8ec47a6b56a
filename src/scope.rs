//! The run's file scope: which existing paths may be modified or deleted (`allow`), where new files
//! may appear (`create`), and what is never touched (`deny`, plus `.pipeline.toml` and `.git`).
//!
//! Globs are anchored at the repository root and a `*` never crosses a `/` (`src/*.rs` does not
//! match `src/a/b.rs`; write `src/**/*.rs`). A glob ending in `/` means everything below it.

use std::path::{Component, Path, PathBuf};

use globset::{Candidate, Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::git::snapshot::{Change, ChangeKind};

/// Paths no run may change, whatever the scope says.
pub const ALWAYS_DENIED: &str = ".pipeline.toml";

#[derive(Debug, Clone)]
struct Rules {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Rules {
    fn new(patterns: &[String]) -> Result<Rules, String> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(compile_glob(p)?);
        }
        let set = b.build().map_err(|e| e.to_string())?;
        Ok(Rules {
            patterns: patterns.to_vec(),
            set,
        })
    }

    fn first_match(&self, c: &Candidate<'_>) -> Option<&str> {
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
    let mut p = pattern.trim();
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

#[derive(Debug, Clone)]
pub struct Scope {
    allow: Option<Rules>,
    create: Option<Rules>,
    deny: Rules,
}

/// What a run was allowed to touch, as stored in its record and shown to agents.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ScopeRecord {
    pub allow: Option<Vec<String>>,
    pub create: Option<Vec<String>>,
    pub deny: Vec<String>,
    pub unrestricted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: PathBuf,
    pub kind: ChangeKind,
    pub why: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.kind.letter(),
            self.path.display(),
            self.why
        )
    }
}

impl Scope {
    /// `allow` absent but `create` given: nothing existing may change. `create` absent but
    /// `allow` given: new files may go where existing ones may change. Neither: unrestricted
    /// (only `deny` and the always-denied paths apply).
    pub fn new(
        allow: Option<Vec<String>>,
        create: Option<Vec<String>>,
        deny: Vec<String>,
    ) -> Result<Scope, String> {
        let (allow, create) = match (allow, create) {
            (None, None) => (None, None),
            (Some(a), None) => (Some(a.clone()), Some(a)),
            (None, Some(c)) => (Some(Vec::new()), Some(c)),
            (Some(a), Some(c)) => (Some(a), Some(c)),
        };
        Ok(Scope {
            allow: allow.as_deref().map(Rules::new).transpose()?,
            create: create.as_deref().map(Rules::new).transpose()?,
            deny: Rules::new(&deny)?,
        })
    }

    pub fn unrestricted(&self) -> bool {
        self.allow.is_none() && self.create.is_none()
    }

    pub fn record(&self) -> ScopeRecord {
        ScopeRecord {
            allow: self.allow.as_ref().map(|r| r.patterns.clone()),
            create: self.create.as_ref().map(|r| r.patterns.clone()),
            deny: self.deny.patterns.clone(),
            unrestricted: self.unrestricted(),
        }
    }

    pub fn check_path(&self, path: &Path, kind: ChangeKind) -> Option<String> {
        if let Some(why) = always_denied(path) {
            return Some(why);
        }
        let c = Candidate::new(path);
        if let Some(p) = self.deny.first_match(&c) {
            return Some(format!("matches scope.deny `{p}`"));
        }
        let (rules, key) = if kind.touches_existing() {
            (&self.allow, "scope.allow")
        } else {
            (&self.create, "scope.create")
        };
        match rules {
            None => None,
            Some(r) if r.first_match(&c).is_some() => None,
            Some(r) if r.patterns.is_empty() => Some(format!("{key} is empty")),
            Some(_) => Some(format!("not in {key}")),
        }
    }

    pub fn check(&self, changes: &[Change]) -> Vec<Violation> {
        changes
            .iter()
            .filter_map(|ch| {
                self.check_path(&ch.path, ch.kind).map(|why| Violation {
                    path: ch.path.clone(),
                    kind: ch.kind,
                    why,
                })
            })
            .collect()
    }

    /// The scope as plain sentences, for prompts and dry runs.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.unrestricted() {
            lines.push("scope: unrestricted (no scope.allow or scope.create)".to_owned());
        }
        if let Some(a) = &self.allow {
            lines.push(format!("may modify or delete: {}", list(&a.patterns)));
        }
        if let Some(c) = &self.create {
            lines.push(format!("may create: {}", list(&c.patterns)));
        }
        let mut deny = self.deny.patterns.clone();
        deny.push(ALWAYS_DENIED.to_owned());
        deny.push(".git".to_owned());
        lines.push(format!("never touch: {}", list(&deny)));
        lines
    }
}

fn list(p: &[String]) -> String {
    if p.is_empty() {
        "(nothing)".to_owned()
    } else {
        p.join(", ")
    }
}

fn always_denied(path: &Path) -> Option<String> {
    if path == Path::new(ALWAYS_DENIED) {
        return Some(format!("{ALWAYS_DENIED} is the project's pipeline policy"));
    }
    for c in path.components() {
        match c {
            Component::Normal(n) if n.eq_ignore_ascii_case(".git") => {
                return Some("paths inside .git are never allowed".to_owned());
            }
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Some("path leaves the worktree".to_owned());
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(), String>;

    fn s(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|x| (*x).to_owned()).collect())
    }

    fn ok(scope: &Scope, path: &str, kind: ChangeKind) -> bool {
        scope.check_path(Path::new(path), kind).is_none()
    }

    #[test]
    fn star_does_not_cross_slash() -> R {
        let scope = Scope::new(s(&["src/*.rs"]), None, vec![])?;
        assert!(ok(&scope, "src/a.rs", ChangeKind::Modified));
        assert!(!ok(&scope, "src/x/a.rs", ChangeKind::Modified));
        Ok(())
    }

    #[test]
    fn create_defaults_to_allow_and_allow_to_nothing() -> R {
        let only_allow = Scope::new(s(&["src/**"]), None, vec![])?;
        assert!(ok(&only_allow, "src/new.rs", ChangeKind::Added));
        let only_create = Scope::new(None, s(&["new/**"]), vec![])?;
        assert_eq!(
            only_create.check_path(Path::new("src/a.rs"), ChangeKind::Modified),
            Some("scope.allow is empty".to_owned())
        );
        assert!(ok(&only_create, "new/a.rs", ChangeKind::Added));
        Ok(())
    }

    #[test]
    fn deny_and_always_denied_beat_allow() -> R {
        let scope = Scope::new(s(&["**"]), None, vec!["Cargo.lock".to_owned()])?;
        assert!(!ok(&scope, "Cargo.lock", ChangeKind::Modified));
        assert!(!ok(&scope, ".pipeline.toml", ChangeKind::Modified));
        assert!(!ok(&scope, "a/.git/config", ChangeKind::Added));
        assert!(!ok(&scope, "a/.GIT/hooks/x", ChangeKind::Added));
        assert!(ok(&scope, "a/b", ChangeKind::Added));
        Ok(())
    }

    #[test]
    fn trailing_slash_means_everything_below() -> R {
        let scope = Scope::new(s(&["./docs/"]), None, vec![])?;
        assert!(ok(&scope, "docs/a/b.md", ChangeKind::Modified));
        assert!(!ok(&scope, "docsx/a.md", ChangeKind::Modified));
        Ok(())
    }

    #[test]
    fn unrestricted_only_when_neither_allow_nor_create() -> R {
        assert!(Scope::new(None, None, vec!["x".to_owned()])?.unrestricted());
        assert!(!Scope::new(s(&[]), None, vec![])?.unrestricted());
        Ok(())
    }

    #[test]
    fn invalid_glob_is_named() {
        match Scope::new(s(&["src/[a"]), None, vec![]) {
            Err(e) => assert!(e.contains("src/[a"), "{e}"),
            Ok(_) => panic!("an unclosed class must be rejected"),
        }
    }
}
