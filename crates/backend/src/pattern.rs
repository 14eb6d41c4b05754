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

/// The inverse of [`splitmix64`]: `unsplitmix64(splitmix64(z)) == z` for every `z`.
///
/// With it a recorded 8-byte word `w` of the pattern of `seed` gives its word index back:
/// `k = unsplitmix64(w) ^ splitmix64(seed)` ([`locate`] uses this).
pub const fn unsplitmix64(z: u64) -> u64 {
    let mut z = unxorshift(z, 31);
    z = unxorshift(z.wrapping_mul(MUL2_INV), 27);
    z = unxorshift(z.wrapping_mul(MUL1_INV), 30);
    z.wrapping_sub(0x9E37_79B9_7F4A_7C15)
}

/// The inverse of `x ^ (x >> s)` (for `s >= 1`): `y ^ y>>s ^ y>>2s ^ …`, by doubling.
const fn unxorshift(y: u64, s: u32) -> u64 {
    let mut x = y;
    let mut sh = s;
    while sh < 64 {
        x ^= x >> sh;
        sh *= 2;
    }
    x
}

/// The inverse of an odd `c` modulo 2^64 (Newton's iteration; each step doubles the correct bits,
/// and `c * c ≡ 1 (mod 8)` gives the first 3).
const fn inverse_mod_2_64(c: u64) -> u64 {
    let mut inv = c;
    let mut i = 0;
    while i < 5 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(inv)));
        i += 1;
    }
    inv
}

const MUL1_INV: u64 = inverse_mod_2_64(0xBF58_476D_1CE4_E5B9);
const MUL2_INV: u64 = inverse_mod_2_64(0x94D0_49BB_1331_11EB);

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

/// A recorded 8-byte word whose inverted word index `k` is below this is taken for pattern data
/// (then verified byte by byte): 2^40 words are 8 TiB, over a year of 48 kHz stereo S16_LE,
/// while a random word passes with a chance of 2^-24.
const LOCATE_MAX_WORD: u64 = 1 << 40;

/// A pattern run found through an inverted word must match at least this many bytes (so at least 8
/// bytes beyond the identifying word are checked: a random false find survives with 2^-64).
const LOCATE_MIN_NEW_RUN: usize = 16;

/// A pattern run that resumes exactly where the previous one ended (or at offset 0 before the
/// first) must match at least this many bytes.
const LOCATE_MIN_RESUME: usize = 8;

/// One maximal piece of a recording, as [`locate`] cuts it.
///
/// Silence and other data are counted in frames; a trailing partial frame (when the data's
/// length is not a multiple of the frame size) counts as one frame. Pattern runs are counted in
/// bytes: whole frames, except that a run reaching the end of the data includes its partial
/// frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Frames whose bytes are all zero (and that are not pattern bytes that happen to be zero).
    Silence {
        /// How many frames.
        frames: u64,
    },
    /// Bytes `file_offset ..` of the data equal pattern bytes `pattern_offset ..`, byte for byte.
    Pattern {
        /// Where the run starts in the data (a multiple of the frame size).
        file_offset: u64,
        /// The pattern offset (bytes since the stream's OPEN) of its first byte.
        pattern_offset: u64,
        /// Its length in bytes.
        bytes: u64,
    },
    /// Frames that are neither silence nor (recognisable) pattern data.
    Other {
        /// How many frames.
        frames: u64,
    },
}

impl core::fmt::Display for Run {
    /// `silence x<frames>`, `@<pattern offset>+<bytes>` or `other x<frames>`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Run::Silence { frames } => write!(f, "silence x{frames}"),
            Run::Pattern {
                pattern_offset,
                bytes,
                ..
            } => write!(f, "@{pattern_offset}+{bytes}"),
            Run::Other { frames } => write!(f, "other x{frames}"),
        }
    }
}

