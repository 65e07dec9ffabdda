//! Reading frames as the kernel's receive path would judge them, in one place that the XDP
//! program and the host's tests and fuzzers compile alike: a reply prober counts must be one
//! the kernel would have accepted (`ip_rcv_core`, `ipv6_rcv`, `tcp_v4_rcv`, `tcp_v6_rcv`,
//! `icmp_rcv`, `icmpv6_rcv`), or a forged packet the host drops could decide a result.
//!
//! [`parse`] branches once on the ethertype, does the cheap structural checks every packet
//! gets (the ones that make the header fields safe to use) and walks IPv6's extension headers;
//! both families then meet in one [`IpPacket`]. [`accepted`] does the costlier checks — MAC,
//! checksums — that only a packet a kind has picked out as a candidate reply gets.
use crate::{trace::Reason, IpAddress};

/// Bytes of a frame, from its Ethernet header on: packet memory in the programs, a slice on
/// the host.
pub trait Frame {
    /// Whether the frame is at least `len` bytes long.
    fn holds(&self, len: usize) -> bool;
    /// A copy of the `N` bytes at `offset`, or None when the frame is shorter.
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
    /// [`Frame::read`] straight into `out` (which the programs keep in memory, where a value
    /// returned would be taken apart into registers and spilled); false, and `out` unspecified,
    /// when the frame is shorter.
    fn read_into<const N: usize>(&self, offset: usize, out: &mut [u8; N]) -> bool {
        self.read(offset).map(|bytes| *out = bytes).is_some()
    }
    /// [`sum_words`] over this frame (the programs call it as a function of its own, which the
    /// verifier checks once rather than for every way a packet can reach it).
    fn sum(&self, offset: usize, len: usize, seed: u32) -> Option<u32> {
        sum_words(self, offset, len, seed)
    }
}

impl Frame for [u8] {
    fn holds(&self, len: usize) -> bool {
        len <= self.len()
    }

    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.get(offset..offset.checked_add(N)?)?.try_into().ok()
    }
}

pub const ETH_HEADER_LEN: usize = 14;
const ETHER_TYPE_OFFSET: usize = 12;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;
/// IPv6 extension headers [`parse`] skips before it gives up on finding the transport header.
/// Replies carry none (a router may add hop-by-hop options); a longer chain is left to the
/// host's stack, unread and uncounted.
pub const MAX_EXTENSION_HEADERS: usize = 4;
/// The furthest a transport header may start from the frame's start: past any IPv4 header's
/// end (74) and any IPv6 extension chain a reply has cause to carry. The programs' checksum
/// function takes no offset beyond it; an IPv6 packet whose transport header starts later is
/// left alone, as a longer chain is.
pub const MAX_L4_OFFSET: usize = 512;
const NEXT_HEADER_HOP_BY_HOP: u8 = 0;
const NEXT_HEADER_ROUTING: u8 = 43;
const NEXT_HEADER_FRAGMENT: u8 = 44;
const NEXT_HEADER_DESTINATION: u8 = 60;
const IP_MORE_FRAGMENTS_AND_OFFSET: u16 = 0x3fff;
const IP_MORE_FRAGMENTS: u16 = 0x2000;
pub const TCP_HEADER_LEN: usize = 20;
pub const ICMP_ECHO_LEN: usize = 8;
pub const UDP_HEADER_LEN: usize = 8;
/// The longest transport message whose checksum is verified: a full 1500-byte IPv4 packet's.
/// Replies (SYN-ACKs, RSTs, echo replies to our small requests) are far shorter; a longer
/// one is passed to the host's stack unmatched, and counted.
pub const MAX_CHECKED_L4_LEN: usize = 1480;

/// Which IP a packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

/// An IP packet's header fields, whatever its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub version: IpVersion,
    pub src: IpAddress,
    pub dst: IpAddress,
    /// The transport protocol: IPv4's protocol field, IPv6's last next header.
    pub protocol: u8,
    /// Where the IP header starts and the transport header starts, from the start of the frame.
    pub l3_offset: usize,
    pub l4_offset: usize,
    /// The transport message's length, as the IP header states it (what follows is trailer).
    pub l4_len: usize,
    /// The whole IP packet's length as its header states it (IPv6: 40 + the payload length,
    /// at most 65 535).
    pub len: u16,
    /// IPv4's TTL or IPv6's hop limit.
    pub ttl: u8,
    /// IPv4's TOS byte or IPv6's traffic class.
    pub tos: u8,
    /// IPv4's identification, flags and fragment offset (0 for IPv6).
    pub id: u16,
    pub frag: u16,
    /// IPv6's flow label (0 for IPv4).
    pub flow_label: u32,
    /// The frame's destination MAC address.
    pub to_mac: [u8; 6],
    /// The unfolded sum of the fixed IPv4 header's words, from the read that parsed it: the
    /// header checksum's check needs only the options' words more (0 for IPv6, which has none).
    pub header_sum: u32,
    /// The unfolded sum of the two addresses' words: the part of a pseudo-header that comes
    /// from the packet (a rewritten reply with the addresses swapped has the same).
    pub address_sum: u32,
    /// The frame's first [`HEAD_LEN`] bytes, or [`SHORT_HEAD_LEN`] when it is shorter
    /// (`head_len` says which): what [`parse`] read in one piece.
    pub head: [u8; HEAD_LEN],
    pub head_len: usize,
}

impl IpPacket {
    /// Where a parser starts: every field zero but the Ethernet header's length.
    pub const EMPTY: IpPacket = IpPacket {
        version: IpVersion::V4,
        src: IpAddress([0; 16]),
        dst: IpAddress([0; 16]),
        protocol: 0,
        l3_offset: ETH_HEADER_LEN,
        l4_offset: 0,
        l4_len: 0,
        len: 0,
        ttl: 0,
        tos: 0,
        id: 0,
        frag: 0,
        flow_label: 0,
        to_mac: [0; 6],
        header_sum: 0,
        address_sum: 0,
        head: [0; HEAD_LEN],
        head_len: 0,
    };

    /// The IP header is the fixed one alone: no IPv4 options, no IPv6 extension headers (a
    /// rewritten packet can reuse it as it is).
    #[inline(always)]
    pub fn plain_header(&self) -> bool {
        self.l4_offset == self.l3_offset + self.fixed_header_len()
    }

    /// The transport message's first 20 bytes (a TCP header without options), when the head
    /// holds them: behind a fixed IPv4 header.
    #[inline(always)]
    pub fn transport_head(&self) -> Option<&[u8; TCP_HEADER_LEN]> {
        let in_head = self.head_len == HEAD_LEN
            && self.l4_offset == SHORT_HEAD_LEN
            && self.l4_len >= TCP_HEADER_LEN;
        if in_head {
            self.head.last_chunk()
        } else {
            None
        }
    }

    #[inline(always)]
    fn fixed_header_len(&self) -> usize {
        match self.version {
            IpVersion::V4 => IPV4_HEADER_LEN,
            IpVersion::V6 => IPV6_HEADER_LEN,
        }
    }

    /// The ICMP of this packet's family: ICMP for IPv4, ICMPv6 for IPv6.
    #[inline(always)]
    pub fn icmp_protocol(&self) -> u8 {
        match self.version {
            IpVersion::V4 => crate::IPPROTO_ICMP,
            IpVersion::V6 => crate::IPPROTO_ICMPV6,
        }
    }
}

/// Why [`parse`] found no packet for prober in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPacket {
    /// Not IP, a fragment (whose payload is no transport header; no reply is fragmented) but
    /// an IPv4 packet's first, or an IPv6 packet whose extension headers go on past
    /// [`MAX_EXTENSION_HEADERS`]: nothing for prober.
    Other,
    /// The first fragment of an IPv4 packet, its header fields parsed as a whole packet's
    /// (`l4_len` is the fragment's share): only the start of its transport header is there.
    /// Replies are never taken from one; a one-target probe's (-f) is, at TC egress, by
    /// that start ([`segment_start`], [`echo`]).
    FirstFragment,
    /// An IP frame whose headers the kernel would drop, with its destination when the fixed
    /// header was there to read (who it was aimed at decides whether prober counts it).
    Malformed(Option<IpAddress>),
}

/// The IP header of an Ethernet frame, IPv4 or IPv6.
#[inline(always)]
pub fn parse(frame: &(impl Frame + ?Sized)) -> Result<IpPacket, NoPacket> {
    let mut packet = IpPacket::EMPTY;
    parse_into(frame, &mut packet).map(|()| packet)
}

/// What every frame's parse reads first, in one piece: the Ethernet header, a fixed IPv4
/// header and a TCP header without options (a whole sweep probe, or a reply but for its
/// options), or an IPv6 header's first 40 bytes. Each read of packet memory is a helper call
/// in the programs, and at TC egress one that walks the skb's fragments (a TX-ring frame's IP
/// and TCP headers are in one): one read instead of four (ethertype, IP header, MAC, TCP
/// header).
pub const HEAD_LEN: usize = ETH_HEADER_LEN + IPV4_HEADER_LEN + TCP_HEADER_LEN;
/// What is read of a frame shorter than [`HEAD_LEN`] (an ICMP echo, an ARP message): enough
/// for the Ethernet header and a fixed IPv4 header.
pub const SHORT_HEAD_LEN: usize = ETH_HEADER_LEN + IPV4_HEADER_LEN;

/// [`parse`] into `packet`, which the programs keep off their 512-byte stack (the frame's
/// head is read straight into it).
#[inline(always)]
pub fn parse_into(frame: &(impl Frame + ?Sized), packet: &mut IpPacket) -> Result<(), NoPacket> {
    *packet = IpPacket::EMPTY;
    packet.head_len = if frame.read_into(0, &mut packet.head) {
        HEAD_LEN
    } else if packet
        .head
        .first_chunk_mut::<SHORT_HEAD_LEN>()
        .is_some_and(|short| frame.read_into(0, short))
    {
        SHORT_HEAD_LEN
    } else {
        // Too short for either family's IP header.
        return match frame.read::<2>(ETHER_TYPE_OFFSET).map(u16::from_be_bytes) {
            Some(ETH_P_IP | ETH_P_IPV6) => Err(NoPacket::Malformed(None)),
            _ => Err(NoPacket::Other),
        };
    };
    let head = &packet.head;
    match u16::from_be_bytes([head[ETHER_TYPE_OFFSET], head[ETHER_TYPE_OFFSET + 1]]) {
        ETH_P_IP => parse_ipv4(frame, packet),
        ETH_P_IPV6 => parse_ipv6(frame, packet),
        _ => Err(NoPacket::Other),
    }
}

/// The destination MAC of the frame whose head is `head`.
#[inline(always)]
fn mac_of(head: &[u8; HEAD_LEN]) -> [u8; 6] {
    [head[0], head[1], head[2], head[3], head[4], head[5]]
}

/// Checked for what `ip_rcv_core` drops: another version, a header shorter than 20 bytes, a
/// total length shorter than the header or longer than the frame. The header checksum is left
/// to [`accepted`].
#[inline(always)]
fn parse_ipv4(frame: &(impl Frame + ?Sized), packet: &mut IpPacket) -> Result<(), NoPacket> {
    let head = &packet.head;
    let ip = |at: usize| head[ETH_HEADER_LEN + at];
    let dst = IpAddress::from_ipv4([ip(16), ip(17), ip(18), ip(19)]);
    let header_len = usize::from(ip(0) & 0x0f) * 4;
    let len = u16::from_be_bytes([ip(2), ip(3)]);
    if ip(0) >> 4 != 4
        || header_len < IPV4_HEADER_LEN
        || usize::from(len) < header_len
        || !frame.holds(ETH_HEADER_LEN + usize::from(len))
    {
        return Err(NoPacket::Malformed(Some(dst)));
    }
    let frag = u16::from_be_bytes([ip(6), ip(7)]);
    let first_fragment = frag & IP_MORE_FRAGMENTS_AND_OFFSET == IP_MORE_FRAGMENTS;
    if frag & IP_MORE_FRAGMENTS_AND_OFFSET != 0 && !first_fragment {
        return Err(NoPacket::Other);
    }
    packet.to_mac = mac_of(head);
    packet.src = IpAddress::from_ipv4([ip(12), ip(13), ip(14), ip(15)]);
    packet.dst = dst;
    packet.protocol = ip(9);
    packet.l4_offset = ETH_HEADER_LEN + header_len;
    packet.l4_len = usize::from(len) - header_len;
    packet.len = len;
    packet.ttl = ip(8);
    packet.tos = ip(1);
    packet.id = u16::from_be_bytes([ip(4), ip(5)]);
    packet.frag = frag;
    packet.header_sum = words_in(head, ETH_HEADER_LEN, SHORT_HEAD_LEN);
    packet.address_sum = words_in(head, ETH_HEADER_LEN + 12, SHORT_HEAD_LEN);
    if first_fragment {
        return Err(NoPacket::FirstFragment);
    }
    Ok(())
}

