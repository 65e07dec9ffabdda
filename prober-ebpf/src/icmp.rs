//! The ICMP echo kind, ICMPv6's for IPv6: replies of the type the filter names (echo, or
//! timestamp or address mask: hping3's -C) carrying our identifier, and our requests leaving.
//! A sweep's echo carries a source-port slot of the sweep's as its identifier and the low half
//! of the cookie of (target, 0, us, identifier) as its sequence number, as zmap's
//! icmp_echoscan validates its replies: an echo reply is ours when it echoes both.
use prober_common::{
    syn_cookie,
    trace::Reason,
    wire::{self, Checksum, Echo, Frame, IpPacket},
    IpAddress, ProbeFilter,
};

use crate::reply::{self, Decision, Probe};

/// The query message of an ICMP packet of its family; Err(()) for one too short for its type.
#[inline(always)]
fn echo(packet: &impl Frame, ip: &IpPacket) -> Option<Result<Echo, ()>> {
    if ip.protocol != ip.icmp_protocol() {
        return None;
    }
    Some(wire::echo(packet, ip).ok_or(()))
}

#[inline(never)]
pub fn reply(frame: &impl Frame, ip: &IpPacket, filter: &ProbeFilter, arrived_ns: u64) -> Decision {
    let echo = match echo(frame, ip) {
        None => return Decision::IGNORED,
        Some(Err(())) => return reply::malformed(ip, (0, 0), Reason::MalformedHeader),
        Some(Ok(echo)) => echo,
    };
    if !reply::from_target(filter, ip) {
        return Decision::IGNORED;
    }
    let numbers = (echo.id, echo.seq);
    if echo.icmp_type != filter.icmp_reply_type {
        return reply::foreign(ip, numbers, Reason::NotAnEchoReply);
    }
    let sweep = reply::sweep(filter);
    if !carries_our_id(filter, &echo) {
        return reply::unmatched(ip, numbers, Reason::AnotherIdentifier);
    }
    if let Err(refused) = reply::validated(frame, ip, filter, numbers, Checksum::Message) {
        return refused;
    }
    if sweep && echo.seq != sweep_cookie(filter, &ip.src, &ip.dst, echo.id) {
        return reply::unmatched(ip, numbers, Reason::AcknowledgesNoProbe);
    }
    let probe = Probe {
        slot: slot(filter, echo.id, echo.seq),
        target: ip.src,
        target_port: 0,
    };
    reply::matched(filter, ip, numbers, &probe, arrived_ns, |record| {
        record.icmp_id = echo.id;
        record.icmp_seq = echo.seq;
        record.l4_checksum = echo.checksum;
        record.icmp_data = echo.data;
    })
}

/// The departure slot of the echo with identifier `id` and sequence number `seq`: a sweep's
/// source-port slot (its identifier), one target's sequence number.
#[inline(always)]
pub fn slot(filter: &ProbeFilter, id: u16, seq: u16) -> u16 {
    if reply::sweep(filter) {
        id.wrapping_sub(filter.sport_base)
    } else {
        seq
    }
}

/// Whether the echo's identifier is ours: one target's (with its sequence number, for probes
/// of one flow), or one of a sweep's source-port slots.
#[inline(always)]
fn carries_our_id(filter: &ProbeFilter, echo: &Echo) -> bool {
    if reply::sweep(filter) {
        filter.is_our_port(echo.id)
    } else {
        filter.is_our_echo(echo.id, echo.seq)
    }
}

/// The sequence number of a sweep's echo with identifier `id` from `us` to `target`: the low
/// half of the cookie of (target, 0, us, `id`).
#[inline(always)]
pub fn sweep_cookie(filter: &ProbeFilter, target: &IpAddress, us: &IpAddress, id: u16) -> u16 {
    syn_cookie(filter.cookie_key, target, 0, us, id) as u16
}

/// The probe this is, if it is one of our requests leaving (TC egress); a sweep's is filed
/// here, in its own slot.
#[inline(always)]
pub fn departure(packet: &impl Frame, ip: &IpPacket, filter: &ProbeFilter) -> Option<Probe> {
    let echo = echo(packet, ip)?.ok()?;
    if echo.icmp_type != filter.icmp_type || !carries_our_id(filter, &echo) {
        return None;
    }
    let slot = slot(filter, echo.id, echo.seq);
    if reply::sweep(filter) {
        reply::note_sweep_departure(ip, slot, u32::from(echo.seq));
    }
    Some(Probe {
        slot,
        target: ip.dst,
        target_port: 0,
    })
}
