//! The services over the real kernel devices: `/dev/xen/xenbus` (or xenstored's socket),
//! `/dev/xen/gntalloc`, `/dev/xen/gntdev` and `/dev/xen/evtchn`.
//!
//! Thin adapters over the workspace crates `xen-store`, `xen-gnttab` and `xen-evtchn`; see
//! those for the kernel interfaces. [`frontend_services_from_env`] and
//! [`backend_services_from_env`] open everything one side needs, with errors that say what is
//! missing.

use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sndif::shm::MappedRegion;
use xen_evtchn::EventChannel;
use xen_gnttab::{Gntalloc, Gntdev, MappedGrants, SharedPages};
use xen_store::{Xs, XsErrno};

use crate::{
    Access, DomId, EventChannels, EvtchnError, EvtchnHandle, GrantError, GrantMap, GrantRef,
    GrantShare, GrantedPages, Perm, Port, SharedMem, StoreErrno, StoreError, StoreOps, WatchEvent,
    XenStore,
};

/// What could not be opened, with a hint at the usual cause.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No xenstore connection.
    #[error("cannot connect to xenstore: {source}{hint}")]
    Store {
        /// The client's error (names the device or socket path).
        #[source]
        source: xen_store::Error,
        /// What usually causes it (empty if nothing useful is known).
        hint: &'static str,
    },
    /// No grant-sharing device (frontend side).
    #[error("cannot open the grant-sharing device: {source}")]
    GrantShare {
        /// The device error (names the path and the usual cause).
        #[source]
        source: xen_gnttab::Error,
    },
    /// No grant-mapping device (backend side).
    #[error("cannot open the grant-mapping device: {source}")]
    GrantMap {
        /// The device error (names the path and the usual cause).
        #[source]
        source: xen_gnttab::Error,
    },
    /// No event-channel device.
    #[error("cannot open the event-channel device: {source}")]
    EventChannels {
        /// The device error (names the path and the usual cause).
        #[source]
        source: xen_evtchn::Error,
    },
}

fn store_open_hint(e: &xen_store::Error, via_socket: bool) -> &'static str {
    let xen_store::Error::Io { source, .. } = e else {
        return "";
    };
    match (source.raw_os_error(), via_socket) {
        (Some(libc::ENOENT | libc::ENODEV | libc::ENXIO), false) => {
            " (no /dev/xen/xenbus: not running in a Xen guest, or xenfs is not mounted on \
             /proc/xen and the xenbus device is missing)"
        }
        (Some(libc::ENOENT | libc::ECONNREFUSED), true) => {
            " (XENSTORED_PATH names a socket nobody listens on)"
        }
        (Some(libc::EACCES | libc::EPERM), _) => {
            " (permission denied: the xenstore device is normally root-only, mode 0600)"
        }
        _ => "",
    }
}

// ---------------------------------------------------------------------------------------------
// xenstore

fn map_errno(e: &XsErrno) -> StoreErrno {
    match e {
        XsErrno::ENOENT => StoreErrno::NoEnt,
        XsErrno::EACCES => StoreErrno::Access,
        XsErrno::EAGAIN => StoreErrno::Again,
        XsErrno::EEXIST => StoreErrno::Exist,
        XsErrno::EINVAL => StoreErrno::Invalid,
        other => StoreErrno::Other(other.as_str().to_owned()),
    }
}

/// Converts a client error, naming our operation and path.
fn store_err(op: &'static str, path: &str, e: xen_store::Error) -> StoreError {
    let xs = |errno| StoreError::Xs {
        op,
        path: path.to_owned(),
        errno,
    };
    let conn = |reason: String| StoreError::Connection {
        op,
        path: path.to_owned(),
        reason,
    };
    match e {
        xen_store::Error::Xenstore { errno, .. } => xs(map_errno(&errno)),
        xen_store::Error::TransactionConflict { .. } => xs(StoreErrno::Again),
        xen_store::Error::InvalidArgument { .. } | xen_store::Error::PayloadTooLarge { .. } => {
            xs(StoreErrno::Invalid)
        }
        other => conn(other.to_string()),
    }
}

fn perm_to_wire(p: &Perm) -> xen_store::Perm {
    let access = match p.access {
        Access::None => xen_store::Access::None,
        Access::Read => xen_store::Access::Read,
        Access::Write => xen_store::Access::Write,
        Access::Both => xen_store::Access::Both,
    };
    xen_store::Perm::new(u32::from(p.domid), access)
}

