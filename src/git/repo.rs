//! Finding the repository the user is in, the way git itself would.

use std::path::{Path, PathBuf};

use super::{Git, split_z};
use crate::error::Error;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Repo {
    /// The git dir of the worktree the user is in (`.git`, or `.git/worktrees/<name>`).
    pub git_dir: PathBuf,
    /// The shared git dir: refs, objects and our run records live here.
    pub common_dir: PathBuf,
    /// Top level of the worktree the user is in, if any.
    pub work_tree: Option<PathBuf>,
    /// The repository's main worktree; `None` for a bare repository.
    pub main_worktree: Option<PathBuf>,
    /// The hooks folder git uses (`core.hooksPath` honoured), as [`hooks_dir`] finds it.
    pub hooks_dir: PathBuf,
}

impl Repo {
    /// Discover the repository containing `cwd`. Uses the inherited environment, so `GIT_DIR`
    /// set by the user is honoured exactly as git would honour it.
    pub fn discover(cwd: &Path) -> Result<Repo> {
        let out = super::program()
            .arg("-C")
            .arg(cwd)
            .args([
                "rev-parse",
                "--path-format=absolute",
                "--git-common-dir",
                "--git-dir",
                "--git-path",
                "hooks",
                "--is-inside-work-tree",
                "--show-toplevel",
            ])
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::usage_hint("git is not installed or not on PATH", "install git")
                } else {
                    Error::io("cannot run git rev-parse", e)
                }
            })?;
        // Outside a work tree (a bare repository, inside `.git`) `--show-toplevel` fails after
        // the others answered (whatever language git speaks): that is not an error.
        let outside_work_tree = out.stdout.split(|b| *b == b'\n').nth(3) == Some(b"false");
        if !out.status.success() && !outside_work_tree {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("not a git repository") || !cwd.exists() {
                return Err(Error::usage_hint(
                    format!("not a git repository: {}", cwd.display()),
                    "run git-pipeline inside a git repository, or point at one with -C <dir>",
                ));
            }
            return Err(Error::usage(format!(
                "cannot open the repository at {}: {}",
                cwd.display(),
                stderr.trim()
            )));
        }
        // Run records, prompts and events hold paths as text: a repository whose path is not
        // UTF-8 is named and refused here, never half-worked with mangled paths.
        let Ok(text) = String::from_utf8(out.stdout) else {
            return Err(Error::usage_hint(
                format!(
                    "the repository's path is not valid UTF-8 ({}): git-pipeline records paths as text",
                    cwd.display()
                ),
                "rename or move the repository (or its parent folders) to a UTF-8 path",
            ));
        };
        let mut lines = text.lines();
        let (Some(common), Some(git_dir), Some(hooks), Some(inside), top) = (
            lines.next(),
            lines.next(),
            lines.next(),
            lines.next(),
            lines.next(),
        ) else {
            return Err(Error::other(format!(
                "unexpected output from git rev-parse: {text:?}"
            )));
        };
        let common_dir = PathBuf::from(common);
        let git_dir = PathBuf::from(git_dir);
        let git = Git::at_git_dir(&git_dir);
        let work_tree = match (inside, top) {
            ("true", Some(top)) => Some(PathBuf::from(top)),
            ("true", None) => {
                return Err(Error::other(format!(
                    "unexpected output from git rev-parse: {text:?}"
                )));
            }
            _ => None,
        };
        // In the main worktree its git dir is the common one: no need to ask for the list.
        let main_worktree = match &work_tree {
            Some(top) if git_dir == common_dir => Some(top.clone()),
            _ => main_worktree(&git)?,
        };
        Ok(Repo {
            git_dir,
            common_dir,
            work_tree,
            main_worktree,
            hooks_dir: PathBuf::from(hooks),
        })
    }

    /// [`Repo::discover`], with the repository's kept object reader ([`super::batch`]) starting
    /// beside it: the first reads of a run (its config and trust files at the base) then wait
    /// for no process to start.
    pub fn discover_reading(cwd: &Path) -> Result<Repo> {
        let ahead = super::batch::start_in(cwd);
        let repo = Repo::discover(cwd)?;
        if let Some(reader) = ahead {
            super::batch::adopt(reader, &repo.git_dir, &repo.common_dir);
        }
        Ok(repo)
    }

    /// Git for refs and objects of this repository, with the user's worktree's HEAD.
    pub fn git(&self) -> Git {
        Git::at_git_dir(&self.git_dir)
    }

    /// Where our run records live.
    pub fn pipeline_dir(&self) -> PathBuf {
        self.common_dir.join("pipeline")
    }

    /// The default worktree root: a sibling of the main worktree (`<main>.pipeline`), or of the
    /// git dir for a bare repository. Never inside the user's checkout.
    pub fn default_worktree_root(&self) -> PathBuf {
        let anchor = self.main_worktree.as_deref().unwrap_or(&self.common_dir);
        let name = anchor
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".to_owned());
        let parent = anchor.parent().unwrap_or(anchor);
        parent.join(format!("{name}.pipeline"))
    }
}

/// The first entry of `git worktree list` is the main worktree (or the bare repository).
fn main_worktree(git: &Git) -> Result<Option<PathBuf>> {
    let out = git.run(["worktree", "list", "--porcelain", "-z"])?;
    let mut path = None;
    for field in split_z(&out) {
        if let Some(p) = field.strip_prefix(b"worktree ") {
            if path.is_some() {
                break;
            }
            path = Some(super::path_from_bytes(p));
        } else if field == b"bare" {
            return Ok(None);
        }
    }
    Ok(path)
}

/// The absolute git dir of the checkout `git` runs in.
pub fn absolute_git_dir(git: &Git) -> Result<PathBuf> {
    Ok(PathBuf::from(git.text([
        "rev-parse",
        "--path-format=absolute",
        "--git-dir",
    ])?))
}

/// The hooks folder git uses (honours `core.hooksPath`, shared by linked worktrees).
pub fn hooks_dir(git: &Git) -> Result<PathBuf> {
    Ok(PathBuf::from(git.text([
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "hooks",
    ])?))
}
