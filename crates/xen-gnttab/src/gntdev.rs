//! Mapping another domain's grants through `/dev/xen/gntdev` (the backend or test side).

use std::{
    ffi::c_void,
    mem::{offset_of, size_of},
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    path::Path,
    ptr::NonNull,
    sync::Arc,
};

use crate::{
    device::{munmap, notify_index, Device, WordBuf},
    error::{ioctl_hint, Error, Result},
    gntalloc::UnmapNotify,
    sys::{
        IoctlGntdevGrantRef, IoctlGntdevMapGrantRef, IoctlGntdevUnmapGrantRef,
        IoctlGntdevUnmapNotify, IOCTL_GNTDEV_MAP_GRANT_REF, IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
        IOCTL_GNTDEV_UNMAP_GRANT_REF, XEN_PAGE_SIZE,
    },
    MAX_PAGES,
};

/// Default path of the grant-mapping device.
pub const GNTDEV_PATH: &str = "/dev/xen/gntdev";

const MISSING_HINT: &str =
    " (the device exists only in a Xen domain with the `xen_gntdev` kernel module loaded)";
const MMAP_HINT: &str = " (are the grant references valid, still granted and granted to this \
                         domain, read-write if mapped writable?)";

/// An open `/dev/xen/gntdev`. Cheap to clone; the file stays open while any clone or
/// [`MappedGrants`] lives.
#[derive(Debug, Clone)]
pub struct Gntdev {
    dev: Arc<Device>,
}

impl Gntdev {
    /// Opens [`GNTDEV_PATH`].
    pub fn open() -> Result<Self> {
        Self::open_path(GNTDEV_PATH)
    }

    /// Opens the gntdev device at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Gntdev {
            dev: Arc::new(Device::open(path.as_ref(), MISSING_HINT)?),
        })
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        self.dev.path()
    }

    /// Maps the pages that `domid` granted under `refs` contiguously into this process,
    /// read-write if `writable`, read-only otherwise.
    pub fn map(&self, domid: u16, refs: &[u32], writable: bool) -> Result<MappedGrants> {
        const OP: &str = "IOCTL_GNTDEV_MAP_GRANT_REF";
        let count = refs.len();
        let invalid = |reason: String| Error::InvalidArgument {
            path: self.dev.path().to_path_buf(),
            op: OP,
            domid,
            count,
            reason,
        };
        if count == 0 {
            return Err(invalid("at least one grant reference is needed".into()));
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
        let mut buf = map_grant_ref_request(domid, refs)
            .ok_or_else(|| invalid("the argument size overflows".into()))?;
        // SAFETY: `buf` holds at least max(sizeof(struct ioctl_gntdev_map_grant_ref),
        // 16 + 8 * count) bytes: the kernel reads the fixed struct and `count` refs and writes
        // back the fixed struct, all inside the buffer, which outlives the call.
        unsafe { self.dev.ioctl(IOCTL_GNTDEV_MAP_GRANT_REF, buf.as_mut_ptr()) }.map_err(
            |source| Error::Pages {
                path: self.dev.path().to_path_buf(),
                op: OP,
                domid,
                count,
                hint: ioctl_hint(&source),
                source,
            },
        )?;
        let index = buf.get_u64(offset_of!(IoctlGntdevMapGrantRef, index));

        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let ptr = match self.dev.mmap(len, prot, index) {
            Ok(ptr) => ptr,
            Err(source) => {
                // Drop the reservation; the mmap error is the one worth reporting.
                let _ = unmap_grant_ref(&self.dev, index, count32);
                let hint = match source.raw_os_error() {
                    Some(libc::ENOMEM) => "",
                    _ => MMAP_HINT,
                };
                return Err(Error::Pages {
                    path: self.dev.path().to_path_buf(),
                    op: "mmap",
                    domid,
                    count,
                    source,
                    hint,
                });
            }
        };
        Ok(MappedGrants {
            dev: Arc::clone(&self.dev),
            ptr,
            len,
            index,
            count32,
            domid,
            writable,
            released: false,
        })
    }
}

impl AsFd for Gntdev {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dev.fd()
    }
}

impl AsRawFd for Gntdev {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.fd().as_raw_fd()
    }
}

/// Another domain's granted pages, mapped contiguously into this process.
///
/// Dropping unmaps them (`munmap`, then `IOCTL_GNTDEV_UNMAP_GRANT_REF`). The memory is shared
/// with the granting domain: access it only through raw pointers with volatile or atomic
/// operations. Pointers from [`MappedGrants::as_ptr`] are valid only while the `MappedGrants`
/// lives.
#[derive(Debug)]
pub struct MappedGrants {
    dev: Arc<Device>,
    ptr: NonNull<u8>,
    len: usize,
    index: u64,
    count32: u32,
    domid: u16,
    writable: bool,
    released: bool,
}

