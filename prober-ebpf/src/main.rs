//! XDP reply matcher: records SYN-ACKs, RSTs and ICMP echo replies that answer prober's
//! probes, with a kernel timestamp, into a ring buffer. For one target every packet passes on
//! untouched; in a sweep, replies are dropped after recording (a SYN-ACK goes back to its
//! sender as a RST instead), so the host's stack never spends time on them.
//!
//! A TC egress program notes when each probe leaves the interface, so that a reply's record
//! carries both ends of the round trip on the kernel's clock.
#![no_std]
#![no_main]

use core::mem::size_of;

use aya_ebpf::{
    bindings::{xdp_action, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_tail},
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use network_types::{eth::EthHdr, icmp::Icmpv4Hdr, ip::Ipv4Hdr, tcp::TcpHdr};
use prober_common::{
    syn_cookie, Counter, Departure, ProbeFilter, ReplyRecord, COUNTER_SLOTS, DEPARTURE_SLOTS,
    IPPROTO_ICMP, IPPROTO_TCP, MODE_SWEEP,
};

#[map]
static FILTER: Array<ProbeFilter> = Array::with_max_entries(1, 0);

/// 4 MiB: each record takes 64 bytes with its header, so ~65 000 replies can wait for
/// userspace.
#[map]
static REPLIES: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map]
static DEPARTURES: Array<Departure> = Array::with_max_entries(DEPARTURE_SLOTS, 0);

const ETH_P_IP: u16 = 0x0800;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
/// TCX_NEXT: the egress program only watches; the verdict stays with whatever runs after it
/// (other TCX programs, clsact filters). TC_ACT_OK would be final and skip them.
const TC_ACT_UNSPEC: i32 = -1;
const IP_MORE_FRAGMENTS_AND_OFFSET: u16 = 0x3fff;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_RST: u8 = 0x04;
const TCP_FLAG_ACK: u8 = 0x10;
/// Offset of the flags byte in the TCP header.
const TCP_FLAGS_OFFSET: usize = 13;
/// An Ethernet frame holding a bare IPv4 header and a bare TCP header: the bounced RST.
const RST_FRAME_LEN: usize = EthHdr::LEN + Ipv4Hdr::LEN + TcpHdr::LEN;

/// What a packet is to us.
enum Verdict {
    /// Not a reply to prober at all.
    Foreign,
    /// Shaped like a reply to our probes but answering none of them: forged or stale.
    Unmatched,
    /// A reply to one of our probes.
    Reply(ReplyRecord),
}

#[xdp]
pub fn prober(ctx: XdpContext) -> u32 {
    let Some(filter) = FILTER.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let sweep = filter.mode == MODE_SWEEP;
    match classify(&ctx, filter, sweep) {
        Verdict::Foreign => xdp_action::XDP_PASS,
        Verdict::Unmatched => {
            count(Counter::Unmatched);
            if sweep {
                xdp_action::XDP_DROP
            } else {
                xdp_action::XDP_PASS
            }
        }
        Verdict::Reply(record) => {
            submit(&record, sweep);
            if !sweep {
                xdp_action::XDP_PASS
            } else if record.tcp_flags & TCP_FLAG_SYN != 0 && bounce_as_rst(&ctx, &record).is_some()
            {
                count(Counter::Bounced);
                xdp_action::XDP_TX
            } else {
                xdp_action::XDP_DROP
            }
        }
    }
}

#[classifier]
pub fn prober_egress(ctx: TcContext) -> i32 {
    note_departure(&ctx);
    TC_ACT_UNSPEC
}

