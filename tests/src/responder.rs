//! Ground truth for RTTs: a host played in userspace behind a TAP device, answering each probe after
//! a delay it controls and timing itself.
//!
//! The kernel has no netem here, so the only honest reference for "how long did the far end take" is
//! a far end that measures it: [`DelayedResponder`] stamps CLOCK_MONOTONIC (the clock of
//! `bpf_ktime_get_ns`) right after `read()` hands it a request and right before it hands the reply
//! to `write()`. The request left the host before the first stamp and the reply reaches the host's
//! XDP hook after the second, so a kernel-timed RTT can only exceed the hold time between them.
//!
//! By how much: mostly the responder thread's wake-up (10–130 µs in this VM), which is no part of
//! the network. So the responder also records when the host's kernel handed each request to the TAP,
//! from a packet socket bound to it (the kernel stamps each frame it passes to the device). From
//! that stamp to the reply's `write()` is [`Held::ideal_rtt_ns`]: what a prober whose timestamps
//! were taken exactly where frames enter and leave the TAP would measure. A kernel-timed prober stays
//! a few µs above it.
//!
//! [`DelayedResponder::start_as_vm`] plays a VM instead: frames cross the TAP with virtio-net
//! headers, its TCP segments leave their checksums to offload, and it notes how each RST that
//! reaches it was checksummed ([`DelayedResponder::rsts`]).
//!
//! The TAP is created without `TUNSETPERSIST`, so it exists exactly as long as its file descriptor is
//! open: dropping the responder (also while a test unwinds from a panic) closes it and the kernel
//! deletes the interface, and a test process killed outright leaves nothing behind either. The
//! descriptor is close-on-exec, so a prober or hping3 started meanwhile cannot keep it alive.

use crate::packets::{
    echo_reply_message, pseudo_header, IpHeader, Segment, IPPROTO_ICMP, IPPROTO_TCP, TCP_ACK,
    TCP_RST, TCP_SYN,
};
use crate::{allocate_30, internet_checksum, run_ip, COUNTER};
use anyhow::{bail, Context, Result};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request and its reply, in CLOCK_MONOTONIC nanoseconds.
#[derive(Clone, Debug)]
pub struct Held {
    pub probe: ProbeId,
    /// When the host's kernel passed the request to the TAP: the timestamp of its copy on a packet
    /// socket bound to the TAP (taken in `dev_queue_xmit_nit`, after TC egress and the qdisc, right
    /// before the TAP's transmit). None if that socket did not see the frame.
    pub queued_ns: Option<u64>,
    /// Taken right after `read()` returned the request.
    pub read_ns: u64,
    /// Taken right before the reply went to `write()`. Not after it returns: on a TAP, `write()` runs
    /// the host's whole receive path for the reply (an XDP program on the TAP, IP, TCP answering a
    /// SYN-ACK with its own RST, packet sockets), which takes 5–70 µs here and is the prober's side
    /// of the wire, not the responder's hold.
    pub written_ns: u64,
    /// When the reply reached the host's stack: the stamp of the same packet socket's copy of it,
    /// taken inside `write()` just after any XDP program on the TAP has seen the reply. None if
    /// the socket missed it. `delivered_ns - written_ns` bounds how late a kernel receive stamp can
    /// be for reasons of the responder's, not the prober's: a stalled `write()`.
    pub delivered_ns: Option<u64>,
}

impl Held {
    /// How long the responder held the probe: `written_ns - read_ns`. A lower bound for any RTT
    /// taken in the host's kernel.
    pub fn hold_ns(&self) -> u64 {
        self.written_ns - self.read_ns
    }

    /// From the request's entering the TAP to the reply's: `written_ns - queued_ns`. The RTT a
    /// prober timestamping exactly at the TAP would measure; still a lower bound for a kernel-timed
    /// RTT (TC egress comes before the TAP, XDP after the reply's `write()`), and a close one.
    pub fn ideal_rtt_ns(&self) -> Option<u64> {
        self.queued_ns.map(|queued| self.written_ns - queued)
    }

    /// How long `write()` took to hand the reply to the host's stack (see `delivered_ns`).
    pub fn write_path_ns(&self) -> Option<u64> {
        self.delivered_ns
            .map(|delivered| delivered.saturating_sub(self.written_ns))
    }
}

/// Which probe a request was, as the prober sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeId {
    Tcp { source_port: u16, dest_port: u16 },
    IcmpEcho { id: u16, seq: u16 },
}

/// A RST that reached the responder: prober's answer to a SYN-ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrivedRst {
    pub dest_port: u16,
    /// It came marked NEEDS_CSUM (only to a VM, [`DelayedResponder::start_as_vm`]): its checksum
    /// left to the receiver's device to complete, which the responder did before checking it.
    pub left_to_offload: bool,
    /// Its checksum is right, as the receiver's TCP checks it.
    pub checksum_right: bool,
}

/// How frames cross the TAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nic {
    /// Bare Ethernet frames.
    Plain,
    /// Each behind a `virtio_net_hdr`, as between a VM and its host: the responder's TCP segments
    /// leave their checksums to offload (NEEDS_CSUM, the field just the pseudo-header's sum), as a
    /// guest's virtio-net driver sends them.
    VirtioNet,
}

