//! One implementation of [`Probe`] per probe kind, in the manner of zmap's probe modules:
//! each builds its packets, tells the XDP program what its replies look like, and formats them.

mod icmp;
mod tcp;

use std::{fmt::Write as _, net::Ipv4Addr};

pub use icmp::IcmpEcho;
use prober_common::{ProbeFilter, ReplyRecord};
pub use tcp::{TcpFlags, TcpProbe};

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

    /// Appends the kind-specific fields of a reply line (before `rtt=`).
    fn write_fields(&self, reply: &ReplyRecord, seq: u16, line: &mut String);

    /// Appends what `-V` adds after `rtt=`.
    fn write_verbose_trailer(&self, _reply: &ReplyRecord, _line: &mut String) {}
}

/// IPv4 header for a probe with `payload_len` bytes after it, checksum filled in.
fn ipv4_header(
    endpoints: &Endpoints,
    n: u64,
    protocol: etherparse::IpNumber,
    payload_len: u16,
) -> etherparse::Ipv4Header {
    let mut header = etherparse::Ipv4Header::new(
        payload_len,
        endpoints.ttl,
        protocol,
        endpoints.source.octets(),
        endpoints.target.octets(),
    )
    .expect("probe payloads are far below the IPv4 size limit");
    header.identification = endpoints.first_ip_id.wrapping_add(n as u16);
    header.dont_fragment = false;
    header.header_checksum = header.calc_header_checksum();
    header
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
        let _ = write!(line, " tos={:x} iplen={}\n", reply.tos, reply.ip_len);
    } else {
        line.push(' ');
    }
}
