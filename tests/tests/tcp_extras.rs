//! TCP probe extras side by side with hping3 on namespace hosts: -Q (the replies' sequence
//! numbers), -f (fragments, as a packet socket in the namespace sees them arrive), -a and
//! --rand-source (the probes' source address, on the wire too), --tcp-timestamp (hping3's
//! option on the wire, and its uptime guess's lines).

use prober_tests::capture::Arrivals;
use prober_tests::output::{compare_with_hping3, normalize, parse_footer};
use prober_tests::proc::{run, Finished};
use prober_tests::{
    hping3_command, prober_command, require_root, run_checked, TestHost, OPEN_PORT,
};
use std::net::Ipv4Addr;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// `-n -c 3 -i u200000 <options> TARGET`.
fn args(options: &[&str], target: impl ToString) -> Vec<String> {
    ["-n", "-c", "3", "-i", "u200000"]
        .iter()
        .chain(options)
        .map(|s| s.to_string())
        .chain([target.to_string()])
        .collect()
}

/// hping3's run and then prober's with `args`, each with what `arrived` makes of the packets
/// that reached `host`'s namespace during it.
fn side_by_side<T>(
    host: &TestHost,
    args: &[String],
    arrived: impl Fn(&Arrivals) -> T,
) -> ((Finished, T), (Finished, T)) {
    let arrivals = Arrivals::open(host);
    let hping3 = run(hping3_command(args), TIMEOUT);
    let hping3_arrived = arrived(&arrivals);
    let prober = run(prober_command(args), TIMEOUT);
    ((hping3, hping3_arrived), (prober, arrived(&arrivals)))
}

/// Footers with the same counts, and the same exit status.
fn same_ending(hping3: &Finished, prober: &Finished) {
    let footer = |run: &Finished| {
        let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}: {run}"));
        (footer.target, footer.transmitted, footer.received)
    };
    assert_eq!(footer(hping3), footer(prober), "{hping3}\n{prober}");
    assert_eq!(hping3.code(), prober.code(), "{hping3}\n{prober}");
}

/// A -Q line's number (right-aligned in ten columns) and difference.
fn seqnum_fields(line: &str) -> (u32, u32) {
    let parsed = line.get(..10).zip(line.get(10..)).and_then(|(seq, rest)| {
        let seq = seq.trim_start().parse().ok()?;
        let difference = rest.strip_prefix(" +")?.parse().ok()?;
        Some((seq, difference))
    });
    parsed.unwrap_or_else(|| panic!("not a -Q line: {line:?}"))
}

/// Checks a -Q run: the header, then a line per reply whose difference is from the last
/// line's number (from 0 for the first; one short across a wrap, as hping3 counts); returns
/// the header.
fn seqnum_lines(run: &Finished) -> String {
    let lines = run.stdout_lines();
    assert_eq!(lines.len(), 4, "a header and three replies: {run}");
    let mut last = 0u32;
    for line in &lines[1..] {
        let (seq, difference) = seqnum_fields(line);
        let expected = if seq >= last {
            seq - last
        } else {
            u32::MAX - last + seq
        };
        assert_eq!(difference, expected, "{line:?} in {run}");
        last = seq;
    }
    lines[0].to_string()
}

#[test]
fn seqnum_same_as_hping3() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = OPEN_PORT.to_string();
    let args = args(&["-S", "-p", &port, "-Q"], host.addr);
    let hping3 = run(hping3_command(&args), TIMEOUT);
    let prober = run(prober_command(&args), TIMEOUT);
    assert_eq!(seqnum_lines(&hping3), seqnum_lines(&prober), "{prober}");
    same_ending(&hping3, &prober);
}

/// A fragment as it arrived: its length, whether more follow, its offset (in 8-byte units).
type FragmentShape = (usize, bool, u16);

/// The IPv4 fragments from `from` that arrived, in order, by shape.
fn fragments_from(arrivals: &Arrivals, from: Ipv4Addr) -> Vec<FragmentShape> {
    arrivals
        .ip_packets()
        .iter()
        .filter(|packet| packet[0] >> 4 == 4 && packet[12..16] == from.octets())
        .map(|packet| {
            let flags_offset = u16::from_be_bytes([packet[6], packet[7]]);
            (
                packet.len(),
                flags_offset & 0x2000 != 0,
                flags_offset & 0x1fff,
            )
        })
        .filter(|&(_, more, offset)| more || offset != 0)
        .collect()
}

