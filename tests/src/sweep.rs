//! Parsing and checking prober's sweep-mode output (the contract: the README's section on sweeps): results as
//! JSON lines, CSV or list lines, the hping3 `--scan` table, and the statistic footer.
//!
//! Every parser is strict: a line that is not exactly what the contract describes is an error that
//! names the line, so a test fails on malformed output instead of skipping it.

use crate::prober_command;
use crate::proc::{self, Finished};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The keys of a JSON result and the columns of a CSV row, in their order.
pub const FIELDS: [&str; 12] = [
    "ip",
    "port",
    "proto",
    "status",
    "reason",
    "ttl",
    "ipid",
    "win",
    "rtt_us",
    "rtt_ns",
    "ts",
    "icmp_from",
];

/// What a sweep found out about one (host, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Answered SYN-ACK.
    Open,
    /// Answered RST.
    Closed,
    /// No answer.
    Filtered,
    /// No answer where an open port gives none either (FIN and Xmas scans: `timeout`; UDP:
    /// `no-response`).
    OpenFiltered,
    /// Answered RST to an ACK: open or closed, but not filtered.
    Unfiltered,
    /// The whole host (port null, kept as 0): it answered an echo request (`echo-reply`).
    Up,
    /// Answered by an ICMP error about the probe (from the target or a router on the way).
    IcmpFiltered(IcmpReason),
    /// No answer seen, but replies were lost on the way to the output (a full ring buffer), so
    /// it may have answered.
    Unknown,
    /// Not probed: the kernel refused the probe, or prober did not send it.
    Refused(Refusal),
    /// The whole host (port null, kept as 0): it answered no ARP (`no-arp-response`) or
    /// neighbour solicitation (`no-nd-response`), or no echo request (`timeout`).
    Down,
    /// UDP: closed, by the target's ICMP port unreachable (`port-unreach`), whose sender is
    /// `icmp_from` and whose header fields are shown.
    PortUnreachable,
}

/// What an ICMP error said (the `reason` of a `filtered` result that has a reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IcmpReason {
    /// A filter's: communication administratively prohibited.
    AdminProhibited,
    /// Network, host, protocol or port unreachable.
    Unreachable,
    /// The TTL or hop limit ran out on the way.
    TtlExceeded,
}

/// Why a probe was refused (the `reason` of a `refused` result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// A broadcast address (EACCES, or prober's own look at the local routing table).
    Broadcast,
    /// A firewall's output chain (EPERM).
    Firewall,
    /// No route (ENETUNREACH, EHOSTUNREACH).
    NoRoute,
    /// This host's own address, in a sweep of others.
    OwnAddress,
}

impl Status {
    /// A result's status and reason; a UDP sweep's (`proto` `udp`) are nmap -sU's.
    fn parse(proto: &str, status: &str, reason: &str) -> Result<Status, String> {
        use IcmpReason::*;
        match (proto, status, reason) {
            ("udp", "open", "udp-response") => return Ok(Status::Open),
            ("udp", "closed", "port-unreach") => return Ok(Status::PortUnreachable),
            ("udp", "open|filtered", "no-response") => return Ok(Status::OpenFiltered),
            ("udp", "filtered", "admin-prohibited" | "icmp-unreach" | "ttl-exceeded") => {}
            ("udp", _, _) => {
                return Err(format!(
                    "UDP status/reason {status:?}/{reason:?} is none of open/udp-response, \
                     closed/port-unreach, open|filtered/no-response, filtered/(admin-prohibited, \
                     icmp-unreach, ttl-exceeded)"
                ))
            }
            _ => {}
        }
        match (status, reason) {
            ("open", "syn-ack") => Ok(Status::Open),
            ("closed", "rst") => Ok(Status::Closed),
            ("filtered", "timeout") => Ok(Status::Filtered),
            ("open|filtered", "timeout") => Ok(Status::OpenFiltered),
            ("unfiltered", "rst") => Ok(Status::Unfiltered),
            ("up", "echo-reply") => Ok(Status::Up),
            ("down", "timeout") => Ok(Status::Down),
            // An echo sweep's host that an ICMP error answered.
            ("down", "admin-prohibited" | "icmp-unreach" | "ttl-exceeded") => Ok(Status::Down),
            ("filtered", "admin-prohibited") => Ok(Status::IcmpFiltered(AdminProhibited)),
            ("filtered", "icmp-unreach") => Ok(Status::IcmpFiltered(Unreachable)),
            ("filtered", "ttl-exceeded") => Ok(Status::IcmpFiltered(TtlExceeded)),
            ("unknown", "reply-lost") => Ok(Status::Unknown),
            ("refused", "broadcast") => Ok(Status::Refused(Refusal::Broadcast)),
            ("refused", "firewall") => Ok(Status::Refused(Refusal::Firewall)),
            ("refused", "no-route") => Ok(Status::Refused(Refusal::NoRoute)),
            ("refused", "own-address") => Ok(Status::Refused(Refusal::OwnAddress)),
            ("down", "no-arp-response" | "no-nd-response") => Ok(Status::Down),
            _ => Err(format!(
                "status/reason {status:?}/{reason:?} is none of open/syn-ack, closed/rst, \
                 filtered/(timeout, admin-prohibited, icmp-unreach, ttl-exceeded), \
                 open|filtered/timeout, unfiltered/rst, up/echo-reply, \
                 unknown/reply-lost, refused/(broadcast, firewall, no-route, \
                 own-address), down/(no-arp-response, no-nd-response, timeout)"
            )),
        }
    }
}

