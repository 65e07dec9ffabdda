//! The IP header in front of every probe, for either family (etherparse builds it).
use std::net::IpAddr;

use etherparse::{IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header};
use prober_common::IpAddress;

use super::{ProbeBuffer, MAX_PROBE_LEN};

/// A probe's IP header.
pub enum IpHeader {
    V4(Ipv4Header),
    V6(Ipv6Header),
}

impl IpHeader {
    /// The header of a probe from `source` to `target` with `payload_len` bytes after it,
    /// checksum filled in. IPv6 when either address is (a route's source address always has
    /// its target's family); `ip_id` is IPv4's alone.
    pub fn new(
        source: IpAddr,
        target: IpAddr,
        ttl: u8,
        ip_id: u16,
        protocol: IpNumber,
        payload_len: u16,
    ) -> IpHeader {
        match (source, target) {
            (IpAddr::V4(source), IpAddr::V4(target)) => {
                let mut header =
                    Ipv4Header::new(payload_len, ttl, protocol, source.octets(), target.octets())
                        .expect("probe payloads are far below the IPv4 size limit");
                header.identification = ip_id;
                header.dont_fragment = false;
                header.header_checksum = header.calc_header_checksum();
                IpHeader::V4(header)
            }
            (source, target) => IpHeader::V6(Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: payload_len,
                next_header: protocol,
                hop_limit: ttl,
                source: IpAddress::from(source).0,
                destination: IpAddress::from(target).0,
            }),
        }
    }

    /// The TCP checksum of `tcp` (without payload) behind this header.
    pub fn tcp_checksum(&self, tcp: &etherparse::TcpHeader) -> u16 {
        match self {
            IpHeader::V4(ip) => tcp.calc_checksum_ipv4(ip, &[]),
            IpHeader::V6(ip) => tcp.calc_checksum_ipv6(ip, &[]),
        }
        .expect("an empty payload fits")
    }

    /// Writes this header and then `transport` at the start of `buf`; returns the bytes
    /// written.
    pub fn write_with(&self, transport: &dyn Serialise, buf: &mut ProbeBuffer) -> usize {
        let mut rest: &mut [u8] = &mut buf[..];
        match self {
            IpHeader::V4(ip) => ip.write(&mut rest),
            IpHeader::V6(ip) => ip.write(&mut rest),
        }
        .and_then(|()| transport.serialise(&mut rest))
        .expect("probe headers fit in MAX_PROBE_LEN");
        MAX_PROBE_LEN - rest.len()
    }
}

/// The transport headers etherparse can write, behind one object-safe method.
pub trait Serialise {
    fn serialise(&self, out: &mut &mut [u8]) -> std::io::Result<()>;
}

impl Serialise for etherparse::TcpHeader {
    fn serialise(&self, out: &mut &mut [u8]) -> std::io::Result<()> {
        self.write(out)
    }
}

impl Serialise for etherparse::Icmpv4Header {
    fn serialise(&self, out: &mut &mut [u8]) -> std::io::Result<()> {
        self.write(out)
    }
}
