//! Fake xenstore connections: [`FakeStore`].

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::faults::{FaultError, FaultOp};
use super::signal::SignalFd;
use super::tree::{self, can_read, home_of, is_within, parent_of, Change, Mutation, Touched, Tree};
use super::world::FakeXen;
use crate::{DomId, Perm, StoreErrno, StoreError, StoreOps, WatchEvent, XenStore};

/// How many times [`XenStore::transaction`] runs the closure before giving up with EAGAIN (the
/// same bound as `xen_store::TRANSACTION_ATTEMPTS`).
pub const TRANSACTION_ATTEMPTS: u32 = 16;

/// Longest special watch name (`@releaseDomain` and friends).
const MAX_SPECIAL: usize = 64;

pub(crate) fn xs_err(op: &'static str, path: &str, errno: StoreErrno) -> StoreError {
    StoreError::Xs {
        op,
        path: path.to_owned(),
        errno,
    }
}

fn fault_err(op: &'static str, path: &str, e: FaultError) -> StoreError {
    match e {
        FaultError::Errno(errno) => xs_err(op, path, errno),
        FaultError::ConnectionLost => StoreError::Connection {
            op,
            path: path.to_owned(),
            reason: e.to_string(),
        },
    }
}

#[derive(Debug, Default)]
struct ConnQueue {
    events: VecDeque<WatchEvent>,
    raised: bool,
    broken: Option<String>,
}

/// The part of a connection the world can reach: its watch queue and its broken flag.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    domid: DomId,
    signal: Option<SignalFd>,
    queue: Mutex<ConnQueue>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnQueue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn raise(&self, q: &mut ConnQueue) {
        if !q.raised {
            if let Some(s) = &self.signal {
                q.raised = s.raise();
            }
        }
    }

    fn push(&self, ev: WatchEvent) {
        let mut q = self.lock();
        if q.broken.is_some() {
            return;
        }
        q.events.push_back(ev);
        self.raise(&mut q);
    }

    /// Breaks the connection: every later call fails, the watch fd stays readable.
    pub(crate) fn break_with(&self, reason: String) {
        let mut q = self.lock();
        if q.broken.is_none() {
            q.broken = Some(reason);
        }
        q.events.clear();
        self.raise(&mut q);
    }

    fn broken(&self) -> Option<String> {
        self.lock().broken.clone()
    }

    fn take(&self) -> Option<WatchEvent> {
        let mut q = self.lock();
        let ev = q.events.pop_front();
        if q.events.is_empty() && q.broken.is_none() && q.raised {
            if let Some(s) = &self.signal {
                s.lower();
            }
            q.raised = false;
        }
        ev
    }

    fn purge_token(&self, token: &str) {
        let mut q = self.lock();
        q.events.retain(|e| e.token != token);
        if q.events.is_empty() && q.broken.is_none() && q.raised {
            if let Some(s) = &self.signal {
                s.lower();
            }
            q.raised = false;
        }
    }
}

#[derive(Debug)]
struct WatchReg {
    conn: Weak<Conn>,
    conn_id: u64,
    domid: DomId,
    /// Absolute path, or a special name starting with `@`.
    path: String,
    token: String,
    /// Registered with a relative path: events below the home are reported relative.
    relative: bool,
}

impl WatchReg {
    fn deliver(&self, abs_path: &str) {
        let Some(conn) = self.conn.upgrade() else {
            return;
        };
        let mut path = abs_path;
        if self.relative {
            let home = home_of(self.domid);
            if let Some(rest) = abs_path
                .strip_prefix(home.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                path = rest;
            }
        }
        conn.push(WatchEvent {
            path: path.to_owned(),
            token: self.token.clone(),
        });
    }
}

/// The store half of the world: the tree, the registered watches and the connections.
#[derive(Debug)]
pub(crate) struct StoreState {
    pub(crate) tree: Tree,
    watches: Vec<WatchReg>,
    conns: Vec<Weak<Conn>>,
    next_conn: u64,
}

impl StoreState {
    pub(crate) fn new() -> StoreState {
        StoreState {
            tree: Tree::new(),
            watches: Vec::new(),
            conns: Vec::new(),
            next_conn: 1,
        }
    }

