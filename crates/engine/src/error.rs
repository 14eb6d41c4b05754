//! Errors, one type per layer: [`ProtocolError`] (what the backend wrote wrong), [`StreamError`]
//! (a stream operation failed; names card, device, stream and operation) and [`BusError`] (the
//! XenBus control plane failed; names the card and the xenstore path).

use core::fmt;

use sndif::config::ConfigError;
use sndif::event::EventError;
use sndif::ring::RingError;
use sndif::shm::ShmError;
use sndif::wire::Operation;
use xen_access::{EvtchnError, GrantError, StoreError};

use crate::xenbus::XenbusState;

/// Identity of one stream: card (`<dev-id>`), PCM device, stream index within the device, and
/// the card-global stream index (device 0's streams first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// The card's `<dev-id>` below `device/vsnd`.
    pub card: u32,
    /// PCM device index.
    pub device: u32,
    /// Stream index within the PCM device.
    pub stream: u32,
    /// Card-global stream index.
    pub card_index: u32,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "card {} stream {}/{}",
            self.card, self.device, self.stream
        )
    }
}

/// A stream operation, as the engine names it (triggers are distinct operations here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamOp {
    /// HW_PARAM_QUERY.
    HwParamQuery,
    /// OPEN.
    Open,
    /// CLOSE.
    Close,
    /// TRIGGER START.
    Start,
    /// TRIGGER PAUSE.
    Pause,
    /// TRIGGER RESUME.
    Resume,
    /// TRIGGER STOP.
    Stop,
    /// READ.
    Read,
    /// WRITE.
    Write,
    /// SET_VOLUME.
    SetVolume,
    /// GET_VOLUME.
    GetVolume,
    /// MUTE.
    Mute,
    /// UNMUTE.
    Unmute,
    /// Consuming responses and events ([`crate::Stream::service`]).
    Service,
}

impl StreamOp {
    /// Whether this is one of the volume operations (SET_VOLUME, GET_VOLUME, MUTE, UNMUTE),
    /// whose values travel in a scratch region of the shared buffer.
    pub fn is_volume(self) -> bool {
        matches!(
            self,
            StreamOp::SetVolume | StreamOp::GetVolume | StreamOp::Mute | StreamOp::Unmute
        )
    }
}

impl fmt::Display for StreamOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamOp::HwParamQuery => "HW_PARAM_QUERY",
            StreamOp::Open => "OPEN",
            StreamOp::Close => "CLOSE",
            StreamOp::Start => "TRIGGER START",
            StreamOp::Pause => "TRIGGER PAUSE",
            StreamOp::Resume => "TRIGGER RESUME",
            StreamOp::Stop => "TRIGGER STOP",
            StreamOp::Read => "READ",
            StreamOp::Write => "WRITE",
            StreamOp::SetVolume => "SET_VOLUME",
            StreamOp::GetVolume => "GET_VOLUME",
            StreamOp::Mute => "MUTE",
            StreamOp::Unmute => "UNMUTE",
            StreamOp::Service => "service",
        })
    }
}

/// Something the backend wrote that violates the protocol. Ends the stream it happened on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The request ring is inconsistent (e.g. `rsp_prod` claims more responses than requests
    /// are outstanding) or a response slot does not decode.
    #[error("request ring: {0}")]
    Ring(RingError),
    /// The event page is inconsistent (e.g. `in_prod` more than 63 ahead of `in_cons`).
    #[error("event page: {0}")]
    EventPage(EventError),
    /// A response whose id matches no request in flight.
    #[error("response id {id} ({operation}) matches no request in flight")]
    UnknownId {
        /// The response id.
        id: u16,
        /// The response's operation.
        operation: Operation,
    },
    /// A response whose operation differs from its request's.
    #[error("response id {id} carries operation {got}, but request {id} was {expected}")]
    WrongOperation {
        /// The id.
        id: u16,
        /// The request's operation.
        expected: Operation,
        /// The response's operation.
        got: Operation,
    },
    /// A response to a request that had already timed out.
    #[error("late response id {id} ({operation}) to a request that had already timed out")]
    LateResponse {
        /// The id.
        id: u16,
        /// The operation.
        operation: Operation,
    },
}

