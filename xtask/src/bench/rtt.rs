//! `cargo xtask bench rtt`: how close each tool's RTT comes to the truth. prober, hping3 and
//! nping probe a responder that holds every probe for a known delay before answering, and which
//! records, per probe, when the request entered its TAP (the kernel's copy to a packet socket),
//! when it read it and when it wrote the answer (CLOCK_MONOTONIC). A tool's error for a probe
//! is its reported RTT − the true RTT at the wire (answer written − request entered the TAP):
//! what the tool adds on top of the time the target really took.
//!
//! Everything goes to the responder's TAP, from its host-side address, out of that interface:
//! every tool is told both (and addresses are numeric), so none routes, resolves or leaves it.
//!
//! What each tool's output takes (see tools.rs):
//! - prober and hping3 print `seq=N` per reply, for the probe from base source port + N, and its
//!   RTT: prober to 1 µs with `--rtt-precision us`, hping3 to 0.1 ms.
//! - nping prints no per-probe RTT: only SENT and RCVD lines with its clock since start to
//!   0.1 ms. Its probes all share one source port and one sequence number, so it probes a range
//!   of destination ports to tell them apart, and the RTT is RCVD − SENT of the same probe. What
//!   it sends is not always what it was asked for: 0.7.93 builds the next probe into the buffer
//!   a pending send still points to, so one probe in four or five goes out as a copy of the next
//!   one (that port or sequence number is then probed twice, the one before it never). The
//!   probe is therefore taken from what each line says, not from its place, and a probe sent
//!   twice pairs with its replies in order.

mod errors;
mod tools;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use prober_tests::responder::DelayedResponder;

use super::measure;
use super::shell_words;
use super::tools::Program;
use super::{BenchTool, Setup};
use crate::env;
use errors::{Record, Summary};
use tools::{Invocation, Protocol, RttTool, NPING_PORT_BASE, OPEN_PORT, TOOLS};

/// The responder's hold times.
const DELAYS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_micros(200),
    Duration::from_millis(2),
    Duration::from_millis(20),
];
const PROBES: u16 = 1000;
/// The shortest interval nping can pace (whole milliseconds).
const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// At the longest delay, a probe every delay / IN_FLIGHT: a few probes in flight at once (which
/// every tool matches by sequence), and the run takes seconds instead of the 20 s of one at a
/// time.
const IN_FLIGHT: u32 = 4;
/// Time bound of a run beyond its probes' own duration: start-up and each tool's final wait.
const BOUND_SLACK: Duration = Duration::from_secs(10);
/// After a run, beyond the delay: the responder has written every answer it still held (a tool
/// may exit before the last ones are due), so its records are complete and none lands in the
/// next run's.
const SETTLE: Duration = Duration::from_millis(300);

impl BenchTool for RttTool {
    fn name(&self) -> &'static str {
        self.name
    }
    fn program(&self) -> &Program {
        &self.program
    }
}

/// One table row: a tool's run at one delay and protocol.
struct Row<'a> {
    tool: &'a RttTool,
    summary: Option<Summary>,
    /// What went wrong, or what does not add up.
    notes: Vec<String>,
}

/// Runs the RTT benchmark with `only` the tools named there, or all when it is empty.
pub fn run(only: &[String]) -> Result<()> {
    let Setup {
        tools,
        prober,
        workdir,
        _safety_net,
    } = Setup::new("rtt", TOOLS, only)?;

    let open_ports: Vec<u16> = std::iter::once(OPEN_PORT)
        .chain(NPING_PORT_BASE..NPING_PORT_BASE + PROBES)
        .collect();
    // Dropped on every way out of this function, which stops it and deletes its TAP.
    let responder = DelayedResponder::start(Duration::ZERO, &open_ports)
        .context("starting the delayed responder")?;
    let interface = responder.interface().to_owned();
    println!(
        "\nresponder: {} on {interface} (host side {}); open: {OPEN_PORT} and {NPING_PORT_BASE}-{} (nping's)",
        responder.target(),
        responder.host_addr(),
        NPING_PORT_BASE + PROBES - 1,
    );
    println!("tool outputs: {}", workdir.display());

    let mut report = String::new();
    'delays: for delay in DELAYS {
        for protocol in [Protocol::TcpSyn, Protocol::IcmpEcho] {
            let interval = interval(delay);
            let title = format!(
                "delay {} · {} · {PROBES} probes, one every {}",
                label(delay),
                match protocol {
                    Protocol::TcpSyn => format!("TCP SYN to port {OPEN_PORT}"),
                    Protocol::IcmpEcho => "ICMP echo".to_owned(),
                },
                label(interval),
            );
            println!("\n== {title} ==");
            responder.set_delay(delay);
            let rows: Vec<Row> = tools
                .iter()
                .map(|tool| {
                    let inv = Invocation {
                        protocol,
                        probes: PROBES,
                        interval,
                        interface: &interface,
                        host_addr: responder.host_addr(),
                        target: responder.target(),
                    };
                    run_tool(&responder, tool, &inv, delay, &workdir, &prober)
                })
                .collect();
            write_table(&mut report, &title, &rows);
            if env::interrupted() {
                break 'delays;
            }
        }
    }
    drop(responder);
    println!("{report}");
    print_legend();
    check_cleanup(&interface)?;
    if env::interrupted() {
        bail!("interrupted (the responder is removed)");
    }
    Ok(())
}

