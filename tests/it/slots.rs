//! Worktree slots: a run reuses a worktree another run left, reset to its base exactly as a new
//! checkout would be, keeping only the declared build caches; concurrent runs never share one; a
//! stopped run's slot is archived before it is taken; setup steps run only when their files
//! changed; `clean` reports slots and removes idle ones on request; a slot that is not the folder
//! git-pipeline made is never entered.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::TestRepo;
use crate::worktree_prep::files_of;

/// The files of `dir` outside `target/` (the cache a Cargo project keeps).
fn without_cache(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = files_of(dir);
    files.retain(|(p, _)| !p.starts_with("target/"));
    files
}

/// What `git worktree add` makes of HEAD, as the reference.
fn control(repo: &TestRepo, name: &str) -> std::path::PathBuf {
    let path = repo.root().join(name);
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        &path.to_string_lossy(),
        "HEAD",
    ]);
    path
}

/// Where the last builder call worked.
fn last_builder_cwd(repo: &TestRepo) -> String {
    cwd_of(
        &repo
            .calls()
            .into_iter()
            .rfind(|c| c.starts_with("role=builder"))
            .expect("a builder call"),
    )
}

/// A run whose builder does `actions` in slot 0 and is rejected, its worktree abandoned when
/// kept: the slot is idle, holding what the run left.
fn leave_in_slot(repo: &TestRepo, actions: &[&str]) {
    leave_in_slot_with(repo, actions, "");
}

/// [`leave_in_slot`] with more `[run]` settings.
fn leave_in_slot_with(repo: &TestRepo, actions: &[&str], run: &str) {
    repo.agents(
        actions,
        &["*:reject:no"],
        // A config of its own each time: the rounds of one test differ in it.
        &format!(
            "# {}\n[run]\nsandbox = \"off\"\n{run}[verify]\nmax_rounds = 1\n",
            actions.join(" ")
        ),
    );
    assert_ne!(repo.pipeline(&["run", "--json", "add the helper"]).code, 0);
    let first = repo.run_ids().into_iter().max().expect("id");
    if repo.worktree_of(&first).is_some() {
        repo.pipeline(&["abandon", &first]).assert_code(0);
    }
}

/// The next run, whose builder does `actions` (then writes `src/b.rs`), shipping from slot 0
/// reset in place.
fn next_in_slot(repo: &TestRepo, actions: &[&str]) {
    next_in_slot_with(repo, actions, "");
}

/// [`next_in_slot`] with more `[run]` settings.
fn next_in_slot_with(repo: &TestRepo, actions: &[&str], run: &str) {
    let mut builder = actions.to_vec();
    builder.push("*:write:src/b.rs:b");
    repo.agents(
        &builder,
        &["*:approve"],
        &format!("# {}\n[run]\nsandbox = \"off\"\n{run}", actions.join(" ")),
    );
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    assert!(!out.stderr.contains("making it again"), "{}", out.stderr);
    assert_eq!(last_builder_cwd(repo), repo.slot(0).display().to_string());
}

/// The next run, which finds slot 0 unfit to reset and makes it again: what it printed.
fn next_in_remade_slot(repo: &TestRepo) -> String {
    repo.agents(
        &["*:write:src/b.rs:b"],
        &["*:approve"],
        "[run]\nsandbox = \"off\"\n",
    );
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    assert!(out.stderr.contains("making it again"), "{}", out.stderr);
    out.stderr
}