fn perm_from_wire(op: &'static str, path: &str, p: &xen_store::Perm) -> Result<Perm, StoreError> {
    let domid = DomId::try_from(p.domid).map_err(|_| StoreError::Xs {
        op,
        path: path.to_owned(),
        errno: StoreErrno::Other(format!(
            "permission entry for out-of-range domain {}",
            p.domid
        )),
    })?;
    let access = match p.access {
        xen_store::Access::None => Access::None,
        xen_store::Access::Read => Access::Read,
        xen_store::Access::Write => Access::Write,
        xen_store::Access::Both => Access::Both,
    };
    Ok(Perm { domid, access })
}

/// The node operations over a connection (`tx == None`) or a transaction.
fn ops_read(
    r: xen_store::Result<Option<String>>,
    path: &str,
) -> Result<Option<String>, StoreError> {
    r.map_err(|e| store_err("read", path, e))
}

fn ops_directory(r: xen_store::Result<Vec<String>>, path: &str) -> Result<Vec<String>, StoreError> {
    match r {
        Err(e) if e.is_enoent() => Ok(Vec::new()),
        r => r.map_err(|e| store_err("directory", path, e)),
    }
}

fn ops_rm(r: xen_store::Result<()>, path: &str) -> Result<(), StoreError> {
    match r {
        Err(e) if e.is_enoent() => Ok(()),
        r => r.map_err(|e| store_err("rm", path, e)),
    }
}

fn ops_get_perms(
    r: xen_store::Result<Vec<xen_store::Perm>>,
    path: &str,
) -> Result<Vec<Perm>, StoreError> {
    r.map_err(|e| store_err("get_perms", path, e))?
        .iter()
        .map(|p| perm_from_wire("get_perms", path, p))
        .collect()
}

fn wire_perms(perms: &[Perm]) -> Vec<xen_store::Perm> {
    perms.iter().map(perm_to_wire).collect()
}

/// [`XenStore`] over a [`xen_store::Xs`] connection.
pub struct RealStore {
    xs: Xs,
    domid: OnceLock<DomId>,
}

impl fmt::Debug for RealStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealStore")
            .field("xs", &self.xs)
            .field("domid", &self.domid.get())
            .finish()
    }
}

impl RealStore {
    /// Connects like libxenstore: to the socket named by `XENSTORED_PATH` if set, else to
    /// `/dev/xen/xenbus`.
    pub fn open() -> Result<RealStore, OpenError> {
        let via_socket =
            std::env::var_os(xen_store::XENSTORED_PATH_ENV).is_some_and(|p| !p.is_empty());
        Xs::open()
            .map(RealStore::from_xs)
            .map_err(|source| OpenError::Store {
                hint: store_open_hint(&source, via_socket),
                source,
            })
    }

    /// Opens a xenstore character device such as `/dev/xen/xenbus`.
    pub fn open_device(path: &Path) -> Result<RealStore, OpenError> {
        Xs::open_device(path)
            .map(RealStore::from_xs)
            .map_err(|source| OpenError::Store {
                hint: store_open_hint(&source, false),
                source,
            })
    }

    /// Wraps an existing connection.
    pub fn from_xs(xs: Xs) -> RealStore {
        RealStore {
            xs,
            domid: OnceLock::new(),
        }
    }

    /// The underlying connection.
    pub fn xs(&self) -> &Xs {
        &self.xs
    }
}

impl StoreOps for RealStore {
    fn read(&self, path: &str) -> Result<Option<String>, StoreError> {
        ops_read(self.xs.try_read_string(path), path)
    }

    fn write(&self, path: &str, value: &str) -> Result<(), StoreError> {
        self.xs
            .write(path, value.as_bytes())
            .map_err(|e| store_err("write", path, e))
    }

    fn mkdir(&self, path: &str) -> Result<(), StoreError> {
        self.xs.mkdir(path).map_err(|e| store_err("mkdir", path, e))
    }

    fn rm(&self, path: &str) -> Result<(), StoreError> {
        ops_rm(self.xs.rm(path), path)
    }

    fn directory(&self, path: &str) -> Result<Vec<String>, StoreError> {
        ops_directory(self.xs.directory(path), path)
    }

