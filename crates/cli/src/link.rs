//! The connection to the backend: the engine's [`Frontend`] (its control thread does the XenBus
//! handshake), its events turned into per-card state, and the errors a person can act on
//! ("the backend did not reach InitWait within 10 s; it is Initialising").

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xen_access::DomId;
use xen_snd_engine::{
    BusError, CardInfo, DisconnectReason, Frontend, FrontendEvent, FrontendOptions, QueryFallback,
    Services, Stream, StreamId, XenbusState,
};

use crate::error::CliError;
use crate::sys::{poll_readable, EventFd, Signals};

/// A connected card, handed over by the engine.
#[derive(Debug)]
pub struct Connected {
    /// Names, devices, warnings, unusable streams.
    pub info: CardInfo,
    /// The usable streams (the owner drives them).
    pub streams: Vec<Stream>,
    /// Streams that offer their xenstore configuration because HW_PARAM_QUERY did not help.
    pub fallbacks: Vec<(StreamId, QueryFallback)>,
    /// The frontend state when it was handed over.
    pub frontend_state: XenbusState,
}

#[derive(Debug, Default)]
struct Track {
    fe: Option<XenbusState>,
    be: Option<XenbusState>,
    backend: Option<(String, DomId)>,
    error: Option<CliError>,
    fallbacks: Vec<(StreamId, QueryFallback)>,
    connected: Option<Connected>,
    was_connected: bool,
    broken: Option<CliError>,
    /// A disconnect since the card connected that the engine recovers from by itself (only
    /// with reconnecting on).
    disconnected: Option<DisconnectReason>,
}

