//! A hostile far end: inside a [`TestHost`]'s namespace, a packet socket on its veth end reads
//! every probe the host sends, over IPv4 or IPv6, and answers it with replies that would be right
//! but for one [`Flaw`] each — mostly a flaw for which the host's kernel would drop the reply, so
//! that a prober that counts it counts a reply that did not happen; or a shape the kernel takes
//! (a hop limit of 0, IPv6 extension headers) that a prober must match, or leave to the host, as
//! it documents; or, instead of a reply, IPv6 neighbour discovery from the target.
//!
//! The forgeries are whole Ethernet frames written to the veth, so they cross it as the
//! namespace's real replies do, and a flaw can be anywhere from the Ethernet header on. One
//! code path builds them for both families; a flaw that exists in one family only applies to
//! probes of that family.

use crate::packets::{
    self, fill_checksum, icmp_protocol, IpHeader, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
};
use crate::{Family, TestHost};
use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// IPv6 extension header types (RFC 8200).
pub const HOP_BY_HOP: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const DESTINATION_OPTIONS: u8 = 60;

/// What is wrong with a reply, or what is unusual about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// The other family's IP version in the IP header (6 in a frame whose EtherType says IPv4,
    /// 4 in an IPv6 one).
    WrongIpVersion,
    /// A TCP data offset below the 5 words of a TCP header.
    DataOffset2,
    /// A TCP data offset of 15 words: more than the segment holds.
    DataOffset15,
    /// A wrong IPv4 header checksum (IPv6 has none).
    IpChecksum,
    /// A wrong TCP, ICMP or ICMPv6 checksum.
    TransportChecksum,
    /// An IP length that ends at the IP header (IPv4 total length 20, IPv6 payload length 0):
    /// the transport header lies in the Ethernet trailer.
    LengthEndsAtIpHeader,
    /// An IP length (IPv4 total length, IPv6 payload length) 100 bytes beyond the frame.
    LengthBeyondFrame,
    /// A frame for another MAC address.
    OtherMac,
    /// A frame for the broadcast MAC address.
    BroadcastMac,
    /// An IPv6 reply to an IPv6 probe from the IPv4-mapped address of the target's IPv4 address
    /// (`::ffff:a.b.c.d`), which the kernel drops.
    V4MappedSource,
    /// An IPv6 reply to an IPv4 probe, from the target's IPv4-mapped address to ours: the
    /// 16-byte form prober keeps IPv4 addresses in, so the one IPv6 packet that could pass for
    /// an IPv4 reply. The kernel drops it for its mapped source.
    MappedIpv6ReplyToIpv4,
    /// Nothing the kernel would mind: a correct reply, but to a source port (TCP) or an echo
    /// sequence number no probe has used yet.
    UnsentProbe,
    /// Nothing the kernel would mind: a correct reply with a TTL (hop limit) of 0, which a host
    /// delivers (only a router would not forward it).
    HopLimit0,
    /// Nothing the kernel would mind: an IPv6 reply whose transport header follows these
    /// extension headers, each 8 bytes long (hop-by-hop and destination options hold one PadN
    /// option; a routing header is of an experimental type with no segments left; a fragment
    /// header is an atomic fragment, offset 0 and no more fragments, which the kernel takes as the
    /// whole packet).
    Extensions(&'static [u8]),
    /// Instead of a reply to an IPv6 probe, neighbour discovery from the namespace: a spoof, an
    /// unsolicited neighbour advertisement (override set) that claims the target's address for
    /// [`OTHER_MAC`], and a neighbour solicitation for our address from the target's, which
    /// gives [`OTHER_MAC`] as its link-layer address too (with the true one it would undo the
    /// spoof); and a router advertisement of router lifetime 0 without options (no default
    /// route, no prefix, nothing to configure).
    NeighbourDiscovery,
}

/// What a probe was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    TcpSyn,
    IcmpEcho,
}

