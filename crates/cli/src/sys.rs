//! The few system calls the tool makes itself: an eventfd the engine's waker signals, poll(2),
//! isatty(3), and SIGINT/SIGTERM delivered through a pipe.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// A non-blocking eventfd: any thread may signal it; the main thread polls and drains it.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant flags; the result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd { fd })
    }

    /// Makes the fd readable (never blocks).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to a descriptor we own. A failure can only be
        // EAGAIN at a saturated counter, which leaves the fd readable anyway.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                core::ptr::addr_of!(one).cast::<libc::c_void>(),
                core::mem::size_of::<u64>(),
            )
        };
    }

    /// Resets the counter.
    pub fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local from a non-blocking descriptor we own;
        // EAGAIN (nothing to drain) is fine.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                core::ptr::addr_of_mut!(value).cast::<libc::c_void>(),
                core::mem::size_of::<u64>(),
            )
        };
    }

    /// The descriptor, for poll.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn poll_timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            libc::c_int::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
        }
    }
}

/// poll(2) for readability of up to 4 fds; returns which are readable. A negative fd is
/// ignored. EINTR (a signal arrived) counts as "nothing ready": the caller checks its signal
/// pipe anyway.
pub fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<[bool; 4]> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 4];
    for (p, fd) in pfds.iter_mut().zip(fds.iter()) {
        p.fd = *fd;
        p.events = libc::POLLIN;
    }
    let n = fds.len().min(pfds.len());
    let nfds = libc::nfds_t::try_from(n).unwrap_or(0);
    // SAFETY: `pfds` is a live array of at least `n` initialised pollfd structs.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), nfds, poll_timeout_ms(timeout)) };
    let mut ready = [false; 4];
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(ready);
        }
        return Err(err);
    }
    for (r, p) in ready.iter_mut().zip(pfds.iter()).take(n) {
        *r = p.fd >= 0 && p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    }
    Ok(ready)
}

/// Whether standard error is a terminal.
pub fn stderr_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(libc::STDERR_FILENO) == 1 }
}

/// Write end of the signal pipe, read by the handler (-1 = none).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
/// The first signal received (0 = none).
static SIGNAL_SEEN: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe operations: atomics, errno save/restore, write(2).
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    let errno = unsafe { *libc::__errno_location() };
    let _ = SIGNAL_SEEN.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = u8::try_from(sig).unwrap_or(0);
        // SAFETY: writes one byte from a live local to the pipe's non-blocking write end, which
        // stays open for the life of the process once installed (it is never closed).
        let _ = unsafe { libc::write(fd, core::ptr::addr_of!(byte).cast::<libc::c_void>(), 1) };
    }
    // SAFETY: as above; restores the interrupted code's errno.
    unsafe { *libc::__errno_location() = errno };
}

/// SIGINT and SIGTERM, turned into a readable pipe. The first signal starts a clean shutdown;
/// the handler resets itself (SA_RESETHAND), so a second one kills the process the default way.
#[derive(Debug)]
pub struct Signals {
    read: OwnedFd,
}

impl Signals {
    /// Installs the handlers. Call once.
    pub fn install() -> io::Result<Signals> {
        let mut fds = [-1 as libc::c_int; 2];
        // SAFETY: `fds` is a live array of two ints for the two new descriptors.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let [r, w] = fds;
        // SAFETY: `r` is a freshly created descriptor that nothing else owns.
        let read = unsafe { OwnedFd::from_raw_fd(r) };
        // The write end is deliberately leaked: the handler may run at any time until exit.
        let old = SIGNAL_PIPE.swap(w, Ordering::SeqCst);
        if old >= 0 {
            // SAFETY: `old` was the write end of an earlier install that nothing else uses now.
            unsafe { libc::close(old) };
        }
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value to fill in.
            let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESETHAND;
            // SAFETY: `sa.sa_mask` is a live sigset_t inside `sa`.
            unsafe { libc::sigemptyset(&mut sa.sa_mask) };
            // SAFETY: installs a handler that only does async-signal-safe work; `sa` is live and
            // initialised, the old action is not wanted.
            let rc = unsafe { libc::sigaction(sig, &sa, core::ptr::null_mut()) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Signals { read })
    }

    /// Readable once a signal arrived.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<i32> {
        match SIGNAL_SEEN.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

/// The conventional name of a signal number.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_polls_readable_after_signal_only() {
        let e = EventFd::new().expect("eventfd");
        let r = poll_readable(&[e.raw()], Some(Duration::ZERO)).expect("poll");
        assert!(!r[0]);
        e.signal();
        let r = poll_readable(&[e.raw(), -1], Some(Duration::ZERO)).expect("poll");
        assert_eq!(r, [true, false, false, false]);
        e.drain();
        let r = poll_readable(&[e.raw()], Some(Duration::ZERO)).expect("poll");
        assert!(!r[0]);
    }

    #[test]
    fn poll_timeouts_round_up() {
        assert_eq!(poll_timeout_ms(None), -1);
        assert_eq!(poll_timeout_ms(Some(Duration::from_micros(10))), 1);
        assert_eq!(poll_timeout_ms(Some(Duration::from_secs(2))), 2000);
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(libc::SIGINT), "SIGINT");
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(1), "signal");
    }
}
