//! A sweep's reply side: each reply the XDP program matched, classified by the probe kind,
//! counted once per target, timed, and queued for the output thread as it comes; at the end,
//! the targets that stayed silent.
use std::{sync::atomic::Ordering, sync::Arc, time::Instant};

use anyhow::Result;
use prober_common::{Counter, NeighbourRecord, ReplyRecord};

use super::{
    plan::{Plan, SendSlot},
    progress::Progress,
    resolve::Neighbours,
    results::{Finding, PortResult, ResultWriter, Shown},
    status::StatusLine,
    summary::SweepSummary,
};
use crate::{
    bpf::Counters,
    monotonic_ns,
    output::{Finishing, Output},
    probe::SweepProbe,
    reply_loop::ReplyHandler,
};

pub struct Collector<'a> {
    /// On-link targets: their answers go to the resolver; its down hosts are written once.
    pub neighbours: Option<Arc<Neighbours>>,
    pub plan: Arc<Plan>,
    pub progress: Arc<Progress>,
    pub probe: Arc<dyn SweepProbe>,
    pub counters: &'a Counters,
    pub results: Output<ResultWriter>,
    /// Which of them `results` writes: only those are queued.
    pub shown: Shown,
    pub summary: SweepSummary,
    pub status: StatusLine,
    pub started: Instant,
}

impl ReplyHandler for Collector<'_> {
    fn reply(&mut self, reply: &ReplyRecord) -> Result<()> {
        let mut answer = self.probe.classify(reply);
        let Some(target) = self.plan.target_of(answer.host, answer.port) else {
            return Ok(()); // a valid cookie for a target not in this sweep: a stale reply
        };
        // An answer that echoes no cookie is the probe's only at the port the probe left from.
        let probe = (answer.source_port, answer.cookie);
        if !self.probe.vouched_by_cookie()
            && sent_from(&self.plan, &self.progress, target, probe.0)
                .next()
                .is_none()
        {
            self.summary.unsolicited += 1;
            return Ok(());
        }
        if !self.progress.answer(target) {
            self.summary.duplicates += 1;
            return Ok(());
        }
        *self.summary.count_of(answer.verdict.status) += 1;
        let sent_ns = departure_of(&self.plan, &self.progress, target, probe, reply.kernel_ns);
        answer.fields.rtt_ns = sent_ns.map(|sent_ns| reply.kernel_ns - sent_ns);
        match answer.fields.rtt_ns {
            Some(rtt_ns) => self.summary.rtt.add(rtt_ns),
            None => self.summary.untimed += 1,
        }
        let finding = Finding::Verdict(answer.verdict);
        if self.shown.lists(finding) {
            self.results.push(PortResult {
                ip: answer.host,
                port: self.probe.has_ports().then_some(answer.port),
                protocol: self.probe.protocol(),
                finding,
                reply: Some(answer.fields),
            });
        }
        Ok(())
    }

    fn neighbour(&mut self, answer: &NeighbourRecord) {
        if let Some(neighbours) = &self.neighbours {
            neighbours.answered(answer);
        }
    }

    fn complete(&self) -> bool {
        self.progress.settled() >= self.plan.probes_in_first_pass()
    }

    fn tick(&mut self) {
        self.status.update(
            self.started.elapsed(),
            self.progress.sent(),
            self.summary.answered(),
            self.summary.open,
            &self.counters.read(Counter::RingFull),
        );
    }

    fn drained(&mut self) -> Result<()> {
        self.write_refusals();
        self.results.send()
    }

    fn room(&self) -> usize {
        self.results.room()
    }

    fn behind(&mut self) -> bool {
        self.results.behind()
    }

    fn records_lost(&mut self) {
        self.progress.note_loss_at(monotonic_ns());
    }

    /// What has not answered is counted, and written after everything else by the output
    /// thread; after an interrupt or an error nothing had its `--wait`, so nothing is.
    fn finish(&mut self, waited: bool) -> Finishing {
        // Off the terminal before the last results and the statistic.
        self.status.finish();
        // The senders are done: these are the last.
        self.write_refusals();
        let silence = waited.then(|| {
            let silence = self.probe.silence();
            let (finding, count) = if self.progress.last_pass_lost() {
                (Finding::Unknown, &mut self.summary.unknown)
            } else {
                (
                    Finding::Verdict(silence),
                    self.summary.count_of(silence.status),
                )
            };
            *count += silent(&self.plan, &self.progress);
            finding
        });
        let (plan, progress, probe) =
            (self.plan.clone(), self.progress.clone(), self.probe.clone());
        // Hosts found down, once each, whenever resolution got to its end.
        let neighbours = self.neighbours.clone().filter(|_| waited);
        self.summary.down = neighbours
            .as_ref()
            .and_then(|neighbours| neighbours.resolved())
            .map_or(0, |resolved| resolved.down.len() as u64);
        self.results.finish(Some(Box::new(move |results| {
            let resolved = neighbours
                .as_ref()
                .and_then(|neighbours| neighbours.resolved());
            if let (Some(neighbours), Some(resolved)) = (&neighbours, resolved) {
                for &ip in &resolved.down {
                    results.write(&PortResult {
                        ip,
                        port: None,
                        protocol: probe.protocol(),
                        finding: Finding::Down(neighbours.reason),
                        reply: None,
                    })?;
                }
            }
            if let Some(finding) = silence {
                let down = |host| resolved.is_some_and(|resolved| resolved.mac(host).is_none());
                write_silence(&plan, &progress, probe.as_ref(), finding, down, results)?;
            }
            results.finish(waited)
        })))
    }
}

