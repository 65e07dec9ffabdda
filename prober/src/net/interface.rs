//! Network interfaces: names, indexes, and what sysfs and rtnetlink say about them.
use std::{ffi::CString, os::fd::AsRawFd};

use anyhow::{anyhow, bail, Context as _, Result};
use netlink_packet_core::NLM_F_REQUEST;
use netlink_packet_route::{
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
    RouteNetlinkMessage,
};

use super::netlink;
use crate::echo;

/// A network interface by index and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
}

/// Link types from /sys/class/net/*/type (linux/if_arp.h).
const ARPHRD_ETHER: &str = "1";
const ARPHRD_LOOPBACK: &str = "772";

impl Interface {
    pub fn by_name(name: &str) -> Result<Interface> {
        let unknown = || anyhow!("unknown interface '{}'", echo::value(name));
        let c_name = CString::new(name).map_err(|_| unknown())?;
        // SAFETY: c_name is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            return Err(unknown());
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

    /// Whether the interface is up (IFF_UP) and has a carrier, as sysfs says now.
    pub fn link_state(&self) -> Result<(bool, bool)> {
        let flags = self.sysfs("flags")?;
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16)
            .with_context(|| format!("parsing the flags of {}", self.name))?;
        let up = flags & libc::IFF_UP as u32 != 0;
        // Reading `carrier` of an interface that is down is an error (EINVAL).
        Ok((up, up && self.sysfs("carrier")? == "1"))
    }

    /// A veth end: native XDP there can only send back out (XDP_TX) when the peer has
    /// NAPI on (an XDP program or GRO of its own), which prober cannot rely on.
    pub fn is_veth(&self) -> Result<bool> {
        let mut request = LinkMessage::default();
        request.header.index = self.index;
        let replies = netlink::request(RouteNetlinkMessage::GetLink(request), NLM_F_REQUEST)
            .with_context(|| format!("asking the kernel about {}", self.name))?;
        Ok(replies.iter().any(|message| match message {
            RouteNetlinkMessage::NewLink(link) => link.attributes.iter().any(|attribute| {
                matches!(attribute, LinkAttribute::LinkInfo(infos)
                    if infos.contains(&LinkInfo::Kind(InfoKind::Veth)))
            }),
            _ => false,
        }))
    }

    /// Packets the kernel has dropped on this interface so far, sending or receiving.
    pub fn dropped_packets(&self) -> Result<Drops> {
        let read = |counter: &str| -> Result<u64> {
            self.sysfs(&format!("statistics/{counter}"))?
                .parse()
                .with_context(|| format!("parsing {counter} of {}", self.name))
        };
        Ok(Drops {
            tx: read("tx_dropped")?,
            rx: read("rx_dropped")?,
        })
    }

    /// The interface's MAC address, or None when it is not an Ethernet interface.
    pub fn ethernet_address(&self) -> Result<Option<[u8; 6]>> {
        if self.sysfs("type")? != ARPHRD_ETHER {
            return Ok(None);
        }
        parse_mac(&self.sysfs("address")?).map(Some)
    }

    /// An error unless frames on this interface start with an Ethernet header, which the
    /// XDP program parses: Ethernet interfaces and `lo`, not tunnels (wireguard, tun, gre...).
    pub fn require_ethernet_frames(&self) -> Result<()> {
        let kind = self.sysfs("type")?;
        if kind != ARPHRD_ETHER && kind != ARPHRD_LOOPBACK {
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

/// An interface's drop counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    pub tx: u64,
    pub rx: u64,
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_vanished_interface_is_an_error_not_zero_drops() {
        let gone = Interface {
            index: u32::MAX,
            name: "prb-no-such-if".into(),
        };
        let error = gone.dropped_packets().unwrap_err();
        assert!(format!("{error:#}").contains("/sys/class/net/prb-no-such-if/statistics"));
    }
}
