//! Human output. Progress goes to stderr, one line per transition with the elapsed time, so that
//! stdout carries only the result (the summary, or the JSON object with `--json`).
//!
//! On a terminal a step that takes time (an agent, a gate) shows a live spinner with its elapsed
//! time, replaced by the step's result when it ends, and results are coloured. Elsewhere (a pipe,
//! a file, CI) the lines are plain and stable: `[  12.3s] gate test: pass (2.1s)`. `NO_COLOR`,
//! `--color never|always`, `-q` are honoured.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether what goes to stderr (progress and `-v` logs alike) is coloured: `--color`, else a
/// terminal without `NO_COLOR`.
pub fn colored_stderr(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Clone)]
pub struct Ui {
    inner: Arc<Inner>,
    /// A lane's name (a bundle workstream): its lines are prefixed with it, and on a terminal
    /// its current step shows on the shared board instead of a spinner of its own.
    lane: Option<Arc<str>>,
}

/// The bottom line of a bundle run on a terminal: a spinner, the elapsed time, the bundle's
/// counts and what each running workstream is doing.
struct Board {
    pb: ProgressBar,
    summary: String,
    lanes: std::collections::BTreeMap<String, String>,
}

struct Inner {
    err: Mutex<Box<dyn Write + Send>>,
    /// The line the live spinner stands for, and when its step started.
    pending: Mutex<Option<(String, String)>>,
    /// The live spinner's own text, which an agent's activity is shown after.
    spinner_text: Mutex<String>,
    quiet: bool,
    color: bool,
    /// Live spinners: only on a terminal.
    live: bool,
    start: Instant,
    spinner: Mutex<Option<ProgressBar>>,
    board: Mutex<Option<Board>>,
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

impl Ui {
    /// Plain lines to `err` (tests, pipes).
    pub fn new(err: Box<dyn Write + Send>, quiet: bool) -> Self {
        Ui::build(err, quiet, false, false)
    }

    /// Progress on this process's stderr, live and coloured when it is a terminal.
    pub fn for_stderr(quiet: bool, color: ColorChoice) -> Self {
        let tty = std::io::stderr().is_terminal();
        Ui::build(
            Box::new(std::io::stderr()),
            quiet,
            colored_stderr(color),
            tty && !quiet,
        )
    }

    fn build(err: Box<dyn Write + Send>, quiet: bool, color: bool, live: bool) -> Self {
        Ui {
            inner: Arc::new(Inner {
                err: Mutex::new(err),
                quiet,
                color,
                live,
                start: Instant::now(),
                spinner: Mutex::new(None),
                pending: Mutex::new(None),
                spinner_text: Mutex::new(String::new()),
                board: Mutex::new(None),
            }),
            lane: None,
        }
    }

    /// The same output, for one lane (a bundle workstream).
    pub fn lane(&self, name: &str) -> Ui {
        Ui {
            inner: self.inner.clone(),
            lane: Some(Arc::from(name)),
        }
    }

    /// Show the board (terminals only; elsewhere the lines say it all).
    pub fn board_begin(&self) {
        if !self.inner.live {
            return;
        }
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let template = if self.inner.color {
            "{spinner:.cyan} {elapsed:.dim} {wide_msg}"
        } else {
            "{spinner} {elapsed} {wide_msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style);
        }
        pb.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut b) = self.inner.board.lock() {
            *b = Some(Board {
                pb,
                summary: String::new(),
                lanes: Default::default(),
            });
        }
    }

    /// The board's summary part ("2/5 succeeded, 1 running").
    pub fn board_summary(&self, text: impl Into<String>) {
        self.with_board(|b| b.summary = text.into());
    }

    /// A lane has ended: it leaves the board.
    pub fn lane_done(&self, name: &str) {
        self.with_board(|b| {
            b.lanes.remove(name);
        });
    }

    pub fn board_end(&self) {
        if let Ok(mut b) = self.inner.board.lock()
            && let Some(board) = b.take()
        {
            board.pb.finish_and_clear();
        }
    }

    fn with_board(&self, f: impl FnOnce(&mut Board)) {
        if let Ok(mut guard) = self.inner.board.lock()
            && let Some(b) = guard.as_mut()
        {
            f(b);
            let lanes: Vec<String> = b.lanes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let msg = if lanes.is_empty() {
                b.summary.clone()
            } else {
                format!("{} · {}", b.summary, lanes.join(" · "))
            };
            b.pb.set_message(msg);
        }
    }

    /// On the board, what this lane does now.
    fn lane_state(&self, text: &str) -> bool {
        let Some(lane) = &self.lane else {
            return false;
        };
        let mut shown = false;
        self.with_board(|b| {
            b.lanes.insert(lane.to_string(), text.to_owned());
            shown = true;
        });
        shown
    }

    fn prefixed(&self, text: &str) -> String {
        match &self.lane {
            Some(l) => format!("[{l}] {text}"),
            None => text.to_owned(),
        }
    }

    fn elapsed(&self) -> String {
        format!("[{:>6.1}s]", self.inner.start.elapsed().as_secs_f64())
    }

