//! A real Prometheus server (Debian's `prometheus`, /usr/bin/prometheus) run by a test: scraping
//! every second what the test's scrape configs name, on a free loopback port, its TSDB in a
//! scratch directory; queried through its HTTP API. Killed by PID and its directory removed when
//! dropped.

use crate::exporter::http_get;
use crate::proc::Proc;
use crate::ScratchDir;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
/// Bound on start-up until `/-/ready` answers 200 (the TSDB is new and empty).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);
/// Tries at a free port: another process may take the one picked before Prometheus binds it.
const PORT_TRIES: usize = 3;

/// One series of an instant vector: its labels (with `__name__` when it has one) and value.
pub type Series = (BTreeMap<String, String>, f64);

/// A running Prometheus server.
pub struct Prometheus {
    proc: Proc,
    addr: SocketAddr,
    /// Holds prometheus.yml and the TSDB; fields drop after the process is killed.
    _dir: ScratchDir,
}

impl Prometheus {
    /// Prometheus scraping and evaluating every second what `scrape_configs` (the YAML list
    /// under `scrape_configs:`, items at column 0: `- job_name: …`) names.
    pub fn start(scrape_configs: &str) -> Result<Prometheus> {
        Prometheus::launch(scrape_configs, &[])
    }

    /// [`Prometheus::start`] with native histograms on: it then asks targets for the protobuf
    /// exposition first and keeps the native histograms it finds there.
    pub fn start_with_native_histograms(scrape_configs: &str) -> Result<Prometheus> {
        Prometheus::launch(scrape_configs, &["--enable-feature=native-histograms"])
    }

