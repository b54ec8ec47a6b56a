//! The command line as people meet it: help, progress, init, doctor, presets, completions, man.

use crate::common::{FAKE_AGENT, TestRepo};

fn subcommands() -> Vec<String> {
    use clap::CommandFactory;
    git_pipeline::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect()
}

#[test]
fn help_of_every_command_is_kept_as_a_snapshot() {
    let repo = TestRepo::new();
    let top = repo.pipeline(&["--help"]);
    top.assert_code(0);
    insta::assert_snapshot!("help", top.stdout);
    for sub in subcommands() {
        let out = repo.pipeline(&[&sub, "--help"]);
        out.assert_code(0);
        insta::assert_snapshot!(format!("help-{sub}"), out.stdout);
    }
    // `-h` and `help` work whatever git does with `--help`.
    assert!(
        repo.pipeline(&["-h"])
            .stdout
            .contains("Usage: git pipeline")
    );
    assert!(
        repo.pipeline(&["help", "run"])
            .stdout
            .contains("Usage: git pipeline run")
    );
}

#[test]
fn the_plain_progress_of_a_run_is_stable() {
    let repo = TestRepo::new();
    repo.agents(
        &["1:write:src/value.txt:41", "2:write:src/value.txt:42", "3:append:src/value.txt:done"],
        &["1:reject:add a final line", "2:approve"],
        "[scope]\nallow = [\"src/**\"]\n[[gates]]\nname = \"answer\"\ncommand = [\"sh\", \"-c\", \"grep -q 42 src/value.txt\"]\n",
    );
    let out = repo.pipeline(&["run", "fix the typo in the readme text"]);
    out.assert_code(0);
    crate::common::snapshot_settings(&repo).bind(|| {
        insta::assert_snapshot!("golden-progress", out.stderr);
        insta::assert_snapshot!("golden-summary", out.stdout);
    });
}

#[test]
fn init_proposes_gates_from_the_project_and_never_overwrites() {
    for (files, expect) in [
        (
            vec![
                ("Cargo.toml", "[package]\nname = \"x\"\n"),
                ("src/main.rs", "fn main() {}\n"),
            ],
            vec![
                "\"cargo\", \"fmt\", \"--check\"",
                "\"cargo\", \"clippy\"",
                "\"cargo\", \"test\"",
                "allow = [\"src/**\"]",
                "deny = [\"Cargo.lock\"]",
            ],
        ),
        (
            vec![
                (
                    "package.json",
                    "{\"scripts\": {\"lint\": \"eslint .\", \"test\": \"vitest\"}}",
                ),
                ("pnpm-lock.yaml", ""),
                ("src/index.js", ""),
            ],
            vec![
                "\"pnpm\", \"install\", \"--frozen-lockfile\"",
                "\"pnpm\", \"run\", \"lint\"",
                "\"pnpm\", \"run\", \"test\"",
                "JavaScript (pnpm)",
            ],
        ),
        (
            vec![
                ("package.json", "{\"scripts\": {\"test\": \"jest\"}}"),
                ("package-lock.json", "{}"),
            ],
            vec![
                "[[setup]]                  # from package-lock.json: a new worktree has no node_modules/\nname = \"deps\"\ncommand = [\"npm\", \"ci\", \"--no-audit\", \"--no-fund\"]\nwhen_changed = [\"package-lock.json\", \"package.json\"]",
                "caches = [\"node_modules/\"]",
                "\"npm\", \"run\", \"test\"",
            ],
        ),
        (
            vec![
                ("pyproject.toml", "[project]\nname = \"x\"\n[tool.ruff]\n"),
                ("uv.lock", ""),
                ("tests/test_x.py", ""),
            ],
            vec![
                "\"uv\", \"run\", \"ruff\", \"check\"",
                "\"uv\", \"run\", \"pytest\"",
                "Python (uv)",
            ],
        ),
    ] {
        let repo = TestRepo::empty();
        for (f, text) in &files {
            repo.write(f, text);
        }
        let out = repo.pipeline(&["init"]);
        out.assert_code(0);
        let config = repo.read(".pipeline.toml");
        for e in &expect {
            assert!(config.contains(e), "{e:?} missing in:\n{config}");
        }
        let parsed: Result<git_pipeline::config::Config, _> = toml::from_str(&config);
        assert!(parsed.is_ok(), "{parsed:?}");
        let again = repo.pipeline(&["init"]);
        again.assert_code(3);
        assert!(
            again.error_line().contains("already exists"),
            "{}",
            again.stderr
        );
        repo.pipeline(&["init", "--force"]).assert_code(0);
    }
}

