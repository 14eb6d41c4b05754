//! Where cards come from: the frontend engine (`xen-snd-engine`) on the Xen services of this
//! guest — or, as a test hook, of an in-process fake Xen with the reference backend
//! (`xen.test-world`, see [`crate::testhook`]).
//!
//! [`start`] never fails: without Xen, without a vsnd device or without permission the module
//! loads, logs one line that says what is missing and how to fix it, creates no nodes, and keeps
//! trying in the background (a connector thread that retries every [`RETRY_INTERVAL`], sleeping
//! on a channel in between) — so a guest whose devices appear later, or a card attached later
//! with `xl vsnd-attach` (the engine watches `device/vsnd`), gets its nodes without a restart.
//!
//! The engine runs its control thread and wakes the module's main loop after every event; the
//! main loop then calls [`Frontend::pump`], which turns engine events into [`FrontendEvent`]s
//! (streams into [`EnginePort`]s) and reconnects cards whose streams failed (at most once per
//! [`RECONNECT_INTERVAL`] per card).

use core::fmt;
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use xen_access::real::{OpenError, RealEventChannels, RealGrantShare, RealStore};
use xen_snd_engine as engine;

use crate::args::{CardFilter, ModuleArgs, XenstorePath};
use crate::engine_port::EnginePort;
use crate::port::{CardInfo, FrontendEvent, PcmPort};

/// Wakes the module's main loop (thread-safe).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// How often the connector tries again while Xen is missing or refused.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// A card whose stream failed is reconnected at most this often.
pub const RECONNECT_INTERVAL_NS: u64 = 2_000_000_000;
/// How long shutdown waits for each backend to acknowledge the frontend closing.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(500);

/// A running frontend.
pub trait Frontend: fmt::Debug {
    /// Main thread: what happened since the last call. Called after every wake-up and
    /// periodically (retries and delayed reconnects are due then).
    fn pump(&mut self, now_ns: u64) -> Vec<FrontendEvent>;

    /// Stop: close every card toward its backend (bounded, about [`SHUTDOWN_TIMEOUT`]) and join
    /// every thread. The waker is not used after this returns.
    fn shutdown(&mut self);
}

/// Start the frontend `args` ask for.
pub fn start(args: &ModuleArgs, wake: Wake) -> Box<dyn Frontend> {
    let options = engine_options(args, Arc::clone(&wake));
    #[cfg(feature = "test-hook")]
    if let Some(spec) = &args.test_world {
        return Box::new(crate::testhook::TestWorldFrontend::start(
            spec, options, wake,
        ));
    }
    Box::new(XenFrontend::start(args.xenstore.clone(), options, wake))
}

fn engine_options(args: &ModuleArgs, wake: Wake) -> engine::FrontendOptions {
    engine::FrontendOptions {
        cards: match &args.cards {
            CardFilter::All => None,
            CardFilter::Only(ids) => Some(ids.clone()),
        },
        shutdown_timeout: SHUTDOWN_TIMEOUT,
        waker: Some(wake),
        ..engine::FrontendOptions::default()
    }
}

/// The one line that says Xen is missing and what to do.
pub fn no_xen_message(xs: &XenstorePath) -> String {
    match xs {
        XenstorePath::Device(p) => format!(
            "no Xen: {} does not exist, so this is not a Xen guest (or its kernel lacks the \
             xenbus device); no sound nodes created. Run PipeWire in a Xen guest that has a vsnd \
             device, or point xen.xenstore-path (or XENSTORED_PATH) at a xenstored socket; \
             checking again every {} s",
            p.display(),
            RETRY_INTERVAL.as_secs()
        ),
        XenstorePath::Socket(p) => format!(
            "no Xen: the xenstored socket {} does not exist; no sound nodes created. Start \
             xenstored or fix xen.xenstore-path / XENSTORED_PATH; checking again every {} s",
            p.display(),
            RETRY_INTERVAL.as_secs()
        ),
    }
}

/// The line for a Xen device that exists but cannot be used.
pub fn open_error_message(e: &OpenError) -> String {
    let denied = match e {
        OpenError::Store {
            source: xen_store::Error::Io { source, .. },
            ..
        } => source.kind() == std::io::ErrorKind::PermissionDenied,
        other => {
            let t = other.to_string();
            t.contains("ermission denied") || t.contains("EACCES")
        }
    };
    let hint = if denied {
        ": give the PipeWire user access to /dev/xen/xenbus, /dev/xen/gntalloc and \
         /dev/xen/evtchn (a udev rule or group)"
    } else {
        ""
    };
    format!(
        "cannot use Xen: {e}{hint}; no sound nodes created; checking again every {} s",
        RETRY_INTERVAL.as_secs()
    )
}