/// `struct virtio_net_hdr` (little-endian), and its flag for a checksum left to offload.
const VIRTIO_NET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;

impl Nic {
    fn header_len(self) -> usize {
        match self {
            Nic::Plain => 0,
            Nic::VirtioNet => VIRTIO_NET_HDR_LEN,
        }
    }
}

/// A host at [`DelayedResponder::target`] behind a TAP device in the caller's namespace. It answers
/// ARP for its address at once, and ICMP echo requests and TCP SYNs to it (SYN-ACK on an open port,
/// RST-ACK otherwise) each a set delay after it read them; it ignores everything else.
pub struct DelayedResponder {
    interface: String,
    host_addr: Ipv4Addr,
    target: Ipv4Addr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the caller and the responder's thread share.
struct Shared {
    delay_ns: AtomicU64,
    stop: AtomicBool,
    answered: Mutex<Vec<Held>>,
    rsts: Mutex<Vec<ArrivedRst>>,
}

/// The responder's MAC address (locally administered, unicast).
const RESPONDER_MAC: [u8; 6] = [0x02, 0x70, 0x72, 0x62, 0x74, 0x02];
/// How long before a reply is due the responder stops sleeping and spins on the clock: covers the
/// wake-up latency of a timed sleep, so replies leave on time instead of late.
const SPIN_NS: u64 = 100_000;
/// Longest sleep with nothing to send, so that a stop request is noticed soon.
const IDLE_WAIT_NS: u64 = 20_000_000;
/// Window of the SYN-ACK, and its MSS option: what Linux sends on a 1500-byte-MTU link with default
/// buffers, so that replies look like the namespace hosts' in the other tests.
const SYN_ACK_WINDOW: u16 = 64240;
const SYN_ACK_MSS: u16 = 1460;

const ETH_HEADER_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;

impl DelayedResponder {
    /// A uniquely named TAP (`prbt<pid in hex>x<n>`) in the caller's namespace with a /30 from the
    /// testbed's allocator: the host side gets .1 on the TAP, the responder plays .2. It answers ARP
    /// for .2, and ICMP echo requests and TCP SYNs to .2 (SYN-ACK for `open_ports`, RST-ACK
    /// otherwise) each `delay` after it read the request; it ignores everything else.
    pub fn start(delay: Duration, open_ports: &[u16]) -> Result<DelayedResponder> {
        DelayedResponder::start_on(Nic::Plain, delay, open_ports)
    }

    /// [`DelayedResponder::start`] for a VM behind the TAP, answering at once: frames cross it
    /// with virtio-net headers (`IFF_VNET_HDR`), and the responder's TCP segments leave their
    /// checksums to offload, as a guest's virtio-net driver sends them.
    pub fn start_as_vm(open_ports: &[u16]) -> Result<DelayedResponder> {
        DelayedResponder::start_on(Nic::VirtioNet, Duration::ZERO, open_ports)
    }

    fn start_on(nic: Nic, delay: Duration, open_ports: &[u16]) -> Result<DelayedResponder> {
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let interface = format!("prbt{pid:x}x{n:x}");
        if interface.len() > 15 {
            bail!("interface name {interface} longer than IFNAMSIZ-1 (too many responders in one process?)");
        }
        let tap = open_tap(&interface, nic)?;
        // Bound before the link is up, so it sees every frame the host sends to the responder.
        let frames = FrameLog::open(&interface)?;
        // Without IPv6 the kernel sends no router solicitations or MLD reports on the TAP: nothing for
        // the responder to wake up for.
        let ipv6 = Path::new("/proc/sys/net/ipv6/conf").join(&interface);
        if ipv6.exists() {
            std::fs::write(ipv6.join("disable_ipv6"), "1")
                .with_context(|| format!("disabling IPv6 on {interface}"))?;
        }
        let (_alloc, net) = allocate_30(pid.wrapping_mul(137).wrapping_add(n))?;
        let host_addr = Ipv4Addr::from(net + 1);
        let target = Ipv4Addr::from(net + 2);
        run_ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &interface])?;
        run_ip(&["link", "set", "dev", &interface, "up"])?;

        let shared = Arc::new(Shared {
            delay_ns: AtomicU64::new(duration_ns(delay)),
            stop: AtomicBool::new(false),
            answered: Mutex::new(Vec::new()),
            rsts: Mutex::new(Vec::new()),
        });
        let host = Host {
            addr: target,
            open_ports: open_ports.to_vec(),
            next_ip_id: 1,
        };
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("responder {interface}"))
            .spawn(move || serve(tap, nic, frames, host, &thread_shared))
            .context("starting the responder thread")?;
        Ok(DelayedResponder {
            interface,
            host_addr,
            target,
            shared,
            thread: Some(thread),
        })
    }

    /// The delay for requests read from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ns
            .store(duration_ns(delay), Ordering::SeqCst);
    }

    /// The address the responder plays (.2 of the /30): probe this.
    pub fn target(&self) -> Ipv4Addr {
        self.target
    }

    /// The host side's address on the TAP (.1 of the /30).
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// The TAP's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Every request answered so far, in the order the replies were written.
    pub fn answered(&self) -> Vec<Held> {
        self.shared.answered.lock().unwrap().clone()
    }

    /// Every RST that reached the responder so far, in the order they came.
    pub fn rsts(&self) -> Vec<ArrivedRst> {
        self.shared.rsts.lock().unwrap().clone()
    }

    /// Forgets the requests answered so far.
    pub fn clear(&self) {
        self.shared.answered.lock().unwrap().clear();
    }
}

