//! Sweeps of a directly connected network: prober resolves the hosts itself (ARP, IPv6
//! neighbour discovery) through the TX ring, hosts that do not answer are `down` and get no
//! SYN, those that do get their exact open/closed/filtered set, every SYN through the TX
//! ring, and the kernel's neighbour table is left as it was. Ground truth is what nftables
//! counts at the namespace's veth (every frame that arrives, whoever it is addressed to) and
//! what `ip neigh` lists.
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use prober_tests::forger::OTHER_MAC;
use prober_tests::neighbour_forger::{Lie, NeighbourForger};
use prober_tests::output::check_error;
use prober_tests::sweep::{expected_outcome, outcome, outcome_diff, sweep, Status};
use prober_tests::{
    prober_command, require_root, run_checked, test_both_families, Family, OnLink, TestHost,
    CLOSED_PORT, FILTERED_PORT, OPEN_PORT,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// An nft set of `addresses`, matched as the IP destination of their family.
fn daddr_in(addresses: &[IpAddr]) -> String {
    let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    let keyword = match addresses[0] {
        IpAddr::V4(_) => "ip",
        IpAddr::V6(_) => "ip6",
    };
    format!("{keyword} daddr {{ {} }}", list.join(", "))
}

/// The kernel's neighbour entries on `interface` for `addresses` in a state that says it
/// tried and failed (or is still trying) to resolve them.
fn unresolved_entries(interface: &str, addresses: &[IpAddr]) -> Vec<String> {
    let out = run_checked(Command::new("ip").args(["-j", "neigh", "show", "dev", interface]))
        .expect("ip neigh");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out).expect("ip -j neigh");
    entries
        .iter()
        .filter(|entry| {
            let dst = entry["dst"]
                .as_str()
                .and_then(|dst| dst.parse::<IpAddr>().ok());
            let states = entry["state"].to_string();
            dst.is_some_and(|dst| addresses.contains(&dst))
                && (states.contains("INCOMPLETE") || states.contains("FAILED"))
        })
        .map(ToString::to_string)
        .collect()
}

fn strings(addresses: &[IpAddr]) -> Vec<String> {
    addresses.iter().map(ToString::to_string).collect()
}

/// A host with [`OPEN_PORT`] listening and [`FILTERED_PORT`] dropped, and `live` live and
/// `dead` dead addresses of an on-link /27 of `family`.
fn local_bed(family: Family, live: u32, dead: u32) -> (TestHost, OnLink) {
    let host = TestHost::standard().expect("test host");
    let on_link = host
        .add_on_link(family, live, dead, 27)
        .expect("on-link addresses");
    (host, on_link)
}

fn local_sweep_finds_the_live_hosts_exact_sets_and_the_dead_ones_down(family: Family) {
    local_sweep(family, &[]);
}

test_both_families!(local_sweep_finds_the_live_hosts_exact_sets_and_the_dead_ones_down);

/// Probes that bypass TC egress leave no trace of the asks there: the resolver files them
/// itself, and the answers are taken all the same.
#[test]
fn with_qdisc_bypass_the_resolver_files_its_own_asks() {
    local_sweep(Family::V4, &["--qdisc-bypass"]);
}

