//! What a gntalloc share ([`SharedPages`](crate::SharedPages)) and a gntdev mapping
//! ([`MappedGrants`](crate::MappedGrants)) have in common: checking the page count, the `mmap` of
//! the pages the kernel set up, the unmap notification and the teardown.

use std::{ffi::c_void, fmt, io, ptr::NonNull, sync::Arc};

use xen_ioctl::DeviceFile;

use crate::{
    error::{ioctl_hint, Error, Result},
    sys::{IoctlGntallocUnmapNotify, UNMAP_NOTIFY_CLEAR_BYTE, UNMAP_NOTIFY_SEND_EVENT},
    MAX_PAGES, XEN_PAGE_SIZE,
};

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

/// What differs between the two devices' mappings.
#[derive(Debug)]
pub(crate) struct Ops {
    /// `IOCTL_GNT*_SET_UNMAP_NOTIFY`, whose argument is `IoctlGntallocUnmapNotify` on both.
    pub(crate) notify_request: u32,
    /// Its name.
    pub(crate) notify_op: &'static str,
    /// Gives the `count` pages at `index` back after `munmap`, or after a failed `mmap`.
    pub(crate) release: fn(&DeviceFile, u64, u32) -> io::Result<()>,
    /// Its name.
    pub(crate) release_op: &'static str,
    /// The hint for a failed `mmap`.
    pub(crate) mmap_hint: fn(&io::Error) -> &'static str,
}

/// One request for `count` pages with `domid` (`op` is its ioctl), for its checks and errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) dev: &'a Arc<DeviceFile>,
    pub(crate) op: &'static str,
    pub(crate) domid: u16,
    pub(crate) count: usize,
}

impl Request<'_> {
    /// The arguments were rejected before any system call.
    pub(crate) fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            path: self.dev.path().to_path_buf(),
            op: self.op,
            domid: self.domid,
            count: self.count,
            reason: reason.into(),
        }
    }

    /// System call `op` of this request failed.
    pub(crate) fn failed(&self, op: &'static str, source: io::Error, hint: &'static str) -> Error {
        Error::Pages {
            path: self.dev.path().to_path_buf(),
            op,
            domid: self.domid,
            count: self.count,
            source,
            hint,
        }
    }

    /// Checks the page count (`none` says what is missing when it is 0).
    pub(crate) fn check_count(&self, none: &str) -> Result<Pages> {
        if self.count == 0 {
            return Err(self.invalid(format!("at least one {none} is needed")));
        }
        if self.count > MAX_PAGES {
            return Err(self.invalid(format!("more than {MAX_PAGES} pages in one mapping")));
        }
        let count32 = u32::try_from(self.count)
            .map_err(|_| self.invalid("the count does not fit 32 bits"))?;
        let len = self
            .count
            .checked_mul(XEN_PAGE_SIZE)
            .ok_or_else(|| self.invalid("the mapping size overflows"))?;
        Ok(Pages { count32, len })
    }
}

/// A checked page count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pages {
    /// The count as the kernel's `u32`.
    pub(crate) count32: u32,
    /// The length of the mapping in bytes.
    pub(crate) len: usize,
}

/// `count32` pages mapped contiguously at `ptr` from device offset `index`; unmapped and given
/// back (`ops.release`) on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    dev: Arc<DeviceFile>,
    ops: &'static Ops,
    ptr: NonNull<u8>,
    len: usize,
    index: u64,
    count32: u32,
    domid: u16,
    writable: bool,
    released: bool,
}

