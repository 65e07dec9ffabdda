//! Reading frames as the kernel's receive path would judge them, in one place that the XDP
//! program and the host's tests and fuzzers compile alike: a reply prober counts must be one
//! the kernel would have accepted (`ip_rcv_core`, `tcp_v4_rcv`, `icmp_rcv`), or a forged packet
//! the host drops could decide a result.
//!
//! [`parse`] does the cheap structural checks every packet gets (the ones that make the header
//! fields safe to use); [`accepted`] the costlier ones — MAC, checksums — that only a packet a
//! kind has picked out as a candidate reply gets.
use crate::{trace::Reason, IpAddress};

/// Bytes of a frame, from its Ethernet header on: packet memory in the programs, a slice on
/// the host.
pub trait Frame {
    /// Whether the frame is at least `len` bytes long.
    fn holds(&self, len: usize) -> bool;
    /// A copy of the `N` bytes at `offset`, or None when the frame is shorter.
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
    /// [`sum_words`] over this frame (the programs call it as a function of its own, which the
    /// verifier checks once rather than for every way a packet can reach it).
    fn sum(&self, offset: usize, len: usize, seed: u32) -> Option<u32> {
        sum_words(self, offset, len, seed)
    }
}

impl Frame for [u8] {
    fn holds(&self, len: usize) -> bool {
        len <= self.len()
    }

    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.get(offset..offset.checked_add(N)?)?.try_into().ok()
    }
}

pub const ETH_HEADER_LEN: usize = 14;
const ETHER_TYPE_OFFSET: usize = 12;
const ETH_P_IP: u16 = 0x0800;
const IPV4_HEADER_LEN: usize = 20;
const IP_MORE_FRAGMENTS_AND_OFFSET: u16 = 0x3fff;
pub const TCP_HEADER_LEN: usize = 20;
pub const ICMP_ECHO_LEN: usize = 8;
/// The longest transport message whose checksum is verified: a full 1500-byte IPv4 packet's.
/// Replies (SYN-ACKs, RSTs, echo replies to our small requests) are far shorter; a longer
/// one is passed to the host's stack unmatched, and counted.
pub const MAX_CHECKED_L4_LEN: usize = 1480;

/// An IP packet's header fields, whatever its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub src: IpAddress,
    pub dst: IpAddress,
    /// The transport protocol (IPv4's protocol field).
    pub protocol: u8,
    /// Where the IP header starts and the transport header starts, from the start of the frame.
    pub l3_offset: usize,
    pub l4_offset: usize,
    /// The transport message's length, as the IP header states it (what follows is trailer).
    pub l4_len: usize,
    /// The whole IP packet's length as its header states it.
    pub len: u16,
    /// IPv4's TTL.
    pub ttl: u8,
    /// IPv4's TOS byte.
    pub tos: u8,
    /// IPv4's identification, flags and fragment offset.
    pub id: u16,
    pub frag: u16,
    /// The frame's destination MAC address.
    pub to_mac: [u8; 6],
    /// The unfolded sum of the fixed IPv4 header's words, from the read that parsed it: the
    /// header checksum's check needs only the options' words more.
    pub header_sum: u32,
}

impl IpPacket {
    /// The IPv4 header carries no options (a rewritten packet can reuse it as it is).
    #[inline(always)]
    pub fn plain_header(&self) -> bool {
        self.l4_offset == self.l3_offset + IPV4_HEADER_LEN
    }
}

/// What [`parse`] makes of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    Ip(IpPacket),
    /// Not IP, or a fragment (whose payload is no transport header; no reply or probe is
    /// fragmented): nothing for prober.
    Other,
    /// An IPv4 frame whose header the kernel would drop, with its destination when the fixed
    /// header was there to read (who it was aimed at decides whether prober counts it).
    Malformed(Option<IpAddress>),
}

