//! Fake ports and a fake card: the test hook behind `xen.fake-card = true`.
//!
//! [`FakeSink`] plays into nothing at exactly the nominal rate of CLOCK_MONOTONIC and keeps a
//! running checksum ([`TrimmedChecksum`]) of everything it receives; [`FakeSource`] produces the
//! deterministic [`pattern_sample`] at the nominal rate. Their counters are published through a
//! [`FakeStats`] (atomics, readable from any thread), which the fake frontend writes to
//! `<stats-dir>/<node.name>.stats` so integration tests can compare what arrived with what they
//! played. Realtime-safe like a real port: no lock, no allocation, no panic in the data path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sndif::config::{PcmHw, StreamKind};
use sndif::formats::PcmFormat;

use crate::format::silence;
use crate::port::{CardInfo, PcmPort, PortCounters, PortError, PortInfo, PortParams};

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A checksum of the sound in a byte stream: FNV-1a 64 over the frames from the first
/// *complete* frame (no silent sample) to the last complete frame seen so far, leaving out
/// *silent* frames (every sample silent).
///
/// - Silence before and after a clip does not count, nor do the frames at its edges where only
///   some channels are linked yet (`pw-link` links one port at a time).
/// - Silence *inside* (a graph xrun under load inserts silence while the data is delayed, not
///   lost) does not change the value either; it is counted in [`TrimmedChecksum::gap_frames`].
/// - Any changed, dropped, repeated or reordered frame of the clip changes the value.
///
/// The test pattern ([`pattern_sample`]) has no silent sample, so a clip of it is covered whole.
#[derive(Debug, Clone)]
pub struct TrimmedChecksum {
    /// Hash through the last complete frame.
    committed: u64,
    committed_frames: u64,
    committed_gaps: u64,
    /// Hash through the last frame seen (after the first complete one).
    running: u64,
    running_frames: u64,
    running_gaps: u64,
    started: bool,
}

impl Default for TrimmedChecksum {
    fn default() -> Self {
        Self::new()
    }
}

impl TrimmedChecksum {
    /// An empty checksum.
    pub const fn new() -> Self {
        TrimmedChecksum {
            committed: FNV_OFFSET,
            committed_frames: 0,
            committed_gaps: 0,
            running: FNV_OFFSET,
            running_frames: 0,
            running_gaps: 0,
            started: false,
        }
    }

    /// Feed whole frames of `frame_bytes` bytes made of samples of `sample_bytes` bytes;
    /// `silence` is the byte pattern of a silent sample (one byte repeated, or a whole sample).
    /// A trailing partial frame is ignored.
    pub fn update(&mut self, data: &[u8], frame_bytes: usize, sample_bytes: usize, silence: &[u8]) {
        if frame_bytes == 0 || sample_bytes == 0 {
            return;
        }
        for frame in data.chunks_exact(frame_bytes) {
            let silent_samples = frame
                .chunks(sample_bytes)
                .filter(|sample| is_silent_sample(sample, silence))
                .count();
            let complete = silent_samples == 0;
            let silent = silent_samples == frame.len().div_ceil(sample_bytes);
            if !self.started {
                if !complete {
                    continue;
                }
                self.started = true;
            }
            if silent {
                self.running_gaps = self.running_gaps.saturating_add(1);
                continue;
            }
            for b in frame {
                self.running ^= u64::from(*b);
                self.running = self.running.wrapping_mul(FNV_PRIME);
            }
            self.running_frames = self.running_frames.saturating_add(1);
            if complete {
                self.committed = self.running;
                self.committed_frames = self.running_frames;
                self.committed_gaps = self.running_gaps;
            }
        }
    }

    /// The checksum so far.
    pub fn value(&self) -> u64 {
        self.committed
    }

    /// Non-silent frames covered by [`TrimmedChecksum::value`].
    pub fn frames(&self) -> u64 {
        self.committed_frames
    }

    /// Silent frames inside the covered span (left out of the value).
    pub fn gap_frames(&self) -> u64 {
        self.committed_gaps
    }
}

