//! Types shared by the eBPF programs and userspace. Everything is `#[repr(C)]` with explicit
//! padding so both sides agree on the layout byte for byte.
#![no_std]

mod address;
mod siphash;
pub mod trace;
pub mod wire;

pub use address::IpAddress;
pub use siphash::{siphash_2_4, siphash_2_4_blocks};

/// What userspace tells the eBPF programs about the probes it sends, so that only replies to
/// them are recorded. Ports, sequence numbers and identifiers are in host byte order.
///
/// `kind` chooses the probe kind's module on the eBPF side; each reads the fields its kind is
/// named in and ignores the rest. (Fields are in order of alignment, so there is no padding.)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ProbeFilter {
    /// Every kind, one target: replies must come from the probed host.
    pub target_addr: IpAddress,
    /// Every kind: replies must be sent to our address.
    pub local_addr: IpAddress,
    /// Sweeps: the SipHash key of the probes' cookies (see [`syn_cookie`]).
    pub cookie_key: [u64; 2],
    /// TCP, one target: the sequence number every probe carries; a reply with ACK
    /// acknowledges it.
    pub tcp_seq: u32,
    /// TCP, one target: the acknowledgement number probes carry; a RST without ACK echoes it
    /// as its sequence number.
    pub tcp_ack: u32,
    /// Kinds with ports (TCP, UDP), one target: replies come from the probed ports,
    /// `target_port ..= target_port + target_port_max_offset` (wrapping; see
    /// [`ProbeFilter::probes_port`]).
    pub target_port: u16,
    /// Kinds with ports: our source ports are `sport_base ..= sport_base + sport_max_offset`
    /// (wrapping).
    pub sport_base: u16,
    pub sport_max_offset: u16,
    /// ICMP echo: the identifier of our probes.
    pub icmp_id: u16,
    /// ICMP echo: the type of our probes (an echo, timestamp or address mask request, as
    /// hping3's -C numbers them in ICMPv6's numbering for IPv6), and of their replies.
    pub icmp_type: u8,
    pub icmp_reply_type: u8,
    /// 0: one destination port; `u16::MAX`: any (hping3's `-p +N` and `-p ++N` move it
    /// during the run, and userspace tells which replies answer the port probed).
    pub target_port_max_offset: u16,
    /// [`KIND_TCP`], [`KIND_ICMP_ECHO`], [`KIND_UDP`] or [`KIND_RAW_IP`]; [`KIND_NONE`]
    /// matches nothing.
    pub kind: u8,
    /// [`MODE_SINGLE`] or [`MODE_SWEEP`].
    pub mode: u8,
    /// Every kind: the MAC address of the interface the programs are on (all zero on `lo`);
    /// a reply must come in a frame to it.
    pub local_mac: [u8; 6],
    /// 1: note our ARP requests and neighbour solicitations leaving, and take the answers to
    /// them into [`NEIGHBOURS_MAP`] (a sweep resolving on-link targets itself); 0: neither.
    pub neighbours: u8,
    /// One target: 1 when every probe is of one flow, as a traceroute's are (see
    /// [`ProbeFilter::tcp_rest`] and [`ProbeFilter::is_our_echo`]); 0 otherwise.
    pub one_flow: u8,
    /// TCP and UDP, one target: the data bytes every probe carries (-d; UDP of one flow over
    /// IPv6 two more, see [`ProbeFilter::udp_slot`]), which a RST acknowledges with the SYN
    /// and FIN, and which an ICMP error's quoted UDP length states.
    pub tcp_data_len: u16,
    /// Raw IP, one target: the IP ids of our probes, `ip_id_base ..= ip_id_base +
    /// ip_id_max_offset` (wrapping: one fixed id with -N), and the protocol they carry (-H).
    /// UDP of one flow over IPv4: `ip_id_base` is probe 0's IP id (see
    /// [`ProbeFilter::udp_slot`]).
    pub ip_id_base: u16,
    pub ip_id_max_offset: u16,
    pub ip_protocol: u8,
    /// TCP, one target: 1 to record each reply's TSval (--tcp-timestamp), 0 not to.
    pub tcp_timestamp: u8,
    /// TCP sweeps: the flags every probe carries, which say what answers it (see
    /// [`KIND_TCP`]).
    pub tcp_flags: u8,
    pub _pad2: u8,
}

