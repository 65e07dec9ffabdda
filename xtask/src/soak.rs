//! `cargo xtask soak`: prober for a long time, to show that nothing it holds grows with the
//! length of a run or the number of runs.
//!
//! - Back to back, sweeps of all 65 535 ports of a namespace host at full rate (`--flood`), with
//!   a few open ports and an nftables-dropped range; each must find exactly the open ports and
//!   exit 0, and after each exits no BPF program or map may be left that nothing holds, nor
//!   anything attached to its veth.
//! - For the whole time, one long one-target run (`-i u100 -S -p 80`) on a second host: one
//!   process whose resident memory, open file descriptors and BPF handles are sampled every
//!   few seconds. Its fds and BPF handles must not change after the first sample, nor its
//!   memory grow by more than [`RSS_MARGIN_KIB`] after the warm-up.
//!
//! Machine-wide BPF program and map counts are shown too, but other users' tools load and
//! unload theirs on a shared machine, so they are not judged. Everything runs on throwaway
//! `TestHost`s in 198.18.0.0/15, removed on every way out (also Ctrl-C); the long run is
//! stopped by its PID with SIGINT.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use prober_tests::sweep::parse_sweep_footer;
use prober_tests::{SafetyNet, TestHost};

use crate::bench::{check_cleanup, measure};
use crate::{bootstrap, env};

/// Ports with a listener on the sweep host; the ends of the range among them.
const OPEN_PORTS: [u16; 4] = [1, 80, 8080, 65535];
/// Ports whose SYNs the sweep host's nftables drop: they stay filtered, and every pass waits
/// for them.
const DROPPED: (u16, u16) = (20_000, 20_999);
/// The long run's interval between probes, in microseconds.
const LONG_RUN_INTERVAL_US: u64 = 100;
/// Time bound of one sweep: a flood of 65 535 probes and a retry pass take a few seconds even
/// on a busy machine; one that is not done in this long is stuck.
const SWEEP_LIMIT: Duration = Duration::from_secs(60);
/// Memory the long run may gain after the warm-up. Its reply ring buffer (mapped twice, pages
/// resident once read), the RTT histogram's buckets and the allocator's arenas fill within the
/// first seconds; what grows after that grows with probes or replies. 2 MiB over the
/// millions of replies of a ten-minute run is well under a byte per reply, so a leak of
/// anything per reply shows, while the page-sized steps of the allocator do not.
const RSS_MARGIN_KIB: u64 = 2048;
/// The longest warm-up: RSS is judged from the first sample after it (or after a fifth of the
/// run, if that is shorter).
const MAX_WARM_UP: Duration = Duration::from_secs(60);
/// How long the kernel may take to free a finished sweep's programs and maps (their release
/// is deferred past an RCU grace period and a work queue).
const FREE_WAIT: Duration = Duration::from_secs(3);
/// After SIGINT, how long the long run may take to print its footer and exit.
const STOP_WAIT: Duration = Duration::from_secs(5);