fn is_silent_sample(sample: &[u8], silence: &[u8]) -> bool {
    match silence {
        [] => sample.iter().all(|b| *b == 0),
        [s] => sample.iter().all(|b| b == s),
        pat => sample.iter().zip(pat.iter().cycle()).all(|(a, b)| a == b),
    }
}

/// Sample `channel` of frame `n` of the test pattern, as a signed 16-bit value. Never 0, so no
/// frame of the pattern is silent; periodic in `n` with period 65535, and the first channel
/// gives `n` modulo 65535 back: `pattern_sample(n, 0) as u16 - 1 == n % 65535`.
pub fn pattern_sample(n: u64, channel: u32) -> i16 {
    let c = u64::from(channel);
    let m = (n % 65535).wrapping_mul(2 * c + 1).wrapping_add(c * 101) % 65535;
    // 1..=65535 reinterpreted as i16: never 0.
    (m + 1) as u16 as i16
}

/// Encode a 16-bit sample value in `format` into `out` (which has the format's sample size);
/// formats wider than 16 bits carry the value in their top bits.
pub fn encode_sample(v: i16, format: PcmFormat, out: &mut [u8]) {
    let u = v as u16 ^ 0x8000;
    let f = f32::from(v) / 32768.0;
    let bytes: [u8; 8];
    let src: &[u8] = match format {
        PcmFormat::S8 => {
            bytes = [(v >> 8) as u8, 0, 0, 0, 0, 0, 0, 0];
            &bytes[..1]
        }
        PcmFormat::U8 => {
            bytes = [(u >> 8) as u8, 0, 0, 0, 0, 0, 0, 0];
            &bytes[..1]
        }
        PcmFormat::S16Le => {
            bytes = pad8(&v.to_le_bytes());
            &bytes[..2]
        }
        PcmFormat::S16Be => {
            bytes = pad8(&v.to_be_bytes());
            &bytes[..2]
        }
        PcmFormat::U16Le => {
            bytes = pad8(&u.to_le_bytes());
            &bytes[..2]
        }
        PcmFormat::U16Be => {
            bytes = pad8(&u.to_be_bytes());
            &bytes[..2]
        }
        PcmFormat::S24Le => {
            bytes = pad8(&(i32::from(v) << 8).to_le_bytes());
            &bytes[..4]
        }
        PcmFormat::S24Be => {
            bytes = pad8(&(i32::from(v) << 8).to_be_bytes());
            &bytes[..4]
        }
        PcmFormat::U24Le => {
            bytes = pad8(&(u32::from(u) << 8).to_le_bytes());
            &bytes[..4]
        }
        PcmFormat::U24Be => {
            bytes = pad8(&(u32::from(u) << 8).to_be_bytes());
            &bytes[..4]
        }
        PcmFormat::S32Le => {
            bytes = pad8(&(i32::from(v) << 16).to_le_bytes());
            &bytes[..4]
        }
        PcmFormat::S32Be => {
            bytes = pad8(&(i32::from(v) << 16).to_be_bytes());
            &bytes[..4]
        }
        PcmFormat::U32Le => {
            bytes = pad8(&(u32::from(u) << 16).to_le_bytes());
            &bytes[..4]
        }
        PcmFormat::U32Be => {
            bytes = pad8(&(u32::from(u) << 16).to_be_bytes());
            &bytes[..4]
        }
        PcmFormat::F32Le => {
            bytes = pad8(&f.to_le_bytes());
            &bytes[..4]
        }
        PcmFormat::F32Be => {
            bytes = pad8(&f.to_be_bytes());
            &bytes[..4]
        }
        PcmFormat::F64Le => {
            bytes = f64::from(f).to_le_bytes();
            &bytes[..]
        }
        PcmFormat::F64Be => {
            bytes = f64::from(f).to_be_bytes();
            &bytes[..]
        }
        // Not a linear format: the value's high byte stands in for it.
        _ => {
            bytes = [(v >> 8) as u8 | 1, 0, 0, 0, 0, 0, 0, 0];
            &bytes[..1]
        }
    };
    for (d, s) in out.iter_mut().zip(src) {
        *d = *s;
    }
}

fn pad8(b: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (d, s) in out.iter_mut().zip(b) {
        *d = *s;
    }
    out
}

