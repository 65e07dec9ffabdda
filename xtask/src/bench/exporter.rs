//! `cargo xtask bench exporter`: prober exporter against smokeping_prober (Debian's 0.6.1), each
//! probing the same 1 000 addresses (`--targets`) of a throwaway namespace host with ICMP echo
//! every second,
//! plus one more target: the delayed TAP responder, which records every probe's true RTT. One
//! after the other, so that neither's CPU is taken by the other; each run measured from outside:
//! the CPU time (utime + stime of /proc/PID/stat, over the run after a warm-up, so neither's
//! start-up counts), the resident set (VmRSS at the end, VmHWM the peak), and from the one scrape
//! of /metrics before and after the window the probes sent and the replies counted per second,
//! and from the second one the responder's RTT histogram, whose median (interpolated as `histogram_quantile` does) against the median of the
//! true RTTs is the tool's error. Both get the same fine buckets, so that the histograms'
//! resolution is not what is compared. Then each tool's memory per target: its RSS probing
//! [`FEW_TARGETS`] addresses and all of them, with its default buckets.
//!
//! smokeping_prober runs as root runs it, privileged (`protocol: icmp`): one raw ICMP socket per
//! target, each of which the kernel hands a copy of every ICMP packet that arrives, so its work
//! grows with the square of its targets. Its unprivileged mode (ICMP datagram sockets, which the
//! kernel demultiplexes) needs `net.ipv4.ping_group_range`, a setting of the whole host's network
//! namespace that this benchmark does not change.
//!
//! Everything goes to the namespace host's routed block and to the responder's TAP; every
//! target's route is checked to leave by one of those two interfaces before anything is sent.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use prober_tests::exporter::Exporter;
use prober_tests::responder::DelayedResponder;
use prober_tests::smokeping::{
    fine_buckets, get_metrics, median_true_rtt_ns, Metrics, Smokeping, SMOKEPING_RTT,
    SMOKEPING_SENT,
};
use prober_tests::TestHost;

use super::tools::Program;
use super::{check_routes, BenchTool, Setup};
use crate::env;

/// The few targets of the memory runs, against all of them.
pub const FEW_TARGETS: u32 = 10;
const INTERVAL: Duration = Duration::from_secs(1);
/// The responder's hold: a true RTT well above its own wake-up noise (10-130 µs).
const DELAY: Duration = Duration::from_millis(2);
/// From start to the measured window: every pinger has started (smokeping_prober starts them one
/// after the other over one interval) and has sent its first probe.
const WARM_UP: Duration = Duration::from_secs(3);
/// How long each memory run probes.
const MEMORY_RUN: Duration = Duration::from_secs(15);
/// The namespace's nftables counter of the echo requests that reach it: the probes sent, counted
/// from outside the tools.
const ECHO_COUNTER: &str = "bench_echo_requests";
/// How often the resident set is read during a run.
const RSS_EVERY: Duration = Duration::from_secs(1);
/// The aims of issue 13: prober exporter's CPU below smokeping_prober's, and its median error at
/// most a tenth of smokeping_prober's.
const CPU_AIM: f64 = 1.0;
const ERROR_AIM: f64 = 0.1;

/// A tool the benchmark runs.
pub struct ExporterTool {
    name: &'static str,
    program: Program,
    metrics: Names,
}

/// What the tool calls its metrics.
struct Names {
    rtt: &'static str,
    sent: &'static str,
    /// Labels of the responder's RTT histogram besides `ip`.
    labels: &'static [(&'static str, &'static str)],
}

impl BenchTool for ExporterTool {
    fn name(&self) -> &'static str {
        self.name
    }
    fn program(&self) -> &Program {
        &self.program
    }
}

const TOOLS: &[ExporterTool] = &[
    ExporterTool {
        name: "prober",
        program: Program::Prober,
        metrics: Names {
            rtt: "prober_rtt_seconds",
            sent: "prober_probes_sent_total",
            labels: &[("probe", "icmp")],
        },
    },
    ExporterTool {
        name: "smokeping",
        program: Program::Peer {
            command: "prometheus-smokeping-prober",
            package: "prometheus-smokeping-prober",
        },
        metrics: Names {
            rtt: SMOKEPING_RTT,
            sent: SMOKEPING_SENT,
            labels: &[],
        },
    },
];

/// A running tool: where to read its process and its metrics.
enum Running {
    Prober(Exporter),
    Smokeping(Smokeping),
}