pub fn run(minutes: u64, sample_every: Duration) -> Result<()> {
    env::require_root("cargo xtask soak")?;
    if minutes == 0 || sample_every.is_zero() {
        bail!("--minutes and --sample-seconds must be at least 1");
    }
    let duration = Duration::from_secs(minutes * 60);
    bootstrap::run()?;
    env::build_prober(true)?;
    let prober = env::prober_bin(true)?;
    env::catch_sigint()?;
    let workdir = env::target_dir()?.join("soak");
    // Only this task writes there: each run starts from an empty directory.
    let _ = std::fs::remove_dir_all(&workdir);
    std::fs::create_dir_all(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let _safety_net = SafetyNet::install()?;

    // Dropped in reverse order: the long run stops before the hosts go.
    let sweep_host = sweep_host()?;
    let long_host = TestHost::standard().context("creating the long run's host")?;
    let beds = [
        (sweep_host.ns.clone(), sweep_host.host_if.clone()),
        (long_host.ns.clone(), long_host.host_if.clone()),
    ];
    println!(
        "sweeps: {} on {} ({} open, {}-{} dropped); long run: {} on {}; {minutes} min, a sample every {} s",
        sweep_host.addr,
        sweep_host.host_if,
        OPEN_PORTS.map(|p| p.to_string()).join(","),
        DROPPED.0,
        DROPPED.1,
        long_host.addr,
        long_host.host_if,
        sample_every.as_secs(),
    );
    let mut long_run = LongRun::start(&prober, &long_host, duration, &workdir)?;
    let mut soak = Soak {
        samples: Sampler::new(long_run.pid, sample_every),
        sweeps: Vec::new(),
        failures: Vec::new(),
    };
    println!("{}", Sample::HEADER);
    soak.samples.take(0, long_run.replies());
    let started = Instant::now();
    while started.elapsed() < duration && !env::interrupted() {
        soak.sweep(&prober, &sweep_host, &workdir, &long_run)?;
        soak.samples
            .take_if_due(soak.sweeps.len(), long_run.replies());
    }
    // After Ctrl-C the long run is already ending: a sample now would show it half gone.
    if !env::interrupted() {
        soak.samples.take(soak.sweeps.len(), long_run.replies());
    }
    let long_footer = long_run.stop().unwrap_or_else(|error| {
        soak.failures.push(format!("{error:#}"));
        "no footer".to_owned()
    });
    drop(long_run);
    drop(long_host);
    drop(sweep_host);
    for (ns, host_if) in &beds {
        check_cleanup(ns, host_if)?;
    }
    soak.report(&long_footer, duration);
    if env::interrupted() {
        bail!("interrupted (the hosts are removed)");
    }
    if !soak.failures.is_empty() {
        bail!("the soak failed: {}", soak.failures.join("; "));
    }
    Ok(())
}

/// The sweeps' host: listeners on OPEN_PORTS and the DROPPED range dropped, in a table of its
/// own inside the namespace (removed with it).
fn sweep_host() -> Result<TestHost> {
    let mut host = TestHost::new().context("creating the sweeps' host")?;
    for port in OPEN_PORTS {
        host.listen_tcp(port)?;
    }
    for rule in [
        "add table inet soak".to_owned(),
        "add chain inet soak input { type filter hook input priority 0; policy accept; }"
            .to_owned(),
        format!(
            "add rule inet soak input tcp dport {}-{} drop",
            DROPPED.0, DROPPED.1
        ),
    ] {
        env::run(host.command_in_ns("nft").arg(rule))?;
    }
    Ok(host)
}

struct Soak {
    samples: Sampler,
    sweeps: Vec<SweepRun>,
    failures: Vec<String>,
}

/// What one sweep did, from its footer and wait4.
struct SweepRun {
    pps: f64,
    wall_secs: f64,
    max_rss_kib: u64,
    /// Closed ports whose RST never came (they count as filtered): replies lost on a busy
    /// machine, shown but not judged.
    unanswered: u64,
}

impl Soak {
    /// Runs one sweep while sampling the long run, and checks its result and what it left.
    fn sweep(
        &mut self,
        prober: &Path,
        host: &TestHost,
        workdir: &Path,
        long_run: &LongRun,
    ) -> Result<()> {
        let number = self.sweeps.len() + 1;
        let args: Vec<String> = [
            "-p",
            "1-65535",
            "--flood",
            "--wait",
            "1",
            "--retries",
            "1",
            "-O",
            "list",
            "-q",
            "-I",
        ]
        .iter()
        .map(|word| (*word).to_owned())
        .chain([host.host_if.clone(), host.addr.to_string()])
        .collect();
        let before = newest_bpf_ids()?;
        let samples = &mut self.samples;
        let outcome = measure::run_bounded(
            prober,
            &args,
            SWEEP_LIMIT,
            &workdir.join("sweep.stdout"),
            || samples.take_if_due(number - 1, long_run.replies()),
        )?;
        if env::interrupted() {
            return Ok(());
        }
        if let Some(note) = outcome.failure_note() {
            self.failures.push(format!("sweep {number}: {note}"));
            return Ok(());
        }
        let footer = match parse_sweep_footer(&outcome.stderr) {
            Ok(footer) => footer,
            Err(why) => {
                self.failures.push(format!("sweep {number}: {why}"));
                return Ok(());
            }
        };
        let dropped = u64::from(DROPPED.1 - DROPPED.0) + 1;
        if footer.open != OPEN_PORTS.len() as u64 {
            self.failures.push(format!(
                "sweep {number}: {} open ports, want {}",
                footer.open,
                OPEN_PORTS.len()
            ));
        }
        self.sweeps.push(SweepRun {
            pps: footer.pps,
            wall_secs: outcome.wall_secs,
            max_rss_kib: outcome.max_rss_kib,
            unanswered: footer.filtered.saturating_sub(dropped),
        });
        if let Some(left) = left_behind(before, &host.host_if)? {
            self.failures.push(format!("after sweep {number}: {left}"));
        }
        Ok(())
    }

    fn report(&mut self, long_footer: &str, duration: Duration) {
        let samples = &self.samples.taken;
        if let Some(why) = &self.samples.failed {
            self.failures.push(format!("sampling the long run: {why}"));
        }
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            self.failures.push("no sample of the long run".to_owned());
            return;
        };
        let warm_up = MAX_WARM_UP.min(duration / 5).as_secs_f64();
        let baseline = samples
            .iter()
            .find(|s| s.at_secs >= warm_up)
            .unwrap_or(last);
        println!("\nlong run (pid {}): {long_footer}", self.samples.pid);
        println!("  {:<22} {:>10} {:>10}", "", "first", "last");
        println!(
            "  {:<22} {:>10} {:>10}",
            "RSS KiB", first.rss_kib, last.rss_kib
        );
        println!(
            "  {:<22} {:>10} {:>10}   (judged from {:.0} s: {} KiB, margin {RSS_MARGIN_KIB} KiB)",
            "RSS KiB after warm-up",
            baseline.rss_kib,
            last.rss_kib,
            baseline.at_secs,
            baseline.rss_kib
        );
        println!("  {:<22} {:>10} {:>10}", "open fds", first.fds, last.fds);
        println!(
            "  {:<22} {:>10} {:>10}",
            "BPF prog/map/link fds",
            first.bpf.to_string(),
            last.bpf.to_string()
        );
        println!(
            "  {:<22} {:>10} {:>10}",
            "machine BPF progs/maps",
            format!("{}/{}", first.machine_progs, first.machine_maps),
            format!("{}/{}", last.machine_progs, last.machine_maps)
        );
        let max_rss = samples
            .iter()
            .skip_while(|s| s.at_secs < baseline.at_secs)
            .map(|s| s.rss_kib)
            .max();
        if let Some(max_rss) = max_rss.filter(|&rss| rss > baseline.rss_kib + RSS_MARGIN_KIB) {
            self.failures.push(format!(
                "the long run's RSS grew from {} KiB to {max_rss} KiB after the warm-up",
                baseline.rss_kib
            ));
        }
        if let Some(s) = samples.iter().find(|s| s.fds != first.fds) {
            self.failures.push(format!(
                "the long run's open fds went from {} to {} at {:.0} s",
                first.fds, s.fds, s.at_secs
            ));
        }
        if let Some(s) = samples.iter().find(|s| s.bpf != first.bpf) {
            self.failures.push(format!(
                "the long run's BPF fds went from {} to {} at {:.0} s",
                first.bpf, s.bpf, s.at_secs
            ));
        }
        if last.replies <= first.replies {
            self.failures
                .push("the long run got no replies during the soak".to_owned());
        }

        let mut pps: Vec<f64> = self.sweeps.iter().map(|s| s.pps).collect();
        pps.sort_by(f64::total_cmp);
        let rss: Vec<u64> = self.sweeps.iter().map(|s| s.max_rss_kib).collect();
        println!(
            "\nsweeps: {} in {:.0} s (each 65535 ports, --flood, --retries 1), failed {}",
            self.sweeps.len(),
            self.sweeps.iter().map(|s| s.wall_secs).sum::<f64>(),
            self.failures
                .iter()
                .filter(|f| f.starts_with("sweep "))
                .count()
        );
        if let (Some(min), Some(max)) = (pps.first(), pps.last()) {
            println!(
                "  send pps min/median/max: {min:.0}/{:.0}/{max:.0}; peak RSS KiB (wait4) min/max: {}/{}; closed ports left unanswered: {} in all",
                pps[pps.len() / 2],
                rss.iter().min().unwrap_or(&0),
                rss.iter().max().unwrap_or(&0),
                self.sweeps.iter().map(|s| s.unanswered).sum::<u64>()
            );
        }
        println!(
            "  after each: no new BPF program or map without a holder, no XDP program on the veth{}",
            if self.failures.iter().any(|f| f.starts_with("after sweep")) { " — FAILED, see below" } else { "" }
        );
    }
}