#[test]
fn init_proposes_the_agent_clis_on_path() {
    let repo = TestRepo::empty();
    let bin = repo.root().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    for name in ["codex", "gemini"] {
        std::os::unix::fs::symlink(FAKE_AGENT, bin.join(name)).expect("link");
    }
    let path = path_with(&bin);
    let out = repo
        .pipeline_cmd()
        .arg("init")
        .env("PATH", path)
        .output()
        .expect("init");
    assert!(out.status.success());
    let config = repo.read(".pipeline.toml");
    assert!(
        config.contains("[agents.builder]\ncommand = \"codex\""),
        "{config}"
    );
    assert!(
        config.contains("[agents.verifier]\ncommand = \"gemini\""),
        "a different CLI verifies:\n{config}"
    );
}

#[test]
fn doctor_names_what_stops_a_run_and_how_to_fix_it() {
    let repo = TestRepo::new();
    repo.config("version = 1\n[agents.builder]\ncommand = [\"no-such-agent-cli\"]\n[agents.verifier]\ncommand = [\"AGENT\"]\n[[gates]]\nname = \"lint\"\ncommand = [\"no-such-linter\"]\n");
    let out = repo.pipeline(&["doctor"]);
    out.assert_code(3);
    assert!(out.stdout.contains("ERROR agent builder"), "{}", out.stdout);
    assert!(
        out.stdout.contains("`no-such-agent-cli` not found"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("ERROR gate lint"), "{}", out.stdout);
    assert!(
        out.stdout.contains("fix: install no-such-linter"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("a run cannot start here"),
        "{}",
        out.stdout
    );

    repo.config("version = 1\n[limits]\nmax_fix_attempt = 3\n");
    let out = repo.pipeline(&["doctor", "--json"]);
    out.assert_code(3);
    let v = out.json();
    assert_eq!(v["can_run"], false);
    let config = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["check"] == "config")
        .expect("config finding")
        .clone();
    assert_eq!(config["level"], "error");
    assert!(
        config["detail"]
            .as_str()
            .unwrap_or("")
            .contains("unknown field `max_fix_attempt`"),
        "{config}"
    );

    repo.agents(&["*:write:x:y"], &["*:approve"], "");
    let out = repo.pipeline(&["doctor"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("a run can start here"),
        "{}",
        out.stdout
    );
    // The platform line says what containment rests on here.
    assert!(
        out.stdout.contains(
            "platform         linux: checkout watch inotify; leftover processes via /proc"
        ),
        "{}",
        out.stdout
    );
}

/// A stand-in for an agent CLI on a PATH of its own: the fixture agent, with the actions the
/// shell snippet `actions` prints appended (it can look at `$PIPELINE_ROLE`).
/// `PATH` with `bin` first.
fn path_with(bin: &std::path::Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn stand_in(repo: &TestRepo, name: &str, actions: &str) -> String {
    let bin = repo.root().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let path = bin.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexec {FAKE_AGENT} \"$@\" {actions}\n"),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path_with(&bin)
}

fn run_on_path(repo: &TestRepo, path: &str, args: &[&str]) {
    let out = repo
        .pipeline_cmd()
        .args(args)
        .env("PATH", path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_preset_resumes_its_session_on_later_attempts() {
    let repo = TestRepo::new();
    stand_in(&repo, "claude", "'1:write:src/a.rs:1' '2:write:src/a.rs:2'");
    let path = stand_in(&repo, "codex", "'1:reject:again' '2:approve'");
    repo.config("version = 1\n[agents.builder]\ncommand = \"claude\"\n[agents.verifier]\ncommand = \"codex\"\n");
    run_on_path(&repo, &path, &["run", "fix the typo"]);
    let first = repo.argv("builder", 1);
    let second = repo.argv("builder", 2);
    // argv[0] is the program; then -p and the prompt.
    assert_eq!(first[0], "-p");
    let tail: Vec<&str> = first[2..8].iter().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
            "--session-id"
        ]
    );
    assert_eq!(second[7], "--resume");
    assert_eq!(first[8], second[8], "the same session");
    // Inside git-pipeline's sandbox codex's own is off (it cannot start there); ours makes the
    // worktree read-only for the verifier instead.
    let verifier = repo.argv("verifier", 1);
    assert_eq!(
        &verifier[..5],
        &[
            "exec",
            "--sandbox",
            "danger-full-access",
            "--skip-git-repo-check",
            "--json"
        ]
    );
    repo.config("version = 1\n[run]\nsandbox = \"off\"\n[agents.builder]\ncommand = \"claude\"\n[agents.verifier]\ncommand = \"codex\"\n");
    run_on_path(&repo, &path, &["run", "fix the typo again"]);
    assert_eq!(
        repo.argv("verifier", 1)[..3],
        ["exec", "--sandbox", "read-only"],
        "without ours, codex's own read-only sandbox"
    );
}

#[test]
fn completions_for_bash_complete_git_pipeline_and_zsh_fish_generate() {
    let repo = TestRepo::new();
    let out = repo.pipeline(&["completions", "bash"]);
    out.assert_code(0);
    let file = repo.root().join("gp.bash");
    std::fs::write(&file, &out.stdout).expect("write");
    let probe = format!(
        "source {}; COMP_WORDS=(git pipeline run --sta); COMP_CWORD=3; _git_pipeline; echo \"${{COMPREPLY[*]}}\"; COMP_WORDS=(git pipeline res); COMP_CWORD=2; _git_pipeline; echo \"${{COMPREPLY[*]}}\"",
        file.display()
    );
    let bash = std::process::Command::new("bash")
        .args(["-c", &probe])
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&bash.stdout);
    assert_eq!(
        text,
        "--stage\nresume\n",
        "{}",
        String::from_utf8_lossy(&bash.stderr)
    );
    // Run ids after show/resume/abandon/events, refs after verify/reverify.
    repo.agents(&["*:write:src/new.rs:x"], &["*:approve"], "");
    let id = repo.pipeline(&["run", "--json", "fix the typo"]).json()["run_id"]
        .as_str()
        .expect("id")
        .to_owned();
    repo.git(&["branch", "topic"]);
    let probe = format!(
        "source {}; COMP_WORDS=(git pipeline show {}); COMP_CWORD=3; _git_pipeline; echo \"${{COMPREPLY[*]}}\"; COMP_WORDS=(git pipeline verify to); COMP_CWORD=3; _git_pipeline; echo \"${{COMPREPLY[*]}}\"; COMP_WORDS=(git pipeline run --base to); COMP_CWORD=4; _git_pipeline; echo \"${{COMPREPLY[*]}}\"",
        file.display(),
        &id[..6]
    );
    let bash = repo
        .command("bash", &repo.path)
        .args(["-c", &probe])
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&bash.stdout),
        format!("{id}\ntopic\ntopic\n"),
        "{}",
        String::from_utf8_lossy(&bash.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = repo.pipeline(&["completions", shell]);
        out.assert_code(0);
        assert!(out.stdout.contains("reverify"), "{shell}");
        std::fs::write(repo.root().join(format!("gp.{shell}")), &out.stdout).expect("write");
    }
    // fish and zsh complete the same run ids and refs, with the real shells (CI installs them).
    if crate::common::tool("fish").is_some() {
        let probe = format!(
            "source {}; complete -C 'git-pipeline show {}'; complete -C 'git-pipeline verify to'; complete -C 'git-pipeline run --base to'",
            repo.root().join("gp.fish").display(),
            &id[..6]
        );
        let fish = repo
            .command("fish", &repo.path)
            .args(["--no-config", "-c", &probe])
            .output()
            .expect("fish");
        assert_eq!(
            String::from_utf8_lossy(&fish.stdout),
            format!("{id}\ntopic\ntopic\n"),
            "{}",
            String::from_utf8_lossy(&fish.stderr)
        );
    }
    if crate::common::tool("zsh").is_some() {
        let zsh_file = repo.root().join("gp.zsh");
        let script = std::fs::read_to_string(&zsh_file).expect("read");
        assert!(
            script.contains(":run -- Run id or a unique prefix of one:_git_pipeline_runs'")
                && script.contains(":REF:_git_pipeline_refs'"),
            "the run and ref values use the repository"
        );
        // Loaded by compinit as a completion function would be; compadd shows what it offers.
        let probe = format!(
            "autoload -U compinit && compinit -u -D && source {} && compadd() {{ shift; print -l -- ${{(P)1}} }} && _git_pipeline_runs && _git_pipeline_refs",
            zsh_file.display()
        );
        let zsh = repo
            .command("zsh", &repo.path)
            .args(["-f", "-c", &probe])
            .output()
            .expect("zsh");
        let text = String::from_utf8_lossy(&zsh.stdout);
        assert!(
            text.lines().any(|l| l == id) && text.lines().any(|l| l == "topic"),
            "{text}{}",
            String::from_utf8_lossy(&zsh.stderr)
        );
    }
}

