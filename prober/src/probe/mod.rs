//! Probe kinds, in the manner of zmap's probe modules: each kind is one module that builds its
//! probes (for one target, and for a sweep's positions), tells the XDP program what its
//! replies look like, and reads, classifies and names them. The runs call the kind; none of
//! them tests a protocol. The eBPF side has one module per kind as well.

mod icmp;
mod ip;
pub mod neighbour;
mod payload;
mod raw_ip;
mod tcp;
mod udp;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use anyhow::Result;
use prober_common::{siphash_2_4, wire::IcmpErrorKind, ProbeFilter, ReplyRecord, MODE_SWEEP};

pub use icmp::{IcmpEcho, IcmpEchoSweep, IcmpMessage};
pub use ip::{for_each_fragment, set_ttl, FRAGMENT_PAYLOAD};
pub use payload::Payload;
pub use raw_ip::{RawIp, DEFAULT_PROTOCOL as DEFAULT_RAW_IP_PROTOCOL};
pub use tcp::{DestPort, PortStep, ProbePorts, TcpFlags, TcpProbe, TcpScan, TcpSegment, TcpSweep};
pub use udp::{UdpProbe, UdpSweep};

/// Longest sweep probe (IPv6 + TCP, no payload).
pub const MAX_PROBE_LEN: usize = 60;

/// Room for one sweep probe.
pub type ProbeBuffer = [u8; MAX_PROBE_LEN];

/// The IP header fields a one-target run's options set (hping3's -N, -o, -y).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpFields {
    /// Every probe's IPv4 identification (-N); None: counting up from a random one.
    pub id: Option<u16>,
    /// IPv4's type of service byte, IPv6's traffic class (-o).
    pub tos: u8,
    /// IPv4's don't-fragment bit (-y); IPv6 routers never fragment.
    pub dont_fragment: bool,
}

/// Fields every one-target probe shares.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// The probes' source address, of the target's family: ours, or -a's; replies are taken
    /// when they come to it.
    pub source: IpAddr,
    /// --rand-source: the key that makes probe `n`'s source a random address of `source`'s
    /// family (a keyed hash of `n`); None: every probe from `source`.
    pub random_source: Option<[u64; 2]>,
    pub target: IpAddr,
    pub ttl: u8,
    /// IP identification of the first probe; later probes count up from it (IPv4), unless
    /// `fields` fixes it.
    pub first_ip_id: u16,
    pub fields: IpFields,
    /// What the probes carry after their transport header (-d, -E).
    pub payload: Payload,
    /// Every probe of one flow, as a traceroute's (paris-traceroute's way): the addresses,
    /// the protocol and the first four transport bytes, which routers hash to choose among
    /// equal-cost paths, the same in every probe (TCP's ports; ICMP's type, code and
    /// checksum), so that all follow one path, the one the service's traffic takes. The
    /// kind tells its probes apart by a field no router hashes.
    pub one_flow: bool,
}

impl Endpoints {
    /// The source address of probe `n`.
    fn source_of(&self, n: u64) -> IpAddr {
        let Some(key) = self.random_source else {
            return self.source;
        };
        let bits = |half: u8| {
            let [b0, b1, b2, b3, b4, b5, b6, b7] = n.to_le_bytes();
            siphash_2_4(key, &[b0, b1, b2, b3, b4, b5, b6, b7, half])
        };
        match self.source {
            IpAddr::V4(_) => Ipv4Addr::from(bits(0) as u32).into(),
            IpAddr::V6(_) => Ipv6Addr::from(u128::from(bits(0)) << 64 | u128::from(bits(1))).into(),
        }
    }

    /// What tells probe `n`'s IP header from its neighbours'.
    fn mark(&self, n: u64) -> ip::IpMark {
        ip::IpMark::Id {
            id: self
                .fields
                .id
                .unwrap_or_else(|| self.first_ip_id.wrapping_add(n as u16)),
            dont_fragment: self.fields.dont_fragment,
        }
    }

    /// The IP header of probe `n`, with `payload_len` bytes of `protocol` after it.
    fn ip_header(&self, n: u64, transport: ip::Transport, payload_len: u16) -> ip::IpHeader {
        ip::IpHeader::new(
            self.source_of(n),
            self.target,
            self.ttl,
            self.fields.tos,
            self.mark(n),
            transport,
            payload_len,
        )
    }

    /// The filter's part every kind shares.
    fn filter(&self) -> ProbeFilter {
        ProbeFilter {
            target_addr: self.target.into(),
            local_addr: self.source.into(),
            one_flow: u8::from(self.one_flow),
            ..ProbeFilter::default()
        }
    }
}

/// A one-target run's probes (hping3's ping).
pub trait PingProbe: Send + Sync {
    /// hping3's word for the mode in its header, e.g. `S set` or `icmp mode set`.
    fn mode(&self) -> String;

    /// Writes the IP packet of probe number `n` into `buf` (room for the headers and the
    /// payload) and returns its length.
    fn build(&self, n: u64, buf: &mut [u8]) -> usize;

    /// What the XDP program matches this run's replies with.
    fn filter(&self) -> ProbeFilter;

    /// The data each probe carries after its headers.
    fn payload(&self) -> &Payload;

    /// The data bytes each probe carries after its transport header, as hping3's header line
    /// counts them: the payload, and whatever else the kind puts there (UDP of one flow over
    /// IPv6: two bytes that steer the checksum).
    fn data_len(&self) -> usize {
        self.payload().size()
    }

    /// The length of the headers hping3's header line gives: what is built, less the data
    /// and the transport options.
    fn headers_len(&self) -> usize {
        self.build(0, &mut self.buffer()) - self.data_len() - self.options_len()
    }

    /// Room to build one of its probes in.
    fn buffer(&self) -> Vec<u8> {
        vec![0; MAX_PROBE_LEN + self.options_len() + self.data_len()]
    }

    /// The bytes of transport options its probes carry, which hping3's header line leaves
    /// out of its count.
    fn options_len(&self) -> usize {
        0
    }

    /// hping3's sequence number of the probe a reply answers.
    fn sequence(&self, reply: &ReplyRecord) -> u16;

    /// Whether a reply the XDP program matched answers the probes as they go now; taking it
    /// may move the kind on (`-p +N`: the next port).
    fn take(&self, _reply: &ReplyRecord) -> bool {
        true
    }

    /// Whether `reply` says which probe it answers. When it does not (a UDP answer to probes
    /// of one flow, which all leave from one port), it is the latest probe's, timed from that
    /// probe's send as the send thread noted it rather than by the kernel's departure.
    fn names_its_probe(&self, _reply: &ReplyRecord) -> bool {
        true
    }

    /// hping3's sequence number of probe `n`: what [`PingProbe::sequence`] gives its replies.
    fn sequence_of(&self, n: u64) -> u16 {
        n as u16
    }

    /// Appends the kind's fields of a reply line (before `rtt=`).
    fn write_fields(&self, reply: &ReplyRecord, seq: u16, line: &mut String);

    /// Appends what `-V` adds after `rtt=`.
    fn write_verbose_trailer(&self, _reply: &ReplyRecord, _line: &mut String) {}

    /// Appends what follows the line of an ICMP `error` about probe `seq` (UDP's probe names).
    fn write_error_trailer(
        &self,
        _error: IcmpErrorKind,
        _reply: &ReplyRecord,
        _seq: u16,
        _line: &mut String,
    ) {
    }

    /// Whether an ICMP `error` counts in the round-trip figures: hping3 times unreachables in
    /// UDP mode only.
    fn times_error(&self, _error: IcmpErrorKind) -> bool {
        false
    }

    /// Appends the lines hping3 prints below a reply's (each after a line break): a
    /// timestamp reply's timestamps, an address mask reply's mask.
    fn write_after(&self, _reply: &ReplyRecord, _lines: &mut String) {}
}

/// What a one-target run sends, as the command line asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingKind {
    Tcp {
        flags: TcpFlags,
        port: u16,
        port_step: PortStep,
        /// None picks a random base source port, as hping3 does.
        base_port: Option<u16>,
        keep_port: bool,
        window: u16,
        /// The sequence and acknowledgement numbers every probe carries (-M, -L); None: random.
        seq: Option<u32>,
        ack: Option<u32>,
        /// hping3's --tcp-timestamp: every probe carries a timestamp option.
        timestamp: bool,
    },
    Icmp(IcmpMessage),
    Udp {
        port: u16,
        port_step: PortStep,
        /// None picks a random base source port, as hping3 does.
        base_port: Option<u16>,
        keep_port: bool,
    },
    /// Bare IP headers of this protocol (hping3's -0 -H).
    RawIp {
        protocol: u8,
    },
}