    /// Fires the watches a change concerns, with cxenstored's rules:
    ///
    /// * a change of a node fires every watch on it or on an ancestor, reporting the node;
    /// * a removal fires watches on the removed node or an ancestor (reporting it) and watches
    ///   on each removed descendant that existed (reporting that descendant);
    /// * a watcher hears about a node only if its domain may read the node (before or after a
    ///   permission change) or the node's parent.
    pub(crate) fn fire(&self, change: &Change) {
        let parent_perms = |path: &str| -> Option<&[Perm]> {
            parent_of(path)
                .and_then(|p| self.tree.get(p))
                .map(|n| n.perms.as_slice())
        };
        for w in &self.watches {
            if w.path.starts_with('@') {
                continue;
            }
            match change {
                Change::Set {
                    path,
                    perms,
                    old_perms,
                } => {
                    if !is_within(path, &w.path) {
                        continue;
                    }
                    let permitted = can_read(w.domid, perms)
                        || old_perms.as_deref().is_some_and(|o| can_read(w.domid, o))
                        || parent_perms(path).is_some_and(|p| can_read(w.domid, p));
                    if permitted {
                        w.deliver(path);
                    }
                }
                Change::Removed { path, nodes } => {
                    let perms_of = |p: &str| {
                        nodes
                            .iter()
                            .find(|(n, _)| n == p)
                            .map(|(_, perms)| perms.as_slice())
                    };
                    let (target, perms) = if is_within(path, &w.path) {
                        (path.as_str(), perms_of(path))
                    } else if let Some(perms) = perms_of(&w.path) {
                        (w.path.as_str(), Some(perms))
                    } else {
                        continue;
                    };
                    let parent = parent_of(target).and_then(|p| {
                        perms_of(p).or_else(|| self.tree.get(p).map(|n| n.perms.as_slice()))
                    });
                    let permitted = perms.is_some_and(|p| can_read(w.domid, p))
                        || parent.is_some_and(|p| can_read(w.domid, p));
                    if permitted {
                        w.deliver(target);
                    }
                }
            }
        }
    }

    /// Fires a special watch (`@releaseDomain`, `@introduceDomain`). Like xenstored with the
    /// special nodes' default permissions, only dom0's watches hear them.
    pub(crate) fn fire_special(&self, name: &str) {
        for w in self
            .watches
            .iter()
            .filter(|w| w.path == name && w.domid == 0)
        {
            w.deliver(name);
        }
    }

    /// Applies a mutation as `domid` on the live tree and fires the watches.
    pub(crate) fn mutate(&mut self, domid: DomId, m: &Mutation) -> Result<(), StoreErrno> {
        if let Some(change) = self.tree.apply(domid, m, &mut Touched::none())? {
            self.fire(&change);
        }
        Ok(())
    }

    /// Registers a new connection for `domid`.
    pub(crate) fn connect(&mut self, domid: DomId, broken: Option<String>) -> Arc<Conn> {
        let id = self.next_conn;
        self.next_conn += 1;
        let (signal, broken) = match SignalFd::new() {
            Ok(s) => (Some(s), broken),
            Err(e) => (
                None,
                Some(format!("fake xenstore: cannot create the watch fd: {e}")),
            ),
        };
        let conn = Arc::new(Conn {
            id,
            domid,
            signal,
            queue: Mutex::new(ConnQueue::default()),
        });
        if let Some(reason) = broken {
            conn.break_with(reason);
        }
        self.conns.retain(|c| c.strong_count() > 0);
        self.conns.push(Arc::downgrade(&conn));
        conn
    }

    /// Breaks every connection of `domid` and drops their watches.
    pub(crate) fn kill_connections(&mut self, domid: DomId, reason: &str) {
        for c in self.conns.iter().filter_map(Weak::upgrade) {
            if c.domid == domid {
                c.break_with(reason.to_owned());
            }
        }
        self.watches.retain(|w| w.domid != domid);
    }

    fn disconnect(&mut self, conn_id: u64) {
        self.watches.retain(|w| w.conn_id != conn_id);
        self.conns
            .retain(|c| c.upgrade().is_some_and(|c| c.id != conn_id));
    }
}

