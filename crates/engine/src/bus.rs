//! The XenBus control plane: a control thread that finds the vsnd cards of this domain and runs
//! the frontend state machine of sndif.md §2.7 for each.
//!
//! ```text
//! discover:   read <fe>/backend, <fe>/backend-id; watch <be>/state
//!             FE state != 1           → write 1
//!             FE state == 1, BE == 4  → write 6, then 1   (force a change: libxenbe dedupes)
//! BE 2 (level, while waiting):  tear down anything old; parse the config; per stream share a
//!             ring page and an event page, bind two unbound ports, share the PCM buffer;
//!             write the 4 keys of every stream + version="2" in ONE transaction; write 3
//! BE → 4 with FE 3:  HW_PARAM_QUERY per usable stream (blocking, bounded), write 4, hand the
//!             streams to the owner (CardConnected)
//! BE → 5:     revoke the streams (no more requests), CardDisconnected(BackendClosing)
//! BE → 6/0/1/2 (after a connection):  revoke + drop, write 1, wait for BE 2 again
//! N consecutive request timeouts:  BackendUnresponsive, revoke, wait for a BE state change
//! card directory removed:  revoke + drop, CardRemoved
//! shutdown:   write 5, wait ≤ 1 s for BE 2 or 6 (watch), tear down, write 6
//! ```
//!
//! The frontend never writes 3 before it saw the backend in InitWait, and the backend's state
//! transitions are acted on when they *change* (like libxenbe), except "BE is in InitWait while
//! we wait for it", which is acted on whenever it holds.
//!
//! The thread sleeps in poll(2) on the xenstore watch fd and an eventfd (commands, stream
//! reports); it never sleeps for a fixed time. Everything it does is reported to the owner as a
//! [`FrontendEvent`] on a channel, optionally followed by a call of a waker callback (so a
//! PipeWire main loop can be signalled).
//!
//! Recovery from a protocol violation on a stream is a reconnect of its card
//! ([`Frontend::reconnect`]): the streams are revoked, the frontend goes back to Initialising
//! (forcing a state change the backend notices), and the card connects again with fresh pages and
//! ports.

use core::fmt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sndif::config::{keys, parse_card, ConfigError, ConfigWarning};
use sndif::wire::HwParam;
use xen_access::{DomId, StoreConfigSource, StoreOps, XenStore};

use crate::error::{BusError, StreamError, StreamId};
use crate::stream::{intersect_hw, query_space, Link, Stream, StreamOptions, StreamSpec};
use crate::sys::{self, EventFd};
use crate::xenbus::XenbusState;
use crate::Services;

/// A callback run after every event is queued (e.g. to signal a PipeWire loop). It runs on the
/// control thread and must not block.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Options of [`Frontend::start`].
#[derive(Clone)]
pub struct FrontendOptions {
    /// Cards (`<dev-id>`s) to drive; `None` = all.
    pub cards: Option<Vec<u32>>,
    /// Tunables of every stream.
    pub stream: StreamOptions,
    /// Consecutive request timeouts on a card after which the backend is declared unresponsive
    /// (default 3).
    pub unresponsive_after: u32,
    /// How long shutdown waits for the backend to reach InitWait or Closed (default 1 s).
    pub shutdown_timeout: Duration,
    /// Called after every event.
    pub waker: Option<Waker>,
}

impl Default for FrontendOptions {
    fn default() -> Self {
        FrontendOptions {
            cards: None,
            stream: StreamOptions::default(),
            unresponsive_after: 3,
            shutdown_timeout: Duration::from_secs(1),
            waker: None,
        }
    }
}

impl fmt::Debug for FrontendOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrontendOptions")
            .field("cards", &self.cards)
            .field("stream", &self.stream)
            .field("unresponsive_after", &self.unresponsive_after)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("waker", &self.waker.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// What a connected card is.
#[derive(Debug, Clone)]
pub struct CardInfo {
    /// The card's `<dev-id>`.
    pub card: u32,
    /// The frontend directory.
    pub frontend_path: String,
    /// The backend directory.
    pub backend_path: String,
    /// The backend's domain.
    pub backend_id: DomId,
    /// `short-name`.
    pub short_name: Option<String>,
    /// `long-name`.
    pub long_name: Option<String>,
    /// PCM devices: index and `name`.
    pub devices: Vec<(u32, Option<String>)>,
    /// Configuration values dropped, replaced or ignored.
    pub warnings: Vec<ConfigWarning>,
    /// Streams whose configuration is unusable (bound for the backend, not offered).
    pub unusable: Vec<(StreamId, ConfigError)>,
}

/// Why a card's streams were revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The backend went to Closing.
    BackendClosing,
    /// The backend went to this state (Closed, Unknown, Initialising, InitWait).
    BackendState(XenbusState),
    /// Too many consecutive request timeouts.
    Unresponsive,
    /// [`Frontend::reconnect`].
    Requested,
    /// The card's directory disappeared.
    Removed,
    /// [`Frontend::shutdown`].
    Shutdown,
}

