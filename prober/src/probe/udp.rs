//! The UDP kind (hping3 -2): datagrams from a source port counting up from a random base
//! (-s, -k as TCP's) to the probed port (-p, with +N and ++N), carrying -d/-E's data. A UDP
//! answer means open; the target's ICMP port unreachable, closed; other ICMP errors,
//! filtered; silence, open|filtered (nmap -sU's words, for sweeps).
use std::{fmt::Write as _, net::IpAddr};

use prober_common::{
    ones_complement_sum, syn_cookie, wire::IcmpErrorKind, IpAddress, ProbeFilter, ReplyRecord,
    KIND_UDP,
};

use super::{
    ip::Transport,
    tcp::{icmp_verdict, ProbePorts},
    Answer, BuiltProbe, Endpoints, Payload, PingProbe, ProbeBuffer, ReplyFields, Status,
    SweepEndpoints, SweepProbe, Verdict,
};

const UDP_HEADER_LEN: u16 = 8;

/// The bytes in front of the data of a UDP probe of one flow over IPv6, which steer its
/// checksum (see [`UdpProbe::sequence_of`]).
const CHECKSUM_STEER_LEN: usize = 2;

/// One target's UDP probes. Probes of one flow (a traceroute's, paris-traceroute's way) leave
/// from one port, as with -k, and are told apart by what no router hashes but every ICMP error
/// quotes (see [`ProbeFilter::udp_slot`]): over IPv4 their IP id, which counts up from probe
/// to probe (so -N is refused with -T -2); over IPv6, which has none, their UDP checksum, which
/// two bytes in front of the data steer to the probe's number (mod 65535) plus 1.
#[derive(Debug)]
pub struct UdpProbe {
    pub endpoints: Endpoints,
    pub ports: ProbePorts,
}

impl UdpProbe {
    pub fn new(endpoints: Endpoints, ports: ProbePorts) -> UdpProbe {
        let ports = ProbePorts {
            keep: ports.keep || endpoints.one_flow,
            ..ports
        };
        UdpProbe { endpoints, ports }
    }

    /// Whether probes carry their number in their checksum.
    fn steers_checksum(&self) -> bool {
        self.endpoints.one_flow && self.endpoints.target.is_ipv6()
    }

    /// The checksum of probe `n` when it is steered: never 0, which UDP over IPv6 forbids.
    fn steered_checksum(n: u64) -> u16 {
        (n % u64::from(u16::MAX)) as u16 + 1
    }
}

impl PingProbe for UdpProbe {
    fn mode(&self) -> String {
        "udp mode set".to_string()
    }

    fn build(&self, n: u64, buf: &mut [u8]) -> usize {
        let payload = self.endpoints.payload.of_probe(n);
        let steered;
        let data = if self.steers_checksum() {
            steered = [&[0; CHECKSUM_STEER_LEN][..], payload].concat();
            &steered[..]
        } else {
            payload
        };
        let ip = self
            .endpoints
            .ip_header(n, Transport::Udp, UDP_HEADER_LEN + data.len() as u16);
        let udp = ip.udp(self.ports.source(n), self.ports.destination(n), data);
        let len = ip.write_with(&udp, data, buf);
        if self.steers_checksum() {
            // The sum of the packet with the two bytes 0 is !udp.checksum; with them, it must
            // be !wanted, so they add !wanted - !udp.checksum (RFC 1624's incremental update).
            let wanted = Self::steered_checksum(n);
            let steer = ones_complement_sum(!wanted, udp.checksum);
            let at = len - data.len();
            buf[at..at + CHECKSUM_STEER_LEN].copy_from_slice(&steer.to_be_bytes());
            buf[at - 2..at].copy_from_slice(&wanted.to_be_bytes());
        }
        len
    }

    fn filter(&self) -> ProbeFilter {
        ProbeFilter {
            kind: KIND_UDP,
            tcp_data_len: self.data_len() as u16,
            ip_id_base: self.endpoints.first_ip_id,
            ..self.ports.filter(self.endpoints.filter())
        }
    }

    fn payload(&self) -> &Payload {
        &self.endpoints.payload
    }

    fn data_len(&self) -> usize {
        let steer = if self.steers_checksum() {
            CHECKSUM_STEER_LEN
        } else {
            0
        };
        self.endpoints.payload.size() + steer
    }