impl Collector<'_> {
    /// Queues a result for each probe the kernel refused since the last look.
    fn write_refusals(&mut self) {
        for (target, reason) in self.progress.take_refusals() {
            let (ip, port) = self.plan.endpoint(target);
            self.results.push(PortResult {
                ip,
                port: self.probe.has_ports().then_some(port),
                protocol: self.probe.protocol(),
                finding: Finding::Refused(reason),
                reply: None,
            });
        }
    }
}

/// When the probe that a reply to `target`, at `source_port` echoing `cookie`, answers left,
/// if the departure table still holds it and it left by `arrived_ns`. A retry pass begins a
/// `--wait` after its sender's last probe, so a reply within its `--wait` answers the probe of
/// its sender's latest pass or, once the next has begun, of the one before: of those two the
/// latest. The latest pass may not have sent it yet, and its slot can then hold an older
/// pass's probe to the same target (a retry skips answered targets without writing their
/// slots): only a departure since that pass began is its.
fn departure_of(
    plan: &Plan,
    progress: &Progress,
    target: u64,
    (source_port, cookie): (u16, u32),
    arrived_ns: u64,
) -> Option<u64> {
    sent_from(plan, progress, target, source_port).find_map(|(slot, not_before)| {
        progress
            .departures
            .sent_ns(slot.source_port - plan.base_port, slot.epoch, cookie)
            .filter(|sent_ns| (not_before..=arrived_ns).contains(sent_ns))
    })
}

/// The send slots of `target`'s probe in its sender's latest pass and the one before, latest
/// first, that leave from `source_port`: what a reply within its `--wait` may answer (see
/// [`departure_of`]); each with the time before which its departure is an older pass's.
fn sent_from<'a>(
    plan: &'a Plan,
    progress: &'a Progress,
    target: u64,
    source_port: u16,
) -> impl Iterator<Item = (SendSlot, u64)> + 'a {
    let walked = plan.walk_index(target).map(|(sender, index)| {
        let (latest, latest_began_ns) = progress.sender(sender).latest_pass();
        (latest.saturating_sub(1)..=latest).rev().map(move |pass| {
            let not_before = if pass == latest { latest_began_ns } else { 0 };
            (plan.send_slot(sender, pass, index), not_before)
        })
    });
    walked
        .into_iter()
        .flatten()
        .filter(move |(slot, _)| slot.source_port == source_port)
}

