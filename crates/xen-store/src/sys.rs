//! The few raw system calls std does not offer: `poll(2)` and `send(2)` with `MSG_NOSIGNAL`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

/// Readable (`POLLIN`).
pub(crate) const POLLIN: i16 = libc::POLLIN;
/// Writable (`POLLOUT`).
pub(crate) const POLLOUT: i16 = libc::POLLOUT;

/// A `pollfd` for `fd` waiting for `events`.
pub(crate) fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Milliseconds for `poll`, rounded up so a short timeout does not become a busy loop; `None`
/// waits forever.
fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

/// `poll(2)` on `fds`; returns the number of entries with events. `EINTR` is reported as 0 ready
/// entries so callers re-check their own conditions and deadlines.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let nfds = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds for poll"))?;
    // SAFETY: `fds` is a valid, exclusively borrowed slice of `pollfd` for the duration of the
    // call and `nfds` is its length; poll only writes the `revents` fields.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout_ms(timeout)) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(usize::try_from(rc).unwrap_or(0))
}

/// Wait until `fd` has any of `events` (or an error/hangup) or `deadline` passes. Returns
/// whether it became ready.
pub(crate) fn wait_fd(
    fd: BorrowedFd<'_>,
    events: i16,
    deadline: Option<Instant>,
) -> io::Result<bool> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Ok(false);
                }
                Some(d - now)
            }
        };
        let mut fds = [pollfd(fd.as_raw_fd(), events)];
        if poll(&mut fds, timeout)? > 0 {
            return Ok(true);
        }
    }
}

/// `send(2)` with `MSG_NOSIGNAL | MSG_DONTWAIT`: a peer that closed the socket yields `EPIPE`
/// instead of killing the process with `SIGPIPE` (the PipeWire host may not ignore it).
pub(crate) fn send_nosignal(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid readable region of `buf.len()` bytes for the duration of the
    // call, and `fd` is a live descriptor borrowed from its owner.
    let rc = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast::<libc::c_void>(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(rc).unwrap_or(0))
}

/// Set `O_NONBLOCK` on `fd` (the reader only reads after `poll`, writers poll on `EAGAIN`, so no
/// call can block past its deadline).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL on a live borrowed descriptor takes no pointer arguments.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: F_SETFL with an integer flag argument on a live borrowed descriptor.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
