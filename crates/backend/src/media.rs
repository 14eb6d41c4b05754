//! Where playback data goes and capture data comes from, per stream, and the statistics the
//! library exposes.
//!
//! # Selecting sinks and sources from `unique-id`
//!
//! The stream's `unique-id` is split on whitespace, `+` and `,`; these tokens are understood
//! (anything else, e.g. snd_be's `pulse` or `alsa<hw:0;0>`, is ignored and the defaults apply):
//!
//! | Token | Meaning |
//! | --- | --- |
//! | `wav` / `nowav` | write (or not) a WAV file for this playback stream (default: write one when the backend has an output directory) |
//! | `pattern` | capture from the deterministic pattern ([`crate::pattern`]) |
//! | `silence` | capture zeros |
//! | `loop=NAME` (or `loop:NAME`) | playback: feed loop `NAME`; capture: read from loop `NAME` |
//!
//! Options given to the backend ([`BackendOptions`](crate::BackendOptions)) take precedence:
//! `loopbacks` pairs (playback stream → capture stream), then the `unique-id` tokens, then
//! `capture` (the default capture source).
//!
//! Every playback stream hashes every byte it receives (SHA-256, across OPENs and reconnects,
//! for the whole life of the backend). A loop is a FIFO of at most [`LOOP_CAPACITY`] bytes
//! (older bytes are dropped and counted when it overflows); a READ from a loop that holds fewer
//! bytes than asked is completed with zeros (counted as an underrun).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};
use sndif::wire::OpenParams;
use sndif::StreamKind;

use crate::ids::StreamId;
use crate::misbehave::Misbehave;
use crate::wake::WakeFd;
use crate::wav::WavWriter;

/// What a capture stream delivers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CaptureSource {
    /// The deterministic pattern of [`crate::pattern`], seeded per stream.
    #[default]
    Pattern,
    /// Zeros.
    Silence,
    /// The bytes written to the named loop by a playback stream.
    Loop(String),
}

/// The sinks and source of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamSetup {
    /// Playback: write a WAV file (if the backend has an output directory).
    pub wav: bool,
    /// Playback: also feed this loop.
    pub loop_out: Option<String>,
    /// Capture: the source.
    pub capture: CaptureSource,
}

/// Parses the tokens of a `unique-id` over `defaults`.
pub fn setup_from_unique_id(unique_id: Option<&str>, defaults: &StreamSetup) -> StreamSetup {
    let mut s = defaults.clone();
    let Some(uid) = unique_id else {
        return s;
    };
    for tok in uid
        .split(|c: char| c.is_whitespace() || c == '+' || c == ',')
        .filter(|t| !t.is_empty())
    {
        match tok {
            "wav" => s.wav = true,
            "nowav" => s.wav = false,
            "pattern" => s.capture = CaptureSource::Pattern,
            "silence" => s.capture = CaptureSource::Silence,
            _ => {
                let name = tok
                    .strip_prefix("loop=")
                    .or_else(|| tok.strip_prefix("loop:"));
                if let Some(name) = name.filter(|n| !n.is_empty()) {
                    s.loop_out = Some(name.to_owned());
                    s.capture = CaptureSource::Loop(name.to_owned());
                }
            }
        }
    }
    s
}

/// Maximum bytes a loop holds.
pub const LOOP_CAPACITY: usize = 4 << 20;

/// A loopback FIFO.
#[derive(Debug, Default)]
pub(crate) struct LoopFifo {
    data: VecDeque<u8>,
    /// Bytes dropped because the FIFO was full.
    pub(crate) dropped: u64,
}

impl LoopFifo {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.data.extend(bytes.iter().copied());
        let excess = self.data.len().saturating_sub(LOOP_CAPACITY);
        if excess > 0 {
            self.data.drain(..excess);
            self.dropped = self
                .dropped
                .saturating_add(u64::try_from(excess).unwrap_or(u64::MAX));
        }
    }

    /// Fills `out` from the FIFO; returns the number of bytes that were missing (zero-filled).
    pub(crate) fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let mut missing = 0;
        for b in out.iter_mut() {
            match self.data.pop_front() {
                Some(v) => *b = v,
                None => {
                    *b = 0;
                    missing += 1;
                }
            }
        }
        missing
    }
}

/// The named loops of one backend.
#[derive(Debug, Default)]
pub(crate) struct Loops {
    loops: Mutex<HashMap<String, Arc<Mutex<LoopFifo>>>>,
}

impl Loops {
    pub(crate) fn get(&self, name: &str) -> Arc<Mutex<LoopFifo>> {
        let mut g = lock(&self.loops);
        Arc::clone(g.entry(name.to_owned()).or_default())
    }
}