fn cwd_of(call: &str) -> String {
    call.split(' ')
        .find_map(|f| f.strip_prefix("cwd="))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_reused_slot_holds_exactly_a_new_checkouts_files_and_keeps_only_the_caches() {
    let repo = TestRepo::new();
    // Filters, line endings, an executable, a symlink, a post-checkout hook; a Cargo project, so
    // `target/` is the cache a slot keeps.
    crate::worktree_prep::with_checkout_rules(&repo);
    repo.write(".gitignore", "target/\n*.log\n");
    repo.write("Cargo.toml", "[package]\nname = \"demo\"\n");
    repo.write("doc.txt", "one\ntwo\n");
    repo.commit_all("content");
    repo.write(".git/info/exclude", ".post-checkout-ran\n");
    repo.hook(
        "post-checkout",
        "#!/bin/sh\necho \"$3\" > .post-checkout-ran\n",
    );

    // Run 1 leaves everything a run can leave: tracked edits, a deletion, a mode change, an
    // untracked file, an ignored file, a cache file; it fails and is rolled back.
    repo.agents(
        &[
            "*:write:README.md:changed",
            "*:delete:run.bat",
            "*:run:chmod -x bin/tool && ln -sf elsewhere bin/readme",
            "*:write:notes.txt:untracked",
            "*:write:build.log:ignored",
            "*:write:target/debug/cache.bin:warm",
            "*:write:data/a.secret:Changed Secret",
        ],
        &["*:reject:no"],
        "[verify]\nmax_rounds = 1\n",
    );
    let first = repo.pipeline(&["run", "--json", "add the helper"]);
    first.assert_code(2);
    assert!(first.json()["archive"].is_string(), "{}", first.stdout);
    assert!(repo.busy_worktrees().is_empty());

    // The base moves on (a file changes, one is added) before the next run.
    repo.write("src/lib.rs", "pub fn answer() -> u32 { 43 }\n");
    repo.write("src/more.rs", "pub fn more() {}\n");
    repo.commit_all("the base moves on");
    let inspect = repo.root().join("logs/inspect");
    repo.agents(
        &[
            &format!("*:copyout:{}", inspect.display()),
            "*:write:src/new.rs:x",
        ],
        &["*:approve"],
        "",
    );
    let control = control(&repo, "control");
    let user_before = repo.user_state();
    let second = repo.pipeline(&["run", "--json", "add the helper"]);
    second.assert_code(0);
    assert!(
        second.stderr.contains("worktree slot 0: reset to")
            && second.stderr.contains("only changed files written"),
        "{}",
        second.stderr
    );
    assert_eq!(
        repo.user_state(),
        user_before,
        "the user's checkout is untouched"
    );
    assert_eq!(last_builder_cwd(&repo), repo.slot(0).display().to_string());

    // Exactly the files of a new checkout of the base, plus the cache, which is kept.
    assert_eq!(without_cache(&inspect), files_of(&control));
    let ours: std::collections::BTreeMap<_, _> = files_of(&inspect).into_iter().collect();
    assert_eq!(
        ours["target/debug/cache.bin"], b"warm\n",
        "the cache is kept"
    );
    assert!(!ours.contains_key("notes.txt") && !ours.contains_key("build.log"));
    assert_eq!(ours["data/a.secret"], b"Hello Secret\n");
    assert_eq!(ours["run.bat"], b"echo one\r\necho two\r\n");
    assert_eq!(ours["bin/readme"], b"../README.md");
    assert_eq!(
        ours[".post-checkout-ran"], b"1\n",
        "post-checkout ran as a branch checkout"
    );
    let mode = std::fs::metadata(inspect.join("bin/tool"))
        .expect("tool")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);

    // A changed .gitattributes changes how unchanged blobs are written: every file is written.
    repo.write(
        ".gitattributes",
        "*.secret filter=rot13\n*.bat text eol=crlf\n*.txt text eol=crlf\n",
    );
    repo.commit_all("crlf for txt");
    let control = self::control(&repo, "control-crlf");
    std::fs::remove_dir_all(&inspect).expect("clear inspect");
    let third = repo.pipeline(&["run", "--json", "add the helper"]);
    third.assert_code(0);
    assert!(
        third.stderr.contains("every file written"),
        "{}",
        third.stderr
    );
    assert_eq!(without_cache(&inspect), files_of(&control));
    let ours: std::collections::BTreeMap<_, _> = files_of(&inspect).into_iter().collect();
    assert_eq!(ours["doc.txt"], b"one\r\ntwo\r\n");
}