/// Counters of a fake port, shared with any thread. Multi-word values are read consistently
/// through a sequence counter.
#[derive(Debug, Default)]
pub struct FakeStats {
    seq: AtomicU64,
    checksum: AtomicU64,
    checksum_frames: AtomicU64,
    gap_frames: AtomicU64,
    frames: AtomicU64,
    underruns: AtomicU64,
    overruns: AtomicU64,
    starts: AtomicU64,
    stops: AtomicU64,
    format: AtomicU64,
}

/// A consistent copy of [`FakeStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeSnapshot {
    /// Sink: [`TrimmedChecksum::value`] of everything received.
    pub checksum: u64,
    /// Sink: frames covered by `checksum`.
    pub checksum_frames: u64,
    /// Sink: silent frames inside the span of `checksum` (graph xruns), not part of it.
    pub gap_frames: u64,
    /// Frames received (sink) or produced (source) since the first start.
    pub frames: u64,
    /// Underruns.
    pub underruns: u64,
    /// Overruns (sink: dropped data; source: frames lost because nobody read).
    pub overruns: u64,
    /// Times started.
    pub starts: u64,
    /// Times stopped.
    pub stops: u64,
    /// The last start's format: wire code, rate and channels packed as `code << 40 | rate << 8 |
    /// channels`.
    pub format: u64,
}

impl FakeStats {
    fn publish(&self, f: impl FnOnce(&Self)) {
        self.seq.fetch_add(1, Ordering::AcqRel);
        f(self);
        self.seq.fetch_add(1, Ordering::AcqRel);
    }

    /// A consistent snapshot (retries while a writer is in the middle of an update).
    pub fn snapshot(&self) -> FakeSnapshot {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            let snap = FakeSnapshot {
                checksum: self.checksum.load(Ordering::Acquire),
                checksum_frames: self.checksum_frames.load(Ordering::Acquire),
                gap_frames: self.gap_frames.load(Ordering::Acquire),
                frames: self.frames.load(Ordering::Acquire),
                underruns: self.underruns.load(Ordering::Acquire),
                overruns: self.overruns.load(Ordering::Acquire),
                starts: self.starts.load(Ordering::Acquire),
                stops: self.stops.load(Ordering::Acquire),
                format: self.format.load(Ordering::Acquire),
            };
            if s1 % 2 == 0 && self.seq.load(Ordering::Acquire) == s1 {
                return snap;
            }
            std::hint::spin_loop();
        }
    }
}

impl FakeSnapshot {
    /// The `key=value` lines of a stats file.
    pub fn to_text(&self) -> String {
        format!(
            "checksum={:016x}\nchecksum_frames={}\ngap_frames={}\nframes={}\nunderruns={}\noverruns={}\nstarts={}\nstops={}\nformat={}\n",
            self.checksum,
            self.checksum_frames,
            self.gap_frames,
            self.frames,
            self.underruns,
            self.overruns,
            self.starts,
            self.stops,
            self.format
        )
    }

    /// Parse [`FakeSnapshot::to_text`] output.
    pub fn from_text(text: &str) -> Option<FakeSnapshot> {
        let mut s = FakeSnapshot::default();
        for line in text.lines() {
            let (k, v) = line.split_once('=')?;
            let num = |v: &str| v.parse::<u64>().ok();
            match k {
                "checksum" => s.checksum = u64::from_str_radix(v, 16).ok()?,
                "checksum_frames" => s.checksum_frames = num(v)?,
                "gap_frames" => s.gap_frames = num(v)?,
                "frames" => s.frames = num(v)?,
                "underruns" => s.underruns = num(v)?,
                "overruns" => s.overruns = num(v)?,
                "starts" => s.starts = num(v)?,
                "stops" => s.stops = num(v)?,
                "format" => s.format = num(v)?,
                _ => return None,
            }
        }
        Some(s)
    }
}

fn pack_format(p: &PortParams) -> u64 {
    (u64::from(p.format.code()) << 40) | (u64::from(p.rate) << 8) | u64::from(p.channels)
}

/// Frames of `rate` Hz in `ns` nanoseconds (no overflow for any `u64` input).
fn frames_in(ns: u64, rate: u32) -> u64 {
    let f = u128::from(ns) * u128::from(rate) / 1_000_000_000;
    u64::try_from(f).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy)]
