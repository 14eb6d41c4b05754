//! One node: a `pw_stream` (`Audio/Sink` for playback, `Audio/Source` for capture) in front of a
//! [`PcmPort`].
//!
//! # Thread ownership
//!
//! | field | who |
//! | --- | --- |
//! | `name`, `kind`, `hw`, `settings`, `data_loop` | immutable after creation |
//! | `main` ([`MainCell`]) | main thread: negotiated format, streaming state, what was started |
//! | `rt` ([`RtCell`]) | data thread (`process`, driver timer), or the main thread inside a blocking invoke; holds the port |
//! | `io` | pointers set on the main thread, areas used on the data thread |
//! | `stats` | atomics, any thread |
//!
//! The port's control calls (`start`, `stop`, `set_volume`) are forwarded to the data thread
//! with a blocking invoke, so the port is only ever used by one thread at a time. The port's fd
//! (the stream's event channel) is watched on the data loop, so answers and position reports
//! are taken even while the graph does not run. When the card reconnects, a new port replaces
//! the old one through the same kind of invoke ([`Node::replace_port`]); the old port is dropped
//! on the main thread.
//!
//! As a driver the node waits (up to [`DRIVER_WAIT_LIMIT_NS`]) for a port that cannot take or
//! give a whole quantum: the backend's clock paces the graph instead of data being dropped.
//!
//! Volume: the node remembers `channelVolumes`/`mute` from `Props`; once its port says the
//! backend controls the volume, they go to the port and PipeWire's software volume (the
//! adapter's `softVolumes`/`softMute`) is held at unity.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use pipewire::spa::pod::Pod;
use sndif::config::{PcmHw, StreamKind};

use crate::args::ModuleArgs;
use crate::driver::{target_fill, DriverClock, RateMatcher};
use crate::ffi::{
    self, CoreConnection, DataLoop, IoAreas, MainCell, Props, RtCell, Stream, StreamEvents,
    StreamPtr, StreamStateKind, TimerCmd,
};
use crate::format::{self, Negotiated};
use crate::naming;
use crate::port::{
    CardInfo, PcmPort, PortCounters, PortInfo, PortParams, PortVolume, VolumeSupport,
};
use crate::process::{sink_cycle, source_cycle};

/// Largest quantum the silence buffer covers, frames (PipeWire's maximum).
const MAX_QUANTUM: usize = 8192;

/// How long a driver cycle waits for a port that cannot take (or give) a whole quantum before
/// it runs anyway: scheduling hiccups of the backend are bridged, a stalled backend is not
/// waited for longer (the graph would stall with it).
pub const DRIVER_WAIT_LIMIT_NS: u64 = 250_000_000;

/// Counters of a node, readable from any thread.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// `process` calls.
    pub process: AtomicU64,
    /// Frames moved between PipeWire and the port.
    pub frames: AtomicU64,
    /// Cycles without data (playback: no buffer from the graph; capture: the port was short).
    pub underruns: AtomicU64,
    /// Playback frames the port refused (its buffer was full).
    pub dropped: AtomicU64,
    /// Driver timer expiries.
    pub ticks: AtomicU64,
    /// Graph cycles started by the driver timer.
    pub triggers: AtomicU64,
    /// `pw_stream_trigger_process` failures.
    pub trigger_errors: AtomicU64,
    /// Cycles skipped because the realtime state was busy (never expected).
    pub skipped: AtomicU64,
    /// The port's [`VolumeSupport`] (0 unknown, 1 software, 2 backend), as last seen.
    pub volume_support: AtomicU8,
    /// Whether the port can carry audio, as last seen.
    pub port_alive: AtomicBool,
    /// The port's delay (frames written but not played, or captured but not read) in the
    /// last cycle.
    pub port_delay: AtomicU64,
    /// Cycles in which the follower steered the resampler.
    pub rate_matched: AtomicU64,
    /// Driver ticks postponed because the port could not take (or give) a whole quantum yet.
    pub waits: AtomicU64,
}

impl NodeStats {
    /// The port's volume support as last seen.
    pub fn volume_support(&self) -> VolumeSupport {
        match self.volume_support.load(Ordering::Relaxed) {
            1 => VolumeSupport::Software,
            2 => VolumeSupport::Backend,
            _ => VolumeSupport::Unknown,
        }
    }
}

