//! Gates git-pipeline runs itself (`[[gates]] builtin = "..."`), in-process: no program of the
//! repository runs, so they need no trust and no sandbox.

pub mod duplicates;
pub mod jscpd;

use crate::config::GateConfig;
use crate::error::{Error, Result};

/// The builtin gates, by name.
pub const BUILTINS: &[&str] = &["duplicates"];

/// Run builtin gate `gate` on the change from `base` to `tree`: `(passed, output)`.
pub fn run(
    git: &crate::git::Git,
    gate: &GateConfig,
    base: &str,
    tree: &str,
) -> Result<(bool, String)> {
    match gate.builtin.as_ref().map(|b| b.get_ref().as_str()) {
        Some("duplicates") => {
            let opts = duplicates_options(gate)?;
            let engine = gate.engine.as_deref().unwrap_or("auto");
            let jscpd = match engine {
                "builtin" => None,
                _ => jscpd::installed(git.dir()),
            };
            match (engine, jscpd) {
                ("jscpd", None) => Ok((
                    false,
                    "engine = \"jscpd\", but no jscpd 5.x is on PATH (npm install -g jscpd@5.3.2)\n"
                        .to_owned(),
                )),
                (_, Some(version)) => {
                    let added = crate::git::diff::added_lines(git, base, tree)?;
                    let (passed, text) = jscpd::check(git.dir(), &added, &opts)?;
                    Ok((passed, format!("[jscpd {version}] {text}")))
                }
                (_, None) => {
                    let (passed, text) = duplicates::check(git, base, tree, &opts)?;
                    Ok((passed, format!("[in-process] {text}")))
                }
            }
        }
        other => Err(Error::other(format!(
            "gate {:?} is not a builtin gate ({other:?})",
            gate.name.get_ref()
        ))),
    }
}

/// The `duplicates` gate's options from its config entry.
pub fn duplicates_options(gate: &GateConfig) -> Result<duplicates::Options> {
    let ignore = crate::scope::Globs::new(&gate.ignore)
        .map_err(|e| Error::usage(format!("gate {:?}: ignore: {e}", gate.name.get_ref())))?;
    Ok(duplicates::Options {
        min_tokens: gate
            .min_tokens
            .unwrap_or(duplicates::DEFAULT_MIN_TOKENS)
            .max(1),
        min_lines: gate.min_lines.unwrap_or(duplicates::DEFAULT_MIN_LINES),
        languages: gate.languages.clone(),
        ignore,
    })
}
