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
    let mut sent_here = 0u64;
    // Of them, the ones the kernel refused: they were not sent.
    let mut refused_here = 0u64;
    'passes: for pass in 0..=retries {
        if pass > 0 && !retry_needed_after(plan, progress, wait, stop) {
            break;
        }
        mine.start_pass_at(pass, monotonic_ns());
        // Which of this sender's positions `position` is: it numbers the probe's slot.
        let (mut position, mut index) = (first, 0);
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
                let slot = plan.send_slot(sender, pass, index);
                (position, index) = (position + step, index + 1);
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
                let (ip, port) = plan.endpoint(target);
                let built = probe.build(ip, port, slot.source_port, slot.epoch, &mut packet);
                let port_offset = slot.source_port - plan.base_port;
                progress
                    .departures
                    .sending(port_offset, slot.epoch, built.cookie);
                sent_here += 1;
                let packet = &packet[..built.len];
                let queued = match next_hop {
                    Some(mac) => transmit.send_frame(mac, tx_ring::ether_type(packet)?, packet),
                    None => transmit.send(packet),
                };
                if let Err(error) = queued {
                    progress.refuse(target, refusal(&error).ok_or(error)?);
                    refused_here += 1;
                }
            }
            transmit.flush()?;
            progress.settle_down(down);
            mine.sent.store(sent_here - refused_here, Ordering::Release);
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

/// Why the kernel refused a probe, for send errors that concern one destination only (a
/// broadcast address without SO_BROADCAST, a firewall's output chain, no route): that probe
/// is refused and the rest go on.
fn refusal(error: &io::Error) -> Option<&'static str> {
    match error.raw_os_error()? {
        libc::EACCES => Some("broadcast"),
        libc::EPERM => Some("firewall"),
        libc::ENETUNREACH | libc::EHOSTUNREACH => Some("no-route"),
        _ => None,
    }
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
