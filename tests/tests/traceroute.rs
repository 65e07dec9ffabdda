//! Traceroute (`-T`) across a router namespace, side by side with hping3 (IPv4; hping3 has
//! no IPv6): `hop=N TTL 0 during transit from ip=…` and `hop=N hoprtt=… ms` for the router,
//! then the target's replies, with --tr-stop, --tr-keep-ttl and --tr-no-rtt, for TCP and ICMP
//! echo probes. Lines must be equal but for round trips and IP ids.

use std::net::IpAddr;
use std::time::Duration;

use prober_tests::{
    hping3_command,
    output::parse_footer,
    prober_command,
    proc::{run, Finished},
    require_root, test_both_families, Family, TestHost, OPEN_PORT,
};

const TIMEOUT: Duration = Duration::from_secs(30);

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

/// A line with its round trip (`rtt=`, `hoprtt=`) and IP `id=` masked, as they differ from
/// run to run; the round trip must be printed with hping3's one decimal.
fn masked(line: &str) -> String {
    line.split(' ')
        .map(|word| match word.split_once('=') {
            Some((name @ ("rtt" | "hoprtt"), value)) => {
                let (_, decimals) = value.split_once('.').expect("a decimal round trip");
                assert_eq!(decimals.len(), 1, "{line}");
                format!("{name}=*")
            }
            Some(("id", _)) => "id=*".to_string(),
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

test_both_families!(
    tcp_traceroute_finds_the_router_then_the_port,
    icmp_traceroute_finds_the_router_then_the_host,
    tr_stop_ends_at_the_targets_answer,
    tr_keep_ttl_watches_the_first_hop,
    tr_no_rtt_leaves_out_the_hop_round_trips
);
