//! `--xdp-mode`: generic XDP unless the user asks for native. Native XDP costs the host: on many
//! NIC drivers attaching and detaching it rebuilds the rings (and may reset the link), and on a
//! veth it clamps the peer's MTU. A default run must leave the interface as it was; native is
//! there only when asked for, and a native attach the driver refuses is an error, not a silent
//! fallback.

use prober_tests::output::{check_error, parse_footer};
use prober_tests::proc::{run, Proc};
use prober_tests::{
    ip_link_show, loopback_lock, prober_command, require_root, run_checked, TestHost, OPEN_PORT,
};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);
/// A veth's own maximum MTU, as long as nothing (native XDP on its peer) clamps it.
const VETH_MAX_MTU: u32 = 65535;
const JUMBO_MTU: &str = "9000";

/// The XDP attach mode `ip link show` names on the first line of `link` (`xdp` for driver mode,
/// `xdpgeneric`, `xdpoffload`, `xdpmulti`), or None when no program is attached.
fn attach_mode(link: &str) -> Option<&str> {
    link.lines().next()?.split_whitespace().find_map(|token| {
        token
            .split('/')
            .next()
            .filter(|mode| mode.starts_with("xdp"))
    })
}

/// `ip -n NS -d link show PEER`: the veth end inside the namespace.
fn peer_link(host: &TestHost) -> String {
    run_checked(Command::new("ip").args(["-n", &host.ns, "-d", "link", "show", &host.peer_if]))
        .expect("ip -n NS -d link show PEER")
}

fn max_mtu(link: &str) -> u32 {
    let mut tokens = link.split_whitespace();
    tokens
        .find(|&token| token == "maxmtu")
        .and_then(|_| tokens.next())
        .and_then(|mtu| mtu.parse().ok())
        .unwrap_or_else(|| panic!("no maxmtu in `ip -d link show`:\n{link}"))
}

/// `ip -n NS link set PEER mtu 9000`: Ok, or what `ip` said.
fn set_jumbo_mtu_on_peer(host: &TestHost) -> anyhow::Result<String> {
    run_checked(Command::new("ip").args([
        "-n",
        &host.ns,
        "link",
        "set",
        &host.peer_if,
        "mtu",
        JUMBO_MTU,
    ]))
}

/// What the interfaces looked like while a one-target run was attached.
struct DuringRun {
    host_link: String,
    peer_link: String,
    jumbo_mtu: anyhow::Result<String>,
}

/// `prober -c 0 -i 1 -S -p 80 [extra] HOST` until its first reply; then looks at both veth ends
/// and tries a jumbo MTU on the peer; then SIGINT by PID, which must end the run with the footer
/// and exit 0.
fn during_one_target_run(host: &TestHost, extra: &[&str]) -> DuringRun {
    let target = host.addr.to_string();
    let port = OPEN_PORT.to_string();
    let mut args = vec!["-c", "0", "-i", "1", "-S", "-p", &port];
    args.extend_from_slice(extra);
    args.push(&target);
    let mut prober = Proc::spawn(prober_command(&args));
    prober.expect_line(TIMEOUT, "the header");
    let reply = prober.expect_line(TIMEOUT, "the first reply line");
    if !reply.starts_with("len=44 ") {
        prober.fail(&format!("first reply {reply:?} is not a SYN-ACK line"));
    }
    let during = DuringRun {
        host_link: ip_link_show(&host.host_if, true).expect("ip -d link show"),
        peer_link: peer_link(host),
        jumbo_mtu: set_jumbo_mtu_on_peer(host),
    };
    prober.signal(libc::SIGINT);
    let run = prober.wait(TIMEOUT);
    let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    let replies = run
        .stdout_lines()
        .iter()
        .filter(|line| line.starts_with("len="))
        .count() as u64;
    assert!(
        footer.received >= 1 && footer.received == replies && footer.transmitted >= footer.received,
        "footer {footer:?} does not count the {replies} reply lines\n{run}"
    );
    assert_eq!(run.code(), Some(0), "exit status after Ctrl-C\n{run}");
    during
}

