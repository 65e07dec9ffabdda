//! One probing run against one target, as hping3 does it: set up the route, the XDP reply
//! matcher and the transmit path, then send probes at an interval (or flood) until the count
//! is reached (plus hping3's one second for late replies), or Ctrl-C / SIGTERM.
use std::{
    io::{self, Write},
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use prober_common::{Counter, ReplyRecord};

use crate::{
    driver::{self, ReplyHandler, StopSignal, Wakeup},
    monotonic_ns,
    output::{self, RttPrecision},
    pacer::FLOOD_BATCH,
    probe::{Endpoints, IcmpEcho, Probe, TcpFlags, TcpProbe, MAX_PROBE_LEN},
    random,
    route::{self, Interface, Route},
    stats::Summary,
    transmit::{self, Transmit},
    xdp::{ReplyChannel, ReplyMatcher},
};

/// How long hping3 waits for replies after the last probe.
const LINGER: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    Interval(Duration),
    /// As fast as the transmit path takes them.
    Flood,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Tcp {
        flags: TcpFlags,
        port: u16,
        /// None picks a random base source port, as hping3 does.
        base_port: Option<u16>,
        keep_port: bool,
        window: u16,
    },
    IcmpEcho,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// The target as the user typed it, for the header and footer.
    pub target_name: String,
    pub target: Ipv4Addr,
    pub kind: ProbeKind,
    /// None: until interrupted.
    pub count: Option<u64>,
    pub pacing: Pacing,
    pub ttl: u8,
    pub interface: Option<Interface>,
    pub quiet: bool,
    pub verbose: bool,
    pub rtt_precision: RttPrecision,
}

/// A run that is set up: route known, reply matcher attached, transmit path open.
pub struct Session {
    options: Options,
    route: Route,
    probe: Arc<dyn Probe>,
    transmit: Box<dyn Transmit>,
    /// Dropping it detaches the XDP program.
    matcher: ReplyMatcher,
    channel: ReplyChannel,
}

impl Session {
    pub fn prepare(options: Options) -> Result<Session> {
        let route = route::lookup(options.target, options.interface.as_ref())?;
        route.interface.require_ethernet_frames()?;
        let endpoints = Endpoints {
            source: route.source,
            target: options.target,
            ttl: options.ttl,
            first_ip_id: random()? as u16,
        };
        let probe: Arc<dyn Probe> = match options.kind {
            ProbeKind::Tcp {
                flags,
                port,
                base_port,
                keep_port,
                window,
            } => Arc::new(TcpProbe {
                endpoints,
                flags,
                target_port: port,
                base_port: match base_port {
                    Some(port) => port,
                    None => 1024 + (random()? % (65536 - 1024)) as u16,
                },
                keep_port,
                window,
                seq: random()? as u32,
                ack: random()? as u32,
            }),
            ProbeKind::IcmpEcho => Arc::new(IcmpEcho {
                endpoints,
                id: random()? as u16,
            }),
        };
        let filter = prober_common::ProbeFilter {
            target_addr: options.target.octets(),
            local_addr: route.source.octets(),
            ..probe.filter()
        };
        // The transmit path first: it may wait up to a second for the next hop's MAC, and
        // nothing should be attached to the interface during that wait.
        let transmit = transmit::open(&route, options.interface.as_ref(), true, false)?;
        let (matcher, channel) =
            ReplyMatcher::attach(&route.interface, &filter, true, !transmit.skips_tc())?;
        Ok(Session {
            options,
            route,
            probe,
            transmit,
            matcher,
            channel,
        })
    }

    /// The lines printed before the first probe (hping3's, plus `-V` details).
    pub fn header(&self) -> Result<Vec<String>> {
        let interface = &self.route.interface;
        let mut lines = Vec::new();
        if self.options.verbose {
            lines.push(output::verbose_header(
                &interface.name,
                self.route.source,
                interface.mtu()?,
            ));
            lines.push(format!(
                "sending through {}, XDP reply matcher attached in {} mode, send times from {}",
                self.transmit.describe(),
                self.matcher.mode,
                self.matcher.departures,
            ));
        }
        lines.push(output::header(
            &self.options.target_name,
            &interface.name,
            self.options.target,
            self.probe.as_ref(),
        ));
        Ok(lines)
    }