impl Running {
    /// `tool` probing `targets` every [`INTERVAL`], with `buckets` (None: the tool's own).
    fn start(
        tool: &ExporterTool,
        prober: &Result<PathBuf>,
        targets: &[IpAddr],
        buckets: Option<&[f64]>,
    ) -> Result<Running> {
        match tool.program {
            Program::Prober => {
                // Why there is no prober to run, if there is none (then PROBER_BIN is unset).
                tool.program.path(prober)?;
                let config = exporter_config(targets, buckets);
                Ok(Running::Prober(Exporter::start(&[], Some(&config))?))
            }
            _ => Ok(Running::Smokeping(Smokeping::start(
                targets, INTERVAL, buckets,
            )?)),
        }
    }

    fn pid(&self) -> i32 {
        match self {
            Running::Prober(exporter) => exporter.pid(),
            Running::Smokeping(smokeping) => smokeping.pid(),
        }
    }

    fn metrics(&self) -> Result<String> {
        match self {
            Running::Prober(exporter) => get_metrics(exporter.addr()),
            Running::Smokeping(smokeping) => smokeping.metrics(),
        }
    }
}

/// prober exporter's configuration: one ICMP target group of `targets`.
fn exporter_config(targets: &[IpAddr], buckets: Option<&[f64]>) -> String {
    let hosts: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let mut yaml = String::new();
    if let Some(buckets) = buckets {
        let bounds: Vec<String> = buckets.iter().map(f64::to_string).collect();
        let _ = writeln!(yaml, "rtt_buckets: [{}]", bounds.join(", "));
    }
    let _ = write!(
        yaml,
        "targets:\n  - hosts: [{}]\n    probe: icmp\n    interval: {}ms\n",
        hosts.join(", "),
        INTERVAL.as_millis()
    );
    yaml
}

/// What one run of one tool cost and measured.
struct Run {
    targets: usize,
    /// From spawn to serving /metrics.
    start_secs: f64,
    /// How long the first scrape (in the window) took to answer.
    scrape_secs: f64,
    /// utime + stime over the measured window, and its length.
    cpu_secs: f64,
    window_secs: f64,
    /// VmRSS at the end of the window, and VmHWM then (the peak since start), KiB.
    rss_kib: u64,
    peak_rss_kib: u64,
    /// Probes sent and replies counted per second over the window, summed over every target,
    /// from a scrape before and one after it; and the echo requests that reached the namespace
    /// per second, from its counter read then.
    sent_per_sec: f64,
    arrived_per_sec: f64,
    replies_per_sec: f64,
    /// The responder's RTTs: the histogram's median and the true median, µs, and how many
    /// replies the histogram counts against the probes the responder answered.
    responder: Option<Accuracy>,
}

struct Accuracy {
    median_us: f64,
    true_median_us: f64,
    replies: f64,
    answered: usize,
}

impl Accuracy {
    fn error_us(&self) -> f64 {
        self.median_us - self.true_median_us
    }
}

