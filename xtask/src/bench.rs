//! `cargo xtask bench sweep`: prober and its peers (masscan, nmap, zmap 4.3.4, hping3, and
//! trafgen for the packet path's limit) sweep all 65 535 TCP ports of one namespace host, of 20
//! routed to it, of 8 on a directly connected /24 (no gateway), and of 16 that drop every probe;
//! and the one host and the 20 again over IPv6 with the tools that have IPv6. One after the
//! other on the same bed, each measured the same way from outside; then a table per sweep with
//! prober's send rate against trafgen's (bypassing the qdisc and through it), masscan's and
//! zmap's, with `--bpf-stats` the cost of prober's BPF programs per packet, and prober's IPv6
//! send rate against its IPv4 one and its memory in every sweep.
//!
//! Everything is sent to addresses of a throwaway `TestHost` in 198.18.0.0/15 and
//! 2001:db8::/32, out of its veth, from the veth's address on the targets' network: every tool
//! is told the interface, the source address and (where it builds frames itself) both MACs, so
//! none of them picks a route, a gateway or a name server; and every target's route is checked
//! to leave by that veth before anything is sent to it.

mod bpf_cost;
mod built;
mod exporter;
pub mod measure;
mod rtt;
mod tools;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use prober_tests::{Family, SafetyNet, TestHost};

use crate::{bootstrap, env};
use measure::Measurement;
use tools::{Covers, Found, Invocation, Program, Tool, WhenUnanswered, SINGLE_PORT, TOOLS};

use bpf_cost::ProgramCost;

pub use exporter::run as exporter;
pub use rtt::run as rtt;

/// Ports with a real listener on every address of the bed. The ends of the range are among
/// them, so an off-by-one in a port range shows.
const OPEN_PORTS: [u16; 5] = [1, 80, 443, 8080, 65535];
/// Targets of the many-hosts sweep (besides the bed's own address, which is the one-host sweep).
const MANY_HOSTS: u32 = 20;
/// Hosts on the directly connected network, and its prefix length: most of it has no host.
const ON_LINK_HOSTS: u32 = 8;
const ON_LINK_PREFIX: u8 = 24;
/// Targets of the sweep that nothing answers.
const UNANSWERED_HOSTS: u32 = 16;
/// The namespace's nftables table that drops everything sent to the unanswered targets, after
/// the SYN counter (a later priority on the same hook) has counted it.
const DROP_TABLE: &str = "bench_unanswered";
/// prober's send rate over each tool's, and what issue 11 aims at.
/// Each pair of a prober row and a peer's: the first's send rate over the second's, and what
/// issue 11 aims at. prober's default path goes through the qdisc, where its TC egress program
/// times each probe; trafgen bypasses the qdisc unless told not to (`trafgen-q`). So the packet
/// path's limit for prober is trafgen-q's, and for prober-qb (which bypasses it too) trafgen's.
const AIMS: [(&str, &str, f64); 4] = [
    ("prober", "trafgen-q", 0.9),
    ("prober-qb", "trafgen", 0.9),
    ("prober", "masscan", 2.5),
    ("prober", "zmap-4.3.4", 1.5),
];
const PORTS_PER_HOST: u64 = 65_535;
/// The nftables counter of TCP SYNs (without ACK) arriving in the namespace: the probes.
const SYN_COUNTER: &str = "bench_syns";
/// Time bound of a sweep: this much, plus one second per BOUND_PPS probes it sends.
const BOUND_BASE_SECS: u64 = 10;
const BOUND_PPS: u64 = 20_000;
/// The same for a tool that never ends by itself where nothing answers (its bound is its end).
const HANG_BOUND_PPS: u64 = 100_000;
/// How long hping3 floods (it never ends by itself; its rate is the result).
const FLOOD_SECS: u64 = 3;
/// Between two runs: long enough for the namespace to finish with the last run's half-open
/// connections and for late replies to land outside the next run's counters.
const SETTLE: Duration = Duration::from_secs(1);

/// The namespace host every tool probes, and what the tools need to build frames for it.
pub struct Bed {
    pub host: TestHost,
    /// MAC of `host.host_if`, the source of every frame.
    pub host_mac: String,
    /// MAC of the namespace's veth end, the destination of every frame.
    pub ns_mac: String,
}

