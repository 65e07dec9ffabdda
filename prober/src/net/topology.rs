//! What the kernel's local routing table says of this host's addresses: which are its own
//! (RTN_LOCAL, delivered over `lo`) and which are broadcast addresses of its networks
//! (RTN_BROADCAST), as the blocks the table keeps them in (`local 127.0.0.0/8`).
use std::net::IpAddr;

use anyhow::{Context as _, Result};
use netlink_packet_route::{
    route::{RouteAttribute, RouteMessage, RouteType},
    RouteNetlinkMessage,
};

use super::{netlink, route};

/// An address and its prefix length.
pub type Block = (IpAddr, u8);

/// The local table: RT_TABLE_LOCAL.
const LOCAL_TABLE: u8 = 255;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalTable {
    /// This host's own addresses.
    pub own: Vec<Block>,
    /// The broadcast addresses of its networks.
    pub broadcast: Vec<Block>,
}

impl LocalTable {
    /// The entries for the family of `family_of` (one dump of the local table).
    pub fn read(family_of: IpAddr) -> Result<LocalTable> {
        let mut request = RouteMessage::default();
        request.header.address_family = netlink::family_of(family_of);
        request.header.table = LOCAL_TABLE;
        let replies = netlink::filtered_dump(RouteNetlinkMessage::GetRoute(request))
            .context("reading the local routing table")?;
        let mut table = LocalTable::default();
        for reply in replies {
            let RouteNetlinkMessage::NewRoute(entry) = reply else {
                continue;
            };
            let blocks = match entry.header.kind {
                RouteType::Local => &mut table.own,
                RouteType::Broadcast => &mut table.broadcast,
                _ => continue,
            };
            let destination = entry
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    RouteAttribute::Destination(address) => route::ip_of(address),
                    _ => None,
                });
            if let Some(address) = destination {
                blocks.push((address, entry.header.destination_prefix_length));
            }
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn loopback_is_own_and_its_last_address_broadcast() {
        let v4 = LocalTable::read(Ipv4Addr::LOCALHOST.into()).unwrap();
        assert!(
            v4.own.contains(&(Ipv4Addr::new(127, 0, 0, 0).into(), 8)),
            "{v4:?}"
        );
        assert!(v4.own.contains(&(Ipv4Addr::LOCALHOST.into(), 32)), "{v4:?}");
        let last = (Ipv4Addr::new(127, 255, 255, 255).into(), 32);
        assert!(v4.broadcast.contains(&last), "{v4:?}");
        let v6 = LocalTable::read(Ipv6Addr::LOCALHOST.into()).unwrap();
        assert!(
            v6.own.contains(&(Ipv6Addr::LOCALHOST.into(), 128)),
            "{v6:?}"
        );
        assert!(v6.broadcast.is_empty(), "IPv6 has no broadcast: {v6:?}");
        assert!(
            v6.own.iter().all(|(address, _)| address.is_ipv6()),
            "{v6:?}"
        );
    }
}