#[test]
fn fragments_same_as_hping3s_and_answered() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = OPEN_PORT.to_string();
    let args = args(&["-S", "-p", &port, "-f"], host.addr);
    // hping3 now and then shows no reply on this loaded VM although its fragments arrived (seen
    // once in a whole suite: 0 of 3 received, passing alone 4 times after): such a run says
    // nothing of prober, and is made again, 3 times at most.
    let mut attempts = 0;
    let ((hping3, hping3_fragments), (prober, prober_fragments)) = loop {
        attempts += 1;
        let runs = side_by_side(&host, &args, |arrivals| {
            fragments_from(arrivals, host.host_addr)
        });
        if runs.0 .0.stdout_lines().len() > 1 || attempts == 3 {
            break runs;
        }
        println!(
            "hping3 run {attempts} showed no reply, again:\n{}",
            runs.0 .0
        );
    };
    // The 20-byte TCP header in two: 16 bytes, then 4 at offset 16.
    let each_probe = [(36, true, 0), (24, false, 2)];
    assert_eq!(hping3_fragments, each_probe.repeat(3), "{hping3}");
    assert_eq!(prober_fragments, hping3_fragments, "{prober}");
    // The target reassembled them: its listener answers each SYN.
    compare_with_hping3(&hping3, &prober, false);
    assert_eq!(prober.stdout_lines().len(), 4, "{prober}");
}

#[test]
fn icmp_echoes_with_data_leave_in_fragments_and_are_answered_as_hping3s() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let args = args(&["-1", "-d", "40", "-f"], host.addr);
    let ((hping3, hping3_fragments), (prober, prober_fragments)) =
        side_by_side(&host, &args, |arrivals| {
            fragments_from(arrivals, host.host_addr)
        });
    // The echo request's 8 bytes and 40 of data: three fragments of 16.
    let each_probe = [(36, true, 0), (36, true, 2), (36, false, 4)];
    assert_eq!(hping3_fragments, each_probe.repeat(3), "{hping3}");
    assert_eq!(prober_fragments, hping3_fragments, "{prober}");
    // The echo replies carry the data back; their IP ids vary.
    compare_with_hping3(&hping3, &prober, true);
    assert_eq!(prober.stdout_lines().len(), 4, "{prober}");
}

#[test]
fn the_first_fragment_is_seen_leaving() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = OPEN_PORT.to_string();
    let target = host.addr;
    // The TC egress program names each probe by its first fragment: TCP by the start of its
    // header, ICMP by its echo header (with 40 bytes of data, in the first of three).
    let tcp = ["-S", "-p", &port, "-s", "41000"];
    let kinds = [
        (&tcp[..], format!("bpf: tc: probe to {target} port {port}")),
        (&["-1", "-d", "40"], format!("bpf: tc: probe to {target}")),
    ];
    for (options, probe) in kinds {
        let traced = [&["--bpf-trace", "-f"], options].concat();
        let run = run(prober_command(&args(&traced, target)), TIMEOUT);
        assert_eq!(run.code(), Some(0), "{run}");
        for slot in 0..3 {
            let left = format!("{probe} left, slot {slot}");
            assert!(
                run.stderr_lines().contains(&left.as_str()),
                "want {left:?}: {run}"
            );
        }
    }
}

/// The SYNs over IPv4 (without IP options) to `to`:`port` that arrived, in order.
fn syns_to(arrivals: &Arrivals, to: Ipv4Addr, port: u16) -> Vec<Vec<u8>> {
    arrivals
        .ip_packets()
        .into_iter()
        .filter(|packet| packet.len() >= 40 && packet[0] == 0x45 && packet[9] == 6)
        .filter(|packet| packet[16..20] == to.octets() && packet[22..24] == port.to_be_bytes())
        .filter(|packet| packet[33] & 0x02 != 0)
        .collect()
}

/// The sources of the SYNs to `to`:`port` that arrived, in order.
fn syn_sources(arrivals: &Arrivals, to: Ipv4Addr, port: u16) -> Vec<Ipv4Addr> {
    syns_to(arrivals, to, port)
        .iter()
        .map(|packet| Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]))
        .collect()
}

#[test]
fn a_spoofed_source_routed_back_to_us_gets_its_replies_as_hping3s() {
    require_root();
    let host = TestHost::standard().expect("test host");
    // Another address of this host's, on a second test host's veth: the target routes it back
    // over its own veth, so its replies come in where prober's XDP program is.
    let other = TestHost::new().expect("second test host");
    let spoofed = other.host_addr;
    run_checked(host.command_in_ns("ip").args([
        "route",
        "add",
        &format!("{spoofed}/32"),
        "via",
        &host.host_addr.to_string(),
    ]))
    .expect("routing the spoofed address back");
    let (port, source) = (OPEN_PORT.to_string(), spoofed.to_string());
    let args = args(&["-S", "-p", &port, "-a", &source], host.addr);
    let sources = |arrivals: &Arrivals| syn_sources(arrivals, host.addr, OPEN_PORT);
    let ((hping3, hping3_sources), (prober, prober_sources)) = side_by_side(&host, &args, sources);
    assert_eq!(prober.stdout_lines().len(), 4, "three replies: {prober}");
    compare_with_hping3(&hping3, &prober, false);
    assert_eq!(hping3_sources, [spoofed; 3], "{hping3}");
    assert_eq!(prober_sources, [spoofed; 3], "{prober}");
}

