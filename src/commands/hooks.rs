//! `git pipeline hooks install|uninstall|status`, and `git pipeline hook pre-push|pre-receive`,
//! which the installed hooks run.

use std::io::{Read, Write};
use std::path::Path;

use super::emit;
use crate::attest::NOTES_REF;
use crate::attest::hooks;
use crate::attest::hooks::BranchPolicy;
use crate::attest::hooks::Installed;
use crate::attest::hooks::PrePush;
use crate::attest::hooks::Refusal;
use crate::attest::hooks::Uninstalled;
use crate::attest::hooks::Update;
use crate::cli::HookKind;
use crate::cli::HooksAction;
use crate::cli::HooksCmd;
use crate::config::PROJECT_FILE;
use crate::error::Error;
use crate::error::Exit;
use crate::error::Result;
use crate::git::Git;
use crate::git::Repo;
use crate::git::objects;
use crate::ui::Ui;

pub fn hooks(cmd: HooksCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    match cmd.action {
        HooksAction::Install { notes, remote } => {
            let (result, hook) = hooks::install(&repo)?;
            let text = match result {
                Installed::Fresh => format!("installed the pre-push hook at {}\n", hook.display()),
                Installed::Chained(prev) => format!(
                    "installed the pre-push hook at {}; your previous hook, kept at {}, still runs first\n",
                    hook.display(),
                    prev.display()
                ),
                Installed::AlreadyThere => {
                    format!("the pre-push hook at {} is up to date\n", hook.display())
                }
            };
            let travel = if notes {
                let remotes = hooks::install_notes(&repo, remote.as_deref())?;
                format!(
                    "{NOTES_REF} now travels with git push and git fetch for {} (fetched copies: {})\n",
                    remotes.join(", "),
                    crate::git::notes::remote_mirror(NOTES_REF, "<remote>")
                )
            } else {
                format!(
                    "push the notes with the code: git push <remote> HEAD {NOTES_REF} (or install with --notes)\n"
                )
            };
            emit(
                out,
                &format!(
                    "{text}notes now follow `commit --amend` and `rebase` (notes.rewriteRef = {NOTES_REF})\n{travel}"
                ),
            )?;
        }
        HooksAction::Uninstall { notes } => {
            if notes {
                let remotes = hooks::uninstall_notes(&repo)?;
                if !remotes.is_empty() {
                    emit(
                        out,
                        &format!("removed the notes refspecs of {}\n", remotes.join(", ")),
                    )?;
                }
            }
            let text = match hooks::uninstall(&repo)? {
                Uninstalled::Removed => "removed the pre-push hook\n".to_owned(),
                Uninstalled::Restored(p) => {
                    format!(
                        "removed the pre-push hook; your previous hook is back at {}\n",
                        p.display()
                    )
                }
                Uninstalled::NotInstalled => "the pre-push hook was not installed\n".to_owned(),
            };
            emit(out, &text)?;
        }
        HooksAction::Status { json } => {
            let s = hooks::status(&repo)?;
            if json {
                emit(
                    out,
                    &format!("{}\n", serde_json::to_string_pretty(&s).unwrap_or_default()),
                )?;
            } else {
                let state = match s.pre_push {
                    PrePush::Installed => "installed",
                    PrePush::Foreign => "not installed (another pre-push hook is there)",
                    PrePush::None => "not installed",
                };
                let mut t = format!("hooks folder:   {}", s.hooks_dir.display());
                if let Some(p) = &s.hooks_path_config {
                    t.push_str(&format!(" (core.hooksPath = {p})"));
                }
                t.push_str(&format!("\npre-push:       {state}\n"));
                if let Some(c) = &s.chained {
                    t.push_str(&format!("chained hook:   {} (runs first)\n", c.display()));
                }
                t.push_str(&format!(
                    "notes rewrite:  {}\n",
                    if s.notes_follow_rewrites {
                        "notes follow amend and rebase"
                    } else {
                        "off (git pipeline hooks install turns it on)"
                    }
                ));
                t.push_str(&format!(
                    "notes fetched:  {}\n",
                    if s.remotes_fetching_notes.is_empty() {
                        "from no remote (git pipeline hooks install --notes sets it up)".to_owned()
                    } else {
                        format!("from {}", s.remotes_fetching_notes.join(", "))
                    }
                ));
                t.push_str(&format!(
                    "notes pushed:   {}\n",
                    if s.remotes_pushing_notes.is_empty() {
                        "to no remote by default (git pipeline hooks install --notes sets it up)"
                            .to_owned()
                    } else {
                        format!("to {}", s.remotes_pushing_notes.join(", "))
                    }
                ));
                emit(out, &t)?;
            }
        }
    }
    Ok(Exit::Success)
}

