//! A sweep of a directly connected network resolves its hosts itself, before their SYNs: an
//! ARP request (IPv4) or neighbour solicitation (IPv6) per host through the TX ring, at the
//! sweep's rate, up to [`MAX_ASKS`] spread over `--wait`; the XDP program takes the first
//! answer to each (prober-ebpf's `neighbour.rs`). A host that has not answered within
//! `--wait` of its first ask is down and gets no SYN: on Ethernet a host that answers no ARP
//! cannot receive IP either. Hosts the kernel's neighbour table holds as current (static,
//! NOARP, REACHABLE) are taken from it and not asked.
//!
//! Why not leave it to the kernel: it holds every packet to an unresolved host in the
//! sending socket's queue until resolution fails (three seconds), which stalls a sweep of a
//! sparse subnet, and it would fill its table with an INCOMPLETE, then FAILED, entry for
//! each absent host. prober asks for itself and leaves the table as it was.
use std::{
    collections::VecDeque,
    io,
    net::IpAddr,
    sync::{
        mpsc::{self, Receiver, Sender},
        OnceLock,
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use prober_common::{IpAddress, Neighbour, NeighbourRecord, NEIGHBOUR_ASKED, NEIGHBOUR_RESOLVED};

use super::{
    pacer::{Grant, Pacer},
    targets::TargetSet,
};
use crate::{
    bpf::NeighbourMap,
    monotonic_ns,
    net::{neighbour, route, Interface, Route},
    probe::neighbour::{ask, MAX_ASK_LEN},
    reply_loop::StopSignal,
    transmit::{Transmit, FLOOD_BATCH},
};

/// The map update flag that adds only what is not there yet.
const BPF_NOEXIST: u64 = 1;

/// Asks per host at most, as Linux's `mcast_probes`.
pub const MAX_ASKS: u8 = 3;
/// Neighbours asked and not yet settled at once at most: the programs' map has room for
/// these (and userspace removes each entry once it is settled, so the map stays this size
/// whatever the sweep's).
pub const MAX_OUTSTANDING: u32 = 1 << 16;

/// Whether every target range starts on a directly connected Ethernet network (the route's
/// next hop is the target itself): then prober resolves the targets itself. Targets behind a
/// gateway keep the kernel's addressing (one MAC: the gateway's); a sweep that mixes both
/// does too, as before.
pub fn on_link(targets: &TargetSet, route: &Route, via: Option<&Interface>) -> Result<bool> {
    Ok(off_link(targets, route, via)?.is_none())
}

/// The first target range start that is not on a directly connected Ethernet network, with
/// the route it takes instead; None when all are.
pub fn off_link(
    targets: &TargetSet,
    route: &Route,
    via: Option<&Interface>,
) -> Result<Option<(IpAddr, Route)>> {
    let first = targets.first().expect("targets are not empty");
    if route.local || route.interface.ethernet_address()?.is_none() {
        return Ok(Some((first, route.clone())));
    }
    for start in targets.range_starts() {
        let other = route::lookup(start, via)?;
        if other.next_hop != start {
            return Ok(Some((start, other)));
        }
    }
    Ok(None)
}

/// The programs' map size for a sweep of `hosts` on-link hosts: those asked at once, and room
/// for the kernel's own asks, which TC egress files too and nobody removes.
pub fn map_capacity(hosts: u64) -> u32 {
    hosts.min(u64::from(MAX_OUTSTANDING)) as u32 + 256
}

/// What the reply side and the senders share about the sweep's neighbours.
pub struct Neighbours {
    answers: Sender<NeighbourRecord>,
    resolved: OnceLock<Resolved>,
    /// Why a host is down, as the results word it.
    pub reason: &'static str,
}

/// Who answered, and who is down.
pub struct Resolved {
    /// Per host of the targets (by index), its MAC; None: down.
    macs: Vec<Option<[u8; 6]>>,
    pub down: Vec<IpAddr>,
}

impl Neighbours {
    /// For a sweep of `family`'s family, and the end the resolver reads answers from.
    pub fn new(family: IpAddr) -> (Neighbours, Receiver<NeighbourRecord>) {
        let (answers, received) = mpsc::channel();
        let reason = match family {
            IpAddr::V4(_) => "no-arp-response",
            IpAddr::V6(_) => "no-nd-response",
        };
        let neighbours = Neighbours {
            answers,
            resolved: OnceLock::new(),
            reason,
        };
        (neighbours, received)
    }

    /// A neighbour's answer, as the reply side read it.
    pub fn answered(&self, record: &NeighbourRecord) {
        // The resolver gone (resolution over): a late answer, of no use any more.
        let _ = self.answers.send(*record);
    }

    /// Who answered and who is down, once resolution is over.
    pub fn resolved(&self) -> Option<&Resolved> {
        self.resolved.get()
    }
}

impl Resolved {
    /// Host number `host`'s MAC; None if it is down.
    #[inline]
    pub fn mac(&self, host: u64) -> Option<[u8; 6]> {
        self.macs[host as usize]
    }
}

/// What the resolver needs.
pub struct Resolver<'a> {
    pub targets: &'a TargetSet,
    pub interface: &'a Interface,
    pub source: IpAddr,
    pub source_mac: [u8; 6],
    /// Asks per second; None floods.
    pub rate: Option<u64>,
    pub wait: Duration,
    pub map: NeighbourMap,
    pub answers: Receiver<NeighbourRecord>,
    /// TC egress does not see the asks leave (`--qdisc-bypass`, no TCX): the resolver files
    /// them in the map itself, just before each first ask.
    pub file_asks: bool,
    /// Take the hosts the kernel's neighbour table holds as current from it, unasked (a
    /// sweep); or ask them too (`--arp`, which reports answers).
    pub seed: bool,
}

/// One host's resolution.
#[derive(Clone, Copy, Default)]
struct Host {
    mac: Option<[u8; 6]>,
    asks: u8,
    settled: bool,
    first_ask: Option<Instant>,
    last_ask: Option<Instant>,
}

/// Resolves every target host through `transmit`, files the outcome in `neighbours` and
/// returns it. A stop ends it early, with the hosts not resolved by then down.
pub fn resolve<'n>(
    resolver: Resolver<'_>,
    neighbours: &'n Neighbours,
    transmit: &mut dyn Transmit,
    stop: &StopSignal,
) -> io::Result<&'n Resolved> {
    let Resolver {
        targets,
        interface,
        source,
        source_mac,
        rate,
        wait,
        mut map,
        answers,
        file_asks,
        seed,
    } = resolver;
    let count = targets.len();
    let mut hosts = vec![Host::default(); count as usize];
    let mut settled = 0u64;
    // Seeded from the kernel's table: one dump, whatever the sweep's size.
    let table = match seed {
        true => neighbour::table(interface, source).map_err(io::Error::other)?,
        false => Vec::new(),
    };
    for entry in table.iter().filter(|entry| entry.current()) {
        if let Some(index) = targets.index(entry.ip) {
            let host = &mut hosts[index as usize];
            if !host.settled {
                (host.mac, host.settled) = (Some(entry.mac), true);
                settled += 1;
            }
        }
    }
    let re_ask_after = wait / u32::from(MAX_ASKS);
    let mut pacer = Pacer::new(rate);
    let mut buf = [0u8; MAX_ASK_LEN];
    // Asked and unsettled, in the order of their first ask (for expiry) and of their last
    // (for re-asks); settled ones are dropped as they come to the front.
    let (mut by_first, mut by_last) = (VecDeque::new(), VecDeque::new());
    let mut next = 0u64;
    let mut outstanding = 0u32;
    while settled < count && !stop.requested() {
        let now = Instant::now();
        for record in answers.try_iter() {
            let Some(index) = targets.index(IpAddr::from(record.addr)) else {
                continue;
            };
            let host = &mut hosts[index as usize];
            // The first answer wins: one for a settled host (a second, or a late one) is not
            // taken.
            if host.settled || host.first_ask.is_none() {
                continue;
            }
            (host.mac, host.settled) = (Some(record.mac), true);
            settled += 1;
            outstanding -= 1;
            let _ = map.remove(&record.addr);
        }
        while let Some(&index) = by_first.front() {
            let host: &mut Host = &mut hosts[index as usize];
            if !host.settled {
                if now < host.first_ask.expect("asked") + wait {
                    break;
                }
                let address = IpAddress::from(targets.get(index));
                // An answer whose record the full ring buffer lost is in the map still.
                host.mac = map
                    .get(&address, 0)
                    .ok()
                    .filter(|entry| entry.state == NEIGHBOUR_RESOLVED)
                    .map(|entry| entry.mac);
                host.settled = true;
                settled += 1;
                outstanding -= 1;
                let _ = map.remove(&address);
            }
            by_first.pop_front();
        }
        let mut sent = 0;
        // Rate is granted only when an ask can go: a re-ask due, or a new host with room.
        let re_ask_due = by_last.front().is_some_and(|&index| {
            let host = &hosts[index as usize];
            host.settled || now >= host.last_ask.expect("asked") + re_ask_after
        });
        if re_ask_due || (next < count && outstanding < MAX_OUTSTANDING) {
            match pacer.grant(FLOOD_BATCH) {
                Grant::Wait(pause) => {
                    stop.sleep(pause.min(Duration::from_millis(1)));
                    continue;
                }
                Grant::Send(batch) => {
                    while sent < batch {
                        let Some(index) =
                            due(&mut hosts, &mut by_last, now, re_ask_after).or_else(|| {
                                new_host(&hosts, &mut next, count, outstanding)
                                    .inspect(|_| outstanding += 1)
                            })
                        else {
                            break;
                        };
                        let host = &mut hosts[index as usize];
                        let target = targets.get(index);
                        if host.first_ask.is_none() {
                            host.first_ask = Some(now);
                            by_first.push_back(index);
                            if file_asks {
                                let asked = Neighbour {
                                    asked_ns: monotonic_ns(),
                                    state: NEIGHBOUR_ASKED,
                                    ..Neighbour::default()
                                };
                                let _ = map.insert(IpAddress::from(target), asked, BPF_NOEXIST);
                            }
                        }
                        host.asks += 1;
                        host.last_ask = Some(now);
                        if host.asks < MAX_ASKS {
                            by_last.push_back(index);
                        }
                        let ask = ask(source, source_mac, target, &mut buf);
                        transmit.send_frame(ask.to_mac, ask.ether_type, &buf[..ask.len])?;
                        sent += 1;
                    }
                    transmit.flush()?;
                }
            }
        }
        if sent == 0 {
            stop.sleep(Duration::from_millis(1));
        }
    }
    let mut down = Vec::new();
    let macs = hosts
        .iter()
        .enumerate()
        .map(|(index, host)| {
            if host.mac.is_none() {
                down.push(targets.get(index as u64));
            }
            host.mac
        })
        .collect();
    let _ = neighbours.resolved.set(Resolved { macs, down });
    Ok(neighbours.resolved().expect("just set"))
}