/// (a) By default a one-target run attaches generic XDP, which leaves the peer's MTU alone:
/// its maximum stays the veth's 65535, and a jumbo MTU can be set while prober runs.
#[test]
fn a_default_one_target_run_attaches_generic_and_leaves_the_peer_mtu_alone() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let during = during_one_target_run(&host, &[]);
    let mut wrong = Vec::new();
    let mode = attach_mode(&during.host_link);
    if mode != Some("xdpgeneric") {
        wrong.push(format!("attached as {mode:?}, not xdpgeneric"));
    }
    let peer_max = max_mtu(&during.peer_link);
    if peer_max != VETH_MAX_MTU {
        wrong.push(format!(
            "the peer's max MTU was {peer_max}, not {VETH_MAX_MTU}"
        ));
    }
    if let Err(refused) = &during.jumbo_mtu {
        wrong.push(format!(
            "MTU {JUMBO_MTU} on the peer was refused: {refused:#}"
        ));
    }
    assert!(
        wrong.is_empty(),
        "during a default run: {}\n{}{}",
        wrong.join("; "),
        during.host_link,
        during.peer_link
    );
}

/// (b) `--xdp-mode native` attaches in driver mode, and costs what the README says: the peer's
/// maximum MTU is clamped and a jumbo MTU refused while prober runs.
#[test]
fn native_mode_attaches_in_the_driver_and_clamps_the_peer_mtu() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let during = during_one_target_run(&host, &["--xdp-mode", "native"]);
    assert_eq!(
        attach_mode(&during.host_link),
        Some("xdp"),
        "--xdp-mode native must attach in driver mode to {}:\n{}",
        host.host_if,
        during.host_link
    );
    let clamped = max_mtu(&during.peer_link);
    assert!(
        clamped < VETH_MAX_MTU,
        "native XDP on a veth clamps its peer's max MTU; it stayed {clamped}:\n{}",
        during.peer_link
    );
    assert!(
        during.jumbo_mtu.is_err(),
        "the peer took MTU {JUMBO_MTU} above its clamped maximum {clamped}"
    );
}

/// The mode is checked by the command line parser: one line naming the option and the choices.
#[test]
fn an_unknown_mode_is_refused() {
    let refused = run(
        prober_command(&["--xdp-mode", "driver", "-S", "-p", "80", "198.18.4.2"]),
        TIMEOUT,
    );
    check_error(&refused, &["--xdp-mode", "generic", "native"], &[]);
}

/// prober with `args` and `host`'s address, which must fail with an error line holding every
/// word of `words` before it sends a single probe (counted by nftables in the namespace).
fn refused_before_sending(host: &TestHost, args: &[&str], words: &[&str]) {
    host.add_counter("syns", "tcp flags & (syn|ack) == syn")
        .expect("nft counter");
    let target = host.addr.to_string();
    let refused = run(prober_command(&[args, &[&target]].concat()), TIMEOUT);
    check_error(&refused, words, &[]);
    let syns = host.counter_packets("syns").expect("nft counter");
    assert_eq!(syns, 0, "the refused run sent {syns} probes\n{refused}");
}

/// A sweep answers each SYN-ACK with a RST sent by XDP_TX, which native XDP on a veth drops
/// unless the peer runs an XDP program: refused before anything is attached or sent.
#[test]
fn a_native_sweep_on_a_veth_is_refused() {
    require_root();
    let host = TestHost::standard().expect("test host");
    refused_before_sending(
        &host,
        &["--xdp-mode", "native", "--scan", "1-100"],
        &["native", "veth", "--xdp-mode generic"],
    );
}

/// A driver without native XDP (`lo` has none) makes `--xdp-mode native` an error, not a
/// silent fallback to generic.
#[test]
fn a_refused_native_attach_is_an_error() {
    require_root();
    let _lo = loopback_lock();
    let refused = run(
        prober_command(&[
            "--xdp-mode",
            "native",
            "-c",
            "1",
            "-S",
            "-p",
            "9",
            "127.0.0.1",
        ]),
        TIMEOUT,
    );
    check_error(&refused, &["lo", "native", "--xdp-mode generic"], &[]);
}

/// A driver that refuses native XDP for a reason of its own (a veth whose peer's MTU is above
/// what native XDP allows) ends the run with that error: no fallback to generic, no probe sent.
#[test]
fn a_native_attach_the_driver_refuses_ends_the_run() {
    require_root();
    let host = TestHost::standard().expect("test host");
    set_jumbo_mtu_on_peer(&host).expect("a jumbo MTU on the peer, before any XDP");
    let port = OPEN_PORT.to_string();
    refused_before_sending(
        &host,
        &["--xdp-mode", "native", "-c", "1", "-S", "-p", &port],
        &[&host.host_if, "native", "refused", "--xdp-mode generic"],
    );
}
