//! (g) Sweep mode (`--scan`, port lists and ranges, several targets, CIDR blocks) against namespace
//! hosts whose answers are known: a real listener is open, a port with nothing listening is closed
//! (the namespace's kernel answers RST), a port dropped by nftables is filtered, and an address
//! whose every packet is dropped is a host that answers nothing. Each test checks the exact set of
//! results (every (host, port) once, with its status) and what nftables counters inside the
//! namespace saw arrive, so probes that were never sent, sent twice or sent where they must not go
//! are caught as well as wrong output. The contract is the README's section on sweeps.

use prober_tests::output::check_error;
use prober_tests::packets::syn_ack;
use prober_tests::proc::{run, Finished, Proc};
use prober_tests::responder::{ArrivedRst, DelayedResponder};
use prober_tests::sweep::{
    expected_outcome, linux_peer_field_errors, outcome, outcome_diff, parse_csv, parse_list_line,
    sweep, table_preamble, Outcome, Status, SweepResult, Swept, TableRow,
};
use prober_tests::{
    hping3_bin, prober_command, require_root, test_both_families, Family, ScratchDir, ScratchFile,
    TestHost, FILTERED_PORT,
};
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Ports with a real listener on [`scan_host`], from the first port to the last.
const OPEN_PORTS: [u16; 5] = [1, 22, 80, 8080, 65535];

/// A host with listeners on [`OPEN_PORTS`] (they answer on every address of the namespace) and
/// TCP to [`FILTERED_PORT`] dropped; every other port is closed.
fn scan_host() -> TestHost {
    host_listening_on(&OPEN_PORTS)
}

/// A host with listeners on `open` and TCP to [`FILTERED_PORT`] dropped.
fn host_listening_on(open: &[u16]) -> TestHost {
    let mut host = TestHost::new().expect("test host");
    for &port in open {
        host.listen_tcp(port).expect("listener");
    }
    host.drop_tcp_port(FILTERED_PORT).expect("nft drop rule");
    host
}

/// What [`scan_host`] answers on `port`.
fn port_status(port: u16) -> Status {
    status_with(&OPEN_PORTS, port)
}

/// What [`host_listening_on`]`(open)` answers on `port`.
fn status_with(open: &[u16], port: u16) -> Status {
    if open.contains(&port) {
        Status::Open
    } else if port == FILTERED_PORT {
        Status::Filtered
    } else {
        Status::Closed
    }
}

/// `first/len`: the CIDR block of the addresses from [`TestHost::add_routed_addresses`] or
/// [`TestHost::add_routed_addresses6`] (a power of two of them, so they are exactly one block).
fn cidr(addrs: &[impl Into<IpAddr> + Copy]) -> String {
    assert!(addrs.len().is_power_of_two(), "not one CIDR block");
    let first: IpAddr = addrs[0].into();
    let bits = Family::of(first).bits() - addrs.len().trailing_zeros();
    format!("{first}/{bits}")
}

/// `addrs` as the sweep's results name them.
fn ips(addrs: &[impl Into<IpAddr> + Copy]) -> Vec<IpAddr> {
    addrs.iter().map(|&a| a.into()).collect()
}

fn counter(host: &TestHost, name: &str) -> u64 {
    host.counter_packets(name).expect("nft counter")
}

/// `count` routed addresses of `family` for `host`.
fn routed(host: &mut TestHost, family: Family, count: u32) -> Vec<IpAddr> {
    match family {
        Family::V4 => ips(&host.add_routed_addresses(count).expect("routed addresses")),
        Family::V6 => ips(&host.add_routed_addresses6(count).expect("routed addresses")),
    }
}

/// An address as a number, to compare blocks of either family.
fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn testbed_routed_addresses_answer_like_the_host_and_a_dropped_one_answers_nothing(family: Family) {
    require_root();
    let mut host = TestHost::new().expect("test host");
    host.listen_tcp(80).expect("listener");
    let first = routed(&mut host, family, 3);
    let second = routed(&mut host, family, 2);
    let mut other = TestHost::new().expect("second test host");
    let others = routed(&mut other, family, 4);

    // Each call's addresses start an aligned block of the next power of two; no block overlaps
    // another or either host's own network (a /30, or a /64), and all lie in the testbed's
    // range (198.18.4.0 - 198.19.255.255, or 2001:db8::/32).
    let (own_size, range) = match family {
        Family::V4 => (
            4,
            (
                number([198, 18, 4, 0].into()),
                number([198, 20, 0, 0].into()),
            ),
        ),
        Family::V6 => (1 << 64, (0x2001_0db8 << 96, 0x2001_0db9 << 96)),
    };
    let own = |host: &TestHost| number(host.target(family)) & !(own_size - 1);
    let blocks = [
        (own(&host), own_size),
        (own(&other), own_size),
        (number(first[0]), 4),
        (number(second[0]), 2),
        (number(others[0]), 4),
    ];
    for (i, &(start, size)) in blocks.iter().enumerate() {
        assert_eq!(start % size, 0, "block {i} not aligned: {blocks:x?}");
        assert!(
            start >= range.0 && start + size <= range.1,
            "block {i} outside the testbed's range: {blocks:x?}"
        );
        for &(other_start, other_size) in &blocks[i + 1..] {
            assert!(
                start + size <= other_start || other_start + other_size <= start,
                "blocks overlap: {blocks:x?}"
            );
        }
    }
    let consecutive = |addrs: &[IpAddr]| addrs.windows(2).all(|w| number(w[1]) == number(w[0]) + 1);
    assert!(consecutive(&first) && consecutive(&second) && consecutive(&others));
    let route = format!("{}/{}", first[0], family.bits() - 2);
    let family_option = match family {
        Family::V4 => "-4",
        Family::V6 => "-6",
    };
    let show_route = || {
        prober_tests::run_checked(Command::new("ip").args([family_option, "route", "show", &route]))
            .expect("ip route show")
    };
    let shown = show_route();
    assert!(
        shown.contains(&format!("via {} dev {}", host.target(family), host.host_if)),
        "no route to {route} via the namespace: {shown:?}"
    );

    // The listener (bound to [::]) answers on a routed address, a port with nothing listening
    // refuses, and an address whose packets are dropped lets a connection time out.
    let connect = |ip: IpAddr, port: u16, timeout_secs: u64| {
        TcpStream::connect_timeout(
            &SocketAddr::from((ip, port)),
            Duration::from_secs(timeout_secs),
        )
    };
    connect(first[0], 80, 5).expect("connecting to the listener on a routed address");
    let other_refused =
        connect(others[3], 80, 5).expect_err("nothing listens in the other namespace");
    assert_eq!(
        other_refused.kind(),
        ErrorKind::ConnectionRefused,
        "{other_refused}"
    );
    let refused = connect(second[1], 81, 5).expect_err("nothing listens on port 81");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    host.drop_all_to(first[2]).expect("nft drop rule");
    let silent = connect(first[2], 80, 1).expect_err("every packet to it is dropped");
    assert_eq!(silent.kind(), ErrorKind::TimedOut, "{silent}");
    assert!(host.dropped_packets_to(first[2]).expect("nft counter") >= 1);

    drop(host);
    assert_eq!(show_route(), "", "route to {route} left behind");
}

