//! The command line: hping3's options (and the sweep's), parsed by clap in groups that are
//! also the help's sections, then validated into a [`Mode`] — everything a run needs, checked.
pub mod exporter;
mod hping3;
mod values;

use std::{
    io::{self, IsTerminal as _},
    net::IpAddr,
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Result};
use clap::{
    error::{ContextKind, ErrorKind},
    ArgAction, Args, Parser,
};
use prober_common::wire::{ICMP_ADDRESS_MASK, ICMP_TIMESTAMP};

use crate::{
    bpf::AttachMode,
    discover, echo,
    net::{self, Family, Interface},
    ping::{self, traceroute, Pacing, RttPrecision, SourceAddress},
    probe::{
        IcmpMessage, IpFields, Payload, PingKind, PortStep, SweepKind, TcpFlags,
        DEFAULT_RAW_IP_PROTOCOL,
    },
    sweep::{
        self,
        files::{self, OutputFile},
        ports::PortList,
        results::Format,
        targets::{self, TargetSet},
        Shard,
    },
};
use values::DestPorts;

/// What the command line asks for.
#[derive(Debug)]
pub enum Mode {
    /// hping3's one target, one port.
    Ping(ping::Options),
    /// Many ports, many hosts.
    Sweep(sweep::Options),
    /// The hosts of a directly connected network (`--arp`).
    Discover(discover::Options),
}

#[derive(Parser, Debug)]
#[command(
    name = "prober",
    version,
    about = "hping3-compatible TCP, UDP and ICMP prober with kernel (XDP) reply timestamps",
    disable_version_flag = true,
    override_usage = "prober host [options]\n       prober -p PORTS|--scan PORTS target... [sweep options]\n       prober exporter [--config FILE] [HOST...] (see prober exporter --help)",
    after_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    /// Target host name or address, IPv4 or IPv6 (link-local with its interface: fe80::1%eth0);
    /// sweeps take several of one family, CIDR blocks and ranges (198.18.4.1-198.18.4.9)
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<String>,
    #[command(flatten, next_help_heading = "Base options")]
    base: BaseArgs,
    #[command(flatten, next_help_heading = "Mode (default: TCP)")]
    mode: ModeArgs,
    #[command(flatten, next_help_heading = "IP")]
    ip: IpArgs,
    #[command(flatten, next_help_heading = "TCP")]
    tcp: TcpArgs,
    #[command(flatten, next_help_heading = "Sweep")]
    sweep: SweepArgs,
}

#[derive(Args, Debug)]
struct BaseArgs {
    /// Stop after sending (and receiving) COUNT packets; 0: until interrupted
    #[arg(short = 'c', long = "count", value_parser = values::count, allow_negative_numbers = true)]
    count: Option<u64>,
    /// Wait between probes: seconds, or uX for X microseconds (-i 2, -i u100) [default: 1]
    #[arg(short = 'i', long = "interval", value_parser = values::interval, allow_negative_numbers = true)]
    interval: Option<Duration>,
    /// Alias for -i u100000 (10 packets a second)
    #[arg(long)]
    fast: bool,
    /// Alias for -i u1
    #[arg(long)]
    faster: bool,
    /// Send as fast as possible; replies are still matched, counted and shown unless -q
    #[arg(long)]
    flood: bool,
    /// Numeric output (prober never does reverse lookups; accepted for hping3 compatibility)
    #[arg(short = 'n', long)]
    numeric: bool,
    /// Quiet: only the header and the statistic footer (with -T, the hop lines too)
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Verbose: hping3's extra reply fields, set-up details and RTT percentiles
    #[arg(short = 'V', long)]
    verbose: bool,
    /// RTT decimals: hping3 (0.1 ms) or us (0.001 ms)
    #[arg(long, value_name = "PRECISION", default_value = "hping3")]
    rtt_precision: RttPrecision,
    /// Draw a histogram of the RTTs at the end
    #[arg(long)]
    histogram: bool,
    /// Print the XDP and TC programs' decision on each packet shaped like a reply to this run's
    /// probes (matched, passed or bounced, and why) and on each probe leaving, to stderr
    #[arg(long)]
    bpf_trace: bool,
    /// Interface to send on and receive replies from
    #[arg(short = 'I', long = "interface", value_name = "NAME")]
    interface: Option<String>,
    /// Where the XDP reply matcher runs: generic, or native (in the driver: can reset a NIC's
    /// link). Default: generic for one target; a sweep matches at TCX ingress instead (kernel
    /// 6.6 or later), which costs each reply less than generic XDP
    #[arg(long, value_name = "MODE")]
    xdp_mode: Option<AttachMode>,
    /// Print version information (hping3's -v)
    #[arg(short = 'v', long, action = ArgAction::Version)]
    version: (),
}

#[derive(Args, Debug)]
struct ModeArgs {
    /// ICMP mode: echo requests (of several targets or a block: a sweep of hosts, up or down)
    #[arg(short = '1', long = "icmp")]
    icmp: bool,
    /// UDP mode: datagrams to -p (a sweep's: closed, open, or open|filtered when silent)
    #[arg(short = '2', long = "udp",
          conflicts_with_all = ["icmp", "icmp_type", "icmp_code", "icmp_ts", "icmp_addr"])]
    udp: bool,
    /// ICMP type (implies -1), as hping3's: 8 echo request, 0 echo reply, 13 and 14 timestamp
    /// request and reply, 17 and 18 address mask request and reply (IPv4) [default: 8]
    #[arg(short = 'C', long = "icmptype", value_name = "TYPE", value_parser = values::icmp_number,
          conflicts_with_all = ["icmp_ts", "icmp_addr"])]
    icmp_type: Option<u8>,
    /// ICMP code of the echo messages (implies -1) [default: 0]
    #[arg(short = 'K', long = "icmpcode", value_name = "CODE", value_parser = values::icmp_number)]
    icmp_code: Option<u8>,
    /// Send ICMP timestamp requests, -1 -C 13 (IPv4): the replies' timestamps are printed
    #[arg(long = "icmp-ts", conflicts_with = "icmp_addr")]
    icmp_ts: bool,
    /// Send ICMP address mask requests, -1 -C 17 (IPv4; Linux does not answer them)
    #[arg(long = "icmp-addr")]
    icmp_addr: bool,
    /// Raw IP mode (IPv4): an IP header of -H's protocol and the -d / -E data, answered only
    /// by ICMP errors (Linux's protocol unreachable)
    #[arg(short = '0', long = "rawip",
          conflicts_with_all = ["icmp", "udp", "icmp_type", "icmp_code", "icmp_ts", "icmp_addr"])]
    raw_ip: bool,
    /// IP protocol of raw IP mode's probes [default: 6, TCP, as hping3's]
    #[arg(short = 'H', long = "ipproto", value_name = "PROTO", value_parser = values::ip_protocol,
          requires = "raw_ip")]
    ip_protocol: Option<u8>,
}

