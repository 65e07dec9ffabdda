//! hping3's traceroute (`-T`), for any kind of probe: the TTL starts at `-t` (1 unless given)
//! and goes up by one with each time exceeded from a router other than the one heard last, as
//! hping3's does (so a probe answered late by the same router does not skip a hop); every
//! other reply is shown as in a ping. The kind's probes are built as in a ping, all of one
//! flow ([`crate::probe::Endpoints::one_flow`]), and given the TTL as they leave
//! ([`crate::probe::set_ttl`]).
use std::{
    fmt::Write as _,
    net::IpAddr,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
};

use super::text::icmp_error_line;
use super::RttPrecision;
use prober_common::wire::IcmpErrorKind;

/// hping3's traceroute options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// --tr-stop: end the run at the first reply that is not a time exceeded.
    pub stop: bool,
    /// --tr-keep-ttl: the TTL never moves (one hop watched).
    pub keep_ttl: bool,
    /// --tr-no-rtt: no `hoprtt` lines, and the hops' round trips left out of the statistic.
    pub no_rtt: bool,
}

/// Where a traceroute is: the TTL probes leave with, which the send thread reads, and what
/// the replies so far said.
pub struct Hops {
    options: Options,
    ttl: Arc<AtomicU8>,
    last_router: Option<IpAddr>,
    stopped: bool,
}

/// What a time exceeded adds to the output and the statistic.
pub struct Hop {
    pub lines: Vec<String>,
    /// Whether its round trip counts in the statistic, as hping3's `hoprtt` does.
    pub timed: bool,
}

impl Hops {
    pub fn new(options: Options, first_ttl: u8) -> Hops {
        Hops {
            options,
            ttl: Arc::new(AtomicU8::new(first_ttl)),
            last_router: None,
            stopped: false,
        }
    }

    /// The TTL the next probe leaves with, for the send thread.
    pub fn ttl(&self) -> Arc<AtomicU8> {
        self.ttl.clone()
    }

    /// A reply taken: with --tr-stop, one that is not a time exceeded ends the run.
    pub fn took(&mut self, error: Option<IcmpErrorKind>) {
        if self.options.stop && error != Some(IcmpErrorKind::TimeExceeded) {
            self.stopped = true;
        }
    }

    /// Whether --tr-stop has ended the run.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// hping3's lines for a time exceeded from `router` whose probe's round trip was `rtt_ms`:
    /// `hop=N TTL 0 during transit from ip=…` and `hop=N hoprtt=… ms` (N the TTL probes leave
    /// with now), then the TTL one up. Nothing for the router heard last (unless the TTL is
    /// kept), as hping3 shows it once.
    pub fn time_exceeded(&mut self, router: IpAddr, rtt_ms: f64, precision: RttPrecision) -> Hop {
        if !self.options.keep_ttl && self.last_router == Some(router) {
            return Hop {
                lines: Vec::new(),
                timed: false,
            };
        }
        self.last_router = Some(router);
        let hop = self.ttl.load(Ordering::Relaxed);
        let mut lines = vec![format!(
            "hop={hop} {}",
            icmp_error_line(IcmpErrorKind::TimeExceeded, 0, router)
        )];
        if !self.options.no_rtt {
            let mut line = format!("hop={hop} hoprtt=");
            let _ = write!(line, "{rtt_ms:.*} ms", precision.decimals());
            lines.push(line);
        }
        if !self.options.keep_ttl {
            self.ttl.store(hop.saturating_add(1), Ordering::Relaxed);
        }
        Hop {
            lines,
            timed: !self.options.no_rtt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, last])
    }

    #[test]
    fn each_new_router_is_a_hop_and_moves_the_ttl_on() {
        let mut hops = Hops::new(Options::default(), 1);
        let ttl = hops.ttl();
        let first = hops.time_exceeded(router(1), 0.84, RttPrecision::Hping3);
        assert_eq!(
            first.lines,
            [
                "hop=1 TTL 0 during transit from ip=198.18.0.1",
                "hop=1 hoprtt=0.8 ms"
            ]
        );
        assert!(first.timed);
        assert_eq!(ttl.load(Ordering::Relaxed), 2);
        // A late answer from the same router, to a probe sent before the TTL moved.
        let again = hops.time_exceeded(router(1), 0.5, RttPrecision::Hping3);
        assert!(again.lines.is_empty() && !again.timed);
        assert_eq!(ttl.load(Ordering::Relaxed), 2);
        let second = hops.time_exceeded(router(2), 1.0, RttPrecision::Us);
        assert_eq!(
            second.lines,
            [
                "hop=2 TTL 0 during transit from ip=198.18.0.2",
                "hop=2 hoprtt=1.000 ms"
            ]
        );
        assert_eq!(ttl.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn keep_ttl_watches_one_hop_and_shows_every_answer() {
        let options = Options {
            keep_ttl: true,
            ..Options::default()
        };
        let mut hops = Hops::new(options, 4);
        for _ in 0..2 {
            let hop = hops.time_exceeded(router(1), 0.3, RttPrecision::Hping3);
            assert_eq!(
                hop.lines[0],
                "hop=4 TTL 0 during transit from ip=198.18.0.1"
            );
        }
        assert_eq!(hops.ttl().load(Ordering::Relaxed), 4);
    }

    #[test]
    fn no_rtt_leaves_out_the_round_trips() {
        let options = Options {
            no_rtt: true,
            ..Options::default()
        };
        let hop = Hops::new(options, 1).time_exceeded(router(1), 0.3, RttPrecision::Hping3);
        assert_eq!(hop.lines, ["hop=1 TTL 0 during transit from ip=198.18.0.1"]);
        assert!(!hop.timed);
    }

    #[test]
    fn tr_stop_ends_at_the_first_answer_that_is_no_time_exceeded() {
        let mut plain = Hops::new(Options::default(), 1);
        plain.took(None);
        assert!(!plain.stopped(), "without --tr-stop");
        let mut hops = Hops::new(
            Options {
                stop: true,
                ..Options::default()
            },
            1,
        );
        hops.took(Some(IcmpErrorKind::TimeExceeded));
        assert!(!hops.stopped());
        hops.took(Some(IcmpErrorKind::PortUnreachable));
        assert!(hops.stopped(), "an unreachable ends it too, as hping3's");
    }
}
