//! The hosts of a sweep: addresses, CIDR blocks and host names, minus exclusions, kept as
//! sorted, disjoint address ranges so that ten million hosts cost a few ranges, not a list.
use std::{net::Ipv4Addr, path::Path};

use anyhow::{bail, Context as _, Result};

use crate::route;

/// Disjoint, ascending, inclusive ranges of addresses, with the count of hosts before each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetSet {
    ranges: Vec<(u32, u32)>,
    /// `hosts_before[i]`: how many addresses the ranges before `ranges[i]` hold.
    hosts_before: Vec<u64>,
}

impl TargetSet {
    /// `targets` as typed (addresses, CIDR blocks, names); `excluded` as CIDR blocks or
    /// addresses. Names resolve to one address each, as for a single probe.
    pub fn new(targets: &[String], excluded: &[String]) -> Result<TargetSet> {
        let mut included = Vec::new();
        for target in targets {
            included.push(match parse_block(target) {
                Some(block) => block?,
                None => {
                    let address = u32::from(route::resolve(target)?);
                    (address, address)
                }
            });
        }
        let mut removed = Vec::new();
        for block in excluded {
            match parse_block(block) {
                Some(block) => removed.push(block?),
                None => {
                    bail!("invalid exclusion '{block}': expected an IPv4 address or CIDR block")
                }
            }
        }
        let included = included
            .into_iter()
            .flat_map(|block| subtract(vec![block], &reserved_outside(block)))
            .collect();
        let ranges = subtract(merge(included), &merge(removed));
        let hosts_before = ranges
            .iter()
            .scan(0u64, |before, &(first, last)| {
                let here = *before;
                *before += u64::from(last - first) + 1;
                Some(here)
            })
            .collect();
        Ok(TargetSet {
            ranges,
            hosts_before,
        })
    }

    pub fn len(&self) -> u64 {
        match (self.ranges.last(), self.hosts_before.last()) {
            (Some(&(first, last)), Some(&before)) => before + u64::from(last - first) + 1,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The lowest address, if any.
    pub fn first(&self) -> Option<Ipv4Addr> {
        self.ranges.first().map(|&(first, _)| Ipv4Addr::from(first))
    }

    /// The `index`th address in ascending order.
    pub fn get(&self, index: u64) -> Ipv4Addr {
        let range = self.hosts_before.partition_point(|&before| before <= index) - 1;
        Ipv4Addr::from(self.ranges[range].0 + (index - self.hosts_before[range]) as u32)
    }

    /// Where `address` sits in the set, if it is in it.
    pub fn index(&self, address: Ipv4Addr) -> Option<u64> {
        let address = u32::from(address);
        let range = self
            .ranges
            .partition_point(|&(first, _)| first <= address)
            .checked_sub(1)?;
        let (first, last) = self.ranges[range];
        (address <= last).then(|| self.hosts_before[range] + u64::from(address - first))
    }

    /// The first address of each range: enough to check where the ranges are routed.
    pub fn range_starts(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ranges.iter().map(|&(first, _)| Ipv4Addr::from(first))
    }
}

/// Blocks no sweep should reach unless it targets them alone: "this network" 0/8, loopback
/// 127/8, multicast and the reserved rest from 224/3 up to the limited broadcast address.
const RESERVED: [(u32, u32); 3] = [
    (0x0000_0000, 0x00ff_ffff),
    (0x7f00_0000, 0x7fff_ffff),
    (0xe000_0000, 0xffff_ffff),
];

/// The reserved blocks to cut out of `block`: all but one that holds the whole block (so
/// `127.0.0.1` or `224.0.0.0/24` can still be swept on purpose, but `0.0.0.0/0` means the
/// unicast Internet).
fn reserved_outside((first, last): (u32, u32)) -> Vec<(u32, u32)> {
    RESERVED
        .into_iter()
        .filter(|&(reserved_first, reserved_last)| first < reserved_first || last > reserved_last)
        .collect()
}

/// Reads an exclusion file: one address or CIDR block per line, `#` comments.
pub fn read_exclude_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the exclude file {}", path.display()))?;
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect())
}

