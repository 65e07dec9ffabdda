//! The block of source ports a sweep sends from, kept clear of the host's own TCP (or, for a UDP
//! sweep, UDP): outside the range the kernel takes ephemeral ports from
//! (net.ipv4.ip_local_port_range), so no connection the host opens during the sweep lands in it,
//! and free of every port a socket of the host of the sweep's transport (IPv4 or IPv6, any
//! state) holds now. Otherwise the sweep's probes and bounced RSTs would go out under those
//! connections' ports, and late replies to probes would reach their sockets — or, for UDP,
//! whose answers the XDP program takes from anyone, the sockets' own traffic would be taken
//! for answers.
//!
//! `-s` inside the range or on a held port is refused; the default block moves to the highest
//! clear one when it is not clear itself.
//!
//! Ports below net.ipv4.ip_unprivileged_port_start need no care: prober binds no socket to its
//! source ports, it writes them into the packets it builds.
use std::{collections::BTreeSet, fmt, io::ErrorKind, ops::RangeInclusive};

use anyhow::{bail, Context as _, Result};

use super::plan::{DEFAULT_BASE_PORT, SOURCE_PORTS};

const EPHEMERAL_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// The sockets of this network namespace, one a line; a table is missing when its family is
/// disabled (`ipv6.disable=1`).
const TCP_TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];
const UDP_TABLES: [&str; 2] = ["/proc/net/udp", "/proc/net/udp6"];

/// Whose sockets a sweep's block must keep clear of: its transport's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn tables(self) -> [&'static str; 2] {
        match self {
            Transport::Tcp => TCP_TABLES,
            Transport::Udp => UDP_TABLES,
        }
    }

    /// Its name, and `ss`'s option that lists its sockets.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Transport::Tcp => ("TCP", "-tan"),
            Transport::Udp => ("UDP", "-uan"),
        }
    }
}

/// The last port of a block starting at `first`, if the block fits below 65536.
fn last_port(first: u16) -> Option<u16> {
    first.checked_add(SOURCE_PORTS - 1)
}

/// What the host's own sockets of one transport take their local ports from.
#[derive(Debug, PartialEq, Eq)]
pub struct HostSockets {
    transport: Transport,
    ephemeral: RangeInclusive<u16>,
    in_use: BTreeSet<u16>,
}

impl HostSockets {
    /// The host's as the kernel shows them now, in prober's network namespace.
    pub fn read(transport: Transport) -> Result<HostSockets> {
        let range = std::fs::read_to_string(EPHEMERAL_RANGE)
            .with_context(|| format!("reading {EPHEMERAL_RANGE}"))?;
        let mut in_use = BTreeSet::new();
        for table in transport.tables() {
            match std::fs::read_to_string(table) {
                Ok(text) => in_use.extend(local_ports(&text).with_context(|| table)?),
                Err(error) if error.kind() == ErrorKind::NotFound => {}
                Err(error) => return Err(error).with_context(|| format!("reading {table}")),
            }
        }
        Ok(HostSockets {
            transport,
            ephemeral: port_range(&range).context(EPHEMERAL_RANGE)?,
            in_use,
        })
    }

    /// Why the block from `first` is not clear, if it is not.
    fn conflict(&self, first: u16, last: u16) -> Option<Conflict> {
        if first <= *self.ephemeral.end() && *self.ephemeral.start() <= last {
            return Some(Conflict::Ephemeral(self.ephemeral.clone()));
        }
        let held: Vec<u16> = self.in_use.range(first..=last).copied().collect();
        (!held.is_empty()).then_some(Conflict::InUse(held, self.transport))
    }

    /// The first port of the highest clear block, if there is one.
    fn highest_clear_block(&self) -> Option<u16> {
        let mut clear_run = 0;
        for port in (1..=u16::MAX).rev() {
            if self.ephemeral.contains(&port) || self.in_use.contains(&port) {
                clear_run = 0;
            } else {
                clear_run += 1;
                if clear_run == SOURCE_PORTS {
                    return Some(port);
                }
            }
        }
        None
    }

    /// How to get out of a conflict: the block to give `-s` instead, or what to change.
    fn way_out(&self) -> String {
        match self.highest_clear_block() {
            Some(first) => format!("give -s {first}, whose block is clear"),
            None => format!(
                "no block of {SOURCE_PORTS} ports is clear; narrow net.ipv4.ip_local_port_range"
            ),
        }
    }
}

/// Why a block is not the sweep's to take.
#[derive(Debug, PartialEq, Eq)]
enum Conflict {
    Ephemeral(RangeInclusive<u16>),
    /// The held ports, in order, and whose.
    InUse(Vec<u16>, Transport),
}

