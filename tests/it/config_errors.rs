//! Bad configuration and bad input: one clear error line, the SPEC exit code, nothing created.

use crate::common::{TestRepo, assert_untouched};

#[track_caller]
fn assert_nothing_created(repo: &TestRepo) {
    assert!(repo.run_ids().is_empty());
    assert!(repo.pipeline_branches().is_empty());
    assert!(!repo.worktree_root().exists());
}

#[test]
fn no_config_exits_3_and_says_how_to_write_one() {
    let repo = TestRepo::new();
    repo.no_personal_config();
    let before = repo.user_state();
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("no configuration"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("git pipeline init"), "{}", out.stderr);
    assert_nothing_created(&repo);
    assert_untouched(&before, &repo.user_state());
}

#[test]
fn an_uncommitted_config_is_named_as_such() {
    let repo = TestRepo::new();
    repo.no_personal_config();
    repo.write(".pipeline.toml", "version = 1\n");
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("is not committed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("git add .pipeline.toml"),
        "{}",
        out.stderr
    );
}

#[test]
fn not_a_git_repository_exits_3() {
    let repo = TestRepo::new();
    let elsewhere = repo.root().join("plain");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    let mut cmd = repo.command(crate::common::BIN, &elsewhere);
    cmd.args(["run", "fix the typo"])
        .env("GIT_CEILING_DIRECTORIES", repo.root());
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: not a git repository"),
        "{stderr}"
    );

    let out = repo.pipeline(&["-C", "/no/such/dir", "status"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("no such directory"),
        "{}",
        out.stderr
    );
}

#[test]
fn empty_or_missing_task_exits_5() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/x:x"], &["*:approve"], "");
    for args in [vec!["run", ""], vec!["run", "  \n\t "], vec!["run"]] {
        let out = repo.pipeline(&args);
        out.assert_code(5);
        assert!(out.error_line().contains("task"), "{}", out.stderr);
    }
    let out = repo.pipeline(&["run", "--task-file", "/no/such/task.md"]);
    out.assert_code(5);
    assert!(
        out.error_line().contains("cannot read the task file"),
        "{}",
        out.stderr
    );
    assert_nothing_created(&repo);
    assert!(repo.calls().is_empty());
}

/// Endless or huge input is read with a bound and refused at once; the config's limit applies.
#[test]
fn an_endless_or_too_long_task_exits_5_at_once() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/x:x"],
        &["*:approve"],
        "[limits]\nmax_task_bytes = 1000\n",
    );
    let started = std::time::Instant::now();
    let out = repo.pipeline(&["run", "--task-file", "/dev/zero"]);
    out.assert_code(5);
    assert!(out.error_line().contains("longer than"), "{}", out.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // An endless stdin.
    let mut child = repo
        .pipeline_cmd()
        .args(["run", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let chunk = vec![b'x'; 1 << 16];
        while stdin.write_all(&chunk).is_ok() {}
    });
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than"));
    // Over the config's limit, under the read cap.
    let long = "fix ".repeat(400);
    let out = repo.pipeline(&["run", &long]);
    out.assert_code(5);
    assert!(
        out.error_line().contains("longer than 1000 bytes"),
        "{}",
        out.stderr
    );
    assert_nothing_created(&repo);
}

