//! Sharing our own pages with another domain through `/dev/xen/gntalloc` (the frontend side).

use std::{
    ffi::c_void,
    fmt,
    mem::{offset_of, size_of},
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    path::Path,
    ptr::NonNull,
    sync::Arc,
};

use crate::{
    device::{munmap, notify_index, Device, WordBuf},
    error::{ioctl_hint, Error, Result},
    sys::{
        IoctlGntallocAllocGref, IoctlGntallocDeallocGref, IoctlGntallocUnmapNotify,
        GNTALLOC_FLAG_WRITABLE, IOCTL_GNTALLOC_ALLOC_GREF, IOCTL_GNTALLOC_DEALLOC_GREF,
        IOCTL_GNTALLOC_SET_UNMAP_NOTIFY, UNMAP_NOTIFY_CLEAR_BYTE, UNMAP_NOTIFY_SEND_EVENT,
        XEN_PAGE_SIZE,
    },
    MAX_PAGES,
};

/// Default path of the grant-sharing device.
pub const GNTALLOC_PATH: &str = "/dev/xen/gntalloc";

const MISSING_HINT: &str =
    " (the device exists only in a Xen domain with the `xen_gntalloc` kernel module loaded)";
const LIMIT_HINT: &str = " (the guest-wide gntalloc limit, module parameter `limit`, defaults to \
                          1024 grants; other streams and programs share it)";

/// What the kernel does for the other domain when a page is finally unmapped and released here,
/// e.g. because this process died: clear a byte and/or send an event.
///
/// The notification belongs to the page that contains `offset`; setting another one on the same
/// page replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnmapNotify {
    /// Byte offset into the mapping: selects the page and, with `clear_byte`, the byte.
    pub offset: usize,
    /// Set the byte at `offset` to zero (`UNMAP_NOTIFY_CLEAR_BYTE`).
    pub clear_byte: bool,
    /// Send an event on this local event-channel port (`UNMAP_NOTIFY_SEND_EVENT`). The port must
    /// be bound through `/dev/xen/evtchn` when the notification is set.
    pub send_event: Option<u32>,
}

impl UnmapNotify {
    /// Clear the byte at `offset`.
    pub const fn clear_byte(offset: usize) -> Self {
        UnmapNotify {
            offset,
            clear_byte: true,
            send_event: None,
        }
    }

    /// Send an event on `port` when the first page is released.
    pub const fn send_event(port: u32) -> Self {
        UnmapNotify {
            offset: 0,
            clear_byte: false,
            send_event: Some(port),
        }
    }

    /// The same notification, also sending an event on `port`.
    pub const fn and_send_event(self, port: u32) -> Self {
        UnmapNotify {
            send_event: Some(port),
            ..self
        }
    }

    /// The `UNMAP_NOTIFY_*` action bits (0 removes a notification).
    pub const fn action(&self) -> u32 {
        let mut action = 0;
        if self.clear_byte {
            action |= UNMAP_NOTIFY_CLEAR_BYTE;
        }
        if self.send_event.is_some() {
            action |= UNMAP_NOTIFY_SEND_EVENT;
        }
        action
    }

    fn port(&self) -> u32 {
        self.send_event.unwrap_or(0)
    }
}

impl fmt::Display for UnmapNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.clear_byte, self.send_event) {
            (true, Some(port)) => write!(
                f,
                "clear byte at offset {} and send an event on port {port}",
                self.offset
            ),
            (true, None) => write!(f, "clear byte at offset {}", self.offset),
            (false, Some(port)) => write!(
                f,
                "send an event on port {port} for the page at offset {}",
                self.offset
            ),
            (false, None) => write!(f, "no notification at offset {}", self.offset),
        }
    }
}

/// An open `/dev/xen/gntalloc`. Cheap to clone; the file stays open while any clone or
/// [`SharedPages`] lives. Closing it releases every grant not yet released.
#[derive(Debug, Clone)]
pub struct Gntalloc {
    dev: Arc<Device>,
}

impl Gntalloc {
    /// Opens [`GNTALLOC_PATH`].
    pub fn open() -> Result<Self> {
        Self::open_path(GNTALLOC_PATH)
    }

