//! Sweeps with other probes than SYNs (issue 12, item 5), against the namespace's own kernel:
//! an ACK scan (`-A`, nmap's -sA) finds every port a RST answers `unfiltered`, open or closed,
//! and a dropped one `filtered`; FIN and Xmas scans (`-F`, `-F -P -U`: nmap's -sF, -sX) find a
//! closed port `closed` by its RST and both a dropped port and an open one `open|filtered`,
//! since Linux drops a FIN to a listener. Their answers are RSTs, which the XDP program matches
//! by the cookie they echo and never answers; a forged RST without the cookie decides nothing.
//! An echo sweep (`-1` of a block: zmap's icmp_echoscan) finds the hosts that answer `up`,
//! with their RTTs, and the others `down`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use prober_tests::{
    hping3_command, packets, prober_command,
    proc::{run, Proc},
    require_root,
    sweep::{sweep, Outcome, Status, Swept, TableRow},
    test_both_families, Family, TestHost, CLOSED_PORT, FILTERED_PORT, OPEN_PORT,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// The sweep's default block of source ports starts here.
const SWEEP_BASE_PORT: u16 = 61440;

/// The ports of a [`TestHost::standard`], as `--scan` takes them.
fn ports() -> String {
    format!("{FILTERED_PORT},{OPEN_PORT},{CLOSED_PORT}")
}

/// prober's arguments for a JSON sweep with `flags` of `ports` on `target`, waiting `wait`
/// seconds for late answers.
fn sweep_args<'a>(
    flags: &[&'a str],
    wait: &'a str,
    ports: &'a str,
    target: &'a str,
) -> Vec<&'a str> {
    let mut args = flags.to_vec();
    args.extend(["--scan", ports, "--wait", wait, "-O", "json", target]);
    args
}

/// prober's JSON sweep with `flags` of the standard ports of `target`.
fn kind_sweep(flags: &[&str], target: IpAddr) -> Swept {
    let (ports, target) = (ports(), target.to_string());
    sweep(&sweep_args(flags, "1", &ports, &target), TIMEOUT)
}

/// What a sweep of the standard ports of `target` finds: `filtered` for the dropped port,
/// `open` for the listener, `closed` for the closed one.
fn outcome(target: IpAddr, [filtered, open, closed]: [Status; 3]) -> Outcome {
    [
        (FILTERED_PORT, filtered),
        (OPEN_PORT, open),
        (CLOSED_PORT, closed),
    ]
    .into_iter()
    .map(|(port, status)| ((target, port), status))
    .collect()
}

/// The results as `want` has them (with the fields of a Linux host's RSTs, and the footer's
/// counts and exit status to match), every answer timed, and no RST bounced.
fn check(swept: &Swept, want: &Outcome) {
    let footer = swept.check_linux_json(want, (3, 1, 3));
    assert_eq!(footer.bounced, 0, "nothing answered\n{}", swept.run);
    for result in swept.json() {
        let answered = matches!(result.status, Status::Closed | Status::Unfiltered);
        assert_eq!(
            result.rtt_ns.is_some(),
            answered,
            "{}:{} {:?}\n{}",
            result.ip,
            result.port,
            result.status,
            swept.run
        );
    }
}

fn ack_scans_tell_unfiltered_from_filtered(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = host.target(family);
    let swept = kind_sweep(&["-A"], target);
    use Status::*;
    check(&swept, &outcome(target, [Filtered, Unfiltered, Unfiltered]));
}

fn fin_and_xmas_scans_find_closed_ports_and_open_or_filtered_ones(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = host.target(family);
    use Status::*;
    let want = outcome(target, [OpenFiltered, OpenFiltered, Closed]);
    for flags in [&["-F"][..], &["-F", "-P", "-U"]] {
        check(&kind_sweep(flags, target), &want);
    }
}

