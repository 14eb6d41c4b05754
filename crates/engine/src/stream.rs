//! One sndif stream: its request ring, event page, event channels, shared PCM buffer, requests in
//! flight, position clock and counters.
//!
//! # Ownership
//!
//! A [`Stream`] owns everything of its stream and is driven by exactly one thread at a time
//! (`Send`, not `Sync`, not shared): the control thread while the card connects, then the owner
//! (the PipeWire data loop, a CLI loop, a test). What other threads need goes through atomics:
//! [`StreamStats`] (counters, readable from anywhere through [`Stream::stats_handle`]) and a link
//! to the control thread, which can *revoke* the stream when the card disconnects and which
//! learns about request timeouts and failures from it.
//!
//! # Control path
//!
//! HW_PARAM_QUERY, OPEN, CLOSE and the triggers are control requests; one is pending at a time.
//! `submit_*` methods push the request without waiting; [`Stream::service`] consumes the
//! response and [`Stream::take_control_result`] returns the outcome. The blocking helpers
//! ([`Stream::open`], [`Stream::start`], ...) do the same and wait on the stream's event-channel
//! fd with a bound, for the control thread, CLI tools and tests — never on a realtime thread.
//!
//! OPEN sends CLOSE first when the stream is already open (sndif.md pitfall 21). The buffer and
//! period sizes are frame- and period-aligned, never larger than the buffer allocated at connect
//! time, and the period is never 0 (pitfall 9).
//!
//! Playback start: [`Stream::arm_start`] sends TRIGGER START as soon as the pre-fill target has
//! been submitted (half the buffer by default, [`Stream::set_prefill_frames`]); the owner writes,
//! and START follows the pre-fill WRITEs on the ring (pitfall 20). [`Stream::submit_start`] and
//! [`Stream::start`] send it at once.
//!
//! SET_VOLUME, GET_VOLUME, MUTE and UNMUTE are control requests too. Their values (one `i32` in
//! 0.001 dB, or one `u8` flag, per channel) travel in the shared buffer (sndif.md §3.2): a small
//! scratch region is picked where no audio is (playback: past the data written and clear of every
//! WRITE in flight; capture: past the READs issued and clear of unread data), and no audio is
//! written to or read into it until the response arrives. When there is no such region (a full
//! buffer), the request fails with [`StreamError::NoRoom`] and the audio leaves that much room
//! free until the request is tried again. GET_VOLUME doubles as the probe for volume support
//! (snd_be answers `-EINVAL`).
//!
//! Every request has a deadline (default 3 s); [`Stream::service`] marks overdue requests timed
//! out, counts them and reports them to the control thread, which declares the backend
//! unresponsive after N consecutive timeouts on a card (pitfall 17). A response that arrives
//! after its request timed out is a protocol error.
//!
//! # Data path (realtime-safe)
//!
//! [`Stream::service`], [`Stream::write`], [`Stream::read`], [`Stream::writable_frames`],
//! [`Stream::readable_frames`] and the clock accessors take no lock, allocate nothing, never
//! block, never log and never panic. Problems become counters and states.
//!
//! Playback uses the shared buffer as a byte ring of `buffer_sz` bytes. `write` copies into it
//! and issues WRITE requests at once, each split at the end of the buffer (pitfall 31) and at
//! most [`StreamOptions::max_request_periods`] periods long, with at most
//! [`StreamOptions::max_data_requests`] in flight. A region is rewritten only after its WRITE
//! completed, and the data written never runs more than `buffer_sz` ahead of the position the
//! backend reports (WRITE completion is not playback progress on a PulseAudio backend, pitfall
//! 19). Underruns reported by the backend's position are counted.
//!
//! Capture keeps READ requests in flight ahead of the reader (two periods by default); `read`
//! returns completed data in order. When the reader lets the buffer fill up, READs stop; an
//! overrun is counted once the backend's position passes what was requested (it then holds
//! captured data the frontend has no room for).
//!
//! # Validation
//!
//! Everything the backend writes is validated (sndif.md §4.2–§4.4, pitfall 25): ring and event
//! indices (by `sndif`), the response id and operation against the table of requests in flight,
//! the status (non-zero → a backend error for that request), positions (see [`crate::clock`]).
//! A protocol violation fails *this* stream ([`StreamState::Failed`]) and is reported to the
//! control thread; other streams are untouched. Recovery is a reconnect of the card
//! ([`crate::Frontend::reconnect`]).

use core::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sndif::config::{PcmHw, StreamConfig, StreamKind};
use sndif::event::{EventError, EventReader};
use sndif::formats::{FormatSet, PcmFormat};
use sndif::layout::XEN_PAGE_SIZE;
use sndif::pgdir::{data_pages, dir_pages, write_directory};
use sndif::ring::{FrontRing, RingError};
use sndif::shm::SharedMem;
use sndif::wire::{
    EventKind, HwParam, Interval, OpenParams, Request, RequestBody, Response, ResponseBody,
    RwParams, TriggerType,
};
use xen_access::{DomId, EvtchnHandle, GrantedPages, Port};

use crate::clock::{PositionTracker, PositionUpdate, RateEstimator};
use crate::error::{BusError, ProtocolError, StreamError, StreamId, StreamOp};
use crate::inflight::{Entry, InFlight, Purpose};
use crate::sys::{self, EventFd};
use crate::time::{Clock, MonotonicClock};
use crate::Services;

/// Tunables of a stream.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Deadline of every request (default 3 s, like the Linux frontend).
    pub request_timeout: Duration,
    /// READ/WRITE requests kept in flight at most (default 2; the backend serialises anyway and
    /// extra queued requests only delay STOP).
    pub max_data_requests: u32,
    /// Longest READ/WRITE request, in periods (default 1).
    pub max_request_periods: u32,
    /// Capture: bytes of READ requests kept in flight ahead, in periods (default 2).
    pub capture_read_ahead_periods: u32,
    /// Bandwidth of the rate-estimating DLL, Hz.
    pub dll_bandwidth: f64,
    /// Time source for deadlines set outside [`Stream::service`] and for the blocking helpers.
    pub clock: Arc<dyn Clock>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            request_timeout: Duration::from_secs(3),
            max_data_requests: 2,
            max_request_periods: 1,
            capture_read_ahead_periods: 2,
            dll_bandwidth: RateEstimator::DEFAULT_BANDWIDTH,
            clock: Arc::new(MonotonicClock),
        }
    }
}

/// What the owner asks OPEN for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmParams {
    /// Sample format.
    pub format: PcmFormat,
    /// Rate, Hz.
    pub rate: u32,
    /// Channel count.
    pub channels: u8,
    /// Buffer size, frames (rounded down to whole periods and to the allocated buffer).
    pub buffer_frames: u32,
    /// Period (CUR_POS cadence), frames; never 0.
    pub period_frames: u32,
}

/// The parameters OPEN was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveParams {
    /// Sample format.
    pub format: PcmFormat,
    /// Rate, Hz.
    pub rate: u32,
    /// Channel count.
    pub channels: u8,
    /// Bytes per frame.
    pub frame_bytes: u32,
    /// `buffer_sz`, octets (a multiple of `period_bytes`).
    pub buffer_bytes: u32,
    /// `period_sz`, octets (a multiple of `frame_bytes`, never 0).
    pub period_bytes: u32,
}

impl ActiveParams {
    /// Buffer size in frames.
    pub fn buffer_frames(&self) -> u32 {
        self.buffer_bytes / self.frame_bytes.max(1)
    }

    /// Period size in frames.
    pub fn period_frames(&self) -> u32 {
        self.period_bytes / self.frame_bytes.max(1)
    }
}

/// The state of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Not open (initial state, after CLOSE, after a failed OPEN).
    Closed,
    /// Open and not running (after OPEN or STOP): playback may pre-fill.
    Stopped,
    /// Running (after START or RESUME).
    Running,
    /// Paused (after PAUSE).
    Paused,
    /// Failed on a protocol violation or an event-channel failure; only a reconnect helps.
    Failed(StreamError),
    /// The card disconnected; drop the stream.
    Revoked,
}

impl StreamState {
    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamState::Closed => "closed",
            StreamState::Stopped => "stopped",
            StreamState::Running => "running",
            StreamState::Paused => "paused",
            StreamState::Failed(_) => "failed",
            StreamState::Revoked => "revoked",
        }
    }

    fn is_open(&self) -> bool {
        matches!(
            self,
            StreamState::Stopped | StreamState::Running | StreamState::Paused
        )
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamState::Failed(e) => write!(f, "failed: {e}"),
            other => f.write_str(other.name()),
        }
    }
}

/// The successful outcome of a control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlReply {
    /// Done (OPEN, CLOSE, triggers).
    Done,
    /// HW_PARAM_QUERY's answer.
    HwParam(HwParam),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Control {
    Idle,
    /// Playback START waits for the pre-fill target.
    Armed,
    Pending {
        op: StreamOp,
    },
    Done {
        op: StreamOp,
        result: Result<ControlReply, StreamError>,
    },
}

/// What the engine knows about a stream's capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Identity.
    pub id: StreamId,
    /// Playback or capture.
    pub kind: StreamKind,
    /// `unique-id` (meaningful to the backend only).
    pub unique_id: Option<String>,
    /// The PCM device's `name`.
    pub device_name: Option<String>,
    /// What the stream offers: the xenstore configuration intersected with the backend's
    /// HW_PARAM_QUERY answer (or the xenstore configuration alone if the query failed).
    pub hw: PcmHw,
    /// The xenstore configuration.
    pub xenstore_hw: PcmHw,
    /// The backend's HW_PARAM_QUERY answer to the full configuration space, if it gave one.
    pub backend_hw: Option<HwParam>,
    /// Bytes of shared buffer allocated (the largest `buffer_sz` OPEN may use).
    pub capacity_bytes: u32,
}