    fn launch(scrape_configs: &str, extra_args: &[&str]) -> Result<Prometheus> {
        if !std::path::Path::new(PROMETHEUS_BIN).is_file() {
            bail!(
                "{PROMETHEUS_BIN} is missing: `cargo xtask bootstrap` installs Debian's prometheus"
            );
        }
        let dir = ScratchDir::new("prometheus")?;
        let config = dir.path.join("prometheus.yml");
        let yaml = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n{scrape_configs}\n"
        );
        fs::write(&config, yaml).with_context(|| format!("writing {}", config.display()))?;
        let tsdb = dir.path.join("tsdb");
        let mut last_failure = String::new();
        for _ in 0..PORT_TRIES {
            let addr = free_loopback_port()?;
            let mut command = Command::new(PROMETHEUS_BIN);
            command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", tsdb.display()))
                .arg(format!("--web.listen-address={addr}"))
                .args(extra_args);
            let mut proc = Proc::spawn(command);
            match wait_ready(&mut proc, addr)? {
                true => {
                    return Ok(Prometheus {
                        proc,
                        addr,
                        _dir: dir,
                    })
                }
                false => last_failure = proc.dump(),
            }
            if !last_failure.contains("address already in use") {
                break;
            }
        }
        bail!("prometheus did not start\n{last_failure}")
    }

    /// The address of its web UI and API.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The instant vector `expr` evaluates to now (`/api/v1/query`).
    pub fn query(&self, expr: &str) -> Result<Vec<Series>> {
        self.evaluate(expr, None)
    }

    /// The instant vector `expr` evaluates to at `at`: queries that must see the same scrapes
    /// (one metric's samples against another's) name one time.
    pub fn query_at(&self, expr: &str, at: SystemTime) -> Result<Vec<Series>> {
        let seconds = at.duration_since(UNIX_EPOCH)?.as_secs_f64();
        self.evaluate(expr, Some(&format!("{seconds:.3}")))
    }

    /// `/api/v1/query` of `expr` at `time` (Unix seconds; None: now).
    fn evaluate(&self, expr: &str, time: Option<&str>) -> Result<Vec<Series>> {
        let url = format!("http://{}/api/v1/query", self.addr);
        let mut params = vec![("query", expr)];
        params.extend(time.map(|time| ("time", time)));
        let (status, _, body) = http_get(&url, &params, None)?;
        let answer: Value = serde_json::from_str(&body)
            .with_context(|| format!("query {expr:?}: HTTP {status}, not JSON: {body}"))?;
        if answer["status"] != "success" {
            bail!("query {expr:?}: HTTP {status}: {body}");
        }
        if answer["data"]["resultType"] != "vector" {
            bail!("query {expr:?} is not an instant vector: {body}");
        }
        answer["data"]["result"]
            .as_array()
            .with_context(|| format!("query {expr:?}: no result list: {body}"))?
            .iter()
            .map(|series| parse_series(series).with_context(|| format!("query {expr:?}: {series}")))
            .collect()
    }

    /// Queries `expr` every 250 ms until `done` holds for its result (that result), for at most
    /// `timeout` (then an error with the last result and Prometheus's log).
    pub fn wait_for(
        &self,
        expr: &str,
        done: impl Fn(&[Series]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Series>> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(expr)?;
            if done(&result) {
                return Ok(result);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{expr:?} was still {result:?} after {timeout:?}\n{}",
                    self.proc.dump()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Its targets as `/api/v1/targets` shows them (scrape URL, health, last error): for a
    /// failure message that says why a series is missing.
    pub fn targets(&self) -> String {
        let url = format!("http://{}/api/v1/targets", self.addr);
        match http_get(&url, &[], None) {
            Ok((_, _, body)) => body,
            Err(e) => format!("{e:#}"),
        }
    }
}

/// One element of a query's `result`: `{"metric": {…}, "value": [time, "value"]}`.
fn parse_series(series: &Value) -> Result<Series> {
    let labels = series["metric"]
        .as_object()
        .context("no metric")?
        .iter()
        .map(|(key, value)| {
            let value = value
                .as_str()
                .context("a label value that is not a string")?;
            Ok((key.clone(), value.to_owned()))
        })
        .collect::<Result<_>>()?;
    // A native histogram comes as "histogram", not "value": query a function of it instead.
    let value = series["value"][1]
        .as_str()
        .context("no [time, \"value\"] (a native histogram? query histogram_count() of it)")?;
    let value = value.parse().with_context(|| format!("value {value:?}"))?;
    Ok((labels, value))
}

/// A loopback address with a port the kernel has just handed out (and taken back).
fn free_loopback_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Waits until Prometheus at `addr` answers `/-/ready` with 200 (true), or it exits (false);
/// an error after [`READY_TIMEOUT`].
fn wait_ready(proc: &mut Proc, addr: SocketAddr) -> Result<bool> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let url = format!("http://{addr}/-/ready");
    loop {
        if !proc.running() {
            proc.wait(Duration::from_secs(1));
            return Ok(false);
        }
        if matches!(http_get(&url, &[], None), Ok((200, _, _))) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            bail!(
                "prometheus not ready within {READY_TIMEOUT:?}\n{}",
                proc.dump()
            );
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn query_results_parse() {
        let series: Value = serde_json::from_str(
            r#"{"metric":{"__name__":"up","job":"prober"},"value":[1700000000.5,"0.25"]}"#,
        )
        .unwrap();
        let (labels, value) = parse_series(&series).unwrap();
        assert_eq!(labels["job"], "prober");
        assert_eq!(labels["__name__"], "up");
        assert_eq!(value, 0.25);
        let native: Value = serde_json::from_str(
            r#"{"metric":{},"histogram":[1700000000.5,{"count":"3","sum":"0.1"}]}"#,
        )
        .unwrap();
        assert!(parse_series(&native).is_err());
    }

    /// The harness against the real server: one Prometheus scrapes another, which shows up as
    /// `up` 1 with its address as the instance.
    #[test]
    fn prometheus_scrapes_prometheus() {
        let scraped = Prometheus::start("").unwrap();
        let scraper = Prometheus::start(&format!(
            "- job_name: other\n  static_configs:\n    - targets: [\"{}\"]",
            scraped.addr()
        ))
        .unwrap();
        assert_ne!(scraped.addr(), scraper.addr());
        let up = scraper
            .wait_for(
                "up{job=\"other\"}",
                |up| up.len() == 1,
                Duration::from_secs(20),
            )
            .unwrap();
        assert_eq!(up[0].1, 1.0, "{}", scraper.targets());
        assert_eq!(up[0].0["instance"], scraped.addr().to_string());
        assert!(scraper.query("up{").is_err());
    }
}
