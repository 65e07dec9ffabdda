//! A hostile far end: inside a [`TestHost`]'s namespace, a packet socket on its veth end reads
//! every probe the host sends and answers it with replies that would be right but for one flaw
//! each — a flaw for which the host's kernel would drop the reply. A prober that counts any of
//! them counts a reply that did not happen.
//!
//! The flawed replies are whole Ethernet frames written to the veth, so they cross it as the
//! namespace's real replies do, and a flaw can be anywhere from the Ethernet header on.

use crate::{internet_checksum, packets, TestHost};
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What is wrong with a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// IP version 6 in a frame whose EtherType says IPv4.
    Ipv6Version,
    /// A TCP data offset below the 5 words of a TCP header.
    DataOffset2,
    /// A TCP data offset of 15 words: more than the segment holds.
    DataOffset15,
    IpChecksum,
    /// A wrong TCP or ICMP checksum.
    TransportChecksum,
    /// An IP total length of 20: the transport header lies in the Ethernet trailer.
    TotalLength20,
    /// A frame for another MAC address.
    OtherMac,
    /// A frame for the broadcast MAC address.
    BroadcastMac,
    /// Nothing the kernel would mind: a correct reply, but to a source port (TCP) or an echo
    /// sequence number no probe has used yet.
    UnsentProbe,
}

/// What a probe was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    TcpSyn,
    IcmpEcho,
}

impl Flaw {
    /// Whether a reply to a probe of `kind` can have this flaw.
    fn applies_to(self, kind: Kind) -> bool {
        !matches!(self, Flaw::DataOffset2 | Flaw::DataOffset15) || kind == Kind::TcpSyn
    }

    /// Every flaw for which the kernel drops a SYN-ACK or RST.
    pub const TCP: [Flaw; 8] = [
        Flaw::Ipv6Version,
        Flaw::DataOffset2,
        Flaw::DataOffset15,
        Flaw::IpChecksum,
        Flaw::TransportChecksum,
        Flaw::TotalLength20,
        Flaw::OtherMac,
        Flaw::BroadcastMac,
    ];
    /// Every flaw for which the kernel drops an echo reply (it has no data offset).
    pub const ICMP: [Flaw; 6] = [
        Flaw::Ipv6Version,
        Flaw::IpChecksum,
        Flaw::TransportChecksum,
        Flaw::TotalLength20,
        Flaw::OtherMac,
        Flaw::BroadcastMac,
    ];
}

/// Answers each probe with each of its flaws that applies to its kind, until stopped.
pub struct Forger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Forged>>>,
}

/// What the forger did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forged {
    /// Probes it answered: TCP SYNs and ICMP echo requests.
    pub probes: u64,
    /// Flawed frames it sent.
    pub frames: u64,
}

const ETH_HEADER_LEN: usize = 14;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

impl Forger {
    /// Starts answering the probes `host` receives (from its host-side address) with a reply
    /// for each of `flaws` that applies to the probe's kind.
    pub fn start(host: &TestHost, flaws: &[Flaw]) -> Result<Forger> {
        let flaws = flaws.to_vec();
        let interface = host.peer_if.clone();
        let (ours, peer) = (host.addr, host.host_addr);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        // Opened in the namespace before the caller starts probing, so no probe is missed.
        let socket = host.in_ns(move || open_socket(&interface))??;
        let thread = std::thread::Builder::new()
            .name("forger".into())
            .spawn(move || serve(&socket, ours, peer, &flaws, &stop_thread))
            .context("starting the forger")?;
        Ok(Forger {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops and says what was sent.
    pub fn stop(mut self) -> Result<Forged> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => bail!("the forger thread panicked"),
        }
    }
}

impl Drop for Forger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open_socket(interface: &str) -> Result<OwnedFd> {
    // SAFETY: plain socket call; the fd is owned right below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(ETH_P_ALL.to_be()),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("packet socket");
    }
    // SAFETY: a fresh fd nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(interface)?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("no interface {interface} in the namespace");
    }
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = ETH_P_ALL.to_be();
    address.sll_ifindex = index as i32;
    // SAFETY: the address outlives the call and its size is given.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if bound != 0 {
        return Err(std::io::Error::last_os_error()).context("binding the packet socket");
    }
    // Reads give up now and then, so that a stop request is seen.
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: a timeval for SO_RCVTIMEO, its size given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    Ok(socket)
}

