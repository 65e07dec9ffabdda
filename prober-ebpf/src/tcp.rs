//! The TCP kind: SYN-ACKs and RSTs that answer our probes, and our probes leaving.
//!
//! One target: a reply comes from the probed port to one of our source ports and acknowledges
//! the sequence number every probe carries. A sweep: the cookie the reply echoes (where the
//! answer to the sweep's flags carries it, see [`echoed_cookie`]) must be the cookie of its
//! own (target, port, our address, our port); a SYN-ACK is then sent back to its sender as the
//! RST that ends the half-open connection (the other kinds' answers are RSTs themselves).
use aya_ebpf::Global;
use prober_common::{
    echoed_cookie, syn_cookie,
    trace::{Fate, Reason},
    wire::{
        self, Checksum, ChecksumField, Frame, IpPacket, IpVersion, Segment, ETH_HEADER_LEN,
        IPV4_HEADER_LEN, IPV6_HEADER_LEN, TCP_HEADER_LEN,
    },
    Counter, ProbeFilter, IPPROTO_TCP, TCP_ACK as ACK, TCP_FIN as FIN, TCP_RST as RST,
    TCP_SYN as SYN,
};

use crate::{
    maps,
    packet::{header_mut, Rewritable},
    reply::{self, Decision, Probe, Rst},
};

/// The bounced RST: an Ethernet frame holding a bare IP header and a bare TCP header.
const RST_FRAME_LEN_V4: usize = ETH_HEADER_LEN + IPV4_HEADER_LEN + TCP_HEADER_LEN;
const RST_FRAME_LEN_V6: usize = ETH_HEADER_LEN + IPV6_HEADER_LEN + TCP_HEADER_LEN;
/// The RST's TTL or hop limit, as the kernel's own RSTs have it.
const RST_TTL: u8 = 64;

/// [`prober_common::GENERIC_XDP_GLOBAL`]: 1 in generic XDP, set by userspace at load (the
/// verifier then drops the other mode's code).
#[no_mangle]
static PROBER_GENERIC_XDP: Global<u8> = Global::new(0);

/// Whether the packet XDP holds is a socket buffer, which keeps its checksum state (see
/// [`rst_checksum`]); TC's always is.
#[inline(always)]
pub fn xdp_keeps_checksum_state() -> bool {
    PROBER_GENERIC_XDP.load() == 1
}