/// Checked for what `ipv6_rcv` drops: another version, a payload length beyond the frame, an
/// IPv4-mapped or multicast source (RFC 4291 2.5.5.2: the kernel's dual stack must not take a
/// mapped one), a hop-by-hop header anywhere but first, an extension header longer than the
/// payload. Then the extension headers are skipped, at most [`MAX_EXTENSION_HEADERS`] of them
/// and only those the kernel skips too, to the transport header; a fragment header ends the
/// walk (see [`NoPacket::Other`]).
///
/// The addresses and the MAC are copied from the head straight into the packet: values held
/// across the helper calls of the walk would be spilled, each byte as a word, and the programs
/// have 512 bytes of stack in all.
#[inline(always)]
fn parse_ipv6(frame: &(impl Frame + ?Sized), packet: &mut IpPacket) -> Result<(), NoPacket> {
    packet.version = IpVersion::V6;
    let ip = |at: usize| packet.head[ETH_HEADER_LEN + at];
    let [first, second, third, fourth, len0, len1, first_header, hop_limit] =
        [ip(0), ip(1), ip(2), ip(3), ip(4), ip(5), ip(6), ip(7)];
    // The fixed header is the head's last 40 bytes; a frame too short for it has no head.
    if packet.head_len != HEAD_LEN {
        return Err(NoPacket::Malformed(None));
    }
    let (source, destination) = (ETH_HEADER_LEN + 8, ETH_HEADER_LEN + 24);
    packet
        .src
        .0
        .copy_from_slice(&packet.head[source..destination]);
    packet.dst.0.copy_from_slice(&packet.head[destination..]);
    let dst = packet.dst;
    // A mapped destination would pass for the IPv4 address it maps: never ours.
    if dst.ipv4().is_some() {
        return Err(NoPacket::Malformed(None));
    }
    let payload_len = usize::from(u16::from_be_bytes([len0, len1]));
    let end = ETH_HEADER_LEN + IPV6_HEADER_LEN + payload_len;
    // ipv6_rcv drops multicast sources too.
    let multicast_source = packet.src.0[0] == 0xff;
    if first >> 4 != 6 || !frame.holds(end) || packet.src.ipv4().is_some() || multicast_source {
        return Err(NoPacket::Malformed(Some(dst)));
    }
    packet.ttl = hop_limit;
    packet.tos = (first << 4) | (second >> 4);
    packet.flow_label = u32::from_be_bytes([0, second & 0x0f, third, fourth]);
    packet.len = (IPV6_HEADER_LEN + payload_len).min(usize::from(u16::MAX)) as u16;
    let mut next_header = first_header;
    let mut offset = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    for index in 0..MAX_EXTENSION_HEADERS {
        match next_header {
            NEXT_HEADER_HOP_BY_HOP if index == 0 => {}
            NEXT_HEADER_HOP_BY_HOP => return Err(NoPacket::Malformed(Some(dst))),
            NEXT_HEADER_ROUTING | NEXT_HEADER_DESTINATION => {}
            NEXT_HEADER_FRAGMENT => return Err(NoPacket::Other),
            _ => break,
        }
        // Next header and length in 8-byte units beyond the first 8 (RFC 8200 4.3 to 4.6).
        let Some(header) = frame.read::<8>(offset) else {
            return Err(NoPacket::Malformed(Some(dst)));
        };
        let [next, units, ..] = header;
        offset += (usize::from(units) + 1) * 8;
        if offset > end {
            return Err(NoPacket::Malformed(Some(dst)));
        }
        if !skipped_as_the_kernel_does(next_header, header) {
            return Err(NoPacket::Other);
        }
        next_header = next;
    }
    let unread = matches!(
        next_header,
        NEXT_HEADER_HOP_BY_HOP
            | NEXT_HEADER_ROUTING
            | NEXT_HEADER_DESTINATION
            | NEXT_HEADER_FRAGMENT
    );
    if unread || offset > MAX_L4_OFFSET {
        return Err(NoPacket::Other);
    }
    packet.to_mac = mac_of(&packet.head);
    packet.protocol = next_header;
    packet.l4_offset = offset;
    packet.l4_len = end - offset;
    packet.address_sum = word_sum(&packet.src.0) + word_sum(&packet.dst.0);
    Ok(())
}

/// Whether the kernel goes past an extension header (its first 8 bytes) to what follows
/// without acting on it: a routing header with no segments left, of a type it does not
/// process anyway (2: Mobile IPv6, 3: RPL, 4: segment routing); an options header that is 8
/// bytes of padding, a PadN of four zeros or six Pad1s (`ip6_parse_tlv` takes no more than 7
/// bytes of padding, and options it knows or must not skip may drop the packet). Anything
/// else is left to the kernel, uncounted: prober takes no reply it might drop.
#[inline(always)]
fn skipped_as_the_kernel_does(kind: u8, header: [u8; 8]) -> bool {
    const PADN_OF_FOUR: u64 = 0x0104_0000_0000;
    let [_, units, routing_type, segments_left, ..] = header;
    match kind {
        NEXT_HEADER_ROUTING => segments_left == 0 && !matches!(routing_type, 2..=4),
        _ => {
            let options = u64::from_be_bytes(header) & 0xffff_ffff_ffff;
            units == 0 && (options == 0 || options == PADN_OF_FOUR)
        }
    }
}

/// The fields of a TCP header, read in one piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub source: u16,
    pub dest: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub checksum: u16,
    pub urgent: u16,
}

/// The first 12 bytes of a TCP header: its ports and sequence numbers, which name a probe. A
/// probe's first fragment (-f, 16 bytes of its segment) holds them, but not the whole header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentStart {
    pub source: u16,
    pub dest: u16,
    pub seq: u32,
    pub ack: u32,
}

const SEGMENT_START_LEN: usize = 12;

impl SegmentStart {
    #[inline(always)]
    fn of(bytes: &[u8; SEGMENT_START_LEN]) -> SegmentStart {
        let word = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let long = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        SegmentStart {
            source: word(0),
            dest: word(2),
            seq: long(4),
            ack: long(8),
        }
    }
}

impl Segment {
    #[inline(always)]
    pub fn start(&self) -> SegmentStart {
        SegmentStart {
            source: self.source,
            dest: self.dest,
            seq: self.seq,
            ack: self.ack,
        }
    }
}

/// The start of `ip`'s TCP header, whole packet or first fragment, if it holds that much.
#[inline(always)]
pub fn segment_start(frame: &(impl Frame + ?Sized), ip: &IpPacket) -> Option<SegmentStart> {
    if ip.l4_len < SEGMENT_START_LEN {
        return None;
    }
    let bytes = match ip.transport_head() {
        Some(in_head) => *in_head.first_chunk()?,
        None => frame.read::<SEGMENT_START_LEN>(ip.l4_offset)?,
    };
    Some(SegmentStart::of(&bytes))
}

/// The TCP header of `ip`, if the packet holds one whose data offset `tcp_v4_rcv` would take:
/// at least 5 words, and no more than the segment the IP header states.
#[inline(always)]
pub fn segment(frame: &(impl Frame + ?Sized), ip: &IpPacket) -> Option<Segment> {
    if ip.l4_len < TCP_HEADER_LEN {
        return None;
    }
    let header = match ip.transport_head() {
        Some(in_head) => *in_head,
        None => frame.read::<TCP_HEADER_LEN>(ip.l4_offset)?,
    };
    let data_offset = usize::from(header[12] >> 4) * 4;
    if data_offset < TCP_HEADER_LEN || data_offset > ip.l4_len {
        return None;
    }
    let word = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let start = SegmentStart::of(header.first_chunk()?);
    Some(Segment {
        source: start.source,
        dest: start.dest,
        seq: start.seq,
        ack: start.ack,
        flags: header[13],
        window: word(14),
        checksum: word(16),
        urgent: word(18),
    })
}

/// TCP's timestamp option (RFC 7323): kind 8, ten bytes with its TSval and TSecr.
const TCP_OPTION_END: u8 = 0;
const TCP_OPTION_NOP: u8 = 1;
const TCP_OPTION_TIMESTAMP: u8 = 8;
const TCP_OPTION_TIMESTAMP_LEN: usize = 10;
/// The most option bytes a TCP header holds (a data offset of 15 words, less the fixed 20),
/// and so the most options there are to walk.
const MAX_TCP_OPTIONS_LEN: usize = 40;

/// The TSval of the timestamp option in the TCP header of `ip` (whose header [`segment`]
/// took), walked as the kernel's `tcp_parse_options` walks them: the end of the list stops
/// the walk, a NOP is one byte, any other option as long as its length byte says (at least
/// 2, within the header); a timestamp option of another length is skipped. None without one.
#[inline(always)]
pub fn tcp_timestamp(frame: &(impl Frame + ?Sized), ip: &IpPacket) -> Option<u32> {
    let [data_offset] = frame.read::<1>(ip.l4_offset + 12)?;
    let end = ip.l4_offset + usize::from(data_offset >> 4) * 4;
    let mut at = ip.l4_offset + TCP_HEADER_LEN;
    for _ in 0..MAX_TCP_OPTIONS_LEN {
        if at >= end {
            return None;
        }
        let [kind] = frame.read::<1>(at)?;
        match kind {
            TCP_OPTION_END => return None,
            TCP_OPTION_NOP => {
                at += 1;
                continue;
            }
            _ => {}
        }
        let [len] = frame.read::<1>(at + 1)?;
        let len = usize::from(len);
        if len < 2 || at + len > end {
            return None;
        }
        if kind == TCP_OPTION_TIMESTAMP && len == TCP_OPTION_TIMESTAMP_LEN {
            return frame.read::<4>(at + 2).map(u32::from_be_bytes);
        }
        at += len;
    }
    None
}

/// The fields of a UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub source: u16,
    pub dest: u16,
    pub checksum: u16,
}

/// The UDP header of `ip`, if its length field is the datagram's as the IP header states it.
/// `udp_rcv` drops a datagram whose length is below 8 or beyond the packet, and trims the
/// packet to a shorter one; prober takes only the exact fit its probes' answers have, so that
/// the checksum [`accepted`] verifies covers what the kernel's does.
#[inline(always)]
pub fn datagram(frame: &(impl Frame + ?Sized), ip: &IpPacket) -> Option<Datagram> {
    let [s0, s1, d0, d1, l0, l1, c0, c1] = frame.read::<UDP_HEADER_LEN>(ip.l4_offset)?;
    if usize::from(u16::from_be_bytes([l0, l1])) != ip.l4_len || ip.l4_len < UDP_HEADER_LEN {
        return None;
    }
    Some(Datagram {
        source: u16::from_be_bytes([s0, s1]),
        dest: u16::from_be_bytes([d0, d1]),
        checksum: u16::from_be_bytes([c0, c1]),
    })
}

/// An ICMP query message (an echo, ICMPv6's too, a timestamp or an address mask: RFC 792,
/// RFC 950, RFC 4443 share its identifier and sequence number) and what it carries after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    pub icmp_type: u8,
    pub id: u16,
    pub seq: u16,
    pub checksum: u16,
    /// The first [`icmp_query_data_len`] bytes after the header, zero after them.
    pub data: [u8; 12],
}

/// ICMP's timestamp request and reply (RFC 792), address mask request and reply (RFC 950).
pub const ICMP_TIMESTAMP: u8 = 13;
pub const ICMP_TIMESTAMP_REPLY: u8 = 14;
pub const ICMP_ADDRESS_MASK: u8 = 17;
pub const ICMP_ADDRESS_MASK_REPLY: u8 = 18;

/// What a query message of `icmp_type` must carry after its 8-byte header, as hping3 reads it:
/// a timestamp's originate, receive and transmit timestamps (12 bytes), an address mask (4).
#[inline(always)]
pub fn icmp_query_data_len(version: IpVersion, icmp_type: u8) -> usize {
    match (version, icmp_type) {
        (IpVersion::V4, ICMP_TIMESTAMP | ICMP_TIMESTAMP_REPLY) => 12,
        (IpVersion::V4, ICMP_ADDRESS_MASK | ICMP_ADDRESS_MASK_REPLY) => 4,
        _ => 0,
    }
}