impl ProbeFilter {
    /// One target: whether `port` is one of the destination ports our probes go to.
    #[inline(always)]
    pub fn probes_port(&self, port: u16) -> bool {
        port.wrapping_sub(self.target_port) <= self.target_port_max_offset
    }

    /// Whether `port` is one of our source ports.
    #[inline(always)]
    pub fn is_our_port(&self, port: u16) -> bool {
        port.wrapping_sub(self.sport_base) <= self.sport_max_offset
    }

    /// Raw IP: whether `id` is one of our probes' IP ids.
    #[inline(always)]
    pub fn is_our_ip_id(&self, id: u16) -> bool {
        id.wrapping_sub(self.ip_id_base) <= self.ip_id_max_offset
    }

    /// TCP, one target: of a number less the filter's (a sequence number less `tcp_seq`, an
    /// acknowledgement number less `tcp_ack`), what does not name the probe: 0 for the number a
    /// probe carries, the SYN, FIN and data an acknowledgement adds. Probes of one flow leave
    /// from one port and carry the filter's numbers plus their probe number times 2^16 (which
    /// no router hashes, and no answer's SYN, FIN and data reach); other probes carry the
    /// filter's numbers alone.
    #[inline(always)]
    pub fn tcp_rest(&self, offset: u32) -> u32 {
        if self.one_flow != 0 {
            offset & 0xffff
        } else {
            offset
        }
    }

    /// TCP, one target: the departure slot of the probe from our port `our_port` whose number
    /// less the filter's is `offset` (see [`ProbeFilter::tcp_rest`]): its probe number with
    /// probes of one flow, its source port's offset otherwise.
    #[inline(always)]
    pub fn tcp_slot(&self, our_port: u16, offset: u32) -> u16 {
        if self.one_flow != 0 {
            (offset >> 16) as u16
        } else {
            our_port.wrapping_sub(self.sport_base)
        }
    }

    /// UDP, one target: the departure slot of the datagram from our port `our_port`, in an
    /// IP packet of `version` with IP id `ip_id`, whose UDP checksum is `checksum`. Probes of
    /// one flow leave from one port and are numbered by a field no router hashes but every
    /// ICMP error quotes, as paris-traceroute's: IPv4's IP id (probe n's is `ip_id_base` + n),
    /// IPv6's UDP checksum (probe n's is n mod 65535, plus 1 as UDP over IPv6 has no
    /// checksum 0, which two data bytes in front of the probe's data steer it to); other
    /// probes by their source port's offset.
    #[inline(always)]
    pub fn udp_slot(
        &self,
        version: wire::IpVersion,
        our_port: u16,
        ip_id: u16,
        checksum: u16,
    ) -> u16 {
        if self.one_flow == 0 {
            return our_port.wrapping_sub(self.sport_base);
        }
        match version {
            wire::IpVersion::V4 => ip_id.wrapping_sub(self.ip_id_base),
            wire::IpVersion::V6 => checksum.wrapping_sub(1),
        }
    }

    /// ICMP echo, one target: whether `id` is the identifier of our echo with sequence number
    /// `seq`. Probes of one flow keep their checksum, as paris-traceroute's do: the identifier
    /// goes down as the sequence number goes up, their one's complement sum `icmp_id`.
    #[inline(always)]
    pub fn is_our_echo(&self, id: u16, seq: u16) -> bool {
        if self.one_flow != 0 {
            ones_complement_sum(id, seq) == self.icmp_id
        } else {
            id == self.icmp_id
        }
    }
}

