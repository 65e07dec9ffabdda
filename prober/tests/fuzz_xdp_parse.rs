//! Fuzzing the XDP programs' packet parsing (`prober_common::wire`, the very code the
//! programs run, compiled for the host): whatever the bytes, IPv4 or IPv6, parsing never reads
//! past the frame and never takes what the kernel would drop; a valid reply built from random
//! fields is accepted, and with any one bit flipped in its IP header, extension headers or
//! segment it is taken only if the kernel would take it too; any UDP datagram only as `udp_rcv` would. Neighbours' answers (ARP
//! replies, neighbour advertisements) alike: any bytes are an answer exactly when the rules
//! here say so, a valid one is taken, and a bit flipped in it refuses it unless no check
//! covers that bit. The kernel's rules and the checksums here are written independently of
//! `wire`'s.

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

/// What the kernel checks, judged independently: an IPv4 or IPv6 packet to our MAC that
/// `kernel_takes_ipv4` or `kernel_takes_ipv6` takes, whose TCP header (data offset 5 to 15
/// words, within the segment) has a checksum over the pseudo-header that is right — or holds
/// just the pseudo-header's sum (a segment whose checksum was left to offload).
fn kernel_takes(frame: &[u8]) -> bool {
    if frame.len() < 14 || frame[..6] != OUR_MAC {
        return false;
    }
    let taken = match frame[12..14] {
        [0x08, 0x00] => kernel_takes_ipv4(&frame[14..]),
        [0x86, 0xdd] => kernel_takes_ipv6(&frame[14..]),
        _ => None,
    };
    let Some((protocol, addresses, segment)) = taken else {
        return false;
    };
    if protocol == 17 {
        return kernel_takes_udp(addresses, segment, frame[12..14] == [0x08, 0x00]);
    }
    if protocol != 6 || segment.len() < 20 {
        return false;
    }
    let data_offset = usize::from(segment[12] >> 4) * 4;
    if data_offset < 20 || data_offset > segment.len() {
        return false;
    }
    let length = (segment.len() as u32).to_be_bytes();
    let pseudo = [addresses, &[0, 0, 0, 6], &length[..]].concat();
    let full = [&pseudo[..], segment].concat();
    let partial = !internet_checksum(&pseudo);
    internet_checksum(&full) == 0 || u16::from_be_bytes([segment[16], segment[17]]) == partial
}

/// `ip_rcv_core`: a header of 20 to 60 bytes whose checksum is right, a total length within
/// the frame, not a fragment. The protocol, the addresses and the segment.
fn kernel_takes_ipv4(ip: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if header_len < 20 || total < header_len || total > ip.len() {
        return None;
    }
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    // Loopback addresses are martians to `ip_route_input` anywhere but on `lo` (whose frames
    // have no MAC, and OUR_MAC is not zero).
    let loopback = ip[12] == 127 || ip[16] == 127;
    if internet_checksum(&ip[..header_len]) != 0 || fragment || loopback {
        return None;
    }
    Some((ip[9], &ip[12..20], &ip[header_len..total]))
}

/// `ipv6_rcv` and the extension headers' handlers, as far as a reply goes: a payload within
/// the frame, a source neither IPv4-mapped nor multicast, a destination not mapped (no one's),
/// hop-by-hop options only first, no fragment; options headers of padding alone (at most 7
/// bytes of it, PadN of zeros: `ip6_parse_tlv`) and routing headers with no segments left of
/// a type not processed (2 to 4) — any other option or routing header the kernel may act on,
/// and is taken for one it drops.
fn kernel_takes_ipv6(ip: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let end = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let mapped = |address: &[u8]| address[..10] == [0; 10] && address[10..12] == [0xff; 2];
    // ::1 is taken only on `lo` (whose frames have no MAC, and OUR_MAC is not zero).
    let loopback = |address: &[u8]| address[..15] == [0; 15] && address[15] == 1;
    let (source, destination) = (&ip[8..24], &ip[24..40]);
    if end > ip.len()
        || mapped(source)
        || source[0] == 0xff
        || mapped(destination)
        || loopback(source)
        || loopback(destination)
    {
        return None;
    }
    let (mut next, mut at, mut first) = (ip[6], 40, true);
    loop {
        match next {
            0 if first => {}
            43 | 60 => {}
            0 | 44 => return None,
            _ => return Some((next, &ip[8..40], &ip[at..end])),
        }
        let header = ip.get(at..at + 8)?;
        let len = (usize::from(header[1]) + 1) * 8;
        let body = ip.get(at + 2..at + len).filter(|_| at + len <= end)?;
        let skipped = if next == 43 {
            header[3] == 0 && !(2..=4).contains(&header[2])
        } else {
            padding_alone(body)
        };
        if !skipped {
            return None;
        }
        (next, at, first) = (header[0], at + len, false);
    }
}

