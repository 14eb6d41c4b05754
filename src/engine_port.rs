//! [`EnginePort`]: a [`PcmPort`] over one stream of the frontend engine (`xen_snd_engine::Stream`).
//!
//! The node calls it on the data thread only (the control calls through a blocking invoke), so
//! the engine's one-thread-at-a-time rule holds. Control requests are sequenced here, one at a
//! time, without waiting: every call submits what is due and returns; [`PcmPort::service`] (each
//! graph cycle, driver tick, and whenever the stream's event-channel fd is readable) consumes the
//! answers and submits the next step:
//!
//! ```text
//! start:  Closed ─OPEN→ Open ─(GET_VOLUME probe, once)→ ─(SET_VOLUME/MUTE if due)→
//!         ─START after the pre-fill→ Running
//! stop:   Running ─STOP→ Open ─CLOSE→ Closed         (an armed START is simply dropped)
//! params changed while running: stop, then start with the new ones
//! ```
//!
//! No lock, no allocation, no log on these paths: failures are counted ([`PcmPort::counters`])
//! and parameters whose OPEN or START failed are not retried until the node asks for different
//! ones (no request storm against a refusing backend). Once the card disconnects or the stream
//! fails, the port is dead ([`PcmPort::is_alive`]) and the module swaps in a new one.
//!
//! Dropping a live port stops and closes its stream toward the backend, waiting at most
//! [`CLOSE_BUDGET`] for the answers (main thread, at node removal or module unload).

use std::os::fd::RawFd;
use std::time::Duration;

use sndif::config::StreamKind;
use xen_snd_engine::{PcmParams, Stream, StreamError, StreamOp, StreamState};

use crate::port::{
    PcmPort, PortCounters, PortError, PortInfo, PortParams, PortVolume, VolumeSupport, MAX_CHANNELS,
};

/// How long dropping a live port waits for STOP and CLOSE to be answered, in total.
pub const CLOSE_BUDGET: Duration = Duration::from_millis(250);

/// How long a stopping playback stream waits for the data it was given to be submitted to the
/// backend before it sends STOP (which discards what was not submitted).
pub const DRAIN_BUDGET_NS: u64 = 200_000_000;

/// Where the stream is in its control sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not open.
    Closed,
    /// OPEN sent.
    Opening,
    /// Open, not started (probe and volume requests happen here).
    Open,
    /// START armed (waits for the pre-fill) or sent.
    Starting,
    /// Started.
    Running,
    /// STOP sent.
    Stopping,
    /// CLOSE sent.
    Closing,
    /// The card disconnected or the stream failed: nothing more to do.
    Dead,
}

/// A [`PcmPort`] over an engine stream.
#[derive(Debug)]
pub struct EnginePort {
    info: PortInfo,
    stream: Stream,
    phase: Phase,
    /// What the node wants: started with these parameters, or stopped.
    want: Option<PortParams>,
    /// The parameters of the current OPEN.
    active: Option<PortParams>,
    /// Parameters whose OPEN or START failed (not retried until the node wants others).
    failed: Option<PortParams>,
    support: VolumeSupport,
    /// The volume the node has.
    volume: Option<PortVolume>,
    /// What the backend has: the values and the mute state last applied.
    sent_values: Option<PortVolume>,
    sent_mute: Option<bool>,
    /// The volume request in flight.
    volume_in_flight: Option<PortVolume>,
    /// The time of the last service call.
    now_ns: u64,
    /// When a stop was first wanted while playback data was still unsubmitted (0: not
    /// draining).
    drain_since: u64,
    errors: u64,
    /// Refused GET_VOLUME probes (the engine counts them as backend errors; they are not).
    probe_refusals: u64,
    read_underruns: u64,
}

fn pcm(p: &PortParams) -> PcmParams {
    PcmParams {
        format: p.format,
        rate: p.rate,
        channels: p.channels,
        buffer_frames: p.buffer_frames,
        period_frames: p.period_frames,
    }
}