impl Flaw {
    /// A destination options header: within any sensible bound.
    pub const DESTINATION_OPTIONS: Flaw = Flaw::Extensions(&[DESTINATION_OPTIONS]);
    /// Four extension headers: hop-by-hop (which must come first), then the other kinds the
    /// XDP parser skips. At its bound of four.
    pub const FOUR_EXTENSIONS: Flaw = Flaw::Extensions(&[
        HOP_BY_HOP,
        DESTINATION_OPTIONS,
        ROUTING,
        DESTINATION_OPTIONS,
    ]);
    /// Five: one past the XDP parser's bound, though the kernel takes it.
    pub const FIVE_EXTENSIONS: Flaw = Flaw::Extensions(&[
        HOP_BY_HOP,
        DESTINATION_OPTIONS,
        ROUTING,
        DESTINATION_OPTIONS,
        DESTINATION_OPTIONS,
    ]);
    /// An atomic fragment.
    pub const FRAGMENT: Flaw = Flaw::Extensions(&[FRAGMENT]);

    /// Every flaw for which prober must refuse a reply and count it as malformed. The kernel
    /// drops a reply with any of them too, with one exception: an ICMP or ICMPv6 echo reply to
    /// [`Flaw::BroadcastMac`] it takes (IP drops only frames for another host's MAC; TCP drops
    /// broadcast ones too, but `ping_rcv` and `icmpv6_rcv` never look at the packet type),
    /// where prober is stricter. The kernel also drops [`Flaw::MappedIpv6ReplyToIpv4`], which is no one's.
    pub const MALFORMED: [Flaw; 10] = [
        Flaw::WrongIpVersion,
        Flaw::DataOffset2,
        Flaw::DataOffset15,
        Flaw::IpChecksum,
        Flaw::TransportChecksum,
        Flaw::LengthEndsAtIpHeader,
        Flaw::LengthBeyondFrame,
        Flaw::OtherMac,
        Flaw::BroadcastMac,
        Flaw::V4MappedSource,
    ];

    /// Whether a reply to a probe of `kind` over `family` can have this flaw.
    pub fn applies_to(self, kind: Kind, family: Family) -> bool {
        match self {
            Flaw::DataOffset2 | Flaw::DataOffset15 => kind == Kind::TcpSyn,
            Flaw::IpChecksum => family == Family::V4,
            Flaw::Extensions(_) | Flaw::NeighbourDiscovery | Flaw::V4MappedSource => {
                family == Family::V6
            }
            Flaw::MappedIpv6ReplyToIpv4 => family == Family::V4,
            _ => true,
        }
    }

    /// Those of `flaws` that apply to probes of `kind` over `family`.
    pub fn applying(flaws: &[Flaw], kind: Kind, family: Family) -> Vec<Flaw> {
        flaws
            .iter()
            .copied()
            .filter(|flaw| flaw.applies_to(kind, family))
            .collect()
    }
}

/// Answers each probe with each of its flaws that applies, until stopped.
pub struct Forger(Worker<Forged>);

/// A thread that runs until it is asked to stop (or dropped), then says what it did.
pub(crate) struct Worker<T> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<T>>>,
}

impl<T: Send + 'static> Worker<T> {
    pub(crate) fn spawn(
        name: &str,
        work: impl FnOnce(&AtomicBool) -> Result<T> + Send + 'static,
    ) -> Result<Worker<T>> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(&stopping))
            .with_context(|| format!("starting the {name}"))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and returns what it did.
    pub(crate) fn stop(mut self) -> Result<T> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => bail!("the worker thread panicked"),
        }
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the forger did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forged {
    /// Probes it answered: TCP SYNs and ICMP echo requests, over either family.
    pub probes: u64,
    /// Frames it sent.
    pub frames: u64,
}

const ETH_HEADER_LEN: usize = 14;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// A MAC no interface of the testbed has: where [`Flaw::OtherMac`] sends its frames, and the
/// spoofer's in [`Flaw::NeighbourDiscovery`].
pub const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The addresses the forger answers for: probes from the host side to the namespace.
#[derive(Clone, Copy)]
struct Ends {
    target4: Ipv4Addr,
    ours4: Ipv4Addr,
    target6: Ipv6Addr,
    ours6: Ipv6Addr,
}

