//! AF_PACKET socket with a PACKET_TX_RING (TPACKET_V2): probes are written straight into
//! memory shared with the kernel and sent with one `send()` per batch. Every frame gets its
//! own destination MAC and EtherType ([`Transmit::send_frame`]): a sweep of a directly
//! connected network addresses each host at its own MAC, and asks for them (ARP) through the
//! same ring. [`Transmit::send`] sends an IP packet to the one next hop the ring was opened
//! with (ping's), with its IP version's EtherType.
//!
//! Each frame is preceded by a virtio-net header (PACKET_VNET_HDR) whose `hdr_len` covers the
//! whole frame: the kernel then copies the frame into the socket buffer's linear part instead
//! of attaching the ring's page to it. Probes are small, and a linear buffer spares every later
//! step its work on a paged one: TC egress reads it in place, the veth need not copy the page
//! before it crosses into another namespace, and the receiver need not pull the headers in.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    ptr::{self, NonNull},
    sync::atomic::{fence, Ordering},
};

use anyhow::{Context as _, Result};

use super::{ip_version, Transmit};
use crate::net::Interface;

const FRAME_SIZE: usize = 2048;
const BLOCK_SIZE: usize = 1 << 16;
const BLOCK_COUNT: usize = 8;
const FRAME_COUNT: usize = BLOCK_SIZE / FRAME_SIZE * BLOCK_COUNT;
/// Without PACKET_TX_HAS_OFF, TX data starts here in each frame.
const DATA_OFFSET: usize = libc::TPACKET2_HDRLEN - std::mem::size_of::<libc::sockaddr_ll>();
/// struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.
const VNET_HEADER_LEN: usize = 10;
/// Destination and source MAC: the part of the Ethernet header every frame shares.
const MACS_LEN: usize = 12;
const ETH_HEADER_LEN: usize = MACS_LEN + 2;
/// The longest IP packet a frame holds.
pub const MAX_PACKET_LEN: usize = FRAME_SIZE - DATA_OFFSET - VNET_HEADER_LEN - ETH_HEADER_LEN;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;

pub struct TxRing {
    fd: OwnedFd,
    ring: NonNull<u8>,
    source_mac: [u8; 6],
    /// Where [`Transmit::send`] addresses its packets.
    next_hop_mac: [u8; 6],
    next_frame: usize,
    queued: usize,
    full_waits: u64,
    qdisc_bypass: bool,
}

// SAFETY: the mapping belongs to this value alone; it moves between threads with it.
unsafe impl Send for TxRing {}

impl TxRing {
    /// `qdisc_bypass`: hand frames straight to the driver (PACKET_QDISC_BYPASS), skipping the
    /// interface's queueing discipline: cheaper per frame, but a full driver queue then drops
    /// frames (counted in the interface's tx_dropped) instead of queueing them.
    pub fn open(
        interface: &Interface,
        source_mac: [u8; 6],
        next_hop_mac: [u8; 6],
        qdisc_bypass: bool,
    ) -> Result<TxRing> {
        // Protocol 0: this socket only sends, so the kernel queues nothing to it.
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("opening an AF_PACKET socket");
        }
        // SAFETY: fd is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };

