//! One implementation of [`Probe`] per probe kind, in the manner of zmap's probe modules:
//! each builds its packets, tells the XDP program what its replies look like, and formats them.

mod icmp;
mod tcp;

use std::{fmt::Write as _, net::Ipv4Addr};

pub use icmp::IcmpEcho;
use prober_common::{ProbeFilter, ReplyRecord};
pub use tcp::{TcpFlags, TcpProbe, TcpSegment};

/// Longest probe any kind builds (IPv4 + TCP, no payload).
pub const MAX_PROBE_LEN: usize = 40;

/// Fields every probe kind shares.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    pub source: Ipv4Addr,
    pub target: Ipv4Addr,
    pub ttl: u8,
    /// IP identification of the first probe; later probes count up from it.
    pub first_ip_id: u16,
}

pub trait Probe: Send + Sync {
    /// hping3's header text after the address, e.g. `S set, 40 headers + 0 data bytes`.
    fn mode(&self) -> String;

    /// Writes the IPv4 packet of probe number `n` into `buf` and returns its length.
    fn build(&self, n: u64, buf: &mut [u8; MAX_PROBE_LEN]) -> usize;

    /// The kind-specific part of the filter the XDP program matches replies with.
    fn filter(&self) -> ProbeFilter;

    /// hping3's sequence number of the probe a reply answers.
    fn sequence(&self, reply: &ReplyRecord) -> u16;

    /// hping3's sequence number of probe `n`: what [`Probe::sequence`] gives its replies.
    fn sequence_of(&self, n: u64) -> u16 {
        n as u16
    }

    /// Appends the kind-specific fields of a reply line (before `rtt=`).
    fn write_fields(&self, reply: &ReplyRecord, seq: u16, line: &mut String);

    /// Appends what `-V` adds after `rtt=`.
    fn write_verbose_trailer(&self, _reply: &ReplyRecord, _line: &mut String) {}
}

/// IPv4 header for a probe with `payload_len` bytes after it, checksum filled in.
fn ipv4_header(
    source: Ipv4Addr,
    target: Ipv4Addr,
    ttl: u8,
    ip_id: u16,
    protocol: etherparse::IpNumber,
    payload_len: u16,
) -> etherparse::Ipv4Header {
    let mut header =
        etherparse::Ipv4Header::new(payload_len, ttl, protocol, source.octets(), target.octets())
            .expect("probe payloads are far below the IPv4 size limit");
    header.identification = ip_id;
    header.dont_fragment = false;
    header.header_checksum = header.calc_header_checksum();
    header
}

impl Endpoints {
    /// IP identification of probe `n`.
    fn ip_id(&self, n: u64) -> u16 {
        self.first_ip_id.wrapping_add(n as u16)
    }
}

/// Serialises `headers` back to back at the start of `buf`; returns the bytes written.
fn write_headers(buf: &mut [u8; MAX_PROBE_LEN], headers: &[&dyn SerialiseInto]) -> usize {
    let mut rest: &mut [u8] = &mut buf[..];
    for header in headers {
        header
            .serialise_into(&mut rest)
            .expect("probe headers fit in MAX_PROBE_LEN");
    }
    MAX_PROBE_LEN - rest.len()
}

/// The headers etherparse can write, behind one object-safe method.
trait SerialiseInto {
    fn serialise_into(&self, out: &mut &mut [u8]) -> std::io::Result<()>;
}

impl SerialiseInto for etherparse::Ipv4Header {
    fn serialise_into(&self, out: &mut &mut [u8]) -> std::io::Result<()> {
        self.write(out)
    }
}

impl SerialiseInto for etherparse::TcpHeader {
    fn serialise_into(&self, out: &mut &mut [u8]) -> std::io::Result<()> {
        self.write(out)
    }
}

impl SerialiseInto for etherparse::Icmpv4Header {
    fn serialise_into(&self, out: &mut &mut [u8]) -> std::io::Result<()> {
        self.write(out)
    }
}