#[test]
fn man_pages_are_written_for_git_help() {
    let repo = TestRepo::new();
    let dir = repo.root().join("man/man1");
    let out = repo.pipeline(&["man", &dir.to_string_lossy()]);
    out.assert_code(0);
    let main = std::fs::read_to_string(dir.join("git-pipeline.1")).expect("main page");
    assert!(
        main.starts_with(".ie") || main.contains(".TH git-pipeline 1"),
        "{}",
        &main[..200.min(main.len())]
    );
    for sub in subcommands() {
        if sub == "help" {
            continue;
        }
        assert!(dir.join(format!("git-pipeline-{sub}.1")).exists(), "{sub}");
    }
    // `git pipeline --help` is git's `git help pipeline`: it finds the page on MANPATH. CI
    // installs man-db; elsewhere a machine without `man` skips this part, and says so.
    if crate::common::tool("man").is_some() {
        let out = repo
            .command("git", &repo.path)
            .args(["pipeline", "--help"])
            .env("MANPATH", repo.root().join("man"))
            .env("MANPAGER", "cat")
            .env("GIT_PAGER", "cat")
            .output()
            .expect("git help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("git-pipeline"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = repo.pipeline(&["man"]);
    stdout.assert_code(0);
    assert!(
        stdout.stdout.contains(".TH git-pipeline"),
        "{}",
        &stdout.stdout[..100.min(stdout.stdout.len())]
    );
}

/// `git pipeline --help` runs `man git-pipeline` and never starts git-pipeline: installed in a
/// `bin` folder (as `cargo install` does), its first command writes the pages beside it, where
/// man finds them without MANPATH; `man --install` does it on request.
#[test]
fn help_finds_the_man_page_beside_an_installed_binary_without_manpath() {
    if crate::common::tool("man").is_none() {
        return;
    }
    let repo = TestRepo::new();
    let prefix = repo.root().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).expect("bin");
    std::fs::copy(crate::common::BIN, prefix.join("bin/git-pipeline")).expect("install");
    let path = std::env::join_paths(
        std::iter::once(prefix.join("bin"))
            .chain(std::env::split_paths(&crate::common::test_path())),
    )
    .expect("PATH");
    let git = |args: &[&str]| {
        let out = repo
            .command("git", &repo.path)
            .args(args)
            .env("PATH", &path)
            .env_remove("MANPATH")
            .env("MANPAGER", "cat")
            .env("GIT_PAGER", "cat")
            .output()
            .expect("git");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, _) = git(&["pipeline", "--help"]);
    assert_ne!(code, Some(0), "no page yet: git's 'No manual entry'");
    let (code, _) = git(&["pipeline", "status"]);
    assert_eq!(code, Some(0));
    let page = prefix.join("share/man/man1/git-pipeline.1");
    assert!(
        page.exists(),
        "the first command wrote the pages beside the binary"
    );
    let (code, text) = git(&["pipeline", "--help"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("NAME") && text.contains("git-pipeline"),
        "{text}"
    );
    // After an upgrade (a page of another version), the next command writes them again.
    let old = std::fs::read_to_string(&page).expect("page");
    std::fs::write(
        &page,
        old.replace("\"git-pipeline ", "\"git-pipeline 0.0.0-old"),
    )
    .expect("old");
    git(&["pipeline", "status"]);
    assert_eq!(std::fs::read_to_string(&page).expect("page"), old);
    // On request, with what it did.
    std::fs::remove_dir_all(prefix.join("share")).expect("rm");
    let (code, text) = git(&["pipeline", "man", "--install"]);
    assert_eq!(code, Some(0));
    assert!(text.contains("share/man/man1"), "{text}");
    assert!(page.exists());
    // A build under target/ (not in a bin folder) has nowhere to put them: it says so.
    let out = repo.pipeline(&["man", "--install"]);
    out.assert_code(3);
    assert!(
        out.error_line()
            .contains("not the one on PATH in a `bin` folder"),
        "{}",
        out.stderr
    );
}

#[test]
fn agents_sharing_a_run_session_never_share_a_cli_session() {
    let repo = TestRepo::new();
    // One CLI in every role: discovery twice, planner, reviewer, builder, verifier.
    let manifest = r#"{"file_impact":{"modify":[],"create":["src/new.rs"],"delete":[]}}"#;
    let path = stand_in(
        &repo,
        "claude",
        &format!(
            r#""$(case "$PIPELINE_ROLE" in
                discovery) echo '*:say:found it';;
                planner) echo '*:say:{manifest}';;
                reviewer|verifier) echo '*:approve';;
                builder) echo '*:write:src/new.rs:x';;
              esac)""#
        ),
    );
    repo.config(
        "version = 1\n[[agents.discovery]]\ncommand = \"claude\"\n[[agents.discovery]]\ncommand = \"claude\"\n\
         [agents.planner]\ncommand = \"claude\"\n[agents.reviewer]\ncommand = \"claude\"\n\
         [agents.builder]\ncommand = \"claude\"\n[agents.verifier]\ncommand = \"claude\"\n",
    );
    run_on_path(
        &repo,
        &path,
        &["run", "--risk", "high", "add the new module"],
    );
    let session_of = |role: &str, n: u32| {
        let argv = repo.argv(role, n);
        let at = argv
            .iter()
            .position(|a| a == "--session-id")
            .unwrap_or_else(|| panic!("{role}-{n} started no session: {argv:?}"));
        argv[at + 1].clone()
    };
    let ids = [
        session_of("discovery", 1),
        session_of("discovery", 2),
        session_of("planner", 1),
        session_of("reviewer", 1),
        session_of("builder", 1),
        session_of("verifier", 1),
    ];
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    // The run's own session ids are still what PIPELINE_SESSION_ID says: discovery and planning
    // share theirs.
    let env = |role: &str| {
        std::fs::read_to_string(repo.logs.join(format!("{role}-1.env"))).expect("env log")
    };
    let plan_session = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("PIPELINE_SESSION_ID=").map(str::to_owned))
            .expect("session env")
    };
    assert_eq!(
        plan_session(env("discovery")),
        plan_session(env("reviewer"))
    );
}