    /// Opens the gntalloc device at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Gntalloc {
            dev: Arc::new(Device::open(path.as_ref(), MISSING_HINT)?),
        })
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        self.dev.path()
    }

    /// Allocates `count` zeroed pages, grants them to `domid` (read-write for it if `writable`)
    /// and maps them contiguously, read-write, into this process.
    ///
    /// Fails with `ENOSPC` when the guest-wide gntalloc limit (1024 grants by default) would be
    /// exceeded.
    pub fn share(&self, domid: u16, count: usize, writable: bool) -> Result<SharedPages> {
        const OP: &str = "IOCTL_GNTALLOC_ALLOC_GREF";
        let invalid = |reason: String| Error::InvalidArgument {
            path: self.dev.path().to_path_buf(),
            op: OP,
            domid,
            count,
            reason,
        };
        if count == 0 {
            return Err(invalid("at least one page is needed".into()));
        }
        if count > MAX_PAGES {
            return Err(invalid(format!(
                "more than {MAX_PAGES} pages in one mapping"
            )));
        }
        let count32 =
            u32::try_from(count).map_err(|_| invalid("the count does not fit 32 bits".into()))?;
        let len = count
            .checked_mul(XEN_PAGE_SIZE)
            .ok_or_else(|| invalid("the mapping size overflows".into()))?;
        let flags = if writable { GNTALLOC_FLAG_WRITABLE } else { 0 };

        let mut buf = alloc_gref_request(domid, flags, count32)
            .ok_or_else(|| invalid("the argument size overflows".into()))?;
        // SAFETY: `buf` holds at least max(sizeof(struct ioctl_gntalloc_alloc_gref),
        // 16 + 4 * count) bytes: the kernel reads and writes back the fixed struct and writes
        // `count` grant ids after the header, all inside the buffer, which outlives the call.
        unsafe { self.dev.ioctl(IOCTL_GNTALLOC_ALLOC_GREF, buf.as_mut_ptr()) }
            .map_err(|source| alloc_error(self.dev.path(), domid, count, source))?;
        let (index, grefs) = alloc_gref_reply(&buf, count);

        let ptr = match self
            .dev
            .mmap(len, libc::PROT_READ | libc::PROT_WRITE, index)
        {
            Ok(ptr) => ptr,
            Err(source) => {
                // Give the grants back; the mmap error is the one worth reporting.
                let _ = dealloc(&self.dev, index, count32);
                return Err(Error::Pages {
                    path: self.dev.path().to_path_buf(),
                    op: "mmap",
                    domid,
                    count,
                    source,
                    hint: "",
                });
            }
        };
        Ok(SharedPages {
            dev: Arc::clone(&self.dev),
            ptr,
            len,
            index,
            count32,
            grefs,
            domid,
            released: false,
        })
    }
}

impl AsFd for Gntalloc {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dev.fd()
    }
}

impl AsRawFd for Gntalloc {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.fd().as_raw_fd()
    }
}

/// Pages of ours granted to another domain and mapped contiguously into this process.
///
/// Dropping unmaps them and asks the kernel to release the grants
/// (`IOCTL_GNTALLOC_DEALLOC_GREF`); the kernel revokes a grant only once the other domain has
/// unmapped it, so the pages may outlive this process.
///
/// The memory is shared with another domain that may change it at any time: access it only
/// through raw pointers with volatile or atomic operations. Pointers from
/// [`SharedPages::as_ptr`] are valid only while the `SharedPages` lives.
#[derive(Debug)]
pub struct SharedPages {
    dev: Arc<Device>,
    ptr: NonNull<u8>,
    len: usize,
    index: u64,
    count32: u32,
    grefs: Vec<u32>,
    domid: u16,
    released: bool,
}

// SAFETY: `SharedPages` owns its mapping and the device reference; nothing in it is tied to
// the creating thread. Its `&self` methods only read plain fields or issue ioctls, which the
// kernel serialises, and the memory itself is reachable only through raw pointers.
unsafe impl Send for SharedPages {}
// SAFETY: see `Send`; no `&self` method mutates the struct.
unsafe impl Sync for SharedPages {}

impl SharedPages {
    /// The grant references, one per page, in mapping order.
    pub fn grefs(&self) -> &[u32] {
        &self.grefs
    }