#[derive(Args, Debug)]
struct IpArgs {
    /// IP time to live (IPv6's hop limit) [default: 64; with -T: 1]
    #[arg(short = 't', long, value_parser = values::ttl, allow_negative_numbers = true)]
    ttl: Option<u8>,
    /// Traceroute (hping3's): the TTL starts at -t and goes up by one with each new router's
    /// time exceeded; every probe of one flow (one source port), as paris-traceroute's
    #[arg(short = 'T', long)]
    traceroute: bool,
    /// With -T: stop at the first reply that is not a time exceeded
    #[arg(long)]
    tr_stop: bool,
    /// With -T: keep the TTL fixed, to watch one hop
    #[arg(long)]
    tr_keep_ttl: bool,
    /// With -T: no hop round trips (hoprtt lines)
    #[arg(long)]
    tr_no_rtt: bool,
    /// IPv4 only: a name's IPv4 address, and IPv6 targets refused
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// IPv6 only: a name's IPv6 address, and IPv4 targets refused
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    /// IP identification of every probe (IPv4) [default: counting up from a random one]
    #[arg(short = 'N', long = "id", value_name = "ID", value_parser = values::ip_id)]
    id: Option<u16>,
    /// Type of service byte, hexadecimal: -o 10 and -o 0x10 are 0x10 (IPv6's traffic class)
    #[arg(short = 'o', long = "tos", value_name = "HEX", value_parser = values::tos)]
    tos: Option<u8>,
    /// Set the don't-fragment bit (IPv4; a sweep's probes always carry it)
    #[arg(short = 'y', long = "dontfrag", conflicts_with = "frag")]
    dontfrag: bool,
    /// Source address of the probes (lab use: replies go to it, and are taken only if they
    /// are routed to this host)
    #[arg(short = 'a', long = "spoof", value_name = "ADDR", value_parser = values::source_address)]
    spoof: Option<IpAddr>,
    /// A random source address for each probe, of the target's family (lab use: replies go to
    /// those addresses, and none is taken: every probe counts as lost)
    #[arg(long, conflicts_with = "spoof")]
    rand_source: bool,
    /// Send each probe as IPv4 fragments of 16 data bytes, as hping3 (the target reassembles
    /// them; one target only, IPv4 only)
    #[arg(short = 'f', long = "frag")]
    frag: bool,
    /// Data bytes each probe carries after its headers: X's as hping3's, or -E's file [default: 0]
    #[arg(short = 'd', long = "data", value_name = "SIZE", value_parser = values::data_size)]
    data: Option<u16>,
    /// Fill the data with FILE's contents, -d bytes a probe, from its start again after its end
    #[arg(short = 'E', long = "file", value_name = "FILE", requires = "data")]
    file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TcpArgs {
    /// Destination port (0-65535); +N: one up for each reply, ++N: for each probe (hping3's);
    /// a list or range (22,80,8000-8100, all, known) sweeps them, and so does a range of one
    /// port (80-80)
    #[arg(
        short = 'p',
        long = "destport",
        value_name = "PORTS",
        value_parser = values::dest_ports,
        allow_negative_numbers = true
    )]
    port: Option<DestPorts>,
    /// Base source port [default: random; a sweep's: 61440, the first of its block of 4096]
    #[arg(short = 's', long = "baseport", value_parser = values::port, allow_negative_numbers = true)]
    base_port: Option<u16>,
    /// Keep the source port fixed
    #[arg(short = 'k', long = "keep")]
    keep: bool,
    /// TCP window size
    #[arg(short = 'w', long = "win", default_value_t = 64, value_parser = values::window, allow_negative_numbers = true)]
    window: u16,
    /// Set the FIN flag
    #[arg(short = 'F', long = "fin")]
    fin: bool,
    /// Set the SYN flag
    #[arg(short = 'S', long = "syn")]
    syn: bool,
    /// Set the RST flag
    #[arg(short = 'R', long = "rst")]
    rst: bool,
    /// Set the PUSH flag
    #[arg(short = 'P', long = "push")]
    push: bool,
    /// Set the ACK flag
    #[arg(short = 'A', long = "ack")]
    ack: bool,
    /// Set the URG flag
    #[arg(short = 'U', long = "urg")]
    urg: bool,
    /// Set the X unused flag (0x40)
    #[arg(short = 'X', long = "xmas")]
    xmas: bool,
    /// Set the Y unused flag (0x80)
    #[arg(short = 'Y', long = "ymas")]
    ymas: bool,
    /// TCP sequence number of every probe [default: random]
    #[arg(short = 'M', long = "setseq", value_name = "SEQ", value_parser = values::tcp_number)]
    setseq: Option<u32>,
    /// Exit with the TCP flags of the last reply as status (hping3's; 0 if none came): 18 for
    /// SYN-ACK, 20 for RST-ACK
    #[arg(long)]
    tcpexitcode: bool,
    /// TCP acknowledgement number of every probe [default: random]
    #[arg(short = 'L', long = "setack", value_name = "ACK", value_parser = values::tcp_number)]
    setack: Option<u32>,
    /// Send a TCP timestamp option and show each reply's, with hping3's guess at the
    /// target's clock rate and uptime (Linux has offset timestamps by a random amount per
    /// connection since 4.10: the guess is only as good as that allows)
    #[arg(long)]
    tcp_timestamp: bool,
    /// Print only each TCP reply's sequence number and its difference from the last one's
    /// (hping3's, to see how the target picks initial sequence numbers)
    #[arg(short = 'Q', long = "seqnum")]
    seqnum: bool,
}

#[derive(Args, Debug)]
struct SweepArgs {
    /// Sweep these ports (hping3's scan mode): 1-1024,8080 | all | known. With SYN probes, or
    /// with the flags given: -A an ACK scan (a RST unfiltered, silence filtered), -F or
    /// -F -P -U a FIN or Xmas scan (a RST closed, silence open|filtered)
    #[arg(short = '8', long = "scan", value_name = "PORTS")]
    scan: Option<String>,
    /// Find the hosts of a directly connected network by ARP (IPv6: neighbour discovery): a
    /// line per host that answers, with its MAC and RTT
    #[arg(long, conflicts_with_all = ["scan", "port", "retries", "seed", "shard"])]
    arp: bool,
    /// Probes per second [default: 10000]
    #[arg(
        long,
        value_name = "PPS",
        value_parser = values::rate,
        conflicts_with = "flood",
        allow_negative_numbers = true
    )]
    rate: Option<u64>,
    /// Extra passes that re-probe what has not answered
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = values::retries, allow_negative_numbers = true)]
    retries: u32,
    /// Seconds to wait for late replies after the last probe (and between a sweep's passes)
    /// [default: 1]
    #[arg(long, value_name = "SECONDS", value_parser = values::wait, allow_negative_numbers = true)]
    wait: Option<Duration>,
    /// Seed of the probe order, for a reproducible sweep [default: random]
    #[arg(long, value_name = "N", value_parser = values::seed, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// This machine's share of the sweep: shard I of N (needs --seed)
    #[arg(long, value_name = "I/N", value_parser = values::shard, allow_hyphen_values = true)]
    shard: Option<Shard>,
    /// Never probe these addresses, CIDR blocks or ranges (198.18.4.1-198.18.4.9)
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    exclude: Vec<String>,
    /// Never probe the addresses, CIDR blocks or ranges listed in FILE (one a line, # comments; a
    /// regular file of at most 64 MiB)
    #[arg(long, value_name = "FILE")]
    exclude_file: Option<PathBuf>,
    /// Result format [default: table for one host, list for several]
    #[arg(short = 'O', long = "output-format", value_name = "FORMAT")]
    output_format: Option<Format>,
    /// Skip the interface's queueing discipline (PACKET_QDISC_BYPASS): cheaper per probe,
    /// but probes are dropped, not queued, when the driver's queue is full
    #[arg(long)]
    qdisc_bypass: bool,
    /// Write results (a ping's header and reply lines) to FILE instead of standard output: a
    /// new file (mode 0600), never through a symbolic link
    #[arg(long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Let --output overwrite FILE if it exists (a regular file only)
    #[arg(long, requires = "output")]
    force: bool,
    /// Write open ports only (nmap's --open): no closed, filtered, unknown or refused ones,
    /// no hosts down
    #[arg(long)]
    open: bool,
}

/// The exit statuses, at the end of the help (README.md has them too).
const EXIT_STATUS_HELP: &str =
    "Exit status, of a ping and a sweep alike: 0 a reply came (a sweep: a port answered open or \
     closed; --arp: a host answered) and the result is complete; 1 none came; 2 error (one line on \
     stderr); 3 incomplete: replies lost in the kernel (a sweep reports them unknown), or output \
     cut short after Ctrl-C";

/// hping3's TTL, as most systems'.
const DEFAULT_TTL: u8 = 64;
/// zmap's default: polite enough for shared networks, fast enough for a /24.
const DEFAULT_RATE: u64 = 10_000;
/// hping3's wait for late replies; on a LAN they come within milliseconds, across the
/// Internet raise it.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);

impl Cli {
    /// Validates the options into what they ask for (resolving targets on the way).
    pub fn into_mode(self) -> Result<Mode> {
        if self.sweep.arp {
            self.discover_options().map(Mode::Discover)
        } else if self.is_sweep() {
            self.sweep_options().map(Mode::Sweep)
        } else {
            self.ping_options().map(Mode::Ping)
        }
    }

    /// Whether this is a sweep rather than hping3's one-target ping: only what is to be
    /// probed says so (several targets or a block, a list or range of ports, or --scan),
    /// never an option (one that only sweeps take is refused in a ping instead).
    fn is_sweep(&self) -> bool {
        self.sweep.scan.is_some()
            || matches!(self.tcp.port, Some(DestPorts::Sweep(_)))
            || self.targets.len() > 1
            || self.targets.iter().any(|target| targets::is_block(target))
    }

