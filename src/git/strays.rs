//! What `git clean -ffdx` never removes from a reused slot, found and removed in-process before
//! the slot's checkout:
//! - a `.git` below the top (a file or a folder): git lists no entry of that name, so one an
//!   agent planted inside a tracked folder would outlive every reset, and any git the next run
//!   started in that folder (a gate's `git describe`) would read its config and hooks;
//! - the contents of a submodule folder that is not the checkout git-pipeline made: its `.git`
//!   missing, or naming any git dir but the slot's own (`<admin>/modules/...`), where `git
//!   submodule update --force` would otherwise check out into whatever repository it names.
//!
//! Kept caches (`run.caches`) are carried over as they are and not looked into, untracked
//! folders go whole with `git clean -ffdx` (a repository in one too), and a submodule's own
//! checkout is left to git (`submodule update --force`, then `git clean` in it).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::clean::Keep;
use super::index_file;
use crate::error::{Error, Result};

/// What a slot held beyond what a checkout makes, found by [`find`].
#[derive(Debug, Default)]
pub struct Found {
    /// Entries to remove: planted `.git` entries, and everything in submodule folders whose
    /// `.git` is not the slot's own.
    pub remove: Vec<PathBuf>,
    /// Submodule folders (paths from the top) whose `.git` is the slot's own: checked out by
    /// git, and looked at again once the new base's index says whether they stay submodules.
    pub submodules: Vec<Vec<u8>>,
}

/// Walk `worktree` against the index its last checkout wrote (`paths`: path and mode, in index
/// order; `None` when there is no index to trust, and then no `.git` below the top is kept).
/// `modules` is the slot's `<admin>/modules`.
pub fn find(
    worktree: &Path,
    paths: Option<&[(&[u8], u32)]>,
    keep: &[String],
    modules: &Path,
    hash_len: usize,
) -> Result<Found> {
    let walk = Walk {
        paths,
        hash_len,
        // An unparsed pattern names no folder here: such a cache is looked into (slower, never
        // wrong).
        keep: keep.iter().filter_map(|k| Keep::parse(k)).collect(),
        modules: modules.canonicalize().ok(),
    };
    let mut found = Found::default();
    walk.folder(worktree, &[], &mut found)?;
    Ok(found)
}

/// Remove what [`find`] found (symlinks themselves, never what they name).
pub fn remove(found: &[PathBuf]) -> Result<()> {
    for p in found {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue; // gone with a folder removed before it
        };
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
        removed.map_err(|e| Error::io_path("remove", p, e))?;
    }
    Ok(())
}

/// The submodule folders of `submodules` that the checkout just made (its index at `index`)
/// no longer has as submodules, or has as submodules git will not check out (no
/// `.gitmodules`): `(folders to empty, paths that are no submodule now)`. Only real folders,
/// reached through real folders: where the new base put a symlink, git replaced the folder, and
/// nothing is looked at through it. A `None` index answers every folder as no submodule now.
pub fn after_checkout(
    worktree: &Path,
    index: &Path,
    hash_len: usize,
    submodules: &[Vec<u8>],
) -> (Vec<PathBuf>, Vec<Vec<u8>>) {
    let (mut empty, mut gone) = (Vec::new(), Vec::new());
    if submodules.is_empty() {
        return (empty, gone);
    }
    let bytes = index_file::read_regular(index);
    let parsed = bytes
        .as_deref()
        .and_then(|b| index_file::parse(b, hash_len));
    let checked_out = worktree.join(".gitmodules").exists();
    for s in submodules {
        if !real_folder(worktree, s) {
            continue;
        }
        let still = parsed.as_ref().is_some_and(|p| {
            p.entries
                .binary_search_by(|e| e.path.as_ref().cmp(s.as_slice()))
                .is_ok_and(|i| p.entries[i].mode == index_file::GITLINK)
        });
        match (still, checked_out) {
            (true, true) => {}
            (true, false) => empty.push(worktree.join(OsStr::from_bytes(s))),
            (false, _) => gone.push(s.clone()),
        }
    }
    (empty, gone)
}

/// Whether `rel` (a path from the top of `worktree`) is a folder, and so is every folder on
/// the way to it: no symlink anywhere.
pub fn real_folder(worktree: &Path, rel: &[u8]) -> bool {
    let mut at = worktree.to_path_buf();
    for part in rel.split(|b| *b == b'/') {
        if part.is_empty() || part == b"." || part == b".." {
            return false;
        }
        at.push(OsStr::from_bytes(part));
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => {}
            _ => return false,
        }
    }
    true
}