#[test]
fn concurrent_runs_never_share_a_slot() {
    let repo = TestRepo::new();
    repo.agents(
        &[
            "*:run:touch LOGS/started-$PIPELINE_SLOT",
            "*:sleep:2",
            "*:write:src/a.rs:a",
        ],
        &["*:approve"],
        "",
    );
    let first = repo.spawn_until(
        &["run", "--json", "add the helper"],
        &repo.root().join("logs/started-0"),
    );
    let second = repo.pipeline(&["run", "--json", "add the helper"]);
    second.assert_code(0);
    let first = first.wait_with_output().expect("wait");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let builders: Vec<String> = repo
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("role=builder"))
        .collect();
    assert_eq!(builders.len(), 2, "{builders:?}");
    let mut places: Vec<(String, String)> = builders
        .iter()
        .map(|c| {
            let slot = c
                .split(' ')
                .find_map(|f| f.strip_prefix("slot="))
                .unwrap_or("")
                .to_owned();
            (slot, cwd_of(c))
        })
        .collect();
    places.sort();
    assert_eq!(
        places,
        vec![
            ("0".to_owned(), repo.slot(0).display().to_string()),
            ("1".to_owned(), repo.slot(1).display().to_string()),
        ]
    );
    assert!(repo.busy_worktrees().is_empty());
}

#[test]
fn a_killed_runs_slot_is_archived_then_reused_and_the_run_still_resumes() {
    let repo = TestRepo::new();
    let inspect = repo.root().join("logs/inspect");
    repo.agents(
        &[
            &format!("*:copyout:{}", inspect.display()),
            "*:write:src/a.rs:from the first run",
            "*:killparent",
        ],
        &["*:approve"],
        // The kill comes from inside the step, which the sandbox refuses: off here.
        "[run]\nmax_slots = 1\nsandbox = \"off\"\n",
    );
    let killed = repo.pipeline(&["run", "--json", "add the helper"]);
    assert_eq!(killed.code, 137, "{}", killed.stderr);
    let first = repo.run_ids().into_iter().max().expect("id");
    assert_eq!(repo.worktree_of(&first), Some(repo.slot(0)));

    // The only slot is held by the killed run: the next run archives its state and takes it.
    std::fs::remove_dir_all(&inspect).expect("clear");
    let second = repo.pipeline(&["run", "--json", "add the helper"]);
    second.assert_code(0);
    assert!(
        second
            .stderr
            .contains(&format!("worktree slot 0: taken from stopped run {first}")),
        "{}",
        second.stderr
    );
    assert!(
        !inspect.join("src/a.rs").exists(),
        "the killed run's file does not leak into the next run"
    );
    let archive = format!("refs/pipeline/archive/{first}");
    assert_eq!(
        repo.git(&["show", &format!("{archive}:src/a.rs")]),
        "from the first run"
    );

    // The killed run resumes in a worktree of its own, rebuilt from what was archived.
    let resumed = repo.pipeline(&["resume", "--json", &first]);
    resumed.assert_code(0);
    let r = resumed.json();
    assert_eq!(r["status"], "succeeded");
    let commit = r["commit"].as_str().expect("commit");
    assert_eq!(
        repo.git(&["show", &format!("{commit}:src/a.rs")]),
        "from the first run"
    );
    assert_eq!(
        last_builder_cwd(&repo),
        repo.worktree_root().join(&first).display().to_string()
    );
    assert!(repo.busy_worktrees().is_empty());
}

