//! Testbed for prober's end-to-end tests (and for `cargo xtask demo`).
//!
//! A [`TestHost`] is a network namespace joined to the host by a veth pair, addressed with a /30
//! inside 198.18.4.0 – 198.19.255.255 (the benchmarking range 198.18.0.0/15, minus 198.18.0.0/22
//! which is left to people) and a /64 inside 2001:db8::/32 that the /30 names;
//! [`TestHost::add_routed_addresses`] and [`TestHost::add_routed_addresses6`] give it more
//! addresses, from blocks routed to it out of the same ranges. Tests that run one body over both
//! families name it with [`Family`]. Everything a `TestHost` creates is removed when it is
//! dropped, also when a test panics. Namespaces left behind by a test process that was killed
//! (named `prb-<pid>-<n>` with no such process alive any more) are removed the next time a
//! `TestHost` is created.
//!
//! [`proc`] runs programs with timeouts and reads their output line by line while they run;
//! [`output`] parses and checks hping3-style output, [`sweep`] the output of sweep mode;
//! [`packets`] builds forged replies to send with [`TestHost::send_raw_from_namespace`];
//! [`capture`] reads what arrives in a namespace; [`forger`] answers each probe from inside a namespace with replies the kernel would drop;
//! [`unprivileged`] runs prober as an ordinary user, with file capabilities if asked;
//! [`responder`] plays a host behind a TAP device that answers after a delay it controls and
//! measures (ground truth for RTTs).

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod capture;
pub mod exporter;
pub mod forger;
pub mod neighbour_forger;
pub mod output;
pub mod packets;
pub mod proc;
pub mod prometheus;
pub mod responder;
pub mod smokeping;
pub mod sweep;
pub mod udp_server;
pub mod unprivileged;

/// Port with a real listener in [`TestHost::standard`].
pub const OPEN_PORT: u16 = 80;
/// Port with nothing listening (the namespace's kernel answers RST-ACK) in [`TestHost::standard`].
pub const CLOSED_PORT: u16 = 81;
/// Port whose incoming TCP is dropped by nftables in [`TestHost::standard`].
pub const FILTERED_PORT: u16 = 23;

/// 198.18.0.0/15, of which test hosts may use everything from 198.18.4.0 on (first and one-past-last
/// address as offsets from its base).
const RANGE_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const USABLE_FIRST: u32 = 1 << 10;
const USABLE_END: u32 = 1 << 17;
/// Most addresses one [`TestHost::add_routed_addresses`] (or `…6`) call hands out.
const MAX_ROUTED_BLOCK: u32 = 1 << 12;
/// 2001:db8:100::/47 holds the /64s of the test hosts' veths, 2001:db8:102::/47 the /64s their
/// routed IPv6 addresses come from; a host's /30 names one /64 in each (see [`ipv6_net_of`]).
const HOST_NETS6: u128 = 0x2001_0db8_0100_0000 << 64;
const ROUTED_NETS6: u128 = 0x2001_0db8_0102_0000 << 64;

