//! Typed errors of the library and the one table that maps them to SPEC's exit codes.

/// Exit codes of SPEC section 3. The numbers are the contract; keep them here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(into = "i32")]
pub enum Exit {
    Success,
    StageFailure,
    RetriesExhausted,
    Usage,
    GateFailure,
    RiskFailure,
    ScopeViolation,
    Interrupted,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::StageFailure => 1,
            Exit::RetriesExhausted => 2,
            Exit::Usage => 3,
            Exit::GateFailure => 4,
            Exit::RiskFailure => 5,
            Exit::ScopeViolation => 6,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for i32 {
    fn from(e: Exit) -> i32 {
        e.code()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration, bad flags, unknown agent, missing binary, not a repository: exit 3.
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// The task cannot be assessed (empty or unreadable): exit 5.
    #[error("{message}")]
    Task {
        message: String,
        hint: Option<String>,
    },
    /// A git command we rely on failed. Carries the command, its status and its stderr.
    #[error("`git {args}` failed ({status}): {stderr}")]
    Git {
        args: String,
        status: String,
        stderr: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A git command found a lock file in its way (`index.lock`, `refs/notes/pipeline.lock`):
    /// another git process is writing there, or one crashed and left it.
    #[error(
        "git could not write {what}: the lock file {} exists (another git command is writing it, or one stopped and left it)",
        lock.display()
    )]
    Locked {
        what: String,
        lock: std::path::PathBuf,
    },
    /// A step changed something outside the run's worktree.
    #[error("{0}")]
    Containment(String),
    /// The process received SIGINT/SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// Bad input with several problems (a bundle): exit 3, every problem listed.
    #[error("{message}")]
    Invalid {
        message: String,
        problems: Vec<String>,
        hint: String,
    },
    /// Anything else that stops a command, with a hint for the user.
    #[error("{message}")]
    Other {
        message: String,
        hint: Option<String>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn task(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Task {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        Error::Other {
            message: message.into(),
            hint: None,
        }
    }

    pub fn other_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Other {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn io_path(action: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        Error::io(format!("cannot {action} {}", path.display()), source)
    }

    pub fn exit(&self) -> Exit {
        match self {
            Error::Usage { .. } | Error::Invalid { .. } => Exit::Usage,
            Error::Task { .. } => Exit::RiskFailure,
            Error::Interrupted => Exit::Interrupted,
            Error::Git { .. }
            | Error::Io { .. }
            | Error::Other { .. }
            | Error::Locked { .. }
            | Error::Containment(_) => Exit::StageFailure,
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Usage { hint, .. } | Error::Task { hint, .. } | Error::Other { hint, .. } => {
                hint.as_deref()
            }
            Error::Invalid { hint, .. } => Some(hint),
            _ => None,
        }
    }
}
