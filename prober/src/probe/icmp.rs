//! The ICMP echo kind (hping3 -1): the target's kernel answers with an echo reply. An IPv6
//! target gets ICMPv6's echo request (type 128) and answers with its echo reply (129).
use std::fmt::Write as _;

use anyhow::Result;
use etherparse::IcmpEchoHeader;
use prober_common::{ProbeFilter, ReplyRecord, KIND_ICMP_ECHO};

use super::{ip::Transport, Endpoints, Payload, PingProbe};
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
            // Not 0: with probes of one flow no identifier would sum with a sequence number
            // other than 0 to it (see `identifier`).
            id: (random()? as u16).max(1),
        })
    }

    /// The identifier of the echo with sequence number `seq`: the run's, or with probes of one
    /// flow the one whose one's complement sum with `seq` is the run's, so that every probe
    /// has the same checksum (as paris-traceroute's; [`ProbeFilter::is_our_echo`]).
    fn identifier(&self, seq: u16) -> u16 {
        let id = self.id;
        if !self.endpoints.one_flow || seq == 0 {
            id
        } else if id > seq {
            id - seq
        } else {
            id + (0xffff - seq)
        }
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
        let seq = n as u16;
        let echo = ip.echo_request(
            IcmpEchoHeader {
                id: self.identifier(seq),
                seq,
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
