//! The tools the sweep benchmark runs, described as data: how to invoke each on a set of targets,
//! what part of the sweep it covers, and how to read what it found.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use prober_tests::Family;

use super::built::{SourceBuild, ZMAP_4};
use super::Bed;
use crate::bootstrap;

/// The port hping3 floods; open in the bed.
pub const SINGLE_PORT: u16 = 80;
/// Probes hping3 may send before its time bound stops it.
const HPING3_COUNT: u32 = 1_000_000;
/// The configuration file masscan reads before its command line.
const MASSCAN_CONFIG: &str = "/etc/masscan/masscan.conf";
/// Source port of trafgen's frames (a fixed one: each frame differs by destination port).
const TRAFGEN_SOURCE_PORT: u16 = 40_000;

pub struct Tool {
    pub name: &'static str,
    pub program: Program,
    /// Which (host, port) pairs the run probes, so which open ports it can find.
    pub covers: Covers,
    /// Floods one target until the time bound stops it (hping3): it runs only in the one-host
    /// sweeps, for FLOOD_SECS, and being stopped is its normal end.
    pub floods_until_stopped: bool,
    /// Why the tool has no IPv6 rows, if it has none.
    pub no_ipv6: Option<&'static str>,
    /// How it ends on the bed that answers nothing.
    pub unanswered: WhenUnanswered,
    pub args: fn(&Invocation) -> Result<Vec<String>>,
    pub results: Results,
}

/// How a tool ends on the bed that answers nothing.
pub enum WhenUnanswered {
    /// As anywhere else.
    Ends,
    /// With this exit status, which says that no reply came (prober's 1).
    Exits(i32),
    /// Never by itself: its time bound ends it, normally. masscan 1.3.2's receive thread only
    /// notices that its --wait is over when a packet arrives.
    Hangs,
    /// It does not run there, for this reason.
    Skipped(&'static str),
}

pub enum Program {
    /// This workspace's release build of prober.
    Prober,
    /// An installed program and the Debian package that has it.
    Peer {
        command: &'static str,
        package: &'static str,
    },
    /// A peer built from source into the target directory.
    Built(&'static SourceBuild),
}

#[derive(Clone, Copy, PartialEq)]
pub enum Covers {
    /// Every port of every target: a full sweep.
    AllPorts,
    /// Nothing is reported: the send rate is the result.
    SendRateOnly,
}

/// What one run is told: where to send, from where, and where to write.
pub struct Invocation<'a> {
    pub bed: &'a Bed,
    /// All of one family.
    pub targets: &'a [IpAddr],
    /// The probes' source: the host side's address on the targets' network.
    pub source: IpAddr,
    /// The file the tool writes its results to (stdout goes next to it).
    pub output: PathBuf,
    /// For helper files the tool reads (zmap's blocklist, trafgen's frames).
    pub workdir: &'a Path,
}

pub enum Results {
    /// `open tcp <port> <ip> <time>` lines (masscan -oL; prober -o list), plus prober's footer
    /// on stderr for the closed count when `footer` is set.
    OpenList { footer: bool },
    /// nmap -oG.
    NmapGrepable,
    /// zmap -O csv with fields saddr,sport,classification.
    ZmapCsv,
    /// The tool reports nothing comparable.
    None,
}

/// What a tool reported.
pub struct Found {
    pub open: BTreeSet<(IpAddr, u16)>,
    /// Probes it reports answered (open or closed), distinct (host, port) pairs, when it
    /// reports closed ports at all.
    pub answered: Option<u64>,
}

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "prober",
        program: Program::Prober,
        covers: Covers::AllPorts,
        no_ipv6: None,
        unanswered: WhenUnanswered::Exits(1),
        floods_until_stopped: false,
        args: prober_args,
        results: Results::OpenList { footer: true },
    },
    // The same sweep with PACKET_QDISC_BYPASS, to show whether skipping the qdisc pays here.
    Tool {
        name: "prober-qb",
        program: Program::Prober,
        covers: Covers::AllPorts,
        no_ipv6: None,
        unanswered: WhenUnanswered::Exits(1),
        floods_until_stopped: false,
        args: prober_qdisc_bypass_args,
        results: Results::OpenList { footer: true },
    },
    // The same sweep with its reply matcher in generic XDP rather than at TCX ingress.
    Tool {
        name: "prober-gx",
        program: Program::Prober,
        covers: Covers::AllPorts,
        no_ipv6: None,
        unanswered: WhenUnanswered::Exits(1),
        floods_until_stopped: false,
        args: prober_generic_xdp_args,
        results: Results::OpenList { footer: true },
    },
    Tool {
        name: "masscan",
        program: Program::Peer {
            command: "masscan",
            package: "masscan",
        },
        covers: Covers::AllPorts,
        no_ipv6: None,
        unanswered: WhenUnanswered::Hangs,
        floods_until_stopped: false,
        args: masscan_args,
        results: Results::OpenList { footer: false },
    },
    Tool {
        name: "nmap",
        program: Program::Peer {
            command: "nmap",
            package: "nmap",
        },
        covers: Covers::AllPorts,
        no_ipv6: None,
        // Its retries of every unanswered probe bring it down to --min-rate: minutes of
        // retransmissions, not a send rate.
        unanswered: WhenUnanswered::Skipped(
            "nmap retransmits every unanswered probe at --min-rate",
        ),
        floods_until_stopped: false,
        args: nmap_args,
        results: Results::NmapGrepable,
    },
    Tool {
        name: "zmap-4.3.4",
        program: Program::Built(&ZMAP_4),
        covers: Covers::AllPorts,
        no_ipv6: Some("zmap 4.3.4 scans IPv4 only"),
        unanswered: WhenUnanswered::Ends,
        floods_until_stopped: false,
        args: zmap_args,
        results: Results::ZmapCsv,
    },
    Tool {
        name: "hping3",
        program: Program::Peer {
            command: "hping3",
            package: "hping3",
        },
        covers: Covers::SendRateOnly,
        no_ipv6: Some("hping3 sends through an AF_INET raw socket only"),
        unanswered: WhenUnanswered::Ends,
        floods_until_stopped: true,
        args: hping3_args,
        results: Results::None,
    },
    trafgen("trafgen", trafgen_args),
    // The same frames through the qdisc, the path prober's default takes (its TC egress program
    // times the probes there).
    trafgen("trafgen-q", trafgen_qdisc_args),
];

