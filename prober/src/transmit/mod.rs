//! How probes leave: an AF_PACKET TX ring on the route's interface ([`tx_ring`]), or a raw IP
//! socket ([`raw_socket`]) where the kernel must address each packet itself. Both take IP
//! packets of either family.

pub mod raw_socket;
pub mod tx_ring;

use std::io;

use anyhow::{Context as _, Result};

use crate::net::{neighbour, Route};
use raw_socket::RawIpSocket;
use tx_ring::TxRing;

/// Probes per batch (one kick of the transmit path) when nothing limits the rate.
pub const FLOOD_BATCH: u64 = 256;

pub trait Transmit: Send {
    /// Queues one IP packet; it may leave only on the next `flush`.
    fn send(&mut self, ip_packet: &[u8]) -> io::Result<()>;
    /// Queues one Ethernet frame to `next_hop` carrying `payload` as `ether_type`: only a
    /// path that writes whole frames (the TX ring) can.
    fn send_frame(
        &mut self,
        _next_hop: [u8; 6],
        _ether_type: u16,
        _payload: &[u8],
    ) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transmit path leaves addressing to the kernel",
        ))
    }
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
/// resolves, and the raw socket otherwise: local targets (frames injected on `lo` to 127/8
/// are dropped as martians unless host sysctls are changed, which prober must not do),
/// tunnels, unresolvable next hops, and several hosts on a directly connected network, each
/// with its own MAC (`one_next_hop` false); there the kernel's own routing and neighbour
/// handling do the job, as for hping3. Either path sends through the route's interface only
/// (the raw socket is bound to it, SO_BINDTODEVICE: see [`Route::bind_interface`]), so that
/// probes never follow a changed route out of another one. `qdisc_bypass`: see
/// [`TxRing::open`].
pub fn open(route: &Route, one_next_hop: bool, qdisc_bypass: bool) -> Result<Box<dyn Transmit>> {
    if !route.local && one_next_hop {
        if let Some(source_mac) = route.interface.ethernet_address()? {
            if let Some(next_hop_mac) = neighbour::next_hop_mac(route)? {
                let ring = TxRing::open(&route.interface, source_mac, next_hop_mac, qdisc_bypass)
                    .with_context(|| {
                    format!("opening a TX ring on {}", route.interface.name)
                })?;
                return Ok(Box::new(ring));
            }
        }
    }
    let socket = RawIpSocket::open(route.source)?;
    route.bind_interface.bind_socket(&socket)?;
    Ok(Box::new(socket))
}

/// TX rings on `route`'s Ethernet interface for probes that carry their own next hop (a
/// sweep of a directly connected network, whose hosts prober resolves itself): nothing waits
/// on the kernel's neighbour table, which is left as it was.
pub fn open_on_link(route: &Route, qdisc_bypass: bool) -> Result<Box<dyn Transmit>> {
    let source_mac = route
        .interface
        .ethernet_address()?
        .with_context(|| format!("{} has no Ethernet address", route.interface.name))?;
    let ring = TxRing::open(&route.interface, source_mac, [0xff; 6], qdisc_bypass)
        .with_context(|| format!("opening a TX ring on {}", route.interface.name))?;
    Ok(Box::new(ring))
}

/// The IP version of a packet, from its first nibble.
fn ip_version(ip_packet: &[u8]) -> u8 {
    ip_packet.first().map_or(0, |byte| byte >> 4)
}
