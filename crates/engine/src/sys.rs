//! The few system calls the engine makes itself: an eventfd to wake the control thread, poll(2)
//! and CLOCK_MONOTONIC.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A non-blocking eventfd: any thread may signal it (one `write`, no lock, no allocation); the
/// control thread polls and drains it.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd (non-blocking, close-on-exec).
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant flags; the result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd { fd })
    }

    /// Makes the fd readable. Never blocks: a saturated counter (EAGAIN) is already readable.
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to a descriptor we own. The result is ignored
        // on purpose: the only failure of a valid eventfd write is EAGAIN at a saturated counter,
        // which leaves the fd readable anyway.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                core::ptr::addr_of!(one).cast::<libc::c_void>(),
                core::mem::size_of::<u64>(),
            )
        };
    }

    /// Resets the counter (the fd stops being readable).
    pub(crate) fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local from a descriptor we own; the fd is
        // non-blocking, and EAGAIN (nothing to drain) is fine.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                core::ptr::addr_of_mut!(value).cast::<libc::c_void>(),
                core::mem::size_of::<u64>(),
            )
        };
    }

    /// The descriptor, for poll.
    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Converts a timeout to poll's milliseconds (rounded up, so a short wait does not spin);
/// `None` waits forever.
fn poll_timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

/// poll(2) over `fds` for readability. Returns the indices' readiness in `ready` (same length
/// as `fds`). EINTR counts as "nothing ready".
pub(crate) fn poll_readable(
    fds: &[RawFd],
    ready: &mut [bool],
    timeout: Option<Duration>,
) -> io::Result<()> {
    const MAX: usize = 8;
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX];
    let n = fds.len().min(MAX).min(ready.len());
    for (p, fd) in pfds.iter_mut().zip(fds.iter()).take(n) {
        p.fd = *fd;
        p.events = libc::POLLIN;
    }
    let nfds = libc::nfds_t::try_from(n).unwrap_or(0);
    // SAFETY: `pfds` is a live array of at least `n` initialised pollfd structs.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), nfds, poll_timeout_ms(timeout)) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            ready.iter_mut().for_each(|r| *r = false);
            return Ok(());
        }
        return Err(err);
    }
    for (r, p) in ready.iter_mut().zip(pfds.iter()).take(n) {
        *r = p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    }
    Ok(())
}

/// Waits until `fd` is readable or `timeout` elapses; returns whether it is readable.
pub(crate) fn wait_readable(fd: RawFd, timeout: Option<Duration>) -> io::Result<bool> {
    let mut ready = [false];
    poll_readable(&[fd], &mut ready, timeout)?;
    Ok(ready[0])
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO; no lock, no allocation).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_signal_and_drain() {
        let efd = EventFd::new().expect("eventfd");
        assert!(!wait_readable(efd.raw(), Some(Duration::ZERO)).expect("poll"));
        efd.signal();
        efd.signal();
        assert!(wait_readable(efd.raw(), Some(Duration::ZERO)).expect("poll"));
        efd.drain();
        assert!(!wait_readable(efd.raw(), Some(Duration::ZERO)).expect("poll"));
    }

    #[test]
    fn timeouts_round_up_and_clamp() {
        assert_eq!(poll_timeout_ms(None), -1);
        assert_eq!(poll_timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(poll_timeout_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(poll_timeout_ms(Some(Duration::from_millis(1500))), 1500);
        assert_eq!(
            poll_timeout_ms(Some(Duration::from_secs(u64::MAX))),
            libc::c_int::MAX
        );
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0);
        assert!(b >= a);
    }
}
