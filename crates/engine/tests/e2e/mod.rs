//! Shared helpers of the end-to-end tests: the frontend engine against the reference backend,
//! in one process, over `xen_access::fake` (frontend = domain 1, backend = domain 0).
//!
//! * [`add_card`]: the toolstack (dom0) writes a card's frontend and backend directories the way
//!   libxl does, with libxl's permissions.
//! * [`start_backend`] / [`start_frontend`]: both peers on the same fake world; the backend's log
//!   records are collected ([`Records`]).
//! * [`Events`]: bounded waits for frontend events, remembering what was seen.
//! * [`Job`] and [`run_jobs`]: drive playback and capture streams together from one loop, the way
//!   a PipeWire data loop would (poll the event-channel fds with a bound, service, write, read).
//! * [`KillableStore`]: a xenstore connection that can die like the connection of a killed
//!   process; [`CountingChannels`]: event channels that count notifications.
//!
//! Nothing here sleeps for synchronisation: every wait is a bounded wait on a real condition.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use sndif::config::StreamKind;
use sndif::formats::PcmFormat;
use xen_access::fake::{FakeXen, ToolstackDevice};
use xen_access::{
    DomId, EventChannels, EvtchnError, EvtchnHandle, Perm, Port, StoreError, StoreOps, WatchEvent,
    XenStore,
};
use xen_snd_backend::{
    Backend, BackendOptions, Clock, DeviceKey, Level, LogRecord, LogWhat, Services as BeServices,
    StreamId as BeStreamId,
};
use xen_snd_engine::{
    CardInfo, Frontend, FrontendEvent, FrontendOptions, PcmParams, Services, Stream,
    StreamCounters, StreamId, StreamState,
};

/// The guest (frontend) domain.
pub const FE: DomId = 1;
/// The backend domain.
pub const BE: DomId = 0;
/// The bound of every single wait.
pub const WAIT: Duration = Duration::from_secs(10);
/// The bound of one [`run_jobs`] call.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);
/// How much faster than real time the backend's clock runs in most tests.
pub const SCALE: f64 = 50.0;

/// `/local/domain/1/device/vsnd/<card>`.
pub fn fe_dir(card: u32) -> String {
    format!("/local/domain/{FE}/device/vsnd/{card}")
}

/// `/local/domain/0/backend/vsnd/1/<card>`.
pub fn be_dir(card: u32) -> String {
    format!("/local/domain/{BE}/backend/vsnd/{FE}/{card}")
}

/// The backend's name of an engine stream.
pub fn be_id(id: StreamId) -> BeStreamId {
    BeStreamId::new(FE, id.card, id.device, id.stream)
}

/// What libxl does for one `vsnd` card: as dom0, in one transaction, the frontend directory
/// (`backend`, `backend-id`, `state` = 1 and the configuration keys `config`, relative to the
/// frontend directory) owned by the guest and readable by the backend, and the backend directory
/// (`frontend`, `frontend-id`, `online` = 1, `state` = 1) owned by the backend and readable by the
/// guest (sndif.md §1.2, `libxl__device_generic_add`).
pub fn add_card(world: &Arc<FakeXen>, card: u32, config: &[(&str, &str)]) {
    world.domain(BE);
    world.domain(FE);
    let device = ToolstackDevice {
        frontend: FE,
        backend: BE,
        kind: "vsnd",
        dev: card,
        backend_state: Some("1"),
    };
    world
        .add_device(&device, config)
        .expect("toolstack transaction");
}

/// The backend's log records (level Info and more important), for checking state sequences.
pub struct Records {
    rx: Receiver<LogRecord>,
    /// Everything received so far.
    pub seen: Vec<LogRecord>,
}

impl Records {
    /// Takes every record queued so far.
    pub fn drain(&mut self) {
        while let Ok(r) = self.rx.try_recv() {
            self.seen.push(r);
        }
    }

    /// Waits (bounded) for a record matching `pred` among the ones not looked at yet; returns
    /// its index in [`Records::seen`].
    pub fn wait_for(
        &mut self,
        from: usize,
        what: &str,
        pred: impl Fn(&LogRecord) -> bool,
    ) -> usize {
        let deadline = Instant::now() + WAIT;
        let mut i = from;
        loop {
            while let Some(r) = self.seen.get(i) {
                if pred(r) {
                    return i;
                }
                i += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(r) => self.seen.push(r),
                Err(_) => panic!(
                    "no backend record {what} within {WAIT:?}; records:\n{}",
                    self.dump()
                ),
            }
        }
    }