/// MIN_INTERVAL, or at long delays delay / IN_FLIGHT.
fn interval(delay: Duration) -> Duration {
    (delay / IN_FLIGHT).max(MIN_INTERVAL)
}

/// `200 µs`, `2 ms`.
fn label(duration: Duration) -> String {
    let us = duration.as_micros();
    if us >= 1000 && us.is_multiple_of(1000) {
        format!("{} ms", us / 1000)
    } else {
        format!("{us} µs")
    }
}

/// Runs one tool once against the responder and sets its RTTs against the responder's records.
fn run_tool<'a>(
    responder: &DelayedResponder,
    tool: &'a RttTool,
    inv: &Invocation,
    delay: Duration,
    workdir: &Path,
    prober: &Result<PathBuf>,
) -> Row<'a> {
    let mut row = Row {
        tool,
        summary: None,
        notes: Vec::new(),
    };
    if env::interrupted() {
        row.notes.push("not run: interrupted".to_owned());
        return row;
    }
    let prepared = tool
        .program
        .path(prober)
        .and_then(|program| Ok((program, (tool.args)(inv)?)));
    let (program, args) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            println!("{}: not run: {err:#}", tool.name);
            row.notes.push(format!("not run: {err:#}"));
            return row;
        }
    };
    let protocol = match inv.protocol {
        Protocol::TcpSyn => "tcp",
        Protocol::IcmpEcho => "icmp",
    };
    let stdout_file = workdir.join(format!(
        "{}-{protocol}-{}us.stdout",
        tool.name,
        delay.as_micros()
    ));
    println!("$ {} {}", program.display(), shell_words(&args));
    responder.clear();
    let limit = inv.interval * u32::from(inv.probes) + delay + BOUND_SLACK;
    let outcome = match measure::run_bounded(&program, &args, limit, &stdout_file, || {}) {
        Ok(outcome) => outcome,
        Err(err) => {
            row.notes.push(format!("running failed: {err:#}"));
            return row;
        }
    };
    thread::sleep(delay + SETTLE);
    let held = responder.answered();
    row.notes.extend(outcome.failure_note());
    let replies = std::fs::read_to_string(&stdout_file)
        .with_context(|| format!("reading {}", stdout_file.display()))
        .and_then(|stdout| (tool.replies)(&stdout));
    match replies {
        Ok(replies) => {
            let errors = errors::match_replies(&replies, held.iter().map(Record::from).collect());
            if errors.unmatched > 0 {
                row.notes.push(format!(
                    "{} of {} reply lines answer no probe the responder answered",
                    errors.unmatched,
                    replies.len()
                ));
            }
            row.summary = errors.summary();
            let csv_file = stdout_file.with_extension("csv");
            if let Err(err) = std::fs::write(&csv_file, errors.csv()) {
                row.notes
                    .push(format!("writing {}: {err}", csv_file.display()));
            }
        }
        Err(err) => row.notes.push(format!("output unreadable: {err:#}")),
    }
    if held.len() != usize::from(inv.probes) {
        row.notes.push(format!(
            "the responder answered {} probes, not {}",
            held.len(),
            inv.probes
        ));
    }
    println!(
        "{}: {} of {} replies matched, {:.2} s{}",
        tool.name,
        row.summary.as_ref().map_or(0, |s| s.matched),
        inv.probes,
        outcome.wall_secs,
        row.notes
            .iter()
            .map(|n| format!("; {n}"))
            .collect::<String>()
    );
    row
}

