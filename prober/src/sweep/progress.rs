//! What the send threads and the reply side of a sweep share while it runs: what has been
//! answered, what each sender has done, when replies were lost, and, where the kernel does not
//! time departures, when the recent probes left.
use std::sync::atomic::{AtomicU64, Ordering};

use super::{bitset::BitSet, plan::SOURCE_PORTS};
use crate::monotonic_ns;

pub struct Progress {
    /// One bit per target: answered or not.
    answered: BitSet,
    /// Distinct targets that have answered.
    answered_count: AtomicU64,
    /// Probes the kernel refused to send (a broadcast address, a firewall's output chain).
    refused: AtomicU64,
    /// First-pass probes not sent because their host is down (it answered no ARP/NDP).
    down: AtomicU64,
    /// When the reply side last saw that the kernel had lost replies (CLOCK_MONOTONIC ns; 0:
    /// never).
    loss_seen_ns: AtomicU64,
    senders: Box<[SenderProgress]>,
    /// Per source port: the target (+1; 0 = none) of the last probe sent from it, and when.
    /// Kept only when TC egress does not time departures (`--qdisc-bypass`, no TCX).
    recent: Option<Box<[(AtomicU64, AtomicU64)]>>,
}

/// What one send thread has done, on a cache line of its own so that the threads never
/// write to a shared one per probe.
#[repr(align(64))]
#[derive(Default)]
pub struct SenderProgress {
    /// Probes sent, all passes (updated per batch).
    pub sent: AtomicU64,
    /// The next position its first pass would probe.
    pub first_pass_reached: AtomicU64,
    /// When its latest pass began (CLOCK_MONOTONIC ns).
    pass_started_ns: AtomicU64,
}

impl SenderProgress {
    /// A pass begins at `now_ns`.
    pub fn start_pass_at(&self, now_ns: u64) {
        self.pass_started_ns.store(now_ns, Ordering::Release);
    }
}

impl Progress {
    pub fn new(targets: u64, senders: u64, userspace_send_times: bool) -> Progress {
        Progress {
            answered: BitSet::new(targets),
            answered_count: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            down: AtomicU64::new(0),
            loss_seen_ns: AtomicU64::new(0),
            senders: (0..senders).map(|_| SenderProgress::default()).collect(),
            recent: userspace_send_times.then(|| {
                (0..SOURCE_PORTS)
                    .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                    .collect()
            }),
        }
    }

    pub fn sender(&self, sender: u64) -> &SenderProgress {
        &self.senders[sender as usize]
    }

    /// Probes sent so far, all senders and passes.
    pub fn sent(&self) -> u64 {
        self.senders
            .iter()
            .map(|progress| progress.sent.load(Ordering::Acquire))
            .sum()
    }

    pub fn is_answered(&self, target: u64) -> bool {
        self.answered.contains(target)
    }

    /// Marks `target` answered; false when it had been already (a duplicate).
    pub fn answer(&self, target: u64) -> bool {
        let first = self.answered.insert(target);
        if first {
            self.answered_count.fetch_add(1, Ordering::Relaxed);
        }
        first
    }

    pub fn answered(&self) -> u64 {
        self.answered_count.load(Ordering::Relaxed)
    }

    /// `probes` of the first pass went unsent: their hosts are down.
    pub fn settle_down(&self, probes: u64) {
        if probes > 0 {
            self.down.fetch_add(probes, Ordering::Relaxed);
        }
    }

    /// First-pass probes settled without a reply being needed: answered, or to a host down.
    pub fn settled(&self) -> u64 {
        self.answered() + self.down.load(Ordering::Relaxed)
    }

    pub fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }

    /// The reply side saw at `now_ns` that replies had been lost (before then).
    pub fn note_loss_at(&self, now_ns: u64) {
        self.loss_seen_ns.fetch_max(now_ns, Ordering::AcqRel);
    }

    /// Whether replies may have been lost in the last pass, the one whose silence a sweep
    /// reports: every target still silent was probed again in each pass, so only the last
    /// one's losses matter. Which replies were lost nobody can tell, so this is for the pass
    /// as a whole, and a loss seen after the first sender's last pass began counts for every
    /// sender (it may have been late in being seen, never early).
    pub fn last_pass_lost(&self) -> bool {
        let last_pass = self
            .senders
            .iter()
            .map(|sender| sender.pass_started_ns.load(Ordering::Acquire))
            .min()
            .unwrap_or(0);
        let seen = self.loss_seen_ns.load(Ordering::Acquire);
        seen != 0 && seen >= last_pass
    }

    /// Notes, where userspace keeps send times, that the probe to `target` leaves from the
    /// source port at `slot` (its offset from the base port) now.
    pub fn sending(&self, slot: u16, target: u64) {
        if let Some(recent) = &self.recent {
            let (sent_target, sent_ns) = &recent[usize::from(slot)];
            sent_target.store(target + 1, Ordering::Relaxed);
            sent_ns.store(monotonic_ns(), Ordering::Release);
        }
    }

    /// When the probe to `target` from the port at `slot` left, if userspace kept it and the
    /// port has not been reused since.
    pub fn sent_at(&self, slot: u16, target: u64) -> Option<u64> {
        let (sent_target, sent_ns) = self.recent.as_ref()?.get(usize::from(slot))?;
        let sent_ns = sent_ns.load(Ordering::Acquire);
        (sent_target.load(Ordering::Relaxed) == target + 1).then_some(sent_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_count_once() {
        let progress = Progress::new(100, 2, false);
        assert!(progress.answer(7));
        assert!(!progress.answer(7));
        assert!(progress.is_answered(7) && !progress.is_answered(8));
        assert_eq!(progress.answered(), 1);
    }

    #[test]
    fn silence_is_unknown_only_when_replies_were_lost_during_the_last_pass() {
        let progress = Progress::new(100, 2, false);
        progress.sender(0).start_pass_at(1_000);
        progress.sender(1).start_pass_at(1_100);
        assert!(!progress.last_pass_lost(), "nothing lost");
        progress.note_loss_at(1_500);
        assert!(progress.last_pass_lost(), "lost during the only pass");

        // A retry pass re-probes every silent target: once both senders have begun it, the
        // first pass's losses no longer matter ...
        progress.sender(0).start_pass_at(3_000);
        assert!(
            progress.last_pass_lost(),
            "sender 1's targets had their last probe in the pass with losses"
        );
        progress.sender(1).start_pass_at(3_100);
        assert!(!progress.last_pass_lost(), "the retry has lost nothing");
        // ... but a loss seen once it has begun does, for every sender's silent targets.
        progress.note_loss_at(3_050);
        assert!(progress.last_pass_lost());
        // An earlier sighting never undoes a later one.
        progress.note_loss_at(2_000);
        assert!(progress.last_pass_lost());
    }

    #[test]
    fn userspace_send_times_belong_to_the_last_probe_from_a_port() {
        let progress = Progress::new(100, 1, true);
        progress.sending(3, 10);
        let sent = progress.sent_at(3, 10).expect("kept");
        assert!(sent > 0);
        assert_eq!(progress.sent_at(3, 11), None, "another target's reply");
        progress.sending(3, 11);
        assert_eq!(progress.sent_at(3, 10), None, "the port was reused");
        assert_eq!(Progress::new(100, 1, false).sent_at(3, 10), None);
    }
}