#[test]
fn random_sources_change_per_probe_and_their_replies_are_lost_as_hping3s() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = OPEN_PORT.to_string();
    let args = args(&["-S", "-p", &port, "--rand-source"], host.addr);
    let sources = |arrivals: &Arrivals| syn_sources(arrivals, host.addr, OPEN_PORT);
    let ((hping3, hping3_sources), (prober, prober_sources)) = side_by_side(&host, &args, sources);
    // Every probe went to the namespace host (its destination), each from an address of its
    // own, none ours; the target's answers to them have no route, and none comes back.
    for (sources, run) in [(hping3_sources, &hping3), (prober_sources, &prober)] {
        let mut distinct = sources.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{sources:?}: {run}");
        assert!(!sources.contains(&host.host_addr), "{sources:?}: {run}");
    }
    compare_with_hping3(&hping3, &prober, false);
    assert_eq!(prober.code(), Some(1), "every probe lost: {prober}");
}

/// The TCP options of the SYNs to `to`:`port` that arrived.
fn syn_options(arrivals: &Arrivals, to: Ipv4Addr, port: u16) -> Vec<Vec<u8>> {
    syns_to(arrivals, to, port)
        .iter()
        .map(|packet| packet[40..20 + usize::from(packet[32] >> 4) * 4].to_vec())
        .collect()
}

/// A --tcp-timestamp run's stdout but its header, numbers masked: reply lines as `normalize`
/// masks them, every other number as `N`, but for the clock rate guessed.
fn timestamp_shapes(run: &Finished) -> Vec<String> {
    let numbers = |line: &str| {
        let mut masked = String::new();
        for c in line.chars() {
            match (c.is_ascii_digit(), masked.ends_with('N')) {
                (true, true) => {}
                (true, false) => masked.push('N'),
                (false, _) => masked.push(c),
            }
        }
        masked
    };
    run.stdout_lines()
        .iter()
        .skip(1)
        // With -k hping3 takes every reply after the first for a duplicate (`DUP! `, timed
        // from the first probe); prober times each against its own probe, and shows none so.
        .map(|line| line.strip_prefix("DUP! ").unwrap_or(line))
        .map(|line| match line.starts_with("len=") {
            true => normalize(line, false).unwrap().0,
            false if line.starts_with("  HZ seems hz=") => line.to_string(),
            false => numbers(line),
        })
        .collect()
}

#[test]
fn tcp_timestamps_same_as_hping3s() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port = OPEN_PORT.to_string();
    // One source port: Linux offsets its timestamps per connection, so only replies to the
    // same ports count up from one another, at its 1000 Hz; and an interval of whole seconds,
    // without which hping3 guesses nothing.
    let target = host.addr.to_string();
    let args = [
        "-n",
        "-c",
        "3",
        "-i",
        "1",
        "-S",
        "-p",
        &port,
        "-k",
        "--tcp-timestamp",
        &target,
    ]
    .map(String::from);
    let options = |arrivals: &Arrivals| syn_options(arrivals, host.addr, OPEN_PORT);
    let ((hping3, hping3_options), (prober, prober_options)) = side_by_side(&host, &args, options);
    for (options, run) in [(hping3_options, &hping3), (prober_options, &prober)] {
        assert_eq!(options.len(), 3, "{run}");
        for option in options {
            // Two NOPs, the timestamp option with its TSval, and a TSecr of 0.
            assert_eq!(option.len(), 12, "{option:?}: {run}");
            assert_eq!(
                (&option[..4], &option[8..]),
                (&[1, 1, 8, 10][..], &[0; 4][..])
            );
        }
    }
    let shapes = timestamp_shapes(&prober);
    assert_eq!(shapes, timestamp_shapes(&hping3), "{hping3}\n{prober}");
    assert_eq!(
        shapes
            .iter()
            .filter(|line| *line == "  HZ seems hz=1000")
            .count(),
        2,
        "a guess from the second reply on: {prober}"
    );
    assert_eq!(
        hping3.stdout_lines()[0],
        prober.stdout_lines()[0],
        "40 headers, as hping3 counts"
    );
    same_ending(&hping3, &prober);
}
