//! Reply-shaped packets that answer no probe: the XDP program must not report them as
//! replies, and must count them as unmatched (shown by `-V`). The forged SYN-ACKs come from
//! a raw socket inside the test host's namespace, so they cross the same veth real replies do.

use std::time::Duration;

use prober_tests::{packets, prober_command, proc::Proc, require_root, TestHost, CLOSED_PORT};

const FORGED: usize = 5;
const BASE_PORT: u16 = 40000;

#[test]
fn forged_syn_acks_are_counted_as_unmatched_not_shown() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = host.addr.to_string();
    let (port, base) = (CLOSED_PORT.to_string(), BASE_PORT.to_string());
    let mut prober = Proc::spawn(prober_command(&[
        "-V", "-c", "3", "-i", "u500000", "-S", "-p", &port, "-s", &base, &target,
    ]));
    // The matcher is attached once the first reply is shown.
    while !prober
        .expect_line(Duration::from_secs(10), "the first reply")
        .starts_with("len=")
    {}

    // From the probed port to the ports the probes use, but acknowledging nothing we sent
    // (the run's sequence number is random: one in 2^31 chance of a false failure).
    let forged = (0..FORGED)
        .map(|i| {
            packets::syn_ack(
                host.addr,
                host.host_addr,
                CLOSED_PORT,
                BASE_PORT + i as u16 % 3,
                7,
            )
        })
        .collect();
    host.send_raw_from_namespace(forged)
        .expect("sending forged SYN-ACKs");

    let run = prober.wait(Duration::from_secs(20));
    let replies = run
        .stdout_lines()
        .iter()
        .filter(|line| line.starts_with("len="))
        .count();
    assert_eq!(replies, 3, "only the three real RST-ACKs are shown\n{run}");
    assert!(
        run.stdout_lines()
            .iter()
            .all(|line| !line.contains("flags=SA")),
        "a forged SYN-ACK was shown\n{run}"
    );
    let counts = format!("xdp: 3 replies matched, {FORGED} unmatched packets from the target");
    assert!(run.stderr.contains(&counts), "want {counts:?}\n{run}");
    assert_eq!(run.code(), Some(0), "{run}");
}
