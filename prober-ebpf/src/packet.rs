//! The only access to packet memory. Headers are copied out with the kernel's helpers,
//! `bpf_xdp_load_bytes` and `bpf_skb_load_bytes` (TC sees AF_PACKET TX-ring frames before they
//! are linearised), for the shared parser (`prober_common::wire`) to read. The one rewrite in
//! place, a sweep's bounced RST (at XDP or TCX ingress), goes through a reference
//! bounds-checked here, at a constant offset.
//!
//! Why copies: a packet pointer moved by a variable offset (where the transport header starts)
//! passes the verifier only with CAP_PERFMON, which lifts its Spectre v1 hardening, and so does
//! the packet's length taken as `data_end - data`. The helpers need neither, so CAP_BPF,
//! CAP_NET_ADMIN and CAP_NET_RAW are enough to load the programs. (A helper call is also
//! something the compiler cannot hoist out of a loop or drop as implied by another check.)
//!
//! Invariant the reference relies on: each program holds the one context the kernel gave it
//! and never makes another from its raw pointer, so borrowing that context is borrowing the
//! packet.
use core::mem::{size_of, MaybeUninit};

use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    helpers::{
        bpf_redirect, bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_pull_data,
        bpf_xdp_adjust_tail, bpf_xdp_get_buff_len, bpf_xdp_load_bytes,
    },
    programs::{TcContext, XdpContext},
};
use prober_common::wire::{self, Frame, MAX_CHECKED_L4_LEN, MAX_L4_OFFSET};

/// A header that may be laid over packet bytes.
///
/// # Safety
/// Implementors have alignment 1 and accept every bit pattern (byte arrays and `u8`s only), so
/// a reference to one may point anywhere into a packet.
pub unsafe trait Header: Copy {}

// SAFETY: bytes: alignment 1, any value valid.
unsafe impl<const N: usize> Header for [u8; N] {}

/// The XDP packet as the shared parser reads frames.
#[derive(Clone, Copy)]
pub struct XdpFrame<'a>(pub &'a XdpContext);

/// The TC packet as the shared parser reads frames.
#[derive(Clone, Copy)]
pub struct TcFrame<'a>(pub &'a TcContext);

impl Frame for XdpFrame<'_> {
    #[inline(always)]
    fn holds(&self, len: usize) -> bool {
        len <= xdp_len(self.0)
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let mut bytes = MaybeUninit::<[u8; N]>::uninit();
        // SAFETY: the helper writes N bytes into `bytes` or fails; any bytes are a valid array.
        unsafe {
            let copied = bpf_xdp_load_bytes(
                self.0.ctx,
                u32::try_from(offset).ok()?,
                bytes.as_mut_ptr().cast(),
                N as u32,
            );
            (copied == 0).then(|| bytes.assume_init())
        }
    }

    #[inline(always)]
    fn read_into<const N: usize>(&self, offset: usize, out: &mut [u8; N]) -> bool {
        let Ok(offset) = u32::try_from(offset) else {
            return false;
        };
        // SAFETY: the helper writes at most N bytes into `out`, which holds N.
        unsafe { bpf_xdp_load_bytes(self.0.ctx, offset, out.as_mut_ptr().cast(), N as u32) == 0 }
    }

    #[inline(always)]
    fn sum(&self, offset: usize, len: usize, seed: u32) -> Option<u32> {
        match prober_sum_words(self.0.ctx, offset as u32, len as u32, seed) {
            NO_SUM => None,
            sum => Some(sum as u32),
        }
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

    #[inline(always)]
    fn read_into<const N: usize>(&self, offset: usize, out: &mut [u8; N]) -> bool {
        let Ok(offset) = u32::try_from(offset) else {
            return false;
        };
        // SAFETY: the helper writes at most N bytes into `out`, which holds N.
        unsafe {
            bpf_skb_load_bytes(
                self.0.skb.skb.cast(),
                offset,
                out.as_mut_ptr().cast(),
                N as u32,
            ) == 0
        }
    }

    #[inline(always)]
    fn sum(&self, offset: usize, len: usize, seed: u32) -> Option<u32> {
        let skb = self.0.skb.skb;
        match prober_sum_words_skb(skb, offset as u32, len as u32, seed) {
            NO_SUM => None,
            sum => Some(sum as u32),
        }
    }
}