impl Forger {
    /// Starts answering the probes `host` receives from its host-side addresses with a frame for
    /// each of `flaws` that applies to the probe.
    pub fn start(host: &TestHost, flaws: &[Flaw]) -> Result<Forger> {
        let flaws = flaws.to_vec();
        let interface = host.peer_if.clone();
        let ends = Ends {
            target4: host.addr,
            ours4: host.host_addr,
            target6: host.addr6,
            ours6: host.host_addr6,
        };
        // Opened in the namespace before the caller starts probing, so no probe is missed.
        let socket = host.in_ns(move || open_socket(&interface))??;
        let worker = Worker::spawn("forger", move |stop| serve(&socket, ends, &flaws, stop))?;
        Ok(Forger(worker))
    }

    /// Stops and says what was sent.
    pub fn stop(self) -> Result<Forged> {
        self.0.stop()
    }
}

/// A packet socket on `interface` (in the caller's namespace) that reads every frame, each read
/// giving up after 50 ms.
pub fn open_socket(interface: &str) -> Result<OwnedFd> {
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

/// The next frame `socket` (from [`open_socket`]) reads into `buffer`; None when the read
/// timed out.
pub fn read_frame<'a>(socket: &OwnedFd, buffer: &'a mut [u8]) -> Option<&'a [u8]> {
    // SAFETY: the buffer outlives the call, its size given; the socket times out reads.
    let read = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            0,
        )
    };
    let read = usize::try_from(read).ok()?;
    Some(&buffer[..read])
}

fn serve(socket: &OwnedFd, ends: Ends, flaws: &[Flaw], stop: &AtomicBool) -> Result<Forged> {
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
        let Some(probe) = Probe::read(&buffer[..read as usize], &ends) else {
            continue;
        };
        forged.probes += 1;
        for &flaw in flaws {
            if !flaw.applies_to(probe.kind, Family::of(probe.target)) {
                continue;
            }
            for frame in forgeries(&probe, flaw, ends.target4) {
                // SAFETY: the frame outlives the call; the socket is bound to the interface.
                let sent = unsafe {
                    libc::send(socket.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0)
                };
                if sent != frame.len() as isize {
                    return Err(std::io::Error::last_os_error()).context("sending a forgery");
                }
                forged.frames += 1;
            }
        }
    }
    Ok(forged)
}

/// A probe, as far as its answer goes.
#[derive(Clone, Debug)]
struct Probe {
    kind: Kind,
    /// The probe's source, and the MAC it came from.
    ours: IpAddr,
    our_mac: [u8; 6],
    /// Its destination, in the namespace, and that end's MAC.
    target: IpAddr,
    target_mac: [u8; 6],
    /// The TCP SYN or the ICMP echo request.
    message: Vec<u8>,
}

impl Probe {
    /// `frame` as a probe from the host side to the namespace (a TCP SYN or an ICMP echo
    /// request over IPv4, the same over IPv6 without extension headers).
    fn read(frame: &[u8], ends: &Ends) -> Option<Probe> {
        let ip = frame.get(ETH_HEADER_LEN..)?;
        let (ours, target, protocol, message) = match be16(frame, 12) {
            ETH_P_IP if ip.len() >= 20 && ip[0] >> 4 == 4 => {
                let header_len = usize::from(ip[0] & 0x0f) * 4;
                let (source, dest) = (ipv4_at(ip, 12), ipv4_at(ip, 16));
                if (source, dest) != (ends.ours4, ends.target4) {
                    return None;
                }
                (source.into(), dest.into(), ip[9], ip.get(header_len..)?)
            }
            ETH_P_IPV6 if ip.len() >= 40 && ip[0] >> 4 == 6 => {
                let (source, dest) = (ipv6_at(ip, 8), ipv6_at(ip, 24));
                if (source, dest) != (ends.ours6, ends.target6) {
                    return None;
                }
                (source.into(), dest.into(), ip[6], &ip[40..])
            }
            _ => return None,
        };
        let kind = match (protocol, message.first()) {
            (IPPROTO_TCP, _) if message.len() >= 20 && message[13] & 0x12 == 0x02 => Kind::TcpSyn,
            (IPPROTO_ICMP, Some(8)) | (IPPROTO_ICMPV6, Some(128)) if message.len() >= 8 => {
                Kind::IcmpEcho
            }
            _ => return None,
        };
        Some(Probe {
            kind,
            ours,
            our_mac: frame[6..12].try_into().ok()?,
            target,
            target_mac: frame[..6].try_into().ok()?,
            message: message.to_vec(),
        })
    }

