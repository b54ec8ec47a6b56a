//! The pre-push hook (installed, chained, removed) and what the hooks check.
//!
//! `hooks/pre-push` is installed as it is shipped. When a pre-push hook already exists it is
//! moved to `pre-push.before-git-pipeline`, and the shipped hook runs it first with the same
//! arguments and input; `uninstall` moves it back, byte for byte.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::attest::NOTES_REF;
use crate::attest::verify;
use crate::attest::verify::Judged;
use crate::attest::verify::is_zero_id;
use crate::error::Error;
use crate::error::Result;
use crate::git::Git;
use crate::git::Repo;

pub const PRE_PUSH: &str = include_str!("../../hooks/pre-push");
pub const MARKER: &str = "git-pipeline pre-push hook";
pub const CHAINED_SUFFIX: &str = ".before-git-pipeline";

#[derive(Debug, Clone, Serialize)]
pub struct HookStatus {
    pub hooks_dir: PathBuf,
    /// `core.hooksPath` when set.
    pub hooks_path_config: Option<String>,
    pub pre_push: PrePush,
    /// The hook git-pipeline chains to, when there was one.
    pub chained: Option<PathBuf>,
    /// `notes.rewriteRef` includes refs/notes/pipeline (notes follow amend and rebase).
    pub notes_follow_rewrites: bool,
    /// Remotes whose fetch refspecs bring the notes.
    pub remotes_fetching_notes: Vec<String>,
    /// Remotes whose push refspecs send the notes.
    pub remotes_pushing_notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrePush {
    /// git-pipeline's hook is installed.
    Installed,
    /// Another program's pre-push hook is there; git-pipeline is not.
    Foreign,
    None,
}

pub fn status(repo: &Repo) -> Result<HookStatus> {
    let git = hook_git(repo);
    let dir = crate::git::repo::hooks_dir(&git)?;
    let hook = dir.join("pre-push");
    let chained = dir.join(format!("pre-push{CHAINED_SUFFIX}"));
    let pre_push = match std::fs::read(&hook) {
        Ok(bytes) if String::from_utf8_lossy(&bytes).contains(MARKER) => PrePush::Installed,
        Ok(_) => PrePush::Foreign,
        Err(_) => PrePush::None,
    };
    let with_notes = |kind: &str| -> Result<Vec<String>> {
        let mut names = Vec::new();
        for (key, value) in crate::git::config::get_regexp(&git, &format!(r"^remote\..*\.{kind}$"))?
        {
            let name = key
                .trim_start_matches("remote.")
                .trim_end_matches(&format!(".{kind}"))
                .to_owned();
            if value.contains(NOTES_REF) && !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    };
    let remotes_fetching_notes = with_notes("fetch")?;
    let remotes_pushing_notes = with_notes("push")?;
    Ok(HookStatus {
        hooks_path_config: crate::git::config::get_all(&git, "core.hooksPath")?.pop(),
        pre_push,
        chained: chained.exists().then_some(chained),
        notes_follow_rewrites: crate::git::config::get_all(&git, "notes.rewriteRef")?
            .iter()
            .any(|r| r == NOTES_REF),
        remotes_fetching_notes,
        remotes_pushing_notes,
        hooks_dir: dir,
    })
}

/// Git for hook work: in the user's worktree when there is one, so `core.hooksPath` relative to
/// it resolves as git resolves it.
fn hook_git(repo: &Repo) -> Git {
    match &repo.work_tree {
        Some(w) => Git::in_dir(w),
        None => repo.git(),
    }
}

pub enum Installed {
    Fresh,
    Chained(PathBuf),
    AlreadyThere,
}

pub fn install(repo: &Repo) -> Result<(Installed, PathBuf)> {
    let git = hook_git(repo);
    let dir = crate::git::repo::hooks_dir(&git)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io_path("create", &dir, e))?;
    let hook = dir.join("pre-push");
    let chained = dir.join(format!("pre-push{CHAINED_SUFFIX}"));
    let result = match std::fs::read(&hook) {
        Ok(bytes) if String::from_utf8_lossy(&bytes).contains(MARKER) => {
            // Refresh our own hook (a newer version may ship a better one).
            write_hook(&hook)?;
            Installed::AlreadyThere
        }
        Ok(_) => {
            if chained.exists() {
                return Err(Error::usage_hint(
                    format!(
                        "both {} and {} exist; not touching either",
                        hook.display(),
                        chained.display()
                    ),
                    "decide which pre-push hook to keep, remove the other, and install again",
                ));
            }
            // A rename keeps the user's hook byte for byte, with its mode.
            std::fs::rename(&hook, &chained).map_err(|e| Error::io_path("move", &hook, e))?;
            write_hook(&hook)?;
            Installed::Chained(chained)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_hook(&hook)?;
            Installed::Fresh
        }
        Err(e) => return Err(Error::io_path("read", &hook, e)),
    };
    // Notes follow `commit --amend` and `rebase`; the tree in each note decides if they still hold.
    if !crate::git::config::get_all(&git, "notes.rewriteRef")?
        .iter()
        .any(|r| r == NOTES_REF)
    {
        crate::git::config::add(&git, "notes.rewriteRef", NOTES_REF)?;
    }
    Ok((result, hook))
}

fn write_hook(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, PRE_PUSH).map_err(|e| Error::io_path("write", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io_path("make executable", path, e))
}

pub enum Uninstalled {
    Removed,
    Restored(PathBuf),
    NotInstalled,
}

pub fn uninstall(repo: &Repo) -> Result<Uninstalled> {
    let git = hook_git(repo);
    let dir = crate::git::repo::hooks_dir(&git)?;
    let hook = dir.join("pre-push");
    let chained = dir.join(format!("pre-push{CHAINED_SUFFIX}"));
    let ours = std::fs::read(&hook).is_ok_and(|b| String::from_utf8_lossy(&b).contains(MARKER));
    let result = if !ours {
        Uninstalled::NotInstalled
    } else if chained.exists() {
        std::fs::rename(&chained, &hook).map_err(|e| Error::io_path("restore", &chained, e))?;
        Uninstalled::Restored(hook)
    } else {
        std::fs::remove_file(&hook).map_err(|e| Error::io_path("remove", &hook, e))?;
        Uninstalled::Removed
    };
    let rewrite_refs = crate::git::config::get_all(&git, "notes.rewriteRef")?;
    if rewrite_refs.iter().any(|r| r == NOTES_REF) {
        crate::git::config::unset_value(&git, "notes.rewriteRef", NOTES_REF)?;
    }
    Ok(result)
}

/// Records which remotes got a `HEAD` push refspec from `install --notes` (so `uninstall --notes`
/// removes only what it added).
const PUSH_HEAD_ADDED: &str = "pipeline.pushHeadAdded";

/// The refspecs `install --notes` adds to a remote.
pub fn notes_fetch_refspec(remote: &str) -> String {
    format!(
        "+{NOTES_REF}:{}",
        crate::git::notes::remote_mirror(NOTES_REF, remote)
    )
}

/// Make `git fetch` bring each remote's notes (into a copy of their own, so local notes are never
/// overwritten) and `git push` send the local ones. A remote without push refspecs also gets
/// `HEAD`, since any push refspec replaces git's default of pushing the current branch.
/// Returns the remotes configured.
pub fn install_notes(repo: &Repo, only: Option<&str>) -> Result<Vec<String>> {
    let git = hook_git(repo);
    let remotes = crate::git::config::remotes(&git)?;
    let chosen: Vec<String> = match only {
        Some(r) if remotes.iter().any(|x| x == r) => vec![r.to_owned()],
        Some(r) => {
            return Err(Error::usage_hint(
                format!("there is no remote named {r:?}"),
                "git remote -v lists the remotes",
            ));
        }
        None => remotes,
    };
    if chosen.is_empty() {
        return Err(Error::usage_hint(
            "this repository has no remote to carry the notes to",
            "add one (git remote add origin <url>) and install again",
        ));
    }
    for r in &chosen {
        let fetch_key = format!("remote.{r}.fetch");
        let fetch = notes_fetch_refspec(r);
        if !crate::git::config::get_all(&git, &fetch_key)?.contains(&fetch) {
            crate::git::config::add(&git, &fetch_key, &fetch)?;
        }
        let push_key = format!("remote.{r}.push");
        let pushes = crate::git::config::get_all(&git, &push_key)?;
        if pushes.is_empty() {
            crate::git::config::add(&git, &push_key, "HEAD")?;
            crate::git::config::add(&git, PUSH_HEAD_ADDED, r)?;
        }
        if !pushes.iter().any(|p| p == NOTES_REF) {
            crate::git::config::add(&git, &push_key, NOTES_REF)?;
        }
    }
    Ok(chosen)
}

/// Undo [`install_notes`] on every remote: only the values it added.
pub fn uninstall_notes(repo: &Repo) -> Result<Vec<String>> {
    let git = hook_git(repo);
    let added_head = crate::git::config::get_all(&git, PUSH_HEAD_ADDED)?;
    let mut changed = Vec::new();
    for r in crate::git::config::remotes(&git)? {
        let fetch_key = format!("remote.{r}.fetch");
        let push_key = format!("remote.{r}.push");
        let fetch = notes_fetch_refspec(&r);
        let mut touched = false;
        if crate::git::config::get_all(&git, &fetch_key)?.contains(&fetch) {
            crate::git::config::unset_value(&git, &fetch_key, &fetch)?;
            touched = true;
        }
        let pushes = crate::git::config::get_all(&git, &push_key)?;
        if pushes.iter().any(|p| p == NOTES_REF) {
            crate::git::config::unset_value(&git, &push_key, NOTES_REF)?;
            touched = true;
        }
        if added_head.contains(&r) {
            if pushes.iter().any(|p| p == "HEAD") {
                crate::git::config::unset_value(&git, &push_key, "HEAD")?;
            }
            crate::git::config::unset_value(&git, PUSH_HEAD_ADDED, &r)?;
            touched = true;
        }
        if touched {
            changed.push(r);
        }
    }
    Ok(changed)
}

/// The notes refs attestations are read from here: the local one and the copies fetched from
/// remotes.
pub fn notes_sources(git: &Git) -> Result<Vec<String>> {
    let mut sources = vec![NOTES_REF.to_owned()];
    sources.extend(crate::git::notes::remote_mirrors(git, NOTES_REF)?);
    Ok(sources)
}

/// One ref update a hook is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub local_oid: String,
    pub remote_ref: String,
    pub remote_oid: String,
}

