//! The reply event loop every run shares: probes go out on a send thread while the async side
//! drains the XDP program's ring buffer (and its trace, if asked for) into the run's output,
//! until the sender is done and the late replies are in (or no more can come), Ctrl-C /
//! SIGTERM, or an error (a failed send, a failed output) ends the run early.
//!
//! The loop never waits on the output: the handler queues it for a thread of its own
//! ([`crate::output`]). While that queue is filling, or after the ring buffer overflowed (the
//! kernel's RingFull counter rose), the senders are held back ([`StopSignal::checkpoint`]);
//! while it is full, records stay in the ring buffer. Signals are taken at every stage, the
//! last wait for the output included. The first SIGINT or SIGTERM stops the run, gives the
//! output a moment to finish (`OUTPUT_STOP_WAIT`), and gives both signals back their default
//! action, so that a second one ends prober at once.
use std::{
    io,
    mem::size_of,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    time::Duration,
};

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{MapData, RingBuf};
use prober_common::{Counter, NeighbourRecord, ReplyRecord};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, Signal, SignalKind},
    sync::oneshot,
};

use crate::{
    bpf::{BpfTrace, Counters},
    net::Watch,
    output::{self, Finishing},
};

/// How long a stopped send thread may take to finish its current batch.
const SENDER_STOP_WAIT: Duration = Duration::from_secs(1);
/// How long, after an interrupt, the output thread may take to write what it still holds;
/// then it is left behind (its reader has stalled) and prober ends without it.
const OUTPUT_STOP_WAIT: Duration = Duration::from_millis(250);
/// How often a loop woken by each reply still reads the ring buffer: for records left there
/// while the output was full, and for the kernel's count of lost ones.
const CHECK_PERIOD: Duration = Duration::from_millis(10);

/// What the run does with replies.
pub trait ReplyHandler {
    fn reply(&mut self, reply: &ReplyRecord) -> Result<()>;
    /// A neighbour answered the run's ARP request or neighbour solicitation.
    fn neighbour(&mut self, _answer: &NeighbourRecord) {}
    /// Every reply the run waits for has come: the wait for late ones can end now.
    fn complete(&self) -> bool;
    /// Whether the run is over now, probes left to send or not (a traceroute's --tr-stop).
    fn over(&self) -> bool {
        false
    }
    /// Once a second while the run lasts.
    fn tick(&mut self) {}
    /// After each batch of replies: hands the output over (without waiting for it).
    fn drained(&mut self) -> Result<()>;
    /// How many more replies it can take now without its output queue overflowing.
    fn room(&self) -> usize;
    /// Its output is behind: the senders should wait.
    fn behind(&mut self) -> bool;
    /// The kernel dropped reply records (its ring buffer was full) since the last call, or
    /// could not say whether it did.
    fn records_lost(&mut self) {}
    /// The run is over: closes the output. `waited`: it ran its course (no interrupt, no
    /// error), so what has not answered had its wait.
    fn finish(&mut self, waited: bool) -> Finishing;
}

