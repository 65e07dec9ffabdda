//! A sweep's send threads: one per transmit path, each with its share of the rate, walking
//! its positions of the plan pass after pass.
use std::{
    io,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::{
    pacer::{Grant, Pacer},
    plan::Plan,
    progress::Progress,
    resolve::Resolved,
};
use crate::{
    monotonic_ns,
    probe::{ProbeBuffer, SweepProbe, MAX_PROBE_LEN},
    reply_loop::StopSignal,
    transmit::{tx_ring, Transmit},
};

/// What the senders need besides the plan.
#[derive(Clone, Copy)]
pub struct Sending<'a> {
    pub plan: &'a Plan,
    pub progress: &'a Progress,
    pub probe: &'a dyn SweepProbe,
    /// Probes per second, all senders together; None floods.
    pub rate: Option<u64>,
    pub retries: u32,
    /// How long to wait for late replies before a retry pass.
    pub wait: Duration,
    /// On-link targets: each host's MAC, or none for a host that is down (it gets no
    /// probes). None: the transmit path addresses probes itself.
    pub next_hops: Option<&'a Resolved>,
}

/// What the send threads report when they are done.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendReport {
    /// Times a probe waited for room in a TX ring.
    pub full_waits: u64,
    /// From the first probe to the last (None: the senders did not finish in time).
    pub sending: Option<Duration>,
}

/// Runs a send thread per transmit path and waits for them all.
pub fn send_all(
    sending: Sending<'_>,
    transmits: Vec<Box<dyn Transmit>>,
    stop: &StopSignal,
) -> io::Result<SendReport> {
    let started = Instant::now();
    let senders = transmits.len() as u64;
    std::thread::scope(|scope| {
        let threads: Vec<_> = transmits
            .into_iter()
            .enumerate()
            .map(|(sender, transmit)| {
                let sender = sender as u64;
                // The rate's remainder goes to the first senders, so the shares add up.
                let rate = sending
                    .rate
                    .map(|rate| rate / senders + u64::from(sender < rate % senders));
                scope.spawn(move || {
                    let result = send_part(sending, sender, rate, transmit, stop);
                    // One failed sender ends the run: the others stop at their next batch.
                    if result.is_err() {
                        stop.stop();
                    }
                    result
                })
            })
            .collect();
        let full_waits = threads.into_iter().try_fold(0, |full_waits, thread| {
            io::Result::Ok(full_waits + thread.join().expect("a send thread panicked")?)
        })?;
        Ok(SendReport {
            full_waits,
            sending: Some(started.elapsed()),
        })
    })
}

/// One send thread: every pass over its positions, paced; returns how often its transmit
/// path was full.
fn send_part(
    sending: Sending<'_>,
    sender: u64,
    rate: Option<u64>,
    mut transmit: Box<dyn Transmit>,
    stop: &StopSignal,
) -> io::Result<u64> {
    let Sending {
        plan,
        progress,
        probe,
        retries,
        wait,
        next_hops,
        ..
    } = sending;
    let ports_per_host = plan.ports.len();
    let mut pacer = Pacer::new(rate);
    let mut packet: ProbeBuffer = [0u8; MAX_PROBE_LEN];
    let total = plan.len();
    let (first, step) = plan.walk(sender);
    let mine = progress.sender(sender);
    let (first_port, ports) = plan.source_ports(sender);
    let mut sent_here = 0u64;
    'passes: for pass in 0..=retries {
        if pass > 0 && !retry_needed_after(plan, progress, wait, stop) {
            break;
        }
        mine.start_pass_at(monotonic_ns());
        let mut position = first;
        while position < total && !all_answered(plan, progress) {
            let batch = match pacer.grant(u64::MAX) {
                Grant::Send(batch) => batch,
                Grant::Wait(wait) => {
                    if stop.sleep(wait) {
                        break 'passes;
                    }
                    continue;
                }
            };
            let (mut sent, mut down) = (0, 0);
            while sent < batch && position < total {
                let target = plan.target_at(position);
                position += step;
                // Later passes re-probe only what has not answered, and only what they
                // send costs them rate.
                if pass > 0 && progress.is_answered(target) {
                    continue;
                }
                let next_hop = match next_hops.map(|hops| hops.mac(target / ports_per_host)) {
                    // A host that is down gets nothing; its probes count as settled, once.
                    Some(None) => {
                        down += u64::from(pass == 0);
                        continue;
                    }
                    Some(mac) => mac,
                    None => None,
                };
                sent += 1;
                let port_offset = (sent_here % u64::from(ports)) as u16;
                let source_port = first_port + port_offset;
                let (ip, port) = plan.endpoint(target);
                progress.sending(source_port - plan.base_port, target);
                let length = probe.build(ip, port, source_port, sent_here as u16, &mut packet);
                sent_here += 1;
                let packet = &packet[..length];
                let queued = match next_hop {
                    Some(mac) => transmit.send_frame(mac, tx_ring::ether_type(packet)?, packet),
                    None => transmit.send(packet),
                };
                match queued {
                    Err(error) if refused_destination(&error) => progress.refuse(),
                    result => result?,
                }
            }
            transmit.flush()?;
            progress.settle_down(down);
            mine.sent.store(sent_here, Ordering::Release);
            if pass == 0 {
                mine.first_pass_reached.store(position, Ordering::Release);
            }
            // Waits here while the reply side is behind.
            if stop.checkpoint() {
                break 'passes;
            }
        }
    }
    transmit.flush()?;
    Ok(transmit.full_waits())
}

/// Send errors that concern one destination only (a broadcast address without
/// SO_BROADCAST, a firewall's output chain, no route): the probe is counted and skipped.
fn refused_destination(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::ENETUNREACH | libc::EHOSTUNREACH)
    )
}

/// Waits `wait` for late replies before a retry pass; false when none is needed any more
/// (everything answered meanwhile) or the run is stopping.
fn retry_needed_after(plan: &Plan, progress: &Progress, wait: Duration, stop: &StopSignal) -> bool {
    const CHECK_EVERY: Duration = Duration::from_millis(10);
    let deadline = Instant::now() + wait;
    loop {
        if all_answered(plan, progress) {
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

/// Every probe of this shard has been answered (or its host is down): no retry is needed.
fn all_answered(plan: &Plan, progress: &Progress) -> bool {
    progress.settled() >= plan.probes_in_first_pass()
}