struct Scenario {
    title: String,
    /// For file names.
    slug: &'static str,
    /// All of one family.
    targets: Vec<IpAddr>,
    /// The probes' source: the host side's address on the targets' network.
    source: IpAddr,
    /// Whether every probe is answered (SYN-ACK or RST), or none is.
    answered: bool,
}

impl Scenario {
    /// A sweep of all ports of `targets` from `source`, titled by their count and range and
    /// `over`; every probe is answered.
    fn of(over: &str, slug: &'static str, targets: Vec<IpAddr>, source: IpAddr) -> Scenario {
        let title = match targets.as_slice() {
            [one] => format!("1 host{over} ({one}) x 65535 ports"),
            [first, .., last] => {
                format!(
                    "{} hosts{over} ({first} - {last}) x 65535 ports",
                    targets.len()
                )
            }
            [] => unreachable!("a sweep has targets"),
        };
        Scenario {
            title,
            slug,
            targets,
            source,
            answered: true,
        }
    }

    fn family(&self) -> Family {
        Family::of(self.targets[0])
    }

    /// Why `tool` does not run in this sweep, or None when it does: every tool runs that has
    /// the targets' family, except a flood that only ever floods one target and, where nothing
    /// answers, a tool that then only retransmits.
    fn not_run(&self, tool: &Tool) -> Option<String> {
        let reason = match self.family() {
            Family::V6 => tool.no_ipv6.map(|why| format!("no IPv6 ({why})")),
            Family::V4 => None,
        };
        reason
            .or_else(|| {
                (tool.floods_until_stopped && self.targets.len() > 1)
                    .then(|| "floods one target only".to_owned())
            })
            .or_else(|| match tool.unanswered {
                WhenUnanswered::Skipped(why) if !self.answered => Some(why.to_owned()),
                _ => None,
            })
    }
}

struct Row<'a> {
    tool: &'a Tool,
    /// Why the row has no numbers, or what went wrong.
    note: Option<String>,
    measured: Option<Measurement>,
    found: Option<Found>,
    /// prober's BPF programs on the veth, their runs and run time (or why not read).
    bpf: Option<Result<Vec<ProgramCost>, String>>,
}

/// A tool a benchmark can run: its name on the command line and what runs it.
trait BenchTool {
    fn name(&self) -> &'static str;
    fn program(&self) -> &Program;
}

impl BenchTool for Tool {
    fn name(&self) -> &'static str {
        self.name
    }
    fn program(&self) -> &Program {
        &self.program
    }
}

/// What every benchmark starts with: the tools picked, installed and (prober) built, their
/// versions printed, Ctrl-C caught, and an empty work directory for their outputs.
struct Setup<'a, T> {
    tools: Vec<&'a T>,
    /// The release build of prober (or `$PROBER_BIN`), or why there is none (its rows fail, not
    /// the peers').
    prober: Result<PathBuf>,
    workdir: PathBuf,
    /// Held for the benchmark's duration: a bed whose veth is gone means "no route".
    _safety_net: SafetyNet,
}