const ALLOC_LOCK: &str = "/tmp/prober-tests-alloc.lock";
const LOOPBACK_LOCK: &str = "/tmp/prober-tests-loopback.lock";
const NFT_TABLE: &str = "prober_tests";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// An address family: tests that check the same behaviour over IPv4 and IPv6 run one body with
/// each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// One `#[test]` per family for each test body `fn name(family: Family)`: `name::ipv4` and
/// `name::ipv6` (so `cargo test ipv6` runs every IPv6 test).
#[macro_export]
macro_rules! test_both_families {
    ($($body:ident),+ $(,)?) => {
        $(
            mod $body {
                #[test]
                fn ipv4() {
                    super::$body($crate::Family::V4);
                }

                #[test]
                fn ipv6() {
                    super::$body($crate::Family::V6);
                }
            }
        )+
    };
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The loopback address: 127.0.0.1 or ::1.
    pub fn loopback(self) -> IpAddr {
        match self {
            Family::V4 => Ipv4Addr::LOCALHOST.into(),
            Family::V6 => Ipv6Addr::LOCALHOST.into(),
        }
    }

    /// Bits in an address.
    pub fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// A network namespace reachable from the host through a veth pair, over both IPv4 and IPv6.
///
/// `host_addr` (the .1 of the /30) sits on `host_if` in the host's namespace; `addr` (the .2) sits on
/// `peer_if` inside `ns`. Probe `addr`. The same two ends have `host_addr6` (`::1`) and `addr6`
/// (`::2`) of a /64 inside 2001:db8::/32 that the /30 names (see [`ipv6_net_of`]).
pub struct TestHost {
    /// Namespace name (`/var/run/netns/<ns>`).
    pub ns: String,
    /// The veth end in the host's (the caller's) namespace.
    pub host_if: String,
    /// The veth end inside `ns`.
    pub peer_if: String,
    /// Address of `host_if`.
    pub host_addr: Ipv4Addr,
    /// Address of `peer_if` inside the namespace: the target to probe.
    pub addr: Ipv4Addr,
    /// IPv6 address of `host_if`.
    pub host_addr6: Ipv6Addr,
    /// IPv6 address of `peer_if`: the IPv6 target to probe.
    pub addr6: Ipv6Addr,
    listeners: Vec<TcpListener>,
    etc_dir: PathBuf,
    /// The namespace `host_if` is in: None for the caller's, a router's for a host
    /// [`TestHost::behind`] it.
    upstream: Option<String>,
    /// Routes to this host added in the caller's namespace (`ip` family option, prefix), which
    /// go when it is dropped.
    routes_here: Vec<(&'static str, String)>,
    /// How much of this host's routed IPv6 /64 [`TestHost::add_routed_addresses6`] has handed out.
    routed6_used: u128,
}

impl TestHost {
    /// Creates a uniquely named netns + veth pair, a /30 inside 198.18.0.0/15 (host side .1,
    /// namespace side .2 of that /30), brings both ends and the namespace's `lo` up, and writes
    /// `/etc/netns/<ns>/resolv.conf` (`nameserver 127.0.0.1`) so that name lookups by commands from
    /// [`TestHost::command_in_ns`] never leave the namespace.
    pub fn new() -> Result<TestHost> {
        TestHost::create(None)
    }

    /// A host one hop behind `router` (a [`TestHost::new`]): a namespace of its own joined to
    /// `router`'s by a second veth pair, `host_if` and `host_addr`/`host_addr6` in `router.ns`,
    /// `router` forwarding between its two veths. The caller's namespace routes this host's /30
    /// and /64 via `router`, and this host routes 198.18.0.0/15 and 2001:db8::/32 back via its
    /// router. (Routed addresses, neighbours and [`TestHost::host_snmp6`] are for hosts from
    /// [`TestHost::new`] only.)
    pub fn behind(router: &TestHost) -> Result<TestHost> {
        TestHost::create(Some(router))
    }

    /// [`TestHost::new`], or with `router` [`TestHost::behind`].
    fn create(router: Option<&TestHost>) -> Result<TestHost> {
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = format!("prb-{pid}-{n}");
        let host_if = format!("prbh{pid:x}x{n:x}");
        let peer_if = format!("prbn{pid:x}x{n:x}");
        if host_if.len() > 15 {
            bail!("interface name {host_if} longer than IFNAMSIZ-1 (too many test hosts in one process?)");
        }

        // Held until the /30 is on an interface or, behind a router, routed from here: what marks
        // it used.
        let (_alloc, net) = allocate_30(pid.wrapping_mul(131).wrapping_add(n))?;
        let host_addr = Ipv4Addr::from(net + 1);
        let addr = Ipv4Addr::from(net + 2);
        let net6 = ipv6_net_of(net);
        let host_addr6 = Ipv6Addr::from(net6 | 1);
        let addr6 = Ipv6Addr::from(net6 | 2);

        // From here on, Drop cleans up whatever part was created.
        let mut host = TestHost {
            etc_dir: Path::new("/etc/netns").join(&ns),
            ns,
            host_if,
            peer_if,
            host_addr,
            addr,
            host_addr6,
            addr6,
            listeners: Vec::new(),
            upstream: router.map(|router| router.ns.clone()),
            routes_here: Vec::new(),
            routed6_used: 0,
        };
        run_ip(&["netns", "add", &host.ns])?;
        host.add_veth()?;
        run_ip(&["-n", &host.ns, "link", "set", "dev", "lo", "up"])?;
        if let Some(router) = router {
            host.route_through(router, net)?;
        }
        host.write_etc()?;
        Ok(host)
    }

    /// The veth pair with both ends' addresses, up: `host_if` where the host side is,
    /// `peer_if` in the namespace.
    fn add_veth(&self) -> Result<()> {
        let (ns, h, p) = (
            self.ns.as_str(),
            self.host_if.as_str(),
            self.peer_if.as_str(),
        );
        let (host_addr, addr) = (self.host_addr, self.addr);
        let (host_addr6, addr6) = (self.host_addr6, self.addr6);
        self.upstream_ip(&[
            "link", "add", h, "type", "veth", "peer", "name", p, "netns", ns,
        ])?;
        // Before the links come up: their link-local addresses are then usable at once too, and
        // no duplicate address detection goes on during a test (its multicast solicitations
        // would skew counts of neighbour discovery).
        let no_dad = |interface: &str| {
            let path = format!("/proc/sys/net/ipv6/conf/{interface}/accept_dad");
            move || fs::write(&path, "0").with_context(|| format!("writing {path}"))
        };
        // /proc/sys/net is the namespace of the thread that opens it.
        self.in_upstream(no_dad(h))??;
        self.in_ns(no_dad(p))??;
        self.upstream_ip(&["addr", "add", &format!("{host_addr}/30"), "dev", h])?;
        self.upstream_ip(&["link", "set", "dev", h, "up"])?;
        run_ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", p])?;
        run_ip(&["-n", ns, "link", "set", "dev", p, "up"])?;
        // nodad: usable at once, rather than after duplicate address detection's second or so.
        self.upstream_ip(&[
            "addr",
            "add",
            &format!("{host_addr6}/64"),
            "dev",
            h,
            "nodad",
        ])?;
        run_ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr6}/64"),
            "dev",
            p,
            "nodad",
        ])?;
        Ok(())
    }

    /// Deletes the veth pair (both ends), runs `while_gone`, then makes the pair again under the
    /// same names with the same addresses: an interface that vanishes and comes back. Holds the
    /// allocator's lock meanwhile, so that nobody takes the /30 while it is on no interface. For
    /// hosts from [`TestHost::new`]: routes through the veth that were added later (routed
    /// addresses, on-link networks) are not made again.
    pub fn remake_veth<T>(&self, while_gone: impl FnOnce() -> T) -> Result<T> {
        if self.upstream.is_some() {
            bail!("remake_veth is for hosts from TestHost::new, not ones behind a router");
        }
        let _alloc = FileLock::acquire(ALLOC_LOCK, Duration::from_secs(60))?;
        run_ip(&["link", "del", "dev", &self.host_if])?;
        let result = while_gone();
        self.add_veth()?;
        Ok(result)
    }

    /// For a host behind `router`, whose /30 is `net`: forwarding in the router, routes to this
    /// host from the caller's namespace, and back from this host to the test ranges.
    fn route_through(&mut self, router: &TestHost, net: u32) -> Result<()> {
        let forwarding = || -> Result<()> {
            for path in [
                "/proc/sys/net/ipv4/ip_forward",
                "/proc/sys/net/ipv6/conf/all/forwarding",
            ] {
                fs::write(path, "1").with_context(|| format!("writing {path}"))?;
            }
            Ok(())
        };
        router.in_ns(forwarding)??;
        for family in [Family::V4, Family::V6] {
            let (option, prefix, test_range) = match family {
                Family::V4 => ("-4", format!("{}/30", Ipv4Addr::from(net)), "198.18.0.0/15"),
                Family::V6 => (
                    "-6",
                    format!("{}/64", Ipv6Addr::from(ipv6_net_of(net))),
                    "2001:db8::/32",
                ),
            };
            let via = router.target(family).to_string();
            run_ip(&[
                option,
                "route",
                "add",
                &prefix,
                "via",
                &via,
                "dev",
                &router.host_if,
            ])?;
            self.routes_here.push((option, prefix));
            let back = self.source(family).to_string();
            let peer = self.peer_if.as_str();
            run_ip(&[
                "-n", &self.ns, "route", "add", test_range, "via", &back, "dev", peer,
            ])?;
        }
        Ok(())
    }

    /// Runs `f` in the namespace `host_if` is in.
    fn in_upstream<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        match &self.upstream {
            None => Ok(f()),
            Some(upstream) => in_namespace(upstream, f),
        }
    }

    /// `ip <args>` in the namespace `host_if` is in.
    fn upstream_ip(&self, args: &[&str]) -> Result<String> {
        match &self.upstream {
            None => run_ip(args),
            Some(upstream) => run_ip(&[&["-n", upstream.as_str()], args].concat()),
        }
    }

    /// The address to probe over `family`: [`TestHost::addr`] or [`TestHost::addr6`].
    pub fn target(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => self.addr.into(),
            Family::V6 => self.addr6.into(),
        }
    }

    /// The host side's address over `family`, the probes' source: [`TestHost::host_addr`] or
    /// [`TestHost::host_addr6`].
    pub fn source(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => self.host_addr.into(),
            Family::V6 => self.host_addr6.into(),
        }
    }

    /// [`TestHost::new`] plus a listener on [`OPEN_PORT`] (80) and an nftables drop of
    /// [`FILTERED_PORT`] (23); [`CLOSED_PORT`] (81) has nothing.
    pub fn standard() -> Result<TestHost> {
        let mut host = TestHost::new()?;
        host.listen_tcp(OPEN_PORT)?;
        host.drop_tcp_port(FILTERED_PORT)?;
        Ok(host)
    }

    /// A real TCP listener bound inside the namespace on `port` (`[::]:port`, which takes IPv4 as
    /// well: a namespace starts with `net.ipv6.bindv6only` 0), so the namespace's kernel answers
    /// SYN with SYN-ACK over either family. It lives as long as the `TestHost`.
    pub fn listen_tcp(&mut self, port: u16) -> Result<()> {
        let listener = self
            .in_ns(move || TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)))?
            .with_context(|| format!("binding TCP port {port} in namespace {}", self.ns))?;
        self.listeners.push(listener);
        Ok(())
    }

    /// Puts `count` more target addresses inside the namespace (as /32s on its `lo`) and routes them
    /// to it: a host route from the host's namespace via [`TestHost::addr`] on `host_if` covers the
    /// block they come from. The block is aligned, its size `count` rounded up to a power of two,
    /// and the addresses are its first `count`, so a power-of-two `count` fills exactly one CIDR
    /// block. It is unique to this `TestHost` inside 198.18.4.0 – 198.19.255.255, chosen under the
    /// same lock as the /30s; the route (visible to every later choice, here and in other
    /// processes) is what marks it used. The route goes with the veth, the addresses with the
    /// namespace. Every listener from [`TestHost::listen_tcp`] answers on these addresses too.
    pub fn add_routed_addresses(&mut self, count: u32) -> Result<Vec<Ipv4Addr>> {
        let prefix_len = (32 - routed_block_bits(count)?) as u8;
        let _alloc = FileLock::acquire(ALLOC_LOCK, Duration::from_secs(60))?;
        let net = free_block(&used_prefixes()?, prefix_len, u32::from(self.addr))
            .ok_or_else(|| anyhow!("no free /{prefix_len} left in 198.18.4.0-198.19.255.255"))?;
        let addrs: Vec<Ipv4Addr> = (net..net + count).map(Ipv4Addr::from).collect();
        let block = format!("{}/{prefix_len}", Ipv4Addr::from(net));
        let all: Vec<IpAddr> = addrs.iter().map(|&a| a.into()).collect();
        self.route_to_namespace(Family::V4, &all, &block)?;
        Ok(addrs)
    }

    /// [`TestHost::add_routed_addresses`] for IPv6: `count` more addresses (as /128s on the
    /// namespace's `lo`), the first `count` of an aligned block of `count` rounded up to a power
    /// of two, routed via [`TestHost::addr6`]. The blocks come one after the other from a /64 in
    /// 2001:db8:102::/47 that this host's /30 names, as it names the /64 of its veth, so they are
    /// as unique as the /30 and need no lock; the route goes with the veth.
    pub fn add_routed_addresses6(&mut self, count: u32) -> Result<Vec<Ipv6Addr>> {
        let bits = routed_block_bits(count)?;
        let size = 1u128 << bits;
        let start = self.routed6_used.next_multiple_of(size);
        self.routed6_used = start + size;
        let net = ipv6_routed_net_of(u32::from(self.addr)) | start;
        let addrs: Vec<Ipv6Addr> = (net..net + u128::from(count)).map(Ipv6Addr::from).collect();
        let block = format!("{}/{}", Ipv6Addr::from(net), 128 - bits);
        let all: Vec<IpAddr> = addrs.iter().map(|&a| a.into()).collect();
        self.route_to_namespace(Family::V6, &all, &block)?;
        Ok(addrs)
    }

    /// Puts `addrs` (of `family`) on the namespace's `lo` and routes `block`, which holds them, to
    /// the namespace, via its veth address of that family.
    fn route_to_namespace(&self, family: Family, addrs: &[IpAddr], block: &str) -> Result<()> {
        // IPv6's nodad: usable at once, rather than after duplicate address detection.
        let flags = match family {
            Family::V4 => "",
            Family::V6 => " nodad",
        };
        let batch: String = addrs
            .iter()
            .map(|a| format!("address add {a}/{} dev lo{flags}\n", family.bits()))
            .collect();
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.ns, "-batch", "-"]);
        run_with_stdin(&mut cmd, &batch)?;
        let via = self.target(family).to_string();
        run_ip(&["route", "add", block, "via", &via, "dev", &self.host_if])?;
        Ok(())
    }

    /// Five more hosts on a network of their own directly connected to the veth (a /29: the
    /// host side takes its first address, the namespace the other five), so that a sweep of them
    /// has a next hop per target.
    pub fn add_neighbours(&self) -> Result<Vec<Ipv4Addr>> {
        let on_link = self.add_on_link(Family::V4, 5, 0, 29)?;
        Ok(on_link
            .live
            .iter()
            .filter_map(|address| match address {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect())
    }

    /// A directly connected network of `family` on the veth, prefix length `prefix_len`
    /// (IPv4; IPv6 takes the /64 the block's first /30 names, see [`ipv6_net_of`]): the host
    /// side takes its first address, the namespace the `live` after it, and the `dead` after
    /// those belong to nobody, so that nothing can answer for them. Chosen under the
    /// allocator's lock like the /30s; the connected route is what marks the block used, and
    /// goes with the veth.
    pub fn add_on_link(
        &self,
        family: Family,
        live: u32,
        dead: u32,
        prefix_len: u8,
    ) -> Result<OnLink> {
        let _alloc = FileLock::acquire(ALLOC_LOCK, Duration::from_secs(60))?;
        let net = free_block(&used_prefixes()?, prefix_len, u32::from(self.addr))
            .ok_or_else(|| anyhow!("no free /{prefix_len} left in 198.18.4.0-198.19.255.255"))?;
        if 2 + live + dead >= 1 << (32 - prefix_len) {
            bail!("{live} live and {dead} dead addresses do not fit in a /{prefix_len}");
        }
        let nth = |n: u32| -> IpAddr {
            match family {
                Family::V4 => Ipv4Addr::from(net + n).into(),
                Family::V6 => Ipv6Addr::from(ipv6_net_of(net) | u128::from(n)).into(),
            }
        };
        let prefix = match family {
            Family::V4 => prefix_len,
            Family::V6 => 64,
        };
        // The IPv4 block is taken on the host side for IPv6 too: its route marks it used.
        run_ip(&[
            "addr",
            "add",
            &format!("{}/{prefix_len}", Ipv4Addr::from(net + 1)),
            "dev",
            &self.host_if,
        ])?;
        if family == Family::V6 {
            run_ip(&[
                "addr",
                "add",
                &format!("{}/64", nth(1)),
                "dev",
                &self.host_if,
                "nodad",
            ])?;
        }
        let live: Vec<IpAddr> = (2..2 + live).map(nth).collect();
        let nodad = if family == Family::V6 { " nodad" } else { "" };
        let batch: String = live
            .iter()
            .map(|a| format!("address add {a}/{prefix} dev {}{nodad}\n", self.peer_if))
            .collect();
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.ns, "-batch", "-"]);
        run_with_stdin(&mut cmd, &batch)?;
        let first_dead = 2 + live.len() as u32;
        Ok(OnLink {
            source: nth(1),
            live,
            dead: (first_dead..first_dead + dead).map(nth).collect(),
        })
    }

    /// A named nftables counter at the ingress of the namespace's veth end: every frame that
    /// arrives there and matches `matches`, whoever it is addressed to (read it with
    /// [`TestHost::arriving_packets`]).
    pub fn count_arriving(&self, name: &str, matches: &str) -> Result<()> {
        let peer = &self.peer_if;
        let script = format!(
            "add table netdev {NFT_TABLE}\n\
             add chain netdev {NFT_TABLE} arriving {{ type filter hook ingress device \"{peer}\" priority 0; policy accept; }}\n\
             add counter netdev {NFT_TABLE} {name}\n\
             add rule netdev {NFT_TABLE} arriving {matches} counter name {name}\n"
        );
        let mut cmd = self.command_in_ns("nft");
        cmd.args(["-f", "-"]);
        run_with_stdin(&mut cmd, &script)?;
        Ok(())
    }

    /// An nftables rule inside the namespace that drops incoming TCP to `port` (a "filtered" port).
    /// The rule counts what it drops: see [`TestHost::dropped_packets`].
    pub fn drop_tcp_port(&self, port: u16) -> Result<()> {
        self.add_rule(
            "input",
            &format!("drop_{port}"),
            &format!("tcp dport {port}"),
            "drop",
        )
    }

    /// An nftables rule inside the namespace that rejects incoming TCP to `port` with the ICMP
    /// error `icmpx` names (`admin-prohibited`, `port-unreachable`, `host-unreachable`,
    /// `no-route`: nft's words for both families' codes). The rule counts what it rejects as
    /// `reject_<port>`.
    pub fn reject_tcp_port(&self, port: u16, icmpx: &str) -> Result<()> {
        self.add_rule(
            "input",
            &format!("reject_{port}"),
            &format!("tcp dport {port}"),
            &format!("reject with icmpx type {icmpx}"),
        )
    }

    /// [`TestHost::drop_tcp_port`] and [`TestHost::reject_tcp_port`] for UDP: the rule counts
    /// what it drops or rejects as `udp_<port>`; `icmpx` None drops.
    pub fn filter_udp_port(&self, port: u16, icmpx: Option<&str>) -> Result<()> {
        let statement = match icmpx {
            Some(icmpx) => format!("reject with icmpx type {icmpx}"),
            None => "drop".to_string(),
        };
        self.add_rule(
            "input",
            &format!("udp_{port}"),
            &format!("udp dport {port}"),
            &statement,
        )
    }

    /// An nftables rule inside the namespace that drops every packet addressed to `addr` (one of
    /// its own addresses, of either family): a host that answers nothing. The rule counts what it
    /// drops: see [`TestHost::dropped_packets_to`].
    pub fn drop_all_to(&self, addr: impl Into<IpAddr>) -> Result<()> {
        let addr = addr.into();
        self.add_rule("input", &drop_all_counter(addr), &daddr_match(addr), "drop")
    }

    /// An nftables rule inside the namespace that rejects every packet addressed to `addr` with
    /// the ICMP error `icmpx` names (as [`TestHost::reject_tcp_port`]): a filtered host.
    pub fn reject_all_to(&self, addr: impl Into<IpAddr>, icmpx: &str) -> Result<()> {
        let addr = addr.into();
        self.add_rule(
            "input",
            &format!("reject_{}", drop_all_counter(addr)),
            &daddr_match(addr),
            &format!("reject with icmpx type {icmpx}"),
        )
    }

    /// Adds a named nftables counter inside the namespace, counting incoming packets that match
    /// the nft expression `matches` (e.g. `"tcp dport 80 tcp sport 40000"`). Rules added by
    /// [`TestHost::drop_tcp_port`] or [`TestHost::drop_all_to`] before it see the packets first
    /// (dropped ones are not counted).
    pub fn add_counter(&self, name: &str, matches: &str) -> Result<()> {
        self.add_rule("input", name, matches, "")
    }

    /// An nftables rule inside the namespace that applies `statement` (e.g. `ip6 flowlabel set
    /// 0x5eed7`) to every packet the namespace sends that matches `matches`: its replies, with a
    /// header field of the test's choosing. The rule counts them as `counter`.
    pub fn rewrite_outgoing(&self, counter: &str, matches: &str, statement: &str) -> Result<()> {
        self.add_rule("output", counter, matches, statement)
    }

    /// An nftables rule inside the namespace that drops every packet the namespace sends that
    /// matches `matches`: its sockets' sends fail with EPERM. The rule counts them as `counter`.
    pub fn drop_outgoing(&self, counter: &str, matches: &str) -> Result<()> {
        self.add_rule("output", counter, matches, "drop")
    }

    /// Appends `<matches> counter name <counter> <statement>` to the namespace's chain of the
    /// `hook` (input or output), which it creates the first time.
    fn add_rule(&self, hook: &str, counter: &str, matches: &str, statement: &str) -> Result<()> {
        let script = format!(
            "add table inet {NFT_TABLE}\n\
             add chain inet {NFT_TABLE} {hook} {{ type filter hook {hook} priority 0; policy accept; }}\n\
             add counter inet {NFT_TABLE} {counter}\n\
             add rule inet {NFT_TABLE} {hook} {matches} counter name {counter} {statement}\n"
        );
        let mut cmd = self.command_in_ns("nft");
        cmd.args(["-f", "-"]);
        run_with_stdin(&mut cmd, &script)?;
        Ok(())
    }

    /// Packets dropped so far by the rule of [`TestHost::drop_tcp_port`] for `port`.
    pub fn dropped_packets(&self, port: u16) -> Result<u64> {
        self.counter_packets(&format!("drop_{port}"))
    }

    /// Packets dropped so far by the rule of [`TestHost::drop_all_to`] for `addr`.
    pub fn dropped_packets_to(&self, addr: impl Into<IpAddr>) -> Result<u64> {
        self.counter_packets(&drop_all_counter(addr.into()))
    }

    /// Packets counted so far by the counter `name` from [`TestHost::add_counter`].
    pub fn counter_packets(&self, name: &str) -> Result<u64> {
        self.nft_counter("inet", name)
    }

    /// Frames counted so far by the counter `name` from [`TestHost::count_arriving`].
    pub fn arriving_packets(&self, name: &str) -> Result<u64> {
        self.nft_counter("netdev", name)
    }

    fn nft_counter(&self, family: &str, name: &str) -> Result<u64> {
        let mut cmd = self.command_in_ns("nft");
        cmd.args(["list", "counter", family, NFT_TABLE, name]);
        let out = run_checked(&mut cmd)?;
        let mut toks = out.split_whitespace();
        while let Some(t) = toks.next() {
            if t == "packets" {
                if let Some(n) = toks.next().and_then(|n| n.parse().ok()) {
                    return Ok(n);
                }
            }
        }
        bail!("no packet count in `nft list counter` output:\n{out}")
    }

    /// Turns off transmit checksum offload on the namespace's veth end, so that its packets cross
    /// the veth with their checksums complete. Offloaded, they arrive marked as checksums still
    /// to be filled in, a mark that generic XDP keeps on the SYN-ACK it rewrites into a RST and
    /// sends back (XDP_TX): the namespace's kernel then takes that RST without checking its
    /// checksum.
    pub fn send_complete_checksums(&self) -> Result<()> {
        run_checked(
            self.command_in_ns("ethtool")
                .args(["-K", &self.peer_if, "tx", "off"]),
        )?;
        Ok(())
    }

    /// For a host [`TestHost::behind`] a router: turns off transmit checksum offload on the
    /// router's veth end toward this host, so that the router completes in software
    /// (`skb_checksum_help`) the checksum of each packet it forwards here that still needs one, as
    /// a NIC's offload would on the wire. This host's kernel then checks every checksum it gets.
    pub fn router_completes_checksums(&self) -> Result<()> {
        let router = self
            .upstream
            .as_deref()
            .context("not a host behind a router")?;
        run_checked(Command::new("ip").args([
            "netns",
            "exec",
            router,
            "ethtool",
            "-K",
            &self.host_if,
            "tx",
            "off",
        ]))?;
        Ok(())
    }

    /// The namespace's TCP counters, the `Tcp:` lines of /proc/net/snmp (both families count
    /// there), e.g. `InErrs`, `InCsumErrors` (and `MaxConn`, which is -1).
    pub fn tcp_counters(&self) -> Result<BTreeMap<String, i64>> {
        // /proc/thread-self/net is the namespace of the thread that reads it.
        let text = self.in_ns(|| {
            fs::read_to_string("/proc/thread-self/net/snmp").context("reading /proc/net/snmp")
        })??;
        parse_snmp_group(&text, "Tcp")
    }

    /// The namespace's half-open TCP connections (`ss -Htn state syn-recv`, a line each): the
    /// request sockets of SYNs it answered whose handshake neither completed nor was reset. A
    /// valid RST to its SYN-ACK removes one at once; without it the kernel keeps it for about a
    /// minute, retransmitting the SYN-ACK.
    pub fn half_open_connections(&self) -> Result<Vec<String>> {
        let out = run_checked(self.command_in_ns("ss").args(["-Htn", "state", "syn-recv"]))?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// `ip netns exec <ns> <program>`: runs `program` inside the namespace, with
    /// `/etc/netns/<ns>/resolv.conf` (`nameserver 127.0.0.1`, the namespace's own loopback, where
    /// nothing answers) bind-mounted over `/etc/resolv.conf`, and an `nsswitch.conf` whose `hosts:`
    /// line is `files dns`. `ip netns exec` execs the program, so the child's PID is the program's.
    pub fn command_in_ns<S: AsRef<OsStr>>(&self, program: S) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }

    /// Sends whole IP packets of either family (e.g. from [`packets`]) from inside the namespace
    /// through a raw socket (IPPROTO_RAW, header included), each routed by its own destination
    /// address: they leave on `peer_if` and cross the veth the way the namespace's real replies do.
    pub fn send_raw_from_namespace(&self, packets: Vec<Vec<u8>>) -> Result<()> {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        self.in_ns(move || -> Result<()> {
            for packet in &packets {
                let (domain, destination) = match packet.first().map(|b| b >> 4) {
                    Some(4) => (
                        Domain::IPV4,
                        packet
                            .get(16..20)
                            .map(|d| IpAddr::from(<[u8; 4]>::try_from(d).expect("four bytes"))),
                    ),
                    Some(6) => (
                        Domain::IPV6,
                        packet
                            .get(24..40)
                            .map(|d| IpAddr::from(<[u8; 16]>::try_from(d).expect("sixteen bytes"))),
                    ),
                    _ => bail!("a packet that is neither IPv4 nor IPv6"),
                };
                let destination = destination.context("packet shorter than its IP header")?;
                // IPPROTO_RAW implies the header is included, over IPv6 as over IPv4.
                let socket =
                    Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
                        .context("raw IP socket")?;
                let sent = socket
                    .send_to(packet, &SockAddr::from(SocketAddr::new(destination, 0)))
                    .context("sendto on the raw socket")?;
                if sent != packet.len() {
                    bail!("the raw socket sent {sent} of {} bytes", packet.len());
                }
            }
            Ok(())
        })?
    }

    /// Makes `name` resolve to `addrs` for programs run with [`TestHost::command_in_ns`]: lines of
    /// the namespace's own hosts file (`/etc/netns/<ns>/hosts`, which `ip netns exec` mounts over
    /// /etc/hosts), so that the lookup is answered inside the namespace.
    pub fn add_host_name(&self, name: &str, addrs: &[IpAddr]) -> Result<()> {
        use std::io::Write;
        let path = self.etc_dir.join("hosts");
        let mut lines = if path.exists() {
            String::new()
        } else {
            "127.0.0.1 localhost\n::1 localhost\n".to_owned()
        };
        for addr in addrs {
            lines.push_str(&format!("{addr} {name}\n"));
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(lines.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The IPv6 and ICMPv6 counters of the host's veth end (`/proc/net/dev_snmp6/<host_if>`),
    /// e.g. `Icmp6InNeighborAdvertisements`.
    pub fn host_snmp6(&self) -> Result<BTreeMap<String, u64>> {
        let path = Path::new("/proc/net/dev_snmp6").join(&self.host_if);
        parse_snmp6(
            &fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
        )
    }

    /// The same counters of the namespace's veth end, as the namespace's kernel keeps them.
    pub fn namespace_snmp6(&self) -> Result<BTreeMap<String, u64>> {
        // /proc/thread-self/net is the namespace of the thread that reads it.
        let path = Path::new("/proc/thread-self/net/dev_snmp6").join(&self.peer_if);
        let text = self.in_ns(move || {
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        })??;
        parse_snmp6(&text)
    }

    /// Runs `f` on a fresh thread that has entered the namespace (sockets created there stay in it).
    pub fn in_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        in_namespace(&self.ns, f)
    }

    fn write_etc(&self) -> Result<()> {
        fs::create_dir_all(&self.etc_dir)
            .with_context(|| format!("creating {}", self.etc_dir.display()))?;
        fs::write(self.etc_dir.join("resolv.conf"), "nameserver 127.0.0.1\n")
            .context("writing resolv.conf for the namespace")?;
        // Make sure no NSS module that talks to a daemon outside the namespace (resolve, mdns, ...)
        // is asked about host names: only /etc/hosts and DNS (to 127.0.0.1 in the namespace).
        if let Ok(orig) = fs::read_to_string("/etc/nsswitch.conf") {
            let mut out = String::new();
            for line in orig.lines() {
                if line.trim_start().starts_with("hosts:") {
                    out.push_str("hosts: files dns\n");
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            if !out.lines().any(|l| l.starts_with("hosts:")) {
                out.push_str("hosts: files dns\n");
            }
            fs::write(self.etc_dir.join("nsswitch.conf"), out)
                .context("writing nsswitch.conf for the namespace")?;
        }
        Ok(())
    }
}

/// A directly connected network from [`TestHost::add_on_link`].
#[derive(Clone, Debug)]
pub struct OnLink {
    /// The host side's address on it: the probes' source.
    pub source: IpAddr,
    /// The namespace's addresses on it.
    pub live: Vec<IpAddr>,
    /// Addresses of it that nobody holds.
    pub dead: Vec<IpAddr>,
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Sockets keep their namespace alive; close them first so the namespace really goes away.
        self.listeners.clear();
        // Deleting the host end deletes both ends at once (deleting the namespace alone would remove
        // the veth only once the kernel's asynchronous namespace cleanup ran).
        let _ = self.upstream_ip(&["link", "del", "dev", &self.host_if]);
        for (family, prefix) in &self.routes_here {
            let _ = quiet_ip(&[family, "route", "del", prefix]);
        }
        let _ = quiet_ip(&["netns", "del", &self.ns]);
        let _ = fs::remove_dir_all(&self.etc_dir);
    }
}

/// The Internet checksum (RFC 1071) of `bytes`, written independently of the crates prober
/// builds packets with: a region that carries a correct checksum sums to 0.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Panics with a loud, clear message unless the effective uid is 0: privileged tests must fail,
/// never skip.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        panic!(
            "\n\n*** prober's end-to-end tests need root (effective uid 0; running as uid {euid}). ***\n\
             They create network namespaces and veth pairs and load XDP programs. This is a test \
             FAILURE, not a skip: run them as root (e.g. `sudo -E cargo test -p prober-tests`).\n\n"
        );
    }
}

