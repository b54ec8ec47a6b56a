//! `git pipeline trust`: say that this repository's `.pipeline.toml` may run its commands here.

use std::io::Write;
use std::path::Path;

use super::emit;
use crate::cli::TrustCmd;
use crate::config;
use crate::config::PROJECT_FILE;
use crate::error::Error;
use crate::error::Exit;
use crate::error::Result;
use crate::git::Repo;
use crate::git::objects;

pub fn trust(cmd: TrustCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let git = repo.git();
    let commit = objects::resolve_commit(&git, &cmd.base)?
        .ok_or_else(|| Error::usage(format!("{:?} does not name a commit", cmd.base)))?;
    let blob = crate::policy::trust::key(&git, &commit)?.ok_or_else(|| {
        Error::usage_hint(
            format!("there is no {PROJECT_FILE} at {} to trust", cmd.base),
            "commit one first (git pipeline init writes a starter)",
        )
    })?;
    // Only a config that parses and validates is worth trusting.
    let loaded = config::load(&repo, &commit, &cmd.base)?
        .ok_or_else(|| Error::usage(format!("no {PROJECT_FILE} at {}", cmd.base)))?;
    let store = crate::policy::trust::record(&blob, &repo.common_dir)?;
    let mut t = format!(
        "trusted {PROJECT_FILE}{} at {} (blob {}); it runs:\n",
        if blob.contains('+') {
            " and .pipeline/"
        } else {
            ""
        },
        cmd.base,
        &blob[..blob.len().min(12)]
    );
    let commands = crate::policy::trust::project_commands(&loaded);
    if commands.is_empty() {
        t.push_str("  (no commands of its own)\n");
    }
    for (what, argv) in commands {
        t.push_str(&format!("  {what}: {argv}\n"));
    }
    t.push_str(&format!(
        "any change to the file needs trusting again (kept in {})\n",
        store.display()
    ));
    emit(out, &t)?;
    Ok(Exit::Success)
}
