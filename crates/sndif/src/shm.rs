//! Access to memory shared with the other domain.
//!
//! The other side can change shared pages at any moment, so nothing here hands out Rust
//! references into them: index words are accessed as atomics (`Acquire` loads, `Release`
//! stores), everything else with volatile copies into or out of private buffers. Callers parse
//! only those private copies.
//!
//! Ordering (sndif.md §4.2): a `Release` store publishes everything written before it, an
//! `Acquire` load makes the peer's writes before its index update visible. Between publishing an
//! index and reading the peer's notification threshold, the ring code issues
//! [`fence`]`(SeqCst)` (the `mb()` of `ring.h`); on Arm this is a full `dmb`, so nothing relies on
//! x86 store ordering.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use std::alloc::Layout;
use std::sync::Arc;

pub use core::sync::atomic::fence;

use crate::layout::XEN_PAGE_SIZE;

/// A mapping of shared memory (a grant mapping, a gntalloc page set, or a heap allocation).
///
/// # Safety
///
/// Implementors guarantee that `as_ptr()..as_ptr() + len()` stays mapped and valid for reads and
/// writes for as long as the object lives, that `as_ptr()` and `len()` always return the same
/// values, and that `as_ptr()` is at least 8-byte aligned. The memory may be written concurrently
/// by another party; users access it only through volatile or atomic operations.
pub unsafe trait MappedRegion: Send + Sync {
    /// Start of the mapping.
    fn as_ptr(&self) -> *mut u8;
    /// Length of the mapping in bytes.
    fn len(&self) -> usize;
    /// Whether the mapping is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Errors from [`SharedMem`] accessors and [`HeapRegion`] allocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShmError {
    /// An access went past the end of the view.
    #[error("shared memory {op}: {len} bytes at offset {offset} exceed the {size}-byte view")]
    OutOfRange {
        /// The operation (`load_u32`, `read_bytes`, ...).
        op: &'static str,
        /// Offset of the access within the view.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// Size of the view.
        size: usize,
    },
    /// An atomic access at an address that is not 4-byte aligned.
    #[error("shared memory {op}: offset {offset} is not 4-byte aligned")]
    Misaligned {
        /// The operation.
        op: &'static str,
        /// Offset of the access within the view.
        offset: usize,
    },
    /// A heap region of zero pages (or of more bytes than the address space) was requested.
    #[error("heap region of {pages} pages cannot be allocated: invalid size")]
    InvalidSize {
        /// Requested page count.
        pages: usize,
    },
    /// The allocator failed.
    #[error("heap region of {pages} pages: allocation failed")]
    AllocFailed {
        /// Requested page count.
        pages: usize,
    },
}

/// A view of part of a [`MappedRegion`]; cheap to clone (the region is reference counted).
#[derive(Clone)]
pub struct SharedMem {
    region: Arc<dyn MappedRegion>,
    offset: usize,
    len: usize,
}

impl fmt::Debug for SharedMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMem")
            .field("base", &self.region.as_ptr())
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

impl SharedMem {
    /// A view of the whole region.
    pub fn new(region: Arc<dyn MappedRegion>) -> Self {
        let len = region.len();
        SharedMem {
            region,
            offset: 0,
            len,
        }
    }

    /// `pages` zeroed, page-aligned heap pages (for tests and fakes).
    pub fn heap_pages(pages: usize) -> Result<Self, ShmError> {
        Ok(SharedMem::new(Arc::new(HeapRegion::new(pages)?)))
    }

