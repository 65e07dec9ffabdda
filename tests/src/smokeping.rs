//! Debian's smokeping_prober (`prometheus-smokeping-prober` 0.6.1), the exporter prober is measured
//! against: started on a free loopback port with a configuration file of our own, killed by PID
//! when dropped; and the histograms of a Prometheus text exposition (its and prober exporter's),
//! with their quantiles as PromQL's `histogram_quantile` computes them; and what a comparison of
//! the two against the [`DelayedResponder`](crate::responder::DelayedResponder) takes: the same
//! fine buckets for both ([`fine_buckets`]) and the responder's true RTTs ([`median_true_rtt_ns`]).
//!
//! Its targets always come from our own file: without `--config.file` it reads
//! /etc/prometheus/smokeping_prober.yml, which Debian ships with `localhost` in it. Its pingers are
//! privileged (`protocol: icmp`, a raw ICMP socket each), as root runs them: the unprivileged
//! datagram sockets need `net.ipv4.ping_group_range`, which is empty here.

use crate::proc::{Finished, Proc};
use crate::responder::Held;
use crate::ScratchFile;
use anyhow::{bail, Context, Result};
use prometheus_parse::{Scrape, Value};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const SMOKEPING_BIN: &str = "/usr/bin/prometheus-smokeping-prober";
/// Its RTT histogram, labelled `host` (as configured) and `ip`.
pub const SMOKEPING_RTT: &str = "smokeping_response_duration_seconds";
/// Its counter of echo requests sent, labelled like [`SMOKEPING_RTT`].
pub const SMOKEPING_SENT: &str = "smokeping_requests_total";
/// How long it may take to serve /metrics: it starts its pingers one after the other, spread
/// over one `--ping.interval`, and listens only after the last; with a thousand privileged
/// pingers busying both CPUs of this machine that took from 43 s to more than 120 s.
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one HTTP request may take: a scrape of a thousand fine histograms is tens of MB,
/// which smokeping_prober, its CPUs taken by a thousand privileged pingers, did not answer
/// within 30 s (nor prober exporter within 15 s while its engine took a core).
const HTTP_TIMEOUT: Duration = Duration::from_secs(180);

/// A running smokeping_prober. Dropping it SIGKILLs it (by PID) and removes its configuration.
pub struct Smokeping {
    proc: Proc,
    address: SocketAddr,
    _config: ScratchFile,
}