impl Drop for DelayedResponder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // The thread owns the TAP's descriptor: once it has returned (or panicked) the descriptor is
        // closed and the kernel has deleted the interface.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens /dev/net/tun and attaches it to a new TAP named `name` that carries Ethernet frames (no
/// packet-information prefix), as `nic` has them. Non-blocking, so the responder can drain it and
/// spin.
fn open_tap(name: &str, nic: Nic) -> Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun")?;
    // SAFETY: an all-zero ifreq is valid (empty name, zero union).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let virtio_net_hdr = match nic {
        Nic::Plain => 0,
        Nic::VirtioNet => libc::IFF_VNET_HDR,
    };
    request.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | virtio_net_hdr) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes an ifreq, which `request` is, for the duration of the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut request) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("TUNSETIFF creating TAP {name}"));
    }
    Ok(file.into())
}

/// Frames the host's kernel passed to the TAP, with the kernel's timestamps, from a packet socket
/// bound to it that takes only outgoing frames.
struct FrameLog {
    socket: OwnedFd,
    /// Requests not yet read from the TAP, oldest first, in CLOCK_MONOTONIC.
    requests: VecDeque<(Vec<u8>, u64)>,
    /// Replies the host's stack received, oldest first, in CLOCK_MONOTONIC.
    delivered: VecDeque<(Vec<u8>, u64)>,
    buffer: Vec<u8>,
}

/// Frames logged and never asked about (requests the TAP dropped, ARP answers) are forgotten
/// beyond this many per direction.
const LOG_FRAMES: usize = 4096;

/// The stamp of `frame` in `log`, removing it and the older frames before it.
fn take_stamp(log: &mut VecDeque<(Vec<u8>, u64)>, frame: &[u8]) -> Option<u64> {
    let position = log.iter().position(|(logged, _)| logged == frame)?;
    log.drain(..=position).next_back().map(|(_, stamp)| stamp)
}

impl FrameLog {
    fn open(interface: &str) -> Result<FrameLog> {
        let all_protocols = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket call; the fd is owned by `socket` below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(all_protocols),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("packet socket");
        }
        // SAFETY: a fresh fd nobody else owns.
        let socket = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // Only frames the host sends (the requests) and the host receives (the replies): both
        // directions are stamped in the kernel, on the TAP's side of the prober's timestamps.
        let mut requests_and_replies = [
            // A = the packet type: take the whole frame if it is PACKET_OUTGOING or PACKET_HOST.
            bpf(
                libc::BPF_LD | libc::BPF_B | libc::BPF_ABS,
                0,
                0,
                (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32,
            ),
            bpf(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                1,
                0,
                u32::from(libc::PACKET_OUTGOING),
            ),
            bpf(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                0,
                1,
                u32::from(libc::PACKET_HOST),
            ),
            bpf(libc::BPF_RET | libc::BPF_K, 0, 0, u32::from(u16::MAX)),
            bpf(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
        ];
        let program = libc::sock_fprog {
            len: requests_and_replies.len() as u16,
            filter: requests_and_replies.as_mut_ptr(),
        };
        set_socket_option(&socket, libc::SO_ATTACH_FILTER, &program)
            .context("attaching the requests-and-replies filter")?;
        set_socket_option(&socket, libc::SO_TIMESTAMPNS, &1i32).context("SO_TIMESTAMPNS")?;
        // Room for thousands of frames, so a burst of probes is not lost before the loop drains it
        // (only root may exceed rmem_max; without it the default has to do).
        let _ = set_socket_option(&socket, libc::SO_RCVBUFFORCE, &(8i32 << 20));

        let name = std::ffi::CString::new(interface)?;
        // SAFETY: a NUL-terminated name that outlives the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("if_nametoindex({interface})"));
        }
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as libc::sa_family_t;
        address.sll_protocol = all_protocols;
        address.sll_ifindex = index as i32;
        // SAFETY: the address outlives the call and its length is given.
        let bound = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("binding a packet socket to {interface}"));
        }
        Ok(FrameLog {
            socket,
            requests: VecDeque::new(),
            delivered: VecDeque::new(),
            buffer: vec![0; 65536],
        })
    }

    /// When the kernel passed `frame` (just read from the TAP) to the TAP. The socket got its copy
    /// before the TAP got the frame, so draining the socket now finds it; the TAP delivers frames
    /// in the order the socket saw them, so frames logged before it were dropped by the TAP.
    fn queued_ns(&mut self, frame: &[u8]) -> Option<u64> {
        self.drain();
        take_stamp(&mut self.requests, frame)
    }

    /// When the host's stack received `reply`, just written to the TAP: `write()` delivers it
    /// before it returns, so draining the socket now finds it. Frames logged before it (ARP
    /// answers, which nobody asks about) go with it.
    fn delivered_ns(&mut self, reply: &[u8]) -> Option<u64> {
        self.drain();
        take_stamp(&mut self.delivered, reply)
    }

    fn drain(&mut self) {
        // Room for one timespec control message (and then some).
        let mut control = [0u64; 16];
        loop {
            let mut data = libc::iovec {
                iov_base: self.buffer.as_mut_ptr().cast(),
                iov_len: self.buffer.len(),
            };
            // SAFETY: all-zero msghdr and sockaddr_ll are valid; the buffers set below outlive
            // the call.
            let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            message.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
            message.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            message.msg_iov = &mut data;
            message.msg_iovlen = 1;
            message.msg_control = control.as_mut_ptr().cast();
            message.msg_controllen = std::mem::size_of_val(&control);
            // SAFETY: receives into the buffers `message` describes.
            let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut message, 0) };
            if n < 0 {
                return;
            }
            // The kernel's stamp is CLOCK_REALTIME; the offset to CLOCK_MONOTONIC is taken now, a
            // few µs later, so clock slewing cannot matter.
            let Some(realtime_ns) = timestamp_ns(&message) else {
                continue;
            };
            let monotonic_now = monotonic_ns();
            let realtime_now = clock_ns(libc::CLOCK_REALTIME);
            let queued_ns = monotonic_now.saturating_sub(realtime_now.saturating_sub(realtime_ns));
            let log = if from.sll_pkttype == libc::PACKET_HOST {
                &mut self.delivered
            } else {
                &mut self.requests
            };
            if log.len() == LOG_FRAMES {
                log.pop_front();
            }
            log.push_back((self.buffer[..n as usize].to_vec(), queued_ns));
        }
    }
}

