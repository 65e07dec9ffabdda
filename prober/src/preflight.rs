//! Checks before touching the kernel: that the process holds the capabilities prober needs,
//! so that a missing one is named instead of surfacing as a bare EPERM, and that the kernel
//! is recent enough.
use anyhow::{bail, Context as _, Result};

use crate::bpf;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Fails with one line naming every missing capability, or the kernel's shortcoming.
pub fn check() -> Result<()> {
    require_capabilities()?;
    bpf::require_supported_kernel()
}

fn require_capabilities() -> Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .context("no CapEff line in /proc/self/status")?;
    let missing = missing_capabilities(effective);
    if !missing.is_empty() {
        bail!(
            "missing capability {}: run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW \
             (setcap cap_bpf,cap_net_admin,cap_net_raw+ep prober)",
            missing.join(", ")
        );
    }
    Ok(())
}

fn missing_capabilities(effective: u64) -> Vec<&'static str> {
    let has = |cap: u32| effective & (1 << cap) != 0;
    let mut missing = Vec::new();
    // CAP_SYS_ADMIN still grants BPF on kernels that know CAP_BPF.
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_missing_capability() {
        assert_eq!(
            missing_capabilities(0),
            ["CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_RAW"]
        );
        let all = (1 << CAP_BPF) | (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW);
        assert!(missing_capabilities(all).is_empty());
        let sys_admin_instead = (1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW);
        assert!(missing_capabilities(sys_admin_instead).is_empty());
        assert_eq!(
            missing_capabilities(1 << CAP_NET_ADMIN),
            ["CAP_BPF", "CAP_NET_RAW"]
        );
    }
}
