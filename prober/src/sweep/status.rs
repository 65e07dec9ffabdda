//! The live status line of a sweep on stderr, once a second, as zmap prints it: elapsed,
//! % done, ETA, send rate, receive rate, open ports, hit rate, drops. Hidden when stderr is
//! not a terminal (scripts, CI) or with -q.
//!
//! Results may go to the same terminal (stdout), so the line must never touch theirs: it is
//! one line, cut to the terminal's width so that it never wraps, redrawn in place with `\r`
//! and clear-to-end-of-line (never a cursor movement up, which would land on a result), and
//! cleared before any result is written ([`Screen::beside`]).
use std::{
    fmt::Write as _,
    io::{self, IsTerminal, Write},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::reading::Reading;

/// Moves to the start of the line and clears it.
const ERASE: &str = "\r\x1b[K";
/// The width assumed when the terminal does not say.
const DEFAULT_COLUMNS: usize = 80;

/// The terminal the status line is drawn on, shared with the writer of results.
pub struct Screen {
    shown: bool,
    /// Whether the line is on the terminal now. Held while results are written to it, so
    /// that no line is drawn in the middle of theirs.
    drawn: Mutex<bool>,
}

impl Screen {
    pub fn new(shown: bool) -> Arc<Screen> {
        Arc::new(Screen {
            shown,
            drawn: Mutex::new(false),
        })
    }

    /// `out`, which is stdout: when that is the terminal the line is drawn on, each write to
    /// it clears the line first.
    pub fn beside<W: Write + Send + 'static>(self: &Arc<Self>, out: W) -> Box<dyn Write + Send> {
        if self.shown && io::stdout().is_terminal() {
            Box::new(BesideStatus {
                out,
                screen: self.clone(),
            })
        } else {
            Box::new(out)
        }
    }

    /// Draws `line` in place of the last, unless results are being written (the next tick
    /// draws it then): the reply loop never waits for a terminal.
    fn draw(&self, line: &str) {
        let Ok(mut drawn) = self.drawn.try_lock() else {
            return;
        };
        let mut stderr = io::stderr().lock();
        // A terminal that cannot be written to loses the line, nothing else.
        *drawn = write!(stderr, "{ERASE}{line}")
            .and_then(|()| stderr.flush())
            .is_ok();
    }

    /// Takes the line off the terminal. If results are being written, they have already.
    fn clear(&self) {
        if let Ok(mut drawn) = self.drawn.try_lock() {
            erase(&mut drawn);
        }
    }
}

fn erase(drawn: &mut bool) {
    if std::mem::take(drawn) {
        let mut stderr = io::stderr().lock();
        let _ = write!(stderr, "{ERASE}").and_then(|()| stderr.flush());
    }
}

/// stdout with the status line cleared before each write.
struct BesideStatus<W> {
    out: W,
    screen: Arc<Screen>,
}

impl<W: Write> Write for BesideStatus<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut drawn = self
            .screen
            .drawn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        erase(&mut drawn);
        self.out.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

pub struct StatusLine {
    screen: Arc<Screen>,
    /// How many probes the first pass sends (100%).
    probes: u64,
    last_sent: u64,
    last_answered: u64,
    last_elapsed: Duration,
}

impl StatusLine {
    pub fn new(screen: Arc<Screen>, probes: u64) -> StatusLine {
        StatusLine {
            screen,
            probes,
            last_sent: 0,
            last_answered: 0,
            last_elapsed: Duration::ZERO,
        }
    }

    /// Called once a second with the running totals.
    /// `dropped`: replies lost so far (the ring buffer was full).
    pub fn update(
        &mut self,
        elapsed: Duration,
        sent: u64,
        answered: u64,
        open: u64,
        dropped: &Reading,
    ) {
        if !self.screen.shown {
            return;
        }
        let seconds = (elapsed - self.last_elapsed).as_secs_f64().max(1e-3);
        let counts = Counts {
            elapsed,
            probes: self.probes,
            sent,
            send_rate: (sent - self.last_sent) as f64 / seconds,
            answered,
            receive_rate: (answered - self.last_answered) as f64 / seconds,
            open,
            dropped,
        };
        self.screen.draw(&fit(&counts.line(), columns()));
        (self.last_sent, self.last_answered, self.last_elapsed) = (sent, answered, elapsed);
    }