/// What `doctor` foresees that would make a run fail or surprise: a worktree root inside the
/// checkout, a builder that refuses every prompt, a scope glob naming a folder, a misspelt role,
/// and config edits that are not committed.
#[test]
fn doctor_predicts_what_a_run_would_do() {
    let repo = TestRepo::new();
    repo.config(
        "version = 1\n[run]\nworktree_root = \"wt\"\n[scope]\nallow = [\"src\"]\n[agents.builder]\ncommand = [\"AGENT\"]\nmax_prompt_bytes = 10\n[agents.verifier]\ncommand = [\"AGENT\"]\n[agents.bulder]\ncommand = [\"AGENT\"]\n",
    );
    std::fs::write(
        repo.path.join(".pipeline.toml"),
        repo.read(".pipeline.toml") + "# an edit\n",
    )
    .expect("edit the config");
    let out = repo.pipeline(&["doctor", "--json"]);
    out.assert_code(3);
    let findings = out.json()["findings"].clone();
    let find = |check: &str, text: &str| {
        findings
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["check"] == check && f["detail"].as_str().unwrap_or("").contains(text))
            .cloned()
            .unwrap_or_else(|| panic!("no {check} finding with {text:?}: {findings:#}"))
    };
    assert_eq!(
        find("worktree root", "is inside the main worktree")["level"],
        "error"
    );
    assert_eq!(
        find("agent builder", "max_prompt_bytes below")["level"],
        "error"
    );
    assert_eq!(
        find("scope", "\"src\" matches no file at the base")["detail"],
        "\"src\" matches no file at the base; a glob names files: did you mean \"src/**\"?"
    );
    assert_eq!(
        find("agent bulder", "is not a role")["fix"],
        "did you mean [agents.builder]?"
    );
    assert_eq!(find("config", "uncommitted changes")["level"], "note");
    // No signing key: attestations will be unsigned, and doctor says how to sign them.
    assert_eq!(
        find("attestations", "unsigned: git has no signing key")["level"],
        "note"
    );
    repo.git(&["config", "gpg.format", "ssh"]);
    repo.git(&["config", "user.signingKey", "/keys/id_ed25519"]);
    let out = repo.pipeline(&["doctor", "--json"]);
    let signed = out.json()["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["check"] == "attestations")
        .cloned()
        .expect("an attestations finding");
    assert_eq!(signed["detail"], "signed with SSH key /keys/id_ed25519");
}

