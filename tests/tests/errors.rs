//! (f) Bad input and unusable environments: exit status 2, exactly one line on stderr starting with
//! `prober: ` that names the problem (keywords are matched case-insensitively), no panic text, no
//! reply lines. Targets are test-namespace hosts (or prober runs inside a test namespace), so a
//! prober that wrongly goes ahead still only sends where it may.

use prober_tests::output::{check_error, parse_footer};
use prober_tests::proc::{run, Finished, Proc};
use prober_tests::unprivileged::ProberCopy;
use prober_tests::{
    ip_link_show, prober_bin, prober_command, require_root, run_checked, test_both_families,
    Family, ScratchDir, ScratchFile, TestHost, CLOSED_PORT, OPEN_PORT,
};
use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);
/// For refusals that must come before anything is read or sent: a prober that reads a FIFO or
/// /dev/zero instead is killed after this and the test fails.
const AT_ONCE: Duration = Duration::from_secs(5);

/// prober with `args` followed by a fresh test host's address.
fn against_test_host(args: &[&str]) -> Finished {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    let mut all = args.to_vec();
    all.push(&a);
    run(prober_command(&all), TIMEOUT)
}

/// hping3's options that prober lacks are refused with what they are, before anything is
/// sent (before: clap's `unexpected argument '-T' found`).
#[test]
fn hping3_options_prober_lacks_are_refused_with_what_they_are() {
    for (option, what) in [("-9", "hping3's listen mode"), ("-G", "sets IP options")] {
        let refused = run(
            prober_command(&[option, "-S", "-p", "80", "198.18.4.2"]),
            TIMEOUT,
        );
        check_error(&refused, &[option, what], &[]);
    }
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

/// prober's numeric forms other than dotted quads (octal, bare integers, short forms, hex,
/// leading zeros) are refused as not addresses, and are never given to the resolver: a
/// listener on the namespace's name server address sees no query for them, while it does see
/// one for a real name.
#[test]
fn numeric_forms_that_are_not_addresses_are_refused_without_a_lookup() {
    require_root();
    // In a namespace without routes out, so that a prober that read 010.0.0.1 as 8.0.0.1 would
    // still send nothing anywhere.
    let host = TestHost::new().expect("test host");
    let name_server = host
        .in_ns(|| UdpSocket::bind((Ipv4Addr::LOCALHOST, 53)))
        .expect("entering the namespace")
        .expect("a UDP socket on the namespace's name server address");
    name_server.set_nonblocking(true).expect("non-blocking");
    let in_ns = |target: &str| {
        let mut cmd = host.command_in_ns(prober_bin());
        cmd.args(["-c", "1", "-S", "-p", "80", target]);
        cmd
    };
    let mut query = [0u8; 512];
    for target in [
        "010.0.0.1",
        "3232235777",
        "198.018.200.002",
        "127.1",
        "0x7f.0.0.1",
    ] {
        let refused = run(in_ns(target), TIMEOUT);
        check_error(&refused, &["is not a valid address", target], &[]);
        match name_server.recv_from(&mut query) {
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            other => panic!("{target} reached the resolver: {other:?}\n{refused}"),
        }
    }

    // Ranges are blocks, in either mode and in --exclude: a sweep's, never a name to look up.
    for (args, error) in [
        (
            &["-c", "1", "-S", "-p", "80", "198.18.4.1-198.18.4.5"][..],
            "-c has no meaning in a sweep",
        ),
        (
            &["-c", "1", "-S", "-p", "80", "2001:db8::1-2001:db8::5"],
            "-c has no meaning in a sweep",
        ),
        (
            &[
                "-p",
                "80",
                "198.18.4.0/29",
                "--exclude",
                "198.18.4.0-198.18.4.7",
            ],
            "no targets",
        ),
    ] {
        let mut cmd = host.command_in_ns(prober_bin());
        cmd.args(args);
        let refused = run(cmd, TIMEOUT);
        check_error(&refused, &[error], &[]);
        match name_server.recv_from(&mut query) {
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            other => panic!("{args:?} reached the resolver: {other:?}\n{refused}"),
        }
    }

    // The listener does see queries: a name's lookup reaches it (and is told the name does
    // not exist, in the DNS answer made from the query: QR set, RCODE 3).
    let mut lookup = Proc::spawn(in_ns("no-such-host.invalid"));
    name_server
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    name_server.set_nonblocking(false).expect("blocking");
    let mut queries = 0;
    while lookup.running() {
        if let Ok((len, from)) = name_server.recv_from(&mut query) {
            queries += 1;
            let mut answer = query[..len].to_vec();
            answer[2] |= 0x80;
            answer[3] = (answer[3] & 0xf0) | 3;
            name_server.send_to(&answer, from).expect("answering");
        }
    }
    let unknown = lookup.wait(TIMEOUT);
    check_error(&unknown, &["unknown host"], &[]);
    assert!(
        queries > 0,
        "a name's lookup never reached the listener\n{unknown}"
    );
}

/// A sweep of two ports of `host` with `--output output` and `more` arguments.
fn sweep_with_output(host: &TestHost, output: &Path, more: &[&str]) -> Finished {
    let mut cmd = prober_command(&["-p", "80,81", "-O", "list", "--output"]);
    cmd.arg(output).args(more).arg(host.addr.to_string());
    run(cmd, TIMEOUT)
}

/// A symbolic link as --output (as another user could leave in /tmp) is refused, and the file
/// it points at stays as it was.
#[test]
fn output_through_a_symbolic_link_is_refused() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let dir = ScratchDir::new("output-link").expect("scratch dir");
    let secret = dir.path.join("secret");
    fs::write(&secret, "root's only\n").expect("writing the secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
    let link = dir.path.join("results");
    symlink(&secret, &link).expect("symlink");
    for force in [&[][..], &["--force"]] {
        let refused = sweep_with_output(&host, &link, force);
        check_error(
            &refused,
            &["refusing to write through the symbolic link"],
            &[],
        );
        assert_eq!(
            fs::read_to_string(&secret).expect("reading the secret"),
            "root's only\n",
            "the link's target was written to\n{refused}"
        );
        let mode = fs::metadata(&secret).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "the link's target changed mode\n{refused}");
    }

    let missing = dir.path.join("missing");
    let dangling = dir.path.join("dangling");
    symlink(&missing, &dangling).expect("symlink");
    let refused = sweep_with_output(&host, &dangling, &[]);
    check_error(
        &refused,
        &["refusing to write through the symbolic link"],
        &[],
    );
    assert!(
        !missing.exists(),
        "a dangling link's target was created\n{refused}"
    );
}

