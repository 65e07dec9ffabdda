//! A raw IP socket that takes whole packets, IP header included (IPPROTO_RAW implies
//! IP_HDRINCL, and on IPv6 IPV6_HDRINCL): the kernel routes and addresses each one.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, RawFd},
};

use anyhow::{Context as _, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{ip_version, Transmit};

pub struct RawIpSocket {
    socket: Socket,
}

impl RawIpSocket {
    /// A socket for packets of `family`'s address family.
    pub fn open(family: IpAddr) -> Result<RawIpSocket> {
        let domain = match family {
            IpAddr::V4(_) => Domain::IPV4,
            IpAddr::V6(_) => Domain::IPV6,
        };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
            .context("opening a raw IP socket")?;
        Ok(RawIpSocket { socket })
    }
}

impl AsRawFd for RawIpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Where the kernel is to send `ip_packet`: its own destination address.
fn destination(ip_packet: &[u8]) -> io::Result<SockAddr> {
    let address = match ip_version(ip_packet) {
        4 if ip_packet.len() >= 20 => {
            let octets: [u8; 4] = ip_packet[16..20].try_into().expect("four bytes");
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        6 if ip_packet.len() >= 40 => {
            let octets: [u8; 16] = ip_packet[24..40].try_into().expect("sixteen bytes");
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an IP packet",
            ))
        }
    };
    Ok(SockAddr::from(SocketAddr::new(address, 0)))
}

impl Transmit for RawIpSocket {
    fn send(&mut self, ip_packet: &[u8]) -> io::Result<()> {
        self.socket
            .send_to(ip_packet, &destination(ip_packet)?)
            .map(|_| ())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn describe(&self) -> &'static str {
        "raw IP socket"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_go_to_their_own_destination() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[198, 18, 0, 2]);
        assert_eq!(
            destination(&v4).unwrap().as_socket(),
            Some("198.18.0.2:0".parse().unwrap())
        );
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[24..40].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            destination(&v6).unwrap().as_socket(),
            Some("[2001:db8::2]:0".parse().unwrap())
        );
        assert!(destination(&[0x45; 10]).is_err());
    }
}
