//! What a run has changed: the worktree's files (tracked and untracked-not-ignored, plus anything
//! the agent committed itself) as a tree, compared with the base commit.
//!
//! We stage everything into a *copy* of the worktree's index: the copy keeps git's stat cache, so
//! only changed files are re-hashed, and the index the agent sees is never modified (an agent that
//! runs `git diff` between attempts still sees its own unstaged work). The resulting tree id also
//! names the exact state the gates and the verifier judged, which ship and archive reuse.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Git, Opts, path_from_bytes, split_z};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    TypeChanged,
}

impl ChangeKind {
    /// Whether the path existed at the base commit (modify/delete rules apply) or is new
    /// (create rules apply).
    pub fn touches_existing(self) -> bool {
        !matches!(self, ChangeKind::Added)
    }

    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Deleted => 'D',
            ChangeKind::TypeChanged => 'T',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Tree of the worktree's state.
    pub tree: String,
    /// Changes from the base tree, sorted by path. A rename is a deletion plus an addition, so
    /// both ends are checked against the scope.
    pub changes: Vec<Change>,
}

pub struct Snapshotter {
    worktree: PathBuf,
    /// The worktree's real index, copied before each snapshot.
    index: PathBuf,
    /// Our scratch index (in the run's record folder, never inside the worktree).
    scratch: PathBuf,
}

impl Snapshotter {
    pub fn new(worktree: &Path, worktree_git_dir: &Path, scratch: PathBuf) -> Self {
        Snapshotter {
            worktree: worktree.to_owned(),
            index: worktree_git_dir.join("index"),
            scratch,
        }
    }

    /// Stage the whole worktree into the scratch index and write it as a tree.
    pub fn tree(&self) -> Result<String> {
        match std::fs::copy(&self.index, &self.scratch) {
            Ok(_) => {}
            // An agent may delete the index; git then starts from an empty one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_file(&self.scratch);
            }
            Err(e) => return Err(Error::io_path("copy the index", &self.index, e)),
        }
        let env: [(&str, &OsStr); 1] = [("GIT_INDEX_FILE", self.scratch.as_os_str())];
        let git = Git::in_dir(&self.worktree);
        git.run_opts(
            ["add", "--all", "--", ":/"],
            Opts {
                env: &env,
                ..Opts::default()
            },
        )?;
        let out = git.run_opts(
            ["write-tree"],
            Opts {
                env: &env,
                ..Opts::default()
            },
        )?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }

    /// Make the last snapshot's index the worktree's own, with git's lock protocol (create
    /// `index.lock` exclusively, rename it over `index`), so that a commit records exactly the
    /// snapshotted tree without staging the worktree a second time.
    pub fn install(&self) -> Result<()> {
        use std::io::Write;
        let lock = self.index.with_file_name("index.lock");
        let bytes =
            std::fs::read(&self.scratch).map_err(|e| Error::io_path("read", &self.scratch, e))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::other_hint(
                        format!(
                            "{} exists: another git process is using the run's index",
                            lock.display()
                        ),
                        "if no git process is running in the run's worktree, remove that file",
                    )
                } else {
                    Error::io_path("create", &lock, e)
                }
            })?;
        let written = f
            .write_all(&bytes)
            .and_then(|()| std::fs::rename(&lock, &self.index));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&lock);
            return Err(Error::io_path("replace", &self.index, e));
        }
        Ok(())
    }

    /// Paths that changed since the last snapshot (tracked and untracked-not-ignored), up to
    /// `limit`, without writing any index or tree: `git status` against our scratch index.
    pub fn changed_since_last(&self, limit: usize) -> Result<Vec<String>> {
        let env: [(&str, &OsStr); 1] = [("GIT_INDEX_FILE", self.scratch.as_os_str())];
        let out = Git::in_dir(&self.worktree).run_opts(
            [
                "--no-optional-locks",
                "status",
                "--porcelain=v2",
                "-z",
                "--untracked-files=normal",
                "--ignore-submodules=none",
            ],
            Opts {
                env: &env,
                ..Opts::default()
            },
        )?;
        let mut changed = Vec::new();
        let mut records = split_z(&out);
        while let Some(rec) = records.next() {
            let text = String::from_utf8_lossy(rec);
            let kind = text.split(' ').next().unwrap_or("");
            let path_of =
                |r: &str, fields: usize| r.splitn(fields + 1, ' ').nth(fields).map(str::to_owned);
            let hit = match kind {
                // Untracked, or unmerged: a change either way.
                "?" => text.get(2..).map(str::to_owned),
                "u" => path_of(&text, 10),
                // Ordinary (1) and renamed (2) entries: the second letter of XY is the worktree
                // against our index; the first is our index against HEAD, which is expected.
                "1" | "2" => {
                    let worktree_side = text.as_bytes().get(3).copied().unwrap_or(b'.');
                    let path = path_of(&text, if kind == "1" { 8 } else { 9 });
                    if kind == "2" {
                        // A renamed entry is followed by its original path.
                        records.next();
                    }
                    (worktree_side != b'.').then_some(path).flatten()
                }
                _ => None,
            };
            if let Some(p) = hit {
                changed.push(p);
                if changed.len() >= limit {
                    break;
                }
            }
        }
        Ok(changed)
    }

    pub fn take(&self, base_tree: &str) -> Result<Snapshot> {
        let tree = self.tree()?;
        let changes = diff_trees(&Git::in_dir(&self.worktree), base_tree, &tree)?;
        Ok(Snapshot { tree, changes })
    }
}