/// The next host whose last ask is `re_ask_after` old and that has asks left, if any.
fn due(
    hosts: &mut [Host],
    by_last: &mut VecDeque<u64>,
    now: Instant,
    re_ask_after: Duration,
) -> Option<u64> {
    while let Some(&index) = by_last.front() {
        let host = &hosts[index as usize];
        if host.settled {
            by_last.pop_front();
            continue;
        }
        if now < host.last_ask.expect("asked") + re_ask_after {
            return None;
        }
        return by_last.pop_front();
    }
    None
}

/// The next host never asked and not settled, while the map has room for another.
fn new_host(hosts: &[Host], next: &mut u64, count: u64, outstanding: u32) -> Option<u64> {
    if outstanding >= MAX_OUTSTANDING {
        return None;
    }
    while *next < count {
        let index = *next;
        *next += 1;
        if !hosts[index as usize].settled {
            return Some(index);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(at: Instant) -> Host {
        Host {
            asks: 1,
            first_ask: Some(at),
            last_ask: Some(at),
            ..Host::default()
        }
    }

    #[test]
    fn new_hosts_come_in_order_skip_the_settled_and_wait_for_room() {
        let settled = Host {
            settled: true,
            ..Host::default()
        };
        let hosts = [Host::default(), settled, Host::default()];
        let mut next = 0;
        assert_eq!(new_host(&hosts, &mut next, 3, 0), Some(0));
        assert_eq!(
            new_host(&hosts, &mut next, 3, 0),
            Some(2),
            "the settled one skipped"
        );
        assert_eq!(new_host(&hosts, &mut next, 3, 0), None);
        let mut next = 0;
        assert_eq!(
            new_host(&hosts, &mut next, 3, MAX_OUTSTANDING),
            None,
            "the map is full"
        );
        assert_eq!(next, 0, "nothing skipped while waiting for room");
    }

    #[test]
    fn a_host_is_asked_again_once_its_last_ask_is_old_enough() {
        let start = Instant::now();
        let after = Duration::from_millis(300);
        let mut hosts = [asked(start), asked(start)];
        hosts[0].settled = true;
        let mut by_last = VecDeque::from([0, 1]);
        assert_eq!(
            due(&mut hosts, &mut by_last, start, after),
            None,
            "too early"
        );
        assert_eq!(by_last, [1], "the settled one dropped");
        assert_eq!(due(&mut hosts, &mut by_last, start + after, after), Some(1));
        assert!(by_last.is_empty());
    }
}