#[test]
fn setup_runs_once_per_slot_and_again_only_when_its_lockfile_changes() {
    let repo = TestRepo::new();
    repo.write("package.json", "{\"name\": \"demo\"}\n");
    repo.write("package-lock.json", "{\"lockfileVersion\": 3}\n");
    repo.write(".gitignore", "node_modules/\n");
    repo.commit_all("an npm project");
    let config = "[[setup]]\nname = \"deps\"\ncommand = [\"sh\", \"-c\", \"echo ran >> LOGS/setup.log && mkdir -p node_modules && cp package-lock.json node_modules/lock-copy\"]\nwhen_changed = [\"package-lock.json\"]\n[[gates]]\nname = \"deps-installed\"\ncommand = [\"cmp\", \"package-lock.json\", \"node_modules/lock-copy\"]\n";
    let setups = || {
        std::fs::read_to_string(repo.root().join("logs/setup.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    repo.agents(&["*:write:src/a.rs:a"], &["*:approve"], config);
    repo.pipeline(&["run", "add the helper"]).assert_code(0);
    assert_eq!(setups(), 1, "the first run installs");
    let out = repo.pipeline(&["run", "add the helper"]);
    out.assert_code(0);
    assert_eq!(setups(), 1, "the warm slot needs nothing");
    assert!(
        out.stderr
            .contains("setup deps: skipped (package-lock.json unchanged"),
        "{}",
        out.stderr
    );
    // The change updates the lockfile: setup runs again before the gates see it.
    repo.agents(
        &["*:write:package-lock.json:{\"lockfileVersion\": 3, \"packages\": {}}"],
        &["*:approve"],
        config,
    );
    let out = repo.pipeline(&["run", "update the lockfile"]);
    out.assert_code(0);
    assert_eq!(setups(), 2, "{}", out.stderr);
    // The slot now holds that lockfile's install; a run on the base reinstalls.
    repo.agents(&["*:write:src/b.rs:b"], &["*:approve"], config);
    repo.pipeline(&["run", "add the helper"]).assert_code(0);
    assert_eq!(setups(), 3);
}

#[test]
fn a_failing_setup_stops_the_run_before_any_agent_and_setup_may_write_ignored_files_only() {
    // A setup program that is not there: refused before anything is made.
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/a.rs:a"],
        &["*:approve"],
        "[[setup]]\nname = \"deps\"\ncommand = [\"no-such-installer\"]\n",
    );
    let before = repo.user_state();
    let out = repo.pipeline(&["run", "add the helper"]);
    out.assert_code(3);
    assert_eq!(
        out.error_line(),
        "error: setup step \"deps\": `no-such-installer` is not found, so the setup step would fail every attempt"
    );
    assert_eq!(repo.user_state(), before);
    assert!(repo.run_ids().is_empty() && repo.linked_worktrees().is_empty());

    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/a.rs:a"],
        &["*:approve"],
        "[[setup]]\nname = \"deps\"\ncommand = [\"sh\", \"-c\", \"echo no network >&2; exit 7\"]\n",
    );
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(3);
    let r = out.json();
    assert_eq!(r["reason"], "setup_failed");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("setup deps failed before any agent ran: exit status 7"),
        "{r}"
    );
    assert_eq!(repo.calls_of("builder"), 0);
    assert!(repo.busy_worktrees().is_empty());

    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/a.rs:a"],
        &["*:approve"],
        "[[setup]]\nname = \"deps\"\ncommand = [\"sh\", \"-c\", \"echo changed >> README.md\"]\n",
    );
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(3);
    assert!(
        out.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("it changed files that are not ignored: README.md"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.calls_of("builder"), 0);
}