/// The query header of `ip`'s ICMP message (ICMPv6 for IPv6), if it is long enough for one
/// and for the data its type carries; the caller has checked that `ip` carries its family's
/// ICMP.
#[inline(always)]
pub fn echo(frame: &(impl Frame + ?Sized), ip: &IpPacket) -> Option<Echo> {
    if ip.l4_len < ICMP_ECHO_LEN {
        return None;
    }
    let icmp = frame.read::<ICMP_ECHO_LEN>(ip.l4_offset)?;
    let mut data = [0u8; 12];
    let data_at = ip.l4_offset + ICMP_ECHO_LEN;
    let data_len = icmp_query_data_len(ip.version, icmp[0]);
    if ip.l4_len < ICMP_ECHO_LEN + data_len {
        return None;
    }
    match data_len {
        12 => data = frame.read::<12>(data_at)?,
        4 => data[..4].copy_from_slice(&frame.read::<4>(data_at)?),
        _ => {}
    }
    Some(Echo {
        icmp_type: icmp[0],
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        checksum: u16::from_be_bytes([icmp[2], icmp[3]]),
        data,
    })
}

/// What an ICMP or ICMPv6 error that prober takes says became of a probe. Other errors (an
/// IPv4 fragmentation-needed, a redirect, a parameter problem) are the host's to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpErrorKind {
    NetUnreachable,
    HostUnreachable,
    ProtocolUnreachable,
    PortUnreachable,
    /// Communication administratively prohibited: a filter rejected the probe.
    AdminProhibited,
    /// The TTL or hop limit ran out in transit.
    TimeExceeded,
}

impl IcmpErrorKind {
    /// The error a message of `icmp_type` and `code` is in `version`'s ICMP: IPv4's type 3
    /// codes 0 to 3 and 9, 10, 13 (RFC 792, RFC 1812), type 11 code 0; ICMPv6's type 1 codes
    /// 0, 1, 3, 4 and type 3 code 0 (RFC 4443). None for any other message.
    #[inline(always)]
    pub fn of(version: IpVersion, icmp_type: u8, code: u8) -> Option<IcmpErrorKind> {
        use IcmpErrorKind::*;
        match (version, icmp_type, code) {
            (IpVersion::V4, 3, 0) | (IpVersion::V6, 1, 0) => Some(NetUnreachable),
            (IpVersion::V4, 3, 1) | (IpVersion::V6, 1, 3) => Some(HostUnreachable),
            (IpVersion::V4, 3, 2) => Some(ProtocolUnreachable),
            (IpVersion::V4, 3, 3) | (IpVersion::V6, 1, 4) => Some(PortUnreachable),
            (IpVersion::V4, 3, 9 | 10 | 13) | (IpVersion::V6, 1, 1) => Some(AdminProhibited),
            (IpVersion::V4, 11, 0) | (IpVersion::V6, 3, 0) => Some(TimeExceeded),
            _ => None,
        }
    }
}

/// An ICMP error's type and code, and the fields of the packet it quotes that tell whose
/// probe it was about: addresses, protocol, and the first 8 transport bytes, which every error
/// carries (RFC 792; RFC 4443 quotes as much as fits), read as a TCP header's ports and
/// sequence number, a UDP header's ports, length and checksum (in `seq`), or through
/// [`QuotedProbe::is_echo_request`] an echo request's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotedProbe {
    pub icmp_type: u8,
    pub code: u8,
    pub checksum: u16,
    pub src: IpAddress,
    pub dst: IpAddress,
    pub protocol: u8,
    /// The quoted IPv4 header's identification (0 for IPv6).
    pub ip_id: u16,
    pub source_port: u16,
    pub dest_port: u16,
    pub seq: u32,
}

impl QuotedProbe {
    /// A quoted UDP header's length field: 8 + the datagram's data.
    #[inline(always)]
    pub fn udp_length(&self) -> u16 {
        (self.seq >> 16) as u16
    }

    /// Whether the quoted packet is an echo request of `version`'s ICMP (the message's own
    /// family: [`icmp_error`] takes no other quote). Its 8 transport bytes are then type, code,
    /// checksum, identifier and sequence number: [`QuotedProbe::echo_id`] and
    /// [`QuotedProbe::echo_seq`] rather than ports and a TCP sequence number.
    #[inline(always)]
    pub fn is_echo_request(&self, version: IpVersion) -> bool {
        let [icmp_type, code] = self.source_port.to_be_bytes();
        let (protocol, request) = match version {
            IpVersion::V4 => (crate::IPPROTO_ICMP, 8),
            IpVersion::V6 => (crate::IPPROTO_ICMPV6, 128),
        };
        self.protocol == protocol && icmp_type == request && code == 0
    }

    /// A quoted echo request's identifier.
    #[inline(always)]
    pub fn echo_id(&self) -> u16 {
        (self.seq >> 16) as u16
    }

    /// A quoted echo request's sequence number.
    #[inline(always)]
    pub fn echo_seq(&self) -> u16 {
        self.seq as u16
    }
}

/// What [`icmp_error`] found in an ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quoting {
    /// No error prober takes (see [`IcmpErrorKind::of`]): an echo, neighbour discovery, ...
    NotAnError,
    /// An error the kernel would drop: too short for the header it must quote, a quoted
    /// header of the wrong version or shorter than its own header length (`icmp_unreach`,
    /// `icmpv6_notify`).
    Malformed,
    /// An error, its quote read into the caller's [`QuotedProbe`].
    Error(IcmpErrorKind),
}

/// Where an ICMP message's quoted packet starts, past its 8-byte header.
const ICMP_ERROR_HEADER_LEN: usize = 8;
/// The quoted transport bytes read: TCP's ports and sequence number.
const QUOTED_TRANSPORT_LEN: usize = 8;

/// Whether `ip` (of its family's ICMP, the caller checked) is a message [`icmp_error`] would
/// read: its type alone, one read, so other ICMP costs a kind little.
#[inline(always)]
pub fn is_icmp_error_type(frame: &(impl Frame + ?Sized), ip: &IpPacket) -> bool {
    let Some([icmp_type]) = frame.read::<1>(ip.l4_offset) else {
        return false;
    };
    match ip.version {
        IpVersion::V4 => icmp_type == 3 || icmp_type == 11,
        IpVersion::V6 => icmp_type == 1 || icmp_type == 3,
    }
}

/// The ICMP error `ip` carries (the caller checked its protocol is its family's ICMP), its
/// quote read into `quoted`: the quoted IP header must be of the same family, IPv4's no
/// shorter than 20 bytes and followed by 8 transport bytes within the message, IPv6's fixed
/// header followed by them (our probes carry no extension headers: a quote with any is no
/// quote of ours, and taken as one of another protocol). The checksums are left to
/// [`accepted`], with [`Checksum::Message`].
#[inline(always)]
pub fn icmp_error(
    frame: &(impl Frame + ?Sized),
    ip: &IpPacket,
    quoted: &mut QuotedProbe,
) -> Quoting {
    read_quote(frame, ip, quoted, QUOTED_TRANSPORT_LEN)
}

/// [`icmp_error`] for a probe that is a bare IP header (raw IP mode): the quote may end at the
/// quoted IPv4 header, as Linux's protocol unreachable about a probe with no data does (its
/// ICMP drops such an error for itself, but raw sockets, hping3's, get it first); the
/// transport bytes are read when they are there.
#[inline(always)]
pub fn icmp_error_about_ip(
    frame: &(impl Frame + ?Sized),
    ip: &IpPacket,
    quoted: &mut QuotedProbe,
) -> Quoting {
    read_quote(frame, ip, quoted, 0)
}

/// The quote of an ICMP error, which must hold `transport_len` bytes after the quoted IP
/// header (up to [`QUOTED_TRANSPORT_LEN`] are read).
#[inline(always)]
fn read_quote(
    frame: &(impl Frame + ?Sized),
    ip: &IpPacket,
    quoted: &mut QuotedProbe,
    transport_len: usize,
) -> Quoting {
    let Some([icmp_type, code, sum0, sum1]) = frame.read::<4>(ip.l4_offset) else {
        return Quoting::NotAnError;
    };
    let Some(kind) = IcmpErrorKind::of(ip.version, icmp_type, code) else {
        return Quoting::NotAnError;
    };
    quoted.icmp_type = icmp_type;
    quoted.code = code;
    quoted.checksum = u16::from_be_bytes([sum0, sum1]);
    let at = ip.l4_offset + ICMP_ERROR_HEADER_LEN;
    let end = ip.l4_offset + ip.l4_len;
    let transport_at = match ip.version {
        IpVersion::V4 => {
            let Some(header) = frame.read::<IPV4_HEADER_LEN>(at) else {
                return Quoting::Malformed;
            };
            let header_len = usize::from(header[0] & 0x0f) * 4;
            if header[0] >> 4 != 4 || header_len < IPV4_HEADER_LEN {
                return Quoting::Malformed;
            }
            quoted.protocol = header[9];
            quoted.ip_id = u16::from_be_bytes([header[4], header[5]]);
            quoted.src = IpAddress::from_ipv4([header[12], header[13], header[14], header[15]]);
            quoted.dst = IpAddress::from_ipv4([header[16], header[17], header[18], header[19]]);
            at + header_len
        }
        IpVersion::V6 => {
            let Some([version, _, _, _, _, _, next_header, _]) = frame.read::<8>(at) else {
                return Quoting::Malformed;
            };
            if version >> 4 != 6
                || !frame.read_into(at + 8, &mut quoted.src.0)
                || !frame.read_into(at + 24, &mut quoted.dst.0)
            {
                return Quoting::Malformed;
            }
            quoted.protocol = next_header;
            at + IPV6_HEADER_LEN
        }
    };
    if transport_at + transport_len > end {
        return Quoting::Malformed;
    }
    if transport_at + QUOTED_TRANSPORT_LEN > end {
        return Quoting::Error(kind);
    }
    let Some([p0, p1, p2, p3, s0, s1, s2, s3]) = frame.read::<QUOTED_TRANSPORT_LEN>(transport_at)
    else {
        return Quoting::Malformed;
    };
    quoted.source_port = u16::from_be_bytes([p0, p1]);
    quoted.dest_port = u16::from_be_bytes([p2, p3]);
    quoted.seq = u32::from_be_bytes([s0, s1, s2, s3]);
    Quoting::Error(kind)
}

const ETH_P_ARP: u16 = 0x0806;
/// An ARP message for IPv4 over Ethernet: hardware type, protocol type, their lengths, the
/// operation, then sender and target MAC and IPv4 address.
pub const ARP_LEN: usize = 28;
const ARP_FRAME_LEN: usize = ETH_HEADER_LEN + ARP_LEN;
const ARP_REPLY: u16 = 2;
/// Where an ARP frame's fields start, from the frame's start.
const ARP_OPERATION: usize = ETH_HEADER_LEN + 6;
const ARP_SENDER_MAC: usize = ETH_HEADER_LEN + 8;
const ARP_SENDER_IP: usize = ETH_HEADER_LEN + 14;
const ARP_TARGET_MAC: usize = ETH_HEADER_LEN + 18;
const ARP_TARGET_IP: usize = ETH_HEADER_LEN + 24;
pub const ICMPV6_NEIGHBOUR_ADVERT: u8 = 136;
/// A neighbour advertisement's fixed part: type, code, checksum, flags, target address.
const NEIGHBOUR_ADVERT_LEN: usize = 24;
const ADVERT_SOLICITED: u8 = 0x40;
const OPTION_TARGET_LINK_LAYER: u8 = 2;
/// Options a neighbour advertisement's parser walks for the target's MAC: a solicited answer
/// carries it alone (RFC 4861 7.2.4), and the kernel's own put nothing before it.
const MAX_ADVERT_OPTIONS: usize = 4;

/// A neighbour's answer to an ARP request or neighbour solicitation: who it is, and its MAC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighbourAnswer {
    pub addr: IpAddress,
    pub mac: [u8; 6],
}

/// What a frame is to the neighbour resolver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Neighbourly {
    /// No ARP reply or neighbour advertisement: none of its business.
    Other,
    /// One, but not one the kernel would take as an answer to our ask.
    Refused(Reason),
    /// An answer for its sender's own address, to us: written to the caller's answer.
    Answer,
}

/// An ARP frame's bytes, read as fixed-size values (the programs have no `memcmp` for slices).
struct Arp<'a>(&'a [u8; ARP_FRAME_LEN]);

