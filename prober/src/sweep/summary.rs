//! What a sweep counted, and its statistic footer (stderr), in the spirit of hping3's.
use crate::{probe::Status, reading::Reading, rtt::RttStats};

/// The totals of a sweep, for its footer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepSummary {
    pub hosts: u64,
    /// 0 for a kind without ports (an echo sweep).
    pub ports: u64,
    pub sent: u64,
    /// The whole run, and the part of it spent sending (all passes).
    pub elapsed: std::time::Duration,
    pub sending: std::time::Duration,
    pub open: u64,
    pub closed: u64,
    pub filtered: u64,
    /// Of a FIN sweep's silent ports, and an ACK sweep's answered ones.
    pub open_filtered: u64,
    pub unfiltered: u64,
    /// Of an echo sweep's hosts.
    pub up: u64,
    pub echo_down: u64,
    /// Silent, but replies were lost while theirs could have come (see
    /// [`super::results::Finding::Unknown`]).
    pub unknown: u64,
    /// Replies to (host, port) pairs that had answered already (retries, retransmissions).
    pub duplicates: u64,
    /// Answers that echo no cookie (UDP's) at a source port their (host, port)'s probe did
    /// not leave from: forged, or stale beyond the passes a reply may answer. Not counted.
    pub unsolicited: u64,
    /// Of the first reply from each (host, port) whose probe's send time is known.
    pub rtt: RttStats,
    /// First replies whose probe's departure the table no longer held (its slot reused: the
    /// reply came later than the table is sized for).
    pub untimed: u64,
    /// Cut short: by a signal, or by an error.
    pub interrupted: bool,
    /// From the XDP program's counters.
    pub matched: Reading,
    pub unmatched: Reading,
    pub malformed: Reading,
    pub bounced: Reading,
    pub ring_full: Reading,
    /// Times a probe waited for room in the TX ring.
    pub tx_full_waits: u64,
    /// Probes the kernel refused to send.
    pub refused: u64,
    /// Hosts that answered no ARP request or neighbour solicitation (on-link sweeps).
    pub down: u64,
    /// The interface's drop counters over the run.
    pub kernel_tx_dropped: Reading,
    pub kernel_rx_dropped: Reading,
}

impl SweepSummary {
    pub fn answered(&self) -> u64 {
        self.open + self.closed + self.unfiltered + self.up
    }

    /// The count of results with `status`.
    pub fn count_of(&mut self, status: Status) -> &mut u64 {
        match status {
            Status::Open => &mut self.open,
            Status::Closed => &mut self.closed,
            Status::Filtered => &mut self.filtered,
            Status::OpenFiltered => &mut self.open_filtered,
            Status::Unfiltered => &mut self.unfiltered,
            Status::Up => &mut self.up,
            Status::Down => &mut self.echo_down,
        }
    }

    /// The counts read from the kernel, for the lines that explain any that failed.
    pub fn readings(&self) -> [&Reading; 7] {
        [
            &self.matched,
            &self.unmatched,
            &self.malformed,
            &self.bounced,
            &self.ring_full,
            &self.kernel_tx_dropped,
            &self.kernel_rx_dropped,
        ]
    }
}

/// `1 host`, `2 hosts`.
fn counted(count: u64, noun: &str) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {noun}{plural}")
}

/// A sweep's statistic footer (stderr), in the spirit of hping3's.
pub fn footer(summary: &SweepSummary) -> String {
    let sending = summary.sending.as_secs_f64();
    let down = match summary.down {
        0 => String::new(),
        down => format!(
            "\n{down} of {} down: no ARP or neighbour answer",
            counted(summary.hosts, "host")
        ),
    };
    format!(
        "\n--- prober sweep statistic ---\n\
         {} sent to {}{} in {sending:.2} s ({:.0} pps), {:.2} s in all{}\n\
         {} open, {} closed, {} filtered,{} {} unknown, {} duplicate replies\n\
         xdp: {} replies matched, {} unmatched or forged passed, {} malformed, {} RSTs bounced, {} lost to a full ring buffer\n\
         tx: {} waits for a full TX ring, {} probes refused by the kernel; kernel drops: {} tx, {} rx{down}",
        counted(summary.sent, "probe"),
        counted(summary.hosts, "host"),
        match summary.ports {
            0 => String::new(),
            ports => format!(" x {}", counted(ports, "port")),
        },
        summary.sent as f64 / sending.max(1e-9),
        summary.elapsed.as_secs_f64(),
        if summary.interrupted { ", interrupted" } else { "" },
        summary.open,
        summary.closed,
        summary.filtered,
        other_statuses(summary),
        summary.unknown,
        summary.duplicates,
        summary.matched,
        summary.unmatched,
        summary.malformed,
        summary.bounced,
        summary.ring_full,
        summary.tx_full_waits,
        summary.refused,
        summary.kernel_tx_dropped,
        summary.kernel_rx_dropped,
    )
}

