//! Attestation format 2 (in-toto statements, DSSE signatures made with git's signing key), what
//! an attestation vouches for (the change: tree and parent tree), trailers, and notes that
//! travel with pushes and fetches. Real git, real ssh-keygen, a real bare remote.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{TestRepo, tool};
use crate::hooks::Remote;

fn note_of(repo: &TestRepo, commit: &str) -> Value {
    serde_json::from_str(&repo.git(&["notes", "--ref=refs/notes/pipeline", "show", commit]))
        .expect("the note is one JSON document")
}

/// The python with the in-toto attestation bindings (.ci/run installs them), or `None` when
/// this machine has none (a failure in CI).
fn in_toto_python() -> Option<PathBuf> {
    let python = tool("python3")?;
    let ok = std::process::Command::new(&python)
        .args(["-c", "import in_toto_attestation.v1.statement"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the in-toto-attestation Python package (.ci/run installs it)"
        );
        eprintln!("SKIPPED: python3 cannot import in_toto_attestation");
        return None;
    }
    Some(python)
}

/// Run `cmd` with `input` on its stdin; its whole outcome.
fn with_stdin(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the program runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write its input");
    child.wait_with_output().expect("it finishes")
}

/// The independent reader: the in-toto bindings parse and validate the note.
fn in_toto_reads(python: &Path, note: &str) -> Result<String, String> {
    let out = with_stdin(
        std::process::Command::new(python).arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/check_attestation.py"
        )),
        note.as_bytes(),
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A builder that reports a model the way Claude Code does, and appends a line.
const BUILDER: &[&str] = &[
    "*:append:log.txt:a line",
    r#"*:say:{"type":"result","modelUsage":{"test-model-1":{"inputTokens":900,"outputTokens":40},"side-model":{"inputTokens":3}}}"#,
];

#[test]
fn a_shipped_note_is_an_in_toto_statement_and_the_commit_says_who_assisted() {
    let repo = TestRepo::new();
    repo.agents(BUILDER, &["*:approve"], "");
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    let note = repo.git(&["notes", "--ref=refs/notes/pipeline", "show", &commit]);
    let v = note_of(&repo, &commit);
    assert_eq!(v["_type"], "https://in-toto.io/Statement/v1");
    let builder = &v["predicate"]["agents"][0];
    assert_eq!(builder["role"], "builder");
    assert_eq!(builder["cli"], "fake-agent");
    assert_eq!(builder["model"], "test-model-1", "the main model: {v}");

    // Trailers git itself parses.
    let message = repo.git(&["log", "-1", "--format=%B", &commit]);
    let trailers = String::from_utf8_lossy(
        &with_stdin(
            repo.command("git", &repo.root().join("repo"))
                .args(["interpret-trailers", "--parse"]),
            message.as_bytes(),
        )
        .stdout,
    )
    .into_owned();
    let run_id = out.json()["run_id"].as_str().expect("run id").to_owned();
    assert_eq!(
        trailers,
        format!("Assisted-by: fake-agent:test-model-1\nPipeline-Run: {run_id}\n"),
        "{message}"
    );

    if let Some(python) = in_toto_python() {
        assert_eq!(
            in_toto_reads(&python, &note),
            Ok("valid statement".to_owned())
        );
        // The reader is not a rubber stamp: a statement without its type is refused.
        let broken = note.replace("\"_type\"", "\"kind\"");
        assert!(in_toto_reads(&python, &broken).is_err());
    }
}

#[test]
fn trailers_can_be_turned_off() {
    let repo = TestRepo::new();
    repo.agents(BUILDER, &["*:approve"], "[ship]\ntrailers = []\n");
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    let message = repo.git(&["log", "-1", "--format=%B", &commit]);
    assert!(!message.contains("Assisted-by"), "{message}");
    assert!(message.contains("Pipeline-Run: "), "{message}");
}

/// The server runs git-pipeline's pre-receive hook.
fn install_pre_receive(remote: &Remote) {
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/pre-receive"),
        remote.bare.join("hooks/pre-receive"),
    )
    .expect("pre-receive");
}