impl Arp<'_> {
    #[inline(always)]
    fn word(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.0[at], self.0[at + 1]])
    }

    #[inline(always)]
    fn mac(&self, at: usize) -> [u8; 6] {
        let b = self.0;
        [b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]]
    }

    #[inline(always)]
    fn ipv4(&self, at: usize) -> IpAddress {
        let b = self.0;
        IpAddress::from_ipv4([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// Hardware type 1 (Ethernet), protocol type IPv4, lengths 6 and 4.
    #[inline(always)]
    fn ipv4_over_ethernet(&self) -> bool {
        let start = ETH_HEADER_LEN;
        self.word(start) == 1
            && self.word(start + 2) == ETH_P_IP
            && self.0[start + 4] == 6
            && self.0[start + 5] == 4
    }
}

/// Whether a MAC address is one host's: not zero, not multicast or broadcast.
#[inline(always)]
fn unicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
}

/// An ARP reply to our request, judged as `arp_process` would and more strictly (prober
/// takes an answer only for the address it asked, from the host that has it): IPv4 over
/// Ethernet (hardware type 1, protocol 0x0800, lengths 6 and 4), a reply (operation 2), in a
/// frame to our MAC; its target our address and MAC; its sender MAC the frame's source and
/// one host's, its sender address a unicast one. `frame` holds a whole Ethernet frame.
#[inline(always)]
pub fn arp_reply(
    frame: &(impl Frame + ?Sized),
    our_addr: &IpAddress,
    our_mac: [u8; 6],
    answer: &mut NeighbourAnswer,
) -> Neighbourly {
    let mut bytes = [0u8; ARP_FRAME_LEN];
    if !frame.read_into(0, &mut bytes) {
        return Neighbourly::Other;
    }
    let arp = Arp(&bytes);
    if arp.word(ETHER_TYPE_OFFSET) != ETH_P_ARP || arp.word(ARP_OPERATION) != ARP_REPLY {
        return Neighbourly::Other;
    }
    if !arp.ipv4_over_ethernet() {
        return Neighbourly::Refused(Reason::MalformedHeader);
    }
    if arp.mac(0) != our_mac {
        return Neighbourly::Refused(Reason::NotToOurMac);
    }
    let sender_mac = arp.mac(ARP_SENDER_MAC);
    if sender_mac != arp.mac(6) || !unicast_mac(&sender_mac) {
        return Neighbourly::Refused(Reason::MalformedHeader);
    }
    // The sender's address: not 0/8, loopback, multicast or reserved (class E and the
    // broadcast address).
    let first = bytes[ARP_SENDER_IP];
    if first == 0 || first == 127 || first >= 224 {
        return Neighbourly::Refused(Reason::MalformedHeader);
    }
    if arp.ipv4(ARP_TARGET_IP) != *our_addr || arp.mac(ARP_TARGET_MAC) != our_mac {
        return Neighbourly::Refused(Reason::AnotherTarget);
    }
    answer.addr = arp.ipv4(ARP_SENDER_IP);
    answer.mac = sender_mac;
    Neighbourly::Answer
}

/// A neighbour advertisement answering our solicitation, judged as `ndisc_rcv` and
/// `ndisc_recv_na` would and more strictly: to our MAC and (the caller checked) our address,
/// hop limit 255, code 0, a valid ICMPv6 checksum, long enough for its target; solicited;
/// sent by the target itself (source = target); carrying the target's MAC in a link-layer
/// address option (one of at most [`MAX_ADVERT_OPTIONS`], none of length 0), which is one
/// host's and the frame's source.
#[inline(always)]
pub fn neighbour_advert(
    frame: &(impl Frame + ?Sized),
    ip: &IpPacket,
    our_mac: [u8; 6],
    answer: &mut NeighbourAnswer,
) -> Neighbourly {
    if ip.version != IpVersion::V6 || ip.protocol != crate::IPPROTO_ICMPV6 {
        return Neighbourly::Other;
    }
    let Some([kind, code, _, _, flags]) = frame.read::<5>(ip.l4_offset) else {
        return Neighbourly::Other;
    };
    if kind != ICMPV6_NEIGHBOUR_ADVERT {
        return Neighbourly::Other;
    }
    if ip.ttl != 255 || code != 0 || ip.l4_len < NEIGHBOUR_ADVERT_LEN {
        return Neighbourly::Refused(Reason::MalformedHeader);
    }
    if let Err(reason) = accepted(frame, ip, our_mac, Checksum::Message) {
        return Neighbourly::Refused(reason);
    }
    if !frame.read_into(ip.l4_offset + 8, &mut answer.addr.0) {
        return Neighbourly::Refused(Reason::MalformedHeader);
    }
    if flags & ADVERT_SOLICITED == 0 || answer.addr != ip.src {
        return Neighbourly::Refused(Reason::AnotherTarget);
    }
    let Some(source_mac) = frame.read::<6>(6) else {
        return Neighbourly::Other;
    };
    let end = ip.l4_offset + ip.l4_len;
    let mut at = ip.l4_offset + NEIGHBOUR_ADVERT_LEN;
    for _ in 0..MAX_ADVERT_OPTIONS {
        let Some([option, units, m0, m1, m2, m3, m4, m5]) = frame.read::<8>(at) else {
            break;
        };
        let len = usize::from(units) * 8;
        if len == 0 || at + len > end {
            return Neighbourly::Refused(Reason::MalformedHeader);
        }
        if option == OPTION_TARGET_LINK_LAYER {
            let mac = [m0, m1, m2, m3, m4, m5];
            if units != 1 || mac != source_mac || !unicast_mac(&mac) {
                return Neighbourly::Refused(Reason::MalformedHeader);
            }
            answer.mac = mac;
            return Neighbourly::Answer;
        }
        at += len;
    }
    Neighbourly::Refused(Reason::MalformedHeader)
}

const ARP_REQUEST: u16 = 1;
pub const ICMPV6_NEIGHBOUR_SOLICIT: u8 = 135;

/// Whether `frame` is our ARP request (IPv4 over Ethernet, operation 1, from `our_addr` at
/// `our_mac`), and if so the address it asks for, in `target` (TC egress: what it asks is
/// noted before any answer can come).
#[inline(always)]
pub fn arp_request(
    frame: &(impl Frame + ?Sized),
    our_addr: &IpAddress,
    our_mac: [u8; 6],
    target: &mut IpAddress,
) -> bool {
    let mut bytes = [0u8; ARP_FRAME_LEN];
    if !frame.read_into(0, &mut bytes) {
        return false;
    }
    let arp = Arp(&bytes);
    *target = arp.ipv4(ARP_TARGET_IP);
    arp.word(ETHER_TYPE_OFFSET) == ETH_P_ARP
        && arp.word(ARP_OPERATION) == ARP_REQUEST
        && arp.ipv4_over_ethernet()
        && arp.mac(ARP_SENDER_MAC) == our_mac
        && arp.ipv4(ARP_SENDER_IP) == *our_addr
}

/// Whether `ip` (the caller checked it is from our address) is a neighbour solicitation, and
/// if so its target, in `target`.
#[inline(always)]
pub fn solicitation(frame: &(impl Frame + ?Sized), ip: &IpPacket, target: &mut IpAddress) -> bool {
    ip.version == IpVersion::V6
        && ip.protocol == crate::IPPROTO_ICMPV6
        && ip.l4_len >= NEIGHBOUR_ADVERT_LEN
        && frame.read::<1>(ip.l4_offset) == Some([ICMPV6_NEIGHBOUR_SOLICIT])
        && frame.read_into(ip.l4_offset + 8, &mut target.0)
}

/// How a transport message is checksummed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// ICMP's: over the message alone for IPv4, with the pseudo-header for ICMPv6 (RFC 4443
    /// 2.3).
    Message,
    /// Over a pseudo-header too (TCP); `field` is the checksum field as received.
    WithPseudoHeader { field: u16 },
    /// UDP's: as [`Checksum::WithPseudoHeader`], but over IPv4 a zero field means the sender
    /// computed none (RFC 768), which the kernel accepts; IPv6 requires one (RFC 8200 8.1).
    Udp { field: u16 },
}

/// What the transport checksum field of a message [`accepted`] took held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumField {
    /// The message's checksum, verified (also when it happens to be the pseudo-header's sum
    /// too).
    Complete,
    /// Just the pseudo-header's sum: CHECKSUM_PARTIAL, the rest left to offload.
    LeftToOffload,
}

/// Whether a frame a kind has picked out as a candidate reply is one the host would accept:
/// sent to our MAC (`tcp_v4_rcv` drops what is not PACKET_HOST, so a broadcast or another
/// host's frame never counts), with a valid IPv4 header checksum (IPv6 has none) and a valid
/// transport checksum. Ok: what its checksum field held; Err: why not.
///
/// One exception, because XDP cannot see the skb's checksum state: a TCP checksum field that
/// holds just the pseudo-header's sum is taken too. That is CHECKSUM_PARTIAL — a segment from
/// a sender on this host (a veth peer, `lo`, a VM's host) whose checksum was left to offload,
/// which the kernel accepts unverified. It lets in nothing a forger could not send anyway
/// with a correct checksum; a corrupted segment has it by chance once in 65 536.
#[inline(always)]
pub fn accepted(
    frame: &(impl Frame + ?Sized),
    ip: &IpPacket,
    our_mac: [u8; 6],
    checksum: Checksum,
) -> Result<ChecksumField, Reason> {
    if ip.to_mac != our_mac {
        return Err(Reason::NotToOurMac);
    }
    // Loopback addresses from or to anywhere but `lo` (whose frames carry no MAC) are martians
    // to `ip_route_input` and dropped by `ip6_rcv_core`.
    if our_mac != [0; 6] && (ip.src.is_loopback() || ip.dst.is_loopback()) {
        return Err(Reason::MalformedHeader);
    }
    if ip.l4_len > MAX_CHECKED_L4_LEN {
        return Err(Reason::TooLongToVerify);
    }
    if ip.version == IpVersion::V4 {
        // The fixed header was summed as it was parsed; the options, if any, follow it.
        let options_len = ip.l4_offset - ip.l3_offset - IPV4_HEADER_LEN;
        let header_sum = match options_len {
            0 => Some(ip.header_sum),
            _ => frame.sum(ip.l3_offset + IPV4_HEADER_LEN, options_len, ip.header_sum),
        };
        if header_sum.map(fold) != Some(0) {
            return Err(Reason::BadChecksum);
        }
    }
    if checksum == (Checksum::Udp { field: 0 }) && ip.version == IpVersion::V4 {
        return Ok(ChecksumField::Complete);
    }
    // Both families' pseudo-headers sum to the same: addresses, protocol, length.
    let pseudo_header = match (checksum, ip.version) {
        (Checksum::Message, IpVersion::V4) => 0,
        _ => ip.address_sum + u32::from(ip.protocol) + ip.l4_len as u32,
    };
    let sum = match ip.transport_head() {
        // The message's first bytes came with the head: only the rest is read (a SYN-ACK's
        // options; nothing of a RST).
        Some(start) => frame.sum(
            ip.l4_offset + TCP_HEADER_LEN,
            ip.l4_len - TCP_HEADER_LEN,
            pseudo_header + word_sum(start),
        ),
        None => frame.sum(ip.l4_offset, ip.l4_len, pseudo_header),
    };
    if sum.map(fold) == Some(0) {
        return Ok(ChecksumField::Complete);
    }
    match checksum {
        Checksum::WithPseudoHeader { field } | Checksum::Udp { field }
            if field == !fold(pseudo_header) =>
        {
            Ok(ChecksumField::LeftToOffload)
        }
        _ => Err(Reason::BadChecksum),
    }
}

/// The 16-bit one's-complement sum (not yet folded) of `len` bytes at `offset` plus `seed`,
/// an odd last byte padded with zero (RFC 1071); None if the frame is shorter. `len` must be
/// at most [`MAX_CHECKED_L4_LEN`]. Eight bytes a round: each round of a loop over packet
/// memory leaves the verifier a branch to explore, so fewer rounds verify (and run) faster.
#[inline(always)]
pub fn sum_words(
    frame: &(impl Frame + ?Sized),
    offset: usize,
    len: usize,
    seed: u32,
) -> Option<u32> {
    let mut sum = seed;
    let mut at = offset;
    let end = offset + len;
    for _ in 0..MAX_CHECKED_L4_LEN / 8 {
        if at + 8 > end {
            break;
        }
        sum += word_sum(&frame.read::<8>(at)?);
        at += 8;
    }
    for _ in 0..3 {
        if at + 2 > end {
            break;
        }
        sum += word_sum(&frame.read::<2>(at)?);
        at += 2;
    }
    if at < end {
        let [last] = frame.read::<1>(at)?;
        sum += u32::from(last) << 8;
    }
    Some(sum)
}

/// The sum of a short byte string's 16-bit words (`N` even).
#[inline(always)]
fn word_sum<const N: usize>(bytes: &[u8; N]) -> u32 {
    words_from(bytes, 0)
}

/// The sum of the 16-bit words of `bytes` from `from` on.
#[inline(always)]
fn words_from<const N: usize>(bytes: &[u8; N], from: usize) -> u32 {
    words_in(bytes, from, N)
}

/// The sum of the 16-bit words of `bytes` from `from` up to `to`.
#[inline(always)]
fn words_in<const N: usize>(bytes: &[u8; N], from: usize, to: usize) -> u32 {
    let mut sum = 0;
    let mut at = from;
    while at + 1 < to {
        sum += u32::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        at += 2;
    }
    sum
}

