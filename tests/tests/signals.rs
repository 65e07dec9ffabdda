//! (d) Ctrl-C prints the footer for what happened so far; (e) SIGKILL leaves no XDP program behind.

use prober_tests::output::{check_footer, normalize, tcp_reply, tcp_syn_header};
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
    if header != tcp_syn_header(&a, &host.host_if, &a) {
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