/// The send threads' view of the run: a request to stop (Ctrl-C, the run ended), and one to
/// hold back (the reply side is behind).
#[derive(Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    held: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl StopSignal {
    pub fn requested(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Sleeps for `duration` unless a stop comes first; true when it did.
    pub fn sleep(&self, duration: Duration) -> bool {
        let _ = self
            .wake
            .wait_timeout_while(self.guard(), duration, |_| !self.requested());
        self.requested()
    }

    /// Between batches: waits while the senders are held back, then says whether to stop.
    pub fn checkpoint(&self) -> bool {
        if self.held.load(Ordering::Acquire) {
            drop(self.wake.wait_while(self.guard(), |_| {
                self.held.load(Ordering::Acquire) && !self.requested()
            }));
        }
        self.requested()
    }

    pub fn stop(&self) {
        let _guard = self.guard();
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_all();
    }

    /// Holds the senders back at their next [`StopSignal::checkpoint`], or lets them go on.
    fn hold(&self, held: bool) {
        if self.held.swap(held, Ordering::AcqRel) && !held {
            let _guard = self.guard();
            self.wake.notify_all();
        }
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a run ended.
pub struct Outcome<T> {
    /// What the sender returned; None if it was still busy when the run ended (or failed).
    pub sent: Option<T>,
    pub end: End,
}

/// How a run ended, besides what the sender returned.
#[derive(Debug, Default)]
pub struct End {
    /// A signal cut the run short.
    pub interrupted: bool,
    /// What ended the run early, if anything did: a failed send, a failed output.
    pub failure: Option<anyhow::Error>,
    /// The output was given up on (a signal came while its reader was not reading), with
    /// this many items still queued.
    pub unwritten: Option<usize>,
    /// The output's reader closed it (`prober … | head -2`): the run ended there, and ends
    /// as other tools then do, without an error and with exit status 0.
    pub output_closed: bool,
}

impl End {
    /// What ended the run early: a closed output is no failure (see [`End::output_closed`]);
    /// of the others the first is kept.
    fn fail(&mut self, error: anyhow::Error) {
        if output::reader_closed(&error) {
            self.output_closed = true;
        } else {
            self.failure.get_or_insert(error);
        }
    }

    /// What the exit status says: replies came (`answered`), part of the result is missing
    /// (`incomplete`); a run whose reader went away ends as other tools then do, with 0.
    pub fn conclusion(&self, answered: bool, incomplete: bool) -> Conclusion {
        if self.output_closed {
            return Conclusion::Answered;
        }
        Conclusion::of(answered, incomplete || self.unwritten.is_some())
    }

    /// The line that says the output was cut short, if it was; `what` names its items.
    pub fn cut_short(&self, what: &str) -> Option<String> {
        let line = match self.unwritten? {
            0 => "prober: output cut short: the reader stopped reading".to_string(),
            queued => format!(
                "prober: output cut short: {queued} {what} not written, the reader stopped reading"
            ),
        };
        Some(line)
    }
}

/// What a run's exit status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conclusion {
    /// Replies came, and what the run reports is all there is.
    Answered,
    /// No reply came.
    Unanswered,
    /// Part of the result is missing: replies were lost in the kernel, or output not written.
    Incomplete,
    /// `--tcpexitcode`: the TCP flags of the last reply (0 if none came), as hping3 exits.
    TcpFlags(u8),
}

impl Conclusion {
    pub fn of(answered: bool, incomplete: bool) -> Conclusion {
        match (incomplete, answered) {
            (true, _) => Conclusion::Incomplete,
            (false, true) => Conclusion::Answered,
            (false, false) => Conclusion::Unanswered,
        }
    }
}

/// How the reply side learns of new replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// The kernel wakes it for each reply.
    EachReply,
    /// It reads the ring buffer this often (the kernel only wakes it when the ring fills).
    Poll(Duration),
}

/// Where the loop reads from.
pub struct Sources<'a> {
    pub replies: RingBuf<MapData>,
    pub trace: Option<BpfTrace>,
    /// The XDP program's counters, for the records it lost.
    pub counters: &'a Counters,
    /// Changes to the interface and routes that end the run.
    pub watch: Watch,
}

/// How long the loop lasts and how it learns of replies.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long to wait for late replies once the sender is done.
    pub linger: Duration,
    pub wakeup: Wakeup,
}

/// Runs `send` on its own thread and feeds replies to `handler` until the sender has
/// finished and the linger has passed (or the handler is complete), a signal arrives, or an
/// error ends the run; then waits for the handler's output. An error that ends the run
/// early comes back in [`End::failure`], for the caller to report after its statistic.
pub fn run<T: Send + 'static>(
    sources: Sources<'_>,
    send: impl FnOnce(&StopSignal) -> io::Result<T> + Send + 'static,
    handler: &mut dyn ReplyHandler,
    timing: Timing,
) -> Result<Outcome<T>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run_async(sources, send, handler, timing))
}