/// The line for a guest without vsnd cards.
pub const NO_CARD_MESSAGE: &str = "this Xen guest has no vsnd card (device/vsnd is empty); no \
     sound nodes created. Add vsnd = [ ... ] to the guest's xl.cfg, or attach one with \
     xl vsnd-attach: it appears without a restart";

/// Open the Xen services of this guest.
fn open_services(xs: &XenstorePath) -> Result<engine::Services, String> {
    if !xs.path().exists() {
        return Err(no_xen_message(xs));
    }
    let store = match xs {
        XenstorePath::Device(p) => RealStore::open_device(p),
        XenstorePath::Socket(p) => xen_store::Xs::open_unix(p)
            .map(RealStore::from_xs)
            .map_err(|source| OpenError::Store { source, hint: "" }),
    }
    .map_err(|e| open_error_message(&e))?;
    let grants = RealGrantShare::open().map_err(|e| open_error_message(&e))?;
    let events = RealEventChannels::open().map_err(|e| open_error_message(&e))?;
    Ok(engine::Services {
        store: Arc::new(store),
        grants: Arc::new(grants),
        events: Arc::new(events),
    })
}

/// Whether this guest has a vsnd card (problems reading count as "yes": the engine reports
/// them).
fn has_cards(services: &engine::Services) -> bool {
    let Ok(domid) = services.store.own_domid() else {
        return true;
    };
    services
        .store
        .directory(&format!("/local/domain/{domid}/device/vsnd"))
        .map_or(true, |l| !l.is_empty())
}

/// What the connector thread reports.
#[derive(Debug)]
pub(crate) enum Connect {
    /// A problem (logged as a warning; the connector retries).
    Problem(String),
    /// Something worth an info line.
    Info(String),
    /// The engine runs.
    Engine(engine::Frontend),
}

/// A thread that opens the services (retrying every [`RETRY_INTERVAL`] until it works or is
/// told to stop) and starts the engine on them.
#[derive(Debug)]
pub(crate) struct Connector {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    rx: Receiver<Connect>,
}

