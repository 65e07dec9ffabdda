//! ICMP and ICMPv6 errors answering TCP probes, matched in XDP by the probe they quote: in a
//! ping, hping3's lines (`ICMP Packet filtered from ip=…`), counted as received as hping3
//! counts them (and, as hping3, left out of the round-trip figures); in a sweep, `filtered`
//! with the error's reason and sender. The errors come from the namespace's own kernel (an
//! nftables reject) or, for time exceeded, from a router namespace; forged ones, quoting a
//! header that is not one of our probes, are sent from inside the namespace and must never be
//! shown or counted as replies.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use prober_tests::{
    output::parse_footer,
    packets, ping_side, prober_command, prober_past_its_first_error,
    proc::{Finished, Proc},
    require_root,
    sweep::{sweep, IcmpReason, Status, SweepResult, Swept},
    test_both_families, Family, TestHost, CLOSED_PORT, FILTERED_PORT, OPEN_PORT,
};

const TIMEOUT: Duration = Duration::from_secs(30);
const REJECTED_PORT: u16 = 25;
const BASE_PORT: u16 = 40000;

/// Runs prober (or hping3, with `hping3`) with `args` and then the target.
fn ping(hping3: bool, args: &[&str], target: IpAddr) -> Finished {
    ping_side(hping3, args, target, TIMEOUT)
}

/// The run printed the header, then `lines` as they are, counted them all as received out of
/// `sent`, with no round trips, and exited 0.
fn check_errors_shown(run: &Finished, sent: u64, lines: &[String]) {
    let out = run.stdout_lines();
    assert!(
        out.first().is_some_and(|l| l.starts_with("HPING ")),
        "{run}"
    );
    assert_eq!(&out[1..], lines, "{run}");
    let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!(
        (footer.transmitted, footer.received),
        (sent, lines.len() as u64),
        "{run}"
    );
    assert_eq!(
        (footer.min, footer.avg, footer.max),
        (0.0, 0.0, 0.0),
        "{run}"
    );
    assert_eq!(run.code(), Some(0), "{run}");
}

/// A test host whose kernel rejects TCP to [`REJECTED_PORT`] with admin-prohibited.
fn rejecting_host() -> TestHost {
    require_root();
    let host = TestHost::new().expect("test host");
    host.reject_tcp_port(REJECTED_PORT, "admin-prohibited")
        .expect("nft reject");
    host
}

/// Port unreachable's type and code in `family`'s ICMP (the real rejects are admin-prohibited).
fn port_unreachable(family: Family) -> (u8, u8) {
    match family {
        Family::V4 => (3, 3),
        Family::V6 => (1, 4),
    }
}

#[test]
fn admin_prohibited_ping_same_as_hping3() {
    let host = rejecting_host();
    let port = REJECTED_PORT.to_string();
    let args = ["-n", "-S", "-p", &port, "-c", "2", "-i", "u200000"];
    let hping3 = ping(true, &args, host.addr.into());
    let prober = ping(false, &args, host.addr.into());
    let line = format!("ICMP Packet filtered from ip={}", host.addr);
    check_errors_shown(&hping3, 2, &[line.clone(), line.clone()]);
    check_errors_shown(&prober, 2, &[line.clone(), line]);
    assert_eq!(hping3.stdout_lines(), prober.stdout_lines());
    assert_eq!(hping3.stderr, prober.stderr);
}

/// hping3's line for each reject, its words checked against hping3 itself over IPv4.
fn rejected_ports_show_the_error(family: Family) {
    require_root();
    for (reject, words) in [
        ("admin-prohibited", "ICMP Packet filtered"),
        ("port-unreachable", "ICMP Port Unreachable"),
        ("host-unreachable", "ICMP Host Unreachable"),
    ] {
        let host = TestHost::new().expect("test host");
        host.reject_tcp_port(REJECTED_PORT, reject)
            .expect("nft reject");
        let port = REJECTED_PORT.to_string();
        let target = host.target(family);
        let args = ["-n", "-S", "-p", &port, "-c", "2", "-i", "u200000"];
        let line = format!("{words} from ip={target}");
        check_errors_shown(
            &ping(false, &args, target),
            2,
            &[line.clone(), line.clone()],
        );
        // hping3 speaks IPv4 only.
        if family == Family::V4 {
            check_errors_shown(&ping(true, &args, target), 2, &[line.clone(), line]);
        }
    }
}