impl Smokeping {
    /// Starts it pinging `hosts` (numeric, so nothing is looked up) every `interval`, its RTT
    /// histogram with the upper bounds `buckets` (seconds, ascending; None: its own, from 50 µs
    /// doubling), serving on a free port of 127.0.0.1; returns once /metrics answers.
    pub fn start(
        hosts: &[IpAddr],
        interval: Duration,
        buckets: Option<&[f64]>,
    ) -> Result<Smokeping> {
        if !Path::new(SMOKEPING_BIN).is_file() {
            bail!("{SMOKEPING_BIN} is missing: apt-get install prometheus-smokeping-prober");
        }
        let config = ScratchFile::new("smokeping.yml", &config_yaml(hosts, interval))?;
        let address = free_loopback_port()?;
        let mut cmd = Command::new(SMOKEPING_BIN);
        cmd.arg(format!("--config.file={}", config.path.display()))
            .arg(format!("--web.listen-address={address}"));
        if let Some(buckets) = buckets {
            cmd.arg(format!("--buckets={}", bucket_list(buckets)));
        }
        cmd
            // Only spreads the pingers' start over this (its config's interval is their own).
            .arg(format!("--ping.interval={}", go_duration(interval)))
            .arg("--log.level=warn");
        let mut proc = Proc::spawn(cmd);
        wait_until_serving(&mut proc, address)?;
        Ok(Smokeping {
            proc,
            address,
            _config: config,
        })
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Where it serves.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// GET /metrics: its text exposition.
    pub fn metrics(&self) -> Result<String> {
        get_metrics(self.address)
    }

    /// Stops it with SIGTERM; what it wrote.
    pub fn stop(mut self) -> Finished {
        self.proc.signal(libc::SIGTERM);
        self.proc.wait(Duration::from_secs(10))
    }
}

/// Polls /metrics until it answers; an error if the process exits first or takes too long.
fn wait_until_serving(proc: &mut Proc, address: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while get_metrics(address).is_err() {
        if !proc.running() {
            bail!(
                "smokeping_prober exited before serving /metrics:\n{}",
                proc.wait(Duration::ZERO)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "smokeping_prober did not serve http://{address}/metrics within {START_TIMEOUT:?}\n{}",
                proc.dump()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Its configuration: one target group, privileged ICMP over IPv4 or IPv6 as each host is.
fn config_yaml(hosts: &[IpAddr], interval: Duration) -> String {
    let mut yaml = String::from("targets:\n");
    for (network, of_family) in [("ip4", true), ("ip6", false)] {
        let group: Vec<String> = hosts
            .iter()
            .filter(|host| host.is_ipv4() == of_family)
            .map(|host| format!("\"{host}\""))
            .collect();
        if !group.is_empty() {
            // Writing to a String cannot fail.
            let _ = write!(
                yaml,
                "- hosts: [{}]\n  interval: {}\n  network: {network}\n  protocol: icmp\n",
                group.join(", "),
                go_duration(interval)
            );
        }
    }
    yaml
}

/// A duration as Go's time.ParseDuration reads it (whole microseconds are enough here).
pub fn go_duration(duration: Duration) -> String {
    format!("{}us", duration.as_micros())
}

/// Upper bounds as `--buckets` takes them: comma-separated, each printed exactly.
fn bucket_list(buckets: &[f64]) -> String {
    let bounds: Vec<String> = buckets.iter().map(f64::to_string).collect();
    bounds.join(",")
}

/// A port of 127.0.0.1 nobody listens on (just now: smokeping_prober binds it a moment later).
fn free_loopback_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// GET http://`address`/metrics: the body of a 200 answer, however large (a thousand targets'
/// fine histograms are tens of MB, past ureq's default limit of 10 MB), else an error.
pub fn get_metrics(address: SocketAddr) -> Result<String> {
    let url = format!("http://{address}/metrics");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .with_context(|| format!("reading the body of GET {url}"))
}

/// A Prometheus text exposition, parsed once.
pub struct Metrics {
    scrape: Scrape,
}

impl Metrics {
    pub fn parse(text: &str) -> Result<Metrics> {
        let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .context("parsing a Prometheus text exposition")?;
        Ok(Metrics { scrape })
    }

    /// The value of the one sample `name` whose labels include `labels` (a histogram's name is
    /// without `_bucket`); an error unless exactly one matches.
    fn only(&self, name: &str, labels: &[(&str, &str)]) -> Result<&Value> {
        let found: Vec<&Value> = self
            .scrape
            .samples
            .iter()
            .filter(|sample| {
                sample.metric == name
                    && labels
                        .iter()
                        .all(|(label, value)| sample.labels.get(label) == Some(value))
            })
            .map(|sample| &sample.value)
            .collect();
        match found[..] {
            [value] => Ok(value),
            _ => bail!(
                "want exactly one {name} with labels {labels:?}, found {}",
                found.len()
            ),
        }
    }

    /// The histogram `name` whose labels include `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Result<Histogram> {
        let Value::Histogram(counts) = self.only(name, labels)? else {
            bail!("{name} {labels:?} is not a histogram");
        };
        let mut buckets: Vec<(f64, f64)> = counts.iter().map(|c| (c.less_than, c.count)).collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
            bail!("histogram {name} {labels:?} has no +Inf bucket: {buckets:?}");
        }
        Ok(Histogram { buckets })
    }

    /// The sum of the counters, gauges or untyped samples `name` (over all their labels).
    pub fn sum(&self, name: &str) -> f64 {
        self.scrape
            .samples
            .iter()
            .filter(|sample| sample.metric == name)
            .map(|sample| match sample.value {
                Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => value,
                _ => 0.0,
            })
            .sum()
    }

    /// The value of the counter, gauge or untyped sample `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        match self.only(name, labels)? {
            Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => Ok(*value),
            _ => bail!("{name} {labels:?} is not a single number"),
        }
    }
}

/// One histogram of an exposition: its cumulative buckets (upper bound, count), ascending, the
/// last one `+Inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// Observations: the `+Inf` bucket's count.
    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// The `q` quantile (0 to 1) as PromQL's `histogram_quantile` estimates it: linear
    /// interpolation inside the bucket where the rank falls, the first bucket starting at 0, the
    /// second-highest bound when the rank falls in `+Inf`. None without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let observations = self.count();
        if observations <= 0.0 || self.buckets.len() < 2 {
            return None;
        }
        let rank = q * observations;
        let index = self.buckets.iter().position(|&(_, count)| count >= rank)?;
        if index == self.buckets.len() - 1 {
            return Some(self.buckets[index - 1].0);
        }
        let (end, count) = self.buckets[index];
        if index == 0 && end <= 0.0 {
            return Some(end);
        }
        let (start, below) = match index {
            0 => (0.0, 0.0),
            _ => self.buckets[index - 1],
        };
        Some(start + (end - start) * (rank - below) / (count - below))
    }
}

/// Upper bounds in seconds from `start` on: each `(step, count)` adds `count` bounds `step` apart
/// after the last one. Whole nanoseconds, so that both tools read the same decimals.
pub fn fine_buckets(start: Duration, runs: &[(Duration, u32)]) -> Vec<f64> {
    let mut bound = start;
    let mut buckets = vec![start];
    for &(step, count) in runs {
        for _ in 0..count {
            bound += step;
            buckets.push(bound);
        }
    }
    buckets.iter().map(|b| b.as_nanos() as f64 / 1e9).collect()
}

