//! prober's engine: hping3-compatible TCP and ICMP probing with probes sent through an
//! AF_PACKET TX ring and replies matched, with kernel timestamps, by an XDP program.
//!
//! The binary (`main.rs`) parses the command line and prints; everything else lives here so
//! that tests can drive it directly.

pub mod driver;
pub mod output;
pub mod pacer;
pub mod permutation;
pub mod ports;
pub mod privilege;
pub mod probe;
pub mod results;
pub mod route;
pub mod session;
pub mod stats;
pub mod status;
pub mod sweep;
pub mod targets;
pub mod transmit;
pub mod tx_ring;
pub mod xdp;

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

/// 64 random bits from the kernel, for keys and per-run identifiers.
pub(crate) fn random() -> anyhow::Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
    Ok(u64::from_ne_bytes(bytes))
}
