//! The module: argument checking, the core connection, the frontend, and node creation and
//! removal on the daemon's main loop.
//!
//! # Lifecycle
//!
//! `init` (main thread) connects a core, starts the frontend and ties the module state to the
//! module's `destroy` event. The frontend runs on its own thread(s) and signals a main-loop event
//! source whenever something happened; its callback (and a periodic timer) pumps the frontend's
//! [`FrontendEvent`]s and creates, updates or removes nodes — always on the main thread.
//!
//! A card that disconnects (its backend restarts) keeps its nodes: they are deactivated, and when
//! the card connects again each node gets the new stream of the same card, device and index
//! ([`Node::replace_port`]) and is activated — same id, same name, same volume. Only a removed
//! card, or a stream whose capabilities changed, loses its node.
//!
//! Teardown runs in the module's `destroy` event, for all three ways a module ends (daemon
//! SIGTERM, `pw-cli destroy <module-id>`, the hosting `pw-cli -m` exiting): drop the stats timer,
//! drop the nodes (each destroys its stream, whose timer and io source go first, then stops and
//! closes its port toward the backend, bounded), stop the frontend (the engine closes every card
//! toward its backend, 5 then 6, bounded; its threads are joined, so nothing signals the event
//! source any more), drop the event source, then the core. When the context destroyed the core
//! and its streams first (daemon shutdown), their wrappers noticed it and only forget them.

use core::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use crate::args::ModuleArgs;
use crate::ffi::{
    self, Context, CoreConnection, DataLoop, EventSource, ModuleOwner, ModulePtr, TimerSource,
};
use crate::frontend::{self, Frontend};
use crate::log::{self, RateLimit};
use crate::naming;
use crate::node::Node;
use crate::port::{CardInfo, FrontendEvent, PcmPort};

/// Module properties shown by `pw-cli info <module-id>`.
pub const AUTHOR: &str = "pipewire-xen-snd developers";
/// `module.description`.
pub const DESCRIPTION: &str =
    "Xen para-virtual sound (vsnd) frontend: one Audio/Sink or Audio/Source node per stream";
/// `module.usage`.
pub const USAGE: &str = "( xen.cards = all | [ <dev-id> ... ] ) \
( node.name.prefix = xen_snd ) ( node.latency = 1024/48000 ) ( xen.driver = true ) \
( xen.period-frames = 0 ) ( xen.buffer-frames = 0 ) \
( xen.xenstore-path = $XENSTORED_PATH or /dev/xen/xenbus ) \
( priority.driver = 1000 ) ( priority.session = 1000 ) ( remote.name = internal ) \
( log.level = <0-5, default PipeWire's> ) ( xen.test-world = <spec> (test hook only, unset) )";

/// How often counters are checked and problems reported.
const STATS_PERIOD_NS: u64 = 1_000_000_000;
/// At most one xrun warning per node per this interval.
const WARN_INTERVAL_NS: u64 = 10_000_000_000;

/// Everything the module owns (main thread).
struct State {
    module_id: Option<u32>,
    args: ModuleArgs,
    data_loop: DataLoop,
    graph_rate: u32,
    core: Option<CoreConnection>,
    nodes: Vec<NodeEntry>,
    events: Option<EventSource>,
    frontend: Option<Box<dyn Frontend>>,
    stats_timer: Option<TimerSource>,
    panics_reported: u64,
}

struct NodeEntry {
    node: Node,
    last_underruns: u64,
    last_dropped: u64,
    limit: RateLimit,
}

impl NodeEntry {
    fn new(node: Node) -> NodeEntry {
        NodeEntry {
            node,
            last_underruns: 0,
            last_dropped: 0,
            limit: RateLimit::default(),
        }
    }
}

/// The loaded module.
pub struct Module {
    state: Rc<RefCell<State>>,
}

impl core::fmt::Debug for Module {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let nodes = self.state.try_borrow().map(|s| s.nodes.len()).ok();
        f.debug_struct("Module").field("nodes", &nodes).finish()
    }
}

/// Why the module refuses to load.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Bad arguments.
    #[error("{0}")]
    Args(#[from] crate::args::ArgError),
    /// PipeWire refused something.
    #[error("{0}")]
    PipeWire(String),
}

impl InitError {
    /// The negative errno for `pipewire__module_init`.
    pub fn errno(&self) -> i32 {
        match self {
            InitError::Args(_) => -libc::EINVAL,
            InitError::PipeWire(_) => -libc::EIO,
        }
    }
}