struct Running {
    params: PortParams,
    frame_bytes: usize,
    sample_bytes: usize,
    /// When the device clock started (the first write for a sink, `start` for a source).
    anchor_ns: Option<u64>,
    /// Frames the device clock had reached at `anchor_ns`.
    anchor_frames: u64,
}

/// Frames a fake sink queues before its device clock starts: half the buffer.
fn prefill(p: &PortParams) -> u64 {
    u64::from(p.buffer_frames / 2).max(1)
}

/// A fake playback stream: starts playing once half its buffer is queued, then consumes at
/// the nominal rate; checksums everything it accepts.
#[derive(Debug)]
pub struct FakeSink {
    info: PortInfo,
    stats: Arc<FakeStats>,
    run: Option<Running>,
    checksum: TrimmedChecksum,
    written: u64,
    played: u64,
    in_underrun: bool,
    counters: PortCounters,
    total_frames: u64,
    /// The time of the last `start`/`service` call.
    now_ns: u64,
}

impl FakeSink {
    /// A sink with `info`, publishing to `stats`.
    pub fn new(info: PortInfo, stats: Arc<FakeStats>) -> Self {
        FakeSink {
            info,
            stats,
            run: None,
            checksum: TrimmedChecksum::new(),
            written: 0,
            played: 0,
            in_underrun: false,
            counters: PortCounters::default(),
            total_frames: 0,
            now_ns: 0,
        }
    }

    fn publish(&self) {
        let (c, f, g) = (
            self.checksum.value(),
            self.checksum.frames(),
            self.checksum.gap_frames(),
        );
        let total = self.total_frames;
        let counters = self.counters;
        self.stats.publish(|s| {
            s.checksum.store(c, Ordering::Release);
            s.checksum_frames.store(f, Ordering::Release);
            s.gap_frames.store(g, Ordering::Release);
            s.frames.store(total, Ordering::Release);
            s.underruns.store(counters.underruns, Ordering::Release);
            s.overruns.store(counters.overruns, Ordering::Release);
        });
    }
}

impl PcmPort for FakeSink {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn start(&mut self, params: &PortParams, now_ns: u64) -> Result<(), PortError> {
        self.now_ns = now_ns;
        let frame_bytes = usize::try_from(params.frame_bytes()).unwrap_or(0);
        if frame_bytes == 0 || params.rate == 0 {
            return Err(PortError {
                stream: "fake sink".into(),
                op: "start",
                reason: format!("unusable parameters {params:?}"),
            });
        }
        self.run = Some(Running {
            params: *params,
            frame_bytes,
            sample_bytes: frame_bytes / usize::from(params.channels.max(1)),
            anchor_ns: None,
            anchor_frames: 0,
        });
        self.written = 0;
        self.played = 0;
        self.in_underrun = false;
        let packed = pack_format(params);
        self.stats.publish(|s| {
            s.starts.fetch_add(1, Ordering::AcqRel);
            s.format.store(packed, Ordering::Release);
        });
        Ok(())
    }

    fn stop(&mut self, _now_ns: u64) -> Result<(), PortError> {
        if self.run.take().is_some() {
            self.stats.publish(|s| {
                s.stops.fetch_add(1, Ordering::AcqRel);
            });
        }
        Ok(())
    }

    fn service(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
        let Some(run) = self.run.as_mut() else { return };
        let Some(anchor) = run.anchor_ns else { return };
        let clock = run
            .anchor_frames
            .saturating_add(frames_in(now_ns.saturating_sub(anchor), run.params.rate));
        if clock > self.written {
            // The device ran dry and played silence: re-anchor its clock at the data end.
            if !self.in_underrun {
                self.counters.underruns += 1;
                self.in_underrun = true;
            }
            self.played = self.written;
            run.anchor_ns = Some(now_ns);
            run.anchor_frames = self.written;
        } else {
            self.played = clock;
        }
    }

    fn writable_frames(&self) -> u32 {
        let Some(run) = &self.run else { return 0 };
        let queued = self.written.saturating_sub(self.played);
        u32::try_from(u64::from(run.params.buffer_frames).saturating_sub(queued)).unwrap_or(0)
    }

