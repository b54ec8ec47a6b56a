//! The run's file scope: which existing paths may be modified or deleted (`allow`), where new files
//! may appear (`create`), and what is never touched (`deny`, plus `.pipeline.toml` and `.git`).
//!
//! Globs are anchored at the repository root and a `*` never crosses a `/` (`src/*.rs` does not
//! match `src/a/b.rs`; write `src/**/*.rs`). A glob ending in `/` means everything below it.

use std::path::{Component, Path, PathBuf};

use globset::Candidate;

use crate::globs::{GlobError, Globs};
use serde::Serialize;

use crate::git::snapshot::Change;

use crate::git::snapshot::ChangeKind;

/// The project's pipeline policy: the config file and the prompt overrides. No run may change
/// them, whatever the scope says (nor anything under `.git`).
pub const ALWAYS_DENIED: &str = ".pipeline.toml";
pub const POLICY_DIR: &str = ".pipeline";

#[derive(Debug, Clone)]
pub struct Scope {
    allow: Option<Globs>,
    create: Option<Globs>,
    deny: Globs,
    /// When set (a plan's manifest), deletions must match it rather than `allow`.
    delete: Option<Globs>,
    /// Where the scope came from, for messages: "scope", "the plan's manifest", "docs.paths".
    origin: &'static str,
}

/// What a run was allowed to touch, as stored in its record and shown to agents.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ScopeRecord {
    pub allow: Option<Vec<String>>,
    pub create: Option<Vec<String>>,
    pub deny: Vec<String>,
    pub unrestricted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<Vec<String>>,
    #[serde(default = "default_origin")]
    pub origin: String,
}