    /// The states the backend wrote for `key`, in order, from record index `from` on.
    pub fn states_written(&self, key: DeviceKey, from: usize) -> Vec<u32> {
        self.seen
            .iter()
            .skip(from)
            .filter(|r| r.device == Some(key))
            .filter_map(|r| match r.what {
                LogWhat::StateWritten(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Every record, one per line.
    pub fn dump(&self) -> String {
        self.seen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Backend options for the tests: clock scaled by `scale`, snd_be's defaults otherwise
/// (`unique-id` required, ALSA-like WRITE pacing), log records collected.
pub fn backend_options(scale: f64) -> (BackendOptions, Records) {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let logger: xen_snd_backend::Logger = Arc::new(move |r: &LogRecord| {
        if r.level <= Level::Info {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(r.clone());
            }
        }
    });
    let options = BackendOptions {
        clock: Clock::scaled(scale).expect("clock scale"),
        logger: Some(logger),
        ..BackendOptions::default()
    };
    (
        options,
        Records {
            rx,
            seen: Vec::new(),
        },
    )
}

/// Starts the reference backend as dom0 of `world`.
pub fn start_backend(world: &Arc<FakeXen>, options: BackendOptions) -> Backend {
    watch_panics();
    let dom0 = world.domain(BE);
    Backend::start(BeServices::fake(&dom0), options).expect("start backend")
}

/// The frontend's services: a new xenstore connection, grants and event channels of domain 1.
pub fn fe_services(world: &Arc<FakeXen>) -> Services {
    let d = world.domain(FE);
    Services {
        store: d.store(),
        grants: d.grant_share(),
        events: d.event_channels(),
    }
}

/// Frontend options for the tests: a short shutdown wait (most tests end with the backend gone).
pub fn frontend_options() -> FrontendOptions {
    FrontendOptions {
        shutdown_timeout: Duration::from_millis(500),
        ..FrontendOptions::default()
    }
}

/// Starts the frontend engine as domain 1 with `services`.
pub fn start_frontend(services: Services, options: FrontendOptions) -> Events {
    Events {
        fe: Frontend::start(services, options).expect("start frontend"),
        seen: Vec::new(),
    }
}

/// A connected card as the owner receives it.
#[derive(Debug)]
pub struct Connected {
    /// What the card is.
    pub info: CardInfo,
    /// Its usable streams, by (device, stream).
    pub streams: BTreeMap<(u32, u32), Stream>,
}

impl Connected {
    /// Takes stream `device/stream` out.
    pub fn take(&mut self, device: u32, stream: u32) -> Stream {
        self.streams.remove(&(device, stream)).unwrap_or_else(|| {
            panic!(
                "card {} has no usable stream {device}/{stream}",
                self.info.card
            )
        })
    }
}

/// The frontend and a log of the events taken from it.
pub struct Events {
    /// The engine.
    pub fe: Frontend,
    /// Every event taken so far (rendered with `Debug`).
    pub seen: Vec<String>,
}

impl Events {
    /// Waits (bounded) for an event matching `pred`; earlier events are skipped but remembered.
    pub fn wait(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&FrontendEvent) -> bool,
    ) -> FrontendEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.fe.next_event(left) {
                Some(ev) => {
                    let hit = pred(&ev);
                    self.seen.push(format!("{ev:?}"));
                    if hit {
                        return ev;
                    }
                }
                None => panic!(
                    "no {what} within {WAIT:?}; events seen:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every event available now.
    pub fn drain(&mut self) -> Vec<FrontendEvent> {
        let mut out = Vec::new();
        while let Some(ev) = self.fe.try_event() {
            self.seen.push(format!("{ev:?}"));
            out.push(ev);
        }
        out
    }

    /// Waits for `CardConnected` of `card`.
    pub fn connected(&mut self, card: u32) -> Connected {
        let ev = self.wait(
            &format!("CardConnected of card {card}"),
            |e| matches!(e, FrontendEvent::CardConnected { card: c, .. } if *c == card),
        );
        let FrontendEvent::CardConnected { info, streams, .. } = ev else {
            unreachable!("matched above")
        };
        Connected {
            info,
            streams: streams
                .into_iter()
                .map(|s| ((s.id().device, s.id().stream), s))
                .collect(),
        }
    }

    /// Waits for `CardConnected` of every card in `cards` (in any order).
    pub fn connected_all(&mut self, cards: &[u32]) -> BTreeMap<u32, Connected> {
        let mut out = BTreeMap::new();
        while out.len() < cards.len() {
            let ev = self.wait(
                "CardConnected",
                |e| matches!(e, FrontendEvent::CardConnected { card, .. } if cards.contains(card)),
            );
            if let FrontendEvent::CardConnected {
                card,
                info,
                streams,
            } = ev
            {
                out.insert(
                    card,
                    Connected {
                        info,
                        streams: streams
                            .into_iter()
                            .map(|s| ((s.id().device, s.id().stream), s))
                            .collect(),
                    },
                );
            }
        }
        out
    }
}

/// S16_LE stereo 48 kHz, 1024-frame periods, four periods of buffer.
pub fn s16_stereo_48k() -> PcmParams {
    PcmParams {
        format: PcmFormat::S16Le,
        rate: 48_000,
        channels: 2,
        buffer_frames: 4096,
        period_frames: 1024,
    }
}

/// Bytes of `seconds` of audio with `params`.
pub fn audio_bytes(params: &PcmParams, seconds: f64) -> usize {
    let frame = params.format.bytes_per_sample().expect("linear format") as usize
        * usize::from(params.channels);
    let frames = (f64::from(params.rate) * seconds).round() as usize;
    frames * frame
}

/// A playback stream being fed `data`.
#[derive(Debug)]
pub struct PlayJob {
    /// The stream.
    pub stream: Stream,
    /// Everything to play.
    pub data: Vec<u8>,
    /// Bytes accepted by `write` so far.
    pub offset: usize,
    /// Largest single `write`, bytes.
    pub quantum: usize,
    /// Completed WRITE bytes before this job (the counter lives as long as the stream).
    pub base_completed: u64,
    /// START was armed.
    pub armed: bool,
    /// Control request outcomes seen (START, ...): errors are kept.
    pub control_errors: Vec<String>,
    /// The job may end without all data delivered (misbehaving backend).
    pub tolerate_loss: bool,
    /// The test gave up on this stream.
    pub abandoned: bool,
    /// Only service the stream, write nothing (the test holds the data back).
    pub paused: bool,
}

/// A capture stream read until `want` bytes arrived.
#[derive(Debug)]
pub struct CaptureJob {
    /// The stream.
    pub stream: Stream,
    /// Bytes wanted.
    pub want: usize,
    /// Bytes read so far.
    pub got: Vec<u8>,
    /// Largest single `read`, bytes.
    pub quantum: usize,
    /// START was sent.
    pub started: bool,
    /// Loopback: do not let READs run ahead of what this playback stream has delivered.
    pub gate: Option<Gate>,
    /// Control request outcomes seen: errors are kept.
    pub control_errors: Vec<String>,
    /// The test gave up on this stream.
    pub abandoned: bool,
}

/// Keeps a loopback capture behind its playback stream: READs are issued at most one buffer
/// ahead of what the reader took, so the reader takes only what leaves the capture stream's
/// READs covered by data the playback stream has delivered (completed WRITEs).
#[derive(Debug, Clone)]
pub struct Gate {
    /// The playback stream's counters.
    pub source: Arc<xen_snd_engine::StreamStats>,
    /// Completed WRITE bytes of the source before the loopback began.
    pub base: u64,
    /// Bytes the source will deliver in total.
    pub total: u64,
}

impl Gate {
    fn delivered(&self) -> u64 {
        self.source
            .snapshot()
            .bytes_written
            .saturating_sub(self.base)
    }

    fn finished(&self) -> bool {
        self.delivered() >= self.total
    }
}

/// One stream driven by [`run_jobs`].
#[derive(Debug)]
pub enum Job {
    /// Playback.
    Play(PlayJob),
    /// Capture.
    Capture(CaptureJob),
}

impl Job {
    /// Opens `stream` (blocking) and prepares to play `data` in quanta of one period.
    pub fn play(mut stream: Stream, params: PcmParams, data: Vec<u8>) -> Job {
        let active = stream
            .open(params)
            .unwrap_or_else(|e| panic!("OPEN of {}: {e}", stream.id()));
        let base_completed = stream.stats().bytes_written;
        Job::Play(PlayJob {
            stream,
            data,
            offset: 0,
            quantum: active.period_bytes as usize,
            base_completed,
            armed: false,
            control_errors: Vec::new(),
            tolerate_loss: false,
            abandoned: false,
            paused: false,
        })
    }

    /// Opens `stream` (blocking) and prepares to capture `want` bytes in quanta of one period.
    pub fn capture(mut stream: Stream, params: PcmParams, want: usize) -> Job {
        let active = stream
            .open(params)
            .unwrap_or_else(|e| panic!("OPEN of {}: {e}", stream.id()));
        Job::Capture(CaptureJob {
            stream,
            want,
            got: Vec::with_capacity(want),
            quantum: active.period_bytes as usize,
            started: false,
            gate: None,
            control_errors: Vec::new(),
            abandoned: false,
        })
    }

    /// The stream.
    pub fn stream(&self) -> &Stream {
        match self {
            Job::Play(p) => &p.stream,
            Job::Capture(c) => &c.stream,
        }
    }

    /// The stream, mutably.
    pub fn stream_mut(&mut self) -> &mut Stream {
        match self {
            Job::Play(p) => &mut p.stream,
            Job::Capture(c) => &mut c.stream,
        }
    }

    /// The stream, consuming the job.
    pub fn into_stream(self) -> Stream {
        match self {
            Job::Play(p) => p.stream,
            Job::Capture(c) => c.stream,
        }
    }

    /// The playback job.
    pub fn as_play(&self) -> &PlayJob {
        match self {
            Job::Play(p) => p,
            Job::Capture(c) => panic!("{} is a capture job", c.stream.id()),
        }
    }

    /// The capture job.
    pub fn as_capture(&self) -> &CaptureJob {
        match self {
            Job::Capture(c) => c,
            Job::Play(p) => panic!("{} is a playback job", p.stream.id()),
        }
    }

    /// Whether the stream has failed or was revoked.
    pub fn is_dead(&self) -> bool {
        matches!(
            self.stream().state(),
            StreamState::Failed(_) | StreamState::Revoked
        )
    }

    /// Whether the job has nothing more to do.
    pub fn is_done(&self) -> bool {
        if self.is_dead() {
            return true;
        }
        match self {
            Job::Play(p) => {
                p.abandoned
                    || (p.offset == p.data.len()
                        && (p.completed() == p.data.len() as u64
                            || (p.tolerate_loss && p.stream.requests_in_flight() == 0)))
            }
            Job::Capture(c) => c.abandoned || c.got.len() >= c.want,
        }
    }

    fn take_control(&mut self) {
        let (stream, errors) = match self {
            Job::Play(p) => (&mut p.stream, &mut p.control_errors),
            Job::Capture(c) => (&mut c.stream, &mut c.control_errors),
        };
        if let Some((op, Err(e))) = stream.take_control_result() {
            errors.push(format!("{op}: {e}"));
        }
    }

    /// One round: service the stream, then write or read what is possible.
    pub fn step(&mut self, now_ns: u64) {
        if self.is_done() {
            // Keep consuming responses and events (the backend may still answer).
            let s = self.stream_mut();
            s.service(now_ns);
            self.take_control();
            return;
        }
        self.stream_mut().service(now_ns);
        self.take_control();
        match self {
            Job::Play(p) => p.step(now_ns),
            Job::Capture(c) => c.step(now_ns),
        }
        self.take_control();
    }
}

impl PlayJob {
    /// Completed WRITE bytes of this job.
    pub fn completed(&self) -> u64 {
        self.stream
            .stats()
            .bytes_written
            .saturating_sub(self.base_completed)
    }

    fn step(&mut self, now_ns: u64) {
        if self.paused {
            return;
        }
        if !self.armed {
            match self.stream.arm_start(now_ns) {
                Ok(()) => self.armed = true,
                Err(e) => {
                    self.control_errors.push(format!("arming START: {e}"));
                    self.abandoned = true;
                    return;
                }
            }
        }
        // Write what fits, one quantum at a time, like a data loop called once per quantum.
        for _ in 0..8 {
            let left = self.data.len() - self.offset;
            if left == 0 {
                return;
            }
            let n = left.min(self.quantum);
            let Some(chunk) = self.data.get(self.offset..self.offset + n) else {
                return;
            };
            let took = self.stream.write(chunk);
            self.offset += took;
            if took < n {
                return;
            }
        }
    }
}

impl CaptureJob {
    fn step(&mut self, now_ns: u64) {
        if !self.started {
            if let Some(g) = &self.gate {
                let buffer = u64::from(self.stream.params().map_or(0, |p| p.buffer_bytes));
                if !g.finished() && g.delivered() < buffer {
                    return;
                }
            }
            match self.stream.submit_start(now_ns) {
                Ok(()) => self.started = true,
                Err(e) => {
                    self.control_errors.push(format!("START: {e}"));
                    self.abandoned = true;
                    return;
                }
            }
        }
        let mut buf = vec![0u8; self.quantum];
        for _ in 0..8 {
            let mut n = (self.want - self.got.len()).min(self.quantum);
            if let Some(g) = &self.gate {
                if !g.finished() {
                    // READs reach one buffer beyond what was read: keep that covered.
                    let buffer = u64::from(self.stream.params().map_or(0, |p| p.buffer_bytes));
                    let covered = g.delivered().saturating_sub(buffer);
                    let allowed = covered.saturating_sub(self.stream.consumed_bytes());
                    n = n.min(usize::try_from(allowed).unwrap_or(usize::MAX));
                }
            }
            if n == 0 {
                return;
            }
            let got = self.stream.read(&mut buf[..n]);
            self.got.extend_from_slice(&buf[..got]);
            if got < n {
                return;
            }
        }
    }
}

/// What the hook of [`run_jobs`] wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going until every job is done.
    Continue,
    /// Return now.
    Stop,
}

/// Waits (bounded) until one of `fds` is readable.
pub fn poll_any(fds: &[RawFd], timeout: Duration) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let n = libc::nfds_t::try_from(pfds.len()).unwrap_or(0);
    // SAFETY: `pfds` is an exclusively borrowed, initialised array of `n` pollfd structures that
    // outlives the call; poll(2) only writes their `revents` fields.
    let _ = unsafe { libc::poll(pfds.as_mut_ptr(), n, ms) };
}

/// CLOCK_MONOTONIC in nanoseconds, the engine's time base.
pub fn now_ns() -> u64 {
    xen_snd_engine::Clock::now_ns(&xen_snd_engine::MonotonicClock)
}

/// Drives every job from one loop until all are done or `hook` says stop: service each stream,
/// write/read, then wait (at most 5 ms) for any event-channel fd. The hook runs once per round.
/// Panics with every job's state if `RUN_LIMIT` passes.
pub fn run_jobs(jobs: &mut [Job], mut hook: impl FnMut(&mut [Job]) -> Flow) {
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        let now = now_ns();
        for j in jobs.iter_mut() {
            j.step(now);
        }
        if hook(jobs) == Flow::Stop || jobs.iter().all(Job::is_done) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "jobs did not finish within {RUN_LIMIT:?}:\n{}",
            describe(jobs)
        );
        let fds: Vec<RawFd> = jobs.iter().map(|j| j.stream().fd()).collect();
        poll_any(&fds, Duration::from_millis(5));
    }
}

/// One line per job: id, state, progress, counters.
pub fn describe(jobs: &[Job]) -> String {
    jobs.iter()
        .map(|j| match j {
            Job::Play(p) => format!(
                "{} playback {}: written {}/{} completed {} errors {:?} {:?}",
                p.stream.id(),
                p.stream.state(),
                p.offset,
                p.data.len(),
                p.completed(),
                p.control_errors,
                p.stream.stats()
            ),
            Job::Capture(c) => format!(
                "{} capture {}: read {}/{} errors {:?} {:?}",
                c.stream.id(),
                c.stream.state(),
                c.got.len(),
                c.want,
                c.control_errors,
                c.stream.stats()
            ),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Stops and closes a stream (blocking, bounded by the request timeout).
pub fn stop_and_close(stream: &mut Stream) {
    if *stream.state() == StreamState::Running {
        stream
            .stop()
            .unwrap_or_else(|e| panic!("STOP of {}: {e}", stream.id()));
    }
    stream
        .close()
        .unwrap_or_else(|e| panic!("CLOSE of {}: {e}", stream.id()));
}

/// Asserts that the backend received exactly `expected` on `id` (SHA-256 and length).
pub fn assert_backend_received(backend: &Backend, id: StreamId, expected: &[u8]) {
    let stats = backend
        .stream_stats(be_id(id))
        .unwrap_or_else(|| panic!("backend never saw {id}"));
    assert_eq!(
        stats.bytes_received,
        expected.len() as u64,
        "{id}: bytes the backend received"
    );
    assert_eq!(
        stats.sha256_hex,
        xen_snd_backend::sha256_hex(expected),
        "{id}: SHA-256 of what the backend received"
    );
}

/// The capture pattern the backend delivers on `id`.
pub fn capture_pattern(id: StreamId, len: usize) -> Vec<u8> {
    xen_snd_backend::pattern_bytes(xen_snd_backend::stream_seed(be_id(id)), 0, len)
}

/// A non-repeating test signal for playback: the backend's pattern generator with a seed of our
/// own (so it differs from every capture pattern).
pub fn playback_data(seed: u64, len: usize) -> Vec<u8> {
    xen_snd_backend::pattern_bytes(seed ^ 0x5eed_0000_0000_0000, 0, len)
}

/// Asserts that a capture job got exactly the backend's pattern.
pub fn assert_capture_pattern(job: &CaptureJob) {
    let id = job.stream.id();
    let expected = capture_pattern(id, job.want);
    let got = job.got.get(..job.want).unwrap_or(&job.got);
    assert_eq!(got.len(), expected.len(), "{id}: bytes captured");
    if let Some(i) = got.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!(
            "{id}: captured data differs from the pattern at byte {i} of {}",
            expected.len()
        );
    }
}

/// The frontend counters of a job's stream.
pub fn counters(job: &Job) -> StreamCounters {
    job.stream().stats()
}

/// Whether a stream is playback.
pub fn is_playback(s: &Stream) -> bool {
    s.kind() == StreamKind::Playback
}

/// Shuts the frontend down and the backend down, asserting that no thread of either peer
/// panicked.
pub fn finish(mut events: Events, backend: Backend) {
    events
        .fe
        .shutdown()
        .expect("frontend control thread ended cleanly");
    backend
        .shutdown()
        .expect("backend control thread ended cleanly");
    assert_eq!(
        peer_panics(),
        Vec::<String>::new(),
        "threads of the peers panicked"
    );
}

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HOOK: std::sync::Once = std::sync::Once::new();

/// Records panics of the peers' own threads (the engine's `xen-snd-*` and the backend's
/// `vsnd-*`), keeping the default report. Call before starting the peers.
pub fn watch_panics() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            if name.starts_with("xen-snd") || name.starts_with("vsnd") {
                if let Ok(mut p) = PANICS.lock() {
                    p.push(format!("{name}: {info}"));
                }
            }
            default(info);
        }));
    });
}

