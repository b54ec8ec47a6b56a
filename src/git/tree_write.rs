//! `git write-tree` of an index git-pipeline's own `git add` has just written, without a git
//! process (about 3 ms of every snapshot, most of it the process's start).
//!
//! The trees are made from the index's entries exactly as git makes them (the same entry
//! format and order); folders the cache tree still holds valid are taken from it, as git does,
//! once the kept reader confirms their trees exist. New trees are written as loose objects the
//! way git writes them by default (a temp file in the object's folder, linked into place, not
//! fsynced); as git does, the blobs the new trees name must exist, and an existing tree is
//! freshened. The cache tree is not written back into the index: a later snapshot rebuilds the
//! folders `git add` invalidated.
//!
//! Anything else is git's: `None` whenever the index is one this reader does not fully
//! understand ([`super::index_file`]), the repository's objects are set up differently
//! ([`objects_plain`]), or the reader is unavailable. The ship's `git commit` makes its tree from
//! the same index itself, and a commit whose tree is not the approved one is never attested.

use std::io::Write;
use std::path::Path;

use sha2::Digest;

use super::index_file::{self, CacheTree, EXECUTABLE, Entry, FILE, GITLINK, SYMLINK};
use super::{Git, TreeId};

/// Whether git writes this repository's loose objects the default way, by the keys of `git
/// config --list` (lower-case): no `core.fsync` or `core.fsyncObjectFiles` asking for them to be
/// synced, no `core.sharedRepository` permissions, no second object format to record, not a
/// partial clone; and no `GIT_OBJECT_DIRECTORY` elsewhere.
pub fn objects_plain(keys: &[String]) -> bool {
    std::env::var_os("GIT_OBJECT_DIRECTORY").is_none()
        && !keys.iter().any(|k| {
            k.starts_with("core.fsync")
                || k == "core.sharedrepository"
                || k == "extensions.compatobjectformat"
                // A partial clone: the kept reader would fetch an id it does not have (a
                // tree about to be written) from the promisor remote; git write-tree never does.
                || k == "extensions.partialclone"
                || (k.starts_with("remote.") && k.ends_with(".promisor"))
        })
}

/// A tree to write: its id and its content (without the object header).
struct NewTree {
    oid: Vec<u8>,
    content: Vec<u8>,
}

struct Build<'a> {
    hash_len: usize,
    made: Vec<NewTree>,
    /// Tree ids taken from the cache tree, to confirm before use.
    reused: Vec<Vec<u8>>,
    /// Blob ids the new trees name, to confirm exist (as git does for the trees it rebuilds).
    blobs: Vec<&'a [u8]>,
    entries: &'a [Entry<'a>],
}

/// git's limit on tree depth (`core.maxTreeDepth`'s default).
const MAX_DEPTH: usize = 2048;

/// The tree of the index at `index_path`, with its new trees written into `objects_dir`, in a
/// repository whose object ids are `hash_len` bytes (20: SHA-1, 32: SHA-256). `None`: ask git.
pub(in crate::git) fn write_tree(
    repo: &Git,
    index_path: &Path,
    objects_dir: &Path,
    hash_len: usize,
) -> Option<TreeId> {
    if hash_len != 20 && hash_len != 32 {
        return None;
    }
    let bytes = index_file::read_regular(index_path)?;
    let index = index_file::parse(&bytes, hash_len)?;
    let mut build = Build {
        hash_len,
        made: Vec::new(),
        reused: Vec::new(),
        blobs: Vec::new(),
        entries: &index.entries,
    };
    let root = build.tree(0..index.entries.len(), 0, index.cache_tree.as_ref(), 0)?;
    // One round trip for every object the result names that must exist, or may already.
    let names: Vec<String> = build
        .reused
        .iter()
        .map(Vec::as_slice)
        .chain(build.blobs.iter().copied())
        .chain(build.made.iter().map(|t| t.oid.as_slice()))
        .map(hex)
        .collect();
    let found = super::batch::lookup(repo, &names, false).ok()??;
    let (reused, rest) = found.split_at(build.reused.len());
    let (blobs, made) = rest.split_at(build.blobs.len());
    if reused
        .iter()
        .any(|f| f.as_ref().is_none_or(|o| o.kind != "tree"))
    {
        return None; // a cache tree naming a tree that is gone: git rebuilds it
    }
    if blobs.iter().any(Option::is_none) {
        return None; // an entry naming a missing object: git says which
    }
    for (tree, exists) in build.made.iter().zip(made) {
        // An existing tree is freshened, as git does, so that a gc does not prune it before
        // a ref names it; a packed one is written loose again.
        if exists.is_none() || !freshen_loose(objects_dir, &tree.oid) {
            write_loose(objects_dir, &tree.oid, b"tree", &tree.content).ok()?;
        }
    }
    Some(TreeId::from_git(hex(&root)))
}

