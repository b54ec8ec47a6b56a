use std::process::ExitCode;

use clap::Parser;
use git_pipeline::cli::Cli;
use git_pipeline::error::Exit;

fn main() -> ExitCode {
    // A step's program started in the OS sandbox: restrict, then exec (src/sandbox.rs). Before
    // any parsing, threads or runtime: the restriction is this process's for its whole life.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).and_then(|a| a.to_str()) == Some(git_pipeline::sandbox::SUBCOMMAND) {
        let code = git_pipeline::sandbox::main(&args[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; bad usage is exit 3 (SPEC section 3).
            let code = if e.use_stderr() {
                Exit::Usage.code()
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    init_tracing(cli.verbose, git_pipeline::ui::colored_stderr(cli.color));
    let code = git_pipeline::commands::main(cli);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn init_tracing(verbose: u8, color: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "git_pipeline=warn",
        1 => "git_pipeline=debug",
        _ => "git_pipeline=trace",
    };
    let filter =
        EnvFilter::try_from_env("GIT_PIPELINE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color);
    // -vv shows when each line happened since the start (where a run spends its time).
    let _ = if verbose >= 2 {
        builder
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init()
    } else {
        builder.without_time().try_init()
    };
}
