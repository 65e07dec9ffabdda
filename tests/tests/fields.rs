//! Probe header fields and data (-d, -E, -o, -y, -N, -M, -L) side by side with hping3 on a
//! namespace host: the same lines (but for RTTs), and on the wire, as a packet socket inside the
//! namespace reads the probes as they arrive, the fields asked for.

use prober_tests::capture::Arrivals;
use prober_tests::output::{check_error, check_run, compare_with_hping3, tcp_reply, Expected};
use prober_tests::proc::{run, Finished};
use prober_tests::{
    hping3_command, prober_command, require_root, TestHost, CLOSED_PORT, FILTERED_PORT, OPEN_PORT,
};
use std::net::Ipv4Addr;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
const VETH_SYNACK_WIN: u32 = 64240;

/// The TCP SYNs over IPv4 from `from` to `port` that arrived (their IP packets).
fn syns(arrivals: &Arrivals, from: Ipv4Addr, port: u16) -> Vec<Vec<u8>> {
    let syn = |packet: &Vec<u8>| {
        if packet.len() < 40 || packet[0] >> 4 != 4 {
            return false;
        }
        let tcp = &packet[usize::from(packet[0] & 0x0f) * 4..];
        packet[9] == 6
            && tcp[13] & 0x02 != 0
            && packet[12..16] == from.octets()
            && u16::from_be_bytes([tcp[2], tcp[3]]) == port
    };
    arrivals.ip_packets().into_iter().filter(syn).collect()
}

/// `-n -c 2 -i u200000 <options> TARGET`.
fn args(options: &[&str], target: Ipv4Addr) -> Vec<String> {
    ["-n", "-c", "2", "-i", "u200000"]
        .iter()
        .chain(options)
        .map(|s| s.to_string())
        .chain([target.to_string()])
        .collect()
}

/// hping3's run and then prober's with the same options; and the SYNs that arrived.
fn side_by_side(
    host: &TestHost,
    options: &[&str],
    port: u16,
) -> (Finished, Finished, Vec<Vec<u8>>) {
    let arrivals = Arrivals::open(host);
    let args = args(options, host.addr);
    let hping3 = run(hping3_command(&args), TIMEOUT);
    let prober = run(prober_command(&args), TIMEOUT);
    (hping3, prober, syns(&arrivals, host.host_addr, port))
}

/// Two SYNs carrying `data` bytes to `port` of the standard host, answered by its kernel: SYN-ACKs
/// from the open port, RST-ACKs from the closed one.
fn expected(host: &TestHost, data: usize, port: u16) -> Expected {
    let target = host.addr.to_string();
    let reply = |seq| match port {
        OPEN_PORT => tcp_reply(44, host.addr, port, "SA", seq, VETH_SYNACK_WIN),
        _ => tcp_reply(40, host.addr, port, "RA", seq, 0),
    };
    Expected {
        header: format!(
            "HPING {target} ({} {target}): S set, 40 headers + {data} data bytes",
            host.host_if
        ),
        target,
        replies: (0..2).map(reply).collect(),
        mask_id: false,
        transmitted: 2,
    }
}

/// Checks each SYN's TOS byte and its data (the IP length says where it ends).
fn assert_fields(syns: &[Vec<u8>], tos: u8, data: &[u8]) {
    for syn in syns {
        assert_eq!(syn[1], tos, "TOS of {syn:02x?}");
        let length = usize::from(u16::from_be_bytes([syn[2], syn[3]]));
        assert_eq!(length, 40 + data.len(), "IP length of {syn:02x?}");
        assert_eq!(&syn[40..length], data, "data of {syn:02x?}");
    }
}

/// `-S -p PORT -d 100 <options>` from hping3 and prober: the same lines, and SYNs with `tos` and
/// hping3's 100 bytes of `X`.
fn data_case(port: u16, options: &[&str], tos: u8) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let port_text = port.to_string();
    let all = [&["-S", "-p", &port_text, "-d", "100"], options].concat();
    let (hping3, prober, syns) = side_by_side(&host, &all, port);
    check_run(&hping3, &expected(&host, 100, port));
    compare_with_hping3(&hping3, &prober, false);
    assert_eq!(syns.len(), 4, "two SYNs from each");
    assert_fields(&syns, tos, &[b'X'; 100]);
}

#[test]
fn data_and_tos_to_an_open_port_same_as_hping3() {
    // hping3 reads -o's first two characters as hex: `-o 10` is 0x10 for both.
    data_case(OPEN_PORT, &["-o", "10"], 0x10);
}

#[test]
fn data_to_a_closed_port_is_acknowledged_and_matched() {
    // The RST acknowledges the SYN and its 100 bytes: XDP must take it as the answer.
    data_case(CLOSED_PORT, &[], 0);
}

