//! Types shared by the XDP program and userspace. Everything is `#[repr(C)]` with explicit
//! padding so both sides agree on the layout byte for byte.
#![no_std]

/// What userspace tells the XDP program about the probes it sends, so that only replies to
/// them are recorded. Addresses are kept exactly as on the wire (network byte order);
/// ports, sequence numbers and identifiers are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ProbeFilter {
    /// The probed host: replies must come from it.
    pub target_addr: [u8; 4],
    /// Our address: replies must be sent to it.
    pub local_addr: [u8; 4],
    /// Sequence number carried by every TCP probe; a reply with ACK acknowledges it.
    pub tcp_seq: u32,
    /// Acknowledgement number carried by TCP probes; a RST without ACK echoes it as its seq.
    pub tcp_ack: u32,
    /// The probed TCP port: replies come from it.
    pub target_port: u16,
    /// Our source ports are `sport_base ..= sport_base + sport_max_offset` (wrapping).
    pub sport_base: u16,
    pub sport_max_offset: u16,
    /// ICMP echo identifier of our probes.
    pub icmp_id: u16,
    /// IP protocol of the probes: [`IPPROTO_TCP`] or [`IPPROTO_ICMP`].
    pub protocol: u8,
    pub _pad: [u8; 7],
}

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;

/// One reply the XDP program matched, with the header fields hping3 prints.
/// Addresses are as on the wire; every other field is in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ReplyRecord {
    /// `bpf_ktime_get_ns()` when the reply reached XDP (CLOCK_MONOTONIC).
    pub kernel_ns: u64,
    pub src_addr: [u8; 4],
    pub dst_addr: [u8; 4],
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub ip_len: u16,
    pub ip_id: u16,
    /// Flags and fragment offset, as the IP header has them.
    pub ip_frag: u16,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_window: u16,
    /// The TCP or ICMP checksum as received.
    pub l4_checksum: u16,
    pub tcp_urgent: u16,
    pub icmp_id: u16,
    pub icmp_seq: u16,
    pub ttl: u8,
    pub tos: u8,
    pub protocol: u8,
    pub tcp_flags: u8,
}

/// Slots of the per-CPU counter array the XDP program keeps.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Replies matched and handed to userspace.
    Matched = 0,
    /// Replies matched but lost because the ring buffer was full.
    RingFull = 1,
    /// Replies from the probed port to our ports (or echo replies) that answer none of our
    /// probes: forged, stale, or from another run.
    Unmatched = 2,
}

pub const COUNTER_SLOTS: u32 = 3;

/// Map names, shared so neither side can misspell them.
pub const FILTER_MAP: &str = "FILTER";
pub const REPLIES_MAP: &str = "REPLIES";
pub const COUNTERS_MAP: &str = "COUNTERS";
pub const XDP_PROGRAM: &str = "prober";

// SAFETY: repr(C), Copy, and free of implicit padding (bytemuck's derive checks that).
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProbeFilter {}
