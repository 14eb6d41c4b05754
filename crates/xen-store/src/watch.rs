//! The queue of `XS_WATCH_EVENT`s with a pollable file descriptor.
//!
//! Invariant (kept under the queue lock): the descriptor is readable exactly when the queue is
//! non-empty or the connection is closed. A poll loop (e.g. `pw_loop_add_io`) waits for it, then
//! calls [`WatchEvents::try_recv`] until `None`, and checks [`WatchEvents::is_closed`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One watch firing: the node that changed (relative if the watch was registered relative) and
/// the token given to [`crate::Xs::watch`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// The path that changed (a child of, or equal to, the watched path).
    pub path: String,
    /// The watch's token.
    pub token: String,
}

impl WatchEvent {
    /// Parse an `XS_WATCH_EVENT` payload `path\0token\0` (extra trailing strings are ignored, a
    /// missing final NUL is tolerated). `None` if there is no token.
    pub fn from_payload(payload: &[u8]) -> Option<WatchEvent> {
        let mut parts = payload.splitn(3, |&b| b == 0);
        let path = parts.next()?;
        let token = parts.next()?;
        Some(WatchEvent {
            path: String::from_utf8_lossy(path).into_owned(),
            token: String::from_utf8_lossy(token).into_owned(),
        })
    }
}

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<WatchEvent>,
    closed: bool,
    /// A byte is in the signal socket.
    signalled: bool,
}

/// Watch events of one connection. Obtained from [`crate::Xs::watch_events`].
#[derive(Debug)]
pub struct WatchEvents {
    queue: Mutex<Queue>,
    cond: Condvar,
    /// Read end: the descriptor handed out by [`WatchEvents::fd`].
    signal_rx: UnixStream,
    /// Write end: one byte while the queue is non-empty or closed.
    signal_tx: UnixStream,
}

impl WatchEvents {
    pub(crate) fn new() -> io::Result<WatchEvents> {
        let (signal_rx, signal_tx) = UnixStream::pair()?;
        signal_rx.set_nonblocking(true)?;
        signal_tx.set_nonblocking(true)?;
        Ok(WatchEvents {
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            signal_rx,
            signal_tx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Make the descriptor readable (caller holds the lock).
    fn raise(&self, q: &mut Queue) {
        if !q.signalled {
            // The socket buffer holds at most one byte from us, so this cannot block or fail
            // for lack of space; should it fail anyway, the condvar still wakes `recv_timeout`.
            if (&self.signal_tx).write(&[1]).is_ok() {
                q.signalled = true;
            }
        }
    }

    /// Make the descriptor unreadable again (caller holds the lock).
    fn lower(&self, q: &mut Queue) {
        if q.signalled {
            let mut buf = [0u8; 16];
            loop {
                match (&self.signal_rx).read(&mut buf) {
                    Ok(n) if n > 0 => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    _ => break,
                }
            }
            q.signalled = false;
        }
    }

    pub(crate) fn push(&self, ev: WatchEvent) {
        let mut q = self.lock();
        q.events.push_back(ev);
        self.raise(&mut q);
        drop(q);
        self.cond.notify_all();
    }

    pub(crate) fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        self.raise(&mut q);
        drop(q);
        self.cond.notify_all();
    }

    fn pop(&self, q: &mut Queue) -> Option<WatchEvent> {
        let ev = q.events.pop_front();
        if q.events.is_empty() && !q.closed {
            self.lower(q);
        }
        ev
    }

    /// A descriptor that polls readable while events are queued, and for good once the connection
    /// is closed. Only poll it; do not read from or close it.
    pub fn fd(&self) -> RawFd {
        self.signal_rx.as_raw_fd()
    }

    /// The next queued event without blocking. Clears the descriptor's readiness when the queue
    /// becomes empty (unless closed).
    pub fn try_recv(&self) -> Option<WatchEvent> {
        let mut q = self.lock();
        self.pop(&mut q)
    }

    /// The next event, waiting up to `timeout`. `None` on timeout, or at once if the queue is
    /// empty and the connection closed.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<WatchEvent> {
        let deadline = Instant::now().checked_add(timeout);
        let mut q = self.lock();
        loop {
            if !q.events.is_empty() {
                return self.pop(&mut q);
            }
            if q.closed {
                return None;
            }
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    d - now
                }
                None => Duration::from_secs(3600),
            };
            q = self
                .cond
                .wait_timeout(q, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Number of queued events.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// No events queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The connection is closed: no further events will arrive.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

impl AsFd for WatchEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.signal_rx.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    fn readable(w: &WatchEvents, timeout: Duration) -> bool {
        let mut fds = [sys::pollfd(w.fd(), sys::POLLIN)];
        sys::poll(&mut fds, Some(timeout)).unwrap() > 0
    }

    fn ev(p: &str) -> WatchEvent {
        WatchEvent {
            path: p.into(),
            token: "t".into(),
        }
    }

    #[test]
    fn payload_parsing() {
        assert_eq!(
            WatchEvent::from_payload(b"/a/b\0tok\0"),
            Some(WatchEvent {
                path: "/a/b".into(),
                token: "tok".into()
            })
        );
        assert_eq!(
            WatchEvent::from_payload(b"/a\0tok\0extra\0").map(|e| e.token),
            Some("tok".into())
        );
        assert_eq!(
            WatchEvent::from_payload(b"/a\0tok").map(|e| e.token),
            Some("tok".into())
        );
        assert_eq!(WatchEvent::from_payload(b"/a"), None);
        assert_eq!(WatchEvent::from_payload(b""), None);
    }

    #[test]
    fn fd_follows_the_queue() {
        let w = WatchEvents::new().unwrap();
        assert!(!readable(&w, Duration::from_millis(20)));
        w.push(ev("/1"));
        w.push(ev("/2"));
        assert!(readable(&w, Duration::from_secs(5)));
        assert_eq!(w.len(), 2);
        assert_eq!(w.try_recv(), Some(ev("/1")));
        assert!(
            readable(&w, Duration::from_secs(5)),
            "one event still queued"
        );
        assert_eq!(w.try_recv(), Some(ev("/2")));
        assert!(
            !readable(&w, Duration::from_millis(20)),
            "queue empty, fd must be cleared"
        );
        assert_eq!(w.try_recv(), None);
        w.push(ev("/3"));
        assert!(readable(&w, Duration::from_secs(5)));
    }

    #[test]
    fn close_keeps_fd_readable_and_drains_remaining() {
        let w = WatchEvents::new().unwrap();
        w.push(ev("/1"));
        w.close();
        assert!(w.is_closed());
        assert_eq!(w.try_recv(), Some(ev("/1")));
        assert!(readable(&w, Duration::from_secs(5)));
        assert_eq!(w.try_recv(), None);
        assert!(
            readable(&w, Duration::from_secs(5)),
            "closed must stay readable"
        );
        assert_eq!(w.recv_timeout(Duration::from_secs(30)), None);
    }

    #[test]
    fn recv_timeout_wakes_on_push_from_another_thread() {
        let w = WatchEvents::new().unwrap();
        assert_eq!(w.recv_timeout(Duration::from_millis(10)), None);
        std::thread::scope(|s| {
            let h = s.spawn(|| w.recv_timeout(Duration::from_secs(10)));
            w.push(ev("/x"));
            assert_eq!(h.join().unwrap(), Some(ev("/x")));
        });
        assert!(!readable(&w, Duration::from_millis(10)));
    }
}
