//! Reading refs straight from git's "files" ref store (loose ref files and `packed-refs`), for the
//! listings a run takes around every step: a `git for-each-ref` costs a process (~2 ms here), the
//! read costs a few dozen syscalls.
//!
//! Only the plain cases are read here; anything else answers `None` and the caller asks git:
//! another ref store (reftable), a linked worktree's git dir, a symlinked or unparsable ref file,
//! a name git would not accept, a symbolic ref whose target is not a plain ref. Loose refs are read
//! before `packed-refs`, as git does, so that a concurrent `pack-refs` (which writes the packed
//! file first and then deletes the loose ones) never makes a ref look deleted.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::files::{SETTLED_NS, Stamp, now_ns, stamp};

/// Loose ref files as last read, by name, with the stat they had: a listing taken again reads
/// only those whose stat moved (a stat costs one short syscall, a read four). Only files last
/// changed well before they were looked at are kept: a change within the filesystem clock's
/// granularity of an earlier one could leave the stat as it was.
#[derive(Debug, Default)]
pub struct Seen(HashMap<String, (Stamp, RefFile)>);

/// Every ref under `refs/` of the main git dir `git_dir`, with the object it names (a symbolic
/// ref: its target's), sorted by name as `git for-each-ref` lists them; reading again only the
/// loose ref files whose stat moved since `seen` saw them.
pub fn all_again(git_dir: &Path, seen: &mut Seen) -> Option<Vec<(String, String)>> {
    listing(git_dir, seen, now_ns() - SETTLED_NS)
}

/// [`all_again`], keeping in `seen` the files last changed before `settled`.
fn listing(git_dir: &Path, seen: &mut Seen, settled: i128) -> Option<Vec<(String, String)>> {
    if !plain_store(git_dir) {
        return None;
    }
    let mut loose = BTreeMap::new();
    let mut symbolic = Vec::new();
    let mut walk = Walk {
        git_dir,
        out: &mut loose,
        symbolic: &mut symbolic,
        seen: HashMap::new(),
        before: std::mem::take(&mut seen.0),
        settled,
    };
    let walked = walk.folder("refs");
    seen.0 = std::mem::take(&mut walk.seen);
    walked?;
    let mut refs = packed(git_dir)?;
    refs.extend(loose);
    for (name, target) in symbolic {
        let id = refs.get(&target)?.clone();
        refs.insert(name, id);
    }
    Some(refs.into_iter().collect())
}

/// The branch HEAD of `git_dir` is on (`refs/heads/...`, also when unborn), `Some(None)` when it
/// is detached, `None` when git has to say.
pub fn head_branch(git_dir: &Path) -> Option<Option<String>> {
    if !plain_store(git_dir) || !plain_store(&common_dir(git_dir)?) {
        return None;
    }
    match read_ref_file(&git_dir.join("HEAD"))? {
        RefFile::Id(_) => Some(None),
        RefFile::Symbolic(target) => {
            // git follows a branch that is itself a symbolic ref to where it ends: that is
            // for git to say (`symbolic-ref` follows the chain).
            let common = common_dir(git_dir)?;
            let file = common.join(&target);
            match std::fs::symlink_metadata(&file) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Some(target)),
                Ok(m) if m.file_type().is_file() => match read_ref_file(&file)? {
                    RefFile::Id(_) => Some(Some(target)),
                    RefFile::Symbolic(_) => None,
                },
                _ => None,
            }
        }
    }
}

/// A git dir whose refs are files: not a reftable store.
fn plain_store(git_dir: &Path) -> bool {
    git_dir.join("HEAD").is_file() && !git_dir.join("reftable").exists()
}

/// The common dir of `git_dir`: itself for a main git dir, its `commondir` for a worktree's.
fn common_dir(git_dir: &Path) -> Option<std::path::PathBuf> {
    match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => Some(git_dir.join(text.trim_end_matches('\n'))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(git_dir.to_path_buf()),
        Err(_) => None,
    }
}

#[derive(Debug, Clone)]
enum RefFile {
    Id(String),
    Symbolic(String),
}

/// A loose ref file: `<hex id>\n` or `ref: <target>\n`; `None` for anything else (a symlink,
/// other content), which git judges itself.
fn read_ref_file(path: &Path) -> Option<RefFile> {
    read_ref_file_stat(path).map(|(_, file)| file)
}

