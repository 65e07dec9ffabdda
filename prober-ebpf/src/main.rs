//! prober's eBPF programs. The XDP program records replies to prober's probes, with a kernel
//! timestamp, into a ring buffer; the TC egress program notes when each probe leaves, so that a
//! reply's record carries both ends of the round trip on the kernel's clock.
//!
//! Both parse the IP header once (`prober_common::wire`, shared with the host's tests and
//! fuzzers) and hand the packet to the probe kind the filter names, one module per kind
//! ([`tcp`], [`icmp`]); [`reply`] holds what every kind does with a verdict, [`maps`] the maps,
//! [`packet`] the only access to packet memory.
#![no_std]
#![no_main]

mod icmp;
mod maps;
mod packet;
mod reply;
mod tcp;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use packet::{TcFrame, XdpFrame};
use prober_common::{
    wire::{self, Parsed},
    KIND_ICMP_ECHO, KIND_TCP, MODE_SWEEP,
};

/// TCX_NEXT: the egress program only watches; the verdict stays with whatever runs after it
/// (other TCX programs, clsact filters). TC_ACT_OK would be final and skip them.
const TC_ACT_UNSPEC: i32 = -1;

#[xdp]
pub fn prober(mut ctx: XdpContext) -> u32 {
    let Some(filter) = maps::filter() else {
        return xdp_action::XDP_PASS;
    };
    let ip = match wire::parse(&XdpFrame(&ctx)) {
        Parsed::Ip(ip) => ip,
        Parsed::Other => return xdp_action::XDP_PASS,
        Parsed::Malformed(Some(dst)) if dst == filter.local_addr => {
            return reply::traced(&ctx, filter, reply::malformed_ip(dst))
        }
        Parsed::Malformed(_) => return xdp_action::XDP_PASS,
    };
    // Who may send a reply is the kind's to say: a direct answer comes from the target, while
    // an ICMP error (no kind takes them yet) would come from any router on the way.
    if ip.dst != filter.local_addr {
        return xdp_action::XDP_PASS;
    }
    let decision = match filter.kind {
        KIND_TCP => tcp::reply(&mut ctx, &ip, filter),
        KIND_ICMP_ECHO => icmp::reply(&ctx, &ip, filter),
        _ => return xdp_action::XDP_PASS,
    };
    reply::traced(&ctx, filter, decision)
}

#[classifier]
pub fn prober_egress(ctx: TcContext) -> i32 {
    let frame = TcFrame(&ctx);
    if let (Some(filter), Parsed::Ip(ip)) = (maps::filter(), wire::parse(&frame)) {
        let ours = ip.src == filter.local_addr
            && (filter.mode == MODE_SWEEP || ip.dst == filter.target_addr);
        let probe = match filter.kind {
            KIND_TCP if ours => tcp::departure(&frame, &ip, filter),
            KIND_ICMP_ECHO if ours => icmp::departure(&frame, &ip, filter),
            _ => None,
        };
        if let Some(probe) = probe {
            reply::departed(&ctx, filter, &probe);
        }
    }
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
