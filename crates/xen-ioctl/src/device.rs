//! An open Xen device file, the error of opening one, and `ioctl` on it.

use std::{
    ffi::c_void,
    fs::OpenOptions,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
        unix::fs::OpenOptionsExt,
    },
    path::{Path, PathBuf},
};

/// The hint for a device file that does not exist, naming the kernel module that provides it:
/// `missing_module_hint!("xen_evtchn")` is
/// `" (the device exists only in a Xen domain with the `xen_evtchn` kernel module loaded)"`.
#[macro_export]
macro_rules! missing_module_hint {
    ($module:literal) => {
        ::core::concat!(
            " (the device exists only in a Xen domain with the `",
            $module,
            "` kernel module loaded)"
        )
    };
}

/// A device file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot open: {source}{hint}", path.display())]
pub struct OpenError {
    /// Device path.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
    /// What usually causes this error (empty if nothing useful is known).
    pub hint: &'static str,
}

impl OpenError {
    /// The OS error number.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The kind of the OS error.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// Hint for a failed `open`; `missing` is the one for a device that does not exist.
fn open_hint(err: &io::Error, missing: &'static str) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => missing,
        Some(libc::EACCES | libc::EPERM) => " (the Xen devices are normally root-only, mode 0600)",
        _ => "",
    }
}

/// An open Xen device file (`/dev/xen/evtchn`, `/dev/xen/gntalloc`, …) and its path, for error
/// messages. Closing it (dropping) releases whatever the kernel tied to the open file.
#[derive(Debug)]
pub struct DeviceFile {
    fd: OwnedFd,
    path: PathBuf,
}

impl DeviceFile {
    /// Opens `path` read-write and close-on-exec. If the device does not exist the error carries
    /// `missing_hint` (see [`missing_module_hint!`]).
    pub fn open(path: &Path, missing_hint: &'static str) -> Result<Self, OpenError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| OpenError {
                path: path.to_path_buf(),
                hint: open_hint(&source, missing_hint),
                source,
            })?;
        Ok(DeviceFile {
            fd: OwnedFd::from(file),
            path: path.to_path_buf(),
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `ioctl(fd, request, arg)`, returning the non-negative result.
    ///
    /// # Safety
    ///
    /// `arg` must be valid for reads and writes of as many bytes as the kernel accesses for
    /// `request` on this device (the struct the request encodes, or the variable-length buffer
    /// it describes; null for a request of size 0), for the duration of the call.
    pub unsafe fn ioctl(&self, request: u32, arg: *mut c_void) -> io::Result<libc::c_int> {
        // SAFETY: the descriptor is open (owned by `self`); the caller guarantees `arg`.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), ioctl_request(request), arg) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }
}

impl AsFd for DeviceFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for DeviceFile {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The request number as the C library's `ioctl` declares it (`unsigned long` on glibc, `int` on
/// musl). Every Xen device request is below 2^31, so the conversion keeps the bits.
#[allow(clippy::cast_lossless, clippy::cast_possible_wrap)]
const fn ioctl_request(request: u32) -> libc::Ioctl {
    request as libc::Ioctl
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISSING: &str = missing_module_hint!("xen_test");

    #[test]
    fn the_missing_module_hint_names_the_module() {
        assert_eq!(
            MISSING,
            " (the device exists only in a Xen domain with the `xen_test` kernel module loaded)"
        );
    }

    #[test]
    fn a_missing_device_names_the_path_and_the_module() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xen").join("test");
        let err = DeviceFile::open(&path, MISSING).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(err.path, path);
        assert_eq!(
            err.to_string(),
            format!(
                "{}: cannot open: {}{MISSING}",
                path.display(),
                io::Error::from_raw_os_error(libc::ENOENT)
            )
        );
    }

    #[test]
    fn permission_errors_get_their_own_hint() {
        for errno in [libc::EACCES, libc::EPERM] {
            let hint = open_hint(&io::Error::from_raw_os_error(errno), MISSING);
            assert!(hint.contains("root-only"), "{errno}: {hint}");
        }
        assert_eq!(
            open_hint(&io::Error::from_raw_os_error(libc::EIO), MISSING),
            ""
        );
    }

    #[test]
    fn an_ioctl_on_a_regular_file_fails_with_enotty() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let dev = DeviceFile::open(file.path(), MISSING).unwrap();
        assert_eq!(dev.path(), file.path());
        assert!(dev.as_raw_fd() >= 0);
        // SAFETY: a request of size 0 with a null argument; a regular file rejects any ioctl
        // without touching memory.
        let err = unsafe {
            dev.ioctl(
                crate::ioc(crate::IOC_NONE, b'E', 5, 0),
                std::ptr::null_mut(),
            )
        }
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
    }
}
