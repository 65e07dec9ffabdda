//! Runs one tool under `timeout` and measures it from the outside: frames on the host's veth,
//! replies the namespace sent, probes that reached it, wall time and peak memory. The same code
//! measures every tool, so no tool's own statistics are trusted for these numbers.
//! [`run_bounded`] is the part every benchmark shares: the time bound, Ctrl-C, and how it ended.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::Bed;
use crate::env;

/// How often the host veth's counters are read while a tool runs. Short enough to place the
/// start and end of a sub-second flood; the read is a small sysfs file.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(2);
/// `timeout -k`: seconds between timeout's SIGTERM and its SIGKILL.
const KILL_AFTER_SECS: u64 = 2;
/// timeout's exit status when the time bound stopped the tool.
const TIMED_OUT: libc::c_int = 124;
/// Past the limit plus timeout's own kill-after, xtask kills timeout's process group itself:
/// the last resort should `timeout` be stuck.
const BACKSTOP: Duration = Duration::from_secs(KILL_AFTER_SECS + 3);
/// A sample interval counts as "sending" when the counter rose by at least this fraction of the
/// busiest interval's rise: the ARP exchanges, kernel RSTs and retransmissions that trickle
/// around a flood do not stretch its sending time.
const SENDING_FRACTION: u64 = 100;

/// How one bounded run of a tool ended, and what it cost: the same for every benchmark.
pub struct Outcome {
    /// How the process ended: `None` for exit status 0, else a description.
    pub failure: Option<String>,
    /// The time bound stopped it (timeout's SIGTERM, and the tool then exited).
    pub timed_out: bool,
    /// Its exit status, when it exited rather than died of a signal.
    pub exit_status: Option<libc::c_int>,
    /// Spawn to exit.
    pub wall_secs: f64,
    /// User + system CPU time of the tool (wait4's rusage of `timeout`, which includes the tool
    /// it waited for; not the kernel's softirq work for its packets).
    pub cpu_secs: f64,
    /// Peak resident set of the tool, in KiB: the VmHWM of timeout's child, read at every
    /// sample (growth in its last SAMPLE_EVERY is missed). Not wait4's ru_maxrss of timeout:
    /// a process's maxrss starts from the high-water mark of the address space it was forked
    /// with (exec records it), which for timeout is xtask's, tens of MiB once it has read a
    /// sweep's results. 0 when the tool was never seen running.
    pub max_rss_kib: u64,
    /// What the tool wrote to stderr.
    pub stderr: String,
}

impl Outcome {
    /// The failure, if any, with the last line the tool wrote to stderr (which says why). A
    /// status line rewritten with carriage returns (masscan's) counts as its last version.
    pub fn failure_note(&self) -> Option<String> {
        let failure = self.failure.as_ref()?;
        let last_words = self
            .stderr
            .split(['\n', '\r'])
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Some(format!("{failure}: {}", last_words.trim()))
    }
}

/// What one bounded run of one sweep tool did.
pub struct Measurement {
    pub outcome: Outcome,
    /// Frames the host veth transmitted or dropped on transmit (tx_packets + tx_dropped) during
    /// the run: probes, and any RSTs the host kernel sent for SYN-ACKs.
    pub frames: u64,
    /// Probes sent: SYNs that arrived in the namespace plus frames the veth dropped. Unlike
    /// `frames` it leaves out the host kernel's RSTs, which double the frames of a tool that
    /// floods an open port and leaves the SYN-ACKs to the kernel.
    pub probes: u64,
    /// Of those, dropped by the veth (the namespace's backlog was full).
    pub veth_dropped: u64,
    /// Time from the first to the last sample interval in which the tool was sending.
    pub send_secs: f64,
    /// Probes over that window's length (nearly all probes fall inside it, by its definition).
    pub send_pps: f64,
    /// Frames the namespace's veth end transmitted: its SYN-ACKs and RSTs (and ARP).
    pub ns_replies: u64,
}

