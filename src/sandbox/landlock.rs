//! Linux: the sandbox is Landlock (unprivileged, no helper binary). The ABI is pinned to the one
//! tested here (7); an older kernel enforces what it can ("partially enforced"), and one without
//! Landlock enforces nothing, which the probe reports.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use landlock::{
    ABI, Access, AccessFs, AccessNet, LandlockStatus, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, path_beneath_rules,
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
    // Signals only within the sandbox: a step cannot stop or kill git-pipeline (or any other
    // process outside it) to skip the checks that follow it.
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(PINNED))
        .map_err(fail)?
        .scope(Scope::Signal)
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

/// Restrict the calling thread with an empty policy and say what was enforced (Landlock binds
/// only the thread that asks, and what it starts afterwards).
pub fn probe() -> Availability {
    match restrict(&Policy {
        network: true,
        ..Policy::default()
    }) {
        Ok(status) => describe(&status),
        Err(e) => Availability::none(e.to_string()),
    }
}

/// [`probe`] on a thread of its own, which ends with it: nothing runs in that thread's sandbox,
/// so no program ever shares this process while restricted (a program started from a
/// restricted thread could reach this process's files and memory through
/// `/proc/<pid>/task/<tid>` until the thread ends: steps are started through `__sandbox`).
pub fn probe_on_thread() -> Availability {
    std::thread::Builder::new()
        .name("sandbox-probe".to_owned())
        .spawn(probe)
        .map_err(|e| e.to_string())
        .and_then(|t| t.join().map_err(|_| "the sandbox probe stopped".to_owned()))
        .unwrap_or_else(Availability::none)
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