    fn get_perms(&self, path: &str) -> Result<Vec<Perm>, StoreError> {
        ops_get_perms(self.xs.get_perms(path), path)
    }

    fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), StoreError> {
        self.xs
            .set_perms(path, &wire_perms(perms))
            .map_err(|e| store_err("set_perms", path, e))
    }
}

impl XenStore for RealStore {
    /// Reads the relative node `domid` (written by the toolstack) once and caches it.
    fn own_domid(&self) -> Result<DomId, StoreError> {
        if let Some(d) = self.domid.get() {
            return Ok(*d);
        }
        let value = self.read("domid")?.ok_or_else(|| StoreError::Xs {
            op: "read",
            path: "domid".to_owned(),
            errno: StoreErrno::NoEnt,
        })?;
        let domid = value.trim().parse::<DomId>().map_err(|_| StoreError::Xs {
            op: "read",
            path: "domid".to_owned(),
            errno: StoreErrno::Other(format!("not a domain id: {value:?}")),
        })?;
        Ok(*self.domid.get_or_init(|| domid))
    }

    fn watch(&self, path: &str, token: &str) -> Result<(), StoreError> {
        self.xs
            .watch(path, token)
            .map_err(|e| store_err("watch", path, e))
    }

    fn unwatch(&self, path: &str, token: &str) -> Result<(), StoreError> {
        self.xs
            .unwatch(path, token)
            .map_err(|e| store_err("unwatch", path, e))
    }

    fn watch_fd(&self) -> RawFd {
        self.xs.watch_events().fd()
    }

    fn take_watch_event(&self) -> Option<WatchEvent> {
        self.xs.watch_events().try_recv().map(|e| WatchEvent {
            path: e.path,
            token: e.token,
        })
    }

    fn transaction(
        &self,
        f: &mut dyn FnMut(&dyn StoreOps) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut last = None;
        for _ in 0..xen_store::TRANSACTION_ATTEMPTS {
            let t = self
                .xs
                .begin()
                .map_err(|e| store_err("transaction_start", "", e))?;
            let tx = RealTx { t: &t };
            match f(&tx) {
                Ok(()) => {}
                Err(e) if e.is_again() => {
                    last = Some(e);
                    continue; // dropping `t` aborts it
                }
                Err(e) => return Err(e),
            }
            match t.commit() {
                Ok(()) => return Ok(()),
                Err(e) if e.is_eagain() => last = Some(store_err("transaction_end", "", e)),
                Err(e) => return Err(store_err("transaction_end", "", e)),
            }
        }
        Err(last.unwrap_or(StoreError::Xs {
            op: "transaction_end",
            path: String::new(),
            errno: StoreErrno::Again,
        }))
    }
}

/// [`StoreOps`] inside a real transaction.
struct RealTx<'a, 'x> {
    t: &'a xen_store::Transaction<'x>,
}

impl StoreOps for RealTx<'_, '_> {
    fn read(&self, path: &str) -> Result<Option<String>, StoreError> {
        ops_read(self.t.try_read_string(path), path)
    }

    fn write(&self, path: &str, value: &str) -> Result<(), StoreError> {
        self.t
            .write(path, value.as_bytes())
            .map_err(|e| store_err("write", path, e))
    }

    fn mkdir(&self, path: &str) -> Result<(), StoreError> {
        self.t.mkdir(path).map_err(|e| store_err("mkdir", path, e))
    }

    fn rm(&self, path: &str) -> Result<(), StoreError> {
        ops_rm(self.t.rm(path), path)
    }

    fn directory(&self, path: &str) -> Result<Vec<String>, StoreError> {
        ops_directory(self.t.directory(path), path)
    }

    fn get_perms(&self, path: &str) -> Result<Vec<Perm>, StoreError> {
        ops_get_perms(self.t.get_perms(path), path)
    }

    fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), StoreError> {
        self.t
            .set_perms(path, &wire_perms(perms))
            .map_err(|e| store_err("set_perms", path, e))
    }
}

// ---------------------------------------------------------------------------------------------
// grants

/// gntalloc pages as a [`MappedRegion`]; dropping it unmaps and releases the grants.
#[derive(Debug)]
struct GntallocRegion(SharedPages);