fn default_origin() -> String {
    "scope".to_owned()
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
    ) -> Result<Scope, GlobError> {
        let (allow, create) = match (allow, create) {
            (None, None) => (None, None),
            (Some(a), None) => (Some(a.clone()), Some(a)),
            (None, Some(c)) => (Some(Vec::new()), Some(c)),
            (Some(a), Some(c)) => (Some(a), Some(c)),
        };
        Ok(Scope {
            allow: allow.as_deref().map(Globs::new).transpose()?,
            create: create.as_deref().map(Globs::new).transpose()?,
            deny: Globs::new(&deny)?,
            delete: None,
            origin: "scope",
        })
    }

    /// The scope an approved plan promises: modify, create and delete exactly what it lists,
    /// never what it says not to touch (on top of the configured `deny`). See
    /// [`crate::policy::manifest::Manifest::scope`].
    pub fn planned(
        [modify, create, delete, do_not_touch]: [&[String]; 4],
        deny: &[String],
    ) -> Result<Scope, GlobError> {
        let mut all_deny = deny.to_vec();
        all_deny.extend(do_not_touch.iter().cloned());
        Ok(Scope {
            allow: Some(Globs::new(modify)?),
            create: Some(Globs::new(create)?),
            deny: Globs::new(&all_deny)?,
            delete: Some(Globs::new(delete)?),
            origin: "the plan's manifest",
        })
    }

    /// A scope of its own for a helper stage (the docs agent).
    pub fn only(
        paths: &[String],
        deny: &[String],
        origin: &'static str,
    ) -> Result<Scope, GlobError> {
        let mut s = Scope::new(Some(paths.to_vec()), Some(paths.to_vec()), deny.to_vec())?;
        s.origin = origin;
        Ok(s)
    }

    /// Add globs that must not be touched (a plan's do-not-touch list).
    pub fn with_deny(mut self, more: &[String]) -> Result<Scope, GlobError> {
        if more.is_empty() {
            return Ok(self);
        }
        let mut deny = self.deny.patterns.clone();
        deny.extend(more.iter().cloned());
        self.deny = Globs::new(&deny)?;
        Ok(self)
    }

    /// The globs of existing paths the run may change, when it is restricted.
    pub fn allow_globs(&self) -> Option<&Globs> {
        self.allow.as_ref()
    }

    pub fn deny_patterns(&self) -> &[String] {
        &self.deny.patterns
    }

    /// Whether the scope lets a run modify this existing path.
    pub fn may_modify(&self, path: &Path) -> bool {
        self.check_path(path, ChangeKind::Modified).is_none()
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
            delete: self.delete.as_ref().map(|r| r.patterns.clone()),
            origin: self.origin.to_owned(),
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
        let manifest = self.delete.is_some();
        let (rules, key) = match kind {
            ChangeKind::Deleted if manifest => (&self.delete, "the plan's delete list"),
            ChangeKind::Added if manifest => (&self.create, "the plan's create list"),
            _ if manifest => (&self.allow, "the plan's modify list"),
            ChangeKind::Added => (&self.create, "scope.create"),
            _ => (&self.allow, "scope.allow"),
        };
        let key = if self.origin == "scope" || manifest {
            key.to_owned()
        } else {
            self.origin.to_owned()
        };
        match rules {
            None => None,
            Some(r) if r.first_match(&c).is_some() => None,
            Some(r) if r.patterns.is_empty() => Some(format!("{key} is empty")),
            Some(_) => Some(format!("not in {key}")),
        }
    }

    /// Added or changed symlinks whose target leaves the worktree (absolute, or climbing out
    /// with `..`): a later build or test would read or write outside the run through them.
    pub fn escaping_symlinks(worktree: &Path, changes: &[Change]) -> Vec<Violation> {
        changes
            .iter()
            .filter(|c| c.is_symlink())
            .filter_map(|c| {
                let target = std::fs::read_link(worktree.join(&c.path)).ok()?;
                symlink_escapes(&c.path, &target).then(|| Violation {
                    path: c.path.clone(),
                    kind: c.kind,
                    why: format!("symlink to {} leaves the worktree", target.display()),
                })
            })
            .collect()
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
        match (&self.allow, &self.delete) {
            (Some(a), None) => lines.push(format!("may modify or delete: {}", list(&a.patterns))),
            (Some(a), Some(d)) => {
                lines.push(format!("may modify: {}", list(&a.patterns)));
                lines.push(format!("may delete: {}", list(&d.patterns)));
            }
            _ => {}
        }
        if let Some(c) = &self.create {
            lines.push(format!("may create: {}", list(&c.patterns)));
        }
        let mut deny = self.deny.patterns.clone();
        deny.push(ALWAYS_DENIED.to_owned());
        deny.push(format!("{POLICY_DIR}/"));
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

/// Whether a symlink at `link` (relative to the worktree) pointing at `target` resolves outside
/// the worktree, judged on the names alone.
pub fn symlink_escapes(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    // Depth of the folder holding the link, then walk the target.
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

pub fn always_denied(path: &Path) -> Option<String> {
    if path == Path::new(ALWAYS_DENIED) || path.starts_with(POLICY_DIR) {
        return Some(format!(
            "{} is the project's pipeline policy",
            path.display()
        ));
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
    #[test]
    fn paths_out_of_the_worktree_are_denied_and_keys_name_the_users_scope()
    -> Result<(), Box<dyn std::error::Error>> {
        let open = Scope::new(None, None, vec!["secret/**".to_owned()])?;
        assert!(
            open.check_path(Path::new("../etc/passwd"), ChangeKind::Added)
                .is_some()
        );
        assert_eq!(open.deny_patterns(), ["secret/**"]);
        assert!(open.allow_globs().is_none());
        let user = Scope::new(
            Some(vec!["src/**".to_owned()]),
            Some(vec!["src/new/**".to_owned()]),
            vec![],
        )?;
        assert_eq!(
            user.check_path(Path::new("docs/a.md"), ChangeKind::Added)
                .as_deref(),
            Some("not in scope.create")
        );
        assert_eq!(
            user.allow_globs().map(|g| g.patterns().to_vec()),
            Some(vec!["src/**".to_owned()])
        );
        Ok(())
    }

    #[test]
    fn a_symlink_leaving_the_worktree_is_a_violation() -> Result<(), Box<dyn std::error::Error>> {
        let wt = tempfile::tempdir()?;
        std::os::unix::fs::symlink("/etc/passwd", wt.path().join("out"))?;
        std::os::unix::fs::symlink("inside.txt", wt.path().join("in"))?;
        let change = |p: &str| Change {
            path: p.into(),
            kind: ChangeKind::Added,
            mode: 0o120000,
        };
        let v = Scope::escaping_symlinks(wt.path(), &[change("out"), change("in")]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path, Path::new("out"));
        assert_eq!(v[0].why, "symlink to /etc/passwd leaves the worktree");
        Ok(())
    }

    #[test]
    fn a_record_without_an_origin_is_the_users_scope() -> Result<(), Box<dyn std::error::Error>> {
        let r: ScopeRecord = serde_json::from_str(
            r#"{"allow": null, "create": null, "deny": [], "unrestricted": true}"#,
        )?;
        assert_eq!(r.origin, "scope");
        Ok(())
    }

    #[test]
    fn the_scope_reads_as_sentences() -> Result<(), Box<dyn std::error::Error>> {
        let user = Scope::new(
            Some(vec!["src/**".to_owned()]),
            Some(vec![]),
            vec!["src/secret/**".to_owned()],
        )?;
        assert_eq!(
            user.describe(),
            [
                "may modify or delete: src/**",
                "may create: (nothing)",
                "never touch: src/secret/**, .pipeline.toml, .pipeline/, .git",
            ]
        );
        let m = crate::policy::manifest::Manifest {
            modify: vec!["src/a.rs".to_owned()],
            create: vec![],
            delete: vec!["src/old.rs".to_owned()],
            do_not_touch: vec![],
        };
        let planned = m.scope(&[])?;
        assert_eq!(
            planned.describe(),
            [
                "may modify: src/a.rs",
                "may delete: src/old.rs",
                "may create: (nothing)",
                "never touch: .pipeline.toml, .pipeline/, .git",
            ]
        );
        Ok(())
    }

    #[test]
    fn a_user_scope_lets_allowed_files_be_deleted_and_says_why_not_otherwise()
    -> Result<(), Box<dyn std::error::Error>> {
        let user = Scope::new(Some(vec!["src/**".to_owned()]), None, vec![])?;
        assert_eq!(
            user.check_path(Path::new("src/a.rs"), ChangeKind::Deleted),
            None
        );
        assert_eq!(
            user.check_path(Path::new("README.md"), ChangeKind::Deleted)
                .as_deref(),
            Some("not in scope.allow")
        );
        let v = user.check(&[Change {
            path: "README.md".into(),
            kind: ChangeKind::Modified,
            mode: 0o100644,
        }]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].to_string(), "M README.md: not in scope.allow");
        Ok(())
    }

    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

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
        assert!(!ok(
            &scope,
            ".pipeline/prompts/builder.md",
            ChangeKind::Added
        ));
        assert!(ok(&scope, ".pipelines/x", ChangeKind::Added));
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
    fn a_manifest_holds_each_kind_of_change_to_its_own_list() -> R {
        let m = crate::policy::manifest::Manifest {
            modify: vec!["src/a.rs".to_owned()],
            create: vec!["tests/**".to_owned()],
            delete: vec!["src/old.rs".to_owned()],
            do_not_touch: vec!["src/keep.rs".to_owned()],
        };
        let scope = m.scope(&[])?;
        assert!(ok(&scope, "src/a.rs", ChangeKind::Modified));
        assert!(ok(&scope, "tests/t.rs", ChangeKind::Added));
        assert!(ok(&scope, "src/old.rs", ChangeKind::Deleted));
        assert_eq!(
            scope.check_path(Path::new("src/a.rs"), ChangeKind::Deleted),
            Some("not in the plan's delete list".to_owned())
        );
        assert_eq!(
            scope.check_path(Path::new("src/b.rs"), ChangeKind::Modified),
            Some("not in the plan's modify list".to_owned())
        );
        assert!(!ok(&scope, "src/keep.rs", ChangeKind::Modified));
        Ok(())
    }

    #[test]
    fn symlinks_that_leave_the_worktree() {
        let p = Path::new;
        assert!(symlink_escapes(p("a/link"), p("/etc/passwd")));
        assert!(symlink_escapes(p("a/link"), p("../../x")));
        assert!(symlink_escapes(p("link"), p("../x")));
        assert!(!symlink_escapes(p("a/link"), p("../b/x")));
        assert!(!symlink_escapes(p("a/b/link"), p("../../c")));
        assert!(!symlink_escapes(p("link"), p("./a/../b")));
        assert!(symlink_escapes(p("link"), p("a/../../b")));
    }

    #[test]
    fn invalid_glob_is_named() {
        match Scope::new(s(&["src/[a"]), None, vec![]) {
            Err(e) => assert_eq!(e.pattern, "src/[a", "{e}"),
            Ok(_) => panic!("an unclosed class must be rejected"),
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn segment() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9_][a-zA-Z0-9_. -]{0,8}".prop_filter("not a dot name", |s| {
                s != "." && s != ".." && !s.eq_ignore_ascii_case(".git")
            })
        }

        fn path() -> impl Strategy<Value = Vec<String>> {
            proptest::collection::vec(segment(), 1..5)
        }

        proptest! {
            /// `dir/**` allows exactly the paths under `dir/`.
            #[test]
            fn a_dir_glob_allows_exactly_what_is_below_it(dir in segment(), p in path()) {
                let scope = Scope::new(Some(vec![format!("{}/**", globset_escape(&dir))]), None, vec![])
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let path = PathBuf::from(p.join("/"));
                let below = p.len() > 1 && p[0] == dir;
                prop_assert_eq!(scope.may_modify(&path), below);
            }

            /// `*` never crosses `/`.
            #[test]
            fn a_star_stays_in_its_folder(dir in segment(), p in path()) {
                let scope = Scope::new(Some(vec![format!("{}/*", globset_escape(&dir))]), None, vec![])
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let path = PathBuf::from(format!("{}/{}", dir, p.join("/")));
                prop_assert_eq!(scope.may_modify(&path), p.len() == 1);
            }

            /// Whatever allow and create say, a denied path is a violation, for every kind of change.
            #[test]
            fn deny_always_wins(p in path(), kind in 0..4u8) {
                let path = p.join("/");
                let scope = Scope::new(Some(vec!["**".to_owned()]), Some(vec!["**".to_owned()]), vec![globset_escape(&path)])
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let kind = [ChangeKind::Added, ChangeKind::Modified, ChangeKind::Deleted, ChangeKind::TypeChanged][kind as usize];
                prop_assert!(scope.check_path(Path::new(&path), kind).is_some());
            }

            /// An unrestricted scope lets every ordinary path change, and never the policy files.
            #[test]
            fn unrestricted_allows_all_but_policy(p in path()) {
                let scope = Scope::new(None, None, vec![]).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(scope.check_path(Path::new(&p.join("/")), ChangeKind::Added).is_none() || p[0] == ".pipeline.toml" || p[0] == ".pipeline");
                let mut inside_git = vec![".git".to_owned()];
                inside_git.extend(p);
                prop_assert!(scope.check_path(Path::new(&inside_git.join("/")), ChangeKind::Added).is_some());
            }
        }

        /// Escape glob metacharacters so a generated name matches only itself.
        fn globset_escape(s: &str) -> String {
            let mut out = String::new();
            for c in s.chars() {
                if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!') {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        }
    }
}
