//! The UDP kind (hping3 -2): datagrams from a source port counting up from a random base
//! (-s, -k as TCP's) to the probed port (-p, with +N and ++N), carrying -d/-E's data. A UDP
//! answer means open; the target's ICMP port unreachable, closed; other ICMP errors,
//! filtered; silence, open|filtered (nmap -sU's words, for sweeps).
use std::{fmt::Write as _, net::IpAddr};

use prober_common::{
    syn_cookie, wire::IcmpErrorKind, IpAddress, ProbeFilter, ReplyRecord, KIND_UDP,
};

use super::{
    ip::Transport,
    tcp::{icmp_verdict, ProbePorts},
    Answer, BuiltProbe, Endpoints, Payload, PingProbe, ProbeBuffer, ReplyFields, Status,
    SweepEndpoints, SweepProbe, Verdict,
};

const UDP_HEADER_LEN: u16 = 8;

/// One target's UDP probes.
#[derive(Debug)]
pub struct UdpProbe {
    pub endpoints: Endpoints,
    pub ports: ProbePorts,
}

impl PingProbe for UdpProbe {
    fn mode(&self) -> String {
        "udp mode set".to_string()
    }

    fn build(&self, n: u64, buf: &mut [u8]) -> usize {
        let payload = self.endpoints.payload.of_probe(n);
        let ip = self
            .endpoints
            .ip_header(n, Transport::Udp, UDP_HEADER_LEN + payload.len() as u16);
        let udp = ip.udp(self.ports.source(n), self.ports.destination(n), payload);
        ip.write_with(&udp, payload, buf)
    }

    fn filter(&self) -> ProbeFilter {
        ProbeFilter {
            kind: KIND_UDP,
            tcp_data_len: self.endpoints.payload.size() as u16,
            ..self.ports.filter(self.endpoints.filter())
        }
    }

    fn payload(&self) -> &Payload {
        &self.endpoints.payload
    }

    fn sequence(&self, reply: &ReplyRecord) -> u16 {
        self.ports.sequence(reply)
    }

    fn take(&self, reply: &ReplyRecord) -> bool {
        self.ports.take(reply)
    }

    fn sequence_of(&self, n: u64) -> u16 {
        self.ports.sequence_of(n)
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