/// An SSH key pair in the test's folder: (private key path, public key line).
fn ssh_key(repo: &TestRepo, name: &str) -> (PathBuf, String) {
    let key = repo.root().join(name);
    let out = repo
        .command("ssh-keygen", repo.root())
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public.trim().to_owned())
}

/// The repository signs with alice's key; the allowed-signers file trusts alice only.
fn signing_repo(remote: &Remote) -> PathBuf {
    let repo = &remote.repo;
    let (key, public) = ssh_key(repo, "alice");
    let allowed = repo.root().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("alice@example.com namespaces=\"git,git-pipeline\" {public}\n"),
    )
    .expect("allowed signers");
    for (k, v) in [
        ("gpg.format", "ssh"),
        ("user.signingKey", &key.to_string_lossy()),
        ("gpg.ssh.allowedSignersFile", &allowed.to_string_lossy()),
    ] {
        repo.git(&["config", k, v]);
    }
    allowed
}

/// Without a `gpg.*` or `user.signingKey` setting the ship starts no git process to ask for a
/// key; a conditional include is a setting too. Here the key is set only in a file included for
/// the repository's own git dir (`gitdir:` without a trailing slash matches it exactly, never a
/// worktree's admin folder): the attestation is still signed.
#[test]
fn a_signing_key_set_through_a_conditional_include_still_signs() {
    if tool("ssh-keygen").is_none() {
        return;
    }
    let remote = Remote::new();
    let repo = &remote.repo;
    let (key, _) = ssh_key(repo, "alice");
    let included = repo.root().join("signing.gitconfig");
    std::fs::write(
        &included,
        format!(
            "[gpg]\n\tformat = ssh\n[user]\n\tsigningKey = {}\n",
            key.display()
        ),
    )
    .expect("included config");
    let git_dir = repo.path.join(".git").canonicalize().expect("git dir");
    repo.git(&[
        "config",
        &format!("includeIf.gitdir:{}.path", git_dir.display()),
        &included.to_string_lossy(),
    ]);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    assert!(out.stderr.contains("(attested, signed)"), "{}", out.stderr);
}

/// Sign `payload` as a DSSE envelope with `key`, as an attacker with their own key would.
fn envelope_signed_by(repo: &TestRepo, key: &Path, payload: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pae = format!(
        "DSSEv1 28 application/vnd.in-toto+json {} {payload}",
        payload.len()
    );
    let out = with_stdin(
        repo.command("ssh-keygen", repo.root())
            .args(["-Y", "sign", "-n", "git-pipeline", "-f"])
            .arg(key),
        pae.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let armored = String::from_utf8_lossy(&out.stdout);
    let body: String = armored
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    serde_json::json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": b64.encode(payload),
        "signatures": [{"sig": body}],
    })
    .to_string()
}

