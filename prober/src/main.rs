//! The `prober` command: hping3's options in, hping3's output out.
use std::{
    io::{self, BufWriter, Write},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Result};
use clap::{
    error::{ContextKind, ErrorKind},
    ArgAction, Parser,
};
use prober::{
    output, privilege,
    probe::TcpFlags,
    route::{self, Interface},
    session::{Options, Pacing, ProbeKind, Session},
};

/// Exit status for errors; 0 and 1 mean "a reply came" and "none came", as in hping3.
const EXIT_ERROR: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "prober",
    version,
    about = "hping3-compatible TCP and ICMP prober with kernel (XDP) reply timestamps",
    disable_version_flag = true,
    override_usage = "prober host [options]"
)]
struct Cli {
    /// Target host name or IPv4 address
    host: String,

    /// Stop after sending (and receiving) COUNT packets
    #[arg(short = 'c', long = "count", value_parser = parse_count, allow_negative_numbers = true, help_heading = "Base options")]
    count: Option<u64>,
    /// Wait between probes: seconds, or uX for X microseconds (-i 2, -i u100)
    #[arg(short = 'i', long = "interval", value_parser = parse_interval, help_heading = "Base options")]
    interval: Option<Duration>,
    /// Alias for -i u100000 (10 packets a second)
    #[arg(long, help_heading = "Base options")]
    fast: bool,
    /// Alias for -i u1
    #[arg(long, help_heading = "Base options")]
    faster: bool,
    /// Send as fast as possible; replies are still matched, counted and shown unless -q
    #[arg(long, help_heading = "Base options")]
    flood: bool,
    /// Numeric output (prober never does reverse lookups; accepted for hping3 compatibility)
    #[arg(short = 'n', long, help_heading = "Base options")]
    numeric: bool,
    /// Quiet: only the header and the statistic footer
    #[arg(short = 'q', long, help_heading = "Base options")]
    quiet: bool,
    /// Verbose: hping3's extra reply fields and set-up details
    #[arg(short = 'V', long, help_heading = "Base options")]
    verbose: bool,
    /// Interface to send on and receive replies from
    #[arg(
        short = 'I',
        long = "interface",
        value_name = "NAME",
        help_heading = "Base options"
    )]
    interface: Option<String>,
    /// Print version information
    #[arg(long, action = ArgAction::Version, help_heading = "Base options")]
    version: (),

    /// ICMP mode: echo requests
    #[arg(short = '1', long = "icmp", help_heading = "Mode (default: TCP)")]
    icmp: bool,

    /// IP time to live
    #[arg(short = 't', long, default_value_t = 64, help_heading = "IP")]
    ttl: u8,

    /// Destination port
    #[arg(short = 'p', long = "destport", value_parser = parse_port, help_heading = "TCP")]
    port: Option<u16>,
    /// Base source port (default random)
    #[arg(short = 's', long = "baseport", value_parser = parse_port, help_heading = "TCP")]
    base_port: Option<u16>,
    /// Keep the source port fixed
    #[arg(short = 'k', long = "keep", help_heading = "TCP")]
    keep: bool,
    /// TCP window size
    #[arg(short = 'w', long = "win", default_value_t = 64, help_heading = "TCP")]
    window: u16,
    /// Set the FIN flag
    #[arg(short = 'F', long = "fin", help_heading = "TCP")]
    fin: bool,
    /// Set the SYN flag
    #[arg(short = 'S', long = "syn", help_heading = "TCP")]
    syn: bool,
    /// Set the RST flag
    #[arg(short = 'R', long = "rst", help_heading = "TCP")]
    rst: bool,
    /// Set the PUSH flag
    #[arg(short = 'P', long = "push", help_heading = "TCP")]
    push: bool,
    /// Set the ACK flag
    #[arg(short = 'A', long = "ack", help_heading = "TCP")]
    ack: bool,
    /// Set the URG flag
    #[arg(short = 'U', long = "urg", help_heading = "TCP")]
    urg: bool,
    /// Set the X unused flag (0x40)
    #[arg(short = 'X', long = "xmas", help_heading = "TCP")]
    xmas: bool,
    /// Set the Y unused flag (0x80)
    #[arg(short = 'Y', long = "ymas", help_heading = "TCP")]
    ymas: bool,
}

fn parse_count(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(count) if count > 0 => Ok(count),
        _ => Err(format!(
            "invalid count '{text}': expected a positive number"
        )),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!(
            "invalid port '{text}': expected a number from 1 to 65535"
        )),
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    // A day is far beyond any useful probe interval and keeps deadline arithmetic in range.
    const LONGEST: Duration = Duration::from_secs(24 * 3600);
    let parsed = match text.strip_prefix('u') {
        Some(micros) => micros.parse().map(Duration::from_micros),
        None => text.parse().map(Duration::from_secs),
    };
    match parsed {
        Ok(interval) if interval <= LONGEST => Ok(interval),
        _ => Err(format!(
            "invalid interval '{text}': expected seconds, or uX for X microseconds, at most a day"
        )),
    }
}

