//! Run ids and session ids.
//!
//! A run id is `YYYYMMDD-HHMMSS-xxxx` (UTC time, then four random hex digits): ids sort by time,
//! read well in branch names, and contain nothing a path or a ref could misread.

use std::time::SystemTime;

pub fn new_run_id(now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    // "2026-11-21T05:12:00Z" -> "20261121-051200"
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{date}-{time}-{}", &random[..4])
}

/// Sessions are UUIDs: agent CLIs such as Claude Code accept them as their own session ids.
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().to_string()
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
        let a = new_run_id(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000));
        let b = new_run_id(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_001));
        assert!(a < b, "{a} {b}");
        assert!(a.starts_with("20270115-"), "{a}");
        assert!(is_valid_run_ref(&a));
        assert!(!is_valid_run_ref("../x"));
        assert!(!is_valid_run_ref("a/b"));
        assert!(!is_valid_run_ref(""));
    }
}