impl EnginePort {
    /// A port over `stream` (as handed over by the engine's `CardConnected`).
    pub fn new(stream: Stream) -> EnginePort {
        let si = stream.info();
        let info = PortInfo {
            kind: si.kind,
            device: si.id.device,
            index: si.id.stream,
            device_name: si.device_name.clone(),
            unique_id: si.unique_id.clone(),
            hw: si.hw.clone(),
        };
        EnginePort {
            info,
            stream,
            phase: Phase::Closed,
            want: None,
            active: None,
            failed: None,
            support: VolumeSupport::Unknown,
            volume: None,
            sent_values: None,
            sent_mute: None,
            volume_in_flight: None,
            now_ns: 0,
            drain_since: 0,
            errors: 0,
            probe_refusals: 0,
            read_underruns: 0,
        }
    }

    /// Where the control sequence is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The engine stream.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    fn dead(&self) -> bool {
        matches!(
            self.stream.state(),
            StreamState::Failed(_) | StreamState::Revoked
        ) || self.stream.is_revoked()
    }

    /// Consume the outcome of the control request that finished.
    fn on_result(&mut self, op: StreamOp, ok: bool) {
        match op {
            StreamOp::Open => {
                if ok {
                    self.phase = Phase::Open;
                    // A backend starts every OPEN at 0 dB, unmuted (snd_be, the reference).
                    self.sent_values = None;
                    self.sent_mute = None;
                } else {
                    self.errors += 1;
                    self.failed = self.active;
                    self.active = None;
                    self.phase = Phase::Closed;
                }
            }
            StreamOp::GetVolume => {
                self.support = if ok {
                    VolumeSupport::Backend
                } else {
                    self.probe_refusals += 1;
                    VolumeSupport::Software
                };
            }
            StreamOp::SetVolume | StreamOp::Mute | StreamOp::Unmute => {
                let sent = self.volume_in_flight.take();
                if ok {
                    if op == StreamOp::SetVolume {
                        self.sent_values = sent;
                    } else {
                        self.sent_mute = Some(op == StreamOp::Mute);
                    }
                } else {
                    // The backend accepted the probe but refuses this: leave the volume to
                    // PipeWire rather than asking again and again.
                    self.errors += 1;
                    self.support = VolumeSupport::Software;
                }
            }
            StreamOp::Start => {
                if ok {
                    self.phase = Phase::Running;
                } else {
                    self.errors += 1;
                    self.failed = self.active;
                    self.phase = Phase::Open;
                }
            }
            StreamOp::Stop => {
                if !ok {
                    self.errors += 1;
                }
                self.phase = Phase::Open;
            }
            StreamOp::Close => {
                if !ok {
                    self.errors += 1;
                }
                self.phase = Phase::Closed;
                self.active = None;
            }
            _ => {}
        }
    }

    /// Submit the next control request that is due, if any.
    fn drive(&mut self, now_ns: u64) {
        if self.dead() {
            self.phase = Phase::Dead;
            return;
        }
        if self.stream.control_pending().is_some() {
            // Only an armed START can be overtaken (by STOP).
            if self.phase == Phase::Starting
                && self.want != self.active
                && self.stream.submit_stop(now_ns).is_ok()
            {
                self.phase = Phase::Stopping;
            }
            return;
        }
        match self.phase {
            Phase::Closed => {
                if let Some(p) = self.want.filter(|p| self.failed != Some(*p)) {
                    match self.stream.submit_open(pcm(&p), now_ns) {
                        Ok(_) => {
                            self.active = Some(p);
                            self.phase = Phase::Opening;
                        }
                        Err(_) => {
                            self.errors += 1;
                            self.failed = Some(p);
                        }
                    }
                }
            }
            Phase::Open => {
                if self.want != self.active || self.failed == self.active {
                    self.submit(now_ns, |s, now| s.submit_close(now), Phase::Closing);
                    return;
                }
                if self.support == VolumeSupport::Unknown {
                    match self.stream.submit_get_volume(now_ns) {
                        Ok(()) => return,
                        Err(StreamError::NoRoom { .. }) => return,
                        Err(_) => self.support = VolumeSupport::Software,
                    }
                }
                if self.send_volume(now_ns) {
                    return;
                }
                self.submit(now_ns, |s, now| s.arm_start(now), Phase::Starting);
            }
            Phase::Running => {
                if self.want != self.active {
                    if self.draining(now_ns) {
                        return;
                    }
                    self.submit(now_ns, |s, now| s.submit_stop(now), Phase::Stopping);
                    return;
                }
                self.drain_since = 0;
                self.send_volume(now_ns);
            }
            // Waiting for an answer (taken in `on_result`), or nothing left to do.
            Phase::Opening | Phase::Starting | Phase::Stopping | Phase::Closing | Phase::Dead => {}
        }
    }

    /// Playback: whether to wait before STOP because data given to the stream is not submitted
    /// to the backend yet (at most [`DRAIN_BUDGET_NS`]).
    fn draining(&mut self, now_ns: u64) -> bool {
        let (written, submitted) = self.stream.byte_counters();
        if self.info.kind != StreamKind::Playback || written <= submitted {
            self.drain_since = 0;
            return false;
        }
        if self.drain_since == 0 {
            self.drain_since = now_ns.max(1);
        }
        if now_ns.saturating_sub(self.drain_since) < DRAIN_BUDGET_NS {
            return true;
        }
        self.drain_since = 0;
        false
    }

    fn submit(
        &mut self,
        now_ns: u64,
        f: impl FnOnce(&mut Stream, u64) -> Result<(), StreamError>,
        next: Phase,
    ) {
        match f(&mut self.stream, now_ns) {
            Ok(()) => self.phase = next,
            Err(StreamError::RingFull { .. } | StreamError::Busy { .. }) => {}
            Err(_) => {
                self.errors += 1;
                if self.dead() {
                    self.phase = Phase::Dead;
                }
            }
        }
    }

    /// Send SET_VOLUME or MUTE/UNMUTE if the backend controls the volume and lags behind the
    /// node; returns whether a request went out.
    fn send_volume(&mut self, now_ns: u64) -> bool {
        if self.support != VolumeSupport::Backend {
            return false;
        }
        let (Some(v), Some(p)) = (self.volume, self.active) else {
            return false;
        };
        let v = v.fitted(p.channels);
        let result = if self.sent_values.map(|s| s.values() != v.values()) != Some(false) {
            self.stream.submit_set_volume(v.values(), now_ns)
        } else if self.sent_mute != Some(v.mute) {
            let all = [true; MAX_CHANNELS];
            let flags = all.get(..usize::from(p.channels)).unwrap_or(&[]);
            self.stream.submit_mute(v.mute, flags, now_ns)
        } else {
            return false;
        };
        match result {
            Ok(()) => {
                self.volume_in_flight = Some(v);
                true
            }
            Err(StreamError::NoRoom { .. } | StreamError::RingFull { .. }) => false,
            Err(_) => {
                self.errors += 1;
                self.support = VolumeSupport::Software;
                false
            }
        }
    }

    fn step(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
        self.stream.service(now_ns);
        while let Some((op, r)) = self.stream.take_control_result() {
            self.on_result(op, r.is_ok());
        }
        self.drive(now_ns);
    }

    /// Whether audio goes into the stream now: open (pre-fill, also while the probe and volume
    /// requests are answered), started or running.
    fn carries_audio(&self) -> bool {
        match self.phase {
            Phase::Open => self.want == self.active,
            Phase::Starting | Phase::Running => true,
            _ => false,
        }
    }

    /// Stop and close toward the backend, waiting at most `budget` for the answers.
    pub fn close_blocking(&mut self, budget: Duration) {
        self.want = None;
        let start = crate::ffi::monotonic_ns();
        let budget_ns = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX);
        loop {
            let now = crate::ffi::monotonic_ns();
            self.step(now);
            if matches!(self.phase, Phase::Closed | Phase::Dead) {
                return;
            }
            let left = budget_ns.saturating_sub(now.saturating_sub(start));
            if left == 0 {
                return;
            }
            wait_readable(self.stream.fd(), left);
        }
    }
}

