//! The UDP kind: datagrams from a probed port to one of our source ports, and our probes
//! leaving. (Port unreachables and the other ICMP errors about them are [`crate::icmp_error`]'s.)
//!
//! A UDP answer echoes nothing of the probe, so a datagram is ours by its endpoints alone.
//! One target: from the target and a probed port to one of our source ports (userspace takes
//! only those of probes it sent). A sweep: to the sweep's block of source ports, from
//! anywhere; userspace takes it only from a (host, port) of the sweep and at the source port
//! its probe to that (host, port) left from. A forger must guess which of the block's ports a
//! probe to that host and port used, which the run's random walk decides.
//!
//! Probes of one flow (a traceroute's) leave from one port, so an answer cannot say which of
//! them it answers: userspace gives it to the latest probe and times it from that probe's
//! send (see `UdpProbe::names_its_probe`). Their departures are filed by
//! [`ProbeFilter::udp_slot`], under which the errors quoting them are found.
use prober_common::{
    syn_cookie,
    trace::Reason,
    wire::{self, Checksum, Frame, IpPacket},
    ProbeFilter, IPPROTO_UDP,
};

use crate::reply::{self, Decision, Probe};

#[inline(never)]
pub fn reply(frame: &impl Frame, ip: &IpPacket, filter: &ProbeFilter, arrived_ns: u64) -> Decision {
    if ip.protocol != IPPROTO_UDP {
        return Decision::IGNORED;
    }
    let Some(datagram) = wire::datagram(frame, ip) else {
        return reply::malformed(ip, (0, 0), Reason::MalformedHeader);
    };
    // The host's own UDP (DNS answers, on `lo` our own probes) is none of our business, and not
    // traced.
    let probed = reply::sweep(filter) || filter.probes_port(datagram.source);
    if !reply::from_target(filter, ip) || !probed || !filter.is_our_port(datagram.dest) {
        return Decision::IGNORED;
    }
    let ports = (datagram.source, datagram.dest);
    let checksum = Checksum::Udp {
        field: datagram.checksum,
    };
    if let Err(refused) = reply::validated(frame, ip, filter, ports, checksum) {
        return refused;
    }
    let probe = Probe {
        slot: datagram.dest.wrapping_sub(filter.sport_base),
        target: ip.src,
        target_port: datagram.source,
    };
    reply::matched(filter, ip, ports, &probe, arrived_ns, |record| {
        record.src_port = datagram.source;
        record.dst_port = datagram.dest;
        record.l4_checksum = datagram.checksum;
    })
}

/// The probe this datagram is, if it is one of ours leaving (TC egress).
#[inline(always)]
pub fn departure(packet: &impl Frame, ip: &IpPacket, filter: &ProbeFilter) -> Option<Probe> {
    if ip.protocol != IPPROTO_UDP {
        return None;
    }
    let datagram = wire::datagram(packet, ip)?;
    let probed = reply::sweep(filter) || filter.probes_port(datagram.dest);
    if !probed || !filter.is_our_port(datagram.source) {
        return None;
    }
    let slot = filter.udp_slot(ip.version, datagram.source, ip.id, datagram.checksum);
    if reply::sweep(filter) {
        // Filed under the cookie of its endpoints, which userspace works out from an answer's.
        let cookie = syn_cookie(
            filter.cookie_key,
            &ip.dst,
            datagram.dest,
            &ip.src,
            datagram.source,
        );
        reply::note_sweep_departure(ip, slot, cookie);
    }
    Some(Probe {
        slot,
        target: ip.dst,
        target_port: datagram.dest,
    })
}
