//! (c) prober on loopback, over IPv4 (127.0.0.1) and IPv6 (::1): a listener answers SYN-ACK, a
//! closed port RST-ACK. prober attaches XDP to `lo` (one program at a time), so every test here
//! holds `loopback_lock()`.
//!
//! On `lo` the XDP program sees both directions, including prober's own SYNs and the host kernel's
//! RST to each SYN-ACK; the exact line checks make sure none of those is printed as a reply.

use prober_tests::output::{check_run, ip_header_len, tcp_reply, tcp_syn_header, Expected};
use prober_tests::proc::{run, Finished};
use prober_tests::{loopback_lock, prober_command, require_root, test_both_families, Family};
use std::net::{IpAddr, TcpListener};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
/// A SYN-ACK's TCP header: 20 bytes and Linux's MSS option (the probes carry no options).
const SYN_ACK_TCP_LEN: u32 = 24;
const RST_TCP_LEN: u32 = 20;

fn probe(loopback: IpAddr, port: u16) -> Finished {
    let (p, target) = (port.to_string(), loopback.to_string());
    run(
        prober_command(&["-c", "4", "-i", "u200000", "-S", "-p", &p, &target]),
        TIMEOUT,
    )
}

/// Four probes to `loopback`, typed as its address, answered by `replies`.
fn expected(loopback: IpAddr, replies: Vec<String>) -> Expected {
    Expected {
        target: loopback.to_string(),
        header: tcp_syn_header(&loopback.to_string(), "lo", loopback),
        replies,
        mask_id: false,
        transmitted: 4,
    }
}

fn loopback_listener_answers_syn_ack(family: Family) {
    require_root();
    let loopback = family.loopback();
    let _lo = loopback_lock();
    let listener = TcpListener::bind((loopback, 0)).expect("a listener on loopback");
    let port = listener.local_addr().unwrap().port();
    let run = probe(loopback, port);

    // The SYN-ACK window on lo depends on the loopback MTU and socket buffer sysctls (65495 on a
    // default kernel); take it from the first reply, require it to be non-zero and the same in all.
    let first = run
        .stdout_lines()
        .get(1)
        .map(|l| l.to_string())
        .unwrap_or_default();
    let win: u32 = first
        .split(' ')
        .find_map(|t| t.strip_prefix("win="))
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no reply line with a numeric win= field\n{run}"));
    assert!(
        win > 0,
        "a SYN-ACK from a listening socket has a non-zero window\n{run}"
    );

    let len = ip_header_len(loopback) + SYN_ACK_TCP_LEN;
    let replies = (0..4)
        .map(|s| tcp_reply(len, loopback, port, "SA", s, win))
        .collect();
    check_run(&run, &expected(loopback, replies));
    drop(listener);
}

fn loopback_closed_port_answers_rst_ack(family: Family) {
    require_root();
    let loopback = family.loopback();
    let _lo = loopback_lock();
    // A port that was free a moment ago: bind, note, close.
    let port = {
        let l = TcpListener::bind((loopback, 0)).expect("a listener on loopback");
        l.local_addr().unwrap().port()
    };
    let run = probe(loopback, port);
    let len = ip_header_len(loopback) + RST_TCP_LEN;
    let replies = (0..4)
        .map(|s| tcp_reply(len, loopback, port, "RA", s, 0))
        .collect();
    check_run(&run, &expected(loopback, replies));
}

test_both_families!(
    loopback_listener_answers_syn_ack,
    loopback_closed_port_answers_rst_ack
);