/// `a + b` in one's complement, as the Internet checksum adds (RFC 1071): never 0 for a
/// nonzero sum, 0xffff for `a + b = 0xffff`.
#[inline(always)]
pub fn ones_complement_sum(a: u16, b: u16) -> u16 {
    let sum = u32::from(a) + u32::from(b);
    ((sum & 0xffff) + (sum >> 16)) as u16
}

/// The filter matches nothing (the programs pass every packet untouched).
pub const KIND_NONE: u8 = 0;
/// TCP probes with any flags. Sweeps carry their cookie as the sequence number, and as the
/// acknowledgement number too when they carry ACK; what answers them is what a Linux host
/// sends back ([`ProbeFilter::tcp_flags`]): to a SYN a SYN-ACK or a RST-ACK acknowledging the
/// cookie + 1, to a probe with ACK a RST whose sequence number is the cookie, to one with
/// neither (FIN, NULL, Xmas) a RST-ACK acknowledging the cookie + its FIN.
pub const KIND_TCP: u8 = 1;
/// ICMP echo requests, answered by echo replies (ICMPv6's for IPv6 targets), or ICMP's other
/// queries with the same identifier and sequence number: timestamp and address mask requests.
pub const KIND_ICMP_ECHO: u8 = 2;
/// UDP datagrams: a UDP answer means open, an ICMP port unreachable closed.
pub const KIND_UDP: u8 = 3;
/// Bare IP headers of a protocol of the user's choosing (hping3's raw IP mode, IPv4), whose
/// only answers are ICMP errors quoting them (protocol unreachable from Linux).
pub const KIND_RAW_IP: u8 = 4;

/// One target, one port: replies are matched against the filter's fixed target, port and
/// sequence numbers, and passed on to the host's stack untouched.
pub const MODE_SINGLE: u8 = 0;
/// Many targets and ports: a reply is ours when it carries the cookie of its own (target,
/// port, source port); ours are dropped after recording (the kind may answer them first).
pub const MODE_SWEEP: u8 = 1;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// TCP's flag bits, as the header's flags byte holds them.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// One reply a kind's eBPF module matched, with the header fields hping3 prints.
/// Every field but the address is in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ReplyRecord {
    /// `bpf_ktime_get_ns()` when the reply reached XDP, before it was parsed (CLOCK_MONOTONIC).
    pub kernel_ns: u64,
    /// `bpf_ktime_get_ns()` when the probe it answers left through TC egress; 0 when that
    /// departure was not seen (egress program not attached, PACKET_QDISC_BYPASS), and in
    /// sweeps, whose departures userspace looks up itself ([`SweepDeparture`]).
    pub sent_ns: u64,
    /// The probed host the reply is about (its form is the reply's IP version): its sender,
    /// or for an ICMP error the destination of the probe it quotes (its sender is
    /// [`ReplyRecord::icmp_from`]).
    pub src_addr: IpAddress,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    /// The IP packet's whole length: IPv4's total length, IPv6's 40 + payload length.
    pub ip_len: u16,
    /// IPv4's identification (0 for IPv6).
    pub ip_id: u16,
    /// Flags and fragment offset, as the IPv4 header has them (0 for IPv6).
    pub ip_frag: u16,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_window: u16,
    /// The TCP or ICMP checksum as received.
    pub l4_checksum: u16,
    pub tcp_urgent: u16,
    /// ICMP echo: the identifier and sequence number. An ICMP error about a TCP, UDP or raw
    /// IP probe: `icmp_seq` is the departure slot of the probe it quotes.
    pub icmp_id: u16,
    pub icmp_seq: u16,
    /// What an ICMP reply carries after its 8-byte header, for hping3's lines about it: a
    /// timestamp reply's originate, receive and transmit timestamps, an address mask reply's
    /// mask in the first 4 bytes (see [`wire::icmp_query_data_len`]); zero for others.
    pub icmp_data: [u8; 12],
    /// IPv4's TTL or IPv6's hop limit.
    pub ttl: u8,
    /// IPv4's TOS byte or IPv6's traffic class.
    pub tos: u8,
    /// The reply's IP protocol, for IPv6 the last next header after any extension headers (a
    /// kind may take replies of another protocol than its probes', as ICMP errors are).
    pub protocol: u8,
    pub tcp_flags: u8,
    /// IPv6's flow label (0 for IPv4).
    pub flow_label: u32,
    /// The TSval of the reply's TCP timestamp option, when the filter asks for it and
    /// `tcp_timestamp` is 1 (it had one); 0 otherwise.
    pub tcp_tsval: u32,
    /// An ICMP error (`protocol` is ICMP or ICMPv6 for a kind whose probes are not): its type
    /// and code (see [`wire::IcmpErrorKind::of`]); 0 for other replies.
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// 1 when `tcp_tsval` holds the reply's TSval.
    pub tcp_timestamp: u8,
    pub _pad: [u8; 1],
    /// An ICMP error's sender (the target, or a router on the way); zero for other replies.
    pub icmp_from: IpAddress,
}