/// A sweep of 4 live and 4 dead addresses of an on-link /27, with `extra` options.
fn local_sweep(family: Family, extra: &[&str]) {
    require_root();
    let (host, on_link) = local_bed(family, 4, 4);
    // Every frame to a dead address, whatever it carries (asks go to broadcast or multicast
    // addresses). (TCP matches at the netdev hook miscount IPv6 here: the input chain counts
    // the live hosts' SYNs.)
    host.count_arriving("to_dead", &daddr_in(&on_link.dead))
        .expect("nft counter");
    host.add_counter(
        "syn_live",
        &format!("{} tcp flags syn", daddr_in(&on_link.live)),
    )
    .expect("nft counter");
    let ports = [FILTERED_PORT, OPEN_PORT, CLOSED_PORT];
    let targets = strings(&[&on_link.live[..], &on_link.dead[..]].concat());
    let mut args = [
        &["-p", "23,80,81", "--rate", "2000", "-O", "json", "-V"],
        extra,
    ]
    .concat();
    args.extend(targets.iter().map(String::as_str));
    let swept = sweep(&args, TIMEOUT);
    let run = &swept.run;
    let results = swept.json();
    let got = outcome(&results).unwrap_or_else(|e| swept.fail(&e));
    let mut want = expected_outcome(&on_link.live, ports.to_vec(), |_, port| match port {
        OPEN_PORT => Status::Open,
        CLOSED_PORT => Status::Closed,
        _ => Status::Filtered,
    });
    want.extend(on_link.dead.iter().map(|&dead| ((dead, 0), Status::Down)));
    if let Some(diff) = outcome_diff(&got, &want) {
        swept.fail(&format!("not the exact set:\n{diff}"));
    }
    assert!(
        run.stderr.contains("AF_PACKET TX ring") && !run.stderr.contains("raw IP socket"),
        "-V does not say the TX ring\n{run}"
    );
    assert!(
        run.stderr.contains("4 of 8 hosts down"),
        "the footer does not count the hosts down\n{run}"
    );
    assert_eq!(
        host.arriving_packets("to_dead").unwrap(),
        0,
        "frames to dead hosts\n{run}"
    );
    // Every live (host, port) once (the sweep does not retry by default): the filtered port's
    // rule drops its SYNs before the counter.
    assert_eq!(host.counter_packets("syn_live").unwrap(), 8, "{run}");
    assert_eq!(host.dropped_packets(FILTERED_PORT).unwrap(), 4, "{run}");
    let left = unresolved_entries(&host.host_if, &on_link.dead);
    assert!(
        left.is_empty(),
        "the kernel's table filled: {left:?}\n{run}"
    );
}

/// How the asks for `address` are told at the namespace's veth: ARP requests for it (IPv4),
/// frames to its solicited-node group (IPv6).
fn asks_for(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("arp operation request arp daddr ip {v4}"),
        IpAddr::V6(v6) => {
            let [.., x, y, z] = v6.octets();
            format!("ip6 daddr ff02::1:ff{x:02x}:{y:02x}{z:02x}")
        }
    }
}

/// A host the kernel's table holds as PERMANENT is taken from it: not asked (no ARP request
/// or solicitation for it arrives), and probed at that MAC all the same. Another live host is
/// asked, which shows the counter counts asks.
fn a_static_neighbour_entry_is_not_asked_again(family: Family) {
    require_root();
    let (host, on_link) = local_bed(family, 2, 0);
    let (seeded, asked) = (on_link.live[0], on_link.live[1]);
    let mac = peer_mac(&host);
    run_checked(Command::new("ip").args([
        "neigh",
        "replace",
        &seeded.to_string(),
        "lladdr",
        &mac,
        "nud",
        "permanent",
        "dev",
        &host.host_if,
    ]))
    .expect("a static entry");
    for (name, address) in [("asked_seeded", seeded), ("asked_other", asked)] {
        host.count_arriving(name, &asks_for(address))
            .expect("nft counter");
    }
    let targets = strings(&on_link.live);
    let mut args = vec!["-p", "80,81", "-O", "json"];
    args.extend(targets.iter().map(String::as_str));
    let swept = sweep(&args, TIMEOUT);
    let got = outcome(&swept.json()).unwrap_or_else(|e| swept.fail(&e));
    let want = expected_outcome(&on_link.live, vec![80, 81], |_, port| match port {
        OPEN_PORT => Status::Open,
        _ => Status::Closed,
    });
    if let Some(diff) = outcome_diff(&got, &want) {
        swept.fail(&format!("not the exact set:\n{diff}"));
    }
    let run = &swept.run;
    assert_eq!(host.arriving_packets("asked_seeded").unwrap(), 0, "{run}");
    assert!(
        (1..=3).contains(&host.arriving_packets("asked_other").unwrap()),
        "{run}"
    );
}

test_both_families!(a_static_neighbour_entry_is_not_asked_again);

