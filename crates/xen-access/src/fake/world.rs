//! The fake world ([`FakeXen`]) and one domain's view of it ([`FakeDomain`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::evtchn::{EvtState, FakeEventChannels};
use super::faults::Faults;
use super::grant::{FakeGrantMap, FakeGrantShare, GrantTable};
use super::store::{xs_err, FakeStore, StoreState};
use super::tree::{self, home_of, is_within, parent_of, Mutation};
use crate::{Access, DomId, EventChannels, GrantMap, GrantShare, Perm, StoreError, XenStore};

#[derive(Debug, Clone, Copy)]
struct DomRecord {
    alive: bool,
    incarnation: u64,
}

/// Which domains exist (locked before any other table).
#[derive(Debug, Default)]
pub(crate) struct Domains(HashMap<DomId, DomRecord>);

impl Domains {
    pub(crate) fn is_alive(&self, domid: DomId) -> bool {
        self.0.get(&domid).is_some_and(|d| d.alive)
    }

    pub(crate) fn is_current(&self, domid: DomId, incarnation: u64) -> bool {
        self.0
            .get(&domid)
            .is_some_and(|d| d.alive && d.incarnation == incarnation)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The in-memory Xen: a xenstore, grant tables and an event-channel broker shared by every fake
/// domain of one test.
///
/// Lock order (internal): domains, then store / grants / event channels; a watch queue or the
/// fault table last.
pub struct FakeXen {
    me: Weak<FakeXen>,
    domains: Mutex<Domains>,
    store: Mutex<StoreState>,
    grants: Mutex<GrantTable>,
    evt: Mutex<EvtState>,
    faults: Faults,
}

impl fmt::Debug for FakeXen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let doms = self.domains();
        let mut alive: Vec<DomId> = doms
            .0
            .iter()
            .filter(|(_, d)| d.alive)
            .map(|(id, _)| *id)
            .collect();
        alive.sort_unstable();
        f.debug_struct("FakeXen").field("alive", &alive).finish()
    }
}

/// One domain's services (from [`FakeXen::domain`]). Services obtained from it stop working
/// when the domain is killed, even if the same domid is started again later.
#[derive(Clone)]
pub struct FakeDomain {
    world: Arc<FakeXen>,
    domid: DomId,
    incarnation: u64,
}

impl fmt::Debug for FakeDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeDomain")
            .field("domid", &self.domid)
            .field("incarnation", &self.incarnation)
            .finish()
    }
}

impl FakeDomain {
    /// The domain id.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The world this domain lives in.
    pub fn world(&self) -> &Arc<FakeXen> {
        &self.world
    }

    /// A new xenstore connection as this domain.
    pub fn store(&self) -> Arc<dyn XenStore> {
        self.fake_store()
    }

    /// A new xenstore connection as this domain, with the fake's extra methods.
    pub fn fake_store(&self) -> Arc<FakeStore> {
        let doms = self.world.domains();
        let broken = (!doms.is_current(self.domid, self.incarnation))
            .then(|| format!("domain {} is not running", self.domid));
        let conn = self.world.store_state().connect(self.domid, broken);
        drop(doms);
        Arc::new(FakeStore::new(Arc::clone(&self.world), conn))
    }

    /// Grant sharing as this domain (the frontend side).
    pub fn grant_share(&self) -> Arc<dyn GrantShare> {
        Arc::new(FakeGrantShare {
            world: Arc::clone(&self.world),
            domid: self.domid,
            incarnation: self.incarnation,
        })
    }

    /// Grant mapping as this domain (the backend side).
    pub fn grant_map(&self) -> Arc<dyn GrantMap> {
        Arc::new(FakeGrantMap {
            world: Arc::clone(&self.world),
            domid: self.domid,
            incarnation: self.incarnation,
        })
    }

    /// Event channels as this domain.
    pub fn event_channels(&self) -> Arc<dyn EventChannels> {
        Arc::new(FakeEventChannels {
            world: Arc::clone(&self.world),
            domid: self.domid,
            incarnation: self.incarnation,
        })
    }
}

