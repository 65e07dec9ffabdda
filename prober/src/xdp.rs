//! The XDP reply matcher: loads the eBPF object, attaches it to the interface replies arrive
//! on, and owns the maps. The attachment is a BPF link held by this process, so the kernel
//! detaches it whenever the process ends, however it ends.
use std::io;

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{
        tc::TcAttachOptions, LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    util::KernelVersion,
    Ebpf,
};
use prober_common::{
    Counter, ProbeFilter, COUNTERS_MAP, EGRESS_PROGRAM, FILTER_MAP, REPLIES_MAP, XDP_PROGRAM,
};

use crate::route::Interface;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/prober"));

/// Loaded and attached; dropping it detaches the programs and frees the maps.
pub struct ReplyMatcher {
    /// Owns the programs and their links: only held, so that dropping the matcher detaches.
    _program: Ebpf,
    pub mode: AttachMode,
    /// Where probes' send times come from.
    pub departures: Departures,
}

/// Where probes' send times come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Departures {
    /// The TC egress program, as each probe leaves the interface.
    TcEgress,
    /// The send thread, just before the probe is handed to the kernel: the egress program
    /// could not be attached (the reason is kept for -V).
    Userspace(String),
}

impl std::fmt::Display for Departures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Departures::TcEgress => f.write_str("TC egress (kernel)"),
            Departures::Userspace(reason) => write!(f, "userspace ({reason})"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native XDP in the driver.
    Driver,
    /// Generic XDP in the network stack (e.g. `lo`, or drivers without XDP).
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Driver => "driver (native)",
            AttachMode::Generic => "generic (skb)",
        })
    }
}

/// Replies from the XDP program and what it counted.
pub struct ReplyChannel {
    pub replies: RingBuf<MapData>,
    pub counters: Counters,
}

/// The XDP program's per-CPU counters.
pub struct Counters(PerCpuArray<MapData, u64>);

impl ReplyMatcher {
    /// Loads the program, sets its filter and attaches it to `interface`, in driver mode
    /// where the driver has it (and `driver_mode` allows) and generic mode otherwise; with
    /// `time_departures`, the TC egress program too (pointless when probes bypass TC).
    pub fn attach(
        interface: &Interface,
        filter: &ProbeFilter,
        driver_mode: bool,
        time_departures: bool,
    ) -> Result<(ReplyMatcher, ReplyChannel)> {
        let mut ebpf = Ebpf::load(OBJECT).context("loading the XDP program")?;
        let mut filters: Array<_, ProbeFilter> = Array::try_from(
            ebpf.take_map(FILTER_MAP)
                .ok_or_else(|| anyhow!("no {FILTER_MAP} map"))?,
        )?;
        filters
            .set(0, filter, 0)
            .context("setting the reply filter")?;
        let replies = RingBuf::try_from(
            ebpf.take_map(REPLIES_MAP)
                .ok_or_else(|| anyhow!("no {REPLIES_MAP} map"))?,
        )?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map(COUNTERS_MAP)
                .ok_or_else(|| anyhow!("no {COUNTERS_MAP} map"))?,
        )?;

        let program: &mut Xdp = ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or_else(|| anyhow!("no {XDP_PROGRAM} program in the object"))?
            .try_into()?;
        program.load().map_err(|error| load_error("XDP", error))?;
        let driver_refused = driver_mode
            && match program.attach_to_if_index(interface.index, XdpMode::Driver) {
                Ok(_) => false,
                Err(error) if is_busy(&error) => return Err(attach_error(interface, error)),
                Err(_) => true,
            };
        let mode = if driver_mode && !driver_refused {
            AttachMode::Driver
        } else {
            program
                .attach_to_if_index(interface.index, XdpMode::Skb)
                .map_err(|error| attach_error(interface, error))?;
            AttachMode::Generic
        };
        let departures = if time_departures {
            attach_egress(&mut ebpf, interface)
        } else {
            Departures::Userspace("probes bypass TC egress (--qdisc-bypass)".into())
        };
        Ok((
            ReplyMatcher {
                _program: ebpf,
                mode,
                departures,
            },
            ReplyChannel {
                replies,
                counters: Counters(counters),
            },
        ))
    }
}

/// Attaches the departure-timing program to `interface`'s egress as a TCX link, which, like
/// the XDP link, the kernel removes when prober exits. Without TCX (kernels before 6.6) aya
/// would need a clsact qdisc, which outlives the process; prober then makes do with
/// userspace send times rather than leave a qdisc behind.
fn attach_egress(ebpf: &mut Ebpf, interface: &Interface) -> Departures {
    let has_tcx =
        KernelVersion::current().is_ok_and(|kernel| kernel >= KernelVersion::new(6, 6, 0));
    if !has_tcx {
        return Departures::Userspace("the kernel has no TCX links".into());
    }
    let attached = (|| -> Result<()> {
        let program: &mut SchedClassifier = ebpf
            .program_mut(EGRESS_PROGRAM)
            .ok_or_else(|| anyhow!("no {EGRESS_PROGRAM} program in the object"))?
            .try_into()?;
        program
            .load()
            .map_err(|error| load_error("TC egress", error))?;
        // First, so that no program before it can end the packet's way before it is timed.
        program.attach_with_options(
            &interface.name,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )?;
        Ok(())
    })();
    match attached {
        Ok(()) => Departures::TcEgress,
        Err(error) => Departures::Userspace(format!("TC egress not attached: {error:#}")),
    }
}

impl Counters {
    /// A counter summed over all CPUs.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0
            .get(&(counter as u32), 0)
            .map(|values| values.iter().sum())
            .unwrap_or(0)
    }
}

/// A verifier rejection as one line: the verifier's verdict is its log's last line.
fn load_error(kind: &str, error: ProgramError) -> anyhow::Error {
    match error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let verdict = log
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("");
            anyhow!("the kernel rejected the {kind} program ({io_error}): {verdict}")
        }
        other => {
            anyhow::Error::new(other).context(format!("loading the {kind} program into the kernel"))
        }
    }
}

fn io_error(error: &ProgramError) -> Option<&io::Error> {
    match error {
        ProgramError::SyscallError(syscall) => Some(&syscall.io_error),
        _ => None,
    }
}

fn is_busy(error: &ProgramError) -> bool {
    io_error(error).and_then(io::Error::raw_os_error) == Some(libc::EBUSY)
}

fn attach_error(interface: &Interface, error: ProgramError) -> anyhow::Error {
    let name = &interface.name;
    match io_error(&error).and_then(io::Error::raw_os_error) {
        Some(libc::EBUSY) | Some(libc::EEXIST) => anyhow!(
            "cannot attach the XDP program to {name}: another XDP program is already attached \
             (another prober running on {name}?)"
        ),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => {
            anyhow!("cannot attach the XDP program to {name}: the kernel has no XDP support on it")
        }
        Some(libc::EPERM) => anyhow!(
            "cannot attach the XDP program to {name}: permission denied (needs CAP_NET_ADMIN and CAP_BPF)"
        ),
        _ => anyhow!("cannot attach the XDP program to {name}: {error}"),
    }
}