    /// The traceroute's own options, which only -T takes.
    fn traceroute_options(&self) -> [(bool, &'static str); 3] {
        [
            (self.ip.tr_stop, "--tr-stop"),
            (self.ip.tr_keep_ttl, "--tr-keep-ttl"),
            (self.ip.tr_no_rtt, "--tr-no-rtt"),
        ]
    }

    fn tcp_flags(&self) -> TcpFlags {
        let tcp = &self.tcp;
        let bits = [
            (tcp.fin, TcpFlags::FIN),
            (tcp.syn, TcpFlags::SYN),
            (tcp.rst, TcpFlags::RST),
            (tcp.push, TcpFlags::PSH),
            (tcp.ack, TcpFlags::ACK),
            (tcp.urg, TcpFlags::URG),
            (tcp.xmas, TcpFlags::X),
            (tcp.ymas, TcpFlags::Y),
        ];
        TcpFlags(
            bits.iter()
                .filter(|(set, _)| *set)
                .fold(0, |all, (_, bit)| all | bit),
        )
    }

    /// Refuses the options that set TCP's header in `mode`, which has none.
    fn refuse_tcp_only(&self, mode: &str) -> Result<()> {
        let tcp = &self.tcp;
        let flags = self.tcp_flags();
        let tcp_only = [
            (flags.0 != 0, "A TCP flag (-S -A -F -R -P -U -X -Y)"),
            (tcp.setseq.is_some(), "-M"),
            (tcp.setack.is_some(), "-L"),
            (tcp.tcpexitcode, "--tcpexitcode"),
            (tcp.seqnum, "-Q"),
            (tcp.tcp_timestamp, "--tcp-timestamp"),
        ];
        match first_given(&tcp_only) {
            Some(option) => bail!("{option} is for TCP's header, which {mode} does not send"),
            None => Ok(()),
        }
    }

    fn pacing(&self) -> Pacing {
        let base = &self.base;
        if base.flood {
            Pacing::Flood
        } else if let Some(interval) = base.interval {
            Pacing::Interval(interval)
        } else if base.faster {
            Pacing::Interval(Duration::from_micros(1))
        } else if base.fast {
            Pacing::Interval(Duration::from_millis(100))
        } else {
            Pacing::Interval(Duration::from_secs(1))
        }
    }

    /// The family `-4` or `-6` asks for; None: whichever the targets are.
    fn family(&self) -> Option<Family> {
        match (self.ip.ipv4, self.ip.ipv6) {
            (true, _) => Some(Family::V4),
            (_, true) => Some(Family::V6),
            _ => None,
        }
    }

    /// The interface to send on: the one `-I` names, or the link-local targets' `zone`.
    fn interface(&self, zone: Option<&Interface>) -> Result<Option<Interface>> {
        let named = self
            .base
            .interface
            .as_deref()
            .map(Interface::by_name)
            .transpose()?;
        one_interface(named, zone)
    }

    /// The ICMP message -1, -C, -K, --icmp-ts or --icmp-addr ask for (each means ICMP mode,
    /// as in hping3); None: TCP mode.
    fn icmp_message(&self) -> Result<Option<IcmpMessage>> {
        let mode = &self.mode;
        let icmp_type = match (mode.icmp_type, mode.icmp_ts, mode.icmp_addr) {
            (Some(icmp_type), _, _) => icmp_type,
            (None, true, _) => ICMP_TIMESTAMP,
            (None, _, true) => ICMP_ADDRESS_MASK,
            (None, false, false) if mode.icmp || mode.icmp_code.is_some() => {
                IcmpMessage::ECHO_REQUEST.icmp_type
            }
            (None, false, false) => return Ok(None),
        };
        IcmpMessage::new(icmp_type, mode.icmp_code.unwrap_or(0)).map(Some)
    }

    fn ping_options(&self) -> Result<ping::Options> {
        let [target] = &self.targets[..] else {
            unreachable!("several targets make a sweep");
        };
        let sweep = &self.sweep;
        let sweep_options = [
            (sweep.rate.is_some(), "--rate"),
            (sweep.retries > 0, "--retries"),
            (sweep.seed.is_some(), "--seed"),
            (sweep.shard.is_some(), "--shard"),
            (!sweep.exclude.is_empty(), "--exclude"),
            (sweep.exclude_file.is_some(), "--exclude-file"),
            (sweep.output_format.is_some(), "-O"),
            (sweep.qdisc_bypass, "--qdisc-bypass"),
            (sweep.open, "--open"),
        ];
        if let Some(option) = first_given(&sweep_options) {
            bail!("{option} has no meaning for one target and one port: it is for sweeps (several targets or ports, a range such as -p 80-80, or --scan)");
        }
        if !self.ip.traceroute {
            if let Some(option) = first_given(&self.traceroute_options()) {
                bail!("{option} is a traceroute option: it needs -T");
            }
        }
        let kind = if self.mode.raw_ip {
            self.refuse_tcp_only("raw IP mode (-0)")?;
            let tcp = &self.tcp;
            let port_options = [
                (tcp.port.is_some(), "-p"),
                (tcp.base_port.is_some(), "-s"),
                (tcp.keep, "-k"),
            ];
            if let Some(option) = first_given(&port_options) {
                bail!("{option} has no meaning in raw IP mode (-0): its probes have no ports");
            }
            PingKind::RawIp {
                protocol: self.mode.ip_protocol.unwrap_or(DEFAULT_RAW_IP_PROTOCOL),
            }
        } else if let Some(message) = self.icmp_message()? {
            if self.tcp.tcpexitcode {
                bail!("--tcpexitcode exits with a TCP reply's flags: it needs TCP mode, not -1");
            }
            if self.tcp.seqnum {
                bail!("-Q prints TCP replies' sequence numbers: it needs TCP mode, not -1");
            }
            if self.tcp.tcp_timestamp {
                bail!("--tcp-timestamp is a TCP option: it needs TCP mode, not -1");
            }
            if !message.carries_data() && self.ip.data.is_some() {
                bail!("-d: timestamp and address mask requests carry their own fields, no data");
            }
            PingKind::Icmp(message)
        } else if self.mode.udp {
            self.refuse_tcp_only("UDP mode (-2)")?;
            if self.ip.traceroute && self.ip.id.is_some() {
                bail!("-N: a UDP traceroute (-T -2) tells its probes apart by their IP ids, which must count up");
            }
            let Some(DestPorts::One { port, step }) = self.tcp.port else {
                bail!("UDP mode needs a destination port: -p PORT");
            };
            PingKind::Udp {
                port,
                port_step: step,
                base_port: self.tcp.base_port,
                keep_port: self.tcp.keep,
            }
        } else {
            let Some(DestPorts::One { port, step }) = self.tcp.port else {
                bail!("TCP mode needs a destination port: -p PORT (or -1 for ICMP)");
            };
            PingKind::Tcp {
                flags: self.tcp_flags(),
                port,
                port_step: step,
                base_port: self.tcp.base_port,
                keep_port: self.tcp.keep,
                window: self.tcp.window,
                seq: self.tcp.setseq,
                ack: self.tcp.setack,
                timestamp: self.tcp.tcp_timestamp,
            }
        };
        let data = usize::from(self.ip.data.unwrap_or(0));
        let payload = match &self.ip.file {
            Some(path) => Payload::from_file(&files::read_bytes(path, "the data file")?, data),
            None => Payload::filler(data),
        };
        let destination = net::resolve(target, self.family())?;
        kind.check_target(destination.ip)?;
        if self.ip.frag && destination.ip.is_ipv6() {
            bail!("-f fragments IPv4 probes, as hping3: IPv6 probes are sent whole");
        }
        let source = match (self.ip.spoof, self.ip.rand_source) {
            (Some(address), _) if address.is_ipv4() != destination.ip.is_ipv4() => bail!(
                "-a {address} is not of the target's family ({} is {})",
                destination.ip,
                Family::of(destination.ip).name()
            ),
            (Some(address), _) => SourceAddress::Spoofed(address),
            (None, true) => SourceAddress::Random,
            (None, false) => SourceAddress::Route,
        };
        let base = &self.base;
        Ok(ping::Options {
            target_name: target.clone(),
            target: destination.ip,
            kind,
            count: base.count.filter(|&count| count > 0),
            pacing: self.pacing(),
            wait: sweep.wait.unwrap_or(DEFAULT_WAIT),
            ttl: self
                .ip
                .ttl
                .unwrap_or(if self.ip.traceroute { 1 } else { DEFAULT_TTL }),
            ip_fields: IpFields {
                id: self.ip.id,
                tos: self.ip.tos.unwrap_or(0),
                dont_fragment: self.ip.dontfrag,
            },
            payload,
            interface: self.interface(destination.zone.as_ref())?,
            quiet: base.quiet,
            verbose: base.verbose,
            rtt_precision: base.rtt_precision,
            histogram: base.histogram,
            bpf_trace: base.bpf_trace,
            xdp_mode: base.xdp_mode.unwrap_or_default(),
            output: self.output_file(),
            tcp_exit_code: self.tcp.tcpexitcode,
            traceroute: self.ip.traceroute.then_some(traceroute::Options {
                stop: self.ip.tr_stop,
                keep_ttl: self.ip.tr_keep_ttl,
                no_rtt: self.ip.tr_no_rtt,
            }),
            seqnum: self.tcp.seqnum,
            fragments: self.ip.frag,
            source,
        })
    }

    fn sweep_options(&self) -> Result<sweep::Options> {
        let (base, sweep) = (&self.base, &self.sweep);
        let single_target_options = [
            (self.mode.icmp_type.is_some(), "-C"),
            (self.mode.icmp_code.is_some(), "-K"),
            (self.mode.icmp_ts, "--icmp-ts"),
            (self.mode.icmp_addr, "--icmp-addr"),
            (self.mode.raw_ip, "-0"),
            (base.count.is_some(), "-c"),
            (base.interval.is_some(), "-i"),
            (base.fast, "--fast"),
            (base.faster, "--faster"),
            (self.tcp.keep, "-k"),
            // A sweep's IP id holds the probe's epoch and its sequence number the cookie.
            (self.ip.id.is_some(), "-N"),
            (self.ip.data.is_some(), "-d"),
            (self.tcp.setseq.is_some(), "-M"),
            (self.tcp.setack.is_some(), "-L"),
            (self.tcp.tcpexitcode, "--tcpexitcode"),
            (self.ip.traceroute, "-T"),
            (self.tcp.seqnum, "-Q"),
            (self.ip.frag, "-f"),
            (self.ip.spoof.is_some(), "-a"),
            (self.ip.rand_source, "--rand-source"),
            (self.tcp.tcp_timestamp, "--tcp-timestamp"),
        ];
        let single_target_options =
            [&single_target_options[..], &self.traceroute_options()].concat();
        if let Some(option) = first_given(&single_target_options) {
            bail!("{option} has no meaning in a sweep (sweeps send one probe per port and host, or with -1 per host; see --rate and --retries)");
        }
        let kind = if self.mode.icmp {
            if self.tcp_flags().0 != 0 {
                bail!("-1 sweeps send echo requests: drop the TCP flags");
            }
            SweepKind::IcmpEcho
        } else if self.mode.udp {
            self.refuse_tcp_only("a UDP sweep (-2)")?;
            SweepKind::Udp
        } else {
            SweepKind::tcp(self.tcp_flags(), self.tcp.window).map_err(anyhow::Error::msg)?
        };
        let ports = match (&sweep.scan, &self.tcp.port) {
            _ if kind == SweepKind::IcmpEcho => {
                if sweep.scan.is_some() || self.tcp.port.is_some() {
                    bail!("-1 sweeps probe hosts, not ports: drop -p and --scan");
                }
                PortList::hosts_only()
            }
            (Some(_), Some(_)) => bail!("give the ports once: --scan PORTS or -p PORTS"),
            (Some(spec), None) => PortList::parse(spec)?,
            (None, Some(DestPorts::Sweep(ports))) => ports.clone(),
            (None, Some(DestPorts::One { port, step })) => {
                if *step != PortStep::Fixed {
                    bail!("-p +N and ++N move one target's port; a sweep takes a list or range of ports");
                }
                PortList::parse(&port.to_string())?
            }
            (None, None) => bail!("a sweep needs ports: -p PORTS or --scan PORTS"),
        };
        if sweep.shard.is_some_and(|shard| shard.count > 1) && sweep.seed.is_none() {
            bail!("--shard needs --seed: every shard must walk the same order");
        }
        let (targets, interface) = self.targets_and_interface()?;
        let one_host = targets.len() == 1;
        let echo = kind == SweepKind::IcmpEcho;
        let format = sweep.output_format.unwrap_or(if one_host && !echo {
            Format::Table
        } else {
            Format::List
        });
        if format == Format::Table && echo {
            bail!("-O table is hping3's table of one host's ports; a -1 sweep's are -O list, json or csv");
        }
        if format == Format::Table && !one_host {
            bail!("-O table shows one host; for several use -O list, json or csv");
        }
        Ok(sweep::Options {
            targets,
            first_target_name: self.targets[0].clone(),
            ports,
            kind,
            rate: if base.flood {
                None
            } else {
                Some(sweep.rate.unwrap_or(DEFAULT_RATE))
            },
            retries: sweep.retries,
            wait: sweep.wait.unwrap_or(DEFAULT_WAIT),
            seed: sweep.seed,
            shard: sweep.shard.unwrap_or(Shard::WHOLE),
            base_port: self.tcp.base_port,
            ttl: self.ip.ttl.unwrap_or(DEFAULT_TTL),
            tos: self.ip.tos.unwrap_or(0),
            interface,
            qdisc_bypass: sweep.qdisc_bypass,
            status_line: !base.quiet && io::stderr().is_terminal(),
            format,
            output: self.output_file(),
            verbose: base.verbose,
            open_only: sweep.open,
            histogram: base.histogram,
            bpf_trace: base.bpf_trace,
            xdp_mode: base.xdp_mode,
        })
    }
}

impl Cli {
    /// `--output`'s file, and whether `--force` lets it be overwritten.
    fn output_file(&self) -> Option<OutputFile> {
        self.sweep.output.clone().map(|path| OutputFile {
            path,
            overwrite: self.sweep.force,
        })
    }