test_both_families!(
    testbed_routed_addresses_answer_like_the_host_and_a_dropped_one_answers_nothing
);

fn full_range_sweep_of_one_host_reports_every_port_exactly_once(family: Family) {
    require_root();
    let host = scan_host();
    let target = host.target(family);
    // So that the namespace's TCP checks the checksums of the RSTs bounced to it.
    host.send_complete_checksums().expect("ethtool");
    let swept = sweep(
        &[
            "--scan",
            "all",
            "--rate",
            "50000",
            "-O",
            "json",
            &target.to_string(),
        ],
        TIMEOUT,
    );
    let half_open = host.half_open_connections().expect("ss");
    let want = expected_outcome(&[target], 1..=65535, |_, port| port_status(port));
    let footer = swept.check_linux_json(&want, (65535, 1, 65535));
    // The footer counts the RSTs XDP wrote, and a counter at the namespace's input hook would
    // count them before its TCP checks them: that they were valid shows only in what they did.
    // Each ended its half-open connection at once, so no SYN-ACK was sent twice either.
    assert!(
        half_open.is_empty(),
        "the bounced RSTs left half-open connections: {half_open:#?}\n{}",
        swept.run
    );
    assert_eq!(footer.duplicates, 0, "{}", swept.run);
    assert_eq!(
        host.dropped_packets(FILTERED_PORT).expect("nft counter"),
        1,
        "the filtered port should have been probed exactly once\n{}",
        swept.run
    );
}

test_both_families!(full_range_sweep_of_one_host_reports_every_port_exactly_once);

/// A target one router away whose kernel checks the checksums of the RSTs bounced to it: the
/// router's veth toward it has no checksum offload, so the router completes checksums in
/// software, as a NIC's offload does on the wire. The target's SYN-ACKs reach the XDP program
/// with their checksums left to offload (the target's veth offloads them), and generic XDP keeps
/// that state on the RST it makes of each: the RST's checksum field must then hold just its
/// pseudo-header's sum, or the router completes it wrong and the target, dropping the RST, keeps
/// the half-open connection.
fn rsts_whose_checksums_are_completed_on_the_way_end_the_half_open_connections(family: Family) {
    require_root();
    let router = TestHost::new().expect("router");
    let mut host = TestHost::behind(&router).expect("test host behind the router");
    let open = [1, 22, 80, 1000];
    for port in open {
        host.listen_tcp(port).expect("listener");
    }
    host.drop_tcp_port(FILTERED_PORT).expect("nft drop rule");
    host.router_completes_checksums().expect("ethtool");
    let target = host.target(family);
    let tcp_errors = || {
        let counters = host.tcp_counters().expect("/proc/net/snmp");
        (counters["InErrs"], counters["InCsumErrors"])
    };
    let errors_before = tcp_errors();
    let swept = sweep(
        &["-p", "1-1000", "-O", "json", &target.to_string()],
        TIMEOUT,
    );
    let half_open = host.half_open_connections().expect("ss");
    let errors_after = tcp_errors();
    let want = expected_outcome(&[target], 1..=1000, |_, port| status_with(&open, port));
    swept.check_outcome(&swept.json(), &want);
    // Both in one message: a RST with a wrong checksum shows in each.
    assert!(
        half_open.is_empty() && errors_after == errors_before,
        "the bounced RSTs left half-open connections: {half_open:#?}; the target's TCP InErrs \
         and InCsumErrors went from {errors_before:?} to {errors_after:?}\n{}",
        swept.run
    );
}

test_both_families!(rsts_whose_checksums_are_completed_on_the_way_end_the_half_open_connections);

/// A VM behind a TAP leaves its SYN-ACKs' checksums to offload. Generic XDP keeps that state on
/// the RST it makes of each and sends it straight to the driver, so it crosses to the VM marked
/// for its device to complete: the field must hold just the pseudo-header's sum. TCX ingress
/// writes the same field, but its redirect leaves through dev_queue_xmit, and there the RST
/// had its checksum completed before the TAP (seen on 6.18): it must arrive complete, as
/// native XDP's, which keeps no such state, does. `mode`: the
/// `--xdp-mode` asked for (none: the sweep's default), `hook`: where `-V` must say replies were
/// matched.
fn bounced_rsts_reach_a_vm_checksummed_as_its_device_takes_them(
    mode: Option<&str>,
    hook: &str,
    left_to_offload: bool,
) {
    require_root();
    let vm = DelayedResponder::start_as_vm(&[80]).expect("responder playing a VM");
    let target = IpAddr::from(vm.target());
    let mut args = vec!["-V", "-p", "79-81", "-O", "json"];
    args.extend(mode.map(|mode| ["--xdp-mode", mode]).iter().flatten());
    let target_arg = target.to_string();
    args.push(&target_arg);
    let swept = sweep(&args, TIMEOUT);
    let want = expected_outcome(&[target], 79..=81, |_, port| status_with(&[80], port));
    swept.check_outcome(&swept.json(), &want);
    assert!(
        swept
            .run
            .stderr
            .contains(&format!("reply matcher at {hook},")),
        "-V should say the reply matcher is at {hook}\n{}",
        swept.run
    );
    let rst = ArrivedRst {
        dest_port: 80,
        left_to_offload,
        checksum_right: true,
    };
    assert_eq!(vm.rsts(), [rst], "{}", swept.run);
}

