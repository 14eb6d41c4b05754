//! The guest's side of a xenstore ring page (`struct xenstore_domain_interface`, `xs_wire.h`),
//! backed by a 4 KiB file that the fakexen shim maps into xenstored as the domain's
//! "grant".
//!
//! Layout: `req[1024]` at 0, `rsp[1024]` at 1024, then `u32 req_cons, req_prod, rsp_cons,
//! rsp_prod, server_features, connection, error` at 2048.. . The guest produces requests
//! (`req_prod`) and consumes responses (`rsp_cons`); xenstored does the opposite.
//!
//! The page is shared with another process, so it is never viewed as a Rust slice: the indices
//! are accessed as atomics, the data bytes with volatile reads and writes, with fences ordering
//! them exactly as the Linux xenbus driver does.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use memmap2::{MmapMut, MmapOptions};

use crate::{Error, Result};

/// `XENSTORE_RING_SIZE`.
pub const RING_SIZE: u32 = 1024;
/// Size of the whole page (and of the backing file).
pub const PAGE_SIZE: usize = 4096;

const REQ_OFF: usize = 0;
const RSP_OFF: usize = 1024;
const REQ_CONS: usize = 2048;
const REQ_PROD: usize = 2052;
const RSP_CONS: usize = 2056;
const RSP_PROD: usize = 2060;

/// The peer left the ring indices in an impossible state (`prod - cons > RING_SIZE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("corrupt xenstore ring indices: cons {cons}, prod {prod}")]
pub struct RingCorrupt {
    /// Consumer index read.
    pub cons: u32,
    /// Producer index read.
    pub prod: u32,
}

/// A mapped ring page, guest side.
#[derive(Debug)]
pub struct GuestRing {
    // Keeps the mapping alive; never dereferenced as a slice (see the module doc).
    _map: MmapMut,
    base: NonNull<u8>,
}

// SAFETY: the page is only accessed through atomics and volatile byte accesses via `base`,
// which stays valid as long as `_map` lives; the bridge uses one `GuestRing` from one thread at a
// time, and moving it between threads is sound.
unsafe impl Send for GuestRing {}

