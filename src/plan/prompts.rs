//! Prompts handed to agents, rendered from templates: built in (`src/plan/prompts/*.md`) or
//! overridden by `.pipeline/prompts/<name>.md` at the base commit (read from the commit, like the
//! config, so an agent cannot rewrite its own instructions). Every variable a template may use is
//! listed in docs/prompts.md; an unknown one is an error before the run starts. Everything
//! variable in a prompt (diffs, outputs) is bounded and says when it was cut.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::error::Error;

use crate::error::Result;
use crate::git::Git;
use crate::git::objects;

/// Bytes of diff shown to the verifier and the docs agent.
pub const DIFF_LIMIT: usize = 48 * 1024;
/// Bytes of gate output handed back to the builder.
pub const GATE_OUTPUT_LIMIT: usize = 8 * 1024;
/// Bytes of discovery findings and of a plan carried into later prompts.
pub const TEXT_LIMIT: usize = 32 * 1024;

pub const OVERRIDE_DIR: &str = ".pipeline/prompts";

/// The templates, by name, with their built-in text.
pub const BUILTIN: &[(&str, &str)] = &[
    ("builder", include_str!("prompts/builder.md")),
    ("verifier", include_str!("prompts/verifier.md")),
    ("discovery", include_str!("prompts/discovery.md")),
    ("planner", include_str!("prompts/planner.md")),
    ("reviewer", include_str!("prompts/reviewer.md")),
    ("docs", include_str!("prompts/docs.md")),
    ("candidates", include_str!("prompts/candidates.md")),
    ("router", include_str!("prompts/router.md")),
];

#[derive(Serialize)]
pub struct BuilderVars<'a> {
    pub run_id: &'a str,
    pub attempt: u32,
    pub branch: &'a str,
    pub base: &'a str,
    pub task: &'a str,
    pub spec: Option<&'a str>,
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
    pub plan: Option<&'a str>,
    pub scope: &'a [String],
    pub gates: Vec<String>,
    pub changed_paths: Vec<String>,
    pub diff: String,
    pub diff_cut: bool,
    pub diff_limit: usize,
}

/// One candidate of a best-of-N run, as the verifier reads it.
#[derive(Serialize)]
pub struct CandidateVars {
    pub index: u32,
    pub agent: String,
    pub worktree: String,
    pub gates: Vec<String>,
    pub changed_paths: Vec<String>,
    pub diff: String,
    pub diff_cut: bool,
}

#[derive(Serialize)]
pub struct CandidatesVars<'a> {
    pub run_id: &'a str,
    pub round: u32,
    pub max_rounds: u32,
    pub task: &'a str,
    pub plan: Option<&'a str>,
    pub scope: &'a [String],
    pub candidates: Vec<CandidateVars>,
}

#[derive(Serialize)]
pub struct DiscoveryVars<'a> {
    pub run_id: &'a str,
    pub base: &'a str,
    pub task: &'a str,
    pub scope: &'a [String],
    pub index: usize,
    pub count: usize,
}

#[derive(Serialize)]
pub struct RouterVars<'a> {
    pub run_id: &'a str,
    pub base: &'a str,
    pub task: &'a str,
    pub scope: &'a [String],
    /// What the word rules decided, and why.
    pub words_risk: &'a str,
    pub words_reasons: &'a [String],
}

#[derive(Serialize)]
pub struct PlannerVars<'a> {
    pub run_id: &'a str,
    pub round: u32,
    pub max_rounds: u32,
    pub base: &'a str,
    pub task: &'a str,
    pub spec: Option<&'a str>,
    pub scope: &'a [String],
    pub feedback: Option<String>,
    /// The planner may split the task into a bundle of workstreams instead.
    pub may_split: bool,
}

#[derive(Serialize)]
pub struct ReviewerVars<'a> {
    pub run_id: &'a str,
    pub round: u32,
    pub max_rounds: u32,
    pub base: &'a str,
    pub task: &'a str,
    pub spec: Option<&'a str>,
    pub plan: &'a str,
    pub manifest: Vec<String>,
}

#[derive(Serialize)]
pub struct DocsVars<'a> {
    pub run_id: &'a str,
    pub task: &'a str,
    pub paths: &'a [String],
    pub changed_paths: Vec<String>,
    pub diff: String,
    pub diff_cut: bool,
    pub diff_limit: usize,
}

#[derive(Debug, Clone)]
pub struct Templates {
    sources: BTreeMap<&'static str, String>,
    /// Names overridden by the project.
    pub overridden: Vec<&'static str>,
}

impl Templates {
    pub fn builtin() -> Templates {
        Templates {
            sources: BUILTIN.iter().map(|(n, t)| (*n, (*t).to_owned())).collect(),
            overridden: Vec::new(),
        }
    }

    /// Built-ins, overridden by `.pipeline/prompts/<name>.md` at `base`; every template is
    /// rendered once with sample values so that an error shows now, not in the middle of a run.
    pub fn load(repo: &Git, base: &str) -> Result<Templates> {
        let mut t = Templates::builtin();
        let paths: Vec<String> = BUILTIN
            .iter()
            .map(|(n, _)| format!("{OVERRIDE_DIR}/{n}.md"))
            .collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let blobs = objects::read_blobs(repo, base, &refs)?;
        for ((name, _), blob) in BUILTIN.iter().zip(blobs) {
            if let Some(bytes) = blob {
                let text = String::from_utf8(bytes).map_err(|_| {
                    Error::usage(format!("{OVERRIDE_DIR}/{name}.md is not valid UTF-8 text"))
                })?;
                t.sources.insert(name, text);
                t.overridden.push(name);
            }
        }
        t.check()?;
        Ok(t)
    }

