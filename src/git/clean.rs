//! Whether `git clean -ffdx -e <keep>...` would remove anything from a worktree, found without
//! starting it: a reused slot whose last run left only tracked files and build caches (the usual
//! case) then needs no `git clean` process.
//!
//! The answer errs one way only: "nothing to remove" is given only when every entry of the
//! worktree is a path of its index, a folder holding such paths, or a folder a keep pattern names
//! that holds none. Anything this reader does not follow exactly (an index it cannot parse, a keep
//! pattern with wildcards, a name that differs only by case, a folder where the index has a file,
//! a `.git` below the top) answers "maybe", and git cleans as before.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::index_file;

/// A `run.caches` pattern this reader follows: a folder (the pattern ends in `/`), named without
/// wildcards, either by its name at any depth (`target/`) or by its path from the top
/// (`/target/`, `web/node_modules/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Keep {
    Named(Vec<u8>),
    At(Vec<u8>),
}

impl Keep {
    pub(super) fn parse(pattern: &str) -> Option<Keep> {
        let folder = pattern.strip_suffix('/')?;
        let plain = |s: &str| {
            !s.is_empty()
                && !s.starts_with('#')
                && !s.starts_with('!')
                && !s.ends_with(' ')
                && !s.bytes().any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
                && s.split('/').all(|part| {
                    !part.is_empty()
                        && part != "."
                        && part != ".."
                        && !part.eq_ignore_ascii_case(".git")
                })
        };
        let anchored = folder.strip_prefix('/');
        let path = anchored.unwrap_or(folder);
        if !plain(path) {
            return None;
        }
        Some(if anchored.is_some() || path.contains('/') {
            Keep::At(path.as_bytes().to_vec())
        } else {
            Keep::Named(path.as_bytes().to_vec())
        })
    }

    pub(super) fn matches(&self, path: &[u8], name: &[u8]) -> bool {
        match self {
            Keep::Named(n) => n == name,
            Keep::At(p) => p == path,
        }
    }
}

/// True when `git clean -ffdx` with `-e` for each of `keep` would remove nothing from
/// `worktree`, given the paths and modes of the index git would read, in index order (`None`:
/// no index this reader parses). False whenever that is not certain.
pub fn nothing_to_remove(worktree: &Path, paths: Option<&[(&[u8], u32)]>, keep: &[String]) -> bool {
    let Some(paths) = paths else {
        return false;
    };
    // A pattern this reader does not follow could keep what it would call untracked.
    let keep: Option<Vec<Keep>> = keep.iter().map(|k| Keep::parse(k)).collect();
    Walk {
        paths,
        keep: keep.as_deref(),
    }
    .folder(worktree, &[])
}

/// Whether some path of `paths` (an index's, in its order) lies beneath `folder/`.
pub(super) fn holds(paths: &[(&[u8], u32)], folder: &[u8]) -> bool {
    let mut prefix = folder.to_vec();
    prefix.push(b'/');
    let at = paths.partition_point(|(p, _)| *p < prefix.as_slice());
    paths.get(at).is_some_and(|(p, _)| p.starts_with(&prefix))
}

struct Walk<'a> {
    /// The index's paths and modes, in the index's order (bytes, as git sorts them).
    paths: &'a [(&'a [u8], u32)],
    keep: Option<&'a [Keep]>,
}

