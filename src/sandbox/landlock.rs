//! Linux: the sandbox is Landlock (unprivileged, no helper binary). The ABI is pinned to the one
//! tested here (7); an older kernel enforces what it can ("partially enforced"), and one without
//! Landlock enforces nothing, which the probe reports.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use landlock::{
    ABI, Access, AccessFs, AccessNet, LandlockStatus, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, path_beneath_rules,
};

use crate::sandbox::Availability;

use crate::sandbox::Policy;

const PINNED: ABI = ABI::V7;

/// Devices every program expects to write (and to use terminal ioctls on).
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/random",
    "/dev/urandom",
    "/dev/shm",
];

/// The kernel refused the ruleset.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the Landlock sandbox: {0}")]
struct RestrictError(#[from] landlock::RulesetError);

fn restrict(policy: &Policy) -> Result<landlock::RestrictionStatus, RestrictError> {
    let fail = RestrictError::from;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(PINNED))
        .map_err(fail)?;
    if !policy.network {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(fail)?;
    }
    ruleset
        .create()
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(PINNED)))
        .map_err(fail)?
        .add_rules(path_beneath_rules(DEVICES, AccessFs::from_all(PINNED)))
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            &policy.writable,
            AccessFs::from_all(PINNED),
        ))
        .map_err(fail)?
        .restrict_self()
        .map_err(fail)
}

fn describe(status: &landlock::RestrictionStatus) -> Availability {
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => format!("ABI {}", effective_abi as i32),
        LandlockStatus::NotEnabled => {
            return Availability::none(
                "Landlock is built into this kernel but not enabled (boot parameter lsm=)",
            );
        }
        LandlockStatus::NotImplemented => {
            return Availability::none(
                "this kernel has no Landlock (Linux 5.13 or newer with CONFIG_SECURITY_LANDLOCK)",
            );
        }
    };
    let (enforced, how) = match status.ruleset {
        RulesetStatus::FullyEnforced => (true, "fully enforced"),
        RulesetStatus::PartiallyEnforced => (false, "partially enforced (an older kernel)"),
        RulesetStatus::NotEnforced => (false, "not enforced"),
    };
    Availability {
        kind: "landlock".to_owned(),
        enforced,
        detail: format!("landlock {abi}, {how}"),
    }
}

/// Restrict a thread of its own with an empty policy and say what was enforced.
pub fn probe() -> Availability {
    let probe = || match restrict(&Policy {
        network: true,
        ..Policy::default()
    }) {
        Ok(status) => describe(&status),
        Err(e) => Availability::none(e.to_string()),
    };
    std::thread::spawn(probe)
        .join()
        .unwrap_or_else(|_| Availability::none("the sandbox probe stopped"))
}

/// Start `cmd` under `policy`, from a thread of its own that restricts itself first: Landlock
/// binds the thread that asks and everything it starts afterwards (a child inherits its
/// creator's domain), never the rest of this process. The program is in the sandbox from its
/// first instruction, with no program in between (a re-exec of git-pipeline cost a millisecond
/// per step).
pub fn spawn(
    policy: &Policy,
    cmd: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            let _inside = runtime.enter();
            let status = restrict(policy).map_err(std::io::Error::other)?;
            if policy.required && status.ruleset != RulesetStatus::FullyEnforced {
                return Err(std::io::Error::other(format!(
                    "run.sandbox = \"required\", but {}",
                    describe(&status).detail
                )));
            }
            cmd.spawn()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the sandboxed start stopped")))
    })
}

/// Restrict this process, then become the program. Returns only on failure.
pub fn exec(policy: &Policy, argv: &[OsString]) -> String {
    let status = match restrict(policy) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    if policy.required && status.ruleset != RulesetStatus::FullyEnforced {
        return format!(
            "run.sandbox = \"required\", but {}",
            describe(&status).detail
        );
    }
    let Some((program, args)) = argv.split_first() else {
        return "no program to run".to_owned();
    };
    let err = std::process::Command::new(program).args(args).exec();
    format!("cannot run {}: {err}", program.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_with_sh(target: &std::path::Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg("echo x > \"$1\"")
            .arg("sh")
            .arg(target)
            .stderr(std::process::Stdio::null());
        cmd
    }

    /// The restriction binds the started program and never the rest of the process: after a
    /// sandboxed start, this thread and an unsandboxed child still write where the policy
    /// refused.
    #[tokio::test]
    async fn only_the_started_program_is_restricted() {
        if !probe().enforced {
            return; // no Landlock on this kernel: nothing to show (the probe says so)
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let allowed = tmp.path().join("allowed");
        std::fs::create_dir(&allowed).expect("mkdir");
        let outside = tmp.path().join("outside");
        let policy = Policy {
            writable: vec![allowed.clone()],
            network: true,
            required: true,
        };
        let inside = spawn(&policy, &mut write_with_sh(&allowed.join("f")))
            .expect("starts")
            .wait()
            .await
            .expect("ends");
        assert!(inside.success(), "a write the policy allows works");
        let refused = spawn(&policy, &mut write_with_sh(&outside))
            .expect("starts")
            .wait()
            .await
            .expect("ends");
        assert!(
            !refused.success() && !outside.exists(),
            "a write outside fails"
        );
        let free = write_with_sh(&outside)
            .spawn()
            .expect("starts")
            .wait()
            .await
            .expect("ends");
        assert!(free.success(), "a child started normally is not restricted");
        std::fs::write(tmp.path().join("mine"), b"x").expect("this process is not restricted");
    }
}