/// The IP header of an Ethernet frame, checked for what `ip_rcv_core` drops: another version,
/// a header shorter than 20 bytes, a total length shorter than the header or longer than the
/// frame. The header checksum is left to [`accepted`].
#[inline(always)]
pub fn parse(frame: &(impl Frame + ?Sized)) -> Parsed {
    let Some(ethernet) = frame.read::<ETH_HEADER_LEN>(0) else {
        return Parsed::Other;
    };
    let ether_type = [ethernet[ETHER_TYPE_OFFSET], ethernet[ETHER_TYPE_OFFSET + 1]];
    if u16::from_be_bytes(ether_type) != ETH_P_IP {
        return Parsed::Other;
    }
    // The whole fixed header in one read: a second bounds check implied by an earlier one is
    // one the compiler drops and the verifier then misses.
    let Some(ip) = frame.read::<IPV4_HEADER_LEN>(ETH_HEADER_LEN) else {
        return Parsed::Malformed(None);
    };
    let dst = IpAddress::from_ipv4([ip[16], ip[17], ip[18], ip[19]]);
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let len = u16::from_be_bytes([ip[2], ip[3]]);
    if ip[0] >> 4 != 4
        || header_len < IPV4_HEADER_LEN
        || usize::from(len) < header_len
        || !frame.holds(ETH_HEADER_LEN + usize::from(len))
    {
        return Parsed::Malformed(Some(dst));
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & IP_MORE_FRAGMENTS_AND_OFFSET != 0 {
        return Parsed::Other;
    }
    Parsed::Ip(IpPacket {
        src: IpAddress::from_ipv4([ip[12], ip[13], ip[14], ip[15]]),
        dst,
        protocol: ip[9],
        l3_offset: ETH_HEADER_LEN,
        l4_offset: ETH_HEADER_LEN + header_len,
        l4_len: usize::from(len) - header_len,
        len,
        ttl: ip[8],
        tos: ip[1],
        id: u16::from_be_bytes([ip[4], ip[5]]),
        frag,
        to_mac: [
            ethernet[0],
            ethernet[1],
            ethernet[2],
            ethernet[3],
            ethernet[4],
            ethernet[5],
        ],
        header_sum: word_sum(&ip),
    })
}

/// The fields of a TCP header, read in one piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub source: u16,
    pub dest: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub checksum: u16,
    pub urgent: u16,
}

/// The TCP header of `ip`, if the packet holds one whose data offset `tcp_v4_rcv` would take:
/// at least 5 words, and no more than the segment the IP header states.
#[inline(always)]
pub fn segment(frame: &(impl Frame + ?Sized), ip: &IpPacket) -> Option<Segment> {
    if ip.l4_len < TCP_HEADER_LEN {
        return None;
    }
    let header = frame.read::<TCP_HEADER_LEN>(ip.l4_offset)?;
    let data_offset = usize::from(header[12] >> 4) * 4;
    if data_offset < TCP_HEADER_LEN || data_offset > ip.l4_len {
        return None;
    }
    let word = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let long = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    Some(Segment {
        source: word(0),
        dest: word(2),
        seq: long(4),
        ack: long(8),
        flags: header[13],
        window: word(14),
        checksum: word(16),
        urgent: word(18),
    })
}

/// An ICMP echo message's type, identifier and sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    pub kind: u8,
    pub id: u16,
    pub seq: u16,
    pub checksum: u16,
}

#[inline(always)]
pub fn echo(frame: &(impl Frame + ?Sized), ip: &IpPacket) -> Option<Echo> {
    if ip.l4_len < ICMP_ECHO_LEN {
        return None;
    }
    let icmp = frame.read::<ICMP_ECHO_LEN>(ip.l4_offset)?;
    Some(Echo {
        kind: icmp[0],
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        checksum: u16::from_be_bytes([icmp[2], icmp[3]]),
    })
}

/// How a transport message is checksummed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// Over the message alone (ICMP).
    Message,
    /// Over a pseudo-header too (TCP); `field` is the checksum field as received.
    WithPseudoHeader { field: u16 },
}

