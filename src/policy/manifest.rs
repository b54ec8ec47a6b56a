//! The plan's file-impact manifest: the paths (or globs) the plan will modify, create and delete,
//! and those it promises not to touch. It is the last JSON object in the planner's output with a
//! `file_impact` object:
//!
//! ```json
//! {"file_impact": {"modify": ["src/pager.rs"], "create": ["tests/pager.rs"],
//!                  "delete": [], "do_not_touch": ["Cargo.lock"]}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::agent::json_scan;
use crate::globs::GlobError;
use crate::policy::scope::{ALWAYS_DENIED, POLICY_DIR, Scope};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub modify: Vec<String>,
    pub create: Vec<String>,
    pub delete: Vec<String>,
    pub do_not_touch: Vec<String>,
}

impl Manifest {
    /// As plain lines for prompts.
    pub fn describe(&self) -> Vec<String> {
        let list = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(", ")
            }
        };
        vec![
            format!("modify: {}", list(&self.modify)),
            format!("create: {}", list(&self.create)),
            format!("delete: {}", list(&self.delete)),
            format!("do not touch: {}", list(&self.do_not_touch)),
        ]
    }
}

/// Why a plan's output holds no usable manifest, in words the planner's next round is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

impl From<String> for ManifestError {
    fn from(why: String) -> Self {
        ManifestError(why)
    }
}

/// Find and check the manifest; the error says what is wrong, for the planner's next round.
pub fn parse(output: &str) -> Result<Manifest, ManifestError> {
    let mut found: Option<Result<Manifest, ManifestError>> = None;
    json_scan::visit_nested(output, &mut |obj| {
        if let Some(v) = obj.get("file_impact") {
            found = Some(from_value(v));
        }
    });
    let manifest = found.unwrap_or_else(|| {
        Err(ManifestError("the plan has no file-impact manifest (a JSON object with \"file_impact\": {\"modify\": [...], \"create\": [...], \"delete\": [...], \"do_not_touch\": [...]})".to_owned()))
    })?;
    for glob in manifest
        .modify
        .iter()
        .chain(&manifest.create)
        .chain(&manifest.delete)
        .chain(&manifest.do_not_touch)
    {
        crate::globs::compile_glob(glob).map_err(|e| format!("file_impact: {e}"))?;
    }
    for (key, list) in [
        ("modify", &manifest.modify),
        ("create", &manifest.create),
        ("delete", &manifest.delete),
    ] {
        for glob in list {
            if let Some(why) = outside_any_scope(glob) {
                return Err(ManifestError(format!("file_impact.{key}: {glob:?} {why}")));
            }
        }
    }
    if manifest.modify.is_empty() && manifest.create.is_empty() && manifest.delete.is_empty() {
        return Err(ManifestError(
            "the file-impact manifest lists nothing to modify, create or delete".to_owned(),
        ));
    }
    Ok(manifest)
}

impl Manifest {
    /// The scope this manifest promises, with the configured `deny` on top.
    pub fn scope(&self, deny: &[String]) -> Result<Scope, GlobError> {
        Scope::planned(
            [&self.modify, &self.create, &self.delete, &self.do_not_touch],
            deny,
        )
    }
}

/// Why a path a plan wants to change can be in no run's scope, in words for the planner.
fn outside_any_scope(glob: &str) -> Option<&'static str> {
    let p = std::path::Path::new(glob);
    if p.is_absolute() {
        return Some("is an absolute path: list paths relative to the repository root");
    }
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Some("climbs out with `..`: list paths inside the repository");
    }
    let clean = glob.trim_start_matches("./");
    let first = clean.split('/').next().unwrap_or("");
    if first == ".git" || clean == ALWAYS_DENIED || first == POLICY_DIR {
        return Some(
            "is git's or the pipeline's own (.git, .pipeline.toml, .pipeline/): no run may change it",
        );
    }
    if matches!(clean, "**" | "*" | "**/*" | "**/**") {
        return Some("is every path: name the files and folders the change needs");
    }
    None
}

fn from_value(v: &Value) -> Result<Manifest, ManifestError> {
    let Value::Object(obj) = v else {
        return Err(ManifestError(
            "\"file_impact\" must be an object".to_owned(),
        ));
    };
    Ok(Manifest {
        modify: list(obj, "modify")?,
        create: list(obj, "create")?,
        delete: list(obj, "delete")?,
        do_not_touch: list(obj, "do_not_touch")?,
    })
}

fn list(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>, ManifestError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_owned).ok_or_else(|| {
                    ManifestError(format!("file_impact.{key} must hold strings, found {i}"))
                })
            })
            .collect(),
        Some(other) => Err(ManifestError(format!(
            "file_impact.{key} must be a list of paths, found {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_manifest_reads_as_lines_and_may_only_create() {
        let m = parse(r#"{"file_impact": {"create": ["src/new.rs"]}}"#);
        let m = m.map_err(|e| e.0);
        assert_eq!(
            m.as_ref().map(Manifest::describe),
            Ok(vec![
                "modify: (none)".to_owned(),
                "create: src/new.rs".to_owned(),
                "delete: (none)".to_owned(),
                "do not touch: (none)".to_owned(),
            ])
        );
    }

    #[test]
    fn a_plan_cannot_promise_what_no_run_may_change() {
        for (glob, why) in [
            (".pipeline.toml", "pipeline's own"),
            (".pipeline/prompts/builder.md", "pipeline's own"),
            (".git/hooks/pre-push", "pipeline's own"),
            ("./.git/config", "pipeline's own"),
            ("../other/x.rs", "`..`"),
            ("src/../../x", "`..`"),
            ("/etc/passwd", "absolute"),
            ("**", "every path"),
            ("*", "every path"),
        ] {
            let out = format!(r#"{{"file_impact": {{"modify": [{glob:?}]}}}}"#);
            let err = parse(&out).err().map(|e| e.0).unwrap_or_default();
            assert!(err.contains(why), "{glob}: {err}");
            assert!(err.starts_with("file_impact.modify: "), "{err}");
        }
        // What not to touch may name anything.
        let out = r#"{"file_impact": {"modify": ["src/a.rs"], "do_not_touch": [".git/**", "**/*.lock"]}}"#;
        assert!(parse(out).is_ok());
    }

    use super::*;

    #[test]
    fn parses_the_last_manifest_in_prose() -> Result<(), Box<dyn std::error::Error>> {
        let out = "Plan:\n1. change the pager\n```json\n{\"file_impact\": {\"modify\": [\"src/a.rs\"], \"create\": [\"tests/**\"], \"do_not_touch\": [\"Cargo.lock\"]}}\n```\n";
        let m = parse(out)?;
        assert_eq!(m.modify, vec!["src/a.rs"]);
        assert_eq!(m.create, vec!["tests/**"]);
        assert!(m.delete.is_empty());
        Ok(())
    }

    #[test]
    fn missing_empty_or_bad_manifests_are_errors() {
        assert!(parse("just prose").is_err_and(|e| e.0.contains("no file-impact manifest")));
        assert!(parse(r#"{"file_impact": {}}"#).is_err_and(|e| e.0.contains("nothing")));
        assert!(
            parse(r#"{"file_impact": {"modify": "src"}}"#).is_err_and(|e| e.0.contains("list"))
        );
        assert!(
            parse(r#"{"file_impact": {"modify": ["src/[x"]}}"#)
                .is_err_and(|e| e.0.contains("src/[x"))
        );
    }
}
