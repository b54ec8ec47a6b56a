//! Reading and writing git config: the hooks' `notes.rewriteRef`, remotes, and where config
//! files are (what containment fingerprints).

use std::path::{Path, PathBuf};

use super::{Git, Opts};
use crate::error::Result;

/// Every value of `key` (none when unset).
pub fn get_all(git: &Git, key: &str) -> Result<Vec<String>> {
    let out = git.output(["config", "--get-all", key], Opts::default())?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// The value of `key`, `None` when unset.
pub fn get(git: &Git, key: &str) -> Result<Option<String>> {
    git.optional_text(["config", "--get", key])
}

/// A path setting as git reads it (`~/` expanded), when set.
pub fn get_path(git: &Git, key: &str) -> Result<Option<String>> {
    git.optional_text(["config", "--get", "--type=path", key])
}

/// A boolean setting as git reads it (`yes`, `on`, `1`...), when set. A value git would not take
/// as a boolean is an error, never a silent default.
pub fn get_bool(git: &Git, key: &str) -> Result<Option<bool>> {
    let Some(value) = get(git, key)? else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(Some(true)),
        "false" | "no" | "off" | "0" | "" => Ok(Some(false)),
        _ => Err(crate::error::Error::usage_hint(
            format!("git config {key} = {value:?} is not a boolean"),
            format!("set it with: git config {key} true (or false)"),
        )),
    }
}

/// `(key, value)` for every key matching the regular expression.
pub fn get_regexp(git: &Git, pattern: &str) -> Result<Vec<(String, String)>> {
    let out = git.output(["config", "--get-regexp", pattern], Opts::default())?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Add a value to a multi-valued key in the repository's config.
pub fn add(git: &Git, key: &str, value: &str) -> Result<()> {
    git.run(["config", "--add", key, value])?;
    Ok(())
}

/// Remove every value of `key` equal to `value`.
pub fn unset_value(git: &Git, key: &str, value: &str) -> Result<()> {
    git.run(["config", "--unset-all", "--fixed-value", key, value])?;
    Ok(())
}

/// What one `git config --list` says for a directory: the files it read and the keys set.
#[derive(Debug, Clone)]
pub struct Listing {
    pub files: Vec<PathBuf>,
    pub keys: Vec<String>,
}

impl Listing {
    /// Whether a filter driver (`filter.<name>.clean`, `.smudge` or `.process`) is configured,
    /// as `git config --get-regexp '^filter\..*\.(clean|smudge|process)$'` would find.
    /// Whether the listing of a worktree taken before a checkout of it still is git's after
    /// it: no setting depends on the branch checked out (`includeIf.onbranch:`), and no file
    /// read lies inside the worktree (the checkout may rewrite it).
    pub fn holds_after_checkout(&self, worktree: &Path) -> bool {
        !self
            .keys
            .iter()
            .any(|k| k.starts_with("includeif.onbranch:"))
            && !self.files.iter().any(|f| f.starts_with(worktree))
    }

    pub fn has_filter_driver(&self) -> bool {
        self.keys.iter().any(|k| {
            k.strip_prefix("filter.")
                .and_then(|rest| rest.rsplit_once('.'))
                .is_some_and(|(_, what)| matches!(what, "clean" | "smudge" | "process"))
        })
    }
}

/// The config files git read for `git`'s directory, resolved against `base` (git names the
/// repository's own files relative to it), and the keys they set.
pub fn files_read(git: &Git, base: &Path) -> Result<Listing> {
    let out = git.output(
        ["config", "--list", "--show-origin", "--name-only", "-z"],
        Opts::default(),
    )?;
    // "<origin>\0<key>\0" per setting.
    let fields: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    let mut listing = Listing {
        files: Vec::new(),
        keys: Vec::new(),
    };
    for pair in fields.chunks(2) {
        if let [origin, key] = pair {
            if let Some(f) = origin.strip_prefix(b"file:") {
                listing.files.push(base.join(super::path_from_bytes(f)));
            }
            listing
                .keys
                .push(String::from_utf8_lossy(key).to_ascii_lowercase());
        }
    }
    Ok(listing)
}

/// The names of the repository's remotes.
pub fn remotes(git: &Git) -> Result<Vec<String>> {
    Ok(git.text(["remote"])?.lines().map(str::to_owned).collect())
}

/// Where git's own programs are (`<prefix>/libexec/git-core`). git's answer is kept in the
/// user's cache folder for the `git` binary PATH finds (by its path, size, mtime and inode), so
/// that a run does not start a process to ask it again.
pub fn exec_path(git: &Git) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("GIT_EXEC_PATH") {
        return Ok(PathBuf::from(p));
    }
    let believed = |binary: &Path, path: &str| {
        exec_path_of_binary(binary)
            .iter()
            .any(|p| p == Path::new(path))
            && Path::new(path).is_dir()
    };
    cached("git-exec-path", believed, || git.text(["--exec-path"])).map(PathBuf::from)
}

