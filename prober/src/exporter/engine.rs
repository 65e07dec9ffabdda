//! One engine per (interface, source address, probe kind): one long-lived attachment of the
//! reply matcher and the TC egress timer, in sweep mode, shared by every target routed there.
//! Its probes carry the sweep kinds' stateless cookies, so the XDP program takes replies to
//! any target without a map of them; the engine keeps, per target, only its last two probes.
//!
//! Probes are numbered in send order: probe `q` leaves from the block's port (TCP) or
//! identifier (ICMP) `q mod 4096` in epoch `q / 4096`, and TC egress files its departure in that
//! slot of a table of [`EPOCHS`] rows, so a slot is reused only after 65 536 probes. A reply
//! names its target by its address and port, and its probe by the port it comes back to.
//!
//! The engine runs on a thread of its own: it sends each target's probes on its schedule,
//! spread over the interval, drains the ring buffer, times out silent probes, and takes new
//! target lists and on-demand probes (`/probe`) from its channel.
use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    net::IpAddr,
    os::fd::AsRawFd,
    sync::{mpsc, Arc},
    time::Duration,
};

use anyhow::{Context as _, Result};
use prober_common::{Counter, ReplyRecord};

use super::{
    config::Probe,
    metrics::{Metrics, Series, TargetLabels, XdpLabels},
};
use crate::{
    bpf::{self, Counters},
    monotonic_ns,
    net::{Interface, Route},
    probe::{ProbeBuffer, Status, SweepEndpoints, SweepKind, SweepProbe, MAX_PROBE_LEN},
    random,
    setup::{Plumbing, Wiring},
    sweep::{departures::Departures, source_ports, SOURCE_PORTS},
    transmit::Transmit,
};

/// Rows of the departure table: 16 × 4096 slots (1 MiB), a slot reused after 65 536 probes.
pub const EPOCHS: u32 = 16;
/// How often the XDP counters are read into their series.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);
/// The longest the loop sleeps: replies wait in the ring buffer at most this long (their
/// times are the kernel's, so this only delays counting them).
const MAX_SLEEP: Duration = Duration::from_millis(20);
/// The TCP window of the SYNs (as a sweep's default).
const SYN_WINDOW: u16 = 1024;

/// Which engine a target belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct EngineKey {
    pub interface: String,
    pub source: IpAddr,
    pub probe: Probe,
}

/// A configured target, resolved and routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub ip: IpAddr,
    /// 0 for ICMP.
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub labels: TargetLabels,
}

/// A `/probe` request: `count` probes 10 ms apart to one endpoint, answered when the last one
/// is answered or timed out.
pub struct OnDemand {
    pub ip: IpAddr,
    pub port: u16,
    pub count: u32,
    pub timeout: Duration,
    pub answer: tokio::sync::oneshot::Sender<OnDemandResult>,
}

