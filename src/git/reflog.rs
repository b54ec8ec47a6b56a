//! Reading a ref's reflog, to tell who moved a ref during a step: git writes one line per update,
//! `<old> <new> <name> <<email>> <seconds> <tz>\t<message>`, with the committer identity of the
//! process that made it. Agents and gates run with a marked committer name (see
//! `containment.rs`), so an entry carrying the mark was written by a step of the run.
//!
//! Read from the files backend's `logs/` folder: no process per ref. A repository on the reftable
//! backend has no such files; every change there is then unattributed (reported, never undone).

use std::path::Path;

/// One reflog line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub old: String,
    pub new: String,
    /// The committer name of the process that wrote it.
    pub name: String,
    /// Seconds since the epoch.
    pub time: i64,
}

/// Parse one reflog line; `None` for a line that is not one.
pub fn parse_line(line: &str) -> Option<Entry> {
    let head = line.split('\t').next()?;
    let mut parts = head.splitn(3, ' ');
    let old = parts.next()?.to_owned();
    let new = parts.next()?.to_owned();
    let ident = parts.next()?;
    let lt = ident.rfind(" <")?;
    let gt = ident.rfind('>')?;
    if gt < lt {
        return None;
    }
    let name = ident[..lt].to_owned();
    let time = ident[gt + 1..].split_whitespace().next()?.parse().ok()?;
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(&old) && hex(&new)).then_some(Entry {
        old,
        new,
        name,
        time,
    })
}

/// The entries of `refname`'s reflog written at or after `since`, oldest first. Empty when the
/// ref has no reflog.
pub fn since(common_dir: &Path, refname: &str, since: i64) -> Vec<Entry> {
    // Ref names come from `for-each-ref`: they cannot hold `..` or start with `/`.
    if refname.contains("..") || refname.starts_with('/') {
        return Vec::new();
    }
    let Ok(text) = std::fs::read(common_dir.join("logs").join(refname)) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(parse_line)
        .filter(|e| e.time >= since)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reflog_line_gives_its_values_and_who_wrote_it() {
        let line = "0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 Jane Q. Doe (git-pipeline r1) <jane@example.com> 1764650000 +0100\tcommit: x <y>";
        let e = parse_line(line).expect("parsed");
        assert_eq!(e.name, "Jane Q. Doe (git-pipeline r1)");
        assert_eq!(e.time, 1_764_650_000);
        assert_eq!(e.new, "1".repeat(40));
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line("x y Jane <j> 1 +0000\tm"), None);
    }
}
