//! prober's engine: hping3-compatible TCP and ICMP probing with probes sent through an
//! AF_PACKET TX ring and replies matched, with kernel timestamps, by an XDP program.
//!
//! The binary (`main.rs`) is only an outline; everything lives here so that tests can drive
//! it directly. The run kinds are [`ping`] (hping3's one target) and [`sweep`] (many hosts and
//! ports); both build their packets with a [`probe`] kind, send them through [`transmit`] on
//! the route [`net`] finds, and read replies from the eBPF programs of [`bpf`], set up by
//! [`setup`] and drained by [`reply_loop`]. [`discover`] (`--arp`) finds the hosts of a
//! directly connected network with the sweep's neighbour resolver. Once set up, a run gives up its capabilities
//! ([`privileges`]).

pub mod bpf;
pub mod cli;
pub mod discover;
pub mod echo;
pub mod exporter;
pub mod net;
pub mod output;
pub mod ping;
pub mod preflight;
pub mod privileges;
pub mod probe;
pub mod reading;
pub mod reply_loop;
pub mod rtt;
pub mod setup;
pub mod sweep;
pub mod transmit;

/// Nanoseconds on CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns()` reads in the kernel.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC now: added to a kernel timestamp, its Unix time.
pub fn realtime_offset_ns() -> i128 {
    let realtime_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as i128);
    realtime_ns - i128::from(monotonic_ns())
}

/// 64 random bits from the kernel, for keys and per-run identifiers.
pub(crate) fn random() -> anyhow::Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
    Ok(u64::from_ne_bytes(bytes))
}