impl ReplyRecord {
    /// The TSval of the reply's TCP timestamp option, if it had one (and the filter asked).
    pub fn tcp_timestamp(&self) -> Option<u32> {
        (self.tcp_timestamp == 1).then_some(self.tcp_tsval)
    }

    /// What the ICMP error this record is says, if it is one that answers a TCP or UDP probe.
    pub fn icmp_error(&self) -> Option<wire::IcmpErrorKind> {
        let version = match self.protocol {
            IPPROTO_ICMP => wire::IpVersion::V4,
            IPPROTO_ICMPV6 => wire::IpVersion::V6,
            _ => return None,
        };
        wire::IcmpErrorKind::of(version, self.icmp_type, self.icmp_code)
    }

    /// When the probe this answers left, as TC egress saw it, if it did.
    pub fn kernel_departure(&self) -> Option<u64> {
        (self.sent_ns != 0).then_some(self.sent_ns)
    }
}

/// A probe leaving the interface, as the TC egress program saw it. Probes are filed by slot
/// (the kind picks it: the source port's offset from `sport_base` for TCP, the echo sequence
/// number for ICMP), so that a reply finds its probe's departure without any search.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Departure {
    /// `bpf_ktime_get_ns()` at TC egress (CLOCK_MONOTONIC).
    pub kernel_ns: u64,
    /// Where the probe went: a reply must come from there to be timed against it.
    pub target_addr: IpAddress,
    /// The probed port (0 for ICMP).
    pub target_port: u16,
    pub _pad: [u8; 6],
}

/// One departure slot per possible 16-bit slot number.
pub const DEPARTURE_SLOTS: u32 = 1 << 16;

/// A sweep's source ports: replies name their probe's slot by the port they come to, and the
/// departure table has a row of this many slots per epoch.
pub const SWEEP_SOURCE_PORTS: u16 = 4096;

/// A sweep probe's departure, filed by the TC egress program (or, where it does not run, by
/// the send thread) in the slot [`sweep_departure_slot`] names, for the reply's side to find
/// from the reply alone. Two words, each written and read whole: `tag` holds the probe's cookie
/// and the low half of `sent_ns`, so a reader that met a rewrite between the two words sees
/// halves that disagree, never another probe's time with this probe's cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct SweepDeparture {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the probe left.
    pub sent_ns: u64,
    pub tag: u64,
}

impl SweepDeparture {
    #[inline(always)]
    pub fn new(sent_ns: u64, cookie: u32) -> SweepDeparture {
        SweepDeparture {
            sent_ns,
            tag: (sent_ns << 32) | u64::from(cookie),
        }
    }

    /// When the probe with `cookie` left, if these two words, read apart, are its departure.
    pub fn sent_ns_of(sent_ns: u64, tag: u64, cookie: u32) -> Option<u64> {
        (sent_ns != 0 && SweepDeparture::new(sent_ns, cookie).tag == tag).then_some(sent_ns)
    }
}

