//! What a run has changed: the worktree's files (tracked and untracked-not-ignored, plus anything
//! the agent committed itself) as a tree, compared with the base commit.
//!
//! We stage everything into a *copy* of the worktree's index: the copy keeps git's stat cache, so
//! only changed files are re-hashed, and the index the agent sees is never modified (an agent that
//! runs `git diff` between attempts still sees its own unstaged work). The resulting tree id also
//! names the exact state the gates and the verifier judged, which ship and archive reuse.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

pub use super::tree_diff::{Change, ChangeKind, diff_trees};
use super::{Git, Opts, TreeId};
use crate::error::Error;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Tree of the worktree's state.
    pub tree: TreeId,
    /// Changes from the base tree, sorted by path. A rename is a deletion plus an addition, so
    /// both ends are checked against the scope.
    pub changes: Vec<Change>,
}

pub struct Snapshotter {
    worktree: PathBuf,
    git_dir: PathBuf,
    /// The worktree's real index: the agent's to change, so never trusted after [`Self::seed`].
    index: PathBuf,
    /// Our own index (in the run's record folder, never inside the worktree), carried from one
    /// snapshot to the next: skip-worktree or assume-unchanged bits, intent-to-add entries or a
    /// whole index an agent wrote into the worktree's index hide nothing from it.
    scratch: PathBuf,
    /// Whether the worktree's index had its stat data refreshed once it was no longer "racy".
    refreshed: std::cell::Cell<bool>,
    /// Snapshots taken so far: a one-off snapshot gains nothing from a refresh.
    taken: std::cell::Cell<u32>,
    /// Where trees are written without `git write-tree` ([`super::tree_write`]), when the
    /// repository's objects are written the default way.
    trees_here: Option<TreesHere>,
    /// The length of the repository's object ids (SHA-1 unless told otherwise).
    hash_len: usize,
    /// Whether our index held a gitlink when last looked at (`None`: not looked at yet).
    gitlinks_seen: std::cell::Cell<Option<bool>>,
}

/// The repository handle whose object reader confirms existing trees, its objects folder and
/// the length of its object ids.
struct TreesHere {
    repo: Git,
    objects: PathBuf,
    hash_len: usize,
}

fn copy_mtime(from: &Path, to: &Path) -> Result<()> {
    let modified = std::fs::metadata(from)
        .and_then(|m| m.modified())
        .map_err(|e| Error::io_path("read the time of", from, e))?;
    std::fs::File::options()
        .write(true)
        .open(to)
        .and_then(|f| f.set_modified(modified))
        .map_err(|e| Error::io_path("set the time of", to, e))
}

impl Snapshotter {
    pub fn new(worktree: &Path, worktree_git_dir: &Path, scratch: PathBuf) -> Self {
        Snapshotter {
            worktree: worktree.to_owned(),
            git_dir: worktree_git_dir.to_owned(),
            index: worktree_git_dir.join("index"),
            scratch,
            refreshed: std::cell::Cell::new(false),
            taken: std::cell::Cell::new(0),
            trees_here: None,
            hash_len: 20,
            gitlinks_seen: std::cell::Cell::new(None),
        }
    }

    /// Write snapshot trees in-process from now on, through `repo` (a `--git-dir` handle whose
    /// reader is kept) into `common_dir`'s objects, for ids as long as `base` (SHA-1 or
    /// SHA-256), when git would write them the default way (`plain`:
    /// [`super::tree_write::objects_plain`]).
    pub fn write_trees_here(&mut self, repo: &Git, common_dir: &Path, base: &str, plain: bool) {
        self.hash_len = base.len() / 2;
        self.trees_here = plain.then(|| TreesHere {
            repo: repo.clone(),
            objects: common_dir.join("objects"),
            hash_len: base.len() / 2,
        });
    }

    /// Git for the worktree, with its git dir named explicitly.
    pub fn git(&self) -> Git {
        Git::worktree(&self.worktree, &self.git_dir)
    }