/// RSTs to the sweep's source ports from the target's probed ports, as the namespace's kernel
/// would send them but echoing another cookie (7), while the sweep waits on its dropped port.
fn forged_rsts_decide_nothing(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let (target, source) = (host.target(family), host.source(family));
    let (ports, target_text) = (ports(), target.to_string());
    for (flag, rst_flags, want) in [
        ("-A", packets::TCP_RST, Status::Unfiltered),
        ("-F", packets::TCP_RST | packets::TCP_ACK, Status::Closed),
    ] {
        let args = sweep_args(&[flag, "-V"], "2", &ports, &target_text);
        let started = SystemTime::now();
        let mut prober = Proc::spawn(prober_command(&args));
        // The closed port's answer is written as it comes: the sweep is then waiting.
        prober.expect_line(Duration::from_secs(10), "the first result");
        let forged = (0..4)
            .map(|i| {
                let segment = packets::Segment {
                    source_port: FILTERED_PORT,
                    dest_port: SWEEP_BASE_PORT + i,
                    seq: 7,
                    ack: 8,
                    flags: rst_flags,
                    window: 0,
                    options: &[],
                };
                packets::IpHeader::new(target, source, packets::IPPROTO_TCP)
                    .packet(&segment.bytes(target, source))
            })
            .collect();
        host.send_raw_from_namespace(forged)
            .expect("sending forged RSTs");
        let swept = Swept::new(prober.wait(TIMEOUT), started);
        let silence = match flag {
            "-A" => Status::Filtered,
            _ => Status::OpenFiltered,
        };
        let open = match flag {
            "-A" => Status::Unfiltered,
            _ => Status::OpenFiltered,
        };
        check(&swept, &outcome(target, [silence, open, want]));
        let footer = swept.footer();
        assert_eq!(
            footer.unmatched, 4,
            "{flag}: the forgeries, counted\n{}",
            swept.run
        );
    }
}

test_both_families!(
    ack_scans_tell_unfiltered_from_filtered,
    fin_and_xmas_scans_find_closed_ports_and_open_or_filtered_ones,
    forged_rsts_decide_nothing
);

/// The table's rows (the ports a reply came from) and the ports it lists as not responding.
fn table_sets(stdout: &str) -> (BTreeSet<u16>, BTreeSet<u16>) {
    let mut rows = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for line in stdout.lines() {
        if let Ok(row) = TableRow::parse(line) {
            rows.insert(row.port);
        } else if let Some(list) = line.strip_prefix("Not responding ports: ") {
            // `(23 telnet) (80 http) `: the first word in each parenthesis.
            for item in list.split('(').skip(1) {
                let port = item.split_whitespace().next().and_then(|p| p.parse().ok());
                silent.insert(port.unwrap_or_else(|| panic!("not a port: {item:?} in {line:?}")));
            }
        }
    }
    (rows, silent)
}

/// The table's rows and its list of ports not responding, as printed (without hping3's
/// `using <interface>` lines).
fn table_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|line| TableRow::parse(line).is_ok() || line.starts_with("Not responding ports: "))
        .collect()
}

/// hping3's scan mode with `flags` and -V (its rows are the ports that answered, its list the
/// silent ones) beside prober's table of the same scan: the same two sets, and the ones the
/// kind should give (rows: the closed port, and for -A the open one; silent: the rest).
#[test]
fn fin_and_ack_scan_tables_are_hping3s() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let (ports, target) = ("20-25,80,81", host.addr.to_string());
    for (flags, rows, silent) in [
        (&["-F"][..], vec![20, 21, 22, 24, 25, 81], vec![23, 80]),
        (
            &["-F", "-P", "-U"],
            vec![20, 21, 22, 24, 25, 81],
            vec![23, 80],
        ),
        (&["-A"], vec![20, 21, 22, 24, 25, 80, 81], vec![23]),
    ] {
        let mut args = vec!["-n", "-V", "-8", ports];
        args.extend(flags);
        args.push(&target);
        let hping3 = run(hping3_command(&args), TIMEOUT);
        let prober = run(prober_command(&args[1..]), TIMEOUT);
        let want = (BTreeSet::from_iter(rows), BTreeSet::from_iter(silent));
        assert_eq!(
            table_sets(&hping3.stdout),
            want,
            "{flags:?}: hping3\n{hping3}"
        );
        assert_eq!(
            table_sets(&prober.stdout),
            want,
            "{flags:?}: prober\n{prober}"
        );
        // Row for row (flags, TTL, id, window, length), in port order under -V.
        assert_eq!(
            table_lines(&prober.stdout),
            table_lines(&hping3.stdout),
            "{flags:?}\n{prober}\n{hping3}"
        );
    }
}

