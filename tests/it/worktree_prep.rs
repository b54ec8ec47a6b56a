//! The run's worktree is what `git` itself would check out (filters, line endings, hooks,
//! submodules), plus the ignored files the project asks for; LFS without git-lfs stops the run.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::TestRepo;

pub(crate) fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() || e.file_type().is_symlink())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .expect("rel")
                .to_string_lossy()
                .into_owned();
            let bytes = if e.file_type().is_symlink() {
                std::fs::read_link(e.path())
                    .expect("link")
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes()
            } else {
                std::fs::read(e.path()).expect("read")
            };
            (rel, bytes)
        })
        .collect();
    v.sort();
    v
}

/// Content whose checkout is not its blobs: a smudge/clean filter of the kind LFS uses,
/// line-ending rules, an executable, a symlink (not committed).
pub(crate) fn with_checkout_rules(repo: &TestRepo) {
    repo.git(&["config", "filter.rot13.smudge", "tr A-Za-z N-ZA-Mn-za-m"]);
    repo.git(&["config", "filter.rot13.clean", "tr A-Za-z N-ZA-Mn-za-m"]);
    repo.git(&["config", "filter.rot13.required", "true"]);
    repo.write(
        ".gitattributes",
        "*.secret filter=rot13\n*.bat text eol=crlf\n",
    );
    repo.write("data/a.secret", "Hello Secret\n");
    repo.write("run.bat", "echo one\necho two\n");
    repo.write("bin/tool", "#!/bin/sh\n");
    std::fs::set_permissions(
        repo.path.join("bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::os::unix::fs::symlink("../README.md", repo.path.join("bin/readme")).expect("symlink");
}

#[test]
fn checkout_matches_git_worktree_add_with_filters_eol_symlinks_and_hooks() {
    let repo = TestRepo::new();
    with_checkout_rules(&repo);
    repo.commit_all("content with attributes");
    // The stored blob is the clean (rot13) form; the checkout shows the smudged form.
    assert_eq!(
        repo.git(&["cat-file", "-p", "HEAD:data/a.secret"]),
        "Uryyb Frperg"
    );
    // A post-checkout hook (shared by all worktrees) that leaves an ignored marker.
    repo.write(".git/info/exclude", ".post-checkout-ran\n");
    repo.hook(
        "post-checkout",
        "#!/bin/sh\necho \"$3\" > .post-checkout-ran\n",
    );

    let inspect = repo.root().join("logs/inspect");
    repo.agents(
        &[
            &format!("*:copyout:{}", inspect.display()),
            "*:write:src/new.rs:x",
        ],
        &["*:approve"],
        "",
    );
    // What git itself makes, as the reference.
    let control = repo.root().join("control");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        &control.to_string_lossy(),
        "HEAD",
    ]);
    let out = repo.pipeline(&["run", "add the helper"]);
    out.assert_code(0);

    let mut ours = files_of(&inspect);
    ours.retain(|(p, _)| p != "src/new.rs");
    assert_eq!(ours, files_of(&control));
    let ours_map: std::collections::BTreeMap<_, _> = ours.into_iter().collect();
    assert_eq!(ours_map["data/a.secret"], b"Hello Secret\n");
    assert_eq!(ours_map["run.bat"], b"echo one\r\necho two\r\n");
    assert_eq!(
        ours_map[".post-checkout-ran"], b"1\n",
        "post-checkout ran as a branch checkout"
    );
    assert_eq!(ours_map["bin/readme"], b"../README.md");
    // Modes survive the copy-out with tar; check the executable bit explicitly.
    let mode = std::fs::metadata(inspect.join("bin/tool"))
        .expect("tool")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
}