/// One result (a JSON line or a CSV row).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepResult {
    pub ip: IpAddr,
    /// 0 for a result about the host as a whole (`port` null: refused broadcast or own
    /// addresses).
    pub port: u16,
    pub status: Status,
    pub ttl: Option<u8>,
    /// The reply's IP id (`null` over IPv6, which has none).
    pub ipid: Option<u16>,
    pub win: Option<u16>,
    pub rtt_us: Option<u64>,
    /// The same RTT to the nanosecond (`rtt_us` is it truncated to microseconds).
    pub rtt_ns: Option<u64>,
    /// Unix time, seconds.
    pub ts: f64,
    /// Who sent the ICMP error of an [`Status::IcmpFiltered`] result (`null` for any other).
    pub icmp_from: Option<IpAddr>,
}

impl SweepResult {
    /// Everything but the timing (`rtt_us`, `ts`): what two runs against the same hosts agree on.
    pub fn key_fields(&self) -> (IpAddr, u16, Status, Option<u8>, Option<u16>, Option<u16>) {
        (
            self.ip,
            self.port,
            self.status,
            self.ttl,
            self.ipid,
            self.win,
        )
    }
}

/// The status of every (host, port) a sweep reported.
pub type Outcome = BTreeMap<(IpAddr, u16), Status>;

/// Parses one JSON result line: an object with exactly the keys of [`FIELDS`] in that order, `ip` an
/// address in its canonical text (a dotted quad, or IPv6 as RFC 5952 writes it), `port` 1–65535,
/// or `null` for a refused host (broadcast or own address), `proto` `"tcp"`, a consistent status and reason, `ttl`, `win` (and over IPv4 `ipid`) integers in
/// range when answered and `null` when filtered (`ipid` always `null` over IPv6), `rtt_us` a non-negative
/// integer or `null` (always `null` when filtered), `ts` a number.
pub fn parse_json_line(line: &str) -> Result<SweepResult, String> {
    let members: Members =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object ({e}): {line:?}"))?;
    result_from_fields(members.0).map_err(|e| format!("{e}: {line:?}"))
}

/// Parses CSV output: the header `ip,port,…,ts` ([`FIELDS`]), then one row per result with the JSON
/// line's values, `null` ones empty.
pub fn parse_csv(text: &str) -> Result<Vec<SweepResult>, String> {
    let mut lines = text.lines();
    let header = FIELDS.join(",");
    if lines.next() != Some(header.as_str()) {
        return Err(format!(
            "CSV output does not start with the header {header:?}"
        ));
    }
    lines
        .map(|row| {
            let cells: Vec<&str> = row.split(',').collect();
            if cells.len() != FIELDS.len() {
                return Err(format!("CSV row without {} cells: {row:?}", FIELDS.len()));
            }
            let fields = FIELDS
                .iter()
                .zip(cells)
                .map(|(name, cell)| (name.to_string(), csv_value(cell)))
                .collect();
            result_from_fields(fields).map_err(|e| format!("{e}: {row:?}"))
        })
        .collect()
}

/// Parses a list line (masscan `-oL` style, open ports only): `open tcp <port> <ip> <unix time>`.
/// Returns the address, the port and the time.
pub fn parse_list_line(line: &str) -> Result<(IpAddr, u16, u64), String> {
    let bad = || format!("not `open tcp <port> <ip> <unix time>`: {line:?}");
    let fields = fill("open tcp {} {} {}", line).ok_or_else(bad)?;
    let port = fields[0].parse::<u16>().ok().filter(|&p| p != 0);
    let ip = canonical_address(fields[1]).ok();
    let ts = fields[2].parse::<u64>().ok();
    match (port, ip, ts) {
        (Some(port), Some(ip), Some(ts)) => Ok((ip, port, ts)),
        _ => Err(bad()),
    }
}

/// The results as an [`Outcome`]; an error names any (host, port) reported more than once.
pub fn outcome(results: &[SweepResult]) -> Result<Outcome, String> {
    let mut out = Outcome::new();
    for r in results {
        if let Some(earlier) = out.insert((r.ip, r.port), r.status) {
            return Err(format!(
                "{}:{} reported twice ({earlier:?}, then {:?})",
                r.ip, r.port, r.status
            ));
        }
    }
    Ok(out)
}

/// The outcome of JSON output: a line per result, each (host, port) once.
pub fn json_outcome(stdout: &str) -> Result<Outcome, String> {
    let results = stdout
        .lines()
        .map(parse_json_line)
        .collect::<Result<Vec<_>, _>>()?;
    outcome(&results)
}

/// The outcome expected of sweeping every port of `ports` on every host of `hosts`.
pub fn expected_outcome(
    hosts: &[IpAddr],
    ports: impl IntoIterator<Item = u16> + Clone,
    status: impl Fn(IpAddr, u16) -> Status,
) -> Outcome {
    hosts
        .iter()
        .flat_map(|&ip| ports.clone().into_iter().map(move |port| (ip, port)))
        .map(|(ip, port)| ((ip, port), status(ip, port)))
        .collect()
}