/// A sweep's default: TCX ingress, which bounces each SYN-ACK by redirecting its RST out of the
/// interface it came in by.
#[test]
fn bounced_rsts_reach_a_vm_checksummed_as_its_device_takes_them_at_tcx_ingress() {
    bounced_rsts_reach_a_vm_checksummed_as_its_device_takes_them(None, "TCX ingress", false);
}

#[test]
fn bounced_rsts_reach_a_vm_checksummed_as_its_device_takes_them_in_generic_xdp() {
    bounced_rsts_reach_a_vm_checksummed_as_its_device_takes_them(
        Some("generic"),
        "XDP, generic (skb) mode",
        true,
    );
}

#[test]
fn bounced_rsts_reach_a_vm_checksummed_as_its_device_takes_them_in_native_xdp() {
    bounced_rsts_reach_a_vm_checksummed_as_its_device_takes_them(
        Some("native"),
        "XDP, driver (native) mode",
        false,
    );
}

/// 256 IPv6 addresses (a /120) x 3 ports at full speed, one of the addresses answering nothing:
/// the exact set, each probe arriving once.
#[test]
fn ipv6_flood_sweep_of_a_120_reports_the_exact_set() {
    require_root();
    let mut host = scan_host();
    let block = host.add_routed_addresses6(256).expect("routed addresses");
    let silent = IpAddr::from(block[77]);
    host.drop_all_to(silent).expect("nft drop rule");
    // After the drop rule: the probes to every other address.
    host.add_counter("probes", "tcp flags == syn")
        .expect("nft counter");
    let prefix = cidr(&block);
    let swept = sweep(
        &["-S", "-p", "22,80,443", &prefix, "--flood", "-O", "json"],
        TIMEOUT,
    );
    let want = expected_outcome(&ips(&block), [22, 80, 443], |ip, port| {
        if ip == silent {
            Status::Filtered
        } else {
            port_status(port)
        }
    });
    swept.check_linux_json(&want, (768, 256, 3));
    assert_eq!(
        host.dropped_packets_to(silent).expect("nft counter"),
        3,
        "{}",
        swept.run
    );
    assert_eq!(counter(&host, "probes"), 765, "{}", swept.run);
    // The summary the closing note quotes.
    eprintln!("{}", swept.run.stderr);
}

/// A /64 is refused as too large (errors.rs), unless exclusions leave few enough: here they
/// leave the /120 of routed addresses at its start (one --exclude for each half above it, from
/// the /65 down to the /120), and exactly those are swept.
#[test]
fn ipv6_a_64_whose_exclusions_leave_a_120_is_swept() {
    require_root();
    let mut host = scan_host();
    let block = ips(&host.add_routed_addresses6(256).expect("routed addresses"));
    let net = number(block[0]);
    assert_eq!(net % (1 << 64), 0, "the first block starts the routed /64");
    let exclusions: Vec<String> = (65..=120)
        .map(|len| format!("{}/{len}", std::net::Ipv6Addr::from(net | 1 << (128 - len))))
        .collect();
    let prefix = format!("{}/64", block[0]);
    let swept = sweep(
        &[
            "-p",
            "80,81",
            "--exclude",
            &exclusions.join(","),
            "-O",
            "json",
            &prefix,
        ],
        TIMEOUT,
    );
    let want = expected_outcome(&block, [80, 81], |_, port| port_status(port));
    swept.check_linux_json(&want, (512, 256, 2));
}

/// A scan table over IPv6 is hping3's (which has no IPv6 to compare with): the same preamble
/// and rows, with IPv6's lengths (64 for a SYN-ACK with its MSS option, 60 for a RST), and 0 in
/// the `id` column.
#[test]
fn ipv6_table_output_is_the_scan_table_with_ipv6_lengths() {
    require_root();
    let host = scan_host();
    let (spec, target) = ("20-25,80", host.addr6.to_string());
    let swept = sweep(&["-V", "--scan", spec, &target], TIMEOUT);
    let row = |port: u16, service: &str, open: bool| {
        TableRow {
            port,
            service: service.to_string(),
            flags: (if open { ".S..A..." } else { "..R.A..." }).to_string(),
            ttl: 64,
            id: 0,
            win: if open { 64800 } else { 0 },
            len: if open { 64 } else { 60 },
        }
        .to_string()
    };
    let mut want = vec![
        row(20, "ftp-data", false),
        row(21, "ftp", false),
        row(22, "ssh", true),
        row(24, "", false),
        row(25, "smtp", false),
        row(80, "http", true),
    ];
    want.sort();
    let lines = swept.run.stdout_lines();
    let (rows, last) = lines.split_at(lines.len().saturating_sub(1));
    let mut rows: Vec<String> = rows.iter().map(|row| row.to_string()).collect();
    rows.sort();
    assert_eq!(rows, want, "{}", swept.run);
    assert_eq!(
        last,
        ["Not responding ports: (23 telnet) "],
        "{}",
        swept.run
    );
    let stderr = swept.run.stderr_lines();
    let start = stderr
        .iter()
        .position(|l| l.starts_with("Scanning "))
        .unwrap_or_else(|| swept.fail("no `Scanning` line"));
    let preamble = table_preamble(&target, host.addr6.into(), spec, 7);
    assert_eq!(
        stderr[start..start + preamble.len()],
        preamble,
        "{}",
        swept.run
    );
    assert_eq!(swept.run.code(), Some(0), "{}", swept.run);
}

