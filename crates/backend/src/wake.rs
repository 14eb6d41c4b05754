//! A pollable wake-up flag (Linux `eventfd`) and a small `poll(2)` wrapper.
//!
//! Threads of the backend sleep in `poll` on their event-channel or xenstore fd plus one
//! [`WakeFd`]; other threads (the control thread, a manual clock, the library user changing a
//! misbehaviour) set the flag to make them look at their state again.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A level-triggered wake-up flag: readable after [`WakeFd::wake`] until [`WakeFd::drain`].
#[derive(Debug)]
pub struct WakeFd {
    fd: OwnedFd,
}

impl WakeFd {
    /// A new, non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant flags; the result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(WakeFd { fd })
    }

    /// Makes the fd readable (idempotent until drained).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to our own eventfd. A failure can only be
        // EAGAIN (counter saturated, i.e. already readable), which is fine to ignore.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                std::ptr::from_ref(&one).cast::<libc::c_void>(),
                8,
            )
        };
    }

    /// Clears the flag.
    pub fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local from our own non-blocking eventfd;
        // EAGAIN (not readable) is the only expected failure and means "already clear".
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                std::ptr::from_mut(&mut value).cast::<libc::c_void>(),
                8,
            )
        };
    }

    /// The descriptor to poll.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (`None` = no limit). Returns, per fd,
/// whether it is readable (or in an error/hang-up state, which callers treat as "look at it").
pub fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout_ms: libc::c_int = match timeout {
        None => -1,
        Some(d) => {
            // Round up so that a short positive wait never turns into a busy loop.
            let ms = d.as_micros().div_ceil(1000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    };
    let nfds = libc::nfds_t::try_from(pfds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds to poll"))?;
    loop {
        // SAFETY: `pfds` is a live, correctly sized array of `pollfd` for the whole call.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), nfds, timeout_ms) };
        if rc >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(pfds
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_makes_readable_and_drain_clears() {
        let w = WakeFd::new().expect("eventfd");
        let r = poll_readable(&[w.raw_fd()], Some(Duration::ZERO)).expect("poll");
        assert_eq!(r, vec![false]);
        w.wake();
        w.wake();
        let r = poll_readable(&[w.raw_fd()], Some(Duration::from_secs(5))).expect("poll");
        assert_eq!(r, vec![true]);
        w.drain();
        let r = poll_readable(&[w.raw_fd()], Some(Duration::ZERO)).expect("poll");
        assert_eq!(r, vec![false]);
    }
}
