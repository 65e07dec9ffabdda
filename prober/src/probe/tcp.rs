//! The TCP kind: probes with any combination of hping3's flags (-S -A -F -R -P -U -X -Y) for
//! one target, and for sweeps probes carrying cookies, classified as nmap does: SYNs (SYN-ACK
//! open, RST closed, silence filtered), probes with ACK (-A, nmap's -sA: a RST unfiltered,
//! silence filtered), and probes with neither (-F, -F -P -U: nmap's -sF and -sX: a RST closed,
//! silence open|filtered, as an open port drops them).
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU16, Ordering},
};

use anyhow::Result;
use etherparse::{TcpHeader, TcpOptionElement};
use prober_common::{
    echoed_cookie, syn_cookie,
    wire::{fold, sum_of, IcmpErrorKind},
    IpAddress, ProbeFilter, ReplyRecord, KIND_TCP,
};

use super::{
    ip::{IpHeader, IpMark, Transport},
    Answer, BuiltProbe, Endpoints, Payload, PingProbe, ProbeBuffer, ReplyFields, Status,
    SweepEndpoints, SweepKind, SweepProbe, Verdict, MAX_PROBE_LEN,
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
/// --tcp-timestamp's options: two NOPs and the ten-byte timestamp option.
pub const TIMESTAMP_OPTIONS_LEN: usize = 12;

/// How a one-target run's destination port moves: hping3's `-p N`, `-p +N`, `-p ++N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortStep {
    Fixed,
    /// One up for each reply received (`+N`): each port is probed until it answers.
    PerReply,
    /// One up for each probe sent (`++N`).
    PerProbe,
}

/// A one-target run's destination port: the first, and how far it has moved.
#[derive(Debug)]
pub struct DestPort {
    pub first: u16,
    pub step: PortStep,
    /// With [`PortStep::PerReply`]: the replies taken so far (mod 2^16, as ports wrap).
    answered: AtomicU16,
}

impl DestPort {
    pub fn new(first: u16, step: PortStep) -> DestPort {
        DestPort {
            first,
            step,
            answered: AtomicU16::new(0),
        }
    }

    /// The port probe `n` goes to.
    fn of_probe(&self, n: u64) -> u16 {
        let moved = match self.step {
            PortStep::Fixed => 0,
            PortStep::PerProbe => n as u16,
            PortStep::PerReply => self.answered.load(Ordering::Relaxed),
        };
        self.first.wrapping_add(moved)
    }

    /// Whether a reply from `port` answers the probes as they go now, as hping3 takes it: with
    /// `+N` only a reply from the port probed now, which moves the probes on to the next.
    fn take(&self, port: u16) -> bool {
        if self.step != PortStep::PerReply {
            return true;
        }
        let answered = self.answered.load(Ordering::Relaxed);
        let current = port == self.first.wrapping_add(answered);
        if current {
            self.answered
                .store(answered.wrapping_add(1), Ordering::Relaxed);
        }
        current
    }
}

/// A one-target run's ports, TCP's and UDP's alike: the destination port as it moves (-p), and
/// the source ports, counting up from a base (-s) with each probe unless kept (-k), as hping3's.
#[derive(Debug)]
pub struct ProbePorts {
    pub target: DestPort,
    /// Source port of probe 0; probe n uses `base + n` unless `keep`.
    pub base: u16,
    pub keep: bool,
}

impl ProbePorts {
    /// From `base`, or as hping3 from a random one.
    pub fn new(target: DestPort, base: Option<u16>, keep: bool) -> Result<ProbePorts> {
        Ok(ProbePorts {
            target,
            // Random, above the well-known ports, as hping3 picks it.
            base: match base {
                Some(port) => port,
                None => 1024 + (random()? % (65536 - 1024)) as u16,
            },
            keep,
        })
    }

    /// Probe `n`'s source port.
    pub(super) fn source(&self, n: u64) -> u16 {
        if self.keep {
            self.base
        } else {
            self.base.wrapping_add(n as u16)
        }
    }