#[test]
fn multi_host_sweep_reports_the_exact_set() {
    require_root();
    let mut host = scan_host();
    let routed = host.add_routed_addresses(8).expect("routed addresses");
    let silent = routed[5];
    host.drop_all_to(silent).expect("nft drop rule");
    let hosts = ips(&[&[host.addr][..], &routed].concat());
    let ports: Vec<u16> = (1..=300).chain([8080]).collect();

    let target = host.addr.to_string();
    let block = cidr(&routed);
    let swept = sweep(
        &[
            "-p",
            "1-300,8080",
            "--rate",
            "20000",
            "-O",
            "json",
            &target,
            &block,
        ],
        TIMEOUT,
    );
    let want = expected_outcome(&hosts, ports.clone(), |ip, port| {
        if ip == IpAddr::from(silent) {
            Status::Filtered
        } else {
            port_status(port)
        }
    });
    swept.check_linux_json(&want, (9 * 301, 9, 301));
    // Each probe arrived once: the port-23 rule comes first and sees it on all nine hosts.
    assert_eq!(
        host.dropped_packets(FILTERED_PORT).expect("nft counter"),
        9,
        "{}",
        swept.run
    );
    assert_eq!(
        host.dropped_packets_to(silent).expect("nft counter"),
        ports.len() as u64 - 1,
        "{}",
        swept.run
    );
}

/// Runs hping3 and prober with `--scan 20-25,80` (and `-V` if `verbose`) against a [`scan_host`];
/// checks hping3 against the expected table first (so a failure says which of the two is off),
/// then prober against the contract and against hping3.
fn table_like_hping3(verbose: bool) {
    require_root();
    let host = scan_host();
    let (spec, target) = ("20-25,80", host.addr.to_string());
    let v: &[&str] = if verbose { &["-V"] } else { &[] };
    let row = |port: u16, service: &str, open: bool| TableRow {
        port,
        service: service.to_string(),
        flags: (if open { ".S..A..." } else { "..R.A..." }).to_string(),
        ttl: 64,
        id: 0,
        win: if open { 64240 } else { 0 },
        len: if open { 44 } else { 40 },
    };
    let mut want_rows = vec![row(22, "ssh", true), row(80, "http", true)];
    if verbose {
        want_rows.extend([
            row(20, "ftp-data", false),
            row(21, "ftp", false),
            row(24, "", false),
            row(25, "smtp", false),
        ]);
    }
    want_rows.sort();
    let not_responding = "Not responding ports: (23 telnet) ";

    let mut hping3 = Command::new("timeout");
    hping3.args(["-k", "2", "30"]).arg(hping3_bin());
    hping3.args(v).args(["--scan", spec, "-S", &target]);
    let hping3 = run(hping3, TIMEOUT);
    let prober_args: Vec<&str> = v.iter().copied().chain(["--scan", spec, &target]).collect();
    let prober = sweep(&prober_args, TIMEOUT);

    let rows = |run: &Finished| -> (Vec<TableRow>, Vec<String>) {
        // -V makes hping3 say which interface it uses, among the rows; prober need not.
        let lines: Vec<&str> = run
            .stdout_lines()
            .into_iter()
            .filter(|l| !l.starts_with("using "))
            .collect();
        let (rows, rest) = lines.split_at(lines.len().saturating_sub(1));
        let mut rows: Vec<TableRow> = rows
            .iter()
            .map(|l| TableRow::parse(l).unwrap_or_else(|e| panic!("{e}\n{run}")))
            .collect();
        rows.sort();
        (rows, rest.iter().map(|l| l.to_string()).collect())
    };
    let preamble = table_preamble(&target, host.addr.into(), spec, 7);
    let stderr_start = |run: &Finished| -> Vec<String> {
        let lines = run.stderr_lines();
        // With -V, prober first says what it uses (transmit path, XDP mode).
        let table = if verbose {
            lines.iter().position(|l| l.starts_with("Scanning "))
        } else {
            None
        };
        lines[table.unwrap_or(0)..]
            .iter()
            .take(preamble.len())
            .map(|l| l.to_string())
            .collect()
    };

    let (hping3_rows, hping3_rest) = rows(&hping3);
    assert_eq!(hping3_rows, want_rows, "hping3 itself:\n{hping3}");
    assert_eq!(hping3_rest, [not_responding], "hping3 itself:\n{hping3}");
    assert_eq!(stderr_start(&hping3), preamble, "hping3 itself:\n{hping3}");

    let (prober_rows, prober_rest) = rows(&prober.run);
    let both = format!("=== hping3 ===\n{hping3}\n=== prober ===\n{}", prober.run);
    assert_eq!(prober_rows, hping3_rows, "table rows differ\n{both}");
    assert_eq!(prober_rest, hping3_rest, "last stdout line differs\n{both}");
    assert_eq!(
        stderr_start(&prober.run),
        stderr_start(&hping3),
        "stderr starts differently\n{both}"
    );
    assert!(
        prober
            .run
            .stderr_lines()
            .contains(&"All replies received. Done."),
        "no `All replies received. Done.` on stderr\n{both}"
    );
    let footer = prober.footer();
    assert_eq!(
        (footer.open, footer.closed, footer.filtered, footer.sent),
        (2, 4, 1, 7),
        "{both}"
    );
    assert_eq!(prober.run.code(), Some(0), "{both}");
}

#[test]
fn table_output_like_hping3_scan() {
    table_like_hping3(false);
}

#[test]
fn verbose_table_output_shows_closed_ports_like_hping3_scan() {
    table_like_hping3(true);
}