/// `pipewire__module_init`'s body. `pairs` are the parsed arguments.
pub fn init(module: ModulePtr, pairs: &[(String, String)]) -> Result<(), InitError> {
    let env = std::env::var(crate::args::XENSTORED_PATH_ENV).ok();
    let args = ModuleArgs::parse(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        env.as_deref(),
    )?;
    log::init(args.log_level);
    let pw = |what: &str| InitError::PipeWire(what.to_owned());
    let ctx: Context = module
        .context()
        .ok_or_else(|| pw("the module has no context"))?;
    let main_loop = ctx
        .main_loop()
        .ok_or_else(|| pw("the context has no main loop"))?;
    let data_loop = ctx
        .data_loop()
        .ok_or_else(|| pw("the context has no data loop"))?;
    let graph_rate = ctx
        .property("default.clock.rate")
        .and_then(|r| r.trim().parse::<u32>().ok())
        .filter(|r| *r > 0)
        .unwrap_or(48_000);

    let core = ctx
        .connect(
            &args.remote,
            Box::new(move |why: &str| {
                log::info(&format!("{why}; unloading the module"));
                module.schedule_destroy();
            }),
        )
        .map_err(InitError::PipeWire)?;

    let state = Rc::new(RefCell::new(State {
        module_id: module.id(),
        args: args.clone(),
        data_loop,
        graph_rate,
        core: Some(core),
        nodes: Vec::new(),
        events: None,
        frontend: None,
        stats_timer: None,
        panics_reported: 0,
    }));

    let weak: Weak<RefCell<State>> = Rc::downgrade(&state);
    let events = main_loop
        .add_event(Box::new(move || {
            if let Some(st) = weak.upgrade() {
                pump(&st);
            }
        }))
        .map_err(InitError::PipeWire)?;
    let waker = events.waker();
    state.borrow_mut().events = Some(events);

    let weak: Weak<RefCell<State>> = Rc::downgrade(&state);
    let timer = main_loop
        .add_timer(Box::new(move |_| {
            if let Some(st) = weak.upgrade() {
                pump(&st);
                check_stats(&st);
            }
        }))
        .map_err(InitError::PipeWire)?;
    timer.arm_periodic(STATS_PERIOD_NS);
    state.borrow_mut().stats_timer = Some(timer);

    let fe = frontend::start(&args, Arc::new(move || waker.wake()));
    state.borrow_mut().frontend = Some(fe);

    module.update_properties(&[
        ("module.author", AUTHOR),
        ("module.description", DESCRIPTION),
        ("module.usage", USAGE),
        ("module.version", env!("CARGO_PKG_VERSION")),
    ]);
    log::info(&format!(
        "loaded (module {}): driver {}, latency {}, prefix {}{}",
        module.id().map_or_else(|| "?".into(), |i| i.to_string()),
        args.driver,
        args.latency,
        args.prefix,
        if args.test_world.is_some() {
            ", test world"
        } else {
            ""
        }
    ));
    ffi::attach(module, Box::new(Module { state }));
    Ok(())
}

/// Take and handle what the frontend has (main thread).
fn pump(st: &Rc<RefCell<State>>) {
    let now = ffi::monotonic_ns();
    let events = match st.borrow_mut().frontend.as_mut() {
        Some(fe) => fe.pump(now),
        None => return,
    };
    for ev in events {
        handle_event(st, ev);
    }
}

fn handle_event(st: &Rc<RefCell<State>>, ev: FrontendEvent) {
    match ev {
        FrontendEvent::CardConnected { card, ports } => card_connected(st, &card, ports),
        FrontendEvent::CardDisconnected { dev_id, reason } => {
            log::info(&format!(
                "card {dev_id} disconnected ({reason}); its nodes wait for the backend"
            ));
            for e in st.borrow().nodes.iter().filter(|e| e.node.card == dev_id) {
                e.node.set_active(false);
            }
        }
        FrontendEvent::CardRemoved { dev_id } => {
            log::info(&format!("card {dev_id} removed"));
            remove_nodes(st, |e| e.node.card == dev_id);
        }
        FrontendEvent::Problem { message } => log::warn(&message),
        FrontendEvent::Info { message } => log::info(&message),
    }
}

