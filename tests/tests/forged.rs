//! Reply-shaped packets that answer no probe, or that the kernel would drop: the XDP program must
//! not report them as replies, and must count them as unmatched or malformed (shown by `-V`, and
//! in a sweep's footer). Over IPv4 and IPv6 alike, and over IPv6 the shapes only IPv6 has:
//! extension headers within the XDP parser's bound (matched) and past it or with a fragment
//! header (passed to the host's stack, not counted), a hop limit of 0 (a reply), a source that
//! is an IPv4-mapped address (malformed), and neighbour discovery from the target (passed to
//! the host untouched, never a reply). The forgeries come from inside the test host's namespace,
//! so they cross the same veth real replies do.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use prober_tests::{
    forger::{Flaw, Forger, Kind, OTHER_MAC},
    output::{
        check_run, icmp_header, icmp_reply_of, ip_header_len, tcp_reply_at_ttl, tcp_syn_header,
        Expected,
    },
    packets, prober_command,
    proc::{Finished, Proc},
    require_root,
    sweep::{json_outcome, parse_sweep_footer, Outcome, Status, SweepFooter},
    test_both_families, Family, TestHost, CLOSED_PORT, FILTERED_PORT, OPEN_PORT,
};

const FORGED: usize = 5;
const BASE_PORT: u16 = 40000;
const PROBES: u32 = 5;

fn forged_syn_acks_are_counted_as_unmatched_not_shown(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = host.target(family).to_string();
    let (port, base) = (CLOSED_PORT.to_string(), BASE_PORT.to_string());
    let mut prober = Proc::spawn(prober_command(&[
        "-V", "-c", "3", "-i", "u500000", "-S", "-p", &port, "-s", &base, &target,
    ]));
    // The matcher is attached once the first reply is shown.
    while !prober
        .expect_line(Duration::from_secs(10), "the first reply")
        .starts_with("len=")
    {}

    // From the probed port to the ports the probes use, but acknowledging nothing we sent
    // (the run's sequence number is random: one in 2^31 chance of a false failure).
    let forged = (0..FORGED)
        .map(|i| {
            packets::syn_ack(
                host.target(family),
                host.source(family),
                CLOSED_PORT,
                BASE_PORT + i as u16 % 3,
                7,
            )
        })
        .collect();
    host.send_raw_from_namespace(forged)
        .expect("sending forged SYN-ACKs");

    let run = prober.wait(Duration::from_secs(20));
    let replies = run
        .stdout_lines()
        .iter()
        .filter(|line| line.starts_with("len="))
        .count();
    assert_eq!(replies, 3, "only the three real RST-ACKs are shown\n{run}");
    assert!(
        run.stdout_lines()
            .iter()
            .all(|line| !line.contains("flags=SA")),
        "a forged SYN-ACK was shown\n{run}"
    );
    let counts = format!("xdp: 3 replies matched, {FORGED} unmatched packets from the target");
    assert!(run.stderr.contains(&counts), "want {counts:?}\n{run}");
    assert_eq!(run.code(), Some(0), "{run}");
}

test_both_families!(forged_syn_acks_are_counted_as_unmatched_not_shown);

const TCP_SYN: &[&str] = &["-S", "-p", "80"];
const ICMP_ECHO: &[&str] = &["-1"];
const MODES: [(Kind, &[&str]); 2] = [(Kind::TcpSyn, TCP_SYN), (Kind::IcmpEcho, ICMP_ECHO)];

/// [`PROBES`] probes to a host whose own stack answers nothing, each answered by the forger.
struct Answered {
    host: TestHost,
    run: Finished,
    /// The IPv6 and ICMPv6 counters of the host's veth end before and after the run.
    snmp6: (BTreeMap<String, u64>, BTreeMap<String, u64>),
}

/// An nftables counter in the namespace of the host kernel's RSTs: its answer to a SYN-ACK it
/// was passed and has no connection for.
const HOST_RESETS: &str = "host_resets";

