//! Reading `git status --porcelain=v2 -z` records.

use super::split_z;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `1` ordinary, `2` renamed, `u` unmerged, `?` untracked, `!` ignored.
    pub kind: char,
    /// The second letter of XY (worktree against index) is not `.`: changed in the worktree.
    pub worktree_changed: bool,
    pub path: String,
}

/// The entries of `git status --porcelain=v2 -z` output. Paths may hold spaces; a renamed
/// entry's original path (the record after it) is skipped.
pub fn entries(out: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut records = split_z(out);
    while let Some(rec) = records.next() {
        let text = String::from_utf8_lossy(rec);
        let kind = text.chars().next().unwrap_or(' ');
        let field = |n: usize| text.splitn(n + 1, ' ').nth(n).map(str::to_owned);
        let (path, worktree_changed) = match kind {
            '?' | '!' => (text.get(2..).map(str::to_owned), true),
            'u' => (field(10), true),
            '1' | '2' => {
                let changed = text.as_bytes().get(3).copied().unwrap_or(b'.') != b'.';
                let path = field(if kind == '1' { 8 } else { 9 });
                if kind == '2' {
                    records.next();
                }
                (path, changed)
            }
            _ => (None, false),
        };
        if let Some(path) = path {
            entries.push(Entry {
                kind,
                worktree_changed,
                path,
            });
        }
    }
    entries
}

/// Whether `paths` show no change in the checkout (nothing staged, modified or untracked).
pub fn paths_clean<'a>(
    checkout: &std::path::Path,
    paths: impl IntoIterator<Item = &'a String>,
) -> Result<bool> {
    let mut args = vec![
        "--no-optional-locks".to_owned(),
        "status".to_owned(),
        "--porcelain=v2".to_owned(),
        "-z".to_owned(),
        "--".to_owned(),
    ];
    args.extend(paths.into_iter().cloned());
    Ok(super::Git::in_dir(checkout).run(&args)?.is_empty())
}

/// The whole status of a checkout, ignored files included (`--porcelain=v2 -z`), read without
/// taking the index lock.
pub fn listing_with_ignored(checkout: &std::path::Path) -> Result<Vec<u8>> {
    super::Git::in_dir(checkout).run([
        "--no-optional-locks",
        "status",
        "--porcelain=v2",
        "-z",
        "--untracked-files=all",
        "--ignored=traditional",
        "--ignore-submodules=none",
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_with_spaces_in_paths() {
        let out = b"1 .M N... 100644 100644 100644 aaa bbb dir/a file.txt\x002 R. N... 100644 100644 100644 aaa bbb R100 new name\x00old name\x00? un tracked\x00! ignored dir/\x00";
        let e = entries(out);
        let got: Vec<(char, bool, &str)> = e
            .iter()
            .map(|x| (x.kind, x.worktree_changed, x.path.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ('1', true, "dir/a file.txt"),
                ('2', false, "new name"),
                ('?', true, "un tracked"),
                ('!', true, "ignored dir/"),
            ]
        );
    }
}