/// `None` if equal, else what differs (the first few of each kind).
pub fn outcome_diff(got: &Outcome, want: &Outcome) -> Option<String> {
    const SHOWN: usize = 20;
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(k)).collect();
    let wrong: Vec<_> = want
        .iter()
        .filter_map(|(k, w)| got.get(k).filter(|g| *g != w).map(|g| (k, g, w)))
        .collect();
    if missing.is_empty() && extra.is_empty() && wrong.is_empty() {
        return None;
    }
    let show = |v: Vec<String>| {
        let n = v.len();
        let mut s = v.into_iter().take(SHOWN).collect::<Vec<_>>().join(", ");
        if n > SHOWN {
            s.push_str(&format!(", … ({n} in all)"));
        }
        s
    };
    Some(format!(
        "{} missing: [{}]\n{} never asked for: [{}]\n{} with the wrong status: [{}]",
        missing.len(),
        show(missing.iter().map(|(ip, p)| format!("{ip}:{p}")).collect()),
        extra.len(),
        show(extra.iter().map(|(ip, p)| format!("{ip}:{p}")).collect()),
        wrong.len(),
        show(
            wrong
                .iter()
                .map(|((ip, p), g, w)| format!("{ip}:{p} {g:?} (want {w:?})"))
                .collect()
        ),
    ))
}

/// Checks what a Linux host answers, in every answered result: ttl 64; IP id 0 (DF set) over IPv4,
/// none over IPv6; window 64240 on a SYN-ACK over a 1500-byte-MTU veth (MSS 1460), 64800 over
/// IPv6 (MSS 1440), and 0 on a RST.
pub fn linux_peer_field_errors(results: &[SweepResult]) -> Vec<String> {
    results
        .iter()
        .filter_map(|r| {
            let (syn_ack_win, ipid) = match r.ip {
                IpAddr::V4(_) => (64240, Some(0)),
                IpAddr::V6(_) => (64800, None),
            };
            let win = match r.status {
                Status::Open => syn_ack_win,
                Status::Closed | Status::Unfiltered => 0,
                // An ICMP error's IP id is the kernel's own count, not a TCP reply's 0.
                Status::Filtered
                | Status::OpenFiltered
                | Status::Up
                | Status::IcmpFiltered(_)
                | Status::Unknown
                | Status::Refused(_)
                | Status::Down
                | Status::PortUnreachable => return None,
            };
            (r.ttl != Some(64) || r.ipid != ipid || r.win != Some(win)).then(|| {
                format!(
                    "{}:{} {:?}: ttl {:?} ipid {:?} win {:?}, want 64, {ipid:?}, {win}",
                    r.ip, r.port, r.status, r.ttl, r.ipid, r.win
                )
            })
        })
        .collect()
}

/// The sweep statistic footer (`--- prober sweep statistic ---` and the four lines after it).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepFooter {
    pub sent: u64,
    pub hosts: u64,
    pub ports: u64,
    /// Seconds spent sending, the send rate over them, and the whole run's seconds.
    pub secs: f64,
    pub pps: f64,
    pub total_secs: f64,
    /// The run was cut short (Ctrl-C, SIGTERM).
    pub interrupted: bool,
    pub open: u64,
    pub closed: u64,
    pub filtered: u64,
    /// Counted only when there are any (FIN and ACK scans, echo sweeps).
    pub open_filtered: u64,
    pub unfiltered: u64,
    pub up: u64,
    pub echo_down: u64,
    pub unknown: u64,
    pub duplicates: u64,
    pub matched: u64,
    pub unmatched: u64,
    pub malformed: u64,
    pub bounced: u64,
    pub ring_full: u64,
    pub tx_full: u64,
    pub refused: u64,
    pub tx_dropped: u64,
    pub rx_dropped: u64,
}