/// An answer about the `git` binary PATH finds, kept in the user's cache folder in `name`
/// under that binary's key: the kept answer when the key is the binary's and `believed` accepts
/// it for that binary, else `ask`'s, kept for the next run (written aside, then renamed: a concurrent run reads
/// the old answer or the new, whole).
fn cached<E>(
    name: &str,
    believed: impl Fn(&Path, &str) -> bool,
    ask: impl FnOnce() -> std::result::Result<String, E>,
) -> std::result::Result<String, E> {
    cached_in(exec_path_cache(), name, believed, ask)
}

/// [`cached`] with the cache file of [`exec_path`], the binary's key and the binary given.
fn cached_in<E>(
    cache: Option<(PathBuf, String, PathBuf)>,
    name: &str,
    believed: impl Fn(&Path, &str) -> bool,
    ask: impl FnOnce() -> std::result::Result<String, E>,
) -> std::result::Result<String, E> {
    let cache = cache.map(|(file, key, binary)| (file.with_file_name(name), key, binary));
    if let Some((file, key, binary)) = &cache
        && let Ok(text) = std::fs::read_to_string(file)
        && let Some((k, answer)) = text.split_once('\n')
        && k == key
        && believed(binary, answer.trim_end())
    {
        return Ok(answer.trim_end().to_owned());
    }
    let answer = ask()?;
    if let Some((file, key, _)) = cache
        && let Some(dir) = file.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let aside = file.with_extension(format!("{}", std::process::id()));
        if std::fs::write(&aside, format!("{key}\n{answer}\n")).is_ok() {
            let _ = std::fs::rename(&aside, &file);
        }
    }
    Ok(answer)
}

/// Where git's programs are for a binary at `<prefix>/bin/git`: the cache is believed only when
/// it names one of these, so a cache file written by someone else can point nowhere else.
fn exec_path_of_binary(binary: &Path) -> Vec<PathBuf> {
    let Some(prefix) = binary.parent().and_then(Path::parent) else {
        return Vec::new();
    };
    vec![prefix.join("libexec/git-core"), prefix.join("lib/git-core")]
}

/// The cache file of [`exec_path`], the key of the `git` binary PATH finds now, and that binary
/// ([`cached`] keeps its other answers beside that file).
fn exec_path_cache() -> Option<(PathBuf, String, PathBuf)> {
    use std::os::unix::fs::MetadataExt;
    let git = std::env::split_paths(&std::env::var_os("PATH")?)
        .filter(|d| d.is_absolute())
        .map(|d| d.join("git"))
        .find(|p| p.is_file())?;
    let real = std::fs::canonicalize(&git).ok()?;
    let m = std::fs::metadata(&real).ok()?;
    let key = format!(
        "{} {} {} {}",
        real.display(),
        m.len(),
        m.mtime_nsec() + m.mtime() * 1_000_000_000,
        m.ino()
    );
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let base = match std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from) {
        Some(d) if d.is_absolute() => d,
        _ => home?.join(".cache"),
    };
    Some((base.join("git-pipeline").join("git-exec-path"), key, real))
}

