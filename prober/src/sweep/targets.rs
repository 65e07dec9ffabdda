//! The hosts of a sweep: addresses, CIDR blocks and host names, minus exclusions, kept as
//! sorted, disjoint address ranges so that ten million hosts cost a few ranges, not a list.
//! Either family fits: addresses are kept as 128-bit numbers, IPv4 in its IPv4-mapped form.
//! One sweep probes one family: its targets are all IPv4 or all IPv6 (exclusions may be of
//! either, as a shared exclude file holds both).
use std::{net::IpAddr, path::Path};

use anyhow::{bail, Context as _, Result};
use prober_common::IpAddress;

use super::{files, MAX_PROBES};
use crate::{
    echo,
    net::{self, Family, Host, Interface},
};

/// Disjoint, ascending, inclusive ranges of addresses, with the count of hosts before each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetSet {
    ranges: Vec<(u128, u128)>,
    /// `hosts_before[i]`: how many addresses the ranges before `ranges[i]` hold.
    hosts_before: Vec<u64>,
    /// The interface link-local targets' zone names (`fe80::1%eth0`).
    zone: Option<Interface>,
}

impl TargetSet {
    /// `targets` as typed (addresses, CIDR blocks, names), all of one family, `family` if `-4`
    /// or `-6` asked for one; `excluded` as CIDR blocks or addresses. Names resolve to one
    /// address each, as for a single probe.
    pub fn new(
        targets: &[String],
        excluded: &[String],
        family: Option<Family>,
    ) -> Result<TargetSet> {
        let mut included = Vec::new();
        let mut first: Option<(&str, IpAddr)> = None;
        let mut zone: Option<Interface> = None;
        for target in targets {
            let (ip, range, target_zone) = target_block(target, family)?;
            match first {
                Some((first_typed, first_ip)) if Family::of(first_ip) != Family::of(ip) => bail!(
                    "'{}' is {} and '{}' {}: a sweep probes one address family; run a prober \
                     for each (-4 or -6 picks a name's)",
                    echo::value(first_typed),
                    Family::of(first_ip).name(),
                    echo::value(target),
                    Family::of(ip).name()
                ),
                Some(_) => {}
                None => first = Some((target, ip)),
            }
            if let Some(target_zone) = target_zone {
                match &zone {
                    Some(zone) if *zone != target_zone => bail!(
                        "the zones of the targets name {} and {}: a sweep sends through one \
                         interface",
                        zone.name,
                        target_zone.name
                    ),
                    _ => zone = Some(target_zone),
                }
            }
            included.extend(subtract(addresses_of(ip, range), &reserved_outside(range)));
        }
        let mut removed = Vec::new();
        for block in excluded {
            // A zone says nothing about which addresses are excluded.
            let Some(Block { ip, range, .. }) = parse_block(block)? else {
                bail!(
                    "invalid exclusion '{}': expected an address, CIDR block or range",
                    echo::value(block)
                );
            };
            removed.extend(addresses_of(ip, range));
        }
        let ranges = subtract(merge(included), &merge(removed));
        let hosts = ranges.iter().fold(0u128, |hosts, &(first, last)| {
            hosts.saturating_add(last - first).saturating_add(1)
        });
        if hosts > u128::from(MAX_PROBES) {
            bail!(
                "the targets hold {hosts} addresses: a sweep probes at most {MAX_PROBES} (host, \
                 port) pairs; exclude parts of them (--exclude) or split them"
            );
        }
        Ok(TargetSet::of(ranges, zone))
    }

    /// The set of `ranges` (sorted, disjoint, and no more than [`MAX_PROBES`] addresses).
    fn of(ranges: Vec<(u128, u128)>, zone: Option<Interface>) -> TargetSet {
        let mut hosts_before = Vec::with_capacity(ranges.len());
        let mut hosts = 0;
        for &(first, last) in &ranges {
            hosts_before.push(hosts);
            hosts += (last - first) as u64 + 1;
        }
        TargetSet {
            ranges,
            hosts_before,
            zone,
        }
    }

    /// Takes the addresses inside `blocks` (address, prefix length) out of the set and
    /// returns them as a set of their own.
    pub fn split_off(&mut self, blocks: &[(IpAddr, u8)]) -> TargetSet {
        let cut = merge(
            blocks
                .iter()
                .map(|&(ip, prefix)| block_keys(ip, u32::from(prefix)))
                .collect(),
        );
        let kept = subtract(self.ranges.clone(), &cut);
        let taken = subtract(std::mem::take(&mut self.ranges), &kept);
        *self = TargetSet::of(kept, self.zone.clone());
        TargetSet::of(taken, self.zone.clone())
    }

