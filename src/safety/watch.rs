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

/// Whether a watch of git-pipeline's own files (other runs' records, the refs) pays for itself
/// over `files` files. Closing a watch costs the kernel a grace period (up to ~20 ms on a 2-core
/// VM) at the end of the run; a stat costs a few microseconds: below a few hundred files the
/// stats of a run's checks cost less than the watch. `GIT_PIPELINE_WATCH=always` watches however
/// few there are.
pub fn worth_watching(files: usize, from: usize) -> bool {
    match std::env::var_os("GIT_PIPELINE_WATCH") {
        Some(v) if v == "0" => false,
        Some(v) if v == "always" => true,
        _ => files >= from,
    }
}
