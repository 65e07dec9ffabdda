//! The `prober` command: hping3's options in, hping3's output out.
use std::{
    fs::File,
    io::{self, BufWriter, IsTerminal as _, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use clap::{
    error::{ContextKind, ErrorKind},
    ArgAction, Parser,
};
use prober::{
    output::{self, RttPrecision},
    ports::{self, PortList},
    privilege,
    probe::TcpFlags,
    results::{self, Format, ResultWriter},
    route::{self, Interface},
    session::{Options, Pacing, ProbeKind, Session},
    stats::RttStats,
    sweep::{self, Shard, Sweep, SweepOptions},
    targets::{self, TargetSet},
};

/// Exit status for errors; 0 and 1 mean "a reply came" and "none came", as in hping3.
const EXIT_ERROR: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "prober",
    version,
    about = "hping3-compatible TCP and ICMP prober with kernel (XDP) reply timestamps",
    disable_version_flag = true,
    override_usage = "prober host [options]\n       prober -p PORTS|--scan PORTS target... [sweep options]"
)]
struct Cli {
    /// Target host name or IPv4 address; sweeps take several, and CIDR blocks
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<String>,

    /// Stop after sending (and receiving) COUNT packets; 0: until interrupted
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
    /// Verbose: hping3's extra reply fields, set-up details and RTT percentiles
    #[arg(short = 'V', long, help_heading = "Base options")]
    verbose: bool,
    /// RTT decimals: hping3 (0.1 ms) or us (0.001 ms)
    #[arg(
        long,
        value_name = "PRECISION",
        default_value = "hping3",
        help_heading = "Base options"
    )]
    rtt_precision: RttPrecision,
    /// Draw a histogram of the RTTs at the end
    #[arg(long, help_heading = "Base options")]
    histogram: bool,
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

    /// Destination port; a list or range (22,80,8000-8100, all, known) sweeps them
    #[arg(short = 'p', long = "destport", value_name = "PORTS", value_parser = PortList::parse, help_heading = "TCP")]
    port: Option<PortList>,
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

    /// Sweep these ports with SYN probes (hping3's scan mode): 1-1024,8080 | all | known
    #[arg(
        short = '8',
        long = "scan",
        value_name = "PORTS",
        help_heading = "Sweep"
    )]
    scan: Option<String>,
    /// Probes per second [default: 10000]
    #[arg(long, value_name = "PPS", value_parser = parse_rate, conflicts_with = "flood", help_heading = "Sweep")]
    rate: Option<u64>,
    /// Extra passes that re-probe what has not answered
    #[arg(long, default_value_t = 0, value_name = "N", help_heading = "Sweep")]
    retries: u32,
    /// Seconds to wait for late replies after the last probe (and between passes)
    #[arg(long, value_name = "SECONDS", value_parser = parse_wait, help_heading = "Sweep")]
    wait: Option<Duration>,
    /// Seed of the probe order, for a reproducible sweep
    #[arg(long, value_name = "N", help_heading = "Sweep")]
    seed: Option<u64>,
    /// This machine's share of the sweep: shard I of N (needs --seed)
    #[arg(long, value_name = "I/N", value_parser = parse_shard, help_heading = "Sweep")]
    shard: Option<Shard>,
    /// Never probe these addresses or CIDR blocks
    #[arg(
        long,
        value_name = "CIDR,...",
        value_delimiter = ',',
        help_heading = "Sweep"
    )]
    exclude: Vec<String>,
    /// Never probe the addresses or CIDR blocks listed in FILE (one a line, # comments)
    #[arg(long, value_name = "FILE", help_heading = "Sweep")]
    exclude_file: Option<PathBuf>,
    /// Result format [default: table for one host, list for several]
    #[arg(
        short = 'o',
        long = "output-format",
        value_name = "FORMAT",
        help_heading = "Sweep"
    )]
    output_format: Option<Format>,
    /// Skip the interface's queueing discipline (PACKET_QDISC_BYPASS): cheaper per probe,
    /// but probes are dropped, not queued, when the driver's queue is full
    #[arg(long, help_heading = "Sweep")]
    qdisc_bypass: bool,
    /// Write results to FILE instead of standard output
    #[arg(long = "output", value_name = "FILE", help_heading = "Sweep")]
    output: Option<PathBuf>,
}

fn parse_count(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("invalid count '{text}': expected a number (0: until interrupted)"))
}

fn parse_rate(text: &str) -> Result<u64, String> {
    parse_positive(text, "rate", "a positive number of probes per second")
}