/// poll(2) `fd` for input for at most `timeout_ns`.
fn wait_readable(fd: RawFd, timeout_ns: u64) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout_ns.div_ceil(1_000_000)).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, exclusively borrowed for the call.
    unsafe { libc::poll(&mut p, 1, ms) };
}

impl PcmPort for EnginePort {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn start(&mut self, params: &PortParams, now_ns: u64) -> Result<(), PortError> {
        self.want = Some(*params);
        // A new request: parameters that failed before may be tried again.
        self.failed = None;
        self.step(now_ns);
        Ok(())
    }

    fn stop(&mut self, now_ns: u64) -> Result<(), PortError> {
        self.want = None;
        self.step(now_ns);
        Ok(())
    }

    fn service(&mut self, now_ns: u64) {
        self.step(now_ns);
    }

    fn writable_frames(&self) -> u32 {
        if self.carries_audio() {
            self.stream.writable_frames()
        } else {
            0
        }
    }

    fn write(&mut self, data: &[u8]) -> usize {
        if self.carries_audio() {
            self.stream.write(data)
        } else {
            0
        }
    }

    fn readable_frames(&self) -> u32 {
        if self.phase == Phase::Running {
            self.stream.readable_frames()
        } else {
            0
        }
    }

    fn read(&mut self, out: &mut [u8]) -> usize {
        if self.phase != Phase::Running {
            return 0;
        }
        let n = self.stream.read(out);
        if n < out.len() {
            self.read_underruns += 1;
        }
        n
    }

