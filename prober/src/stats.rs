//! What a run counted: probes, replies and round-trip times, as hping3's footer reports them.

/// Round-trip times in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RttStats {
    pub count: u64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub sum_ms: f64,
}

impl RttStats {
    pub fn add(&mut self, rtt_ms: f64) {
        if self.count == 0 || rtt_ms < self.min_ms {
            self.min_ms = rtt_ms;
        }
        if rtt_ms > self.max_ms {
            self.max_ms = rtt_ms;
        }
        self.sum_ms += rtt_ms;
        self.count += 1;
    }

    pub fn avg_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ms / self.count as f64
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub transmitted: u64,
    /// Every reply, duplicates included (as hping3 counts them).
    pub received: u64,
    pub rtt: RttStats,
    /// Replies the XDP program matched and queued (equals `received` unless the run ended
    /// with replies still queued).
    pub matched: u64,
    /// Replies the XDP program matched but could not hand over: the ring buffer was full.
    pub ring_full: u64,
    /// Packets from the target that answered none of our probes.
    pub unmatched: u64,
}

impl Summary {
    /// hping3's integer loss rate.
    pub fn loss_percent(&self) -> u64 {
        match (self.transmitted, self.received) {
            (0, _) => 0,
            (_, 0) => 100,
            (sent, received) => 100u64.saturating_sub(received * 100 / sent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_rate_matches_hping3_integer_arithmetic() {
        let summary = |transmitted, received| Summary {
            transmitted,
            received,
            ..Summary::default()
        };
        assert_eq!(summary(4, 4).loss_percent(), 0);
        assert_eq!(summary(4, 0).loss_percent(), 100);
        assert_eq!(summary(3, 1).loss_percent(), 67);
        assert_eq!(summary(0, 0).loss_percent(), 0);
        assert_eq!(
            summary(2, 3).loss_percent(),
            0,
            "duplicates never make loss negative"
        );
    }

    #[test]
    fn rtt_stats_track_min_avg_max() {
        let mut rtt = RttStats::default();
        assert_eq!(rtt.avg_ms(), 0.0);
        for ms in [0.4, 0.9, 0.5] {
            rtt.add(ms);
        }
        assert_eq!((rtt.min_ms, rtt.max_ms, rtt.count), (0.4, 0.9, 3));
        assert!((rtt.avg_ms() - 0.6).abs() < 1e-9);
    }
}

/// The totals of a sweep, for its footer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepSummary {
    pub hosts: u64,
    pub ports: u64,
    pub sent: u64,
    /// The whole run, and the part of it spent sending (all passes).
    pub elapsed: std::time::Duration,
    pub sending: std::time::Duration,
    pub open: u64,
    pub closed: u64,
    pub filtered: u64,
    /// Replies to (host, port) pairs that had answered already (retries, retransmissions).
    pub duplicates: u64,
    pub interrupted: bool,
    /// From the XDP program's counters.
    pub matched: u64,
    pub unmatched: u64,
    pub bounced: u64,
    pub ring_full: u64,
    /// Times a probe waited for room in the TX ring.
    pub tx_full_waits: u64,
    /// The interface's drop counters over the run.
    pub kernel_tx_dropped: u64,
    pub kernel_rx_dropped: u64,
}

impl SweepSummary {
    pub fn answered(&self) -> u64 {
        self.open + self.closed
    }
}
