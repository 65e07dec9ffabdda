//! The ICMP echo kind, ICMPv6's for IPv6: replies of the type the filter names (echo, or
//! timestamp or address mask: hping3's -C) carrying our identifier, and our requests leaving.
use prober_common::{
    trace::Reason,
    wire::{self, Checksum, Echo, Frame, IpPacket},
    ProbeFilter,
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
    if !filter.is_our_echo(echo.id, echo.seq) {
        return reply::unmatched(ip, numbers, Reason::AnotherIdentifier);
    }
    if let Err(refused) = reply::validated(frame, ip, filter, numbers, Checksum::Message) {
        return refused;
    }
    let probe = Probe {
        slot: echo.seq,
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

/// The probe this is, if it is one of our requests leaving (TC egress).
#[inline(always)]
pub fn departure(packet: &impl Frame, ip: &IpPacket, filter: &ProbeFilter) -> Option<Probe> {
    let echo = echo(packet, ip)?.ok()?;
    if echo.icmp_type != filter.icmp_type || !filter.is_our_echo(echo.id, echo.seq) {
        return None;
    }
    Some(Probe {
        slot: echo.seq,
        target: ip.dst,
        target_port: 0,
    })
}