/// Runs the exporter benchmark on `target_count` namespace addresses (more than [`FEW_TARGETS`]),
/// each tool's run `seconds` long, with `only` the tools named there (prober, smokeping) or both.
pub fn run(target_count: u32, seconds: u64, only: &[String]) -> Result<()> {
    let Setup {
        tools,
        prober,
        _safety_net,
        ..
    } = Setup::new("exporter", TOOLS, only)?;
    let window = Duration::from_secs(seconds);
    if let Ok(bin) = &prober {
        // The testbed's exporter harness runs $PROBER_BIN. Set before this process has threads
        // (the responder's, the harness's readers) that could read the environment meanwhile.
        std::env::set_var("PROBER_BIN", bin);
    }

    // Dropped on every way out of this function: the namespace, its routes and the TAP go.
    let mut bed = TestHost::new().context("creating the bench host")?;
    let addresses = bed
        .add_routed_addresses(target_count)
        .context("adding the targets")?;
    bed.add_counter(ECHO_COUNTER, "icmp type echo-request")
        .context("counting echo requests in the bench host")?;
    let responder =
        DelayedResponder::start(DELAY, &[]).context("starting the delayed responder")?;
    check_routes(&ip_addrs(&addresses), &bed.host_if)?;
    check_routes(&[responder.target().into()], responder.interface())?;
    let (ns, host_if, tap) = (
        bed.ns.clone(),
        bed.host_if.clone(),
        responder.interface().to_owned(),
    );
    let mut targets = ip_addrs(&addresses);
    targets.push(responder.target().into());
    let us = Duration::from_micros;
    let buckets = fine_buckets(
        DELAY - us(10),
        &[(us(5), 110), (us(50), 80), (us(1000), 26)],
    );
    println!(
        "\nbed: {target_count} addresses {} - {} in namespace {ns} via {host_if}; responder {} on \
         {tap}, holding each probe {DELAY:?}; {} buckets from {} s to {} s",
        addresses[0],
        addresses[addresses.len() - 1],
        responder.target(),
        buckets.len(),
        buckets[0],
        buckets[buckets.len() - 1],
    );

    let mut rows: Vec<(&ExporterTool, Result<Run>)> = Vec::new();
    for tool in &tools {
        if env::interrupted() {
            break;
        }
        println!(
            "\n{}: {} targets every {INTERVAL:?} for {seconds} s after {WARM_UP:?}",
            tool.name,
            targets.len()
        );
        responder.clear();
        let run = measure(
            tool,
            &prober,
            &bed,
            &targets,
            Some(&buckets),
            window,
            Some(&responder),
        );
        if let Err(err) = &run {
            println!("{}: {err:#}", tool.name);
        }
        rows.push((tool, run));
    }
    let mut memory: Vec<(&ExporterTool, Result<(Run, Run)>)> = Vec::new();
    for tool in &tools {
        if env::interrupted() {
            break;
        }
        println!(
            "\n{}: memory with {FEW_TARGETS} and with {target_count} targets, its default buckets, {MEMORY_RUN:?} each",
            tool.name
        );
        let few = ip_addrs(&addresses[..FEW_TARGETS as usize]);
        let all = ip_addrs(&addresses);
        let runs = measure(tool, &prober, &bed, &few, None, MEMORY_RUN, None).and_then(|few| {
            Ok((
                few,
                measure(tool, &prober, &bed, &all, None, MEMORY_RUN, None)?,
            ))
        });
        memory.push((tool, runs));
    }
    drop(responder);
    drop(bed);

    let mut report = String::new();
    write_table(&mut report, &rows, target_count, seconds);
    write_memory(&mut report, &memory);
    println!("{report}");
    print_legend(target_count);
    super::check_cleanup(&ns, &host_if)?;
    if env::interrupted() {
        bail!("interrupted (the bed is removed)");
    }
    Ok(())
}

fn ip_addrs(addresses: &[Ipv4Addr]) -> Vec<IpAddr> {
    addresses.iter().map(|&a| a.into()).collect()
}

/// Starts `tool` on `targets`, lets it warm up, measures it for `window`, scrapes it once and
/// stops it; with `responder`, also its error on the responder's RTTs.
fn measure(
    tool: &ExporterTool,
    prober: &Result<PathBuf>,
    bed: &TestHost,
    targets: &[IpAddr],
    buckets: Option<&[f64]>,
    window: Duration,
    responder: Option<&DelayedResponder>,
) -> Result<Run> {
    let spawned = Instant::now();
    let running = Running::start(tool, prober, targets, buckets)?;
    let start_secs = spawned.elapsed().as_secs_f64();
    let pid = running.pid();
    thread::sleep(WARM_UP);
    let names = &tool.metrics;
    let replies_name = format!("{}_count", names.rtt);
    let counts = |metrics: &Metrics| (metrics.sum(names.sent), metrics.sum(&replies_name));
    // A scrape's counts are those of when it was asked for (a long one answers seconds later),
    // so the window runs from the first scrape's request to the second's.
    let before = Mark::take(pid, bed)?;
    let first = Metrics::parse(&running.metrics()?)?;
    let scrape_secs = before.at.elapsed().as_secs_f64();
    while before.at.elapsed() < window && !env::interrupted() {
        thread::sleep(RSS_EVERY.min(window.saturating_sub(before.at.elapsed())));
        // A tool that died says so here rather than after the window.
        status_kib(pid, "VmRSS").with_context(|| format!("{} died", tool.name))?;
    }
    let after = Mark::take(pid, bed)?;
    let (rss_kib, peak_rss_kib) = (status_kib(pid, "VmRSS")?, status_kib(pid, "VmHWM")?);
    // Also the responder's record: as of the scrape's request, as its histogram is.
    let answered = responder.map(DelayedResponder::answered);
    let metrics = Metrics::parse(&running.metrics()?)?;
    drop(running);
    let window_secs = (after.at - before.at).as_secs_f64();
    let ((sent_before, replies_before), (sent_after, replies_after)) =
        (counts(&first), counts(&metrics));
    let responder = match (responder, answered) {
        (Some(responder), Some(held)) => {
            let ip = responder.target().to_string();
            let labels: Vec<(&str, &str)> = std::iter::once(("ip", ip.as_str()))
                .chain(names.labels.iter().copied())
                .collect();
            let histogram = metrics.histogram(names.rtt, &labels)?;
            Some(Accuracy {
                median_us: histogram
                    .quantile(0.5)
                    .context("no reply from the responder")?
                    * 1e6,
                true_median_us: median_true_rtt_ns(&held)
                    .context("the responder answered no probe")?
                    as f64
                    / 1e3,
                replies: histogram.count(),
                answered: held.len(),
            })
        }
        _ => None,
    };
    let run = Run {
        targets: targets.len(),
        start_secs,
        scrape_secs,
        cpu_secs: after.cpu_secs - before.cpu_secs,
        window_secs,
        rss_kib,
        peak_rss_kib,
        sent_per_sec: (sent_after - sent_before) / window_secs,
        arrived_per_sec: (after.arrived - before.arrived) as f64 / window_secs,
        replies_per_sec: (replies_after - replies_before) / window_secs,
        responder,
    };
    println!(
        "{}: serving after {:.1} s, a scrape in {:.1} s; {:.2} s CPU in {:.1} s, RSS {:.1} MiB (peak {:.1}), {:.0} sent/s ({:.0} arrived/s), {:.0} replies/s{}",
        tool.name,
        run.start_secs,
        run.scrape_secs,
        run.cpu_secs,
        run.window_secs,
        mib(run.rss_kib),
        mib(run.peak_rss_kib),
        run.sent_per_sec,
        run.arrived_per_sec,
        run.replies_per_sec,
        run.responder
            .as_ref()
            .map(|a| format!(", responder median error {:.1} µs", a.error_us()))
            .unwrap_or_default()
    );
    Ok(run)
}