        set_option(
            &fd,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V2 as libc::c_int),
        )
        .context("selecting TPACKET_V2")?;
        // Before the ring: the kernel refuses to change it on a socket that has one.
        set_option(&fd, libc::PACKET_VNET_HDR, &(1 as libc::c_int))
            .context("enabling PACKET_VNET_HDR")?;
        let request = libc::tpacket_req {
            tp_block_size: BLOCK_SIZE as u32,
            tp_block_nr: BLOCK_COUNT as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: FRAME_COUNT as u32,
        };
        set_option(&fd, libc::PACKET_TX_RING, &request).context("setting up PACKET_TX_RING")?;
        if qdisc_bypass {
            set_option(&fd, libc::PACKET_QDISC_BYPASS, &(1 as libc::c_int))
                .context("setting PACKET_QDISC_BYPASS")?;
        }

        let length = BLOCK_SIZE * BLOCK_COUNT;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let ring = unsafe {
            libc::mmap(
                ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error()).context("mapping the TX ring");
        }
        let ring = NonNull::new(ring.cast::<u8>()).expect("mmap succeeded");

        let address = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: 0,
            sll_ifindex: interface.index as i32,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: address is a valid sockaddr_ll of the size passed.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        let ring = TxRing {
            fd,
            ring,
            source_mac,
            next_hop_mac,
            next_frame: 0,
            queued: 0,
            full_waits: 0,
            qdisc_bypass,
        };
        if bound < 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("binding to {}", interface.name));
        }
        Ok(ring)
    }

    fn frame_header(&self, frame: usize) -> *mut libc::tpacket2_hdr {
        // SAFETY: frame < FRAME_COUNT, so the offset stays inside the mapping.
        unsafe { self.ring.as_ptr().add(frame * FRAME_SIZE).cast() }
    }

    fn status(&self, frame: usize) -> u32 {
        // SAFETY: the header is inside the mapping; the kernel updates it concurrently.
        unsafe { ptr::read_volatile(ptr::addr_of!((*self.frame_header(frame)).tp_status)) }
    }

    /// Waits until the kernel has finished with `frame`, kicking out what is queued.
    fn wait_available(&mut self, frame: usize) -> io::Result<()> {
        let mut waited = false;
        loop {
            let status = self.status(frame);
            if status & libc::TP_STATUS_WRONG_FORMAT != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "kernel rejected a TX frame",
                ));
            }
            // The kernel may OR other bits (timestamp sources) into a finished frame's status.
            if status & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) == 0 {
                // Order the kernel's last use of the frame before our writes to it.
                fence(Ordering::Acquire);
                return Ok(());
            }
            // The kick blocks until queued frames are handed to the driver; a frame still
            // SENDING after it waits for the driver to free its buffer.
            if !waited {
                waited = true;
                self.full_waits += 1;
            }
            self.kick()?;
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    fn kick(&mut self) -> io::Result<()> {
        self.queued = 0;
        // SAFETY: a zero-length send() only asks the kernel to transmit queued frames.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), ptr::null(), 0, 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Transmit for TxRing {
    fn send(&mut self, ip_packet: &[u8]) -> io::Result<()> {
        self.send_frame(self.next_hop_mac, ether_type(ip_packet)?, ip_packet)
    }

    fn send_frame(&mut self, next_hop: [u8; 6], ether_type: u16, payload: &[u8]) -> io::Result<()> {
        let frame = self.next_frame;
        self.wait_available(frame)?;
        let length = ETH_HEADER_LEN + payload.len();
        assert!(
            DATA_OFFSET + VNET_HEADER_LEN + length <= FRAME_SIZE,
            "probe larger than a ring frame"
        );
        let vnet = vnet_header(length);
        let head = ethernet_header(next_hop, self.source_mac, ether_type);
        let header = self.frame_header(frame);
        // SAFETY: the frame is ours (status AVAILABLE) and the copies stay inside it.
        unsafe {
            let data = header.cast::<u8>().add(DATA_OFFSET);
            ptr::copy_nonoverlapping(vnet.as_ptr(), data, VNET_HEADER_LEN);
            let data = data.add(VNET_HEADER_LEN);
            ptr::copy_nonoverlapping(head.as_ptr(), data, ETH_HEADER_LEN);
            ptr::copy_nonoverlapping(payload.as_ptr(), data.add(ETH_HEADER_LEN), payload.len());
            (*header).tp_len = (VNET_HEADER_LEN + length) as u32;
            // The frame's contents must be visible before the kernel sees the request.
            fence(Ordering::Release);
            ptr::write_volatile(
                ptr::addr_of_mut!((*header).tp_status),
                libc::TP_STATUS_SEND_REQUEST,
            );
        }
        self.next_frame = (frame + 1) % FRAME_COUNT;
        self.queued += 1;
        if self.queued == FRAME_COUNT / 2 {
            self.kick()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.queued > 0 {
            self.kick()?;
        }
        Ok(())
    }

    fn describe(&self) -> &'static str {
        "AF_PACKET TX ring"
    }

    fn full_waits(&self) -> u64 {
        self.full_waits
    }

    fn skips_tc(&self) -> bool {
        self.qdisc_bypass
    }
}

impl Drop for TxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in open(); the fd closes after this.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), BLOCK_SIZE * BLOCK_COUNT) };
    }
}

/// The virtio-net header of a frame of `frame_len` bytes: no offloads, and all of it header,
/// so that all of it is copied into the socket buffer's linear part (little-endian, as packet
/// sockets read it).
fn vnet_header(frame_len: usize) -> [u8; VNET_HEADER_LEN] {
    let mut header = [0u8; VNET_HEADER_LEN];
    header[2..4].copy_from_slice(&(frame_len as u16).to_le_bytes());
    header
}

fn ethernet_header(destination: [u8; 6], source: [u8; 6], ether_type: u16) -> [u8; ETH_HEADER_LEN] {
    let mut header = [0u8; ETH_HEADER_LEN];
    header[..6].copy_from_slice(&destination);
    header[6..MACS_LEN].copy_from_slice(&source);
    header[MACS_LEN..].copy_from_slice(&ether_type.to_be_bytes());
    header
}

/// The EtherType that announces `ip_packet`.
pub fn ether_type(ip_packet: &[u8]) -> io::Result<u16> {
    match ip_version(ip_packet) {
        4 => Ok(ETH_P_IP),
        6 => Ok(ETH_P_IPV6),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an IP packet",
        )),
    }
}

fn set_option<T>(fd: &OwnedFd, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value points to a T of the size passed.
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_start_with_destination_source_and_the_packets_ether_type() {
        assert_eq!(
            ethernet_header([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], 0x0806),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8, 6]
        );
        assert_eq!(ether_type(&[0x45, 0]).unwrap(), 0x0800);
        assert_eq!(ether_type(&[0x60, 0]).unwrap(), 0x86dd);
        assert!(ether_type(&[0x00]).is_err());
        assert!(ether_type(&[]).is_err());
    }

    #[test]
    fn the_vnet_header_asks_for_no_offload_and_a_linear_frame() {
        assert_eq!(vnet_header(74), [0, 0, 74, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(vnet_header(0x1234)[2..4], [0x34, 0x12]);
    }

    #[test]
    fn ring_geometry_is_consistent() {
        assert_eq!(DATA_OFFSET, 32);
        assert_eq!(FRAME_COUNT * FRAME_SIZE, BLOCK_SIZE * BLOCK_COUNT);
    }
}
