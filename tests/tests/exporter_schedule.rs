//! How `prober exporter` schedules and shows its targets:
//! (a) the scheduler spreads many targets over their interval, with no bursts, and probes each
//!     one once per interval: the probes' arrival times are read on the namespace's end of the
//!     veth (the kernel's receive stamps of a packet socket there), for ICMP and for TCP SYN to
//!     a port with a real listener;
//! (b) the page at `/`: HTML, one row per configured target, with its loss.

use prober_tests::exporter::Exporter;
use prober_tests::{forger, require_root, TestHost, FILTERED_PORT, OPEN_PORT};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Targets of the spread test, all at one interval.
const TARGETS: u32 = 100;
const INTERVAL: Duration = Duration::from_secs(1);
/// How long arrivals are read, after the warm-up.
const CAPTURE: Duration = Duration::from_secs(3);
/// The window probes are counted in.
const WINDOW: Duration = Duration::from_millis(100);
/// How far one target's consecutive probes may be from one interval apart.
const PERIOD_SLACK: Duration = Duration::from_millis(50);
/// Bound on the wait for every target's first probe.
const WARM_UP: Duration = Duration::from_secs(20);
/// Room for the probes of the capture (and the replies going out past the same socket).
const RECEIVE_BUFFER: i32 = 16 << 20;

/// A probe as it arrived in the namespace: when (kernel stamp) and to which address.
struct Arrival {
    at: Duration,
    to: Ipv4Addr,
}

/// Which packets are probes: the IPv4 packet's protocol and the test on its transport header.
#[derive(Clone, Copy)]
enum Probe {
    /// ICMP echo request.
    Icmp,
    /// TCP SYN (without ACK) to this port.
    TcpSyn(u16),
}

impl Probe {
    fn is_one(self, ip: &[u8]) -> bool {
        let header = usize::from(ip[0] & 0x0f) * 4;
        let Some(transport) = ip.get(header..) else {
            return false;
        };
        match self {
            Probe::Icmp => ip[9] == libc::IPPROTO_ICMP as u8 && transport.first() == Some(&8),
            Probe::TcpSyn(port) => {
                ip[9] == libc::IPPROTO_TCP as u8
                    && transport.len() >= 20
                    && u16::from_be_bytes([transport[2], transport[3]]) == port
                    && transport[13] & 0x12 == 0x02
            }
        }
    }

    fn config(self, hosts: &[Ipv4Addr]) -> String {
        let hosts: Vec<String> = hosts.iter().map(|a| format!("\"{a}\"")).collect();
        let kind = match self {
            Probe::Icmp => "icmp".to_owned(),
            Probe::TcpSyn(port) => format!("tcp-syn\n    port: {port}"),
        };
        format!(
            "targets:\n  - hosts: [{}]\n    probe: {kind}\n    interval: {}ms\n",
            hosts.join(", "),
            INTERVAL.as_millis()
        )
    }
}

/// A packet socket on the namespace's end of the veth, with a receive buffer for seconds of
/// probes, read after the fact.
fn open_capture(host: &TestHost) -> OwnedFd {
    let interface = host.peer_if.clone();
    let socket = host
        .in_ns(move || forger::open_socket(&interface))
        .expect("entering the namespace")
        .expect("a packet socket in the namespace");
    // A receive stamp with every frame.
    for (option, value) in [
        (libc::SO_RCVBUFFORCE, RECEIVE_BUFFER),
        (libc::SO_TIMESTAMPNS, 1),
    ] {
        // SAFETY: plain setsockopt of an int that outlives the call.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as u32,
            )
        };
        assert_eq!(
            set,
            0,
            "setsockopt {option}: {}",
            std::io::Error::last_os_error()
        );
    }
    socket
}

/// The next frame queued on `socket` into `buffer`, with its kernel receive stamp (the
/// SCM_TIMESTAMPNS message) on CLOCK_REALTIME; None once the read times out.
fn read_stamped<'a>(socket: &OwnedFd, buffer: &'a mut [u8]) -> Option<(&'a [u8], Duration)> {
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid start.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: the buffers the message points to outlive the call, their sizes given.
    let read = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut message, 0) };
    let read = usize::try_from(read).ok()?;
    // SAFETY: walks the control messages the kernel wrote within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&message) };
    while !cmsg.is_null() {
        // SAFETY: a header within the control buffer.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
            // SAFETY: SCM_TIMESTAMPNS carries a timespec, maybe unaligned.
            let stamp: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            let at = Duration::new(stamp.tv_sec as u64, stamp.tv_nsec as u32);
            return Some((&buffer[..read], at));
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&message, cmsg) };
    }
    panic!("a frame without its SCM_TIMESTAMPNS");
}