    /// Start our own index from the worktree's, while it is still the one git-pipeline's
    /// checkout wrote (before any agent ran).
    pub fn seed(&self) -> Result<()> {
        match std::fs::copy(&self.index, &self.scratch) {
            // The copy must keep the index's mtime: git trusts an entry's cached stat only when
            // the entry is older than its index file ("racy git"). A copy stamped now would make
            // a same-size edit made in the second of the checkout look unchanged.
            Ok(_) => copy_mtime(&self.index, &self.scratch),
            Err(e) => Err(Error::io_path("copy the index", &self.index, e)),
        }
    }

    /// A command on our index: never a split index or an untracked cache an agent turned on.
    fn run_ours(&self, args: &[&str]) -> Result<Vec<u8>> {
        let env: [(&str, &OsStr); 1] = [("GIT_INDEX_FILE", self.scratch.as_os_str())];
        let mut full = vec![
            "-c",
            "core.splitIndex=false",
            "-c",
            "core.untrackedCache=false",
        ];
        full.extend_from_slice(args);
        self.git().run_opts(
            &full,
            Opts {
                env: &env,
                ..Opts::default()
            },
        )
    }

    /// Stage the whole worktree into our index and write it as a tree.
    pub fn tree(&self) -> Result<TreeId> {
        self.tree_with(true)
    }

    /// [`Snapshotter::tree`] for an archive: a submodule whose `.git` names a git dir the slot
    /// did not make keeps its last entry (git does not look inside it) instead of stopping the
    /// archive, so that the rest of the work is saved.
    pub fn tree_for_archive(&self) -> Result<TreeId> {
        self.tree_with(false)
    }

    fn tree_with(&self, strict: bool) -> Result<TreeId> {
        if !self.scratch.exists() {
            // No index of ours (a run made before we kept one, or a worktree found by
            // `clean`): start from the commit the worktree has checked out, never from its
            // index. Every file is read once.
            self.run_ours(&["read-tree", "HEAD"])?;
        } else if self.taken.get() > 0 {
            self.refresh_once();
        }
        self.taken.set(self.taken.get() + 1);
        self.add_all(strict)?;
        if let Some(t) = &self.trees_here
            && let Some(tree) =
                super::tree_write::write_tree(&t.repo, &self.scratch, &t.objects, t.hash_len)
        {
            return Ok(tree);
        }
        let out = self.run_ours(&["write-tree"])?;
        Ok(TreeId::from_git(String::from_utf8_lossy(&out).trim()))
    }

    /// Stage the whole worktree, never letting git look into a gitlink git-pipeline may not run
    /// git in ([`Snapshotter::submodules_sound`]): `strict`, such a gitlink is an error; else
    /// (an archive) it keeps its last entry.
    fn add_all(&self, strict: bool) -> Result<()> {
        let unsound = if self.gitlinks_seen.get() == Some(false) {
            Vec::new()
        } else {
            self.unsound_gitlinks()?
        };
        if strict && let Some(path) = unsound.first() {
            return Err(unsound_gitlink(path));
        }
        self.add_all_except(&unsound)?;
        // A repository a step made is a gitlink now: named at once, before any later git
        // command of ours looks into it.
        let after = self.unsound_gitlinks()?;
        match after.first() {
            Some(path) if strict => Err(unsound_gitlink(path)),
            _ => Ok(()),
        }
    }

