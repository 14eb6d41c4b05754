//! Error types: xenstore's error strings ([`XsErrno`]) and the client's [`Error`].

use core::fmt;
use std::io;
use std::time::Duration;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error name sent by xenstored in an `XS_ERROR` reply (the `xsd_errors` table of `xs_wire.h`).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum XsErrno {
    /// Invalid argument.
    EINVAL,
    /// Permission denied.
    EACCES,
    /// Already exists.
    EEXIST,
    /// Is a directory.
    EISDIR,
    /// No such node.
    ENOENT,
    /// Out of memory.
    ENOMEM,
    /// No space (quota).
    ENOSPC,
    /// I/O error.
    EIO,
    /// Directory not empty.
    ENOTEMPTY,
    /// Operation not supported by this xenstored.
    ENOSYS,
    /// Read-only.
    EROFS,
    /// Busy.
    EBUSY,
    /// Transaction conflict: retry.
    EAGAIN,
    /// Already connected.
    EISCONN,
    /// Too big (e.g. a directory listing over the payload limit).
    E2BIG,
    /// Operation not permitted.
    EPERM,
    /// Any other string (e.g. `EQUOTA` from newer daemons), as received.
    Other(String),
}

impl XsErrno {
    /// Parse the payload of an `XS_ERROR` reply (`"ENOENT\0"`); trailing NULs are ignored.
    pub fn from_wire(payload: &[u8]) -> XsErrno {
        let end = payload
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(payload.len());
        let name = payload.get(..end).unwrap_or(payload);
        Self::from_name(&String::from_utf8_lossy(name))
    }

    /// The errno for a name such as `"EAGAIN"`.
    pub fn from_name(name: &str) -> XsErrno {
        use XsErrno::*;
        match name {
            "EINVAL" => EINVAL,
            "EACCES" => EACCES,
            "EEXIST" => EEXIST,
            "EISDIR" => EISDIR,
            "ENOENT" => ENOENT,
            "ENOMEM" => ENOMEM,
            "ENOSPC" => ENOSPC,
            "EIO" => EIO,
            "ENOTEMPTY" => ENOTEMPTY,
            "ENOSYS" => ENOSYS,
            "EROFS" => EROFS,
            "EBUSY" => EBUSY,
            "EAGAIN" => EAGAIN,
            "EISCONN" => EISCONN,
            "E2BIG" => E2BIG,
            "EPERM" => EPERM,
            other => Other(other.to_owned()),
        }
    }

    /// The name as sent on the wire.
    pub fn as_str(&self) -> &str {
        use XsErrno::*;
        match self {
            EINVAL => "EINVAL",
            EACCES => "EACCES",
            EEXIST => "EEXIST",
            EISDIR => "EISDIR",
            ENOENT => "ENOENT",
            ENOMEM => "ENOMEM",
            ENOSPC => "ENOSPC",
            EIO => "EIO",
            ENOTEMPTY => "ENOTEMPTY",
            ENOSYS => "ENOSYS",
            EROFS => "EROFS",
            EBUSY => "EBUSY",
            EAGAIN => "EAGAIN",
            EISCONN => "EISCONN",
            E2BIG => "E2BIG",
            EPERM => "EPERM",
            Other(s) => s,
        }
    }

    /// The Linux errno value, if the name is a known one.
    pub fn raw_os_error(&self) -> Option<i32> {
        use XsErrno::*;
        Some(match self {
            EINVAL => libc::EINVAL,
            EACCES => libc::EACCES,
            EEXIST => libc::EEXIST,
            EISDIR => libc::EISDIR,
            ENOENT => libc::ENOENT,
            ENOMEM => libc::ENOMEM,
            ENOSPC => libc::ENOSPC,
            EIO => libc::EIO,
            ENOTEMPTY => libc::ENOTEMPTY,
            ENOSYS => libc::ENOSYS,
            EROFS => libc::EROFS,
            EBUSY => libc::EBUSY,
            EAGAIN => libc::EAGAIN,
            EISCONN => libc::EISCONN,
            E2BIG => libc::E2BIG,
            EPERM => libc::EPERM,
            Other(_) => return None,
        })
    }
}