    /// Every address, in ascending order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (0..self.len()).map(|index| self.get(index))
    }

    pub fn len(&self) -> u64 {
        match (self.ranges.last(), self.hosts_before.last()) {
            (Some(&(first, last)), Some(&before)) => before + (last - first) as u64 + 1,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The lowest address, if any.
    pub fn first(&self) -> Option<IpAddr> {
        self.ranges.first().map(|&(first, _)| address(first))
    }

    /// The `index`th address in ascending order.
    pub fn get(&self, index: u64) -> IpAddr {
        let range = self.hosts_before.partition_point(|&before| before <= index) - 1;
        address(self.ranges[range].0 + u128::from(index - self.hosts_before[range]))
    }

    /// Where `address` sits in the set, if it is in it.
    pub fn index(&self, address: IpAddr) -> Option<u64> {
        let address = key(address);
        let range = self
            .ranges
            .partition_point(|&(first, _)| first <= address)
            .checked_sub(1)?;
        let (first, last) = self.ranges[range];
        (address <= last).then(|| self.hosts_before[range] + (address - first) as u64)
    }

    /// The first address of each range: enough to check where the ranges are routed.
    pub fn range_starts(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ranges.iter().map(|&(first, _)| address(first))
    }

    /// The interface the targets' zone names, if they are link-local.
    pub fn zone(&self) -> Option<&Interface> {
        self.zone.as_ref()
    }
}

/// A target as typed: the address (a block's, or a name's), its range of keys, and the interface
/// its zone names.
fn target_block(
    target: &str,
    family: Option<Family>,
) -> Result<(IpAddr, (u128, u128), Option<Interface>)> {
    match parse_block(target)? {
        Some(block) => {
            net::resolve::require_family(block.ip, target, family)?;
            let link_local = within(block.range, LINK_LOCAL);
            let zone = net::resolve::zone_interface(block.zone, link_local, target)?;
            Ok((block.ip, block.range, zone))
        }
        None => {
            let destination = net::resolve(target, family)?;
            let ip = destination.ip;
            Ok((ip, (key(ip), key(ip)), destination.zone))
        }
    }
}

/// An address as the number ranges are kept in: its 16 bytes as the eBPF programs see them.
fn key(address: IpAddr) -> u128 {
    u128::from_be_bytes(IpAddress::from(address).0)
}

fn address(key: u128) -> IpAddr {
    IpAddress(key.to_be_bytes()).into()
}

/// The keys of IPv4's addresses, `::ffff:0:0/96`.
const IPV4_KEYS: (u128, u128) = (0xffff << 32, 0xffff_ffff_ffff);

/// fe80::/10, whose addresses need a zone.
const LINK_LOCAL: (u128, u128) = (0xfe80 << 112, (0xfe80 << 112) | ((1 << 118) - 1));

/// The keys an address or block typed as `ip` stands for: an IPv6 block never holds the
/// IPv4-mapped addresses, whose keys are IPv4's (so `--exclude ::/0` excludes no IPv4 host).
fn addresses_of(ip: IpAddr, range: (u128, u128)) -> Vec<(u128, u128)> {
    match ip {
        IpAddr::V4(_) => vec![range],
        IpAddr::V6(_) => subtract(vec![range], &[IPV4_KEYS]),
    }
}

fn within((first, last): (u128, u128), (outer_first, outer_last): (u128, u128)) -> bool {
    outer_first <= first && last <= outer_last
}

/// Blocks no sweep should reach unless it targets them alone, in ascending order: IPv6's
/// unspecified and loopback addresses (`::/127`); IPv4's "this network" 0/8, loopback 127/8,
/// and multicast and the reserved rest from 224/3 up to the limited broadcast address; IPv6's
/// link-local fe80::/10 (targeted, it needs a zone) and multicast ff00::/8. Each family's lie
/// outside the other's addresses, so one list serves both.
const RESERVED: [(u128, u128); 6] = [
    (0, 1),
    ipv4_keys(0x0000_0000, 0x00ff_ffff),
    ipv4_keys(0x7f00_0000, 0x7fff_ffff),
    ipv4_keys(0xe000_0000, 0xffff_ffff),
    LINK_LOCAL,
    (0xff << 120, u128::MAX),
];

/// An IPv4 block as a range of keys.
const fn ipv4_keys(first: u32, last: u32) -> (u128, u128) {
    (IPV4_KEYS.0 | first as u128, IPV4_KEYS.0 | last as u128)
}

/// The reserved blocks to cut out of `block`: all but one that holds the whole block (so
/// `127.0.0.1` or `224.0.0.0/24` can still be swept on purpose, but `0.0.0.0/0` means the
/// unicast Internet).
fn reserved_outside(block: (u128, u128)) -> Vec<(u128, u128)> {
    RESERVED
        .into_iter()
        .filter(|&reserved| !within(block, reserved))
        .collect()
}

/// Reads an exclusion file (a regular file of bounded size, see [`files::read_text`]): one
/// address or CIDR block per line, `#` comments.
pub fn read_exclude_file(path: &Path) -> Result<Vec<String>> {
    let text = files::read_text(path, "the exclude file")?;
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect())
}