/// Whether a TLV options area is padding the kernel takes: Pad1s and PadNs of zeros, 7 bytes
/// at most in a row.
fn padding_alone(options: &[u8]) -> bool {
    let (mut at, mut run) = (0, 0);
    while at < options.len() {
        let len = match options[at] {
            0 => 1,
            1 => match options.get(at + 1) {
                Some(&n) if options.len() >= at + 2 + usize::from(n) => 2 + usize::from(n),
                _ => return false,
            },
            _ => return false,
        };
        if len > 2 && options[at + 2..at + len].iter().any(|&byte| byte != 0) {
            return false;
        }
        run += len;
        if run > 7 {
            return false;
        }
        at += len;
    }
    true
}

/// `udp_rcv`'s checks of a datagram after the IP header: a length field from 8 to the packet's,
/// the packet trimmed to it, and a checksum over the pseudo-header that is right, or holds just
/// the pseudo-header's sum (left to offload), or over IPv4 is zero (none, RFC 768).
fn kernel_takes_udp(addresses: &[u8], datagram: &[u8], ipv4: bool) -> bool {
    let Some(length) = datagram
        .get(4..6)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
    else {
        return false;
    };
    if length < 8 || length > datagram.len() {
        return false;
    }
    let datagram = &datagram[..length];
    let field = u16::from_be_bytes([datagram[6], datagram[7]]);
    if field == 0 {
        return ipv4;
    }
    let pseudo = [
        addresses,
        &[0, 0, 0, 17],
        &(length as u32).to_be_bytes()[..],
    ]
    .concat();
    internet_checksum(&[&pseudo[..], datagram].concat()) == 0
        || field == !internet_checksum(&pseudo)
}

/// What `wire` makes of a TCP or UDP frame: Some(true) accepted, Some(false) refused, None:
/// not a candidate at all (no IP packet to us, no TCP or UDP header).
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
    // Either family's address in its own form: an IPv6 packet never passes for IPv4.
    let ipv4 = frame[12..14] == [0x08, 0x00];
    assert_eq!(ip.src.ipv4().is_some(), ipv4, "{ip:?}");
    assert_eq!(ip.dst.ipv4().is_some(), ipv4, "{ip:?}");
    if ip.protocol == 17 {
        let datagram = wire::datagram(frame, &ip)?;
        let checksum = Checksum::Udp {
            field: datagram.checksum,
        };
        return Some(wire::accepted(frame, &ip, OUR_MAC, checksum).is_ok());
    }
    if ip.protocol != 6 {
        return None;
    }
    let segment = wire::segment(frame, &ip)?;
    let checksum = Checksum::WithPseudoHeader {
        field: segment.checksum,
    };
    Some(wire::accepted(frame, &ip, OUR_MAC, checksum).is_ok())
}

/// An Ethernet frame to us of `ether_type` around `bytes`.
fn to_us(ether_type: [u8; 2], bytes: &[u8]) -> Vec<u8> {
    [&OUR_MAC[..], &[0x02, 0, 0, 0, 0, 0x02], &ether_type, bytes].concat()
}

#[test]
fn any_bytes_parse_within_the_frame_and_only_as_the_kernel_would_take_them() {
    check!()
        .with_type::<Vec<u8>>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|bytes| {
            // Mostly IP frames to us, so that the fuzzer gets past the first checks.
            let (ipv4, ipv6) = (to_us([0x08, 0x00], bytes), to_us([0x86, 0xdd], bytes));
            for frame in [&ipv4[..], &ipv6[..], &bytes[..]] {
                if wire_takes(frame) == Some(true) {
                    assert!(
                        kernel_takes(frame),
                        "taken, but the kernel would drop it: {frame:02x?}"
                    );
                }
            }
        });
}