/// A card connected: existing nodes of the same streams get the new ports, new streams get new
/// nodes, nodes whose stream is gone (or changed its capabilities) are removed.
fn card_connected(st: &Rc<RefCell<State>>, card: &CardInfo, ports: Vec<Box<dyn PcmPort>>) {
    let prefix = st.borrow().args.prefix.clone();
    let mut old: Vec<NodeEntry> = {
        let mut s = st.borrow_mut();
        let (old, keep) = core::mem::take(&mut s.nodes)
            .into_iter()
            .partition(|e| e.node.card == card.dev_id);
        s.nodes = keep;
        old
    };
    let mut kept: Vec<NodeEntry> = Vec::new();
    let mut fresh: Vec<Box<dyn PcmPort>> = Vec::new();
    for port in ports {
        let i = port.info();
        let name = naming::node_name(&prefix, card.dev_id, i.device, i.kind, i.index);
        let Some(pos) = old.iter().position(|e| e.node.name() == name) else {
            fresh.push(port);
            continue;
        };
        let e = old.swap_remove(pos);
        match e.node.replace_port(port) {
            Ok(()) => {
                e.node.set_active(true);
                log::info(&format!("{name}: reconnected to the backend"));
                kept.push(e);
            }
            Err(port) => {
                log::info(&format!(
                    "{name}: the stream's capabilities changed; recreating the node"
                ));
                drop(e);
                fresh.push(port);
            }
        }
    }
    for e in old {
        log::info(&format!(
            "{}: removed (no such stream any more)",
            e.node.name()
        ));
        drop(e);
    }
    let mut s = st.borrow_mut();
    let s = &mut *s;
    s.nodes.extend(kept);
    if fresh.is_empty() {
        return;
    }
    let Some(core) = s.core.as_ref().filter(|c| c.is_alive()) else {
        log::warn("card connected, but the core connection is gone");
        return;
    };
    for port in fresh {
        match Node::create(&s.args, core, s.data_loop, s.graph_rate, card, port) {
            Ok(node) => {
                log::info(&format!("{}: created", node.name()));
                s.nodes.push(NodeEntry::new(node));
            }
            Err(e) => log::error(&format!("cannot create a node: {e}")),
        }
    }
}

/// Drop the nodes `which` selects (outside the state borrow: destroying a stream emits
/// callbacks).
fn remove_nodes(st: &Rc<RefCell<State>>, which: impl Fn(&NodeEntry) -> bool) {
    let gone: Vec<NodeEntry> = {
        let mut s = st.borrow_mut();
        let (gone, keep) = core::mem::take(&mut s.nodes).into_iter().partition(which);
        s.nodes = keep;
        gone
    };
    for e in gone {
        log::info(&format!("{}: removed", e.node.name()));
        drop(e);
    }
}

/// Periodic check of the counters (main thread): rate-limited xrun warnings.
fn check_stats(st: &Rc<RefCell<State>>) {
    let now = ffi::monotonic_ns();
    let mut s = st.borrow_mut();
    let panics = ffi::panics_caught();
    if panics > s.panics_reported {
        log::error(&format!(
            "{} internal errors were caught so far; please report a bug",
            panics
        ));
        s.panics_reported = panics;
    }
    for e in &mut s.nodes {
        e.node.sync_volume();
        e.node.follow_quantum();
        let stats = e.node.stats();
        if log::enabled_debug() {
            log::debug(&format!(
                "{}: port delay {} frames, {} process calls",
                e.node.name(),
                stats.port_delay.load(std::sync::atomic::Ordering::Relaxed),
                stats.process.load(std::sync::atomic::Ordering::Relaxed)
            ));
        }
        let under = stats.underruns.load(std::sync::atomic::Ordering::Relaxed);
        let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
        let (du, dd) = (
            under - e.last_underruns.min(under),
            dropped - e.last_dropped.min(dropped),
        );
        if du == 0 && dd == 0 {
            continue;
        }
        if let Some(suppressed) = e.limit.check(now, WARN_INTERVAL_NS) {
            log::warn(&format!(
                "{}: {du} underrun cycles and {dd} dropped frames in the last second \
                 (total {under} / {dropped}{})",
                e.node.name(),
                if suppressed > 0 {
                    format!("; {suppressed} reports suppressed")
                } else {
                    String::new()
                }
            ));
        }
        e.last_underruns = under;
        e.last_dropped = dropped;
    }
}

impl ModuleOwner for Module {
    fn destroyed(self: Box<Self>) {
        let module_id = self.state.borrow().module_id;
        // 1. No more periodic work.
        let timer = self.state.borrow_mut().stats_timer.take();
        drop(timer);
        // 2. Nodes: streams (with their timers and io sources) first, then their ports, which
        //    stop and close their streams toward the backend (bounded).
        let nodes = core::mem::take(&mut self.state.borrow_mut().nodes);
        drop(nodes);
        // 3. The frontend: every card is closed toward its backend (bounded) and its threads
        //    are joined, so nothing signals the event source any more. Events not taken yet
        //    (ports of a card that just connected) go with it.
        let fe = self.state.borrow_mut().frontend.take();
        if let Some(mut fe) = fe {
            fe.shutdown();
            drop(fe);
        }
        // 4. The event source.
        let events = self.state.borrow_mut().events.take();
        drop(events);
        // 5. The core (disconnects unless the context already destroyed it).
        let core = self.state.borrow_mut().core.take();
        drop(core);
        log::info(&format!(
            "unloaded (module {})",
            module_id.map_or_else(|| "?".into(), |i| i.to_string())
        ));
    }
}
