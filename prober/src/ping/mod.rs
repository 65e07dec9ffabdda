//! One target, as hping3 probes it: probes at an interval (or flooding) until the count is
//! reached, plus a wait for late replies (hping3's one second unless `--wait` says), or
//! Ctrl-C / SIGTERM; a line per reply (to stdout or `--output`'s file) and hping3's statistic
//! at the end.

mod send;
pub mod text;
pub mod traceroute;

use std::{
    io::Write,
    net::IpAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use anyhow::{bail, Result};
use prober_common::{wire::IcmpErrorKind, Counter, ReplyRecord, IPPROTO_TCP};

use crate::{
    bpf::AttachMode,
    net::{route, topology::LocalTable, Interface, Route},
    output::{Finishing, Lines, Output},
    privileges,
    probe::{Endpoints, IpFields, Payload, PingKind, PingProbe},
    random,
    reading::{self, Reading},
    reply_loop::{self, Conclusion, End, ReplyHandler, Sources, Timing, Wakeup},
    rtt::{self, RttStats},
    setup::{self, Plumbing, Wiring},
    sweep::{
        files::{self, OutputFile},
        targets,
    },
    transmit,
};
use send::{Answered, SendLog};
pub use text::RttPrecision;

/// Where the header and reply lines go (stdout or the output file), from the output thread.
pub type LineOutput = Output<Lines<Box<dyn Write + Send>>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    Interval(Duration),
    /// As fast as the transmit path takes them.
    Flood,
}

/// A one-target run, as the command line asked for it.
#[derive(Clone, Debug)]
pub struct Options {
    /// The target as the user typed it, for the header and footer.
    pub target_name: String,
    pub target: IpAddr,
    pub kind: PingKind,
    /// None: until interrupted.
    pub count: Option<u64>,
    pub pacing: Pacing,
    /// How long to wait for late replies after the last probe.
    pub wait: Duration,
    pub ttl: u8,
    pub ip_fields: IpFields,
    pub payload: Payload,
    pub interface: Option<Interface>,
    pub quiet: bool,
    pub verbose: bool,
    pub rtt_precision: RttPrecision,
    pub histogram: bool,
    pub bpf_trace: bool,
    pub xdp_mode: AttachMode,
    /// None: stdout.
    pub output: Option<OutputFile>,
    /// Exit with the last TCP reply's flags (hping3's --tcpexitcode).
    pub tcp_exit_code: bool,
    /// hping3's traceroute (-T): the TTL starts at `ttl` and rises hop by hop.
    pub traceroute: Option<traceroute::Options>,
    /// Show TCP replies as their sequence numbers alone (hping3's -Q).
    pub seqnum: bool,
    /// Send each IPv4 probe as fragments (hping3's -f).
    pub fragments: bool,
    pub source: SourceAddress,
}

/// Where the probes say they come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceAddress {
    /// The route's source address: ours.
    Route,
    /// -a: this address, whose replies are taken if they are routed to this host.
    Spoofed(IpAddr),
    /// --rand-source: a random address of the target's family for each probe. Their replies
    /// go to those addresses, and none is taken: every probe counts as lost.
    Random,
}

/// What a run counted, as hping3's footer reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub transmitted: u64,
    /// Replies, each probe's first: so never more than were sent, whatever arrives.
    pub received: u64,
    /// Further replies to probes already answered (shown with `DUP!`, not counted).
    pub duplicates: u64,
    /// Replies the XDP program matched to a port or sequence number no probe was sent with:
    /// forged, or from an earlier run.
    pub unsolicited: u64,
    /// Replies from a port the probes have moved past (`-p +N`), not taken.
    pub stale: u64,
    pub rtt: RttStats,
    /// The TCP flags of the last TCP reply shown (duplicates too), if one came.
    pub last_tcp_flags: Option<u8>,
    /// Replies the XDP program matched and queued (equals `received` unless the run ended
    /// with replies still queued).
    pub matched: Reading,
    /// Replies the XDP program matched but could not hand over: the ring buffer was full.
    pub ring_full: Reading,
    /// Packets from the target that answered none of our probes.
    pub unmatched: Reading,
    /// Frames the kernel would have dropped (see [`Counter::Malformed`]).
    pub malformed: Reading,
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