/// A SYN-ACK with IP options or IPv6 extension headers, TCP options, payload and Ethernet
/// trailer of random lengths.
#[derive(Clone, Debug, TypeGenerator)]
struct Reply {
    ipv6: bool,
    source: [u8; 16],
    dest: [u8; 16],
    ttl: u8,
    ip_options_words: u8,
    /// IPv6: the extension headers' kinds, hop-by-hop (first only), routing or destination
    /// options by each value's remainder of 3.
    extensions: Vec<u8>,
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
    /// The addresses as the packet carries them: IPv4's four bytes, or IPv6's sixteen made
    /// unicast and not IPv4-mapped (which the kernel drops).
    fn addresses(&self) -> (Vec<u8>, Vec<u8>) {
        if !self.ipv6 {
            // Not 127/8, a martian from anywhere but `lo`.
            let unicast = |address: &[u8; 16]| [&[address[0] % 126 + 1], &address[1..4]].concat();
            return (unicast(&self.source), unicast(&self.dest));
        }
        let unicast = |address: &[u8; 16]| [&[0x20, 0x01][..], &address[2..]].concat();
        (unicast(&self.source), unicast(&self.dest))
    }

    /// How many extension headers the frame has (at most one more than the parser walks).
    fn extension_count(&self) -> usize {
        self.extensions.len().min(wire::MAX_EXTENSION_HEADERS + 1) * usize::from(self.ipv6)
    }

    /// The extension headers, each 8 bytes of padding or a routing header with no segments
    /// left, and the first's next-header value (6 when there are none).
    fn extension_headers(&self) -> (u8, Vec<u8>) {
        let kinds: Vec<u8> = self.extensions[..self.extension_count()]
            .iter()
            .enumerate()
            .map(|(index, kind)| match kind % 3 {
                0 if index == 0 => 0,
                1 => 43,
                _ => 60,
            })
            .collect();
        let mut headers = Vec::new();
        for (index, kind) in kinds.iter().enumerate() {
            let next = kinds.get(index + 1).copied().unwrap_or(6);
            let body: [u8; 6] = if *kind == 43 {
                [0; 6]
            } else {
                [1, 4, 0, 0, 0, 0]
            };
            headers.extend_from_slice(&[next, 0]);
            headers.extend_from_slice(&body);
        }
        (kinds.first().copied().unwrap_or(6), headers)
    }

    fn segment(&self, source: &[u8], dest: &[u8]) -> Vec<u8> {
        let tcp_options = usize::from(self.tcp_option_words % 11) * 4;
        let payload = &self.payload[..self.payload.len().min(1000)];
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
        let length = (tcp.len() as u32).to_be_bytes();
        let pseudo = [source, dest, &[0, 0, 0, 6], &length, &tcp].concat();
        let sum = internet_checksum(&pseudo);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        tcp
    }

