//! Creating and removing the run's worktree and branch, through `git worktree` so that filters,
//! LFS, line endings and the post-checkout hook behave exactly as in the user's own checkouts.

use std::path::{Path, PathBuf};

use super::{Git, Opts, path_from_bytes, split_z};
use crate::error::Result;

/// `git worktree add --lock -b <branch> -- <path> <base>`, or `--detach` without a branch.
///
/// The lock keeps `git worktree prune` and `gc` away from a worktree whose run is alive.
pub fn add(
    repo: &Git,
    path: &Path,
    branch: Option<&str>,
    base: &str,
    lock_reason: &str,
) -> Result<()> {
    let mut args = add_locked(lock_reason);
    match branch {
        Some(b) => {
            args.push("-b".into());
            args.push(b.into());
        }
        None => args.push("--detach".into()),
    }
    args.push("--".into());
    args.push(path.as_os_str().to_owned());
    args.push(base.into());
    repo.run(args)?;
    Ok(())
}

/// `git worktree add --lock -- <path> <branch>` for a branch that exists: checked out as it is,
/// never reset (`-B`); git refuses if another worktree has it.
pub fn add_existing(repo: &Git, path: &Path, branch: &str, lock_reason: &str) -> Result<()> {
    let mut args = add_locked(lock_reason);
    args.extend(["--".into(), path.as_os_str().to_owned(), branch.into()]);
    repo.run(args)?;
    Ok(())
}

/// `git worktree add --quiet --lock --reason <reason>`: the start of every add of ours.
fn add_locked(lock_reason: &str) -> Vec<std::ffi::OsString> {
    let mut args = checkout_workers();
    args.extend([
        "worktree".into(),
        "add".into(),
        "--quiet".into(),
        "--lock".into(),
        "--reason".into(),
        lock_reason.into(),
    ]);
    args
}

/// `-c checkout.workers=N`: git's parallel checkout on (the files are what git writes either way;
/// writers overlap with inflating, so twice the cores pays even on two).
fn checkout_workers() -> Vec<std::ffi::OsString> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(2)
        .clamp(2, 16);
    vec!["-c".into(), format!("checkout.workers={workers}").into()]
}

pub fn unlock(repo: &Git, path: &Path) -> Result<()> {
    let out = repo.output(
        [
            std::ffi::OsStr::new("worktree"),
            "unlock".as_ref(),
            path.as_os_str(),
        ],
        Opts::default(),
    )?;
    // "is not locked" is fine: unlocking is idempotent for us.
    if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("not locked") {
        Ok(())
    } else {
        Err(super::failure(
            &[
                "worktree".into(),
                "unlock".into(),
                path.as_os_str().to_owned(),
            ],
            &out,
        ))
    }
}

/// Whether two paths name the same worktree folder. The last component is never resolved: a
/// symlink put where a run's worktree was is not the folder it points at (an agent could point
/// it at your own worktree).
pub fn same_path(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    let real = |p: &Path| -> Option<PathBuf> {
        if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
            return None;
        }
        Some(p.parent()?.canonicalize().ok()?.join(p.file_name()?))
    };
    matches!((real(a), real(b)), (Some(x), Some(y)) if x == y)
}

/// A folder's identity (device and inode), not following a symlink: what a run records of the
/// worktree it made, so that a folder put in its place is never taken for it.
pub fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

/// Whether `path` is still the folder recorded as `recorded` (no record: nothing to compare).
pub fn is_the_same_folder(path: &Path, recorded: Option<(u64, u64)>) -> bool {
    recorded.is_none_or(|r| identity(path) == Some(r))
}

/// Whether a run's worktree path now holds something else than the folder the run made: a
/// symlink put in its place, or another folder. Such a path is never entered, reset or removed.
pub fn was_replaced(path: &Path, recorded: Option<(u64, u64)>) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        || (path.exists() && !is_the_same_folder(path, recorded))
}

/// Remove a worktree we created, locked or not. Its work must already be saved: this discards
/// uncommitted changes.
pub fn remove(repo: &Git, path: &Path) -> Result<()> {
    // Our worktrees are folders we made; a symlink in their place (an agent's doing) is not
    // followed into whatever it points at.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(crate::error::Error::other(format!(
            "{} is a symlink, not the worktree git-pipeline made; not removing it",
            path.display()
        )));
    }
    // Deleting thousands of files takes as long as checking them out. The folder is renamed
    // aside at once (same filesystem), git forgets the worktree, and the files are deleted by a
    // process of their own while we go on; `git pipeline clean` removes what such a process did
    // not finish.
    let trash = trash_path(path);
    let moved = trash
        .as_ref()
        .is_some_and(|t| std::fs::rename(path, t).is_ok());
    // Twice --force: also when locked (one git process instead of unlock + remove).
    let removed = repo.run([
        std::ffi::OsStr::new("worktree"),
        "remove".as_ref(),
        "--force".as_ref(),
        "--force".as_ref(),
        path.as_os_str(),
    ]);
    match (removed, moved, trash) {
        (Ok(_), true, Some(t)) => delete_in_background(&t),
        // git kept the worktree: so do we, where it was.
        (Err(e), true, Some(t)) => {
            let _ = std::fs::rename(&t, path);
            return Err(e);
        }
        (Err(e), _, _) => return Err(e),
        _ => {}
    }
    Ok(())
}

/// Where a worktree being removed is renamed to: beside it, named so that `clean` knows it.
fn trash_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Some(path.with_file_name(format!("{TRASH_PREFIX}{name}-{stamp}")))
}

/// Folders named so in a worktree root are worktrees being deleted.
pub const TRASH_PREFIX: &str = ".git-pipeline-trash-";