#[inline(never)]
pub fn reply(frame: &impl Frame, ip: &IpPacket, filter: &ProbeFilter, arrived_ns: u64) -> Decision {
    if ip.protocol != IPPROTO_TCP {
        return Decision::IGNORED;
    }
    let Some(segment) = wire::segment(frame, ip) else {
        return reply::malformed(ip, (0, 0), Reason::MalformedHeader);
    };
    if !reply::from_target(filter, ip) {
        return Decision::IGNORED;
    }
    // Only segments to one of our ports can be replies; anything else (on `lo`, our own
    // probes and the host's RSTs too) is none of our business, and not traced.
    if !filter.is_our_port(segment.dest) {
        return Decision::IGNORED;
    }
    let ports = (segment.source, segment.dest);
    let checksum = Checksum::WithPseudoHeader {
        field: segment.checksum,
    };
    let checksum = match reply::validated(frame, ip, filter, ports, checksum) {
        Ok(field) => field,
        Err(refused) => return refused,
    };
    let sweep = reply::sweep(filter);
    let answers = if sweep {
        // Only what answers the sweep's probes echoes a cookie; other segments to these ports
        // (the host's own traffic) pass untouched.
        let Some(echoed) = echoed_cookie(filter.tcp_flags, segment.flags, segment.seq, segment.ack)
        else {
            return reply::foreign(ip, ports, Reason::NotSynAckOrRstAck);
        };
        let cookie = syn_cookie(
            filter.cookie_key,
            &ip.src,
            segment.source,
            &ip.dst,
            segment.dest,
        );
        echoed == cookie
    } else {
        // Without -k every port is one of ours: the target's other traffic to us (an SSH
        // session, on `lo` our own probes) is no reply, and not traced either.
        if !filter.probes_port(segment.source) {
            return Decision::IGNORED;
        }
        acknowledges(filter, &segment)
    };
    if !answers {
        return reply::unmatched(ip, ports, Reason::AcknowledgesNoProbe);
    }
    let probe = Probe {
        slot: filter.tcp_slot(segment.dest, acknowledged(filter, &segment)),
        target: ip.src,
        target_port: segment.source,
    };
    let timestamp = if filter.tcp_timestamp == 1 {
        timestamp(frame, ip)
    } else {
        0
    };
    let mut decision = reply::matched(filter, ip, ports, &probe, arrived_ns, |record| {
        record.tcp_tsval = timestamp as u32;
        record.tcp_timestamp = (timestamp >> 32) as u8;
        record.src_port = segment.source;
        record.dst_port = segment.dest;
        record.tcp_seq = segment.seq;
        record.tcp_ack = segment.ack;
        record.tcp_flags = segment.flags;
        record.tcp_window = segment.window;
        record.l4_checksum = segment.checksum;
        record.tcp_urgent = segment.urgent;
    });
    if sweep && segment.flags & SYN != 0 {
        decision.answer = true;
        decision.rst = Rst {
            // The RST reuses the SYN-ACK's frame: an IP header without options or extensions.
            rewritable: ip.plain_header(),
            version: ip.version,
            address_sum: ip.address_sum,
            our_port: segment.dest,
            their_port: segment.source,
            seq: segment.ack,
            checksum,
        };
    }
    decision
}

/// --tcp-timestamp: the TSval of the reply's timestamp option with bit 32 set, or 0 without
/// one (no `Option`, see [`Decision`]). A function of its own, whose option walk keeps its
/// locals off [`reply`]'s frame.
#[inline(never)]
fn timestamp(frame: &impl Frame, ip: &IpPacket) -> u64 {
    wire::tcp_timestamp(frame, ip).map_or(0, |tsval| 1 << 32 | u64::from(tsval))
}

/// Answers a sweep's matched SYN-ACK with its RST, for the hook to send straight back (XDP_TX,
/// or a TC redirect to the interface's egress): true if the packet was rewritten into it.
/// Counted, and the trace says so. One it cannot rewrite goes on to the host's stack, which
/// answers it with the RST (see [`Decision::answer`]). `keeps_checksum_state`: the packet is
/// a socket buffer (see [`rst_checksum`]).
#[inline(always)]
pub fn bounce(
    ctx: &mut impl Rewritable,
    decision: &mut Decision,
    keeps_checksum_state: bool,
) -> bool {
    if !decision.answer || bounce_as_rst(ctx, &decision.rst, keeps_checksum_state).is_none() {
        return false;
    }
    maps::count(Counter::Bounced);
    decision.event.fate = Fate::Bounced;
    true
}

/// One target: a reply with ACK acknowledges our sequence number plus at most SYN, FIN and our
/// data; a RST without ACK (the answer to a probe that carried ACK) echoes our ack as its
/// sequence. With probes of one flow, each probe's number is added to both (see
/// [`ProbeFilter::tcp_rest`]).
#[inline(always)]
fn acknowledges(filter: &ProbeFilter, segment: &Segment) -> bool {
    let rest = filter.tcp_rest(acknowledged(filter, segment));
    if segment.flags & ACK != 0 {
        rest <= u32::from(SYN | FIN) + u32::from(filter.tcp_data_len)
    } else {
        segment.flags & RST != 0 && rest == 0
    }
}

/// One target: what a reply echoes of our probe's numbers, less the filter's: its ack less our
/// sequence number, or a RST's sequence number less our ack (see [`acknowledges`]).
#[inline(always)]
fn acknowledged(filter: &ProbeFilter, segment: &Segment) -> u32 {
    if segment.flags & ACK != 0 {
        segment.ack.wrapping_sub(filter.tcp_seq)
    } else {
        segment.seq.wrapping_sub(filter.tcp_ack)
    }
}

