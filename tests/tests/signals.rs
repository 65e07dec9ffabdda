//! (d) Ctrl-C prints the footer for what happened so far, also while nobody reads stdout, and a
//! second one ends prober at once; (e) SIGKILL leaves no XDP program behind.

use prober_tests::output::{check_footer, normalize, parse_footer_then, tcp_reply, tcp_syn_header};
use prober_tests::proc::Proc;
use prober_tests::{ip_link_show, prober_command, require_root, TestHost, OPEN_PORT};
use std::time::{Duration, Instant};

/// Default interval is 1 s: header, reply 0 at ~0 s, reply 1 at ~1 s; SIGINT right after the second
/// reply line, ~1 s before probe 2 is due. The footer must count 2 sent, 2 received, exit 0.
#[test]
fn sigint_after_two_replies_prints_footer_and_exits_0() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    let port = OPEN_PORT.to_string();
    let mut p = Proc::spawn(prober_command(&["-c", "10", "-S", "-p", &port, &a]));

    let header = p.expect_line(Duration::from_secs(10), "the header");
    if header != tcp_syn_header(&a, &host.host_if, host.addr) {
        p.fail(&format!("unexpected header {header:?}"));
    }
    let mut rtts = Vec::new();
    for seq in 0..2 {
        let line = p.expect_line(Duration::from_secs(5), &format!("reply line {seq}"));
        match normalize(&line, false) {
            Ok((m, rtt)) if m == tcp_reply(44, host.addr, OPEN_PORT, "SA", seq, 64240) => {
                rtts.push(rtt)
            }
            Ok((m, _)) => p.fail(&format!("reply {seq} is {m:?}")),
            Err(e) => p.fail(&e),
        }
    }
    p.signal(libc::SIGINT);
    let run = p.wait(Duration::from_secs(10));

    assert_eq!(
        run.stdout_lines().len(),
        3,
        "stdout should be the header and 2 replies\n{run}"
    );
    let f = check_footer(&run, &a, 2, &rtts).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!(
        run.stderr.lines().nth(2),
        Some("2 packets transmitted, 2 packets received, 0% packet loss"),
        "{f:?}\n{run}"
    );
    assert_eq!(
        run.code(),
        Some(0),
        "exit status after Ctrl-C with replies\n{run}"
    );
}

