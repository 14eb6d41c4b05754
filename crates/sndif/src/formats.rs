//! PCM sample formats: wire code ↔ xenstore string ↔ HW_PARAM_QUERY mask bit ↔ sample size.
//!
//! The wire code is `XENSND_PCM_FORMAT_*` from `sndif.h`; the same number is the bit index in the
//! `formats` mask of `HW_PARAM_QUERY`. Xenstore strings are accepted in the header's spelling
//! (`float_le`) and libxl's (`f32_le`), case-insensitively (sndif.md §1.5, pitfall 11).

use core::fmt;

/// One PCM sample format of the sndif protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PcmFormat {
    S8 = 0,
    U8 = 1,
    S16Le = 2,
    S16Be = 3,
    U16Le = 4,
    U16Be = 5,
    S24Le = 6,
    S24Be = 7,
    U24Le = 8,
    U24Be = 9,
    S32Le = 10,
    S32Be = 11,
    U32Le = 12,
    U32Be = 13,
    F32Le = 14,
    F32Be = 15,
    F64Le = 16,
    F64Be = 17,
    Iec958SubframeLe = 18,
    Iec958SubframeBe = 19,
    MuLaw = 20,
    ALaw = 21,
    ImaAdpcm = 22,
    Mpeg = 23,
    Gsm = 24,
}

/// Every format, in wire-code order.
pub const ALL_FORMATS: [PcmFormat; 25] = [
    PcmFormat::S8,
    PcmFormat::U8,
    PcmFormat::S16Le,
    PcmFormat::S16Be,
    PcmFormat::U16Le,
    PcmFormat::U16Be,
    PcmFormat::S24Le,
    PcmFormat::S24Be,
    PcmFormat::U24Le,
    PcmFormat::U24Be,
    PcmFormat::S32Le,
    PcmFormat::S32Be,
    PcmFormat::U32Le,
    PcmFormat::U32Be,
    PcmFormat::F32Le,
    PcmFormat::F32Be,
    PcmFormat::F64Le,
    PcmFormat::F64Be,
    PcmFormat::Iec958SubframeLe,
    PcmFormat::Iec958SubframeBe,
    PcmFormat::MuLaw,
    PcmFormat::ALaw,
    PcmFormat::ImaAdpcm,
    PcmFormat::Mpeg,
    PcmFormat::Gsm,
];

impl PcmFormat {
    /// The wire code (`XENSND_PCM_FORMAT_*`).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The format for a wire code, if it is one the protocol defines.
    pub fn from_code(code: u8) -> Option<Self> {
        ALL_FORMATS.get(usize::from(code)).copied()
    }

    /// The bit of this format in a `HW_PARAM_QUERY` formats mask.
    pub const fn mask_bit(self) -> u64 {
        1u64 << (self as u8)
    }

    /// The xenstore spelling from `sndif.h` (`XENSND_PCM_FORMAT_*_STR`).
    pub const fn xenstore_name(self) -> &'static str {
        match self {
            PcmFormat::S8 => "s8",
            PcmFormat::U8 => "u8",
            PcmFormat::S16Le => "s16_le",
            PcmFormat::S16Be => "s16_be",
            PcmFormat::U16Le => "u16_le",
            PcmFormat::U16Be => "u16_be",
            PcmFormat::S24Le => "s24_le",
            PcmFormat::S24Be => "s24_be",
            PcmFormat::U24Le => "u24_le",
            PcmFormat::U24Be => "u24_be",
            PcmFormat::S32Le => "s32_le",
            PcmFormat::S32Be => "s32_be",
            PcmFormat::U32Le => "u32_le",
            PcmFormat::U32Be => "u32_be",
            PcmFormat::F32Le => "float_le",
            PcmFormat::F32Be => "float_be",
            PcmFormat::F64Le => "float64_le",
            PcmFormat::F64Be => "float64_be",
            PcmFormat::Iec958SubframeLe => "iec958_subframe_le",
            PcmFormat::Iec958SubframeBe => "iec958_subframe_be",
            PcmFormat::MuLaw => "mu_law",
            PcmFormat::ALaw => "a_law",
            PcmFormat::ImaAdpcm => "ima_adpcm",
            PcmFormat::Mpeg => "mpeg",
            PcmFormat::Gsm => "gsm",
        }
    }

    /// libxl's spelling where it differs from the header's (`f32_le` for `float_le`, ...).
    pub const fn libxl_name(self) -> &'static str {
        match self {
            PcmFormat::F32Le => "f32_le",
            PcmFormat::F32Be => "f32_be",
            PcmFormat::F64Le => "f64_le",
            PcmFormat::F64Be => "f64_be",
            other => other.xenstore_name(),
        }
    }

    /// Parse a xenstore format name in either spelling, ignoring ASCII case and surrounding
    /// whitespace.
    pub fn from_xenstore(name: &str) -> Option<Self> {
        let name = name.trim();
        ALL_FORMATS.iter().copied().find(|f| {
            f.xenstore_name().eq_ignore_ascii_case(name)
                || f.libxl_name().eq_ignore_ascii_case(name)
        })
    }

    /// Bytes one sample occupies in the shared buffer, for the linear PCM formats. `None` for
    /// compressed or variable-size formats (IMA ADPCM, MPEG, GSM), which this project does not
    /// stream.
    pub const fn bytes_per_sample(self) -> Option<u32> {
        match self {
            PcmFormat::S8 | PcmFormat::U8 | PcmFormat::MuLaw | PcmFormat::ALaw => Some(1),
            PcmFormat::S16Le | PcmFormat::S16Be | PcmFormat::U16Le | PcmFormat::U16Be => Some(2),
            // ALSA's S24_LE/U24_LE: 24 valid bits in a 4-byte container.
            PcmFormat::S24Le
            | PcmFormat::S24Be
            | PcmFormat::U24Le
            | PcmFormat::U24Be
            | PcmFormat::S32Le
            | PcmFormat::S32Be
            | PcmFormat::U32Le
            | PcmFormat::U32Be
            | PcmFormat::F32Le
            | PcmFormat::F32Be
            | PcmFormat::Iec958SubframeLe
            | PcmFormat::Iec958SubframeBe => Some(4),
            PcmFormat::F64Le | PcmFormat::F64Be => Some(8),
            PcmFormat::ImaAdpcm | PcmFormat::Mpeg | PcmFormat::Gsm => None,
        }
    }
}

