//! The fake event-channel broker: [`FakeEventChannels`] and [`FakeEvtchnHandle`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::os::fd::RawFd;
use std::sync::Arc;

use super::faults::FaultOp;
use super::signal::SignalFd;
use super::world::FakeXen;
use crate::{DomId, EventChannels, EvtchnError, EvtchnHandle, Port};

/// The lowest port number the fake allocates (kept apart from grant references).
pub const FIRST_PORT: u32 = 10;
/// The highest port number the fake allocates (below [`super::FIRST_GREF`]).
pub const LAST_PORT: u32 = 999;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortState {
    /// Waiting for `remote` to bind; notifications are dropped.
    Unbound { remote: DomId },
    /// Connected to `remote_port` of `remote`.
    Interdomain { remote: DomId, remote_port: u32 },
}

#[derive(Debug)]
struct PortEntry {
    handle: u64,
    state: PortState,
    /// Delivered and not yet unmasked.
    masked: bool,
    /// Fired while masked: delivered again at unmask.
    pending: bool,
    /// Fired while the domain's notifications are held back.
    held: bool,
}

#[derive(Debug)]
struct HandleState {
    domid: DomId,
    signal: Arc<SignalFd>,
    raised: bool,
    /// Delivered ports not yet taken by `pending`; capacity is kept at least the number of
    /// bound ports, so delivering never allocates.
    ready: VecDeque<u32>,
    ports: usize,
    dead: Option<String>,
}

impl HandleState {
    fn lower_if_empty(&mut self) {
        if self.ready.is_empty() && self.raised {
            self.signal.lower();
            self.raised = false;
        }
    }
}

/// Every domain's port table and every open handle.
#[derive(Debug, Default)]
pub(crate) struct EvtState {
    doms: HashMap<DomId, BTreeMap<u32, PortEntry>>,
    handles: HashMap<u64, HandleState>,
    held: HashSet<DomId>,
    next_handle: u64,
}

impl EvtState {
    fn open(&mut self, domid: DomId) -> std::io::Result<(u64, Arc<SignalFd>)> {
        let signal = Arc::new(SignalFd::new()?);
        self.next_handle += 1;
        let id = self.next_handle;
        self.handles.insert(
            id,
            HandleState {
                domid,
                signal: Arc::clone(&signal),
                raised: false,
                ready: VecDeque::new(),
                ports: 0,
                dead: None,
            },
        );
        Ok((id, signal))
    }

    fn live_handle(&self, handle: u64) -> Result<&HandleState, String> {
        match self.handles.get(&handle) {
            Some(h) => match &h.dead {
                Some(reason) => Err(reason.clone()),
                None => Ok(h),
            },
            None => Err("handle closed".to_owned()),
        }
    }

    /// The lowest free port of a domain.
    fn free_port(&self, domid: DomId) -> Option<u32> {
        let mut candidate = FIRST_PORT;
        if let Some(ports) = self.doms.get(&domid) {
            for &p in ports.range(FIRST_PORT..=LAST_PORT).map(|(p, _)| p) {
                if p != candidate {
                    break;
                }
                candidate += 1;
            }
        }
        (candidate <= LAST_PORT).then_some(candidate)
    }

    fn insert_port(&mut self, domid: DomId, handle: u64, state: PortState) -> Result<u32, String> {
        let port = self
            .free_port(domid)
            .ok_or_else(|| format!("ENOSPC: domain {domid} has no free port"))?;
        let h = self
            .handles
            .get_mut(&handle)
            .ok_or_else(|| "handle closed".to_owned())?;
        h.ports += 1;
        let want = h.ports.saturating_sub(h.ready.len());
        h.ready.reserve(want);
        self.doms.entry(domid).or_default().insert(
            port,
            PortEntry {
                handle,
                state,
                masked: false,
                pending: false,
                held: false,
            },
        );
        Ok(port)
    }

    fn bind_unbound(&mut self, handle: u64, remote: DomId) -> Result<u32, String> {
        let domid = self.live_handle(handle)?.domid;
        self.insert_port(domid, handle, PortState::Unbound { remote })
    }

    fn bind_interdomain(
        &mut self,
        handle: u64,
        remote: DomId,
        remote_port: u32,
    ) -> Result<u32, String> {
        let domid = self.live_handle(handle)?.domid;
        let peer_ok = self
            .doms
            .get(&remote)
            .and_then(|p| p.get(&remote_port))
            .is_some_and(|e| e.state == PortState::Unbound { remote: domid });
        if !peer_ok {
            return Err(format!(
                "EINVAL: port {remote_port} of domain {remote} is not an unbound port offered to domain {domid}"
            ));
        }
        let port = self.insert_port(
            domid,
            handle,
            PortState::Interdomain {
                remote,
                remote_port,
            },
        )?;
        if let Some(peer) = self
            .doms
            .get_mut(&remote)
            .and_then(|p| p.get_mut(&remote_port))
        {
            peer.state = PortState::Interdomain {
                remote: domid,
                remote_port: port,
            };
        }
        Ok(port)
    }

