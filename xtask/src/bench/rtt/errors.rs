//! Pairs each RTT a tool reported with the probe's true RTT at the responder's TAP, and sums the
//! differences up.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use prober_tests::responder::{Held, ProbeId};

/// Which probe a reply answers, as far as every tool's output tells: TCP probes by both ports,
/// echo requests by sequence number only (hping3 and prober do not print the echo identifier;
/// each run has the responder to itself, so the sequence number is enough).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    Tcp { source_port: u16, dest_port: u16 },
    Echo { seq: u16 },
}

impl From<&ProbeId> for Probe {
    fn from(probe: &ProbeId) -> Probe {
        match *probe {
            ProbeId::Tcp {
                source_port,
                dest_port,
            } => Probe::Tcp {
                source_port,
                dest_port,
            },
            ProbeId::IcmpEcho { seq, .. } => Probe::Echo { seq },
        }
    }
}

/// One RTT a tool reported, and for which probe.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub probe: Probe,
    pub rtt_ns: i64,
}

/// Pairs items with keys that may repeat: the n-th `take` of a key gets the n-th item `put` under
/// it. A tool that sends identical probes (nping sometimes sends one twice) is matched in order,
/// which is right because a fixed delay keeps the responder's answers in order.
pub struct InOrder<K, V> {
    queues: HashMap<K, VecDeque<V>>,
}

impl<K: Eq + std::hash::Hash, V> InOrder<K, V> {
    pub fn new() -> Self {
        InOrder {
            queues: HashMap::new(),
        }
    }

    pub fn put(&mut self, key: K, value: V) {
        self.queues.entry(key).or_default().push_back(value);
    }

    pub fn take(&mut self, key: &K) -> Option<V> {
        self.queues.get_mut(key)?.pop_front()
    }
}

/// The reported RTTs set against the true RTTs.
pub struct Errors {
    /// In reply order.
    pub paired: Vec<Paired>,
    /// Replies the tool reported for probes the responder has no record of answering.
    pub unmatched: usize,
}

/// A reply and the responder's record of its probe.
pub struct Paired {
    pub probe: Probe,
    pub rtt_ns: i64,
    pub true_rtt_ns: i64,
}

impl Paired {
    pub fn error_ns(&self) -> i64 {
        self.rtt_ns - self.true_rtt_ns
    }
}

/// The responder's record of one probe it answered.
pub struct Record {
    pub probe: Probe,
    /// When it read the probe (CLOCK_MONOTONIC ns): the order of the records.
    pub read_ns: u64,
    /// The probe's round trip at the wire: from the request entering the TAP (the host kernel's
    /// copy to the responder's packet socket) to the reply going into it; where that copy was
    /// missed, the responder's own hold (read to write), a slightly shorter bound.
    pub true_rtt_ns: i64,
}

impl From<&Held> for Record {
    fn from(held: &Held) -> Record {
        Record {
            probe: Probe::from(&held.probe),
            read_ns: held.read_ns,
            true_rtt_ns: held.ideal_rtt_ns().unwrap_or_else(|| held.hold_ns()) as i64,
        }
    }
}

/// Pairs every reply with the responder's record of that probe.
pub fn match_replies(replies: &[Reply], mut records: Vec<Record>) -> Errors {
    records.sort_by_key(|r| r.read_ns);
    let mut true_rtts = InOrder::new();
    for record in records {
        true_rtts.put(record.probe, record.true_rtt_ns);
    }
    let mut errors = Errors {
        paired: Vec::with_capacity(replies.len()),
        unmatched: 0,
    };
    for reply in replies {
        match true_rtts.take(&reply.probe) {
            Some(true_rtt_ns) => errors.paired.push(Paired {
                probe: reply.probe,
                rtt_ns: reply.rtt_ns,
                true_rtt_ns,
            }),
            None => errors.unmatched += 1,
        }
    }
    errors
}

/// What the table shows of one run's errors, in nanoseconds.
#[derive(Debug, PartialEq)]
pub struct Summary {
    pub matched: usize,
    pub median_abs_ns: i64,
    pub mean_abs_ns: f64,
    pub p99_abs_ns: i64,
    pub max_abs_ns: i64,
    /// Population standard deviation of the signed errors.
    pub jitter_ns: f64,
    pub median_true_rtt_ns: i64,
}