impl FakeXen {
    /// An empty world: only `/` exists in the store, no domain is running.
    pub fn new() -> Arc<FakeXen> {
        Arc::new_cyclic(|me| FakeXen {
            me: me.clone(),
            domains: Mutex::new(Domains::default()),
            store: Mutex::new(StoreState::new()),
            grants: Mutex::new(GrantTable::new()),
            evt: Mutex::new(EvtState::default()),
            faults: Faults::default(),
        })
    }

    pub(crate) fn domains(&self) -> MutexGuard<'_, Domains> {
        lock(&self.domains)
    }

    pub(crate) fn store_state(&self) -> MutexGuard<'_, StoreState> {
        lock(&self.store)
    }

    pub(crate) fn grants(&self) -> MutexGuard<'_, GrantTable> {
        lock(&self.grants)
    }

    pub(crate) fn evt(&self) -> MutexGuard<'_, EvtState> {
        lock(&self.evt)
    }

    /// The fault table: make the next calls of an operation fail.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Starts domain `domid` (if it is not running) and returns its services.
    ///
    /// Starting a domain creates its home the way libxl does: `/local/domain/<domid>` and its
    /// `domid` and `device` nodes owned by dom0 and readable by the domain, and a `data` node
    /// the domain owns. Nodes that already exist are left alone. A (re)started domain fires
    /// `@introduceDomain`. Calling this for a running domain just returns another handle.
    pub fn domain(&self, domid: DomId) -> FakeDomain {
        let mut doms = self.domains();
        let rec = doms.0.entry(domid).or_insert(DomRecord {
            alive: false,
            incarnation: 0,
        });
        let started = !rec.alive;
        if started {
            rec.alive = true;
            rec.incarnation += 1;
        }
        let incarnation = rec.incarnation;
        if started {
            let mut st = self.store_state();
            let home = home_of(domid);
            let guest_ro = if domid == 0 {
                vec![perm(0, Access::None)]
            } else {
                vec![perm(0, Access::None), perm(domid, Access::Read)]
            };
            let nodes = [
                (home.clone(), String::new(), guest_ro.clone()),
                (format!("{home}/domid"), domid.to_string(), guest_ro.clone()),
                (format!("{home}/device"), String::new(), guest_ro),
                (
                    format!("{home}/data"),
                    String::new(),
                    vec![perm(domid, Access::None)],
                ),
            ];
            for (path, value, perms) in nodes {
                if st.tree.get(&path).is_some() {
                    continue;
                }
                // As dom0 these cannot fail: the paths are valid and dom0 may do anything.
                let _ = st.mutate(
                    0,
                    &Mutation::Write {
                        path: path.clone(),
                        value,
                    },
                );
                let _ = st.mutate(0, &Mutation::SetPerms { path, perms });
            }
            st.fire_special("@introduceDomain");
        }
        drop(doms);
        FakeDomain {
            world: self.me.upgrade().unwrap_or_else(FakeXen::new),
            domid,
            incarnation,
        }
    }

    /// Whether `domid` is running.
    pub fn is_alive(&self, domid: DomId) -> bool {
        self.domains().is_alive(domid)
    }

    /// Kills a domain, as if it crashed or was destroyed:
    ///
    /// * its xenstore connections fail with [`StoreError::Connection`] (watch fds stay
    ///   readable) and their watches are gone;
    /// * `@releaseDomain` fires, then every node the domain owns at or below
    ///   `/local/domain/<domid>` is removed with its subtree (firing watches);
    /// * its event-channel ports close (peers' ends become unbound) and its handles fail;
    /// * its mappings are released, and its grants end as soon as nobody maps them.
    ///
    /// Services obtained before stay dead even if the domain is started again.
    pub fn kill_domain(&self, domid: DomId) {
        let reason = format!("domain {domid} was killed");
        let mut doms = self.domains();
        if let Some(rec) = doms.0.get_mut(&domid) {
            rec.alive = false;
        }
        {
            let mut st = self.store_state();
            st.kill_connections(domid, &reason);
            st.fire_special("@releaseDomain");
            let home = home_of(domid);
            let owned: Vec<String> = st
                .tree
                .iter()
                .filter(|(p, n)| {
                    is_within(p, &home) && n.perms.first().is_some_and(|o| o.domid == domid)
                })
                .map(|(p, _)| p.clone())
                .collect();
            // Topmost first: a removed subtree takes its owned descendants with it.
            for path in owned {
                if st.tree.get(&path).is_none() {
                    continue;
                }
                let Some(parent) = parent_of(&path).map(str::to_owned) else {
                    continue;
                };
                let change = st.tree.remove_subtree(&path, &parent);
                st.fire(&change);
            }
        }
        self.evt().kill(domid, &reason);
        self.grants().kill(domid);
        drop(doms);
    }

    /// Every node at or below `prefix` (absolute) with its value, sorted by path.
    pub fn dump(&self, prefix: &str) -> Vec<(String, String)> {
        let st = self.store_state();
        st.tree
            .iter()
            .filter(|(p, _)| is_within(p, prefix))
            .map(|(p, n)| (p.clone(), n.value.clone()))
            .collect()
    }

    /// The value of a node (absolute path), read with dom0's rights.
    pub fn read(&self, path: &str) -> Option<String> {
        self.store_state().tree.get(path).map(|n| n.value.clone())
    }

    /// The permissions of a node (absolute path).
    pub fn perms(&self, path: &str) -> Option<Vec<Perm>> {
        self.store_state().tree.get(path).map(|n| n.perms.clone())
    }

    fn mutate_as(
        &self,
        domid: DomId,
        op: &'static str,
        path: &str,
        make: impl FnOnce(String) -> Mutation,
    ) -> Result<(), StoreError> {
        let (abs, _) = tree::resolve(domid, path).map_err(|e| xs_err(op, path, e))?;
        self.store_state()
            .mutate(domid, &make(abs.clone()))
            .map_err(|e| xs_err(op, &abs, e))
    }

    /// Writes a node with `domid`'s rights (e.g. 0 for the toolstack), firing watches. Relative
    /// paths resolve below `domid`'s home. Works whether or not `domid` is running.
    pub fn write_as(&self, domid: DomId, path: &str, value: &str) -> Result<(), StoreError> {
        self.mutate_as(domid, "write", path, |path| Mutation::Write {
            path,
            value: value.to_owned(),
        })
    }

    /// Creates a node (and missing ancestors) with `domid`'s rights.
    pub fn mkdir_as(&self, domid: DomId, path: &str) -> Result<(), StoreError> {
        self.mutate_as(domid, "mkdir", path, |path| Mutation::Mkdir { path })
    }

    /// Removes a subtree with `domid`'s rights (missing is fine).
    pub fn rm_as(&self, domid: DomId, path: &str) -> Result<(), StoreError> {
        self.mutate_as(domid, "rm", path, |path| Mutation::Rm { path })
    }

    /// Sets a node's permissions with `domid`'s rights.
    pub fn set_perms_as(&self, domid: DomId, path: &str, perms: &[Perm]) -> Result<(), StoreError> {
        self.mutate_as(domid, "set_perms", path, |path| Mutation::SetPerms {
            path,
            perms: perms.to_vec(),
        })
    }

    /// How many grant references `domid` has live (shared and not yet ended).
    pub fn live_grants(&self, domid: DomId) -> usize {
        self.grants().live_grants(domid)
    }

    /// How many mappings `domid` holds of other domains' grants.
    pub fn live_mappings(&self, domid: DomId) -> usize {
        self.grants().live_mappings(domid)
    }

    /// Sets how many pages each domain may have granted at once (default
    /// [`super::DEFAULT_GRANT_LIMIT`]).
    pub fn set_grant_limit(&self, pages: usize) {
        self.grants().set_limit(pages);
    }

    /// How many event-channel ports `domid` has bound (in any state).
    pub fn bound_ports(&self, domid: DomId) -> usize {
        self.evt().port_count(domid)
    }

    /// Holds back notifications to `domid`: they are remembered (one per port) and delivered
    /// by [`FakeXen::release_notifications`].
    pub fn hold_notifications(&self, domid: DomId) {
        self.evt().hold(domid);
    }

    /// Delivers the notifications held back for `domid` and stops holding them.
    pub fn release_notifications(&self, domid: DomId) {
        self.evt().release(domid);
    }
}

fn perm(domid: DomId, access: Access) -> Perm {
    Perm { domid, access }
}
