//! ICMP echo probes (hping3 -1): the target's kernel answers with an echo reply.
use std::fmt::Write as _;

use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Type, IpNumber};
use prober_common::{ProbeFilter, ReplyRecord, IPPROTO_ICMP};

use super::{ipv4_header, write_headers, Endpoints, Probe, MAX_PROBE_LEN};

#[derive(Clone, Debug)]
pub struct IcmpEcho {
    pub endpoints: Endpoints,
    /// Echo identifier of this run's probes (random, so concurrent runs don't mix).
    pub id: u16,
}

const ICMP_HEADER_LEN: u16 = 8;

impl Probe for IcmpEcho {
    fn mode(&self) -> String {
        "icmp mode set, 28 headers + 0 data bytes".to_string()
    }

    fn build(&self, n: u64, buf: &mut [u8; MAX_PROBE_LEN]) -> usize {
        let Endpoints {
            source,
            target,
            ttl,
            ..
        } = self.endpoints;
        let ip_id = self.endpoints.ip_id(n);
        let ip = ipv4_header(source, target, ttl, ip_id, IpNumber::ICMP, ICMP_HEADER_LEN);
        let echo = IcmpEchoHeader {
            id: self.id,
            seq: n as u16,
        };
        let icmp = Icmpv4Header::with_checksum(Icmpv4Type::EchoRequest(echo), &[]);
        write_headers(buf, &[&ip, &icmp])
    }

    fn filter(&self) -> ProbeFilter {
        ProbeFilter {
            protocol: IPPROTO_ICMP,
            icmp_id: self.id,
            ..ProbeFilter::default()
        }
    }

    fn sequence(&self, reply: &ReplyRecord) -> u16 {
        reply.icmp_seq
    }

    fn write_fields(&self, _reply: &ReplyRecord, seq: u16, line: &mut String) {
        let _ = write!(line, "icmp_seq={seq}");
    }
}
