//! The exporter's configuration: a YAML file, the command line's targets, or both, read into
//! validated values. Everything is checked before anything is attached, and on SIGHUP before
//! the running configuration is replaced.
use std::{collections::HashSet, fmt, path::Path, time::Duration};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

/// The address `--listen` and `listen:` default to: every address, port 9374.
pub const DEFAULT_LISTEN: &str = ":9374";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const MIN_INTERVAL: Duration = Duration::from_millis(10);
const MAX_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// What a target is probed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// A SYN: SYN-ACK (open) or RST (closed) is a reply, silence is loss.
    TcpSyn,
    /// An echo request (ICMPv6's for IPv6 targets).
    Icmp,
}

impl Probe {
    /// Its name in configs, URLs and the `probe` label.
    pub fn name(self) -> &'static str {
        match self {
            Probe::TcpSyn => "tcp-syn",
            Probe::Icmp => "icmp",
        }
    }

    pub fn parse(text: &str) -> Result<Probe> {
        match text {
            "tcp-syn" => Ok(Probe::TcpSyn),
            "icmp" => Ok(Probe::Icmp),
            other => bail!("unknown probe '{other}': tcp-syn or icmp"),
        }
    }

    /// The port a target of this probe names: TCP needs one, ICMP has none.
    pub fn checked_port(self, port: Option<u16>) -> Result<Option<u16>> {
        match (self, port) {
            (Probe::TcpSyn, Some(0)) => bail!("port 0 cannot be probed"),
            (Probe::TcpSyn, Some(port)) => Ok(Some(port)),
            (Probe::TcpSyn, None) => bail!("probe tcp-syn needs a port"),
            (Probe::Icmp, None) => Ok(None),
            (Probe::Icmp, Some(_)) => bail!("probe icmp takes no port"),
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One host probed one way, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// As written: a name or an address literal.
    pub host: String,
    pub probe: Probe,
    pub port: Option<u16>,
    pub interval: Duration,
    /// A probe not answered by then is lost.
    pub timeout: Duration,
}

/// A whole configuration, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: String,
    /// The RTT histogram's classic buckets (upper bounds, seconds).
    pub rtt_buckets: Vec<f64>,
    pub resolve_interval: Duration,
    pub targets: Vec<TargetSpec>,
}

/// What the command line adds to, or overrides in, the file.
#[derive(Clone, Debug, Default)]
pub struct CommandLine {
    pub config_file: Option<std::path::PathBuf>,
    pub listen: Option<String>,
    /// `--xdp-mode`: None for TCX ingress.
    pub xdp_mode: Option<crate::bpf::AttachMode>,
    pub targets: Vec<TargetSpec>,
}

impl CommandLine {
    /// Reads the file, if there is one, and merges the command line into it.
    pub fn load(&self) -> Result<Config> {
        let file = match &self.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = match &self.config_file {
            Some(path) => file
                .validated()
                .with_context(|| path.display().to_string())?,
            None => file.validated()?,
        };
        if let Some(listen) = &self.listen {
            config.listen = listen.clone();
        }
        config.targets.extend(self.targets.iter().cloned());
        refuse_duplicates(&config.targets)?;
        Ok(config)
    }
}

/// The default buckets: 5 µs doubling to about 10.5 s. smokeping_prober starts at 50 µs;
/// kernel timestamps resolve well below that.
pub fn default_buckets() -> Vec<f64> {
    prometheus_client::metrics::histogram::exponential_buckets(5e-6, 2.0, 22).collect()
}

/// A target's interval and timeout, checked: the timeout defaults to the interval (at most
/// [`MAX_TIMEOUT`]) and may not exceed it, so each target has one probe in flight at a time.
pub fn timing(
    interval: Option<Duration>,
    timeout: Option<Duration>,
) -> Result<(Duration, Duration)> {
    let interval = interval.unwrap_or(DEFAULT_INTERVAL);
    if interval < MIN_INTERVAL {
        bail!("interval {} is below the least, 10ms", show(interval));
    }
    let timeout = timeout.unwrap_or(interval.min(MAX_TIMEOUT));
    if timeout.is_zero() || timeout > interval || timeout > MAX_TIMEOUT {
        bail!(
            "timeout {} must be above 0, at most the interval ({}) and at most 10s",
            show(timeout),
            show(interval)
        );
    }
    Ok((interval, timeout))
}

/// A duration as Prometheus writes them: `1s`, `200ms`, `1m`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    humantime::parse_duration(text.trim())
        .map_err(|error| anyhow::anyhow!("bad duration '{text}': {error} (e.g. 1s, 200ms, 1m)"))
}