fn publish_port(stats: &NodeStats, port: &dyn PcmPort) {
    let v = match port.volume_support() {
        VolumeSupport::Unknown => 0,
        VolumeSupport::Software => 1,
        VolumeSupport::Backend => 2,
    };
    stats.volume_support.store(v, Ordering::Relaxed);
    stats.port_alive.store(port.is_alive(), Ordering::Relaxed);
    stats
        .port_delay
        .store(port.delay_frames(), Ordering::Relaxed);
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Per-node settings from the module arguments.
#[derive(Debug, Clone, Copy)]
pub struct NodeSettings {
    /// Offer to drive the graph.
    pub driver: bool,
    /// `xen.period-frames` (0 = auto).
    pub period_frames: u32,
    /// `xen.buffer-frames` (0 = auto).
    pub buffer_frames: u32,
    /// The quantum to assume before the graph tells us (`node.latency`).
    pub default_quantum: (u64, u32),
}

impl NodeSettings {
    /// From the module arguments.
    pub fn from_args(a: &ModuleArgs) -> Self {
        NodeSettings {
            driver: a.driver,
            period_frames: a.period_frames,
            buffer_frames: a.buffer_frames,
            default_quantum: (u64::from(a.latency.frames), a.latency.rate),
        }
    }
}

/// What runs while the port is started.
#[derive(Debug)]
struct Running {
    params: PortParams,
    frame_bytes: usize,
    silence: Vec<u8>,
}

/// The realtime state: the port and the clocks.
#[derive(Debug)]
struct RtState {
    port: Box<dyn PcmPort>,
    running: Option<Running>,
    driver: DriverClock,
    matcher: RateMatcher,
    /// Driver: when the current wait for the port began (0: not waiting).
    waiting_since: u64,
}

/// Who applies the node's volume now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum VolumeMode {
    /// PipeWire (audioconvert), the default.
    #[default]
    Software,
    /// The backend; PipeWire's software volume is held at unity.
    Backend,
}

/// Main-thread state.
#[derive(Debug, Default)]
struct MainState {
    negotiated: Option<Negotiated>,
    streaming: bool,
    started: Option<PortParams>,
    driving: bool,
    /// The node's volume (`channelVolumes`, linear) and mute, once set through `Props`.
    volume: Option<(Vec<f32>, bool)>,
    volume_mode: VolumeMode,
}

/// The part of a node its stream's callbacks see (shared with the data thread).
#[derive(Debug)]
pub struct NodeCore {
    /// `node.name`.
    pub name: String,
    kind: StreamKind,
    hw: PcmHw,
    info: PortInfo,
    settings: NodeSettings,
    data_loop: DataLoop,
    io: IoAreas,
    /// Counters.
    pub stats: NodeStats,
    rt: RtCell<RtState>,
    main: MainCell<MainState>,
    gone: AtomicBool,
}

impl NodeCore {
    /// Start the port with `p` on the data thread; returns when the driver's first cycle is due.
    fn start_port(&self, p: PortParams) -> Result<u64, String> {
        let frame_bytes = usize::try_from(p.frame_bytes()).unwrap_or(0);
        if frame_bytes == 0 {
            return Err(format!("{}: unusable format {:?}", self.name, p.format));
        }
        let mut silence = vec![0u8; MAX_QUANTUM * frame_bytes];
        format::fill_silence(&mut silence, p.format);
        let mut silence = Some(silence);
        let mut result: Result<u64, String> = Err("the data loop did not run the start".into());
        let res = &mut result;
        let rc = self.data_loop.invoke(&mut || {
            let now = ffi::monotonic_ns();
            *res = self
                .rt
                .with(|rt| {
                    rt.port.start(&p, now).map_err(|e| e.to_string())?;
                    rt.running = Some(Running {
                        params: p,
                        frame_bytes,
                        silence: silence.take().unwrap_or_default(),
                    });
                    rt.matcher.reset();
                    Ok(rt.driver.start(now))
                })
                .unwrap_or_else(|| Err("realtime state busy".into()));
        });
        if rc < 0 {
            return Err(format!("data-loop invoke failed ({rc})"));
        }
        result
    }