/// What [`prober_sum_words`] returns when the bytes are not all in the packet.
const NO_SUM: u64 = u64::MAX;

/// `wire::sum_words` over the packet, as a global BPF function (exported, so the linker gives
/// it global linkage): the verifier checks it once, on its own, instead of its loop's every
/// exit once for each way a packet reaches it — which took it past a million instructions.
/// One for each hook's context.
#[no_mangle]
#[inline(never)]
pub extern "C" fn prober_sum_words(md: *mut xdp_md, offset: u32, len: u32, seed: u32) -> u64 {
    // The function's own view of the packet the calling program holds: it only reads, while
    // the caller waits.
    let ctx = XdpContext::new(md);
    checked_sum(&XdpFrame(&ctx), offset, len, seed)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn prober_sum_words_skb(
    skb: *mut __sk_buff,
    offset: u32,
    len: u32,
    seed: u32,
) -> u64 {
    let ctx = TcContext::new(skb);
    checked_sum(&TcFrame(&ctx), offset, len, seed)
}

/// The arguments of a global function are the verifier's unknowns, so their limits are
/// checked here.
#[inline(always)]
fn checked_sum(frame: &impl Frame, offset: u32, len: u32, seed: u32) -> u64 {
    if offset as usize > MAX_L4_OFFSET || len as usize > MAX_CHECKED_L4_LEN {
        return NO_SUM;
    }
    wire::sum_words(frame, offset as usize, len as usize, seed).map_or(NO_SUM, u64::from)
}

/// The XDP packet's length.
#[inline(always)]
fn xdp_len(ctx: &XdpContext) -> usize {
    // SAFETY: `ctx.ctx` is the program's own xdp_md.
    unsafe { bpf_xdp_get_buff_len(ctx.ctx) as usize }
}

/// A packet that can be cut short and rewritten in place: XDP's, or TC's once its head is
/// pulled into the socket buffer's linear part.
pub trait Rewritable {
    /// Cuts the packet to its first `len` bytes, all of them writable in place; None (and the
    /// packet as it was) if the kernel refuses.
    fn truncate(&mut self, len: usize) -> Option<()>;
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
}

impl Rewritable for XdpContext {
    #[inline(always)]
    fn truncate(&mut self, len: usize) -> Option<()> {
        let surplus = xdp_len(self).checked_sub(len)?;
        if surplus == 0 {
            return Some(());
        }
        // SAFETY: `self.ctx` is the program's own xdp_md; the exclusive borrow of the context
        // means no reference into the packet is alive while its end moves.
        match unsafe { bpf_xdp_adjust_tail(self.ctx, -(surplus as i32)) } {
            0 => Some(()),
            _ => None,
        }
    }

    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
}

impl Rewritable for TcContext {
    #[inline(always)]
    fn truncate(&mut self, len: usize) -> Option<()> {
        let skb = self.skb.skb;
        let len = u32::try_from(len).ok()?;
        // Pulled first, so that a refusal leaves the packet whole. Both helpers move the
        // packet; the exclusive borrow of the context means no reference into it is alive.
        // SAFETY: `skb` is the program's own __sk_buff.
        unsafe {
            if self.len() < len || bpf_skb_pull_data(skb, len) != 0 {
                return None;
            }
            (bpf_skb_change_tail(skb, len, 0) == 0).then_some(())
        }
    }

    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
}

/// The `T` at `offset` into the packet, to rewrite in place. `offset` must be a constant (see
/// the module's doc).
#[inline(always)]
pub fn header_mut<T: Header>(ctx: &mut impl Rewritable, offset: usize) -> Option<&mut T> {
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
    // unmoved while the exclusive borrow of `ctx` lasts (only a `&mut` context can resize
    // it), and makes this the only reference into the packet while it lives; `T` has
    // alignment 1 and no invalid bit patterns (`Header`).
    Some(unsafe { &mut *(start as *mut T) })
}

/// TC's verdict that sends the packet out of the interface it came in by (XDP_TX's twin).
#[inline(always)]
pub fn send_back(ctx: &TcContext) -> i32 {
    // SAFETY: reads the program's own __sk_buff; bpf_redirect only records where to send it.
    unsafe { bpf_redirect((*ctx.skb.skb).ifindex, 0) as i32 }
}
