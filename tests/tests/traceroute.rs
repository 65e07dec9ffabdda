//! Traceroute (`-T`) across a router namespace, side by side with hping3 (IPv4; hping3 has
//! no IPv6): `hop=N TTL 0 during transit from ip=…` and `hop=N hoprtt=… ms` for the router,
//! then the target's replies, with --tr-stop, --tr-keep-ttl and --tr-no-rtt, for TCP and ICMP
//! echo probes. Lines must be equal but for round trips and IP ids.

use std::net::IpAddr;
use std::time::Duration;

use prober_tests::{
    hping3_command,
    output::{parse_footer, parse_footer_then},
    packets, prober_command,
    proc::{run, Finished, Proc},
    require_root, test_both_families,
    udp_server::UdpServer,
    Family, TestHost, OPEN_PORT,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// A [`UdpServer`] answers there (only in the tests that start one).
const UDP_OPEN_PORT: u16 = 7;

/// A router namespace and a host behind it listening on [`OPEN_PORT`]: hop 1, then the host.
fn two_hops() -> (TestHost, TestHost) {
    require_root();
    let router = TestHost::new().expect("router");
    let mut host = TestHost::behind(&router).expect("test host behind the router");
    host.listen_tcp(OPEN_PORT).expect("listener");
    (router, host)
}

/// Runs prober (or hping3) with `-n`, `args`, and the target last.
fn traceroute(hping3: bool, args: &[&str], target: IpAddr) -> Finished {
    let target = target.to_string();
    let all = [&["-n"][..], args, &[&target]].concat();
    let command = if hping3 {
        hping3_command(&all)
    } else {
        prober_command(&all)
    };
    run(command, TIMEOUT)
}

/// A line with its round trip (`rtt=`, `hoprtt=`), IP `id=` and UDP source `port=` masked, as
/// they differ from run to run; the round trip must be printed with hping3's one decimal.
fn masked(line: &str) -> String {
    line.split(' ')
        .map(|word| match word.split_once('=') {
            Some((name @ ("rtt" | "hoprtt"), value)) => {
                let (_, decimals) = value.split_once('.').expect("a decimal round trip");
                assert_eq!(decimals.len(), 1, "{line}");
                format!("{name}=*")
            }
            Some(("id", _)) => "id=*".to_string(),
            // UDP's source port, in hping3's `status=0 port=… seq=…` (random per run).
            Some(("port", _)) => "port=*".to_string(),
            _ => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The run's lines after the header, masked.
fn lines(run: &Finished) -> Vec<String> {
    let out = run.stdout_lines();
    assert!(
        out.first().is_some_and(|l| l.starts_with("HPING ")),
        "{run}"
    );
    out[1..].iter().map(|line| masked(line)).collect()
}

/// prober's lines, footer counts and exit status are hping3's, both from the same `args`.
fn same_as_hping3(args: &[&str], target: IpAddr) -> Finished {
    let hping3 = traceroute(true, args, target);
    let prober = traceroute(false, args, target);
    assert_eq!(
        lines(&prober),
        lines(&hping3),
        "\n=== hping3 ===\n{hping3}\n=== prober ===\n{prober}"
    );
    let (h, p) = (
        parse_footer(&hping3.stderr).unwrap_or_else(|e| panic!("{e}\n{hping3}")),
        parse_footer(&prober.stderr).unwrap_or_else(|e| panic!("{e}\n{prober}")),
    );
    assert_eq!(
        (h.transmitted, h.received, h.loss_percent),
        (p.transmitted, p.received, p.loss_percent),
        "\n=== hping3 ===\n{hping3}\n=== prober ===\n{prober}"
    );
    assert_eq!(hping3.code(), prober.code(), "{prober}");
    prober
}

/// prober's traceroute of `target` with `args`: over IPv4 [`same_as_hping3`].
fn traced(family: Family, args: &[&str], target: IpAddr) -> Finished {
    match family {
        Family::V4 => same_as_hping3(args, target),
        Family::V6 => traceroute(false, args, target),
    }
}

/// The hop lines hping3 prints for `router` as hop `hop` (with `timed`, its hoprtt line).
fn hop_lines(hop: u8, router: IpAddr, timed: bool) -> Vec<String> {
    let mut lines = vec![format!("hop={hop} TTL 0 during transit from ip={router}")];
    if timed {
        lines.push(format!("hop={hop} hoprtt=* ms"));
    }
    lines
}

/// What every traceroute below must print, in either family: the router's hop lines, then
/// the target's replies (their lines, masked, must start with `len=` and hold the reply's own
/// fields, `reply_fields`), as hping3 prints them; its footer counts
/// `(transmitted, received)`, and the round trips it averages (a hop's counted unless
/// --tr-no-rtt).
fn check_trace(run: &Finished, hops: Vec<String>, reply_fields: &[String], counts: (u64, u64)) {
    let out = lines(run);
    assert_eq!(out[..hops.len()], hops[..], "{run}");
    let replies = &out[hops.len()..];
    assert_eq!(replies.len(), reply_fields.len(), "{run}");
    for (line, fields) in replies.iter().zip(reply_fields) {
        assert!(
            line.starts_with("len=") && line.contains(fields.as_str()),
            "{line:?} should hold {fields:?}\n{run}"
        );
    }
    let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!((footer.transmitted, footer.received), counts, "{run}");
    assert_eq!(run.code(), Some(0), "{run}");
}

/// The fields of the SYN-ACKs to probes `seqs`; the window is the family's (64240 over IPv4,
/// 64800 over IPv6 on a veth).
fn syn_replies(seqs: std::ops::Range<u16>) -> Vec<String> {
    seqs.map(|seq| format!("sport=80 flags=SA seq={seq} win="))
        .collect()
}

fn echo_replies(seqs: std::ops::Range<u16>) -> Vec<String> {
    seqs.map(|seq| format!("icmp_seq={seq} rtt=* ms")).collect()
}

/// A traceroute with `args` (split at spaces) of a host behind a router: the router's
/// address, and the run.
fn across_a_router(family: Family, args: &str) -> (IpAddr, Finished) {
    let (router, host) = two_hops();
    let args: Vec<&str> = args.split(' ').collect();
    let run = traced(family, &args, host.target(family));
    (router.target(family), run)
}

fn tcp_traceroute_finds_the_router_then_the_port(family: Family) {
    let (router, run) = across_a_router(family, "-T -S -p 80 -c 3 -i u300000");
    check_trace(&run, hop_lines(1, router, true), &syn_replies(1..3), (3, 3));
}

fn icmp_traceroute_finds_the_router_then_the_host(family: Family) {
    let (router, run) = across_a_router(family, "-T -1 -c 3 -i u300000");
    check_trace(
        &run,
        hop_lines(1, router, true),
        &echo_replies(1..3),
        (3, 3),
    );
}

fn tr_stop_ends_at_the_targets_answer(family: Family) {
    let (router, run) = across_a_router(family, "-T -S -p 80 -c 5 -i u500000 --tr-stop");
    check_trace(&run, hop_lines(1, router, true), &syn_replies(1..2), (2, 2));
    // At once: neither the three probes left (1.5 s) nor the wait for late replies (1 s).
    assert!(run.elapsed < Duration::from_millis(2500), "{run}");
}

fn tr_keep_ttl_watches_the_first_hop(family: Family) {
    let (router, run) = across_a_router(family, "-T -S -p 80 -c 3 -i u300000 --tr-keep-ttl");
    let hops = (0..3).flat_map(|_| hop_lines(1, router, true)).collect();
    check_trace(&run, hops, &[], (3, 3));
}

fn tr_no_rtt_leaves_out_the_hop_round_trips(family: Family) {
    let (router, run) = across_a_router(family, "-T -1 -c 3 -i u300000 --tr-no-rtt");
    check_trace(
        &run,
        hop_lines(1, router, false),
        &echo_replies(1..3),
        (3, 3),
    );
}

/// A UDP traceroute to a closed port: the router's hop, then the target's port unreachables
/// with hping3's `status=0 port=… seq=…` lines, naming each probe by its IP id (IPv4) or
/// checksum (IPv6), as their source port stays the same (one flow; hping3's counts up).
fn udp_traceroute_finds_the_router_then_the_closed_port(family: Family) {
    let (router, host) = two_hops();
    let target = host.target(family);
    let run = traced(
        family,
        &["-T", "-2", "-p", "53", "-c", "3", "-i", "u300000"],
        target,
    );
    let out = lines(&run);
    assert_eq!(
        out[..2],
        hop_lines(1, router.target(family), true)[..],
        "{run}"
    );
    let unreachable = format!("ICMP Port Unreachable from ip={target}");
    assert_eq!(
        out[2..].iter().filter(|line| **line == unreachable).count(),
        2,
        "{run}"
    );
    for seq in 1..3 {
        assert!(
            out.iter()
                .any(|line| line.starts_with("status=0 port=")
                    && line.ends_with(&format!(" seq={seq}"))),
            "seq {seq}\n{run}"
        );
    }
    let ports: std::collections::BTreeSet<_> = run
        .stdout_lines()
        .into_iter()
        .filter_map(|line| {
            Some(
                line.strip_prefix("status=0 port=")?
                    .split(' ')
                    .next()?
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(ports.len(), 1, "one source port: {ports:?}\n{run}");
}

/// A UDP traceroute to a port a real server answers (from its namespace): an answer echoes
/// nothing of its probe, and a traceroute's probes leave from one port, so each is given to
/// the latest probe and timed from its send (not from probe 0's, the slot its port names).
fn udp_traceroute_gives_answers_to_the_latest_probe(family: Family) {
    let (_router, host) = two_hops();
    let _server = UdpServer::start(&host, family, UDP_OPEN_PORT);
    let port = UDP_OPEN_PORT.to_string();
    let args = ["-T", "-2", "-p", &port, "-c", "3", "-i", "u300000"];
    let run = traceroute(false, &args, host.target(family));
    let field = |line: &str, name: &str| -> f64 {
        let word = line.split(' ').find_map(|word| word.strip_prefix(name));
        word.and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line}\n{run}"))
    };
    let answers: Vec<(f64, f64)> = run
        .stdout_lines()
        .iter()
        .filter(|line| line.starts_with("len="))
        .map(|line| (field(line, "seq="), field(line, "rtt=")))
        .collect();
    assert_eq!(answers.len(), 2, "{run}");
    for (answer, seq) in answers.iter().zip([1.0, 2.0]) {
        assert_eq!(answer.0, seq, "{run}");
        assert!(
            answer.1 < 250.0,
            "timed from its own probe's send: {answer:?}\n{run}"
        );
    }
    let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!((footer.transmitted, footer.received), (3, 3), "{run}");
}

/// hping3's -q keeps the hop lines, and only them.
fn quiet_shows_the_hops_alone(family: Family) {
    let (router, run) = across_a_router(family, "-q -T -S -p 80 -c 3 -i u300000");
    check_trace(&run, hop_lines(1, router, true), &[], (3, 3));
}

test_both_families!(
    quiet_shows_the_hops_alone,
    udp_traceroute_finds_the_router_then_the_closed_port,
    udp_traceroute_gives_answers_to_the_latest_probe,
    tcp_traceroute_finds_the_router_then_the_port,
    icmp_traceroute_finds_the_router_then_the_host,
    tr_stop_ends_at_the_targets_answer,
    tr_keep_ttl_watches_the_first_hop,
    tr_no_rtt_leaves_out_the_hop_round_trips
);

/// A probe as it crossed the router's veth.
#[derive(Debug)]
struct SeenProbe {
    /// Its TTL (hop limit).
    ttl: u8,
    /// Its flow as equal-cost routing hashes it: addresses, protocol, the first four
    /// transport bytes.
    flow: Vec<u8>,
    /// What tells it from the flow's other probes: the four transport bytes after the flow's
    /// (TCP's sequence number, ICMP's identifier and sequence number, UDP's length and
    /// checksum), but for UDP over IPv4 its IP id.
    number: Vec<u8>,
}

/// The probes from `source` to `target` that the packet socket `socket` (on the router's
/// veth) read until `until` ended.
fn probes_seen(
    socket: std::os::fd::OwnedFd,
    (source, target): (IpAddr, IpAddr),
    until: impl FnOnce() -> Finished,
) -> (Finished, Vec<SeenProbe>) {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut frame = [0u8; 2048];
            while !done.load(Ordering::Acquire) {
                // SAFETY: the buffer outlives the call, its size given (reads time out).
                let read = unsafe {
                    libc::recv(
                        socket.as_raw_fd(),
                        frame.as_mut_ptr().cast(),
                        frame.len(),
                        0,
                    )
                };
                if read > 0 {
                    seen.extend(probe_in(&frame[..read as usize], source, target));
                }
            }
            seen
        })
    };
    let run = until();
    done.store(true, Ordering::Release);
    (run, reader.join().expect("the capture thread"))
}

/// A probe from `source` to `target` in an Ethernet `frame` (see [`probes_seen`]).
fn probe_in(frame: &[u8], source: IpAddr, target: IpAddr) -> Option<SeenProbe> {
    let ip = frame.get(14..)?;
    let (ttl, protocol, addresses, transport, ip_id) = match (source, target) {
        (IpAddr::V4(s), IpAddr::V4(t)) if ip.get(12..20)? == [s.octets(), t.octets()].concat() => {
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            (
                ip[8],
                ip[9],
                &ip[12..20],
                ip.get(header_len..)?,
                Some(&ip[4..6]),
            )
        }
        (IpAddr::V6(s), IpAddr::V6(t)) if ip.get(8..40)? == [s.octets(), t.octets()].concat() => {
            (ip[7], ip[6], &ip[8..40], ip.get(40..)?, None)
        }
        _ => return None,
    };
    // Our kernel's RSTs to the target's SYN-ACKs are no probes.
    if protocol == packets::IPPROTO_TCP && transport.get(13)? & packets::TCP_RST != 0 {
        return None;
    }
    Some(SeenProbe {
        ttl,
        flow: [addresses, &[protocol], transport.get(..4)?].concat(),
        number: match ip_id {
            Some(id) if protocol == packets::IPPROTO_UDP => id.to_vec(),
            _ => transport.get(4..8)?.to_vec(),
        },
    })
}

fn probes_of_a_traceroute_are_one_flow(family: Family) {
    for args in [
        "-T -S -p 80 -c 3 -i u300000",
        "-T -1 -c 3 -i u300000",
        "-T -2 -p 53 -c 3 -i u300000",
    ] {
        let (router, host) = two_hops();
        let interface = router.peer_if.clone();
        let socket = router
            .in_ns(move || prober_tests::forger::open_socket(&interface))
            .expect("in the router's namespace")
            .expect("a packet socket on the router's veth");
        let ends = (router.source(family), host.target(family));
        let args: Vec<&str> = args.split(' ').collect();
        let (run, probes) = probes_seen(socket, ends, || {
            traceroute(false, &args, host.target(family))
        });
        let ttls: Vec<u8> = probes.iter().map(|probe| probe.ttl).collect();
        assert_eq!(ttls, [1, 2, 2], "the router's hop, then the host's\n{run}");
        assert!(
            probes.iter().all(|probe| probe.flow == probes[0].flow),
            "one flow: {probes:02x?}\n{run}"
        );
        let numbers: std::collections::BTreeSet<_> =
            probes.iter().map(|probe| &probe.number).collect();
        assert_eq!(numbers.len(), 3, "told apart: {probes:02x?}\n{run}");
        assert_eq!(run.code(), Some(0), "{run}");
    }
}

test_both_families!(probes_of_a_traceroute_are_one_flow);

/// Where forged errors come from and what they quote: the router's own address, sent from
/// its namespace, to us, about probes to the target (or `other_target`), with the packet
/// socket `capture` on the router's veth open before the first probe.
struct Forging {
    router: TestHost,
    _host: TestHost,
    us: IpAddr,
    target: IpAddr,
    router_addr: IpAddr,
    other_target: IpAddr,
    time_exceeded: (u8, u8),
    capture: std::os::fd::OwnedFd,
}

/// A `-V` traceroute of 4 probes with `mode` (the probes' options), all with TTL 1
/// (--tr-keep-ttl), across a router; the errors `forge` makes while it runs (once the run is
/// under way) are sent from the router's namespace; then the run's checks, by
/// [`check_only_real_hops`] (`unmatched`: the forgeries XDP counts).
fn forged_while_tracing(
    family: Family,
    mode: &[&str],
    forge: impl FnOnce(&Forging, &mut Proc) -> Vec<Vec<u8>>,
    unmatched: u64,
) {
    let (router, host) = two_hops();
    let interface = router.peer_if.clone();
    let capture = router
        .in_ns(move || prober_tests::forger::open_socket(&interface))
        .expect("in the router's namespace")
        .expect("a packet socket on the router's veth");
    let forging = Forging {
        us: router.source(family),
        target: host.target(family),
        router_addr: router.target(family),
        other_target: match family {
            Family::V4 => "198.18.0.78".parse().unwrap(),
            Family::V6 => "2001:db8:ffff::78".parse().unwrap(),
        },
        time_exceeded: match family {
            Family::V4 => (11, 0),
            Family::V6 => (3, 0),
        },
        router,
        _host: host,
        capture,
    };
    let target = forging.target.to_string();
    let common = [
        "-n",
        "-V",
        "-T",
        "--tr-keep-ttl",
        "-c",
        "4",
        "-i",
        "u500000",
    ];
    let args = [&common[..], mode, &[&target]].concat();
    let mut prober = Proc::spawn(prober_command(&args));
    let forged = forge(&forging, &mut prober);
    forging
        .router
        .send_raw_from_namespace(forged)
        .expect("sending forged errors");
    let run = prober.wait(TIMEOUT);
    check_only_real_hops(&run, forging.router_addr, 4, unmatched);
}

/// Time exceeded quoting a header that is not one of our SYNs: another sequence number (not
/// a probe's, which XDP counts, or a probe's never sent), another source port, another
/// target. None is shown; the real ones are.
fn forged_time_exceeded_is_never_shown(family: Family) {
    let mode = ["-S", "-p", "80", "-s", "40000", "-M", "1000"];
    let forge = |f: &Forging, prober: &mut Proc| {
        prober.expect_line(Duration::from_secs(10), "the first line");
        [
            (f.target, 40000, 1001),
            (f.target, 40000, 1000 + (9 << 16)),
            (f.target, 40001, 1000),
            (f.other_target, 40000, 1000),
        ]
        .map(|(quoted_target, port, seq)| {
            let ends = (f.router_addr, f.us, quoted_target);
            packets::icmp_error(ends, f.time_exceeded, (port, 80, seq))
        })
        .to_vec()
    };
    forged_while_tracing(family, &mode, forge, 1);
}

/// The `-V` run showed `hops` answers from `router` as hop 1 and nothing else and counted
/// them as received; its XDP took one forgery more, quoting a probe not sent (which shows that
/// the forgeries arrived), and counted `unmatched` others.
fn check_only_real_hops(run: &Finished, router: IpAddr, hops: u64, unmatched: u64) {
    let shown: Vec<String> = run
        .stdout_lines()
        .iter()
        .skip_while(|line| !line.starts_with("HPING "))
        .skip(1)
        .map(|line| masked(line))
        .collect();
    let want: Vec<_> = (0..hops).flat_map(|_| hop_lines(1, router, true)).collect();
    assert_eq!(shown, want, "only the real errors are shown\n{run}");
    let (footer, _) = parse_footer_then(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!((footer.transmitted, footer.received), (hops, hops), "{run}");
    for counts in [
        format!(
            "xdp: {} replies matched, {unmatched} unmatched packets",
            hops + 1
        ),
        "1 replies to probes never sent".to_string(),
    ] {
        assert!(run.stderr.contains(&counts), "want {counts:?}\n{run}");
    }
    assert_eq!(run.code(), Some(0), "{run}");
}

/// The first probe the packet socket `socket` reads from `source` to `target`.
fn first_probe(socket: &std::os::fd::OwnedFd, (source, target): (IpAddr, IpAddr)) -> SeenProbe {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut frame = [0u8; 2048];
    while std::time::Instant::now() < deadline {
        // SAFETY: the buffer outlives the call, its size given (reads time out).
        let read = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                frame.as_mut_ptr().cast(),
                frame.len(),
                0,
            )
        };
        if let Some(probe) = (read > 0)
            .then(|| probe_in(&frame[..read as usize], source, target))
            .flatten()
        {
            return probe;
        }
    }
    panic!("no probe crossed the router's veth within 10 s");
}

/// As [`forged_time_exceeded_is_never_shown`], about echo requests: quoting our identifier
/// with probe 1's sequence number (whose identifier is one less), or another target; and
/// probe 9's, never sent in this run.
fn forged_time_exceeded_about_echoes_is_never_shown(family: Family) {
    let forge = |f: &Forging, _: &mut Proc| {
        let [i0, i1, s0, s1] = first_probe(&f.capture, (f.us, f.target)).number[..] else {
            panic!("an echo request's identifier and sequence number");
        };
        let (id, seq) = (u16::from_be_bytes([i0, i1]), u16::from_be_bytes([s0, s1]));
        assert_eq!(seq, 0, "the first probe");
        // Ours less 9, in one's complement.
        let probe_9 = if id > 9 { id - 9 } else { id + (0xffff - 9) };
        [
            (f.target, id, 1),
            (f.other_target, id, 0),
            (f.target, probe_9, 9),
        ]
        .map(|(quoted_target, id, seq)| {
            let ends = (f.router_addr, f.us, quoted_target);
            packets::icmp_error_about_echo(ends, f.time_exceeded, (id, seq))
        })
        .to_vec()
    };
    forged_while_tracing(family, &["-1"], forge, 0);
}

test_both_families!(
    forged_time_exceeded_is_never_shown,
    forged_time_exceeded_about_echoes_is_never_shown
);
