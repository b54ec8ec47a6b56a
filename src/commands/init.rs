//! `git pipeline init`: a commented starter `.pipeline.toml` at the top of the worktree, with
//! gates proposed from the project's own tooling and agents from the CLIs installed here.

use std::io::Write;
use std::path::Path;

use super::emit;
use crate::agent::find_program;
use crate::cli::InitCmd;
use crate::config::PROJECT_FILE;
use crate::error::Error;
use crate::error::Exit;
use crate::error::Result;
use crate::git::Repo;

/// A proposed gate: name, argv, and where the proposal came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub name: &'static str,
    pub command: Vec<String>,
    pub why: String,
}

fn gate(name: &'static str, command: &[&str], why: impl Into<String>) -> Gate {
    Gate {
        name,
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        why: why.into(),
    }
}

/// A proposed `[[setup]]` step: it installs dependencies, again only when `when_changed` do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub command: Vec<String>,
    pub when_changed: Vec<String>,
    pub why: String,
}

/// What the project is, from its files: a label, setup steps, gates, the folders a run may
/// touch, and the build caches a worktree slot keeps.
pub struct Project {
    pub kinds: Vec<&'static str>,
    pub setup: Vec<Setup>,
    pub gates: Vec<Gate>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub caches: Vec<String>,
}

