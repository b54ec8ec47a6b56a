//! Agent Trace records (https://github.com/cursor/agent-trace, version 0.1.0): which lines of a
//! shipped commit an AI wrote, for tools that attribute code. Every line a run adds was written
//! by its agents (the builder, and the docs agent for docs), so each added range is `ai`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

/// Where the records live: one note per shipped commit.
pub const TRACE_REF: &str = "refs/notes/agent-trace";
pub const SPEC_VERSION: &str = "0.1.0";

/// What the record says about who wrote the lines.
pub struct Author<'a> {
    /// The CLI (`claude`, `codex`...).
    pub cli: &'a str,
    /// The model the CLI reported, when it did.
    pub model: Option<&'a str>,
}

/// models.dev's `provider/model` form, where the provider follows from the CLI.
fn model_id(author: &Author) -> Option<String> {
    let model = author.model?;
    if model.contains('/') {
        return Some(model.to_owned());
    }
    let provider = match author.cli {
        "claude" => Some("anthropic"),
        "codex" => Some("openai"),
        "gemini" => Some("google"),
        _ => None,
    };
    Some(provider.map_or_else(|| model.to_owned(), |p| format!("{p}/{model}")))
}

/// Consecutive line numbers as inclusive `(start, end)` ranges.
pub fn ranges(lines: &[u32]) -> Vec<(u32, u32)> {
    let mut sorted: Vec<u32> = lines.iter().copied().filter(|l| *l > 0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for l in sorted {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == l => *end = l,
            _ => out.push((l, l)),
        }
    }
    out
}

/// The record for `commit`: `added` maps each file to the lines (1-based, at `commit`) it added.
pub fn record(
    commit: &str,
    added: &BTreeMap<PathBuf, Vec<u32>>,
    author: &Author,
    run_id: &str,
    (id, timestamp): (&str, &str),
) -> Value {
    let mut contributor = json!({"type": "ai"});
    if let Some(m) = model_id(author) {
        contributor["model_id"] = Value::String(m.chars().take(250).collect());
    }
    let files: Vec<Value> = added
        .iter()
        .filter_map(|(path, lines)| {
            let ranges: Vec<Value> = ranges(lines)
                .into_iter()
                .map(|(s, e)| json!({"start_line": s, "end_line": e}))
                .collect();
            (!ranges.is_empty()).then(|| {
                json!({
                    "path": path.to_string_lossy(),
                    "conversations": [{"contributor": contributor, "ranges": ranges}],
                })
            })
        })
        .collect();
    json!({
        "version": SPEC_VERSION,
        "id": id,
        "timestamp": timestamp,
        "vcs": {"type": "git", "revision": commit},
        "tool": {"name": "git-pipeline", "version": env!("CARGO_PKG_VERSION")},
        "files": files,
        "metadata": {"dev.git-pipeline": {"run_id": run_id, "agent": author.cli}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_name_the_provider_of_each_preset() {
        let id = |cli, model| model_id(&Author { cli, model });
        assert_eq!(id("claude", Some("m")).as_deref(), Some("anthropic/m"));
        assert_eq!(id("codex", Some("gpt-5")).as_deref(), Some("openai/gpt-5"));
        assert_eq!(id("gemini", Some("g")).as_deref(), Some("google/g"));
        assert_eq!(id("opencode", Some("x/y")).as_deref(), Some("x/y"));
        assert_eq!(id("aider", Some("m")).as_deref(), Some("m"));
        assert_eq!(id("claude", None), None);
    }

    #[test]
    fn lines_become_inclusive_ranges() {
        assert_eq!(ranges(&[5, 1, 2, 3, 9, 10, 3]), [(1, 3), (5, 5), (9, 10)]);
        assert!(ranges(&[]).is_empty());
        // Line numbers are 1-based: a 0 (what git says for "no lines") is never a range.
        assert_eq!(ranges(&[0, 2]), [(2, 2)]);
    }

    #[test]
    fn a_record_has_what_the_spec_requires() {
        let added = BTreeMap::from([
            (PathBuf::from("src/a.rs"), vec![4, 5, 12]),
            (PathBuf::from("gone"), vec![]),
        ]);
        let author = Author {
            cli: "claude",
            model: Some("claude-sonnet-4-5"),
        };
        let r = record(
            &"c".repeat(40),
            &added,
            &author,
            "run",
            ("id", "2026-01-01T00:00:00Z"),
        );
        assert_eq!(r["version"], "0.1.0");
        assert_eq!(r["vcs"]["revision"], "c".repeat(40));
        assert_eq!(r["files"].as_array().map(Vec::len), Some(1));
        let conv = &r["files"][0]["conversations"][0];
        assert_eq!(conv["contributor"]["type"], "ai");
        assert_eq!(
            conv["contributor"]["model_id"],
            "anthropic/claude-sonnet-4-5"
        );
        assert_eq!(
            conv["ranges"],
            json!([{"start_line": 4, "end_line": 5}, {"start_line": 12, "end_line": 12}])
        );
        let unknown = Author {
            cli: "fake",
            model: None,
        };
        let r = record("c", &added, &unknown, "run", ("id", "t"));
        assert!(
            r["files"][0]["conversations"][0]["contributor"]
                .get("model_id")
                .is_none()
        );
    }
}