#[test]
fn file_data_and_header_fields_on_the_wire() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let file = std::env::temp_dir().join(format!("prober-fields-{}", std::process::id()));
    std::fs::write(&file, b"abcdefg").expect("writing the data file");
    let port = CLOSED_PORT.to_string();
    let arrivals = Arrivals::open(&host);
    let options = [
        "-S",
        "-p",
        &port,
        "-d",
        "4",
        "-E",
        file.to_str().unwrap(),
        "-o",
        "0x10",
        "-y",
        "-N",
        "1234",
        "-M",
        "0x01020304",
        "-L",
        "9",
    ];
    let prober = run(prober_command(&args(&options, host.addr)), TIMEOUT);
    std::fs::remove_file(&file).expect("removing the data file");
    check_run(&prober, &expected(&host, 4, CLOSED_PORT));
    let syns = syns(&arrivals, host.host_addr, CLOSED_PORT);
    assert_eq!(syns.len(), 2, "{prober}");
    assert_fields(&syns[..1], 0x10, b"abcd");
    assert_fields(&syns[1..], 0x10, b"efg\0");
    for syn in &syns {
        assert_eq!(u16::from_be_bytes([syn[4], syn[5]]), 1234, "-N");
        assert_eq!(syn[6] & 0x40, 0x40, "-y: DF");
        assert_eq!(&syn[24..28], &[1, 2, 3, 4], "-M");
        assert_eq!(&syn[28..32], &9u32.to_be_bytes(), "-L");
    }
}

#[test]
fn data_beyond_the_mtu_is_refused_before_anything_is_sent() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let arrivals = Arrivals::open(&host);
    let port = OPEN_PORT.to_string();
    let refused = run(
        prober_command(&args(&["-S", "-p", &port, "-d", "1461"], host.addr)),
        TIMEOUT,
    );
    let line = check_error(
        &refused,
        &["-d 1461", "1501 bytes", "MTU 1500", "at most -d 1460"],
        &[],
    );
    assert!(refused.stdout.is_empty(), "no header: {line}");
    assert!(
        syns(&arrivals, host.host_addr, OPEN_PORT).is_empty(),
        "nothing sent"
    );
    let fits = run(
        prober_command(&args(&["-S", "-p", &port, "-d", "1460"], host.addr)),
        TIMEOUT,
    );
    check_run(&fits, &expected(&host, 1460, OPEN_PORT));
}

#[test]
fn icmp_data_same_as_hping3() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let args = args(&["-1", "-d", "100"], host.addr);
    let hping3 = run(hping3_command(&args), TIMEOUT);
    let prober = run(prober_command(&args), TIMEOUT);
    let target = host.addr;
    assert_eq!(
        hping3.stdout_lines()[0],
        format!(
            "HPING {target} ({} {target}): icmp mode set, 28 headers + 100 data bytes",
            host.host_if
        ),
        "{hping3}"
    );
    assert!(
        hping3.stdout_lines()[1].starts_with(&format!("len=128 ip={target} ")),
        "the echo reply carries the data back: {hping3}"
    );
    // The reply's IP id varies.
    compare_with_hping3(&hping3, &prober, true);
}

#[test]
fn tcp_exit_code_same_as_hping3() {
    require_root();
    let host = TestHost::standard().expect("test host");
    // SYN-ACK, RST-ACK, and no reply at all.
    for (port, status) in [(OPEN_PORT, 18), (CLOSED_PORT, 20), (FILTERED_PORT, 0)] {
        let port_text = port.to_string();
        let args = args(&["-S", "-p", &port_text, "--tcpexitcode"], host.addr);
        let hping3 = run(hping3_command(&args), TIMEOUT);
        let prober = run(prober_command(&args), TIMEOUT);
        assert_eq!(hping3.code(), Some(status), "port {port}: {hping3}");
        compare_with_hping3(&hping3, &prober, false);
    }
}

#[test]
fn set_seq_and_ack_replies_are_matched_as_hping3s() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let open = OPEN_PORT.to_string();
    let closed = CLOSED_PORT.to_string();
    // A SYN-ACK acknowledges -M; a RST to an ACK probe carries -L as its sequence number.
    for options in [
        ["-S", "-p", &open, "-M", "4294967295"],
        ["-A", "-p", &closed, "-L", "123456"],
    ] {
        let args = args(&options, host.addr);
        let hping3 = run(hping3_command(&args), TIMEOUT);
        let prober = run(prober_command(&args), TIMEOUT);
        assert_eq!(
            hping3.stdout_lines().len(),
            3,
            "two replies to hping3: {hping3}"
        );
        compare_with_hping3(&hping3, &prober, false);
    }
}

#[test]
fn sweep_probes_carry_the_tos() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let arrivals = Arrivals::open(&host);
    let target = host.addr.to_string();
    let sweep = run(
        prober_command(&["-p", "80,81", "-o", "b8", "--wait", "0.2", &target]),
        TIMEOUT,
    );
    assert_eq!(sweep.code(), Some(0), "{sweep}");
    assert!(
        sweep
            .stdout_lines()
            .iter()
            .any(|row| row.trim_start().starts_with("80 http")),
        "the open port's row: {sweep}"
    );
    let syns = syns(&arrivals, host.host_addr, OPEN_PORT);
    assert_eq!(syns.len(), 1, "{sweep}");
    assert_eq!(syns[0][1], 0xb8, "TOS of {:02x?}", syns[0]);
    assert_eq!(syns[0][6] & 0x40, 0x40, "a sweep's probes carry DF");
}