/// The collapse case: 16 addresses of an on-link /24, 8 of them absent, ports
/// 1-5000, flooded. Through the kernel (a raw socket) every probe to an absent host waited
/// in its neighbour queue and the send buffer stalled: 20 480 probes in 61 s, cut off by a
/// timeout. Now the absent hosts are down after `--wait`, and the 40 000 probes to the live
/// ones go at once.
fn a_sparse_local_subnet_flooded_completes_with_the_absent_hosts_down(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let on_link = host
        .add_on_link(family, 8, 8, 24)
        .expect("on-link addresses");
    let targets = strings(&[&on_link.live[..], &on_link.dead[..]].concat());
    let mut args = vec!["-p", "1-5000", "--flood", "-O", "json"];
    args.extend(targets.iter().map(String::as_str));
    let swept = sweep(&args, Duration::from_secs(30));
    let run = &swept.run;
    let results = swept.json();
    let down: Vec<IpAddr> = results
        .iter()
        .filter(|result| result.status == Status::Down)
        .map(|result| result.ip)
        .collect();
    assert_eq!(down, on_link.dead, "{run}");
    let footer = swept.footer();
    assert_eq!((footer.sent, footer.interrupted), (40_000, false), "{run}");
    let open = results.iter().filter(|r| r.status == Status::Open).count();
    assert_eq!(open, 8, "port 80 open on each live host\n{run}");
}

test_both_families!(a_sparse_local_subnet_flooded_completes_with_the_absent_hosts_down);

/// Forged ARP answers and neighbour advertisements redirect no probe (see README, "Local
/// networks"): an answer for an address not asked yet, one for another target, a second
/// answer after the real host's, and a gratuitous one (IPv6: an unsolicited override). Each
/// claims its address for a MAC nobody has; no frame goes to that MAC, the dead addresses
/// stay down, the live ones get their exact set, and XDP counts the forgeries as unmatched.
fn forged_neighbour_answers_redirect_no_probe(family: Family) {
    require_root();
    let (host, on_link) = local_bed(family, 2, 2);
    let (live, dead) = (&on_link.live, &on_link.dead);
    let lies = [
        // The hosts are asked in address order, 20 ms apart: the last dead one long after.
        Lie::Unsolicited {
            asked: live[0],
            claimed: dead[1],
        },
        Lie::WrongTarget { asked: dead[0] },
        Lie::Late {
            asked: live[1],
            delay: Duration::from_millis(20),
        },
    ];
    let other_mac: Vec<String> = OTHER_MAC.iter().map(|byte| format!("{byte:02x}")).collect();
    host.count_arriving("to_forger", &format!("ether daddr {}", other_mac.join(":")))
        .expect("nft counter");
    host.count_arriving("to_dead", &daddr_in(dead))
        .expect("nft counter");
    let forger = NeighbourForger::start(&host, &lies).expect("forger");
    let targets = strings(&[&live[..], &dead[..]].concat());
    let mut args = vec!["-p", "80,81", "--rate", "50", "-O", "json"];
    args.extend(targets.iter().map(String::as_str));
    let swept = sweep(&args, TIMEOUT);
    let forged = forger.stop().expect("forger");
    let run = &swept.run;
    let got = outcome(&swept.json()).unwrap_or_else(|e| swept.fail(&e));
    let mut want = expected_outcome(live, vec![80, 81], |_, port| match port {
        OPEN_PORT => Status::Open,
        _ => Status::Closed,
    });
    want.extend(dead.iter().map(|&dead| ((dead, 0), Status::Down)));
    if let Some(diff) = outcome_diff(&got, &want) {
        swept.fail(&format!("not the exact set:\n{diff}"));
    }
    // One unsolicited, one wrong target for each of the dead host's three asks, a late one
    // and a gratuitous one.
    assert_eq!(forged, 6, "the forger's answers\n{run}");
    assert_eq!(host.arriving_packets("to_forger").unwrap(), 0, "{run}");
    assert_eq!(host.arriving_packets("to_dead").unwrap(), 0, "{run}");
    assert!(
        swept.footer().unmatched >= forged,
        "forgeries uncounted\n{run}"
    );
}

test_both_families!(forged_neighbour_answers_redirect_no_probe);

/// The MAC of the namespace's veth end: what its hosts answer with.
fn peer_mac(host: &TestHost) -> String {
    let out = run_checked(Command::new("ip").args([
        "-n",
        &host.ns,
        "-j",
        "link",
        "show",
        "dev",
        &host.peer_if,
    ]))
    .expect("ip link");
    let link: serde_json::Value = serde_json::from_str(&out).expect("ip -j link");
    link[0]["address"].as_str().expect("a MAC").to_string()
}