/// Set a loose object's time to now; false when it is not a loose object here.
fn freshen_loose(objects_dir: &Path, oid: &[u8]) -> bool {
    let name = hex(oid);
    std::fs::File::options()
        .write(true)
        .open(objects_dir.join(&name[..2]).join(&name[2..]))
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .is_ok()
}

impl Build<'_> {
    /// The tree of the entries in `range`, which all lie in one folder whose path (with its
    /// trailing `/`) is their first `prefix` bytes.
    fn tree(
        &mut self,
        range: std::ops::Range<usize>,
        prefix: usize,
        cache: Option<&CacheTree>,
        depth: usize,
    ) -> Option<Vec<u8>> {
        if depth > MAX_DEPTH {
            return None;
        }
        if let Some((count, oid)) = cache.and_then(|c| c.valid.as_ref())
            && *count == range.len()
            && oid.len() == self.hash_len
        {
            self.reused.push(oid.clone());
            return Some(oid.clone());
        }
        let mut content = Vec::new();
        let mut i = range.start;
        while i < range.end {
            let rest = self.entries[i].path.get(prefix..)?;
            match rest.iter().position(|b| *b == b'/') {
                None => {
                    let e = &self.entries[i];
                    let mode: &[u8] = match e.mode {
                        FILE => b"100644",
                        EXECUTABLE => b"100755",
                        SYMLINK => b"120000",
                        GITLINK => b"160000",
                        _ => return None,
                    };
                    if e.mode != GITLINK {
                        if e.oid.iter().all(|b| *b == 0) {
                            return None; // the null id: git refuses it
                        }
                        self.blobs.push(e.oid);
                    }
                    push_entry(&mut content, mode, rest, e.oid);
                    i += 1;
                }
                Some(slash) => {
                    let name = &rest[..slash];
                    let child_prefix = prefix + slash + 1;
                    let folder = &self.entries[i].path[..child_prefix];
                    // A file of the folder's name beside it: git refuses such an index.
                    let as_file = &folder[..folder.len() - 1];
                    if self
                        .entries
                        .binary_search_by(|e| e.path[..].cmp(as_file))
                        .is_ok()
                    {
                        return None;
                    }
                    let end = (i..range.end)
                        .find(|&j| !self.entries[j].path.starts_with(folder))
                        .unwrap_or(range.end);
                    let child = cache.and_then(|c| c.children.iter().find(|n| n.name == name));
                    let oid = self.tree(i..end, child_prefix, child, depth + 1)?;
                    push_entry(&mut content, b"40000", name, &oid);
                    i = end;
                }
            }
        }
        let oid = object_id(self.hash_len, b"tree", &content);
        self.made.push(NewTree {
            oid: oid.clone(),
            content,
        });
        Some(oid)
    }
}

fn push_entry(content: &mut Vec<u8>, mode: &[u8], name: &[u8], oid: &[u8]) {
    content.extend_from_slice(mode);
    content.push(b' ');
    content.extend_from_slice(name);
    content.push(0);
    content.extend_from_slice(oid);
}

fn header(kind: &[u8], len: usize) -> Vec<u8> {
    let mut h = kind.to_vec();
    h.push(b' ');
    h.extend_from_slice(len.to_string().as_bytes());
    h.push(0);
    h
}

