//! What arrives in a test host's namespace: a packet socket on its end of the veth reads the
//! probes as the target receives them.
use std::os::fd::{AsRawFd, OwnedFd};

use crate::{forger, TestHost};

/// The frames arriving on the namespace's end of the veth, from the moment it is opened.
pub struct Arrivals {
    socket: OwnedFd,
}

impl Arrivals {
    pub fn open(host: &TestHost) -> Arrivals {
        let interface = host.peer_if.clone();
        let socket = host
            .in_ns(move || forger::open_socket(&interface))
            .expect("entering the namespace")
            .expect("a packet socket in the namespace");
        Arrivals { socket }
    }

    /// The IP packets (IPv4 or IPv6, without their Ethernet header) read so far.
    pub fn ip_packets(&self) -> Vec<Vec<u8>> {
        const ETHERNET: usize = 14;
        let mut packets = Vec::new();
        let mut buffer = vec![0u8; 65536];
        loop {
            // SAFETY: the buffer outlives the call and its length is given.
            let length = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                )
            };
            if length < 0 {
                // The socket's receive timeout: everything queued has been read.
                let error = std::io::Error::last_os_error();
                assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}");
                return packets;
            }
            let frame = &buffer[..length as usize];
            let ip = matches!(frame.get(12..14), Some([0x08, 0x00] | [0x86, 0xdd]));
            if ip && frame.len() > ETHERNET {
                packets.push(frame[ETHERNET..].to_vec());
            }
        }
    }
}