/// `rm -rf` in its own process group (a Ctrl-C of ours does not stop it), reaped by a thread so
/// that a long-lived process leaves no zombies; it outlives us if we exit first.
pub fn delete_in_background(dir: &Path) {
    use std::os::unix::process::CommandExt;
    // `chmod` first: a folder an agent made unreadable (`chmod 000`) would stop `rm` and leave
    // the trash behind forever. `chmod -R` does not follow symlinks, so nothing outside changes.
    let child = std::process::Command::new("sh")
        .args([
            "-c",
            "chmod -R u+rwX -- \"$1\" 2>/dev/null; exec rm -rf -- \"$1\"",
            "sh",
        ])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    match child {
        Ok(mut c) => {
            std::thread::spawn(move || {
                let _ = c.wait();
            });
        }
        // No `sh`: delete it here, more slowly.
        Err(_) => {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Delete a folder git-pipeline made (a trash folder) now, including folders an agent made
/// unreadable: they are made readable first (never following symlinks out).
pub fn delete_now(dir: &Path) -> Result<()> {
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+rwX", "--"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        // Its own deletion got there first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::error::Error::io_path("remove", dir, e)),
    }
}

pub fn delete_branch(repo: &Git, branch: &str) -> Result<()> {
    repo.run(["branch", "-D", "--", branch])?;
    Ok(())
}

/// One entry of `git worktree list --porcelain -z`.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub path: PathBuf,
    pub head: Option<String>,
    pub branch: Option<String>,
    pub locked: Option<String>,
    pub prunable: bool,
    pub bare: bool,
}

pub fn list(repo: &Git) -> Result<Vec<Entry>> {
    let out = repo.run(["worktree", "list", "--porcelain", "-z"])?;
    let mut entries: Vec<Entry> = Vec::new();
    for field in split_z(&out) {
        if let Some(p) = field.strip_prefix(b"worktree ") {
            entries.push(Entry {
                path: path_from_bytes(p),
                ..Entry::default()
            });
            continue;
        }
        let Some(e) = entries.last_mut() else {
            continue;
        };
        let text = String::from_utf8_lossy(field);
        if let Some(h) = text.strip_prefix("HEAD ") {
            e.head = Some(h.to_owned());
        } else if let Some(b) = text.strip_prefix("branch ") {
            e.branch = Some(b.to_owned());
        } else if text == "locked" {
            e.locked = Some(String::new());
        } else if let Some(r) = text.strip_prefix("locked ") {
            e.locked = Some(r.to_owned());
        } else if text == "prunable" || text.starts_with("prunable ") {
            e.prunable = true;
        } else if text == "bare" {
            e.bare = true;
        }
    }
    Ok(entries)
}

/// The linked worktrees registered in `common_dir`, read from git's admin folders
/// (`worktrees/<name>/gitdir` names the worktree's `.git`) as `git worktree list` reads them, with
/// their paths only; `None` when one cannot be read (then ask git).
pub fn registered(common_dir: &Path) -> Option<Vec<Entry>> {
    let admins = match std::fs::read_dir(common_dir.join("worktrees")) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
        Err(_) => return None,
    };
    let mut entries = Vec::new();
    for admin in admins {
        let admin = admin.ok()?.path();
        if !admin.is_dir() {
            continue;
        }
        let text = std::fs::read(admin.join("gitdir")).ok()?;
        let text = text.trim_ascii_end();
        // Relative (`worktree.useRelativePaths`) to the admin folder.
        let dot_git = admin.join(path_from_bytes(text));
        entries.push(Entry {
            path: dot_git.parent()?.to_path_buf(),
            ..Entry::default()
        });
    }
    Some(entries)
}

/// Where a worktree keeps things, as git resolves them.
pub struct Paths {
    /// Its own git dir (`<common>/worktrees/<name>`), where its index lives.
    pub git_dir: PathBuf,
    /// Its post-checkout hook (honouring `core.hooksPath`), which may not exist.
    pub post_checkout: PathBuf,
}

pub fn paths(worktree: &Path) -> Result<Paths> {
    let text = Git::in_dir(worktree).text([
        "rev-parse",
        "--path-format=absolute",
        "--git-dir",
        "--git-path",
        "hooks/post-checkout",
    ])?;
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(dir), Some(hook)) => Ok(Paths {
            git_dir: PathBuf::from(dir),
            post_checkout: PathBuf::from(hook),
        }),
        _ => Err(crate::error::Error::other(format!(
            "unexpected output from git rev-parse: {text:?}"
        ))),
    }
}

/// [`paths`] without asking git, for a worktree whose pointer is sound ([`pointer_is_sound`]):
/// its admin folder is the one its `.git` file names, and its post-checkout hook is the
/// repository's when hooks are the repository's own (`repo_hooks` is `<common>/hooks`: no
/// `core.hooksPath`) and the worktree has no config of its own. `None`: ask git.
pub fn known_paths(worktree: &Path, common_dir: &Path, repo_hooks: &Path) -> Option<Paths> {
    if repo_hooks != common_dir.join("hooks") {
        return None;
    }
    let text = std::fs::read(worktree.join(".git")).ok()?;
    let admin = worktree
        .join(super::pointer_path(&text, "gitdir: ")?)
        .canonicalize()
        .ok()?;
    if admin.join("config.worktree").exists() {
        return None;
    }
    Some(Paths {
        git_dir: admin,
        post_checkout: repo_hooks.join("post-checkout"),
    })
}

