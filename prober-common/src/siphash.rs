//! SipHash-2-4 (Aumasson and Bernstein), written for the eBPF verifier as much as for
//! userspace: the message length is a constant, so every loop has a bound it can see.

/// SipHash-2-4 of an `N`-byte message under `key`.
#[inline(always)]
pub fn siphash_2_4<const N: usize>(key: [u64; 2], message: &[u8; N]) -> u64 {
    const { assert!(N < 72, "at most 8 whole blocks") };
    let whole_blocks = N / 8;
    let mut blocks = [0u64; 8];
    for (block, word) in blocks.iter_mut().enumerate().take(whole_blocks) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&message[block * 8..block * 8 + 8]);
        *word = u64::from_le_bytes(bytes);
    }
    let mut last = [0u8; 8];
    last[..N % 8].copy_from_slice(&message[whole_blocks * 8..]);
    siphash_2_4_blocks(key, &blocks[..whole_blocks], u64::from_le_bytes(last), N)
}

/// SipHash-2-4 of a `len`-byte message given as its whole 8-byte blocks (little-endian) and
/// the bytes after them in `tail`: the form the eBPF programs hash in, as a byte array held
/// in registers is spilled to the stack a word per byte.
#[inline(always)]
pub fn siphash_2_4_blocks(key: [u64; 2], blocks: &[u64], tail: u64, len: usize) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    for &block in blocks {
        compress(&mut v, block);
    }
    // The last block holds the remaining bytes and the message length in its top byte.
    compress(&mut v, tail | ((len as u64) << 56));
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline(always)]
fn compress(v: &mut [u64; 4], block: u64) {
    v[3] ^= block;
    sip_round(v);
    sip_round(v);
    v[0] ^= block;
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use core::hash::Hasher as _;

    use super::*;

    fn reference(key: [u64; 2], message: &[u8]) -> u64 {
        let mut hasher = siphasher::sip::SipHasher24::new_with_keys(key[0], key[1]);
        hasher.write(message);
        hasher.finish()
    }

    fn check<const N: usize>() {
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        for seed in 0u8..=255 {
            let message: [u8; N] =
                core::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8));
            assert_eq!(
                siphash_2_4(key, &message),
                reference(key, &message),
                "{N} bytes, seed {seed}"
            );
        }
    }

    #[test]
    fn matches_the_reference_implementation() {
        // The two lengths the cookies use, and the edges of a block.
        check::<12>();
        check::<36>();
        check::<0>();
        check::<8>();
        check::<15>();
    }
}