pub fn hook(kind: HookKind, cwd: &Path, ui: &Ui) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let git = repo.git().keeping_object_env();
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Error::io("cannot read the hook's input", e))?;
    let (updates, known, notes, side) = match kind {
        HookKind::PrePush { remote, .. } => {
            let mut updates = hooks::parse_pre_push(&input)?;
            if updates.is_empty() {
                updates = from_pre_commit_env();
            }
            if updates.is_empty() {
                // No ref lines: a hook manager that kept git's stdin (pre-commit on a first push,
                // lefthook without use_stdin). Never "nothing to check": work out what the push
                // sends where that is known, or refuse.
                updates = worked_out(&git)?;
            }
            // What the remote already has: its remote-tracking branches, when it is a named
            // remote (the URL argument is never printed nor stored: it may hold credentials).
            let known = match remote.filter(|r| is_remote_name(&git, r)) {
                Some(name) => vec![format!("--remotes={name}")],
                None => vec!["--remotes".to_owned()],
            };
            (updates, known, hooks::notes_sources(&git)?, "push")
        }
        HookKind::PreReceive => {
            let updates = hooks::parse_pre_receive(&input)?;
            // Notes pushed together with the code are the ones to judge by.
            let notes = updates
                .iter()
                .find(|u| {
                    u.remote_ref == NOTES_REF && !crate::attest::verify::is_zero_id(&u.local_oid)
                })
                .map_or_else(|| NOTES_REF.to_owned(), |u| u.local_oid.clone());
            // "What the server has" is filled in below from its protected branches only: a
            // commit that sits on a tag or an unprotected branch has not been checked.
            (updates, Vec::new(), vec![notes], "receive")
        }
    };
    // The receiving side's own git config can require signatures whatever a pushed config says.
    let required_here =
        crate::git::config::get_bool(&git, "pipeline.requireSignature")?.unwrap_or(false);
    let receiving = side == "receive";
    let server_head = if receiving {
        objects::resolve_commit(&git, "HEAD")?
    } else {
        None
    };
    let policy = |u: &Update| -> Result<BranchPolicy> {
        // A push is judged by the policy of what it pushes (the pusher's own protection); a
        // server judges by the policy it already holds (the branch's current tip, or its default
        // branch for a new one), never by a config the push itself brings.
        let at = if !receiving {
            Some(u.local_oid.clone())
        } else if !crate::attest::verify::is_zero_id(&u.remote_oid)
            && objects::commit_exists(&git, &u.remote_oid)?
        {
            Some(u.remote_oid.clone())
        } else {
            server_head.as_ref().map(ToString::to_string)
        };
        policy_at(&git, at.as_deref(), required_here)
    };
    let known = if receiving {
        let head_policy = policy_at(&git, server_head.as_deref(), required_here)?;
        let refused = receive_guards(&git, &updates, &policy)?;
        if !refused.is_empty() {
            ui.error(format!(
                "git-pipeline: refusing to receive: {}",
                refused.join("; ")
            ));
            ui.detail("a server admin can allow it: git config pipeline.allowDeletes true (branches), pipeline.allowNotesRewrite true (notes)");
            return Ok(Exit::StageFailure);
        }
        protected_tips(&git, &head_policy)?
    } else {
        known
    };
    let refusals = hooks::check_updates(&git, &updates, &known, &notes, &policy)?;
    if refusals.is_empty() {
        return Ok(Exit::Success);
    }
    report(ui, &refusals, side);
    Ok(Exit::StageFailure)
}

/// What a server refuses before judging commits: deleting a protected branch (deleting and
/// re-creating it would let the push choose the policy it is judged by), and deleting or
/// rewriting `refs/notes/pipeline` (one push would erase every attestation).
fn receive_guards(
    git: &Git,
    updates: &[Update],
    policy: &dyn Fn(&Update) -> Result<BranchPolicy>,
) -> Result<Vec<String>> {
    use crate::attest::verify::is_zero_id;
    let allow_deletes =
        crate::git::config::get_bool(git, "pipeline.allowDeletes")?.unwrap_or(false);
    let allow_notes_rewrite =
        crate::git::config::get_bool(git, "pipeline.allowNotesRewrite")?.unwrap_or(false);
    let mut refused = Vec::new();
    for u in updates {
        if let Some(branch) = u.remote_ref.strip_prefix(crate::git::refs::HEADS)
            && is_zero_id(&u.local_oid)
            && !allow_deletes
            && policy(u)?.branches.is_none_or(|g| g.is_match(branch))
        {
            refused.push(format!("deleting the protected branch {branch}"));
        }
        if u.remote_ref == NOTES_REF && !allow_notes_rewrite && !is_zero_id(&u.remote_oid) {
            if is_zero_id(&u.local_oid) {
                refused.push(format!("deleting {NOTES_REF}"));
            } else if !objects::is_ancestor(git, &u.remote_oid, &u.local_oid)? {
                refused.push(format!(
                    "rewriting {NOTES_REF} (not a fast-forward: attestations would be lost)"
                ));
            }
        }
    }
    Ok(refused)
}

/// The tips of the server's protected branches: commits reachable from them were checked when
/// they came, so a new branch is judged for the rest.
fn protected_tips(git: &Git, policy: &BranchPolicy) -> Result<Vec<String>> {
    Ok(crate::git::refs::all(git)?
        .into_iter()
        .filter_map(|(name, oid)| {
            let branch = name.strip_prefix(crate::git::refs::HEADS)?;
            policy
                .branches
                .as_ref()
                .is_none_or(|g| g.is_match(branch))
                .then_some(oid)
        })
        .collect())
}