/// pre-push stdin: `<local ref> <local oid> <remote ref> <remote oid>` per line.
pub fn parse_pre_push(input: &str) -> Result<Vec<Update>> {
    parse_lines(input, "pre-push", 4, |f| Update {
        local_oid: f[1].to_owned(),
        remote_ref: f[2].to_owned(),
        remote_oid: f[3].to_owned(),
    })
}

/// pre-receive stdin: `<old oid> <new oid> <ref>` per line.
pub fn parse_pre_receive(input: &str) -> Result<Vec<Update>> {
    parse_lines(input, "pre-receive", 3, |f| Update {
        local_oid: f[1].to_owned(),
        remote_ref: f[2].to_owned(),
        remote_oid: f[0].to_owned(),
    })
}

/// Lines of exactly `fields` space-separated fields; any other line is an error, never skipped.
fn parse_lines(
    input: &str,
    hook: &str,
    fields: usize,
    make: impl Fn(&[&str]) -> Update,
) -> Result<Vec<Update>> {
    input
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() == fields {
                Ok(make(&f))
            } else {
                Err(Error::other(format!("unexpected {hook} input line: {l:?}")))
            }
        })
        .collect()
}

/// What a hook found: the offending commits per updated branch.
pub struct Refusal {
    pub branch: String,
    pub commits: Vec<Judged>,
}