/// The prober binary: `$PROBER_BIN` if set, else `<target>/<profile>/prober` next to the `deps`
/// directory that holds the running test executable. Panics loudly if it does not exist.
pub fn prober_bin() -> PathBuf {
    let path = match std::env::var_os("PROBER_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let exe = std::env::current_exe().expect("current_exe");
            let mut dir = exe
                .parent()
                .expect("test executable has a directory")
                .to_path_buf();
            if dir.file_name() == Some(OsStr::new("deps")) {
                dir.pop();
            }
            dir.join("prober")
        }
    };
    if !path.is_file() {
        panic!(
            "\n\n*** prober binary not found at {} ***\n\
             Build it first (`cargo build -p prober`, or `--release` to match the test profile), or set \
             PROBER_BIN to its path (xtask sets it).\n\n",
            path.display()
        );
    }
    path
}

/// `prober <args>` (the binary from [`prober_bin`]).
pub fn prober_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(prober_bin());
    cmd.args(args);
    cmd
}

/// prober with `args` and `target` last, once it has shown its first ICMP error line: its
/// matcher is attached then, for a test that forges packets at it.
pub fn prober_past_its_first_error(args: &[&str], target: IpAddr) -> proc::Proc {
    let target = target.to_string();
    let mut prober = proc::Proc::spawn(prober_command(&[args, &[target.as_str()]].concat()));
    while !prober
        .expect_line(Duration::from_secs(10), "the first error")
        .starts_with("ICMP ")
    {}
    prober
}