/// Whether a checkout could leave files that differ from the commit: a post-checkout hook that
/// can run, or a filter driver configured for the repository (`filter_driver` when already
/// known).
pub fn checkout_may_differ(
    worktree: &Path,
    paths: &Paths,
    filter_driver: Option<bool>,
) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let hook = std::fs::metadata(&paths.post_checkout)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if hook {
        return Ok(true);
    }
    if let Some(known) = filter_driver {
        return Ok(known);
    }
    let out = Git::in_dir(worktree).output(
        [
            "config",
            "--get-regexp",
            r"^filter\..*\.(clean|smudge|process)$",
        ],
        Opts::default(),
    )?;
    Ok(!out.stdout.is_empty())
}

/// [`lock`] for a worktree whose admin folder is known: one already locked (its `locked` file is
/// there, which is all `git worktree lock` looks at) costs no git process.
pub fn lock_at(repo: &Git, path: &Path, admin: &Path, reason: &str) -> Result<()> {
    if admin.join("locked").is_file() {
        return Ok(());
    }
    lock(repo, path, reason)
}

/// Lock a registered worktree with `reason`; one already locked stays as it is.
pub fn lock(repo: &Git, path: &Path, reason: &str) -> Result<()> {
    let out = repo.output(
        [
            std::ffi::OsStr::new("worktree"),
            "lock".as_ref(),
            "--reason".as_ref(),
            reason.as_ref(),
            path.as_os_str(),
        ],
        Opts::default(),
    )?;
    if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already locked") {
        Ok(())
    } else {
        Err(super::failure(
            &[
                "worktree".into(),
                "lock".into(),
                path.as_os_str().to_owned(),
            ],
            &out,
        ))
    }
}

/// Make a checkout's files and index exactly `tree` (work a lost folder held, brought back).
pub fn fill_from_tree(worktree: &Path, tree: &str) -> Result<()> {
    Git::in_dir(worktree).run(["read-tree", "--reset", "-u", tree])?;
    Ok(())
}

/// Move a clean checkout from its HEAD's files to `tree` (two-tree merge: fails rather than
/// overwrite a local change).
pub fn switch_files_to(worktree: &Path, tree: &str) -> Result<()> {
    Git::in_dir(worktree).run(["read-tree", "-u", "-m", "HEAD", tree])?;
    Ok(())
}

/// The commit HEAD names and its tree.
pub fn head_and_tree(worktree: &Path) -> Result<(super::Oid, super::TreeId)> {
    let out = Git::in_dir(worktree).text(["rev-parse", "HEAD", "HEAD^{tree}"])?;
    let (head, tree) = out.split_once('\n').unwrap_or((&out, ""));
    Ok((
        super::Oid::from_git(head.trim()),
        super::TreeId::from_git(tree.trim()),
    ))
}

/// Bring a reused worktree (a slot) to `base` as a new checkout of it would be: every untracked
/// and ignored file removed except those under `keep` (build caches, as gitignore patterns:
/// `/target/`, `node_modules/`); then its files through `git checkout --force` (filters, LFS,
/// the post-checkout hook; only the files that differ are written), on a new `branch` or
/// detached; then its submodules checked out again and cleaned.
///
/// The caller installs an index it trusts first (or removes the index, and every file is
/// written): the index decides which files `checkout` rewrites. `index` is where it is: when
/// nothing in the worktree is for `git clean` to remove, no `git clean` runs.
pub fn reset_to(
    worktree: &Path,
    index: &Path,
    branch: Option<&str>,
    base: &str,
    keep: &[String],
) -> Result<()> {
    let git = Git::in_dir(worktree);
    let hash_len = base.len() / 2;
    let bytes = super::index_file::read_regular(index);
    let parsed = bytes
        .as_deref()
        .and_then(|b| super::index_file::parse(b, hash_len));
    let paths: Option<Vec<(&[u8], u32)>> = parsed.as_ref().map(|p| {
        p.entries
            .iter()
            .map(|e| (e.path.as_ref(), e.mode))
            .collect()
    });
    // What git clean never removes (a planted `.git`, a submodule folder that is not the
    // slot's own checkout) goes first; then what the last run left beyond its tracked files
    // (untracked, ignored, nested repositories), so that the checkout's own post-checkout hook
    // output stays.
    let modules = index
        .parent()
        .map(|a| a.join("modules"))
        .unwrap_or_default();
    // The two walks read the same folders, side by side: the clean check's answer counts only
    // when the strays walk found nothing to remove, and then nothing changed under it.
    let (strays, clean_needed) = std::thread::scope(|s| {
        let clean = s.spawn(|| !super::clean::nothing_to_remove(worktree, paths.as_deref(), keep));
        let strays = super::strays::find(worktree, paths.as_deref(), keep, &modules, hash_len);
        (strays, clean.join().unwrap_or(true))
    });
    let strays = strays?;
    super::strays::remove(&strays.remove)?;
    tracing::trace!("reset: strays removed");
    if !strays.remove.is_empty() || clean_needed {
        git.run(clean_args(keep, &[]))?;
    }
    tracing::trace!("reset: clean checked");
    let mut args = checkout_workers();
    // An fsmonitor would let checkout trust files it did not look at.
    args.extend(["-c".into(), "core.fsmonitor=false".into()]);
    args.extend(["checkout".into(), "--quiet".into(), "--force".into()]);
    args.push("--no-recurse-submodules".into());
    match branch {
        Some(b) => args.extend(["-b".into(), b.into()]),
        None => args.push("--detach".into()),
    }
    args.extend([base.into(), "--".into()]);
    git.run(args)?;
    tracing::trace!("reset: checked out");
    // A submodule the new base drops, or has with no `.gitmodules` to check it out by, is an
    // empty folder in a new checkout (or none): its old checkout goes.
    let (empty, gone) =
        super::strays::after_checkout(worktree, index, hash_len, &strays.submodules);
    for folder in &empty {
        super::strays::remove(&super::strays::entries_of(folder)?)?;
    }
    if !gone.is_empty() {
        let pointers: Vec<PathBuf> = gone
            .iter()
            .map(|g| worktree.join(path_from_bytes(g)).join(".git"))
            .collect();
        super::strays::remove(&pointers)?;
        git.run(clean_args(keep, &gone))?;
    }
    if worktree.join(".gitmodules").exists() {
        git.run([
            "submodule",
            "update",
            "--init",
            "--recursive",
            "--force",
            "--checkout",
            "--quiet",
        ])?;
        git.run([
            "submodule",
            "foreach",
            "--quiet",
            "--recursive",
            "git clean -ffdxq",
        ])?;
    }
    Ok(())
}