/// A classic BPF instruction.
fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

fn set_socket_option<T>(socket: &OwnedFd, option: libc::c_int, value: &T) -> std::io::Result<()> {
    // SAFETY: `value` is a valid T of the given size for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The SO_TIMESTAMPNS stamp of a received message, in nanoseconds.
fn timestamp_ns(message: &libc::msghdr) -> Option<u64> {
    // SAFETY: walks the control messages the kernel wrote into `message`'s buffer.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(message) };
    while !header.is_null() {
        // SAFETY: a control message header inside the buffer (CMSG_FIRSTHDR/NXTHDR checked it).
        let cmsg = unsafe { &*header };
        if cmsg.cmsg_level == libc::SOL_SOCKET && cmsg.cmsg_type == libc::SCM_TIMESTAMPNS {
            // SAFETY: an SCM_TIMESTAMPNS message carries a timespec, possibly unaligned.
            let stamp: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(header).cast()) };
            return Some(stamp.tv_sec as u64 * 1_000_000_000 + stamp.tv_nsec as u64);
        }
        // SAFETY: as above.
        header = unsafe { libc::CMSG_NXTHDR(message, header) };
    }
    None
}

/// The host the responder plays.
struct Host {
    addr: Ipv4Addr,
    open_ports: Vec<u16>,
    /// IP id of the next ICMP echo reply (Linux sends those without DF, with a changing id).
    next_ip_id: u16,
}

/// A reply waiting for its time.
struct Pending {
    due_ns: u64,
    arrival: u64,
    queued_ns: Option<u64>,
    read_ns: u64,
    /// None for ARP, which is not a probe.
    probe: Option<ProbeId>,
    frame: Vec<u8>,
}

/// Replies are ordered by due time, then by arrival, so that replies due at the same moment leave in
/// the order their requests came.
impl Ord for Pending {
    fn cmp(&self, other: &Pending) -> std::cmp::Ordering {
        (self.due_ns, self.arrival).cmp(&(other.due_ns, other.arrival))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Pending) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Pending) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Pending {}