/// The median of the true RTTs of `held` (nanoseconds): each from the request's entering the TAP
/// to the reply's being written ([`Held::ideal_rtt_ns`]), or the responder's own hold where the
/// TAP's stamp was missed (a little shorter). None for no probes.
pub fn median_true_rtt_ns<'a>(held: impl IntoIterator<Item = &'a Held>) -> Option<u64> {
    let mut rtts: Vec<u64> = held
        .into_iter()
        .map(|h| h.ideal_rtt_ns().unwrap_or_else(|| h.hold_ns()))
        .collect();
    rtts.sort_unstable();
    rtts.get(rtts.len() / 2).copied()
}

#[cfg(test)]
mod unit {
    use super::*;

    fn histogram(buckets: &[(f64, f64)]) -> Histogram {
        Histogram {
            buckets: buckets.to_vec(),
        }
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket_like_histogram_quantile() {
        // 10 observations: 2 up to 1, 6 more up to 2, 2 more up to 4.
        let h = histogram(&[(1.0, 2.0), (2.0, 8.0), (4.0, 10.0), (f64::INFINITY, 10.0)]);
        // Rank 5 is the 3rd of the 6 in (1, 2].
        assert_eq!(h.quantile(0.5), Some(1.5));
        // Rank 1 is half of the first bucket, which starts at 0.
        assert_eq!(h.quantile(0.1), Some(0.5));
        assert_eq!(h.quantile(0.9), Some(3.0));
        assert_eq!(h.count(), 10.0);
    }

    #[test]
    fn quantile_in_the_inf_bucket_is_the_highest_finite_bound() {
        let h = histogram(&[(1.0, 1.0), (2.0, 2.0), (f64::INFINITY, 10.0)]);
        assert_eq!(h.quantile(0.5), Some(2.0));
        assert_eq!(
            histogram(&[(1.0, 0.0), (f64::INFINITY, 0.0)]).quantile(0.5),
            None
        );
    }

    #[test]
    fn histograms_and_counters_are_found_by_their_labels() {
        let text = "\
# HELP smokeping_response_duration_seconds A histogram.
# TYPE smokeping_response_duration_seconds histogram
smokeping_response_duration_seconds_bucket{host=\"a\",ip=\"198.18.4.2\",le=\"0.001\"} 1
smokeping_response_duration_seconds_bucket{host=\"a\",ip=\"198.18.4.2\",le=\"0.002\"} 3
smokeping_response_duration_seconds_bucket{host=\"a\",ip=\"198.18.4.2\",le=\"+Inf\"} 4
smokeping_response_duration_seconds_sum{host=\"a\",ip=\"198.18.4.2\"} 0.006
smokeping_response_duration_seconds_count{host=\"a\",ip=\"198.18.4.2\"} 4
smokeping_response_duration_seconds_bucket{host=\"b\",ip=\"198.18.4.6\",le=\"0.001\"} 0
smokeping_response_duration_seconds_bucket{host=\"b\",ip=\"198.18.4.6\",le=\"0.002\"} 0
smokeping_response_duration_seconds_bucket{host=\"b\",ip=\"198.18.4.6\",le=\"+Inf\"} 0
# TYPE smokeping_requests_total counter
smokeping_requests_total{host=\"a\",ip=\"198.18.4.2\"} 5
";
        let metrics = Metrics::parse(text).unwrap();
        let a = metrics
            .histogram(SMOKEPING_RTT, &[("ip", "198.18.4.2")])
            .unwrap();
        assert_eq!(
            a.buckets,
            [(0.001, 1.0), (0.002, 3.0), (f64::INFINITY, 4.0)]
        );
        assert!(metrics.histogram(SMOKEPING_RTT, &[]).is_err(), "two match");
        assert!(metrics
            .histogram(SMOKEPING_RTT, &[("ip", "198.18.4.3")])
            .is_err());
        assert!(metrics.histogram(SMOKEPING_SENT, &[]).is_err(), "a counter");
        assert_eq!(
            metrics.value(SMOKEPING_SENT, &[("host", "a")]).unwrap(),
            5.0
        );
        let count = format!("{SMOKEPING_RTT}_count");
        assert_eq!(metrics.value(&count, &[("host", "a")]).unwrap(), 4.0);
        assert_eq!(metrics.sum(&count), 4.0);
    }

    #[test]
    fn fine_buckets_step_from_the_start() {
        let us = Duration::from_micros;
        assert_eq!(
            fine_buckets(us(2000), &[(us(1), 2), (us(10), 2)]),
            [0.002, 0.002001, 0.002002, 0.002012, 0.002022]
        );
    }

    #[test]
    fn config_groups_hosts_by_family() {
        let hosts: [IpAddr; 3] = [
            "198.18.4.2".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            "198.18.4.6".parse().unwrap(),
        ];
        assert_eq!(
            config_yaml(&hosts, Duration::from_millis(200)),
            "targets:\n\
             - hosts: [\"198.18.4.2\", \"198.18.4.6\"]\n  interval: 200000us\n  network: ip4\n  protocol: icmp\n\
             - hosts: [\"2001:db8::2\"]\n  interval: 200000us\n  network: ip6\n  protocol: icmp\n"
        );
        assert_eq!(
            bucket_list(&[5e-5, 0.0001, 0.0021]),
            "0.00005,0.0001,0.0021"
        );
    }
}
