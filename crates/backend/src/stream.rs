//! One stream's worker thread: serves the request ring one request at a time, in order, and
//! produces the timer-driven CUR_POS events (sndif.md §5.3–§5.6, like snd_be's ring thread).
//!
//! # Semantics
//!
//! - **OPEN** validates format, rate and channels against the stream's xenstore configuration
//!   (`-EINVAL` otherwise; see [`crate::hwparams::check_open`]), maps the page directory one
//!   page at a time following `gref_dir_next_page`, then all data pages in one `map` call
//!   (`-EFAULT` when that fails). An OPEN while open replaces the mapping. `period_sz` 0 means
//!   4096 frames (ALSA snd_be). The position and the written/read byte counts restart at 0.
//! - **CLOSE** drops the mapping and stops the clock; always succeeds.
//! - **WRITE** (playback only) copies `[offset, offset+length)` out of the buffer into the sinks
//!   (SHA-256, WAV, loop) before anything else; the range must lie inside `buffer_sz`
//!   (`-EINVAL`). With [`WritePacing::Queue`] (default) the response is sent once the data is
//!   accepted by the simulated device, whose queue holds `buffer_sz` bytes: at once while
//!   `written − position ≤ buffer_sz`, else when the clock has played enough (so a frontend may
//!   pre-fill one buffer before START, and a WRITE beyond that blocks the ring like ALSA snd_be).
//!   With [`WritePacing::Immediate`] it is answered at once (PulseAudio snd_be).
//! - **READ** (capture only) fills the range from the source and answers at once.
//! - **TRIGGER** START/RESUME start the position clock, PAUSE/STOP freeze it. The position is
//!   monotonic from OPEN to CLOSE (it is not reset by STOP/START, as the PulseAudio snd_be).
//! - **HW_PARAM_QUERY**: see [`crate::hwparams`].
//! - **SET_VOLUME/GET_VOLUME/MUTE/UNMUTE**: `-EINVAL` unless volume support is on; then the
//!   stream must be open (`-EIO`), the range must hold one `i32` (volume, 0.001 dB steps) or one
//!   `u8` (mute flags: non-zero = apply to that channel) per channel (`-EINVAL`); SET/MUTE/UNMUTE
//!   store the values, GET writes the stored volumes (initially 0) into the range.
//! - A request on a stream that is not open (other than OPEN, CLOSE, HW_PARAM_QUERY and the
//!   volume ops without volume support) gets `-EIO`; an undecodable request `-EINVAL` with the
//!   slot's id and raw operation byte.
//!
//! # Position and CUR_POS
//!
//! While running, the position advances with the clock at `rate` frames per second; for
//! playback it never passes the bytes written since OPEN: when it catches up, the device waits
//! for data (an underrun, counted) and resumes when a WRITE arrives. A CUR_POS with the position
//! (octets since OPEN) is sent every period (`period_sz` octets worth of time, measured from
//! START/RESUME); if the clock jumped over several periods, one event is sent. Event ids count
//! from 0 at bind time and also advance for events dropped on a full event page.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::Digest;
use sndif::layout::{EVT_PAGE_IN_PROD, RING_RSP_PROD};
use sndif::wire::{Msg, OpenParams, RwParams};
use sndif::{
    read_directory, BackRing, Event, EventError, EventKind, EventWriter, Operation, PgdirError,
    Request, RequestBody, Response, ResponseBody, RingError, SharedMem, ShmError, StreamConfig,
    StreamKind, TriggerType,
};
use xen_access::{DomId, EvtchnError, EvtchnHandle, GrantMap, Port};

use crate::clock::Clock;
use crate::errno::{EFAULT, EINVAL, EIO};
use crate::hwparams::{answer_query, check_open};
use crate::ids::StreamId;
use crate::log::{Level, Log, LogWhat};
use crate::media::{lock, CaptureSource, LoopFifo, Loops, StreamSetup, StreamShared};
use crate::misbehave::{offset_position, wrong_id, Misbehave, BOGUS_INDEX_AHEAD};
use crate::pattern::{pattern_fill, stream_seed};
use crate::wake::{poll_readable, WakeFd};
use crate::wav::WavWriter;

/// Frames per period when OPEN says `period_sz = 0` (ALSA snd_be's substitute).
pub const DEFAULT_PERIOD_FRAMES: u64 = 4096;

const NANOS: u128 = 1_000_000_000;

/// When a WRITE is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WritePacing {
    /// When the simulated device queue (`buffer_sz` bytes) has accepted the data (ALSA-like).
    #[default]
    Queue,
    /// At once (PulseAudio-like).
    Immediate,
}

