//! Agents and gates are managed children: each starts in its own process group so that a timeout,
//! Ctrl-C or the end of the step stops everything it started, not just the first process.

use crate::process_end::{End, end_of};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

/// How long a process group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);
/// How long we wait for output pipes to close once the group is gone (a daemonised escapee may
/// hold them open forever).
const DRAIN: Duration = Duration::from_secs(2);

pub struct Spec {
    pub argv: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Vec<(String, OsString)>,
    pub env_remove: Vec<String>,
    pub timeout: Option<Duration>,
    /// Bytes of stdout and of stderr kept (the tail: verdicts and errors come last).
    pub capture_limit: usize,
    /// Each complete line of stdout as it comes (cut to [`LINE_LIMIT`] bytes), for live activity.
    /// stdout is a socket, not a pipe: a process the program starts cannot reopen it through
    /// `/proc/<pid>/fd/1` (a socket refuses to be opened) and write lines that look like the
    /// program's own, such as an agent CLI's verdict.
    pub socket_stdout: bool,
    /// Bounded: when the reader falls behind, lines are dropped, never the output.
    pub lines: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
}

/// The longest stdout line passed on whole to [`Spec::lines`]; the rest of a longer line is not.
pub const LINE_LIMIT: usize = 64 * 1024;

pub struct Outcome {
    pub end: End,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration: Duration,
}

/// The tail of a stream, with how much was cut before it.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub cut: u64,
}

impl Captured {
    /// The bytes, with a marker line where the beginning was cut.
    pub fn marked(&self) -> Vec<u8> {
        if self.cut == 0 {
            return self.bytes.clone();
        }
        let mut v = format!("[git-pipeline: {} earlier bytes cut]\n", self.cut).into_bytes();
        v.extend_from_slice(&self.bytes);
        v
    }
}

/// Turns true when the user asked us to stop (SIGINT/SIGTERM).
#[derive(Clone)]
pub struct Cancel {
    rx: watch::Receiver<bool>,
}

impl Cancel {
    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }

    pub async fn cancelled(&mut self) {
        loop {
            if *self.rx.borrow_and_update() {
                return;
            }
            if self.rx.changed().await.is_err() {
                // Sender gone without cancelling: never fires.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Install SIGINT/SIGTERM handlers that flip the returned token.
pub fn install_signal_handlers() -> std::io::Result<Cancel> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let _ = tx.send(true);
        // Keep the sender alive so receivers keep seeing `true`.
        std::future::pending::<()>().await;
    });
    Ok(Cancel { rx })
}

pub async fn run(spec: Spec, cancel: &mut Cancel) -> Outcome {
    let started = Instant::now();
    let Some((program, args)) = spec.argv.split_first() else {
        return spawn_failed("empty command", started);
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for var in &spec.env_remove {
        cmd.env_remove(var);
    }
    let mut stdout_socket = None;
    if spec.socket_stdout {
        match std::os::unix::net::UnixStream::pair() {
            Ok((ours, theirs)) => {
                cmd.stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
                stdout_socket = Some(ours);
            }
            Err(e) => return spawn_failed(&format!("cannot make an output socket: {e}"), started),
        }
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if cancel.is_cancelled() {
        return Outcome {
            end: End::Interrupted,
            stdout: Captured::default(),
            stderr: Captured::default(),
            duration: started.elapsed(),
        };
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let name = program.to_string_lossy();
            let msg = match e.kind() {
                std::io::ErrorKind::NotFound => format!("command not found: {name}"),
                std::io::ErrorKind::PermissionDenied => format!("permission denied: {name}"),
                _ => format!("cannot start {name}: {e}"),
            };
            return spawn_failed(&msg, started);
        }
    };
    // The command holds the child's end of the socket: closed now, so that the child's exit
    // ends the output.
    drop(cmd);
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let limit = spec.capture_limit;
    let out_task = match stdout_socket {
        Some(ours) => {
            let stream = ours
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UnixStream::from_std(ours));
            match stream {
                Ok(s) => Some(tokio::spawn(read_tail(s, limit, spec.lines))),
                Err(e) => {
                    stop_group(pgid, &mut child).await;
                    return spawn_failed(&format!("cannot read the output socket: {e}"), started);
                }
            }
        }
        None => child
            .stdout
            .take()
            .map(|s| tokio::spawn(read_tail(s, limit, spec.lines))),
    };
    let err_task = child
        .stderr
        .take()
        .map(|s| tokio::spawn(read_tail(s, limit, None)));

    let deadline = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => end_of(s),
            Err(e) => End::SpawnFailed(format!("cannot wait for the process: {e}")),
        },
        _ = deadline => {
            stop_group(pgid, &mut child).await;
            End::TimedOut(spec.timeout.unwrap_or_default())
        }
        _ = cancel.cancelled() => {
            stop_group(pgid, &mut child).await;
            End::Interrupted
        }
    };
    // The leader is gone; whatever it left running in its group goes too.
    stop_group(pgid, &mut child).await;

    let stdout = collect(out_task).await;
    let stderr = collect(err_task).await;
    Outcome {
        end,
        stdout,
        stderr,
        duration: started.elapsed(),
    }
}