impl<'a, T: BenchTool> Setup<'a, T> {
    /// `only`: the tools named there, or all when it is empty.
    fn new(bench: &str, all: &'a [T], only: &[String]) -> Result<Setup<'a, T>> {
        env::require_root(&format!("cargo xtask bench {bench}"))?;
        if let Some(unknown) = only
            .iter()
            .find(|name| !all.iter().any(|tool| tool.name() == name.as_str()))
        {
            let known: Vec<&str> = all.iter().map(|tool| tool.name()).collect();
            bail!(
                "unknown tool {unknown:?}; the tools are {}",
                known.join(", ")
            );
        }
        let tools: Vec<&T> = all
            .iter()
            .filter(|tool| only.is_empty() || only.iter().any(|name| name == tool.name()))
            .collect();
        bootstrap::run()?;
        Program::install_missing_peers(tools.iter().map(|tool| tool.program()))?;
        let prober = if tools
            .iter()
            .any(|tool| matches!(tool.program(), Program::Prober))
        {
            env::prebuilt_prober()
                .unwrap_or_else(|| env::build_prober(true).and_then(|()| env::prober_bin(true)))
        } else {
            Err(anyhow!("not selected"))
        };
        println!("versions:");
        for tool in &tools {
            println!("  {:8} {}", tool.name(), tool.program().version(&prober));
        }
        env::catch_sigint()?;
        let workdir = env::target_dir()?.join(format!("bench-{bench}"));
        // Only this task writes there: each run starts from an empty directory.
        let _ = std::fs::remove_dir_all(&workdir);
        std::fs::create_dir_all(&workdir)
            .with_context(|| format!("creating {}", workdir.display()))?;
        Ok(Setup {
            tools,
            prober,
            workdir,
            _safety_net: SafetyNet::install()?,
        })
    }
}

/// Runs the sweep benchmark with `only` the tools named there, or all when it is empty, in
/// the sweeps `only_scenarios` names (all when empty), each tool `rounds` times per sweep.
/// `bpf_stats`: also time prober's BPF programs (kernel.bpf_stats). Off by default: the clock
/// reads it adds to every program run would slow prober's rows, and only prober's.
pub fn sweep(
    only: &[String],
    only_scenarios: &[String],
    rounds: u32,
    bpf_stats: bool,
) -> Result<()> {
    let Setup {
        tools,
        prober,
        workdir,
        _safety_net,
    } = Setup::new("sweep", TOOLS, only)?;

    // Dropped on every way out of this function, which removes the namespace and its routes.
    let mut bed = Bed::new()?;
    let many = bed
        .host
        .add_routed_addresses(MANY_HOSTS)
        .context("adding the many-hosts targets")?;
    let many6 = bed
        .host
        .add_routed_addresses6(MANY_HOSTS)
        .context("adding the many-hosts IPv6 targets")?;
    let on_link = bed
        .host
        .add_on_link(Family::V4, ON_LINK_HOSTS, 0, ON_LINK_PREFIX)
        .context("adding the directly connected targets")?;
    let unanswered = bed
        .host
        .add_routed_addresses(UNANSWERED_HOSTS)
        .context("adding the unanswered targets")?;
    bed.drop_everything_to(&unanswered)
        .context("dropping everything sent to the unanswered targets")?;
    let (ns, host_if) = (bed.host.ns.clone(), bed.host.host_if.clone());
    let (source, source6) = (bed.host.host_addr.into(), bed.host.host_addr6.into());
    let scenarios = [
        Scenario::of("", "one", vec![bed.host.addr.into()], source),
        Scenario::of("", "many", ip_addrs(many), source),
        Scenario::of(
            &format!(" on-link in a /{ON_LINK_PREFIX}, no gateway"),
            "on-link",
            on_link.live,
            on_link.source,
        ),
        Scenario {
            answered: false,
            ..Scenario::of(
                " that drop every probe",
                "unanswered",
                ip_addrs(unanswered),
                source,
            )
        },
        Scenario::of(" over IPv6", "one6", vec![bed.host.addr6.into()], source6),
        Scenario::of(" over IPv6", "many6", ip_addrs(many6), source6),
    ];
    if let Some(unknown) = only_scenarios.iter().find(|name| {
        !scenarios
            .iter()
            .any(|scenario| scenario.slug == name.as_str())
    }) {
        let known: Vec<&str> = scenarios.iter().map(|scenario| scenario.slug).collect();
        bail!(
            "unknown sweep {unknown:?}; the sweeps are {}",
            known.join(", ")
        );
    }
    println!(
        "\nbed: namespace {ns}, host side {host_if} {} {} ({}), namespace side {} {} ({}); open on every address: {}",
        bed.host.host_addr,
        bed.host.host_addr6,
        bed.host_mac,
        bed.host.addr,
        bed.host.addr6,
        bed.ns_mac,
        port_list(),
    );
    println!("tool outputs: {}", workdir.display());

    let mut report = String::new();
    // prober's send rate and peak RSS in each sweep that ran it without a note.
    let mut prober_runs: Vec<(&str, f64, u64)> = Vec::new();
    let chosen = scenarios.iter().filter(|scenario| {
        only_scenarios.is_empty() || only_scenarios.iter().any(|s| s == scenario.slug)
    });
    for scenario in chosen {
        println!("\n== {} ==", scenario.title);
        check_routes(&scenario.targets, &host_if)?;
        let runs: Vec<&Tool> = tools
            .iter()
            .copied()
            .filter(|tool| scenario.not_run(tool).is_none())
            .collect();
        let mut by_tool: Vec<Vec<Row>> = runs.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds as usize {
            // Each round starts one tool later, so no tool always runs right after another.
            for turn in 0..runs.len() {
                let index = (turn + round) % runs.len();
                let row = run_tool(
                    &bed,
                    runs[index],
                    scenario,
                    round,
                    &workdir,
                    &prober,
                    bpf_stats,
                );
                by_tool[index].push(row);
            }
        }
        let spreads: Vec<String> = by_tool
            .iter()
            .filter(|_| rounds > 1)
            .filter_map(|rows| Some(format!("{} {}", rows.first()?.tool.name, spread(rows))))
            .collect();
        let rows: Vec<Row> = by_tool.into_iter().filter_map(median_run).collect();
        let skipped = tools
            .iter()
            .filter_map(|tool| Some(format!("{}: {}", tool.name, scenario.not_run(tool)?)));
        if !spreads.is_empty() {
            let _ = writeln!(
                report,
                "\n(each row: the median of {rounds} runs by send pps; send kpps of every run: {})",
                spreads.join("; ")
            );
        }
        if let Some(m) = write_table(&mut report, scenario, &rows, skipped) {
            prober_runs.push((scenario.slug, m.send_pps, m.outcome.max_rss_kib));
        }
        if env::interrupted() {
            break;
        }
    }
    // The many-hosts sweeps send for seconds rather than a quarter of one: their ratio is
    // the steadier.
    for (sweep, v4, v6) in [
        ("1 host".to_owned(), "one", "one6"),
        (format!("{MANY_HOSTS} hosts"), "many", "many6"),
    ] {
        let pps = |slug: &str| prober_runs.iter().find(|r| r.0 == slug).map(|r| r.1);
        if let (Some(v4), Some(v6)) = (pps(v4), pps(v6)) {
            let _ = writeln!(
                report,
                "\nprober, {sweep} x 65535 ports: IPv6 {v6:.0} pps / IPv4 {v4:.0} pps = {:.2} \
                 (aim: at least 0.9)",
                v6 / v4
            );
        }
    }
    let rss: Vec<String> = prober_runs
        .iter()
        .map(|(slug, _, kib)| format!("{slug} {:.1}", *kib as f64 / 1024.0))
        .collect();
    let _ = writeln!(
        report,
        "prober peak RSS per sweep, MiB: {} (aim: flat in the sweep's size)",
        rss.join(", ")
    );
    drop(bed);
    println!("{report}");
    print_legend();
    check_cleanup(&ns, &host_if)?;
    if env::interrupted() {
        bail!("interrupted (the bed is removed)");
    }
    Ok(())
}

/// A tool's runs' send rates, in kpps, in the order they ran.
fn spread(rows: &[Row]) -> String {
    let rates: Vec<String> = rows
        .iter()
        .map(|row| match &row.measured {
            Some(m) => format!("{:.0}", m.send_pps / 1000.0),
            None => "-".to_owned(),
        })
        .collect();
    rates.join(" ")
}

/// The run of a tool whose send rate is the median of its runs (a run that measured nothing
/// counts as the slowest); None if it has none.
fn median_run(mut rows: Vec<Row>) -> Option<Row> {
    let pps = |row: &Row| row.measured.as_ref().map_or(-1.0, |m| m.send_pps);
    rows.sort_by(|a, b| pps(a).total_cmp(&pps(b)));
    let middle = rows.len() / 2;
    rows.into_iter().nth(middle)
}

fn ip_addrs<A: Into<IpAddr>>(addrs: Vec<A>) -> Vec<IpAddr> {
    addrs.into_iter().map(Into::into).collect()
}

/// Every target's route leaves by the bed's veth (`ip route get`): nothing a tool sends to
/// them can take another way out.
fn check_routes(targets: &[IpAddr], host_if: &str) -> Result<()> {
    for target in targets {
        let json =
            env::output(Command::new("ip").args(["-j", "route", "get", &target.to_string()]))?;
        let routes: serde_json::Value =
            serde_json::from_str(&json).context("parsing `ip -j route get`")?;
        let dev = routes[0]["dev"].as_str();
        if dev != Some(host_if) {
            bail!("{target} is routed via {dev:?}, not the bench's veth {host_if}: not probing it");
        }
    }
    Ok(())
}

impl Bed {
    fn new() -> Result<Bed> {
        let mut host = TestHost::new().context("creating the bench host")?;
        for port in OPEN_PORTS {
            host.listen_tcp(port)
                .with_context(|| format!("listening on TCP port {port} in the bench host"))?;
        }
        host.add_counter(SYN_COUNTER, "tcp flags & (syn | ack) == syn")
            .context("counting SYNs in the bench host")?;
        let host_mac = read_trimmed(&sys_net(&host.host_if, "address"))?;
        let ns_mac = ns_link(&host)?["address"]
            .as_str()
            .context("no address in `ip -j link show` of the namespace's veth")?
            .to_owned();
        Ok(Bed {
            host,
            host_mac,
            ns_mac,
        })
    }

