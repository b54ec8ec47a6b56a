//! One module per subcommand. Each writes its result to `out` (stdout) and progress to the `Ui`
//! (stderr), and returns an exit code; errors are printed once, here.

mod bundle;
mod docs;
mod doctor;
mod hooks;
mod init;
mod lifecycle;
mod run;
mod show;
mod status;
mod trust;
mod verify;
mod views;

use std::io::Write;
use std::path::PathBuf;

use crate::cli::Cli;

use crate::cli::Command;
use crate::error::Error;
use crate::error::Exit;
use crate::error::Result;
use crate::ui::Ui;

/// Run the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    let json = cli.command.wants_json();
    let ui = Ui::for_stderr(cli.quiet, cli.color);
    let mut out = std::io::stdout().lock();
    let result = dispatch(cli, &mut out, &ui);
    match result {
        Ok(exit) => {
            let _ = out.flush();
            exit.code()
        }
        Err(e) => {
            report(&ui, &e);
            if json {
                let problems = match &e {
                    Error::Invalid { problems, .. } => problems.clone(),
                    _ => Vec::new(),
                };
                let v = serde_json::json!({
                    "error": e.to_string(),
                    "hint": e.hint(),
                    "problems": problems,
                    "exit_code": e.exit().code(),
                });
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                );
            }
            let _ = out.flush();
            e.exit().code()
        }
    }
}

pub fn report(ui: &Ui, e: &Error) {
    ui.error(e.to_string());
    if let Error::Invalid { problems, .. } = e {
        for p in problems {
            ui.detail(format!("- {p}"));
        }
    }
    if let Some(hint) = e.hint() {
        ui.detail(format!("hint: {hint}"));
    }
}

fn dispatch(cli: Cli, out: &mut dyn Write, ui: &Ui) -> Result<Exit> {
    let cwd = working_dir(cli.dir.as_deref())?;
    // Hooks run on every push: they stay as quick as they are.
    if !matches!(cli.command, Command::Hook(_) | Command::Man(_)) {
        docs::keep_pages_current();
    }
    match cli.command {
        Command::Run(cmd) => run::run(cmd, &cwd, out, ui),
        Command::Plan(cmd) => bundle::plan(cmd, &cwd, out),
        Command::Status(cmd) => status::status(cmd, &cwd, out),
        Command::Show(cmd) => show::show(cmd, &cwd, out),
        Command::Init(cmd) => init::init(cmd, &cwd, out),
        Command::Verify(cmd) => verify::verify(cmd, &cwd, out, ui),
        Command::Hooks(cmd) => hooks::hooks(cmd, &cwd, out),
        Command::Hook(cmd) => hooks::hook(cmd.kind, &cwd, ui),
        Command::Reverify(cmd) => {
            let plan = crate::plan::RunPlan::for_reverify(&cwd, &cmd.rev, &cmd.agent)?;
            plan.policy
                .trust
                .require(&plan.policy.loaded, &plan.target.base_ref)?;
            run::execute(&plan, out, ui, cmd.json)
        }
        Command::Trust(cmd) => trust::trust(cmd, &cwd, out),
        Command::Doctor(cmd) => doctor::doctor(cmd, &cwd, out),
        Command::Man(cmd) => docs::man(cmd, out),
        Command::Completions(cmd) => docs::completions(cmd, out),
        Command::Resume(cmd) => lifecycle::resume(cmd, &cwd, out, ui),
        Command::Abandon(cmd) => lifecycle::abandon(cmd, &cwd, out),
        Command::Clean(cmd) => lifecycle::clean(cmd, &cwd, out),
        Command::Events(cmd) => views::events(cmd, &cwd, out),
        Command::Stats(cmd) => views::stats(cmd, &cwd, out),
    }
}

fn working_dir(dash_c: Option<&std::path::Path>) -> Result<PathBuf> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("cannot read the current directory", e))?;
    let dir = match dash_c {
        Some(d) => cwd.join(d),
        None => cwd,
    };
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "cannot change to {}: no such directory",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Run async work on a runtime with SIGINT/SIGTERM turned into a cancel token.
pub(crate) fn interruptible<T, F, Fut>(work: F) -> Result<T>
where
    F: FnOnce(crate::safety::process::Cancel) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    runtime.block_on(async {
        let cancel = crate::safety::process::install_signal_handlers()
            .map_err(|e| Error::io("cannot install signal handlers", e))?;
        work(cancel).await
    })
}

/// Write to stdout, treating a closed pipe (`| head`) as the end of output, not an error.
pub(crate) fn emit(out: &mut dyn Write, text: &str) -> Result<()> {
    match out.write_all(text.as_bytes()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("cannot write to stdout", e)),
    }
}

/// "3m", "2h", "5d": how long ago an RFC 3339 time was.
pub(crate) fn age(rfc3339: &str) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(rfc3339) else {
        return "?".to_owned();
    };
    let secs = std::time::SystemTime::now()
        .duration_since(then)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}
