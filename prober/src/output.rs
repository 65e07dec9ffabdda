//! A run's output on a thread of its own, fed through a bounded queue: a reader that stops
//! reading (a stalled pipe, a paused pager) blocks that thread only, never the reply loop, which
//! goes on draining the kernel's ring buffer and taking signals. While the queue is filling the
//! reply loop asks the senders to wait ([`Output::behind`]); while it is full the loop leaves
//! the records in the ring buffer ([`Output::room`]).
use std::{
    collections::VecDeque,
    io::{self, Write},
    mem,
    os::{
        fd::{AsFd, AsRawFd},
        unix::fs::MetadataExt,
    },
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
};

use anyhow::{anyhow, Context as _, Result};
use tokio::sync::oneshot;

/// Items queued at most: 16 384 results or lines (about 1 MiB of them); the ring buffer in the
/// kernel holds another 58 000 replies' records behind it.
const CAPACITY: usize = 1 << 14;
/// Above this many queued items the senders are asked to wait, leaving room for the replies
/// of the probes already on their way ...
const HIGH_WATER: usize = CAPACITY / 2;
/// ... until the queue is down to this many.
const LOW_WATER: usize = CAPACITY / 4;

/// What the output thread writes items to.
pub trait Sink: Send + 'static {
    type Item: Send + 'static;
    fn write(&mut self, item: Self::Item) -> Result<()>;
    /// After each batch of items.
    fn flush(&mut self) -> Result<()>;
}

/// What the output thread does last, after every queued item: what only the end of a run knows
/// (a sweep's silent ports, the table's last line).
pub type Epilogue<S> = Box<dyn FnOnce(&mut S) -> Result<()> + Send>;

/// The reply side's end of the queue.
pub struct Output<S: Sink> {
    shared: Arc<Shared<S>>,
    writing: Arc<Writing>,
    /// Items taken since the last [`Output::send`].
    batch: Vec<S::Item>,
    /// Senders are being held back: set above the high-water mark, cleared below the low one.
    behind: bool,
    /// Fires when the output thread ends; taken by [`Output::finish`].
    ended: Option<oneshot::Receiver<()>>,
}

struct Shared<S: Sink> {
    state: Mutex<State<S>>,
    more: Condvar,
}

/// How the output thread is doing, for either end.
#[derive(Default)]
struct Writing {
    /// Items handed over and not yet written.
    queued: AtomicUsize,
    /// The output thread has ended (failed, or finished): nothing more is written.
    ended: AtomicBool,
    /// Why it failed, until someone reports it.
    failure: Mutex<Option<anyhow::Error>>,
    /// It failed because its reader closed it: so says every report of its end, not only the
    /// first.
    reader_closed: AtomicBool,
}