    /// Drops everything sent to `targets` (a routed block, in order) in the namespace, after the
    /// SYN counter has counted it: a block of hosts that answer nothing.
    fn drop_everything_to(&self, targets: &[Ipv4Addr]) -> Result<()> {
        let (Some(first), Some(last)) = (targets.first(), targets.last()) else {
            return Ok(());
        };
        let chain = "{ type filter hook input priority 10; policy accept; }";
        let range = format!("{first}-{last}");
        for command in [
            vec!["add", "table", "inet", DROP_TABLE],
            vec!["add", "chain", "inet", DROP_TABLE, "input", chain],
            vec![
                "add", "rule", "inet", DROP_TABLE, "input", "ip", "daddr", &range, "drop",
            ],
        ] {
            env::run(self.host.command_in_ns("nft").args(command))?;
        }
        Ok(())
    }

    /// tx_packets and tx_dropped of the host's veth end.
    pub fn host_tx_frames(&self) -> Result<(u64, u64)> {
        let read = |name: &str| -> Result<u64> {
            let path = sys_net(&self.host.host_if, &format!("statistics/{name}"));
            read_trimmed(&path)?
                .parse()
                .with_context(|| format!("parsing {}", path.display()))
        };
        Ok((read("tx_packets")?, read("tx_dropped")?))
    }

