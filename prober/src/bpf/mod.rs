//! prober's eBPF programs from userspace: loading the embedded object, attaching the XDP reply
//! matcher and the TC egress timer to the interface, and owning their maps. Both attachments
//! are BPF links held by this process, so the kernel detaches them whenever the process ends,
//! however it ends.

mod counters;
mod kernel;
mod mapped;
mod trace;

use std::io;

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        tc::TcAttachOptions, LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
pub use counters::Counters;
pub use kernel::require_supported_kernel;
pub use mapped::MappedWords;
use prober_common::{
    IpAddress, Neighbour, ProbeFilter, SweepDeparture, COUNTERS_MAP, DEPARTURES_MAP,
    EGRESS_PROGRAM, FILTER_MAP, GENERIC_XDP_GLOBAL, INGRESS_PROGRAM, NEIGHBOURS_MAP, REPLIES_MAP,
    SWEEP_DEPARTURES_MAP, SWEEP_EPOCHS_MASK_GLOBAL, SWEEP_SOURCE_PORTS, XDP_PROGRAM,
};
pub use trace::BpfTrace;

use crate::net::Interface;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/prober"));

/// Loaded and attached; dropping it detaches the programs and frees the maps.
pub struct ReplyMatcher {
    /// Owns the programs and their links: only held, so that dropping the matcher detaches.
    _programs: Ebpf,
    /// Where replies are matched.
    pub hook: Hook,
    /// Where probes' send times come from.
    pub departures: Departures,
}

/// Where the reply matcher runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP, in the mode asked for: there is no fallback from native to generic.
    Xdp(AttachMode),
    /// TCX ingress: a sweep's default where the kernel has TCX, or instead of generic XDP when
    /// the interface's XDP hook holds another program (another prober, any XDP user), as TCX
    /// links stack where XDP does not.
    TcxIngress { xdp_taken: bool },
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::Xdp(mode) => write!(f, "XDP, {mode} mode"),
            Hook::TcxIngress { xdp_taken: false } => f.write_str("TCX ingress"),
            Hook::TcxIngress { xdp_taken: true } => {
                f.write_str("TCX ingress (the interface's XDP hook is taken)")
            }
        }
    }
}

/// How to attach.
#[derive(Clone, Copy, Debug)]
pub struct Attachment {
    /// XDP in this mode, or None for TCX ingress (generic XDP on a kernel without TCX): in
    /// the stack either way, and TCX ingress spares each reply generic XDP's copy of the
    /// packet into a head with XDP's headroom.
    pub mode: Option<AttachMode>,
    /// Attach the TC egress program (pointless when probes bypass TC).
    pub time_departures: bool,
    /// Let the programs log their decisions (`--bpf-trace`).
    pub trace: bool,
    /// A sweep: the rows of its departure table (a power of two, see
    /// [`prober_common::sweep_departure_slot`]); None for one target.
    pub sweep_epochs: Option<u32>,
    /// Room for this many neighbours asked and not yet settled (see [`NeighbourMap`]).
    pub neighbours: u32,
}

/// What the programs know of the neighbours a sweep asks for, by address.
pub type NeighbourMap = HashMap<MapData, IpAddress, Neighbour>;

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

/// Where the XDP program runs (`--xdp-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// In the network stack: any interface, and its driver is left alone
    #[default]
    Generic,
    /// In the driver, if it has native XDP: attaching and detaching can rebuild a NIC's rings
    /// and reset its link, and on a veth it clamps the peer's MTU
    Native,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "driver (native)",
            AttachMode::Generic => "generic (skb)",
        })
    }
}

/// Replies from the XDP program, what it counted, and its trace if one was asked for.
pub struct ReplyChannel {
    pub replies: RingBuf<MapData>,
    /// A sweep's departure table as the TC egress program fills it: each
    /// [`SweepDeparture`]'s two words.
    pub sweep_departures: Option<MappedWords>,
    pub counters: Counters,
    pub trace: Option<BpfTrace>,
    pub neighbours: NeighbourMap,
}

