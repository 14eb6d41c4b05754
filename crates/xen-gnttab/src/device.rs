//! The open device file and the few system calls made on it.

use std::{
    ffi::c_void,
    fs::OpenOptions,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::fs::OpenOptionsExt,
    },
    path::{Path, PathBuf},
    ptr::NonNull,
};

use crate::error::{open_hint, Error, Result};

/// An open `/dev/xen/gntalloc` or `/dev/xen/gntdev`, shared (via `Arc`) by the handle and every
/// live mapping so the file stays open as long as any mapping exists.
#[derive(Debug)]
pub(crate) struct Device {
    fd: OwnedFd,
    path: PathBuf,
}

impl Device {
    /// Opens `path` read-write, close-on-exec.
    pub(crate) fn open(path: &Path, missing_hint: &'static str) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| Error::Open {
                path: path.to_path_buf(),
                hint: open_hint(&source, missing_hint),
                source,
            })?;
        Ok(Device {
            fd: OwnedFd::from(file),
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `ioctl(fd, request, arg)`.
    ///
    /// # Safety
    ///
    /// `arg` must be valid for reads and writes of as many bytes as the kernel accesses for
    /// `request` on this device, for the duration of the call.
    pub(crate) unsafe fn ioctl(&self, request: u32, arg: *mut c_void) -> io::Result<libc::c_int> {
        // SAFETY: the descriptor is open (owned by `self`); the caller guarantees `arg`.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), ioctl_request(request), arg) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    /// `mmap(NULL, len, prot, MAP_SHARED, fd, offset)`.
    pub(crate) fn mmap(
        &self,
        len: usize,
        prot: libc::c_int,
        offset: u64,
    ) -> io::Result<NonNull<u8>> {
        let offset = libc::off_t::try_from(offset).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mmap offset {offset:#x} does not fit off_t"),
            )
        })?;
        // SAFETY: a new mapping at an address chosen by the kernel (NULL hint, no MAP_FIXED)
        // cannot overlap or invalidate any memory this process already uses.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))
    }
}

/// `munmap(ptr, len)`.
///
/// # Safety
///
/// `ptr`/`len` must be exactly a mapping returned by [`Device::mmap`] that nothing will access
/// any more.
pub(crate) unsafe fn munmap(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is one of our mappings and is no longer used.
    let rc = unsafe { libc::munmap(ptr.as_ptr().cast::<c_void>(), len) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The request number as the C library's `ioctl` declares it (`unsigned long` on glibc, `int` on
/// musl). Every Xen device request is below 2^31, so the conversion keeps the bits.
#[allow(clippy::cast_lossless, clippy::cast_possible_wrap)]
const fn ioctl_request(request: u32) -> libc::Ioctl {
    request as libc::Ioctl
}

/// The device offset of byte `offset` of a mapping of `len` bytes at device offset `index`, or
/// `None` if `offset` is outside the mapping.
pub(crate) fn notify_index(index: u64, len: usize, offset: usize) -> Option<u64> {
    if offset >= len {
        return None;
    }
    index.checked_add(u64::try_from(offset).ok()?)
}

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