// SAFETY: `MappedGrants` owns its mapping and the device reference; nothing in it is tied to
// the creating thread. Its `&self` methods only read plain fields or issue ioctls, which the
// kernel serialises, and the memory itself is reachable only through raw pointers.
unsafe impl Send for MappedGrants {}
// SAFETY: see `Send`; no `&self` method mutates the struct.
unsafe impl Sync for MappedGrants {}

impl MappedGrants {
    /// Start of the mapping (page aligned). Writable only if mapped writable.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes (`pages × 4096`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pages.
    pub fn count(&self) -> usize {
        self.len / XEN_PAGE_SIZE
    }

    /// The granting domain.
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// Whether the pages are mapped read-write.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The gntdev `mmap` offset of the first page.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Asks the kernel to notify the granting domain when the page containing `notify.offset` is
    /// unmapped here (`IOCTL_GNTDEV_SET_UNMAP_NOTIFY`). Clearing a byte needs a writable mapping.
    pub fn set_unmap_notify(&self, notify: UnmapNotify) -> Result<()> {
        const OP: &str = "IOCTL_GNTDEV_SET_UNMAP_NOTIFY";
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
        let mut arg = IoctlGntdevUnmapNotify {
            index,
            action: notify.action(),
            event_channel_port: notify.send_event.unwrap_or(0),
        };
        // SAFETY: `arg` is the exact struct the request number encodes and lives across the call.
        unsafe {
            self.dev.ioctl(
                IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
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

    /// Unmaps the pages now, reporting failures that `Drop` would ignore.
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
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`; `released` guarantees we
        // unmap it once, and `MappedGrants` hands out only raw pointers whose use after release
        // the documentation forbids.
        let unmapped = unsafe { munmap(self.ptr, self.len) }.map_err(|e| pages_error("munmap", e));
        let released = unmap_grant_ref(&self.dev, self.index, self.count32)
            .map_err(|e| pages_error("IOCTL_GNTDEV_UNMAP_GRANT_REF", e));
        unmapped.and(released)
    }
}

impl Drop for MappedGrants {
    fn drop(&mut self) {
        // Nothing can be reported from drop; `release` exists for callers who care.
        let _ = self.teardown();
    }
}

/// `IOCTL_GNTDEV_UNMAP_GRANT_REF` of `count` pages at `index`.
fn unmap_grant_ref(dev: &Device, index: u64, count: u32) -> std::io::Result<()> {
    let mut arg = IoctlGntdevUnmapGrantRef {
        index,
        count,
        pad: 0,
    };
    // SAFETY: `arg` is the exact struct the request number encodes and lives across the call.
    unsafe {
        dev.ioctl(
            IOCTL_GNTDEV_UNMAP_GRANT_REF,
            core::ptr::addr_of_mut!(arg).cast::<c_void>(),
        )
    }
    .map(drop)
}

/// The `MAP_GRANT_REF` argument: header plus one `{domid, ref}` per reference, never smaller
/// than the C struct (the kernel copies the whole struct in and out).
fn map_grant_ref_request(domid: u16, refs: &[u32]) -> Option<WordBuf> {
    let base = offset_of!(IoctlGntdevMapGrantRef, refs);
    let stride = size_of::<IoctlGntdevGrantRef>();
    let bytes = base
        .checked_add(refs.len().checked_mul(stride)?)?
        .max(size_of::<IoctlGntdevMapGrantRef>());
    let mut buf = WordBuf::zeroed(bytes);
    buf.put_u32(
        offset_of!(IoctlGntdevMapGrantRef, count),
        u32::try_from(refs.len()).ok()?,
    );
    for (i, &gref) in refs.iter().enumerate() {
        let at = base + i * stride;
        buf.put_u32(
            at + offset_of!(IoctlGntdevGrantRef, domid),
            u32::from(domid),
        );
        buf.put_u32(at + offset_of!(IoctlGntdevGrantRef, r#ref), gref);
    }
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_request_lays_out_count_then_domid_ref_pairs() {
        let buf = map_grant_ref_request(3, &[10, 11, 12]).unwrap();
        assert_eq!(buf.byte_len(), 16 + 8 * 3);
        assert_eq!(buf.get_u32(0), 3); // count
        assert_eq!(buf.get_u32(4), 0); // pad
        assert_eq!(buf.get_u64(8), 0); // index (out)
        assert_eq!(buf.u32s(16, 6), &[3, 10, 3, 11, 3, 12]);
    }

    #[test]
    fn map_request_is_never_smaller_than_the_struct() {
        let buf = map_grant_ref_request(0, &[1]).unwrap();
        assert_eq!(buf.byte_len(), size_of::<IoctlGntdevMapGrantRef>());
    }
}
