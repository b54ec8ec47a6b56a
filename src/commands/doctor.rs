//! `git pipeline doctor`: can a run start here, and if not, what to do about it.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::emit;
use crate::agent;
use crate::cli::DoctorCmd;
use crate::config;
use crate::config::PROJECT_FILE;
use crate::error::Exit;
use crate::error::Result;
use crate::git::Repo;
use crate::git::objects;
use crate::git::prepare;
use crate::preset::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    /// Worth knowing; a run can start.
    Note,
    /// A run cannot start (or will certainly fail).
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub level: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(check: &str, detail: impl Into<String>) -> Finding {
    Finding {
        check: check.to_owned(),
        level: Level::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn bad(check: &str, level: Level, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check: check.to_owned(),
        level,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// The oldest git with everything git-pipeline uses (`merge-tree --write-tree`).
const MIN_GIT: (u32, u32) = (2, 38);

pub fn doctor(cmd: DoctorCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let findings = diagnose(cwd);
    let can_run = findings.iter().all(|f| f.level != Level::Error);
    if cmd.json {
        let v = serde_json::json!({"can_run": can_run, "findings": findings});
        emit(
            out,
            &format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()),
        )?;
    } else {
        let mut t = String::new();
        for f in &findings {
            let mark = match f.level {
                Level::Ok => "ok   ",
                Level::Note => "note ",
                Level::Error => "ERROR",
            };
            t.push_str(&format!("{mark} {:<16} {}\n", f.check, f.detail));
            if let Some(fix) = &f.fix {
                t.push_str(&format!("      {:<16} fix: {fix}\n", ""));
            }
        }
        t.push_str(if can_run {
            "a run can start here\n"
        } else {
            "a run cannot start here until the errors above are fixed\n"
        });
        emit(out, &t)?;
    }
    Ok(if can_run { Exit::Success } else { Exit::Usage })
}

fn diagnose(cwd: &Path) -> Vec<Finding> {
    let mut f = Vec::new();
    match crate::git::config::version() {
        Some((ma, mi, v)) if (ma, mi) >= MIN_GIT => f.push(ok("git", format!("git {v}"))),
        Some((_, _, v)) => f.push(bad(
            "git",
            Level::Error,
            format!("git {v} is older than {}.{}", MIN_GIT.0, MIN_GIT.1),
            "install git 2.38 or newer",
        )),
        None => {
            f.push(bad(
                "git",
                Level::Error,
                "git is not installed",
                "install git",
            ));
            return f;
        }
    }
    let repo = match Repo::discover(cwd) {
        Ok(r) => r,
        Err(e) => {
            f.push(bad(
                "repository",
                Level::Error,
                e.to_string(),
                "run git pipeline doctor inside a git repository",
            ));
            return f;
        }
    };
    f.push(ok("repository", repo.common_dir.display().to_string()));
    let git = repo.git();
    let Ok(Some(head)) = objects::resolve_commit(&git, "HEAD") else {
        f.push(bad(
            "repository",
            Level::Error,
            "HEAD names no commit",
            "make a first commit",
        ));
        return f;
    };
    let loaded = match config::load(&repo, &head, "HEAD") {
        Ok(Some(l)) => l,
        Ok(None) => {
            let on_disk = repo
                .work_tree
                .as_ref()
                .is_some_and(|w| w.join(PROJECT_FILE).is_file());
            f.push(if on_disk {
                bad(
                    "config",
                    Level::Error,
                    format!("{PROJECT_FILE} is not committed: runs read the config at the base commit, and HEAD has none"),
                    format!("commit it: git add {PROJECT_FILE} && git commit -m \"Add {PROJECT_FILE}\""),
                )
            } else {
                bad(
                    "config",
                    Level::Error,
                    format!("no {PROJECT_FILE} at HEAD and no personal config"),
                    "git pipeline init, then commit it",
                )
            });
            return f;
        }
        Err(e) => {
            f.push(bad(
                "config",
                Level::Error,
                e.to_string(),
                e.hint().unwrap_or("fix the file").to_owned(),
            ));
            return f;
        }
    };
    let sources: Vec<String> = [&loaded.project, &loaded.personal]
        .into_iter()
        .flatten()
        .map(|s| s.name.clone())
        .collect();
    f.push(ok("config", format!("valid: {}", sources.join(", "))));
    if let Some(w) = crate::plan::uncommitted_config_warning(&repo, &loaded, "HEAD") {
        f.push(Finding {
            check: "config".to_owned(),
            level: Level::Note,
            detail: w,
            fix: Some(format!("commit {PROJECT_FILE} for runs to use your edits")),
        });
    }
    f.extend(misspelt_roles(&loaded));
    f.extend(dependencies_finding(&git, &head, &loaded.config));
    if crate::policy::trust::needs_trust(&loaded) {
        let blob = crate::policy::trust::key(&git, &head).ok().flatten();
        if blob
            .as_deref()
            .is_some_and(crate::policy::trust::is_trusted)
        {
            f.push(ok(
                "trust",
                "this .pipeline.toml is trusted on this machine",
            ));
        } else {
            f.push(bad(
                "trust",
                Level::Error,
                "this .pipeline.toml runs commands and is not trusted on this machine",
                "read it, then: git pipeline trust",
            ));
        }
    } else {
        f.push(ok("trust", "the config runs no commands of its own"));
    }
    let search = repo
        .work_tree
        .clone()
        .or_else(|| repo.main_worktree.clone())
        .unwrap_or_else(|| repo.common_dir.clone());
    let mut presets: Vec<&'static str> = Vec::new();
    let mut read_only_presets: Vec<(Role, &'static str)> = Vec::new();
    for role in Role::ALL {
        let required = matches!(role, Role::Builder | Role::Verifier);
        let check = format!("agent {}", role.name());
        match agent::resolve(&loaded, role, &[], &search) {
            Ok(Some(a)) => {
                for c in &a.candidates {
                    if let Some(p) = c.preset {
                        if !presets.contains(&p) {
                            presets.push(p);
                        }
                        if !crate::preset::role_edits(role) {
                            read_only_presets.push((role, p));
                        }
                    }
                }
                let used = a
                    .candidates
                    .first()
                    .map(|c| c.argv.join(" "))
                    .unwrap_or_default();
                let mut detail = format!("{}: {used}", a.name);
                if a.candidates.len() > 1 {
                    detail.push_str(&format!(
                        " (then, for longer prompts: {})",
                        a.candidates[1..]
                            .iter()
                            .map(|c| c.program().to_owned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if !a.missing.is_empty() {
                    detail.push_str(&format!("; not installed: {}", a.missing.join(", ")));
                }
                f.push(ok(&check, detail));
            }
            Ok(None) if required => f.push(bad(
                &check,
                Level::Error,
                format!("no {} agent configured", role.name()),
                format!(
                    "add [agents.{}] with command = \"claude\" (or another preset)",
                    role.name()
                ),
            )),
            Ok(None) => f.push(Finding {
                check,
                level: Level::Note,
                detail: "not configured: its stage is skipped".to_owned(),
                fix: None,
            }),
            Err(e) => f.push(bad(
                &check,
                Level::Error,
                e.to_string(),
                e.hint().unwrap_or("install it").to_owned(),
            )),
        }
    }
    f.extend(presets.iter().filter_map(|p| version_finding(p, &search)));
    f.extend(read_only_finding(
        &read_only_presets,
        loaded.config.run.sandbox,
    ));
    f.extend(prompt_limit_finding(&loaded, &git, &head, &search));
    f.extend(scope_findings(&loaded, &git, &head));
    for g in &loaded.config.gates {
        let check = format!("gate {}", g.name.get_ref());
        let Some(program) = g.program().map(str::to_owned) else {
            // Builtin: its options were checked with the config; say which engine runs it.
            let jscpd = crate::gates::jscpd::installed(&search);
            let engine = g.engine.as_deref().unwrap_or("auto");
            match (engine, jscpd) {
                ("jscpd", None) => f.push(bad(
                    &check,
                    Level::Error,
                    "engine = \"jscpd\", but no jscpd 5.x is on PATH: this gate would fail every run",
                    "npm install -g jscpd@5.3.2, or set engine = \"auto\"",
                )),
                ("builtin", _) | (_, None) => f.push(ok(
                    &check,
                    format!("{} (in-process detector; always available)", g.describe()),
                )),
                (_, Some(v)) => f.push(ok(&check, format!("{} (jscpd {v})", g.describe()))),
            }
            continue;
        };
        if agent::find_program(&program, &search).is_some() {
            f.push(ok(&check, g.command.get_ref().join(" ")));
        } else {
            f.push(bad(
                &check,
                Level::Error,
                format!("`{program}` is not found: this gate would fail every run"),
                format!("install {program}, or change the gate's command"),
            ));
        }
    }
    for s in &loaded.config.setup {
        let check = format!("setup {}", s.name.get_ref());
        let command = s.command.get_ref();
        let program = command.first().map(String::as_str).unwrap_or_default();
        // A program named by its path in the repository (`./scripts/setup.sh`) is in the worktree.
        let found = program.contains('/') && !program.starts_with('/')
            || agent::find_program(program, &search).is_some();
        if found {
            f.push(ok(&check, command.join(" ")));
        } else {
            f.push(bad(
                &check,
                Level::Error,
                format!("`{program}` is not found: every run would stop before its first agent"),
                format!("install {program}, or change the setup step's command"),
            ));
        }
    }
    if let Err(e) = prepare::check_lfs(&git, &head) {
        f.push(bad(
            "git-lfs",
            Level::Error,
            e.to_string(),
            e.hint().unwrap_or("install git-lfs").to_owned(),
        ));
    }
    f.push(worktree_root_finding(
        &repo,
        &loaded.config.run.worktree_root,
    ));
    let caps = crate::platform::CAPABILITIES;
    let watch = if crate::safety::watch::enabled() {
        caps.checkout_watch
    } else {
        "off (GIT_PIPELINE_WATCH=0): git status comparison"
    };
    f.push(ok(
        "platform",
        format!(
            "{}: checkout watch {watch}; leftover processes via {}",
            caps.os, caps.process_listing
        ),
    ));
    f.push(sandbox_finding(loaded.config.run.sandbox));
    f.push(signing_finding(&git, loaded.config.attest.sign));
    match crate::attest::hooks::status(&repo) {
        Ok(s) if s.pre_push == crate::attest::hooks::PrePush::Installed => f.push(ok(
            "pre-push hook",
            format!("installed in {}", s.hooks_dir.display()),
        )),
        Ok(_) => f.push(Finding {
            check: "pre-push hook".to_owned(),
            level: Level::Note,
            detail: "not installed: unattested commits can be pushed".to_owned(),
            fix: Some("git pipeline hooks install".to_owned()),
        }),
        Err(e) => f.push(bad(
            "pre-push hook",
            Level::Note,
            e.to_string(),
            "git pipeline hooks status",
        )),
    }
    f
}

/// A read-only role given to a CLI whose read-only mode lets writes through (droid runs shell
/// commands the model calls low-risk), where no sandbox makes the worktree read-only for it.
fn read_only_finding(
    read_only: &[(Role, &'static str)],
    mode: crate::sandbox::Mode,
) -> Option<Finding> {
    let roles: Vec<&str> = read_only
        .iter()
        .filter(|(_, p)| *p == "droid")
        .map(|(r, _)| r.name())
        .collect();
    if roles.is_empty() || (mode != crate::sandbox::Mode::Off && crate::sandbox::probe().enforced) {
        return None;
    }
    Some(bad(
        "read-only roles",
        Level::Note,
        format!(
            "droid's read-only mode runs shell commands its model calls low-risk, writes included, and no sandbox makes the worktree read-only here: a write by the {} fails the run (detected, not prevented)",
            roles.join(", ")
        ),
        "keep run.sandbox on (\"auto\") where the platform has one, or give the read-only roles another CLI",
    ))
}

/// A preset CLI whose version is not the one the agent contract suite passed on: its flags or
/// output may have changed (docs/agents.md).
fn version_finding(preset: &str, search: &Path) -> Option<Finding> {
    let tested = crate::preset::version::tested(preset)?;
    let program = agent::find_program(crate::preset::find(preset)?.edit.first()?, search)?;
    let check = format!("{preset} version");
    let Some(expected) = tested.version else {
        let why = tested.why_untested.unwrap_or("it could not be installed");
        return Some(bad(
            &check,
            Level::Note,
            format!("the {preset} preset is untested: {why}"),
            "try a run on a scratch branch first, or give the argv yourself (docs/agents.md)",
        ));
    };
    let found = crate::preset::version::ask(&program, std::time::Duration::from_secs(10));
    Some(match found {
        Some(v) if v == expected => ok(
            &check,
            format!("{v}, the version the contract suite passed on"),
        ),
        Some(v) => bad(
            &check,
            Level::Note,
            format!(
                "{preset} {v} is not the tested {expected}: its flags or output may have changed"
            ),
            format!(
                "if a run misbehaves, install the tested one (the preset's package at {expected}) or give the argv yourself (docs/agents.md)"
            ),
        ),
        None => bad(
            &check,
            Level::Note,
            format!(
                "`{} --version` printed no version in 10 s",
                program.display()
            ),
            format!("check that {preset} runs here; the tested version is {expected}"),
        ),
    })
}

/// A run's worktree is a new checkout (or a slot another run left): dependencies installed in your
/// checkout (ignored `node_modules/`, a poetry environment) are not in a new one. Without a setup
/// step (or a first gate) that installs them, every gate that needs them fails, and the builder
/// is sent to fix what it did not break.
fn dependencies_finding(
    git: &crate::git::Git,
    head: &str,
    config: &crate::config::Config,
) -> Option<Finding> {
    let gates = &config.gates;
    let at_head = |path: &str| {
        objects::resolve_blob(git, head, path)
            .ok()
            .flatten()
            .is_some()
    };
    let (tool, install, lock): (&str, &[&str], &str) = if at_head("pnpm-lock.yaml") {
        (
            "pnpm",
            &["pnpm", "install", "--frozen-lockfile"],
            "pnpm-lock.yaml",
        )
    } else if at_head("yarn.lock") {
        (
            "yarn",
            &["yarn", "install", "--frozen-lockfile"],
            "yarn.lock",
        )
    } else if at_head("package-lock.json") {
        ("npm", &["npm", "ci"], "package-lock.json")
    } else if at_head("poetry.lock") {
        (
            "poetry",
            &["poetry", "install", "--no-interaction"],
            "poetry.lock",
        )
    } else {
        return None;
    };
    let installs = |c: &[String]| {
        c.first().is_some_and(|p| p == tool)
            && c.iter().skip(1).any(|a| a == "install" || a == "ci")
    };
    let installed = config.setup.iter().any(|s| installs(s.command.get_ref()))
        || gates.iter().any(|g| installs(g.command.get_ref()));
    if installed || gates.is_empty() {
        return None;
    }
    Some(Finding {
        check: "dependencies".to_owned(),
        level: Level::Note,
        detail: format!(
            "a run's worktree is a new checkout without your installed dependencies, and no setup step installs them ({tool}): gates that need them will fail"
        ),
        fix: Some(format!(
            "add a setup step that installs them: [[setup]] name = \"deps\" command = {:?} when_changed = [{lock:?}]",
            install
        )),
    })
}

/// Whether attestations will be signed, and with what (docs/attestations.md).
fn signing_finding(git: &crate::git::Git, mode: crate::config::SignMode) -> Finding {
    const CHECK: &str = "attestations";
    if mode == crate::config::SignMode::Off {
        return ok(CHECK, "unsigned ([attest] sign = \"off\")");
    }
    match crate::attest::sign::Signer::from_git(git) {
        Ok(Some(signer)) => ok(CHECK, format!("signed with {}", signer.describe())),
        Ok(None) => Finding {
            check: CHECK.to_owned(),
            level: Level::Note,
            detail: "unsigned: git has no signing key (user.signingKey), so a server cannot tell them from forged ones".to_owned(),
            fix: Some("git config gpg.format ssh && git config user.signingKey ~/.ssh/id_ed25519.pub".to_owned()),
        },
        Err(e) => bad(
            CHECK,
            Level::Note,
            format!("unsigned: {e}"),
            "see docs/attestations.md#signed-when-you-sign",
        ),
    }
}

/// `[agents.<name>]` entries whose name is almost a role: a typo there leaves the role without
/// the agent the user meant (any other name is an agent picked with `--agent ROLE=NAME`).
fn misspelt_roles(loaded: &crate::config::LoadedConfig) -> Vec<Finding> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    loaded
        .config
        .agents
        .keys()
        .filter(|name| Role::parse(name).is_none())
        .filter_map(|name| {
            let role = Role::ALL
                .into_iter()
                .find(|r| distance(name, r.name()) <= 2)?;
            Some(Finding {
                check: format!("agent {name}"),
                level: Level::Note,
                detail: format!(
                    "[agents.{name}] is not a role: it runs only when picked with --agent ROLE={name}"
                ),
                fix: Some(format!("did you mean [agents.{}]?", role.name())),
            })
        })
        .collect()
}

/// A builder whose every candidate refuses prompts as long as the shortest one a run sends
/// could never start.
fn prompt_limit_finding(
    loaded: &crate::config::LoadedConfig,
    git: &crate::git::Git,
    head: &str,
    search: &Path,
) -> Option<Finding> {
    let builder = agent::resolve(loaded, Role::Builder, &[], search).ok()??;
    let templates = crate::plan::prompts::Templates::load(git, head).ok()?;
    let smallest = templates
        .render(
            "builder",
            crate::plan::prompts::BuilderVars {
                run_id: "20260101-000000-0000",
                attempt: 1,
                branch: "pipeline/20260101-000000-0000",
                base: head,
                task: "x",
                spec: None,
                plan: None,
                scope: &[],
                gates: Vec::new(),
                feedback: None,
            },
        )
        .ok()?
        .len();
    builder.pick(smallest).is_none().then(|| {
        bad(
            "agent builder",
            Level::Error,
            format!(
                "every builder command has a max_prompt_bytes below {smallest} bytes, the size of the shortest builder prompt: no run can start its builder"
            ),
            "raise max_prompt_bytes, or add a command without a limit",
        )
    })
}

/// Scope globs of the config that match no file at HEAD (a typo, or a folder named without
/// `/**`): the same warning a run gives.
fn scope_findings(
    loaded: &crate::config::LoadedConfig,
    git: &crate::git::Git,
    head: &str,
) -> Vec<Finding> {
    let strings = |v: &Option<Vec<toml::Spanned<String>>>| {
        v.as_ref()
            .map(|l| l.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>())
    };
    let s = &loaded.config.scope;
    let Ok(scope) = crate::policy::scope::Scope::new(
        strings(&s.allow),
        strings(&s.create),
        strings(&s.deny).unwrap_or_default(),
    ) else {
        return Vec::new();
    };
    if scope.unrestricted() {
        return Vec::new();
    }
    match crate::plan::scope_at_base(git, head, &scope) {
        Ok((_, warnings)) => warnings
            .into_iter()
            .map(|w| Finding {
                check: "scope".to_owned(),
                level: Level::Note,
                detail: w.trim_start_matches("scope: ").to_owned(),
                fix: Some("fix scope.allow in .pipeline.toml".to_owned()),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// What the OS sandbox of agents and gates enforces here, against what the config asks.
fn sandbox_finding(mode: crate::sandbox::Mode) -> Finding {
    use crate::sandbox::Mode;
    if mode == Mode::Off {
        return Finding {
            check: "sandbox".to_owned(),
            level: Level::Note,
            detail: "off (run.sandbox = \"off\"): agents and gates run with your rights, checked after each step".to_owned(),
            fix: Some("remove run.sandbox = \"off\" to sandbox them where the platform can".to_owned()),
        };
    }
    let found = crate::sandbox::probe();
    match (mode, found.enforced) {
        (_, true) => ok(
            "sandbox",
            format!(
                "{}: agents and gates write only their worktree, git's objects and their branch, a private temporary folder, build caches and sandbox.writable",
                found.detail
            ),
        ),
        (Mode::Required, false) => bad(
            "sandbox",
            Level::Error,
            format!("run.sandbox = \"required\", but {}", found.detail),
            "use Linux 5.13 or newer with Landlock enabled, or macOS; or set run.sandbox = \"auto\"",
        ),
        (_, false) => bad(
            "sandbox",
            Level::Note,
            format!(
                "{}: agents and gates run with your rights, checked after each step",
                found.detail
            ),
            "use Linux 5.13 or newer with Landlock enabled, or macOS",
        ),
    }
}

fn worktree_root_finding(repo: &Repo, configured: &str) -> Finding {
    use std::os::unix::fs::MetadataExt;
    // The same rule a run applies: inside the checkout or the git dir is refused.
    let root = match crate::plan::worktree_root(repo, configured) {
        Ok(r) => r,
        Err(e) => {
            return bad(
                "worktree root",
                Level::Error,
                e.to_string(),
                e.hint()
                    .unwrap_or("set run.worktree_root to a folder outside the checkout")
                    .to_owned(),
            );
        }
    };
    // The nearest folder that exists is where the root would be created.
    let mut probe = root.clone();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    let writable = tempfile::Builder::new()
        .prefix(".git-pipeline-doctor")
        .tempfile_in(&probe)
        .is_ok();
    if !writable {
        return bad(
            "worktree root",
            Level::Error,
            format!(
                "{} cannot be written (checked in {})",
                root.display(),
                probe.display()
            ),
            "set run.worktree_root to a folder you can write",
        );
    }
    let same_fs = match (
        std::fs::metadata(&probe),
        std::fs::metadata(&repo.common_dir),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => true,
    };
    if same_fs {
        ok(
            "worktree root",
            format!(
                "{} (writable, same filesystem as the repository)",
                root.display()
            ),
        )
    } else {
        Finding {
            check: "worktree root".to_owned(),
            level: Level::Note,
            detail: format!(
                "{} is on another filesystem than the repository: checkouts are slower",
                root.display()
            ),
            fix: Some("set run.worktree_root next to the repository".to_owned()),
        }
    }
}