/// Why a stream offers its xenstore configuration unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryFallback {
    /// HW_PARAM_QUERY failed (status, timeout, ...).
    Failed(StreamError),
    /// The answer has nothing in common with the xenstore configuration.
    Empty(HwParam),
}

/// What the control thread reports.
#[derive(Debug)]
pub enum FrontendEvent {
    /// A card directory with a backend was found.
    CardFound {
        /// The card.
        card: u32,
        /// The backend directory.
        backend_path: String,
        /// The backend domain.
        backend_id: DomId,
    },
    /// The frontend wrote a state or the backend's state changed.
    StateChanged {
        /// The card.
        card: u32,
        /// The frontend state (as last written).
        frontend: XenbusState,
        /// The backend state (as last read).
        backend: Option<XenbusState>,
    },
    /// The card is connected; the owner now drives its usable streams.
    CardConnected {
        /// The card.
        card: u32,
        /// Names, devices, warnings, unusable streams.
        info: CardInfo,
        /// The usable streams, in card-global order.
        streams: Vec<Stream>,
    },
    /// The card's streams were revoked: the owner must drop them (their pages stay valid
    /// until then).
    CardDisconnected {
        /// The card.
        card: u32,
        /// Why.
        reason: DisconnectReason,
    },
    /// The card's directory was removed.
    CardRemoved {
        /// The card.
        card: u32,
    },
    /// Requests on the card timed out repeatedly; its streams were revoked and the engine waits
    /// for the backend's state to change (a restarted backend reconnects by itself).
    BackendUnresponsive {
        /// The card.
        card: u32,
        /// Consecutive timeouts seen.
        timeouts: u32,
    },
    /// A stream failed (see its [`Stream::state`]); [`Frontend::reconnect`] recovers.
    StreamFailed {
        /// The card.
        card: u32,
        /// The stream.
        stream: StreamId,
    },
    /// A stream offers its xenstore configuration because HW_PARAM_QUERY did not help.
    QueryFallback {
        /// The card.
        card: u32,
        /// The stream.
        stream: StreamId,
        /// Why.
        reason: QueryFallback,
    },
    /// Something failed for a card; it waits for a backend state change or a reconnect.
    CardError {
        /// The card.
        card: u32,
        /// What failed.
        error: BusError,
    },
    /// Something failed that is not about one card.
    Error {
        /// What failed.
        error: BusError,
    },
    /// The control thread has finished (after shutdown).
    Stopped,
}

enum Command {
    Reconnect(u32),
    Shutdown,
}

/// The running frontend: the control thread and the channel of its events.
pub struct Frontend {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<FrontendEvent>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frontend")
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

const WATCH_CARDS: &str = "xen-snd-engine:cards";

fn be_token(card: u32) -> String {
    format!("xen-snd-engine:be-state:{card}")
}

impl Frontend {
    /// Starts the control thread. Fails if the own domain id cannot be read or the card
    /// directory cannot be watched; everything later is reported as events.
    pub fn start(services: Services, options: FrontendOptions) -> Result<Frontend, BusError> {
        let domid = services
            .store
            .own_domid()
            .map_err(|source| BusError::Domid { source })?;
        let home = format!("/local/domain/{domid}");
        let base = format!("{home}/device/vsnd");
        services
            .store
            .watch(&base, WATCH_CARDS)
            .map_err(|source| BusError::Watch { source })?;
        let wake = Arc::new(EventFd::new().map_err(|source| BusError::Os {
            op: "eventfd",
            source,
        })?);
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let bus = Bus {
            services,
            options,
            base,
            cards: BTreeMap::new(),
            events: ev_tx,
            commands: cmd_rx,
            wake: Arc::clone(&wake),
        };
        let thread = std::thread::Builder::new()
            .name("xen-snd-bus".into())
            .spawn(move || bus.run())
            .map_err(|source| BusError::Os {
                op: "spawning the control thread",
                source,
            })?;
        Ok(Frontend {
            commands: cmd_tx,
            events: ev_rx,
            wake,
            thread: Some(thread),
        })
    }

