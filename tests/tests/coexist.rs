//! (j) Coexistence: an interface's XDP hook holds one program, so a second prober there (or
//! prober on an interface where any other XDP program runs) matches its replies at TCX
//! ingress instead, behind it. Both runs get every reply they are owed.

use prober_tests::output::parse_footer_then;
use prober_tests::proc::{run, Proc};
use prober_tests::sweep::{json_outcome, parse_sweep_footer, Status};
use prober_tests::{prober_command, require_root, TestHost, CLOSED_PORT, FILTERED_PORT, OPEN_PORT};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn a_second_prober_on_the_interface_matches_at_tcx_ingress_and_both_get_their_replies() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = host.addr.to_string();
    let open = OPEN_PORT.to_string();
    // The first holds the XDP hook for the whole test.
    let mut first = Proc::spawn(prober_command(&[
        "-V", "-c", "0", "-i", "u100000", "-S", "-p", &open, &target,
    ]));
    first.expect_line(Duration::from_secs(10), "the first's first reply");

    let closed = CLOSED_PORT.to_string();
    let second = run(
        prober_command(&[
            "-V", "-c", "3", "-i", "u100000", "-S", "-p", &closed, &target,
        ]),
        TIMEOUT,
    );
    assert_eq!(second.code(), Some(0), "{second}");
    assert!(
        second.stdout.contains("reply matcher at TCX ingress"),
        "the second says where it matches\n{second}"
    );
    let (footer, _) = parse_footer_then(&second.stderr).expect("footer");
    assert_eq!((footer.transmitted, footer.received), (3, 3), "{second}");
    assert_eq!(
        second
            .stdout_lines()
            .iter()
            .filter(|l| l.contains("flags=RA"))
            .count(),
        3,
        "{second}"
    );

    // A sweep, too: it drops its replies after matching them; the first passes them on.
    let ports = format!("{OPEN_PORT},{CLOSED_PORT},{FILTERED_PORT}");
    let sweep = run(
        prober_command(&["-p", &ports, "--wait", "1", "-O", "json", &target]),
        TIMEOUT,
    );
    assert_eq!(sweep.code(), Some(0), "{sweep}");
    let got = json_outcome(&sweep.stdout).unwrap_or_else(|e| panic!("{e}\n{sweep}"));
    for (port, status) in [
        (OPEN_PORT, Status::Open),
        (CLOSED_PORT, Status::Closed),
        (FILTERED_PORT, Status::Filtered),
    ] {
        assert_eq!(
            got.get(&(host.addr.into(), port)),
            Some(&status),
            "port {port}\n{sweep}"
        );
    }
    let footer = parse_sweep_footer(&sweep.stderr).expect("sweep footer");
    assert_eq!(footer.matched, 2, "{sweep}");

    first.signal(libc::SIGINT);
    let first = first.wait(TIMEOUT);
    assert_eq!(first.code(), Some(0), "{first}");
    assert!(
        first
            .stdout
            .contains("reply matcher at XDP, generic (skb) mode"),
        "{first}"
    );
    let (footer, _) = parse_footer_then(&first.stderr).expect("footer");
    // A probe sent just before the interrupt may still be on its way.
    assert!(
        footer.received + 1 >= footer.transmitted && footer.received > 0,
        "the first lost replies to the others: {} of {}\n{first}",
        footer.received,
        footer.transmitted
    );
}