/// Inputs that cannot be read say what and why in one line, exit 3.
#[test]
fn unreadable_inputs_are_named_in_one_line() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/x:x"], &["*:approve"], "");
    let out = repo.pipeline(&["verify", "no-such-ref..HEAD"]);
    out.assert_code(3);
    assert!(
        out.error_line()
            .contains("no-such-ref..HEAD does not name commits here"),
        "{}",
        out.stderr
    );
    let personal = repo.home.join(".config/git-pipeline/config.toml");
    std::fs::write(&personal, b"\xff\xfe").expect("write");
    let out = repo.pipeline(&["run", "x"]);
    out.assert_code(3);
    assert!(
        out.error_line()
            .contains("cannot read your personal config")
            && out.error_line().contains("not UTF-8"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(&personal).expect("rm");
    std::fs::create_dir(&personal).expect("a folder");
    let out = repo.pipeline(&["run", "x"]);
    out.assert_code(3);
    assert!(
        out.error_line()
            .contains("cannot read your personal config"),
        "{}",
        out.stderr
    );
    std::fs::remove_dir(&personal).expect("rm");
    // A committed .pipeline.toml that is a symlink.
    std::fs::remove_file(repo.path.join(".pipeline.toml")).expect("rm");
    std::os::unix::fs::symlink("/etc/hostname", repo.path.join(".pipeline.toml")).expect("ln");
    repo.commit_all("a linked config");
    let out = repo.pipeline(&["run", "x"]);
    out.assert_code(3);
    assert!(out.error_line().contains("is a symlink"), "{}", out.stderr);
}

#[test]
fn malformed_toml_exits_3_with_file_and_line() {
    let repo = TestRepo::new();
    repo.config("version = 1\n[scope]\nallow = [\"src/**\"\n");
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    let line = out.error_line();
    assert!(line.contains(".pipeline.toml (at HEAD):3:"), "{line}");
    assert_nothing_created(&repo);
}

#[test]
fn unknown_keys_exit_3_naming_the_key_and_line() {
    let repo = TestRepo::new();
    repo.config("version = 1\n[limits]\nmax_fix_attempts = 2\nmax_fix_attempt = 3\n");
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    let line = out.error_line();
    assert!(line.contains(":4:1:"), "{line}");
    assert!(line.contains("unknown field `max_fix_attempt`"), "{line}");

    repo.config("version = 1\n[agents.builder]\ncommand = [\"x\"]\nmodel = \"big\"\n");
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("unknown field `model`"),
        "{}",
        out.stderr
    );
    assert!(out.error_line().contains(":4:"), "{}", out.stderr);
}

#[test]
fn invalid_globs_exit_3_naming_the_glob() {
    let repo = TestRepo::new();
    repo.config("version = 1\n[scope]\nallow = [\"src/**\", \"src/[ab\"]\n");
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    let line = out.error_line();
    assert!(line.contains("src/[ab"), "{line}");
    assert!(line.contains(":3:"), "{line}");
    assert!(line.contains("scope.allow"), "{line}");

    repo.agents(&["*:write:src/x:x"], &["*:approve"], "");
    let out = repo.pipeline(&["run", "--scope", "a/{b", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("--scope: invalid glob \"a/{b\""),
        "{}",
        out.stderr
    );
    assert_nothing_created(&repo);
}

#[test]
fn bad_values_exit_3() {
    let repo = TestRepo::new();
    for (body, needle) in [
        ("version = 2\n", "unsupported config version 2"),
        (
            "[agents.builder]\ncommand = [\"a\", \"{promt}\"]\n",
            "unknown placeholder {promt}",
        ),
        ("[agents.builder]\ncommand = []\n", "command is empty"),
        (
            "[agents.builder]\ncommand = [\"a\"]\ntimeout = \"soon\"\n",
            "invalid duration",
        ),
        ("[run]\nship = \"rebase\"\n", "unknown variant `rebase`"),
        (
            "[[gates]]\nname = \"t\"\ncommand = [\"x\"]\n[[gates]]\nname = \"t\"\ncommand = [\"y\"]\n",
            "two gates are named \"t\"",
        ),
        (
            "[run]\nworktree_root = \"inside\"\n[agents.builder]\ncommand = [\"true\"]\n[agents.verifier]\ncommand = [\"true\"]\n",
            "inside the main worktree",
        ),
    ] {
        repo.config(body);
        let out = repo.pipeline(&["run", "fix the typo"]);
        out.assert_code(3);
        assert!(
            out.error_line().contains(needle),
            "{needle:?} not in {}",
            out.stderr
        );
    }
    assert_nothing_created(&repo);
}

#[test]
fn missing_agents_and_binaries_exit_3() {
    let repo = TestRepo::new();
    repo.config("version = 1\n[agents.builder]\ncommand = [\"AGENT\"]\n");
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("no verifier agent configured"),
        "{}",
        out.stderr
    );

    repo.config("version = 1\n[agents.builder]\ncommand = [\"no-such-agent-cli\", \"{prompt}\"]\n[agents.verifier]\ncommand = [\"AGENT\"]\n");
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("`no-such-agent-cli` not found"),
        "{}",
        out.stderr
    );

    repo.agents(&["*:write:src/x:x"], &["*:approve"], "");
    let out = repo.pipeline(&["run", "--agent", "builder=ghost", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("unknown agent \"ghost\""),
        "{}",
        out.stderr
    );
    assert_nothing_created(&repo);
}