    /// Stop the port on the data thread; returns its counters.
    fn stop_port(&self) -> PortCounters {
        let mut outcome: Option<(Result<(), String>, PortCounters)> = None;
        let out = &mut outcome;
        let rc = self.data_loop.invoke(&mut || {
            *out = self.rt.with(|rt| {
                rt.driver.stop();
                let r = match rt.running.take() {
                    Some(_) => rt.port.stop(ffi::monotonic_ns()).map_err(|e| e.to_string()),
                    None => Ok(()),
                };
                (r, rt.port.counters())
            });
        });
        match outcome {
            Some((Err(e), c)) => {
                crate::log::warn(&format!("{}: {e}", self.name));
                c
            }
            None => {
                crate::log::warn(&format!(
                    "{}: could not stop the port (invoke {rc})",
                    self.name
                ));
                PortCounters::default()
            }
            Some((Ok(()), c)) => c,
        }
    }

    /// The graph's quantum grew past what the automatic buffer toward the backend holds (two
    /// quanta): restart the stream with a buffer that does, in place (main thread; the port
    /// stops, closes and opens again on the data thread while the driver waits for it). A
    /// quantum that shrinks keeps the larger buffer; an explicit `xen.buffer-frames` is kept.
    fn follow_quantum(&self, s: StreamPtr<'_>) {
        let quantum = self.quantum().0.max(self.settings.default_quantum.0);
        self.main.with(|m| {
            let (Some(started), Some(n), true) = (m.started, m.negotiated, m.streaming) else {
                return;
            };
            let want = format::port_params(
                n,
                &self.hw,
                self.settings.period_frames,
                self.settings.buffer_frames,
                quantum,
            );
            if want.buffer_frames <= started.buffer_frames
                || (want.format, want.rate, want.channels)
                    != (started.format, started.rate, started.channels)
            {
                return;
            }
            let mut result: Option<Result<(), String>> = None;
            let res = &mut result;
            let rc = self.data_loop.invoke(&mut || {
                *res = self.rt.with(|rt| {
                    let Some(run) = rt.running.as_mut() else {
                        return Err("not started".to_owned());
                    };
                    run.params = want;
                    rt.matcher.reset();
                    rt.port
                        .start(&want, ffi::monotonic_ns())
                        .map_err(|e| e.to_string())
                });
            });
            match result {
                Some(Ok(())) => {
                    m.started = Some(want);
                    crate::log::info(&format!(
                        "{}: graph quantum {quantum}: restarted with a buffer of {} frames (was {})",
                        self.name, want.buffer_frames, started.buffer_frames
                    ));
                    self.report_latency(s, want.buffer_frames);
                }
                Some(Err(e)) => crate::log::warn(&format!(
                    "{}: cannot grow the buffer for quantum {quantum}: {e}",
                    self.name
                )),
                None => crate::log::warn(&format!(
                    "{}: cannot grow the buffer for quantum {quantum} (invoke {rc})",
                    self.name
                )),
            }
        });
    }

    /// Tell PipeWire the latency toward the backend (`SPA_PARAM_Latency`).
    fn report_latency(&self, s: StreamPtr<'_>, buffer_frames: u32) {
        if let Some(lat) = format::latency_pod(self.kind, buffer_frames) {
            if let Some(pod) = lat.pod() {
                let rc = s.update_params(&[pod]);
                if rc < 0 {
                    crate::log::warn(&format!("{}: cannot report latency ({rc})", self.name));
                }
            }
        }
    }

