//! Least privilege: once a run is set up (programs loaded and attached, sockets and rings
//! open, the output file created), prober gives up every capability and sets
//! `PR_SET_NO_NEW_PRIVS`, so that nothing it does while it reads replies from the network can
//! use them, and no program it might be made to exec can gain any.
//!
//! What the run does afterwards needs none: it sends through sockets that are open, reads
//! the ring buffers through their mappings, the counters through the map's fd, and interface
//! statistics from /sys; closing the BPF links detaches the programs. The exception is the
//! counters on kernels before 6.5, which refuse every `bpf()` command without CAP_BPF while
//! `kernel.unprivileged_bpf_disabled` is set (Debian and Ubuntu set it): there CAP_BPF alone
//! is kept, or CAP_SYS_ADMIN where that is what grants BPF.
//!
//! No seccomp filter: an allow-list would have to name every system call that glibc, tokio,
//! aya and the rest of prober make after setup, and one missed would kill a run in its
//! middle; with no capability left, what such a filter would still deny is little.
use std::fs;

use anyhow::{bail, Context as _, Result};
use aya::util::KernelVersion;
use caps::{CapSet, Capability, CapsHashSet};

/// The first kernel whose `bpf()` checks capabilities only where objects are created, so that
/// maps already open can be read without any.
const BPF_COMMANDS_UNGATED: (u8, u8) = (6, 5);

/// Drops every capability the rest of the run does not need, from each set (the bounding set
/// too where CAP_SETPCAP allows), and sets `PR_SET_NO_NEW_PRIVS`. Called while prober is still
/// one thread: capabilities belong to threads, and the threads started later inherit these.
pub fn drop_after_setup() -> Result<()> {
    require_one_thread()?;
    let kept = kept_capabilities()?;
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        caps::clear(None, CapSet::Bounding).map_err(capability_error)?;
    }
    caps::clear(None, CapSet::Ambient).map_err(capability_error)?;
    caps::clear(None, CapSet::Inheritable).map_err(capability_error)?;
    // Effective first: it must stay within the permitted set.
    caps::set(None, CapSet::Effective, &kept).map_err(capability_error)?;
    caps::set(None, CapSet::Permitted, &kept).map_err(capability_error)?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting PR_SET_NO_NEW_PRIVS");
    }
    Ok(())
}

fn require_one_thread() -> Result<()> {
    let threads = fs::read_dir("/proc/self/task")
        .context("reading /proc/self/task")?
        .count();
    if threads != 1 {
        bail!(
            "cannot drop capabilities: {threads} threads are running, and the others would keep \
             theirs"
        );
    }
    Ok(())
}

/// What the run still needs: see the module's doc.
fn kept_capabilities() -> Result<CapsHashSet> {
    let mut kept = CapsHashSet::new();
    if counters_need_bpf_capability(KernelVersion::current().ok(), unprivileged_bpf_disabled()) {
        let permitted = caps::read(None, CapSet::Permitted).map_err(capability_error)?;
        if let Some(&grants_bpf) = [Capability::CAP_BPF, Capability::CAP_SYS_ADMIN]
            .iter()
            .find(|cap| permitted.contains(cap))
        {
            kept.insert(grants_bpf);
        }
    }
    Ok(kept)
}

/// Whether reading a map through its fd needs CAP_BPF (an unreadable version counts as old).
fn counters_need_bpf_capability(
    kernel: Option<KernelVersion>,
    unprivileged_bpf_disabled: bool,
) -> bool {
    let (major, minor) = BPF_COMMANDS_UNGATED;
    unprivileged_bpf_disabled
        && kernel.is_none_or(|version| version < KernelVersion::new(major, minor, 0))
}

/// `kernel.unprivileged_bpf_disabled`: unreadable counts as set, the cautious guess.
fn unprivileged_bpf_disabled() -> bool {
    fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .map_or(true, |value| value.trim() != "0")
}

fn capability_error(error: caps::errors::CapsError) -> anyhow::Error {
    anyhow::anyhow!("dropping capabilities: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_bpf_is_kept_only_where_the_kernel_gates_every_bpf_command() {
        let kernel = |major, minor| Some(KernelVersion::new(major, minor, 0));
        assert!(counters_need_bpf_capability(kernel(6, 1), true));
        assert!(counters_need_bpf_capability(None, true));
        assert!(!counters_need_bpf_capability(kernel(6, 1), false));
        assert!(!counters_need_bpf_capability(kernel(6, 5), true));
        assert!(!counters_need_bpf_capability(kernel(6, 18), true));
    }
}