/// A connection to the fake xenstore, as one domain (from [`super::FakeDomain::store`]).
///
/// Behaves like xenstored for the operations of [`StoreOps`] and [`XenStore`]:
///
/// * relative paths resolve below `/local/domain/<domid>`; node names are checked like
///   xenstored does (characters `A-Za-z0-9-/_@`, no `//`, no trailing `/`), else EINVAL;
/// * permissions: dom0 may do anything; the owner (first entry) has full access; listed domains
///   get their entry's access and everyone else the first entry's. Creating a node needs write
///   access to its nearest existing ancestor; new nodes inherit the parent's permissions and a
///   non-dom0 creator becomes their owner. A missing node below an unreadable one reads as
///   EACCES, not "missing". Only dom0 may change a node's owner (others get `EPERM`);
/// * watches fire once on registration and for every write, mkdir (of a new node), permission
///   change or removal of the node or a descendant, and of an ancestor (then reporting the
///   removed node, if it existed); events are filtered as xenstored does (the watcher must be
///   able to read the node or its parent). Relative watches report relative paths.
///   `@releaseDomain` and `@introduceDomain` reach dom0's watches only (the default permissions
///   of those special nodes);
/// * transactions run the closure on a private copy of the tree and replay its writes at
///   commit, which fails with EAGAIN when a node the transaction looked at (or the parent of a
///   node it created or removed) changed meanwhile; [`XenStore::transaction`] then reruns the
///   closure, up to [`TRANSACTION_ATTEMPTS`] times. Watches fire at commit;
/// * once the domain is killed, every call fails with [`StoreError::Connection`] and the watch
///   fd stays readable.
pub struct FakeStore {
    world: Arc<FakeXen>,
    conn: Arc<Conn>,
}

impl fmt::Debug for FakeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeStore")
            .field("domid", &self.conn.domid)
            .field("conn", &self.conn.id)
            .finish()
    }
}

impl FakeStore {
    pub(crate) fn new(world: Arc<FakeXen>, conn: Arc<Conn>) -> FakeStore {
        FakeStore { world, conn }
    }

    /// The domain this connection acts as.
    pub fn domid(&self) -> DomId {
        self.conn.domid
    }

    /// Number of queued watch events.
    pub fn queued_events(&self) -> usize {
        self.conn.lock().events.len()
    }

    fn check_alive(&self, op: &'static str, path: &str) -> Result<(), StoreError> {
        match self.conn.broken() {
            Some(reason) => Err(StoreError::Connection {
                op,
                path: path.to_owned(),
                reason,
            }),
            None => Ok(()),
        }
    }

    fn fault(&self, op: &'static str, path: &str, fop: FaultOp) -> Result<(), StoreError> {
        match self.world.faults().take(self.conn.domid, fop) {
            Some(e) => Err(fault_err(op, path, e)),
            None => Ok(()),
        }
    }

    fn resolve(&self, op: &'static str, path: &str) -> Result<String, StoreError> {
        self.check_alive(op, path)?;
        tree::resolve(self.conn.domid, path)
            .map(|(abs, _)| abs)
            .map_err(|e| xs_err(op, path, e))
    }

    fn query<T>(
        &self,
        op: &'static str,
        path: &str,
        f: impl FnOnce(&Tree, &str) -> Result<T, StoreErrno>,
    ) -> Result<T, StoreError> {
        let abs = self.resolve(op, path)?;
        self.fault(op, &abs, FaultOp::StoreRead)?;
        let st = self.world.store_state();
        self.check_alive(op, &abs)?;
        f(&st.tree, &abs).map_err(|e| xs_err(op, &abs, e))
    }

    fn mutate(
        &self,
        op: &'static str,
        path: &str,
        make: impl FnOnce(String) -> Mutation,
    ) -> Result<(), StoreError> {
        let abs = self.resolve(op, path)?;
        self.fault(op, &abs, FaultOp::StoreWrite)?;
        let m = make(abs.clone());
        let mut st = self.world.store_state();
        self.check_alive(op, &abs)?;
        st.mutate(self.conn.domid, &m)
            .map_err(|e| xs_err(op, &abs, e))
    }

    fn watch_target(&self, op: &'static str, path: &str) -> Result<(String, bool), StoreError> {
        self.check_alive(op, path)?;
        if let Some(name) = path.strip_prefix('@') {
            let ok = !name.is_empty()
                && path.len() <= MAX_SPECIAL
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            return if ok {
                Ok((path.to_owned(), false))
            } else {
                Err(xs_err(op, path, StoreErrno::Invalid))
            };
        }
        tree::resolve(self.conn.domid, path).map_err(|e| xs_err(op, path, e))
    }