impl PcmFormat {
    /// The bytes of one silent sample: zero for signed and float formats, the midpoint for
    /// unsigned ones, the codec's silence for µ-law and A-law.
    pub const fn silence(self) -> &'static [u8] {
        match self {
            PcmFormat::U8 => &[0x80],
            PcmFormat::U16Le => &[0x00, 0x80],
            PcmFormat::U16Be => &[0x80, 0x00],
            PcmFormat::U24Le => &[0x00, 0x00, 0x80, 0x00],
            PcmFormat::U24Be => &[0x00, 0x80, 0x00, 0x00],
            PcmFormat::U32Le => &[0x00, 0x00, 0x00, 0x80],
            PcmFormat::U32Be => &[0x80, 0x00, 0x00, 0x00],
            PcmFormat::MuLaw => &[0xff],
            PcmFormat::ALaw => &[0xd5],
            _ => &[0x00],
        }
    }
}

impl fmt::Display for PcmFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.xenstore_name())
    }
}

/// A set of formats, stored as a `HW_PARAM_QUERY` mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FormatSet(pub u64);

impl FormatSet {
    /// The mask bits that name a defined format.
    pub const VALID_BITS: u64 = (1u64 << ALL_FORMATS.len()) - 1;

    pub const fn empty() -> Self {
        FormatSet(0)
    }

    pub fn contains(self, f: PcmFormat) -> bool {
        self.0 & f.mask_bit() != 0
    }

    pub fn insert(&mut self, f: PcmFormat) {
        self.0 |= f.mask_bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 & Self::VALID_BITS == 0
    }

    pub fn intersect(self, other: FormatSet) -> FormatSet {
        FormatSet(self.0 & other.0)
    }

    /// Formats in the set, in wire-code order; bits that name no format are skipped.
    pub fn iter(self) -> impl Iterator<Item = PcmFormat> {
        ALL_FORMATS.into_iter().filter(move |f| self.contains(*f))
    }
}

impl FromIterator<PcmFormat> for FormatSet {
    fn from_iter<I: IntoIterator<Item = PcmFormat>>(iter: I) -> Self {
        let mut s = FormatSet::empty();
        for f in iter {
            s.insert(f);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_position() {
        for (i, f) in ALL_FORMATS.iter().enumerate() {
            assert_eq!(usize::from(f.code()), i);
            assert_eq!(PcmFormat::from_code(f.code()), Some(*f));
        }
        assert_eq!(PcmFormat::from_code(25), None);
        assert_eq!(PcmFormat::from_code(255), None);
    }

    #[test]
    fn both_spellings_parse_case_insensitively() {
        assert_eq!(PcmFormat::from_xenstore("float_le"), Some(PcmFormat::F32Le));
        assert_eq!(PcmFormat::from_xenstore("F32_LE"), Some(PcmFormat::F32Le));
        assert_eq!(PcmFormat::from_xenstore(" f64_be "), Some(PcmFormat::F64Be));
        assert_eq!(
            PcmFormat::from_xenstore("Float64_BE"),
            Some(PcmFormat::F64Be)
        );
        assert_eq!(PcmFormat::from_xenstore("S16_LE"), Some(PcmFormat::S16Le));
        assert_eq!(PcmFormat::from_xenstore("s16le"), None);
        assert_eq!(PcmFormat::from_xenstore(""), None);
    }

    #[test]
    fn every_name_parses_back() {
        for f in ALL_FORMATS {
            assert_eq!(PcmFormat::from_xenstore(f.xenstore_name()), Some(f));
            assert_eq!(PcmFormat::from_xenstore(f.libxl_name()), Some(f));
        }
    }

    #[test]
    fn sample_sizes() {
        assert_eq!(PcmFormat::U8.bytes_per_sample(), Some(1));
        assert_eq!(PcmFormat::S16Be.bytes_per_sample(), Some(2));
        assert_eq!(PcmFormat::S24Le.bytes_per_sample(), Some(4));
        assert_eq!(PcmFormat::F64Le.bytes_per_sample(), Some(8));
        assert_eq!(PcmFormat::Gsm.bytes_per_sample(), None);
    }

    #[test]
    fn format_set_ignores_undefined_bits() {
        let s = FormatSet(u64::MAX);
        assert_eq!(s.iter().count(), 25);
        assert!(FormatSet(1 << 40).is_empty());
        let t: FormatSet = [PcmFormat::S16Le, PcmFormat::F32Le].into_iter().collect();
        assert_eq!(t.0, (1 << 2) | (1 << 14));
        assert!(t.contains(PcmFormat::F32Le));
        assert!(!t.contains(PcmFormat::U8));
    }
}