#[derive(Debug, Default)]
pub struct OnDemandResult {
    pub sent: u32,
    pub send_errors: u32,
    /// Each first reply's round trip (seconds) and what it said, by probe number.
    pub replies: Vec<(u32, f64, &'static str)>,
}

const ON_DEMAND_SPACING: Duration = Duration::from_millis(10);

pub enum Command {
    /// The engine's targets from now on; those already there keep their schedule.
    Targets(Vec<Target>),
    Probe(OnDemand),
}

/// A running engine, from the supervisor's side: dropping the sender stops it.
pub struct Handle {
    pub commands: mpsc::Sender<Command>,
    pub thread: std::thread::JoinHandle<Result<()>>,
}

/// Attaches on `route`'s interface and starts the engine's thread.
pub fn start(
    key: EngineKey,
    route: Route,
    xdp_mode: Option<bpf::AttachMode>,
    metrics: Arc<Metrics>,
    targets: Vec<Target>,
) -> Result<Handle> {
    let host = source_ports::HostSockets::read(source_ports::Transport::Tcp)?;
    let block = source_ports::choose(None, &host)?;
    let kind = match key.probe {
        Probe::TcpSyn => SweepKind::TcpSyn { window: SYN_WINDOW },
        Probe::Icmp => SweepKind::IcmpEcho,
    };
    let probe = kind.probe(SweepEndpoints {
        source: route.source,
        ttl: 64,
        tos: 0,
        cookie_key: [random()?, random()?],
        first_source_port: block.first,
        source_ports: SOURCE_PORTS,
    });
    let wiring = Wiring {
        senders: 1,
        // The raw socket: the kernel addresses each probe (targets on the link or behind a
        // router alike), and a link that is down refuses probes instead of swallowing them.
        one_next_hop: false,
        qdisc_bypass: false,
        via: None,
        destinations: &targets.iter().map(|target| target.ip).collect::<Vec<_>>(),
        answers_replies: true,
        xdp_mode,
        trace: false,
        sweep_epochs: Some(EPOCHS),
        neighbours: 0,
    };
    let plumbing = Plumbing::install(&route, &probe.filter(), wiring)
        .with_context(|| format!("attaching to {}", route.interface.name))?;
    let (commands, receiver) = mpsc::channel();
    let mut engine = Engine::new(key, route.interface, block.first, probe, plumbing, metrics)?;
    engine.set_targets(targets);
    let thread = std::thread::Builder::new()
        .name(format!("engine {}", engine.key.interface))
        .spawn(move || engine.run(receiver))
        .context("starting an engine thread")?;
    Ok(Handle { commands, thread })
}

/// One probe in flight or recently answered.
#[derive(Clone, Copy, Debug)]
struct Sent {
    /// The probe's number in send order (its departure slot).
    number: u64,
    cookie: u32,
    /// When it went to the kernel (CLOCK_MONOTONIC), for the timeout and where TC egress is
    /// not attached.
    sent_ns: u64,
    answered: bool,
    expired: bool,
    /// Its number among an on-demand request's probes.
    sequence: u32,
}

/// Whose probes a schedule entry sends.
enum Owner {
    Configured(Target, Series),
    OnDemand {
        request: OnDemand,
        result: OnDemandResult,
    },
}

struct Entry {
    owner: Owner,
    /// The last probes, newest first: a configured target's last two (the one in flight and
    /// the one before, whose late answer is neither a reply nor a duplicate of the next), an
    /// on-demand request's every probe.
    recent: Vec<Sent>,
    keep: usize,
    /// On-demand: probes still to send.
    remaining: u32,
}

impl Entry {
    fn endpoint(&self) -> (IpAddr, u16) {
        match &self.owner {
            Owner::Configured(target, _) => (target.ip, target.port),
            Owner::OnDemand { request, .. } => (request.ip, request.port),
        }
    }

    fn timing(&self) -> (Duration, Duration) {
        match &self.owner {
            Owner::Configured(target, _) => (target.interval, target.timeout),
            Owner::OnDemand { request, .. } => (ON_DEMAND_SPACING, request.timeout),
        }
    }

    fn record(&mut self, sent: Sent) {
        self.recent.insert(0, sent);
        self.recent.truncate(self.keep);
    }

    /// The probe a reply at `port_offset` answers, if it is one of the last two.
    fn probe_at(&mut self, port_offset: u16) -> Option<&mut Sent> {
        self.recent
            .iter_mut()
            .find(|sent| sent.number % u64::from(SOURCE_PORTS) == u64::from(port_offset))
    }
}

/// Scheduled work, earliest first: a probe to send or a probe's timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Send { entry: usize, generation: u64 },
    Timeout { entry: usize, number: u64 },
}

struct Engine {
    key: EngineKey,
    interface: Interface,
    base_port: u16,
    probe: Arc<dyn SweepProbe>,
    transmit: Box<dyn Transmit>,
    plumbing: PlumbingParts,
    departures: Departures,
    metrics: Arc<Metrics>,
    /// Slab of entries; None where one was removed.
    entries: Vec<Option<Entry>>,
    /// Each entry's schedule generation: a send due for an older one is stale.
    generations: Vec<u64>,
    by_endpoint: HashMap<(IpAddr, u16), Vec<usize>>,
    queue: BinaryHeap<Reverse<(u64, Due)>>,
    next_number: u64,
    xdp_seen: [u64; COUNTERS.len()],
    counters_read_ns: u64,
    /// Whether the last send failed, to say so once when sending fails and once when it works
    /// again.
    failing: bool,
    link_down: bool,
}

