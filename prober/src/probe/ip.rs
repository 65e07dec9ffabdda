//! The IP header in front of every probe, for either family, and the transport headers whose
//! checksums cover it (etherparse builds them).
use std::{io::Write as _, net::IpAddr};

use etherparse::{
    Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpDscp, IpEcn, IpFragOffset, IpNumber,
    Ipv4Header, Ipv6FlowLabel, Ipv6Header, UdpHeader,
};
use prober_common::IpAddress;

/// A probe's IP header.
pub enum IpHeader {
    V4(Ipv4Header),
    V6(Ipv6Header),
}

/// What a probe carries after its IP header, whatever the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    /// ICMP behind IPv4, ICMPv6 behind IPv6.
    Icmp,
    /// Nothing but data, under this protocol number (raw IP mode).
    Raw(u8),
}

/// What tells a probe's IP header from its neighbours'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpMark {
    /// hping3's: an IPv4 identification (IPv6 has none), fragments allowed unless -y.
    Id { id: u16, dont_fragment: bool },
    /// A sweep's: the probe's epoch (see [`prober_common::sweep_departure_slot`]) in the IPv4
    /// identification, with DF set so that the reused number can never join two packets'
    /// fragments (an atomic datagram, RFC 6864), or in the IPv6 flow label's low 16 bits.
    Epoch(u16),
}

impl IpHeader {
    /// The header of a probe from `source` to `target` with `payload_len` bytes of `transport`
    /// after it, checksum filled in; `tos` is IPv4's type of service, IPv6's traffic class.
    /// IPv6 when either address is (a route's source address always has its target's family).
    pub fn new(
        source: IpAddr,
        target: IpAddr,
        ttl: u8,
        tos: u8,
        mark: IpMark,
        transport: Transport,
        payload_len: u16,
    ) -> IpHeader {
        let protocol = |icmp| match transport {
            Transport::Tcp => IpNumber::TCP,
            Transport::Udp => IpNumber::UDP,
            Transport::Icmp => icmp,
            Transport::Raw(protocol) => IpNumber(protocol),
        };
        match (source, target) {
            (IpAddr::V4(source), IpAddr::V4(target)) => {
                let mut header = Ipv4Header::new(
                    payload_len,
                    ttl,
                    protocol(IpNumber::ICMP),
                    source.octets(),
                    target.octets(),
                )
                .expect("probe payloads are far below the IPv4 size limit");
                (header.identification, header.dont_fragment) = match mark {
                    IpMark::Id { id, dont_fragment } => (id, dont_fragment),
                    IpMark::Epoch(epoch) => (epoch, true),
                };
                (header.dscp, header.ecn) = tos_parts(tos);
                header.header_checksum = header.calc_header_checksum();
                IpHeader::V4(header)
            }
            (source, target) => IpHeader::V6(Ipv6Header {
                traffic_class: tos,
                flow_label: match mark {
                    IpMark::Id { .. } => Ipv6FlowLabel::ZERO,
                    IpMark::Epoch(epoch) => Ipv6FlowLabel::try_new(u32::from(epoch))
                        .expect("16 bits fit in a flow label"),
                },
                payload_length: payload_len,
                next_header: protocol(IpNumber::IPV6_ICMP),
                hop_limit: ttl,
                source: IpAddress::from(source).0,
                destination: IpAddress::from(target).0,
            }),
        }
    }

    /// The TCP checksum of `tcp` carrying `payload` behind this header.
    pub fn tcp_checksum(&self, tcp: &etherparse::TcpHeader, payload: &[u8]) -> u16 {
        match self {
            IpHeader::V4(ip) => tcp.calc_checksum_ipv4(ip, payload),
            IpHeader::V6(ip) => tcp.calc_checksum_ipv6(ip, payload),
        }
        .expect("probe payloads fit in a packet")
    }

    /// A UDP header from `source_port` to `target_port` carrying `payload` behind this header,
    /// its checksum over the pseudo-header of either family.
    pub fn udp(&self, source_port: u16, target_port: u16, payload: &[u8]) -> UdpHeader {
        match self {
            IpHeader::V4(ip) => {
                UdpHeader::with_ipv4_checksum(source_port, target_port, ip, payload)
            }
            IpHeader::V6(ip) => {
                UdpHeader::with_ipv6_checksum(source_port, target_port, ip, payload)
            }
        }
        .expect("probe payloads fit in a packet")
    }

    /// An ICMP message of `icmp_type` and `code` with `id` and `seq` (the identifier and
    /// sequence number every query message has) carrying `payload` behind this header:
    /// ICMP's, or ICMPv6's, whose checksum covers the IPv6 pseudo-header.
    pub fn icmp_query(
        &self,
        (icmp_type, code): (u8, u8),
        (id, seq): (u16, u16),
        payload: &[u8],
    ) -> IcmpQuery {
        let [i0, i1] = id.to_be_bytes();
        let [s0, s1] = seq.to_be_bytes();
        let bytes5to8 = [i0, i1, s0, s1];
        match self {
            IpHeader::V4(_) => IcmpQuery::V4(Icmpv4Header::with_checksum(
                Icmpv4Type::Unknown {
                    type_u8: icmp_type,
                    code_u8: code,
                    bytes5to8,
                },
                payload,
            )),
            IpHeader::V6(ip) => IcmpQuery::V6(
                Icmpv6Header::with_checksum(
                    Icmpv6Type::Unknown {
                        type_u8: icmp_type,
                        code_u8: code,
                        bytes5to8,
                    },
                    ip.source,
                    ip.destination,
                    payload,
                )
                .expect("probe payloads fit in a packet"),
            ),
        }
    }