    /// Sends the probes and prints a line per reply to `out`; returns the totals.
    pub fn run(self, out: &mut dyn Write) -> Result<Summary> {
        let Session {
            options,
            probe,
            transmit,
            matcher,
            channel,
            ..
        } = self;
        let ReplyChannel { replies, counters } = channel;
        let log = Arc::new(SendLog::new());
        let send = {
            let (log, probe, options) = (log.clone(), probe.clone(), options.clone());
            move |stop: &StopSignal| send_probes(&options, probe.as_ref(), transmit, &log, stop)
        };
        let mut printer = ReplyPrinter {
            options: &options,
            probe: probe.as_ref(),
            log: &log,
            summary: Summary::default(),
            out,
        };
        driver::drive(replies, send, &mut printer, LINGER, Wakeup::EachReply)?;
        let mut summary = printer.summary;
        summary.transmitted = log.sent.load(Ordering::Acquire);
        summary.matched = counters.get(Counter::Matched);
        summary.ring_full = counters.get(Counter::RingFull);
        summary.unmatched = counters.get(Counter::Unmatched);
        drop(matcher);
        Ok(summary)
    }
}

/// Shows each reply as hping3 does and keeps the totals.
struct ReplyPrinter<'a> {
    options: &'a Options,
    probe: &'a dyn Probe,
    log: &'a SendLog,
    summary: Summary,
    out: &'a mut dyn Write,
}

impl ReplyHandler for ReplyPrinter<'_> {
    fn reply(&mut self, reply: &ReplyRecord) -> Result<()> {
        let seq = self.probe.sequence(reply);
        let (userspace_sent_ns, duplicate) = self.log.answer(seq);
        // The departure TC egress saw beats the send thread's clock read before the syscall.
        let sent_ns = match reply.sent_ns {
            0 => userspace_sent_ns,
            kernel => kernel,
        };
        let rtt_ns = reply.kernel_ns.saturating_sub(sent_ns);
        self.summary.received += 1;
        self.summary.rtt.add(rtt_ns);
        if !self.options.quiet {
            let line = output::reply_line(
                self.probe,
                reply,
                seq,
                rtt_ns as f64 / 1e6,
                self.options.rtt_precision,
                duplicate,
                self.options.verbose,
            );
            writeln!(self.out, "{line}").context("writing replies")?;
        }
        Ok(())
    }

    fn complete(&self) -> bool {
        self.options
            .count
            .is_some_and(|count| self.summary.received >= count)
    }

    fn drained(&mut self) -> Result<()> {
        self.out.flush().context("writing replies")
    }
}

/// Send time and answered flag per hping3 sequence number (probe number mod 2^16; always 0
/// with -k).
struct SendLog {
    sent_ns: Box<[AtomicU64]>,
    answered: Box<[AtomicBool]>,
    sent: AtomicU64,
}

impl SendLog {
    fn new() -> SendLog {
        SendLog {
            sent_ns: (0..=u16::MAX).map(|_| AtomicU64::new(0)).collect(),
            answered: (0..=u16::MAX).map(|_| AtomicBool::new(false)).collect(),
            sent: AtomicU64::new(0),
        }
    }

    /// Notes that the probe with hping3 sequence number `seq` is leaving now.
    fn sending(&self, seq: u16) {
        let slot = usize::from(seq);
        self.answered[slot].store(false, Ordering::Relaxed);
        self.sent_ns[slot].store(monotonic_ns(), Ordering::Release);
    }

    /// The send time of probe `seq` and whether it was answered before.
    fn answer(&self, seq: u16) -> (u64, bool) {
        let slot = usize::from(seq);
        let duplicate = self.answered[slot].swap(true, Ordering::Relaxed);
        (self.sent_ns[slot].load(Ordering::Acquire), duplicate)
    }
}

fn send_probes(
    options: &Options,
    probe: &dyn Probe,
    mut transmit: Box<dyn Transmit>,
    log: &SendLog,
    stop: &StopSignal,
) -> io::Result<()> {
    let mut due = Instant::now();
    let mut packet = [0u8; MAX_PROBE_LEN];
    let mut n = 0u64;
    while options.count.is_none_or(|count| n < count) {
        match options.pacing {
            Pacing::Interval(interval) => {
                // Waiting on the stop signal makes the pause end early on Ctrl-C.
                if n > 0 && stop.sleep(due.saturating_duration_since(Instant::now())) {
                    break;
                }
                // Deadlines advance from the schedule, not from when we woke, so the rate holds.
                due += interval;
            }
            Pacing::Flood => {
                if n.is_multiple_of(FLOOD_BATCH) {
                    transmit.flush()?;
                    if stop.requested() {
                        break;
                    }
                }
            }
        }
        let length = probe.build(n, &mut packet);
        log.sending(probe.sequence_of(n));
        transmit.send(&packet[..length])?;
        if options.pacing != Pacing::Flood {
            transmit.flush()?;
        }
        n += 1;
        log.sent.store(n, Ordering::Release);
    }
    transmit.flush()
}