impl Cli {
    fn tcp_flags(&self) -> TcpFlags {
        let bits = [
            (self.fin, TcpFlags::FIN),
            (self.syn, TcpFlags::SYN),
            (self.rst, TcpFlags::RST),
            (self.push, TcpFlags::PSH),
            (self.ack, TcpFlags::ACK),
            (self.urg, TcpFlags::URG),
            (self.xmas, TcpFlags::X),
            (self.ymas, TcpFlags::Y),
        ];
        TcpFlags(
            bits.iter()
                .filter(|(set, _)| *set)
                .fold(0, |all, (_, bit)| all | bit),
        )
    }

    fn pacing(&self) -> Pacing {
        if self.flood {
            Pacing::Flood
        } else if let Some(interval) = self.interval {
            Pacing::Interval(interval)
        } else if self.faster {
            Pacing::Interval(Duration::from_micros(1))
        } else if self.fast {
            Pacing::Interval(Duration::from_millis(100))
        } else {
            Pacing::Interval(Duration::from_secs(1))
        }
    }

    fn options(&self) -> Result<Options> {
        let kind = if self.icmp {
            ProbeKind::IcmpEcho
        } else {
            let Some(port) = self.port else {
                bail!("TCP mode needs a destination port: -p PORT (or -1 for ICMP)");
            };
            ProbeKind::Tcp {
                flags: self.tcp_flags(),
                port,
                base_port: self.base_port,
                keep_port: self.keep,
                window: self.window,
            }
        };
        Ok(Options {
            target_name: self.host.clone(),
            target: route::resolve(&self.host)?,
            kind,
            count: self.count,
            pacing: self.pacing(),
            ttl: self.ttl,
            interface: self
                .interface
                .as_deref()
                .map(Interface::by_name)
                .transpose()?,
            quiet: self.quiet,
            verbose: self.verbose,
        })
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // One line, not clap's usage block: scripts read the first line of stderr.
            eprintln!("prober: {}", one_line(&error));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match run(&cli) {
        Ok(any_reply) => ExitCode::from(if any_reply { 0 } else { 1 }),
        Err(error) => {
            // Errors are one line whatever a lower layer put in its message.
            let message = format!("{error:#}");
            let message: Vec<&str> = message
                .lines()
                .filter(|line| !line.trim().is_empty())
                .collect();
            eprintln!("prober: {}", message.join("; "));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// clap's error as one line, not its usage block: scripts read the first line of stderr.
fn one_line(error: &clap::Error) -> String {
    let option = error.get(ContextKind::InvalidArg);
    match (error.kind(), std::error::Error::source(error), option) {
        // Our own parsers already say what is wrong with the value.
        (ErrorKind::ValueValidation, Some(reason), Some(option)) => format!("{reason} ({option})"),
        _ => {
            let text = error.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|line| !line.is_empty())
                .map(str::trim)
                .collect();
            let message = message.join(" ");
            format!("{} (see --help)", message.trim_start_matches("error: "))
        }
    }
}

/// Runs the probes; Ok(true) when any reply came.
fn run(cli: &Cli) -> Result<bool> {
    let options = cli.options()?;
    privilege::check()?;
    let session = Session::prepare(options)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    for line in session.header()? {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    if cli.flood {
        let shown = if cli.quiet {
            "no replies will be shown"
        } else {
            "replies will be shown"
        };
        eprintln!("prober in flood mode, {shown}");
    }
    let summary = session.run(&mut out)?;
    eprintln!("{}", output::footer(&cli.host, &summary));
    if let Some(losses) = output::losses(&summary) {
        eprintln!("{losses}");
    }
    if cli.verbose {
        eprintln!(
            "xdp: {} replies matched, {} unmatched packets from the target, {} lost to a full ring buffer",
            summary.matched, summary.unmatched, summary.ring_full
        );
    }
    Ok(summary.received > 0)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn intervals_parse_like_hping3() {
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("u100"), Ok(Duration::from_micros(100)));
        assert!(parse_interval("abc").unwrap_err().contains("interval"));
        assert!(parse_interval("u").is_err());
        assert!(parse_interval("99999999999").is_err());
    }

    #[test]
    fn parse_errors_are_one_line() {
        let error = Cli::try_parse_from(["prober", "-p", "99999", "h"]).unwrap_err();
        assert_eq!(
            one_line(&error),
            "invalid port '99999': expected a number from 1 to 65535 (--destport <PORT>)"
        );
        let error = Cli::try_parse_from(["prober"]).unwrap_err();
        assert_eq!(
            one_line(&error),
            "the following required arguments were not provided: <HOST> (see --help)"
        );
    }

    #[test]
    fn tcp_flags_combine() {
        let cli = Cli::try_parse_from(["prober", "-S", "-A", "-p", "80", "h"]).unwrap();
        assert_eq!(cli.tcp_flags(), TcpFlags(TcpFlags::SYN | TcpFlags::ACK));
        assert_eq!(cli.pacing(), Pacing::Interval(Duration::from_secs(1)));
        let cli = Cli::try_parse_from(["prober", "--flood", "-1", "h"]).unwrap();
        assert_eq!(cli.pacing(), Pacing::Flood);
    }
}
