//! The client: [`Xs`] (one connection, shared by any number of threads) and [`Transaction`].
//!
//! A background reader thread owns reading from the stream. It routes each reply to the caller
//! waiting on its `req_id` (a one-shot channel per request) and queues `XS_WATCH_EVENT`s into
//! [`WatchEvents`]. Writers are serialised by a mutex and every message goes out in one
//! `write`/`send` call (the kernel's `/dev/xen/xenbus` parses whole messages per write).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, XsErrno};
use crate::perm::Perm;
use crate::sys;
use crate::watch::{WatchEvent, WatchEvents};
use crate::wire::{self, Message, MessageReader, MsgType, PAYLOAD_MAX};

/// Per-request timeout of a new connection.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often [`Xs::transaction`] tries before giving up with [`Error::TransactionConflict`].
pub const TRANSACTION_ATTEMPTS: u32 = 16;

/// The guest kernel's xenstore device.
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";

/// Environment variable naming a xenstored unix socket (as libxenstore honours it).
pub const XENSTORED_PATH_ENV: &str = "XENSTORED_PATH";

/// How often a DIRECTORY_PART listing restarts because the node changed, and how many chunks it
/// may take, before giving up.
const DIRECTORY_PART_RESTARTS: usize = 16;
const DIRECTORY_PART_MAX_CHUNKS: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How messages are written: `send(MSG_NOSIGNAL)` on sockets, plain `write` on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Socket,
    Device,
}

#[derive(Debug)]
struct State {
    /// Callers waiting for a reply, by `req_id`. Entries whose receiver was dropped (timed-out
    /// requests, fire-and-forget aborts) stay until their reply arrives so the id is not reused.
    pending: HashMap<u32, mpsc::Sender<Message>>,
    next_req_id: u32,
    closed: bool,
    close_reason: Option<String>,
}

impl State {
    fn alloc_req_id(&mut self) -> u32 {
        loop {
            let id = self.next_req_id;
            self.next_req_id = self.next_req_id.wrapping_add(1);
            if id != 0 && !self.pending.contains_key(&id) {
                return id;
            }
        }
    }
}

struct Inner {
    stream: File,
    kind: Kind,
    /// What we are connected to, for messages.
    label: String,
    write_lock: Mutex<()>,
    state: Mutex<State>,
    events: WatchEvents,
    /// Writing a byte here wakes the reader thread for shutdown.
    wake_tx: UnixStream,
    timeout_ns: AtomicU64,
}

impl Inner {
    /// Mark the connection closed: fail every waiting caller with [`Error::Closed`], make the
    /// watch fd readable for good, and wake the reader thread so it exits.
    fn shutdown(&self, reason: String) {
        let mut st = lock(&self.state);
        if st.closed {
            return;
        }
        st.closed = true;
        st.close_reason = Some(reason);
        // Dropping the senders makes every waiting `recv` return `Disconnected` at once.
        st.pending.clear();
        drop(st);
        self.events.close();
        // Non-blocking; a full buffer already means the reader has been woken.
        let _ = (&self.wake_tx).write(&[1]);
    }

    fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    fn timeout(&self) -> Duration {
        Duration::from_nanos(self.timeout_ns.load(Ordering::Relaxed))
    }

    fn dispatch(&self, m: Message) {
        if m.header.msg_type == MsgType::WatchEvent.code() {
            // The kernel device leaves req_id/tx_id of watch events uninitialised: route by type
            // only. A payload without a token cannot be attributed to a watch and is dropped.
            if let Some(ev) = WatchEvent::from_payload(&m.payload) {
                self.events.push(ev);
            }
            return;
        }
        let waiter = lock(&self.state).pending.remove(&m.header.req_id);
        if let Some(tx) = waiter {
            // The receiver may be gone (timed out or fire-and-forget); then the reply is dropped.
            let _ = tx.send(m);
        }
    }

