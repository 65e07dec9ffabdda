//! prober's eBPF programs from userspace: loading the embedded object, attaching the XDP reply
//! matcher and the TC egress timer to the interface, and owning their maps. Both attachments
//! are BPF links held by this process, so the kernel detaches them whenever the process ends,
//! however it ends.

mod counters;
mod kernel;
mod trace;

use std::io;

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{
        tc::TcAttachOptions, LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
pub use counters::Counters;
pub use kernel::require_supported_kernel;
use prober_common::{
    ProbeFilter, COUNTERS_MAP, EGRESS_PROGRAM, FILTER_MAP, REPLIES_MAP, XDP_PROGRAM,
};
pub use trace::BpfTrace;

use crate::net::Interface;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/prober"));

/// Loaded and attached; dropping it detaches the programs and frees the maps.
pub struct ReplyMatcher {
    /// Owns the programs and their links: only held, so that dropping the matcher detaches.
    _programs: Ebpf,
    pub mode: AttachMode,
    /// Where probes' send times come from.
    pub departures: Departures,
}

/// How to attach.
#[derive(Clone, Copy, Debug)]
pub struct Attachment {
    /// Try native (driver) XDP first; generic XDP otherwise.
    pub driver_mode: bool,
    /// Attach the TC egress program (pointless when probes bypass TC).
    pub time_departures: bool,
    /// Let the programs log their decisions (`--bpf-trace`).
    pub trace: bool,
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

/// Replies from the XDP program, what it counted, and its trace if one was asked for.
pub struct ReplyChannel {
    pub replies: RingBuf<MapData>,
    pub counters: Counters,
    pub trace: Option<BpfTrace>,
}

impl ReplyMatcher {
    /// Loads the programs, sets their filter and attaches them to `interface`.
    pub fn attach(
        interface: &Interface,
        filter: &ProbeFilter,
        attachment: Attachment,
    ) -> Result<(ReplyMatcher, ReplyChannel)> {
        kernel::make_room_for_maps();
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &trace::level(attachment.trace), true)
            .load(OBJECT)
            .context("loading the XDP program")?;
        let mut filters: Array<_, ProbeFilter> = Array::try_from(take_map(&mut ebpf, FILTER_MAP)?)?;
        filters
            .set(0, filter, 0)
            .context("setting the reply filter")?;
        let replies = RingBuf::try_from(take_map(&mut ebpf, REPLIES_MAP)?)?;
        let counters = Counters::new(PerCpuArray::try_from(take_map(&mut ebpf, COUNTERS_MAP)?)?);
        let trace = attachment
            .trace
            .then(|| BpfTrace::start(&mut ebpf))
            .transpose()?;

        let mode = attach_xdp(&mut ebpf, interface, attachment.driver_mode)?;
        let departures = if attachment.time_departures {
            attach_egress(&mut ebpf, interface)
        } else {
            Departures::Userspace("probes bypass TC egress (--qdisc-bypass)".into())
        };
        Ok((
            ReplyMatcher {
                _programs: ebpf,
                mode,
                departures,
            },
            ReplyChannel {
                replies,
                counters,
                trace,
            },
        ))
    }
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name).ok_or_else(|| anyhow!("no {name} map"))
}

/// Attaches the reply matcher in driver mode where the driver has it (and `driver_mode`
/// allows), in generic mode otherwise.
fn attach_xdp(ebpf: &mut Ebpf, interface: &Interface, driver_mode: bool) -> Result<AttachMode> {
    let program: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .ok_or_else(|| anyhow!("no {XDP_PROGRAM} program in the object"))?
        .try_into()?;
    program.load().map_err(|error| load_error("XDP", error))?;
    if driver_mode {
        match program.attach_to_if_index(interface.index, XdpMode::Driver) {
            Ok(_) => return Ok(AttachMode::Driver),
            Err(error) if is_busy(&error) => return Err(attach_error(interface, error)),
            Err(_) => {}
        }
    }
    program
        .attach_to_if_index(interface.index, XdpMode::Skb)
        .map_err(|error| attach_error(interface, error))?;
    Ok(AttachMode::Generic)
}

/// Attaches the departure-timing program to `interface`'s egress as a TCX link, which, like
/// the XDP link, the kernel removes when prober exits. Without TCX (kernels before 6.6) aya
/// would need a clsact qdisc, which outlives the process; prober then makes do with
/// userspace send times rather than leave a qdisc behind.
fn attach_egress(ebpf: &mut Ebpf, interface: &Interface) -> Departures {
    if !kernel::has_tcx() {
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

/// A verifier rejection as one line: the verifier's verdict, which is the last line of its
/// log before the statistics it ends with.
fn load_error(kind: &str, error: ProgramError) -> anyhow::Error {
    match error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            anyhow!(
                "the kernel rejected the {kind} program ({io_error}): {}",
                verifier_verdict(&log)
            )
        }
        other => {
            anyhow::Error::new(other).context(format!("loading the {kind} program into the kernel"))
        }
    }
}

fn verifier_verdict(log: &str) -> &str {
    const STATISTICS: [&str; 3] = ["processed ", "verification time", "stack depth"];
    let mut lines = log
        .lines()
        .rev()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let last = lines.clone().next().unwrap_or("");
    lines
        .find(|line| !STATISTICS.iter().any(|start| line.starts_with(start)))
        .unwrap_or(last)
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

#[cfg(test)]
mod tests {
    use aya_obj::Object;
    use prober_common::DEPARTURES_MAP;

    use super::*;

    #[test]
    fn a_rejection_names_the_verifiers_reason_not_its_statistics() {
        let log = "289: (71) r4 = *(u8 *)(r8 +13)\n\
                   invalid access to packet, off=13 size=1, R8(id=29,off=13,r=0)\n\
                   R8 offset is outside of the packet\n\
                   verification time 3148 usec\n\
                   stack depth 448+0+0+0\n\
                   processed 393 insns (limit 1000000) max_states_per_insn 1 total_states 15\n\n";
        assert_eq!(verifier_verdict(log), "R8 offset is outside of the packet");
        assert_eq!(verifier_verdict("processed 1 insns\n"), "processed 1 insns");
        assert_eq!(verifier_verdict(""), "");
    }

    /// The whole log of a real refusal (Linux 6.18): the XDP program as it was before it copied
    /// headers out, loaded by a user holding only CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW.
    #[test]
    fn a_real_rejection_names_the_verifiers_reason() {
        let log = include_str!("testdata/cap-bpf-only-rejection.log");
        assert_eq!(
            verifier_verdict(log),
            "R5 has pointer with unsupported alu operation, pointer arithmetic with it prohibited \
             for !root"
        );
    }

    /// Without privileges: the embedded object holds every map and program userspace asks
    /// for by name, and the global the trace level is set through.
    #[test]
    fn the_embedded_object_has_what_userspace_names() {
        let mut object = Object::parse(OBJECT).expect("the embedded eBPF object parses");
        for map in [
            FILTER_MAP,
            REPLIES_MAP,
            COUNTERS_MAP,
            DEPARTURES_MAP,
            "AYA_LOGS",
        ] {
            assert!(object.maps.contains_key(map), "no map {map}");
        }
        for program in [XDP_PROGRAM, EGRESS_PROGRAM] {
            assert!(
                object.programs.contains_key(program),
                "no program {program}"
            );
        }
        // As the loader patches it: the level is a one-byte global the object must have.
        let level: &[u8] = &[trace::level(false)];
        object
            .patch_map_data([(aya_log::LEVEL, (level, true))].into())
            .expect("the trace level global");
    }
}
