//! UDP mode (-2), side by side with hping3 where it speaks the family (IPv4): a closed port
//! answers with the target kernel's ICMP port unreachable (hping3's `ICMP Port Unreachable
//! from ip=…` and `status=0 port=… seq=…`), an open one with a real UDP socket's answer (a
//! server in the namespace), a dropped one (nftables) with silence. Sweeps classify them as
//! nmap -sU does: closed, open, open|filtered, and filtered for other ICMP errors. Forged
//! answers and errors, sent from inside the namespace, are never shown.

use std::net::{IpAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use prober_tests::{
    output::{normalize, parse_footer},
    packets::{self, IpHeader, IPPROTO_UDP},
    ping_side, prober_command, prober_past_its_first_error,
    proc::{run, Finished, Proc},
    require_root,
    sweep::{sweep, IcmpReason, Status, Swept},
    test_both_families,
    udp_server::{UdpServer, ANSWER},
    Family, TestHost,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Nothing listens there: the target's kernel answers port unreachable.
const CLOSED_PORT: u16 = 9999;
/// A [`UdpServer`] answers there.
const OPEN_PORT: u16 = 7;
/// nftables drops UDP to it.
const DROPPED_PORT: u16 = 161;
/// nftables rejects UDP to it with admin-prohibited.
const REJECTED_PORT: u16 = 162;
const BASE_PORT: u16 = 40000;
/// Runs prober (or hping3, with `hping3`) with `args` and then the target.
fn ping(hping3: bool, args: &[&str], target: IpAddr) -> Finished {
    ping_side(hping3, args, target, TIMEOUT)
}

/// `-c 2` UDP probes to `port` from [`BASE_PORT`] up.
fn udp_args(port: &str) -> Vec<&str> {
    vec![
        "-n", "-2", "-p", port, "-s", "40000", "-c", "2", "-i", "u200000",
    ]
}

/// The run printed the UDP header for `target`, counted `received` replies of 2 and exited
/// `code`; what it printed after the header.
fn checked_lines(run: &Finished, target: IpAddr, received: u64, code: i32) -> Vec<String> {
    checked_lines_with_data(run, target, 0, received, code)
}

/// [`checked_lines`] of probes carrying `data` bytes.
fn checked_lines_with_data(
    run: &Finished,
    target: IpAddr,
    data: usize,
    received: u64,
    code: i32,
) -> Vec<String> {
    let out = run.stdout_lines();
    let headers = match target {
        IpAddr::V4(_) => 28,
        IpAddr::V6(_) => 48,
    };
    let header_end = format!(" {target}): udp mode set, {headers} headers + {data} data bytes");
    assert!(
        out.first()
            .is_some_and(|l| l.starts_with(&format!("HPING {target} (")) && l.contains(&header_end)),
        "{run}"
    );
    let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!(
        (footer.transmitted, footer.received),
        (2, received),
        "{run}"
    );
    assert_eq!(run.code(), Some(code), "{run}");
    out[1..].iter().map(|line| line.to_string()).collect()
}

fn closed_port_same_as_hping3(family: Family) {
    require_root();
    let host = TestHost::new().expect("test host");
    let target = host.target(family);
    let port = CLOSED_PORT.to_string();
    let error = format!("ICMP Port Unreachable from ip={target}");
    let lines = [0, 1].map(|seq| {
        [
            error.clone(),
            format!("status=0 port={} seq={seq}", BASE_PORT + seq),
        ]
    });
    let lines = lines.concat();
    let prober = ping(false, &udp_args(&port), target);
    assert_eq!(checked_lines(&prober, target, 2, 0), lines, "{prober}");
    // hping3 speaks IPv4 only.
    if family == Family::V4 {
        let hping3 = ping(true, &udp_args(&port), target);
        assert_eq!(checked_lines(&hping3, target, 2, 0), lines, "{hping3}");
        assert_eq!(hping3.stdout_lines(), prober.stdout_lines());
    }
}

/// An nftables reject, with data in the probes (whose length the quote must state): hping3's
/// `ICMP Packet filtered from ip=…` and the probe's `status=0` line.
fn rejected_port_with_data_same_as_hping3(family: Family) {
    require_root();
    let host = TestHost::new().expect("test host");
    host.filter_udp_port(REJECTED_PORT, Some("admin-prohibited"))
        .expect("nft reject");
    let target = host.target(family);
    let port = REJECTED_PORT.to_string();
    let mut args = udp_args(&port);
    args.extend(["-d", "10"]);
    let error = format!("ICMP Packet filtered from ip={target}");
    let lines = [0, 1]
        .map(|seq| {
            [
                error.clone(),
                format!("status=0 port={} seq={seq}", BASE_PORT + seq),
            ]
        })
        .concat();
    let prober = ping(false, &args, target);
    assert_eq!(
        checked_lines_with_data(&prober, target, 10, 2, 0),
        lines,
        "{prober}"
    );
    if family == Family::V4 {
        let hping3 = ping(true, &args, target);
        assert_eq!(
            checked_lines_with_data(&hping3, target, 10, 2, 0),
            lines,
            "{hping3}"
        );
    }
}

/// `-t 1` across a router: its time exceeded, quoting our probe, as hping3 prints it (in UDP
/// mode too without the probe's `status=0` line, and untimed).
fn ttl_exceeded_in_transit_same_as_hping3(family: Family) {
    require_root();
    let router = TestHost::new().expect("router");
    let host = TestHost::behind(&router).expect("test host behind the router");
    let target = host.target(family);
    let port = CLOSED_PORT.to_string();
    let mut args = udp_args(&port);
    args.extend(["-t", "1"]);
    let error = format!("TTL 0 during transit from ip={}", router.target(family));
    let lines = [error.clone(), error];
    let untimed = |run: &Finished| {
        let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
        assert_eq!(
            (footer.min, footer.avg, footer.max),
            (0.0, 0.0, 0.0),
            "{run}"
        );
    };
    let prober = ping(false, &args, target);
    assert_eq!(checked_lines(&prober, target, 2, 0), lines, "{prober}");
    untimed(&prober);
    if family == Family::V4 {
        let hping3 = ping(true, &args, target);
        assert_eq!(checked_lines(&hping3, target, 2, 0), lines, "{hping3}");
        untimed(&hping3);
    }
}

fn open_port_same_as_hping3(family: Family) {
    require_root();
    let host = TestHost::new().expect("test host");
    let _server = UdpServer::start(&host, family, OPEN_PORT);
    let target = host.target(family);
    let port = OPEN_PORT.to_string();
    let masked = |run: &Finished| -> Vec<String> {
        checked_lines(run, target, 2, 0)
            .iter()
            .map(|line| {
                normalize(line, family == Family::V4)
                    .unwrap_or_else(|e| panic!("{e}\n{run}"))
                    .0
            })
            .collect()
    };
    let len = packets_len(family) + 8 + ANSWER.len();
    let want: Vec<String> = (0..2)
        .map(|seq| match family {
            Family::V4 => format!("len={len} ip={target} ttl=64 DF id=* seq={seq} rtt=* ms"),
            Family::V6 => format!("len={len} ip={target} ttl=64 seq={seq} rtt=* ms"),
        })
        .collect();
    let prober = ping(false, &udp_args(&port), target);
    assert_eq!(masked(&prober), want, "{prober}");
    if family == Family::V4 {
        let hping3 = ping(true, &udp_args(&port), target);
        assert_eq!(masked(&hping3), want, "{hping3}");
    }
}

/// The IP header's length in `family`.
fn packets_len(family: Family) -> usize {
    match family {
        Family::V4 => 20,
        Family::V6 => 40,
    }
}

fn dropped_port_is_silence(family: Family) {
    require_root();
    let host = TestHost::new().expect("test host");
    host.filter_udp_port(DROPPED_PORT, None).expect("nft drop");
    let target = host.target(family);
    let port = DROPPED_PORT.to_string();
    let prober = ping(false, &udp_args(&port), target);
    assert!(checked_lines(&prober, target, 0, 1).is_empty(), "{prober}");
    if family == Family::V4 {
        let hping3 = ping(true, &udp_args(&port), target);
        assert!(checked_lines(&hping3, target, 0, 1).is_empty(), "{hping3}");
    }
    let dropped = host
        .counter_packets(&format!("udp_{DROPPED_PORT}"))
        .expect("nft counter");
    let runs = if family == Family::V4 { 2 } else { 1 };
    assert_eq!(
        dropped,
        2 * runs,
        "every probe reached the namespace\n{prober}"
    );
}

test_both_families!(
    closed_port_same_as_hping3,
    rejected_port_with_data_same_as_hping3,
    ttl_exceeded_in_transit_same_as_hping3,
    open_port_same_as_hping3,
    dropped_port_is_silence
);

/// A host with a UDP server on [`OPEN_PORT`], nftables dropping [`DROPPED_PORT`] and rejecting
/// [`REJECTED_PORT`] with admin-prohibited; nothing on [`CLOSED_PORT`].
fn udp_host(family: Family) -> (TestHost, UdpServer) {
    require_root();
    let host = TestHost::new().expect("test host");
    let server = UdpServer::start(&host, family, OPEN_PORT);
    host.filter_udp_port(DROPPED_PORT, None).expect("nft drop");
    host.filter_udp_port(REJECTED_PORT, Some("admin-prohibited"))
        .expect("nft reject");
    (host, server)
}

fn all_ports() -> String {
    format!("{OPEN_PORT},{CLOSED_PORT},{DROPPED_PORT},{REJECTED_PORT}")
}

/// A UDP sweep of [`all_ports`] on `target` in `format`, with `extra` arguments.
fn udp_sweep(format: &str, extra: &[&str], target: IpAddr) -> Swept {
    let (ports, target) = (all_ports(), target.to_string());
    let mut all = vec!["-2", "--wait", "1", "-O", format, "-p", &ports];
    all.extend(extra);
    all.push(&target);
    sweep(&all, TIMEOUT)
}

fn sweeps_classify_every_state(family: Family) {
    let (host, _server) = udp_host(family);
    let target = host.target(family);
    let swept = udp_sweep("json", &[], target);
    let results = swept.json();
    let status_of = |port: u16| {
        results
            .iter()
            .find(|r| r.port == port)
            .map(|r| (r.status, r.icmp_from))
    };
    for (port, want) in [
        (OPEN_PORT, (Status::Open, None)),
        (CLOSED_PORT, (Status::PortUnreachable, Some(target))),
        (DROPPED_PORT, (Status::OpenFiltered, None)),
        (
            REJECTED_PORT,
            (
                Status::IcmpFiltered(IcmpReason::AdminProhibited),
                Some(target),
            ),
        ),
    ] {
        assert_eq!(status_of(port), Some(want), "port {port}\n{}", swept.run);
    }
    assert_eq!(results.len(), 4, "{}", swept.run);
    let open = results.iter().find(|r| r.port == OPEN_PORT).unwrap();
    assert!(open.rtt_ns.is_some(), "timed\n{}", swept.run);
    let footer = swept.footer();
    assert_eq!(
        (
            footer.open,
            footer.closed,
            footer.filtered,
            footer.open_filtered
        ),
        (1, 1, 1, 1),
        "{}",
        swept.run
    );
    assert_eq!(swept.run.code(), Some(0), "{}", swept.run);

    let csv = udp_sweep("csv", &[], target);
    let rows = csv.run.stdout_lines();
    for (port, status) in [
        (OPEN_PORT, "open,udp-response"),
        (CLOSED_PORT, "closed,port-unreach"),
        (DROPPED_PORT, "open|filtered,no-response"),
        (REJECTED_PORT, "filtered,admin-prohibited"),
    ] {
        let row = format!("{target},{port},udp,{status},");
        assert!(
            rows.iter().any(|r| r.starts_with(&row)),
            "no row {row}…\n{}",
            csv.run
        );
    }
    let list = udp_sweep("list", &[], target);
    let open_lines: Vec<_> = list
        .run
        .stdout_lines()
        .into_iter()
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(open_lines.len(), 1, "{}", list.run);
    assert!(
        open_lines[0].starts_with(&format!("open udp {OPEN_PORT} {target} ")),
        "{}",
        list.run
    );
    let table = udp_sweep("table", &[], target);
    let out = table.run.stdout_lines();
    assert!(
        out.iter()
            .any(|l| l.starts_with(&format!("{OPEN_PORT:5} "))),
        "the open port's row\n{}",
        table.run
    );
    let not_responding =
        format!("Not responding ports: ({DROPPED_PORT} snmp) ({REJECTED_PORT} snmp-trap) ");
    assert!(
        table.run.stdout.contains(&not_responding) || table.run.stderr.contains(&not_responding),
        "want {not_responding:?}\n{}",
        table.run
    );
}

/// An ICMP port unreachable from `from` to `to` quoting a UDP datagram from `to:sport` to
/// `target:dport` whose length field says `length`.
fn port_unreachable(
    (from, to, target): (IpAddr, IpAddr, IpAddr),
    (sport, dport, length): (u16, u16, u16),
) -> Vec<u8> {
    let mut datagram = [
        &sport.to_be_bytes()[..],
        &dport.to_be_bytes(),
        &length.to_be_bytes(),
        &[0, 0],
    ]
    .concat();
    datagram.resize(usize::from(length), 0);
    packets::fill_checksum(to, target, IPPROTO_UDP, &mut datagram);
    let quoted = IpHeader::new(to, target, IPPROTO_UDP).packet(&datagram);
    let port_unreachable = match from {
        IpAddr::V4(_) => (3, 3),
        IpAddr::V6(_) => (1, 4),
    };
    packets::icmp_error_quoting(from, to, port_unreachable, &quoted)
}

fn forged_errors_are_never_shown(family: Family) {
    require_root();
    let host = TestHost::new().expect("test host");
    let (target, source) = (host.target(family), host.source(family));
    let port = CLOSED_PORT.to_string();
    let args = [
        "-V", "-2", "-p", &port, "-s", "40000", "-c", "3", "-i", "u500000",
    ];
    let mut prober = prober_past_its_first_error(&args, target);
    // Quoting a source port no probe left from, the next probe's port with another length
    // than the probes', and another probed port.
    let forged = [
        (BASE_PORT + 100, CLOSED_PORT, 8),
        (BASE_PORT + 1, CLOSED_PORT, 8 + 5),
        (BASE_PORT + 1, CLOSED_PORT + 1, 8),
    ]
    .map(|quote| port_unreachable((target, source, target), quote));
    host.send_raw_from_namespace(forged.to_vec())
        .expect("sending forged errors");
    let run = prober.wait(TIMEOUT);
    let shown: Vec<_> = run
        .stdout_lines()
        .into_iter()
        .filter(|line| line.starts_with("status="))
        .collect();
    let want: Vec<String> = (0..3)
        .map(|seq| format!("status=0 port={} seq={seq}", BASE_PORT + seq))
        .collect();
    assert_eq!(shown, want, "only the real errors are shown\n{run}");
    // The wrong length is counted in XDP, the port never probed from in userspace; another
    // probed port is not ours at all.
    let counts = "xdp: 4 replies matched, 1 unmatched packets from the target";
    assert!(run.stderr.contains(counts), "want {counts:?}\n{run}");
    assert!(
        run.stderr.contains("1 replies to probes never sent"),
        "{run}"
    );
    assert_eq!(run.code(), Some(0), "{run}");
}

/// UDP answers from a swept (host, port) to source ports of the sweep's block that no probe to
/// it left from: a forger who does not know which port the probe used is never believed.
fn forged_sweep_answers_are_never_shown(family: Family) {
    let (host, _server) = udp_host(family);
    let (target, source) = (host.target(family), host.source(family));
    let (ports, target_text) = (all_ports(), target.to_string());
    let args = [
        "-V",
        "-2",
        "--wait",
        "2",
        "-O",
        "json",
        "-p",
        &ports,
        &target_text,
    ];
    let mut prober = Proc::spawn(prober_command(&args));
    // The probes are out within milliseconds; the answers come while it waits.
    thread::sleep(Duration::from_millis(700));
    let forged: Vec<Vec<u8>> = (100..105)
        .map(|offset| {
            let mut datagram = [
                &DROPPED_PORT.to_be_bytes()[..],
                &(61440u16 + offset).to_be_bytes(),
                &[0, 13, 0, 0],
                ANSWER,
            ]
            .concat();
            packets::fill_checksum(target, source, IPPROTO_UDP, &mut datagram);
            IpHeader::new(target, source, IPPROTO_UDP).packet(&datagram)
        })
        .collect();
    host.send_raw_from_namespace(forged)
        .expect("sending forged answers");
    let run = prober.wait(TIMEOUT);
    let dropped = run
        .stdout_lines()
        .into_iter()
        .find(|line| line.contains(&format!("\"port\":{DROPPED_PORT},")))
        .unwrap_or_else(|| panic!("no result for the dropped port\n{run}"))
        .to_string();
    assert!(dropped.contains("\"status\":\"open|filtered\""), "{run}");
    let taken_for_none =
        "5 answers taken for none: at a source port no probe to their host and port left from";
    assert!(run.stderr.contains(taken_for_none), "{run}");
}

test_both_families!(
    sweeps_classify_every_state,
    forged_errors_are_never_shown,
    forged_sweep_answers_are_never_shown
);

/// A UDP sweep's block of source ports keeps clear of the host's UDP sockets, whose traffic
/// its matcher would otherwise take for answers: `-s` on a block holding one is refused.
#[test]
fn a_udp_sweep_refuses_a_block_holding_a_udp_socket() {
    const HELD: u16 = 65001;
    require_root();
    let host = TestHost::new().expect("test host");
    let _socket = UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, HELD)).expect("host socket");
    let target = host.addr.to_string();
    let refused = run(
        prober_command(&["-2", "-s", "61440", "-p", "7,8", &target]),
        TIMEOUT,
    );
    assert_eq!(refused.code(), Some(2), "{refused}");
    let why = format!(
        "source ports 61440-65535 (-s 61440) include port {HELD}, held by a UDP socket of this host"
    );
    assert!(refused.stderr.contains(&why), "want {why:?}\n{refused}");
    assert!(refused.stdout.is_empty(), "nothing probed\n{refused}");
}

/// `--retries 1` probes the silent ports again, from the next pass's source ports, and takes
/// the answers to either pass: the open port answered the first, the dropped one stays
/// open|filtered after both.
#[test]
fn retries_probe_silent_udp_ports_again() {
    let (host, _server) = udp_host(Family::V4);
    let target = host.target(Family::V4);
    let swept = udp_sweep("json", &["--retries", "1"], target);
    let results = swept.json();
    let status = |port: u16| results.iter().find(|r| r.port == port).map(|r| r.status);
    assert_eq!(status(OPEN_PORT), Some(Status::Open), "{}", swept.run);
    assert_eq!(
        status(DROPPED_PORT),
        Some(Status::OpenFiltered),
        "{}",
        swept.run
    );
    let dropped = host
        .counter_packets(&format!("udp_{DROPPED_PORT}"))
        .expect("nft counter");
    assert_eq!(
        dropped, 2,
        "two passes reached the dropped port\n{}",
        swept.run
    );
    assert_eq!(
        swept.footer().sent,
        5,
        "4 probes, then the silent one again\n{}",
        swept.run
    );
}