    /// Start of the mapping (page aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes (`pages × 4096`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a share has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pages.
    pub fn count(&self) -> usize {
        self.grefs.len()
    }

    /// The domain the pages are granted to.
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// The gntalloc `mmap` offset of the first page.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Asks the kernel to notify the other domain when the page containing `notify.offset` is
    /// released here (`IOCTL_GNTALLOC_SET_UNMAP_NOTIFY`).
    pub fn set_unmap_notify(&self, notify: UnmapNotify) -> Result<()> {
        const OP: &str = "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY";
        let error = |source: std::io::Error, hint: &'static str| Error::UnmapNotify {
            path: self.dev.path().to_path_buf(),
            op: OP,
            notify,
            domid: self.domid,
            count: self.count(),
            source,
            hint,
        };
        let index = notify_index(self.index, self.len, notify.offset).ok_or_else(|| {
            error(
                std::io::Error::from_raw_os_error(libc::EINVAL),
                " (the offset is outside the mapping)",
            )
        })?;
        let mut arg = IoctlGntallocUnmapNotify {
            index,
            action: notify.action(),
            event_channel_port: notify.port(),
        };
        // SAFETY: `arg` is the exact struct the request number encodes and lives across the call.
        unsafe {
            self.dev.ioctl(
                IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
                core::ptr::addr_of_mut!(arg).cast::<c_void>(),
            )
        }
        .map_err(|source| {
            let hint = match source.raw_os_error() {
                Some(libc::ENOENT | libc::EINVAL) if notify.send_event.is_some() => {
                    " (is the port bound through /dev/xen/evtchn?)"
                }
                _ => ioctl_hint(&source),
            };
            error(source, hint)
        })?;
        Ok(())
    }

    /// Unmaps and releases the pages now, reporting failures that `Drop` would ignore.
    pub fn release(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let count = self.count();
        let pages_error = |op, source| Error::Pages {
            path: self.dev.path().to_path_buf(),
            op,
            domid: self.domid,
            count,
            source,
            hint: "",
        };
        // SAFETY: `ptr`/`len` are exactly the mapping made in `share`; `released` guarantees we
        // unmap it once, and `SharedPages` hands out only raw pointers whose use after release
        // the documentation forbids.
        let unmapped = unsafe { munmap(self.ptr, self.len) }.map_err(|e| pages_error("munmap", e));
        let deallocated = dealloc(&self.dev, self.index, self.count32)
            .map_err(|e| pages_error("IOCTL_GNTALLOC_DEALLOC_GREF", e));
        unmapped.and(deallocated)
    }
}

impl Drop for SharedPages {
    fn drop(&mut self) {
        // Nothing can be reported from drop; `release` exists for callers who care.
        let _ = self.teardown();
    }
}

/// The error of a failed `IOCTL_GNTALLOC_ALLOC_GREF`.
fn alloc_error(path: &Path, domid: u16, count: usize, source: std::io::Error) -> Error {
    Error::Pages {
        path: path.to_path_buf(),
        op: "IOCTL_GNTALLOC_ALLOC_GREF",
        domid,
        count,
        hint: match source.raw_os_error() {
            Some(libc::ENOSPC) => LIMIT_HINT,
            _ => ioctl_hint(&source),
        },
        source,
    }
}

/// `IOCTL_GNTALLOC_DEALLOC_GREF` of `count` pages at `index`.
fn dealloc(dev: &Device, index: u64, count: u32) -> std::io::Result<()> {
    let mut arg = IoctlGntallocDeallocGref { index, count };
    // SAFETY: `arg` is the exact struct the request number encodes and lives across the call.
    unsafe {
        dev.ioctl(
            IOCTL_GNTALLOC_DEALLOC_GREF,
            core::ptr::addr_of_mut!(arg).cast::<c_void>(),
        )
    }
    .map(drop)
}