/// Runs the probes and prints as hping3 does (the statistic also when an error ended the run
/// early: that error comes back after it).
pub fn run(options: Options) -> Result<Conclusion> {
    let session = Session::prepare(options)?;
    // Created while the capabilities last: root may need them in a directory it does not own.
    let lines = files::writer(session.options.output.as_ref())?;
    privileges::drop_after_setup()?;
    let mut out = Output::start(Lines::new(lines, "reply lines"))?;
    for line in session.header()? {
        out.push(line);
    }
    out.send()?;
    let options = session.options.clone();
    if options.pacing == Pacing::Flood {
        let shown = if options.quiet {
            "no replies will be shown"
        } else {
            "replies will be shown"
        };
        eprintln!("prober in flood mode, {shown}");
    }
    let (summary, end) = session.run(out)?;
    eprintln!(
        "{}",
        text::footer(&options.target_name, &summary, options.rtt_precision)
    );
    if let Some(losses) = text::losses(&summary) {
        eprintln!("{losses}");
    }
    if let Some(line) = end.cut_short("reply lines") {
        eprintln!("{line}");
    }
    if options.verbose {
        rtt::print_percentiles(&summary.rtt);
        eprintln!(
            "xdp: {} replies matched, {} unmatched packets from the target, {} malformed, {} lost to a full ring buffer; \
             {} duplicate replies, {} replies to probes never sent, {} from ports -p +N had left",
            summary.matched, summary.unmatched, summary.malformed, summary.ring_full,
            summary.duplicates, summary.unsolicited, summary.stale
        );
    }
    for failure in reading::failures([
        &summary.matched,
        &summary.ring_full,
        &summary.unmatched,
        &summary.malformed,
    ]) {
        eprintln!("{failure}");
    }
    if options.histogram {
        rtt::print_histogram(&summary.rtt);
    }
    if let Some(failure) = end.failure {
        return Err(failure);
    }
    // Replies the kernel could not hand over are missing from the lines and the counts.
    let lost = summary.ring_full != Reading::Count(0);
    Ok(match end.conclusion(summary.received > 0, lost) {
        Conclusion::Incomplete => Conclusion::Incomplete,
        _ if options.tcp_exit_code => Conclusion::TcpFlags(summary.last_tcp_flags.unwrap_or(0)),
        answered => answered,
    })
}

/// Refuses probes longer than the route's interface takes (or a transmit ring's frame holds):
/// prober fragments them only when asked (-f), into fragments that always fit.
fn fits_the_path(probe: &dyn PingProbe, route: &Route, fragments: bool) -> Result<()> {
    if fragments {
        return Ok(());
    }
    let length = probe.build(0, &mut probe.buffer());
    let mtu = route.interface.mtu()? as usize;
    let longest = mtu.min(transmit::tx_ring::MAX_PACKET_LEN);
    if length > longest {
        let data = probe.payload().size();
        bail!(
            "-d {data}: probes of {length} bytes are longer than {} takes ({longest} bytes; MTU \
             {mtu}), and prober fragments them only with -f: at most -d {}",
            route.interface.name,
            data.saturating_sub(length - longest)
        );
    }
    Ok(())
}

/// A run that is set up: route known, reply matcher attached, transmit path open.
pub struct Session {
    options: Options,
    route: Route,
    probe: Arc<dyn PingProbe>,
    plumbing: Plumbing,
}

