//! `--arp`: host discovery on a directly connected network, as arp-scan and `nmap -sn -PR`
//! do it. The sweep's neighbour resolver ([`crate::sweep::resolve`]) asks every target once
//! to three times (ARP for IPv4, neighbour solicitations for IPv6) and the XDP program takes
//! the answers; each host that answered is one line, with its MAC and the RTT of its answer
//! (from our first ask leaving, at TC egress, to the answer reaching XDP). Hosts in the
//! kernel's neighbour table are asked too: the answers are what is reported.
use std::{
    collections::HashSet,
    io::Write,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use prober_common::{NeighbourRecord, ProbeFilter, ReplyRecord};
use serde::Serialize;

use crate::{
    bpf::{AttachMode, Departures, ReplyChannel},
    net::{route, Interface},
    output::{Finishing, Lines, Output},
    privileges, realtime_offset_ns,
    reply_loop::{self, Conclusion, ReplyHandler, Sources, Timing, Wakeup},
    setup::{Plumbing, Wiring},
    sweep::{
        files::{self, OutputFile},
        resolve::{self, Neighbours, Resolver},
        results::{self, Format},
        targets::TargetSet,
    },
};

/// How often the answers are read.
const POLL_PERIOD: Duration = Duration::from_millis(5);

/// A discovery, as the command line asked for it.
#[derive(Clone, Debug)]
pub struct Options {
    pub targets: TargetSet,
    /// Asks per second; None floods.
    pub rate: Option<u64>,
    /// How long a host has to answer, from its first ask.
    pub wait: Duration,
    pub interface: Option<Interface>,
    pub qdisc_bypass: bool,
    pub format: Format,
    pub output: Option<OutputFile>,
    pub bpf_trace: bool,
    pub xdp_mode: AttachMode,
    pub verbose: bool,
}

/// Asks every target, writes a line per host that answered, then the statistic.
pub fn run(options: Options) -> Result<Conclusion> {
    let first = options.targets.first().expect("targets are not empty");
    let route = route::lookup(first, options.interface.as_ref())?;
    if let Some((target, taken)) =
        resolve::off_link(&options.targets, &route, options.interface.as_ref())?
    {
        bail!(
            "--arp asks hosts on a directly connected Ethernet network only, and {target} is \
             not on one (its route: via {} on {})",
            taken.next_hop,
            taken.interface.name
        );
    }
    let out = files::writer(options.output.as_ref())?;
    let filter = ProbeFilter {
        local_addr: route.source.into(),
        ..ProbeFilter::default()
    };
    let wiring = Wiring {
        neighbours: resolve::map_capacity(options.targets.len()),
        senders: 1,
        one_next_hop: false,
        qdisc_bypass: options.qdisc_bypass,
        via: options.interface.as_ref(),
        destinations: &options.targets.range_starts().take(16).collect::<Vec<_>>(),
        answers_replies: false,
        xdp_mode: Some(options.xdp_mode),
        trace: options.bpf_trace,
        sweep_epochs: None,
    };
    let plumbing = Plumbing::install(&route, &filter, wiring)?;
    privileges::drop_after_setup()?;
    if options.verbose {
        eprintln!(
            "asking through {} on {} from {}, {}",
            plumbing.transmits[0].describe(),
            route.interface.name,
            route.source,
            plumbing.describe_matching()
        );
    }
    let Plumbing {
        mut transmits,
        matcher,
        channel,
        watch,
    } = plumbing;
    let ReplyChannel {
        replies,
        counters,
        trace,
        neighbours: map,
        ..
    } = channel;
    let (neighbours, answers) = Neighbours::new(route.source);
    let neighbours = Arc::new(neighbours);
    let source_mac = route.interface.ethernet_address()?.unwrap_or_default();
    let send = {
        let (neighbours, targets) = (neighbours.clone(), options.targets.clone());
        let file_asks = matcher.departures != Departures::TcEgress;
        let (interface, source) = (route.interface.clone(), route.source);
        let (rate, wait) = (options.rate, options.wait);
        move |stop: &_| {
            let resolver = Resolver {
                targets: &targets,
                interface: &interface,
                source,
                source_mac,
                rate,
                wait,
                map,
                answers,
                file_asks,
                seed: false,
            };
            resolve::resolve(resolver, &neighbours, transmits[0].as_mut(), stop).map(|_| ())
        }
    };
    let started = Instant::now();
    let mut hosts = Hosts {
        neighbours,
        targets: &options.targets,
        format: options.format,
        out: Output::start(Lines::new(out, "results"))?,
        seen: HashSet::new(),
        realtime_offset_ns: realtime_offset_ns(),
    };
    if options.format == Format::Csv {
        hosts.out.push(CSV_HEADER.to_string());
    }
    let sources = Sources {
        replies,
        trace,
        counters: &counters,
        watch,
    };
    // The resolver has waited out every host's --wait before it returns.
    let timing = Timing {
        linger: Duration::ZERO,
        wakeup: Wakeup::Poll(POLL_PERIOD),
    };
    let outcome = reply_loop::run(sources, send, &mut hosts, timing)?;
    drop(matcher);
    let elapsed = started.elapsed().as_secs_f64();
    let scanned = options.targets.len();
    eprintln!(
        "\n--- prober arp statistic ---\n{scanned} hosts scanned in {elapsed:.3} s ({:.2} \
         hosts/sec). {} responded{}",
        scanned as f64 / elapsed.max(1e-9),
        hosts.seen.len(),
        if outcome.end.interrupted {
            ", interrupted"
        } else {
            ""
        }
    );
    if let Some(line) = outcome.end.cut_short("hosts") {
        eprintln!("{line}");
    }
    if let Some(failure) = outcome.end.failure {
        return Err(failure);
    }
    Ok(outcome.end.conclusion(!hosts.seen.is_empty(), false))
}

const CSV_HEADER: &str = "ip,mac,status,reason,rtt_us,rtt_ns,ts";

/// One JSON line, keys in the documented order.
#[derive(Serialize)]
struct HostLine<'a> {
    ip: IpAddr,
    mac: &'a str,
    status: &'static str,
    reason: &'static str,
    rtt_us: u64,
    rtt_ns: u64,
    #[serde(serialize_with = "results::microseconds")]
    ts: f64,
}

