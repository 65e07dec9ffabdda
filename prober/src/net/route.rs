//! The kernel's answer to `ip route get <target> [oif <interface>]`, for either family.
use std::net::IpAddr;

use anyhow::{anyhow, Context as _, Result};
use netlink_packet_core::NLM_F_REQUEST;
use netlink_packet_route::{
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
    AddressFamily, RouteNetlinkMessage,
};

use super::{netlink, Interface};

#[derive(Clone, Debug)]
pub struct Route {
    pub interface: Interface,
    /// The source address the kernel would pick (the target's family).
    pub source: IpAddr,
    /// The gateway, or the target itself when it is on a directly connected network.
    pub next_hop: IpAddr,
    /// The target is one of this host's own addresses (delivered over `lo`).
    pub local: bool,
}

pub fn lookup(target: IpAddr, via: Option<&Interface>) -> Result<Route> {
    let mut request = RouteMessage::default();
    let (family, prefix_length) = match target {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    request.header.address_family = family;
    request.header.destination_prefix_length = prefix_length;
    request
        .attributes
        .push(RouteAttribute::Destination(route_address(target)));
    if let Some(interface) = via {
        request
            .attributes
            .push(RouteAttribute::Oif(interface.index));
    }
    let replies = netlink::request(RouteNetlinkMessage::GetRoute(request), NLM_F_REQUEST)
        .with_context(|| format!("looking up the route to {target}"))?;
    let route = replies
        .into_iter()
        .find_map(|message| match message {
            RouteNetlinkMessage::NewRoute(route) => Some(route),
            _ => None,
        })
        .ok_or_else(|| anyhow!("no route to {target}"))?;

    let mut interface_index = None;
    let mut source = None;
    let mut gateway = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Oif(index) => interface_index = Some(*index),
            RouteAttribute::PrefSource(address) => source = ip_of(address),
            RouteAttribute::Gateway(address) => gateway = ip_of(address),
            _ => {}
        }
    }
    let interface_index =
        interface_index.ok_or_else(|| anyhow!("the route to {target} names no interface"))?;
    Ok(Route {
        interface: Interface::by_index(interface_index)?,
        source: source.ok_or_else(|| anyhow!("the route to {target} has no source address"))?,
        next_hop: gateway.unwrap_or(target),
        local: route.header.kind == RouteType::Local,
    })
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn routes_loopback_over_lo_in_either_family() {
        for target in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let route = lookup(target, None).unwrap();
            assert_eq!(route.interface.name, "lo");
            assert!(route.local, "{target}");
            assert_eq!(route.source, target);
            assert_eq!(route.next_hop, target);
        }
    }
}
