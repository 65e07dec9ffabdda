//! What a one-target run's probes carry after their transport header: hping3's `-d SIZE` bytes
//! of `X`, or with `-E FILE` the file's contents, SIZE bytes a probe.
use std::sync::Arc;

/// Each probe's data, as hping3 fills it: probe n carries the file's nth chunk of `size` bytes,
/// the last chunk padded with zeros, and after the last the first again; without a file, `size`
/// bytes of `X`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    size: usize,
    /// The chunks one after the other, the last padded: one cycle of what the probes carry.
    cycle: Arc<[u8]>,
}

impl Payload {
    /// `size` bytes of `X` in every probe (hping3's filler).
    pub fn filler(size: usize) -> Payload {
        Payload::from_file(&vec![b'X'; size], size)
    }

    /// Successive `size`-byte chunks of `file` (zeros if it is empty).
    pub fn from_file(file: &[u8], size: usize) -> Payload {
        let padded = file.len().div_ceil(size.max(1)).max(1) * size;
        let mut cycle = file.to_vec();
        cycle.resize(padded, 0);
        Payload {
            size,
            cycle: cycle.into(),
        }
    }

    /// The bytes each probe carries.
    pub fn size(&self) -> usize {
        self.size
    }

    /// What probe `n` carries.
    pub fn of_probe(&self, n: u64) -> &[u8] {
        let chunks = (self.cycle.len() / self.size.max(1)).max(1) as u64;
        let start = (n % chunks) as usize * self.size;
        &self.cycle[start..start + self.size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filler_is_hping3s() {
        let payload = Payload::filler(100);
        assert_eq!(payload.size(), 100);
        assert_eq!(payload.of_probe(0), &[b'X'; 100][..]);
        assert_eq!(payload.of_probe(7), &[b'X'; 100][..]);
        assert!(Payload::default().of_probe(3).is_empty());
        assert!(Payload::filler(0).of_probe(3).is_empty());
    }

    #[test]
    fn a_file_is_sent_in_chunks_round_and_round() {
        let payload = Payload::from_file(b"abcdefg", 3);
        let chunks: Vec<&[u8]> = (0..5).map(|n| payload.of_probe(n)).collect();
        assert_eq!(chunks, [&b"abc"[..], b"def", b"g\0\0", b"abc", b"def"]);
        let exact = Payload::from_file(b"abcdef", 3);
        assert_eq!(
            exact.of_probe(2),
            b"abc",
            "no empty chunk after an exact fit"
        );
        let short = Payload::from_file(b"ab", 4);
        assert_eq!(short.of_probe(1), b"ab\0\0");
        assert!(
            Payload::from_file(b"ab", 0).of_probe(1).is_empty(),
            "-E without -d"
        );
    }
}