impl Connector {
    pub(crate) fn start(
        mut open: impl FnMut() -> Result<engine::Services, String> + Send + 'static,
        options: engine::FrontendOptions,
        wake: Wake,
    ) -> Result<Connector, String> {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel::<Connect>();
        let thread = std::thread::Builder::new()
            .name("xen-snd-connect".into())
            .spawn(move || {
                let mut last: Option<String> = None;
                loop {
                    let problem = match open() {
                        Ok(services) => {
                            let cards = has_cards(&services);
                            match engine::Frontend::start(services, options.clone()) {
                                Ok(fe) => {
                                    if last.is_some() {
                                        let _ =
                                            tx.send(Connect::Info("Xen is usable now".to_owned()));
                                    }
                                    if !cards {
                                        let _ = tx.send(Connect::Problem(NO_CARD_MESSAGE.into()));
                                    }
                                    let _ = tx.send(Connect::Engine(fe));
                                    wake();
                                    return;
                                }
                                Err(e) => format!(
                                    "cannot start the Xen sound frontend: {e}; no sound nodes \
                                     created; checking again every {} s",
                                    RETRY_INTERVAL.as_secs()
                                ),
                            }
                        }
                        Err(p) => p,
                    };
                    if last.as_deref() != Some(problem.as_str()) {
                        let _ = tx.send(Connect::Problem(problem.clone()));
                        wake();
                        last = Some(problem);
                    }
                    match stop_rx.recv_timeout(RETRY_INTERVAL) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .map_err(|e| format!("cannot start the connector thread: {e}"))?;
        Ok(Connector {
            stop: Some(stop_tx),
            thread: Some(thread),
            rx,
        })
    }

    pub(crate) fn try_recv(&self) -> Option<Connect> {
        self.rx.try_recv().ok()
    }

    pub(crate) fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The engine and what the module needs around it: event translation and reconnects.
#[derive(Debug, Default)]
pub(crate) struct EngineDriver {
    engine: Option<engine::Frontend>,
    /// Per card: when it was last reconnected, and whether another reconnect is due.
    reconnects: BTreeMap<u32, (u64, bool)>,
}

impl EngineDriver {
    pub(crate) fn set_engine(&mut self, fe: engine::Frontend) {
        self.engine = Some(fe);
    }

    /// Translate the engine's events; do the reconnects that are due.
    pub(crate) fn pump(&mut self, now_ns: u64, out: &mut Vec<FrontendEvent>) {
        let Some(fe) = self.engine.as_ref() else {
            return;
        };
        while let Some(ev) = fe.try_event() {
            if let Some(card) = translate(ev, out) {
                let entry = self.reconnects.entry(card).or_insert((0, false));
                entry.1 = true;
            }
        }
        for (card, (last, due)) in self.reconnects.iter_mut() {
            if *due && (*last == 0 || now_ns.saturating_sub(*last) >= RECONNECT_INTERVAL_NS) {
                *due = false;
                *last = now_ns.max(1);
                if let Err(e) = fe.reconnect(*card) {
                    out.push(FrontendEvent::Problem {
                        message: format!("card {card}: cannot reconnect: {e}"),
                    });
                }
            }
        }
    }

    pub(crate) fn shutdown(&mut self) {
        if let Some(mut fe) = self.engine.take() {
            let _ = fe.shutdown();
            let mut sink = Vec::new();
            while let Some(ev) = fe.try_event() {
                if let engine::FrontendEvent::CardError { card, error } = ev {
                    sink.push(format!("card {card}: {error}"));
                }
            }
            for l in sink {
                crate::log::info(&format!("at shutdown: {l}"));
            }
        }
    }
}

fn card_info(card: u32, info: &engine::CardInfo) -> CardInfo {
    // /local/domain/<domid>/device/vsnd/<id>
    let domid = info
        .frontend_path
        .strip_prefix("/local/domain/")
        .and_then(|r| r.split('/').next())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    CardInfo {
        dev_id: card,
        domid,
        backend_id: u32::from(info.backend_id),
        path: info.frontend_path.clone(),
        short_name: info.short_name.clone(),
        long_name: info.long_name.clone(),
    }
}

/// One engine event into module events; returns the card to reconnect if a stream failed.
fn translate(ev: engine::FrontendEvent, out: &mut Vec<FrontendEvent>) -> Option<u32> {
    use engine::FrontendEvent as E;
    match ev {
        E::CardFound {
            card,
            backend_path,
            backend_id,
        } => out.push(FrontendEvent::Info {
            message: format!("card {card}: backend {backend_path} in domain {backend_id}"),
        }),
        E::StateChanged {
            card,
            frontend,
            backend,
        } => crate::log::debug(&format!(
            "card {card}: frontend {frontend:?}, backend {backend:?}"
        )),
        E::CardConnected {
            card,
            info,
            streams,
        } => {
            for w in &info.warnings {
                out.push(FrontendEvent::Info {
                    message: format!("card {card}: configuration: {w}"),
                });
            }
            for (id, e) in &info.unusable {
                out.push(FrontendEvent::Problem {
                    message: format!("{id}: unusable configuration, no node: {e}"),
                });
            }
            let ports: Vec<Box<dyn PcmPort>> = streams
                .into_iter()
                .map(|s| Box::new(EnginePort::new(s)) as Box<dyn PcmPort>)
                .collect();
            out.push(FrontendEvent::CardConnected {
                card: card_info(card, &info),
                ports,
            });
        }
        E::CardDisconnected { card, reason } => out.push(FrontendEvent::CardDisconnected {
            dev_id: card,
            reason: format!("{reason:?}"),
        }),
        E::CardRemoved { card } => out.push(FrontendEvent::CardRemoved { dev_id: card }),
        E::BackendUnresponsive { card, timeouts } => out.push(FrontendEvent::Problem {
            message: format!(
                "card {card}: the backend stopped answering ({timeouts} requests timed out); \
                 waiting for it to restart"
            ),
        }),
        E::StreamFailed { card, stream } => {
            out.push(FrontendEvent::Problem {
                message: format!("{stream}: the stream failed; reconnecting the card"),
            });
            return Some(card);
        }
        E::QueryFallback {
            card,
            stream,
            reason,
        } => out.push(FrontendEvent::Info {
            message: format!(
                "card {card}: {stream}: offering the xenstore configuration: {reason:?}"
            ),
        }),
        E::CardError { card, error } => out.push(FrontendEvent::Problem {
            message: format!("card {card}: {error}"),
        }),
        E::Error { error } => out.push(FrontendEvent::Problem {
            message: format!("{error}"),
        }),
        E::Stopped => {}
    }
    None
}

/// The frontend on this guest's Xen services.
#[derive(Debug)]
pub struct XenFrontend {
    connector: Option<Connector>,
    driver: EngineDriver,
    early: Vec<FrontendEvent>,
}

impl XenFrontend {
    fn start(xs: XenstorePath, options: engine::FrontendOptions, wake: Wake) -> XenFrontend {
        let mut early = Vec::new();
        let connector = match Connector::start(move || open_services(&xs), options, wake) {
            Ok(c) => Some(c),
            Err(message) => {
                early.push(FrontendEvent::Problem { message });
                None
            }
        };
        XenFrontend {
            connector,
            driver: EngineDriver::default(),
            early,
        }
    }
}

/// Take what the connector reported.
pub(crate) fn drain_connector(
    connector: &mut Option<Connector>,
    driver: &mut EngineDriver,
    out: &mut Vec<FrontendEvent>,
) {
    let Some(c) = connector.as_ref() else {
        return;
    };
    let mut done = false;
    while let Some(m) = c.try_recv() {
        match m {
            Connect::Problem(message) => out.push(FrontendEvent::Problem { message }),
            Connect::Info(message) => out.push(FrontendEvent::Info { message }),
            Connect::Engine(fe) => {
                driver.set_engine(fe);
                done = true;
            }
        }
    }
    if done {
        if let Some(mut c) = connector.take() {
            c.shutdown();
        }
    }
}

impl Frontend for XenFrontend {
    fn pump(&mut self, now_ns: u64) -> Vec<FrontendEvent> {
        let mut out = core::mem::take(&mut self.early);
        drain_connector(&mut self.connector, &mut self.driver, &mut out);
        self.driver.pump(now_ns, &mut out);
        out
    }

    fn shutdown(&mut self) {
        if let Some(mut c) = self.connector.take() {
            c.shutdown();
        }
        self.driver.shutdown();
    }
}

impl Drop for XenFrontend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    fn counting_wake() -> (Wake, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = Arc::clone(&n);
        (
            Arc::new(move || {
                n2.fetch_add(1, Ordering::SeqCst);
            }),
            n,
        )
    }

    fn pump_until(
        fe: &mut dyn Frontend,
        what: &str,
        f: impl Fn(&FrontendEvent) -> bool,
    ) -> Vec<FrontendEvent> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let evs = fe.pump(crate::ffi::monotonic_ns());
            let hit = evs.iter().any(&f);
            seen.extend(evs);
            if hit {
                return seen;
            }
            assert!(Instant::now() < deadline, "no {what} within 10 s: {seen:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn missing_xenstore_is_reported_once_and_retried_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-socket");
        let args =
            ModuleArgs::parse([("xen.xenstore-path", missing.to_str().unwrap())], None).unwrap();
        let (wake, woken) = counting_wake();
        let mut fe = start(&args, wake);
        let seen = pump_until(fe.as_mut(), "problem", |e| {
            matches!(e, FrontendEvent::Problem { .. })
        });
        let FrontendEvent::Problem { message } = &seen[0] else {
            panic!("{seen:?}")
        };
        assert!(message.contains("no Xen"), "{message}");
        assert!(message.contains("no-such-socket"), "{message}");
        assert!(message.contains("checking again"), "{message}");
        assert!(woken.load(Ordering::SeqCst) >= 1);
        // Stopping does not wait for the retry interval.
        let t = Instant::now();
        fe.shutdown();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(fe.pump(0).is_empty(), "nothing after shutdown");
        let dev = no_xen_message(&XenstorePath::Device("/dev/xen/xenbus".into()));
        assert!(dev.contains("/dev/xen/xenbus does not exist"), "{dev}");
        assert!(dev.contains("no sound nodes created"), "{dev}");
    }

    #[test]
    fn a_socket_that_is_not_xenstored_is_a_problem_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xs.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // Accept and close: every request fails instead of hanging.
        listener.set_nonblocking(true).unwrap();
        let args =
            ModuleArgs::parse([("xen.xenstore-path", path.to_str().unwrap())], None).unwrap();
        let (wake, _) = counting_wake();
        let mut fe = start(&args, wake);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let acceptor = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                if let Ok((c, _)) = listener.accept() {
                    drop(c);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let seen = pump_until(fe.as_mut(), "problem", |e| {
            matches!(e, FrontendEvent::Problem { .. })
        });
        fe.shutdown();
        stop.store(true, Ordering::SeqCst);
        acceptor.join().unwrap();
        assert!(
            seen.iter()
                .any(|e| matches!(e, FrontendEvent::Problem { message }
                if message.contains("no sound nodes created"))),
            "{seen:?}"
        );
    }

    #[test]
    fn card_info_takes_the_domain_from_the_path() {
        let info = engine::CardInfo {
            card: 3,
            frontend_path: "/local/domain/7/device/vsnd/3".into(),
            backend_path: "/local/domain/0/backend/vsnd/7/3".into(),
            backend_id: 0,
            short_name: Some("S".into()),
            long_name: None,
            devices: Vec::new(),
            warnings: Vec::new(),
            unusable: Vec::new(),
        };
        let c = card_info(3, &info);
        assert_eq!((c.dev_id, c.domid, c.backend_id), (3, 7, 0));
        assert_eq!(c.short_name.as_deref(), Some("S"));
    }
}
