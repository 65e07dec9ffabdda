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
    /// [`MODE_SINGLE`] or [`MODE_SWEEP`].
    pub mode: u8,
    pub _pad: [u8; 6],
    /// Sweep mode: the SipHash key of the SYN cookies (see [`syn_cookie`]).
    pub cookie_key: [u64; 2],
}

/// One target, one port: replies are matched against the filter's fixed target, port and
/// sequence numbers, and passed on to the host's stack untouched.
pub const MODE_SINGLE: u8 = 0;
/// Many targets and ports: a reply is ours when it acknowledges the SYN cookie of its own
/// (target, port, source port); ours are dropped after recording, SYN-ACKs bounced as RSTs.
pub const MODE_SWEEP: u8 = 1;

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
    /// `bpf_ktime_get_ns()` when the probe it answers left through TC egress; 0 when that
    /// departure was not seen (egress program not attached, PACKET_QDISC_BYPASS).
    pub sent_ns: u64,
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

/// A probe leaving the interface, as the TC egress program saw it. Probes are filed by slot:
/// the source port's offset from the filter's `sport_base` for TCP, the echo sequence number
/// for ICMP, so that a reply finds its probe's departure without any search.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Departure {
    /// `bpf_ktime_get_ns()` at TC egress (CLOCK_MONOTONIC).
    pub kernel_ns: u64,
    /// Where the probe went: a reply must come from there to be timed against it.
    pub target_addr: [u8; 4],
    /// The probed TCP port (0 for ICMP).
    pub target_port: u16,
    pub _pad: u16,
}

/// One departure slot per possible 16-bit slot number.
pub const DEPARTURE_SLOTS: u32 = 1 << 16;

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
    /// Sweep mode: SYN-ACKs turned into RSTs and sent back to the target (XDP_TX).
    Bounced = 3,
}

pub const COUNTER_SLOTS: u32 = 4;

/// The sequence number of a sweep's SYN to `target:target_port` from `local:local_port`:
/// a keyed SipHash-2-4 of the four, so a SYN-ACK or RST-ACK is ours exactly when its
/// ack − 1 equals it, and no state per probe is needed on either side.
#[inline(always)]
pub fn syn_cookie(
    key: [u64; 2],
    target: [u8; 4],
    target_port: u16,
    local: [u8; 4],
    local_port: u16,
) -> u32 {
    let [t0, t1, t2, t3] = target;
    let [l0, l1, l2, l3] = local;
    let [tp0, tp1] = target_port.to_be_bytes();
    let [lp0, lp1] = local_port.to_be_bytes();
    siphash_2_4(key, &[t0, t1, t2, t3, l0, l1, l2, l3, tp0, tp1, lp0, lp1]) as u32
}

/// SipHash-2-4 of a 12-byte message, unrolled so the eBPF verifier sees straight-line code.
#[inline(always)]
pub fn siphash_2_4(key: [u64; 2], message: &[u8; 12]) -> u64 {
    let [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11] = *message;
    let first = u64::from_le_bytes([m0, m1, m2, m3, m4, m5, m6, m7]);
    // The last block holds the remaining bytes and the message length in its top byte.
    let last = u64::from_le_bytes([m8, m9, m10, m11, 0, 0, 0, 12]);
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    for block in [first, last] {
        v[3] ^= block;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= block;
    }
    v[2] ^= 0xff;
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// Map names, shared so neither side can misspell them.
pub const FILTER_MAP: &str = "FILTER";
pub const REPLIES_MAP: &str = "REPLIES";
pub const COUNTERS_MAP: &str = "COUNTERS";
pub const DEPARTURES_MAP: &str = "DEPARTURES";
pub const XDP_PROGRAM: &str = "prober";
pub const EGRESS_PROGRAM: &str = "prober_egress";

// SAFETY: repr(C), Copy, and free of implicit padding (bytemuck's derive checks that).
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProbeFilter {}

#[cfg(test)]
mod tests {
    use core::hash::Hasher as _;

    use super::*;

    #[test]
    fn siphash_matches_the_reference_implementation() {
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        for seed in 0u8..=255 {
            let message: [u8; 12] =
                core::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8));
            let mut reference = siphasher::sip::SipHasher24::new_with_keys(key[0], key[1]);
            reference.write(&message);
            assert_eq!(
                siphash_2_4(key, &message),
                reference.finish(),
                "message {message:?}"
            );
        }
    }

    #[test]
    fn cookies_depend_on_every_endpoint_and_the_key() {
        let key = [1, 2];
        let base = syn_cookie(key, [198, 18, 4, 2], 80, [198, 18, 4, 1], 61440);
        assert_ne!(
            base,
            syn_cookie(key, [198, 18, 4, 3], 80, [198, 18, 4, 1], 61440)
        );
        assert_ne!(
            base,
            syn_cookie(key, [198, 18, 4, 2], 81, [198, 18, 4, 1], 61440)
        );
        assert_ne!(
            base,
            syn_cookie(key, [198, 18, 4, 2], 80, [198, 18, 4, 5], 61440)
        );
        assert_ne!(
            base,
            syn_cookie(key, [198, 18, 4, 2], 80, [198, 18, 4, 1], 61441)
        );
        assert_ne!(
            base,
            syn_cookie([1, 3], [198, 18, 4, 2], 80, [198, 18, 4, 1], 61440)
        );
    }
}
