//! What a change does inside submodules, where the superproject's tree cannot see it: files
//! edited in a submodule without a commit there, and a gitlink moved to a commit that exists
//! only in the run's worktree (its submodule repository goes when the worktree does).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use super::{Git, Opts, split_z};
use crate::error::Result;

/// Submodules (paths) with uncommitted or untracked changes inside them, with `env` (the index
/// to compare with). Only after every submodule's `.git` was found to name the git dir the slot
/// made for it ([`super::snapshot::Snapshotter::submodules_sound`]): git looks into each
/// through it.
pub(super) fn dirty(git: &Git, env: &[(&str, &OsStr)]) -> Result<Vec<String>> {
    let out = git.run_opts(
        [
            // git hands `-c` settings down to the status it runs in each submodule, whose config
            // lies where steps may write: no fsmonitor command runs there.
            "-c",
            "core.fsmonitor=false",
            "status",
            "--porcelain=v2",
            "-z",
            "--ignore-submodules=none",
            "--untracked-files=no",
        ],
        Opts {
            env,
            ..Opts::default()
        },
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

/// Where a submodule's commits come from, as known before any agent ran, from places no agent
/// writes: the superproject's own config (its URL) and your own copy of the submodule
/// (`<git dir>/modules/<name>`, its remote-tracking tips). A reused slot's copy of the submodule
/// is never asked: an earlier run's agent could have written its refs and config.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// The URL the superproject's config names for it.
    pub urls: Vec<String>,
    /// The commits the remote-tracking branches of your copy of it pointed at.
    pub tips: Vec<String>,
}

/// Each submodule's [`Origin`], by path. `repo` is the superproject's (common) git dir.
pub fn origins(worktree: &Path, repo: &Git, common_dir: &Path) -> Result<BTreeMap<String, Origin>> {
    let git = Git::in_dir(worktree);
    let out = git.run(["ls-files", "-z", "--stage"])?;
    // name -> path, from the checked-out `.gitmodules` (the base's: no agent has run yet).
    let names: Vec<(String, String)> = git
        .output(
            [
                "config",
                "-f",
                ".gitmodules",
                "--get-regexp",
                "^submodule\\..*\\.path$",
            ],
            Opts::default(),
        )
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| {
                    let (key, path) = l.split_once(' ')?;
                    let name = key.strip_prefix("submodule.")?.strip_suffix(".path")?;
                    Some((name.to_owned(), path.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    let lines = |g: &Git, args: &[&str]| {
        g.output(args, Opts::default())
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let mut origins = BTreeMap::new();
    for entry in split_z(&out) {
        // "<mode> <id> <stage>\t<path>"
        let text = String::from_utf8_lossy(entry);
        let (Some(("160000", _)), Some((_, path))) = (text.split_once(' '), text.split_once('\t'))
        else {
            continue;
        };
        let name = names
            .iter()
            .find(|(_, p)| p == path)
            .map_or(path, |(n, _)| n.as_str());
        let own_copy = common_dir.join("modules").join(name);
        let tips = if own_copy.is_dir() {
            lines(
                &Git::at_git_dir(&own_copy),
                &["for-each-ref", "--format=%(objectname)", "refs/remotes/"],
            )
        } else {
            Vec::new()
        };
        origins.insert(
            path.to_owned(),
            Origin {
                urls: lines(repo, &["config", "--get", &format!("submodule.{name}.url")]),
                tips,
            },
        );
    }
    Ok(origins)
}

/// Whether `commit` is in the history of one of `tips`, in the submodule repository `inside`.
/// The walk trusts objects only (they are named by their content): no commit-graph file and
/// no grafts, which an agent could have planted to invent parents; the commit itself must be
/// there (a missing one is never "reachable").
fn reachable_from(inside: &Git, commit: &str, tips: &[String]) -> bool {
    if tips.is_empty() {
        return false;
    }
    let env: [(&str, &OsStr); 1] = [("GIT_GRAFT_FILE", OsStr::new("/dev/null"))];
    let opts = || Opts {
        env: &env,
        ..Opts::default()
    };
    let exists = inside
        .output(
            [
                "-c",
                "core.commitGraph=false",
                "cat-file",
                "-e",
                &format!("{commit}^{{commit}}"),
            ],
            opts(),
        )
        .is_ok_and(|o| o.status.success());
    if !exists {
        return false;
    }
    // Nothing of `commit`'s history is left once every tip's is taken away: it is on one.
    let mut args = vec![
        "-c",
        "core.commitGraph=false",
        "rev-list",
        "--ignore-missing",
        "--max-count=1",
        commit,
        "--not",
    ];
    args.extend(tips.iter().map(String::as_str));
    inside
        .output(args, opts())
        .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
}

/// The commits a remote's branches and tags point at now: `git ls-remote`, run on the
/// superproject's own git dir (your config, never the submodule's), without prompts, for at
/// most 30 seconds.
fn remote_heads(repo: &Git, url: &str) -> Vec<String> {
    repo.output_within(
        &["ls-remote", "--", url],
        std::time::Duration::from_secs(30),
    )
    .ok()
    .flatten()
    .filter(|o| o.status.success())
    .map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split('\t').next().map(str::to_owned))
            .collect()
    })
    .unwrap_or_default()
}

/// Gitlinks the change from `base_tree` to `tree` moves to a commit that none of that
/// submodule's remote-tracking tips (as [`origins`] read them before the agents ran)
/// contains, nor any branch of the remotes it named then: (path, commit).
pub fn unpublished(
    git: &Git,
    worktree: &Path,
    base_tree: &str,
    tree: &str,
    origins: &BTreeMap<String, Origin>,
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
        let origin = origins.get(&path).cloned().unwrap_or_default();
        // Published when a tip read before the agents ran has it; else ask the remote the
        // superproject's config names (an agent may have fetched a newer commit of the
        // dependency).
        let published = reachable_from(&inside, &commit, &origin.tips)
            || origin
                .urls
                .iter()
                .any(|url| reachable_from(&inside, &commit, &remote_heads(git, url)));
        if !published {
            unpublished.push((path, commit));
        }
    }
    Ok(unpublished)
}
