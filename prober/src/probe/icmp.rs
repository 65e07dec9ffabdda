//! The ICMP echo kind (hping3 -1): the target's kernel answers with an echo reply. An IPv6
//! target gets ICMPv6's echo request (type 128) and answers with its echo reply (129). A sweep
//! of echoes (zmap's icmp_echoscan) finds the hosts that are up: each echo carries its
//! source-port slot as its identifier and the low half of its target's cookie as its sequence
//! number, which the reply echoes.
use std::{fmt::Write as _, net::IpAddr};

use anyhow::Result;
use etherparse::IcmpEchoHeader;
use prober_common::{syn_cookie, ProbeFilter, ReplyRecord, KIND_ICMP_ECHO};

use super::{
    ip::{IpHeader, IpMark, Transport},
    Answer, BuiltProbe, Endpoints, Payload, PingProbe, ProbeBuffer, ReplyFields, Status,
    SweepEndpoints, SweepProbe, Verdict,
};
use crate::random;

#[derive(Clone, Debug)]
pub struct IcmpEcho {
    pub endpoints: Endpoints,
    /// Echo identifier of this run's probes (random, so concurrent runs don't mix).
    pub id: u16,
}

const ICMP_HEADER_LEN: u16 = 8;

impl IcmpEcho {
    pub fn new(endpoints: Endpoints) -> Result<IcmpEcho> {
        Ok(IcmpEcho {
            endpoints,
            id: random()? as u16,
        })
    }
}

impl PingProbe for IcmpEcho {
    fn mode(&self) -> String {
        "icmp mode set".to_string()
    }

    fn build(&self, n: u64, buf: &mut [u8]) -> usize {
        let payload = self.endpoints.payload.of_probe(n);
        let ip =
            self.endpoints
                .ip_header(n, Transport::Icmp, ICMP_HEADER_LEN + payload.len() as u16);
        let echo = ip.echo_request(
            IcmpEchoHeader {
                id: self.id,
                seq: n as u16,
            },
            payload,
        );
        ip.write_with(&echo, payload, buf)
    }

    fn filter(&self) -> ProbeFilter {
        ProbeFilter {
            kind: KIND_ICMP_ECHO,
            icmp_id: self.id,
            ..self.endpoints.filter()
        }
    }

    fn payload(&self) -> &Payload {
        &self.endpoints.payload
    }

    fn sequence(&self, reply: &ReplyRecord) -> u16 {
        reply.icmp_seq
    }

    fn write_fields(&self, _reply: &ReplyRecord, seq: u16, line: &mut String) {
        let _ = write!(line, "icmp_seq={seq}");
    }
}

/// A sweep's echo requests, one per host.
#[derive(Clone, Copy, Debug)]
pub struct IcmpEchoSweep {
    pub endpoints: SweepEndpoints,
}

impl SweepProbe for IcmpEchoSweep {
    fn protocol(&self) -> &'static str {
        "icmp"
    }

    fn has_ports(&self) -> bool {
        false
    }

    fn filter(&self) -> ProbeFilter {
        self.endpoints.filter(KIND_ICMP_ECHO)
    }

    /// `port` is none of ICMP's: the sweep's one position per host.
    fn build(
        &self,
        target: IpAddr,
        _port: u16,
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
        let seq = syn_cookie(cookie_key, &target.into(), 0, &source.into(), source_port) as u16;
        let ip = IpHeader::new(
            source,
            target,
            ttl,
            tos,
            IpMark::Epoch(epoch),
            Transport::Icmp,
            ICMP_HEADER_LEN,
        );
        let echo = ip.echo_request(
            IcmpEchoHeader {
                id: source_port,
                seq,
            },
            &[],
        );
        BuiltProbe {
            len: ip.write_with(&echo, &[], buf),
            cookie: u32::from(seq),
        }
    }

    fn classify(&self, reply: &ReplyRecord) -> Answer {
        Answer {
            host: reply.src_addr.into(),
            port: 0,
            source_port: reply.icmp_id,
            cookie: u32::from(reply.icmp_seq),
            verdict: Verdict {
                status: Status::Up,
                reason: "echo-reply",
            },
            fields: ReplyFields {
                ttl: reply.ttl,
                ip_id: reply.src_addr.ipv4().map(|_| reply.ip_id),
                window: None,
                ip_len: reply.ip_len,
                tcp_flags: 0,
                rtt_ns: None,
                kernel_ns: reply.kernel_ns,
                icmp_from: None,
            },
        }
    }

    fn silence(&self) -> Verdict {
        Verdict {
            status: Status::Down,
            reason: "timeout",
        }
    }
}
