//! (a) prober against a namespace host over veth, over IPv4 and IPv6: open, closed, filtered and
//! ICMP (ICMPv6), every field of every line, the header, the footer and the exit status.
//!
//! rtt: on a veth a real round trip can take less than 50 µs, which `%.1f` prints as `0.0`, so a
//! printed rtt of 0.0 is correct output and positivity cannot be asserted honestly. What is
//! asserted: each rtt is printed with exactly one decimal, parses, is >= 0 and is no longer than the
//! whole run took; the footer's min/max are the smallest/largest printed rtt and its avg lies between
//! them within 0.1 ms of the printed values' mean.

use prober_tests::output::{check_run, ip_header_len, tcp_reply, tcp_syn_header, Expected};
use prober_tests::proc::{run, Finished};
use prober_tests::{
    prober_bin, prober_command, require_root, test_both_families, Family, TestHost, CLOSED_PORT,
    FILTERED_PORT, OPEN_PORT,
};
use std::net::IpAddr;
use std::time::Duration;

/// Linux's SYN-ACK window for a 1500-byte-MTU veth with default buffer sizes, as hping3 shows it
/// on this kind of machine: 44 segments of the MSS, 1460 over IPv4; over IPv6 45 of 1440.
fn veth_syn_ack_win(family: Family) -> u32 {
    match family {
        Family::V4 => 64240,
        Family::V6 => 64800,
    }
}
/// A SYN-ACK's TCP header: 20 bytes and Linux's MSS option (the probes carry no options).
const SYN_ACK_TCP_LEN: u32 = 24;
const RST_TCP_LEN: u32 = 20;
const TIMEOUT: Duration = Duration::from_secs(30);

fn probe(host: &TestHost, family: Family, mode: &[&str]) -> Finished {
    let target = host.target(family).to_string();
    let mut args = vec!["-c", "4", "-i", "u200000"];
    args.extend_from_slice(mode);
    args.push(&target);
    run(prober_command(&args), TIMEOUT)
}

/// Four SYN-ACK lines from `ip`'s port `port`, or RST-ACK ones.
fn replies(ip: IpAddr, port: u16, open: bool) -> Vec<String> {
    let (tcp_len, flags, win) = if open {
        (SYN_ACK_TCP_LEN, "SA", veth_syn_ack_win(Family::of(ip)))
    } else {
        (RST_TCP_LEN, "RA", 0)
    };
    let len = ip_header_len(ip) + tcp_len;
    (0..4)
        .map(|seq| tcp_reply(len, ip, port, flags, seq, win))
        .collect()
}

/// Four SYNs to `port` of a [`TestHost::standard`], each answered: with a SYN-ACK if `open`,
/// else with a RST-ACK.
fn port_answers(family: Family, port: u16, open: bool) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let run = probe(&host, family, &["-S", "-p", &port.to_string()]);
    let ip = host.target(family);
    check_run(
        &run,
        &Expected::four_syns(ip, &host.host_if, replies(ip, port, open)),
    );
}

fn open_port_answers_syn_ack(family: Family) {
    port_answers(family, OPEN_PORT, true);
}

fn closed_port_answers_rst_ack(family: Family) {
    port_answers(family, CLOSED_PORT, false);
}

test_both_families!(open_port_answers_syn_ack, closed_port_answers_rst_ack);

fn filtered_port_gets_no_reply_and_exit_1(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = FILTERED_PORT.to_string();
    let run = probe(&host, family, &["-S", "-p", &port]);
    // Header only, footer `4 packets transmitted, 0 packets received, 100% packet loss`,
    // round-trip 0.0/0.0/0.0, exit 1.
    check_run(
        &run,
        &Expected::four_syns(host.target(family), &host.host_if, Vec::new()),
    );
    // ... and the 4 probes were really sent: the namespace's drop rule counted them.
    let dropped = host.dropped_packets(FILTERED_PORT).expect("nft counter");
    assert_eq!(
        dropped, 4,
        "the namespace dropped {dropped} packets to port {port}, want the 4 probes\n{run}"
    );
}

test_both_families!(filtered_port_gets_no_reply_and_exit_1);

/// `-1` sends ICMP echo requests, to an IPv6 target ICMPv6 ones.
fn icmp_echo_replies(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let run = probe(&host, family, &["-1"]);
    check_run(
        &run,
        &Expected::four_echoes_answered(host.target(family), &host.host_if),
    );
}

test_both_families!(icmp_echo_replies);