/// [`read_ref_file`], with the stat of the file it read (from the same open).
fn read_ref_file_stat(path: &Path) -> Option<(std::fs::Metadata, RefFile)> {
    let (meta, bytes) = crate::files::read_regular(path, crate::files::Follow::No)?;
    Some((meta, parse_ref(&bytes)?))
}

fn parse_ref(bytes: &[u8]) -> Option<RefFile> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?;
    if let Some(target) = text.strip_prefix("ref: ") {
        return (target.starts_with("refs/") && valid_ref_name(target))
            .then(|| RefFile::Symbolic(target.to_owned()));
    }
    is_id(text).then(|| RefFile::Id(text.to_owned()))
}

fn is_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

struct Walk<'a> {
    git_dir: &'a Path,
    out: &'a mut BTreeMap<String, String>,
    symbolic: &'a mut Vec<(String, String)>,
    /// What this listing read, for the next.
    seen: HashMap<String, (Stamp, RefFile)>,
    /// What the last listing read.
    before: HashMap<String, (Stamp, RefFile)>,
    /// Files whose ctime is before this (ns since the epoch) are kept in `seen`.
    settled: i128,
}

impl Walk<'_> {
    fn folder(&mut self, prefix: &str) -> Option<()> {
        let entries = match std::fs::read_dir(self.git_dir.join(prefix)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix == "refs" => {
                return Some(());
            }
            Err(_) => return None,
        };
        for entry in entries {
            let entry = entry.ok()?;
            let name = format!("{prefix}/{}", entry.file_name().to_str()?);
            let kind = entry.file_type().ok()?;
            if kind.is_dir() {
                self.folder(&name)?;
                continue;
            }
            // A ref being updated right now: its lock file, never a ref.
            if name.ends_with(".lock") {
                continue;
            }
            if !valid_ref_name(&name) {
                return None;
            }
            // Relative to the open folder, not followed: one short lookup. A file read again is
            // kept with the stat of the very file read (the folder may have been swapped since).
            let now = stamp(&entry.metadata().ok()?);
            let (kept, file) = match self.before.remove(&name) {
                Some((s, file)) if s == now => (s, file),
                _ => {
                    let (meta, file) = read_ref_file_stat(&entry.path())?;
                    (stamp(&meta), file)
                }
            };
            if kept.2 < self.settled {
                self.seen.insert(name.clone(), (kept, file.clone()));
            }
            match file {
                RefFile::Id(id) => {
                    self.out.insert(name, id);
                }
                RefFile::Symbolic(target) => self.symbolic.push((name, target)),
            }
        }
        Some(())
    }
}

/// The refs of `packed-refs` (none when there is no such file), read as strictly as git reads
/// it: the header only first, a peeled line only after a ref, every line ended by `\n`, no name
/// twice. Anything else is for git to judge.
fn packed(git_dir: &Path) -> Option<BTreeMap<String, String>> {
    let text = match std::fs::read(git_dir.join("packed-refs")) {
        Ok(bytes) => String::from_utf8(bytes).ok()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(BTreeMap::new()),
        Err(_) => return None,
    };
    let mut refs = BTreeMap::new();
    if text.is_empty() {
        return Some(refs);
    }
    let body = text.strip_suffix('\n')?;
    let mut after_ref = false;
    for (i, line) in body.split('\n').enumerate() {
        if line.contains('\r') {
            return None;
        }
        if line.starts_with('#') {
            if i != 0 {
                return None;
            }
            continue;
        }
        if let Some(peeled) = line.strip_prefix('^') {
            if !after_ref || !is_id(peeled) {
                return None;
            }
            after_ref = false;
            continue;
        }
        let (id, name) = line.split_once(' ')?;
        if !is_id(id) || !name.starts_with("refs/") || !valid_ref_name(name) {
            return None;
        }
        if refs.insert(name.to_owned(), id.to_owned()).is_some() {
            return None;
        }
        after_ref = true;
    }
    Some(refs)
}

