//! The order of a sweep: a keyed pseudo-random permutation of `0..len` (a balanced Feistel
//! network with cycle walking, as masscan does), so that consecutive probes go to unrelated
//! (host, port) pairs and no host sees a burst of neighbouring ports. Nothing is stored:
//! position i maps to its target on demand, whatever the sweep's size, and a target back to
//! its position (which times its reply).
use prober_common::siphash_2_4;

const ROUNDS: usize = 4;

#[derive(Clone, Debug)]
pub struct Permutation {
    len: u64,
    half_bits: u32,
    round_keys: [u64; ROUNDS],
}

impl Permutation {
    pub fn new(len: u64, key: [u64; 2]) -> Permutation {
        // The Feistel domain is the smallest even power of two holding len (at least 4), so
        // cycle walking needs fewer than four steps on average.
        let bits = (64 - len.saturating_sub(1).leading_zeros()).max(2);
        let round_keys = std::array::from_fn(|round| siphash_2_4(key, &[round as u8; 12]));
        Permutation {
            len,
            half_bits: bits.div_ceil(2),
            round_keys,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The element at `position` (< len).
    pub fn get(&self, position: u64) -> u64 {
        debug_assert!(position < self.len);
        self.walk(position, Permutation::encrypt)
    }

    /// The position of `element` (< len): [`Permutation::get`] undone, the Feistel rounds
    /// backwards and the cycle walked the other way.
    pub fn position_of(&self, element: u64) -> u64 {
        debug_assert!(element < self.len);
        self.walk(element, Permutation::decrypt)
    }

    /// Applies `step` until the value is back in 0..len: cycle walking, which keeps the
    /// mapping a bijection on 0..len (and its inverse one too).
    #[inline(always)]
    fn walk(&self, start: u64, step: fn(&Permutation, u64) -> u64) -> u64 {
        let mut value = start;
        loop {
            value = step(self, value);
            if value < self.len {
                return value;
            }
        }
    }

    fn encrypt(&self, value: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (value >> self.half_bits, value & mask);
        for key in self.round_keys {
            (left, right) = (right, left ^ (mix(right ^ key) & mask));
        }
        (left << self.half_bits) | right
    }

    fn decrypt(&self, value: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (value >> self.half_bits, value & mask);
        for key in self.round_keys.iter().rev() {
            (left, right) = (right ^ (mix(left ^ key) & mask), left);
        }
        (left << self.half_bits) | right
    }
}

/// SplitMix64's finaliser: a cheap round function that spreads every input bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_appears_exactly_once() {
        for len in [1u64, 2, 3, 4, 5, 17, 1000, 65535, 65535 * 3] {
            let permutation = Permutation::new(len, [7, 11]);
            let mut seen = vec![false; len as usize];
            for position in 0..len {
                let value = permutation.get(position);
                assert!(!seen[value as usize], "len {len}: {value} twice");
                seen[value as usize] = true;
            }
        }
    }

    #[test]
    fn position_of_undoes_get() {
        for len in [1u64, 2, 3, 5, 17, 1000, 65535, (1 << 33) - 7] {
            let permutation = Permutation::new(len, [7, 11]);
            let probes = len.min(5000);
            for position in (0..probes).chain((len - probes.min(len)..len).rev().take(100)) {
                let element = permutation.get(position);
                assert_eq!(permutation.position_of(element), position, "len {len}");
            }
        }
    }

    #[test]
    fn the_key_picks_the_order_and_neighbours_scatter() {
        let first: Vec<u64> = (0..64)
            .map(|i| Permutation::new(65535, [1, 2]).get(i))
            .collect();
        let again: Vec<u64> = (0..64)
            .map(|i| Permutation::new(65535, [1, 2]).get(i))
            .collect();
        let other: Vec<u64> = (0..64)
            .map(|i| Permutation::new(65535, [1, 3]).get(i))
            .collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        let adjacent = first
            .windows(2)
            .filter(|pair| pair[0].abs_diff(pair[1]) <= 1)
            .count();
        assert!(
            adjacent < 4,
            "{adjacent} consecutive pairs out of 63: {first:?}"
        );
    }
}
