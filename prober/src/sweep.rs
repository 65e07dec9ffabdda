//! A sweep: SYN probes to every (host, port) of a target set at a set rate, in a keyed
//! random order, matched statelessly in the kernel by SYN cookies. Userspace keeps one bit
//! per (host, port) (answered or not, for duplicates and the filtered list) and the send
//! times of the last few thousand probes (for RTTs): nothing per probe in flight.
use std::{
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use prober_common::{syn_cookie, Counter, ProbeFilter, ReplyRecord, IPPROTO_TCP, MODE_SWEEP};

use crate::{
    driver::{self, ReplyHandler, StopSignal, Wakeup},
    monotonic_ns,
    pacer::{Grant, Pacer},
    permutation::Permutation,
    ports::PortList,
    probe::{TcpFlags, TcpSegment, MAX_PROBE_LEN},
    random,
    results::{PortResult, ReplyFields, ResultWriter, Status},
    route::{self, Interface, Route},
    stats::SweepSummary,
    status::StatusLine,
    targets::TargetSet,
    transmit::{self, Transmit},
    xdp::{Counters, Departures, ReplyChannel, ReplyMatcher},
};

/// Source ports a sweep uses: `base_port .. base_port + SOURCE_PORTS`. The port a probe
/// leaves from is its send number modulo this, which maps a reply to its send time.
pub const SOURCE_PORTS: u16 = 4096;
/// Above Linux's default ephemeral range (32768–60999), so the host's own connections
/// never share a port with the sweep.
pub const DEFAULT_BASE_PORT: u16 = 61440;

/// How often the reply side reads the ring buffer: at 400 000 replies a second, 2 000
/// records (112 KiB of the 4 MiB ring) wait at most this long.
const POLL_PERIOD: Duration = Duration::from_millis(5);

/// This machine's part of a sweep split over `count` machines (zmap's and masscan's shards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: u64,
    pub count: u64,
}

#[derive(Clone, Debug)]
pub struct SweepOptions {
    pub targets: TargetSet,
    pub ports: PortList,
    /// Probes per second; None floods.
    pub rate: Option<u64>,
    pub retries: u32,
    /// How long to wait for late replies after the last probe (and between passes).
    pub wait: Duration,
    /// Picks the probe order; random when None.
    pub seed: Option<u64>,
    pub shard: Shard,
    pub base_port: u16,
    pub ttl: u8,
    pub window: u16,
    pub interface: Option<Interface>,
    /// Send with PACKET_QDISC_BYPASS (see [`crate::tx_ring::TxRing::open`]).
    pub qdisc_bypass: bool,
    /// Show the live status line (stderr is a terminal and not -q).
    pub status_line: bool,
}

/// (host, port) pairs in one sweep at most: the answer map takes a bit per pair (1 GiB here;
/// a whole /0 on one port fits).
const MAX_PROBES: u64 = 1 << 33;

/// Send threads at most: with veth peers the target's and our own softirq work runs on the
/// sending CPU, so one sender per CPU is what lets a sweep use the machine.
const MAX_SENDERS: usize = 4;

/// Set up: route, reply matcher attached, transmit paths open.
pub struct Sweep {
    options: SweepOptions,
    route: Route,
    /// One per send thread.
    transmits: Vec<Box<dyn Transmit>>,
    matcher: ReplyMatcher,
    channel: ReplyChannel,
    cookie_key: [u64; 2],
}