/// The probes really reach the host: 4 SYNs to port 80 counted by nftables inside the namespace,
/// and with `-s 40000` they come from source ports 40000, 40001, 40002, 40003 (hping3 increments the
/// source port per probe; `seq` is reply dport minus the base port).
fn base_source_port_sets_probe_source_ports(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let from = match host.source(family) {
        IpAddr::V4(src) => format!("ip saddr {src}"),
        IpAddr::V6(src) => format!("ip6 saddr {src}"),
    };
    let syns_to_80 = format!("{from} tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn");
    host.add_counter("from_base", &format!("{syns_to_80} tcp sport 40000-40003"))
        .expect("nft counter");
    host.add_counter("to_80", &syns_to_80).expect("nft counter");
    let port = OPEN_PORT.to_string();
    let run = probe(&host, family, &["-S", "-p", &port, "-s", "40000"]);
    let ip = host.target(family);
    check_run(
        &run,
        &Expected::four_syns(ip, &host.host_if, replies(ip, OPEN_PORT, true)),
    );
    let syns = host.counter_packets("to_80").expect("counter");
    let from_base = host.counter_packets("from_base").expect("counter");
    assert_eq!(
        syns, 4,
        "namespace saw {syns} SYNs to port 80 ({from}), want 4\n{run}"
    );
    assert_eq!(
        from_base, 4,
        "only {from_base} of the SYNs came from ports 40000-40003\n{run}"
    );
}

test_both_families!(base_source_port_sets_probe_source_ports);

/// `-V` over IPv6: the first line of each reply shows the traffic class (`tos=`, hex), the flow
/// label (`flow=0x`, five hex digits) and the length, and neither DF nor `id=`. The namespace
/// sets both fields on all it sends (an nftables rule on its output), so the values are known.
#[test]
fn ipv6_verbose_lines_show_the_traffic_class_and_the_flow_label() {
    require_root();
    let host = TestHost::standard().expect("test host");
    host.rewrite_outgoing(
        "labelled",
        &format!("ip6 daddr {}", host.host_addr6),
        // DSCP CS1 is traffic class 0x20.
        "ip6 dscp set cs1 ip6 flowlabel set 0x5eed7",
    )
    .expect("nft rule");
    let (open, closed) = (OPEN_PORT.to_string(), CLOSED_PORT.to_string());
    let ip = host.addr6;
    for (mode, len) in [
        (&["-S", "-p", &open][..], 64),
        (&["-S", "-p", &closed], 60),
        (&["-1"], 48),
    ] {
        let run = probe(&host, Family::V6, &[&["-V"], mode].concat());
        let want = format!("len={len} ip={ip} ttl=64 tos=20 flow=0x5eed7 iplen={len}");
        let first_lines: Vec<&str> = run
            .stdout_lines()
            .into_iter()
            .filter(|line| line.starts_with("len="))
            .collect();
        assert_eq!(first_lines, vec![want.as_str(); 4], "{mode:?}\n{run}");
        assert_eq!(run.code(), Some(0), "{mode:?}\n{run}");
    }
}

/// A name with an IPv4 and an IPv6 address (from the namespace's hosts file): `-4` and `-6`
/// choose the family, and without either prober takes the address getaddrinfo gives first,
/// as `getent ahosts` shows it. prober runs inside the namespace and probes the namespace's own
/// addresses there (through its `lo`), so nothing leaves it.
#[test]
fn a_name_with_both_families_follows_dash_4_dash_6_and_else_getaddrinfo() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let name = "both.prober.test";
    host.add_host_name(name, &[host.addr.into(), host.addr6.into()])
        .expect("hosts file");
    let mut getent = host.command_in_ns("getent");
    getent.args(["ahosts", name]);
    let listed = prober_tests::run_checked(&mut getent).expect("getent ahosts");
    let first: IpAddr = listed
        .split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("getent ahosts {name} lists no address: {listed:?}"));
    let port = OPEN_PORT.to_string();
    for (option, ip) in [
        (Some("-4"), IpAddr::from(host.addr)),
        (Some("-6"), host.addr6.into()),
        (None, first),
    ] {
        let mut cmd = host.command_in_ns(prober_bin());
        cmd.args(option)
            .args(["-c", "4", "-i", "u200000", "-S", "-p", &port, name]);
        let run = run(cmd, TIMEOUT);
        // Over lo the SYN-ACK's window follows lo's MTU: only the lines' start is known.
        let header = tcp_syn_header(name, "lo", ip);
        let lines = run.stdout_lines();
        let start = format!(
            "len={} ip={ip} ttl=64 ",
            ip_header_len(ip) + SYN_ACK_TCP_LEN
        );
        assert!(
            lines.first() == Some(&header.as_str())
                && lines.len() == 5
                && lines[1..]
                    .iter()
                    .all(|l| l.starts_with(&start) && l.contains(" flags=SA ")),
            "{option:?}: want the header {header:?} and four SYN-ACK lines from {ip}\n{run}"
        );
        assert_eq!(run.code(), Some(0), "{option:?}\n{run}");
    }
}

/// `-q`: the header and the footer, no reply lines; replies still counted.
#[test]
fn quiet_prints_no_reply_lines() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = OPEN_PORT.to_string();
    let run = probe(&host, Family::V4, &["-q", "-S", "-p", &port]);
    let a = host.addr.to_string();
    let header = tcp_syn_header(&a, &host.host_if, host.addr);
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

    let diverted = probe(&host, Family::V4, &["-V", "-S", "-p", &closed]);
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

    let open = probe(&host, Family::V4, &["-S", "-p", &OPEN_PORT.to_string()]);
    assert_eq!(
        open.stdout.matches("flags=SA").count(),
        4,
        "the open port must still answer\n{open}"
    );
}
