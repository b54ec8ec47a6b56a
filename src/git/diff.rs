//! Which lines a change added: `git diff -U0` between two trees, read for its hunk headers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Git;
use crate::error::Result;

/// For each file `to` has that differs from `from`, the lines (1-based, in `to`) it added.
pub fn added_lines(git: &Git, from: &str, to: &str) -> Result<BTreeMap<PathBuf, Vec<u32>>> {
    let out = git.run([
        "diff",
        "-U0",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--no-renames",
        from,
        to,
    ])?;
    Ok(parse(&String::from_utf8_lossy(&out)))
}

fn parse(patch: &str) -> BTreeMap<PathBuf, Vec<u32>> {
    let mut out: BTreeMap<PathBuf, Vec<u32>> = BTreeMap::new();
    let mut current: Option<PathBuf> = None;
    for line in patch.lines() {
        if let Some(path) = line.strip_prefix("+++ ") {
            current = match path {
                "/dev/null" => None,
                p => Some(PathBuf::from(unquote(p).trim_start_matches("b/"))),
            };
        } else if let (Some(hunk), Some(path)) = (line.strip_prefix("@@ "), &current) {
            // "@@ -a[,b] +c[,d] @@"
            let Some(plus) = hunk.split(' ').find(|f| f.starts_with('+')) else {
                continue;
            };
            let mut nums = plus[1..].splitn(2, ',');
            let start: u32 = nums.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let count: u32 = nums.next().map_or(Some(1), |n| n.parse().ok()).unwrap_or(0);
            out.entry(path.clone())
                .or_default()
                .extend(start..start + count);
        }
    }
    out
}

/// git quotes a path with unusual bytes as a C string: the common escapes back.
fn unquote(p: &str) -> String {
    let Some(inner) = p.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return p.to_owned();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunk_headers_give_the_added_lines() {
        let patch = "diff --git a/x.rs b/x.rs\n--- a/x.rs\n+++ b/x.rs\n@@ -3,0 +4,2 @@\n+a\n+b\n@@ -10 +12 @@\n-c\n+d\ndiff --git a/gone b/gone\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\ndiff --git a/\"sp ace\" b/\"sp ace\"\n--- /dev/null\n+++ \"b/sp ace\"\n@@ -0,0 +1 @@\n+y\n";
        let got = parse(patch);
        assert_eq!(got[&PathBuf::from("x.rs")], vec![4, 5, 12]);
        assert_eq!(got[&PathBuf::from("sp ace")], vec![1]);
        assert!(!got.contains_key(&PathBuf::from("gone")));
    }
}
