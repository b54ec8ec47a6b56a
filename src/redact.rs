//! Secrets never reach stored files: values of environment variables whose names say so (`KEY`,
//! `TOKEN`, `SECRET`, `PASSWORD`, `PASSWD`, `AUTH`, `CREDENTIAL`, `COOKIE`, a `PAT` part), and
//! values that look like secrets whatever their name (known token prefixes such as `ghp_` or
//! `sk-ant-`, the password of a URL with credentials, long high-entropy strings), are replaced
//! by `***` in every stored output, prompt, event and record. Agents still receive their
//! environment unchanged.

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
    [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "AUTH",
        "CREDENTIAL",
        "COOKIE",
    ]
    .iter()
    .any(|w| upper.contains(w))
        || upper.split(['_', '-']).any(|part| part == "PAT")
}

/// Prefixes of well-known token formats (GitHub, Anthropic, OpenAI, Slack, GitLab, npm, AWS,
/// Google, Stripe, Hugging Face).
const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "sk-ant-",
    "sk-proj-",
    "sk-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "glpat-",
    "npm_",
    "AKIA",
    "ASIA",
    "AIza",
    "sk_live_",
    "rk_live_",
    "hf_",
];

/// The parts of a value that are secrets by their shape: the whole value for a known token or a
/// long high-entropy string, the password of a URL with credentials (and the URL).
pub fn secret_parts(value: &str) -> Vec<String> {
    let v = value.trim();
    let mut out = Vec::new();
    if v.len() >= 16
        && !v.contains(char::is_whitespace)
        && TOKEN_PREFIXES.iter().any(|p| v.starts_with(p))
    {
        out.push(v.to_owned());
    }
    // scheme://user:password@host...
    if let Some((_, rest)) = v.split_once("://")
        && let Some((userinfo, _)) = rest.split_once('@')
        && !userinfo.contains('/')
        && let Some((_, password)) = userinfo.split_once(':')
        && !password.is_empty()
    {
        out.push(password.to_owned());
        out.push(v.to_owned());
    }
    if high_entropy(v) {
        out.push(v.to_owned());
    }
    out
}

/// At least 32 characters of a token alphabet, mixing upper case, lower case and digits, with
/// more than 4.2 bits of entropy per character: random keys, not words, paths, hex ids or UUIDs.
fn high_entropy(v: &str) -> bool {
    if v.len() < 32
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-+=.".contains(&b))
    {
        return false;
    }
    let classes = [
        v.bytes().any(|b| b.is_ascii_uppercase()),
        v.bytes().any(|b| b.is_ascii_lowercase()),
        v.bytes().any(|b| b.is_ascii_digit()),
    ];
    if classes.iter().filter(|c| **c).count() < 3 {
        return false;
    }
    let mut counts = [0u32; 256];
    for b in v.bytes() {
        counts[b as usize] += 1;
    }
    let n = v.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum();
    entropy > 4.2
}

impl Redactor {
    /// From the process environment plus extra variables (agent and gate `env` tables).
    pub fn from_env<'a>(extra: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let mut secrets: Vec<Vec<u8>> = Vec::new();
        let mut add = |k: &str, v: &[u8]| {
            if is_secret_name(k) {
                secrets.push(v.to_vec());
            }
            if let Ok(text) = std::str::from_utf8(v) {
                secrets.extend(secret_parts(text).into_iter().map(String::into_bytes));
            }
        };
        for (k, v) in std::env::vars_os() {
            add(&k.to_string_lossy(), v.as_bytes());
        }
        for (k, v) in extra {
            add(k, v.as_bytes());
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
    fn secrets_are_found_by_name_and_by_shape() {
        for name in [
            "GH_PAT",
            "ANTHROPIC_AUTH",
            "CREDENTIALS",
            "DB_PASSWORD",
            "session_cookie",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["PATH", "PATTERN", "HOME", "EDITOR"] {
            assert!(!is_secret_name(name), "{name}");
        }
        let token = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
        assert_eq!(secret_parts(token), vec![token.to_owned()]);
        let ant = "sk-ant-api03-abcdefghijklmnop";
        assert!(secret_parts(ant).contains(&ant.to_owned()));
        let url = "postgres://app:hunter2-very-secret@db.internal:5432/prod";
        let parts = secret_parts(url);
        assert!(
            parts.contains(&"hunter2-very-secret".to_owned()),
            "{parts:?}"
        );
        let random = "Zq8K2mPx7Lw4Nv9Rt3Ys6Bd1Hf5Jg0Qa";
        assert_eq!(secret_parts(random), vec![random.to_owned()]);
        // Not secrets: paths, hex ids, UUIDs, words, URLs without a password.
        for v in [
            "/usr/local/bin:/usr/bin:/bin",
            "3fce3b5b0c8e4d1a9b7f6e5d4c3b2a1908f7e6d5",
            "9c8541a3-4629-4f39-8de8-41fa1f57b40e",
            "the quick brown fox jumps over the lazy dog",
            "https://example.com/path?q=1",
            "https://user@example.com/",
        ] {
            assert!(secret_parts(v).is_empty(), "{v}");
        }
    }

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