/// Why a stream worker stopped serving (the device then goes to Closed, as libxenbe's
/// `onError`).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The request ring is broken (e.g. `req_prod` too far ahead).
    #[error("stream {id}: request ring: {source}")]
    Ring {
        /// The stream.
        id: StreamId,
        /// What the ring code reported.
        #[source]
        source: RingError,
    },
    /// The event page is broken.
    #[error("stream {id}: event page: {source}")]
    Event {
        /// The stream.
        id: StreamId,
        /// What the event code reported.
        #[source]
        source: EventError,
    },
    /// An event-channel operation failed.
    #[error("stream {id}: event channel: {source}")]
    Evtchn {
        /// The stream.
        id: StreamId,
        /// What failed.
        #[source]
        source: EvtchnError,
    },
    /// Waiting failed.
    #[error("stream {id}: poll: {source}")]
    Poll {
        /// The stream.
        id: StreamId,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A shared-memory access failed.
    #[error("stream {id}: shared memory: {source}")]
    Shm {
        /// The stream.
        id: StreamId,
        /// What failed.
        #[source]
        source: ShmError,
    },
}

/// What a worker needs besides its rings.
pub(crate) struct StreamContext {
    pub(crate) id: StreamId,
    pub(crate) fe: DomId,
    pub(crate) config: Result<StreamConfig, String>,
    pub(crate) setup: StreamSetup,
    pub(crate) grants: Arc<dyn GrantMap>,
    pub(crate) clock: Clock,
    pub(crate) volume: bool,
    pub(crate) pacing: WritePacing,
    pub(crate) wav_dir: Option<PathBuf>,
    pub(crate) shared: Arc<StreamShared>,
    pub(crate) loops: Arc<Loops>,
    pub(crate) log: Log,
    /// Where a failing worker reports (to the control thread).
    pub(crate) failures: Sender<(StreamId, String)>,
    pub(crate) control_wake: Arc<WakeFd>,
}

/// The bound rings of one stream.
pub(crate) struct BoundRings {
    pub(crate) ring: BackRing,
    pub(crate) events: EventWriter,
    pub(crate) evtchn: Box<dyn EvtchnHandle>,
    pub(crate) req_port: Port,
    pub(crate) evt_port: Port,
}

/// A running worker.
#[derive(Debug)]
pub(crate) struct StreamHandle {
    pub(crate) id: StreamId,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    wake: Arc<WakeFd>,
}

impl StreamHandle {
    /// Stops the worker and waits for it; its mappings and ports are gone afterwards.
    pub(crate) fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Starts the worker of one bound stream.
pub(crate) fn spawn(ctx: StreamContext, rings: BoundRings) -> io::Result<StreamHandle> {
    let wake = Arc::new(WakeFd::new()?);
    let stop = Arc::new(AtomicBool::new(false));
    ctx.clock.register(&wake);
    let id = ctx.id;
    {
        let mut g = ctx.shared.lock();
        g.waker = Some(Arc::clone(&wake));
        g.stats.bound = true;
        g.stats.running = false;
        g.stats.kind = ctx.config.as_ref().ok().map(|c| c.kind);
    }
    let worker = Worker {
        ctx,
        rings,
        wake: Arc::clone(&wake),
        stop: Arc::clone(&stop),
        open: None,
        event_id: 0,
        pending: None,
        stalled: None,
        misbehave: Misbehave::None,
    };
    let thread = std::thread::Builder::new()
        .name(format!("vsnd-{id}"))
        .spawn(move || worker.run())?;
    Ok(StreamHandle {
        id,
        thread: Some(thread),
        stop,
        wake,
    })
}

/// A response waiting for its moment.
struct Pending {
    msg: Msg,
    id: u16,
    op: String,
    status: i32,
    detail: String,
    /// Not before this clock time (late misbehaviour).
    ready_at: Option<Duration>,
    /// WRITE pacing: not before `written − position ≤ buffer_sz`.
    needs_room: bool,
}

/// The state of an open stream.
struct OpenState {
    params: OpenParams,
    buffer: SharedMem,
    frame_bytes: u64,
    rate: u64,
    period_frames: u64,
    playback: bool,
    /// Bytes written since OPEN (playback).
    written: u64,
    /// Bytes read since OPEN (capture pattern offset).
    read_cursor: u64,
    running: bool,
    anchor_time: Duration,
    anchor_frames: u64,
    starved: bool,
    tick_base: Duration,
    ticks: u64,
    volume: Vec<i32>,
    mute: Vec<bool>,
}

impl OpenState {
    fn frames_at(&self, now: Duration) -> u64 {
        if !self.running {
            return self.anchor_frames;
        }
        let ns = now.saturating_sub(self.anchor_time).as_nanos();
        let adv =
            u64::try_from(ns.saturating_mul(u128::from(self.rate)) / NANOS).unwrap_or(u64::MAX);
        self.anchor_frames.saturating_add(adv)
    }

