//! hping3's text: the header, one line per reply, and the statistic footer.
use std::{fmt::Write as _, net::IpAddr, time::Duration};

use prober_common::{wire::IcmpErrorKind, ReplyRecord};

use super::Summary;
use crate::probe::PingProbe;

/// `HPING <target> (<ifname> <ip>): <mode>, <n> headers + <d> data bytes`, where n is the
/// length of the probes' headers as built but for their TCP options, as hping3 counts (IPv4 +
/// TCP 40, IPv6 + TCP 60, IPv4 + ICMP 28, IPv6 + ICMPv6 48) and d that of their data (-d).
pub fn header(target_name: &str, interface: &str, target: IpAddr, probe: &dyn PingProbe) -> String {
    let (data, headers) = (probe.data_len(), probe.headers_len());
    format!(
        "HPING {target_name} ({interface} {target}): {}, {headers} headers + {data} data bytes",
        probe.mode()
    )
}

/// `-V`'s first line: `using <ifname>, addr: <ip>, MTU: <mtu>`
pub fn verbose_header(interface: &str, source: IpAddr, mtu: u32) -> String {
    format!("using {interface}, addr: {source}, MTU: {mtu}")
}

/// How many decimals of a millisecond RTTs are printed with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RttPrecision {
    /// hping3's: tenths of a millisecond (rtt=0.1 ms)
    #[default]
    Hping3,
    /// Microseconds (rtt=0.087 ms)
    Us,
}

impl RttPrecision {
    pub(super) fn decimals(self) -> usize {
        match self {
            RttPrecision::Hping3 => 1,
            RttPrecision::Us => 3,
        }
    }
}

/// One reply as hping3 prints it, without the trailing newline.
pub fn reply_line(
    probe: &dyn PingProbe,
    reply: &ReplyRecord,
    seq: u16,
    rtt_ms: f64,
    precision: RttPrecision,
    duplicate: bool,
    verbose: bool,
) -> String {
    let mut line = String::with_capacity(96);
    if duplicate {
        line.push_str("DUP! ");
    }
    write_ip_fields(reply, verbose, &mut line);
    probe.write_fields(reply, seq, &mut line);
    let _ = write!(line, " rtt={rtt_ms:.*} ms", precision.decimals());
    if verbose {
        probe.write_verbose_trailer(reply, &mut line);
    }
    probe.write_after(reply, &mut line);
    line
}

/// hping3's -Q line for a TCP reply with sequence number `seq`, after one with `last`: the
/// number right-aligned in ten columns and its distance from `last`, which hping3 takes one
/// short when the numbers wrap (`(2^32 - 1 - last) + seq`).
pub fn seqnum_line(seq: u32, last: u32) -> String {
    let distance = if seq >= last {
        seq - last
    } else {
        u32::MAX - last + seq
    };
    format!("{seq:10} +{distance}")
}

/// hping3's --tcp-timestamp lines after a reply line: the reply's TSval; with an interval of
/// whole seconds (hping3's `-i N`, not `-i uN`), from the second reply on, its guess at the
/// target's timestamp clock (the nearest of 2, 10, 100 and 1000 Hz to the ticks per second
/// since the last reply's TSval, so the last probe's interval apart) and the uptime that clock
/// gives; then a blank line. The arithmetic is hping3's, its 32-bit wrap included.
#[derive(Debug)]
pub struct UptimeGuess {
    /// The interval in whole seconds; None: no guess (`-i uN`, `--fast`).
    interval_seconds: Option<u32>,
    /// The last reply's TSval; hping3 takes 0 for none.
    last: u32,
}

impl UptimeGuess {
    pub fn new(interval: Duration) -> UptimeGuess {
        let whole = interval.subsec_nanos() == 0 && interval.as_secs() > 0;
        UptimeGuess {
            interval_seconds: whole.then(|| interval.as_secs().try_into().unwrap_or(u32::MAX)),
            last: 0,
        }
    }