impl Answered {
    /// Probes with `args` (the mode and any more options) over `family`, each answered with
    /// every one of `flaws` that applies.
    fn run(family: Family, args: &[&str], flaws: &[Flaw]) -> Answered {
        require_root();
        let host = TestHost::new().expect("test host");
        // Before the drop rule, which would hide them.
        let source = match host.source(family) {
            IpAddr::V4(a) => format!("ip saddr {a}"),
            IpAddr::V6(a) => format!("ip6 saddr {a}"),
        };
        host.add_counter(HOST_RESETS, &format!("{source} tcp flags & rst == rst"))
            .expect("nft counter");
        host.drop_all_to(host.target(family)).expect("nft drop");
        let target = host.target(family).to_string();
        let forger = Forger::start(&host, flaws).expect("forger");
        let count = PROBES.to_string();
        let mut all = vec!["-c", &count, "-i", "u200000"];
        all.extend(args);
        all.push(&target);
        let before = host.host_snmp6().expect("snmp6");
        let run = Proc::spawn(prober_command(&all)).wait(Duration::from_secs(20));
        let forged = forger.stop().expect("forger");
        let after = host.host_snmp6().expect("snmp6");
        assert_eq!(
            forged.probes,
            u64::from(PROBES),
            "the forger answered every probe\n{run}"
        );
        Answered {
            host,
            run,
            snmp6: (before, after),
        }
    }

    fn host_resets(&self) -> u64 {
        self.host.counter_packets(HOST_RESETS).expect("nft counter")
    }

    /// How much the host's `counter` rose during the run.
    fn snmp6_rise(&self, counter: &str) -> u64 {
        let read = |counters: &BTreeMap<String, u64>| {
            *counters
                .get(counter)
                .unwrap_or_else(|| panic!("no {counter} in /proc/net/dev_snmp6"))
        };
        read(&self.snmp6.1) - read(&self.snmp6.0)
    }

    /// Panics unless the host's stack got every forgery to a probe of `kind` (one each): it
    /// answered each SYN-ACK with a RST, or counted each ICMPv6 echo reply.
    fn assert_the_host_took_every_forgery(&self, kind: Kind, what: &str) {
        let (resets, echo_replies) = match kind {
            Kind::TcpSyn => (u64::from(PROBES), 0),
            Kind::IcmpEcho => (0, u64::from(PROBES)),
        };
        assert_eq!(
            (self.host_resets(), self.snmp6_rise("Icmp6InEchoReplies")),
            (resets, echo_replies),
            "{what}: the host's stack should have got every forgery (RSTs it sent, echo replies \
             it counted)\n{}",
            self.run
        );
    }

    /// Panics unless the run counted nothing (exit 1, no reply) and `-V`'s counts are `counts`.
    fn assert_nothing_counted(&self, what: &str, counts: &str) {
        let run = &self.run;
        assert_eq!(run.code(), Some(1), "{what}: no reply, exit 1\n{run}");
        let none = format!("{PROBES} packets transmitted, 0 packets received");
        assert!(
            run.stderr.contains(&none),
            "{what}: a forged reply was counted\n{run}"
        );
        assert!(
            run.stderr.contains(counts),
            "{what}: want {counts:?}\n{run}"
        );
    }
}

/// One target, TCP and ICMP: every probe answered only by replies prober must refuse, all of
/// which but an echo reply to the broadcast MAC the kernel drops too (see [`Flaw::MALFORMED`];
/// the host's own stack answers nothing: all input to it is dropped). None is a reply, each is
/// malformed, and the host's kernel indeed took none of the SYN-ACKs (it would have answered
/// with a RST).
fn replies_the_kernel_would_drop_are_never_counted_one_target(family: Family) {
    for (kind, mode) in MODES {
        let flaws = Flaw::applying(&Flaw::MALFORMED, kind, family);
        let args = [&["-V"], mode].concat();
        let answered = Answered::run(family, &args, &flaws);
        let what = format!("{family:?} {kind:?}");
        let counts = format!(
            "xdp: 0 replies matched, 0 unmatched packets from the target, {} malformed,",
            PROBES as usize * flaws.len()
        );
        answered.assert_nothing_counted(&what, &counts);
        assert_eq!(
            answered.host_resets(),
            0,
            "{what}: the host's kernel took a forged SYN-ACK, so a flaw is no flaw\n{}",
            answered.run
        );
    }
}

test_both_families!(replies_the_kernel_would_drop_are_never_counted_one_target);

/// A sweep: a dropped port answered only by flawed SYN-ACKs stays filtered, and a closed port
/// whose real RST-ACK races them stays closed; none is recorded or bounced.
fn replies_the_kernel_would_drop_are_never_counted_in_a_sweep(family: Family) {
    require_root();
    let host = TestHost::standard().expect("test host");
    let target = host.target(family);
    let ports = format!("{FILTERED_PORT},{CLOSED_PORT}");
    let flaws = Flaw::applying(&Flaw::MALFORMED, Kind::TcpSyn, family);
    let (run, got, footer) = sweep_answered_by_the_forger(&host, target, &ports, &flaws, 2);
    assert_eq!(
        got.get(&(target, FILTERED_PORT)),
        Some(&Status::Filtered),
        "{run}"
    );
    assert_eq!(
        got.get(&(target, CLOSED_PORT)),
        Some(&Status::Closed),
        "{run}"
    );
    assert_eq!(
        (footer.matched, footer.malformed, footer.bounced),
        (1, 2 * flaws.len() as u64, 0),
        "only the real RST-ACK matched, every forgery counted as malformed, none bounced\n{run}"
    );
}