fn spawn_failed(msg: &str, started: Instant) -> Outcome {
    Outcome {
        end: End::SpawnFailed(msg.to_owned()),
        stdout: Captured::default(),
        stderr: Captured::default(),
        duration: started.elapsed(),
    }
}

async fn collect(task: Option<tokio::task::JoinHandle<Captured>>) -> Captured {
    let Some(task) = task else {
        return Captured::default();
    };
    match tokio::time::timeout(DRAIN, task).await {
        Ok(Ok(c)) => c,
        _ => Captured::default(),
    }
}

/// SIGTERM the group, give it [`GRACE`], then SIGKILL whatever is left.
async fn stop_group(pgid: Option<Pid>, child: &mut tokio::process::Child) {
    let Some(pgid) = pgid else {
        return;
    };
    if killpg(pgid, Signal::SIGTERM).is_err() {
        // ESRCH: the group is already empty.
        let _ = child.try_wait();
        return;
    }
    let until = Instant::now() + GRACE;
    loop {
        // Reap the leader if it exited, so that it does not keep the group alive as a zombie.
        let _ = child.try_wait();
        if killpg(pgid, None).is_err() {
            return;
        }
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait().await;
}

async fn read_tail<R: AsyncRead + Unpin>(
    mut r: R,
    limit: usize,
    lines: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
) -> Captured {
    let mut buf = Vec::new();
    let mut cut: u64 = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut line = Lines::default();
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(tx) = &lines {
                    line.feed(&chunk[..n], |l| {
                        let _ = tx.try_send(l);
                    });
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > limit.saturating_mul(2).max(1) {
                    let excess = buf.len() - limit;
                    buf.drain(..excess);
                    cut += excess as u64;
                }
            }
        }
    }
    if let Some(tx) = &lines
        && let Some(last) = line.finish()
    {
        let _ = tx.try_send(last);
    }
    if buf.len() > limit {
        let excess = buf.len() - limit;
        buf.drain(..excess);
        cut += excess as u64;
    }
    Captured { bytes: buf, cut }
}

/// Splits a stream into lines, each cut to [`LINE_LIMIT`] bytes, whatever the chunks.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(Vec<u8>)) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.take(&bytes[..end]);
            emit(std::mem::take(&mut self.partial));
            bytes = &bytes[end + 1..];
        }
        self.take(bytes);
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = LINE_LIMIT.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish(self) -> Option<Vec<u8>> {
        (!self.partial.is_empty()).then_some(self.partial)
    }
}

/// The processes of a run (see [`crate::platform::belongs_to_run`]).
pub fn run_processes(run_dir: &std::path::Path, worktree: Option<&std::path::Path>) -> Vec<i32> {
    crate::platform::run_processes(run_dir, worktree)
}

/// SIGTERM the processes, give them [`GRACE`], SIGKILL what is left. For leftovers of a run whose
/// owner died, outside any async runtime.
pub fn stop_pids(pids: &[i32]) {
    signal_all(pids, Signal::SIGTERM);
    let until = Instant::now() + GRACE;
    while Instant::now() < until && !all_gone(pids) {
        std::thread::sleep(POLL);
    }
    signal_all(pids, Signal::SIGKILL);
}

/// [`stop_pids`] inside a run: the wait yields to the runtime (Ctrl-C, timers) instead of
/// blocking its thread for up to [`GRACE`].
pub async fn stop_pids_async(pids: &[i32]) {
    signal_all(pids, Signal::SIGTERM);
    let until = Instant::now() + GRACE;
    while Instant::now() < until && !all_gone(pids) {
        tokio::time::sleep(POLL).await;
    }
    signal_all(pids, Signal::SIGKILL);
}

const POLL: Duration = Duration::from_millis(20);

fn signal_all(pids: &[i32], sig: Signal) {
    for &p in pids {
        if sig == Signal::SIGTERM || is_running(p) {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), sig);
        }
    }
}

fn all_gone(pids: &[i32]) -> bool {
    pids.iter().all(|&p| !is_running(p))
}

fn is_running(pid: i32) -> bool {
    crate::platform::is_running(pid)
}

#[cfg(test)]
mod lines_tests {
    use super::*;

    #[test]
    fn lines_come_whole_whatever_the_chunks_and_long_ones_are_cut() {
        let mut got = Vec::new();
        let mut l = Lines::default();
        l.feed(b"one\ntw", |x| got.push(x));
        l.feed(b"o\n\nthr", |x| got.push(x));
        let long = vec![b'x'; LINE_LIMIT + 10];
        l.feed(b"ee\n", |x| got.push(x));
        l.feed(&long, |x| got.push(x));
        l.feed(b"\nend", |x| got.push(x));
        got.extend(l.finish());
        assert_eq!(got.len(), 6);
        assert_eq!(&got[..4], [&b"one"[..], b"two", b"", b"three"]);
        assert_eq!(got[4].len(), LINE_LIMIT);
        assert_eq!(got[5], b"end");
    }
}