    /// A sub-view `offset..offset + len` of this view, or `None` if it does not fit.
    pub fn sub(&self, offset: usize, len: usize) -> Option<SharedMem> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        Some(SharedMem {
            region: Arc::clone(&self.region),
            offset: self.offset.checked_add(offset)?,
            len,
        })
    }

    /// Page `index` (4096 bytes) of this view, or `None` if it does not fit.
    pub fn page(&self, index: usize) -> Option<SharedMem> {
        self.sub(index.checked_mul(XEN_PAGE_SIZE)?, XEN_PAGE_SIZE)
    }

    /// Length of the view in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pointer to byte `off` of the view after checking that `off..off + len` is inside it.
    fn ptr_checked(&self, op: &'static str, off: usize, len: usize) -> Result<*mut u8, ShmError> {
        let out_of_range = ShmError::OutOfRange {
            op,
            offset: off,
            len,
            size: self.len,
        };
        match off.checked_add(len) {
            Some(end) if end <= self.len => {}
            _ => return Err(out_of_range),
        }
        // SAFETY: `self.offset + self.len <= region.len()` (checked in `sub`, equal in `new`) and
        // `off + len <= self.len`, so the result points into (or one past the end of) the mapping
        // that `MappedRegion` guarantees to be valid.
        Ok(unsafe { self.region.as_ptr().add(self.offset + off) })
    }

    /// A checked, 4-byte aligned pointer to the u32 at `off`.
    fn atomic_u32(&self, op: &'static str, off: usize) -> Result<&AtomicU32, ShmError> {
        let p = self.ptr_checked(op, off, 4)?;
        if (p as usize) % core::mem::align_of::<AtomicU32>() != 0 {
            return Err(ShmError::Misaligned { op, offset: off });
        }
        // SAFETY: `p` is in bounds for 4 bytes (checked above), aligned for `AtomicU32` (checked
        // above), and valid for reads and writes while `self` holds the region (`MappedRegion`
        // contract); the returned reference borrows `self`, so it cannot outlive the mapping. All
        // accesses to index words in this crate are atomic.
        Ok(unsafe { AtomicU32::from_ptr(p.cast::<u32>()) })
    }

    /// Atomic load of the u32 at `off` with `Acquire` ordering (an index word of a ring).
    pub fn load_u32(&self, off: usize) -> Result<u32, ShmError> {
        Ok(self.atomic_u32("load_u32", off)?.load(Ordering::Acquire))
    }

    /// Atomic store of the u32 at `off` with `Release` ordering: everything written before is
    /// visible to a peer that reads this word with `Acquire`.
    pub fn store_u32(&self, off: usize, value: u32) -> Result<(), ShmError> {
        self.atomic_u32("store_u32", off)?
            .store(value, Ordering::Release);
        Ok(())
    }

    /// Volatile copy of `buf.len()` bytes at `off` into `buf`. Does not allocate; copies 8 bytes
    /// at a time where the shared address is aligned.
    pub fn read_bytes(&self, off: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        let src = self.ptr_checked("read_bytes", off, buf.len())?;
        let head_len = unaligned_head(src, buf.len());
        let (head, rest) = buf.split_at_mut(head_len);
        for (i, b) in head.iter_mut().enumerate() {
            // SAFETY: `src..src + buf.len()` is in bounds (checked above) and `i < head_len <=
            // buf.len()`.
            *b = unsafe { src.add(i).read_volatile() };
        }
        // SAFETY: `head_len <= buf.len()`, still inside the checked range.
        let mut word = unsafe { src.add(head_len) }.cast::<u64>();
        let mut chunks = rest.chunks_exact_mut(8);
        for chunk in &mut chunks {
            // SAFETY: `word` is 8-byte aligned (the head brought it to alignment) and the 8 bytes
            // it points to lie inside the checked range because `chunk` is a full 8-byte chunk
            // of the remaining length.
            let w = unsafe { word.read_volatile() };
            chunk.copy_from_slice(&w.to_ne_bytes());
            // SAFETY: at most one past the last full chunk, still within or at the end of the
            // checked range.
            word = unsafe { word.add(1) };
        }
        let tail_src = word.cast::<u8>();
        for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
            // SAFETY: the remainder bytes follow the full chunks inside the checked range.
            *b = unsafe { tail_src.add(i).read_volatile() };
        }
        Ok(())
    }

    /// Volatile copy of `data` into the view at `off`. Does not allocate; copies 8 bytes at a
    /// time where the shared address is aligned.
    pub fn write_bytes(&self, off: usize, data: &[u8]) -> Result<(), ShmError> {
        let dst = self.ptr_checked("write_bytes", off, data.len())?;
        let head_len = unaligned_head(dst, data.len());
        let (head, rest) = data.split_at(head_len);
        for (i, b) in head.iter().enumerate() {
            // SAFETY: `dst..dst + data.len()` is in bounds (checked above) and `i < head_len`.
            unsafe { dst.add(i).write_volatile(*b) };
        }
        // SAFETY: `head_len <= data.len()`, still inside the checked range.
        let mut word = unsafe { dst.add(head_len) }.cast::<u64>();
        let mut chunks = rest.chunks_exact(8);
        for chunk in &mut chunks {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            // SAFETY: `word` is 8-byte aligned and its 8 bytes lie inside the checked range (one
            // full chunk of the remaining length).
            unsafe { word.write_volatile(u64::from_ne_bytes(bytes)) };
            // SAFETY: at most one past the last full chunk, within or at the end of the range.
            word = unsafe { word.add(1) };
        }
        let tail_dst = word.cast::<u8>();
        for (i, b) in chunks.remainder().iter().enumerate() {
            // SAFETY: the remainder bytes follow the full chunks inside the checked range.
            unsafe { tail_dst.add(i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Volatile fill of `len` bytes at `off` with `byte`.
    pub fn fill(&self, off: usize, len: usize, byte: u8) -> Result<(), ShmError> {
        let dst = self.ptr_checked("fill", off, len)?;
        let head_len = unaligned_head(dst, len);
        for i in 0..head_len {
            // SAFETY: `i < head_len <= len`, inside the checked range.
            unsafe { dst.add(i).write_volatile(byte) };
        }
        let words = (len - head_len) / 8;
        let pattern = u64::from_ne_bytes([byte; 8]);
        // SAFETY: `head_len <= len`, inside the checked range.
        let word = unsafe { dst.add(head_len) }.cast::<u64>();
        for i in 0..words {
            // SAFETY: aligned (after the head) and `head_len + 8 * (i + 1) <= len`.
            unsafe { word.add(i).write_volatile(pattern) };
        }
        let tail_start = head_len + words * 8;
        for i in tail_start..len {
            // SAFETY: `i < len`, inside the checked range.
            unsafe { dst.add(i).write_volatile(byte) };
        }
        Ok(())
    }
}

/// Number of leading bytes to copy one by one before `p` is 8-byte aligned, capped at `len`.
fn unaligned_head(p: *const u8, len: usize) -> usize {
    let misalign = (p as usize) % 8;
    let head = if misalign == 0 { 0 } else { 8 - misalign };
    head.min(len)
}

/// Zeroed, page-aligned heap memory standing in for shared pages in tests and fakes.
#[derive(Debug)]
pub struct HeapRegion {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: `HeapRegion` owns its allocation exclusively; the raw pointer is only a handle, and all
// access through `SharedMem` is atomic or volatile, as for any shared mapping.
unsafe impl Send for HeapRegion {}
// SAFETY: see `Send`; `&HeapRegion` exposes only the pointer and length.
unsafe impl Sync for HeapRegion {}

impl HeapRegion {
    /// Allocate `pages` zeroed pages aligned to 4096 bytes. Zero pages is an error.
    pub fn new(pages: usize) -> Result<Self, ShmError> {
        let size = pages
            .checked_mul(XEN_PAGE_SIZE)
            .filter(|s| *s > 0)
            .ok_or(ShmError::InvalidSize { pages })?;
        let layout = Layout::from_size_align(size, XEN_PAGE_SIZE)
            .map_err(|_| ShmError::InvalidSize { pages })?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(ShmError::AllocFailed { pages })?;
        Ok(HeapRegion { ptr, layout })
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed` with exactly this layout and is freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

// SAFETY: the allocation lives until `drop`, is page aligned (≥ 8) and `layout.size()` bytes long;
// pointer and length never change.
unsafe impl MappedRegion for HeapRegion {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn len(&self) -> usize {
        self.layout.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> SharedMem {
        SharedMem::heap_pages(2).expect("heap pages")
    }

    #[test]
    fn heap_region_is_zeroed_and_page_aligned() {
        let r = HeapRegion::new(3).expect("alloc");
        assert_eq!(r.len(), 3 * XEN_PAGE_SIZE);
        assert_eq!(r.as_ptr() as usize % XEN_PAGE_SIZE, 0);
        let m = SharedMem::new(Arc::new(r));
        let mut buf = vec![0xaau8; 3 * XEN_PAGE_SIZE];
        m.read_bytes(0, &mut buf).expect("read");
        assert!(buf.iter().all(|b| *b == 0));
    }

    #[test]
    fn zero_pages_is_an_error() {
        assert_eq!(
            HeapRegion::new(0).err(),
            Some(ShmError::InvalidSize { pages: 0 })
        );
        assert_eq!(
            HeapRegion::new(usize::MAX).err(),
            Some(ShmError::InvalidSize { pages: usize::MAX })
        );
    }

    #[test]
    fn u32_round_trip_and_little_endian_layout() {
        let m = mem();
        m.store_u32(8, 0x1234_5678).expect("store");
        assert_eq!(m.load_u32(8), Ok(0x1234_5678));
        let mut b = [0u8; 4];
        m.read_bytes(8, &mut b).expect("read");
        assert_eq!(u32::from_ne_bytes(b), 0x1234_5678);
    }

    #[test]
    fn u32_access_checks_range_and_alignment() {
        let m = mem();
        let size = m.len();
        assert!(matches!(
            m.load_u32(size - 2),
            Err(ShmError::OutOfRange { op: "load_u32", .. })
        ));
        assert!(matches!(
            m.load_u32(usize::MAX),
            Err(ShmError::OutOfRange { .. })
        ));
        assert_eq!(
            m.store_u32(2, 1),
            Err(ShmError::Misaligned {
                op: "store_u32",
                offset: 2
            })
        );
        // Alignment is about the absolute address: offset 0 of a view starting at byte 2.
        let odd = m.sub(2, 16).expect("sub");
        assert!(matches!(odd.load_u32(0), Err(ShmError::Misaligned { .. })));
        assert_eq!(odd.load_u32(2), Ok(0));
        assert!(m.load_u32(size - 4).is_ok());
    }

    #[test]
    fn sub_views_are_bounded_and_offset() {
        let m = mem();
        assert!(m.sub(0, m.len()).is_some());
        assert!(m.sub(1, m.len()).is_none());
        assert!(m.sub(usize::MAX, 2).is_none());
        let p1 = m.page(1).expect("page 1");
        assert!(m.page(2).is_none());
        assert_eq!(p1.len(), XEN_PAGE_SIZE);
        p1.store_u32(0, 0xdead_beef).expect("store");
        assert_eq!(m.load_u32(XEN_PAGE_SIZE), Ok(0xdead_beef));
        assert!(p1.sub(4096, 1).is_none());
        assert!(matches!(
            p1.read_bytes(4090, &mut [0u8; 8]),
            Err(ShmError::OutOfRange { .. })
        ));
    }

    #[test]
    fn byte_copies_at_every_alignment_and_length() {
        let m = mem();
        let pattern: Vec<u8> = (0..200u32)
            .map(|i| u8::try_from(i * 7 % 251).unwrap_or(0))
            .collect();
        for off in 0..17 {
            for len in [0usize, 1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200] {
                m.fill(0, 256, 0xee).expect("fill");
                let data = pattern.get(..len).expect("pattern long enough");
                m.write_bytes(off, data).expect("write");
                let mut back = vec![0u8; len + 2];
                m.read_bytes(off, &mut back[..len]).expect("read");
                assert_eq!(&back[..len], data, "off {off} len {len}");
                // Neighbouring bytes untouched.
                let mut around = [0u8; 1];
                if off > 0 {
                    m.read_bytes(off - 1, &mut around).expect("read before");
                    assert_eq!(around[0], 0xee, "byte before, off {off} len {len}");
                }
                m.read_bytes(off + len, &mut around).expect("read after");
                assert_eq!(around[0], 0xee, "byte after, off {off} len {len}");
            }
        }
    }

    #[test]
    fn fill_is_exact() {
        let m = mem();
        for off in 0..9 {
            for len in [0usize, 1, 5, 8, 13, 31] {
                m.fill(0, 64, 0).expect("clear");
                m.fill(off, len, 0x5a).expect("fill");
                let mut b = [0u8; 64];
                m.read_bytes(0, &mut b).expect("read");
                for (i, v) in b.iter().enumerate() {
                    let inside = i >= off && i < off + len;
                    assert_eq!(
                        *v,
                        if inside { 0x5a } else { 0 },
                        "off {off} len {len} i {i}"
                    );
                }
            }
        }
        assert!(matches!(
            m.fill(m.len() - 3, 4, 0),
            Err(ShmError::OutOfRange { op: "fill", .. })
        ));
    }

    #[test]
    fn writes_are_visible_through_other_clones() {
        let a = mem();
        let b = a.clone();
        a.write_bytes(100, b"hello").expect("write");
        let mut out = [0u8; 5];
        b.read_bytes(100, &mut out).expect("read");
        assert_eq!(&out, b"hello");
        let dbg = format!("{b:?}");
        assert!(dbg.contains("len: 8192"), "{dbg}");
    }
}