    /// Bring the port in line with the stream: started with the negotiated format while
    /// streaming, stopped otherwise.
    fn reconcile(&self, s: StreamPtr<'_>, m: &mut MainState) -> TimerCmd {
        let want = if m.streaming {
            m.negotiated.map(|n| {
                format::port_params(
                    n,
                    &self.hw,
                    self.settings.period_frames,
                    self.settings.buffer_frames,
                    self.quantum().0.max(self.settings.default_quantum.0),
                )
            })
        } else {
            None
        };
        // A quantum that shrank since the start does not restart the stream for a smaller
        // buffer: the one it has is kept.
        let want = match (want, m.started) {
            (Some(w), Some(s))
                if (w.format, w.rate, w.channels) == (s.format, s.rate, s.channels)
                    && w.buffer_frames <= s.buffer_frames =>
            {
                Some(s)
            }
            (w, _) => w,
        };
        if want == m.started {
            return TimerCmd::Keep;
        }
        let mut cmd = TimerCmd::Keep;
        if m.started.take().is_some() {
            let c = self.stop_port();
            crate::log::info(&format!(
                "{}: stopped ({} driven cycles, {} process calls, {} underrun cycles, {} \
                 rate-matched cycles, {} dropped frames, {} waits for the backend so far; port: \
                 {} underruns, {} overruns, {} errors)",
                self.name,
                self.stats.triggers.load(Ordering::Relaxed),
                self.stats.process.load(Ordering::Relaxed),
                self.stats.underruns.load(Ordering::Relaxed),
                self.stats.rate_matched.load(Ordering::Relaxed),
                self.stats.dropped.load(Ordering::Relaxed),
                self.stats.waits.load(Ordering::Relaxed),
                c.underruns,
                c.overruns,
                c.errors
            ));
            cmd = TimerCmd::Disarm;
        }
        if let Some(p) = want {
            match self.start_port(p) {
                Ok(first) => {
                    m.started = Some(p);
                    crate::log::info(&format!(
                        "{}: started {} {} Hz {} ch, buffer {} frames, period {} frames",
                        self.name, p.format, p.rate, p.channels, p.buffer_frames, p.period_frames
                    ));
                    self.report_latency(s, p.buffer_frames);
                    if self.settings.driver {
                        cmd = TimerCmd::ArmAt(first);
                    }
                }
                Err(e) => crate::log::warn(&format!("{}: cannot start: {e}", self.name)),
            }
        }
        cmd
    }

    /// `Props` changed (main thread): remember the volume; when the backend applies it, forward
    /// it there and hold PipeWire's own volume at unity.
    fn on_props(&self, s: StreamPtr<'_>, pod: &Pod) {
        let Some((volumes, mute)) = format::parse_volume(pod) else {
            return;
        };
        self.main.with(|m| {
            let (old_v, old_m) = m.volume.clone().unwrap_or((Vec::new(), false));
            let v = volumes.unwrap_or(old_v);
            let mute = mute.unwrap_or(old_m);
            crate::log::debug(&format!("{}: volume {v:?} mute {mute}", self.name));
            m.volume = Some((v, mute));
            if m.volume_mode == VolumeMode::Backend {
                self.push_volume(m);
                self.hold_soft_unity(s, m);
            }
        });
    }

    /// Hand the node's volume to the port (data thread, blocking invoke).
    fn push_volume(&self, m: &MainState) {
        let Some((v, mute)) = &m.volume else {
            return;
        };
        let pv = PortVolume::from_linear(v, *mute);
        let rc = self.data_loop.invoke(&mut || {
            self.rt.with(|rt| rt.port.set_volume(&pv));
        });
        if rc < 0 {
            crate::log::warn(&format!("{}: cannot forward the volume ({rc})", self.name));
        }
    }

    fn hold_soft_unity(&self, s: StreamPtr<'_>, m: &MainState) {
        let n = m.volume.as_ref().map_or(0, |(v, _)| v.len()).max(1);
        let rc = s.set_soft_volume(&vec![1.0; n], false);
        if rc < 0 {
            crate::log::warn(&format!(
                "{}: cannot hold the software volume at unity ({rc})",
                self.name
            ));
        }
    }

    /// Follow the port's volume support (main thread, periodically and after a port swap): when
    /// the backend applies the volume, forward it and hold PipeWire's at unity; when it does not
    /// (any more), give the volume back to PipeWire.
    fn sync_volume(&self, s: StreamPtr<'_>) {
        let support = self.stats.volume_support();
        self.main.with(|m| match (support, m.volume_mode) {
            (VolumeSupport::Backend, VolumeMode::Software) => {
                crate::log::info(&format!(
                    "{}: the backend controls the volume; PipeWire's stays at unity",
                    self.name
                ));
                m.volume_mode = VolumeMode::Backend;
                self.push_volume(m);
                if m.volume.is_some() {
                    self.hold_soft_unity(s, m);
                }
            }
            (VolumeSupport::Software, VolumeMode::Backend) => {
                crate::log::info(&format!(
                    "{}: the backend has no volume control; PipeWire applies the volume",
                    self.name
                ));
                m.volume_mode = VolumeMode::Software;
                if let Some((v, mute)) = &m.volume {
                    let rc = s.set_soft_volume(v, *mute);
                    if rc < 0 {
                        crate::log::warn(&format!(
                            "{}: cannot restore the software volume ({rc})",
                            self.name
                        ));
                    }
                }
            }
            _ => {}
        });
    }

