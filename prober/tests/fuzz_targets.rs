//! Fuzzing target sets: addresses and CIDR blocks minus exclusions. A set that is built holds
//! exactly the addresses of its blocks, less the reserved ranges outside the one a block lies
//! in and less the exclusions; its length is the sum of its ranges, and its lookups agree.
//!
//! Targets are only ever well-formed addresses and blocks, as std prints them: anything else may
//! be taken for a host name, and a name is resolved through the machine's name servers, which
//! no test may ask. Exclusions are never resolved, so they are also garbled. As a second line of
//! defence the harness runs in an empty network namespace of its own (root: as the suite runs),
//! where a lookup cannot leave the machine.

mod fuzzing;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bolero::{check, TypeGenerator};
use prober::sweep::targets::TargetSet;

/// Where a block's address lies: anywhere, among the bed's addresses (so that blocks overlap
/// and touch), or next to a border of the reserved ranges.
#[derive(Clone, Copy, Debug, TypeGenerator)]
enum Place {
    Anywhere(Ipv4Addr),
    Near(u16),
    ReservedBorder(u8, i8),
}

impl Place {
    fn address(self) -> Ipv4Addr {
        let borders: Vec<u32> = RESERVED
            .iter()
            .flat_map(|&(first, last)| [first, last.wrapping_add(1)])
            .collect();
        match self {
            Place::Anywhere(address) => address,
            Place::Near(offset) => Ipv4Addr::from(0xc612_0000 | u32::from(offset)),
            Place::ReservedBorder(border, offset) => Ipv4Addr::from(
                borders[usize::from(border) % borders.len()].wrapping_add_signed(offset.into()),
            ),
        }
    }
}

/// A well-formed address or block, as typed on the command line.
#[derive(Clone, Copy, Debug, TypeGenerator)]
enum Block {
    Address(Place),
    Cidr(Place, #[generator(0..=32)] u8),
}

impl Block {
    fn text(self) -> String {
        match self {
            Block::Address(place) => place.address().to_string(),
            Block::Cidr(place, prefix) => format!("{}/{prefix}", place.address()),
        }
    }

