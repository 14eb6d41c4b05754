//! Mapping another domain's grants through `/dev/xen/gntdev` (the backend or test side).

use std::{
    ffi::c_void,
    io,
    mem::{offset_of, size_of},
    path::Path,
    sync::Arc,
};

use xen_ioctl::{missing_module_hint, DeviceFile};

use crate::{
    buf::WordBuf,
    error::{ioctl_hint, Result},
    mapping::{Mapping, Ops, Request, UnmapNotify},
    sys::{
        IoctlGntdevGrantRef, IoctlGntdevMapGrantRef, IoctlGntdevUnmapGrantRef,
        IOCTL_GNTDEV_MAP_GRANT_REF, IOCTL_GNTDEV_SET_UNMAP_NOTIFY, IOCTL_GNTDEV_UNMAP_GRANT_REF,
    },
};

/// Default path of the grant-mapping device.
pub const GNTDEV_PATH: &str = "/dev/xen/gntdev";

const MISSING_HINT: &str = missing_module_hint!("xen_gntdev");
const MMAP_HINT: &str = " (are the grant references valid, still granted and granted to this \
                         domain, read-write if mapped writable?)";

/// The gntdev side of a [`Mapping`].
static OPS: Ops = Ops {
    notify_request: IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
    notify_op: "IOCTL_GNTDEV_SET_UNMAP_NOTIFY",
    release: unmap_grant_ref,
    release_op: "IOCTL_GNTDEV_UNMAP_GRANT_REF",
    mmap_hint,
};

/// An open `/dev/xen/gntdev`. Cheap to clone; the file stays open while any clone or
/// [`MappedGrants`] lives.
#[derive(Debug, Clone)]
pub struct Gntdev {
    dev: Arc<DeviceFile>,
}

impl Gntdev {
    /// Opens [`GNTDEV_PATH`].
    pub fn open() -> Result<Self> {
        Self::open_path(GNTDEV_PATH)
    }

    /// Opens the gntdev device at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Gntdev {
            dev: Arc::new(DeviceFile::open(path.as_ref(), MISSING_HINT)?),
        })
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        self.dev.path()
    }

    /// Maps the pages that `domid` granted under `refs` contiguously into this process,
    /// read-write if `writable`, read-only otherwise.
    pub fn map(&self, domid: u16, refs: &[u32], writable: bool) -> Result<MappedGrants> {
        let req = Request {
            dev: &self.dev,
            op: "IOCTL_GNTDEV_MAP_GRANT_REF",
            domid,
            count: refs.len(),
        };
        let pages = req.check_count("grant reference")?;
        let mut buf = map_grant_ref_request(domid, refs)
            .ok_or_else(|| req.invalid("the argument size overflows"))?;
        // SAFETY: `buf` holds at least max(sizeof(struct ioctl_gntdev_map_grant_ref),
        // 16 + 8 * count) bytes: the kernel reads the fixed struct and `count` refs and writes
        // back the fixed struct, all inside the buffer, which outlives the call.
        unsafe { self.dev.ioctl(IOCTL_GNTDEV_MAP_GRANT_REF, buf.as_mut_ptr()) }.map_err(
            |source| {
                let hint = ioctl_hint(&source);
                req.failed(req.op, source, hint)
            },
        )?;
        let index = buf.get_u64(offset_of!(IoctlGntdevMapGrantRef, index));
        Ok(MappedGrants {
            map: Mapping::new(&req, &OPS, pages, index, writable)?,
        })
    }
}

impl_as_fd!(Gntdev);

/// Another domain's granted pages, mapped contiguously into this process.
///
/// Dropping unmaps them (`munmap`, then `IOCTL_GNTDEV_UNMAP_GRANT_REF`). The memory is shared
/// with the granting domain: access it only through raw pointers with volatile or atomic
/// operations. Pointers from [`MappedGrants::as_ptr`] are valid only while the `MappedGrants`
/// lives.
#[derive(Debug)]
pub struct MappedGrants {
    map: Mapping,
}

impl MappedGrants {
    /// Start of the mapping (page aligned). Writable only if mapped writable.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Length of the mapping in bytes (`pages × 4096`).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Number of pages.
    pub fn count(&self) -> usize {
        self.map.count()
    }

    /// The granting domain.
    pub fn domid(&self) -> u16 {
        self.map.domid()
    }

    /// Whether the pages are mapped read-write.
    pub fn writable(&self) -> bool {
        self.map.writable()
    }

    /// The gntdev `mmap` offset of the first page.
    pub fn index(&self) -> u64 {
        self.map.index()
    }

    /// Asks the kernel to notify the granting domain when the page containing `notify.offset` is
    /// unmapped here (`IOCTL_GNTDEV_SET_UNMAP_NOTIFY`). Clearing a byte needs a writable mapping.
    pub fn set_unmap_notify(&self, notify: UnmapNotify) -> Result<()> {
        self.map.set_unmap_notify(notify)
    }

    /// Unmaps the pages now, reporting failures that `Drop` would ignore.
    pub fn release(mut self) -> Result<()> {
        self.map.teardown()
    }
}

/// The hint for a failed `mmap` of grants: unless memory ran out, the references are the usual
/// suspects.
fn mmap_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOMEM) => "",
        _ => MMAP_HINT,
    }
}

/// `IOCTL_GNTDEV_UNMAP_GRANT_REF` of `count` pages at `index`.
fn unmap_grant_ref(dev: &DeviceFile, index: u64, count: u32) -> io::Result<()> {
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
