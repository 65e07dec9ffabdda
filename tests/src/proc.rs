//! Child processes with timeouts: read stdout line by line while the child runs (or, to play a
//! reader that has stalled, only later), signal it by PID, and make sure it is killed (SIGKILL by
//! PID) and reaped if the test fails.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running child. Dropping it SIGKILLs (by PID) and reaps the child if it is still running.
pub struct Proc {
    desc: String,
    child: Child,
    pid: i32,
    started: Instant,
    status: Option<ExitStatus>,
    lines_rx: Receiver<String>,
    stdout_lines: Vec<String>,
    stdout_eof: bool,
    stderr_buf: Arc<Mutex<Vec<u8>>>,
    stderr_done: Receiver<()>,
    /// Holds back the stdout reader of [`Proc::spawn_stalled`] until it is dropped.
    stdout_gate: Option<Sender<()>>,
}

/// Why [`Proc::next_line`] returned no line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoLine {
    Timeout,
    Eof,
}

/// A child that has exited, with everything it wrote.
#[derive(Debug)]
pub struct Finished {
    pub desc: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// From spawn to observed exit.
    pub elapsed: Duration,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nexit: {} (after {:?})\n----- stdout -----\n{}----- stderr -----\n{}------------------",
            self.desc,
            self.status,
            self.elapsed,
            with_newline(&self.stdout),
            with_newline(&self.stderr)
        )
    }
}

fn with_newline(s: &str) -> String {
    if s.is_empty() || s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n<no final newline>\n")
    }
}

impl Proc {
    /// Spawns `cmd` with stdin from /dev/null and stdout/stderr piped. Panics if it cannot start.
    pub fn spawn(cmd: Command) -> Proc {
        Proc::start(cmd, None)
    }

    /// [`Proc::spawn`], but nobody reads the child's stdout for `stall` (None: until the child
    /// has exited), so its writes block once the pipe is full: a consumer that has stalled.
    pub fn spawn_stalled(cmd: Command, stall: Option<Duration>) -> Proc {
        let (gate, held) = mpsc::channel::<()>();
        let mut proc = Proc::start(
            cmd,
            Some(Box::new(move || {
                // Nothing is ever sent: the wait ends on the timeout or when the gate is dropped.
                match stall {
                    Some(stall) => drop(held.recv_timeout(stall)),
                    None => drop(held.recv()),
                }
            })),
        );
        proc.stdout_gate = Some(gate);
        proc
    }

    fn start(mut cmd: Command, before_reading: Option<Box<dyn FnOnce() + Send>>) -> Proc {
        let desc = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        let pid = child.id() as i32;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");

        let (tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            if let Some(wait) = before_reading {
                wait();
            }
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let mut line = String::from_utf8_lossy(&buf).into_owned();
                        if line.ends_with('\n') {
                            line.pop();
                        } else {
                            // Last line without a newline: mark it so it is visible in dumps.
                            line.push_str("<no final newline>");
                        }
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });

        let stderr_buf = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, stderr_done) = mpsc::channel();
        let sb = stderr_buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match stderr.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sb.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
            let _ = done_tx.send(());
        });

        Proc {
            desc,
            child,
            pid,
            started: Instant::now(),
            status: None,
            lines_rx,
            stdout_lines: Vec::new(),
            stdout_eof: false,
            stderr_buf,
            stderr_done,
            stdout_gate: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Next stdout line (without the newline), waiting at most `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Result<String, NoLine> {
        if self.stdout_eof {
            return Err(NoLine::Eof);
        }
        match self.lines_rx.recv_timeout(timeout) {
            Ok(line) => {
                self.stdout_lines.push(line.clone());
                Ok(line)
            }
            Err(RecvTimeoutError::Timeout) => Err(NoLine::Timeout),
            Err(RecvTimeoutError::Disconnected) => {
                self.stdout_eof = true;
                Err(NoLine::Eof)
            }
        }
    }

    /// Next stdout line, or a panic (with everything the child wrote so far) naming `what`.
    pub fn expect_line(&mut self, timeout: Duration, what: &str) -> String {
        match self.next_line(timeout) {
            Ok(l) => l,
            Err(why) => {
                let why = match why {
                    NoLine::Timeout => format!("nothing within {timeout:?}"),
                    NoLine::Eof => "end of stdout".to_string(),
                };
                self.fail(&format!("waiting for {what}: {why}"))
            }
        }
    }

    /// Whether the child is still running (reaps it if it has exited).
    pub fn running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Sends `sig` to the child's PID. Panics if the child has already been reaped or kill fails.
    pub fn signal(&mut self, sig: i32) {
        if !self.running() {
            self.fail(&format!(
                "wanted to send signal {sig}, but the child has already exited"
            ));
        }
        // SAFETY: plain syscall; the PID is our own unreaped child, so it cannot have been reused.
        if unsafe { libc::kill(self.pid, sig) } != 0 {
            let e = std::io::Error::last_os_error();
            self.fail(&format!("kill({}, {sig}): {e}", self.pid));
        }
    }

    /// Waits for exit (at most `timeout`), then collects all output. On timeout the child is
    /// SIGKILLed by PID and the test panics with everything it wrote.
    pub fn wait(&mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        while self.running() {
            if Instant::now() >= deadline {
                self.kill_and_reap();
                self.fail(&format!(
                    "did not exit within {timeout:?}; killed it (SIGKILL)"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let elapsed = self.started.elapsed();
        self.collect();
        Finished {
            desc: self.desc.clone(),
            status: self.status.expect("exited"),
            stdout: self.stdout_text(),
            stderr: self.stderr_so_far(),
            elapsed,
        }
    }

    /// Everything so far, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "command: {} (pid {})\nstatus: {}\n----- stdout so far -----\n{}----- stderr so far -----\n{}-------------------------",
            self.desc,
            self.pid,
            match self.status {
                Some(s) => s.to_string(),
                None => "still running".to_string(),
            },
            self.stdout_text(),
            with_newline(&self.stderr_so_far())
        )
    }

    /// Panics with `msg` and [`Proc::dump`] (after killing the child: Drop does it too, but the dump
    /// then includes everything up to the kill).
    pub fn fail(&mut self, msg: &str) -> ! {
        if self.running() {
            self.kill_and_reap();
        }
        self.collect();
        panic!("{msg}\n{}", self.dump())
    }

    fn stdout_text(&self) -> String {
        self.stdout_lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// What the child has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr_buf.lock().unwrap()).into_owned()
    }

    /// After exit: gather remaining stdout lines and let the stderr reader finish (bounded, in case
    /// some grandchild still holds the pipes).
    fn collect(&mut self) {
        self.stdout_gate = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.stdout_eof {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next_line(left) == Err(NoLine::Timeout) {
                break;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self
            .stderr_done
            .recv_timeout(left.max(Duration::from_millis(100)));
    }

    fn kill_and_reap(&mut self) {
        if self.status.is_none() {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            if let Ok(st) = self.child.wait() {
                self.status = Some(st);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            self.kill_and_reap();
        }
    }
}

/// Runs `cmd` to completion (at most `timeout`; SIGKILL and panic after that).
pub fn run(cmd: Command, timeout: Duration) -> Finished {
    Proc::spawn(cmd).wait(timeout)
}
