//! The `prober` command: hping3's options in, hping3's output out.
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser as _;
use prober::{
    cli::{
        self,
        exporter::{ExporterCli, SUBCOMMAND},
        Cli, Mode,
    },
    discover, exporter, ping, preflight,
    reply_loop::Conclusion,
    sweep,
};

/// Exit status for errors; 0 and 1 mean "a reply came" and "none came", as in hping3.
const EXIT_ERROR: u8 = 2;
/// Exit status when part of the result is missing (replies lost in the kernel, output not
/// written).
const EXIT_INCOMPLETE: u8 = 3;

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|first| first == SUBCOMMAND)
    {
        return exporter();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(help) if cli::printed_help(&help) => {
            let _ = help.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => return fail(&cli::parse_error_line(&error)),
    };
    match run(cli) {
        Ok(Conclusion::Answered) => ExitCode::SUCCESS,
        Ok(Conclusion::Unanswered) => ExitCode::from(1),
        Ok(Conclusion::Incomplete) => ExitCode::from(EXIT_INCOMPLETE),
        Ok(Conclusion::TcpFlags(flags)) => ExitCode::from(flags),
        Err(error) => fail(&cli::error_line(&error)),
    }
}

/// Runs what the command line asks for.
fn run(cli: Cli) -> Result<Conclusion> {
    let mode = cli.into_mode()?;
    preflight::check()?;
    match mode {
        Mode::Ping(options) => ping::run(options),
        Mode::Sweep(options) => sweep::run(options),
        Mode::Discover(options) => discover::run(options),
    }
}

/// `prober exporter`: serves until SIGINT or SIGTERM.
fn exporter() -> ExitCode {
    let cli = match ExporterCli::try_parse_from(std::env::args_os().skip(1)) {
        Ok(cli) => cli,
        Err(help) if cli::printed_help(&help) => {
            let _ = help.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => return fail(&cli::parse_error_line(&error)),
    };
    let run = || {
        let command_line = cli.into_command_line()?;
        preflight::check()?;
        exporter::run(command_line)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&cli::error_line(&error)),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("prober: {message}");
    ExitCode::from(EXIT_ERROR)
}
