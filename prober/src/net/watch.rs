//! Watching the run's interface and routes while probes go out. Every send path is bound to
//! the route's interface, so a probe can never follow a changed route out of another one; but
//! a run whose interface went down, lost its carrier or was removed, or whose targets are now
//! routed elsewhere, would report silence it caused itself (and the TX ring keeps sending into
//! a dead link without an error). So prober listens to rtnetlink for the run's duration and
//! ends the run, with its statistic, when any of that happens.
use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, RawFd},
};

use anyhow::{anyhow, bail, Context as _, Result};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{link::LinkFlags, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::{route, Interface, Route};

/// Destinations whose routes are checked again after a route change: the first address of
/// each of the first few target ranges. Each check is a netlink round trip on the reply
/// loop's thread, so a sweep of thousands of ranges is sampled, not walked.
const MAX_CHECKED: usize = 16;

/// A netlink socket subscribed to link and route changes, and what they must not change.
pub struct Watch {
    socket: Socket,
    interface: Interface,
    source: IpAddr,
    /// Where the run's probes go (see [`MAX_CHECKED`]), and the interface the user named.
    destinations: Vec<IpAddr>,
    via: Option<Interface>,
    buffer: Vec<u8>,
}

impl Watch {
    /// Subscribes before the probes start, so that no change during the run goes unseen.
    pub fn open(
        route: &Route,
        destinations: impl IntoIterator<Item = IpAddr>,
        via: Option<&Interface>,
    ) -> Result<Watch> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
        socket
            .bind(&SocketAddr::new(0, 0))
            .context("binding the netlink socket")?;
        for group in [
            libc::RTNLGRP_LINK,
            libc::RTNLGRP_IPV4_ROUTE,
            libc::RTNLGRP_IPV6_ROUTE,
        ] {
            socket
                .add_membership(group)
                .context("subscribing to link and route changes")?;
        }
        socket
            .set_non_blocking(true)
            .context("making the netlink socket non-blocking")?;
        Ok(Watch {
            socket,
            interface: route.interface.clone(),
            source: route.source,
            destinations: destinations.into_iter().take(MAX_CHECKED).collect(),
            via: via.cloned(),
            buffer: vec![0; 64 * 1024],
        })
    }

    /// Reads every change the kernel has announced; an error says why the run must end.
    pub fn check(&mut self) -> Result<()> {
        let mut routes_changed = false;
        loop {
            let size = match self.socket.recv(&mut &mut self.buffer[..], 0) {
                Ok(size) => size,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                // The kernel dropped announcements (too many at once): look again at all.
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.check_link_now()?;
                    routes_changed = true;
                    continue;
                }
                Err(error) => return Err(error).context("reading link and route changes"),
            };
            routes_changed |= self.read_changes(size)?;
        }
        if routes_changed {
            self.check_routes()?;
        }
        Ok(())
    }

    /// Goes through the messages in the first `size` bytes of the buffer; true when a route
    /// changed.
    fn read_changes(&self, size: usize) -> Result<bool> {
        let mut routes_changed = false;
        let mut offset = 0;
        while offset < size {
            let message: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&self.buffer[offset..size])
                    .context("decoding a netlink announcement")?;
            let length = message.header.length as usize;
            if let NetlinkPayload::InnerMessage(inner) = message.payload {
                match inner {
                    RouteNetlinkMessage::DelLink(link)
                        if link.header.index == self.interface.index =>
                    {
                        bail!("{} was removed", self.interface.name)
                    }
                    RouteNetlinkMessage::NewLink(link)
                        if link.header.index == self.interface.index =>
                    {
                        self.link_state(link.header.flags)?
                    }
                    RouteNetlinkMessage::NewRoute(_) | RouteNetlinkMessage::DelRoute(_) => {
                        routes_changed = true
                    }
                    _ => {}
                }
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
        Ok(routes_changed)
    }

    fn link_state(&self, flags: LinkFlags) -> Result<()> {
        self.require(
            flags.contains(LinkFlags::Up),
            flags.contains(LinkFlags::Running),
        )
    }

    /// The link's state as sysfs has it now (after announcements were lost).
    fn check_link_now(&self) -> Result<()> {
        let (up, carrier) = self
            .interface
            .link_state()
            .map_err(|_| anyhow!("{} was removed", self.interface.name))?;
        self.require(up, carrier)
    }

    fn require(&self, up: bool, carrier: bool) -> Result<()> {
        let name = &self.interface.name;
        if !up {
            bail!("{name} went down");
        }
        if !carrier {
            bail!("{name} lost its carrier (its link is down)");
        }
        Ok(())
    }

    /// Every checked destination must still be routed through the interface, from the same
    /// source address.
    fn check_routes(&self) -> Result<()> {
        for &destination in &self.destinations {
            let now = route::lookup(destination, self.via.as_ref())
                .with_context(|| format!("the route to {destination} changed"))?;
            if now.interface.index != self.interface.index || now.source != self.source {
                bail!(
                    "the route to {destination} changed: it now leaves through {} from {}, not {} from {}",
                    now.interface.name,
                    now.source,
                    self.interface.name,
                    self.source
                );
            }
        }
        Ok(())
    }
}

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