/// Files the departure time of one of our probes in its slot. TC sees packets before any
/// AF_PACKET TX-ring frame is linearised, so headers are copied out with
/// `bpf_skb_load_bytes` rather than read in place.
#[inline(always)]
fn note_departure(ctx: &TcContext) -> Option<()> {
    let filter = FILTER.get(0)?;
    let eth: EthHdr = ctx.load(0).ok()?;
    if u16::from_be(eth.ether_type) != ETH_P_IP {
        return None;
    }
    let ip: Ipv4Hdr = ctx.load(EthHdr::LEN).ok()?;
    let sweep = filter.mode == MODE_SWEEP;
    if ip.src_addr != filter.local_addr
        || ip.proto as u8 != filter.protocol
        || (!sweep && ip.dst_addr != filter.target_addr)
    {
        return None;
    }
    let header_words = usize::from(ip.vihl & 0x0f);
    if header_words < 5 {
        return None;
    }
    let l4 = EthHdr::LEN + header_words * 4;
    let (slot, target_port) = match filter.protocol {
        IPPROTO_TCP => {
            let tcp: TcpHdr = ctx.load(l4).ok()?;
            let flags: u8 = ctx.load(l4 + TCP_FLAGS_OFFSET).ok()?;
            let target_port = u16::from_be_bytes(tcp.dest);
            let offset = u16::from_be_bytes(tcp.source).wrapping_sub(filter.sport_base);
            // Only our probes: the host's own segments on these ports (its RST to a SYN-ACK,
            // a target's answers leaving `lo`) must not take their slots.
            let probe = if sweep {
                flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN
            } else {
                target_port == filter.target_port
                    && u32::from_be_bytes(tcp.seq) == filter.tcp_seq
                    && u32::from_be_bytes(tcp.ack_seq) == filter.tcp_ack
            };
            if offset > filter.sport_max_offset || !probe {
                return None;
            }
            (offset, target_port)
        }
        IPPROTO_ICMP => {
            let icmp: Icmpv4Hdr = ctx.load(l4).ok()?;
            let id = u16::from_be_bytes([icmp.data[0], icmp.data[1]]);
            if icmp.type_ != ICMP_ECHO_REQUEST || id != filter.icmp_id {
                return None;
            }
            (u16::from_be_bytes([icmp.data[2], icmp.data[3]]), 0)
        }
        _ => return None,
    };
    let departure = DEPARTURES.get_ptr_mut(u32::from(slot))?;
    // SAFETY: an in-bounds array slot. The XDP side may read it while it is rewritten (a
    // slot reused within one round trip, e.g. a sweep flooding 4096 ports): it can then pair
    // a reply with the next probe's time, never read out of bounds.
    unsafe {
        *departure = Departure {
            kernel_ns: bpf_ktime_get_ns(),
            target_addr: ip.dst_addr,
            target_port,
            _pad: 0,
        };
    }
    Some(())
}

/// The departure time of the probe `record` answers, if TC egress saw it leave.
#[inline(always)]
fn departure_of(filter: &ProbeFilter, record: &ReplyRecord) -> u64 {
    let (slot, target_port) = if record.protocol == IPPROTO_TCP {
        (
            record.dst_port.wrapping_sub(filter.sport_base),
            record.src_port,
        )
    } else {
        (record.icmp_seq, 0)
    };
    match DEPARTURES.get(u32::from(slot)) {
        Some(departure)
            if departure.target_addr == record.src_addr && departure.target_port == target_port =>
        {
            departure.kernel_ns
        }
        _ => 0,
    }
}

/// Returns a bounds-checked pointer to a `T` at `offset` into the packet.
#[inline(always)]
fn header<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data() + offset;
    if start + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some(start as *mut T)
}

#[inline(always)]
fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot is only touched by this CPU.
        unsafe { *slot += 1 };
    }
}

/// Sweep mode: below this much unread data userspace is not woken; it polls on a timer.
const SWEEP_WAKE_BYTES: u64 = 1 << 20;

/// Queues the record for userspace. One target: wake the reader for every reply (it prints
/// each as it comes). Sweeps: a wake-up per reply costs an inter-processor interrupt that
/// would take a tenth of a CPU at a few hundred thousand replies a second, so the reader
/// polls and is only woken when the ring fills up.
#[inline(always)]
fn submit(record: &ReplyRecord, sweep: bool) {
    match REPLIES.reserve::<ReplyRecord>(0) {
        Some(mut entry) => {
            entry.write(*record);
            let wake = if !sweep {
                0
            } else if REPLIES.query(u64::from(BPF_RB_AVAIL_DATA)) >= SWEEP_WAKE_BYTES {
                u64::from(BPF_RB_FORCE_WAKEUP)
            } else {
                u64::from(BPF_RB_NO_WAKEUP)
            };
            entry.submit(wake);
            count(Counter::Matched);
        }
        None => count(Counter::RingFull),
    }
}

#[inline(always)]
fn classify(ctx: &XdpContext, filter: &ProbeFilter, sweep: bool) -> Verdict {
    match read_reply(ctx, filter, sweep) {
        None => Verdict::Foreign,
        Some((_, false)) => Verdict::Unmatched,
        Some((mut record, true)) => {
            record.kernel_ns = unsafe { bpf_ktime_get_ns() };
            record.sent_ns = departure_of(filter, &record);
            Verdict::Reply(record)
        }
    }
}

