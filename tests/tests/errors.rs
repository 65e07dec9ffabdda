//! (f) Bad input and unusable environments: exit status 2, exactly one line on stderr starting with
//! `prober: ` that names the problem (keywords are matched case-insensitively), no panic text, no
//! reply lines. Targets are test-namespace hosts (or loopback under the loopback lock), so a prober
//! that wrongly goes ahead still only sends where it may.

use prober_tests::output::check_error;
use prober_tests::proc::{run, Finished, Proc};
use prober_tests::unprivileged::ProberCopy;
use prober_tests::{
    ip_link_show, loopback_lock, prober_bin, prober_command, require_root, TestHost, OPEN_PORT,
};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

/// prober with `args` followed by a fresh test host's address.
fn against_test_host(args: &[&str]) -> Finished {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    let mut all = args.to_vec();
    all.push(&a);
    run(prober_command(&all), TIMEOUT)
}

#[test]
fn unknown_host() {
    require_root();
    // Inside a test namespace whose resolv.conf points at the namespace's own 127.0.0.1 (nothing
    // listens there, and the namespace has no route out), so no DNS query leaves the machine.
    let host = TestHost::new().expect("test host");
    let mut cmd = host.command_in_ns(prober_bin());
    cmd.args(["-c", "1", "-S", "-p", "80", "no-such-host.invalid"]);
    let run = run(cmd, TIMEOUT);
    check_error(&run, &["unknown host"], &[]);
}

#[test]
fn port_zero() {
    let run = against_test_host(&["-c", "1", "-S", "-p", "0"]);
    check_error(&run, &["port"], &[]);
}

#[test]
fn port_too_large() {
    let run = against_test_host(&["-c", "1", "-S", "-p", "65536"]);
    check_error(&run, &[], &["port", "65536"]);
}

#[test]
fn port_not_a_number() {
    let run = against_test_host(&["-c", "1", "-S", "-p", "abc"]);
    check_error(&run, &["abc"], &[]);
}

#[test]
fn unknown_interface() {
    let run = against_test_host(&["-c", "1", "-S", "-p", "80", "-I", "nosuchif0"]);
    check_error(&run, &["interface", "nosuchif0"], &[]);
}

#[test]
fn bad_interval() {
    let run = against_test_host(&["-c", "1", "-S", "-p", "80", "-i", "abc"]);
    check_error(&run, &["interval"], &[]);
}

#[test]
fn count_negative() {
    let run = against_test_host(&["-c", "-3", "-S", "-p", "80"]);
    check_error(&run, &[], &["count", "-3"]);
}

#[test]
fn ipv6_target() {
    require_root();
    // If prober wrongly went ahead it would use lo.
    let _lo = loopback_lock();
    let run = run(
        prober_command(&["-c", "1", "-S", "-p", "80", "::1"]),
        TIMEOUT,
    );
    check_error(&run, &["IPv6"], &[]);
}

#[test]
fn unprivileged_user() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let copy = ProberCopy::new().expect("a copy of prober for nobody");
    let target = host.addr.to_string();
    let run = run(
        copy.command_as_nobody(&["-c", "1", "-S", "-p", "80", &target]),
        TIMEOUT,
    );
    check_error(&run, &["CAP_", "root"], &[]);
}

/// One prober per interface: a second one on the same veth must fail with an XDP error, and must not
/// disturb the first (its XDP program stays attached and it keeps printing replies).
#[test]
fn second_instance_on_same_interface() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    let port = OPEN_PORT.to_string();
    let mut first = Proc::spawn(prober_command(&["-c", "20", "-S", "-p", &port, &a]));
    first.expect_line(Duration::from_secs(10), "the first prober's header");
    let l = first.expect_line(Duration::from_secs(5), "the first prober's first reply");
    if !l.starts_with("len=44 ") {
        first.fail(&format!("first reply {l:?} is not a SYN-ACK line"));
    }

    let second = run(prober_command(&["-c", "1", "-S", "-p", &port, &a]), TIMEOUT);
    check_error(&second, &["XDP"], &[]);

    if !first.running() {
        first.fail("the first prober exited when the second one started");
    }
    let link = ip_link_show(&host.host_if, true).expect("ip -d link show");
    if !link.contains("xdp") {
        first.fail(&format!(
            "after the second prober failed, the first's XDP program is gone:\n{link}"
        ));
    }
    let l = first.expect_line(
        Duration::from_secs(5),
        "a further reply from the first prober",
    );
    if !l.starts_with("len=44 ") {
        first.fail(&format!("further reply {l:?} is not a SYN-ACK line"));
    }
    first.signal(libc::SIGKILL);
    first.wait(Duration::from_secs(5));
}