/// `--arp`: one line per host that answered (the dead ones have none), with its MAC and
/// RTT, in every format; the statistic counts the hosts asked and those that responded.
fn arp_mode_fields_in_every_format(family: Family) {
    require_root();
    let (host, on_link) = local_bed(family, 3, 2);
    let mac = peer_mac(&host);
    let reason = match family {
        Family::V4 => "arp-response",
        Family::V6 => "nd-response",
    };
    let targets = strings(&[&on_link.live[..], &on_link.dead[..]].concat());
    let live: BTreeSet<String> = strings(&on_link.live).into_iter().collect();
    for format in ["json", "csv", "list", "table"] {
        let mut args = vec!["--arp", "-O", format];
        args.extend(targets.iter().map(String::as_str));
        let run = prober_tests::proc::run(prober_command(&args), TIMEOUT);
        assert_eq!(run.code(), Some(0), "{run}");
        assert!(
            run.stderr.contains("5 hosts scanned in ") && run.stderr.contains(". 3 responded"),
            "the statistic\n{run}"
        );
        let mut lines = run.stdout_lines();
        if format == "csv" {
            assert_eq!(
                lines.remove(0),
                "ip,mac,status,reason,rtt_us,rtt_ns,ts",
                "{run}"
            );
        }
        let mut seen = BTreeSet::new();
        for line in lines {
            let (ip, fields) = match format {
                "json" => {
                    let members: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(line).expect("a JSON line");
                    // The keys, in the documented order (serde_json's map sorts them).
                    let keys = ["ip", "mac", "status", "reason", "rtt_us", "rtt_ns", "ts"];
                    let at: Vec<Option<usize>> = keys
                        .iter()
                        .map(|key| line.find(&format!("\"{key}\":")))
                        .collect();
                    assert!(
                        members.len() == keys.len() && at.is_sorted() && at[0].is_some(),
                        "{line}"
                    );
                    let text = |key: &str| members[key].as_str().unwrap_or_default().to_string();
                    let (us, ns) = (members["rtt_us"].as_u64(), members["rtt_ns"].as_u64());
                    assert_eq!(us, ns.map(|ns| ns / 1000), "{line}");
                    assert!(members["ts"].as_f64().is_some(), "{line}");
                    (
                        text("ip"),
                        vec![text("mac"), text("status"), text("reason")],
                    )
                }
                "csv" => {
                    let cells: Vec<&str> = line.split(',').collect();
                    assert_eq!(cells.len(), 7, "{line}");
                    let ns: u64 = cells[5].parse().expect("rtt_ns");
                    assert_eq!(cells[4].parse::<u64>().ok(), Some(ns / 1000), "{line}");
                    let cells: Vec<String> = cells.iter().map(ToString::to_string).collect();
                    (cells[0].clone(), cells[1..4].to_vec())
                }
                "list" => {
                    let (ip, line_mac) = line.split_once('\t').expect("IP<TAB>MAC");
                    (
                        ip.to_string(),
                        vec![line_mac.to_string(), "up".into(), reason.into()],
                    )
                }
                _ => {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    assert!(words[2].starts_with("rtt=") && words[3] == "ms", "{line}");
                    (
                        words[0].to_string(),
                        vec![words[1].to_string(), "up".into(), reason.into()],
                    )
                }
            };
            assert_eq!(
                fields,
                [mac.as_str(), "up", reason],
                "{format}: {line}\n{run}"
            );
            assert!(seen.insert(ip), "a host twice\n{run}");
        }
        assert_eq!(seen, live, "{format}: not the live hosts\n{run}");
    }
    // Nobody answers: exit 1, as a sweep with no reply.
    let dead = strings(&on_link.dead);
    let mut args = vec!["--arp"];
    args.extend(dead.iter().map(String::as_str));
    let run = prober_tests::proc::run(prober_command(&args), TIMEOUT);
    assert_eq!((run.code(), run.stdout.as_str()), (Some(1), ""), "{run}");
}

test_both_families!(arp_mode_fields_in_every_format);

/// `--arp` of hosts behind a gateway is one error line naming the target and its route, and
/// nothing is asked.
#[test]
fn arp_of_routed_targets_is_an_error() {
    require_root();
    let mut host = TestHost::new().expect("test host");
    let routed = host.add_routed_addresses(2).expect("routed addresses");
    host.count_arriving("asked", "arp operation request")
        .expect("nft counter");
    let target = routed[0].to_string();
    let run = prober_tests::proc::run(prober_command(&["--arp", &target]), TIMEOUT);
    let line = check_error(&run, &["--arp", &target, &host.addr.to_string()], &[]);
    assert!(line.contains(&host.host_if), "{line}");
    assert_eq!(host.arriving_packets("asked").unwrap(), 0, "{run}");
}