impl Writing {
    /// The output thread's failure, once; None if it has not failed (or it was taken).
    fn failure(&self) -> Option<anyhow::Error> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

struct State<S: Sink> {
    batches: VecDeque<Vec<S::Item>>,
    epilogue: Option<Epilogue<S>>,
    closed: bool,
}

impl<S: Sink> Output<S> {
    /// Starts the output thread, writing to `sink`.
    pub fn start(sink: S) -> Result<Output<S>> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                batches: VecDeque::new(),
                epilogue: None,
                closed: false,
            }),
            more: Condvar::new(),
        });
        let writing = Arc::<Writing>::default();
        let (done, ended) = oneshot::channel();
        let (thread_shared, thread_writing) = (shared.clone(), writing.clone());
        std::thread::Builder::new()
            .name("prober-output".into())
            .spawn(move || {
                let result = write_all(&thread_shared, &thread_writing.queued, sink);
                if let Err(error) = result {
                    let error = mark_closed_reader(error);
                    thread_writing
                        .reader_closed
                        .store(reader_closed(&error), Ordering::Release);
                    *thread_writing
                        .failure
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
                }
                // Nothing queued will be written now: it must not hold the senders back.
                thread_writing.queued.store(0, Ordering::Release);
                thread_writing.ended.store(true, Ordering::Release);
                let _ = done.send(());
            })
            .context("starting the output thread")?;
        Ok(Output {
            shared,
            writing,
            batch: Vec::new(),
            behind: false,
            ended: Some(ended),
        })
    }

    /// How many more items fit in the queue now.
    pub fn room(&self) -> usize {
        CAPACITY.saturating_sub(self.queued())
    }

    /// Items handed over or taken, and not yet written.
    fn queued(&self) -> usize {
        self.writing.queued.load(Ordering::Acquire) + self.batch.len()
    }

    /// Takes an item; it goes to the output thread with the next [`Output::send`].
    pub fn push(&mut self, item: S::Item) {
        self.batch.push(item);
    }

    /// Hands the items taken so far to the output thread, without waiting for it; fails when
    /// the output thread has failed.
    pub fn send(&mut self) -> Result<()> {
        if self.writing.ended.load(Ordering::Acquire) {
            return Err(self.writing.failure().unwrap_or_else(|| {
                if self.writing.reader_closed.load(Ordering::Acquire) {
                    anyhow!(ReaderClosed)
                } else {
                    anyhow!("the output thread has stopped")
                }
            }));
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = mem::take(&mut self.batch);
        let mut state = self.shared.lock();
        // Counted under the lock, so that the output thread never takes them first.
        self.writing.queued.fetch_add(batch.len(), Ordering::AcqRel);
        state.batches.push_back(batch);
        drop(state);
        self.shared.more.notify_one();
        Ok(())
    }

    /// Whether the senders should wait for the output to catch up: from when the queue passes
    /// its high-water mark until it is down to the low-water mark.
    pub fn behind(&mut self) -> bool {
        let queued = self.queued();
        self.behind = if self.behind {
            queued > LOW_WATER
        } else {
            queued > HIGH_WATER
        };
        self.behind
    }

    /// Hands over the last items and the epilogue, if any; the output thread ends once it has
    /// written them. Once only.
    pub fn finish(&mut self, epilogue: Option<Epilogue<S>>) -> Finishing {
        // A failed output thread's error stays for the Finishing to report.
        if !self.writing.ended.load(Ordering::Acquire) {
            let _ = self.send();
        }
        let mut state = self.shared.lock();
        state.epilogue = epilogue;
        state.closed = true;
        drop(state);
        self.shared.more.notify_one();
        Finishing {
            ended: self.ended.take().expect("finished once"),
            writing: self.writing.clone(),
        }
    }
}

impl<S: Sink> Drop for Output<S> {
    /// The output thread writes what it was handed and ends (without an epilogue, unless
    /// [`Output::finish`] gave it one).
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.more.notify_one();
    }
}

impl<S: Sink> Shared<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<S>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The output thread's loop: every batch as it comes, then the epilogue.
fn write_all<S: Sink>(shared: &Shared<S>, queued: &AtomicUsize, mut sink: S) -> Result<()> {
    loop {
        let (batches, closed, epilogue) = {
            let mut state = shared
                .more
                .wait_while(shared.lock(), |state| {
                    state.batches.is_empty() && !state.closed
                })
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            (
                mem::take(&mut state.batches),
                state.closed,
                state.epilogue.take(),
            )
        };
        for item in batches.into_iter().flatten() {
            sink.write(item)?;
            queued.fetch_sub(1, Ordering::AcqRel);
        }
        if closed {
            if let Some(epilogue) = epilogue {
                epilogue(&mut sink)?;
            }
            return sink.flush();
        }
        sink.flush()?;
    }
}

/// What an output's failure is marked with when its reader closed it (a pipe whose reader
/// exited, as `head` does): no error of the run's, the end of it.
#[derive(Debug)]
struct ReaderClosed;

impl std::fmt::Display for ReaderClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the output's reader closed it")
    }
}

