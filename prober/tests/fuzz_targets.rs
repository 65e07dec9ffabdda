//! Fuzzing target sets of either family: addresses and CIDR blocks minus exclusions. A set that
//! is built holds exactly the addresses of its blocks, less the reserved ranges outside the one a
//! block lies in (IPv4's 0/8, 127/8 and 224/3; IPv6's ::/127, fe80::/10 and ff00::/8), less
//! IPv4's addresses in an IPv6 set, and less the exclusions; its length is the sum of its ranges
//! and the count of those addresses, and its lookups agree. A set that is refused holds more
//! addresses than a sweep may probe, or a block that is refused wherever it is typed.
//!
//! Targets are only ever well-formed addresses and blocks, as std prints them: anything else may
//! be taken for a host name, and a name is resolved through the machine's name servers, which
//! no test may ask. Exclusions are never resolved, so they are also garbled. As a second line of
//! defence the harness runs in an empty network namespace of its own (root: as the suite runs),
//! where a lookup cannot leave the machine.

mod fuzzing;

use std::fmt::{Debug, Display};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bolero::{check, TypeGenerator};
use prober::sweep::{targets::TargetSet, MAX_PROBES};

/// An address family as the harness counts it: each address a number (IPv4's in 32 bits), and
/// the ranges of numbers a set of the family treats apart.
trait Family: Copy + Debug + Display + TypeGenerator + Into<IpAddr> {
    /// The other family: its blocks among the exclusions exclude nothing from this one's set.
    type Other: Family;
    const BITS: u32;
    /// Cut out of every block that does not lie inside one.
    const RESERVED: &'static [(u128, u128)];
    /// Never in a set of the family, whatever the blocks (IPv6's IPv4-mapped addresses).
    const FOREIGN: &'static [(u128, u128)];
    /// The highest number.
    const MAX: u128 = u128::MAX >> (128 - Self::BITS);

    fn number(self) -> u128;
    fn from_number(number: u128) -> Self;
    fn of(address: IpAddr) -> Option<Self>;
    /// Among the bed's addresses, so that blocks overlap and touch.
    fn near(offset: u16) -> u128;
    /// A CIDR block's prefix length, from any number (IPv6's larger blocks are
    /// [`Block::Windowed`]'s, which exclusions cut down).
    fn cidr_prefix(raw: u8) -> u32;
    /// Refused wherever it is typed.
    fn is_refused(self) -> bool;
    /// The zone a block of these addresses is typed with: the loopback interface's, which
    /// every namespace has, for a link-local block (a target needs one).
    fn zone(range: (u128, u128)) -> &'static str;
}

/// fe80::/10, whose targets need a zone.
const LINK_LOCAL: (u128, u128) = (0xfe80 << 112, (0xfe80 << 112) | ((1 << 118) - 1));

impl Family for Ipv4Addr {
    type Other = Ipv6Addr;
    const BITS: u32 = 32;
    /// 0/8, 127/8 and 224/3 to 255.255.255.255.
    const RESERVED: &'static [(u128, u128)] = &[
        (0x0000_0000, 0x00ff_ffff),
        (0x7f00_0000, 0x7fff_ffff),
        (0xe000_0000, 0xffff_ffff),
    ];
    const FOREIGN: &'static [(u128, u128)] = &[];

    fn number(self) -> u128 {
        u32::from(self).into()
    }

    fn from_number(number: u128) -> Self {
        Ipv4Addr::from(u32::try_from(number).expect("an IPv4 address"))
    }

    fn of(address: IpAddr) -> Option<Self> {
        match address {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }
    }

    fn near(offset: u16) -> u128 {
        0xc612_0000 | u128::from(offset)
    }

    fn cidr_prefix(raw: u8) -> u32 {
        u32::from(raw) % 33
    }

    fn is_refused(self) -> bool {
        false
    }

    fn zone(_: (u128, u128)) -> &'static str {
        ""
    }
}