/// Detach a worktree's HEAD where it is (at `fallback` when it names no commit: its branch was
/// deleted under it), without touching its files or running hooks: the run's branch is then free
/// to be deleted while the folder stays (a slot given back to the pool).
pub fn detach_head(worktree: &Path, fallback: &str) -> Result<()> {
    let git = Git::in_dir(worktree);
    let args = |to: &str| {
        [
            "update-ref",
            "--no-deref",
            "-m",
            "git-pipeline: slot given back",
            "HEAD",
        ]
        .map(str::to_owned)
        .into_iter()
        .chain([to.to_owned()])
        .collect::<Vec<_>>()
    };
    // At the commit HEAD names; when it names none (its branch is gone), at `fallback`.
    if !git
        .output(args("HEAD^{commit}"), super::Opts::default())?
        .status
        .success()
    {
        git.run(args(fallback))?;
    }
    Ok(())
}

/// Whether any `.gitattributes` differs between two trees: a file whose blob is the same in both
/// may then need writing again (its line endings or filter changed), which a checkout that
/// writes only changed blobs would skip.
pub fn attributes_differ(repo: &Git, from: &str, to: &str) -> Result<bool> {
    if let Some(differ) = super::objects::attributes_differ(repo, from, to)? {
        return Ok(differ);
    }
    let out = repo.run([
        "diff-tree",
        "-r",
        "--name-only",
        "-z",
        from,
        to,
        "--",
        ":(glob)**/.gitattributes",
    ])?;
    Ok(!out.is_empty())
}

/// Whether a worktree's `.git` file points at an admin folder of this repository
/// (`<common_dir>/worktrees/<name>`) that points back at it. A pointer rewritten to another
/// repository, or to the main checkout's git dir, would make git commands run "in the worktree"
/// act on that one: such a worktree is never reset or reused.
pub fn pointer_is_sound(worktree: &Path, common_dir: &Path) -> bool {
    let Ok(text) = std::fs::read(worktree.join(".git")) else {
        return false;
    };
    let Some(admin) = super::pointer_path(&text, "gitdir: ") else {
        return false;
    };
    let admin = worktree.join(admin);
    let (Ok(admin), Ok(worktrees)) = (
        admin.canonicalize(),
        common_dir.join("worktrees").canonicalize(),
    ) else {
        return false;
    };
    if admin.parent() != Some(worktrees.as_path()) {
        return false;
    }
    let Ok(back) = std::fs::read_to_string(admin.join("gitdir")) else {
        return false;
    };
    let back = admin.join(back.trim_end());
    match (
        back.parent().map(Path::canonicalize),
        worktree.canonicalize(),
    ) {
        (Some(Ok(a)), Ok(b)) => a == b,
        _ => false,
    }
}