fn parse_positive(text: &str, what: &str, expected: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(format!("invalid {what} '{text}': expected {expected}")),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    ports::parse_port(text)
        .ok_or_else(|| format!("invalid port '{text}': expected a number from 1 to 65535"))
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.0..=86_400.0).contains(&seconds) => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(format!(
            "invalid wait '{text}': expected seconds from 0 to 86400"
        )),
    }
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    // Far more machines than anyone has, and small enough that position arithmetic never
    // overflows.
    const MOST_SHARDS: u64 = 1 << 32;
    let invalid =
        || format!("invalid shard '{text}': expected I/N with 1 <= I <= N <= {MOST_SHARDS}");
    let (index, count) = text.split_once('/').ok_or_else(invalid)?;
    match (index.parse::<u64>(), count.parse::<u64>()) {
        (Ok(index), Ok(count)) if (1..=count).contains(&index) && count <= MOST_SHARDS => {
            Ok(Shard {
                index: index - 1,
                count,
            })
        }
        _ => Err(invalid()),
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

    /// Whether this is a sweep rather than hping3's one-target ping: several ports or
    /// targets, or any option that only sweeps have.
    fn is_sweep(&self) -> bool {
        self.scan.is_some()
            || self
                .port
                .as_ref()
                .is_some_and(|ports| ports.single().is_none())
            || self.targets.len() > 1
            || self.targets.iter().any(|target| target.contains('/'))
            || self.rate.is_some()
            || self.retries > 0
            || self.wait.is_some()
            || self.seed.is_some()
            || self.shard.is_some()
            || !self.exclude.is_empty()
            || self.exclude_file.is_some()
            || self.output_format.is_some()
            || self.output.is_some()
            || self.qdisc_bypass
    }

    fn options(&self) -> Result<Options> {
        let [target] = &self.targets[..] else {
            unreachable!("several targets make a sweep");
        };
        let kind = if self.icmp {
            ProbeKind::IcmpEcho
        } else {
            let Some(port) = self.port.as_ref().and_then(PortList::single) else {
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
            target_name: target.clone(),
            target: route::resolve(target)?,
            kind,
            count: self.count.filter(|&count| count > 0),
            pacing: self.pacing(),
            ttl: self.ttl,
            interface: self.interface()?,
            quiet: self.quiet,
            verbose: self.verbose,
            rtt_precision: self.rtt_precision,
        })
    }

    fn interface(&self) -> Result<Option<Interface>> {
        self.interface
            .as_deref()
            .map(Interface::by_name)
            .transpose()
    }

    fn sweep_options(&self) -> Result<SweepOptions> {
        let single_target_options = [
            (self.icmp, "-1"),
            (self.count.is_some(), "-c"),
            (self.interval.is_some(), "-i"),
            (self.fast, "--fast"),
            (self.faster, "--faster"),
            (self.keep, "-k"),
        ];
        if let Some((_, option)) = single_target_options.iter().find(|(given, _)| *given) {
            bail!("{option} has no meaning in a sweep (sweeps send one TCP SYN per port and host; see --rate and --retries)");
        }
        let flags = self.tcp_flags();
        if flags.0 & !TcpFlags::SYN != 0 {
            bail!(
                "sweeps send SYN probes only: drop -{}",
                TcpFlags(flags.0 & !TcpFlags::SYN).letters()
            );
        }
        let ports = match (&self.scan, &self.port) {
            (Some(_), Some(_)) => bail!("give the ports once: --scan PORTS or -p PORTS"),
            (Some(spec), None) => PortList::parse(spec)?,
            (None, Some(ports)) => ports.clone(),
            (None, None) => bail!("a sweep needs ports: -p PORTS or --scan PORTS"),
        };
        if self.shard.is_some_and(|shard| shard.count > 1) && self.seed.is_none() {
            bail!("--shard needs --seed: every shard must walk the same order");
        }
        let mut excluded: Vec<String> = self
            .exclude
            .iter()
            .map(|block| block.trim().to_string())
            .collect();
        if let Some(path) = &self.exclude_file {
            excluded.extend(targets::read_exclude_file(path)?);
        }
        Ok(SweepOptions {
            targets: TargetSet::new(&self.targets, &excluded)?,
            ports,
            rate: if self.flood {
                None
            } else {
                Some(self.rate.unwrap_or(DEFAULT_RATE))
            },
            retries: self.retries,
            wait: self.wait.unwrap_or(DEFAULT_WAIT),
            seed: self.seed,
            shard: self.shard.unwrap_or(Shard { index: 0, count: 1 }),
            base_port: self.base_port.unwrap_or(sweep::DEFAULT_BASE_PORT),
            ttl: self.ttl,
            window: self.window,
            interface: self.interface()?,
            qdisc_bypass: self.qdisc_bypass,
            status_line: !self.quiet && io::stderr().is_terminal(),
        })
    }
}

