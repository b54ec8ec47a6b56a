//! For unit tests that need a real repository: git run as a person would, isolated from this
//! machine's configuration.

use std::path::Path;
use std::process::{Command, Output};

/// Run git in `dir` with a fixed identity and no global or system config.
pub fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_EDITOR", ":")
        .output()
        .expect("git runs")
}

/// A repository on `main` with one empty commit, in the folder `name` under `parent`.
pub fn repo_with_a_commit(parent: &Path, name: &str) -> std::path::PathBuf {
    let d = parent.join(name);
    std::fs::create_dir(&d).expect("mkdir");
    git(&d, &["init", "-q", "-b", "main"]);
    git(&d, &["commit", "-q", "--allow-empty", "-m", "one"]);
    d
}

/// What a test puts at a path: a text file or an executable (their content numbered), a symlink
/// (its target numbered), or a submodule entry.
#[derive(Debug, Clone)]
pub enum TestFile {
    Text(u8),
    Exec(u8),
    Link(u8),
    Submodule,
}

/// Make the worktree and index of `d` hold exactly `files` (a path that is already a file's
/// folder, or under a file, is skipped), staged one by one; a submodule entry names a commit id
/// of `hash_hex` ones.
pub fn stage_exactly(d: &Path, files: &[(&str, &TestFile)], hash_hex: usize) {
    use std::os::unix::fs::PermissionsExt;
    let _ = git(d, &["rm", "-rq", "--cached", "--ignore-unmatch", "."]);
    for entry in std::fs::read_dir(d).expect("dir").flatten() {
        if entry.file_name() != ".git" {
            let p = entry.path();
            if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p).expect("rm");
            } else {
                std::fs::remove_file(&p).expect("rm");
            }
        }
    }
    let mut taken: Vec<&str> = Vec::new();
    for &(p, f) in files {
        let clash = taken
            .iter()
            .any(|t| *t == p || p.starts_with(&format!("{t}/")) || t.starts_with(&format!("{p}/")));
        if clash {
            continue;
        }
        taken.push(p);
        let full = d.join(p);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        match f {
            TestFile::Text(n) | TestFile::Exec(n) => {
                std::fs::write(&full, format!("{n}\n")).expect("write");
                let mode = if matches!(f, TestFile::Exec(_)) {
                    0o755
                } else {
                    0o644
                };
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
                    .expect("chmod");
                git(d, &["add", p]);
            }
            TestFile::Link(n) => {
                std::os::unix::fs::symlink(format!("target{n}"), &full).expect("symlink");
                git(d, &["add", p]);
            }
            TestFile::Submodule => {
                let info = format!("160000,{},{p}", "1".repeat(hash_hex));
                git(d, &["update-index", "--add", "--cacheinfo", &info]);
            }
        }
    }
}

/// A linked worktree of the repository `d` at `path`, its HEAD detached at `d`'s.
pub fn add_detached_worktree(d: &Path, path: &Path) {
    let path = path.to_str().expect("a UTF-8 test path");
    git(d, &["worktree", "add", "-q", "--detach", path]);
}
