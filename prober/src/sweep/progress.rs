//! What the send threads and the reply side of a sweep share while it runs: what has been
//! answered, what each sender has done, when replies were lost, and when the probes left.
use std::sync::{
    atomic::{AtomicU32, AtomicU64, Ordering},
    Mutex,
};

use super::{bitset::BitSet, departures::Departures};

pub struct Progress {
    /// One bit per target: settled (answered, or its probe refused) or not.
    answered: BitSet,
    /// Distinct targets settled.
    answered_count: AtomicU64,
    /// Probes the kernel refused to send (a broadcast address, a firewall's output chain).
    refused: AtomicU64,
    /// The refused targets, with the reason, that the reply side has not written yet.
    refusals: Mutex<Vec<(u64, &'static str)>>,
    /// First-pass probes not sent because their host is down (it answered no ARP/NDP).
    down: AtomicU64,
    /// When the reply side last saw that the kernel had lost replies (CLOCK_MONOTONIC ns; 0:
    /// never).
    loss_seen_ns: AtomicU64,
    senders: Box<[SenderProgress]>,
    pub departures: Departures,
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
    /// Its latest pass (0: the first).
    pass: AtomicU32,
}

impl SenderProgress {
    /// Pass `pass` begins at `now_ns`.
    pub fn start_pass_at(&self, pass: u32, now_ns: u64) {
        self.pass.store(pass, Ordering::Release);
        self.pass_started_ns.store(now_ns, Ordering::Release);
    }

    /// Its latest pass, and when that began (read apart from each other: the time may be the
    /// pass before's).
    pub fn latest_pass(&self) -> (u32, u64) {
        let pass = self.pass.load(Ordering::Acquire);
        (pass, self.pass_started_ns.load(Ordering::Acquire))
    }
}

impl Progress {
    pub fn new(targets: u64, senders: u64, departures: Departures) -> Progress {
        Progress {
            answered: BitSet::new(targets),
            answered_count: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refusals: Mutex::new(Vec::new()),
            down: AtomicU64::new(0),
            loss_seen_ns: AtomicU64::new(0),
            senders: (0..senders).map(|_| SenderProgress::default()).collect(),
            departures,
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

    /// Marks `target` answered (settled); false when it had been already (a duplicate).
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

    /// The kernel refused the probe to `target` for `reason`: it is settled, as answered
    /// targets are (no retry, no silence), and its result is for the reply side to write.
    pub fn refuse(&self, target: u64, reason: &'static str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        if self.answer(target) {
            self.refusals
                .lock()
                .expect("no thread panics holding it")
                .push((target, reason));
        }
    }

    /// The refused targets not taken yet.
    pub fn take_refusals(&self) -> Vec<(u64, &'static str)> {
        std::mem::take(&mut *self.refusals.lock().expect("no thread panics holding it"))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_count_once() {
        let progress = Progress::new(100, 2, Departures::in_process(1));
        assert!(progress.answer(7));
        assert!(!progress.answer(7));
        assert!(progress.is_answered(7) && !progress.is_answered(8));
        assert_eq!(progress.answered(), 1);
    }

    #[test]
    fn a_refused_target_is_settled_and_written_once() {
        let progress = Progress::new(100, 1, Departures::in_process(1));
        progress.refuse(7, "firewall");
        assert!(progress.is_answered(7) && progress.answered() == 1);
        assert!(!progress.answer(7), "no reply can answer it again");
        assert_eq!(progress.refused(), 1);
        assert_eq!(progress.take_refusals(), [(7, "firewall")]);
        assert_eq!(progress.take_refusals(), []);
    }

    #[test]
    fn silence_is_unknown_only_when_replies_were_lost_during_the_last_pass() {
        let progress = Progress::new(100, 2, Departures::in_process(1));
        progress.sender(0).start_pass_at(0, 1_000);
        progress.sender(1).start_pass_at(0, 1_100);
        assert!(!progress.last_pass_lost(), "nothing lost");
        progress.note_loss_at(1_500);
        assert!(progress.last_pass_lost(), "lost during the only pass");

        // A retry pass re-probes every silent target: once both senders have begun it, the
        // first pass's losses no longer matter ...
        progress.sender(0).start_pass_at(1, 3_000);
        assert!(
            progress.last_pass_lost(),
            "sender 1's targets had their last probe in the pass with losses"
        );
        progress.sender(1).start_pass_at(1, 3_100);
        assert!(!progress.last_pass_lost(), "the retry has lost nothing");
        // ... but a loss seen once it has begun does, for every sender's silent targets.
        progress.note_loss_at(3_050);
        assert!(progress.last_pass_lost());
        // An earlier sighting never undoes a later one.
        progress.note_loss_at(2_000);
        assert!(progress.last_pass_lost());
    }
}