    /// The targets of a sweep or discovery, less the exclusions, and the interface to use.
    fn targets_and_interface(&self) -> Result<(TargetSet, Option<Interface>)> {
        let sweep = &self.sweep;
        let mut excluded: Vec<String> = sweep
            .exclude
            .iter()
            .map(|block| block.trim().to_string())
            .collect();
        if let Some(path) = &sweep.exclude_file {
            excluded.extend(targets::read_exclude_file(path)?);
        }
        let targets = TargetSet::new(&self.targets, &excluded, self.family())?;
        let interface = self.interface(targets.zone())?;
        Ok((targets, interface))
    }

    fn discover_options(&self) -> Result<discover::Options> {
        let (base, sweep) = (&self.base, &self.sweep);
        let (targets, interface) = self.targets_and_interface()?;
        if targets.is_empty() {
            bail!("no targets left to ask after the exclusions");
        }
        Ok(discover::Options {
            targets,
            rate: if base.flood {
                None
            } else {
                Some(sweep.rate.unwrap_or(DEFAULT_RATE))
            },
            wait: sweep.wait.unwrap_or(DEFAULT_WAIT),
            interface,
            qdisc_bypass: sweep.qdisc_bypass,
            format: sweep.output_format.unwrap_or(Format::List),
            output: self.output_file(),
            bpf_trace: base.bpf_trace,
            xdp_mode: base.xdp_mode.unwrap_or_default(),
            verbose: base.verbose,
        })
    }
}

/// The first option of `options` (given, name) that was given.
fn first_given<'a>(options: &[(bool, &'a str)]) -> Option<&'a str> {
    options
        .iter()
        .find(|(given, _)| *given)
        .map(|&(_, option)| option)
}

/// `-I`'s interface and the one a link-local target's zone names, which must agree.
fn one_interface(named: Option<Interface>, zone: Option<&Interface>) -> Result<Option<Interface>> {
    match (named, zone) {
        (Some(named), Some(zone)) if named.index != zone.index => bail!(
            "-I {} and the target's zone (%{}) name different interfaces",
            named.name,
            zone.name
        ),
        (named, zone) => Ok(named.or_else(|| zone.cloned())),
    }
}

/// Whether clap stopped to print help or the version (a success), not on an error.
pub fn printed_help(error: &clap::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    )
}

/// clap's error as one line, not its usage block: scripts read the first line of stderr.
pub fn parse_error_line(error: &clap::Error) -> String {
    let option = error.get(ContextKind::InvalidArg);
    if let (ErrorKind::UnknownArgument, Some(option)) = (error.kind(), option) {
        let option = option.to_string();
        if let Some(why) = hping3::missing(&option) {
            return echo::line(&format!("{option} {why}"));
        }
    }
    let line = match (error.kind(), std::error::Error::source(error), option) {
        // Our own parsers already say what is wrong with the value.
        (ErrorKind::ValueValidation, Some(reason), Some(option)) => format!("{reason} ({option})"),

        _ => {
            let text = error.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|line| !line.is_empty())
                .map(str::trim)
                .collect();
            let message = message.join(" ");
            format!("{} (see --help)", message.trim_start_matches("error: "))
        }
    };
    echo::line(&line)
}

