//! `--bpf-trace`: the eBPF programs say, packet by packet, why a reply was counted or not:
//! each probe leaving (TC egress), each real reply matched (and, in a sweep, bounced as a RST),
//! each forged one refused with its reason. Forged SYN-ACKs come from a raw socket inside the
//! test host's namespace, so they cross the same veth real replies do.

use std::time::Duration;

use prober_tests::{
    packets, prober_command,
    proc::{Finished, Proc},
    require_root, test_both_families, Family, TestHost, CLOSED_PORT, OPEN_PORT,
};

const TIMEOUT: Duration = Duration::from_secs(30);
const FORGED: u16 = 4;

/// How many of `lines` are exactly `line`.
fn count(lines: &[&str], line: &str) -> usize {
    lines.iter().filter(|l| **l == line).count()
}

/// How many of `lines` start with `start` and end with `end`.
fn count_between(lines: &[&str], start: &str, end: &str) -> usize {
    lines
        .iter()
        .filter(|line| line.starts_with(start) && line.ends_with(end))
        .count()
}

/// Sends [`FORGED`] SYN-ACKs from the closed port to `to_port(i)`, acknowledging 7, from inside
/// the host's namespace; then waits for prober, which must have found replies.
fn forge_then_wait(
    host: &TestHost,
    family: Family,
    prober: &mut Proc,
    to_port: impl Fn(u16) -> u16,
) -> Finished {
    let (from, to) = (host.target(family), host.source(family));
    let forged = (0..FORGED)
        .map(|i| packets::syn_ack(from, to, CLOSED_PORT, to_port(i), 7))
        .collect();
    host.send_raw_from_namespace(forged)
        .expect("sending forged SYN-ACKs");
    let run = prober.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{run}");
    run
}

/// Over IPv6 too: the departures TC egress stamps are what make IPv6 RTTs kernel-timed.
fn one_target_trace_shows_departures_matches_and_why_forgeries_are_refused(family: Family) {
    require_root();
    const BASE: u16 = 41000;
    let host = TestHost::standard().expect("test host");
    let (target, port, base) = (
        host.target(family).to_string(),
        CLOSED_PORT.to_string(),
        BASE.to_string(),
    );
    let mut prober = Proc::spawn(prober_command(&[
        "--bpf-trace",
        "-c",
        "3",
        "-i",
        "u400000",
        "-S",
        "-p",
        &port,
        "-s",
        &base,
        &target,
    ]));
    while !prober
        .expect_line(TIMEOUT, "the first reply")
        .starts_with("len=")
    {}
    // To the ports the probes use, acknowledging nothing we sent (the run's sequence number is
    // random: one chance in 2^31 of a false failure).
    let run = forge_then_wait(&host, family, &mut prober, |i| BASE + i % 3);
    let lines = run.stderr_lines();
    let a = host.target(family);
    for seq in 0..3u16 {
        let dport = BASE + seq;
        let left = format!("bpf: tc: probe to {a} port {CLOSED_PORT} left, slot {seq}");
        assert_eq!(count(&lines, &left), 1, "want {left:?}\n{run}");
        let matched = format!(
            "bpf: xdp: matched from {a} (sport {CLOSED_PORT}, dport {dport}): answers a probe"
        );
        assert_eq!(count(&lines, &matched), 1, "want {matched:?}\n{run}");
    }
    let refused = count_between(
        &lines,
        &format!("bpf: xdp: passed from {a} (sport {CLOSED_PORT}, dport "),
        "): acknowledges none of our probes",
    );
    assert_eq!(
        refused,
        usize::from(FORGED),
        "every forgery, with its reason\n{run}"
    );
    assert_eq!(
        run.stdout_lines()
            .iter()
            .filter(|l| l.starts_with("len="))
            .count(),
        3,
        "the trace changes nothing else\n{run}"
    );
}

test_both_families!(one_target_trace_shows_departures_matches_and_why_forgeries_are_refused);

fn sweep_trace_shows_bounces_and_passes_forgeries_to_the_host(family: Family) {
    require_root();
    // Below the ephemeral range (a sweep's block must lie outside it).
    const BASE: u16 = 20480;
    let host = TestHost::standard().expect("test host");
    let (target, base) = (host.target(family).to_string(), BASE.to_string());
    // 300 ports at 100 a second: three seconds for the forgeries to arrive mid-sweep.
    let mut prober = Proc::spawn(prober_command(&[
        "--bpf-trace",
        "-p",
        "1-300",
        "--rate",
        "100",
        "--wait",
        "0.5",
        "-s",
        &base,
        "-O",
        "json",
        &target,
    ]));
    prober.expect_line(TIMEOUT, "the first result");
    let run = forge_then_wait(&host, family, &mut prober, |i| BASE + i * 7);
    let lines = run.stderr_lines();
    let a = host.target(family);
    let left = count_between(&lines, &format!("bpf: tc: probe to {a} port "), "");
    assert_eq!(left, 300, "a departure per probe\n{run}");
    let bounced = count_between(
        &lines,
        &format!("bpf: xdp: bounced as RST from {a} (sport {OPEN_PORT}, dport "),
        "): answers a probe",
    );
    assert_eq!(bounced, 1, "the open port's SYN-ACK, bounced\n{run}");
    let closed = count_between(
        &lines,
        &format!("bpf: xdp: matched from {a} (sport {CLOSED_PORT}, dport "),
        "): answers a probe",
    );
    assert_eq!(closed, 1, "the closed port's RST-ACK\n{run}");
    // Not dropped: segments to a sweep's ports without our cookie may be the host's own.
    let passed = count_between(
        &lines,
        &format!("bpf: xdp: passed from {a} (sport {CLOSED_PORT}, dport "),
        "): acknowledges none of our probes",
    );
    assert_eq!(
        passed,
        usize::from(FORGED),
        "every forgery passed to the host's stack, with its reason\n{run}"
    );
}

test_both_families!(sweep_trace_shows_bounces_and_passes_forgeries_to_the_host);

#[test]
fn without_the_option_the_programs_say_nothing() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = host.addr.to_string();
    let port = OPEN_PORT.to_string();
    let mut prober = Proc::spawn(prober_command(&[
        "-c", "2", "-i", "u100000", "-S", "-p", &port, &target,
    ]));
    let run = prober.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{run}");
    assert!(
        !run.stderr.contains("bpf:"),
        "a trace line without --bpf-trace\n{run}"
    );
}