/// trafgen, measuring the packet path with `args`.
const fn trafgen(name: &'static str, args: fn(&Invocation) -> Result<Vec<String>>) -> Tool {
    Tool {
        name,
        program: Program::Peer {
            command: "trafgen",
            package: "netsniff-ng",
        },
        covers: Covers::SendRateOnly,
        no_ipv6: None,
        unanswered: WhenUnanswered::Ends,
        floods_until_stopped: false,
        args,
        results: Results::None,
    }
}

fn targets<'a>(inv: &Invocation<'a>) -> impl Iterator<Item = String> + 'a {
    inv.targets.iter().map(IpAddr::to_string)
}

impl Invocation<'_> {
    fn family(&self) -> Family {
        Family::of(self.targets[0])
    }

    /// Every probe's source.
    fn source(&self) -> String {
        self.source.to_string()
    }
}

fn strings<const N: usize>(words: [&str; N]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn prober_args(inv: &Invocation) -> Result<Vec<String>> {
    let mut args = strings([
        "-p", "1-65535", "--flood", "--wait", "1", "-O", "list", "-q",
    ]);
    args.extend(["--output".to_owned(), path_arg(&inv.output)?]);
    args.extend(["-I".to_owned(), inv.bed.host.host_if.clone()]);
    args.extend(targets(inv));
    Ok(args)
}

/// prober's sweep with `extra` options.
fn prober_args_and(inv: &Invocation, extra: &[&str]) -> Result<Vec<String>> {
    let mut args = prober_args(inv)?;
    args.extend(extra.iter().map(|arg| arg.to_string()));
    Ok(args)
}

fn prober_qdisc_bypass_args(inv: &Invocation) -> Result<Vec<String>> {
    prober_args_and(inv, &["--qdisc-bypass"])
}

fn prober_generic_xdp_args(inv: &Invocation) -> Result<Vec<String>> {
    prober_args_and(inv, &["--xdp-mode", "generic"])
}

fn masscan_args(inv: &Invocation) -> Result<Vec<String>> {
    // masscan always reads this file when it exists, and it may add targets or ranges.
    if Path::new(MASSCAN_CONFIG).exists() {
        bail!("{MASSCAN_CONFIG} exists; masscan would add its settings (targets among them) to the benchmark's");
    }
    let bed = inv.bed;
    // --noreset: with the host's own address as the source, masscan otherwise waits on its
    // user-space TCP stack and never ends. --router-mac: otherwise it ARPs for the gateway of
    // the default route, which is not on this veth.
    let mut args = strings([
        "-p",
        "1-65535",
        "--rate",
        "10000000",
        "--noreset",
        "--wait",
        "1",
    ]);
    args.extend(["-e".to_owned(), bed.host.host_if.clone()]);
    args.extend(["--adapter-ip".to_owned(), inv.source()]);
    args.extend(["--adapter-mac".to_owned(), bed.host_mac.clone()]);
    args.extend(["--router-mac".to_owned(), bed.ns_mac.clone()]);
    args.extend(["-oL".to_owned(), path_arg(&inv.output)?]);
    args.extend(targets(inv));
    Ok(args)
}

fn nmap_args(inv: &Invocation) -> Result<Vec<String>> {
    let bed = inv.bed;
    // -Pn: every target is up; host discovery would only add probes. --min-rate 10000: faster
    // minimums make nmap report closed ports as filtered on this machine (peers.md).
    let mut args = strings(["-n", "-sS", "-Pn", "-p-", "-T5", "--min-rate", "10000"]);
    if inv.family() == Family::V6 {
        args.push("-6".to_owned());
    }
    args.extend(["-e".to_owned(), bed.host.host_if.clone()]);
    args.extend(["-S".to_owned(), inv.source()]);
    args.extend(["-oG".to_owned(), path_arg(&inv.output)?]);
    args.extend(targets(inv));
    Ok(args)
}

fn zmap_args(inv: &Invocation) -> Result<Vec<String>> {
    let bed = inv.bed;
    // zmap's default blocklist (named in /etc/zmap/zmap.conf, which Debian's zmap package
    // installs and this build reads too) excludes 198.18.0.0/15: an empty
    // config file and an empty blocklist of our own leave only the explicit targets.
    let config = write_file(inv.workdir, "zmap.conf", "")?;
    let blocklist = write_file(inv.workdir, "zmap-blocklist.conf", "")?;
    let mut args = strings([
        "-M",
        "tcp_synscan",
        "-p",
        "1-65535",
        "-T",
        "2",
        "-r",
        "10000000",
        "-c",
        "1",
        "--disable-syslog",
    ]);
    args.extend([
        "-C".to_owned(),
        path_arg(&config)?,
        "-b".to_owned(),
        path_arg(&blocklist)?,
    ]);
    args.extend(["-i".to_owned(), bed.host.host_if.clone()]);
    args.extend(["-S".to_owned(), inv.source()]);
    args.extend(["--source-mac".to_owned(), bed.host_mac.clone()]);
    args.extend(["-G".to_owned(), bed.ns_mac.clone()]);
    // Its status line every second goes to its stderr file: its "drops" (libpcap's) say where
    // replies it did not report went. Every first reply per (target, port), SYN-ACK or RST,
    // not only successes.
    args.extend(strings([
        "-O",
        "csv",
        "-f",
        ZMAP_CSV_HEADER,
        "--output-filter",
        "repeat = 0",
    ]));
    args.extend(["-o".to_owned(), path_arg(&inv.output)?]);
    args.extend(targets(inv));
    Ok(args)
}

fn hping3_args(inv: &Invocation) -> Result<Vec<String>> {
    let mut args = strings(["--flood", "-S", "-n"]);
    args.extend([
        "-p".to_owned(),
        SINGLE_PORT.to_string(),
        "-c".to_owned(),
        HPING3_COUNT.to_string(),
    ]);
    args.extend(["-I".to_owned(), inv.bed.host.host_if.clone()]);
    args.extend(targets(inv));
    Ok(args)
}

fn trafgen_args(inv: &Invocation) -> Result<Vec<String>> {
    let config = write_file(
        inv.workdir,
        &format!("trafgen-{:?}.cfg", inv.family()),
        &trafgen_config(inv),
    )?;
    let frames = 65_535 * inv.targets.len();
    // trafgen otherwise retunes the host's socket memory sysctls and the NIC's IRQ affinity,
    // which are not ours to change. (0.6.8's --help lists -A, but only the long form works.)
    let mut args = strings([
        "--no-sock-mem",
        "--notouch-irq",
        "--no-cpu-stats",
        "--cpus",
        "2",
    ]);
    args.extend(["--dev".to_owned(), inv.bed.host.host_if.clone()]);
    args.extend(["--conf".to_owned(), path_arg(&config)?]);
    args.extend(["--num".to_owned(), frames.to_string()]);
    Ok(args)
}

fn trafgen_qdisc_args(inv: &Invocation) -> Result<Vec<String>> {
    let mut args = trafgen_args(inv)?;
    args.push("--qdisc-path".to_owned());
    Ok(args)
}

/// One SYN frame per target, from the host veth's MAC and address (of the targets' family) to
/// the namespace's MAC and the target, its destination port counting up from 1. trafgen runs the
/// whole list round robin in a process per CPU, each with its own counters and an equal share of
/// --num, so with two CPUs each sweeps the lower half of every target's ports: the same number
/// of SYNs as a sweep, on the same path. (0.6.8's `cpu(N):` prefix, which would split the ports
/// between the CPUs, makes a process hang with --num.) trafgen fills in the lengths and the
/// TCP checksum over either pseudo-header.
fn trafgen_config(inv: &Invocation) -> String {
    let bed = inv.bed;
    let mut config = String::new();
    for target in inv.targets {
        let ip = match target {
            IpAddr::V4(target) => format!("ipv4(sa={}, da={target}, ttl=64, df)", inv.source()),
            IpAddr::V6(target) => format!("ipv6(sa={}, da={target}, hl=64)", inv.source()),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            config,
            "{{ eth(da={ns_mac}, sa={host_mac}), {ip}, \
             tcp(sp={TRAFGEN_SOURCE_PORT}, dp=dinc(1, 65535), seq=1, syn, win=64240) }}",
            ns_mac = bed.ns_mac,
            host_mac = bed.host_mac,
        );
    }
    config
}

fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn path_arg(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

impl Program {
    /// Installs the peers that are missing and what the peers built from source need (one
    /// apt-get run for all of them), then builds those.
    pub fn install_missing_peers<'a>(
        programs: impl IntoIterator<Item = &'a Program>,
    ) -> Result<()> {
        let programs: Vec<&Program> = programs.into_iter().collect();
        let mut build_packages: Vec<&str> = programs
            .iter()
            .filter_map(|program| match program {
                Program::Built(build) => Some(build.packages),
                _ => None,
            })
            .flatten()
            .copied()
            .collect();
        build_packages.sort_unstable();
        build_packages.dedup();
        let mut missing = bootstrap::missing_packages(&build_packages)?;
        missing.extend(programs.iter().filter_map(|program| match program {
            Program::Peer { command, package } if !on_path(command) => Some(*package),
            _ => None,
        }));
        // Two commands may come from one package (nmap and nping).
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            bootstrap::install_packages(&missing)?;
        }
        programs
            .iter()
            .filter_map(|program| match program {
                Program::Built(build) => Some(build),
                _ => None,
            })
            .try_for_each(|build| build.ensure_built())
    }

    /// The first line the program prints for `--version` (all of them take it).
    pub fn version(&self, prober: &Result<PathBuf>) -> String {
        let program = match self.path(prober) {
            Ok(program) => program,
            Err(err) => return format!("{err:#}"),
        };
        match Command::new(program).arg("--version").output() {
            // masscan starts with an empty line; some print the version on stderr.
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&out.stderr).lines())
                .map(str::trim)
                .find(|line| !line.is_empty())
                .unwrap_or("(no version printed)")
                .to_owned(),
            Err(err) => format!("cannot run: {err}"),
        }
    }

    /// The executable to run.
    pub fn path(&self, prober: &Result<PathBuf>) -> Result<PathBuf> {
        match (self, prober) {
            (Program::Prober, Ok(path)) => Ok(path.clone()),
            (Program::Prober, Err(err)) => bail!("prober is not built: {err:#}"),
            (Program::Peer { command, .. }, _) => {
                which(command).with_context(|| format!("{command} is not installed"))
            }
            (Program::Built(build), _) => {
                let path = build.path()?;
                if !path.is_file() {
                    bail!("{} is not built", path.display());
                }
                Ok(path)
            }
        }
    }
}