/// `-V`, when there were any: the answers not taken for coming to the wrong source port.
pub fn unsolicited_line(summary: &SweepSummary) -> Option<String> {
    (summary.unsolicited > 0).then(|| {
        format!(
            "{} taken for none: at a source port no probe to their host and port left from",
            counted(summary.unsolicited, "answer")
        )
    })
}

/// The counts of the statuses only some kinds give, where there are any: ` 3 open|filtered,`,
/// ` 2 up, 1 down,`.
fn other_statuses(summary: &SweepSummary) -> String {
    [
        (summary.open_filtered, Status::OpenFiltered),
        (summary.unfiltered, Status::Unfiltered),
        (summary.up, Status::Up),
        (summary.echo_down, Status::Down),
    ]
    .iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, status)| format!(" {count} {},", status.word()))
    .collect()
}

/// `-V`: how many replies have an RTT, and why the others have none.
pub fn timing_line(summary: &SweepSummary) -> String {
    format!(
        "rtt: {} replies timed, {} untimed (their probes' departure slots had been reused)",
        summary.rtt.count(),
        summary.untimed
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_footer_reports_every_count_and_unknown_ones_as_unknown() {
        let summary = SweepSummary {
            hosts: 1,
            ports: 3,
            sent: 3,
            elapsed: Duration::from_millis(1170),
            sending: Duration::from_millis(10),
            open: 1,
            closed: 1,
            filtered: 1,
            unknown: 2,
            matched: Reading::Count(2),
            bounced: Reading::Count(1),
            kernel_tx_dropped: Reading::Unknown("reading /sys/class/net/x: gone".into()),
            kernel_rx_dropped: Reading::Unknown("reading /sys/class/net/x: gone".into()),
            ..SweepSummary::default()
        };
        assert_eq!(
            footer(&summary),
            "\n--- prober sweep statistic ---\n\
             3 probes sent to 1 host x 3 ports in 0.01 s (300 pps), 1.17 s in all\n\
             1 open, 1 closed, 1 filtered, 2 unknown, 0 duplicate replies\n\
             xdp: 2 replies matched, 0 unmatched or forged passed, 0 malformed, 1 RSTs bounced, 0 lost to a full ring buffer\n\
             tx: 0 waits for a full TX ring, 0 probes refused by the kernel; kernel drops: unknown tx, unknown rx"
        );
    }

    #[test]
    fn a_udp_sweeps_footer_counts_its_silent_ports_apart() {
        let summary = SweepSummary {
            filtered: 1,
            open_filtered: 2,
            ..SweepSummary::default()
        };
        assert!(footer(&summary)
            .contains("\n0 open, 0 closed, 1 filtered, 2 open|filtered, 0 unknown,"));
        let unanswered = SweepSummary {
            unsolicited: 2,
            ..SweepSummary::default()
        };
        assert_eq!(
            unsolicited_line(&unanswered).as_deref(),
            Some("2 answers taken for none: at a source port no probe to their host and port left from")
        );
        assert_eq!(unsolicited_line(&summary), None);
    }

    #[test]
    fn the_statuses_of_ack_and_fin_scans_are_counted_where_there_are_any() {
        let mut summary = SweepSummary::default();
        *summary.count_of(Status::OpenFiltered) += 2;
        let fin = footer(&summary);
        assert!(
            fin.contains("\n0 open, 0 closed, 0 filtered, 2 open|filtered, 0 unknown, "),
            "{fin}"
        );
        *summary.count_of(Status::Unfiltered) += 3;
        let echoes = SweepSummary {
            hosts: 4,
            sent: 4,
            ..SweepSummary::default()
        };
        assert!(
            footer(&echoes).contains("\n4 probes sent to 4 hosts in "),
            "an echo sweep's hosts have no ports: {}",
            footer(&echoes)
        );
        assert!(footer(&summary).contains(" 0 filtered, 2 open|filtered, 3 unfiltered, 0 unknown"));
        assert_eq!(summary.answered(), 3, "an ACK scan's RSTs are answers");
    }

    #[test]
    fn counts_of_one_are_singular() {
        assert_eq!(counted(1, "host"), "1 host");
        assert_eq!(
            (counted(0, "port"), counted(2, "port")),
            ("0 ports".into(), "2 ports".into())
        );
    }
}