    fn delay_frames(&self) -> u64 {
        if !self.carries_audio() {
            return 0;
        }
        let reported = self.stream.delay_frames();
        if self.phase != Phase::Running {
            return reported;
        }
        // The backend reports its position once a period; it played (or captured) on since.
        // Without this the delay is a saw-tooth one period deep, which rate matching would take
        // for drift.
        let Some(p) = self.active else {
            return reported;
        };
        let since = self
            .now_ns
            .saturating_sub(self.stream.last_position_ns())
            .min(1_000_000_000);
        let moved = (u64::from(p.rate) * since / 1_000_000_000).min(u64::from(p.period_frames));
        match self.info.kind {
            StreamKind::Playback => reported.saturating_sub(moved),
            StreamKind::Capture => reported.saturating_add(moved),
        }
    }

    fn rate_ratio(&self) -> f64 {
        match self.stream.rate_estimator() {
            Some(e) if e.is_locked() && self.phase == Phase::Running => e.rate_ratio(),
            _ => 1.0,
        }
    }

    fn counters(&self) -> PortCounters {
        let c = self.stream.stats();
        let (underruns, overruns) = match self.info.kind {
            StreamKind::Playback => (c.underruns, 0),
            StreamKind::Capture => (self.read_underruns, c.overruns),
        };
        PortCounters {
            underruns,
            overruns,
            errors: c.backend_errors.saturating_sub(self.probe_refusals)
                + c.timeouts
                + c.protocol_errors
                + self.errors,
        }
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.stream.fd())
    }

    fn set_volume(&mut self, volume: &PortVolume) {
        self.volume = Some(*volume);
    }

    fn volume_support(&self) -> VolumeSupport {
        self.support
    }

    fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    fn is_starting(&self) -> bool {
        let Some(w) = self.want else {
            return false;
        };
        if self.failed == Some(w) || self.dead() {
            return false;
        }
        !(self.phase == Phase::Running && self.active == Some(w))
    }

    fn is_alive(&self) -> bool {
        !self.dead()
    }
}

impl Drop for EnginePort {
    fn drop(&mut self) {
        if !self.dead() && self.phase != Phase::Closed {
            self.close_blocking(CLOSE_BUDGET);
        }
    }
}

#[cfg(all(test, feature = "test-hook"))]
mod tests {
    use super::*;
    use std::time::Instant;

    use sndif::formats::PcmFormat;
    use xen_snd_backend::{LogWhat, StreamStats};
    use xen_snd_engine::testworld::{Spec, TestWorld};
    use xen_snd_engine::{Frontend, FrontendEvent, FrontendOptions};

    const WAIT: Duration = Duration::from_secs(10);