#[test]
fn worktreeinclude_copies_ignored_files_and_nothing_else() {
    let repo = TestRepo::new();
    repo.write(".gitignore", ".env\nlocal/\n*.log\n");
    repo.commit_all("ignores");
    repo.write(".env", "DATABASE_URL=postgres://local\n");
    repo.write("local/settings.json", "{}\n");
    repo.write("debug.log", "not listed, not copied\n");
    repo.write("notes.txt", "untracked but not ignored: never copied\n");
    repo.write(".worktreeinclude", "# files the project needs\n.env\n");
    repo.agents(
        &[
            "*:require:.env",
            "*:require:local/settings.json",
            "*:write:src/found.txt:ok",
        ],
        &["*:approve"],
        "[run]\ninclude = [\"local/\"]\n[scope]\nallow = [\"src/**\"]\n",
    );
    let inspect = repo.root().join("logs/inspect");
    // Add a copy-out after the checks so we can look at the worktree.
    repo.agents(
        &[
            "*:require:.env",
            "*:require:local/settings.json",
            &format!("*:copyout:{}", inspect.display()),
            "*:write:src/found.txt:ok",
        ],
        &["*:approve"],
        "[run]\ninclude = [\"local/\"]\n[scope]\nallow = [\"src/**\"]\n",
    );
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(inspect.join(".env")).expect(".env copied"),
        "DATABASE_URL=postgres://local\n"
    );
    assert!(!inspect.join("debug.log").exists());
    assert!(!inspect.join("notes.txt").exists());
    // Copied files are ignored, so they are not changes of the run.
    assert_eq!(
        out.json()["changed_paths"],
        serde_json::json!(["src/found.txt"])
    );
}

#[test]
fn submodules_are_initialised_in_the_worktree() {
    let repo = TestRepo::new();
    let sub = repo.root().join("sub");
    std::fs::create_dir_all(&sub).expect("sub");
    repo.git_in(&sub, &["init", "-q"]);
    std::fs::write(sub.join("lib.txt"), "from the submodule\n").expect("write");
    repo.git_in(&sub, &["add", "-A"]);
    repo.git_in(&sub, &["commit", "-q", "-m", "sub"]);
    repo.git(&[
        "submodule",
        "add",
        "-q",
        &sub.to_string_lossy(),
        "vendor/sub",
    ]);
    repo.commit_all("add submodule");
    repo.agents(
        &["*:require:vendor/sub/lib.txt", "*:write:src/new.rs:x"],
        &["*:approve"],
        "",
    );
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    assert_eq!(
        out.json()["changed_paths"],
        serde_json::json!(["src/new.rs"])
    );
}

#[test]
fn lfs_without_git_lfs_stops_before_anything_is_created() {
    if std::process::Command::new("git")
        .args(["lfs", "version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        // With git-lfs installed the run would go ahead; this machine tests the other case.
        return;
    }
    let repo = TestRepo::new();
    repo.write(
        ".gitattributes",
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    );
    repo.commit_all("lfs attributes");
    repo.agents(&["*:write:src/new.rs:x"], &["*:approve"], "");
    let out = repo.pipeline(&["run", "add the helper"]);
    out.assert_code(3);
    assert!(
        out.error_line().contains("git-lfs is not installed"),
        "{}",
        out.stderr
    );
    assert!(repo.run_ids().is_empty());
    assert!(repo.pipeline_branches().is_empty());
}

#[test]
fn agents_git_commands_act_on_their_worktree_even_when_git_dir_is_set() {
    // As when git-pipeline runs from inside a git hook: GIT_DIR and GIT_INDEX_FILE are set.
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/a.rs:a", "*:commit:agent commit"],
        &["*:approve"],
        "",
    );
    let main_head = repo.git(&["rev-parse", "main"]);
    let mut cmd = repo.pipeline_cmd();
    cmd.args(["run", "--json", "add the helper"])
        .env("GIT_DIR", repo.path.join(".git"))
        .env("GIT_INDEX_FILE", repo.path.join(".git/index"))
        .env("GIT_WORK_TREE", &repo.path);
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        repo.git(&["rev-parse", "main"]),
        main_head,
        "the agent's commit went to main"
    );
    let env = std::fs::read_to_string(repo.logs.join("builder-1.env")).expect("env log");
    for var in ["GIT_DIR=", "GIT_INDEX_FILE=", "GIT_WORK_TREE="] {
        assert!(
            !env.lines().any(|l| l.starts_with(var)),
            "{var} reached the agent:\n{env}"
        );
    }
    for var in [
        "PIPELINE_RUN_ID=",
        "PIPELINE_STAGE=execution",
        "PIPELINE_ROLE=builder",
        "PIPELINE_SESSION_ID=",
        "PIPELINE_WORKTREE=",
        "PIPELINE_PROMPT_FILE=",
        "PIPELINE_BASE=",
        "PIPELINE_ATTEMPT=1",
        "PIPELINE_SLOT=0",
    ] {
        assert!(
            env.lines().any(|l| l.starts_with(var)),
            "{var} missing:\n{env}"
        );
    }
}