test_both_families!(replies_the_kernel_would_drop_are_never_counted_in_a_sweep);

/// A sweep of `ports` of `target` while the forger answers each probe with `flaws`: the run, its
/// results and its footer, once the forger is found to have answered `probes` probes.
fn sweep_answered_by_the_forger(
    host: &TestHost,
    target: IpAddr,
    ports: &str,
    flaws: &[Flaw],
    probes: u64,
) -> (Finished, Outcome, SweepFooter) {
    let forger = Forger::start(host, flaws).expect("forger");
    let target = target.to_string();
    let run = Proc::spawn(prober_command(&[
        "-p", ports, "--wait", "1", "-O", "json", &target,
    ]))
    .wait(Duration::from_secs(20));
    let forged = forger.stop().expect("forger");
    assert_eq!(
        forged.probes, probes,
        "the forger answered every probe\n{run}"
    );
    let got = json_outcome(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"));
    let footer = parse_sweep_footer(&run.stderr).unwrap_or_else(|e| panic!("{e}\n{run}"));
    (run, got, footer)
}

/// One target: correct replies, but to source ports and sequence numbers no probe has used yet
/// (the XDP program's window of our ports is wide; which were used, userspace knows). None
/// counts, none is timed against a send time of 0.
fn replies_to_probes_never_sent_are_not_counted(family: Family) {
    for (kind, mode) in MODES {
        let args = [&["-V"], mode].concat();
        let answered = Answered::run(family, &args, &[Flaw::UnsentProbe]);
        answered.assert_nothing_counted(
            &format!("{family:?} {kind:?}"),
            &format!("0 duplicate replies, {PROBES} replies to probes never sent"),
        );
    }
}

test_both_families!(replies_to_probes_never_sent_are_not_counted);

/// IPv4 probes answered over IPv6 between the IPv4-mapped forms of both addresses (the form
/// prober keeps IPv4 addresses in, so the IPv6 packet that could pass for an IPv4 reply): never
/// a reply, and counted nowhere (a mapped destination is no one's); the kernel dropped every
/// one (it answered none of the SYN-ACKs with a RST).
#[test]
fn ipv4_probes_answered_over_ipv6_between_mapped_addresses_are_never_replies() {
    for (kind, mode) in MODES {
        let args = [&["-V"], mode].concat();
        let answered = Answered::run(Family::V4, &args, &[Flaw::MappedIpv6ReplyToIpv4]);
        answered.assert_nothing_counted(
            &format!("{kind:?}"),
            "xdp: 0 replies matched, 0 unmatched packets from the target, 0 malformed,",
        );
        assert_eq!(answered.host_resets(), 0, "{}", answered.run);
    }
}

/// IPv6, TCP and ICMPv6: replies the kernel takes as they are, with `flaw` (extension headers
/// before the transport header within the parser's bound, or a hop limit of 0), are replies:
/// every line exact (its length counts the extension headers, its ttl is the hop limit), the
/// footer, exit 0. A matched reply to one target goes on to the host's stack, and it took
/// them: it answered each SYN-ACK with a RST, and counted each echo reply.
fn replies_the_kernel_takes_are_matched(flaw: Flaw, ttl: u8) {
    let extensions = match flaw {
        Flaw::Extensions(kinds) => 8 * kinds.len() as u32,
        _ => 0,
    };
    for (kind, mode) in MODES {
        let answered = Answered::run(Family::V6, mode, &[flaw]);
        let (host, run) = (&answered.host, &answered.run);
        let ip = host.addr6;
        let len = ip_header_len(ip.into()) + extensions;
        let target = ip.to_string();
        let expected = match kind {
            Kind::TcpSyn => Expected {
                header: tcp_syn_header(&target, &host.host_if, ip),
                replies: (0..PROBES)
                    .map(|seq| tcp_reply_at_ttl(len + 20, ip, ttl, OPEN_PORT, "SA", seq, 1024))
                    .collect(),
                mask_id: false,
                transmitted: PROBES.into(),
                target,
            },
            Kind::IcmpEcho => Expected {
                header: icmp_header(&target, &host.host_if, ip),
                replies: (0..PROBES)
                    .map(|seq| icmp_reply_of(len + 8, ip, ttl, seq))
                    .collect(),
                mask_id: false,
                transmitted: PROBES.into(),
                target,
            },
        };
        check_run(run, &expected);
        answered.assert_the_host_took_every_forgery(kind, &format!("{flaw:?} {kind:?}"));
    }
}

#[test]
fn ipv6_replies_with_a_destination_options_header_are_matched() {
    replies_the_kernel_takes_are_matched(Flaw::DESTINATION_OPTIONS, 64);
}

#[test]
fn ipv6_replies_with_four_extension_headers_are_matched() {
    replies_the_kernel_takes_are_matched(Flaw::FOUR_EXTENSIONS, 64);
}

#[test]
fn ipv6_replies_with_a_hop_limit_of_0_are_matched_and_show_ttl_0() {
    replies_the_kernel_takes_are_matched(Flaw::HopLimit0, 0);
}

/// A sweep over IPv6 whose replies carry a destination options header (the host's own stack
/// answers nothing; the forger answers every probe so): every port open, each reply matched.
/// None is bounced as a RST, which the matcher builds only from a reply with the fixed header
/// alone: each goes on to the host's stack, whose RST ends the half-open connection (dropped
/// unanswered, they left the target holding it).
#[test]
fn ipv6_sweep_replies_with_a_destination_options_header_are_matched() {
    require_root();
    let host = TestHost::new().expect("test host");
    host.add_counter(
        HOST_RESETS,
        &format!("ip6 saddr {} tcp flags & rst == rst", host.host_addr6),
    )
    .expect("nft counter");
    host.drop_all_to(host.addr6).expect("nft drop");
    let target = IpAddr::from(host.addr6);
    let (run, got, footer) =
        sweep_answered_by_the_forger(&host, target, "79-81", &[Flaw::DESTINATION_OPTIONS], 3);
    let want = [79, 80, 81].map(|port| ((target, port), Status::Open));
    assert_eq!(got, want.into_iter().collect(), "{run}");
    assert_eq!(
        (
            footer.matched,
            footer.unmatched,
            footer.malformed,
            footer.bounced
        ),
        (3, 0, 0, 0),
        "{run}"
    );
    assert_eq!(
        host.counter_packets(HOST_RESETS).expect("nft counter"),
        3,
        "the host's RSTs: {run}"
    );
    assert_eq!(run.code(), Some(0), "{run}");
}

/// IPv6, TCP and ICMPv6: replies the kernel takes but the XDP parser does not look into (more
/// extension headers than its bound, or a fragment header) are passed to the host's stack as
/// they are, and counted nowhere: no reply, not malformed, not unmatched. The host's stack got
/// them all: it answered each SYN-ACK with a RST, and counted each echo reply.
fn replies_past_the_parser_go_to_the_host_uncounted(flaw: Flaw) {
    for (kind, mode) in MODES {
        let args = [&["-V"], mode].concat();
        let answered = Answered::run(Family::V6, &args, &[flaw]);
        let what = format!("{flaw:?} {kind:?}");
        answered.assert_nothing_counted(
            &what,
            "xdp: 0 replies matched, 0 unmatched packets from the target, 0 malformed,",
        );
        answered.assert_the_host_took_every_forgery(kind, &what);
    }
}

#[test]
fn ipv6_replies_with_more_extension_headers_than_the_bound_go_to_the_host_uncounted() {
    replies_past_the_parser_go_to_the_host_uncounted(Flaw::FIVE_EXTENSIONS);
}

#[test]
fn ipv6_replies_with_a_fragment_header_go_to_the_host_uncounted() {
    replies_past_the_parser_go_to_the_host_uncounted(Flaw::FRAGMENT);
}

/// The ICMPv6 counters of NDP, as /proc/net/dev_snmp6 names them: (what the host's end
/// received, what the namespace's kernel sent).
const NDP_COUNTERS: [(&str, &str); 3] = [
    (
        "Icmp6InNeighborAdvertisements",
        "Icmp6OutNeighborAdvertisements",
    ),
    ("Icmp6InNeighborSolicits", "Icmp6OutNeighborSolicits"),
    (
        "Icmp6InRouterAdvertisements",
        "Icmp6OutRouterAdvertisements",
    ),
];

/// The NDP counters of both veth ends, read twice 100 ms apart until they agree (the kernels'
/// own neighbour discovery goes on in the background).
fn ndp_counts(host: &TestHost) -> Vec<(u64, u64)> {
    let read = || -> Vec<(u64, u64)> {
        let (ours, theirs) = (
            host.host_snmp6().expect("snmp6"),
            host.namespace_snmp6().expect("snmp6"),
        );
        NDP_COUNTERS
            .iter()
            .map(|(received, sent)| (ours[*received], theirs[*sent]))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = read();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// IPv6 neighbour discovery from the target during a run, among it a spoof that claims the
/// target's address for another MAC: XDP passes every message to the host untouched (the
/// host's end received exactly what the namespace's kernel sent plus the forgeries), none is
/// counted as a reply or as anything else, and every probe is answered: prober sends them all
/// to the MAC it resolved before the run (a probe to the spoofed one would reach no one). The
/// host's kernel did take the spoof: its neighbour entry for the target holds the spoofed MAC.
fn neighbour_discovery_from_the_target_passes_untouched(kind: Kind, mode: &[&str]) {
    require_root();
    let host = TestHost::standard().expect("test host");
    // Our own veth: it must not act on the forged router advertisement (lifetime 0, no options,
    // so there is nothing to act on anyway); the message is still received and counted.
    std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{}/accept_ra", host.host_if),
        "0",
    )
    .expect("accept_ra");
    // prober must resolve the target itself, through the same XDP hook.
    prober_tests::run_checked(std::process::Command::new("ip").args([
        "-6",
        "neigh",
        "flush",
        "dev",
        &host.host_if,
    ]))
    .expect("ip neigh flush");
    let forger = Forger::start(&host, &[Flaw::NeighbourDiscovery]).expect("forger");
    let before = ndp_counts(&host);
    let target = host.addr6.to_string();
    let mut args = vec!["-V", "-c", "4", "-i", "u200000"];
    args.extend(mode);
    args.push(&target);
    let run = Proc::spawn(prober_command(&args)).wait(Duration::from_secs(20));
    let forged = forger.stop().expect("forger");
    let after = ndp_counts(&host);

    assert_eq!(forged.frames, 3 * forged.probes, "{run}");
    assert_eq!(forged.probes, 4, "the forger saw every probe\n{run}");
    for ((received, sent), (b, a)) in NDP_COUNTERS.iter().zip(before.iter().zip(&after)) {
        let (arrived, sent_by_the_kernel) = (a.0 - b.0, a.1 - b.1);
        assert_eq!(
            arrived,
            sent_by_the_kernel + forged.probes,
            "{received} of the host's end should have risen by {sent} of the namespace's \
             ({sent_by_the_kernel}) plus the {} forged\n{run}",
            forged.probes
        );
    }
    let ip = host.addr6;
    let len = ip_header_len(ip.into())
        + match kind {
            Kind::TcpSyn => 24,
            Kind::IcmpEcho => 8,
        };
    let prefix = format!("len={len} ip={ip} ttl=64 ");
    let replies: Vec<&str> = run
        .stdout_lines()
        .into_iter()
        .filter(|line| line.starts_with("len="))
        .collect();
    assert!(
        replies.len() == 4 && replies.iter().all(|line| line.starts_with(&prefix)),
        "want four replies starting {prefix:?}\n{run}"
    );
    for counts in [
        "4 packets transmitted, 4 packets received",
        "xdp: 4 replies matched, 0 unmatched packets from the target, 0 malformed,",
    ] {
        assert!(run.stderr.contains(counts), "want {counts:?}\n{run}");
    }
    assert_eq!(run.code(), Some(0), "{run}");
    let neighbour = prober_tests::run_checked(std::process::Command::new("ip").args([
        "-6",
        "neigh",
        "show",
        &target,
        "dev",
        &host.host_if,
    ]))
    .expect("ip neigh show");
    // The kernel's doing, not prober's: RFC 4861 has an unsolicited advertisement with the
    // override flag replace the link-layer address of an entry, whatever its state.
    let spoofed = OTHER_MAC.map(|byte| format!("{byte:02x}")).join(":");
    assert!(
        neighbour.contains(&format!("lladdr {spoofed} ")),
        "the host's kernel should hold the spoofed MAC {spoofed} for the target: {neighbour:?}\n{run}"
    );
}

#[test]
fn ipv6_neighbour_discovery_from_the_target_passes_untouched_tcp() {
    neighbour_discovery_from_the_target_passes_untouched(Kind::TcpSyn, TCP_SYN);
}

#[test]
fn ipv6_neighbour_discovery_from_the_target_passes_untouched_icmp() {
    neighbour_discovery_from_the_target_passes_untouched(Kind::IcmpEcho, ICMP_ECHO);
}
