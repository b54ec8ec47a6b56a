//! One long-lived `git cat-file --batch-command` per repository for the object lookups a run
//! makes (its base, its config and trust files, commit facts, tree entries): each lookup is a line
//! on a pipe instead of a new git process, which at ~2 ms a process is most of a small run's fixed
//! cost (docs/benchmarks.md).
//!
//! The same git answers: revision syntax, `GIT_NO_REPLACE_OBJECTS`, the repository's config and
//! alternates are git's own. Refs and objects are looked up afresh for every request (git reads a
//! loose ref's file each time, revalidates `packed-refs` by its stat, and rescans packs when an
//! object is not found), so a long-lived reader sees what a new process would.
//!
//! Only `--git-dir` handles use it: a process started with `-C <worktree>` would work inside the
//! run's worktree, where the leftover-process check would take it for the step's.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::Mutex;

use super::Git;
use crate::error::{Error, Result};

/// An object as git gives it: its id, its type and (for `contents`) its bytes.
#[derive(Clone)]
pub(in crate::git) struct Object {
    pub id: String,
    pub kind: String,
    pub body: Vec<u8>,
}

/// The readers alive, most recently used last. A handful: a run uses one repository, a test
/// process many (each is an idle process until it is dropped).
static READERS: Mutex<Vec<(PathBuf, Reader)>> = Mutex::new(Vec::new());
const KEEP: usize = 4;

/// Requests per write: their lines stay far below a pipe's buffer, so writing them can never
/// wait on git writing answers we have not read yet.
const CHUNK: usize = 64;

struct Reader {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Closing stdin ends git; wait so that no zombie is left behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `contents` (`true`) or `info` of each name; `None` for a name that names no object. `None`
/// overall when no reader can answer (this handle cannot use one, or git stopped answering:
/// some revisions, such as `main@{99}`, make `cat-file` exit): the caller then asks a git
/// process of its own, which says what is wrong in git's words.
pub(in crate::git) fn lookup(
    git: &Git,
    names: &[String],
    contents: bool,
) -> Result<Option<Vec<Option<Object>>>> {
    let Some(key) = git.batch_key() else {
        return Ok(None);
    };
    let mut readers = READERS.lock().unwrap_or_else(|p| p.into_inner());
    let mut answers = Vec::with_capacity(names.len());
    for chunk in names.chunks(CHUNK) {
        let reader = reader_for(&mut readers, git, &key)?;
        match ask(reader, chunk, contents) {
            Ok(mut a) => answers.append(&mut a),
            Err(e) => {
                // Whatever it was (a dead reader, an answer out of step), this one is not
                // asked again.
                tracing::debug!("git cat-file --batch-command stopped answering: {e}");
                readers.retain(|(k, _)| *k != key);
                return Ok(None);
            }
        }
    }
    Ok(Some(answers))
}

/// [`lookup`], asking once per distinct name: a tree held in many folders (or a planted tree
/// that names itself) is read once.
pub(in crate::git) fn lookup_distinct(
    git: &Git,
    names: &[String],
    contents: bool,
) -> Result<Option<Vec<Option<Object>>>> {
    let mut unique = names.to_vec();
    unique.sort();
    unique.dedup();
    if unique.len() == names.len() {
        return lookup(git, names, contents);
    }
    let Some(found) = lookup(git, &unique, contents)? else {
        return Ok(None);
    };
    let by_name: std::collections::HashMap<&str, Option<Object>> =
        unique.iter().map(String::as_str).zip(found).collect();
    Ok(Some(
        names
            .iter()
            .map(|n| by_name.get(n.as_str()).cloned().flatten())
            .collect(),
    ))
}

/// git's `core.maxTreeDepth` (2048): deeper trees make git stop.
const MAX_DEPTH: usize = 2048;
/// Entries read in one walk before git is asked instead: five times two whole trees of the
/// largest repositories measured (100,000 files each), and a bound on what a planted tree that
/// names itself twice makes the walk hold.
const MAX_ENTRIES: usize = 1_000_000;

/// What a walk over tree objects may read. Trees an agent planted in the object store (a
/// folder whose entries name the folder itself, under an id that is not its hash: the kept
/// reader does not check hashes, as git's reads do not) can be deeper or wider than anything git
/// writes; past git's own depth limit or past [`MAX_ENTRIES`], the walk stops and git is asked,
/// and says what is wrong.
#[derive(Default)]
pub(in crate::git) struct Budget {
    depth: usize,
    entries: usize,
}

impl Budget {
    /// One level deeper: `false` past git's depth limit.
    pub fn level(&mut self) -> bool {
        self.depth += 1;
        self.depth <= MAX_DEPTH
    }