    /// Probes of one flow: the slot the XDP program found an error's departure in, from its
    /// quoted IP id (IPv4) or checksum (IPv6); a UDP answer is the latest probe's (see
    /// [`PingProbe::names_its_probe`]).
    fn sequence(&self, reply: &ReplyRecord) -> u16 {
        if self.endpoints.one_flow {
            reply.icmp_seq
        } else {
            self.ports.sequence(reply)
        }
    }

    fn names_its_probe(&self, reply: &ReplyRecord) -> bool {
        !self.endpoints.one_flow || reply.icmp_error().is_some()
    }

    fn take(&self, reply: &ReplyRecord) -> bool {
        self.ports.take(reply)
    }

    fn sequence_of(&self, n: u64) -> u16 {
        match self.endpoints.one_flow {
            true if self.steers_checksum() => Self::steered_checksum(n).wrapping_sub(1),
            true => n as u16,
            false => self.ports.sequence_of(n),
        }
    }

    fn write_fields(&self, _reply: &ReplyRecord, seq: u16, line: &mut String) {
        let _ = write!(line, "seq={seq}");
    }

    /// hping3 names the probe an unreachable quotes: `status=0 port=<our port> seq=<n>`.
    fn write_error_trailer(
        &self,
        error: IcmpErrorKind,
        reply: &ReplyRecord,
        seq: u16,
        line: &mut String,
    ) {
        if error != IcmpErrorKind::TimeExceeded {
            let _ = write!(line, "\nstatus=0 port={} seq={seq}", reply.dst_port);
        }
    }

    /// hping3 times the unreachables it names the probe of; a time exceeded, as in its other
    /// modes, it does not.
    fn times_error(&self, error: IcmpErrorKind) -> bool {
        error != IcmpErrorKind::TimeExceeded
    }
}

/// A sweep's datagrams, without data. An answer echoes nothing of its probe: userspace knows
/// it by its endpoints, whose cookie (see [`syn_cookie`]) files and finds the probe's
/// departure as a TCP probe's sequence number does.
#[derive(Clone, Copy, Debug)]
pub struct UdpSweep {
    endpoints: SweepEndpoints,
    /// `endpoints.source` as the cookie hashes it.
    source: IpAddress,
}

impl UdpSweep {
    pub fn new(endpoints: SweepEndpoints) -> UdpSweep {
        UdpSweep {
            endpoints,
            source: endpoints.source.into(),
        }
    }

    fn cookie(&self, target: IpAddr, port: u16, source_port: u16) -> u32 {
        syn_cookie(
            self.endpoints.cookie_key,
            &target.into(),
            port,
            &self.source,
            source_port,
        )
    }
}

impl SweepProbe for UdpSweep {
    fn protocol(&self) -> &'static str {
        "udp"
    }

    fn filter(&self) -> ProbeFilter {
        self.endpoints.filter(KIND_UDP)
    }

    fn build(
        &self,
        target: IpAddr,
        port: u16,
        source_port: u16,
        epoch: u16,
        buf: &mut ProbeBuffer,
    ) -> BuiltProbe {
        let ip = self
            .endpoints
            .ip_header(target, epoch, Transport::Udp, UDP_HEADER_LEN);
        let udp = ip.udp(source_port, port, &[]);
        BuiltProbe {
            len: ip.write_with(&udp, &[], buf),
            cookie: self.cookie(target, port, source_port),
        }
    }

    fn classify(&self, reply: &ReplyRecord) -> Answer {
        let host = reply.src_addr.into();
        let error = reply.icmp_error();
        Answer {
            host,
            port: reply.src_port,
            source_port: reply.dst_port,
            cookie: self.cookie(host, reply.src_port, reply.dst_port),
            verdict: match error {
                Some(error) => udp_icmp_verdict(error),
                None => Verdict {
                    status: Status::Open,
                    reason: "udp-response",
                },
            },
            fields: ReplyFields::of(reply, None),
        }
    }

    fn silence(&self) -> Verdict {
        Verdict {
            status: Status::OpenFiltered,
            reason: "no-response",
        }
    }

    fn vouched_by_cookie(&self) -> bool {
        false
    }
}

/// nmap -sU's: a port unreachable is closed; any other error filtered, as TCP's are.
fn udp_icmp_verdict(error: IcmpErrorKind) -> Verdict {
    match error {
        IcmpErrorKind::PortUnreachable => Verdict {
            status: Status::Closed,
            reason: "port-unreach",
        },
        other => icmp_verdict(other),
    }
}