/// Paths that differ between two trees, without renames, external diff drivers or textconv.
pub fn diff_trees(git: &Git, from: &str, to: &str) -> Result<Vec<Change>> {
    let out = git.run([
        "diff-tree",
        "-r",
        "-z",
        "--no-renames",
        "--no-ext-diff",
        "--no-textconv",
        "--name-status",
        from,
        to,
    ])?;
    let mut fields = split_z(&out);
    let mut changes = Vec::new();
    while let Some(status) = fields.next() {
        let Some(path) = fields.next() else {
            return Err(Error::other("unexpected end of git diff-tree output"));
        };
        let kind = match status.first() {
            Some(b'A') => ChangeKind::Added,
            Some(b'D') => ChangeKind::Deleted,
            Some(b'T') => ChangeKind::TypeChanged,
            _ => ChangeKind::Modified,
        };
        changes.push(Change {
            path: path_from_bytes(path),
            kind,
        });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changes)
}

/// A unified diff between two trees, for prompts (bounded by the caller).
pub fn patch(git: &Git, from: &str, to: &str) -> Result<Vec<u8>> {
    git.run([
        "diff-tree",
        "-r",
        "-p",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--find-renames",
        from,
        to,
    ])
}

/// Put the worktree's files back to `tree` for the paths of `changes` (made since `tree`): added
/// files are removed, the others restored from `tree`. The index is left alone.
pub fn restore(worktree: &Path, tree: &str, changes: &[Change]) -> Result<()> {
    let mut from_tree: Vec<u8> = Vec::new();
    for c in changes {
        if c.kind == ChangeKind::Added {
            let p = worktree.join(&c.path);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io_path("remove", &p, e)),
            }
        } else {
            use std::os::unix::ffi::OsStrExt;
            from_tree.extend_from_slice(c.path.as_os_str().as_bytes());
            from_tree.push(0);
        }
    }
    if from_tree.is_empty() {
        return Ok(());
    }
    let source = format!("--source={tree}");
    Git::in_dir(worktree).run_opts(
        [
            "restore",
            source.as_str(),
            "--worktree",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
        ],
        Opts {
            stdin: Some(&from_tree),
            ..Opts::default()
        },
    )?;
    Ok(())
}
