//! Reply-shaped packets that answer no probe: the XDP program must not report them as
//! replies, and must count them as unmatched (shown by `-V`). The forged SYN-ACKs come from
//! a raw socket inside the test host's namespace, so they cross the same veth real replies do.

use std::time::Duration;

use prober_tests::{
    forger::{Flaw, Forger},
    packets, prober_command,
    proc::{Finished, Proc},
    require_root,
    sweep::{json_outcome, parse_sweep_footer, Status},
    TestHost, CLOSED_PORT, FILTERED_PORT,
};

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

/// One target, TCP and ICMP: every probe answered only by replies the kernel would drop (the
/// host's own stack answers nothing: all input to it is dropped). None is a reply.
#[test]
fn replies_the_kernel_would_drop_are_never_counted_one_target() {
    for (mode, flaws) in [(TCP_SYN, &Flaw::TCP[..]), (ICMP_ECHO, &Flaw::ICMP[..])] {
        let run = five_probes_answered_by_the_forger(mode, flaws);
        let counts = format!(
            "xdp: 0 replies matched, 0 unmatched packets from the target, {} malformed,",
            5 * flaws.len()
        );
        assert!(
            run.stderr.contains(&counts),
            "{mode:?}: want {counts:?}\n{run}"
        );
    }
}

const TCP_SYN: &[&str] = &["-S", "-p", "80"];
const ICMP_ECHO: &[&str] = &["-1"];

/// Five probes of `mode` to a host whose own stack answers nothing, each answered by the
/// forger with `flaws`: none may count (exit 1, 0 received). The run, to check its counts.
fn five_probes_answered_by_the_forger(mode: &[&str], flaws: &[Flaw]) -> Finished {
    require_root();
    let host = TestHost::new().expect("test host");
    host.drop_all_to(host.addr).expect("nft drop");
    let target = host.addr.to_string();
    let forger = Forger::start(&host, flaws).expect("forger");
    let mut args = vec!["-V", "-c", "5", "-i", "u200000"];
    args.extend(mode);
    args.push(&target);
    let run = Proc::spawn(prober_command(&args)).wait(Duration::from_secs(20));
    let forged = forger.stop().expect("forger");
    assert_eq!(forged.probes, 5, "the forger answered every probe\n{run}");
    assert_eq!(run.code(), Some(1), "{mode:?}: no reply, exit 1\n{run}");
    assert!(
        run.stderr
            .contains("5 packets transmitted, 0 packets received"),
        "{mode:?}: a forged reply was counted\n{run}"
    );
    run
}

/// A sweep: a dropped port answered only by flawed SYN-ACKs stays filtered, and a closed port
/// whose real RST-ACK races them stays closed; none is recorded or bounced.
#[test]
fn replies_the_kernel_would_drop_are_never_counted_in_a_sweep() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = host.addr.to_string();
    let ports = format!("{FILTERED_PORT},{CLOSED_PORT}");
    let forger = Forger::start(&host, &Flaw::TCP).expect("forger");
    let run = Proc::spawn(prober_command(&[
        "-p", &ports, "--wait", "1", "-o", "json", &target,
    ]))
    .wait(Duration::from_secs(20));
    let forged = forger.stop().expect("forger");
    assert_eq!(forged.probes, 2, "the forger answered both probes\n{run}");
    let got = json_outcome(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!(
        got.get(&(host.addr, FILTERED_PORT)),
        Some(&Status::Filtered),
        "{run}"
    );
    assert_eq!(
        got.get(&(host.addr, CLOSED_PORT)),
        Some(&Status::Closed),
        "{run}"
    );
    let footer = parse_sweep_footer(&run.stderr).expect("footer");
    assert_eq!(
        (footer.matched, footer.malformed, footer.bounced),
        (1, 2 * Flaw::TCP.len() as u64, 0),
        "only the real RST-ACK matched, every forgery counted as malformed, none bounced\n{run}"
    );
}

/// One target: correct replies, but to source ports and sequence numbers no probe has used yet
/// (the XDP program's window of our ports is wide; which were used, userspace knows). None
/// counts, none is timed against a send time of 0.
#[test]
fn replies_to_probes_never_sent_are_not_counted() {
    for mode in [TCP_SYN, ICMP_ECHO] {
        let run = five_probes_answered_by_the_forger(mode, &[Flaw::UnsentProbe]);
        assert!(
            run.stderr
                .contains("0 duplicate replies, 5 replies to probes never sent"),
            "{mode:?}: each counted as a reply to a probe never sent\n{run}"
        );
    }
}