    /// The quantum and rate of the graph, or the configured default.
    fn quantum(&self) -> (u64, u32) {
        self.io.quantum().unwrap_or(self.settings.default_quantum)
    }

    fn process_rt(&self, s: StreamPtr<'_>, rt: &mut RtState, driving: bool) {
        let now = ffi::monotonic_ns();
        let RtState {
            port,
            running,
            matcher,
            ..
        } = rt;
        port.service(now);
        publish_port(&self.stats, port.as_ref());
        let Some(run) = running.as_ref() else {
            // Not started: hand back an empty buffer so nothing stale is replayed.
            if let Some(mut b) = s.dequeue() {
                b.set_chunk(0, 0, 0);
            }
            return;
        };
        let (quantum, rate) = self.quantum();
        match self.kind {
            StreamKind::Playback => {
                let cycle = match s.dequeue() {
                    Some(mut b) => {
                        let chunk = b.chunk();
                        match (chunk, b.memory()) {
                            (Some((off, size, _)), Some(mem)) => sink_cycle(
                                port.as_mut(),
                                Some((&*mem, off, size)),
                                run.frame_bytes,
                                &run.silence,
                                quantum,
                            ),
                            _ => sink_cycle(
                                port.as_mut(),
                                None,
                                run.frame_bytes,
                                &run.silence,
                                quantum,
                            ),
                        }
                    }
                    None => sink_cycle(port.as_mut(), None, run.frame_bytes, &run.silence, quantum),
                };
                bump(&self.stats.frames, cycle.frames);
                bump(&self.stats.dropped, cycle.dropped);
                if cycle.underrun {
                    bump(&self.stats.underruns, 1);
                }
            }
            StreamKind::Capture => {
                if let Some(mut b) = s.dequeue() {
                    let requested = b.requested();
                    let c = match b.memory() {
                        Some(mem) => source_cycle(
                            port.as_mut(),
                            mem,
                            requested,
                            run.frame_bytes,
                            run.params.format,
                        ),
                        None => Default::default(),
                    };
                    let stride = i32::try_from(run.frame_bytes).unwrap_or(0);
                    b.set_chunk(0, c.size, stride);
                    bump(&self.stats.frames, c.frames);
                    if c.underrun {
                        bump(&self.stats.underruns, 1);
                    }
                }
            }
        }
        if driving {
            self.io.set_rate_match(None);
        } else if !port.is_running() {
            // Pre-fill or restart: the fill level settles only once the backend runs.
            matcher.reset();
            self.io.set_rate_match(None);
        } else {
            let r = matcher.update(quantum, rate, port.delay_frames());
            if r.is_some() {
                bump(&self.stats.rate_matched, 1);
            }
            self.io.set_rate_match(r);
        }
    }

    /// One driver timer expiry; returns whether to start a graph cycle and when to wake next.
    fn tick_rt(&self, rt: &mut RtState, driving: bool) -> (bool, TimerCmd) {
        let RtState {
            port,
            running,
            driver,
            waiting_since,
            ..
        } = rt;
        let Some(run) = running.as_ref() else {
            return (false, TimerCmd::Disarm);
        };
        let now = ffi::monotonic_ns();
        port.service(now);
        let (quantum, rate) = self.quantum();
        // The backend's clock drives: while the port cannot take (playback) or give (capture) a
        // whole quantum — also while it is still opening and starting, so the first quanta of a
        // stream are not dropped — the cycle waits for it rather than dropping data or inserting
        // silence
        // — up to DRIVER_WAIT_LIMIT_NS, then it runs anyway (a backend that stalls for longer
        // loses data; a dead one is not waited for).
        if driving && (port.is_running() || port.is_starting()) {
            let room = match self.kind {
                StreamKind::Playback => port.writable_frames(),
                StreamKind::Capture => port.readable_frames(),
            };
            let short = quantum.saturating_sub(u64::from(room));
            let limit = DRIVER_WAIT_LIMIT_NS;
            if short > 0 {
                if *waiting_since == 0 {
                    *waiting_since = now.max(1);
                }
                if now.saturating_sub(*waiting_since) < limit {
                    bump(&self.stats.waits, 1);
                    let wait = cycle_ns(short, rate).clamp(500_000, 5_000_000);
                    return (false, TimerCmd::ArmAt(now.saturating_add(wait)));
                }
            }
            if *waiting_since != 0 {
                *waiting_since = 0;
                // The schedule moves with the backend instead of catching up.
                driver.postpone(now);
            }
        }
        let target = target_fill(
            self.kind,
            run.params.buffer_frames,
            run.params.period_frames,
            quantum,
        );
        let u = driver.tick(
            now,
            self.io.clock_position(),
            quantum,
            rate,
            port.delay_frames(),
            target,
            port.rate_ratio(),
        );
        if driving {
            self.io.write_clock(&u);
        }
        (driving, TimerCmd::ArmAt(u.next_nsec))
    }
}