/// Why a stream operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The backend answered with a non-zero status (kept raw: not always a Xen errno).
    #[error("{stream}: {op}: backend answered status {status}")]
    Backend {
        /// The stream.
        stream: StreamId,
        /// The operation.
        op: StreamOp,
        /// The raw status.
        status: i32,
    },
    /// No response within the request timeout.
    #[error("{stream}: {op}: no response within {timeout_ms} ms")]
    Timeout {
        /// The stream.
        stream: StreamId,
        /// The operation.
        op: StreamOp,
        /// The timeout that elapsed.
        timeout_ms: u64,
    },
    /// The backend violated the protocol on this stream; the stream has failed.
    #[error("{stream}: protocol error: {error}")]
    Protocol {
        /// The stream.
        stream: StreamId,
        /// What was wrong.
        error: ProtocolError,
    },
    /// The card disconnected (or the backend was declared unresponsive): the stream issues no
    /// more requests and must be dropped.
    #[error("{stream}: {op}: the card disconnected; drop this stream")]
    Revoked {
        /// The stream.
        stream: StreamId,
        /// The operation refused.
        op: StreamOp,
    },
    /// The stream failed earlier (see [`crate::Stream::state`]); reconnect the card.
    #[error("{stream}: {op}: the stream has failed; reconnect the card")]
    Failed {
        /// The stream.
        stream: StreamId,
        /// The operation refused.
        op: StreamOp,
    },
    /// The operation is not allowed in the stream's current state.
    #[error("{stream}: {op}: not allowed while {state}")]
    InvalidState {
        /// The stream.
        stream: StreamId,
        /// The operation.
        op: StreamOp,
        /// The state name.
        state: &'static str,
    },
    /// Another control request is still pending.
    #[error("{stream}: {op}: {pending} is still pending")]
    Busy {
        /// The stream.
        stream: StreamId,
        /// The operation refused.
        op: StreamOp,
        /// The pending operation.
        pending: StreamOp,
    },
    /// Parameters the stream cannot use.
    #[error("{stream}: {op}: invalid parameters: {reason}")]
    InvalidParams {
        /// The stream.
        stream: StreamId,
        /// The operation.
        op: StreamOp,
        /// Why.
        reason: &'static str,
    },
    /// The stream's xenstore configuration is unusable; it can't be opened.
    #[error("{stream}: {op}: the stream's configuration is unusable")]
    Unusable {
        /// The stream.
        stream: StreamId,
        /// The operation.
        op: StreamOp,
    },
    /// No region of the shared buffer is free of audio for the operation's values right now
    /// (try again once the backend has consumed or produced more).
    #[error("{stream}: {op}: no room in the shared buffer for the values now")]
    NoRoom {
        /// The stream.
        stream: StreamId,
        /// The operation.
        op: StreamOp,
    },
    /// No free slot in the request ring.
    #[error("{stream}: {op}: request ring full")]
    RingFull {
        /// The stream.
        stream: StreamId,
        /// The operation.
        op: StreamOp,
    },
    /// An event-channel operation failed.
    #[error("{stream}: {op}: {source}")]
    Evtchn {
        /// The stream.
        stream: StreamId,
        /// The operation.
        op: StreamOp,
        /// The failure.
        source: EvtchnFailure,
    },
    /// A shared-memory access failed (an engine bug if it ever happens).
    #[error("{stream}: {op}: shared memory: {source}")]
    Shm {
        /// The stream.
        stream: StreamId,
        /// The operation.
        op: StreamOp,
        /// The failure.
        source: ShmError,
    },
    /// Waiting for the event-channel fd failed.
    #[error("{stream}: {op}: poll failed: errno {errno}")]
    Poll {
        /// The stream.
        stream: StreamId,
        /// The operation.
        op: StreamOp,
        /// The errno.
        errno: i32,
    },
}

/// An event-channel failure kept as text (so [`StreamError`] stays `Clone`/`Eq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvtchnFailure(pub String);

impl fmt::Display for EvtchnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvtchnFailure {}

impl From<EvtchnError> for EvtchnFailure {
    fn from(e: EvtchnError) -> Self {
        EvtchnFailure(e.to_string())
    }
}

impl StreamError {
    /// The stream the error is about.
    pub fn stream(&self) -> StreamId {
        match self {
            StreamError::Backend { stream, .. }
            | StreamError::Timeout { stream, .. }
            | StreamError::Protocol { stream, .. }
            | StreamError::Revoked { stream, .. }
            | StreamError::Failed { stream, .. }
            | StreamError::InvalidState { stream, .. }
            | StreamError::Busy { stream, .. }
            | StreamError::InvalidParams { stream, .. }
            | StreamError::Unusable { stream, .. }
            | StreamError::NoRoom { stream, .. }
            | StreamError::RingFull { stream, .. }
            | StreamError::Evtchn { stream, .. }
            | StreamError::Shm { stream, .. }
            | StreamError::Poll { stream, .. } => *stream,
        }
    }