/// The running frontend and what it reported.
pub struct Link {
    frontend: Frontend,
    notify: Arc<EventFd>,
    cards: BTreeMap<u32, Track>,
    fe_base: String,
    reconnect: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("cards", &self.cards.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn bus_error(e: &BusError) -> CliError {
    match e {
        BusError::Config { .. } | BusError::Missing { .. } | BusError::UnknownCard { .. } => {
            CliError::NoDevice(e.to_string())
        }
        BusError::Store { source, .. } if source.is_access() => {
            CliError::Permission(format!("{e}: this domain may not access it"))
        }
        _ => CliError::Failed(e.to_string()),
    }
}

/// Why a card disconnected, for messages: `the backend is closing (state 5)`.
pub fn reason_text(reason: DisconnectReason) -> String {
    match reason {
        DisconnectReason::BackendClosing => "the backend is closing (state 5)".into(),
        DisconnectReason::BackendState(s) => format!("the backend went to {s}"),
        DisconnectReason::Unresponsive => "the backend stopped answering".into(),
        DisconnectReason::Requested => "a reconnect was requested".into(),
        DisconnectReason::Removed => "the card was removed".into(),
        DisconnectReason::Shutdown => "the frontend shut down".into(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl Link {
    /// Starts the frontend for `cards` of the guest `domid`.
    pub fn start(services: Services, domid: DomId, cards: &[u32]) -> Result<Link, CliError> {
        let notify = Arc::new(
            EventFd::new().map_err(|e| CliError::Failed(format!("creating an eventfd: {e}")))?,
        );
        let waker_fd = Arc::clone(&notify);
        let options = FrontendOptions {
            cards: Some(cards.to_vec()),
            waker: Some(Arc::new(move || waker_fd.signal())),
            ..FrontendOptions::default()
        };
        let frontend = Frontend::start(services, options).map_err(|e| bus_error(&e))?;
        Ok(Link {
            frontend,
            notify,
            cards: cards.iter().map(|c| (*c, Track::default())).collect(),
            fe_base: format!("/local/domain/{domid}/device/vsnd"),
            reconnect: false,
        })
    }

    /// With `on`, a connected card that disconnects (its backend closed or restarted) is not an
    /// error: [`Link::take_disconnect`] reports it and [`Link::wait_reconnect`] waits for the
    /// engine to connect it again. Off (the default): [`Link::check`] fails on a disconnect.
    pub fn set_reconnect(&mut self, on: bool) {
        self.reconnect = on;
    }

    /// Whether disconnects are waited out (see [`Link::set_reconnect`]).
    pub fn reconnects(&self) -> bool {
        self.reconnect
    }

    /// Takes queued events, then the reason `card` disconnected since it connected, if it did
    /// (only with reconnecting on).
    pub fn take_disconnect(&mut self, card: u32) -> Option<DisconnectReason> {
        self.pump();
        self.cards
            .get_mut(&card)
            .and_then(|t| t.disconnected.take())
    }

    /// Waits until `card` is connected again after a disconnect, at most `timeout`. Errors on a
    /// signal (`Interrupted`), when the card fails or is removed, and on the timeout (with what
    /// the card still waits for).
    pub fn wait_reconnect(
        &mut self,
        card: u32,
        timeout: Duration,
        signals: &Signals,
    ) -> Result<Connected, CliError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump();
            if let Some(sig) = signals.received() {
                return Err(CliError::Interrupted(sig));
            }
            if let Some(t) = self.cards.get_mut(&card) {
                if let Some(c) = t.connected.take() {
                    t.disconnected = None;
                    return Ok(c);
                }
                if let Some(e) = t.broken.take().or_else(|| t.error.take()) {
                    return Err(e);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = match self.waiting(card, timeout) {
                    CliError::Timeout(m) => m,
                    other => other.to_string(),
                };
                return Err(CliError::Timeout(format!(
                    "{why} (the card disconnected and did not connect again)"
                )));
            }
            poll_readable(&[self.notify.raw(), signals.fd()], Some(left))
                .map_err(|e| CliError::Failed(format!("poll: {e}")))?;
        }
    }

    /// Readable when the engine reported something; poll it with the stream fds.
    pub fn fd(&self) -> RawFd {
        self.notify.raw()
    }

    /// Takes every queued event into the per-card state.
    pub fn pump(&mut self) {
        self.notify.drain();
        while let Some(ev) = self.frontend.try_event() {
            self.on_event(ev);
        }
    }

    fn track(&mut self, card: u32) -> &mut Track {
        self.cards.entry(card).or_default()
    }

    fn on_event(&mut self, ev: FrontendEvent) {
        match ev {
            FrontendEvent::CardFound {
                card,
                backend_path,
                backend_id,
            } => self.track(card).backend = Some((backend_path, backend_id)),
            FrontendEvent::StateChanged {
                card,
                frontend,
                backend,
            } => {
                let t = self.track(card);
                t.fe = Some(frontend);
                if backend.is_some() {
                    t.be = backend;
                }
            }
            FrontendEvent::CardConnected {
                card,
                info,
                streams,
            } => {
                let t = self.track(card);
                let fallbacks = core::mem::take(&mut t.fallbacks);
                t.was_connected = true;
                t.broken = None;
                t.disconnected = None;
                t.connected = Some(Connected {
                    info,
                    streams,
                    fallbacks,
                    frontend_state: t.fe.unwrap_or(XenbusState::Connected),
                });
            }
            FrontendEvent::CardDisconnected { card, reason } => {
                let reconnect = self.reconnect
                    && !matches!(
                        reason,
                        DisconnectReason::Removed | DisconnectReason::Shutdown
                    );
                let t = self.track(card);
                if t.was_connected && reconnect {
                    // Streams handed out earlier are revoked; new ones come with CardConnected.
                    t.connected = None;
                    t.disconnected = Some(reason);
                } else if t.was_connected {
                    t.broken = Some(match reason {
                        DisconnectReason::Unresponsive => CliError::Timeout(format!(
                            "card {card}: backend not answering: {}",
                            reason_text(reason)
                        )),
                        _ => CliError::Failed(format!(
                            "card {card} disconnected: {}",
                            reason_text(reason)
                        )),
                    });
                }
            }
            FrontendEvent::CardRemoved { card } => {
                self.track(card).broken = Some(CliError::NoDevice(format!(
                    "card {card} was removed from xenstore"
                )));
            }
            FrontendEvent::BackendUnresponsive { card, timeouts } => {
                self.track(card).broken = Some(CliError::Timeout(format!(
                    "card {card}: backend not answering: {timeouts} requests in a row got no \
                     response in time"
                )));
            }
            FrontendEvent::StreamFailed { .. } | FrontendEvent::Stopped => {}
            FrontendEvent::QueryFallback {
                card,
                stream,
                reason,
            } => self.track(card).fallbacks.push((stream, reason)),
            FrontendEvent::CardError { card, error } => {
                let t = self.track(card);
                if t.was_connected {
                    // Once connected, the engine carries on past a passing xenstore error (it
                    // ignores a failed state read); what ends a session is a disconnect.
                    eprintln!("xen-snd: note: {}", bus_error(&error));
                } else if t.error.is_none() && !matches!(error, BusError::ShutdownTimeout { .. }) {
                    t.error = Some(bus_error(&error));
                }
            }
            FrontendEvent::Error { error } => {
                for t in self.cards.values_mut() {
                    if t.error.is_none() {
                        t.error = Some(bus_error(&error));
                    }
                }
            }
        }
    }

    fn done(&self, card: u32) -> bool {
        self.cards
            .get(&card)
            .is_some_and(|t| t.connected.is_some() || t.error.is_some())
    }

    /// What a card still waits for, as the timeout error.
    fn waiting(&self, card: u32, waited: Duration) -> CliError {
        let t = self.cards.get(&card);
        let be = t.and_then(|t| t.be);
        let fe = t.and_then(|t| t.fe);
        let Some((path, id)) = t.and_then(|t| t.backend.clone()) else {
            return CliError::Timeout(format!(
                "card {card}: waited {} for {}/{card}/backend and backend-id (the toolstack has \
                 not finished creating the card)",
                secs(waited),
                self.fe_base
            ));
        };
        let be_text = be.map_or("unknown".to_owned(), |s| s.to_string());
        let goal = match (fe, be) {
            (Some(XenbusState::Initialised), Some(XenbusState::Connected)) => {
                "answer HW_PARAM_QUERY for every stream".to_owned()
            }
            (Some(XenbusState::Initialised), _) => format!(
                "reach {} after the frontend published its rings (it is {be_text})",
                XenbusState::Connected
            ),
            _ => format!("reach {} (it is {be_text})", XenbusState::InitWait),
        };
        CliError::Timeout(format!(
            "card {card}: backend not answering: waited {} for the backend (domain {id}, {path}) \
             to {goal}; is a vsnd backend running in domain {id}?",
            secs(waited)
        ))
    }

    /// Waits until every card of `cards` is connected or failed, or `timeout` passes. Errors
    /// only on a signal (`Interrupted`) or a failing poll; per-card outcomes are in the map.
    pub fn connect_all(
        &mut self,
        cards: &[u32],
        timeout: Duration,
        signals: &Signals,
    ) -> Result<BTreeMap<u32, Result<Connected, CliError>>, CliError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump();
            if let Some(sig) = signals.received() {
                return Err(CliError::Interrupted(sig));
            }
            if cards.iter().all(|c| self.done(*c)) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            poll_readable(&[self.notify.raw(), signals.fd()], Some(left))
                .map_err(|e| CliError::Failed(format!("poll: {e}")))?;
        }
        // Report the bound that was given (what was waited for is what matters).
        let waited = timeout;
        let mut out = BTreeMap::new();
        for card in cards {
            let outcome = match self.cards.get_mut(card) {
                Some(t) => match (t.connected.take(), t.error.take()) {
                    (Some(c), _) => Ok(c),
                    (None, Some(e)) => Err(e),
                    (None, None) => Err(self.waiting(*card, waited)),
                },
                None => Err(self.waiting(*card, waited)),
            };
            out.insert(*card, outcome);
        }
        Ok(out)
    }

    /// Takes queued events; an error if `card`'s connection broke since it connected.
    pub fn check(&mut self, card: u32) -> Result<(), CliError> {
        self.pump();
        match self.cards.get_mut(&card) {
            Some(t) => match (t.broken.take(), t.error.take()) {
                (Some(e), _) | (None, Some(e)) => Err(e),
                (None, None) => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Disconnects every card (frontend state 5, then 6) and stops the control thread.
    pub fn shutdown(mut self) {
        let _ = self.frontend.shutdown();
    }
}