impl GuestRing {
    /// Create (or truncate) `path` as a zeroed 4 KiB page and map it shared.
    pub fn create(path: &Path) -> Result<GuestRing> {
        let io = |e| Error::io(format!("creating ring page {}", path.display()), e);
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io)?;
        file.set_len(PAGE_SIZE as u64).map_err(io)?;
        // SAFETY: the file is our own, exactly PAGE_SIZE long, and is never truncated while
        // mapped. Another process (xenstored) maps it too and writes it concurrently, which is
        // why this mapping is only ever accessed through atomics and volatile byte accesses (never
        // as a `&[u8]`/`&mut [u8]`).
        let mut map = unsafe { MmapOptions::new().len(PAGE_SIZE).map_mut(&file) }.map_err(io)?;
        let base = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| Error::protocol(path.display().to_string(), "mmap returned null"))?;
        Ok(GuestRing { _map: map, base })
    }

    fn index(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off + 4 <= PAGE_SIZE);
        // SAFETY: `off` is one of the four 4-aligned index offsets inside the live, page-aligned
        // mapping; AtomicU32 has the layout of u32 and atomics are the sanctioned way to share a
        // word with another process.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU32>() }
    }

    fn write_byte(&self, off: usize, b: u8) {
        debug_assert!(off < PAGE_SIZE);
        // SAFETY: off < PAGE_SIZE, inside the live mapping; volatile because the peer reads it.
        unsafe { self.base.as_ptr().add(off).write_volatile(b) }
    }

    fn read_byte(&self, off: usize) -> u8 {
        debug_assert!(off < PAGE_SIZE);
        // SAFETY: off < PAGE_SIZE, inside the live mapping; volatile because the peer writes it.
        unsafe { self.base.as_ptr().add(off).read_volatile() }
    }

    /// Copy as much of `data` as fits into the request ring; returns how many bytes went in.
    pub fn write_requests(&self, data: &[u8]) -> std::result::Result<usize, RingCorrupt> {
        let cons = self.index(REQ_CONS).load(Ordering::Acquire);
        let prod = self.index(REQ_PROD).load(Ordering::Relaxed);
        let used = prod.wrapping_sub(cons);
        if used > RING_SIZE {
            return Err(RingCorrupt { cons, prod });
        }
        // The consumer index must be read before we overwrite the bytes it released.
        fence(Ordering::SeqCst);
        let n = data.len().min((RING_SIZE - used) as usize);
        for (i, &b) in data.iter().take(n).enumerate() {
            let idx = prod.wrapping_add(i as u32) & (RING_SIZE - 1);
            self.write_byte(REQ_OFF + idx as usize, b);
        }
        // Data before the producer index.
        fence(Ordering::Release);
        self.index(REQ_PROD)
            .store(prod.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }

    /// Move every available response byte to the end of `out`; returns how many.
    pub fn read_responses(&self, out: &mut Vec<u8>) -> std::result::Result<usize, RingCorrupt> {
        let prod = self.index(RSP_PROD).load(Ordering::Acquire);
        let cons = self.index(RSP_CONS).load(Ordering::Relaxed);
        let avail = prod.wrapping_sub(cons);
        if avail > RING_SIZE {
            return Err(RingCorrupt { cons, prod });
        }
        // The producer index before the data it covers.
        fence(Ordering::Acquire);
        for i in 0..avail {
            let idx = cons.wrapping_add(i) & (RING_SIZE - 1);
            out.push(self.read_byte(RSP_OFF + idx as usize));
        }
        // Finish reading before handing the space back.
        fence(Ordering::SeqCst);
        self.index(RSP_CONS)
            .store(cons.wrapping_add(avail), Ordering::Release);
        Ok(avail as usize)
    }

    /// Bytes of requests xenstored has not consumed yet.
    pub fn requests_pending(&self) -> u32 {
        let prod = self.index(REQ_PROD).load(Ordering::Relaxed);
        prod.wrapping_sub(self.index(REQ_CONS).load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Play xenstored on a second mapping of the same file: consume requests, produce replies.
    struct Server {
        _map: MmapMut,
        base: *mut u8,
    }

    impl Server {
        fn open(path: &Path) -> Server {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .expect("open");
            // SAFETY: same file, PAGE_SIZE long; accessed with atomics/volatile only.
            let mut map = unsafe { MmapOptions::new().len(PAGE_SIZE).map_mut(&f) }.expect("map");
            let base = map.as_mut_ptr();
            Server { _map: map, base }
        }
        fn idx(&self, off: usize) -> &AtomicU32 {
            // SAFETY: aligned index inside the mapping.
            unsafe { &*self.base.add(off).cast::<AtomicU32>() }
        }
        fn take_requests(&self) -> Vec<u8> {
            let (c, p) = (
                self.idx(REQ_CONS).load(Ordering::Acquire),
                self.idx(REQ_PROD).load(Ordering::Acquire),
            );
            let v = (c..p)
                // SAFETY: offset < 1024 inside the mapping.
                .map(|i| unsafe { self.base.add(REQ_OFF + (i & 1023) as usize).read_volatile() })
                .collect();
            self.idx(REQ_CONS).store(p, Ordering::Release);
            v
        }
        fn reply(&self, data: &[u8]) {
            let p = self.idx(RSP_PROD).load(Ordering::Acquire);
            for (i, &b) in data.iter().enumerate() {
                let o = RSP_OFF + (p.wrapping_add(i as u32) & 1023) as usize;
                // SAFETY: offset inside the mapping.
                unsafe { self.base.add(o).write_volatile(b) };
            }
            self.idx(RSP_PROD)
                .store(p.wrapping_add(data.len() as u32), Ordering::Release);
        }
    }

    #[test]
    fn requests_and_responses_cross_the_page_and_wrap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dom7.ring");
        let ring = GuestRing::create(&path).expect("ring");
        let server = Server::open(&path);

        // Fill the request ring completely: only 1024 bytes fit.
        let big: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(ring.write_requests(&big), Ok(1024));
        assert_eq!(ring.write_requests(&big[1024..]), Ok(0));
        assert_eq!(ring.requests_pending(), 1024);
        assert_eq!(server.take_requests(), big[..1024].to_vec());
        // The rest goes in across the wrap point.
        assert_eq!(ring.write_requests(&big[1024..]), Ok(476));
        assert_eq!(server.take_requests(), big[1024..].to_vec());

        let mut out = Vec::new();
        for chunk in big.chunks(700) {
            server.reply(chunk);
            assert_eq!(ring.read_responses(&mut out), Ok(chunk.len()));
        }
        assert_eq!(out, big);
    }

    #[test]
    fn corrupt_indices_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dom7.ring");
        let ring = GuestRing::create(&path).expect("ring");
        let server = Server::open(&path);
        server.idx(RSP_PROD).store(5000, Ordering::Release);
        let mut out = Vec::new();
        assert_eq!(
            ring.read_responses(&mut out),
            Err(RingCorrupt {
                cons: 0,
                prod: 5000
            })
        );
        assert!(out.is_empty());
    }
}
