//! prober's eBPF programs. The XDP program (or its twin at TCX ingress) records replies to
//! prober's probes, with a kernel timestamp, into a ring buffer; the TC egress program notes
//! when each probe leaves, so that a reply's record carries both ends of the round trip on the
//! kernel's clock.
//!
//! Both parse the IP header once (`prober_common::wire`, shared with the host's tests and
//! fuzzers) and hand the packet to the probe kind the filter names, one module per kind
//! ([`tcp`], [`icmp`], [`udp`]), and ARP and neighbour discovery to [`neighbour`] when a sweep
//! resolves its on-link targets itself; [`reply`] holds what every kind does with a verdict, [`maps`] the maps,
//! [`packet`] the only access to packet memory.
#![no_std]
#![no_main]

mod icmp;
mod icmp_error;
mod maps;
mod neighbour;
mod packet;
mod raw_ip;
mod reply;
mod tcp;
mod udp;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use maps::Direction;
use packet::{TcFrame, XdpFrame};
use prober_common::{
    wire::{self, Frame, IpPacket, NoPacket},
    ProbeFilter, IPPROTO_ICMPV6, KIND_ICMP_ECHO, KIND_RAW_IP, KIND_TCP, KIND_UDP, MODE_SWEEP,
};
use reply::{Action, Decision};

/// TCX_NEXT: the verdict stays with whatever runs after the program (other TCX programs,
/// clsact filters, the stack). TC_ACT_OK would be final and skip them.
const TCX_NEXT: i32 = -1;
const TC_ACT_SHOT: i32 = 2;

/// The reply matcher in XDP (generic or native): the default hook.
#[xdp]
pub fn prober(mut ctx: XdpContext) -> u32 {
    // Stamped before any parsing: a reply's RTT ends where it reaches the hook.
    let arrived_ns = maps::now_ns();
    let Some(filter) = maps::filter() else {
        return xdp_action::XDP_PASS;
    };
    let mut decision = judge(&XdpFrame(&ctx), filter, arrived_ns);
    let bounced = tcp::bounce(&mut ctx, &mut decision, tcp::xdp_keeps_checksum_state());
    reply::traced(&ctx, filter, &decision);
    match (bounced, decision.action) {
        (true, _) => xdp_action::XDP_TX,
        (false, Action::Drop) if !decision.answer => xdp_action::XDP_DROP,
        (false, _) => xdp_action::XDP_PASS,
    }
}

/// The same matcher at TCX ingress: a sweep's default where XDP would be generic (it spares
/// each reply generic XDP's copy into a head with XDP's headroom), and where another program
/// holds the XDP hook (another prober, any XDP user): TCX links stack. A sweep's matched
/// SYN-ACK is rewritten into its RST and redirected out of the interface it came in by, as
/// XDP_TX would send it.
#[classifier]
pub fn prober_ingress(mut ctx: TcContext) -> i32 {
    let arrived_ns = maps::now_ns();
    let Some(filter) = maps::filter() else {
        return TCX_NEXT;
    };
    let mut decision = judge(&TcFrame(&ctx), filter, arrived_ns);
    let bounced = tcp::bounce(&mut ctx, &mut decision, true);
    reply::traced(&ctx, filter, &decision);
    match (bounced, decision.action) {
        (true, _) => packet::send_back(&ctx),
        (false, Action::Drop) if !decision.answer => TC_ACT_SHOT,
        (false, _) => TCX_NEXT,
    }
}

/// What the probe kind makes of a packet coming in at `arrived_ns`, whichever the hook.
#[inline(always)]
fn judge(frame: &impl Frame, filter: &ProbeFilter, arrived_ns: u64) -> Decision {
    let Some(ip) = maps::packet_room(Direction::Ingress) else {
        return Decision::IGNORED;
    };
    match parse(frame, ip) {
        Ok(()) => {}
        Err(NoPacket::Malformed(Some(dst))) if dst == filter.local_addr => {
            return reply::malformed_ip(dst)
        }
        Err(NoPacket::Other) if neighbour::resolving(filter) => {
            return neighbour::arp(frame, ip, filter, arrived_ns)
        }
        Err(_) => return Decision::IGNORED,
    }
    // Who may send a reply is the kind's to say: a direct answer comes from the target, while
    // an ICMP error comes from any router on the way.
    if ip.dst != filter.local_addr {
        return Decision::IGNORED;
    }
    // ICMP errors about every kind's probes ([`icmp_error`]), before neighbour discovery
    // takes ICMPv6.
    if icmp_error::wanted(frame, ip, filter) {
        return icmp_error::reply(frame, ip, filter, arrived_ns);
    }
    // A sweep resolving its neighbours takes their adverts; of the other ICMPv6 messages an
    // echo sweep's kind takes its replies.
    if neighbour::resolving(filter) && ip.protocol == IPPROTO_ICMPV6 {
        let advert = neighbour::advert(frame, ip, filter, arrived_ns);
        if filter.kind != KIND_ICMP_ECHO || advert.traced {
            return advert;
        }
    }
    match filter.kind {
        KIND_TCP => tcp::reply(frame, ip, filter, arrived_ns),
        KIND_ICMP_ECHO => icmp::reply(frame, ip, filter, arrived_ns),
        KIND_UDP => udp::reply(frame, ip, filter, arrived_ns),
        _ => Decision::IGNORED,
    }
}

/// [`wire::parse_into`] as a function of its own, whose locals take no room in its callers'
/// stack frames (the programs have 512 bytes in all, over every call).
#[inline(never)]
fn parse(frame: &impl Frame, packet: &mut IpPacket) -> Result<(), NoPacket> {
    wire::parse_into(frame, packet)
}

#[classifier]
pub fn prober_egress(ctx: TcContext) -> i32 {
    let frame = TcFrame(&ctx);
    let (Some(filter), Some(ip)) = (maps::filter(), maps::packet_room(Direction::Egress)) else {
        return TCX_NEXT;
    };
    let parsed = parse(&frame, ip);
    if neighbour::resolving(filter) {
        match parsed {
            Ok(()) if ip.protocol == IPPROTO_ICMPV6 => neighbour::asked(&frame, Some(ip), filter),
            Err(NoPacket::Other) => neighbour::asked(&frame, None, filter),
            _ => {}
        }
    }
    // A one-target probe's first fragment (-f) holds the start of its transport header,
    // which names the probe.
    if matches!(parsed, Ok(()) | Err(NoPacket::FirstFragment)) {
        let ours = ip.src == filter.local_addr
            && (filter.mode == MODE_SWEEP || ip.dst == filter.target_addr);
        let probe = match filter.kind {
            KIND_TCP if ours => tcp::departure(&frame, ip, filter),
            KIND_ICMP_ECHO if ours => icmp::departure(&frame, ip, filter),
            KIND_UDP if ours => udp::departure(&frame, ip, filter),
            KIND_RAW_IP if ours => raw_ip::departure(ip, filter),
            _ => None,
        };
        if let Some(probe) = probe {
            reply::departed(&ctx, filter, &probe);
        }
    }
    TCX_NEXT
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