/// `hping3 <args>` (see [`hping3_bin`]).
pub fn hping3_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(hping3_bin());
    cmd.args(args);
    cmd
}

/// Runs hping3 (with `hping3`) or prober with `args` and then `target`, for at most `timeout`.
pub fn ping_side(hping3: bool, args: &[&str], target: IpAddr, timeout: Duration) -> proc::Finished {
    let target = target.to_string();
    let mut all = args.to_vec();
    all.push(&target);
    let command = if hping3 {
        hping3_command(&all)
    } else {
        prober_command(&all)
    };
    proc::run(command, timeout)
}

/// Output of `ip [-d] link show dev <dev>`.
pub fn ip_link_show(dev: &str, detailed: bool) -> Result<String> {
    let mut cmd = Command::new("ip");
    if detailed {
        cmd.arg("-d");
    }
    cmd.args(["link", "show", "dev", dev]);
    run_checked(&mut cmd)
}

/// The path of hping3, panicking with a clear message if it is missing.
pub fn hping3_bin() -> PathBuf {
    let path = PathBuf::from("/usr/sbin/hping3");
    if !path.is_file() {
        panic!(
            "\n\n*** hping3 not found at /usr/sbin/hping3 ***\n\
             The compatibility tests compare prober's output with hping3's. Install it \
             (`apt-get install hping3`; the xtask set-up installs it).\n\n"
        );
    }
    path
}

