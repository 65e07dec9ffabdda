//! A sweep's reply side: each reply the XDP program matched, classified by the probe kind,
//! counted once per target, timed, and queued for the output thread as it comes; at the end,
//! the targets that stayed silent.
use std::{sync::atomic::Ordering, sync::Arc, time::Instant};

use anyhow::Result;
use prober_common::{Counter, ReplyRecord};

use super::{
    plan::Plan,
    progress::Progress,
    results::{Finding, PortResult, ResultWriter},
    status::StatusLine,
    summary::SweepSummary,
};
use crate::{
    bpf::Counters,
    monotonic_ns,
    output::{Finishing, Output},
    probe::{Answer, Status, SweepProbe},
    reply_loop::ReplyHandler,
};

pub struct Collector<'a> {
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
        answer.fields.rtt_ns = self.rtt_ns(target, &answer, reply.kernel_ns);
        match answer.fields.rtt_ns {
            Some(rtt_ns) => self.summary.rtt.add(rtt_ns),
            None => self.summary.untimed += 1,
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

    fn complete(&self) -> bool {
        self.progress.answered() >= self.plan.probes_in_first_pass()
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
        self.results.finish(Some(Box::new(move |results| {
            if let Some(finding) = silence {
                write_silence(&plan, &progress, probe.protocol(), finding, results)?;
            }
            results.finish()
        })))
    }
}

impl Collector<'_> {
    /// The RTT of `answer` to `target`, which arrived at `arrived_ns`, from its probe's
    /// departure in the table. A retry pass begins a `--wait` after its sender's last probe,
    /// so a reply within its `--wait` answers the probe of its sender's latest pass or, once
    /// the next has begun, of the one before: of those two the latest that left before the
    /// reply came. The latest pass may not have sent it yet, and its slot can then hold an
    /// older pass's probe to the same target (a retry skips answered targets without writing
    /// their slots): only a departure since that pass began is its.
    fn rtt_ns(&self, target: u64, answer: &Answer, arrived_ns: u64) -> Option<u64> {
        let (sender, index) = self.plan.walk_index(target)?;
        let (latest, latest_began_ns) = self.progress.sender(sender).latest_pass();
        let departures = &self.progress.departures;
        let sent_ns = (latest.saturating_sub(1)..=latest)
            .rev()
            .map(|pass| (pass, self.plan.send_slot(sender, pass, index)))
            .filter(|(_, slot)| slot.source_port == answer.source_port)
            .find_map(|(pass, slot)| {
                let port_offset = slot.source_port - self.plan.base_port;
                let not_before = if pass == latest { latest_began_ns } else { 0 };
                departures
                    .sent_ns(port_offset, slot.epoch, answer.cookie)
                    .filter(|sent_ns| (not_before..=arrived_ns).contains(sent_ns))
            })?;
        Some(arrived_ns - sent_ns)
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
    probed.saturating_sub(progress.answered())
}

/// Writes the silent targets as `finding`, where the format lists such results: walking the
/// positions costs what the sweep sent, so it runs on the output thread, after the answers.
fn write_silence(
    plan: &Plan,
    progress: &Progress,
    protocol: &'static str,
    finding: Finding,
    results: &mut ResultWriter,
) -> Result<()> {
    if !results.lists(finding) {
        return Ok(());
    }
    for sender in 0..plan.senders {
        for position in plan.positions_before(sender, reached(progress, sender)) {
            let target = plan.target_at(position);
            if progress.is_answered(target) {
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
