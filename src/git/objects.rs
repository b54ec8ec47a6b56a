//! Reading objects and moving refs. Every ref update names the value it expects to replace, so a
//! concurrent change is detected instead of overwritten.

use std::ffi::OsStr;

use super::{Git, Oid, Opts, TreeId};
use crate::error::Error;
use crate::error::Result;

/// Resolve a revision to a commit id; `None` when it does not name a commit.
pub fn resolve_commit(git: &Git, rev: &str) -> Result<Option<Oid>> {
    Ok(rev_parse(git, &format!("{rev}^{{commit}}"))?.map(Oid::from_git))
}

/// The object id `spec` names, or `None` when it names nothing.
fn rev_parse(git: &Git, spec: &str) -> Result<Option<String>> {
    git.optional_text(["rev-parse", "--verify", "--quiet", "--end-of-options", spec])
}

/// The full ref a revision names when it is a branch (`HEAD` follows to its branch).
pub fn branch_ref_of(git: &Git, rev: &str) -> Result<Option<String>> {
    if rev == "HEAD" {
        return super::refs::head_branch(git);
    }
    let out = git.output(
        [
            "rev-parse",
            "--verify",
            "--quiet",
            "--symbolic-full-name",
            "--end-of-options",
            rev,
        ],
        Opts::default(),
    )?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok((out.status.success() && name.starts_with("refs/heads/")).then_some(name))
}

/// The blob id of a file in a commit's tree; `None` when it is not there.
pub fn resolve_blob(git: &Git, commit: &str, path: &str) -> Result<Option<Oid>> {
    Ok(rev_parse(git, &format!("{commit}:{path}"))?.map(Oid::from_git))
}

/// The tree of a commit (or of any revision that names one).
pub fn tree_of(git: &Git, commit: &str) -> Result<TreeId> {
    git.text([
        "rev-parse",
        "--verify",
        "--end-of-options",
        &format!("{commit}^{{tree}}"),
    ])
    .map(TreeId::from_git)
}

/// Read a file from a commit's tree; `None` when the path is not there.
pub fn read_blob(git: &Git, commit: &str, path: &str) -> Result<Option<Vec<u8>>> {
    Ok(read_blobs(git, commit, &[path])?.pop().flatten())
}

/// Read several files from a commit's tree with one `git cat-file --batch`.
pub fn read_blobs(git: &Git, commit: &str, paths: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
    let requests: Vec<String> = paths.iter().map(|p| format!("{commit}:{p}")).collect();
    cat_blobs(git, &requests)
}

/// One `git cat-file --batch` for many object names: the blobs' contents, `None` for a name
/// that is missing or not a blob.
pub fn cat_blobs(git: &Git, names: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
    Ok(cat_objects(git, names)?
        .into_iter()
        .map(|o| o.filter(|o| o.kind == "blob").map(|o| o.body))
        .collect())
}

/// An object as `git cat-file --batch` gives it.
struct Object {
    id: String,
    kind: String,
    body: Vec<u8>,
}

/// One `git cat-file --batch` for many object names; `None` for a name that is missing.
fn cat_objects(git: &Git, names: &[String]) -> Result<Vec<Option<Object>>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let request: String = names.iter().map(|n| format!("{n}\n")).collect();
    let out = git.run_opts(
        // --buffer: one write per full buffer, not one flush per object.
        ["cat-file", "--batch", "--buffer"],
        Opts {
            stdin: Some(request.as_bytes()),
            ..Opts::default()
        },
    )?;
    let mut rest = out.as_slice();
    let mut objects = Vec::with_capacity(names.len());
    for _ in names {
        let nl = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| Error::other("git cat-file returned a truncated answer"))?;
        let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
        rest = &rest[nl + 1..];
        // "<oid> <type> <size>", or "<request> missing" / "ambiguous".
        let fields: Vec<&str> = header.rsplitn(3, ' ').collect();
        match fields.as_slice() {
            [size, kind, id] if matches!(*kind, "blob" | "tree" | "commit" | "tag") => {
                let size: usize = size.parse().map_err(|_| {
                    Error::other(format!("unexpected git cat-file header: {header}"))
                })?;
                let body = rest
                    .get(..size)
                    .ok_or_else(|| Error::other("git cat-file returned a truncated object"))?;
                objects.push(Some(Object {
                    id: (*id).to_owned(),
                    kind: (*kind).to_owned(),
                    body: body.to_vec(),
                }));
                rest = rest.get(size + 1..).unwrap_or_default();
            }
            _ => objects.push(None),
        }
    }
    Ok(objects)
}

/// A commit as the repository holds it: its id, its tree and its parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitFacts {
    pub id: Oid,
    pub tree: TreeId,
    pub parents: Vec<Oid>,
}