    /// What follows the line of a reply with `tsval`, starting with the line break after it.
    pub fn lines(&mut self, tsval: u32) -> String {
        const CLOCK_RATES: [i32; 4] = [2, 10, 100, 1000];
        let mut lines = format!("\n  TCP timestamp: tcpts={tsval}");
        let per_second = self
            .interval_seconds
            .filter(|_| self.last != 0)
            .map(|seconds| (tsval.wrapping_sub(self.last) / seconds) as i32);
        if let Some(measured) = per_second.filter(|&rate| rate > 0) {
            let hz = CLOCK_RATES
                .into_iter()
                .min_by_key(|hz| (measured - hz).unsigned_abs())
                .expect("rates to pick from");
            let seconds = (tsval / hz as u32) as i32;
            let _ = write!(
                lines,
                "\n  HZ seems hz={hz}\n  System uptime seems: {} days, {} hours, {} minutes, \
                 {} seconds",
                seconds / 86_400,
                seconds % 86_400 / 3600,
                seconds % 3600 / 60,
                seconds % 60
            );
        }
        self.last = tsval;
        lines.push('\n');
        lines
    }
}

/// hping3's line for an ICMP error that answers a probe, from `from` (the router or the target
/// that sent it): `ICMP Port Unreachable from ip=…`, `ICMP Packet filtered from ip=…`, `TTL 0
/// during transit from ip=…`. hping3 calls IPv4's admin-prohibited codes 9 and 10 by number
/// (`ICMP Unreachable type=9 from ip=…`: it prints the code as `type`), and only 13 filtered;
/// ICMPv6's admin-prohibited (type 1 code 1) reads as 13 does. Numeric always, as hping3's `-n`:
/// prober looks up no names.
pub fn icmp_error_line(error: IcmpErrorKind, code: u8, from: IpAddr) -> String {
    let what = match error {
        IcmpErrorKind::TimeExceeded => return format!("TTL 0 during transit from ip={from}"),
        IcmpErrorKind::NetUnreachable => "Network Unreachable",
        IcmpErrorKind::HostUnreachable => "Host Unreachable",
        IcmpErrorKind::ProtocolUnreachable => "Protocol Unreachable",
        IcmpErrorKind::PortUnreachable => "Port Unreachable",
        IcmpErrorKind::AdminProhibited if from.is_ipv4() && code != 13 => {
            return format!("ICMP Unreachable type={code} from ip={from}")
        }
        IcmpErrorKind::AdminProhibited => "Packet filtered",
    };
    format!("ICMP {what} from ip={from}")
}

/// The statistic footer, starting with hping3's blank line.
pub fn footer(target_name: &str, summary: &Summary, precision: RttPrecision) -> String {
    let decimals = precision.decimals();
    format!(
        "\n--- {target_name} hping statistic ---\n\
         {} packets transmitted, {} packets received, {}% packet loss\n\
         round-trip min/avg/max = {:.*}/{:.*}/{:.*} ms",
        summary.transmitted,
        summary.received,
        summary.loss_percent(),
        decimals,
        summary.rtt.min_ms(),
        decimals,
        summary.rtt.avg_ms(),
        decimals,
        summary.rtt.max_ms(),
    )
}

/// hping3's reply-line prefix: `len=44 ip=1.2.3.4 ttl=64 DF id=0 ` (with `-V`,
/// `tos=0 iplen=44` and a line break follow). IPv6 has neither DF nor an identification:
/// `len=64 ip=2001:db8::2 ttl=64 `, and `-V` adds its flow label, `tos=0 flow=0x2d4f1 iplen=64`
/// (`ttl=` is the hop limit, `tos=` the traffic class).
pub fn write_ip_fields(reply: &ReplyRecord, verbose: bool, line: &mut String) {
    const IP_DF: u16 = 0x4000;
    let source = IpAddr::from(reply.src_addr);
    let _ = write!(line, "len={} ip={source} ttl={}", reply.ip_len, reply.ttl);
    if source.is_ipv4() {
        let df = if reply.ip_frag & IP_DF != 0 {
            "DF "
        } else {
            ""
        };
        let _ = write!(line, " {df}id={}", reply.ip_id);
    }
    if verbose {
        let _ = write!(line, " tos={:x}", reply.tos);
        if source.is_ipv6() {
            let _ = write!(line, " flow=0x{:05x}", reply.flow_label);
        }
        let _ = writeln!(line, " iplen={}", reply.ip_len);
    } else {
        line.push(' ');
    }
}