    /// Probe `n`'s destination port.
    pub(super) fn destination(&self, n: u64) -> u16 {
        self.target.of_probe(n)
    }

    /// `filter` with the ports its replies come from and go to.
    pub(super) fn filter(&self, filter: ProbeFilter) -> ProbeFilter {
        ProbeFilter {
            target_port: self.target.first,
            // A moving port is followed in userspace: the programs take replies from any port.
            target_port_max_offset: match self.target.step {
                PortStep::Fixed => 0,
                PortStep::PerReply | PortStep::PerProbe => u16::MAX,
            },
            sport_base: self.base,
            // With -k every probe leaves from one port; otherwise from a window of ports that
            // wraps around, as hping3's do.
            sport_max_offset: if self.keep { 0 } else { u16::MAX },
            ..filter
        }
    }

    /// hping3's sequence number of the probe a reply answers: the port it comes to, from the
    /// base.
    pub(super) fn sequence(&self, reply: &ReplyRecord) -> u16 {
        reply.dst_port.wrapping_sub(self.base)
    }

    /// [`PingProbe::take`]: whether a reply comes from the port probed now (see
    /// [`DestPort::take`]).
    pub(super) fn take(&self, reply: &ReplyRecord) -> bool {
        self.target.take(reply.src_port)
    }

    /// [`PingProbe::sequence_of`]: with -k every probe is sequence 0, as replies cannot tell
    /// them apart.
    pub(super) fn sequence_of(&self, n: u64) -> u16 {
        self.source(n).wrapping_sub(self.base)
    }
}

/// One TCP segment, in its IP packet: what every TCP probe (one target or a sweep) sends.
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
    /// The TSval of a timestamp option (hping3's --tcp-timestamp: two NOPs, then the option
    /// with a TSecr of 0); None: no options.
    pub timestamp: Option<u32>,
}

impl TcpSegment {
    /// Writes the packet, carrying `payload`, into `buf` with its checksums; returns its length.
    pub fn write(&self, payload: &[u8], buf: &mut [u8]) -> usize {
        let mut tcp = TcpHeader::new(self.source_port, self.target_port, self.seq, self.window);
        if let Some(tsval) = self.timestamp {
            tcp.set_options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(tsval, 0),
            ])
            .expect("twelve bytes of options fit");
        }
        let ip = IpHeader::new(
            self.source,
            self.target,
            self.ttl,
            self.tos,
            self.mark,
            Transport::Tcp,
            tcp.header_len_u16() + payload.len() as u16,
        );
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
#[derive(Debug)]
pub struct TcpProbe {
    pub endpoints: Endpoints,
    pub flags: TcpFlags,
    pub ports: ProbePorts,
    pub window: u16,
    /// Sequence and acknowledgement numbers carried by every probe (random per run).
    pub seq: u32,
    pub ack: u32,
    /// --tcp-timestamp: the TSval of probe 0's timestamp option (random per run; probe n's is
    /// n more); None: no options.
    pub timestamp: Option<u32>,
}

impl TcpProbe {
    /// Probes with this run's random sequence and acknowledgement numbers.
    pub fn new(
        endpoints: Endpoints,
        flags: TcpFlags,
        ports: ProbePorts,
        window: u16,
    ) -> Result<TcpProbe> {
        // Probes of one flow leave from one port, as with -k.
        let ports = ProbePorts {
            keep: ports.keep || endpoints.one_flow,
            ..ports
        };
        Ok(TcpProbe {
            endpoints,
            flags,
            ports,
            window,
            seq: random()? as u32,
            ack: random()? as u32,
            timestamp: None,
        })
    }

