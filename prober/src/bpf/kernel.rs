//! The kernel prober needs: BPF ring buffers (5.8) and XDP attached through BPF links (5.9),
//! which the kernel removes when the process dies. On older kernels aya would attach XDP over
//! netlink instead, an attachment that outlives a killed prober; so those are refused.
//! The XDP program copies headers out with `bpf_xdp_load_bytes` (5.18, and backported to
//! some older distribution kernels, hence a probe rather than a version), which spares it the
//! pointer arithmetic the verifier allows only with CAP_PERFMON.
//! TCX links (6.6) time departures in the kernel; without them userspace times them.
//! Before 5.11 the kernel counts BPF maps against RLIMIT_MEMLOCK.
//! PREEMPT_RT kernels are refused: the programs keep the packet they judge in a per-CPU map
//! slot, which is theirs alone only where a program runs to its end unpreempted.
use anyhow::{bail, Result};
use aya::{
    programs::ProgramType,
    sys::{is_helper_supported, BpfHelper},
    util::KernelVersion,
};

const MINIMUM: (u8, u8) = (5, 9);
const MEMCG_ACCOUNTING: (u8, u8) = (5, 11);
const TCX: (u8, u8) = (6, 6);

/// An error naming the minimum unless this kernel is at least 5.9, has
/// `bpf_xdp_load_bytes` and is not PREEMPT_RT.
pub fn require_supported_kernel() -> Result<()> {
    // A kernel whose version cannot be read, or that cannot be probed, is let through: the
    // loader will fail clearly.
    if let Ok(version) = KernelVersion::current() {
        supported(version)?;
    }
    if is_helper_supported(ProgramType::Xdp, BpfHelper::BPF_FUNC_xdp_load_bytes).ok() == Some(false)
    {
        bail!(
            "prober needs the kernel's bpf_xdp_load_bytes helper (Linux 5.18 or later), which \
             this kernel lacks"
        );
    }
    if realtime(
        std::fs::read_to_string("/sys/kernel/realtime")
            .ok()
            .as_deref(),
    ) {
        bail!(
            "prober does not run on PREEMPT_RT kernels: there a BPF program can be preempted \
             by another, and its programs' per-CPU packet buffer would be shared"
        );
    }
    Ok(())
}

/// Whether `/sys/kernel/realtime` (absent on other kernels) says PREEMPT_RT.
fn realtime(contents: Option<&str>) -> bool {
    contents.is_some_and(|text| text.trim() == "1")
}

/// Where maps still count against RLIMIT_MEMLOCK (before 5.11), lifts the limit for this
/// process: prober's maps take about 7 MiB, above the usual default. Lifting it needs root or
/// CAP_SYS_RESOURCE; without either, loading fails and says so.
pub fn make_room_for_maps() {
    if KernelVersion::current().is_ok_and(|version| version < at_least(MEMCG_ACCOUNTING)) {
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit reads the rlimit we pass; its failure is left to the loader.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    }
}

pub fn has_tcx() -> bool {
    KernelVersion::current().is_ok_and(|version| version >= at_least(TCX))
}

fn at_least((major, minor): (u8, u8)) -> KernelVersion {
    KernelVersion::new(major, minor, 0)
}

fn supported(version: KernelVersion) -> Result<()> {
    if version < at_least(MINIMUM) {
        bail!(
            "prober needs Linux {}.{} or later (BPF ring buffer: 5.8, XDP links that end with the \
             process: 5.9); this kernel is {version}",
            MINIMUM.0,
            MINIMUM.1
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_kernels_are_told_by_sys_kernel_realtime() {
        assert!(realtime(Some("1\n")));
        assert!(!realtime(Some("0\n")));
        assert!(!realtime(None));
    }

    #[test]
    fn kernels_before_5_9_are_refused_by_name() {
        let error = supported(KernelVersion::new(5, 8, 18))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("prober needs Linux 5.9 or later"),
            "{error}"
        );
        assert!(error.ends_with("this kernel is 5.8.18"), "{error}");
        assert!(supported(KernelVersion::new(5, 9, 0)).is_ok());
        assert!(supported(KernelVersion::new(6, 18, 1)).is_ok());
    }
}
