//! `--bpf-trace`: the eBPF programs' own account of their decisions (why a packet was passed,
//! matched, dropped or bounced, and each probe's departure), through aya-log, on stderr.
//! Off, the programs are loaded with aya-log's level at "off", and the verifier removes every
//! log statement as dead code.
use std::{
    net::{IpAddr, Ipv6Addr},
    os::fd::{AsRawFd, RawFd},
};

use anyhow::{Context as _, Result};
use aya::Ebpf;
use aya_log::EbpfLogger;
use prober_common::{
    trace::{Fate, Reason, FIELDS},
    KIND_ICMP_ECHO, KIND_TCP, KIND_UDP,
};

/// aya-log's level for the programs: everything when tracing, nothing otherwise.
pub fn level(trace: bool) -> u8 {
    if trace {
        aya_log::Level::Trace as u8
    } else {
        0
    }
}

/// The programs' log, read as it fills.
pub struct BpfTrace(EbpfLogger<StderrLog>);

impl BpfTrace {
    pub fn start(ebpf: &mut Ebpf) -> Result<BpfTrace> {
        let logger = EbpfLogger::init_with_logger(ebpf, StderrLog)
            .context("reading the eBPF programs' trace")?;
        Ok(BpfTrace(logger))
    }

    /// Prints every record logged so far.
    pub fn flush(&mut self) {
        self.0.flush();
    }
}

impl AsRawFd for BpfTrace {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Prints each record as one line on stderr.
pub struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string();
        match render(&message) {
            Some(line) => eprintln!("bpf: {line}"),
            None => eprintln!("bpf: {message}"),
        }
    }

    fn flush(&self) {}
}

/// The line for one logged decision (see [`prober_common::trace`]); None if it is not one.
fn render(message: &str) -> Option<String> {
    let fields: Vec<&str> = message.split_whitespace().collect();
    let [kind, fate, reason, address, first, second] = fields[..] else {
        return None;
    };
    debug_assert_eq!(fields.len(), FIELDS);
    let kind: u8 = kind.parse().ok()?;
    let fate = *Fate::ALL.get(usize::from(fate.parse::<u8>().ok()?))?;
    let reason = *Reason::ALL.get(usize::from(reason.parse::<u8>().ok()?))?;
    let address = IpAddr::from(address.parse::<Ipv6Addr>().ok()?).to_canonical();
    let (first, second): (u16, u16) = (first.parse().ok()?, second.parse().ok()?);
    let (first_name, second_name) = match kind {
        KIND_TCP | KIND_UDP => ("sport", "dport"),
        KIND_ICMP_ECHO => ("id", "seq"),
        _ => return None,
    };
    Some(match (fate, kind) {
        (Fate::Departed, KIND_TCP | KIND_UDP) => {
            format!("tc: probe to {address} port {first} left, slot {second}")
        }
        (Fate::Departed, _) => format!("tc: probe to {address} left, slot {second}"),
        _ => format!(
            "xdp: {} from {address} ({first_name} {first}, {second_name} {second}): {}",
            fate.word(),
            reason.words()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_numbers_become_lines() {
        assert_eq!(
            render("1 0 2 ::ffff:198.18.0.2 80 61441").as_deref(),
            Some("xdp: passed from 198.18.0.2 (sport 80, dport 61441): acknowledges none of our probes")
        );
        assert_eq!(
            render("2 1 0 ::ffff:198.18.0.2 4660 3").as_deref(),
            Some("xdp: matched from 198.18.0.2 (id 4660, seq 3): answers a probe")
        );
        assert_eq!(
            render("1 4 6 2001:db8::2 443 17").as_deref(),
            Some("tc: probe to 2001:db8::2 port 443 left, slot 17")
        );
        assert_eq!(render("1 9 0 ::1 1 1"), None, "no such fate");
        assert_eq!(render("something else"), None);
    }
}