    /// Stop the live spinner, if one is shown, leaving its line as a plain run would have.
    fn settle(&self) {
        if let Ok(mut s) = self.inner.spinner.lock()
            && let Some(pb) = s.take()
        {
            pb.finish_and_clear();
        }
        let pending = self.inner.pending.lock().ok().and_then(|mut p| p.take());
        if let Some((stamp, text)) = pending
            && let Ok(mut w) = self.inner.err.lock()
        {
            let _ = writeln!(w, "{stamp} {text}");
        }
    }

    fn write(&self, text: &str) {
        self.settle();
        let print = || {
            if let Ok(mut w) = self.inner.err.lock() {
                // A closed stderr must not stop a run.
                let _ = writeln!(w, "{text}");
                let _ = w.flush();
            }
        };
        // Above the board, when one is shown.
        let board = self
            .inner
            .board
            .lock()
            .ok()
            .and_then(|b| b.as_ref().map(|b| b.pb.clone()));
        match board {
            Some(pb) => pb.suspend(print),
            None => print(),
        }
    }

    /// Colour the words that carry an outcome, when colours are on.
    fn paint(&self, text: &str) -> String {
        if !self.inner.color {
            return text.to_owned();
        }
        let mut t = text.to_owned();
        for (word, style) in [
            (": pass", GREEN),
            (": approved", GREEN),
            (": ok", GREEN),
            ("committed", GREEN),
            ("FAIL", RED),
            ("rejected", RED),
            ("circuit breaker", RED),
            ("skipped", DIM),
        ] {
            t = t.replacen(word, &format!("{style}{word}{RESET}"), 1);
        }
        t
    }

    /// A step that takes a while starts: a spinner with its elapsed time on a terminal, a line
    /// otherwise. Hidden by `-q`.
    pub fn start(&self, text: impl AsRef<str>) {
        if self.inner.quiet {
            return;
        }
        let text = text.as_ref();
        if self.lane_state(text) {
            return;
        }
        if !self.inner.live || self.lane.is_some() {
            self.write(&format!(
                "{} {}",
                self.elapsed(),
                self.paint(&self.prefixed(text))
            ));
            return;
        }
        self.settle();
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let template = if self.inner.color {
            "{spinner:.cyan} {msg} {elapsed:.dim}"
        } else {
            "{spinner} {msg} {elapsed}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style);
        }
        pb.set_message(text.to_owned());
        if let Ok(mut t) = self.inner.spinner_text.lock() {
            *t = text.to_owned();
        }
        pb.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut p) = self.inner.pending.lock() {
            *p = Some((self.elapsed(), self.paint(text)));
        }
        if let Ok(mut s) = self.inner.spinner.lock() {
            *s = Some(pb);
        }
    }

    /// What an agent (`who`) is doing now: after the live spinner's text, or as its lane's state
    /// on a bundle's board, cut to the terminal's width. Not shown elsewhere: `git pipeline events`
    /// has every one of them.
    pub fn activity(&self, who: &str, text: &str) {
        if self.inner.quiet || !self.inner.live {
            return;
        }
        let width = console::Term::stderr().size().1 as usize;
        if self.lane.is_some() {
            let line = format!("{who}: {text}");
            self.lane_state(&crate::text::one_line(
                &line,
                width.saturating_sub(30).max(20),
            ));
            return;
        }
        let base = self
            .inner
            .spinner_text
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        // One row: the spinner and the elapsed time take about 10 columns; a longer message
        // would wrap and the redraw would scroll.
        let room = width.saturating_sub(10).max(20);
        if let Ok(s) = self.inner.spinner.lock()
            && let Some(pb) = s.as_ref()
        {
            pb.set_message(crate::text::one_line(&format!("{base} · {text}"), room));
        }
    }

    /// A progress line with the elapsed time; hidden by `-q`.
    pub fn step(&self, text: impl AsRef<str>) {
        if self.inner.quiet {
            return;
        }
        self.lane_state(text.as_ref());
        let line = format!(
            "{} {}",
            self.elapsed(),
            self.paint(&self.prefixed(text.as_ref()))
        );
        self.write(&line);
    }

    /// An informational line without time; hidden by `-q`.
    pub fn info(&self, text: impl AsRef<str>) {
        if !self.inner.quiet {
            self.write(&self.prefixed(text.as_ref()));
        }
    }

    /// A warning; always shown.
    pub fn warn(&self, text: impl AsRef<str>) {
        let label = if self.inner.color {
            format!("{YELLOW}warning:{RESET}")
        } else {
            "warning:".to_owned()
        };
        self.write(&format!("{label} {}", self.prefixed(text.as_ref())));
    }

    /// An error line; always shown.
    pub fn error(&self, text: impl AsRef<str>) {
        let label = if self.inner.color {
            format!("{BOLD}{RED}error:{RESET}")
        } else {
            "error:".to_owned()
        };
        self.write(&format!("{label} {}", self.prefixed(text.as_ref())));
    }

    /// Detail under an error or warning; always shown.
    pub fn detail(&self, text: impl AsRef<str>) {
        self.write(&format!("  {}", self.prefixed(text.as_ref())));
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut s) = self.spinner.lock()
            && let Some(pb) = s.take()
        {
            pb.finish_and_clear();
        }
        if let Ok(mut b) = self.board.lock()
            && let Some(board) = b.take()
        {
            board.pb.finish_and_clear();
        }
    }
}