/// zmap's default: polite enough for shared networks, fast enough for a /24.
const DEFAULT_RATE: u64 = 10_000;
/// Late replies on a LAN come within milliseconds; across the Internet, raise it.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);

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
    if cli.is_sweep() {
        return run_sweep(cli);
    }
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
    let target = &cli.targets[0];
    eprintln!("{}", output::footer(target, &summary, cli.rtt_precision));
    if let Some(losses) = output::losses(&summary) {
        eprintln!("{losses}");
    }
    print_percentiles(cli, &summary.rtt);
    if cli.verbose {
        eprintln!(
            "xdp: {} replies matched, {} unmatched packets from the target, {} lost to a full ring buffer",
            summary.matched, summary.unmatched, summary.ring_full
        );
    }
    print_histogram(cli, &summary.rtt);
    Ok(summary.received > 0)
}

/// What `-V` adds right after the footer.
fn print_percentiles(cli: &Cli, rtt: &RttStats) {
    if cli.verbose && rtt.count() > 0 {
        eprintln!("{}", output::rtt_percentiles(rtt));
    }
}

/// What `--histogram` adds at the very end.
fn print_histogram(cli: &Cli, rtt: &RttStats) {
    if cli.histogram {
        eprintln!("{}", output::rtt_histogram(rtt));
    }
}

fn run_sweep(cli: &Cli) -> Result<bool> {
    let options = cli.sweep_options()?;
    let one_host = options.targets.len() == 1;
    let format = cli.output_format.unwrap_or(if one_host {
        Format::Table
    } else {
        Format::List
    });
    if format == Format::Table && !one_host {
        bail!("-o table shows one host; for several use -o list, json or csv");
    }
    privilege::check()?;
    let (port_spec, port_count) = (options.ports.spec().to_string(), options.ports.len());
    let first_target = options.targets.first();
    let sweep = Sweep::prepare(options)?;
    let out: Box<dyn Write> = match &cli.output {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).with_context(|| {
                format!("creating the output file {}", path.display())
            })?))
        }
        None => Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
    };
    let mut results = ResultWriter::new(format, cli.verbose, out)?;
    if cli.verbose {
        eprintln!("{}", sweep.describe());
    }
    if format == Format::Table {
        eprintln!(
            "{}",
            results::table_header(
                &cli.targets[0],
                first_target.expect("a sweep has targets"),
                &port_spec,
                port_count
            )
        );
    }
    let summary = sweep.run(&mut results)?;
    if format == Format::Table && !summary.interrupted {
        eprintln!("All replies received. Done.");
    }
    eprintln!("{}", output::sweep_footer(&summary));
    print_percentiles(cli, &summary.rtt);
    print_histogram(cli, &summary.rtt);
    Ok(summary.answered() > 0)
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
            "invalid port '99999': expected ports from 1 to 65535 as in 80, 1-1024,8080, all or known (--destport <PORTS>)"
        );
        let error = Cli::try_parse_from(["prober"]).unwrap_err();
        assert_eq!(
            one_line(&error),
            "the following required arguments were not provided: <TARGET>... (see --help)"
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

    #[test]
    fn sweeps_are_told_apart_from_single_probes() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["prober"], args].concat()).unwrap();
        assert!(!parse(&["-S", "-p", "80", "h"]).is_sweep());
        assert!(!parse(&["-1", "h"]).is_sweep());
        assert!(parse(&["--scan", "1-1024", "h"]).is_sweep());
        assert!(parse(&["-p", "22,80", "h"]).is_sweep());
        assert!(parse(&["-p", "80", "h1", "h2"]).is_sweep());
        assert!(parse(&["-p", "80", "198.18.4.0/24"]).is_sweep());
        assert!(parse(&["-p", "80", "h", "-o", "json"]).is_sweep());
        assert!(parse(&["-p", "80", "h", "--rate", "5"]).is_sweep());
    }

    #[test]
    fn shards_and_waits_parse() {
        assert_eq!(parse_shard("2/3"), Ok(Shard { index: 1, count: 3 }));
        for bad in ["0/2", "3/2", "1", "a/b", "1/0", "1/4611686018427387904"] {
            assert!(
                parse_shard(bad).unwrap_err().contains("invalid shard"),
                "{bad}"
            );
        }
        assert_eq!(parse_wait("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_wait("-1").is_err());
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn sweeps_refuse_single_target_options() {
        let options = |args: &[&str]| {
            Cli::try_parse_from([&["prober"], args].concat())
                .unwrap()
                .sweep_options()
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert!(options(&["-1", "--scan", "80", "198.18.4.2"]).starts_with("-1 has no meaning"));
        assert!(options(&["-A", "--scan", "80", "198.18.4.2"]).contains("SYN probes only"));
        assert!(options(&["--shard", "1/2", "--scan", "80", "198.18.4.2"]).contains("needs --seed"));
        assert!(options(&["-p", "80", "--scan", "80", "198.18.4.2"]).contains("ports once"));
    }
}