impl Sweep {
    pub fn prepare(options: SweepOptions) -> Result<Sweep> {
        if options.targets.is_empty() {
            bail!("no targets left to probe after the exclusions");
        }
        let pairs = options.targets.len() * options.ports.len();
        if pairs > MAX_PROBES {
            bail!(
                "{pairs} (host, port) pairs in one sweep: at most {MAX_PROBES} (a 1 GiB answer map); \
                 split the targets"
            );
        }
        if options.base_port > u16::MAX - (SOURCE_PORTS - 1) {
            bail!(
                "base source port {} too high: a sweep uses {SOURCE_PORTS} source ports from it (at most {})",
                options.base_port,
                u16::MAX - (SOURCE_PORTS - 1)
            );
        }
        let (route, one_next_hop) = shared_route(&options.targets, options.interface.as_ref())?;
        route.interface.require_ethernet_frames()?;
        // A sender for each CPU, but none with a share of the rate below one probe a second.
        let senders = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_SENDERS)
            .min(options.rate.map_or(usize::MAX, |rate| rate as usize));
        let transmits = (0..senders)
            .map(|_| {
                transmit::open(
                    &route,
                    options.interface.as_ref(),
                    one_next_hop,
                    options.qdisc_bypass,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let cookie_key = [random()?, random()?];
        let filter = ProbeFilter {
            local_addr: route.source.octets(),
            sport_base: options.base_port,
            sport_max_offset: SOURCE_PORTS - 1,
            protocol: IPPROTO_TCP,
            mode: MODE_SWEEP,
            cookie_key,
            ..ProbeFilter::default()
        };
        // A sweep bounces SYN-ACKs as RSTs with XDP_TX, which native XDP on veth drops.
        let driver_mode = !route.interface.is_veth()?;
        let time_departures = !transmits[0].skips_tc();
        let (matcher, channel) =
            ReplyMatcher::attach(&route.interface, &filter, driver_mode, time_departures)?;
        Ok(Sweep {
            options,
            route,
            transmits,
            matcher,
            channel,
            cookie_key,
        })
    }

    /// For `-V`: the paths probes and replies take.
    pub fn describe(&self) -> String {
        format!(
            "sending through {} x {} on {} from {}, XDP reply matcher attached in {} mode, send times from {}",
            self.transmits.len(),
            self.transmits[0].describe(),
            self.route.interface.name,
            self.route.source,
            self.matcher.mode,
            self.matcher.departures,
        )
    }

    /// Sends every probe, writes each result as it is known, then the filtered ones.
    pub fn run(self, results: &mut ResultWriter) -> Result<SweepSummary> {
        let Sweep {
            options,
            route,
            transmits,
            matcher,
            channel,
            cookie_key,
        } = self;
        let ReplyChannel { replies, counters } = channel;
        let plan = Arc::new(Plan::new(
            &options,
            route.source,
            cookie_key,
            transmits.len() as u64,
            matcher.departures != Departures::TcEgress,
        )?);
        let dropped_before = route.interface.dropped_packets()?;
        let started = Instant::now();

        let send = {
            let (plan, options) = (plan.clone(), options.clone());
            move |stop: &StopSignal| plan.send_all(&options, transmits, stop)
        };
        let mut collector = Collector {
            plan: &plan,
            counters: &counters,
            results,
            summary: SweepSummary::default(),
            status: StatusLine::new(options.status_line, plan.probes_in_first_pass()),
            started,
        };
        let outcome = driver::drive(
            replies,
            send,
            &mut collector,
            options.wait,
            Wakeup::Poll(POLL_PERIOD),
        )?;
        let mut summary = collector.summary;
        collector.status.finish();

        // Filtered: probed, never answered after --wait. Walking the positions the first pass
        // reached costs what the sweep sent. After a Ctrl-C nothing had its --wait: what has
        // not answered is unknown, not filtered.
        let senders = if outcome.interrupted { 0 } else { plan.senders };
        for sender in 0..senders {
            let (first, step) = plan.walk(sender);
            let reached = plan.progress[sender as usize]
                .first_pass_reached
                .load(Ordering::Acquire);
            for position in (first..reached).step_by(step as usize) {
                let target = plan.permutation.get(position);
                if !plan.answered.contains(target) {
                    summary.filtered += 1;
                    let (ip, port) = plan.endpoint(target);
                    results.write(&PortResult {
                        ip,
                        port,
                        status: Status::Filtered,
                        reply: None,
                    })?;
                }
            }
        }
        results.finish()?;

        let dropped_after = route.interface.dropped_packets()?;
        summary.hosts = options.targets.len();
        summary.ports = options.ports.len();
        summary.sent = plan.sent();
        summary.refused = plan.refused.load(Ordering::Acquire);
        summary.elapsed = started.elapsed();
        summary.interrupted = outcome.interrupted;
        let report = outcome.sent.unwrap_or_default();
        summary.tx_full_waits = report.full_waits;
        summary.sending = report.sending.unwrap_or(summary.elapsed);
        summary.kernel_tx_dropped = dropped_after.0.saturating_sub(dropped_before.0);
        summary.kernel_rx_dropped = dropped_after.1.saturating_sub(dropped_before.1);
        summary.matched = counters.get(Counter::Matched);
        summary.unmatched = counters.get(Counter::Unmatched);
        summary.bounced = counters.get(Counter::Bounced);
        summary.ring_full = counters.get(Counter::RingFull);
        drop(matcher);
        Ok(summary)
    }
}

/// The route every target shares; sweeps over targets routed differently are refused
/// rather than sent out of the wrong interface.
/// Also says whether every probe goes to one next hop: not so for several hosts on a
/// directly connected network, each with its own MAC, which the kernel's neighbour handling
/// (the raw socket) then has to address. Routes are looked up for the first address of each
/// target range; a more specific route inside a range is not seen.
fn shared_route(targets: &TargetSet, interface: Option<&Interface>) -> Result<(Route, bool)> {
    let mut starts = targets.range_starts();
    let first = starts.next().expect("targets are not empty");
    let route = route::lookup(first, interface)?;
    let mut one_next_hop = targets.len() == 1 || route.next_hop != first;
    for start in starts {
        let other = route::lookup(start, interface)?;
        one_next_hop &= other.next_hop == route.next_hop;
        if other.interface != route.interface || other.source != route.source {
            bail!(
                "{first} and {start} are reached through different interfaces or source addresses \
                 ({} from {}, {} from {}): sweep them separately",
                route.interface.name,
                route.source,
                other.interface.name,
                other.source
            );
        }
    }
    Ok((route, one_next_hop))
}

/// Send errors that concern one destination only (a broadcast address without
/// SO_BROADCAST, a firewall's output chain, no route): the probe is counted and skipped.
fn refused_destination(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::ENETUNREACH | libc::EHOSTUNREACH)
    )
}