/// One end of the measured window: when, the tool's CPU time then, and the echo requests that
/// had reached the namespace.
struct Mark {
    at: Instant,
    cpu_secs: f64,
    arrived: u64,
}

impl Mark {
    fn take(pid: i32, bed: &TestHost) -> Result<Mark> {
        Ok(Mark {
            arrived: bed.counter_packets(ECHO_COUNTER)?,
            cpu_secs: cpu_secs(pid)?,
            at: Instant::now(),
        })
    }
}

/// utime + stime of `pid` (all its threads), seconds: fields 14 and 15 of /proc/PID/stat, after
/// the command name (which may hold spaces, so the fields are counted from its closing paren).
fn cpu_secs(pid: i32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("parsing {path}: {stat}"))?;
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks as f64 / per_sec as f64)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `<field>:   1234 kB` line of /proc/PID/status, KiB.
fn status_kib(pid: i32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn write_table(
    out: &mut String,
    rows: &[(&ExporterTool, Result<Run>)],
    target_count: u32,
    seconds: u64,
) {
    let _ = writeln!(
        out,
        "\n== {target_count} namespace addresses + the responder, ICMP echo every {INTERVAL:?}, {seconds} s each ==",
    );
    let _ = writeln!(
        out,
        "{:10} {:>7} {:>7} {:>8} {:>7} {:>9} {:>9} {:>7} {:>7} {:>8} {:>9} {:>11} {:>11} {:>10}",
        "tool",
        "targets",
        "start s",
        "scrape s",
        "sent/s",
        "arrived/s",
        "replies/s",
        "CPU s",
        "CPU %",
        "RSS MiB",
        "peak MiB",
        "true median",
        "hist median",
        "error"
    );
    let mut notes = Vec::new();
    for (tool, run) in rows {
        let run = match run {
            Ok(run) => run,
            Err(err) => {
                let _ = writeln!(out, "{:10} (no run)", tool.name);
                notes.push(format!("{}: {err:#}", tool.name));
                continue;
            }
        };
        let (truth, median, error) = match &run.responder {
            Some(a) => {
                if a.replies < a.answered as f64 - 2.0 {
                    notes.push(format!(
                        "{}: its histogram counts {} replies from the responder, which answered {}",
                        tool.name, a.replies, a.answered
                    ));
                }
                (
                    format!("{:.1} µs", a.true_median_us),
                    format!("{:.1} µs", a.median_us),
                    format!("{:.1} µs", a.error_us()),
                )
            }
            None => ("-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:10} {:>7} {:>7.1} {:>8.1} {:>7.0} {:>9.0} {:>9.0} {:>7.2} {:>7.1} {:>8.1} {:>9.1} {:>11} {:>11} {:>10}",
            tool.name,
            run.targets,
            run.start_secs,
            run.scrape_secs,
            run.sent_per_sec,
            run.arrived_per_sec,
            run.replies_per_sec,
            run.cpu_secs,
            100.0 * run.cpu_secs / run.window_secs,
            mib(run.rss_kib),
            mib(run.peak_rss_kib),
            truth,
            median,
            error
        );
    }
    let find = |name: &str| {
        rows.iter()
            .find(|(tool, _)| tool.name == name)
            .and_then(|(_, run)| run.as_ref().ok())
    };
    if let (Some(p), Some(s)) = (find("prober"), find("smokeping")) {
        let cpu = (p.cpu_secs / p.window_secs) / (s.cpu_secs / s.window_secs);
        let _ = writeln!(
            out,
            "  prober / smokeping: CPU {cpu:.3} (aim: below {CPU_AIM}: {}), RSS {:.2}, peak RSS {:.2}",
            verdict(cpu < CPU_AIM),
            p.rss_kib as f64 / s.rss_kib as f64,
            p.peak_rss_kib as f64 / s.peak_rss_kib as f64,
        );
        if let (Some(pa), Some(sa)) = (&p.responder, &s.responder) {
            let ratio = pa.error_us().abs() / sa.error_us().abs();
            let _ = writeln!(
                out,
                "  prober / smokeping: |median error| {ratio:.4} (aim: at most {ERROR_AIM}: {})",
                verdict(ratio <= ERROR_AIM)
            );
        }
    }
    for note in notes {
        let _ = writeln!(out, "  note: {note}");
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn write_memory(out: &mut String, memory: &[(&ExporterTool, Result<(Run, Run)>)]) {
    if memory.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n== memory per target: VmRSS after {MEMORY_RUN:?} with {FEW_TARGETS} targets and with all, default buckets =="
    );
    for (tool, runs) in memory {
        let _ = match runs {
            Ok((few, all)) => writeln!(
                out,
                "{:10} {:.1} MiB with {}, {:.1} MiB with {}: {:.2} KiB per target",
                tool.name,
                mib(few.rss_kib),
                few.targets,
                mib(all.rss_kib),
                all.targets,
                (all.rss_kib as f64 - few.rss_kib as f64) / (all.targets - few.targets) as f64
            ),
            Err(err) => writeln!(out, "{:10} (no run): {err:#}", tool.name),
        };
    }
}

fn print_legend(target_count: u32) {
    println!(
        "\
columns:
  start s        from spawn to serving /metrics (smokeping_prober starts its pingers first, one
                 after the other)
  scrape s       how long the scrape at the window's start took to answer (the fine buckets
                 make an exposition of tens of MB); its cost is in the window's CPU
  sent/s, replies/s  probes sent and replies counted (the RTT histograms' counts) per second,
                 summed over every target, from the scrapes asked for at the window's start
                 and end (a scrape's counts are those of when it was asked for)
  arrived/s      echo requests that reached the namespace per second over the window (its
                 nftables counter): the probes sent to its addresses, counted from outside
  CPU s          utime + stime of the tool's process (every thread) over the measured window
                 (from the first scrape's request to the second's), from /proc/PID/stat; not
                 the kernel's softirq work for its packets
  CPU %          of one core: CPU s / the window
  RSS MiB        VmRSS at the end of the window; peak MiB: VmHWM then (start-up included)
  true median    median of the responder's true RTTs for the tool's probes (request entering
                 its TAP to the reply's write), over every probe since the tool's start; the
                 histogram's median is over the same probes
  hist median    median of the tool's RTT histogram of the responder, interpolated within its
                 bucket as histogram_quantile does (both tools get the same buckets: 5 µs wide
                 above the delay, then 50 µs, then 1 ms)
  error          hist median - true median
under the table: prober's figures over smokeping_prober's, and the aims of issue 13 (CPU below
  smokeping_prober's; |median error| at most a tenth of smokeping_prober's)
memory per target: (VmRSS with {target_count} targets - VmRSS with {FEW_TARGETS}) / {}",
        target_count - FEW_TARGETS
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_the_name() {
        // A name with spaces and a paren; utime 1500, stime 250.
        let stat = "4242 (prober (x) y) S 1 4242 4242 0 -1 4194560 2000 0 0 0 1500 250 0 0 20 0 9 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(1750));
        assert_eq!(parse_cpu_ticks("4242 (prober) S 1"), None);
    }
}
