//! A git config file's text read the way git's own parser reads it (`config.c`), for the few
//! files that must be judged without running git on them: a slot's admin folder and its
//! submodules' git dirs are writable by a step, and git run there would run what a step
//! planted. A line-by-line reading misses what git accepts, such as a key on its section's line
//! (`[core] fsmonitor = cmd`) or several headers in a row (`[user][core] fsmonitor = cmd`).

/// One setting: `section[.subsection].key`, with section and key lowercased as git does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub section: String,
    /// Case kept, as git keeps it (`[remote "Origin"]`).
    pub subsection: Option<Vec<u8>>,
    pub key: String,
    /// `None` for a key given without `=` (a boolean true).
    pub value: Option<Vec<u8>>,
}

impl Entry {
    /// `section.key` when there is no subsection, else `section.<sub>.key`.
    pub fn name(&self) -> String {
        match &self.subsection {
            None if self.section.is_empty() => self.key.clone(),
            None => format!("{}.{}", self.section, self.key),
            Some(s) => format!(
                "{}.{}.{}",
                self.section,
                String::from_utf8_lossy(s),
                self.key
            ),
        }
    }

    pub fn is(&self, section: &str, key: &str) -> bool {
        self.subsection.is_none() && self.section == section && self.key == key
    }
}

/// Git would refuse this text (`fatal: bad config line N`): git runs nothing from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad config line {0}")]
pub struct Malformed(pub usize);

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

/// Git reads a missing final newline as one, and `\r\n` as `\n`.
const EOF: u8 = b'\n';

impl Reader<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.text.get(self.at)?;
        self.at += 1;
        if c == b'\r' && self.text.get(self.at) == Some(&b'\n') {
            self.at += 1;
            self.line += 1;
            return Some(b'\n');
        }
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// The line git names: the one a newline just ended counts as the bad one.
    fn bad(&self) -> Malformed {
        let ended = self.at > 0 && self.text.get(self.at - 1) == Some(&b'\n');
        Malformed(if ended { self.line } else { self.line + 1 })
    }
}

/// git's own `isspace` (`ctype.c`): not vertical tab or form feed.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// Every setting of a config file's text, in order.
pub fn entries(text: &[u8]) -> Result<Vec<Entry>, Malformed> {
    // git keeps names and values as C strings: a NUL cuts one short where this reader would
    // not (`[core "fsmonitor\0"] x = cmd` is `core.fsmonitor` to git). No config git writes
    // holds one.
    if let Some(at) = text.iter().position(|b| *b == 0) {
        return Err(Malformed(
            text[..at].iter().filter(|b| **b == b'\n').count() + 1,
        ));
    }
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let mut r = Reader {
        text,
        at: 0,
        line: 0,
    };
    let mut out = Vec::new();
    let mut section: Option<(String, Option<Vec<u8>>)> = None;
    let mut comment = false;
    while let Some(c) = r.next() {
        if c == b'\n' {
            comment = false;
            continue;
        }
        if comment || is_space(c) {
            continue;
        }
        if c == b'#' || c == b';' {
            comment = true;
            continue;
        }
        if c == b'[' {
            section = Some(header(&mut r)?);
            continue;
        }
        if !c.is_ascii_alphabetic() {
            return Err(r.bad());
        }
        // Before any header git reads a bare `key`, which names no setting git acts on.
        let (name, sub) = section.clone().unwrap_or_default();
        let (key, value) = setting(&mut r, c)?;
        out.push(Entry {
            section: name,
            subsection: sub,
            key,
            value,
        });
    }
    Ok(out)
}

/// `[section]`, `[section "sub"]` or the old `[section.sub]`, after its `[`.
fn header(r: &mut Reader) -> Result<(String, Option<Vec<u8>>), Malformed> {
    let mut name = String::new();
    loop {
        let c = r.next().ok_or_else(|| r.bad())?;
        if c == b']' {
            if name.is_empty() {
                return Err(r.bad());
            }
            break;
        }
        if is_space(c) {
            let quoted = quoted_subsection(r, c)?;
            // `[a.b "c"]` names subsection `b.c` of `a`, as git prints it.
            return Ok(match name.split_once('.') {
                Some((s, sub)) => {
                    let mut whole = sub.as_bytes().to_vec();
                    whole.push(b'.');
                    whole.extend(quoted);
                    (s.to_owned(), Some(whole))
                }
                None => (name, Some(quoted)),
            });
        }
        if !is_key_char(c) && c != b'.' {
            return Err(r.bad());
        }
        name.push(c.to_ascii_lowercase() as char);
    }
    // The old syntax: `[section.sub]` names `section.sub` (lowercased whole).
    match name.split_once('.') {
        Some((s, sub)) => Ok((s.to_owned(), Some(sub.as_bytes().to_vec()))),
        None => Ok((name, None)),
    }
}

