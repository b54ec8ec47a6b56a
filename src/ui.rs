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
}

struct Inner {
    err: Mutex<Box<dyn Write + Send>>,
    /// The line the live spinner stands for, and when its step started.
    pending: Mutex<Option<(String, String)>>,
    quiet: bool,
    color: bool,
    /// Live spinners: only on a terminal.
    live: bool,
    start: Instant,
    spinner: Mutex<Option<ProgressBar>>,
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
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => tty && !no_color,
        };
        Ui::build(Box::new(std::io::stderr()), quiet, color, tty && !quiet)
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
            }),
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
        if let Ok(mut w) = self.inner.err.lock() {
            // A closed stderr must not stop a run.
            let _ = writeln!(w, "{text}");
            let _ = w.flush();
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
        if !self.inner.live {
            self.write(&format!("{} {}", self.elapsed(), self.paint(text)));
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
        pb.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut p) = self.inner.pending.lock() {
            *p = Some((self.elapsed(), self.paint(text)));
        }
        if let Ok(mut s) = self.inner.spinner.lock() {
            *s = Some(pb);
        }
    }

    /// A progress line with the elapsed time; hidden by `-q`.
    pub fn step(&self, text: impl AsRef<str>) {
        if self.inner.quiet {
            return;
        }
        let line = format!("{} {}", self.elapsed(), self.paint(text.as_ref()));
        self.write(&line);
    }

    /// An informational line without time; hidden by `-q`.
    pub fn info(&self, text: impl AsRef<str>) {
        if !self.inner.quiet {
            self.write(text.as_ref());
        }
    }

    /// A warning; always shown.
    pub fn warn(&self, text: impl AsRef<str>) {
        let label = if self.inner.color {
            format!("{YELLOW}warning:{RESET}")
        } else {
            "warning:".to_owned()
        };
        self.write(&format!("{label} {}", text.as_ref()));
    }

    /// An error line; always shown.
    pub fn error(&self, text: impl AsRef<str>) {
        let label = if self.inner.color {
            format!("{BOLD}{RED}error:{RESET}")
        } else {
            "error:".to_owned()
        };
        self.write(&format!("{label} {}", text.as_ref()));
    }

    /// Detail under an error or warning; always shown.
    pub fn detail(&self, text: impl AsRef<str>) {
        self.write(&format!("  {}", text.as_ref()));
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut s) = self.spinner.lock()
            && let Some(pb) = s.take()
        {
            pb.finish_and_clear();
        }
    }
}