/// Folds a sum of 16-bit words into the checksum field's value: 0 for a message whose own
/// checksum is right.
#[inline(always)]
pub fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The sum of 16-bit words, not yet folded (for checksums the XDP program writes).
#[inline(always)]
pub fn sum_of(words: &[u16]) -> u32 {
    let mut sum = 0;
    for &word in words {
        sum += u32::from(word);
    }
    sum
}

#[cfg(test)]
mod tests {
    use core::net::Ipv6Addr;

    use super::*;

    const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    /// A SYN-ACK from 198.18.4.2:80 to 198.18.4.1:61440 with correct checksums, in an Ethernet
    /// frame to OUR_MAC, padded to the 60-byte Ethernet minimum as drivers deliver it.
    fn syn_ack() -> [u8; 60] {
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&OUR_MAC);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut frame[14..34];
        ip.copy_from_slice(&[
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 4, 2, 198, 18, 4, 1,
        ]);
        let tcp = &mut frame[34..54];
        tcp.copy_from_slice(&[
            0, 80, 0xf0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        fix_checksums(&mut frame);
        frame
    }

    fn fix_checksums(frame: &mut [u8]) {
        let ip = parse(&frame[..]).expect("a packet");
        frame[24..26].fill(0);
        let sum = fold(sum_words(&frame[..], 14, ip.l4_offset - 14, 0).unwrap());
        frame[24..26].copy_from_slice(&sum.to_be_bytes());
        let at = ip.l4_offset + 16;
        frame[at..at + 2].fill(0);
        let seed = word_sum(&ip.src.ipv4().unwrap())
            + word_sum(&ip.dst.ipv4().unwrap())
            + 6
            + ip.l4_len as u32;
        let sum = fold(sum_words(&frame[..], ip.l4_offset, ip.l4_len, seed).unwrap());
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }

    fn judge(frame: &[u8]) -> Result<(Segment, ChecksumField), Option<Reason>> {
        let Ok(ip) = parse(frame) else {
            return Err(None);
        };
        let segment = segment(frame, &ip).ok_or(None)?;
        let checksum = Checksum::WithPseudoHeader {
            field: segment.checksum,
        };
        let field = accepted(frame, &ip, OUR_MAC, checksum).map_err(Some)?;
        Ok((segment, field))
    }

    #[test]
    fn a_valid_reply_is_accepted() {
        let (segment, field) = judge(&syn_ack()).unwrap();
        assert_eq!(
            (segment.source, segment.dest, segment.flags),
            (80, 61440, 0x12)
        );
        assert_eq!(field, ChecksumField::Complete);
    }

    /// A UDP answer from 198.18.4.2:53 to 198.18.4.1:61440 carrying `data`, with its IP
    /// checksum and, unless `checksum` says otherwise, its UDP checksum; in a frame to OUR_MAC.
    fn udp_answer(data: &[u8], checksum: Option<u16>) -> [u8; 64] {
        let mut frame = [0u8; 64];
        frame[..6].copy_from_slice(&OUR_MAC);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let len = (IPV4_HEADER_LEN + UDP_HEADER_LEN + data.len()) as u16;
        let [l0, l1] = len.to_be_bytes();
        frame[14..34].copy_from_slice(&[
            0x45, 0, l0, l1, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 4, 2, 198, 18, 4, 1,
        ]);
        let [u0, u1] = (len - IPV4_HEADER_LEN as u16).to_be_bytes();
        frame[34..42].copy_from_slice(&[0, 53, 0xf0, 0, u0, u1, 0, 0]);
        frame[42..42 + data.len()].copy_from_slice(data);
        let ip_sum = fold(sum_words(&frame[..], 14, 20, 0).unwrap());
        frame[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        let pseudo =
            word_sum(&[198, 18, 4, 2]) + word_sum(&[198, 18, 4, 1]) + 17 + u32::from(len) - 20;
        let udp_sum = fold(sum_words(&frame[..], 34, usize::from(len) - 20, pseudo).unwrap());
        let field = checksum.unwrap_or(udp_sum);
        frame[40..42].copy_from_slice(&field.to_be_bytes());
        frame
    }

    fn judge_udp(frame: &[u8]) -> Result<Datagram, Option<Reason>> {
        let ip = parse(frame).map_err(|_| None)?;
        let datagram = datagram(frame, &ip).ok_or(None)?;
        let checksum = Checksum::Udp {
            field: datagram.checksum,
        };
        accepted(frame, &ip, OUR_MAC, checksum).map_err(Some)?;
        Ok(datagram)
    }

    #[test]
    fn udp_answers_are_taken_as_udp_rcv_takes_them() {
        let answer = judge_udp(&udp_answer(b"hello", None)).unwrap();
        assert_eq!((answer.source, answer.dest), (53, 61440));
        assert!(judge_udp(&udp_answer(b"", None)).is_ok(), "no data");
        // RFC 768: zero is no checksum, which IPv4 allows.
        assert!(judge_udp(&udp_answer(b"hello", Some(0))).is_ok());
        assert_eq!(
            judge_udp(&udp_answer(b"hello", Some(0x1234))),
            Err(Some(Reason::BadChecksum))
        );
        // A length field other than the datagram's: shorter (the kernel would trim), longer
        // (dropped), below the header's.
        for length in [12u16, 14, 7] {
            let mut frame = udp_answer(b"hello", None);
            frame[38..40].copy_from_slice(&length.to_be_bytes());
            assert_eq!(judge_udp(&frame), Err(None), "length {length}");
        }
    }

    #[test]
    fn headers_the_kernel_drops_are_malformed() {
        let mut version_6 = syn_ack();
        version_6[14] = 0x65;
        let mut short_header = syn_ack();
        short_header[14] = 0x44;
        let mut total_beyond_frame = syn_ack();
        total_beyond_frame[16..18].copy_from_slice(&61u16.to_be_bytes());
        for frame in [version_6, short_header, total_beyond_frame] {
            let ours = IpAddress::from_ipv4([198, 18, 4, 1]);
            assert_eq!(parse(&frame[..]), Err(NoPacket::Malformed(Some(ours))));
        }
    }

    /// The SYN-ACK's first 16 bytes of TCP as the first fragment of its packet (hping3's -f
    /// sizes), or with `offset` (in 8-byte units) as a later one.
    fn fragment(more: bool, offset: u16) -> [u8; 50] {
        let mut frame = [0u8; 50];
        frame.copy_from_slice(&syn_ack()[..50]);
        frame[16..18].copy_from_slice(&36u16.to_be_bytes());
        let flags = if more { 0x2000 } else { 0 };
        frame[20..22].copy_from_slice(&(flags | offset).to_be_bytes());
        frame
    }

    #[test]
    fn a_first_fragment_gives_its_header_fields_and_the_start_of_its_segment() {
        let first = fragment(true, 0);
        let mut ip = IpPacket::EMPTY;
        assert_eq!(
            parse_into(&first[..], &mut ip),
            Err(NoPacket::FirstFragment)
        );
        assert_eq!(
            (ip.src, ip.dst, ip.protocol, ip.l4_len),
            (
                IpAddress::from_ipv4([198, 18, 4, 2]),
                IpAddress::from_ipv4([198, 18, 4, 1]),
                6,
                16
            )
        );
        assert_eq!(segment(&first[..], &ip), None, "no whole TCP header");
        assert_eq!(
            segment_start(&first[..], &ip),
            Some(SegmentStart {
                source: 80,
                dest: 61440,
                seq: 1,
                ack: 2
            })
        );
        // Whole packets give the same start as their segment.
        let whole = syn_ack();
        let ip = parse(&whole[..]).unwrap();
        assert_eq!(
            segment_start(&whole[..], &ip),
            segment(&whole[..], &ip).map(|segment| segment.start())
        );
    }

    #[test]
    fn later_fragments_are_none_of_probers() {
        for (more, offset) in [(true, 2), (false, 2), (false, 1)] {
            assert_eq!(
                parse(&fragment(more, offset)[..]),
                Err(NoPacket::Other),
                "{more} {offset}"
            );
        }
    }

    /// The SYN-ACK with `options` after its fixed TCP header (a multiple of 4 bytes), and the
    /// frame's length.
    fn syn_ack_with_options(options: &[u8]) -> ([u8; 94], usize) {
        let mut frame = [0u8; 94];
        frame[..54].copy_from_slice(&syn_ack()[..54]);
        frame[54..54 + options.len()].copy_from_slice(options);
        let total = (40 + options.len()) as u16;
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        frame[46] = (((20 + options.len()) / 4) << 4) as u8;
        let len = 54 + options.len();
        fix_checksums(&mut frame[..len]);
        (frame, len)
    }

    fn timestamp_of(options: &[u8]) -> Option<u32> {
        let (frame, len) = syn_ack_with_options(options);
        let frame = &frame[..len];
        let ip = parse(frame).unwrap();
        assert!(segment(frame, &ip).is_some(), "a valid header");
        tcp_timestamp(frame, &ip)
    }

    #[test]
    fn the_timestamp_option_is_found_as_the_kernel_walks_options() {
        const TSVAL: Option<u32> = Some(0x1234_5678);
        // Linux's SYN-ACK: MSS, SACK permitted, timestamp, NOP, window scale.
        let linux = [
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 9, 1, 3, 3, 7,
        ];
        assert_eq!(timestamp_of(&linux), TSVAL);
        // hping3's probe: two NOPs, then the timestamp.
        let nops = [1, 1, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 9];
        assert_eq!(timestamp_of(&nops), TSVAL);
        assert_eq!(timestamp_of(&[]), None, "no options");
        assert_eq!(timestamp_of(&[2, 4, 5, 0xb4]), None, "MSS alone");
        // The end of the list, a length below 2 or past the header stop the walk.
        for first in [[0, 1], [3, 1], [3, 13]] {
            let mut broken = [0, 0, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 9];
            broken[..2].copy_from_slice(&first);
            assert_eq!(timestamp_of(&broken), None, "{first:?}");
        }
        // A timestamp option of the wrong length is skipped, as the kernel skips it.
        let short = [8, 2, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 9];
        assert_eq!(timestamp_of(&short), TSVAL);
        // A timestamp cut off by the header's end is none.
        let cut = [1, 1, 1, 1, 1, 1, 8, 10, 0x12, 0x34, 0x56, 0x78];
        assert_eq!(timestamp_of(&cut), None);
    }

    #[test]
    fn tcp_headers_tcp_would_drop_give_no_segment() {
        for data_offset in [2u8, 15] {
            let mut frame = syn_ack();
            frame[46] = data_offset << 4;
            fix_checksums(&mut frame);
            assert_eq!(judge(&frame), Err(None), "data offset {data_offset}");
        }
        // The TCP header in the Ethernet trailer: the IP header says 20 bytes in all.
        let mut in_trailer = syn_ack();
        in_trailer[16..18].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(judge(&in_trailer), Err(None));
    }

    #[test]
    fn bad_checksums_and_other_macs_are_refused() {
        let mut ip_sum = syn_ack();
        ip_sum[25] ^= 1;
        let mut tcp_sum = syn_ack();
        tcp_sum[51] ^= 1;
        for frame in [ip_sum, tcp_sum] {
            assert_eq!(judge(&frame), Err(Some(Reason::BadChecksum)));
        }
        let mut broadcast = syn_ack();
        broadcast[..6].fill(0xff);
        assert_eq!(judge(&broadcast), Err(Some(Reason::NotToOurMac)));
    }

    #[test]
    fn a_checksum_left_to_offload_is_taken_as_the_kernel_takes_it() {
        // CHECKSUM_PARTIAL: the field holds the pseudo-header's sum, the rest is not summed.
        let mut partial = syn_ack();
        let pseudo = word_sum(&[198, 18, 4, 2]) + word_sum(&[198, 18, 4, 1]) + 6 + 20;
        partial[50..52].copy_from_slice(&(!fold(pseudo)).to_be_bytes());
        let field = |frame: &[u8]| judge(frame).map(|(_, field)| field);
        assert_eq!(field(&partial), Ok(ChecksumField::LeftToOffload));
        partial[50] ^= 0x10;
        assert_eq!(field(&partial), Err(Some(Reason::BadChecksum)));
        // Over IPv6's pseudo-header alike.
        let (mut partial6, len) = ipv6_syn_ack(&[]);
        let pseudo6 = word_sum(&V6_SOURCE) + word_sum(&V6_OURS) + 6 + 20;
        partial6[70..72].copy_from_slice(&(!fold(pseudo6)).to_be_bytes());
        assert_eq!(field(&partial6[..len]), Ok(ChecksumField::LeftToOffload));
    }

    #[test]
    fn the_ip_options_are_summed() {
        let mut frame = [0u8; 64];
        let reply = syn_ack();
        frame[..14].copy_from_slice(&reply[..14]);
        frame[14] = 0x46; // one word of options: a NOP, a NOP, a NOP, an end of list
        frame[15..34].copy_from_slice(&reply[15..34]);
        frame[16..18].copy_from_slice(&44u16.to_be_bytes());
        frame[34..38].copy_from_slice(&[1, 1, 1, 0]);
        frame[38..58].copy_from_slice(&reply[34..54]);
        fix_checksums(&mut frame);
        assert!(judge(&frame).is_ok());
        frame[37] = 7;
        assert_eq!(judge(&frame), Err(Some(Reason::BadChecksum)));
    }

    #[test]
    fn the_trailer_is_not_summed() {
        // Ethernet padding after the IP packet is not part of the segment: a valid reply with
        // junk in its trailer still checks out.
        let mut frame = syn_ack();
        frame[54..].fill(0xa5);
        assert!(judge(&frame).is_ok());
    }

    /// RFC 1071 over byte strings, written for these tests alone.
    fn checksum_of(parts: &[&[u8]]) -> u16 {
        let mut sum = 0u32;
        for part in parts {
            for pair in part.chunks(2) {
                sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            }
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    const V6_SOURCE: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const V6_OURS: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const FRAME_ROOM: usize = 160;

    /// An IPv6 frame to OUR_MAC from V6_SOURCE to V6_OURS: `extensions` (next header, length
    /// in 8-byte units beyond the first 8) in order, then `transport` (protocol, message), its
    /// checksum (at `checksum_at` in the message) set over the pseudo-header. Returns the frame
    /// and its length.
    fn ipv6_frame(
        extensions: &[(u8, u8)],
        protocol: u8,
        message: &[u8],
        checksum_at: usize,
    ) -> ([u8; FRAME_ROOM], usize) {
        let mut frame = [0u8; FRAME_ROOM];
        frame[..6].copy_from_slice(&OUR_MAC);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        frame[12..14].copy_from_slice(&[0x86, 0xdd]);
        let mut at = 54;
        // Front to back: each header's next-header field names the one after it.
        for (index, &(kind, units)) in extensions.iter().enumerate() {
            let next = extensions
                .get(index + 1)
                .map_or(protocol, |&(kind, _)| kind);
            frame[at] = next;
            frame[at + 1] = units;
            if kind != NEXT_HEADER_ROUTING {
                // Options headers hold a PadN of four zeros; routing headers are of type 0
                // with no segments left.
                frame[at + 2] = 1;
                frame[at + 3] = 4;
            }
            at += (usize::from(units) + 1) * 8;
        }
        let first_next = extensions.first().map_or(protocol, |&(kind, _)| kind);
        let mut message_bytes = [0u8; 64];
        message_bytes[..message.len()].copy_from_slice(message);
        let length = (message.len() as u32).to_be_bytes();
        let sum = checksum_of(&[&V6_SOURCE, &V6_OURS, &length, &[0, 0, 0, protocol], message]);
        message_bytes[checksum_at..checksum_at + 2].copy_from_slice(&sum.to_be_bytes());
        frame[at..at + message.len()].copy_from_slice(&message_bytes[..message.len()]);
        let end = at + message.len();
        let payload = (end - 54) as u16;
        frame[14..22].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, first_next, 64]);
        frame[18..20].copy_from_slice(&payload.to_be_bytes());
        frame[22..38].copy_from_slice(&V6_SOURCE);
        frame[38..54].copy_from_slice(&V6_OURS);
        (frame, end)
    }

    const SYN_ACK_SEGMENT: [u8; 20] = [
        0, 80, 0xf0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0,
    ];

    fn ipv6_syn_ack(extensions: &[(u8, u8)]) -> ([u8; FRAME_ROOM], usize) {
        ipv6_frame(extensions, crate::IPPROTO_TCP, &SYN_ACK_SEGMENT, 16)
    }

    fn judge_echo(frame: &[u8]) -> Result<Echo, Option<Reason>> {
        let Ok(ip) = parse(frame) else {
            return Err(None);
        };
        let echo = echo(frame, &ip).ok_or(None)?;
        accepted(frame, &ip, OUR_MAC, Checksum::Message).map_err(Some)?;
        Ok(echo)
    }

    #[test]
    fn an_ipv6_reply_is_parsed_and_accepted() {
        let (frame, len) = ipv6_syn_ack(&[]);
        let frame = &frame[..len];
        let ip = parse(frame).expect("parsed");
        assert_eq!(ip.version, IpVersion::V6);
        assert_eq!((ip.src, ip.dst), (IpAddress(V6_SOURCE), IpAddress(V6_OURS)));
        assert_eq!((ip.l4_offset, ip.l4_len, ip.len, ip.ttl), (54, 20, 60, 64));
        assert!(ip.plain_header());
        assert_eq!(judge(frame).unwrap().0.flags, 0x12);
        let mut flipped = [0u8; FRAME_ROOM];
        flipped[..len].copy_from_slice(frame);
        flipped[70] ^= 1;
        assert_eq!(judge(&flipped[..len]), Err(Some(Reason::BadChecksum)));
    }

    #[test]
    fn traffic_class_and_flow_label_are_read() {
        let (mut frame, len) = ipv6_syn_ack(&[]);
        frame[14..18].copy_from_slice(&[0x6a, 0xbc, 0xde, 0xf1]);
        let ip = parse(&frame[..len]).expect("parsed");
        assert_eq!((ip.tos, ip.flow_label), (0xab, 0xc_def1));
    }

    #[test]
    fn icmpv6_echo_replies_are_checked_over_the_pseudo_header() {
        let message = [129, 0, 0, 0, 0x12, 0x34, 0, 7];
        let (frame, len) = ipv6_frame(&[], crate::IPPROTO_ICMPV6, &message, 2);
        let echo = judge_echo(&frame[..len]).unwrap();
        assert_eq!((echo.icmp_type, echo.id, echo.seq), (129, 0x1234, 7));
        // A checksum over the message alone, as ICMPv4 has it, is wrong for ICMPv6.
        let mut v4_style = frame;
        let sum = checksum_of(&[&[129, 0, 0, 0, 0x12, 0x34, 0, 7]]);
        v4_style[56..58].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(judge_echo(&v4_style[..len]), Err(Some(Reason::BadChecksum)));
        // Neighbour advertisements and the like are read, for the kind to tell apart.
        let (advert, len) = ipv6_frame(&[], crate::IPPROTO_ICMPV6, &[136, 0, 0, 0, 0, 0, 0, 0], 2);
        assert_eq!(judge_echo(&advert[..len]).unwrap().icmp_type, 136);
    }

    #[test]
    fn extension_headers_within_the_bound_are_skipped() {
        let chain = [
            (NEXT_HEADER_HOP_BY_HOP, 0),
            (NEXT_HEADER_DESTINATION, 0),
            (NEXT_HEADER_ROUTING, 2),
            (NEXT_HEADER_DESTINATION, 0),
        ];
        assert_eq!(chain.len(), MAX_EXTENSION_HEADERS);
        let (frame, len) = ipv6_syn_ack(&chain);
        let ip = parse(&frame[..len]).expect("parsed");
        assert_eq!((ip.protocol, ip.l4_offset, ip.l4_len), (6, 54 + 48, 20));
        assert!(!ip.plain_header());
        assert!(judge(&frame[..len]).is_ok());
        // Six Pad1s pad as well as a PadN.
        let (mut frame, len) = ipv6_syn_ack(&[(NEXT_HEADER_DESTINATION, 0)]);
        frame[56..62].fill(0);
        assert!(judge(&frame[..len]).is_ok());
    }

    #[test]
    fn extension_headers_the_kernel_acts_on_are_left_to_it() {
        let unskipped = |at: usize, bytes: &[u8], chain: &[(u8, u8)]| {
            let (mut frame, len) = ipv6_syn_ack(chain);
            frame[at..at + bytes.len()].copy_from_slice(bytes);
            assert_eq!(parse(&frame[..len]), Err(NoPacket::Other), "{bytes:?}");
        };
        let options = [(NEXT_HEADER_DESTINATION, 0)];
        unskipped(56, &[5, 2, 0, 0, 1, 0], &options); // a router alert
        unskipped(56, &[1, 4, 0, 0, 0, 1], &options); // PadN, not all zeros
        unskipped(56, &[0xc2, 4, 0, 0, 0, 0], &options); // an option not to be skipped
        let routing = [(NEXT_HEADER_ROUTING, 0)];
        unskipped(57, &[1], &routing); // a segment left
        unskipped(56, &[4], &routing); // segment routing
                                       // Padding beyond 7 bytes: a header of 16.
        unskipped(56, &[1, 12], &[(NEXT_HEADER_DESTINATION, 1)]);
    }

    #[test]
    fn longer_chains_and_fragments_are_left_alone() {
        let too_long = [(NEXT_HEADER_DESTINATION, 0); MAX_EXTENSION_HEADERS + 1];
        let (frame, len) = ipv6_syn_ack(&too_long);
        assert_eq!(parse(&frame[..len]), Err(NoPacket::Other));
        // Within the bound, but too far in for the programs' checksum.
        let mut far = [0u8; MAX_L4_OFFSET + 100];
        let (frame, len) = ipv6_syn_ack(&[(NEXT_HEADER_ROUTING, 0)]);
        far[..len].copy_from_slice(&frame[..len]);
        far[55] = 60; // 488 bytes, of a routing header with no segments left
        far[18..20].copy_from_slice(&(488u16 + 20).to_be_bytes());
        far[54 + 488..54 + 508].copy_from_slice(&SYN_ACK_SEGMENT);
        assert_eq!(parse(&far[..54 + 508]), Err(NoPacket::Other));
        for chain in [
            &[(NEXT_HEADER_FRAGMENT, 0)][..],
            &[(NEXT_HEADER_DESTINATION, 0), (NEXT_HEADER_FRAGMENT, 0)][..],
        ] {
            let (frame, len) = ipv6_syn_ack(chain);
            assert_eq!(parse(&frame[..len]), Err(NoPacket::Other), "{chain:?}");
        }
    }

    #[test]
    fn ipv6_headers_the_kernel_drops_are_malformed() {
        let ours = Err(NoPacket::Malformed(Some(IpAddress(V6_OURS))));
        let (frame, len) = ipv6_syn_ack(&[]);
        let mut version_4 = frame;
        version_4[14] = 0x40;
        let mut beyond_frame = frame;
        beyond_frame[18..20].copy_from_slice(&21u16.to_be_bytes());
        let mut mapped_source = frame;
        mapped_source[22..38].copy_from_slice(&IpAddress::from_ipv4([198, 18, 4, 2]).0);
        let mut multicast_source = frame;
        multicast_source[22] = 0xff;
        for bad in [version_4, beyond_frame, mapped_source, multicast_source] {
            assert_eq!(parse(&bad[..len]), ours);
        }
        // To a mapped address: it would pass for the IPv4 address, and is no one's.
        let mut mapped_destination = frame;
        mapped_destination[38..54].copy_from_slice(&IpAddress::from_ipv4([198, 18, 4, 1]).0);
        assert_eq!(
            parse(&mapped_destination[..len]),
            Err(NoPacket::Malformed(None))
        );
        assert_eq!(
            parse(&frame[..50]),
            Err(NoPacket::Malformed(None)),
            "truncated header"
        );
        let late_hop_by_hop = [(NEXT_HEADER_DESTINATION, 0), (NEXT_HEADER_HOP_BY_HOP, 0)];
        let (frame, len) = ipv6_syn_ack(&late_hop_by_hop);
        assert_eq!(parse(&frame[..len]), ours);
        // An extension header that claims more than the payload holds.
        let (mut frame, len) = ipv6_syn_ack(&[(NEXT_HEADER_DESTINATION, 0)]);
        frame[55] = 9;
        assert_eq!(parse(&frame[..len]), ours);
        // A payload that ends inside the TCP header: no segment.
        let (mut frame, len) = ipv6_syn_ack(&[]);
        frame[18..20].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(judge(&frame[..len]), Err(None));
    }

    #[test]
    fn loopback_addresses_count_only_on_lo() {
        let mut v4 = syn_ack();
        v4[26..30].copy_from_slice(&[127, 0, 0, 1]);
        fix_checksums(&mut v4);
        let (mut v6, len) = ipv6_syn_ack(&[]);
        v6[22..38].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        let sum = checksum_of(&[
            &Ipv6Addr::LOCALHOST.octets(),
            &V6_OURS,
            &20u32.to_be_bytes(),
            &[0, 0, 0, 6],
            &{
                let mut segment = SYN_ACK_SEGMENT;
                segment[16..18].fill(0);
                segment
            },
        ]);
        v6[70..72].copy_from_slice(&sum.to_be_bytes());
        for frame in [&v4[..], &v6[..len]] {
            let ip = parse(frame).expect("parsed");
            let checksum = Checksum::WithPseudoHeader {
                field: segment(frame, &ip).expect("a segment").checksum,
            };
            assert_eq!(
                accepted(frame, &ip, OUR_MAC, checksum),
                Err(Reason::MalformedHeader)
            );
            // On `lo`, whose frames carry no MAC, the same packet is the kernel's to take.
            let mut on_lo = [0u8; FRAME_ROOM];
            on_lo[..frame.len()].copy_from_slice(frame);
            on_lo[..6].fill(0);
            let on_lo = &on_lo[..frame.len()];
            let ip = parse(on_lo).expect("parsed");
            assert_eq!(
                accepted(on_lo, &ip, [0; 6], checksum),
                Ok(ChecksumField::Complete)
            );
        }
    }

    #[test]
    fn a_hop_limit_of_0_is_taken_as_linux_takes_it() {
        let (mut frame, len) = ipv6_syn_ack(&[]);
        frame[21] = 0;
        assert!(judge(&frame[..len]).is_ok());
    }

    const THEIR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const V4_OURS: [u8; 4] = [198, 18, 4, 1];
    const V4_THEIRS: [u8; 4] = [198, 18, 4, 2];

    /// 198.18.4.2 at THEIR_MAC answers 198.18.4.1 at OUR_MAC, padded to 60 bytes.
    fn arp_answer() -> [u8; 60] {
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&OUR_MAC);
        frame[6..12].copy_from_slice(&THEIR_MAC);
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        frame[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 2]);
        frame[22..28].copy_from_slice(&THEIR_MAC);
        frame[28..32].copy_from_slice(&V4_THEIRS);
        frame[32..38].copy_from_slice(&OUR_MAC);
        frame[38..42].copy_from_slice(&V4_OURS);
        frame
    }