/// What a finished sweep left: BPF objects loaded since `before` that nothing holds, or an
/// XDP program on its veth. The kernel gets FREE_WAIT to free them.
fn left_behind(before: NewestIds, host_if: &str) -> Result<Option<String>> {
    let deadline = Instant::now() + FREE_WAIT;
    loop {
        let mut left: Vec<String> = unheld_bpf_objects()?
            .iter()
            .filter(|object| object.id > before.of(object.kind))
            .map(BpfObject::to_string)
            .collect();
        let link = env::output(Command::new("ip").args(["-d", "link", "show", "dev", host_if]))?;
        if link.split_whitespace().any(|w| w.starts_with("prog/xdp")) {
            left.push(format!("an XDP program on {host_if}"));
        }
        if left.is_empty() {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            return Ok(Some(format!("left behind: {}", left.join(", "))));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The long one-target run, stopped by PID with SIGINT when dropped.
struct LongRun {
    child: Child,
    pid: i32,
    /// Lines on its stdout so far: the header, then one per reply.
    lines: Arc<AtomicU64>,
    stderr: PathBuf,
    stopped: bool,
}

impl LongRun {
    fn start(
        prober: &Path,
        host: &TestHost,
        duration: Duration,
        workdir: &Path,
    ) -> Result<LongRun> {
        // Bounded in count as well: should xtask die without stopping it, it ends by itself
        // about twice the soak's length later (sooner, if xtask's death signals it).
        let count = 2 * duration.as_micros() as u64 / LONG_RUN_INTERVAL_US;
        let stderr = workdir.join("long-run.stderr");
        let mut cmd = Command::new(prober);
        cmd.args([
            "-c",
            &count.to_string(),
            "-i",
            &format!("u{LONG_RUN_INTERVAL_US}"),
            "-S",
            "-p",
            "80",
            "-I",
        ])
        .arg(&host.host_if)
        .arg(host.addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr).with_context(|| format!("creating {}", stderr.display()))?);
        // SAFETY: prctl is async-signal-safe; it only sets a flag of the child itself.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        println!("$ {}", env::display(&cmd));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run `{}`", env::display(&cmd)))?;
        let pid = child.id() as i32;
        let lines = Arc::new(AtomicU64::new(0));
        let header = Arc::new(AtomicBool::new(false));
        let stdout = child.stdout.take().context("the long run's stdout")?;
        let (counted, seen) = (lines.clone(), header.clone());
        thread::spawn(move || {
            for _ in BufReader::new(stdout).split(b'\n') {
                counted.fetch_add(1, Ordering::Relaxed);
                seen.store(true, Ordering::Relaxed);
            }
        });
        let mut run = LongRun {
            child,
            pid,
            lines,
            stderr,
            stopped: false,
        };
        // Its header comes once it is set up: from then on, nothing it holds should change.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !header.load(Ordering::Relaxed) {
            if run.child.try_wait()?.is_some() || Instant::now() > deadline {
                let why = std::fs::read_to_string(&run.stderr).unwrap_or_default();
                bail!("the long run did not start: {}", why.trim());
            }
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_secs(1));
        Ok(run)
    }

    fn replies(&self) -> u64 {
        // The header is not a reply.
        self.lines.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// SIGINT by PID, then its footer (the statistic lines of its stderr).
    fn stop(&mut self) -> Result<String> {
        let status = self.interrupt();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let footer: Vec<&str> = stderr
            .lines()
            .filter(|line| line.contains("packets transmitted") || line.starts_with("round-trip"))
            .collect();
        match status {
            Some(status) if status.success() => Ok(footer.join("; ")),
            Some(status) => bail!("the long run ended with {status}: {}", stderr.trim()),
            None => bail!("the long run ignored SIGINT for {STOP_WAIT:?} and was killed"),
        }
    }

    /// Stops it: SIGINT, and SIGKILL if it has not exited after STOP_WAIT. None when it had to
    /// be killed.
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        if self.stopped {
            return None;
        }
        self.stopped = true;
        // SAFETY: signalling our own child, not yet reaped, so its PID is still ours.
        unsafe { libc::kill(self.pid, libc::SIGINT) };
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for LongRun {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// The long run's handles: BPF programs, maps and links among its fds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BpfFds {
    progs: u32,
    maps: u32,
    links: u32,
}

impl std::fmt::Display for BpfFds {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.progs, self.maps, self.links)
    }
}

struct Sample {
    at_secs: f64,
    sweeps: usize,
    replies: u64,
    rss_kib: u64,
    fds: u32,
    bpf: BpfFds,
    machine_progs: usize,
    machine_maps: usize,
}

impl Sample {
    const HEADER: &'static str =
        "  time s  sweeps    replies   RSS KiB   fds  BPF fds p/m/l  machine progs/maps";

    fn row(&self) -> String {
        format!(
            "{:>8.0} {:>7} {:>10} {:>9} {:>5} {:>14} {:>19}",
            self.at_secs,
            self.sweeps,
            self.replies,
            self.rss_kib,
            self.fds,
            self.bpf.to_string(),
            format!("{}/{}", self.machine_progs, self.machine_maps)
        )
    }
}

/// Samples of the long run, taken every `every`, each printed as it is taken.
struct Sampler {
    pid: i32,
    every: Duration,
    started: Instant,
    next: Instant,
    taken: Vec<Sample>,
    /// Why a sample could not be taken (the long run died), if one could not.
    failed: Option<String>,
}

impl Sampler {
    fn new(pid: i32, every: Duration) -> Sampler {
        let now = Instant::now();
        Sampler {
            pid,
            every,
            started: now,
            next: now,
            taken: Vec::new(),
            failed: None,
        }
    }

    fn take_if_due(&mut self, sweeps: usize, replies: u64) {
        if Instant::now() >= self.next {
            self.take(sweeps, replies);
        }
    }

    fn take(&mut self, sweeps: usize, replies: u64) {
        self.next = Instant::now() + self.every;
        if self.failed.is_some() {
            return;
        }
        match sample(self.pid, self.started.elapsed(), sweeps, replies) {
            Ok(sample) => {
                println!("{}", sample.row());
                self.taken.push(sample);
            }
            Err(error) => self.failed = Some(format!("{error:#}")),
        }
    }
}

fn sample(pid: i32, at: Duration, sweeps: usize, replies: u64) -> Result<Sample> {
    let status_path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&status_path).with_context(|| format!("reading {status_path}"))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .with_context(|| format!("no VmRSS in {status_path}"))?;
    let handles = fd_handles(pid)?;
    let mut bpf = BpfFds::default();
    for handle in &handles {
        match handle {
            Handle::Bpf(BpfKind::Prog, _) => bpf.progs += 1,
            Handle::Bpf(BpfKind::Map, _) => bpf.maps += 1,
            Handle::Bpf(BpfKind::Link, _) => bpf.links += 1,
            Handle::Other => {}
        }
    }
    Ok(Sample {
        at_secs: at.as_secs_f64(),
        sweeps,
        replies,
        rss_kib,
        fds: handles.len() as u32,
        bpf,
        machine_progs: bpftool_list("prog")?.len(),
        machine_maps: bpftool_list("map")?.len(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum BpfKind {
    Prog,
    Map,
    Link,
}

/// One open fd of a process.
enum Handle {
    /// A BPF object, and the id of the program or map it holds (a link holds its program).
    Bpf(BpfKind, Option<u32>),
    Other,
}

/// The fds of `pid`, BPF ones with what they hold (from /proc/PID/fdinfo).
fn fd_handles(pid: i32) -> Result<Vec<Handle>> {
    let dir = format!("/proc/{pid}/fd");
    let mut handles = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let (kind, id_key) = match target.to_string_lossy().as_ref() {
            "anon_inode:bpf-prog" => (BpfKind::Prog, "prog_id:"),
            "anon_inode:bpf-map" => (BpfKind::Map, "map_id:"),
            "anon_inode:bpf_link" => (BpfKind::Link, "prog_id:"),
            _ => {
                handles.push(Handle::Other);
                continue;
            }
        };
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let id = info
            .lines()
            .find_map(|line| line.strip_prefix(id_key))
            .and_then(|id| id.trim().parse().ok());
        handles.push(Handle::Bpf(kind, id));
    }
    Ok(handles)
}

/// A BPF program or map, as `bpftool` lists it.
#[derive(Debug)]
struct BpfObject {
    kind: BpfKind,
    id: u32,
    name: String,
}

impl std::fmt::Display for BpfObject {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let kind = match self.kind {
            BpfKind::Prog => "program",
            _ => "map",
        };
        write!(f, "BPF {kind} {} (id {})", self.name, self.id)
    }
}

/// `bpftool <object> show -j`: the loaded programs or maps.
fn bpftool_list(object: &str) -> Result<Vec<serde_json::Value>> {
    let json = env::output(Command::new("bpftool").args([object, "show", "-j"]))?;
    let parsed: serde_json::Value = serde_json::from_str(&json)
        .with_context(|| format!("parsing `bpftool {object} show -j`"))?;
    Ok(parsed.as_array().cloned().unwrap_or_default())
}

/// The highest program and map ids loaded: the kernel numbers new objects above them.
#[derive(Clone, Copy)]
struct NewestIds {
    prog: u32,
    map: u32,
}

impl NewestIds {
    fn of(self, kind: BpfKind) -> u32 {
        match kind {
            BpfKind::Map => self.map,
            _ => self.prog,
        }
    }
}

fn newest_bpf_ids() -> Result<NewestIds> {
    let newest = |object| -> Result<u32> {
        Ok(bpftool_list(object)?
            .iter()
            .map(|o| json_u32(&o["id"]))
            .max()
            .unwrap_or(0))
    };
    Ok(NewestIds {
        prog: newest("prog")?,
        map: newest("map")?,
    })
}

/// BPF programs and maps that no process holds through an fd (directly, or a link's or a held
/// program's) and that are attached to no interface: what a process that ended left behind.
fn unheld_bpf_objects() -> Result<Vec<BpfObject>> {
    // Listed before the fds are read: an object loaded in between is not listed, rather than
    // listed without its holder.
    let progs = bpftool_list("prog")?;
    let maps = bpftool_list("map")?;
    let net = env::output(Command::new("bpftool").args(["net", "show", "-j"]))?;
    let mut held: BTreeSet<(BpfKind, u32)> = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may end while it is read.
        for handle in fd_handles(pid).unwrap_or_default() {
            if let Handle::Bpf(kind, Some(id)) = handle {
                let kind = if kind == BpfKind::Map {
                    BpfKind::Map
                } else {
                    BpfKind::Prog
                };
                held.insert((kind, id));
            }
        }
    }
    // Programs attached without a link (netlink XDP, tc filters) are held by their interface.
    for id in json_ids(&serde_json::from_str(&net).context("parsing `bpftool net show -j`")?) {
        held.insert((BpfKind::Prog, id));
    }
    for prog in &progs {
        if held.contains(&(BpfKind::Prog, json_u32(&prog["id"]))) {
            for map in prog["map_ids"].as_array().into_iter().flatten() {
                held.insert((BpfKind::Map, json_u32(map)));
            }
        }
    }
    let unheld = progs
        .iter()
        .map(|p| (BpfKind::Prog, p))
        .chain(maps.iter().map(|m| (BpfKind::Map, m)))
        .map(|(kind, object)| BpfObject {
            kind,
            id: json_u32(&object["id"]),
            name: object["name"].as_str().unwrap_or("").to_owned(),
        })
        .filter(|object| !held.contains(&(object.kind, object.id)))
        .collect();
    Ok(unheld)
}

fn json_u32(value: &serde_json::Value) -> u32 {
    value
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0)
}

/// Every `"id"` in `bpftool net show -j`'s nesting of devices and attachments.
fn json_ids(value: &serde_json::Value) -> Vec<u32> {
    match value {
        serde_json::Value::Array(items) => items.iter().flat_map(json_ids).collect(),
        serde_json::Value::Object(fields) => fields
            .iter()
            .flat_map(|(key, value)| match (key.as_str(), value.as_u64()) {
                ("id", Some(id)) => vec![id as u32],
                _ => json_ids(value),
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attached_program_of_bpftool_net_is_found() {
        let listing = r#"[{"xdp":[{"devname":"veth0","ifindex":7,"mode":"generic","id":41}],
            "tc":[{"devname":"veth0","ifindex":7,"kind":"clsact/egress","name":"f","id":42}],
            "flow_dissector":[],"netfilter":[]}]"#;
        let mut ids = json_ids(&serde_json::from_str(listing).unwrap());
        ids.sort_unstable();
        assert_eq!(ids, [41, 42], "ids, not interface indexes");
    }
}