    /// Packets the namespace's veth end transmitted (toward the host).
    pub fn ns_tx_packets(&self) -> Result<u64> {
        ns_link(&self.host)?["stats64"]["tx"]["packets"]
            .as_u64()
            .context("no stats64.tx.packets in `ip -j -s link show` of the namespace's veth")
    }

    /// SYNs that arrived in the namespace so far.
    pub fn syn_count(&self) -> Result<u64> {
        self.host.counter_packets(SYN_COUNTER)
    }
}

/// `ip -n <ns> -j -s link show dev <peer_if>`, the one object in it.
fn ns_link(host: &TestHost) -> Result<serde_json::Value> {
    let json = env::output(Command::new("ip").args([
        "-n",
        &host.ns,
        "-j",
        "-s",
        "link",
        "show",
        "dev",
        &host.peer_if,
    ]))?;
    let mut links: serde_json::Value =
        serde_json::from_str(&json).context("parsing `ip -j link show`")?;
    Ok(links[0].take())
}

fn sys_net(interface: &str, file: &str) -> PathBuf {
    Path::new("/sys/class/net").join(interface).join(file)
}

fn read_trimmed(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned())
}

fn port_list() -> String {
    OPEN_PORTS.map(|p| p.to_string()).join(",")
}

/// Runs one tool on one scenario and reads its results; whatever fails becomes the row's note.
fn run_tool<'a>(
    bed: &Bed,
    tool: &'a Tool,
    scenario: &Scenario,
    round: usize,
    workdir: &Path,
    prober: &Result<PathBuf>,
    bpf_stats: bool,
) -> Row<'a> {
    let mut row = Row {
        tool,
        note: None,
        measured: None,
        found: None,
        bpf: None,
    };
    if env::interrupted() {
        row.note = Some("not run: interrupted".to_owned());
        return row;
    }
    // Without the dots of a version: the files' extensions replace what follows the last one.
    let round = match round {
        0 => String::new(),
        later => format!("-{}", later + 1),
    };
    let base = workdir.join(format!(
        "{}-{}{round}",
        scenario.slug,
        tool.name.replace('.', "_")
    ));
    let invocation = Invocation {
        bed,
        targets: &scenario.targets,
        source: scenario.source,
        output: base.with_extension("out"),
        workdir,
    };
    let prepared = tool
        .program
        .path(prober)
        .and_then(|program| Ok((program, (tool.args)(&invocation)?)));
    let (program, args) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            println!("{}: not run: {err:#}", tool.name);
            row.note = Some(format!("not run: {err:#}"));
            return row;
        }
    };
    println!("$ {} {}", program.display(), shell_words(&args));
    let probes = scenario.targets.len() as u64 * PORTS_PER_HOST;
    let hangs = !scenario.answered && matches!(tool.unanswered, WhenUnanswered::Hangs);
    let limit = if tool.floods_until_stopped {
        FLOOD_SECS
    } else if hangs {
        BOUND_BASE_SECS + probes / HANG_BOUND_PPS
    } else {
        BOUND_BASE_SECS + probes / BOUND_PPS
    };
    let mut bpf = (bpf_stats && matches!(tool.program, Program::Prober))
        .then(|| bpf_cost::Sampler::start(&bed.host.host_if).map_err(|err| format!("{err:#}")));
    let measured = measure::run(
        bed,
        &program,
        &args,
        Duration::from_secs(limit),
        &base.with_extension("stdout"),
        || {
            if let Some(Ok(sampler)) = &mut bpf {
                sampler.sample();
            }
        },
    );
    row.bpf = bpf.map(|sampler| sampler.map(bpf_cost::Sampler::finish));
    let measured = match measured {
        Ok(measured) => measured,
        Err(err) => {
            row.note = Some(format!("measuring failed: {err:#}"));
            return row;
        }
    };
    // A flood or a hang that only ends by the time bound has ended normally, as has a tool
    // that says nothing answered where nothing does.
    let stopped = (tool.floods_until_stopped || hangs) && measured.outcome.timed_out;
    let silence_said = match tool.unanswered {
        WhenUnanswered::Exits(status) => {
            !scenario.answered && measured.outcome.exit_status == Some(status)
        }
        _ => false,
    };
    if let Some(note) = measured
        .outcome
        .failure_note()
        .filter(|_| !stopped && !silence_said)
    {
        row.note = Some(note);
    } else {
        match tool
            .results
            .read(&invocation.output, &measured.outcome.stderr)
        {
            Ok(found) => row.found = Some(found),
            Err(err) => row.note = Some(format!("results unreadable: {err:#}")),
        }
    }
    println!(
        "{}: {} probes, {:.0} pps, {:.2} s{}",
        tool.name,
        measured.probes,
        measured.send_pps,
        measured.outcome.wall_secs,
        row.note
            .as_ref()
            .map(|n| format!("; {n}"))
            .unwrap_or_default()
    );
    row.measured = Some(measured);
    std::thread::sleep(SETTLE);
    row
}