/// The departure table's slot of a sweep probe leaving from the source port at `port_offset`
/// (< [`SWEEP_SOURCE_PORTS`]) in `epoch`: a row per epoch, `epochs_mask + 1` rows (a power of
/// two). The sender numbers its probes in send order: port offset and epoch count through them
/// (the epoch travels in the IPv4 ID or the IPv6 flow label, for TC egress), so a slot is
/// reused only after `SWEEP_SOURCE_PORTS * (epochs_mask + 1)` probes.
#[inline(always)]
pub fn sweep_departure_slot(port_offset: u16, epoch: u16, epochs_mask: u16) -> u32 {
    u32::from(port_offset) + u32::from(SWEEP_SOURCE_PORTS) * u32::from(epoch & epochs_mask)
}

/// What the programs know of one neighbour a sweep resolves ([`NEIGHBOURS_MAP`], keyed by its
/// address): TC egress files it [`NEIGHBOUR_ASKED`] when our ARP request or neighbour
/// solicitation for it leaves; XDP takes the first answer to that ask and makes it
/// [`NEIGHBOUR_RESOLVED`], which nothing changes again.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Neighbour {
    /// `bpf_ktime_get_ns()` when the first ask left, and when the answer came (0: none yet).
    pub asked_ns: u64,
    pub answered_ns: u64,
    /// The answer's MAC (zero until one came): also there when its record was lost to a full
    /// ring buffer.
    pub mac: [u8; 6],
    pub state: u8,
    pub _pad: u8,
}

pub const NEIGHBOUR_ASKED: u8 = 1;
pub const NEIGHBOUR_RESOLVED: u8 = 2;

/// A neighbour's answer, as XDP queues it in the reply ring buffer. Told apart from a
/// [`ReplyRecord`] by its length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct NeighbourRecord {
    /// When our first ask left (TC egress) and the answer arrived (XDP), CLOCK_MONOTONIC.
    pub asked_ns: u64,
    pub answered_ns: u64,
    /// Who answered, for its own address.
    pub addr: IpAddress,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

// The ring buffer's reader tells the records apart by their length alone.
const _: () =
    assert!(core::mem::size_of::<NeighbourRecord>() != core::mem::size_of::<ReplyRecord>());

/// Slots of the per-CPU counter array the XDP program keeps.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Replies matched and handed to userspace.
    Matched = 0,
    /// Replies matched but lost because the ring buffer was full.
    RingFull = 1,
    /// Packets shaped like replies to our probes that answer none of them: forged, stale,
    /// or from another run.
    Unmatched = 2,
    /// Sweep mode: SYN-ACKs turned into RSTs and sent back to the target (XDP_TX).
    Bounced = 3,
    /// Frames to our address that the kernel would drop, or that a kind took for replies but
    /// the kernel would not accept (another MAC, a bad checksum): never counted as replies.
    Malformed = 4,
}

pub const COUNTER_SLOTS: u32 = 5;

/// The sequence number of a sweep's SYN to `target:target_port` from `local:local_port`: a
/// keyed SipHash-2-4 of the four, so a SYN-ACK or RST-ACK is ours exactly when its ack − 1
/// equals it, and no state per probe is needed on either side. IPv4 pairs hash their 4-byte
/// addresses (12 bytes in all), anything else the 16-byte ones (36 bytes).
#[inline(always)]
pub fn syn_cookie(
    key: [u64; 2],
    target: &IpAddress,
    target_port: u16,
    local: &IpAddress,
    local_port: u16,
) -> u32 {
    let [tp0, tp1] = target_port.to_be_bytes();
    let [lp0, lp1] = local_port.to_be_bytes();
    let ports = u64::from(u32::from_le_bytes([tp0, tp1, lp0, lp1]));
    let hash = match (target.ipv4(), local.ipv4()) {
        (Some([t0, t1, t2, t3]), Some([l0, l1, l2, l3])) => {
            siphash_2_4(key, &[t0, t1, t2, t3, l0, l1, l2, l3, tp0, tp1, lp0, lp1])
        }
        _ => {
            let ([t0, t1], [l0, l1]) = (target.le_words(), local.le_words());
            siphash_2_4_blocks(key, &[t0, t1, l0, l1], ports, 36)
        }
    };
    hash as u32
}

