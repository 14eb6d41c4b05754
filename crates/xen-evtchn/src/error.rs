//! Errors of the event-channel device.

use std::{fmt, io, path::PathBuf};

use xen_ioctl::OpenError;

use crate::Port;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Something failed on `/dev/xen/evtchn`; each variant names the device path, the operation and,
/// where one is involved, the port and the domain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device could not be opened (the error names the path and the usual cause).
    #[error(transparent)]
    Open(#[from] OpenError),

    /// An ioctl, `read`, `write` or `fcntl` failed.
    #[error(
        "{}: {op}{} failed: {source}{hint}",
        path.display(),
        Target { port: *port, domain: *domain }
    )]
    Op {
        /// Device path.
        path: PathBuf,
        /// The operation (`IOCTL_EVTCHN_BIND_UNBOUND_PORT`, `read (pending ports)`, …).
        op: &'static str,
        /// The port involved: the local port, or the remote one for `BIND_INTERDOMAIN`.
        port: Option<Port>,
        /// The remote domain involved.
        domain: Option<u16>,
        /// The OS error.
        source: io::Error,
        /// What usually causes this error (empty if nothing useful is known).
        hint: &'static str,
    },

    /// A `read` or `write` moved a number of bytes that is not a whole number of 4-byte ports.
    #[error(
        "{}: {op}{} transferred {got} of {wanted} bytes, not a whole number of 4-byte ports",
        path.display(),
        Target { port: *port, domain: None }
    )]
    Partial {
        /// Device path.
        path: PathBuf,
        /// The operation.
        op: &'static str,
        /// The port written, for a partial unmask.
        port: Option<Port>,
        /// Bytes transferred.
        got: usize,
        /// Bytes asked for.
        wanted: usize,
    },
}

impl Error {
    /// The OS error number, if the failure came from a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Open(e) => e.raw_os_error(),
            Error::Op { source, .. } => source.raw_os_error(),
            Error::Partial { .. } => None,
        }
    }

    /// The operation that failed (`"open"` for [`Error::Open`]).
    pub fn operation(&self) -> &'static str {
        match self {
            Error::Open { .. } => "open",
            Error::Op { op, .. } | Error::Partial { op, .. } => op,
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> Self {
        let kind = match &err {
            Error::Open(e) => e.kind(),
            Error::Op { source, .. } => source.kind(),
            Error::Partial { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}

/// " for domain D port P" / " on port P" / " for domain D" / "".
struct Target {
    port: Option<Port>,
    domain: Option<u16>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.domain) {
            (Some(port), Some(domain)) => write!(f, " for domain {domain} port {port}"),
            (Some(port), None) => write!(f, " on port {port}"),
            (None, Some(domain)) => write!(f, " for domain {domain}"),
            (None, None) => Ok(()),
        }
    }
}

/// Hint for a failed ioctl, read or write.
pub(crate) fn op_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOTTY) => {
            " (the file does not implement this ioctl: not a Xen event-channel device?)"
        }
        Some(libc::ENOTCONN) => " (the port is not bound through this handle)",
        Some(libc::EFBIG) => {
            " (the pending-event ring overflowed: call reset() and re-check every port)"
        }
        _ => "",
    }
}
