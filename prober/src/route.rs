//! Where a probe goes: the target's address, the route the kernel would use for it, and the
//! next hop's MAC address, all asked of the kernel over rtnetlink.
use std::{
    ffi::CString,
    net::{IpAddr, Ipv4Addr, ToSocketAddrs, UdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::{
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
    AddressFamily, RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Resolves a host name or dotted quad to an IPv4 address.
pub fn resolve(host: &str) -> Result<Ipv4Addr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(ip) => Ok(ip),
            IpAddr::V6(_) => bail!("IPv6 targets are not supported yet: '{host}'"),
        };
    }
    let addresses: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|_| anyhow!("unknown host '{host}'"))?
        .map(|address| address.ip())
        .collect();
    addresses
        .iter()
        .find_map(|ip| match ip {
            IpAddr::V4(ip) => Some(*ip),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| match addresses.is_empty() {
            true => anyhow!("unknown host '{host}'"),
            false => {
                anyhow!("'{host}' has only IPv6 addresses; IPv6 targets are not supported yet")
            }
        })
}

/// A network interface by index and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
}

impl Interface {
    pub fn by_name(name: &str) -> Result<Interface> {
        let c_name = CString::new(name).map_err(|_| anyhow!("unknown interface '{name}'"))?;
        // SAFETY: c_name is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            bail!("unknown interface '{name}'");
        }
        Ok(Interface {
            index,
            name: name.to_string(),
        })
    }

    pub fn by_index(index: u32) -> Result<Interface> {
        let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: the buffer has the IF_NAMESIZE bytes if_indextoname may write.
        let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
        if found.is_null() {
            bail!("no interface with index {index}");
        }
        // SAFETY: if_indextoname wrote a NUL-terminated name.
        let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
        Ok(Interface {
            index,
            name: name.to_string_lossy().into_owned(),
        })
    }

    fn sysfs(&self, attribute: &str) -> Result<String> {
        let path = format!("/sys/class/net/{}/{attribute}", self.name);
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .to_string())
    }

    pub fn mtu(&self) -> Result<u32> {
        self.sysfs("mtu")?
            .parse()
            .context("parsing the interface MTU")
    }

    /// A veth end: native XDP there can only send back out (XDP_TX) when the peer has
    /// NAPI on (an XDP program or GRO of its own), which prober cannot rely on.
    pub fn is_veth(&self) -> Result<bool> {
        let mut request = LinkMessage::default();
        request.header.index = self.index;
        let replies = netlink_request(RouteNetlinkMessage::GetLink(request), NLM_F_REQUEST)
            .with_context(|| format!("asking the kernel about {}", self.name))?;
        Ok(replies.iter().any(|message| match message {
            RouteNetlinkMessage::NewLink(link) => link.attributes.iter().any(|attribute| {
                matches!(attribute, LinkAttribute::LinkInfo(infos)
                    if infos.contains(&LinkInfo::Kind(InfoKind::Veth)))
            }),
            _ => false,
        }))
    }

    /// Packets the kernel dropped on this interface so far: (transmit, receive).
    pub fn dropped_packets(&self) -> Result<(u64, u64)> {
        let read = |counter: &str| -> Result<u64> {
            self.sysfs(&format!("statistics/{counter}"))?
                .parse()
                .with_context(|| format!("parsing {counter} of {}", self.name))
        };
        Ok((read("tx_dropped")?, read("rx_dropped")?))
    }

    /// The interface's MAC address, or None when it is not an Ethernet interface.
    pub fn ethernet_address(&self) -> Result<Option<[u8; 6]>> {
        if self.sysfs("type")? != ARPHRD_ETHER {
            return Ok(None);
        }
        parse_mac(&self.sysfs("address")?).map(Some)
    }

    /// Whether frames on this interface start with an Ethernet header, as the XDP program
    /// expects: Ethernet interfaces and `lo`, not tunnels (wireguard, tun, gre, ...).
    pub fn carries_ethernet_frames(&self) -> Result<bool> {
        let kind = self.sysfs("type")?;
        Ok(kind == ARPHRD_ETHER || kind == ARPHRD_LOOPBACK)
    }

    /// An error unless frames on this interface start with an Ethernet header, which the
    /// XDP program parses.
    pub fn require_ethernet_frames(&self) -> Result<()> {
        if !self.carries_ethernet_frames()? {
            bail!(
                "{} is not an Ethernet interface: prober cannot match replies on it yet",
                self.name
            );
        }
        Ok(())
    }

    /// Makes `socket` send only through this interface (SO_BINDTODEVICE).
    pub fn bind_socket(&self, socket: &impl AsRawFd) -> Result<()> {
        // SAFETY: the name's bytes and length are passed together; the fd is open.
        let result = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                self.name.as_ptr().cast(),
                self.name.len() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("binding a socket to {}", self.name));
        }
        Ok(())
    }
}

/// Link types from /sys/class/net/*/type (linux/if_arp.h).
const ARPHRD_ETHER: &str = "1";
const ARPHRD_LOOPBACK: &str = "772";

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts
            .next()
            .ok_or_else(|| anyhow!("bad MAC address '{text}'"))?;
        *byte =
            u8::from_str_radix(part, 16).with_context(|| format!("bad MAC address '{text}'"))?;
    }
    Ok(mac)
}