/// Two probes of `mode` (TCP SYNs, ICMP echo requests) with TTL 1 across a router: the
/// router's time exceeded for each, quoting them, as hping3 shows it (hping3: IPv4 only).
fn ttl_exceeded_across_a_router(family: Family, mode: &[&str]) {
    require_root();
    let router = TestHost::new().expect("router");
    let host = TestHost::behind(&router).expect("test host behind the router");
    let args = [mode, &["-n", "-t", "1", "-c", "2", "-i", "u200000"]].concat();
    let line = format!("TTL 0 during transit from ip={}", router.target(family));
    let prober = ping(false, &args, host.target(family));
    check_errors_shown(&prober, 2, &[line.clone(), line.clone()]);
    if family == Family::V4 {
        let hping3 = ping(true, &args, host.target(family));
        check_errors_shown(&hping3, 2, &[line.clone(), line]);
        assert_eq!(hping3.stderr, prober.stderr);
    }
}

fn ttl_exceeded_in_transit_names_the_router(family: Family) {
    ttl_exceeded_across_a_router(family, &["-S", "-p", "80"]);
}

/// hping3's `-1 -t 1`: the error quotes our echo request, matched by its identifier.
fn echo_ttl_exceeded_in_transit_names_the_router(family: Family) {
    ttl_exceeded_across_a_router(family, &["-1"]);
}

test_both_families!(
    rejected_ports_show_the_error,
    ttl_exceeded_in_transit_names_the_router,
    echo_ttl_exceeded_in_transit_names_the_router
);

fn forged_errors_are_never_shown(family: Family) {
    let host = rejecting_host();
    let (target, source) = (host.target(family), host.source(family));
    let (port, base) = (REJECTED_PORT.to_string(), BASE_PORT.to_string());
    let args = [
        "-V", "-S", "-p", &port, "-s", &base, "-c", "3", "-i", "u500000",
    ];
    let mut prober = prober_past_its_first_error(&args, target);
    // Port unreachable, which the real rejects never are: from the target and a router alike,
    // quoting our address and ports but another sequence number, another probed port, or
    // another target.
    let router = match family {
        Family::V4 => "198.18.0.77".parse().unwrap(),
        Family::V6 => "2001:db8:ffff::77".parse().unwrap(),
    };
    let other_target = match family {
        Family::V4 => "198.18.0.78".parse().unwrap(),
        Family::V6 => "2001:db8:ffff::78".parse().unwrap(),
    };
    let wrong_seq = [target, router].map(|from| {
        packets::icmp_error(
            (from, source, target),
            port_unreachable(family),
            (BASE_PORT + 1, REJECTED_PORT, 7),
        )
    });
    let wrong_endpoint = [
        packets::icmp_error(
            (router, source, target),
            port_unreachable(family),
            (BASE_PORT, 26, 7),
        ),
        packets::icmp_error(
            (router, source, other_target),
            port_unreachable(family),
            (BASE_PORT, REJECTED_PORT, 7),
        ),
    ];
    let forged: Vec<_> = wrong_seq.into_iter().chain(wrong_endpoint).collect();
    host.send_raw_from_namespace(forged)
        .expect("sending forged errors");

    let run = prober.wait(TIMEOUT);
    let errors: Vec<_> = run
        .stdout_lines()
        .into_iter()
        .filter(|line| line.starts_with("ICMP "))
        .collect();
    let line = format!("ICMP Packet filtered from ip={target}");
    assert_eq!(
        errors,
        [line.as_str(); 3],
        "only the real errors are shown\n{run}"
    );
    // A wrong sequence number is counted; errors about another endpoint are not ours at all.
    let counts = "xdp: 3 replies matched, 2 unmatched packets from the target";
    assert!(run.stderr.contains(counts), "want {counts:?}\n{run}");
    assert_eq!(run.code(), Some(0), "{run}");
}

test_both_families!(forged_errors_are_never_shown);

/// A sweep's JSON results of `ports` on `target`, by port, with the run.
fn sweep_json(args: &[&str], target: IpAddr) -> (Swept, BTreeMap<u16, SweepResult>) {
    let target = target.to_string();
    let mut all = vec!["--wait", "1", "-O", "json"];
    all.extend(args);
    all.push(&target);
    let swept = sweep(&all, TIMEOUT);
    let results = swept.json().into_iter().map(|r| (r.port, r)).collect();
    (swept, results)
}

fn sweeps_report_icmp_errors_as_filtered_with_their_sender(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    host.reject_tcp_port(REJECTED_PORT, "admin-prohibited")
        .expect("nft reject");
    host.reject_tcp_port(REJECTED_PORT + 1, "port-unreachable")
        .expect("nft reject");
    let target = host.target(family);
    let ports = format!(
        "{FILTERED_PORT},{REJECTED_PORT},{},{OPEN_PORT},{CLOSED_PORT}",
        REJECTED_PORT + 1
    );
    let (swept, results) = sweep_json(&["-p", &ports], target);
    let status = |port: u16| results.get(&port).map(|r| r.status);
    let want = [
        (FILTERED_PORT, Status::Filtered),
        (
            REJECTED_PORT,
            Status::IcmpFiltered(IcmpReason::AdminProhibited),
        ),
        (
            REJECTED_PORT + 1,
            Status::IcmpFiltered(IcmpReason::Unreachable),
        ),
        (OPEN_PORT, Status::Open),
        (CLOSED_PORT, Status::Closed),
    ];
    for (port, want) in want {
        assert_eq!(status(port), Some(want), "port {port}\n{}", swept.run);
    }
    for port in [REJECTED_PORT, REJECTED_PORT + 1] {
        let result = &results[&port];
        assert_eq!(result.icmp_from, Some(target), "{}", swept.run);
        // The error's own fields (its TTL, its RTT) are not the port's.
        assert!(result.rtt_ns.is_none(), "{}", swept.run);
    }
    let footer = swept.footer();
    assert_eq!(
        (footer.open, footer.closed, footer.filtered),
        (1, 1, 3),
        "{}",
        swept.run
    );
}