/// The cookie a TCP segment echoes if it is what a host answers a sweep's probes carrying
/// `probe_flags` with (see [`KIND_TCP`]); None for any other segment. The XDP program takes a
/// reply when this is the cookie of the reply's own (target, port, us, our port); userspace
/// reads the cookie of a matched reply from it.
#[inline(always)]
pub fn echoed_cookie(probe_flags: u8, flags: u8, seq: u32, ack: u32) -> Option<u32> {
    if probe_flags & TCP_ACK != 0 {
        // RFC 9293 3.10.7.1: the reset to a segment with ACK takes its ack as its sequence
        // number and acknowledges nothing.
        return (flags & (TCP_SYN | TCP_RST | TCP_ACK) == TCP_RST).then_some(seq);
    }
    let answer = if probe_flags & TCP_SYN != 0 {
        flags & TCP_ACK != 0 && flags & (TCP_SYN | TCP_RST) != 0
    } else {
        flags & (TCP_SYN | TCP_RST | TCP_ACK) == TCP_RST | TCP_ACK
    };
    // Otherwise it acknowledges our sequence number and the SYN and FIN it carried (no data).
    let consumed = u32::from(probe_flags & TCP_SYN != 0) + u32::from(probe_flags & TCP_FIN != 0);
    answer.then_some(ack.wrapping_sub(consumed))
}

/// Names the eBPF object defines, shared so neither side can misspell them.
pub const FILTER_MAP: &str = "FILTER";
pub const REPLIES_MAP: &str = "REPLIES";
pub const COUNTERS_MAP: &str = "COUNTERS";
pub const DEPARTURES_MAP: &str = "DEPARTURES";
pub const SWEEP_DEPARTURES_MAP: &str = "SWEEP_DEPARTURES";
pub const NEIGHBOURS_MAP: &str = "NEIGHBOURS";
pub const XDP_PROGRAM: &str = "prober";
pub const EGRESS_PROGRAM: &str = "prober_egress";
pub const INGRESS_PROGRAM: &str = "prober_ingress";
/// A `u8` global of the XDP program, set at load: 1 when it is attached in generic (skb) mode,
/// where a frame it sends back (XDP_TX) keeps the skb's checksum state.
pub const GENERIC_XDP_GLOBAL: &str = "PROBER_GENERIC_XDP";
/// A `u16` global of the TC egress program, set at load: the departure table's rows less one
/// (see [`sweep_departure_slot`]).
pub const SWEEP_EPOCHS_MASK_GLOBAL: &str = "PROBER_SWEEP_EPOCHS_MASK";