/// Everything the send thread and the reply side share: what to probe, in which order, and
/// what has been answered.
struct Plan {
    targets: TargetSet,
    ports: PortList,
    permutation: Permutation,
    source: Ipv4Addr,
    cookie_key: [u64; 2],
    base_port: u16,
    ttl: u8,
    window: u16,
    shard: Shard,
    answered: BitSet,
    /// Probes the kernel refused to send (a broadcast address, a firewall's output chain).
    refused: AtomicU64,
    /// Distinct (host, port) pairs that have answered.
    answered_count: AtomicU64,
    /// Send threads; sender j takes every `senders`-th of this shard's positions from the j-th,
    /// and source ports from its own block of `SOURCE_PORTS / senders`.
    senders: u64,
    progress: Box<[SenderProgress]>,
    /// Per source port: the target (+1; 0 = none) of the last probe sent from it, and when.
    /// Kept only when TC egress does not time departures (`--qdisc-bypass`, no TCX).
    recent: Option<Box<[(AtomicU64, AtomicU64)]>>,
}

/// What one send thread has done, on a cache line of its own so that the threads never
/// write to a shared one per probe.
#[repr(align(64))]
#[derive(Default)]
struct SenderProgress {
    /// Probes sent, all passes (updated per batch).
    sent: AtomicU64,
    /// The next position its first pass would probe.
    first_pass_reached: AtomicU64,
}

