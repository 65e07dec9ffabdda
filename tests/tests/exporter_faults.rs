//! `prober exporter` when things change under it (issue 13): a bad config at start and at a
//! reload, a SIGHUP reload that keeps some targets, drops one and adds one, a name that stops
//! resolving or moves, an interface that goes down and comes back (or is deleted and made
//! again), and SIGINT / SIGTERM. Every exporter probes namespace hosts of its own; its
//! `/metrics` is read directly (no Prometheus server is needed for these).
//!
//! "Nothing left attached" is checked in ways that other probers running on the machine at
//! the same time cannot disturb: across the machine, no prober BPF program that no process
//! holds (what a pinned program or link, or an XDP program attached without a link, would
//! be), and no XDP program on the test's own interface; where the exporter ran long enough,
//! the very links it held (TCX or XDP, read from its `/proc/<pid>/fdinfo`) are gone from the
//! kernel too. (This bpftool, 7.1, does not say which interface a TCX link is on.)

use prober_tests::exporter::{has_labels, http_get, parse_samples, Exporter, Sample};
use prober_tests::proc::Proc;
use prober_tests::{
    prober_bin, prober_command, require_root, run_checked, ScratchDir, TestHost, CLOSED_PORT,
    OPEN_PORT,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a refused exporter may take to exit: it should take milliseconds.
const REFUSAL_BOUND: Duration = Duration::from_secs(10);

/// The names prober's BPF programs load under (prober-ebpf/src/main.rs: `prober`,
/// `prober_ingress`, `prober_egress`; the kernel keeps the first 15 bytes).
fn is_prober_program(name: &str) -> bool {
    name == "prober" || name.starts_with("prober_")
}

/// `key:\tvalue` lines of `/proc/<pid>/fdinfo/<fd>` for each of the process's file
/// descriptors whose link is `anon_inode:<kind>` (`bpf-prog`, `bpf_link`).
fn bpf_fdinfos(pid: impl std::fmt::Display, kind: &str) -> Vec<BTreeMap<String, String>> {
    let wanted = format!("anon_inode:{kind}");
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        // The process exited meanwhile, or is not ours to read: it holds nothing we can see.
        return Vec::new();
    };
    fds.flatten()
        .filter(|fd| fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == &*wanted))
        .filter_map(|fd| {
            fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .ok()
        })
        .map(|text| {
            text.lines()
                .filter_map(|line| line.split_once(':'))
                .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
                .collect()
        })
        .collect()
}

/// A BPF link a process holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeldLink {
    id: u32,
    link_type: String,
    prog_id: u32,
    ifindex: Option<u32>,
}

fn held_links(pid: i32) -> Vec<HeldLink> {
    let number = |info: &BTreeMap<String, String>, key: &str| {
        info.get(key).and_then(|value| value.parse::<u32>().ok())
    };
    bpf_fdinfos(pid, "bpf_link")
        .iter()
        .filter_map(|info| {
            Some(HeldLink {
                id: number(info, "link_id")?,
                link_type: info.get("link_type")?.clone(),
                prog_id: number(info, "prog_id")?,
                ifindex: number(info, "ifindex"),
            })
        })
        .collect()
}

/// Every BPF program some process holds, by a program's own file descriptor or by a link's.
fn held_programs() -> BTreeSet<u32> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    procs
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .flat_map(|pid| {
            let mut infos = bpf_fdinfos(pid, "bpf-prog");
            infos.extend(bpf_fdinfos(pid, "bpf_link"));
            infos
        })
        .filter_map(|info| info.get("prog_id")?.parse().ok())
        .collect()
}

/// `bpftool <object> show --json`: the kernel's (id, name) of each program, or of each link
/// with the program it runs.
fn bpftool_ids(object: &str, name_key: &str) -> Vec<(u32, String)> {
    let out = run_checked(Command::new("bpftool").args([object, "show", "--json"]))
        .unwrap_or_else(|e| panic!("bpftool {object} show: {e:#}"));
    let list: Vec<serde_json::Value> = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("bpftool {object} show --json: {e}\n{out}"));
    list.iter()
        .filter_map(|item| {
            let id = u32::try_from(item.get("id")?.as_u64()?).ok()?;
            let name = item
                .get(name_key)
                .map(|v| v.to_string())
                .unwrap_or_default();
            Some((id, name.trim_matches('"').to_owned()))
        })
        .collect()
}

