//! The kernel's answer to `ip route get <target> [oif <interface>]`, for either family.
use std::net::IpAddr;

use anyhow::{anyhow, bail, Context as _, Result};
use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteType},
    RouteNetlinkMessage,
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
    /// The interface sockets sending to the target are bound to (SO_BINDTODEVICE): the
    /// route's, except for one of this host's own IPv6 addresses, which the kernel routes
    /// (over `lo`) only for the interface that holds the address, not for `lo`.
    pub bind_interface: Interface,
}

pub fn lookup(target: IpAddr, via: Option<&Interface>) -> Result<Route> {
    if let Some(interface) = via {
        require_route_through(target, interface)?;
    }
    let route = kernel_route(target, via, RouteFlags::empty())
        .with_context(|| format!("looking up the route to {target}"))?
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
    let interface = Interface::by_index(interface_index)?;
    let local = route.header.kind == RouteType::Local;
    let bind_interface = match (local, target) {
        (true, IpAddr::V6(_)) => holder_of(target)?.unwrap_or_else(|| interface.clone()),
        _ => interface.clone(),
    };
    Ok(Route {
        interface,
        source: source.ok_or_else(|| anyhow!("the route to {target} has no source address"))?,
        next_hop: gateway.unwrap_or(target),
        local,
        bind_interface,
    })
}

/// With an interface named, IPv4 takes a destination that no route reaches through it for
/// one on that link ("Apparently, routing tables are wrong", net/ipv4/route.c) and would send
/// its probes there unanswered; so one must: RTM_F_FIB_MATCH fails where no FIB entry matches.
/// The target's own route through the interface (an address of this host over `lo`) will do.
fn require_route_through(target: IpAddr, interface: &Interface) -> Result<()> {
    if let Ok(Some(_)) = kernel_route(target, Some(interface), RouteFlags::FibMatch) {
        return Ok(());
    }
    let usual = kernel_route(target, None, RouteFlags::empty())
        .ok()
        .flatten()
        .and_then(|route| route_interface(&route))
        .and_then(|index| Interface::by_index(index).ok());
    match usual {
        Some(usual) if usual.index == interface.index => Ok(()),
        Some(usual) => bail!(
            "-I {} has no route to {target} (its route is through {})",
            interface.name,
            usual.name
        ),
        None => bail!("-I {} has no route to {target}", interface.name),
    }
}

/// `ip route get <target> [oif <via>]` with the request's `flags`.
fn kernel_route(
    target: IpAddr,
    via: Option<&Interface>,
    flags: RouteFlags,
) -> Result<Option<RouteMessage>> {
    let mut request = RouteMessage::default();
    request.header.address_family = netlink::family_of(target);
    request.header.destination_prefix_length = match target {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    request.header.flags = flags;
    request
        .attributes
        .push(RouteAttribute::Destination(route_address(target)));
    if let Some(interface) = via {
        request
            .attributes
            .push(RouteAttribute::Oif(interface.index));
    }
    let replies = netlink::request(RouteNetlinkMessage::GetRoute(request), NLM_F_REQUEST)?;
    Ok(replies.into_iter().find_map(|message| match message {
        RouteNetlinkMessage::NewRoute(route) => Some(route),
        _ => None,
    }))
}

fn route_interface(route: &RouteMessage) -> Option<u32> {
    route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        })
}

/// The interface that holds `address`, one of this host's own.
fn holder_of(address: IpAddr) -> Result<Option<Interface>> {
    let mut request = AddressMessage::default();
    request.header.family = netlink::family_of(address);
    let replies = netlink::request(
        RouteNetlinkMessage::GetAddress(request),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
    .context("reading the host's addresses")?;
    let index = replies.iter().find_map(|message| match message {
        RouteNetlinkMessage::NewAddress(entry) => entry
            .attributes
            .contains(&AddressAttribute::Address(address))
            .then_some(entry.header.index),
        _ => None,
    });
    index.map(Interface::by_index).transpose()
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

pub(super) fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
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
            assert_eq!(route.bind_interface.name, "lo");
            assert!(route.local, "{target}");
            assert_eq!(route.source, target);
            assert_eq!(route.next_hop, target);
        }
    }

    #[test]
    fn own_addresses_are_held_by_an_interface() {
        let lo = holder_of(IpAddr::V6(Ipv6Addr::LOCALHOST)).unwrap();
        assert_eq!(lo.map(|interface| interface.name).as_deref(), Some("lo"));
        let nobodys = "2001:db8:ffff:ffff::dead".parse().unwrap();
        assert_eq!(holder_of(nobodys).unwrap(), None);
    }
}
