//! Ethernet and IP parsing, once per packet, into a shape that is the same for either family:
//! the kinds see addresses (the family is their form), protocol and where the transport
//! header starts, never a version. IPv4 today; IPv6's parser is one more arm of `parse`.
use network_types::ip::Ipv4Hdr;
use prober_common::IpAddress;

use crate::packet::Packet;

pub const ETH_HEADER_LEN: usize = 14;
/// Where the EtherType sits in the Ethernet header.
const ETHER_TYPE_OFFSET: usize = 12;
const ETH_P_IP: u16 = 0x0800;
const IP_MORE_FRAGMENTS_AND_OFFSET: u16 = 0x3fff;

/// An IP packet's header fields, whatever its family.
pub struct IpPacket {
    pub src: IpAddress,
    pub dst: IpAddress,
    /// The transport protocol (IPv4's protocol field).
    pub protocol: u8,
    /// Where the transport header starts, from the start of the frame.
    pub l4_offset: usize,
    /// The whole IP packet's length as its header states it.
    pub len: u16,
    /// IPv4's TTL.
    pub ttl: u8,
    /// IPv4's TOS byte.
    pub tos: u8,
    /// IPv4's identification, flags and fragment offset.
    pub id: u16,
    pub frag: u16,
}

impl IpPacket {
    /// The IPv4 header carries no options (a rewritten packet can reuse it as it is).
    #[inline(always)]
    pub fn plain_header(&self) -> bool {
        self.l4_offset == ETH_HEADER_LEN + 20
    }
}

/// The IP header of an Ethernet frame; None for other frames, malformed headers and fragments
/// (a fragment's payload is no transport header, and no reply or probe is fragmented).
#[inline(always)]
pub fn parse(packet: &impl Packet) -> Option<IpPacket> {
    let ether_type: [u8; 2] = packet.read(ETHER_TYPE_OFFSET)?;
    match u16::from_be_bytes(ether_type) {
        ETH_P_IP => ipv4(packet),
        _ => None,
    }
}

#[inline(always)]
fn ipv4(packet: &impl Packet) -> Option<IpPacket> {
    let ip: Ipv4Hdr = packet.read(ETH_HEADER_LEN)?;
    let header_words = usize::from(ip.vihl & 0x0f);
    if header_words < 5 {
        return None; // shorter than the fixed IPv4 header
    }
    let frag = u16::from_be_bytes(ip.frags);
    if frag & IP_MORE_FRAGMENTS_AND_OFFSET != 0 {
        return None;
    }
    Some(IpPacket {
        src: IpAddress::from_ipv4(ip.src_addr),
        dst: IpAddress::from_ipv4(ip.dst_addr),
        protocol: ip.proto,
        l4_offset: ETH_HEADER_LEN + header_words * 4,
        len: u16::from_be_bytes(ip.tot_len),
        ttl: ip.ttl,
        tos: ip.tos,
        id: u16::from_be_bytes(ip.id),
        frag,
    })
}