/// ` "sub"]` after a section's name, from the space `first` on.
fn quoted_subsection(r: &mut Reader, first: u8) -> Result<Vec<u8>, Malformed> {
    let mut c = first;
    while is_space(c) {
        if c == b'\n' {
            return Err(r.bad());
        }
        c = r.next().unwrap_or(EOF);
    }
    if c != b'"' {
        return Err(r.bad());
    }
    let mut sub = Vec::new();
    loop {
        let c = r.next().unwrap_or(EOF);
        match c {
            b'\n' => return Err(r.bad()),
            b'"' => break,
            b'\\' => match r.next().unwrap_or(EOF) {
                b'\n' => return Err(r.bad()),
                e => sub.push(e),
            },
            _ => sub.push(c),
        }
    }
    if r.next() != Some(b']') {
        return Err(r.bad());
    }
    Ok(sub)
}

/// A key starting with `first`, then `= value` or nothing before the end of the line.
fn setting(r: &mut Reader, first: u8) -> Result<(String, Option<Vec<u8>>), Malformed> {
    let mut key = String::from(first.to_ascii_lowercase() as char);
    let mut c = r.next().unwrap_or(EOF);
    while is_key_char(c) {
        key.push(c.to_ascii_lowercase() as char);
        c = r.next().unwrap_or(EOF);
    }
    while c == b' ' || c == b'\t' {
        c = r.next().unwrap_or(EOF);
    }
    if c == b'\n' {
        return Ok((key, None));
    }
    if c != b'=' {
        return Err(r.bad());
    }
    value(r).map(|v| (key, Some(v)))
}

