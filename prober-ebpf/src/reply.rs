//! What every kind does once it has judged a packet: count it, queue a reply's record, and
//! hand back what becomes of the packet with, for the trace, what happened and why.
//!
//! The trace (`--bpf-trace`) is one aya-log statement per program, of numbers only, so it is
//! cheap to verify; it costs nothing when it is off: userspace sets aya-log's level before the
//! programs are loaded, and the verifier removes the statement below it as dead code.
use aya_ebpf::{programs::TcContext, EbpfContext};
use aya_log_ebpf::trace;
use prober_common::{
    trace::{Fate, Reason},
    wire::{self, Checksum, ChecksumField, Frame, IpPacket, IpVersion},
    Counter, IpAddress, ProbeFilter, ReplyRecord, MODE_SWEEP,
};

use crate::maps;

/// Which probe a packet is, or answers: its departure slot (the kind numbers them) and where
/// it went.
pub struct Probe {
    pub slot: u16,
    pub target: IpAddress,
    pub target_port: u16,
}

/// What becomes of a packet, and what the trace says about it if `traced`. (No `Option`s:
/// for None the compiler copies the payload's undefined bytes around, and the verifier
/// refuses reading what was never written — registers always, stack without CAP_PERFMON.)
pub struct Decision {
    pub action: Action,
    pub traced: bool,
    pub event: Event,
    /// A matched SYN-ACK of a sweep, which must not be dropped unanswered (the target would
    /// hold the half-open connection): the hook answers it itself with `rst` where it can
    /// (XDP_TX), else passes it to the host's stack, whose RST ends the connection (TC ingress;
    /// XDP, for a frame it cannot rewrite).
    pub answer: bool,
    pub rst: Rst,
}

/// What the hook does with a packet, in either hook's terms.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// On to the host's stack (and any program after ours).
    Pass,
    /// Ours, recorded: the host's stack need not see it.
    Drop,
}

/// The RST that ends the half-open connection a SYN-ACK answered: from our address and port
/// to theirs, with the SYN-ACK's ack as its sequence number.
#[derive(Clone, Copy)]
pub struct Rst {
    /// Whether the SYN-ACK's frame can become the RST (no IP options or extension headers).
    pub rewritable: bool,
    pub version: IpVersion,
    /// The SYN-ACK's [`IpPacket::address_sum`], which is the RST's too.
    pub address_sum: u32,
    pub our_port: u16,
    pub their_port: u16,
    pub seq: u32,
    /// What the SYN-ACK's checksum field held: the RST's is written alike.
    pub checksum: ChecksumField,
}

impl Rst {
    const NONE: Rst = Rst {
        rewritable: false,
        version: IpVersion::V4,
        address_sum: 0,
        our_port: 0,
        their_port: 0,
        seq: 0,
        checksum: ChecksumField::Complete,
    };
}

/// One trace line: what happened to a packet from `from`, and the kind's two numbers that
/// tell it apart (ports for TCP, identifier and sequence number for ICMP echo).
pub struct Event {
    pub fate: Fate,
    pub reason: Reason,
    pub from: IpAddress,
    pub numbers: (u16, u16),
}

impl Decision {
    /// Nothing to do with prober: passed, and not traced.
    pub const IGNORED: Decision = Decision {
        action: Action::Pass,
        answer: false,
        rst: Rst::NONE,
        traced: false,
        event: Event {
            fate: Fate::Passed,
            reason: Reason::AnswersAProbe,
            from: IpAddress([0; 16]),
            numbers: (0, 0),
        },
    };
}

#[inline(always)]
pub fn sweep(filter: &ProbeFilter) -> bool {
    filter.mode == MODE_SWEEP
}

/// A sweep probe's epoch, which its sender put where replies and the kernel ignore it: the
/// IPv4 identification, the IPv6 flow label's low 16 bits.
#[inline(always)]
pub fn epoch(ip: &IpPacket) -> u16 {
    match ip.version {
        IpVersion::V4 => ip.id,
        IpVersion::V6 => ip.flow_label as u16,
    }
}

/// Files a sweep probe leaving (TC egress) in its departure slot, by its source-port slot
/// `port_offset` and its [`epoch`].
#[inline(always)]
pub fn note_sweep_departure(ip: &IpPacket, port_offset: u16, cookie: u32) {
    maps::note_sweep_departure(port_offset, epoch(ip), cookie);
}

/// Whether a direct answer (not an ICMP error) may come from this packet's source: any source
/// in a sweep, whose cookies vouch for it; the target alone otherwise.
#[inline(always)]
pub fn from_target(filter: &ProbeFilter, ip: &IpPacket) -> bool {
    sweep(filter) || ip.src == filter.target_addr
}

/// Shaped like a reply, but not one: passed on to the host's stack untouched.
#[inline(always)]
pub fn foreign(ip: &IpPacket, numbers: (u16, u16), reason: Reason) -> Decision {
    Decision::traced(Action::Pass, Fate::Passed, reason, ip, numbers)
}