fn on_path(command: &str) -> bool {
    which(command).is_some()
}

fn which(command: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(command))
        .find(|path| path.is_file())
}

impl Results {
    /// Reads what the tool reported from its output file and stderr.
    pub fn read(&self, output: &Path, stderr: &str) -> Result<Found> {
        let text = || {
            std::fs::read_to_string(output).with_context(|| format!("reading {}", output.display()))
        };
        match self {
            Results::OpenList { footer } => {
                let open = parse_open_list(&text()?)?;
                let answered = if *footer {
                    Some(prober_answered(stderr)?)
                } else {
                    None
                };
                Ok(Found { open, answered })
            }
            Results::NmapGrepable => parse_nmap_grepable(&text()?),
            Results::ZmapCsv => parse_zmap_csv(&text()?),
            Results::None => Ok(Found {
                open: BTreeSet::new(),
                answered: None,
            }),
        }
    }
}

/// `open tcp <port> <ip> <time>` lines; `#` comments (masscan's) are skipped.
fn parse_open_list(text: &str) -> Result<BTreeSet<(IpAddr, u16)>> {
    let mut open = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["open", "tcp", port, ip, ..] => {
                open.insert((
                    ip.parse().context("address")?,
                    port.parse().context("port")?,
                ));
            }
            _ => bail!("unexpected list line {line:?}"),
        }
    }
    Ok(open)
}

