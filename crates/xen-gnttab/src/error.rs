//! Errors of the grant devices.

use std::{io, path::PathBuf};

use xen_ioctl::OpenError;

use crate::UnmapNotify;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Something failed on `/dev/xen/gntalloc` or `/dev/xen/gntdev`; each variant names the device
/// path and the operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device could not be opened (the error names the path and the usual cause).
    #[error(transparent)]
    Open(#[from] OpenError),

    /// An ioctl, `mmap` or `munmap` on a set of pages failed.
    #[error(
        "{}: {op} of {count} page(s) for domain {domid} failed: {source}{hint}",
        path.display()
    )]
    Pages {
        /// Device path.
        path: PathBuf,
        /// The operation (`IOCTL_GNTALLOC_ALLOC_GREF`, `mmap`, …).
        op: &'static str,
        /// The other domain.
        domid: u16,
        /// Number of pages.
        count: usize,
        /// The OS error.
        source: io::Error,
        /// What usually causes this error (empty if nothing useful is known).
        hint: &'static str,
    },

    /// Setting the unmap notification failed.
    #[error(
        "{}: {op} ({notify}) on {count} page(s) shared with domain {domid} failed: {source}{hint}",
        path.display()
    )]
    UnmapNotify {
        /// Device path.
        path: PathBuf,
        /// The ioctl.
        op: &'static str,
        /// The requested notification.
        notify: UnmapNotify,
        /// The other domain.
        domid: u16,
        /// Number of pages of the mapping.
        count: usize,
        /// The OS error.
        source: io::Error,
        /// What usually causes this error (empty if nothing useful is known).
        hint: &'static str,
    },

    /// The arguments were rejected before any system call.
    #[error(
        "{}: {op} of {count} page(s) for domain {domid} rejected: {reason}",
        path.display()
    )]
    InvalidArgument {
        /// Device path.
        path: PathBuf,
        /// The operation that was not attempted.
        op: &'static str,
        /// The other domain.
        domid: u16,
        /// Number of pages requested.
        count: usize,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The OS error number, if the failure came from a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Open(e) => e.raw_os_error(),
            Error::Pages { source, .. } | Error::UnmapNotify { source, .. } => {
                source.raw_os_error()
            }
            Error::InvalidArgument { .. } => None,
        }
    }

    /// The operation that failed (`"open"` for [`Error::Open`]).
    pub fn operation(&self) -> &'static str {
        match self {
            Error::Open { .. } => "open",
            Error::Pages { op, .. }
            | Error::UnmapNotify { op, .. }
            | Error::InvalidArgument { op, .. } => op,
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> Self {
        let kind = match &err {
            Error::Open(e) => e.kind(),
            Error::Pages { source, .. } | Error::UnmapNotify { source, .. } => source.kind(),
            Error::InvalidArgument { .. } => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, err)
    }
}

/// Hint for a failed ioctl that applies to every ioctl.
pub(crate) fn ioctl_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOTTY) => " (the file does not implement this ioctl: not a Xen grant device?)",
        _ => "",
    }
}