    struct World {
        world: TestWorld,
        fe: Frontend,
        ports: Vec<EnginePort>,
    }

    fn connect(spec: &str) -> World {
        let world = TestWorld::start(&Spec::parse(spec).expect("spec")).expect("world");
        let fe = Frontend::start(world.services(), FrontendOptions::default()).expect("engine");
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match fe.next_event(left) {
                Some(FrontendEvent::CardConnected { streams, .. }) => {
                    let ports = streams.into_iter().map(EnginePort::new).collect();
                    return World { world, fe, ports };
                }
                Some(_) => {}
                None => panic!("no CardConnected within {WAIT:?}"),
            }
        }
    }

    impl World {
        fn take(&mut self, kind: StreamKind) -> EnginePort {
            let i = self
                .ports
                .iter()
                .position(|p| p.info().kind == kind)
                .expect("a port of that kind");
            self.ports.swap_remove(i)
        }

        fn stats(&self, port: &EnginePort) -> StreamStats {
            let id = port.stream().id();
            self.world
                .backend_stats()
                .into_iter()
                .find(|s| s.id.dev == id.card && s.id.pcm == id.device && s.id.stream == id.stream)
                .expect("backend stats")
        }

        fn requests(&self, op: &str) -> Vec<(i32, String)> {
            self.world
                .records()
                .into_iter()
                .filter_map(|r| match r.what {
                    LogWhat::Request {
                        op: o,
                        status,
                        detail,
                        ..
                    } if o == op => Some((status, detail)),
                    _ => None,
                })
                .collect()
        }
    }

    fn params() -> PortParams {
        PortParams {
            format: PcmFormat::S16Le,
            rate: 48_000,
            channels: 2,
            buffer_frames: 4 * 960,
            period_frames: 960,
        }
    }

    fn now() -> u64 {
        crate::ffi::monotonic_ns()
    }

    /// Service `port` and call `step` (which feeds it and says whether it is done) until done,
    /// at most 10 s.
    fn pump(port: &mut EnginePort, what: &str, mut step: impl FnMut(&mut EnginePort) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            port.service(now());
            if step(port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: stuck in {:?}",
                port.phase()
            );
            wait_readable(port.stream().fd(), 20_000_000);
        }
    }

    #[test]
    fn start_opens_probes_prefills_and_starts_then_stop_closes() {
        let mut w = connect("preset=s16-duplex");
        let mut port = w.take(StreamKind::Playback);
        assert_eq!(port.volume_support(), VolumeSupport::Unknown);
        assert!(port.fd().is_some());
        assert!(!port.is_starting(), "not started yet");
        port.start(&params(), now()).expect("start");
        assert_eq!(port.phase(), Phase::Opening);
        assert!(port.is_starting() && !port.is_running());
        assert_eq!(
            port.write(&[1; 64]),
            0,
            "nothing is written before OPEN completes"
        );
        let data: Vec<u8> = (0..48_000u32 * 4).map(|i| (i % 199) as u8 + 1).collect();
        let mut at = 0;
        pump(&mut port, "running", |p| {
            at += p.write(&data[at..]);
            p.phase() == Phase::Running
        });
        assert!(!port.is_starting(), "running is no longer starting");
        assert_eq!(
            port.volume_support(),
            VolumeSupport::Software,
            "probe refused"
        );
        assert!(at >= 2 * 960 * 4, "START followed the pre-fill: {at}");
        pump(&mut port, "all written", |p| {
            at += p.write(&data[at..]);
            at == data.len()
        });
        assert!(port.delay_frames() > 0);
        port.stop(now()).expect("stop");
        pump(&mut port, "closed", |p| p.phase() == Phase::Closed);
        let st = w.stats(&port);
        assert_eq!((st.opens, st.closes), (1, 1), "{st:?}");
        assert_eq!(st.bytes_received, data.len() as u64);
        assert_eq!(st.sha256_hex, xen_snd_backend::sha256_hex(&data));
        assert_eq!(w.requests("GET_VOLUME").len(), 1, "probed once");
        assert_eq!(port.counters().errors, 0, "a refused probe is no error");
        // Started again: a new OPEN, but no second probe.
        port.start(&params(), now()).expect("start");
        pump(&mut port, "running again", |p| {
            p.write(&data[..3840]);
            p.phase() == Phase::Running
        });
        assert_eq!(w.requests("GET_VOLUME").len(), 1);
        drop(port);
        assert_eq!(w.world.backend_stats()[0].closes, 2, "closed when dropped");
        w.fe.shutdown().expect("shutdown");
    }

    #[test]
    fn volume_goes_to_a_backend_that_controls_it() {
        let mut w = connect("preset=s16-duplex; volume=on");
        let mut port = w.take(StreamKind::Playback);
        port.set_volume(&PortVolume::from_linear(&[0.5, 0.25], false));
        port.start(&params(), now()).expect("start");
        let silence = [0u8; 960 * 4];
        pump(&mut port, "running", |p| {
            p.write(&silence);
            p.phase() == Phase::Running
        });
        assert_eq!(port.volume_support(), VolumeSupport::Backend);
        let set = w.requests("SET_VOLUME");
        assert_eq!(set.len(), 1, "sent before START: {set:?}");
        assert!(set[0].1.contains("volume [-6021, -12041]"), "{set:?}");
        assert!(w.requests("MUTE").is_empty() && w.requests("UNMUTE").len() == 1);
        port.set_volume(&PortVolume::from_linear(&[0.5, 0.25], true));
        pump(&mut port, "muted", |p| {
            p.write(&silence);
            !w.requests("MUTE").is_empty()
        });
        assert!(w.requests("MUTE")[0].1.contains("mute [true, true]"));
        assert_eq!(
            w.requests("SET_VOLUME").len(),
            1,
            "unchanged values are not sent again"
        );
        drop(port);
        w.fe.shutdown().expect("shutdown");
    }

    #[test]
    fn a_refused_open_is_not_retried_until_the_parameters_change() {
        let mut w = connect("preset=s16-duplex; misbehave=0/0/0:error=-5");
        let mut port = w.take(StreamKind::Playback);
        port.start(&params(), now()).expect("start");
        pump(&mut port, "refused", |p| p.phase() == Phase::Closed);
        assert_eq!(port.phase(), Phase::Closed);
        assert!(!port.is_starting(), "a refused start is not waited for");
        for _ in 0..20 {
            port.service(now());
        }
        let opens = w.requests("OPEN").len();
        assert_eq!(opens, 1, "no retry storm");
        let other = PortParams {
            rate: 44_100,
            period_frames: 882,
            buffer_frames: 4 * 882,
            ..params()
        };
        port.start(&other, now()).expect("start");
        assert_eq!(port.phase(), Phase::Opening);
        pump(&mut port, "refused again", |p| p.phase() == Phase::Closed);
        assert_eq!(w.requests("OPEN").len(), 2);
        drop(port);
        w.fe.shutdown().expect("shutdown");
    }

    #[test]
    fn capture_reads_the_backend_pattern_and_a_removed_card_kills_the_port() {
        let mut w = connect("preset=s16-duplex");
        let mut port = w.take(StreamKind::Capture);
        port.start(&params(), now()).expect("start");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 960 * 4];
        pump(&mut port, "captured", |p| {
            let n = p.read(&mut buf);
            got.extend_from_slice(&buf[..n]);
            got.len() >= 48_000 * 4
        });
        let id = port.stream().id();
        let seed = xen_snd_backend::stream_seed(xen_snd_backend::StreamId::new(
            1, id.card, id.device, id.stream,
        ));
        assert_eq!(got, xen_snd_backend::pattern_bytes(seed, 0, got.len()));
        assert!(port.is_alive());
        w.world.remove_card(0).expect("remove");
        pump(&mut port, "dead", |p| !p.is_alive());
        assert_eq!(port.phase(), Phase::Dead);
        assert_eq!(port.read(&mut buf), 0);
        // Dropping a dead port waits for nothing.
        let t = Instant::now();
        drop(port);
        assert!(t.elapsed() < CLOSE_BUDGET);
        w.fe.shutdown().expect("shutdown");
    }
}
