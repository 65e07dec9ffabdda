//! The token bucket that holds a sweep to `--rate`: probes are granted in batches (one kick
//! of the transmit path each), and a late wake-up is made up for within the bucket's depth.
use std::time::{Duration, Instant};

use crate::transmit::FLOOD_BATCH;

pub enum Grant {
    /// Send this many probes now.
    Send(u64),
    /// Nothing may go before this much time has passed.
    Wait(Duration),
}

pub struct Pacer {
    /// Probes per second; None: as fast as the transmit path takes them.
    rate: Option<f64>,
    tokens: f64,
    /// At most this many probes may go at once after an idle spell: 10 ms worth, but no more
    /// than a flood batch.
    depth: f64,
    refilled: Instant,
}

impl Pacer {
    pub fn new(rate: Option<u64>) -> Pacer {
        let rate = rate.map(|rate| rate as f64);
        let depth = rate.map_or(0.0, |rate| (rate / 100.0).clamp(1.0, FLOOD_BATCH as f64));
        Pacer {
            rate,
            // Start with one probe's worth so the first goes out at once.
            tokens: 1.0,
            depth,
            refilled: Instant::now(),
        }
    }

    /// How many of `wanted` probes may go now, or how long to wait for the next one.
    pub fn grant(&mut self, wanted: u64) -> Grant {
        let Some(rate) = self.rate else {
            return Grant::Send(wanted.min(FLOOD_BATCH));
        };
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * rate;
        self.tokens = (self.tokens + earned).min(self.depth.max(1.0));
        self.refilled = now;
        if self.tokens < 1.0 {
            return Grant::Wait(Duration::from_secs_f64((1.0 - self.tokens) / rate));
        }
        let granted = (self.tokens as u64).min(wanted);
        self.tokens -= granted as f64;
        Grant::Send(granted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_grants_whole_batches() {
        let mut pacer = Pacer::new(None);
        assert!(matches!(pacer.grant(10_000), Grant::Send(FLOOD_BATCH)));
        assert!(matches!(pacer.grant(3), Grant::Send(3)));
    }

    #[test]
    fn rate_is_held_over_time() {
        let rate = 20_000;
        let mut pacer = Pacer::new(Some(rate));
        let start = Instant::now();
        let mut sent = 0;
        while start.elapsed() < Duration::from_millis(300) {
            match pacer.grant(u64::MAX) {
                Grant::Send(count) => sent += count,
                Grant::Wait(wait) => std::thread::sleep(wait),
            }
        }
        let allowed = rate as f64 * start.elapsed().as_secs_f64() + pacer.depth + 1.0;
        // Never above the rate; below it only if this machine starves the test of CPU.
        assert!(
            sent as f64 <= allowed,
            "{sent} probes sent, {allowed:.0} allowed"
        );
        assert!(
            sent as f64 > allowed * 0.8,
            "{sent} probes sent, {allowed:.0} allowed"
        );
    }
}