    /// The position in frames at `now`; for playback clamped to the frames written (the device
    /// then waits for data from `now` on). Returns the position and whether an underrun began.
    fn update(&mut self, now: Duration) -> (u64, bool) {
        let f = self.frames_at(now);
        if self.playback {
            let wf = self.written / self.frame_bytes;
            if f > wf {
                let began = self.running && !self.starved;
                if self.running {
                    self.anchor_time = now;
                    self.anchor_frames = wf;
                    self.starved = true;
                }
                return (wf, began);
            }
        }
        (f, false)
    }

    fn position_bytes(&mut self, now: Duration) -> (u64, bool) {
        let (f, u) = self.update(now);
        (f.saturating_mul(self.frame_bytes), u)
    }

    fn start(&mut self, now: Duration) {
        if self.running {
            return;
        }
        self.anchor_time = now;
        self.running = true;
        self.tick_base = now;
        self.ticks = 0;
    }

    fn stop(&mut self, now: Duration) {
        if !self.running {
            return;
        }
        let (f, _) = self.update(now);
        self.anchor_frames = f;
        self.anchor_time = now;
        self.running = false;
    }

    fn frames_to_ns(&self, frames: u64) -> Duration {
        let ns = (u128::from(frames) * NANOS).div_ceil(u128::from(self.rate.max(1)));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn next_tick(&self) -> Option<Duration> {
        if !self.running {
            return None;
        }
        let frames = self
            .ticks
            .saturating_add(1)
            .saturating_mul(self.period_frames);
        Some(self.tick_base.saturating_add(self.frames_to_ns(frames)))
    }

    fn ticks_elapsed(&self, now: Duration) -> u64 {
        let ns = now.saturating_sub(self.tick_base).as_nanos();
        let per = u128::from(self.period_frames) * NANOS;
        u64::try_from(ns.saturating_mul(u128::from(self.rate)) / per.max(1)).unwrap_or(u64::MAX)
    }

    /// Whether the device queue has room for everything written.
    fn has_room(&mut self, now: Duration) -> bool {
        let (pos, _) = self.position_bytes(now);
        self.written.saturating_sub(pos) <= u64::from(self.params.buffer_sz)
    }

    /// When the queue will have room, if the clock runs.
    fn room_at(&self) -> Option<Duration> {
        if !self.running {
            return None;
        }
        let needed = self
            .written
            .saturating_sub(u64::from(self.params.buffer_sz))
            .div_ceil(self.frame_bytes);
        let frames = needed.saturating_sub(self.anchor_frames);
        Some(self.anchor_time.saturating_add(self.frames_to_ns(frames)))
    }

    /// Checks that `[offset, offset+length)` lies inside the buffer.
    fn range(&self, rw: &RwParams) -> Result<(usize, usize), String> {
        let end = u64::from(rw.offset) + u64::from(rw.length);
        if rw.offset >= self.params.buffer_sz || end > u64::from(self.params.buffer_sz) {
            return Err(format!(
                "range offset {} length {} outside the {}-byte buffer",
                rw.offset, rw.length, self.params.buffer_sz
            ));
        }
        let off = usize::try_from(rw.offset).map_err(|_| "offset too large".to_owned())?;
        let len = usize::try_from(rw.length).map_err(|_| "length too large".to_owned())?;
        Ok((off, len))
    }
}

/// The result of executing one request.
struct Served {
    rsp: Response,
    needs_room: bool,
    detail: String,
}

impl Served {
    fn ok(id: u16, op: Operation) -> Self {
        Served {
            rsp: Response::ok(id, op),
            needs_room: false,
            detail: String::new(),
        }
    }

    fn err(id: u16, op: Operation, errno: i32, detail: impl Into<String>) -> Self {
        Served {
            rsp: Response::error(id, op, -errno),
            needs_room: false,
            detail: detail.into(),
        }
    }
}

struct Worker {
    ctx: StreamContext,
    rings: BoundRings,
    wake: Arc<WakeFd>,
    stop: Arc<AtomicBool>,
    open: Option<OpenState>,
    event_id: u16,
    pending: Option<Pending>,
    stalled: Option<Request>,
    misbehave: Misbehave,
}

impl Worker {
    fn run(mut self) {
        let result = self.run_inner();
        {
            let mut g = self.ctx.shared.lock();
            g.stats.bound = false;
            g.stats.running = false;
            if g.waker.as_ref().is_some_and(|w| Arc::ptr_eq(w, &self.wake)) {
                g.waker = None;
            }
        }
        if let Err(e) = result {
            let msg = e.to_string();
            self.ctx.log.stream(
                Level::Error,
                self.ctx.id,
                LogWhat::StreamFailed(msg.clone()),
            );
            let _ = self.ctx.failures.send((self.ctx.id, msg));
            self.ctx.control_wake.wake();
        }
    }