    /// The next event, without waiting.
    pub fn try_event(&self) -> Option<FrontendEvent> {
        self.events.try_recv().ok()
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<FrontendEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The event channel itself.
    pub fn events(&self) -> &mpsc::Receiver<FrontendEvent> {
        &self.events
    }

    /// Tears the card's connection down (revoking its streams) and connects it again with fresh
    /// pages and ports; the recovery after a protocol error. Progress is reported as events.
    pub fn reconnect(&self, card: u32) -> Result<(), BusError> {
        self.commands
            .send(Command::Reconnect(card))
            .map_err(|_| BusError::Gone)?;
        self.wake.signal();
        Ok(())
    }

    /// Disconnects every card (state 5, wait ≤ 1 s for the backend, teardown, state 6) and
    /// stops the control thread. The events it produced (ending with
    /// [`FrontendEvent::Stopped`]) stay readable. Dropping the frontend does the same.
    pub fn shutdown(&mut self) -> Result<(), BusError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let _ = self.commands.send(Command::Shutdown);
        self.wake.signal();
        thread.join().map_err(|_| BusError::Gone)
    }
}

impl Drop for Frontend {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `backend`/`backend-id`.
    Discovering,
    /// FE Initialising, waiting for BE InitWait.
    WaitInitWait,
    /// FE Initialised, waiting for BE Connected.
    Published,
    /// FE Connected, streams with the owner.
    Connected,
    /// BE Closing seen; streams revoked.
    Closing,
    /// Too many timeouts; streams revoked.
    Unresponsive,
    /// Setup failed; waiting for a BE state change or a reconnect.
    Failed,
}

struct Card {
    id: u32,
    fe: String,
    be: String,
    be_id: DomId,
    fe_state: XenbusState,
    last_be: Option<XenbusState>,
    phase: Phase,
    link: Option<Arc<Link>>,
    /// Streams the control thread holds: all of them until Connected, then the unusable ones.
    held: Vec<Stream>,
    ids: Vec<StreamId>,
    info: Option<CardInfo>,
    reported_failed: u64,
    /// The owner holds streams of the current connection that were not revoked yet.
    handed_over: bool,
    watching: bool,
}

impl Card {
    fn new(id: u32, base: &str) -> Self {
        Card {
            id,
            fe: format!("{base}/{id}"),
            be: String::new(),
            be_id: 0,
            fe_state: XenbusState::Unknown,
            last_be: None,
            phase: Phase::Discovering,
            link: None,
            held: Vec::new(),
            ids: Vec::new(),
            info: None,
            reported_failed: 0,
            handed_over: false,
            watching: false,
        }
    }
}

struct Bus {
    services: Services,
    options: FrontendOptions,
    base: String,
    cards: BTreeMap<u32, Card>,
    events: mpsc::Sender<FrontendEvent>,
    commands: mpsc::Receiver<Command>,
    wake: Arc<EventFd>,
}

impl Bus {
    fn emit(&self, ev: FrontendEvent) {
        // A dropped receiver only means nobody listens any more.
        let _ = self.events.send(ev);
        if let Some(w) = &self.options.waker {
            w();
        }
    }

    fn card_error(&self, card: u32, error: BusError) {
        self.emit(FrontendEvent::CardError { card, error });
    }

    fn store(&self) -> &dyn XenStore {
        &*self.services.store
    }

    fn run(mut self) {
        loop {
            if self.handle_commands() {
                break;
            }
            while self.store().take_watch_event().is_some() {}
            self.reconcile();
            self.check_links();
            let fds = [self.store().watch_fd(), self.wake.raw()];
            let mut ready = [false; 2];
            if let Err(source) = sys::poll_readable(&fds, &mut ready, None) {
                self.emit(FrontendEvent::Error {
                    error: BusError::Os { op: "poll", source },
                });
                break;
            }
            self.wake.drain();
        }
        self.shutdown_sequence();
        let _ = self.store().unwatch(&self.base, WATCH_CARDS);
        self.emit(FrontendEvent::Stopped);
    }