/// Follows "source ports A-B" in a sentence.
impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Conflict::Ephemeral(range) => write!(
                f,
                "overlap the ephemeral port range {}-{} (net.ipv4.ip_local_port_range), from \
                 which the host's own connections take their ports",
                range.start(),
                range.end()
            ),
            Conflict::InUse(ports, transport) if ports.len() == 1 => {
                let (name, ss) = transport.names();
                write!(
                    f,
                    "include port {0}, held by a {name} socket of this host (ss {ss} 'sport = \
                     :{0}' shows it)",
                    ports[0]
                )
            }
            Conflict::InUse(ports, transport) => {
                let (name, ss) = transport.names();
                const SHOWN: usize = 3;
                let shown: Vec<String> = ports.iter().take(SHOWN).map(u16::to_string).collect();
                let more = match ports.len() - shown.len() {
                    0 => String::new(),
                    more => format!(" and {more} more"),
                };
                write!(
                    f,
                    "include ports {}{more}, held by {name} sockets of this host (ss {ss} shows \
                     them)",
                    shown.join(", ")
                )
            }
        }
    }
}

/// The sweep's block of source ports.
#[derive(Debug, PartialEq, Eq)]
pub struct Block {
    pub first: u16,
    /// Why the default block was not taken, for `-V`.
    pub moved: Option<String>,
}

/// The block of `requested` (`-s`) when it is clear, an error saying why not otherwise; with no
/// `-s`, the default block when it is clear, or else the highest clear block.
pub fn choose(requested: Option<u16>, host: &HostSockets) -> Result<Block> {
    let first = requested.unwrap_or(DEFAULT_BASE_PORT);
    let Some(last) = last_port(first) else {
        bail!(
            "base source port {first} too high: a sweep uses {SOURCE_PORTS} source ports from it \
             (at most {})",
            u16::MAX - (SOURCE_PORTS - 1)
        );
    };
    let Some(conflict) = host.conflict(first, last) else {
        return Ok(Block { first, moved: None });
    };
    let ports = format!("source ports {first}-{last}");
    if requested.is_some() {
        bail!("{ports} (-s {first}) {conflict}: {}", host.way_out());
    }
    match host.highest_clear_block() {
        Some(clear) => Ok(Block {
            first: clear,
            moved: Some(format!(
                "sending from source ports {clear}-{}, since the default {ports} {conflict}",
                clear + (SOURCE_PORTS - 1)
            )),
        }),
        None => bail!(
            "the default {ports} {conflict}, and no other block of {SOURCE_PORTS} ports outside \
             the ephemeral port range is clear: narrow net.ipv4.ip_local_port_range"
        ),
    }
}

/// `ip_local_port_range`: "32768\t60999".
fn port_range(text: &str) -> Result<RangeInclusive<u16>> {
    let ports: Vec<u16> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("not a port range: {text:?}"))?;
    match ports[..] {
        [low, high] if low <= high => Ok(low..=high),
        _ => bail!("not a port range: {text:?}"),
    }
}

