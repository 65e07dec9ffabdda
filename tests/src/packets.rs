//! Hand-made packets for tests that play a remote host (forged replies, the TAP responder), of
//! either IP family, built independently of the crates prober builds its packets with.

use crate::internet_checksum;
use std::net::IpAddr;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The IP header of a packet: IPv4 (20 bytes, no options) or IPv6 (40 bytes, flow label 0, the
/// next header `protocol`), by the family of `from` and `to`.
#[derive(Clone, Copy, Debug)]
pub struct IpHeader {
    pub from: IpAddr,
    pub to: IpAddr,
    /// IPv4's protocol, IPv6's next header.
    pub protocol: u8,
    /// TTL, or hop limit.
    pub ttl: u8,
    /// IPv4 only.
    pub id: u16,
    /// IPv4 only.
    pub dont_fragment: bool,
}

impl IpHeader {
    /// `from` to `to`, ttl 64, IP id 0 and no DF.
    pub fn new(from: IpAddr, to: IpAddr, protocol: u8) -> IpHeader {
        IpHeader {
            from,
            to,
            protocol,
            ttl: 64,
            id: 0,
            dont_fragment: false,
        }
    }

    /// The header followed by `payload`, its lengths (and IPv4's checksum) filled in.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut packet = match (self.from, self.to) {
            (IpAddr::V4(from), IpAddr::V4(to)) => {
                let mut header = vec![0u8; 20];
                header[0] = 0x45;
                header[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
                header[4..6].copy_from_slice(&self.id.to_be_bytes());
                if self.dont_fragment {
                    header[6] = 0x40;
                }
                header[8] = self.ttl;
                header[9] = self.protocol;
                header[12..16].copy_from_slice(&from.octets());
                header[16..20].copy_from_slice(&to.octets());
                let sum = internet_checksum(&header);
                header[10..12].copy_from_slice(&sum.to_be_bytes());
                header
            }
            (IpAddr::V6(from), IpAddr::V6(to)) => {
                let mut header = vec![0u8; 40];
                header[0] = 0x60;
                header[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
                header[6] = self.protocol;
                header[7] = self.ttl;
                header[8..24].copy_from_slice(&from.octets());
                header[24..40].copy_from_slice(&to.octets());
                header
            }
            (from, to) => panic!("a packet from {from} to {to} mixes the families"),
        };
        packet.extend_from_slice(payload);
        packet
    }
}

/// Where a `protocol` message keeps its checksum.
pub fn checksum_offset(protocol: u8) -> usize {
    match protocol {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        _ => 2, // ICMP, ICMPv6
    }
}

/// Fills in the checksum of `message`, a `protocol` message from `from` to `to`: over the
/// pseudo-header of the family (RFC 793, RFC 768, RFC 8200 section 8.1), except ICMP over IPv4,
/// which has none.
pub fn fill_checksum(from: IpAddr, to: IpAddr, protocol: u8, message: &mut [u8]) {
    let at = checksum_offset(protocol);
    message[at..at + 2].fill(0);
    let sum = if protocol == IPPROTO_ICMP {
        internet_checksum(message)
    } else {
        internet_checksum(
            &[
                pseudo_header(from, to, protocol, message.len()),
                message.to_vec(),
            ]
            .concat(),
        )
    };
    message[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// The pseudo-header a transport checksum covers for a `length`-byte `protocol` message.
pub fn pseudo_header(from: IpAddr, to: IpAddr, protocol: u8, length: usize) -> Vec<u8> {
    match (from, to) {
        (IpAddr::V4(from), IpAddr::V4(to)) => [
            &from.octets()[..],
            &to.octets(),
            &[0, protocol],
            &(length as u16).to_be_bytes(),
        ]
        .concat(),
        (IpAddr::V6(from), IpAddr::V6(to)) => [
            &from.octets()[..],
            &to.octets(),
            &(length as u32).to_be_bytes(),
            &[0, 0, 0, protocol],
        ]
        .concat(),
        (from, to) => panic!("a pseudo-header from {from} to {to} mixes the families"),
    }
}

/// A TCP segment without data.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub source_port: u16,
    pub dest_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Options, a multiple of 4 bytes long.
    pub options: &'a [u8],
}

impl Segment<'_> {
    /// The segment from `from` to `to`, its checksum filled in.
    pub fn bytes(&self, from: IpAddr, to: IpAddr) -> Vec<u8> {
        let len = 20 + self.options.len();
        let mut segment = vec![0u8; len];
        segment[0..2].copy_from_slice(&self.source_port.to_be_bytes());
        segment[2..4].copy_from_slice(&self.dest_port.to_be_bytes());
        segment[4..8].copy_from_slice(&self.seq.to_be_bytes());
        segment[8..12].copy_from_slice(&self.ack.to_be_bytes());
        segment[12] = ((len / 4) as u8) << 4;
        segment[13] = self.flags;
        segment[14..16].copy_from_slice(&self.window.to_be_bytes());
        segment[20..].copy_from_slice(self.options);
        fill_checksum(from, to, IPPROTO_TCP, &mut segment);
        segment
    }
}

/// A SYN-ACK segment without options from `from:sport` to `to:dport` acknowledging `ack`
/// (window 1024), its checksum filled in.
pub fn syn_ack_segment(from: IpAddr, to: IpAddr, sport: u16, dport: u16, ack: u32) -> Vec<u8> {
    Segment {
        source_port: sport,
        dest_port: dport,
        seq: 0x1234_5678,
        ack,
        flags: TCP_SYN | TCP_ACK,
        window: 1024,
        options: &[],
    }
    .bytes(from, to)
}

/// [`syn_ack_segment`] in an IP packet of the addresses' family (ttl 64).
pub fn syn_ack(
    from: impl Into<IpAddr>,
    to: impl Into<IpAddr>,
    sport: u16,
    dport: u16,
    ack: u32,
) -> Vec<u8> {
    let (from, to) = (from.into(), to.into());
    IpHeader::new(from, to, IPPROTO_TCP).packet(&syn_ack_segment(from, to, sport, dport, ack))
}

/// An ICMP error from `from` to `to` of `icmp_type` and `code` (its family's numbers), quoting
/// `quoted`, a packet `to` sent.
pub fn icmp_error_quoting(
    from: IpAddr,
    to: IpAddr,
    (icmp_type, code): (u8, u8),
    quoted: &[u8],
) -> Vec<u8> {
    let protocol = icmp_protocol(from);
    let mut message = [&[icmp_type, code, 0, 0, 0, 0, 0, 0][..], quoted].concat();
    fill_checksum(from, to, protocol, &mut message);
    IpHeader::new(from, to, protocol).packet(&message)
}

/// The protocol of ICMP over `addr`'s family: ICMP, or ICMPv6.
pub fn icmp_protocol(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => IPPROTO_ICMP,
        IpAddr::V6(_) => IPPROTO_ICMPV6,
    }
}

