//! Builtin gates as the config asks for them: the entry's options checked and made into a
//! [`Builtin`] that the gates module runs.

use super::GateConfig;
use crate::error::{Error, Result};
use crate::gates::{Builtin, Engine, duplicates};

/// The builtin gate a `[[gates]]` entry names, with its options; `None` for a command gate.
pub fn builtin(gate: &GateConfig) -> Result<Option<Builtin>> {
    let name = gate.name.get_ref();
    let Some(b) = &gate.builtin else {
        return Ok(None);
    };
    if !crate::gates::BUILTINS.contains(&b.get_ref().as_str()) {
        return Err(Error::usage(format!(
            "gate {name:?}: unknown builtin {:?}; builtins: {}",
            b.get_ref(),
            crate::gates::BUILTINS.join(", ")
        )));
    }
    let known = duplicates::known_languages();
    if let Some(l) = gate.languages.iter().find(|l| !known.contains(&l.as_str())) {
        return Err(Error::usage(format!(
            "gate {name:?}: unknown language {l:?}; known: {}",
            known.join(", ")
        )));
    }
    let engine = match gate.engine.as_deref() {
        None => Engine::Auto,
        Some(e) => Engine::parse(e).ok_or_else(|| {
            Error::usage(format!(
                "gate {name:?}: engine {e:?}; give \"auto\", \"builtin\" or \"jscpd\""
            ))
        })?,
    };
    let ignore = crate::globs::Globs::new(&gate.ignore)
        .map_err(|e| Error::usage(format!("gate {name:?}: ignore: {e}")))?;
    let options = duplicates::Options {
        min_tokens: gate
            .min_tokens
            .unwrap_or(duplicates::DEFAULT_MIN_TOKENS)
            .max(1),
        min_lines: gate.min_lines.unwrap_or(duplicates::DEFAULT_MIN_LINES),
        languages: gate.languages.clone(),
        ignore,
    };
    Ok(Some(Builtin::Duplicates { options, engine }))
}