impl Errors {
    /// None when no reply was matched.
    pub fn summary(&self) -> Option<Summary> {
        if self.paired.is_empty() {
            return None;
        }
        let errors: Vec<i64> = self.paired.iter().map(Paired::error_ns).collect();
        let mut abs: Vec<i64> = errors.iter().map(|e| e.abs()).collect();
        abs.sort_unstable();
        let mut true_rtts: Vec<i64> = self.paired.iter().map(|p| p.true_rtt_ns).collect();
        true_rtts.sort_unstable();
        let n = errors.len() as f64;
        let mean = errors.iter().sum::<i64>() as f64 / n;
        let variance = errors
            .iter()
            .map(|&e| (e as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        Some(Summary {
            matched: errors.len(),
            median_abs_ns: percentile(&abs, 50)?,
            mean_abs_ns: abs.iter().sum::<i64>() as f64 / n,
            p99_abs_ns: percentile(&abs, 99)?,
            max_abs_ns: percentile(&abs, 100)?,
            jitter_ns: variance.sqrt(),
            median_true_rtt_ns: percentile(&true_rtts, 50)?,
        })
    }

    /// One line per paired reply, for a closer look at the outliers:
    /// `probe,rtt_ns,true_rtt_ns,error_ns` with probe `tcp:<source port>:<dest port>` or
    /// `echo:<seq>`.
    pub fn csv(&self) -> String {
        let mut csv = String::from("probe,rtt_ns,true_rtt_ns,error_ns\n");
        for p in &self.paired {
            let probe = match p.probe {
                Probe::Tcp {
                    source_port,
                    dest_port,
                } => format!("tcp:{source_port}:{dest_port}"),
                Probe::Echo { seq } => format!("echo:{seq}"),
            };
            // Writing to a String cannot fail.
            let _ = writeln!(
                csv,
                "{probe},{},{},{}",
                p.rtt_ns,
                p.true_rtt_ns,
                p.error_ns()
            );
        }
        csv
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p`% of all at or
/// below it.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source_port: u16, read_ns: u64, true_rtt_ns: i64) -> Record {
        Record {
            probe: Probe::Tcp {
                source_port,
                dest_port: 80,
            },
            read_ns,
            true_rtt_ns,
        }
    }

    fn reply(source_port: u16, rtt_ns: i64) -> Reply {
        Reply {
            probe: Probe::Tcp {
                source_port,
                dest_port: 80,
            },
            rtt_ns,
        }
    }

    #[test]
    fn replies_pair_with_their_own_probe_and_repeats_in_order() {
        // Port 2 was probed twice (held 200 then 300 ns); the list is not in read order.
        let records = vec![record(2, 50, 300), record(1, 0, 100), record(2, 10, 200)];
        let replies = [reply(2, 210), reply(1, 130), reply(2, 320), reply(3, 5)];
        let errors = match_replies(&replies, records);
        let pairs: Vec<(i64, i64)> = errors
            .paired
            .iter()
            .map(|p| (p.true_rtt_ns, p.error_ns()))
            .collect();
        assert_eq!(pairs, [(200, 10), (100, 30), (300, 20)]);
        assert_eq!(errors.unmatched, 1);
        assert!(errors.csv().starts_with(
            "probe,rtt_ns,true_rtt_ns,error_ns\ntcp:2:80,210,200,10\ntcp:1:80,130,100,30\n"
        ));
    }

    #[test]
    fn echo_requests_match_by_sequence_whatever_the_identifier() {
        let probe = ProbeId::IcmpEcho { id: 4321, seq: 7 };
        assert_eq!(Probe::from(&probe), Probe::Echo { seq: 7 });
    }

    #[test]
    fn summary_of_absolute_errors() {
        let paired = [(10, -4), (20, 2), (30, 2), (40, 4)]
            .map(|(true_rtt_ns, error_ns)| Paired {
                probe: Probe::Echo { seq: 0 },
                rtt_ns: true_rtt_ns + error_ns,
                true_rtt_ns,
            })
            .into();
        let summary = Errors {
            paired,
            unmatched: 0,
        }
        .summary()
        .unwrap();
        assert_eq!(summary.median_abs_ns, 2);
        assert_eq!(summary.mean_abs_ns, 3.0);
        assert_eq!(summary.p99_abs_ns, 4);
        assert_eq!(summary.max_abs_ns, 4);
        assert_eq!(summary.median_true_rtt_ns, 20);
        // Mean 1: deviations -5, 1, 1, 3.
        assert!((summary.jitter_ns - 9.0f64.sqrt()).abs() < 1e-9);
        let none = Errors {
            paired: vec![],
            unmatched: 3,
        };
        assert!(none.summary().is_none());
    }

    #[test]
    fn nearest_rank() {
        let values: Vec<i64> = (1..=1000).collect();
        assert_eq!(percentile(&values, 50), Some(500));
        assert_eq!(percentile(&values, 99), Some(990));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }
}