    fn commit(&self, tx: TxOps<'_>) -> Result<(), StoreError> {
        let TxOps {
            base, log, touched, ..
        } = tx;
        self.check_alive("transaction_end", "")?;
        self.fault("transaction_end", "", FaultOp::StoreCommit)?;
        let mut st = self.world.store_state();
        self.check_alive("transaction_end", "")?;
        let conflict = touched
            .borrow()
            .iter()
            .find(|p| base.gen_of(p) != st.tree.gen_of(p))
            .cloned();
        if let Some(path) = conflict {
            return Err(xs_err("transaction_end", &path, StoreErrno::Again));
        }
        let mut next = st.tree.clone();
        let mut changes = Vec::new();
        for m in log.borrow().iter() {
            match next.apply(self.conn.domid, m, &mut Touched::none()) {
                Ok(Some(c)) => changes.push(c),
                Ok(None) => {}
                Err(e) => return Err(xs_err(m.op_name(), m.path(), e)),
            }
        }
        st.tree = next;
        for c in &changes {
            st.fire(c);
        }
        Ok(())
    }
}

impl Drop for FakeStore {
    fn drop(&mut self) {
        self.world.store_state().disconnect(self.conn.id);
    }
}

impl StoreOps for FakeStore {
    fn read(&self, path: &str) -> Result<Option<String>, StoreError> {
        let domid = self.conn.domid;
        self.query("read", path, |t, abs| {
            t.read(domid, abs, &mut Touched::none())
        })
    }

    fn write(&self, path: &str, value: &str) -> Result<(), StoreError> {
        self.mutate("write", path, |path| Mutation::Write {
            path,
            value: value.to_owned(),
        })
    }

    fn mkdir(&self, path: &str) -> Result<(), StoreError> {
        self.mutate("mkdir", path, |path| Mutation::Mkdir { path })
    }

    fn rm(&self, path: &str) -> Result<(), StoreError> {
        self.mutate("rm", path, |path| Mutation::Rm { path })
    }

    fn directory(&self, path: &str) -> Result<Vec<String>, StoreError> {
        let domid = self.conn.domid;
        self.query("directory", path, |t, abs| {
            t.directory(domid, abs, &mut Touched::none())
        })
    }

    fn get_perms(&self, path: &str) -> Result<Vec<Perm>, StoreError> {
        let domid = self.conn.domid;
        self.query("get_perms", path, |t, abs| {
            t.get_perms(domid, abs, &mut Touched::none())
        })
    }

    fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), StoreError> {
        self.mutate("set_perms", path, |path| Mutation::SetPerms {
            path,
            perms: perms.to_vec(),
        })
    }
}

impl XenStore for FakeStore {
    fn own_domid(&self) -> Result<DomId, StoreError> {
        self.check_alive("read", "domid")?;
        Ok(self.conn.domid)
    }

    fn watch(&self, path: &str, token: &str) -> Result<(), StoreError> {
        let (target, relative) = self.watch_target("watch", path)?;
        let mut st = self.world.store_state();
        self.check_alive("watch", path)?;
        let dup = st
            .watches
            .iter()
            .any(|w| w.conn_id == self.conn.id && w.path == target && w.token == token);
        if dup {
            return Err(xs_err("watch", path, StoreErrno::Exist));
        }
        st.watches.push(WatchReg {
            conn: Arc::downgrade(&self.conn),
            conn_id: self.conn.id,
            domid: self.conn.domid,
            path: target,
            token: token.to_owned(),
            relative,
        });
        // xenstored fires every new watch once, with the path as registered.
        self.conn.push(WatchEvent {
            path: path.to_owned(),
            token: token.to_owned(),
        });
        Ok(())
    }