impl Family for Ipv6Addr {
    type Other = Ipv4Addr;
    const BITS: u32 = 128;
    /// ::/127, fe80::/10 and ff00::/8.
    const RESERVED: &'static [(u128, u128)] = &[(0, 1), LINK_LOCAL, (0xff << 120, u128::MAX)];
    /// ::ffff:0:0/96.
    const FOREIGN: &'static [(u128, u128)] = &[(0xffff << 32, 0xffff_ffff_ffff)];

    fn number(self) -> u128 {
        self.into()
    }

    fn from_number(number: u128) -> Self {
        number.into()
    }

    fn of(address: IpAddr) -> Option<Self> {
        match address {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        }
    }

    /// 2001:db8::/104.
    fn near(offset: u16) -> u128 {
        (0x2001_0db8 << 96) | (u128::from(offset) << 8)
    }

    /// /104 to /128: even 64 of them fit a sweep.
    fn cidr_prefix(raw: u8) -> u32 {
        128 - u32::from(raw) % 25
    }

    /// An IPv4-mapped address, which no IPv6 packet carries.
    fn is_refused(self) -> bool {
        self.to_ipv4_mapped().is_some()
    }

    fn zone((first, last): (u128, u128)) -> &'static str {
        if contains(LINK_LOCAL, first) && contains(LINK_LOCAL, last) {
            "%lo"
        } else {
            ""
        }
    }
}

/// Where a block's address lies: anywhere, among the bed's addresses (so that blocks overlap
/// and touch), or next to a border of the ranges a set treats apart: on either side of a
/// reserved range's, outside a foreign range's (an address in it is refused).
#[derive(Clone, Copy, Debug, TypeGenerator)]
enum Place<A: Family> {
    Anywhere(A),
    Near(u16),
    ReservedBorder(u8, i8),
}

impl<A: Family> Place<A> {
    fn address(self) -> A {
        match self {
            Place::Anywhere(address) => address,
            Place::Near(offset) => A::from_number(A::near(offset)),
            Place::ReservedBorder(border, offset) => {
                let (offset, distance) = (i128::from(offset), u128::from(offset.unsigned_abs()));
                let near: Vec<u128> = A::RESERVED
                    .iter()
                    .flat_map(|&(first, last)| [first, last.wrapping_add(1)])
                    .map(|border| border.wrapping_add_signed(offset))
                    .chain(
                        A::FOREIGN
                            .iter()
                            .flat_map(|&(first, last)| [first - 1 - distance, last + 1 + distance]),
                    )
                    .collect();
                A::from_number(near[usize::from(border) % near.len()] & A::MAX)
            }
        }
    }
}

/// A well-formed address or block, as typed on the command line.
#[derive(Clone, Copy, Debug, TypeGenerator)]
enum Block<A: Family> {
    Address(Place<A>),
    Cidr(Place<A>, u8),
    /// A block of any size (its prefix length from the first number), and as many exclusions
    /// as it takes to leave only the part of it around its address that the second number
    /// says (up to 40 bits of hosts: sometimes more than a sweep may probe).
    Windowed(Place<A>, u8, u8),
}

impl<A: Family> Block<A> {
    /// The address typed, and the prefix length.
    fn parts(self) -> (A, u32) {
        match self {
            Block::Address(place) => (place.address(), A::BITS),
            Block::Cidr(place, prefix) => (place.address(), A::cidr_prefix(prefix)),
            Block::Windowed(place, prefix, _) => {
                (place.address(), u32::from(prefix) % (A::BITS + 1))
            }
        }
    }

    fn text(self) -> String {
        let (address, prefix) = self.parts();
        match self {
            Block::Address(_) => format!("{address}{}", A::zone(self.range())),
            _ => typed(address, prefix),
        }
    }

    fn range(self) -> (u128, u128) {
        let (address, prefix) = self.parts();
        block_of::<A>(address.number(), prefix)
    }