/// An existing --output file is kept unless --force is given.
#[test]
fn output_file_that_exists_needs_force() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let existing = ScratchFile::new("results", "earlier results\n").expect("scratch file");
    let refused = sweep_with_output(&host, &existing.path, &[]);
    check_error(&refused, &["exists: use --force to overwrite it"], &[]);
    assert_eq!(existing.read().unwrap(), "earlier results\n");
    let forced = sweep_with_output(&host, &existing.path, &["--force"]);
    assert_eq!(forced.code(), Some(0), "{forced}");
    let results = existing.read().unwrap();
    let lines: Vec<&str> = results.lines().collect();
    assert!(
        lines.len() == 3
            && lines[1].starts_with(&format!("open tcp 80 {} ", host.addr))
            && (lines[0], lines[2]) == ("#masscan", "# end"),
        "--force: the file should hold only the new results (a masscan list), not:\n{results}"
    );
}

/// A sweep refused after its --output file was created (here: a source port block past 65535)
/// removes the empty file again, so that the next run does not need --force.
#[test]
fn refused_sweep_leaves_no_output_file() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let dir = ScratchDir::new("output-refused").expect("scratch dir");
    let results = dir.path.join("results");
    let refused = sweep_with_output(&host, &results, &["-s", "65000"]);
    check_error(&refused, &["source port"], &[]);
    assert!(!results.exists(), "an empty results file was left behind");
}

/// An exclude file that is not a regular file is refused before it is read: /dev/zero would
/// be read without end, a FIFO without a writer would block.
#[test]
fn exclude_file_that_is_not_a_regular_file_is_refused_at_once() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let dir = ScratchDir::new("exclude-special").expect("scratch dir");
    let fifo = dir.fifo("exclusions").expect("mkfifo");
    for (file, kind) in [
        (PathBuf::from("/dev/zero"), "character device"),
        (fifo, "FIFO"),
        (dir.path.clone(), "directory"),
    ] {
        let mut cmd = prober_command(&["-p", "80-80", "--exclude-file"]);
        cmd.arg(&file).arg(host.addr.to_string());
        let refused = run(cmd, AT_ONCE);
        check_error(&refused, &[kind, "not a regular file"], &[]);
    }
}