/// The commit `rev` names (a ref, an id), read in one `git cat-file` from the object itself;
/// `None` when it names no commit.
pub fn commit_facts(git: &Git, rev: &str) -> Result<Option<CommitFacts>> {
    let Some(Some(object)) = cat_objects(git, &[format!("{rev}^{{commit}}")])?.pop() else {
        return Ok(None);
    };
    if object.kind != "commit" {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&object.body);
    let mut tree = None;
    let mut parents = Vec::new();
    // The header ends at the first empty line; only `tree` and `parent` lines matter here.
    for line in text.lines().take_while(|l| !l.is_empty()) {
        if let Some(t) = line.strip_prefix("tree ") {
            tree = Some(TreeId::from_git(t));
        } else if let Some(p) = line.strip_prefix("parent ") {
            parents.push(Oid::from_git(p));
        }
    }
    let tree = tree.ok_or_else(|| Error::other(format!("commit {} has no tree", object.id)))?;
    Ok(Some(CommitFacts {
        id: Oid::from_git(&object.id),
        tree,
        parents,
    }))
}

/// The trees of `commits` (one `git cat-file --batch-check`); commits that are not here are left
/// out.
pub fn trees_of(
    git: &Git,
    commits: &[String],
) -> Result<std::collections::HashMap<String, TreeId>> {
    let mut trees = std::collections::HashMap::new();
    let wanted: Vec<&String> = commits
        .iter()
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    if wanted.is_empty() {
        return Ok(trees);
    }
    let request: String = wanted.iter().map(|c| format!("{c}^{{tree}}\n")).collect();
    let out = git.run_opts(
        ["cat-file", "--batch-check", "--buffer"],
        Opts {
            stdin: Some(request.as_bytes()),
            ..Opts::default()
        },
    )?;
    // One line per request, in order: "<oid> tree <size>" or "<request> missing".
    for (commit, line) in wanted.iter().zip(String::from_utf8_lossy(&out).lines()) {
        if let [tree, "tree", _] = line.split(' ').collect::<Vec<_>>().as_slice() {
            trees.insert((*commit).clone(), TreeId::from_git(*tree));
        }
    }
    Ok(trees)
}

/// The object ids of `paths` at `commit` (one `git ls-tree`): `None` for a path that is not
/// there.
pub fn ids_at(git: &Git, commit: &str, paths: &[&str]) -> Result<Vec<Option<Oid>>> {
    let mut args = vec!["ls-tree", "-z", "--full-tree", commit, "--"];
    args.extend_from_slice(paths);
    let out = git.run(args)?;
    let mut found = std::collections::HashMap::new();
    for entry in super::split_z(&out) {
        // "<mode> <type> <id>\t<path>"
        let text = String::from_utf8_lossy(entry);
        if let Some((meta, path)) = text.split_once('\t')
            && let Some(id) = meta.split(' ').nth(2)
        {
            found.insert(path.to_owned(), Oid::from_git(id));
        }
    }
    Ok(paths.iter().map(|p| found.remove(*p)).collect())
}

/// Where `path` at `commit` points when it is a symlink; `None` when it is anything else or absent.
pub fn symlink_target(git: &Git, commit: &str, path: &str) -> Result<Option<String>> {
    let out = git.run(["ls-tree", "-z", commit, "--", path])?;
    let entry = String::from_utf8_lossy(&out);
    if !entry.starts_with("120000 ") {
        return Ok(None);
    }
    Ok(read_blob(git, commit, path)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Call `f` with every file path of a commit's tree.
pub fn for_each_file(git: &Git, commit: &str, mut f: impl FnMut(&std::path::Path)) -> Result<()> {
    let out = git.run(["ls-tree", "-r", "-z", "--name-only", "--full-tree", commit])?;
    for p in super::split_z(&out) {
        f(&super::path_from_bytes(p));
    }
    Ok(())
}

/// Make a commit object without touching any index or worktree (for archives).
pub fn commit_tree(
    git: &Git,
    tree: &TreeId,
    parents: &[&str],
    message: &str,
    identity: &[(&str, &OsStr)],
) -> Result<Oid> {
    let mut args = vec!["commit-tree".to_owned(), tree.to_string()];
    for p in parents {
        args.push("-p".to_owned());
        args.push((*p).to_owned());
    }
    let out = git.run_opts(
        &args,
        Opts {
            stdin: Some(message.as_bytes()),
            env: identity,
        },
    )?;
    Ok(Oid::from_git(String::from_utf8_lossy(&out).trim()))
}

/// Set `name` to `new`, only if it currently is `old` (`None`: it must not exist yet).
pub fn update_ref(git: &Git, name: &str, new: &str, old: Option<&str>, reason: &str) -> Result<()> {
    update_ref_as(git, name, new, old, reason, &[])
}

/// [`update_ref`] with variables for git (a committer name, so that the reflog entry says who).
pub fn update_ref_as(
    git: &Git,
    name: &str,
    new: &str,
    old: Option<&str>,
    reason: &str,
    env: &[(&str, &OsStr)],
) -> Result<()> {
    let zero = "0".repeat(new.len());
    let old = old.unwrap_or(&zero);
    git.run_opts(
        ["update-ref", "-m", reason, name, new, old],
        Opts { stdin: None, env },
    )?;
    Ok(())
}

/// Whether commit `a` is `b` or one of its ancestors.
pub fn is_ancestor(git: &Git, a: &str, b: &str) -> Result<bool> {
    let out = git.output(["merge-base", "--is-ancestor", a, b], Opts::default())?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(super::failure(
            &["merge-base".into(), "--is-ancestor".into()],
            &out,
        )),
    }
}

/// The object a ref (or any revision) names.
pub fn ref_value(git: &Git, name: &str) -> Result<Option<Oid>> {
    Ok(rev_parse(git, name)?.map(Oid::from_git))
}

/// Attach `content` as the note of `commit` on `notes_ref`, replacing an older note.
pub fn add_note(git: &Git, notes_ref: &str, commit: &str, content: &str) -> Result<()> {
    git.run_opts(
        ["notes", "--ref", notes_ref, "add", "-f", "-F", "-", commit],
        Opts {
            stdin: Some(content.as_bytes()),
            ..Opts::default()
        },
    )?;
    Ok(())
}

/// Who git would commit as.
pub enum Identity {
    /// `Name <email> <date>`, as `git var GIT_COMMITTER_IDENT` prints it.
    Known(String),
    /// Why git has none (its `fatal:` line).
    Missing(String),
}

impl Identity {
    /// The committer's name, when there is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Identity::Known(ident) => ident.rfind(" <").map(|i| &ident[..i]),
            Identity::Missing(_) => None,
        }
    }
}

