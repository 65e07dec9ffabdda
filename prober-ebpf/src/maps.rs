//! The maps userspace shares with the programs, and the small operations on them.
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
    Global,
};
use prober_common::{
    sweep_departure_slot, wire::IpPacket, Counter, Departure, IpAddress, ProbeFilter, ReplyRecord,
    SweepDeparture, COUNTER_SLOTS, DEPARTURE_SLOTS,
};

#[map]
static FILTER: Array<ProbeFilter> = Array::with_max_entries(1, 0);

/// 4 MiB: each record takes 96 bytes with its header, so ~43 000 replies can wait for
/// userspace.
#[map]
pub static REPLIES: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// One target's departures, by slot (userspace shrinks it to one entry for sweeps).
#[map]
static DEPARTURES: Array<Departure> = Array::with_max_entries(DEPARTURE_SLOTS, 0);

/// A sweep's departures, a slot per probe in send order ([`sweep_departure_slot`]); sized at
/// load from the sweep's rate and wait, and mapped into userspace, which reads each reply's
/// departure there without a system call.
#[map]
static SWEEP_DEPARTURES: Array<SweepDeparture> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// [`prober_common::SWEEP_EPOCHS_MASK_GLOBAL`], set by userspace at load.
#[no_mangle]
static PROBER_SWEEP_EPOCHS_MASK: Global<u16> = Global::new(0);

/// Room for the packet being judged, off the programs' 512-byte stack, which the parsed
/// headers and the kinds' work would not both fit in. One per CPU and direction: a program
/// runs to its end on its CPU (softirq, or with bottom halves off for egress), and an egress
/// program never runs inside an ingress one there. Not so on PREEMPT_RT, where programs are
/// only kept from migrating: userspace refuses those kernels.
#[map]
static PACKETS: PerCpuArray<IpPacket> = PerCpuArray::with_max_entries(2, 0);

/// Which [`PACKETS`] slot a program uses.
#[derive(Clone, Copy)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

/// This CPU's room for a packet going `direction`.
#[inline(always)]
pub fn packet_room(direction: Direction) -> Option<&'static mut IpPacket> {
    // SAFETY: an in-bounds per-CPU slot, used by one program at a time on this CPU (above).
    PACKETS
        .get_ptr_mut(direction as u32)
        .map(|packet| unsafe { &mut *packet })
}

/// Sweep mode: below this much unread data userspace is not woken; it polls on a timer.
const SWEEP_WAKE_BYTES: u64 = 1 << 20;

/// This run's filter; None until userspace has set it.
#[inline(always)]
pub fn filter() -> Option<&'static ProbeFilter> {
    FILTER.get(0)
}

/// CLOCK_MONOTONIC, in nanoseconds.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments, callable from every program type.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: an in-bounds per-CPU slot, touched by this CPU alone.
        unsafe { *slot += 1 };
    }
}

/// Queues a record for userspace, written in place by `fill` (a record is too large to build
/// on the stack as well); false when the ring buffer is full. One target: wake
/// the reader for every reply (it prints each as it comes). Sweeps: a wake-up per reply costs
/// an inter-processor interrupt that would take a tenth of a CPU at a few hundred thousand
/// replies a second, so the reader polls and is only woken when the ring fills up.
#[inline(always)]
pub fn submit(sweep: bool, fill: impl FnOnce(&mut ReplyRecord)) -> bool {
    let Some(mut entry) = REPLIES.reserve::<ReplyRecord>(0) else {
        count(Counter::RingFull);
        return false;
    };
    fill(entry.write(ReplyRecord::default()));
    let wake = if !sweep {
        0
    } else if REPLIES.query(u64::from(BPF_RB_AVAIL_DATA)) >= SWEEP_WAKE_BYTES {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    };
    entry.submit(wake);
    count(Counter::Matched);
    true
}

/// Files that the probe in `slot` to `target:target_port` is leaving now.
#[inline(always)]
pub fn note_departure(slot: u16, target: &IpAddress, target_port: u16) {
    let Some(departure) = DEPARTURES.get_ptr_mut(u32::from(slot)) else {
        return;
    };
    // SAFETY: an in-bounds array slot. The XDP program may read it while it is rewritten (a
    // slot reused within one round trip, e.g. a sweep flooding 4096 ports): it can then pair
    // a reply with the next probe's time, never read out of bounds.
    unsafe {
        *departure = Departure {
            kernel_ns: now_ns(),
            target_addr: *target,
            target_port,
            _pad: [0; 6],
        };
    }
}

/// Files that the sweep probe with `cookie`, from the port at `port_offset` in `epoch`, is
/// leaving now.
#[inline(always)]
pub fn note_sweep_departure(port_offset: u16, epoch: u16, cookie: u32) {
    let slot = sweep_departure_slot(port_offset, epoch, PROBER_SWEEP_EPOCHS_MASK.load());
    if let Some(departure) = SWEEP_DEPARTURES.get_ptr_mut(slot) {
        // SAFETY: an in-bounds array slot; userspace reads it concurrently, and the entry's
        // tag tells it a torn read (see SweepDeparture).
        unsafe { *departure = SweepDeparture::new(now_ns(), cookie) };
    }
}

/// When the probe in `slot` left, if TC egress saw one leave for `target:target_port`; 0 if not.
#[inline(always)]
pub fn departure(slot: u16, target: &IpAddress, target_port: u16) -> u64 {
    match DEPARTURES.get(u32::from(slot)) {
        Some(departure)
            if departure.target_addr == *target && departure.target_port == target_port =>
        {
            departure.kernel_ns
        }
        _ => 0,
    }
}