/// prober programs loaded in the kernel that no process holds: left pinned or attached
/// without a link. Asked again for up to 3 s, since the kernel frees a program a little after
/// its last holder has gone.
fn orphaned_prober_programs() -> Vec<(u32, String)> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let loaded: Vec<(u32, String)> = bpftool_ids("prog", "name")
            .into_iter()
            .filter(|(_, name)| is_prober_program(name))
            .collect();
        let held = held_programs();
        let orphans: Vec<(u32, String)> = loaded
            .into_iter()
            .filter(|(id, _)| !held.contains(id))
            .collect();
        if orphans.is_empty() || Instant::now() >= deadline {
            return orphans;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ip [-n <ns>] link show dev <dev>`, which names an attached XDP program (`xdp`,
/// `xdpgeneric`, ...).
fn link_show(ns: Option<&str>, dev: &str) -> String {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["link", "show", "dev", dev]);
    run_checked(&mut cmd).unwrap_or_else(|e| panic!("{e:#}"))
}

/// One way the exporter must refuse to start.
struct Refusal {
    what: &'static str,
    /// The config file, `{T}` standing for the target, or None for none.
    config: Option<&'static str>,
    /// Command-line arguments after `exporter --listen 127.0.0.1:0 [--config FILE]`, `{T}`
    /// standing for the target.
    args: &'static [&'static str],
    /// What the one line must name (besides starting `prober: `).
    names: &'static str,
}

/// The refusals of [`bad_input_at_start_exits_2_with_one_line_and_attaches_nothing`]. Each
/// config has a valid target besides its fault, so that an exporter that attached before it
/// checked everything would have had something to attach.
const REFUSALS: &[Refusal] = &[
    Refusal {
        what: "an unknown key",
        config: Some("targets:\n  - hosts: [\"{T}\"]\n    probe: icmp\n    colour: red\n"),
        args: &[],
        names: "colour",
    },
    Refusal {
        what: "an unknown top-level key",
        config: Some("scrape_me: true\ntargets:\n  - hosts: [\"{T}\"]\n    probe: icmp\n"),
        args: &[],
        names: "scrape_me",
    },
    Refusal {
        what: "a bad duration",
        config: Some("targets:\n  - hosts: [\"{T}\"]\n    probe: icmp\n    interval: 5x\n"),
        args: &[],
        names: "5x",
    },
    Refusal {
        what: "an interval below 10ms",
        config: Some("targets:\n  - hosts: [\"{T}\"]\n    probe: icmp\n    interval: 5ms\n"),
        args: &[],
        names: "interval",
    },
    Refusal {
        what: "tcp-syn without a port",
        config: Some("targets:\n  - hosts: [\"{T}\"]\n    probe: tcp-syn\n"),
        args: &[],
        names: "port",
    },
    Refusal {
        what: "icmp with a port",
        config: Some("targets:\n  - hosts: [\"{T}\"]\n    probe: icmp\n    port: 80\n"),
        args: &[],
        names: "port",
    },
    Refusal {
        what: "an unknown probe",
        config: Some("targets:\n  - hosts: [\"{T}\"]\n    probe: udp-echo\n"),
        args: &[],
        names: "udp-echo",
    },
    Refusal {
        what: "a timeout longer than the interval",
        config: Some(
            "targets:\n  - hosts: [\"{T}\"]\n    probe: icmp\n    interval: 200ms\n    timeout: 500ms\n",
        ),
        args: &[],
        names: "timeout",
    },
    Refusal {
        what: "a target given twice",
        config: Some(
            "targets:\n  - hosts: [\"{T}\"]\n    probe: tcp-syn\n    port: 80\n  - hosts: [\"{T}\"]\n    probe: tcp-syn\n    port: 80\n",
        ),
        args: &[],
        names: "{T}",
    },
    Refusal {
        what: "a host that does not resolve",
        config: Some("targets:\n  - hosts: [\"{T}\", nowhere.example]\n    probe: icmp\n"),
        args: &[],
        names: "nowhere.example",
    },
    Refusal {
        what: "a config file that is not YAML",
        config: Some("targets: [ {hosts: \n"),
        args: &[],
        names: "prober.yml",
    },
    Refusal {
        what: "-S without -p on the command line",
        config: None,
        args: &["-S", "{T}"],
        names: "port",
    },
    Refusal {
        what: "a bad --interval on the command line",
        config: None,
        args: &["--interval", "5x", "{T}"],
        names: "5x",
    },
];

/// `text` of a [`Refusal`] with its target: the host side of `host`'s veth, as seen from
/// inside its namespace.
fn filled(text: &str, host: &TestHost) -> String {
    text.replace("{T}", &host.host_addr.to_string())
}

/// What is wrong with how `prober exporter` met `refusal` (run in `host`'s namespace, which
/// has a resolver of its own, probing the host side of its veth), or None when it exited 2
/// with one line naming the problem and left nothing attached.
fn refused(host: &TestHost, refusal: &Refusal) -> Option<String> {
    let fill = |text: &str| filled(text, host);
    let dir = ScratchDir::new("refused").expect("scratch dir");
    let mut args = vec![
        "exporter".to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    if let Some(config) = refusal.config {
        let path = dir.path.join("prober.yml");
        fs::write(&path, fill(config)).expect("writing the config");
        args.extend(["--config".to_owned(), path.display().to_string()]);
    }
    args.extend(refusal.args.iter().map(|arg| fill(arg)));
    let mut cmd = host.command_in_ns(prober_bin());
    cmd.args(&args);
    let mut exporter = Proc::spawn(cmd);
    let deadline = Instant::now() + REFUSAL_BOUND;
    while exporter.running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if exporter.running() {
        // Dropping it kills it.
        return Some(format!(
            "{}: still running after {REFUSAL_BOUND:?}\n{}",
            refusal.what,
            exporter.dump()
        ));
    }
    let run = exporter.wait(Duration::ZERO);
    let lines = run.stderr_lines();
    let names = fill(refusal.names);
    let mut wrong = Vec::new();
    if run.code() != Some(2) {
        wrong.push("exit status is not 2".to_owned());
    }
    if lines.len() != 1 {
        wrong.push(format!("{} lines on stderr, not 1", lines.len()));
    }
    match lines.first() {
        Some(line) if line.starts_with("prober: ") && line.contains(&names) => {}
        _ => wrong.push(format!("no line `prober: ...{names}...`")),
    }
    let xdp = link_show(Some(&host.ns), &host.peer_if);
    if xdp.contains("xdp") {
        wrong.push(format!("an XDP program is left on {}: {xdp}", host.peer_if));
    }
    if wrong.is_empty() {
        println!("{}: {}", refusal.what, run.stderr.trim_end());
        return None;
    }
    Some(format!("{}: {}\n{run}", refusal.what, wrong.join("; ")))
}

/// (b) Bad input at start: exit status 2, one line `prober: ...` that names the problem, no
/// XDP program on the interface the good target is on, no prober program left orphaned.
/// Every case runs (in turn) before the test fails, so that one run shows all the wrong ones.
#[test]
fn bad_input_at_start_exits_2_with_one_line_and_attaches_nothing() {
    require_root();
    let host = TestHost::new().expect("test host");
    let wrong: Vec<String> = REFUSALS
        .iter()
        .filter_map(|refusal| refused(&host, refusal))
        .collect();
    let orphans = orphaned_prober_programs();
    assert!(
        wrong.is_empty() && orphans.is_empty(),
        "{} of {} refusals went wrong:\n\n{}\n\nprober programs no process holds: {orphans:?}",
        wrong.len(),
        REFUSALS.len(),
        wrong.join("\n\n")
    );
}

/// The probes' interval in these tests: short, so that counts grow fast.
const INTERVAL: &str = "200ms";
/// Bound on anything the tests wait for that takes a few intervals (replies to count, a line
/// to be written): generous, so that only "never" fails on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(15);

/// One target of the exporter's config, and the labels its series carry.
struct Target {
    /// As written in the config: the `host` label.
    host: String,
    /// What it resolves to: the `ip` label.
    ip: String,
    probe: &'static str,
    /// `""` for ICMP.
    port: String,
}

impl Target {
    fn tcp_syn(ip: impl ToString, port: u16) -> Target {
        let ip = ip.to_string();
        Target {
            host: ip.clone(),
            ip,
            probe: "tcp-syn",
            port: port.to_string(),
        }
    }

    fn icmp(host: impl ToString, ip: impl ToString) -> Target {
        Target {
            host: host.to_string(),
            ip: ip.to_string(),
            probe: "icmp",
            port: String::new(),
        }
    }

    /// Its entry in the config's `targets:` list.
    fn yaml(&self) -> String {
        let port = if self.port.is_empty() {
            String::new()
        } else {
            format!("    port: {}\n", self.port)
        };
        format!(
            "  - hosts: [\"{}\"]\n    probe: {}\n{port}    interval: {INTERVAL}\n",
            self.host, self.probe
        )
    }

    /// The labels that pick its series out (`source` left out: any).
    fn labels(&self) -> [(&str, &str); 4] {
        [
            ("host", &self.host),
            ("ip", &self.ip),
            ("probe", self.probe),
            ("port", &self.port),
        ]
    }

    /// The sum of its samples called `name` that also carry `more` labels (None: it has none).
    fn value(&self, samples: &[Sample], name: &str, more: &[(&str, &str)]) -> Option<f64> {
        let mut labels = self.labels().to_vec();
        labels.extend_from_slice(more);
        total(samples, name, &labels)
    }

    fn sent(&self, samples: &[Sample]) -> f64 {
        self.value(samples, "prober_probes_sent_total", &[])
            .unwrap_or(0.0)
    }

    /// Its first replies of every result.
    fn replies(&self, samples: &[Sample]) -> f64 {
        self.value(samples, "prober_replies_total", &[])
            .unwrap_or(0.0)
    }

    /// Whether any sample at all carries its labels.
    fn has_series(&self, samples: &[Sample]) -> bool {
        samples
            .iter()
            .any(|sample| has_labels(sample, &self.labels()))
    }
}

/// A config file with `targets` and `head` (top-level keys) before them.
fn config(head: &str, targets: &[&Target]) -> String {
    let list: String = targets.iter().map(|target| target.yaml()).collect();
    format!("{head}targets:\n{list}")
}

/// The sum of the samples called `name` carrying `labels`, None when there is none.
fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .filter(|sample| sample.name == name && has_labels(sample, labels))
        .map(|sample| sample.value)
        .reduce(|a, b| a + b)
}

/// What a test watches: an exporter's `/metrics` and its stderr.
trait Watched {
    fn samples(&self) -> Vec<Sample>;
    fn stderr(&self) -> Vec<String>;
}

impl Watched for Exporter {
    fn samples(&self) -> Vec<Sample> {
        self.metrics()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr_lines()
    }
}

/// Reads `/metrics` until `ready` says yes (Some) for at most `patience`; when it does not,
/// an error naming `what`, with the last `/metrics` and the exporter's stderr.
fn poll<T>(
    exporter: &impl Watched,
    what: &str,
    patience: Duration,
    mut ready: impl FnMut(&[Sample]) -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + patience;
    loop {
        let samples = exporter.samples();
        if let Some(done) = ready(&samples) {
            return Ok(done);
        }
        if Instant::now() >= deadline {
            let prober: Vec<String> = samples
                .iter()
                .filter(|sample| sample.name.starts_with("prober_"))
                .map(|sample| format!("{} {:?} {}", sample.name, sample.labels, sample.value))
                .collect();
            return Err(format!(
                "waited {patience:?} for {what}\n----- /metrics (prober_*) -----\n{}\n----- stderr -----\n{}",
                prober.join("\n"),
                exporter.stderr().join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`poll`] for at most [`PATIENCE`], or a panic.
fn wait_for<T>(
    exporter: &impl Watched,
    what: &str,
    ready: impl FnMut(&[Sample]) -> Option<T>,
) -> T {
    poll(exporter, what, PATIENCE, ready).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until `target` has sent `sent` probes and had `replies` replies at least; the
/// samples then.
fn wait_for_counts(
    exporter: &impl Watched,
    target: &Target,
    sent: f64,
    replies: f64,
) -> Vec<Sample> {
    let what = format!(
        "{} {} {}:{} to reach {sent} sent, {replies} replies",
        target.probe, target.host, target.ip, target.port
    );
    wait_for(exporter, &what, |samples| {
        (target.sent(samples) >= sent && target.replies(samples) >= replies)
            .then(|| samples.to_vec())
    })
}

/// Waits until `target` has sent 3 more probes and had 3 more replies than it has now.
fn wait_for_more(exporter: &impl Watched, target: &Target) -> Vec<Sample> {
    let now = exporter.samples();
    wait_for_counts(
        exporter,
        target,
        target.sent(&now) + 3.0,
        target.replies(&now) + 3.0,
    )
}

/// The process-level reload counters: successes, failures (0 when not shown), and the
/// `prober_config_last_reload_successful` gauge.
fn reloads(samples: &[Sample]) -> (f64, f64, Option<f64>) {
    let count = |result: &str| {
        total(
            samples,
            "prober_config_reloads_total",
            &[("result", result)],
        )
        .unwrap_or(0.0)
    };
    (
        count("success"),
        count("failure"),
        total(samples, "prober_config_last_reload_successful", &[]),
    )
}

fn exporter_with(config: &str) -> Exporter {
    Exporter::start(&[], Some(config)).unwrap_or_else(|e| panic!("starting the exporter: {e:#}"))
}

/// (a) SIGHUP with A kept, B removed and C added: A's counters go on from where they were,
/// B's series are gone, C's appear and count, one successful reload is counted and a stderr
/// line says so.
#[test]
fn sighup_reload_keeps_the_counters_of_targets_that_stay() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let kept = Target::tcp_syn(host.addr, OPEN_PORT);
    let removed = Target::icmp(host.addr, host.addr);
    let added = Target::tcp_syn(host.addr, CLOSED_PORT);
    let mut exporter = exporter_with(&config("", &[&kept, &removed]));
    // Ten probes (2 s): a reset counter would be back far below that by the time C counts.
    let before = wait_for_counts(&exporter, &kept, 10.0, 10.0);
    wait_for_counts(&exporter, &removed, 3.0, 3.0);
    let (kept_sent, kept_replies) = (kept.sent(&before), kept.replies(&before));

    exporter
        .reload(&config("", &[&kept, &added]))
        .expect("reload");
    let line = exporter
        .wait_for_line("reload", PATIENCE)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(line.starts_with("prober exporter: "), "{line:?}");
    println!("{line}");
    let after = wait_for_counts(&exporter, &added, 3.0, 3.0);

    assert!(
        kept.sent(&after) > kept_sent && kept.replies(&after) > kept_replies,
        "A's counters were reset or stopped by the reload: {kept_sent} sent and {kept_replies} \
         replies before, {} and {} after",
        kept.sent(&after),
        kept.replies(&after)
    );
    assert_eq!(
        added.value(&after, "prober_replies_total", &[("result", "closed")]),
        Some(added.replies(&after)),
        "C's replies are RST-ACKs"
    );
    let left: Vec<&Sample> = after
        .iter()
        .filter(|sample| has_labels(sample, &removed.labels()))
        .collect();
    assert!(left.is_empty(), "B's series outlive its removal: {left:#?}");
    assert_eq!(reloads(&after), (1.0, 0.0, Some(1.0)), "reload counters");
}

/// (b) SIGHUP with a broken file: the exporter keeps serving and probing with the old
/// config, counts a failed reload, writes one line about it; a good file after that is
/// taken.
#[test]
fn a_bad_config_at_reload_keeps_the_old_one() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let kept = Target::tcp_syn(host.addr, OPEN_PORT);
    let added = Target::tcp_syn(host.addr, CLOSED_PORT);
    let mut exporter = exporter_with(&config("", &[&kept]));
    wait_for_counts(&exporter, &kept, 3.0, 3.0);

    // The new target with a key nobody knows: none of the file may be taken.
    let broken = config("", &[&kept, &added]) + "    colour: red\n";
    exporter.reload(&broken).expect("reload");
    let line = exporter
        .wait_for_line("colour", PATIENCE)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(line.starts_with("prober exporter: "), "{line:?}");
    println!("{line}");
    let later = wait_for_more(&exporter, &kept);
    assert_eq!(reloads(&later), (0.0, 1.0, Some(0.0)), "reload counters");
    assert!(
        !added.has_series(&later),
        "the broken file's new target was taken"
    );
    let about_it: Vec<String> = exporter
        .stderr_lines()
        .into_iter()
        .filter(|line| line.contains("colour"))
        .collect();
    assert_eq!(
        about_it.len(),
        1,
        "lines about the broken file: {about_it:#?}"
    );

    exporter
        .reload(&config("", &[&kept, &added]))
        .expect("reload");
    let after = wait_for_counts(&exporter, &added, 3.0, 3.0);
    assert_eq!(reloads(&after), (1.0, 1.0, Some(1.0)), "reload counters");
}

/// The first stderr line after the first `after` lines that contains `needle`, waiting at most
/// [`PATIENCE`] (lines already written before an event are not taken for what it caused).
fn line_after(exporter: &impl Watched, after: usize, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lines = exporter.stderr();
        if let Some(line) = lines.iter().skip(after).find(|line| line.contains(needle)) {
            return line.clone();
        }
        if Instant::now() >= deadline {
            panic!(
                "no stderr line with {needle:?} after line {after} within {PATIENCE:?}:\n{}",
                lines.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ip link set dev <dev> <state>` in the caller's namespace.
fn set_link(dev: &str, state: &str) {
    run_checked(Command::new("ip").args(["link", "set", "dev", dev, state]))
        .unwrap_or_else(|e| panic!("{e:#}"));
}

fn send_errors(target: &Target, samples: &[Sample]) -> f64 {
    target
        .value(samples, "prober_send_errors_total", &[])
        .unwrap_or(0.0)
}

/// An interface's index in the caller's namespace.
fn ifindex(dev: &str) -> u32 {
    let path = format!("/sys/class/net/{dev}/ifindex");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {text:?}: {e}"))
}

/// Whether the exporter holds a BPF link (XDP or TCX) on `dev`.
fn attached_to(pid: i32, dev: &str) -> bool {
    let index = ifindex(dev);
    held_links(pid)
        .iter()
        .any(|link| link.ifindex == Some(index))
}

/// How long [`WhileAway`] waits for sends to fail: 25 intervals, and not so long that the
/// testbed's allocator lock, which [`TestHost::remake_veth`] holds meanwhile, is held long.
const AWAY: Duration = Duration::from_secs(5);

/// What [`WhileAway`] saw while the veth was away.
struct Away {
    /// How many stderr lines there were by then (the line that says the veth is back is
    /// looked for after them).
    lines: usize,
    /// Whether sends failed meanwhile (`prober_send_errors_total` grew by 3).
    sends_failed: Result<(), String>,
}

/// What a fault of the veth is given to call while the veth is away: it waits for a stderr
/// line that names the veth, and (without failing the test yet, so that the rest of it still
/// runs) for sends to fail.
type WhileAway<'a> = &'a dyn Fn() -> Away;

/// An exporter probing `host`'s open port through a fault of its veth: `fault` takes the veth
/// away, calls the [`WhileAway`] it is given and brings the veth back, returning what that
/// returned. While the veth is away a stderr line names it and sends fail; once it is back
/// another line names it and replies count again; no line is written twice. The exporter,
/// once all that has been seen (its stderr printed, phase by phase).
fn probed_through(host: &TestHost, fault: impl FnOnce(WhileAway) -> Away) -> Exporter {
    let target = Target::tcp_syn(host.addr, OPEN_PORT);
    let exporter = exporter_with(&config("", &[&target]));
    wait_for_counts(&exporter, &target, 3.0, 3.0);
    let before = exporter.stderr_lines().len();
    let while_away = || {
        line_after(&exporter, before, &host.host_if);
        let errors = send_errors(&target, &exporter.metrics());
        let sends_failed = poll(
            &exporter,
            "sends to fail while the veth is away",
            AWAY,
            |samples| (send_errors(&target, samples) >= errors + 3.0).then_some(()),
        )
        .map(|_| ());
        Away {
            lines: exporter.stderr_lines().len(),
            sends_failed,
        }
    };
    let away = fault(&while_away);
    line_after(&exporter, away.lines, &host.host_if);
    wait_for_more(&exporter, &target);
    let lines = exporter.stderr_lines();
    println!(
        "----- stderr while the veth was away -----\n{}\n----- after it was back -----\n{}",
        lines[before..away.lines].join("\n"),
        lines[away.lines..].join("\n")
    );
    if let Err(e) = away.sends_failed {
        panic!("probing resumed, but while the veth was away: {e}");
    }
    no_line_twice(&lines[before..]);
    exporter
}

/// A line per event, not one per failed probe or lookup: no line of `lines` is written twice.
fn no_line_twice(lines: &[String]) {
    let mut said = BTreeSet::new();
    let again: Vec<&String> = lines.iter().filter(|line| !said.insert(*line)).collect();
    assert!(again.is_empty(), "lines written again: {again:#?}");
}

/// (d) The veth goes down under a running exporter and comes back up: it keeps serving, its
/// sends fail meanwhile, a line says so each time, and replies count again once it is up.
#[test]
fn an_interface_that_goes_down_and_comes_back_is_probed_again() {
    require_root();
    let host = TestHost::standard().expect("test host");
    probed_through(&host, |while_down| {
        set_link(&host.host_if, "down");
        let seen = while_down();
        set_link(&host.host_if, "up");
        seen
    });
}

/// (d) The veth is deleted under a running exporter and made again under the same name (a
/// new interface index, a new MAC address at the far end): the exporter says so each time,
/// attaches to the new interface and its replies count again.
#[test]
fn an_interface_deleted_and_made_again_is_probed_again() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let old_index = ifindex(&host.host_if);
    let exporter = probed_through(&host, |while_gone| {
        host.remake_veth(while_gone)
            .expect("deleting and making the veth again")
    });
    assert_ne!(ifindex(&host.host_if), old_index, "the same interface?");
    assert!(
        attached_to(exporter.pid(), &host.host_if),
        "the exporter holds no BPF link on the new {}: {:?}",
        host.host_if,
        held_links(exporter.pid())
    );
}

