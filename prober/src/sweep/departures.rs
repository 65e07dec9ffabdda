//! When each probe of a sweep left: a table with a slot per probe in send order
//! ([`sweep_departure_slot`]), as many as leave within a `--wait` (and a margin) at the
//! sweep's rate, so its memory is flat in the sweep's size. The TC egress program fills it
//! where it sees the probes leave (userspace reads it mapped, without a system call); where
//! it does not (`--qdisc-bypass`, no TCX), the send threads fill one of their own, in the same
//! slots. A reply finds its probe's slot from its target and port ([`super::plan::Plan::walk_index`]);
//! the slot's cookie must be the one the reply echoes, so a slot reused meanwhile gives no RTT
//! (counted), never another probe's.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use prober_common::{sweep_departure_slot, SweepDeparture, SWEEP_SOURCE_PORTS};

use crate::{bpf::MappedWords, monotonic_ns};

/// Time a departure must outlast a `--wait`: replies wait in the ring buffer before userspace
/// reads them, and the pacer may send a little ahead of its rate. The rows are rounded up to a
/// power of two, which leaves at least as much again.
const MARGIN: Duration = Duration::from_millis(250);
/// The rate a `--flood` sweep is sized for: above what the fastest path measured here sends
/// (about 1.06 M pps, unanswered); a faster flood would lose the RTTs of its slowest replies.
const FLOOD_RATE: u64 = 1_200_000;
/// At most 64 MiB of departures (4096 × 1024 slots of 16 bytes).
const MAX_EPOCHS: u64 = 1024;

/// The rows of the table for `senders` send threads sharing `rate` (None: flood), each sending
/// at most `probes_per_sender` probes in all: enough that no slot is reused within `wait`.
pub fn epochs(rate: Option<u64>, wait: Duration, senders: u64, probes_per_sender: u64) -> u32 {
    let senders = senders.max(1);
    let per_sender = rate.unwrap_or(FLOOD_RATE).div_ceil(senders);
    let window_ns = (wait + MARGIN).as_nanos();
    let in_flight = (u128::from(per_sender) * window_ns).div_ceil(1_000_000_000);
    let probes = u64::try_from(in_flight)
        .unwrap_or(u64::MAX)
        .min(probes_per_sender)
        .max(1);
    let ports = u64::from(SWEEP_SOURCE_PORTS) / senders;
    probes.div_ceil(ports).next_power_of_two().min(MAX_EPOCHS) as u32
}

/// Slots of a table of `epochs` rows.
pub fn slots(epochs: u32) -> usize {
    usize::from(SWEEP_SOURCE_PORTS) * epochs as usize
}

pub struct Departures {
    words: Words,
    epochs_mask: u16,
}

/// Each slot's two words: its [`SweepDeparture`]'s.
enum Words {
    /// The TC egress program writes them.
    Kernel(MappedWords),
    /// The send threads do.
    Process(Box<[AtomicU64]>),
}

impl Departures {
    /// The table of `epochs` rows: the one TC egress fills (`words`) where it times
    /// departures, else one the send threads fill.
    pub fn of(
        source: &crate::bpf::Departures,
        words: Option<MappedWords>,
        epochs: u32,
    ) -> Departures {
        match (source, words) {
            (crate::bpf::Departures::TcEgress, Some(words)) => Departures::in_kernel(words, epochs),
            _ => Departures::in_process(epochs),
        }
    }

    /// The table the TC egress program fills, `epochs` rows.
    pub fn in_kernel(words: MappedWords, epochs: u32) -> Departures {
        Departures {
            words: Words::Kernel(words),
            epochs_mask: (epochs - 1) as u16,
        }
    }

    /// A table the send threads fill, `epochs` rows.
    pub fn in_process(epochs: u32) -> Departures {
        let words = 2 * slots(epochs);
        Departures {
            words: Words::Process((0..words).map(|_| AtomicU64::new(0)).collect()),
            epochs_mask: (epochs - 1) as u16,
        }
    }

    /// Where userspace times departures, notes that the probe with `cookie` leaves from the
    /// port at `port_offset` in `epoch` now.
    pub fn sending(&self, port_offset: u16, epoch: u16, cookie: u32) {
        if let Words::Process(words) = &self.words {
            let departure = SweepDeparture::new(monotonic_ns(), cookie);
            let (sent_ns, tag) = self.slot(words, port_offset, epoch);
            sent_ns.store(departure.sent_ns, Ordering::Relaxed);
            tag.store(departure.tag, Ordering::Release);
        }
    }

    /// When the probe with `cookie` from the port at `port_offset` left in `epoch`, if its slot
    /// still holds it.
    pub fn sent_ns(&self, port_offset: u16, epoch: u16, cookie: u32) -> Option<u64> {
        let words = match &self.words {
            Words::Kernel(mapped) => mapped.words(),
            Words::Process(words) => words,
        };
        let (sent_ns, tag) = self.slot(words, port_offset, epoch);
        let tag = tag.load(Ordering::Acquire);
        SweepDeparture::sent_ns_of(sent_ns.load(Ordering::Relaxed), tag, cookie)
    }

    fn slot<'a>(
        &self,
        words: &'a [AtomicU64],
        port_offset: u16,
        epoch: u16,
    ) -> (&'a AtomicU64, &'a AtomicU64) {
        let at = 2 * sweep_departure_slot(port_offset, epoch, self.epochs_mask) as usize;
        (&words[at], &words[at + 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_a_waits_worth_of_probes_and_no_more_than_the_sweep() {
        let second = Duration::from_secs(1);
        // 10 000 pps for 1.25 s: 12 500 probes in 4096-slot rows, rounded up to 4.
        assert_eq!(epochs(Some(10_000), second, 1, u64::MAX), 4);
        assert_eq!(
            epochs(Some(10_000), second, 2, u64::MAX),
            4,
            "half the rate, half the ports"
        );
        assert_eq!(epochs(Some(10_000), second, 1, 5_000), 2, "a small sweep");
        assert_eq!(epochs(Some(1), second, 1, u64::MAX), 1);
        assert_eq!(epochs(None, second, 2, u64::MAX), 512, "a flood: 32 MiB");
        assert_eq!(epochs(None, Duration::from_secs(86_400), 2, u64::MAX), 1024);
    }

    #[test]
    fn a_slot_gives_the_time_of_its_own_probe_until_reused() {
        let departures = Departures::in_process(2);
        departures.sending(5, 0, 77);
        let sent = departures.sent_ns(5, 0, 77).expect("filed");
        assert!(sent > 0 && sent <= monotonic_ns());
        assert_eq!(departures.sent_ns(5, 0, 78), None, "another probe's cookie");
        assert_eq!(departures.sent_ns(5, 1, 77), None, "another epoch's slot");
        assert_eq!(departures.sent_ns(6, 0, 77), None, "another port's slot");
        departures.sending(5, 1, 88);
        assert_eq!(
            departures.sent_ns(5, 0, 77),
            Some(sent),
            "epoch 1 has its own row"
        );
        departures.sending(5, 2, 99);
        assert_eq!(departures.sent_ns(5, 0, 77), None, "epoch 2 reused it");
        assert_eq!(departures.sent_ns(5, 2, 99).map(|_| ()), Some(()));
    }
}
