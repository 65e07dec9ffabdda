//! The only access to packet memory. XDP packets are read in place through references that
//! are bounds-checked here, as the verifier demands; TC packets are copied out with
//! `bpf_skb_load_bytes`, since TC sees AF_PACKET TX-ring frames before they are linearised.
//!
//! Invariant the references rely on: each program holds the one `XdpContext` the kernel gave
//! it and never makes another from its raw pointer, so borrowing that context is borrowing the
//! packet.
use core::mem::size_of;

use aya_ebpf::{
    helpers::bpf_xdp_adjust_tail,
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
        header(self, offset).copied()
    }
}

impl Packet for TcContext {
    #[inline(always)]
    fn read<T: Header>(&self, offset: usize) -> Option<T> {
        self.load(offset).ok()
    }
}

/// The `T` at `offset` into the XDP packet.
#[inline(always)]
pub fn header<T: Header>(ctx: &XdpContext, offset: usize) -> Option<&T> {
    let start = checked_start::<T>(ctx, offset)?;
    // SAFETY: `start .. start + size_of::<T>()` lies inside the packet, which stays valid and
    // unmoved while the borrow of `ctx` lasts (only `&mut XdpContext` can resize it); `T` has
    // alignment 1 and no invalid bit patterns (`Header`).
    Some(unsafe { &*(start as *const T) })
}

/// The `T` at `offset` into the XDP packet, to rewrite in place.
#[inline(always)]
pub fn header_mut<T: Header>(ctx: &mut XdpContext, offset: usize) -> Option<&mut T> {
    let start = checked_start::<T>(ctx, offset)?;
    // SAFETY: as in `header`; the exclusive borrow of `ctx` makes this the only reference into
    // the packet while it lives.
    Some(unsafe { &mut *(start as *mut T) })
}

/// Cuts the XDP packet to its first `len` bytes; None if the kernel refuses.
#[inline(always)]
pub fn truncate(ctx: &mut XdpContext, len: usize) -> Option<()> {
    let surplus = (ctx.data_end() - ctx.data()).checked_sub(len)?;
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

#[inline(always)]
fn checked_start<T: Header>(ctx: &XdpContext, offset: usize) -> Option<usize> {
    const { assert!(core::mem::align_of::<T>() == 1) };
    let start = ctx.data() + offset;
    if start + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some(start)
}