/// The identity git would use for a commit, or an explanation of why there is none.
pub fn committer_identity(git: &Git) -> Result<Identity> {
    let out = git.output(["var", "GIT_COMMITTER_IDENT"], Opts::default())?;
    if out.status.success() {
        Ok(Identity::Known(
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        ))
    } else {
        Ok(Identity::Missing(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .find(|l| l.starts_with("fatal:"))
                .unwrap_or("no identity configured")
                .to_owned(),
        ))
    }
}

/// Whether `oid` names a commit this repository has.
pub fn commit_exists(git: &Git, oid: &str) -> Result<bool> {
    let out = git.output(
        ["cat-file", "-e", &format!("{oid}^{{commit}}")],
        Opts::default(),
    )?;
    Ok(out.status.success())
}

/// A commit's whole message.
pub fn message_of(git: &Git, commit: &str) -> Result<String> {
    git.text(["log", "-1", "--format=%B", commit])
}

/// What `git commit` did.
pub enum Committed {
    Made,
    /// git refused (a hook failed): what it printed and how it ended.
    Refused(String),
    /// git was stopped by SIGINT or SIGTERM.
    Interrupted,
}

/// Commit the index of the checkout `git` runs in, with `message` (its hooks run).
pub fn commit_index(git: &Git, message: &str) -> Result<Committed> {
    let out = git.output(
        ["commit", "--quiet", "--cleanup=whitespace", "-F", "-"],
        Opts {
            stdin: Some(message.as_bytes()),
            ..Opts::default()
        },
    )?;
    if out.status.success() {
        return Ok(Committed::Made);
    }
    // Ctrl-C reaches git and its hook (one process group): that is no refusal.
    use nix::sys::signal::Signal;
    use std::os::unix::process::ExitStatusExt;
    let by_signal = out.status.signal().and_then(|s| Signal::try_from(s).ok());
    if matches!(by_signal, Some(Signal::SIGINT | Signal::SIGTERM)) {
        return Ok(Committed::Interrupted);
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(Committed::Refused(format!(
        "`git commit` failed ({}): {}",
        crate::process_end::describe_status(&out.status),
        text.trim()
    )))
}

/// The files of `tree` that match any of `globs` (scope globs, anchored at the repository root:
/// `package-lock.json`, `crates/*/Cargo.toml`), as `(path, blob id)`, sorted by path. A blob id is
/// a digest of the content, so two listings are equal exactly when those files are.
pub fn files_matching(
    git: &Git,
    tree: &TreeId,
    globs: &crate::globs::Globs,
) -> Result<Vec<(String, Oid)>> {
    if globs.patterns().is_empty() {
        return Ok(Vec::new());
    }
    // `ls-tree` takes no glob pathspecs: list below each glob's literal folder, then match.
    let mut prefixes: Vec<String> = Vec::new();
    for pattern in globs.patterns() {
        let literal: Vec<&str> = pattern
            .trim_start_matches("./")
            .split('/')
            .take_while(|part| !part.contains(['*', '?', '[', '{', '\\']))
            .collect();
        prefixes.push(literal.join("/"));
    }
    let mut args: Vec<String> = ["ls-tree", "-r", "-z", "--full-tree", tree.as_str()]
        .map(str::to_owned)
        .to_vec();
    if !prefixes.iter().any(String::is_empty) {
        args.push("--".to_owned());
        args.extend(prefixes);
    }
    let out = git.run(&args)?;
    let mut files = Vec::new();
    // "<mode> <type> <id>\t<path>"
    for entry in super::split_z(&out) {
        let text = String::from_utf8_lossy(entry);
        if let Some((meta, path)) = text.split_once('\t')
            && let [_, "blob", id] = meta.split(' ').collect::<Vec<_>>().as_slice()
            && globs.is_match(std::path::Path::new(path))
        {
            files.push((path.to_owned(), Oid::from_git(*id)));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}