/// Nanoseconds of `frames` at `rate` Hz.
fn cycle_ns(frames: u64, rate: u32) -> u64 {
    frames.saturating_mul(1_000_000_000) / u64::from(rate.max(1))
}

impl StreamEvents for NodeCore {
    fn io_areas(&self) -> &IoAreas {
        &self.io
    }

    fn destroyed(&self) {
        self.gone.store(true, Ordering::Release);
        crate::log::info(&format!("{}: stream destroyed", self.name));
    }

    fn state_changed(
        &self,
        s: StreamPtr<'_>,
        old: StreamStateKind,
        new: StreamStateKind,
        error: Option<&str>,
    ) -> TimerCmd {
        if new == StreamStateKind::Error {
            crate::log::warn(&format!(
                "{}: stream error: {}",
                self.name,
                error.unwrap_or("unknown")
            ));
        } else {
            crate::log::debug(&format!("{}: {old:?} -> {new:?}", self.name));
        }
        self.main
            .with(|m| {
                m.streaming = new == StreamStateKind::Streaming;
                self.reconcile(s, m)
            })
            .unwrap_or(TimerCmd::Keep)
    }

    fn param_changed(&self, s: StreamPtr<'_>, id: u32, param: Option<&Pod>) -> TimerCmd {
        if id == ffi::spa::SPA_PARAM_Props {
            if let Some(pod) = param {
                self.on_props(s, pod);
            }
            return TimerCmd::Keep;
        }
        if id != ffi::spa::SPA_PARAM_Format {
            return TimerCmd::Keep;
        }
        self.main
            .with(|m| {
                m.negotiated = match param {
                    None => None,
                    Some(pod) => match format::parse_format(pod, &self.hw) {
                        Ok(n) => {
                            crate::log::info(&format!(
                                "{}: format {} {} Hz {} ch",
                                self.name, n.format, n.rate, n.channels
                            ));
                            Some(n)
                        }
                        Err(e) => {
                            crate::log::warn(&format!(
                                "{}: refusing the negotiated format: {e}",
                                self.name
                            ));
                            None
                        }
                    },
                };
                self.reconcile(s, m)
            })
            .unwrap_or(TimerCmd::Keep)
    }

    fn io_changed(&self, s: StreamPtr<'_>, _id: u32) -> TimerCmd {
        let driving = s.is_driving();
        self.main.with(|m| {
            if m.driving != driving {
                m.driving = driving;
                crate::log::info(&format!(
                    "{}: {}",
                    self.name,
                    if driving {
                        "drives its graph"
                    } else {
                        "follows another driver"
                    }
                ));
            }
        });
        TimerCmd::Keep
    }

    fn fd_ready(&self) {
        let now = ffi::monotonic_ns();
        if self
            .rt
            .with(|rt| {
                rt.port.service(now);
                publish_port(&self.stats, rt.port.as_ref());
            })
            .is_none()
        {
            bump(&self.stats.skipped, 1);
        }
    }

    fn process(&self, s: StreamPtr<'_>) {
        bump(&self.stats.process, 1);
        let driving = s.is_driving();
        if self.rt.with(|rt| self.process_rt(s, rt, driving)).is_none() {
            bump(&self.stats.skipped, 1);
        }
    }

