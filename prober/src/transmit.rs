//! How probes leave: an AF_PACKET TX ring on the route's interface, or a raw IP socket for
//! targets the kernel delivers locally (frames injected on `lo` to 127/8 are dropped as
//! martians unless host sysctls are changed, which prober must not do).
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context as _, Result};

use crate::{
    route::{Interface, Route},
    tx_ring::TxRing,
};

pub trait Transmit: Send {
    /// Queues one IPv4 packet; it may leave only on the next `flush`.
    fn send(&mut self, ip_packet: &[u8]) -> io::Result<()>;
    /// Hands every queued packet to the kernel.
    fn flush(&mut self) -> io::Result<()>;
    /// For `-V`: which path this is.
    fn describe(&self) -> &'static str;
    /// How often a probe had to wait for the kernel to free room (a full TX ring).
    fn full_waits(&self) -> u64 {
        0
    }
    /// Whether probes bypass TC egress (and so leave no departure time there).
    fn skips_tc(&self) -> bool {
        false
    }
}

/// Picks the TX ring when the route leaves through an Ethernet interface whose next hop
/// resolves, and the raw socket otherwise (local targets, tunnels, unresolvable next hops:
/// there the kernel's own routing and neighbour handling do the job, as for hping3).
/// `interface` is the one the user named with -I, if any: the raw socket is held to it.
/// `one_next_hop`: every probe goes to the route's next hop (false when probing several
/// hosts on a directly connected network, each with its own MAC). `qdisc_bypass`: see
/// [`TxRing::open`].
pub fn open(
    route: &Route,
    interface: Option<&Interface>,
    one_next_hop: bool,
    qdisc_bypass: bool,
) -> Result<Box<dyn Transmit>> {
    if !route.local && one_next_hop {
        if let Some(source_mac) = route.interface.ethernet_address()? {
            if let Some(next_hop_mac) = crate::route::next_hop_mac(route)? {
                let ring = TxRing::open(&route.interface, source_mac, next_hop_mac, qdisc_bypass)
                    .with_context(|| {
                    format!("opening a TX ring on {}", route.interface.name)
                })?;
                return Ok(Box::new(ring));
            }
        }
    }
    let socket = RawIpSocket::open()?;
    if let Some(interface) = interface {
        interface.bind_socket(&socket.fd)?;
    }
    Ok(Box::new(socket))
}

/// A raw IPv4 socket with our own IP header (IPPROTO_RAW implies IP_HDRINCL).
pub struct RawIpSocket {
    fd: OwnedFd,
}

impl RawIpSocket {
    pub fn open() -> Result<RawIpSocket> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("opening a raw IP socket");
        }
        // SAFETY: fd is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(RawIpSocket { fd })
    }
}

impl Transmit for RawIpSocket {
    fn send(&mut self, ip_packet: &[u8]) -> io::Result<()> {
        // The kernel routes by the address passed here: the packet's own destination.
        let destination: [u8; 4] = ip_packet[16..20].try_into().expect("an IPv4 header");
        let target = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(destination),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: the buffer and address outlive the call; lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                ip_packet.as_ptr().cast(),
                ip_packet.len(),
                0,
                (&target as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn describe(&self) -> &'static str {
        "raw IP socket"
    }
}
