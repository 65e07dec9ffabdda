//! The TCP kind: probes with any combination of hping3's flags (-S -A -F -R -P -U -X -Y) for
//! one target, and SYNs carrying cookies for sweeps. SYN-ACK means open, RST-ACK closed.
use std::{fmt::Write as _, net::IpAddr};

use anyhow::Result;
use etherparse::TcpHeader;
use prober_common::{syn_cookie, IpAddress, ProbeFilter, ReplyRecord, KIND_TCP, MODE_SWEEP};

use super::{
    ip::{IpHeader, IpMark, Transport},
    Answer, BuiltProbe, Endpoints, Payload, PingProbe, ProbeBuffer, ReplyFields, Status,
    SweepEndpoints, SweepProbe, Verdict,
};
use crate::random;

/// TCP flag bits as they sit in the header's flags byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    /// hping3's X and Y: the two high bits (ECE and CWR today).
    pub const X: u8 = 0x40;
    pub const Y: u8 = 0x80;

    /// The flags in hping3's scan-table order, F S R P A U X Y.
    const NAMED: [(u8, char); 8] = [
        (TcpFlags::FIN, 'F'),
        (TcpFlags::SYN, 'S'),
        (TcpFlags::RST, 'R'),
        (TcpFlags::PSH, 'P'),
        (TcpFlags::ACK, 'A'),
        (TcpFlags::URG, 'U'),
        (TcpFlags::X, 'X'),
        (TcpFlags::Y, 'Y'),
    ];

    /// Letters in hping3's reply-line order R S A F P U X Y, e.g. `SA`, `RA`; empty for none.
    pub fn letters(self) -> String {
        const LINE_ORDER: [usize; 8] = [2, 1, 4, 0, 3, 5, 6, 7];
        LINE_ORDER
            .iter()
            .map(|&index| TcpFlags::NAMED[index])
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, letter)| letter)
            .collect()
    }

    /// hping3's scan-table flags: eight columns, `.` when unset, e.g. `.S..A...`.
    pub fn dotted(self) -> String {
        TcpFlags::NAMED
            .iter()
            .map(|&(bit, letter)| if self.0 & bit != 0 { letter } else { '.' })
            .collect()
    }
}

const TCP_HEADER_LEN: u16 = 20;

/// One TCP segment without options, in its IP packet: what every TCP probe (one
/// target or a sweep) sends.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment {
    pub source: IpAddr,
    pub target: IpAddr,
    pub ttl: u8,
    /// IPv4's type of service, IPv6's traffic class.
    pub tos: u8,
    pub mark: IpMark,
    pub source_port: u16,
    pub target_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
}

impl TcpSegment {
    /// Writes the packet, carrying `payload`, into `buf` with its checksums; returns its length.
    pub fn write(&self, payload: &[u8], buf: &mut [u8]) -> usize {
        let ip = IpHeader::new(
            self.source,
            self.target,
            self.ttl,
            self.tos,
            self.mark,
            Transport::Tcp,
            TCP_HEADER_LEN + payload.len() as u16,
        );
        let mut tcp = TcpHeader::new(self.source_port, self.target_port, self.seq, self.window);
        let bits = self.flags.0;
        tcp.fin = bits & TcpFlags::FIN != 0;
        tcp.syn = bits & TcpFlags::SYN != 0;
        tcp.rst = bits & TcpFlags::RST != 0;
        tcp.psh = bits & TcpFlags::PSH != 0;
        tcp.ack = bits & TcpFlags::ACK != 0;
        tcp.urg = bits & TcpFlags::URG != 0;
        tcp.ece = bits & TcpFlags::X != 0;
        tcp.cwr = bits & TcpFlags::Y != 0;
        tcp.acknowledgment_number = self.ack;
        tcp.checksum = ip.tcp_checksum(&tcp, payload);
        ip.write_with(&tcp, payload, buf)
    }
}

/// One target's TCP probes (hping3's default mode).
#[derive(Clone, Debug)]
pub struct TcpProbe {
    pub endpoints: Endpoints,
    pub flags: TcpFlags,
    pub target_port: u16,
    /// Source port of probe 0; probe n uses `base_port + n` unless `keep_port`.
    pub base_port: u16,
    pub keep_port: bool,
    pub window: u16,
    /// Sequence and acknowledgement numbers carried by every probe (random per run).
    pub seq: u32,
    pub ack: u32,
}

impl TcpProbe {
    /// Probes with this run's random numbers: the base source port unless given, as hping3
    /// picks one, and the sequence and acknowledgement numbers.
    pub fn new(
        endpoints: Endpoints,
        flags: TcpFlags,
        target_port: u16,
        base_port: Option<u16>,
        keep_port: bool,
        window: u16,
    ) -> Result<TcpProbe> {
        Ok(TcpProbe {
            endpoints,
            flags,
            target_port,
            base_port: match base_port {
                Some(port) => port,
                None => 1024 + (random()? % (65536 - 1024)) as u16,
            },
            keep_port,
            window,
            seq: random()? as u32,
            ack: random()? as u32,
        })
    }

    fn source_port(&self, n: u64) -> u16 {
        if self.keep_port {
            self.base_port
        } else {
            self.base_port.wrapping_add(n as u16)
        }
    }
}