    /// The protocol violation, if that is what this is.
    pub fn protocol(&self) -> Option<&ProtocolError> {
        match self {
            StreamError::Protocol { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A failure of the XenBus control plane for one card (or of the control thread).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A xenstore operation failed (the error names operation and path).
    #[error("card {card}: {source}")]
    Store {
        /// The card.
        card: u32,
        /// The failure.
        source: StoreError,
    },
    /// Reading the own domain id failed (at start).
    #[error("reading the own domain id: {source}")]
    Domid {
        /// The failure.
        source: StoreError,
    },
    /// Watching the card directory failed (at start).
    #[error("watching the vsnd card directory: {source}")]
    Watch {
        /// The failure.
        source: StoreError,
    },
    /// Listing the card directory failed.
    #[error("listing the vsnd card directory: {source}")]
    List {
        /// The failure.
        source: StoreError,
    },
    /// A xenstore node the card needs is absent.
    #[error("card {card}: {path}: missing")]
    Missing {
        /// The card.
        card: u32,
        /// The absolute path.
        path: String,
    },
    /// A xenstore node holds a value that cannot be used.
    #[error("card {card}: {path}: invalid value {value:?}: {reason}")]
    InvalidValue {
        /// The card.
        card: u32,
        /// The absolute path.
        path: String,
        /// The value read.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The backend advertises protocol versions that do not include 2.
    #[error("card {card}: {path} = {versions:?} does not offer protocol version 2")]
    Version {
        /// The card.
        card: u32,
        /// The absolute path of `versions`.
        path: String,
        /// Its value.
        versions: String,
    },
    /// The card's configuration cannot be used as a whole.
    #[error("card {card}: configuration below {path}: {source}")]
    Config {
        /// The card.
        card: u32,
        /// The card's frontend directory.
        path: String,
        /// The failure (names the node relative to `path`).
        source: ConfigError,
    },
    /// Sharing pages with the backend failed.
    #[error("card {card} stream {path}: sharing {what}: {source}")]
    Grant {
        /// The card.
        card: u32,
        /// The stream path relative to the card directory (`0/1`).
        path: String,
        /// What was being shared.
        what: &'static str,
        /// The failure.
        source: GrantError,
    },
    /// An event-channel operation failed.
    #[error("card {card} stream {path}: {what}: {source}")]
    Evtchn {
        /// The card.
        card: u32,
        /// The stream path relative to the card directory.
        path: String,
        /// What was being done.
        what: &'static str,
        /// The failure.
        source: EvtchnError,
    },
    /// Initialising a shared page failed.
    #[error("card {card} stream {path}: initialising the {what}: {reason}")]
    Setup {
        /// The card.
        card: u32,
        /// The stream path relative to the card directory.
        path: String,
        /// The page.
        what: &'static str,
        /// The failure.
        reason: String,
    },
    /// The backend did not leave a state in time during shutdown.
    #[error(
        "card {card}: backend still {state} after {waited_ms} ms (waiting for InitWait or Closed)"
    )]
    ShutdownTimeout {
        /// The card.
        card: u32,
        /// The backend state seen last.
        state: XenbusState,
        /// How long the engine waited.
        waited_ms: u64,
    },
    /// An operating-system call of the control thread failed.
    #[error("control thread: {op}: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The failure.
        source: std::io::Error,
    },
    /// The control thread has exited (or panicked).
    #[error("the control thread has exited")]
    Gone,
    /// No such card.
    #[error("card {card}: unknown")]
    UnknownCard {
        /// The card.
        card: u32,
    },
}

impl BusError {
    /// The card the error is about, if any.
    pub fn card(&self) -> Option<u32> {
        match self {
            BusError::Store { card, .. }
            | BusError::Missing { card, .. }
            | BusError::InvalidValue { card, .. }
            | BusError::Version { card, .. }
            | BusError::Config { card, .. }
            | BusError::Grant { card, .. }
            | BusError::Evtchn { card, .. }
            | BusError::Setup { card, .. }
            | BusError::ShutdownTimeout { card, .. }
            | BusError::UnknownCard { card } => Some(*card),
            BusError::Domid { .. }
            | BusError::Watch { .. }
            | BusError::List { .. }
            | BusError::Os { .. }
            | BusError::Gone => None,
        }
    }
}