/// Whether a frame a kind has picked out as a candidate reply is one the host would accept:
/// sent to our MAC (`tcp_v4_rcv` drops what is not PACKET_HOST, so a broadcast or another
/// host's frame never counts), with a valid IPv4 header checksum and a valid transport
/// checksum. Err: why not.
///
/// One exception, because XDP cannot see the skb's checksum state: a TCP checksum field that
/// holds just the pseudo-header's sum is taken too. That is CHECKSUM_PARTIAL — a segment from
/// a sender on this host (a veth peer, `lo`, a VM's host) whose checksum was left to offload,
/// which the kernel accepts unverified. It lets in nothing a forger could not send anyway
/// with a correct checksum; a corrupted segment has it by chance once in 65 536.
#[inline(always)]
pub fn accepted(
    frame: &(impl Frame + ?Sized),
    ip: &IpPacket,
    our_mac: [u8; 6],
    checksum: Checksum,
) -> Result<(), Reason> {
    if ip.to_mac != our_mac {
        return Err(Reason::NotToOurMac);
    }
    if ip.l4_len > MAX_CHECKED_L4_LEN {
        return Err(Reason::TooLongToVerify);
    }
    // The fixed header was summed as it was parsed; the options, if any, follow it.
    let options_len = ip.l4_offset - ip.l3_offset - IPV4_HEADER_LEN;
    let header_sum = match options_len {
        0 => Some(ip.header_sum),
        _ => frame.sum(ip.l3_offset + IPV4_HEADER_LEN, options_len, ip.header_sum),
    };
    if header_sum.map(fold) != Some(0) {
        return Err(Reason::BadChecksum);
    }
    let pseudo_header = match (checksum, ip.src.ipv4(), ip.dst.ipv4()) {
        (Checksum::Message, ..) => 0,
        (Checksum::WithPseudoHeader { .. }, Some(src), Some(dst)) => {
            word_sum(&src) + word_sum(&dst) + u32::from(ip.protocol) + ip.l4_len as u32
        }
        _ => return Err(Reason::BadChecksum),
    };
    if frame.sum(ip.l4_offset, ip.l4_len, pseudo_header).map(fold) == Some(0) {
        return Ok(());
    }
    match checksum {
        Checksum::WithPseudoHeader { field } if field == !fold(pseudo_header) => Ok(()),
        _ => Err(Reason::BadChecksum),
    }
}

/// The 16-bit one's-complement sum (not yet folded) of `len` bytes at `offset` plus `seed`,
/// an odd last byte padded with zero (RFC 1071); None if the frame is shorter. `len` must be
/// at most [`MAX_CHECKED_L4_LEN`]. Eight bytes a round: each round of a loop over packet
/// memory leaves the verifier a branch to explore, so fewer rounds verify (and run) faster.
#[inline(always)]
pub fn sum_words(
    frame: &(impl Frame + ?Sized),
    offset: usize,
    len: usize,
    seed: u32,
) -> Option<u32> {
    let mut sum = seed;
    let mut at = offset;
    let end = offset + len;
    for _ in 0..MAX_CHECKED_L4_LEN / 8 {
        if at + 8 > end {
            break;
        }
        sum += word_sum(&frame.read::<8>(at)?);
        at += 8;
    }
    for _ in 0..3 {
        if at + 2 > end {
            break;
        }
        sum += word_sum(&frame.read::<2>(at)?);
        at += 2;
    }
    if at < end {
        let [last] = frame.read::<1>(at)?;
        sum += u32::from(last) << 8;
    }
    Some(sum)
}

/// The sum of a short byte string's 16-bit words (`N` even).
#[inline(always)]
fn word_sum<const N: usize>(bytes: &[u8; N]) -> u32 {
    let mut sum = 0;
    let mut at = 0;
    while at + 1 < N {
        sum += u32::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        at += 2;
    }
    sum
}