fn mark_closed_reader(error: anyhow::Error) -> anyhow::Error {
    let broken_pipe = error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        error.context(ReaderClosed)
    } else {
        error
    }
}

/// Whether the output failed because its reader closed it.
pub fn reader_closed(error: &anyhow::Error) -> bool {
    error.downcast_ref::<ReaderClosed>().is_some()
}

/// After stdout's reader closed it: when stderr is that same pipe (`2>&1 | head`), what is left
/// for stderr (the statistic) goes to /dev/null instead, since writing it would fail too (and
/// `eprintln!` panics on a failed write).
pub fn quiet_stderr_if_stdout() -> Result<()> {
    let identity = |fd: std::os::fd::BorrowedFd<'_>| -> Result<(u64, u64)> {
        let file = std::fs::File::from(fd.try_clone_to_owned()?);
        let metadata = file.metadata()?;
        Ok((metadata.dev(), metadata.ino()))
    };
    if identity(io::stdout().as_fd())? == identity(io::stderr().as_fd())? {
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        // SAFETY: dup2 onto fd 2 only swaps what stderr refers to; `null` stays ours to close.
        if unsafe { libc::dup2(null.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
    }
    Ok(())
}

/// An output whose last items are on their way.
pub struct Finishing {
    ended: oneshot::Receiver<()>,
    writing: Arc<Writing>,
}

impl Finishing {
    /// Until everything is written; its failure, if it failed and nobody has reported that.
    pub async fn written(&mut self) -> Result<()> {
        // The sender goes only with the thread: an error here means it has ended too.
        let _ = (&mut self.ended).await;
        self.writing.failure().map_or(Ok(()), Err)
    }

    /// Items not yet handed to the sink (when the wait for them is given up).
    pub fn unwritten(&self) -> usize {
        self.writing.queued.load(Ordering::Acquire)
    }
}

/// Lines of text, each written with its newline.
pub struct Lines<W: Write + Send + 'static> {
    out: W,
    /// What the lines are, for errors.
    what: &'static str,
}

impl<W: Write + Send + 'static> Lines<W> {
    pub fn new(out: W, what: &'static str) -> Lines<W> {
        Lines { out, what }
    }
}

impl<W: Write + Send + 'static> Sink for Lines<W> {
    type Item = String;

    fn write(&mut self, line: String) -> Result<()> {
        writeln!(self.out, "{line}").with_context(|| format!("writing {}", self.what))
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.what))
    }
}

/// stdout for the output thread: its own descriptor of it, so that std's buffered stdout stays
/// empty and nothing at exit waits to flush it while the output thread sits in a write to a
/// reader that has stalled.
pub fn stdout() -> Result<io::BufWriter<std::fs::File>> {
    Ok(buffered(stdout_file()?))
}

/// The descriptor of stdout's that [`stdout`] writes to, unbuffered.
pub fn stdout_file() -> Result<std::fs::File> {
    let fd = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdout")?;
    Ok(fd.into())
}

/// How the output thread buffers stdout: a batch of lines at a time.
pub fn buffered<W: Write>(out: W) -> io::BufWriter<W> {
    io::BufWriter::with_capacity(1 << 16, out)
}

#[cfg(test)]
mod tests {
    use std::{
        sync::mpsc,
        time::{Duration, Instant},
    };

    use super::*;

    /// A sink that writes into a channel, and can be made to wait before each batch's flush.
    struct Gated {
        written: mpsc::Sender<String>,
        gate: Arc<Mutex<()>>,
    }

