//! A pollable "something is queued" flag: one end of a socket pair that holds at most one byte.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The readable end is handed out as the pollable fd; the owner of the queue raises and lowers
/// it under its own lock, tracking whether a byte is in flight.
#[derive(Debug)]
pub(crate) struct SignalFd {
    rx: UnixStream,
    tx: UnixStream,
}

impl SignalFd {
    pub(crate) fn new() -> io::Result<SignalFd> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(SignalFd { rx, tx })
    }

    /// The descriptor to poll.
    pub(crate) fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Makes the fd readable. The caller only calls this while it believes no byte is in flight,
    /// so the socket buffer never fills; a failure leaves the fd unreadable (reported as false).
    pub(crate) fn raise(&self) -> bool {
        loop {
            match (&self.tx).write(&[1]) {
                Ok(1) => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => return false,
            }
        }
    }

    /// Makes the fd unreadable (drains whatever is in flight).
    pub(crate) fn lower(&self) {
        let mut buf = [0u8; 16];
        loop {
            match (&self.rx).read(&mut buf) {
                Ok(n) if n > 0 => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
    }
}

/// Waits up to `timeout` for `fd` to become readable (a watch fd or an event-channel fd of the
/// fakes, or any other descriptor). Returns whether it is readable.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid, exclusively borrowed pollfd array of length 1 for the
        // duration of the call; poll does not keep the pointer.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r > 0 {
            return pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        }
        if r == 0 {
            return false;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
        if left.is_zero() {
            return false;
        }
    }
}