    fn write(&mut self, data: &[u8]) -> usize {
        let writable = self.writable_frames();
        let Some(run) = self.run.as_mut() else {
            return 0;
        };
        let offered = data.len() / run.frame_bytes;
        let frames = offered.min(usize::try_from(writable).unwrap_or(0));
        let bytes = frames * run.frame_bytes;
        let Some(chunk) = data.get(..bytes) else {
            return 0;
        };
        self.checksum.update(
            chunk,
            run.frame_bytes,
            run.sample_bytes,
            silence(run.params.format),
        );
        self.written += frames as u64;
        if run.anchor_ns.is_none() && self.written >= prefill(&run.params) {
            // The device starts playing once half the buffer is queued (like the engine).
            run.anchor_ns = Some(self.now_ns);
            run.anchor_frames = 0;
        }
        self.total_frames += frames as u64;
        if frames > 0 {
            self.in_underrun = false;
        }
        if frames < offered {
            self.counters.overruns += 1;
        }
        self.publish();
        bytes
    }

    fn readable_frames(&self) -> u32 {
        0
    }

    fn read(&mut self, _out: &mut [u8]) -> usize {
        0
    }

    fn delay_frames(&self) -> u64 {
        self.written.saturating_sub(self.played)
    }

    fn rate_ratio(&self) -> f64 {
        1.0
    }

    fn counters(&self) -> PortCounters {
        self.counters
    }
}

/// A fake capture stream: produces [`pattern_sample`] frames at the nominal rate.
#[derive(Debug)]
pub struct FakeSource {
    info: PortInfo,
    stats: Arc<FakeStats>,
    run: Option<Running>,
    /// Pattern index of the next frame handed out (continues across restarts).
    next: u64,
    /// Frames the device clock has produced since start (plus the initial period).
    produced: u64,
    /// Frames handed out since start.
    consumed: u64,
    counters: PortCounters,
}

impl FakeSource {
    /// A source with `info`, publishing to `stats`.
    pub fn new(info: PortInfo, stats: Arc<FakeStats>) -> Self {
        FakeSource {
            info,
            stats,
            run: None,
            next: 0,
            produced: 0,
            consumed: 0,
            counters: PortCounters::default(),
        }
    }
}

impl PcmPort for FakeSource {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn start(&mut self, params: &PortParams, now_ns: u64) -> Result<(), PortError> {
        let frame_bytes = usize::try_from(params.frame_bytes()).unwrap_or(0);
        if frame_bytes == 0 || params.rate == 0 {
            return Err(PortError {
                stream: "fake source".into(),
                op: "start",
                reason: format!("unusable parameters {params:?}"),
            });
        }
        // One period is captured already when the stream starts.
        self.run = Some(Running {
            params: *params,
            frame_bytes,
            sample_bytes: frame_bytes / usize::from(params.channels.max(1)),
            anchor_ns: Some(now_ns),
            anchor_frames: u64::from(params.period_frames),
        });
        self.produced = u64::from(params.period_frames);
        self.consumed = 0;
        let packed = pack_format(params);
        self.stats.publish(|s| {
            s.starts.fetch_add(1, Ordering::AcqRel);
            s.format.store(packed, Ordering::Release);
        });
        Ok(())
    }

    fn stop(&mut self, _now_ns: u64) -> Result<(), PortError> {
        if self.run.take().is_some() {
            self.stats.publish(|s| {
                s.stops.fetch_add(1, Ordering::AcqRel);
            });
        }
        Ok(())
    }

    fn service(&mut self, now_ns: u64) {
        let Some(run) = &self.run else { return };
        let Some(anchor) = run.anchor_ns else { return };
        self.produced = run
            .anchor_frames
            .saturating_add(frames_in(now_ns.saturating_sub(anchor), run.params.rate));
        let buffered = self.produced.saturating_sub(self.consumed);
        let cap = u64::from(run.params.buffer_frames);
        if buffered > cap {
            // Nobody read: the oldest frames are lost.
            let lost = buffered - cap;
            self.consumed += lost;
            self.next = self.next.wrapping_add(lost);
            self.counters.overruns += 1;
            let o = self.counters.overruns;
            self.stats
                .publish(|s| s.overruns.store(o, Ordering::Release));
        }
    }

