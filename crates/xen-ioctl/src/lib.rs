//! What the Xen device crates (`xen-evtchn`, `xen-gnttab`) share: the kernel's `_IOC` encoding
//! of ioctl request numbers ([`ioc`], checked against `<linux/ioctl.h>` by the crate's `uapi`
//! test) and an open device file ([`DeviceFile`]) with its open error ([`OpenError`]) and
//! `ioctl`.

mod device;
mod ioc;

pub use device::{DeviceFile, OpenError};
pub use ioc::{
    ioc, IOC_DIRSHIFT, IOC_NONE, IOC_NRBITS, IOC_NRSHIFT, IOC_READ, IOC_SIZEBITS, IOC_SIZESHIFT,
    IOC_TYPEBITS, IOC_TYPESHIFT, IOC_WRITE,
};

// Device files are shared between the control and realtime threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<DeviceFile>();
    send_sync::<OpenError>();
};
