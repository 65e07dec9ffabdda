//! A sweep: a probe to every (host, port) of a target set at a set rate, in a keyed random
//! order, matched statelessly in the kernel by cookies. Userspace keeps one bit per
//! (host, port) (answered or not, for duplicates and the filtered list) and a departure
//! table sized from the rate and `--wait` ([`departures`]): nothing per probe in flight.
//!
//! [`plan`] says what is probed in which order, [`send`] sends it, [`collect`] reads the
//! replies, [`results`] writes them, [`summary`] counts them.

mod bitset;
mod collect;
pub(crate) mod departures;
pub mod files;
mod pacer;
mod permutation;
mod plan;
pub mod ports;
mod progress;
pub mod resolve;
pub mod results;
mod send;
mod services;
pub(crate) mod source_ports;
mod status;
mod summary;
pub mod targets;

use std::{
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use prober_common::Counter;

use crate::{
    bpf::{self, AttachMode, ReplyChannel},
    net::{route, topology::LocalTable, Interface, Route},
    output::{self, Output},
    privileges,
    probe::{SweepEndpoints, SweepKind, SweepProbe},
    random,
    reading::{self, Reading},
    reply_loop::{self, Conclusion, End, Sources, Timing, Wakeup},
    rtt,
    setup::{Plumbing, Wiring},
};
use collect::Collector;
use departures::Departures;
use files::OutputFile;
use plan::Plan;
pub use plan::{Shard, DEFAULT_BASE_PORT, SOURCE_PORTS};
use ports::PortList;
use progress::Progress;
use resolve::{Neighbours, Resolver};
use results::{Finding, Format, PortResult, ResultWriter, Shown};
use send::Sending;
use status::{Screen, StatusLine};
use summary::SweepSummary;
use targets::TargetSet;

/// How often the reply side reads the ring buffer: at 400 000 replies a second, 2 000
/// records (140 KiB of the 4 MiB ring) wait at most this long.
const POLL_PERIOD: Duration = Duration::from_millis(5);

/// (host, port) pairs in one sweep at most: the answer map takes a bit per pair (1 GiB here;
/// a whole /0 on one port fits).
pub const MAX_PROBES: u64 = 1 << 33;

/// Send threads at most: with veth peers the target's and our own softirq work runs on the
/// sending CPU, so one sender per CPU is what lets a sweep use the machine.
const MAX_SENDERS: usize = 4;

/// A sweep, as the command line asked for it.
#[derive(Clone, Debug)]
pub struct Options {
    pub targets: TargetSet,
    /// The first target as the user typed it, for the scan table's header.
    pub first_target_name: String,
    pub ports: PortList,
    pub kind: SweepKind,
    /// Probes per second; None floods.
    pub rate: Option<u64>,
    pub retries: u32,
    /// How long to wait for late replies after the last probe (and between passes).
    pub wait: Duration,
    /// Picks the probe order; random when None.
    pub seed: Option<u64>,
    pub shard: Shard,
    /// The first source port `-s` asked for; None: the default block, or another clear one.
    pub base_port: Option<u16>,
    pub ttl: u8,
    /// IPv4's type of service, IPv6's traffic class (-o).
    pub tos: u8,
    pub interface: Option<Interface>,
    /// Send with PACKET_QDISC_BYPASS (see [`crate::transmit::tx_ring::TxRing::open`]).
    pub qdisc_bypass: bool,
    /// Show the live status line (stderr is a terminal and not -q).
    pub status_line: bool,
    pub format: Format,
    /// Where results go; stdout when None.
    pub output: Option<OutputFile>,
    pub verbose: bool,
    /// `--open`: open ports only.
    pub open_only: bool,
    pub histogram: bool,
    pub bpf_trace: bool,
    /// `--xdp-mode`; None: TCX ingress where the kernel has it.
    pub xdp_mode: Option<AttachMode>,
}

impl Options {
    /// Which results are written.
    fn shown(&self) -> Shown {
        Shown::of(self.format, self.verbose).open_only(self.open_only)
    }
}

/// Runs the sweep, writes its results, and prints the statistic (also when an error ended the
/// sweep early: that error comes back after it).
pub fn run(options: Options) -> Result<Conclusion> {
    // Before anything is attached or sent: a refused file stops the sweep at once.
    // --bpf-trace's lines go to stderr from the reply loop, where the line would be.
    let screen = Screen::new(options.status_line && !options.bpf_trace);
    let out: Box<dyn Write + Send> = match &options.output {
        Some(_) => files::writer(options.output.as_ref())?,
        None => Box::new(output::buffered(screen.beside(output::stdout_file()?))),
    };
    let created = options.output.clone().filter(|file| !file.overwrite);
    let sweep = match Sweep::prepare(options) {
        Ok(sweep) => sweep,
        Err(error) => {
            // The new file holds nothing yet; left behind, it would only make the next run
            // need --force.
            if let Some(file) = created {
                let _ = std::fs::remove_file(&file.path);
            }
            return Err(error);
        }
    };
    let options = &sweep.options;
    // Only now that the output file is open (root may need its capabilities to create it in a
    // directory it does not own), and before the output thread starts (they are per thread).
    privileges::drop_after_setup()?;
    let results = Output::start(ResultWriter::new(options.shown(), out)?)?;
    if options.verbose {
        eprintln!("{}", sweep.describe());
    }
    let table = options.format == Format::Table;
    if table {
        eprintln!(
            "{}",
            results::table_header(
                &options.first_target_name,
                options.targets.first().expect("a sweep has targets"),
                options.ports.spec(),
                options.ports.len()
            )
        );
    }
    let (verbose, histogram) = (options.verbose, options.histogram);
    let (summary, end) = sweep.run(results, screen)?;
    eprintln!("{}", summary::footer(&summary));
    for failure in reading::failures(summary.readings()) {
        eprintln!("{failure}");
    }
    if let Some(line) = end.cut_short("results") {
        eprintln!("{line}");
    }
    if verbose {
        eprintln!("{}", summary::timing_line(&summary));
        if let Some(line) = summary::unsolicited_line(&summary) {
            eprintln!("{line}");
        }
        rtt::print_percentiles(&summary.rtt);
    }
    if histogram {
        rtt::print_histogram(&summary.rtt);
    }
    if let Some(failure) = end.failure {
        return Err(failure);
    }
    Ok(end.conclusion(summary.answered() > 0, summary.unknown > 0))
}

/// Set up: route, probes, transmit paths open, reply matcher attached.
pub struct Sweep {
    options: Options,
    unprobed: Unprobed,
    route: Route,
    probe: Arc<dyn SweepProbe>,
    plan: Plan,
    plumbing: Plumbing,
    /// Rows of the departure table.
    epochs: u32,
    /// Targets on a directly connected network: prober resolves them itself.
    neighbours: Option<(
        Arc<Neighbours>,
        std::sync::mpsc::Receiver<prober_common::NeighbourRecord>,
    )>,
}

impl Sweep {
    pub fn prepare(mut options: Options) -> Result<Sweep> {
        if options.targets.is_empty() {
            bail!("no targets left to probe after the exclusions");
        }
        let unprobed = Unprobed::set_aside(&mut options.targets, options.shard)?;
        let pairs = options.targets.len() * options.ports.len();
        if pairs > MAX_PROBES {
            bail!(
                "{pairs} (host, port) pairs in one sweep: at most {MAX_PROBES} (a 1 GiB answer map); \
                 split the targets"
            );
        }
        let transport = match options.kind {
            SweepKind::Udp => source_ports::Transport::Udp,
            // An echo sweep's identifiers are its block's slots, kept clear of TCP's sockets
            // as well.
            _ => source_ports::Transport::Tcp,
        };
        let host = source_ports::HostSockets::read(transport)?;
        let block = source_ports::choose(options.base_port, &host)?;
        if let Some(moved) = block.moved.filter(|_| options.verbose) {
            eprintln!("{moved}");
        }
        let base_port = block.first;
        let (route, one_next_hop) = shared_route(&options.targets, options.interface.as_ref())?;
        // A sender for each CPU, but none with a share of the rate below one probe a second.
        let senders = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_SENDERS)
            .min(options.rate.map_or(usize::MAX, |rate| rate as usize));
        let probe = options.kind.probe(SweepEndpoints {
            source: route.source,
            ttl: options.ttl,
            tos: options.tos,
            cookie_key: [random()?, random()?],
            first_source_port: base_port,
            source_ports: SOURCE_PORTS,
        });
        let probes_per_sender = (options.retries as u64 + 1)
            .saturating_mul(pairs.div_ceil(options.shard.count * senders.max(1) as u64));
        let epochs = departures::epochs(
            options.rate,
            options.wait,
            senders as u64,
            probes_per_sender,
        );
        let neighbours = resolve::on_link(&options.targets, &route, options.interface.as_ref())?
            .then(|| Neighbours::new(route.source));
        let wiring = Wiring {
            neighbours: match neighbours {
                Some(_) => resolve::map_capacity(options.targets.len()),
                None => 0,
            },
            senders,
            one_next_hop,
            qdisc_bypass: options.qdisc_bypass,
            via: options.interface.as_ref(),
            destinations: &options.targets.range_starts().take(16).collect::<Vec<_>>(),
            answers_replies: true,
            xdp_mode: options.xdp_mode,
            trace: options.bpf_trace,
            sweep_epochs: Some(epochs),
        };
        let plumbing = Plumbing::install(&route, &probe.filter(), wiring)?;
        let order_key = match options.seed {
            Some(seed) => [seed, seed.rotate_left(32) ^ 0x5eed],
            None => [random()?, random()?],
        };
        let plan = Plan::new(
            options.targets.clone(),
            options.ports.clone(),
            options.shard,
            plumbing.transmits.len() as u64,
            base_port,
            order_key,
        );
        Ok(Sweep {
            options,
            unprobed,
            route,
            probe,
            plan,
            plumbing,
            epochs,
            neighbours: neighbours.map(|(neighbours, answers)| (Arc::new(neighbours), answers)),
        })
    }

    /// For `-V`: the paths probes and replies take.
    pub fn describe(&self) -> String {
        let transmits = &self.plumbing.transmits;
        let slots = departures::slots(self.epochs);
        format!(
            "sending through {} x {} on {} from {}, {}, departure table of {slots} slots ({} KiB)",
            transmits.len(),
            transmits[0].describe(),
            self.route.interface.name,
            self.route.source,
            self.plumbing.describe_matching(),
            slots * size_of::<prober_common::SweepDeparture>() / 1024,
        )
    }

    /// Sends every probe, writes each result to `results` as it is known, then the silent
    /// ones, with the live status line on `screen`; returns the totals, and how the run ended.
    pub fn run(
        self,
        mut results: Output<ResultWriter>,
        screen: Arc<Screen>,
    ) -> Result<(SweepSummary, End)> {
        let Sweep {
            options,
            unprobed,
            route,
            probe,
            plan,
            plumbing,
            epochs,
            neighbours,
        } = self;
        unprobed.report(probe.protocol(), &mut results);
        let Plumbing {
            transmits,
            matcher,
            channel,
            watch,
        } = plumbing;
        let ReplyChannel {
            replies,
            sweep_departures,
            counters,
            trace,
            neighbours: neighbour_map,
        } = channel;
        let (neighbours, answers) = neighbours.unzip();
        let userspace_send_times = matcher.departures != bpf::Departures::TcEgress;
        let departures = Departures::of(&matcher.departures, sweep_departures, epochs);
        let progress = Arc::new(Progress::new(plan.len(), plan.senders, departures));
        let plan = Arc::new(plan);
        let dropped_before = route.interface.dropped_packets();
        let started = Instant::now();

        let send = {
            let (plan, progress, probe) = (plan.clone(), progress.clone(), probe.clone());
            let (rate, retries, wait) = (options.rate, options.retries, options.wait);
            let neighbours = neighbours.clone();
            let (interface, source) = (route.interface.clone(), route.source);
            let source_mac = route.interface.ethernet_address().ok().flatten();
            move |stop: &_| {
                let mut transmits = transmits;
                // On-link targets are resolved first: only those that answer get SYNs.
                let next_hops = match (&neighbours, answers, source_mac) {
                    (Some(neighbours), Some(answers), Some(source_mac)) => {
                        let resolver = Resolver {
                            targets: &plan.targets,
                            interface: &interface,
                            source,
                            source_mac,
                            rate,
                            wait,
                            map: neighbour_map,
                            answers,
                            file_asks: userspace_send_times,
                            seed: true,
                        };
                        let resolved =
                            resolve::resolve(resolver, neighbours, transmits[0].as_mut(), stop)?;
                        // Stopped while resolving: not one SYN more.
                        if stop.requested() {
                            return Ok(send::SendReport::default());
                        }
                        Some(resolved)
                    }
                    _ => None,
                };
                let sending = Sending {
                    plan: &plan,
                    progress: &progress,
                    probe: probe.as_ref(),
                    rate,
                    retries,
                    wait,
                    next_hops,
                };
                send::send_all(sending, transmits, stop)
            }
        };
        let mut collector = Collector {
            neighbours: neighbours.clone(),
            plan: plan.clone(),
            progress: progress.clone(),
            probe: probe.clone(),
            counters: &counters,
            results,
            shown: options.shown(),
            summary: SweepSummary::default(),
            status: StatusLine::new(screen, plan.probes_in_first_pass()),
            started,
        };
        let timing = Timing {
            linger: options.wait,
            wakeup: Wakeup::Poll(POLL_PERIOD),
        };
        let sources = Sources {
            replies,
            trace,
            counters: &counters,
            watch,
        };
        let outcome = reply_loop::run(sources, send, &mut collector, timing)?;
        let mut summary = collector.summary;

        let dropped_after = route.interface.dropped_packets();
        summary.hosts = options.targets.len();
        // An echo sweep's one position per host is no port.
        summary.ports = if probe.has_ports() {
            options.ports.len()
        } else {
            0
        };
        summary.sent = progress.sent();
        summary.refused = progress.refused();
        summary.elapsed = started.elapsed();
        let end = &outcome.end;
        summary.interrupted = end.interrupted || end.failure.is_some() || end.output_closed;
        let report = outcome.sent.unwrap_or_default();
        summary.tx_full_waits = report.full_waits;
        summary.sending = report.sending.unwrap_or(summary.elapsed);
        let (tx, rx) = match (dropped_before, dropped_after) {
            (Ok(before), Ok(after)) => (
                Reading::Count(after.tx.saturating_sub(before.tx)),
                Reading::Count(after.rx.saturating_sub(before.rx)),
            ),
            (Err(error), _) | (_, Err(error)) => {
                let why = Reading::of(Err(error));
                (why.clone(), why)
            }
        };
        (summary.kernel_tx_dropped, summary.kernel_rx_dropped) = (tx, rx);
        summary.matched = counters.read(Counter::Matched);
        summary.unmatched = counters.read(Counter::Unmatched);
        summary.malformed = counters.read(Counter::Malformed);
        summary.bounced = counters.read(Counter::Bounced);
        summary.ring_full = counters.read(Counter::RingFull);
        drop(matcher);
        Ok((summary, outcome.end))
    }
}