pub fn show(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    rtt_buckets: Option<Vec<f64>>,
    resolve_interval: Option<String>,
    #[serde(default)]
    targets: Vec<FileTargets>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTargets {
    hosts: Vec<String>,
    probe: String,
    port: Option<u16>,
    interval: Option<String>,
    timeout: Option<String>,
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // serde's message names the line and column; one line of it.
    serde_norway::from_str(&text).map_err(|error| {
        anyhow::anyhow!(
            "{}: {}",
            path.display(),
            error.to_string().replace('\n', " ")
        )
    })
}

impl FileConfig {
    fn validated(self) -> Result<Config> {
        let rtt_buckets = match self.rtt_buckets {
            Some(buckets) => {
                let increasing = buckets.windows(2).all(|pair| pair[0] < pair[1]);
                if buckets.is_empty()
                    || !increasing
                    || buckets.iter().any(|b| !b.is_finite() || *b <= 0.0)
                {
                    bail!("rtt_buckets must be positive seconds in increasing order");
                }
                buckets
            }
            None => default_buckets(),
        };
        let resolve_interval = match self.resolve_interval {
            Some(text) => parse_duration(&text)?,
            None => DEFAULT_RESOLVE_INTERVAL,
        };
        if resolve_interval < Duration::from_secs(1) {
            bail!("resolve_interval must be at least 1s");
        }
        let mut targets = Vec::new();
        for (n, group) in self.targets.into_iter().enumerate() {
            let at = || format!("targets[{n}]");
            let probe = Probe::parse(&group.probe).with_context(at)?;
            let port = probe.checked_port(group.port).with_context(at)?;
            let interval = group.interval.as_deref().map(parse_duration).transpose();
            let timeout = group.timeout.as_deref().map(parse_duration).transpose();
            let (interval, timeout) =
                timing(interval.with_context(at)?, timeout.with_context(at)?).with_context(at)?;
            if group.hosts.is_empty() {
                bail!("{}: hosts is empty", at());
            }
            targets.extend(group.hosts.into_iter().map(|host| TargetSpec {
                host,
                probe,
                port,
                interval,
                timeout,
            }));
        }
        Ok(Config {
            listen: self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            rtt_buckets,
            resolve_interval,
            targets,
        })
    }
}

fn refuse_duplicates(targets: &[TargetSpec]) -> Result<()> {
    let mut seen = HashSet::new();
    for target in targets {
        if !seen.insert((&target.host, target.probe, target.port)) {
            let port = target
                .port
                .map(|port| format!(" port {port}"))
                .unwrap_or_default();
            bail!("{} {}{port} is configured twice", target.host, target.probe);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config> {
        let file: FileConfig = serde_norway::from_str(yaml)?;
        let config = file.validated()?;
        refuse_duplicates(&config.targets)?;
        Ok(config)
    }

    #[test]
    fn the_issues_example_reads_as_written() {
        let config = parse(
            "listen: \":9374\"\ntargets:\n  - hosts: [198.18.0.2, db.example]\n    probe: tcp-syn\n    port: 5432\n    interval: 1s\n  - hosts: [2001:db8::2]\n    probe: icmp\n    interval: 200ms\n",
        )
        .expect("valid");
        assert_eq!(config.targets.len(), 3);
        assert_eq!(config.targets[1].host, "db.example");
        assert_eq!(config.targets[1].port, Some(5432));
        let icmp = &config.targets[2];
        assert_eq!((icmp.probe, icmp.port), (Probe::Icmp, None));
        assert_eq!(icmp.interval, Duration::from_millis(200));
        assert_eq!(
            icmp.timeout, icmp.interval,
            "the timeout defaults to the interval"
        );
        assert_eq!(config.rtt_buckets.len(), 22);
        assert!((config.rtt_buckets[0] - 5e-6).abs() < 1e-12);
        assert!(*config.rtt_buckets.last().unwrap() > 10.0);
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        for (yaml, reason) in [
            (
                "targets:\n  - hosts: [a]\n    probe: tcp-syn\n",
                "needs a port",
            ),
            (
                "targets:\n  - hosts: [a]\n    probe: icmp\n    port: 1\n",
                "takes no port",
            ),
            (
                "targets:\n  - hosts: [a]\n    probe: udp\n",
                "unknown probe",
            ),
            (
                "targets:\n  - hosts: [a]\n    probe: icmp\n    interval: 1x\n",
                "bad duration",
            ),
            (
                "targets:\n  - hosts: [a]\n    probe: icmp\n    interval: 1s\n    timeout: 2s\n",
                "at most the interval",
            ),
            (
                "targets:\n  - hosts: [a, a]\n    probe: icmp\n",
                "configured twice",
            ),
            (
                "targets:\n  - hosts: [a]\n    probe: icmp\n    colour: red\n",
                "unknown field",
            ),
            ("rtt_buckets: [2, 1]\n", "increasing"),
            (
                "targets:\n  - hosts: [a]\n    probe: icmp\n    interval: 1ms\n",
                "10ms",
            ),
        ] {
            let error = parse(yaml).expect_err(yaml);
            let chain = format!("{error:#}");
            assert!(chain.contains(reason), "{yaml:?}: {chain}");
        }
    }
}