    /// The correct answer from `from` to `to` (a SYN-ACK acknowledging the SYN, or the echo
    /// reply), its checksum filled in; and its protocol.
    fn answer(&self, from: IpAddr, to: IpAddr) -> (u8, Vec<u8>) {
        match self.kind {
            Kind::TcpSyn => {
                let (sport, dport) = (be16(&self.message, 0), be16(&self.message, 2));
                let ack = be32(&self.message, 4).wrapping_add(1);
                let segment = packets::syn_ack_segment(from, to, dport, sport, ack);
                (IPPROTO_TCP, segment)
            }
            Kind::IcmpEcho => (
                icmp_protocol(from),
                packets::echo_reply_message(from, to, &self.message),
            ),
        }
    }

    /// The probe with its source port (TCP) or echo sequence number 1000 further on: the
    /// correct answer to it answers no probe sent yet.
    fn unsent(&self) -> Probe {
        let at = match self.kind {
            Kind::TcpSyn => 0,
            Kind::IcmpEcho => 6,
        };
        let mut probe = self.clone();
        let number = be16(&probe.message, at).wrapping_add(1000);
        probe.message[at..at + 2].copy_from_slice(&number.to_be_bytes());
        probe
    }
}

/// The frames that answer `probe` with `flaw`; `target4` is the target's IPv4 address, which
/// [`Flaw::V4MappedSource`] maps.
fn forgeries(probe: &Probe, flaw: Flaw, target4: Ipv4Addr) -> Vec<Vec<u8>> {
    if flaw == Flaw::NeighbourDiscovery {
        return neighbour_discovery(probe);
    }
    let unsent;
    let probe = if flaw == Flaw::UnsentProbe {
        unsent = probe.unsent();
        &unsent
    } else {
        probe
    };
    let (mut from, mut to) = (probe.target, probe.ours);
    if let Flaw::V4MappedSource | Flaw::MappedIpv6ReplyToIpv4 = flaw {
        from = target4.to_ipv6_mapped().into();
    }
    if let (Flaw::MappedIpv6ReplyToIpv4, IpAddr::V4(ours)) = (flaw, to) {
        to = ours.to_ipv6_mapped().into();
    }
    let (protocol, mut message) = probe.answer(from, to);
    if let Flaw::DataOffset2 | Flaw::DataOffset15 = flaw {
        message[12] = if flaw == Flaw::DataOffset2 { 2 } else { 15 } << 4;
        fill_checksum(from, to, protocol, &mut message);
    }
    let extensions = match flaw {
        Flaw::Extensions(kinds) => kinds,
        _ => &[],
    };
    let header = IpHeader {
        ttl: if flaw == Flaw::HopLimit0 { 0 } else { 64 },
        ..IpHeader::new(from, to, protocol)
    };
    let (packet, transport_at) = packet_with_extensions(header, extensions, &message);
    let to_mac = match flaw {
        Flaw::OtherMac => OTHER_MAC,
        Flaw::BroadcastMac => [0xff; 6],
        _ => probe.our_mac,
    };
    let mut frame = ethernet(to_mac, probe.target_mac, from, &packet);
    let (ip, v4) = (ETH_HEADER_LEN, from.is_ipv4());
    let packet_len = packet.len() as u16;
    match flaw {
        Flaw::WrongIpVersion => frame[ip] = if v4 { 0x65 } else { 0x40 },
        Flaw::LengthEndsAtIpHeader if v4 => set_be16(&mut frame, ip + 2, 20),
        Flaw::LengthEndsAtIpHeader => set_be16(&mut frame, ip + 4, 0),
        Flaw::LengthBeyondFrame if v4 => set_be16(&mut frame, ip + 2, packet_len + 100),
        Flaw::LengthBeyondFrame => set_be16(&mut frame, ip + 4, packet_len - 40 + 100),
        // Wrong, and not the pseudo-header's sum alone either (a checksum left to offload,
        // which a kernel takes from local senders).
        Flaw::TransportChecksum => {
            frame[ip + transport_at + packets::checksum_offset(protocol)] ^= 0x01
        }
        _ => {}
    }
    if v4 {
        refresh_ipv4_checksum(&mut frame[ip..ip + 20]);
        if flaw == Flaw::IpChecksum {
            frame[ip + 10] ^= 0x01;
        }
    }
    vec![frame]
}

