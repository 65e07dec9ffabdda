//! Fuzzing the reply side in userspace with any record the ring buffer could hand over: read as
//! a `ReplyRecord`, read by each probe kind, and written in every output format. Whatever the
//! bytes, a sweep's reply is what its kind (SYN, ACK, FIN) makes of a RST or of another answer,
//! or filtered when it is an ICMP error, one-target reply lines are one line (three and two
//! with `-V`, as hping3's) and map back to the probe they answer, JSON lines are one valid object with the documented keys in order, CSV lines have
//! every column, and each result shows the fields the reply carried.

mod fuzzing;

use std::{
    io::{self, Write},
    mem::size_of,
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, Mutex},
};

use bolero::{check, TypeGenerator};
use prober::{
    ping::{text::reply_line, RttPrecision},
    probe::{
        DestPort, Endpoints, IcmpEcho, IcmpMessage, IpFields, Payload, PingProbe, PortStep,
        ProbePorts, ReplyFields, Status, SweepEndpoints, SweepKind, TcpFlags, TcpProbe,
    },
    setup,
    sweep::results::{Finding, Format, PortResult, ResultWriter, Shown},
};
use prober_common::ReplyRecord;

/// A record and the run it reaches.
#[derive(Debug, TypeGenerator)]
struct Case {
    /// One ring-buffer item, as the reply loop reads it (its `drain` needs a kernel ring buffer,
    /// so the harness does the same unaligned read).
    item: [u8; size_of::<ReplyRecord>()],
    /// The send thread's own clock reading for the probe answered, if it has one.
    userspace_sent_ns: Option<u64>,
    base_port: u16,
    keep_port: bool,
    window: u16,
    /// Which TCP sweep: SYN, ACK or FIN.
    scan: u8,
    duplicate: bool,
    microseconds: bool,
}

/// Output the test reads back once the writer is done.
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

/// The documented keys, in order: what the integration tests' parser demands too.
use prober_tests::sweep::FIELDS as JSON_KEYS;

/// What `format` writes for `results`, as lines.
fn written(format: Format, verbose: bool, results: &[PortResult]) -> Vec<String> {
    let out = Shared::default();
    let mut writer = ResultWriter::new(Shown::of(format, verbose), Box::new(out.clone())).unwrap();
    for result in results {
        writer.write(result).unwrap();
    }
    // As after an interrupt, which lists the same ports but for an empty list, and says
    // nothing on stderr.
    writer.finish(false).unwrap();
    let text =
        String::from_utf8(std::mem::take(&mut *out.0.lock().unwrap())).expect("results are UTF-8");
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
    text.lines().map(str::to_owned).collect()
}