impl StreamInfo {
    /// Reasonable OPEN parameters within [`StreamInfo::hw`]: S16_LE if offered (else the first
    /// offered format), 48000 Hz if offered (else the nearest offered rate), 2 channels clamped
    /// to the offered range, 20 ms periods, four periods of buffer (fewer if the allocated buffer
    /// is smaller). `None` if nothing usable is offered.
    pub fn default_params(&self) -> Option<PcmParams> {
        let hw = &self.hw;
        let format = if hw.formats.contains(PcmFormat::S16Le) {
            PcmFormat::S16Le
        } else {
            hw.formats.iter().find(|f| f.bytes_per_sample().is_some())?
        };
        let rate = if hw.rates.contains(&48_000) {
            48_000
        } else {
            *hw.rates.iter().min_by_key(|r| r.abs_diff(48_000))?
        };
        let channels = 2u8.clamp(hw.channels_min.max(1), hw.channels_max.max(1));
        let frame = format.bytes_per_sample()? * u32::from(channels);
        let period_frames = (rate / 50).max(1);
        let period_bytes = period_frames.checked_mul(frame)?;
        let periods = (self.capacity_bytes / period_bytes.max(1)).min(4);
        let (period_frames, periods) = if periods == 0 {
            // A period of 20 ms does not fit: use the whole buffer as two periods.
            let buffer_frames = self.capacity_bytes / frame.max(1);
            ((buffer_frames / 2).max(1), 2)
        } else {
            (period_frames, periods)
        };
        Some(PcmParams {
            format,
            rate,
            channels,
            buffer_frames: period_frames * periods,
            period_frames,
        })
    }
}

/// The transport keys a stream publishes in xenstore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportKeys {
    /// `ring-ref`: grant reference of the request ring page.
    pub ring_ref: u32,
    /// `event-channel`: port of the request ring.
    pub event_channel: u32,
    /// `evt-ring-ref`: grant reference of the event page.
    pub evt_ring_ref: u32,
    /// `evt-event-channel`: port of the event page.
    pub evt_event_channel: u32,
}

/// Counters of a stream, shared with other threads.
#[derive(Debug, Default)]
pub struct StreamStats {
    requests: AtomicU64,
    responses: AtomicU64,
    backend_errors: AtomicU64,
    timeouts: AtomicU64,
    position_timeouts: AtomicU64,
    protocol_errors: AtomicU64,
    events: AtomicU64,
    ignored_events: AtomicU64,
    event_batches_capped: AtomicU64,
    underruns: AtomicU64,
    underrun_bytes: AtomicU64,
    overruns: AtomicU64,
    position_restarts: AtomicU64,
    frozen_positions: AtomicU64,
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
}

/// A snapshot of [`StreamStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Requests pushed.
    pub requests: u64,
    /// Responses consumed (matched).
    pub responses: u64,
    /// Responses with a non-zero status.
    pub backend_errors: u64,
    /// Requests that timed out, plus position timeouts.
    pub timeouts: u64,
    /// Times a running stream heard nothing from the backend (no response, no position) for a
    /// request timeout while it waited for progress.
    pub position_timeouts: u64,
    /// Protocol violations (the first one fails the stream; ignored events count too).
    pub protocol_errors: u64,
    /// CUR_POS events consumed.
    pub events: u64,
    /// Events that did not decode (unknown type), skipped.
    pub ignored_events: u64,
    /// `service` calls that stopped consuming events at the per-call cap (an event flood).
    pub event_batches_capped: u64,
    /// Playback: positions beyond the data submitted (the backend played silence).
    pub underruns: u64,
    /// Playback: bytes the backend reported beyond the data submitted.
    pub underrun_bytes: u64,
    /// Capture: times the reader let the buffer fill up so READs had to stop.
    pub overruns: u64,
    /// Positions that went backwards (rebased).
    pub position_restarts: u64,
    /// Positions that repeated the previous one.
    pub frozen_positions: u64,
    /// Bytes of completed WRITEs.
    pub bytes_written: u64,
    /// Bytes of completed READs.
    pub bytes_read: u64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl StreamStats {
    /// A snapshot of all counters.
    pub fn snapshot(&self) -> StreamCounters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StreamCounters {
            requests: g(&self.requests),
            responses: g(&self.responses),
            backend_errors: g(&self.backend_errors),
            timeouts: g(&self.timeouts),
            position_timeouts: g(&self.position_timeouts),
            protocol_errors: g(&self.protocol_errors),
            events: g(&self.events),
            ignored_events: g(&self.ignored_events),
            event_batches_capped: g(&self.event_batches_capped),
            underruns: g(&self.underruns),
            underrun_bytes: g(&self.underrun_bytes),
            overruns: g(&self.overruns),
            position_restarts: g(&self.position_restarts),
            frozen_positions: g(&self.frozen_positions),
            bytes_written: g(&self.bytes_written),
            bytes_read: g(&self.bytes_read),
        }
    }
}

/// What the control thread and the streams of one connection share.
#[derive(Debug)]
pub(crate) struct Link {
    revoked: AtomicBool,
    consecutive_timeouts: AtomicU32,
    failed: AtomicU64,
    waker: Option<Arc<EventFd>>,
}

impl Link {
    pub(crate) fn new(waker: Option<Arc<EventFd>>) -> Self {
        Link {
            revoked: AtomicBool::new(false),
            consecutive_timeouts: AtomicU32::new(0),
            failed: AtomicU64::new(0),
            waker,
        }
    }

    pub(crate) fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }

    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    pub(crate) fn consecutive_timeouts(&self) -> u32 {
        self.consecutive_timeouts.load(Ordering::Acquire)
    }

    /// Bits of the streams (card-global index, capped at 63) that failed.
    pub(crate) fn failed_mask(&self) -> u64 {
        self.failed.load(Ordering::Acquire)
    }

    fn wake(&self) {
        if let Some(w) = &self.waker {
            w.signal();
        }
    }
}

/// What one [`Stream::service`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceReport {
    /// Responses consumed.
    pub responses: u32,
    /// Events consumed.
    pub events: u32,
    /// Requests pushed.
    pub issued: u32,
    /// Requests that timed out in this call.
    pub timed_out: u32,
    /// A control request completed (see [`Stream::take_control_result`]).
    pub control_done: bool,
    /// Events were left on the page (the per-call cap was reached): call again.
    pub more_pending: bool,
}

/// Events consumed per [`Stream::service`] call at most (two pages' worth).
const EVENTS_PER_SERVICE: u32 = 2 * sndif::layout::EVT_RING_LEN;

/// Responses consumed per [`Stream::service`] call at most.
const RESPONSES_PER_SERVICE: u32 = 4 * sndif::layout::RING_SIZE;

/// Most channels a volume request carries (PipeWire's `SPA_AUDIO_MAX_CHANNELS`).
pub const MAX_VOLUME_CHANNELS: usize = 64;

/// The region of the shared buffer that holds the values of the volume request in flight; no
/// audio is written to (playback) or read into (capture) it until the response arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scratch {
    /// Start in the stream's byte counter space (`written` of the current OPEN).
    start: u64,
    /// Offset in the shared buffer.
    offset: u32,
    /// Length, octets.
    len: u32,
}

/// One sndif stream (see the module documentation).
pub struct Stream {
    id: StreamId,
    info: StreamInfo,
    usable: bool,
    options: StreamOptions,
    ring: FrontRing,
    events: EventReader,
    evtchn: Box<dyn EvtchnHandle>,
    req_port: Port,
    evt_port: Port,
    /// The PCM buffer (data pages), `None` for an unusable stream.
    buffer: Option<SharedMem>,
    gref_directory: u32,
    keys: TransportKeys,
    /// Keeps every shared page granted for the stream's lifetime.
    _grants: Vec<GrantedPages>,
    link: Arc<Link>,
    stats: Arc<StreamStats>,
    table: InFlight,
    next_id: u16,
    epoch: u32,
    state: StreamState,
    control: Control,
    params: Option<ActiveParams>,
    /// Playback: bytes copied in by the owner / covered by WRITEs issued.
    /// Capture: `written` = bytes covered by READs issued, `submitted` unused.
    written: u64,
    submitted: u64,
    /// Capture: bytes whose READ completed (contiguous prefix) / bytes taken by the reader.
    completed: u64,
    consumed: u64,
    prefill_target: u64,
    prefill_frames: Option<u32>,
    overrun_latched: bool,
    tracker: PositionTracker,
    estimator: Option<RateEstimator>,
    last_position_ns: u64,
    /// Last time the backend showed life on this stream (a response or a position); the
    /// watchdog's reference.
    last_progress_ns: u64,
    /// The values of the volume request in flight, if any.
    scratch: Option<Scratch>,
    /// Octets a volume request found no room for: audio keeps that much of the buffer free
    /// until the request can go (cleared when it goes, and at OPEN).
    scratch_wanted: u64,
    /// GET_VOLUME's answer (0.001 dB per channel), valid for `volume_read_len` channels.
    volume_read: [i32; MAX_VOLUME_CHANNELS],
    volume_read_len: usize,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("kind", &self.info.kind)
            .field("state", &self.state)
            .field("params", &self.params)
            .field("keys", &self.keys)
            .field("in_flight", &self.table.len())
            .finish_non_exhaustive()
    }
}

/// Where a stream is set up and what it is.
pub(crate) struct StreamSpec<'a> {
    pub(crate) id: StreamId,
    /// `"<device>/<index>"`, for error messages.
    pub(crate) path: &'a str,
    /// The configuration, or `None` if it is unusable (the stream gets ring and event page
    /// only, because the backend binds every stream).
    pub(crate) config: Option<&'a StreamConfig>,
    pub(crate) device_name: Option<String>,
}

fn share(
    services: &Services,
    backend: DomId,
    spec: &StreamSpec<'_>,
    pages: usize,
    what: &'static str,
) -> Result<GrantedPages, BusError> {
    services
        .grants
        .share(backend, pages)
        .map_err(|source| BusError::Grant {
            card: spec.id.card,
            path: spec.path.to_owned(),
            what,
            source,
        })
}

fn setup_err(spec: &StreamSpec<'_>, what: &'static str, reason: impl fmt::Display) -> BusError {
    BusError::Setup {
        card: spec.id.card,
        path: spec.path.to_owned(),
        what,
        reason: reason.to_string(),
    }
}