/// A config that exists but was never committed: doctor says to commit it, not to write one.
#[test]
fn doctor_tells_an_uncommitted_config_from_a_missing_one() {
    let repo = TestRepo::new();
    std::fs::write(repo.path.join(".pipeline.toml"), "version = 1\n").expect("write");
    let out = repo.pipeline(&["doctor"]);
    out.assert_code(3);
    assert!(
        out.stdout.contains(
            ".pipeline.toml is not committed: runs read the config at HEAD, which has none"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("git pipeline init"), "{}", out.stdout);
}

/// A gate whose program is missing stops the run before the first agent (exit 3), instead of
/// failing every attempt after the builder was paid for.
#[test]
fn a_missing_gate_program_stops_the_run_before_any_agent() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/x.txt:x"],
        &["*:approve"],
        "[[gates]]\nname = \"lint\"\ncommand = [\"no-such-linter\", \"--check\"]\n[[gates]]\nname = \"local\"\ncommand = [\"./tools/check.sh\"]\n",
    );
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line()
            .contains("gate \"lint\": `no-such-linter` is not found"),
        "{}",
        out.stderr
    );
    assert!(repo.calls().is_empty(), "{:?}", repo.calls());
    assert!(repo.run_ids().is_empty());
}

/// `init` on the layouts people have: each proposal names the gates and folders that fit.
#[test]
fn init_fits_workspaces_python_packages_go_and_make() {
    /// Files of a layout, what the proposal must hold, and what it must not.
    type Case = (
        Vec<(&'static str, &'static str)>,
        Vec<&'static str>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        // A Cargo workspace without a root package (ripgrep's crates/ layout).
        (
            vec![
                ("Cargo.toml", "[workspace]\nmembers = [\"crates/*\"]\n"),
                ("crates/core/Cargo.toml", "[package]\nname = \"core\"\n"),
                ("crates/core/src/lib.rs", ""),
            ],
            vec![
                "\"cargo\", \"test\", \"--workspace\"",
                "\"cargo\", \"clippy\", \"--workspace\"",
                "\"crates/**\"",
                "Rust (Cargo workspace)",
            ],
            vec!["\"cargo\", \"test\"]"],
        ),
        // A Cargo workspace with a root package: plain `cargo test` would skip the members.
        (
            vec![
                (
                    "Cargo.toml",
                    "[package]\nname = \"rg\"\n[workspace]\nmembers = [\"crates/grep\"]\n",
                ),
                ("src/main.rs", ""),
                ("crates/grep/src/lib.rs", ""),
            ],
            vec![
                "\"cargo\", \"test\", \"--workspace\"",
                "\"crates/grep/**\"",
                "\"src/**\"",
            ],
            vec!["\"cargo\", \"test\"]"],
        ),
        // ripgrep 14: the root package's binary lives in a folder that is no member
        // (`[[bin]] path = "crates/core/main.rs"`), beside a build script at the top.
        (
            vec![
                (
                    "Cargo.toml",
                    "[package]\nname = \"ripgrep\"\nbuild = \"build.rs\"\n[[bin]]\nname = \"rg\"\npath = \"crates/core/main.rs\"\n[[test]]\nname = \"integration\"\npath = \"tests/tests.rs\"\n[workspace]\nmembers = [\"crates/grep\"]\n",
                ),
                ("build.rs", ""),
                ("crates/core/main.rs", ""),
                ("crates/grep/src/lib.rs", ""),
                ("tests/tests.rs", ""),
            ],
            vec![
                "\"crates/core/**\"",
                "\"crates/grep/**\"",
                "\"tests/**\"",
                "\"build.rs\"",
            ],
            vec!["\"src/**\""],
        ),
        // Poetry with the package at the root and mypy as a dependency.
        (
            vec![
                (
                    "pyproject.toml",
                    "[tool.poetry]\nname = \"my-pkg\"\n[tool.poetry.group.dev.dependencies]\nmypy = \"^1.0\"\n",
                ),
                ("poetry.lock", ""),
                ("my_pkg/__init__.py", ""),
            ],
            vec![
                "\"my_pkg/**\"",
                "\"poetry\", \"install\", \"--no-interaction\"",
                "\"poetry\", \"run\", \"mypy\", \".\"",
                "deny = [\"poetry.lock\"]",
            ],
            vec![],
        ),
        // uv: its lock file is never the agent's to change.
        (
            vec![
                (
                    "pyproject.toml",
                    "[project]\nname = \"x\"\ndependencies = [\"pyright\"]\n",
                ),
                ("uv.lock", ""),
                ("tests/test_x.py", ""),
            ],
            vec![
                "deny = [\"uv.lock\"]",
                "\"uv\", \"run\", \"pyright\"",
                "command = [\"uv\", \"sync\", \"--frozen\"]\nwhen_changed = [\"uv.lock\", \"pyproject.toml\"]",
                "caches = [\"/.venv/\", \"__pycache__/\"]",
            ],
            vec![],
        ),
        // yarn 1 and yarn 2+ (a .yarnrc.yml) install what the lockfile says, each its own way.
        (
            vec![
                ("package.json", "{\"scripts\": {\"test\": \"jest\"}}"),
                ("yarn.lock", ""),
            ],
            vec![
                "command = [\"yarn\", \"install\", \"--frozen-lockfile\"]",
                "\"yarn\", \"run\", \"test\"",
                "deny = [\"yarn.lock\"]",
            ],
            vec![],
        ),
        (
            vec![
                ("package.json", "{\"scripts\": {\"test\": \"jest\"}}"),
                ("yarn.lock", ""),
                (".yarnrc.yml", "nodeLinker: node-modules\n"),
            ],
            vec!["command = [\"yarn\", \"install\", \"--immutable\"]"],
            vec!["--frozen-lockfile"],
        ),
        // Go: the format gate fails when gofmt is missing, instead of passing.
        (
            vec![("go.mod", "module x\n"), ("main.go", "package main\n")],
            vec!["command -v gofmt", "\"go\", \"vet\""],
            vec![],
        ),
        // Make: its lint/check/test targets, in that order; other targets are not gates.
        (
            vec![(
                "Makefile",
                "build:\n\tcc -o x x.c\ntest: build\n\t./x --self-test\nlint:\n\tcppcheck .\n",
            )],
            vec![
                "name = \"lint\"\ncommand = [\"make\", \"lint\"]",
                "name = \"test\"\ncommand = [\"make\", \"test\"]",
                "Make",
            ],
            vec!["\"make\", \"build\""],
        ),
    ];
    for (files, expect, refuse) in cases {
        let repo = TestRepo::empty();
        for (f, text) in &files {
            if let Some(dir) = std::path::Path::new(f).parent() {
                std::fs::create_dir_all(repo.path.join(dir)).expect("dir");
            }
            repo.write(f, text);
        }
        let out = repo.pipeline(&["init"]);
        out.assert_code(0);
        let config = repo.read(".pipeline.toml");
        for e in &expect {
            assert!(config.contains(e), "{e:?} missing for {files:?}:\n{config}");
        }
        for r in &refuse {
            assert!(
                !config.contains(r),
                "{r:?} proposed for {files:?}:\n{config}"
            );
        }
    }
}