/// The reply side: each first answer from a target becomes its line.
struct Hosts<'a> {
    neighbours: Arc<Neighbours>,
    targets: &'a TargetSet,
    format: Format,
    out: Output<Lines<Box<dyn Write + Send>>>,
    seen: HashSet<IpAddr>,
    realtime_offset_ns: i128,
}

impl Hosts<'_> {
    fn line(&self, answer: &NeighbourRecord) -> String {
        let ip = IpAddr::from(answer.addr);
        let mac = answer
            .mac
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let rtt_ns = answer.answered_ns.saturating_sub(answer.asked_ns);
        let ts = (i128::from(answer.answered_ns) + self.realtime_offset_ns) as f64 / 1e9;
        let reason = match ip {
            IpAddr::V4(_) => "arp-response",
            IpAddr::V6(_) => "nd-response",
        };
        match self.format {
            Format::Json => serde_json::to_string(&HostLine {
                ip,
                mac: &mac,
                status: "up",
                reason,
                rtt_us: rtt_ns / 1000,
                rtt_ns,
                ts,
            })
            .expect("a line of plain values"),
            Format::Csv => format!("{ip},{mac},up,{reason},{},{rtt_ns},{ts:.6}", rtt_ns / 1000),
            // arp-scan's --plain lines.
            Format::List => format!("{ip}\t{mac}"),
            Format::Table => format!("{ip:<39} {mac}  rtt={:.3} ms", rtt_ns as f64 / 1e6),
        }
    }
}

impl ReplyHandler for Hosts<'_> {
    fn reply(&mut self, _reply: &ReplyRecord) -> Result<()> {
        Ok(()) // no probe kind: nothing comes but neighbours' answers
    }

    fn neighbour(&mut self, answer: &NeighbourRecord) {
        self.neighbours.answered(answer);
        let ours = self.targets.index(answer.addr.into()).is_some();
        if ours && self.seen.insert(answer.addr.into()) {
            let line = self.line(answer);
            self.out.push(line);
        }
    }

    fn complete(&self) -> bool {
        true
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