#[test]
fn a_signed_attestation_verifies_here_and_with_ssh_keygen_and_forgeries_fail() {
    if tool("ssh-keygen").is_none() {
        return;
    }
    let remote = Remote::new();
    let repo = &remote.repo;
    let allowed = signing_repo(&remote);
    let base = repo.git(&["rev-parse", "HEAD"]);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    assert!(out.stderr.contains("(attested, signed)"), "{}", out.stderr);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    let envelope = note_of(repo, &commit);
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");

    // ssh-keygen itself verifies the signature over the DSSE encoding of the payload.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(envelope["payload"].as_str().expect("payload"))
        .expect("base64 payload");
    let sig = b64
        .decode(envelope["signatures"][0]["sig"].as_str().expect("sig"))
        .expect("base64 sig");
    let sig_file = repo.root().join("note.sig");
    let armored: String = {
        let text = b64.encode(&sig);
        let lines: Vec<String> = text
            .as_bytes()
            .chunks(70)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        format!(
            "-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n",
            lines.join("\n")
        )
    };
    std::fs::write(&sig_file, armored).expect("sig file");
    let mut pae = format!("DSSEv1 28 application/vnd.in-toto+json {} ", payload.len()).into_bytes();
    pae.extend_from_slice(&payload);
    std::fs::write(repo.root().join("note.pae"), &pae).expect("pae");
    let verified = repo
        .command("sh", repo.root())
        .arg("-c")
        .arg(format!(
            "ssh-keygen -Y verify -f {} -I alice@example.com -n git-pipeline -s note.sig < note.pae",
            allowed.display()
        ))
        .output()
        .expect("ssh-keygen");
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    if let Some(python) = in_toto_python() {
        let note = repo.git(&["notes", "--ref=refs/notes/pipeline", "show", &commit]);
        assert_eq!(
            in_toto_reads(&python, &note),
            Ok("valid envelope".to_owned())
        );
    }

    let range = format!("{base}..{commit}");
    let ok = repo.pipeline(&["verify", "--require-signature", &range]);
    ok.assert_code(0);
    assert!(
        ok.stdout.contains("1 attested and signed, 0 not"),
        "{}",
        ok.stdout
    );
    // A revoked key never verifies (gpg.ssh.revocationFile, as git verify-commit reads it).
    let revoked = repo.root().join("revoked_keys");
    std::fs::write(
        &revoked,
        std::fs::read_to_string(repo.root().join("alice.pub")).expect("alice.pub"),
    )
    .expect("revoked");
    repo.git(&[
        "config",
        "gpg.ssh.revocationFile",
        &revoked.to_string_lossy(),
    ]);
    let out = repo.pipeline(&["verify", "--require-signature", &range]);
    out.assert_code(1);
    assert!(out.stdout.contains("bad signature"), "{}", out.stdout);
    repo.git(&["config", "--unset", "gpg.ssh.revocationFile"]);

    // Forgeries on a commit made by hand: each fails --require-signature with its reason.
    repo.git(&["checkout", "-q", "--detach", &base]);
    let manual = remote.manual_commit("src/forged.rs", "pub fn forged() {}\n");
    let manual_tree = repo.git(&["rev-parse", "HEAD^{tree}"]);
    let statement: String = String::from_utf8_lossy(&payload)
        .replace(&commit, &manual)
        .replace(
            &repo.git(&["rev-parse", &format!("{commit}^{{tree}}")]),
            &manual_tree,
        );
    let (mallory, _) = ssh_key(repo, "mallory");
    let forged_by_mallory = envelope_signed_by(repo, &mallory, &statement);
    // alice's real signature, moved onto a statement she never signed.
    let mut moved: Value = envelope.clone();
    moved["payload"] = Value::String(b64.encode(&statement));
    let cases = [
        (
            "unsigned",
            statement.clone(),
            "unsigned: signatures are required",
        ),
        (
            "another key",
            forged_by_mallory.clone(),
            "bad signature: signed by a key that is not in",
        ),
        (
            "a moved signature",
            moved.to_string(),
            "bad signature: the SSH signature does not verify",
        ),
    ];
    let manual_range = format!("{base}..{manual}");
    for (what, note, why) in &cases {
        repo.git(&["notes", "--ref=pipeline", "add", "-f", "-m", note, &manual]);
        // Without signatures required the statement is taken at its word...
        repo.pipeline(&["verify", &manual_range]).assert_code(0);
        // ...with them, it is refused.
        let out = repo.pipeline(&["verify", "--require-signature", &manual_range]);
        out.assert_code(1);
        assert!(out.stdout.contains(why), "{what}: {}", out.stdout);
    }

    // The server requires signatures (its own git config): the forged note is refused on
    // receive, the genuinely signed work is received.
    install_pre_receive(&remote);
    let server = |args: &[&str]| repo.git_in(&remote.bare, args);
    server(&["config", "pipeline.requireSignature", "true"]);
    server(&[
        "config",
        "gpg.ssh.allowedSignersFile",
        &allowed.to_string_lossy(),
    ]);
    repo.git(&[
        "notes",
        "--ref=pipeline",
        "add",
        "-f",
        "-m",
        &forged_by_mallory,
        &manual,
    ]);
    let out = remote.push(&[
        "--no-verify",
        "origin",
        &format!("{manual}:refs/heads/main"),
        "refs/notes/pipeline",
    ]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("bad signature"), "{}", out.stderr);
    remote
        .push(&[
            "origin",
            &format!("{commit}:refs/heads/main"),
            "refs/notes/pipeline",
        ])
        .assert_code(0);
    assert_eq!(remote.remote_has("main").as_deref(), Some(commit.as_str()));
}

