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

/// The object id `spec` names, or `None` when it names nothing (or an object that is not here).
fn rev_parse(git: &Git, spec: &str) -> Result<Option<String>> {
    if let Some(mut found) = super::batch::lookup(git, &[spec.to_owned()], false)? {
        return Ok(found.pop().flatten().map(|o| o.id));
    }
    rev_parse_by_git(git, spec)
}

/// `git rev-parse --verify` itself: the object id `spec` names, whether or not it is here.
fn rev_parse_by_git(git: &Git, spec: &str) -> Result<Option<String>> {
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
    if let Some(id) = rev_parse(git, &format!("{commit}^{{tree}}"))? {
        return Ok(TreeId::from_git(&id));
    }
    // Not here: git's own words for why.
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

use super::batch::Object;

/// The objects `names` name, through the kept reader or one `git cat-file --batch`; `None` for a
/// name that is missing.
fn cat_objects(git: &Git, names: &[String]) -> Result<Vec<Option<Object>>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(found) = super::batch::lookup(git, names, true)? {
        return Ok(found);
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
    let names: Vec<String> = wanted.iter().map(|c| format!("{c}^{{tree}}")).collect();
    if let Some(found) = super::batch::lookup(git, &names, false)? {
        for (commit, object) in wanted.iter().zip(found) {
            if let Some(o) = object.filter(|o| o.kind == "tree") {
                trees.insert((*commit).clone(), TreeId::from_git(&o.id));
            }
        }
        return Ok(trees);
    }
    let request: String = names.iter().map(|n| format!("{n}\n")).collect();
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
    // Each from its folder's tree: also a submodule's commit, which is not an object here.
    let mut ids = Vec::with_capacity(paths.len());
    for p in paths {
        match entry_at(git, commit, p)? {
            Some(entry) => ids.push(entry.map(|(_, id)| id)),
            None => break,
        }
    }
    if ids.len() == paths.len() {
        return Ok(ids);
    }
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

/// Whether `<rev>:<path>` names exactly `path` from the root: git reads `./` and `../` as
/// relative to the current folder, and a path must be one line of a request.
fn plain_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains("//")
        && path.split('/').all(|part| part != "." && part != "..")
        && !path.contains(['\n', '\r'])
}

/// The mode and id of `path` in `commit`'s tree, read from its folder's tree object through the
/// kept reader: `Some(None)` when it is not there, `None` when the kept reader cannot serve.
fn entry_at(git: &Git, commit: &str, path: &str) -> Result<Option<Option<(String, Oid)>>> {
    if !plain_path(path) {
        return Ok(None);
    }
    let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
    let Some(mut found) = super::batch::lookup(git, &[format!("{commit}:{folder}")], true)? else {
        return Ok(None);
    };
    let Some(tree) = found.pop().flatten().filter(|o| o.kind == "tree") else {
        return Ok(Some(None));
    };
    Ok(Some(
        tree_entries(&tree.body, tree.id.len() / 2)
            .find(|(_, n, _)| *n == name.as_bytes())
            .map(|(mode, _, id)| (String::from_utf8_lossy(mode).into_owned(), hex(id))),
    ))
}

/// The entries of a tree object: `(mode, name, raw id)`; `raw` is the length of an id in bytes.
/// Ids stay bytes until one is wanted ([`hex`]): a tree of a large folder has thousands.
pub(in crate::git) fn tree_entries(
    body: &[u8],
    raw: usize,
) -> impl Iterator<Item = (&[u8], &[u8], &[u8])> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let space = rest.iter().position(|b| *b == b' ')?;
        let nul = space + rest[space..].iter().position(|b| *b == 0)?;
        let id = rest.get(nul + 1..nul + 1 + raw)?;
        let entry = (&rest[..space], &rest[space + 1..nul], id);
        rest = &rest[nul + 1 + raw..];
        Some(entry)
    })
}