    fn range(self) -> (u32, u32) {
        let (place, prefix) = match self {
            Block::Address(place) => (place, 32),
            Block::Cidr(place, prefix) => (place, u32::from(prefix)),
        };
        let host_bits = u32::MAX.checked_shr(prefix).unwrap_or(0);
        let first = u32::from(place.address()) & !host_bits;
        (first, first | host_bits)
    }
}

/// A block that is refused, or may be: it goes among the exclusions.
#[derive(Clone, Debug, TypeGenerator)]
enum Odd {
    /// Refused: a prefix length above 32.
    LongPrefix(Ipv4Addr, #[generator(33..)] u8),
    /// An IPv6 block: it excludes no IPv4 host (a shared exclude file holds both families); an
    /// IPv4-mapped address, which no IPv6 packet carries, is refused.
    Ipv6(Ipv6Addr, #[generator(0..=128)] u8),
    /// An address with anything after the slash: refused unless it is a prefix length.
    Garbled(Ipv4Addr, String),
}

impl Odd {
    fn text(&self) -> String {
        match self {
            Odd::LongPrefix(address, prefix) => format!("{address}/{prefix}"),
            Odd::Ipv6(address, prefix) => format!("{address}/{prefix}"),
            Odd::Garbled(address, suffix) => format!("{address}/{suffix}"),
        }
    }

    /// Whether it must be refused. A suffix that Rust's integer parser still reads as a
    /// prefix length ("+8", "08", "24") is left open.
    fn is_malformed(&self) -> bool {
        match self {
            Odd::Garbled(_, suffix) => !suffix.parse::<u32>().is_ok_and(|prefix| prefix <= 32),
            Odd::Ipv6(address, _) => address.to_ipv4_mapped().is_some(),
            Odd::LongPrefix(..) => true,
        }
    }
}

/// 0/8, 127/8 and 224/3 to 255.255.255.255: cut out of every block that does not lie inside one.
const RESERVED: [(u32, u32); 3] = [
    (0x0000_0000, 0x00ff_ffff),
    (0x7f00_0000, 0x7fff_ffff),
    (0xe000_0000, 0xffff_ffff),
];

fn contains((first, last): (u32, u32), address: u32) -> bool {
    first <= address && address <= last
}

/// Whether `address` belongs in the set of `targets` minus `excluded` (all well-formed IPv4).
fn expected_member(targets: &[(u32, u32)], excluded: &[(u32, u32)], address: u32) -> bool {
    let targeted = targets.iter().any(|&block| {
        contains(block, address)
            && !RESERVED.iter().any(|&reserved| {
                contains(reserved, address)
                    && !(contains(reserved, block.0) && contains(reserved, block.1))
            })
    });
    targeted && !excluded.iter().any(|&block| contains(block, address))
}

/// The set's lookups take addresses; the harness counts in numbers.
fn at(address: u32) -> IpAddr {
    Ipv4Addr::from(address).into()
}

fn ipv4(address: IpAddr) -> u32 {
    match address {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => panic!("an IPv6 address {v6} in an IPv4 set"),
    }
}

/// The set's ranges as its public lookups give them, checked to be what ranges must be:
/// ascending, apart, each contiguous, together as long as the set.
fn ranges_of(set: &TargetSet) -> Vec<(u32, u32)> {
    let starts: Vec<u32> = set.range_starts().map(ipv4).collect();
    assert_eq!(set.first().map(ipv4), starts.first().copied());
    assert_eq!(set.is_empty(), starts.is_empty());
    let mut ranges = Vec::with_capacity(starts.len());
    let mut total: u64 = 0;
    for (i, &start) in starts.iter().enumerate() {
        let first_index = set.index(at(start)).expect("a range's start is in the set");
        assert_eq!(
            first_index, total,
            "range {i} starts after the ones before it"
        );
        let end_index = match starts.get(i + 1) {
            Some(&next) => set.index(at(next)).expect("the next range's start") - 1,
            None => set.len() - 1,
        };
        assert_eq!(ipv4(set.get(first_index)), start);
        let last = ipv4(set.get(end_index));
        assert_eq!(
            u64::from(last - start),
            end_index - first_index,
            "range {i} holds every address from its first to its last"
        );
        if let Some(&previous_last) = ranges.last().map(|(_, last): &(u32, u32)| last) {
            assert!(
                previous_last + 1 < start,
                "ranges are merged when they touch"
            );
        }
        for outside in [start.checked_sub(1), last.checked_add(1)]
            .into_iter()
            .flatten()
        {
            assert_eq!(set.index(at(outside)), None, "{outside:#x} borders a range");
        }
        total += u64::from(last - start) + 1;
        ranges.push((start, last));
    }
    assert_eq!(set.len(), total, "the length is the sum of the ranges");
    ranges
}

/// Puts the calling thread into a new, empty network namespace, if the process may.
fn isolate_network() {
    // SAFETY: plain syscall; it changes only the calling thread's network namespace.
    let _ = unsafe { libc::unshare(libc::CLONE_NEWNET) };
}

#[test]
fn a_target_set_holds_its_blocks_less_the_reserved_and_the_excluded() {
    isolate_network();
    check!()
        .with_type::<(Vec<Block>, Vec<Block>, Option<(Odd, usize)>)>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|(targets, excluded, odd)| {
            let mut excluded_texts: Vec<String> = excluded.iter().map(|b| b.text()).collect();
            if let Some((odd, position)) = odd {
                excluded_texts.insert(position % (excluded_texts.len() + 1), odd.text());
            }
            let targets_texts: Vec<String> = targets.iter().map(|b| b.text()).collect();
            let set = match TargetSet::new(&targets_texts, &excluded_texts, None) {
                Ok(set) => set,
                Err(error) => {
                    assert!(odd.is_some(), "well-formed blocks were refused: {error:#}");
                    return;
                }
            };
            let ranges = ranges_of(&set);
            match odd {
                Some((odd, _)) if odd.is_malformed() => {
                    panic!("a malformed exclusion {:?} was taken", odd.text())
                }
                // The other family's: the set must be as if it were not there.
                Some((Odd::Ipv6(..), _)) => {}
                // Taken as a prefix length: which one is not this harness's to say.
                Some(_) => return,
                None => {}
            }
            let targets: Vec<(u32, u32)> = targets.iter().map(|b| b.range()).collect();
            let excluded: Vec<(u32, u32)> = excluded.iter().map(|b| b.range()).collect();
            // Every border of a block, a reserved range or a range of the set: where an
            // off-by-one would show.
            let borders = targets
                .iter()
                .chain(&excluded)
                .chain(&RESERVED)
                .chain(&ranges)
                .flat_map(|&(first, last)| {
                    [
                        first.checked_sub(1),
                        Some(first),
                        Some(last),
                        last.checked_add(1),
                    ]
                })
                .flatten();
            for address in borders {
                assert_eq!(
                    set.index(at(address)).is_some(),
                    expected_member(&targets, &excluded, address),
                    "{}",
                    Ipv4Addr::from(address)
                );
            }
        });
}
