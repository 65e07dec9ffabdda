//! `prober exporter`'s command line, parsed into the exporter's [`CommandLine`]: a config file,
//! the listening address, and targets probed the same way (hping3's `-1`, or `-S -p PORT`).
use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Result};
use clap::Parser;

use crate::{
    bpf::AttachMode,
    exporter::config::{self, CommandLine, Probe, TargetSpec},
};

/// The name it is run by, `prober exporter`, as the first argument.
pub const SUBCOMMAND: &str = "exporter";

#[derive(Debug, Parser)]
#[command(
    name = "prober exporter",
    bin_name = "prober exporter",
    version,
    about = "Kernel-timed TCP SYN and ICMP round trips for Prometheus: GET /metrics, /probe, /",
    after_help = "Example: prober exporter -1 198.18.0.2 2001:db8::2 --interval 1s --listen :9374\n\
                  SIGHUP reloads --config; SIGINT and SIGTERM stop."
)]
pub struct ExporterCli {
    /// YAML: listen, rtt_buckets, resolve_interval, targets (hosts, probe, port, interval, timeout)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// HOST:PORT, or :PORT for every address [default: :9374, or the file's listen]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Probe the HOSTs with ICMP echo requests (the default)
    #[arg(short = '1', long = "icmp")]
    icmp: bool,
    /// Probe the HOSTs with TCP SYNs to -p's port
    #[arg(short = 'S', long = "syn")]
    syn: bool,
    /// The HOSTs' TCP port (implies -S)
    #[arg(short = 'p', long = "destport", value_name = "PORT")]
    port: Option<u16>,
    /// How often each HOST is probed
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    interval: Option<Duration>,
    /// A probe unanswered by then is lost [default: the interval, at most 10s]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    timeout: Option<Duration>,
    /// Where the reply matcher runs: generic or native XDP (in the driver: the most exact
    /// arrival times; can reset a NIC's link) [default: TCX ingress]
    #[arg(long, value_name = "MODE")]
    xdp_mode: Option<AttachMode>,
    /// Targets probed besides the file's
    #[arg(value_name = "HOST")]
    hosts: Vec<String>,
}

impl ExporterCli {
    pub fn into_command_line(self) -> Result<CommandLine> {
        let probe = match (self.icmp, self.syn || self.port.is_some()) {
            (true, true) => bail!("-1 probes ICMP: it takes neither -S nor -p"),
            (_, true) => Probe::TcpSyn,
            (_, false) => Probe::Icmp,
        };
        let port = probe.checked_port(self.port)?;
        let (interval, timeout) = config::timing(self.interval, self.timeout)?;
        if self.hosts.is_empty() && (self.icmp || self.syn || self.port.is_some()) {
            bail!("-1, -S and -p choose how the HOSTs are probed: name some");
        }
        Ok(CommandLine {
            config_file: self.config,
            listen: self.listen,
            xdp_mode: self.xdp_mode,
            targets: self
                .hosts
                .into_iter()
                .map(|host| TargetSpec {
                    host,
                    probe,
                    port,
                    interval,
                    timeout,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<CommandLine> {
        let cli = ExporterCli::try_parse_from(
            std::iter::once("prober exporter").chain(args.iter().copied()),
        )?;
        cli.into_command_line()
    }

    #[test]
    fn hosts_are_probed_as_the_options_say() {
        let icmp = parse(&["198.18.0.2", "2001:db8::2", "--interval", "200ms"]).expect("valid");
        assert_eq!(icmp.targets.len(), 2);
        assert_eq!(icmp.targets[0].probe, Probe::Icmp);
        assert_eq!(icmp.targets[0].interval, Duration::from_millis(200));
        let syn = parse(&["-S", "-p", "5432", "198.18.0.2"]).expect("valid");
        assert_eq!(
            (syn.targets[0].probe, syn.targets[0].port),
            (Probe::TcpSyn, Some(5432))
        );
        let port_alone = parse(&["-p", "80", "198.18.0.2"]).expect("valid");
        assert_eq!(port_alone.targets[0].probe, Probe::TcpSyn);
    }

    #[test]
    fn contradictions_are_refused() {
        for (args, reason) in [
            (&["-1", "-p", "80", "h"][..], "neither -S nor -p"),
            (&["-S", "h"][..], "needs a port"),
            (
                &["--timeout", "2s", "--interval", "1s", "h"][..],
                "at most the interval",
            ),
            (&["-S", "-p", "80"][..], "name some"),
        ] {
            let error = parse(args).expect_err(&format!("{args:?}"));
            assert!(format!("{error:#}").contains(reason), "{args:?}: {error:#}");
        }
    }
}
