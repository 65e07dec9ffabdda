//! (c) prober on loopback: a listener on 127.0.0.1 answers SYN-ACK, a closed port RST-ACK. prober
//! attaches XDP to `lo` (one program at a time), so every test here holds `loopback_lock()`.
//!
//! On `lo` the XDP program sees both directions, including prober's own SYNs and the host kernel's
//! RST to each SYN-ACK; the exact line checks make sure none of those is printed as a reply.

use prober_tests::output::{check_run, tcp_reply, tcp_syn_header, Expected};
use prober_tests::proc::run;
use prober_tests::{loopback_lock, prober_command, require_root};
use std::net::TcpListener;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

fn probe(port: u16) -> prober_tests::proc::Finished {
    let p = port.to_string();
    run(
        prober_command(&["-c", "4", "-i", "u200000", "-S", "-p", &p, "127.0.0.1"]),
        TIMEOUT,
    )
}

#[test]
fn loopback_listener_answers_syn_ack() {
    require_root();
    let _lo = loopback_lock();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let run = probe(port);

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

    let exp = Expected {
        target: "127.0.0.1".into(),
        header: tcp_syn_header("127.0.0.1", "lo", "127.0.0.1"),
        replies: (0..4)
            .map(|s| tcp_reply(44, "127.0.0.1", port, "SA", s, win))
            .collect(),
        mask_id: false,
        transmitted: 4,
    };
    check_run(&run, &exp);
    drop(listener);
}

#[test]
fn loopback_closed_port_answers_rst_ack() {
    require_root();
    let _lo = loopback_lock();
    // A port that was free a moment ago: bind, note, close.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        l.local_addr().unwrap().port()
    };
    let run = probe(port);
    let exp = Expected {
        target: "127.0.0.1".into(),
        header: tcp_syn_header("127.0.0.1", "lo", "127.0.0.1"),
        replies: (0..4)
            .map(|s| tcp_reply(40, "127.0.0.1", port, "RA", s, 0))
            .collect(),
        mask_id: false,
        transmitted: 4,
    };
    check_run(&run, &exp);
}