/// What of the plumbing the engine keeps besides its transmit path.
struct PlumbingParts {
    /// Dropping it detaches the programs.
    _matcher: bpf::ReplyMatcher,
    replies: aya::maps::RingBuf<aya::maps::MapData>,
    counters: Counters,
    watch: crate::net::Watch,
}

const COUNTERS: [(Counter, &str); 5] = [
    (Counter::Matched, "matched"),
    (Counter::RingFull, "ring_full"),
    (Counter::Unmatched, "unmatched"),
    (Counter::Bounced, "bounced"),
    (Counter::Malformed, "malformed"),
];

impl Engine {
    fn new(
        key: EngineKey,
        interface: Interface,
        base_port: u16,
        probe: Arc<dyn SweepProbe>,
        plumbing: Plumbing,
        metrics: Arc<Metrics>,
    ) -> Result<Engine> {
        let Plumbing {
            mut transmits,
            matcher,
            channel,
            watch,
        } = plumbing;
        let departures = Departures::of(&matcher.departures, channel.sweep_departures, EPOCHS);
        Ok(Engine {
            key,
            interface,
            base_port,
            probe,
            transmit: transmits.remove(0),
            plumbing: PlumbingParts {
                _matcher: matcher,
                replies: channel.replies,
                counters: channel.counters,
                watch,
            },
            departures,
            metrics,
            entries: Vec::new(),
            generations: Vec::new(),
            by_endpoint: HashMap::new(),
            queue: BinaryHeap::new(),
            next_number: 0,
            xdp_seen: [0; COUNTERS.len()],
            counters_read_ns: 0,
            failing: false,
            link_down: false,
        })
    }