impl fmt::Display for XsErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the xenstore client. `op` is the request name (`"READ"`, `"WRITE"`, …, or `"open"`),
/// `path` the node path (or the domid / socket path the operation was about).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// xenstored answered with an `XS_ERROR` reply.
    #[error("xenstore {op} {path:?}: {errno}")]
    Xenstore {
        /// Request name.
        op: &'static str,
        /// Path (or argument) of the request.
        path: String,
        /// The error name xenstored sent.
        errno: XsErrno,
    },
    /// An I/O error on the connection or while opening it.
    #[error("xenstore {op} {path:?}: {source}")]
    Io {
        /// Request name, or `"open"`.
        op: &'static str,
        /// Path of the request or of the socket/device.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No reply within the client's per-request timeout.
    #[error("xenstore {op} {path:?}: no reply within {timeout:?}")]
    Timeout {
        /// Request name.
        op: &'static str,
        /// Path of the request.
        path: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The request would exceed `XENSTORE_PAYLOAD_MAX`; nothing was sent.
    #[error("xenstore {op} {path:?}: payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Request name.
        op: &'static str,
        /// Path of the request (possibly truncated for display by the caller).
        path: String,
        /// Payload length that would have been sent.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An argument cannot be encoded (e.g. a NUL byte inside a path); nothing was sent.
    #[error("xenstore {op} {path:?}: invalid argument: {reason}")]
    InvalidArgument {
        /// Request name.
        op: &'static str,
        /// Path of the request.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The server sent something that violates the protocol.
    #[error("xenstore protocol error: {0}")]
    Protocol(String),
    /// The connection is closed (peer closed it, it broke, or the client was closed).
    #[error("xenstore connection closed")]
    Closed,
    /// [`crate::Xs::transaction`] got `EAGAIN` on every attempt.
    #[error("xenstore transaction still conflicting (EAGAIN) after {attempts} attempts")]
    TransactionConflict {
        /// Number of attempts made.
        attempts: u32,
    },
}

impl Error {
    /// The xenstore error name, if this is an `XS_ERROR` reply.
    pub fn xs_errno(&self) -> Option<&XsErrno> {
        match self {
            Error::Xenstore { errno, .. } => Some(errno),
            _ => None,
        }
    }

    /// xenstored said `ENOENT`.
    pub fn is_enoent(&self) -> bool {
        self.xs_errno() == Some(&XsErrno::ENOENT)
    }

    /// xenstored said `EAGAIN` (transaction conflict).
    pub fn is_eagain(&self) -> bool {
        self.xs_errno() == Some(&XsErrno::EAGAIN)
    }

    /// xenstored said `EACCES`.
    pub fn is_eacces(&self) -> bool {
        self.xs_errno() == Some(&XsErrno::EACCES)
    }

    /// xenstored said `EEXIST`.
    pub fn is_eexist(&self) -> bool {
        self.xs_errno() == Some(&XsErrno::EEXIST)
    }

    /// The connection is gone ([`Error::Closed`]).
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Xenstore { errno, .. } => match errno.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code).kind(),
                None => io::ErrorKind::Other,
            },
            Error::Io { source, .. } => source.kind(),
            Error::Timeout { .. } => io::ErrorKind::TimedOut,
            Error::PayloadTooLarge { .. } | Error::InvalidArgument { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::Closed => io::ErrorKind::NotConnected,
            Error::TransactionConflict { .. } => io::ErrorKind::WouldBlock,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 16] = [
        "EINVAL",
        "EACCES",
        "EEXIST",
        "EISDIR",
        "ENOENT",
        "ENOMEM",
        "ENOSPC",
        "EIO",
        "ENOTEMPTY",
        "ENOSYS",
        "EROFS",
        "EBUSY",
        "EAGAIN",
        "EISCONN",
        "E2BIG",
        "EPERM",
    ];

    #[test]
    fn every_xsd_error_name_round_trips() {
        for name in ALL {
            let mut wire = name.as_bytes().to_vec();
            wire.push(0);
            let e = XsErrno::from_wire(&wire);
            assert!(!matches!(e, XsErrno::Other(_)), "{name} not recognised");
            assert_eq!(e.as_str(), name);
            assert!(e.raw_os_error().is_some(), "{name}");
        }
        assert_eq!(XsErrno::from_wire(b"ENOENT"), XsErrno::ENOENT);
        assert_eq!(XsErrno::from_wire(b"EAGAIN\0\0"), XsErrno::EAGAIN);
        assert_eq!(XsErrno::EACCES.raw_os_error(), Some(libc::EACCES));
    }

    #[test]
    fn unknown_names_are_kept() {
        let e = XsErrno::from_wire(b"EQUOTA\0");
        assert_eq!(e, XsErrno::Other("EQUOTA".into()));
        assert_eq!(e.to_string(), "EQUOTA");
        assert_eq!(e.raw_os_error(), None);
    }

    #[test]
    fn error_helpers_and_message_name_op_and_path() {
        let e = Error::Xenstore {
            op: "READ",
            path: "/local/domain/5/x".into(),
            errno: XsErrno::ENOENT,
        };
        assert!(e.is_enoent() && !e.is_eagain() && !e.is_eacces() && !e.is_closed());
        let msg = e.to_string();
        assert!(
            msg.contains("READ") && msg.contains("/local/domain/5/x") && msg.contains("ENOENT")
        );
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        assert!(Error::Closed.is_closed());
        let eacces = Error::Xenstore {
            op: "WRITE",
            path: "a".into(),
            errno: XsErrno::EACCES,
        };
        assert!(eacces.is_eacces());
    }
}
