//! What git ignores in a checkout, listed once so that a watch can skip it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::git::Git;

/// What git ignores in a checkout: folders ignored as a whole, and ignored files elsewhere.
#[derive(Debug, Default, Clone)]
pub struct Ignored {
    pub dirs: HashSet<PathBuf>,
    pub files: HashSet<PathBuf>,
}

impl Ignored {
    pub fn of(checkout: &Path) -> Result<Ignored> {
        let out = Git::in_dir(checkout).run([
            "ls-files",
            "-z",
            "--others",
            "--ignored",
            "--exclude-standard",
            "--directory",
        ])?;
        let mut ignored = Ignored::default();
        for p in crate::git::split_z(&out) {
            let p = crate::git::path_from_bytes(p);
            let s = p.to_string_lossy().into_owned();
            match s.strip_suffix('/') {
                Some(dir) => ignored.dirs.insert(PathBuf::from(dir)),
                None => ignored.files.insert(p),
            };
        }
        Ok(ignored)
    }

    /// Inside a folder git ignores as a whole.
    pub fn within_dir(&self, path: &Path) -> bool {
        path.ancestors()
            .skip(1)
            .any(|a| !a.as_os_str().is_empty() && self.dirs.contains(a))
            || self.dirs.contains(path)
    }
}