impl Stream {
    /// Allocates and shares everything of one stream with `backend`: ring page, event page, an
    /// event-channel handle with two unbound ports, and (for a usable configuration) the PCM
    /// buffer at its configured maximum plus its page directory.
    pub(crate) fn create(
        services: &Services,
        backend: DomId,
        spec: &StreamSpec<'_>,
        options: StreamOptions,
        link: Arc<Link>,
    ) -> Result<Stream, BusError> {
        let id = spec.id;
        let ring_pages = share(services, backend, spec, 1, "the request ring page")?;
        let ring_mem = ring_pages
            .mem
            .page(0)
            .ok_or_else(|| setup_err(spec, "request ring", "no page returned"))?;
        let ring = FrontRing::init(ring_mem).map_err(|e| setup_err(spec, "request ring", e))?;
        let evt_pages = share(services, backend, spec, 1, "the event page")?;
        let evt_mem = evt_pages
            .mem
            .page(0)
            .ok_or_else(|| setup_err(spec, "event page", "no page returned"))?;
        let events = EventReader::init(evt_mem).map_err(|e| setup_err(spec, "event page", e))?;
        let ring_ref = first_gref(&ring_pages, spec, "request ring")?;
        let evt_ring_ref = first_gref(&evt_pages, spec, "event page")?;

        let evtchn_err = |what: &'static str| {
            let path = spec.path.to_owned();
            move |source| BusError::Evtchn {
                card: id.card,
                path,
                what,
                source,
            }
        };
        let evtchn = services
            .events
            .open()
            .map_err(evtchn_err("opening an event-channel handle"))?;
        let req_port = evtchn
            .bind_unbound(backend)
            .map_err(evtchn_err("allocating the request port"))?;
        let evt_port = evtchn
            .bind_unbound(backend)
            .map_err(evtchn_err("allocating the event port"))?;

        let mut grants = vec![ring_pages, evt_pages];
        let (buffer, gref_directory, capacity) = match spec.config {
            Some(cfg) => {
                let capacity = cfg.hw.buffer_size;
                let n_data = data_pages(capacity);
                let data = share(services, backend, spec, n_data, "the PCM buffer")?;
                let dir = share(
                    services,
                    backend,
                    spec,
                    dir_pages(n_data),
                    "the page directory",
                )?;
                let dir_views: Vec<SharedMem> = (0..dir.grefs.len())
                    .filter_map(|i| dir.mem.page(i))
                    .collect();
                write_directory(&dir_views, &dir.grefs, &data.grefs)
                    .map_err(|e| setup_err(spec, "page directory", e))?;
                let gref_directory = first_gref(&dir, spec, "page directory")?;
                let len = usize::try_from(capacity).unwrap_or(usize::MAX);
                let buffer = data
                    .mem
                    .sub(0, len)
                    .ok_or_else(|| setup_err(spec, "PCM buffer", "shared pages too short"))?;
                grants.push(data);
                grants.push(dir);
                (Some(buffer), gref_directory, capacity)
            }
            None => (None, 0, 0),
        };