    /// Write one encoded message, completing short writes, bounded by `deadline`.
    fn send_message(
        &self,
        msg: &[u8],
        deadline: Option<Instant>,
        op: &'static str,
        path: &str,
    ) -> Result<()> {
        let _guard = lock(&self.write_lock);
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let fd = self.stream.as_fd();
        let mut off = 0;
        while let Some(rest) = msg.get(off..).filter(|r| !r.is_empty()) {
            let res = match self.kind {
                Kind::Socket => sys::send_nosignal(fd, rest),
                Kind::Device => (&self.stream).write(rest),
            };
            match res {
                Ok(0) => {
                    self.shutdown(format!("{op} {path:?}: the stream accepted no bytes"));
                    return Err(Error::Closed);
                }
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match sys::wait_fd(fd, sys::POLLOUT, deadline) {
                        Ok(true) => {}
                        Ok(false) => {
                            if off > 0 {
                                // Half a message is on the wire: the stream cannot be reused.
                                self.shutdown(format!("{op} {path:?}: timed out mid-message"));
                            }
                            return Err(Error::Timeout {
                                op,
                                path: path.to_owned(),
                                timeout: self.timeout(),
                            });
                        }
                        Err(source) => {
                            return Err(Error::Io {
                                op,
                                path: path.to_owned(),
                                source,
                            })
                        }
                    }
                }
                Err(e) if is_broken(&e) => {
                    self.shutdown(format!("{op} {path:?}: write failed: {e}"));
                    return Err(Error::Closed);
                }
                Err(source) => {
                    if off > 0 {
                        self.shutdown(format!("{op} {path:?}: write failed mid-message: {source}"));
                    }
                    return Err(Error::Io {
                        op,
                        path: path.to_owned(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Register a waiter, send, and wait for the reply. Returns the payload of a reply of the
    /// request's own type; `XS_ERROR` becomes [`Error::Xenstore`].
    fn request(&self, ty: MsgType, tx_id: u32, payload: &[u8], path: &str) -> Result<Vec<u8>> {
        let op = ty.name();
        if payload.len() > PAYLOAD_MAX {
            return Err(Error::PayloadTooLarge {
                op,
                path: path.to_owned(),
                len: payload.len(),
                max: PAYLOAD_MAX,
            });
        }
        let timeout = self.timeout();
        let deadline = Instant::now().checked_add(timeout);
        let (tx, rx) = mpsc::channel();
        let req_id = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(Error::Closed);
            }
            let id = st.alloc_req_id();
            st.pending.insert(id, tx);
            id
        };
        let msg = wire::encode_message(ty, req_id, tx_id, payload)
            .map_err(|e| Error::Protocol(format!("{op} {path:?}: {e}")))?;
        if let Err(e) = self.send_message(&msg, deadline, op, path) {
            lock(&self.state).pending.remove(&req_id);
            return Err(e);
        }
        let received = match deadline {
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let reply = match received {
            Ok(m) => m,
            Err(RecvTimeoutError::Disconnected) => return Err(Error::Closed),
            Err(RecvTimeoutError::Timeout) => match rx.try_recv() {
                // The reply raced with the timeout.
                Ok(m) => m,
                Err(mpsc::TryRecvError::Disconnected) => return Err(Error::Closed),
                // The pending entry stays: a late reply is then discarded by `dispatch`.
                Err(mpsc::TryRecvError::Empty) => {
                    return Err(Error::Timeout {
                        op,
                        path: path.to_owned(),
                        timeout,
                    })
                }
            },
        };
        if reply.header.msg_type == MsgType::Error.code() {
            return Err(Error::Xenstore {
                op,
                path: path.to_owned(),
                errno: XsErrno::from_wire(&reply.payload),
            });
        }
        if reply.header.msg_type != ty.code() {
            return Err(Error::Protocol(format!(
                "{op} {path:?}: reply has type {} instead of {}",
                reply.header.msg_type,
                ty.code()
            )));
        }
        Ok(reply.payload)
    }

    /// Send a request whose reply nobody waits for (used to abort a dropped transaction).
    fn send_oneway(&self, ty: MsgType, tx_id: u32, payload: &[u8], path: &str) -> Result<()> {
        let (tx, _rx) = mpsc::channel();
        let req_id = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(Error::Closed);
            }
            let id = st.alloc_req_id();
            st.pending.insert(id, tx);
            id
        };
        let msg = wire::encode_message(ty, req_id, tx_id, payload)
            .map_err(|e| Error::Protocol(format!("{} {path:?}: {e}", ty.name())))?;
        let deadline = Instant::now().checked_add(self.timeout());
        let res = self.send_message(&msg, deadline, ty.name(), path);
        if res.is_err() {
            lock(&self.state).pending.remove(&req_id);
        }
        res
    }
}

fn is_broken(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    ) || matches!(e.raw_os_error(), Some(libc::EBADF) | Some(libc::ESHUTDOWN))
}

fn reader_loop(inner: Arc<Inner>, wake_rx: UnixStream) {
    let mut decoder = MessageReader::new();
    let mut buf = vec![0u8; 2 * (wire::HEADER_LEN + PAYLOAD_MAX)];
    let stream_fd = inner.stream.as_raw_fd();
    let wake_fd = wake_rx.as_raw_fd();
    loop {
        let mut fds = [
            sys::pollfd(stream_fd, sys::POLLIN),
            sys::pollfd(wake_fd, sys::POLLIN),
        ];
        if let Err(e) = sys::poll(&mut fds, None) {
            inner.shutdown(format!("poll on {} failed: {e}", inner.label));
            return;
        }
        let [stream_ev, wake_ev] = fds;
        if wake_ev.revents != 0 || inner.is_closed() {
            return;
        }
        if stream_ev.revents == 0 {
            continue;
        }
        match (&inner.stream).read(&mut buf) {
            Ok(0) => {
                inner.shutdown(format!("{} closed the connection", inner.label));
                return;
            }
            Ok(n) => decoder.push(buf.get(..n).unwrap_or(&[])),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                inner.shutdown(format!("read from {} failed: {e}", inner.label));
                return;
            }
        }
        loop {
            match decoder.next_message() {
                Ok(Some(m)) => inner.dispatch(m),
                Ok(None) => break,
                Err(e) => {
                    inner.shutdown(format!("protocol error from {}: {e}", inner.label));
                    return;
                }
            }
        }
    }
}

/// A connection to xenstore. `Send + Sync`: share it (e.g. in an `Arc`) between threads; every
/// method takes `&self` and several requests may be in flight at once.
///
/// Dropping it stops the reader thread (without waiting for the server) and closes the stream.
pub struct Xs {
    inner: Arc<Inner>,
    reader: Option<JoinHandle<()>>,
}

impl fmt::Debug for Xs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Xs")
            .field("connection", &self.inner.label)
            .field("kind", &self.inner.kind)
            .field("closed", &self.inner.is_closed())
            .finish_non_exhaustive()
    }
}