    fn unwatch(&self, path: &str, token: &str) -> Result<(), StoreError> {
        let (target, _) = self.watch_target("unwatch", path)?;
        let mut st = self.world.store_state();
        self.check_alive("unwatch", path)?;
        let id = self.conn.id;
        let pos = st
            .watches
            .iter()
            .position(|w| w.conn_id == id && w.path == target && w.token == token)
            .ok_or_else(|| xs_err("unwatch", path, StoreErrno::NoEnt))?;
        st.watches.remove(pos);
        let token_still_used = st
            .watches
            .iter()
            .any(|w| w.conn_id == id && w.token == token);
        if !token_still_used {
            self.conn.purge_token(token);
        }
        Ok(())
    }

    fn watch_fd(&self) -> RawFd {
        self.conn.signal.as_ref().map_or(-1, SignalFd::fd)
    }

    fn take_watch_event(&self) -> Option<WatchEvent> {
        self.conn.take()
    }

    fn transaction(
        &self,
        f: &mut dyn FnMut(&dyn StoreOps) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut last = None;
        for _ in 0..TRANSACTION_ATTEMPTS {
            self.check_alive("transaction_start", "")?;
            let base = self.world.store_state().tree.clone();
            let tx = TxOps {
                store: self,
                work: RefCell::new(base.clone()),
                base,
                log: RefCell::new(Vec::new()),
                touched: RefCell::new(BTreeSet::new()),
            };
            let outcome = f(&tx).and_then(|()| self.commit(tx));
            match outcome {
                Err(e) if e.is_again() => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| xs_err("transaction_end", "", StoreErrno::Again)))
    }
}

/// The operations available inside a transaction: a private copy of the tree plus a log.
struct TxOps<'a> {
    store: &'a FakeStore,
    base: Tree,
    work: RefCell<Tree>,
    log: RefCell<Vec<Mutation>>,
    touched: RefCell<BTreeSet<String>>,
}

impl TxOps<'_> {
    fn query<T>(
        &self,
        op: &'static str,
        path: &str,
        f: impl FnOnce(&Tree, &str, &mut Touched<'_>) -> Result<T, StoreErrno>,
    ) -> Result<T, StoreError> {
        let abs = self.store.resolve(op, path)?;
        self.store.fault(op, &abs, FaultOp::StoreRead)?;
        let mut touched = self.touched.borrow_mut();
        f(&self.work.borrow(), &abs, &mut Touched(Some(&mut touched)))
            .map_err(|e| xs_err(op, &abs, e))
    }

    fn mutate(
        &self,
        op: &'static str,
        path: &str,
        make: impl FnOnce(String) -> Mutation,
    ) -> Result<(), StoreError> {
        let abs = self.store.resolve(op, path)?;
        self.store.fault(op, &abs, FaultOp::StoreWrite)?;
        let m = make(abs.clone());
        let mut touched = self.touched.borrow_mut();
        self.work
            .borrow_mut()
            .apply(self.store.conn.domid, &m, &mut Touched(Some(&mut touched)))
            .map_err(|e| xs_err(op, &abs, e))?;
        self.log.borrow_mut().push(m);
        Ok(())
    }
}

impl StoreOps for TxOps<'_> {
    fn read(&self, path: &str) -> Result<Option<String>, StoreError> {
        let domid = self.store.conn.domid;
        self.query("read", path, |t, abs, touched| t.read(domid, abs, touched))
    }

    fn write(&self, path: &str, value: &str) -> Result<(), StoreError> {
        self.mutate("write", path, |path| Mutation::Write {
            path,
            value: value.to_owned(),
        })
    }

    fn mkdir(&self, path: &str) -> Result<(), StoreError> {
        self.mutate("mkdir", path, |path| Mutation::Mkdir { path })
    }

    fn rm(&self, path: &str) -> Result<(), StoreError> {
        self.mutate("rm", path, |path| Mutation::Rm { path })
    }

    fn directory(&self, path: &str) -> Result<Vec<String>, StoreError> {
        let domid = self.store.conn.domid;
        self.query("directory", path, |t, abs, touched| {
            t.directory(domid, abs, touched)
        })
    }

    fn get_perms(&self, path: &str) -> Result<Vec<Perm>, StoreError> {
        let domid = self.store.conn.domid;
        self.query("get_perms", path, |t, abs, touched| {
            t.get_perms(domid, abs, touched)
        })
    }

    fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), StoreError> {
        self.mutate("set_perms", path, |path| Mutation::SetPerms {
            path,
            perms: perms.to_vec(),
        })
    }
}