fn sweeps_name_the_router_whose_ttl_ran_out(family: Family) {
    require_root();
    let router = TestHost::new().expect("router");
    let host = TestHost::behind(&router).expect("test host behind the router");
    let (swept, results) = sweep_json(&["-p", "80,81", "-t", "1"], host.target(family));
    for port in [80, 81] {
        let result = results
            .get(&port)
            .unwrap_or_else(|| swept.fail("no result"));
        assert_eq!(
            result.status,
            Status::IcmpFiltered(IcmpReason::TtlExceeded),
            "{}",
            swept.run
        );
        assert_eq!(
            result.icmp_from,
            Some(router.target(family)),
            "{}",
            swept.run
        );
    }
}

test_both_families!(
    sweeps_report_icmp_errors_as_filtered_with_their_sender,
    sweeps_name_the_router_whose_ttl_ran_out
);

/// A sweep's source ports start here (prober's default block).
const SWEEP_BASE_PORT: u16 = 61440;

fn forged_errors_decide_no_sweep_result(family: Family) {
    let host = rejecting_host();
    // Its silence keeps the sweep waiting for the forgeries, which a sweep with every probe
    // answered would not.
    host.drop_tcp_port(FILTERED_PORT).expect("nft drop rule");
    let (target, source) = (host.target(family), host.source(family));
    let target_text = target.to_string();
    let ports = format!("{REJECTED_PORT},{FILTERED_PORT}");
    let args = [
        "-V",
        "-p",
        &ports,
        "--wait",
        "2",
        "-O",
        "json",
        &target_text,
    ];
    let started = std::time::SystemTime::now();
    let mut prober = Proc::spawn(prober_command(&args));
    // The real error's result is written as it comes: the sweep is then waiting.
    prober.expect_line(Duration::from_secs(10), "the first result");
    // Quoting our address, the port probed and a source port of the sweep's, but no cookie.
    let forged = (0..3)
        .map(|i| {
            packets::icmp_error(
                (target, source, target),
                port_unreachable(family),
                (SWEEP_BASE_PORT + i, REJECTED_PORT, 7),
            )
        })
        .collect();
    host.send_raw_from_namespace(forged)
        .expect("sending forged errors");
    let swept = Swept::new(prober.wait(TIMEOUT), started);
    let results = swept.json();
    let status = |port| results.iter().find(|r| r.port == port).map(|r| r.status);
    assert_eq!(
        (status(REJECTED_PORT), status(FILTERED_PORT), results.len()),
        (
            Some(Status::IcmpFiltered(IcmpReason::AdminProhibited)),
            Some(Status::Filtered),
            2
        ),
        "{}",
        swept.run
    );
    let footer = swept.footer();
    assert_eq!((footer.matched, footer.unmatched), (1, 3), "{}", swept.run);
}

test_both_families!(forged_errors_decide_no_sweep_result);

/// A second prober on the interface matches at TCX ingress (see coexist.rs): errors too.
#[test]
fn errors_are_matched_at_tcx_ingress_too() {
    let host = rejecting_host();
    let target = host.addr.to_string();
    // The first holds the XDP hook for the whole test.
    let mut first = Proc::spawn(prober_command(&["-1", "-c", "0", "-i", "u100000", &target]));
    first.expect_line(Duration::from_secs(10), "the first's first reply");
    let port = REJECTED_PORT.to_string();
    let args = ["-V", "-S", "-p", &port, "-c", "2", "-i", "u200000"];
    let second = ping(false, &args, host.addr.into());
    first.signal(libc::SIGINT);
    let first = first.wait(TIMEOUT);
    assert!(
        second.stdout.contains("reply matcher at TCX ingress"),
        "the second matches behind the first\n{second}"
    );
    let line = format!("ICMP Packet filtered from ip={}", host.addr);
    let shown = second.stdout_lines().iter().filter(|l| **l == line).count();
    assert_eq!(shown, 2, "{second}");
    assert!(second.stderr.contains("2 packets received"), "{second}");
    assert_eq!(
        (second.code(), first.code()),
        (Some(0), Some(0)),
        "{second}\n{first}"
    );
}