    impl Sink for Gated {
        type Item = String;
        fn write(&mut self, item: String) -> Result<()> {
            self.written.send(item).map_err(|_| anyhow!("closed"))
        }
        fn flush(&mut self) -> Result<()> {
            drop(self.gate.lock().unwrap());
            Ok(())
        }
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn items_and_the_epilogue_are_written_in_order() {
        let (written, lines) = mpsc::channel();
        let gate = Arc::new(Mutex::new(()));
        let mut output = Output::start(Gated { written, gate }).unwrap();
        output.push("a".into());
        output.push("b".into());
        output.send().unwrap();
        output.push("c".into());
        let mut finishing =
            output.finish(Some(Box::new(|sink: &mut Gated| sink.write("end".into()))));
        block_on(finishing.written()).unwrap();
        assert_eq!(lines.try_iter().collect::<Vec<_>>(), ["a", "b", "c", "end"]);
        assert_eq!(finishing.unwritten(), 0);
    }

    #[test]
    fn a_stalled_sink_fills_the_queue_without_blocking_the_sender() {
        let (written, lines) = mpsc::channel();
        let gate = Arc::new(Mutex::new(()));
        let stalled = gate.lock().unwrap();
        let mut output = Output::start(Gated {
            written,
            gate: gate.clone(),
        })
        .unwrap();
        let started = Instant::now();
        let mut sent = 0;
        // Whatever the output thread has taken, it is stuck at its first flush.
        while output.room() > 0 {
            output.push(sent.to_string());
            sent += 1;
            if sent % 100 == 0 {
                output.send().unwrap();
            }
        }
        output.send().unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(output.behind(), "a full queue holds the senders back");
        assert!(sent >= CAPACITY);
        drop(stalled);
        let deadline = Instant::now() + Duration::from_secs(10);
        while output.behind() {
            assert!(Instant::now() < deadline, "the queue never drained");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut finishing = output.finish(None);
        block_on(finishing.written()).unwrap();
        assert_eq!(lines.try_iter().count(), sent);
    }

    #[test]
    fn the_hold_lasts_from_the_high_to_the_low_water_mark() {
        let (written, _lines) = mpsc::channel();
        let gate = Arc::new(Mutex::new(()));
        let mut output = Output::start(Gated { written, gate }).unwrap();
        // Not handed over: the counts are exactly what the test pushed.
        for _ in 0..HIGH_WATER {
            output.push(String::new());
        }
        assert!(!output.behind());
        output.push(String::new());
        assert!(output.behind());
        output.batch.truncate(LOW_WATER + 1);
        assert!(output.behind(), "still above the low-water mark");
        output.batch.truncate(LOW_WATER);
        assert!(!output.behind());
    }

    #[test]
    fn a_failed_sink_ends_the_output_with_its_error() {
        struct Failing;
        impl Sink for Failing {
            type Item = String;
            fn write(&mut self, _: String) -> Result<()> {
                Err(anyhow!("writing results: Broken pipe"))
            }
            fn flush(&mut self) -> Result<()> {
                Ok(())
            }
        }
        let mut output = Output::start(Failing).unwrap();
        output.push("x".into());
        output.send().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let error = loop {
            output.push("y".into());
            if let Err(error) = output.send() {
                break error;
            }
            assert!(Instant::now() < deadline, "the failure never showed");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(error.to_string(), "writing results: Broken pipe");
        assert!(!output.behind(), "a failed output holds nobody back");
    }

    #[test]
    fn a_closed_reader_is_told_apart_from_other_failures_every_time() {
        // A real pipe whose reader has gone: writes fail with EPIPE (Rust ignores SIGPIPE).
        let (reader, writer) = io::pipe().unwrap();
        drop(reader);
        let mut output = Output::start(Lines::new(writer, "reply lines")).unwrap();
        output.push("a line".into());
        output.send().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !output.writing.ended.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the failure never showed");
            std::thread::sleep(Duration::from_millis(1));
        }
        let first = output.send().unwrap_err();
        assert!(reader_closed(&first), "{first:#}");
        assert_eq!(
            format!("{first:#}"),
            "the output's reader closed it: writing reply lines: Broken pipe (os error 32)"
        );
        let again = output.send().unwrap_err();
        assert!(reader_closed(&again), "{again:#}");
        assert!(!reader_closed(&anyhow!("writing results: Broken pipe")));
    }
}
