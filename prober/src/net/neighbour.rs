//! The next hop's MAC address, from the kernel's neighbour table (ARP for IPv4, NDP for IPv6).
use std::{
    net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::{
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    RouteNetlinkMessage,
};

use super::{netlink, Interface, Route};

/// The next hop's MAC address, asking the kernel to resolve it when it has no entry yet.
/// None when it cannot be resolved within a second.
pub fn next_hop_mac(route: &Route) -> Result<Option<[u8; 6]>> {
    if let Some(mac) = neighbour_mac(route)? {
        return Ok(Some(mac));
    }
    // A datagram to the discard port makes the kernel resolve the next hop (by ARP, or NDP's
    // neighbour solicitation), as hping3's first packet would; the neighbour entry is what we
    // wait for.
    let interface = &route.interface;
    let socket =
        UdpSocket::bind(on_link(route.source, 0, interface)).context("binding a UDP socket")?;
    interface.bind_socket(&socket)?;
    let _ = socket.send_to(&[], on_link(route.next_hop, 9, interface));
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        if let Some(mac) = neighbour_mac(route)? {
            return Ok(Some(mac));
        }
    }
    Ok(None)
}

/// `ip:port` on `interface`: an IPv6 link-local address (a gateway's usually is) means nothing
/// without its interface as scope; the kernel ignores the scope of other addresses.
fn on_link(ip: IpAddr, port: u16, interface: &Interface) -> SocketAddr {
    match ip {
        IpAddr::V4(v4) => SocketAddr::from((v4, port)),
        IpAddr::V6(v6) => SocketAddrV6::new(v6, port, 0, interface.index).into(),
    }
}

fn neighbour_mac(route: &Route) -> Result<Option<[u8; 6]>> {
    let mut request = NeighbourMessage::default();
    request.header.family = netlink::family_of(route.next_hop);
    let replies = netlink::request(
        RouteNetlinkMessage::GetNeighbour(request),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
    .context("reading the neighbour table")?;
    Ok(replies.iter().find_map(|message| match message {
        RouteNetlinkMessage::NewNeighbour(entry) => usable_mac(entry, route),
        _ => None,
    }))
}

/// The MAC of a neighbour entry that is the route's next hop on its interface and usable.
fn usable_mac(entry: &NeighbourMessage, route: &Route) -> Option<[u8; 6]> {
    let usable = !matches!(
        entry.header.state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    );
    if entry.header.ifindex != route.interface.index || !usable {
        return None;
    }
    let mut is_next_hop = false;
    let mut mac = None;
    for attribute in &entry.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                is_next_hop = route.next_hop == IpAddr::V4(*ip)
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                is_next_hop = route.next_hop == IpAddr::V6(*ip)
            }
            NeighbourAttribute::LinkLayerAddress(address) => {
                mac = <[u8; 6]>::try_from(address.as_slice()).ok()
            }
            _ => {}
        }
    }
    mac.filter(|_| is_next_hop)
}