impl Session {
    pub fn prepare(options: Options) -> Result<Session> {
        // The kernel refuses to send to one, and hping3 probes one host.
        if targets::in_blocks(&LocalTable::read(options.target)?.broadcast, options.target) {
            bail!(
                "{} is a broadcast address of this host's networks: prober probes one host",
                options.target
            );
        }
        let route = route::lookup(options.target, options.interface.as_ref())?;
        let (source, random_source) = match options.source {
            SourceAddress::Route => (route.source, None),
            SourceAddress::Spoofed(address) => (address, None),
            // The filter keeps our own address, to which no reply comes.
            SourceAddress::Random => (route.source, Some([random()?, random()?])),
        };
        let endpoints = Endpoints {
            source,
            random_source,
            target: options.target,
            ttl: options.ttl,
            first_ip_id: random()? as u16,
            fields: options.ip_fields,
            payload: options.payload.clone(),
            one_flow: options.traceroute.is_some(),
        };
        let probe = options.kind.probe(endpoints)?;
        fits_the_path(probe.as_ref(), &route, options.fragments)?;
        let wiring = Wiring {
            neighbours: 0,
            senders: 1,
            one_next_hop: true,
            qdisc_bypass: false,
            via: options.interface.as_ref(),
            destinations: &[options.target],
            answers_replies: false,
            xdp_mode: Some(options.xdp_mode),
            trace: options.bpf_trace,
            sweep_epochs: None,
        };
        let plumbing = Plumbing::install(&route, &probe.filter(), wiring)?;
        Ok(Session {
            options,
            route,
            probe,
            plumbing,
        })
    }

    /// The lines printed before the first probe (hping3's, plus `-V` details).
    pub fn header(&self) -> Result<Vec<String>> {
        let interface = &self.route.interface;
        let mut lines = Vec::new();
        if self.options.verbose {
            lines.push(text::verbose_header(
                &interface.name,
                self.route.source,
                interface.mtu()?,
            ));
            lines.push(format!(
                "sending through {}, {}",
                self.plumbing.transmits[0].describe(),
                self.plumbing.describe_matching(),
            ));
        }
        lines.push(text::header(
            &self.options.target_name,
            &interface.name,
            self.options.target,
            self.probe.as_ref(),
        ));
        Ok(lines)
    }

    /// Sends the probes and queues a line per reply to `out`; returns the totals, and how the
    /// run ended.
    pub fn run(self, out: LineOutput) -> Result<(Summary, End)> {
        let Session {
            options,
            probe,
            plumbing,
            ..
        } = self;
        let Plumbing {
            mut transmits,
            matcher,
            channel,
            watch,
        } = plumbing;
        let transmit = transmits.remove(0);
        let log = Arc::new(SendLog::new());
        let hops = options
            .traceroute
            .map(|trace| traceroute::Hops::new(trace, options.ttl));
        let send = {
            let (log, probe, options) = (log.clone(), probe.clone(), options.clone());
            let ttl = hops.as_ref().map(traceroute::Hops::ttl);
            move |stop: &_| {
                let probes = send::Probes {
                    probe: probe.as_ref(),
                    ttl: ttl.as_deref(),
                };
                send::send_probes(&options, probes, transmit, &log, stop)
            }
        };
        let mut printer = ReplyPrinter {
            options: &options,
            probe: probe.as_ref(),
            log: &log,
            hops,
            summary: Summary::default(),
            last_remote_seq: 0,
            uptime: text::UptimeGuess::new(match options.pacing {
                Pacing::Interval(interval) => interval,
                Pacing::Flood => Duration::ZERO,
            }),
            out,
        };
        let sources = Sources {
            replies: channel.replies,
            trace: channel.trace,
            counters: &channel.counters,
            watch,
        };
        let timing = Timing {
            linger: options.wait,
            wakeup: Wakeup::EachReply,
        };
        let outcome = reply_loop::run(sources, send, &mut printer, timing)?;
        let mut summary = printer.summary;
        summary.transmitted = log.sent.load(Ordering::Acquire);
        summary.matched = channel.counters.read(Counter::Matched);
        summary.ring_full = channel.counters.read(Counter::RingFull);
        summary.unmatched = channel.counters.read(Counter::Unmatched);
        summary.malformed = channel.counters.read(Counter::Malformed);
        drop(matcher);
        Ok((summary, outcome.end))
    }
}

/// Shows each reply as hping3 does and keeps the totals.
struct ReplyPrinter<'a> {
    options: &'a Options,
    probe: &'a dyn PingProbe,
    log: &'a SendLog,
    /// A traceroute's hops (-T).
    hops: Option<traceroute::Hops>,
    summary: Summary,
    /// The sequence number of the last TCP reply shown with -Q (0 before the first, as
    /// hping3's difference starts from).
    last_remote_seq: u32,
    /// --tcp-timestamp's lines after each first reply.
    uptime: text::UptimeGuess,
    out: LineOutput,
}

