//! Containment checks: an agent is code running with the user's rights, so the scope check of its
//! worktree is not enough. Around every agent and gate step, cheap fingerprints of what the run
//! must not change are compared:
//!
//! - the user's checkout: the `git status` entries (tracked changes, untracked and ignored files
//!   at the granularity git lists them) with each entry's size and mtime, the index's stat, HEAD;
//! - the shared git dir: its `config`, the hooks folder (honouring `core.hooksPath`), `info/`;
//! - the effective git configuration of the run's worktree (`git config --list`, every level):
//!   a new filter driver, `core.fsmonitor` or `core.hooksPath` would make later git commands run
//!   the agent's code;
//! - refs other than the run's own and those git-pipeline itself manages;
//! - the run branch: still checked out in the worktree, and not reset below its base.
//!
//! A difference stops the run (`containment`, exit 1) before anything is shipped. The checks
//! compare before and after each step, so the user may work between steps, but not in their
//! checkout while an agent runs (`[containment] checkout = false` turns that check off).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::git::{Git, Opts, objects};

/// What to check; from `[containment]`.
#[derive(Debug, Clone)]
pub struct Checks {
    pub checkout: bool,
    pub git_dir: bool,
    pub refs: bool,
}

/// Where things are.
#[derive(Debug, Clone)]
pub struct Guard {
    pub checks: Checks,
    /// The user's checkouts: the main worktree, and the one the run was started from.
    pub checkouts: Vec<PathBuf>,
    pub common_dir: PathBuf,
    pub repo: Git,
    pub worktree: PathBuf,
    pub worktree_git_dir: PathBuf,
    /// `refs/heads/<branch>` of the run, or empty for a detached (reverify) run.
    pub branch_ref: String,
    pub base: String,
    pub branch_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Per checkout: its status entries with their stat, plus index and HEAD.
    checkouts: Vec<BTreeMap<String, u64>>,
    /// The contents of the repository's small control files (config, hooks, info/), so that a
    /// change can be put back exactly.
    files: BTreeMap<PathBuf, Kept>,
    config: u64,
    refs: BTreeMap<String, String>,
    /// What the worktree's `.git` file says.
    pointer: Option<Vec<u8>>,
}

/// A control file's content (or, past [`KEEP_LIMIT`], its stat) and mode; `None` when absent.
type Kept = Option<(Vec<u8>, u32)>;

/// Files larger than this in the repository's control folders are compared by stat only.
const KEEP_LIMIT: u64 = 1024 * 1024;

impl Guard {
    pub fn take(&self) -> Result<Fingerprint> {
        let mut checkouts = Vec::new();
        if self.checks.checkout {
            for c in &self.checkouts {
                checkouts.push(checkout_print(c)?);
            }
        }
        let (files, config) = if self.checks.git_dir {
            (self.control_files()?, self.config_print()?)
        } else {
            (BTreeMap::new(), 0)
        };
        let refs = if self.checks.refs {
            self.refs()?
        } else {
            BTreeMap::new()
        };
        Ok(Fingerprint {
            checkouts,
            files,
            config,
            refs,
            pointer: std::fs::read(self.worktree.join(".git")).ok(),
        })
    }

    /// Put back what can be put back safely: the repository's control files and other refs. The
    /// user's checkout is never written to (their own edits could be lost); it is reported.
    pub fn restore(&self, before: &Fingerprint) -> Result<Vec<String>> {
        use std::os::unix::fs::PermissionsExt;
        let mut done = Vec::new();
        let now = self.control_files()?;
        for (path, old) in &before.files {
            if now.get(path) == Some(old) {
                continue;
            }
            match old {
                Some((bytes, mode)) => {
                    std::fs::write(path, bytes)
                        .and_then(|()| {
                            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                        })
                        .map_err(|e| crate::error::Error::io_path("restore", path, e))?;
                    done.push(format!("restored {}", path.display()));
                }
                None => {
                    if std::fs::remove_file(path).is_ok() {
                        done.push(format!("removed {}", path.display()));
                    }
                }
            }
        }
        for path in now.keys() {
            if !before.files.contains_key(path) && std::fs::remove_file(path).is_ok() {
                done.push(format!("removed {}", path.display()));
            }
        }
        if self.checks.refs {
            let refs = self.refs()?;
            for (name, old) in &before.refs {
                match refs.get(name) {
                    Some(new) if new == old => {}
                    current => {
                        let current = current.cloned().unwrap_or_else(|| "0".repeat(old.len()));
                        self.repo.run([
                            "update-ref",
                            "-m",
                            "git-pipeline: undo a change made during a run",
                            name,
                            old,
                            &current,
                        ])?;
                        done.push(format!("put {name} back"));
                    }
                }
            }
            for (name, new) in &refs {
                if !before.refs.contains_key(name) {
                    self.repo.run(["update-ref", "-d", name, new])?;
                    done.push(format!("deleted {name}"));
                }
            }
        }
        if let Some(p) = &before.pointer
            && std::fs::read(self.worktree.join(".git")).ok().as_ref() != Some(p)
        {
            std::fs::write(self.worktree.join(".git"), p).map_err(|e| {
                crate::error::Error::io_path("restore", &self.worktree.join(".git"), e)
            })?;
            done.push("restored the worktree's .git pointer".to_owned());
        }
        Ok(done)
    }

