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
