//! The ICMP echo kind: echo replies carrying our identifier, and our echo requests leaving.
use aya_ebpf::programs::XdpContext;
use network_types::icmp::Icmpv4Hdr;
use prober_common::{trace::Reason, ProbeFilter, IPPROTO_ICMP};

use crate::{
    ip::IpPacket,
    packet::Packet,
    reply::{self, Decision, Probe},
};

const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;

/// An echo message's type, identifier and sequence number.
struct Echo {
    kind: u8,
    id: u16,
    seq: u16,
    checksum: u16,
}

#[inline(always)]
fn echo(packet: &impl Packet, ip: &IpPacket) -> Option<Echo> {
    if ip.protocol != IPPROTO_ICMP {
        return None;
    }
    let icmp: Icmpv4Hdr = packet.read(ip.l4_offset)?;
    Some(Echo {
        kind: icmp.type_,
        id: u16::from_be_bytes([icmp.data[0], icmp.data[1]]),
        seq: u16::from_be_bytes([icmp.data[2], icmp.data[3]]),
        checksum: u16::from_be_bytes(icmp.check),
    })
}

#[inline(always)]
pub fn reply(ctx: &XdpContext, ip: &IpPacket, filter: &ProbeFilter) -> Decision {
    if !reply::from_target(filter, ip) {
        return Decision::IGNORED;
    }
    let Some(echo) = echo(ctx, ip) else {
        return Decision::IGNORED;
    };
    let numbers = (echo.id, echo.seq);
    if echo.kind != ECHO_REPLY {
        return reply::foreign(ip, numbers, Reason::NotAnEchoReply);
    }
    if echo.id != filter.icmp_id {
        return reply::unmatched(filter, ip, numbers, Reason::AnotherIdentifier);
    }
    let probe = Probe {
        slot: echo.seq,
        target: ip.src,
        target_port: 0,
    };
    let mut record = reply::record(ip);
    record.icmp_id = echo.id;
    record.icmp_seq = echo.seq;
    record.l4_checksum = echo.checksum;
    reply::matched(filter, ip, numbers, &probe, record)
}

/// The probe this is, if it is one of our echo requests leaving (TC egress).
#[inline(always)]
pub fn departure(packet: &impl Packet, ip: &IpPacket, filter: &ProbeFilter) -> Option<Probe> {
    let echo = echo(packet, ip)?;
    if echo.kind != ECHO_REQUEST || echo.id != filter.icmp_id {
        return None;
    }
    Some(Probe {
        slot: echo.seq,
        target: ip.dst,
        target_port: 0,
    })
}