#[test]
fn local_env_var_list_matches_the_installed_git() {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--local-env-vars"])
        .output()
        .expect("git");
    let mut theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let mut ours: Vec<String> = git_pipeline::git::LOCAL_ENV_VARS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    theirs.sort();
    ours.sort();
    assert_eq!(ours, theirs);
}

#[test]
fn a_post_checkout_hook_that_leaves_changes_fails_the_setup_clearly() {
    let repo = TestRepo::new();
    repo.agents(&["*:append:src/lib.rs:// x"], &["*:approve"], "");
    repo.hook(
        "post-checkout",
        "#!/bin/sh\necho generated > generated.txt\n",
    );
    let before = repo.user_state();
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(3);
    let r = out.json();
    assert_eq!(r["reason"], "setup_failed");
    let error = r["error"].as_str().unwrap_or("");
    assert!(
        error.contains("already differs from the base: A generated.txt"),
        "{error}"
    );
    assert!(out.stderr.contains("post-checkout hook"), "{}", out.stderr);
    assert!(repo.calls().is_empty(), "no agent ran");
    assert!(repo.pipeline_branches().is_empty());
    assert!(repo.busy_worktrees().is_empty());
    crate::common::assert_untouched(&before, &repo.user_state());
}

/// An edit of the same size, made in the same second as the checkout, is still a change: the
/// snapshot's copy of the index keeps its mtime, so git's racy-entry check re-reads the file.
/// (With a copy stamped later, git trusted the stale stat and saw nothing.)
#[test]
fn a_same_size_edit_right_after_checkout_is_seen() {
    let repo = TestRepo::new();
    repo.agents(
        &["1:write:README.md:# DEMO", "1:sleep:1.2"],
        &["*:approve"],
        "",
    );
    let out = repo.pipeline(&["run", "--json", "fix the typo in the readme"]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(
        r["changed_paths"],
        serde_json::json!(["README.md"]),
        "{r:#}"
    );
    let branch = r["branch"].as_str().expect("branch");
    assert_eq!(
        repo.git(&["show", &format!("{branch}:README.md")]),
        "# DEMO"
    );
}

/// In a sparse checkout, the run's worktree is sparse too; what the agent writes outside the
/// cone is its work like any other (shipped), and what stays outside is never taken as deleted.
#[test]
fn a_sparse_checkout_ships_edits_outside_the_cone_and_deletes_nothing() {
    let repo = TestRepo::new();
    repo.write("b/y.txt", "old\n");
    repo.write("b/keep.txt", "keep\n");
    repo.commit_all("b");
    repo.agents(
        &[
            "*:append:src/lib.rs:// more",
            "*:write:b/new.txt:outside the cone",
            "*:write:b/y.txt:changed outside the cone",
        ],
        &["*:approve"],
        "",
    );
    repo.git(&["sparse-checkout", "set", "--cone", "src"]);
    assert!(
        !repo.path.join("b/keep.txt").exists(),
        "b/ is outside the cone"
    );
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    let changed = repo.git(&["diff", "--name-status", &format!("{commit}^"), &commit]);
    assert_eq!(
        changed, "A\tb/new.txt\nM\tb/y.txt\nM\tsrc/lib.rs",
        "only what the agent changed: {changed}"
    );
    assert_eq!(
        repo.git(&["show", &format!("{commit}:b/y.txt")]),
        "changed outside the cone"
    );
}

/// A repository whose `sub/` is a submodule (cloned from a local repository), with `config`.
pub(crate) fn with_submodule(builder: &[&str]) -> TestRepo {
    let repo = TestRepo::new();
    let upstream = repo.root().join("sub-upstream");
    std::fs::create_dir_all(&upstream).expect("upstream");
    repo.git_in(&upstream, &["init", "-q", "-b", "main"]);
    std::fs::write(upstream.join("s.txt"), "s\n").expect("write");
    repo.git_in(&upstream, &["add", "s.txt"]);
    repo.git_in(&upstream, &["commit", "-q", "-m", "s"]);
    repo.git(&["submodule", "add", "-q", &upstream.to_string_lossy(), "sub"]);
    repo.git(&["commit", "-q", "-m", "add the submodule"]);
    repo.agents(builder, &["*:approve"], "[run]\nsandbox = \"off\"\n");
    repo
}

/// Work inside a submodule is never lost: edits not committed there, or a submodule commit that
/// exists only in the run's worktree, end the run with the worktree kept and the reason named.
#[test]
fn work_inside_a_submodule_is_seen_and_kept_never_lost() {
    let repo = with_submodule(&["*:append:sub/s.txt:edited inside"]);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(1);
    assert!(
        out.error_line()
            .contains("changed files inside submodule sub without committing them there"),
        "{}",
        out.stderr
    );
    let id = repo.run_ids().into_iter().max().expect("id");
    let wt = repo.worktree_of(&id).expect("the worktree is recorded");
    assert_eq!(
        std::fs::read_to_string(wt.join("sub/s.txt")).expect("the edit is kept"),
        "s\nedited inside\n"
    );

    // A run whose builder does `action` ends refusing an unpublished submodule commit.
    let refused = |action: &str| {
        let repo = with_submodule(&[action]);
        let out = repo.pipeline(&["run", "--json", "fix the typo"]);
        out.assert_code(1);
        assert!(
            out.error_line()
                .contains("exists only in this run's worktree"),
            "{action}: {}",
            out.stderr
        );
        repo
    };
    let repo = refused("*:run:cd sub && echo more >> s.txt && git commit -qam inside");
    let id = repo.run_ids().into_iter().max().expect("id");
    let wt = repo.worktree_of(&id).expect("the worktree is recorded");
    let log = repo.git_in(&wt.join("sub"), &["log", "-1", "--format=%s"]);
    assert_eq!(log, "inside", "the submodule commit is kept");

    // Claiming the commit is published: a remote-tracking branch planted at it, and the
    // submodule's remote pointed at a repository of the agent's own that has it.
    refused(
        "*:run:cd sub && echo more >> s.txt && git commit -qam inside && git update-ref refs/remotes/origin/planted HEAD && git clone -q --bare . ../../own.git && git remote set-url origin ../../own.git",
    );

    // The submodule's own config (the agent's to write) is never used to ask its remote: a URL
    // rewritten to an `ext::` command would run outside the sandbox. The step's containment
    // check stops the run at the setting itself.
    let repo = with_submodule(&[
        "*:run:cd sub && echo more >> s.txt && git commit -qam inside && u=$(git config remote.origin.url) && git config protocol.ext.allow always && git config \"url.ext::sh -c touch% ROOT/pwned.insteadOf\" \"$u\"",
    ]);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(1);
    assert!(out.error_line().contains("sets protocol"), "{}", out.stderr);
    assert!(
        !repo.root().join("pwned").exists(),
        "nothing the agent configured ran"
    );

    // Moving the submodule to a commit its remote has (a dependency bump) ships as usual.
    let repo = with_submodule(&["*:run:cd sub && git fetch -q && git checkout -q origin/main"]);
    let upstream = repo.root().join("sub-upstream");
    std::fs::write(upstream.join("s.txt"), "s\nupstream\n").expect("write");
    repo.git_in(&upstream, &["commit", "-q", "-am", "upstream"]);
    let bumped = repo.git_in(&upstream, &["rev-parse", "HEAD"]);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    assert_eq!(
        repo.git(&["rev-parse", &format!("{commit}:sub")]),
        bumped,
        "the gitlink moved to the published commit"
    );
}
