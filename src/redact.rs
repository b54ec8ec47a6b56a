//! Secrets never reach stored files: values of environment variables whose names contain `KEY`,
//! `TOKEN`, `SECRET`, `PASSWORD` (or `PASSWD`) are replaced by `***` in every stored output,
//! prompt, event and record. Agents still receive their environment unchanged.

use std::borrow::Cow;

/// Shorter values are not treated as secrets: replacing every `1` or `yes` in the logs would hide
/// more than it protects. Documented in `docs/security.md`.
pub const MIN_SECRET_LEN: usize = 6;
pub const MASK: &str = "***";

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is masked whole.
    secrets: Vec<Vec<u8>>,
}

pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD"]
        .iter()
        .any(|w| upper.contains(w))
}

impl Redactor {
    /// From the process environment plus extra variables (agent and gate `env` tables).
    pub fn from_env<'a>(extra: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let mut secrets: Vec<Vec<u8>> = Vec::new();
        for (k, v) in std::env::vars_os() {
            if is_secret_name(&k.to_string_lossy()) {
                secrets.push(v.as_bytes().to_vec());
            }
        }
        for (k, v) in extra {
            if is_secret_name(k) {
                secrets.push(v.as_bytes().to_vec());
            }
        }
        Redactor::new(secrets)
    }

    pub fn new(values: Vec<Vec<u8>>) -> Self {
        let mut secrets: Vec<Vec<u8>> = Vec::new();
        for v in values {
            if v.len() < MIN_SECRET_LEN {
                continue;
            }
            // The same value as it appears inside a JSON string.
            if let Ok(s) = std::str::from_utf8(&v) {
                let json = serde_json::to_string(s).unwrap_or_default();
                let inner = json.trim_matches('"').as_bytes().to_vec();
                if inner != v && inner.len() >= MIN_SECRET_LEN {
                    secrets.push(inner);
                }
            }
            secrets.push(v);
        }
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn bytes<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out: Cow<'a, [u8]> = Cow::Borrowed(input);
        for s in &self.secrets {
            if let Some(replaced) = replace_all(&out, s, MASK.as_bytes()) {
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    pub fn text<'a>(&self, input: &'a str) -> Cow<'a, str> {
        match self.bytes(input.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(input),
            // Secrets and the mask are whole byte strings from valid UTF-8 or arbitrary bytes;
            // a lossy conversion only matters for non-UTF-8 secrets.
            Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
        }
    }
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    let first = find(hay, needle, 0)?;
    let mut out = Vec::with_capacity(hay.len());
    let mut at = 0;
    let mut next = Some(first);
    while let Some(i) = next {
        out.extend_from_slice(&hay[at..i]);
        out.extend_from_slice(with);
        at = i + needle.len();
        next = find(hay, needle, at);
    }
    out.extend_from_slice(&hay[at..]);
    Some(out)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from >= hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_and_their_json_form() {
        let r = Redactor::new(vec![b"s3cr\"et-value".to_vec(), b"short".to_vec()]);
        assert_eq!(r.text("a s3cr\"et-value b short"), "a *** b short");
        assert_eq!(r.text(r#"{"x":"s3cr\"et-value"}"#), r#"{"x":"***"}"#);
    }

    #[test]
    fn names() {
        assert!(is_secret_name("OPENAI_API_KEY"));
        assert!(is_secret_name("github_token"));
        assert!(!is_secret_name("HOME"));
    }
}