/// Finds the footer in `stderr`: a blank line, the title, then exactly the four lines of the
/// contract (`-V` and `--histogram` may add RTT lines after them).
pub fn parse_sweep_footer(stderr: &str) -> Result<SweepFooter, String> {
    const TITLE: &str = "--- prober sweep statistic ---";
    const TEMPLATES: [&str; 4] = [
        "{} probes sent to {} hosts x {} ports in {} s ({} pps), {} s in all",
        "{} open, {} closed, {} filtered, {} unknown, {} duplicate replies",
        "xdp: {} replies matched, {} unmatched or forged passed, {} malformed, {} RSTs bounced, {} lost to a full ring buffer",
        "tx: {} waits for a full TX ring, {} probes refused by the kernel; kernel drops: {} tx, {} rx",
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    let title = lines
        .iter()
        .rposition(|l| *l == TITLE)
        .ok_or_else(|| format!("no {TITLE:?} line on stderr"))?;
    if title == 0 || !lines[title - 1].is_empty() {
        return Err(format!("no blank line before {TITLE:?}"));
    }
    let body = &lines[title + 1..];
    if body.len() < TEMPLATES.len() {
        return Err(format!(
            "{} lines after {TITLE:?}, want at least {}: {body:?}",
            body.len(),
            TEMPLATES.len()
        ));
    }
    let (first, interrupted) = match body[0].strip_suffix(", interrupted") {
        Some(first) => (first, true),
        None => (body[0], false),
    };
    // A count of one is singular (`1 probe sent to 1 host x 1 port`); the template's are not.
    let first = [
        (" probe sent ", " probes sent "),
        (" host x ", " hosts x "),
        (" port in ", " ports in "),
    ]
    .iter()
    .fold(first.to_string(), |line, (one, many)| {
        line.replace(one, many)
    });
    // An echo sweep's hosts have no ports: as `x 0 ports`.
    let first = match first.contains(" hosts x ") {
        true => first,
        false => first
            .replace(" hosts in ", " hosts x 0 ports in ")
            .replace(" host in ", " hosts x 0 ports in "),
    };
    let first = first.as_str();
    // The counts only some kinds give stand between `filtered,` and `unknown` when not 0.
    let mut counts = body[1].to_string();
    let mut other = |word: &str| -> Result<u64, String> {
        let Some(end) = counts.find(&format!(" {word},")) else {
            return Ok(0);
        };
        let start = counts[..end].rfind(' ').unwrap_or(0);
        let count = counts[start + 1..end]
            .parse()
            .map_err(|_| format!("footer line {counts:?}: no count of {word}"))?;
        counts.replace_range(start..end + word.len() + 2, "");
        Ok(count)
    };
    let (open_filtered, unfiltered) = (other("open|filtered")?, other("unfiltered")?);
    let (up, echo_down) = (other("up")?, other("down")?);
    let counts = counts.as_str();
    let mut values = Vec::new();
    let lines = [&first, &counts].into_iter().chain(&body[2..]);
    for (line, template) in lines.zip(TEMPLATES) {
        let fields = fill(template, line)
            .ok_or_else(|| format!("footer line {line:?} is not {template:?}"))?;
        values.extend(fields);
    }
    let count = |i: usize| -> Result<u64, String> {
        values[i]
            .parse()
            .map_err(|_| format!("footer value {:?} is not a count", values[i]))
    };
    let decimal = |i: usize| -> Result<f64, String> {
        values[i]
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("footer value {:?} is not a non-negative number", values[i]))
    };
    Ok(SweepFooter {
        sent: count(0)?,
        hosts: count(1)?,
        ports: count(2)?,
        secs: decimal(3)?,
        pps: decimal(4)?,
        total_secs: decimal(5)?,
        interrupted,
        open: count(6)?,
        closed: count(7)?,
        filtered: count(8)?,
        open_filtered,
        unfiltered,
        up,
        echo_down,
        unknown: count(9)?,
        duplicates: count(10)?,
        matched: count(11)?,
        unmatched: count(12)?,
        malformed: count(13)?,
        bounced: count(14)?,
        ring_full: count(15)?,
        tx_full: count(16)?,
        refused: count(17)?,
        tx_dropped: count(18)?,
        rx_dropped: count(19)?,
    })
}

/// One row of the hping3 `--scan` table: `%5d %-11.11s: %s %3d %5d %5d %5d`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableRow {
    pub port: u16,
    pub service: String,
    /// Eight characters, F S R P A U X Y, `.` for a flag not set.
    pub flags: String,
    pub ttl: u8,
    pub id: u16,
    pub win: u16,
    pub len: u16,
}

impl TableRow {
    /// Parses a row; the line must be exactly what [`TableRow`]'s `Display` prints for it.
    pub fn parse(line: &str) -> Result<TableRow, String> {
        let bad = || format!("not a `%5d %-11.11s: %s %3d %5d %5d %5d` table row: {line:?}");
        let (port_and_name, rest) = line.split_once(": ").ok_or_else(bad)?;
        let port = port_and_name.get(..5).ok_or_else(bad)?.trim_start();
        let service = port_and_name.get(6..).ok_or_else(bad)?.trim_end();
        let rest: Vec<&str> = rest.split_whitespace().collect();
        let [flags, ttl, id, win, len] = rest[..] else {
            return Err(bad());
        };
        let row = TableRow {
            port: port.parse().map_err(|_| bad())?,
            service: service.to_string(),
            flags: flags.to_string(),
            ttl: ttl.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
            win: win.parse().map_err(|_| bad())?,
            len: len.parse().map_err(|_| bad())?,
        };
        if row.to_string() != line {
            return Err(format!("table row is not spaced as `{row}`: {line:?}"));
        }
        Ok(row)
    }
}

impl fmt::Display for TableRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:5} {:<11.11}: {} {:3} {:5} {:5} {:5}",
            self.port, self.service, self.flags, self.ttl, self.id, self.win, self.len
        )
    }
}

/// The table's first stderr lines, as hping3 prints them for `--scan <spec> <target>`.
pub fn table_preamble(target: &str, ip: IpAddr, spec: &str, ports: usize) -> Vec<String> {
    const BORDER: &str = "+----+-----------+---------+---+-----+-----+-----+";
    vec![
        format!("Scanning {target} ({ip}), port {spec}"),
        format!("{ports} ports to scan, use -V to see all the replies"),
        BORDER.to_string(),
        "|port| serv name |  flags  |ttl| id  | win | len |".to_string(),
        BORDER.to_string(),
    ]
}

/// A finished prober run with the wall-clock interval it ran in (result timestamps must lie in it).
pub struct Swept {
    pub run: Finished,
    pub started: SystemTime,
    pub ended: SystemTime,
}