/// `message` in an IP packet whose header is `header` and, for IPv6, with extension headers
/// of the `kinds` between it and `message`; and where `message` starts.
fn packet_with_extensions(mut header: IpHeader, kinds: &[u8], message: &[u8]) -> (Vec<u8>, usize) {
    let mut payload = Vec::new();
    for (i, &kind) in kinds.iter().enumerate() {
        let next = kinds.get(i + 1).copied().unwrap_or(header.protocol);
        payload.extend_from_slice(&extension_header(kind, next));
    }
    let header_len = if header.from.is_ipv4() { 20 } else { 40 };
    let transport_at = header_len + payload.len();
    if let Some(&first) = kinds.first() {
        header.protocol = first;
    }
    payload.extend_from_slice(message);
    (header.packet(&payload), transport_at)
}

/// An 8-byte extension header of `kind` followed by `next`.
fn extension_header(kind: u8, next: u8) -> [u8; 8] {
    match kind {
        // Header length 0 (8 bytes), one PadN option of 4 bytes of padding.
        HOP_BY_HOP | DESTINATION_OPTIONS => [next, 0, 1, 4, 0, 0, 0, 0],
        // An experimental routing type (RFC 4727) with 0 segments left: ignored (RFC 8200 4.4).
        ROUTING => [next, 0, 253, 0, 0, 0, 0, 0],
        // Offset 0, no more fragments: an atomic fragment (RFC 6946).
        FRAGMENT => [next, 0, 0, 0, 0x5e, 0xed, 0, 1],
        _ => panic!("no extension header of type {kind}"),
    }
}

