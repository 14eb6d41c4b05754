//! Sharing our own pages with another domain through `/dev/xen/gntalloc` (the frontend side).

use std::{
    ffi::c_void,
    mem::{offset_of, size_of},
    path::Path,
    sync::Arc,
};

use xen_ioctl::{missing_module_hint, DeviceFile};

use crate::{
    buf::WordBuf,
    error::{ioctl_hint, Error, Result},
    mapping::{Mapping, Ops, Request, UnmapNotify},
    sys::{
        IoctlGntallocAllocGref, IoctlGntallocDeallocGref, GNTALLOC_FLAG_WRITABLE,
        IOCTL_GNTALLOC_ALLOC_GREF, IOCTL_GNTALLOC_DEALLOC_GREF, IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
    },
};

/// Default path of the grant-sharing device.
pub const GNTALLOC_PATH: &str = "/dev/xen/gntalloc";

const MISSING_HINT: &str = missing_module_hint!("xen_gntalloc");
const LIMIT_HINT: &str = " (the guest-wide gntalloc limit, module parameter `limit`, defaults to \
                          1024 grants; other streams and programs share it)";

/// The gntalloc side of a [`Mapping`].
static OPS: Ops = Ops {
    notify_request: IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
    notify_op: "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY",
    release: dealloc,
    release_op: "IOCTL_GNTALLOC_DEALLOC_GREF",
    mmap_hint: |_| "",
};

/// An open `/dev/xen/gntalloc`. Cheap to clone; the file stays open while any clone or
/// [`SharedPages`] lives. Closing it releases every grant not yet released.
#[derive(Debug, Clone)]
pub struct Gntalloc {
    dev: Arc<DeviceFile>,
}

impl Gntalloc {
    /// Opens [`GNTALLOC_PATH`].
    pub fn open() -> Result<Self> {
        Self::open_path(GNTALLOC_PATH)
    }

    /// Opens the gntalloc device at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Gntalloc {
            dev: Arc::new(DeviceFile::open(path.as_ref(), MISSING_HINT)?),
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
        let req = Request {
            dev: &self.dev,
            op: "IOCTL_GNTALLOC_ALLOC_GREF",
            domid,
            count,
        };
        let pages = req.check_count("page")?;
        let flags = if writable { GNTALLOC_FLAG_WRITABLE } else { 0 };

        let mut buf = alloc_gref_request(domid, flags, pages.count32)
            .ok_or_else(|| req.invalid("the argument size overflows"))?;
        // SAFETY: `buf` holds at least max(sizeof(struct ioctl_gntalloc_alloc_gref),
        // 16 + 4 * count) bytes: the kernel reads and writes back the fixed struct and writes
        // `count` grant ids after the header, all inside the buffer, which outlives the call.
        unsafe { self.dev.ioctl(IOCTL_GNTALLOC_ALLOC_GREF, buf.as_mut_ptr()) }
            .map_err(|source| alloc_error(self.dev.path(), domid, count, source))?;
        let (index, grefs) = alloc_gref_reply(&buf, count);

        // Our own pages are always mapped read-write here; `writable` is the other domain's right.
        let map = Mapping::new(&req, &OPS, pages, index, true)?;
        Ok(SharedPages { map, grefs })
    }
}

impl_as_fd!(Gntalloc);

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
    map: Mapping,
    grefs: Vec<u32>,
}

impl SharedPages {
    /// The grant references, one per page, in mapping order.
    pub fn grefs(&self) -> &[u32] {
        &self.grefs
    }

    /// Start of the mapping (page aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Length of the mapping in bytes (`pages × 4096`).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: a share has at least one page.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Number of pages.
    pub fn count(&self) -> usize {
        self.grefs.len()
    }

    /// The domain the pages are granted to.
    pub fn domid(&self) -> u16 {
        self.map.domid()
    }

    /// The gntalloc `mmap` offset of the first page.
    pub fn index(&self) -> u64 {
        self.map.index()
    }

    /// Asks the kernel to notify the other domain when the page containing `notify.offset` is
    /// released here (`IOCTL_GNTALLOC_SET_UNMAP_NOTIFY`).
    pub fn set_unmap_notify(&self, notify: UnmapNotify) -> Result<()> {
        self.map.set_unmap_notify(notify)
    }

    /// Unmaps and releases the pages now, reporting failures that `Drop` would ignore.
    pub fn release(mut self) -> Result<()> {
        self.map.teardown()
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
fn dealloc(dev: &DeviceFile, index: u64, count: u32) -> std::io::Result<()> {
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
}