    /// What changed between two fingerprints, and whether the run branch is still sound: one
    /// sentence per breach, empty when nothing did.
    pub fn breaches(&self, before: &Fingerprint, after: &Fingerprint) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (i, (b, a)) in before.checkouts.iter().zip(&after.checkouts).enumerate() {
            let changed: Vec<&str> = b
                .iter()
                .filter(|(k, v)| a.get(*k) != Some(v))
                .map(|(k, _)| k.as_str())
                .chain(a.keys().filter(|k| !b.contains_key(*k)).map(String::as_str))
                .collect();
            if !changed.is_empty() {
                let shown: Vec<&str> = changed.iter().take(5).copied().collect();
                out.push(format!(
                    "your checkout {} changed: {}",
                    self.checkouts[i].display(),
                    shown.join(", ")
                ));
            }
        }
        let files: Vec<String> = before
            .files
            .iter()
            .filter(|(k, v)| after.files.get(*k) != Some(v))
            .map(|(k, _)| k.display().to_string())
            .chain(
                after
                    .files
                    .keys()
                    .filter(|k| !before.files.contains_key(*k))
                    .map(|k| k.display().to_string()),
            )
            .collect();
        if !files.is_empty() {
            out.push(format!(
                "the repository's git config, hooks or info/ changed: {}",
                files.join(", ")
            ));
        }
        if before.pointer != after.pointer {
            out.push("the worktree's .git pointer was rewritten".to_owned());
        }
        if before.config != after.config {
            out.push(
                "the git configuration seen by the run changed (a filter driver, core.hooksPath or core.fsmonitor could run code later)".to_owned(),
            );
        }
        for (name, old) in &before.refs {
            match after.refs.get(name) {
                None => out.push(format!("{name} was deleted")),
                Some(new) if new != old => out.push(format!("{name} was moved")),
                _ => {}
            }
        }
        for name in after.refs.keys() {
            if !before.refs.contains_key(name) {
                out.push(format!("{name} was created"));
            }
        }
        if let Some(b) = self.branch_breach()? {
            out.push(b);
        }
        Ok(out)
    }

    /// The run branch must still be checked out in the worktree and contain its base.
    fn branch_breach(&self) -> Result<Option<String>> {
        if self.branch_ref.is_empty() || !self.worktree.exists() {
            return Ok(None);
        }
        let wt = Git::worktree(&self.worktree, &self.worktree_git_dir);
        let head = wt.output(["symbolic-ref", "--quiet", "HEAD"], Opts::default())?;
        let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
        if head != self.branch_ref {
            return Ok(Some(if head.is_empty() {
                format!("the worktree's HEAD was detached from {}", self.branch_ref)
            } else {
                format!(
                    "the worktree was switched from {} to {head}",
                    self.branch_ref
                )
            }));
        }
        let Some(tip) = objects::ref_value(&self.repo, &self.branch_ref)? else {
            return Ok(Some(format!("{} was deleted", self.branch_ref)));
        };
        let contains = self
            .repo
            .output(
                ["merge-base", "--is-ancestor", &self.base, &tip],
                Opts::default(),
            )?
            .status
            .success();
        Ok((!contains).then(|| format!("{} was reset below its base", self.branch_ref)))
    }

    /// The repository's control files: config (shared and per-worktree), the hooks folder
    /// (honouring `core.hooksPath`) and `info/`.
    fn control_files(&self) -> Result<BTreeMap<PathBuf, Kept>> {
        let mut files = BTreeMap::new();
        let mut add = |path: PathBuf| {
            let kept = std::fs::symlink_metadata(&path).ok().map(|m| {
                let bytes = if m.len() <= KEEP_LIMIT {
                    std::fs::read(&path).unwrap_or_default()
                } else {
                    format!("{}:{}:{}", m.len(), m.mtime(), m.mtime_nsec()).into_bytes()
                };
                (bytes, m.mode() & 0o7777)
            });
            files.insert(path, kept);
        };
        add(self.common_dir.join("config"));
        add(self.common_dir.join("config.worktree"));
        add(self.worktree_git_dir.join("config.worktree"));
        let hooks = PathBuf::from(self.repo.text([
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "hooks",
        ])?);
        for dir in [
            hooks,
            self.common_dir.join("hooks"),
            self.common_dir.join("info"),
        ] {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry
                    .file_type()
                    .is_ok_and(|t| t.is_file() || t.is_symlink())
                {
                    add(entry.path());
                }
            }
        }
        // A file that did not exist is recorded as such, so its creation shows.
        Ok(files)
    }

    fn config_print(&self) -> Result<u64> {
        let dir = if self.worktree.exists() {
            Git::worktree(&self.worktree, &self.worktree_git_dir)
        } else {
            self.repo.clone()
        };
        let out = dir.output(["config", "--list", "--show-origin", "-z"], Opts::default())?;
        let mut h = DefaultHasher::new();
        out.stdout.hash(&mut h);
        Ok(h.finish())
    }

    /// Refs that neither the run nor git-pipeline itself (other runs, notes, archives) nor
    /// fetches (remote-tracking refs) may change.
    fn refs(&self) -> Result<BTreeMap<String, String>> {
        let out = self
            .repo
            .run(["for-each-ref", "--format=%(refname)%00%(objectname)"])?;
        let ours = format!("refs/heads/{}", self.branch_prefix);
        let mut refs = BTreeMap::new();
        for line in String::from_utf8_lossy(&out).lines() {
            let Some((name, oid)) = line.split_once('\0') else {
                continue;
            };
            let managed = name == self.branch_ref
                || name == crate::attest::NOTES_REF
                || name.starts_with("refs/pipeline/")
                || name.starts_with("refs/remotes/")
                || name.strip_prefix(&ours).is_some_and(managed_branch);
            if !managed {
                refs.insert(name.to_owned(), oid.to_owned());
            }
        }
        Ok(refs)
    }
}