    /// The frame, every checksum right.
    fn frame(&self) -> Vec<u8> {
        let (source, dest) = self.addresses();
        let tcp = self.segment(&source, &dest);
        let (ether_type, ip) = if self.ipv6 {
            let (first, extensions) = self.extension_headers();
            let payload = (extensions.len() + tcp.len()) as u16;
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&payload.to_be_bytes());
            ip.extend_from_slice(&[first, self.ttl]);
            ip.extend_from_slice(&source);
            ip.extend_from_slice(&dest);
            ip.extend_from_slice(&extensions);
            ([0x86, 0xdd], ip)
        } else {
            let header_len = 20 + usize::from(self.ip_options_words % 11) * 4;
            let total = (header_len + tcp.len()) as u16;
            let mut ip = vec![(0x40 | (header_len / 4)) as u8, 0];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, self.ttl, 6, 0, 0]);
            ip.extend_from_slice(&source);
            ip.extend_from_slice(&dest);
            ip.resize(header_len, 1); // NOP options
            let sum = internet_checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            ([0x08, 0x00], ip)
        };
        let trailer = &self.trailer[..self.trailer.len().min(64)];
        [
            &OUR_MAC[..],
            &[0x02, 0, 0, 0, 0, 0x02],
            &ether_type,
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
            if reply.extension_count() > wire::MAX_EXTENSION_HEADERS {
                // Past the bound: left to the kernel, neither taken nor refused.
                assert_eq!(wire_takes(&frame), None, "{reply:?}");
                return;
            }
            assert_eq!(
                wire_takes(&frame),
                Some(true),
                "a valid reply refused: {reply:?}"
            );
            let Ok(ip) = wire::parse(&frame[..]) else {
                unreachable!("it was taken")
            };
            let (source, _) = reply.addresses();
            let expected = match <[u8; 4]>::try_from(&source[..]) {
                Ok(ipv4) => IpAddress::from_ipv4(ipv4),
                Err(_) => IpAddress(source.try_into().expect("16 bytes")),
            };
            assert_eq!(ip.src, expected);
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

/// Our address in the neighbour tests: 198.18.4.1 and 2001:db8::1.
const OUR_V4: [u8; 4] = [198, 18, 4, 1];
const OUR_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// One host's MAC: not zero, not multicast.
fn unicast(mac: &[u8]) -> bool {
    mac[0] & 1 == 0 && mac.iter().any(|&byte| byte != 0)
}

/// An ARP reply prober may take as the kernel's `arp_process` would (and more strictly:
/// only for our request, from the host itself): IPv4 over Ethernet, operation 2, to our MAC;
/// target our address and MAC; sender MAC the frame's source and unicast, sender address not
/// 0/8, loopback, multicast or reserved. The sender's address and MAC.
fn kernel_takes_arp(frame: &[u8]) -> Option<(IpAddress, [u8; 6])> {
    let arp = frame.get(14..42)?;
    let (sender_mac, sender, target_mac, target) =
        (&arp[8..14], &arp[14..18], &arp[18..24], &arp[24..28]);
    let taken = frame[..6] == OUR_MAC
        && frame[12..14] == [0x08, 0x06]
        && arp[..8] == [0, 1, 0x08, 0, 6, 4, 0, 2]
        && sender_mac == &frame[6..12]
        && unicast(sender_mac)
        && !matches!(sender[0], 0 | 127 | 224..)
        && target_mac == OUR_MAC
        && target == OUR_V4;
    let sender: [u8; 4] = sender.try_into().ok()?;
    taken.then(|| (IpAddress::from_ipv4(sender), sender_mac.try_into().unwrap()))
}

/// A neighbour advertisement prober may take as `ndisc_rcv` / `ndisc_recv_na` would (and
/// more strictly): an IPv6 packet the kernel takes, ICMPv6 with hop limit 255, a right
/// checksum over the pseudo-header, type 136, code 0, at least 24 bytes, solicited, its
/// target its source, and among its first four options (none of length 0, all within the
/// message) a target link-layer address of 8 bytes whose MAC is the frame's source and
/// unicast. The target and its MAC.
fn kernel_takes_advert(frame: &[u8]) -> Option<(IpAddress, [u8; 6])> {
    if frame.len() < 54 || frame[..6] != OUR_MAC || frame[12..14] != [0x86, 0xdd] {
        return None;
    }
    let (58, addresses, message) = kernel_takes_ipv6(&frame[14..])? else {
        return None;
    };
    let length = (message.len() as u32).to_be_bytes();
    let summed = [addresses, &length[..], &[0, 0, 0, 58], message].concat();
    if frame[21] != 255
        || message.len() < 24
        || message[..2] != [136, 0]
        || internet_checksum(&summed) != 0
        || message[4] & 0x40 == 0
        || message[8..24] != addresses[..16]
    {
        return None;
    }
    let mut at = 24;
    for _ in 0..4 {
        let len = usize::from(*message.get(at + 1)?) * 8;
        if len == 0 || at + len > message.len() {
            return None;
        }
        if message[at] == 2 {
            let mac = &message[at + 2..at + 8];
            let taken = len == 8 && mac == &frame[6..12] && unicast(mac);
            let target: [u8; 16] = message[8..24].try_into().unwrap();
            return taken.then(|| (IpAddress(target), mac.try_into().unwrap()));
        }
        at += len;
    }
    None
}

/// What `wire` makes of a frame as a neighbour's answer: the answer, if it is one.
fn wire_answer(frame: &[u8]) -> Option<(IpAddress, [u8; 6])> {
    let mut answer = wire::NeighbourAnswer::default();
    let ours = IpAddress::from_ipv4(OUR_V4);
    let neighbourly = match wire::parse(frame) {
        Ok(ip) => wire::neighbour_advert(frame, &ip, OUR_MAC, &mut answer),
        Err(_) => wire::arp_reply(frame, &ours, OUR_MAC, &mut answer),
    };
    (neighbourly == wire::Neighbourly::Answer).then_some((answer.addr, answer.mac))
}

#[test]
fn any_bytes_are_a_neighbours_answer_only_as_the_kernel_would_take_it() {
    check!()
        .with_type::<Vec<u8>>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|bytes| {
            let (arp, ipv6) = (to_us([0x08, 0x06], bytes), to_us([0x86, 0xdd], bytes));
            for frame in [&arp[..], &ipv6[..], &bytes[..]] {
                // Frames shorter than a read give no answer rather than a read past the end.
                let expected = kernel_takes_arp(frame).or_else(|| kernel_takes_advert(frame));
                assert_eq!(wire_answer(frame), expected, "{frame:02x?}");
            }
        });
}