pub(in crate::git) fn object_id(hash_len: usize, kind: &[u8], content: &[u8]) -> Vec<u8> {
    let h = header(kind, content.len());
    if hash_len == 32 {
        let mut d = sha2::Sha256::new();
        d.update(&h);
        d.update(content);
        d.finalize().to_vec()
    } else {
        let mut d = sha1::Sha1::new();
        d.update(&h);
        d.update(content);
        d.finalize().to_vec()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write one loose object as git does by default: deflated into a read-only temp file in the
/// object's folder, then linked to its name (an object already there is the same object).
fn write_loose(objects_dir: &Path, oid: &[u8], kind: &[u8], content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = hex(oid);
    let dir = objects_dir.join(&name[..2]);
    // Only the fan-out folder, as git: a missing objects folder is not made again here.
    match std::fs::create_dir(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let tmp = dir.join(format!("tmp_obj_{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&tmp)?;
        let mut z = flate2::write::ZlibEncoder::new(file, flate2::Compression::fast());
        z.write_all(&header(kind, content.len()))?;
        z.write_all(content)?;
        z.finish()?;
        match std::fs::hard_link(&tmp, dir.join(&name[2..])) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => std::fs::rename(&tmp, dir.join(&name[2..])),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::git;
    use proptest::prelude::*;
    use std::path::Path;

    use crate::git::testing::TestFile as File;

    /// Names that sort differently as files and as folders ("a.b" < "a/" < "a0").
    fn path() -> impl Strategy<Value = String> {
        let part = prop::sample::select(vec!["a", "a.b", "a-b", "a0", "b", "B", "z"]);
        prop::collection::vec(part, 1..4).prop_map(|p| p.join("/"))
    }

    fn file() -> impl Strategy<Value = File> {
        prop_oneof![
            4 => (0u8..4).prop_map(File::Text),
            1 => (0u8..4).prop_map(File::Exec),
            1 => (0u8..4).prop_map(File::Link),
            1 => Just(File::Submodule),
        ]
    }

    fn stage(d: &Path, files: &[(String, File)], hash_hex: usize) {
        let files: Vec<(&str, &File)> = files.iter().map(|(p, f)| (p.as_str(), f)).collect();
        crate::git::testing::stage_exactly(d, &files, hash_hex);
    }

    /// Write `files` over the worktree where nothing is in the way (a path through a file, or
    /// onto a folder, is skipped); `File::Submodule` removes the path instead.
    fn change(d: &Path, files: &[(String, File)]) {
        for (p, f) in files {
            let full = d.join(p);
            let not_a_folder = |p: &Path| p.symlink_metadata().is_ok_and(|m| !m.is_dir());
            let blocked = Path::new(p)
                .ancestors()
                .skip(1)
                .any(|a| !a.as_os_str().is_empty() && not_a_folder(&d.join(a)));
            if blocked || full.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                continue;
            }
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            let _ = std::fs::remove_file(&full);
            match f {
                File::Text(n) | File::Exec(n) => {
                    std::fs::write(&full, format!("{n}{n}\n")).expect("write");
                }
                File::Link(n) => {
                    std::os::unix::fs::symlink(format!("other{n}"), &full).expect("symlink");
                }
                File::Submodule => {}
            }
        }
    }

    /// Make the committed files older than the index (not "racy": git would hash them again on
    /// the next `add` and drop their folders from the cache tree), then refresh the index.
    fn settle(d: &Path) {
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
        for e in walkdir::WalkDir::new(d)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".git")
            .flatten()
        {
            if e.file_type().is_file() {
                std::fs::File::options()
                    .write(true)
                    .open(e.path())
                    .and_then(|f| f.set_modified(past))
                    .expect("set mtime");
            }
        }
        git(d, &["update-index", "-q", "--refresh"]);
    }

    fn text(out: &std::process::Output) -> String {
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Whatever the index holds (files, executables, symlinks, submodules, names that sort
        /// differently as folders), in index version 2, 3 or 4, SHA-1 or SHA-256, with a cache
        /// tree valid in parts after a commit and a change: the tree written here is the one
        /// `git write-tree` names, and the objects written are sound (`git fsck`).
        #[test]
        fn the_tree_written_here_is_git_write_tree_s(
            committed in prop::collection::vec((path(), file()), 0..12),
            changed in prop::collection::vec((path(), file()), 0..12),
            version in 2u32..5,
            sha256 in any::<bool>(),
        ) {
            let tmp = tempfile::tempdir().expect("tempdir");
            let d = tmp.path();
            let format = if sha256 { "sha256" } else { "sha1" };
            git(d, &["init", "-q", "-b", "main", &format!("--object-format={format}")]);
            let hash_hex = if sha256 { 64 } else { 40 };
            stage(d, &committed, hash_hex);
            git(d, &["commit", "-q", "--allow-empty", "-m", "c"]);
            settle(d);
            // On top of the commit: folders it leaves alone stay valid in the cache tree.
            change(d, &changed);
            git(d, &["add", "-A"]);
            git(d, &["update-index", "--index-version", &version.to_string()]);
            let index = d.join(".git/index");
            let copy = d.join(".git/index.copy");
            std::fs::copy(&index, &copy).expect("copy");
            let repo = Git::at_git_dir(d.join(".git"));
            let ours = write_tree(&repo, &index, &d.join(".git/objects"), hash_hex / 2)
                .expect("an index this reader understands");
            let theirs = std::process::Command::new("git")
                .args(["write-tree"])
                .current_dir(d)
                .env("GIT_INDEX_FILE", &copy)
                .output()
                .expect("git write-tree");
            let theirs = text(&theirs);
            prop_assert_eq!(ours.as_str(), theirs.as_str());
            let fsck = git(d, &["fsck", "--no-dangling", "--strict"]);
            prop_assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stderr));
        }
    }

    /// A folder the cache tree still holds valid is taken from it, not rebuilt (as git does): its
    /// tree must exist, and where it is gone the index is left to git, which rebuilds it.
    #[test]
    fn valid_folders_come_from_the_cache_tree_once_their_trees_are_confirmed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        for f in ["x/f", "y/g"] {
            std::fs::create_dir_all(d.join(f).parent().expect("parent")).expect("mkdir");
            std::fs::write(d.join(f), "1\n").expect("write");
        }
        git(d, &["add", "-A"]);
        git(d, &["commit", "-q", "-m", "c"]);
        settle(d);
        std::fs::write(d.join("x/f"), "2\n").expect("write");
        git(d, &["add", "-A"]);
        let repo = Git::at_git_dir(d.join(".git"));
        let (index, objects) = (d.join(".git/index"), d.join(".git/objects"));
        let y = text(&git(d, &["rev-parse", "HEAD:y"]));
        assert!(write_tree(&repo, &index, &objects, 20).is_some());
        std::fs::remove_file(objects.join(&y[..2]).join(&y[2..])).expect("remove y's tree");
        assert!(
            write_tree(&repo, &index, &objects, 20).is_none(),
            "y is reused, not rebuilt"
        );
    }

    /// A new repository in `d` with the file `f` staged: its handle, index and objects folder.
    fn one_file_staged(d: &Path) -> (Git, std::path::PathBuf, std::path::PathBuf) {
        git(d, &["init", "-q", "-b", "main"]);
        std::fs::write(d.join("f"), "f\n").expect("write");
        git(d, &["add", "f"]);
        let repo = Git::at_git_dir(d.join(".git"));
        (repo, d.join(".git/index"), d.join(".git/objects"))
    }

    /// What git writes and this reader does not fully understand is left to git: unmerged and
    /// intent-to-add entries, a split index.
    #[test]
    fn an_index_it_does_not_fully_understand_is_left_to_git() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        let (repo, index, objects) = one_file_staged(d);
        assert!(write_tree(&repo, &index, &objects, 20).is_some());
        std::fs::write(d.join("new"), "n\n").expect("write");
        git(d, &["add", "-N", "new"]);
        assert!(
            write_tree(&repo, &index, &objects, 20).is_none(),
            "intent-to-add"
        );
        git(d, &["rm", "-q", "--cached", "new"]);
        let blob = text(&git(d, &["hash-object", "-w", "f"]));
        let unmerged = format!("100644 {blob} 1\tf\n100644 {blob} 2\tf\n");
        let out = std::process::Command::new("git")
            .args(["update-index", "--index-info"])
            .current_dir(d)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(unmerged.as_bytes())?;
                c.wait()
            })
            .expect("update-index");
        assert!(out.success());
        assert!(
            write_tree(&repo, &index, &objects, 20).is_none(),
            "unmerged"
        );
        git(d, &["rm", "-q", "--cached", "f"]);
        git(d, &["add", "f"]);
        git(d, &["update-index", "--split-index"]);
        assert!(
            write_tree(&repo, &index, &objects, 20).is_none(),
            "split index"
        );
        assert!(objects_plain(&[]));
        for key in [
            "core.fsync",
            "core.sharedrepository",
            "extensions.partialclone",
            "remote.origin.promisor",
        ] {
            assert!(!objects_plain(&[key.to_owned()]), "{key}");
        }
    }

    /// As git: an entry naming a missing blob is refused (left to git, which names it), an
    /// index that is not a regular file is never read, and a tree that already exists is
    /// freshened, not left for a gc to prune before a ref names it.
    #[test]
    fn missing_blobs_devices_and_existing_trees_are_handled_as_git_does() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        let (repo, index, objects) = one_file_staged(d);
        let tree = write_tree(&repo, &index, &objects, 20).expect("written");
        let loose = |id: &str| objects.join(&id[..2]).join(&id[2..]);
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
        std::fs::File::options()
            .write(true)
            .open(loose(tree.as_str()))
            .and_then(|f| f.set_modified(old))
            .expect("age the tree");
        assert_eq!(write_tree(&repo, &index, &objects, 20), Some(tree.clone()));
        let mtime = std::fs::metadata(loose(tree.as_str()))
            .and_then(|m| m.modified())
            .expect("mtime");
        assert!(mtime > old, "freshened");
        let blob = text(&git(d, &["rev-parse", ":f"]));
        std::fs::remove_file(loose(&blob)).expect("remove the blob");
        assert!(
            write_tree(&repo, &index, &objects, 20).is_none(),
            "missing blob"
        );
        let device = d.join("index-device");
        std::os::unix::fs::symlink("/dev/zero", &device).expect("symlink");
        assert!(
            write_tree(&repo, &device, &objects, 20).is_none(),
            "a device"
        );
    }
}