/// Serialises everything that attaches XDP to `lo` (only one program fits): an exclusive `flock` on
/// a file in /tmp, held until the returned value is dropped. Works across threads and processes.
/// Panics if the lock cannot be had within 10 minutes.
pub fn loopback_lock() -> impl Drop {
    FileLock::acquire(LOOPBACK_LOCK, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("loopback lock {LOOPBACK_LOCK}: {e:#}"))
}

/// A file in /tmp with a name unique to this process, removed when dropped.
pub struct ScratchFile {
    pub path: PathBuf,
}

impl ScratchFile {
    /// Creates `/tmp/prober-tests-<pid>-<n>-<name>` holding `contents`.
    pub fn new(name: &str, contents: &str) -> Result<ScratchFile> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("prober-tests-{}-{n}-{name}", std::process::id()));
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(ScratchFile { path })
    }

    pub fn read(&self) -> Result<String> {
        fs::read_to_string(&self.path).with_context(|| format!("reading {}", self.path.display()))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A directory in /tmp with a name unique to this process, removed with its contents when
/// dropped.
pub struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    /// Creates `/tmp/prober-tests-<pid>-<n>-<name>/`.
    pub fn new(name: &str) -> Result<ScratchDir> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("prober-tests-{}-{n}-{name}", std::process::id()));
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    /// Makes a FIFO called `name` in the directory (mode 0600); its path.
    pub fn fifo(&self, name: &str) -> Result<PathBuf> {
        let path = self.path.join(name);
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: c_path is a valid NUL-terminated string.
        if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mkfifo {}", path.display()));
        }
        Ok(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// An exclusive flock on a file; released when dropped (the fd is closed).
pub struct FileLock {
    _file: File,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the fd (dropping the File) releases the flock.
    }
}