    /// The prefix length of what of a windowed block its exclusions leave.
    fn window_prefix(self) -> Option<u32> {
        let Block::Windowed(_, _, host_bits) = self else {
            return None;
        };
        let (_, prefix) = self.parts();
        Some(
            A::BITS
                .saturating_sub(u32::from(host_bits) % 41)
                .max(prefix),
        )
    }

    /// The blocks of all but the window of a windowed block, one per prefix length from the
    /// block's down to the window's (each the other half of the one before it, the half that
    /// does not hold the window); none that lies within the addresses the family's sets never
    /// hold.
    fn window_exclusions(self) -> Vec<String> {
        let Some(window_prefix) = self.window_prefix() else {
            return Vec::new();
        };
        let (address, prefix) = self.parts();
        (prefix + 1..=window_prefix)
            .map(|length| {
                let other_half = address.number() ^ (1 << (A::BITS - length));
                (length, block_of::<A>(other_half, length))
            })
            .filter(|&(_, (first, last))| {
                !A::FOREIGN
                    .iter()
                    .any(|&foreign| contains(foreign, first) && contains(foreign, last))
            })
            .map(|(length, (first, _))| typed(A::from_number(first), length))
            .collect()
    }

    /// What the window exclusions exclude: the block less its window.
    fn window_excluded(self) -> Vec<(u128, u128)> {
        let Some(window_prefix) = self.window_prefix() else {
            return Vec::new();
        };
        let (block_first, block_last) = self.range();
        let (first, last) = block_of::<A>(self.parts().0.number(), window_prefix);
        let before = (block_first < first).then(|| (block_first, first - 1));
        let after = (last < block_last).then(|| (last + 1, block_last));
        before.into_iter().chain(after).collect()
    }
}

/// A CIDR block as typed: `address`, its zone if it needs one, and the prefix length.
fn typed<A: Family>(address: A, prefix: u32) -> String {
    let zone = A::zone(block_of::<A>(address.number(), prefix));
    format!("{address}{zone}/{prefix}")
}

/// The block of `prefix` bits that holds `number`.
fn block_of<A: Family>(number: u128, prefix: u32) -> (u128, u128) {
    let host_bits = A::MAX.checked_shr(prefix).unwrap_or(0);
    (number & !host_bits, number | host_bits)
}

/// A block that is refused, or may be: it goes among the exclusions.
#[derive(Clone, Debug, TypeGenerator)]
enum Odd<A: Family> {
    /// Refused: a prefix length beyond the family's bits.
    LongPrefix(A, u8),
    /// A block of the other family: it excludes no host of this one (a shared exclude file
    /// holds both); refused if its address is.
    OtherFamily(A::Other, u8),
    /// An address with anything after the slash: refused unless it is a prefix length.
    Garbled(A, String),
    /// Refused: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), which no IPv6 packet carries
    /// (prober keeps IPv4 addresses in this form: taken, it would exclude an IPv4 host).
    Mapped(Ipv4Addr, u8),
}

/// What must become of a set with an [`Odd`] exclusion.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    Refused,
    /// As if it were not there.
    Ignored,
    /// Taken as a prefix length: which one is not this harness's to say.
    Open,
}

impl<A: Family> Odd<A> {
    fn text(&self) -> String {
        match self {
            Odd::LongPrefix(address, prefix) => {
                format!("{address}/{}", A::BITS + 1 + u32::from(*prefix))
            }
            Odd::OtherFamily(address, prefix) => {
                format!("{address}/{}", u32::from(*prefix) % (A::Other::BITS + 1))
            }
            Odd::Garbled(address, suffix) => format!("{address}/{suffix}"),
            Odd::Mapped(address, prefix) => {
                format!("{}/{}", address.to_ipv6_mapped(), prefix % 129)
            }
        }
    }