/// Panics of the peers' threads recorded since [`watch_panics`].
pub fn peer_panics() -> Vec<String> {
    PANICS.lock().map(|p| p.clone()).unwrap_or_default()
}

// ---- a xenstore connection that dies like a killed process's ------------------------------

/// Wraps a xenstore connection; after [`KillableStore::kill`] every call fails with a connection
/// error, its watch events are discarded and its watch fd never becomes readable again, as for a
/// process that was killed (nothing it would have written on the way out reaches the store).
pub struct KillableStore {
    inner: Arc<dyn XenStore>,
    dead: AtomicBool,
    /// Never written: its peer is never readable.
    idle: (UnixStream, UnixStream),
}

impl KillableStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn XenStore>) -> Arc<KillableStore> {
        Arc::new(KillableStore {
            inner,
            dead: AtomicBool::new(false),
            idle: UnixStream::pair().expect("socketpair"),
        })
    }

    /// Kills the connection.
    pub fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        while self.inner.take_watch_event().is_some() {}
    }

    fn check(&self, op: &'static str, path: &str) -> Result<(), StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(StoreError::Connection {
                op,
                path: path.to_owned(),
                reason: "the process was killed (test)".to_owned(),
            });
        }
        Ok(())
    }
}

impl StoreOps for KillableStore {
    fn read(&self, path: &str) -> Result<Option<String>, StoreError> {
        self.check("read", path)?;
        self.inner.read(path)
    }
    fn write(&self, path: &str, value: &str) -> Result<(), StoreError> {
        self.check("write", path)?;
        self.inner.write(path, value)
    }
    fn mkdir(&self, path: &str) -> Result<(), StoreError> {
        self.check("mkdir", path)?;
        self.inner.mkdir(path)
    }
    fn rm(&self, path: &str) -> Result<(), StoreError> {
        self.check("rm", path)?;
        self.inner.rm(path)
    }
    fn directory(&self, path: &str) -> Result<Vec<String>, StoreError> {
        self.check("directory", path)?;
        self.inner.directory(path)
    }
    fn get_perms(&self, path: &str) -> Result<Vec<Perm>, StoreError> {
        self.check("get_perms", path)?;
        self.inner.get_perms(path)
    }
    fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), StoreError> {
        self.check("set_perms", path)?;
        self.inner.set_perms(path, perms)
    }
}