    /// What probe `n` adds to the run's sequence and acknowledgement numbers: with probes of
    /// one flow its number (mod 2^16) times 2^16 (see [`ProbeFilter::tcp_rest`]), else nothing.
    fn number(&self, n: u64) -> u32 {
        if self.endpoints.one_flow {
            u32::from(n as u16) << 16
        } else {
            0
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
            target,
            ttl,
            fields,
            ..
        } = self.endpoints;
        TcpSegment {
            source: self.endpoints.source_of(n),
            target,
            ttl,
            tos: fields.tos,
            mark: self.endpoints.mark(n),
            source_port: self.ports.source(n),
            target_port: self.ports.destination(n),
            seq: self.seq.wrapping_add(self.number(n)),
            ack: self.ack.wrapping_add(self.number(n)),
            flags: self.flags,
            window: self.window,
            timestamp: self.timestamp.map(|first| first.wrapping_add(n as u32)),
        }
        .write(self.endpoints.payload.of_probe(n), buf)
    }

    /// hping3 counts the fixed TCP header only.
    fn options_len(&self) -> usize {
        match self.timestamp {
            Some(_) => TIMESTAMP_OPTIONS_LEN,
            None => 0,
        }
    }

    fn filter(&self) -> ProbeFilter {
        ProbeFilter {
            kind: KIND_TCP,
            tcp_seq: self.seq,
            tcp_ack: self.ack,
            tcp_data_len: self.endpoints.payload.size() as u16,
            tcp_timestamp: u8::from(self.timestamp.is_some()),
            ..self.ports.filter(self.endpoints.filter())
        }
    }

    fn payload(&self) -> &Payload {
        &self.endpoints.payload
    }

    fn sequence(&self, reply: &ReplyRecord) -> u16 {
        if !self.endpoints.one_flow {
            return self.ports.sequence(reply);
        }
        // What names the probe: an error's quoted sequence number, what a reply acknowledges,
        // or a RST's sequence number (our ack echoed), as the XDP program took it.
        let offset = if reply.icmp_error().is_some() {
            reply.tcp_seq.wrapping_sub(self.seq)
        } else if reply.tcp_flags & TcpFlags::ACK != 0 {
            reply.tcp_ack.wrapping_sub(self.seq)
        } else {
            reply.tcp_seq.wrapping_sub(self.ack)
        };
        (offset >> 16) as u16
    }

    fn take(&self, reply: &ReplyRecord) -> bool {
        self.ports.take(reply)
    }

    /// Probes of one flow carry their number in their sequence numbers.
    fn sequence_of(&self, n: u64) -> u16 {
        if self.endpoints.one_flow {
            n as u16
        } else {
            self.ports.sequence_of(n)
        }
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

impl SweepKind {
    /// The sweep that sends TCP probes with `flags` (none: SYNs), or why there is none.
    pub fn tcp(flags: TcpFlags, window: u16) -> Result<SweepKind, String> {
        let bits = flags.0;
        Ok(if bits == 0 || bits == TcpFlags::SYN {
            SweepKind::TcpSyn { window }
        } else if bits & TcpFlags::RST != 0 {
            return Err("a sweep cannot send -R: nothing answers a RST".into());
        } else if bits & TcpFlags::ACK != 0 {
            SweepKind::TcpAck { flags, window }
        } else if bits & TcpFlags::SYN != 0 {
            return Err(format!(
                "a SYN sweep sends SYN alone: drop -{} (or -S, for a FIN or Xmas scan)",
                TcpFlags(bits & !TcpFlags::SYN).letters()
            ));
        } else {
            SweepKind::TcpFin { flags, window }
        })
    }
}

/// What a TCP sweep's answers say, by the flags its probes carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpScan {
    /// SYN: a SYN-ACK is open, a RST closed, silence filtered.
    Syn,
    /// With ACK: any port answers with a RST, open or closed; silence is a filter's.
    Ack,
    /// Neither SYN nor ACK: a closed port answers with a RST, an open one drops the probe.
    Fin,
}

impl TcpScan {
    fn verdict(self, reply_flags: u8) -> Verdict {
        let rst = reply_flags & TcpFlags::RST != 0;
        let (status, reason) = match (self, rst) {
            (TcpScan::Ack, _) => (Status::Unfiltered, "rst"),
            (_, true) => (Status::Closed, "rst"),
            // Only a SYN sweep's answers can be without RST (see `echoed_cookie`).
            (_, false) => (Status::Open, "syn-ack"),
        };
        Verdict { status, reason }
    }