/// Bad input is echoed as a short excerpt with terminal escapes escaped: a long port
/// specification, a long bad line of an exclude file, an unknown option (whose escape
/// sequences clap drops itself, but not a carriage return or the one-byte CSI).
#[test]
fn bad_input_is_echoed_short_and_escaped() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let escapes = "\x1b]0;owned\x07\x1b[2J\r\u{9b}1m";
    let all_escaped = "\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x9b1m";
    // An argument is at most 128 KiB (MAX_ARG_STRLEN); a line of a file can be longer.
    let hostile = format!("{escapes}{}", "9".repeat(100_000));
    let line = format!("{escapes}{}", "9".repeat(1 << 20));
    let file =
        ScratchFile::new("exclusions", &format!("# one bad line\n{line}\n")).expect("scratch file");
    let path = file.path.to_str().expect("utf-8 path").to_string();
    let unknown_option = format!("--{hostile}");
    let a = host.addr.to_string();
    for (args, shown) in [
        (vec!["-c", "1", "-S", "-p", &hostile, &a], all_escaped),
        (
            vec!["-p", "80-80", "--exclude-file", &path, &a],
            all_escaped,
        ),
        (vec!["-p", "80", &unknown_option, &a], "--\\x0d\\x9b1m999"),
    ] {
        let refused = run(prober_command(&args), TIMEOUT);
        let line = check_error(&refused, &[shown], &[]);
        assert!(
            !refused
                .stderr
                .contains(|c: char| c.is_control() && c != '\n'),
            "raw control characters on stderr"
        );
        assert!(
            line.len() < 1200,
            "the error line echoes {} bytes",
            line.len()
        );
    }
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

/// `-I` naming an interface no route to the target goes through: one line naming `-I`, the
/// target and the interface its route does use, before anything is sent (the namespace counts
/// every SYN that reaches it), for one target and for a sweep. (Before, IPv4 took the target
/// for one on `lo`'s link: 100 % loss, or every port filtered, and exit 1.)
fn an_interface_that_does_not_reach_the_target_is_an_error(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    host.count_arriving("syns", "tcp flags syn")
        .expect("nft counter");
    let target = host.target(family).to_string();
    let ports = format!("{OPEN_PORT},{CLOSED_PORT}");
    let open = OPEN_PORT.to_string();
    let ping = ["-c", "1", "-S", "-p", &open, "-I", "lo", &target];
    let sweep = ["-p", &ports, "-O", "json", "-I", "lo", &target];
    for args in [&ping[..], &sweep[..]] {
        let refused = run(prober_command(args), TIMEOUT);
        check_error(&refused, &["-I lo", &target, &host.host_if], &[]);
    }
    assert_eq!(
        host.arriving_packets("syns").expect("counter"),
        0,
        "SYNs reached the target"
    );
}

test_both_families!(an_interface_that_does_not_reach_the_target_is_an_error);

/// The other side of that check: a link-local target's zone names the interface it is reached
/// through, and its probe is answered.
#[test]
fn a_link_local_target_is_reached_through_its_zone() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let mut show = host.command_in_ns("ip");
    show.args([
        "-6",
        "-o",
        "addr",
        "show",
        "dev",
        &host.peer_if,
        "scope",
        "link",
    ]);
    let shown = run_checked(&mut show).expect("ip addr show");
    let address = shown
        .split_whitespace()
        .skip_while(|word| *word != "inet6")
        .nth(1)
        .and_then(|block| block.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address in {shown}"))
        .to_string();
    let target = format!("{address}%{}", host.host_if);
    let open = OPEN_PORT.to_string();
    let answered = run(
        prober_command(&["-c", "1", "-S", "-p", &open, &target]),
        TIMEOUT,
    );
    let footer = parse_footer(&answered.stderr).unwrap_or_else(|e| panic!("{e}\n{answered}"));
    assert_eq!(
        (footer.received, answered.code()),
        (1, Some(0)),
        "{answered}"
    );
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

/// A run of prober with `args` inside `host`'s namespace, where its only way out is the veth
/// and names resolve from the namespace's own hosts file: a prober that wrongly went ahead
/// could send nowhere else (a link-local target without a zone would otherwise have every
/// interface of the machine to choose from).
fn in_namespace(host: &TestHost, args: &[&str], within: Duration) -> Finished {
    let mut cmd = host.command_in_ns(prober_bin());
    cmd.args(args);
    run(cmd, within)
}

#[test]
fn mixed_ipv4_and_ipv6_targets_are_refused() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let (a4, a6) = (host.addr.to_string(), host.addr6.to_string());
    for targets in [[&a4, &a6], [&a6, &a4]] {
        let mut args = vec!["-p", "80"];
        args.extend(targets.map(String::as_str));
        let refused = run(prober_command(&args), AT_ONCE);
        check_error(&refused, &["IPv4", "IPv6"], &[]);
    }
}

