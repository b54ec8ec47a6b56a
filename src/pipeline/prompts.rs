//! Prompts handed to agents, rendered from built-in templates (`src/pipeline/prompts/*.md`).
//! Everything variable in them (diffs, gate output) is bounded and says when it was cut.

use minijinja::Environment;
use serde::Serialize;

use crate::error::{Error, Result};

pub const BUILDER: &str = include_str!("prompts/builder.md");
pub const VERIFIER: &str = include_str!("prompts/verifier.md");

/// Bytes of diff shown to the verifier.
pub const DIFF_LIMIT: usize = 48 * 1024;
/// Bytes of gate output handed back to the builder.
pub const GATE_OUTPUT_LIMIT: usize = 8 * 1024;

#[derive(Serialize)]
pub struct BuilderVars<'a> {
    pub run_id: &'a str,
    pub attempt: u32,
    pub branch: &'a str,
    pub base: &'a str,
    pub task: &'a str,
    pub plan: Option<&'a str>,
    pub scope: &'a [String],
    pub gates: Vec<&'a str>,
    pub feedback: Option<String>,
}

#[derive(Serialize)]
pub struct VerifierVars<'a> {
    pub run_id: &'a str,
    pub round: u32,
    pub max_rounds: u32,
    pub task: &'a str,
    pub base: &'a str,
    pub scope: &'a [String],
    pub gates: Vec<String>,
    pub changed_paths: Vec<String>,
    pub diff: String,
    pub diff_cut: bool,
    pub diff_limit: usize,
}

pub fn render(name: &str, template: &str, vars: impl Serialize) -> Result<String> {
    let mut env = Environment::new();
    env.set_keep_trailing_newline(true);
    env.add_template(name, template)
        .map_err(|e| Error::usage(format!("prompt template {name}: {e}")))?;
    let tmpl = env
        .get_template(name)
        .map_err(|e| Error::usage(format!("prompt template {name}: {e}")))?;
    tmpl.render(vars)
        .map_err(|e| Error::usage(format!("prompt template {name}: {e}")))
}

/// The first `limit` bytes of `text` (cut at a character boundary), and whether it was cut.
pub fn head(text: &str, limit: usize) -> (String, bool) {
    if text.len() <= limit {
        return (text.to_owned(), false);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

/// The last `limit` bytes of `text` (cut at a character boundary), marked when cut.
pub fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[... {} earlier bytes cut ...]\n{}", start, &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_prompt_carries_task_and_feedback() -> Result<()> {
        let scope = vec!["may modify or delete: src/**".to_owned()];
        let out = render(
            "builder.md",
            BUILDER,
            BuilderVars {
                run_id: "r",
                attempt: 2,
                branch: "pipeline/r",
                base: "abc",
                task: "do $(x) {{ y }}",
                plan: None,
                scope: &scope,
                gates: vec!["fmt", "test"],
                feedback: Some("gate test failed".to_owned()),
            },
        )?;
        assert!(out.contains("do $(x) {{ y }}"), "{out}");
        assert!(out.contains("gate test failed"));
        assert!(out.contains("fmt, test"));
        assert!(out.contains("- may modify or delete: src/**"));
        Ok(())
    }

    #[test]
    fn cuts_are_marked_and_char_safe() {
        let (h, cut) = head("ééé", 3);
        assert_eq!((h.as_str(), cut), ("é", true));
        assert!(tail("abcdef", 2).ends_with("\nef"));
        assert_eq!(tail("ab", 2), "ab");
    }
}