/// `Some` when `text` is an address or CIDR block (well-formed or not), `None` for a name.
fn parse_block(text: &str) -> Option<Result<(u32, u32)>> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let looks_numeric = address.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !looks_numeric {
        return None;
    }
    Some((|| {
        let address: Ipv4Addr = address
            .parse()
            .with_context(|| format!("invalid address '{text}'"))?;
        let prefix: u32 = match prefix {
            None => 32,
            Some(prefix) => match prefix.parse() {
                Ok(bits) if bits <= 32 => bits,
                _ => bail!("invalid CIDR block '{text}': the prefix length must be 0 to 32"),
            },
        };
        let host_bits = 32 - prefix;
        let mask = if host_bits == 32 {
            0
        } else {
            u32::MAX << host_bits
        };
        let first = u32::from(address) & mask;
        Ok((first, first | !mask))
    })())
}

/// Sorts ranges and joins those that overlap or touch.
fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(previous) if u64::from(first) <= u64::from(previous.1) + 1 => {
                previous.1 = previous.1.max(last);
            }
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// `ranges` minus `removed`; both sorted and disjoint.
fn subtract(ranges: Vec<(u32, u32)>, removed: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut kept = Vec::with_capacity(ranges.len());
    for (mut first, last) in ranges {
        let mut whole = true;
        for &(cut_first, cut_last) in removed {
            if cut_last < first || cut_first > last {
                continue;
            }
            if cut_first > first {
                kept.push((first, cut_first - 1));
            }
            if cut_last >= last {
                whole = false;
                break;
            }
            first = cut_last + 1;
        }
        if whole {
            kept.push((first, last));
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(targets: &[&str], excluded: &[&str]) -> TargetSet {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        TargetSet::new(&strings(targets), &strings(excluded)).unwrap()
    }

    #[test]
    fn blocks_and_addresses_merge() {
        let targets = set(
            &["198.18.4.0/30", "198.18.4.4", "198.18.4.2", "198.18.9.1"],
            &[],
        );
        assert_eq!(
            targets.ranges,
            [(0xc612_0400, 0xc612_0404), (0xc612_0901, 0xc612_0901)]
        );
        assert_eq!(targets.len(), 6);
        assert_eq!(targets.get(5), Ipv4Addr::new(198, 18, 9, 1));
        assert_eq!(targets.index(Ipv4Addr::new(198, 18, 4, 3)), Some(3));
        assert_eq!(targets.index(Ipv4Addr::new(198, 18, 4, 5)), None);
    }

    #[test]
    fn exclusions_cut_holes() {
        let targets = set(
            &["198.18.4.0/28"],
            &["198.18.4.4/30", "198.18.4.0", "198.18.4.15"],
        );
        let addresses: Vec<u8> = (0..targets.len())
            .map(|i| targets.get(i).octets()[3])
            .collect();
        assert_eq!(addresses, [1, 2, 3, 8, 9, 10, 11, 12, 13, 14]);
        for (i, last) in addresses.iter().enumerate() {
            assert_eq!(
                targets.index(Ipv4Addr::new(198, 18, 4, *last)),
                Some(i as u64)
            );
        }
        assert_eq!(targets.index(Ipv4Addr::new(198, 18, 4, 5)), None);
        assert!(set(&["198.18.4.1"], &["198.18.4.0/24"]).is_empty());
    }

    #[test]
    fn reserved_blocks_are_left_out_unless_targeted_alone() {
        let internet = set(&["0.0.0.0/0"], &[]);
        assert_eq!(internet.len(), (1 << 32) - (1 << 24) * 2 - (1 << 29));
        assert_eq!(internet.first(), Some(Ipv4Addr::new(1, 0, 0, 0)));
        assert_eq!(internet.index(Ipv4Addr::new(127, 0, 0, 1)), None);
        assert_eq!(internet.index(Ipv4Addr::new(255, 255, 255, 255)), None);
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
        let strings = |s: &str| vec![s.to_string()];
        assert!(TargetSet::new(&strings("198.18.4.0/33"), &[]).is_err());
        assert!(TargetSet::new(&strings("198.18.4/24"), &[]).is_err());
        assert!(TargetSet::new(&strings("198.18.4.1"), &strings("nonsense")).is_err());
    }
}