pub fn detect(top: &Path) -> Project {
    let has = |f: &str| top.join(f).exists();
    let markers: Vec<String> = std::fs::read_dir(top)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut p = Project {
        kinds: Vec::new(),
        setup: Vec::new(),
        gates: Vec::new(),
        allow: Vec::new(),
        deny: Vec::new(),
        caches: crate::plan::caches::for_markers(&markers),
    };
    if has("Cargo.toml") {
        let manifest: toml::Table = std::fs::read_to_string(top.join("Cargo.toml"))
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or_default();
        let members: Vec<String> = manifest
            .get("workspace")
            .and_then(|w| w.get("members"))
            .and_then(|m| m.as_array())
            .map(|m| {
                m.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if members.is_empty() {
            p.kinds.push("Rust (Cargo)");
            p.gates
                .push(gate("fmt", &["cargo", "fmt", "--check"], "Cargo.toml"));
            p.gates.push(gate(
                "clippy",
                &["cargo", "clippy", "--all-targets", "--", "-D", "warnings"],
                "Cargo.toml",
            ));
            p.gates.push(gate("test", &["cargo", "test"], "Cargo.toml"));
        } else {
            // A workspace: with a root package, plain `cargo test` tests the root only, and a
            // failing member test would pass the gate.
            p.kinds.push("Rust (Cargo workspace)");
            let why = "[workspace] members in Cargo.toml";
            p.gates
                .push(gate("fmt", &["cargo", "fmt", "--all", "--check"], why));
            p.gates.push(gate(
                "clippy",
                &[
                    "cargo",
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
                why,
            ));
            p.gates
                .push(gate("test", &["cargo", "test", "--workspace"], why));
            for m in &members {
                // `crates/*` and `crates/grep` both mean everything in those folders.
                let dir = m.trim_end_matches("/*").trim_end_matches('/');
                p.allow.push(format!("{dir}/**"));
            }
        }
        p.deny.push("Cargo.lock".to_owned());
        for d in ["src", "tests", "benches", "examples"] {
            p.allow.push(format!("{d}/**"));
        }
        // The root package's targets may live anywhere (ripgrep 14: `[[bin]] path =
        // "crates/core/main.rs"`, no member), and its build script at the top.
        for path in cargo_target_paths(&manifest, has("build.rs")) {
            match path.rsplit_once('/') {
                Some((dir, _)) => p.allow.push(format!("{dir}/**")),
                None => p.allow.push(path),
            }
        }
    }
    if has("package.json") {
        let (tool, lock) = if has("pnpm-lock.yaml") {
            ("pnpm", "pnpm-lock.yaml")
        } else if has("yarn.lock") {
            ("yarn", "yarn.lock")
        } else {
            ("npm", "package-lock.json")
        };
        p.kinds.push(match tool {
            "pnpm" => "JavaScript (pnpm)",
            "yarn" => "JavaScript (yarn)",
            _ => "JavaScript (npm)",
        });
        // A new worktree has no `node_modules/` (ignored): a setup step installs exactly what the
        // lockfile says (it never edits the lockfile), and a warm slot skips it until the
        // lockfile changes.
        let install: Option<&[&str]> = match tool {
            "pnpm" => Some(&["pnpm", "install", "--frozen-lockfile"]),
            // Yarn 2+ (a `.yarnrc.yml`) spells it `--immutable`; 1.x `--frozen-lockfile`.
            "yarn" if has(".yarnrc.yml") => Some(&["yarn", "install", "--immutable"]),
            "yarn" => Some(&["yarn", "install", "--frozen-lockfile"]),
            _ if has("package-lock.json") => Some(&["npm", "ci", "--no-audit", "--no-fund"]),
            _ => None,
        };
        if let Some(cmd) = install {
            p.setup.push(Setup {
                command: cmd.iter().map(|s| (*s).to_owned()).collect(),
                when_changed: vec![lock.to_owned(), "package.json".to_owned()],
                why: format!("{lock}: a new worktree has no node_modules/"),
            });
        }
        let scripts: Vec<String> = std::fs::read_to_string(top.join("package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("scripts").and_then(|s| s.as_object()).cloned())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (name, script) in [
            ("lint", "lint"),
            ("types", "typecheck"),
            ("types", "type-check"),
            ("test", "test"),
        ] {
            if scripts.iter().any(|s| s == script) && !p.gates.iter().any(|g| g.name == name) {
                let cmd: Vec<&str> = if tool == "npm" {
                    vec!["npm", "run", script]
                } else {
                    vec![tool, "run", script]
                };
                p.gates.push(gate(
                    name,
                    &cmd,
                    format!("package.json script \"{script}\""),
                ));
            }
        }
        p.deny.push(lock.to_owned());
        for d in ["src", "test", "tests", "lib"] {
            p.allow.push(format!("{d}/**"));
        }
    }
    if has("pyproject.toml") || has("setup.py") || has("requirements.txt") {
        let pyproject = std::fs::read_to_string(top.join("pyproject.toml")).unwrap_or_default();
        let run: &[&str] = if has("uv.lock") {
            p.kinds.push("Python (uv)");
            // `uv run` would sync inside the first gate; a setup step does it once per slot,
            // exactly as locked, and a warm slot skips it until the lockfile changes.
            p.setup.push(Setup {
                command: ["uv", "sync", "--frozen"].map(str::to_owned).to_vec(),
                when_changed: vec!["uv.lock".to_owned(), "pyproject.toml".to_owned()],
                why: "uv.lock: a new worktree has no .venv/".to_owned(),
            });
            &["uv", "run"]
        } else if has("poetry.lock") {
            p.kinds.push("Python (poetry)");
            // `poetry run` does not install (`uv run` does): a new worktree needs it first.
            p.setup.push(Setup {
                command: ["poetry", "install", "--no-interaction"]
                    .map(str::to_owned)
                    .to_vec(),
                when_changed: vec!["poetry.lock".to_owned(), "pyproject.toml".to_owned()],
                why: "poetry.lock: a new worktree has no environment".to_owned(),
            });
            &["poetry", "run"]
        } else {
            p.kinds.push("Python");
            &["python", "-m"]
        };
        let with = |tail: &[&'static str]| -> Vec<&'static str> {
            run.iter().chain(tail).copied().collect()
        };
        if pyproject.contains("[tool.ruff") {
            p.gates.push(gate(
                "lint",
                &with(&["ruff", "check", "."]),
                "[tool.ruff] in pyproject.toml",
            ));
        }
        if pyproject.contains("[tool.mypy") {
            p.gates.push(gate(
                "types",
                &with(&["mypy", "."]),
                "[tool.mypy] in pyproject.toml",
            ));
        }
        // A type checker the project depends on, without a [tool.*] table of its own.
        for (checker, args) in [("mypy", &["mypy", "."][..]), ("pyright", &["pyright"][..])] {
            if !p.gates.iter().any(|g| g.name == "types") && names_package(&pyproject, checker) {
                p.gates.push(gate(
                    "types",
                    &with(args),
                    format!("{checker} is a dependency in pyproject.toml"),
                ));
            }
        }
        p.gates
            .push(gate("test", &with(&["pytest"]), "a Python project"));
        for d in ["src", "tests"] {
            p.allow.push(format!("{d}/**"));
        }
        // A package at the root (poetry's layout): its folder is the code.
        let table: toml::Table = pyproject.parse().unwrap_or_default();
        let name = table
            .get("project")
            .and_then(|p| p.get("name"))
            .or_else(|| {
                table
                    .get("tool")
                    .and_then(|t| t.get("poetry"))
                    .and_then(|p| p.get("name"))
            })
            .and_then(|n| n.as_str())
            .map(|n| n.replace(['-', '.'], "_").to_lowercase());
        if let Some(pkg) = name
            && top.join(&pkg).join("__init__.py").is_file()
        {
            p.allow.push(format!("{pkg}/**"));
        }
        for lock in ["uv.lock", "poetry.lock"] {
            if has(lock) {
                p.deny.push(lock.to_owned());
            }
        }
    }
    if has("go.mod") {
        p.kinds.push("Go");
        p.gates.push(gate(
            "fmt",
            // `gofmt -l` exits 0 whatever it finds, and a missing gofmt would print nothing:
            // both must fail the gate.
            &[
                "sh",
                "-c",
                "command -v gofmt >/dev/null || { echo 'gofmt is not installed' >&2; exit 127; }; test -z \"$(gofmt -l .)\"",
            ],
            "go.mod",
        ));
        p.gates.push(gate("vet", &["go", "vet", "./..."], "go.mod"));
        p.gates
            .push(gate("test", &["go", "test", "./..."], "go.mod"));
        p.allow.push("**/*.go".to_owned());
    }
    if has("Makefile") && p.gates.is_empty() {
        p.kinds.push("Make");
        let text = std::fs::read_to_string(top.join("Makefile")).unwrap_or_default();
        for target in ["lint", "check", "test"] {
            if text.lines().any(|l| l.starts_with(&format!("{target}:"))) {
                p.gates.push(Gate {
                    name: match target {
                        "lint" => "lint",
                        "check" => "check",
                        _ => "test",
                    },
                    command: vec!["make".to_owned(), target.to_owned()],
                    why: format!("Makefile target {target}"),
                });
            }
        }
    }
    p.allow.sort();
    p.allow.dedup();
    p.allow.retain(|g| {
        let first = g.split('/').next().unwrap_or("");
        g.starts_with("**") || top.join(first).is_dir() || (first == g && top.join(g).is_file())
    });
    p
}

/// Where a Cargo manifest's own package keeps its targets: `[lib]`, `[[bin]]`, `[[test]]`,
/// `[[bench]]` and `[[example]]` paths, and its build script (`package.build`, or `build.rs` at
/// the top, which cargo finds by itself), as clean relative paths.
fn cargo_target_paths(manifest: &toml::Table, build_rs: bool) -> Vec<String> {
    let Some(package) = manifest.get("package") else {
        return Vec::new();
    };
    let mut paths: Vec<&str> = Vec::new();
    if let Some(path) = manifest
        .get("lib")
        .and_then(|l| l.get("path"))
        .and_then(|p| p.as_str())
    {
        paths.push(path);
    }
    for kind in ["bin", "test", "bench", "example"] {
        let targets = manifest.get(kind).and_then(|t| t.as_array());
        paths.extend(
            targets
                .into_iter()
                .flatten()
                .filter_map(|t| t.get("path").and_then(|p| p.as_str())),
        );
    }
    match package.get("build") {
        Some(toml::Value::String(b)) => paths.push(b),
        Some(toml::Value::Boolean(false)) => {}
        _ if build_rs => paths.push("build.rs"),
        _ => {}
    }
    paths
        .into_iter()
        .map(|p| p.trim_start_matches("./"))
        .filter(|p| {
            !p.is_empty()
                && !p.starts_with('/')
                && !p.split('/').any(|c| c == ".." || c == "." || c.is_empty())
        })
        .map(str::to_owned)
        .collect()
}

/// Whether a pyproject names the package `name` (a key `mypy = "^1"`, or a requirement
/// `"mypy>=1"`), not one that only starts the same (`mypy_extensions`, `mypy-boto3`).
fn names_package(pyproject: &str, name: &str) -> bool {
    pyproject.match_indices(name).any(|(i, _)| {
        let before = pyproject[..i].chars().last();
        let after = pyproject[i + name.len()..].chars().next();
        before.is_none_or(|c| c == '"' || c == '\'' || c.is_whitespace())
            && after.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'))
    })
}

/// The agent CLIs installed here, in order of preference.
pub fn installed_agents(dir: &Path) -> Vec<&'static str> {
    [
        "claude", "codex", "gemini", "aider", "opencode", "droid", "goose",
    ]
    .into_iter()
    .filter(|n| find_program(n, dir).is_some())
    .collect()
}

fn toml_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(", "))
}

pub fn render(project: &Project, agents: &[&'static str]) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "# git-pipeline configuration (docs/config.md in the git-pipeline repository)\n#\n# Written by `git pipeline init` for: {}.\n# git-pipeline reads this file from the base commit of each run, never from the run's worktree,\n# so agents cannot change the rules they are held to. Commit it, then `git pipeline trust`.\nversion = 1\n\n",
        if project.kinds.is_empty() {
            "a project of a kind it did not recognise".to_owned()
        } else {
            project.kinds.join(", ")
        }
    ));
    t.push_str("[run]\n# base = \"HEAD\"            # commit each run starts from\n# ship = \"branch\"          # \"merge\": also fast-forward the base branch when that is safe\n# include = [\".env\"]       # ignored files to copy into each worktree (also .worktreeinclude)\n# max_slots = 4             # worktrees kept warm between runs (0: a new one every run)\n");
    if project.caches.is_empty() {
        t.push_str(
            "# caches = [\"/build/\"]    # ignored folders a worktree slot keeps between runs\n\n",
        );
    } else {
        t.push_str(&format!(
            "caches = {}    # ignored folders a worktree slot keeps between runs\n\n",
            toml_list(&project.caches)
        ));
    }
    t.push_str("[scope]\n# Existing paths a run may modify or delete, and where it may add files. Globs are anchored at\n# the repository root; `*` never crosses `/` (use `**`). Without allow and create, every path\n# may change (the run says \"scope: unrestricted\"), unless a plan's manifest sets the scope.\n");
    if project.allow.is_empty() {
        t.push_str("# allow = [\"src/**\", \"tests/**\"]\n");
    } else {
        t.push_str(&format!("allow = {}\n", toml_list(&project.allow)));
    }
    t.push_str(&format!(
        "deny = {}            # never touched, whatever allow says\n\n",
        toml_list(&project.deny)
    ));
    let (builder, verifier) = match agents {
        [] => ("claude", "codex"),
        [only] => (*only, *only),
        [first, second, ..] => (*first, *second),
    };
    t.push_str("# Agents: a preset name (claude, codex, aider, gemini, opencode, goose, droid; see\n# docs/agents.md) or an argv list with {prompt}, {prompt_file}, {worktree}, {run_id}, {stage},\n# {session}. Agents only you have belong in ~/.config/git-pipeline/config.toml.\n");
    if agents.is_empty() {
        t.push_str("# No agent CLI was found on PATH: install one, or change these.\n");
    } else {
        t.push_str(&format!("# Found on PATH: {}.\n", agents.join(", ")));
    }
    if builder == verifier {
        t.push_str("# Only one CLI was found: the verifier runs in its own session and read-only mode; a\n# different CLI as verifier makes the review more independent.\n");
    }
    t.push_str(&format!(
        "[agents.builder]\ncommand = \"{builder}\"\ntimeout = \"30m\"\n\n[agents.verifier]\ncommand = \"{verifier}\"\ntimeout = \"15m\"\n\n"
    ));
    t.push_str("# Risky tasks (see [risk]) first go through discovery and planning when these exist:\n# [[agents.discovery]]       # every entry runs at once, read-only\n# command = \"claude\"\n# [agents.planner]           # writes a plan ending in a file-impact manifest\n# command = \"claude\"\n# [agents.reviewer]          # approves or rejects the plan\n# command = \"codex\"\n# [agents.docs]              # updates docs when the change touches public surface ([docs])\n# command = \"claude\"\n\n");
    if !project.setup.is_empty() {
        t.push_str("# Setup steps prepare a worktree before any agent and before the gates; each runs again only\n# when its when_changed files differ from the last time it ran in that worktree slot.\n");
    }
    for s in &project.setup {
        t.push_str(&format!(
            "[[setup]]                  # from {}\nname = \"deps\"\ncommand = {}\nwhen_changed = {}\ntimeout = \"15m\"\n\n",
            s.why,
            toml_list(&s.command),
            toml_list(&s.when_changed)
        ));
    }
    t.push_str("# Gates run in order in the run's worktree; a missing program, a timeout or a crash fails them.\n");
    if project.gates.is_empty() {
        t.push_str("# [[gates]]\n# name = \"test\"\n# command = [\"make\", \"test\"]\n# timeout = \"10m\"\n\n");
    }
    for g in &project.gates {
        t.push_str(&format!(
            "[[gates]]                  # from {}\nname = \"{}\"\ncommand = {}\ntimeout = \"10m\"\n\n",
            g.why,
            g.name,
            toml_list(&g.command)
        ));
    }
    t.push_str("[[gates]]                  # code the run added that repeats code already in the repository\nname = \"duplicates\"        # goes back to the builder with both places named (in-process)\nbuiltin = \"duplicates\"\n# min_tokens = 50\n# min_lines = 5\n# ignore = [\"vendor/**\"]\n\n");
    t.push_str("[verify]\nmax_rounds = 2             # verifier rejections before the run stops (exit 2)\n\n[limits]\nmax_fix_attempts = 3       # builder retries after scope violations, gate or commit-hook failures\nmax_same_error = 2         # the same error this often stops the loop (0: off)\noscillation = true         # stop when an attempt repeats an earlier attempt's changes\n");
    t
}

pub fn init(cmd: InitCmd, cwd: &Path, out: &mut dyn Write) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let top = repo.work_tree.clone().ok_or_else(|| {
        Error::usage("git pipeline init needs a worktree (this repository is bare)")
    })?;
    let path = top.join(PROJECT_FILE);
    if path.exists() && !cmd.force {
        return Err(Error::usage_hint(
            format!("{} already exists", path.display()),
            "keep it, or overwrite it with: git pipeline init --force",
        ));
    }
    let project = detect(&top);
    let agents = installed_agents(&top);
    let text = render(&project, &agents);
    std::fs::write(&path, &text).map_err(|e| Error::io_path("write", &path, e))?;
    let mut t = format!("wrote {}\n", path.display());
    if !project.kinds.is_empty() {
        t.push_str(&format!("  project: {}\n", project.kinds.join(", ")));
    }
    for g in &project.gates {
        t.push_str(&format!(
            "  gate {}: {} (from {})\n",
            g.name,
            g.command.join(" "),
            g.why
        ));
    }
    t.push_str("  gate duplicates: builtin (code the run added that repeats existing code)\n");
    t.push_str(&format!(
        "  agents on PATH: {}\n",
        if agents.is_empty() {
            "none found (install one of: claude, codex, gemini, aider, opencode, droid, goose)"
                .to_owned()
        } else {
            agents.join(", ")
        }
    ));
    t.push_str(&format!(
        "next: read it, then\n  git add {PROJECT_FILE} && git commit -m \"Add git-pipeline config\" && git pipeline trust\n  git pipeline doctor\n"
    ));
    emit(out, &t)?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendering_is_a_valid_config() -> std::result::Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        for files in [
            vec![],
            vec!["Cargo.toml"],
            vec!["package.json", "pnpm-lock.yaml"],
            vec!["package.json", "package-lock.json", "Cargo.toml"],
            vec!["pyproject.toml", "poetry.lock"],
            vec!["pyproject.toml", "uv.lock"],
            vec!["go.mod"],
            vec!["Makefile"],
        ] {
            for f in &files {
                std::fs::write(dir.path().join(f), "").map_err(|e| e.to_string())?;
            }
            for agents in [vec![], vec!["codex"], vec!["claude", "gemini"]] {
                let text = render(&detect(dir.path()), &agents);
                let parsed: std::result::Result<crate::config::Config, _> = toml::from_str(&text);
                assert!(parsed.is_ok(), "{files:?} {agents:?}: {parsed:?}\n{text}");
            }
        }
        Ok(())
    }
}
