//! Kernel UAPI of `/dev/xen/evtchn` (`<xen/evtchn.h>`).
//!
//! Everything here is written from the Linux header and checked against it by `tests/uapi.rs`,
//! which compiles `tests/c/uapi.c` with the system C compiler and compares every number, size and
//! field offset. Struct names are the header's in CamelCase; field names are the header's. The
//! request numbers use the `_IOC` encoding of the `xen-ioctl` crate, which checks it.

use core::mem::size_of;
use libc::c_uint;
use xen_ioctl::{ioc, IOC_NONE};

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