/// The probe this segment is, if it is one of ours leaving (TC egress); a sweep's is filed
/// here, in its own slot.
#[inline(always)]
pub fn departure(packet: &impl Frame, ip: &IpPacket, filter: &ProbeFilter) -> Option<Probe> {
    if ip.protocol != IPPROTO_TCP {
        return None;
    }
    // Only our probes: the host's own segments on these ports (its RST to a SYN-ACK, a
    // target's answers leaving `lo`) must not take their slots. A probe of one flow carries
    // its number in its sequence and acknowledgement numbers alike (see
    // ProbeFilter::tcp_rest).
    let start = if reply::sweep(filter) {
        let segment = wire::segment(packet, ip)?;
        if segment.flags != filter.tcp_flags {
            return None;
        }
        segment.start()
    } else {
        // All that a one-target probe's first fragment (-f) is sure to hold of its header.
        let start = wire::segment_start(packet, ip)?;
        let seq_offset = start.seq.wrapping_sub(filter.tcp_seq);
        let probe = filter.probes_port(start.dest)
            && filter.tcp_rest(seq_offset) == 0
            && start.ack.wrapping_sub(filter.tcp_ack) == seq_offset;
        if !probe {
            return None;
        }
        start
    };
    if !filter.is_our_port(start.source) {
        return None;
    }
    if reply::sweep(filter) {
        reply::note_sweep_departure(ip, start.source.wrapping_sub(filter.sport_base), start.seq);
    }
    Some(Probe {
        slot: filter.tcp_slot(start.source, start.seq.wrapping_sub(filter.tcp_seq)),
        target: ip.dst,
        target_port: start.dest,
    })
}

/// Rewrites the SYN-ACK in place into the RST that tells its sender to forget the half-open
/// connection: MACs, addresses and ports swapped, sequence = the SYN-ACK's ack, no options.
/// None when the packet cannot be rewritten, left as it was.
#[inline(always)]
fn bounce_as_rst(ctx: &mut impl Rewritable, rst: &Rst, keeps_checksum_state: bool) -> Option<()> {
    if !rst.rewritable {
        return None;
    }
    let checksum = rst_checksum(rst, keeps_checksum_state);
    match rst.version {
        IpVersion::V4 => {
            rewrite_as_rst::<RST_FRAME_LEN_V4, 4, 12>(ctx, rst, checksum, &ipv4_fields(rst))
        }
        IpVersion::V6 => {
            rewrite_as_rst::<RST_FRAME_LEN_V6, 16, 8>(ctx, rst, checksum, &IPV6_FIELDS)
        }
    }
}

/// The rewrite for a frame of `LEN` bytes, whose IP header (`LEN` less the Ethernet and TCP
/// headers) is `fixed` and then the two addresses of `ADDRESS_LEN` bytes, as both families'
/// is without options.
#[inline(always)]
fn rewrite_as_rst<const LEN: usize, const ADDRESS_LEN: usize, const FIXED_LEN: usize>(
    ctx: &mut impl Rewritable,
    rst: &Rst,
    checksum: u16,
    fixed: &[u8; FIXED_LEN],
) -> Option<()> {
    const { assert!(FIXED_LEN + 2 * ADDRESS_LEN + ETH_HEADER_LEN + TCP_HEADER_LEN == LEN) };
    ctx.truncate(LEN)?;
    // One reference over the whole frame: one bounds check the verifier sees.
    let frame: &mut [u8; LEN] = header_mut(ctx, 0)?;
    let (macs, rest) = frame.split_at_mut(2 * 6);
    let (destination, origin) = macs.split_at_mut(6);
    destination.swap_with_slice(origin);
    let (ip, tcp) = rest[2..].split_at_mut(LEN - ETH_HEADER_LEN - TCP_HEADER_LEN);
    let (fields, addresses) = ip.split_at_mut(FIXED_LEN);
    let (source, target) = addresses.split_at_mut(ADDRESS_LEN);
    source.swap_with_slice(target);
    fields.copy_from_slice(fixed);
    write_rst_segment(tcp, rst, checksum);
    Some(())
}