/// A block of four routed to the namespace: two addresses that answer, one whose packets the
/// namespace's nftables drops, and one nobody holds (the namespace does not forward). While the
/// sweep waits, the silent host sends echo replies to the sweep's identifiers that echo another
/// cookie (7): counted as unmatched, and it stays down.
fn echo_sweep_finds_the_hosts_that_answer(family: Family) {
    require_root();
    let mut host = TestHost::new().expect("test host");
    let (block, addrs): (String, Vec<IpAddr>) = match family {
        Family::V4 => {
            let addrs = host.add_routed_addresses(3).expect("routed addresses");
            (
                format!("{}/30", addrs[0]),
                addrs.into_iter().map(IpAddr::from).collect(),
            )
        }
        Family::V6 => {
            let addrs = host.add_routed_addresses6(3).expect("routed addresses");
            (
                format!("{}/126", addrs[0]),
                addrs.into_iter().map(IpAddr::from).collect(),
            )
        }
    };
    host.drop_all_to(addrs[2]).expect("nft drop");
    let unheld = match addrs[0] {
        IpAddr::V4(first) => Ipv4Addr::from(u32::from(first) + 3).into(),
        IpAddr::V6(first) => Ipv6Addr::from(u128::from(first) + 3).into(),
    };
    let started = SystemTime::now();
    let mut prober = Proc::spawn(prober_command(&["-1", "--wait", "2", "-O", "json", &block]));
    prober.expect_line(Duration::from_secs(10), "the first host up");
    let (silent, source) = (addrs[2], host.source(family));
    let protocol = packets::icmp_protocol(silent);
    let reply_type = match family {
        Family::V4 => 0,
        Family::V6 => 129,
    };
    let forged = (0..4u16)
        .map(|i| {
            let [id0, id1] = (SWEEP_BASE_PORT + i).to_be_bytes();
            let mut message = [reply_type, 0, 0, 0, id0, id1, 0, 7];
            packets::fill_checksum(silent, source, protocol, &mut message);
            packets::IpHeader::new(silent, source, protocol).packet(&message)
        })
        .collect();
    host.send_raw_from_namespace(forged)
        .expect("sending forged echo replies");
    let swept = Swept::new(prober.wait(TIMEOUT), started);
    let results = swept.json();
    let got: Outcome = results.iter().map(|r| ((r.ip, r.port), r.status)).collect();
    let want: Outcome = [
        (addrs[0], Status::Up),
        (addrs[1], Status::Up),
        (addrs[2], Status::Down),
        (unheld, Status::Down),
    ]
    .into_iter()
    .map(|(ip, status)| ((ip, 0), status))
    .collect();
    assert_eq!(got, want, "{}", swept.run);
    assert_eq!(results.len(), 4, "a result per host\n{}", swept.run);
    for result in &results {
        let up = result.status == Status::Up;
        assert_eq!(result.rtt_ns.is_some(), up, "{result:?}\n{}", swept.run);
        assert_eq!(result.ttl.is_some(), up, "{result:?}\n{}", swept.run);
    }
    // The namespace answers an IPv6 address it does not hold with an address unreachable,
    // which puts that host down for its reason; IPv4's it drops.
    let unheld_error = family == Family::V6;
    let unheld_result = results.iter().find(|r| r.ip == unheld).expect("a result");
    assert_eq!(
        unheld_result.icmp_from.is_some(),
        unheld_error,
        "{}",
        swept.run
    );
    let footer = swept.footer();
    assert_eq!(
        (footer.up, footer.echo_down, footer.matched),
        (2, 2, 2 + u64::from(unheld_error)),
        "{}",
        swept.run
    );
    assert_eq!(
        (footer.sent, footer.hosts, footer.ports),
        (4, 4, 0),
        "{}",
        swept.run
    );
    assert_eq!(footer.unmatched, 4, "the forgeries, counted\n{}", swept.run);
    assert_eq!(swept.run.code(), Some(0), "{}", swept.run);
    assert!(
        host.dropped_packets_to(addrs[2]).expect("nft counter") >= 1,
        "the dropped host got its echo"
    );
}