fn forged_syn_acks_during_a_sweep_are_counted_and_left_to_the_host(family: Family) {
    // Below the ephemeral range (a sweep's block must lie outside it).
    const BASE: u16 = 16384;
    const FORGED: usize = 24;
    require_root();
    let host = scan_host();
    let window = format!("{BASE}-{}", BASE + 4095);
    // Counted after the port-23 drop rule, so the filtered port's probes are not among them.
    host.add_counter("in_window", &format!("tcp flags == syn tcp sport {window}"))
        .expect("nft counter");
    host.add_counter("outside_window", &format!("tcp sport != {window}"))
        .expect("nft counter");
    // RSTs from the window: prober's bounces of the real SYN-ACKs, and the host kernel's answers
    // to the forged SYN-ACKs, which XDP passes to it (they could be the host's own traffic).
    host.add_counter(
        "resets_from_window",
        &format!("tcp flags & rst == rst tcp sport {window}"),
    )
    .expect("nft counter");

    let target = host.target(family).to_string();
    let base = BASE.to_string();
    let args = [
        "-s", &base, "-p", "1-3000", "--rate", "1000", "-O", "json", &target,
    ];
    let started = SystemTime::now();
    let mut prober = Proc::spawn(prober_command(&args));
    // Results stream as replies arrive, so the first one says the XDP program is attached.
    prober.expect_line(Duration::from_secs(5), "the first result");
    // From two closed ports inside the sweep and one outside it, to source ports of the window,
    // acknowledging nothing the sweep sent (one chance in 2^32 per packet of hitting a cookie).
    let forged = (0..FORGED)
        .map(|i| {
            let from_port = [81, 82, 4000][i % 3];
            let to_port = BASE + (i as u16 * 211) % 4096;
            syn_ack(
                host.target(family),
                host.source(family),
                from_port,
                to_port,
                7,
            )
        })
        .collect();
    host.send_raw_from_namespace(forged)
        .expect("sending forged SYN-ACKs");
    if !prober.running() {
        prober
            .fail("the sweep ended before the forged SYN-ACKs were sent (results did not stream?)");
    }
    let swept = Swept::new(prober.wait(TIMEOUT), started);

    let results = swept.json();
    let want = expected_outcome(&[host.target(family)], 1..=3000, |_, port| {
        port_status(port)
    });
    let footer = swept.check_outcome(&results, &want);
    assert_eq!(
        footer.unmatched, FORGED as u64,
        "every forged SYN-ACK must be counted as unmatched\n{}",
        swept.run
    );
    assert_eq!(counter(&host, "in_window"), 2999, "{}", swept.run);
    let open = OPEN_PORTS.iter().filter(|&&p| p <= 3000).count() as u64;
    assert_eq!(
        counter(&host, "resets_from_window"),
        open + FORGED as u64,
        "want one bounced RST per open port and the host's RST to each forged SYN-ACK\n{}",
        swept.run
    );
    assert_eq!(
        counter(&host, "outside_window"),
        0,
        "TCP from outside -s {window} reached the host\n{}",
        swept.run
    );
}

test_both_families!(forged_syn_acks_during_a_sweep_are_counted_and_left_to_the_host);

#[test]
fn two_shards_with_the_same_seed_make_the_whole_sweep() {
    require_root();
    let mut host = scan_host();
    let routed = host.add_routed_addresses(4).expect("routed addresses");
    host.add_counter("probes", "tcp flags == syn")
        .expect("nft counter");
    let hosts = ips(&[&[host.addr][..], &routed].concat());
    let want = expected_outcome(&hosts, 1..=200, |_, port| port_status(port));

    let (target, block) = (host.addr.to_string(), cidr(&routed));
    let shards: Vec<(Swept, Outcome)> = ["1/2", "2/2"]
        .into_iter()
        .map(|shard| {
            let swept = sweep(
                &[
                    "-p", "1-200", "--seed", "4242", "--shard", shard, "-O", "json", &target,
                    &block,
                ],
                TIMEOUT,
            );
            let results = swept.json();
            let got = outcome(&results).unwrap_or_else(|e| swept.fail(&e));
            let footer = swept.footer();
            if footer.sent != results.len() as u64 {
                swept.fail("a shard should send one probe per result it reports");
            }
            (swept, got)
        })
        .collect();
    let runs = format!("{}\n{}", shards[0].0.run, shards[1].0.run);
    let (first, second) = (&shards[0].1, &shards[1].1);

    let overlap: Vec<_> = first.keys().filter(|k| second.contains_key(k)).collect();
    assert!(overlap.is_empty(), "both shards probed {overlap:?}\n{runs}");
    let union: Outcome = first.iter().chain(second).map(|(k, v)| (*k, *v)).collect();
    if let Some(diff) = outcome_diff(&union, &want) {
        panic!("the two shards together are not the whole sweep:\n{diff}\n{runs}");
    }
    // Each is a share of the work, not all or nothing of it.
    for got in [first, second] {
        let share = got.len() as f64 / want.len() as f64;
        assert!(
            (0.25..=0.75).contains(&share),
            "a shard did {share:.2} of the sweep\n{runs}"
        );
    }
    // And no probe went out twice (port 23's are dropped before the counter sees them).
    assert_eq!(counter(&host, "probes"), 5 * 199, "{runs}");
}