// SAFETY: `SharedPages` keeps its page-aligned mapping of `len()` bytes valid for reads and
// writes until it is dropped, and neither `as_ptr()` nor `len()` ever changes.
unsafe impl MappedRegion for GntallocRegion {
    fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A gntdev mapping as a [`MappedRegion`]; dropping it unmaps.
#[derive(Debug)]
struct GntdevRegion(MappedGrants);

// SAFETY: `MappedGrants` keeps its page-aligned mapping of `len()` bytes valid until it is
// dropped (we always map writable), and neither `as_ptr()` nor `len()` ever changes.
unsafe impl MappedRegion for GntdevRegion {
    fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// [`GrantShare`] over `/dev/xen/gntalloc`: every page is granted writable (backends map
/// everything read-write).
#[derive(Debug)]
pub struct RealGrantShare {
    dev: Gntalloc,
}

impl RealGrantShare {
    /// Opens `/dev/xen/gntalloc`.
    pub fn open() -> Result<RealGrantShare, OpenError> {
        Self::open_path(xen_gnttab::GNTALLOC_PATH)
    }

    /// Opens a gntalloc device at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<RealGrantShare, OpenError> {
        Gntalloc::open_path(path)
            .map(|dev| RealGrantShare { dev })
            .map_err(|source| OpenError::GrantShare { source })
    }
}

impl GrantShare for RealGrantShare {
    fn share(&self, domid: DomId, pages: usize) -> Result<GrantedPages, GrantError> {
        let shared = self
            .dev
            .share(domid, pages, true)
            .map_err(|e| GrantError::Failed {
                op: "share",
                domid,
                count: pages,
                reason: e.to_string(),
            })?;
        let grefs = shared.grefs().to_vec();
        Ok(GrantedPages {
            grefs,
            mem: SharedMem::new(Arc::new(GntallocRegion(shared))),
        })
    }
}

/// [`GrantMap`] over `/dev/xen/gntdev`: maps read-write.
#[derive(Debug)]
pub struct RealGrantMap {
    dev: Gntdev,
}

impl RealGrantMap {
    /// Opens `/dev/xen/gntdev`.
    pub fn open() -> Result<RealGrantMap, OpenError> {
        Self::open_path(xen_gnttab::GNTDEV_PATH)
    }

    /// Opens a gntdev device at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<RealGrantMap, OpenError> {
        Gntdev::open_path(path)
            .map(|dev| RealGrantMap { dev })
            .map_err(|source| OpenError::GrantMap { source })
    }
}

impl GrantMap for RealGrantMap {
    fn map(&self, domid: DomId, refs: &[GrantRef]) -> Result<SharedMem, GrantError> {
        let mapped = self
            .dev
            .map(domid, refs, true)
            .map_err(|e| GrantError::Failed {
                op: "map",
                domid,
                count: refs.len(),
                reason: e.to_string(),
            })?;
        Ok(SharedMem::new(Arc::new(GntdevRegion(mapped))))
    }
}

// ---------------------------------------------------------------------------------------------
// event channels

/// [`EventChannels`] over `/dev/xen/evtchn`: each `open` is a new non-blocking handle.
#[derive(Debug, Clone)]
pub struct RealEventChannels {
    path: PathBuf,
}

impl RealEventChannels {
    /// Opens one handle on `/dev/xen/evtchn` now, to report a missing device early, and
    /// returns the opener.
    pub fn open() -> Result<RealEventChannels, OpenError> {
        Self::open_path(xen_evtchn::EVTCHN_PATH)
    }

    /// Like [`RealEventChannels::open`] for a device at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<RealEventChannels, OpenError> {
        let path = path.as_ref().to_path_buf();
        EventChannel::open_path(&path).map_err(|source| OpenError::EventChannels { source })?;
        Ok(RealEventChannels { path })
    }
}

impl EventChannels for RealEventChannels {
    fn open(&self) -> Result<Box<dyn EvtchnHandle>, EvtchnError> {
        let fail = |e: xen_evtchn::Error| EvtchnError::Failed {
            op: "open",
            port: None,
            domid: None,
            reason: e.to_string(),
        };
        let ch = EventChannel::open_path(&self.path).map_err(fail)?;
        ch.set_nonblocking(true).map_err(fail)?;
        Ok(Box::new(RealEvtchnHandle { ch }))
    }
}