/// An IPv4 header's first 12 bytes (no options follow the addresses).
#[inline(always)]
fn ipv4_fields(rst: &Rst) -> [u8; 12] {
    const TOTAL_LEN: u16 = (IPV4_HEADER_LEN + TCP_HEADER_LEN) as u16;
    const DONT_FRAGMENT: u16 = 0x4000; // as the kernel's own RSTs
    let ip_sum = wire::sum_of(&[
        0x4500,
        TOTAL_LEN,
        DONT_FRAGMENT,
        u16::from_be_bytes([RST_TTL, IPPROTO_TCP]),
    ]) + rst.address_sum;
    let [len0, len1] = TOTAL_LEN.to_be_bytes();
    let [df0, df1] = DONT_FRAGMENT.to_be_bytes();
    let [sum0, sum1] = wire::fold(ip_sum).to_be_bytes();
    [
        0x45,
        0,
        len0,
        len1,
        0,
        0,
        df0,
        df1,
        RST_TTL,
        IPPROTO_TCP,
        sum0,
        sum1,
    ]
}

/// An IPv6 header's first 8 bytes: traffic class and flow label zero, as the kernel's RSTs to
/// a closed socket have them.
const IPV6_FIELDS: [u8; 8] = {
    let [len0, len1] = (TCP_HEADER_LEN as u16).to_be_bytes();
    [0x60, 0, 0, 0, len0, len1, IPPROTO_TCP, RST_TTL]
};

/// The RST's data offset and flags: a 20-byte header without options, RST alone.
const OFFSET_FLAGS: u16 = (5 << 12) | RST as u16;

/// The RST's TCP checksum field, over the pseudo-header of either family.
#[inline(always)]
fn rst_checksum(rst: &Rst, keeps_checksum_state: bool) -> u16 {
    let pseudo_header =
        rst.address_sum + wire::sum_of(&[u16::from(IPPROTO_TCP), TCP_HEADER_LEN as u16]);
    // Generic XDP and TC send the SYN-ACK's skb back with its checksum state. When the
    // SYN-ACK's checksum was left to offload (CHECKSUM_PARTIAL: a sender on this host), whoever
    // sends the RST on completes its checksum by adding the segment's sum to the field; so the
    // field holds just the pseudo-header's sum, as tcp_v4_send_check and tcp_v6_send_check
    // leave it. Native XDP has no skb, and nothing completes it.
    if rst.checksum == ChecksumField::LeftToOffload && keeps_checksum_state {
        return !wire::fold(pseudo_header);
    }
    let seq = rst.seq;
    wire::fold(
        pseudo_header
            + wire::sum_of(&[
                rst.our_port,
                rst.their_port,
                (seq >> 16) as u16,
                seq as u16,
                OFFSET_FLAGS,
            ]),
    )
}

/// The RST's TCP header, with its `checksum` field.
#[inline(always)]
fn write_rst_segment(tcp: &mut [u8], rst: &Rst, checksum: u16) {
    let [sp0, sp1] = rst.our_port.to_be_bytes();
    let [dp0, dp1] = rst.their_port.to_be_bytes();
    let [q0, q1, q2, q3] = rst.seq.to_be_bytes();
    let [f0, f1] = OFFSET_FLAGS.to_be_bytes();
    let [c0, c1] = checksum.to_be_bytes();
    // Window, urgent pointer and acknowledgement zero, as in the kernel's RSTs.
    tcp.copy_from_slice(&[
        sp0, sp1, dp0, dp1, q0, q1, q2, q3, 0, 0, 0, 0, f0, f1, 0, 0, c0, c1, 0, 0,
    ]);
}