/// Why a worktree's own git state (its admin folder, its submodules' git dirs) is not what
/// git-pipeline and git made, or `None`: a slot whose `commondir` names another repository, whose
/// `config.worktree` sets hooks, filters or another worktree, that is in the middle of a rebase or
/// bisect, or whose submodules' git dirs point outside it, is made again rather than reset.
pub fn admin_tampering(worktree: &Path, admin: &Path, common_dir: &Path) -> Option<String> {
    let canonical = |p: &Path| p.canonicalize().ok();
    let common = std::fs::read(admin.join("commondir"))
        .ok()
        .and_then(|t| super::pointer_path(&t, ""))
        .map(|c| admin.join(c));
    if common.as_deref().and_then(canonical).is_none()
        || common.as_deref().and_then(canonical) != canonical(common_dir)
    {
        return Some("its commondir names another repository".to_owned());
    }
    if let Ok(text) = std::fs::read(admin.join("config.worktree")) {
        match super::config_text::entries(&text) {
            Err(e) => return Some(format!("its config.worktree cannot be read ({e})")),
            Ok(entries) => {
                if let Some(key) = entries.iter().find_map(worktree_config_risk) {
                    return Some(format!("its config.worktree sets {key}"));
                }
            }
        }
    }
    if sparse_differs(admin, common_dir) {
        return Some(
            "its sparse checkout (patterns or settings) differs from your checkout's".to_owned(),
        );
    }
    let in_progress = [
        "rebase-merge",
        "rebase-apply",
        "MERGE_HEAD",
        "CHERRY_PICK_HEAD",
        "REVERT_HEAD",
        "BISECT_LOG",
        "sequencer",
    ];
    if let Some(what) = in_progress.iter().find(|f| admin.join(f).exists()) {
        return Some(format!("it has an operation in progress ({what})"));
    }
    let modules = admin.join("modules");
    if !modules.exists() {
        return None;
    }
    let (Some(modules), Some(top)) = (canonical(&modules), canonical(worktree)) else {
        return Some("its submodules' git dirs cannot be read".to_owned());
    };
    // The submodules' git dirs are in the folder steps may write (the worktree's admin folder),
    // and the reset runs git in them outside any step: a hook, or a config that runs a command
    // (a filter, an fsmonitor, a transport), makes the slot new instead.
    if let Some(why) = submodule_git_dirs_run_commands(&modules) {
        return Some(why);
    }
    // Every submodule git dir's worktree is inside this worktree...
    for entry in walkdir::WalkDir::new(&modules)
        .max_depth(MODULES_DEPTH)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.file_name() == "config")
    {
        let Some(dir) = entry.path().parent() else {
            continue;
        };
        if let Some(wt) = core_worktree(entry.path()) {
            let inside = canonical(&dir.join(&wt)).is_some_and(|p| p.starts_with(&top));
            if !inside {
                return Some(format!(
                    "a submodule's git dir ({}) names a worktree outside it",
                    dir.display()
                ));
            }
        }
    }
    // ...and every submodule folder's .git names a git dir of its own.
    let listed = std::fs::read(worktree.join(".gitmodules")).unwrap_or_default();
    let Ok(listed) = super::config_text::entries(&listed) else {
        return Some("its .gitmodules cannot be read".to_owned());
    };
    for path in listed
        .into_iter()
        .filter(|e| e.section == "submodule" && e.key == "path")
        .filter_map(|e| e.value)
    {
        let path = path_from_bytes(&path);
        let dotgit = worktree.join(&path).join(".git");
        let Ok(meta) = std::fs::symlink_metadata(&dotgit) else {
            continue;
        };
        let points_inside = meta.is_file()
            && super::strays::own_submodule_git_dir(&worktree.join(&path), &modules).is_some();
        if !points_inside {
            return Some(format!(
                "submodule {}'s .git does not name its own git dir",
                path.display()
            ));
        }
    }
    None
}

/// Why the submodules' git dirs under `modules` (a worktree's `<admin>/modules`) would run a
/// command of a step's choosing when git works in them: a hook (other than git's samples), a
/// config setting that runs one ([`runs_a_command`]), a `config.worktree` or a `commondir` (git
/// would read settings from them, or from the folder named), or a symlink to a folder or to what
/// git reads settings from (git follows it; this walk does not). Everything under `modules` is
/// looked at. `None` when they would not.
pub fn submodule_git_dirs_run_commands(modules: &Path) -> Option<String> {
    match std::fs::symlink_metadata(modules) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        _ => {}
    }
    let walk = walkdir::WalkDir::new(modules)
        .max_depth(MODULES_DEPTH)
        .into_iter();
    for entry in walk {
        let Ok(entry) = entry else {
            return Some(format!(
                "the submodules' git dirs cannot be read ({})",
                modules.display()
            ));
        };
        let path = entry.path();
        let name = entry.file_name().to_string_lossy();
        let in_hooks = path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "hooks");
        // git follows a symlink where this walk does not: one to a folder, or one standing for
        // a file git reads settings, hooks or objects from, is refused. (A template's
        // `info/exclude` may be a symlink, and git copies it as one.)
        let read_for_settings = matches!(
            name.as_ref(),
            "config" | "config.worktree" | "commondir" | "alternates" | "hooks" | "modules"
        ) || in_hooks;
        if entry.path_is_symlink() && (read_for_settings || path.is_dir()) {
            return Some(format!(
                "a submodule's git dir holds a symlink ({})",
                path.display()
            ));
        }
        if entry.file_type().is_dir() {
            if entry.depth() == MODULES_DEPTH {
                return Some(format!(
                    "the submodules' git dirs go deeper than {MODULES_DEPTH} folders ({})",
                    path.display()
                ));
            }
            continue;
        }
        if in_hooks && !name.ends_with(".sample") {
            return Some(format!(
                "a submodule's git dir has a hook ({})",
                path.display()
            ));
        }
        // Read for settings of its own (with `extensions.worktreeConfig`), `core.worktree`
        // among them, which the worktree check below does not read.
        if name == "config.worktree" {
            return Some(format!(
                "a submodule's git dir has a config of its own worktree ({})",
                path.display()
            ));
        }
        if name == "commondir" {
            return Some(format!(
                "a submodule's git dir names another one to share ({})",
                path.display()
            ));
        }
        if name != "config" {
            continue;
        }
        let text = std::fs::read(path).unwrap_or_default();
        if let Some(why) = runs_a_command(&text) {
            return Some(format!("a submodule's config ({}) {why}", path.display()));
        }
    }
    None
}

/// How deep [`submodule_git_dirs_run_commands`] looks: nested submodules' git dirs lie at
/// `<name>/modules/<name>/...`; deeper than this is refused, never skipped.
const MODULES_DEPTH: usize = 24;

/// What a slot's `config.worktree` may not set: what [`runs_a_command`] names, and what
/// changes where git works or what `git clean` and `git status` see (a file differing from a
/// tracked one only by case). Sparse checkout settings are compared with your checkout's
/// instead ([`sparse_differs`]): `git worktree add` copies them.
fn worktree_config_risk(e: &super::config_text::Entry) -> Option<String> {
    let changes_what_git_sees = e.subsection.is_none()
        && e.section == "core"
        && matches!(e.key.as_str(), "worktree" | "ignorecase" | "excludesfile");
    if changes_what_git_sees {
        return Some(e.name());
    }
    command_setting(e)
}

