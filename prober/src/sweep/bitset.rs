//! The answer map: one bit per (host, port).
use std::sync::atomic::{AtomicU64, Ordering};

/// One bit per (host, port), set from the reply side and read by the send threads. Its
/// memory is allocated zeroed and only becomes resident where replies set bits.
pub struct BitSet(Box<[AtomicU64]>);

// The cast in BitSet::new relies on this (true on every 64-bit target).
const _: () = assert!(std::mem::align_of::<u64>() == std::mem::align_of::<AtomicU64>());

impl BitSet {
    pub fn new(len: u64) -> BitSet {
        let words = vec![0u64; len.div_ceil(64) as usize].into_boxed_slice();
        // SAFETY: AtomicU64 has the size and bit validity of u64, and (asserted above) its
        // alignment, so a boxed slice of one is a boxed slice of the other with the same layout.
        BitSet(unsafe { Box::from_raw(Box::into_raw(words) as *mut [AtomicU64]) })
    }

    pub fn contains(&self, index: u64) -> bool {
        self.0[(index / 64) as usize].load(Ordering::Relaxed) & (1 << (index % 64)) != 0
    }

    /// Sets the bit; false when it was set already.
    pub fn insert(&self, index: u64) -> bool {
        let bit = 1 << (index % 64);
        self.0[(index / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_set_once_and_stay_apart() {
        let bits = BitSet::new(130);
        for index in [0, 63, 64, 129] {
            assert!(!bits.contains(index));
            assert!(bits.insert(index), "{index} was not set yet");
            assert!(bits.contains(index));
            assert!(!bits.insert(index), "{index} was set already");
        }
        assert!(!bits.contains(1) && !bits.contains(65) && !bits.contains(128));
    }
}
