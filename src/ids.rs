//! Run ids and session ids.
//!
//! A run id is `YYYYMMDD-HHMMSS-mmmx`: UTC time to the millisecond, then one random hex digit.
//! Ids sort by time (also within a second), read well in branch names, and contain nothing a
//! path or a ref could misread. Two runs started in the same millisecond are told apart by the
//! random digit, and by the store, which creates each run's folder exclusively and retries.

use std::time::SystemTime;

pub fn new_run_id(now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_millis(now).to_string();
    // "2026-11-21T05:12:00.123Z" -> "20261121", "051200", "123"
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let (date, rest) = digits.split_at(digits.len().min(8));
    let (time, millis) = rest.split_at(rest.len().min(6));
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{date}-{time}-{millis}{}", &random[..1])
}

/// `GIT_PIPELINE_TEST_CLOCK=<unix seconds>`, for tests only: run ids then come from that time
/// plus one millisecond per run already in the store, with `0` as the random digit, so that a
/// test's output names the same runs on every machine (as jj's `JJ_TIMESTAMP` does).
pub struct TestClock {
    start: SystemTime,
}

impl TestClock {
    pub fn from_env() -> Option<TestClock> {
        let secs: u64 = std::env::var("GIT_PIPELINE_TEST_CLOCK")
            .ok()?
            .parse()
            .ok()?;
        Some(TestClock {
            start: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        })
    }

    /// The id of the `n`th run made under this clock.
    pub fn run_id(&self, n: u64) -> String {
        let id = new_run_id(self.start + std::time::Duration::from_millis(n));
        format!("{}0", &id[..id.len() - 1])
    }
}

/// Sessions are UUIDs: agent CLIs such as Claude Code accept them as their own session ids.
pub fn new_session_id() -> String {
    new_uuid()
}

/// A random (version 4) UUID.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Exactly the shape of an id this program makes (`YYYYMMDD-HHMMSS-xxxx`).
pub fn is_run_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'-'
        && b[16..]
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// A run id or prefix typed by a user, checked before it is used in a path.
pub fn is_valid_run_ref(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_are_safe() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let a = new_run_id(t);
        let b = new_run_id(t + std::time::Duration::from_millis(1));
        let c = new_run_id(t + std::time::Duration::from_secs(1));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a.len(), 20);
        assert!(a.starts_with("20270115-"), "{a}");
        assert!(is_valid_run_ref(&a));
        assert!(is_run_id(&a), "{a}");
        assert!(!is_run_id("20261121-051200-ab1"));
        assert!(!is_run_id("my-feature-worktree-x"));
        assert!(!is_valid_run_ref("../x"));
        assert!(!is_valid_run_ref("a/b"));
        assert!(!is_valid_run_ref(""));
    }
}
