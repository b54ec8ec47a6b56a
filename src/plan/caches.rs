//! Which ignored folders a worktree slot keeps from one run to the next: `run.caches` when the
//! config says, otherwise the build folders of the project types the base's files name. They are
//! what makes a reused slot warm; everything else ignored is removed, as in a new checkout.

use crate::error::Result;
use crate::git::{Git, TreeId, objects};

/// Files at the repository's root that name a project type, and the folders its tools fill.
/// Go keeps its build cache in the user's home (`~/.cache/go-build`), shared already.
const BY_MARKER: &[(&str, &[&str])] = &[
    ("Cargo.toml", &["/target/"]),
    ("package.json", &["node_modules/"]),
    ("pyproject.toml", &["/.venv/", "__pycache__/"]),
    ("uv.lock", &["/.venv/", "__pycache__/"]),
    ("poetry.lock", &["/.venv/", "__pycache__/"]),
    ("requirements.txt", &["/.venv/", "__pycache__/"]),
    ("setup.py", &["/.venv/", "__pycache__/"]),
    ("pom.xml", &["/target/"]),
    ("build.gradle", &["/.gradle/", "build/"]),
    ("build.gradle.kts", &["/.gradle/", "build/"]),
    ("settings.gradle", &["/.gradle/", "build/"]),
    ("settings.gradle.kts", &["/.gradle/", "build/"]),
    ("CMakeLists.txt", &["/build/"]),
    ("Gemfile", &["/vendor/bundle/"]),
    ("composer.json", &["/vendor/"]),
];

/// The caches of a run: the configured ones, or those of the project types found at the root
/// of `tree`.
pub fn caches(git: &Git, tree: &TreeId, configured: Option<&[String]>) -> Result<Vec<String>> {
    if let Some(list) = configured {
        return Ok(list.to_vec());
    }
    let markers: Vec<String> = BY_MARKER.iter().map(|(m, _)| (*m).to_owned()).collect();
    let markers = crate::globs::Globs::new(&markers)
        .map_err(|e| crate::error::Error::other(e.to_string()))?;
    let found: Vec<String> = objects::files_matching(git, tree, &markers)?
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    Ok(for_markers(&found))
}

/// The cache folders of the marker files `found` (root-level names), each once, in table order.
pub fn for_markers(found: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (marker, folders) in BY_MARKER {
        if found.iter().any(|f| f == marker) {
            for folder in *folders {
                if !out.iter().any(|o| o == folder) {
                    out.push((*folder).to_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_project_type_keeps_its_build_folders_once() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(for_markers(&names(&["Cargo.toml"])), ["/target/"]);
        assert_eq!(
            for_markers(&names(&["package.json", "Cargo.toml"])),
            ["/target/", "node_modules/"]
        );
        assert_eq!(
            for_markers(&names(&["pyproject.toml", "uv.lock"])),
            ["/.venv/", "__pycache__/"]
        );
        assert!(for_markers(&names(&["go.mod", "README.md"])).is_empty());
    }
}
