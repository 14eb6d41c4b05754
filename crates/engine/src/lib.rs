//! The sndif frontend engine: everything of a userspace Xen PV sound frontend except PipeWire.
//!
//! * [`Frontend`] runs the XenBus control plane on its own thread (sndif.md §2.7): it finds the
//!   vsnd cards of this domain, shares rings, event pages and PCM buffers with the backend,
//!   publishes the transport keys, follows the backend's state, and hands connected streams to
//!   the owner as [`FrontendEvent::CardConnected`]. See [`bus`].
//! * [`Stream`] is one playback or capture stream, owned and driven by one thread at a time:
//!   control requests (HW_PARAM_QUERY, OPEN, CLOSE, triggers), a realtime-safe data path
//!   (`write`/`read`/`service`), validation of everything the backend writes, counters. See
//!   [`stream`].
//! * [`clock`] turns backend positions into a monotonic position and delay and estimates the
//!   backend's rate with a delay-locked loop.
//!
//! # Threads
//!
//! The control thread owns the xenstore connection and blocks in poll(2) on the watch fd and an
//! eventfd. A stream is driven by whoever holds it; streams report timeouts and failures to the
//! control thread through atomics and the eventfd, and the control thread revokes them (an
//! atomic flag) when the card disconnects. Nothing is locked on the data path.
//!
//! # Recovery
//!
//! A protocol violation fails the stream it happened on ([`StreamState::Failed`]) and is
//! reported as [`FrontendEvent::StreamFailed`]; the owner recovers with
//! [`Frontend::reconnect`], which revokes the card's streams and connects it again with fresh
//! pages and ports. A backend that stops answering is declared unresponsive after N consecutive
//! timeouts ([`FrontendEvent::BackendUnresponsive`]); the card reconnects by itself when the
//! restarted backend walks through Closing/Closed/Initialising.

use core::fmt;
use std::sync::Arc;

use xen_access::{EventChannels, GrantShare, XenStore};

pub mod bus;
pub mod clock;
pub mod error;
mod inflight;
pub mod stream;
mod sys;
#[cfg(any(test, feature = "test-world"))]
pub mod testworld;
pub mod time;
#[cfg(test)]
mod volume_tests;
pub mod xenbus;

pub use bus::{
    CardInfo, DisconnectReason, Frontend, FrontendEvent, FrontendOptions, QueryFallback, Waker,
};
pub use clock::{Dll, PositionTracker, PositionUpdate, RateEstimator};
pub use error::{BusError, EvtchnFailure, ProtocolError, StreamError, StreamId, StreamOp};
pub use stream::{
    grants_per_stream, intersect_hw, query_space, silence_pattern, ActiveParams, ControlReply,
    PcmParams, ServiceReport, Stream, StreamCounters, StreamInfo, StreamOptions, StreamState,
    StreamStats, TransportKeys, MAX_VOLUME_CHANNELS,
};
pub use time::{Clock, ManualClock, MonotonicClock};
pub use xenbus::XenbusState;

/// The Xen services the engine uses, as this (the guest's) domain sees them.
#[derive(Clone)]
pub struct Services {
    /// A xenstore connection.
    pub store: Arc<dyn XenStore>,
    /// Grant sharing (gntalloc).
    pub grants: Arc<dyn GrantShare>,
    /// Event channels.
    pub events: Arc<dyn EventChannels>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}
