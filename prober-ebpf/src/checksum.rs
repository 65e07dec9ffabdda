//! The Internet checksum (RFC 1071), for headers the XDP program rewrites.

/// The sum of 16-bit words, not yet folded.
#[inline(always)]
pub fn sum_words(words: &[u16]) -> u32 {
    let mut sum = 0;
    for &word in words {
        sum += u32::from(word);
    }
    sum
}

/// Folds a sum of 16-bit words into the checksum field's value.
#[inline(always)]
pub fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