#[test]
fn family_options_against_an_address_of_the_other_family_are_refused() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let (a4, a6) = (host.addr.to_string(), host.addr6.to_string());
    for (option, target) in [("-6", &a4), ("-4", &a6)] {
        let refused = run(
            prober_command(&[option, "-c", "1", "-S", "-p", "80", target]),
            AT_ONCE,
        );
        check_error(&refused, &[target], &[option, "IPv4", "IPv6"]);
    }
}

#[test]
fn ipv6_link_local_target_without_a_zone_is_refused() {
    require_root();
    let host = TestHost::new().expect("test host");
    let refused = in_namespace(&host, &["-c", "1", "-S", "-p", "80", "fe80::1"], AT_ONCE);
    check_error(&refused, &["fe80::1"], &["zone", "link-local", "%"]);
}

/// A /64 is 2^64 addresses: far past the probe-count limit (unless exclusions bring it under,
/// see sweep.rs), refused before anything is sent.
#[test]
fn ipv6_prefix_too_large_is_refused() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let block = format!("{}/64", host.addr6);
    let refused = in_namespace(&host, &["-p", "80", &block], AT_ONCE);
    check_error(
        &refused,
        &["18446744073709551616 addresses", "--exclude"],
        &[],
    );
}

#[test]
fn a_name_without_an_ipv6_address_under_dash_6_is_refused() {
    require_root();
    let host = TestHost::new().expect("test host");
    let name = "v4-only.prober.test";
    host.add_host_name(name, &[host.addr.into()])
        .expect("hosts file");
    let refused = in_namespace(&host, &["-6", "-c", "1", "-S", "-p", "80", name], TIMEOUT);
    check_error(&refused, &[name], &["IPv6", "AAAA"]);
}

/// DNS gives no zone: a name that resolves to a link-local address is refused, by name.
#[test]
fn a_name_resolving_to_link_local_is_refused() {
    require_root();
    let host = TestHost::new().expect("test host");
    let name = "link-local.prober.test";
    let link_local: std::net::Ipv6Addr = "fe80::2".parse().expect("an address");
    host.add_host_name(name, &[link_local.into()])
        .expect("hosts file");
    let refused = in_namespace(&host, &["-6", "-c", "1", "-S", "-p", "80", name], TIMEOUT);
    check_error(&refused, &[name, "link-local fe80::2", "fe80::2%IF"], &[]);
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

/// One XDP program per interface: a second prober that insists on XDP (native) where the first
/// holds the hook must fail with an XDP error, and must not disturb the first (its XDP program
/// stays attached and it keeps printing replies). Without --xdp-mode native the second matches
/// at TCX ingress instead (tests/coexist.rs).
#[test]
fn second_native_instance_on_same_interface() {
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

    let second = run(
        prober_command(&["--xdp-mode", "native", "-c", "1", "-S", "-p", &port, &a]),
        TIMEOUT,
    );
    check_error(&second, &["another XDP program is already attached"], &[]);

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

/// A bad number is named with its option and the values it may take, also when it starts with
/// '-' (clap took `-i -1` for a missing value followed by -1, and `--rate -5` for an unknown
/// option) or is no number at all (`-t abc`: "invalid digit found in string").
#[test]
fn bad_numbers_name_the_option_and_its_range() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let a = host.addr.to_string();
    for (args, words) in [
        (
            &["-S", "-p", "80", "-i", "-1"][..],
            &["--interval", "'-1'", "microseconds"][..],
        ),
        (
            &["-p", "80,81", "--rate", "-5"],
            &["--rate", "'-5'", "positive"],
        ),
        (
            &["-S", "-p", "80", "-t", "abc"],
            &["--ttl", "'abc'", "0 to 255"],
        ),
        (
            &["-S", "-p", "80", "-w", "-1"],
            &["--win", "'-1'", "0 to 65535"],
        ),
        (
            &["-p", "80,81", "--retries", "-1"],
            &["--retries", "'-1'", "0 to"],
        ),
        (&["-S", "-p", "-1"], &["--destport", "'-1'", "to 65535"]),
    ] {
        let refused = run(prober_command(&[args, &[&a]].concat()), AT_ONCE);
        check_error(&refused, words, &[]);
    }
}
