//! Agent command templates: argv elements with `{placeholder}`s substituted inside them, never
//! through a shell. Substituted values are not scanned again, so a task that contains
//! `{worktree}` or `$(rm -rf ~)` reaches the agent byte for byte.
//!
//! `{{name}}` writes a literal `{name}`. Any other brace text (a JSON argument such as
//! `{"a":{"b":1}}`) is kept exactly as written; `{name}` with an unknown name is an error, so that
//! a typo such as `{promt}` is caught when the config is read.

use std::ffi::{OsStr, OsString};

pub const PLACEHOLDERS: &[&str] = &[
    "prompt",
    "prompt_file",
    "worktree",
    "run_id",
    "stage",
    "session",
];

/// A template element with a `{name}` that is not a placeholder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown placeholder {{{name}}}; known: {}", known())]
pub struct TemplateError {
    pub name: String,
}

fn known() -> String {
    PLACEHOLDERS
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Lit(&'a str),
    Var(&'a str),
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

fn parse(element: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    let bytes = element.as_bytes();
    while i < bytes.len() {
        let rest = &element[i..];
        // `{{name}}`: a literal `{name}`.
        if let Some(inner) = rest.strip_prefix("{{")
            && let Some(close) = inner.find("}}")
            && is_name(&inner[..close])
        {
            if lit_start < i {
                pieces.push(Piece::Lit(&element[lit_start..i]));
            }
            pieces.push(Piece::Lit(&rest[1..close + 3]));
            i += close + 4;
            lit_start = i;
            continue;
        }
        if bytes[i] == b'{'
            && let Some(close) = rest.find('}')
            && is_name(&rest[1..close])
        {
            let name = &rest[1..close];
            if !PLACEHOLDERS.contains(&name) {
                return Err(TemplateError {
                    name: name.to_owned(),
                });
            }
            if lit_start < i {
                pieces.push(Piece::Lit(&element[lit_start..i]));
            }
            pieces.push(Piece::Var(name));
            i += close + 1;
            lit_start = i;
            continue;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    if lit_start < element.len() {
        pieces.push(Piece::Lit(&element[lit_start..]));
    }
    Ok(pieces)
}

/// Check a template when the config is read.
pub fn check(template: &[String]) -> Result<(), TemplateError> {
    for element in template {
        parse(element)?;
    }
    Ok(())
}

/// Whether the template hands the prompt over at all (as text or as a file).
pub fn uses_prompt(template: &[String]) -> bool {
    template.iter().any(|e| {
        parse(e).is_ok_and(|p| {
            p.iter()
                .any(|x| matches!(x, Piece::Var("prompt") | Piece::Var("prompt_file")))
        })
    })
}

/// Values for the placeholders of one invocation.
pub struct Vars<'a> {
    pub prompt: &'a OsStr,
    pub prompt_file: &'a OsStr,
    pub worktree: &'a OsStr,
    pub run_id: &'a OsStr,
    pub stage: &'a OsStr,
    pub session: &'a OsStr,
}

impl Vars<'_> {
    fn get(&self, name: &str) -> &OsStr {
        match name {
            "prompt" => self.prompt,
            "prompt_file" => self.prompt_file,
            "worktree" => self.worktree,
            "run_id" => self.run_id,
            "stage" => self.stage,
            _ => self.session,
        }
    }
}

pub fn render(template: &[String], vars: &Vars<'_>) -> Result<Vec<OsString>, TemplateError> {
    template
        .iter()
        .map(|element| {
            let mut out = OsString::new();
            for piece in parse(element)? {
                match piece {
                    Piece::Lit(s) => out.push(s),
                    Piece::Var(v) => out.push(vars.get(v)),
                }
            }
            Ok(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pieces_have_no_empty_literals_and_every_placeholder_has_its_value()
    -> Result<(), TemplateError> {
        assert_eq!(parse("{prompt}")?, [Piece::Var("prompt")]);
        assert_eq!(
            parse("a{stage}b")?,
            [Piece::Lit("a"), Piece::Var("stage"), Piece::Lit("b")]
        );
        assert_eq!(parse("{{x}}")?, [Piece::Lit("{x}")]);
        let v = Vars {
            prompt: OsStr::new("P"),
            prompt_file: OsStr::new("F"),
            worktree: OsStr::new("W"),
            run_id: OsStr::new("R"),
            stage: OsStr::new("S"),
            session: OsStr::new("X"),
        };
        let t: Vec<String> = PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect();
        assert_eq!(render(&t, &v)?, ["P", "F", "W", "R", "S", "X"]);
        Ok(())
    }

    #[test]
    fn an_unknown_placeholder_lists_the_known_ones_and_prompts_are_found() {
        let err = check(&["{promt}".to_owned()]).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "unknown placeholder {promt}; known: {prompt}, {prompt_file}, {worktree}, {run_id}, {stage}, {session}"
            )
        );
        assert!(uses_prompt(&[
            "x".to_owned(),
            "--file={prompt_file}".to_owned()
        ]));
        assert!(!uses_prompt(&["x".to_owned(), "{worktree}".to_owned()]));
    }

    use super::*;
    use proptest::prelude::*;

    fn vars<'a>(prompt: &'a str, worktree: &'a str) -> Vars<'a> {
        Vars {
            prompt: OsStr::new(prompt),
            prompt_file: OsStr::new("/tmp/p.md"),
            worktree: OsStr::new(worktree),
            run_id: OsStr::new("20261121-000000-abcd"),
            stage: OsStr::new("execution"),
            session: OsStr::new("s-1"),
        }
    }

    fn t(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn substitutes_inside_elements() -> Result<(), Box<dyn std::error::Error>> {
        let out = render(
            &t(&[
                "agent",
                "--file={prompt_file}",
                "{prompt}",
                "--cd",
                "{worktree}",
            ]),
            &vars("do it", "/w"),
        )?;
        assert_eq!(
            out,
            vec!["agent", "--file=/tmp/p.md", "do it", "--cd", "/w"]
        );
        Ok(())
    }

    #[test]
    fn escapes_and_json_stay_literal() -> Result<(), Box<dyn std::error::Error>> {
        let out = render(
            &t(&[
                "{{prompt}}",
                r#"--cfg={"a": {"b": 1}}"#,
                "{}",
                "{ x }",
                "}}{{",
                "{{{prompt}}}",
            ]),
            &vars("p", "/w"),
        )?;
        assert_eq!(
            out,
            vec![
                "{prompt}",
                r#"--cfg={"a": {"b": 1}}"#,
                "{}",
                "{ x }",
                "}}{{",
                "{{prompt}}"
            ]
        );
        Ok(())
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let err = check(&t(&["x", "{promt}"]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("{promt}"), "{err}");
    }

    proptest! {
        /// Whatever the task holds (braces, placeholders, shell syntax, newlines), it arrives
        /// exactly as given and nothing else changes.
        #[test]
        fn prompt_arrives_byte_for_byte(prompt in any::<String>(), pre in "[a-z=-]{0,5}", post in "[a-z]{0,5}") {
            let template = vec![format!("{pre}{{prompt}}{post}")];
            let out = render(&template, &vars(&prompt, "/w")).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(out, vec![OsString::from(format!("{pre}{prompt}{post}"))]);
        }

        /// Templates without a `{name}` render to themselves, braces and all.
        #[test]
        fn plain_elements_are_unchanged(element in "[^a-z]{0,40}") {
            let out = render(std::slice::from_ref(&element), &vars("p", "/w")).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(out, vec![OsString::from(element)]);
        }

        /// Parsing never panics, and a template that parses renders.
        #[test]
        fn any_template_is_handled(element in any::<String>()) {
            if check(std::slice::from_ref(&element)).is_ok() {
                prop_assert!(render(&[element], &vars("p", "/w")).is_ok());
            }
        }
    }
}