/// One non-blocking `/dev/xen/evtchn` handle. `notify` is one ioctl: no lock, no allocation
/// (except to describe an error).
#[derive(Debug)]
pub struct RealEvtchnHandle {
    ch: EventChannel,
}

fn evtchn_err(
    op: &'static str,
    port: Option<Port>,
    domid: Option<DomId>,
    e: xen_evtchn::Error,
) -> EvtchnError {
    EvtchnError::Failed {
        op,
        port,
        domid,
        reason: e.to_string(),
    }
}

impl EvtchnHandle for RealEvtchnHandle {
    fn bind_unbound(&self, remote: DomId) -> Result<Port, EvtchnError> {
        self.ch
            .bind_unbound_port(remote)
            .map(|p| Port(p.0))
            .map_err(|e| evtchn_err("bind_unbound", None, Some(remote), e))
    }

    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, EvtchnError> {
        self.ch
            .bind_interdomain(remote, xen_evtchn::Port(remote_port.0))
            .map(|p| Port(p.0))
            .map_err(|e| evtchn_err("bind_interdomain", Some(remote_port), Some(remote), e))
    }

    fn unbind(&self, port: Port) -> Result<(), EvtchnError> {
        self.ch
            .unbind(xen_evtchn::Port(port.0))
            .map_err(|e| evtchn_err("unbind", Some(port), None, e))
    }

    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        self.ch
            .notify(xen_evtchn::Port(port.0))
            .map_err(|e| evtchn_err("notify", Some(port), None, e))
    }

    fn fd(&self) -> RawFd {
        self.ch.as_raw_fd()
    }

    fn pending(&self) -> Result<Option<Port>, EvtchnError> {
        self.ch
            .pending()
            .map(|p| p.map(|p| Port(p.0)))
            .map_err(|e| evtchn_err("pending", None, None, e))
    }

    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        self.ch
            .unmask(xen_evtchn::Port(port.0))
            .map_err(|e| evtchn_err("unmask", Some(port), None, e))
    }
}

// ---------------------------------------------------------------------------------------------
// convenience

/// What a frontend needs: xenstore, grant sharing, event channels.
#[derive(Clone)]
pub struct FrontendServices {
    /// The xenstore connection.
    pub store: Arc<dyn XenStore>,
    /// Grant sharing (`/dev/xen/gntalloc`).
    pub grants: Arc<dyn GrantShare>,
    /// Event channels (`/dev/xen/evtchn`).
    pub event_channels: Arc<dyn EventChannels>,
}

impl fmt::Debug for FrontendServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrontendServices").finish_non_exhaustive()
    }
}

/// What a backend needs: xenstore, grant mapping, event channels.
#[derive(Clone)]
pub struct BackendServices {
    /// The xenstore connection.
    pub store: Arc<dyn XenStore>,
    /// Grant mapping (`/dev/xen/gntdev`).
    pub grants: Arc<dyn GrantMap>,
    /// Event channels (`/dev/xen/evtchn`).
    pub event_channels: Arc<dyn EventChannels>,
}

impl fmt::Debug for BackendServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendServices").finish_non_exhaustive()
    }
}

/// Opens xenstore ([`RealStore::open`], honouring `XENSTORED_PATH`), `/dev/xen/gntalloc` and
/// `/dev/xen/evtchn`. The first failure is returned, naming the device and the likely cause.
pub fn frontend_services_from_env() -> Result<FrontendServices, OpenError> {
    let store = RealStore::open()?;
    let grants = RealGrantShare::open()?;
    let event_channels = RealEventChannels::open()?;
    Ok(FrontendServices {
        store: Arc::new(store),
        grants: Arc::new(grants),
        event_channels: Arc::new(event_channels),
    })
}

/// Opens xenstore ([`RealStore::open`], honouring `XENSTORED_PATH`), `/dev/xen/gntdev` and
/// `/dev/xen/evtchn`. The first failure is returned, naming the device and the likely cause.
pub fn backend_services_from_env() -> Result<BackendServices, OpenError> {
    let store = RealStore::open()?;
    let grants = RealGrantMap::open()?;
    let event_channels = RealEventChannels::open()?;
    Ok(BackendServices {
        store: Arc::new(store),
        grants: Arc::new(grants),
        event_channels: Arc::new(event_channels),
    })
}

#[cfg(test)]
mod tests;