/// What a hook enforces on one branch update.
pub struct BranchPolicy {
    /// Branches to enforce (`None`: every one).
    pub branches: Option<globset::GlobSet>,
    pub require_signature: bool,
}

/// Check the branch updates of a push. `known_remote`: what the receiving side already has, as
/// rev-list arguments to exclude when the old value is unknown (a new branch). `policy_for`
/// says what applies to an update (the config it is read from is the hook's choice).
pub fn check_updates(
    git: &Git,
    updates: &[Update],
    known_remote: &[String],
    notes: &[String],
    policy_for: &dyn Fn(&Update) -> Result<BranchPolicy>,
) -> Result<Vec<Refusal>> {
    let mut refusals = Vec::new();
    // A push of many branches at the same commits is checked once per distinct (new, old) pair.
    let mut seen: std::collections::HashMap<(String, String, bool), Vec<Judged>> =
        std::collections::HashMap::new();
    for u in updates {
        // Deletions, tags, notes and other refs pass; only branches carry code to check.
        let Some(branch) = u.remote_ref.strip_prefix(crate::git::refs::HEADS) else {
            continue;
        };
        if is_zero_id(&u.local_oid) {
            continue;
        }
        let policy = policy_for(u)?;
        if let Some(globs) = &policy.branches
            && !globs.is_match(branch)
        {
            continue;
        }
        let key = (
            u.local_oid.clone(),
            u.remote_oid.clone(),
            policy.require_signature,
        );
        let bad = match seen.get(&key) {
            Some(bad) => bad.clone(),
            None => {
                let mut revs = vec![u.local_oid.clone()];
                let old_known = !is_zero_id(&u.remote_oid)
                    && crate::git::objects::commit_exists(git, &u.remote_oid)?;
                if old_known {
                    revs.push(format!("^{}", u.remote_oid));
                } else {
                    revs.push("--not".to_owned());
                    revs.extend(known_remote.iter().cloned());
                }
                let commits = crate::git::history::list_commits(git, &revs)?;
                let sources = verify::Sources {
                    notes,
                    require_signature: policy.require_signature,
                };
                let bad: Vec<Judged> = verify::judge_commits(git, commits, &sources)?
                    .into_iter()
                    .filter(|j| !j.attested())
                    .collect();
                seen.insert(key, bad.clone());
                bad
            }
        };
        if !bad.is_empty() {
            refusals.push(Refusal {
                branch: branch.to_owned(),
                commits: bad,
            });
        }
    }
    Ok(refusals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_hook_input() -> Result<()> {
        let zero64 = "0".repeat(64);
        let input = format!(
            "refs/heads/a {} refs/heads/a {zero64}\n(delete) {zero64} refs/heads/b {}\n",
            "a".repeat(64),
            "b".repeat(64)
        );
        let u = parse_pre_push(&input)?;
        assert_eq!(u.len(), 2);
        assert!(is_zero_id(&u[0].remote_oid));
        assert!(is_zero_id(&u[1].local_oid));
        let r = parse_pre_receive(&format!(
            "{zero64} {} refs/notes/pipeline\n",
            "c".repeat(64)
        ))?;
        assert_eq!(r[0].remote_ref, "refs/notes/pipeline");
        assert!(parse_pre_push("garbage").is_err());
        Ok(())
    }

    /// A real repository with two unattested commits on main: (first, second).
    fn two_commits(dir: &Path) -> (String, String) {
        let git = |args: &[&str]| {
            let out = crate::git::testing::git(dir, args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["commit", "-q", "--allow-empty", "-m", "one"]);
        let first = git(&["rev-parse", "HEAD"]);
        git(&["commit", "-q", "--allow-empty", "-m", "two"]);
        (first, git(&["rev-parse", "HEAD"]))
    }

    #[test]
    fn a_push_is_judged_from_what_the_remote_has_on_protected_branches_only() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let (first, second) = two_commits(tmp.path());
        let git = Git::in_dir(tmp.path());
        let update = |branch: &str, old: &str| Update {
            local_oid: second.clone(),
            remote_ref: format!("refs/heads/{branch}"),
            remote_oid: old.to_owned(),
        };
        let only_main = |_: &Update| -> Result<BranchPolicy> {
            let mut b = globset::GlobSetBuilder::new();
            b.add(globset::Glob::new("main").map_err(|e| Error::other(e.to_string()))?);
            Ok(BranchPolicy {
                branches: Some(b.build().map_err(|e| Error::other(e.to_string()))?),
                require_signature: false,
            })
        };
        // The remote has the first commit: only the second is new, and it is not attested.
        let r = check_updates(
            &git,
            &[update("main", &first)],
            &[],
            &[NOTES_REF.to_owned()],
            &only_main,
        )?;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].branch, "main");
        assert_eq!(r[0].commits.len(), 1, "{:?}", r[0].commits);
        // A new branch: every commit the remote does not know.
        let zero = "0".repeat(40);
        let r = check_updates(
            &git,
            &[update("main", &zero)],
            &[],
            &[NOTES_REF.to_owned()],
            &only_main,
        )?;
        assert_eq!(r[0].commits.len(), 2);
        // An old value this repository does not have: judged against what the remote is known
        // to have (nothing here), never as a range from a commit that is not here.
        let unknown = "1234567890abcdef1234567890abcdef12345678";
        let r = check_updates(
            &git,
            &[update("main", unknown)],
            &[],
            &[NOTES_REF.to_owned()],
            &only_main,
        )?;
        assert_eq!(r[0].commits.len(), 2);
        // A branch the protected list leaves out is not checked.
        let r = check_updates(
            &git,
            &[update("topic", &first)],
            &[],
            &[NOTES_REF.to_owned()],
            &only_main,
        )?;
        assert!(r.is_empty(), "{} refusals", r.len());
        Ok(())
    }

    proptest! {
        /// Any input parses or is refused with an error; never a panic, never a silent skip of a
        /// well-formed line.
        #[test]
        fn hook_input_never_panics(input in ".{0,400}") {
            if let Ok(updates) = parse_pre_push(&input) {
                prop_assert_eq!(updates.len(), input.lines().filter(|l| !l.trim().is_empty()).count());
            }
        }
    }
}
