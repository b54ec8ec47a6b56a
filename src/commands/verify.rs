//! `git pipeline verify [RANGE]`: which commits carry a valid attestation.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::emit;
use crate::attest::NOTES_REF;
use crate::attest::verify;
use crate::attest::verify::Judged;
use crate::cli::VerifyCmd;
use crate::error::Exit;
use crate::error::Result;
use crate::git::Git;
use crate::git::Repo;
use crate::ui::Ui;

/// Where `--fetch` puts the remote's notes while they are read: not a remote's mirror (no remote
/// can be named so), and removed afterwards.
const FETCHED: &str = "refs/pipeline/fetched-notes";

/// The commits of `revs`, judged by the notes of `sources`: (judged, how many, signatures
/// required).
fn judge(
    git: &Git,
    cmd: &VerifyCmd,
    revs: &[String],
    sources: &[String],
) -> Result<(Vec<Judged>, usize, bool)> {
    let commits = crate::git::history::list_commits(git, revs)?;
    let total = commits.len();
    let require_signature = cmd.require_signature
        || crate::git::config::get_bool(git, "pipeline.requireSignature")?.unwrap_or(false);
    let sources = verify::Sources {
        notes: sources,
        require_signature,
    };
    Ok((
        verify::judge_commits(git, commits, &sources)?,
        total,
        require_signature,
    ))
}

pub fn verify(cmd: VerifyCmd, cwd: &Path, out: &mut dyn Write, ui: &Ui) -> Result<Exit> {
    let repo = Repo::discover(cwd)?;
    let git = repo.git();
    verify::check_revs(&cmd.range)?;
    let (revs, label) = if cmd.range.is_empty() {
        default_range(&git)?
    } else {
        (cmd.range.clone(), cmd.range.join(" "))
    };
    let mut sources = crate::attest::hooks::notes_sources(&git)?;
    let mut fetched = false;
    if let Some(remote) = &cmd.fetch {
        if crate::git::notes::fetch_notes(&git, remote, NOTES_REF, FETCHED)? {
            sources.push(FETCHED.to_owned());
            fetched = true;
        } else {
            ui.warn(format!(
                "the remote has no {NOTES_REF}: judging by the local notes only"
            ));
        }
    }
    let judged = judge(&git, &cmd, &revs, &sources);
    if fetched {
        // The fetched notes served this check only: a URL given once is not trusted later.
        crate::git::refs::delete(&git, FETCHED, None)?;
    }
    let (judged, total, require_signature) = judged?;
    let bad: Vec<&Judged> = judged.iter().filter(|j| !j.attested()).collect();
    let has_notes = crate::git::objects::ref_value(&git, NOTES_REF)?.is_some();
    if cmd.json {
        let v = json!({
            "version": 1,
            "range": label,
            "commits": total,
            "attested": total - bad.len(),
            "signatures_required": require_signature,
            "unattested": bad,
        });
        emit(
            out,
            &format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()),
        )?;
    } else {
        let mut t = format!(
            "{total} commit{} in {label}: {} attested{}, {} not\n",
            if total == 1 { "" } else { "s" },
            total - bad.len(),
            if require_signature { " and signed" } else { "" },
            bad.len()
        );
        for j in &bad {
            t.push_str(&line(j));
        }
        if !bad.is_empty() {
            t.push_str("fix: run the work through the pipeline, or attest a commit with: git pipeline reverify <commit>\n");
            if !has_notes {
                t.push_str(&format!("no {NOTES_REF} here: if they were pushed, fetch them with git fetch <remote> {NOTES_REF}:{NOTES_REF}\n"));
            }
        }
        emit(out, &t)?;
    }
    Ok(if bad.is_empty() {
        Exit::Success
    } else {
        Exit::StageFailure
    })
}

/// `abc123def456  subject: why`, for people.
pub fn line(j: &Judged) -> String {
    let why = j.problem.as_ref().map(|p| p.describe()).unwrap_or_default();
    format!(
        "  {}  {}: {why}\n",
        &j.commit.commit[..j.commit.commit.len().min(12)],
        j.commit.subject
    )
}

/// The commits of the current branch not on its upstream; without an upstream, those on no
/// remote-tracking branch; in a repository without remotes, all of them.
fn default_range(git: &Git) -> Result<(Vec<String>, String)> {
    if let Some(name) = crate::git::refs::upstream(git)? {
        return Ok((vec![format!("{name}..HEAD")], format!("{name}..HEAD")));
    }
    let remotes = crate::git::config::remotes(git)?;
    if remotes.is_empty() {
        Ok((
            vec!["HEAD".to_owned()],
            "HEAD (no remotes: every commit)".to_owned(),
        ))
    } else {
        Ok((
            vec![
                "HEAD".to_owned(),
                "--not".to_owned(),
                "--remotes".to_owned(),
            ],
            "HEAD, not on any remote-tracking branch".to_owned(),
        ))
    }
}
