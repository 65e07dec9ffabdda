//! The neighbour resolver's kernel half, for sweeps that resolve their on-link targets
//! themselves (the filter's `neighbours`): TC egress notes each ARP request or neighbour
//! solicitation of ours as it leaves, and XDP takes the first answer to it into
//! [`NEIGHBOURS`] and the ring buffer. Every answer goes on to the host's stack untouched,
//! whatever is made of it here: the kernel's own neighbour handling sees what it would
//! without prober.
//!
//! What is taken: an answer [`wire`] accepts (for the sender's own address, to our address
//! and MAC, from the host itself), for an address we asked and nobody has answered yet. A
//! forger on the link who answers before the host wins, as it would against the kernel's
//! own ARP; nothing overwrites an answer taken, or creates one for an address not asked.
use aya_ebpf::{bindings::BPF_NOEXIST, macros::map, maps::HashMap};
use prober_common::{
    trace::{Fate, Reason},
    wire::{self, Frame, IpPacket, NeighbourAnswer, Neighbourly},
    Counter, IpAddress, Neighbour, NeighbourRecord, ProbeFilter, NEIGHBOUR_ASKED,
    NEIGHBOUR_RESOLVED,
};

use crate::{
    maps,
    reply::{self, Action, Decision},
};

/// Sized by userspace at load to the neighbours a sweep has asked and not yet settled.
#[map]
static NEIGHBOURS: HashMap<IpAddress, Neighbour> = HashMap::with_max_entries(1, 0);

/// Whether an incoming packet is for the resolver at all: ARP (no IP packet), or ICMPv6.
#[inline(always)]
pub fn resolving(filter: &ProbeFilter) -> bool {
    filter.neighbours != 0
}

/// An ARP frame coming in (XDP or TCX ingress): `ip` is the room the frame's IP header would
/// have had, for the trace.
#[inline(never)]
pub fn arp(
    frame: &impl Frame,
    ip: &mut IpPacket,
    filter: &ProbeFilter,
    arrived_ns: u64,
) -> Decision {
    let mut answer = NeighbourAnswer::default();
    let judged = wire::arp_reply(frame, &filter.local_addr, filter.local_mac, &mut answer);
    ip.src = answer.addr;
    take(judged, ip, &answer, arrived_ns)
}

/// An ICMPv6 packet to our address coming in.
#[inline(never)]
pub fn advert(
    frame: &impl Frame,
    ip: &IpPacket,
    filter: &ProbeFilter,
    arrived_ns: u64,
) -> Decision {
    let mut answer = NeighbourAnswer::default();
    let judged = wire::neighbour_advert(frame, ip, filter.local_mac, &mut answer);
    take(judged, ip, &answer, arrived_ns)
}

/// What [`arp`] and [`advert`] make of what `wire` judged: an answer to an ask of ours that
/// nobody answered yet is taken, anything else counted and passed.
#[inline(always)]
fn take(judged: Neighbourly, ip: &IpPacket, answer: &NeighbourAnswer, arrived_ns: u64) -> Decision {
    match judged {
        Neighbourly::Other => return Decision::IGNORED,
        Neighbourly::Refused(reason) => return reply::unmatched(ip, (0, 0), reason),
        Neighbourly::Answer => {}
    }
    let Some(entry) = NEIGHBOURS.get_ptr_mut(answer.addr) else {
        return reply::unmatched(ip, (0, 0), Reason::AnswersNoAsk);
    };
    // SAFETY: a pointer to the map's value, valid while the program runs. Two answers racing
    // on two CPUs can both see ASKED: both records are queued, and userspace takes the first
    // it reads (the ring buffer keeps the order they were reserved in).
    let asked_ns = unsafe {
        if (*entry).state != NEIGHBOUR_ASKED {
            return reply::unmatched(ip, (0, 0), Reason::AnswersNoAsk);
        }
        (*entry).state = NEIGHBOUR_RESOLVED;
        (*entry).answered_ns = arrived_ns;
        (*entry).mac = answer.mac;
        (*entry).asked_ns
    };
    let Some(mut slot) = maps::REPLIES.reserve::<NeighbourRecord>(0) else {
        maps::count(Counter::RingFull);
        return Decision::traced(Action::Pass, Fate::Lost, Reason::RingBufferFull, ip, (0, 0));
    };
    slot.write(NeighbourRecord {
        asked_ns,
        answered_ns: arrived_ns,
        addr: answer.addr,
        mac: answer.mac,
        _pad: [0; 2],
    });
    slot.submit(0);
    Decision::traced(
        Action::Pass,
        Fate::Matched,
        Reason::AnswersAProbe,
        ip,
        (0, 0),
    )
}

/// A frame leaving (TC egress): if it is our ARP request or neighbour solicitation, the
/// address it asks for is filed ASKED, unless it already is (the first ask times the
/// answer) or was answered.
#[inline(never)]
pub fn asked(frame: &impl Frame, ip: Option<&IpPacket>, filter: &ProbeFilter) {
    let mut target = IpAddress::default();
    let ours = match ip {
        None => wire::arp_request(frame, &filter.local_addr, filter.local_mac, &mut target),
        Some(ip) => ip.src == filter.local_addr && wire::solicitation(frame, ip, &mut target),
    };
    if ours {
        let entry = Neighbour {
            asked_ns: maps::now_ns(),
            state: NEIGHBOUR_ASKED,
            ..Neighbour::default()
        };
        // Full: the answer is not taken, and userspace finds the host down.
        let _ = NEIGHBOURS.insert(target, entry, u64::from(BPF_NOEXIST));
    }
}
