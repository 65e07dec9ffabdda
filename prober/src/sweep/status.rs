//! The live status line of a sweep on stderr, once a second, as zmap prints it: elapsed,
//! % done, send rate, receive rate, drops, hit rate, ETA. Hidden when stderr is not a
//! terminal (scripts, CI) or with -q.
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::reading::Reading;

pub struct StatusLine {
    bar: ProgressBar,
    last_sent: u64,
    last_answered: u64,
    last_elapsed: Duration,
}

impl StatusLine {
    /// `probes`: how many the first pass sends (100%).
    pub fn new(shown: bool, probes: u64) -> StatusLine {
        let target = if shown {
            ProgressDrawTarget::stderr_with_hz(1)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(probes), target).with_style(
            ProgressStyle::with_template("{elapsed_precise} {percent:>3}% {msg} ETA {eta}")
                .expect("a valid template"),
        );
        StatusLine {
            bar,
            last_sent: 0,
            last_answered: 0,
            last_elapsed: Duration::ZERO,
        }
    }

    /// Called once a second with the running totals.
    /// `dropped`: replies lost so far (the ring buffer was full).
    pub fn update(
        &mut self,
        elapsed: Duration,
        sent: u64,
        answered: u64,
        open: u64,
        dropped: &Reading,
    ) {
        let seconds = (elapsed - self.last_elapsed).as_secs_f64().max(1e-3);
        let send_rate = (sent - self.last_sent) as f64 / seconds;
        let receive_rate = (answered - self.last_answered) as f64 / seconds;
        let hit_rate = if sent > 0 {
            open as f64 * 100.0 / sent as f64
        } else {
            0.0
        };
        self.bar.set_position(sent);
        self.bar.set_message(format!(
            "send {sent} {}p/s recv {answered} {}p/s drops {dropped} open {open} hit {hit_rate:.2}%",
            human(send_rate),
            human(receive_rate),
        ));
        (self.last_sent, self.last_answered, self.last_elapsed) = (sent, answered, elapsed);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// 1234567.0 → "1.23M"
fn human(rate: f64) -> String {
    match rate {
        r if r >= 1e6 => format!("{:.2}M", r / 1e6),
        r if r >= 1e3 => format!("{:.1}K", r / 1e3),
        r => format!("{r:.0}"),
    }
}