    fn timer(&self, s: StreamPtr<'_>, _expirations: u64) -> TimerCmd {
        bump(&self.stats.ticks, 1);
        let driving = s.is_driving();
        let Some((trigger, cmd)) = self.rt.with(|rt| self.tick_rt(rt, driving)) else {
            bump(&self.stats.skipped, 1);
            return TimerCmd::Keep;
        };
        // The realtime state is released: triggering may run `process` right here.
        if trigger {
            if s.trigger_process() < 0 {
                bump(&self.stats.trigger_errors, 1);
            } else {
                bump(&self.stats.triggers, 1);
            }
        }
        cmd
    }
}

/// Why a node could not be created.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The port allows nothing PipeWire can carry.
    #[error("{0}: the stream allows no format PipeWire can carry")]
    NoFormat(String),
    /// PipeWire refused.
    #[error("{name}: {what}")]
    PipeWire {
        /// The node.
        name: String,
        /// What failed.
        what: String,
    },
}

/// A node of the module (main thread). Dropping it destroys the stream, then stops the port.
#[derive(Debug)]
pub struct Node {
    core: Arc<NodeCore>,
    stream: Option<Stream<NodeCore>>,
    /// The card's dev-id.
    pub card: u32,
}

impl Node {
    /// Create and connect the node for `port` of `card`.
    pub fn create(
        args: &ModuleArgs,
        pw_core: &CoreConnection,
        data_loop: DataLoop,
        graph_rate: u32,
        card: &CardInfo,
        port: Box<dyn PcmPort>,
    ) -> Result<Node, NodeError> {
        let info = port.info().clone();
        let name = naming::node_name(
            &args.prefix,
            card.dev_id,
            info.device,
            info.kind,
            info.index,
        );
        let pods = format::enum_formats(&info.hw, graph_rate);
        if pods.is_empty() {
            return Err(NodeError::NoFormat(name));
        }
        let pw_err = |what: String| NodeError::PipeWire {
            name: name.clone(),
            what,
        };
        let props = Props::new(&naming::node_properties(args, card, &info, graph_rate))
            .ok_or_else(|| pw_err("cannot allocate properties".into()))?;
        let settings = NodeSettings::from_args(args);
        let core = Arc::new(NodeCore {
            name: name.clone(),
            kind: info.kind,
            hw: info.hw.clone(),
            info: info.clone(),
            settings,
            data_loop,
            io: IoAreas::default(),
            stats: NodeStats::default(),
            rt: RtCell::new(RtState {
                port,
                running: None,
                driver: DriverClock::new(info.kind),
                matcher: RateMatcher::new(info.kind),
                waiting_since: 0,
            }),
            main: MainCell::new(MainState::default()),
            gone: AtomicBool::new(false),
        });
        let fd = core.rt.with(|rt| rt.port.fd()).flatten();
        let stream =
            Stream::new(pw_core, &name, props, Arc::clone(&core), data_loop).map_err(pw_err)?;
        if settings.driver {
            stream.add_timer().map_err(pw_err)?;
        }
        stream.watch_fd(fd).map_err(pw_err)?;
        let mut params: Vec<&Pod> = pods.iter().filter_map(|p| p.pod()).collect();
        // The expected backend latency until the port reports the real one.
        let latency = format::preferred_rate(&info.hw, graph_rate).and_then(|rate| {
            let n = Negotiated {
                format: *format::offered_formats(&info.hw).first()?,
                rate,
                channels: format::preferred_channels(&info.hw),
            };
            let p = format::port_params(
                n,
                &info.hw,
                settings.period_frames,
                settings.buffer_frames,
                settings.default_quantum.0,
            );
            format::latency_pod(info.kind, p.buffer_frames)
        });
        if let Some(pod) = latency.as_ref().and_then(|l| l.pod()) {
            params.push(pod);
        }
        let direction = match info.kind {
            StreamKind::Playback => ffi::DIRECTION_INPUT,
            StreamKind::Capture => ffi::DIRECTION_OUTPUT,
        };
        let mut flags = ffi::FLAG_MAP_BUFFERS | ffi::FLAG_RT_PROCESS;
        if settings.driver {
            flags |= ffi::FLAG_DRIVER;
        }
        let rc = stream.connect(direction, flags, &params);
        if rc < 0 {
            return Err(pw_err(format!(
                "cannot connect the stream: {}",
                std::io::Error::from_raw_os_error(-rc)
            )));
        }
        Ok(Node {
            core,
            stream: Some(stream),
            card: card.dev_id,
        })
    }