async fn run_async<T: Send + 'static>(
    Sources {
        replies,
        trace,
        counters,
        watch,
    }: Sources<'_>,
    send: impl FnOnce(&StopSignal) -> io::Result<T> + Send + 'static,
    handler: &mut dyn ReplyHandler,
    Timing { linger, wakeup }: Timing,
) -> Result<Outcome<T>> {
    let mut signals = Signals::catch()?;
    // SAFETY: the ring buffer owns its map fd; it stays open and the same for as long as
    // the AsyncFd owns the ring buffer.
    let mut replies = unsafe { AsyncFd::register(replies) }
        .map_err(io::Error::from)
        .context("watching the reply ring buffer")?;
    // SAFETY: as for the replies: the trace owns its ring buffer's fd for as long as the
    // AsyncFd owns the trace.
    let mut trace = trace
        .map(|trace| unsafe { AsyncFd::register(trace) }.map_err(io::Error::from))
        .transpose()
        .context("watching the eBPF trace")?;
    // SAFETY: the watch owns its netlink socket; it stays open and the same for as long as
    // the AsyncFd owns the watch.
    let mut watch = unsafe { AsyncFd::register(watch) }
        .map_err(io::Error::from)
        .context("watching link and route changes")?;

    let stop = Arc::new(StopSignal::default());
    let (done, mut sender_done) = oneshot::channel();
    let stop_for_sender = stop.clone();
    let sender = std::thread::Builder::new()
        .name("prober-send".into())
        .spawn(move || {
            let _ = done.send(send(&stop_for_sender));
        })
        .context("starting the send thread")?;

    let mut running = Running {
        handler,
        counters,
        stop: &stop,
        lost: 0,
        losing: false,
        end: End::default(),
    };
    let sources = (&mut replies, &mut trace, &mut watch);
    let mut sent = running
        .until_over(sources, &mut sender_done, &mut signals, (linger, wakeup))
        .await;
    stop.stop();
    // The send thread stops at its next batch; a send blocked in the kernel (a driver
    // holding frames) must not hold up the footer, so it gets a bounded wait, not a join.
    if sent.is_none() && running.end.failure.is_none() {
        if let Ok(Ok(result)) = tokio::time::timeout(SENDER_STOP_WAIT, &mut sender_done).await {
            match result.context("sending probes") {
                Ok(report) => sent = Some(report),
                Err(error) => running.end.fail(error),
            }
        }
    }
    drop(sender);
    running
        .wind_down(replies.get_mut(), trace.as_mut(), &mut signals)
        .await;
    if running.end.output_closed {
        output::quiet_stderr_if_stdout().context("checking stderr after stdout was closed")?;
    }
    Ok(Outcome {
        sent,
        end: running.end,
    })
}

/// The loop's state while the run lasts.
struct Running<'a> {
    handler: &'a mut dyn ReplyHandler,
    counters: &'a Counters,
    stop: &'a StopSignal,
    /// Records the kernel had lost at the last look.
    lost: u64,
    /// It had lost more at the last look than at the one before.
    losing: bool,
    end: End,
}