/// git's version as (major, minor), kept in the user's cache beside [`exec_path`]'s answer and
/// under the same key, so that a run does not start a process to ask it; `None` when unknown.
/// What it decides is only how git's automatic maintenance is started after a ship commit,
/// never what is checked.
pub fn version_cached() -> Option<(u32, u32)> {
    let parse = |v: &str| -> Option<(u32, u32)> {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    };
    let answer = cached(
        "git-version",
        |_, v| parse(v).is_some(),
        || {
            version()
                .map(|(major, minor, _)| format!("{major}.{minor}"))
                .ok_or(())
        },
    );
    parse(&answer.ok()?)
}

/// `git --version` as (major, minor, text), `None` when git cannot be run.
pub fn version() -> Option<(u32, u32, String)> {
    let out = super::program().arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let v = text.split_whitespace().nth(2)?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor, v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::git;

    /// A listing taken before a checkout is kept only when git's listing after it cannot differ:
    /// not with a setting that depends on the branch, nor with a config file inside the worktree.
    #[test]
    fn a_listing_from_before_a_checkout_holds_only_where_the_checkout_cannot_change_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = crate::git::testing::repo_with_a_commit(tmp.path(), "repo");
        let wt = tmp.path().join("slot");
        crate::git::testing::add_detached_worktree(&d, &wt);
        let list = || files_read(&Git::in_dir(&wt), &wt).expect("listing");
        assert!(list().holds_after_checkout(&wt));
        std::fs::write(tmp.path().join("extra"), "[user]\n\tname = other\n").expect("write");
        let extra = tmp.path().join("extra");
        let extra = extra.to_str().expect("utf-8");
        git(
            &d,
            &["config", "includeIf.onbranch:pipeline/**.path", extra],
        );
        let onbranch = list();
        assert!(
            onbranch
                .keys
                .iter()
                .any(|k| k.starts_with("includeif.onbranch:")),
            "{:?}",
            onbranch.keys
        );
        assert!(!onbranch.holds_after_checkout(&wt));
        git(
            &d,
            &["config", "--unset", "includeIf.onbranch:pipeline/**.path"],
        );
        assert!(list().holds_after_checkout(&wt));
        let team = wt.join("team.gitconfig");
        std::fs::write(&team, "[core]\n\tpager = cat\n").expect("write");
        git(
            &d,
            &["config", "include.path", team.to_str().expect("utf-8")],
        );
        let inside = list();
        assert!(
            inside.files.iter().any(|f| f.ends_with("team.gitconfig")),
            "{:?}",
            inside.files
        );
        assert!(!inside.holds_after_checkout(&wt));
    }

    /// A kept answer is used only under the binary's own key and when it is believed for that
    /// binary; otherwise git is asked again and the answer is kept in its place.
    #[test]
    fn a_kept_answer_is_used_only_when_its_key_matches_and_it_is_believed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = || {
            Some((
                tmp.path().join("git-exec-path"),
                "key-1".to_owned(),
                PathBuf::from("/usr/bin/git"),
            ))
        };
        let believed = |binary: &Path, answer: &str| {
            binary == Path::new("/usr/bin/git") && answer.starts_with("good")
        };
        let asked = std::cell::Cell::new(0);
        let ask = |answer: &'static str| {
            asked.set(asked.get() + 1);
            Ok::<_, ()>(answer.to_owned())
        };
        let kept = tmp.path().join("answer");
        assert_eq!(
            cached_in(cache(), "answer", believed, || ask("good 1")),
            Ok("good 1".into())
        );
        assert_eq!(
            cached_in(cache(), "answer", believed, || ask("good 2")),
            Ok("good 1".into())
        );
        assert_eq!(asked.get(), 1, "the kept answer was used");
        std::fs::write(&kept, "key-1\nforged\n").expect("write");
        assert_eq!(
            cached_in(cache(), "answer", believed, || ask("good 3")),
            Ok("good 3".into())
        );
        std::fs::write(&kept, "key-0\ngood old\n").expect("write");
        assert_eq!(
            cached_in(cache(), "answer", believed, || ask("good 4")),
            Ok("good 4".into())
        );
        assert_eq!(
            std::fs::read_to_string(&kept).expect("kept"),
            "key-1\ngood 4\n"
        );
        assert_eq!(
            cached_in(None, "answer", believed, || ask("good 5")),
            Ok("good 5".into())
        );
        assert_eq!(asked.get(), 4);
    }
}