/// Runs `program args` as `timeout -k 2 <limit> program args` with stdout into `stdout_file`,
/// sampling the host veth's counters until it exits, and calling `also_sample` after each sample.
pub fn run(
    bed: &Bed,
    program: &Path,
    args: &[String],
    limit: Duration,
    stdout_file: &Path,
    mut also_sample: impl FnMut(),
) -> Result<Measurement> {
    let syns_before = bed.syn_count()?;
    let ns_before = bed.ns_tx_packets()?;
    let mut samples = vec![(Instant::now(), bed.host_tx_frames()?)];
    let outcome = run_bounded(program, args, limit, stdout_file, || {
        // A sample that cannot be read is only a gap; failing here would leave the tool
        // running unreaped.
        if let Ok(frames) = bed.host_tx_frames() {
            samples.push((Instant::now(), frames));
        }
        also_sample();
    })?;
    samples.push((Instant::now(), bed.host_tx_frames()?));

    let ((first_tx, first_drop), (last_tx, last_drop)) =
        (samples[0].1, samples[samples.len() - 1].1);
    let counts: Vec<(Instant, u64)> = samples
        .iter()
        .map(|&(t, (tx, drop))| (t, tx + drop))
        .collect();
    let send_secs = sending_window(&counts);
    let veth_dropped = last_drop - first_drop;
    let probes = bed.syn_count()?.saturating_sub(syns_before) + veth_dropped;
    Ok(Measurement {
        outcome,
        frames: (last_tx + last_drop) - (first_tx + first_drop),
        probes,
        veth_dropped,
        send_secs,
        send_pps: if send_secs > 0.0 {
            probes as f64 / send_secs
        } else {
            0.0
        },
        ns_replies: bed.ns_tx_packets()?.saturating_sub(ns_before),
    })
}