/// The kernel's answer to `ip route get <target> [oif <interface>]`.
#[derive(Clone, Debug)]
pub struct Route {
    pub interface: Interface,
    /// The source address the kernel would pick.
    pub source: Ipv4Addr,
    /// The gateway, or the target itself when it is on a directly connected network.
    pub next_hop: Ipv4Addr,
    /// The target is one of this host's own addresses (delivered over `lo`).
    pub local: bool,
}

pub fn lookup(target: Ipv4Addr, via: Option<&Interface>) -> Result<Route> {
    let mut request = RouteMessage::default();
    request.header.address_family = AddressFamily::Inet;
    request.header.destination_prefix_length = 32;
    request
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(target)));
    if let Some(interface) = via {
        request
            .attributes
            .push(RouteAttribute::Oif(interface.index));
    }
    let replies = netlink_request(RouteNetlinkMessage::GetRoute(request), NLM_F_REQUEST)
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
            RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => source = Some(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
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

/// The next hop's MAC address from the neighbour table, asking the kernel to resolve it
/// when it has no entry yet. None when it cannot be resolved within a second.
pub fn next_hop_mac(route: &Route) -> Result<Option<[u8; 6]>> {
    if let Some(mac) = neighbour_mac(route)? {
        return Ok(Some(mac));
    }
    // A datagram to the discard port makes the kernel resolve the next hop, as hping3's
    // first packet would; the neighbour entry is what we wait for.
    let socket = UdpSocket::bind((route.source, 0)).context("binding a UDP socket")?;
    route.interface.bind_socket(&socket)?;
    let _ = socket.send_to(&[], (route.next_hop, 9));
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        if let Some(mac) = neighbour_mac(route)? {
            return Ok(Some(mac));
        }
    }
    Ok(None)
}

fn neighbour_mac(route: &Route) -> Result<Option<[u8; 6]>> {
    let mut request = NeighbourMessage::default();
    request.header.family = AddressFamily::Inet;
    let replies = netlink_request(
        RouteNetlinkMessage::GetNeighbour(request),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
    .context("reading the neighbour table")?;
    for message in replies {
        let RouteNetlinkMessage::NewNeighbour(entry) = message else {
            continue;
        };
        let usable = !matches!(
            entry.header.state,
            NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
        );
        if entry.header.ifindex != route.interface.index || !usable {
            continue;
        }
        let mut is_next_hop = false;
        let mut mac = None;
        for attribute in &entry.attributes {
            match attribute {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                    is_next_hop = *ip == route.next_hop
                }
                NeighbourAttribute::LinkLayerAddress(address) => {
                    mac = <[u8; 6]>::try_from(address.as_slice()).ok()
                }
                _ => {}
            }
        }
        if is_next_hop && mac.is_some() {
            return Ok(mac);
        }
    }
    Ok(None)
}

/// Sends one rtnetlink request and collects the replies until the kernel is done.
fn netlink_request(message: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    socket.bind_auto().context("binding the netlink socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("connecting the netlink socket")?;

    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut request = NetlinkMessage::new(header, NetlinkPayload::from(message));
    request.finalize();
    let mut buffer = vec![0; request.header.length as usize];
    request.serialize(&mut buffer);
    socket
        .send(&buffer, 0)
        .context("sending a netlink request")?;

    let is_dump = flags & NLM_F_DUMP != 0;
    let mut replies = Vec::new();
    let mut receive = vec![0u8; 64 * 1024];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .context("reading netlink")?;
        let mut offset = 0;
        while offset < size {
            let reply: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&receive[offset..size])
                    .context("decoding a netlink reply")?;
            let length = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::Error(error) => {
                    if let Some(code) = error.code {
                        return Err(std::io::Error::from_raw_os_error(-code.get()).into());
                    }
                }
                NetlinkPayload::InnerMessage(inner) => {
                    replies.push(inner);
                    if !is_dump {
                        return Ok(replies);
                    }
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_ipv6_literals_with_a_clear_message() {
        let error = resolve("::1").unwrap_err().to_string();
        assert!(error.contains("IPv6"), "{error}");
    }

    #[test]
    fn parses_dotted_quads_without_lookups() {
        assert_eq!(resolve("198.18.0.2").unwrap(), Ipv4Addr::new(198, 18, 0, 2));
    }

    #[test]
    fn parses_mac_addresses() {
        assert_eq!(
            parse_mac("02:00:0a:ff:00:01").unwrap(),
            [2, 0, 10, 255, 0, 1]
        );
        assert!(parse_mac("02:00").is_err());
        assert!(parse_mac("zz:00:0a:ff:00:01").is_err());
    }

    #[test]
    fn routes_loopback_over_lo() {
        let route = lookup(Ipv4Addr::LOCALHOST, None).unwrap();
        assert_eq!(route.interface.name, "lo");
        assert!(route.local);
        assert_eq!(route.source, Ipv4Addr::LOCALHOST);
    }
}
