//! ICMP's other query messages (hping3's -C, --icmp-ts, --icmp-addr) against the namespace's
//! kernel: timestamp requests side by side with hping3 (Linux answers them), address mask
//! requests on the wire (Linux never answers them); and replies forged from inside the
//! namespace, of which only those that answer our requests (our identifier, the reply type)
//! are shown. And raw IP mode (-0 -H), whose probes only ICMP errors answer: Linux's protocol
//! unreachable side by side with hping3, and forged errors quoting what is no probe of ours.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prober_tests::{
    forger::{open_socket, read_frame},
    hping3_command, internet_checksum,
    output::{parse_footer, parse_footer_then},
    prober_command,
    proc::{run, Finished},
    require_root, run_checked, TestHost,
};

const TIMEOUT: Duration = Duration::from_secs(30);
const MS_PER_DAY: u64 = 86_400_000;

/// `line` with the values that differ from run to run (ids, times) as `*`.
fn masked(line: &str) -> String {
    line.split(' ')
        .map(|token| match token.split_once('=') {
            Some((key @ ("id" | "rtt" | "Originate" | "Receive" | "Transmit" | "tsrtt"), _)) => {
                format!("{key}=*")
            }
            _ => token.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The number `key=` has in `line`.
fn field(line: &str, key: &str) -> u64 {
    line.split(' ')
        .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Checks the timestamps of every `ICMP timestamp:` line of `run` as a Linux peer sets them:
/// receive and transmit equal, taken at most a second after the originate time, all within a
/// day's milliseconds; and the tsrtt below a second.
fn check_kernel_timestamps(run: &Finished) {
    let lines = run.stdout_lines();
    let stamps: Vec<&&str> = lines
        .iter()
        .filter(|line| line.starts_with("ICMP timestamp:"))
        .collect();
    assert!(!stamps.is_empty(), "{run}");
    for line in stamps {
        let (originate, receive, transmit) = (
            field(line, "Originate"),
            field(line, "Receive"),
            field(line, "Transmit"),
        );
        assert_eq!(receive, transmit, "{run}");
        assert!(originate < MS_PER_DAY && receive < MS_PER_DAY, "{run}");
        assert!(
            (receive + MS_PER_DAY - originate) % MS_PER_DAY < 1000,
            "{run}"
        );
    }
    for line in lines
        .iter()
        .filter(|line| line.starts_with("ICMP timestamp RTT"))
    {
        assert!(field(line, "tsrtt") < 1000, "{run}");
    }
}

#[test]
fn timestamp_requests_same_as_hping3() {
    require_root();
    let host = TestHost::new().expect("test host");
    let target = host.addr.to_string();
    let prober = run(prober_command(&["--icmp-ts", "-c", "2", &target]), TIMEOUT);
    let hping3 = run(
        hping3_command(&["-n", "--icmp-ts", "-c", "2", &target]),
        TIMEOUT,
    );
    let lines =
        |run: &Finished| -> Vec<String> { run.stdout_lines().iter().map(|l| masked(l)).collect() };
    assert_eq!(lines(&prober), lines(&hping3), "{prober}\n{hping3}");
    assert_eq!(
        prober.stdout_lines()[0],
        format!(
            "HPING {target} ({} {target}): icmp mode set, 28 headers + 0 data bytes",
            host.host_if
        ),
        "{prober}"
    );
    assert_eq!(
        masked(prober.stdout_lines()[1]),
        format!("len=40 ip={target} ttl=64 id=* icmp_seq=0 rtt=* ms"),
        "{prober}"
    );
    check_kernel_timestamps(&prober);
    check_kernel_timestamps(&hping3);
    for run in [&prober, &hping3] {
        let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
        assert_eq!((footer.transmitted, footer.received), (2, 2), "{run}");
        assert_eq!(run.code(), Some(0), "{run}");
    }
}

#[test]
fn icmptype_13_is_a_timestamp_request() {
    require_root();
    let host = TestHost::new().expect("test host");
    let target = host.addr.to_string();
    let prober = run(prober_command(&["-C", "13", "-c", "1", &target]), TIMEOUT);
    assert_eq!(prober.stdout_lines().len(), 5, "{prober}");
    check_kernel_timestamps(&prober);
    assert_eq!(prober.code(), Some(0), "{prober}");
}

/// An IPv4 packet seen arriving on the packet socket, and an ICMP query's identifier and
/// sequence number.
struct Request {
    frame: Vec<u8>,
    id: u16,
    seq: u16,
}

/// Which arriving IPv4 frames the forger answers: ICMP messages of a type, or packets of an
/// IP protocol.
#[derive(Clone, Copy)]
enum Asked {
    Icmp(u8),
    Protocol(u8),
}

impl Asked {
    fn is(self, frame: &[u8]) -> bool {
        let ipv4 = frame.len() >= 34 && frame[12..14] == [0x08, 0x00] && frame[14] == 0x45;
        match self {
            Asked::Icmp(icmp_type) => {
                ipv4 && frame.len() >= 42 && frame[23] == 1 && frame[34] == icmp_type
            }
            Asked::Protocol(protocol) => ipv4 && frame[23] == protocol,
        }
    }
}

/// Reads frames from `socket` until `stop`, handing each one `asked` takes to `answer`,
/// which returns the frames to send back.
fn serve(
    socket: &OwnedFd,
    asked: Asked,
    stop: &AtomicBool,
    mut answer: impl FnMut(&Request) -> Vec<Vec<u8>>,
) -> Vec<Request> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Acquire) {
        let Some(frame) = read_frame(socket, &mut buffer) else {
            continue; // the read's timeout: look at `stop` again
        };
        if !asked.is(frame) {
            continue;
        }
        let word = |at: usize| {
            frame
                .get(at..at + 2)
                .map_or(0, |w| u16::from_be_bytes([w[0], w[1]]))
        };
        let request = Request {
            frame: frame.to_vec(),
            id: word(38),
            seq: word(40),
        };
        for reply in answer(&request) {
            // SAFETY: the frame outlives the call and its size is given.
            unsafe { libc::send(socket.as_raw_fd(), reply.as_ptr().cast(), reply.len(), 0) };
        }
        seen.push(request);
    }
    seen
}

/// A reply frame to `request`'s: MACs and addresses swapped, the ICMP message `icmp_type`,
/// `id`, the request's sequence number and `data`, checksums set.
fn reply_frame(request: &Request, icmp_type: u8, id: u16, data: &[u8]) -> Vec<u8> {
    let [i0, i1] = id.to_be_bytes();
    let [s0, s1] = request.seq.to_be_bytes();
    icmp_frame(request, [icmp_type, 0, 0, 0, i0, i1, s0, s1], data)
}

/// An ICMP message frame answering `request`'s: MACs and addresses swapped, `header` (its
/// checksum filled in) and `body`.
fn icmp_frame(request: &Request, header: [u8; 8], body: &[u8]) -> Vec<u8> {
    let asked = &request.frame;
    let mut message = [&header[..], body].concat();
    let sum = internet_checksum(&message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&(20 + message.len() as u16).to_be_bytes());
    ip.extend_from_slice(&asked[30..34]);
    ip.extend_from_slice(&asked[26..30]);
    let sum = internet_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    [
        &asked[6..12],
        &asked[0..6],
        &asked[12..14],
        &ip[..],
        &message[..],
    ]
    .concat()
}

/// Runs prober with `args` against `host`, while a packet socket in the namespace answers
/// each packet `asked` takes with `answer`'s frames (sent past nftables, which may drop the
/// kernel's own answers). Returns the run and the packets seen.
fn with_forged_replies(
    host: &TestHost,
    args: &[&str],
    asked: Asked,
    answer: impl FnMut(&Request) -> Vec<Vec<u8>> + Send + 'static,
) -> (Finished, Vec<Request>) {
    let interface = host.peer_if.clone();
    let socket = host
        .in_ns(move || open_socket(&interface))
        .expect("namespace")
        .expect("packet socket");
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let forger = std::thread::spawn(move || serve(&socket, asked, &stopping, answer));
    let target = host.addr.to_string();
    let mut all = args.to_vec();
    all.push(&target);
    let prober = run(prober_command(&all), TIMEOUT);
    stop.store(true, Ordering::Release);
    (prober, forger.join().expect("forger thread"))
}

/// Forged timestamp replies: one with another identifier and one echo reply with ours are not
/// answers to our timestamp requests and are never shown; the one that is, with timestamps of
/// the forger's choosing, is shown once per request. (Mocked: a packet socket in the
/// namespace answers in the kernel's stead, whose own replies are dropped.)
#[test]
fn forged_timestamp_replies_with_another_id_are_never_shown() {
    require_root();
    let host = TestHost::new().expect("test host");
    host.drop_outgoing("kernel_ts_replies", "icmp type timestamp-reply")
        .expect("nft");
    let (prober, requests) = with_forged_replies(
        &host,
        &["--icmp-ts", "-c", "3", "-i", "u200000"],
        Asked::Icmp(13),
        |request| {
            let originate = &request.frame[42..46];
            let stamps = [originate, &[0, 0, 0, 7], &[0, 0, 0, 9]].concat();
            vec![
                reply_frame(request, 14, request.id ^ 0x8000, &stamps),
                reply_frame(request, 0, request.id, &stamps),
                reply_frame(request, 14, request.id, &stamps),
            ]
        },
    );
    assert_eq!(requests.len(), 3, "{prober}");
    let out = prober.stdout_lines();
    let shown: Vec<String> = out[1..].iter().map(|line| masked(line)).collect();
    let target = host.addr;
    let expected: Vec<String> = (0..3)
        .flat_map(|seq| {
            [
                format!("len=40 ip={target} ttl=64 id=* icmp_seq={seq} rtt=* ms"),
                "ICMP timestamp: Originate=* Receive=* Transmit=*".to_string(),
                "ICMP timestamp RTT tsrtt=*".to_string(),
                String::new(),
            ]
        })
        .collect();
    assert_eq!(shown, expected, "{prober}");
    for line in out
        .iter()
        .filter(|line| line.starts_with("ICMP timestamp:"))
    {
        assert!(line.ends_with(" Receive=7 Transmit=9"), "{prober}");
    }
    let footer = parse_footer(&prober.stderr).unwrap_or_else(|e| panic!("{e}\n{prober}"));
    assert_eq!((footer.transmitted, footer.received), (3, 3), "{prober}");
    assert!(
        host.counter_packets("kernel_ts_replies").unwrap() >= 3,
        "the kernel answered too"
    );
}

/// Address mask requests as they arrive: type 17, code 0, our identifier and sequence numbers,
/// a zero mask, the checksum right. Linux answers none: all lost, exit 1, as with hping3.
#[test]
fn address_mask_requests_on_the_wire_get_no_answer_from_linux() {
    require_root();
    let host = TestHost::new().expect("test host");
    let (prober, requests) = with_forged_replies(
        &host,
        &["--icmp-addr", "-c", "2", "-i", "u200000"],
        Asked::Icmp(17),
        |_| vec![],
    );
    assert_eq!(requests.len(), 2, "{prober}");
    for (seq, request) in requests.iter().enumerate() {
        let message = &request.frame[34..];
        assert_eq!(message.len(), 12);
        assert_eq!((message[0], message[1]), (17, 0));
        assert_eq!(request.seq, seq as u16);
        assert_eq!(request.id, requests[0].id);
        assert_eq!(&message[8..], &[0; 4], "a zero mask");
        assert_eq!(internet_checksum(message), 0, "ICMP checksum");
    }
    let target = host.addr;
    assert_eq!(
        prober.stdout_lines(),
        [format!(
            "HPING {target} ({} {target}): icmp mode set, 28 headers + 0 data bytes",
            host.host_if
        )],
        "{prober}"
    );
    let footer = parse_footer(&prober.stderr).unwrap_or_else(|e| panic!("{e}\n{prober}"));
    assert_eq!((footer.transmitted, footer.received), (2, 0), "{prober}");
    assert_eq!(prober.code(), Some(1), "{prober}");
    let hping3 = run(
        hping3_command(&["-n", "--icmp-addr", "-c", "2", &target.to_string()]),
        TIMEOUT,
    );
    assert_eq!(hping3.stdout_lines(), prober.stdout_lines(), "{hping3}");
}

/// The mask line hping3 prints for an address mask reply: the reply is forged in the
/// namespace (Linux sends none), with another identifier first, which is never shown.
#[test]
fn a_forged_address_mask_reply_shows_its_mask() {
    require_root();
    let host = TestHost::new().expect("test host");
    let (prober, requests) = with_forged_replies(
        &host,
        &["--icmp-addr", "-c", "1"],
        Asked::Icmp(17),
        |request| {
            vec![
                reply_frame(request, 18, request.id.wrapping_add(1), &[255, 0, 0, 0]),
                reply_frame(request, 18, request.id, &[255, 255, 255, 252]),
            ]
        },
    );
    assert_eq!(requests.len(), 1, "{prober}");
    let target = host.addr;
    let shown: Vec<String> = prober.stdout_lines()[1..]
        .iter()
        .map(|line| masked(line))
        .collect();
    assert_eq!(
        shown,
        [
            format!("len=32 ip={target} ttl=64 id=* icmp_seq=0 rtt=* ms"),
            "ICMP address mask: icmpam=255.255.255.252".to_string(),
            String::new(),
        ],
        "{prober}"
    );
    assert_eq!(prober.code(), Some(0), "{prober}");
}

#[test]
fn what_icmpv6_and_sweeps_lack_is_refused() {
    for (args, error) in [
        (
            &["--icmp-ts", "2001:db8::2"][..],
            "prober: -C 13: timestamp and address mask messages are IPv4's ICMP; ICMPv6 has neither",
        ),
        (
            &["-C", "3", "198.18.0.2"][..],
            "prober: -C 3: hping3 sends an ICMP error about a made-up UDP packet for it, which prober does not",
        ),
        (
            &["--icmp-ts", "-d", "10", "198.18.0.2"][..],
            "prober: -d: timestamp and address mask requests carry their own fields, no data",
        ),
        (
            &["-0", "2001:db8::2"][..],
            "prober: -0 is raw IPv4 (hping3's): an IPv6 host answers an unknown next header with a parameter problem, which prober does not read",
        ),
        (
            &["--icmp-ts", "198.18.0.0/30"][..],
            "prober: --icmp-ts has no meaning in a sweep (sweeps send one probe per port and host, or with -1 per host; see --rate and --retries)",
        ),
    ] {
        let refused = run(prober_command(args), TIMEOUT);
        assert_eq!(refused.stderr.trim_end(), error, "{refused}");
        assert_eq!(refused.code(), Some(2), "{refused}");
    }
}

/// Raw IP probes of a protocol Linux does not have: its protocol unreachable, side by side
/// with hping3 (`raw IP mode set, 20 headers + 0 data bytes`), counted as received.
#[test]
fn raw_ip_protocol_unreachable_same_as_hping3() {
    require_root();
    let host = TestHost::new().expect("test host");
    // Linux sends a peer 6 errors at once, then one a second: more than this test's runs.
    run_checked(
        host.command_in_ns("sysctl")
            .args(["-qw", "net.ipv4.icmp_ratelimit=0"]),
    )
    .expect("sysctl");
    let target = host.addr.to_string();
    let args = ["-0", "-H", "200", "-c", "3", "-i", "u300000"];
    let prober = run(prober_command(&[&args[..], &[&target]].concat()), TIMEOUT);
    let hping3 = run(
        hping3_command(&[&["-n"][..], &args, &[&target]].concat()),
        TIMEOUT,
    );
    assert_eq!(
        prober.stdout_lines(),
        hping3.stdout_lines(),
        "{prober}\n{hping3}"
    );
    let header = format!(
        "HPING {target} ({} {target}): raw IP mode set, 20 headers + 0 data bytes",
        host.host_if
    );
    let error = format!("ICMP Protocol Unreachable from ip={target}");
    assert_eq!(
        prober.stdout_lines(),
        [&header, &error, &error, &error],
        "{prober}"
    );
    for run in [&prober, &hping3] {
        let footer = parse_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
        assert_eq!((footer.transmitted, footer.received), (3, 3), "{run}");
        assert_eq!(run.code(), Some(0), "{run}");
    }
    // -d: the data follows the header, and the header line says so, as hping3's.
    let with_data = run(
        prober_command(&["-0", "-H", "200", "-d", "10", "-c", "1", &target]),
        TIMEOUT,
    );
    assert_eq!(
        with_data.stdout_lines(),
        [header.replace("+ 0 data", "+ 10 data"), error.clone()],
        "{with_data}"
    );
    // -N: every probe has the one id, and every error still counts.
    let fixed_id = run(
        prober_command(&[
            "-0", "-H", "200", "-N", "1000", "-c", "2", "-i", "u300000", &target,
        ]),
        TIMEOUT,
    );
    assert_eq!(
        fixed_id.stdout_lines(),
        [&header, &error, &error],
        "{fixed_id}"
    );
    let footer = parse_footer(&fixed_id.stderr).unwrap_or_else(|e| panic!("{e}\n{fixed_id}"));
    assert_eq!((footer.transmitted, footer.received), (2, 2), "{fixed_id}");
}

/// ICMP errors forged in the namespace that quote a packet that is not one of our raw IP
/// probes (another protocol, another source) or have a bad checksum are never shown; the one
/// quoting our probe is. The kernel's own protocol unreachables are dropped on the way out.
/// (Mocked: a packet socket in the namespace answers in the kernel's stead.)
#[test]
fn forged_errors_quoting_no_raw_probe_of_ours_are_never_shown() {
    require_root();
    let host = TestHost::new().expect("test host");
    host.drop_outgoing("kernel_unreachables", "icmp type destination-unreachable")
        .expect("nft");
    // With -N, an error quoting another IP id is about no probe of ours either (without it,
    // every id is one the run may have used).
    for (runs, fixed_id) in [(1, None), (2, Some(1000u16))] {
        let mut args = vec!["-V", "-0", "-H", "200", "-c", "2", "-i", "u200000"];
        if fixed_id.is_some() {
            args.extend(["-N", "1000"]);
        }
        let (prober, probes) =
            with_forged_replies(&host, &args, Asked::Protocol(200), move |probe| {
                let quote = probe.frame[14..34].to_vec();
                let mut other_protocol = quote.clone();
                other_protocol[9] = 201;
                let mut other_source = quote.clone();
                other_source[15] ^= 1;
                let mut other_id = quote.clone();
                other_id[5] ^= 1;
                let unreachable = [3, 2, 0, 0, 0, 0, 0, 0];
                let mut bad_checksum = icmp_frame(probe, unreachable, &quote);
                bad_checksum[36] ^= 0xff;
                let mut forged = vec![
                    icmp_frame(probe, unreachable, &other_protocol),
                    icmp_frame(probe, unreachable, &other_source),
                    bad_checksum,
                ];
                if fixed_id.is_some() {
                    forged.push(icmp_frame(probe, unreachable, &other_id));
                }
                forged.push(icmp_frame(probe, unreachable, &quote));
                forged
            });
        assert_eq!(probes.len(), 2, "{prober}");
        for probe in &probes {
            assert_eq!(
                probe.frame.len().max(60),
                60,
                "a bare 20-byte header, padded"
            );
            assert_eq!(u16::from_be_bytes([probe.frame[16], probe.frame[17]]), 20);
            if let Some(id) = fixed_id {
                assert_eq!(u16::from_be_bytes([probe.frame[18], probe.frame[19]]), id);
            }
        }
        let error = format!("ICMP Protocol Unreachable from ip={}", host.addr);
        let out = prober.stdout_lines();
        let header_at = out.iter().position(|line| line.starts_with("HPING "));
        assert_eq!(
            header_at.map(|at| &out[at + 1..]),
            Some(&[error.as_str(), &error][..]),
            "{prober}"
        );
        let (footer, after) =
            parse_footer_then(&prober.stderr).unwrap_or_else(|e| panic!("{e}\n{prober}"));
        assert_eq!((footer.transmitted, footer.received), (2, 2), "{prober}");
        // XDP's own counts: other protocols and sources are no one's business, the bad
        // checksums malformed, and (with -N) the other id no probe of ours.
        let unmatched = if fixed_id.is_some() { 2 } else { 0 };
        let counts = format!(
            "xdp: 2 replies matched, {unmatched} unmatched packets from the target, 2 malformed,"
        );
        assert!(
            after.iter().any(|line| line.starts_with(&counts)),
            "{counts}\n{prober}"
        );
        assert!(
            host.counter_packets("kernel_unreachables").unwrap() >= 2 * runs,
            "the kernel answered too"
        );
    }
}
