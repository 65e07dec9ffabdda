//! hping3's text: the header, one line per reply, and the statistic footer.
use std::{fmt::Write as _, net::Ipv4Addr};

use prober_common::ReplyRecord;

use crate::{
    probe::{write_ip_fields, Probe},
    stats::{Summary, SweepSummary},
};

/// `HPING <target> (<ifname> <ip>): <mode>`
pub fn header(target_name: &str, interface: &str, target: Ipv4Addr, probe: &dyn Probe) -> String {
    format!(
        "HPING {target_name} ({interface} {target}): {}",
        probe.mode()
    )
}

/// `-V`'s first line: `using <ifname>, addr: <ip>, MTU: <mtu>`
pub fn verbose_header(interface: &str, source: Ipv4Addr, mtu: u32) -> String {
    format!("using {interface}, addr: {source}, MTU: {mtu}")
}

/// One reply as hping3 prints it, without the trailing newline.
pub fn reply_line(
    probe: &dyn Probe,
    reply: &ReplyRecord,
    seq: u16,
    rtt_ms: f64,
    duplicate: bool,
    verbose: bool,
) -> String {
    let mut line = String::with_capacity(96);
    if duplicate {
        line.push_str("DUP! ");
    }
    write_ip_fields(reply, verbose, &mut line);
    probe.write_fields(reply, seq, &mut line);
    let _ = write!(line, " rtt={rtt_ms:.1} ms");
    if verbose {
        probe.write_verbose_trailer(reply, &mut line);
    }
    line
}

/// The statistic footer, starting with hping3's blank line.
pub fn footer(target_name: &str, summary: &Summary) -> String {
    format!(
        "\n--- {target_name} hping statistic ---\n\
         {} packets transmitted, {} packets received, {}% packet loss\n\
         round-trip min/avg/max = {:.1}/{:.1}/{:.1} ms",
        summary.transmitted,
        summary.received,
        summary.loss_percent(),
        summary.rtt.min_ms,
        summary.rtt.avg_ms(),
        summary.rtt.max_ms,
    )
}

/// What the XDP program could not deliver; empty when nothing was lost.
pub fn losses(summary: &Summary) -> Option<String> {
    (summary.ring_full > 0).then(|| {
        format!(
            "{} replies lost: the XDP ring buffer was full",
            summary.ring_full
        )
    })
}

