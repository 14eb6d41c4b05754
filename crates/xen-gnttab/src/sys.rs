//! Kernel UAPI of `/dev/xen/gntalloc` (`<xen/gntalloc.h>`) and `/dev/xen/gntdev` (`<xen/gntdev.h>`).
//!
//! Everything here is written from the Linux headers and checked against them by `tests/uapi.rs`,
//! which compiles `tests/c/uapi.c` with the system C compiler and compares every number, size and
//! field offset. Struct names are the header's in CamelCase; field names are the header's. The
//! request numbers use the `_IOC` encoding of the `xen-ioctl` crate, which checks it.

use core::mem::size_of;

use xen_ioctl::{ioc, IOC_NONE};

/// Size of a Xen page; every grant covers one.
pub const XEN_PAGE_SIZE: usize = 4096;

/// `GNTALLOC_FLAG_WRITABLE`: the other domain may map the grant read-write.
pub const GNTALLOC_FLAG_WRITABLE: u16 = 1;
/// `UNMAP_NOTIFY_CLEAR_BYTE`: set the byte at `index` to zero when the page is unmapped.
pub const UNMAP_NOTIFY_CLEAR_BYTE: u32 = 0x1;
/// `UNMAP_NOTIFY_SEND_EVENT`: notify `event_channel_port` when the page is unmapped.
pub const UNMAP_NOTIFY_SEND_EVENT: u32 = 0x2;

/// `struct ioctl_gntalloc_alloc_gref`. `gref_ids` really has `count` elements; the buffer handed
/// to the kernel is `16 + 4 * count` bytes (at least the struct's size), the request number always
/// encodes the size of this one-element struct.
#[doc(alias = "ioctl_gntalloc_alloc_gref")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlGntallocAllocGref {
    /// In: the domain that may map the pages.
    pub domid: u16,
    /// In: `GNTALLOC_FLAG_*`.
    pub flags: u16,
    /// In: number of pages.
    pub count: u32,
    /// Out: the `mmap` offset of the pages.
    pub index: u64,
    /// Out: the grant references, one per page (variable length).
    pub gref_ids: [u32; 1],
}

/// `struct ioctl_gntalloc_dealloc_gref`.
#[doc(alias = "ioctl_gntalloc_dealloc_gref")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlGntallocDeallocGref {
    /// The `index` returned by `ALLOC_GREF`.
    pub index: u64,
    /// Number of pages to release.
    pub count: u32,
}

/// `struct ioctl_gntalloc_unmap_notify`, which has the same fields as
/// `struct ioctl_gntdev_unmap_notify` ([`IoctlGntdevUnmapNotify`] is this type).
#[doc(alias = "ioctl_gntalloc_unmap_notify")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlGntallocUnmapNotify {
    /// `mmap` offset of a byte in the page (the byte cleared by `UNMAP_NOTIFY_CLEAR_BYTE`).
    pub index: u64,
    /// `UNMAP_NOTIFY_*` flags.
    pub action: u32,
    /// Event channel notified by `UNMAP_NOTIFY_SEND_EVENT`.
    pub event_channel_port: u32,
}

/// `IOCTL_GNTALLOC_ALLOC_GREF` (`0x00184705` on x86-64 and Arm).
pub const IOCTL_GNTALLOC_ALLOC_GREF: u32 =
    ioc(IOC_NONE, b'G', 5, size_of::<IoctlGntallocAllocGref>());
/// `IOCTL_GNTALLOC_DEALLOC_GREF` (`0x00104706`).
pub const IOCTL_GNTALLOC_DEALLOC_GREF: u32 =
    ioc(IOC_NONE, b'G', 6, size_of::<IoctlGntallocDeallocGref>());
/// `IOCTL_GNTALLOC_SET_UNMAP_NOTIFY` (`0x00104707`).
pub const IOCTL_GNTALLOC_SET_UNMAP_NOTIFY: u32 =
    ioc(IOC_NONE, b'G', 7, size_of::<IoctlGntallocUnmapNotify>());

/// `struct ioctl_gntdev_grant_ref`.
#[doc(alias = "ioctl_gntdev_grant_ref")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlGntdevGrantRef {
    /// The domain that granted the page.
    pub domid: u32,
    /// The grant reference.
    pub r#ref: u32,
}

/// `struct ioctl_gntdev_map_grant_ref`. `refs` really has `count` elements; the buffer handed to
/// the kernel is `16 + 8 * count` bytes.
#[doc(alias = "ioctl_gntdev_map_grant_ref")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlGntdevMapGrantRef {
    /// In: number of grants.
    pub count: u32,
    /// Padding.
    pub pad: u32,
    /// Out: the `mmap` offset of the grants.
    pub index: u64,
    /// In: the grants (variable length).
    pub refs: [IoctlGntdevGrantRef; 1],
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[doc(alias = "ioctl_gntdev_unmap_grant_ref")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlGntdevUnmapGrantRef {
    /// The `index` returned by `MAP_GRANT_REF`.
    pub index: u64,
    /// Number of pages.
    pub count: u32,
    /// Padding.
    pub pad: u32,
}

/// `struct ioctl_gntdev_unmap_notify`: the same fields as `struct ioctl_gntalloc_unmap_notify`
/// (the uapi test checks the layout under both names).
#[doc(alias = "ioctl_gntdev_unmap_notify")]
pub type IoctlGntdevUnmapNotify = IoctlGntallocUnmapNotify;

/// `IOCTL_GNTDEV_MAP_GRANT_REF` (`0x00184700`).
pub const IOCTL_GNTDEV_MAP_GRANT_REF: u32 =
    ioc(IOC_NONE, b'G', 0, size_of::<IoctlGntdevMapGrantRef>());
/// `IOCTL_GNTDEV_UNMAP_GRANT_REF` (`0x00104701`).
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u32 =
    ioc(IOC_NONE, b'G', 1, size_of::<IoctlGntdevUnmapGrantRef>());
/// `IOCTL_GNTDEV_SET_UNMAP_NOTIFY` (`0x00104707`).
pub const IOCTL_GNTDEV_SET_UNMAP_NOTIFY: u32 =
    ioc(IOC_NONE, b'G', 7, size_of::<IoctlGntdevUnmapNotify>());