    /// Sends, reads and times out until the supervisor drops its sender (Ok) or the
    /// interface is gone or rerouted (the error says how).
    fn run(mut self, commands: mpsc::Receiver<Command>) -> Result<()> {
        loop {
            loop {
                match commands.try_recv() {
                    Ok(Command::Targets(targets)) => self.set_targets(targets),
                    Ok(Command::Probe(request)) => self.add_on_demand(request),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            let now = monotonic_ns();
            self.run_due(now);
            self.drain_replies();
            if now.saturating_sub(self.counters_read_ns) >= COUNTERS_EVERY.as_nanos() as u64 {
                self.read_counters();
                self.counters_read_ns = now;
            }
            self.watch_link()?;
            let next = self.queue.peek().map_or(u64::MAX, |Reverse((at, _))| *at);
            let sleep = Duration::from_nanos(next.saturating_sub(monotonic_ns())).min(MAX_SLEEP);
            wait_readable(self.plumbing.replies.as_raw_fd(), sleep);
        }
    }

    /// A link that went down (or lost its carrier) is waited out, said once when it goes and
    /// once when it is back: meanwhile probes fail and count as send errors. An interface
    /// removed, or targets routed elsewhere, end the engine, for the supervisor to rebuild.
    fn watch_link(&mut self) -> Result<()> {
        let change = self.plumbing.watch.check();
        if change.is_ok() && !self.link_down {
            return Ok(());
        }
        let (up, carrier) = self
            .interface
            .link_state()
            .with_context(|| format!("{} was removed", self.interface.name))?;
        let down = !(up && carrier);
        match change {
            // Up all along as far as we knew: a route changed (or a flap came and went).
            Err(change) if !down && !self.link_down => return Err(change),
            Err(change) if down && !self.link_down => {
                super::log(format_args!("{change:#}; waiting for it to come back"));
            }
            // Announcements of the way back up (carrier comes after the link) are the past.
            _ if !down && self.link_down => {
                super::log(format_args!("{} is up again", self.interface.name));
            }
            _ => {}
        }
        self.link_down = down;
        Ok(())
    }

    /// Replaces the configured targets, keeping the schedule and probes of those that stay;
    /// new ones start spread over their interval.
    fn set_targets(&mut self, targets: Vec<Target>) {
        let mut kept: HashMap<TargetLabels, usize> = HashMap::new();
        for (index, slot) in self.entries.iter().enumerate() {
            if let Some(Entry {
                owner: Owner::Configured(target, _),
                ..
            }) = slot
            {
                kept.insert(target.labels.clone(), index);
            }
        }
        let now = monotonic_ns();
        let count = targets.len();
        for (n, target) in targets.into_iter().enumerate() {
            match kept.remove(&target.labels) {
                Some(index) => {
                    let entry = self.entries[index].as_mut().expect("kept");
                    let rescheduled = entry.timing().0 != target.interval;
                    let first = now + spread(target.interval, n, count);
                    if let Owner::Configured(kept, _) = &mut entry.owner {
                        *kept = target;
                    }
                    // A new interval starts over at the target's place in the spread, not at
                    // once with every other target whose interval changed.
                    if rescheduled {
                        self.schedule_send(index, first);
                    }
                }
                None => {
                    let series = self.metrics.announce(&target.labels);
                    let first = now + spread(target.interval, n, count);
                    let index = self.insert(Entry {
                        owner: Owner::Configured(target, series),
                        recent: Vec::with_capacity(2),
                        keep: 2,
                        remaining: u32::MAX,
                    });
                    self.schedule_send(index, first);
                }
            }
        }
        for index in kept.into_values() {
            self.remove(index);
        }
    }

    fn add_on_demand(&mut self, request: OnDemand) {
        let remaining = request.count;
        let index = self.insert(Entry {
            recent: Vec::with_capacity(remaining as usize),
            keep: remaining as usize,
            owner: Owner::OnDemand {
                request,
                result: OnDemandResult::default(),
            },
            remaining,
        });
        self.schedule_send(index, monotonic_ns());
    }

    fn insert(&mut self, entry: Entry) -> usize {
        let endpoint = entry.endpoint();
        let index = match self.entries.iter().position(Option::is_none) {
            Some(free) => {
                self.entries[free] = Some(entry);
                free
            }
            None => {
                self.entries.push(Some(entry));
                self.generations.push(0);
                self.entries.len() - 1
            }
        };
        self.by_endpoint.entry(endpoint).or_default().push(index);
        index
    }

    fn remove(&mut self, index: usize) {
        let Some(entry) = self.entries[index].take() else {
            return;
        };
        // Anything still queued for it is stale from now on.
        self.generations[index] += 1;
        let endpoint = entry.endpoint();
        if let Some(indices) = self.by_endpoint.get_mut(&endpoint) {
            indices.retain(|&other| other != index);
            if indices.is_empty() {
                self.by_endpoint.remove(&endpoint);
            }
        }
        match entry.owner {
            Owner::Configured(target, _) => self.metrics.forget(&target.labels),
            Owner::OnDemand { request, result } => {
                let _ = request.answer.send(result);
            }
        }
    }

    fn schedule_send(&mut self, index: usize, at: u64) {
        self.generations[index] += 1;
        let generation = self.generations[index];
        self.queue.push(Reverse((
            at,
            Due::Send {
                entry: index,
                generation,
            },
        )));
    }

    fn run_due(&mut self, now: u64) {
        let mut buffer: ProbeBuffer = [0; MAX_PROBE_LEN];
        let mut queued = false;
        while let Some(&Reverse((at, due))) = self.queue.peek() {
            if at > now {
                break;
            }
            self.queue.pop();
            match due {
                Due::Send { entry, generation } if self.generations[entry] == generation => {
                    queued |= self.send(entry, at, &mut buffer);
                }
                Due::Send { .. } => {}
                Due::Timeout { entry, number } => self.time_out(entry, number),
            }
        }
        if queued {
            if let Err(error) = self.transmit.flush() {
                self.note_send(Err(error));
            }
        }
    }

    /// Sends the entry's next probe and schedules the one after; true when a probe was queued.
    fn send(&mut self, index: usize, due: u64, buffer: &mut ProbeBuffer) -> bool {
        let Some(entry) = self.entries[index].as_mut() else {
            return false;
        };
        let (interval, timeout) = entry.timing();
        let (ip, port) = entry.endpoint();
        let number = free_number(self.next_number, &entry.recent);
        self.next_number = number + 1;
        let port_offset = (number % u64::from(SOURCE_PORTS)) as u16;
        let epoch = (number / u64::from(SOURCE_PORTS)) as u16;
        let built = self
            .probe
            .build(ip, port, self.base_port + port_offset, epoch, buffer);
        self.departures.sending(port_offset, epoch, built.cookie);
        let sent_ns = monotonic_ns();
        let result = self.transmit.send(&buffer[..built.len]);
        let sequence = match &entry.owner {
            Owner::OnDemand { request, .. } => request.count - entry.remaining,
            Owner::Configured(..) => 0,
        };
        if entry.remaining != u32::MAX {
            entry.remaining -= 1;
        }
        let ok = result.is_ok();
        match &mut entry.owner {
            Owner::Configured(_, series) => {
                match ok {
                    true => series.sent.inc(),
                    false => series.send_errors.inc(),
                };
            }
            Owner::OnDemand { result, .. } => match ok {
                true => result.sent += 1,
                false => result.send_errors += 1,
            },
        }
        if ok {
            entry.record(Sent {
                number,
                cookie: built.cookie,
                sent_ns,
                answered: false,
                expired: false,
                sequence,
            });
            self.queue.push(Reverse((
                sent_ns + timeout.as_nanos() as u64,
                Due::Timeout {
                    entry: index,
                    number,
                },
            )));
        }
        let more = entry.remaining > 0;
        self.note_send(result);
        if more {
            // On the schedule, not from now: a late loop does not drift the target's phase.
            let next = (due + interval.as_nanos() as u64).max(monotonic_ns());
            self.schedule_send(index, next);
        }
        ok
    }

    fn note_send(&mut self, result: std::io::Result<()>) {
        match (result, self.failing) {
            (Err(error), false) => {
                self.failing = true;
                super::log(format_args!(
                    "{} {} {}: sending fails ({error}); counting prober_send_errors_total until it works",
                    self.key.interface, self.key.source, self.key.probe
                ));
            }
            (Ok(()), true) => {
                self.failing = false;
                super::log(format_args!(
                    "{} {} {}: sending works again",
                    self.key.interface, self.key.source, self.key.probe
                ));
            }
            _ => {}
        }
    }

    fn time_out(&mut self, index: usize, number: u64) {
        let Some(entry) = self.entries[index].as_mut() else {
            return;
        };
        let Some(sent) = entry.recent.iter_mut().find(|sent| sent.number == number) else {
            return;
        };
        if sent.answered || sent.expired {
            return;
        }
        sent.expired = true;
        if let Owner::Configured(_, series) = &entry.owner {
            series.timeouts.inc();
        }
        self.finish_on_demand(index);
    }

    /// An on-demand request whose probes are all sent and settled is answered and removed.
    fn finish_on_demand(&mut self, index: usize) {
        let Some(entry) = &self.entries[index] else {
            return;
        };
        let settled = entry
            .recent
            .iter()
            .all(|sent| sent.answered || sent.expired);
        if matches!(entry.owner, Owner::OnDemand { .. }) && entry.remaining == 0 && settled {
            self.remove(index);
        }
    }

    fn drain_replies(&mut self) {
        loop {
            let reply: ReplyRecord = {
                let Some(item) = self.plumbing.replies.next() else {
                    break;
                };
                if item.len() != size_of::<ReplyRecord>() {
                    continue;
                }
                bytemuck::pod_read_unaligned(&item)
            };
            self.reply(&reply);
        }
    }

    fn reply(&mut self, reply: &ReplyRecord) {
        let answer = self.probe.classify(reply);
        let port_offset = answer.source_port.wrapping_sub(self.base_port);
        let Some(candidates) = self.by_endpoint.get(&(answer.host, answer.port)) else {
            return; // a target removed meanwhile
        };
        let Some((index, sent)) = candidates.iter().find_map(|&index| {
            let entry = self.entries[index].as_mut()?;
            let sent = *entry.probe_at(port_offset)?;
            Some((index, sent))
        }) else {
            return; // older than the last two probes
        };
        let entry = self.entries[index].as_mut().expect("found");
        let result = match answer.verdict.status {
            Status::Open => "open",
            Status::Closed => "closed",
            Status::Up => "echo",
            _ => "unreachable",
        };
        if sent.answered || sent.expired {
            if sent.answered {
                if let Owner::Configured(_, series) = &entry.owner {
                    series.duplicates.inc();
                }
            }
            return;
        }
        let port_offset_epoch = (sent.number / u64::from(SOURCE_PORTS)) as u16;
        let departed = self
            .departures
            .sent_ns(port_offset, port_offset_epoch, sent.cookie)
            .unwrap_or(sent.sent_ns);
        let rtt = reply.kernel_ns.saturating_sub(departed) as f64 / 1e9;
        if let Some(probe) = entry.probe_at(port_offset) {
            probe.answered = true;
        }
        match &mut entry.owner {
            Owner::Configured(target, series) => {
                if let Some(replies) = series.replies(result) {
                    replies.inc();
                }
                if result != "unreachable" {
                    series.rtt.observe(rtt);
                    let (last_rtt, ttl) = series
                        .last
                        .get_or_insert_with(|| self.metrics.last_reply(&target.labels));
                    last_rtt.set(rtt);
                    ttl.set(i64::from(answer.fields.ttl));
                }
            }
            Owner::OnDemand { result: done, .. } => {
                done.replies.push((sent.sequence, rtt, result));
            }
        }
        self.finish_on_demand(index);
    }

    fn read_counters(&mut self) {
        for (n, (counter, event)) in COUNTERS.into_iter().enumerate() {
            let Ok(now) = self.plumbing.counters.get(counter) else {
                continue;
            };
            let labels = XdpLabels {
                interface: self.key.interface.clone(),
                probe: self.key.probe.name().to_owned(),
                event,
            };
            self.metrics
                .xdp
                .get_or_create(&labels)
                .inc_by(now.saturating_sub(self.xdp_seen[n]));
            self.xdp_seen[n] = now;
        }
    }
}

/// When the `n`th of `count` targets probed every `interval` is first probed, after now:
/// evenly over the interval, so that they never leave together.
fn spread(interval: Duration, n: usize, count: usize) -> u64 {
    (interval.as_nanos() * n as u128 / count.max(1) as u128) as u64
}

/// The number for a target's next probe: `next`, or the first after it whose port offset none
/// of the target's recent probes has. Their cookies are the same at one port offset (the
/// cookie hashes the endpoints alone), so a late answer to one would pass for the other's.
fn free_number(next: u64, recent: &[Sent]) -> u64 {
    let offset = |number: u64| number % u64::from(SOURCE_PORTS);
    (next..)
        .find(|&number| {
            recent
                .iter()
                .all(|sent| offset(sent.number) != offset(number))
        })
        .expect("fewer recent probes than port offsets")
}

/// Waits up to `timeout` for the ring buffer to have data (the XDP program wakes it in sweep
/// mode only when it fills, so mostly this is the timeout).
fn wait_readable(fd: std::os::fd::RawFd, timeout: Duration) {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // Rounded up: a send due in less than a millisecond waits for it rather than spinning
    // through polls of 0 (it leaves at most that late; its RTT is the kernel's either way).
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: one pollfd we own, for the duration of the call.
    unsafe { libc::poll(&mut poll, 1, millis) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(number: u64) -> Sent {
        Sent {
            number,
            cookie: 0,
            sent_ns: 0,
            answered: false,
            expired: false,
            sequence: 0,
        }
    }

    #[test]
    fn a_targets_recent_probes_never_share_a_port_offset() {
        let ports = u64::from(SOURCE_PORTS);
        // An engine sending exactly 4096 probes an interval would give the target the same
        // port offset every time.
        let recent = [sent(5 + ports), sent(5)];
        assert_eq!(free_number(5 + 2 * ports, &recent), 5 + 2 * ports + 1);
        assert_eq!(
            free_number(6, &recent),
            6,
            "a free offset is taken as it is"
        );
        let crowded = [sent(7), sent(8 + ports)];
        assert_eq!(free_number(7 + ports, &crowded), 9 + ports);
    }

    #[test]
    fn targets_start_spread_evenly_over_their_interval() {
        let second = Duration::from_secs(1);
        let starts: Vec<u64> = (0..4).map(|n| spread(second, n, 4)).collect();
        assert_eq!(starts, [0, 250_000_000, 500_000_000, 750_000_000]);
        assert_eq!(spread(second, 0, 0), 0);
    }
}