/// `attest.sign = "off"` writes a bare statement even with a signing key set, and a project that
/// requires signatures (`push.require_signature`) then refuses it at pre-push; without
/// `gpg.ssh.allowedSignersFile` no SSH signature can be checked, so none counts.
#[test]
fn sign_off_writes_a_bare_statement_that_required_signatures_refuse() {
    if tool("ssh-keygen").is_none() {
        return;
    }
    let remote = Remote::new();
    let repo = &remote.repo;
    signing_repo(&remote);
    repo.agents(
        BUILDER,
        &["*:approve"],
        "[attest]\nsign = \"off\"\n[push]\nrequire_signature = true\n",
    );
    remote
        .push(&["--no-verify", "origin", "main"])
        .assert_code(0);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    assert!(!out.stderr.contains("signed)"), "{}", out.stderr);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    let note = note_of(repo, &commit);
    assert_eq!(note["_type"], "https://in-toto.io/Statement/v1", "{note}");
    assert!(note.get("signatures").is_none(), "{note}");
    let out = remote.push(&[
        "origin",
        &format!("{commit}:refs/heads/main"),
        "refs/notes/pipeline",
    ]);
    assert_ne!(out.code, 0, "pre-push requires a signature: {}", out.stderr);
    assert!(
        out.stderr.contains("unsigned: signatures are required"),
        "{}",
        out.stderr
    );

    // Signed (the default), the same push goes through.
    repo.agents(
        BUILDER,
        &["*:approve"],
        "[push]\nrequire_signature = true\n",
    );
    remote
        .push(&["--no-verify", "origin", "main"])
        .assert_code(0);
    let base = repo.git(&["rev-parse", "HEAD"]);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    let signed = out.json()["commit"].as_str().expect("commit").to_owned();
    remote
        .push(&[
            "origin",
            &format!("{signed}:refs/heads/main"),
            "refs/notes/pipeline",
        ])
        .assert_code(0);

    // Nothing to check an SSH signature against: refused, and said why.
    repo.git(&["config", "--unset", "gpg.ssh.allowedSignersFile"]);
    let out = repo.pipeline(&[
        "verify",
        "--require-signature",
        &format!("{base}..{signed}"),
    ]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("gpg.ssh.allowedSignersFile is not set"),
        "{}",
        out.stdout
    );
}