/// hping3's reply-line prefix: `len=44 ip=1.2.3.4 ttl=64 DF id=0 ` (with `-V`,
/// `tos=0 iplen=44` and a line break follow).
pub fn write_ip_fields(reply: &ReplyRecord, verbose: bool, line: &mut String) {
    const IP_DF: u16 = 0x4000;
    let _ = write!(
        line,
        "len={} ip={} ttl={} {}id={}",
        reply.ip_len,
        Ipv4Addr::from(reply.src_addr),
        reply.ttl,
        if reply.ip_frag & IP_DF != 0 {
            "DF "
        } else {
            ""
        },
        reply.ip_id,
    );
    if verbose {
        let _ = writeln!(line, " tos={:x} iplen={}", reply.tos, reply.ip_len);
    } else {
        line.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use prober_tests::internet_checksum;

    use super::*;

    fn endpoints() -> Endpoints {
        Endpoints {
            source: Ipv4Addr::new(198, 18, 0, 1),
            target: Ipv4Addr::new(198, 18, 0, 2),
            ttl: 63,
            first_ip_id: 0xfffe,
        }
    }

    fn syn(keep_port: bool) -> TcpProbe {
        TcpProbe {
            endpoints: endpoints(),
            flags: TcpFlags(TcpFlags::SYN),
            target_port: 443,
            base_port: 65534,
            keep_port,
            window: 512,
            seq: 0x0102_0304,
            ack: 0x0a0b_0c0d,
        }
    }

    fn build(probe: &dyn Probe, n: u64) -> Vec<u8> {
        let mut buf = [0u8; MAX_PROBE_LEN];
        let length = probe.build(n, &mut buf);
        buf[..length].to_vec()
    }

    fn assert_ipv4_header(packet: &[u8], protocol: u8, n: u16) {
        assert_eq!(packet[0], 0x45, "IPv4, 20-byte header");
        assert_eq!(
            u16::from_be_bytes([packet[2], packet[3]]) as usize,
            packet.len()
        );
        assert_eq!(
            u16::from_be_bytes([packet[4], packet[5]]),
            0xfffe_u16.wrapping_add(n)
        );
        assert_eq!(packet[8], 63, "ttl");
        assert_eq!(packet[9], protocol);
        assert_eq!(&packet[12..16], &[198, 18, 0, 1]);
        assert_eq!(&packet[16..20], &[198, 18, 0, 2]);
        assert_eq!(internet_checksum(&packet[..20]), 0, "IP header checksum");
    }

    #[test]
    fn tcp_syn_probe_is_well_formed() {
        let probe = syn(false);
        for n in [0u64, 1, 2, 70_000] {
            let packet = build(&probe, n);
            assert_eq!(packet.len(), 40);
            assert_ipv4_header(&packet, 6, n as u16);
            let tcp = &packet[20..];
            let source_port = u16::from_be_bytes([tcp[0], tcp[1]]);
            assert_eq!(
                source_port,
                65534_u16.wrapping_add(n as u16),
                "source port counts up and wraps"
            );
            assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 443);
            assert_eq!(
                u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
                0x0102_0304
            );
            assert_eq!(
                u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
                0x0a0b_0c0d
            );
            assert_eq!(tcp[12] >> 4, 5, "no options");
            assert_eq!(tcp[13], TcpFlags::SYN);
            assert_eq!(u16::from_be_bytes([tcp[14], tcp[15]]), 512);
            let pseudo_header = [&packet[12..20], &[0, 6], &20u16.to_be_bytes()[..]].concat();
            assert_eq!(
                internet_checksum(&[&pseudo_header[..], tcp].concat()),
                0,
                "TCP checksum"
            );
        }
    }

    #[test]
    fn keep_port_holds_the_source_port() {
        let probe = syn(true);
        for n in 0..3 {
            let packet = build(&probe, n);
            assert_eq!(u16::from_be_bytes([packet[20], packet[21]]), 65534);
        }
        assert_eq!(probe.filter().sport_max_offset, 0);
    }

    #[test]
    fn all_tcp_flags_land_in_the_flags_byte() {
        let probe = TcpProbe {
            flags: TcpFlags(0xff),
            ..syn(false)
        };
        assert_eq!(build(&probe, 0)[33], 0xff);
    }

    #[test]
    fn icmp_echo_probe_is_well_formed() {
        let probe = IcmpEcho {
            endpoints: endpoints(),
            id: 0xbeef,
        };
        let packet = build(&probe, 65537);
        assert_eq!(packet.len(), 28);
        assert_ipv4_header(&packet, 1, 1);
        let icmp = &packet[20..];
        assert_eq!((icmp[0], icmp[1]), (8, 0), "echo request");
        assert_eq!(u16::from_be_bytes([icmp[4], icmp[5]]), 0xbeef);
        assert_eq!(
            u16::from_be_bytes([icmp[6], icmp[7]]),
            1,
            "sequence wraps at 2^16"
        );
        assert_eq!(internet_checksum(icmp), 0, "ICMP checksum");
    }

    #[test]
    fn replies_map_back_to_hping3_sequence_numbers() {
        let tcp = syn(false);
        let reply = ReplyRecord {
            dst_port: 1,
            ..ReplyRecord::default()
        };
        assert_eq!(
            tcp.sequence(&reply),
            3,
            "65534, 65535, 0, 1: the fourth probe"
        );
        let icmp = IcmpEcho {
            endpoints: endpoints(),
            id: 1,
        };
        let reply = ReplyRecord {
            icmp_seq: 9,
            ..ReplyRecord::default()
        };
        assert_eq!(icmp.sequence(&reply), 9);
    }
}