/// The links `pid` holds that are still in the kernel, or the programs they ran that are
/// still loaded, after up to 3 s (the kernel frees them a little after the last holder).
fn still_loaded(links: &[HeldLink]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let live_links: BTreeSet<u32> = bpftool_ids("link", "type")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let live_programs: BTreeSet<u32> = bpftool_ids("prog", "name")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let left: Vec<String> = links
            .iter()
            .filter(|link| live_links.contains(&link.id) || live_programs.contains(&link.prog_id))
            .map(|link| format!("{link:?}"))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (e) SIGINT or SIGTERM to an exporter that is probing: exit status 0, and nothing it
/// attached is left (its links and their programs gone from the kernel, no XDP program on the
/// veth, no prober program that nobody holds). Run on the command line alone (no config).
fn a_signal_stops_it_cleanly(signal: i32) {
    require_root();
    let host = TestHost::standard().expect("test host");
    host.add_counter("probes", &format!("tcp dport {OPEN_PORT}"))
        .expect("nft counter");
    let addr = host.addr.to_string();
    let port = OPEN_PORT.to_string();
    let mut exporter = Proc::spawn(prober_command(&[
        "exporter",
        "--listen",
        "127.0.0.1:0",
        "--interval",
        INTERVAL,
        "-S",
        "-p",
        &port,
        &addr,
    ]));
    let deadline = Instant::now() + PATIENCE;
    while !(attached_to(exporter.pid(), &host.host_if)
        && host.counter_packets("probes").expect("nft counter") >= 3)
    {
        if !exporter.running() || Instant::now() >= deadline {
            exporter.fail(&format!(
                "no BPF link on {} with 3 probes arrived within {PATIENCE:?}",
                host.host_if
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let links = held_links(exporter.pid());
    println!("its links: {links:?}");

    exporter.signal(signal);
    let run = exporter.wait(Duration::from_secs(5));
    assert_eq!(
        run.code(),
        Some(0),
        "exit status after signal {signal}\n{run}"
    );
    let left = still_loaded(&links);
    assert!(left.is_empty(), "still in the kernel: {left:?}\n{run}");
    let xdp = link_show(None, &host.host_if);
    assert!(!xdp.contains("xdp"), "XDP left on the veth: {xdp}\n{run}");
    let orphans = orphaned_prober_programs();
    assert!(
        orphans.is_empty(),
        "prober programs nobody holds: {orphans:?}"
    );
}

#[test]
fn sigint_exits_0_and_leaves_nothing_attached() {
    a_signal_stops_it_cleanly(libc::SIGINT);
}

#[test]
fn sigterm_exits_0_and_leaves_nothing_attached() {
    a_signal_stops_it_cleanly(libc::SIGTERM);
}

/// What the exporter writes once it serves, before its address.
const LISTENING: &str = "prober exporter: listening on ";

/// `prober exporter` inside a test host's namespace, run with `ip netns exec` so that it looks
/// names up with the namespace's own hosts file and resolver (the harness's [`Exporter`] runs
/// in the caller's namespace, where no name may be looked up); it serves on the namespace's
/// loopback, so its `/metrics` is fetched from a thread inside the namespace. Killed (by
/// [`Proc`]) if the test fails; [`NsExporter::stop`] ends it cleanly.
struct NsExporter<'a> {
    host: &'a TestHost,
    proc: Proc,
    /// `http://ADDR:PORT`.
    url: String,
    config: PathBuf,
    /// Holds the config file.
    _dir: ScratchDir,
}

impl<'a> NsExporter<'a> {
    fn start(host: &'a TestHost, config: &str) -> NsExporter<'a> {
        let dir = ScratchDir::new("ns-exporter").expect("scratch dir");
        let path = dir.path.join("prober.yml");
        fs::write(&path, config).expect("writing the config");
        let mut cmd = host.command_in_ns(prober_bin());
        cmd.args(["exporter", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path);
        let mut exporter = NsExporter {
            host,
            proc: Proc::spawn(cmd),
            url: String::new(),
            config: path,
            _dir: dir,
        };
        let line = line_after(&exporter, 0, LISTENING);
        exporter.url = line[LISTENING.len()..].trim().to_owned();
        exporter
    }

    /// Rewrites the config file with `yaml` and sends SIGHUP.
    fn reload(&mut self, yaml: &str) {
        fs::write(&self.config, yaml).expect("writing the config");
        self.proc.signal(libc::SIGHUP);
    }

    /// SIGTERM; it must exit 0 within 5 s.
    fn stop(mut self) {
        self.proc.signal(libc::SIGTERM);
        let run = self.proc.wait(Duration::from_secs(5));
        assert_eq!(run.code(), Some(0), "exit status after SIGTERM\n{run}");
    }
}

impl Watched for NsExporter<'_> {
    fn samples(&self) -> Vec<Sample> {
        let url = format!("{}/metrics", self.url);
        let (status, _, body) = self
            .host
            .in_ns(move || http_get(&url, &[], None))
            .and_then(|got| got)
            .unwrap_or_else(|e| panic!("GET /metrics: {e:#}\n{}", self.proc.dump()));
        assert_eq!(status, 200, "GET /metrics\n{body}\n{}", self.proc.dump());
        parse_samples(&body).unwrap_or_else(|e| panic!("/metrics: {e:#}\n{body}"))
    }

    fn stderr(&self) -> Vec<String> {
        self.proc
            .stderr_so_far()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Rewrites the namespace's hosts file (which `ip netns exec` bind-mounts over /etc/hosts) in
/// place: a new file renamed over it would not be the file the exporter's mount shows.
fn rewrite_hosts(host: &TestHost, names: &[(&str, IpAddr)]) {
    let path = Path::new("/etc/netns").join(&host.ns).join("hosts");
    let mut text = "127.0.0.1 localhost\n::1 localhost\n".to_owned();
    for (name, addr) in names {
        text.push_str(&format!("{addr} {name}\n"));
    }
    fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// (c) A name that stops resolving (its line gone from the hosts file of the namespace the
/// exporter runs in, where the resolver, 127.0.0.1, answers nothing): the exporter keeps
/// serving, says so, counts resolve errors and goes on probing the last address; when the
/// name comes back with another address, that address is probed, and the old one no more.
#[test]
fn a_name_that_stops_resolving_keeps_its_address_and_one_that_moves_is_followed() {
    require_root();
    const NAME: &str = "db.example";
    let router = TestHost::new().expect("router");
    let first = TestHost::behind(&router).expect("host behind the router");
    let second = TestHost::behind(&router).expect("host behind the router");
    router
        .add_host_name(NAME, &[first.addr.into()])
        .expect("hosts file");
    let at_first = Target::icmp(NAME, first.addr);
    let at_second = Target::icmp(NAME, second.addr);
    let exporter = NsExporter::start(&router, &config("resolve_interval: 1s\n", &[&at_first]));
    wait_for_counts(&exporter, &at_first, 3.0, 3.0);

    let mark = exporter.stderr().len();
    rewrite_hosts(&router, &[]);
    line_after(&exporter, mark, NAME);
    let errors = |samples: &[Sample]| {
        total(samples, "prober_resolve_errors_total", &[("host", NAME)]).unwrap_or(0.0)
    };
    wait_for(&exporter, "2 resolve errors", |samples| {
        (errors(samples) >= 2.0).then_some(())
    });
    wait_for_more(&exporter, &at_first);

    let mark = exporter.stderr().len();
    rewrite_hosts(&router, &[(NAME, second.addr.into())]);
    line_after(&exporter, mark, &second.addr.to_string());
    wait_for_counts(&exporter, &at_second, 3.0, 3.0);
    let sent_at_first = at_first.sent(&exporter.samples());
    std::thread::sleep(Duration::from_secs(1));
    let still = at_first.sent(&exporter.samples());
    assert_eq!(
        still, sent_at_first,
        "{NAME} has moved to {}, but {} is still probed",
        second.addr, first.addr
    );
    let lines = exporter.stderr();
    println!("{}", lines.join("\n"));
    no_line_twice(&lines);
    exporter.stop();
}

/// (b) Each config file refused at start, given at a reload instead (inside a namespace, for
/// the name that does not resolve): each is refused with one line that names the problem and
/// counted as a failure, and the exporter goes on probing its old target, and nothing else.
#[test]
fn every_config_refused_at_start_is_refused_at_reload_too() {
    require_root();
    let host = TestHost::new().expect("test host");
    let old = Target::icmp(host.host_addr, host.host_addr);
    let mut exporter = NsExporter::start(&host, &config("", &[&old]));
    wait_for_counts(&exporter, &old, 3.0, 3.0);
    let broken = REFUSALS
        .iter()
        .filter_map(|refusal| Some((refusal, refusal.config?)));
    for (failures, (refusal, yaml)) in broken.enumerate() {
        let mark = exporter.stderr().len();
        exporter.reload(&filled(yaml, &host));
        let names = filled(refusal.names, &host);
        let line = line_after(&exporter, mark, &names);
        assert!(
            line.starts_with("prober exporter: "),
            "{}: {line:?}",
            refusal.what
        );
        let failed = failures as f64 + 1.0;
        wait_for(&exporter, &format!("{failed} failed reloads"), |samples| {
            (reloads(samples) == (0.0, failed, Some(0.0))).then_some(())
        });
        let about_it = exporter.stderr()[mark..]
            .iter()
            .filter(|line| line.contains(&names))
            .count();
        assert_eq!(about_it, 1, "{}: lines naming {names:?}", refusal.what);
    }
    let samples = wait_for_more(&exporter, &old);
    let others: Vec<&Sample> = samples
        .iter()
        .filter(|sample| {
            sample.name == "prober_probes_sent_total" && !has_labels(sample, &old.labels())
        })
        .collect();
    assert!(others.is_empty(), "targets of refused files: {others:#?}");
    println!("{}", exporter.stderr().join("\n"));
    exporter.stop();
}
