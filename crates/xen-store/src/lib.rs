//! A small, pure-Rust xenstore client for guest userspace and test harnesses.
//!
//! It speaks the `xs_wire.h` protocol over any byte stream: the guest kernel's
//! `/dev/xen/xenbus`, or xenstored's unix socket named by `XENSTORED_PATH` (as libxenstore
//! does). No C libraries, no async runtime.
//!
//! - [`Xs`] is one connection, `Send + Sync`, usable from several threads at once: a reader
//!   thread matches replies to requests by `req_id` and queues watch events.
//! - Every request waits at most [`Xs::timeout`] (default 10 s) and fails with
//!   [`Error::Closed`] as soon as the connection breaks.
//! - [`WatchEvents`] has a file descriptor that polls readable while events are queued (and once
//!   the connection is closed), for an event loop such as PipeWire's.
//! - Transactions: [`Xs::transaction`] retries on `EAGAIN`; [`Xs::begin`] for manual control.
//!
//! Relative paths are sent as they are; xenstored resolves them against the connection's domain
//! home (`/local/domain/<domid>`).
//!
//! ```no_run
//! use xen_store::{Access, Perm, Xs};
//! # fn main() -> Result<(), xen_store::Error> {
//! let xs = Xs::open()?;
//! let home = xs.get_domain_path(0)?;
//! xs.write(&format!("{home}/data/x"), b"1")?;
//! xs.set_perms(&format!("{home}/data/x"), &[Perm::new(0, Access::None), Perm::new(5, Access::Read)])?;
//! xs.watch("device/vsnd", "vsnd")?;
//! if let Some(ev) = xs.watch_events().recv_timeout(std::time::Duration::from_secs(1)) {
//!     println!("{} changed ({})", ev.path, ev.token);
//! }
//! let n = xs.transaction(|t| {
//!     let n: u32 = t.try_read_string("data/counter")?.and_then(|s| s.parse().ok()).unwrap_or(0);
//!     t.write("data/counter", (n + 1).to_string().as_bytes())?;
//!     Ok(n + 1)
//! })?;
//! # let _ = n; Ok(()) }
//! ```

mod client;
mod error;
mod perm;
mod sys;
mod watch;
pub mod wire;

pub use client::{
    Transaction, Xs, DEFAULT_TIMEOUT, TRANSACTION_ATTEMPTS, XENBUS_DEVICE, XENSTORED_PATH_ENV,
};
pub use error::{Error, Result, XsErrno};
pub use perm::{Access, ParsePermError, Perm};
pub use watch::{WatchEvent, WatchEvents};

/// `Xs` must stay shareable between threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Xs>();
    assert_send_sync::<WatchEvents>();
    assert_send_sync::<Error>();
};
