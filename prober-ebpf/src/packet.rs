//! The only access to packet memory. XDP packets are read in place through references that
//! are bounds-checked here, as the verifier demands; TC packets are copied out with
//! `bpf_skb_load_bytes`, since TC sees AF_PACKET TX-ring frames before they are linearised.
//!
//! Invariant the references rely on: each program holds the one `XdpContext` the kernel gave
//! it and never makes another from its raw pointer, so borrowing that context is borrowing the
//! packet.
use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_md,
    programs::{TcContext, XdpContext},
};
use prober_common::wire::{self, Frame, MAX_CHECKED_L4_LEN};

/// A header that may be laid over packet bytes.
///
/// # Safety
/// Implementors have alignment 1 and accept every bit pattern (byte arrays and `u8`s only), so
/// a reference to one may point anywhere into a packet.
pub unsafe trait Header: Copy {}

// SAFETY: bytes: alignment 1, any value valid.
unsafe impl<const N: usize> Header for [u8; N] {}

/// The XDP packet as the shared parser (`prober_common::wire`) reads frames.
#[derive(Clone, Copy)]
pub struct XdpFrame<'a>(pub &'a XdpContext);

/// The TC packet as the shared parser reads frames.
#[derive(Clone, Copy)]
pub struct TcFrame<'a>(pub &'a TcContext);

impl Frame for XdpFrame<'_> {
    #[inline(always)]
    fn holds(&self, len: usize) -> bool {
        // Compared as pointers: a length taken as data_end − data would be pointer
        // subtraction, which needs CAP_PERFMON.
        let (data, end) = fresh_bounds(self.0);
        data + len <= end
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        header(self.0, offset).copied()
    }

    #[inline(always)]
    fn chunk<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let (data, end) = fresh_bounds(self.0);
        let offset = opaque(offset);
        // A bound the verifier sees on the offset itself: it credits a bounds check to a
        // packet pointer only while the variable part plus the read cannot pass 64 KiB.
        if offset > MAX_CHUNK_OFFSET {
            return None;
        }
        let start = data + offset;
        if start + N > end {
            return None;
        }
        // SAFETY: `start .. start + N` lies inside the packet (checked just above); bytes
        // have alignment 1.
        Some(unsafe { core::ptr::read_volatile(start as *const [u8; N]) })
    }

    #[inline(always)]
    fn sum(&self, offset: usize, len: usize, seed: u32) -> Option<u32> {
        match prober_sum_words(self.0.ctx, offset as u32, len as u32, seed) {
            NO_SUM => None,
            sum => Some(sum as u32),
        }
    }
}

/// Farther than any offset prober reads (a 9000-byte jumbo frame ends at 9014), and far
/// enough below the verifier's 64 KiB limit for any chunk.
const MAX_CHUNK_OFFSET: usize = 0x3fff;

/// What [`prober_sum_words`] returns when the bytes are not all in the packet.
const NO_SUM: u64 = u64::MAX;

/// `wire::sum_words` over the packet, as a global BPF function (exported, so the linker gives
/// it global linkage): the verifier checks it once, on its own, instead of its loop's every
/// exit once for each way a packet reaches it — which took it past a million instructions.
/// Its arguments are the verifier's unknowns, so their limits are checked here.
#[no_mangle]
#[inline(never)]
pub extern "C" fn prober_sum_words(md: *mut xdp_md, offset: u32, len: u32, seed: u32) -> u64 {
    const MAX_OFFSET: u32 = 0xff; // past any IPv4 header's end
    if offset > MAX_OFFSET || len as usize > MAX_CHECKED_L4_LEN {
        return NO_SUM;
    }
    // The function's own view of the packet the calling program holds (see the invariant
    // above: it only reads, while the caller waits).
    let ctx = XdpContext::new(md);
    wire::sum_words(&XdpFrame(&ctx), offset as usize, len as usize, seed).map_or(NO_SUM, u64::from)
}

/// `value`, through the stack: in a loop, the compiler would otherwise rewrite an offset as a
/// negative counter plus a constant, and the verifier refuses packet pointers with negative
/// variable parts.
#[inline(always)]
fn opaque(value: usize) -> usize {
    let cell = value;
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&cell) }
}

/// The packet's start and end, read afresh (volatile): the compiler can then relate a test
/// against them to no other bounds check — were it to, it would drop one as implied by
/// another, and the verifier, which does not reason so, would refuse the program.
#[inline(always)]
fn fresh_bounds(ctx: &XdpContext) -> (usize, usize) {
    // SAFETY: `ctx.ctx` is the program's own xdp_md, valid for the whole run.
    unsafe {
        let md = ctx.ctx;
        (
            core::ptr::read_volatile(&(*md).data) as usize,
            core::ptr::read_volatile(&(*md).data_end) as usize,
        )
    }
}

impl Frame for TcFrame<'_> {
    #[inline(always)]
    fn holds(&self, len: usize) -> bool {
        len <= self.0.len() as usize
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.0.load(offset).ok()
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

#[inline(always)]
fn checked_start<T: Header>(ctx: &XdpContext, offset: usize) -> Option<usize> {
    const { assert!(core::mem::align_of::<T>() == 1) };
    let start = ctx.data() + offset;
    if start + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some(start)
}
