//! RTTs against ground truth: prober and hping3 probe a [`DelayedResponder`], which holds every
//! probe for a set delay and records when the request entered its TAP, when it read it and when it
//! wrote the reply.
//!
//! A reply's error is its printed RTT minus [`Held::ideal_rtt_ns`] of the probe it answers: from
//! the kernel's passing the request to the TAP to the reply's `write()` into it. prober stamps the
//! request earlier (TC egress, before the qdisc and the TAP's transmit) and the reply later (XDP,
//! which runs inside that `write()`), so its error is never negative beyond the printed rounding,
//! and it is small: see [`PROBER_ERROR_US`]. The one part of it that is not the prober's: a
//! `write()` that stalls (an interrupt, or the VM's CPU taken away) between the responder's stamp
//! and the XDP program. The responder measures that too ([`Held::write_path_ns`], up to the
//! kernel's receive stamp just after XDP), and a reply's window grows by it and no more.
//! Comparing with the responder's userspace hold instead
//! would add the responder thread's wake-up (10–130 µs here, printed as "wake"), which is no part
//! of any network.
//!
//! The tests of this file run one at a time (see [`serial`]): on a small machine, two at once would
//! measure each other.

use prober_tests::output::hping_loss_percent;
use prober_tests::proc::{run, Finished, Proc};
use prober_tests::responder::{DelayedResponder, Held, ProbeId};
use prober_tests::sweep::{parse_json_line, Status, SweepResult};
use prober_tests::{hping3_command, prober_command, require_root, CLOSED_PORT, OPEN_PORT};
use std::ops::RangeInclusive;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// prober's error (printed RTT − ideal RTT) for every reply, in µs. It is the kernel's own path:
/// TC egress → qdisc → the TAP's transmit, and the reply's `write()` → XDP. Measured here (debug
/// builds, 1 200 replies at delays 0 to 20 ms, TCP and ICMP, 0 to 7 probes in flight): 1.2 to 17 µs,
/// run medians 2 to 9 µs, the first probe of a run the slowest (cold caches); with other work on
/// the machine a few replies in a hundred reached 23 to 35 µs. −1: the printed value is rounded to
/// the µs. 60: room for that, while the responder's wake-up (10–130 µs) shows what a userspace
/// timestamp would add; the median bound below is what catches a systematic offset.
const PROBER_ERROR_US: RangeInclusive<f64> = -1.0..=60.0;
/// One reply of a run may lie above [`PROBER_ERROR_US`], up to this: this VM's CPUs are now and
/// then taken away (steal time in /proc/stat), and a stall between TC egress's stamp and the
/// TAP's adds itself to that probe's RTT (128 and 132 µs seen in two clean-checkout runs here,
/// one reply each; an older prober binary failed the same way on the same day). Two such replies
/// fail the run, and the median bound is untouched.
const PROBER_STALLED_ERROR_US: f64 = 500.0;
/// ... and at the median of a run. Runs spaced 7 to 20 ms apart find the path cold: their medians
/// were 6 to 11 µs here, and a CI run on a busy machine saw 15.1 µs (before the XDP program
/// stamped replies ahead of parsing them, which took about 1 µs off). 20 leaves that room, and is
/// still below the responder's median wake-up (14 to 97 µs) that a userspace stamp would add.
const PROBER_MEDIAN_ERROR_US: f64 = 20.0;
/// hping3 has only to be sane at the median: it prints tenths of a millisecond of userspace
/// timestamps, and single replies have been seen 2.7 ms (and, with a busy CPU, 1 s) off.
const HPING3_MEDIAN_ERROR_US: RangeInclusive<f64> = -150.0..=2000.0;
/// How late the responder may write a reply (hold − requested delay), in µs, for any probe and at
/// the median of a run. The median covers the work between reading a request and being ready to
/// answer it, which is all there is at delay 0: up to 45 µs measured with the tests' debug build.
/// A single reply may be later: this VM now and then stalls the responder's CPU (563 µs seen in
/// an otherwise punctual run). Every hold is measured, so lateness only has to stay sane.
const RESPONDER_LATE_US: f64 = 2000.0;
const RESPONDER_MEDIAN_LATE_US: f64 = 100.0;
/// Source port of probe 0 (prober's and hping3's `-s`): probe n leaves from BASE_PORT + n.
const BASE_PORT: u16 = 40000;
const PROBES: u16 = 20;
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const LINE_TIMEOUT: Duration = Duration::from_secs(5);

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock poisons it; the others still run.
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Tcp { port: u16 },
    Icmp,
}

impl Mode {
    fn args(self) -> Vec<String> {
        match self {
            Mode::Tcp { port } => vec![
                "-S".into(),
                "-p".into(),
                port.to_string(),
                "-s".into(),
                BASE_PORT.to_string(),
            ],
            Mode::Icmp => vec!["-1".into()],
        }
    }