/// A value after `=`: quotes, escapes, comments and line continuations as git reads them;
/// whitespace outside quotes kept only between words.
fn value(r: &mut Reader) -> Result<Vec<u8>, Malformed> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut comment = false;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let c = r.next().unwrap_or(EOF);
        if c == b'\n' {
            if quoted {
                return Err(r.bad());
            }
            return Ok(out);
        }
        if comment {
            continue;
        }
        if is_space(c) && !quoted {
            if !out.is_empty() {
                pending.push(c);
            }
            continue;
        }
        if !quoted && (c == b';' || c == b'#') {
            comment = true;
            continue;
        }
        out.append(&mut pending);
        match c {
            b'\\' => match r.next().unwrap_or(EOF) {
                b'\n' => {}
                b't' => out.push(b'\t'),
                b'b' => out.push(0x08),
                b'n' => out.push(b'\n'),
                e @ (b'\\' | b'"') => out.push(e),
                _ => return Err(r.bad()),
            },
            b'"' => quoted = !quoted,
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What git itself reads from `text`: `name` and value per entry, or `None` when it
    /// refuses the file.
    fn git_reads(text: &[u8]) -> Option<Vec<(String, Option<Vec<u8>>)>> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("config");
        std::fs::write(&file, text).expect("write");
        let out = std::process::Command::new("git")
            .args(["config", "--no-includes", "-z", "--list", "-f"])
            .arg(&file)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("git");
        if !out.status.success() {
            return None;
        }
        Some(
            out.stdout
                .split(|b| *b == 0)
                .filter(|e| !e.is_empty())
                .map(|e| match e.iter().position(|b| *b == b'\n') {
                    Some(i) => (
                        String::from_utf8_lossy(&e[..i]).into_owned(),
                        Some(e[i + 1..].to_vec()),
                    ),
                    None => (String::from_utf8_lossy(e).into_owned(), None),
                })
                .collect(),
        )
    }

    fn ours(text: &[u8]) -> Option<Vec<(String, Option<Vec<u8>>)>> {
        entries(text)
            .ok()
            .map(|es| es.into_iter().map(|e| (e.name(), e.value)).collect())
    }

    #[test]
    fn what_a_line_by_line_reading_misses_is_read_as_git_reads_it() {
        for text in [
            "[core] fsmonitor = touch /tmp/x\n",
            "[user][core]fsmonitor=x",
            "[remote \"a]b\"] uploadpack = up\n",
            "[core]\n\tworktree = \"/a \\\"b\\\"\" ; comment\n",
            "[core]\n\tworktree = /a/b\\\n/c # c\n",
            "[Core.Sub]\n\tKey\n",
            "\u{feff}[core]\r\n\tbare = false\r\n",
            "[core]\n\tx = a  \"  b \"  c  \n",
        ] {
            let ours = ours(text.as_bytes());
            assert!(ours.is_some(), "{text:?}");
            assert_eq!(ours, git_reads(text.as_bytes()), "{text:?}");
        }
        // A NUL: git reads a name cut short at it; refused here.
        assert_eq!(ours(b"[core \"fsmonitor\0\"] x = cmd\n"), None);
        assert_eq!(ours(b"[core]\n\tworktree = /a\0b\n"), None);
        for text in [
            "[ core ]\n",
            "[core]\n\tfsmonitor ; c\n",
            "[core \"x]\n",
            "[]\nk = v\n",
            "[core]\n\tx = \"open\n",
            "[core]\n\t1x = y\n",
        ] {
            assert_eq!(ours(text.as_bytes()), None, "{text:?}");
            assert_eq!(git_reads(text.as_bytes()), None, "{text:?}");
        }
    }

    fn piece() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "[core]",
            "[core] ",
            "[Core]",
            "[remote \"O r\"]",
            "[a.B]",
            "[x \"q\\\"\\\\\"]",
            "[user][core]",
            "[ core]",
            "[core ]",
            "[ \"x\"]",
            "[core \"a\" ]",
            "[.x]",
            "[x.]",
            "\n",
            "\r\n",
            "\r",
            " ",
            "\t",
            "\x0b",
            "\x0c",
            "# c",
            "; c",
            "fsmonitor",
            "worktree",
            "Key-2",
            "k",
            "=",
            " = ",
            "v",
            "\"",
            "\\",
            "\\\n",
            "\\t",
            "\\b",
            "\\x",
            "#",
            ";",
            "a b",
            "[",
            "]",
            "\u{feff}",
            "1",
        ])
        .prop_map(str::to_owned)
    }

    /// A line git mostly accepts: a header (maybe with a setting after it), a setting, a
    /// comment or nothing, with whitespace, quotes, escapes and comments in values.
    fn line() -> impl Strategy<Value = String> {
        let header = prop::sample::select(vec![
            "[core]",
            "[Core]",
            "[remote \"Or ig\"]",
            "[a.B]",
            "[x \"q\\\"\\\\\"]",
            "[user][core]",
            "[sub.x \"y\"]",
            "[remote \"a]b\"]",
        ]);
        let key = prop::sample::select(vec!["fsmonitor", "worktree", "Key-2", "k", "hooksPath"]);
        let word = prop::sample::select(vec![
            "v", "a b", "\"q w\"", " ", "\t", "\\\"", "\\\\", "\\t", "\\n", "\\b", "\\\n", "/p/a",
            "\";\"", "\"#\"",
        ]);
        let value = prop::collection::vec(word, 0..5).prop_map(|w| w.concat());
        let tail = prop::sample::select(vec!["", " ", "\t", " # c", " ;c", "\r"]);
        let setting = (key, prop::option::of(value), tail.clone()).prop_map(|(k, v, t)| match v {
            Some(v) => format!("\t{k} = {v}{t}"),
            None => format!("\t{k}{t}"),
        });
        prop_oneof![
            (header, prop::option::of(setting.clone())).prop_map(|(h, s)| match s {
                Some(s) => format!("{h}{s}"),
                None => h.to_owned(),
            }),
            setting.clone(),
            setting,
            Just("# comment".to_owned()),
            Just(String::new()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever git accepts, these entries are exactly git's: from pieces thrown together
        /// (git refuses most), and from lines git mostly accepts.
        #[test]
        fn every_file_git_accepts_is_read_as_git_reads_it(
            pieces in prop::collection::vec(piece(), 0..14),
            lines in prop::collection::vec(line(), 1..8),
        ) {
            for text in [pieces.concat(), format!("[core]\n{}\n", lines.join("\n"))] {
                if let Some(theirs) = git_reads(text.as_bytes()) {
                    prop_assert_eq!(ours(text.as_bytes()), Some(theirs), "{:?}", text);
                }
            }
        }
    }
}