// SAFETY: repr(C), Copy, and free of implicit padding (bytemuck's derive checks that).
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProbeFilter {}
// SAFETY: as for ProbeFilter.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Neighbour {}
// SAFETY: as for ProbeFilter.
#[cfg(feature = "user")]
unsafe impl aya::Pod for IpAddress {}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(octets: [u8; 4]) -> IpAddress {
        IpAddress::from_ipv4(octets)
    }

    #[test]
    fn port_ranges_wrap_as_the_programs_take_them() {
        let filter = ProbeFilter {
            target_port: 65535,
            target_port_max_offset: 1,
            sport_base: 65534,
            sport_max_offset: 2,
            ..ProbeFilter::default()
        };
        assert!(filter.probes_port(65535) && filter.probes_port(0) && !filter.probes_port(1));
        assert!([65534, 65535, 0].map(|port| filter.is_our_port(port)) == [true; 3]);
        assert!(!filter.is_our_port(1) && !filter.is_our_port(65533));
    }

    #[test]
    fn one_flows_tcp_numbers_name_their_probe_in_the_high_half() {
        let mut filter = ProbeFilter {
            sport_base: 40000,
            ..ProbeFilter::default()
        };
        assert_eq!(filter.tcp_rest(0x0003_0001), 0x0003_0001);
        assert_eq!(filter.tcp_slot(40002, 0x0003_0001), 2, "the port's offset");
        filter.one_flow = 1;
        assert_eq!(filter.tcp_rest(0x0003_0001), 1);
        assert_eq!(filter.tcp_slot(40000, 0x0003_0001), 3, "the probe number");
        // Probe 65535's SYN-ACK wraps past 2^32.
        let wrapped = 0xffff_0000u32.wrapping_add(1);
        assert_eq!(
            (filter.tcp_slot(40000, wrapped), filter.tcp_rest(wrapped)),
            (0xffff, 1)
        );
    }

    #[test]
    fn one_flows_echoes_keep_the_sum_of_identifier_and_sequence() {
        let mut filter = ProbeFilter {
            icmp_id: 0x1234,
            ..ProbeFilter::default()
        };
        assert!(filter.is_our_echo(0x1234, 9) && !filter.is_our_echo(0x1233, 1));
        filter.one_flow = 1;
        assert!(filter.is_our_echo(0x1234, 0) && filter.is_our_echo(0x1233, 1));
        assert!(
            !filter.is_our_echo(0x1234, 1),
            "the identifier must go down"
        );
        // The end-around carry: 0x0001 + 0xffff is 0x0001.
        assert_eq!(ones_complement_sum(0x0001, 0xffff), 0x0001);
        assert_eq!(ones_complement_sum(0xfffe, 0x0001), 0xffff);
    }

    #[test]
    fn cookies_depend_on_every_endpoint_and_the_key() {
        let key = [1, 2];
        let (target, local) = (v4([198, 18, 4, 2]), v4([198, 18, 4, 1]));
        let base = syn_cookie(key, &target, 80, &local, 61440);
        let others = [
            syn_cookie(key, &v4([198, 18, 4, 3]), 80, &local, 61440),
            syn_cookie(key, &target, 81, &local, 61440),
            syn_cookie(key, &target, 80, &v4([198, 18, 4, 5]), 61440),
            syn_cookie(key, &target, 80, &local, 61441),
            syn_cookie([1, 3], &target, 80, &local, 61440),
        ];
        for other in others {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn ipv4_cookies_hash_the_four_byte_addresses() {
        // The same 12-byte message as before addresses grew to 16 bytes: IPv4 cookies, and so
        // sweeps' speed, are unchanged.
        let key = [7, 9];
        let message = [198, 18, 4, 2, 198, 18, 4, 1, 0, 80, 0xf0, 0x00];
        assert_eq!(
            syn_cookie(key, &v4([198, 18, 4, 2]), 80, &v4([198, 18, 4, 1]), 61440),
            siphash_2_4(key, &message) as u32
        );
    }

    #[test]
    fn ipv6_cookies_hash_the_sixteen_byte_addresses() {
        let key = [7, 9];
        let target = IpAddress([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let local = IpAddress([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let mut message = [0u8; 36];
        message[..16].copy_from_slice(&target.0);
        message[16..32].copy_from_slice(&local.0);
        message[32..].copy_from_slice(&[0, 80, 0xf0, 0x00]);
        let cookie = syn_cookie(key, &target, 80, &local, 61440);
        assert_eq!(cookie, siphash_2_4(key, &message) as u32);
        assert_ne!(cookie, syn_cookie(key, &local, 80, &target, 61440));
    }

    #[test]
    fn each_sweep_kind_takes_the_answers_a_host_gives_it_and_reads_their_cookie() {
        const FIN: u8 = TCP_FIN;
        const SYN: u8 = TCP_SYN;
        const RST: u8 = TCP_RST;
        const ACK: u8 = TCP_ACK;
        const PSH_URG: u8 = 0x08 | 0x20;
        let (seq, ack) = (0x1111_1111, 0x2222_2222);
        for (probe, reply, cookie) in [
            // SYN: SYN-ACK or RST-ACK acknowledging the cookie + 1.
            (SYN, SYN | ACK, Some(ack - 1)),
            (SYN, RST | ACK, Some(ack - 1)),
            (SYN, RST, None),
            (SYN, ACK, None),
            // ACK: a bare RST whose sequence number is the cookie.
            (ACK, RST, Some(seq)),
            (ACK | FIN | PSH_URG, RST, Some(seq)),
            (ACK, RST | ACK, None),
            (ACK, SYN | ACK, None),
            // FIN, Xmas, NULL: a RST-ACK acknowledging the cookie + the FIN.
            (FIN, RST | ACK, Some(ack - 1)),
            (FIN | PSH_URG, RST | ACK, Some(ack - 1)),
            (PSH_URG, RST | ACK, Some(ack)),
            (FIN, SYN | ACK, None),
            (FIN, RST, None),
            (FIN, ACK, None),
        ] {
            assert_eq!(
                echoed_cookie(probe, reply, seq, ack),
                cookie,
                "probe {probe:#x}, reply {reply:#x}"
            );
        }
    }

    #[test]
    fn shared_types_have_the_layout_both_sides_expect() {
        assert_eq!(core::mem::size_of::<ProbeFilter>(), 88);
        assert_eq!(core::mem::size_of::<Neighbour>(), 24);
        assert_eq!(core::mem::size_of::<NeighbourRecord>(), 40);
        assert_eq!(core::mem::size_of::<ReplyRecord>(), 104);
        assert_eq!(core::mem::size_of::<Departure>(), 32);
        assert_eq!(core::mem::size_of::<SweepDeparture>(), 16);
    }

    #[test]
    fn departure_slots_are_distinct_over_a_table_of_probes() {
        // Probe q of a sender leaves from port offset q mod P in epoch q / P (P its ports).
        for (ports, mask) in [(4096u16, 0u16), (2048, 7), (1365, 3)] {
            let table = u32::from(SWEEP_SOURCE_PORTS) * (u32::from(mask) + 1);
            let slot = |q: u32| {
                sweep_departure_slot(
                    (q % u32::from(ports)) as u16,
                    (q / u32::from(ports)) as u16,
                    mask,
                )
            };
            let window = u32::from(ports) * (u32::from(mask) + 1);
            let mut seen = [false; 4096 * 8];
            for q in 1000..1000 + window {
                let slot = slot(q);
                assert!(slot < table, "slot {slot} beyond the table");
                assert!(
                    !seen[slot as usize],
                    "{ports} ports, mask {mask}: slot {slot} twice"
                );
                seen[slot as usize] = true;
            }
            assert_eq!(slot(1000), slot(1000 + window), "reused one window later");
        }
    }

    #[test]
    fn a_departure_is_its_probes_only_when_read_whole() {
        let departure = SweepDeparture::new(0x1234_5678_9abc, 77);
        let (sent, tag) = (departure.sent_ns, departure.tag);
        assert_eq!(
            SweepDeparture::sent_ns_of(sent, tag, 77),
            Some(0x1234_5678_9abc)
        );
        assert_eq!(
            SweepDeparture::sent_ns_of(sent, tag, 78),
            None,
            "another probe's"
        );
        let next = SweepDeparture::new(0x1234_5679_0000, 99);
        assert_eq!(
            SweepDeparture::sent_ns_of(next.sent_ns, tag, 77),
            None,
            "torn: new time, old tag"
        );
        assert_eq!(
            SweepDeparture::sent_ns_of(sent, next.tag, 99),
            None,
            "torn: old time, new tag"
        );
        assert_eq!(SweepDeparture::sent_ns_of(0, 0, 0), None, "never written");
    }
}
