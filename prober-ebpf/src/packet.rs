//! The only access to packet memory. Headers are copied out with the kernel's helpers,
//! `bpf_xdp_load_bytes` and `bpf_skb_load_bytes` (TC sees AF_PACKET TX-ring frames before they
//! are linearised). The one rewrite in place, the XDP program's bounced RST, goes through a
//! reference bounds-checked here, at a constant offset.
//!
//! Why copies: a packet pointer moved by a variable offset (where the transport header starts)
//! passes the verifier only with CAP_PERFMON, which lifts its Spectre v1 hardening, and so does
//! the packet's length taken as `data_end - data`. The helpers need neither, so CAP_BPF,
//! CAP_NET_ADMIN and CAP_NET_RAW are enough to load the programs.
//!
//! Invariant the reference relies on: each program holds the one `XdpContext` the kernel gave
//! it and never makes another from its raw pointer, so borrowing that context is borrowing the
//! packet.
use core::mem::{size_of, MaybeUninit};

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_tail, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use network_types::{icmp::Icmpv4Hdr, ip::Ipv4Hdr};

/// A header that may be laid over packet bytes.
///
/// # Safety
/// Implementors have alignment 1 and accept every bit pattern (byte arrays and `u8`s only), so
/// a reference to one may point anywhere into a packet.
pub unsafe trait Header: Copy {}

// SAFETY: bytes: alignment 1, any value valid.
unsafe impl<const N: usize> Header for [u8; N] {}
// SAFETY: u8 and [u8; N] fields only, repr(C).
unsafe impl Header for Ipv4Hdr {}
// SAFETY: u8 and [u8; N] fields only, repr(C).
unsafe impl Header for Icmpv4Hdr {}

/// Packets both programs can read headers from.
pub trait Packet {
    /// A copy of the `T` at `offset`, or None when the packet is shorter.
    fn read<T: Header>(&self, offset: usize) -> Option<T>;
}

impl Packet for XdpContext {
    #[inline(always)]
    fn read<T: Header>(&self, offset: usize) -> Option<T> {
        let mut value = MaybeUninit::<T>::uninit();
        // SAFETY: the helper writes `size_of::<T>()` bytes into `value` or fails; `T` accepts
        // every bit pattern (`Header`), so those bytes are a valid `T`.
        unsafe {
            let copied = bpf_xdp_load_bytes(
                self.ctx,
                u32::try_from(offset).ok()?,
                value.as_mut_ptr().cast(),
                size_of::<T>() as u32,
            );
            (copied == 0).then(|| value.assume_init())
        }
    }
}

impl Packet for TcContext {
    #[inline(always)]
    fn read<T: Header>(&self, offset: usize) -> Option<T> {
        self.load(offset).ok()
    }
}

/// The `T` at `offset` into the XDP packet, to rewrite in place. `offset` must be a constant
/// (see the module's doc).
#[inline(always)]
pub fn header_mut<T: Header>(ctx: &mut XdpContext, offset: usize) -> Option<&mut T> {
    const { assert!(core::mem::align_of::<T>() == 1) };
    let start = ctx.data() + offset;
    if start + size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: the kernel's packet pointer is never null. Told so, the compiler does not test
    // the reference against null (None's niche): comparing a packet pointer with a number is
    // another thing the verifier allows only with CAP_PERFMON.
    unsafe { core::hint::assert_unchecked(start != 0) };
    // SAFETY: `start .. start + size_of::<T>()` lies inside the packet, which stays valid and
    // unmoved while the exclusive borrow of `ctx` lasts (only `&mut XdpContext` can resize
    // it), and makes this the only reference into the packet while it lives; `T` has
    // alignment 1 and no invalid bit patterns (`Header`).
    Some(unsafe { &mut *(start as *mut T) })
}

/// Cuts the XDP packet to its first `len` bytes; None if the kernel refuses.
#[inline(always)]
pub fn truncate(ctx: &mut XdpContext, len: usize) -> Option<()> {
    // SAFETY: `ctx.ctx` is the program's own xdp_md.
    let packet_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    let surplus = packet_len.checked_sub(len)?;
    if surplus == 0 {
        return Some(());
    }
    // SAFETY: `ctx.ctx` is the program's own xdp_md; the exclusive borrow of `ctx` means no
    // reference into the packet is alive while its end moves.
    match unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(surplus as i32)) } {
        0 => Some(()),
        _ => None,
    }
}
