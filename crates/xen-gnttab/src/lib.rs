//! Xen grant tables from Linux user space, over the kernel devices.
//!
//! * [`Gntalloc`] (`/dev/xen/gntalloc`, the frontend side): allocate pages of our own, grant them
//!   to another domain and map them contiguously here ([`SharedPages`]). One
//!   `IOCTL_GNTALLOC_ALLOC_GREF` then one `mmap` per share.
//! * [`Gntdev`] (`/dev/xen/gntdev`, the backend or test side): map pages another domain granted
//!   to us, contiguously ([`MappedGrants`]). One `IOCTL_GNTDEV_MAP_GRANT_REF` then one `mmap`.
//!
//! Limits and lifetimes worth knowing:
//!
//! * gntalloc has a **guest-wide** limit on granted pages (module parameter `limit`, default
//!   1024), shared with every other user in the guest; exceeding it fails with `ENOSPC`.
//! * A granted page is revoked only once it is unmapped and released here *and* the other domain
//!   has unmapped it: grants can outlive this process.
//! * The device file stays open as long as the handle or any mapping made from it lives (they
//!   share it through an `Arc`); closing it releases everything still allocated.
//! * Every page is a 4096-byte Xen page ([`sys::XEN_PAGE_SIZE`]); kernels with larger pages are
//!   not supported.
//!
//! The ioctl numbers and argument layouts live in [`sys`] and are checked against the kernel
//! headers by the crate's `uapi` test.

/// `AsFd` and `AsRawFd` for a device handle, through its `dev: Arc<DeviceFile>` field.
macro_rules! impl_as_fd {
    ($handle:ty) => {
        impl std::os::fd::AsFd for $handle {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(&*self.dev)
            }
        }

        impl std::os::fd::AsRawFd for $handle {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&*self.dev)
            }
        }
    };
}

mod buf;
mod error;
mod gntalloc;
mod gntdev;
mod mapping;
#[doc(hidden)]
pub mod sys;

pub use error::{Error, Result};
pub use gntalloc::{Gntalloc, SharedPages, GNTALLOC_PATH};
pub use gntdev::{Gntdev, MappedGrants, GNTDEV_PATH};
pub use mapping::UnmapNotify;
pub use sys::XEN_PAGE_SIZE;

/// Most pages one share or map may cover (4 GiB). The kernel builds the grant list of a request
/// in one allocation, which cannot hold more; the gntalloc guest-wide limit is far lower.
pub const MAX_PAGES: usize = 1 << 20;

// Mappings are handed to the realtime thread: keep every public type Send + Sync.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Gntalloc>();
    send_sync::<Gntdev>();
    send_sync::<SharedPages>();
    send_sync::<MappedGrants>();
    send_sync::<Error>();
    // The handles plug into poll loops and `fstat` like any file.
    const fn fd<T: std::os::fd::AsFd + std::os::fd::AsRawFd>() {}
    fd::<Gntalloc>();
    fd::<Gntdev>();
};