impl ReplyMatcher {
    /// Loads the programs, sets their filter and attaches them to `interface`.
    pub fn attach(
        interface: &Interface,
        filter: &ProbeFilter,
        attachment: Attachment,
    ) -> Result<(ReplyMatcher, ReplyChannel)> {
        kernel::make_room_for_maps();
        let generic_xdp = u8::from(attachment.mode != Some(AttachMode::Native));
        // Each run kind's departure table at its size, the other's at one entry.
        let (departure_slots, sweep_departure_slots) = match attachment.sweep_epochs {
            Some(epochs) => (1, u32::from(SWEEP_SOURCE_PORTS) * epochs),
            None => (prober_common::DEPARTURE_SLOTS, 1),
        };
        let epochs_mask = attachment
            .sweep_epochs
            .map_or(0, |epochs| (epochs - 1) as u16);
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &trace::level(attachment.trace), true)
            .override_global(GENERIC_XDP_GLOBAL, &generic_xdp, true)
            .override_global(SWEEP_EPOCHS_MASK_GLOBAL, &epochs_mask, true)
            .map_max_entries(DEPARTURES_MAP, departure_slots)
            .map_max_entries(SWEEP_DEPARTURES_MAP, sweep_departure_slots)
            .map_max_entries(NEIGHBOURS_MAP, attachment.neighbours.max(1))
            .load(OBJECT)
            .context("loading the XDP program")?;
        let mut filters: Array<_, ProbeFilter> = Array::try_from(take_map(&mut ebpf, FILTER_MAP)?)?;
        filters
            .set(0, filter, 0)
            .context("setting the reply filter")?;
        let replies = RingBuf::try_from(take_map(&mut ebpf, REPLIES_MAP)?)?;
        // Taken only in sweeps: a map taken out of `ebpf` and dropped would close the fd the
        // egress program is yet to be loaded with.
        let sweep_departures = match attachment.sweep_epochs {
            Some(_) => Some(map_departures(&mut ebpf, sweep_departure_slots)?),
            None => None,
        };
        let counters = Counters::new(PerCpuArray::try_from(take_map(&mut ebpf, COUNTERS_MAP)?)?);
        let neighbours = HashMap::try_from(take_map(&mut ebpf, NEIGHBOURS_MAP)?)?;
        let trace = attachment
            .trace
            .then(|| BpfTrace::start(&mut ebpf))
            .transpose()?;

        let hook = match attachment.mode {
            None if kernel::has_tcx() => attach_ingress(&mut ebpf, interface, false)?,
            mode => {
                let mode = mode.unwrap_or_default();
                match attach_xdp(&mut ebpf, interface, mode)? {
                    Attached::Yes => Hook::Xdp(mode),
                    // Native is asked for by name: the hook someone else holds is the user's
                    // to free.
                    Attached::HookTaken(error)
                        if mode == AttachMode::Native || !kernel::has_tcx() =>
                    {
                        return Err(attach_error(interface, mode, error))
                    }
                    Attached::HookTaken(_) => attach_ingress(&mut ebpf, interface, true)?,
                }
            }
        };
        let departures = if attachment.time_departures {
            attach_egress(&mut ebpf, interface)
        } else {
            Departures::Userspace("probes bypass TC egress (--qdisc-bypass)".into())
        };
        Ok((
            ReplyMatcher {
                _programs: ebpf,
                hook,
                departures,
            },
            ReplyChannel {
                replies,
                sweep_departures,
                counters,
                trace,
                neighbours,
            },
        ))
    }
}

/// The sweep's departure table of `slots` entries, mapped (each entry two words).
fn map_departures(ebpf: &mut Ebpf, slots: u32) -> Result<MappedWords> {
    let aya::maps::Map::Array(map) = take_map(ebpf, SWEEP_DEPARTURES_MAP)? else {
        return Err(anyhow!("{SWEEP_DEPARTURES_MAP} is no array"));
    };
    let words = slots as usize * size_of::<SweepDeparture>() / size_of::<u64>();
    MappedWords::map(map, words).context("mapping the sweep's departure table")
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name).ok_or_else(|| anyhow!("no {name} map"))
}

/// Whether the XDP program went onto the interface.
enum Attached {
    Yes,
    /// Another XDP program holds the hook (the kernel's error, for the message).
    HookTaken(ProgramError),
}

/// Attaches the reply matcher in `mode`, and only in it: a driver that refuses native XDP is
/// an error, since falling back would hide from the user what the run did to the interface.
fn attach_xdp(ebpf: &mut Ebpf, interface: &Interface, mode: AttachMode) -> Result<Attached> {
    let program: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .ok_or_else(|| anyhow!("no {XDP_PROGRAM} program in the object"))?
        .try_into()?;
    program.load().map_err(|error| load_error("XDP", error))?;
    let flags = match mode {
        AttachMode::Generic => XdpMode::Skb,
        AttachMode::Native => XdpMode::Driver,
    };
    match program.attach_to_if_index(interface.index, flags) {
        Ok(_) => Ok(Attached::Yes),
        Err(error) if hook_taken(&error) => Ok(Attached::HookTaken(error)),
        Err(error) => Err(attach_error(interface, mode, error)),
    }
}

/// Attaches the reply matcher at TCX ingress, last, behind whatever filters the interface
/// already has.
fn attach_ingress(ebpf: &mut Ebpf, interface: &Interface, xdp_taken: bool) -> Result<Hook> {
    attach_tc(
        ebpf,
        interface,
        INGRESS_PROGRAM,
        TcAttachType::Ingress,
        LinkOrder::last(),
    )
    .context("attaching the reply matcher at TCX ingress")?;
    Ok(Hook::TcxIngress { xdp_taken })
}

