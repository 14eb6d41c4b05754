//! WAV files: a streaming reader (RIFF/WAVE with PCM, IEEE float, A-law, µ-law and
//! WAVE_FORMAT_EXTENSIBLE) that maps the file's samples to sndif formats, and a writer for
//! recordings.
//!
//! | WAV samples | sndif format (preference order) | conversion |
//! | --- | --- | --- |
//! | 8-bit PCM (unsigned) | `u8` | none |
//! | 16-bit PCM | `s16_le` | none |
//! | 24-bit PCM, packed in 3 bytes | `s24_le`, else `s32_le` | to a 4-byte container: sign-extended (`s24_le`, ALSA's layout) or shifted left by 8 (`s32_le`) |
//! | 32-bit PCM (also 24 valid bits in a 32-bit container, which WAV left-aligns) | `s32_le` | none |
//! | 32-bit float | `float_le` | none |
//! | 64-bit float | `float64_le` | none |
//! | A-law, µ-law (8-bit) | `a_law`, `mu_law` | none |
//!
//! The data chunk's size is an upper bound: reading stops at the end of the file too (streamed
//! WAVs write 0xFFFFFFFF), and a trailing partial frame is dropped and counted.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sndif::formats::PcmFormat;

const TAG_PCM: u16 = 1;
const TAG_FLOAT: u16 = 3;
const TAG_ALAW: u16 = 6;
const TAG_MULAW: u16 = 7;
const TAG_EXTENSIBLE: u16 = 0xFFFE;
/// The 14 bytes that follow the 2-byte format tag in a KSDATAFORMAT_SUBTYPE GUID.
const GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];
/// Largest `fmt ` chunk accepted.
const MAX_FMT_LEN: u32 = 1024;

/// Why a WAV file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Not a RIFF/WAVE file.
    #[error("not a WAV file ({0})")]
    NotWav(&'static str),
    /// A structural problem.
    #[error("malformed WAV file: {0}")]
    Malformed(String),
    /// Well-formed, but samples this tool cannot send.
    #[error("unsupported WAV samples: {0}")]
    Unsupported(String),
}

/// The sample encoding of a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Samples {
    /// 8-bit unsigned PCM.
    U8,
    /// 16-bit signed PCM.
    S16,
    /// 24-bit signed PCM packed in 3 bytes.
    S24Packed,
    /// 32-bit signed PCM (or fewer valid bits, left-aligned).
    S32,
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// A-law.
    ALaw,
    /// µ-law.
    MuLaw,
}

impl Samples {
    /// Bytes per sample in the file.
    pub fn file_bytes(self) -> u32 {
        match self {
            Samples::U8 | Samples::ALaw | Samples::MuLaw => 1,
            Samples::S16 => 2,
            Samples::S24Packed => 3,
            Samples::S32 | Samples::F32 => 4,
            Samples::F64 => 8,
        }
    }

    /// A short description (`16-bit PCM`).
    pub fn describe(self) -> &'static str {
        match self {
            Samples::U8 => "8-bit PCM",
            Samples::S16 => "16-bit PCM",
            Samples::S24Packed => "24-bit PCM",
            Samples::S32 => "32-bit PCM",
            Samples::F32 => "32-bit float",
            Samples::F64 => "64-bit float",
            Samples::ALaw => "A-law",
            Samples::MuLaw => "mu-law",
        }
    }

    /// The sndif formats that carry these samples, best first, with the conversion each needs.
    pub fn candidates(self) -> &'static [(PcmFormat, Conversion)] {
        match self {
            Samples::U8 => &[(PcmFormat::U8, Conversion::None)],
            Samples::S16 => &[(PcmFormat::S16Le, Conversion::None)],
            Samples::S24Packed => &[
                (PcmFormat::S24Le, Conversion::Packed24ToS24),
                (PcmFormat::S32Le, Conversion::Packed24ToS32),
            ],
            Samples::S32 => &[(PcmFormat::S32Le, Conversion::None)],
            Samples::F32 => &[(PcmFormat::F32Le, Conversion::None)],
            Samples::F64 => &[(PcmFormat::F64Le, Conversion::None)],
            Samples::ALaw => &[(PcmFormat::ALaw, Conversion::None)],
            Samples::MuLaw => &[(PcmFormat::MuLaw, Conversion::None)],
        }
    }
}

