//! Xen access: the three services a sndif peer needs from Xen, behind small traits.
//!
//! * [`XenStore`] — the xenstore operations (read, write, directory, permissions, watches delivered
//!   through a pollable fd, transactions).
//! * [`GrantShare`] (frontend: share our pages with a domain) and [`GrantMap`] (backend: map a
//!   domain's grant references).
//! * [`EventChannels`] / [`EvtchnHandle`] — event channels with `/dev/xen/evtchn` semantics: one
//!   pollable fd per handle, `pending` yields the port that fired, which stays masked until
//!   `unmask`.
//!
//! [`real`] implements them over the kernel devices (crates `xen-store`, `xen-gnttab`,
//! `xen-evtchn`); [`fake`] implements them in memory for unit tests of both sides in one process.

use std::fmt;
use std::os::fd::RawFd;

pub use sndif::shm::SharedMem;

pub mod fake;
pub mod real;

/// A Xen domain id.
pub type DomId = u16;

/// A grant reference.
pub type GrantRef = u32;

/// An event-channel port (local to the handle's domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port(pub u32);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What xenstore said went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreErrno {
    NoEnt,
    Access,
    Again,
    Exist,
    Invalid,
    Other(String),
}

impl fmt::Display for StoreErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreErrno::NoEnt => f.write_str("ENOENT"),
            StoreErrno::Access => f.write_str("EACCES"),
            StoreErrno::Again => f.write_str("EAGAIN"),
            StoreErrno::Exist => f.write_str("EEXIST"),
            StoreErrno::Invalid => f.write_str("EINVAL"),
            StoreErrno::Other(s) => f.write_str(s),
        }
    }
}

/// A failed xenstore operation, naming the operation and the path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("xenstore {op} {path}: {errno}")]
    Xs {
        op: &'static str,
        path: String,
        errno: StoreErrno,
    },
    #[error("xenstore {op} {path}: connection failed: {reason}")]
    Connection {
        op: &'static str,
        path: String,
        reason: String,
    },
}

impl StoreError {
    pub fn errno(&self) -> Option<&StoreErrno> {
        match self {
            StoreError::Xs { errno, .. } => Some(errno),
            StoreError::Connection { .. } => None,
        }
    }
    pub fn is_again(&self) -> bool {
        self.errno() == Some(&StoreErrno::Again)
    }
    pub fn is_noent(&self) -> bool {
        self.errno() == Some(&StoreErrno::NoEnt)
    }
    pub fn is_access(&self) -> bool {
        self.errno() == Some(&StoreErrno::Access)
    }
}

/// Access a domain has to a xenstore node (`n`, `r`, `w`, `b` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Write,
    Both,
}

/// One entry of a node's permission list. The first entry names the owner and the access of every
/// domain not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub domid: DomId,
    pub access: Access,
}

/// A fired watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

/// Operations available both on a connection and inside a transaction.
pub trait StoreOps {
    /// The node's value, `None` when it does not exist.
    fn read(&self, path: &str) -> Result<Option<String>, StoreError>;
    fn write(&self, path: &str, value: &str) -> Result<(), StoreError>;
    fn mkdir(&self, path: &str) -> Result<(), StoreError>;
    /// Removes the node and its children; removing a missing node is not an error.
    fn rm(&self, path: &str) -> Result<(), StoreError>;
    /// Child names, empty when the node does not exist.
    fn directory(&self, path: &str) -> Result<Vec<String>, StoreError>;
    fn get_perms(&self, path: &str) -> Result<Vec<Perm>, StoreError>;
    fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), StoreError>;
}

