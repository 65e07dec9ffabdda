//! (a) prober against a namespace host over veth: open, closed, filtered and ICMP, every field of
//! every line, the header, the footer and the exit status.
//!
//! rtt: on a veth a real round trip can take less than 50 µs, which `%.1f` prints as `0.0`, so a
//! printed rtt of 0.0 is correct output and positivity cannot be asserted honestly. What is
//! asserted: each rtt is printed with exactly one decimal, parses, is >= 0 and is no longer than the
//! whole run took; the footer's min/max are the smallest/largest printed rtt and its avg lies between
//! them within 0.1 ms of the printed values' mean.

use prober_tests::output::{check_run, tcp_reply, tcp_syn_header, Expected};
use prober_tests::proc::{run, Finished};
use prober_tests::{prober_command, require_root, TestHost, CLOSED_PORT, FILTERED_PORT, OPEN_PORT};
use std::time::Duration;

/// Linux's SYN-ACK window for a 1500-byte-MTU veth (MSS 1460) with default buffer sizes, as hping3
/// shows it on this kind of machine.
const VETH_SYNACK_WIN: u32 = 64240;
const TIMEOUT: Duration = Duration::from_secs(30);

fn probe(host: &TestHost, mode: &[&str]) -> Finished {
    let target = host.addr.to_string();
    let mut args = vec!["-c", "4", "-i", "u200000"];
    args.extend_from_slice(mode);
    args.push(&target);
    run(prober_command(&args), TIMEOUT)
}

fn tcp_expected(host: &TestHost, replies: Vec<String>) -> Expected {
    Expected::four_syns(host.addr, &host.host_if, replies)
}

#[test]
fn open_port_answers_syn_ack() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = OPEN_PORT.to_string();
    let run = probe(&host, &["-S", "-p", &port]);
    let replies = (0..4)
        .map(|seq| tcp_reply(44, host.addr, OPEN_PORT, "SA", seq, VETH_SYNACK_WIN))
        .collect();
    check_run(&run, &tcp_expected(&host, replies));
}

#[test]
fn closed_port_answers_rst_ack() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = CLOSED_PORT.to_string();
    let run = probe(&host, &["-S", "-p", &port]);
    let replies = (0..4)
        .map(|seq| tcp_reply(40, host.addr, CLOSED_PORT, "RA", seq, 0))
        .collect();
    check_run(&run, &tcp_expected(&host, replies));
}

#[test]
fn filtered_port_gets_no_reply_and_exit_1() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = FILTERED_PORT.to_string();
    let run = probe(&host, &["-S", "-p", &port]);
    // Header only, footer `4 packets transmitted, 0 packets received, 100% packet loss`,
    // round-trip 0.0/0.0/0.0, exit 1.
    check_run(&run, &tcp_expected(&host, Vec::new()));
    // ... and the 4 probes were really sent: the namespace's drop rule counted them.
    let dropped = host.dropped_packets(FILTERED_PORT).expect("nft counter");
    assert_eq!(
        dropped, 4,
        "the namespace dropped {dropped} packets to port {port}, want the 4 probes\n{run}"
    );
}

#[test]
fn icmp_echo_replies() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let run = probe(&host, &["-1"]);
    check_run(
        &run,
        &Expected::four_echoes_answered(host.addr, &host.host_if),
    );
}

/// The probes really reach the host: 4 SYNs to port 80 counted by nftables inside the namespace,
/// and with `-s 40000` they come from source ports 40000, 40001, 40002, 40003 (hping3 increments the
/// source port per probe; `seq` is reply dport minus the base port).
#[test]
fn base_source_port_sets_probe_source_ports() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let src = host.host_addr;
    host.add_counter("from_base", &format!("ip saddr {src} tcp dport 80 tcp sport 40000-40003 tcp flags & (fin|syn|rst|ack) == syn"))
        .expect("nft counter");
    host.add_counter(
        "to_80",
        &format!("ip saddr {src} tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn"),
    )
    .expect("nft counter");
    let port = OPEN_PORT.to_string();
    let run = probe(&host, &["-S", "-p", &port, "-s", "40000"]);
    let replies = (0..4)
        .map(|seq| tcp_reply(44, host.addr, OPEN_PORT, "SA", seq, VETH_SYNACK_WIN))
        .collect();
    check_run(&run, &tcp_expected(&host, replies));
    let syns = host.counter_packets("to_80").expect("counter");
    let from_base = host.counter_packets("from_base").expect("counter");
    assert_eq!(
        syns, 4,
        "namespace saw {syns} SYNs to port 80 from {src}, want 4\n{run}"
    );
    assert_eq!(
        from_base, 4,
        "only {from_base} of the SYNs came from ports 40000-40003\n{run}"
    );
}

/// `-q`: the header and the footer, no reply lines; replies still counted.
#[test]
fn quiet_prints_no_reply_lines() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = OPEN_PORT.to_string();
    let run = probe(&host, &["-q", "-S", "-p", &port]);
    let a = host.addr.to_string();
    let header = tcp_syn_header(&a, &host.host_if, &a);
    assert_eq!(
        run.stdout_lines(),
        vec![header.as_str()],
        "-q stdout should be the header only\n{run}"
    );
    let f =
        prober_tests::output::parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!(
        (f.transmitted, f.received, f.loss_percent),
        (4, 4, 0),
        "footer\n{run}"
    );
    assert!(
        f.min <= f.avg && f.avg <= f.max,
        "footer rtts out of order\n{run}"
    );
    assert_eq!(run.code(), Some(0), "exit status\n{run}");
}

/// prober's TC egress program only watches (TCX_NEXT): an egress filter already on the
/// interface keeps working while prober runs. Here a classic clsact filter on the host's veth
/// end diverts every probe to the closed port into a second, unrelated test host (this kernel
/// has no drop action, only mirred), so no RST-ACK may come back; the open port, which the
/// filter lets through, still answers.
#[test]
fn egress_filters_on_the_interface_still_apply() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let sink = TestHost::new().expect("second test host");
    let dev = host.host_if.as_str();
    let tc = |args: &[&str]| {
        prober_tests::run_checked(std::process::Command::new("tc").args(args)).expect("tc command")
    };
    tc(&["qdisc", "add", "dev", dev, "clsact"]);
    let closed = CLOSED_PORT.to_string();
    tc(&[
        "filter",
        "add",
        "dev",
        dev,
        "egress",
        "protocol",
        "ip",
        "u32",
        "match",
        "ip",
        "dport",
        &closed,
        "0xffff",
        "action",
        "mirred",
        "egress",
        "redirect",
        "dev",
        &sink.host_if,
    ]);

    let diverted = probe(&host, &["-V", "-S", "-p", &closed]);
    assert!(
        diverted
            .stdout
            .contains("send times from TC egress (kernel)"),
        "the egress program must be attached for this test to mean anything\n{diverted}"
    );
    assert!(
        !diverted.stdout.contains("flags=RA"),
        "the clsact filter was skipped: probes to port {closed} got answers\n{diverted}"
    );
    assert_eq!(diverted.code(), Some(1), "nothing may answer\n{diverted}");
    let stats = tc(&["-s", "filter", "show", "dev", dev, "egress"]);
    assert!(
        stats.contains("Sent") && !stats.contains("Sent 0 bytes"),
        "the filter saw no probe:\n{stats}"
    );

    let open = probe(&host, &["-S", "-p", &OPEN_PORT.to_string()]);
    assert_eq!(
        open.stdout.matches("flags=SA").count(),
        4,
        "the open port must still answer\n{open}"
    );
}