/// The responder's loop: write what is due, sleep until the next frame or until shortly before the
/// next reply is due (then spin), read every frame the TAP holds.
fn serve(tap: OwnedFd, nic: Nic, mut frames: FrameLog, mut host: Host, shared: &Shared) {
    // Timed sleeps end up to the thread's timer slack (50 µs by default) late; ask for none, since
    // the spin before each reply only covers the wake-up itself.
    // SAFETY: plain prctl on the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    // The lowest real-time priority: woken by a frame or its timer, the thread runs at once instead
    // of after whatever else (a build, the prober) holds the CPU, which made replies up to 1.3 ms
    // late under the default policy. It never runs long: it sleeps except in the last 100 µs before a
    // reply is due, and the kernel's RT throttling bounds even that. Without the privilege the
    // responder still works, only less punctually, and every hold time is measured either way.
    let lowest_fifo = libc::sched_param { sched_priority: 1 };
    // SAFETY: sets the calling thread's policy (pid 0) from a valid sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &lowest_fifo) };
    let mut pending = BinaryHeap::new();
    let mut arrivals = 0u64;
    let mut frame = vec![0u8; 65536];
    while !shared.stop.load(Ordering::SeqCst) {
        write_due(&tap, nic, &mut pending, &mut frames, shared);
        let now = monotonic_ns();
        let sleep_ns = match pending.peek() {
            Some(Reverse(next)) => next.due_ns.saturating_sub(now + SPIN_NS),
            None => IDLE_WAIT_NS,
        };
        if sleep_ns > 0 {
            wait_readable(&tap, sleep_ns);
        }
        // Drained on every pass, also while spinning, so that a request arriving meanwhile is stamped
        // when it arrives and not after the reply being waited for.
        loop {
            // SAFETY: reads into a buffer of the given length that outlives the call.
            let n = unsafe { libc::read(tap.as_raw_fd(), frame.as_mut_ptr().cast(), frame.len()) };
            let read_ns = monotonic_ns();
            if n < 0 {
                let err = std::io::Error::last_os_error();
                match err.kind() {
                    std::io::ErrorKind::WouldBlock => break,
                    std::io::ErrorKind::Interrupted => continue,
                    _ => panic!("responder: reading the TAP: {err}"),
                }
            }
            let (virtio_net_hdr, request) = frame[..n as usize].split_at_mut(nic.header_len());
            if let Some(rst) = arrived_rst(virtio_net_hdr, request, host.addr) {
                shared.rsts.lock().unwrap().push(rst);
                continue;
            }
            let queued_ns = frames.queued_ns(request);
            let Some((probe, reply)) = answer(request, &mut host) else {
                continue;
            };
            let reply = for_the_tap(nic, reply);
            let delay_ns = match probe {
                Some(_) => shared.delay_ns.load(Ordering::SeqCst),
                None => 0,
            };
            arrivals += 1;
            pending.push(Reverse(Pending {
                due_ns: read_ns + delay_ns,
                arrival: arrivals,
                queued_ns,
                read_ns,
                probe,
                frame: reply,
            }));
        }
    }
}

/// Writes every reply whose time has come, recording the probes' hold times.
fn write_due(
    tap: &OwnedFd,
    nic: Nic,
    pending: &mut BinaryHeap<Reverse<Pending>>,
    log: &mut FrameLog,
    shared: &Shared,
) {
    while let Some(Reverse(next)) = pending.peek() {
        if next.due_ns > monotonic_ns() {
            return;
        }
        let Some(Reverse(reply)) = pending.pop() else {
            return;
        };
        let written_ns = monotonic_ns();
        // SAFETY: writes from a buffer of the given length that outlives the call.
        let n = unsafe {
            libc::write(
                tap.as_raw_fd(),
                reply.frame.as_ptr().cast(),
                reply.frame.len(),
            )
        };
        if n != reply.frame.len() as isize {
            panic!(
                "responder: writing a {}-byte reply to the TAP: {}",
                reply.frame.len(),
                std::io::Error::last_os_error()
            );
        }
        if let Some(probe) = reply.probe {
            let delivered_ns = log.delivered_ns(&reply.frame[nic.header_len()..]);
            shared.answered.lock().unwrap().push(Held {
                probe,
                queued_ns: reply.queued_ns,
                read_ns: reply.read_ns,
                written_ns,
                delivered_ns,
            });
        }
    }
}

/// A RST to `addr` in `frame` (Ethernet, IPv4), judged as the receiver's stack would after its
/// device completed a checksum `virtio_net_hdr` (empty on a plain TAP) leaves to offload.
fn arrived_rst(virtio_net_hdr: &[u8], frame: &mut [u8], addr: Ipv4Addr) -> Option<ArrivedRst> {
    let ip = frame.get(ETH_HEADER_LEN..)?;
    if be16(frame, 12) != ETHERTYPE_IPV4 || ip.len() < 40 || ip[0] != 0x45 || ip[9] != IPPROTO_TCP {
        return None;
    }
    let (from, to, len) = (ipv4_at(ip, 12), ipv4_at(ip, 16), usize::from(be16(ip, 2)));
    if to != addr
        || len < 40
        || len > ip.len()
        || ip[20 + 13] & (TCP_SYN | TCP_RST | TCP_ACK) != TCP_RST
    {
        return None;
    }
    let left_to_offload = virtio_net_hdr
        .first()
        .is_some_and(|flags| flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0);
    if left_to_offload {
        let le16 = |at: usize| {
            usize::from(u16::from_le_bytes([
                virtio_net_hdr[at],
                virtio_net_hdr[at + 1],
            ]))
        };
        let (start, field) = (le16(6), le16(6) + le16(8));
        let sum = internet_checksum(frame.get(start..ETH_HEADER_LEN + len)?);
        frame
            .get_mut(field..field + 2)?
            .copy_from_slice(&sum.to_be_bytes());
    }
    let segment = &frame[ETH_HEADER_LEN + 20..ETH_HEADER_LEN + len];
    let pseudo = pseudo_header(from.into(), to.into(), IPPROTO_TCP, segment.len());
    Some(ArrivedRst {
        dest_port: be16(segment, 2),
        left_to_offload,
        checksum_right: internet_checksum(&[&pseudo[..], segment].concat()) == 0,
    })
}