    pub fn finish(&self) {
        self.screen.clear();
    }
}

/// What a status line shows.
struct Counts<'a> {
    elapsed: Duration,
    probes: u64,
    /// All passes: retries go past the first pass's 100%.
    sent: u64,
    send_rate: f64,
    answered: u64,
    receive_rate: f64,
    open: u64,
    dropped: &'a Reading,
}

impl Counts<'_> {
    /// The line, most wanted first: a narrow terminal cuts off the end.
    fn line(&self) -> String {
        let first_pass = self.sent.min(self.probes);
        let percent = match self.probes {
            0 => 100,
            probes => first_pass * 100 / probes,
        };
        // From the average rate so far; nothing to go by before the first probe.
        let eta = match first_pass {
            0 => "-".to_string(),
            done => clock(
                self.elapsed
                    .mul_f64((self.probes - done) as f64 / done as f64),
            ),
        };
        let hit_rate = match self.sent {
            0 => 0.0,
            sent => self.open as f64 * 100.0 / sent as f64,
        };
        let mut line = format!("{} {percent}% ETA {eta}", clock(self.elapsed));
        let _ = write!(
            line,
            "; send {} {}p/s; recv {} {}p/s; open {}, hit {hit_rate:.2}%; drops {}",
            self.sent,
            human(self.send_rate),
            self.answered,
            human(self.receive_rate),
            self.open,
            self.dropped,
        );
        line
    }
}

/// 3725 s → "1:02:05"
fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    format!(
        "{}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// The line cut to `columns` less one: a line that fills the last column leaves the cursor
/// waiting to wrap, which some terminals do on the next `\r`.
fn fit(line: &str, columns: usize) -> String {
    line.chars().take(columns.saturating_sub(1)).collect()
}

/// stderr's width in columns, asked each time (the window may have been resized).
fn columns() -> usize {
    // SAFETY: TIOCGWINSZ only fills in the winsize it is given.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let asked = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) };
    match (asked, size.ws_col) {
        (0, columns) if columns > 0 => usize::from(columns),
        _ => DEFAULT_COLUMNS,
    }
}

/// 1234567.0 → "1.23M"
fn human(rate: f64) -> String {
    match rate {
        r if r >= 1e6 => format!("{:.2}M", r / 1e6),
        r if r >= 1e3 => format!("{:.1}K", r / 1e3),
        r => format!("{r:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(sent: u64, elapsed: Duration) -> String {
        Counts {
            elapsed,
            probes: 1000,
            sent,
            send_rate: 1234.0,
            answered: sent / 2,
            receive_rate: 617.0,
            open: 3,
            dropped: &Reading::Count(0),
        }
        .line()
    }

    #[test]
    fn the_eta_is_unknown_before_the_first_probe_and_from_the_average_rate_after() {
        assert_eq!(
            counts(0, Duration::from_secs(1)),
            "0:00:01 0% ETA -; send 0 1.2Kp/s; recv 0 617p/s; open 3, hit 0.00%; drops 0"
        );
        assert!(counts(250, Duration::from_secs(10)).starts_with("0:00:10 25% ETA 0:00:30;"));
        assert!(
            counts(1500, Duration::from_secs(3725)).starts_with("1:02:05 100% ETA 0:00:00;"),
            "retries go past the first pass"
        );
    }

    #[test]
    fn the_line_never_fills_the_terminal() {
        let line = counts(500_000, Duration::from_secs(3600));
        assert!(line.len() > 80, "{line}");
        assert_eq!(fit(&line, 80).chars().count(), 79);
        assert_eq!(fit(&line, 80), line[..79]);
        assert_eq!(fit("short", 80), "short");
        assert_eq!(fit(&line, 0), "");
    }
}
