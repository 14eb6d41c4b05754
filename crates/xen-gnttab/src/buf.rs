//! The argument buffer of the variable-length grant ioctls.

use std::ffi::c_void;

/// A zeroed, `u32`-aligned argument buffer for the variable-length ioctls, with native-endian
/// field accessors at byte offsets (taken from `offset_of!` on the `sys` structs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WordBuf(Vec<u32>);

impl WordBuf {
    /// A buffer of at least `bytes` bytes, rounded up to whole `u64`s.
    pub(crate) fn zeroed(bytes: usize) -> Self {
        WordBuf(vec![0; bytes.div_ceil(8) * 2])
    }

    /// Size in bytes.
    #[cfg(test)]
    pub(crate) fn byte_len(&self) -> usize {
        self.0.len() * 4
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut c_void {
        self.0.as_mut_ptr().cast::<c_void>()
    }

    // The offsets below are compile-time layout constants plus indices bounded by the `count`
    // the buffer was sized for, so indexing cannot go out of bounds.

    pub(crate) fn put_u16(&mut self, offset: usize, value: u16) {
        debug_assert_eq!(offset % 2, 0);
        let word = &mut self.0[offset / 4];
        let mut bytes = word.to_ne_bytes();
        let half = offset % 4;
        bytes[half..half + 2].copy_from_slice(&value.to_ne_bytes());
        *word = u32::from_ne_bytes(bytes);
    }

    pub(crate) fn put_u32(&mut self, offset: usize, value: u32) {
        debug_assert_eq!(offset % 4, 0);
        self.0[offset / 4] = value;
    }

    #[cfg(test)]
    pub(crate) fn get_u32(&self, offset: usize) -> u32 {
        debug_assert_eq!(offset % 4, 0);
        self.0[offset / 4]
    }

    pub(crate) fn get_u64(&self, offset: usize) -> u64 {
        debug_assert_eq!(offset % 4, 0);
        let lo = self.0[offset / 4].to_ne_bytes();
        let hi = self.0[offset / 4 + 1].to_ne_bytes();
        u64::from_ne_bytes([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]])
    }

    /// `count` consecutive `u32`s starting at `offset`.
    pub(crate) fn u32s(&self, offset: usize, count: usize) -> &[u32] {
        debug_assert_eq!(offset % 4, 0);
        &self.0[offset / 4..offset / 4 + count]
    }

    #[cfg(test)]
    pub(crate) fn words_mut(&mut self) -> &mut [u32] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_buf_places_fields_at_their_native_byte_offsets() {
        let mut buf = WordBuf::zeroed(20);
        assert_eq!(buf.byte_len(), 24);
        buf.put_u16(0, 0x1234);
        buf.put_u16(2, 0xabcd);
        buf.put_u32(4, 0xdead_beef);
        let mut expected = Vec::new();
        expected.extend_from_slice(&0x1234u16.to_ne_bytes());
        expected.extend_from_slice(&0xabcdu16.to_ne_bytes());
        expected.extend_from_slice(&0xdead_beefu32.to_ne_bytes());
        let bytes: Vec<u8> = buf.0.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(&bytes[..8], &expected[..]);
        assert!(bytes[8..].iter().all(|&b| b == 0));
    }

    #[test]
    fn word_buf_reads_a_u64_written_as_native_bytes() {
        let mut buf = WordBuf::zeroed(16);
        let value = 0x0102_0304_0506_0708u64.to_ne_bytes();
        let words = buf.words_mut();
        words[2] = u32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
        words[3] = u32::from_ne_bytes([value[4], value[5], value[6], value[7]]);
        assert_eq!(buf.get_u64(8), 0x0102_0304_0506_0708);
    }
}
