//! The reply event loop every run shares: probes go out on a send thread while the async side
//! drains the XDP program's ring buffer (and its trace, if asked for), until the sender is
//! done and the late replies are in (or no more can come), or Ctrl-C / SIGTERM.
use std::{
    io,
    mem::size_of,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use prober_common::ReplyRecord;

use crate::bpf::BpfTrace;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    sync::oneshot,
};

/// How long a stopped send thread may take to finish its current batch.
const SENDER_STOP_WAIT: Duration = Duration::from_secs(1);

/// What the run does with replies.
pub trait ReplyHandler {
    fn reply(&mut self, reply: &ReplyRecord) -> Result<()>;
    /// Every reply the run waits for has come: the wait for late ones can end now.
    fn complete(&self) -> bool;
    /// Once a second while the run lasts.
    fn tick(&mut self) {}
    /// After each batch of replies (e.g. to flush output).
    fn drained(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The send threads' view of a request to stop (Ctrl-C, or the run ended).
#[derive(Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl StopSignal {
    pub fn requested(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Sleeps for `duration` unless a stop comes first; true when it did.
    pub fn sleep(&self, duration: Duration) -> bool {
        let guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = self
            .wake
            .wait_timeout_while(guard, duration, |_| !self.requested());
        self.requested()
    }

    pub fn stop(&self) {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_all();
    }
}

/// How a run ended.
pub struct Outcome<T> {
    /// What the sender returned; None if it was still busy when the run ended.
    pub sent: Option<T>,
    pub interrupted: bool,
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
pub struct Sources {
    pub replies: RingBuf<MapData>,
    pub trace: Option<BpfTrace>,
}

/// How long the loop lasts and how it learns of replies.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long to wait for late replies once the sender is done.
    pub linger: Duration,
    pub wakeup: Wakeup,
}

/// Runs `send` on its own thread and feeds replies to `handler` until the sender has
/// finished and the linger has passed (or the handler is complete), or a signal arrives.
pub fn run<T: Send + 'static>(
    sources: Sources,
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
    Sources { replies, trace }: Sources,
    send: impl FnOnce(&StopSignal) -> io::Result<T> + Send + 'static,
    handler: &mut dyn ReplyHandler,
    Timing { linger, wakeup }: Timing,
) -> Result<Outcome<T>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("catching SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("catching SIGTERM")?;
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

    let stop = Arc::new(StopSignal::default());
    let (done, mut sender_done) = oneshot::channel();
    let stop_for_sender = stop.clone();
    let sender = std::thread::Builder::new()
        .name("prober-send".into())
        .spawn(move || {
            let _ = done.send(send(&stop_for_sender));
        })
        .context("starting the send thread")?;

    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut polls = match wakeup {
        Wakeup::Poll(period) => Some(tokio::time::interval(period)),
        Wakeup::EachReply => None,
    };
    let mut linger_until: Option<tokio::time::Instant> = None;
    let mut sent = None;
    let mut interrupted = false;
    loop {
        let lingering = async {
            match linger_until {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ready = replies.readable_mut() => {
                let mut ready = ready.context("waiting for replies")?;
                drain(ready.get_inner_mut(), handler)?;
                ready.clear_ready();
            }
            result = &mut sender_done, if sent.is_none() => {
                sent = Some(
                    result
                        .context("the send thread ended without a result")?
                        .context("sending probes")?,
                );
                linger_until = Some(tokio::time::Instant::now() + linger);
            }
            _ = async { polls.as_mut()?.tick().await; Some(()) }, if polls.is_some() => {
                drain(replies.get_mut(), handler)?;
            }
            ready = async { Some(trace.as_mut()?.readable_mut().await) }, if trace.is_some() => {
                if let Some(ready) = ready {
                    let mut ready = ready.context("waiting for the eBPF trace")?;
                    ready.get_inner_mut().flush();
                    ready.clear_ready();
                }
            }
            _ = ticks.tick() => handler.tick(),
            _ = interrupt.recv() => { interrupted = true; break }
            _ = terminate.recv() => { interrupted = true; break }
            _ = lingering => break,
        }
        if sent.is_some() && handler.complete() {
            break;
        }
    }
    stop.stop();
    // The send thread stops at its next batch; a send blocked in the kernel (a driver
    // holding frames) must not hold up the footer, so it gets a bounded wait, not a join.
    if sent.is_none() {
        if let Ok(Ok(result)) = tokio::time::timeout(SENDER_STOP_WAIT, &mut sender_done).await {
            sent = Some(result.context("sending probes")?);
        }
    }
    drop(sender);
    // Replies already matched in the kernel are shown and counted, not lost.
    drain(replies.get_mut(), handler)?;
    if let Some(trace) = trace.as_mut() {
        trace.get_mut().flush();
    }
    Ok(Outcome { sent, interrupted })
}

fn drain(replies: &mut RingBuf<MapData>, handler: &mut dyn ReplyHandler) -> Result<()> {
    while let Some(item) = replies.next() {
        if let Some(bytes) = item.get(..size_of::<ReplyRecord>()) {
            handler.reply(&bytemuck::pod_read_unaligned(bytes))?;
        }
    }
    handler.drained()
}