#[test]
fn clean_reports_slots_removes_idle_ones_on_request_and_never_a_folder_it_did_not_make() {
    let repo = TestRepo::new();
    repo.agents(&["*:write:src/a.rs:a"], &["*:approve"], "");
    repo.pipeline(&["run", "add the helper"]).assert_code(0);
    let decoy = repo.slot(7);
    std::fs::create_dir_all(&decoy).expect("decoy");
    std::fs::write(decoy.join("mine.txt"), "mine").expect("decoy file");

    let out = repo.pipeline(&["clean", "--dry-run"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains(&format!(
            "kept worktree slot 0 ({}): idle,",
            repo.slot(0).display()
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("MB of it build caches; clean --slots removes it"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "kept worktree slot 7 ({}): git-pipeline did not make this folder",
            decoy.display()
        )),
        "{}",
        out.stdout
    );
    let out = repo.pipeline(&["clean", "--slots"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("remove worktree slot 0"),
        "{}",
        out.stdout
    );
    assert!(repo.linked_worktrees().is_empty());
    assert!(!repo.path.join(".git/pipeline/slots/0.json").exists());
    assert_eq!(
        std::fs::read_to_string(decoy.join("mine.txt")).expect("kept"),
        "mine"
    );
    // The next run makes the slot again.
    repo.pipeline(&["run", "add the helper"]).assert_code(0);
    assert_eq!(
        repo.linked_worktrees(),
        vec![repo.slot(0).display().to_string()]
    );
}

#[test]
fn a_slot_replaced_by_a_symlink_or_another_folder_is_left_alone() {
    for how in ["symlink", "folder", "pointer"] {
        let repo = TestRepo::new();
        repo.agents(&["*:write:src/a.rs:a"], &["*:approve"], "");
        repo.pipeline(&["run", "add the helper"]).assert_code(0);
        let decoy = repo.root().join("decoy");
        std::fs::create_dir_all(&decoy).expect("decoy");
        std::fs::write(decoy.join("keep.txt"), "keep").expect("decoy file");
        let slot = repo.slot(0);
        match how {
            "symlink" => {
                std::fs::rename(&slot, repo.root().join("moved-slot")).expect("move away");
                std::os::unix::fs::symlink(&decoy, &slot).expect("symlink");
            }
            "folder" => {
                std::fs::rename(&slot, repo.root().join("moved-slot")).expect("move away");
                std::fs::create_dir_all(&slot).expect("folder");
                std::fs::write(slot.join("keep.txt"), "keep").expect("file");
            }
            _ => {
                // The slot's .git pointer now names your checkout's git dir: a reset through it
                // would move your HEAD and rewrite your index.
                std::fs::write(slot.join("keep.txt"), "keep").expect("file");
                std::fs::write(
                    slot.join(".git"),
                    format!("gitdir: {}\n", repo.path.join(".git").display()),
                )
                .expect("pointer");
            }
        }
        let user_before = repo.user_state();
        let out = repo.pipeline(&["run", "--json", "add the helper"]);
        out.assert_code(0);
        assert!(
            out.stderr.contains("worktree slot 0:") && out.stderr.contains("left alone"),
            "{how}: {}",
            out.stderr
        );
        assert_eq!(
            last_builder_cwd(&repo),
            repo.slot(1).display().to_string(),
            "{how}"
        );
        assert_eq!(
            repo.user_state(),
            user_before,
            "{how}: your checkout is untouched"
        );
        assert_eq!(
            std::fs::read_to_string(decoy.join("keep.txt")).expect("decoy"),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(slot.join("keep.txt")).expect("slot"),
            "keep"
        );
        let out = repo.pipeline(&["clean", "--slots"]);
        out.assert_code(0);
        assert_eq!(
            std::fs::read_to_string(slot.join("keep.txt")).expect("slot"),
            "keep",
            "{how}"
        );
    }
}

#[test]
fn a_kept_failure_holds_its_slot_until_it_is_abandoned() {
    let repo = TestRepo::new();
    repo.agents(
        &["*:write:src/a.rs:a"],
        &["*:reject:no"],
        "[verify]\nmax_rounds = 1\n",
    );
    let kept = repo.pipeline(&["run", "--json", "--keep", "add the helper"]);
    kept.assert_code(2);
    let kept_id = kept.json()["run_id"].as_str().expect("id").to_owned();
    assert_eq!(repo.worktree_of(&kept_id), Some(repo.slot(0)));

    repo.agents(&["*:write:src/b.rs:b"], &["*:approve"], "");
    repo.pipeline(&["run", "add the helper"]).assert_code(0);
    assert_eq!(last_builder_cwd(&repo), repo.slot(1).display().to_string());
    assert_eq!(
        std::fs::read_to_string(repo.slot(0).join("src/a.rs")).expect("kept work"),
        "a\n"
    );

    repo.pipeline(&["abandon", &kept_id]).assert_code(0);
    repo.pipeline(&["run", "add the helper"]).assert_code(0);
    assert_eq!(last_builder_cwd(&repo), repo.slot(0).display().to_string());
    assert!(repo.busy_worktrees().is_empty());
}

#[test]
fn a_reused_slot_has_fresh_submodules_and_worktreeinclude_copies() {
    // Run 1 leaves an untracked file and an edit inside the submodule, and edits the copied
    // `.env`; it fails. Run 2, in the same slot, sees none of it.
    let repo = crate::worktree_prep::with_submodule(&[]);
    repo.write(".gitignore", ".env\n");
    repo.write(".worktreeinclude", ".env\n");
    repo.commit_all("an included .env");
    repo.write(".env", "FROM=your checkout\n");
    repo.agents(
        &[
            "*:append:sub/s.txt:edited inside",
            "*:write:sub/stray.txt:untracked inside",
            "*:write:.env:FROM=the agent",
            "*:write:src/a.rs:a",
        ],
        &["*:reject:no"],
        "[run]\nsandbox = \"off\"\n[verify]\nmax_rounds = 1\n",
    );
    repo.pipeline(&["run", "--json", "add the helper"])
        .assert_code(1);
    // The submodule's edit keeps the first run's worktree (work inside a submodule is never
    // lost); abandoning the run archives it and gives the slot back.
    let first = repo.run_ids().into_iter().max().expect("id");
    assert_eq!(repo.worktree_of(&first), Some(repo.slot(0)));
    repo.pipeline(&["abandon", &first]).assert_code(0);
    assert!(repo.busy_worktrees().is_empty());
    let inspect = repo.root().join("logs/inspect");
    repo.agents(
        &[
            &format!("*:copyout:{}", inspect.display()),
            "*:write:src/b.rs:b",
        ],
        &["*:approve"],
        "[run]\nsandbox = \"off\"\n",
    );
    let control = control(&repo, "control");
    repo.git_in(&control, &["submodule", "update", "--init", "-q"]);
    std::fs::write(control.join(".env"), "FROM=your checkout\n").expect("the include, as copied");
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    assert_eq!(last_builder_cwd(&repo), repo.slot(0).display().to_string());
    let mut ours = files_of(&inspect);
    ours.retain(|(p, _)| !p.starts_with("sub/.git"));
    let mut theirs = files_of(&control);
    theirs.retain(|(p, _)| !p.starts_with("sub/.git"));
    assert_eq!(ours, theirs);
}

#[test]
fn a_slot_the_reset_cannot_make_new_is_made_again() {
    // A file that is not ignored, planted in a folder named like a cache (`build/` keeps Gradle's
    // output, and here also matches a source package), and a folder made unreadable: run 2 gets
    // a slot made again, with neither.
    let repo = TestRepo::new();
    repo.write(".gitignore", "/build/\n");
    repo.commit_all("ignore the build output");
    repo.agents(
        &[
            "*:write:src/com/acme/build/Evil.java:class Evil {}",
            "*:write:build/out.bin:cached",
            "*:run:mkdir -p locked/deep && touch locked/deep/f && chmod 000 locked/deep",
        ],
        &["*:reject:no"],
        "[run]\ncaches = [\"build/\"]\n[verify]\nmax_rounds = 1\n",
    );
    assert_ne!(repo.pipeline(&["run", "--json", "add the helper"]).code, 0);
    let first = repo.run_ids().into_iter().max().expect("id");
    // The unreadable folder may keep the first run's worktree (it cannot be archived): done with.
    if repo.worktree_of(&first).is_some() {
        let _ = std::process::Command::new("chmod")
            .args(["-R", "u+rwX"])
            .arg(repo.slot(0))
            .status();
        repo.pipeline(&["abandon", &first]).assert_code(0);
        let _ = std::process::Command::new("chmod")
            .arg("000")
            .arg(repo.slot(0).join("locked/deep"))
            .status();
    }
    let inspect = repo.root().join("logs/inspect");
    repo.agents(
        &[
            &format!("*:copyout:{}", inspect.display()),
            "*:write:src/b.rs:b",
        ],
        &["*:approve"],
        "[run]\ncaches = [\"build/\"]\n",
    );
    let out = repo.pipeline(&["run", "--json", "add the helper"]);
    out.assert_code(0);
    assert!(
        out.stderr.contains("worktree slot 0:") && out.stderr.contains("making it again"),
        "{}",
        out.stderr
    );
    assert!(!inspect.join("src/com/acme/build/Evil.java").exists());
    assert!(!inspect.join("locked").exists());
    assert_eq!(last_builder_cwd(&repo), repo.slot(0).display().to_string());
    assert!(repo.busy_worktrees().is_empty());
}

#[test]
fn a_submodule_pointed_at_your_own_is_never_reset() {
    // The agent points the slot's submodule at your checkout's submodule git dir, whose
    // worktree is your `sub/`: resetting the slot's submodules through it would discard your
    // work there. The slot is made again instead.
    let repo = crate::worktree_prep::with_submodule(&[]);
    leave_in_slot(
        &repo,
        &[
            "*:run:printf 'gitdir: %s\\n' ROOT/repo/.git/modules/sub > sub/.git",
            "*:write:src/a.rs:a",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(repo.slot(0).join("sub/.git")).expect("the planted pointer"),
        format!("gitdir: {}\n", repo.path.join(".git/modules/sub").display())
    );
    // Your own work inside your submodule.
    std::fs::write(repo.path.join("sub/s.txt"), "s\nmine, not committed\n").expect("edit");
    std::fs::write(repo.path.join("sub/mine.txt"), "untracked, mine\n").expect("untracked");
    next_in_remade_slot(&repo);
    assert_eq!(
        std::fs::read_to_string(repo.path.join("sub/s.txt")).expect("yours"),
        "s\nmine, not committed\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path.join("sub/mine.txt")).expect("yours"),
        "untracked, mine\n"
    );
}

#[test]
fn a_repository_planted_in_a_tracked_folder_never_reaches_the_next_run() {
    // git clean lists no `.git`, so one planted inside a tracked folder would outlive the reset,
    // and a gate running git in `src/` would run the planted fsmonitor. Run 2 gets the slot
    // reset in place, without it.
    let repo = TestRepo::new();
    leave_in_slot(
        &repo,
        &[
            "*:run:git init -q src/tmpx && mv src/tmpx/.git src/.git && rmdir src/tmpx",
            "*:run:git -C src config core.fsmonitor 'touch ROOT/pwned'",
            "*:write:src/a.rs:a",
        ],
    );
    assert!(repo.slot(0).join("src/.git/config").exists(), "planted");
    let _ = std::fs::remove_file(repo.root().join("pwned"));
    next_in_slot(
        &repo,
        &[
            "*:run:test ! -e src/.git",
            "*:run:cd src && git status --short >/dev/null",
        ],
    );
    assert!(
        !repo.root().join("pwned").exists(),
        "the planted fsmonitor ran"
    );
}

#[test]
fn a_submodule_folder_pointed_at_another_repository_is_emptied_never_followed() {
    // The agent points the slot's submodule at a repository of yours elsewhere and drops the
    // submodule from `.gitmodules` (which the reset's checkout puts back): a reset that
    // trusted `sub/.git` would check the submodule's commit out there, detaching its HEAD and
    // dropping what you staged.
    let repo = crate::worktree_prep::with_submodule(&[]);
    let victim = repo.root().join("victim");
    repo.git_in(
        repo.root(),
        &[
            "clone",
            "-q",
            &repo.root().join("sub-upstream").to_string_lossy(),
            &victim.to_string_lossy(),
        ],
    );
    std::fs::write(victim.join("staged.txt"), "yours\n").expect("write");
    repo.git_in(&victim, &["add", "staged.txt"]);
    // And in the checkout the runs start from: an edit and an untracked file.
    repo.write("README.md", "# demo, being edited\n");
    repo.write("notes.txt", "mine\n");
    leave_in_slot(
        &repo,
        &[
            "*:run:printf 'gitdir: %s\\n' ROOT/victim/.git > sub/.git",
            "*:run:sed -i '/path = sub/d' .gitmodules",
            "*:write:src/a.rs:a",
        ],
    );
    next_in_slot(&repo, &[]);
    // (Each run's config is committed by the test itself, so only the files are compared.)
    assert_eq!(
        std::fs::read_to_string(repo.path.join("README.md")).expect("yours"),
        "# demo, being edited\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path.join("notes.txt")).expect("yours"),
        "mine\n"
    );
    let head = repo.git_in(&victim, &["symbolic-ref", "HEAD"]);
    assert_eq!(head.trim(), "refs/heads/main", "the victim's HEAD moved");
    let staged = repo.git_in(&victim, &["diff", "--cached", "--name-only"]);
    assert_eq!(
        staged.trim(),
        "staged.txt",
        "the victim lost what was staged"
    );
    // The slot's submodule is its own checkout again.
    let pointer = std::fs::read_to_string(repo.slot(0).join("sub/.git")).expect("pointer");
    assert!(pointer.contains("/modules/sub"), "{pointer}");
    assert_eq!(
        std::fs::read_to_string(repo.slot(0).join("sub/s.txt")).expect("checked out"),
        "s\n"
    );
}

#[test]
fn a_submodule_the_new_base_drops_or_cannot_check_out_leaves_nothing_in_the_slot() {
    // git's checkout cannot remove a submodule folder that still holds its checkout ("unable
    // to rmdir") and says so only as a warning; git clean never looks into one. A new checkout
    // of a base without the submodule has no `sub/`; of a base whose `.gitmodules` is gone, an
    // empty `sub/`.
    let repo = crate::worktree_prep::with_submodule(&[]);
    let leave = |repo: &TestRepo| {
        leave_in_slot(
            repo,
            &[
                "*:write:sub/left.txt:from the last run",
                "*:write:src/a.rs:a",
            ],
        );
        assert!(repo.slot(0).join("sub/left.txt").exists());
        assert!(
            repo.slot(0).join("sub/s.txt").exists(),
            "the submodule checked out"
        );
    };
    leave(&repo);
    repo.git(&["rm", "-q", ".gitmodules"]);
    repo.git(&["commit", "-q", "-m", "no .gitmodules"]);
    let dropped = repo.git(&["rev-parse", "HEAD"]);
    next_in_slot(&repo, &["*:run:test -d sub && test -z \"$(ls -A sub)\""]);
    repo.git(&["revert", "--no-edit", dropped.trim()]);
    // `.gitmodules` back: the next run's slot has the submodule checked out again.
    leave(&repo);
    repo.git(&["rm", "-q", "sub"]);
    repo.git(&["commit", "-q", "-m", "no submodule"]);
    next_in_slot(&repo, &["*:run:test ! -e sub"]);
}

#[test]
fn a_submodule_the_new_base_turns_into_a_symlink_is_never_looked_through() {
    // The new base has `sub` as a symlink to a repository of yours: git's checkout replaces the
    // slot's submodule folder with it, and the reset must not then remove `sub/.git` (yours).
    let repo = crate::worktree_prep::with_submodule(&[]);
    let victim = repo.root().join("victim");
    std::fs::create_dir(&victim).expect("mkdir");
    repo.git_in(&victim, &["init", "-q"]);
    leave_in_slot(&repo, &["*:write:sub/left.txt:left", "*:write:src/a.rs:a"]);
    repo.git(&["rm", "-q", "sub"]);
    std::os::unix::fs::symlink(&victim, repo.path.join("sub")).expect("symlink");
    repo.git(&["add", "sub"]);
    repo.git(&["commit", "-q", "-m", "sub is a symlink now"]);
    next_in_slot(&repo, &["*:run:test -L sub"]);
    assert!(
        victim.join(".git/HEAD").is_file(),
        "your repository lost its .git"
    );
}

#[test]
fn a_repository_planted_in_a_tracked_folder_named_like_a_cache_is_removed_too() {
    // `build/` is a cache, and also a tracked source folder here: the reset looks into it.
    let repo = TestRepo::new();
    repo.write("tools/build/make.sh", "echo build\n");
    repo.commit_all("a tracked folder named like a cache");
    let caches = "caches = [\"build/\"]\n";
    leave_in_slot_with(
        &repo,
        &[
            "*:run:git init -q tools/build/x && mv tools/build/x/.git tools/build/.git && rmdir tools/build/x",
            "*:write:src/a.rs:a",
        ],
        caches,
    );
    assert!(repo.slot(0).join("tools/build/.git").exists(), "planted");
    next_in_slot_with(&repo, &["*:run:test ! -e tools/build/.git"], caches);
}

#[test]
fn a_hook_planted_in_the_slots_submodule_git_dir_never_runs() {
    // The submodule's git dir lies in the worktree's admin folder, which steps may write; the
    // reset runs `git submodule update` there outside any step. A hook planted there makes the
    // slot new instead of running.
    let repo = crate::worktree_prep::with_submodule(&[]);
    let hook = "ROOT/repo/.git/worktrees/slot-0/modules/sub/hooks/post-checkout";
    leave_in_slot(
        &repo,
        &[
            &format!("*:run:printf '#!/bin/sh\\ntouch ROOT/pwned\\n' > {hook} && chmod +x {hook}"),
            "*:write:src/a.rs:a",
        ],
    );
    assert!(
        repo.path
            .join(".git/worktrees/slot-0/modules/sub/hooks/post-checkout")
            .is_file(),
        "planted"
    );
    let stderr = next_in_remade_slot(&repo);
    assert!(stderr.contains("has a hook"), "{stderr}");
    assert!(!repo.root().join("pwned").exists(), "the planted hook ran");
}
