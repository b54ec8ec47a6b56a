//! What a change does inside submodules, where the superproject's tree cannot see it: files
//! edited in a submodule without a commit there, and a gitlink moved to a commit that exists
//! only in the run's worktree (its submodule repository goes when the worktree does).

use std::path::Path;

use super::{Git, Opts, split_z};
use crate::error::Result;

/// Submodules (paths) with uncommitted or untracked changes inside them.
pub fn dirty(git: &Git) -> Result<Vec<String>> {
    let out = git.run_opts(
        [
            "status",
            "--porcelain=v2",
            "-z",
            "--ignore-submodules=none",
            "--untracked-files=no",
        ],
        Opts::default(),
    )?;
    let mut dirty = Vec::new();
    for entry in split_z(&out) {
        let text = String::from_utf8_lossy(entry);
        // "1 <XY> <sub> <mH> <mI> <mW> <hH> <hI> <path>": <sub> is "S<c><m><u>" for a submodule.
        let fields: Vec<&str> = text.splitn(9, ' ').collect();
        if fields.len() == 9
            && fields[0] == "1"
            && let Some(flags) = fields[2].strip_prefix('S')
            && (flags.contains('M') || flags.contains('U'))
        {
            dirty.push(fields[8].to_owned());
        }
    }
    Ok(dirty)
}

/// Gitlinks the change from `base_tree` to `tree` moves to a commit that no remote-tracking
/// branch of that submodule (in `worktree`) contains: (path, commit).
pub fn unpublished(
    git: &Git,
    worktree: &Path,
    base_tree: &str,
    tree: &str,
) -> Result<Vec<(String, String)>> {
    let out = git.run(["diff-tree", "-r", "-z", "--no-renames", base_tree, tree])?;
    let mut fields = split_z(&out);
    let mut moved = Vec::new();
    // ":<old mode> <new mode> <old id> <new id> <status>" then the path.
    while let (Some(meta), Some(path)) = (fields.next(), fields.next()) {
        let meta = String::from_utf8_lossy(meta);
        let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        if let [_, "160000", _, new, status] = parts.as_slice()
            && *status != "D"
        {
            moved.push((
                String::from_utf8_lossy(path).into_owned(),
                (*new).to_owned(),
            ));
        }
    }
    let mut unpublished = Vec::new();
    for (path, commit) in moved {
        let inside = Git::in_dir(worktree.join(&path));
        let on_a_remote = inside
            .output(
                [
                    "for-each-ref",
                    "--count=1",
                    "--contains",
                    &commit,
                    "refs/remotes/",
                ],
                Opts::default(),
            )
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
        if !on_a_remote {
            unpublished.push((path, commit));
        }
    }
    Ok(unpublished)
}