// SAFETY: a `Mapping` owns its memory mapping and the device reference; nothing in it is tied to
// the creating thread. Its `&self` methods only read plain fields or issue ioctls, which the
// kernel serialises, and the memory itself is reachable only through raw pointers.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`; no `&self` method mutates the struct.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the `pages` of `req` that the kernel set up at device offset `index`, read-write if
    /// `writable`. If `mmap` fails the pages are given back and its error is reported.
    pub(crate) fn new(
        req: &Request<'_>,
        ops: &'static Ops,
        pages: Pages,
        index: u64,
        writable: bool,
    ) -> Result<Self> {
        let Pages { count32, len } = pages;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let ptr = match mmap(req.dev, len, prot, index) {
            Ok(ptr) => ptr,
            Err(source) => {
                // Give the pages back; the mmap error is the one worth reporting.
                let _ = (ops.release)(req.dev, index, count32);
                let hint = (ops.mmap_hint)(&source);
                return Err(req.failed("mmap", source, hint));
            }
        };
        Ok(Mapping {
            dev: Arc::clone(req.dev),
            ops,
            ptr,
            len,
            index,
            count32,
            domid: req.domid,
            writable,
            released: false,
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn count(&self) -> usize {
        self.len / XEN_PAGE_SIZE
    }

    pub(crate) fn domid(&self) -> u16 {
        self.domid
    }

    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    /// `IOCTL_GNT*_SET_UNMAP_NOTIFY` for the page containing `notify.offset`.
    pub(crate) fn set_unmap_notify(&self, notify: UnmapNotify) -> Result<()> {
        let error = |source: io::Error, hint: &'static str| Error::UnmapNotify {
            path: self.dev.path().to_path_buf(),
            op: self.ops.notify_op,
            notify,
            domid: self.domid,
            count: self.count(),
            source,
            hint,
        };
        let index = notify_index(self.index, self.len, notify.offset).ok_or_else(|| {
            error(
                io::Error::from_raw_os_error(libc::EINVAL),
                " (the offset is outside the mapping)",
            )
        })?;
        let mut arg = IoctlGntallocUnmapNotify {
            index,
            action: notify.action(),
            event_channel_port: notify.port(),
        };
        // SAFETY: `arg` is the exact struct both SET_UNMAP_NOTIFY request numbers encode
        // (`IoctlGntdevUnmapNotify` is the same type) and lives across the call.
        unsafe {
            self.dev.ioctl(
                self.ops.notify_request,
                core::ptr::addr_of_mut!(arg).cast::<c_void>(),
            )
        }
        .map_err(|source| {
            let hint = match source.raw_os_error() {
                Some(libc::EINVAL) if notify.clear_byte && !self.writable => {
                    " (clearing a byte needs a writable mapping)"
                }
                Some(libc::ENOENT | libc::EINVAL) if notify.send_event.is_some() => {
                    " (is the port bound through /dev/xen/evtchn?)"
                }
                _ => ioctl_hint(&source),
            };
            error(source, hint)
        })?;
        Ok(())
    }

    /// Unmaps the pages and gives them back, once; later calls do nothing.
    pub(crate) fn teardown(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let req = Request {
            dev: &self.dev,
            op: self.ops.release_op,
            domid: self.domid,
            count: self.count(),
        };
        // SAFETY: `ptr`/`len` are exactly the mapping made in `new`; `released` guarantees we
        // unmap it once, and the public wrappers hand out only raw pointers whose use after
        // release their documentation forbids.
        let unmapped =
            unsafe { munmap(self.ptr, self.len) }.map_err(|e| req.failed("munmap", e, ""));
        let released = (self.ops.release)(&self.dev, self.index, self.count32)
            .map_err(|e| req.failed(req.op, e, ""));
        unmapped.and(released)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Nothing can be reported from drop; `release` exists for callers who care.
        let _ = self.teardown();
    }
}

/// `mmap(NULL, len, prot, MAP_SHARED, fd, offset)`.
fn mmap(dev: &DeviceFile, len: usize, prot: libc::c_int, offset: u64) -> io::Result<NonNull<u8>> {
    use std::os::fd::AsRawFd;

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
            dev.as_raw_fd(),
            offset,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

/// `munmap(ptr, len)`.
///
/// # Safety
///
/// `ptr`/`len` must be exactly a mapping returned by [`mmap`] that nothing will access any more.
unsafe fn munmap(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is one of our mappings and is no longer used.
    let rc = unsafe { libc::munmap(ptr.as_ptr().cast::<c_void>(), len) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The device offset of byte `offset` of a mapping of `len` bytes at device offset `index`, or
/// `None` if `offset` is outside the mapping.
fn notify_index(index: u64, len: usize, offset: usize) -> Option<u64> {
    if offset >= len {
        return None;
    }
    index.checked_add(u64::try_from(offset).ok()?)
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, io::Read};

    use super::*;

    thread_local! {
        /// `(index, count)` of every `release` call made on this test's thread.
        static RELEASED: RefCell<Vec<(u64, u32)>> = const { RefCell::new(Vec::new()) };
    }

    fn record_release(_: &DeviceFile, index: u64, count: u32) -> io::Result<()> {
        RELEASED.with(|r| r.borrow_mut().push((index, count)));
        Ok(())
    }

    fn released() -> Vec<(u64, u32)> {
        RELEASED.with(|r| r.borrow().clone())
    }

    /// Stands in for a device: a regular file can be mapped but rejects every ioctl.
    static TEST_OPS: Ops = Ops {
        notify_request: crate::sys::IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
        notify_op: "TEST_SET_UNMAP_NOTIFY",
        release: record_release,
        release_op: "TEST_RELEASE",
        mmap_hint: |_| " (test mmap hint)",
    };

    /// A two-page regular file opened as a device.
    fn two_pages() -> (tempfile::NamedTempFile, Arc<DeviceFile>) {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(2 * XEN_PAGE_SIZE as u64).unwrap();
        let dev = Arc::new(DeviceFile::open(file.path(), "").unwrap());
        (file, dev)
    }

    fn request(dev: &Arc<DeviceFile>) -> Request<'_> {
        Request {
            dev,
            op: "TEST_MAP",
            domid: 7,
            count: 2,
        }
    }

    #[test]
    fn a_mapping_is_shared_with_the_file_and_given_back_once() {
        let (mut file, dev) = two_pages();
        let req = request(&dev);
        let pages = req.check_count("page").unwrap();
        let mut map = Mapping::new(&req, &TEST_OPS, pages, 0, true).unwrap();
        assert_eq!((map.len(), map.count(), map.domid()), (8192, 2, 7));
        assert!(map.writable());
        // SAFETY: offset 4097 is inside the 8192-byte read-write mapping, which lives until
        // `teardown` below.
        unsafe { map.as_ptr().add(4097).write_volatile(0x5a) };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.get(4097), Some(&0x5a));

        map.teardown().unwrap();
        assert_eq!(released(), [(0, 2)]);
        map.teardown().unwrap();
        drop(map);
        assert_eq!(released(), [(0, 2)], "released once");
    }

    #[test]
    fn a_failed_mmap_gives_the_pages_back_and_reports_the_mmap() {
        let (_file, dev) = two_pages();
        let req = request(&dev);
        let pages = req.check_count("page").unwrap();
        // An offset that is not page aligned makes mmap fail with EINVAL.
        let err = Mapping::new(&req, &TEST_OPS, pages, 1, false).unwrap_err();
        assert_eq!(err.operation(), "mmap");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        assert!(err.to_string().contains("(test mmap hint)"), "{err}");
        assert_eq!(released(), [(1, 2)]);
    }

    #[test]
    fn unmap_notify_errors_name_the_ioctl_and_the_notification() {
        let (_file, dev) = two_pages();
        let req = request(&dev);
        let pages = req.check_count("page").unwrap();
        let map = Mapping::new(&req, &TEST_OPS, pages, 0, true).unwrap();

        let outside = map
            .set_unmap_notify(UnmapNotify::clear_byte(8192))
            .unwrap_err();
        assert_eq!(outside.raw_os_error(), Some(libc::EINVAL));
        assert!(
            outside.to_string().contains("outside the mapping"),
            "{outside}"
        );

        let err = map
            .set_unmap_notify(UnmapNotify::clear_byte(10).and_send_event(3))
            .unwrap_err();
        assert_eq!(err.operation(), "TEST_SET_UNMAP_NOTIFY");
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
        let msg = err.to_string();
        assert!(
            msg.contains("(clear byte at offset 10 and send an event on port 3) on 2 page(s)"),
            "{msg}"
        );
        assert!(msg.contains("not a Xen grant device"), "{msg}");
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
