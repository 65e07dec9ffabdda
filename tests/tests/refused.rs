//! Targets a sweep does not probe are reported `refused`, with the reason, never `filtered`, and
//! are not counted as sent: broadcast addresses, a firewall's output chain that refuses a probe,
//! and this host's own addresses in a sweep of others (whose results they must not spoil).

use prober_tests::output::check_error;
use prober_tests::proc::run;
use prober_tests::sweep::{expected_outcome, sweep, Outcome, Refusal, Status, Swept};
use prober_tests::{
    prober_bin, prober_command, require_root, test_both_families, Family, TestHost, CLOSED_PORT,
    OPEN_PORT,
};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

const TIMEOUT: Duration = Duration::from_secs(30);

/// `-p <open>,<closed> -o json` and `more`.
fn sweep_args(more: &[String]) -> Vec<String> {
    let ports = format!("{OPEN_PORT},{CLOSED_PORT}");
    let mut args: Vec<String> = ["-p", &ports, "-O", "json"].map(String::from).into();
    args.extend_from_slice(more);
    args
}

/// What a [`TestHost::standard`]'s addresses answer on [`ports`].
fn answers(hosts: &[IpAddr]) -> Outcome {
    expected_outcome(hosts, [OPEN_PORT, CLOSED_PORT], |_, port| {
        if port == OPEN_PORT {
            Status::Open
        } else {
            Status::Closed
        }
    })
}

/// A sweep of five on-link neighbours and their /29's broadcast address: the broadcast
/// address gets one `refused` line (`port` null, reason `broadcast`), no probe (the
/// namespace counts every SYN to it) and none counted sent. (Before, the kernel refused each
/// probe with EACCES, the footer counted them sent, and each port was listed filtered.)
#[test]
fn a_broadcast_address_is_refused_not_filtered() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let neighbours = host.add_neighbours().expect("neighbours");
    let broadcast = Ipv4Addr::from(u32::from(neighbours[0]) | 7);
    host.count_arriving(
        "to_broadcast",
        &format!("ip daddr {broadcast} tcp flags syn"),
    )
    .expect("nft counter");
    let mut targets: Vec<String> = neighbours.iter().map(ToString::to_string).collect();
    targets.push(broadcast.to_string());
    let swept = sweep(&sweep_args(&targets), TIMEOUT);
    let hosts: Vec<IpAddr> = neighbours.iter().map(|&n| n.into()).collect();
    let mut want = answers(&hosts);
    want.insert((broadcast.into(), 0), Status::Refused(Refusal::Broadcast));
    swept.check_linux_json(&want, (10, 5, 2));
    assert_eq!(
        host.arriving_packets("to_broadcast").expect("counter"),
        0,
        "probes reached the broadcast address"
    );
}

/// prober inside a namespace whose output chain drops one probe (its sweep of the namespace's
/// own address goes over `lo` through a raw socket, which gets EPERM): that (host, port) is
/// `refused` with reason `firewall`, not filtered, and not counted sent; the other port is
/// answered.
fn a_probe_the_firewall_refuses_is_refused_not_filtered(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = host.target(family);
    let daddr = match family {
        Family::V4 => "ip daddr",
        Family::V6 => "ip6 daddr",
    };
    host.drop_outgoing(
        "refused",
        &format!("{daddr} {target} tcp dport {CLOSED_PORT} tcp flags syn"),
    )
    .expect("nft rule");
    let mut cmd = host.command_in_ns(prober_bin());
    cmd.args(sweep_args(&[target.to_string()]));
    let started = SystemTime::now();
    let swept = Swept::new(run(cmd, TIMEOUT), started);
    let mut want = Outcome::new();
    want.insert((target, OPEN_PORT), Status::Open);
    want.insert((target, CLOSED_PORT), Status::Refused(Refusal::Firewall));
    // Over lo: windows are lo's, not a veth's, so not check_linux_json.
    let footer = swept.check_outcome(&swept.json(), &want);
    assert_eq!(
        (footer.sent, footer.refused),
        (1, 1),
        "the footer's probes sent and refused"
    );
    assert!(
        host.counter_packets("refused").expect("counter") >= 1,
        "the rule refused nothing"
    );
}

/// A sweep of this host's own address and the namespace's (`-p 80,81 <own> <peer>`, one range
/// that starts with the own address): the peer's ports are exactly open and closed, the own
/// address is one `refused` line, reason `own-address`, with a line on stderr saying so.
/// (Before, the own address's route sent every probe over `lo`: all filtered.)
fn own_address_in_a_sweep_of_others_is_refused(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let (own, peer) = (host.source(family), host.target(family));
    let swept = sweep(&sweep_args(&[own.to_string(), peer.to_string()]), TIMEOUT);
    let mut want = answers(&[peer]);
    want.insert((own, 0), Status::Refused(Refusal::OwnAddress));
    swept.check_linux_json(&want, (2, 1, 2));
    let note = format!(
        "prober: {own} is this host's own address: not probed (sweep it on its own to probe it \
         over lo)"
    );
    if !swept.run.stderr_lines().contains(&note.as_str()) {
        swept.fail(&format!("no line {note:?} on stderr"));
    }
}

test_both_families!(
    a_probe_the_firewall_refuses_is_refused_not_filtered,
    own_address_in_a_sweep_of_others_is_refused,
);

/// The test host's /30 block but its network address (`.1` ours, `.2` the namespace's, `.3`
/// the broadcast address): the namespace's ports exactly, ours and the broadcast address
/// refused. (Before, ours was listed filtered.)
#[test]
fn a_block_with_our_own_and_its_broadcast_address() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let network = Ipv4Addr::from(u32::from(host.addr) & !3);
    let broadcast = Ipv4Addr::from(u32::from(network) | 3);
    let targets = [
        format!("{network}/30"),
        "--exclude".into(),
        network.to_string(),
    ];
    let swept = sweep(&sweep_args(&targets), TIMEOUT);
    let mut want = answers(&[host.addr.into()]);
    want.insert(
        (host.host_addr.into(), 0),
        Status::Refused(Refusal::OwnAddress),
    );
    want.insert((broadcast.into(), 0), Status::Refused(Refusal::Broadcast));
    swept.check_linux_json(&want, (2, 1, 2));
}

/// Every machine of a sharded sweep must plan the same targets, and which are this host's own
/// is for each machine to say: a sharded sweep that holds one is refused before anything is
/// sent, with the way out.
#[test]
fn a_sharded_sweep_holding_our_own_address_is_refused() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let (own, peer) = (host.host_addr.to_string(), host.addr.to_string());
    let shard = ["--shard", "1/2", "--seed", "7"].map(String::from);
    let refused = run(
        prober_command(&sweep_args(&[&shard[..], &[own.clone(), peer]].concat())),
        TIMEOUT,
    );
    check_error(&refused, &[&own, "own address", "--exclude"], &[]);
}
