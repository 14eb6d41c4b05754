//! The module: argument checking, the core connection, the frontend, and node creation and
//! removal on the daemon's main loop.
//!
//! # Lifecycle
//!
//! `init` (main thread) connects a core, starts the frontend and ties the module state to the
//! module's `destroy` event. The frontend runs on its own thread(s) and posts
//! [`FrontendEvent`]s to a channel, then signals a main-loop event source; its callback drains the
//! channel and creates or removes nodes — always on the main thread.
//!
//! Teardown runs in the module's `destroy` event, for all three ways a module ends (daemon
//! SIGTERM, `pw-cli destroy <module-id>`, the hosting `pw-cli -m` exiting): stop the frontend
//! (join its threads, so nothing signals the event source any more), drop the stats timer, drop
//! the nodes (each destroys its stream, whose timer goes first, then stops its port), drop the
//! event source, then the core. When the context destroyed the core and its streams first
//! (daemon shutdown), their wrappers noticed it and only forget them.

use core::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;

use crate::args::ModuleArgs;
use crate::ffi::{
    self, Context, CoreConnection, DataLoop, EventSource, ModuleOwner, ModulePtr, TimerSource,
};
use crate::frontend::{self, Frontend};
use crate::log::{self, RateLimit};
use crate::node::Node;
use crate::port::FrontendEvent;

/// Module properties shown by `pw-cli info <module-id>`.
pub const AUTHOR: &str = "pipewire-xen-snd developers";
/// `module.description`.
pub const DESCRIPTION: &str =
    "Xen para-virtual sound (vsnd) frontend: one Audio/Sink or Audio/Source node per stream";
/// `module.usage`.
pub const USAGE: &str = "( xen.cards = all | [ <dev-id> ... ] ) \
( node.name.prefix = xen_snd ) ( node.latency = 1024/48000 ) ( xen.driver = true ) \
( xen.period-frames = 0 ) ( xen.buffer-frames = 0 ) ( xen.xenstore-path = /dev/xen/xenbus ) \
( priority.driver = 1000 ) ( priority.session = 1000 ) ( remote.name = internal ) \
( log.level = <0-5> ) ( xen.fake-card = false ) ( xen.fake-card.stats-dir = <dir> )";

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
    rx: Receiver<FrontendEvent>,
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

    let (tx, rx) = mpsc::channel::<FrontendEvent>();
    let state = Rc::new(RefCell::new(State {
        module_id: module.id(),
        args: args.clone(),
        data_loop,
        graph_rate,
        core: Some(core),
        nodes: Vec::new(),
        rx,
        events: None,
        frontend: None,
        stats_timer: None,
        panics_reported: 0,
    }));

    let weak: Weak<RefCell<State>> = Rc::downgrade(&state);
    let events = main_loop
        .add_event(Box::new(move || {
            if let Some(st) = weak.upgrade() {
                drain_events(&st);
            }
        }))
        .map_err(InitError::PipeWire)?;
    let waker = events.waker();
    state.borrow_mut().events = Some(events);

    let weak: Weak<RefCell<State>> = Rc::downgrade(&state);
    let timer = main_loop
        .add_timer(Box::new(move |_| {
            if let Some(st) = weak.upgrade() {
                check_stats(&st);
            }
        }))
        .map_err(InitError::PipeWire)?;
    timer.arm_periodic(STATS_PERIOD_NS);
    state.borrow_mut().stats_timer = Some(timer);

    match frontend::start(&args, tx, Arc::new(move || waker.wake())) {
        Ok(fe) => state.borrow_mut().frontend = Some(fe),
        Err(msg) => log::warn(&msg),
    }

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
        if args.fake_card { ", fake card" } else { "" }
    ));
    ffi::attach(module, Box::new(Module { state }));
    Ok(())
}

/// Handle everything the frontend posted (main thread).
fn drain_events(st: &Rc<RefCell<State>>) {
    loop {
        let ev = match st.borrow().rx.try_recv() {
            Ok(ev) => ev,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
        };
        handle_event(st, ev);
    }
}

fn handle_event(st: &Rc<RefCell<State>>, ev: FrontendEvent) {
    match ev {
        FrontendEvent::CardConnected { card, ports } => {
            remove_card(st, card.dev_id);
            let mut s = st.borrow_mut();
            let s = &mut *s;
            let Some(core) = s.core.as_ref().filter(|c| c.is_alive()) else {
                log::warn("card connected, but the core connection is gone");
                return;
            };
            for port in ports {
                match Node::create(&s.args, core, s.data_loop, s.graph_rate, &card, port) {
                    Ok(node) => {
                        log::info(&format!("{}: created", node.name()));
                        s.nodes.push(NodeEntry {
                            node,
                            last_underruns: 0,
                            last_dropped: 0,
                            limit: RateLimit::default(),
                        });
                    }
                    Err(e) => log::error(&format!("cannot create a node: {e}")),
                }
            }
        }
        FrontendEvent::CardDisconnected { dev_id, reason } => {
            log::info(&format!("card {dev_id} disconnected: {reason}"));
            remove_card(st, dev_id);
        }
        FrontendEvent::CardRemoved { dev_id } => {
            log::info(&format!("card {dev_id} removed"));
            remove_card(st, dev_id);
        }
        FrontendEvent::Problem { message } => log::warn(&message),
        FrontendEvent::Info { message } => log::info(&message),
    }
}

/// Drop the nodes of card `dev_id` (outside the state borrow: destroying a stream emits
/// callbacks).
fn remove_card(st: &Rc<RefCell<State>>, dev_id: u32) {
    let gone: Vec<NodeEntry> = {
        let mut s = st.borrow_mut();
        let (gone, keep) = core::mem::take(&mut s.nodes)
            .into_iter()
            .partition(|e| e.node.card == dev_id);
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
        let stats = e.node.stats();
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
        // 1. No more events: join the frontend's threads (they may hold the waker).
        let fe = self.state.borrow_mut().frontend.take();
        if let Some(mut fe) = fe {
            fe.shutdown();
        }
        // 2. No more periodic checks.
        let timer = self.state.borrow_mut().stats_timer.take();
        drop(timer);
        // 3. Nodes: streams (and their timers) first, then their ports.
        let nodes = core::mem::take(&mut self.state.borrow_mut().nodes);
        drop(nodes);
        // 4. The event source, and ports still waiting in the channel.
        let events = self.state.borrow_mut().events.take();
        drop(events);
        {
            let s = self.state.borrow();
            while let Ok(ev) = s.rx.try_recv() {
                drop(ev);
            }
        }
        // 5. The core (disconnects unless the context already destroyed it).
        let core = self.state.borrow_mut().core.take();
        drop(core);
        log::info(&format!(
            "unloaded (module {})",
            module_id.map_or_else(|| "?".into(), |i| i.to_string())
        ));
    }
}
