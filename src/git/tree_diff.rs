//! `git diff-tree -r --raw --no-renames` between two trees, computed from their tree objects as
//! the kept reader ([`super::batch`]) gives them: a run compares its snapshot with its base after
//! every attempt, and walking only the folders whose ids differ reads a handful of objects where
//! a new git process costs more than the whole walk. Entries are read as git reads them (modes
//! made canonical, a folder sorted as its name plus `/`), so a file that became a folder is a
//! deletion and additions, as in git. A proptest holds the answers to git's own.

use std::path::PathBuf;

use serde::Serialize;

use super::objects::{hex, tree_entries};
use super::{Git, path_from_bytes, split_z};
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
    /// The mode after the change (`120000` for a symlink), or the old mode of a deletion.
    pub mode: u32,
}

impl Change {
    pub fn is_symlink(&self) -> bool {
        self.mode == 0o120000 && self.kind != ChangeKind::Deleted
    }
}

/// Paths that differ between two trees, without renames, external diff drivers or textconv.
pub fn diff_trees(git: &Git, from: &str, to: &str) -> Result<Vec<Change>> {
    if let Some(changes) = changes(git, from, to)? {
        return Ok(changes);
    }
    let out = git.run([
        "diff-tree",
        "-r",
        "-z",
        "--no-renames",
        "--no-ext-diff",
        "--no-textconv",
        "--raw",
        from,
        to,
    ])?;
    let mut fields = split_z(&out);
    let mut changes = Vec::new();
    // ":<old mode> <new mode> <old id> <new id> <status>" then the path.
    while let Some(meta) = fields.next() {
        let Some(path) = fields.next() else {
            return Err(Error::other("unexpected end of git diff-tree output"));
        };
        let meta = String::from_utf8_lossy(meta);
        let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        let [old_mode, new_mode, _, _, status] = parts.as_slice() else {
            return Err(Error::other(format!(
                "unexpected git diff-tree line: {meta}"
            )));
        };
        let kind = match status.as_bytes().first() {
            Some(b'A') => ChangeKind::Added,
            Some(b'D') => ChangeKind::Deleted,
            Some(b'T') => ChangeKind::TypeChanged,
            _ => ChangeKind::Modified,
        };
        let mode_text = if kind == ChangeKind::Deleted {
            old_mode
        } else {
            new_mode
        };
        changes.push(Change {
            path: path_from_bytes(path),
            kind,
            mode: u32::from_str_radix(mode_text, 8).unwrap_or(0),
        });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changes)
}

/// One entry of a tree: its name, its canonical mode and its raw id.
type Entry = (Vec<u8>, u32, Vec<u8>);

const TREE: u32 = 0o040000;
const TYPE: u32 = 0o170000;

/// A mode as git reads it from a tree (`canon_mode`): a regular file is 644 or 755 by its owner's
/// execute bit, a folder, a symlink, and anything else a submodule.
fn canon_mode(mode: u32) -> u32 {
    match mode & TYPE {
        0o100000 => 0o100000 | if mode & 0o100 != 0 { 0o755 } else { 0o644 },
        0o120000 => 0o120000,
        TREE => TREE,
        _ => 0o160000,
    }
}

/// The name git sorts an entry by: a folder as if its name ended in `/`.
fn sort_key(e: &Entry) -> Vec<u8> {
    let mut k = e.0.clone();
    if e.1 == TREE {
        k.push(b'/');
    }
    k
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        return name.to_vec();
    }
    let mut p = prefix.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// The changed paths from `from` to `to` (trees or commits), sorted by path; `None` when the