impl FileLock {
    pub fn acquire(path: &str, timeout: Duration) -> Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock file {path}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            // SAFETY: valid fd.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK)
                && err.raw_os_error() != Some(libc::EINTR)
            {
                return Err(err).with_context(|| format!("flock {path}"));
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for lock {path}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `f` on a fresh thread that has entered the namespace `ns`.
fn in_namespace<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = PathBuf::from("/var/run/netns").join(ns);
    std::thread::spawn(move || -> Result<T> {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: plain syscall on a valid fd; it only changes this (short-lived) thread's netns.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setns({})", path.display()));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow!("thread inside namespace panicked"))?
}

fn run_ip(args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run_checked(&mut cmd)
}

fn quiet_ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs `cmd` to completion; Ok(stdout) on success, else an error carrying the command and stderr.
pub fn run_checked(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Result<String> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .with_context(|| format!("writing to {cmd:?}"))?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}) on input:\n{input}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The /64 of a test host's IPv6 ends, named by its IPv4 /30 `net` so that it is as unique: the
/// /30's 17 bits below 198.18.0.0/15 after `2001:db8:100::/47`.
pub fn ipv6_net_of(net: u32) -> u128 {
    HOST_NETS6 | net64_below(net)
}

/// The /64 a test host's routed IPv6 addresses come from: as [`ipv6_net_of`], after
/// `2001:db8:102::/47`. `net` may be any address of the /30.
fn ipv6_routed_net_of(net: u32) -> u128 {
    ROUTED_NETS6 | net64_below(net)
}

/// The /30 of `net` (its 17 bits below 198.18.0.0/15, less the last two) as bits 64 to 80.
fn net64_below(net: u32) -> u128 {
    u128::from(net & 0x1_fffc) << 64
}

/// log2 of the block that holds `count` routed addresses.
fn routed_block_bits(count: u32) -> Result<u32> {
    if count == 0 || count > MAX_ROUTED_BLOCK {
        bail!("{count} routed addresses asked for, 1 to {MAX_ROUTED_BLOCK} possible");
    }
    Ok(count.next_power_of_two().trailing_zeros())
}

/// A free /30 in 198.18.4.0 – 198.19.255.255 (its network address), with the allocator's lock that
/// serialises the choice across threads and processes: hold the lock until the chosen addresses are
/// on an interface, which is what marks the block used for every later choice.
fn allocate_30(seed: u32) -> Result<(FileLock, u32)> {
    let lock = FileLock::acquire(ALLOC_LOCK, Duration::from_secs(60))?;
    // Before any test address exists: a test whose veth vanishes must meet "no route".
    SafetyNet::ensure()?;
    remove_stale_namespaces();
    let net = free_block(&used_prefixes()?, 30, seed)
        .ok_or_else(|| anyhow!("no free /30 left in 198.18.4.0-198.19.255.255"))?;
    Ok((lock, net))
}

/// IPv4 prefixes inside 198.18.0.0/15 that are in use in the caller's namespace (addresses and
/// routes in any table).
fn used_prefixes() -> Result<Vec<(u32, u8)>> {
    let mut out = Vec::new();
    for line in run_ip(&["-4", "-o", "addr", "show"])?.lines() {
        let mut toks = line.split_whitespace();
        while let Some(t) = toks.next() {
            if t == "inet" {
                if let Some(p) = toks.next().and_then(parse_prefix) {
                    out.push(p);
                }
            }
        }
    }
    const TYPES: &[&str] = &[
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "anycast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
    ];
    for line in run_ip(&["-4", "route", "show", "table", "all"])?.lines() {
        let mut toks = line.split_whitespace();
        let mut first = toks.next().unwrap_or("");
        if TYPES.contains(&first) {
            first = toks.next().unwrap_or("");
        }
        if let Some(p) = parse_prefix(first) {
            out.push(p);
        }
    }
    // Only what lies inside 198.18.0.0/15 matters: a default route overlaps everything, and the
    // safety net's route covers the whole range without using any of it.
    out.retain(|&(a, len)| len > 15 && overlaps((a, len), (RANGE_BASE, 15)));
    Ok(out)
}

/// The test ranges as unreachable routes (`ip route add unreachable 198.18.0.0/15`, and
/// 2001:db8::/32 for IPv6): more specific routes to test hosts win, and when a test's veth is
/// gone, probes to its addresses meet "no route" instead of the default route out of the uplink.
pub struct SafetyNet {
    /// The routes this value added, removed again when it is dropped.
    added: Vec<SafetyRoute>,
}

/// (`ip` family option, prefix) of an unreachable route.
type SafetyRoute = (&'static str, &'static str);

const SAFETY_ROUTES: [SafetyRoute; 2] = [("-4", "198.18.0.0/15"), ("-6", "2001:db8::/32")];

impl SafetyNet {
    /// Installs whichever of the routes is missing, for as long as the value lives (`cargo xtask
    /// test` holds one over the whole suite).
    pub fn install() -> Result<SafetyNet> {
        let mut net = SafetyNet { added: Vec::new() };
        for route in SAFETY_ROUTES {
            if add_safety_route(route)? {
                net.added.push(route);
            }
        }
        Ok(net)
    }

    /// Installs whichever of the routes is missing and leaves them: for tests run without the
    /// suite's guard, where nothing outlives the process to take them away again.
    pub fn ensure() -> Result<()> {
        for route in SAFETY_ROUTES {
            add_safety_route(route)?;
        }
        Ok(())
    }
}

/// Adds the unreachable route unless it is there; true when it was added.
fn add_safety_route((family, prefix): SafetyRoute) -> Result<bool> {
    let present = run_ip(&[family, "route", "show", "type", "unreachable", prefix])?;
    if !present.trim().is_empty() {
        return Ok(false);
    }
    run_ip(&[family, "route", "add", "unreachable", prefix])?;
    Ok(true)
}

impl Drop for SafetyNet {
    fn drop(&mut self) {
        for (family, prefix) in &self.added {
            let _ = quiet_ip(&[family, "route", "del", "unreachable", prefix]);
        }
    }
}

/// `name value` lines, as /proc/net/dev_snmp6 files hold them.
fn parse_snmp6(text: &str) -> Result<BTreeMap<String, u64>> {
    text.lines()
        .map(|line| {
            let (name, value) = line
                .split_once(char::is_whitespace)
                .with_context(|| format!("not `name value`: {line:?}"))?;
            let value = value
                .trim()
                .parse()
                .with_context(|| format!("not a count: {line:?}"))?;
            Ok((name.to_owned(), value))
        })
        .collect()
}

/// The counters of one group (`Tcp`, `Ip`, ...) of a /proc/net/snmp file: a line of names after
/// `<group>:`, then a line of values.
fn parse_snmp_group(text: &str, group: &str) -> Result<BTreeMap<String, i64>> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter_map(|line| line.strip_prefix(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        bail!("no {group} counters in /proc/net/snmp:\n{text}");
    };
    let (names, values): (Vec<&str>, Vec<&str>) = (
        names.split_whitespace().collect(),
        values.split_whitespace().collect(),
    );
    if names.len() != values.len() {
        bail!(
            "{} {group} counters named, {} given",
            names.len(),
            values.len()
        );
    }
    names
        .into_iter()
        .zip(values)
        .map(|(name, value)| {
            let value = value
                .parse()
                .with_context(|| format!("{group} {name} is not a number: {value:?}"))?;
            Ok((name.to_owned(), value))
        })
        .collect()
}

/// nft's match of packets to `addr`.
fn daddr_match(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("ip daddr {a}"),
        IpAddr::V6(a) => format!("ip6 daddr {a}"),
    }
}

/// The nftables counter of [`TestHost::drop_all_to`]'s rule for `addr`.
fn drop_all_counter(addr: IpAddr) -> String {
    format!("drop_all_{}", addr.to_string().replace([':', '.'], "_"))
}

/// The network address of an aligned /`prefix_len` in 198.18.4.0 – 198.19.255.255 that overlaps none
/// of `used`, looked for from a place `seed` picks (different callers start apart, so they rarely
/// need to look far).
fn free_block(used: &[(u32, u8)], prefix_len: u8, seed: u32) -> Option<u32> {
    let size = 1u32 << (32 - prefix_len);
    let first = USABLE_FIRST.div_ceil(size);
    let span = (USABLE_END / size).checked_sub(first).filter(|&n| n > 0)?;
    (0..span)
        .map(|i| RANGE_BASE + (first + (seed % span + i) % span) * size)
        .find(|&net| !used.iter().any(|&u| overlaps((net, prefix_len), u)))
}

fn parse_prefix(s: &str) -> Option<(u32, u8)> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().ok()?),
        None => (s, 32),
    };
    let a: Ipv4Addr = a.parse().ok()?;
    (len <= 32).then_some((u32::from(a), len))
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a.0 & mask == b.0 & mask
}