impl Walk<'_> {
    fn exact(&self, path: &[u8]) -> Option<u32> {
        self.paths
            .binary_search_by(|(p, _)| (*p).cmp(path))
            .ok()
            .map(|i| self.paths[i].1)
    }

    fn holds(&self, folder: &[u8]) -> bool {
        holds(self.paths, folder)
    }

    /// Whether nothing in `dir` (at `rel` from the top) is for git clean to remove.
    fn folder(&self, dir: &Path, rel: &[u8]) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        for entry in entries {
            let Ok(entry) = entry else {
                return false;
            };
            let name = entry.file_name();
            let name = name.as_bytes();
            if rel.is_empty() && name == b".git" {
                continue; // the worktree's own pointer to its git dir
            }
            if name.eq_ignore_ascii_case(b".git") {
                return false; // a repository inside: git's to judge (and strays.rs's to remove)
            }
            let mut path = rel.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            // Never followed: a symlink is an entry of its own, as git sees it.
            let Ok(kind) = entry.file_type() else {
                return false;
            };
            let tracked = self.exact(&path);
            if !kind.is_dir() {
                if tracked.is_none() {
                    return false;
                }
                continue;
            }
            match tracked {
                Some(index_file::GITLINK) => continue, // a submodule: not the superproject's to clean
                Some(_) => return false,               // a folder where the index has a file
                None => {}
            }
            if self.holds(&path) {
                if !self.folder(&dir.join(OsStr::from_bytes(name)), &path) {
                    return false;
                }
                continue;
            }
            if !self.only_caches(&dir.join(OsStr::from_bytes(name)), &path, name) {
                return false;
            }
        }
        true
    }

    fn kept(&self, path: &[u8], name: &[u8]) -> bool {
        self.keep
            .is_some_and(|keep| keep.iter().any(|k| k.matches(path, name)))
    }

    /// Whether git clean leaves the untracked folder `dir` whole: a keep pattern names it, or
    /// it holds nothing but such folders (git removes what they do not keep, and they keep
    /// their folder).
    fn only_caches(&self, dir: &Path, rel: &[u8], name: &[u8]) -> bool {
        if self.kept(rel, name) {
            return true;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        let mut any = false;
        for entry in entries {
            let Ok(entry) = entry else {
                return false;
            };
            let child = entry.file_name();
            if !entry.file_type().is_ok_and(|t| t.is_dir())
                || child.as_bytes().eq_ignore_ascii_case(b".git")
            {
                return false;
            }
            let mut path = rel.to_vec();
            path.push(b'/');
            path.extend_from_slice(child.as_bytes());
            if !self.only_caches(&entry.path(), &path, child.as_bytes()) {
                return false;
            }
            any = true;
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::git;

    #[test]
    fn keep_patterns_are_followed_only_when_plain_folders() {
        assert_eq!(
            Keep::parse("target/"),
            Some(Keep::Named(b"target".to_vec()))
        );
        assert_eq!(Keep::parse("/target/"), Some(Keep::At(b"target".to_vec())));
        assert_eq!(
            Keep::parse("web/node_modules/"),
            Some(Keep::At(b"web/node_modules".to_vec()))
        );
        for other in [
            "target",
            "*.o/",
            "tar?et/",
            "[t]arget/",
            "!target/",
            "#target/",
            "target /",
            "/",
            "",
            "a//b/",
            "../x/",
            "a\\b/",
            ".git/",
            "x/.GIT/",
        ] {
            assert_eq!(Keep::parse(other), None, "{other}");
        }
    }

    /// The answer for the index file at `index`, read as a reset reads it.
    pub(super) fn answer_with(index: &Path, dir: &Path, keep: &[String]) -> bool {
        let bytes = index_file::read_regular(index);
        let parsed = bytes.as_deref().and_then(|b| index_file::parse(b, 20));
        let paths: Option<Vec<(&[u8], u32)>> = parsed.as_ref().map(|p| {
            p.entries
                .iter()
                .map(|e| (e.path.as_ref(), e.mode))
                .collect()
        });
        nothing_to_remove(dir, paths.as_deref(), keep)
    }

    /// What `git clean -n` says it would remove, with the same options and keep patterns.
    fn git_would_remove(dir: &Path, keep: &[String]) -> String {
        let mut args: Vec<String> = ["clean", "-n", "-ffdx"].map(str::to_owned).to_vec();
        for k in keep {
            args.push("-e".to_owned());
            args.push(k.clone());
        }
        let out = git(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn answer(dir: &Path, keep: &[String]) -> bool {
        answer_with(&dir.join(".git").join("index"), dir, keep)
    }

    /// Each layout against git's own dry run: "nothing" only where git would remove nothing,
    /// and for these plain layouts, exactly where it would.
    #[test]
    fn the_answer_agrees_with_git_clean_dry_runs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = crate::git::testing::repo_with_a_commit(tmp.path(), "repo");
        let keep = vec!["target/".to_owned(), "/build/".to_owned()];
        std::fs::create_dir_all(d.join("src/deep")).expect("mkdir");
        std::fs::write(d.join("src/deep/a.rs"), "a").expect("write");
        std::fs::write(d.join("target_file"), "t").expect("write");
        git(&d, &["add", "-A"]);
        git(&d, &["commit", "-q", "-m", "tracked"]);
        let check = |what: &str, expect_nothing: bool| {
            let ours = answer(&d, &keep);
            let theirs = git_would_remove(&d, &keep);
            assert_eq!(
                ours,
                theirs.is_empty(),
                "{what}: git would remove {theirs:?}"
            );
            assert_eq!(ours, expect_nothing, "{what}");
        };
        check("only tracked files", true);
        std::fs::create_dir_all(d.join("target/debug")).expect("mkdir");
        std::fs::write(d.join("target/debug/bin"), "b").expect("write");
        std::fs::create_dir_all(d.join("src/target")).expect("mkdir");
        std::fs::write(d.join("src/target/x"), "x").expect("write");
        std::fs::create_dir_all(d.join("build")).expect("mkdir");
        check("caches at any depth and at the top", true);
        std::fs::create_dir_all(d.join("src/build")).expect("mkdir");
        std::fs::write(d.join("src/build/o"), "o").expect("write");
        check("an anchored cache's name deeper down", false);
        std::fs::remove_dir_all(d.join("src/build")).expect("rm");
        std::fs::write(d.join("src/deep/new.rs"), "n").expect("write");
        check("an untracked file in a tracked folder", false);
        std::fs::remove_file(d.join("src/deep/new.rs")).expect("rm");
        std::fs::create_dir(d.join("empty")).expect("mkdir");
        check("an empty untracked folder", false);
        std::fs::remove_dir(d.join("empty")).expect("rm");
        std::os::unix::fs::symlink(d.join("src"), d.join("target2")).expect("symlink");
        check("a symlink", false);
        std::fs::remove_file(d.join("target2")).expect("rm");
        std::fs::remove_file(d.join("target_file")).expect("rm");
        std::fs::create_dir(d.join("target_file")).expect("mkdir");
        assert!(!answer(&d, &keep), "a folder where the index has a file");
        std::fs::remove_dir(d.join("target_file")).expect("rm");
        std::fs::create_dir_all(d.join("nested/.git")).expect("mkdir");
        check("a nested repository's folder", false);
        std::fs::remove_dir_all(d.join("nested")).expect("rm");
        check("back to tracked files and caches", true);
        // What a cache folder that holds tracked files keeps is left to git; so is any pattern
        // with a wildcard, once something untracked is there.
        std::fs::create_dir_all(d.join("lib/target")).expect("mkdir");
        std::fs::write(d.join("lib/target/t.rs"), "t").expect("write");
        git(&d, &["add", "-A"]);
        git(&d, &["commit", "-q", "-m", "a tracked target"]);
        check("a cache folder that holds tracked files only", true);
        std::fs::write(d.join("lib/target/new.rs"), "n").expect("write");
        assert!(
            !answer(&d, &keep),
            "beside them an untracked file: for git to judge"
        );
        std::fs::remove_dir_all(d.join("lib")).expect("rm");
        git(&d, &["add", "-A"]);
        git(&d, &["commit", "-q", "-m", "gone"]);
        assert!(answer(&d, &keep));
        assert!(!answer(&d, &["tar*/".to_owned()]), "a wildcard pattern");
        std::fs::remove_dir_all(d.join("target")).expect("rm");
        std::fs::remove_dir_all(d.join("src/target")).expect("rm");
        std::fs::remove_dir(d.join("build")).expect("rm");
        assert!(
            answer(&d, &["tar*/".to_owned()]),
            "nothing untracked at all"
        );
        // No index, or one that is not a regular file: git decides.
        std::fs::rename(d.join(".git/index"), d.join(".git/index.saved")).expect("mv");
        assert!(!answer(&d, &keep));
        std::fs::create_dir(d.join(".git/index")).expect("mkdir");
        assert!(!answer(&d, &keep));
        std::fs::remove_dir(d.join(".git/index")).expect("rm");
        nix::unistd::mkfifo(&d.join(".git/index"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        assert!(
            !answer(&d, &keep),
            "a pipe in the index's place is not waited on"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::git::testing::git;
    use proptest::prelude::*;

    /// Paths from a few names, so that folders, caches and files meet at several depths.
    fn path() -> impl Strategy<Value = String> {
        let part = prop::sample::select(vec!["a", "b", "target", "build", "x.rs"]);
        prop::collection::vec(part, 1..4).prop_map(|parts| parts.join("/"))
    }

    /// What a run may leave: the same names, and a `.git` in any case.
    fn left_path() -> impl Strategy<Value = String> {
        let part = prop::sample::select(vec!["a", "b", "target", "build", "x.rs", ".git", ".GIT"]);
        prop::collection::vec(part, 1..4).prop_map(|parts| parts.join("/"))
    }

    fn plant(top: &Path, rel: &str, folder: bool) {
        let p = top.join(rel);
        // A path through what is already a file cannot be made: skipped.
        if p.ancestors().skip(1).any(|a| a.is_file()) || p.exists() {
            return;
        }
        if folder {
            let _ = std::fs::create_dir_all(&p);
        } else if let Some(parent) = p.parent()
            && std::fs::create_dir_all(parent).is_ok()
        {
            let _ = std::fs::write(&p, rel);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever is tracked and whatever is left beside it: "nothing to remove" only where
        /// `git clean -n` lists nothing; and where no cache folder holds tracked files, exactly
        /// there.
        #[test]
        fn nothing_to_remove_only_where_git_would_remove_nothing(
            tracked in prop::collection::vec(path(), 1..6),
            left in prop::collection::vec((left_path(), any::<bool>()), 0..4),
            anchored in any::<bool>(),
        ) {
            let tmp = tempfile::tempdir().expect("tempdir");
            let d = tmp.path().join("repo");
            std::fs::create_dir(&d).expect("mkdir");
            git(&d, &["init", "-q", "-b", "main"]);
            for t in &tracked {
                plant(&d, t, false);
            }
            git(&d, &["add", "-A"]);
            git(&d, &["commit", "-q", "--allow-empty", "-m", "tracked"]);
            for (l, folder) in &left {
                plant(&d, l, *folder);
            }
            let keep = vec![
                "target/".to_owned(),
                if anchored { "/build/" } else { "build/" }.to_owned(),
            ];
            let ours = super::tests::answer_with(&d.join(".git").join("index"), &d, &keep);
            let out = git(&d, &["clean", "-n", "-ffdx", "-e", &keep[0], "-e", &keep[1]]);
            let theirs = String::from_utf8_lossy(&out.stdout).into_owned();
            if ours {
                prop_assert!(theirs.is_empty(), "git would remove {theirs:?}");
            }
            let listed = git(&d, &["ls-files"]);
            let cache_holds_tracked = String::from_utf8_lossy(&listed.stdout)
                .lines()
                .any(|l| l.split('/').rev().skip(1).any(|p| p == "target" || p == "build"));
            // git never lists a `.git`: where one was left, only the first half holds.
            let dotgit_left = left
                .iter()
                .any(|(l, _)| l.split('/').any(|p| p.eq_ignore_ascii_case(".git")));
            if !cache_holds_tracked && !dotgit_left {
                prop_assert_eq!(ours, theirs.is_empty(), "git would remove {:?}", theirs);
            }
        }
    }
}