/// Whether a slot's sparse checkout differs from the main checkout's, which `git worktree
/// add` copies: a step that wrote patterns or turned sparse checkout on in the slot's admin
/// folder would have the next reset leave files out, unseen by the next run's gates.
fn sparse_differs(admin: &Path, common_dir: &Path) -> bool {
    let patterns = |dir: &Path| std::fs::read(dir.join("info/sparse-checkout")).ok();
    let settings = |dir: &Path| -> Option<Vec<(String, Option<Vec<u8>>)>> {
        let text = std::fs::read(dir.join("config.worktree")).unwrap_or_default();
        let entries = super::config_text::entries(&text).ok()?;
        Some(
            entries
                .into_iter()
                .filter(|e| {
                    e.is("core", "sparsecheckout")
                        || e.is("core", "sparsecheckoutcone")
                        || e.is("index", "sparse")
                })
                .map(|e| (e.name(), e.value))
                .collect(),
        )
    };
    patterns(admin) != patterns(common_dir) || settings(admin) != settings(common_dir)
}

/// Why git run with this config file's text would run a command or read another file: "sets
/// core.fsmonitor" (a filter, an include, a transport...), or "cannot be read (...)" for text
/// git refuses, which is no clone's own. A clone's own config (core, remote, branch,
/// submodule) gives `None`.
fn runs_a_command(text: &[u8]) -> Option<String> {
    match super::config_text::entries(text) {
        Err(e) => Some(format!("cannot be read ({e})")),
        Ok(entries) => entries
            .iter()
            .find_map(command_setting)
            .map(|key| format!("sets {key}")),
    }
}

fn command_setting(e: &super::config_text::Entry) -> Option<String> {
    let section = e.section.as_str();
    if matches!(
        section,
        "include" | "includeif" | "filter" | "diff" | "merge" | "credential" | "protocol"
    ) {
        return Some(section.to_owned());
    }
    let key = e.key.as_str();
    let risky = match section {
        "core" => matches!(
            key,
            "hookspath"
                | "fsmonitor"
                | "sshcommand"
                | "askpass"
                | "gitproxy"
                | "pager"
                | "editor"
                | "alternaterefscommand"
        ),
        "remote" => matches!(key, "uploadpack" | "receivepack" | "vcs"),
        "url" => key == "insteadof" || key == "pushinsteadof",
        "uploadpack" | "sequence" | "gpg" => true,
        // `update = !command`: git runs it when it updates a nested submodule.
        "submodule" => key == "update" && e.value.as_ref().is_some_and(|v| v.starts_with(b"!")),
        _ => false,
    };
    risky.then(|| format!("{section}.{key}"))
}

/// `core.worktree` of a git config file, when it sets one (the last, as git takes it).
fn core_worktree(config: &Path) -> Option<PathBuf> {
    let text = std::fs::read(config).ok()?;
    super::config_text::entries(&text)
        .ok()?
        .into_iter()
        .rev()
        .find(|e| e.is("core", "worktree"))
        .and_then(|e| e.value)
        .map(|v| path_from_bytes(&v))
}

/// `git clean` as a reset runs it: untracked and ignored files and nested repositories, except
/// under `keep`; in `only` (paths from the top, taken literally) when given.
fn clean_args(keep: &[String], only: &[Vec<u8>]) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> =
        ["clean", "-ffdxq"].map(std::ffi::OsString::from).to_vec();
    for pattern in keep {
        args.push("-e".into());
        args.push(pattern.into());
    }
    if !only.is_empty() {
        args.push("--".into());
        for p in only {
            let mut spec = std::ffi::OsString::from(":(top,literal)");
            spec.push(path_from_bytes(p).as_os_str());
            args.push(spec);
        }
    }
    args
}