/// Removes namespaces named `prb-<pid>-<n>` whose creating process no longer exists (a test process
/// that was killed before its `TestHost`s were dropped), with their /etc/netns directories.
fn remove_stale_namespaces() {
    let Ok(dir) = fs::read_dir("/var/run/netns") else {
        return;
    };
    let me = std::process::id();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("prb-") else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('-') else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u32>()) else {
            continue;
        };
        if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = quiet_ip(&["netns", "del", &name]);
        let _ = fs::remove_dir_all(Path::new("/etc/netns").join(&name));
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn ipv6_nets_follow_their_30_and_stay_in_the_documentation_range() {
        let net = |v4: [u8; 4]| Ipv6Addr::from(ipv6_net_of(u32::from(Ipv4Addr::from(v4))));
        assert_eq!(
            net([198, 18, 4, 0]),
            "2001:db8:100:400::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            net([198, 19, 255, 252]),
            "2001:db8:101:fffc::".parse::<Ipv6Addr>().unwrap()
        );
        assert_ne!(net([198, 18, 4, 0]), net([198, 18, 4, 4]));
        // A host's routed /64 is named by the same /30, whichever of its addresses names it.
        let routed =
            |v4: [u8; 4]| Ipv6Addr::from(ipv6_routed_net_of(u32::from(Ipv4Addr::from(v4))));
        assert_eq!(
            routed([198, 18, 4, 2]),
            "2001:db8:102:400::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(routed([198, 18, 4, 1]), routed([198, 18, 4, 2]));
        assert_eq!(
            routed([198, 19, 255, 254]),
            "2001:db8:103:fffc::".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn snmp6_lines_parse() {
        let counters =
            parse_snmp6("ifIndex                         \t7\nIcmp6InNeighborAdvertisements\t12\n")
                .unwrap();
        assert_eq!(counters["Icmp6InNeighborAdvertisements"], 12);
        assert_eq!(counters["ifIndex"], 7);
        assert!(parse_snmp6("Ip6InReceives\tmany\n").is_err());
    }

    #[test]
    fn snmp_groups_parse() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm MaxConn InCsumErrors\n\
                    Tcp: 1 -1 3\n";
        let tcp = parse_snmp_group(text, "Tcp").unwrap();
        assert_eq!((tcp["MaxConn"], tcp["InCsumErrors"]), (-1, 3));
        assert_eq!(parse_snmp_group(text, "Ip").unwrap()["DefaultTTL"], 64);
        assert!(parse_snmp_group(text, "Udp").is_err());
        assert!(parse_snmp_group("Tcp: InErrs InCsumErrors\nTcp: 0\n", "Tcp").is_err());
    }

    #[test]
    fn prefix_overlap() {
        let p = |s| parse_prefix(s).unwrap();
        assert!(overlaps(p("198.18.4.0/30"), p("198.18.4.2")));
        assert!(overlaps(p("198.18.4.0/30"), p("198.18.0.0/15")));
        assert!(!overlaps(p("198.18.4.0/30"), p("198.18.4.4/30")));
        assert!(!overlaps(p("198.18.4.0/30"), p("198.18.0.0/22")));
        assert!(overlaps(p("198.18.3.0/24"), p("198.18.0.0/22")));
    }

    #[test]
    fn free_blocks_stay_in_the_usable_range_and_avoid_used_prefixes() {
        let p = |s| parse_prefix(s).unwrap();
        let ip = |net| Ipv4Addr::from(net);
        assert_eq!(
            ip(free_block(&[], 30, 0).unwrap()),
            Ipv4Addr::new(198, 18, 4, 0)
        );
        let last_30 = free_block(&[], 30, (USABLE_END - USABLE_FIRST) / 4 - 1).unwrap();
        assert_eq!(ip(last_30), Ipv4Addr::new(198, 19, 255, 252));
        // The seed only picks where to start: it wraps round to the start of the range.
        assert_eq!(
            free_block(&[], 30, (USABLE_END - USABLE_FIRST) / 4),
            free_block(&[], 30, 0)
        );
        // Blocks larger than the reserved /22 start above it, aligned.
        assert_eq!(
            ip(free_block(&[], 20, 0).unwrap()),
            Ipv4Addr::new(198, 18, 16, 0)
        );
        let used = [p("198.18.4.0/30"), p("198.18.5.0/24"), p("198.18.4.8/29")];
        assert_eq!(
            ip(free_block(&used, 30, 0).unwrap()),
            Ipv4Addr::new(198, 18, 4, 4)
        );
        assert_eq!(
            ip(free_block(&used, 29, 0).unwrap()),
            Ipv4Addr::new(198, 18, 4, 16)
        );
        assert_eq!(
            ip(free_block(&used, 24, 0).unwrap()),
            Ipv4Addr::new(198, 18, 6, 0)
        );
        assert_eq!(free_block(&[p("198.18.0.0/15")], 30, 7), None);
        assert_eq!(free_block(&[], 14, 0), None);
    }
}