fn report(ui: &Ui, refusals: &[Refusal], side: &str) {
    let n: usize = refusals.iter().map(|r| r.commits.len()).sum();
    ui.error(format!(
        "git-pipeline: refusing to {side} {n} commit{} without a valid verification attestation",
        if n == 1 { "" } else { "s" }
    ));
    for r in refusals {
        ui.detail(format!("to branch {}:", r.branch));
        for j in &r.commits {
            ui.detail(super::verify::line(j).trim_end());
        }
    }
    ui.detail("fix: run the work through the pipeline (git pipeline run \"...\"), or attest a commit made by hand:");
    ui.detail("       git pipeline reverify <commit>");
    ui.detail(format!(
        "notes travel separately: git push <remote> <branch> {NOTES_REF}"
    ));
    if side == "push" {
        ui.detail("to push anyway (the check is skipped, not passed): git push --no-verify");
    }
}

fn is_remote_name(git: &Git, name: &str) -> bool {
    !name.contains('/')
        && !name.contains(':')
        && crate::git::config::get(git, &format!("remote.{name}.url")).is_ok_and(|v| v.is_some())
}

/// The pre-commit framework runs pre-push hooks with environment variables, not stdin.
fn from_pre_commit_env() -> Vec<Update> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (get("PRE_COMMIT_TO_REF"), get("PRE_COMMIT_REMOTE_BRANCH")) {
        (Some(to), Some(branch)) => vec![Update {
            local_oid: to,
            remote_ref: branch,
            remote_oid: get("PRE_COMMIT_FROM_REF").unwrap_or_else(|| "0".repeat(40)),
        }],
        _ => Vec::new(),
    }
}

/// What a push sends when the hook was told nothing: pre-commit's first push to a remote names
/// the local branch (`PRE_COMMIT_LOCAL_BRANCH`) and the remote one; every commit of it that no
/// ref of the remote has is checked. Anything else cannot be known (the branch checked out is
/// not necessarily what is pushed): refused.
fn worked_out(git: &Git) -> Result<Vec<Update>> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let cannot = |why: &str| {
        Error::usage_hint(
            format!(
                "git-pipeline: the pre-push hook was given no ref lines{why}: refusing, since what is pushed cannot be checked"
            ),
            "let the hook manager pass git's stdin to `git pipeline hook pre-push` (lefthook: use_stdin: true)",
        )
    };
    let Some(local) = get("PRE_COMMIT_LOCAL_BRANCH") else {
        return Err(cannot(""));
    };
    let local_ref = if local.starts_with("refs/") {
        local
    } else {
        crate::git::refs::heads(&local)
    };
    let Some(oid) = objects::ref_value(git, &local_ref)? else {
        return Err(cannot(&format!(" and {local_ref} names no commit")));
    };
    Ok(vec![Update {
        local_oid: oid.to_string(),
        remote_ref: get("PRE_COMMIT_REMOTE_BRANCH").unwrap_or(local_ref),
        remote_oid: "0".repeat(oid.len()),
    }])
}

/// `push.branches` and `push.require_signature` from the config at `commit` (the project's policy
/// there); every branch when there is none. A config that cannot be read enforces every branch.
fn policy_at(git: &Git, commit: Option<&str>, required_here: bool) -> Result<BranchPolicy> {
    // Only `[push]` is read, leniently: a config with keys this version does not know (a newer
    // git-pipeline wrote it) must not lose its push policy. A `[push]` that cannot be read
    // enforces every branch and requires signatures: a broken policy never loosens.
    let push = match commit {
        None => None,
        Some(c) => objects::read_blob(git, c, PROJECT_FILE)?.map(|bytes| {
            toml::from_str::<toml::Table>(&String::from_utf8_lossy(&bytes))
                .ok()
                .map(|t| t.get("push").cloned())
        }),
    };
    let (patterns, required_by_project) = match push {
        // No config, or one without [push]: the defaults.
        None | Some(Some(None)) => (vec!["*".to_owned()], false),
        Some(Some(Some(push))) if !push.is_table() => (vec!["*".to_owned()], true),
        Some(Some(Some(push))) => {
            let branches = match push.get("branches") {
                None => Some(vec!["*".to_owned()]),
                Some(v) => v.as_array().and_then(|a| {
                    a.iter()
                        .map(|p| p.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                }),
            };
            let required = match push.get("require_signature") {
                None => Some(false),
                Some(v) => v.as_bool(),
            };
            match (branches, required) {
                (Some(b), Some(r)) => (b, r),
                _ => (vec!["*".to_owned()], true),
            }
        }
        // A config that is not TOML at all.
        Some(None) => (vec!["*".to_owned()], true),
    };
    let mut b = globset::GlobSetBuilder::new();
    let mut valid = true;
    for p in &patterns {
        match globset::Glob::new(p) {
            Ok(g) => {
                b.add(g);
            }
            Err(_) => valid = false,
        }
    }
    Ok(BranchPolicy {
        branches: if valid { b.build().ok() } else { None },
        require_signature: required_here || required_by_project,
    })
}