    fn writable_frames(&self) -> u32 {
        0
    }

    fn write(&mut self, _data: &[u8]) -> usize {
        0
    }

    fn readable_frames(&self) -> u32 {
        if self.run.is_none() {
            return 0;
        }
        u32::try_from(self.produced.saturating_sub(self.consumed)).unwrap_or(u32::MAX)
    }

    fn read(&mut self, out: &mut [u8]) -> usize {
        let readable = self.readable_frames();
        let Some(run) = &self.run else { return 0 };
        let fb = run.frame_bytes;
        let sample = fb / usize::from(run.params.channels.max(1));
        let wanted = out.len() / fb;
        let frames = wanted.min(usize::try_from(readable).unwrap_or(0));
        if frames < wanted {
            self.counters.underruns += 1;
        }
        for (i, frame) in out.chunks_exact_mut(fb).take(frames).enumerate() {
            let n = self.next.wrapping_add(i as u64);
            for (ch, s) in frame.chunks_exact_mut(sample.max(1)).enumerate() {
                let ch = u32::try_from(ch).unwrap_or(u32::MAX);
                encode_sample(pattern_sample(n, ch), run.params.format, s);
            }
        }
        self.next = self.next.wrapping_add(frames as u64);
        self.consumed += frames as u64;
        let total = self.next;
        let u = self.counters.underruns;
        self.stats.publish(|s| {
            s.frames.store(total, Ordering::Release);
            s.underruns.store(u, Ordering::Release);
        });
        frames * fb
    }

    fn delay_frames(&self) -> u64 {
        self.produced.saturating_sub(self.consumed)
    }

    fn rate_ratio(&self) -> f64 {
        1.0
    }

    fn counters(&self) -> PortCounters {
        self.counters
    }
}

/// The fake card: dev-id 0, one PCM device "Main" with a playback stream 0 and a capture stream
/// 1, sndif's built-in defaults (S16_LE, 8–48 kHz, 1–2 channels, 64 KiB buffer).
#[derive(Debug)]
pub struct FakeCard {
    /// The card.
    pub card: CardInfo,
    /// Its ports, with their stats.
    pub ports: Vec<(Box<dyn PcmPort>, Arc<FakeStats>)>,
}

impl FakeCard {
    /// A new fake card.
    pub fn new() -> FakeCard {
        let card = CardInfo {
            dev_id: 0,
            domid: 0,
            backend_id: 0,
            path: "fake/device/vsnd/0".into(),
            short_name: Some("Fake".into()),
            long_name: Some("Fake Xen sound card (test hook)".into()),
        };
        let info = |kind, index| PortInfo {
            kind,
            device: 0,
            index,
            device_name: Some("Main".into()),
            unique_id: None,
            hw: PcmHw::default(),
        };
        let sink_stats = Arc::new(FakeStats::default());
        let source_stats = Arc::new(FakeStats::default());
        let sink: Box<dyn PcmPort> = Box::new(FakeSink::new(
            info(StreamKind::Playback, 0),
            Arc::clone(&sink_stats),
        ));
        let source: Box<dyn PcmPort> = Box::new(FakeSource::new(
            info(StreamKind::Capture, 1),
            Arc::clone(&source_stats),
        ));
        FakeCard {
            card,
            ports: vec![(sink, sink_stats), (source, source_stats)],
        }
    }
}

impl Default for FakeCard {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PortParams {
        PortParams {
            format: PcmFormat::S16Le,
            rate: 48000,
            channels: 2,
            buffer_frames: 4096,
            period_frames: 1024,
        }
    }