impl ReplyHandler for ReplyPrinter<'_> {
    fn reply(&mut self, reply: &ReplyRecord) -> Result<()> {
        if !self.probe.take(reply) {
            // From a port -p +N has moved past: hping3 does not take it either.
            self.summary.stale += 1;
            return Ok(());
        }
        let named = self.probe.names_its_probe(reply);
        let seq = if named {
            self.probe.sequence(reply)
        } else {
            self.log.latest()
        };
        let (userspace_sent_ns, duplicate) = match self.log.answer(seq) {
            Answered::NeverSent => {
                self.summary.unsolicited += 1;
                return Ok(());
            }
            Answered::First { sent_ns } => (sent_ns, false),
            Answered::Again { sent_ns } => (sent_ns, true),
        };
        // The kernel's departure is of the probe the reply names, if it names one.
        let timed = ReplyRecord {
            sent_ns: if named { reply.sent_ns } else { 0 },
            ..*reply
        };
        let rtt_ns = setup::rtt_ns(&timed, || Some(userspace_sent_ns)).unwrap_or(0);
        let rtt_ms = rtt_ns as f64 / 1e6;
        let error = reply.icmp_error();
        // A traceroute's hop: its lines, and whether its round trip counts (hping3's hoprtt).
        let hop = match (&mut self.hops, error) {
            (Some(hops), Some(IcmpErrorKind::TimeExceeded)) => {
                Some(hops.time_exceeded(reply.icmp_from.into(), rtt_ms, self.options.rtt_precision))
            }
            _ => None,
        };
        if duplicate {
            self.summary.duplicates += 1;
        } else {
            self.summary.received += 1;
            // hping3 counts an ICMP error as received, and times it in UDP mode only (and a
            // traceroute's hops).
            if error.is_none_or(|error| self.probe.times_error(error))
                || hop.as_ref().is_some_and(|hop| hop.timed)
            {
                self.summary.rtt.add(rtt_ns);
            }
        }
        if let Some(hops) = &mut self.hops {
            hops.took(error);
        }
        if reply.protocol == IPPROTO_TCP {
            self.summary.last_tcp_flags = Some(reply.tcp_flags);
        }
        // hping3's -Q shows its line even with -q, and -q leaves a traceroute's hop lines in.
        if self.options.seqnum && reply.protocol == IPPROTO_TCP && hop.is_none() {
            let line = text::seqnum_line(reply.tcp_seq, self.last_remote_seq);
            self.last_remote_seq = reply.tcp_seq;
            self.out.push(line);
        } else if !self.options.quiet || hop.is_some() {
            let lines = match (hop, error) {
                (Some(hop), _) => hop.lines,
                (None, Some(error)) => {
                    let mut line =
                        text::icmp_error_line(error, reply.icmp_code, reply.icmp_from.into());
                    self.probe.write_error_trailer(error, reply, seq, &mut line);
                    vec![line]
                }
                (None, None) => {
                    let mut line = text::reply_line(
                        self.probe,
                        reply,
                        seq,
                        rtt_ms,
                        self.options.rtt_precision,
                        duplicate,
                        self.options.verbose,
                    );
                    // Only a filter that asks (--tcp-timestamp) has TSvals recorded; hping3
                    // shows a duplicate's too.
                    if let Some(tsval) = reply.tcp_timestamp() {
                        line += &self.uptime.lines(tsval);
                    }
                    vec![line]
                }
            };
            for line in lines {
                self.out.push(line);
            }
        }
        Ok(())
    }

    fn over(&self) -> bool {
        self.hops.as_ref().is_some_and(traceroute::Hops::stopped)
    }

    fn complete(&self) -> bool {
        self.options
            .count
            .is_some_and(|count| self.summary.received >= count)
    }

    fn drained(&mut self) -> Result<()> {
        self.out.send()
    }

    fn room(&self) -> usize {
        self.out.room()
    }

    fn behind(&mut self) -> bool {
        self.out.behind()
    }

    fn finish(&mut self, _waited: bool) -> Finishing {
        self.out.finish(None)
    }
}