fn check_json(line: &str, result: &PortResult) {
    let value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let object = value.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut documented = JSON_KEYS;
    documented.sort_unstable();
    assert_eq!(keys, documented, "{line}");
    let positions: Vec<usize> = JSON_KEYS
        .iter()
        .map(|key| line.find(&format!("\"{key}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "key order: {line}"
    );
    assert_eq!(value["ip"], result.ip.to_string());
    assert_eq!(value["port"], serde_json::json!(result.port));
    let (status, reason) = result.finding.words();
    assert_eq!(value["status"], status);
    assert_eq!(value["reason"], reason);
    let reply = result.reply;
    assert_eq!(value["ttl"], serde_json::json!(reply.map(|r| r.ttl)));
    assert_eq!(
        value["ipid"],
        serde_json::json!(reply.and_then(|r| r.ip_id))
    );
    assert_eq!(
        value["win"],
        serde_json::json!(reply.and_then(|r| r.window))
    );
    let rtt_ns = reply.and_then(|r| r.rtt_ns);
    assert_eq!(value["rtt_ns"], serde_json::json!(rtt_ns));
    assert_eq!(
        value["rtt_us"],
        serde_json::json!(rtt_ns.map(|ns| ns / 1000))
    );
    assert!(value["ts"].as_f64().is_some_and(f64::is_finite), "{line}");
    assert_eq!(
        value["icmp_from"],
        serde_json::json!(reply.and_then(|r| r.icmp_from))
    );
}

/// The sweep's results for this reply and for a port that stayed silent, in every format.
fn check_sweep(case: &Case, record: &ReplyRecord) {
    let endpoints = SweepEndpoints {
        source: Ipv4Addr::new(198, 18, 0, 1).into(),
        ttl: 64,
        tos: 0,
        cookie_key: [1, 2],
        first_source_port: case.base_port,
        source_ports: 4096,
    };
    let window = case.window;
    // Each kind's answer to a RST, to another answer, and its silence.
    let (kind, rst, other, silence) = match case.scan % 3 {
        0 => (
            SweepKind::TcpSyn { window },
            Status::Closed,
            Status::Open,
            Status::Filtered,
        ),
        1 => (
            SweepKind::TcpAck {
                flags: TcpFlags(TcpFlags::ACK),
                window,
            },
            Status::Unfiltered,
            Status::Unfiltered,
            Status::Filtered,
        ),
        _ => (
            SweepKind::TcpFin {
                flags: TcpFlags(TcpFlags::FIN),
                window,
            },
            Status::Closed,
            // Only a SYN sweep takes these, but the kind reads what the record says.
            Status::Open,
            Status::OpenFiltered,
        ),
    };
    let probe = kind.probe(endpoints);
    let answer = probe.classify(record);
    let icmp_error = record.icmp_error().is_some();
    let closed = record.tcp_flags & TcpFlags::RST != 0;
    let status = match (icmp_error, closed) {
        (true, _) => Status::Filtered,
        (false, true) => rst,
        (false, false) => other,
    };
    assert_eq!(answer.verdict.status, status);
    assert_eq!(
        answer.fields.icmp_from,
        icmp_error.then(|| IpAddr::from(record.icmp_from))
    );
    assert_eq!(answer.host, IpAddr::from(record.src_addr));
    assert_eq!(
        (answer.port, answer.source_port),
        (record.src_port, record.dst_port)
    );
    let rtt_ns = setup::rtt_ns(record, || case.userspace_sent_ns);
    assert_eq!(
        rtt_ns.is_none(),
        record.sent_ns == 0 && case.userspace_sent_ns.is_none()
    );
    assert!(rtt_ns.is_none_or(|rtt| rtt <= record.kernel_ns));
    let fields = ReplyFields {
        rtt_ns,
        ..answer.fields
    };
    assert_eq!(
        (fields.ttl, fields.ip_id, fields.window, fields.ip_len),
        (
            record.ttl,
            record.src_addr.ipv4().map(|_| record.ip_id),
            Some(record.tcp_window),
            record.ip_len
        )
    );
    assert_eq!(
        (fields.tcp_flags, fields.kernel_ns),
        (record.tcp_flags, record.kernel_ns)
    );
    let replied = PortResult {
        ip: answer.host,
        port: Some(answer.port),
        protocol: probe.protocol(),
        finding: Finding::Verdict(answer.verdict),
        reply: Some(fields),
    };
    let silent = PortResult {
        port: Some(answer.port.wrapping_add(1)),
        finding: Finding::Verdict(probe.silence()),
        reply: None,
        ..replied
    };
    assert_eq!(silent.finding.words().0, silence.word());
    let results = [replied, silent];

    let json = written(Format::Json, false, &results);
    assert_eq!(json.len(), 2, "{json:?}");
    for (line, result) in json.iter().zip(&results) {
        check_json(line, result);
    }

    let csv = written(Format::Csv, false, &results);
    assert_eq!(csv.len(), 3, "a header and a line each: {csv:?}");
    for (line, result) in csv[1..].iter().zip(&results) {
        let columns: Vec<&str> = line.split(',').collect();
        assert_eq!(columns.len(), JSON_KEYS.len(), "{line}");
        assert_eq!(columns[0], result.ip.to_string());
        assert_eq!(columns[1], result.port.unwrap().to_string());
        assert_eq!(columns[3], result.finding.words().0);
    }

    let list = written(Format::List, false, &results);
    // Between masscan's first and last lines.
    let (first, rest) = list.split_first().expect("a first line");
    let (last, listed) = rest.split_last().expect("a last line");
    assert_eq!((first.as_str(), last.as_str()), ("#masscan", "# end"));
    if status != Status::Open {
        assert!(listed.is_empty(), "{list:?}");
    } else {
        let prefix = format!("open tcp {} {} ", answer.port, answer.host);
        assert!(
            listed.len() == 1 && listed[0].starts_with(&prefix),
            "{list:?}"
        );
    }

    for verbose in [false, true] {
        let table = written(Format::Table, verbose, &results);
        let rst_row = matches!(status, Status::Closed | Status::Unfiltered);
        let rows = usize::from(status == Status::Open || (rst_row && verbose));
        assert_eq!(table.len(), rows + 1, "{table:?}");
        if rows == 1 {
            assert!(
                table[0].starts_with(&format!("{:5} ", answer.port)),
                "{table:?}"
            );
            assert!(table[0].contains(&TcpFlags(record.tcp_flags).dotted()));
        }
        // An ICMP error's port did not respond either, in hping3's table.
        let first_silent = if icmp_error {
            answer.port
        } else {
            silent.port.unwrap()
        };
        assert!(
            table[rows].starts_with(&format!("Not responding ports: ({first_silent} ")),
            "{table:?}"
        );
    }
}

/// hping3's reply lines for this reply, from one probe kind.
fn check_ping_line(case: &Case, record: &ReplyRecord, probe: &dyn PingProbe, lines_with_v: usize) {
    let seq = probe.sequence(record);
    // As the one-target run times a reply.
    let rtt_ms = setup::rtt_ns(record, || case.userspace_sent_ns).unwrap_or(0) as f64 / 1e6;
    let precision = if case.microseconds {
        RttPrecision::Us
    } else {
        RttPrecision::Hping3
    };
    let line = reply_line(probe, record, seq, rtt_ms, precision, case.duplicate, false);
    assert!(
        !line.chars().any(char::is_control),
        "one plain line: {line:?}"
    );
    let start = format!(
        "{}len={} ip={} ttl={} ",
        if case.duplicate { "DUP! " } else { "" },
        record.ip_len,
        IpAddr::from(record.src_addr),
        record.ttl
    );
    assert!(line.starts_with(&start), "{line:?} should start {start:?}");
    let rtt = line
        .rsplit_once(" rtt=")
        .and_then(|(_, rtt)| rtt.strip_suffix(" ms"))
        .unwrap_or_else(|| panic!("no rtt at the end of {line:?}"));
    let decimals = rtt
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len());
    assert_eq!(decimals, if case.microseconds { 3 } else { 1 }, "{line:?}");
    assert!(rtt.parse::<f64>().is_ok_and(|ms| ms >= 0.0), "{line:?}");
    let verbose = reply_line(probe, record, seq, rtt_ms, precision, case.duplicate, true);
    assert_eq!(verbose.lines().count(), lines_with_v, "{verbose:?}");
}

fn check_ping(case: &Case, record: &ReplyRecord) {
    let endpoints = Endpoints {
        source: Ipv4Addr::new(198, 18, 0, 1).into(),
        random_source: None,
        target: IpAddr::from(record.src_addr),
        ttl: 64,
        first_ip_id: 0,
        fields: IpFields::default(),
        payload: Payload::default(),
        one_flow: false,
    };
    let tcp = TcpProbe {
        endpoints: endpoints.clone(),
        flags: TcpFlags(TcpFlags::SYN),
        ports: ProbePorts {
            target: DestPort::new(record.src_port, PortStep::Fixed),
            base: case.base_port,
            keep: case.keep_port,
        },
        window: case.window,
        seq: 1,
        ack: 0,
        timestamp: None,
    };
    check_ping_line(case, record, &tcp, 3);
    // The probe that left from the port the reply is addressed to has the reply's sequence.
    let answered = u64::from(record.dst_port.wrapping_sub(case.base_port));
    if !case.keep_port || record.dst_port == case.base_port {
        assert_eq!(tcp.sequence_of(answered), tcp.sequence(record));
    }
    let icmp = IcmpEcho {
        endpoints,
        id: record.icmp_id,
        message: IcmpMessage::ECHO_REQUEST,
    };
    check_ping_line(case, record, &icmp, 2);
    assert_eq!(
        icmp.sequence_of(u64::from(record.icmp_seq)),
        icmp.sequence(record)
    );
}

#[test]
fn any_record_is_classified_and_written_as_documented() {
    check!()
        .with_type::<Case>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|case| {
            let record: ReplyRecord = bytemuck::pod_read_unaligned(&case.item);
            check_sweep(case, &record);
            check_ping(case, &record);
        });
}