/// Neighbour discovery from the target, in answer to an IPv6 probe: from a spoofer at
/// [`OTHER_MAC`], an unsolicited neighbour advertisement claiming the target's address for
/// it (override set) and a neighbour solicitation for our address from the target's, giving
/// it as its link-layer address; and from the target, a router advertisement of router
/// lifetime 0. Hop limit 255, as NDP wants.
fn neighbour_discovery(probe: &Probe) -> Vec<Vec<u8>> {
    const ADVERTISEMENT: u8 = 136;
    const SOLICITATION: u8 = 135;
    const ROUTER_ADVERTISEMENT: u8 = 134;
    const OVERRIDE: u8 = 0x20;
    let (IpAddr::V6(target), IpAddr::V6(ours)) = (probe.target, probe.ours) else {
        return Vec::new();
    };
    let target_link_layer = [&[2, 1][..], &OTHER_MAC].concat();
    let source_link_layer = [&[1, 1][..], &OTHER_MAC].concat();
    let advertisement = [
        &[ADVERTISEMENT, 0, 0, 0, OVERRIDE, 0, 0, 0][..],
        &target.octets(),
        &target_link_layer,
    ]
    .concat();
    let solicitation = [
        &[SOLICITATION, 0, 0, 0, 0, 0, 0, 0][..],
        &ours.octets(),
        &source_link_layer,
    ]
    .concat();
    // Current hop limit, flags, router lifetime, reachable time, retransmit timer: all 0.
    let router_advertisement = [
        ROUTER_ADVERTISEMENT,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    let link_local = link_local_of(probe.target_mac);
    [
        (OTHER_MAC, target, ours, probe.our_mac, advertisement),
        (OTHER_MAC, target, ours, probe.our_mac, solicitation),
        (
            probe.target_mac,
            link_local,
            ALL_NODES,
            ALL_NODES_MAC,
            router_advertisement.to_vec(),
        ),
    ]
    .into_iter()
    .map(|(from_mac, from, to, to_mac, mut message)| {
        let (from, to) = (IpAddr::V6(from), IpAddr::V6(to));
        fill_checksum(from, to, IPPROTO_ICMPV6, &mut message);
        let header = IpHeader {
            ttl: 255,
            ..IpHeader::new(from, to, IPPROTO_ICMPV6)
        };
        ethernet(to_mac, from_mac, from, &header.packet(&message))
    })
    .collect()
}

/// The link-local address the kernel gives an interface with `mac` (modified EUI-64).
fn link_local_of(mac: [u8; 6]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets[..2].copy_from_slice(&[0xfe, 0x80]);
    octets[8..].copy_from_slice(&[
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]);
    Ipv6Addr::from(octets)
}

/// An Ethernet frame of `packet`, whose family `from` gives its EtherType.
fn ethernet(to: [u8; 6], from_mac: [u8; 6], from: IpAddr, packet: &[u8]) -> Vec<u8> {
    let ethertype = if from.is_ipv4() { ETH_P_IP } else { ETH_P_IPV6 };
    [&to[..], &from_mac, &ethertype.to_be_bytes(), packet].concat()
}

/// Recomputes an IPv4 header's checksum after a change to it.
fn refresh_ipv4_checksum(header: &mut [u8]) {
    header[10..12].fill(0);
    let sum = crate::internet_checksum(header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
}

fn ipv4_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(<[u8; 4]>::try_from(&bytes[at..at + 4]).expect("four bytes"))
}

fn ipv6_at(bytes: &[u8], at: usize) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[at..at + 16]).expect("sixteen bytes"))
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn set_be16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::internet_checksum;
    use crate::packets::pseudo_header;

    const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const TARGET_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn ends() -> Ends {
        Ends {
            target4: Ipv4Addr::new(198, 18, 4, 2),
            ours4: Ipv4Addr::new(198, 18, 4, 1),
            target6: "2001:db8:100:400::2".parse().unwrap(),
            ours6: "2001:db8:100:400::1".parse().unwrap(),
        }
    }

    /// A SYN from our address to the target's, as the probe frame the forger reads.
    fn syn(family: Family) -> Probe {
        let ends = ends();
        let (ours, target): (IpAddr, IpAddr) = match family {
            Family::V4 => (ends.ours4.into(), ends.target4.into()),
            Family::V6 => (ends.ours6.into(), ends.target6.into()),
        };
        let segment = packets::Segment {
            source_port: 61440,
            dest_port: 23,
            seq: 7,
            ack: 0,
            flags: packets::TCP_SYN,
            window: 1024,
            options: &[],
        }
        .bytes(ours, target);
        let packet = IpHeader::new(ours, target, IPPROTO_TCP).packet(&segment);
        let frame = ethernet(TARGET_MAC, OUR_MAC, ours, &packet);
        Probe::read(&frame, &ends).expect("a probe")
    }

    /// Whether `frame` is the SYN-ACK of [`syn`]'s probe, intact: lengths, checksums, our MAC,
    /// the EtherType of its IP version, extension headers walked.
    fn intact_syn_ack(frame: &[u8]) -> bool {
        let ip = &frame[ETH_HEADER_LEN..];
        let (from, to, lengths_ok, mut next, mut at, ethertype) = match ip[0] >> 4 {
            4 => (
                IpAddr::from(ipv4_at(ip, 12)),
                IpAddr::from(ipv4_at(ip, 16)),
                internet_checksum(&ip[..20]) == 0 && usize::from(be16(ip, 2)) == ip.len(),
                ip[9],
                20,
                ETH_P_IP,
            ),
            _ => (
                IpAddr::from(ipv6_at(ip, 8)),
                IpAddr::from(ipv6_at(ip, 24)),
                usize::from(be16(ip, 4)) + 40 == ip.len(),
                ip[6],
                40,
                ETH_P_IPV6,
            ),
        };
        while next != IPPROTO_TCP && at + 8 <= ip.len() {
            (next, at) = (ip[at], at + 8);
        }
        let Some(segment) = ip.get(at..).filter(|s| s.len() >= 20) else {
            return false;
        };
        let pseudo = pseudo_header(from, to, IPPROTO_TCP, segment.len());
        lengths_ok
            && next == IPPROTO_TCP
            && frame[..6] == OUR_MAC
            && be16(frame, 12) == ethertype
            && segment[12] == 5 << 4
            && be32(segment, 8) == 8
            && internet_checksum(&[pseudo, segment.to_vec()].concat()) == 0
    }

    #[test]
    fn each_flaw_is_the_only_thing_wrong() {
        for family in [Family::V4, Family::V6] {
            let probe = syn(family);
            let good = forgeries(&probe, Flaw::HopLimit0, ends().target4);
            assert!(intact_syn_ack(&good[0]), "{family:?}: the reply itself");
            for flaw in Flaw::applying(&Flaw::MALFORMED, Kind::TcpSyn, family) {
                let bad = forgeries(&probe, flaw, ends().target4);
                assert_eq!(bad.len(), 1, "{family:?} {flaw:?}");
                let intact = intact_syn_ack(&bad[0]);
                // A mapped source breaks nothing these checks see: the kernel drops it for
                // its address.
                assert_eq!(intact, flaw == Flaw::V4MappedSource, "{family:?} {flaw:?}");
            }
        }
    }

    #[test]
    fn extension_headers_chain_to_the_transport_header_and_the_kernel_would_take_them() {
        let probe = syn(Family::V6);
        for flaw in [
            Flaw::DESTINATION_OPTIONS,
            Flaw::FIVE_EXTENSIONS,
            Flaw::FRAGMENT,
        ] {
            let Flaw::Extensions(kinds) = flaw else {
                unreachable!()
            };
            let frame = &forgeries(&probe, flaw, ends().target4)[0];
            assert!(intact_syn_ack(frame), "{flaw:?}");
            assert_eq!(
                frame.len(),
                ETH_HEADER_LEN + 40 + 8 * kinds.len() + 20,
                "{flaw:?}"
            );
            assert_eq!(frame[ETH_HEADER_LEN + 6], kinds[0], "{flaw:?}");
        }
    }

    #[test]
    fn v4_mapped_replies_are_ipv6_from_the_mapped_target() {
        let frame = &forgeries(
            &syn(Family::V4),
            Flaw::MappedIpv6ReplyToIpv4,
            ends().target4,
        )[0];
        let ip = &frame[ETH_HEADER_LEN..];
        assert_eq!(ip[0] >> 4, 6);
        assert_eq!(ipv6_at(ip, 8), ends().target4.to_ipv6_mapped());
        assert_eq!(ipv6_at(ip, 24), ends().ours4.to_ipv6_mapped());
    }

    #[test]
    fn neighbour_discovery_is_three_valid_icmpv6_messages() {
        let frames = forgeries(&syn(Family::V6), Flaw::NeighbourDiscovery, ends().target4);
        let types: Vec<u8> = frames.iter().map(|f| f[ETH_HEADER_LEN + 40]).collect();
        assert_eq!(types, [136, 135, 134]);
        for frame in &frames {
            let ip = &frame[ETH_HEADER_LEN..];
            assert_eq!((ip[6], ip[7]), (IPPROTO_ICMPV6, 255));
            let (from, to) = (IpAddr::from(ipv6_at(ip, 8)), IpAddr::from(ipv6_at(ip, 24)));
            let pseudo = pseudo_header(from, to, IPPROTO_ICMPV6, ip.len() - 40);
            assert_eq!(internet_checksum(&[pseudo, ip[40..].to_vec()].concat()), 0);
        }
        assert_eq!(ipv6_at(&frames[0][ETH_HEADER_LEN..], 48), ends().target6);
        // The link-layer address options of the advertisement and the solicitation, and
        // their Ethernet sources: the spoofer's MAC.
        for frame in &frames[..2] {
            assert_eq!(frame[ETH_HEADER_LEN + 66..ETH_HEADER_LEN + 72], OTHER_MAC);
            assert_eq!(frame[6..12], OTHER_MAC);
        }
        assert_eq!(
            link_local_of([0x2e, 0xa6, 0xe3, 0xd3, 0x33, 0x5e]),
            "fe80::2ca6:e3ff:fed3:335e".parse::<Ipv6Addr>().unwrap()
        );
    }
}
