//! Seatbelt, the macOS sandbox, through `sandbox-exec -p <profile>`. The profile is built on
//! every platform (and unit-tested on Linux); applying it is macOS only.

use std::path::Path;

use super::Policy;

/// The Seatbelt profile (macOS `sandbox-exec -p`) for a policy: allow everything, then deny
/// writes except beneath the writable paths and the devices; without network, deny it too.
pub fn profile(policy: &Policy) -> String {
    let quote = |p: &Path| {
        let s = p.to_string_lossy();
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    };
    let mut profile = String::from("(version 1)\n(allow default)\n(deny file-write*)\n");
    profile.push_str("(allow file-write* (literal \"/dev/null\") (literal \"/dev/zero\") (literal \"/dev/tty\") (regex #\"^/dev/ttys[0-9]+$\") (literal \"/dev/ptmx\") (literal \"/dev/dtracehelper\"))\n");
    for w in &policy.writable {
        profile.push_str(&format!("(allow file-write* (subpath {}))\n", quote(w)));
    }
    if !policy.network {
        profile.push_str("(deny network-outbound (remote tcp))\n(deny network-bind)\n");
    }
    profile
}

#[cfg(target_os = "macos")]
const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

#[cfg(target_os = "macos")]
/// Seatbelt through `sandbox-exec`, which every macOS ships (deprecated in its man page, and
/// still what Claude Code and Codex CLI use).
pub fn probe() -> super::Availability {
    if std::path::Path::new(SANDBOX_EXEC).is_file() {
        super::Availability {
            kind: "seatbelt".to_owned(),
            enforced: true,
            detail: format!("seatbelt ({SANDBOX_EXEC})"),
        }
    } else {
        super::Availability::none(format!("{SANDBOX_EXEC} is missing"))
    }
}

#[cfg(target_os = "macos")]
/// Become `sandbox-exec -p <profile> <program> <args>`. Returns only on failure.
pub fn exec(policy: &super::Policy, argv: &[std::ffi::OsString]) -> String {
    use std::os::unix::process::CommandExt;
    if !std::path::Path::new(SANDBOX_EXEC).is_file() {
        return format!("{SANDBOX_EXEC} is missing: no sandbox can be applied");
    }
    let err = std::process::Command::new(SANDBOX_EXEC)
        .arg("-p")
        .arg(profile(policy))
        .args(argv)
        .exec();
    format!("cannot run {SANDBOX_EXEC}: {err}")
}
