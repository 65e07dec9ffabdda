//! A sweep's reply side: each reply the XDP program matched, classified by the probe kind,
//! counted once per target, timed, and written out as it comes.
use std::time::Instant;

use anyhow::Result;
use prober_common::{Counter, ReplyRecord};

use super::{
    plan::Plan,
    progress::Progress,
    results::{PortResult, ResultWriter},
    status::StatusLine,
    summary::SweepSummary,
};
use crate::{
    bpf::Counters,
    probe::{Status, SweepProbe},
    reply_loop::ReplyHandler,
    setup,
};

pub struct Collector<'a> {
    pub plan: &'a Plan,
    pub progress: &'a Progress,
    pub probe: &'a dyn SweepProbe,
    pub counters: &'a Counters,
    pub results: &'a mut ResultWriter,
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
        self.results.write(&PortResult {
            ip: answer.host,
            port: answer.port,
            protocol: self.probe.protocol(),
            verdict: answer.verdict,
            reply: Some(answer.fields),
        })
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
        self.results.flush()
    }
}
