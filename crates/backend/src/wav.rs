//! WAV file output for playback streams.
//!
//! The file is little-endian RIFF/WAVE. Sample conversion from the sndif format to what WAV
//! stores: big-endian formats are byte-swapped; unsigned 16/24/32-bit and signed 8-bit samples are
//! converted to WAV's signedness (8-bit WAV is unsigned, wider is signed); the 24-bit formats
//! (24 valid bits in a 4-byte container, low-justified as in ALSA) are stored left-justified in a
//! 32-bit container with 24 valid bits (`WAVE_FORMAT_EXTENSIBLE`). Floats use format tag 3, A-law
//! 6, µ-law 7; those carry a `fact` chunk. More than two channels also use
//! `WAVE_FORMAT_EXTENSIBLE`. IEC958 subframes and compressed formats have no WAV form
//! ([`wav_supported`] is false for them).
//!
//! The header's size fields are rewritten after every append, so the file is valid at any time
//! (also when the process is killed).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sndif::PcmFormat;

const TAG_PCM: u16 = 1;
const TAG_FLOAT: u16 = 3;
const TAG_ALAW: u16 = 6;
const TAG_MULAW: u16 = 7;
const TAG_EXTENSIBLE: u16 = 0xFFFE;

/// `KSDATAFORMAT_SUBTYPE_*` GUID after its first two bytes (the format tag): the rest of the
/// GUID `000000tt-0000-0010-8000-00aa00389b71` in its little-endian byte order.
const GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// How samples of one format are turned into WAV samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    tag: u16,
    /// Bytes per sample in the sndif buffer (= in the file).
    bytes: usize,
    /// Valid bits per sample.
    valid_bits: u16,
    /// Big-endian input: swap bytes.
    swap: bool,
    /// Flip the sign bit (of the *valid* most significant byte, after swapping).
    flip_sign: bool,
    /// 24 valid bits low-justified in 4 bytes: shift left by one byte.
    shift24: bool,
}

fn layout(format: PcmFormat) -> Option<Layout> {
    use PcmFormat as F;
    let l = |tag, bytes, valid_bits, swap, flip_sign, shift24| Layout {
        tag,
        bytes,
        valid_bits,
        swap,
        flip_sign,
        shift24,
    };
    Some(match format {
        F::U8 => l(TAG_PCM, 1, 8, false, false, false),
        F::S8 => l(TAG_PCM, 1, 8, false, true, false),
        F::S16Le => l(TAG_PCM, 2, 16, false, false, false),
        F::S16Be => l(TAG_PCM, 2, 16, true, false, false),
        F::U16Le => l(TAG_PCM, 2, 16, false, true, false),
        F::U16Be => l(TAG_PCM, 2, 16, true, true, false),
        F::S24Le => l(TAG_PCM, 4, 24, false, false, true),
        F::S24Be => l(TAG_PCM, 4, 24, true, false, true),
        F::U24Le => l(TAG_PCM, 4, 24, false, true, true),
        F::U24Be => l(TAG_PCM, 4, 24, true, true, true),
        F::S32Le => l(TAG_PCM, 4, 32, false, false, false),
        F::S32Be => l(TAG_PCM, 4, 32, true, false, false),
        F::U32Le => l(TAG_PCM, 4, 32, false, true, false),
        F::U32Be => l(TAG_PCM, 4, 32, true, true, false),
        F::F32Le => l(TAG_FLOAT, 4, 32, false, false, false),
        F::F32Be => l(TAG_FLOAT, 4, 32, true, false, false),
        F::F64Le => l(TAG_FLOAT, 8, 64, false, false, false),
        F::F64Be => l(TAG_FLOAT, 8, 64, true, false, false),
        F::ALaw => l(TAG_ALAW, 1, 8, false, false, false),
        F::MuLaw => l(TAG_MULAW, 1, 8, false, false, false),
        F::Iec958SubframeLe | F::Iec958SubframeBe | F::ImaAdpcm | F::Mpeg | F::Gsm => return None,
    })
}

/// Whether `format` can be written as WAV.
pub fn wav_supported(format: PcmFormat) -> bool {
    layout(format).is_some()
}

/// Converts one sample in place (`s.len() == layout.bytes`).
fn convert_sample(l: &Layout, s: &mut [u8]) {
    if l.swap {
        s.reverse();
    }
    // Now little-endian.
    if l.shift24 {
        // [b0 b1 b2 x] (low-justified 24-bit) → [0 b0 b1 b2] (left-justified).
        if let [a, b, c, d] = s {
            let (b0, b1, b2) = (*a, *b, *c);
            *a = 0;
            *b = b0;
            *c = b1;
            *d = b2;
        }
    }
    if l.flip_sign {
        if let Some(msb) = s.last_mut() {
            *msb ^= 0x80;
        }
    }
}