/// The probes of kind `probe` from `source` queued on `socket`, with their receive stamps.
fn arrivals(socket: &OwnedFd, probe: Probe, source: Ipv4Addr) -> Vec<Arrival> {
    const ETHERNET: usize = 14;
    let mut buffer = vec![0u8; 65536];
    let mut arrivals = Vec::new();
    while let Some((frame, at)) = read_stamped(socket, &mut buffer) {
        let Some(ip) = frame.get(ETHERNET..) else {
            continue;
        };
        let ipv4 = frame[12..14] == [0x08, 0x00] && ip.len() >= 20 && ip[0] >> 4 == 4;
        if !ipv4 || ip[12..16] != source.octets() || !probe.is_one(ip) {
            continue;
        }
        arrivals.push(Arrival {
            at,
            to: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        });
    }
    arrivals
}

/// Now on CLOCK_REALTIME, the clock of the sockets' receive stamps.
fn realtime() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
}

/// Waits until every target of `exporter` has sent a probe, then one more interval.
fn warm_up(exporter: &Exporter, targets: usize) {
    let deadline = Instant::now() + WARM_UP;
    loop {
        let sending = exporter
            .metrics()
            .iter()
            .filter(|s| s.name == "prober_probes_sent_total" && s.value >= 1.0)
            .count();
        if sending >= targets {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sending} of {targets} targets sent a probe within {WARM_UP:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(INTERVAL);
}

/// `probe` to [`TARGETS`] routed addresses every [`INTERVAL`] from one exporter: the arrivals
/// in each [`WINDOW`] of the capture stay near the mean, and each address gets one probe per
/// interval.
fn spread(probe: Probe) {
    require_root();
    let mut host = TestHost::new().unwrap();
    host.listen_tcp(OPEN_PORT).unwrap();
    let addrs = host.add_routed_addresses(TARGETS).unwrap();
    let exporter = Exporter::start(&[], Some(&probe.config(&addrs))).unwrap();
    warm_up(&exporter, addrs.len());

    let socket = open_capture(&host);
    let opened = realtime();
    std::thread::sleep(CAPTURE);
    let closed = realtime();
    // Stopped first, so that reading the queue comes to its end.
    let (_, stderr) = exporter.stop();
    let arrivals: Vec<Arrival> = arrivals(&socket, probe, host.host_addr)
        .into_iter()
        .filter(|a| (opened..closed).contains(&a.at))
        .collect();
    assert!(!arrivals.is_empty(), "no probes arrived\n{stderr}");
    let windows = ((closed - opened).as_micros() / WINDOW.as_micros()) as usize;
    let mut counts = vec![0usize; windows];
    for arrival in &arrivals {
        let index = ((arrival.at - opened).as_micros() / WINDOW.as_micros()) as usize;
        // The last, partial window is left out.
        if let Some(count) = counts.get_mut(index) {
            *count += 1;
        }
    }
    let mean = counts.iter().sum::<usize>() as f64 / windows as f64;
    println!(
        "{} probes in {windows} windows of {WINDOW:?} (mean {mean:.1}): {counts:?}",
        counts.iter().sum::<usize>()
    );
    let expected = f64::from(TARGETS) * WINDOW.as_secs_f64() / INTERVAL.as_secs_f64();
    assert!(
        (mean - expected).abs() <= expected * 0.1,
        "mean {mean:.1} probes per window, expected {expected}: {counts:?}"
    );
    let ceiling = 2.0 * mean + 2.0;
    assert!(
        counts.iter().all(|&count| count as f64 <= ceiling),
        "a window has more than {ceiling} probes (a burst): {counts:?}"
    );

    let mut by_target: BTreeMap<Ipv4Addr, Vec<Duration>> = BTreeMap::new();
    for arrival in &arrivals {
        by_target.entry(arrival.to).or_default().push(arrival.at);
    }
    let mut off_period = Vec::new();
    for addr in &addrs {
        let Some(times) = by_target.get_mut(addr) else {
            panic!("{addr} got no probe in {CAPTURE:?}");
        };
        times.sort();
        let gaps: Vec<Duration> = times.windows(2).map(|pair| pair[1] - pair[0]).collect();
        let in_period = |gap: &Duration| gap.abs_diff(INTERVAL) <= PERIOD_SLACK;
        // Once per interval: no gap off the interval, and none before the first or after the
        // last of the capture longer than an interval.
        let whole = times[0] - opened <= INTERVAL + PERIOD_SLACK
            && closed - times[times.len() - 1] <= INTERVAL + PERIOD_SLACK;
        if !gaps.iter().all(in_period) || !whole {
            off_period.push(format!("{addr}: {gaps:?}"));
        }
    }
    assert!(
        off_period.is_empty(),
        "targets not probed once per {INTERVAL:?} (±{PERIOD_SLACK:?}):\n{}",
        off_period.join("\n")
    );
    assert_eq!(by_target.len(), addrs.len(), "probes to other addresses");
}

#[test]
fn icmp_targets_are_spread_over_the_interval() {
    spread(Probe::Icmp);
}

#[test]
fn tcp_syn_targets_are_spread_over_the_interval() {
    spread(Probe::TcpSyn(OPEN_PORT));
}

/// The table rows of an HTML page (`<tr>` … `</tr>`) with a `<td>`, each as its cells' text.
fn table_rows(html: &str) -> Vec<Vec<String>> {
    html.split("<tr")
        .skip(1)
        .map(|row| row.split("</tr>").next().unwrap_or_default())
        .filter(|row| row.contains("<td"))
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let inside = cell.split_once('>').map_or("", |(_, rest)| rest);
                    inside
                        .split("</td>")
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_page_lists_every_target_with_its_loss() {
    require_root();
    let mut host = TestHost::new().unwrap();
    host.listen_tcp(OPEN_PORT).unwrap();
    host.drop_tcp_port(FILTERED_PORT).unwrap();
    let config = format!(
        "targets:\n\
         \x20 - hosts: [\"{a}\", \"{a6}\"]\n    probe: tcp-syn\n    port: {OPEN_PORT}\n    interval: 100ms\n\
         \x20 - hosts: [\"{a}\"]\n    probe: tcp-syn\n    port: {FILTERED_PORT}\n    interval: 100ms\n\
         \x20 - hosts: [\"{a}\"]\n    probe: icmp\n    interval: 100ms\n",
        a = host.addr,
        a6 = host.addr6,
    );
    let exporter = Exporter::start(&[], Some(&config)).unwrap();
    // Past several timeouts of the dropped port's probes.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, content_type, page) = exporter.get("/", None).unwrap();
    println!("{page}");
    assert_eq!(status, 200, "{page}");
    assert!(
        content_type.starts_with("text/html"),
        "Content-Type {content_type:?}"
    );
    let rows = table_rows(&page);
    let open_port = OPEN_PORT.to_string();
    let filtered_port = FILTERED_PORT.to_string();
    let (a, a6) = (host.addr.to_string(), host.addr6.to_string());
    // host (= ip), probe, port, and whether nothing answers.
    let expected: [(&str, &str, &str, bool); 4] = [
        (&a, "tcp-syn", &open_port, false),
        (&a6, "tcp-syn", &open_port, false),
        (&a, "tcp-syn", &filtered_port, true),
        (&a, "icmp", "", false),
    ];
    assert_eq!(rows.len(), expected.len(), "one row per target: {rows:#?}");
    for (ip, probe, port, dropped) in expected {
        let matching: Vec<&Vec<String>> = rows
            .iter()
            .filter(|row| {
                row.len() >= 8 && row[0] == ip && row[1] == ip && row[2] == probe && row[3] == port
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "one row for {ip} {probe} {port:?}: {rows:#?}"
        );
        let row = matching[0];
        let sent: u64 = row[4]
            .parse()
            .unwrap_or_else(|e| panic!("sent {:?}: {e}", row[4]));
        assert!(sent >= 5, "{sent} sent in 1.5 s at 100ms: {row:?}");
        let replies: u64 = row[5]
            .parse()
            .unwrap_or_else(|e| panic!("replies {:?}: {e}", row[5]));
        let shown: f64 = row[6]
            .strip_suffix(" %")
            .and_then(|percent| percent.parse().ok())
            .unwrap_or_else(|| panic!("loss {:?} is not `N.N %`", row[6]));
        if dropped {
            // The page's loss is of the probes settled: the one still within its timeout is
            // not lost yet, and not answered either.
            assert!(shown == 100.0 && replies == 0, "dropped port: {row:?}");
        } else {
            assert_eq!(row[6], "0.0 %", "loss of {ip} {probe} {port:?}: {row:?}");
            assert!(replies >= 4, "{row:?}");
            assert!(row[7].ends_with(" ms"), "no last RTT: {row:?}");
        }
    }
    exporter.stop();
}
