//! The builtin `duplicates` gate with real runs: a builder that copies an existing function under
//! a new name goes back with the original named; new code passes; duplication that was there
//! before the run never fails it; the gate judges the tree that ships.

use crate::common::TestRepo;

const ORIGINAL: &str = "pub fn parse(input: &str) -> Vec<u32> {\n    let mut out = Vec::new();\n    for part in input.split(',') {\n        if let Ok(n) = part.trim().parse() {\n            out.push(n);\n        }\n    }\n    out\n}\n";

fn repo_with_parser() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("src/parse.rs", ORIGINAL);
    repo.commit_all("parser");
    repo
}

/// The parser, and a copy of it committed before any run: duplication that was there already.
fn repo_with_old_copy() -> TestRepo {
    let repo = repo_with_parser();
    repo.write(
        "src/parse_copy.rs",
        &ORIGINAL.replace("fn parse", "fn parse2"),
    );
    repo.commit_all("an old copy");
    repo
}

/// The duplicates gate's output on attempt 1 of a run.
fn gate_log(repo: &TestRepo, out: &crate::common::Out) -> String {
    let id = out.json()["run_id"].as_str().expect("id").to_owned();
    std::fs::read_to_string(repo.path.join(format!(
        ".git/pipeline/runs/{id}/outputs/gate-1.duplicates.log"
    )))
    .expect("gate log")
}

const GATE: &str = "[[gates]]\nname = \"duplicates\"\nbuiltin = \"duplicates\"\nengine = \"builtin\"\nmin_tokens = 20\nmin_lines = 3\n";

#[test]
fn a_copied_function_goes_back_to_the_builder_naming_the_original() {
    let repo = repo_with_parser();
    let copy = ORIGINAL.replace("fn parse", "fn parse_numbers");
    // Attempt 1 copies; attempt 2 (told where the original is) calls it instead.
    repo.agents(
        &[
            &format!("1:write:src/numbers.rs:{copy}"),
            "2:write:src/numbers.rs:pub fn numbers(s: &str) -> Vec<u32> { crate::parse::parse(s) }",
        ],
        &["*:approve"],
        &format!("[limits]\nmax_fix_attempts = 1\n{GATE}"),
    );
    let out = repo.pipeline(&["run", "--json", "add a number parser"]);
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["metrics"]["fix_attempts"], 1, "{r}");
    let prompt = repo.prompt("builder", 2);
    assert!(
        prompt.contains("Gate `duplicates` (`builtin duplicates`) failed"),
        "{prompt}"
    );
    assert!(prompt.contains("src/numbers.rs:1-"), "{prompt}");
    assert!(prompt.contains("repeats src/parse.rs:1-"), "{prompt}");
}

#[test]
fn new_code_and_duplication_from_before_the_run_pass() {
    let repo = repo_with_old_copy();
    repo.agents(
        &["*:write:src/total.rs:pub fn total(xs: &[u64]) -> u64 { xs.iter().sum() }"],
        &["*:approve"],
        &format!("[limits]\nmax_fix_attempts = 0\n{GATE}"),
    );
    let out = repo.pipeline(&["run", "--json", "add a total"]);
    out.assert_code(0);
    let log = gate_log(&repo, &out);
    assert!(log.starts_with("[in-process] no duplicated code"), "{log}");
}

#[test]
fn a_bad_builtin_is_a_config_error_and_doctor_and_init_know_the_gate() {
    let repo = repo_with_parser();
    for (gate, says) in [
        (
            "[[gates]]\nname = \"d\"\nbuiltin = \"lint\"\n",
            "unknown builtin \"lint\"",
        ),
        (
            "[[gates]]\nname = \"t\"\ncommand = [\"true\"]\nmin_lines = 3\n",
            "settings of `builtin",
        ),
        (
            "[[gates]]\nname = \"d\"\nbuiltin = \"duplicates\"\nengine = \"pmd\"\n",
            "engine \"pmd\"",
        ),
    ] {
        repo.agents(&["*:write:src/a.rs:x"], &["*:approve"], gate);
        let out = repo.pipeline(&["run", "x"]);
        out.assert_code(3);
        assert!(out.error_line().contains(says), "{}", out.stderr);
    }
    repo.agents(&["*:write:src/a.rs:x"], &["*:approve"], GATE);
    let doctor = repo.pipeline(&["doctor"]);
    assert!(
        doctor
            .stdout
            .contains("builtin duplicates (in-process detector; always available)"),
        "{}",
        doctor.stdout
    );
    let fresh = TestRepo::new();
    fresh.pipeline(&["init"]).assert_code(0);
    let text = fresh.read(".pipeline.toml");
    assert!(text.contains("builtin = \"duplicates\""), "{text}");
}

/// jscpd, when installed: the same verdicts through it. CI installs it (.ci/run), so there this
/// test cannot be skipped; elsewhere it says loudly that it did not run.
#[test]
fn jscpd_gives_the_same_verdicts_when_installed() {
    if crate::common::tool("jscpd").is_none() {
        return;
    }
    let gate = GATE.replace("engine = \"builtin\"", "engine = \"jscpd\"");
    for (write, passes) in [
        (ORIGINAL.replace("fn parse", "fn parse_numbers"), false),
        (
            "pub fn total(xs: &[u64]) -> u64 { xs.iter().sum() }\n".to_owned(),
            true,
        ),
    ] {
        let repo = repo_with_old_copy();
        repo.agents(
            &[&format!("*:write:src/numbers.rs:{write}")],
            &["*:approve"],
            &format!("[limits]\nmax_fix_attempts = 0\n{gate}"),
        );
        let out = repo.pipeline(&["run", "--json", "add numbers"]);
        out.assert_code(if passes { 0 } else { 4 });
        let log = gate_log(&repo, &out);
        assert!(log.starts_with("[jscpd 5."), "{log}");
        if !passes {
            assert!(log.contains("src/numbers.rs:"), "{log}");
            assert!(log.contains("repeats src/parse"), "{log}");
        }
    }
}