    /// Writes this header, then `transport` and `payload`, at the start of `buf`; returns the
    /// bytes written.
    pub fn write_with(&self, transport: &dyn Serialise, payload: &[u8], buf: &mut [u8]) -> usize {
        let room = buf.len();
        let mut rest: &mut [u8] = buf;
        match self {
            IpHeader::V4(ip) => ip.write(&mut rest),
            IpHeader::V6(ip) => ip.write(&mut rest),
        }
        .and_then(|()| transport.serialise(&mut rest))
        .and_then(|()| rest.write_all(payload))
        .expect("probes fit in their buffer");
        room - rest.len()
    }
}

/// Sets the TTL (IPv6: hop limit) of the probe `packet`, of any kind, as built: IPv4's header
/// checksum follows; neither family's transport checksum covers it.
pub fn set_ttl(packet: &mut [u8], ttl: u8) {
    match packet.first().map(|byte| byte >> 4) {
        Some(4) => {
            let (mut header, _) =
                Ipv4Header::from_slice(packet).expect("a probe starts with its IPv4 header");
            header.time_to_live = ttl;
            header.header_checksum = header.calc_header_checksum();
            let mut start: &mut [u8] = packet;
            header
                .write(&mut start)
                .expect("the header it was read from");
        }
        Some(6) => packet[7] = ttl,
        _ => unreachable!("probes are IPv4 or IPv6"),
    }
}

/// hping3's -f: the bytes of a probe's IP payload each fragment carries (hping3's default
/// virtual MTU; a multiple of 8, as fragment offsets count 8-byte units).
pub const FRAGMENT_PAYLOAD: usize = 16;

/// hping3's -f: hands `each` the fragments of the IPv4 `packet` (one without options, as
/// [`IpHeader`] writes them), each with [`FRAGMENT_PAYLOAD`] bytes of its payload (the last
/// with the rest), all but the last with more-fragments set, DF clear, and its own header
/// checksum. A packet whose payload fits in one goes whole, as hping3 sends it.
pub fn for_each_fragment<E>(
    packet: &[u8],
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let (header, payload) =
        Ipv4Header::from_slice(packet).expect("fragmented probes are IPv4 packets prober wrote");
    if payload.len() <= FRAGMENT_PAYLOAD {
        return each(packet);
    }
    let mut fragment = [0u8; Ipv4Header::MIN_LEN + FRAGMENT_PAYLOAD];
    let chunks = payload.chunks(FRAGMENT_PAYLOAD);
    let last = chunks.len() - 1;
    for (index, chunk) in chunks.enumerate() {
        let mut piece = header.clone();
        piece.total_len = (Ipv4Header::MIN_LEN + chunk.len()) as u16;
        piece.dont_fragment = false;
        piece.more_fragments = index < last;
        piece.fragment_offset = IpFragOffset::try_new((index * FRAGMENT_PAYLOAD / 8) as u16)
            .expect("probes fit in an IPv4 packet");
        piece.header_checksum = piece.calc_header_checksum();
        let mut rest: &mut [u8] = &mut fragment;
        piece
            .write(&mut rest)
            .and_then(|()| rest.write_all(chunk))
            .expect("a fragment fits in its buffer");
        each(&fragment[..Ipv4Header::MIN_LEN + chunk.len()])?;
    }
    Ok(())
}

/// The transport headers etherparse can write, behind one object-safe method.
pub trait Serialise {
    fn serialise(&self, out: &mut &mut [u8]) -> std::io::Result<()>;
}

/// No transport header: a raw IP probe's data follows its IP header.
impl Serialise for () {
    fn serialise(&self, _out: &mut &mut [u8]) -> std::io::Result<()> {
        Ok(())
    }
}

impl Serialise for etherparse::TcpHeader {
    fn serialise(&self, out: &mut &mut [u8]) -> std::io::Result<()> {
        self.write(out)
    }
}

impl Serialise for UdpHeader {
    fn serialise(&self, out: &mut &mut [u8]) -> std::io::Result<()> {
        self.write(out)
    }
}

/// An ICMP query message of the family of the IP header in front of it.
pub enum IcmpQuery {
    V4(Icmpv4Header),
    V6(Icmpv6Header),
}

impl Serialise for IcmpQuery {
    fn serialise(&self, out: &mut &mut [u8]) -> std::io::Result<()> {
        match self {
            IcmpQuery::V4(icmp) => icmp.write(out),
            IcmpQuery::V6(icmp) => icmp.write(out),
        }
    }
}

/// The TOS byte as IPv4's header holds it today: DSCP in the high six bits, ECN in the low two.
fn tos_parts(tos: u8) -> (IpDscp, IpEcn) {
    (
        IpDscp::try_new(tos >> 2).expect("six bits fit"),
        IpEcn::try_new(tos & 0b11).expect("two bits fit"),
    )
}