/// open + closed from prober's footer line `<open> open, <closed> closed, <filtered> filtered, ...`.
fn prober_answered(stderr: &str) -> Result<u64> {
    let line = stderr
        .lines()
        .find(|l| l.contains(" open, ") && l.contains(" closed, "))
        .context("no `<n> open, <n> closed` line in prober's footer")?;
    let count = |label: &str| -> Result<u64> {
        line.split(", ")
            .find_map(|part| part.trim().strip_suffix(label))
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no `<n>{label}` in {line:?}"))
    };
    Ok(count(" open")? + count(" closed")?)
}

/// nmap -oG: `Host: <ip> ()\tPorts: 80/open/tcp//http///, ...\tIgnored State: closed (65530)`.
fn parse_nmap_grepable(text: &str) -> Result<Found> {
    let mut open = BTreeSet::new();
    let mut answered = 0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("Host: ") && l.contains("Ports: "))
    {
        let ip: IpAddr = line["Host: ".len()..]
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .with_context(|| format!("no address in {line:?}"))?;
        for field in line.split('\t') {
            if let Some(ports) = field.strip_prefix("Ports: ") {
                for entry in ports.split(", ") {
                    let mut parts = entry.split('/');
                    let port: u16 = parts
                        .next()
                        .and_then(|p| p.trim().parse().ok())
                        .context("port")?;
                    match parts.next() {
                        Some("open") => {
                            open.insert((ip, port));
                            answered += 1;
                        }
                        Some("closed") => answered += 1,
                        _ => {}
                    }
                }
            } else if let Some(ignored) = field.strip_prefix("Ignored State: closed (") {
                answered += ignored
                    .trim_end_matches(')')
                    .parse::<u64>()
                    .context("ignored count")?;
            }
        }
    }
    Ok(Found {
        open,
        answered: Some(answered),
    })
}