impl Xs {
    /// Connect to the unix socket named by `XENSTORED_PATH` if set, else open `/dev/xen/xenbus`.
    pub fn open() -> Result<Xs> {
        Self::open_with_env(std::env::var_os(XENSTORED_PATH_ENV))
    }

    fn open_with_env(xenstored_path: Option<OsString>) -> Result<Xs> {
        match xenstored_path {
            Some(p) if !p.is_empty() => Self::open_unix(Path::new(&p)),
            _ => Self::open_device(Path::new(XENBUS_DEVICE)),
        }
    }

    /// Connect to xenstored's unix socket (or a bridge speaking the same byte stream).
    pub fn open_unix(path: &Path) -> Result<Xs> {
        let stream = UnixStream::connect(path).map_err(|source| Error::Io {
            op: "open",
            path: path.display().to_string(),
            source,
        })?;
        Self::start(
            OwnedFd::from(stream),
            Kind::Socket,
            path.display().to_string(),
        )
    }

    /// Open a xenstore character device such as `/dev/xen/xenbus`.
    pub fn open_device(path: &Path) -> Result<Xs> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| Error::Io {
                op: "open",
                path: path.display().to_string(),
                source,
            })?;
        Self::start(
            OwnedFd::from(file),
            Kind::Device,
            path.display().to_string(),
        )
    }

    /// Use an already connected unix stream (e.g. one end of `UnixStream::pair()`).
    pub fn from_unix_stream(stream: UnixStream) -> Result<Xs> {
        Self::start(
            OwnedFd::from(stream),
            Kind::Socket,
            "unix stream".to_owned(),
        )
    }

    /// Use any connected byte-stream descriptor: a socket, or a device like `/dev/xen/xenbus`.
    pub fn from_fd(fd: OwnedFd) -> Result<Xs> {
        let file = File::from(fd);
        let is_socket = file
            .metadata()
            .map_err(|source| Error::Io {
                op: "open",
                path: "fd".to_owned(),
                source,
            })?
            .file_type()
            .is_socket();
        let kind = if is_socket {
            Kind::Socket
        } else {
            Kind::Device
        };
        Self::start(OwnedFd::from(file), kind, "fd".to_owned())
    }

    fn start(fd: OwnedFd, kind: Kind, label: String) -> Result<Xs> {
        let io_err = |source: io::Error| Error::Io {
            op: "open",
            path: label.clone(),
            source,
        };
        sys::set_nonblocking(fd.as_fd()).map_err(io_err)?;
        let events = WatchEvents::new().map_err(io_err)?;
        let (wake_rx, wake_tx) = UnixStream::pair().map_err(io_err)?;
        wake_tx.set_nonblocking(true).map_err(io_err)?;
        wake_rx.set_nonblocking(true).map_err(io_err)?;
        let inner = Arc::new(Inner {
            stream: File::from(fd),
            kind,
            label: label.clone(),
            write_lock: Mutex::new(()),
            state: Mutex::new(State {
                pending: HashMap::new(),
                next_req_id: 1,
                closed: false,
                close_reason: None,
            }),
            events,
            wake_tx,
            timeout_ns: AtomicU64::new(duration_nanos(DEFAULT_TIMEOUT)),
        });
        let for_reader = Arc::clone(&inner);
        let reader = std::thread::Builder::new()
            .name("xen-store-reader".into())
            .spawn(move || reader_loop(for_reader, wake_rx))
            .map_err(io_err)?;
        Ok(Xs {
            inner,
            reader: Some(reader),
        })
    }

    #[cfg(test)]
    fn from_unix_stream_as_device(stream: UnixStream) -> Result<Xs> {
        Self::start(
            OwnedFd::from(stream),
            Kind::Device,
            "test device".to_owned(),
        )
    }

    /// The per-request timeout (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(&self) -> Duration {
        self.inner.timeout()
    }

    /// Change the per-request timeout; requests already waiting keep theirs.
    pub fn set_timeout(&self, timeout: Duration) {
        self.inner
            .timeout_ns
            .store(duration_nanos(timeout), Ordering::Relaxed);
    }

    /// The connection is closed (by the peer, an I/O or protocol error, or [`Xs::close`]).
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Why the connection closed, if it did.
    pub fn close_reason(&self) -> Option<String> {
        lock(&self.inner.state).close_reason.clone()
    }

    /// Close the connection now: requests in flight on other threads and all later calls fail
    /// with [`Error::Closed`], and the watch fd becomes readable.
    pub fn close(&self) {
        self.inner.shutdown("closed by the client".to_owned());
    }

    /// The queue of watch events of this connection.
    pub fn watch_events(&self) -> &WatchEvents {
        &self.inner.events
    }

    fn ops(&self) -> Ops<'_> {
        Ops {
            inner: &self.inner,
            tx_id: 0,
        }
    }

    /// Read a node's value.
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.ops().read(path)
    }

    /// Read a node's value as text (invalid UTF-8 replaced, trailing NULs removed).
    pub fn read_string(&self, path: &str) -> Result<String> {
        self.ops().read_string(path)
    }

    /// Like [`Xs::read_string`], but a missing node (`ENOENT`) is `Ok(None)`.
    pub fn try_read_string(&self, path: &str) -> Result<Option<String>> {
        self.ops().try_read_string(path)
    }

    /// Write a node's value (creating missing parents).
    pub fn write(&self, path: &str, value: &[u8]) -> Result<()> {
        self.ops().write(path, value)
    }

    /// Create a node (and missing parents) with an empty value, if it does not exist.
    pub fn mkdir(&self, path: &str) -> Result<()> {
        self.ops().mkdir(path)
    }

    /// Remove a node and all its children.
    pub fn rm(&self, path: &str) -> Result<()> {
        self.ops().rm(path)
    }

    /// Names of a node's children (leaf names, not full paths).
    pub fn directory(&self, path: &str) -> Result<Vec<String>> {
        self.ops().directory(path)
    }

    /// A node's permissions; the first entry is the owner and the default for others.
    pub fn get_perms(&self, path: &str) -> Result<Vec<Perm>> {
        self.ops().get_perms(path)
    }

    /// Set a node's permissions (at least one entry: owner and default access).
    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<()> {
        self.ops().set_perms(path, perms)
    }

    /// The home path of a domain, `/local/domain/<domid>`.
    pub fn get_domain_path(&self, domid: u32) -> Result<String> {
        let arg = domid.to_string();
        let reply =
            self.inner
                .request(MsgType::GetDomainPath, 0, &wire::nul_joined([&arg]), &arg)?;
        Ok(text(&reply))
    }

    /// Whether xenstored is connected to a domain.
    pub fn is_domain_introduced(&self, domid: u32) -> Result<bool> {
        let arg = domid.to_string();
        let reply = self.inner.request(
            MsgType::IsDomainIntroduced,
            0,
            &wire::nul_joined([&arg]),
            &arg,
        )?;
        match text(&reply).as_str() {
            "T" => Ok(true),
            "F" => Ok(false),
            other => Err(Error::Protocol(format!(
                "IS_DOMAIN_INTRODUCED {arg:?}: unexpected reply {other:?}"
            ))),
        }
    }

    /// Tell xenstored to talk to a domain over the ring in frame `mfn` and event channel `port`
    /// (dom0 / toolstack only).
    pub fn introduce(&self, domid: u32, mfn: u64, port: u32) -> Result<()> {
        let arg = domid.to_string();
        let payload = wire::nul_joined([arg.clone(), mfn.to_string(), port.to_string()]);
        self.inner
            .request(MsgType::Introduce, 0, &payload, &arg)
            .map(drop)
    }

    /// Tell xenstored to disconnect from a domain (dom0 / toolstack only).
    pub fn release(&self, domid: u32) -> Result<()> {
        let arg = domid.to_string();
        self.inner
            .request(MsgType::Release, 0, &wire::nul_joined([&arg]), &arg)
            .map(drop)
    }

    /// Watch `path` and its descendants; events carry `token`. xenstored fires once right away.
    pub fn watch(&self, path: &str, token: &str) -> Result<()> {
        self.watch_request(MsgType::Watch, path, token)
    }

    /// Remove a watch registered with the same `path` and `token`.
    pub fn unwatch(&self, path: &str, token: &str) -> Result<()> {
        self.watch_request(MsgType::Unwatch, path, token)
    }

    fn watch_request(&self, ty: MsgType, path: &str, token: &str) -> Result<()> {
        check_no_nul(ty.name(), path, path, "path contains a NUL byte")?;
        check_no_nul(ty.name(), path, token, "token contains a NUL byte")?;
        self.inner
            .request(ty, 0, &wire::nul_joined([path, token]), path)
            .map(drop)
    }

    /// Start a transaction. Dropping it without [`Transaction::commit`] aborts it (without
    /// waiting for the reply).
    pub fn begin(&self) -> Result<Transaction<'_>> {
        let reply = self
            .inner
            .request(MsgType::TransactionStart, 0, b"\0", "")?;
        let s = text(&reply);
        let id = s
            .parse::<u32>()
            .map_err(|_| Error::Protocol(format!("TRANSACTION_START: bad transaction id {s:?}")))?;
        Ok(Transaction {
            xs: self,
            id,
            finished: false,
        })
    }

    /// Run `f` in a transaction and commit it; on `EAGAIN` (from the commit or from `f`) start
    /// over, at most [`TRANSACTION_ATTEMPTS`] times, then fail with
    /// [`Error::TransactionConflict`]. Any other error of `f` aborts and is returned.
    pub fn transaction<T>(&self, mut f: impl FnMut(&Transaction<'_>) -> Result<T>) -> Result<T> {
        for attempt in 0..TRANSACTION_ATTEMPTS {
            if attempt > 0 {
                conflict_backoff(attempt);
            }
            let t = self.begin()?;
            match f(&t) {
                Ok(value) => match t.commit() {
                    Ok(()) => return Ok(value),
                    Err(e) if e.is_eagain() => continue,
                    Err(e) => return Err(e),
                },
                Err(e) if e.is_eagain() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::TransactionConflict {
            attempts: TRANSACTION_ATTEMPTS,
        })
    }
}

/// Waits a little before retrying a conflicting transaction, so that writers that keep colliding
/// drift apart: a random delay below `2^attempt` × 100 µs, capped at about 25 ms.
fn conflict_backoff(attempt: u32) {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u32(attempt);
    let ceiling_us = 100u64 << attempt.min(8);
    std::thread::sleep(Duration::from_micros(h.finish() % ceiling_us));
}

impl Drop for Xs {
    fn drop(&mut self) {
        self.inner.shutdown("client dropped".to_owned());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A xenstore transaction: reads and writes see a private snapshot until [`Transaction::commit`].
/// Dropping it aborts it.
pub struct Transaction<'a> {
    xs: &'a Xs,
    id: u32,
    finished: bool,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.id)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Transaction<'_> {
    fn ops(&self) -> Ops<'_> {
        Ops {
            inner: &self.xs.inner,
            tx_id: self.id,
        }
    }

    /// The transaction id xenstored allocated.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Read a node's value.
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.ops().read(path)
    }

    /// Read a node's value as text (invalid UTF-8 replaced, trailing NULs removed).
    pub fn read_string(&self, path: &str) -> Result<String> {
        self.ops().read_string(path)
    }

    /// Like [`Transaction::read_string`], but a missing node is `Ok(None)`.
    pub fn try_read_string(&self, path: &str) -> Result<Option<String>> {
        self.ops().try_read_string(path)
    }

    /// Write a node's value.
    pub fn write(&self, path: &str, value: &[u8]) -> Result<()> {
        self.ops().write(path, value)
    }

    /// Create a node if it does not exist.
    pub fn mkdir(&self, path: &str) -> Result<()> {
        self.ops().mkdir(path)
    }

    /// Remove a node and its children.
    pub fn rm(&self, path: &str) -> Result<()> {
        self.ops().rm(path)
    }

    /// Names of a node's children.
    pub fn directory(&self, path: &str) -> Result<Vec<String>> {
        self.ops().directory(path)
    }

    /// A node's permissions.
    pub fn get_perms(&self, path: &str) -> Result<Vec<Perm>> {
        self.ops().get_perms(path)
    }

    /// Set a node's permissions.
    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<()> {
        self.ops().set_perms(path, perms)
    }

    fn end(&mut self, commit: bool) -> Result<()> {
        let payload: &[u8] = if commit { b"T\0" } else { b"F\0" };
        let label = format!("transaction {}", self.id);
        let res = self
            .xs
            .inner
            .request(MsgType::TransactionEnd, self.id, payload, &label);
        // Any xenstored reply (OK, EAGAIN, …) ends the transaction on the server. After a
        // timeout or I/O error we don't know: `drop` then sends an abort (harmless if unknown).
        if res.is_ok() || matches!(res, Err(Error::Xenstore { .. })) {
            self.finished = true;
        }
        res.map(drop)
    }

    /// Commit. `Err` with [`Error::is_eagain`] means another writer interfered: start over.
    pub fn commit(mut self) -> Result<()> {
        self.end(true)
    }

    /// Abort and wait for xenstored's acknowledgement.
    pub fn abort(mut self) -> Result<()> {
        self.end(false)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ =
                self.xs
                    .inner
                    .send_oneway(MsgType::TransactionEnd, self.id, b"F\0", "transaction");
        }
    }
}