    /// The entry of `port` if it belongs to `handle`.
    fn own_port(&self, handle: u64, port: u32) -> Result<(DomId, &PortEntry), String> {
        let domid = self.live_handle(handle)?.domid;
        match self.doms.get(&domid).and_then(|p| p.get(&port)) {
            Some(e) if e.handle == handle => Ok((domid, e)),
            _ => Err(format!("EINVAL: port {port} is not bound by this handle")),
        }
    }

    /// Closes a port: the peer's end becomes unbound (its notifications are then dropped).
    fn close_port(&mut self, domid: DomId, port: u32) {
        let Some(entry) = self.doms.get_mut(&domid).and_then(|p| p.remove(&port)) else {
            return;
        };
        if let Some(h) = self.handles.get_mut(&entry.handle) {
            h.ports = h.ports.saturating_sub(1);
            h.ready.retain(|p| *p != port);
            h.lower_if_empty();
        }
        if let PortState::Interdomain {
            remote,
            remote_port,
        } = entry.state
        {
            if let Some(peer) = self
                .doms
                .get_mut(&remote)
                .and_then(|p| p.get_mut(&remote_port))
            {
                let back = PortState::Interdomain {
                    remote: domid,
                    remote_port: port,
                };
                if peer.state == back {
                    peer.state = PortState::Unbound { remote: domid };
                }
            }
        }
    }

    fn unbind(&mut self, handle: u64, port: u32) -> Result<(), String> {
        let (domid, _) = self.own_port(handle, port)?;
        self.close_port(domid, port);
        Ok(())
    }

    /// Marks `port` of `domid` as fired. No allocation.
    fn deliver(&mut self, domid: DomId, port: u32) {
        let Some(entry) = self.doms.get_mut(&domid).and_then(|p| p.get_mut(&port)) else {
            return;
        };
        if self.held.contains(&domid) {
            entry.held = true;
            return;
        }
        if entry.masked {
            entry.pending = true;
            return;
        }
        let Some(h) = self.handles.get_mut(&entry.handle) else {
            return;
        };
        if h.dead.is_some() {
            return;
        }
        entry.masked = true;
        h.ready.push_back(port);
        if !h.raised {
            h.raised = h.signal.raise();
        }
    }

    fn notify(&mut self, handle: u64, port: u32) -> Result<(), String> {
        let (_, entry) = self.own_port(handle, port)?;
        match entry.state {
            // Xen silently drops notifications on an unbound port.
            PortState::Unbound { .. } => {}
            PortState::Interdomain {
                remote,
                remote_port,
            } => self.deliver(remote, remote_port),
        }
        Ok(())
    }

    fn pending(&mut self, handle: u64) -> Result<Option<u32>, String> {
        self.live_handle(handle)?;
        let Some(h) = self.handles.get_mut(&handle) else {
            return Err("handle closed".to_owned());
        };
        let port = h.ready.pop_front();
        h.lower_if_empty();
        Ok(port)
    }

    fn unmask(&mut self, handle: u64, port: u32) -> Result<(), String> {
        let (domid, _) = self.own_port(handle, port)?;
        let Some(entry) = self.doms.get_mut(&domid).and_then(|p| p.get_mut(&port)) else {
            return Ok(());
        };
        // A port still waiting in the ready queue stays masked until `pending` hands it out.
        let queued = self
            .handles
            .get(&handle)
            .is_some_and(|h| h.ready.contains(&port));
        if !entry.masked || queued {
            return Ok(());
        }
        entry.masked = false;
        if entry.pending {
            entry.pending = false;
            self.deliver(domid, port);
        }
        Ok(())
    }

    fn close_handle(&mut self, handle: u64) {
        let Some(domid) = self.handles.get(&handle).map(|h| h.domid) else {
            return;
        };
        let ports: Vec<u32> = self
            .doms
            .get(&domid)
            .map(|p| {
                p.iter()
                    .filter(|(_, e)| e.handle == handle)
                    .map(|(p, _)| *p)
                    .collect()
            })
            .unwrap_or_default();
        for p in ports {
            self.close_port(domid, p);
        }
        self.handles.remove(&handle);
    }

    /// Closes every port of a killed domain and kills its handles.
    pub(crate) fn kill(&mut self, domid: DomId, reason: &str) {
        let ports: Vec<u32> = self
            .doms
            .get(&domid)
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default();
        for p in ports {
            self.close_port(domid, p);
        }
        for h in self.handles.values_mut().filter(|h| h.domid == domid) {
            h.dead = Some(reason.to_owned());
            h.ready.clear();
            h.lower_if_empty();
        }
        self.held.remove(&domid);
    }

    pub(crate) fn hold(&mut self, domid: DomId) {
        self.held.insert(domid);
    }

    pub(crate) fn release(&mut self, domid: DomId) {
        if !self.held.remove(&domid) {
            return;
        }
        let fired: Vec<u32> = self
            .doms
            .get_mut(&domid)
            .map(|p| {
                p.iter_mut()
                    .filter(|(_, e)| e.held)
                    .map(|(port, e)| {
                        e.held = false;
                        *port
                    })
                    .collect()
            })
            .unwrap_or_default();
        for port in fired {
            self.deliver(domid, port);
        }
    }