/// Whether git accepts `name` as a full ref name (`git check-ref-format`'s rules).
pub fn valid_ref_name(name: &str) -> bool {
    if name.is_empty() || name == "@" || name.ends_with('/') || name.ends_with('.') {
        return false;
    }
    if name.contains("@{") || name.contains("..") {
        return false;
    }
    name.split('/').all(|part| {
        !part.is_empty()
            && !part.starts_with('.')
            && !part.ends_with(".lock")
            && part.bytes().all(|b| {
                b >= 0x20
                    && b != 0x7f
                    && !matches!(b, b' ' | b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\')
            })
    })
}

/// Whether git accepts `name` as a branch name (`git check-ref-format --branch`).
pub fn valid_branch_name(name: &str) -> bool {
    !name.starts_with('-') && name != "HEAD" && valid_ref_name(&format!("refs/heads/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::git;
    use proptest::prelude::*;

    fn all(git_dir: &Path) -> Option<Vec<(String, String)>> {
        all_again(git_dir, &mut Seen::default())
    }

    /// A listing taken again reads a ref file again whenever its stat moved: also when it was
    /// rewritten in place to the same length with its mtime put back (its ctime still moved).
    /// A file changed within the last seconds is never kept, whatever its stat.
    #[test]
    fn a_ref_rewritten_in_place_is_read_again() {
        let (tmp, a, b) = repo();
        let git_dir = tmp.path().join(".git");
        let file = git_dir.join("refs/heads/main");
        let mut seen = Seen::default();
        let everything = now_ns() + 60_000_000_000;
        let first = listing(&git_dir, &mut seen, everything).expect("read");
        assert!(first.contains(&("refs/heads/main".to_owned(), b.clone())));
        assert!(
            seen.0.contains_key("refs/heads/main"),
            "kept for the next listing"
        );
        let mtime = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::write(&file, format!("{a}\n")).expect("rewrite");
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(mtime))
            .expect("mtime back");
        let again = listing(&git_dir, &mut seen, everything).expect("read");
        assert!(
            again.contains(&("refs/heads/main".to_owned(), a.clone())),
            "{again:?}"
        );
        assert_eq!(again, for_each_ref(tmp.path()));
        let mut fresh = Seen::default();
        all_again(&git_dir, &mut fresh).expect("read");
        assert!(fresh.0.is_empty(), "just written: not kept");
    }

    fn for_each_ref(dir: &Path) -> Vec<(String, String)> {
        let out = git(
            dir,
            &["for-each-ref", "--format=%(refname)%00%(objectname)"],
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\0'))
            .map(|(n, o)| (n.to_owned(), o.to_owned()))
            .collect()
    }

    fn repo() -> (tempfile::TempDir, String, String) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        git(d, &["commit", "-q", "--allow-empty", "-m", "one"]);
        git(d, &["commit", "-q", "--allow-empty", "-m", "two"]);
        let id = |rev: &str| {
            String::from_utf8_lossy(&git(d, &["rev-parse", rev]).stdout)
                .trim()
                .to_owned()
        };
        let (a, b) = (id("HEAD~1"), id("HEAD"));
        (tmp, a, b)
    }

    /// One change to the ref store, as a person or a tool makes it with git.
    #[derive(Debug, Clone)]
    enum Op {
        Set(String, bool),
        Delete(String),
        Pack,
        Symbolic(String, String),
        Tag(String),
    }

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "refs/heads/main",
            "refs/heads/pipeline/a",
            "refs/heads/pipeline/b/integration",
            "refs/notes/pipeline",
            "refs/remotes/origin/main",
            "refs/tags/v1",
            "refs/pipeline/archive/x",
            "refs/stash",
        ])
        .prop_map(str::to_owned)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (name(), any::<bool>()).prop_map(|(n, first)| Op::Set(n, first)),
            name().prop_map(Op::Delete),
            Just(Op::Pack),
            (name(), name()).prop_map(|(a, b)| Op::Symbolic(a, b)),
            name().prop_map(Op::Tag),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever git did to the refs (loose, packed, deleted after packing, symbolic,
        /// annotated tags with their peeled lines), the listing read from the files is git's,
        /// or git is asked.
        #[test]
        fn the_listing_read_from_files_is_git_s(ops in prop::collection::vec(op(), 1..12)) {
            let (tmp, a, b) = repo();
            let d = tmp.path();
            for op in &ops {
                match op {
                    Op::Set(n, first) => {
                        git(d, &["update-ref", n, if *first { &a } else { &b }]);
                    }
                    Op::Delete(n) => {
                        git(d, &["update-ref", "-d", n]);
                    }
                    Op::Pack => {
                        git(d, &["pack-refs", "--all"]);
                    }
                    Op::Symbolic(from, to) if from != to => {
                        git(d, &["symbolic-ref", from, to]);
                    }
                    Op::Symbolic(..) => {}
                    Op::Tag(n) => {
                        let short = n.rsplit('/').next().unwrap_or("t");
                        git(d, &["tag", "-f", "-a", "-m", "t", short, &b]);
                    }
                }
            }
            let ours = all(&d.join(".git"));
            let theirs = for_each_ref(d);
            if let Some(ours) = ours {
                prop_assert_eq!(ours, theirs);
            }
        }

        /// Branch names git accepts and refuses, judged the same way.
        #[test]
        fn branch_names_are_judged_as_git_judges_them(
            name in "[a-z./@{}~^:?*\\[\\\\ -]{0,12}"
        ) {
            let tmp = tempfile::tempdir().expect("tempdir");
            let out = git(tmp.path(), &["check-ref-format", "--branch", &name]);
            prop_assert_eq!(valid_branch_name(&name), out.status.success(), "{:?}", name);
        }
    }

    #[test]
    fn plain_refs_are_read_and_other_stores_are_left_to_git() {
        let (tmp, a, _) = repo();
        let d = tmp.path();
        git(d, &["update-ref", "refs/heads/x", &a]);
        git(
            d,
            &["symbolic-ref", "refs/remotes/origin/HEAD", "refs/heads/x"],
        );
        git(d, &["pack-refs", "--all"]);
        git(d, &["update-ref", "refs/heads/y", &a]);
        let listing = all(&d.join(".git")).expect("plain refs are read");
        assert_eq!(listing, for_each_ref(d));
        assert!(
            listing
                .iter()
                .any(|(n, id)| n == "refs/remotes/origin/HEAD" && *id == a)
        );
        assert_eq!(
            head_branch(&d.join(".git")),
            Some(Some("refs/heads/main".to_owned()))
        );
        git(d, &["checkout", "-q", "--detach"]);
        assert_eq!(head_branch(&d.join(".git")), Some(None));
        // A ref file git would not read as a ref: git decides.
        std::fs::write(d.join(".git/refs/heads/odd"), "not an id\n").expect("write");
        assert_eq!(all(&d.join(".git")), None);
        std::fs::remove_file(d.join(".git/refs/heads/odd")).expect("remove");
        // A lock file of an update in progress is no ref.
        std::fs::write(d.join(".git/refs/heads/z.lock"), format!("{a}\n")).expect("write");
        assert_eq!(all(&d.join(".git")), Some(for_each_ref(d)));
        // A ref to an object the repository does not have: listed, as git lists it.
        std::fs::write(
            d.join(".git/refs/heads/gone"),
            format!("{}\n", "1".repeat(40)),
        )
        .expect("write");
        let repo = crate::git::Git::at_git_dir(d.join(".git"));
        assert_eq!(crate::git::refs::all(&repo).expect("list"), for_each_ref(d));
        std::fs::remove_file(d.join(".git/refs/heads/gone")).expect("remove");
        // packed-refs as git would not read it: git decides.
        let packed_file = d.join(".git/packed-refs");
        let good = std::fs::read_to_string(&packed_file).expect("packed");
        std::fs::write(&packed_file, good.replace('\n', "\r\n")).expect("write");
        assert_eq!(all(&d.join(".git")), None);
        std::fs::write(&packed_file, format!("{good}# a comment later\n")).expect("write");
        assert_eq!(all(&d.join(".git")), None);
        std::fs::write(&packed_file, &good).expect("write");
        // A branch that is itself a symbolic ref: git follows it, so git says where HEAD is.
        git(d, &["checkout", "-q", "main"]);
        std::fs::write(d.join(".git/refs/heads/main"), "ref: refs/heads/x\n").expect("write");
        assert_eq!(head_branch(&d.join(".git")), None);
        std::fs::write(d.join(".git/refs/heads/main"), format!("{a}\n")).expect("write");
        // Another ref store: git decides.
        std::fs::create_dir(d.join(".git/reftable")).expect("mkdir");
        assert_eq!(all(&d.join(".git")), None);
        assert_eq!(head_branch(&d.join(".git")), None);
    }
}