/// The entries of `folder` (for a folder to be emptied).
pub fn entries_of(folder: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(folder).map_err(|e| Error::io_path("read", folder, e))?;
    read.map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io_path("read", folder, e))
}

/// The git dir a submodule folder's `.git` file names, when it is one the slot made: a folder
/// with a `HEAD` under `modules` (canonical), all of which
/// [`super::worktree::submodule_git_dirs_run_commands`] looks into. `folder/.git` must be a
/// file (not a symlink, not a folder), read as git reads it.
pub fn own_submodule_git_dir(folder: &Path, modules: &Path) -> Option<PathBuf> {
    let dotgit = folder.join(".git");
    let (_, bytes) = crate::files::read_regular(&dotgit, crate::files::Follow::No)?;
    let target = folder
        .join(super::pointer_path(&bytes, "gitdir: ")?)
        .canonicalize()
        .ok()?;
    let inside = target.strip_prefix(modules).ok()?;
    (!inside.as_os_str().is_empty() && target.join("HEAD").is_file()).then_some(target)
}

/// How deep submodules inside submodules are followed before git-pipeline refuses to look.
pub(super) const SUBMODULE_DEPTH: usize = 8;

/// Whether the submodule checkout `folder` is one git may look into: its `.git` names a git
/// dir under `modules`, and each gitlink of that git dir's index whose folder holds a `.git`
/// is such a checkout in turn (under the git dir's own `modules`), `depth` levels down.
pub fn sound_checkout(folder: &Path, modules: &Path, hash_len: usize) -> bool {
    sound_checkout_to(folder, modules, hash_len, SUBMODULE_DEPTH)
}

fn sound_checkout_to(folder: &Path, modules: &Path, hash_len: usize, depth: usize) -> bool {
    let Some(git_dir) = own_submodule_git_dir(folder, modules) else {
        return false;
    };
    let index = git_dir.join("index");
    if std::fs::symlink_metadata(&index).is_err() {
        return true; // nothing checked out inside
    }
    let Some(bytes) = super::index_file::read_regular(&index) else {
        return false;
    };
    let Some(parsed) = super::index_file::parse(&bytes, hash_len) else {
        return false;
    };
    let nested = git_dir.join("modules").canonicalize().ok();
    parsed
        .entries
        .iter()
        .filter(|e| e.mode == super::index_file::GITLINK)
        .all(|e| {
            let inner = folder.join(super::path_from_bytes(&e.path));
            if std::fs::symlink_metadata(inner.join(".git")).is_err() {
                return true;
            }
            depth > 0
                && real_folder(folder, &e.path)
                && nested
                    .as_deref()
                    .is_some_and(|m| sound_checkout_to(&inner, m, hash_len, depth - 1))
        })
}

struct Walk<'a> {
    paths: Option<&'a [(&'a [u8], u32)]>,
    hash_len: usize,
    keep: Vec<Keep>,
    modules: Option<PathBuf>,
}