/// The Go format gate as init writes it fails when gofmt is not installed.
#[test]
fn the_go_format_gate_fails_without_gofmt() {
    let repo = TestRepo::new();
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "command -v gofmt >/dev/null || { echo 'gofmt is not installed' >&2; exit 127; }; test -z \"$(gofmt -l .)\"",
        ])
        .current_dir(&repo.path)
        .env("PATH", "/usr/bin/nonexistent:/bin")
        .output()
        .expect("sh");
    assert_eq!(out.status.code(), Some(127));
}

/// The run header says which config file each agent came from: a personal entry overrides the
/// project's, and the header shows it.
#[test]
fn the_run_header_names_where_each_agent_comes_from() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/x.txt:x"], &["*:approve"], "");
    repo.personal(&format!(
        "[agents.builder]\ncommand = [{:?}, \"{{prompt}}\", \"*:write:src/y.txt:y\"]\n",
        crate::common::FAKE_AGENT
    ));
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(0);
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("  agents "))
        .unwrap_or_else(|| panic!("no agents line:\n{}", out.stderr));
    assert!(line.contains("builder builder ("), "{line}");
    assert!(line.contains("git-pipeline/config.toml)"), "{line}");
    assert!(
        line.contains("verifier verifier (.pipeline.toml (at HEAD))"),
        "{line}"
    );
}