    /// A suffix that Rust's integer parser still reads as a prefix length ("+8", "08",
    /// "24") is left open.
    fn verdict(&self) -> Verdict {
        match self {
            Odd::LongPrefix(..) | Odd::Mapped(..) => Verdict::Refused,
            Odd::OtherFamily(address, _) if address.is_refused() => Verdict::Refused,
            Odd::OtherFamily(..) => Verdict::Ignored,
            Odd::Garbled(address, _) if address.is_refused() => Verdict::Refused,
            Odd::Garbled(_, suffix) if suffix.parse::<u32>().is_ok_and(|p| p <= A::BITS) => {
                Verdict::Open
            }
            Odd::Garbled(..) => Verdict::Refused,
        }
    }
}

/// What one run of the harness feeds a set of one family.
#[derive(Clone, Debug, TypeGenerator)]
struct Sets<A: Family> {
    targets: Vec<Block<A>>,
    excluded: Vec<Block<A>>,
    odd: Option<(Odd<A>, usize)>,
}

#[derive(Clone, Debug, TypeGenerator)]
enum Input {
    V4(Sets<Ipv4Addr>),
    V6(Sets<Ipv6Addr>),
}

fn contains((first, last): (u128, u128), address: u128) -> bool {
    first <= address && address <= last
}

/// Whether `address` belongs in the set of `targets` minus `excluded` (all well-formed).
fn expected_member<A: Family>(
    targets: &[(u128, u128)],
    excluded: &[(u128, u128)],
    address: u128,
) -> bool {
    let targeted = targets.iter().any(|&block| {
        contains(block, address)
            && !A::RESERVED.iter().any(|&reserved| {
                contains(reserved, address)
                    && !(contains(reserved, block.0) && contains(reserved, block.1))
            })
    });
    let foreign = A::FOREIGN.iter().any(|&range| contains(range, address));
    targeted && !foreign && !excluded.iter().any(|&block| contains(block, address))
}

/// How many addresses belong in the set: membership changes only at the borders of the
/// blocks and ranges, so each stretch between two borders counts whole or not at all.
fn expected_len<A: Family>(targets: &[(u128, u128)], excluded: &[(u128, u128)]) -> u128 {
    let mut borders: Vec<u128> = targets
        .iter()
        .chain(excluded)
        .chain(A::RESERVED)
        .chain(A::FOREIGN)
        .flat_map(|&(first, last)| [Some(first), last.checked_add(1)])
        .flatten()
        .filter(|&border| border <= A::MAX)
        .chain([0])
        .collect();
    borders.sort_unstable();
    borders.dedup();
    let ends = borders.iter().skip(1).map(|&next| next - 1).chain([A::MAX]);
    borders
        .iter()
        .zip(ends)
        .filter(|&(&first, _)| expected_member::<A>(targets, excluded, first))
        .map(|(&first, last)| last - first + 1)
        .sum()
}

/// The set's lookups take addresses; the harness counts in numbers.
fn at<A: Family>(number: u128) -> IpAddr {
    A::from_number(number).into()
}

fn number<A: Family>(address: IpAddr) -> u128 {
    A::of(address)
        .unwrap_or_else(|| panic!("{address} in a set of the other family"))
        .number()
}

/// The numbers next to `(first, last)` within the family's.
fn around<A: Family>((first, last): (u128, u128)) -> [Option<u128>; 4] {
    let after = last.checked_add(1).filter(|&next| next <= A::MAX);
    [first.checked_sub(1), Some(first), Some(last), after]
}