/// How many leading bytes of `data` equal the pattern (word key `key`) from byte `start` on.
fn match_len(key: u64, data: &[u8], start: u64) -> usize {
    let mut i = 0usize;
    let mut off = start;
    while i < data.len() {
        let word = splitmix64(key ^ (off / 8)).to_le_bytes();
        let want = word
            .get(usize::try_from(off % 8).unwrap_or(0)..)
            .unwrap_or(&[]);
        let got = data.get(i..).unwrap_or(&[]);
        let n = want.iter().zip(got).take_while(|(a, b)| a == b).count();
        i += n;
        if n < want.len() {
            return i;
        }
        let Some(next) = off.checked_add(n as u64) else {
            return i;
        };
        off = next;
    }
    i
}

/// The little-endian u64 at `data[at .. at + 8]`, if there are 8 bytes there.
fn word_at(data: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = data.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Appends a silence or other frame to `runs`, merging with the last run of the same kind.
fn push_frame(runs: &mut Vec<Run>, silent: bool) {
    match (runs.last_mut(), silent) {
        (Some(Run::Silence { frames }), true) | (Some(Run::Other { frames }), false) => {
            *frames += 1;
        }
        (_, true) => runs.push(Run::Silence { frames: 1 }),
        (_, false) => runs.push(Run::Other { frames: 1 }),
    }
}

/// Cuts a recording (`data`, raw PCM bytes in frames of `frame_bytes`; 0 is taken as 1) into
/// maximal [`Run`]s of silence, of contiguous pattern bytes of the stream with `seed`, and of
/// anything else. Every pattern run is verified byte for byte; it may start at any pattern offset,
/// at any alignment to the pattern's 8-byte words.
///
/// How: a run is extended frame by frame while the bytes go on matching the pattern (so pattern
/// frames that happen to be all zero stay in their run). Where no run goes on, a frame starts a
/// new run when either the pattern goes on there from where the previous run ended (checked
/// directly; offset 0 before the first run; at least 8 bytes must match), or the
/// 8 bytes at one of the next 8 file offsets, inverted with [`unsplitmix64`], name a word index
/// below 2^40 and the pattern from the implied offset matches at least 16 bytes from the frame
/// on. Otherwise the frame is silence (all zero) or other. So a pattern piece shorter than 16
/// bytes that does not continue the previous one is reported as other. Every file offset is
/// inverted at most once and every byte compared a bounded number of times: linear time. Never
/// panics.
pub fn locate(seed: u64, data: &[u8], frame_bytes: usize) -> Vec<Run> {
    let fb = frame_bytes.max(1);
    let key = splitmix64(seed);
    let mut runs = Vec::new();
    let mut pos = 0usize;
    // Where the pattern would go on: the end of the last pattern run (0 before the first).
    let mut expect = 0u64;
    // Inverted words found so far: (file offset of the word, pattern offset of its first byte),
    // ascending; every file offset below `next_window` has been tried.
    let mut hits: std::collections::VecDeque<(usize, u64)> = std::collections::VecDeque::new();
    let mut next_window = 0usize;
    while pos < data.len() {
        let rest = data.get(pos..).unwrap_or(&[]);
        let whole = |m: usize| if m == rest.len() { m } else { m - m % fb };
        let mut found = None;
        let resumed = whole(match_len(key, rest, expect));
        if resumed >= LOCATE_MIN_RESUME {
            found = Some((expect, resumed));
        }
        if found.is_none() {
            while hits.front().is_some_and(|&(o, _)| o < pos) {
                hits.pop_front();
            }
            let from = next_window.max(pos);
            let to = pos.saturating_add(8).min(data.len().saturating_sub(7));
            for o in from..to {
                if let Some(w) = word_at(data, o) {
                    let k = unsplitmix64(w) ^ key;
                    if k < LOCATE_MAX_WORD {
                        hits.push_back((o, k * 8));
                    }
                }
            }
            next_window = next_window.max(to);
            for &(o, p_o) in &hits {
                let Some(p) = p_o.checked_sub((o - pos) as u64) else {
                    continue;
                };
                if p == expect {
                    continue;
                }
                let len = whole(match_len(key, rest, p));
                if len >= LOCATE_MIN_NEW_RUN {
                    found = Some((p, len));
                    break;
                }
            }
        }
        match found {
            Some((p, len)) => {
                runs.push(Run::Pattern {
                    file_offset: pos as u64,
                    pattern_offset: p,
                    bytes: len as u64,
                });
                expect = p.saturating_add(len as u64);
                pos += len;
            }
            None => {
                let frame = rest.get(..fb).unwrap_or(rest);
                push_frame(&mut runs, frame.iter().all(|&b| b == 0));
                pos += frame.len();
            }
        }
    }
    runs
}

/// What [`summarize`] makes of a recording's [`Run`]s.
///
/// Gaps and repeats are measured against the high-water mark of the pattern seen so far (the
/// largest end offset of an earlier run): a run starting above it leaves a gap of the bytes in
/// between; bytes of a run below it came before (repeated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Pattern offset of the first pattern run's first byte (`None`: no pattern at all).
    pub first_pattern_offset: Option<u64>,
    /// Bytes in pattern runs.
    pub pattern_bytes: u64,
    /// Number of pattern runs.
    pub pattern_runs: u64,
    /// Forward jumps between pattern runs.
    pub gaps: u64,
    /// Pattern bytes skipped by the gaps.
    pub missing_bytes: u64,
    /// Pattern bytes that came again (backward jumps).
    pub repeated_bytes: u64,
    /// Silent frames before the first pattern run (all of them when there is none).
    pub silence_lead: u64,
    /// Silent frames between the first and the last pattern run.
    pub silence_inserted: u64,
    /// In how many places (silence runs) those are.
    pub silence_places: u64,
    /// Silent frames after the last pattern run.
    pub silence_after: u64,
    /// Frames that are neither silence nor pattern.
    pub other_frames: u64,
    /// Number of runs.
    pub runs: u64,
}

