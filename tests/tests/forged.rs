//! Reply-shaped packets that answer no probe: the XDP program must not report them as
//! replies, and must count them as unmatched (shown by `-V`). The forged SYN-ACKs come from
//! a raw socket inside the test host's namespace, so they cross the same veth real replies do.

use std::{net::Ipv4Addr, time::Duration};

use prober_tests::{
    internet_checksum, prober_command, proc::Proc, require_root, TestHost, CLOSED_PORT,
};

const FORGED: usize = 5;
const BASE_PORT: u16 = 40000;

/// A SYN-ACK from `from:sport` to `to:dport` acknowledging `ack`, checksums filled in.
fn syn_ack(from: Ipv4Addr, to: Ipv4Addr, sport: u16, dport: u16, ack: u32) -> Vec<u8> {
    let mut packet = vec![0u8; 40];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&40u16.to_be_bytes());
    packet[8] = 64;
    packet[9] = 6;
    packet[12..16].copy_from_slice(&from.octets());
    packet[16..20].copy_from_slice(&to.octets());
    let ip_sum = internet_checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let tcp = &mut packet[20..];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x12; // SYN + ACK
    tcp[14..16].copy_from_slice(&1024u16.to_be_bytes());
    let pseudo = [
        &from.octets()[..],
        &to.octets(),
        &[0, 6],
        &20u16.to_be_bytes(),
        &packet[20..],
    ]
    .concat();
    let tcp_sum = internet_checksum(&pseudo);
    packet[36..38].copy_from_slice(&tcp_sum.to_be_bytes());
    packet
}

/// Sends `packets` from inside the host's namespace through a raw IP socket.
fn send_from_namespace(host: &TestHost, packets: Vec<Vec<u8>>) {
    let destination = host.host_addr;
    host.in_ns(move || {
        // SAFETY: plain socket/sendto/close calls on buffers that outlive them.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let address = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(destination.octets()),
                },
                sin_zero: [0; 8],
            };
            for packet in &packets {
                let sent = libc::sendto(
                    fd,
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&address as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
                assert_eq!(
                    sent,
                    packet.len() as isize,
                    "sendto: {}",
                    std::io::Error::last_os_error()
                );
            }
            libc::close(fd);
        }
    })
    .expect("entering the test namespace");
}

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
            syn_ack(
                host.addr,
                host.host_addr,
                CLOSED_PORT,
                BASE_PORT + i as u16 % 3,
                7,
            )
        })
        .collect();
    send_from_namespace(&host, forged);

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
