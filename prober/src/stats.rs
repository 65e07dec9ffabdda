//! What a run counted: probes, replies and round-trip times, as hping3's footer reports them.
use hdrhistogram::Histogram;

/// Round-trip times: exact count, extremes, mean and standard deviation, and a histogram
/// (four significant digits: 0.1 µs resolution at 1 ms, 2 µs at 20 ms) for percentiles.
#[derive(Clone, Debug)]
pub struct RttStats {
    count: u64,
    min_ns: u64,
    max_ns: u64,
    sum_ns: f64,
    sum_squares_ns: f64,
    histogram: Histogram<u64>,
}

/// The longest RTT the histogram resolves (longer ones count as this): 100 s. Its counts
/// take 3 MiB of zeroed memory, resident only where RTTs fall.
const LONGEST_NS: u64 = 100_000_000_000;

impl Default for RttStats {
    fn default() -> RttStats {
        RttStats {
            count: 0,
            min_ns: 0,
            max_ns: 0,
            sum_ns: 0.0,
            sum_squares_ns: 0.0,
            histogram: Histogram::new_with_bounds(1, LONGEST_NS, 4)
                .expect("valid histogram bounds"),
        }
    }
}

impl PartialEq for RttStats {
    fn eq(&self, other: &RttStats) -> bool {
        (self.count, self.min_ns, self.max_ns) == (other.count, other.min_ns, other.max_ns)
            && self.histogram == other.histogram
    }
}

impl RttStats {
    pub fn add(&mut self, rtt_ns: u64) {
        if self.count == 0 || rtt_ns < self.min_ns {
            self.min_ns = rtt_ns;
        }
        self.max_ns = self.max_ns.max(rtt_ns);
        self.count += 1;
        self.sum_ns += rtt_ns as f64;
        self.sum_squares_ns += (rtt_ns as f64).powi(2);
        self.histogram.saturating_record(rtt_ns.max(1));
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn min_ms(&self) -> f64 {
        self.min_ns as f64 / 1e6
    }

    pub fn max_ms(&self) -> f64 {
        self.max_ns as f64 / 1e6
    }

    pub fn avg_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns / self.count as f64 / 1e6
        }
    }

    /// Population standard deviation.
    pub fn stddev_ms(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let mean = self.sum_ns / self.count as f64;
        let variance = (self.sum_squares_ns / self.count as f64 - mean * mean).max(0.0);
        variance.sqrt() / 1e6
    }

    /// The RTT below which `percent` % of them lie: the middle of its histogram bucket, and
    /// never outside the RTTs actually seen.
    pub fn percentile_ms(&self, percent: f64) -> f64 {
        let bucket = self.histogram.value_at_percentile(percent);
        let ns = self.histogram.median_equivalent(bucket);
        ns.clamp(self.min_ns, self.max_ns) as f64 / 1e6
    }

    /// Up to `rows` equal-width bins (at least a microsecond wide) from the fastest RTT to the
    /// 99th percentile, then one for everything slower if anything is:
    /// (lower bound ms, upper bound ms, count).
    pub fn histogram_rows(&self, rows: usize) -> Vec<(f64, f64, u64)> {
        const NARROWEST_NS: u64 = 1000;
        if self.count == 0 {
            return Vec::new();
        }
        let low = self.min_ns;
        let p99 = self
            .histogram
            .median_equivalent(self.histogram.value_at_percentile(99.0));
        let high = p99.min(self.max_ns).max(low + 1);
        let width = (high - low).div_ceil(rows as u64).max(NARROWEST_NS);
        let rows = (high - low).div_ceil(width).max(1) as usize;
        let mut counts = vec![0u64; rows + 1];
        for value in self.histogram.iter_recorded() {
            // The bucket's middle, but never outside the RTTs actually seen.
            let ns = self
                .histogram
                .median_equivalent(value.value_iterated_to())
                .clamp(self.min_ns, self.max_ns);
            let row = if ns > high {
                rows // beyond the 99th percentile
            } else {
                (ns.saturating_sub(low) / width).min(rows as u64 - 1) as usize
            };
            counts[row] += value.count_at_value();
        }
        let bound = |row: usize| (low + row as u64 * width).min(self.max_ns) as f64 / 1e6;
        let mut bins: Vec<(f64, f64, u64)> = (0..rows)
            .map(|row| (bound(row), bound(row + 1), counts[row]))
            .collect();
        if counts[rows] > 0 {
            bins.push((bound(rows), self.max_ms(), counts[rows]));
        }
        bins
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
    /// Of the first reply from each (host, port) whose probe's send time is known.
    pub rtt: RttStats,
    pub interrupted: bool,
    /// From the XDP program's counters.
    pub matched: u64,
    pub unmatched: u64,
    pub bounced: u64,
    pub ring_full: u64,
    /// Times a probe waited for room in the TX ring.
    pub tx_full_waits: u64,
    /// Probes the kernel refused to send.
    pub refused: u64,
    /// The interface's drop counters over the run.
    pub kernel_tx_dropped: u64,
    pub kernel_rx_dropped: u64,
}

impl SweepSummary {
    pub fn answered(&self) -> u64 {
        self.open + self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_statistics_are_exact_where_hping3_prints_them() {
        let mut rtt = RttStats::default();
        for micros in [100u64, 200, 300, 400] {
            rtt.add(micros * 1000);
        }
        assert_eq!((rtt.min_ms(), rtt.max_ms(), rtt.avg_ms()), (0.1, 0.4, 0.25));
        assert!((rtt.stddev_ms() - 0.111_803).abs() < 1e-6);
        assert!((rtt.percentile_ms(50.0) - 0.2).abs() < 0.0001);
        assert_eq!(rtt.percentile_ms(99.0), 0.4, "never above the largest");
        let mut slow = RttStats::default();
        slow.add(20_088_000);
        assert_eq!(slow.percentile_ms(99.0), 20.088, "exact at 20 ms too");
    }

    #[test]
    fn histogram_rows_hold_every_rtt() {
        let mut rtt = RttStats::default();
        for micros in (0..1000u64).map(|i| 100 + i % 50).chain([5000]) {
            rtt.add(micros * 1000);
        }
        let rows = rtt.histogram_rows(10);
        assert_eq!(rows.iter().map(|row| row.2).sum::<u64>(), 1001);
        assert_eq!(
            rows.last().unwrap().1,
            5.0,
            "the last row reaches the slowest"
        );
        assert_eq!(rows[0].0, 0.1, "the first row starts at the fastest");

        let mut same = RttStats::default();
        for _ in 0..100 {
            same.add(1_000_000_123);
        }
        assert_eq!(same.histogram_rows(16), [(1000.000123, 1000.000123, 100)]);
    }

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
}