/// Runs `program args` as `timeout -k 2 <limit> program args` with stdout into `stdout_file`
/// and stderr next to it (`.stderr`), calling `every_sample` every SAMPLE_EVERY until it exits.
pub fn run_bounded(
    program: &Path,
    args: &[String],
    limit: Duration,
    stdout_file: &Path,
    mut every_sample: impl FnMut(),
) -> Result<Outcome> {
    let stderr_file = stdout_file.with_extension("stderr");
    let mut cmd = Command::new("timeout");
    cmd.args([
        "-k",
        &KILL_AFTER_SECS.to_string(),
        &limit.as_secs().to_string(),
    ])
    .arg(program)
    .args(args)
    .stdin(Stdio::null())
    .stdout(
        File::create(stdout_file).with_context(|| format!("creating {}", stdout_file.display()))?,
    )
    .stderr(
        File::create(&stderr_file)
            .with_context(|| format!("creating {}", stderr_file.display()))?,
    );

    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{}`", env::display(&cmd)))?;
    // timeout puts itself in a new process group (its PID) with the tool: killing that group
    // kills exactly what this run started.
    let pid = child.id() as libc::pid_t;
    let mut peak = PeakRss {
        timeout: pid,
        tool: None,
        kib: 0,
    };
    let (wait_status, usage) = wait_sampling(pid, started, limit, || {
        peak.sample();
        every_sample();
    })?;
    Ok(Outcome {
        failure: describe_failure(wait_status),
        timed_out: libc::WIFEXITED(wait_status) && libc::WEXITSTATUS(wait_status) == TIMED_OUT,
        exit_status: libc::WIFEXITED(wait_status).then(|| libc::WEXITSTATUS(wait_status)),
        wall_secs: started.elapsed().as_secs_f64(),
        cpu_secs: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        max_rss_kib: peak.kib,
        stderr: std::fs::read_to_string(&stderr_file).unwrap_or_default(),
    })
}

/// Reaps `pid` with wait4 (for its rusage), calling `every_sample` every SAMPLE_EVERY until
/// then. Ctrl-C asks timeout to stop the tool; past the limit and the backstop the whole process
/// group is killed.
fn wait_sampling(
    pid: libc::pid_t,
    started: Instant,
    limit: Duration,
    mut every_sample: impl FnMut(),
) -> Result<(libc::c_int, libc::rusage)> {
    let mut deadline = limit + BACKSTOP;
    let mut asked_to_stop = false;
    loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage is valid; wait4 only writes to the two out-pointers.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall on our own child's PID with valid out-pointers.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            return Ok((status, usage));
        }
        if reaped < 0 {
            return Err(std::io::Error::last_os_error()).context("wait4 on the tool");
        }
        if env::interrupted() && !asked_to_stop {
            // timeout forwards SIGTERM to the tool and SIGKILLs it KILL_AFTER_SECS later.
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            asked_to_stop = true;
            deadline = started.elapsed() + BACKSTOP;
        }
        if started.elapsed() > deadline {
            // SAFETY: signalling the process group our child leads (or the child itself, should
            // it not have made the group yet).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        thread::sleep(SAMPLE_EVERY);
        every_sample();
    }
}

/// The tool's peak resident set so far: timeout's child's VmHWM (which only grows).
struct PeakRss {
    timeout: libc::pid_t,
    tool: Option<libc::pid_t>,
    kib: u64,
}

impl PeakRss {
    /// Reads it; a read that fails (the tool not forked yet, or gone) changes nothing.
    fn sample(&mut self) {
        if self.tool.is_none() {
            let children = format!("/proc/{0}/task/{0}/children", self.timeout);
            self.tool = std::fs::read_to_string(children)
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse().ok());
        }
        let Some(tool) = self.tool else { return };
        if let Some(kib) = std::fs::read_to_string(format!("/proc/{tool}/status"))
            .ok()
            .and_then(|status| vm_hwm_kib(&status))
        {
            self.kib = self.kib.max(kib);
        }
    }
}

/// `VmHWM:     1234 kB` of /proc/PID/status.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

fn seconds(time: libc::timeval) -> f64 {
    time.tv_sec as f64 + time.tv_usec as f64 / 1e6
}

/// None when the status is a clean exit 0; else what happened, in timeout's terms.
fn describe_failure(status: libc::c_int) -> Option<String> {
    if libc::WIFSIGNALED(status) {
        // timeout dies of SIGKILL itself when its -k had to kill the tool, as does the group
        // when the backstop kills it.
        return Some(match libc::WTERMSIG(status) {
            libc::SIGKILL => {
                "killed with SIGKILL after ignoring the time bound's SIGTERM".to_owned()
            }
            signal => format!("killed by signal {signal}"),
        });
    }
    match libc::WEXITSTATUS(status) {
        0 => None,
        TIMED_OUT => Some("stopped by the time bound".to_owned()),
        137 => Some("killed by timeout -k".to_owned()),
        code => Some(format!("exit status {code}")),
    }
}

/// Seconds of the stretch of `samples` (time, cumulative count) during which the count rose
/// fast: from the start of the first interval whose rise is at least 1/SENDING_FRACTION of the
/// largest rise, to the end of the last such interval. 0 when it never rose.
fn sending_window(samples: &[(Instant, u64)]) -> f64 {
    let rises: Vec<u64> = samples.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let busiest = rises.iter().copied().max().unwrap_or(0);
    let threshold = (busiest / SENDING_FRACTION).max(1);
    let sending = |rise: &u64| *rise >= threshold;
    match (
        rises.iter().position(sending),
        rises.iter().rposition(sending),
    ) {
        // Interval i lies between samples i and i + 1.
        (Some(first), Some(last)) => (samples[last + 1].0 - samples[first].0).as_secs_f64(),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64, count: u64) -> (Instant, u64) {
        (base + Duration::from_millis(ms), count)
    }

    #[test]
    fn window_spans_the_flood_not_the_trickle_around_it() {
        let t = Instant::now();
        // One ARP frame, a 4 ms flood of 2000 frames, then one late RST.
        let samples = [
            at(t, 0, 0),
            at(t, 2, 1),
            at(t, 4, 1),
            at(t, 6, 1001),
            at(t, 8, 2001),
            at(t, 10, 2001),
            at(t, 12, 2002),
        ];
        assert_eq!(sending_window(&samples), 0.004);
    }

    #[test]
    fn failure_note_ends_with_the_last_status_line() {
        let outcome = Outcome {
            failure: Some("stopped by the time bound".to_owned()),
            timed_out: true,
            exit_status: Some(TIMED_OUT),
            wall_secs: 20.0,
            cpu_secs: 5.0,
            max_rss_kib: 0,
            stderr: "Scanning 16 hosts\nrate: 98.00-kpps, 50% done\rrate:  0.00-kpps, 100.00% done, waiting -5-secs\r".to_owned(),
        };
        assert_eq!(
            outcome.failure_note().unwrap(),
            "stopped by the time bound: rate:  0.00-kpps, 100.00% done, waiting -5-secs"
        );
    }

    #[test]
    fn high_water_mark_of_proc_status() {
        let status =
            "Name:\tprober\nVmPeak:\t  120000 kB\nVmHWM:\t   10240 kB\nVmRSS:\t    9000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(10240));
        // A zombie has no VmHWM.
        assert_eq!(vm_hwm_kib("Name:\tprober\nState:\tZ (zombie)\n"), None);
    }

    #[test]
    fn nothing_sent_is_an_empty_window() {
        let t = Instant::now();
        assert_eq!(sending_window(&[at(t, 0, 5), at(t, 2, 5)]), 0.0);
        assert_eq!(sending_window(&[at(t, 0, 5)]), 0.0);
    }
}
