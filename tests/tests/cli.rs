//! The command line as a user types it: which mode a command runs in (only what is probed
//! switches it), options that work in a ping as in a sweep, and the refusals of options that do
//! not. Targets are test-namespace hosts, so a prober that wrongly goes ahead still only sends
//! where it may.

use prober_tests::output::{
    check_error, compare_with_hping3, normalize, parse_footer, tcp_reply, tcp_syn_header,
};
use prober_tests::proc::{run, Finished};
use prober_tests::{hping3_command, prober_command, require_root, ScratchDir, TestHost, OPEN_PORT};
use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);
const VETH_SYNACK_WIN: u32 = 64240;

/// prober with `args` followed by `host`'s address.
fn against(host: &TestHost, args: &[&str]) -> Finished {
    let target = host.addr.to_string();
    run(prober_command(&[args, &[&target]].concat()), TIMEOUT)
}

/// `--output` and `--wait` keep a one-target ping a ping: its header and reply lines go to the
/// file (stdout stays empty), its footer to stderr, and an existing file needs `--force`.
#[test]
fn output_and_wait_keep_a_ping_a_ping() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let dir = ScratchDir::new("ping-output").expect("scratch dir");
    let path = dir.path.join("x.txt");
    let file = path.to_str().expect("utf-8 path");
    let port = OPEN_PORT.to_string();
    let args = [
        "-c", "2", "-i", "u200000", "-S", "-p", &port, "--wait", "0.2",
    ];
    let ping = against(&host, &[&args[..], &["--output", file]].concat());
    assert_eq!(ping.code(), Some(0), "{ping}");
    assert_eq!(ping.stdout, "", "the lines go to the file\n{ping}");
    let footer = parse_footer(&ping.stderr).unwrap_or_else(|error| panic!("{error}\n{ping}"));
    assert_eq!((footer.transmitted, footer.received), (2, 2), "{ping}");
    let written = fs::read_to_string(&path).expect("the output file");
    let lines: Vec<&str> = written.lines().collect();
    let expected_header = tcp_syn_header(&host.addr.to_string(), &host.host_if, host.addr);
    assert_eq!(lines.first(), Some(&expected_header.as_str()), "{written}");
    for (seq, line) in lines[1..].iter().enumerate() {
        let reply = tcp_reply(44, host.addr, OPEN_PORT, "SA", seq as u32, VETH_SYNACK_WIN);
        let (shown, _rtt) = normalize(line, false).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(shown, reply);
    }
    assert_eq!(lines.len(), 3, "{written}");

    let again = against(&host, &[&args[..], &["--output", file]].concat());
    check_error(&again, &["exists", "--force"], &[]);
    let forced = against(&host, &[&args[..], &["--output", file, "--force"]].concat());
    assert_eq!(forced.code(), Some(0), "{forced}");
    assert_eq!(fs::read_to_string(&path).expect("file").lines().count(), 3);
}

/// A range is a sweep, even of one port: `-p 80-80` prints the scan table, not a ping's lines
/// (it used to run a ping with no TCP flags).
#[test]
fn a_range_of_one_port_is_a_sweep() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let range = format!("{OPEN_PORT}-{OPEN_PORT}");
    let sweep = against(&host, &["-p", &range]);
    assert_eq!(sweep.code(), Some(0), "{sweep}");
    assert!(
        sweep.stderr.contains(&format!("port {range}")) && !sweep.stdout.contains("HPING"),
        "not a scan\n{sweep}"
    );
    let open_row = format!("{OPEN_PORT:>5} http");
    assert!(sweep.stdout.contains(&open_row), "{sweep}");
    assert!(
        sweep
            .stderr
            .contains("\n1 probe sent to 1 host x 1 port in "),
        "counts of one are singular\n{sweep}"
    );
}

/// What only sweeps do is refused in a ping, before anything is sent, instead of turning it
/// into a sweep.
#[test]
fn sweep_options_are_refused_in_a_ping() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = OPEN_PORT.to_string();
    for option in [&["--rate", "5"][..], &["-O", "json"], &["--retries", "1"]] {
        let refused = against(&host, &[&["-c", "1", "-S", "-p", &port], option].concat());
        check_error(
            &refused,
            &[option[0], "no meaning for one target", "-p 80-80"],
            &[],
        );
    }
}

/// hping3, then prober, with `-n -S -i u200000 args` against a host that listens on 80, 81
/// and 82, drops 83 and has nothing on 79 (closed): the same lines but for RTTs, the same
/// footer counts and exit status.
fn same_as_hping3(args: &[&str]) {
    require_root();
    let mut host = TestHost::new().expect("test host");
    for port in [80, 81, 82] {
        host.listen_tcp(port).expect("listener");
    }
    host.drop_tcp_port(83).expect("nft drop rule");
    let target = host.addr.to_string();
    let all = [&["-n", "-S", "-i", "u200000"][..], args, &[&target]].concat();
    let hping3 = run(hping3_command(&all), TIMEOUT);
    let prober = run(prober_command(&all), TIMEOUT);
    compare_with_hping3(&hping3, &prober, false);
}

/// `-p +81`: one port up for each reply, so 81 and 82 answer, then 83 is probed until the
/// count runs out (no reply moves it on).
#[test]
fn plus_port_moves_up_with_each_reply_as_hping3() {
    same_as_hping3(&["-c", "4", "-p", "+81"]);
}

/// `-p ++79`: one port up for each probe: closed 79, then 80, 81 and 82.
#[test]
fn plus_plus_port_moves_up_with_each_probe_as_hping3() {
    same_as_hping3(&["-c", "4", "-p", "++79"]);
}

/// `-p 0`, which hping3 takes.
#[test]
fn port_zero_as_hping3() {
    same_as_hping3(&["-c", "2", "-p", "0"]);
}

/// `-v` prints prober's version line and exits 0, as hping3's `-v` prints its own.
#[test]
fn minus_v_prints_the_version() {
    let shown = run(prober_command(&["-v"]), TIMEOUT);
    assert_eq!(shown.code(), Some(0), "{shown}");
    let version = shown.stdout.strip_prefix("prober ").unwrap_or_default();
    assert!(
        version.trim_end().split('.').count() == 3 && shown.stdout.lines().count() == 1,
        "not one version line\n{shown}"
    );
    assert_eq!(shown.stderr, "", "{shown}");
}

/// A ping of a broadcast address (the test veth's /30's) is refused before the header, in one
/// line: it printed the header, then `sending probes: Permission denied`, and no footer.
#[test]
fn a_broadcast_address_is_refused_before_the_header() {
    require_root();
    let host = TestHost::new().expect("test host");
    let broadcast = Ipv4Addr::from(u32::from(host.addr) + 1).to_string();
    let port = OPEN_PORT.to_string();
    for mode in [&["-S", "-p", &port][..], &["-1"]] {
        let args = [&["-c", "1"], mode, &[&broadcast]].concat();
        let refused = run(prober_command(&args), TIMEOUT);
        check_error(&refused, &[&broadcast, "is a broadcast address"], &[]);
        assert_eq!(refused.stdout, "", "no header\n{refused}");
    }
}
