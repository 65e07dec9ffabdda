//! The send thread of a one-target run, and what it notes about each probe.
use std::{
    io,
    sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, Ordering},
    time::Instant,
};

use super::{Options, Pacing};
use crate::{
    monotonic_ns,
    probe::{for_each_fragment, set_ttl, PingProbe},
    reply_loop::StopSignal,
    transmit::{Transmit, FLOOD_BATCH},
};

/// Send time and answered flag per hping3 sequence number (probe number mod 2^16; always 0
/// with -k).
pub struct SendLog {
    sent_ns: Box<[AtomicU64]>,
    answered: Box<[AtomicBool]>,
    /// The sequence number of the probe noted last.
    latest: AtomicU16,
    pub sent: AtomicU64,
}

impl SendLog {
    pub fn new() -> SendLog {
        SendLog {
            sent_ns: (0..=u16::MAX).map(|_| AtomicU64::new(0)).collect(),
            answered: (0..=u16::MAX).map(|_| AtomicBool::new(false)).collect(),
            latest: AtomicU16::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// Notes that the probe with hping3 sequence number `seq` is leaving now.
    fn sending(&self, seq: u16) {
        let slot = usize::from(seq);
        self.answered[slot].store(false, Ordering::Relaxed);
        self.sent_ns[slot].store(monotonic_ns(), Ordering::Release);
        self.latest.store(seq, Ordering::Release);
    }

    /// The sequence number of the probe leaving last (0 before the first).
    pub fn latest(&self) -> u16 {
        self.latest.load(Ordering::Acquire)
    }

    /// What a reply to probe `seq` answers: nothing (no such probe was sent: a forged or
    /// stale reply, which must neither count nor be timed against a send time of 0), or the
    /// probe sent last with that number, for the first time or again.
    pub fn answer(&self, seq: u16) -> Answered {
        let slot = usize::from(seq);
        let sent_ns = self.sent_ns[slot].load(Ordering::Acquire);
        if sent_ns == 0 {
            return Answered::NeverSent;
        }
        if self.answered[slot].swap(true, Ordering::Relaxed) {
            Answered::Again { sent_ns }
        } else {
            Answered::First { sent_ns }
        }
    }
}

/// What a reply answers, by its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    NeverSent,
    /// The first reply to the probe that left at `sent_ns` (CLOCK_MONOTONIC).
    First {
        sent_ns: u64,
    },
    /// A duplicate.
    Again {
        sent_ns: u64,
    },
}

/// What the send thread builds: the kind's probes, and for a traceroute the TTL they leave
/// with, which the replies move.
pub struct Probes<'a> {
    pub probe: &'a dyn PingProbe,
    pub ttl: Option<&'a AtomicU8>,
}

pub fn send_probes(
    options: &Options,
    Probes { probe, ttl }: Probes<'_>,
    mut transmit: Box<dyn Transmit>,
    log: &SendLog,
    stop: &StopSignal,
) -> io::Result<()> {
    let mut due = Instant::now();
    let mut packet = probe.buffer();
    let mut n = 0u64;
    while options.count.is_none_or(|count| n < count) {
        match options.pacing {
            Pacing::Interval(interval) => {
                // Waiting on the stop signal makes the pause end early on Ctrl-C; a reader
                // that falls behind holds the probes back (back-pressure) at the checkpoint.
                if n > 0 && stop.sleep(due.saturating_duration_since(Instant::now()))
                    || stop.checkpoint()
                {
                    break;
                }
                // Deadlines advance from the schedule, not from when we woke, so the rate holds.
                due += interval;
            }
            Pacing::Flood => {
                if n.is_multiple_of(FLOOD_BATCH) {
                    transmit.flush()?;
                    if stop.checkpoint() {
                        break;
                    }
                }
            }
        }
        let length = probe.build(n, &mut packet);
        if let Some(ttl) = ttl {
            set_ttl(&mut packet[..length], ttl.load(Ordering::Relaxed));
        }
        log.sending(probe.sequence_of(n));
        if options.fragments {
            for_each_fragment(&packet[..length], |fragment| transmit.send(fragment))?;
        } else {
            transmit.send(&packet[..length])?;
        }
        if options.pacing != Pacing::Flood {
            transmit.flush()?;
        }
        n += 1;
        log.sent.store(n, Ordering::Release);
    }
    transmit.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_probes_sent_are_answered_and_each_once() {
        let log = SendLog::new();
        assert_eq!(log.answer(7), Answered::NeverSent);
        log.sending(7);
        let Answered::First { sent_ns } = log.answer(7) else {
            panic!("the first reply to a probe sent")
        };
        assert!(sent_ns > 0);
        assert_eq!(log.answer(7), Answered::Again { sent_ns });
        assert_eq!(log.answer(8), Answered::NeverSent);
        // Sending with the same number again (-k, or after 65 536 probes) re-arms it.
        log.sending(7);
        assert!(matches!(log.answer(7), Answered::First { .. }));
    }
}