/// A run's worktree is a new checkout without installed dependencies: doctor says so when no
/// setup step (or gate) installs them, and `init` writes that setup step.
#[test]
fn doctor_and_init_know_a_worktree_has_no_installed_dependencies() {
    let repo = TestRepo::new();
    repo.write("package.json", "{\"scripts\": {\"test\": \"jest\"}}");
    repo.write("package-lock.json", "{}");
    repo.commit_all("a JavaScript project");
    repo.config(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\"]\n[agents.verifier]\ncommand = [\"AGENT\"]\n[[gates]]\nname = \"test\"\ncommand = [\"npm\", \"run\", \"test\"]\n",
    );
    let findings = repo.pipeline(&["doctor", "--json"]).json()["findings"].clone();
    let deps = findings
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["check"] == "dependencies")
        .cloned()
        .unwrap_or_else(|| panic!("no dependencies finding: {findings:#}"));
    assert_eq!(deps["level"], "note");
    assert_eq!(
        deps["fix"],
        "add a setup step that installs them: [[setup]] name = \"deps\" command = [\"npm\", \"ci\"] when_changed = [\"package-lock.json\"]"
    );
    // With that setup step, nothing to say.
    repo.config(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\"]\n[agents.verifier]\ncommand = [\"AGENT\"]\n[[setup]]\nname = \"deps\"\ncommand = [\"npm\", \"ci\"]\nwhen_changed = [\"package-lock.json\"]\n[[gates]]\nname = \"test\"\ncommand = [\"npm\", \"run\", \"test\"]\n",
    );
    let findings = repo.pipeline(&["doctor", "--json"]).json()["findings"].clone();
    assert!(
        !findings
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["check"] == "dependencies"),
        "{findings:#}"
    );
}

