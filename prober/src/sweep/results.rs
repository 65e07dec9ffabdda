//! A sweep's results, one per (host, port), in the formats people and scripts read:
//! hping3's scan table, JSON lines, CSV, and masscan's list. They are written on the output
//! thread ([`crate::output`]), which owns the [`ResultWriter`].
use std::{io::Write, net::IpAddr};

use anyhow::{Context as _, Result};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::services::service_name;
use crate::{
    echo, monotonic_ns,
    output::Sink,
    probe::{ReplyFields, Status, TcpFlags, Verdict},
    realtime_offset_ns,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortResult {
    pub ip: IpAddr,
    /// None: a finding about the host as a whole.
    pub port: Option<u16>,
    /// The probe kind's transport (`tcp`).
    pub protocol: &'static str,
    pub finding: Finding,
    /// What the reply said; None when there was none.
    pub reply: Option<ReplyFields>,
}

impl PortResult {
    /// The reply fields JSON and CSV show: an open, closed or unfiltered port's answer; for
    /// any other result null, as documented, whatever came (an ICMP error's fields are not the
    /// port's).
    fn answer(&self) -> Option<ReplyFields> {
        match self.finding {
            Finding::Verdict(Verdict {
                status: Status::Open | Status::Closed | Status::Unfiltered | Status::Up,
                ..
            }) => self.reply,
            _ => None,
        }
    }

    /// The router (or host) whose ICMP error decided the result, if one did: the one field of
    /// an error that is the result's.
    fn icmp_from(&self) -> Option<IpAddr> {
        self.reply.and_then(|reply| reply.icmp_from)
    }
}

/// What a sweep reports about a (host, port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// What the probe kind makes of the reply, or of no reply after `--wait`.
    Verdict(Verdict),
    /// No reply was seen, but the kernel lost replies (its ring buffer was full) while one to
    /// this target's last probe could have come: it may well have answered.
    Unknown,
    /// Not probed, for the reason given: the kernel refused the probe (`broadcast`,
    /// `firewall`, `no-route`), or prober did not send it (`broadcast`, `own-address`).
    Refused(&'static str),
    /// The whole host (`port` means nothing): it answered no ARP request or neighbour
    /// solicitation, for this reason, and got no probes.
    Down(&'static str),
}

impl Finding {
    /// Status and reason, as every format words them.
    pub fn words(self) -> (&'static str, &'static str) {
        match self {
            Finding::Verdict(verdict) => (verdict.status.word(), verdict.reason),
            Finding::Unknown => ("unknown", "reply-lost"),
            Finding::Refused(reason) => ("refused", reason),
            Finding::Down(reason) => ("down", reason),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// hping3's scan table (one host)
    Table,
    /// One JSON object per line
    Json,
    /// Comma-separated values with a header line
    Csv,
    /// masscan's -oL lines, open ports only
    List,
}

/// One JSON line, keys in the documented order.
#[derive(Serialize)]
struct JsonLine {
    ip: IpAddr,
    port: Option<u16>,
    proto: &'static str,
    status: &'static str,
    reason: &'static str,
    ttl: Option<u8>,
    ipid: Option<u16>,
    win: Option<u16>,
    rtt_us: Option<u64>,
    rtt_ns: Option<u64>,
    #[serde(serialize_with = "microseconds")]
    ts: f64,
    icmp_from: Option<IpAddr>,
}

/// A JSON `ts` as CSV's: Unix seconds to the microsecond, always six decimals (serde_json
/// writes an f64 in its shortest form: 1796143803.621651 beside 1796143802.5956838).
pub fn microseconds<S: Serializer>(ts: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    RawValue::from_string(format!("{ts:.6}"))
        .map_err(serde::ser::Error::custom)?
        .serialize(serializer)
}

/// Which results a format writes, so that the reply side queues only those: a sweep's closed
/// ports are most of its replies, and most formats leave them out.
#[derive(Clone, Copy, Debug)]
pub struct Shown {
    format: Format,
    verbose: bool,
    /// `--open`: open ports only (nmap's).
    open_only: bool,
}

impl Shown {
    pub fn of(format: Format, verbose: bool) -> Shown {
        Shown {
            format,
            verbose,
            open_only: false,
        }
    }

    /// With `--open` (`open_only`): only open ports, in every format; the table's rows (its
    /// lists of the others stay hping3's).
    pub fn open_only(self, open_only: bool) -> Shown {
        Shown { open_only, ..self }
    }

    /// masscan's list: open ports, unknown ones as they might be open, and refused ones and
    /// hosts down, which nothing else would tell; the table: closed (and unfiltered) ports
    /// only under -V (hping3's rows of RSTs); JSON and CSV: everything. With `--open`, open
    /// ports only but for the table's lists.
    pub fn lists(self, finding: Finding) -> bool {
        let closed = matches!(
            finding,
            Finding::Verdict(Verdict {
                status: Status::Closed | Status::Unfiltered,
                ..
            })
        );
        // An echo sweep's hosts up are its open ports.
        let open = matches!(
            finding,
            Finding::Verdict(Verdict {
                status: Status::Open | Status::Up,
                ..
            })
        );
        if self.open_only {
            return open || (self.format == Format::Table && !closed);
        }
        match self.format {
            Format::List => {
                open || matches!(
                    finding,
                    Finding::Unknown | Finding::Refused(_) | Finding::Down(_)
                )
            }
            Format::Table => !closed || self.verbose,
            Format::Json | Format::Csv => true,
        }
    }
}

pub struct ResultWriter {
    format: Format,
    /// Table: closed ports get rows too (hping3's -V).
    verbose: bool,
    /// Which results it writes.
    shown: Shown,
    out: Box<dyn Write + Send>,
    /// Table with -V: the rows, written at the end in port order (hping3 probes the ports in
    /// order, so its rows come in order).
    rows: Vec<(u16, ReplyFields)>,
    /// Table: the filtered ports, listed at the end in port order as hping3 does.
    not_responding: Vec<u16>,
    /// Table: the unknown ones, listed after them.
    unknown: Vec<u16>,
    /// Table: the refused ones (or the host), with the reason, listed last.
    refused: Vec<String>,
    /// Table: the hosts that are down.
    down: Vec<IpAddr>,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, to date kernel timestamps.
    realtime_offset_ns: i128,
}

const CSV_HEADER: &str = "ip,port,proto,status,reason,ttl,ipid,win,rtt_us,rtt_ns,ts,icmp_from";
/// The list's first and last lines, comments as masscan's -oL writes them.
const LIST_HEADER: &str = "#masscan";
const LIST_END: &str = "# end";

impl ResultWriter {
    pub fn new(shown: Shown, mut out: Box<dyn Write + Send>) -> Result<ResultWriter> {
        let Shown {
            format, verbose, ..
        } = shown;
        let header = match format {
            Format::Csv => Some(CSV_HEADER),
            Format::List => Some(LIST_HEADER),
            Format::Table | Format::Json => None,
        };
        if let Some(header) = header {
            writeln!(out, "{header}").context("writing results")?;
        }
        Ok(ResultWriter {
            format,
            verbose,
            shown,
            out,
            rows: Vec::new(),
            not_responding: Vec::new(),
            unknown: Vec::new(),
            refused: Vec::new(),
            down: Vec::new(),
            realtime_offset_ns: realtime_offset_ns(),
        })
    }

    pub fn write(&mut self, result: &PortResult) -> Result<()> {
        if !self.lists(result.finding) {
            return Ok(());
        }
        let ts = self.unix_seconds(result.reply.map_or_else(monotonic_ns, |r| r.kernel_ns));
        let (status, reason) = result.finding.words();
        match self.format {
            Format::Table => self.write_table_row(result)?,
            Format::Json => {
                let reply = result.answer();
                let line = JsonLine {
                    ip: result.ip,
                    port: result.port,
                    proto: result.protocol,
                    status,
                    reason,
                    ttl: reply.map(|r| r.ttl),
                    ipid: reply.and_then(|r| r.ip_id),
                    win: reply.and_then(|r| r.window),
                    rtt_us: reply.and_then(|r| r.rtt_ns).map(|ns| ns / 1000),
                    rtt_ns: reply.and_then(|r| r.rtt_ns),
                    ts,
                    icmp_from: result.icmp_from(),
                };
                serde_json::to_writer(&mut self.out, &line).context("writing results")?;
                writeln!(self.out).context("writing results")?;
            }
            Format::Csv => {
                let field = |value: Option<u64>| value.map_or(String::new(), |v| v.to_string());
                let reply = result.answer();
                writeln!(
                    self.out,
                    "{},{},{},{},{},{},{},{},{},{},{ts:.6},{}",
                    result.ip,
                    field(result.port.map(u64::from)),
                    result.protocol,
                    status,
                    reason,
                    field(reply.map(|r| u64::from(r.ttl))),
                    field(reply.and_then(|r| r.ip_id).map(u64::from)),
                    field(reply.and_then(|r| r.window).map(u64::from)),
                    field(reply.and_then(|r| r.rtt_ns).map(|ns| ns / 1000)),
                    field(reply.and_then(|r| r.rtt_ns)),
                    result
                        .icmp_from()
                        .map_or(String::new(), |from| from.to_string()),
                )
                .context("writing results")?;
            }
            // A comment line, which masscan's readers skip.
            Format::List if status == "down" => {
                writeln!(self.out, "# host {} down ({reason})", result.ip)
                    .context("writing results")?
            }
            // Port 0 for the host as a whole, as masscan writes its ICMP findings.
            Format::List => writeln!(
                self.out,
                "{status} {} {} {} {}",
                result.protocol,
                result.port.unwrap_or(0),
                result.ip,
                ts as u64
            )
            .context("writing results")?,
        }
        Ok(())
    }

    fn write_table_row(&mut self, result: &PortResult) -> Result<()> {
        // One host, so a host-level finding is about it (refused: one of this host's).
        let Some(port) = result.port else {
            if let Finding::Refused(reason) = result.finding {
                self.refused.push(format!("(the host: {reason}) "));
            }
            return Ok(());
        };
        let status = match result.finding {
            Finding::Verdict(verdict) => verdict.status,
            Finding::Unknown => {
                self.unknown.push(port);
                return Ok(());
            }
            Finding::Refused(reason) => {
                self.refused
                    .push(format!("({port} {}: {reason}) ", service_name(port)));
                return Ok(());
            }
            Finding::Down(_) => {
                self.down.push(result.ip);
                return Ok(());
            }
        };
        match (status, result.reply) {
            (Status::Filtered | Status::OpenFiltered, _) => self.not_responding.push(port),
            (_, Some(reply)) if self.verbose => self.rows.push((port, reply)),
            (Status::Closed | Status::Unfiltered, _) => {}
            (_, Some(reply)) => self.write_row(port, &reply)?,
            (_, None) => {}
        }
        Ok(())
    }

    fn write_row(&mut self, port: u16, reply: &ReplyFields) -> Result<()> {
        writeln!(
            self.out,
            "{:5} {:<11.11}: {} {:3} {:5} {:5} {:5}",
            port,
            service_name(port),
            TcpFlags(reply.tcp_flags).dotted(),
            reply.ttl,
            // A numeric column, as hping3's: 0 for IPv6, which has no identification.
            reply.ip_id.unwrap_or(0),
            reply.window.unwrap_or(0),
            reply.ip_len,
        )
        .context("writing results")
    }

    /// Whether this format writes such results.
    pub fn lists(&self, finding: Finding) -> bool {
        self.shown.lists(finding)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().context("writing results")
    }

    /// Ends the output: the list's last line (masscan's `# end`); the table's -V rows, then, as hping3 ends it, `All replies received.
    /// Done.` on stderr (when the sweep ran its course, `waited`, and no reply can have been
    /// lost) and its list of ports that did not respond, always there after a sweep that
    /// waited, even empty; then prober's lists of those whose replies may have been lost, and
    /// of those refused.
    pub fn finish(&mut self, waited: bool) -> Result<()> {
        if self.format == Format::List {
            writeln!(self.out, "{LIST_END}").context("writing results")?;
        }
        if self.format == Format::Table {
            let mut rows = std::mem::take(&mut self.rows);
            rows.sort_unstable_by_key(|&(port, _)| port);
            for (port, reply) in &rows {
                self.write_row(*port, reply)?;
            }
            if waited && self.unknown.is_empty() {
                // Below the rows, above the list, as on hping3's terminal.
                self.flush()?;
                eprintln!("All replies received. Done.");
            }
            for (title, ports) in [
                ("Not responding ports", &mut self.not_responding),
                ("Unknown ports (replies lost)", &mut self.unknown),
            ] {
                let always = waited && title == "Not responding ports";
                if ports.is_empty() && !always {
                    continue;
                }
                ports.sort_unstable();
                let list: String = ports
                    .iter()
                    .map(|&port| format!("({port} {}) ", service_name(port)))
                    .collect();
                writeln!(self.out, "{title}: {list}").context("writing results")?;
            }
            if !self.refused.is_empty() {
                let list = self.refused.concat();
                writeln!(self.out, "Refused ports: {list}").context("writing results")?;
            }
            if !self.down.is_empty() {
                let hosts: Vec<String> = self.down.iter().map(IpAddr::to_string).collect();
                writeln!(
                    self.out,
                    "Hosts down (no ARP or neighbour answer): {}",
                    hosts.join(" ")
                )
                .context("writing results")?;
            }
        }
        self.flush()
    }

    fn unix_seconds(&self, monotonic: u64) -> f64 {
        (i128::from(monotonic) + self.realtime_offset_ns) as f64 / 1e9
    }
}

impl Sink for ResultWriter {
    type Item = PortResult;

    fn write(&mut self, result: PortResult) -> Result<()> {
        ResultWriter::write(self, &result)
    }

    fn flush(&mut self) -> Result<()> {
        ResultWriter::flush(self)
    }
}

/// hping3's scan header on stderr: what is scanned, how many ports, the table's head.
pub fn table_header(target_name: &str, ip: IpAddr, port_spec: &str, ports: u64) -> String {
    const BORDER: &str = "+----+-----------+---------+---+-----+-----+-----+";
    // A valid specification may still hold whitespace such as a carriage return.
    let port_spec = echo::line(port_spec);
    format!(
        "Scanning {target_name} ({ip}), port {port_spec}\n\
         {ports} ports to scan, use -V to see all the replies\n\
         {BORDER}\n|port| serv name |  flags  |ttl| id  | win | len |\n{BORDER}"
    )
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
        time::{SystemTime, UNIX_EPOCH},
    };

    use super::*;

    #[test]
    fn closed_ports_are_queued_only_for_formats_that_write_them() {
        let closed = Finding::Verdict(Verdict {
            status: Status::Closed,
            reason: "rst",
        });
        let open = Finding::Verdict(Verdict {
            status: Status::Open,
            reason: "syn-ack",
        });
        for (format, verbose, closed_shown) in [
            (Format::List, true, false),
            (Format::Table, false, false),
            (Format::Table, true, true),
            (Format::Json, false, true),
            (Format::Csv, false, true),
        ] {
            let shown = Shown::of(format, verbose);
            assert_eq!(shown.lists(closed), closed_shown, "{format:?} -V {verbose}");
            assert!(
                shown.lists(open) && shown.lists(Finding::Unknown),
                "{format:?}"
            );
        }
    }

    #[test]
    fn open_only_lists_open_ports_alone_but_for_the_tables_lists() {
        let [open, closed, filtered, unknown] = results().map(|result| result.finding);
        let refused = Finding::Refused("firewall");
        let down = Finding::Down("no-arp-response");
        for format in [Format::Json, Format::Csv, Format::List] {
            let shown = Shown::of(format, true).open_only(true);
            assert!(shown.lists(open), "{format:?}");
            for finding in [closed, filtered, unknown, refused, down] {
                assert!(!shown.lists(finding), "{format:?} {finding:?}");
            }
        }
        let table = Shown::of(Format::Table, true).open_only(true);
        assert!(!table.lists(closed), "no closed rows, -V or not");
        for finding in [open, filtered, unknown, refused] {
            assert!(table.lists(finding), "{finding:?}");
        }
    }

    /// A Write that the test can read back after the writer is done with it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn results() -> [PortResult; 4] {
        let reply = |flags, window, ip_len| ReplyFields {
            ttl: 64,
            ip_id: Some(0),
            window: Some(window),
            ip_len,
            tcp_flags: flags,
            rtt_ns: Some(87_654),
            kernel_ns: monotonic_ns(),
            icmp_from: None,
        };
        let ip = IpAddr::from([198, 18, 4, 2]);
        let verdict = |status, reason| Finding::Verdict(Verdict { status, reason });
        [
            PortResult {
                ip,
                port: Some(22),
                protocol: "tcp",
                finding: verdict(Status::Open, "syn-ack"),
                reply: Some(reply(0x12, 64240, 44)),
            },
            PortResult {
                ip,
                port: Some(81),
                protocol: "tcp",
                finding: verdict(Status::Closed, "rst"),
                reply: Some(reply(0x14, 0, 40)),
            },
            PortResult {
                ip,
                port: Some(23),
                protocol: "tcp",
                finding: verdict(Status::Filtered, "timeout"),
                reply: None,
            },
            PortResult {
                ip,
                port: Some(25),
                protocol: "tcp",
                finding: Finding::Unknown,
                reply: None,
            },
        ]
    }

    fn render(format: Format, verbose: bool) -> String {
        render_results(format, verbose, &results())
    }

    fn render_results(format: Format, verbose: bool, results: &[PortResult]) -> String {
        let out = Shared::default();
        let mut writer =
            ResultWriter::new(Shown::of(format, verbose), Box::new(out.clone())).unwrap();
        for result in results {
            writer.write(result).unwrap();
        }
        writer.finish(true).unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn table_rows_match_hping3() {
        let table = render(Format::Table, false);
        let lines: Vec<&str> = table.lines().collect();
        let ssh = if service_name(22).is_empty() {
            ""
        } else {
            "ssh"
        };
        assert_eq!(
            lines[0],
            format!("   22 {ssh:<11}: .S..A...  64     0 64240    44")
        );
        assert!(
            lines[1].starts_with("Not responding ports: (23 "),
            "{table}"
        );
        assert!(
            lines[2].starts_with("Unknown ports (replies lost): (25 "),
            "{table}"
        );
        assert_eq!(lines.len(), 3, "closed ports only with -V: {table}");
        let verbose = render(Format::Table, true);
        let lines: Vec<&str> = verbose.lines().collect();
        assert!(lines[0].starts_with("   22 "), "{verbose}");
        assert!(
            lines[1].starts_with("   81 ") && lines[1].contains(": ..R.A...  64     0     0    40"),
            "-V rows in port order: {verbose}"
        );
    }

    #[test]
    fn a_table_that_waited_always_ends_with_its_not_responding_list() {
        let [open, closed, ..] = results();
        let finished = |waited| {
            let out = Shared::default();
            let mut writer =
                ResultWriter::new(Shown::of(Format::Table, true), Box::new(out.clone())).unwrap();
            for result in [closed, open] {
                writer.write(&result).unwrap();
            }
            writer.finish(waited).unwrap();
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            text
        };
        let table = finished(true);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("   22 ") && lines[1].starts_with("   81 "));
        assert_eq!(lines[2], "Not responding ports: ", "hping3's, even empty");
        assert_eq!(
            finished(false).lines().count(),
            2,
            "an interrupted sweep's silent ports are unknown: no list"
        );
    }

    #[test]
    fn json_lines_carry_every_field() {
        let json = render(Format::Json, false);
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines[0]["status"], "open");
        assert_eq!(lines[0]["reason"], "syn-ack");
        assert_eq!(lines[0]["rtt_us"], 87);
        assert_eq!(lines[0]["rtt_ns"], 87_654);
        assert_eq!(lines[1]["reason"], "rst");
        assert_eq!(lines[2]["status"], "filtered");
        assert!(lines[2]["ttl"].is_null() && lines[2]["rtt_us"].is_null());
        assert!(lines[2]["rtt_ns"].is_null());
        assert_eq!(
            (&lines[3]["status"], &lines[3]["reason"]),
            (&"unknown".into(), &"reply-lost".into())
        );
        assert!(lines[3]["ttl"].is_null() && lines[3]["rtt_ns"].is_null());
        assert!(json.starts_with(r#"{"ip":"198.18.4.2","port":22,"proto":"tcp","status":"open""#));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((lines[0]["ts"].as_f64().unwrap() - now).abs() < 5.0);
    }

    #[test]
    fn json_times_have_six_decimals_as_csvs() {
        let [open, ..] = results();
        let now = monotonic_ns();
        // Microseconds apart: as f64 in its shortest form most would show 7 decimals, some 5.
        let results: Vec<PortResult> = (0..50)
            .map(|i| PortResult {
                reply: open.reply.map(|reply| ReplyFields {
                    kernel_ns: now + i * 1_000,
                    ..reply
                }),
                ..open
            })
            .collect();
        let json = render_results(Format::Json, false, &results);
        for line in json.lines() {
            let ts = line
                .split_once(r#""ts":"#)
                .and_then(|(_, rest)| rest.split([',', '}']).next())
                .unwrap_or_else(|| panic!("{line}"));
            let (seconds, decimals) = ts.split_once('.').unwrap_or_else(|| panic!("{line}"));
            assert!(decimals.len() == 6 && seconds.len() == 10, "{line}");
            assert!(
                ts.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
                "{line}"
            );
        }
    }

    #[test]
    fn filtered_results_have_null_reply_fields_whatever_came() {
        let [open, _, filtered, _] = results();
        // As an ICMP error that filtered the port would bring its own fields.
        let with_reply = PortResult {
            reply: open.reply,
            ..filtered
        };
        let json = render_results(Format::Json, false, &[with_reply]);
        assert!(
            json.contains(r#""status":"filtered","reason":"timeout","ttl":null,"ipid":null,"win":null,"rtt_us":null,"rtt_ns":null,"ts":"#),
            "{json}"
        );
        let csv = render_results(Format::Csv, false, &[with_reply]);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("198.18.4.2,23,tcp,filtered,timeout,,,,,,"),
            "{csv}"
        );
    }

    #[test]
    fn csv_and_list() {
        let csv = render(Format::Csv, false);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert!(
            lines[1].starts_with("198.18.4.2,22,tcp,open,syn-ack,64,0,64240,87,87654,"),
            "{csv}"
        );
        assert!(
            lines[3].starts_with("198.18.4.2,23,tcp,filtered,timeout,,,,,,"),
            "{csv}"
        );
        assert!(
            lines[4].starts_with("198.18.4.2,25,tcp,unknown,reply-lost,,,,,,"),
            "{csv}"
        );
        let list = render(Format::List, false);
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines.len(), 4, "{list}");
        assert_eq!(lines[0], "#masscan", "masscan's -oL first line");
        assert!(lines[1].starts_with("open tcp 22 198.18.4.2 "));
        assert!(lines[2].starts_with("unknown tcp 25 198.18.4.2 "));
        assert_eq!(lines[3], "# end", "masscan's -oL last line");
    }

    #[test]
    fn refused_results_in_every_format() {
        let ip = IpAddr::from([198, 18, 4, 7]);
        let refused = |port, reason| PortResult {
            ip,
            port,
            protocol: "tcp",
            finding: Finding::Refused(reason),
            reply: None,
        };
        let results = [refused(None, "broadcast"), refused(Some(23), "firewall")];
        let json = render_results(Format::Json, false, &results);
        assert!(
            json.starts_with(
                r#"{"ip":"198.18.4.7","port":null,"proto":"tcp","status":"refused","reason":"broadcast","ttl":null,"ipid":null,"win":null,"rtt_us":null,"rtt_ns":null,"ts":"#
            ),
            "{json}"
        );
        let csv = render_results(Format::Csv, false, &results);
        let list = render_results(Format::List, false, &results);
        for (text, line, start) in [
            (&csv, 1, "198.18.4.7,,tcp,refused,broadcast,,,,,,"),
            (&csv, 2, "198.18.4.7,23,tcp,refused,firewall,,,,,,"),
            (&list, 1, "refused tcp 0 198.18.4.7 "),
            (&list, 2, "refused tcp 23 198.18.4.7 "),
        ] {
            assert!(text.lines().nth(line).unwrap().starts_with(start), "{text}");
        }
        let table = render_results(Format::Table, false, &results);
        assert!(
            table.starts_with("Not responding ports: \nRefused ports: (the host: broadcast) (23 "),
            "{table}"
        );
        assert!(table.trim_end().ends_with(": firewall)"), "{table}");
    }

    #[test]
    fn ipv6_results_show_the_address_in_rfc_5952_form_and_no_ip_id() {
        let [open, closed, ..] = results();
        let ip: IpAddr = "2001:0DB8:0:0:0:0:0:0002".parse().unwrap();
        let without_id = |result: PortResult| PortResult {
            ip,
            reply: result.reply.map(|reply| ReplyFields {
                ip_id: None,
                ip_len: reply.ip_len + 20,
                ..reply
            }),
            ..result
        };
        let results = [without_id(open), without_id(closed)];
        let json = render_results(Format::Json, false, &results);
        assert!(
            json.starts_with(
                r#"{"ip":"2001:db8::2","port":22,"proto":"tcp","status":"open","reason":"syn-ack","ttl":64,"ipid":null,"win":64240,"#
            ),
            "{json}"
        );
        let csv = render_results(Format::Csv, false, &results);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("2001:db8::2,22,tcp,open,syn-ack,64,,64240,87,87654,"),
            "{csv}"
        );
        let list = render_results(Format::List, false, &results);
        let words: Vec<&str> = list.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(words[..4], ["open", "tcp", "22", "2001:db8::2"], "{list}");
        assert_eq!(words.len(), 5, "masscan's line: {list}");
        let table = render_results(Format::Table, true, &results);
        assert!(table
            .lines()
            .next()
            .unwrap()
            .ends_with(": .S..A...  64     0 64240    64"));
        assert!(table
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(": ..R.A...  64     0     0    60"));
    }
}
