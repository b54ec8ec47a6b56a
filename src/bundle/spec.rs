//! The bundle format (SPEC section 8): a JSON file `{"version":1,"workstreams":[...]}`, or a folder
//! of `*.json` files holding one workstream each. Reading never stops at the first problem: every
//! file is read and every problem kept, so that `git pipeline plan` can list them all at once.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Problem;
use crate::policy::risk::Risk;

pub const BUNDLE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workstream {
    /// Letters, digits, `.`, `_` and `-`: it names the workstream in messages, records and paths.
    pub id: String,
    pub task: String,
    /// Existing paths it may modify or delete (the run's `--scope`).
    #[serde(default)]
    pub scope: Vec<String>,
    /// Where it may add files (the run's `--create`).
    #[serde(default)]
    pub create: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Overrides the risk router for this workstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// The gates (by name, from `.pipeline.toml`) this workstream must pass; all of them when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<Vec<String>>,
    /// May modify the same existing files as another workstream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_overlap: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    version: Option<u32>,
    #[serde(default)]
    allow_overlap: bool,
    workstreams: Vec<Workstream>,
}

/// A bundle as read, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub version: u32,
    /// Every workstream may overlap every other.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_overlap: bool,
    pub workstreams: Vec<Workstream>,
    /// Where each workstream was read from (the file, for a folder bundle), for messages.
    #[serde(skip)]
    pub sources: Vec<String>,
}

impl Bundle {
    /// The workstream at `i` as messages name it.
    pub fn origin(&self, i: usize) -> &str {
        self.sources.get(i).map_or("", String::as_str)
    }
}

/// Read a bundle file or folder. `Err` holds every problem found; a bundle that reads is still
/// to be validated.
pub fn load(path: &Path) -> Result<Bundle, Vec<Problem>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| vec![Problem::file(path, format!("cannot read the bundle: {e}"))])?;
    if meta.is_dir() {
        load_folder(path)
    } else {
        let bytes = std::fs::read(path)
            .map_err(|e| vec![Problem::file(path, format!("cannot read the bundle: {e}"))])?;
        parse(&bytes, &path.display().to_string())
    }
}