#[test]
fn a_personal_config_supplies_and_overrides_agents() {
    let repo = TestRepo::new();
    repo.config("version = 1\n[agents.builder]\ncommand = [\"no-such-agent-cli\"]\n[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n");
    let personal = repo.home.join(".config/git-pipeline/config.toml");
    repo.personal("[agents.builder]\ncommand = [\"AGENT\", \"*:write:src/p.rs:p\"]\n[agents.mine]\ncommand = [\"AGENT\", \"*:write:src/m.rs:m\"]\n");
    repo.pipeline(&["run", "add it"]).assert_code(0);
    let out = repo.pipeline(&["run", "--json", "--agent", "builder=mine", "add it"]);
    out.assert_code(0);
    assert_eq!(out.json()["changed_paths"], serde_json::json!(["src/m.rs"]));

    std::fs::write(&personal, "[gates]\n").expect("write");
    let out = repo.pipeline(&["run", "add it"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("config.toml:1:"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_empty_repository_or_bad_base_exits_3() {
    let repo = TestRepo::empty();
    let out = repo.pipeline(&["run", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("no commits yet"),
        "{}",
        out.stderr
    );

    let repo = TestRepo::new();
    repo.agents(&["*:write:src/x:x"], &["*:approve"], "");
    let out = repo.pipeline(&["run", "--base", "no-such-branch", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line()
            .contains("\"no-such-branch\" does not name a commit"),
        "{}",
        out.stderr
    );
}

#[test]
fn no_identity_to_commit_with_exits_3_before_any_agent_runs() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/x:x"], &["*:approve"], "");
    std::fs::write(repo.home.join(".gitconfig"), "").expect("clear identity");
    let mut cmd = repo.pipeline_cmd();
    // user.useConfigOnly: git may not guess a name from the system user, so the absence is real.
    cmd.args(["run", "fix the typo"])
        .env_remove("EMAIL")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "user.useConfigOnly")
        .env("GIT_CONFIG_VALUE_0", "true");
    let out = cmd.output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no identity"), "{stderr}");
    assert!(repo.calls().is_empty());
}

#[test]
fn usage_errors_exit_3() {
    let repo = TestRepo::new();
    let out = repo.pipeline(&["run", "--no-such-flag", "x"]);
    out.assert_code(3);
    let out = repo.pipeline(&["run", "--risk", "extreme", "x"]);
    out.assert_code(3);
    let out = repo.pipeline(&["show", "nope"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("no run matches \"nope\""),
        "{}",
        out.stderr
    );
    let out = repo.pipeline(&["show", "../etc"]);
    out.assert_code(3);
    let out = repo.pipeline(&["--help"]);
    out.assert_code(0);
}

/// Scope globs as people type them: an absolute path inside the checkout is the same glob made
/// relative; one outside it, or one climbing out, is refused before anything exists.
#[test]
fn scope_globs_are_normalised_or_refused_before_the_run() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/x.txt:x"], &["*:approve"], "");
    let abs = format!("{}/src/**", repo.path.display());
    let out = repo.pipeline(&["run", "--json", "--scope", &abs, "fix the typo"]);
    out.assert_code(0);
    assert_eq!(out.json()["scope"]["allow"][0], "src/**", "{}", out.stdout);

    let repo = TestRepo::new();
    repo.agents(&["*:write:src/x.txt:x"], &["*:approve"], "");
    for glob in ["/etc/**", "../elsewhere/**", "src/../../x"] {
        let out = repo.pipeline(&["run", "--scope", glob, "fix the typo"]);
        out.assert_code(3);
        assert!(out.error_line().contains(glob), "{}", out.stderr);
    }
    assert_nothing_created(&repo);
    assert!(repo.calls().is_empty());
}

/// A scope glob that matches no file is said before any agent runs (`src` is a folder: the
/// glob names a file), and with --strict it stops the run.
#[test]
fn a_scope_glob_matching_nothing_is_a_warning_or_with_strict_an_error() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/lib.rs:x"], &["*:approve"], "");
    let out = repo.pipeline(&[
        "run",
        "--scope",
        "src",
        "--create",
        "src/**",
        "fix the typo",
    ]);
    assert!(
        out.stderr.contains(
            "\"src\" matches no file at the base; a glob names files: did you mean \"src/**\"?"
        ),
        "{}",
        out.stderr
    );
    let out = repo.pipeline(&["run", "--strict", "--scope", "srcc/**", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line()
            .contains("\"srcc/**\" matches no file at the base"),
        "{}",
        out.stderr
    );
}

/// `run.worktree_root = "~/wt"` is under your home, as in a shell; never a folder named `~`.
#[test]
fn a_worktree_root_under_home_is_expanded() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/x.txt:x"],
        &["*:approve"],
        "[run]\nworktree_root = \"~/wt\"\nkeep_failed = true\n[[gates]]\nname = \"no\"\ncommand = [\"false\"]\n[limits]\nmax_fix_attempts = 0\n",
    );
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(4);
    let wt = out.json()["worktree"].as_str().unwrap_or("").to_owned();
    assert!(
        wt.starts_with(&*repo.home.join("wt").to_string_lossy()),
        "{wt}"
    );
    assert!(!repo.path.join("~").exists());
}

/// With --json, an error before any result is a JSON object on stdout too: a script reading
/// stdout gets the error, its hint and the exit code, never nothing.
#[test]
fn json_errors_before_a_run_are_json_on_stdout() {
    let repo = TestRepo::new();
    let out = repo.pipeline(&["run", "--json", "  "]);
    out.assert_code(5);
    let v = out.json();
    assert_eq!(v["error"], "the task is empty");
    assert_eq!(v["exit_code"], 5);
    assert!(
        v["hint"].as_str().unwrap_or("").contains("say what to do"),
        "{v}"
    );
    let out = repo.pipeline(&["show", "--json", "nope"]);
    out.assert_code(3);
    assert_eq!(out.json()["error"], "no run matches \"nope\"");
    // Without --json, stdout stays empty.
    let out = repo.pipeline(&["show", "nope"]);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

/// `--color never` holds for the -v logs as well as the progress.
#[test]
fn color_never_also_strips_the_logs() {
    let repo = TestRepo::new();
    // `verify` runs git through the layer that logs each command.
    let out = repo.pipeline(&["-vv", "--color", "never", "verify", "HEAD"]);
    assert!(
        out.stderr.contains("DEBUG"),
        "the logs are there: {:?}",
        out.stderr
    );
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
    let out = repo.pipeline(&["-vv", "--color", "always", "verify", "HEAD"]);
    assert!(out.stderr.contains('\x1b'), "{:?}", out.stderr);
}

/// A run started in the middle of a bisect, or from inside another run's worktree, says where
/// it starts from.
#[test]
fn a_run_says_when_it_starts_during_a_bisect_or_in_a_runs_worktree() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/x.txt:x"],
        &["*:approve"],
        "[run]\nkeep_failed = true\n[limits]\nmax_fix_attempts = 0\n[[gates]]\nname = \"no\"\ncommand = [\"false\"]\n",
    );
    repo.write("src/two.txt", "2\n");
    repo.commit_all("two");
    repo.git(&["bisect", "start", "HEAD", "HEAD~1"]);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    assert!(
        out.stderr.contains("a bisect is in progress here"),
        "{}",
        out.stderr
    );
    repo.git(&["bisect", "reset"]);
    let kept = out.json()["worktree"].as_str().unwrap_or("").to_owned();
    assert!(!kept.is_empty(), "{}", out.stdout);
    let out = repo.pipeline_in(std::path::Path::new(&kept), &["run", "fix the typo"]);
    assert!(out.stderr.contains("is a run's worktree"), "{}", out.stderr);
}

/// Records, prompts and events hold paths as text: a repository whose path is not UTF-8 is
/// refused with one line naming it (exit 3), not half-worked with mangled paths.
#[test]
fn a_repository_path_that_is_not_utf8_is_named_and_refused() {
    use std::os::unix::ffi::OsStrExt;
    let repo = TestRepo::new();
    let odd = repo
        .root()
        .join(std::ffi::OsStr::from_bytes(b"not-utf8-\xff"));
    std::fs::create_dir_all(&odd).expect("folder");
    repo.git_in(&odd, &["init", "-q"]);
    let out = repo.pipeline_in(&odd, &["run", "fix the typo"]);
    out.assert_code(3);
    assert!(
        out.error_line()
            .contains("the repository's path is not valid UTF-8"),
        "{}",
        out.stderr
    );
}
