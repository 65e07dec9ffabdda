//! One rtnetlink request at a time, answered in full.
use std::net::IpAddr;

use anyhow::{Context as _, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The family rtnetlink files `ip` under.
pub fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Sends `message` and collects the replies until the kernel is done.
pub fn request(message: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>> {
    exchange(message, flags, false)
}

/// A dump of what matches the request's header (NETLINK_GET_STRICT_CHK): one routing table's
/// routes, say, not those of every table.
pub fn filtered_dump(message: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
    exchange(message, NLM_F_REQUEST | NLM_F_DUMP, true)
}

fn exchange(
    message: RouteNetlinkMessage,
    flags: u16,
    strict: bool,
) -> Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    socket.bind_auto().context("binding the netlink socket")?;
    if strict {
        socket
            .set_netlink_get_strict_chk(true)
            .context("asking netlink for strict checks")?;
    }
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