    fn frames_s16(range: std::ops::Range<u64>) -> Vec<u8> {
        let mut v = Vec::new();
        for n in range {
            for ch in 0..2 {
                v.extend_from_slice(&pattern_sample(n, ch).to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn pattern_is_never_silent_and_invertible() {
        for n in (0..200_000u64).step_by(7) {
            let a = pattern_sample(n, 0);
            assert_ne!(a, 0);
            assert_ne!(pattern_sample(n, 1), 0);
            assert_eq!(u64::from(a as u16) - 1, n % 65535);
        }
        assert_ne!(pattern_sample(5, 0), pattern_sample(5, 1));
    }

    #[test]
    fn checksum_covers_the_sound_and_ignores_silence() {
        let body = frames_s16(0..1000);
        let mut plain = TrimmedChecksum::new();
        plain.update(&body, 4, 2, &[0]);
        assert_eq!(plain.frames(), 1000);

        let mut padded = TrimmedChecksum::new();
        padded.update(&[0u8; 4 * 300], 4, 2, &[0]);
        // Split at an odd offset inside the stream: whole frames only per call.
        padded.update(&body[..400], 4, 2, &[0]);
        padded.update(&body[400..], 4, 2, &[0]);
        padded.update(&[0u8; 4 * 50], 4, 2, &[0]);
        assert_eq!(padded.value(), plain.value());
        assert_eq!(padded.frames(), 1000);

        // Silence inside is left out of the value and counted.
        let mut gap = TrimmedChecksum::new();
        gap.update(&body[..400], 4, 2, &[0]);
        gap.update(&[0u8; 8], 4, 2, &[0]);
        gap.update(&body[400..], 4, 2, &[0]);
        assert_eq!(gap.value(), plain.value());
        assert_eq!((gap.frames(), gap.gap_frames()), (1000, 2));

        // A repeated or a missing frame changes it.
        let mut rep = TrimmedChecksum::new();
        rep.update(&body[..404], 4, 2, &[0]);
        rep.update(&body[400..], 4, 2, &[0]);
        assert_ne!(rep.value(), plain.value());
        let mut lost = TrimmedChecksum::new();
        lost.update(&body[..400], 4, 2, &[0]);
        lost.update(&body[404..], 4, 2, &[0]);
        assert_ne!(lost.value(), plain.value());

        // A half-silent frame inside changes it.
        let mut half = body.clone();
        half[402] = 0;
        half[403] = 0;
        let mut c = TrimmedChecksum::new();
        c.update(&half, 4, 2, &[0]);
        assert_ne!(c.value(), plain.value());

        // One changed bit changes the value.
        let mut bad = body.clone();
        bad[999] ^= 1;
        let mut c = TrimmedChecksum::new();
        c.update(&bad, 4, 2, &[0]);
        assert_ne!(c.value(), plain.value());
    }

    #[test]
    fn checksum_with_unsigned_silence() {
        let mut c = TrimmedChecksum::new();
        c.update(&[0x00, 0x80, 0x00, 0x80, 1, 2, 3, 4], 4, 2, &[0x00, 0x80]);
        assert_eq!(c.frames(), 1);
        // A sample 0x0100 has a zero byte but is not silent.
        let mut c = TrimmedChecksum::new();
        c.update(&[0x00, 0x01, 0x00, 0x01], 4, 2, &[0]);
        assert_eq!(c.frames(), 1);
    }

    #[test]
    fn checksum_trims_half_linked_frames_at_the_edges() {
        let body = frames_s16(0..100);
        let mut plain = TrimmedChecksum::new();
        plain.update(&body, 4, 2, &[0]);
        // Left channel only before, right channel only after.
        let mut edges = TrimmedChecksum::new();
        edges.update(&[5, 0, 0, 0, 6, 0, 0, 0], 4, 2, &[0]);
        edges.update(&body, 4, 2, &[0]);
        edges.update(&[0, 0, 7, 0], 4, 2, &[0]);
        assert_eq!(edges.value(), plain.value());
        assert_eq!(edges.frames(), 100);
    }

    #[test]
    fn sink_checksums_what_it_accepts_and_paces_by_clock() {
        let stats = Arc::new(FakeStats::default());
        let mut sink = FakeSink::new(FakeCard::new().ports[0].0.info().clone(), stats.clone());
        assert_eq!(sink.writable_frames(), 0, "not started");
        sink.start(&params(), 0).unwrap();
        assert_eq!(sink.writable_frames(), 4096);
        let data = frames_s16(0..5000);
        let taken = sink.write(&data);
        assert_eq!(taken, 4096 * 4, "buffer-bounded");
        assert_eq!(sink.counters().overruns, 1);
        assert_eq!(sink.delay_frames(), 4096);
        assert_eq!(sink.writable_frames(), 0);
        let snap = stats.snapshot();
        let mut expect = TrimmedChecksum::new();
        expect.update(&data[..taken], 4, 2, &[0]);
        assert_eq!(snap.checksum, expect.value());
        assert_eq!(snap.checksum_frames, 4096);
        assert_eq!(snap.frames, 4096);
        assert_eq!(snap.starts, 1);
        assert_eq!(snap.format, (2 << 40) | (48000 << 8) | 2);
        sink.stop(0).unwrap();
        assert_eq!(stats.snapshot().stops, 1);
        assert_eq!(sink.write(&data), 0, "stopped");
    }

    #[test]
    fn sink_underrun_is_counted_once_per_episode() {
        let stats = Arc::new(FakeStats::default());
        let mut sink = FakeSink::new(FakeCard::new().ports[0].0.info().clone(), stats);
        sink.start(&params(), 0).unwrap();
        sink.service(5_000);
        sink.write(&frames_s16(0..2048));
        assert_eq!(sink.delay_frames(), 2048);
        sink.service(5_000 + 21_333_334);
        assert_eq!(sink.delay_frames(), 1024, "playing since the pre-fill");
        // 10 s later everything was played long ago.
        sink.service(10_000_000_000);
        sink.service(11_000_000_000);
        assert_eq!(sink.counters().underruns, 1);
        assert_eq!(sink.delay_frames(), 0);
        assert_eq!(sink.writable_frames(), 4096);
    }

    #[test]
    fn source_produces_the_pattern_at_the_clock_rate() {
        let stats = Arc::new(FakeStats::default());
        let mut src = FakeSource::new(FakeCard::new().ports[1].0.info().clone(), stats.clone());
        src.start(&params(), 1_000_000_000).unwrap();
        assert_eq!(src.readable_frames(), 1024, "one period at start");
        src.service(1_000_000_000 + 10_000_000); // +10 ms = 480 frames
        assert_eq!(src.readable_frames(), 1504);
        let mut out = vec![0u8; 2000 * 4];
        let n = src.read(&mut out);
        assert_eq!(n, 1504 * 4);
        assert_eq!(src.counters().underruns, 1, "asked for more than there was");
        assert_eq!(&out[..n], &frames_s16(0..1504)[..]);
        // The pattern continues where it stopped.
        src.service(1_000_000_000 + 20_000_000);
        let n = src.read(&mut out[..480 * 4]);
        assert_eq!(n, 480 * 4);
        assert_eq!(&out[..n], &frames_s16(1504..1984)[..]);
        assert_eq!(stats.snapshot().frames, 1984);
        // Nobody reads for a second: frames are lost, counted, and the index skips them.
        src.service(1_000_000_000 + 1_020_000_000);
        assert_eq!(src.counters().overruns, 1);
        assert_eq!(src.readable_frames(), 4096);
    }

    #[test]
    fn encode_covers_formats() {
        let mut b = [0u8; 8];
        encode_sample(0x1234, PcmFormat::S32Le, &mut b);
        assert_eq!(&b[..4], &[0, 0, 0x34, 0x12]);
        encode_sample(-32768, PcmFormat::F32Le, &mut b);
        assert_eq!(f32::from_le_bytes([b[0], b[1], b[2], b[3]]), -1.0);
        encode_sample(0, PcmFormat::U16Le, &mut b);
        assert_eq!(&b[..2], &[0, 0x80]);
        encode_sample(0x0102, PcmFormat::S24Le, &mut b);
        assert_eq!(&b[..4], &[0, 0x02, 0x01, 0]);
    }

    #[test]
    fn snapshot_text_round_trips() {
        let s = FakeSnapshot {
            checksum: 0xdead_beef_0000_0001,
            checksum_frames: 5,
            gap_frames: 7,
            frames: 6,
            underruns: 1,
            overruns: 2,
            starts: 3,
            stops: 4,
            format: 99,
        };
        assert_eq!(FakeSnapshot::from_text(&s.to_text()), Some(s));
        assert_eq!(FakeSnapshot::from_text("bogus"), None);
    }
}