/// The table's columns: header and width (the tool's name left-aligned, numbers right-aligned).
const COLUMNS: [(&str, usize); 10] = [
    ("tool", 8),
    ("replies/probes", 14),
    ("median err", 10),
    ("mean err", 10),
    ("p99 err", 10),
    ("max err", 10),
    ("jitter", 10),
    ("true rtt", 10),
    ("p/t median", 10),
    ("p/t mean", 8),
];

fn write_table(out: &mut String, title: &str, rows: &[Row]) {
    let prober = rows
        .iter()
        .find(|row| matches!(row.tool.program, Program::Prober))
        .and_then(|row| row.summary.as_ref());
    let _ = writeln!(out, "\n== {title} ==");
    write_cells(out, COLUMNS.map(|(header, _)| header.to_owned()));
    let mut notes = Vec::new();
    for row in rows {
        notes.extend(row.notes.iter().map(|n| format!("{}: {n}", row.tool.name)));
        let Some(s) = &row.summary else {
            let _ = writeln!(out, "{:8} (no replies)", row.tool.name);
            continue;
        };
        let ratio = |of: fn(&Summary) -> f64| {
            prober
                .filter(|_| of(s) > 0.0)
                .map_or("-".to_owned(), |p| format!("{:.3}", of(p) / of(s)))
        };
        write_cells(
            out,
            [
                row.tool.name.to_owned(),
                format!("{}/{PROBES}", s.matched),
                duration_cell(s.median_abs_ns as f64),
                duration_cell(s.mean_abs_ns),
                duration_cell(s.p99_abs_ns as f64),
                duration_cell(s.max_abs_ns as f64),
                duration_cell(s.jitter_ns),
                duration_cell(s.median_true_rtt_ns as f64),
                ratio(|s| s.median_abs_ns as f64),
                ratio(|s| s.mean_abs_ns),
            ],
        );
    }
    for note in notes {
        let _ = writeln!(out, "  note: {note}");
    }
}

fn write_cells(out: &mut String, cells: [String; COLUMNS.len()]) {
    for (i, (cell, (_, width))) in cells.iter().zip(COLUMNS).enumerate() {
        let _ = match i {
            0 => write!(out, "{cell:<width$}"),
            _ => write!(out, " {cell:>width$}"),
        };
    }
    out.push('\n');
}

/// Microseconds, or milliseconds from 1 ms on (hping3's +1000 ms outliers).
fn duration_cell(ns: f64) -> String {
    if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn print_legend() {
    println!(
        "\
columns (error of a probe = the tool's RTT for it − its true RTT at the wire: from the request
entering the responder's TAP to the answer going into it, as the responder recorded them):
  replies/probes  replies the tool reported that pair with a probe the responder answered / probes
  median err      median of |error| over those replies
  mean err        mean of |error|: unlike the median, not fooled by a 0.1 ms tool whose rounded
                  RTT lands on the true RTT for most probes (every delay here is a multiple of
                  0.1 ms), as it counts how often it is 0.1 ms off
  p99 err         99th percentile (nearest rank) of |error|
  max err         largest |error| (hping3's clock bug shows here: now and then +1000 ms)
  jitter          standard deviation of the (signed) error
  true rtt        median true RTT of the matched probes (the delay, plus the responder's own time)
  p/t median      prober's median err / the tool's: below 0.2, prober's error is under a fifth
  p/t mean        the same for mean err (the fair one against 0.1 ms tools, see mean err)
per-probe RTT, true RTT and error of every run: <tool outputs>/<tool>-<protocol>-<delay>us.csv
RTT resolution: prober 1 µs (--rtt-precision us); hping3 0.1 ms; nping 0.1 ms on each of its SENT
and RCVD times (it prints no RTT per probe)"
    );
}

/// After the responder is dropped: its TAP is gone from `ip -o link` and from `bpftool net`.
fn check_cleanup(interface: &str) -> Result<()> {
    let links = env::output(Command::new("ip").args(["-o", "link", "show"]))?;
    let attached = env::output(Command::new("bpftool").args(["net", "show"]))?;
    let named = |text: &str| {
        text.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
            .any(|word| word == interface)
    };
    if named(&links) || named(&attached) {
        bail!("left behind after the responder was removed: {interface}");
    }
    println!("cleanup: {interface} is gone (ip -o link, bpftool net)");
    Ok(())
}
