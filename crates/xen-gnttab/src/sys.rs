//! Kernel UAPI of `/dev/xen/gntalloc` (`<xen/gntalloc.h>`) and `/dev/xen/gntdev` (`<xen/gntdev.h>`).
//!
//! Everything here is written from the Linux headers and checked against them by `tests/uapi.rs`,
//! which compiles `tests/c/uapi.c` with the system C compiler and compares every number, size and
//! field offset. Struct names are the header's in CamelCase; field names are the header's.

use core::mem::size_of;

/// Width of the command-number field of an ioctl request.
pub const IOC_NRBITS: u32 = 8;
/// Width of the type (magic) field of an ioctl request.
pub const IOC_TYPEBITS: u32 = 8;

#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips32r6",
    target_arch = "mips64",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
mod arch {
    pub const IOC_SIZEBITS: u32 = 13;
    pub const IOC_NONE: u32 = 1;
    pub const IOC_READ: u32 = 2;
    pub const IOC_WRITE: u32 = 4;
}

#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips32r6",
    target_arch = "mips64",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
mod arch {
    pub const IOC_SIZEBITS: u32 = 14;
    pub const IOC_NONE: u32 = 0;
    pub const IOC_READ: u32 = 2;
    pub const IOC_WRITE: u32 = 1;
}

/// Width of the argument-size field of an ioctl request (`_IOC_SIZEBITS`).
pub const IOC_SIZEBITS: u32 = arch::IOC_SIZEBITS;
/// Direction "no data transfer" (`_IOC_NONE`); every Xen device ioctl uses it.
pub const IOC_NONE: u32 = arch::IOC_NONE;
/// Direction "kernel reads" (`_IOC_WRITE`).
pub const IOC_WRITE: u32 = arch::IOC_WRITE;
/// Direction "kernel writes" (`_IOC_READ`).
pub const IOC_READ: u32 = arch::IOC_READ;

/// Bit position of the command number (`_IOC_NRSHIFT`).
pub const IOC_NRSHIFT: u32 = 0;
/// Bit position of the type (`_IOC_TYPESHIFT`).
pub const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
/// Bit position of the size (`_IOC_SIZESHIFT`).
pub const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
/// Bit position of the direction (`_IOC_DIRSHIFT`).
pub const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;

/// The kernel's `_IOC(dir, type, nr, size)` encoding of an ioctl request number.
///
/// Evaluated in constant context, a `size` that does not fit the size field fails the build.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    assert!(
        size < (1 << IOC_SIZEBITS),
        "ioctl argument too large for _IOC"
    );
    // The assert above bounds `size`, so the cast is lossless.
    (dir << IOC_DIRSHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

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

/// `struct ioctl_gntalloc_unmap_notify`.
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

/// `struct ioctl_gntdev_unmap_notify`.
#[doc(alias = "ioctl_gntdev_unmap_notify")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlGntdevUnmapNotify {
    /// `mmap` offset of a byte in the page (the byte cleared by `UNMAP_NOTIFY_CLEAR_BYTE`).
    pub index: u64,
    /// `UNMAP_NOTIFY_*` flags.
    pub action: u32,
    /// Event channel notified by `UNMAP_NOTIFY_SEND_EVENT`.
    pub event_channel_port: u32,
}

/// `IOCTL_GNTDEV_MAP_GRANT_REF` (`0x00184700`).
pub const IOCTL_GNTDEV_MAP_GRANT_REF: u32 =
    ioc(IOC_NONE, b'G', 0, size_of::<IoctlGntdevMapGrantRef>());
/// `IOCTL_GNTDEV_UNMAP_GRANT_REF` (`0x00104701`).
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u32 =
    ioc(IOC_NONE, b'G', 1, size_of::<IoctlGntdevUnmapGrantRef>());
/// `IOCTL_GNTDEV_SET_UNMAP_NOTIFY` (`0x00104707`).
pub const IOCTL_GNTDEV_SET_UNMAP_NOTIFY: u32 =
    ioc(IOC_NONE, b'G', 7, size_of::<IoctlGntdevUnmapNotify>());