/// `reply` as it crosses the TAP from `nic`: behind a virtio-net header, its TCP checksum left to
/// offload, from a VM.
fn for_the_tap(nic: Nic, mut reply: Vec<u8>) -> Vec<u8> {
    if nic == Nic::Plain {
        return reply;
    }
    let mut virtio_net_hdr = [0u8; VIRTIO_NET_HDR_LEN];
    let ip = &reply[ETH_HEADER_LEN..];
    if be16(&reply, 12) == ETHERTYPE_IPV4 && ip[9] == IPPROTO_TCP {
        let segment_len = usize::from(be16(ip, 2)) - 20;
        let pseudo = pseudo_header(
            ipv4_at(ip, 12).into(),
            ipv4_at(ip, 16).into(),
            IPPROTO_TCP,
            segment_len,
        );
        // Where the TCP header and its checksum field start in the frame.
        let start = ETH_HEADER_LEN + 20;
        let field = start + 16;
        reply[field..field + 2].copy_from_slice(&(!internet_checksum(&pseudo)).to_be_bytes());
        virtio_net_hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        virtio_net_hdr[6..8].copy_from_slice(&(start as u16).to_le_bytes());
        virtio_net_hdr[8..10].copy_from_slice(&16u16.to_le_bytes());
    }
    [&virtio_net_hdr[..], &reply].concat()
}

