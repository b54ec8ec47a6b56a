//! Workstream bundles (SPEC section 8): several tasks with dependencies, run as a DAG of full
//! pipeline runs, independent ones in parallel worktrees, their results merged onto one
//! integration branch.
//!
//! - `spec`: the JSON format, read without stopping at the first problem;
//! - `dag`: the dependency graph: cycles as paths, levels, what depends on what;
//! - `validate`: every problem at once, overlapping scopes included;
//! - `record`: `bundle.json`, the bundle's state next to its workstreams' run records;
//! - `integrate`: the merges (dependency bases, the integration branch), without a worktree;
//! - `driver`: the scheduler: ready workstreams up to `--jobs`, blocking, resume.

pub mod dag;
pub mod integrate;
pub mod record;
pub mod spec;
pub mod validate;

use std::path::Path;

/// One thing wrong with a bundle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The workstream it is about, if one.
    pub workstream: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn of(workstream: &str, message: String) -> Problem {
        Problem {
            workstream: Some(workstream.to_owned()),
            message,
        }
    }

    pub fn file(path: &Path, message: String) -> Problem {
        Problem {
            workstream: None,
            message: format!("{}: {message}", path.display()),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.workstream {
            Some(w) => write!(f, "workstream {w:?}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}