impl Plan {
    fn new(
        options: &SweepOptions,
        source: Ipv4Addr,
        cookie_key: [u64; 2],
        senders: u64,
        userspace_send_times: bool,
    ) -> Result<Plan> {
        let total = options.targets.len() * options.ports.len();
        let order_key = match options.seed {
            Some(seed) => [seed, seed.rotate_left(32) ^ 0x5eed],
            None => [random()?, random()?],
        };
        Ok(Plan {
            targets: options.targets.clone(),
            ports: options.ports.clone(),
            permutation: Permutation::new(total, order_key),
            source,
            cookie_key,
            base_port: options.base_port,
            ttl: options.ttl,
            window: options.window,
            shard: options.shard,
            answered: BitSet::new(total),
            refused: AtomicU64::new(0),
            answered_count: AtomicU64::new(0),
            senders,
            progress: (0..senders).map(|_| SenderProgress::default()).collect(),
            recent: userspace_send_times.then(|| {
                (0..SOURCE_PORTS)
                    .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                    .collect()
            }),
        })
    }

    /// Probes sent so far, all senders and passes.
    fn sent(&self) -> u64 {
        self.progress
            .iter()
            .map(|progress| progress.sent.load(Ordering::Acquire))
            .sum()
    }

    /// Probes in one full pass of this shard.
    fn probes_in_first_pass(&self) -> u64 {
        let total = self.permutation.len();
        total
            .saturating_sub(self.shard.index)
            .div_ceil(self.shard.count)
    }

    /// The (host, port) of target number `target` (hosts major, ports minor).
    fn endpoint(&self, target: u64) -> (Ipv4Addr, u16) {
        let ports = self.ports.len();
        (
            self.targets.get(target / ports),
            self.ports.get(target % ports),
        )
    }

    fn target_of(&self, ip: Ipv4Addr, port: u16) -> Option<u64> {
        Some(self.targets.index(ip)? * self.ports.len() + self.ports.index(port)?)
    }

    /// The first position of sender `sender`, and the step between its positions.
    fn walk(&self, sender: u64) -> (u64, u64) {
        let step = self.shard.count * self.senders;
        (self.shard.index + sender * self.shard.count, step)
    }

    /// The send threads, one per transmit path, each with its share of the rate.
    fn send_all(
        &self,
        options: &SweepOptions,
        transmits: Vec<Box<dyn Transmit>>,
        stop: &StopSignal,
    ) -> std::io::Result<SendReport> {
        let started = Instant::now();
        let senders = transmits.len() as u64;
        std::thread::scope(|scope| {
            let threads: Vec<_> = transmits
                .into_iter()
                .enumerate()
                .map(|(sender, transmit)| {
                    let sender = sender as u64;
                    // The rate's remainder goes to the first senders, so the shares add up.
                    let rate = options
                        .rate
                        .map(|rate| rate / senders + u64::from(sender < rate % senders));
                    scope.spawn(move || {
                        let result = self.send_part(sender, rate, options, transmit, stop);
                        // One failed sender ends the run: the others stop at their next batch.
                        if result.is_err() {
                            stop.stop();
                        }
                        result
                    })
                })
                .collect();
            let full_waits = threads.into_iter().try_fold(0, |full_waits, thread| {
                std::io::Result::Ok(full_waits + thread.join().expect("a send thread panicked")?)
            })?;
            Ok(SendReport {
                full_waits,
                sending: Some(started.elapsed()),
            })
        })
    }