    /// `n` more entries read: `false` past the limit.
    pub fn read(&mut self, n: usize) -> bool {
        self.entries = self.entries.saturating_add(n);
        self.entries <= MAX_ENTRIES
    }
}

/// End every kept reader.
pub(in crate::git) fn forget_all() {
    READERS.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

#[cfg(test)]
fn reader_pid(key: &std::path::Path) -> Option<u32> {
    let readers = READERS.lock().unwrap_or_else(|p| p.into_inner());
    readers
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, r)| r.child.id())
}

fn reader_for<'a>(
    readers: &'a mut Vec<(PathBuf, Reader)>,
    git: &Git,
    key: &PathBuf,
) -> Result<&'a mut Reader> {
    if let Some(i) = readers.iter().position(|(k, _)| k == key) {
        let entry = readers.remove(i);
        readers.push(entry);
    } else {
        if readers.len() >= KEEP {
            readers.remove(0);
        }
        readers.push((key.clone(), start(git)?));
    }
    let last = readers.len() - 1;
    Ok(&mut readers[last].1)
}

/// A reader started before the repository is known: [`start_in`], then [`adopt`].
pub(in crate::git) struct Ahead(Reader);

/// Start a reader in `cwd` (git finds the repository there, as `git rev-parse` beside it does),
/// while the caller finds the repository: the reader's start then overlaps that process's.
/// `None` when the environment points git elsewhere (`GIT_DIR` and the like: the repository's
/// own handle drops them, so the two could disagree).
pub(in crate::git) fn start_in(cwd: &std::path::Path) -> Option<Ahead> {
    if super::LOCAL_ENV_VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        return None;
    }
    let mut cmd = super::program();
    cmd.arg("-C")
        .arg(cwd)
        .args(["-c", "core.fsmonitor=false"])
        .args(["cat-file", "--batch-command", "--buffer"])
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    tracing::debug!(dir = %cwd.display(), "git cat-file --batch-command (kept, started ahead)");
    let mut child = cmd.spawn().ok()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return None;
    };
    Some(Ahead(Reader {
        child,
        stdin,
        stdout: BufReader::new(stdout),
    }))
}

/// Keep `ahead` as the reader of the repository whose git dir is `git_dir`, when that is the
/// main worktree's (or a bare repository's): the reader's folder is then the user's own, never a
/// linked worktree that a run could take as its slot. Otherwise it ends here.
pub(in crate::git) fn adopt(ahead: Ahead, git_dir: &std::path::Path, common_dir: &std::path::Path) {
    if git_dir != common_dir {
        return;
    }
    let mut readers = READERS.lock().unwrap_or_else(|p| p.into_inner());
    if readers.iter().any(|(k, _)| k == git_dir) {
        return;
    }
    if readers.len() >= KEEP {
        readers.remove(0);
    }
    readers.push((git_dir.to_owned(), ahead.0));
}

fn start(git: &Git) -> Result<Reader> {
    let mut cmd = git.command();
    cmd.args(["cat-file", "--batch-command", "--buffer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    tracing::debug!(dir = %git.dir().display(), "git cat-file --batch-command (kept)");
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("cannot run git cat-file --batch-command", e))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Error::other("git cat-file: its pipes were not captured"));
    };
    Ok(Reader {
        child,
        stdin,
        stdout: BufReader::new(stdout),
    })
}