/// An address, CIDR block or range as typed.
struct Block<'a> {
    /// The address before the `/`.
    ip: IpAddr,
    /// Its zone (`fe80::%eth0/120`).
    zone: Option<&'a str>,
    range: (u128, u128),
}

/// Whether `text` stands for a block of addresses (a CIDR block or a range), which only a sweep
/// probes, rather than for one host.
pub fn is_block(text: &str) -> bool {
    text.contains('/') || range_ends(text).is_some()
}

/// The two ends of masscan's range `first-last`: split at the last `-` with an address on
/// either side (a host name may hold a `-`, and so may the first address's zone, but none of a
/// name's parts is an address).
fn range_ends(text: &str) -> Option<(&str, &str)> {
    text.rmatch_indices('-')
        .map(|(at, _)| (&text[..at], &text[at + 1..]))
        .find(|&(first, last)| Host::is_literal(first) && Host::is_literal(last))
}

/// An address as typed in a block, and its zone.
fn block_address<'a>(address: &'a str, block: &str) -> Result<(IpAddr, Option<&'a str>)> {
    match Host::parse(address)? {
        Host::Address { ip, zone } => Ok((ip, zone)),
        Host::Name(_) => bail!(
            "invalid block '{}': expected an address, not a name",
            echo::value(block)
        ),
    }
}

/// A range `first-last` of one family, ends included; a zone goes on its first address.
fn parse_range<'a>(text: &str, first: &'a str, last: &str) -> Result<Block<'a>> {
    let in_range = || format!("invalid range '{}'", echo::value(text));
    let (ip, zone) = block_address(first, text).with_context(in_range)?;
    let (last_ip, last_zone) = block_address(last, text).with_context(in_range)?;
    if Family::of(ip) != Family::of(last_ip) {
        bail!(
            "invalid range '{}': its ends are of different families",
            echo::value(text)
        );
    }
    if key(last_ip) < key(ip) {
        bail!(
            "invalid range '{}': its first address is above its last",
            echo::value(text)
        );
    }
    if last_zone.is_some() {
        bail!(
            "invalid range '{}': the zone goes on the first address only",
            echo::value(text)
        );
    }
    Ok(Block {
        ip,
        zone,
        range: (key(ip), key(last_ip)),
    })
}

/// An address, CIDR block or range (`Some`), or a host name (`None`); addresses read as
/// [`Host::parse`] reads them.
fn parse_block(text: &str) -> Result<Option<Block<'_>>> {
    if let Some((first, last)) = range_ends(text) {
        return parse_range(text, first, last).map(Some);
    }
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let (ip, zone) = match (Host::parse(address)?, prefix) {
        (Host::Address { ip, zone }, _) => (ip, zone),
        (Host::Name(_), None) => return Ok(None),
        (Host::Name(_), Some(_)) => bail!(
            "invalid CIDR block '{}': expected an address before the /",
            echo::value(text)
        ),
    };
    let bits = address_bits(ip);
    let prefix: u32 = match prefix {
        None => bits,
        Some(prefix) => match prefix.parse() {
            // Digits only: u32's parser would also take "+24".
            Ok(length) if length <= bits && prefix.bytes().all(|b| b.is_ascii_digit()) => length,
            _ => bail!(
                "invalid CIDR block '{}': the prefix length must be 0 to {bits}",
                echo::value(text)
            ),
        },
    };
    Ok(Some(Block {
        ip,
        zone,
        range: block_keys(ip, prefix),
    }))
}

