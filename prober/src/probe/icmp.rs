//! The ICMP echo kind (hping3 -1): the target's kernel answers with an echo reply.
use std::fmt::Write as _;

use anyhow::{bail, Result};
use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Type, IpNumber};
use prober_common::{ProbeFilter, ReplyRecord, KIND_ICMP_ECHO};

use super::{Endpoints, PingProbe, ProbeBuffer};
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
        if endpoints.target.is_ipv6() {
            bail!("ICMP echo to an IPv6 target needs ICMPv6, which prober does not send yet");
        }
        Ok(IcmpEcho {
            endpoints,
            id: random()? as u16,
        })
    }
}

impl PingProbe for IcmpEcho {
    fn mode(&self) -> String {
        "icmp mode set, 28 headers + 0 data bytes".to_string()
    }

    fn build(&self, n: u64, buf: &mut ProbeBuffer) -> usize {
        let ip = self.endpoints.ip_header(n, IpNumber::ICMP, ICMP_HEADER_LEN);
        let echo = IcmpEchoHeader {
            id: self.id,
            seq: n as u16,
        };
        let icmp = Icmpv4Header::with_checksum(Icmpv4Type::EchoRequest(echo), &[]);
        ip.write_with(&icmp, buf)
    }

    fn filter(&self) -> ProbeFilter {
        ProbeFilter {
            kind: KIND_ICMP_ECHO,
            icmp_id: self.id,
            ..self.endpoints.filter()
        }
    }

    fn sequence(&self, reply: &ReplyRecord) -> u16 {
        reply.icmp_seq
    }

    fn write_fields(&self, _reply: &ReplyRecord, seq: u16, line: &mut String) {
        let _ = write!(line, "icmp_seq={seq}");
    }
}