/// The set's ranges as its public lookups give them, checked to be what ranges must be:
/// ascending, apart, each contiguous, together as long as the set.
fn ranges_of<A: Family>(set: &TargetSet) -> Vec<(u128, u128)> {
    let starts: Vec<u128> = set.range_starts().map(number::<A>).collect();
    assert_eq!(set.first().map(number::<A>), starts.first().copied());
    assert_eq!(set.is_empty(), starts.is_empty());
    let mut ranges = Vec::with_capacity(starts.len());
    let mut total: u64 = 0;
    for (i, &start) in starts.iter().enumerate() {
        let first_index = set
            .index(at::<A>(start))
            .expect("a range's start is in the set");
        assert_eq!(
            first_index, total,
            "range {i} starts after the ones before it"
        );
        let end_index = match starts.get(i + 1) {
            Some(&next) => set.index(at::<A>(next)).expect("the next range's start") - 1,
            None => set.len() - 1,
        };
        assert_eq!(number::<A>(set.get(first_index)), start);
        let last = number::<A>(set.get(end_index));
        assert_eq!(
            last - start,
            u128::from(end_index - first_index),
            "range {i} holds every address from its first to its last"
        );
        if let Some(&previous_last) = ranges.last().map(|(_, last): &(u128, u128)| last) {
            assert!(
                previous_last + 1 < start,
                "ranges are merged when they touch"
            );
        }
        for outside in [start.checked_sub(1), last.checked_add(1)]
            .into_iter()
            .flatten()
            .filter(|&outside| outside <= A::MAX)
        {
            assert_eq!(
                set.index(at::<A>(outside)),
                None,
                "{outside:#x} borders a range"
            );
        }
        total += u64::try_from(last - start).expect("a range within a sweep's limit") + 1;
        ranges.push((start, last));
    }
    assert_eq!(set.len(), total, "the length is the sum of the ranges");
    ranges
}

fn check_sets<A: Family>(sets: &Sets<A>) {
    let Sets {
        targets,
        excluded,
        odd,
    } = sets;
    let mut excluded_texts: Vec<String> = excluded
        .iter()
        .map(|b| b.text())
        .chain(targets.iter().flat_map(|b| b.window_exclusions()))
        .collect();
    if let Some((odd, position)) = odd {
        excluded_texts.insert(position % (excluded_texts.len() + 1), odd.text());
    }
    let targets_texts: Vec<String> = targets.iter().map(|b| b.text()).collect();
    let verdict = odd.as_ref().map(|(odd, _)| odd.verdict());
    let refused_block = targets
        .iter()
        .chain(excluded)
        .any(|b| b.parts().0.is_refused());
    let target_ranges: Vec<(u128, u128)> = targets.iter().map(|b| b.range()).collect();
    let excluded_ranges: Vec<(u128, u128)> = excluded
        .iter()
        .map(|b| b.range())
        .chain(targets.iter().flat_map(|b| b.window_excluded()))
        .collect();
    let len = expected_len::<A>(&target_ranges, &excluded_ranges);
    let too_many = len > u128::from(MAX_PROBES);
    let set = match TargetSet::new(&targets_texts, &excluded_texts, None) {
        Ok(set) => set,
        Err(error) => {
            assert!(
                refused_block || verdict.is_some_and(|v| v != Verdict::Ignored) || too_many,
                "well-formed blocks holding {len} addresses were refused: {error:#}"
            );
            return;
        }
    };
    let ranges = ranges_of::<A>(&set);
    assert!(!refused_block, "a block that is refused was taken");
    match verdict {
        Some(Verdict::Refused) => panic!("a malformed exclusion was taken"),
        Some(Verdict::Open) => return,
        Some(Verdict::Ignored) | None => {}
    }
    assert!(!too_many, "a set of {len} addresses was taken");
    assert_eq!(u128::from(set.len()), len, "the set's length");
    // Every border of a block, a range set apart or a range of the set: where an off-by-one
    // would show.
    let borders = target_ranges
        .iter()
        .chain(&excluded_ranges)
        .chain(A::RESERVED)
        .chain(A::FOREIGN)
        .chain(&ranges)
        .flat_map(|&range| around::<A>(range))
        .flatten();
    for address in borders {
        assert_eq!(
            set.index(at::<A>(address)).is_some(),
            expected_member::<A>(&target_ranges, &excluded_ranges, address),
            "{}",
            A::from_number(address)
        );
    }
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
        .with_type::<Input>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|input| match input {
            Input::V4(sets) => check_sets(sets),
            Input::V6(sets) => check_sets(sets),
        });
}