/// Runs prober with `args` to completion (at most `timeout`).
pub fn sweep<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> Swept {
    let started = SystemTime::now();
    let run = proc::run(prober_command(args), timeout);
    Swept::new(run, started)
}

impl Swept {
    /// `run` has just finished; it was started at `started`.
    pub fn new(run: Finished, started: SystemTime) -> Swept {
        Swept {
            run,
            started,
            ended: SystemTime::now(),
        }
    }

    /// Panics with `msg` and the whole run.
    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n\nrun:\n{}", self.run)
    }

    /// stdout as JSON results; panics unless every line is a valid result stamped within the run.
    pub fn json(&self) -> Vec<SweepResult> {
        let results: Vec<SweepResult> = self
            .run
            .stdout_lines()
            .iter()
            .map(|l| parse_json_line(l).unwrap_or_else(|e| self.fail(&e)))
            .collect();
        self.check_times(&results);
        results
    }

    /// Panics unless every `ts` lies within the run (a second of slack for clock granularity) and
    /// no `rtt_us` is longer than the run.
    pub fn check_times(&self, results: &[SweepResult]) {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let (from, to) = (secs(self.started) - 1.0, secs(self.ended) + 1.0);
        let longest_rtt_us = self.run.elapsed.as_micros() as u64;
        for r in results {
            if r.ts < from || r.ts > to {
                self.fail(&format!(
                    "{}:{} has ts {} outside the run ({from} .. {to})",
                    r.ip, r.port, r.ts
                ));
            }
            if r.rtt_us.is_some_and(|rtt| rtt > longest_rtt_us) {
                self.fail(&format!(
                    "{}:{} has rtt_us {:?}, longer than the whole run",
                    r.ip, r.port, r.rtt_us
                ));
            }
        }
    }

    /// The footer; panics if stderr does not end in one.
    pub fn footer(&self) -> SweepFooter {
        parse_sweep_footer(&self.run.stderr).unwrap_or_else(|e| self.fail(&e))
    }

    /// Panics unless the results are exactly `want` (each (host, port) once, with its status), in
    /// the order of the contract (answers as they came, the filtered and unknown ones after
    /// them), the footer counts them alike, every reply delivered by the XDP program was counted
    /// once, every SYN-ACK was bounced, and the exit status says whether anything answered (3
    /// when any result is unknown).
    pub fn check_outcome(&self, results: &[SweepResult], want: &Outcome) -> SweepFooter {
        let got = outcome(results).unwrap_or_else(|e| self.fail(&e));
        if let Some(diff) = outcome_diff(&got, want) {
            self.fail(&format!(
                "the sweep's results differ from the expected set:\n{diff}"
            ));
        }
        let silent = |r: &&SweepResult| {
            matches!(
                r.status,
                Status::Filtered | Status::OpenFiltered | Status::Unknown | Status::Down
            )
        };
        let first_silent = results.iter().position(|r| silent(&r));
        if let Some(late) = first_silent.and_then(|i| results[i..].iter().find(|r| !silent(r))) {
            self.fail(&format!(
                "{}:{} ({:?}) written after a result without a reply; those come last",
                late.ip, late.port, late.status
            ));
        }
        let footer = self.footer();
        let count = |s: Status| want.values().filter(|&&v| v == s).count() as u64;
        let (open, closed, filtered, unknown) = (
            count(Status::Open),
            count(Status::Closed),
            count(Status::Filtered),
            count(Status::Unknown),
        );
        let (open_filtered, unfiltered) = (count(Status::OpenFiltered), count(Status::Unfiltered));
        let counted = (
            footer.open,
            footer.closed,
            footer.filtered,
            footer.open_filtered,
            footer.unfiltered,
            footer.unknown,
        );
        let wanted = (open, closed, filtered, open_filtered, unfiltered, unknown);
        if counted != wanted {
            self.fail(&format!(
                "footer counts (open, closed, filtered, open|filtered, unfiltered, unknown) \
                 {counted:?}; the results have {wanted:?}"
            ));
        }
        let answered = open + closed + unfiltered;
        if footer.matched != answered + footer.duplicates {
            self.fail(&format!(
                "footer: {} replies matched, want the {answered} answered ports plus {} duplicates",
                footer.matched, footer.duplicates
            ));
        }
        if footer.bounced < open {
            self.fail(&format!(
                "footer: {} RSTs bounced, fewer than the {open} SYN-ACKs",
                footer.bounced
            ));
        }
        let want_code = if unknown > 0 {
            3
        } else if answered > 0 {
            0
        } else {
            1
        };
        if self.run.code() != Some(want_code) {
            self.fail(&format!("exit status should be {want_code}"));
        }
        footer
    }

    /// [`Swept::check_outcome`] of JSON results from Linux hosts, every answered one with the
    /// fields [`linux_peer_field_errors`] wants, and a footer that counts `sent` probes to
    /// `hosts` hosts x `ports` ports.
    pub fn check_linux_json(
        &self,
        want: &Outcome,
        (sent, hosts, ports): (u64, u64, u64),
    ) -> SweepFooter {
        let results = self.json();
        let footer = self.check_outcome(&results, want);
        let wrong = linux_peer_field_errors(&results);
        if !wrong.is_empty() {
            self.fail(&format!("{wrong:#?}"));
        }
        if (footer.sent, footer.hosts, footer.ports) != (sent, hosts, ports) {
            self.fail(&format!(
                "footer: {} probes sent to {} hosts x {} ports, want {sent} to {hosts} x {ports}",
                footer.sent, footer.hosts, footer.ports
            ));
        }
        footer
    }
}

