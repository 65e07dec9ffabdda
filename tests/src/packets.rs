//! Hand-made packets for tests that play a remote host (forged replies), built independently of the
//! crates prober builds its packets with.

use crate::internet_checksum;
use std::net::Ipv4Addr;

/// An IPv4 SYN-ACK without options from `from:sport` to `to:dport` acknowledging `ack`, both
/// checksums filled in.
pub fn syn_ack(from: Ipv4Addr, to: Ipv4Addr, sport: u16, dport: u16, ack: u32) -> Vec<u8> {
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

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn syn_ack_checksums_verify() {
        let (from, to) = (Ipv4Addr::new(198, 18, 4, 2), Ipv4Addr::new(198, 18, 4, 1));
        let p = syn_ack(from, to, 80, 61440, 7);
        assert_eq!(internet_checksum(&p[..20]), 0);
        let pseudo = [&p[12..20], &[0, 6], &20u16.to_be_bytes(), &p[20..]].concat();
        assert_eq!(internet_checksum(&pseudo), 0);
        assert_eq!(u32::from_be_bytes(p[28..32].try_into().unwrap()), 7);
    }
}