/// Shaped like a reply to our probes but answering none of them: forged, stale, another
/// run's — or the host's own traffic on ports a sweep uses. Counted, and left to the host's
/// stack, whose it may be.
#[inline(always)]
pub fn unmatched(ip: &IpPacket, numbers: (u16, u16), reason: Reason) -> Decision {
    maps::count(Counter::Unmatched);
    Decision::traced(Action::Pass, Fate::Passed, reason, ip, numbers)
}

/// A frame to us the kernel would drop, or a candidate reply it would not accept: counted,
/// never matched, and left to the kernel to drop.
#[inline(always)]
pub fn malformed(ip: &IpPacket, numbers: (u16, u16), reason: Reason) -> Decision {
    maps::count(Counter::Malformed);
    Decision::traced(Action::Pass, Fate::Passed, reason, ip, numbers)
}

/// An IP header to `dst` the kernel would drop (nothing in it can be trusted but that).
#[inline(always)]
pub fn malformed_ip(dst: IpAddress) -> Decision {
    maps::count(Counter::Malformed);
    Decision {
        action: Action::Pass,
        answer: false,
        rst: Rst::NONE,
        traced: true,
        event: Event {
            fate: Fate::Passed,
            reason: Reason::MalformedHeader,
            from: dst,
            numbers: (0, 0),
        },
    }
}

/// A candidate reply, checked as the host would before it counts: Ok is what its checksum
/// field held, Err the decision on one it would not accept.
#[inline(always)]
pub fn validated(
    frame: &impl Frame,
    ip: &IpPacket,
    filter: &ProbeFilter,
    numbers: (u16, u16),
    checksum: Checksum,
) -> Result<ChecksumField, Decision> {
    wire::accepted(frame, ip, filter.local_mac, checksum)
        .map_err(|reason| malformed(ip, numbers, reason))
}

/// A reply to `probe` that arrived at `arrived_ns`: stamped with both ends of its round trip
/// and queued for userspace, with the IP header's fields and the kind's (`kind_fields`).
/// Then one target leaves it to the host's stack (as hping3's replies reach it); a sweep's
/// replies are dropped, so the host spends nothing on them (the kind may answer them first).
#[inline(always)]
pub fn matched(
    filter: &ProbeFilter,
    ip: &IpPacket,
    numbers: (u16, u16),
    probe: &Probe,
    arrived_ns: u64,
    kind_fields: impl FnOnce(&mut ReplyRecord),
) -> Decision {
    // A sweep's departures are userspace's to look up (a reply does not say which epoch).
    let sent_ns = if sweep(filter) {
        0
    } else {
        maps::departure(probe.slot, &probe.target, probe.target_port)
    };
    let queued = maps::submit(sweep(filter), |record| {
        record.kernel_ns = arrived_ns;
        record.sent_ns = sent_ns;
        record.src_addr = ip.src;
        record.ip_len = ip.len;
        record.ip_id = ip.id;
        record.ip_frag = ip.frag;
        record.ttl = ip.ttl;
        record.tos = ip.tos;
        record.protocol = ip.protocol;
        record.flow_label = ip.flow_label;
        kind_fields(record);
    });
    let (fate, reason) = if queued {
        (Fate::Matched, Reason::AnswersAProbe)
    } else {
        (Fate::Lost, Reason::RingBufferFull)
    };
    let action = if sweep(filter) {
        Action::Drop
    } else {
        Action::Pass
    };
    Decision::traced(action, fate, reason, ip, numbers)
}

impl Decision {
    #[inline(always)]
    pub fn traced(
        action: Action,
        fate: Fate,
        reason: Reason,
        ip: &IpPacket,
        numbers: (u16, u16),
    ) -> Decision {
        Decision {
            action,
            answer: false,
            rst: Rst::NONE,
            traced: true,
            event: Event {
                fate,
                reason,
                from: ip.src,
                numbers,
            },
        }
    }
}

/// Files the departure of one of our probes (TC egress; the kind files a sweep's itself).
#[inline(always)]
pub fn departed(ctx: &TcContext, filter: &ProbeFilter, probe: &Probe) {
    if !sweep(filter) {
        maps::note_departure(probe.slot, &probe.target, probe.target_port);
    }
    log(
        ctx,
        filter,
        &Event {
            fate: Fate::Departed,
            reason: Reason::IsAProbe,
            from: probe.target,
            numbers: (probe.target_port, probe.slot),
        },
    );
}

/// The trace line of a decision on a packet coming in.
#[inline(always)]
pub fn traced(ctx: &impl EbpfContext, filter: &ProbeFilter, decision: &Decision) {
    if decision.traced {
        log(ctx, filter, &decision.event);
    }
}

#[inline(always)]
fn log(ctx: &impl EbpfContext, filter: &ProbeFilter, event: &Event) {
    trace!(
        ctx,
        "{} {} {} {:i} {} {}",
        filter.kind,
        event.fate as u8,
        event.reason as u8,
        event.from.0,
        event.numbers.0,
        event.numbers.1
    );
}