/// `args` as one would type them: words with a space single-quoted (targets and paths have no
/// quotes of their own).
fn shell_words(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect();
    quoted.join(" ")
}

/// Expected (open pairs, answered pairs) of a tool's run in `scenario`.
fn expected(covers: Covers, scenario: &Scenario) -> Option<(usize, u64)> {
    let answering = if scenario.answered {
        scenario.targets.len()
    } else {
        0
    };
    match covers {
        Covers::AllPorts => Some((
            answering * OPEN_PORTS.len(),
            answering as u64 * PORTS_PER_HOST,
        )),
        Covers::SendRateOnly => None,
    }
}

fn open_cell(covers: Covers, scenario: &Scenario, found: &Found) -> String {
    let expected_pair = |(ip, port): &(IpAddr, u16)| {
        scenario.answered && scenario.targets.contains(ip) && OPEN_PORTS.contains(port)
    };
    let Some((open_expected, _)) = expected(covers, scenario) else {
        return "-".to_owned();
    };
    let right = found.open.iter().filter(|pair| expected_pair(pair)).count();
    let wrong = found.open.len() - right;
    if wrong == 0 {
        format!("{right}/{open_expected}")
    } else {
        format!("{right}/{open_expected} +{wrong}")
    }
}

/// Writes the scenario's table, then the notes: the rows' and `more_notes`. Returns prober's
/// measurement, when it ran without a note.
fn write_table<'a>(
    out: &mut String,
    scenario: &Scenario,
    rows: &'a [Row],
    more_notes: impl Iterator<Item = String>,
) -> Option<&'a Measurement> {
    let prober = rows
        .iter()
        .find(|row| matches!(row.tool.program, Program::Prober) && row.note.is_none())
        .and_then(|row| row.measured.as_ref());
    let _ = writeln!(out, "\n== {} ==", scenario.title);
    let _ = writeln!(
        out,
        "{:10} {:>9} {:>9} {:>7} {:>9} {:>7} {:>8} {:>7} {:>10} {:>9} {:>6} {:>7} {:>6} {:>6}",
        "tool",
        "probes",
        "frames",
        "send s",
        "send pps",
        "wall s",
        "open",
        "lost",
        "ns replies",
        "veth drop",
        "CPU s",
        "RSS MiB",
        "pps x",
        "time x"
    );
    let mut notes = Vec::new();
    for row in rows {
        let Some(m) = &row.measured else {
            let _ = writeln!(out, "{:10} (no run)", row.tool.name);
            notes.extend(row.note.as_ref().map(|n| format!("{}: {n}", row.tool.name)));
            continue;
        };
        let (open, lost) = match &row.found {
            Some(found) => (
                open_cell(row.tool.covers, scenario, found),
                match (expected(row.tool.covers, scenario), found.answered) {
                    (Some((_, want)), Some(got)) => (want as i64 - got as i64).to_string(),
                    _ => "-".to_owned(),
                },
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let pps_ratio = prober
            .filter(|_| m.send_pps > 0.0)
            .map(|p| format!("{:.2}", p.send_pps / m.send_pps));
        // Only a full sweep does the same work as prober's, so only there is time comparable.
        let time_ratio = prober
            .filter(|_| row.tool.covers == Covers::AllPorts && row.found.is_some())
            .map(|p| format!("{:.2}", m.outcome.wall_secs / p.outcome.wall_secs));
        let _ = writeln!(
            out,
            "{:10} {:>9} {:>9} {:>7.3} {:>9.0} {:>7.2} {:>8} {:>7} {:>10} {:>9} {:>6.2} {:>7.1} {:>6} {:>6}",
            row.tool.name,
            m.probes,
            m.frames,
            m.send_secs,
            m.send_pps,
            m.outcome.wall_secs,
            open,
            lost,
            m.ns_replies,
            m.veth_dropped,
            m.outcome.cpu_secs,
            m.outcome.max_rss_kib as f64 / 1024.0,
            pps_ratio.unwrap_or_else(|| "-".to_owned()),
            time_ratio.unwrap_or_else(|| "-".to_owned()),
        );
        notes.extend(row.note.as_ref().map(|n| format!("{}: {n}", row.tool.name)));
    }
    // A row with a note still sent what it sent (the note is under the table).
    let send_pps = |name: &str| {
        rows.iter()
            .find(|row| row.tool.name == name)
            .and_then(|row| row.measured.as_ref())
            .map(|measured| measured.send_pps)
            .filter(|pps| *pps > 0.0)
    };
    let ratios: Vec<String> = AIMS
        .iter()
        .filter_map(|(ours, theirs, aim)| {
            let ratio = send_pps(ours)? / send_pps(theirs)?;
            Some(format!("{ours}/{theirs} {ratio:.2} (aim {aim})"))
        })
        .collect();
    if !ratios.is_empty() {
        let _ = writeln!(out, "  send pps: {}", ratios.join(", "));
    }
    for row in rows {
        let line = match &row.bpf {
            None => continue,
            Some(Ok(programs)) if programs.is_empty() => "none seen on the veth".to_owned(),
            Some(Ok(programs)) => programs
                .iter()
                .map(ProgramCost::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            Some(Err(err)) => format!("not measured: {err}"),
        };
        let _ = writeln!(out, "  {} BPF: {line}", row.tool.name);
    }
    for note in notes.into_iter().chain(more_notes) {
        let _ = writeln!(out, "  note: {note}");
    }
    prober
}

fn print_legend() {
    println!(
        "\
columns:
  probes      TCP SYNs (no ACK) that reached the namespace (an nftables counter in it) + veth drop
  frames      host veth tx_packets + tx_dropped, delta over the run: the probes, plus one RST
              from the host kernel per SYN-ACK for tools that leave SYN-ACKs to it (zmap; hping3
              floods open port {SINGLE_PORT}: about 2 frames per probe), plus ARP
  send s      sending time: first to last {ms} ms sample of the frames counter that rose by at
              least 1% of the busiest sample's rise
  send pps    probes / send s
  wall s      spawn to exit: the time to the tool's full result, its own final wait included
  open        expected (host, port) pairs found open / expected (ports {ports} on every target
              that answers); +N: pairs reported open that are not
  lost        answers expected (every probed pair answers, open or closed; none where every
              probe is dropped) - distinct answers the tool reported; '-' where the tool
              reports open ports only
  ns replies  packets the namespace's veth end sent: its SYN-ACKs and RSTs
  veth drop   of frames, dropped by the veth: the namespace's backlog was full
  CPU s       user + system CPU time of the tool (wait4's rusage), not the kernel's packet work
  RSS MiB     peak resident set of the tool: its VmHWM, read every {ms} ms (not wait4's
              ru_maxrss, which starts from xtask's own)
  prober-qb   prober with --qdisc-bypass (PACKET_QDISC_BYPASS): no TC egress stamps, send
              times taken by its send threads
  prober-gx   prober with --xdp-mode generic: replies matched in generic XDP, not at TCX ingress
  trafgen     the same SYN frames from a TX ring, bypassing the qdisc (trafgen's default);
              trafgen-q the same through the qdisc (--qdisc-path), as prober's default goes
  pps x       prober's send pps / the tool's      time x  the tool's wall time / prober's (full sweeps)
under each table: send pps ratios with issue 11's aims: prober over trafgen-q and prober-qb
  over trafgen (each against the packet path it takes), prober over masscan and zmap;
  with --bpf-stats, per BPF program of prober's on the veth (XDP or TCX ingress: every frame
  arriving, the replies; TC egress: every frame leaving, the probes), its runs and mean run time
  (kernel.bpf_stats, on only while prober runs; the clock reads it adds slow prober's rows)
on-link: hosts of a directly connected network, no gateway (each needs its own neighbour entry;
  here they share the namespace veth's MAC, to which trafgen sends); unanswered: the namespace
  drops everything to those hosts after counting the SYNs, and every probe is filtered
IPv6: the same hosts and ports over IPv6 (SYNs of 60 bytes of headers rather than 40), with
  the tools that have IPv6 (the others are noted under the table); the last lines compare
  prober's send rate over IPv6 with its own over IPv4 in the sweeps of the same run",
        ms = measure::SAMPLE_EVERY.as_millis(),
        ports = port_list(),
    );
}

/// After the bed is dropped: nothing of it is left in `ip netns list` or `bpftool net`.
pub fn check_cleanup(ns: &str, host_if: &str) -> Result<()> {
    let netns = env::output(Command::new("ip").args(["netns", "list"]))?;
    let xdp = env::output(Command::new("bpftool").args(["net", "show"]))?;
    let left: Vec<&str> = [(netns.contains(ns), ns), (xdp.contains(host_if), host_if)]
        .into_iter()
        .filter_map(|(left, name)| left.then_some(name))
        .collect();
    if !left.is_empty() {
        bail!("left behind after the bed was removed: {}", left.join(", "));
    }
    println!("cleanup: namespace {ns} and veth {host_if} are gone (ip netns list, bpftool net)");
    Ok(())
}
