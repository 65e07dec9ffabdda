//! `prober exporter` run by a test: started on a free loopback port with a config file the test
//! writes, its stderr kept line by line, its HTTP endpoints fetched, its `/metrics` parsed into
//! samples; stopped with SIGTERM (SIGKILL if it does not exit), by PID, when dropped.

use crate::proc::Proc;
use crate::{prober_command, ScratchDir};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// What the exporter writes once it serves, before the bound address.
const LISTENING: &str = "prober exporter: listening on http://";
/// Bound on the exporter's start (attaching XDP, resolving names) and on its exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one HTTP request (a `/probe` of a few probes takes a few seconds at most).
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often stderr is looked at while waiting for a line.
const POLL: Duration = Duration::from_millis(20);

/// A running `prober exporter --listen 127.0.0.1:0`.
pub struct Exporter {
    proc: Proc,
    addr: SocketAddr,
    /// The config file, when started with one (what [`Exporter::reload`] rewrites).
    config: Option<PathBuf>,
    /// How many stderr lines [`Exporter::wait_for_line`] has gone past.
    lines_seen: usize,
    /// Holds the config file; removed after the exporter has stopped (fields drop after `drop`).
    _dir: ScratchDir,
}

/// One sample line of the text exposition: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Exporter {
    /// Writes `config` (YAML), if any, to a scratch file and runs `prober exporter --listen
    /// 127.0.0.1:0 [--config FILE] ARGS`; returns once it has said where it listens (at most
    /// 20 s), or an error with all it wrote if it exits or stays silent.
    pub fn start(args: &[&str], config: Option<&str>) -> Result<Exporter> {
        let dir = ScratchDir::new("exporter")?;
        let mut command_line = vec![
            "exporter".to_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        let config = match config {
            Some(yaml) => {
                let path = dir.path.join("prober.yml");
                fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
                command_line.extend(["--config".to_owned(), path.display().to_string()]);
                Some(path)
            }
            None => None,
        };
        command_line.extend(args.iter().map(|&arg| arg.to_owned()));
        let mut exporter = Exporter {
            proc: Proc::spawn(prober_command(&command_line)),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            config,
            lines_seen: 0,
            _dir: dir,
        };
        let line = exporter.wait_for_line(LISTENING, START_TIMEOUT)?;
        let bound = &line[line.find(LISTENING).expect("the line has it") + LISTENING.len()..];
        exporter.addr = bound
            .trim()
            .parse()
            .map_err(|e| anyhow!("{e}: not ADDR:PORT after `{LISTENING}` in {line:?}"))?;
        Ok(exporter)
    }

    /// The address it serves HTTP on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Sends `sig` to its PID (panics if it has already exited).
    pub fn signal(&mut self, sig: i32) {
        self.proc.signal(sig);
    }

    /// Everything it has written to stderr so far, line by line.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.proc
            .stderr_so_far()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The next stderr line containing `needle` after the lines this has already gone past (the
    /// `listening on` line, and each line returned before), waiting at most `timeout`. An error
    /// with everything it wrote when it exits or no such line comes in time.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = !self.proc.running();
            if exited {
                // Reads stderr to its end: what it wrote before exiting counts.
                self.proc.wait(STOP_TIMEOUT);
            }
            let lines = self.stderr_lines();
            // A last line without its newline may still be being written.
            let complete = if exited || self.proc.stderr_so_far().ends_with('\n') {
                lines.len()
            } else {
                lines.len().saturating_sub(1)
            };
            if let Some(found) = (self.lines_seen..complete).find(|&i| lines[i].contains(needle)) {
                self.lines_seen = found + 1;
                return Ok(lines[found].clone());
            }
            if exited {
                bail!(
                    "waiting for a stderr line with {needle:?}: the exporter exited\n{}",
                    self.proc.dump()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "no stderr line with {needle:?} within {timeout:?}\n{}",
                    self.proc.dump()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Rewrites the config file with `yaml` and sends SIGHUP.
    pub fn reload(&mut self, yaml: &str) -> Result<()> {
        let path = self
            .config
            .as_ref()
            .context("the exporter was started without a config file: nothing to reload")?;
        // Written whole under another name and renamed: the exporter never reads half a file.
        let next = path.with_extension("yml.next");
        fs::write(&next, yaml).with_context(|| format!("writing {}", next.display()))?;
        fs::rename(&next, path).with_context(|| format!("renaming to {}", path.display()))?;
        self.signal(libc::SIGHUP);
        Ok(())
    }

    /// `GET path` (with `Accept: accept` if given): status, Content-Type and body.
    pub fn get(&self, path: &str, accept: Option<&str>) -> Result<(u16, String, String)> {
        http_get(&format!("http://{}{path}", self.addr), &[], accept)
    }

    /// `/metrics` in the text exposition, parsed; panics (with the exporter's stderr) unless it
    /// answers 200 with samples that parse.
    pub fn metrics(&self) -> Vec<Sample> {
        let (status, _, body) = self
            .get("/metrics", None)
            .unwrap_or_else(|e| panic!("GET /metrics: {e:#}\n{}", self.proc.dump()));
        if status != 200 {
            panic!("GET /metrics: HTTP {status}\n{body}\n{}", self.proc.dump());
        }
        parse_samples(&body).unwrap_or_else(|e| panic!("/metrics: {e:#}\n{body}"))
    }

    /// The value of the one sample called `name` whose labels include `labels`; None when there
    /// is none, a panic when several match (the test did not say which it means).
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let samples = self.metrics();
        let matching: Vec<&Sample> = samples
            .iter()
            .filter(|sample| sample.name == name && has_labels(sample, labels))
            .collect();
        match matching.as_slice() {
            [] => None,
            [one] => Some(one.value),
            several => panic!(
                "{} samples {name} with {labels:?}: {several:#?}",
                several.len()
            ),
        }
    }

    /// SIGTERM, then waits (at most 5 s) for its exit, which must be clean (status 0): the exit
    /// status and all it wrote to stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.proc.signal(libc::SIGTERM);
        let finished = self.proc.wait(STOP_TIMEOUT);
        assert!(
            finished.status.success(),
            "prober exporter did not exit cleanly on SIGTERM\n{finished}"
        );
        (finished.status, finished.stderr)
    }
}

impl Drop for Exporter {
    /// SIGTERM so it detaches its programs, SIGKILL (by [`Proc`]'s drop) if it has not exited
    /// within 5 s.
    fn drop(&mut self) {
        if !self.proc.running() {
            return;
        }
        // SAFETY: plain syscall; our own unreaped child, so the PID cannot have been reused.
        unsafe { libc::kill(self.proc.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.proc.running() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }
}

/// Whether `sample` carries each of `labels` with that value.
pub fn has_labels(sample: &Sample, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|&(key, value)| sample.labels.get(key).map(String::as_str) == Some(value))
}

/// `GET url?query` (each pair URL-encoded), with `Accept: accept` if given: status, Content-Type
/// and body, whatever the status. Direct (no proxy from the environment): everything here is on
/// loopback.
pub fn http_get(
    url: &str,
    query: &[(&str, &str)],
    accept: Option<&str>,
) -> Result<(u16, String, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .into();
    let mut request = agent.get(url);
    for &(key, value) in query {
        request = request.query(key, value);
    }
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let mut response = request.call().with_context(|| format!("GET {url}"))?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the body of GET {url}"))?;
    Ok((response.status().as_u16(), content_type, body))
}

/// The sample lines of a Prometheus text exposition or an OpenMetrics text (comments, `# TYPE`,
/// `# EOF` and exemplars skipped): `name{label="value",…} value [timestamp]`.
pub fn parse_samples(text: &str) -> Result<Vec<Sample>> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| parse_sample(line).with_context(|| format!("sample line {line:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Result<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .context("no value")?;
    let name = line[..name_end].to_owned();
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(inside) => parse_labels(inside)?,
        None => (BTreeMap::new(), &line[name_end..]),
    };
    // An OpenMetrics exemplar follows ` # `.
    let rest = rest.split(" # ").next().unwrap_or_default();
    let value = rest.split_whitespace().next().context("no value")?;
    let value = value.parse().map_err(|e| anyhow!("value {value:?}: {e}"))?;
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// `key="value",…}` (the text after `{`): the labels, and what follows the `}`.
fn parse_labels(mut text: &str) -> Result<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (key, after) = text.split_once("=\"").context("label without =\"value\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars
                .next()
                .context("label value without its closing quote")?
            {
                (i, '"') => break i,
                (_, '\\') => match chars.next().context("a \\ ends the line")?.1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        text = &after[end + 1..];
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn sample_lines_parse() {
        let text = "# HELP prober_probes_sent_total Probes sent.\n\
                    # TYPE prober_probes_sent_total counter\n\
                    prober_probes_sent_total{host=\"db \\\"a\\\"\",ip=\"198.18.4.2\",port=\"\"} 12\n\
                    prober_rtt_seconds_bucket{le=\"+Inf\",} 3 1700000000000\n\
                    prober_build_info 1\n\
                    prober_last_rtt_seconds{a=\"x\\\\y\\nz\"} NaN\n\
                    prober_rtt_seconds_bucket{le=\"0.001\"} 2 # {trace_id=\"7\"} 0.0004 1.5\n\
                    # EOF\n";
        let samples = parse_samples(text).unwrap();
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0].name, "prober_probes_sent_total");
        assert_eq!(samples[0].labels["host"], "db \"a\"");
        assert_eq!(samples[0].labels["port"], "");
        assert_eq!(samples[0].value, 12.0);
        assert_eq!(samples[1].labels["le"], "+Inf");
        assert_eq!(samples[1].value, 3.0);
        assert!(samples[2].labels.is_empty());
        assert_eq!(samples[3].labels["a"], "x\\y\nz");
        assert!(samples[3].value.is_nan());
        assert_eq!(
            (samples[4].labels["le"].as_str(), samples[4].value),
            ("0.001", 2.0)
        );
        assert!(has_labels(
            &samples[0],
            &[("ip", "198.18.4.2"), ("port", "")]
        ));
        assert!(!has_labels(&samples[0], &[("ip", "198.18.4.3")]));
    }

    #[test]
    fn bad_sample_lines_are_refused() {
        for line in [
            "prober_x",
            "prober_x{a=\"1\"}",
            "prober_x{a=\"1} 2",
            "prober_x{a} 2",
            "prober_x 1x",
        ] {
            assert!(parse_samples(line).is_err(), "{line:?} parsed");
        }
        assert_eq!(
            parse_samples("x +Inf\ny -Inf").unwrap()[1].value,
            f64::NEG_INFINITY
        );
    }
}