impl Walk<'_> {
    fn gitlink(&self, path: &[u8]) -> bool {
        self.paths.is_some_and(|paths| {
            paths
                .binary_search_by(|(p, _)| (*p).cmp(path))
                .is_ok_and(|i| paths[i].1 == index_file::GITLINK)
        })
    }

    /// Whether `folder/.git` is a file naming a git dir the slot made (in its own modules
    /// folder), and so is every `.git` of the submodules inside it.
    fn own_checkout(&self, folder: &Path) -> bool {
        self.modules
            .as_ref()
            .is_some_and(|m| sound_checkout(folder, m, self.hash_len))
    }

    fn folder(&self, dir: &Path, rel: &[u8], found: &mut Found) -> Result<()> {
        let read = std::fs::read_dir(dir).map_err(|e| Error::io_path("read", dir, e))?;
        for entry in read {
            let entry = entry.map_err(|e| Error::io_path("read", dir, e))?;
            let name = entry.file_name();
            let name = name.as_bytes();
            if rel.is_empty() && name == b".git" {
                continue; // the worktree's own pointer to its git dir
            }
            // git treats every case of the name as its own (and refuses to track one).
            if name.eq_ignore_ascii_case(b".git") {
                found.remove.push(entry.path());
                continue;
            }
            // Never followed: a symlink to a folder is an entry, as git sees it.
            let kind = entry
                .file_type()
                .map_err(|e| Error::io_path("read", &entry.path(), e))?;
            if !kind.is_dir() {
                continue;
            }
            let mut path = rel.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            if self.gitlink(&path) {
                if self.own_checkout(&entry.path()) {
                    found.submodules.push(path);
                } else {
                    // A new checkout has this folder empty, or git's own checkout in it.
                    found.remove.extend(entries_of(&entry.path())?);
                }
                continue;
            }
            // With an index: only folders holding tracked paths, caches too (a committed
            // `vendor/`, a source package named `build`): an untracked folder goes whole with
            // git clean, a repository in it too (`-ff`), and an untracked cache is carried over
            // as it is. Without one: everything but the caches.
            let descend = match self.paths {
                Some(paths) => super::clean::holds(paths, &path),
                None => !self.keep.iter().any(|k| k.matches(&path, name)),
            };
            if !descend {
                continue;
            }
            self.folder(&entry.path(), &path, found)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::git;

    fn rel(top: &Path, found: &[PathBuf]) -> Vec<String> {
        let mut v: Vec<String> = found
            .iter()
            .map(|p| p.strip_prefix(top).expect("inside").display().to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn planted_git_entries_and_foreign_submodule_contents_are_found_and_nothing_else() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = crate::git::testing::repo_with_a_commit(tmp.path(), "repo");
        let modules = tmp.path().join("admin/modules");
        std::fs::create_dir_all(modules.join("own")).expect("mkdir");
        std::fs::write(modules.join("own/HEAD"), "ref: refs/heads/main\n").expect("HEAD");
        for f in ["src/lib.rs", "docs/a.md"] {
            std::fs::create_dir_all(d.join(f).parent().expect("parent")).expect("mkdir");
            std::fs::write(d.join(f), "x").expect("write");
        }
        git(&d, &["add", "-A"]);
        let oid = String::from_utf8(git(&d, &["rev-parse", "HEAD"]).stdout).expect("utf8");
        for sub in ["own", "foreign"] {
            let cacheinfo = format!("160000,{},{sub}", oid.trim());
            git(&d, &["update-index", "--add", "--cacheinfo", &cacheinfo]);
        }
        git(&d, &["commit", "-q", "-m", "tracked"]);
        let mkdir = |p: &str| std::fs::create_dir_all(d.join(p)).expect("mkdir");
        let write = |p: &str| std::fs::write(d.join(p), "planted").expect("write");
        mkdir("src/.git/hooks");
        write("docs/.GIT");
        mkdir("untracked/deeper/.git"); // git clean's: the untracked folder goes whole
        mkdir("target/debug/.git"); // a kept cache: carried over as it is
        std::os::unix::fs::symlink(tmp.path(), d.join("docs/lnk")).expect("symlink");
        mkdir("own/inner/.git"); // inside the slot's own submodule checkout: git's
        std::fs::write(
            d.join("own/.git"),
            format!("gitdir: {}\n", modules.join("own").display()),
        )
        .expect("pointer");
        mkdir("foreign/src");
        write("foreign/src/f.rs");
        std::fs::write(d.join("foreign/.git"), "gitdir: /somewhere/else\n").expect("pointer");
        let index = std::fs::read(d.join(".git/index")).expect("index");
        let parsed = index_file::parse(&index, 20).expect("parsed");
        let paths: Vec<(&[u8], u32)> = parsed
            .entries
            .iter()
            .map(|e| (e.path.as_ref(), e.mode))
            .collect();
        let keep = ["target/".to_owned()];
        let found = find(&d, Some(&paths), &keep, &modules, 20).expect("walk");
        assert_eq!(
            rel(&d, &found.remove),
            ["docs/.GIT", "foreign/.git", "foreign/src", "src/.git",]
        );
        assert_eq!(found.submodules, [b"own".to_vec()]);
        // With no index to trust, no submodule is the slot's own.
        let blind = find(&d, None, &keep, &modules, 20).expect("walk");
        let blind_found = rel(&d, &blind.remove);
        assert!(blind_found.contains(&"own/.git".to_owned()));
        assert!(blind_found.contains(&"untracked/deeper/.git".to_owned()));
        assert!(blind.submodules.is_empty());
        // Removed: the planted entries, never what a symlink names.
        std::fs::remove_file(d.join("docs/lnk")).expect("rm");
        std::os::unix::fs::symlink(tmp.path().join("admin"), d.join("src/.git/hooks/x"))
            .expect("symlink");
        remove(&found.remove).expect("removed");
        let again = find(&d, Some(&paths), &keep, &modules, 20).expect("walk");
        assert!(again.remove.is_empty(), "{:?}", again.remove);
        assert!(modules.join("own").is_dir(), "a symlink's target stays");
        assert!(d.join("target/debug/.git").is_dir());
        assert!(d.join("foreign").is_dir() && d.join("src/lib.rs").is_file());
    }
}