/// The XDP program is attached while prober runs and detached by the kernel when prober is
/// SIGKILLed (no cleanup code runs then), within 3 s.
#[test]
fn sigkill_leaves_no_xdp_program_attached() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let before = ip_link_show(&host.host_if, true).expect("ip -d link show");
    assert!(
        !before.contains("xdp"),
        "fresh veth already shows xdp?\n{before}"
    );

    let a = host.addr.to_string();
    let port = OPEN_PORT.to_string();
    let mut p = Proc::spawn(prober_command(&["-c", "30", "-S", "-p", &port, &a]));
    p.expect_line(Duration::from_secs(10), "the header");
    let first = p.expect_line(Duration::from_secs(5), "the first reply line");
    if !first.starts_with("len=44 ") {
        p.fail(&format!("first reply {first:?} is not a SYN-ACK line"));
    }
    let during = ip_link_show(&host.host_if, true).expect("ip -d link show");
    if !during.contains("xdp") {
        p.fail(&format!(
            "while prober runs, `ip -d link show dev {}` shows no xdp:\n{during}",
            host.host_if
        ));
    }

    p.signal(libc::SIGKILL);
    let run = p.wait(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&run.status),
        Some(libc::SIGKILL),
        "prober should have died of SIGKILL\n{run}"
    );

    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = ip_link_show(&host.host_if, false).expect("ip link show");
        if !now.contains("xdp") {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "3 s after SIGKILL, `ip link show dev {}` still shows an XDP program (attached without a \
                 bpf_link, or pinned?):\n{now}\n\nprober's output:\n{run}",
                host.host_if
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The nftables counter of the probes [`ping_with_stdout_blocked`] sends.
const PROBES: &str = "probes_to_80";
/// How long prober may take to react to a signal here: generous, so that only "never" (or
/// close to it) fails; the times seen are printed.
const SIGNAL_BOUND: Duration = Duration::from_secs(2);

fn probes(host: &TestHost) -> u64 {
    host.counter_packets(PROBES).expect("nft counter")
}

/// `prober -c 0 -i u1000 -S -p 80` against the open port with stdout into a pipe nobody
/// reads, once 3 000 probes have arrived: by then about 240 kB of reply lines, far more than
/// the pipe (64 KiB) takes, so prober's writes to stdout block.
fn ping_with_stdout_blocked(host: &TestHost) -> Proc {
    host.add_counter(PROBES, &format!("tcp dport {OPEN_PORT} tcp flags == syn"))
        .expect("nft counter");
    let (a, port) = (host.addr.to_string(), OPEN_PORT.to_string());
    let mut p = Proc::spawn_stalled(
        prober_command(&["-c", "0", "-i", "u1000", "-S", "-p", &port, &a]),
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while probes(host) < 3000 {
        if Instant::now() > deadline || !p.running() {
            p.fail("3000 probes did not arrive within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// Finding 7 of issue 9: while stdout was blocked, SIGINT and SIGTERM were not acted on (the
/// reply loop sat in a write); only SIGKILL ended prober. Now sending stops, the footer comes on
/// stderr, and prober exits without waiting for stdout (exit 3: reply lines were not written).
fn stop_with_stdout_blocked(signal: i32) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let mut p = ping_with_stdout_blocked(&host);
    let sent_before = probes(&host);
    let signalled = Instant::now();
    p.signal(signal);
    let footer_after = loop {
        if p.stderr_so_far().contains("\nround-trip min/avg/max = ") {
            break signalled.elapsed();
        }
        if signalled.elapsed() > SIGNAL_BOUND {
            p.fail(&format!(
                "no footer on stderr {SIGNAL_BOUND:?} after signal {signal}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let run = p.wait(SIGNAL_BOUND);
    let exited_after = signalled.elapsed();
    let sent = probes(&host);
    // One probe a millisecond: the probes that arrived after the signal tell how long sending
    // went on (plus the few ms the counter's read before the signal took).
    eprintln!(
        "signal {signal} with stdout blocked: {} probes after it (~1 per ms), footer after \
         {footer_after:?}, exit observed after {exited_after:?}",
        sent - sent_before
    );
    let (footer, after) = parse_footer_then(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!(
        footer.transmitted, sent,
        "the footer counts what was sent\n{run}"
    );
    assert!(
        footer.received > 0 && footer.received <= footer.transmitted,
        "{run}"
    );
    assert!(
        matches!(after[..], [line] if line.starts_with("prober: output cut short: ")),
        "after the footer, one line should say that the output was cut short\n{run}"
    );
    assert_eq!(
        run.code(),
        Some(3),
        "exit status: the output is incomplete\n{run}"
    );
}

#[test]
fn sigint_with_stdout_blocked_stops_sending_and_prints_the_footer() {
    stop_with_stdout_blocked(libc::SIGINT);
}

#[test]
fn sigterm_with_stdout_blocked_stops_sending_and_prints_the_footer() {
    stop_with_stdout_blocked(libc::SIGTERM);
}

/// Whether process `pid` has a handler for SIGINT (the SigCgt mask of /proc/PID/status).
fn catches_sigint(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("a SigCgt line");
    mask & (1 << (libc::SIGINT - 1)) != 0
}

/// While prober winds down after a first SIGINT (here: it gives the blocked stdout a moment), a
/// second one ends it at once, by the signal's default action.
#[test]
fn a_second_sigint_ends_prober_at_once() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let mut p = ping_with_stdout_blocked(&host);
    assert!(
        catches_sigint(p.pid()),
        "prober should catch SIGINT\n{}",
        p.dump()
    );
    p.signal(libc::SIGINT);
    // Taking the first SIGINT, prober gives the signal its default action back.
    let first = Instant::now();
    while catches_sigint(p.pid()) {
        if first.elapsed() > SIGNAL_BOUND {
            p.fail(&format!(
                "still catching SIGINT {SIGNAL_BOUND:?} after the first"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let taken_after = first.elapsed();
    p.signal(libc::SIGINT);
    let second = Instant::now();
    let run = p.wait(SIGNAL_BOUND);
    eprintln!(
        "first SIGINT taken after {taken_after:?}; exit observed {:?} after the second",
        second.elapsed()
    );
    assert!(
        std::os::unix::process::ExitStatusExt::signal(&run.status) == Some(libc::SIGINT)
            || run.code() == Some(130),
        "the second SIGINT should have ended prober\n{run}"
    );
}