/// kept reader cannot serve or an object is not a tree it can read: the caller then asks git,
/// which says what is wrong in its own words.
fn changes(git: &Git, from: &str, to: &str) -> Result<Option<Vec<Change>>> {
    // Pairs of the same folder on both sides, by path; `None` where one side has none.
    let mut level: Vec<(Vec<u8>, Option<String>, Option<String>)> = vec![(
        Vec::new(),
        Some(format!("{from}^{{tree}}")),
        Some(format!("{to}^{{tree}}")),
    )];
    let mut out: Vec<(Vec<u8>, ChangeKind, u32)> = Vec::new();
    let mut budget = super::batch::Budget::default();
    while !level.is_empty() {
        if !budget.level() {
            return Ok(None);
        }
        // Each tree is read once per level, however many folders hold it (vendored copies).
        let mut names: Vec<String> = level
            .iter()
            .flat_map(|(_, a, b)| [a.clone(), b.clone()])
            .flatten()
            .collect();
        names.sort();
        names.dedup();
        let Some(found) = super::batch::lookup(git, &names, true)? else {
            return Ok(None);
        };
        let mut trees: std::collections::HashMap<&str, Vec<Entry>> =
            std::collections::HashMap::new();
        for (name, object) in names.iter().zip(found) {
            let Some(tree) = object.filter(|o| o.kind == "tree") else {
                return Ok(None);
            };
            let Some(mut entries) = tree_entries(&tree.body, tree.id.len() / 2)
                .map(|(m, n, i)| {
                    let mode = std::str::from_utf8(m)
                        .ok()
                        .and_then(|m| u32::from_str_radix(m, 8).ok())?;
                    Some((n.to_vec(), canon_mode(mode), i.to_vec()))
                })
                .collect::<Option<Vec<Entry>>>()
            else {
                return Ok(None);
            };
            entries.sort_by_key(sort_key);
            trees.insert(name, entries);
        }
        let none = Vec::new();
        let side = |named: &Option<String>| match named {
            Some(n) => trees.get(n.as_str()).unwrap_or(&none),
            None => &none,
        };
        let mut next = Vec::new();
        for (prefix, a, b) in &level {
            let (old, new) = (side(a), side(b));
            if !budget.read(old.len() + new.len()) {
                return Ok(None);
            }
            compare(prefix, old, new, &mut out, &mut next);
        }
        level = next;
    }
    let mut changes: Vec<Change> = out
        .into_iter()
        .map(|(path, kind, mode)| Change {
            path: super::path_from_bytes(&path),
            kind,
            mode,
        })
        .collect();
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(changes))
}