/// The reply's fields, and whether it answers one of our probes; None for foreign packets.
#[inline(always)]
fn read_reply(ctx: &XdpContext, filter: &ProbeFilter, sweep: bool) -> Option<(ReplyRecord, bool)> {
    let eth: *const EthHdr = header(ctx, 0)?;
    if u16::from_be(unsafe { (*eth).ether_type }) != ETH_P_IP {
        return None;
    }
    let ip: *const Ipv4Hdr = header(ctx, EthHdr::LEN)?;
    let ip = unsafe { &*ip };
    // A sweep's replies come from many targets; the SYN cookie vouches for the source.
    if (!sweep && ip.src_addr != filter.target_addr)
        || ip.dst_addr != filter.local_addr
        || ip.proto as u8 != filter.protocol
    {
        return None;
    }
    let header_words = usize::from(ip.vihl & 0x0f);
    if header_words < 5 {
        return None; // malformed: shorter than the fixed IPv4 header
    }
    // Replies are never fragmented; a fragment's payload is no transport header.
    if u16::from_be_bytes(ip.frags) & IP_MORE_FRAGMENTS_AND_OFFSET != 0 {
        return None;
    }
    let l4 = EthHdr::LEN + header_words * 4;
    let mut record = ReplyRecord {
        src_addr: ip.src_addr,
        dst_addr: ip.dst_addr,
        ip_len: u16::from_be_bytes(ip.tot_len),
        ip_id: u16::from_be_bytes(ip.id),
        ip_frag: u16::from_be_bytes(ip.frags),
        ttl: ip.ttl,
        tos: ip.tos,
        protocol: filter.protocol,
        ..ReplyRecord::default()
    };
    let answers = match filter.protocol {
        IPPROTO_TCP => read_tcp(ctx, l4, filter, sweep, &mut record)?,
        IPPROTO_ICMP => read_icmp(ctx, l4, filter, &mut record)?,
        _ => return None,
    };
    Some((record, answers))
}

/// Fills the TCP fields; `Some(true)` when the segment answers one of our probes,
/// `Some(false)` when it looks like a reply but answers none (forged or stale).
#[inline(always)]
fn read_tcp(
    ctx: &XdpContext,
    offset: usize,
    filter: &ProbeFilter,
    sweep: bool,
    record: &mut ReplyRecord,
) -> Option<bool> {
    let tcp: *const TcpHdr = header(ctx, offset)?;
    let tcp = unsafe { &*tcp };
    let flags = unsafe { *(tcp as *const TcpHdr as *const u8).add(TCP_FLAGS_OFFSET) };
    record.src_port = u16::from_be_bytes(tcp.source);
    record.dst_port = u16::from_be_bytes(tcp.dest);
    record.tcp_seq = u32::from_be_bytes(tcp.seq);
    record.tcp_ack = u32::from_be_bytes(tcp.ack_seq);
    record.tcp_window = u16::from_be_bytes(tcp.window);
    record.l4_checksum = u16::from_be_bytes(tcp.check);
    record.tcp_urgent = u16::from_be_bytes(tcp.urg_ptr);
    record.tcp_flags = flags;

    // Only segments to one of our ports can be replies; anything else (on `lo`, our own
    // probes and the host's RSTs too) is none of our business.
    if record.dst_port.wrapping_sub(filter.sport_base) > filter.sport_max_offset {
        return None;
    }
    if sweep {
        // A sweep's SYNs carry cookies and no ACK, so every answer is a SYN-ACK or a RST-ACK;
        // other segments to these ports (the host's own traffic) pass untouched.
        if flags & TCP_FLAG_ACK == 0 || flags & (TCP_FLAG_SYN | TCP_FLAG_RST) == 0 {
            return None;
        }
        let cookie = syn_cookie(
            filter.cookie_key,
            record.src_addr,
            record.src_port,
            record.dst_addr,
            record.dst_port,
        );
        return Some(record.tcp_ack.wrapping_sub(1) == cookie);
    }
    if record.src_port != filter.target_port {
        return None;
    }
    // A reply with ACK acknowledges our sequence number plus at most SYN and FIN; a RST
    // without ACK (the answer to a probe that carried ACK) echoes our ack as its sequence.
    let acknowledges = if flags & TCP_FLAG_ACK != 0 {
        record.tcp_ack.wrapping_sub(filter.tcp_seq) <= 2
    } else {
        flags & TCP_FLAG_RST != 0 && record.tcp_seq == filter.tcp_ack
    };
    Some(acknowledges)
}