/// The `ALLOC_GREF` argument: header plus room for `count` grant ids, never smaller than the
/// C struct (the kernel copies the whole struct in).
fn alloc_gref_request(domid: u16, flags: u16, count: u32) -> Option<WordBuf> {
    let ids = usize::try_from(count).ok()?.checked_mul(size_of::<u32>())?;
    let bytes = offset_of!(IoctlGntallocAllocGref, gref_ids)
        .checked_add(ids)?
        .max(size_of::<IoctlGntallocAllocGref>());
    let mut buf = WordBuf::zeroed(bytes);
    buf.put_u16(offset_of!(IoctlGntallocAllocGref, domid), domid);
    buf.put_u16(offset_of!(IoctlGntallocAllocGref, flags), flags);
    buf.put_u32(offset_of!(IoctlGntallocAllocGref, count), count);
    Some(buf)
}

/// The `index` and the `count` grant ids the kernel wrote into an `ALLOC_GREF` argument.
fn alloc_gref_reply(buf: &WordBuf, count: usize) -> (u64, Vec<u32>) {
    let index = buf.get_u64(offset_of!(IoctlGntallocAllocGref, index));
    let grefs = buf
        .u32s(offset_of!(IoctlGntallocAllocGref, gref_ids), count)
        .to_vec();
    (index, grefs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_request_is_header_plus_ids_and_at_least_the_struct() {
        let one = alloc_gref_request(7, GNTALLOC_FLAG_WRITABLE, 1).unwrap();
        assert_eq!(one.byte_len(), 24);
        let nineteen = alloc_gref_request(7, 0, 19).unwrap();
        assert!(nineteen.byte_len() >= 16 + 4 * 19);
        assert!(nineteen.byte_len() < 16 + 4 * 19 + 8);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn alloc_request_puts_domid_flags_count_where_the_header_does() {
        let buf = alloc_gref_request(0x1234, GNTALLOC_FLAG_WRITABLE, 3).unwrap();
        // domid = bytes 0-1, flags = bytes 2-3, count = bytes 4-7, rest zero.
        assert_eq!(buf.get_u32(0), 0x0001_1234);
        assert_eq!(buf.get_u32(4), 3);
        assert_eq!(buf.get_u64(8), 0);
        assert_eq!(buf.u32s(16, 3), &[0, 0, 0]);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn alloc_reply_reads_index_and_ids_from_where_the_kernel_writes_them() {
        let mut buf = alloc_gref_request(0, 1, 3).unwrap();
        let words = buf.words_mut();
        words[2] = 0x5000; // index, low half (bytes 8-11)
        words[3] = 0x1; // index, high half (bytes 12-15)
        words[4] = 100;
        words[5] = 101;
        words[6] = 102;
        let (index, grefs) = alloc_gref_reply(&buf, 3);
        assert_eq!(index, 0x1_0000_5000);
        assert_eq!(grefs, [100, 101, 102]);
    }

    #[test]
    fn running_out_of_grants_explains_the_limit() {
        let err = alloc_error(
            Path::new(GNTALLOC_PATH),
            0,
            19,
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "/dev/xen/gntalloc: IOCTL_GNTALLOC_ALLOC_GREF of 19 page(s) for domain 0 failed: "
            ),
            "{msg}"
        );
        assert!(msg.contains("module parameter `limit`"), "{msg}");
        assert!(msg.contains("1024 grants"), "{msg}");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn notify_index_stays_inside_the_mapping() {
        assert_eq!(notify_index(0x3000, 8192, 0), Some(0x3000));
        assert_eq!(notify_index(0x3000, 8192, 8191), Some(0x3000 + 8191));
        assert_eq!(notify_index(0x3000, 8192, 8192), None);
        assert_eq!(notify_index(u64::MAX, 8192, 1), None);
    }

    #[test]
    fn unmap_notify_actions() {
        assert_eq!(UnmapNotify::clear_byte(5).action(), UNMAP_NOTIFY_CLEAR_BYTE);
        assert_eq!(UnmapNotify::send_event(9).action(), UNMAP_NOTIFY_SEND_EVENT);
        let both = UnmapNotify::clear_byte(5).and_send_event(9);
        assert_eq!(
            both.action(),
            UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT
        );
        assert_eq!((both.offset, both.port()), (5, 9));
        assert_eq!(UnmapNotify::default().action(), 0);
        assert_eq!(
            both.to_string(),
            "clear byte at offset 5 and send an event on port 9"
        );
    }
}