fn serve(
    socket: &OwnedFd,
    ours: Ipv4Addr,
    peer: Ipv4Addr,
    flaws: &[Flaw],
    stop: &AtomicBool,
) -> Result<Forged> {
    let mut forged = Forged::default();
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Acquire) {
        // SAFETY: sockaddr_ll is plain data; the kernel fills it in.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: the buffer and the address outlive the call, their sizes given.
        let read = unsafe {
            libc::recvfrom(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut from_len,
            )
        };
        if read < 0 {
            continue; // the timeout (or a signal): look at `stop` again
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            continue; // our own forgeries
        }
        let Some((reply, kind)) = reply_to(&buffer[..read as usize], ours, peer) else {
            continue;
        };
        forged.probes += 1;
        for &flaw in flaws.iter().filter(|flaw| flaw.applies_to(kind)) {
            let frame = flawed(&reply, flaw);
            // SAFETY: the frame outlives the call; the socket is bound to the interface.
            let sent =
                unsafe { libc::send(socket.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if sent != frame.len() as isize {
                return Err(std::io::Error::last_os_error()).context("sending a forgery");
            }
            forged.frames += 1;
        }
    }
    Ok(forged)
}

/// The correct reply to `frame` if it is a probe from `peer` to `ours` (a TCP SYN: a SYN-ACK
/// acknowledging it; an echo request: its echo reply), as an Ethernet frame, and the probe's
/// kind.
fn reply_to(frame: &[u8], ours: Ipv4Addr, peer: Ipv4Addr) -> Option<(Vec<u8>, Kind)> {
    let ip = frame.get(ETH_HEADER_LEN..)?;
    if u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_IP || ip.len() < 20 {
        return None;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let (source, dest) = (addr_at(ip, 12), addr_at(ip, 16));
    if source != peer || dest != ours {
        return None;
    }
    let transport = ip.get(header_len..)?;
    let packet = match ip[9] {
        6 if transport.len() >= 20 && transport[13] & 0x12 == 0x02 => {
            let (sport, dport) = (be16(transport, 0), be16(transport, 2));
            let seq = u32::from_be_bytes(transport[4..8].try_into().ok()?);
            (
                packets::syn_ack(ours, peer, dport, sport, seq.wrapping_add(1)),
                Kind::TcpSyn,
            )
        }
        1 if transport.len() >= 8 && transport[0] == 8 => {
            (echo_reply(ours, peer, transport), Kind::IcmpEcho)
        }
        _ => return None,
    };
    let mut reply = Vec::with_capacity(ETH_HEADER_LEN + packet.0.len());
    reply.extend_from_slice(&frame[6..12]); // back to the sender's MAC
    reply.extend_from_slice(&frame[..6]);
    reply.extend_from_slice(&ETH_P_IP.to_be_bytes());
    reply.extend_from_slice(&packet.0);
    Some((reply, packet.1))
}

/// The echo reply to `request` (an ICMP echo request), in an IPv4 packet, checksums filled in.
fn echo_reply(from: Ipv4Addr, to: Ipv4Addr, request: &[u8]) -> Vec<u8> {
    let mut icmp = request.to_vec();
    icmp[0] = 0;
    icmp[2..4].fill(0);
    let sum = internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let total = 20 + icmp.len();
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
    packet.extend_from_slice(&from.octets());
    packet.extend_from_slice(&to.octets());
    let sum = internet_checksum(&packet);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet.extend_from_slice(&icmp);
    packet
}

/// `reply` (a correct Ethernet frame) with `flaw`, every checksum the flaw does not concern
/// made right again.
fn flawed(reply: &[u8], flaw: Flaw) -> Vec<u8> {
    let mut frame = reply.to_vec();
    let l4 = ETH_HEADER_LEN + 20;
    let tcp = frame[ETH_HEADER_LEN + 9] == 6;
    match flaw {
        Flaw::Ipv6Version => frame[ETH_HEADER_LEN] = 0x65,
        Flaw::DataOffset2 => frame[l4 + 12] = 2 << 4,
        Flaw::DataOffset15 => frame[l4 + 12] = 15 << 4,
        Flaw::TotalLength20 => {
            frame[ETH_HEADER_LEN + 2..ETH_HEADER_LEN + 4].copy_from_slice(&20u16.to_be_bytes())
        }
        Flaw::OtherMac => frame[..6].copy_from_slice(&OTHER_MAC),
        Flaw::BroadcastMac => frame[..6].fill(0xff),
        Flaw::UnsentProbe => {
            // The reply's destination port (TCP) or sequence number (ICMP), 1000 further on.
            let at = l4 + if tcp { 2 } else { 6 };
            let number = u16::from_be_bytes([frame[at], frame[at + 1]]).wrapping_add(1000);
            frame[at..at + 2].copy_from_slice(&number.to_be_bytes());
        }
        Flaw::IpChecksum | Flaw::TransportChecksum => {}
    }
    fix_checksums(&mut frame, tcp);
    match flaw {
        Flaw::IpChecksum => frame[ETH_HEADER_LEN + 10] ^= 0x01,
        // Wrong, and not the pseudo-header's sum alone either (a checksum left to offload,
        // which a kernel takes from local senders).
        Flaw::TransportChecksum => frame[l4 + if tcp { 16 } else { 2 }] ^= 0x01,
        _ => {}
    }
    frame
}

/// Recomputes the IPv4 header checksum and the TCP (with its pseudo-header) or ICMP checksum
/// over the whole transport part of the frame (the header's own lengths may be the flaw).
fn fix_checksums(frame: &mut [u8], tcp: bool) {
    let ip = ETH_HEADER_LEN;
    frame[ip + 10..ip + 12].fill(0);
    let sum = internet_checksum(&frame[ip..ip + 20]);
    frame[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
    let l4 = ip + 20;
    let at = l4 + if tcp { 16 } else { 2 };
    frame[at..at + 2].fill(0);
    let sum = if tcp {
        let length = (frame.len() - l4) as u16;
        let pseudo = [
            &frame[ip + 12..ip + 20],
            &[0, 6],
            &length.to_be_bytes(),
            &frame[l4..],
        ]
        .concat();
        internet_checksum(&pseudo)
    } else {
        internet_checksum(&frame[l4..])
    };
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

fn addr_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

#[cfg(test)]
mod unit {
    use super::*;

    fn reply() -> Vec<u8> {
        let packet = packets::syn_ack(
            Ipv4Addr::new(198, 18, 4, 2),
            Ipv4Addr::new(198, 18, 4, 1),
            23,
            61440,
            8,
        );
        [
            &[2, 0, 0, 0, 0, 1][..],
            &[2, 0, 0, 0, 0, 2],
            &[8, 0],
            &packet,
        ]
        .concat()
    }

    #[test]
    fn each_flaw_is_the_only_thing_wrong() {
        let good = reply();
        let ip = &good[ETH_HEADER_LEN..];
        assert_eq!(internet_checksum(&ip[..20]), 0);
        for flaw in Flaw::TCP {
            let bad = flawed(&good, flaw);
            let ip_ok = internet_checksum(&bad[ETH_HEADER_LEN..ETH_HEADER_LEN + 20]) == 0;
            assert_eq!(ip_ok, flaw != Flaw::IpChecksum, "{flaw:?}");
            let differs = bad.iter().zip(&good).filter(|(a, b)| a != b).count();
            assert!(differs > 0, "{flaw:?} changed nothing");
        }
    }
}