    /// Number of ports a domain has bound (in any state).
    pub(crate) fn port_count(&self, domid: DomId) -> usize {
        self.doms.get(&domid).map_or(0, BTreeMap::len)
    }
}

/// Opens event-channel handles for one domain (from [`super::FakeDomain::event_channels`]).
pub struct FakeEventChannels {
    pub(crate) world: Arc<FakeXen>,
    pub(crate) domid: DomId,
    pub(crate) incarnation: u64,
}

impl fmt::Debug for FakeEventChannels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeEventChannels")
            .field("domid", &self.domid)
            .finish()
    }
}

impl EventChannels for FakeEventChannels {
    fn open(&self) -> Result<Box<dyn EvtchnHandle>, EvtchnError> {
        let fail = |reason: String| EvtchnError::Failed {
            op: "open",
            port: None,
            domid: Some(self.domid),
            reason,
        };
        let doms = self.world.domains();
        if !doms.is_current(self.domid, self.incarnation) {
            return Err(fail(format!("domain {} is not running", self.domid)));
        }
        let (id, signal) = self
            .world
            .evt()
            .open(self.domid)
            .map_err(|e| fail(format!("cannot create the event fd: {e}")))?;
        drop(doms);
        Ok(Box::new(FakeEvtchnHandle {
            world: Arc::clone(&self.world),
            id,
            domid: self.domid,
            signal,
        }))
    }
}

/// One event-channel handle of the fake broker, with `/dev/xen/evtchn` semantics.
///
/// * `bind_unbound(remote)` allocates the lowest free port (from [`FIRST_PORT`]) that only
///   `remote` may bind to; `bind_interdomain(remote, port)` connects to such a port (it fails if
///   the port is not offered to us, or `remote` is not running).
/// * `notify(port)` makes the peer handle's fd readable and its `pending()` return the peer's
///   port, which then stays masked: further notifications are remembered as one and delivered
///   at `unmask`. Notifications on an unbound port are silently dropped, like Xen does; a port
///   that is not ours fails with EINVAL.
/// * Dropping the handle (or `unbind`) closes its ports; the peer's end becomes unbound again
///   (bindable by the same domain), so its notifications are dropped.
/// * `notify` takes one short mutex and allocates nothing (unless an injected fault fires).
pub struct FakeEvtchnHandle {
    world: Arc<FakeXen>,
    id: u64,
    domid: DomId,
    signal: Arc<SignalFd>,
}

impl fmt::Debug for FakeEvtchnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeEvtchnHandle")
            .field("domid", &self.domid)
            .field("handle", &self.id)
            .finish()
    }
}

impl FakeEvtchnHandle {
    fn err(
        &self,
        op: &'static str,
        port: Option<Port>,
        domid: Option<DomId>,
        reason: String,
    ) -> EvtchnError {
        EvtchnError::Failed {
            op,
            port,
            domid: domid.or(Some(self.domid)),
            reason,
        }
    }
}

impl Drop for FakeEvtchnHandle {
    fn drop(&mut self) {
        self.world.evt().close_handle(self.id);
    }
}

impl EvtchnHandle for FakeEvtchnHandle {
    fn bind_unbound(&self, remote: DomId) -> Result<Port, EvtchnError> {
        let fail = |r| self.err("bind_unbound", None, Some(remote), r);
        if let Some(e) = self.world.faults().take(self.domid, FaultOp::EvtchnBind) {
            return Err(fail(e.to_string()));
        }
        self.world
            .evt()
            .bind_unbound(self.id, remote)
            .map(Port)
            .map_err(fail)
    }

    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, EvtchnError> {
        let fail = |r| self.err("bind_interdomain", Some(remote_port), Some(remote), r);
        if let Some(e) = self.world.faults().take(self.domid, FaultOp::EvtchnBind) {
            return Err(fail(e.to_string()));
        }
        let doms = self.world.domains();
        if !doms.is_alive(remote) {
            return Err(fail(format!("ESRCH: domain {remote} is not running")));
        }
        let r = self
            .world
            .evt()
            .bind_interdomain(self.id, remote, remote_port.0)
            .map(Port)
            .map_err(fail);
        drop(doms);
        r
    }

    fn unbind(&self, port: Port) -> Result<(), EvtchnError> {
        self.world
            .evt()
            .unbind(self.id, port.0)
            .map_err(|r| self.err("unbind", Some(port), None, r))
    }

    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        if let Some(e) = self.world.faults().take(self.domid, FaultOp::EvtchnNotify) {
            return Err(self.err("notify", Some(port), None, e.to_string()));
        }
        let r = self.world.evt().notify(self.id, port.0);
        r.map_err(|r| self.err("notify", Some(port), None, r))
    }

    fn fd(&self) -> RawFd {
        self.signal.fd()
    }

    fn pending(&self) -> Result<Option<Port>, EvtchnError> {
        let r = self.world.evt().pending(self.id);
        r.map(|p| p.map(Port))
            .map_err(|r| self.err("pending", None, None, r))
    }

    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        let r = self.world.evt().unmask(self.id, port.0);
        r.map_err(|r| self.err("unmask", Some(port), None, r))
    }
}