/// The node operations, shared by [`Xs`] (tx 0) and [`Transaction`].
struct Ops<'a> {
    inner: &'a Inner,
    tx_id: u32,
}

impl Ops<'_> {
    fn path_request(&self, ty: MsgType, path: &str) -> Result<Vec<u8>> {
        check_no_nul(ty.name(), path, path, "path contains a NUL byte")?;
        self.inner
            .request(ty, self.tx_id, &wire::nul_joined([path]), path)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.path_request(MsgType::Read, path)
    }

    fn read_string(&self, path: &str) -> Result<String> {
        self.read(path).map(|v| text(&v))
    }

    fn try_read_string(&self, path: &str) -> Result<Option<String>> {
        match self.read_string(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_enoent() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&self, path: &str, value: &[u8]) -> Result<()> {
        let op = MsgType::Write.name();
        check_no_nul(op, path, path, "path contains a NUL byte")?;
        let mut payload = Vec::with_capacity(path.len() + 1 + value.len());
        payload.extend_from_slice(path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(value);
        self.inner
            .request(MsgType::Write, self.tx_id, &payload, path)
            .map(drop)
    }

    fn mkdir(&self, path: &str) -> Result<()> {
        self.path_request(MsgType::Mkdir, path).map(drop)
    }

    fn rm(&self, path: &str) -> Result<()> {
        self.path_request(MsgType::Rm, path).map(drop)
    }

    fn directory(&self, path: &str) -> Result<Vec<String>> {
        match self.path_request(MsgType::Directory, path) {
            Ok(reply) => Ok(strings(&reply)),
            Err(e) if e.xs_errno() == Some(&XsErrno::E2BIG) => match self.directory_part(path) {
                // A daemon without DIRECTORY_PART: report the original E2BIG.
                Err(part) if part.xs_errno() == Some(&XsErrno::ENOSYS) => Err(e),
                other => other,
            },
            Err(e) => Err(e),
        }
    }

    /// A listing too big for one reply, fetched in chunks with `XS_DIRECTORY_PART`. Each reply is
    /// `<generation>\0<child>\0…`, the last one ends with an extra `\0`; a changed generation
    /// means the node changed and the listing restarts.
    fn directory_part(&self, path: &str) -> Result<Vec<String>> {
        let op = MsgType::DirectoryPart.name();
        let protocol = |what: &str| Error::Protocol(format!("{op} {path:?}: {what}"));
        'restart: for _ in 0..DIRECTORY_PART_RESTARTS {
            let mut generation: Option<Vec<u8>> = None;
            let mut children = Vec::new();
            let mut offset = 0usize;
            for _ in 0..DIRECTORY_PART_MAX_CHUNKS {
                let payload = wire::nul_joined([path, &offset.to_string()]);
                let reply =
                    self.inner
                        .request(MsgType::DirectoryPart, self.tx_id, &payload, path)?;
                let nul = reply
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| protocol("reply without generation"))?;
                let (gen, rest) = (
                    reply.get(..nul).unwrap_or(&[]),
                    reply.get(nul + 1..).unwrap_or(&[]),
                );
                match &generation {
                    None => generation = Some(gen.to_vec()),
                    Some(g) if g.as_slice() != gen => continue 'restart,
                    Some(_) => {}
                }
                if rest.is_empty() {
                    return Err(protocol("empty chunk"));
                }
                let last = rest == b"\0" || rest.ends_with(b"\0\0");
                let data = if last {
                    rest.get(..rest.len() - 1).unwrap_or(&[])
                } else {
                    rest
                };
                children.extend(strings(data));
                offset += data.len();
                if last {
                    return Ok(children);
                }
            }
            return Err(protocol("too many chunks"));
        }
        Err(protocol("node kept changing while listed"))
    }

    fn get_perms(&self, path: &str) -> Result<Vec<Perm>> {
        let reply = self.path_request(MsgType::GetPerms, path)?;
        wire::split_nul(&reply)
            .into_iter()
            .map(|p| {
                String::from_utf8_lossy(p)
                    .parse::<Perm>()
                    .map_err(|e| Error::Protocol(format!("GET_PERMS {path:?}: {e}")))
            })
            .collect()
    }

    fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<()> {
        let op = MsgType::SetPerms.name();
        check_no_nul(op, path, path, "path contains a NUL byte")?;
        if perms.is_empty() {
            return Err(Error::InvalidArgument {
                op,
                path: path.to_owned(),
                reason: "at least one permission (the owner) is required",
            });
        }
        let mut payload = wire::nul_joined([path]);
        payload.extend(wire::nul_joined(perms.iter().map(|p| p.to_string())));
        self.inner
            .request(MsgType::SetPerms, self.tx_id, &payload, path)
            .map(drop)
    }
}

fn check_no_nul(op: &'static str, path: &str, value: &str, reason: &'static str) -> Result<()> {
    if value.as_bytes().contains(&0) {
        return Err(Error::InvalidArgument {
            op,
            path: path.to_owned(),
            reason,
        });
    }
    Ok(())
}

/// Bytes as text: lossy UTF-8, trailing NULs removed.
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(bytes.get(..end).unwrap_or(&[])).into_owned()
}

/// A list of NUL-terminated strings as text.
fn strings(bytes: &[u8]) -> Vec<String> {
    wire::split_nul(bytes)
        .into_iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
