//! What both run kinds set up the same way: the transmit paths, then the eBPF programs on
//! the route's interface; and how a reply's round trip is timed.
use std::net::IpAddr;

use anyhow::{bail, Result};
use prober_common::{ProbeFilter, ReplyRecord};

use crate::{
    bpf::{AttachMode, Attachment, ReplyChannel, ReplyMatcher},
    net::{Interface, Route, Watch},
    transmit::{self, Transmit},
};

/// How a run wants its probes sent and its replies matched.
#[derive(Clone, Copy, Debug)]
pub struct Wiring<'a> {
    /// Transmit paths to open: one per send thread.
    pub senders: usize,
    /// Every probe goes to the route's next hop (see [`transmit::open`]).
    pub one_next_hop: bool,
    pub qdisc_bypass: bool,
    /// The interface the user named with -I, if any: routes are looked up through it.
    pub via: Option<&'a Interface>,
    /// Where the probes go (the first address of each target range), for [`Watch`].
    pub destinations: &'a [IpAddr],
    /// The XDP program answers replies itself (XDP_TX), as sweeps bounce SYN-ACKs.
    pub answers_replies: bool,
    /// `--xdp-mode`, or None for TCX ingress where the kernel has it (see [`Attachment::mode`]).
    pub xdp_mode: Option<AttachMode>,
    /// `--bpf-trace`.
    pub trace: bool,
    /// A sweep's departure table rows (see [`Attachment::sweep_epochs`]).
    pub sweep_epochs: Option<u32>,
    /// On-link targets the run resolves itself, at most this many at a time (0: none; the
    /// kernel addresses probes, see [`transmit::open`]).
    pub neighbours: u32,
}

/// A run's plumbing: probes can leave, replies are being matched.
pub struct Plumbing {
    pub transmits: Vec<Box<dyn Transmit>>,
    /// Dropping it detaches the programs.
    pub matcher: ReplyMatcher,
    pub channel: ReplyChannel,
    /// The interface's and routes' changes, for the reply loop to end the run on.
    pub watch: Watch,
}

impl Plumbing {
    pub fn install(route: &Route, filter: &ProbeFilter, wiring: Wiring) -> Result<Plumbing> {
        route.interface.require_ethernet_frames()?;
        // A sweep answers each SYN-ACK with a RST sent by XDP_TX. Native XDP_TX on a veth
        // queues the frame for the peer's NAPI, which the kernel only runs for it when the peer
        // has an XDP program of its own: measured on 6.18, 0 of 100 bounced RSTs reached a bare
        // peer, 0 of 100 one with GRO on, 100 of 100 one with an XDP_PASS program. prober cannot
        // count on the peer (often in another namespace, not ours to change), and the targets
        // would keep half-open connections while the footer counts RSTs bounced; so refused.
        if wiring.answers_replies
            && wiring.xdp_mode == Some(AttachMode::Native)
            && route.interface.is_veth()?
        {
            bail!(
                "--xdp-mode native cannot bounce a sweep's SYN-ACKs on the veth {}: native \
                 XDP_TX on a veth drops frames unless its peer runs an XDP program; use \
                 --xdp-mode generic (the default)",
                route.interface.name
            );
        }
        // First, so that no change from here on goes unseen.
        let watch = Watch::open(route, wiring.destinations.iter().copied(), wiring.via)?;
        // The transmit paths next: opening one may wait up to a second for the next hop's
        // MAC, and nothing should be attached to the interface during that wait.
        let transmits = (0..wiring.senders.max(1))
            .map(|_| match wiring.neighbours {
                0 => transmit::open(route, wiring.one_next_hop, wiring.qdisc_bypass),
                _ => transmit::open_on_link(route, wiring.qdisc_bypass),
            })
            .collect::<Result<Vec<_>>>()?;
        let attachment = Attachment {
            mode: wiring.xdp_mode,
            time_departures: !transmits[0].skips_tc(),
            trace: wiring.trace,
            sweep_epochs: wiring.sweep_epochs,
            neighbours: wiring.neighbours,
        };
        let filter = ProbeFilter {
            // `lo` has no Ethernet address: its frames carry zeros.
            local_mac: route.interface.ethernet_address()?.unwrap_or_default(),
            neighbours: u8::from(wiring.neighbours > 0),
            ..*filter
        };
        let (matcher, channel) = ReplyMatcher::attach(&route.interface, &filter, attachment)?;
        Ok(Plumbing {
            transmits,
            matcher,
            channel,
            watch,
        })
    }

    /// For `-V`: how replies are matched and where send times come from.
    pub fn describe_matching(&self) -> String {
        format!(
            "reply matcher at {}, send times from {}",
            self.matcher.hook, self.matcher.departures
        )
    }
}

/// Nanoseconds from a probe's departure to `reply`: the departure TC egress saw, or else the
/// send thread's own reading (`userspace_sent_ns`), taken just before the probe went to the
/// kernel; None when neither is known.
pub fn rtt_ns(reply: &ReplyRecord, userspace_sent_ns: impl FnOnce() -> Option<u64>) -> Option<u64> {
    let sent_ns = reply.kernel_departure().or_else(userspace_sent_ns)?;
    Some(reply.kernel_ns.saturating_sub(sent_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_departure_beats_the_send_threads_clock() {
        let reply = ReplyRecord {
            kernel_ns: 10_000,
            sent_ns: 9_000,
            ..ReplyRecord::default()
        };
        assert_eq!(rtt_ns(&reply, || Some(8_000)), Some(1_000));
        let untimed = ReplyRecord {
            sent_ns: 0,
            ..reply
        };
        assert_eq!(rtt_ns(&untimed, || Some(8_000)), Some(2_000));
        assert_eq!(rtt_ns(&untimed, || None), None);
    }
}