/// Fills the ICMP fields; `Some(true)` for an echo reply carrying our identifier,
/// `Some(false)` for another echo reply from the target.
#[inline(always)]
fn read_icmp(
    ctx: &XdpContext,
    offset: usize,
    filter: &ProbeFilter,
    record: &mut ReplyRecord,
) -> Option<bool> {
    let icmp: *const Icmpv4Hdr = header(ctx, offset)?;
    let icmp = unsafe { &*icmp };
    record.icmp_id = u16::from_be_bytes([icmp.data[0], icmp.data[1]]);
    record.icmp_seq = u16::from_be_bytes([icmp.data[2], icmp.data[3]]);
    record.l4_checksum = u16::from_be_bytes(icmp.check);
    if icmp.type_ != ICMP_ECHO_REPLY {
        return None;
    }
    Some(record.icmp_id == filter.icmp_id)
}

/// Rewrites the SYN-ACK in place into the RST that tells its sender to forget the half-open
/// connection: addresses and ports swapped, sequence = the SYN-ACK's ack, no options.
/// None when the packet cannot be rewritten (IP options); it is then just dropped.
#[inline(always)]
fn bounce_as_rst(ctx: &XdpContext, reply: &ReplyRecord) -> Option<()> {
    let ip: *const Ipv4Hdr = header(ctx, EthHdr::LEN)?;
    if unsafe { (*ip).vihl } != 0x45 {
        return None;
    }
    let surplus = (ctx.data_end() - ctx.data()).saturating_sub(RST_FRAME_LEN);
    if surplus > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(surplus as i32)) } != 0 {
        return None;
    }
    // The tail moved: every pointer is checked anew.
    let eth: *mut EthHdr = header(ctx, 0)?;
    let ip: *mut Ipv4Hdr = header(ctx, EthHdr::LEN)?;
    let tcp: *mut TcpHdr = header(ctx, EthHdr::LEN + Ipv4Hdr::LEN)?;
    // SAFETY: all three headers were bounds-checked just above.
    unsafe {
        let eth = &mut *eth;
        core::mem::swap(&mut eth.src_addr, &mut eth.dst_addr);

        let ip = &mut *ip;
        ip.tos = 0;
        ip.tot_len = ((Ipv4Hdr::LEN + TcpHdr::LEN) as u16).to_be_bytes();
        ip.id = [0, 0];
        ip.frags = 0x4000u16.to_be_bytes(); // DF, as the kernel's own RSTs
        ip.ttl = 64;
        ip.src_addr = reply.dst_addr;
        ip.dst_addr = reply.src_addr;
        ip.check = [0, 0];
        let ip_sum = ones_complement_sum(&[
            0x4500,
            (Ipv4Hdr::LEN + TcpHdr::LEN) as u32,
            0x4000,
            (64 << 8) | u32::from(IPPROTO_TCP),
        ]) + address_sum(reply);
        ip.check = fold(ip_sum).to_be_bytes();

        let tcp = &mut *tcp;
        let seq = reply.tcp_ack;
        tcp.source = reply.dst_port.to_be_bytes();
        tcp.dest = reply.src_port.to_be_bytes();
        tcp.seq = seq.to_be_bytes();
        tcp.ack_seq = [0; 4];
        let flag_bytes = tcp as *mut TcpHdr as *mut u8;
        *flag_bytes.add(TCP_FLAGS_OFFSET - 1) = 5 << 4; // 20-byte header, no options
        *flag_bytes.add(TCP_FLAGS_OFFSET) = TCP_FLAG_RST;
        tcp.window = [0, 0];
        tcp.urg_ptr = [0, 0];
        tcp.check = [0, 0];
        let tcp_sum = ones_complement_sum(&[
            u32::from(IPPROTO_TCP),
            TcpHdr::LEN as u32,
            u32::from(reply.dst_port),
            u32::from(reply.src_port),
            seq >> 16,
            seq & 0xffff,
            (5 << 12) | u32::from(TCP_FLAG_RST),
        ]) + address_sum(reply);
        tcp.check = fold(tcp_sum).to_be_bytes();
    }
    Some(())
}

/// The 16-bit words of both addresses, summed (they appear in both checksums).
#[inline(always)]
fn address_sum(reply: &ReplyRecord) -> u32 {
    let [a, b, c, d] = reply.src_addr;
    let [e, f, g, h] = reply.dst_addr;
    ones_complement_sum(&[
        u32::from(u16::from_be_bytes([a, b])),
        u32::from(u16::from_be_bytes([c, d])),
        u32::from(u16::from_be_bytes([e, f])),
        u32::from(u16::from_be_bytes([g, h])),
    ])
}

#[inline(always)]
fn ones_complement_sum(words: &[u32]) -> u32 {
    let mut sum = 0;
    for word in words {
        sum += word;
    }
    sum
}

/// Folds a sum of 16-bit words into the Internet checksum.
#[inline(always)]
fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