impl XenStore for KillableStore {
    fn own_domid(&self) -> Result<DomId, StoreError> {
        self.check("read", "domid")?;
        self.inner.own_domid()
    }
    fn watch(&self, path: &str, token: &str) -> Result<(), StoreError> {
        self.check("watch", path)?;
        self.inner.watch(path, token)
    }
    fn unwatch(&self, path: &str, token: &str) -> Result<(), StoreError> {
        self.check("unwatch", path)?;
        self.inner.unwatch(path, token)
    }
    fn watch_fd(&self) -> RawFd {
        if self.dead.load(Ordering::SeqCst) {
            self.idle.0.as_raw_fd()
        } else {
            self.inner.watch_fd()
        }
    }
    fn take_watch_event(&self) -> Option<WatchEvent> {
        let ev = self.inner.take_watch_event();
        if self.dead.load(Ordering::SeqCst) {
            while self.inner.take_watch_event().is_some() {}
            return None;
        }
        ev
    }
    fn transaction(
        &self,
        f: &mut dyn FnMut(&dyn StoreOps) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.check("transaction_start", "")?;
        self.inner.transaction(f)
    }
}

// ---- event channels that count notifications ----------------------------------------------

/// Wraps a domain's event channels and counts `notify` calls of all its handles.
pub struct CountingChannels {
    inner: Arc<dyn EventChannels>,
    /// Notifications sent so far.
    pub notifies: Arc<AtomicU64>,
}

