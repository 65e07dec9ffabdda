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
    let entries = table(&route.interface, route.next_hop)?;
    Ok(entries
        .into_iter()
        .find(|entry| entry.ip == route.next_hop && entry.usable())
        .map(|entry| entry.mac))
}

/// One entry of the kernel's neighbour table that has a MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub ip: IpAddr,
    pub mac: [u8; 6],
    pub state: NeighbourState,
}

impl Entry {
    /// Whether the kernel would send to it without asking (again).
    fn usable(&self) -> bool {
        !matches!(
            self.state,
            NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
        )
    }

    /// Whether it stands for its host without asking it: static (PERMANENT), needing no
    /// resolution (NOARP), or confirmed lately (REACHABLE). A STALE, DELAY or PROBE entry may
    /// be a host that is gone, which a sweep must find down, not filtered.
    pub fn current(&self) -> bool {
        matches!(
            self.state,
            NeighbourState::Permanent | NeighbourState::Noarp | NeighbourState::Reachable
        )
    }
}

/// The kernel's neighbour entries on `interface` for addresses of `family`'s family, in one
/// dump.
pub fn table(interface: &Interface, family: IpAddr) -> Result<Vec<Entry>> {
    let mut request = NeighbourMessage::default();
    request.header.family = netlink::family_of(family);
    let replies = netlink::request(
        RouteNetlinkMessage::GetNeighbour(request),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
    .context("reading the neighbour table")?;
    Ok(replies
        .iter()
        .filter_map(|message| match message {
            RouteNetlinkMessage::NewNeighbour(entry) if entry.header.ifindex == interface.index => {
                entry_of(entry)
            }
            _ => None,
        })
        .collect())
}

fn entry_of(entry: &NeighbourMessage) -> Option<Entry> {
    let mut ip = None;
    let mut mac = None;
    for attribute in &entry.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => ip = Some((*v4).into()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => ip = Some((*v6).into()),
            NeighbourAttribute::LinkLayerAddress(address) => {
                mac = <[u8; 6]>::try_from(address.as_slice()).ok()
            }
            _ => {}
        }
    }
    Some(Entry {
        ip: ip?,
        mac: mac?,
        state: entry.header.state,
    })
}
