//! Asking a directly connected host for its MAC, as the kernel's neighbour handling would:
//! an ARP request (IPv4), broadcast; a neighbour solicitation (IPv6) to the target's
//! solicited-node group, with our link-layer address (RFC 4861 7.2.2), so the host can
//! answer without asking back. The answers are judged in the XDP program (`wire`).
use std::net::{IpAddr, Ipv6Addr};

use etherparse::{ArpEthIpv4Packet, ArpOperation, Icmpv6Header, Icmpv6Type, IpNumber, Ipv6Header};

use crate::transmit::tx_ring::{ETH_P_ARP, ETH_P_IPV6};

/// The longest ask: an IPv6 header, a solicitation's 24 bytes and an 8-byte option.
pub const MAX_ASK_LEN: usize = 40 + 24 + 8;
const SOURCE_LINK_LAYER_OPTION: u8 = 1;
const BROADCAST: [u8; 6] = [0xff; 6];

/// One ask, ready for a TX ring: whom the frame goes to, what it carries, and its bytes.
pub struct Ask {
    pub to_mac: [u8; 6],
    pub ether_type: u16,
    pub len: usize,
}

/// Writes the ask for `target`'s MAC, from `source` at `source_mac`, into `buf`.
pub fn ask(
    source: IpAddr,
    source_mac: [u8; 6],
    target: IpAddr,
    buf: &mut [u8; MAX_ASK_LEN],
) -> Ask {
    match (source, target) {
        (IpAddr::V4(source), IpAddr::V4(target)) => {
            let request = ArpEthIpv4Packet {
                operation: ArpOperation::REQUEST,
                sender_mac: source_mac,
                sender_ipv4: source.octets(),
                target_mac: [0; 6],
                target_ipv4: target.octets(),
            }
            .to_bytes();
            buf[..request.len()].copy_from_slice(&request);
            Ask {
                to_mac: BROADCAST,
                ether_type: ETH_P_ARP,
                len: request.len(),
            }
        }
        (source, target) => {
            let (source, target) = (v6(source), v6(target));
            let group = solicited_node(target);
            let mut body = [0u8; 24];
            body[..16].copy_from_slice(&target.octets());
            body[16..18].copy_from_slice(&[SOURCE_LINK_LAYER_OPTION, 1]);
            body[18..].copy_from_slice(&source_mac);
            let icmp = Icmpv6Header::with_checksum(
                Icmpv6Type::NeighborSolicitation,
                source.octets(),
                group.octets(),
                &body,
            )
            .expect("a solicitation fits");
            let ip = Ipv6Header {
                payload_length: (icmp.header_len() + body.len()) as u16,
                next_header: IpNumber::IPV6_ICMP,
                // RFC 4861 7.1.1: the host drops a solicitation that crossed a router.
                hop_limit: 255,
                source: source.octets(),
                destination: group.octets(),
                ..Ipv6Header::default()
            };
            let mut rest: &mut [u8] = &mut buf[..];
            ip.write(&mut rest)
                .and_then(|()| icmp.write(&mut rest))
                .expect("a solicitation fits in MAX_ASK_LEN");
            let written = MAX_ASK_LEN - rest.len();
            buf[written..written + body.len()].copy_from_slice(&body);
            let [.., a, b, c, d] = group.octets();
            Ask {
                to_mac: [0x33, 0x33, a, b, c, d],
                ether_type: ETH_P_IPV6,
                len: written + body.len(),
            }
        }
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
    }
}

/// ff02::1:ffXX:XXXX, the group of every address ending in `target`'s last 24 bits.
fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let [.., x, y, z] = target.octets();
    Ipv6Addr::from([
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(x),
        u16::from_be_bytes([y, z]),
    ])
}

#[cfg(test)]
mod tests {
    use prober_common::{
        wire::{self, IpVersion},
        IpAddress,
    };

    use super::*;

    const OURS: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn an_arp_request_asks_everyone_for_the_target() {
        let mut buf = [0u8; MAX_ASK_LEN];
        let ask = ask(
            "198.18.4.1".parse().unwrap(),
            OURS,
            "198.18.4.2".parse().unwrap(),
            &mut buf,
        );
        assert_eq!(
            (ask.to_mac, ask.ether_type, ask.len),
            (BROADCAST, 0x0806, 28)
        );
        let frame = [&BROADCAST[..], &OURS, &[8, 6], &buf[..ask.len]].concat();
        let mut target = IpAddress::default();
        let ours = IpAddress::from_ipv4([198, 18, 4, 1]);
        assert!(wire::arp_request(&frame[..], &ours, OURS, &mut target));
        assert_eq!(target, IpAddress::from_ipv4([198, 18, 4, 2]));
    }

    #[test]
    fn a_solicitation_goes_to_the_solicited_node_group_with_our_mac() {
        let mut buf = [0u8; MAX_ASK_LEN];
        let target: Ipv6Addr = "2001:db8::12:3456".parse().unwrap();
        let ask = ask(
            "2001:db8::1".parse().unwrap(),
            OURS,
            target.into(),
            &mut buf,
        );
        assert_eq!(ask.to_mac, [0x33, 0x33, 0xff, 0x12, 0x34, 0x56]);
        assert_eq!((ask.ether_type, ask.len), (0x86dd, MAX_ASK_LEN));
        let frame = [&ask.to_mac[..], &OURS, &[0x86, 0xdd], &buf[..ask.len]].concat();
        let ip = wire::parse(&frame[..]).expect("an IPv6 packet");
        assert_eq!((ip.version, ip.ttl, ip.protocol), (IpVersion::V6, 255, 58));
        assert_eq!(
            Ipv6Addr::from(ip.dst.0),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
        );
        let mut asked = IpAddress::default();
        assert!(wire::solicitation(&frame[..], &ip, &mut asked));
        assert_eq!(Ipv6Addr::from(asked.0), target);
        // The checksum is right, and the option carries our MAC.
        assert!(wire::accepted(&frame[..], &ip, ask.to_mac, wire::Checksum::Message).is_ok());
        assert_eq!(&frame[frame.len() - 8..], &[1, 1, 2, 0, 0, 0, 0, 1]);
    }
}