/// doctor compares each preset CLI on PATH with the version the agent contract suite passed on
/// (src/preset/tested.tsv), and says which presets are untested.
#[test]
fn doctor_warns_when_a_preset_cli_is_not_the_tested_version() {
    let repo = TestRepo::new();
    let bin = repo.root().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let tool = |name: &str, says: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho '{says}'\n")).expect("write");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    };
    tool("claude", "2.1.197 (Claude Code)");
    tool("codex", "codex-cli 0.999.0");
    tool("goose", "goose 1.0.0");
    repo.config(
        "version = 1\n[agents.builder]\ncommand = \"claude\"\n[agents.verifier]\ncommand = \"codex\"\n[agents.reviewer]\ncommand = \"goose\"\n",
    );
    let path = path_with(&bin);
    let out = repo
        .pipeline_cmd()
        .args(["doctor", "--json"])
        .env("PATH", path)
        .output()
        .expect("doctor");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let finding = |check: &str| {
        json["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["check"] == check)
            .cloned()
            .unwrap_or_else(|| panic!("no {check} finding: {json:#}"))
    };
    let claude = finding("claude version");
    assert_eq!(claude["level"], "ok", "{claude}");
    assert_eq!(
        claude["detail"],
        "2.1.197, the version the contract suite passed on"
    );
    let codex = finding("codex version");
    assert_eq!(codex["level"], "note");
    assert_eq!(
        codex["detail"],
        "codex 0.999.0 is not the tested 0.171.0: its flags or output may have changed"
    );
    let goose = finding("goose version");
    assert!(
        goose["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("the goose preset is untested: goose is not on")),
        "{goose}"
    );
}

/// A CLI that names its sessions itself (codex): the id its output gave on attempt 1 is
/// resumed on attempt 2 (`exec … resume <id> <prompt>`), and the usage it then reports for the
/// whole session counts only the new call.
#[test]
fn a_cli_that_names_its_sessions_is_resumed_by_the_id_it_gave() {
    let repo = TestRepo::new();
    let started = r#"{"type":"thread.started","thread_id":"th-77"}"#;
    stand_in(
        &repo,
        "codex",
        &format!(
            "'*:say:{started}' '1:write:src/a.rs:1' '1:say:{{\"type\":\"turn.completed\",\"usage\":{{\"input_tokens\":100,\"output_tokens\":10}}}}' '2:write:src/a.rs:2' '2:say:{{\"type\":\"turn.completed\",\"usage\":{{\"input_tokens\":230,\"output_tokens\":20}}}}'"
        ),
    );
    let path = stand_in(&repo, "claude", "'1:reject:again' '2:approve'");
    repo.config("version = 1\n[agents.builder]\ncommand = \"codex\"\n[agents.verifier]\ncommand = \"claude\"\n");
    let out = repo
        .pipeline_cmd()
        .args(["run", "--json", "fix the typo"])
        .env("PATH", &path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = repo.argv("builder", 1);
    let second = repo.argv("builder", 2);
    assert!(!first.iter().any(|a| a == "resume"), "{first:?}");
    // (The stand-in's own actions follow the argv git-pipeline gave it.)
    let at = second.iter().position(|a| a == "resume").expect("resume");
    assert_eq!(second[at - 1], "--json", "options before `resume`");
    assert_eq!(second[at + 1], "th-77");
    assert!(second[at + 2].contains("fix the typo"), "then the prompt");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let builder_tokens: Vec<u64> = r["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["stage"] == "execution")
        .filter_map(|s| s["tokens"].as_u64())
        .collect();
    assert_eq!(builder_tokens, [110, 140], "the second call alone");
    assert_eq!(
        r["resume"]["agent_sessions"]["builder#1:execution"], "th-77",
        "{}",
        r["resume"]
    );
}

/// doctor says when a read-only role goes to droid (whose read-only mode lets a "low-risk"
/// shell write through) and no sandbox makes the worktree read-only for it.
#[test]
fn doctor_names_a_read_only_role_only_detection_can_hold() {
    let repo = TestRepo::new();
    let path = stand_in(&repo, "droid", "'*:approve'");
    let finding = |sandbox: &str| {
        repo.config(&format!(
            "version = 1\n[run]\nsandbox = \"{sandbox}\"\n[agents.builder]\ncommand = [\"AGENT\"]\n[agents.verifier]\ncommand = \"droid\"\n"
        ));
        let out = repo
            .pipeline_cmd()
            .args(["doctor", "--json"])
            .env("PATH", &path)
            .output()
            .expect("doctor");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["check"] == "read-only roles")
            .cloned()
    };
    let off = finding("off").expect("a finding with the sandbox off");
    assert!(
        off["detail"].as_str().is_some_and(
            |d| d.contains("a write by the verifier fails the run (detected, not prevented)")
        ),
        "{off}"
    );
    assert_eq!(finding("required"), None, "the sandbox makes it read-only");
}