/// The first path `git status` reports under the kept folders `keep` of a worktree just reset
/// (an untracked file that is not ignored survives `git clean -x -e <keep>` there, and only
/// there), or `None` when there is none.
pub fn first_change(worktree: &Path, keep: &[String]) -> Result<Option<String>> {
    if keep.is_empty() {
        return Ok(None);
    }
    let mut args: Vec<String> = [
        "-c",
        "core.untrackedCache=false",
        "--no-optional-locks",
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=normal",
        "--ignore-submodules=dirty",
        "--",
    ]
    .map(str::to_owned)
    .to_vec();
    for pattern in keep {
        let folder = pattern.trim_end_matches('/');
        args.push(match folder.strip_prefix('/') {
            Some(anchored) => format!(":(glob){anchored}/**"),
            None => format!(":(glob)**/{folder}/**"),
        });
    }
    let out = Git::in_dir(worktree).run(&args)?;
    Ok(split_z(&out)
        .next()
        .map(|e| String::from_utf8_lossy(e).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::git;

    /// The registrations and paths read from git's admin folders are the ones git gives.
    #[test]
    fn registrations_and_paths_read_from_the_admin_folders_are_git_s() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = crate::git::testing::repo_with_a_commit(tmp.path(), "repo");
        let common = d.join(".git").canonicalize().expect("canonical");
        assert_eq!(registered(&common).map(|r| r.len()), Some(0));
        let wt = tmp.path().join("wt one");
        crate::git::testing::add_detached_worktree(&d, &wt);
        git(
            &d,
            &[
                "-c",
                "worktree.useRelativePaths=true",
                "worktree",
                "add",
                "-q",
                "--detach",
                "../rel",
            ],
        );
        let repo = Git::at_git_dir(&common);
        let mut ours: Vec<PathBuf> = registered(&common)
            .expect("read")
            .into_iter()
            .map(|e| e.path)
            .collect();
        let mut theirs: Vec<PathBuf> = list(&repo)
            .expect("list")
            .into_iter()
            .skip(1)
            .map(|e| e.path)
            .collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(same_path(a, b), "{} vs {}", a.display(), b.display());
        }

        let hooks = common.join("hooks");
        let known = known_paths(&wt, &common, &hooks).expect("no hooksPath: known");
        let asked = paths(&wt).expect("paths");
        assert_eq!(
            known.git_dir,
            asked.git_dir.canonicalize().expect("canonical")
        );
        assert_eq!(known.post_checkout, asked.post_checkout);
        // With core.hooksPath, or a worktree config of its own, git is asked.
        assert!(known_paths(&wt, &common, &d.join(".husky/_")).is_none());
        std::fs::write(known.git_dir.join("config.worktree"), "").expect("write");
        assert!(known_paths(&wt, &common, &hooks).is_none());
    }

    /// A slot whose `config.worktree` changes what git runs or what git clean and status see
    /// is made again; one that sets something harmless is reset.
    #[test]
    fn a_config_worktree_that_changes_what_git_runs_or_sees_is_tampering() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = crate::git::testing::repo_with_a_commit(tmp.path(), "repo");
        let common = d.join(".git").canonicalize().expect("canonical");
        let wt = tmp.path().join("slot");
        crate::git::testing::add_detached_worktree(&d, &wt);
        let admin = paths(&wt).expect("paths").git_dir;
        assert_eq!(admin_tampering(&wt, &admin, &common), None);
        // Read by section and key: a name that only contains a risky word is harmless.
        std::fs::write(
            admin.join("config.worktree"),
            "[user]\n\tname = fsmonitor worktree fan\n",
        )
        .expect("write");
        assert_eq!(admin_tampering(&wt, &admin, &common), None);
        for (text, key) in [
            ("[core]\n\tfsmonitor = touch /tmp/x\n", "core.fsmonitor"),
            ("[core]\n\thooksPath = /tmp\n", "core.hookspath"),
            ("[core]\n\tignoreCase = true\n", "core.ignorecase"),
            ("[include]\n\tpath = /tmp/c\n", "include"),
            // What git accepts and a line-by-line reading misses.
            ("[core] fsmonitor = touch /tmp/x\n", "core.fsmonitor"),
            ("[user][core]worktree=/tmp\n", "core.worktree"),
            ("[core\n", "(bad config line 1)"),
        ] {
            std::fs::write(admin.join("config.worktree"), text).expect("write");
            let why = admin_tampering(&wt, &admin, &common).unwrap_or_default();
            assert!(why.ends_with(key), "{text}: {why}");
        }
        // A sparse checkout: the slot's must be your checkout's, which `git worktree add`
        // copies; one of a step's making is tampering.
        let sparse = "[core]\n\tsparseCheckout = true\n\tsparseCheckoutCone = true\n";
        std::fs::write(admin.join("config.worktree"), sparse).expect("write");
        let why = admin_tampering(&wt, &admin, &common).unwrap_or_default();
        assert!(why.contains("sparse checkout"), "{why}");
        std::fs::write(common.join("config.worktree"), sparse).expect("write");
        assert_eq!(admin_tampering(&wt, &admin, &common), None);
        std::fs::create_dir_all(admin.join("info")).expect("mkdir");
        std::fs::write(admin.join("info/sparse-checkout"), "/*\n!/*/\n").expect("write");
        let why = admin_tampering(&wt, &admin, &common).unwrap_or_default();
        assert!(why.contains("sparse checkout"), "{why}");
        std::fs::create_dir_all(common.join("info")).expect("mkdir");
        std::fs::write(common.join("info/sparse-checkout"), "/*\n!/*/\n").expect("write");
        assert_eq!(admin_tampering(&wt, &admin, &common), None);
        for dir in [&admin, &common] {
            std::fs::remove_file(dir.join("info/sparse-checkout")).expect("rm");
            std::fs::remove_file(dir.join("config.worktree")).expect("rm");
        }
        assert_eq!(admin_tampering(&wt, &admin, &common), None);
        // A submodule's git dir under the admin folder: its sample hooks and a plain config are
        // git's; a hook or a config that runs a command is not.
        let module = admin.join("modules/sub");
        std::fs::create_dir_all(module.join("hooks")).expect("mkdir");
        std::fs::create_dir_all(wt.join("sub")).expect("mkdir");
        std::fs::write(module.join("hooks/post-checkout.sample"), "#!/bin/sh\n").expect("w");
        let plain = format!(
            "[core]\n\tbare = false\n\tworktree = {}\n[remote \"origin\"]\n\turl = git@h:protocol-buffers/x\n",
            wt.join("sub").display()
        );
        std::fs::write(module.join("config"), &plain).expect("write");
        assert_eq!(admin_tampering(&wt, &admin, &common), None);
        for (text, key) in [
            ("[core]\n\tfsmonitor = touch /tmp/x\n", "core.fsmonitor"),
            ("[filter \"x\"]\n\tsmudge = touch /tmp/x\n", "filter"),
            ("[protocol \"ext\"]\n\tallow = always\n", "protocol"),
            ("[core]\n\thooksPath = /tmp\n", "core.hookspath"),
            ("[core] fsmonitor = touch /tmp/x\n", "core.fsmonitor"),
            ("[user][core]\tsshCommand = x\n", "core.sshcommand"),
            (
                "[submodule \"in\"]\n\tupdate = !touch /tmp/x\n",
                "submodule.update",
            ),
            (
                "[core]\n\tx = \"open\n",
                "cannot be read (bad config line 7)",
            ),
        ] {
            std::fs::write(module.join("config"), format!("{plain}{text}")).expect("write");
            let why = admin_tampering(&wt, &admin, &common).unwrap_or_default();
            assert!(why.ends_with(key), "{text}: {why}");
        }
        // A worktree outside the slot, set on the section's line (the last one counts).
        std::fs::write(
            module.join("config"),
            format!("{plain}[core] worktree = {}\n", tmp.path().display()),
        )
        .expect("write");
        let why = admin_tampering(&wt, &admin, &common).unwrap_or_default();
        assert!(why.contains("names a worktree outside it"), "{why}");
        std::fs::write(module.join("config"), &plain).expect("write");
        std::fs::write(module.join("hooks/post-checkout"), "#!/bin/sh\n").expect("w");
        let why = admin_tampering(&wt, &admin, &common).unwrap_or_default();
        assert!(why.contains("has a hook"), "{why}");
        std::fs::remove_file(module.join("hooks/post-checkout")).expect("rm");
        std::fs::write(
            wt.join(".gitmodules"),
            "[submodule \"sub\"]\n\tpath = sub\n\turl = ../sub\n",
        )
        .expect("write");
        let pointer = format!("gitdir: {}\n", module.display());
        std::fs::write(wt.join("sub/.git"), &pointer).expect("write");
        std::fs::write(module.join("HEAD"), "ref: refs/heads/main\n").expect("write");
        assert_eq!(admin_tampering(&wt, &admin, &common), None);
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("hooks")).expect("mkdir");
        std::fs::write(outside.join("HEAD"), "ref: refs/heads/main\n").expect("write");
        std::fs::write(outside.join("config"), "[filter \"x\"]\n\tclean = x\n").expect("w");
        // What git reads and a walk of the folder would not: another git dir to share, a
        // config or hooks folder that is a symlink.
        let tampered = |why: &str, expected: &str| {
            assert!(why.contains(expected), "{expected}: {why}");
        };
        std::fs::write(module.join("commondir"), outside.display().to_string()).expect("w");
        tampered(
            &admin_tampering(&wt, &admin, &common).unwrap_or_default(),
            "names another one to share",
        );
        std::fs::remove_file(module.join("commondir")).expect("rm");
        std::fs::remove_file(module.join("config")).expect("rm");
        std::os::unix::fs::symlink(outside.join("config"), module.join("config")).expect("ln");
        tampered(
            &admin_tampering(&wt, &admin, &common).unwrap_or_default(),
            "holds a symlink",
        );
        std::fs::remove_file(module.join("config")).expect("rm");
        std::fs::write(module.join("config"), &plain).expect("write");
        std::fs::remove_dir_all(module.join("hooks")).expect("rm");
        std::os::unix::fs::symlink(outside.join("hooks"), module.join("hooks")).expect("ln");
        tampered(
            &admin_tampering(&wt, &admin, &common).unwrap_or_default(),
            "holds a symlink",
        );
        std::fs::remove_file(module.join("hooks")).expect("rm");
        assert_eq!(admin_tampering(&wt, &admin, &common), None);
        // The pointer read as git reads it: a trailing space is part of the path, and the git
        // dir named so (outside) is not the slot's.
        let spaced = admin.join("modules/sub ");
        std::os::unix::fs::symlink(&outside, &spaced).expect("ln");
        std::fs::write(
            wt.join("sub/.git"),
            format!("gitdir: {} \n", module.display()),
        )
        .expect("write");
        let modules_dir = admin.join("modules").canonicalize().expect("canonical");
        assert_eq!(
            super::super::strays::own_submodule_git_dir(&wt.join("sub"), &modules_dir),
            None
        );
        assert!(admin_tampering(&wt, &admin, &common).is_some());
        std::fs::remove_file(&spaced).expect("rm");
        std::fs::write(wt.join("sub/.git"), &pointer).expect("write");
        assert_eq!(
            super::super::strays::own_submodule_git_dir(&wt.join("sub"), &modules_dir),
            module.canonicalize().ok()
        );
        // A git dir hidden among another's logs is looked into like any other.
        let hidden = module.join("logs/x");
        std::fs::create_dir_all(&hidden).expect("mkdir");
        std::fs::write(hidden.join("HEAD"), "ref: refs/heads/main\n").expect("write");
        std::fs::write(hidden.join("config"), "[filter \"x\"]\n\tclean = x\n").expect("w");
        std::fs::write(
            wt.join("sub/.git"),
            format!("gitdir: {}\n", hidden.display()),
        )
        .expect("write");
        tampered(
            &admin_tampering(&wt, &admin, &common).unwrap_or_default(),
            "logs/x/config) sets filter",
        );
        std::fs::remove_dir_all(module.join("logs")).expect("rm");
        std::fs::write(wt.join("sub/.git"), &pointer).expect("write");
        assert_eq!(admin_tampering(&wt, &admin, &common), None);
        // A config of the git dir's own worktree (where `core.worktree` could name any folder)
        // is refused; a template's symlinked `info/exclude` is git's own doing and stays.
        std::fs::write(module.join("config.worktree"), "[user]\n\tname = x\n").expect("w");
        tampered(
            &admin_tampering(&wt, &admin, &common).unwrap_or_default(),
            "has a config of its own worktree",
        );
        std::fs::remove_file(module.join("config.worktree")).expect("rm");
        std::fs::create_dir_all(module.join("info")).expect("mkdir");
        std::fs::write(outside.join("exclude"), "*.o\n").expect("write");
        std::os::unix::fs::symlink(outside.join("exclude"), module.join("info/exclude"))
            .expect("ln");
        assert_eq!(admin_tampering(&wt, &admin, &common), None);
    }
}