/// Targets no probe goes to, each reported `refused` as a host: the broadcast addresses of
/// this host's networks (the kernel refuses probes to them, and the TX ring would send them
/// to every host on the link), and, in a sweep of other hosts, this host's own addresses (the
/// kernel delivers them over `lo`, where nothing matches the replies of a sweep sent along
/// the others' route).
struct Unprobed {
    broadcast: TargetSet,
    own: TargetSet,
}

impl Unprobed {
    /// Takes them out of `targets`; refuses a sweep that probes none of its targets, and a
    /// sharded one that holds any (every machine must plan the same targets, and they are
    /// this machine's).
    fn set_aside(targets: &mut TargetSet, shard: Shard) -> Result<Unprobed> {
        let local = LocalTable::read(targets.first().expect("targets are not empty"))?;
        let broadcast = targets.split_off(&local.broadcast);
        let mut own = targets.split_off(&local.own);
        if targets.is_empty() {
            // A sweep of this host alone: probed over lo.
            std::mem::swap(targets, &mut own);
        }
        let first_own = own.first().map(|ip| (ip, "this host's own address"));
        let first_broadcast = broadcast
            .first()
            .map(|ip| (ip, "a broadcast address of this host's networks"));
        if let Some((ip, what)) = first_own.or(first_broadcast) {
            if shard.count > 1 {
                bail!(
                    "{ip} is {what}, not probed, which only this machine of a sharded sweep \
                     would leave out: --exclude it on every one"
                );
            }
            if targets.is_empty() {
                bail!("{ip} is {what}: not probed");
            }
        }
        Ok(Unprobed { broadcast, own })
    }

    /// Their results, and a line on stderr for each own address.
    fn report(&self, protocol: &'static str, results: &mut Output<ResultWriter>) {
        for ip in self.own.addresses() {
            eprintln!(
                "prober: {ip} is this host's own address: not probed (sweep it on its own to \
                 probe it over lo)"
            );
        }
        for (set, reason) in [(&self.broadcast, "broadcast"), (&self.own, "own-address")] {
            for ip in set.addresses() {
                results.push(PortResult {
                    ip,
                    port: None,
                    protocol,
                    finding: Finding::Refused(reason),
                    reply: None,
                });
            }
        }
    }
}

/// The route every target shares; sweeps over targets routed differently are refused
/// rather than sent out of the wrong interface.
/// Also says whether every probe goes to one next hop: not so for several hosts on a
/// directly connected network, each with its own MAC, which the kernel's neighbour handling
/// (the raw socket) then has to address. Routes are looked up for the first address of each
/// target range; a more specific route inside a range is not seen. (This host's own addresses,
/// routed over `lo`, are among the targets only in a sweep of them alone: see [`Unprobed`].)
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