/// The echo reply (type 0, or 129 over IPv6) to `request`, an echo request message of either
/// family: the same identifier, sequence number and data, its checksum filled in.
pub fn echo_reply_message(from: IpAddr, to: IpAddr, request: &[u8]) -> Vec<u8> {
    let mut reply = request.to_vec();
    reply[0] = match from {
        IpAddr::V4(_) => 0,
        IpAddr::V6(_) => 129,
    };
    reply[1] = 0;
    fill_checksum(from, to, icmp_protocol(from), &mut reply);
    reply
}

/// An ICMP error from `from` to `to` of `icmp_type` and `code` (its family's numbers), quoting
/// a SYN from `to:sport` to `target:dport` with sequence number `seq`.
pub fn icmp_error(
    (from, to, target): (IpAddr, IpAddr, IpAddr),
    (icmp_type, code): (u8, u8),
    (sport, dport, seq): (u16, u16, u32),
) -> Vec<u8> {
    let syn = Segment {
        source_port: sport,
        dest_port: dport,
        seq,
        ack: 0,
        flags: TCP_SYN,
        window: 64240,
        options: &[],
    };
    let quoted = IpHeader::new(to, target, IPPROTO_TCP).packet(&syn.bytes(to, target));
    icmp_error_quoting(from, to, (icmp_type, code), &quoted)
}

/// An ICMP error from `from` to `to` of `icmp_type` and `code` (its family's numbers), quoting
/// an echo request from `to` to `target` with identifier `id` and sequence number `seq`.
pub fn icmp_error_about_echo(
    (from, to, target): (IpAddr, IpAddr, IpAddr),
    (icmp_type, code): (u8, u8),
    (id, seq): (u16, u16),
) -> Vec<u8> {
    let request = match target {
        IpAddr::V4(_) => 8,
        IpAddr::V6(_) => 128,
    };
    let [i0, i1] = id.to_be_bytes();
    let [s0, s1] = seq.to_be_bytes();
    let mut echo = [request, 0, 0, 0, i0, i1, s0, s1];
    let protocol = icmp_protocol(target);
    fill_checksum(to, target, protocol, &mut echo);
    let quoted = IpHeader::new(to, target, protocol).packet(&echo);
    icmp_error_quoting(from, to, (icmp_type, code), &quoted)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn syn_ack_checksums_verify_in_either_family() {
        let from: IpAddr = "198.18.4.2".parse().unwrap();
        let to: IpAddr = "198.18.4.1".parse().unwrap();
        let p = syn_ack(from, to, 80, 61440, 7);
        assert_eq!(internet_checksum(&p[..20]), 0);
        let pseudo = [&p[12..20], &[0, 6], &20u16.to_be_bytes(), &p[20..]].concat();
        assert_eq!(internet_checksum(&pseudo), 0);
        assert_eq!(u32::from_be_bytes(p[28..32].try_into().unwrap()), 7);

        let from: IpAddr = "2001:db8:100:400::2".parse().unwrap();
        let to: IpAddr = "2001:db8:100:400::1".parse().unwrap();
        let p = syn_ack(from, to, 80, 61440, 7);
        assert_eq!((p.len(), p[0] >> 4, p[6], p[7]), (60, 6, IPPROTO_TCP, 64));
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 20);
        // RFC 8200's pseudo-header: addresses, a 32-bit length, three zero bytes, next header.
        let pseudo = [&p[8..40], &[0, 0, 0, 20, 0, 0, 0, 6], &p[40..]].concat();
        assert_eq!(internet_checksum(&pseudo), 0);
    }

    #[test]
    fn echo_replies_of_either_family() {
        let request = [8, 0, 0, 0, 0x12, 0x34, 0, 5];
        let (a, b): (IpAddr, IpAddr) =
            ("198.18.4.2".parse().unwrap(), "198.18.4.1".parse().unwrap());
        let reply = echo_reply_message(a, b, &request);
        assert_eq!((reply[0], &reply[4..]), (0, &request[4..]));
        assert_eq!(internet_checksum(&reply), 0);
        let (a, b): (IpAddr, IpAddr) = (
            "2001:db8::2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        );
        let reply = echo_reply_message(a, b, &[128, 0, 0, 0, 0x12, 0x34, 0, 5]);
        assert_eq!(reply[0], 129);
        let pseudo = pseudo_header(a, b, IPPROTO_ICMPV6, reply.len());
        assert_eq!(internet_checksum(&[pseudo, reply].concat()), 0);
    }
}
