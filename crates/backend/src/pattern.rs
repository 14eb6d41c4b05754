//! The deterministic capture pattern.
//!
//! A capture stream whose source is the pattern delivers an endless byte stream that depends only
//! on a 64-bit seed and the byte's offset since the stream's OPEN: READ requests get consecutive
//! slices of it, in the order they are served. The generator:
//!
//! ```text
//! key      = splitmix64(seed)
//! word(k)  = splitmix64(key ^ k)                    (k = offset / 8)
//! byte(n)  = little-endian byte (n % 8) of word(n / 8)
//! splitmix64(z): z += 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
//!                z = (z ^ z>>27) * 0x94D049BB133111EB; z ^ z>>31      (wrapping arithmetic)
//! ```
//!
//! `splitmix64` is a bijection of `u64`, so the 8-byte words never repeat within 2^64 words (the
//! stream does not repeat for as long as anyone can listen), and different seeds give unrelated
//! streams. The seed of a stream is [`stream_seed`] of its [`StreamId`]. Being format-agnostic,
//! the bytes are white noise at any sample format: listen at low volume.

use crate::ids::StreamId;

/// One step of the SplitMix64 generator (a bijective 64-bit mixer).
pub const fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The pattern seed of a stream: `fe << 48 | (dev & 0xffff) << 32 | (pcm & 0xffff) << 16 |
/// (stream & 0xffff)`.
pub fn stream_seed(id: StreamId) -> u64 {
    (u64::from(id.fe) << 48)
        | ((u64::from(id.dev) & 0xffff) << 32)
        | ((u64::from(id.pcm) & 0xffff) << 16)
        | (u64::from(id.stream) & 0xffff)
}

/// Fills `out` with the pattern bytes `offset .. offset + out.len()` of the stream with `seed`.
pub fn pattern_fill(seed: u64, offset: u64, out: &mut [u8]) {
    let key = splitmix64(seed);
    let mut n = offset;
    let mut i = 0usize;
    while i < out.len() {
        let word = splitmix64(key ^ (n / 8)).to_le_bytes();
        let start = usize::try_from(n % 8).unwrap_or(0);
        for b in word.iter().skip(start) {
            let Some(slot) = out.get_mut(i) else {
                return;
            };
            *slot = *b;
            i += 1;
            n = n.wrapping_add(1);
        }
    }
}

/// The pattern bytes `offset .. offset + len` of the stream with `seed`, as a vector.
pub fn pattern_bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    pattern_fill(seed, offset, &mut v);
    v
}

/// SHA-256 (lower-case hex) of the pattern bytes `offset .. offset + len` of the stream with
/// `seed`: what a capture of `len` bytes from the stream's OPEN on (`offset` 0) must hash to.
/// Computed in 64 KiB pieces, so `len` may be large.
pub fn pattern_sha256_hex(seed: u64, offset: u64, len: u64) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from((len - done).min(1 << 16)).unwrap_or(1 << 16);
        let chunk = buf.get_mut(..n).unwrap_or(&mut []);
        pattern_fill(seed, offset.wrapping_add(done), chunk);
        hasher.update(&*chunk);
        done += n as u64;
    }
    crate::media::hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_agree_with_the_whole_at_any_split() {
        let whole = pattern_bytes(42, 0, 100);
        for split in 0..100u64 {
            let a = pattern_bytes(42, 0, usize::try_from(split).unwrap_or(0));
            let b = pattern_bytes(42, split, 100 - usize::try_from(split).unwrap_or(0));
            let mut joined = a;
            joined.extend_from_slice(&b);
            assert_eq!(joined, whole, "split at {split}");
        }
    }

    #[test]
    fn known_values_and_seed_dependence() {
        // splitmix64(0) is the generator's well-known first output for state 0.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        let key = splitmix64(7);
        let w0 = splitmix64(key).to_le_bytes();
        assert_eq!(pattern_bytes(7, 0, 8), w0.to_vec());
        assert_ne!(pattern_bytes(7, 0, 64), pattern_bytes(8, 0, 64));
        // Far offsets work and differ from the start.
        assert_ne!(pattern_bytes(7, 1 << 40, 64), pattern_bytes(7, 0, 64));
    }

    #[test]
    fn pattern_hash_matches_the_bytes_across_chunk_borders() {
        use sha2::{Digest, Sha256};
        for (offset, len) in [(0u64, 0usize), (0, 1), (3, 70_000), (1 << 16, 131_073)] {
            let want = crate::media::hex(&Sha256::digest(pattern_bytes(9, offset, len)));
            assert_eq!(
                pattern_sha256_hex(9, offset, len as u64),
                want,
                "{offset}+{len}"
            );
        }
        assert_ne!(pattern_sha256_hex(9, 0, 64), pattern_sha256_hex(10, 0, 64));
    }

    #[test]
    fn seeds_are_distinct_per_stream() {
        let a = stream_seed(StreamId::new(1, 0, 0, 1));
        let b = stream_seed(StreamId::new(1, 0, 1, 0));
        let c = stream_seed(StreamId::new(2, 0, 0, 1));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, (1u64 << 48) | 1);
    }
}