/// How file samples become stream samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Byte for byte.
    None,
    /// 3-byte samples to ALSA's S24_LE (low three bytes of a 32-bit word, sign-extended).
    Packed24ToS24,
    /// 3-byte samples to S32_LE (shifted left by 8).
    Packed24ToS32,
}

impl Conversion {
    /// Appends the stream bytes for `input` (whole file samples) to `out`.
    pub fn convert(self, input: &[u8], out: &mut Vec<u8>) {
        match self {
            Conversion::None => out.extend_from_slice(input),
            Conversion::Packed24ToS24 => {
                for s in input.chunks_exact(3) {
                    if let [a, b, c] = *s {
                        let sign = if c & 0x80 != 0 { 0xFF } else { 0x00 };
                        out.extend_from_slice(&[a, b, c, sign]);
                    }
                }
            }
            Conversion::Packed24ToS32 => {
                for s in input.chunks_exact(3) {
                    if let [a, b, c] = *s {
                        out.extend_from_slice(&[0, a, b, c]);
                    }
                }
            }
        }
    }
}

/// What the `fmt ` and `data` chunks say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavInfo {
    /// Sample encoding.
    pub samples: Samples,
    /// Channels (1–255: sndif counts channels in a byte).
    pub channels: u8,
    /// Frames per second.
    pub rate: u32,
    /// Bytes per frame in the file.
    pub block_align: u32,
    /// The data chunk's declared size, `None` if it says "unknown" (0xFFFFFFFF).
    pub data_len: Option<u64>,
}

impl WavInfo {
    /// Frames the data chunk declares, if it declares a size.
    pub fn declared_frames(&self) -> Option<u64> {
        self.data_len
            .map(|l| l / u64::from(self.block_align.max(1)))
    }

    /// `16-bit PCM, 2 channels, 48000 Hz`.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} channel{}, {} Hz",
            self.samples.describe(),
            self.channels,
            if self.channels == 1 { "" } else { "s" },
            self.rate
        )
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

fn malformed(what: impl Into<String>) -> WavError {
    WavError::Malformed(what.into())
}

/// Parses a `fmt ` chunk body into (samples, channels, rate, block_align).
fn parse_fmt(b: &[u8]) -> Result<(Samples, u8, u32, u32), WavError> {
    let short = || malformed(format!("fmt chunk of {} bytes is too short", b.len()));
    let mut tag = u16_at(b, 0).ok_or_else(short)?;
    let channels = u16_at(b, 2).ok_or_else(short)?;
    let rate = u32_at(b, 4).ok_or_else(short)?;
    let block_align = u16_at(b, 12).ok_or_else(short)?;
    let bits = u16_at(b, 14).ok_or_else(short)?;
    if tag == TAG_EXTENSIBLE {
        let sub = b
            .get(24..40)
            .ok_or_else(|| malformed("WAVE_FORMAT_EXTENSIBLE fmt chunk without a sub-format"))?;
        let (head, tail) = sub.split_at(2);
        if tail != GUID_TAIL {
            return Err(WavError::Unsupported(
                "WAVE_FORMAT_EXTENSIBLE with a non-standard sub-format GUID".into(),
            ));
        }
        tag = u16_at(head, 0).ok_or_else(short)?;
    }
    if channels == 0 {
        return Err(malformed("0 channels"));
    }
    let channels = u8::try_from(channels).map_err(|_| {
        WavError::Unsupported(format!("{channels} channels (sndif allows at most 255)"))
    })?;
    if rate == 0 {
        return Err(malformed("sample rate 0"));
    }
    let samples = match (tag, bits) {
        (TAG_PCM, 8) => Samples::U8,
        (TAG_PCM, 16) => Samples::S16,
        (TAG_PCM, 24) => Samples::S24Packed,
        (TAG_PCM, 32) => Samples::S32,
        (TAG_FLOAT, 32) => Samples::F32,
        (TAG_FLOAT, 64) => Samples::F64,
        (TAG_ALAW, 8) => Samples::ALaw,
        (TAG_MULAW, 8) => Samples::MuLaw,
        (TAG_PCM, b) => return Err(WavError::Unsupported(format!("{b}-bit integer PCM"))),
        (TAG_FLOAT, b) => return Err(WavError::Unsupported(format!("{b}-bit float"))),
        (t, _) => {
            return Err(WavError::Unsupported(format!(
                "format tag {t:#06x} (compressed audio; only PCM, float, A-law and mu-law)"
            )))
        }
    };
    let expect = samples.file_bytes() * u32::from(channels);
    if u32::from(block_align) != expect {
        return Err(malformed(format!(
            "block align {block_align} does not match {} × {channels} channels",
            samples.describe()
        )));
    }
    Ok((samples, channels, rate, expect))
}

