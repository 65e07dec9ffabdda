//! A sweep's reply side: each reply the XDP program matched, classified by the probe kind,
//! counted once per target, timed, and queued for the output thread as it comes; at the end,
//! the targets that stayed silent.
use std::{sync::atomic::Ordering, sync::Arc, time::Instant};

use anyhow::Result;
use prober_common::{Counter, NeighbourRecord, ReplyRecord};

use super::{
    plan::Plan,
    progress::Progress,
    resolve::Neighbours,
    results::{Finding, PortResult, ResultWriter},
    status::StatusLine,
    summary::SweepSummary,
};
use crate::{
    bpf::Counters,
    monotonic_ns,
    output::{Finishing, Output},
    probe::{Status, SweepProbe},
    reply_loop::ReplyHandler,
    setup,
};

pub struct Collector<'a> {
    /// On-link targets: their answers go to the resolver; its down hosts are written once.
    pub neighbours: Option<Arc<Neighbours>>,
    pub plan: Arc<Plan>,
    pub progress: Arc<Progress>,
    pub probe: Arc<dyn SweepProbe>,
    pub counters: &'a Counters,
    pub results: Output<ResultWriter>,
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
        if !self.progress.answer(target) {
            self.summary.duplicates += 1;
            return Ok(());
        }
        match answer.verdict.status {
            Status::Open => self.summary.open += 1,
            Status::Closed => self.summary.closed += 1,
            Status::Filtered => self.summary.filtered += 1,
        }
        let slot = answer.source_port.wrapping_sub(self.plan.base_port);
        answer.fields.rtt_ns = setup::rtt_ns(reply, || self.progress.sent_at(slot, target));
        if let Some(rtt_ns) = answer.fields.rtt_ns {
            self.summary.rtt.add(rtt_ns);
        }
        self.results.push(PortResult {
            ip: answer.host,
            port: answer.port,
            protocol: self.probe.protocol(),
            finding: Finding::Verdict(answer.verdict),
            reply: Some(answer.fields),
        });
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
        let silence = waited.then(|| {
            let (finding, count) = if self.progress.last_pass_lost() {
                (Finding::Unknown, &mut self.summary.unknown)
            } else {
                (
                    Finding::Verdict(self.probe.silence()),
                    &mut self.summary.filtered,
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
                        port: 0,
                        protocol: probe.protocol(),
                        finding: Finding::Down(neighbours.reason),
                        reply: None,
                    })?;
                }
            }
            if let Some(finding) = silence {
                let down = |host| resolved.is_some_and(|resolved| resolved.mac(host).is_none());
                write_silence(&plan, &progress, probe.protocol(), finding, down, results)?;
            }
            results.finish()
        })))
    }
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
    protocol: &'static str,
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
                port,
                protocol,
                finding,
                reply: None,
            })?;
        }
    }
    Ok(())
}