fn address_bits(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Whether `ip` lies in one of `blocks` (address, prefix length).
pub fn in_blocks(blocks: &[(IpAddr, u8)], ip: IpAddr) -> bool {
    blocks.iter().any(|&(block, prefix)| {
        let (first, last) = block_keys(block, u32::from(prefix));
        block.is_ipv4() == ip.is_ipv4() && (first..=last).contains(&key(ip))
    })
}

/// The keys of the block of `ip` with `prefix` bits, which must fit its family.
fn block_keys(ip: IpAddr, prefix: u32) -> (u128, u128) {
    // Host bits counted in the 128-bit key, where an IPv4 address fills the last 32.
    let host_bits = address_bits(ip) - prefix;
    let mask = if host_bits == 128 {
        0
    } else {
        u128::MAX << host_bits
    };
    let first = key(ip) & mask;
    (first, first | !mask)
}

/// Sorts ranges and joins those that overlap or touch.
fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(previous) if previous.1.checked_add(1).is_none_or(|next| first <= next) => {
                previous.1 = previous.1.max(last);
            }
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// `ranges` minus `removed`; both sorted and disjoint. One walk along both: each cut is
/// passed once, except one that reaches into the next range.
fn subtract(ranges: Vec<(u128, u128)>, removed: &[(u128, u128)]) -> Vec<(u128, u128)> {
    let mut kept = Vec::with_capacity(ranges.len());
    let mut cuts = removed.iter().peekable();
    'ranges: for (mut first, last) in ranges {
        // Cuts wholly before this range are before every later one too.
        while cuts.next_if(|&&(_, cut_last)| cut_last < first).is_some() {}
        while let Some(&&(cut_first, cut_last)) = cuts.peek() {
            if cut_first > last {
                break;
            }
            if cut_first > first {
                kept.push((first, cut_first - 1));
            }
            if cut_last >= last {
                // It may reach into the next range: keep it.
                continue 'ranges;
            }
            first = cut_last + 1;
            cuts.next();
        }
        kept.push((first, last));
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn set(targets: &[&str], excluded: &[&str]) -> TargetSet {
        TargetSet::new(&strings(targets), &strings(excluded), None).unwrap()
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn in_blocks_holds_the_addresses_of_its_blocks_of_that_family() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let blocks = [(ip("198.18.0.3"), 32), (ip("198.18.1.0"), 24)];
        assert!(in_blocks(&blocks, ip("198.18.0.3")) && in_blocks(&blocks, ip("198.18.1.255")));
        assert!(!in_blocks(&blocks, ip("198.18.0.2")));
        assert!(
            !in_blocks(&blocks, ip("::c612:3")),
            "an IPv6 address is in no IPv4 block"
        );
    }

    #[test]
    fn split_off_takes_the_addresses_inside_the_blocks() {
        let mut targets = set(&["198.18.4.0/29", "198.18.9.1"], &[]);
        let taken = targets.split_off(&[(v4(198, 18, 4, 1), 32), (v4(198, 18, 4, 7), 32)]);
        assert_eq!(
            taken.addresses().collect::<Vec<_>>(),
            [v4(198, 18, 4, 1), v4(198, 18, 4, 7)]
        );
        assert_eq!(
            targets,
            set(
                &[
                    "198.18.4.0",
                    "198.18.4.2/31",
                    "198.18.4.4/31",
                    "198.18.4.6",
                    "198.18.9.1"
                ],
                &[]
            )
        );
        assert_eq!(targets.index(v4(198, 18, 9, 1)), Some(6));
        let all = targets.split_off(&[(v4(198, 18, 0, 0), 16)]);
        assert!(targets.is_empty());
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn blocks_and_addresses_merge() {
        let targets = set(
            &["198.18.4.0/30", "198.18.4.4", "198.18.4.2", "198.18.9.1"],
            &[],
        );
        assert_eq!(
            targets.ranges,
            [
                ipv4_keys(0xc612_0400, 0xc612_0404),
                ipv4_keys(0xc612_0901, 0xc612_0901)
            ]
        );
        assert_eq!(targets.len(), 6);
        assert_eq!(targets.get(5), v4(198, 18, 9, 1));
        assert_eq!(targets.index(v4(198, 18, 4, 3)), Some(3));
        assert_eq!(targets.index(v4(198, 18, 4, 5)), None);
    }

    #[test]
    fn exclusions_cut_holes() {
        let targets = set(
            &["198.18.4.0/28"],
            &["198.18.4.4/30", "198.18.4.0", "198.18.4.15"],
        );
        let addresses: Vec<IpAddr> = (0..targets.len()).map(|i| targets.get(i)).collect();
        let last_octets: Vec<u8> = [1, 2, 3, 8, 9, 10, 11, 12, 13, 14].to_vec();
        assert_eq!(
            addresses,
            last_octets
                .iter()
                .map(|&d| v4(198, 18, 4, d))
                .collect::<Vec<_>>()
        );
        for (i, address) in addresses.iter().enumerate() {
            assert_eq!(targets.index(*address), Some(i as u64));
        }
        assert_eq!(targets.index(v4(198, 18, 4, 5)), None);
        assert!(set(&["198.18.4.1"], &["198.18.4.0/24"]).is_empty());
    }

    #[test]
    fn many_targets_minus_many_exclusions() {
        // The size that took 12 s when each target range was checked against every exclusion.
        const TARGETS: u32 = 20_000;
        const EXCLUSIONS: u32 = 1_000_000;
        let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
        // Targets every 101 addresses; the even addresses of the first 2 million excluded, and a
        // /16 that spans hundreds of target ranges.
        let target_at = |i: u32| base + 101 * i;
        let wide_cut = (
            u32::from(Ipv4Addr::new(10, 20, 0, 0)),
            u32::from(Ipv4Addr::new(10, 20, 255, 255)),
        );
        let targets: Vec<String> = (0..TARGETS)
            .map(|i| Ipv4Addr::from(target_at(i)).to_string())
            .chain(["10.255.0.0/30".to_string()])
            .collect();
        let excluded: Vec<String> = (0..EXCLUSIONS)
            .map(|j| Ipv4Addr::from(base + 2 * j).to_string())
            .chain(["10.20.0.0/16".to_string(), "10.255.0.1".to_string()])
            .collect();
        let set = TargetSet::new(&targets, &excluded, None).unwrap();

        let kept = |address: u32| {
            let offset = address - base;
            let even_cut = offset.is_multiple_of(2) && offset < 2 * EXCLUSIONS;
            !even_cut && !(wide_cut.0..=wide_cut.1).contains(&address)
        };
        let expected: Vec<IpAddr> = (0..TARGETS)
            .map(target_at)
            .filter(|&address| kept(address))
            .chain([0x0aff_0000, 0x0aff_0002, 0x0aff_0003])
            .map(|address| IpAddr::V4(Ipv4Addr::from(address)))
            .collect();
        assert!(expected.len() > 9_000, "a test of something");
        let actual: Vec<IpAddr> = (0..set.len()).map(|i| set.get(i)).collect();
        assert_eq!(actual.len(), expected.len());
        assert!(actual == expected, "the difference is not the expected one");
    }

    #[test]
    fn reserved_blocks_are_left_out_unless_targeted_alone() {
        let internet = set(&["0.0.0.0/0"], &[]);
        assert_eq!(internet.len(), (1 << 32) - (1 << 24) * 2 - (1 << 29));
        assert_eq!(internet.first(), Some(v4(1, 0, 0, 0)));
        assert_eq!(internet.index(v4(127, 0, 0, 1)), None);
        assert_eq!(internet.index(v4(255, 255, 255, 255)), None);
        assert_eq!(set(&["127.0.0.1"], &[]).len(), 1);
        assert_eq!(set(&["127.0.0.0/30", "126.255.255.255/32"], &[]).len(), 5);
        assert_eq!(
            set(&["126.0.0.0/7"], &[]).len(),
            1 << 24,
            "127/8 cut out of a wider block"
        );
    }

    #[test]
    fn ranges_are_blocks_of_their_ends() {
        let targets = set(&["198.18.4.250-198.18.5.3"], &["198.18.4.252-198.18.4.253"]);
        assert_eq!(
            targets.addresses().collect::<Vec<_>>(),
            [
                v4(198, 18, 4, 250),
                v4(198, 18, 4, 251),
                v4(198, 18, 4, 254),
                v4(198, 18, 4, 255),
                v4(198, 18, 5, 0),
                v4(198, 18, 5, 1),
                v4(198, 18, 5, 2),
                v4(198, 18, 5, 3)
            ]
        );
        assert_eq!(set(&["198.18.4.7-198.18.4.7"], &[]).len(), 1);
        let v6_range = set(
            &["2001:db8::fe-2001:db8::1:1"],
            &["2001:db8::100-2001:db8::ffff"],
        );
        assert_eq!(v6_range.len(), 4, "::fe, ::ff, ::1:0, ::1:1");
        let lo = Interface::by_name("lo").unwrap();
        assert_eq!(set(&["fe80::1%lo-fe80::4"], &[]).zone(), Some(&lo));
        for text in [
            "198.18.4.1-198.18.4.9",
            "2001:db8::1-2001:db8::2",
            "fe80::1%lo-fe80::4",
        ] {
            assert!(is_block(text), "{text}");
        }
        for text in ["198.18.4.1", "host-1.example", "10-host", "fe80::1%lo"] {
            assert!(!is_block(text), "{text}");
        }
    }

    #[test]
    fn malformed_ranges_are_refused_not_resolved() {
        for (range, error) in [
            (
                "198.18.4.9-198.18.4.1",
                "invalid range '198.18.4.9-198.18.4.1': its first address is above its last",
            ),
            (
                "198.18.4.1-2001:db8::1",
                "invalid range '198.18.4.1-2001:db8::1': its ends are of different families",
            ),
            (
                "fe80::1-fe80::4%lo",
                "invalid range 'fe80::1-fe80::4%lo': the zone goes on the first address only",
            ),
            (
                "198.18.4.1-198.18.4",
                "invalid range '198.18.4.1-198.18.4': '198.18.4' is not a valid address: an IPv4 \
                 address is four decimal numbers from 0 to 255 without leading zeros (a.b.c.d)",
            ),
            (
                "198.18.4.1-5",
                "invalid range '198.18.4.1-5': '5' is not a valid address: an IPv4 address is \
                 four decimal numbers from 0 to 255 without leading zeros (a.b.c.d)",
            ),
        ] {
            assert_eq!(refusal_chain(&[range], &[]), error);
            assert_eq!(refusal_chain(&["198.18.4.1"], &[range]), error);
        }
    }

    #[test]
    fn malformed_blocks_are_refused() {
        for (targets, excluded) in [
            ("198.18.4.0/33", "198.18.9.9"),
            ("198.18.4/24", "198.18.9.9"),
            ("198.18.4.1", "nonsense"),
            ("198.18.4.1", "2001:db8::/129"),
            ("198.18.4.1", "::ffff:198.18.4.0/120"),
            ("2001:db8::/120", "2001:db8::g"),
            ("198.18.4.0/+24", "198.18.9.9"),
            ("198.18.4.0/", "198.18.9.9"),
            ("example.com/24", "198.18.9.9"),
            ("010.0.0.0/8", "198.18.9.9"),
            ("127.1", "198.18.9.9"),
            ("198.18.4.1", "0x7f.1"),
            ("198.18.4.1", "198.18.9.9/024x"),
        ] {
            assert!(
                TargetSet::new(&strings(&[targets]), &strings(&[excluded]), None).is_err(),
                "{targets} minus {excluded}"
            );
        }
    }

    #[test]
    fn refusals_show_an_excerpt_of_the_input_escaped() {
        let refusal = |excluded: &str| {
            TargetSet::new(&strings(&["198.18.4.1"]), &strings(&[excluded]), None)
                .unwrap_err()
                .to_string()
        };
        let long = format!("\x1b[2J{}", "9".repeat(50_000_000));
        assert_eq!(
            refusal(&long),
            format!(
                "invalid exclusion '\\x1b[2J{}…': expected an address, CIDR block or range",
                "9".repeat(60)
            )
        );
        assert_eq!(
            refusal("198.18.0.0/\x1b]0;x\x07"),
            "invalid CIDR block '198.18.0.0/\\x1b]0;x\\x07': the prefix length must be 0 to 32"
        );
    }

    #[test]
    fn cuts_spanning_several_ranges() {
        let ranges = vec![(0, 9), (20, 29), (40, 49), (60, 69)];
        assert_eq!(
            subtract(ranges.clone(), &[(5, 45), (48, 48), (50, 59), (69, 80)]),
            [(0, 4), (46, 47), (49, 49), (60, 68)]
        );
        assert_eq!(subtract(ranges.clone(), &[(0, u128::MAX)]), []);
        assert_eq!(subtract(ranges.clone(), &[]), ranges);
        assert_eq!(
            subtract(vec![(0, u128::MAX)], &[(0, 0), (u128::MAX, u128::MAX)]),
            [(1, u128::MAX - 1)]
        );
    }

    /// The refusal with its causes, as the error line shows them.
    fn refusal_chain(targets: &[&str], excluded: &[&str]) -> String {
        let error = TargetSet::new(&strings(targets), &strings(excluded), None).unwrap_err();
        format!("{error:#}")
    }

    fn refusal(targets: &[&str], excluded: &[&str], family: Option<Family>) -> String {
        TargetSet::new(&strings(targets), &strings(excluded), family)
            .unwrap_err()
            .to_string()
    }

    fn v6(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_blocks_are_targets_like_ipv4_ones() {
        let targets = set(
            &["2001:db8::/120", "2001:db8::1:5"],
            &["2001:db8::80/121", "2001:db8::7"],
        );
        assert_eq!(targets.len(), 128 - 1 + 1);
        assert_eq!(targets.first(), Some(v6("2001:db8::")));
        assert_eq!(targets.get(7), v6("2001:db8::8"), "::7 excluded");
        assert_eq!(targets.get(126), v6("2001:db8::7f"));
        assert_eq!(targets.get(127), v6("2001:db8::1:5"));
        assert_eq!(targets.index(v6("2001:db8::1:5")), Some(127));
        assert_eq!(targets.index(v6("2001:db8::80")), None);
        assert_eq!(
            targets.range_starts().collect::<Vec<_>>(),
            [v6("2001:db8::"), v6("2001:db8::8"), v6("2001:db8::1:5")]
        );
        let block = |text| parse_block(text).unwrap().unwrap().range;
        let key6 = |text: &str| key(v6(text));
        assert_eq!(
            block("2001:db8::17/124"),
            (key6("2001:db8::10"), key6("2001:db8::1f"))
        );
        assert_eq!(block("::/0"), (0, u128::MAX), "a whole family's block");
        assert_eq!(
            block("198.18.4.9/31"),
            (key6("::ffff:198.18.4.8"), key6("::ffff:198.18.4.9")),
            "IPv4 in its mapped form"
        );
        assert_eq!(
            merge(vec![(5, u128::MAX), (0, 4)]),
            [(0, u128::MAX)],
            "the top of the space"
        );
        assert_eq!(
            set(&["2001:db8::2"], &[]).get(0).to_string(),
            "2001:db8::2",
            "RFC 5952's form"
        );
    }

    #[test]
    fn ipv6_blocks_never_hold_ipv4_addresses() {
        // ::fffe:0:0/95 holds the IPv4-mapped /96: those keys are IPv4's, not the block's.
        let below = set(&["::fffe:0:0/95"], &[]);
        assert_eq!(below.len(), 1 << 32);
        assert_eq!(below.index(v4(198, 18, 4, 2)), None);
        assert!(below.range_starts().all(|start| start.is_ipv6()));
        // An IPv6 exclusion, however wide, excludes no IPv4 host (a shared exclude file holds
        // both families), and an IPv4 one no IPv6 host.
        assert_eq!(set(&["198.18.4.0/30"], &["::/0"]).len(), 4);
        assert_eq!(set(&["2001:db8::/126"], &["0.0.0.0/0"]).len(), 4);
        assert_eq!(
            set(&["2001:db8::/126"], &["2001:db8::/127", "198.18.4.0/24"]).len(),
            2
        );
    }

    #[test]
    fn ipv6_reserved_blocks_are_left_out_unless_targeted_alone() {
        let low = set(&["::/120"], &[]);
        assert_eq!(low.len(), 254, ":: and ::1 cut out");
        assert_eq!(low.first(), Some(v6("::2")));
        assert_eq!(set(&["::1"], &[]).len(), 1);
        assert_eq!(set(&["ff02::1"], &[]).len(), 1);
        assert_eq!(set(&["ff02::/120"], &[]).len(), 256);
        assert_eq!(
            set(&["feff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120"], &[]).len(),
            256,
            "just below multicast"
        );
    }

    #[test]
    fn a_sweep_probes_one_family() {
        assert_eq!(
            refusal(&["198.18.4.1", "2001:db8::/120"], &[], None),
            "'198.18.4.1' is IPv4 and '2001:db8::/120' IPv6: a sweep probes one address family; \
             run a prober for each (-4 or -6 picks a name's)"
        );
        assert_eq!(
            refusal(&["2001:db8::2", "198.18.4.0/30"], &[], None),
            "'2001:db8::2' is IPv6 and '198.18.4.0/30' IPv4: a sweep probes one address family; \
             run a prober for each (-4 or -6 picks a name's)"
        );
        assert_eq!(
            refusal(&["2001:db8::/120"], &[], Some(Family::V4)),
            "-4 asks for IPv4, but '2001:db8::/120' is an IPv6 address"
        );
        assert_eq!(
            refusal(&["198.18.4.0/30"], &[], Some(Family::V6)),
            "-6 asks for IPv6, but '198.18.4.0/30' is an IPv4 address"
        );
        assert_eq!(
            refusal(&["::ffff:198.18.4.0/120"], &[], None),
            "'::ffff:198.18.4.0' is an IPv4-mapped address, which IPv6 packets never carry: \
             probe 198.18.4.0"
        );
        assert!(TargetSet::new(&strings(&["2001:db8::2"]), &[], Some(Family::V6)).is_ok());
    }

    #[test]
    fn an_ipv6_block_must_fit_the_probe_limit_after_its_exclusions() {
        assert_eq!(
            refusal(&["2001:db8::/64"], &[], None),
            "the targets hold 18446744073709551616 addresses: a sweep probes at most 8589934592 \
             (host, port) pairs; exclude parts of them (--exclude) or split them"
        );
        assert!(refusal(&["::/0"], &[], None).starts_with("the targets hold "));
        // Excluding every half but the first, from the /65 to the /96, leaves 2001:db8::/96.
        let halves: Vec<String> = (65..=96)
            .map(|prefix| {
                let half = IpAddr::from(Ipv6Addr::from(
                    u128::from(v6_addr("2001:db8::")) | 1 << (128 - prefix),
                ));
                format!("{half}/{prefix}")
            })
            .collect();
        let halves: Vec<&str> = halves.iter().map(String::as_str).collect();
        let left = set(&["2001:db8::/64"], &halves);
        assert_eq!(left.len(), 1 << 32);
        assert_eq!(left.get((1 << 32) - 1), v6("2001:db8::ffff:ffff"));
        assert_eq!(left.index(v6("2001:db8::1:0:0")), None);
        // The limit is on what is left: a /95 is as many addresses as the limit allows.
        assert_eq!(set(&["2001:db8::/95"], &[]).len(), MAX_PROBES);
        assert!(refusal(&["2001:db8::/94"], &[], None).contains("8589934592 (host, port) pairs"));
    }

    fn v6_addr(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    #[test]
    fn link_local_targets_carry_their_interface() {
        let lo = Interface::by_name("lo").unwrap();
        let zoned = set(&["fe80::1%lo", "fe80::%lo/126"], &["fe80::2%any"]);
        assert_eq!(zoned.len(), 3);
        assert_eq!(zoned.zone(), Some(&lo));
        assert_eq!(set(&["2001:db8::/126"], &["fe80::/64"]).zone(), None);
        assert_eq!(
            refusal(&["fe80::/120"], &[], None),
            "'fe80::/120' is link-local: name the interface it is on as its zone, fe80::%IF/120"
        );
        // A wider block is not link-local: fe80::/10 is cut out of it, as reserved blocks are.
        let block = |text| parse_block(text).unwrap().unwrap().range;
        let wider = block("fe80::/9");
        assert_eq!(
            subtract(vec![wider], &reserved_outside(wider)),
            [(
                key(v6("fec0::")),
                key(v6("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
            )]
        );
        assert!(refusal(&["fe80::/9"], &[], None).starts_with("the targets hold "));
        assert!(!reserved_outside(block("fe80::/120")).contains(&LINK_LOCAL));
        assert!(refusal(&["2001:db8::%lo/120"], &[], None).contains("has a zone"));
        assert_eq!(
            refusal(
                &["fe80::1%lo", "fe80::2%1", "fe80::3%prb-no-such-if"],
                &[],
                None
            ),
            "unknown interface 'prb-no-such-if'"
        );
    }
}