/// A JSON object's members in the order they were written (serde_json's own map sorts them).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A CSV cell as the JSON value it stands for: empty is `null`, a number is a number.
fn csv_value(cell: &str) -> Value {
    if cell.is_empty() {
        Value::Null
    } else if let Ok(n) = cell.parse::<u64>() {
        Value::from(n)
    } else if let Some(x) = cell.parse::<f64>().ok().filter(|x| x.is_finite()) {
        Value::from(x)
    } else {
        Value::from(cell)
    }
}

fn result_from_fields(fields: Vec<(String, Value)>) -> Result<SweepResult, String> {
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    if names != FIELDS {
        return Err(format!(
            "fields {names:?}, want exactly {FIELDS:?} in that order"
        ));
    }
    let v: Vec<&Value> = fields.iter().map(|(_, v)| v).collect();
    let text = |i: usize| {
        v[i].as_str()
            .ok_or_else(|| format!("{} is not a string", FIELDS[i]))
    };
    let ip = canonical_address(text(0)?)?;
    let proto = text(2)?;
    if !["tcp", "udp", "icmp"].contains(&proto) {
        return Err("proto is not \"tcp\", \"udp\" or \"icmp\"".into());
    }
    let status = Status::parse(proto, text(3)?, text(4)?)?;
    // An echo sweep's results are about hosts: up, down, or refused.
    let host_level = proto == "icmp"
        || matches!(
            status,
            Status::Down | Status::Refused(Refusal::Broadcast | Refusal::OwnAddress)
        );
    let port = match integer::<u16>(v[1], "port")? {
        None if host_level => 0,
        Some(port) if port != 0 && proto != "icmp" => port,
        _ => return Err("port is not 1-65535 (or null for a host down or refused)".into()),
    };
    let ttl = integer::<u8>(v[5], "ttl")?;
    let ipid = integer::<u16>(v[6], "ipid")?;
    let win = integer::<u16>(v[7], "win")?;
    let rtt_us = integer::<u64>(v[8], "rtt_us")?;
    let rtt_ns = integer::<u64>(v[9], "rtt_ns")?;
    if rtt_us != rtt_ns.map(|ns| ns / 1000) {
        return Err(format!(
            "rtt_us {rtt_us:?} is not rtt_ns {rtt_ns:?} in microseconds"
        ));
    }
    let ts = v[10].as_f64().ok_or("ts is not a number")?;
    let icmp_from = match v[11] {
        Value::Null => None,
        _ => Some(canonical_address(text(11)?)?),
    };
    let by_an_icmp_error = match status {
        Status::IcmpFiltered(_) | Status::PortUnreachable => true,
        // An echo sweep's host down for an error's reason rather than silence's.
        Status::Down => {
            proto == "icmp" && !["timeout", "no-arp-response", "no-nd-response"].contains(&text(4)?)
        }
        _ => false,
    };
    if icmp_from.is_some() != by_an_icmp_error {
        return Err(
            "icmp_from is an address exactly when an ICMP error filtered or (UDP) closed the port, or put a host down"
                .into(),
        );
    }
    // IPv6 has no IP id.
    let has_ipid = ip.is_ipv4();
    let header_fields = [ttl.is_some(), win.is_some()];
    // An ICMP error's own fields are not the port's: of it, only its sender is shown.
    match status {
        Status::Filtered
        | Status::OpenFiltered
        | Status::IcmpFiltered(_)
        | Status::Unknown
        | Status::Refused(_)
        | Status::Down
            if header_fields.contains(&true) || ipid.is_some() || rtt_us.is_some() =>
        {
            return Err(
                "a result without the port's answer must have null ttl, ipid, win and rtt_us"
                    .into(),
            )
        }
        // Only TCP has a window.
        Status::Open | Status::Closed | Status::PortUnreachable | Status::Unfiltered
            if header_fields != [true, proto == "tcp"] =>
        {
            return Err("an answered result must have ttl, and win if it is TCP's".into())
        }
        Status::Up if header_fields != [true, false] => {
            return Err("a host up must have its echo reply's ttl, and no win".into())
        }
        Status::Open
        | Status::Closed
        | Status::PortUnreachable
        | Status::Unfiltered
        | Status::Up
            if ipid.is_some() != has_ipid =>
        {
            return Err("an answered result must have an ipid over IPv4, and none over IPv6".into())
        }
        _ => {}
    }
    Ok(SweepResult {
        ip,
        port,
        status,
        ttl,
        ipid,
        win,
        rtt_us,
        rtt_ns,
        ts,
        icmp_from,
    })
}

/// An address written as Rust (and RFC 5952) writes it: a dotted quad, or IPv6 in lower case with
/// the longest run of zero groups shortened.
fn canonical_address(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address"))?;
    if ip.to_string() != text {
        return Err(format!("{text:?} is not in its canonical form {ip}"));
    }
    Ok(ip)
}

