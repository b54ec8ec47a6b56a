//! Gates git-pipeline runs itself (`[[gates]] builtin = "..."`), in-process: no program of the
//! repository runs, so they need no trust and no sandbox.

pub mod duplicates;
pub mod jscpd;

use crate::error::Result;

/// The builtin gates, by name.
pub const BUILTINS: &[&str] = &["duplicates"];

/// A builtin gate as its config entry asks for it.
#[derive(Debug, Clone)]
pub enum Builtin {
    Duplicates {
        options: duplicates::Options,
        engine: Engine,
    },
}

/// Which detector the `duplicates` gate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// jscpd 5.x when it is on PATH, else the in-process one.
    Auto,
    Builtin,
    Jscpd,
}

impl Engine {
    pub const NAMES: [&'static str; 3] = ["auto", "builtin", "jscpd"];

    pub fn parse(name: &str) -> Option<Engine> {
        match name {
            "auto" => Some(Engine::Auto),
            "builtin" => Some(Engine::Builtin),
            "jscpd" => Some(Engine::Jscpd),
            _ => None,
        }
    }
}

/// Run builtin gate `gate` on the change from `base` to `tree`: `(passed, output)`.
pub fn run(
    git: &crate::git::Git,
    gate: &Builtin,
    base: &crate::git::Oid,
    tree: &crate::git::TreeId,
) -> Result<(bool, String)> {
    match gate {
        Builtin::Duplicates { options, engine } => {
            let jscpd = match engine {
                Engine::Builtin => None,
                _ => jscpd::installed(git.dir()),
            };
            match (engine, jscpd) {
                (Engine::Jscpd, None) => Ok((
                    false,
                    "engine = \"jscpd\", but no jscpd 5.x is on PATH (npm install -g jscpd@5.3.2)\n"
                        .to_owned(),
                )),
                (_, Some(version)) => {
                    let added = crate::git::diff::added_lines(git, base, tree)?;
                    let (passed, text) = jscpd::check(git.dir(), &added, options)?;
                    Ok((passed, format!("[jscpd {version}] {text}")))
                }
                (_, None) => {
                    let (passed, text) = duplicates::check(git, base, tree, options)?;
                    Ok((passed, format!("[in-process] {text}")))
                }
            }
        }
    }
}