/// A run's error as one line, whatever a lower layer put in its message.
pub fn error_line(error: &anyhow::Error) -> String {
    let message = format!("{error:#}");
    let lines: Vec<&str> = message
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    echo::line(&lines.join("; "))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use clap::CommandFactory as _;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from([&["prober"], args].concat()).unwrap()
    }

    fn mode(args: &[&str]) -> Result<Mode> {
        parse(args).into_mode()
    }

    fn refusal(args: &[&str]) -> String {
        mode(args).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_sections_are_the_option_groups() {
        let help = Cli::command().render_long_help().to_string();
        let sections: Vec<&str> = help
            .lines()
            .filter(|line| line.ends_with(':') && !line.starts_with(' '))
            .collect();
        assert_eq!(
            sections,
            [
                "Arguments:",
                "Options:",
                "Base options:",
                "Mode (default: TCP):",
                "IP:",
                "TCP:",
                "Sweep:"
            ]
        );
    }

    #[test]
    fn help_gives_the_defaults_and_exit_statuses() {
        let help = Cli::command().render_long_help().to_string();
        let option = |name: &str| {
            let start = help
                .find(name)
                .unwrap_or_else(|| panic!("{name} in the help"));
            let rest = &help[start..];
            rest[..rest.find("\n\n").unwrap_or(rest.len())].to_string()
        };
        assert!(option("--interval <").contains("[default: 1]"));
        assert!(option("--wait <").contains(&format!("[default: {}]", DEFAULT_WAIT.as_secs())));
        assert!(option("--rate <").contains("[default: 10000]"));
        assert_eq!(DEFAULT_RATE, 10_000);
        assert!(option("--baseport <").contains(&format!(
            "a sweep's: {}, the first of its block of {}",
            sweep::DEFAULT_BASE_PORT,
            sweep::SOURCE_PORTS
        )));
        assert!(option("--seed <").contains("[default: random]"));
        assert!(help.contains("Exit status, of a ping and a sweep alike: 0 a reply came"));
    }

    #[test]
    fn hping3s_options_prober_lacks_are_refused_with_what_they_are() {
        let line = |args: &[&str]| parse_error_line(&Cli::try_parse_from(args).unwrap_err());
        assert_eq!(
            line(&["prober", "-9", "-p", "53", "198.18.4.2"]),
            "-9 is hping3's listen mode, which prober does not have"
        );
        assert_eq!(
            line(&[
                "prober",
                "-S",
                "-p",
                "80",
                "--tcp-mss",
                "1460",
                "198.18.4.2"
            ]),
            "--tcp-mss is a TCP option of hping3's, which prober does not have yet"
        );
        assert_eq!(
            line(&["prober", "--no-such-option", "198.18.4.2"]),
            "unexpected argument '--no-such-option' found (see --help)"
        );
    }

    #[test]
    fn parse_errors_are_one_line() {
        let error = Cli::try_parse_from(["prober", "-p", "99999", "h"]).unwrap_err();
        assert_eq!(
            parse_error_line(&error),
            "invalid port '99999': expected a port from 0 to 65535 (+N: one up for each reply, ++N: for each probe), or ports from 1 to 65535 as in 1-1024,8080, all or known (--destport <PORTS>)"
        );
        // A value that starts with '-' is the option's (and wrong), not another option.
        for (args, line) in [
            (
                &["-i", "-1"][..],
                "invalid interval '-1': expected seconds, or uX for X microseconds, at most a day (--interval <INTERVAL>)",
            ),
            (
                &["--rate", "-5"],
                "invalid rate '-5': expected a positive number of probes per second (--rate <PPS>)",
            ),
            (
                &["-t", "abc"],
                "invalid ttl 'abc': expected a number from 0 to 255 (--ttl <TTL>)",
            ),
            (
                &["-w", "-1"],
                "invalid window '-1': expected a number from 0 to 65535 (--win <WINDOW>)",
            ),
            (
                &["-c", "-1"],
                "invalid count '-1': expected a number (0: until interrupted) (--count <COUNT>)",
            ),
            (
                &["--wait", "-1"],
                "invalid wait '-1': expected seconds from 0 to 86400 (--wait <SECONDS>)",
            ),
        ] {
            let error = Cli::try_parse_from([&["prober", "-1"], args, &["h"]].concat()).unwrap_err();
            assert_eq!(parse_error_line(&error), line);
        }
        let error = Cli::try_parse_from(["prober"]).unwrap_err();
        assert_eq!(
            parse_error_line(&error),
            "the following required arguments were not provided: <TARGET>... (see --help)"
        );
        let error = anyhow::anyhow!("first\n\nsecond").context("outer");
        assert_eq!(error_line(&error), "outer: first; second");
        // clap quotes an unknown option whole, less the escape sequences it knows: the line
        // escapes the rest and cuts it.
        let hostile = format!("--\x1b]0;t\x07\x1b[2J\r\x08\u{9b}1m{}", "x".repeat(5000));
        let line = parse_error_line(&Cli::try_parse_from(["prober", &hostile, "h"]).unwrap_err());
        assert!(
            line.starts_with("unexpected argument '--\\x0d\\x9b1mxxx"),
            "{line}"
        );
        assert!(!line.contains('\x1b') && line.len() < 1100, "{line}");
    }

    #[test]
    fn minus_v_prints_the_version_as_hping3s_does() {
        for flag in ["-v", "--version"] {
            let shown = Cli::try_parse_from(["prober", flag]).unwrap_err();
            assert!(printed_help(&shown), "{flag}");
            assert_eq!(
                shown.to_string(),
                format!("prober {}\n", env!("CARGO_PKG_VERSION"))
            );
        }
    }

    #[test]
    fn output_is_overwritten_only_with_force() {
        let Mode::Sweep(new) = mode(&["-p", "80,81", "--output", "r", "198.18.4.2"]).unwrap()
        else {
            panic!("a sweep");
        };
        let file = |overwrite| {
            Some(OutputFile {
                path: PathBuf::from("r"),
                overwrite,
            })
        };
        assert_eq!(new.output, file(false));
        let Mode::Sweep(forced) =
            mode(&["-p", "80,81", "--output", "r", "--force", "198.18.4.2"]).unwrap()
        else {
            panic!("a sweep");
        };
        assert_eq!(forced.output, file(true));
        assert!(
            Cli::try_parse_from(["prober", "-p", "80,81", "--force", "198.18.4.2"]).is_err(),
            "--force needs --output"
        );
    }

    #[test]
    fn arp_asks_a_block_and_lists_by_default() {
        let Mode::Discover(options) = mode(&["--arp", "198.18.4.0/30"]).unwrap() else {
            panic!("--arp is a discovery");
        };
        assert_eq!(options.targets.len(), 4, "the block");
        assert_eq!(options.format, Format::List);
        assert_eq!(options.rate, Some(DEFAULT_RATE));
        for with in [&["-p", "80"][..], &["--scan", "80"], &["--retries", "1"]] {
            let args = [&["--arp", "198.18.4.0/30"], with].concat();
            assert!(
                Cli::try_parse_from(["prober"].iter().chain(&args)).is_err(),
                "{with:?}"
            );
        }
    }

    #[test]
    fn xdp_mode_is_generic_unless_native_is_asked_for() {
        // None: a sweep's own choice (TCX ingress where the kernel has it).
        let xdp_mode = |args: &[&str]| match mode(args).unwrap() {
            Mode::Ping(options) => Some(options.xdp_mode),
            Mode::Sweep(options) => options.xdp_mode,
            Mode::Discover(options) => Some(options.xdp_mode),
        };
        assert_eq!(xdp_mode(&["-1", "198.18.4.2"]), Some(AttachMode::Generic));
        assert_eq!(
            xdp_mode(&["--arp", "198.18.4.0/30"]),
            Some(AttachMode::Generic)
        );
        assert_eq!(xdp_mode(&["-p", "80,81", "198.18.4.2"]), None);
        assert_eq!(
            xdp_mode(&["--xdp-mode", "generic", "-p", "80,81", "198.18.4.2"]),
            Some(AttachMode::Generic)
        );
        let native = ["--xdp-mode", "native"];
        assert_eq!(
            xdp_mode(&[&native[..], &["-1", "198.18.4.2"]].concat()),
            Some(AttachMode::Native)
        );
        assert_eq!(
            xdp_mode(&[&native[..], &["--scan", "80", "198.18.4.2"]].concat()),
            Some(AttachMode::Native)
        );
        let error = Cli::try_parse_from(["prober", "--xdp-mode", "driver", "h"]).unwrap_err();
        assert_eq!(
            parse_error_line(&error),
            "invalid value 'driver' for '--xdp-mode <MODE>' [possible values: generic, native] (see --help)"
        );
    }

    #[test]
    fn tcp_flags_and_pacing_combine() {
        let cli = parse(&["-S", "-A", "-p", "80", "h"]);
        assert_eq!(cli.tcp_flags(), TcpFlags(TcpFlags::SYN | TcpFlags::ACK));
        assert_eq!(cli.pacing(), Pacing::Interval(Duration::from_secs(1)));
        assert_eq!(parse(&["--flood", "-1", "h"]).pacing(), Pacing::Flood);
        assert_eq!(
            parse(&["--fast", "-1", "h"]).pacing(),
            Pacing::Interval(Duration::from_millis(100))
        );
        assert_eq!(
            parse(&["--faster", "-i", "u5", "-1", "h"]).pacing(),
            Pacing::Interval(Duration::from_micros(5)),
            "-i wins over --faster"
        );
    }

    #[test]
    fn sweeps_are_told_apart_from_single_probes() {
        assert!(!parse(&["-S", "-p", "80", "h"]).is_sweep());
        assert!(!parse(&["-1", "h"]).is_sweep());
        assert!(parse(&["--scan", "1-1024", "h"]).is_sweep());
        assert!(parse(&["-p", "22,80", "h"]).is_sweep());
        assert!(
            parse(&["-p", "80-80", "h"]).is_sweep(),
            "a range, even of one port"
        );
        assert!(parse(&["-p", "80", "h1", "h2"]).is_sweep());
        assert!(parse(&["-p", "80", "198.18.4.0/24"]).is_sweep());
        assert!(parse(&["-p", "80", "198.18.4.1-198.18.4.9"]).is_sweep());
        assert!(!parse(&["-p", "80", "host-1.example"]).is_sweep());
        // Options never switch modes: only what is probed does.
        for option in [
            &["-O", "json"][..],
            &["--rate", "5"],
            &["--output", "x.txt"],
            &["--wait", "2"],
            &["--retries", "1"],
            &["--qdisc-bypass"],
        ] {
            let args = [&["-S", "-p", "80", "h"], option].concat();
            assert!(!parse(&args).is_sweep(), "{option:?}");
        }
    }

    #[test]
    fn a_ping_takes_output_and_wait() {
        let Mode::Ping(ping) = mode(&[
            "-c",
            "2",
            "-S",
            "-p",
            "80",
            "198.18.4.2",
            "--output",
            "x.txt",
            "--force",
            "--wait",
            "2.5",
        ])
        .unwrap() else {
            panic!("a ping");
        };
        assert_eq!(
            ping.output,
            Some(OutputFile {
                path: PathBuf::from("x.txt"),
                overwrite: true
            })
        );
        assert_eq!(ping.wait, Duration::from_millis(2500));
        assert_eq!(ping.count, Some(2));
        let Mode::Ping(default) = mode(&["-1", "198.18.4.2"]).unwrap() else {
            panic!("a ping");
        };
        assert_eq!((default.wait, default.output), (DEFAULT_WAIT, None));
    }

    #[test]
    fn a_ping_refuses_what_only_sweeps_do() {
        for (option, args) in [
            ("--rate", &["--rate", "5"][..]),
            ("--retries", &["--retries", "1"]),
            ("--seed", &["--seed", "1"]),
            ("--shard", &["--shard", "1/1"]),
            ("--exclude", &["--exclude", "198.18.4.9"]),
            ("--exclude-file", &["--exclude-file", "x"]),
            ("-O", &["-O", "json"]),
            ("--qdisc-bypass", &["--qdisc-bypass"]),
            ("--open", &["--open"]),
        ] {
            let args = [&["-S", "-p", "80", "198.18.4.2"], args].concat();
            assert_eq!(
                refusal(&args),
                format!("{option} has no meaning for one target and one port: it is for sweeps (several targets or ports, a range such as -p 80-80, or --scan)")
            );
        }
        let Mode::Sweep(one_port) = mode(&["-p", "80-80", "-O", "json", "198.18.4.2"]).unwrap()
        else {
            panic!("a sweep");
        };
        assert_eq!(one_port.ports.len(), 1);
        assert_eq!(one_port.format, Format::Json);
    }

    #[test]
    fn a_ping_gets_its_kind_count_and_target() {
        let Mode::Ping(options) =
            mode(&["-S", "-p", "443", "-c", "3", "-t", "9", "198.18.4.2"]).unwrap()
        else {
            panic!("a ping");
        };
        assert_eq!(options.target, "198.18.4.2".parse::<IpAddr>().unwrap());
        assert_eq!(options.count, Some(3));
        assert_eq!(options.ttl, 9);
        assert!(matches!(
            options.kind,
            PingKind::Tcp {
                port: 443,
                base_port: None,
                keep_port: false,
                window: 64,
                ..
            }
        ));
        let Mode::Ping(icmp) = mode(&["-1", "-c", "0", "198.18.4.2"]).unwrap() else {
            panic!("a ping");
        };
        assert_eq!(icmp.kind, PingKind::Icmp(IcmpMessage::ECHO_REQUEST));
        assert_eq!(icmp.count, None, "-c 0: until interrupted");
    }

    #[test]
    fn icmp_options_choose_the_message_and_imply_icmp_mode() {
        let kind = |args: &[&str]| match mode(args) {
            Ok(Mode::Ping(options)) => Ok(options.kind),
            Ok(_) => panic!("a ping"),
            Err(error) => Err(error.to_string()),
        };
        let icmp = |icmp_type, code| Ok(PingKind::Icmp(IcmpMessage::new(icmp_type, code).unwrap()));
        assert_eq!(kind(&["-K", "3", "198.18.4.2"]), icmp(8, 3));
        assert_eq!(kind(&["-1", "-C", "0", "198.18.4.2"]), icmp(0, 0));
        assert_eq!(kind(&["--icmp-ts", "198.18.4.2"]), icmp(13, 0));
        assert_eq!(kind(&["--icmptype", "13", "198.18.4.2"]), icmp(13, 0));
        assert_eq!(kind(&["--icmp-addr", "198.18.4.2"]), icmp(17, 0));
        for conflicting in [&["--icmp-ts", "-C", "8"][..], &["--icmp-ts", "--icmp-addr"]] {
            let args = [&["prober"], conflicting, &["198.18.4.2"]].concat();
            assert!(Cli::try_parse_from(args).is_err(), "{conflicting:?}");
        }
        assert_eq!(
            kind(&["-C", "17", "-K", "1", "198.18.4.2"]),
            Err("-K 1: timestamp and address mask messages have code 0 (hping3 sends 0 whatever -K says)".into())
        );
    }

    #[test]
    fn raw_ip_mode_takes_a_protocol_and_no_tcp_options() {
        let kind = |args: &[&str]| match mode(args) {
            Ok(Mode::Ping(options)) => Ok(options.kind),
            Ok(_) => panic!("a ping"),
            Err(error) => Err(error.to_string()),
        };
        assert_eq!(
            kind(&["-0", "198.18.4.2"]),
            Ok(PingKind::RawIp { protocol: 6 }),
            "hping3's default: TCP"
        );
        assert_eq!(
            kind(&["--rawip", "--ipproto", "200", "198.18.4.2"]),
            Ok(PingKind::RawIp { protocol: 200 })
        );
        assert_eq!(
            kind(&["-0", "-S", "198.18.4.2"]),
            Err(
                "A TCP flag (-S -A -F -R -P -U -X -Y) is for TCP's header, which raw IP mode (-0) does not send"
                    .into()
            )
        );
        assert_eq!(
            kind(&["-0", "-p", "80", "198.18.4.2"]),
            Err("-p has no meaning in raw IP mode (-0): its probes have no ports".into())
        );
        for refused in [&["-H", "200"][..], &["-0", "-1"], &["-0", "--icmp-ts"]] {
            let args = [&["prober"], refused, &["198.18.4.2"]].concat();
            assert!(Cli::try_parse_from(args).is_err(), "{refused:?}");
        }
        assert!(refusal(&["-0", "198.18.4.0/30"]).starts_with("-0 has no meaning in a sweep"));
    }

    #[test]
    fn traceroute_starts_at_ttl_1_unless_given() {
        let traced = |args: &[&str]| {
            let Mode::Ping(options) = mode(&[args, &["198.18.4.2"]].concat()).unwrap() else {
                panic!("a ping");
            };
            (options.ttl, options.traceroute)
        };
        assert_eq!(traced(&["-S", "-p", "80"]), (64, None));
        assert_eq!(
            traced(&["-T", "-S", "-p", "80"]),
            (1, Some(traceroute::Options::default()))
        );
        assert_eq!(
            traced(&[
                "-T",
                "-1",
                "-t",
                "3",
                "--tr-stop",
                "--tr-keep-ttl",
                "--tr-no-rtt"
            ]),
            (
                3,
                Some(traceroute::Options {
                    stop: true,
                    keep_ttl: true,
                    no_rtt: true,
                })
            )
        );
        assert_eq!(
            refusal(&["--tr-no-rtt", "-1", "198.18.4.2"]),
            "--tr-no-rtt is a traceroute option: it needs -T"
        );
        assert_eq!(
            refusal(&["-T", "-2", "-p", "53", "-N", "7", "198.18.4.2"]),
            "-N: a UDP traceroute (-T -2) tells its probes apart by their IP ids, which must count up"
        );
        assert_eq!(
            refusal(&["-T", "-p", "80,81", "198.18.4.2"]),
            "-T has no meaning in a sweep (sweeps send one probe per port and host, or with -1 per host; see --rate and --retries)"
        );
    }

    #[test]
    fn header_fields_reach_the_probes() {
        let Mode::Ping(options) = mode(&[
            "-S",
            "-p",
            "80",
            "-N",
            "1234",
            "-o",
            "0x10",
            "-y",
            "-M",
            "0xdeadbeef",
            "-L",
            "7",
            "198.18.4.2",
        ])
        .unwrap() else {
            panic!("a ping");
        };
        assert_eq!(
            options.ip_fields,
            IpFields {
                id: Some(1234),
                tos: 0x10,
                dont_fragment: true
            }
        );
        assert!(matches!(
            options.kind,
            PingKind::Tcp {
                seq: Some(0xdead_beef),
                ack: Some(7),
                ..
            }
        ));
        let Mode::Ping(long) = mode(&["-1", "--tos", "b8", "--id", "0", "198.18.4.2"]).unwrap()
        else {
            panic!("a ping");
        };
        assert_eq!((long.ip_fields.tos, long.ip_fields.id), (0xb8, Some(0)));
        let Mode::Sweep(sweep) = mode(&["-p", "80,81", "-o", "10", "-y", "198.18.4.2"]).unwrap()
        else {
            panic!("a sweep");
        };
        assert_eq!(sweep.tos, 0x10);
        // Options of TCP pings alone, each refused with -1 and in sweeps.
        type Given = fn(&ping::Options) -> bool;
        let tcp_only: [(&str, Given, &str); 3] = [
            (
                "--tcpexitcode",
                |options| options.tcp_exit_code,
                "--tcpexitcode exits with a TCP reply's flags",
            ),
            (
                "-Q",
                |options| options.seqnum,
                "-Q prints TCP replies' sequence numbers",
            ),
            (
                "--tcp-timestamp",
                |options| {
                    matches!(
                        options.kind,
                        PingKind::Tcp {
                            timestamp: true,
                            ..
                        }
                    )
                },
                "--tcp-timestamp is a TCP option",
            ),
        ];
        for (option, given, why) in tcp_only {
            let Mode::Ping(with) = mode(&["-S", "-p", "80", option, "198.18.4.2"]).unwrap() else {
                panic!("a ping");
            };
            assert!(given(&with) && !given(&options), "{option}");
            assert_eq!(
                refusal(&["-1", option, "198.18.4.2"]),
                format!("{why}: it needs TCP mode, not -1")
            );
            assert!(refusal(&["-p", "80,81", option, "198.18.4.2"])
                .starts_with(&format!("{option} has no meaning in a sweep")));
        }
        let Mode::Ping(fragments) = mode(&["-S", "-p", "80", "-f", "198.18.4.2"]).unwrap() else {
            panic!("a ping");
        };
        assert!(fragments.fragments && !options.fragments);
        assert_eq!(
            refusal(&["-S", "-p", "80", "-f", "2001:db8::2"]),
            "-f fragments IPv4 probes, as hping3: IPv6 probes are sent whole"
        );
        assert!(refusal(&["-p", "80,81", "-f", "198.18.4.2"])
            .starts_with("-f has no meaning in a sweep"));
        assert!(Cli::try_parse_from(["prober", "-p", "80", "-f", "-y", "198.18.4.2"]).is_err());
        let source = |args: &[&str]| {
            let Mode::Ping(ping) = mode(&[&["-S", "-p", "80"], args].concat()).unwrap() else {
                panic!("a ping");
            };
            ping.source
        };
        assert_eq!(options.source, SourceAddress::Route);
        assert_eq!(
            source(&["-a", "198.18.9.9", "198.18.4.2"]),
            SourceAddress::Spoofed("198.18.9.9".parse().unwrap())
        );
        assert_eq!(
            source(&["--spoof", "2001:db8::9", "2001:db8::2"]),
            SourceAddress::Spoofed("2001:db8::9".parse().unwrap())
        );
        assert_eq!(
            source(&["--rand-source", "198.18.4.2"]),
            SourceAddress::Random
        );
        assert_eq!(
            refusal(&["-S", "-p", "80", "-a", "2001:db8::9", "198.18.4.2"]),
            "-a 2001:db8::9 is not of the target's family (198.18.4.2 is IPv4)"
        );
        for sweep_refused in [&["-a", "198.18.9.9"][..], &["--rand-source"]] {
            assert!(
                refusal(&[&["-p", "80,81"], sweep_refused, &["198.18.4.2"]].concat())
                    .starts_with(&format!("{} has no meaning in a sweep", sweep_refused[0]))
            );
        }
        let names = Cli::try_parse_from(["prober", "-p", "80", "-a", "host", "198.18.4.2"]);
        assert!(names.unwrap_err().to_string().contains(
            "invalid source address 'host': expected an IPv4 or IPv6 address without a zone"
        ));
        for (option, value) in [("-N", "5"), ("-M", "1"), ("-L", "1")] {
            assert!(
                refusal(&["-p", "80,81", option, value, "198.18.4.2"])
                    .starts_with(&format!("{option} has no meaning in a sweep")),
                "{option}"
            );
        }
        for (args, error) in [
            (
                ["-o", "100"],
                "invalid TOS '100': expected a hexadecimal byte from 0 to ff (-o 10, -o 0x10) (--tos <HEX>)",
            ),
            (
                ["-N", "65536"],
                "invalid IP id '65536': expected a number from 0 to 65535 (--id <ID>)",
            ),
            (
                ["-M", "+1"],
                "invalid TCP number '+1': expected 0 to 4294967295, decimal or 0x hexadecimal (--setseq <SEQ>)",
            ),
            (
                ["-L", "4294967296"],
                "invalid TCP number '4294967296': expected 0 to 4294967295, decimal or 0x hexadecimal (--setack <ACK>)",
            ),
        ] {
            let error_line = parse_error_line(
                &Cli::try_parse_from([&["prober"], &args[..], &["h"]].concat()).unwrap_err(),
            );
            assert_eq!(error_line, error);
        }
    }

    #[test]
    fn data_is_hping3s_filler_or_the_files() {
        let Mode::Ping(filler) = mode(&["-S", "-p", "80", "-d", "100", "198.18.4.2"]).unwrap()
        else {
            panic!("a ping");
        };
        assert_eq!(filler.payload, Payload::filler(100));
        let path = std::env::temp_dir().join(format!("prober-data-{}", std::process::id()));
        std::fs::write(&path, b"abcdefg").unwrap();
        let file = path.to_str().unwrap();
        let from_file = mode(&["-1", "-d", "3", "-E", file, "198.18.4.2"]);
        std::fs::remove_file(&path).unwrap();
        let Mode::Ping(from_file) = from_file.unwrap() else {
            panic!("a ping");
        };
        assert_eq!(from_file.payload, Payload::from_file(b"abcdefg", 3));
        assert!(refusal(&["-1", "-d", "3", "-E", file, "198.18.4.2"])
            .starts_with(&format!("opening the data file {file}")));
        let error = Cli::try_parse_from(["prober", "-1", "-E", file, "h"]).unwrap_err();
        assert!(
            parse_error_line(&error)
                .starts_with("the following required arguments were not provided: --data <SIZE>"),
            "-E needs -d, as in hping3"
        );
        assert!(refusal(&["-p", "80,81", "-d", "1", "198.18.4.2"])
            .starts_with("-d has no meaning in a sweep"));
        let error = Cli::try_parse_from(["prober", "-1", "-d", "65496", "h"]).unwrap_err();
        assert_eq!(
            parse_error_line(&error),
            "invalid data size '65496': expected a number of bytes from 0 to 65495 (--data <SIZE>)"
        );
    }

    #[test]
    fn pings_refuse_what_they_cannot_do() {
        assert_eq!(
            refusal(&["-S", "198.18.4.2"]),
            "TCP mode needs a destination port: -p PORT (or -1 for ICMP)"
        );
        assert_eq!(
            refusal(&["-1", "fe80::1"]),
            "'fe80::1' is link-local: name the interface it is on as its zone, fe80::1%IF"
        );
        assert_eq!(
            refusal(&["-1", "-I", "prb-no-such-if", "198.18.4.2"]),
            "unknown interface 'prb-no-such-if'"
        );
    }

    #[test]
    fn ipv6_targets_take_either_mode() {
        let Mode::Ping(syn) = mode(&["-S", "-p", "80", "2001:db8::2"]).unwrap() else {
            panic!("a ping");
        };
        assert_eq!(syn.target, "2001:db8::2".parse::<IpAddr>().unwrap());
        let Mode::Ping(echo) = mode(&["-1", "-6", "::1"]).unwrap() else {
            panic!("a ping");
        };
        assert_eq!(
            (echo.kind, echo.target),
            (
                PingKind::Icmp(IcmpMessage::ECHO_REQUEST),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
            )
        );
        let Mode::Sweep(sweep) = mode(&[
            "-p",
            "80,443",
            "2001:db8::/120",
            "--exclude",
            "2001:db8::ff",
        ])
        .unwrap() else {
            panic!("a sweep");
        };
        assert_eq!(sweep.targets.len(), 255);
        assert_eq!(sweep.format, Format::List);
    }

    #[test]
    fn minus_4_and_6_choose_the_family() {
        assert_eq!(parse(&["-1", "h"]).family(), None);
        assert_eq!(parse(&["-4", "-1", "h"]).family(), Some(Family::V4));
        assert_eq!(parse(&["--ipv6", "-1", "h"]).family(), Some(Family::V6));
        let error = Cli::try_parse_from(["prober", "-4", "-6", "-1", "h"]).unwrap_err();
        assert!(
            parse_error_line(&error)
                .starts_with("the argument '--ipv4' cannot be used with '--ipv6'"),
            "{}",
            parse_error_line(&error)
        );
        assert_eq!(
            refusal(&["-6", "-1", "198.18.4.2"]),
            "-6 asks for IPv6, but '198.18.4.2' is an IPv4 address"
        );
        assert_eq!(
            refusal(&["-4", "-S", "-p", "80", "2001:db8::2"]),
            "-4 asks for IPv4, but '2001:db8::2' is an IPv6 address"
        );
        assert_eq!(
            refusal(&["-6", "-p", "80", "2001:db8::/120", "198.18.4.2"]),
            "-6 asks for IPv6, but '198.18.4.2' is an IPv4 address"
        );
        assert!(mode(&["-4", "-1", "198.18.4.2"]).is_ok());
    }

    #[test]
    fn a_link_local_targets_zone_is_its_interface() {
        let lo = Interface::by_name("lo").unwrap();
        let Mode::Ping(ping) = mode(&["-1", "fe80::1%lo"]).unwrap() else {
            panic!("a ping");
        };
        assert_eq!(ping.interface, Some(lo.clone()));
        assert_eq!(ping.target_name, "fe80::1%lo", "as typed, for the header");
        assert_eq!(ping.target, "fe80::1".parse::<IpAddr>().unwrap());
        let Mode::Ping(both) = mode(&["-1", "-I", "lo", "fe80::1%1"]).unwrap() else {
            panic!("a ping");
        };
        assert_eq!(both.interface, Some(lo.clone()));
        let Mode::Sweep(sweep) = mode(&["-p", "80", "fe80::%lo/126"]).unwrap() else {
            panic!("a sweep");
        };
        assert_eq!(sweep.interface, Some(lo.clone()));
        let other = Interface {
            index: lo.index + 1000,
            name: "prb-other".into(),
        };
        assert_eq!(
            one_interface(Some(other.clone()), Some(&lo))
                .unwrap_err()
                .to_string(),
            "-I prb-other and the target's zone (%lo) name different interfaces"
        );
        assert_eq!(
            one_interface(Some(other.clone()), None).unwrap(),
            Some(other)
        );
        assert_eq!(one_interface(None, Some(&lo)).unwrap(), Some(lo));
        assert_eq!(one_interface(None, None).unwrap(), None);
        assert!(refusal(&["-p", "80,81", "fe80::/120"]).contains("is link-local"));
    }

    #[test]
    fn a_sweep_gets_its_defaults() {
        let Mode::Sweep(one) = mode(&["--scan", "1-1024", "198.18.4.2"]).unwrap() else {
            panic!("a sweep");
        };
        assert_eq!(one.format, Format::Table, "one host: hping3's table");
        assert_eq!(one.rate, Some(DEFAULT_RATE));
        assert_eq!(one.wait, DEFAULT_WAIT);
        assert_eq!(one.base_port, None);
        assert_eq!(one.shard, Shard::WHOLE);
        assert_eq!(one.ports.len(), 1024);
        assert_eq!(one.kind, SweepKind::TcpSyn { window: 64 });
        for (flags, kind) in [
            (&["-S"][..], SweepKind::TcpSyn { window: 64 }),
            (
                &["-A"],
                SweepKind::TcpAck {
                    flags: TcpFlags(TcpFlags::ACK),
                    window: 64,
                },
            ),
            (
                &["-F"],
                SweepKind::TcpFin {
                    flags: TcpFlags(TcpFlags::FIN),
                    window: 64,
                },
            ),
            (
                &["-F", "-P", "-U"],
                SweepKind::TcpFin {
                    flags: TcpFlags(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG),
                    window: 64,
                },
            ),
        ] {
            let args = [flags, &["--scan", "80", "198.18.4.2"]].concat();
            let Mode::Sweep(sweep) = mode(&args).unwrap() else {
                panic!("a sweep");
            };
            assert_eq!(sweep.kind, kind, "{flags:?}");
        }
        let Mode::Sweep(many) = mode(&["-p", "80", "198.18.4.0/30", "--flood"]).unwrap() else {
            panic!("a sweep");
        };
        assert_eq!(many.format, Format::List, "several hosts: masscan's list");
        assert_eq!(many.rate, None, "--flood");
        assert_eq!(many.targets.len(), 4);
    }

    #[test]
    fn udp_mode_pings_and_sweeps() {
        let Mode::Ping(ping) =
            mode(&["-2", "-p", "++53", "-s", "1000", "-k", "198.18.4.2"]).unwrap()
        else {
            panic!("a ping");
        };
        assert_eq!(
            ping.kind,
            PingKind::Udp {
                port: 53,
                port_step: PortStep::PerProbe,
                base_port: Some(1000),
                keep_port: true,
            }
        );
        let Mode::Sweep(sweep) = mode(&["--udp", "-p", "53,161", "198.18.4.2"]).unwrap() else {
            panic!("a sweep");
        };
        assert_eq!(sweep.kind, SweepKind::Udp);
        assert_eq!(
            refusal(&["-2", "198.18.4.2"]),
            "UDP mode needs a destination port: -p PORT"
        );
        assert_eq!(
            refusal(&["-2", "-S", "-p", "53", "198.18.4.2"]),
            "A TCP flag (-S -A -F -R -P -U -X -Y) is for TCP's header, which UDP mode (-2) does not send"
        );
        assert_eq!(
            refusal(&["-2", "-S", "-p", "53,54", "198.18.4.2"]),
            "A TCP flag (-S -A -F -R -P -U -X -Y) is for TCP's header, which a UDP sweep (-2) does not send"
        );
        let conflict = Cli::try_parse_from(["prober", "-2", "-1", "198.18.4.2"]).unwrap_err();
        assert_eq!(conflict.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn sweeps_refuse_what_they_cannot_do() {
        assert_eq!(
            refusal(&["-1", "--scan", "80", "198.18.4.2"]),
            "-1 sweeps probe hosts, not ports: drop -p and --scan"
        );
        assert!(refusal(&["-1", "-S", "198.18.4.0/30"]).starts_with("-1 sweeps send echo requests"));
        assert!(
            refusal(&["-1", "-O", "table", "198.18.4.0/30"]).starts_with("-O table is hping3's")
        );
        assert!(refusal(&["-k", "--scan", "80", "198.18.4.2"]).starts_with("-k has no meaning"));
        assert_eq!(
            refusal(&["-R", "--scan", "80", "198.18.4.2"]),
            "a sweep cannot send -R: nothing answers a RST"
        );
        assert!(refusal(&["-S", "-F", "--scan", "80", "198.18.4.2"])
            .starts_with("a SYN sweep sends SYN alone: drop -F"));
        assert!(refusal(&["--shard", "1/2", "--scan", "80", "198.18.4.2"]).contains("needs --seed"));
        assert!(refusal(&["-p", "80", "--scan", "80", "198.18.4.2"]).contains("ports once"));
        assert!(refusal(&["-p", "+80", "198.18.4.2", "198.18.4.3"]).starts_with("-p +N and ++N"));
        assert!(refusal(&["--rate", "5", "198.18.4.2", "198.18.4.3"]).contains("needs ports"));
        assert_eq!(
            refusal(&["-p", "80", "-O", "table", "198.18.4.0/30"]),
            "-O table shows one host; for several use -O list, json or csv"
        );
        assert_eq!(
            refusal(&["-p", "80", "198.18.4.1", "2001:db8::/120"]),
            "'198.18.4.1' is IPv4 and '2001:db8::/120' IPv6: a sweep probes one address family; \
             run a prober for each (-4 or -6 picks a name's)"
        );
        assert!(refusal(&["-p", "80", "2001:db8::/64"]).starts_with(
            "the targets hold 18446744073709551616 addresses: a sweep probes at most 8589934592"
        ));
        assert!(refusal(&["-p", "80", "198.18.4.0/24", "--exclude", "x"])
            .starts_with("invalid exclusion 'x'"));
        // A range was a host name to look up: it is a sweep's block, in either mode.
        let Mode::Sweep(echoes) = mode(&["-1", "198.18.4.1-198.18.4.9"]).unwrap() else {
            panic!("a sweep of echoes");
        };
        assert_eq!(echoes.kind, SweepKind::IcmpEcho);
        assert_eq!((echoes.targets.len(), echoes.ports.len()), (9, 1));
        assert_eq!(echoes.format, Format::List);
        let Mode::Sweep(range) = mode(&[
            "-p",
            "80",
            "198.18.4.1-198.18.4.9",
            "--exclude",
            "198.18.4.2-198.18.4.3",
        ])
        .unwrap() else {
            panic!("a sweep");
        };
        assert_eq!(range.targets.len(), 7);
        assert_eq!(
            refusal(&[
                "-p",
                "80",
                "-O",
                "table",
                "-I",
                "prb-no-such-if",
                "198.18.4.0/30"
            ]),
            "unknown interface 'prb-no-such-if'",
            "the interface is checked before the format"
        );
        assert!(
            Cli::try_parse_from(["prober", "-p", "80", "h", "--rate", "5", "--flood"]).is_err(),
            "--rate and --flood conflict"
        );
    }
}
