//! `git pipeline init`: a commented starter `.pipeline.toml` at the top of the worktree.

use std::io::Write;
use std::path::Path;

use super::emit;
use crate::cli::InitCmd;
use crate::config::PROJECT_FILE;
use crate::error::{Error, Exit, Result};
use crate::git::Repo;

pub const STARTER: &str = include_str!("starter.toml");

pub fn init(cmd: InitCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let top = repo.work_tree.ok_or_else(|| {
        Error::usage("git pipeline init needs a worktree (this repository is bare)")
    })?;
    let path = top.join(PROJECT_FILE);
    if path.exists() && !cmd.force {
        return Err(Error::usage_hint(
            format!("{} already exists", path.display()),
            "keep it, or overwrite it with: git pipeline init --force",
        ));
    }
    std::fs::write(&path, STARTER).map_err(|e| Error::io_path("write", &path, e))?;
    emit(
        out,
        &format!(
            "wrote {}\nnext: edit the agents and gates, then commit it:\n  git add {PROJECT_FILE} && git commit -m \"Add git-pipeline config\"\n",
            path.display()
        ),
    )?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_starter_config_is_valid() {
        let parsed: Result<crate::config::Config, _> = toml::from_str(super::STARTER);
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