/// The header of zmap's csv with the fields it is asked for.
const ZMAP_CSV_HEADER: &str = "saddr,sport,classification";

/// zmap's csv (header `saddr,sport,classification`): a line per first reply of a (target,
/// port); over many ports its dedup is a window, so a pair may come twice and counts once.
fn parse_zmap_csv(text: &str) -> Result<Found> {
    let mut open = BTreeSet::new();
    let mut answered = BTreeSet::new();
    let mut lines = text.lines();
    if let Some(header) = lines.next().filter(|h| *h != ZMAP_CSV_HEADER) {
        bail!("zmap's csv starts with {header:?}, not {ZMAP_CSV_HEADER:?}");
    }
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let [ip, port, class] = fields.as_slice() else {
            bail!("unexpected zmap line {line:?}");
        };
        let key: (IpAddr, u16) = (
            ip.parse().context("address")?,
            port.parse().context("port")?,
        );
        answered.insert(key);
        if *class == "synack" {
            open.insert(key);
        }
    }
    Ok(Found {
        open,
        answered: Some(answered.len() as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_lists_of_masscan_and_prober() {
        let text = "#masscan\nopen tcp 80 198.18.4.2 1764010000\nopen tcp 65535 198.18.4.2 1764010000\n# end\n";
        let open = parse_open_list(text).unwrap();
        assert_eq!(open.len(), 2);
        assert!(open.contains(&("198.18.4.2".parse().unwrap(), 65535)));
        assert!(parse_open_list("closed tcp 81 198.18.4.2 1\n").is_err());
        let v6 = parse_open_list("open tcp 80 2001:db8:100:400::2 1764010000\n").unwrap();
        assert!(v6.contains(&("2001:db8:100:400::2".parse().unwrap(), 80)));
    }

    #[test]
    fn prober_footer_counts() {
        let stderr = "\n--- prober sweep statistic ---\n65535 probes sent to 1 host x 65535 ports in 0.4 s (160000 pps)\n5 open, 65530 closed, 0 filtered, 0 duplicate replies\n";
        assert_eq!(prober_answered(stderr).unwrap(), 65535);
    }

    #[test]
    fn nmap_grepable_counts_open_and_ignored_closed() {
        let text = "# Nmap 7.93 scan\nHost: 198.18.4.2 ()\tStatus: Up\nHost: 198.18.4.2 ()\tPorts: 1/open/tcp//tcpmux///, 80/open/tcp//http///, 81/filtered/tcp/////\tIgnored State: closed (65532)\n";
        let found = parse_nmap_grepable(text).unwrap();
        assert_eq!(found.open.len(), 2);
        assert_eq!(found.answered, Some(65534));
        let v6 = text.replace("198.18.4.2", "2001:db8:100:400::2");
        let found = parse_nmap_grepable(&v6).unwrap();
        assert!(found
            .open
            .contains(&("2001:db8:100:400::2".parse().unwrap(), 80)));
    }

    #[test]
    fn zmap_csv_first_replies() {
        let text = "saddr,sport,classification\n198.18.8.1,80,synack\n198.18.8.2,80,rst\n";
        let found = parse_zmap_csv(text).unwrap();
        assert_eq!(found.open.len(), 1);
        assert_eq!(found.answered, Some(2));
    }

    #[test]
    fn zmap_csv_of_many_ports_counts_each_pair_once() {
        let text = "saddr,sport,classification\n198.18.8.1,80,synack\n198.18.8.1,81,rst\n\
                    198.18.8.1,80,synack\n198.18.8.2,65535,synack\n198.18.8.2,1,rst\n";
        let found = parse_zmap_csv(text).unwrap();
        assert_eq!(found.open.len(), 2);
        assert!(found.open.contains(&("198.18.8.2".parse().unwrap(), 65535)));
        assert_eq!(found.answered, Some(4));
        // Nothing answered (the bed that drops every SYN): a header and no lines.
        let none = parse_zmap_csv("saddr,sport,classification\n").unwrap();
        assert_eq!((none.open.len(), none.answered), (0, Some(0)));
        assert_eq!(parse_zmap_csv("").unwrap().answered, Some(0));
        // Other fields than asked for are an error, not misread columns.
        assert!(parse_zmap_csv("saddr,dport,classification\n198.18.8.1,80,synack\n").is_err());
    }
}
