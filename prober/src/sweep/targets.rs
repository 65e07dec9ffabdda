//! The hosts of a sweep: addresses, CIDR blocks and host names, minus exclusions, kept as
//! sorted, disjoint address ranges so that ten million hosts cost a few ranges, not a list.
//! Either family fits: addresses are kept as 128-bit numbers, IPv4 in its IPv4-mapped form.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use anyhow::{anyhow, bail, Result};
use prober_common::IpAddress;

use super::files;
use crate::{echo, net, net::Host};

/// Disjoint, ascending, inclusive ranges of addresses, with the count of hosts before each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetSet {
    ranges: Vec<(u128, u128)>,
    /// `hosts_before[i]`: how many addresses the ranges before `ranges[i]` hold.
    hosts_before: Vec<u64>,
}

impl TargetSet {
    /// `targets` as typed (addresses, CIDR blocks, names); `excluded` as CIDR blocks or
    /// addresses. Names resolve to one address each, as for a single probe.
    pub fn new(targets: &[String], excluded: &[String]) -> Result<TargetSet> {
        let mut included = Vec::new();
        for target in targets {
            let (typed, block) = match parse_block(target)? {
                Some(block) => block,
                None => {
                    let address = net::resolve(target)?;
                    (address, (key(address), key(address)))
                }
            };
            net::supported_family(typed, target)?;
            included.push(block);
        }
        let mut removed = Vec::new();
        for block in excluded {
            let Some((typed, range)) = parse_block(block)? else {
                bail!(
                    "invalid exclusion '{}': expected an IPv4 address or CIDR block",
                    echo::value(block)
                );
            };
            net::supported_family(typed, block)?;
            removed.push(range);
        }
        let included = included
            .into_iter()
            .flat_map(|block| subtract(vec![block], &reserved_outside(block)))
            .collect();
        let ranges = subtract(merge(included), &merge(removed));
        let mut hosts_before = Vec::with_capacity(ranges.len());
        let mut hosts: u64 = 0;
        for &(first, last) in &ranges {
            hosts_before.push(hosts);
            hosts = u64::try_from(last - first)
                .ok()
                .and_then(|span| hosts.checked_add(span)?.checked_add(1))
                .ok_or_else(|| anyhow!("more than 2^64 target addresses: split the targets"))?;
        }
        Ok(TargetSet {
            ranges,
            hosts_before,
        })
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
}

/// An address as the number ranges are kept in: its 16 bytes as the eBPF programs see them.
fn key(address: IpAddr) -> u128 {
    u128::from_be_bytes(IpAddress::from(address).0)
}

fn address(key: u128) -> IpAddr {
    IpAddress(key.to_be_bytes()).into()
}

/// An IPv4 block as a range of keys.
fn ipv4_range(first: u32, last: u32) -> (u128, u128) {
    (
        key(IpAddr::V4(Ipv4Addr::from(first))),
        key(IpAddr::V4(Ipv4Addr::from(last))),
    )
}

/// IPv4 blocks no sweep should reach unless it targets them alone: "this network" 0/8,
/// loopback 127/8, multicast and the reserved rest from 224/3 up to the limited broadcast
/// address.
const RESERVED_IPV4: [(u32, u32); 3] = [
    (0x0000_0000, 0x00ff_ffff),
    (0x7f00_0000, 0x7fff_ffff),
    (0xe000_0000, 0xffff_ffff),
];

/// The reserved blocks to cut out of `block`: all but one that holds the whole block (so
/// `127.0.0.1` or `224.0.0.0/24` can still be swept on purpose, but `0.0.0.0/0` means the
/// unicast Internet).
fn reserved_outside((first, last): (u128, u128)) -> Vec<(u128, u128)> {
    RESERVED_IPV4
        .into_iter()
        .map(|(reserved_first, reserved_last)| ipv4_range(reserved_first, reserved_last))
        .filter(|&(reserved_first, reserved_last)| first < reserved_first || last > reserved_last)
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

/// An address or CIDR block (`Some`: the address as typed, and the block's range), or a host
/// name (`None`); addresses read as [`Host::parse`] reads them.
fn parse_block(text: &str) -> Result<Option<(IpAddr, (u128, u128))>> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address = match (Host::parse(address)?, prefix) {
        (Host::Address(address), _) => address,
        (Host::Name(_), None) => return Ok(None),
        (Host::Name(_), Some(_)) => bail!(
            "invalid CIDR block '{}': expected an address before the /",
            echo::value(text)
        ),
    };
    let bits = match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
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
    // Host bits counted in the 128-bit key, where an IPv4 address fills the last 32.
    let host_bits = bits - prefix;
    let mask = if host_bits == 128 {
        0
    } else {
        u128::MAX << host_bits
    };
    let first = key(address) & mask;
    Ok(Some((address, (first, first | !mask))))
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
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn set(targets: &[&str], excluded: &[&str]) -> TargetSet {
        TargetSet::new(&strings(targets), &strings(excluded)).unwrap()
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
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
                ipv4_range(0xc612_0400, 0xc612_0404),
                ipv4_range(0xc612_0901, 0xc612_0901)
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
        let set = TargetSet::new(&targets, &excluded).unwrap();

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
    fn malformed_blocks_are_refused() {
        for (targets, excluded) in [
            ("198.18.4.0/33", "198.18.9.9"),
            ("198.18.4/24", "198.18.9.9"),
            ("198.18.4.1", "nonsense"),
            ("198.18.4.1", "2001:db8::/120"),
            ("198.18.4.0/+24", "198.18.9.9"),
            ("198.18.4.0/", "198.18.9.9"),
            ("example.com/24", "198.18.9.9"),
            ("010.0.0.0/8", "198.18.9.9"),
            ("127.1", "198.18.9.9"),
            ("198.18.4.1", "0x7f.1"),
            ("198.18.4.1", "198.18.9.9/024x"),
        ] {
            assert!(
                TargetSet::new(&strings(&[targets]), &strings(&[excluded])).is_err(),
                "{targets} minus {excluded}"
            );
        }
    }

    #[test]
    fn refusals_show_an_excerpt_of_the_input_escaped() {
        let refusal = |excluded: &str| {
            TargetSet::new(&strings(&["198.18.4.1"]), &strings(&[excluded]))
                .unwrap_err()
                .to_string()
        };
        let long = format!("\x1b[2J{}", "9".repeat(50_000_000));
        assert_eq!(
            refusal(&long),
            format!(
                "invalid exclusion '\\x1b[2J{}…': expected an IPv4 address or CIDR block",
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

    #[test]
    fn either_family_parses_and_ipv6_is_refused_for_now() {
        for (targets, excluded, typed) in [
            ("2001:db8::/120", "198.18.9.9", "2001:db8::/120"),
            ("::ffff:198.18.4.2", "198.18.9.9", "::ffff:198.18.4.2"),
            ("198.18.4.0/30", "2001:db8::/32", "2001:db8::/32"),
        ] {
            let error = TargetSet::new(&strings(&[targets]), &strings(&[excluded])).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("IPv6 targets are not supported yet: '{typed}'")
            );
        }
        let block = |text| parse_block(text).unwrap().unwrap().1;
        let v6 = |text: &str| key(text.parse().unwrap());
        assert_eq!(
            block("2001:db8::17/124"),
            (v6("2001:db8::10"), v6("2001:db8::1f"))
        );
        assert_eq!(block("::/0"), (0, u128::MAX), "a whole family's block");
        assert_eq!(
            block("198.18.4.9/31"),
            (v6("::ffff:198.18.4.8"), v6("::ffff:198.18.4.9")),
            "IPv4 in its mapped form"
        );
        assert_eq!(
            merge(vec![(5, u128::MAX), (0, 4)]),
            [(0, u128::MAX)],
            "the top of the space"
        );
    }
}