    /// `node.name`.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Counters.
    pub fn stats(&self) -> &NodeStats {
        &self.core.stats
    }

    /// Whether the context destroyed the stream.
    pub fn is_gone(&self) -> bool {
        self.core.gone.load(Ordering::Acquire)
    }

    /// What the node's port is (stream identity and capabilities).
    pub fn port_info(&self) -> &PortInfo {
        &self.core.info
    }

    /// Whether the port can carry audio, as last seen by the data thread.
    pub fn port_alive(&self) -> bool {
        self.core.stats.port_alive.load(Ordering::Relaxed)
    }

    /// Swap in `port` (a new stream of the same card, device and index after the card
    /// reconnected) for the current one, keeping the node (its id, name, links and volume). If
    /// the node is started, the new port starts with the same parameters. The port is handed
    /// to the data thread through a blocking invoke; the old one is dropped here, on the main
    /// thread. A port with different identity or capabilities is given back.
    pub fn replace_port(&self, port: Box<dyn PcmPort>) -> Result<(), Box<dyn PcmPort>> {
        if port.info() != &self.core.info {
            return Err(port);
        }
        let fd = port.fd();
        let mut incoming = Some(port);
        let mut outgoing: Option<Box<dyn PcmPort>> = None;
        let (inc, out) = (&mut incoming, &mut outgoing);
        let core: &NodeCore = &self.core;
        let stats = &core.stats;
        let rc = core.data_loop.invoke(&mut || {
            let now = ffi::monotonic_ns();
            core.rt.with(|rt| {
                let Some(new) = inc.take() else { return };
                let old = core::mem::replace(&mut rt.port, new);
                if let Some(run) = rt.running.as_ref() {
                    // Errors are counted by the port; the node keeps its started state.
                    let _ = rt.port.start(&run.params, now);
                    rt.matcher.reset();
                }
                publish_port(stats, rt.port.as_ref());
                *out = Some(old);
            });
        });
        if let Some(back) = incoming {
            crate::log::warn(&format!(
                "{}: cannot hand the new stream to the data thread ({rc})",
                self.core.name
            ));
            return Err(back);
        }
        if let Some(stream) = &self.stream {
            if let Err(e) = stream.watch_fd(fd) {
                crate::log::warn(&format!("{}: {e}", self.core.name));
            }
        }
        // The old port's io source is gone: it may be dropped (and its fd closed) now.
        drop(outgoing);
        self.core.main.with(|m| {
            // The new backend may or may not control the volume: start over in software.
            self.core.push_volume(m);
        });
        self.sync_volume();
        Ok(())
    }

    /// Follow the port's volume support (see `NodeCore::sync_volume`). Main thread.
    pub fn sync_volume(&self) {
        if let Some(stream) = &self.stream {
            stream.with_ptr(|s| self.core.sync_volume(s));
        }
    }

    /// Grow the buffer toward the backend when the graph's quantum outgrew it (see
    /// `NodeCore::follow_quantum`). Main thread, periodically.
    pub fn follow_quantum(&self) {
        if let Some(stream) = &self.stream {
            stream.with_ptr(|s| self.core.follow_quantum(s));
        }
    }

    /// Activate or deactivate the node (an inactive node is not scheduled). Main thread.
    pub fn set_active(&self, active: bool) {
        if let Some(stream) = &self.stream {
            let rc = stream.set_active(active);
            if rc < 0 {
                crate::log::warn(&format!(
                    "{}: cannot {} the stream ({rc})",
                    self.core.name,
                    if active { "activate" } else { "deactivate" }
                ));
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Destroy the stream first (its timer is removed and the node leaves the graph
        // synchronously), then nothing but this thread can reach the port: stop it.
        drop(self.stream.take());
        let name = self.core.name.clone();
        let stopped = self.core.rt.with(|rt| {
            if rt.running.take().is_some() {
                rt.port.stop(ffi::monotonic_ns())
            } else {
                Ok(())
            }
        });
        match stopped {
            Some(Err(e)) => crate::log::warn(&format!("{name}: {e}")),
            None => crate::log::warn(&format!("{name}: port busy at teardown")),
            Some(Ok(())) => {}
        }
    }
}