/// Reads a WAV file's samples, whole frames at a time.
#[derive(Debug)]
pub struct WavReader<R> {
    inner: R,
    info: WavInfo,
    /// Data bytes left according to the header (`None` = until EOF).
    left: Option<u64>,
    /// Bytes of a trailing partial frame that were dropped.
    dropped_tail: u64,
    eof: bool,
}

fn read_exact_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn skip<R: Read>(r: &mut R, n: u64) -> io::Result<u64> {
    io::copy(&mut r.take(n), &mut io::sink())
}

impl<R: Read> WavReader<R> {
    /// Reads the header up to the start of the sample data.
    pub fn new(mut inner: R) -> Result<Self, WavError> {
        let mut riff = [0u8; 12];
        if read_exact_or_eof(&mut inner, &mut riff)? < 12 {
            return Err(WavError::NotWav("shorter than a RIFF header"));
        }
        match (riff.get(0..4), riff.get(8..12)) {
            (Some(b"RIFF"), Some(b"WAVE")) => {}
            (Some(b"RF64"), _) => {
                return Err(WavError::Unsupported("RF64 (files over 4 GiB)".into()))
            }
            (Some(b"RIFX"), _) => {
                return Err(WavError::Unsupported("big-endian RIFX".into()));
            }
            (Some(b"RIFF"), _) => return Err(WavError::NotWav("RIFF, but not WAVE")),
            _ => return Err(WavError::NotWav("no RIFF header")),
        }
        let mut fmt: Option<(Samples, u8, u32, u32)> = None;
        loop {
            let mut head = [0u8; 8];
            if read_exact_or_eof(&mut inner, &mut head)? < 8 {
                return Err(malformed(if fmt.is_some() {
                    "no data chunk"
                } else {
                    "no fmt chunk"
                }));
            }
            let size = u32_at(&head, 4).unwrap_or(0);
            match head.get(0..4) {
                Some(b"fmt ") => {
                    if size > MAX_FMT_LEN {
                        return Err(malformed(format!("fmt chunk of {size} bytes")));
                    }
                    let len = usize::try_from(size).unwrap_or(0);
                    let mut body = vec![0u8; len];
                    if read_exact_or_eof(&mut inner, &mut body)? < len {
                        return Err(malformed("truncated fmt chunk"));
                    }
                    if size % 2 == 1 {
                        skip(&mut inner, 1)?;
                    }
                    fmt = Some(parse_fmt(&body)?);
                }
                Some(b"data") => {
                    let Some((samples, channels, rate, block_align)) = fmt else {
                        return Err(malformed("data chunk before the fmt chunk"));
                    };
                    let data_len = (size != u32::MAX).then_some(u64::from(size));
                    return Ok(WavReader {
                        inner,
                        info: WavInfo {
                            samples,
                            channels,
                            rate,
                            block_align,
                            data_len,
                        },
                        left: data_len,
                        dropped_tail: 0,
                        eof: false,
                    });
                }
                _ => {
                    let want = u64::from(size) + u64::from(size % 2);
                    if skip(&mut inner, want)? < want {
                        return Err(malformed("truncated chunk before the data chunk"));
                    }
                }
            }
        }
    }

    /// The format.
    pub fn info(&self) -> &WavInfo {
        &self.info
    }

    /// Bytes of a trailing partial frame that were dropped (known at the end).
    pub fn dropped_tail(&self) -> u64 {
        self.dropped_tail
    }

    /// Bytes the header declared that the file did not have (known at the end).
    pub fn missing_bytes(&self) -> u64 {
        if self.eof {
            self.left.unwrap_or(0)
        } else {
            0
        }
    }

    /// Fills `buf` with whole frames; returns the bytes read (0 at the end of the data).
    pub fn read_frames(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let fb = usize::try_from(self.info.block_align.max(1)).unwrap_or(1);
        let mut want = buf.len() / fb * fb;
        if let Some(left) = self.left {
            want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        if buf.len() < fb {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "read buffer smaller than one frame",
            ));
        }
        let Some(dst) = buf.get_mut(..want) else {
            return Ok(0);
        };
        let got = read_exact_or_eof(&mut self.inner, dst)?;
        if let Some(left) = self.left.as_mut() {
            *left = left.saturating_sub(u64::try_from(got).unwrap_or(0));
        }
        let whole = got / fb * fb;
        if got < want || self.left == Some(0) {
            self.eof = true;
            self.dropped_tail = u64::try_from(got - whole).unwrap_or(0);
        }
        Ok(whole)
    }
}