    fn silence(self) -> Verdict {
        Verdict {
            status: match self {
                TcpScan::Syn | TcpScan::Ack => Status::Filtered,
                TcpScan::Fin => Status::OpenFiltered,
            },
            reason: "timeout",
        }
    }
}

/// A sweep's TCP probes: each carries the cookie of its own (target, port, us, our port) as
/// its sequence number (and with ACK as its acknowledgement number too, which the RST
/// echoes), so the XDP program knows its answers without any state.
#[derive(Clone, Copy, Debug)]
pub struct TcpSweep {
    endpoints: SweepEndpoints,
    /// `endpoints.source` as the cookie hashes it, converted once rather than per probe.
    source: IpAddress,
    scan: TcpScan,
    flags: TcpFlags,
    template: SweepTemplate,
}

impl TcpSweep {
    pub fn new(endpoints: SweepEndpoints, scan: TcpScan, flags: TcpFlags, window: u16) -> TcpSweep {
        TcpSweep {
            endpoints,
            source: endpoints.source.into(),
            scan,
            flags,
            template: SweepTemplate::new(endpoints, flags, window),
        }
    }
}

/// A sweep's probe with what every probe shares already written: a probe copies it, writes its
/// target, ports, cookie and epoch, and completes both checksums from the template's sums of
/// the shared words (RFC 1071's sum is order-free, and the probe's own words were zero in
/// them). perf, 16 unanswered hosts: the send thread's own work per probe went from about 211
/// to 186 ns (of some 4 µs a probe costs the machine in all), the general writer's header
/// building and checksums having taken about 105 ns of it.
#[derive(Clone, Copy, Debug)]
struct SweepTemplate {
    packet: ProbeBuffer,
    len: usize,
    /// Where the TCP header starts: after IPv4's 20 bytes or IPv6's 40.
    tcp: usize,
    /// The IPv4 header's words, checksum field included as zero (0 for IPv6, which has none).
    ip_sum: u32,
    /// The TCP pseudo-header's and header's words, checksum field included as zero.
    tcp_sum: u32,
    /// The probes carry ACK, and so the cookie as their acknowledgement number too.
    acks: bool,
}

impl SweepTemplate {
    fn new(endpoints: SweepEndpoints, flags: TcpFlags, window: u16) -> SweepTemplate {
        let target = match endpoints.source {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let mut packet = [0u8; MAX_PROBE_LEN];
        let len = TcpSegment {
            source: endpoints.source,
            target,
            ttl: endpoints.ttl,
            tos: endpoints.tos,
            mark: IpMark::Epoch(0),
            source_port: 0,
            target_port: 0,
            seq: 0,
            ack: 0,
            flags,
            window,
            timestamp: None,
        }
        .write(&[], &mut packet);
        let tcp = len - usize::from(TCP_HEADER_LEN);
        let (source_address, protocol) = match endpoints.source {
            IpAddr::V4(_) => (&packet[12..16], packet[9]),
            IpAddr::V6(_) => (&packet[8..24], packet[6]),
        };
        let pseudo_header = words(source_address) + sum_of(&[u16::from(protocol), TCP_HEADER_LEN]);
        let checksum_less =
            |header: &[u8], field: usize| words(header) - words(&header[field..field + 2]);
        SweepTemplate {
            ip_sum: match endpoints.source {
                IpAddr::V4(_) => checksum_less(&packet[..tcp], 10),
                IpAddr::V6(_) => 0,
            },
            tcp_sum: pseudo_header + checksum_less(&packet[tcp..len], 16),
            acks: flags.0 & TcpFlags::ACK != 0,
            packet,
            len,
            tcp,
        }
    }

    /// Writes the probe into `buf`; returns its length.
    fn write(
        &self,
        target: IpAddr,
        port: u16,
        source_port: u16,
        epoch: u16,
        cookie: u32,
        buf: &mut ProbeBuffer,
    ) -> usize {
        let (len, tcp) = (self.len, self.tcp);
        let (seq, ack) = (cookie, if self.acks { cookie } else { 0 });
        buf[..len].copy_from_slice(&self.packet[..len]);
        let epoch_bytes = epoch.to_be_bytes();
        let target_sum = match target {
            IpAddr::V4(target) => {
                let octets = target.octets();
                buf[16..20].copy_from_slice(&octets);
                buf[4..6].copy_from_slice(&epoch_bytes);
                let target_sum = words(&octets);
                let ip_checksum = fold(self.ip_sum + target_sum + u32::from(epoch));
                buf[10..12].copy_from_slice(&ip_checksum.to_be_bytes());
                target_sum
            }
            IpAddr::V6(target) => {
                let octets = target.octets();
                buf[24..40].copy_from_slice(&octets);
                // The flow label's low 16 bits (its top four are zero in the template).
                buf[2..4].copy_from_slice(&epoch_bytes);
                words(&octets)
            }
        };
        buf[tcp..tcp + 2].copy_from_slice(&source_port.to_be_bytes());
        buf[tcp + 2..tcp + 4].copy_from_slice(&port.to_be_bytes());
        buf[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
        buf[tcp + 8..tcp + 12].copy_from_slice(&ack.to_be_bytes());
        let probe_sum = sum_of(&[
            source_port,
            port,
            (seq >> 16) as u16,
            seq as u16,
            (ack >> 16) as u16,
            ack as u16,
        ]);
        let tcp_checksum = fold(self.tcp_sum + target_sum + probe_sum);
        buf[tcp + 16..tcp + 18].copy_from_slice(&tcp_checksum.to_be_bytes());
        len
    }
}

/// The sum of `bytes` as big-endian 16-bit words (an even number of bytes).
fn words(bytes: &[u8]) -> u32 {
    bytes
        .chunks_exact(2)
        .map(|word| u32::from(u16::from_be_bytes([word[0], word[1]])))
        .sum()
}

impl SweepProbe for TcpSweep {
    fn protocol(&self) -> &'static str {
        "tcp"
    }

    fn filter(&self) -> ProbeFilter {
        ProbeFilter {
            tcp_flags: self.flags.0,
            ..self.endpoints.filter(KIND_TCP)
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
        let cookie = syn_cookie(
            self.endpoints.cookie_key,
            &target.into(),
            port,
            &self.source,
            source_port,
        );
        let len = self
            .template
            .write(target, port, source_port, epoch, cookie, buf);
        BuiltProbe { len, cookie }
    }

    fn classify(&self, reply: &ReplyRecord) -> Answer {
        // An ICMP error about the probe quotes its sequence number, the cookie itself.
        let (verdict, cookie) = match reply.icmp_error() {
            Some(error) => (icmp_verdict(error), reply.tcp_seq),
            None => (
                self.scan.verdict(reply.tcp_flags),
                echoed_cookie(self.flags.0, reply.tcp_flags, reply.tcp_seq, reply.tcp_ack)
                    .unwrap_or_default(),
            ),
        };
        Answer {
            host: reply.src_addr.into(),
            port: reply.src_port,
            source_port: reply.dst_port,
            cookie,
            verdict,
            fields: ReplyFields::of(reply, Some(reply.tcp_window)),
        }
    }

    fn silence(&self) -> Verdict {
        self.scan.silence()
    }
}

/// An ICMP error makes the port filtered, for the reason the users asked for: a
/// filter's `admin-prohibited`, a `ttl-exceeded` on the way, any other unreachable
/// (network, host, protocol, port) `icmp-unreach`.
pub(super) fn icmp_verdict(error: IcmpErrorKind) -> Verdict {
    let reason = match error {
        IcmpErrorKind::AdminProhibited => "admin-prohibited",
        IcmpErrorKind::TimeExceeded => "ttl-exceeded",
        IcmpErrorKind::NetUnreachable
        | IcmpErrorKind::HostUnreachable
        | IcmpErrorKind::ProtocolUnreachable
        | IcmpErrorKind::PortUnreachable => "icmp-unreach",
    };
    Verdict {
        status: Status::Filtered,
        reason,
    }
}