/// One folder's entries on both sides, merged by git's order: changed files go to `out`,
/// folders to walk to `next`.
fn compare(
    prefix: &[u8],
    old: &[Entry],
    new: &[Entry],
    out: &mut Vec<(Vec<u8>, ChangeKind, u32)>,
    next: &mut Vec<(Vec<u8>, Option<String>, Option<String>)>,
) {
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(x), Some(y)) => sort_key(x).cmp(&sort_key(y)),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let (name, mode, id) = &old[i];
                let path = join(prefix, name);
                if *mode == TREE {
                    next.push((path, Some(hex(id).to_string()), None));
                } else {
                    out.push((path, ChangeKind::Deleted, *mode));
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let (name, mode, id) = &new[j];
                let path = join(prefix, name);
                if *mode == TREE {
                    next.push((path, None, Some(hex(id).to_string())));
                } else {
                    out.push((path, ChangeKind::Added, *mode));
                }
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let ((name, m1, id1), (_, m2, id2)) = (&old[i], &new[j]);
                if m1 != m2 || id1 != id2 {
                    let path = join(prefix, name);
                    if *m1 == TREE {
                        next.push((path, Some(hex(id1).to_string()), Some(hex(id2).to_string())));
                    } else if m1 & TYPE != m2 & TYPE {
                        out.push((path, ChangeKind::TypeChanged, *m2));
                    } else {
                        out.push((path, ChangeKind::Modified, *m2));
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::git;
    use proptest::prelude::*;

    use crate::git::testing::TestFile as File;

    fn path() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "a", "b.txt", "d/x", "d/y", "d/e/z", "d/e/w", "e", "e/q", "f-g", "f/h", "f.i", "a b",
        ])
    }

    fn file() -> impl Strategy<Value = Option<File>> {
        prop_oneof![
            Just(None),
            (0u8..3).prop_map(|n| Some(File::Text(n))),
            (0u8..3).prop_map(|n| Some(File::Exec(n))),
            (0u8..2).prop_map(|n| Some(File::Link(n))),
            Just(Some(File::Submodule)),
        ]
    }

    /// Write `files` as the next commit's whole tree (absent ones and clashing paths skipped),
    /// returning the commit.
    fn commit(d: &std::path::Path, files: &[(&str, Option<File>)]) -> String {
        let present: Vec<(&str, &File)> = files
            .iter()
            .filter_map(|(p, f)| Some((*p, f.as_ref()?)))
            .collect();
        crate::git::testing::stage_exactly(d, &present, 40);
        let tree = String::from_utf8_lossy(&git(d, &["write-tree"]).stdout)
            .trim()
            .to_owned();
        let out = git(d, &["commit-tree", "-m", "c", &tree]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn theirs(d: &std::path::Path, a: &str, b: &str) -> Vec<(String, char, u32)> {
        let out = git(d, &["diff-tree", "-r", "-z", "--no-renames", "--raw", a, b]);
        let mut fields = crate::git::split_z(&out.stdout);
        let mut v = Vec::new();
        while let (Some(meta), Some(path)) = (fields.next(), fields.next()) {
            let meta = String::from_utf8_lossy(meta);
            let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
            let status = parts[4].chars().next().expect("status");
            let mode = if status == 'D' { parts[0] } else { parts[1] };
            v.push((
                String::from_utf8_lossy(path).into_owned(),
                status,
                u32::from_str_radix(mode, 8).expect("mode"),
            ));
        }
        v.sort();
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Whatever two commits hold (files, executables, symlinks, submodules, a file that
        /// became a folder or the reverse), the changes read from tree objects are git's.
        #[test]
        fn the_changes_read_from_trees_are_git_s(
            before in prop::collection::vec((path(), file()), 0..10),
            after in prop::collection::vec((path(), file()), 0..10),
        ) {
            let tmp = tempfile::tempdir().expect("tempdir");
            let d = tmp.path();
            git(d, &["init", "-q", "-b", "main"]);
            let (a, b) = (commit(d, &before), commit(d, &after));
            let repo = Git::at_git_dir(d.join(".git"));
            let ours = changes(&repo, &a, &b).expect("reads").expect("the kept reader serves");
            let mut ours: Vec<(String, char, u32)> = ours
                .into_iter()
                .map(|c| (c.path.to_string_lossy().into_owned(), c.kind.letter(), c.mode))
                .collect();
            ours.sort();
            prop_assert_eq!(ours, theirs(d, &a, &b));
        }
    }

    /// A zlib stream of `data` in one stored (uncompressed) deflate block, as git reads any.
    fn zlib_stored(data: &[u8]) -> Vec<u8> {
        let len = u16::try_from(data.len()).expect("small");
        let mut z = vec![0x78, 0x01, 0x01];
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(data);
        let (mut a, mut b) = (1u32, 0u32);
        for byte in data {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        z.extend_from_slice(&((b << 16) | a).to_be_bytes());
        z
    }

    /// A tree planted under an id that is not its hash, whose two entries name that same id:
    /// each level doubles. The walk gives up and leaves it to git, which refuses it.
    #[test]
    fn a_tree_that_names_itself_is_left_to_git() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        std::fs::create_dir(d.join("x")).expect("mkdir");
        std::fs::write(d.join("x/f"), b"f\n").expect("write");
        git(d, &["add", "x"]);
        let base = String::from_utf8_lossy(&git(d, &["write-tree"]).stdout)
            .trim()
            .to_owned();
        let sub = String::from_utf8_lossy(&git(d, &["rev-parse", &format!("{base}:x")]).stdout)
            .trim()
            .to_owned();
        // Overwrite the folder's loose object with one that names itself twice.
        let raw: Vec<u8> = (0..20)
            .map(|i| u8::from_str_radix(&sub[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let mut body = Vec::new();
        for name in ["a", "b"] {
            body.extend_from_slice(format!("40000 {name}\0").as_bytes());
            body.extend_from_slice(&raw);
        }
        let mut object = format!("tree {}\0", body.len()).into_bytes();
        object.extend_from_slice(&body);
        let path = d.join(".git/objects").join(&sub[..2]).join(&sub[2..]);
        let mut perms = std::fs::metadata(&path).expect("object").permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).expect("chmod");
        std::fs::write(&path, zlib_stored(&object)).expect("plant");
        let repo = Git::at_git_dir(d.join(".git"));
        let served = crate::git::batch::lookup(&repo, std::slice::from_ref(&sub), true)
            .expect("reads")
            .and_then(|mut v| v.pop().flatten())
            .expect("served");
        assert_eq!(served.body, body, "the kept reader serves the planted tree");
        let empty =
            String::from_utf8_lossy(&git(d, &["hash-object", "-t", "tree", "/dev/null"]).stdout)
                .trim()
                .to_owned();
        let repo = Git::at_git_dir(d.join(".git"));
        let started = std::time::Instant::now();
        assert!(changes(&repo, &empty, &base).expect("reads").is_none());
        // The walks over `.gitattributes` files stop the same way.
        let objects = crate::git::objects::attributes_mention(&repo, &base, "filter=lfs");
        assert!(objects.expect("reads").is_none());
        let differ = crate::git::objects::attributes_differ(&repo, &empty, &base);
        assert!(differ.expect("reads").is_none());
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn a_name_that_is_no_tree_is_left_to_git() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        let c = commit(d, &[("a", Some(File::Text(1)))]);
        let repo = Git::at_git_dir(d.join(".git"));
        assert!(changes(&repo, &c, "nope").expect("reads").is_none());
        assert_eq!(changes(&repo, &c, &c).expect("reads"), Some(Vec::new()));
    }
}