    /// One send thread: every pass over its positions, paced; returns how often its
    /// transmit path was full.
    fn send_part(
        &self,
        sender: u64,
        rate: Option<u64>,
        options: &SweepOptions,
        mut transmit: Box<dyn Transmit>,
        stop: &StopSignal,
    ) -> std::io::Result<u64> {
        let mut pacer = Pacer::new(rate);
        let mut packet = [0u8; MAX_PROBE_LEN];
        let total = self.permutation.len();
        let (first, step) = self.walk(sender);
        let progress = &self.progress[sender as usize];
        let ports_per_sender = SOURCE_PORTS / self.senders as u16;
        let first_port = self.base_port + sender as u16 * ports_per_sender;
        let mut sent_here = 0u64;
        'passes: for pass in 0..=options.retries {
            if pass > 0 && !self.retry_needed_after(options.wait, stop) {
                break;
            }
            let mut position = first;
            while position < total && !self.all_answered() {
                let batch = match pacer.grant(u64::MAX) {
                    Grant::Send(batch) => batch,
                    Grant::Wait(wait) => {
                        if stop.sleep(wait) {
                            break 'passes;
                        }
                        continue;
                    }
                };
                let mut sent = 0;
                while sent < batch && position < total {
                    let target = self.permutation.get(position);
                    position += step;
                    // Later passes re-probe only what has not answered, and only what they
                    // send costs them rate.
                    if pass > 0 && self.answered.contains(target) {
                        continue;
                    }
                    sent += 1;
                    let source_port = first_port + (sent_here % u64::from(ports_per_sender)) as u16;
                    let length = self.build(target, source_port, sent_here as u16, &mut packet);
                    sent_here += 1;
                    match transmit.send(&packet[..length]) {
                        Err(error) if refused_destination(&error) => {
                            self.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        result => result?,
                    }
                }
                transmit.flush()?;
                progress.sent.store(sent_here, Ordering::Release);
                if pass == 0 {
                    progress
                        .first_pass_reached
                        .store(position, Ordering::Release);
                }
                if stop.requested() {
                    break 'passes;
                }
            }
        }
        transmit.flush()?;
        Ok(transmit.full_waits())
    }

    /// Waits `wait` for late replies before a retry pass; false when none is needed any more
    /// (everything answered meanwhile) or the run is stopping.
    fn retry_needed_after(&self, wait: Duration, stop: &StopSignal) -> bool {
        const CHECK_EVERY: Duration = Duration::from_millis(10);
        let deadline = Instant::now() + wait;
        loop {
            if self.all_answered() {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            if stop.sleep(left.min(CHECK_EVERY)) {
                return false;
            }
        }
    }

    /// Every probe of this shard has been answered: no retry is needed.
    fn all_answered(&self) -> bool {
        self.answered_count.load(Ordering::Relaxed) >= self.probes_in_first_pass()
    }

    /// Writes the SYN for `target` from `source_port` and, where userspace keeps send times,
    /// notes its send time against that port.
    fn build(
        &self,
        target: u64,
        source_port: u16,
        ip_id: u16,
        packet: &mut [u8; MAX_PROBE_LEN],
    ) -> usize {
        let (ip, port) = self.endpoint(target);
        if let Some(recent) = &self.recent {
            let (sent_target, sent_ns) = &recent[usize::from(source_port - self.base_port)];
            sent_target.store(target + 1, Ordering::Relaxed);
            sent_ns.store(monotonic_ns(), Ordering::Release);
        }
        TcpSegment {
            source: self.source,
            target: ip,
            ttl: self.ttl,
            ip_id,
            source_port,
            target_port: port,
            seq: syn_cookie(
                self.cookie_key,
                ip.octets(),
                port,
                self.source.octets(),
                source_port,
            ),
            ack: 0,
            flags: TcpFlags(TcpFlags::SYN),
            window: self.window,
        }
        .write(packet)
    }

    /// Nanoseconds from the probe `reply` answers to the reply: from its departure at TC
    /// egress, or else from its send time here, if its source port has not been reused since.
    fn rtt_ns(&self, target: u64, reply: &ReplyRecord) -> Option<u64> {
        let sent_ns = match reply.sent_ns {
            0 => {
                let slot = reply.dst_port.wrapping_sub(self.base_port);
                let (sent_target, sent_ns) = self.recent.as_ref()?.get(usize::from(slot))?;
                let sent_ns = sent_ns.load(Ordering::Acquire);
                (sent_target.load(Ordering::Relaxed) == target + 1).then_some(sent_ns)?
            }
            kernel => kernel,
        };
        Some(reply.kernel_ns.saturating_sub(sent_ns))
    }
}

/// What the send threads report when they are done.
#[derive(Clone, Copy, Debug, Default)]
struct SendReport {
    /// Times a probe waited for room in a TX ring.
    full_waits: u64,
    /// From the first probe to the last (None: the senders did not finish in time).
    sending: Option<Duration>,
}

/// Classifies replies, writes results, keeps the totals and the status line.
struct Collector<'a> {
    plan: &'a Plan,
    counters: &'a Counters,
    results: &'a mut ResultWriter,
    summary: SweepSummary,
    status: StatusLine,
    started: Instant,
}