/// Parse the bytes of a bundle file; `name` is how messages call it.
pub fn parse(bytes: &[u8], name: &str) -> Result<Bundle, Vec<Problem>> {
    let file: BundleFile = serde_json::from_slice(bytes).map_err(|e| {
        vec![Problem {
            workstream: None,
            message: format!("{name}:{}:{}: {}", e.line(), e.column(), json_error(&e)),
        }]
    })?;
    let mut problems = Vec::new();
    let version = file.version.unwrap_or(BUNDLE_VERSION);
    if version != BUNDLE_VERSION {
        problems.push(Problem {
            workstream: None,
            message: format!(
                "{name}: version {version} is not supported (this git-pipeline reads version {BUNDLE_VERSION})"
            ),
        });
    }
    if file.workstreams.is_empty() {
        problems.push(Problem {
            workstream: None,
            message: format!("{name}: the bundle has no workstreams"),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let sources = vec![name.to_owned(); file.workstreams.len()];
    Ok(Bundle {
        version,
        allow_overlap: file.allow_overlap,
        workstreams: file.workstreams,
        sources,
    })
}

fn load_folder(dir: &Path) -> Result<Bundle, Vec<Problem>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            vec![Problem::file(
                dir,
                format!("cannot read the bundle folder: {e}"),
            )]
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    // Sorted by name: the order of a folder's workstreams is stable across machines.
    files.sort();
    if files.is_empty() {
        return Err(vec![Problem::file(
            dir,
            "the folder holds no *.json workstream files".to_owned(),
        )]);
    }
    let mut problems = Vec::new();
    let mut workstreams = Vec::new();
    let mut sources = Vec::new();
    for f in &files {
        let name = f.display().to_string();
        match std::fs::read(f) {
            Err(e) => problems.push(Problem::file(f, format!("cannot read it: {e}"))),
            Ok(bytes) => match serde_json::from_slice::<Workstream>(&bytes) {
                Ok(w) => {
                    workstreams.push(w);
                    sources.push(name);
                }
                Err(e) => problems.push(Problem {
                    workstream: None,
                    message: format!("{name}:{}:{}: {}", e.line(), e.column(), json_error(&e)),
                }),
            },
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Bundle {
        version: BUNDLE_VERSION,
        allow_overlap: false,
        workstreams,
        sources,
    })
}

/// serde_json's message without its own " at line X column Y" (we put the position first).
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Find a bundle in an agent's output (a planner may split a task into workstreams): the last
/// JSON object with a `workstreams` array, as found anywhere in the text (also inside a JSON
/// envelope's strings). `None` when there is none.
pub fn find_in_text(text: &str) -> Option<serde_json::Value> {
    let mut last = None;
    crate::agent::json_scan::visit_nested(text, &mut |obj| {
        if obj
            .get("workstreams")
            .is_some_and(serde_json::Value::is_array)
        {
            last = Some(serde_json::Value::Object(obj.clone()));
        }
    });
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bundle_and_names_json_errors_by_line() {
        let b = parse(
            br#"{"version":1,"workstreams":[{"id":"api","task":"x","scope":["src/api/**"]},{"id":"cli","task":"y","depends_on":["api"],"risk":"low","gates":["test"]}]}"#,
            "b.json",
        )
        .expect("bundle");
        assert_eq!(b.workstreams.len(), 2);
        assert_eq!(b.workstreams[1].depends_on, ["api"]);
        assert_eq!(b.workstreams[1].risk, Some(Risk::Low));

        let err = parse(
            b"{\"version\":1,\n\"workstreams\":[{\"id\":\"a\",\"task\":\"x\",\"scopes\":[]}]}",
            "b.json",
        )
        .expect_err("unknown field");
        assert!(
            err[0].message.starts_with("b.json:2:"),
            "{}",
            err[0].message
        );
        assert!(
            err[0].message.contains("unknown field `scopes`"),
            "{}",
            err[0].message
        );
        let err = parse(b"not json", "b.json").expect_err("not json");
        assert!(
            err[0].message.starts_with("b.json:1:"),
            "{}",
            err[0].message
        );
        let err = parse(br#"{"version":2,"workstreams":[]}"#, "b.json").expect_err("version");
        assert_eq!(err.len(), 2);
    }

    #[test]
    fn finds_a_bundle_in_a_plan() {
        let text = "Split it:\n```json\n{\"version\":1,\"workstreams\":[{\"id\":\"a\",\"task\":\"x\"}]}\n```\n";
        let v = find_in_text(text).expect("found");
        assert_eq!(v["workstreams"][0]["id"], "a");
        assert!(find_in_text("{\"file_impact\":{}}").is_none());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn workstream() -> impl Strategy<Value = Workstream> {
            (
                "[a-z][a-z0-9_-]{0,8}",
                "\\PC{1,40}",
                proptest::collection::vec("[a-z*/.{},]{1,12}", 0..3),
                proptest::collection::vec("[a-z][a-z0-9_-]{0,8}", 0..3),
                proptest::option::of(prop_oneof![
                    Just(Risk::Low),
                    Just(Risk::Medium),
                    Just(Risk::High)
                ]),
                any::<bool>(),
            )
                .prop_map(|(id, task, scope, depends_on, risk, allow_overlap)| {
                    Workstream {
                        id,
                        task,
                        create: scope.clone(),
                        scope,
                        depends_on,
                        risk,
                        gates: None,
                        allow_overlap,
                    }
                })
        }

        proptest! {
            /// Whatever the bytes, reading a bundle never panics: it is a bundle or problems.
            #[test]
            fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let _ = parse(&bytes, "b.json");
            }

            /// A bundle written out reads back the same.
            #[test]
            fn round_trips(list in proptest::collection::vec(workstream(), 1..6), allow_overlap: bool) {
                let b = Bundle { version: 1, allow_overlap, workstreams: list, sources: Vec::new() };
                let text = serde_json::to_vec(&b).expect("encode");
                let back = parse(&text, "b.json").expect("parse");
                prop_assert_eq!(back.workstreams, b.workstreams);
                prop_assert_eq!(back.allow_overlap, allow_overlap);
            }
        }
    }
}