fn ask(
    reader: &mut Reader,
    names: &[String],
    contents: bool,
) -> std::io::Result<Vec<Option<Object>>> {
    let verb = if contents { "contents" } else { "info" };
    let mut request = String::new();
    let mut sent = Vec::with_capacity(names.len());
    for n in names {
        // A line is one request: a name with a line break (or none) is answered here.
        let ok = !n.is_empty() && !n.contains(['\n', '\r']);
        if ok {
            request.push_str(verb);
            request.push(' ');
            request.push_str(n);
            request.push('\n');
        }
        sent.push(ok);
    }
    request.push_str("flush\n");
    // Nothing may be waiting before a request: an answer nobody asked for is not ours.
    if !reader.stdout.buffer().is_empty() {
        return Err(std::io::Error::other(
            "an answer arrived before its request",
        ));
    }
    reader.stdin.write_all(request.as_bytes())?;
    reader.stdin.flush()?;
    let mut out = Vec::with_capacity(names.len());
    let mut header = Vec::new();
    for (name, ok) in names.iter().zip(sent) {
        if !ok {
            out.push(None);
            continue;
        }
        header.clear();
        if reader.stdout.read_until(b'\n', &mut header)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = String::from_utf8_lossy(&header);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        // "<name> missing" / "<name> ambiguous", or "<oid> <type> <size>": read from the left,
        // so that a name ending in " tree" is never taken for an answer.
        if text
            .strip_prefix(name.as_str())
            .is_some_and(|rest| matches!(rest, " missing" | " ambiguous"))
        {
            out.push(None);
            continue;
        }
        let mut fields = text.splitn(3, ' ');
        let (Some(id), Some(kind), Some(size)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(std::io::Error::other(format!("unexpected answer: {text}")));
        };
        let id_ok = matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit());
        let size: Option<usize> = size.parse().ok();
        let (true, true, Some(size)) = (
            id_ok,
            matches!(kind, "blob" | "tree" | "commit" | "tag"),
            size,
        ) else {
            return Err(std::io::Error::other(format!("unexpected answer: {text}")));
        };
        let mut body = Vec::new();
        if contents {
            body.resize(size, 0);
            reader.stdout.read_exact(&mut body)?;
            let mut nl = [0u8; 1];
            reader.stdout.read_exact(&mut nl)?;
            if nl != *b"\n" {
                return Err(std::io::Error::other("an object's contents ran on"));
            }
        }
        out.push(Some(Object {
            id: id.to_owned(),
            kind: kind.to_owned(),
            body,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::git::testing::git;
    use crate::git::{Git, objects};

    fn commit_of(repo: &Git, rev: &str) -> Option<String> {
        objects::resolve_commit(repo, rev)
            .expect("read")
            .map(|o| o.to_string())
    }

    fn text(dir: &std::path::Path, args: &[&str]) -> String {
        String::from_utf8_lossy(&git(dir, args).stdout)
            .trim()
            .to_owned()
    }

    /// A reader started in the user's folder while the repository is found is kept for the
    /// main worktree's repository and answers as its own reader would; in a linked worktree (a
    /// folder a run could take as its slot) it is not kept.
    #[test]
    fn a_reader_started_ahead_is_kept_only_for_the_main_worktree() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = crate::git::testing::repo_with_a_commit(tmp.path(), "main");
        let repo = crate::git::Repo::discover_reading(&d).expect("found");
        assert!(
            super::reader_pid(&repo.git_dir).is_some(),
            "the reader started ahead is kept"
        );
        assert_eq!(
            commit_of(&repo.git(), "HEAD"),
            Some(text(&d, &["rev-parse", "HEAD"]))
        );
        let linked = tmp.path().join("linked");
        crate::git::testing::add_detached_worktree(&d, &linked);
        let other = crate::git::Repo::discover_reading(&linked).expect("found");
        assert_ne!(other.git_dir, other.common_dir);
        assert_eq!(
            super::reader_pid(&other.git_dir),
            None,
            "not kept for a linked worktree"
        );
    }

    /// What the kept reader answers is what a new git process answers: for names that exist and
    /// names that do not, for objects written after it started, and after it was killed.
    #[test]
    fn the_kept_reader_answers_as_git_does_and_sees_what_is_written_later() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(d.join("a/b")).expect("mkdir");
        std::fs::write(d.join("a/b/f.txt"), "one\n").expect("write");
        std::fs::write(d.join(".gitattributes"), "*.bin binary\n").expect("write");
        std::os::unix::fs::symlink("a/b/f.txt", d.join("link")).expect("symlink");
        git(d, &["add", "-A"]);
        git(d, &["commit", "-q", "-m", "one"]);
        let repo = Git::at_git_dir(d.join(".git"));
        let head = text(d, &["rev-parse", "HEAD"]);
        assert_eq!(commit_of(&repo, "main"), Some(head.clone()));
        assert_eq!(objects::resolve_commit(&repo, "nope").expect("read"), None);
        assert_eq!(
            objects::tree_of(&repo, "HEAD").expect("read").to_string(),
            text(d, &["rev-parse", "HEAD^{tree}"])
        );
        let ids = objects::ids_at(&repo, "HEAD", &["a/b/f.txt", "missing", "a"]).expect("read");
        assert_eq!(
            ids.iter()
                .map(|i| i.as_ref().map(|o| o.to_string()))
                .collect::<Vec<_>>(),
            vec![
                Some(text(d, &["rev-parse", "HEAD:a/b/f.txt"])),
                None,
                Some(text(d, &["rev-parse", "HEAD:a"])),
            ]
        );
        assert_eq!(
            objects::symlink_target(&repo, "HEAD", "link").expect("read"),
            Some("a/b/f.txt".to_owned())
        );
        assert_eq!(
            objects::symlink_target(&repo, "HEAD", "a/b/f.txt").expect("read"),
            None
        );
        assert!(objects::commit_exists(&repo, &head).expect("read"));

        // A commit made after the reader started, by another process.
        std::fs::write(d.join("a/b/f.txt"), "two\n").expect("write");
        std::fs::write(d.join(".gitattributes"), "*.bin filter=lfs\n").expect("write");
        git(d, &["commit", "-q", "-am", "two"]);
        let second = text(d, &["rev-parse", "HEAD"]);
        assert_eq!(commit_of(&repo, "HEAD"), Some(second.clone()));
        assert_eq!(
            objects::read_blob(&repo, "HEAD", "a/b/f.txt").expect("read"),
            Some(b"two\n".to_vec())
        );
        assert_eq!(
            objects::attributes_mention(&repo, &head, "filter=lfs").expect("read"),
            Some(false)
        );
        assert_eq!(
            objects::attributes_mention(&repo, &second, "filter=lfs").expect("read"),
            Some(true)
        );
        assert_eq!(
            objects::attributes_differ(&repo, &head, &second).expect("read"),
            Some(true)
        );
        assert_eq!(
            objects::attributes_differ(&repo, &head, &format!("{head}^{{tree}}")).expect("read"),
            Some(false)
        );

        // The reader killed (by an agent, say): a new one answers.
        let pid = super::reader_pid(&d.join(".git")).expect("a reader is kept");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
        assert_eq!(commit_of(&repo, "HEAD~1"), Some(head));
        assert_ne!(super::reader_pid(&d.join(".git")), Some(pid));
    }

    /// A name that would be two requests on the pipe is answered "not there", never sent.
    #[test]
    fn a_name_with_a_line_break_is_not_a_second_request() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        git(d, &["commit", "-q", "--allow-empty", "-m", "one"]);
        let repo = Git::at_git_dir(d.join(".git"));
        let found = super::lookup(
            &repo,
            &["nope\ninfo HEAD".to_owned(), "HEAD".to_owned()],
            false,
        )
        .expect("read")
        .expect("a --git-dir handle is served");
        assert!(found[0].is_none());
        assert_eq!(found[1].as_ref().map(|o| o.kind.as_str()), Some("commit"));
    }
}
