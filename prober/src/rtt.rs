//! Round-trip times: their statistics, and the percentiles and histogram `-V` and
//! `--histogram` print after either run kind's footer.
use std::fmt::Write as _;

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

/// `-V`'s RTT distribution, to the microsecond whatever the reply lines' precision.
pub fn rtt_percentiles(rtt: &RttStats) -> String {
    format!(
        "rtt percentiles: p50={:.3} p90={:.3} p99={:.3} max={:.3} ms, stddev={:.3} ms",
        rtt.percentile_ms(50.0),
        rtt.percentile_ms(90.0),
        rtt.percentile_ms(99.0),
        rtt.max_ms(),
        rtt.stddev_ms(),
    )
}

/// `--histogram`: a text histogram of the RTTs, one row per bin (the last row holds the
/// slowest 1% when they lie beyond the rest).
pub fn rtt_histogram(rtt: &RttStats) -> String {
    const ROWS: usize = 16;
    const BAR: u64 = 50;
    let rows = rtt.histogram_rows(ROWS);
    let tallest = rows.iter().map(|row| row.2).max().unwrap_or(0).max(1);
    let mut text = format!("rtt histogram ({} replies, ms):", rtt.count());
    for (from, to, count) in rows {
        let bar = "#".repeat((count * BAR).div_ceil(tallest) as usize);
        let _ = write!(text, "\n{from:9.3} - {to:9.3} | {bar:<50} {count}");
    }
    text
}

/// `-V`'s line right after the footer, when there were RTTs.
pub fn print_percentiles(rtt: &RttStats) {
    if rtt.count() > 0 {
        eprintln!("{}", rtt_percentiles(rtt));
    }
}

/// `--histogram`'s drawing, at the very end.
pub fn print_histogram(rtt: &RttStats) {
    eprintln!("{}", rtt_histogram(rtt));
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
    fn percentiles_and_histogram_render() {
        let mut rtt = RttStats::default();
        for micros in [400, 900, 600] {
            rtt.add(micros * 1000);
        }
        assert_eq!(
            rtt_percentiles(&rtt),
            "rtt percentiles: p50=0.600 p90=0.900 p99=0.900 max=0.900 ms, stddev=0.205 ms"
        );
        let histogram = rtt_histogram(&rtt);
        assert!(
            histogram.starts_with("rtt histogram (3 replies, ms):\n    0.400 -"),
            "{histogram}"
        );
        assert_eq!(
            histogram.lines().count(),
            17,
            "16 rows of 31.25 us: {histogram}"
        );
    }
}