/// How far each sender's first pass got.
fn reached(progress: &Progress, sender: u64) -> u64 {
    progress
        .sender(sender)
        .first_pass_reached
        .load(Ordering::Acquire)
}

/// The targets probed in the first pass that never answered, counted without walking them:
/// every answer is among the positions the senders reached (the cookies' key is this run's
/// own), and they have all finished (the reply loop ends before them only on an interrupt or
/// an error, when nothing is reported silent).
fn silent(plan: &Plan, progress: &Progress) -> u64 {
    let probed: u64 = (0..plan.senders)
        .map(|sender| plan.count_before(sender, reached(progress, sender)))
        .sum();
    probed.saturating_sub(progress.settled())
}

/// Writes the silent targets as `finding`, where the format lists such results: walking the
/// positions costs what the sweep sent, so it runs on the output thread, after the answers.
fn write_silence(
    plan: &Plan,
    progress: &Progress,
    probe: &dyn SweepProbe,
    finding: Finding,
    down: impl Fn(u64) -> bool,
    results: &mut ResultWriter,
) -> Result<()> {
    if !results.lists(finding) {
        return Ok(());
    }
    for sender in 0..plan.senders {
        for position in plan.positions_before(sender, reached(progress, sender)) {
            let target = plan.target_at(position);
            if progress.is_answered(target) || down(target / plan.ports.len()) {
                continue;
            }
            let (ip, port) = plan.endpoint(target);
            results.write(&PortResult {
                ip,
                port: probe.has_ports().then_some(port),
                protocol: probe.protocol(),
                finding,
                reply: None,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::{
        departures::Departures,
        plan::{Shard, DEFAULT_BASE_PORT},
        ports::PortList,
        targets::TargetSet,
    };

    #[test]
    fn a_reply_is_timed_from_the_pass_it_answers() {
        // 4096 targets, one sender of 4096 ports, two epochs: pass r sends target i from port
        // offset i in epoch r, so passes 0 and 2 share a slot.
        let targets = TargetSet::new(&["198.18.4.0/30".to_string()], &[], None).unwrap();
        let ports = PortList::parse("1-1024").unwrap();
        let plan = Plan::new(targets, ports, Shard::WHOLE, 1, DEFAULT_BASE_PORT, [1, 2]);
        let progress = Progress::new(plan.len(), 1, Departures::in_process(2));
        let target = plan.target_at(77);
        let (sender, index) = plan.walk_index(target).unwrap();
        let send = |pass| {
            let slot = plan.send_slot(sender, pass, index);
            let offset = slot.source_port - plan.base_port;
            progress.departures.sending(offset, slot.epoch, 9);
            slot.source_port
        };
        let mine = progress.sender(sender);
        mine.start_pass_at(0, monotonic_ns());
        let port = send(0);
        let sent = |port| departure_of(&plan, &progress, target, (port, 9), monotonic_ns());
        let first = sent(port).expect("pass 0's departure");
        assert_eq!(
            departure_of(&plan, &progress, target, (port, 8), monotonic_ns()),
            None
        );
        assert_eq!(
            departure_of(&plan, &progress, target, (port, 9), first - 1),
            None
        );

        mine.start_pass_at(1, monotonic_ns());
        assert_eq!(sent(port), Some(first), "pass 1 has not sent it yet");
        assert_eq!(
            send(1),
            port,
            "a pass's worth of probes later: the same port"
        );
        let second = sent(port).expect("pass 1's departure");
        assert!(second > first);

        // Pass 2 has begun but not reached the target: its slot still holds pass 0's probe,
        // which is not what a reply now answers.
        mine.start_pass_at(2, monotonic_ns());
        assert_eq!(sent(port), Some(second));
        send(2);
        assert!(sent(port).unwrap() > second);
    }
}