/// The first object `tree` holds beyond `base` (its own tree, the trees and blobs that differ,
/// by id) whose stored bytes no longer hash to its name, as `path (id)`. git does not check a
/// loose object against its name when it reads it: one rewritten in place after the change was
/// judged would ship, and be attested, under the judged name.
pub fn first_rewritten(git: &Git, base: &str, tree: &str) -> Result<Option<String>> {
    let raw = tree.len() / 2;
    let mut pending: Vec<(String, String, Option<String>)> =
        vec![(String::new(), tree.to_owned(), Some(base.to_owned()))];
    while let Some((path, id, old)) = pending.pop() {
        let mut names = vec![id.clone()];
        names.extend(old.clone());
        let mut found = cat_objects(git, &names)?.into_iter();
        let Some(Some(object)) = found.next() else {
            return Ok(Some(format!("{} ({id}): missing", shown(&path))));
        };
        let rehashed = super::tree_write::object_id(raw, object.kind.as_bytes(), &object.body);
        if hex(&rehashed).as_str() != id {
            return Ok(Some(format!("{} ({id})", shown(&path))));
        }
        if object.kind != "tree" {
            continue;
        }
        // The base's side of this folder, only compared with.
        let old_body = match found.next() {
            Some(Some(o)) if o.kind == "tree" => o.body,
            _ => Vec::new(),
        };
        let before: std::collections::HashMap<&[u8], (&[u8], &[u8])> = tree_entries(&old_body, raw)
            .map(|(m, n, i)| (n, (m, i)))
            .collect();
        for (mode, name, entry) in tree_entries(&object.body, raw) {
            if before.get(name) == Some(&(mode, entry)) || mode == b"160000" {
                continue;
            }
            let child = if path.is_empty() {
                String::from_utf8_lossy(name).into_owned()
            } else {
                format!("{path}/{}", String::from_utf8_lossy(name))
            };
            let old = before
                .get(name)
                .filter(|(m, _)| *m == b"40000")
                .map(|(_, i)| hex(i).as_str().to_owned());
            pending.push((child, hex(entry).as_str().to_owned(), old));
        }
    }
    Ok(None)
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "the top folder".to_owned()
    } else {
        path.escape_debug().to_string()
    }
}

