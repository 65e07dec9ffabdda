//! A hostile neighbour on the namespace's veth end: it reads the ARP requests the host sends
//! and answers them falsely, each answer claiming an address for [`OTHER_MAC`], a MAC nobody
//! on the testbed has, so that any probe a forgery redirected would be seen arriving for it.
//! The answers are well formed (sender MAC = the frame's source, to our MAC) but for one
//! thing each ([`Lie`]).
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::forger::{open_socket, Worker, OTHER_MAC};
use crate::TestHost;

/// How a forged answer lies, and which of our asks it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// On our ask for `asked`, an answer for `claimed` (asked later, or never): unsolicited.
    Unsolicited { asked: Ipv4Addr, claimed: Ipv4Addr },
    /// On our ask for `asked`, an answer for it whose target address is not ours.
    WrongTarget { asked: Ipv4Addr },
    /// `delay` after our ask for `asked` (which its real host answers at once), a second
    /// answer, then a gratuitous reply for it to everyone.
    Late { asked: Ipv4Addr, delay: Duration },
}

/// Answers the host's ARP requests with [`Lie`]s, until stopped.
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

/// An ARP request read off the wire: who asks (MAC, address) and for whom.
struct Ask {
    mac: [u8; 6],
    ours: Ipv4Addr,
    asked: Ipv4Addr,
}

fn serve(socket: &OwnedFd, lies: &[Lie], stop: &AtomicBool) -> Result<u64> {
    let mut sent = 0;
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Acquire) {
        // SAFETY: the buffer outlives the call, its size given; the socket times out reads.
        let read = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        let Some(ask) = usize::try_from(read)
            .ok()
            .and_then(|read| read_ask(&buffer[..read]))
        else {
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

fn read_ask(frame: &[u8]) -> Option<Ask> {
    let arp = frame.get(14..42)?;
    let request = frame[12..14] == [0x08, 0x06] && arp[..8] == [0, 1, 0x08, 0, 6, 4, 0, 1];
    let ipv4 = |at: usize| Ipv4Addr::new(arp[at], arp[at + 1], arp[at + 2], arp[at + 3]);
    request.then(|| Ask {
        mac: arp[8..14].try_into().expect("6 bytes"),
        ours: ipv4(14),
        asked: ipv4(24),
    })
}

/// The frames `lie` sends on `ask` (none if it is not the ask it answers).
fn answers(lie: &Lie, ask: &Ask) -> Vec<Vec<u8>> {
    match *lie {
        Lie::Unsolicited { asked, claimed } if asked == ask.asked => {
            vec![arp_reply(ask.mac, claimed, ask.mac, ask.ours)]
        }
        Lie::WrongTarget { asked } if asked == ask.asked => {
            let elsewhere = Ipv4Addr::from(u32::from(ask.ours) ^ 0x80);
            vec![arp_reply(ask.mac, asked, ask.mac, elsewhere)]
        }
        Lie::Late { asked, delay } if asked == ask.asked => {
            std::thread::sleep(delay);
            vec![
                arp_reply(ask.mac, asked, ask.mac, ask.ours),
                arp_reply([0xff; 6], asked, [0xff; 6], asked),
            ]
        }
        _ => Vec::new(),
    }
}

/// An ARP reply from [`OTHER_MAC`] in a frame to `to`: `claimed` is at [`OTHER_MAC`], for
/// `target_mac` at `target`.
fn arp_reply(to: [u8; 6], claimed: Ipv4Addr, target_mac: [u8; 6], target: Ipv4Addr) -> Vec<u8> {
    [
        &to[..],
        &OTHER_MAC,
        &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2],
        &OTHER_MAC,
        &claimed.octets(),
        &target_mac,
        &target.octets(),
    ]
    .concat()
}