    /// `git add --all`, except the gitlinks `except` (paths), which git then does not look into.
    /// `--sparse`: in a sparse checkout, a file the agent wrote outside the cone is part of its
    /// work (plain `add` refuses it); entries left out of the cone stay as they are. A folder
    /// git cannot read is only a warning to `git add`, and its files would silently be missing
    /// from the tree: here it is an error, so the worktree is kept rather than archived without
    /// them.
    fn add_all_except(&self, except: &[Vec<u8>]) -> Result<()> {
        let env: [(&str, &OsStr); 1] = [("GIT_INDEX_FILE", self.scratch.as_os_str())];
        let mut args: Vec<std::ffi::OsString> = [
            "-c",
            "core.splitIndex=false",
            "-c",
            "core.untrackedCache=false",
            "add",
            "--sparse",
            "--all",
            "--",
            ":/",
        ]
        .map(Into::into)
        .to_vec();
        for path in except {
            let mut spec = std::ffi::OsString::from(":(exclude,top,literal)");
            spec.push(super::path_from_bytes(path).as_os_str());
            args.push(spec);
        }
        let out = self.git().output(
            &args,
            Opts {
                env: &env,
                ..Opts::default()
            },
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // What git could not read, by its own lines: `error: open("src/x.rs"): Permission
        // denied` (a file, fatal) and `warning: could not open directory 'd/': ...` (a folder,
        // which git only warns about).
        let named = |start: &str, end: &str| -> Vec<&str> {
            stderr
                .lines()
                .filter_map(|l| l.strip_prefix(start)?.split_once(end).map(|(p, _)| p))
                .collect()
        };
        let unreadable = |what: &str, paths: Vec<&str>| {
            Error::other(format!(
                "{what} in the worktree cannot be read: {}",
                paths.join(", ")
            ))
        };
        if !out.status.success() {
            let files = named("error: open(\"", "\"): Permission denied");
            if !files.is_empty() {
                return Err(unreadable("files", files));
            }
            // `error: invalid path 'src/.GIT/config'`: a name git never tracks (`.git` in any
            // case, `.git` followed by spaces or dots, and on some systems more).
            // Names are the agent's: only plain paths inside the worktree are named (a name
            // with a newline could forge a line of git's output), shown escaped.
            let invalid: Vec<String> = named("error: invalid path '", "'")
                .into_iter()
                .filter(|p| {
                    !p.starts_with('/')
                        && !p.split('/').any(|c| c.is_empty() || c == "..")
                        && self.worktree.join(p).symlink_metadata().is_ok()
                })
                .map(|p| p.escape_debug().to_string())
                .collect();
            if !invalid.is_empty() {
                return Err(Error::other_hint(
                    format!(
                        "the worktree holds paths git cannot track: {}",
                        invalid.join(", ")
                    ),
                    "remove them from the run's worktree (git reserves `.git` in any case); \
                     then abandon the run to archive the rest",
                ));
            }
            return Err(super::failure(&args, &out));
        }
        let folders = named("warning: could not open directory '", "': ");
        if !folders.is_empty() {
            return Err(unreadable("folders", folders));
        }
        Ok(())
    }

    /// An index written in the same second as the checkout leaves every entry "racy", and our
    /// copies keep its time, so each snapshot would re-read every file. Once that second has
    /// passed, refresh the index's stat data the way `git status` does on its own (stat data
    /// only: what is staged does not change); from then on snapshots read only what changed.
    fn refresh_once(&self) {
        if self.refreshed.get() {
            return;
        }
        let settled = std::fs::metadata(&self.scratch)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= std::time::Duration::from_secs(1));
        if !settled {
            return;
        }
        // Exit 1 means "some files changed", which is expected.
        let _ = self.run_ours(&["update-index", "-q", "--refresh"]);
        self.refreshed.set(true);
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

    /// Every submodule our git would look into names the git dir the slot made for it. `git
    /// add --all` and `git status` run a `git status` inside each gitlink of the index whose
    /// folder holds a `.git`, through that `.git`, which a step can rewrite (or make: a
    /// repository of its own, which a snapshot takes in as a gitlink); that status would run
    /// whatever filter the git dir it names configures, outside any sandbox.
    pub fn submodules_sound(&self) -> Result<()> {
        match self.unsound_gitlinks()?.first() {
            Some(path) => Err(unsound_gitlink(path)),
            None => Ok(()),
        }
    }

    /// The gitlinks of our index that git must not look into: checked out (their folder holds
    /// a `.git`), and the `.git` names no git dir the slot made for a submodule, or one of the
    /// submodule's own gitlinks does (git's status inside it looks into those too), or the
    /// slot's submodule git dirs hold something that runs a command.
    fn unsound_gitlinks(&self) -> Result<Vec<Vec<u8>>> {
        let gitlinks = self.gitlinks()?;
        self.gitlinks_seen.set(Some(!gitlinks.is_empty()));
        if gitlinks.is_empty() {
            return Ok(gitlinks);
        }
        let modules = self.git_dir.join("modules");
        let runs_commands = super::worktree::submodule_git_dirs_run_commands(&modules).is_some();
        let modules = modules.canonicalize().ok();
        Ok(gitlinks
            .into_iter()
            .filter(|path| {
                let folder = self.worktree.join(super::path_from_bytes(path));
                // Not checked out: git does not look inside.
                let checked_out = std::fs::symlink_metadata(folder.join(".git")).is_ok();
                let sound = !runs_commands
                    && super::strays::real_folder(&self.worktree, path)
                    && modules
                        .as_deref()
                        .is_some_and(|m| super::strays::sound_checkout(&folder, m, self.hash_len));
                checked_out && !sound
            })
            .collect())
    }

    /// The gitlinks of our index (paths).
    fn gitlinks(&self) -> Result<Vec<Vec<u8>>> {
        let gitlink = super::index_file::GITLINK;
        if let Some(bytes) = super::index_file::read_regular(&self.scratch)
            && let Some(index) = super::index_file::parse(&bytes, self.hash_len)
        {
            return Ok(index
                .entries
                .iter()
                .filter(|e| e.mode == gitlink)
                .map(|e| e.path.to_vec())
                .collect());
        }
        if !self.scratch.exists() {
            return Ok(Vec::new());
        }
        // An index this reader does not parse (a sparse one): git lists it.
        let out = self.run_ours(&["ls-files", "--stage", "-z"])?;
        Ok(super::split_z(&out)
            .filter_map(|e| {
                let (meta, path) = e.split_at(e.iter().position(|b| *b == b'\t')?);
                meta.starts_with(b"160000 ").then(|| path[1..].to_vec())
            })
            .collect())
    }

    /// Submodules (paths) with uncommitted or untracked changes inside them, seen against our
    /// index (which holds every file of the superproject as the last snapshot staged it).
    pub fn dirty_submodules(&self) -> Result<Vec<String>> {
        self.submodules_sound()?;
        let env: [(&str, &OsStr); 1] = [("GIT_INDEX_FILE", self.scratch.as_os_str())];
        super::submodules::dirty(&self.git(), &env)
    }

    /// Paths that changed since the last snapshot (tracked and untracked-not-ignored), up to
    /// `limit`, without writing any index or tree: `git status` against our scratch index.
    pub fn changed_since_last(&self, limit: usize) -> Result<Vec<String>> {
        if self.gitlinks_seen.get() != Some(false) {
            self.submodules_sound()?;
        }
        let env: [(&str, &OsStr); 1] = [("GIT_INDEX_FILE", self.scratch.as_os_str())];
        let out = self.git().run_opts(
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
        Ok(super::status::entries(&out)
            .into_iter()
            .filter(|e| e.worktree_changed)
            .take(limit)
            .map(|e| e.path)
            .collect())
    }

    /// The worktree as a tree, and its changes from `base_tree`, read through `repo` (the
    /// repository's own handle, whose object reader is kept).
    pub fn take(&self, repo: &Git, base_tree: &TreeId) -> Result<Snapshot> {
        let tree = self.tree()?;
        let changes = diff_trees(repo, base_tree, &tree)?;
        Ok(Snapshot { tree, changes })
    }
}

fn unsound_gitlink(path: &[u8]) -> Error {
    Error::other_hint(
        format!(
            "{} in the run's worktree is a repository git-pipeline will not run git in: its .git (or a submodule's inside it) names no git dir the slot made, or the slot's submodule git dirs hold a hook or a setting that runs a command",
            String::from_utf8_lossy(path).escape_debug()
        ),
        "git-pipeline runs no git in a repository a step made or repointed (its config could run commands outside the sandbox); remove that .git from the worktree (the files stay) and resume, or abandon the run (its work is archived without that repository)",
    )
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
pub fn restore(git: &Git, worktree: &Path, tree: &TreeId, changes: &[Change]) -> Result<()> {
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
    git.run_opts(
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