    fn id(&self) -> StreamId {
        self.ctx.id
    }

    fn ring_err(&self, source: RingError) -> StreamError {
        StreamError::Ring {
            id: self.id(),
            source,
        }
    }

    fn run_inner(&mut self) -> Result<(), StreamError> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            self.refresh_misbehave()?;
            let now = self.ctx.clock.now();
            self.tick(now)?;
            self.try_complete_pending(now)?;
            self.serve_requests()?;
            let timeout = self
                .next_deadline()
                .and_then(|d| self.ctx.clock.real_wait(d));
            let fds = [self.rings.evtchn.fd(), self.wake.raw_fd()];
            let ready = poll_readable(&fds, timeout).map_err(|source| StreamError::Poll {
                id: self.id(),
                source,
            })?;
            if ready.first().copied().unwrap_or(false) {
                self.drain_evtchn()?;
            }
            if ready.get(1).copied().unwrap_or(false) {
                self.wake.drain();
            }
        }
    }

    fn drain_evtchn(&mut self) -> Result<(), StreamError> {
        let id = self.id();
        let map = |source| StreamError::Evtchn { id, source };
        while let Some(port) = self.rings.evtchn.pending().map_err(map)? {
            self.rings.evtchn.unmask(port).map_err(map)?;
        }
        Ok(())
    }

    fn notify(&self, port: Port) -> Result<(), StreamError> {
        self.rings
            .evtchn
            .notify(port)
            .map_err(|source| StreamError::Evtchn {
                id: self.id(),
                source,
            })
    }