/// How a sndif format is stored in a WAV file: (tag, bits per file sample, conversion).
fn wav_layout(format: PcmFormat) -> Option<(u16, u16)> {
    Some(match format {
        PcmFormat::U8 => (TAG_PCM, 8),
        PcmFormat::S16Le => (TAG_PCM, 16),
        PcmFormat::S24Le => (TAG_PCM, 24),
        PcmFormat::S32Le => (TAG_PCM, 32),
        PcmFormat::F32Le => (TAG_FLOAT, 32),
        PcmFormat::F64Le => (TAG_FLOAT, 64),
        PcmFormat::ALaw => (TAG_ALAW, 8),
        PcmFormat::MuLaw => (TAG_MULAW, 8),
        _ => return None,
    })
}

/// Formats a recording can be written in.
pub const WAV_FORMATS: [PcmFormat; 8] = [
    PcmFormat::U8,
    PcmFormat::S16Le,
    PcmFormat::S24Le,
    PcmFormat::S32Le,
    PcmFormat::F32Le,
    PcmFormat::F64Le,
    PcmFormat::ALaw,
    PcmFormat::MuLaw,
];

/// Writes a WAV file from stream bytes; the sizes are fixed up by [`WavWriter::finish`].
#[derive(Debug)]
pub struct WavWriter {
    out: BufWriter<File>,
    data_bytes: u64,
    /// S24_LE stream samples are written packed (3 bytes).
    pack24: bool,
    scratch: Vec<u8>,
}

const HEADER_LEN: u64 = 44;