#[test]
fn format_1_notes_in_existing_repositories_still_verify() {
    let remote = Remote::new();
    let repo = &remote.repo;
    let base = repo.git(&["rev-parse", "HEAD"]);
    let manual = remote.manual_commit("a.txt", "a\n");
    let tree = repo.git(&["rev-parse", "HEAD^{tree}"]);
    let v1 = |base: &str| {
        serde_json::json!({
            "version": 1, "run_id": "20261101-000000-ab12", "commit": manual, "tree": tree,
            "base": base, "approved": true, "verifier": "verifier (codex)", "rounds": 1,
            "gates": [{"name": "test", "status": "pass"}], "at": "2026-11-01T00:00:00Z"
        })
        .to_string()
    };
    repo.git(&[
        "notes",
        "--ref=pipeline",
        "add",
        "-f",
        "-m",
        &v1(&base),
        &manual,
    ]);
    let range = format!("{base}..{manual}");
    repo.pipeline(&["verify", &range]).assert_code(0);
    // Both hooks take it: pre-push here, pre-receive on the server.
    install_pre_receive(&remote);
    remote
        .push(&["origin", "main", "refs/notes/pipeline"])
        .assert_code(0);
    assert_eq!(remote.remote_has("main").as_deref(), Some(manual.as_str()));
    // A format 1 note whose base is another commit with another tree: not this change.
    repo.git(&[
        "notes",
        "--ref=pipeline",
        "add",
        "-f",
        "-m",
        &v1(&manual),
        &manual,
    ]);
    let out = repo.pipeline(&["verify", &range]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("attested for another parent"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_squash_merge_verifies_on_the_base_it_was_built_on_and_not_on_a_moved_one() {
    let remote = Remote::new();
    let repo = &remote.repo;
    let base = repo.git(&["rev-parse", "HEAD"]);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    let branch = out.json()["branch"].as_str().expect("branch").to_owned();
    repo.git(&["merge", "-q", "--squash", &branch]);
    repo.git(&["commit", "-q", "-m", "squashed"]);
    let squash = repo.git(&["rev-parse", "HEAD"]);
    let v = repo
        .pipeline(&["verify", "--json", &format!("{base}..{squash}")])
        .json();
    assert_eq!(v["attested"], 1, "a squash onto the verified base: {v}");
    remote.push(&["origin", "main"]).assert_code(0);

    // The base moved (a commit by hand); the same squash on top of it is another change.
    repo.git(&["reset", "-q", "--hard", &base]);
    let moved = remote.manual_commit("other.txt", "moved\n");
    repo.git(&["merge", "-q", "--squash", &branch]);
    repo.git(&["commit", "-q", "-m", "squashed again"]);
    let squash2 = repo.git(&["rev-parse", "HEAD"]);
    let out = repo.pipeline(&["verify", &format!("{moved}..{squash2}")]);
    out.assert_code(1);
    assert!(out.stdout.contains(&squash2[..12]), "{}", out.stdout);
    assert!(
        out.stdout.contains("squashed again: no note"),
        "why it fails: {}",
        out.stdout
    );
}

#[test]
fn a_rebase_that_keeps_the_attested_tree_reverts_a_fix_and_fails_verify_and_both_hooks() {
    let remote = Remote::new();
    let repo = &remote.repo;
    // One builder for two tasks: the fix and the feature edit the same line.
    repo.config(&repo.expand(concat!(
        "version = 1\n[agents.builder]\ncommand = [\"AGENT\", ",
        "\"*:run:if grep -q SECFIX \\\"$PIPELINE_PROMPT_FILE\\\"; then echo 'pub fn answer() -> u32 { 43 } // security fix' > src/lib.rs; else echo 'pub fn answer() -> u32 { 42 } // feature' > src/lib.rs; fi\"]\n",
        "[agents.verifier]\ncommand = [\"AGENT\", \"*:approve\"]\n",
    )));
    remote
        .push(&["--no-verify", "origin", "main"])
        .assert_code(0);
    let feature = repo.pipeline(&["run", "--json", "add the feature"]);
    feature.assert_code(0);
    let feature_commit = feature.json()["commit"].as_str().expect("c").to_owned();
    let fix = repo.pipeline(&["run", "--json", "apply SECFIX"]);
    fix.assert_code(0);
    let fix_commit = fix.json()["commit"].as_str().expect("f").to_owned();
    repo.git(&["merge", "-q", "--ff-only", &fix_commit]);
    remote
        .push(&["origin", "main", "refs/notes/pipeline"])
        .assert_code(0);

    // The feature rebased onto the fix with -X theirs: its tree is exactly the attested one,
    // so the fix is reverted; the note follows the rebase (notes.rewriteRef).
    repo.git(&["checkout", "-q", "-b", "rebased", &feature_commit]);
    repo.git(&["rebase", "-q", "-X", "theirs", "main"]);
    let rebased = repo.git(&["rev-parse", "HEAD"]);
    assert_eq!(
        repo.git(&["rev-parse", "HEAD^{tree}"]),
        repo.git(&["rev-parse", &format!("{feature_commit}^{{tree}}")]),
        "the rebase kept the attested tree"
    );
    assert!(
        !repo.read("src/lib.rs").contains("security fix"),
        "and reverted the fix"
    );
    assert!(
        repo.git_out(&["notes", "--ref=pipeline", "show", &rebased])
            .code
            == 0,
        "the note was copied by the rebase"
    );
    let out = repo.pipeline(&["verify", "main..rebased"]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("attested for another parent"),
        "{}",
        out.stdout
    );

    let out = remote.push(&["origin", "rebased:main", "refs/notes/pipeline"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("attested for another parent"),
        "{}",
        out.stderr
    );
    install_pre_receive(&remote);
    let out = remote.push(&[
        "--no-verify",
        "origin",
        "rebased:main",
        "refs/notes/pipeline",
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("refusing to receive"), "{}", out.stderr);
    assert_eq!(
        remote.remote_has("main").as_deref(),
        Some(fix_commit.as_str())
    );

    // The same by hand: the attested tree re-parented with `commit-tree`, the note copied.
    let feature_tree = repo.git(&["rev-parse", &format!("{feature_commit}^{{tree}}")]);
    let reparented = repo.git(&[
        "commit-tree",
        &feature_tree,
        "-p",
        "main",
        "-m",
        "re-parented",
    ]);
    repo.git(&[
        "notes",
        "--ref=pipeline",
        "copy",
        "-f",
        &feature_commit,
        &reparented,
    ]);
    let out = repo.pipeline(&["verify", &format!("main..{reparented}")]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("attested for another parent"),
        "{}",
        out.stdout
    );
    let out = remote.push(&[
        "--no-verify",
        "origin",
        &format!("{reparented}:refs/heads/main"),
        "refs/notes/pipeline",
    ]);
    assert_ne!(out.code, 0, "pre-receive refuses the re-parented commit");

    // What a rebased commit needs: `reverify` checks it on its new parent and attests that.
    repo.pipeline(&["reverify", "rebased"]).assert_code(0);
    repo.pipeline(&["verify", "main..rebased"]).assert_code(0);
}

#[test]
fn hooks_install_notes_makes_push_and_fetch_carry_the_notes_and_uninstall_undoes_it() {
    let remote = Remote::new();
    let repo = &remote.repo;
    let before = repo
        .git_out(&["config", "--get-regexp", "^remote\\."])
        .stdout;
    let out = repo.pipeline(&["hooks", "install", "--notes"]);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("travels with git push and git fetch for origin"),
        "{}",
        out.stdout
    );
    let commit = remote.attested_commit();
    // A plain `git push` sends the branch and the notes.
    remote.push(&[]).assert_code(0);
    assert_eq!(remote.remote_has("main").as_deref(), Some(commit.as_str()));
    assert!(remote.remote_has("refs/notes/pipeline").is_some());

    // A second clone: `git fetch` brings the notes into a copy of their own; verify reads it.
    let clone = repo.root().join("clone");
    repo.git_in(
        repo.root(),
        &[
            "clone",
            "-q",
            &remote.bare.to_string_lossy(),
            &clone.to_string_lossy(),
        ],
    );
    let in_clone = |args: &[&str]| repo.pipeline_in(&clone, args);
    in_clone(&["verify", "HEAD^..HEAD"]).assert_code(1);
    in_clone(&["hooks", "install", "--notes"]).assert_code(0);
    repo.git_in(&clone, &["fetch", "-q"]);
    assert!(
        !repo
            .git_in(&clone, &["rev-parse", "refs/notes/remotes/origin/pipeline"])
            .is_empty()
    );
    in_clone(&["verify", "HEAD^..HEAD"]).assert_code(0);
    let status = in_clone(&["hooks", "status"]);
    assert!(
        status.stdout.contains("notes fetched:  from origin"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("notes pushed:   to origin"),
        "{}",
        status.stdout
    );

    // Uninstall removes exactly what install added.
    repo.pipeline(&["hooks", "uninstall", "--notes"])
        .assert_code(0);
    let after = repo
        .git_out(&["config", "--get-regexp", "^remote\\."])
        .stdout;
    assert_eq!(before, after);
}

#[test]
fn verify_fetch_judges_by_the_remotes_notes() {
    let remote = Remote::new();
    let repo = &remote.repo;
    remote.attested_commit();
    remote
        .push(&["origin", "main", "refs/notes/pipeline"])
        .assert_code(0);
    let clone = repo.root().join("ci-checkout");
    repo.git_in(
        repo.root(),
        &[
            "clone",
            "-q",
            &remote.bare.to_string_lossy(),
            &clone.to_string_lossy(),
        ],
    );
    repo.pipeline_in(&clone, &["verify", "HEAD^..HEAD"])
        .assert_code(1);
    repo.pipeline_in(&clone, &["verify", "--fetch", "origin", "HEAD^..HEAD"])
        .assert_code(0);
    // The fetched notes served that check only: nothing is left to trust later.
    assert_eq!(
        repo.git_in(&clone, &["for-each-ref", "refs/pipeline/", "refs/notes/"]),
        ""
    );
    repo.pipeline_in(&clone, &["verify", "HEAD^..HEAD"])
        .assert_code(1);
    // A remote without notes: said, and the local notes decide.
    let empty = repo.root().join("empty.git");
    repo.git_in(
        repo.root(),
        &["init", "-q", "--bare", &empty.to_string_lossy()],
    );
    let out = repo.pipeline_in(
        &clone,
        &["verify", "--fetch", &empty.to_string_lossy(), "HEAD^..HEAD"],
    );
    assert!(
        out.stderr.contains("the remote has no refs/notes/pipeline"),
        "{}",
        out.stderr
    );
    let out = repo.pipeline_in(&clone, &["verify", "--fetch=--upload-pack=x", "HEAD"]);
    out.assert_code(3);
}

#[test]
fn an_openpgp_signed_attestation_verifies_against_the_keyring() {
    if tool("gpg").is_none() {
        return;
    }
    let remote = Remote::new();
    let repo = &remote.repo;
    let gpg = |args: &[&str]| {
        let out = repo
            .command("gpg", repo.root())
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .expect("gpg runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    gpg(&[
        "--quick-gen-key",
        "Alice <alice@example.com>",
        "ed25519",
        "sign",
        "never",
    ]);
    repo.git(&["config", "user.signingKey", "alice@example.com"]);
    let base = repo.git(&["rev-parse", "HEAD"]);
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    assert!(out.stderr.contains("(attested, signed)"), "{}", out.stderr);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    let range = format!("{base}..{commit}");
    repo.pipeline(&["verify", "--require-signature", &range])
        .assert_code(0);
    // The signature moved onto a statement alice never signed (one field changed): BADSIG.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let genuine = repo.git(&["notes", "--ref=refs/notes/pipeline", "show", &commit]);
    let mut envelope: Value = serde_json::from_str(&genuine).expect("envelope");
    let payload = b64
        .decode(envelope["payload"].as_str().expect("payload"))
        .expect("base64");
    let altered = String::from_utf8_lossy(&payload).replacen("\"rounds\":1", "\"rounds\":2", 1);
    assert_ne!(
        altered.as_bytes(),
        &payload[..],
        "the statement has a rounds field"
    );
    envelope["payload"] = Value::String(b64.encode(&altered));
    repo.git(&[
        "notes",
        "--ref=pipeline",
        "add",
        "-f",
        "-m",
        &envelope.to_string(),
        &commit,
    ]);
    let out = repo.pipeline(&["verify", "--require-signature", &range]);
    out.assert_code(1);
    assert!(out.stdout.contains("bad signature"), "{}", out.stdout);
    repo.git(&[
        "notes",
        "--ref=pipeline",
        "add",
        "-f",
        "-m",
        &genuine,
        &commit,
    ]);
    // The server checks OpenPGP signatures against its own keyring (the same one here).
    install_pre_receive(&remote);
    repo.git_in(
        &remote.bare,
        &["config", "pipeline.requireSignature", "true"],
    );
    remote
        .push(&[
            "--no-verify",
            "origin",
            &format!("{commit}^:refs/heads/main"),
        ])
        .assert_code(0);
    remote
        .push(&[
            "origin",
            &format!("{commit}:refs/heads/main"),
            "refs/notes/pipeline",
        ])
        .assert_code(0);
    // Once the key is gone from the keyring, the signature cannot be checked: refused.
    let fingerprint = gpg(&["--with-colons", "--list-secret-keys", "alice@example.com"])
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_owned())
        })
        .expect("fingerprint");
    gpg(&["--yes", "--delete-secret-and-public-key", &fingerprint]);
    let out = repo.pipeline(&["verify", "--require-signature", &range]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("signed by an OpenPGP key that is not in the keyring"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_pushed_config_cannot_loosen_the_servers_policy() {
    let remote = Remote::new();
    let repo = &remote.repo;
    install_pre_receive(&remote);
    // The push brings a config that enforces only release branches, and unattested code.
    let loosened = repo.read(".pipeline.toml") + "\n[push]\nbranches = [\"release/*\"]\n";
    repo.write(".pipeline.toml", &loosened);
    repo.write("evil.txt", "unreviewed\n");
    repo.commit_all("enforce release branches only");
    for target in ["main", "HEAD:refs/heads/topic"] {
        let out = remote.push(&["--no-verify", "origin", target]);
        assert_ne!(out.code, 0, "{target}: {}", out.stderr);
        assert!(out.stderr.contains("refusing to receive"), "{}", out.stderr);
    }
}

#[test]
fn an_agent_trace_record_names_the_lines_the_agent_wrote() {
    let repo = TestRepo::new();
    repo.write("log.txt", "one\ntwo\n");
    repo.commit_all("a log");
    repo.agents(BUILDER, &["*:approve"], "[attest]\nagent_trace = true\n");
    let out = repo.pipeline(&["run", "--json", "fix the typo"]);
    out.assert_code(0);
    let commit = out.json()["commit"].as_str().expect("commit").to_owned();
    let record: Value = serde_json::from_str(&repo.git(&[
        "notes",
        "--ref=refs/notes/agent-trace",
        "show",
        &commit,
    ]))
    .expect("the record is JSON");
    assert_eq!(record["version"], "0.1.0");
    assert_eq!(
        record["vcs"],
        serde_json::json!({"type": "git", "revision": commit})
    );
    assert_eq!(
        record["files"],
        serde_json::json!([{
            "path": "log.txt",
            "conversations": [{
                "contributor": {"type": "ai", "model_id": "test-model-1"},
                "ranges": [{"start_line": 3, "end_line": 3}],
            }],
        }])
    );
    assert_eq!(
        record["id"].as_str().map(str::len),
        Some(36),
        "a UUID: {record}"
    );
    // Off by default.
    let plain = TestRepo::new();
    plain.agents(BUILDER, &["*:approve"], "");
    plain.pipeline(&["run", "fix the typo"]).assert_code(0);
    assert_ne!(
        plain
            .git_out(&["rev-parse", "--verify", "--quiet", "refs/notes/agent-trace"])
            .code,
        0
    );
}

/// What a pusher with no signing key could try against the server's check: a replace ref that
/// shows an attested commit's content in place of another's, an unverified commit parked on a
/// tag and then made a protected branch, deleting a protected branch (to re-create it under a
/// policy of its choosing), deleting or rewriting the notes.
#[test]
fn the_server_is_not_fooled_by_replace_refs_tags_deletions_or_rewritten_notes() {
    let remote = Remote::new();
    let repo = &remote.repo;
    install_pre_receive(&remote);
    let good = remote.attested_commit();
    remote
        .push(&["origin", "main", "refs/notes/pipeline"])
        .assert_code(0);
    let evil = remote.manual_commit("src/evil.rs", "pub fn evil() {}\n");

    // A replace ref: the push of the ref itself is not a branch and passes, but it must not
    // make the unverified commit look attested.
    remote
        .push(&[
            "--no-verify",
            "origin",
            &format!("{good}:refs/replace/{evil}"),
        ])
        .assert_code(0);
    let out = remote.push(&["--no-verify", "origin", "main"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(&evil[..12]), "{}", out.stderr);

    // Parked on a tag, then a new protected branch at it.
    remote
        .push(&["--no-verify", "origin", &format!("{evil}:refs/tags/parked")])
        .assert_code(0);
    let out = remote.push(&[
        "--no-verify",
        "origin",
        &format!("{evil}:refs/heads/release"),
    ]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(&evil[..12]), "{}", out.stderr);

    // Deleting the protected branch, and deleting or rewriting the notes.
    let out = remote.push(&["--no-verify", "origin", ":main"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("deleting the protected branch main"),
        "{}",
        out.stderr
    );
    let out = remote.push(&["--no-verify", "origin", ":refs/notes/pipeline"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("deleting refs/notes/pipeline"),
        "{}",
        out.stderr
    );
    repo.git(&["notes", "--ref=other", "add", "-m", "x", &evil]);
    let out = remote.push(&[
        "--no-verify",
        "origin",
        "+refs/notes/other:refs/notes/pipeline",
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("not a fast-forward"), "{}", out.stderr);
    assert_eq!(remote.remote_has("main").as_deref(), Some(good.as_str()));
    assert!(remote.remote_has("release").is_none());
}
