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
//! The port's control calls (`start`, `stop`) are forwarded to the data thread with a blocking
//! invoke, so the port is only ever used by one thread at a time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use crate::port::{CardInfo, PcmPort, PortCounters, PortParams};
use crate::process::{sink_cycle, source_cycle};

/// Largest quantum the silence buffer covers, frames (PipeWire's maximum).
const MAX_QUANTUM: usize = 8192;

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
}

/// Main-thread state.
#[derive(Debug, Default)]
struct MainState {
    negotiated: Option<Negotiated>,
    streaming: bool,
    started: Option<PortParams>,
    driving: bool,
}

/// The part of a node its stream's callbacks see (shared with the data thread).
#[derive(Debug)]
pub struct NodeCore {
    /// `node.name`.
    pub name: String,
    kind: StreamKind,
    hw: PcmHw,
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
                )
            })
        } else {
            None
        };
        if want == m.started {
            return TimerCmd::Keep;
        }
        let mut cmd = TimerCmd::Keep;
        if m.started.take().is_some() {
            let c = self.stop_port();
            crate::log::info(&format!(
                "{}: stopped ({} driven cycles, {} process calls, {} underrun cycles so far; \
                 port: {} underruns, {} overruns, {} errors)",
                self.name,
                self.stats.triggers.load(Ordering::Relaxed),
                self.stats.process.load(Ordering::Relaxed),
                self.stats.underruns.load(Ordering::Relaxed),
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
                    if let Some(lat) = format::latency_pod(self.kind, p.buffer_frames) {
                        if let Some(pod) = lat.pod() {
                            let rc = s.update_params(&[pod]);
                            if rc < 0 {
                                crate::log::warn(&format!(
                                    "{}: cannot report latency ({rc})",
                                    self.name
                                ));
                            }
                        }
                    }
                    if self.settings.driver {
                        cmd = TimerCmd::ArmAt(first);
                    }
                }
                Err(e) => crate::log::warn(&format!("{}: cannot start: {e}", self.name)),
            }
        }
        cmd
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
        } else {
            let r = matcher.update(quantum, rate, port.delay_frames());
            self.io.set_rate_match(r);
        }
    }

    /// One driver timer expiry; returns whether to start a graph cycle and when to wake next.
    fn tick_rt(&self, rt: &mut RtState, driving: bool) -> (bool, TimerCmd) {
        let RtState {
            port,
            running,
            driver,
            ..
        } = rt;
        let Some(run) = running.as_ref() else {
            return (false, TimerCmd::Disarm);
        };
        let now = ffi::monotonic_ns();
        port.service(now);
        let (quantum, rate) = self.quantum();
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
            settings,
            data_loop,
            io: IoAreas::default(),
            stats: NodeStats::default(),
            rt: RtCell::new(RtState {
                port,
                running: None,
                driver: DriverClock::new(info.kind),
                matcher: RateMatcher::new(info.kind),
            }),
            main: MainCell::new(MainState::default()),
            gone: AtomicBool::new(false),
        });
        let stream =
            Stream::new(pw_core, &name, props, Arc::clone(&core), data_loop).map_err(pw_err)?;
        if settings.driver {
            stream.add_timer().map_err(pw_err)?;
        }
        let mut params: Vec<&Pod> = pods.iter().filter_map(|p| p.pod()).collect();
        // The expected backend latency until the port reports the real one.
        let latency = format::preferred_rate(&info.hw, graph_rate).and_then(|rate| {
            let n = Negotiated {
                format: *format::offered_formats(&info.hw).first()?,
                rate,
                channels: format::preferred_channels(&info.hw),
            };
            let p =
                format::port_params(n, &info.hw, settings.period_frames, settings.buffer_frames);
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