    /// Handles queued commands; returns true on shutdown.
    fn handle_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => return true,
                Ok(Command::Reconnect(id)) => self.reconnect(id),
                Err(mpsc::TryRecvError::Empty) => return false,
            }
        }
    }

    fn wanted(&self, id: u32) -> bool {
        self.options
            .cards
            .as_ref()
            .map_or(true, |list| list.contains(&id))
    }

    fn reconcile(&mut self) {
        let names = match self.store().directory(&self.base) {
            Ok(n) => n,
            Err(source) => {
                self.emit(FrontendEvent::Error {
                    error: BusError::List { source },
                });
                return;
            }
        };
        let present: BTreeSet<u32> = names
            .iter()
            .filter_map(|n| n.parse::<u32>().ok())
            .filter(|id| self.wanted(*id))
            .collect();
        let gone: Vec<u32> = self
            .cards
            .keys()
            .copied()
            .filter(|id| !present.contains(id))
            .collect();
        for id in gone {
            if let Some(mut card) = self.cards.remove(&id) {
                self.remove_card(&mut card);
            }
        }
        for id in present {
            let mut card = self
                .cards
                .remove(&id)
                .unwrap_or_else(|| Card::new(id, &self.base));
            self.step(&mut card);
            self.cards.insert(id, card);
        }
    }

    fn read(&self, card: u32, path: &str) -> Result<Option<String>, BusError> {
        self.store()
            .read(path)
            .map_err(|source| BusError::Store { card, source })
    }

    /// The backend state as the state machine sees it: `None` when it cannot be known right now
    /// (the read failed, or the value is not a state), which is "no change" — a passing xenstore
    /// error must not tear down a working connection. An absent node is `Unknown`.
    fn observe_state(&self, card: u32, path: &str) -> Option<XenbusState> {
        match self.store().read(path) {
            Ok(Some(v)) => {
                let state = XenbusState::parse(&v);
                if state.is_none() {
                    self.card_error(
                        card,
                        BusError::InvalidValue {
                            card,
                            path: path.to_owned(),
                            value: v,
                            reason: "not a xenbus state (0-8); ignored",
                        },
                    );
                }
                state
            }
            Ok(None) => Some(XenbusState::Unknown),
            Err(source) => {
                self.card_error(card, BusError::Store { card, source });
                None
            }
        }
    }

    fn read_state(&self, card: u32, path: &str) -> XenbusState {
        match self.store().read(path) {
            Ok(Some(v)) => XenbusState::parse(&v).unwrap_or(XenbusState::Unknown),
            Ok(None) => XenbusState::Unknown,
            Err(source) => {
                self.card_error(card, BusError::Store { card, source });
                XenbusState::Unknown
            }
        }
    }

    fn set_fe(&self, card: &mut Card, state: XenbusState) -> Result<(), BusError> {
        let path = format!("{}/state", card.fe);
        self.store()
            .write(&path, state.as_str())
            .map_err(|source| BusError::Store {
                card: card.id,
                source,
            })?;
        card.fe_state = state;
        self.emit(FrontendEvent::StateChanged {
            card: card.id,
            frontend: state,
            backend: card.last_be,
        });
        Ok(())
    }

    /// Writes 1 to the frontend state, forcing a change libxenbe notices (6 first when the
    /// frontend already shows 1 and the backend 4).
    fn force_initialising(&self, card: &mut Card) -> Result<(), BusError> {
        let fe = self.read_state(card.id, &format!("{}/state", card.fe));
        let be = self.read_state(card.id, &format!("{}/state", card.be));
        if fe == XenbusState::Initialising && be == XenbusState::Connected {
            self.set_fe(card, XenbusState::Closed)?;
        }
        if fe != XenbusState::Initialising || be == XenbusState::Connected {
            self.set_fe(card, XenbusState::Initialising)?;
        } else {
            card.fe_state = XenbusState::Initialising;
        }
        Ok(())
    }

    fn discover(&mut self, card: &mut Card) -> Result<(), BusError> {
        let be_path = self.read(card.id, &format!("{}/backend", card.fe))?;
        let id_path = format!("{}/backend-id", card.fe);
        let be_id = self.read(card.id, &id_path)?;
        let (Some(be_path), Some(be_id)) = (be_path, be_id) else {
            // The toolstack has not finished writing the card; the watch fires again.
            return Ok(());
        };
        let be_path = be_path.trim().trim_end_matches('/').to_owned();
        if be_path.is_empty() {
            return Err(BusError::InvalidValue {
                card: card.id,
                path: format!("{}/backend", card.fe),
                value: be_path,
                reason: "empty backend path",
            });
        }
        let be_id_num = be_id
            .trim()
            .parse::<DomId>()
            .map_err(|_| BusError::InvalidValue {
                card: card.id,
                path: id_path,
                value: be_id.clone(),
                reason: "not a domain id",
            })?;
        card.be = be_path;
        card.be_id = be_id_num;
        if !card.watching {
            self.store()
                .watch(&format!("{}/state", card.be), &be_token(card.id))
                .map_err(|source| BusError::Store {
                    card: card.id,
                    source,
                })?;
            card.watching = true;
        }
        self.emit(FrontendEvent::CardFound {
            card: card.id,
            backend_path: card.be.clone(),
            backend_id: card.be_id,
        });
        self.force_initialising(card)?;
        card.phase = Phase::WaitInitWait;
        Ok(())
    }

    fn step(&mut self, card: &mut Card) {
        if card.phase == Phase::Discovering {
            if let Err(e) = self.discover(card) {
                self.card_error(card.id, e);
                card.phase = Phase::Failed;
            }
            if card.phase == Phase::Discovering {
                return;
            }
        }
        let Some(be) = self.observe_state(card.id, &format!("{}/state", card.be)) else {
            return;
        };
        let changed = card.last_be != Some(be);
        card.last_be = Some(be);
        if changed {
            self.emit(FrontendEvent::StateChanged {
                card: card.id,
                frontend: card.fe_state,
                backend: Some(be),
            });
        }
        use XenbusState as S;
        match card.phase {
            Phase::Discovering => {}
            Phase::WaitInitWait if be == S::InitWait => self.publish(card),
            Phase::Published if changed => match be {
                S::Connected => self.finish_connect(card),
                S::Closed | S::Unknown | S::Initialising | S::InitWait => {
                    self.restart(card, DisconnectReason::BackendState(be));
                }
                _ => {}
            },
            Phase::Connected | Phase::Unresponsive if changed => match be {
                S::Closing => {
                    self.revoke(card, DisconnectReason::BackendClosing);
                    card.phase = Phase::Closing;
                }
                S::Closed | S::Unknown | S::Initialising | S::InitWait => {
                    self.restart(card, DisconnectReason::BackendState(be));
                }
                _ => {}
            },
            Phase::Closing if changed => {
                if matches!(be, S::Closed | S::Unknown | S::Initialising | S::InitWait) {
                    self.restart(card, DisconnectReason::BackendState(be));
                }
            }
            Phase::Failed if changed => {
                self.restart(card, DisconnectReason::BackendState(be));
            }
            _ => {}
        }
    }

    /// Revokes and drops everything of the card's connection; reports a disconnect if the owner
    /// held streams.
    fn revoke(&self, card: &mut Card, reason: DisconnectReason) {
        if let Some(link) = card.link.take() {
            link.revoke();
        }
        card.held.clear();
        card.reported_failed = 0;
        if card.handed_over {
            card.handed_over = false;
            self.emit(FrontendEvent::CardDisconnected {
                card: card.id,
                reason,
            });
        }
    }

    /// Tears down and goes back to Initialising, waiting for InitWait.
    fn restart(&self, card: &mut Card, reason: DisconnectReason) {
        self.revoke(card, reason);
        match self.set_fe(card, XenbusState::Initialising) {
            Ok(()) => card.phase = Phase::WaitInitWait,
            Err(e) => {
                self.card_error(card.id, e);
                card.phase = Phase::Failed;
            }
        }
    }

    fn reconnect(&mut self, id: u32) {
        let Some(mut card) = self.cards.remove(&id) else {
            self.card_error(id, BusError::UnknownCard { card: id });
            return;
        };
        if card.phase != Phase::Discovering {
            self.revoke(&mut card, DisconnectReason::Requested);
            match self.force_initialising(&mut card) {
                Ok(()) => card.phase = Phase::WaitInitWait,
                Err(e) => {
                    self.card_error(id, e);
                    card.phase = Phase::Failed;
                }
            }
            // Act on the current backend state from scratch.
            card.last_be = None;
        }
        self.cards.insert(id, card);
    }

    fn remove_card(&self, card: &mut Card) {
        self.revoke(card, DisconnectReason::Removed);
        if card.watching {
            let _ = self
                .store()
                .unwatch(&format!("{}/state", card.be), &be_token(card.id));
            card.watching = false;
        }
        self.emit(FrontendEvent::CardRemoved { card: card.id });
    }

    /// BE InitWait: build every stream and publish the transport keys, then write 3.
    fn publish(&self, card: &mut Card) {
        self.revoke(card, DisconnectReason::Requested);
        match self.try_publish(card) {
            Ok(()) => card.phase = Phase::Published,
            Err(e) => {
                card.held.clear();
                card.link = None;
                self.card_error(card.id, e);
                card.phase = Phase::Failed;
            }
        }
    }

    fn try_publish(&self, card: &mut Card) -> Result<(), BusError> {
        let versions_path = format!("{}/versions", card.be);
        if let Some(v) = self.read(card.id, &versions_path)? {
            let offered = v
                .split([',', ';'])
                .any(|x| x.trim().parse::<u32>().ok() == Some(2));
            if !offered {
                return Err(BusError::Version {
                    card: card.id,
                    path: versions_path,
                    versions: v,
                });
            }
        }
        let source = StoreConfigSource::new(self.store(), &card.fe);
        let config = parse_card(&source).map_err(|source| BusError::Config {
            card: card.id,
            path: card.fe.clone(),
            source,
        })?;
        let link = Arc::new(Link::new(Some(Arc::clone(&self.wake))));
        let mut streams = Vec::new();
        let mut unusable = Vec::new();
        for (i, entry) in config.streams().enumerate() {
            let id = StreamId {
                card: card.id,
                device: entry.device,
                stream: entry.index,
                card_index: u32::try_from(i).unwrap_or(u32::MAX),
            };
            let device_name = config
                .devices
                .iter()
                .find(|d| d.index == entry.device)
                .and_then(|d| d.name.clone());
            let spec = StreamSpec {
                id,
                path: &entry.path,
                config: entry.config.as_ref().ok(),
                device_name,
            };
            let stream = Stream::create(
                &self.services,
                card.be_id,
                &spec,
                self.options.stream.clone(),
                Arc::clone(&link),
            )?;
            if let Err(e) = &entry.config {
                unusable.push((id, e.clone()));
            }
            streams.push(stream);
        }
        let fe = card.fe.clone();
        self.store()
            .transaction(&mut |t: &dyn StoreOps| {
                for s in &streams {
                    let id = s.id();
                    let dir = format!("{fe}/{}/{}", id.device, id.stream);
                    let k = s.transport_keys();
                    t.write(
                        &format!("{dir}/{}", keys::RING_REF),
                        &k.ring_ref.to_string(),
                    )?;
                    t.write(
                        &format!("{dir}/{}", keys::EVENT_CHANNEL),
                        &k.event_channel.to_string(),
                    )?;
                    t.write(
                        &format!("{dir}/{}", keys::EVT_RING_REF),
                        &k.evt_ring_ref.to_string(),
                    )?;
                    t.write(
                        &format!("{dir}/{}", keys::EVT_EVENT_CHANNEL),
                        &k.evt_event_channel.to_string(),
                    )?;
                }
                t.write(&format!("{fe}/version"), "2")
            })
            .map_err(|source| BusError::Store {
                card: card.id,
                source,
            })?;
        card.ids = streams.iter().map(Stream::id).collect();
        card.info = Some(CardInfo {
            card: card.id,
            frontend_path: card.fe.clone(),
            backend_path: card.be.clone(),
            backend_id: card.be_id,
            short_name: config.short_name.clone(),
            long_name: config.long_name.clone(),
            devices: config
                .devices
                .iter()
                .map(|d| (d.index, d.name.clone()))
                .collect(),
            warnings: config.warnings.clone(),
            unusable,
        });
        card.held = streams;
        card.link = Some(link);
        card.reported_failed = 0;
        self.set_fe(card, XenbusState::Initialised)
    }

    /// BE Connected with FE Initialised: query, write 4, hand the streams over.
    fn finish_connect(&self, card: &mut Card) {
        for stream in card.held.iter_mut().filter(|s| s.is_usable()) {
            let xs = stream.info().xenstore_hw.clone();
            match stream.hw_param_query(query_space(&xs)) {
                Ok(answer) => match intersect_hw(&xs, &answer) {
                    Some(hw) => stream.set_hw(hw, Some(answer)),
                    None => {
                        stream.set_hw(xs, Some(answer));
                        self.emit(FrontendEvent::QueryFallback {
                            card: card.id,
                            stream: stream.id(),
                            reason: QueryFallback::Empty(answer),
                        });
                    }
                },
                Err(e) => self.emit(FrontendEvent::QueryFallback {
                    card: card.id,
                    stream: stream.id(),
                    reason: QueryFallback::Failed(e),
                }),
            }
        }
        if let Err(e) = self.set_fe(card, XenbusState::Connected) {
            self.card_error(card.id, e);
            self.revoke(card, DisconnectReason::Requested);
            card.phase = Phase::Failed;
            return;
        }
        let (usable, unusable): (Vec<Stream>, Vec<Stream>) = core::mem::take(&mut card.held)
            .into_iter()
            .partition(Stream::is_usable);
        card.held = unusable;
        card.handed_over = true;
        card.phase = Phase::Connected;
        let info = card.info.clone().unwrap_or_else(|| CardInfo {
            card: card.id,
            frontend_path: card.fe.clone(),
            backend_path: card.be.clone(),
            backend_id: card.be_id,
            short_name: None,
            long_name: None,
            devices: Vec::new(),
            warnings: Vec::new(),
            unusable: Vec::new(),
        });
        self.emit(FrontendEvent::CardConnected {
            card: card.id,
            info,
            streams: usable,
        });
    }

    /// Acts on what the streams reported: failures and timeouts.
    fn check_links(&mut self) {
        let ids: Vec<u32> = self.cards.keys().copied().collect();
        for id in ids {
            let Some(mut card) = self.cards.remove(&id) else {
                continue;
            };
            if let Some(link) = card.link.clone() {
                let failed = link.failed_mask() & !card.reported_failed;
                if failed != 0 {
                    card.reported_failed |= failed;
                    for (bit, sid) in card.ids.iter().enumerate().take(64) {
                        if failed & (1u64 << bit) != 0 {
                            self.emit(FrontendEvent::StreamFailed {
                                card: id,
                                stream: *sid,
                            });
                        }
                    }
                }
                let timeouts = link.consecutive_timeouts();
                if card.phase == Phase::Connected
                    && timeouts >= self.options.unresponsive_after.max(1)
                {
                    self.emit(FrontendEvent::BackendUnresponsive { card: id, timeouts });
                    self.revoke(&mut card, DisconnectReason::Unresponsive);
                    card.phase = Phase::Unresponsive;
                }
            }
            self.cards.insert(id, card);
        }
    }

    fn shutdown_sequence(&mut self) {
        let ids: Vec<u32> = self
            .cards
            .iter()
            .filter(|(_, c)| c.phase != Phase::Discovering)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some(mut card) = self.cards.remove(id) {
                if let Err(e) = self.set_fe(&mut card, XenbusState::Closing) {
                    self.card_error(*id, e);
                }
                self.cards.insert(*id, card);
            }
        }
        let started = Instant::now();
        let deadline = started + self.options.shutdown_timeout;
        loop {
            while self.store().take_watch_event().is_some() {}
            let waiting: Vec<(u32, XenbusState)> = ids
                .iter()
                .filter_map(|id| self.cards.get(id))
                .map(|c| (c.id, self.read_state(c.id, &format!("{}/state", c.be))))
                .filter(|(_, s)| {
                    !matches!(
                        s,
                        XenbusState::InitWait | XenbusState::Closed | XenbusState::Unknown
                    )
                })
                .collect();
            if waiting.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                for (card, state) in waiting {
                    self.card_error(
                        card,
                        BusError::ShutdownTimeout {
                            card,
                            state,
                            waited_ms,
                        },
                    );
                }
                break;
            }
            if sys::wait_readable(self.store().watch_fd(), Some(left)).is_err() {
                break;
            }
        }
        let all: Vec<u32> = self.cards.keys().copied().collect();
        for id in all {
            let Some(mut card) = self.cards.remove(&id) else {
                continue;
            };
            self.revoke(&mut card, DisconnectReason::Shutdown);
            if card.phase != Phase::Discovering {
                if let Err(e) = self.set_fe(&mut card, XenbusState::Closed) {
                    self.card_error(id, e);
                }
            }
            if card.watching {
                let _ = self
                    .store()
                    .unwatch(&format!("{}/state", card.be), &be_token(id));
            }
        }
    }
}