/// A xenstore connection, as one domain.
pub trait XenStore: StoreOps + Send + Sync {
    /// This connection's domain id (the relative node `domid`, or the fake's identity).
    fn own_domid(&self) -> Result<DomId, StoreError>;
    /// Registers a watch; it fires once on registration and on every change of the path or a
    /// descendant.
    fn watch(&self, path: &str, token: &str) -> Result<(), StoreError>;
    fn unwatch(&self, path: &str, token: &str) -> Result<(), StoreError>;
    /// Becomes readable while watch events are queued (or the connection broke).
    fn watch_fd(&self) -> RawFd;
    /// Next queued watch event, without blocking.
    fn take_watch_event(&self) -> Option<WatchEvent>;
    /// Runs `f` in a transaction and commits; retries the whole closure when the commit reports
    /// EAGAIN (bounded).
    fn transaction(
        &self,
        f: &mut dyn FnMut(&dyn StoreOps) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

/// Errors from grant sharing or mapping.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("grant {op} of {count} page(s) with domain {domid} failed: {reason}")]
    Failed {
        op: &'static str,
        domid: DomId,
        count: usize,
        reason: String,
    },
}

/// Pages of ours shared with another domain. Dropping the last clone of `mem` ends the sharing.
#[derive(Debug, Clone)]
pub struct GrantedPages {
    /// One grant reference per page, in page order.
    pub grefs: Vec<GrantRef>,
    /// The pages, contiguous, `grefs.len() * 4096` bytes.
    pub mem: SharedMem,
}

/// Frontend side: share freshly allocated, zeroed pages read-write with a domain.
pub trait GrantShare: Send + Sync {
    fn share(&self, domid: DomId, pages: usize) -> Result<GrantedPages, GrantError>;
}

/// Backend side: map a domain's grant references read-write, contiguously in the given order.
pub trait GrantMap: Send + Sync {
    fn map(&self, domid: DomId, refs: &[GrantRef]) -> Result<SharedMem, GrantError>;
}

/// Errors from event channels.
#[derive(Debug, thiserror::Error)]
pub enum EvtchnError {
    #[error("event channel {op} (port {port:?}, domain {domid:?}) failed: {reason}")]
    Failed {
        op: &'static str,
        port: Option<Port>,
        domid: Option<DomId>,
        reason: String,
    },
}

/// Opens event-channel handles (one per stream or thread; a handle is not shared between
/// threads).
pub trait EventChannels: Send + Sync {
    fn open(&self) -> Result<Box<dyn EvtchnHandle>, EvtchnError>;
}

/// One event-channel handle with `/dev/xen/evtchn` semantics. Closing it unbinds its ports.
pub trait EvtchnHandle: Send {
    /// A new port that `remote` may bind to.
    fn bind_unbound(&self, remote: DomId) -> Result<Port, EvtchnError>;
    /// Connects to `remote`'s unbound port; returns our local port.
    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, EvtchnError>;
    fn unbind(&self, port: Port) -> Result<(), EvtchnError>;
    /// Signals the peer. Never blocks, takes no lock and allocates nothing in the real
    /// implementation (the realtime thread calls it).
    fn notify(&self, port: Port) -> Result<(), EvtchnError>;
    /// Readable while a port has fired.
    fn fd(&self) -> RawFd;
    /// A port that fired, without blocking; it stays masked until [`EvtchnHandle::unmask`].
    fn pending(&self) -> Result<Option<Port>, EvtchnError>;
    fn unmask(&self, port: Port) -> Result<(), EvtchnError>;
}

/// A vsnd device directory in xenstore, read as a [`sndif::ConfigSource`]: paths given to it are
/// relative to `dir`. Both the frontend and the backend parse the card configuration through it.
#[derive(Clone, Copy)]
pub struct StoreConfigSource<'a> {
    store: &'a dyn XenStore,
    dir: &'a str,
}

impl<'a> StoreConfigSource<'a> {
    /// Reads the configuration below `dir` (e.g. `/local/domain/1/device/vsnd/0`).
    pub fn new(store: &'a dyn XenStore, dir: &'a str) -> Self {
        StoreConfigSource { store, dir }
    }

    fn path(&self, rel: &str) -> String {
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            self.dir.to_owned()
        } else {
            format!("{}/{rel}", self.dir)
        }
    }
}

impl fmt::Debug for StoreConfigSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfigSource")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl sndif::ConfigSource for StoreConfigSource<'_> {
    type Error = StoreError;

    fn read(&self, path: &str) -> Result<Option<String>, StoreError> {
        self.store.read(&self.path(path))
    }

    fn list(&self, path: &str) -> Result<Vec<String>, StoreError> {
        self.store.directory(&self.path(path))
    }
}
