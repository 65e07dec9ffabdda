//! XDP reply matcher: records SYN-ACKs, RSTs and ICMP echo replies that answer prober's
//! probes, with a kernel timestamp, into a ring buffer. Every packet passes on untouched.
#![no_std]
#![no_main]

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use network_types::{eth::EthHdr, icmp::Icmpv4Hdr, ip::Ipv4Hdr, tcp::TcpHdr};
use prober_common::{Counter, ProbeFilter, ReplyRecord, COUNTER_SLOTS, IPPROTO_ICMP, IPPROTO_TCP};

#[map]
static FILTER: Array<ProbeFilter> = Array::with_max_entries(1, 0);

/// 4 MiB: each record takes 56 bytes, so ~75 000 replies can wait for userspace.
#[map]
static REPLIES: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

const ETH_P_IP: u16 = 0x0800;
const ICMP_ECHO_REPLY: u8 = 0;
const TCP_FLAG_RST: u8 = 0x04;
const TCP_FLAG_ACK: u8 = 0x10;
/// Offset of the flags byte in the TCP header.
const TCP_FLAGS_OFFSET: usize = 13;

#[xdp]
pub fn prober(ctx: XdpContext) -> u32 {
    record_reply(&ctx);
    xdp_action::XDP_PASS
}

/// Returns a bounds-checked pointer to a `T` at `offset` into the packet.
#[inline(always)]
fn header<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data() + offset;
    if start + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some(start as *const T)
}

#[inline(always)]
fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot is only touched by this CPU.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn record_reply(ctx: &XdpContext) -> Option<()> {
    let filter = FILTER.get(0)?;
    let eth: *const EthHdr = header(ctx, 0)?;
    if u16::from_be(unsafe { (*eth).ether_type }) != ETH_P_IP {
        return None;
    }
    let ip: *const Ipv4Hdr = header(ctx, EthHdr::LEN)?;
    let ip = unsafe { &*ip };
    if ip.src_addr != filter.target_addr
        || ip.dst_addr != filter.local_addr
        || ip.proto as u8 != filter.protocol
    {
        return None;
    }
    let header_words = usize::from(ip.vihl & 0x0f);
    if header_words < 5 {
        return None; // malformed: shorter than the fixed IPv4 header
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
        IPPROTO_TCP => read_tcp(ctx, l4, filter, &mut record)?,
        IPPROTO_ICMP => read_icmp(ctx, l4, filter, &mut record)?,
        _ => return None,
    };
    if !answers {
        count(Counter::Unmatched);
        return None;
    }
    record.kernel_ns = unsafe { bpf_ktime_get_ns() };
    match REPLIES.reserve::<ReplyRecord>(0) {
        Some(mut entry) => {
            entry.write(record);
            entry.submit(0);
            count(Counter::Matched);
        }
        None => count(Counter::RingFull),
    }
    Some(())
}

/// Fills the TCP fields; `Some(true)` when the segment answers one of our probes,
/// `Some(false)` when it looks like a reply but answers none (forged or stale).
#[inline(always)]
fn read_tcp(
    ctx: &XdpContext,
    offset: usize,
    filter: &ProbeFilter,
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

    // Only segments from the probed port to one of our ports can be replies; anything else
    // (on `lo`, our own probes and the host's RSTs too) is none of our business.
    if record.src_port != filter.target_port
        || record.dst_port.wrapping_sub(filter.sport_base) > filter.sport_max_offset
    {
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