    fn judge_arp(frame: &[u8]) -> Result<NeighbourAnswer, Neighbourly> {
        let mut answer = NeighbourAnswer::default();
        match arp_reply(frame, &IpAddress::from_ipv4(V4_OURS), OUR_MAC, &mut answer) {
            Neighbourly::Answer => Ok(answer),
            other => Err(other),
        }
    }

    #[test]
    fn an_arp_reply_to_our_request_is_an_answer() {
        let answer = judge_arp(&arp_answer()).unwrap();
        assert_eq!(answer.addr, IpAddress::from_ipv4(V4_THEIRS));
        assert_eq!(answer.mac, THEIR_MAC);
        // Unpadded, as a veth delivers it, too.
        assert!(judge_arp(&arp_answer()[..42]).is_ok());
        assert_eq!(judge_arp(&arp_answer()[..41]), Err(Neighbourly::Other));
    }

    #[test]
    fn arp_replies_the_kernel_or_prober_would_not_take_are_refused() {
        let refused = |at: usize, bytes: &[u8], why: Neighbourly| {
            let mut frame = arp_answer();
            frame[at..at + bytes.len()].copy_from_slice(bytes);
            assert_eq!(judge_arp(&frame), Err(why), "{at}: {bytes:?}");
        };
        let malformed = Neighbourly::Refused(Reason::MalformedHeader);
        refused(14, &[0, 6], malformed); // IEEE 802 hardware
        refused(16, &[0x86, 0xdd], malformed);
        refused(18, &[8], malformed);
        refused(19, &[16], malformed);
        refused(0, &[0xff; 6], Neighbourly::Refused(Reason::NotToOurMac));
        refused(22, &[2, 0, 0, 0, 0, 3], malformed); // another sender than the frame's
        refused(6, &[3, 0, 0, 0, 0, 2], malformed); // a multicast sender, in both places
        let mut multicast = arp_answer();
        multicast[6] = 3;
        multicast[22] = 3;
        assert_eq!(judge_arp(&multicast), Err(malformed));
        for sender in [[0, 0, 0, 0], [127, 0, 0, 1], [224, 0, 0, 1], [255; 4]] {
            refused(28, &sender, malformed);
        }
        let another = Neighbourly::Refused(Reason::AnotherTarget);
        refused(38, &[198, 18, 4, 3], another);
        refused(32, &[2, 0, 0, 0, 0, 9], another);
        // Requests (gratuitous ones too) and other ether types are no answers at all.
        refused(20, &[0, 1], Neighbourly::Other);
        refused(12, &[0x08, 0x00], Neighbourly::Other);
    }