impl PingProbe for TcpProbe {
    fn mode(&self) -> String {
        let letters = self.flags.letters();
        let flags = if letters.is_empty() {
            "NO FLAGS are".to_string()
        } else {
            letters
        };
        format!("{flags} set")
    }

    fn build(&self, n: u64, buf: &mut [u8]) -> usize {
        let Endpoints {
            source,
            target,
            ttl,
            fields,
            ..
        } = self.endpoints;
        TcpSegment {
            source,
            target,
            ttl,
            tos: fields.tos,
            mark: self.endpoints.mark(n),
            source_port: self.source_port(n),
            target_port: self.target_port,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
        }
        .write(self.endpoints.payload.of_probe(n), buf)
    }

    fn filter(&self) -> ProbeFilter {
        ProbeFilter {
            kind: KIND_TCP,
            target_port: self.target_port,
            sport_base: self.base_port,
            // With -k every probe leaves from one port; otherwise from a window of ports that
            // wraps around, as hping3's do.
            sport_max_offset: if self.keep_port { 0 } else { u16::MAX },
            tcp_seq: self.seq,
            tcp_ack: self.ack,
            tcp_data_len: self.endpoints.payload.size() as u16,
            ..self.endpoints.filter()
        }
    }

    fn payload(&self) -> &Payload {
        &self.endpoints.payload
    }

    fn sequence(&self, reply: &ReplyRecord) -> u16 {
        reply.dst_port.wrapping_sub(self.base_port)
    }

    /// With -k every probe is sequence 0: replies cannot tell them apart.
    fn sequence_of(&self, n: u64) -> u16 {
        self.source_port(n).wrapping_sub(self.base_port)
    }

    fn write_fields(&self, reply: &ReplyRecord, seq: u16, line: &mut String) {
        let letters = TcpFlags(reply.tcp_flags).letters();
        let _ = write!(
            line,
            "sport={} flags={} seq={} win={}",
            reply.src_port,
            if letters.is_empty() { "none" } else { &letters },
            seq,
            reply.tcp_window,
        );
    }

    fn write_verbose_trailer(&self, reply: &ReplyRecord, line: &mut String) {
        let _ = write!(
            line,
            "\nseq={} ack={} sum={:x} urp={}\n",
            reply.tcp_seq, reply.tcp_ack, reply.l4_checksum, reply.tcp_urgent
        );
    }
}

/// A sweep's SYNs: each carries the SYN cookie of its own (target, port, us, our port) as its
/// sequence number, so the XDP program knows its replies without any state.
#[derive(Clone, Copy, Debug)]
pub struct TcpSyn {
    endpoints: SweepEndpoints,
    window: u16,
    /// `endpoints.source` as the cookie hashes it, converted once rather than per probe.
    source: IpAddress,
}

impl TcpSyn {
    pub fn new(endpoints: SweepEndpoints, window: u16) -> TcpSyn {
        TcpSyn {
            endpoints,
            window,
            source: endpoints.source.into(),
        }
    }
}

impl SweepProbe for TcpSyn {
    fn protocol(&self) -> &'static str {
        "tcp"
    }

    fn filter(&self) -> ProbeFilter {
        let SweepEndpoints {
            source,
            cookie_key,
            first_source_port,
            source_ports,
            ..
        } = self.endpoints;
        ProbeFilter {
            local_addr: source.into(),
            kind: KIND_TCP,
            mode: MODE_SWEEP,
            sport_base: first_source_port,
            sport_max_offset: source_ports - 1,
            cookie_key,
            ..ProbeFilter::default()
        }
    }

    fn build(
        &self,
        target: IpAddr,
        port: u16,
        source_port: u16,
        epoch: u16,
        buf: &mut ProbeBuffer,
    ) -> BuiltProbe {
        let SweepEndpoints {
            source,
            ttl,
            tos,
            cookie_key,
            ..
        } = self.endpoints;
        let cookie = syn_cookie(cookie_key, &target.into(), port, &self.source, source_port);
        let len = TcpSegment {
            source,
            target,
            ttl,
            tos,
            mark: IpMark::Epoch(epoch),
            source_port,
            target_port: port,
            seq: cookie,
            ack: 0,
            flags: TcpFlags(TcpFlags::SYN),
            window: self.window,
        }
        .write(&[], buf);
        BuiltProbe { len, cookie }
    }

    fn classify(&self, reply: &ReplyRecord) -> Answer {
        let verdict = if reply.tcp_flags & TcpFlags::RST != 0 {
            Verdict {
                status: Status::Closed,
                reason: "rst",
            }
        } else {
            Verdict {
                status: Status::Open,
                reason: "syn-ack",
            }
        };
        Answer {
            host: reply.src_addr.into(),
            port: reply.src_port,
            source_port: reply.dst_port,
            cookie: reply.tcp_ack.wrapping_sub(1),
            verdict,
            fields: ReplyFields {
                ttl: reply.ttl,
                ip_id: reply.src_addr.ipv4().map(|_| reply.ip_id),
                window: reply.tcp_window,
                ip_len: reply.ip_len,
                tcp_flags: reply.tcp_flags,
                rtt_ns: None,
                kernel_ns: reply.kernel_ns,
            },
        }
    }

    fn silence(&self) -> Verdict {
        Verdict {
            status: Status::Filtered,
            reason: "timeout",
        }
    }
}