impl ReplyHandler for Collector<'_> {
    fn reply(&mut self, reply: &ReplyRecord) -> Result<()> {
        let ip = Ipv4Addr::from(reply.src_addr);
        let Some(target) = self.plan.target_of(ip, reply.src_port) else {
            return Ok(()); // a valid cookie for a target not in this sweep: a stale reply
        };
        if !self.plan.answered.insert(target) {
            self.summary.duplicates += 1;
            return Ok(());
        }
        self.plan.answered_count.fetch_add(1, Ordering::Relaxed);
        let status = if reply.tcp_flags & TcpFlags::RST != 0 {
            self.summary.closed += 1;
            Status::Closed
        } else {
            self.summary.open += 1;
            Status::Open
        };
        let rtt_ns = self.plan.rtt_ns(target, reply);
        if let Some(rtt_ns) = rtt_ns {
            self.summary.rtt.add(rtt_ns);
        }
        self.results.write(&PortResult {
            ip,
            port: reply.src_port,
            status,
            reply: Some(ReplyFields {
                ttl: reply.ttl,
                ip_id: reply.ip_id,
                window: reply.tcp_window,
                ip_len: reply.ip_len,
                tcp_flags: reply.tcp_flags,
                rtt_ns,
                kernel_ns: reply.kernel_ns,
            }),
        })
    }

    fn complete(&self) -> bool {
        self.summary.open + self.summary.closed >= self.plan.probes_in_first_pass()
    }

    fn tick(&mut self) {
        self.status.update(
            self.started.elapsed(),
            self.plan.sent(),
            self.summary.answered(),
            self.summary.open,
            self.counters.get(Counter::RingFull),
        );
    }

    fn drained(&mut self) -> Result<()> {
        self.results.flush()
    }
}

/// One bit per (host, port), set from the reply side and read by the send threads. Its
/// memory is allocated zeroed and only becomes resident where replies set bits.
struct BitSet(Box<[AtomicU64]>);

// The cast in BitSet::new relies on this (true on every 64-bit target).
const _: () = assert!(std::mem::align_of::<u64>() == std::mem::align_of::<AtomicU64>());

impl BitSet {
    fn new(len: u64) -> BitSet {
        let words = vec![0u64; len.div_ceil(64) as usize].into_boxed_slice();
        // SAFETY: AtomicU64 has the size and bit validity of u64, and (asserted above) its
        // alignment, so a boxed slice of one is a boxed slice of the other with the same layout.
        BitSet(unsafe { Box::from_raw(Box::into_raw(words) as *mut [AtomicU64]) })
    }

    fn contains(&self, index: u64) -> bool {
        self.0[(index / 64) as usize].load(Ordering::Relaxed) & (1 << (index % 64)) != 0
    }

    /// Sets the bit; false when it was set already.
    fn insert(&self, index: u64) -> bool {
        let bit = 1 << (index % 64);
        self.0[(index / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit == 0
    }
}