/// A sweep's statistic footer (stderr), in the spirit of hping3's.
pub fn sweep_footer(summary: &SweepSummary) -> String {
    let sending = summary.sending.as_secs_f64();
    format!(
        "\n--- prober sweep statistic ---\n\
         {} probes sent to {} hosts x {} ports in {sending:.2} s ({:.0} pps), {:.2} s in all{}\n\
         {} open, {} closed, {} filtered, {} duplicate replies\n\
         xdp: {} replies matched, {} unmatched or forged dropped, {} RSTs bounced, {} lost to a full ring buffer\n\
         tx: {} waits for a full TX ring; kernel drops: {} tx, {} rx",
        summary.sent,
        summary.hosts,
        summary.ports,
        summary.sent as f64 / sending.max(1e-9),
        summary.elapsed.as_secs_f64(),
        if summary.interrupted { ", interrupted" } else { "" },
        summary.open,
        summary.closed,
        summary.filtered,
        summary.duplicates,
        summary.matched,
        summary.unmatched,
        summary.bounced,
        summary.ring_full,
        summary.tx_full_waits,
        summary.kernel_tx_dropped,
        summary.kernel_rx_dropped,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        probe::{Endpoints, IcmpEcho, TcpFlags, TcpProbe},
        stats::RttStats,
    };

    fn endpoints() -> Endpoints {
        Endpoints {
            source: Ipv4Addr::new(198, 18, 0, 1),
            target: Ipv4Addr::new(198, 18, 0, 2),
            ttl: 64,
            first_ip_id: 0,
        }
    }

    fn syn_probe(base_port: u16) -> TcpProbe {
        TcpProbe {
            endpoints: endpoints(),
            flags: TcpFlags(TcpFlags::SYN),
            target_port: 80,
            base_port,
            keep_port: false,
            window: 64,
            seq: 1000,
            ack: 0,
        }
    }

    fn syn_ack(base_port: u16, probe_number: u16) -> ReplyRecord {
        ReplyRecord {
            src_addr: [198, 18, 0, 2],
            dst_addr: [198, 18, 0, 1],
            ip_len: 44,
            ip_id: 0,
            ip_frag: 0x4000,
            ttl: 64,
            src_port: 80,
            dst_port: base_port + probe_number,
            tcp_flags: TcpFlags::SYN | TcpFlags::ACK,
            tcp_window: 64240,
            tcp_seq: 3218665143,
            tcp_ack: 1001,
            l4_checksum: 0x468c,
            ..ReplyRecord::default()
        }
    }

    #[test]
    fn open_port_line_matches_hping3() {
        let probe = syn_probe(2000);
        let reply = syn_ack(2000, 3);
        let seq = probe.sequence(&reply);
        assert_eq!(
            reply_line(&probe, &reply, seq, 0.44, false, false),
            "len=44 ip=198.18.0.2 ttl=64 DF id=0 sport=80 flags=SA seq=3 win=64240 rtt=0.4 ms"
        );
    }

    #[test]
    fn closed_port_and_duplicate_lines_match_hping3() {
        let probe = syn_probe(65535);
        let reply = ReplyRecord {
            ip_len: 40,
            src_port: 80,
            dst_port: 0,
            tcp_flags: TcpFlags::RST | TcpFlags::ACK,
            tcp_window: 0,
            ..syn_ack(0, 0)
        };
        // The source port wrapped from 65535 to 0: that is hping3's seq 1.
        assert_eq!(probe.sequence(&reply), 1);
        assert_eq!(
            reply_line(&probe, &reply, 1, 100.44, true, false),
            "DUP! len=40 ip=198.18.0.2 ttl=64 DF id=0 sport=80 flags=RA seq=1 win=0 rtt=100.4 ms"
        );
    }

    #[test]
    fn verbose_tcp_line_matches_hping3() {
        let probe = syn_probe(2000);
        let reply = syn_ack(2000, 0);
        assert_eq!(
            reply_line(&probe, &reply, 0, 0.8, false, true),
            "len=44 ip=198.18.0.2 ttl=64 DF id=0 tos=0 iplen=44\n\
             sport=80 flags=SA seq=0 win=64240 rtt=0.8 ms\n\
             seq=3218665143 ack=1001 sum=468c urp=0\n"
        );
    }

    #[test]
    fn icmp_lines_match_hping3() {
        let probe = IcmpEcho {
            endpoints: endpoints(),
            id: 7,
        };
        let reply = ReplyRecord {
            src_addr: [198, 18, 0, 2],
            ip_len: 28,
            ip_id: 403,
            ttl: 64,
            icmp_id: 7,
            icmp_seq: 2,
            ..ReplyRecord::default()
        };
        let seq = probe.sequence(&reply);
        assert_eq!(
            reply_line(&probe, &reply, seq, 0.61, false, false),
            "len=28 ip=198.18.0.2 ttl=64 id=403 icmp_seq=2 rtt=0.6 ms"
        );
        assert_eq!(
            reply_line(&probe, &reply, seq, 0.9, false, true),
            "len=28 ip=198.18.0.2 ttl=64 id=403 tos=0 iplen=28\nicmp_seq=2 rtt=0.9 ms"
        );
    }

    #[test]
    fn headers_match_hping3() {
        let target = Ipv4Addr::new(198, 18, 0, 2);
        assert_eq!(
            header("198.18.0.2", "veth0", target, &syn_probe(1)),
            "HPING 198.18.0.2 (veth0 198.18.0.2): S set, 40 headers + 0 data bytes"
        );
        let none = TcpProbe {
            flags: TcpFlags(0),
            ..syn_probe(1)
        };
        assert_eq!(
            header("h", "lo", target, &none),
            "HPING h (lo 198.18.0.2): NO FLAGS are set, 40 headers + 0 data bytes"
        );
        let all = TcpProbe {
            flags: TcpFlags(0xff),
            ..syn_probe(1)
        };
        assert!(header("h", "lo", target, &all).contains(": RSAFPUXY set,"));
        assert_eq!(
            header(
                "h",
                "lo",
                target,
                &IcmpEcho {
                    endpoints: endpoints(),
                    id: 1
                }
            ),
            "HPING h (lo 198.18.0.2): icmp mode set, 28 headers + 0 data bytes"
        );
    }

    #[test]
    fn footer_matches_hping3() {
        let mut rtt = RttStats::default();
        for ms in [0.4, 0.9, 0.6] {
            rtt.add(ms);
        }
        let summary = Summary {
            transmitted: 3,
            received: 3,
            rtt,
            ..Summary::default()
        };
        assert_eq!(
            footer("localhost", &summary),
            "\n--- localhost hping statistic ---\n\
             3 packets transmitted, 3 packets received, 0% packet loss\n\
             round-trip min/avg/max = 0.4/0.6/0.9 ms"
        );
        let silent = Summary {
            transmitted: 2,
            ..Summary::default()
        };
        assert!(footer("h", &silent).ends_with(
            "2 packets transmitted, 0 packets received, 100% packet loss\n\
             round-trip min/avg/max = 0.0/0.0/0.0 ms"
        ));
    }
}