/// Attaches the departure-timing program to `interface`'s egress as a TCX link, which, like
/// the XDP link, the kernel removes when prober exits. Without TCX (kernels before 6.6) aya
/// would need a clsact qdisc, which outlives the process; prober then makes do with
/// userspace send times rather than leave a qdisc behind.
fn attach_egress(ebpf: &mut Ebpf, interface: &Interface) -> Departures {
    if !kernel::has_tcx() {
        return Departures::Userspace("the kernel has no TCX links".into());
    }
    // First, so that no program before it can end the packet's way before it is timed.
    match attach_tc(
        ebpf,
        interface,
        EGRESS_PROGRAM,
        TcAttachType::Egress,
        LinkOrder::first(),
    ) {
        Ok(()) => Departures::TcEgress,
        Err(error) => Departures::Userspace(format!("TC egress not attached: {error:#}")),
    }
}

/// Loads the classifier `name` and attaches it to `interface` as a TCX link at `order`.
fn attach_tc(
    ebpf: &mut Ebpf,
    interface: &Interface,
    name: &str,
    direction: TcAttachType,
    order: LinkOrder,
) -> Result<()> {
    let program: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("no {name} program in the object"))?
        .try_into()?;
    program
        .load()
        .map_err(|error| load_error(&format!("TC {direction:?}"), error))?;
    program.attach_with_options(&interface.name, direction, TcAttachOptions::TcxOrder(order))?;
    Ok(())
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

/// The kernel's answer when the interface's XDP hook holds another program.
fn hook_taken(error: &ProgramError) -> bool {
    matches!(
        io_error(error).and_then(io::Error::raw_os_error),
        Some(libc::EBUSY) | Some(libc::EEXIST)
    )
}

fn attach_error(interface: &Interface, mode: AttachMode, error: ProgramError) -> anyhow::Error {
    let name = &interface.name;
    let native = mode == AttachMode::Native;
    // aya's message names only the system call; the kernel's error is its source.
    let cause = match io_error(&error) {
        Some(io_error) => format!("{error}: {io_error}"),
        None => error.to_string(),
    };
    let reason = match io_error(&error).and_then(io::Error::raw_os_error) {
        Some(libc::EBUSY) | Some(libc::EEXIST) => {
            format!("another XDP program is already attached (another prober running on {name}?)")
        }
        Some(libc::EPERM) => "permission denied (needs CAP_NET_ADMIN and CAP_BPF)".to_string(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) if native => {
            format!("its driver has no native XDP{GENERIC_HINT}")
        }
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => "the kernel has no XDP support on it".into(),
        // Drivers refuse native XDP for reasons of their own (an MTU too large, too few
        // queues): the kernel's only explanation is the error number.
        _ if native => format!("the driver refused native XDP ({cause}){GENERIC_HINT}"),
        _ => cause,
    };
    let in_mode = if native { " in native mode" } else { "" };
    anyhow!("cannot attach the XDP program to {name}{in_mode}: {reason}")
}

/// What a refused native attach can do instead.
const GENERIC_HINT: &str = "; --xdp-mode generic (the default) works on any interface";

#[cfg(test)]
mod tests {
    use aya_obj::Object;

    use super::*;

    #[test]
    fn a_refused_attach_says_why_in_one_line() {
        let interface = Interface {
            index: 7,
            name: "eth9".into(),
        };
        let refused = |mode, errno| {
            let error = ProgramError::SyscallError(aya::sys::SyscallError {
                call: "bpf_link_create",
                io_error: io::Error::from_raw_os_error(errno),
            });
            attach_error(&interface, mode, error).to_string()
        };
        assert_eq!(
            refused(AttachMode::Native, libc::EOPNOTSUPP),
            "cannot attach the XDP program to eth9 in native mode: its driver has no native XDP; \
             --xdp-mode generic (the default) works on any interface"
        );
        assert_eq!(
            refused(AttachMode::Native, libc::ERANGE),
            "cannot attach the XDP program to eth9 in native mode: the driver refused native XDP \
             (`bpf_link_create` failed: Numerical result out of range (os error 34)); \
             --xdp-mode generic (the default) works on any interface"
        );
        for mode in [AttachMode::Generic, AttachMode::Native] {
            assert!(
                refused(mode, libc::EBUSY).contains("another XDP program is already attached"),
                "{mode}"
            );
        }
        assert_eq!(
            refused(AttachMode::Generic, libc::EOPNOTSUPP),
            "cannot attach the XDP program to eth9: the kernel has no XDP support on it"
        );
    }

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
            SWEEP_DEPARTURES_MAP,
            NEIGHBOURS_MAP,
            "AYA_LOGS",
        ] {
            assert!(object.maps.contains_key(map), "no map {map}");
        }
        for program in [XDP_PROGRAM, INGRESS_PROGRAM, EGRESS_PROGRAM] {
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