#[test]
fn rate_holds_within_ten_percent() {
    const RATE: u64 = 20000;
    const WINDOW: Duration = Duration::from_millis(2500);
    require_root();
    let mut host = TestHost::new().expect("test host");
    let silent = host.add_routed_addresses(1).expect("routed address")[0];
    host.drop_all_to(silent).expect("nft drop rule");
    let tx_path = format!("/sys/class/net/{}/statistics/tx_packets", host.host_if);
    let tx = || -> u64 {
        std::fs::read_to_string(&tx_path)
            .expect("tx_packets")
            .trim()
            .parse()
            .expect("tx_packets is a number")
    };

    // 65535 probes at RATE take about 3.3 s; nothing answers, so every frame the host side sends
    // is a probe.
    let (rate, target) = (RATE.to_string(), silent.to_string());
    let started = SystemTime::now();
    let before = tx();
    let mut prober = Proc::spawn(prober_command(&[
        "--scan", "all", "--rate", &rate, "--wait", "0.5", "-O", "list", &target,
    ]));
    // Measure from a tenth of a second into the sending, past any start-up burst.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (t0, c0) = loop {
        let (t, c) = (Instant::now(), tx());
        if c - before >= RATE / 10 {
            break (t, c);
        }
        if Instant::now() > deadline || !prober.running() {
            prober.fail("the sweep did not start sending");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(WINDOW);
    let (t1, c1) = (Instant::now(), tx());
    let measured = (c1 - c0) as f64 / (t1 - t0).as_secs_f64();
    let swept = Swept::new(prober.wait(TIMEOUT), started);

    let low_high = (RATE as f64 * 0.9, RATE as f64 * 1.1);
    assert!(
        (low_high.0..=low_high.1).contains(&measured),
        "sent {measured:.0} pps over {WINDOW:?}, want {RATE} ± 10%\n{}",
        swept.run
    );
    assert_eq!(
        swept.run.stdout, "#masscan\n# end\n",
        "nothing is open: the list holds masscan's first and last lines only"
    );
    assert_eq!(swept.footer().sent, 65535, "{}", swept.run);
    assert_eq!(
        host.dropped_packets_to(silent).expect("nft counter"),
        65535,
        "{}",
        swept.run
    );
    assert_eq!(swept.run.code(), Some(1), "nothing answered\n{}", swept.run);
}

#[test]
fn retries_probe_again_only_what_has_not_answered() {
    require_root();
    let host = scan_host();
    // After the port-23 drop rule: every probe to the other ports.
    host.add_counter("answered_ports", "tcp flags == syn")
        .expect("nft counter");
    let target = host.addr.to_string();
    let swept = sweep(
        &[
            "-p",
            "20-30",
            "--retries",
            "2",
            "--wait",
            "0.3",
            "-O",
            "json",
            &target,
        ],
        TIMEOUT,
    );
    let results = swept.json();
    let want = expected_outcome(&[host.addr.into()], 20..=30, |_, port| port_status(port));
    let footer = swept.check_outcome(&results, &want);
    assert_eq!(footer.sent, 11 + 2, "{}", swept.run);
    assert_eq!(
        host.dropped_packets(FILTERED_PORT).expect("nft counter"),
        3,
        "{}",
        swept.run
    );
    assert_eq!(counter(&host, "answered_ports"), 10, "{}", swept.run);
}

#[test]
fn a_sweep_ends_once_every_port_has_answered() {
    const WAIT: Duration = Duration::from_secs(5);
    require_root();
    let host = scan_host();
    let (target, wait) = (host.addr.to_string(), WAIT.as_secs().to_string());
    let swept = sweep(
        &["-p", "20-22,80", "--wait", &wait, "-O", "json", &target],
        TIMEOUT,
    );
    let results = swept.json();
    let want = expected_outcome(&[host.addr.into()], [20, 21, 22, 80], |_, port| {
        port_status(port)
    });
    swept.check_outcome(&results, &want);
    assert!(
        swept.run.elapsed < WAIT - Duration::from_secs(2),
        "took {:?} although every port answered at once\n{}",
        swept.run.elapsed,
        swept.run
    );
}

/// The distinct TCP ports /etc/services names.
fn known_tcp_ports() -> BTreeSet<u16> {
    let services = std::fs::read_to_string("/etc/services").expect("/etc/services");
    services
        .lines()
        .filter_map(|line| line.split('#').next()?.split_whitespace().nth(1))
        .filter_map(|port_proto| port_proto.strip_suffix("/tcp")?.parse().ok())
        .collect()
}

#[test]
fn known_sweeps_the_tcp_ports_of_etc_services() {
    require_root();
    let host = scan_host();
    let ports = known_tcp_ports();
    assert!(ports.len() > 50, "/etc/services names only {ports:?}");
    let target = host.addr.to_string();
    let swept = sweep(
        &["--scan", "known", "--rate", "20000", "-O", "json", &target],
        TIMEOUT,
    );
    let results = swept.json();
    let want = expected_outcome(&[host.addr.into()], ports.iter().copied(), |_, port| {
        port_status(port)
    });
    let footer = swept.check_outcome(&results, &want);
    assert_eq!(footer.ports, ports.len() as u64, "{}", swept.run);
}

#[test]
fn sigint_stops_a_sweep_with_the_footer_and_leaves_no_xdp() {
    const SENT_BEFORE_SIGINT: u64 = 200;
    require_root();
    let mut host = TestHost::new().expect("test host");
    let silent = host.add_routed_addresses(1).expect("routed address")[0];
    host.drop_all_to(silent).expect("nft drop rule");
    let target = silent.to_string();
    let started = SystemTime::now();
    // 65535 probes at 2000 pps would take half a minute.
    let mut prober = Proc::spawn(prober_command(&[
        "--scan", "all", "--rate", "2000", "-O", "json", &target,
    ]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.dropped_packets_to(silent).expect("nft counter") < SENT_BEFORE_SIGINT {
        if Instant::now() > deadline || !prober.running() {
            prober.fail("the sweep did not start sending");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    prober.signal(libc::SIGINT);
    let swept = Swept::new(prober.wait(Duration::from_secs(10)), started);

    let footer = swept.footer();
    let arrived = host.dropped_packets_to(silent).expect("nft counter");
    assert!(
        (SENT_BEFORE_SIGINT..65535).contains(&footer.sent) && footer.sent == arrived,
        "the footer says {} probes sent; the host got {arrived}\n{}",
        footer.sent,
        swept.run
    );
    // Which results are written on Ctrl-C is the program's choice, but each must be valid.
    let results = swept.json();
    assert!(
        results
            .iter()
            .all(|r| (r.ip, r.status) == (silent.into(), Status::Filtered)),
        "{}",
        swept.run
    );
    assert_eq!(swept.run.code(), Some(1), "nothing answered\n{}", swept.run);
    let link = prober_tests::ip_link_show(&host.host_if, false).expect("ip link show");
    assert!(!link.contains("xdp"), "XDP left attached:\n{link}");
}

#[test]
fn json_csv_and_list_outputs_agree() {
    require_root();
    let mut host = scan_host();
    let other = host.add_routed_addresses(1).expect("routed address")[0];
    let (spec, target) = ("20-25,80,443", host.addr.to_string());
    let ports = [20, 21, 22, 23, 24, 25, 80, 443];
    let want = expected_outcome(&[host.addr.into()], ports, |_, port| port_status(port));

    let json = sweep(&["--scan", spec, "-O", "json", &target], TIMEOUT);
    let json_results = json.json();
    json.check_outcome(&json_results, &want);
    let wrong = linux_peer_field_errors(&json_results);
    assert!(wrong.is_empty(), "{wrong:#?}\n{}", json.run);
    // Eight probes: no send time can have been forgotten.
    assert!(
        json_results
            .iter()
            .all(|r| r.rtt_us.is_some() == (r.status != Status::Filtered)),
        "every answered result needs an rtt_us\n{}",
        json.run
    );

    let dir = ScratchDir::new("results").expect("scratch dir");
    let file = dir.path.join("results.csv");
    let path = file.to_str().expect("utf-8 path");
    let csv = sweep(
        &["--scan", spec, "-O", "csv", "--output", path, &target],
        TIMEOUT,
    );
    assert_eq!(
        csv.run.stdout, "",
        "--output FILE: nothing on stdout\n{}",
        csv.run
    );
    let mode = std::fs::metadata(&file)
        .expect("the --output file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "results readable by others: mode {mode:o}");
    let text = std::fs::read_to_string(&file).expect("the --output file");
    let csv_results =
        parse_csv(&text).unwrap_or_else(|e| csv.fail(&format!("{e}\nthe file:\n{text}")));
    csv.check_times(&csv_results);
    csv.check_outcome(&csv_results, &want);
    let fields = |results: &[SweepResult]| -> BTreeSet<_> {
        results.iter().map(|r| r.key_fields()).collect()
    };
    assert_eq!(
        fields(&csv_results),
        fields(&json_results),
        "CSV rows differ from the JSON lines\n{text}\n{}",
        json.run
    );

    // Several hosts: list by default, open ports only.
    let other_target = other.to_string();
    let list = sweep(&["--scan", spec, &target, &other_target], TIMEOUT);
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let lines = list.run.stdout_lines();
    let (first, last) = (lines.first(), lines.last());
    assert_eq!(
        (first, last),
        (Some(&"#masscan"), Some(&"# end")),
        "masscan's first and last lines\n{}",
        list.run
    );
    let listed: BTreeSet<(IpAddr, u16)> = lines[1..lines.len() - 1]
        .iter()
        .map(|line| {
            let (ip, port, ts) = parse_list_line(line).unwrap_or_else(|e| list.fail(&e));
            if ts + 1 < secs(list.started) || ts > secs(list.ended) + 1 {
                list.fail(&format!("{line:?}: time outside the run"));
            }
            (ip, port)
        })
        .collect();
    let open: BTreeSet<(IpAddr, u16)> = ips(&[host.addr, other])
        .into_iter()
        .flat_map(|ip| [(ip, 22), (ip, 80)])
        .collect();
    assert_eq!(listed, open, "{}", list.run);
    assert_eq!(
        lines.len() - 2,
        open.len(),
        "each open port listed once\n{}",
        list.run
    );
    assert_eq!(list.footer().filtered, 2, "{}", list.run);
}

#[test]
fn excluded_addresses_are_never_probed() {
    require_root();
    let mut host = TestHost::new().expect("test host");
    host.listen_tcp(80).expect("listener");
    let a = host.add_routed_addresses(8).expect("routed addresses");
    let excluded = [a[1], a[3], a[4], a[6], a[7]];
    let included = [a[0], a[2], a[5]];
    let set = |addrs: &[Ipv4Addr]| {
        let list: Vec<String> = addrs.iter().map(Ipv4Addr::to_string).collect();
        format!("ip daddr {{ {} }}", list.join(", "))
    };
    host.add_counter("to_excluded", &set(&excluded))
        .expect("nft counter");
    host.add_counter(
        "probes_to_included",
        &format!("{} tcp flags == syn", set(&included)),
    )
    .expect("nft counter");
    let file = ScratchFile::new("exclude", &format!("# never probe these\n\n{}/31\n", a[6]))
        .expect("scratch file");

    let (commandline_list, single) = (format!("{},{}/32", a[1], a[3]), a[4].to_string());
    let block = cidr(&a);
    let path = file.path.to_str().expect("utf-8 path");
    let swept = sweep(
        &[
            "-p",
            "20-25,80",
            "--exclude",
            &commandline_list,
            "--exclude",
            &single,
            "--exclude-file",
            path,
            "-O",
            "json",
            &block,
        ],
        TIMEOUT,
    );
    let results = swept.json();
    let want = expected_outcome(&ips(&included), (20..=25).chain([80]), |_, port| {
        if port == 80 {
            Status::Open
        } else {
            Status::Closed
        }
    });
    let footer = swept.check_outcome(&results, &want);
    assert_eq!((footer.hosts, footer.sent), (3, 21), "{}", swept.run);
    assert_eq!(
        counter(&host, "to_excluded"),
        0,
        "packets reached excluded addresses\n{}",
        swept.run
    );
    assert_eq!(counter(&host, "probes_to_included"), 21, "{}", swept.run);
}

/// prober with `args`, then a fresh test host's address followed by `suffix`: with a prober that
/// wrongly goes ahead, probes still only go to the test namespace.
fn refused(args: &[&str], suffix: &str) -> Finished {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = format!("{}{suffix}", host.addr);
    let all: Vec<&str> = args.iter().copied().chain([target.as_str()]).collect();
    run(prober_command(&all), TIMEOUT)
}

#[test]
fn bad_port_spec_is_an_error() {
    check_error(&refused(&["--scan", "70000"], ""), &["70000"], &[]);
}

#[test]
fn bad_cidr_is_an_error() {
    check_error(
        &refused(&["--scan", "80"], "/33"),
        &[],
        &["/33", "prefix", "cidr"],
    );
}

#[test]
fn shard_beyond_the_count_is_an_error() {
    let run = refused(&["--scan", "80", "--seed", "1", "--shard", "3/2"], "");
    check_error(&run, &["shard"], &[]);
}

#[test]
fn shard_without_seed_is_an_error() {
    check_error(
        &refused(&["--scan", "80", "--shard", "1/2"], ""),
        &["seed"],
        &[],
    );
}

#[test]
fn icmp_sweep_is_an_error() {
    check_error(
        &refused(&["-1", "--scan", "80"], ""),
        &[],
        &["-1", "icmp", "syn"],
    );
}

#[test]
fn excluding_every_target_is_an_error() {
    let run = refused(&["--scan", "80", "--exclude", "198.18.0.0/15"], "");
    check_error(&run, &["no targets left"], &[]);
}

/// A rate below the number of send threads (one per CPU) must still probe every port, each
/// thread taking a share of at least one probe a second.
#[test]
fn a_rate_of_one_probe_a_second_still_probes_every_port() {
    require_root();
    let host = scan_host();
    let target = host.addr.to_string();
    let ports = [79, 80, 81];
    let want = expected_outcome(&[host.addr.into()], ports, |_, port| port_status(port));
    let swept = sweep(
        &["-p", "79-81", "--rate", "1", "-O", "json", &target],
        TIMEOUT,
    );
    let results = swept.json();
    let footer = swept.check_outcome(&results, &want);
    assert_eq!(footer.sent, 3, "{}", swept.run);
    assert!(
        swept.run.elapsed >= Duration::from_secs(2),
        "3 probes at 1 per second took {:?}\n{}",
        swept.run.elapsed,
        swept.run
    );
}

/// A retry pass only re-probes what has not answered, and a sweep whose every port has
/// answered ends without waiting for its retries.
#[test]
fn retries_stop_once_everything_has_answered() {
    require_root();
    let host = scan_host();
    let target = host.addr.to_string();
    let want = expected_outcome(&[host.addr.into()], 79..=81, |_, port| port_status(port));
    let swept = sweep(
        &[
            "-p",
            "79-81",
            "--retries",
            "3",
            "--wait",
            "5",
            "-O",
            "json",
            &target,
        ],
        TIMEOUT,
    );
    let footer = swept.check_outcome(&swept.json(), &want);
    assert_eq!(footer.sent, 3, "no retry was needed\n{}", swept.run);
    assert!(
        swept.run.elapsed < Duration::from_secs(4),
        "took {:?} although every port answered at once\n{}",
        swept.run.elapsed,
        swept.run
    );
}

/// The interface deleted while the sweep waits for late replies: no late reply can come any
/// more, so the silent port is not reported filtered (as after Ctrl-C); what came is reported,
/// then the statistic (with the counts the kernel took away with the interface `unknown`),
/// the reason, and exit 2.
#[test]
fn a_sweep_whose_interface_vanishes_during_its_wait_reports_what_came_and_exits_2() {
    require_root();
    let host = scan_host();
    let target = host.addr.to_string();
    // 100 ports at 10 000 a second are sent within 10 ms; the filtered port keeps the sweep
    // waiting its 3 s for late replies, and meanwhile the interface is deleted.
    let started = SystemTime::now();
    let mut prober = Proc::spawn(prober_command(&[
        "-p", "1-100", "--wait", "3", "-O", "json", &target,
    ]));
    prober.expect_line(Duration::from_secs(10), "the first result");
    std::thread::sleep(Duration::from_millis(300));
    let deleted = Command::new("ip")
        .args(["link", "del", "dev", &host.host_if])
        .status()
        .expect("running ip");
    assert!(deleted.success(), "could not delete {}", host.host_if);
    let swept = Swept::new(prober.wait(TIMEOUT), started);
    assert_eq!(
        swept.run.code(),
        Some(2),
        "the run was cut short: exit 2\n{}",
        swept.run
    );
    let want = expected_outcome(
        &[host.addr.into()],
        (1..=100).filter(|&port| port != FILTERED_PORT),
        |_, port| port_status(port),
    );
    let got = outcome(&swept.json()).unwrap_or_else(|e| swept.fail(&e));
    if let Some(diff) = outcome_diff(&got, &want) {
        swept.fail(&format!("results differ:\n{diff}"));
    }
    let stderr = &swept.run.stderr;
    for line in [
        "--- prober sweep statistic ---",
        "3 open, 96 closed, 0 filtered, 0 unknown, 0 duplicate replies",
        "; kernel drops: unknown tx, unknown rx",
        &format!(
            "prober: a count above is unknown: reading /sys/class/net/{}/statistics/",
            host.host_if
        ),
        &format!("prober: {} went down", host.host_if),
    ] {
        assert!(
            stderr.contains(line),
            "want {line:?} on stderr\n{}",
            swept.run
        );
    }
}

/// Finding 6 of issue 9: with stdout stalled, the reply side used to stop draining the ring
/// buffer, whose records were then lost, and the ports whose replies were lost came out as
/// filtered (exit 0). Now output goes through a queue to its own thread and the senders wait
/// while it is behind; whatever is lost anyway is reported unknown, never filtered, and the
/// exit status is 3. All 65 535 ports answer but one (port 23), 1 008 of them open.
#[test]
fn a_stalled_reader_gets_the_exact_result_or_unknown_for_the_lost_replies() {
    const STALL: Duration = Duration::from_secs(8);
    require_root();
    let open: Vec<u16> = (65..=65535).step_by(65).collect();
    assert_eq!(open.len(), 1008);
    let host = host_listening_on(&open);
    let truth = |port: u16| status_with(&open, port);

    let target = host.addr.to_string();
    let started = SystemTime::now();
    let mut prober = Proc::spawn_stalled(
        prober_command(&["-S", "-p", "1-65535", &target, "--flood", "-O", "json"]),
        Some(STALL),
    );
    let swept = Swept::new(prober.wait(TIMEOUT + STALL), started);
    let results = swept.json();
    let got = outcome(&results).unwrap_or_else(|e| swept.fail(&e));
    if got.len() != 65535 {
        swept.fail(&format!("{} results, want one per port", got.len()));
    }
    let wrong: Vec<String> = got
        .iter()
        .filter(|&(&(_, port), &status)| status != truth(port) && status != Status::Unknown)
        .map(|((_, port), status)| format!("{port} {status:?} (is {:?})", truth(*port)))
        .collect();
    if !wrong.is_empty() {
        swept.fail(&format!(
            "{} ports reported with a status they do not have (first: {:?})",
            wrong.len(),
            &wrong[..wrong.len().min(20)]
        ));
    }
    let footer = swept.footer();
    let unknown = |answering: bool| {
        got.iter()
            .filter(|&(&(_, port), &status)| {
                status == Status::Unknown && (truth(port) != Status::Filtered) == answering
            })
            .count() as u64
    };
    eprintln!(
        "stalled reader: {} replies lost to a full ring buffer, {} unknown, {} TX-ring waits, \
         {:.2} s in all",
        footer.ring_full,
        unknown(true) + unknown(false),
        footer.tx_full,
        footer.total_secs
    );
    // One probe each, so each lost reply leaves exactly one answering port without an answer;
    // and with any lost, no silence can be told from a loss, the filtered port's included.
    assert_eq!(
        (unknown(true), unknown(false)),
        (footer.ring_full, u64::from(footer.ring_full > 0)),
        "the unknown ports should be exactly those whose replies were lost\n{}",
        swept.run
    );
    assert_eq!(
        footer.bounced,
        open.len() as u64,
        "every SYN-ACK bounced\n{}",
        swept.run
    );
    let want_code = if footer.ring_full > 0 { 3 } else { 0 };
    assert_eq!(swept.run.code(), Some(want_code), "{}", swept.run);
}