        let (kind, unique_id, hw) = match spec.config {
            Some(cfg) => (cfg.kind, cfg.unique_id.clone(), cfg.hw.clone()),
            None => (StreamKind::Playback, None, PcmHw::default()),
        };
        let keys = TransportKeys {
            ring_ref,
            event_channel: req_port.0,
            evt_ring_ref,
            evt_event_channel: evt_port.0,
        };
        Ok(Stream {
            id,
            info: StreamInfo {
                id,
                kind,
                unique_id,
                device_name: spec.device_name.clone(),
                hw: hw.clone(),
                xenstore_hw: hw,
                backend_hw: None,
                capacity_bytes: capacity,
            },
            usable: spec.config.is_some(),
            options,
            ring,
            events,
            evtchn,
            req_port,
            evt_port,
            buffer,
            gref_directory,
            keys,
            _grants: grants,
            link,
            stats: Arc::new(StreamStats::default()),
            table: InFlight::new(),
            next_id: 0,
            epoch: 0,
            state: StreamState::Closed,
            control: Control::Idle,
            params: None,
            written: 0,
            submitted: 0,
            completed: 0,
            consumed: 0,
            prefill_target: 0,
            prefill_frames: None,
            overrun_latched: false,
            tracker: PositionTracker::new(1),
            estimator: None,
            last_position_ns: 0,
            last_progress_ns: 0,
            scratch: None,
            scratch_wanted: 0,
            volume_read: [0; MAX_VOLUME_CHANNELS],
            volume_read_len: 0,
        })
    }

    /// Sets up a stream outside any card connection: everything [`crate::Frontend`] allocates
    /// for one stream, shared with `backend`, but no xenstore and no control thread (nothing
    /// revokes it; timeouts and failures only show in its own state and counters). For tools
    /// and tests that do the XenBus handshake themselves; publish [`Stream::transport_keys`].
    pub fn standalone(
        services: &Services,
        backend: DomId,
        id: StreamId,
        config: &StreamConfig,
        options: StreamOptions,
    ) -> Result<Stream, BusError> {
        let path = format!("{}/{}", id.device, id.stream);
        let spec = StreamSpec {
            id,
            path: &path,
            config: Some(config),
            device_name: None,
        };
        Stream::create(services, backend, &spec, options, Arc::new(Link::new(None)))
    }

    // ---- identity and introspection -------------------------------------------------------

    /// The stream's identity.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Capabilities and configuration.
    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// Playback or capture.
    pub fn kind(&self) -> StreamKind {
        self.info.kind
    }

    /// The keys published in xenstore for this stream.
    pub fn transport_keys(&self) -> TransportKeys {
        self.keys
    }

    /// The local event-channel ports: request ring, event page.
    pub fn ports(&self) -> (Port, Port) {
        (self.req_port, self.evt_port)
    }

    /// The event-channel fd: readable when the backend answered or sent an event. Poll it (or
    /// add it to a PipeWire loop) and call [`Stream::service`].
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.evtchn.fd()
    }

    /// The current state.
    pub fn state(&self) -> &StreamState {
        &self.state
    }

    /// The parameters of the current OPEN.
    pub fn params(&self) -> Option<ActiveParams> {
        self.params
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StreamCounters {
        self.stats.snapshot()
    }

    /// The counters, for another thread.
    pub fn stats_handle(&self) -> Arc<StreamStats> {
        Arc::clone(&self.stats)
    }

    /// Whether the card disconnected (the stream must be dropped).
    pub fn is_revoked(&self) -> bool {
        self.link.is_revoked()
    }

    /// Requests in flight (answered ones excluded, timed-out ones included).
    pub fn requests_in_flight(&self) -> u32 {
        self.ring.in_flight()
    }

    pub(crate) fn set_hw(&mut self, hw: PcmHw, backend: Option<HwParam>) {
        self.info.hw = hw;
        self.info.backend_hw = backend;
    }

    pub(crate) fn is_usable(&self) -> bool {
        self.usable
    }

    // ---- control path ------------------------------------------------------------------------

    fn refuse_if_dead(&mut self, op: StreamOp) -> Result<(), StreamError> {
        if self.link.is_revoked() {
            self.state = StreamState::Revoked;
        }
        match self.state {
            StreamState::Revoked => Err(StreamError::Revoked {
                stream: self.id,
                op,
            }),
            StreamState::Failed(_) => Err(StreamError::Failed {
                stream: self.id,
                op,
            }),
            _ => Ok(()),
        }
    }

    fn begin_control(&mut self, op: StreamOp, needed_slots: u32) -> Result<(), StreamError> {
        self.refuse_if_dead(op)?;
        match self.control {
            Control::Pending { op: pending } => {
                return Err(StreamError::Busy {
                    stream: self.id,
                    op,
                    pending,
                })
            }
            Control::Armed => {
                return Err(StreamError::Busy {
                    stream: self.id,
                    op,
                    pending: StreamOp::Start,
                })
            }
            Control::Idle | Control::Done { .. } => {}
        }
        if self.ring.free_requests() < needed_slots {
            return Err(StreamError::RingFull {
                stream: self.id,
                op,
            });
        }
        Ok(())
    }

    fn invalid_state(&self, op: StreamOp) -> StreamError {
        StreamError::InvalidState {
            stream: self.id,
            op,
            state: self.state.name(),
        }
    }

    fn validate(&self, p: &PcmParams) -> Result<ActiveParams, StreamError> {
        let invalid = |reason| StreamError::InvalidParams {
            stream: self.id,
            op: StreamOp::Open,
            reason,
        };
        let bps = p
            .format
            .bytes_per_sample()
            .ok_or(invalid("compressed formats cannot be streamed"))?;
        if p.channels == 0 {
            return Err(invalid("zero channels"));
        }
        if !self.info.hw.supports(p.format, p.rate, p.channels) {
            return Err(invalid(
                "format, rate or channel count not offered by this stream",
            ));
        }
        if p.period_frames == 0 {
            return Err(invalid("the period must not be 0 frames"));
        }
        let frame_bytes = bps * u32::from(p.channels);
        let period_bytes = p
            .period_frames
            .checked_mul(frame_bytes)
            .filter(|b| *b <= self.info.capacity_bytes)
            .ok_or(invalid("the period is larger than the allocated buffer"))?;
        let periods_wanted = (p.buffer_frames / p.period_frames).max(1);
        let periods_fit = self.info.capacity_bytes / period_bytes;
        let periods = periods_wanted.min(periods_fit).max(1);
        Ok(ActiveParams {
            format: p.format,
            rate: p.rate,
            channels: p.channels,
            frame_bytes,
            buffer_bytes: periods * period_bytes,
            period_bytes,
        })
    }

    /// Pushes a request and records it; the caller publishes ([`Stream::flush`]).
    fn push(
        &mut self,
        body: RequestBody,
        purpose: Purpose,
        now_ns: u64,
    ) -> Result<u16, StreamError> {
        let op = match purpose {
            Purpose::Control { op, .. } => op,
            Purpose::Write { .. } => StreamOp::Write,
            Purpose::Read { .. } => StreamOp::Read,
        };
        let mut id = self.next_id;
        for _ in 0..=crate::inflight::TABLE_SIZE {
            if !self.table.contains_id(id) {
                break;
            }
            id = id.wrapping_add(1);
        }
        self.next_id = id.wrapping_add(1);
        let req = Request { id, body };
        match self.ring.push_request(&req) {
            Ok(()) => {}
            Err(RingError::Full { .. }) => {
                return Err(StreamError::RingFull {
                    stream: self.id,
                    op,
                })
            }
            Err(e) => {
                return Err(StreamError::Protocol {
                    stream: self.id,
                    error: ProtocolError::Ring(e),
                })
            }
        }
        let timeout = u64::try_from(self.options.request_timeout.as_nanos()).unwrap_or(u64::MAX);
        let inserted = self.table.insert(Entry {
            id,
            operation: body.operation(),
            purpose,
            epoch: self.epoch,
            deadline_ns: now_ns.saturating_add(timeout),
            timed_out: false,
        });
        if !inserted {
            // The ring accepted the request, so the table (same size) has room; unreachable.
            return Err(StreamError::RingFull {
                stream: self.id,
                op,
            });
        }
        bump(&self.stats.requests);
        Ok(id)
    }

    /// Publishes pushed requests and notifies the backend if needed.
    fn flush(&mut self) {
        if self.ring.unpublished() == 0 {
            return;
        }
        match self.ring.publish() {
            Ok(false) => {}
            Ok(true) => {
                if let Err(e) = self.evtchn.notify(self.req_port) {
                    self.fail(StreamError::Evtchn {
                        stream: self.id,
                        op: StreamOp::Service,
                        source: e.into(),
                    });
                }
            }
            Err(e) => self.fail_protocol(ProtocolError::Ring(e)),
        }
    }

    fn push_control(
        &mut self,
        op: StreamOp,
        body: RequestBody,
        now_ns: u64,
    ) -> Result<(), StreamError> {
        self.push(body, Purpose::Control { op, last: true }, now_ns)?;
        self.control = Control::Pending { op };
        self.flush();
        Ok(())
    }

    /// Sends HW_PARAM_QUERY with `space`; the answer arrives as [`ControlReply::HwParam`].
    pub fn submit_hw_param_query(
        &mut self,
        space: HwParam,
        now_ns: u64,
    ) -> Result<(), StreamError> {
        self.begin_control(StreamOp::HwParamQuery, 1)?;
        self.push_control(
            StreamOp::HwParamQuery,
            RequestBody::HwParamQuery(space),
            now_ns,
        )
    }

    /// Sends OPEN (preceded by CLOSE if the stream is open). Returns the parameters actually
    /// requested (buffer rounded down to whole periods and to the allocated buffer). The data
    /// counters and the clock restart from 0.
    pub fn submit_open(
        &mut self,
        params: PcmParams,
        now_ns: u64,
    ) -> Result<ActiveParams, StreamError> {
        if !self.usable {
            return Err(StreamError::Unusable {
                stream: self.id,
                op: StreamOp::Open,
            });
        }
        let reopen = self.state.is_open();
        self.begin_control(StreamOp::Open, if reopen { 2 } else { 1 })?;
        let active = self.validate(&params)?;
        if reopen {
            self.push(
                RequestBody::Close,
                Purpose::Control {
                    op: StreamOp::Close,
                    last: false,
                },
                now_ns,
            )?;
        }
        self.epoch = self.epoch.wrapping_add(1);
        self.written = 0;
        self.submitted = 0;
        self.completed = 0;
        self.consumed = 0;
        self.overrun_latched = false;
        self.scratch = None;
        self.scratch_wanted = 0;
        self.tracker.reset(active.frame_bytes);
        self.estimator = Some(RateEstimator::new(
            active.rate,
            active.period_frames(),
            self.options.dll_bandwidth,
        ));
        self.params = Some(active);
        self.update_prefill_target();
        let open = OpenParams {
            rate: active.rate,
            format: active.format,
            channels: active.channels,
            buffer_sz: active.buffer_bytes,
            gref_directory: self.gref_directory,
            period_sz: active.period_bytes,
        };
        self.push_control(StreamOp::Open, RequestBody::Open(open), now_ns)?;
        Ok(active)
    }

    /// Sends CLOSE (completes at once, without a request, if the stream is closed).
    pub fn submit_close(&mut self, now_ns: u64) -> Result<(), StreamError> {
        self.begin_control(StreamOp::Close, 1)?;
        if !self.state.is_open() {
            self.control = Control::Done {
                op: StreamOp::Close,
                result: Ok(ControlReply::Done),
            };
            return Ok(());
        }
        self.push_control(StreamOp::Close, RequestBody::Close, now_ns)
    }

    fn submit_trigger(&mut self, op: StreamOp, now_ns: u64) -> Result<(), StreamError> {
        self.begin_control(op, 1)?;
        let (allowed, trigger) = match op {
            StreamOp::Start => (self.state == StreamState::Stopped, TriggerType::Start),
            StreamOp::Pause => (self.state == StreamState::Running, TriggerType::Pause),
            StreamOp::Resume => (self.state == StreamState::Paused, TriggerType::Resume),
            _ => (self.state.is_open(), TriggerType::Stop),
        };
        if !allowed {
            return Err(self.invalid_state(op));
        }
        self.push_control(op, RequestBody::Trigger(trigger), now_ns)
    }

    /// Sends TRIGGER START now (whatever was pre-filled).
    pub fn submit_start(&mut self, now_ns: u64) -> Result<(), StreamError> {
        // Issue the WRITEs of what was written so far first: START must follow them.
        self.progress(now_ns);
        self.submit_trigger(StreamOp::Start, now_ns)
    }

    /// Playback: sends TRIGGER START as soon as the pre-fill target has been submitted (at once
    /// if it already has). Capture: same as [`Stream::submit_start`].
    pub fn arm_start(&mut self, now_ns: u64) -> Result<(), StreamError> {
        if self.info.kind == StreamKind::Capture {
            return self.submit_start(now_ns);
        }
        self.begin_control(StreamOp::Start, 1)?;
        if self.state != StreamState::Stopped {
            return Err(self.invalid_state(StreamOp::Start));
        }
        self.control = Control::Armed;
        self.progress(now_ns);
        self.flush();
        Ok(())
    }

    /// Sends TRIGGER PAUSE.
    pub fn submit_pause(&mut self, now_ns: u64) -> Result<(), StreamError> {
        self.submit_trigger(StreamOp::Pause, now_ns)
    }

    /// Sends TRIGGER RESUME.
    pub fn submit_resume(&mut self, now_ns: u64) -> Result<(), StreamError> {
        self.submit_trigger(StreamOp::Resume, now_ns)
    }

    /// Sends TRIGGER STOP. Playback data written but not yet submitted is discarded when the
    /// STOP completes.
    pub fn submit_stop(&mut self, now_ns: u64) -> Result<(), StreamError> {
        if self.control == Control::Armed {
            self.control = Control::Idle;
        }
        self.submit_trigger(StreamOp::Stop, now_ns)
    }

    /// The pending or finished control operation, without consuming it.
    pub fn control_pending(&self) -> Option<StreamOp> {
        match &self.control {
            Control::Pending { op } => Some(*op),
            Control::Armed => Some(StreamOp::Start),
            Control::Idle | Control::Done { .. } => None,
        }
    }

    // ---- volume ------------------------------------------------------------------------------

    /// Sends SET_VOLUME with one value per channel of the open stream, in 0.001 dB steps (0 =
    /// 0 dB). The values travel in a region of the shared buffer that no audio uses until the
    /// response arrives ([`StreamError::NoRoom`] if there is none right now).
    pub fn submit_set_volume(&mut self, volumes: &[i32], now_ns: u64) -> Result<(), StreamError> {
        let op = StreamOp::SetVolume;
        let n = self.volume_channels(op, volumes.len())?;
        let mut raw = [0u8; 4 * MAX_VOLUME_CHANNELS];
        for (slot, v) in raw.chunks_exact_mut(4).zip(volumes) {
            slot.copy_from_slice(&v.to_le_bytes());
        }
        self.submit_volume_request(op, raw.get(..4 * n).unwrap_or(&[]), now_ns)
    }

    /// Sends GET_VOLUME; once it completed, [`Stream::last_volume`] holds the answer. A backend
    /// without volume control answers with an error status (snd_be: `-EINVAL`), which makes this
    /// the probe for volume support.
    pub fn submit_get_volume(&mut self, now_ns: u64) -> Result<(), StreamError> {
        let op = StreamOp::GetVolume;
        let channels = self.params.map_or(0, |p| usize::from(p.channels));
        let n = self.volume_channels(op, channels)?;
        let raw = [0u8; 4 * MAX_VOLUME_CHANNELS];
        self.submit_volume_request(op, raw.get(..4 * n).unwrap_or(&[]), now_ns)
    }

    /// Sends MUTE (`mute`) or UNMUTE for the channels whose flag in `channels` is set (one flag
    /// per channel of the open stream).
    pub fn submit_mute(
        &mut self,
        mute: bool,
        channels: &[bool],
        now_ns: u64,
    ) -> Result<(), StreamError> {
        let op = if mute {
            StreamOp::Mute
        } else {
            StreamOp::Unmute
        };
        let n = self.volume_channels(op, channels.len())?;
        let mut raw = [0u8; MAX_VOLUME_CHANNELS];
        for (slot, on) in raw.iter_mut().zip(channels) {
            *slot = u8::from(*on);
        }
        self.submit_volume_request(op, raw.get(..n).unwrap_or(&[]), now_ns)
    }

    /// The answer of the last successful GET_VOLUME (0.001 dB per channel).
    pub fn last_volume(&self) -> &[i32] {
        self.volume_read.get(..self.volume_read_len).unwrap_or(&[])
    }

    /// Checks that a volume request may be sent now with `given` values; returns the channel
    /// count of the open stream.
    fn volume_channels(&mut self, op: StreamOp, given: usize) -> Result<usize, StreamError> {
        self.begin_control(op, 1)?;
        let Some(p) = self.params.filter(|_| self.state.is_open()) else {
            return Err(self.invalid_state(op));
        };
        let n = usize::from(p.channels);
        let invalid = |reason| StreamError::InvalidParams {
            stream: self.id,
            op,
            reason,
        };
        if n > MAX_VOLUME_CHANNELS {
            return Err(invalid("more channels than a volume request carries"));
        }
        if given != n {
            return Err(invalid(
                "one value per channel of the open stream is needed",
            ));
        }
        Ok(n)
    }

    /// The latest region of `len` octets that no audio uses now: playback, between the data
    /// written and the oldest region a WRITE in flight may still read (one buffer later);
    /// capture, between the READs issued and the data the reader has not taken yet. The latest
    /// place keeps it as far as possible from where audio goes next; it never wraps.
    fn reserve_scratch(&self, op: StreamOp, len: u32) -> Result<Scratch, StreamError> {
        let no_room = StreamError::NoRoom {
            stream: self.id,
            op,
        };
        let Some(p) = self.params else {
            return Err(self.invalid_state(op));
        };
        let buffer = u64::from(p.buffer_bytes);
        let len64 = u64::from(len);
        if len64 == 0 || len64 > buffer {
            return Err(no_room);
        }
        let lo = self.written;
        let hi = match self.info.kind {
            StreamKind::Playback => self
                .table
                .oldest_data_start(self.epoch)
                .unwrap_or(self.submitted)
                .saturating_add(buffer),
            StreamKind::Capture => self.consumed.saturating_add(buffer),
        };
        let Some(mut start) = hi.checked_sub(len64) else {
            return Err(no_room);
        };
        let off = start % buffer;
        if off + len64 > buffer {
            start -= off + len64 - buffer;
        }
        if start < lo {
            return Err(no_room);
        }
        let offset = u32::try_from(start % buffer).map_err(|_| no_room)?;
        Ok(Scratch { start, offset, len })
    }

    fn submit_volume_request(
        &mut self,
        op: StreamOp,
        values: &[u8],
        now_ns: u64,
    ) -> Result<(), StreamError> {
        let len = u32::try_from(values.len()).unwrap_or(u32::MAX);
        let sc = match self.reserve_scratch(op, len) {
            Ok(sc) => sc,
            Err(e) => {
                if matches!(e, StreamError::NoRoom { .. }) {
                    // Keep room for the next attempt.
                    self.scratch_wanted = u64::from(len);
                }
                return Err(e);
            }
        };
        self.scratch_wanted = 0;
        let Some(buf) = self.buffer.as_ref() else {
            return Err(self.invalid_state(op));
        };
        let at = usize::try_from(sc.offset).unwrap_or(usize::MAX);
        buf.write_bytes(at, values)
            .map_err(|source| StreamError::Shm {
                stream: self.id,
                op,
                source,
            })?;
        let rw = RwParams {
            offset: sc.offset,
            length: sc.len,
        };
        let body = match op {
            StreamOp::SetVolume => RequestBody::SetVolume(rw),
            StreamOp::GetVolume => RequestBody::GetVolume(rw),
            StreamOp::Mute => RequestBody::Mute(rw),
            _ => RequestBody::Unmute(rw),
        };
        self.scratch = Some(sc);
        if let Err(e) = self.push_control(op, body, now_ns) {
            self.scratch = None;
            return Err(e);
        }
        Ok(())
    }

    fn read_volumes(&mut self, sc: Scratch) {
        let Some(buf) = self.buffer.as_ref() else {
            return;
        };
        let mut raw = [0u8; 4 * MAX_VOLUME_CHANNELS];
        let len = usize::try_from(sc.len).unwrap_or(usize::MAX);
        let Some(dst) = raw.get_mut(..len) else {
            return;
        };
        let at = usize::try_from(sc.offset).unwrap_or(usize::MAX);
        if buf.read_bytes(at, dst).is_err() {
            return;
        }
        let mut n = 0;
        for (v, c) in self.volume_read.iter_mut().zip(dst.chunks_exact(4)) {
            *v = <[u8; 4]>::try_from(c).map_or(0, i32::from_le_bytes);
            n += 1;
        }
        self.volume_read_len = n;
    }

    /// Takes the outcome of the last control request, if it finished.
    pub fn take_control_result(&mut self) -> Option<(StreamOp, Result<ControlReply, StreamError>)> {
        if let Control::Done { .. } = self.control {
            if let Control::Done { op, result } =
                core::mem::replace(&mut self.control, Control::Idle)
            {
                return Some((op, result));
            }
        }
        None
    }

    /// Sets the playback pre-fill target for [`Stream::arm_start`] (clamped to the buffer);
    /// `None` restores the default, half the buffer.
    pub fn set_prefill_frames(&mut self, frames: Option<u32>) {
        self.prefill_frames = frames;
        self.update_prefill_target();
    }

    fn update_prefill_target(&mut self) {
        if let Some(p) = self.params {
            let buffer = u64::from(p.buffer_bytes);
            let fb = u64::from(p.frame_bytes);
            self.prefill_target = match self.prefill_frames {
                Some(f) => (u64::from(f) * fb).min(buffer),
                None => (buffer / 2 / fb * fb).max(fb.min(buffer)),
            };
        }
    }

    // ---- blocking helpers -------------------------------------------------------------------

    fn now(&self) -> u64 {
        self.options.clock.now_ns()
    }

    /// Waits for the pending control request (bounded by the request timeout); services the
    /// stream meanwhile.
    /// Submits a control request that takes only the time and waits for its answer.
    fn blocking(
        &mut self,
        op: StreamOp,
        submit: fn(&mut Self, u64) -> Result<(), StreamError>,
    ) -> Result<(), StreamError> {
        let now = self.now();
        submit(self, now)?;
        self.wait_control(op).map(|_| ())
    }

    fn wait_control(&mut self, op: StreamOp) -> Result<ControlReply, StreamError> {
        let budget = self.options.request_timeout;
        let deadline = Instant::now() + budget;
        loop {
            let now = self.now();
            self.service(now);
            if let Some((_, result)) = self.take_control_result() {
                return result;
            }
            self.refuse_if_dead(op)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.expire_control();
                return match self.take_control_result() {
                    Some((_, result)) => result,
                    None => Err(self.timeout_error(op)),
                };
            }
            sys::wait_readable(self.evtchn.fd(), Some(left)).map_err(|e| StreamError::Poll {
                stream: self.id,
                op,
                errno: e.raw_os_error().unwrap_or(0),
            })?;
        }
    }

    fn timeout_error(&self, op: StreamOp) -> StreamError {
        StreamError::Timeout {
            stream: self.id,
            op,
            timeout_ms: u64::try_from(self.options.request_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// HW_PARAM_QUERY, blocking.
    pub fn hw_param_query(&mut self, space: HwParam) -> Result<HwParam, StreamError> {
        let now = self.now();
        self.submit_hw_param_query(space, now)?;
        match self.wait_control(StreamOp::HwParamQuery)? {
            ControlReply::HwParam(hw) => Ok(hw),
            // A successful status always decodes with parameters; keep the request unchanged
            // otherwise (an echo).
            ControlReply::Done => Ok(space),
        }
    }

    /// OPEN (CLOSE first if open), blocking.
    pub fn open(&mut self, params: PcmParams) -> Result<ActiveParams, StreamError> {
        let now = self.now();
        let active = self.submit_open(params, now)?;
        self.wait_control(StreamOp::Open)?;
        Ok(active)
    }

    /// TRIGGER START now, blocking.
    pub fn start(&mut self) -> Result<(), StreamError> {
        self.blocking(StreamOp::Start, Self::submit_start)
    }

    /// TRIGGER PAUSE, blocking.
    pub fn pause(&mut self) -> Result<(), StreamError> {
        self.blocking(StreamOp::Pause, Self::submit_pause)
    }

    /// TRIGGER RESUME, blocking.
    pub fn resume(&mut self) -> Result<(), StreamError> {
        self.blocking(StreamOp::Resume, Self::submit_resume)
    }

    /// TRIGGER STOP, blocking.
    pub fn stop(&mut self) -> Result<(), StreamError> {
        self.blocking(StreamOp::Stop, Self::submit_stop)
    }

    /// CLOSE, blocking.
    pub fn close(&mut self) -> Result<(), StreamError> {
        self.blocking(StreamOp::Close, Self::submit_close)
    }

    /// SET_VOLUME, blocking.
    pub fn set_volume(&mut self, volumes: &[i32]) -> Result<(), StreamError> {
        let now = self.now();
        self.submit_set_volume(volumes, now)?;
        self.wait_control(StreamOp::SetVolume).map(|_| ())
    }

    /// GET_VOLUME, blocking: the volume of every channel, 0.001 dB steps.
    pub fn get_volume(&mut self) -> Result<Vec<i32>, StreamError> {
        let now = self.now();
        self.submit_get_volume(now)?;
        self.wait_control(StreamOp::GetVolume)?;
        Ok(self.last_volume().to_vec())
    }

    /// MUTE or UNMUTE, blocking.
    pub fn mute(&mut self, mute: bool, channels: &[bool]) -> Result<(), StreamError> {
        let now = self.now();
        self.submit_mute(mute, channels, now)?;
        let op = if mute {
            StreamOp::Mute
        } else {
            StreamOp::Unmute
        };
        self.wait_control(op).map(|_| ())
    }

    // ---- servicing ---------------------------------------------------------------------------

    fn fail(&mut self, error: StreamError) {
        if matches!(self.state, StreamState::Failed(_) | StreamState::Revoked) {
            return;
        }
        if error.protocol().is_some() {
            bump(&self.stats.protocol_errors);
        }
        if let Control::Pending { op } | Control::Done { op, .. } = self.control {
            self.control = Control::Done {
                op,
                result: Err(error.clone()),
            };
        } else if self.control == Control::Armed {
            self.control = Control::Done {
                op: StreamOp::Start,
                result: Err(error.clone()),
            };
        }
        self.state = StreamState::Failed(error);
        let bit = 1u64 << self.id.card_index.min(63);
        self.link.failed.fetch_or(bit, Ordering::AcqRel);
        self.link.wake();
    }

    fn fail_protocol(&mut self, error: ProtocolError) {
        self.fail(StreamError::Protocol {
            stream: self.id,
            error,
        });
    }

    /// Consumes responses and events, expires overdue requests and issues what is due. Call it
    /// when [`Stream::fd`] is readable and periodically (for timeouts). Realtime-safe.
    pub fn service(&mut self, now_ns: u64) -> ServiceReport {
        let mut report = ServiceReport::default();
        let requests_before = self.stats.requests.load(Ordering::Relaxed);
        if self.link.is_revoked() && !matches!(self.state, StreamState::Failed(_)) {
            self.state = StreamState::Revoked;
        }
        if matches!(self.state, StreamState::Failed(_) | StreamState::Revoked) {
            self.drain_evtchn();
            return report;
        }
        self.drain_evtchn();
        self.take_responses(now_ns, &mut report);
        self.take_events(now_ns, &mut report);
        self.expire(now_ns, false, &mut report);
        if matches!(self.state, StreamState::Failed(_)) {
            return report;
        }
        self.progress(now_ns);
        self.flush();
        let issued = self
            .stats
            .requests
            .load(Ordering::Relaxed)
            .saturating_sub(requests_before);
        report.issued = u32::try_from(issued).unwrap_or(u32::MAX);
        report
    }

    fn drain_evtchn(&mut self) {
        for _ in 0..8 {
            match self.evtchn.pending() {
                Ok(Some(port)) => {
                    if let Err(e) = self.evtchn.unmask(port) {
                        self.fail(StreamError::Evtchn {
                            stream: self.id,
                            op: StreamOp::Service,
                            source: e.into(),
                        });
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.fail(StreamError::Evtchn {
                        stream: self.id,
                        op: StreamOp::Service,
                        source: e.into(),
                    });
                    return;
                }
            }
        }
    }

    fn take_responses(&mut self, now_ns: u64, report: &mut ServiceReport) {
        let mut budget = RESPONSES_PER_SERVICE;
        loop {
            loop {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                match self.ring.take_response() {
                    Ok(Some(rsp)) => {
                        report.responses += 1;
                        if let Err(e) = self.on_response(rsp, now_ns, report) {
                            self.fail_protocol(e);
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.fail_protocol(ProtocolError::Ring(e));
                        return;
                    }
                }
            }
            match self.ring.rearm() {
                Ok(false) => return,
                Ok(true) => continue,
                Err(e) => {
                    self.fail_protocol(ProtocolError::Ring(e));
                    return;
                }
            }
        }
    }

    fn on_response(
        &mut self,
        rsp: Response,
        now_ns: u64,
        report: &mut ServiceReport,
    ) -> Result<(), ProtocolError> {
        let Some(entry) = self.table.get(rsp.id).copied() else {
            return Err(ProtocolError::UnknownId {
                id: rsp.id,
                operation: rsp.operation,
            });
        };
        if entry.operation != rsp.operation {
            return Err(ProtocolError::WrongOperation {
                id: rsp.id,
                expected: entry.operation,
                got: rsp.operation,
            });
        }
        if entry.timed_out {
            return Err(ProtocolError::LateResponse {
                id: rsp.id,
                operation: rsp.operation,
            });
        }
        self.table.take(rsp.id);
        self.last_progress_ns = now_ns;
        self.link.consecutive_timeouts.store(0, Ordering::Release);
        bump(&self.stats.responses);
        let ok = rsp.is_ok();
        if !ok {
            bump(&self.stats.backend_errors);
        }
        let current = entry.epoch == self.epoch;
        match entry.purpose {
            Purpose::Write { len, .. } => {
                if current {
                    if ok {
                        add(&self.stats.bytes_written, u64::from(len));
                    } else {
                        // The backend refused these bytes: it will never report them as played.
                        self.tracker.skip(u64::from(len), self.submitted);
                    }
                }
            }
            Purpose::Read { start, len } => {
                if current {
                    if ok {
                        add(&self.stats.bytes_read, u64::from(len));
                    } else {
                        self.fill_silence(start, len);
                    }
                    self.completed = self
                        .table
                        .oldest_data_start(self.epoch)
                        .unwrap_or(self.written);
                }
            }
            Purpose::Control { op, last } => {
                if last {
                    self.on_control_response(op, &rsp, now_ns);
                    report.control_done = true;
                }
            }
        }
        Ok(())
    }

    fn on_control_response(&mut self, op: StreamOp, rsp: &Response, now_ns: u64) {
        let result = if rsp.is_ok() {
            Ok(match rsp.body {
                ResponseBody::HwParam(hw) => ControlReply::HwParam(hw),
                ResponseBody::Empty => ControlReply::Done,
            })
        } else {
            Err(StreamError::Backend {
                stream: self.id,
                op,
                status: rsp.status,
            })
        };
        let ok = result.is_ok();
        match op {
            StreamOp::Open => {
                if ok {
                    self.state = StreamState::Stopped;
                } else {
                    self.state = StreamState::Closed;
                    self.params = None;
                }
            }
            StreamOp::Close => {
                // Whatever the backend says, the stream is not usable as open any more.
                self.state = StreamState::Closed;
                self.params = None;
                self.scratch = None;
            }
            StreamOp::Start | StreamOp::Resume if ok => {
                self.state = StreamState::Running;
                if let Some(est) = self.estimator.as_mut() {
                    est.resync(now_ns, self.tracker.position_frames() as f64);
                }
            }
            StreamOp::Pause if ok => self.state = StreamState::Paused,
            StreamOp::SetVolume | StreamOp::GetVolume | StreamOp::Mute | StreamOp::Unmute => {
                if let Some(sc) = self.scratch.take() {
                    if ok && op == StreamOp::GetVolume {
                        self.read_volumes(sc);
                    }
                }
            }
            StreamOp::Stop if ok => {
                self.state = StreamState::Stopped;
                if self.info.kind == StreamKind::Playback {
                    // Unsubmitted data is discarded; everything submitted counts as consumed
                    // (the backend dropped or will play it; pacing must not wait for it).
                    self.written = self.submitted;
                    self.tracker.advance_to(self.submitted);
                }
            }
            _ => {}
        }
        self.control = Control::Done { op, result };
    }

    fn take_events(&mut self, now_ns: u64, report: &mut ServiceReport) {
        let mut n = 0;
        while n < EVENTS_PER_SERVICE {
            match self.events.take() {
                Ok(Some(ev)) => {
                    n += 1;
                    bump(&self.stats.events);
                    match ev.kind {
                        EventKind::CurPos { position } => self.on_position(position, now_ns),
                    }
                }
                Ok(None) => break,
                Err(EventError::Malformed { .. }) => {
                    // An event type this engine does not know: skipped (forward compatible).
                    n += 1;
                    bump(&self.stats.ignored_events);
                    bump(&self.stats.protocol_errors);
                }
                Err(e) => {
                    self.fail_protocol(ProtocolError::EventPage(e));
                    return;
                }
            }
        }
        report.events = n;
        if n >= EVENTS_PER_SERVICE {
            report.more_pending = true;
            bump(&self.stats.event_batches_capped);
        }
    }

    fn on_position(&mut self, raw: u64, now_ns: u64) {
        let Some(p) = self.params else {
            return;
        };
        if !self.state.is_open() {
            return;
        }
        let limit = match self.info.kind {
            StreamKind::Playback => self.submitted,
            StreamKind::Capture => u64::MAX,
        };
        let update = self.tracker.update(raw, limit);
        self.last_position_ns = now_ns;
        self.last_progress_ns = now_ns;
        let frames = self.tracker.position_bytes() as f64 / f64::from(p.frame_bytes.max(1));
        match update {
            PositionUpdate::Advanced { .. } => {
                if let Some(est) = self.estimator.as_mut() {
                    est.update(now_ns, frames);
                }
            }
            PositionUpdate::Frozen => bump(&self.stats.frozen_positions),
            PositionUpdate::Restarted { .. } => {
                bump(&self.stats.position_restarts);
                if let Some(est) = self.estimator.as_mut() {
                    est.resync(now_ns, frames);
                }
            }
            PositionUpdate::Underrun { missing, .. } => {
                bump(&self.stats.underruns);
                add(&self.stats.underrun_bytes, missing);
                if let Some(est) = self.estimator.as_mut() {
                    est.resync(now_ns, frames);
                }
            }
        }
    }

    /// Marks overdue requests timed out (all pending control requests if `force_control`).
    fn expire(&mut self, now_ns: u64, force_control: bool, report: &mut ServiceReport) {
        let mut expired_control: Option<StreamOp> = None;
        let mut expired = u32::from(self.watchdog(now_ns));
        for e in self.table.iter_mut() {
            if e.timed_out {
                continue;
            }
            let is_control = matches!(e.purpose, Purpose::Control { .. });
            if now_ns >= e.deadline_ns || (force_control && is_control) {
                e.timed_out = true;
                expired += 1;
                if let Purpose::Control { op, last: true } = e.purpose {
                    expired_control = Some(op);
                }
            }
        }
        if expired == 0 {
            return;
        }
        report.timed_out += expired;
        add(&self.stats.timeouts, u64::from(expired));
        self.link
            .consecutive_timeouts
            .fetch_add(expired, Ordering::AcqRel);
        self.link.wake();
        if let Some(op) = expired_control {
            if self.control == (Control::Pending { op }) {
                self.control = Control::Done {
                    op,
                    result: Err(self.timeout_error(op)),
                };
                report.control_done = true;
            }
        }
    }

    /// A running stream that waits for the backend (playback with data submitted but not yet
    /// reported played, or capture) and has heard nothing — no response, no position — for a
    /// request timeout counts one timeout, re-armed each timeout interval. Without it a backend
    /// that died while playback waited for positions (nothing in flight) would go unnoticed.
    fn watchdog(&mut self, now_ns: u64) -> bool {
        if self.state != StreamState::Running {
            return false;
        }
        let waiting = match self.info.kind {
            StreamKind::Playback => self.submitted > self.tracker.position_bytes(),
            StreamKind::Capture => true,
        };
        let timeout = u64::try_from(self.options.request_timeout.as_nanos()).unwrap_or(u64::MAX);
        if !waiting || now_ns.saturating_sub(self.last_progress_ns) < timeout {
            return false;
        }
        self.last_progress_ns = now_ns;
        bump(&self.stats.position_timeouts);
        true
    }

    fn expire_control(&mut self) {
        let mut report = ServiceReport::default();
        let now = self.now();
        self.expire(now, true, &mut report);
    }

    /// Issues the data requests (and the armed START) that are due.
    fn progress(&mut self, now_ns: u64) {
        let Some(p) = self.params else {
            return;
        };
        // No new data requests behind a pending OPEN/CLOSE/STOP/PAUSE.
        if let Control::Pending { op } = self.control {
            if op != StreamOp::Start
                && op != StreamOp::Resume
                && op != StreamOp::HwParamQuery
                && !op.is_volume()
            {
                return;
            }
        }
        match self.info.kind {
            StreamKind::Playback => {
                if matches!(self.state, StreamState::Stopped | StreamState::Running) {
                    self.issue_writes(&p, now_ns);
                }
                if self.control == Control::Armed
                    && self.state == StreamState::Stopped
                    && self.submitted >= self.prefill_target
                {
                    match self.push(
                        RequestBody::Trigger(TriggerType::Start),
                        Purpose::Control {
                            op: StreamOp::Start,
                            last: true,
                        },
                        now_ns,
                    ) {
                        Ok(_) => {
                            self.control = Control::Pending {
                                op: StreamOp::Start,
                            }
                        }
                        Err(StreamError::RingFull { .. }) => {}
                        Err(e) => self.fail(e),
                    }
                }
            }
            StreamKind::Capture => {
                if self.state == StreamState::Running {
                    self.issue_reads(&p, now_ns);
                }
            }
        }
    }

    fn max_chunk(&self, p: &ActiveParams) -> u64 {
        u64::from(p.period_bytes) * u64::from(self.options.max_request_periods.max(1))
    }

    /// Free slots for data requests: keep one ring slot for a control request.
    fn data_slots(&self) -> u32 {
        let by_option = self
            .options
            .max_data_requests
            .max(1)
            .saturating_sub(self.table.data_requests(self.epoch));
        by_option.min(self.ring.free_requests().saturating_sub(1))
    }

    fn issue_writes(&mut self, p: &ActiveParams, now_ns: u64) {
        let buffer = u64::from(p.buffer_bytes);
        let fb = u64::from(p.frame_bytes.max(1));
        let max_chunk = self.max_chunk(p);
        for _ in 0..self.data_slots() {
            let pending = self.written.saturating_sub(self.submitted);
            let paced = (self.tracker.position_bytes().saturating_add(buffer))
                .saturating_sub(self.submitted);
            let offset = self.submitted % buffer.max(1);
            let to_wrap = buffer - offset;
            let chunk = pending.min(paced).min(to_wrap).min(max_chunk) / fb * fb;
            if chunk == 0 {
                return;
            }
            let (Ok(off32), Ok(len32)) = (u32::try_from(offset), u32::try_from(chunk)) else {
                return;
            };
            let start = self.submitted;
            match self.push(
                RequestBody::Write(RwParams {
                    offset: off32,
                    length: len32,
                }),
                Purpose::Write { start, len: len32 },
                now_ns,
            ) {
                Ok(_) => self.submitted = start + chunk,
                Err(StreamError::RingFull { .. }) => return,
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
    }

    fn issue_reads(&mut self, p: &ActiveParams, now_ns: u64) {
        let buffer = u64::from(p.buffer_bytes);
        let fb = u64::from(p.frame_bytes.max(1));
        let read_ahead =
            u64::from(p.period_bytes) * u64::from(self.options.capture_read_ahead_periods.max(1));
        let max_chunk = self.max_chunk(p);
        for _ in 0..self.data_slots() {
            let in_flight = self.written.saturating_sub(self.completed);
            let free = buffer.saturating_sub(self.written.saturating_sub(self.consumed));
            // Never read into the values of a volume request in flight, and leave room for one
            // that is waiting for it.
            let room = free.saturating_sub(self.scratch_wanted).min(
                self.scratch
                    .map_or(u64::MAX, |sc| sc.start.saturating_sub(self.written)),
            );
            if room == 0 {
                // Nothing more can be requested until the reader catches up. That is an overrun
                // once the backend's position passes what was requested: it holds captured data
                // there is no room for (also when the last free bytes are kept for volume
                // values). A backend that answers READs ahead of its position (the reference
                // backend answers at once) merely waits.
                if in_flight == 0
                    && !self.overrun_latched
                    && self.tracker.position_bytes() > self.written
                {
                    self.overrun_latched = true;
                    bump(&self.stats.overruns);
                }
                return;
            }
            if in_flight >= read_ahead {
                return;
            }
            let offset = self.written % buffer.max(1);
            let to_wrap = buffer - offset;
            let chunk = room.min(to_wrap).min(max_chunk).min(read_ahead - in_flight) / fb * fb;
            if chunk == 0 {
                return;
            }
            let (Ok(off32), Ok(len32)) = (u32::try_from(offset), u32::try_from(chunk)) else {
                return;
            };
            let start = self.written;
            match self.push(
                RequestBody::Read(RwParams {
                    offset: off32,
                    length: len32,
                }),
                Purpose::Read { start, len: len32 },
                now_ns,
            ) {
                Ok(_) => {
                    self.written = start + chunk;
                    self.overrun_latched = false;
                }
                Err(StreamError::RingFull { .. }) => return,
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
    }

    // ---- data path ---------------------------------------------------------------------------

    fn data_state_ok(&self) -> bool {
        !self.link.is_revoked()
            && matches!(
                self.state,
                StreamState::Stopped | StreamState::Running | StreamState::Paused
            )
    }

    /// Playback: bytes the owner may write now (whole frames).
    fn writable_bytes(&self) -> u64 {
        let Some(p) = self.params else {
            return 0;
        };
        if self.info.kind != StreamKind::Playback || !self.data_state_ok() {
            return 0;
        }
        let buffer = u64::from(p.buffer_bytes);
        let fb = u64::from(p.frame_bytes.max(1));
        // The oldest region the backend may still read.
        let released = self
            .table
            .oldest_data_start(self.epoch)
            .unwrap_or(self.submitted);
        let physical = buffer.saturating_sub(self.written.saturating_sub(released));
        let paced =
            (self.tracker.position_bytes().saturating_add(buffer)).saturating_sub(self.written);
        let before_scratch = self
            .scratch
            .map_or(u64::MAX, |sc| sc.start.saturating_sub(self.written));
        physical
            .saturating_sub(self.scratch_wanted)
            .min(paced)
            .min(before_scratch)
            / fb
            * fb
    }

    /// Playback: frames [`Stream::write`] accepts now.
    pub fn writable_frames(&self) -> u32 {
        let fb = self.params.map_or(1, |p| u64::from(p.frame_bytes.max(1)));
        u32::try_from(self.writable_bytes() / fb).unwrap_or(u32::MAX)
    }

    /// Playback: copies whole frames of `data` into the shared buffer (as many as fit, see
    /// [`Stream::writable_frames`]) and issues WRITE requests for them without waiting. Returns
    /// the bytes taken (0 if the stream is not open, not playback, revoked or failed).
    pub fn write(&mut self, data: &[u8]) -> usize {
        let (Some(p), Some(buf)) = (self.params, self.buffer.clone()) else {
            return 0;
        };
        let room = self.writable_bytes();
        let fb = u64::from(p.frame_bytes.max(1));
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let n = len.min(room) / fb * fb;
        if n == 0 {
            return 0;
        }
        let buffer = u64::from(p.buffer_bytes);
        let offset = self.written % buffer.max(1);
        let first = n.min(buffer - offset);
        let (Ok(off), Ok(first_len), Ok(total)) = (
            usize::try_from(offset),
            usize::try_from(first),
            usize::try_from(n),
        ) else {
            return 0;
        };
        let copy = |at: usize, range: core::ops::Range<usize>| -> bool {
            match data.get(range) {
                Some(src) => buf.write_bytes(at, src).is_ok(),
                None => false,
            }
        };
        if !copy(off, 0..first_len) || (total > first_len && !copy(0, first_len..total)) {
            return 0;
        }
        self.written += n;
        let now = self.now();
        self.progress(now);
        self.flush();
        total
    }

    /// Capture: frames [`Stream::read`] can return now.
    pub fn readable_frames(&self) -> u32 {
        let Some(p) = self.params else {
            return 0;
        };
        if self.info.kind != StreamKind::Capture {
            return 0;
        }
        let bytes = self.completed.saturating_sub(self.consumed);
        u32::try_from(bytes / u64::from(p.frame_bytes.max(1))).unwrap_or(u32::MAX)
    }

    /// Capture: copies completed data, whole frames, in order into `out`; returns the bytes
    /// copied. Frees buffer space and issues further READs.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let (Some(p), Some(buf)) = (self.params, self.buffer.clone()) else {
            return 0;
        };
        if self.info.kind != StreamKind::Capture || self.link.is_revoked() {
            return 0;
        }
        let fb = u64::from(p.frame_bytes.max(1));
        let avail = self.completed.saturating_sub(self.consumed);
        let len = u64::try_from(out.len()).unwrap_or(u64::MAX);
        let n = avail.min(len) / fb * fb;
        if n == 0 {
            return 0;
        }
        let buffer = u64::from(p.buffer_bytes);
        let offset = self.consumed % buffer.max(1);
        let first = n.min(buffer - offset);
        let (Ok(off), Ok(first_len), Ok(total)) = (
            usize::try_from(offset),
            usize::try_from(first),
            usize::try_from(n),
        ) else {
            return 0;
        };
        let ok_first = out
            .get_mut(0..first_len)
            .is_some_and(|dst| buf.read_bytes(off, dst).is_ok());
        let ok_second = total == first_len
            || out
                .get_mut(first_len..total)
                .is_some_and(|dst| buf.read_bytes(0, dst).is_ok());
        if !ok_first || !ok_second {
            return 0;
        }
        self.consumed += n;
        if self.data_state_ok() {
            let now = self.now();
            self.progress(now);
            self.flush();
        }
        total
    }

    fn fill_silence(&mut self, start: u64, len: u32) {
        let (Some(p), Some(buf)) = (self.params, self.buffer.as_ref()) else {
            return;
        };
        let buffer = u64::from(p.buffer_bytes.max(1));
        let Ok(off) = usize::try_from(start % buffer) else {
            return;
        };
        let Ok(len) = usize::try_from(len) else {
            return;
        };
        fill_pattern(buf, off, len, silence_pattern(p.format));
    }

    // ---- clock -------------------------------------------------------------------------------

    /// The monotonic position the backend reported, frames since OPEN.
    pub fn position_frames(&self) -> u64 {
        self.tracker.position_frames()
    }

    /// Playback: frames written but not yet played (buffered here or in the backend). Capture:
    /// frames the backend reported captured but the reader has not taken yet.
    pub fn delay_frames(&self) -> u64 {
        let fb = self.params.map_or(1, |p| u64::from(p.frame_bytes.max(1)));
        match self.info.kind {
            StreamKind::Playback => self.tracker.delay_frames(self.written),
            StreamKind::Capture => self
                .tracker
                .position_bytes()
                .saturating_sub(self.consumed)
                .checked_div(fb)
                .unwrap_or(0),
        }
    }

    /// The position tracker (counters of frozen/backwards/ahead positions).
    pub fn tracker(&self) -> &PositionTracker {
        &self.tracker
    }

    /// The rate estimator of the current OPEN.
    pub fn rate_estimator(&self) -> Option<&RateEstimator> {
        self.estimator.as_ref()
    }

    /// When the last position arrived (the `now_ns` of that [`Stream::service`] call).
    pub fn last_position_ns(&self) -> u64 {
        self.last_position_ns
    }

    /// Playback byte counters `(written, submitted)`, or capture `(requested, completed)`, since
    /// OPEN; with [`Stream::consumed_bytes`] for tests and diagnostics.
    pub fn byte_counters(&self) -> (u64, u64) {
        match self.info.kind {
            StreamKind::Playback => (self.written, self.submitted),
            StreamKind::Capture => (self.written, self.completed),
        }
    }

    /// Capture: bytes taken by the reader since OPEN.
    pub fn consumed_bytes(&self) -> u64 {
        self.consumed
    }
}

fn first_gref(
    pages: &GrantedPages,
    spec: &StreamSpec<'_>,
    what: &'static str,
) -> Result<u32, BusError> {
    pages
        .grefs
        .first()
        .copied()
        .ok_or_else(|| setup_err(spec, what, "no grant reference returned"))
}

/// The byte pattern of one silent sample of `format` (zero for signed and float formats, the
/// midpoint for unsigned ones, the codec's silence for µ-law and A-law).
pub fn silence_pattern(format: PcmFormat) -> &'static [u8] {
    format.silence()
}

/// Fills `len` bytes at `off` of `mem` with `pattern` repeated (no allocation).
pub(crate) fn fill_pattern(mem: &SharedMem, off: usize, len: usize, pattern: &[u8]) {
    if pattern.len() <= 1 {
        let _ = mem.fill(off, len, pattern.first().copied().unwrap_or(0));
        return;
    }
    let mut chunk = [0u8; 64];
    for (i, b) in chunk.iter_mut().enumerate() {
        *b = pattern.get(i % pattern.len()).copied().unwrap_or(0);
    }
    // 64 is a multiple of every sample size, so the pattern's phase is kept across chunks.
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len());
        if mem
            .write_bytes(off + done, chunk.get(..n).unwrap_or(&[]))
            .is_err()
        {
            return;
        }
        done += n;
    }
}

/// The full configuration space of `hw` as a HW_PARAM_QUERY request (buffer and period in
/// frames, from 1 frame up to the configured buffer size in the smallest frame).
pub fn query_space(hw: &PcmHw) -> HwParam {
    let min_rate = hw.rates.first().copied().unwrap_or(0);
    let max_rate = hw.rates.last().copied().unwrap_or(0);
    let smallest_sample = hw
        .formats
        .iter()
        .filter_map(PcmFormat::bytes_per_sample)
        .min()
        .unwrap_or(1);
    let min_frame = (smallest_sample * u32::from(hw.channels_min.max(1))).max(1);
    let max_frames = (hw.buffer_size / min_frame).max(1);
    HwParam {
        formats: hw.formats,
        rates: Interval::new(min_rate, max_rate),
        channels: Interval::new(u32::from(hw.channels_min), u32::from(hw.channels_max)),
        buffer: Interval::new(1, max_frames),
        period: Interval::new(1, max_frames),
    }
}

/// Intersects the xenstore configuration with a HW_PARAM_QUERY answer; `None` if nothing is
/// left.
pub fn intersect_hw(hw: &PcmHw, answer: &HwParam) -> Option<PcmHw> {
    let formats = FormatSet(hw.formats.0 & answer.formats.0 & FormatSet::VALID_BITS);
    if formats.is_empty() {
        return None;
    }
    let rates: Vec<u32> = hw
        .rates
        .iter()
        .copied()
        .filter(|r| (answer.rates.min..=answer.rates.max).contains(r))
        .collect();
    if rates.is_empty() {
        return None;
    }
    let ch_min = u8::try_from(answer.channels.min.max(u32::from(hw.channels_min))).ok()?;
    let ch_max = u8::try_from(answer.channels.max.min(u32::from(hw.channels_max))).ok()?;
    if ch_min == 0 || ch_min > ch_max {
        return None;
    }
    Some(PcmHw {
        formats,
        rates,
        channels_min: ch_min,
        channels_max: ch_max,
        buffer_size: hw.buffer_size,
    })
}

// The stream moves between threads but is never shared.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Stream>();
};

/// Pages a stream of `buffer_size` bytes shares with the backend: ring, event page, data pages
/// and directory pages (counts against the guest's grant limit, sndif.md pitfall 28).
pub fn grants_per_stream(buffer_size: u32) -> usize {
    let data = data_pages(buffer_size);
    2 + data + dir_pages(data)
}

const _: () = assert!(XEN_PAGE_SIZE == 4096);

#[cfg(test)]
mod tests {
    use super::*;

    fn hw() -> PcmHw {
        PcmHw {
            formats: [PcmFormat::S16Le, PcmFormat::F32Le].into_iter().collect(),
            rates: vec![44_100, 48_000],
            channels_min: 1,
            channels_max: 2,
            buffer_size: 65_536,
        }
    }

    #[test]
    fn query_space_covers_the_configuration() {
        let q = query_space(&hw());
        assert_eq!(q.rates, Interval::new(44_100, 48_000));
        assert_eq!(q.channels, Interval::new(1, 2));
        assert_eq!(q.buffer, Interval::new(1, 32_768));
        assert_eq!(q.period.max, 32_768);
        assert!(q.formats.contains(PcmFormat::F32Le));
    }

    #[test]
    fn intersection_narrows_and_detects_empty_answers() {
        let h = hw();
        // A PulseAudio backend echoes the request: nothing changes.
        assert_eq!(intersect_hw(&h, &query_space(&h)), Some(h.clone()));
        let mut ans = query_space(&h);
        ans.formats = FormatSet(PcmFormat::S16Le.mask_bit() | (1 << 40));
        ans.rates = Interval::new(48_000, 192_000);
        ans.channels = Interval::new(2, 8);
        let got = intersect_hw(&h, &ans).expect("non-empty");
        assert_eq!(got.formats, FormatSet(PcmFormat::S16Le.mask_bit()));
        assert_eq!(got.rates, vec![48_000]);
        assert_eq!((got.channels_min, got.channels_max), (2, 2));
        let mut none = query_space(&h);
        none.formats = FormatSet(PcmFormat::U8.mask_bit());
        assert_eq!(intersect_hw(&h, &none), None);
        let mut none = query_space(&h);
        none.rates = Interval::new(8000, 16_000);
        assert_eq!(intersect_hw(&h, &none), None);
        let mut none = query_space(&h);
        none.channels = Interval::new(3, 300);
        assert_eq!(intersect_hw(&h, &none), None);
    }

    #[test]
    fn silence_patterns() {
        assert_eq!(silence_pattern(PcmFormat::S16Le), &[0]);
        assert_eq!(silence_pattern(PcmFormat::U8), &[0x80]);
        assert_eq!(silence_pattern(PcmFormat::U16Be), &[0x80, 0]);
        let mem = SharedMem::heap_pages(1).expect("page");
        mem.fill(0, 4096, 0x11).expect("fill");
        fill_pattern(&mem, 4, 200, silence_pattern(PcmFormat::U16Le));
        let mut b = [0u8; 208];
        mem.read_bytes(0, &mut b).expect("read");
        assert_eq!(&b[..4], &[0x11; 4]);
        for i in 0..100 {
            assert_eq!(&b[4 + 2 * i..6 + 2 * i], &[0x00, 0x80], "sample {i}");
        }
        assert_eq!(&b[204..], &[0x11; 4]);
    }

    #[test]
    fn default_params_prefer_s16_48k_stereo() {
        let info = StreamInfo {
            id: StreamId {
                card: 0,
                device: 0,
                stream: 0,
                card_index: 0,
            },
            kind: StreamKind::Playback,
            unique_id: None,
            device_name: None,
            hw: hw(),
            xenstore_hw: hw(),
            backend_hw: None,
            capacity_bytes: 65_536,
        };
        let p = info.default_params().expect("params");
        assert_eq!(p.format, PcmFormat::S16Le);
        assert_eq!(p.rate, 48_000);
        assert_eq!(p.channels, 2);
        assert_eq!(p.period_frames, 960);
        assert_eq!(p.buffer_frames, 4 * 960);
        let mut small = info.clone();
        small.capacity_bytes = 2048;
        let p = small.default_params().expect("params");
        assert_eq!(p.period_frames, 256);
        assert_eq!(p.buffer_frames, 512);
        let mut odd = info;
        odd.hw.formats = FormatSet(PcmFormat::F32Le.mask_bit());
        odd.hw.rates = vec![8000, 44_100];
        odd.hw.channels_min = 4;
        odd.hw.channels_max = 6;
        let p = odd.default_params().expect("params");
        assert_eq!(
            (p.format, p.rate, p.channels),
            (PcmFormat::F32Le, 44_100, 4)
        );
        assert_eq!(grants_per_stream(65_536), 2 + 16 + 1);
    }
}