    /// A solicited advertisement from V6_SOURCE at THEIR_MAC for itself, with a target
    /// link-layer address option (its ICMPv6 message).
    fn advert_message() -> [u8; 32] {
        let mut message = [0u8; 32];
        message[0] = ICMPV6_NEIGHBOUR_ADVERT;
        message[4] = 0x60; // solicited, override
        message[8..24].copy_from_slice(&V6_SOURCE);
        message[24..26].copy_from_slice(&[OPTION_TARGET_LINK_LAYER, 1]);
        message[26..32].copy_from_slice(&THEIR_MAC);
        message
    }

    /// `message` to V6_OURS at OUR_MAC with hop limit 255 and its checksum set, and the
    /// frame's length.
    fn advert_of(message: &[u8]) -> ([u8; FRAME_ROOM], usize) {
        let (mut frame, len) = ipv6_frame(&[], crate::IPPROTO_ICMPV6, message, 2);
        frame[21] = 255;
        (frame, len)
    }

    fn advert() -> ([u8; FRAME_ROOM], usize) {
        advert_of(&advert_message())
    }

    /// The advertisement with `bytes` at `at` of its message.
    fn advert_with(at: usize, bytes: &[u8]) -> ([u8; FRAME_ROOM], usize) {
        let mut message = advert_message();
        message[at..at + bytes.len()].copy_from_slice(bytes);
        advert_of(&message)
    }

    fn judge_advert(frame: &[u8]) -> Result<NeighbourAnswer, Neighbourly> {
        let Ok(ip) = parse(frame) else {
            return Err(Neighbourly::Other);
        };
        let mut answer = NeighbourAnswer::default();
        match neighbour_advert(frame, &ip, OUR_MAC, &mut answer) {
            Neighbourly::Answer => Ok(answer),
            other => Err(other),
        }
    }

    #[test]
    fn a_solicited_advert_for_its_senders_own_address_is_an_answer() {
        let (frame, len) = advert();
        let answer = judge_advert(&frame[..len]).unwrap();
        assert_eq!((answer.addr, answer.mac), (IpAddress(V6_SOURCE), THEIR_MAC));
        // Another option first is walked past.
        let message = advert_message();
        let nonce = [14, 1, 0, 0, 0, 0, 0, 0];
        let (frame, len) = advert_of(&[&message[..24], &nonce, &message[24..]].concat());
        assert!(judge_advert(&frame[..len]).is_ok());
    }

    #[test]
    fn adverts_the_kernel_or_prober_would_not_take_are_refused() {
        let malformed = Err(Neighbourly::Refused(Reason::MalformedHeader));
        let another = Err(Neighbourly::Refused(Reason::AnotherTarget));
        let (frame, len) = advert();
        let mut hop_limit = frame;
        hop_limit[21] = 64;
        assert_eq!(judge_advert(&hop_limit[..len]), malformed);
        let mut checksum = frame;
        checksum[56] ^= 1;
        assert_eq!(
            judge_advert(&checksum[..len]),
            Err(Neighbourly::Refused(Reason::BadChecksum))
        );
        let mut broadcast = frame;
        broadcast[..6].fill(0xff);
        assert_eq!(
            judge_advert(&broadcast[..len]),
            Err(Neighbourly::Refused(Reason::NotToOurMac))
        );
        for (at, bytes, why) in [
            (1, &[1][..], malformed),                 // code
            (4, &[0x20][..], another),                // unsolicited (override only)
            (23, &[9][..], another),                  // another target
            (24, &[1][..], malformed),                // a source, not a target, option
            (25, &[0][..], malformed),                // an option of length 0
            (25, &[2][..], malformed),                // longer than the message
            (26, &[2, 0, 0, 0, 0, 3][..], malformed), // not the frame's source
        ] {
            let (frame, len) = advert_with(at, bytes);
            assert_eq!(judge_advert(&frame[..len]), why, "{at}: {bytes:?}");
        }
        // Too short for its target.
        let (short, len) = advert_of(&advert_message()[..20]);
        assert_eq!(judge_advert(&short[..len]), malformed);
        // Echo replies and solicitations are no answers.
        for kind in [129, 135] {
            let (frame, len) = advert_with(0, &[kind]);
            assert_eq!(judge_advert(&frame[..len]), Err(Neighbourly::Other));
        }
    }

    #[test]
    fn our_asks_are_told_by_their_target() {
        let mut request = arp_answer();
        // From us, broadcast, asking for theirs.
        request[..6].fill(0xff);
        request[6..12].copy_from_slice(&OUR_MAC);
        request[20..22].copy_from_slice(&[0, 1]);
        request[22..28].copy_from_slice(&OUR_MAC);
        request[28..32].copy_from_slice(&V4_OURS);
        request[32..38].fill(0);
        request[38..42].copy_from_slice(&V4_THEIRS);
        let ours = IpAddress::from_ipv4(V4_OURS);
        let mut target = IpAddress::default();
        assert!(arp_request(&request[..], &ours, OUR_MAC, &mut target));
        assert_eq!(target, IpAddress::from_ipv4(V4_THEIRS));
        // Another host's request, and an answer, are not ours.
        let other = IpAddress::from_ipv4([198, 18, 4, 9]);
        assert!(!arp_request(&request[..], &other, OUR_MAC, &mut target));
        assert!(!arp_request(&arp_answer()[..], &ours, OUR_MAC, &mut target));
        let (solicit, len) = advert_with(0, &[ICMPV6_NEIGHBOUR_SOLICIT]);
        let ip = parse(&solicit[..len]).unwrap();
        assert!(solicitation(&solicit[..len], &ip, &mut target));
        assert_eq!(target, IpAddress(V6_SOURCE));
        let (advert, len) = advert();
        let ip = parse(&advert[..len]).unwrap();
        assert!(!solicitation(&advert[..len], &ip, &mut target));
    }

    /// Our SYN from 198.18.4.1:61440 to 198.18.4.2:80 with sequence number 0x11223344, as an
    /// ICMP error quotes it: its IP header and the first 8 bytes of its TCP header.
    const QUOTED_SYN: [u8; 28] = [
        0x45, 0, 0, 40, 0, 1, 0, 0, 1, 6, 0, 0, 198, 18, 4, 1, 198, 18, 4, 2, 0xf0, 0, 0, 80, 0x11,
        0x22, 0x33, 0x44,
    ];

    /// An ICMP message of `icmp_type` and `code` quoting `quote`, from the router 198.18.4.9 to
    /// 198.18.4.1 at OUR_MAC, both checksums set; and its length.
    fn icmp_error_frame(icmp_type: u8, code: u8, quote: &[u8]) -> ([u8; FRAME_ROOM], usize) {
        icmp_frame([icmp_type, code, 0, 0, 0, 0, 0, 0], quote)
    }

