//! Watching the user's checkout between two containment fingerprints. What a watch is depends on
//! the platform ([`crate::platform`]): inotify on Linux; elsewhere there is none and every check
//! compares `git status` listings. What counts as a change is decided here and in
//! `containment.rs`, the same on every platform.

pub use crate::platform::CheckoutWatch;

/// `GIT_PIPELINE_WATCH=0` turns the watches off: every check then compares `git status`
/// listings (for a filesystem where inotify misbehaves).
pub fn enabled() -> bool {
    std::env::var_os("GIT_PIPELINE_WATCH").is_none_or(|v| v != "0")
}