impl CountingChannels {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn EventChannels>) -> Arc<CountingChannels> {
        Arc::new(CountingChannels {
            inner,
            notifies: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Notifications sent so far.
    pub fn count(&self) -> u64 {
        self.notifies.load(Ordering::SeqCst)
    }
}

impl EventChannels for CountingChannels {
    fn open(&self) -> Result<Box<dyn EvtchnHandle>, EvtchnError> {
        Ok(Box::new(CountingHandle {
            inner: self.inner.open()?,
            notifies: Arc::clone(&self.notifies),
        }))
    }
}

struct CountingHandle {
    inner: Box<dyn EvtchnHandle>,
    notifies: Arc<AtomicU64>,
}

impl EvtchnHandle for CountingHandle {
    fn bind_unbound(&self, remote: DomId) -> Result<Port, EvtchnError> {
        self.inner.bind_unbound(remote)
    }
    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, EvtchnError> {
        self.inner.bind_interdomain(remote, remote_port)
    }
    fn unbind(&self, port: Port) -> Result<(), EvtchnError> {
        self.inner.unbind(port)
    }
    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        self.notifies.fetch_add(1, Ordering::Relaxed);
        self.inner.notify(port)
    }
    fn fd(&self) -> RawFd {
        self.inner.fd()
    }
    fn pending(&self) -> Result<Option<Port>, EvtchnError> {
        self.inner.pending()
    }
    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        self.inner.unmask(port)
    }
}
