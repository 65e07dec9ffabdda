//! An IP address of either family in one 16-byte shape, so that maps, records and cookies
//! need no second copy per family.

/// IPv6's 16 bytes as on the wire, or an IPv4 address in its IPv4-mapped form
/// (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2): the form is the family tag. The kernel drops IPv6
/// packets that carry such addresses, so the eBPF programs' IPv6 parser must refuse them too,
/// or a forged one would pass for IPv4.
///
/// Aligned to 8 so that the programs move and compare it as two words: a byte array of
/// alignment 1 is taken apart byte by byte, and every byte held across a helper call takes
/// a word of the 512-byte stack. (Every shared record already has it at an 8-byte offset.)
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct IpAddress(pub [u8; 16]);

/// Bytes 8 to 11 of an IPv4-mapped address (the first eight are zero).
const MAPPED_MARK: [u8; 4] = [0, 0, 0xff, 0xff];

impl IpAddress {
    #[inline(always)]
    pub const fn from_ipv4(octets: [u8; 4]) -> IpAddress {
        let [a, b, c, d] = octets;
        IpAddress([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d])
    }

    /// The IPv4 address, when this is one.
    #[inline(always)]
    pub fn ipv4(&self) -> Option<[u8; 4]> {
        let [p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, a, b, c, d] = self.0;
        let mapped = u64::from_ne_bytes([p0, p1, p2, p3, p4, p5, p6, p7]) == 0
            && u32::from_ne_bytes([p8, p9, p10, p11]) == u32::from_ne_bytes(MAPPED_MARK);
        mapped.then_some([a, b, c, d])
    }

    /// 127.0.0.0/8 or ::1, which the kernel takes only from `lo`.
    #[inline(always)]
    pub fn is_loopback(&self) -> bool {
        match self.ipv4() {
            Some([first, ..]) => first == 127,
            None => self.words() == [0, u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0, 1])],
        }
    }

    /// The address as two little-endian words: its first 16 bytes as SipHash reads them.
    #[inline(always)]
    pub fn le_words(&self) -> [u64; 2] {
        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = self.0;
        [
            u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
        ]
    }

    /// The address as two words, for comparisons that compile to two loads on either side
    /// (the eBPF target has no `memcmp`).
    #[inline(always)]
    fn words(&self) -> [u64; 2] {
        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = self.0;
        [
            u64::from_ne_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            u64::from_ne_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
        ]
    }
}

impl PartialEq for IpAddress {
    #[inline(always)]
    fn eq(&self, other: &IpAddress) -> bool {
        let ([a, b], [c, d]) = (self.words(), other.words());
        a == c && b == d
    }
}

impl From<core::net::IpAddr> for IpAddress {
    fn from(address: core::net::IpAddr) -> IpAddress {
        match address {
            core::net::IpAddr::V4(v4) => IpAddress::from_ipv4(v4.octets()),
            core::net::IpAddr::V6(v6) => IpAddress(v6.octets()),
        }
    }
}

impl From<IpAddress> for core::net::IpAddr {
    fn from(address: IpAddress) -> core::net::IpAddr {
        match address.ipv4() {
            Some(v4) => core::net::IpAddr::V4(v4.into()),
            None => core::net::IpAddr::V6(address.0.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn ipv4_takes_the_mapped_form_and_comes_back() {
        let v4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let address = IpAddress::from(v4);
        assert_eq!(address.ipv4(), Some([198, 18, 0, 2]));
        assert_eq!(
            Ipv6Addr::from(address.0),
            Ipv4Addr::new(198, 18, 0, 2).to_ipv6_mapped()
        );
        assert_eq!(IpAddr::from(address), v4);
    }

    #[test]
    fn ipv6_stays_as_it_is() {
        let v6 = IpAddr::V6("2001:db8::2".parse().unwrap());
        let address = IpAddress::from(v6);
        assert_eq!(address.ipv4(), None);
        assert_eq!(IpAddr::from(address), v6);
        assert_ne!(address, IpAddress::from_ipv4([198, 18, 0, 2]));
        assert_eq!(address, IpAddress::from(v6));
    }
}