/// The local ports of `/proc/net/tcp`, `tcp6`, `udp` or `udp6`: after a header line, one socket a
/// line, its local address (hex address, `:`, hex port) in the second field.
fn local_ports(table: &str) -> Result<Vec<u16>> {
    table
        .lines()
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok())
                .with_context(|| format!("no local port in {line:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/net/tcp as the kernel writes it: a listener on 127.0.0.1:631, a connection from port 62000
    /// (0xF230) and one in TIME-WAIT from port 45678 (0xB26E).
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21794 1 0000000000000000 100 0 0 10 0
   1: 020012C6:F230 010012C6:0050 01 00000000:00000000 00:00000000 00000000     0        0 97531 1 0000000000000000 20 4 30 10 -1
   2: 020012C6:B26E 010012C6:0050 06 00000000:00000000 03:00001626 00000000     0        0 0 3 0000000000000000
";
    /// /proc/net/tcp6 as the kernel writes it: a listener on [::]:64000 (0xFA00).
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:FA00 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21833 1 0000000000000000 100 0 0 10 0
";

    fn host(range: &str, tables: &[&str]) -> HostSockets {
        HostSockets {
            transport: Transport::Tcp,
            ephemeral: port_range(range).unwrap(),
            in_use: tables
                .iter()
                .flat_map(|table| local_ports(table).unwrap())
                .collect(),
        }
    }

    fn refusal(requested: Option<u16>, host: &HostSockets) -> String {
        choose(requested, host).unwrap_err().to_string()
    }

    #[test]
    fn reads_the_kernels_tables() {
        assert_eq!(port_range("32768\t60999\n").unwrap(), 32768..=60999);
        assert_eq!(local_ports(TCP).unwrap(), [631, 62000, 45678]);
        assert_eq!(local_ports(TCP6).unwrap(), [64000]);
        let header_only = TCP.lines().next().unwrap();
        assert!(local_ports(header_only).unwrap().is_empty());
        for bad in ["", "32768", "60999 32768", "1 2 3", "a b", "0 65536"] {
            assert!(port_range(bad).is_err(), "{bad:?} taken as a range");
        }
        let cut = "header\n   0: 0100007F 00000000:0000 0A\n";
        assert!(local_ports(cut).is_err(), "a line without a port skipped");
    }

    #[test]
    fn the_default_block_is_taken_when_clear() {
        let quiet = host("32768 60999", &[]);
        assert_eq!(
            choose(None, &quiet).unwrap(),
            Block {
                first: DEFAULT_BASE_PORT,
                moved: None
            }
        );
        assert_eq!(choose(Some(20000), &quiet).unwrap().first, 20000);
        let busy_elsewhere = host("32768 60999", &[TCP]);
        assert_eq!(
            choose(Some(1000), &busy_elsewhere).unwrap().first,
            1000,
            "the block 1000-5095 holds none of the host's ports"
        );
    }

    #[test]
    fn the_default_block_moves_off_held_ports() {
        let busy = host("32768 60999", &[TCP]);
        let block = choose(None, &busy).unwrap();
        assert_eq!(block.first, 32768 - SOURCE_PORTS, "the highest clear block");
        assert_eq!(
            block.moved.unwrap(),
            "sending from source ports 28672-32767, since the default source ports 61440-65535 \
             include port 62000, held by a TCP socket of this host (ss -tan 'sport = :62000' \
             shows it)"
        );
        // Above the range only 61000-61999 and 62001-65535 are left, both too short.
        let wide = host("32768 60999", &[TCP, TCP6]);
        assert_eq!(choose(None, &wide).unwrap().first, 28672);
        let low = host("40000 60000", &[]);
        assert_eq!(
            choose(None, &low).unwrap().first,
            DEFAULT_BASE_PORT,
            "clear, though not the highest clear block"
        );
    }

    #[test]
    fn the_default_block_moves_out_of_a_wide_ephemeral_range() {
        let block = choose(None, &host("10000 63000", &[])).unwrap();
        assert_eq!(block.first, 10000 - SOURCE_PORTS);
        assert!(
            block
                .moved
                .unwrap()
                .contains("overlap the ephemeral port range 10000-63000"),
            "-V must say why"
        );
        assert_eq!(
            refusal(None, &host("1024 65535", &[])),
            "the default source ports 61440-65535 overlap the ephemeral port range 1024-65535 \
             (net.ipv4.ip_local_port_range), from which the host's own connections take their \
             ports, and no other block of 4096 ports outside the ephemeral port range is clear: \
             narrow net.ipv4.ip_local_port_range"
        );
    }

    #[test]
    fn a_requested_block_in_the_ephemeral_range_is_refused() {
        let quiet = host("32768 60999", &[]);
        assert_eq!(
            refusal(Some(32768), &quiet),
            "source ports 32768-36863 (-s 32768) overlap the ephemeral port range 32768-60999 \
             (net.ipv4.ip_local_port_range), from which the host's own connections take their \
             ports: give -s 61440, whose block is clear"
        );
        // Touching the range at either end is overlapping it.
        for first in [28673, 60999] {
            assert!(choose(Some(first), &quiet).is_err(), "-s {first}");
        }
        assert!(choose(Some(28672), &quiet).is_ok());
        assert!(choose(Some(61000), &quiet).is_ok());
    }

    #[test]
    fn a_requested_block_with_held_ports_is_refused() {
        let busy = host("32768 60999", &[TCP, TCP6]);
        assert_eq!(
            refusal(Some(61440), &busy),
            "source ports 61440-65535 (-s 61440) include ports 62000, 64000, held by TCP \
             sockets of this host (ss -tan shows them): give -s 28672, whose block is clear"
        );
        assert_eq!(
            refusal(Some(1), &busy),
            "source ports 1-4096 (-s 1) include port 631, held by a TCP socket of this host \
             (ss -tan 'sport = :631' shows it): give -s 28672, whose block is clear"
        );
        let crowded = HostSockets {
            transport: Transport::Tcp,
            ephemeral: 4097..=65535,
            in_use: (100..110).collect(),
        };
        assert_eq!(
            refusal(Some(1), &crowded),
            "source ports 1-4096 (-s 1) include ports 100, 101, 102 and 7 more, held by TCP \
             sockets of this host (ss -tan shows them): no block of 4096 ports is clear; narrow \
             net.ipv4.ip_local_port_range"
        );
    }

    /// /proc/net/udp as the kernel writes it: a socket bound to 0.0.0.0:62000 (0xF230).
    const UDP: &str = "\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:F230 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41234 2 0000000000000000 0
";

    #[test]
    fn a_udp_sweeps_block_keeps_clear_of_udp_sockets() {
        assert_eq!(local_ports(UDP).unwrap(), [62000]);
        let busy = HostSockets {
            transport: Transport::Udp,
            ..host("32768 60999", &[UDP])
        };
        assert_eq!(
            refusal(Some(61440), &busy),
            "source ports 61440-65535 (-s 61440) include port 62000, held by a UDP socket of \
             this host (ss -uan 'sport = :62000' shows it): give -s 28672, whose block is clear"
        );
        assert_eq!(Transport::Udp.tables(), ["/proc/net/udp", "/proc/net/udp6"]);
    }

    #[test]
    fn a_block_past_65535_is_refused() {
        let quiet = host("32768 60999", &[]);
        assert!(refusal(Some(61441), &quiet).starts_with("base source port 61441 too high"));
        assert!(choose(Some(61440), &quiet).is_ok());
    }
}