    pub fn render(&self, name: &str, vars: impl Serialize) -> Result<String> {
        let source = self
            .sources
            .get(name)
            .ok_or_else(|| Error::other(format!("no prompt template named {name}")))?;
        let origin = if self.overridden.contains(&name) {
            format!("{OVERRIDE_DIR}/{name}.md")
        } else {
            format!("built-in prompt {name}")
        };
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template(name, source)
            .map_err(|e| template_error(&origin, &e))?;
        env.get_template(name)
            .and_then(|t| t.render(vars))
            .map_err(|e| template_error(&origin, &e))
    }

    /// Render `name` with sample values when the project overrides it: a template that cannot
    /// render stops the run before anything is made. The built-in ones are checked by the tests.
    fn check_one(&self, name: &str, vars: impl Serialize) -> Result<()> {
        if self.overridden.contains(&name) {
            self.render(name, vars)?;
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        let scope = vec!["may modify or delete: src/**".to_owned()];
        let paths = vec!["README.md".to_owned()];
        self.check_one(
            "builder",
            BuilderVars {
                run_id: "r",
                attempt: 1,
                branch: "b",
                base: "c",
                task: "t",
                spec: Some("s"),
                plan: Some("p"),
                scope: &scope,
                gates: vec!["g"],
                feedback: Some("f".to_owned()),
            },
        )?;
        self.check_one(
            "verifier",
            VerifierVars {
                run_id: "r",
                round: 1,
                max_rounds: 2,
                task: "t",
                base: "c",
                plan: Some("p"),
                scope: &scope,
                gates: vec!["g".to_owned()],
                changed_paths: vec!["a".to_owned()],
                diff: "d".to_owned(),
                diff_cut: true,
                diff_limit: 1,
            },
        )?;
        self.check_one(
            "candidates",
            CandidatesVars {
                run_id: "r",
                round: 1,
                max_rounds: 2,
                task: "t",
                plan: Some("p"),
                scope: &scope,
                candidates: vec![CandidateVars {
                    index: 1,
                    agent: "a".to_owned(),
                    worktree: "w".to_owned(),
                    gates: vec!["g".to_owned()],
                    changed_paths: vec!["a".to_owned()],
                    diff: "d".to_owned(),
                    diff_cut: true,
                }],
            },
        )?;
        self.check_one(
            "router",
            RouterVars {
                run_id: "r",
                base: "c",
                task: "t",
                scope: &scope,
                words_risk: "low",
                words_reasons: &["w".to_owned()],
            },
        )?;
        self.check_one(
            "discovery",
            DiscoveryVars {
                run_id: "r",
                base: "c",
                task: "t",
                scope: &scope,
                index: 1,
                count: 2,
            },
        )?;
        self.check_one(
            "planner",
            PlannerVars {
                run_id: "r",
                round: 1,
                max_rounds: 2,
                base: "c",
                task: "t",
                spec: Some("s"),
                scope: &scope,
                feedback: Some("f".to_owned()),
                may_split: true,
            },
        )?;
        self.check_one(
            "reviewer",
            ReviewerVars {
                run_id: "r",
                round: 1,
                max_rounds: 2,
                base: "c",
                task: "t",
                spec: Some("s"),
                plan: "p",
                manifest: vec!["modify: a".to_owned()],
            },
        )?;
        self.check_one(
            "docs",
            DocsVars {
                run_id: "r",
                task: "t",
                paths: &paths,
                changed_paths: vec!["a".to_owned()],
                diff: "d".to_owned(),
                diff_cut: true,
                diff_limit: 1,
            },
        )?;
        Ok(())
    }
}

fn template_error(origin: &str, e: &minijinja::Error) -> Error {
    let line = e.line().map(|l| format!(":{l}")).unwrap_or_default();
    Error::usage_hint(
        format!("{origin}{line}: {}", e.detail().unwrap_or(&e.to_string())),
        "the variables each prompt template may use are listed in docs/prompts.md",
    )
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

/// `text` bounded to `limit` bytes, with a marked cut.
pub fn bounded(text: &str, limit: usize) -> String {
    let (h, cut) = head(text, limit);
    if cut {
        format!("{h}\n[... cut: {} more bytes ...]", text.len() - h.len())
    } else {
        h
    }
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
    fn builtins_render_with_every_variable() -> Result<()> {
        // As if each were overridden by the project: `check` renders what a project overrides.
        let mut t = Templates::builtin();
        t.overridden = BUILTIN.iter().map(|(n, _)| *n).collect();
        t.check()
    }

    #[test]
    fn builder_prompt_carries_task_and_feedback() -> Result<()> {
        let scope = vec!["may modify or delete: src/**".to_owned()];
        let out = Templates::builtin().render(
            "builder",
            BuilderVars {
                run_id: "r",
                attempt: 2,
                branch: "pipeline/r",
                base: "abc",
                task: "do $(x) {{ y }}",
                spec: None,
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
        assert!(!out.contains("What discovery found"));
        Ok(())
    }

    #[test]
    fn an_unknown_variable_is_an_error_naming_the_template() {
        let mut t = Templates::builtin();
        t.sources.insert("builder", "{{ tsk }}".to_owned());
        t.overridden.push("builder");
        match t.check() {
            Err(e) => assert!(
                e.to_string().contains(".pipeline/prompts/builder.md"),
                "{e}"
            ),
            Ok(()) => panic!("an undefined variable must fail"),
        }
    }

    #[test]
    fn cuts_are_marked_and_char_safe() {
        let (h, cut) = head("ééé", 3);
        assert_eq!((h.as_str(), cut), ("é", true));
        assert!(tail("abcdef", 2).ends_with("\nef"));
        assert_eq!(tail("ab", 2), "ab");
        assert!(bounded("abcdef", 3).ends_with("[... cut: 3 more bytes ...]"));
    }
}