/// Locks a mutex, recovering the data of a poisoned one (a panicking holder leaves only
/// counters behind, which stay meaningful).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A snapshot of one stream's statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStats {
    /// The stream.
    pub id: StreamId,
    /// Playback or capture (from the configuration; `None` if never bound or unusable).
    pub kind: Option<StreamKind>,
    /// Playback bytes received by WRITE.
    pub bytes_received: u64,
    /// SHA-256 of every received byte, lower-case hex.
    pub sha256_hex: String,
    /// Capture bytes delivered by READ.
    pub bytes_sent: u64,
    /// Successful OPENs.
    pub opens: u64,
    /// CLOSEs.
    pub closes: u64,
    /// Successful WRITEs.
    pub writes: u64,
    /// Successful READs.
    pub reads: u64,
    /// Successful TRIGGERs.
    pub triggers: u64,
    /// HW_PARAM_QUERYs answered (successfully or not).
    pub queries: u64,
    /// Responses with a non-zero status.
    pub error_responses: u64,
    /// CUR_POS events published.
    pub events_sent: u64,
    /// CUR_POS events dropped (event page full).
    pub events_dropped: u64,
    /// Times playback ran dry (the position caught up with the data written) or a loop READ
    /// found too few bytes.
    pub underruns: u64,
    /// Last position reported (octets since OPEN, before any misbehaviour offset).
    pub position: u64,
    /// Whether the position clock is running.
    pub running: bool,
    /// Parameters of the last successful OPEN.
    pub last_open: Option<OpenParams>,
    /// Whether the stream is currently bound to a frontend.
    pub bound: bool,
    /// WAV file being written, if any.
    pub wav_path: Option<PathBuf>,
    /// Last WAV error, if any (writing stops at the first error).
    pub wav_error: Option<String>,
    /// The misbehaviour in force.
    pub misbehave: Misbehave,
}

/// The mutable part of a stream that outlives binds: statistics, hash, WAV file, misbehaviour.
#[derive(Debug)]
pub(crate) struct SharedState {
    pub(crate) stats: StreamStats,
    pub(crate) hasher: Sha256,
    pub(crate) wav: Option<WavWriter>,
    /// The worker currently serving the stream, to wake on changes.
    pub(crate) waker: Option<Arc<WakeFd>>,
}

/// One stream's shared record.
#[derive(Debug)]
pub(crate) struct StreamShared {
    pub(crate) state: Mutex<SharedState>,
}

impl StreamShared {
    fn new(id: StreamId) -> Self {
        let hasher = Sha256::new();
        let sha256_hex = hex(&hasher.clone().finalize());
        StreamShared {
            state: Mutex::new(SharedState {
                stats: StreamStats {
                    id,
                    kind: None,
                    bytes_received: 0,
                    sha256_hex,
                    bytes_sent: 0,
                    opens: 0,
                    closes: 0,
                    writes: 0,
                    reads: 0,
                    triggers: 0,
                    queries: 0,
                    error_responses: 0,
                    events_sent: 0,
                    events_dropped: 0,
                    underruns: 0,
                    position: 0,
                    running: false,
                    last_open: None,
                    bound: false,
                    wav_path: None,
                    wav_error: None,
                    misbehave: Misbehave::None,
                },
                hasher,
                wav: None,
                waker: None,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SharedState> {
        lock(&self.state)
    }

    /// A snapshot, with the hash of everything received so far.
    pub(crate) fn snapshot(&self) -> StreamStats {
        let g = self.lock();
        let mut s = g.stats.clone();
        s.sha256_hex = hex(&g.hasher.clone().finalize());
        s
    }
}

/// All streams ever seen by one backend.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    streams: Mutex<BTreeMap<StreamId, Arc<StreamShared>>>,
}

impl Registry {
    pub(crate) fn get(&self, id: StreamId) -> Arc<StreamShared> {
        let mut g = lock(&self.streams);
        Arc::clone(
            g.entry(id)
                .or_insert_with(|| Arc::new(StreamShared::new(id))),
        )
    }

    pub(crate) fn find(&self, id: StreamId) -> Option<Arc<StreamShared>> {
        lock(&self.streams).get(&id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<StreamShared>> {
        lock(&self.streams).values().cloned().collect()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of `bytes` as lower-case hex (what [`StreamStats::sha256_hex`] shows for a stream that
/// received exactly these bytes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_id_tokens() {
        let d = StreamSetup {
            wav: true,
            loop_out: None,
            capture: CaptureSource::Pattern,
        };
        assert_eq!(setup_from_unique_id(None, &d), d);
        assert_eq!(setup_from_unique_id(Some("pulse"), &d), d);
        assert_eq!(setup_from_unique_id(Some("alsa<hw:0;0>"), &d), d);
        let s = setup_from_unique_id(Some("nowav silence"), &d);
        assert!(!s.wav);
        assert_eq!(s.capture, CaptureSource::Silence);
        let s = setup_from_unique_id(Some("x+loop=a"), &d);
        assert_eq!(s.loop_out.as_deref(), Some("a"));
        assert_eq!(s.capture, CaptureSource::Loop("a".into()));
        let s = setup_from_unique_id(Some("loop:b,wav"), &d);
        assert_eq!(s.capture, CaptureSource::Loop("b".into()));
        assert_eq!(setup_from_unique_id(Some("loop="), &d), d);
    }

    #[test]
    fn loop_fifo_zero_fills_and_caps() {
        let mut f = LoopFifo::default();
        f.push(&[1, 2, 3]);
        let mut out = [9u8; 5];
        assert_eq!(f.pop_into(&mut out), 2);
        assert_eq!(out, [1, 2, 3, 0, 0]);
        f.push(&vec![7u8; LOOP_CAPACITY + 10]);
        assert_eq!(f.dropped, 10);
    }

    #[test]
    fn empty_hash_is_the_sha256_of_nothing() {
        let r = Registry::default();
        let s = r.get(StreamId::new(1, 0, 0, 0)).snapshot();
        assert_eq!(
            s.sha256_hex,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_hex(b""), s.sha256_hex);
        assert!(r.find(StreamId::new(1, 0, 0, 1)).is_none());
        assert_eq!(r.all().len(), 1);
    }
}