    fn next_deadline(&self) -> Option<Duration> {
        let mut d: Option<Duration> = None;
        let mut consider = |t: Option<Duration>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |x| x.min(t)));
            }
        };
        if let Some(st) = &self.open {
            consider(st.next_tick());
        }
        if let Some(p) = &self.pending {
            consider(p.ready_at);
            if p.needs_room {
                consider(self.open.as_ref().and_then(OpenState::room_at));
            }
        }
        d
    }

    // ---- misbehaviour ------------------------------------------------------------------------

    fn refresh_misbehave(&mut self) -> Result<(), StreamError> {
        let m = self.ctx.shared.lock().stats.misbehave;
        match m {
            Misbehave::BogusRspProd => {
                self.clear_one_shot(m);
                let mem = self.rings.ring.mem().clone();
                let real = mem
                    .load_u32(RING_RSP_PROD)
                    .map_err(|source| StreamError::Shm {
                        id: self.id(),
                        source,
                    })?;
                let bogus = real.wrapping_add(BOGUS_INDEX_AHEAD);
                mem.store_u32(RING_RSP_PROD, bogus)
                    .map_err(|source| StreamError::Shm {
                        id: self.id(),
                        source,
                    })?;
                self.note(format!("misbehave: rsp_prod {real} -> {bogus}"));
                self.notify(self.rings.req_port)?;
                self.misbehave = Misbehave::None;
            }
            Misbehave::BogusInProd => {
                self.clear_one_shot(m);
                let mem = self.rings.events.mem().clone();
                let real = mem
                    .load_u32(EVT_PAGE_IN_PROD)
                    .map_err(|source| StreamError::Shm {
                        id: self.id(),
                        source,
                    })?;
                let bogus = real.wrapping_add(BOGUS_INDEX_AHEAD);
                mem.store_u32(EVT_PAGE_IN_PROD, bogus)
                    .map_err(|source| StreamError::Shm {
                        id: self.id(),
                        source,
                    })?;
                self.note(format!("misbehave: in_prod {real} -> {bogus}"));
                self.notify(self.rings.evt_port)?;
                self.misbehave = Misbehave::None;
            }
            Misbehave::EventFlood(n) => {
                self.clear_one_shot(m);
                self.misbehave = Misbehave::None;
                let now = self.ctx.clock.now();
                let pos = match &mut self.open {
                    Some(st) => st.position_bytes(now).0,
                    None => 0,
                };
                self.note(format!("misbehave: flooding {n} CUR_POS events"));
                for _ in 0..n {
                    self.send_cur_pos(pos)?;
                }
            }
            other => self.misbehave = other,
        }
        if self.misbehave != Misbehave::Stall {
            if let Some(req) = self.stalled.take() {
                self.note(format!(
                    "misbehave: releasing stalled request id {}",
                    req.id
                ));
                let now = self.ctx.clock.now();
                self.execute_and_respond(req, now)?;
            }
        }
        Ok(())
    }

    /// Resets a one-shot setting in the shared record (unless it was changed meanwhile).
    fn clear_one_shot(&self, m: Misbehave) {
        let mut g = self.ctx.shared.lock();
        if g.stats.misbehave == m {
            g.stats.misbehave = Misbehave::None;
        }
    }

    fn note(&self, msg: String) {
        self.ctx
            .log
            .stream(Level::Warn, self.id(), LogWhat::Message(msg));
    }

    // ---- events ------------------------------------------------------------------------------

    fn tick(&mut self, now: Duration) -> Result<(), StreamError> {
        let Some(st) = &mut self.open else {
            return Ok(());
        };
        let Some(next) = st.next_tick() else {
            return Ok(());
        };
        if now < next {
            return Ok(());
        }
        let (pos, underrun) = st.position_bytes(now);
        st.ticks = st.ticks.saturating_add(1).max(st.ticks_elapsed(now));
        if underrun {
            self.ctx.shared.lock().stats.underruns += 1;
        }
        self.send_cur_pos(pos)
    }

    fn send_cur_pos(&mut self, pos: u64) -> Result<(), StreamError> {
        // Read the shared setting (not the worker's copy): an offset set before the clock moved
        // applies to the event that movement produces.
        let current = self.ctx.shared.lock().stats.misbehave;
        let reported = match current {
            Misbehave::PositionOffset(off) => offset_position(pos, off),
            _ => pos,
        };
        let id = self.event_id;
        self.event_id = self.event_id.wrapping_add(1);
        let ev = Event {
            id,
            kind: EventKind::CurPos { position: reported },
        };
        match self.rings.events.push(&ev) {
            Ok(()) => {
                {
                    let mut g = self.ctx.shared.lock();
                    g.stats.events_sent += 1;
                    g.stats.position = pos;
                }
                self.ctx.log.stream(
                    Level::Debug,
                    self.id(),
                    LogWhat::Message(format!("CUR_POS id {id} position {reported}")),
                );
                self.notify(self.rings.evt_port)
            }
            Err(EventError::Full { .. }) => {
                {
                    let mut g = self.ctx.shared.lock();
                    g.stats.events_dropped += 1;
                    g.stats.position = pos;
                }
                self.ctx
                    .log
                    .stream(Level::Warn, self.id(), LogWhat::EventDropped { id });
                Ok(())
            }
            Err(source) => Err(StreamError::Event {
                id: self.id(),
                source,
            }),
        }
    }

    // ---- requests ----------------------------------------------------------------------------

    fn serve_requests(&mut self) -> Result<(), StreamError> {
        loop {
            if self.pending.is_some() || self.stalled.is_some() {
                return Ok(());
            }
            let taken = self.rings.ring.take_request();
            if matches!(taken, Ok(Some(_)) | Err(RingError::Malformed { .. })) {
                // Read the setting after the request: whatever was set before the frontend
                // sent it applies to it.
                self.refresh_misbehave()?;
            }
            match taken {
                Ok(Some(req)) => {
                    let now = self.ctx.clock.now();
                    if self.misbehave == Misbehave::Stall {
                        self.note(format!(
                            "misbehave: stalling request id {} ({})",
                            req.id,
                            req.operation()
                        ));
                        self.stalled = Some(req);
                        return Ok(());
                    }
                    self.execute_and_respond(req, now)?;
                }
                Ok(None) => {
                    if !self.rings.ring.rearm().map_err(|e| self.ring_err(e))? {
                        return Ok(());
                    }
                }
                Err(RingError::Malformed { source, .. }) => {
                    let id = source.id();
                    let code = source.operation_code().unwrap_or(u8::MAX);
                    let status = match self.misbehave {
                        Misbehave::ErrorStatus(s) => s,
                        _ => -EINVAL,
                    };
                    let rid = if self.misbehave == Misbehave::WrongId {
                        wrong_id(id)
                    } else {
                        id
                    };
                    let now = self.ctx.clock.now();
                    self.pending = Some(Pending {
                        msg: Response::encode_raw(rid, code, status),
                        id,
                        op: format!("op {code}"),
                        status,
                        detail: format!("malformed: {source}"),
                        ready_at: self.late_until(now),
                        needs_room: false,
                    });
                    self.ctx.shared.lock().stats.error_responses += 1;
                    self.try_complete_pending(now)?;
                }
                Err(e) => return Err(self.ring_err(e)),
            }
        }
    }

    fn late_until(&self, now: Duration) -> Option<Duration> {
        match self.misbehave {
            Misbehave::Late(d) => Some(now.saturating_add(d)),
            _ => None,
        }
    }

    fn execute_and_respond(&mut self, req: Request, now: Duration) -> Result<(), StreamError> {
        let op = req.operation();
        let served = match self.misbehave {
            Misbehave::ErrorStatus(s) => Served {
                rsp: Response::error(req.id, op, s),
                needs_room: false,
                detail: "misbehave: forced status, not executed".to_owned(),
            },
            _ => self.execute(&req, now)?,
        };
        let mut rsp = served.rsp;
        if rsp.status != 0 {
            self.ctx.shared.lock().stats.error_responses += 1;
        }
        if self.misbehave == Misbehave::WrongId {
            rsp.id = wrong_id(rsp.id);
        }
        let ready_at = self.late_until(now);
        if let Some(t) = ready_at {
            self.note(format!(
                "misbehave: response to request id {} held until clock {t:?}",
                req.id
            ));
        }
        self.pending = Some(Pending {
            msg: rsp.encode(),
            id: req.id,
            op: op.to_string(),
            status: rsp.status,
            detail: served.detail,
            ready_at,
            needs_room: served.needs_room,
        });
        self.try_complete_pending(now)
    }

    fn try_complete_pending(&mut self, now: Duration) -> Result<(), StreamError> {
        let Some(p) = &self.pending else {
            return Ok(());
        };
        if p.ready_at.is_some_and(|t| now < t) {
            return Ok(());
        }
        if p.needs_room {
            if let Some(st) = &mut self.open {
                if !st.has_room(now) {
                    return Ok(());
                }
            }
        }
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        self.rings
            .ring
            .push_response_bytes(&p.msg)
            .map_err(|e| self.ring_err(e))?;
        let notify = self
            .rings
            .ring
            .publish_responses()
            .map_err(|e| self.ring_err(e))?;
        let level = if p.status == 0 {
            Level::Debug
        } else {
            Level::Warn
        };
        self.ctx.log.stream(
            level,
            self.id(),
            LogWhat::Request {
                id: p.id,
                op: p.op,
                status: p.status,
                detail: p.detail,
            },
        );
        if notify {
            self.notify(self.rings.req_port)?;
        }
        Ok(())
    }

    fn config(&self) -> Result<&StreamConfig, String> {
        self.ctx
            .config
            .as_ref()
            .map_err(|e| format!("stream configuration unusable: {e}"))
    }

    fn execute(&mut self, req: &Request, now: Duration) -> Result<Served, StreamError> {
        let id = req.id;
        let op = req.operation();
        Ok(match &req.body {
            RequestBody::Open(p) => self.open(id, p, now),
            RequestBody::Close => {
                if self.open.take().is_some() {
                    let mut g = self.ctx.shared.lock();
                    g.stats.closes += 1;
                    g.stats.running = false;
                }
                Served::ok(id, op)
            }
            RequestBody::HwParamQuery(q) => {
                self.ctx.shared.lock().stats.queries += 1;
                match self.config() {
                    Err(e) => Served::err(id, op, EINVAL, e),
                    Ok(cfg) => match answer_query(&cfg.hw, q) {
                        Ok(a) => Served {
                            rsp: Response {
                                id,
                                operation: op,
                                status: 0,
                                body: ResponseBody::HwParam(a),
                            },
                            needs_room: false,
                            detail: format!("{a:?}"),
                        },
                        Err(e) => Served::err(id, op, EINVAL, e.to_string()),
                    },
                }
            }
            RequestBody::SetVolume(rw)
            | RequestBody::GetVolume(rw)
            | RequestBody::Mute(rw)
            | RequestBody::Unmute(rw) => self.volume(id, op, rw)?,
            RequestBody::Write(rw) => self.write(id, rw, now)?,
            RequestBody::Read(rw) => self.read(id, rw)?,
            RequestBody::Trigger(t) => self.trigger(id, *t, now),
        })
    }

    fn open(&mut self, id: u16, p: &OpenParams, now: Duration) -> Served {
        let op = Operation::Open;
        let cfg = match self.config() {
            Ok(c) => c.clone(),
            Err(e) => return Served::err(id, op, EINVAL, e),
        };
        if let Err(e) = check_open(&cfg.hw, p) {
            return Served::err(id, op, EINVAL, e.to_string());
        }
        let Some(sample) = p.format.bytes_per_sample() else {
            return Served::err(id, op, EINVAL, "format without a sample size");
        };
        // Like snd_be: a new OPEN replaces whatever was open.
        self.open = None;
        let fe = self.ctx.fe;
        let grants = Arc::clone(&self.ctx.grants);
        let refs = read_directory(p.gref_directory, p.buffer_sz, |gref| {
            grants
                .map(fe, &[gref])
                .map_err(|e| MapFailure(format!("directory page gref {gref}: {e}")))
        });
        let refs = match refs {
            Ok(r) => r,
            Err(MapFailure(e)) => return Served::err(id, op, EFAULT, e),
        };
        let mem = match grants.map(fe, &refs) {
            Ok(m) => m,
            Err(e) => {
                return Served::err(id, op, EFAULT, format!("data pages {refs:?}: {e}"));
            }
        };
        let Some(buffer) = mem.sub(0, usize::try_from(p.buffer_sz).unwrap_or(usize::MAX)) else {
            return Served::err(id, op, EFAULT, "mapping smaller than buffer_sz");
        };
        let frame_bytes = u64::from(sample) * u64::from(p.channels);
        let period_frames = if p.period_sz == 0 {
            DEFAULT_PERIOD_FRAMES
        } else {
            (u64::from(p.period_sz) / frame_bytes).max(1)
        };
        let playback = cfg.kind == StreamKind::Playback;
        self.open = Some(OpenState {
            params: *p,
            buffer,
            frame_bytes,
            rate: u64::from(p.rate),
            period_frames,
            playback,
            written: 0,
            read_cursor: 0,
            running: false,
            anchor_time: now,
            anchor_frames: 0,
            starved: false,
            tick_base: now,
            ticks: 0,
            volume: vec![0; usize::from(p.channels)],
            mute: vec![false; usize::from(p.channels)],
        });
        {
            let mut g = self.ctx.shared.lock();
            g.stats.opens += 1;
            g.stats.last_open = Some(*p);
            g.stats.position = 0;
            g.stats.running = false;
            if playback && self.ctx.setup.wav {
                if let Some(dir) = &self.ctx.wav_dir {
                    let spec = (p.format, p.rate, p.channels);
                    let keep = g.wav.as_ref().is_some_and(|w| w.spec() == spec);
                    if !keep {
                        let i = self.ctx.id;
                        let name = if g.stats.wav_path.is_none() {
                            format!("{}-{}-{}-{}.wav", i.fe, i.dev, i.pcm, i.stream)
                        } else {
                            format!(
                                "{}-{}-{}-{}-open{}.wav",
                                i.fe, i.dev, i.pcm, i.stream, g.stats.opens
                            )
                        };
                        let path = dir.join(name);
                        match WavWriter::create(&path, p.format, p.rate, p.channels) {
                            Ok(w) => {
                                g.wav = Some(w);
                                g.stats.wav_path = Some(path);
                                g.stats.wav_error = None;
                            }
                            Err(e) => {
                                g.wav = None;
                                g.stats.wav_error = Some(e.to_string());
                            }
                        }
                    }
                }
            }
        }
        self.ctx
            .log
            .stream(Level::Info, self.id(), LogWhat::Opened(*p));
        Served::ok(id, op)
    }

    fn write(&mut self, id: u16, rw: &RwParams, now: Duration) -> Result<Served, StreamError> {
        let op = Operation::Write;
        let sid = self.id();
        let Some(st) = &mut self.open else {
            return Ok(Served::err(id, op, EIO, "stream not open"));
        };
        if !st.playback {
            return Ok(Served::err(id, op, EINVAL, "WRITE on a capture stream"));
        }
        let (off, len) = match st.range(rw) {
            Ok(r) => r,
            Err(e) => return Ok(Served::err(id, op, EINVAL, e)),
        };
        let mut data = vec![0u8; len];
        st.buffer
            .read_bytes(off, &mut data)
            .map_err(|source| StreamError::Shm { id: sid, source })?;
        // Bring the device up to date before the new data arrives (ends a starvation here).
        let (_, underrun) = st.update(now);
        st.written = st
            .written
            .saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
        st.starved = false;
        let needs_room = self.ctx.pacing == WritePacing::Queue;
        let loop_out = self.ctx.setup.loop_out.clone();
        {
            let mut g = self.ctx.shared.lock();
            if underrun {
                g.stats.underruns += 1;
            }
            g.hasher.update(&data);
            g.stats.bytes_received += u64::try_from(len).unwrap_or(u64::MAX);
            g.stats.writes += 1;
            if let Some(w) = &mut g.wav {
                if let Err(e) = w.append(&data) {
                    g.stats.wav_error = Some(e.to_string());
                    g.wav = None;
                }
            }
        }
        if let Some(name) = loop_out {
            lock(&self.ctx.loops.get(&name)).push(&data);
        }
        Ok(Served {
            rsp: Response::ok(id, op),
            needs_room,
            detail: format!("offset {} length {}", rw.offset, rw.length),
        })
    }

    fn read(&mut self, id: u16, rw: &RwParams) -> Result<Served, StreamError> {
        let op = Operation::Read;
        let sid = self.id();
        let Some(st) = &mut self.open else {
            return Ok(Served::err(id, op, EIO, "stream not open"));
        };
        if st.playback {
            return Ok(Served::err(id, op, EINVAL, "READ on a playback stream"));
        }
        let (off, len) = match st.range(rw) {
            Ok(r) => r,
            Err(e) => return Ok(Served::err(id, op, EINVAL, e)),
        };
        let mut data = vec![0u8; len];
        let mut missing = 0usize;
        match &self.ctx.setup.capture {
            CaptureSource::Pattern => pattern_fill(stream_seed(sid), st.read_cursor, &mut data),
            CaptureSource::Silence => {}
            CaptureSource::Loop(name) => {
                let fifo: Arc<Mutex<LoopFifo>> = self.ctx.loops.get(name);
                missing = lock(&fifo).pop_into(&mut data);
            }
        }
        st.buffer
            .write_bytes(off, &data)
            .map_err(|source| StreamError::Shm { id: sid, source })?;
        st.read_cursor = st
            .read_cursor
            .saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
        {
            let mut g = self.ctx.shared.lock();
            g.stats.bytes_sent += u64::try_from(len).unwrap_or(u64::MAX);
            g.stats.reads += 1;
            if missing > 0 {
                g.stats.underruns += 1;
            }
        }
        Ok(Served {
            rsp: Response::ok(id, op),
            needs_room: false,
            detail: format!("offset {} length {}", rw.offset, rw.length),
        })
    }

    fn trigger(&mut self, id: u16, t: TriggerType, now: Duration) -> Served {
        let op = Operation::Trigger;
        let Some(st) = &mut self.open else {
            return Served::err(id, op, EIO, "stream not open");
        };
        match t {
            TriggerType::Start | TriggerType::Resume => st.start(now),
            TriggerType::Stop | TriggerType::Pause => st.stop(now),
        }
        let running = st.running;
        {
            let mut g = self.ctx.shared.lock();
            g.stats.triggers += 1;
            g.stats.running = running;
        }
        Served {
            rsp: Response::ok(id, op),
            needs_room: false,
            detail: format!("{t:?}"),
        }
    }

    fn volume(&mut self, id: u16, op: Operation, rw: &RwParams) -> Result<Served, StreamError> {
        if !self.ctx.volume {
            return Ok(Served::err(id, op, EINVAL, "volume control not supported"));
        }
        let sid = self.id();
        let Some(st) = &mut self.open else {
            return Ok(Served::err(id, op, EIO, "stream not open"));
        };
        let (off, len) = match st.range(rw) {
            Ok(r) => r,
            Err(e) => return Ok(Served::err(id, op, EINVAL, e)),
        };
        let channels = st.volume.len();
        let shm = |source| StreamError::Shm { id: sid, source };
        match op {
            Operation::SetVolume | Operation::GetVolume => {
                if len < channels * 4 {
                    return Ok(Served::err(
                        id,
                        op,
                        EINVAL,
                        format!("{len} bytes cannot hold {channels} volumes"),
                    ));
                }
                let mut raw = vec![0u8; channels * 4];
                if op == Operation::SetVolume {
                    st.buffer.read_bytes(off, &mut raw).map_err(shm)?;
                    for (v, b) in st.volume.iter_mut().zip(raw.chunks_exact(4)) {
                        *v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                } else {
                    for (b, v) in raw.chunks_exact_mut(4).zip(&st.volume) {
                        b.copy_from_slice(&v.to_le_bytes());
                    }
                    st.buffer.write_bytes(off, &raw).map_err(shm)?;
                }
            }
            _ => {
                if len < channels {
                    return Ok(Served::err(
                        id,
                        op,
                        EINVAL,
                        format!("{len} bytes cannot hold {channels} mute flags"),
                    ));
                }
                let mut raw = vec![0u8; channels];
                st.buffer.read_bytes(off, &mut raw).map_err(shm)?;
                let value = op == Operation::Mute;
                for (m, b) in st.mute.iter_mut().zip(&raw) {
                    if *b != 0 {
                        *m = value;
                    }
                }
            }
        }
        Ok(Served {
            rsp: Response::ok(id, op),
            needs_room: false,
            detail: format!("volume {:?} mute {:?}", st.volume, st.mute),
        })
    }
}

/// A failed grant mapping while walking the page directory.
#[derive(Debug)]
struct MapFailure(String);

impl From<PgdirError> for MapFailure {
    fn from(e: PgdirError) -> Self {
        MapFailure(format!("page directory: {e}"))
    }
}