/// On a directly connected network the sweep asks for its targets' MACs itself (ARP, IPv6
/// neighbour discovery): the hosts that answer get echoes, and are up; an address nobody holds
/// is down for want of a MAC, and gets none.
fn echo_sweep_of_neighbours(family: Family) {
    require_root();
    let host = TestHost::new().expect("test host");
    let on_link = host.add_on_link(family, 2, 1, 29).expect("on-link hosts");
    let targets: Vec<String> = on_link
        .live
        .iter()
        .chain(&on_link.dead)
        .map(IpAddr::to_string)
        .collect();
    let mut args = vec!["-1", "--wait", "1", "-O", "json"];
    args.extend(targets.iter().map(String::as_str));
    let swept = sweep(&args, TIMEOUT);
    let results = swept.json();
    let got: Outcome = results.iter().map(|r| ((r.ip, r.port), r.status)).collect();
    let want: Outcome = on_link
        .live
        .iter()
        .map(|&ip| ((ip, 0), Status::Up))
        .chain(on_link.dead.iter().map(|&ip| ((ip, 0), Status::Down)))
        .collect();
    assert_eq!(got, want, "{}", swept.run);
    assert!(
        results
            .iter()
            .all(|r| r.rtt_ns.is_some() == (r.status == Status::Up)),
        "{}",
        swept.run
    );
    assert_eq!(swept.footer().up, 2, "{}", swept.run);
}

/// Two routed addresses: one answers, the other's echo requests the namespace rejects with
/// admin-prohibited. The rejected host is down for that reason, with the error's sender, as a
/// TCP sweep's port is filtered by one (before: down, `timeout`, the error unmatched).
fn echo_sweep_hosts_an_icmp_error_answers_are_down_for_its_reason(family: Family) {
    require_root();
    let mut host = TestHost::new().expect("test host");
    let addrs: Vec<IpAddr> = match family {
        Family::V4 => host
            .add_routed_addresses(2)
            .expect("routed addresses")
            .into_iter()
            .map(IpAddr::from)
            .collect(),
        Family::V6 => host
            .add_routed_addresses6(2)
            .expect("routed addresses")
            .into_iter()
            .map(IpAddr::from)
            .collect(),
    };
    host.reject_all_to(addrs[1], "admin-prohibited")
        .expect("nft reject");
    let targets: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    let started = SystemTime::now();
    let args = [
        &["-1", "--wait", "1", "-O", "json"][..],
        &[&targets[0], &targets[1]],
    ]
    .concat();
    let swept = Swept::new(run(prober_command(&args), TIMEOUT), started);
    let results = swept.json();
    let rejected = results
        .iter()
        .find(|r| r.ip == addrs[1])
        .unwrap_or_else(|| panic!("a result for {}\n{}", addrs[1], swept.run));
    assert_eq!(
        (
            rejected.status,
            rejected.icmp_from,
            rejected.ttl,
            rejected.rtt_ns
        ),
        (Status::Down, Some(addrs[1]), None, None),
        "{}",
        swept.run
    );
    assert!(
        swept.run.stdout.contains("\"reason\":\"admin-prohibited\""),
        "{}",
        swept.run
    );
    let footer = swept.footer();
    assert_eq!(
        (footer.up, footer.echo_down, footer.matched),
        (1, 1, 2),
        "the error matched in XDP\n{}",
        swept.run
    );
}

test_both_families!(
    echo_sweep_finds_the_hosts_that_answer,
    echo_sweep_hosts_an_icmp_error_answers_are_down_for_its_reason,
    echo_sweep_of_neighbours
);