/// Branches git-pipeline moves itself under its prefix: runs' (`<run-id>`) and bundles'
/// integration branches (`<bundle-id>/integration`).
fn managed_branch(rest: &str) -> bool {
    crate::ids::is_run_id(rest)
        || rest
            .split_once('/')
            .is_some_and(|(id, what)| crate::ids::is_run_id(id) && what == "integration")
}

/// The status entries of a checkout with each entry's stat, its index's stat, and its HEAD.
fn checkout_print(checkout: &Path) -> Result<BTreeMap<String, u64>> {
    let git = Git::in_dir(checkout);
    let out = git.run([
        "--no-optional-locks",
        "status",
        "--porcelain=v2",
        "-z",
        "--untracked-files=all",
        "--ignored=traditional",
        "--ignore-submodules=none",
    ])?;
    let mut entries = BTreeMap::new();
    // Ignored entries (build outputs an editor or a background build keeps writing) count by
    // name only; every other entry also by its stat, so editing an already-changed file shows.
    for e in crate::git::status::entries(&out) {
        let print = if e.kind == '!' {
            0
        } else {
            stat_print(&checkout.join(&e.path))
        };
        entries.insert(e.path, print);
    }
    let git_dir = PathBuf::from(git.text(["rev-parse", "--path-format=absolute", "--git-dir"])?);
    entries.insert("(index)".to_owned(), stat_print(&git_dir.join("index")));
    let mut h = DefaultHasher::new();
    std::fs::read(git_dir.join("HEAD")).ok().hash(&mut h);
    git.output(
        ["rev-parse", "--verify", "--quiet", "HEAD"],
        Opts::default(),
    )?
    .stdout
    .hash(&mut h);
    entries.insert("(HEAD)".to_owned(), h.finish());
    Ok(entries)
}

fn stat_print(path: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    match std::fs::symlink_metadata(path) {
        Ok(m) => (m.len(), m.mtime(), m.mtime_nsec(), m.mode(), m.ino()).hash(&mut h),
        Err(_) => 0u8.hash(&mut h),
    }
    h.finish()
}