impl PingKind {
    /// Whether this kind can probe `target` (some are IPv4's only): what [`PingKind::probe`]
    /// would refuse, said before anything is set up.
    pub fn check_target(&self, target: IpAddr) -> Result<()> {
        match *self {
            PingKind::Tcp { .. } | PingKind::Udp { .. } => Ok(()),
            PingKind::Icmp(message) => message.types(target).map(|_| ()),
            PingKind::RawIp { .. } => raw_ip::check_target(target),
        }
    }

    pub fn probe(&self, endpoints: Endpoints) -> Result<Arc<dyn PingProbe>> {
        Ok(match *self {
            PingKind::Tcp {
                flags,
                port,
                port_step,
                base_port,
                keep_port,
                window,
                seq,
                ack,
                timestamp,
            } => {
                let ports = ProbePorts::new(DestPort::new(port, port_step), base_port, keep_port)?;
                let random = TcpProbe::new(endpoints, flags, ports, window)?;
                Arc::new(TcpProbe {
                    seq: seq.unwrap_or(random.seq),
                    ack: ack.unwrap_or(random.ack),
                    timestamp: match timestamp {
                        true => Some(crate::random()? as u32),
                        false => None,
                    },
                    ..random
                })
            }
            PingKind::Icmp(message) => Arc::new(IcmpEcho::new(endpoints, message)?),
            PingKind::RawIp { protocol } => Arc::new(RawIp::new(endpoints, protocol)?),
            PingKind::Udp {
                port,
                port_step,
                base_port,
                keep_port,
            } => Arc::new(UdpProbe::new(
                endpoints,
                ProbePorts::new(DestPort::new(port, port_step), base_port, keep_port)?,
            )),
        })
    }
}

/// A sweep's probes: one per (host, port), told apart by cookies rather than state.
pub trait SweepProbe: Send + Sync {
    /// The transport's name in results (`tcp`).
    fn protocol(&self) -> &'static str;

    /// What the XDP program matches the sweep's replies with.
    fn filter(&self) -> ProbeFilter;

    /// Writes the probe to `target:port` leaving from `source_port` in `epoch` (see
    /// [`ip::IpMark::Epoch`]) into `buf`.
    fn build(
        &self,
        target: IpAddr,
        port: u16,
        source_port: u16,
        epoch: u16,
        buf: &mut ProbeBuffer,
    ) -> BuiltProbe;

    /// What a reply the XDP program matched says.
    fn classify(&self, reply: &ReplyRecord) -> Answer;

    /// What no reply after `--wait` says.
    fn silence(&self) -> Verdict;

    /// Whether results name ports: a kind without them probes each host once, and its
    /// results have `port` null.
    fn has_ports(&self) -> bool {
        true
    }

    /// Whether a reply the XDP program matched echoes its probe's cookie, which vouches for
    /// it; otherwise (UDP) it is taken only at the source port its probe left from.
    fn vouched_by_cookie(&self) -> bool {
        true
    }
}

/// What a sweep sends, as the command line asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepKind {
    /// SYNs (hping3's -8 -S, nmap's -sS; the default).
    TcpSyn {
        window: u16,
    },
    Udp,
    /// Probes carrying ACK (-A, nmap's -sA): which ports a firewall lets through.
    TcpAck {
        flags: TcpFlags,
        window: u16,
    },
    /// Probes with neither SYN nor ACK (-F, -F -P -U: nmap's -sF, -sX).
    TcpFin {
        flags: TcpFlags,
        window: u16,
    },
    /// Echo requests (-1; zmap's icmp_echoscan): an echo reply says the host is up.
    IcmpEcho,
}

/// A sweep's fixed parts, which its probes share.
#[derive(Clone, Copy, Debug)]
pub struct SweepEndpoints {
    /// Our address, of the targets' family.
    pub source: IpAddr,
    pub ttl: u8,
    /// IPv4's type of service, IPv6's traffic class.
    pub tos: u8,
    /// The key of the probes' cookies.
    pub cookie_key: [u64; 2],
    /// The sweep's source ports: `first_source_port ..= first_source_port + source_ports - 1`.
    pub first_source_port: u16,
    pub source_ports: u16,
}

impl SweepEndpoints {
    /// The filter's part every sweep kind shares: our address, the source-port block (a
    /// probe's slot), the cookies' key.
    /// The IP header of a probe to `target` in `epoch` with `len` bytes of `transport`.
    fn ip_header(
        &self,
        target: IpAddr,
        epoch: u16,
        transport: ip::Transport,
        len: u16,
    ) -> ip::IpHeader {
        ip::IpHeader::new(
            self.source,
            target,
            self.ttl,
            self.tos,
            ip::IpMark::Epoch(epoch),
            transport,
            len,
        )
    }

    fn filter(&self, kind: u8) -> ProbeFilter {
        ProbeFilter {
            local_addr: self.source.into(),
            kind,
            mode: MODE_SWEEP,
            sport_base: self.first_source_port,
            sport_max_offset: self.source_ports - 1,
            cookie_key: self.cookie_key,
            ..ProbeFilter::default()
        }
    }
}

impl SweepKind {
    pub fn probe(&self, endpoints: SweepEndpoints) -> Arc<dyn SweepProbe> {
        let (scan, flags, window) = match *self {
            SweepKind::TcpSyn { window } => (TcpScan::Syn, TcpFlags(TcpFlags::SYN), window),
            SweepKind::TcpAck { flags, window } => (TcpScan::Ack, flags, window),
            SweepKind::TcpFin { flags, window } => (TcpScan::Fin, flags, window),
            SweepKind::IcmpEcho => return Arc::new(IcmpEchoSweep { endpoints }),
            SweepKind::Udp => return Arc::new(UdpSweep::new(endpoints)),
        };
        Arc::new(TcpSweep::new(endpoints, scan, flags, window))
    }
}

/// A sweep probe as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltProbe {
    pub len: usize,
    /// The cookie it carries, which its replies echo.
    pub cookie: u32,
}

/// What a reply says about the (host, port) it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub host: IpAddr,
    pub port: u16,
    /// The source port of the probe it answers, which with the target names that probe.
    pub source_port: u16,
    /// The cookie of the probe it answers, as the reply echoes it.
    pub cookie: u32,
    pub verdict: Verdict,
    pub fields: ReplyFields,
}

/// A result's status and, in zmap's and nmap's words, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub reason: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    Closed,
    Filtered,
    /// Open or filtered: what silence says where an open port would not answer either (UDP,
    /// FIN scans).
    OpenFiltered,
    /// Not filtered, open or closed: what a port's answer to an ACK says.
    Unfiltered,
    /// A host's: it answered an echo request (nmap's "Host is up").
    Up,
    /// A host's: no echo reply came.
    Down,
}

impl Status {
    /// The word every format prints (nmap's).
    pub fn word(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Closed => "closed",
            Status::Filtered => "filtered",
            Status::OpenFiltered => "open|filtered",
            Status::Unfiltered => "unfiltered",
            Status::Up => "up",
            Status::Down => "down",
        }
    }
}

/// The header fields a reply's result shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyFields {
    pub ttl: u8,
    /// IPv4's identification; IPv6 has none.
    pub ip_id: Option<u16>,
    /// TCP's window; None for a kind without one (ICMP).
    pub window: Option<u16>,
    pub ip_len: u16,
    pub tcp_flags: u8,
    /// None when the probe's send time is unknown (not seen by TC egress, and forgotten by
    /// userspace).
    pub rtt_ns: Option<u64>,
    /// When the reply reached XDP (CLOCK_MONOTONIC).
    pub kernel_ns: u64,
    /// Who sent the ICMP error the reply is (the target, or a router on the way); None for a
    /// direct answer.
    pub icmp_from: Option<IpAddr>,
}