/// `null`, or an integer that fits `T`.
fn integer<T: TryFrom<u64>>(value: &Value, name: &str) -> Result<Option<T>, String> {
    if value.is_null() {
        return Ok(None);
    }
    value
        .as_u64()
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| format!("{name} is neither null nor an integer in range: {value}"))
}

/// Matches `line` against `template`, whose `{}` each stand for one non-empty run of text without
/// spaces; returns those runs in order.
fn fill<'a>(template: &str, line: &'a str) -> Option<Vec<&'a str>> {
    let mut literals = template.split("{}");
    let mut rest = line.strip_prefix(literals.next()?)?;
    let mut values = Vec::new();
    for literal in literals {
        let end = if literal.is_empty() {
            rest.len()
        } else {
            rest.find(literal)?
        };
        let value = &rest[..end];
        if value.is_empty() || value.contains(' ') {
            return None;
        }
        values.push(value);
        rest = &rest[end + literal.len()..];
    }
    rest.is_empty().then_some(values)
}

#[cfg(test)]
mod unit {
    use super::*;

    const OPEN: &str = r#"{"ip":"198.18.4.2","port":80,"proto":"tcp","status":"open","reason":"syn-ack","ttl":64,"ipid":0,"win":64240,"rtt_us":87,"rtt_ns":87654,"ts":1764010000.123456,"icmp_from":null}"#;
    const FILTERED: &str = r#"{"ip":"198.18.4.2","port":23,"proto":"tcp","status":"filtered","reason":"timeout","ttl":null,"ipid":null,"win":null,"rtt_us":null,"rtt_ns":null,"ts":1764010001.5,"icmp_from":null}"#;
    const ICMP_FILTERED: &str = r#"{"ip":"198.18.4.2","port":25,"proto":"tcp","status":"filtered","reason":"admin-prohibited","ttl":null,"ipid":null,"win":null,"rtt_us":null,"rtt_ns":null,"ts":1764010001.5,"icmp_from":"198.18.0.1"}"#;