/// A WAV file being written.
#[derive(Debug)]
pub struct WavWriter {
    file: File,
    path: PathBuf,
    format: PcmFormat,
    rate: u32,
    channels: u16,
    layout: Layout,
    /// Offset of the RIFF size, the data size and (if any) the fact sample count.
    data_size_off: u64,
    fact_off: Option<u64>,
    header_len: u64,
    data_bytes: u64,
    /// Bytes of an incomplete sample from the previous append.
    carry: Vec<u8>,
}

/// Errors of the WAV writer.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The format has no WAV representation.
    #[error("{path}: format {format} cannot be stored as WAV")]
    Unsupported {
        /// The file that was to be written.
        path: PathBuf,
        /// The format.
        format: PcmFormat,
    },
    /// A file operation failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl WavWriter {
    /// Creates (truncates) `path` and writes a header for an empty stream.
    pub fn create(
        path: &Path,
        format: PcmFormat,
        rate: u32,
        channels: u8,
    ) -> Result<Self, WavError> {
        let layout = layout(format).ok_or_else(|| WavError::Unsupported {
            path: path.to_owned(),
            format,
        })?;
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|source| WavError::Io {
                path: path.to_owned(),
                op: "create",
                source,
            })?;
        let mut w = WavWriter {
            file,
            path: path.to_owned(),
            format,
            rate,
            channels: u16::from(channels),
            layout,
            data_size_off: 0,
            fact_off: None,
            header_len: 0,
            data_bytes: 0,
            carry: Vec::new(),
        };
        let header = w.header();
        w.header_len = u64::try_from(header.len()).unwrap_or(u64::MAX);
        w.write_at(&header, 0, "write header")?;
        Ok(w)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Format, rate and channels the file was created for.
    pub fn spec(&self) -> (PcmFormat, u32, u8) {
        (
            self.format,
            self.rate,
            u8::try_from(self.channels).unwrap_or(u8::MAX),
        )
    }

    /// Bytes of sample data in the file.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    fn write_at(&self, buf: &[u8], off: u64, op: &'static str) -> Result<(), WavError> {
        self.file
            .write_all_at(buf, off)
            .map_err(|source| WavError::Io {
                path: self.path.clone(),
                op,
                source,
            })
    }

    fn header(&mut self) -> Vec<u8> {
        let l = self.layout;
        let extensible = l.tag == TAG_PCM
            && (self.channels > 2 || l.valid_bits != l.bytes as u16 * 8)
            || (l.tag == TAG_FLOAT && self.channels > 2);
        let container_bits = u16::try_from(l.bytes * 8).unwrap_or(u16::MAX);
        let block_align = self
            .channels
            .saturating_mul(u16::try_from(l.bytes).unwrap_or(1));
        let byte_rate = self.rate.saturating_mul(u32::from(block_align));
        let mut fmt = Vec::with_capacity(40);
        let tag = if extensible { TAG_EXTENSIBLE } else { l.tag };
        fmt.extend_from_slice(&tag.to_le_bytes());
        fmt.extend_from_slice(&self.channels.to_le_bytes());
        fmt.extend_from_slice(&self.rate.to_le_bytes());
        fmt.extend_from_slice(&byte_rate.to_le_bytes());
        fmt.extend_from_slice(&block_align.to_le_bytes());
        fmt.extend_from_slice(&container_bits.to_le_bytes());
        if extensible {
            fmt.extend_from_slice(&22u16.to_le_bytes());
            fmt.extend_from_slice(&l.valid_bits.to_le_bytes());
            let mask: u32 = match self.channels {
                1 => 0x4,
                2 => 0x3,
                _ => 0,
            };
            fmt.extend_from_slice(&mask.to_le_bytes());
            fmt.extend_from_slice(&l.tag.to_le_bytes());
            fmt.extend_from_slice(&GUID_TAIL);
        } else if l.tag != TAG_PCM {
            fmt.extend_from_slice(&0u16.to_le_bytes());
        }
        let with_fact = l.tag != TAG_PCM;
        let mut h = Vec::with_capacity(80);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(b"WAVE");
        h.extend_from_slice(b"fmt ");
        h.extend_from_slice(&u32::try_from(fmt.len()).unwrap_or(0).to_le_bytes());
        h.extend_from_slice(&fmt);
        if with_fact {
            h.extend_from_slice(b"fact");
            h.extend_from_slice(&4u32.to_le_bytes());
            self.fact_off = Some(u64::try_from(h.len()).unwrap_or(0));
            h.extend_from_slice(&0u32.to_le_bytes());
        }
        h.extend_from_slice(b"data");
        self.data_size_off = u64::try_from(h.len()).unwrap_or(0);
        h.extend_from_slice(&0u32.to_le_bytes());
        h
    }

    /// Appends raw sndif-format bytes (any split; an incomplete trailing sample is kept for the
    /// next call) and updates the header.
    pub fn append(&mut self, raw: &[u8]) -> Result<(), WavError> {
        let sb = self.layout.bytes;
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(raw);
        let whole = data.len() / sb * sb;
        let rest = data.split_off(whole);
        for s in data.chunks_exact_mut(sb) {
            convert_sample(&self.layout, s);
        }
        self.carry = rest;
        if data.is_empty() {
            return Ok(());
        }
        let off = self.header_len.saturating_add(self.data_bytes);
        self.write_at(&data, off, "append samples")?;
        self.data_bytes = self
            .data_bytes
            .saturating_add(u64::try_from(data.len()).unwrap_or(0));
        self.update_sizes()
    }

    fn update_sizes(&self) -> Result<(), WavError> {
        let data = u32::try_from(self.data_bytes).unwrap_or(u32::MAX);
        let riff = u32::try_from(
            self.header_len
                .saturating_sub(8)
                .saturating_add(self.data_bytes),
        )
        .unwrap_or(u32::MAX);
        self.write_at(&riff.to_le_bytes(), 4, "update RIFF size")?;
        self.write_at(&data.to_le_bytes(), self.data_size_off, "update data size")?;
        if let Some(off) = self.fact_off {
            let block = u64::from(self.channels) * u64::try_from(self.layout.bytes).unwrap_or(1);
            let frames = u32::try_from(self.data_bytes / block.max(1)).unwrap_or(u32::MAX);
            self.write_at(&frames.to_le_bytes(), off, "update fact chunk")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes([b[off], b[off + 1]])
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }

    #[test]
    fn s16le_stereo_header_and_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.wav");
        let mut w = WavWriter::create(&p, PcmFormat::S16Le, 48000, 2).expect("create");
        w.append(&[1, 2, 3]).expect("append");
        w.append(&[4, 5, 6, 7, 8]).expect("append");
        let b = std::fs::read(&p).expect("read");
        assert_eq!(&b[0..4], b"RIFF");
        assert_eq!(u32_at(&b, 4) as usize, b.len() - 8);
        assert_eq!(&b[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(&b, 16), 16);
        assert_eq!(u16_at(&b, 20), 1); // PCM
        assert_eq!(u16_at(&b, 22), 2); // channels
        assert_eq!(u32_at(&b, 24), 48000);
        assert_eq!(u32_at(&b, 28), 48000 * 4);
        assert_eq!(u16_at(&b, 32), 4);
        assert_eq!(u16_at(&b, 34), 16);
        assert_eq!(&b[36..40], b"data");
        assert_eq!(u32_at(&b, 40), 8);
        assert_eq!(&b[44..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(w.data_bytes(), 8);
    }

    #[test]
    fn big_endian_unsigned_is_swapped_and_signed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("b.wav");
        let mut w = WavWriter::create(&p, PcmFormat::U16Be, 8000, 1).expect("create");
        // 0x8000 (unsigned midpoint) → 0 signed; 0x1234 → 0x9234 ^ ... : BE bytes 12 34.
        w.append(&[0x80, 0x00, 0x12, 0x34]).expect("append");
        let b = std::fs::read(&p).expect("read");
        assert_eq!(&b[44..], &[0x00, 0x00, 0x34, 0x92]);
    }

    #[test]
    fn s24_uses_extensible_and_left_justifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.wav");
        let mut w = WavWriter::create(&p, PcmFormat::S24Le, 44100, 2).expect("create");
        w.append(&[0x11, 0x22, 0x33, 0x00, 0xAA, 0xBB, 0xCC, 0xFF])
            .expect("append");
        let b = std::fs::read(&p).expect("read");
        assert_eq!(u32_at(&b, 16), 40);
        assert_eq!(u16_at(&b, 20), TAG_EXTENSIBLE);
        assert_eq!(u16_at(&b, 34), 32); // container
        assert_eq!(u16_at(&b, 38), 24); // valid bits
        assert_eq!(u16_at(&b, 44), TAG_PCM); // sub-format
        assert_eq!(&b[60..64], b"data");
        assert_eq!(u32_at(&b, 64), 8);
        assert_eq!(&b[68..], &[0x00, 0x11, 0x22, 0x33, 0x00, 0xAA, 0xBB, 0xCC]);
        assert_eq!(u32_at(&b, 4) as usize, b.len() - 8);
    }

    #[test]
    fn float_has_fact_chunk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("d.wav");
        let mut w = WavWriter::create(&p, PcmFormat::F32Le, 48000, 2).expect("create");
        w.append(&[0u8; 24]).expect("append");
        let b = std::fs::read(&p).expect("read");
        assert_eq!(u16_at(&b, 20), TAG_FLOAT);
        assert_eq!(u32_at(&b, 16), 18);
        assert_eq!(&b[38..42], b"fact");
        assert_eq!(u32_at(&b, 46), 3); // frames
        assert_eq!(&b[50..54], b"data");
        assert_eq!(u32_at(&b, 54), 24);
        assert_eq!(u32_at(&b, 4) as usize, b.len() - 8);
    }

    #[test]
    fn unsupported_formats_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("e.wav");
        assert!(!wav_supported(PcmFormat::Gsm));
        assert!(matches!(
            WavWriter::create(&p, PcmFormat::Iec958SubframeLe, 48000, 2),
            Err(WavError::Unsupported { .. })
        ));
        assert!(wav_supported(PcmFormat::S8));
    }
}