    /// Whether `held` is the probe `tool` printed sequence number `seq` for (the ICMP echo id is the
    /// tool's own, random for prober, so only the sequence number is matched).
    fn is_probe(self, tool: Tool, held: &Held, seq: u16) -> bool {
        // hping3 writes the echo sequence number in host byte order (and reads it back the same way).
        let wire_seq = match tool {
            Tool::Prober => seq,
            Tool::Hping3 => u16::from_be_bytes(seq.to_ne_bytes()),
        };
        match (self, held.probe) {
            (
                Mode::Tcp { port },
                ProbeId::Tcp {
                    source_port,
                    dest_port,
                },
            ) => dest_port == port && source_port == BASE_PORT.wrapping_add(seq),
            (Mode::Icmp, ProbeId::IcmpEcho { seq: s, .. }) => s == wire_seq,
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Tool {
    Prober,
    Hping3,
}

impl Tool {
    /// `<mode> -c <count> -i u<interval> [extra] <target>`, with `--rtt-precision us` for prober,
    /// and `--xdp-mode native`: the bounds above are the native hook's, where the TAP's reply is
    /// stamped as it enters the stack. Generic XDP, the default, stamps it later in the stack
    /// (README, "Native XDP", says by how much), which these bounds would not hold.
    fn command(
        self,
        mode: Mode,
        count: u16,
        interval: Duration,
        extra: &[&str],
        target: &str,
    ) -> Command {
        let mut args = mode.args();
        args.extend([
            "-c".into(),
            count.to_string(),
            "-i".into(),
            format!("u{}", interval.as_micros()),
        ]);
        args.extend(extra.iter().map(|arg| arg.to_string()));
        match self {
            Tool::Prober => {
                args.extend(
                    ["--xdp-mode", "native", "--rtt-precision", "us", target].map(String::from),
                );
                prober_command(&args)
            }
            Tool::Hping3 => {
                args.push(target.into());
                hping3_command(&args)
            }
        }
    }
}

/// One reply line: hping3's sequence number (`seq=` or `icmp_seq=`) and the RTT in ms.
#[derive(Clone, Copy, Debug)]
struct Reply {
    seq: u16,
    rtt_ms: f64,
}

/// The reply in a stdout line, if it is one (with `-V` a reply spans lines; the one with `rtt=` also
/// has the sequence number).
fn parse_reply(line: &str) -> Option<Reply> {
    Some(Reply {
        seq: field(line, "icmp_seq=").or_else(|| field(line, "seq="))?,
        rtt_ms: field(line, "rtt=")?,
    })
}

/// The value of the first space-separated `<name><value>` token in `line`.
fn field<T: std::str::FromStr>(line: &str, name: &str) -> Option<T> {
    line.split(' ')
        .find_map(|token| token.strip_prefix(name))
        .and_then(|value| value.parse().ok())
}

/// The replies a finished run printed, after checking that it printed exactly one per probe
/// (sequence numbers 0 to `count` − 1, each once), no duplicates, and exited 0.
fn replies_one_per_probe(run: &Finished, count: u16) -> Vec<Reply> {
    let replies: Vec<Reply> = run.stdout.lines().filter_map(parse_reply).collect();
    let mut seqs: Vec<u16> = replies.iter().map(|reply| reply.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..count).collect::<Vec<_>>(),
        "want exactly one reply line per probe\n{run}"
    );
    assert!(!run.stdout.contains("DUP!"), "duplicate replies\n{run}");
    assert_eq!(run.code(), Some(0), "exit status\n{run}");
    replies
}

/// A reply set against the responder's record of the probe it answers.
struct Matched {
    reply: Reply,
    held: Held,
}

impl Matched {
    /// Printed RTT − ideal RTT, µs.
    fn error_us(&self) -> f64 {
        let ideal_ns = self
            .held
            .ideal_rtt_ns()
            .unwrap_or_else(|| panic!("the responder missed the TAP's stamp of {:?}", self.held));
        self.reply.rtt_ms * 1000.0 - ideal_ns as f64 / 1000.0
    }

    /// How long after the request entered the TAP the responder read it, µs.
    fn wake_us(&self) -> f64 {
        let queued_ns = self.held.queued_ns.unwrap_or(self.held.read_ns);
        (self.held.read_ns - queued_ns) as f64 / 1000.0
    }
}

/// Pairs every reply with the one probe the responder answered that it belongs to; also checks
/// that the responder answered exactly as many probes as there are replies.
fn match_replies(
    replies: &[Reply],
    held: &[Held],
    tool: Tool,
    mode: Mode,
    run: &Finished,
) -> Vec<Matched> {
    assert_eq!(
        held.len(),
        replies.len(),
        "the responder answered {} probes for {} replies: {held:#?}\n{run}",
        held.len(),
        replies.len()
    );
    replies
        .iter()
        .map(|&reply| {
            let matching: Vec<&Held> = held
                .iter()
                .filter(|h| mode.is_probe(tool, h, reply.seq))
                .collect();
            let [held] = matching[..] else {
                panic!(
                    "reply {reply:?}: the responder answered {} probes with that sequence number \
                     (want 1): {held:#?}\n{run}",
                    matching.len()
                );
            };
            Matched {
                reply,
                held: held.clone(),
            }
        })
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn max(values: &[f64]) -> f64 {
    values.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
}

/// The responder's own precision for a run: every probe held for at least the requested delay and
/// at most [`RESPONDER_LATE_US`] more, [`RESPONDER_MEDIAN_LATE_US`] at the median. Returns how late
/// each reply left, µs, or what was wrong.
fn check_holds(matched: &[Matched], delay: Duration) -> Result<Vec<f64>, String> {
    let late_us: Vec<f64> = matched
        .iter()
        .map(|m| (m.held.hold_ns() as f64 - delay.as_nanos() as f64) / 1000.0)
        .collect();
    let punctual = late_us
        .iter()
        .all(|late| (0.0..=RESPONDER_LATE_US).contains(late));
    if punctual && median(&late_us) <= RESPONDER_MEDIAN_LATE_US {
        Ok(late_us)
    } else {
        Err(format!(
            "the responder held probes for {delay:?} + {late_us:?} µs (want + 0 to \
             {RESPONDER_LATE_US}, median at most {RESPONDER_MEDIAN_LATE_US})"
        ))
    }
}

/// Runs in which the responder itself was late (a busy machine) say nothing of the tool
/// probing it: such a run is made again, this many times at most, before the test fails. (3
/// were not enough on this 2-CPU VM: two whole suites of this session failed with
/// the responder late in all 3, and passed when run again.)
const RESPONDER_ATTEMPTS: usize = 5;

/// Checks prober's replies against the truth: each error within [`PROBER_ERROR_US`] (its upper
/// end raised by the reply's measured `write()` stall) but for one at most, within
/// [`PROBER_STALLED_ERROR_US`], and the median within [`PROBER_MEDIAN_ERROR_US`].
fn check_prober_errors(matched: &[Matched], what: &str, output: &dyn std::fmt::Display) {
    let errors: Vec<f64> = matched.iter().map(Matched::error_us).collect();
    let write_path_us = |m: &Matched| m.held.write_path_ns().unwrap_or(0) as f64 / 1000.0;
    let table: String = matched
        .iter()
        .map(|m| {
            format!(
                "\n  {:?} rtt {:.3} ms, ideal {:.3} ms, error {:.1} µs, write path {:.1} µs",
                m.held.probe,
                m.reply.rtt_ms,
                m.held.ideal_rtt_ns().unwrap_or(0) as f64 / 1e6,
                m.error_us(),
                write_path_us(m),
            )
        })
        .collect();
    let within = |m: &Matched, upper: f64| {
        let error = m.error_us();
        error >= *PROBER_ERROR_US.start() && error <= upper + write_path_us(m)
    };
    let stalled = matched
        .iter()
        .filter(|m| !within(m, *PROBER_ERROR_US.end()))
        .count();
    assert!(
        stalled <= 1
            && matched.iter().all(|m| within(m, PROBER_STALLED_ERROR_US))
            && median(&errors) <= PROBER_MEDIAN_ERROR_US,
        "{what}: prober's RTTs are off the truth (want each error within {PROBER_ERROR_US:?} µs \
         plus its write path, but one at most up to {PROBER_STALLED_ERROR_US}; the median at \
         most {PROBER_MEDIAN_ERROR_US}):{table}\n{output}"
    );
}

/// One tool's run of [`PROBES`] probes against the responder, checked for one reply line per probe
/// and the responder's punctuality; prints the errors. Returns the run and each reply's error, µs.
fn probe_with(
    tool: Tool,
    responder: &DelayedResponder,
    delay: Duration,
    mode: Mode,
    interval: Duration,
) -> (Finished, Vec<f64>) {
    let target = responder.target().to_string();
    let (run, matched, late_us) = (1..=RESPONDER_ATTEMPTS)
        .find_map(|attempt| {
            responder.clear();
            let run = run(
                tool.command(mode, PROBES, interval, &[], &target),
                RUN_TIMEOUT,
            );
            // hping3's receive loop loses replies on a loaded machine (seen: 9 of 20 at -i
            // u300); prober's must not, which the check below asserts.
            if matches!(tool, Tool::Hping3) && attempt < RESPONDER_ATTEMPTS {
                let lines = run.stdout.lines().filter_map(parse_reply).count();
                if lines != usize::from(PROBES) {
                    println!("  {tool:?} run {attempt} not judged, again: {lines} of {PROBES} replies shown");
                    return None;
                }
            }
            let replies = replies_one_per_probe(&run, PROBES);
            let matched = match_replies(&replies, &responder.answered(), tool, mode, &run);
            match check_holds(&matched, delay) {
                Ok(late_us) => Some((run, matched, late_us)),
                Err(late) if attempt < RESPONDER_ATTEMPTS => {
                    println!("  {tool:?} run {attempt} not judged, again: {late}");
                    None
                }
                Err(late) => panic!("{late}, in {RESPONDER_ATTEMPTS} runs; the last:\n{run}"),
            }
        })
        .expect("the last attempt returns or panics");
    let errors: Vec<f64> = matched.iter().map(Matched::error_us).collect();
    let wake_us: Vec<f64> = matched.iter().map(Matched::wake_us).collect();
    println!(
        "  {:<6} {mode:?} -i u{}: error median {:7.1} µs, max {:7.1} µs | responder: wake median \
         {:.1} µs, late median {:.1} µs, max {:.1} µs",
        format!("{tool:?}"),
        interval.as_micros(),
        median(&errors),
        max(&errors),
        median(&wake_us),
        median(&late_us),
        max(&late_us),
    );
    if let Tool::Prober = tool {
        check_prober_errors(&matched, &format!("delay {delay:?}, {mode:?}"), &run);
    }
    (run, errors)
}

/// prober and then hping3, with the same options, against one responder holding each probe for
/// `delay`: prober's replies within [`PROBER_ERROR_US`] of the truth, hping3's median error within
/// [`HPING3_MEDIAN_ERROR_US`], and prober's median error smaller than hping3's.
fn compare_at(delay: Duration, cases: &[(Mode, Duration)]) {
    require_root();
    let _serial = serial();
    let responder = DelayedResponder::start(delay, &[OPEN_PORT]).expect("responder");
    println!("delay {delay:?} (errors: printed RTT − ideal RTT):");
    for &(mode, interval) in cases {
        let (prober_run, prober_errors) =
            probe_with(Tool::Prober, &responder, delay, mode, interval);
        let (hping3_run, hping3_errors) =
            probe_with(Tool::Hping3, &responder, delay, mode, interval);
        assert!(
            HPING3_MEDIAN_ERROR_US.contains(&median(&hping3_errors)),
            "hping3's RTTs are off the truth by {hping3_errors:?} µs, want a median within \
             {HPING3_MEDIAN_ERROR_US:?} (delay {delay:?})\n{hping3_run}"
        );
        let abs_median =
            |errors: &[f64]| median(&errors.iter().map(|e| e.abs()).collect::<Vec<_>>());
        assert!(
            abs_median(&prober_errors) < abs_median(&hping3_errors),
            "prober's median error {} µs is not below hping3's {} µs (delay {delay:?})\n\
             {prober_run}\n{hping3_run}",
            abs_median(&prober_errors),
            abs_median(&hping3_errors)
        );
    }
}

/// No delay: what is left is the TAP path itself. Open port (SYN-ACK) and ICMP echo.
#[test]
fn rtts_match_the_truth_without_delay() {
    compare_at(
        Duration::ZERO,
        &[
            (Mode::Tcp { port: OPEN_PORT }, Duration::from_millis(10)),
            (Mode::Icmp, Duration::from_millis(10)),
        ],
    );
}

/// 200 µs, closed port (RST-ACK).
#[test]
fn rtts_match_the_truth_at_200_us() {
    compare_at(
        Duration::from_micros(200),
        &[(Mode::Tcp { port: CLOSED_PORT }, Duration::from_millis(10))],
    );
}

/// 2 ms, probes every 300 µs: about 7 in flight at once, each held for its own 2 ms.
#[test]
fn rtts_match_the_truth_at_2_ms_with_probes_in_flight() {
    compare_at(
        Duration::from_millis(2),
        &[
            (Mode::Icmp, Duration::from_micros(300)),
            (Mode::Tcp { port: OPEN_PORT }, Duration::from_micros(300)),
        ],
    );
}

/// 20 ms, probes every 7 ms: three in flight.
#[test]
fn rtts_match_the_truth_at_20_ms() {
    compare_at(
        Duration::from_millis(20),
        &[(Mode::Tcp { port: OPEN_PORT }, Duration::from_millis(7))],
    );
}

/// The statistic footer at `--rtt-precision us`, and whatever stderr has after it.
#[derive(Debug)]
struct FooterUs {
    counts: String,
    min: f64,
    avg: f64,
    max: f64,
    after: Vec<String>,
}

/// Parses stderr that must start with hping3's footer for `target` with a three-decimal
/// round-trip line.
fn parse_footer_us(stderr: &str, target: &str) -> Result<FooterUs, String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let title = format!("--- {target} hping statistic ---");
    let [blank, got_title, counts, round_trip, after @ ..] = &lines[..] else {
        return Err("stderr is shorter than the footer".into());
    };
    if !blank.is_empty() || *got_title != title {
        return Err(format!(
            "stderr does not start with a blank line and {title:?}"
        ));
    }
    let values: Vec<f64> = round_trip
        .strip_prefix("round-trip min/avg/max = ")
        .and_then(|rest| rest.strip_suffix(" ms"))
        .map(|values| values.split('/').filter_map(three_decimals).collect())
        .unwrap_or_default();
    let [min, avg, max] = values[..] else {
        return Err(format!(
            "bad round-trip line {round_trip:?} (want min/avg/max with three decimals each)"
        ));
    };
    Ok(FooterUs {
        counts: counts.to_string(),
        min,
        avg,
        max,
        after: after.iter().map(|line| line.to_string()).collect(),
    })
}

/// A number printed with exactly three decimals.
fn three_decimals(text: &str) -> Option<f64> {
    let (_, decimals) = text.split_once('.')?;
    (decimals.len() == 3).then(|| text.parse().ok())?
}

/// The footer's round-trip line against the printed RTTs (all with three decimals): min and max
/// are the smallest and largest, avg their mean within the rounding.
fn check_round_trip(footer: &FooterUs, rtts_ms: &[f64], output: &dyn std::fmt::Display) {
    let min = rtts_ms.iter().cloned().fold(f64::INFINITY, f64::min);
    let mean = rtts_ms.iter().sum::<f64>() / rtts_ms.len() as f64;
    let close = |a: f64, b: f64, tolerance: f64| (a - b).abs() <= tolerance + 1e-9;
    assert!(
        close(footer.min, min, 0.0)
            && close(footer.max, max(rtts_ms), 0.0)
            && close(footer.avg, mean, 0.001),
        "footer {footer:?} does not fit the printed RTTs (min {min}, mean {mean:.4}, max {})\n{output}",
        max(rtts_ms)
    );
}

/// Waits until the responder has written every reply it still holds, so that it has answered
/// every probe sent.
fn let_responder_finish(delay: Duration) {
    std::thread::sleep(delay + Duration::from_millis(100));
}

/// `-c 0` probes until SIGINT, then prints the footer: as many transmitted as reached the
/// responder, as many received as reply lines were printed (each within the error window).
#[test]
fn count_0_runs_until_sigint_then_prints_the_footer() {
    require_root();
    let _serial = serial();
    let delay = Duration::from_millis(1);
    let responder = DelayedResponder::start(delay, &[OPEN_PORT]).expect("responder");
    let target = responder.target().to_string();
    let mode = Mode::Tcp { port: OPEN_PORT };
    let mut prober =
        Proc::spawn(Tool::Prober.command(mode, 0, Duration::from_millis(20), &[], &target));
    prober.expect_line(LINE_TIMEOUT, "the header");
    for seq in 0..10 {
        let line = prober.expect_line(LINE_TIMEOUT, &format!("reply {seq}"));
        if parse_reply(&line).is_none() {
            prober.fail(&format!("{line:?} is not a reply line"));
        }
    }
    prober.signal(libc::SIGINT);
    let run = prober.wait(RUN_TIMEOUT);
    let_responder_finish(delay);

    let replies: Vec<Reply> = run.stdout.lines().filter_map(parse_reply).collect();
    let received = replies_one_per_probe(&run, replies.len() as u16).len() as u64;
    let held = responder.answered();
    let transmitted = held.len() as u64;
    // A probe may have been on its way back when SIGINT came.
    let answered: Vec<Held> = held
        .into_iter()
        .filter(|h| {
            replies
                .iter()
                .any(|r| mode.is_probe(Tool::Prober, h, r.seq))
        })
        .collect();
    let matched = match_replies(&replies, &answered, Tool::Prober, mode, &run);
    check_prober_errors(&matched, "-c 0", &run);
    assert!(
        (received..=received + 1).contains(&transmitted),
        "the responder answered {transmitted} probes for {received} reply lines\n{run}"
    );

    let footer = parse_footer_us(&run.stderr, &target).unwrap_or_else(|e| panic!("{e}\n{run}"));
    let loss = hping_loss_percent(transmitted, received);
    assert_eq!(
        footer.counts,
        format!(
            "{transmitted} packets transmitted, {received} packets received, {loss}% packet loss"
        ),
        "footer counts\n{run}"
    );
    let rtts: Vec<f64> = replies.iter().map(|r| r.rtt_ms).collect();
    check_round_trip(&footer, &rtts, &run);
    assert!(
        footer.after.is_empty(),
        "stderr goes on after the footer\n{run}"
    );
}

/// `-V` and `--histogram` with two kinds of probes: the first 30 held 1 ms, the rest 3 ms. The
/// percentiles line must fit the printed RTTs and the truth, and the histogram must hold every
/// reply, the fast ones below 2 ms and the slow ones above.
#[test]
fn verbose_percentiles_and_histogram_fit_the_truth() {
    require_root();
    let _serial = serial();
    const COUNT: u16 = 40;
    const FAST: usize = 30;
    let (fast, slow) = (Duration::from_millis(1), Duration::from_millis(3));
    let split_ms = 2.0;
    let responder = DelayedResponder::start(fast, &[OPEN_PORT]).expect("responder");
    let target = responder.target().to_string();
    let mode = Mode::Tcp { port: OPEN_PORT };
    // The histogram's split needs each probe's true round trip (from the request's entering the
    // TAP) within half the gap between the two delays above its delay: a run in which the
    // responder was later than that is made again.
    let punctual = |ideal_ns: u64| {
        let slack = (slow - fast) / 2;
        [fast, slow]
            .iter()
            .any(|&delay| (delay..delay + slack).contains(&Duration::from_nanos(ideal_ns)))
    };
    let (run, replies, matched) = (1..=RESPONDER_ATTEMPTS)
        .find_map(|attempt| {
            responder.set_delay(fast);
            responder.clear();
            let mut prober = Proc::spawn(Tool::Prober.command(
                mode,
                COUNT,
                Duration::from_millis(10),
                &["-V", "--histogram"],
                &target,
            ));
            let mut seen = 0;
            while seen < FAST {
                let line = prober.expect_line(LINE_TIMEOUT, &format!("reply {seen}"));
                if parse_reply(&line).is_some() {
                    seen += 1;
                }
            }
            // Probes already on their way keep the delay they were read with: the truth says
            // which.
            responder.set_delay(slow);
            let run = prober.wait(RUN_TIMEOUT);
            let replies = replies_one_per_probe(&run, COUNT);
            let matched = match_replies(&replies, &responder.answered(), Tool::Prober, mode, &run);
            let ideal: Vec<u64> = matched
                .iter()
                .map(|m| m.held.ideal_rtt_ns().unwrap_or(0))
                .collect();
            if ideal.iter().all(|&ideal| punctual(ideal)) {
                Some((run, replies, matched))
            } else if attempt < RESPONDER_ATTEMPTS {
                println!("run {attempt} not judged, again: true round trips {ideal:?} ns");
                None
            } else {
                panic!(
                    "true round trips {ideal:?} ns, not within {:?} above {fast:?} or \
                     {slow:?}, in {RESPONDER_ATTEMPTS} runs; the last:\n{run}",
                    (slow - fast) / 2
                )
            }
        })
        .expect("the last attempt returns or panics");
    check_prober_errors(&matched, "-V --histogram", &run);

    let footer = parse_footer_us(&run.stderr, &target).unwrap_or_else(|e| panic!("{e}\n{run}"));
    let mut rtts: Vec<f64> = replies.iter().map(|r| r.rtt_ms).collect();
    rtts.sort_by(f64::total_cmp);
    check_round_trip(&footer, &rtts, &run);
    let mut ideal: Vec<f64> = matched
        .iter()
        .map(|m| m.held.ideal_rtt_ns().unwrap_or(0) as f64 / 1e6)
        .collect();
    ideal.sort_by(f64::total_cmp);
    let slow_probes = ideal.iter().filter(|&&ms| ms >= split_ms).count() as u64;

    let percentiles_line = footer
        .after
        .iter()
        .find(|line| line.starts_with("rtt percentiles: "))
        .unwrap_or_else(|| panic!("-V printed no `rtt percentiles:` line\n{run}"));
    let percentiles = parse_percentiles(percentiles_line).unwrap_or_else(|e| panic!("{e}\n{run}"));
    check_percentiles(&percentiles, &rtts, &ideal, &run);

    let histogram = parse_histogram(&footer.after).unwrap_or_else(|e| panic!("{e}\n{run}"));
    check_histogram(&histogram, &rtts, split_ms, slow_probes, &run);
}

/// `rtt percentiles: p50=a p90=b p99=c max=d ms, stddev=e ms`
#[derive(Debug)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    stddev: f64,
}

fn parse_percentiles(line: &str) -> Result<Percentiles, String> {
    let value = |name: &str| -> Result<f64, String> {
        line.split([' ', ','])
            .find_map(|token| token.strip_prefix(name))
            .and_then(three_decimals)
            .ok_or_else(|| format!("no `{name}<three decimals>` in {line:?}"))
    };
    Ok(Percentiles {
        p50: value("p50=")?,
        p90: value("p90=")?,
        p99: value("p99=")?,
        max: value("max=")?,
        stddev: value("stddev=")?,
    })
}

/// The `percent` percentile of sorted `values` by nearest rank.
fn nearest_rank(sorted: &[f64], percent: f64) -> f64 {
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Each percentile is the printed RTTs' own, to within the three significant digits prober keeps
/// for them (0.1 %) and the printed rounding; since every reply is within [`PROBER_ERROR_US`] of its
/// ideal RTT, each also lies that close above the ideal RTTs' percentile. In order, none above the
/// max, which is the largest printed RTT; stddev the printed RTTs' (population) one.
fn check_percentiles(p: &Percentiles, rtts: &[f64], ideal: &[f64], run: &Finished) {
    let resolution = |ms: f64| ms * 0.001 + 0.001;
    let window_ms = |ms: f64| {
        (PROBER_ERROR_US.start() / 1000.0 - resolution(ms))
            ..=(PROBER_ERROR_US.end() / 1000.0 + resolution(ms))
    };
    let mut wrong = Vec::new();
    for (name, got, percent) in [
        ("p50", p.p50, 50.0),
        ("p90", p.p90, 90.0),
        ("p99", p.p99, 99.0),
    ] {
        let printed = nearest_rank(rtts, percent);
        if (got - printed).abs() > resolution(printed) {
            wrong.push(format!("{name}={got} but the printed RTTs' is {printed}"));
        }
        let truth = nearest_rank(ideal, percent);
        if !window_ms(truth).contains(&(got - truth)) {
            wrong.push(format!("{name}={got} but the ideal RTTs' is {truth:.4}"));
        }
    }
    if !(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max) {
        wrong.push(format!(
            "p50 <= p90 <= p99 <= max does not hold (a percentile above the largest RTT?): {p:?}"
        ));
    }
    if (p.max - max(rtts)).abs() > 1e-9 {
        wrong.push(format!(
            "max={} but the largest printed RTT is {}",
            p.max,
            max(rtts)
        ));
    }
    let mean = rtts.iter().sum::<f64>() / rtts.len() as f64;
    let stddev = (rtts.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rtts.len() as f64).sqrt();
    if (p.stddev - stddev).abs() > 0.002 {
        wrong.push(format!(
            "stddev={} but the printed RTTs' is {stddev:.4}",
            p.stddev
        ));
    }
    assert!(
        wrong.is_empty(),
        "rtt percentiles: {}\n{run}",
        wrong.join("; ")
    );
}

/// One histogram row: `<from> - <to> | <bar> <count>` (ms).
#[derive(Debug)]
struct Row {
    from: f64,
    to: f64,
    count: u64,
}

/// The rows after the `rtt histogram (<n> replies, ms):` line, checked against its count.
fn parse_histogram(lines: &[String]) -> Result<Vec<Row>, String> {
    let start = lines
        .iter()
        .position(|line| line.starts_with("rtt histogram ("))
        .ok_or("--histogram printed no `rtt histogram (` line")?;
    let replies: u64 =
        field(&lines[start], "(").ok_or_else(|| format!("no reply count in {:?}", lines[start]))?;
    let rows = lines[start + 1..]
        .iter()
        .map(|line| {
            let bad = || format!("bad histogram row {line:?}");
            let (range, bar) = line.split_once('|').ok_or_else(bad)?;
            let (from, to) = range.split_once(" - ").ok_or_else(bad)?;
            Ok(Row {
                from: from.trim().parse().map_err(|_| bad())?,
                to: to.trim().parse().map_err(|_| bad())?,
                count: bar
                    .split_whitespace()
                    .last()
                    .and_then(|count| count.parse().ok())
                    .ok_or_else(bad)?,
            })
        })
        .collect::<Result<Vec<Row>, String>>()?;
    let total: u64 = rows.iter().map(|row| row.count).sum();
    if total != replies {
        return Err(format!(
            "the histogram's rows hold {total} replies, its title says {replies}"
        ));
    }
    Ok(rows)
}

/// The rows hold every reply, follow each other without gaps from the fastest to the slowest RTT,
/// and the rows below `split_ms` hold exactly the replies to probes the responder held briefly.
fn check_histogram(rows: &[Row], rtts: &[f64], split_ms: f64, slow_probes: u64, run: &Finished) {
    let total: u64 = rows.iter().map(|row| row.count).sum();
    let contiguous = rows.windows(2).all(|pair| pair[0].to == pair[1].from);
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    let covers = first.from <= rtts[0] + 0.001 && last.to >= max(rtts) - 0.001;
    let straddling: u64 = rows
        .iter()
        .filter(|row| row.from < split_ms && row.to > split_ms)
        .map(|row| row.count)
        .sum();
    let slow: u64 = rows
        .iter()
        .filter(|row| row.from >= split_ms)
        .map(|row| row.count)
        .sum();
    assert!(
        total == rtts.len() as u64 && contiguous && covers && straddling == 0 && slow == slow_probes,
        "histogram {rows:?}: want {} replies in contiguous rows from {} to {} ms, {slow_probes} of \
         them above {split_ms} ms\n{run}",
        rtts.len(),
        rtts[0],
        max(rtts)
    );
}

/// How far above the responder's measured round trip (from the request's entering the TAP) a
/// sweep's RTT may lie: the qdisc and the reply's way up, on a loaded 2-CPU machine. Coarse on
/// purpose: what it catches is an RTT timed against another probe's departure, which is off by
/// whole multiples of the time the sweep takes to send a table's worth of probes (seconds here).
const SWEEP_RTT_SLACK: Duration = Duration::from_millis(100);
/// The same without the TAP's stamp of the request (`--qdisc-bypass` sends past the packet
/// taps), from the responder's read: then the request's wait in the TAP, unmeasured, counts too,
/// and a responder busy with the replies' receive path was seen 138 ms behind.
const SWEEP_RTT_SLACK_FROM_READ: Duration = Duration::from_millis(500);

/// A sweep with far more probes in flight than it has source ports: 20 000 ports at 10 000 probes
/// a second, each held 1 s, keeps about 10 000 on their way. Every reply that came must carry its
/// RTT, at least the responder's hold and at most [`SWEEP_RTT_SLACK`] above its measured round
/// trip, and `--histogram` (under -V) must count every one. Without `--qdisc-bypass`
/// the TC egress program times the probes; with it, the send threads do.
fn delayed_replies_in_a_sweep_all_carry_rtts(extra: &[&str]) {
    require_root();
    let _serial = serial();
    const PORTS: u16 = 20_000;
    let hold = Duration::from_secs(1);
    let responder = DelayedResponder::start(hold, &[OPEN_PORT]).expect("responder");
    let target = responder.target().to_string();
    let ports = format!("1-{PORTS}");
    let mut args = vec![
        "-p",
        &ports,
        "--rate",
        "20000",
        "--wait",
        "2",
        "-O",
        "json",
        "-V",
        "--histogram",
    ];
    args.extend(extra);
    args.push(&target);
    let run = run(prober_command(&args), RUN_TIMEOUT);
    let held = responder.answered();
    let held_by_port: std::collections::HashMap<u16, &Held> = held
        .iter()
        .filter_map(|h| match h.probe {
            ProbeId::Tcp { dest_port, .. } => Some((dest_port, h)),
            ProbeId::IcmpEcho { .. } => None,
        })
        .collect();
    assert_eq!(held_by_port.len(), held.len(), "one probe per port\n{run}");
    let answered: Vec<SweepResult> = run
        .stdout
        .lines()
        .map(|line| parse_json_line(line).unwrap_or_else(|e| panic!("{e}\n{run}")))
        .filter(|result| matches!(result.status, Status::Open | Status::Closed))
        .collect();
    // The responder keeps up with most of it; what it missed is filtered and not checked.
    assert!(
        answered.len() > usize::from(PORTS) / 2,
        "only {} of {PORTS} ports answered\n{run}",
        answered.len()
    );
    let mut wrong = Vec::new();
    for result in &answered {
        let Some(held) = held_by_port.get(&result.port) else {
            wrong.push(format!(
                "port {}: answered, but the responder never held it",
                result.port
            ));
            continue;
        };
        let (truth, slack) = match held.ideal_rtt_ns() {
            Some(ideal) => (ideal, SWEEP_RTT_SLACK),
            None => (held.hold_ns(), SWEEP_RTT_SLACK_FROM_READ),
        };
        let window = held.hold_ns()..=truth + slack.as_nanos() as u64;
        match result.rtt_ns {
            Some(rtt) if window.contains(&rtt) => {}
            rtt => wrong.push(format!(
                "port {}: rtt_ns {rtt:?}, want {window:?}",
                result.port
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} replies without their RTT, e.g. {:?}\n{}",
        wrong.len(),
        answered.len(),
        &wrong[..wrong.len().min(10)],
        run.stderr
    );
    let title = format!("rtt histogram ({} replies, ms):", answered.len());
    assert!(
        run.stderr.lines().any(|line| line == title),
        "want {title:?} in stderr\n{}",
        run.stderr
    );
}

#[test]
fn delayed_replies_in_a_sweep_all_carry_rtts_timed_by_tc_egress() {
    delayed_replies_in_a_sweep_all_carry_rtts(&[]);
}

#[test]
fn delayed_replies_in_a_sweep_all_carry_rtts_timed_by_the_send_threads() {
    delayed_replies_in_a_sweep_all_carry_rtts(&["--qdisc-bypass"]);
}