impl Running<'_> {
    /// Until the sender is done and the linger over, the handler complete, a signal, or an
    /// error; returns what the sender returned, if it finished.
    async fn until_over<T>(
        &mut self,
        (replies, trace, watch): (
            &mut AsyncFd<RingBuf<MapData>>,
            &mut Option<AsyncFd<BpfTrace>>,
            &mut AsyncFd<Watch>,
        ),
        sender_done: &mut oneshot::Receiver<io::Result<T>>,
        signals: &mut Signals,
        (linger, wakeup): (Duration, Wakeup),
    ) -> Option<T> {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        let mut checks = tokio::time::interval(match wakeup {
            Wakeup::Poll(period) => period,
            Wakeup::EachReply => CHECK_PERIOD,
        });
        let mut linger_until: Option<tokio::time::Instant> = None;
        let mut sent = None;
        loop {
            let lingering = async {
                match linger_until {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let step: Result<()> = tokio::select! {
                ready = replies.readable_mut() => match ready {
                    Ok(mut ready) => {
                        let room = self.handler.room();
                        let drained = drain(ready.get_inner_mut(), self.handler, room);
                        // Records left for want of room are read on the next check.
                        ready.clear_ready();
                        drop(ready);
                        drained.map(|()| self.hold_senders(false))
                    }
                    Err(error) => Err(anyhow!(error).context("waiting for replies")),
                },
                result = &mut *sender_done, if sent.is_none() => match result {
                    Ok(Ok(report)) => {
                        sent = Some(report);
                        linger_until = Some(tokio::time::Instant::now() + linger);
                        Ok(())
                    }
                    Ok(Err(error)) => Err(anyhow!(error).context("sending probes")),
                    Err(_) => Err(anyhow!("the send thread ended without a result")),
                },
                _ = checks.tick() => {
                    let room = self.handler.room();
                    drain(replies.get_mut(), self.handler, room)
                        .map(|()| self.hold_senders(true))
                }
                ready = async { Some(trace.as_mut()?.readable_mut().await) }, if trace.is_some() => {
                    match ready {
                        Some(Ok(mut ready)) => {
                            ready.get_inner_mut().flush();
                            ready.clear_ready();
                            Ok(())
                        }
                        Some(Err(error)) => Err(anyhow!(error).context("waiting for the eBPF trace")),
                        None => Ok(()),
                    }
                }
                ready = watch.readable_mut() => match ready {
                    Ok(mut ready) => {
                        let changes = ready.get_inner_mut().check();
                        ready.clear_ready();
                        changes
                    }
                    Err(error) => Err(anyhow!(error).context("watching link and route changes")),
                },
                _ = ticks.tick() => {
                    self.handler.tick();
                    Ok(())
                }
                () = signals.first() => {
                    self.end.interrupted = true;
                    break;
                }
                _ = lingering => break,
            };
            if let Err(error) = step {
                self.end.fail(error);
                break;
            }
            if sent.is_some() && self.handler.complete() || self.handler.over() {
                break;
            }
        }
        sent
    }

    /// Holds the senders back while the handler's output is behind, or the kernel lost
    /// records between the last two looks (`look`: look now).
    fn hold_senders(&mut self, look: bool) {
        if look {
            self.losing = self.records_lost();
        }
        self.stop.hold(self.losing || self.handler.behind());
    }

    /// Whether the kernel's count of lost records rose since the last look (or could not be
    /// read: then nobody can say there were none); tells the handler if so.
    fn records_lost(&mut self) -> bool {
        let rose = match self.counters.get(Counter::RingFull) {
            Ok(lost) => lost > std::mem::replace(&mut self.lost, lost),
            Err(_) => true,
        };
        if rose {
            self.handler.records_lost();
        }
        rose
    }

    /// After the run: what is left in the ring buffer, the last count of lost records, then
    /// the output, for as long as it takes (unless a signal says otherwise).
    async fn wind_down(
        &mut self,
        replies: &mut RingBuf<MapData>,
        trace: Option<&mut AsyncFd<BpfTrace>>,
        signals: &mut Signals,
    ) {
        // Replies already matched in the kernel are shown and counted, not lost: the ring
        // buffer holds a bounded number, so the output queue takes them all.
        if let Err(error) = drain(replies, self.handler, usize::MAX) {
            self.end.fail(error);
        }
        self.records_lost();
        if let Some(trace) = trace {
            trace.get_mut().flush();
        }
        let waited = !self.end.interrupted && self.end.failure.is_none() && !self.end.output_closed;
        let mut output = self.handler.finish(waited);
        // A signal now cuts short the writing only: the run itself is over.
        let mut stopping = self.end.interrupted;
        loop {
            let grace = async {
                if stopping {
                    tokio::time::sleep(OUTPUT_STOP_WAIT).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                written = output.written() => {
                    if let Err(error) = written {
                        self.end.fail(error);
                    }
                    return;
                }
                () = signals.first(), if !stopping => stopping = true,
                () = grace => {
                    self.end.unwritten = Some(output.unwritten());
                    return;
                }
            }
        }
    }
}

/// Feeds the handler the records waiting in the ring buffer, at most `room` of them, then
/// hands its output over.
fn drain(
    replies: &mut RingBuf<MapData>,
    handler: &mut dyn ReplyHandler,
    room: usize,
) -> Result<()> {
    for _ in 0..room {
        let Some(item) = replies.next() else { break };
        // Told apart by their lengths (prober-common asserts they differ).
        match item.len() {
            len if len == size_of::<ReplyRecord>() => {
                handler.reply(&bytemuck::pod_read_unaligned(&item))?
            }
            len if len == size_of::<NeighbourRecord>() => {
                handler.neighbour(&bytemuck::pod_read_unaligned(&item))
            }
            _ => {}
        }
    }
    handler.drained()
}

/// SIGINT and SIGTERM, which end a run.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn catch() -> Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("catching SIGTERM")?,
        })
    }

    /// The first SIGINT or SIGTERM. Taking it gives both signals their default action back:
    /// the next one ends prober at once, wherever the wind-down is.
    async fn first(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: SIG_DFL is always a valid disposition, and nothing waits for these
            // signals through tokio any more once one has come.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn held_senders_wait_until_released_or_stopped() {
        let signal = Arc::new(StopSignal::default());
        assert!(!signal.checkpoint(), "not held: goes on at once");
        signal.hold(true);
        let waiting = {
            let signal = signal.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let stop = signal.checkpoint();
                (stop, started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        signal.hold(false);
        let (stop, waited) = waiting.join().unwrap();
        assert!(!stop && waited >= Duration::from_millis(40), "{waited:?}");

        signal.hold(true);
        let stopping = {
            let signal = signal.clone();
            std::thread::spawn(move || signal.checkpoint())
        };
        std::thread::sleep(Duration::from_millis(20));
        signal.stop();
        assert!(stopping.join().unwrap(), "a stop ends the hold");
    }

    #[test]
    fn the_exit_conclusion_puts_an_incomplete_result_first() {
        assert_eq!(Conclusion::of(true, false), Conclusion::Answered);
        assert_eq!(Conclusion::of(false, false), Conclusion::Unanswered);
        assert_eq!(Conclusion::of(true, true), Conclusion::Incomplete);
        assert_eq!(Conclusion::of(false, true), Conclusion::Incomplete);
    }
}
