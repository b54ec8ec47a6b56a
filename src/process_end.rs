//! How a process ended, in words for messages: "exit status 1", "killed by signal SIGKILL".
//! Below everything that starts processes (git, agents, gates).

use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Exited(i32),
    Signaled(i32),
    TimedOut(Duration),
    Interrupted,
    /// The program could not be started (missing binary, not executable...).
    SpawnFailed(String),
}

impl End {
    pub fn success(&self) -> bool {
        matches!(self, End::Exited(0))
    }

    pub fn describe(&self) -> String {
        match self {
            End::Exited(c) => format!("exit status {c}"),
            End::Signaled(s) => format!("killed by signal {}", signal_name(*s)),
            End::TimedOut(d) => format!("timed out after {}", humantime::format_duration(*d)),
            End::Interrupted => "interrupted".to_owned(),
            End::SpawnFailed(e) => e.clone(),
        }
    }
}

pub fn end_of(status: ExitStatus) -> End {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => End::Exited(c),
        (None, Some(s)) => End::Signaled(s),
        (None, None) => End::Exited(-1),
    }
}

/// "exit status 1" / "killed by signal SIGKILL": for messages about any finished process.
pub fn describe_status(status: &ExitStatus) -> String {
    end_of(*status).describe()
}

fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| sig.to_string())
}