    /// The ICMP message of `header` (checksum left 0) and `body`, from 198.18.4.9 to
    /// 198.18.4.1 at OUR_MAC, both checksums set; and its length.
    fn icmp_frame(header: [u8; 8], body: &[u8]) -> ([u8; FRAME_ROOM], usize) {
        let (quote, mut message) = (body, [0u8; 96]);
        message[..8].copy_from_slice(&header);
        message[8..8 + quote.len()].copy_from_slice(quote);
        let message = &mut message[..8 + quote.len()];
        let sum = checksum_of(&[message]);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut frame = [0u8; FRAME_ROOM];
        frame[..14].copy_from_slice(&syn_ack()[..14]);
        let len = (20 + message.len()) as u16;
        let [l0, l1] = len.to_be_bytes();
        let mut ip = [
            0x45, 0xc0, l0, l1, 0, 7, 0, 0, 64, 1, 0, 0, 198, 18, 4, 9, 198, 18, 4, 1,
        ];
        let sum = checksum_of(&[&ip]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame[14..34].copy_from_slice(&ip);
        frame[34..34 + message.len()].copy_from_slice(message);
        (frame, 34 + message.len())
    }

    fn quote_of(frame: &[u8]) -> (Quoting, QuotedProbe) {
        let ip = parse(frame).expect("parsed");
        let mut quoted = QuotedProbe::default();
        (icmp_error(frame, &ip, &mut quoted), quoted)
    }

    /// [`quote_of`] a frame that must be an error the kernel accepts.
    fn accepted_quote_of(frame: &[u8]) -> (Quoting, QuotedProbe) {
        let ip = parse(frame).unwrap();
        assert!(is_icmp_error_type(frame, &ip));
        assert_eq!(
            accepted(frame, &ip, OUR_MAC, Checksum::Message),
            Ok(ChecksumField::Complete)
        );
        quote_of(frame)
    }

    #[test]
    fn a_port_unreachable_names_the_udp_probe_it_quotes() {
        // QUOTED_SYN's IP header, as UDP, with a datagram of 8 + 10 bytes, checksum 0xbeef.
        let mut quote = QUOTED_SYN;
        quote[9] = 17;
        quote[20..28].copy_from_slice(&[0xf0, 0x00, 0, 53, 0, 18, 0xbe, 0xef]);
        let (frame, len) = icmp_error_frame(3, 3, &quote);
        let (quoting, quoted) = accepted_quote_of(&frame[..len]);
        assert_eq!(quoting, Quoting::Error(IcmpErrorKind::PortUnreachable));
        assert_eq!(quoted.protocol, 17);
        assert_eq!((quoted.source_port, quoted.dest_port), (61440, 53));
        assert_eq!(quoted.udp_length(), 18);
        assert_eq!(quoted.seq as u16, 0xbeef, "the quoted checksum");
    }

    #[test]
    fn an_icmp_error_names_the_probe_it_quotes() {
        let (frame, len) = icmp_error_frame(3, 13, &QUOTED_SYN);
        let frame = &frame[..len];
        let (quoting, quoted) = accepted_quote_of(frame);
        assert_eq!(quoting, Quoting::Error(IcmpErrorKind::AdminProhibited));
        assert_eq!((quoted.icmp_type, quoted.code, quoted.protocol), (3, 13, 6));
        assert_eq!(quoted.src, IpAddress::from_ipv4([198, 18, 4, 1]));
        assert_eq!(quoted.dst, IpAddress::from_ipv4([198, 18, 4, 2]));
        assert_eq!(
            (quoted.source_port, quoted.dest_port, quoted.seq),
            (61440, 80, 0x1122_3344)
        );
        // The kernel quotes as much as fits: a whole TCP header is read alike.
        let whole = [&QUOTED_SYN[..], &[0x50, 0x02, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]].concat();
        let (frame, len) = icmp_error_frame(11, 0, &whole);
        assert_eq!(
            quote_of(&frame[..len]).0,
            Quoting::Error(IcmpErrorKind::TimeExceeded)
        );
        let mut flipped = frame;
        flipped[40] ^= 1;
        let ip = parse(&flipped[..len]).unwrap();
        assert_eq!(
            accepted(&flipped[..len], &ip, OUR_MAC, Checksum::Message),
            Err(Reason::BadChecksum)
        );
    }

    #[test]
    fn a_quote_of_a_bare_ip_header_is_read_for_raw_ip_probes_only() {
        // Our raw IP probe of protocol 200 with IP id 0x0102 and no data, as Linux's protocol
        // unreachable quotes it: the IP header alone.
        let mut bare = [0u8; 20];
        bare.copy_from_slice(&QUOTED_SYN[..20]);
        bare[3] = 20;
        bare[4..6].copy_from_slice(&[1, 2]);
        bare[9] = 200;
        let (frame, len) = icmp_error_frame(3, 2, &bare);
        let frame = &frame[..len];
        let ip = parse(frame).unwrap();
        let mut quoted = QuotedProbe::default();
        assert_eq!(
            icmp_error(frame, &ip, &mut quoted),
            Quoting::Malformed,
            "no TCP header"
        );
        let mut quoted = QuotedProbe::default();
        assert_eq!(
            icmp_error_about_ip(frame, &ip, &mut quoted),
            Quoting::Error(IcmpErrorKind::ProtocolUnreachable)
        );
        assert_eq!((quoted.protocol, quoted.ip_id), (200, 0x0102));
        assert_eq!(quoted.dst, IpAddress::from_ipv4([198, 18, 4, 2]));
        assert_eq!(
            (quoted.source_port, quoted.seq),
            (0, 0),
            "nothing quoted after it"
        );
        // With data, the first bytes of it are read as a transport header would be.
        let (frame, len) = icmp_error_frame(3, 2, &[&bare[..], b"XXXXXXXX"].concat());
        let ip = parse(&frame[..len]).unwrap();
        let mut quoted = QuotedProbe::default();
        icmp_error_about_ip(&frame[..len], &ip, &mut quoted);
        assert_eq!(quoted.source_port, u16::from_be_bytes(*b"XX"));
        // A quote cut inside the IP header is none, for either.
        let (frame, len) = icmp_error_frame(3, 2, &bare[..16]);
        let ip = parse(&frame[..len]).unwrap();
        assert_eq!(
            icmp_error_about_ip(&frame[..len], &ip, &mut QuotedProbe::default()),
            Quoting::Malformed
        );
    }

    #[test]
    fn timestamp_and_address_mask_replies_carry_their_data() {
        let timestamps = [0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        let query = |icmp_type, data: &[u8]| {
            let (frame, len) = icmp_frame([icmp_type, 0, 0, 0, 0xbe, 0xef, 0, 9], data);
            let frame = &frame[..len];
            let ip = parse(frame).unwrap();
            echo(frame, &ip).map(|echo| {
                assert_eq!(
                    accepted(frame, &ip, OUR_MAC, Checksum::Message),
                    Ok(ChecksumField::Complete)
                );
                (echo.icmp_type, echo.id, echo.seq, echo.data)
            })
        };
        assert_eq!(
            query(ICMP_TIMESTAMP_REPLY, &timestamps),
            Some((14, 0xbeef, 9, timestamps))
        );
        let mask = [255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            query(ICMP_ADDRESS_MASK_REPLY, &mask[..4]),
            Some((18, 0xbeef, 9, mask))
        );
        assert_eq!(
            query(0, &timestamps),
            Some((0, 0xbeef, 9, [0; 12])),
            "an echo's data is its own"
        );
        // Too short for what their type carries: no reply hping3 would print.
        assert_eq!(query(ICMP_TIMESTAMP_REPLY, &timestamps[..8]), None);
        assert_eq!(query(ICMP_ADDRESS_MASK_REPLY, &mask[..3]), None);
    }

    #[test]
    fn an_error_quoting_an_echo_request_names_its_identifier_and_sequence() {
        // Our echo request from 198.18.4.1 to 198.18.4.2, identifier 0xbeef, sequence 7.
        let mut echo = QUOTED_SYN;
        echo[9] = 1;
        echo[20..28].copy_from_slice(&[8, 0, 0x12, 0x34, 0xbe, 0xef, 0, 7]);
        let (frame, len) = icmp_error_frame(11, 0, &echo);
        let (quoting, quoted) = accepted_quote_of(&frame[..len]);
        assert_eq!(quoting, Quoting::Error(IcmpErrorKind::TimeExceeded));
        assert!(quoted.is_echo_request(IpVersion::V4));
        assert_eq!((quoted.echo_id(), quoted.echo_seq()), (0xbeef, 7));
        assert!(
            !quoted.is_echo_request(IpVersion::V6),
            "ICMPv6 numbers it 128"
        );
        // An echo reply quoted, a code other than 0, or TCP's bytes are no echo request.
        for (at, value) in [(20, 0), (21, 1), (9, 6)] {
            let mut other = echo;
            other[at] = value;
            let (frame, len) = icmp_error_frame(11, 0, &other);
            assert!(!quote_of(&frame[..len]).1.is_echo_request(IpVersion::V4));
        }
        let (frame, len) = icmp_error_frame(11, 0, &QUOTED_SYN);
        assert!(!quote_of(&frame[..len]).1.is_echo_request(IpVersion::V4));
    }

    #[test]
    fn only_the_errors_prober_takes_are_errors() {
        for (icmp_type, code, kind) in [
            (3, 0, Some(IcmpErrorKind::NetUnreachable)),
            (3, 1, Some(IcmpErrorKind::HostUnreachable)),
            (3, 2, Some(IcmpErrorKind::ProtocolUnreachable)),
            (3, 3, Some(IcmpErrorKind::PortUnreachable)),
            (3, 9, Some(IcmpErrorKind::AdminProhibited)),
            (3, 10, Some(IcmpErrorKind::AdminProhibited)),
            (3, 4, None), // fragmentation needed: the host's path MTU to learn
            (11, 1, None),
            (5, 0, None),
            (0, 0, None),
        ] {
            let (frame, len) = icmp_error_frame(icmp_type, code, &QUOTED_SYN);
            let want = kind.map_or(Quoting::NotAnError, Quoting::Error);
            assert_eq!(
                quote_of(&frame[..len]).0,
                want,
                "type {icmp_type} code {code}"
            );
        }
        for (icmp_type, code, kind) in [
            (1, 0, Some(IcmpErrorKind::NetUnreachable)),
            (1, 1, Some(IcmpErrorKind::AdminProhibited)),
            (1, 3, Some(IcmpErrorKind::HostUnreachable)),
            (1, 4, Some(IcmpErrorKind::PortUnreachable)),
            (3, 0, Some(IcmpErrorKind::TimeExceeded)),
            (1, 2, None),
            (2, 0, None), // packet too big
            (129, 0, None),
        ] {
            assert_eq!(IcmpErrorKind::of(IpVersion::V6, icmp_type, code), kind);
        }
    }

    #[test]
    fn quotes_the_kernel_would_drop_are_malformed() {
        let malformed = |quote: &[u8]| {
            let (frame, len) = icmp_error_frame(3, 3, quote);
            assert_eq!(quote_of(&frame[..len]).0, Quoting::Malformed, "{quote:?}");
        };
        malformed(&QUOTED_SYN[..27]); // 7 transport bytes
        malformed(&QUOTED_SYN[..20]);
        let mut short_header = QUOTED_SYN;
        short_header[0] = 0x44;
        malformed(&short_header);
        let mut version_6 = QUOTED_SYN;
        version_6[0] = 0x65;
        malformed(&version_6);
        // Options make the header longer: the ports are past them, here beyond the quote.
        let mut options = QUOTED_SYN;
        options[0] = 0x46;
        malformed(&options);
    }

    #[test]
    fn an_icmpv6_error_quotes_an_ipv6_header() {
        let mut quote = [0u8; 48];
        quote[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 1]);
        quote[8..24].copy_from_slice(&V6_OURS);
        quote[24..40].copy_from_slice(&V6_SOURCE);
        quote[40..48].copy_from_slice(&[0xf0, 0, 0, 80, 0x11, 0x22, 0x33, 0x44]);
        let message = [&[1, 1, 0, 0, 0, 0, 0, 0][..], &quote].concat();
        let (frame, len) = ipv6_frame(&[], crate::IPPROTO_ICMPV6, &message, 2);
        let frame = &frame[..len];
        let (quoting, quoted) = accepted_quote_of(frame);
        assert_eq!(quoting, Quoting::Error(IcmpErrorKind::AdminProhibited));
        assert_eq!(
            (quoted.src, quoted.dst),
            (IpAddress(V6_OURS), IpAddress(V6_SOURCE))
        );
        assert_eq!(
            (quoted.protocol, quoted.source_port, quoted.dest_port),
            (6, 61440, 80)
        );
        assert_eq!(quoted.seq, 0x1122_3344);
        assert!(!quoted.is_echo_request(IpVersion::V6));
        // Time exceeded quoting our ICMPv6 echo request, identifier 0xbeef, sequence 9.
        let mut echo = quote;
        echo[6] = crate::IPPROTO_ICMPV6;
        echo[40..48].copy_from_slice(&[128, 0, 0x12, 0x34, 0xbe, 0xef, 0, 9]);
        let message_echo = [&[3, 0, 0, 0, 0, 0, 0, 0][..], &echo].concat();
        let (frame, len) = ipv6_frame(&[], crate::IPPROTO_ICMPV6, &message_echo, 2);
        let (quoting, quoted) = accepted_quote_of(&frame[..len]);
        assert_eq!(quoting, Quoting::Error(IcmpErrorKind::TimeExceeded));
        assert!(quoted.is_echo_request(IpVersion::V6));
        assert_eq!((quoted.echo_id(), quoted.echo_seq()), (0xbeef, 9));
        // An IPv4 header quoted in ICMPv6 is none the kernel would take.
        let mut v4 = message.clone();
        v4[8] = 0x45;
        let (frame, len) = ipv6_frame(&[], crate::IPPROTO_ICMPV6, &v4, 2);
        assert_eq!(quote_of(&frame[..len]).0, Quoting::Malformed);
        let (frame, len) = ipv6_frame(&[], crate::IPPROTO_ICMPV6, &message[..55], 2);
        assert_eq!(quote_of(&frame[..len]).0, Quoting::Malformed);
    }

    #[test]
    fn odd_lengths_pad_the_last_byte() {
        let bytes = [0x12u8, 0x34, 0x56];
        assert_eq!(sum_words(&bytes[..], 0, 3, 0), Some(0x1234 + 0x5600));
        assert_eq!(sum_words(&bytes[..], 0, 4, 0), None);
    }
}