/// Sleeps until the TAP has a frame or `timeout_ns` passed (nanosecond resolution, unlike poll).
fn wait_readable(tap: &OwnedFd, timeout_ns: u64) {
    let mut fds = libc::pollfd {
        fd: tap.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: one valid pollfd and a timespec that outlive the call; no signal mask change. An error
    // (EINTR) only ends the wait early, which the loop tolerates.
    unsafe { libc::ppoll(&mut fds, 1, &timeout, std::ptr::null()) };
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec it is given.
    unsafe { libc::clock_gettime(clock, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn duration_ns(delay: Duration) -> u64 {
    u64::try_from(delay.as_nanos()).expect("delay fits in u64 nanoseconds")
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn ipv4_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

/// The reply to an Ethernet frame from the TAP, if it deserves one: `Some(probe)` for a probe,
/// `None` for ARP.
fn answer(frame: &[u8], host: &mut Host) -> Option<(Option<ProbeId>, Vec<u8>)> {
    if frame.len() < ETH_HEADER_LEN {
        return None;
    }
    let peer_mac: [u8; 6] = frame[6..12].try_into().ok()?;
    let payload = &frame[ETH_HEADER_LEN..];
    let (ethertype, probe, reply) = match be16(frame, 12) {
        ETHERTYPE_ARP => (ETHERTYPE_ARP, None, answer_arp(payload, host.addr)?),
        ETHERTYPE_IPV4 => {
            let (probe, reply) = answer_ipv4(payload, host)?;
            (ETHERTYPE_IPV4, Some(probe), reply)
        }
        _ => return None,
    };
    let mut out = Vec::with_capacity(ETH_HEADER_LEN + reply.len());
    out.extend_from_slice(&peer_mac);
    out.extend_from_slice(&RESPONDER_MAC);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(&reply);
    Some((probe, out))
}

/// An ARP reply for a request (Ethernet/IPv4) that asks for `addr`.
fn answer_arp(arp: &[u8], addr: Ipv4Addr) -> Option<Vec<u8>> {
    const REQUEST: u16 = 1;
    const REPLY: u16 = 2;
    if arp.len() < 28 || arp[0..6] != [0, 1, 8, 0, 6, 4] || be16(arp, 6) != REQUEST {
        return None;
    }
    if ipv4_at(arp, 24) != addr {
        return None;
    }
    let mut reply = arp[..28].to_vec();
    reply[6..8].copy_from_slice(&REPLY.to_be_bytes());
    // Target: the asker (its hardware and protocol address); sender: us.
    reply[18..28].copy_from_slice(&arp[8..18]);
    reply[8..14].copy_from_slice(&RESPONDER_MAC);
    reply[14..18].copy_from_slice(&addr.octets());
    Some(reply)
}

/// The reply to an unfragmented IPv4 packet for `host`: an echo reply to an echo request, SYN-ACK or
/// RST-ACK to a bare SYN.
fn answer_ipv4(ip: &[u8], host: &mut Host) -> Option<(ProbeId, Vec<u8>)> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(be16(ip, 2));
    let fragmented = be16(ip, 6) & 0x3fff != 0;
    if header_len < 20 || total_len < header_len || total_len > ip.len() || fragmented {
        return None;
    }
    if ipv4_at(ip, 16) != host.addr {
        return None;
    }
    let peer = ipv4_at(ip, 12);
    let body = &ip[header_len..total_len];
    match ip[9] {
        IPPROTO_ICMP => answer_echo(body, peer, host),
        IPPROTO_TCP => answer_syn(body, peer, host),
        _ => None,
    }
}

/// An echo reply (same id, sequence and data) to an echo request.
fn answer_echo(icmp: &[u8], peer: Ipv4Addr, host: &mut Host) -> Option<(ProbeId, Vec<u8>)> {
    const ECHO_REQUEST: u8 = 8;
    if icmp.len() < 8 || icmp[0] != ECHO_REQUEST || icmp[1] != 0 {
        return None;
    }
    let probe = ProbeId::IcmpEcho {
        id: be16(icmp, 4),
        seq: be16(icmp, 6),
    };
    let reply = echo_reply_message(host.addr.into(), peer.into(), icmp);
    let header = IpHeader {
        id: host.next_ip_id,
        ..IpHeader::new(host.addr.into(), peer.into(), IPPROTO_ICMP)
    };
    host.next_ip_id = host.next_ip_id.wrapping_add(1);
    Some((probe, header.packet(&reply)))
}

/// SYN-ACK (with an MSS option, as Linux) to a SYN for an open port, RST-ACK (window 0) otherwise;
/// both acknowledge the SYN's sequence number + 1. Segments other than a bare SYN get nothing.
fn answer_syn(tcp: &[u8], peer: Ipv4Addr, host: &Host) -> Option<(ProbeId, Vec<u8>)> {
    if tcp.len() < 20 || tcp[13] & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
        return None;
    }
    let (source_port, dest_port) = (be16(tcp, 0), be16(tcp, 2));
    let probe = ProbeId::Tcp {
        source_port,
        dest_port,
    };
    let ack = be32(tcp, 4).wrapping_add(1);
    let mss = [2, 4, (SYN_ACK_MSS >> 8) as u8, SYN_ACK_MSS as u8];
    let segment = if host.open_ports.contains(&dest_port) {
        // Any initial sequence number will do; one that differs per connection looks like a host's.
        let isn = 0x5eed_0000 ^ (u32::from(source_port) << 16 | u32::from(dest_port));
        Segment {
            source_port: dest_port,
            dest_port: source_port,
            seq: isn,
            ack,
            flags: TCP_SYN | TCP_ACK,
            window: SYN_ACK_WINDOW,
            options: &mss,
        }
    } else {
        Segment {
            source_port: dest_port,
            dest_port: source_port,
            seq: 0,
            ack,
            flags: TCP_RST | TCP_ACK,
            window: 0,
            options: &[],
        }
    };
    let (from, to) = (host.addr.into(), peer.into());
    // Linux answers SYNs with DF and IP id 0.
    let header = IpHeader {
        dont_fragment: true,
        ..IpHeader::new(from, to, IPPROTO_TCP)
    };
    Some((probe, header.packet(&segment.bytes(from, to))))
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::internet_checksum;

    const TTL: u8 = 64;
    const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 2);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 1);
    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

    fn host() -> Host {
        Host {
            addr: HOST,
            open_ports: vec![80],
            next_ip_id: 1,
        }
    }

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        [
            &RESPONDER_MAC[..],
            &PEER_MAC,
            &ethertype.to_be_bytes(),
            payload,
        ]
        .concat()
    }

    fn ipv4_packet(protocol: u8, id: u16, payload: &[u8]) -> Vec<u8> {
        let header = IpHeader {
            id,
            ..IpHeader::new(PEER.into(), HOST.into(), protocol)
        };
        header.packet(payload)
    }

    fn syn(dest_port: u16) -> Vec<u8> {
        let segment = Segment {
            source_port: 40000,
            dest_port,
            seq: 1000,
            ack: 0,
            flags: TCP_SYN,
            window: 512,
            options: &[],
        };
        let bytes = segment.bytes(PEER.into(), HOST.into());
        ethernet(ETHERTYPE_IPV4, &ipv4_packet(IPPROTO_TCP, 7, &bytes))
    }

    /// The reply's IPv4 packet after checking its Ethernet header and both checksums.
    fn checked_ipv4(reply: &[u8]) -> &[u8] {
        assert_eq!(reply[0..6], PEER_MAC);
        assert_eq!(reply[6..12], RESPONDER_MAC);
        assert_eq!(be16(reply, 12), ETHERTYPE_IPV4);
        let ip = &reply[ETH_HEADER_LEN..];
        assert_eq!(internet_checksum(&ip[..20]), 0, "IP checksum");
        assert_eq!(usize::from(be16(ip, 2)), ip.len());
        assert_eq!((ipv4_at(ip, 12), ipv4_at(ip, 16), ip[8]), (HOST, PEER, TTL));
        if ip[9] == IPPROTO_TCP {
            let pseudo = [
                &ip[12..20],
                &[0, 6],
                &((ip.len() - 20) as u16).to_be_bytes(),
                &ip[20..],
            ]
            .concat();
            assert_eq!(internet_checksum(&pseudo), 0, "TCP checksum");
        } else {
            assert_eq!(internet_checksum(&ip[20..]), 0, "ICMP checksum");
        }
        ip
    }

    #[test]
    fn open_port_gets_a_syn_ack_like_linux() {
        let (probe, reply) = answer(&syn(80), &mut host()).unwrap();
        assert_eq!(
            probe,
            Some(ProbeId::Tcp {
                source_port: 40000,
                dest_port: 80
            })
        );
        let ip = checked_ipv4(&reply);
        assert_eq!(
            (ip.len(), ip[6], be16(ip, 4)),
            (44, 0x40, 0),
            "44 bytes, DF, id 0"
        );
        let tcp = &ip[20..];
        assert_eq!((be16(tcp, 0), be16(tcp, 2)), (80, 40000));
        assert_eq!(be32(tcp, 8), 1001, "acknowledges seq + 1");
        assert_eq!(
            (tcp[13], be16(tcp, 14)),
            (TCP_SYN | TCP_ACK, SYN_ACK_WINDOW)
        );
    }

    #[test]
    fn closed_port_gets_a_rst_ack_with_window_0() {
        let (_, reply) = answer(&syn(81), &mut host()).unwrap();
        let ip = checked_ipv4(&reply);
        let tcp = &ip[20..];
        assert_eq!(ip.len(), 40);
        assert_eq!(
            (tcp[13], be32(tcp, 8), be16(tcp, 14)),
            (TCP_RST | TCP_ACK, 1001, 0)
        );
    }

    #[test]
    fn echo_request_gets_an_echo_reply_with_its_id_seq_and_data() {
        let mut request = vec![8, 0, 0, 0, 0x12, 0x34, 0, 5, b'h', b'i'];
        let checksum = internet_checksum(&request);
        request[2..4].copy_from_slice(&checksum.to_be_bytes());
        let frame = ethernet(ETHERTYPE_IPV4, &ipv4_packet(IPPROTO_ICMP, 9, &request));
        let (probe, reply) = answer(&frame, &mut host()).unwrap();
        assert_eq!(probe, Some(ProbeId::IcmpEcho { id: 0x1234, seq: 5 }));
        let ip = checked_ipv4(&reply);
        assert_eq!((ip[20], &ip[24..]), (0, &request[4..]));
    }

    #[test]
    fn arp_request_for_the_host_gets_its_mac() {
        let request = [
            &[0, 1, 8, 0, 6, 4, 0, 1][..],
            &PEER_MAC,
            &PEER.octets(),
            &[0; 6],
            &HOST.octets(),
        ]
        .concat();
        let (probe, reply) = answer(&ethernet(ETHERTYPE_ARP, &request), &mut host()).unwrap();
        assert_eq!(probe, None);
        let arp = &reply[ETH_HEADER_LEN..];
        assert_eq!(be16(arp, 6), 2);
        assert_eq!((&arp[8..14], ipv4_at(arp, 14)), (&RESPONDER_MAC[..], HOST));
        assert_eq!((&arp[18..24], ipv4_at(arp, 24)), (&PEER_MAC[..], PEER));
        let other = [&request[..24], &[198, 18, 4, 3]].concat();
        assert!(answer(&ethernet(ETHERTYPE_ARP, &other), &mut host()).is_none());
    }

    #[test]
    fn a_vm_leaves_tcp_checksums_to_offload_and_completes_those_left_to_it() {
        let rst = Segment {
            source_port: 40000,
            dest_port: 80,
            seq: 7,
            ack: 0,
            flags: TCP_RST,
            window: 0,
            options: &[],
        };
        let frame = ethernet(
            ETHERTYPE_IPV4,
            &ipv4_packet(IPPROTO_TCP, 0, &rst.bytes(PEER.into(), HOST.into())),
        );
        let arrived = |left_to_offload, checksum_right| {
            Some(ArrivedRst {
                dest_port: 80,
                left_to_offload,
                checksum_right,
            })
        };
        assert_eq!(
            arrived_rst(&[], &mut frame.clone(), HOST),
            arrived(false, true)
        );
        let mut offloaded = for_the_tap(Nic::VirtioNet, frame.clone());
        let (header, rest) = offloaded.split_at_mut(VIRTIO_NET_HDR_LEN);
        assert_eq!(arrived_rst(header, rest, HOST), arrived(true, true));
        // A complete checksum marked as left to offload comes out wrong once completed.
        let mut marked = for_the_tap(Nic::VirtioNet, frame.clone());
        marked[VIRTIO_NET_HDR_LEN..].copy_from_slice(&frame);
        let (header, rest) = marked.split_at_mut(VIRTIO_NET_HDR_LEN);
        assert_eq!(arrived_rst(header, rest, HOST), arrived(true, false));
        assert_eq!(arrived_rst(&[], &mut frame.clone(), PEER), None);
    }

    #[test]
    fn everything_else_is_ignored() {
        let mut ack = syn(80);
        ack[ETH_HEADER_LEN + 20 + 13] = TCP_ACK;
        assert!(answer(&ack, &mut host()).is_none());
        assert!(answer(&ethernet(0x86dd, &[0x60; 40]), &mut host()).is_none());
        let mut elsewhere = syn(80);
        elsewhere[ETH_HEADER_LEN + 19] = 3;
        assert!(answer(&elsewhere, &mut host()).is_none());
    }
}
