//! The raw IP kind (hping3 -0 with -H PROTO): an IPv4 header of protocol PROTO and the -d / -E
//! data, nothing else. Nothing answers it but ICMP errors quoting it (Linux's protocol
//! unreachable for a protocol it does not have), which the XDP program matches by the quoted
//! addresses, protocol and IP id; the ping shows them as it does for TCP probes.
use std::net::IpAddr;

use anyhow::{bail, Result};
use prober_common::{ProbeFilter, ReplyRecord, KIND_RAW_IP};

use super::{ip::Transport, Endpoints, Payload, PingProbe};

/// hping3's default -H: TCP (which Linux drops, too short, without an answer).
pub const DEFAULT_PROTOCOL: u8 = 6;

/// Raw IP mode is IPv4's.
pub fn check_target(target: IpAddr) -> Result<()> {
    if target.is_ipv6() {
        bail!("-0 is raw IPv4 (hping3's): an IPv6 host answers an unknown next header with a parameter problem, which prober does not read");
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct RawIp {
    pub endpoints: Endpoints,
    pub protocol: u8,
}

impl RawIp {
    pub fn new(endpoints: Endpoints, protocol: u8) -> Result<RawIp> {
        check_target(endpoints.target)?;
        Ok(RawIp {
            endpoints,
            protocol,
        })
    }
}

impl PingProbe for RawIp {
    fn mode(&self) -> String {
        "raw IP mode set".to_string()
    }

    fn build(&self, n: u64, buf: &mut [u8]) -> usize {
        let payload = self.endpoints.payload.of_probe(n);
        let ip = self
            .endpoints
            .ip_header(n, Transport::Raw(self.protocol), payload.len() as u16);
        ip.write_with(&(), payload, buf)
    }

    fn filter(&self) -> ProbeFilter {
        let fixed = self.endpoints.fields.id;
        ProbeFilter {
            kind: KIND_RAW_IP,
            ip_protocol: self.protocol,
            ip_id_base: fixed.unwrap_or(self.endpoints.first_ip_id),
            ip_id_max_offset: if fixed.is_some() { 0 } else { u16::MAX },
            ..self.endpoints.filter()
        }
    }

    fn payload(&self) -> &Payload {
        &self.endpoints.payload
    }

    /// The probe's number, from the IP id its error quotes (the XDP program's offset from the
    /// first).
    fn sequence(&self, reply: &ReplyRecord) -> u16 {
        reply.icmp_seq
    }

    /// With -N every probe is number 0, as the XDP program numbers their errors (as TCP's -k).
    fn sequence_of(&self, n: u64) -> u16 {
        match self.endpoints.fields.id {
            Some(_) => 0,
            None => n as u16,
        }
    }

    /// Only ICMP errors answer raw IP probes, and they have lines of their own.
    fn write_fields(&self, _reply: &ReplyRecord, _seq: u16, _line: &mut String) {}
}

#[cfg(test)]
mod tests {
    use prober_tests::internet_checksum;

    use super::*;
    use crate::probe::IpFields;

    fn probe(data: usize, id: Option<u16>) -> RawIp {
        let endpoints = Endpoints {
            source: IpAddr::from([198, 18, 0, 1]),
            target: IpAddr::from([198, 18, 0, 2]),
            ttl: 64,
            first_ip_id: 0xfffe,
            fields: IpFields {
                id,
                ..IpFields::default()
            },
            payload: Payload::filler(data),
            one_flow: false,
            random_source: None,
        };
        RawIp::new(endpoints, 200).unwrap()
    }

    fn built(probe: &RawIp, n: u64) -> Vec<u8> {
        let mut buf = probe.buffer();
        let len = probe.build(n, &mut buf);
        buf[..len].to_vec()
    }

    #[test]
    fn a_raw_ip_probe_is_a_bare_header_of_its_protocol() {
        let probe = probe(0, None);
        for n in [0, 1, 2] {
            let packet = built(&probe, n);
            assert_eq!(packet.len(), 20, "the IP header alone");
            assert_eq!((packet[0], packet[9]), (0x45, 200), "IPv4, protocol 200");
            assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 20);
            assert_eq!(
                u16::from_be_bytes([packet[4], packet[5]]),
                0xfffe_u16.wrapping_add(n as u16),
                "the ids count up, wrapping"
            );
            assert_eq!(&packet[12..20], &[198, 18, 0, 1, 198, 18, 0, 2]);
            assert_eq!(internet_checksum(&packet), 0, "IP header checksum");
        }
        assert_eq!(probe.headers_len(), 20, "hping3's `20 headers`");
        let filter = probe.filter();
        assert_eq!((filter.kind, filter.ip_protocol), (KIND_RAW_IP, 200));
        assert!(filter.is_our_ip_id(0xfffe) && filter.is_our_ip_id(1));
        assert_eq!(
            probe.sequence_of(3),
            3,
            "the XDP program's number: 1 - 0xfffe"
        );
    }

    #[test]
    fn the_data_follows_the_header_and_a_fixed_id_is_the_only_one() {
        let probe = probe(5, Some(77));
        let packet = built(&probe, 3);
        assert_eq!(packet.len(), 25);
        assert_eq!(&packet[20..], b"XXXXX");
        assert_eq!(u16::from_be_bytes([packet[4], packet[5]]), 77, "-N");
        assert_eq!(internet_checksum(&packet[..20]), 0);
        let filter = probe.filter();
        assert!(filter.is_our_ip_id(77) && !filter.is_our_ip_id(78));
        assert_eq!(probe.sequence_of(3), 0, "the XDP program's number: 77 - 77");
        assert_eq!(probe.payload().size(), 5);
    }

    #[test]
    fn ipv6_is_refused() {
        let endpoints = Endpoints {
            source: "2001:db8::1".parse().unwrap(),
            target: "2001:db8::2".parse().unwrap(),
            ..probe(0, None).endpoints
        };
        assert!(RawIp::new(endpoints, 200)
            .unwrap_err()
            .to_string()
            .starts_with("-0 is raw IPv4"));
    }
}