impl ReplyFields {
    /// What a sweep's result shows of `reply`, with TCP's `window` (the others have none);
    /// its round trip is the collector's to fill in.
    fn of(reply: &ReplyRecord, window: Option<u16>) -> ReplyFields {
        ReplyFields {
            ttl: reply.ttl,
            ip_id: reply.src_addr.ipv4().map(|_| reply.ip_id),
            window,
            ip_len: reply.ip_len,
            tcp_flags: reply.tcp_flags,
            rtt_ns: None,
            kernel_ns: reply.kernel_ns,
            icmp_from: reply.icmp_error().map(|_| reply.icmp_from.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use prober_common::{
        syn_cookie, wire::IpVersion, IpAddress, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
        KIND_ICMP_ECHO, KIND_TCP, KIND_UDP, MODE_SWEEP,
    };
    use prober_tests::internet_checksum;

    use super::{ip::IpMark, *};

    fn endpoints() -> Endpoints {
        Endpoints {
            source: Ipv4Addr::new(198, 18, 0, 1).into(),
            random_source: None,
            target: Ipv4Addr::new(198, 18, 0, 2).into(),
            ttl: 63,
            first_ip_id: 0xfffe,
            fields: IpFields::default(),
            payload: Payload::default(),
            one_flow: false,
        }
    }

    fn syn(keep_port: bool) -> TcpProbe {
        TcpProbe {
            endpoints: endpoints(),
            flags: TcpFlags(TcpFlags::SYN),
            ports: ProbePorts {
                target: DestPort::new(443, PortStep::Fixed),
                base: 65534,
                keep: keep_port,
            },
            window: 512,
            seq: 0x0102_0304,
            ack: 0x0a0b_0c0d,
            timestamp: None,
        }
    }

    fn build(probe: &dyn PingProbe, n: u64) -> Vec<u8> {
        let mut buf = probe.buffer();
        let length = probe.build(n, &mut buf);
        buf[..length].to_vec()
    }

    fn assert_ipv4_header(packet: &[u8], protocol: u8, n: u16) {
        assert_eq!(packet[0], 0x45, "IPv4, 20-byte header");
        assert_eq!(
            u16::from_be_bytes([packet[2], packet[3]]) as usize,
            packet.len()
        );
        assert_eq!(
            u16::from_be_bytes([packet[4], packet[5]]),
            0xfffe_u16.wrapping_add(n)
        );
        assert_eq!(packet[8], 63, "ttl");
        assert_eq!(packet[9], protocol);
        assert_eq!(&packet[12..16], &[198, 18, 0, 1]);
        assert_eq!(&packet[16..20], &[198, 18, 0, 2]);
        assert_eq!(internet_checksum(&packet[..20]), 0, "IP header checksum");
    }

    #[test]
    fn tcp_syn_probe_is_well_formed() {
        let probe = syn(false);
        for n in [0u64, 1, 2, 70_000] {
            let packet = build(&probe, n);
            assert_eq!(packet.len(), 40);
            assert_ipv4_header(&packet, 6, n as u16);
            let tcp = &packet[20..];
            let source_port = u16::from_be_bytes([tcp[0], tcp[1]]);
            assert_eq!(
                source_port,
                65534_u16.wrapping_add(n as u16),
                "source port counts up and wraps"
            );
            assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 443);
            assert_eq!(
                u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
                0x0102_0304
            );
            assert_eq!(
                u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
                0x0a0b_0c0d
            );
            assert_eq!(tcp[12] >> 4, 5, "no options");
            assert_eq!(tcp[13], TcpFlags::SYN);
            assert_eq!(u16::from_be_bytes([tcp[14], tcp[15]]), 512);
            let pseudo_header = [&packet[12..20], &[0, 6], &20u16.to_be_bytes()[..]].concat();
            assert_eq!(
                internet_checksum(&[&pseudo_header[..], tcp].concat()),
                0,
                "TCP checksum"
            );
        }
    }

    #[test]
    fn keep_port_holds_the_source_port() {
        let probe = syn(true);
        for n in 0..3 {
            let packet = build(&probe, n);
            assert_eq!(u16::from_be_bytes([packet[20], packet[21]]), 65534);
        }
        let filter = probe.filter();
        assert_eq!(filter.sport_max_offset, 0);
        assert_eq!(filter.kind, KIND_TCP);
        assert_eq!(filter.target_addr, IpAddress::from_ipv4([198, 18, 0, 2]));
        assert_eq!(filter.local_addr, IpAddress::from_ipv4([198, 18, 0, 1]));
    }

    /// The destination port of probe `n`.
    fn target_port_of(probe: &dyn PingProbe, n: u64) -> u16 {
        let packet = build(probe, n);
        u16::from_be_bytes([packet[22], packet[23]])
    }

    #[test]
    fn plus_plus_n_moves_the_port_with_each_probe() {
        let probe = TcpProbe {
            ports: ProbePorts {
                target: DestPort::new(65535, PortStep::PerProbe),
                ..syn(false).ports
            },
            ..syn(false)
        };
        let ports: Vec<u16> = (0..3).map(|n| target_port_of(&probe, n)).collect();
        assert_eq!(
            ports,
            [65535, 0, 1],
            "up by one per probe, wrapping as hping3's"
        );
        let filter = probe.filter();
        assert!(filter.probes_port(65535) && filter.probes_port(1) && filter.probes_port(80));
        let from = |src_port| ReplyRecord {
            src_port,
            ..ReplyRecord::default()
        };
        assert!(
            probe.take(&from(0)) && probe.take(&from(0)),
            "any port probed"
        );
        assert_eq!(target_port_of(&probe, 1), 0, "replies do not move it");
    }

    #[test]
    fn plus_n_moves_the_port_with_each_reply_from_the_port_probed() {
        let probe = TcpProbe {
            ports: ProbePorts {
                target: DestPort::new(80, PortStep::PerReply),
                ..syn(false).ports
            },
            ..syn(false)
        };
        let from = |src_port| ReplyRecord {
            src_port,
            ..ReplyRecord::default()
        };
        assert_eq!(
            (target_port_of(&probe, 0), target_port_of(&probe, 1)),
            (80, 80)
        );
        assert!(!probe.take(&from(81)), "not the port probed now");
        assert!(probe.take(&from(80)));
        assert_eq!(target_port_of(&probe, 2), 81);
        assert!(
            !probe.take(&from(80)),
            "a late reply from the port left behind"
        );
        assert!(probe.take(&from(81)));
        assert_eq!(target_port_of(&probe, 3), 82);
        assert!(probe.filter().probes_port(82), "the programs take any port");
    }

    #[test]
    fn a_fixed_port_is_the_only_one_replies_come_from() {
        let filter = syn(false).filter();
        assert!(filter.probes_port(443));
        assert!(!filter.probes_port(444) && !filter.probes_port(442));
    }

    #[test]
    fn ip_fields_land_in_the_header_of_every_kind() {
        let fields = IpFields {
            id: Some(1234),
            tos: 0x10,
            dont_fragment: true,
        };
        let tcp = TcpProbe {
            endpoints: Endpoints {
                fields,
                ..endpoints()
            },
            ..syn(false)
        };
        let icmp = IcmpEcho {
            endpoints: Endpoints {
                fields,
                ..endpoints()
            },
            id: 1,
            message: IcmpMessage::ECHO_REQUEST,
        };
        for probe in [&tcp as &dyn PingProbe, &icmp] {
            for n in 0..3 {
                let packet = build(probe, n);
                assert_eq!(packet[1], 0x10, "TOS");
                assert_eq!(
                    u16::from_be_bytes([packet[4], packet[5]]),
                    1234,
                    "-N: every probe's"
                );
                assert_eq!(
                    u16::from_be_bytes([packet[6], packet[7]]),
                    0x4000,
                    "DF, offset 0"
                );
                assert_eq!(internet_checksum(&packet[..20]), 0, "IP header checksum");
            }
        }
        let plain = build(&syn(false), 0);
        assert_eq!((plain[1], plain[6]), (0, 0), "no TOS, no DF by default");
        let v6 = TcpProbe {
            endpoints: Endpoints {
                fields,
                ..ipv6_endpoints()
            },
            ..syn(false)
        };
        let packet = build(&v6, 0);
        let traffic_class = (u16::from_be_bytes([packet[0], packet[1]]) >> 4) as u8;
        assert_eq!(traffic_class, 0x10, "IPv6's traffic class");
    }

    #[test]
    fn probes_carry_their_data_in_length_and_checksums() {
        let with = |payload: Payload| Endpoints {
            payload,
            ..endpoints()
        };
        let filler = TcpProbe {
            endpoints: with(Payload::filler(100)),
            ..syn(false)
        };
        let packet = build(&filler, 0);
        assert_eq!(packet.len(), 140, "-d 100: 40 headers + 100 data bytes");
        assert_ipv4_header(&packet, 6, 0);
        assert_eq!(&packet[40..], &[b'X'; 100][..], "hping3's filler");
        let pseudo_header = [&packet[12..20], &[0, 6], &120u16.to_be_bytes()[..]].concat();
        assert_eq!(
            internet_checksum(&[&pseudo_header[..], &packet[20..]].concat()),
            0,
            "the TCP checksum covers the data"
        );
        assert_eq!(filler.filter().tcp_data_len, 100, "a RST acknowledges it");
        let file = TcpProbe {
            endpoints: with(Payload::from_file(b"abcdefg", 3)),
            ..syn(false)
        };
        assert_eq!(
            &build(&file, 2)[40..],
            b"g\0\0",
            "-E: the file, -d bytes a probe"
        );
        let icmp = IcmpEcho {
            endpoints: with(Payload::from_file(b"abcdefg", 3)),
            id: 1,
            message: IcmpMessage::ECHO_REQUEST,
        };
        let packet = build(&icmp, 1);
        assert_eq!(packet.len(), 31);
        assert_ipv4_header(&packet, 1, 1);
        assert_eq!(&packet[28..], b"def");
        assert_eq!(internet_checksum(&packet[20..]), 0, "ICMP checksum");
        let v6 = IcmpEcho {
            endpoints: Endpoints {
                payload: Payload::filler(5),
                ..ipv6_endpoints()
            },
            id: 1,
            message: IcmpMessage::ECHO_REQUEST,
        };
        let packet = build(&v6, 0);
        assert_eq!(packet.len(), 53);
        assert_ipv6_header(&packet, 58);
    }

    #[test]
    fn sweep_syns_carry_the_tos() {
        let probe = syn_sweep(
            SweepEndpoints {
                tos: 0xb8,
                ..sweep_endpoints()
            },
            1024,
        );
        let mut buf = [0u8; MAX_PROBE_LEN];
        let built = probe.build(Ipv4Addr::new(198, 18, 7, 9).into(), 80, 61441, 7, &mut buf);
        assert_eq!(buf[1], 0xb8);
        assert_eq!(internet_checksum(&buf[..20]), 0, "IP header checksum");
        assert_eq!(built.len, 40);
    }

    #[test]
    fn set_seq_and_ack_are_every_probes_and_the_filters() {
        let kind = PingKind::Tcp {
            flags: TcpFlags(TcpFlags::ACK),
            port: 80,
            port_step: PortStep::Fixed,
            base_port: Some(1000),
            keep_port: false,
            window: 64,
            seq: Some(0xdead_beef),
            ack: Some(7),
            timestamp: false,
        };
        let probe = kind.probe(endpoints()).unwrap();
        for n in 0..2 {
            let tcp = &build(probe.as_ref(), n)[20..];
            assert_eq!(
                u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
                0xdead_beef
            );
            assert_eq!(u32::from_be_bytes(tcp[8..12].try_into().unwrap()), 7);
        }
        let filter = probe.filter();
        assert_eq!(
            (filter.tcp_seq, filter.tcp_ack),
            (0xdead_beef, 7),
            "what XDP matches"
        );
    }

    /// The fragments `for_each_fragment` makes of `packet`.
    fn fragments_of(packet: &[u8]) -> Vec<Vec<u8>> {
        let mut fragments = Vec::new();
        for_each_fragment(packet, |fragment| {
            fragments.push(fragment.to_vec());
            Ok::<(), ()>(())
        })
        .unwrap();
        fragments
    }

    #[test]
    fn fragments_carry_sixteen_bytes_each_and_reassemble_into_the_probe() {
        let probe = TcpProbe {
            endpoints: Endpoints {
                fields: IpFields {
                    dont_fragment: true,
                    ..IpFields::default()
                },
                payload: Payload::filler(20),
                ..endpoints()
            },
            ..syn(false)
        };
        let packet = build(&probe, 1);
        assert_eq!(packet.len(), 60);
        let fragments = fragments_of(&packet);
        assert_eq!(
            fragments.iter().map(Vec::len).collect::<Vec<_>>(),
            [36, 36, 28],
            "16, 16 and the last 8 of the 40 bytes after the IP header"
        );
        let mut reassembled = Vec::new();
        for (index, fragment) in fragments.iter().enumerate() {
            assert_eq!(&fragment[..2], &packet[..2], "version, length, TOS");
            assert_eq!(
                usize::from(u16::from_be_bytes([fragment[2], fragment[3]])),
                fragment.len()
            );
            assert_eq!(&fragment[4..6], &packet[4..6], "the probe's identification");
            let flags_offset = u16::from_be_bytes([fragment[6], fragment[7]]);
            let more = if index < 2 { 0x2000 } else { 0 };
            assert_eq!(flags_offset, more | (2 * index as u16), "MF, no DF, offset");
            assert_eq!(&fragment[8..10], &packet[8..10], "TTL, protocol");
            assert_eq!(&fragment[12..20], &packet[12..20], "addresses");
            assert_eq!(internet_checksum(&fragment[..20]), 0, "header checksum");
            reassembled.extend_from_slice(&fragment[20..]);
        }
        assert_eq!(
            reassembled,
            packet[20..],
            "the probe's TCP segment and data"
        );
    }

    #[test]
    fn a_probe_of_sixteen_bytes_or_less_goes_whole() {
        let echo = IcmpEcho {
            endpoints: endpoints(),
            id: 7,
            message: IcmpMessage::new(8, 0).unwrap(),
        };
        let packet = build(&echo, 0);
        assert_eq!(fragments_of(&packet), [packet]);
    }

    #[test]
    fn random_sources_differ_per_probe_and_keep_the_checksums_right() {
        let probe = TcpProbe {
            endpoints: Endpoints {
                random_source: Some([3, 4]),
                ..endpoints()
            },
            ..syn(false)
        };
        let packets: Vec<Vec<u8>> = (0..4).map(|n| build(&probe, n)).collect();
        let mut sources: Vec<&[u8]> = packets.iter().map(|packet| &packet[12..16]).collect();
        assert!(!sources.contains(&&[198, 18, 0, 1][..]), "not ours");
        for packet in &packets {
            assert_eq!(internet_checksum(&packet[..20]), 0, "IP header checksum");
            let pseudo_header = [&packet[12..20], &[0, 6], &20u16.to_be_bytes()[..]].concat();
            let segment = [&pseudo_header[..], &packet[20..]].concat();
            assert_eq!(internet_checksum(&segment), 0, "TCP checksum");
        }
        assert_eq!(build(&probe, 2), packets[2], "probe n's source is fixed");
        sources.dedup();
        assert_eq!(sources.len(), 4, "one source per probe");
        assert_eq!(
            probe.filter().local_addr,
            IpAddress::from_ipv4([198, 18, 0, 1]),
            "no reply to a random source is taken"
        );
        let echo = IcmpEcho {
            endpoints: Endpoints {
                random_source: Some([3, 4]),
                ..ipv6_endpoints()
            },
            id: 1,
            message: IcmpMessage::new(8, 0).unwrap(),
        };
        let (first, second) = (build(&echo, 0), build(&echo, 1));
        assert_ne!(first[8..24], second[8..24], "IPv6 sources too");
        assert_eq!(
            ipv6_upper_layer_checksum(&first),
            0,
            "over the random source"
        );
    }

    #[test]
    fn tcp_timestamp_probes_carry_hping3s_option() {
        for (endpoints, ip_len) in [(endpoints(), 20), (ipv6_endpoints(), 40)] {
            let probe = TcpProbe {
                endpoints,
                timestamp: Some(u32::MAX),
                ..syn(false)
            };
            for n in 0..2 {
                let packet = build(&probe, n);
                assert_eq!(packet.len(), ip_len + 32, "a 32-byte TCP header");
                let tcp = &packet[ip_len..];
                assert_eq!(tcp[12] >> 4, 8, "data offset");
                let tsval = u32::MAX.wrapping_add(n as u32).to_be_bytes();
                let options = [&[1, 1, 8, 10][..], &tsval, &[0; 4]].concat();
                assert_eq!(&tcp[20..], &options[..], "NOP, NOP, TSval, TSecr 0");
                if ip_len == 20 {
                    assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 52);
                    let pseudo_header =
                        [&packet[12..20], &[0, 6], &32u16.to_be_bytes()[..]].concat();
                    assert_eq!(internet_checksum(&[&pseudo_header[..], tcp].concat()), 0);
                } else {
                    assert_eq!(ipv6_upper_layer_checksum(&packet), 0);
                }
            }
            assert_eq!(probe.filter().tcp_timestamp, 1, "replies' TSval recorded");
            assert_eq!(probe.options_len(), 12);
        }
        assert_eq!(syn(false).filter().tcp_timestamp, 0);
    }

    #[test]
    fn a_built_probe_takes_another_ttl_with_its_checksums_right() {
        for endpoints in [endpoints(), ipv6_endpoints()] {
            let probe = syn(false);
            let probe = TcpProbe { endpoints, ..probe };
            let built = build(&probe, 1);
            let mut traced = built.clone();
            set_ttl(&mut traced, 7);
            if built[0] >> 4 == 4 {
                assert_eq!(traced[8], 7);
                assert_eq!(internet_checksum(&traced[..20]), 0, "IP header checksum");
                assert_eq!((&traced[..8], &traced[12..]), (&built[..8], &built[12..]));
            } else {
                assert_eq!(traced[7], 7, "hop limit");
                assert_eq!(ipv6_upper_layer_checksum(&traced), 0, "TCP checksum");
                assert_eq!((&traced[..7], &traced[8..]), (&built[..7], &built[8..]));
            }
        }
    }

    #[test]
    fn one_flows_tcp_probes_keep_their_port_and_number_their_sequence() {
        let unkept = syn(false);
        let one_flow = Endpoints {
            one_flow: true,
            ..endpoints()
        };
        // TcpProbe::new keeps the port of probes of one flow.
        let probe = TcpProbe {
            seq: unkept.seq,
            ack: unkept.ack,
            ..TcpProbe::new(one_flow, unkept.flags, unkept.ports, unkept.window).unwrap()
        };
        for n in [0u64, 1, 2, 65537] {
            let tcp = &build(&probe, n)[20..];
            assert_eq!(
                u16::from_be_bytes([tcp[0], tcp[1]]),
                65534,
                "one source port"
            );
            let number = u32::from(n as u16) << 16;
            assert_eq!(
                u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
                0x0102_0304u32.wrapping_add(number)
            );
            assert_eq!(
                u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
                0x0a0b_0c0du32.wrapping_add(number)
            );
            assert_eq!(probe.sequence_of(n), n as u16);
        }
        let filter = probe.filter();
        assert_eq!((filter.one_flow, filter.sport_max_offset), (1, 0));
        // Probe 2's SYN-ACK, RST (to a probe with ACK) and time exceeded name it.
        let syn_ack = ReplyRecord {
            tcp_flags: TcpFlags::SYN | TcpFlags::ACK,
            tcp_ack: 0x0102_0304 + (2 << 16) + 1,
            dst_port: 65534,
            ..ReplyRecord::default()
        };
        let rst = ReplyRecord {
            tcp_flags: TcpFlags::RST,
            tcp_seq: 0x0a0b_0c0d + (2 << 16),
            ..syn_ack
        };
        let time_exceeded = ReplyRecord {
            protocol: IPPROTO_ICMP,
            icmp_type: 11,
            tcp_seq: 0x0102_0304 + (2 << 16),
            ..syn_ack
        };
        for reply in [syn_ack, rst, time_exceeded] {
            assert_eq!(probe.sequence(&reply), 2, "{reply:?}");
        }
    }

    #[test]
    fn one_flows_echo_requests_keep_their_checksum() {
        let endpoints = Endpoints {
            one_flow: true,
            ..endpoints()
        };
        for id in [1, 2, 0x8000, 0xffff] {
            let probe = IcmpEcho {
                endpoints: endpoints.clone(),
                id,
                message: IcmpMessage::new(8, 0).unwrap(),
            };
            let filter = probe.filter();
            let first = build(&probe, 0);
            for n in [1u64, 2, u64::from(id), 0xfffe, 0xffff, 65537] {
                let packet = build(&probe, n);
                assert_eq!(internet_checksum(&packet[20..]), 0, "ICMP checksum");
                assert_eq!(packet[20..24], first[20..24], "id {id:#x}, probe {n}");
                let (echo_id, seq) = (
                    u16::from_be_bytes([packet[24], packet[25]]),
                    u16::from_be_bytes([packet[26], packet[27]]),
                );
                assert_eq!(seq, n as u16);
                assert!(filter.is_our_echo(echo_id, seq), "id {id:#x}, probe {n}");
            }
        }
    }

    #[test]
    fn all_tcp_flags_land_in_the_flags_byte() {
        let probe = TcpProbe {
            flags: TcpFlags(0xff),
            ..syn(false)
        };
        assert_eq!(build(&probe, 0)[33], 0xff);
    }

    /// Probe `n` of an echo probe to `endpoints` with identifier 0xbeef, its echo request
    /// checked (type, code 0, identifier, sequence number `n` mod 2^16); and its filter.
    fn echo_request(endpoints: Endpoints, n: u64, icmp_type: u8) -> (Vec<u8>, ProbeFilter) {
        let probe = IcmpEcho {
            endpoints,
            id: 0xbeef,
            message: IcmpMessage::ECHO_REQUEST,
        };
        let packet = build(&probe, n);
        let icmp = &packet[packet.len() - 8..];
        assert_eq!((icmp[0], icmp[1]), (icmp_type, 0), "echo request");
        assert_eq!(u16::from_be_bytes([icmp[4], icmp[5]]), 0xbeef);
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), n as u16, "sequence");
        let filter = probe.filter();
        assert_eq!((filter.kind, filter.icmp_id), (KIND_ICMP_ECHO, 0xbeef));
        (packet, filter)
    }

    #[test]
    fn icmp_echo_probe_is_well_formed() {
        let (packet, _) = echo_request(endpoints(), 65537, 8);
        assert_eq!(packet.len(), 28);
        assert_ipv4_header(&packet, 1, 1);
        assert_eq!(internet_checksum(&packet[20..]), 0, "ICMP checksum");
    }

    #[test]
    fn replies_map_back_to_hping3_sequence_numbers() {
        let tcp = syn(false);
        let reply = ReplyRecord {
            dst_port: 1,
            ..ReplyRecord::default()
        };
        assert_eq!(
            tcp.sequence(&reply),
            3,
            "65534, 65535, 0, 1: the fourth probe"
        );
        let icmp = IcmpEcho {
            endpoints: endpoints(),
            id: 1,
            message: IcmpMessage::ECHO_REQUEST,
        };
        let reply = ReplyRecord {
            icmp_seq: 9,
            ..ReplyRecord::default()
        };
        assert_eq!(icmp.sequence(&reply), 9);
    }

    /// The sum of an IPv6 packet's upper-layer message with its pseudo-header (RFC 8200 8.1):
    /// addresses, upper-layer length, next header.
    fn ipv6_upper_layer_checksum(packet: &[u8]) -> u16 {
        let message = &packet[40..];
        let length = (message.len() as u32).to_be_bytes();
        let pseudo_header = [&packet[8..40], &length[..], &[0, 0, 0, packet[6]]].concat();
        internet_checksum(&[&pseudo_header[..], message].concat())
    }

    fn ipv6_endpoints() -> Endpoints {
        Endpoints {
            source: "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
            target: "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
            ..endpoints()
        }
    }

    /// Checks the IPv6 header of a probe from 2001:db8::1 to 2001:db8::2 carrying
    /// `next_header`, and the checksum of what follows it, over the pseudo-header.
    fn assert_ipv6_header(packet: &[u8], next_header: u8) {
        assert_eq!(packet[0], 0x60, "version 6, traffic class 0");
        assert_eq!(&packet[1..4], &[0, 0, 0], "flow label 0");
        assert_eq!(
            usize::from(u16::from_be_bytes([packet[4], packet[5]])),
            packet.len() - 40,
            "payload length"
        );
        assert_eq!((packet[6], packet[7]), (next_header, 63), "hop limit");
        let address = |text: &str| text.parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(&packet[8..24], &address("2001:db8::1"));
        assert_eq!(&packet[24..40], &address("2001:db8::2"));
        assert_eq!(
            ipv6_upper_layer_checksum(packet),
            0,
            "checksum over the pseudo-header"
        );
    }

    #[test]
    fn icmp_echo_to_ipv6_is_an_icmpv6_echo_request() {
        let (packet, filter) = echo_request(ipv6_endpoints(), 65538, 128);
        assert_eq!(packet.len(), 48);
        assert_ipv6_header(&packet, 58);
        assert_ne!(
            internet_checksum(&packet[40..]),
            0,
            "not ICMP's checksum of the message alone"
        );
        assert_eq!(
            filter.target_addr,
            IpAddress("2001:db8::2".parse::<Ipv6Addr>().unwrap().octets())
        );
    }

    #[test]
    fn tcp_probes_to_ipv6_get_an_ipv6_header() {
        let probe = TcpProbe {
            endpoints: ipv6_endpoints(),
            ..syn(false)
        };
        let packet = build(&probe, 0);
        assert_eq!(packet.len(), 60);
        assert_ipv6_header(&packet, 6);
        assert_eq!(u16::from_be_bytes([packet[42], packet[43]]), 443);
        assert_eq!(probe.filter().target_addr.ipv4(), None, "an IPv6 filter");
    }

    fn sweep_endpoints() -> SweepEndpoints {
        SweepEndpoints {
            source: Ipv4Addr::new(198, 18, 0, 1).into(),
            ttl: 64,
            tos: 0,
            cookie_key: [5, 6],
            first_source_port: 61440,
            source_ports: 4096,
        }
    }

    fn syn_sweep(endpoints: SweepEndpoints, window: u16) -> TcpSweep {
        TcpSweep::new(endpoints, TcpScan::Syn, TcpFlags(TcpFlags::SYN), window)
    }

    fn sweep_syn() -> TcpSweep {
        syn_sweep(sweep_endpoints(), 1024)
    }

    #[test]
    fn sweep_syns_carry_their_cookie() {
        let probe = sweep_syn();
        let target: IpAddr = Ipv4Addr::new(198, 18, 7, 9).into();
        let mut buf = [0u8; MAX_PROBE_LEN];
        let built = probe.build(target, 8080, 61441, 77, &mut buf);
        let packet = &buf[..built.len];
        assert_eq!(built.len, 40);
        assert_eq!(internet_checksum(&packet[..20]), 0, "IP header checksum");
        assert_eq!(
            u16::from_be_bytes([packet[4], packet[5]]),
            77,
            "the epoch as ip id"
        );
        assert_eq!(packet[6] & 0x40, 0x40, "DF");
        let tcp = &packet[20..];
        assert_eq!(
            u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
            built.cookie
        );
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 61441);
        assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 8080);
        assert_eq!(
            u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
            syn_cookie(
                [5, 6],
                &target.into(),
                8080,
                &IpAddress::from_ipv4([198, 18, 0, 1]),
                61441
            )
        );
        assert_eq!(tcp[13], TcpFlags::SYN);
        assert_eq!(u16::from_be_bytes([tcp[14], tcp[15]]), 1024);
        let filter = probe.filter();
        assert_eq!((filter.kind, filter.mode), (KIND_TCP, MODE_SWEEP));
        assert_eq!((filter.sport_base, filter.sport_max_offset), (61440, 4095));
        assert_eq!(filter.cookie_key, [5, 6]);
    }

    /// The sweep kinds beside the flags their probes carry and whether they carry the cookie
    /// as the acknowledgement number too.
    fn tcp_sweep_kinds() -> [(SweepKind, u8, bool); 4] {
        let fin_psh_urg = TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG;
        [
            (SweepKind::TcpSyn { window: 65535 }, TcpFlags::SYN, false),
            (
                SweepKind::TcpAck {
                    flags: TcpFlags(TcpFlags::ACK),
                    window: 65535,
                },
                TcpFlags::ACK,
                true,
            ),
            (
                SweepKind::TcpFin {
                    flags: TcpFlags(TcpFlags::FIN),
                    window: 65535,
                },
                TcpFlags::FIN,
                false,
            ),
            (
                SweepKind::TcpFin {
                    flags: TcpFlags(fin_psh_urg),
                    window: 65535,
                },
                fin_psh_urg,
                false,
            ),
        ]
    }

    /// The sweep's template writes exactly what the general writer does, checksums included,
    /// for every kind.
    #[test]
    fn sweep_probes_are_the_segments_the_general_writer_makes() {
        let sources: [IpAddr; 2] = [
            "198.18.0.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            // xorshift64: varied fields, the same every run.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (source, (kind, flags, acks)) in sources
            .into_iter()
            .flat_map(|source| tcp_sweep_kinds().map(|kind| (source, kind)))
        {
            let endpoints = SweepEndpoints {
                source,
                ttl: 61,
                tos: 0xb8,
                ..sweep_endpoints()
            };
            let probe = kind.probe(endpoints);
            assert_eq!(probe.filter().tcp_flags, flags, "what XDP expects");
            for _ in 0..500 {
                let bits = next();
                let target = match source {
                    IpAddr::V4(_) => IpAddr::from((bits as u32).to_be_bytes()),
                    IpAddr::V6(_) => {
                        Ipv6Addr::from(u128::from(bits) << 64 | u128::from(next())).into()
                    }
                };
                let (port, source_port, epoch) =
                    ((bits >> 32) as u16, (bits >> 48) as u16, next() as u16);
                let mut templated = [0u8; MAX_PROBE_LEN];
                let built = probe.build(target, port, source_port, epoch, &mut templated);
                let mut written = [0u8; MAX_PROBE_LEN];
                let len = TcpSegment {
                    source,
                    target,
                    ttl: 61,
                    tos: 0xb8,
                    mark: IpMark::Epoch(epoch),
                    source_port,
                    target_port: port,
                    seq: built.cookie,
                    ack: if acks { built.cookie } else { 0 },
                    flags: TcpFlags(flags),
                    window: 65535,
                    timestamp: None,
                }
                .write(&[], &mut written);
                assert_eq!(built.len, len);
                assert_eq!(
                    templated[..len],
                    written[..len],
                    "{kind:?} to {target}:{port} from {source_port}, epoch {epoch}"
                );
            }
        }
    }

    #[test]
    fn ipv6_sweep_syns_carry_the_cookie_of_the_sixteen_byte_addresses() {
        let source: IpAddr = "2001:db8::1".parse().unwrap();
        let probe = syn_sweep(
            SweepEndpoints {
                source,
                ..sweep_endpoints()
            },
            1024,
        );
        let target: IpAddr = "2001:db8:0:7::9".parse().unwrap();
        let mut buf = [0u8; MAX_PROBE_LEN];
        let built = probe.build(target, 443, 61442, 77, &mut buf);
        let packet = &buf[..built.len];
        assert_eq!(built.len, 60);
        assert_eq!((packet[0] >> 4, packet[6], packet[7]), (6, 6, 64));
        let flow_label = u32::from_be_bytes(packet[..4].try_into().unwrap()) & 0xf_ffff;
        assert_eq!(flow_label, 77, "the epoch as flow label");
        assert_eq!(ipv6_upper_layer_checksum(packet), 0, "TCP checksum");
        let tcp = &packet[40..];
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 61442);
        assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 443);
        assert_eq!(
            u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
            syn_cookie([5, 6], &target.into(), 443, &source.into(), 61442)
        );
        assert_eq!(probe.filter().local_addr, IpAddress::from(source));
        let reply = ReplyRecord {
            src_addr: target.into(),
            src_port: 443,
            dst_port: 61442,
            tcp_flags: TcpFlags::SYN | TcpFlags::ACK,
            ip_len: 64,
            ..ReplyRecord::default()
        };
        let open = probe.classify(&reply);
        assert_eq!((open.host, open.fields.ip_len), (target, 64));
        assert_eq!(open.fields.ip_id, None, "IPv6 has no identification");
    }

    #[test]
    fn sweep_replies_are_classified_by_the_kind() {
        let probe = sweep_syn();
        let reply = |flags| ReplyRecord {
            src_addr: IpAddress::from_ipv4([198, 18, 7, 9]),
            src_port: 8080,
            dst_port: 61441,
            tcp_flags: flags,
            ttl: 63,
            ip_id: 321,
            kernel_ns: 5,
            ..ReplyRecord::default()
        };
        let open = probe.classify(&reply(TcpFlags::SYN | TcpFlags::ACK));
        assert_eq!(open.host, IpAddr::from([198, 18, 7, 9]));
        assert_eq!((open.port, open.source_port), (8080, 61441));
        assert_eq!(
            (open.verdict.status, open.verdict.reason),
            (Status::Open, "syn-ack")
        );
        assert_eq!((open.fields.ttl, open.fields.kernel_ns), (63, 5));
        assert_eq!(open.fields.ip_id, Some(321));
        let closed = probe.classify(&reply(TcpFlags::RST | TcpFlags::ACK));
        assert_eq!(
            (closed.verdict.status, closed.verdict.reason),
            (Status::Closed, "rst")
        );
        assert_eq!(
            (probe.silence().status, probe.silence().reason),
            (Status::Filtered, "timeout")
        );
        assert_eq!(probe.protocol(), "tcp");
    }

    /// zmap's icmp_echoscan: each echo's identifier is its source-port slot and its sequence
    /// number the low half of the cookie, which the reply echoes; a reply is the host up.
    #[test]
    fn sweep_echoes_carry_their_cookie_and_find_hosts_up() {
        for (source, target, len, icmp_type) in [
            ("198.18.0.1", "198.18.7.9", 28, 8),
            ("2001:db8::1", "2001:db8::2", 48, 128),
        ] {
            let (source, target): (IpAddr, IpAddr) =
                (source.parse().unwrap(), target.parse().unwrap());
            let probe = SweepKind::IcmpEcho.probe(SweepEndpoints {
                source,
                ..sweep_endpoints()
            });
            let mut buf = [0u8; MAX_PROBE_LEN];
            let built = probe.build(target, 0, 61443, 77, &mut buf);
            let packet = &buf[..built.len];
            assert_eq!(built.len, len);
            let icmp = &packet[len - 8..];
            assert_eq!((icmp[0], icmp[1]), (icmp_type, 0), "echo request");
            let cookie = syn_cookie([5, 6], &target.into(), 0, &source.into(), 61443) as u16;
            assert_eq!(u16::from_be_bytes([icmp[4], icmp[5]]), 61443, "identifier");
            assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), cookie, "sequence");
            assert_eq!(built.cookie, u32::from(cookie));
            match source {
                IpAddr::V4(_) => {
                    assert_eq!(u16::from_be_bytes([packet[4], packet[5]]), 77, "epoch");
                    assert_eq!(internet_checksum(&packet[..20]), 0, "IP header checksum");
                    assert_eq!(internet_checksum(icmp), 0, "ICMP checksum");
                }
                IpAddr::V6(_) => {
                    assert_eq!(packet[6], 58, "ICMPv6");
                    assert_eq!(ipv6_upper_layer_checksum(packet), 0, "ICMPv6 checksum");
                }
            }
            let filter = probe.filter();
            assert_eq!((filter.kind, filter.mode), (KIND_ICMP_ECHO, MODE_SWEEP));
            assert_eq!((filter.sport_base, filter.sport_max_offset), (61440, 4095));
            // What the programs take as the sweep's echoes leaving and their replies.
            assert_eq!(
                (filter.icmp_type, filter.icmp_reply_type),
                (icmp_type, if icmp_type == 8 { 0 } else { 129 })
            );
            let reply = ReplyRecord {
                src_addr: target.into(),
                icmp_id: 61443,
                icmp_seq: cookie,
                ttl: 64,
                ip_len: len as u16,
                ..ReplyRecord::default()
            };
            let up = probe.classify(&reply);
            assert_eq!(
                (up.host, up.source_port, up.cookie),
                (target, 61443, built.cookie)
            );
            assert_eq!(
                (up.verdict.status, up.verdict.reason),
                (Status::Up, "echo-reply")
            );
            assert_eq!((up.fields.ttl, up.fields.icmp_from), (64, None));
            assert_eq!(
                probe.silence(),
                Verdict {
                    status: Status::Down,
                    reason: "timeout"
                }
            );
            assert!(!probe.has_ports() && probe.protocol() == "icmp");
        }
    }

    /// nmap's -sA, -sF and -sX: what a RST and silence say, and the cookie read from where
    /// each kind's RST carries it.
    #[test]
    fn ack_and_fin_sweeps_classify_as_nmap_does() {
        let target = IpAddr::from([198, 18, 7, 9]);
        let rst = |flags, seq, ack| ReplyRecord {
            src_addr: target.into(),
            src_port: 8080,
            dst_port: 61441,
            tcp_flags: flags,
            tcp_seq: seq,
            tcp_ack: ack,
            ..ReplyRecord::default()
        };
        for (kind, _, acks) in tcp_sweep_kinds() {
            let probe = kind.probe(sweep_endpoints());
            let mut buf = [0u8; MAX_PROBE_LEN];
            let built = probe.build(target, 8080, 61441, 7, &mut buf);
            let tcp = &buf[20..built.len];
            let cookie = built.cookie;
            assert_eq!(u32::from_be_bytes(tcp[4..8].try_into().unwrap()), cookie);
            assert_eq!(
                u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
                if acks { cookie } else { 0 },
                "{kind:?}: the acknowledgement number"
            );
            let fin = u32::from(tcp[13] & TcpFlags::FIN);
            let (reply, status, silence) = match kind {
                SweepKind::TcpSyn { .. } | SweepKind::IcmpEcho | SweepKind::Udp => continue,
                SweepKind::TcpAck { .. } => (
                    rst(TcpFlags::RST, cookie, 0),
                    Status::Unfiltered,
                    Status::Filtered,
                ),
                SweepKind::TcpFin { .. } => (
                    rst(TcpFlags::RST | TcpFlags::ACK, 0, cookie.wrapping_add(fin)),
                    Status::Closed,
                    Status::OpenFiltered,
                ),
            };
            let answer = probe.classify(&reply);
            assert_eq!(
                (answer.verdict.status, answer.verdict.reason, answer.cookie),
                (status, "rst", cookie),
                "{kind:?}"
            );
            assert_eq!((answer.port, answer.source_port), (8080, 61441));
            assert_eq!(
                probe.silence(),
                Verdict {
                    status: silence,
                    reason: "timeout"
                }
            );
        }
        assert_eq!(Status::OpenFiltered.word(), "open|filtered");
        assert_eq!(Status::Unfiltered.word(), "unfiltered");
    }

    #[test]
    fn icmp_errors_about_sweep_probes_are_filtered_with_their_reason_and_sender() {
        let probe = sweep_syn();
        let router = IpAddress::from_ipv4([198, 18, 0, 1]);
        let error = |protocol, icmp_type, icmp_code| ReplyRecord {
            src_addr: IpAddress::from_ipv4([198, 18, 7, 9]),
            src_port: 8080,
            dst_port: 61441,
            tcp_seq: 0xc00c1e,
            tcp_ack: 99,
            protocol,
            icmp_type,
            icmp_code,
            icmp_from: router,
            ..ReplyRecord::default()
        };
        for (protocol, icmp_type, code, reason) in [
            (IPPROTO_ICMP, 3, 13, "admin-prohibited"),
            (IPPROTO_ICMP, 3, 3, "icmp-unreach"),
            (IPPROTO_ICMP, 3, 1, "icmp-unreach"),
            (IPPROTO_ICMP, 11, 0, "ttl-exceeded"),
            (IPPROTO_ICMPV6, 1, 1, "admin-prohibited"),
            (IPPROTO_ICMPV6, 1, 4, "icmp-unreach"),
            (IPPROTO_ICMPV6, 3, 0, "ttl-exceeded"),
        ] {
            let answer = probe.classify(&error(protocol, icmp_type, code));
            assert_eq!(
                (answer.verdict.status, answer.verdict.reason),
                (Status::Filtered, reason),
                "{protocol} {icmp_type} {code}"
            );
            assert_eq!(answer.host, IpAddr::from([198, 18, 7, 9]));
            assert_eq!((answer.port, answer.source_port), (8080, 61441));
            assert_eq!(answer.cookie, 0xc00c1e, "the quoted sequence number");
            assert_eq!(answer.fields.icmp_from, Some(IpAddr::from([198, 18, 0, 1])));
        }
        // A TCP answer has no ICMP sender, whatever the fields it does not use hold.
        let syn_ack = ReplyRecord {
            protocol: IPPROTO_TCP,
            tcp_flags: TcpFlags::SYN | TcpFlags::ACK,
            ..error(IPPROTO_TCP, 3, 13)
        };
        let open = probe.classify(&syn_ack);
        assert_eq!((open.verdict.status, open.cookie), (Status::Open, 98));
        assert_eq!(open.fields.icmp_from, None);
    }

    fn udp(endpoints: Endpoints, step: PortStep, keep_port: bool) -> UdpProbe {
        UdpProbe {
            endpoints,
            ports: ProbePorts {
                target: DestPort::new(53, step),
                base: 65535,
                keep: keep_port,
            },
        }
    }

    /// The UDP header of an IPv4 probe: ports, length, and its checksum over the pseudo-header.
    fn udp_header_of_ipv4(packet: &[u8]) -> (u16, u16, u16) {
        let udp = &packet[20..];
        let length = (udp.len() as u16).to_be_bytes();
        let pseudo_header = [&packet[12..20], &[0, 17], &length[..]].concat();
        assert_eq!(
            internet_checksum(&[&pseudo_header[..], udp].concat()),
            0,
            "UDP checksum"
        );
        assert_ne!(&udp[6..8], &[0, 0], "a checksum computed");
        let word = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
        (word(0), word(2), word(4))
    }

    #[test]
    fn udp_probes_are_hping3s() {
        let probe = udp(
            Endpoints {
                payload: Payload::filler(10),
                ..endpoints()
            },
            PortStep::Fixed,
            false,
        );
        assert_eq!(probe.mode(), "udp mode set");
        for n in [0u64, 1, 2] {
            let packet = build(&probe, n);
            assert_eq!(packet.len(), 28 + 10);
            assert_ipv4_header(&packet, 17, n as u16);
            assert_eq!(
                udp_header_of_ipv4(&packet),
                (65535u16.wrapping_add(n as u16), 53, 18),
                "source port counting up from the base, wrapping"
            );
            assert_eq!(&packet[28..], b"XXXXXXXXXX");
        }
        let filter = probe.filter();
        assert_eq!(
            (
                filter.kind,
                filter.target_port,
                filter.target_port_max_offset
            ),
            (KIND_UDP, 53, 0)
        );
        assert_eq!(
            (filter.sport_base, filter.sport_max_offset),
            (65535, u16::MAX)
        );
        assert_eq!(
            filter.tcp_data_len, 10,
            "what an error's quoted length states"
        );
        let reply = ReplyRecord {
            src_port: 53,
            dst_port: 1,
            ..ReplyRecord::default()
        };
        assert_eq!(probe.sequence(&reply), 2, "65535, 0, 1: the third probe");
        let mut line = String::new();
        probe.write_fields(&reply, 2, &mut line);
        assert_eq!(line, "seq=2");
        probe.write_error_trailer(IcmpErrorKind::PortUnreachable, &reply, 2, &mut line);
        assert_eq!(line, "seq=2\nstatus=0 port=1 seq=2");
        probe.write_error_trailer(IcmpErrorKind::TimeExceeded, &reply, 2, &mut line);
        assert_eq!(
            line, "seq=2\nstatus=0 port=1 seq=2",
            "hping3 names no probe there"
        );
        assert!(probe.times_error(IcmpErrorKind::AdminProhibited));
        assert!(!probe.times_error(IcmpErrorKind::TimeExceeded));
    }

    #[test]
    fn udp_ports_move_as_the_options_say() {
        let kept = udp(endpoints(), PortStep::PerProbe, true);
        let ports: Vec<_> = (0..3)
            .map(|n| udp_header_of_ipv4(&build(&kept, n)))
            .map(|(source, dest, _)| (source, dest))
            .collect();
        assert_eq!(
            ports,
            [(65535, 53), (65535, 54), (65535, 55)],
            "-k, -p ++53"
        );
        assert_eq!(kept.sequence_of(2), 0, "-k: every probe is sequence 0");
        let filter = kept.filter();
        assert_eq!(
            (filter.sport_max_offset, filter.target_port_max_offset),
            (0, u16::MAX)
        );
    }

    #[test]
    fn udp_probes_to_ipv6_get_an_ipv6_header() {
        let packet = build(&udp(ipv6_endpoints(), PortStep::Fixed, false), 0);
        assert_eq!(packet.len(), 48);
        assert_ipv6_header(&packet, 17);
        assert_eq!(u16::from_be_bytes([packet[42], packet[43]]), 53);
    }

    #[test]
    fn one_flows_udp_probes_keep_their_port_and_number_their_ip_id_or_checksum() {
        for family in [endpoints(), ipv6_endpoints()] {
            let ipv6 = family.target.is_ipv6();
            let unkept = udp(family.clone(), PortStep::Fixed, false);
            // UdpProbe::new keeps the port of probes of one flow.
            let probe = UdpProbe::new(
                Endpoints {
                    one_flow: true,
                    payload: Payload::filler(3),
                    ..family
                },
                unkept.ports,
            );
            let filter = probe.filter();
            assert_eq!((filter.one_flow, filter.sport_max_offset), (1, 0));
            let steer = if ipv6 { 2 } else { 0 };
            assert_eq!(probe.data_len(), 3 + steer, "the header line counts them");
            assert_eq!(usize::from(filter.tcp_data_len), 3 + steer, "quoted length");
            for n in [0u64, 1, 2, 0xfffe, 0xffff, 65537] {
                let packet = build(&probe, n);
                let (udp, ip_id) = if ipv6 {
                    assert_ipv6_header(&packet, 17);
                    (&packet[40..], 0)
                } else {
                    assert_ipv4_header(&packet, 17, n as u16);
                    udp_header_of_ipv4(&packet);
                    (&packet[20..], u16::from_be_bytes([packet[4], packet[5]]))
                };
                let word = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
                assert_eq!((word(0), word(2)), (65535, 53), "one flow's ports");
                assert_eq!(
                    &udp[8 + steer..],
                    b"XXX",
                    "the data after the steering bytes"
                );
                let seq = probe.sequence_of(n);
                if ipv6 {
                    assert_eq!(word(6), (n % 0xffff) as u16 + 1, "the checksum names it");
                } else {
                    assert_eq!(seq, n as u16);
                }
                // XDP files its departure, and finds an error quoting it, under this slot.
                let version = if ipv6 { IpVersion::V6 } else { IpVersion::V4 };
                let slot = filter.udp_slot(version, word(0), ip_id, word(6));
                assert_eq!(slot, seq, "probe {n}");
                let error = ReplyRecord {
                    protocol: IPPROTO_ICMP,
                    icmp_type: 11,
                    icmp_seq: slot,
                    ..ReplyRecord::default()
                };
                assert!(probe.names_its_probe(&error));
                assert_eq!(probe.sequence(&error), seq);
            }
            // Its ports say nothing of which probe an answer answers.
            assert!(!probe.names_its_probe(&ReplyRecord::default()));
            assert_eq!(
                build(&probe, 0).len(),
                probe.headers_len() + probe.data_len()
            );
        }
    }

    #[test]
    fn udp_sweep_probes_are_filed_under_their_endpoints_cookie() {
        for source in ["198.18.0.1", "2001:db8::1"] {
            let source: IpAddr = source.parse().unwrap();
            let probe = SweepKind::Udp.probe(SweepEndpoints {
                source,
                ..sweep_endpoints()
            });
            let target: IpAddr = match source {
                IpAddr::V4(_) => "198.18.7.9".parse().unwrap(),
                IpAddr::V6(_) => "2001:db8:0:7::9".parse().unwrap(),
            };
            let mut buf = [0u8; MAX_PROBE_LEN];
            let built = probe.build(target, 161, 61442, 77, &mut buf);
            let packet = &buf[..built.len];
            let udp = match source {
                IpAddr::V4(_) => {
                    assert_eq!(built.len, 28);
                    assert_eq!(internet_checksum(&packet[..20]), 0, "IP header checksum");
                    assert_eq!(u16::from_be_bytes([packet[4], packet[5]]), 77, "epoch");
                    assert_eq!(packet[6] & 0x40, 0x40, "DF");
                    udp_header_of_ipv4(packet);
                    &packet[20..]
                }
                IpAddr::V6(_) => {
                    assert_eq!(built.len, 48);
                    assert_eq!(ipv6_upper_layer_checksum(packet), 0, "UDP checksum");
                    assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 77, "epoch");
                    &packet[40..]
                }
            };
            assert_eq!(&udp[..6], &[0xf0, 0x02, 0, 161, 0, 8]);
            let cookie = syn_cookie([5, 6], &target.into(), 161, &source.into(), 61442);
            assert_eq!(built.cookie, cookie);
            let filter = probe.filter();
            assert_eq!((filter.kind, filter.mode), (KIND_UDP, MODE_SWEEP));
            assert_eq!((filter.sport_base, filter.sport_max_offset), (61440, 4095));
            let answer = probe.classify(&ReplyRecord {
                src_addr: target.into(),
                src_port: 161,
                dst_port: 61442,
                protocol: 17,
                ..ReplyRecord::default()
            });
            assert_eq!(
                (answer.host, answer.port, answer.source_port),
                (target, 161, 61442)
            );
            assert_eq!(answer.cookie, cookie, "worked out from the endpoints");
        }
    }

    #[test]
    fn udp_sweep_answers_are_nmaps() {
        let probe = SweepKind::Udp.probe(sweep_endpoints());
        assert_eq!(probe.protocol(), "udp");
        assert!(!probe.vouched_by_cookie());
        let target = IpAddress::from_ipv4([198, 18, 7, 9]);
        let reply = |protocol, icmp_type, icmp_code| ReplyRecord {
            src_addr: target,
            src_port: 53,
            dst_port: 61441,
            protocol,
            icmp_type,
            icmp_code,
            icmp_from: IpAddress::from_ipv4([198, 18, 0, 1]),
            ..ReplyRecord::default()
        };
        for (protocol, icmp_type, code, status, reason) in [
            (17, 0, 0, Status::Open, "udp-response"),
            (IPPROTO_ICMP, 3, 3, Status::Closed, "port-unreach"),
            (IPPROTO_ICMPV6, 1, 4, Status::Closed, "port-unreach"),
            (IPPROTO_ICMP, 3, 13, Status::Filtered, "admin-prohibited"),
            (IPPROTO_ICMP, 3, 1, Status::Filtered, "icmp-unreach"),
            (IPPROTO_ICMP, 11, 0, Status::Filtered, "ttl-exceeded"),
        ] {
            let answer = probe.classify(&reply(protocol, icmp_type, code));
            assert_eq!(
                (answer.verdict.status, answer.verdict.reason),
                (status, reason),
                "{protocol} {icmp_type} {code}"
            );
            assert_eq!(answer.fields.icmp_from.is_some(), protocol != 17);
        }
        let silence = probe.silence();
        assert_eq!(
            (silence.status, silence.reason),
            (Status::OpenFiltered, "no-response")
        );
        assert_eq!(Status::OpenFiltered.word(), "open|filtered");
    }
}