impl Summary {
    /// The recording is one contiguous piece of the pattern, silence aside: some pattern, no gap,
    /// no repeat, no other frame (silence before, inside and after is allowed). An empty or
    /// all-silent recording is not contiguous.
    pub fn is_contiguous(&self) -> bool {
        self.pattern_bytes > 0
            && self.gaps == 0
            && self.repeated_bytes == 0
            && self.other_frames == 0
    }
}

/// Tallies the [`Run`]s of [`locate`] (see [`Summary`]).
pub fn summarize(runs: &[Run]) -> Summary {
    let mut s = Summary {
        runs: runs.len() as u64,
        ..Summary::default()
    };
    let mut high: Option<u64> = None;
    // Silence since the last pattern run: (frames, places).
    let mut pending = (0u64, 0u64);
    for run in runs {
        match *run {
            Run::Silence { frames } => {
                if high.is_some() {
                    pending.0 = pending.0.saturating_add(frames);
                    pending.1 += 1;
                } else {
                    s.silence_lead = s.silence_lead.saturating_add(frames);
                }
            }
            Run::Other { frames } => s.other_frames = s.other_frames.saturating_add(frames),
            Run::Pattern {
                pattern_offset,
                bytes,
                ..
            } => {
                let end = pattern_offset.saturating_add(bytes);
                match high {
                    None => s.first_pattern_offset = Some(pattern_offset),
                    Some(h) => {
                        if pattern_offset > h {
                            s.gaps += 1;
                            s.missing_bytes = s.missing_bytes.saturating_add(pattern_offset - h);
                        } else if pattern_offset < h {
                            s.repeated_bytes =
                                s.repeated_bytes.saturating_add(end.min(h) - pattern_offset);
                        }
                        s.silence_inserted = s.silence_inserted.saturating_add(pending.0);
                        s.silence_places += pending.1;
                    }
                }
                pending = (0, 0);
                high = Some(high.map_or(end, |h| h.max(end)));
                s.pattern_bytes = s.pattern_bytes.saturating_add(bytes);
                s.pattern_runs += 1;
            }
        }
    }
    s.silence_after = pending.0;
    s
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

    /// A deterministic generator for the tests' random data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(1);
            splitmix64(self.0 ^ 0x5EED)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next().to_le_bytes()[3]).collect()
        }
    }

    const SEED: u64 = (1u64 << 48) | 1;

    fn pat(offset: u64, len: usize) -> Vec<u8> {
        pattern_bytes(SEED, offset, len)
    }

    fn p(file_offset: u64, pattern_offset: u64, bytes: u64) -> Run {
        Run::Pattern {
            file_offset,
            pattern_offset,
            bytes,
        }
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// The runs cover `data` exactly, in order: silence frames all zero, other frames not all
    /// zero, pattern runs frame-aligned and equal to the pattern byte for byte, no two silence or
    /// two other runs next to each other.
    fn check_partition(seed: u64, data: &[u8], fb: usize, runs: &[Run]) {
        let fb = fb.max(1);
        let mut pos = 0usize;
        let mut last: Option<&Run> = None;
        for run in runs {
            match (last, run) {
                (Some(Run::Silence { .. }), Run::Silence { .. })
                | (Some(Run::Other { .. }), Run::Other { .. }) => {
                    panic!("two runs of the same kind in a row: {runs:?}")
                }
                _ => {}
            }
            match *run {
                Run::Silence { frames } | Run::Other { frames } => {
                    assert!(frames > 0, "{run:?}");
                    for _ in 0..frames {
                        assert!(pos < data.len(), "{run:?} runs past the end");
                        let end = (pos + fb).min(data.len());
                        let zero = data[pos..end].iter().all(|&b| b == 0);
                        assert_eq!(zero, matches!(run, Run::Silence { .. }), "frame at {pos}");
                        pos = end;
                    }
                }
                Run::Pattern {
                    file_offset,
                    pattern_offset,
                    bytes,
                } => {
                    assert_eq!(file_offset, pos as u64, "{run:?}");
                    assert_eq!(pos % fb, 0, "{run:?}");
                    assert!(bytes > 0);
                    let end = pos + bytes as usize;
                    assert!(end <= data.len(), "{run:?} runs past the end");
                    assert_eq!(
                        data[pos..end],
                        pattern_bytes(seed, pattern_offset, bytes as usize)[..],
                        "{run:?}"
                    );
                    assert!(end == data.len() || bytes as usize % fb == 0, "{run:?}");
                    pos = end;
                }
            }
            last = Some(run);
        }
        assert_eq!(pos, data.len(), "the runs do not cover the data");
    }

    fn located(data: &[u8], fb: usize) -> (Vec<Run>, Summary) {
        let runs = locate(SEED, data, fb);
        check_partition(SEED, data, fb, &runs);
        let s = summarize(&runs);
        (runs, s)
    }

    #[test]
    fn unsplitmix64_inverts_splitmix64() {
        let mut rng = Rng(1);
        let fixed = [
            0,
            1,
            2,
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            0x9E37_79B9_7F4A_7C15,
        ];
        for z in fixed.into_iter().chain((0..200_000).map(|_| rng.next())) {
            assert_eq!(unsplitmix64(splitmix64(z)), z, "{z:#x}");
            assert_eq!(splitmix64(unsplitmix64(z)), z, "{z:#x}");
        }
        assert_eq!(unsplitmix64(0xE220_A839_7B1D_CDAF), 0);
        // And the word index of a pattern word comes back.
        let key = splitmix64(SEED);
        let w = u64::from_le_bytes(pat(8 * 12345, 8).try_into().expect("8 bytes"));
        assert_eq!(unsplitmix64(w) ^ key, 12345);
    }

    #[test]
    fn exact_recording_from_the_open() {
        let data = pat(0, 96_000);
        let (runs, s) = located(&data, 4);
        assert_eq!(runs, vec![p(0, 0, 96_000)]);
        assert!(s.is_contiguous());
        assert_eq!(s.first_pattern_offset, Some(0));
        assert_eq!(s.pattern_bytes, 96_000);
        assert_eq!((s.gaps, s.missing_bytes, s.repeated_bytes), (0, 0, 0));
        assert_eq!(s.runs, 1);
    }

    #[test]
    fn late_start_anywhere_in_the_pattern() {
        for from in [4096u64, 4100, 1 << 20, (1 << 33) + 12] {
            let data = pat(from, 20_000);
            let (runs, s) = located(&data, 4);
            assert_eq!(runs, vec![p(0, from, 20_000)], "from {from}");
            assert!(s.is_contiguous());
            assert_eq!(s.first_pattern_offset, Some(from));
        }
    }

    #[test]
    fn a_gap_is_found_and_measured() {
        let data = cat(&[&pat(0, 8192), &pat(12_288, 4096)]);
        let (runs, s) = located(&data, 4);
        assert_eq!(runs, vec![p(0, 0, 8192), p(8192, 12_288, 4096)]);
        assert!(!s.is_contiguous());
        assert_eq!((s.gaps, s.missing_bytes, s.repeated_bytes), (1, 4096, 0));
        assert_eq!(s.pattern_bytes, 12_288);
    }

    #[test]
    fn a_repeat_is_found_and_measured() {
        let data = cat(&[&pat(0, 8192), &pat(4096, 8192)]);
        let (runs, s) = located(&data, 4);
        assert_eq!(runs, vec![p(0, 0, 8192), p(8192, 4096, 8192)]);
        assert!(!s.is_contiguous());
        assert_eq!((s.gaps, s.missing_bytes, s.repeated_bytes), (0, 0, 4096));
        // A jump back and then on from the high-water mark: only the repeat counts.
        let data = cat(&[&pat(0, 8192), &pat(4096, 1024), &pat(8192, 1024)]);
        let s = located(&data, 4).1;
        assert_eq!((s.gaps, s.missing_bytes, s.repeated_bytes), (0, 0, 1024));
    }

    #[test]
    fn silence_before_inside_and_after_is_allowed_and_counted() {
        let z = |frames: usize| vec![0u8; frames * 4];
        let data = cat(&[
            &z(1024),
            &pat(400, 4096),
            &z(1024),
            &pat(4496, 4096),
            &z(3),
            &pat(8592, 12),
            &z(1),
            &pat(8604, 400),
            &z(10),
        ]);
        let (runs, s) = located(&data, 4);
        assert_eq!(
            runs,
            vec![
                Run::Silence { frames: 1024 },
                p(4096, 400, 4096),
                Run::Silence { frames: 1024 },
                p(12_288, 4496, 4096),
                Run::Silence { frames: 3 },
                p(16_396, 8592, 12),
                Run::Silence { frames: 1 },
                p(16_412, 8604, 400),
                Run::Silence { frames: 10 },
            ]
        );
        assert!(s.is_contiguous(), "{s:?}");
        assert_eq!(s.first_pattern_offset, Some(400));
        assert_eq!(s.pattern_bytes, 8604);
        assert_eq!(
            (
                s.silence_lead,
                s.silence_inserted,
                s.silence_places,
                s.silence_after
            ),
            (1024, 1028, 3, 10)
        );
    }

    #[test]
    fn every_alignment_and_frame_size() {
        for fb in [1usize, 2, 3, 4, 6, 8, 12] {
            for shift in 0..8u64 {
                let a = 8 * 1000 + shift;
                let b = 8 * 5000 + (shift * 3) % 8;
                let la = fb * 40;
                let lb = fb * 33;
                let data = cat(&[&pat(a, la), &vec![0; fb * 2], &pat(b, lb)]);
                let (runs, s) = located(&data, fb);
                let want = vec![
                    p(0, a, la as u64),
                    Run::Silence { frames: 2 },
                    p((la + 2 * fb) as u64, b, lb as u64),
                ];
                assert_eq!(runs, want, "frame {fb} shift {shift}");
                assert_eq!(s.missing_bytes, b - a - la as u64);
            }
        }
    }

    #[test]
    fn misaligned_by_four_bytes() {
        let data = cat(&[&pat(4, 4096), &pat(4100 + 1028, 4096)]);
        let (runs, s) = located(&data, 4);
        assert_eq!(runs, vec![p(0, 4, 4096), p(4096, 5128, 4096)]);
        assert_eq!((s.gaps, s.missing_bytes), (1, 1028));
        // A recording that lost two bytes of a frame: the rest is found at its odd offset.
        let mut data = pat(0, 400);
        data.extend_from_slice(&pat(402, 398));
        let (runs, s) = located(&data, 4);
        assert_eq!(runs, vec![p(0, 0, 400), p(400, 402, 398)]);
        assert!(!s.is_contiguous());
        assert_eq!((s.gaps, s.missing_bytes), (1, 2));
    }

    #[test]
    fn other_data_is_other() {
        let mut rng = Rng(7);
        let noise = rng.bytes(4000);
        let data = cat(&[&pat(0, 4000), &noise, &pat(4000, 4000)]);
        let (runs, s) = located(&data, 4);
        assert_eq!(
            runs,
            vec![
                p(0, 0, 4000),
                Run::Other { frames: 1000 },
                p(8000, 4000, 4000)
            ]
        );
        assert!(!s.is_contiguous());
        assert_eq!(s.other_frames, 1000);
        assert_eq!(s.gaps, 0);
        // Only noise.
        let (runs, s) = located(&noise, 4);
        assert_eq!(runs, vec![Run::Other { frames: 1000 }]);
        assert_eq!(s.first_pattern_offset, None);
        assert!(!s.is_contiguous());
    }

    #[test]
    fn the_pattern_of_another_stream_is_other() {
        let other = pattern_bytes(SEED + 1, 0, 8000);
        let (runs, s) = located(&other, 4);
        assert_eq!(runs, vec![Run::Other { frames: 2000 }]);
        assert!(!s.is_contiguous());
        // But it is found in its own stream's pattern.
        assert_eq!(locate(SEED + 1, &other, 4), vec![p(0, 0, 8000)]);
    }

    #[test]
    fn empty_and_silent_inputs() {
        let (runs, s) = located(&[], 4);
        assert!(runs.is_empty());
        assert_eq!(s, Summary::default());
        assert!(!s.is_contiguous());
        let (runs, s) = located(&[0; 4096], 4);
        assert_eq!(runs, vec![Run::Silence { frames: 1024 }]);
        assert_eq!(s.silence_lead, 1024);
        assert!(!s.is_contiguous(), "all silence is no pattern");
        // A trailing partial frame counts as one frame; frame size 0 is taken as 1.
        assert_eq!(locate(SEED, &[0; 6], 4), vec![Run::Silence { frames: 2 }]);
        assert_eq!(
            locate(SEED, &[0, 0, 1], 0),
            vec![Run::Silence { frames: 2 }, Run::Other { frames: 1 }]
        );
    }

    #[test]
    fn zero_bytes_of_the_pattern_stay_in_their_run() {
        // About one byte in 256 of the pattern is 0: with 1-byte frames they are silent frames
        // that belong to the pattern.
        let data = pat(0, 20_000);
        assert!(data.iter().filter(|&&b| b == 0).count() > 20);
        assert_eq!(located(&data, 1).0, vec![p(0, 0, 20_000)]);
    }

    #[test]
    fn short_pieces() {
        // 8 bytes that go on where the last run ended count; 12 bytes elsewhere do not.
        let data = cat(&[&pat(0, 400), &[0; 4], &pat(400, 8), &[0; 4]]);
        assert_eq!(
            located(&data, 4).0,
            vec![
                p(0, 0, 400),
                Run::Silence { frames: 1 },
                p(404, 400, 8),
                Run::Silence { frames: 1 }
            ]
        );
        let data = cat(&[&pat(0, 400), &[0; 4], &pat(1000, 12), &[0; 4]]);
        let (runs, s) = located(&data, 4);
        assert_eq!(
            runs,
            vec![
                p(0, 0, 400),
                Run::Silence { frames: 1 },
                Run::Other { frames: 3 },
                Run::Silence { frames: 1 }
            ]
        );
        assert_eq!(s.other_frames, 3);
        // A trailing piece of a frame that goes on with the pattern belongs to the run.
        assert_eq!(located(&pat(0, 402), 4).0, vec![p(0, 0, 402)]);
    }

    /// Random pieces (pattern at random offsets and alignments, silence, noise, another stream's
    /// pattern), cut at random places: no panic, the runs always partition the data and are
    /// verified; with whole pieces and frames of at least 4 bytes the pieces come back exactly.
    #[test]
    fn fuzz_random_pieces_and_cuts() {
        let mut rng = Rng(99);
        for round in 0..300 {
            let fb = [1usize, 2, 3, 4, 4, 4, 6, 8][round % 8];
            let mut data = Vec::new();
            let mut want: Vec<Run> = Vec::new();
            for _ in 0..rng.below(12) {
                let frames = 5 + rng.below(300) as usize;
                let len = frames * fb;
                let (bytes, run) = match rng.below(4) {
                    0 | 1 => {
                        let off = rng.below(1 << 36);
                        let off = if rng.below(2) == 0 {
                            off
                        } else {
                            off - off % 8
                        };
                        let r = p(data.len() as u64, off, len as u64);
                        (pattern_bytes(SEED, off, len), r)
                    }
                    2 => (
                        vec![0; len],
                        Run::Silence {
                            frames: frames as u64,
                        },
                    ),
                    _ => {
                        let b = if rng.below(2) == 0 {
                            rng.bytes(len)
                        } else {
                            pattern_bytes(rng.next(), rng.below(1 << 20), len)
                        };
                        (
                            b,
                            Run::Other {
                                frames: frames as u64,
                            },
                        )
                    }
                };
                // Merge like `locate` does.
                match (want.last_mut(), run) {
                    (Some(Run::Silence { frames: a }), Run::Silence { frames: b })
                    | (Some(Run::Other { frames: a }), Run::Other { frames: b }) => *a += b,
                    _ => want.push(run),
                }
                data.extend_from_slice(&bytes);
            }
            let runs = locate(SEED, &data, fb);
            check_partition(SEED, &data, fb, &runs);
            if fb >= 4 {
                assert_eq!(runs, want, "round {round}");
            }
            let _ = summarize(&runs);
            for _ in 0..4 {
                let a = rng.below(data.len() as u64 + 1) as usize;
                let b = a + rng.below((data.len() - a) as u64 + 1) as usize;
                let cut = &data[a..b];
                let cfb = 1 + rng.below(9) as usize;
                check_partition(SEED, cut, cfb, &locate(SEED, cut, cfb));
            }
        }
    }

    #[test]
    fn ten_megabytes_quickly() {
        let start = std::time::Instant::now();
        let mut data = vec![0u8; 4096];
        let mut off = 1 << 16;
        for i in 0..20u64 {
            data.extend_from_slice(&pat(off, 500_000));
            off += 500_000;
            if i % 5 == 4 {
                off += 4096;
            } else {
                data.extend_from_slice(&[0; 4096]);
            }
        }
        let (runs, s) = located(&data, 4);
        assert_eq!(s.pattern_runs, 20, "{runs:?}");
        assert_eq!(s.pattern_bytes, 10_000_000);
        assert_eq!((s.gaps, s.missing_bytes), (3, 3 * 4096));
        assert_eq!(s.silence_inserted, 16 * 1024);
        // Generous: a debug build on a loaded machine, for about 10 MB plus the checks.
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
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