/// A raw object id as git writes it.
pub(in crate::git) fn hex(raw: &[u8]) -> Oid {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(raw.len() * 2);
    for b in raw {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    Oid::from_git(&text)
}

/// Where `path` at `commit` points when it is a symlink; `None` when it is anything else or absent.
pub fn symlink_target(git: &Git, commit: &str, path: &str) -> Result<Option<String>> {
    if let Some(entry) = entry_at(git, commit, path)? {
        let Some((mode, id)) = entry else {
            return Ok(None);
        };
        if mode != "120000" {
            return Ok(None);
        }
        return Ok(cat_blobs(git, &[id.to_string()])?
            .pop()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned()));
    }
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
    if let Some(id) = rev_parse(git, name)? {
        return Ok(Some(Oid::from_git(&id)));
    }
    // Not found by the kept reader, which also says so for a ref whose object is missing:
    // git's own answer, as callers have always had it.
    Ok(rev_parse_by_git(git, name)?.map(Oid::from_git))
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

/// An answer of [`committer_identity`] asked ahead, on a thread, for one repository.
type IdentityAhead = (
    Option<std::path::PathBuf>,
    std::thread::JoinHandle<Result<Identity>>,
);
static AHEAD: std::sync::Mutex<Option<IdentityAhead>> = std::sync::Mutex::new(None);

/// Start asking git for [`committer_identity`] now, while other work goes on: its process then
/// costs no waiting.
pub fn committer_identity_ahead(git: &Git) {
    let asked = git.clone();
    let handle = std::thread::spawn(move || ask_identity(&asked));
    if let Ok(mut ahead) = AHEAD.lock() {
        *ahead = Some((git.batch_key(), handle));
    }
}

/// The identity git would use for a commit, or an explanation of why there is none.
pub fn committer_identity(git: &Git) -> Result<Identity> {
    let ahead = AHEAD.lock().ok().and_then(|mut a| a.take());
    if let Some((key, handle)) = ahead
        && key.is_some()
        && key == git.batch_key()
        && let Ok(answer) = handle.join()
    {
        return answer;
    }
    ask_identity(git)
}

fn ask_identity(git: &Git) -> Result<Identity> {
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
    if let Some(mut found) = super::batch::lookup(git, &[format!("{oid}^{{commit}}")], false)? {
        return Ok(found.pop().flatten().is_some_and(|o| o.kind == "commit"));
    }
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

/// Commit the index of the checkout `git` runs in, with `message` (its hooks run). With
/// `maintenance_apart`, git's automatic maintenance is left to the caller
/// ([`super::maintenance`]).
pub fn commit_index(git: &Git, message: &str, maintenance_apart: bool) -> Result<Committed> {
    let mut args = vec!["commit", "--quiet", "--cleanup=whitespace", "-F", "-"];
    if maintenance_apart {
        args.splice(0..0, ["-c", "maintenance.auto=false"]);
    }
    let out = git.output(
        args,
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
    // Literal paths only (the project files `init` and the caches look for): one lookup each.
    if prefixes
        .iter()
        .zip(globs.patterns())
        .all(|(p, g)| plain_path(p) && p.as_str() == g.trim_start_matches("./"))
    {
        let names: Vec<String> = prefixes.iter().map(|p| format!("{tree}:{p}")).collect();
        if let Some(found) = super::batch::lookup(git, &names, false)? {
            let mut files: Vec<(String, Oid)> = prefixes
                .iter()
                .zip(found)
                .filter_map(|(p, o)| {
                    o.filter(|o| o.kind == "blob")
                        .map(|o| (p.clone(), Oid::from_git(&o.id)))
                })
                .filter(|(p, _)| globs.is_match(std::path::Path::new(p)))
                .collect();
            files.sort();
            files.dedup();
            return Ok(files);
        }
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

/// The `.gitattributes` files of `tree` at any depth, as `(path, mode, blob id)`, read level by
/// level through the kept reader; `None` when it cannot serve (the caller asks git).
fn attribute_files(git: &Git, tree: &str) -> Result<Option<Vec<(String, String, Oid)>>> {
    let mut found = Vec::new();
    let mut level: Vec<(String, String)> = vec![(String::new(), tree.to_owned())];
    let mut budget = super::batch::Budget::default();
    while !level.is_empty() {
        if !budget.level() {
            return Ok(None);
        }
        let names: Vec<String> = level.iter().map(|(_, id)| id.clone()).collect();
        let Some(trees) = super::batch::lookup_distinct(git, &names, true)? else {
            return Ok(None);
        };
        let mut next = Vec::new();
        for ((folder, _), object) in level.iter().zip(trees) {
            let Some(object) = object.filter(|o| o.kind == "tree") else {
                return Err(Error::other(format!(
                    "tree {folder:?} of {tree} cannot be read"
                )));
            };
            if !budget.read(tree_entries(&object.body, object.id.len() / 2).count()) {
                return Ok(None);
            }
            for (mode, name, id) in tree_entries(&object.body, object.id.len() / 2) {
                let folder_entry = mode == b"40000";
                if !folder_entry && (name != b".gitattributes" || mode == b"160000") {
                    continue;
                }
                let name = String::from_utf8_lossy(name);
                let path = if folder.is_empty() {
                    name.into_owned()
                } else {
                    format!("{folder}/{name}")
                };
                if folder_entry {
                    next.push((path, hex(id).to_string()));
                } else {
                    found.push((path, String::from_utf8_lossy(mode).into_owned(), hex(id)));
                }
            }
        }
        level = next;
    }
    found.sort();
    Ok(Some(found))
}

/// Whether any `.gitattributes` file of `commit` sets `filter=lfs` (what `git grep -F
/// filter=lfs <commit> -- .gitattributes '*/.gitattributes'` finds); `None` when the kept reader
/// cannot serve.
pub(in crate::git) fn attributes_mention(
    git: &Git,
    commit: &str,
    text: &str,
) -> Result<Option<bool>> {
    let Some(files) = attribute_files(git, &format!("{commit}^{{tree}}"))? else {
        return Ok(None);
    };
    let ids: Vec<String> = files.iter().map(|(_, _, id)| id.to_string()).collect();
    let Some(blobs) = super::batch::lookup(git, &ids, true)? else {
        return Ok(None);
    };
    let needle = text.as_bytes();
    Ok(Some(blobs.into_iter().flatten().any(|b| {
        b.body.windows(needle.len()).any(|w| w == needle)
    })))
}

/// A tree entry, owned: `(name, mode, raw id)`.
type OwnedEntry = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Whether the `.gitattributes` files of two commits (or trees) differ anywhere (path, mode or
/// content), walking only the folders whose trees differ; `None` when the kept reader cannot
/// serve.
pub(in crate::git) fn attributes_differ(git: &Git, from: &str, to: &str) -> Result<Option<bool>> {
    // Pairs of the same folder on both sides; `None` where one side has no such folder.
    let mut level: Vec<(Option<String>, Option<String>)> = vec![(
        Some(format!("{from}^{{tree}}")),
        Some(format!("{to}^{{tree}}")),
    )];
    let mut budget = super::batch::Budget::default();
    while !level.is_empty() {
        if !budget.level() {
            return Ok(None);
        }
        let names: Vec<String> = level
            .iter()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .flatten()
            .collect();
        let Some(trees) = super::batch::lookup_distinct(git, &names, true)? else {
            return Ok(None);
        };
        let mut trees = trees.into_iter();
        let mut next = Vec::new();
        for (a, b) in &level {
            let mut side = |named: &Option<String>| -> Result<Vec<OwnedEntry>> {
                let Some(name) = named else {
                    return Ok(Vec::new());
                };
                let Some(tree) = trees.next().flatten().filter(|o| o.kind == "tree") else {
                    return Err(Error::other(format!("tree {name} cannot be read")));
                };
                Ok(tree_entries(&tree.body, tree.id.len() / 2)
                    .map(|(m, n, i)| (n.to_vec(), m.to_vec(), i.to_vec()))
                    .collect())
            };
            let (a, b) = (side(a)?, side(b)?);
            if !budget.read(a.len() + b.len()) {
                return Ok(None);
            }
            let find = |list: &[OwnedEntry], name: &[u8]| {
                list.iter()
                    .find(|(n, ..)| n == name)
                    .map(|(_, m, i)| (m.clone(), i.clone()))
            };
            let attributes =
                |list: &[OwnedEntry]| find(list, b".gitattributes").filter(|(m, _)| m != b"160000");
            if attributes(&a) != attributes(&b) {
                return Ok(Some(true));
            }
            let folders = |list: &[OwnedEntry]| -> Vec<Vec<u8>> {
                list.iter()
                    .filter(|(_, m, _)| m == b"40000")
                    .map(|(n, ..)| n.clone())
                    .collect()
            };
            let mut names = folders(&a);
            names.extend(folders(&b));
            names.sort();
            names.dedup();
            for name in names {
                let folder = |list: &[OwnedEntry]| {
                    find(list, &name)
                        .filter(|(m, _)| m == b"40000")
                        .map(|(_, i)| hex(&i).to_string())
                };
                let (x, y) = (folder(&a), folder(&b));
                if x != y {
                    next.push((x, y));
                }
            }
        }
        level = next;
    }
    Ok(Some(false))
}
