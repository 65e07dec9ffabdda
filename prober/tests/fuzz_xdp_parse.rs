//! Fuzzing the XDP programs' packet parsing (`prober_common::wire`, the very code the
//! programs run, compiled for the host): whatever the bytes, parsing never reads past the
//! frame and never takes what the kernel would drop; a valid reply built from random fields
//! is accepted, and any one bit flipped in its IP header or segment makes it refused. The
//! checksums here are computed independently of `wire`'s.

mod fuzzing;

use bolero::{check, TypeGenerator};
use prober_common::{
    wire::{self, Checksum},
    IpAddress,
};

const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// RFC 1071, written for this test alone: 0 over a region carrying a correct checksum.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What the kernel checks, judged independently: IPv4, a header of 20 to 60 bytes whose
/// checksum is right, a total length within the frame, and a TCP header (data offset 5 to
/// 15 words, within the segment) whose checksum over the pseudo-header is right — or holds
/// just the pseudo-header's sum (a segment whose checksum was left to offload).
fn kernel_takes(frame: &[u8]) -> bool {
    let Some(ip) = frame.get(14..) else {
        return false;
    };
    if frame[12..14] != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 {
        return false;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if header_len < 20 || total < header_len || total > ip.len() {
        return false;
    }
    if internet_checksum(&ip[..header_len]) != 0 || frame[..6] != OUR_MAC || ip[9] != 6 {
        return false;
    }
    let segment = &ip[header_len..total];
    if segment.len() < 20 {
        return false;
    }
    let data_offset = usize::from(segment[12] >> 4) * 4;
    if data_offset < 20 || data_offset > segment.len() {
        return false;
    }
    let length = (segment.len() as u16).to_be_bytes();
    let pseudo = [&ip[12..20], &[0, 6], &length[..]].concat();
    let full = [&pseudo[..], segment].concat();
    let partial = !internet_checksum(&pseudo);
    internet_checksum(&full) == 0 || u16::from_be_bytes([segment[16], segment[17]]) == partial
}

/// What `wire` makes of a TCP frame: Some(true) accepted, Some(false) refused, None: not a
/// candidate at all (no IP packet to us, no TCP header).
fn wire_takes(frame: &[u8]) -> Option<bool> {
    let Ok(ip) = wire::parse(frame) else {
        return None;
    };
    // Whatever parses lies within the frame.
    assert!(
        ip.l4_offset >= 34 && ip.l4_offset + ip.l4_len <= frame.len(),
        "{ip:?}"
    );
    assert_eq!(usize::from(ip.len), ip.l4_offset - ip.l3_offset + ip.l4_len);
    if ip.protocol != 6 {
        return None;
    }
    let segment = wire::segment(frame, &ip)?;
    let checksum = Checksum::WithPseudoHeader {
        field: segment.checksum,
    };
    Some(wire::accepted(frame, &ip, OUR_MAC, checksum).is_ok())
}

#[test]
fn any_bytes_parse_within_the_frame_and_only_as_the_kernel_would_take_them() {
    check!()
        .with_type::<Vec<u8>>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|bytes| {
            // Mostly IPv4 frames to us, so that the fuzzer gets past the first checks.
            let mut frame = [&OUR_MAC[..], &[0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00]].concat();
            frame.extend_from_slice(bytes);
            for frame in [&frame[..], &bytes[..]] {
                if wire_takes(frame) == Some(true) {
                    assert!(
                        kernel_takes(frame),
                        "taken, but the kernel would drop it: {frame:02x?}"
                    );
                }
            }
        });
}

/// A SYN-ACK with options, payload and Ethernet trailer of random lengths.
#[derive(Clone, Debug, TypeGenerator)]
struct Reply {
    source: [u8; 4],
    dest: [u8; 4],
    ttl: u8,
    ip_options_words: u8,
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    tcp_option_words: u8,
    payload: Vec<u8>,
    trailer: Vec<u8>,
    flip: u16,
}

impl Reply {
    /// The frame, every checksum right.
    fn frame(&self) -> Vec<u8> {
        let ip_options = usize::from(self.ip_options_words % 11) * 4;
        let tcp_options = usize::from(self.tcp_option_words % 11) * 4;
        let payload = &self.payload[..self.payload.len().min(1000)];
        let header_len = 20 + ip_options;
        let segment_len = 20 + tcp_options + payload.len();
        let total = (header_len + segment_len) as u16;
        let mut ip = vec![(0x40 | (header_len / 4)) as u8, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, self.ttl, 6, 0, 0]);
        ip.extend_from_slice(&self.source);
        ip.extend_from_slice(&self.dest);
        ip.resize(header_len, 1); // NOP options
        let sum = internet_checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&self.ports.0.to_be_bytes());
        tcp.extend_from_slice(&self.ports.1.to_be_bytes());
        tcp.extend_from_slice(&self.seq.to_be_bytes());
        tcp.extend_from_slice(&self.ack.to_be_bytes());
        tcp.push((((20 + tcp_options) / 4) << 4) as u8);
        tcp.push(self.flags);
        tcp.extend_from_slice(&self.window.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.resize(20 + tcp_options, 1);
        tcp.extend_from_slice(payload);
        let length = (tcp.len() as u16).to_be_bytes();
        let pseudo = [&self.source[..], &self.dest, &[0, 6], &length, &tcp].concat();
        let sum = internet_checksum(&pseudo);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        let trailer = &self.trailer[..self.trailer.len().min(64)];
        [
            &OUR_MAC[..],
            &[0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00],
            &ip,
            &tcp,
            trailer,
        ]
        .concat()
    }
}

#[test]
fn a_valid_reply_is_taken_and_any_bit_flipped_in_it_is_refused() {
    check!()
        .with_type::<Reply>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|reply| {
            let frame = reply.frame();
            assert!(kernel_takes(&frame), "the harness built a bad frame");
            assert_eq!(
                wire_takes(&frame),
                Some(true),
                "a valid reply refused: {reply:?}"
            );
            let Ok(ip) = wire::parse(&frame[..]) else {
                unreachable!("it was taken")
            };
            assert_eq!(ip.src, IpAddress::from_ipv4(reply.source));
            // One bit anywhere from the IP header to the segment's end (not the trailer).
            let end = ip.l4_offset + ip.l4_len;
            let bit = usize::from(reply.flip) % ((end - 14) * 8);
            let mut flipped = frame.clone();
            flipped[14 + bit / 8] ^= 1 << (bit % 8);
            if wire_takes(&flipped) == Some(true) {
                // Only the checksum field turned into the pseudo-header's sum is let through,
                // as the kernel lets it through from a local sender.
                assert!(
                    kernel_takes(&flipped),
                    "bit {bit} flipped, still taken: {reply:?}"
                );
            }
        });
}
