//! A hostile neighbour on the namespace's veth end: it reads the ARP requests and neighbour
//! solicitations the host sends and answers them falsely, each answer claiming an address for
//! [`OTHER_MAC`], a MAC nobody on the testbed has, so that any probe a forgery redirected
//! would be seen arriving for it. The answers are well formed (ARP: sender MAC = the frame's
//! source; IPv6: a solicited advertisement with hop limit 255, a right checksum and a target
//! link-layer address) but for one thing each ([`Lie`]).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::forger::{open_socket, read_frame, Worker, OTHER_MAC};
use crate::packets::{fill_checksum, IpHeader, IPPROTO_ICMPV6};
use crate::TestHost;

/// How a forged answer lies, and which of our asks it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// On our ask for `asked`, an answer for `claimed` (asked later, or never): unsolicited.
    Unsolicited { asked: IpAddr, claimed: IpAddr },
    /// On our ask for `asked`, an answer for it to another than us: ARP's target address is
    /// not ours; an advertisement's source is not the address it claims.
    WrongTarget { asked: IpAddr },
    /// `delay` after our ask for `asked` (which its real host answers at once), a second
    /// answer, then a gratuitous one for it to everyone (IPv6: an unsolicited override
    /// advertisement to us).
    Late { asked: IpAddr, delay: Duration },
}

/// Answers the host's asks with [`Lie`]s, until stopped.
pub struct NeighbourForger(Worker<u64>);

impl NeighbourForger {
    pub fn start(host: &TestHost, lies: &[Lie]) -> Result<NeighbourForger> {
        let interface = host.peer_if.clone();
        let socket = host.in_ns(move || open_socket(&interface))??;
        let lies = lies.to_vec();
        let worker = Worker::spawn("neighbour forger", move |stop| serve(&socket, &lies, stop))?;
        Ok(NeighbourForger(worker))
    }

    /// Stops; returns the frames it sent.
    pub fn stop(self) -> Result<u64> {
        self.0.stop()
    }
}

/// An ask read off the wire: who asks (MAC, address) and for whom.
struct Ask {
    mac: [u8; 6],
    ours: IpAddr,
    asked: IpAddr,
}

fn serve(socket: &OwnedFd, lies: &[Lie], stop: &AtomicBool) -> Result<u64> {
    let mut sent = 0;
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Acquire) {
        let Some(ask) = read_frame(socket, &mut buffer).and_then(read_ask) else {
            continue;
        };
        for frame in lies.iter().flat_map(|lie| answers(lie, &ask)) {
            // SAFETY: the frame outlives the call; the socket is bound to the interface.
            let written =
                unsafe { libc::send(socket.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if written != frame.len() as isize {
                return Err(std::io::Error::last_os_error()).context("sending a forged answer");
            }
            sent += 1;
        }
    }
    Ok(sent)
}

/// An ARP request, or a neighbour solicitation (without extension headers).
fn read_ask(frame: &[u8]) -> Option<Ask> {
    let mac = frame.get(6..12)?.try_into().ok()?;
    match frame.get(12..14)? {
        [0x08, 0x06] => {
            let arp = frame.get(14..42)?;
            let ipv4 = |at: usize| Ipv4Addr::new(arp[at], arp[at + 1], arp[at + 2], arp[at + 3]);
            (arp[..8] == [0, 1, 0x08, 0, 6, 4, 0, 1]).then(|| Ask {
                mac,
                ours: ipv4(14).into(),
                asked: ipv4(24).into(),
            })
        }
        [0x86, 0xdd] => {
            let ip = frame.get(14..)?;
            let ipv6 = |at: usize| -> Option<IpAddr> {
                let octets: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
                Some(Ipv6Addr::from(octets).into())
            };
            let solicitation = ip.get(6) == Some(&IPPROTO_ICMPV6) && ip.get(40) == Some(&135);
            solicitation.then_some(())?;
            Some(Ask {
                mac,
                ours: ipv6(8)?,
                asked: ipv6(48)?,
            })
        }
        _ => None,
    }
}

/// The frames `lie` sends on `ask` (none if it is not the ask it answers).
fn answers(lie: &Lie, ask: &Ask) -> Vec<Vec<u8>> {
    match *lie {
        Lie::Unsolicited { asked, claimed } if asked == ask.asked => {
            vec![answer(ask.mac, claimed, claimed, ask.ours, true)]
        }
        Lie::WrongTarget { asked } if asked == ask.asked => {
            let elsewhere = match ask.ours {
                IpAddr::V4(ours) => IpAddr::V4(Ipv4Addr::from(u32::from(ours) ^ 0x80)),
                // The advertisement comes to us, but from another address than it claims.
                IpAddr::V6(ours) => IpAddr::V6(Ipv6Addr::from(u128::from(ours) ^ 0x80)),
            };
            vec![match asked {
                IpAddr::V4(_) => answer(ask.mac, asked, asked, elsewhere, true),
                IpAddr::V6(_) => answer(ask.mac, asked, elsewhere, ask.ours, true),
            }]
        }
        Lie::Late { asked, delay } if asked == ask.asked => {
            std::thread::sleep(delay);
            let gratuitous = match asked {
                IpAddr::V4(_) => answer([0xff; 6], asked, asked, asked, false),
                IpAddr::V6(_) => answer(ask.mac, asked, asked, ask.ours, false),
            };
            vec![answer(ask.mac, asked, asked, ask.ours, true), gratuitous]
        }
        _ => Vec::new(),
    }
}

/// A frame from [`OTHER_MAC`] to `to` saying that `claimed` is at [`OTHER_MAC`]: an ARP reply
/// from `from` (= `claimed`) to `target`, or a neighbour advertisement from `from` to
/// `target`, `solicited` or not (then an override).
fn answer(to: [u8; 6], claimed: IpAddr, from: IpAddr, target: IpAddr, solicited: bool) -> Vec<u8> {
    let head = [&to[..], &OTHER_MAC].concat();
    match (claimed, target) {
        (IpAddr::V4(claimed), IpAddr::V4(target)) => {
            let target_mac = if to == [0xff; 6] { [0xff; 6] } else { to };
            [
                &head[..],
                &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2],
                &OTHER_MAC,
                &claimed.octets(),
                &target_mac,
                &target.octets(),
            ]
            .concat()
        }
        (claimed, target) => {
            let IpAddr::V6(claimed) = claimed else {
                unreachable!("one family")
            };
            let flags = if solicited { 0x60 } else { 0x20 };
            let mut message = [&[136, 0, 0, 0, flags, 0, 0, 0][..], &claimed.octets()].concat();
            message.extend_from_slice(&[2, 1]);
            message.extend_from_slice(&OTHER_MAC);
            fill_checksum(from, target, IPPROTO_ICMPV6, &mut message);
            let mut ip = IpHeader::new(from, target, IPPROTO_ICMPV6);
            ip.ttl = 255;
            [&head[..], &[0x86, 0xdd], &ip.packet(&message)].concat()
        }
    }
}