/// An ARP reply or solicited neighbour advertisement of random fields, options before its
/// target link-layer address, and trailer.
#[derive(Clone, Debug, TypeGenerator)]
struct NeighbourReply {
    ipv6: bool,
    address: [u8; 16],
    mac: [u8; 6],
    /// IPv6: nonce options before the link-layer address (at most 3).
    options_before: u8,
    trailer: Vec<u8>,
    flip: u16,
}

impl NeighbourReply {
    fn mac(&self) -> [u8; 6] {
        let mut mac = self.mac;
        mac[0] = (mac[0] & 0xfc) | 0x02; // unicast, locally administered: never zero
        mac
    }

    fn frame(&self) -> Vec<u8> {
        let mac = self.mac();
        let head = [&OUR_MAC[..], &mac].concat();
        let trailer = &self.trailer[..self.trailer.len().min(64)];
        if !self.ipv6 {
            let sender = [self.address[0] % 126 + 1, self.address[1], 4, 2];
            let arp = [
                &[0, 1, 0x08, 0, 6, 4, 0, 2][..],
                &mac,
                &sender,
                &OUR_MAC,
                &OUR_V4,
            ]
            .concat();
            return [&head[..], &[0x08, 0x06], &arp, trailer].concat();
        }
        let source = [&[0x20, 0x01][..], &self.address[2..]].concat();
        let mut message = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
        message.extend_from_slice(&source);
        for _ in 0..self.options_before % 4 {
            message.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        }
        message.extend_from_slice(&[2, 1]);
        message.extend_from_slice(&mac);
        let length = (message.len() as u32).to_be_bytes();
        let sum =
            internet_checksum(&[&source[..], &OUR_V6, &length, &[0, 0, 0, 58], &message].concat());
        message[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(message.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[58, 255]);
        ip.extend_from_slice(&source);
        ip.extend_from_slice(&OUR_V6);
        [&head[..], &[0x86, 0xdd], &ip, &message, trailer].concat()
    }

    /// Where the answer ends (the trailer follows).
    fn end(&self) -> usize {
        match self.ipv6 {
            false => 42,
            true => 54 + 32 + usize::from(self.options_before % 4) * 8,
        }
    }
}

#[test]
fn a_valid_neighbour_answer_is_taken_and_a_bit_flipped_in_it_is_refused() {
    check!()
        .with_type::<NeighbourReply>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|reply| {
            let frame = reply.frame();
            let taken = wire_answer(&frame).expect("a valid answer refused");
            assert_eq!(taken.1, reply.mac());
            assert_eq!(
                Some(taken),
                kernel_takes_arp(&frame).or_else(|| kernel_takes_advert(&frame))
            );
            let bit = usize::from(reply.flip) % (reply.end() * 8);
            let mut flipped = frame.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let expected = kernel_takes_arp(&flipped).or_else(|| kernel_takes_advert(&flipped));
            assert_eq!(wire_answer(&flipped), expected, "bit {bit}: {reply:?}");
            // Only bits no check covers may change and still be taken: ARP's sender address
            // (an answer for another address, then), IPv6's traffic class and flow label.
            // (Bits are numbered from each byte's lowest: byte 14's top four are the version.)
            let unchecked = match reply.ipv6 {
                false => (28 * 8..32 * 8).contains(&bit),
                true => (14 * 8..18 * 8).contains(&bit) && !(14 * 8 + 4..15 * 8).contains(&bit),
            };
            if !unchecked {
                assert_eq!(wire_answer(&flipped), None, "bit {bit} flipped: {reply:?}");
            }
        });
}

/// A quote's source, destination, protocol, ports and sequence number.
type Quote = ([u8; 16], [u8; 16], u8, u16, u16, u32);