/// Folds a sum of 16-bit words into the checksum field's value: 0 for a message whose own
/// checksum is right.
#[inline(always)]
pub fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The sum of 16-bit words, not yet folded (for checksums the XDP program writes).
#[inline(always)]
pub fn sum_of(words: &[u16]) -> u32 {
    let mut sum = 0;
    for &word in words {
        sum += u32::from(word);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    /// A SYN-ACK from 198.18.4.2:80 to 198.18.4.1:61440 with correct checksums, in an Ethernet
    /// frame to OUR_MAC, padded to the 60-byte Ethernet minimum as drivers deliver it.
    fn syn_ack() -> [u8; 60] {
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&OUR_MAC);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut frame[14..34];
        ip.copy_from_slice(&[
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 4, 2, 198, 18, 4, 1,
        ]);
        let tcp = &mut frame[34..54];
        tcp.copy_from_slice(&[
            0, 80, 0xf0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        fix_checksums(&mut frame);
        frame
    }

    fn fix_checksums(frame: &mut [u8]) {
        let Parsed::Ip(ip) = parse(&frame[..]) else {
            panic!("not a packet")
        };
        frame[24..26].fill(0);
        let sum = fold(sum_words(&frame[..], 14, ip.l4_offset - 14, 0).unwrap());
        frame[24..26].copy_from_slice(&sum.to_be_bytes());
        let at = ip.l4_offset + 16;
        frame[at..at + 2].fill(0);
        let seed = word_sum(&ip.src.ipv4().unwrap())
            + word_sum(&ip.dst.ipv4().unwrap())
            + 6
            + ip.l4_len as u32;
        let sum = fold(sum_words(&frame[..], ip.l4_offset, ip.l4_len, seed).unwrap());
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }

    fn judge(frame: &[u8]) -> Result<Segment, Option<Reason>> {
        let Parsed::Ip(ip) = parse(frame) else {
            return Err(None);
        };
        let segment = segment(frame, &ip).ok_or(None)?;
        let checksum = Checksum::WithPseudoHeader {
            field: segment.checksum,
        };
        accepted(frame, &ip, OUR_MAC, checksum).map_err(Some)?;
        Ok(segment)
    }

    #[test]
    fn a_valid_reply_is_accepted() {
        let segment = judge(&syn_ack()).unwrap();
        assert_eq!(
            (segment.source, segment.dest, segment.flags),
            (80, 61440, 0x12)
        );
    }

    #[test]
    fn headers_the_kernel_drops_are_malformed() {
        let mut version_6 = syn_ack();
        version_6[14] = 0x65;
        let mut short_header = syn_ack();
        short_header[14] = 0x44;
        let mut total_beyond_frame = syn_ack();
        total_beyond_frame[16..18].copy_from_slice(&61u16.to_be_bytes());
        for frame in [version_6, short_header, total_beyond_frame] {
            let ours = IpAddress::from_ipv4([198, 18, 4, 1]);
            assert_eq!(parse(&frame[..]), Parsed::Malformed(Some(ours)));
        }
    }

    #[test]
    fn tcp_headers_tcp_would_drop_give_no_segment() {
        for data_offset in [2u8, 15] {
            let mut frame = syn_ack();
            frame[46] = data_offset << 4;
            fix_checksums(&mut frame);
            assert_eq!(judge(&frame), Err(None), "data offset {data_offset}");
        }
        // The TCP header in the Ethernet trailer: the IP header says 20 bytes in all.
        let mut in_trailer = syn_ack();
        in_trailer[16..18].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(judge(&in_trailer), Err(None));
    }

    #[test]
    fn bad_checksums_and_other_macs_are_refused() {
        let mut ip_sum = syn_ack();
        ip_sum[25] ^= 1;
        let mut tcp_sum = syn_ack();
        tcp_sum[51] ^= 1;
        for frame in [ip_sum, tcp_sum] {
            assert_eq!(judge(&frame), Err(Some(Reason::BadChecksum)));
        }
        let mut broadcast = syn_ack();
        broadcast[..6].fill(0xff);
        assert_eq!(judge(&broadcast), Err(Some(Reason::NotToOurMac)));
    }

    #[test]
    fn a_checksum_left_to_offload_is_taken_as_the_kernel_takes_it() {
        // CHECKSUM_PARTIAL: the field holds the pseudo-header's sum, the rest is not summed.
        let mut partial = syn_ack();
        let pseudo = word_sum(&[198, 18, 4, 2]) + word_sum(&[198, 18, 4, 1]) + 6 + 20;
        partial[50..52].copy_from_slice(&(!fold(pseudo)).to_be_bytes());
        assert!(judge(&partial).is_ok());
        partial[50] ^= 0x10;
        assert_eq!(judge(&partial), Err(Some(Reason::BadChecksum)));
    }

    #[test]
    fn the_ip_options_are_summed() {
        let mut frame = [0u8; 64];
        let reply = syn_ack();
        frame[..14].copy_from_slice(&reply[..14]);
        frame[14] = 0x46; // one word of options: a NOP, a NOP, a NOP, an end of list
        frame[15..34].copy_from_slice(&reply[15..34]);
        frame[16..18].copy_from_slice(&44u16.to_be_bytes());
        frame[34..38].copy_from_slice(&[1, 1, 1, 0]);
        frame[38..58].copy_from_slice(&reply[34..54]);
        fix_checksums(&mut frame);
        assert!(judge(&frame).is_ok());
        frame[37] = 7;
        assert_eq!(judge(&frame), Err(Some(Reason::BadChecksum)));
    }

    #[test]
    fn the_trailer_is_not_summed() {
        // Ethernet padding after the IP packet is not part of the segment: a valid reply with
        // junk in its trailer still checks out.
        let mut frame = syn_ack();
        frame[54..].fill(0xa5);
        assert!(judge(&frame).is_ok());
    }

    #[test]
    fn odd_lengths_pad_the_last_byte() {
        let bytes = [0x12u8, 0x34, 0x56];
        assert_eq!(sum_words(&bytes[..], 0, 3, 0), Some(0x1234 + 0x5600));
        assert_eq!(sum_words(&bytes[..], 0, 4, 0), None);
    }
}
