//! Human output. Progress goes to stderr, one line per transition with the elapsed time, so that
//! stdout carries only the result (the summary, or the JSON object with `--json`).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone)]
pub struct Ui {
    inner: Arc<Inner>,
}

struct Inner {
    err: Mutex<Box<dyn Write + Send>>,
    quiet: bool,
    start: Instant,
}

impl Ui {
    pub fn new(err: Box<dyn Write + Send>, quiet: bool) -> Self {
        Ui {
            inner: Arc::new(Inner {
                err: Mutex::new(err),
                quiet,
                start: Instant::now(),
            }),
        }
    }

    fn write(&self, text: &str) {
        if let Ok(mut w) = self.inner.err.lock() {
            // A closed stderr must not stop a run.
            let _ = writeln!(w, "{text}");
            let _ = w.flush();
        }
    }

    /// A progress line with the elapsed time; hidden by `-q`.
    pub fn step(&self, text: impl AsRef<str>) {
        if self.inner.quiet {
            return;
        }
        let secs = self.inner.start.elapsed().as_secs_f64();
        self.write(&format!("[{secs:>6.1}s] {}", text.as_ref()));
    }

    /// An informational line without time; hidden by `-q`.
    pub fn info(&self, text: impl AsRef<str>) {
        if !self.inner.quiet {
            self.write(text.as_ref());
        }
    }

    /// A warning; always shown.
    pub fn warn(&self, text: impl AsRef<str>) {
        self.write(&format!("warning: {}", text.as_ref()));
    }

    /// An error line; always shown.
    pub fn error(&self, text: impl AsRef<str>) {
        self.write(&format!("error: {}", text.as_ref()));
    }

    /// Detail under an error or warning; always shown.
    pub fn detail(&self, text: impl AsRef<str>) {
        self.write(&format!("  {}", text.as_ref()));
    }
}