/// An ICMP error's quote as the kernel reads it (`icmp_unreach` and `icmpv6_notify`), judged
/// independently of `wire`: the message's type and code among the errors prober takes, a quoted
/// IP header of the message's own family (IPv4's of at least 5 words) and 8 transport bytes
/// after it within the message. The quoted source, destination, protocol, ports and sequence
/// number.
fn kernel_quote(ipv4: bool, message: &[u8]) -> Option<Quote> {
    let (kind, code) = (*message.first()?, *message.get(1)?);
    let taken = match ipv4 {
        true => (kind == 3 && matches!(code, 0..=3 | 9 | 10 | 13)) || (kind == 11 && code == 0),
        false => (kind == 1 && matches!(code, 0 | 1 | 3 | 4)) || (kind == 3 && code == 0),
    };
    if !taken {
        return None;
    }
    let quote = message.get(8..)?;
    let (src, dst, protocol, header_len) = if ipv4 {
        let header_len = usize::from(*quote.first()? & 0x0f) * 4;
        if quote[0] >> 4 != 4 || header_len < 20 || quote.len() < 20 {
            return None;
        }
        let mapped = |at: usize| IpAddress::from_ipv4(quote[at..at + 4].try_into().unwrap()).0;
        (mapped(12), mapped(16), quote[9], header_len)
    } else {
        if quote.len() < 40 || quote[0] >> 4 != 6 {
            return None;
        }
        let at = |from: usize| <[u8; 16]>::try_from(&quote[from..from + 16]).unwrap();
        (at(8), at(24), quote[6], 40)
    };
    let transport = quote.get(header_len..header_len + 8)?;
    let word = |at: usize| u16::from_be_bytes([transport[at], transport[at + 1]]);
    let seq = u32::from_be_bytes(transport[4..8].try_into().unwrap());
    Some((src, dst, protocol, word(0), word(2), seq))
}

#[test]
fn any_icmp_message_is_an_error_with_a_quote_only_as_the_kernel_reads_it() {
    check!()
        .with_type::<(bool, bool, Vec<u8>)>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|(ipv4, shaped, message)| {
            // Half the inputs shaped like an error prober takes, quoting its family's header,
            // so that random bytes get past the type and version often.
            let mut message = message.clone();
            if *shaped && message.len() > 8 {
                let (kind, version) = if *ipv4 { (3, 0x45) } else { (1, 0x60) };
                message[0] = kind;
                message[1] %= 5;
                message[8] = version | (message[8] & 0x0f);
            }
            let message = &message;
            // A valid IP packet of the family's ICMP around the message, so that every input
            // reaches the quote.
            let (ether_type, header) = if *ipv4 {
                let len = ((20 + message.len()) as u16).to_be_bytes();
                let mut header = vec![
                    0x45, 0, len[0], len[1], 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 0, 9, 198, 18, 0, 1,
                ];
                let sum = internet_checksum(&header);
                header[10..12].copy_from_slice(&sum.to_be_bytes());
                ([0x08, 0x00], header)
            } else {
                let len = (message.len() as u16).to_be_bytes();
                let mut header = vec![0x60, 0, 0, 0, len[0], len[1], 58, 64];
                header.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain(&[0; 11]).chain(&[9]));
                header.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain(&[0; 11]).chain(&[1]));
                ([0x86, 0xdd], header)
            };
            let frame = to_us(ether_type, &[&header[..], message].concat());
            let Ok(ip) = wire::parse(&frame[..]) else {
                return; // longer than an IPv6 payload length holds
            };
            let mut quoted = wire::QuotedProbe::default();
            let quoting = wire::icmp_error(&frame[..], &ip, &mut quoted);
            let expected = kernel_quote(*ipv4, message);
            match quoting {
                wire::Quoting::Error(_) => {
                    let read = (
                        quoted.src.0,
                        quoted.dst.0,
                        quoted.protocol,
                        quoted.source_port,
                        quoted.dest_port,
                        quoted.seq,
                    );
                    assert_eq!(Some(read), expected, "{message:02x?}");
                    // An echo request is told by its own family's ICMP, its type and code 0;
                    // its identifier and sequence number are the quote's bytes 4 to 7.
                    let (version, protocol, request) = match ipv4 {
                        true => (wire::IpVersion::V4, 1, 8u8),
                        false => (wire::IpVersion::V6, 58, 128),
                    };
                    let (.., kernel_protocol, type_and_code, _, kernel_seq) = expected.unwrap();
                    assert_eq!(
                        quoted.is_echo_request(version),
                        kernel_protocol == protocol && type_and_code == u16::from(request) << 8,
                        "{message:02x?}"
                    );
                    assert_eq!(
                        (quoted.echo_id(), quoted.echo_seq()),
                        ((kernel_seq >> 16) as u16, kernel_seq as u16),
                    );
                    assert!(wire::is_icmp_error_type(&frame[..], &ip));
                }
                _ => assert_eq!(expected, None, "{quoting:?}: {message:02x?}"),
            }
        });
}