/// What the XDP program could not deliver; empty when nothing was lost.
pub fn losses(summary: &Summary) -> Option<String> {
    summary
        .ring_full
        .positive()
        .map(|lost| format!("{lost} replies lost: the XDP ring buffer was full"))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use prober_common::IpAddress;

    use super::*;
    use crate::{
        probe::{
            DestPort, Endpoints, IcmpEcho, IcmpMessage, IpFields, Payload, PortStep, ProbePorts,
            TcpFlags, TcpProbe,
        },
        reading::Reading,
        rtt::RttStats,
    };

    fn endpoints() -> Endpoints {
        Endpoints {
            source: Ipv4Addr::new(198, 18, 0, 1).into(),
            random_source: None,
            target: Ipv4Addr::new(198, 18, 0, 2).into(),
            ttl: 64,
            first_ip_id: 0,
            fields: IpFields::default(),
            payload: Payload::default(),
            one_flow: false,
        }
    }

    fn syn_probe(base_port: u16) -> TcpProbe {
        TcpProbe {
            endpoints: endpoints(),
            flags: TcpFlags(TcpFlags::SYN),
            ports: ProbePorts {
                target: DestPort::new(80, PortStep::Fixed),
                base: base_port,
                keep: false,
            },
            window: 64,
            seq: 1000,
            ack: 0,
            timestamp: None,
        }
    }

    fn syn_ack(base_port: u16, probe_number: u16) -> ReplyRecord {
        ReplyRecord {
            src_addr: IpAddress::from_ipv4([198, 18, 0, 2]),
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
    fn uptime_guesses_are_hping3s() {
        let mut guess = UptimeGuess::new(Duration::from_secs(2));
        assert_eq!(guess.lines(0,), "\n  TCP timestamp: tcpts=0\n", "no last");
        assert_eq!(
            guess.lines(93_782_000),
            "\n  TCP timestamp: tcpts=93782000\n"
        );
        // 2 004 ticks in 2 s: 1000 Hz, and 93 785 s of uptime.
        assert_eq!(
            guess.lines(93_784_004),
            "\n  TCP timestamp: tcpts=93784004\n  HZ seems hz=1000\n  \
             System uptime seems: 1 days, 2 hours, 3 minutes, 4 seconds\n"
        );
        // 60 ticks a second is nearest to 100 Hz; on a tie the slower rate wins, as hping3's.
        assert!(guess.lines(93_784_124).contains("HZ seems hz=100\n"));
        assert!(guess.lines(93_784_136).contains("HZ seems hz=2\n"));
        // A clock that went back wraps as hping3's 32-bit difference does: a tick back in 2 s
        // is 2^31 - 1 ticks a second forward; in 1 s, a negative rate and no guess.
        assert!(guess.lines(93_784_135).contains("hz=1000"));
        let mut each_second = UptimeGuess::new(Duration::from_secs(1));
        each_second.lines(1000);
        assert_eq!(each_second.lines(999), "\n  TCP timestamp: tcpts=999\n");
        // Intervals of microseconds, or none: no guess.
        for interval in [Duration::from_millis(200), Duration::ZERO] {
            let mut guess = UptimeGuess::new(interval);
            guess.lines(1000);
            assert_eq!(guess.lines(2000), "\n  TCP timestamp: tcpts=2000\n");
        }
    }

    #[test]
    fn seqnum_lines_are_hping3s() {
        assert_eq!(seqnum_line(12345, 0), "     12345 +12345");
        assert_eq!(seqnum_line(3218665143, 12345), "3218665143 +3218652798");
        // hping3 counts a wrap one short.
        assert_eq!(seqnum_line(5, u32::MAX - 1), "         5 +6");
    }

    #[test]
    fn open_port_line_matches_hping3() {
        let probe = syn_probe(2000);
        let reply = syn_ack(2000, 3);
        let seq = probe.sequence(&reply);
        assert_eq!(
            reply_line(
                &probe,
                &reply,
                seq,
                0.44,
                RttPrecision::Hping3,
                false,
                false
            ),
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
            reply_line(&probe, &reply, 1, 100.44, RttPrecision::Hping3, true, false),
            "DUP! len=40 ip=198.18.0.2 ttl=64 DF id=0 sport=80 flags=RA seq=1 win=0 rtt=100.4 ms"
        );
    }

    #[test]
    fn verbose_tcp_line_matches_hping3() {
        let probe = syn_probe(2000);
        let reply = syn_ack(2000, 0);
        assert_eq!(
            reply_line(&probe, &reply, 0, 0.8, RttPrecision::Hping3, false, true),
            "len=44 ip=198.18.0.2 ttl=64 DF id=0 tos=0 iplen=44\n\
             sport=80 flags=SA seq=0 win=64240 rtt=0.8 ms\n\
             seq=3218665143 ack=1001 sum=468c urp=0\n"
        );
    }

    /// The line and the `-V` line of an echo reply to sequence number 2 of a probe to
    /// `endpoints`.
    fn icmp_lines(endpoints: Endpoints, reply: ReplyRecord) -> [String; 2] {
        let probe = IcmpEcho {
            endpoints,
            id: 7,
            message: IcmpMessage::ECHO_REQUEST,
        };
        let reply = ReplyRecord {
            icmp_id: 7,
            icmp_seq: 2,
            ..reply
        };
        let seq = probe.sequence(&reply);
        [
            reply_line(&probe, &reply, seq, 0.61, RttPrecision::Us, false, false),
            reply_line(&probe, &reply, seq, 0.9, RttPrecision::Hping3, false, true),
        ]
    }

    #[test]
    fn icmp_lines_match_hping3() {
        let reply = ReplyRecord {
            src_addr: IpAddress::from_ipv4([198, 18, 0, 2]),
            ip_len: 28,
            ip_id: 403,
            ttl: 64,
            ..ReplyRecord::default()
        };
        assert_eq!(
            icmp_lines(endpoints(), reply),
            [
                "len=28 ip=198.18.0.2 ttl=64 id=403 icmp_seq=2 rtt=0.610 ms",
                "len=28 ip=198.18.0.2 ttl=64 id=403 tos=0 iplen=28\nicmp_seq=2 rtt=0.9 ms"
            ]
        );
        // ICMPv6's the same, less DF and id, and with the flow label under -V.
        let reply = from_ipv6(ReplyRecord {
            ip_len: 48,
            ttl: 63,
            flow_label: 5,
            ..reply
        });
        assert_eq!(
            icmp_lines(ipv6_endpoints(), reply),
            [
                "len=48 ip=2001:db8::2 ttl=63 icmp_seq=2 rtt=0.610 ms",
                "len=48 ip=2001:db8::2 ttl=63 tos=20 flow=0x00005 iplen=48\nicmp_seq=2 rtt=0.9 ms"
            ]
        );
    }

    #[test]
    fn headers_match_hping3() {
        let target = Ipv4Addr::new(198, 18, 0, 2).into();
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
                    id: 1,
                    message: IcmpMessage::ECHO_REQUEST
                }
            ),
            "HPING h (lo 198.18.0.2): icmp mode set, 28 headers + 0 data bytes"
        );
        let data = TcpProbe {
            endpoints: Endpoints {
                payload: Payload::filler(100),
                ..endpoints()
            },
            ..syn_probe(1)
        };
        assert_eq!(
            header("198.18.0.2", "veth0", target, &data),
            "HPING 198.18.0.2 (veth0 198.18.0.2): S set, 40 headers + 100 data bytes"
        );
    }

    fn ipv6_endpoints() -> Endpoints {
        Endpoints {
            source: "2001:db8::1".parse().unwrap(),
            target: "2001:db8::2".parse().unwrap(),
            ..endpoints()
        }
    }

    /// A reply from 2001:db8::2, as the XDP program records IPv6 ones.
    fn from_ipv6(reply: ReplyRecord) -> ReplyRecord {
        ReplyRecord {
            src_addr: IpAddress(
                "2001:db8::2"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            ),
            ip_id: 0,
            ip_frag: 0,
            tos: 0x20,
            ..reply
        }
    }

    #[test]
    fn ipv6_tcp_lines_have_neither_df_nor_id() {
        let probe = TcpProbe {
            endpoints: ipv6_endpoints(),
            ..syn_probe(2000)
        };
        let open = from_ipv6(ReplyRecord {
            ip_len: 64,
            flow_label: 0x2d4f1,
            ..syn_ack(2000, 1)
        });
        assert_eq!(
            reply_line(&probe, &open, 1, 0.44, RttPrecision::Hping3, false, false),
            "len=64 ip=2001:db8::2 ttl=64 sport=80 flags=SA seq=1 win=64240 rtt=0.4 ms"
        );
        let closed = ReplyRecord {
            ip_len: 60,
            tcp_flags: TcpFlags::RST | TcpFlags::ACK,
            tcp_window: 0,
            ..open
        };
        assert_eq!(
            reply_line(&probe, &closed, 1, 0.5, RttPrecision::Us, true, false),
            "DUP! len=60 ip=2001:db8::2 ttl=64 sport=80 flags=RA seq=1 win=0 rtt=0.500 ms"
        );
        assert_eq!(
            reply_line(&probe, &open, 1, 0.8, RttPrecision::Hping3, false, true),
            "len=64 ip=2001:db8::2 ttl=64 tos=20 flow=0x2d4f1 iplen=64\n\
             sport=80 flags=SA seq=1 win=64240 rtt=0.8 ms\n\
             seq=3218665143 ack=1001 sum=468c urp=0\n"
        );
    }

    #[test]
    fn ipv6_headers_count_the_ipv6_header() {
        let target = "2001:db8::2".parse().unwrap();
        let syn = TcpProbe {
            endpoints: ipv6_endpoints(),
            ..syn_probe(1)
        };
        assert_eq!(
            header("2001:db8::2", "veth0", target, &syn),
            "HPING 2001:db8::2 (veth0 2001:db8::2): S set, 60 headers + 0 data bytes"
        );
        let echo = IcmpEcho {
            endpoints: ipv6_endpoints(),
            id: 1,
            message: IcmpMessage::ECHO_REQUEST,
        };
        assert_eq!(
            header("v6.example", "veth0", target, &echo),
            "HPING v6.example (veth0 2001:db8::2): icmp mode set, 48 headers + 0 data bytes"
        );
    }

    #[test]
    fn footer_matches_hping3() {
        let mut rtt = RttStats::default();
        for micros in [400, 900, 600] {
            rtt.add(micros * 1000);
        }
        let summary = Summary {
            transmitted: 3,
            received: 3,
            rtt,
            ..Summary::default()
        };
        assert_eq!(
            footer("localhost", &summary, RttPrecision::Hping3),
            "\n--- localhost hping statistic ---\n\
             3 packets transmitted, 3 packets received, 0% packet loss\n\
             round-trip min/avg/max = 0.4/0.6/0.9 ms"
        );
        let silent = Summary {
            transmitted: 2,
            ..Summary::default()
        };
        assert!(footer("h", &silent, RttPrecision::Us).ends_with(
            "2 packets transmitted, 0 packets received, 100% packet loss\n\
             round-trip min/avg/max = 0.000/0.000/0.000 ms"
        ));
    }

    #[test]
    fn ring_buffer_losses_are_reported_and_unknown_ones_are_not_zero() {
        let lost = Summary {
            ring_full: Reading::Count(3),
            ..Summary::default()
        };
        assert_eq!(
            losses(&lost).as_deref(),
            Some("3 replies lost: the XDP ring buffer was full")
        );
        assert_eq!(losses(&Summary::default()), None);
    }
    #[test]
    fn icmp_errors_read_as_hping3_prints_them() {
        use IcmpErrorKind::*;
        let router: IpAddr = "198.18.100.2".parse().unwrap();
        let router6: IpAddr = "2001:db8::9".parse().unwrap();
        for (error, code, from, want) in [
            (
                PortUnreachable,
                3,
                router,
                "ICMP Port Unreachable from ip=198.18.100.2",
            ),
            (
                HostUnreachable,
                1,
                router,
                "ICMP Host Unreachable from ip=198.18.100.2",
            ),
            (
                NetUnreachable,
                0,
                router,
                "ICMP Network Unreachable from ip=198.18.100.2",
            ),
            (
                ProtocolUnreachable,
                2,
                router,
                "ICMP Protocol Unreachable from ip=198.18.100.2",
            ),
            (
                AdminProhibited,
                13,
                router,
                "ICMP Packet filtered from ip=198.18.100.2",
            ),
            (
                AdminProhibited,
                9,
                router,
                "ICMP Unreachable type=9 from ip=198.18.100.2",
            ),
            (
                AdminProhibited,
                1,
                router6,
                "ICMP Packet filtered from ip=2001:db8::9",
            ),
            (
                PortUnreachable,
                4,
                router6,
                "ICMP Port Unreachable from ip=2001:db8::9",
            ),
            (
                TimeExceeded,
                0,
                router,
                "TTL 0 during transit from ip=198.18.100.2",
            ),
        ] {
            assert_eq!(icmp_error_line(error, code, from), want);
        }
    }
}
