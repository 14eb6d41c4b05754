//! Kernel UAPI of `/dev/xen/evtchn` (`<xen/evtchn.h>`).
//!
//! Everything here is written from the Linux header and checked against it by `tests/uapi.rs`,
//! which compiles `tests/c/uapi.c` with the system C compiler and compares every number, size and
//! field offset. Struct names are the header's in CamelCase; field names are the header's.

use core::mem::size_of;
use libc::c_uint;

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

/// `struct ioctl_evtchn_bind_virq`.
#[doc(alias = "ioctl_evtchn_bind_virq")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlEvtchnBindVirq {
    /// The virtual IRQ.
    pub virq: c_uint,
}

/// `struct ioctl_evtchn_bind_interdomain`.
#[doc(alias = "ioctl_evtchn_bind_interdomain")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlEvtchnBindInterdomain {
    /// The domain that allocated the port.
    pub remote_domain: c_uint,
    /// Its port.
    pub remote_port: c_uint,
}

/// `struct ioctl_evtchn_bind_unbound_port`.
#[doc(alias = "ioctl_evtchn_bind_unbound_port")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlEvtchnBindUnboundPort {
    /// The domain allowed to bind the other end.
    pub remote_domain: c_uint,
}

/// `struct ioctl_evtchn_unbind`.
#[doc(alias = "ioctl_evtchn_unbind")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlEvtchnUnbind {
    /// The local port.
    pub port: c_uint,
}

/// `struct ioctl_evtchn_notify`.
#[doc(alias = "ioctl_evtchn_notify")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlEvtchnNotify {
    /// The local port.
    pub port: c_uint,
}

/// `struct ioctl_evtchn_restrict_domid`.
#[doc(alias = "ioctl_evtchn_restrict_domid")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoctlEvtchnRestrictDomid {
    /// The only domain this handle may bind to afterwards (`domid_t`).
    pub domid: u16,
}

/// `IOCTL_EVTCHN_BIND_VIRQ` (`0x00044500`).
pub const IOCTL_EVTCHN_BIND_VIRQ: u32 = ioc(IOC_NONE, b'E', 0, size_of::<IoctlEvtchnBindVirq>());
/// `IOCTL_EVTCHN_BIND_INTERDOMAIN` (`0x00084501`); returns the local port.
pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u32 =
    ioc(IOC_NONE, b'E', 1, size_of::<IoctlEvtchnBindInterdomain>());
/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT` (`0x00044502`); returns the local port.
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u32 =
    ioc(IOC_NONE, b'E', 2, size_of::<IoctlEvtchnBindUnboundPort>());
/// `IOCTL_EVTCHN_UNBIND` (`0x00044503`).
pub const IOCTL_EVTCHN_UNBIND: u32 = ioc(IOC_NONE, b'E', 3, size_of::<IoctlEvtchnUnbind>());
/// `IOCTL_EVTCHN_NOTIFY` (`0x00044504`).
pub const IOCTL_EVTCHN_NOTIFY: u32 = ioc(IOC_NONE, b'E', 4, size_of::<IoctlEvtchnNotify>());
/// `IOCTL_EVTCHN_RESET` (`0x00004505`): clear the pending-event ring and its overflow error.
pub const IOCTL_EVTCHN_RESET: u32 = ioc(IOC_NONE, b'E', 5, 0);
/// `IOCTL_EVTCHN_RESTRICT_DOMID` (`0x00024506`).
pub const IOCTL_EVTCHN_RESTRICT_DOMID: u32 =
    ioc(IOC_NONE, b'E', 6, size_of::<IoctlEvtchnRestrictDomid>());

/// Size of one port number in the `read`/`write` stream (`evtchn_port_t`).
pub const PORT_SIZE: usize = size_of::<u32>();
/// The kernel handles at most one page of ports per `read` or `write`.
pub const MAX_PORTS_PER_TRANSFER: usize = 4096 / PORT_SIZE;