    #[test]
    fn json_lines_parse_strictly() {
        let r = parse_json_line(OPEN).unwrap();
        assert_eq!(
            (r.ip, r.port, r.status, r.ttl, r.ipid, r.win, r.rtt_us),
            (
                IpAddr::from([198, 18, 4, 2]),
                80,
                Status::Open,
                Some(64),
                Some(0),
                Some(64240),
                Some(87)
            )
        );
        assert_eq!(r.ts, 1764010000.123456);
        assert_eq!(parse_json_line(FILTERED).unwrap().status, Status::Filtered);
        let reordered = OPEN.replace(r#""port":80,"proto":"tcp""#, r#""proto":"tcp","port":80"#);
        assert!(parse_json_line(&reordered).is_err());
        for (from, to) in [
            (r#""reason":"syn-ack""#, r#""reason":"rst""#),
            (r#""port":80"#, r#""port":"80""#),
            (r#""port":80"#, r#""port":0"#),
            (r#""ttl":64"#, r#""ttl":null"#),
            (r#""ttl":64"#, r#""ttl":300"#),
            (r#""ts":1764010000.123456"#, r#""ts":"now""#),
            (r#""proto":"tcp""#, r#""proto":"udp""#),
        ] {
            assert!(parse_json_line(&OPEN.replace(from, to)).is_err(), "{to}");
        }
        assert!(parse_json_line(&FILTERED.replace(r#""rtt_us":null"#, r#""rtt_us":5"#)).is_err());
        assert!(parse_json_line(&OPEN.replace(r#""rtt_ns":87654"#, r#""rtt_ns":88000"#)).is_err());
        assert!(parse_json_line(&format!("{OPEN},")).is_err());
        let r = parse_json_line(ICMP_FILTERED).unwrap();
        assert_eq!(
            (r.status, r.icmp_from, r.ttl),
            (
                Status::IcmpFiltered(IcmpReason::AdminProhibited),
                Some(IpAddr::from([198, 18, 0, 1])),
                None
            )
        );
        // The error's own fields are not the port's.
        let error_ttl = ICMP_FILTERED.replace(r#""ttl":null"#, r#""ttl":64"#);
        assert!(parse_json_line(&error_ttl).is_err());
        // The sender is there exactly when an ICMP error filtered the port.
        let no_sender = ICMP_FILTERED.replace(r#""icmp_from":"198.18.0.1""#, r#""icmp_from":null"#);
        assert!(parse_json_line(&no_sender).is_err());
        let sender = OPEN.replace(r#""icmp_from":null"#, r#""icmp_from":"198.18.0.1""#);
        assert!(parse_json_line(&sender).is_err());

        let v6 = OPEN
            .replace("198.18.4.2", "2001:db8:100:400::2")
            .replace(r#""ipid":0"#, r#""ipid":null"#);
        let r = parse_json_line(&v6).unwrap();
        assert_eq!(
            (r.ip.to_string(), r.ipid),
            ("2001:db8:100:400::2".into(), None)
        );
        assert!(parse_json_line(&OPEN.replace(r#""ipid":0"#, r#""ipid":null"#)).is_err());
        assert!(parse_json_line(&v6.replace(r#""ipid":null"#, r#""ipid":0"#)).is_err());
        assert!(
            parse_json_line(&v6.replace("2001:db8:100:400::2", "2001:db8:100:400:0:0:0:2"))
                .is_err()
        );
    }

    #[test]
    fn csv_rows_match_json_lines() {
        let csv = "ip,port,proto,status,reason,ttl,ipid,win,rtt_us,rtt_ns,ts,icmp_from\n\
                   198.18.4.2,80,tcp,open,syn-ack,64,0,64240,87,87654,1764010000.123456,\n\
                   198.18.4.2,23,tcp,filtered,timeout,,,,,,1764010001.5,\n";
        let rows = parse_csv(csv).unwrap();
        assert_eq!(
            rows,
            vec![
                parse_json_line(OPEN).unwrap(),
                parse_json_line(FILTERED).unwrap()
            ]
        );
        assert!(parse_csv(&csv.replacen("ip,", "addr,", 1)).is_err());
        assert!(parse_csv(&csv.replace(",87,", ",,87,")).is_err());
    }

    #[test]
    fn list_lines_and_table_rows_parse() {
        assert_eq!(
            parse_list_line("open tcp 80 198.18.4.2 1764010000"),
            Ok((IpAddr::from([198, 18, 4, 2]), 80, 1764010000))
        );
        assert_eq!(
            parse_list_line("open tcp 80 2001:db8:102::ff 1764010000"),
            Ok(("2001:db8:102::ff".parse().unwrap(), 80, 1764010000))
        );
        assert!(parse_list_line("open tcp 80 2001:DB8:102::ff 1764010000").is_err());
        assert!(parse_list_line("open tcp 80 2001:db8:102:0:0:0:0:ff 1764010000").is_err());
        assert!(parse_list_line("open tcp 80 198.18.4.2 1764010000.5").is_err());
        assert!(parse_list_line("closed tcp 80 198.18.4.2 1764010000").is_err());
        let row = "   80 http       : .S..A...  64     0 64240    44";
        let parsed = TableRow::parse(row).unwrap();
        assert_eq!(
            (parsed.port, parsed.service.as_str(), parsed.win),
            (80, "http", 64240)
        );
        assert_eq!(
            TableRow::parse("   24            : ..R.A...  64     0     0    40")
                .unwrap()
                .service,
            ""
        );
        assert!(TableRow::parse("   80 http      : .S..A...  64     0 64240    44").is_err());
    }

    #[test]
    fn footer_parses() {
        let stderr = "something before\n\n--- prober sweep statistic ---\n\
            65535 probes sent to 1 host x 65535 ports in 1.31 s (50026 pps), 2.32 s in all, interrupted\n\
            5 open, 65529 closed, 1 filtered, 0 unknown, 0 duplicate replies\n\
            xdp: 65534 replies matched, 3 unmatched or forged passed, 2 malformed, 5 RSTs bounced, 0 lost to a full ring buffer\n\
            tx: 12 waits for a full TX ring, 0 probes refused by the kernel; kernel drops: 0 tx, 0 rx\n";
        let f = parse_sweep_footer(stderr).unwrap();
        assert_eq!(
            (f.sent, f.hosts, f.ports, f.pps, f.total_secs, f.interrupted),
            (65535, 1, 65535, 50026.0, 2.32, true)
        );
        assert_eq!(
            (
                f.open,
                f.closed,
                f.filtered,
                f.matched,
                f.unmatched,
                f.malformed,
                f.tx_full
            ),
            (5, 65529, 1, 65534, 3, 2, 12)
        );
        let with_rtt_lines = format!("{stderr}rtt percentiles: p50=0.087 p90=0.095 p99=0.110 max=0.120 ms, stddev=0.006 ms\n");
        assert_eq!(parse_sweep_footer(&with_rtt_lines), Ok(f));
        let cut_short = stderr.replacen("\ntx: ", "\n", 1);
        assert!(parse_sweep_footer(&cut_short).is_err());
        assert!(parse_sweep_footer(&stderr.replace("1 filtered", "one filtered")).is_err());
        assert!(parse_sweep_footer(&stderr.replace("\n\n", "\n")).is_err());
    }

    #[test]
    fn outcomes_report_duplicates_and_differences() {
        let a = IpAddr::from([198, 18, 4, 2]);
        let r = |port, status| SweepResult {
            ip: a,
            port,
            status,
            ttl: None,
            ipid: None,
            win: None,
            rtt_us: None,
            rtt_ns: None,
            ts: 0.0,
            icmp_from: None,
        };
        assert!(outcome(&[r(80, Status::Open), r(80, Status::Open)]).is_err());
        let want = expected_outcome(&[a], [80, 81], |_, p| {
            if p == 80 {
                Status::Open
            } else {
                Status::Closed
            }
        });
        let got = outcome(&[r(80, Status::Open), r(81, Status::Closed)]).unwrap();
        assert_eq!(outcome_diff(&got, &want), None);
        let got = outcome(&[r(80, Status::Closed), r(82, Status::Closed)]).unwrap();
        let diff = outcome_diff(&got, &want).unwrap();
        assert!(diff.contains("1 missing: [198.18.4.2:81]"), "{diff}");
        assert!(
            diff.contains("1 never asked for: [198.18.4.2:82]"),
            "{diff}"
        );
        assert!(diff.contains("198.18.4.2:80 Closed (want Open)"), "{diff}");
    }
}