impl WavWriter {
    /// Creates `path` (truncating it) for `format`, `rate`, `channels`.
    pub fn create(
        path: &Path,
        format: PcmFormat,
        rate: u32,
        channels: u8,
    ) -> Result<WavWriter, WavError> {
        let (tag, bits) = wav_layout(format).ok_or_else(|| {
            WavError::Unsupported(format!("{format} cannot be stored in a WAV file"))
        })?;
        let file = File::create(path)?;
        let mut w = WavWriter {
            out: BufWriter::new(file),
            data_bytes: 0,
            pack24: format == PcmFormat::S24Le,
            scratch: Vec::new(),
        };
        let block = u16::from(channels) * (bits / 8);
        let mut h = Vec::with_capacity(44);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&tag.to_le_bytes());
        h.extend_from_slice(&u16::from(channels).to_le_bytes());
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&(rate.saturating_mul(u32::from(block))).to_le_bytes());
        h.extend_from_slice(&block.to_le_bytes());
        h.extend_from_slice(&bits.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes());
        w.out.write_all(&h)?;
        Ok(w)
    }

    /// Appends stream bytes (whole samples).
    pub fn write(&mut self, stream_bytes: &[u8]) -> io::Result<()> {
        if self.pack24 {
            self.scratch.clear();
            for s in stream_bytes.chunks_exact(4) {
                self.scratch.extend_from_slice(s.get(..3).unwrap_or(&[]));
            }
            self.out.write_all(&self.scratch)?;
            self.data_bytes += u64::try_from(self.scratch.len()).unwrap_or(0);
        } else {
            self.out.write_all(stream_bytes)?;
            self.data_bytes += u64::try_from(stream_bytes.len()).unwrap_or(0);
        }
        Ok(())
    }

    /// Writes the sizes into the header and flushes; returns the data bytes in the file.
    pub fn finish(mut self) -> io::Result<u64> {
        if self.data_bytes % 2 == 1 {
            self.out.write_all(&[0])?;
        }
        let data = u32::try_from(self.data_bytes).unwrap_or(u32::MAX);
        let riff = u32::try_from(self.data_bytes + self.data_bytes % 2 + HEADER_LEN - 8)
            .unwrap_or(u32::MAX);
        self.out.flush()?;
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(4))?;
        file.write_all(&riff.to_le_bytes())?;
        file.seek(SeekFrom::Start(40))?;
        file.write_all(&data.to_le_bytes())?;
        file.sync_all()?;
        Ok(self.data_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tag: u16, channels: u16, rate: u32, bits: u16, extra: &[u8], data: &[u8]) -> Vec<u8> {
        let block = channels * bits.div_ceil(8);
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&tag.to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        fmt.extend_from_slice(&block.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        fmt.extend_from_slice(extra);
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF\0\0\0\0WAVE");
        // An unknown chunk with an odd size (padded) before fmt.
        v.extend_from_slice(b"LIST");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&[1, 2, 3, 0]);
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&u32::try_from(fmt.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&fmt);
        v.extend_from_slice(b"data");
        v.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    fn read_all(bytes: &[u8], chunk: usize) -> (WavInfo, Vec<u8>, u64) {
        let mut r = WavReader::new(bytes).expect("header");
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = r.read_frames(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        (r.info().clone(), out, r.dropped_tail())
    }

    #[test]
    fn pcm16_stereo_is_read_in_whole_frames() {
        let data: Vec<u8> = (0..=255u8).cycle().take(4000).collect();
        let f = header(1, 2, 44_100, 16, &[], &data);
        let (info, out, tail) = read_all(&f, 7);
        assert_eq!(info.samples, Samples::S16);
        assert_eq!((info.channels, info.rate, info.block_align), (2, 44_100, 4));
        assert_eq!(info.declared_frames(), Some(1000));
        assert_eq!(out, data);
        assert_eq!(tail, 0);
        assert_eq!(info.describe(), "16-bit PCM, 2 channels, 44100 Hz");
    }

    #[test]
    fn every_supported_encoding_maps_to_a_format() {
        let cases: [(u16, u16, Samples, PcmFormat); 8] = [
            (1, 8, Samples::U8, PcmFormat::U8),
            (1, 16, Samples::S16, PcmFormat::S16Le),
            (1, 24, Samples::S24Packed, PcmFormat::S24Le),
            (1, 32, Samples::S32, PcmFormat::S32Le),
            (3, 32, Samples::F32, PcmFormat::F32Le),
            (3, 64, Samples::F64, PcmFormat::F64Le),
            (6, 8, Samples::ALaw, PcmFormat::ALaw),
            (7, 8, Samples::MuLaw, PcmFormat::MuLaw),
        ];
        for (tag, bits, samples, format) in cases {
            let f = header(tag, 1, 8000, bits, &[], &[]);
            let r = WavReader::new(&f[..]).expect("header");
            assert_eq!(r.info().samples, samples, "tag {tag} bits {bits}");
            assert_eq!(samples.candidates().first().map(|c| c.0), Some(format));
        }
    }

    #[test]
    fn extensible_float_and_left_aligned_24_in_32() {
        let mut ext = Vec::new();
        ext.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        ext.extend_from_slice(&32u16.to_le_bytes()); // valid bits
        ext.extend_from_slice(&3u32.to_le_bytes()); // channel mask
        ext.extend_from_slice(&3u16.to_le_bytes()); // float sub-format
        ext.extend_from_slice(&GUID_TAIL);
        let f = header(0xFFFE, 2, 96_000, 32, &ext, &[0; 8]);
        let (info, out, _) = read_all(&f, 64);
        assert_eq!(info.samples, Samples::F32);
        assert_eq!(out.len(), 8);
        // 24 valid bits in a 32-bit PCM container.
        ext[2..4].copy_from_slice(&24u16.to_le_bytes());
        ext[8..10].copy_from_slice(&1u16.to_le_bytes());
        let f = header(0xFFFE, 2, 96_000, 32, &ext, &[0; 8]);
        assert_eq!(
            WavReader::new(&f[..]).expect("header").info().samples,
            Samples::S32
        );
        // A foreign GUID is refused.
        ext[12] ^= 0xFF;
        let f = header(0xFFFE, 2, 96_000, 32, &ext, &[0; 8]);
        assert!(matches!(
            WavReader::new(&f[..]),
            Err(WavError::Unsupported(_))
        ));
    }

    #[test]
    fn truncated_and_unknown_length_data() {
        // Header says 100 bytes, file has 10 (2 frames of 4 bytes + 2 stray bytes).
        let mut f = header(1, 2, 8000, 16, &[], &[9; 10]);
        let len = f.len();
        f[len - 14..len - 10].copy_from_slice(&100u32.to_le_bytes());
        let mut r = WavReader::new(&f[..]).expect("header");
        let mut buf = [0u8; 64];
        assert_eq!(r.read_frames(&mut buf).expect("read"), 8);
        assert_eq!(&buf[..8], &[9; 8]);
        assert_eq!(r.read_frames(&mut buf).expect("read"), 0);
        assert_eq!((r.missing_bytes(), r.dropped_tail()), (90, 2));
        // 0xFFFFFFFF: until EOF.
        f[len - 14..len - 10].copy_from_slice(&u32::MAX.to_le_bytes());
        let (info, out, _) = read_all(&f, 5);
        assert_eq!(info.data_len, None);
        assert_eq!(info.declared_frames(), None);
        assert_eq!(out, vec![9; 8]);
        // Declared size with a partial frame at the end: dropped and counted.
        let f = header(1, 2, 8000, 16, &[], &[1; 6]);
        let (_, out, tail) = read_all(&f, 64);
        assert_eq!(out, vec![1; 4]);
        assert_eq!(tail, 2);
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(matches!(
            WavReader::new(&b"hello"[..]),
            Err(WavError::NotWav(_))
        ));
        assert!(matches!(
            WavReader::new(&b"RIFF\0\0\0\0AVI LIST"[..]),
            Err(WavError::NotWav(_))
        ));
        assert!(matches!(
            WavReader::new(&b"RIFF\0\0\0\0WAVE"[..]),
            Err(WavError::Malformed(_))
        ));
        let f = header(1, 2, 8000, 12, &[], &[]);
        let e = WavReader::new(&f[..]).expect_err("12-bit");
        assert_eq!(e.to_string(), "unsupported WAV samples: 12-bit integer PCM");
        let f = header(2, 2, 8000, 4, &[], &[]);
        assert!(matches!(
            WavReader::new(&f[..]),
            Err(WavError::Unsupported(_))
        ));
        let f = header(1, 0, 8000, 16, &[], &[]);
        assert!(matches!(
            WavReader::new(&f[..]),
            Err(WavError::Malformed(_))
        ));
        let mut f = header(1, 2, 8000, 16, &[], &[]);
        // Block align lies.
        let at = 12 + 12 + 8 + 12;
        f[at..at + 2].copy_from_slice(&3u16.to_le_bytes());
        assert!(matches!(
            WavReader::new(&f[..]),
            Err(WavError::Malformed(_))
        ));
    }

    #[test]
    fn packed_24_bit_conversions() {
        let input = [0x01, 0x02, 0x83, 0xFF, 0xFF, 0x7F];
        let mut out = Vec::new();
        Conversion::Packed24ToS24.convert(&input, &mut out);
        assert_eq!(out, [0x01, 0x02, 0x83, 0xFF, 0xFF, 0xFF, 0x7F, 0x00]);
        out.clear();
        Conversion::Packed24ToS32.convert(&input, &mut out);
        assert_eq!(out, [0x00, 0x01, 0x02, 0x83, 0x00, 0xFF, 0xFF, 0x7F]);
        out.clear();
        Conversion::None.convert(&input, &mut out);
        assert_eq!(out, input);
    }

    #[test]
    fn writer_round_trips_through_the_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        for format in WAV_FORMATS {
            let path = dir.path().join(format!("{format}.wav"));
            let bps = format.bytes_per_sample().expect("linear") as usize;
            let raw: Vec<u8> = (0..bps * 2 * 5).map(|i| (i * 7) as u8).collect();
            let mut w = WavWriter::create(&path, format, 22_050, 2).expect("create");
            w.write(&raw).expect("write");
            let n = w.finish().expect("finish");
            let bytes = std::fs::read(&path).expect("read back");
            let (info, data, _) = read_all(&bytes, 1024);
            assert_eq!((info.channels, info.rate), (2, 22_050), "{format}");
            assert_eq!(data.len() as u64, n);
            assert_eq!(info.samples.candidates()[0].0, format);
            if format == PcmFormat::S24Le {
                // Stored packed: the low three bytes of every 4-byte sample.
                let packed: Vec<u8> = raw.chunks(4).flat_map(|s| s[..3].to_vec()).collect();
                assert_eq!(data, packed);
            } else {
                assert_eq!(data, raw, "{format}");
            }
        }
        assert!(matches!(
            WavWriter::create(&dir.path().join("x.wav"), PcmFormat::S16Be, 8000, 1),
            Err(WavError::Unsupported(_))
        ));
    }
}
