//! A fake Xen world with the reference backend, in this process: the test hook of the programs
//! built on the engine (the `xen-snd` tool's `XEN_SND_TEST_WORLD`, the PipeWire module's
//! `xen.test-world`). Compiled with the `test-world` feature (and in the engine's own tests).
//!
//! The world is [`xen_access::fake::FakeXen`] with the guest in domain [`GUEST`] (1) and the
//! reference backend (`xen-snd-backend`) in domain [`BACKEND`] (0). Cards are written the way
//! libxl writes them (both directories in one transaction, libxl's permissions, states 1).
//!
//! # Specification
//!
//! A [`Spec`] is parsed from `;`-separated items:
//!
//! | Item | Meaning |
//! | --- | --- |
//! | `preset=two-stream` | card 0: `VCard`, formats `s16_le,s24_le,s32_le,float_le,u8`, rates `44100,48000`, 1–2 channels, buffer 32768; device 0 `dev0` with playback stream `0/0` (unique-id `pulse`) and capture stream `0/1` (unique-id `pattern`) |
//! | `preset=s16-duplex` | the same card with `s16_le` only (what a bit-exact round trip through a float mixer needs) |
//! | `C/KEY=VALUE` | xenstore key `KEY` of card `C` below `device/vsnd/C` (e.g. `0/0/0/type=p`); creates the card like libxl |
//! | `card=C` | card `C` with no configuration keys |
//! | `detached=C` | card `C` is described but not attached at start ([`TestWorld::add_card`] attaches it later) |
//! | `backend=on\|off` | run the reference backend (default `on`) |
//! | `clock-scale=F` | the backend's stream clock runs `F` times as fast as real time |
//! | `misbehave=C/P/S:WHAT` | stream `P/S` of card `C` misbehaves: `stall`, `error=STATUS`, `late-ms=MS`, `wrong-id` |
//! | `volume=on\|off` | the backend serves SET_VOLUME/GET_VOLUME/MUTE/UNMUTE (default `off`, like snd_be) |
//! | `wav-dir=PATH` | the backend writes every playback stream to `PATH/backend<N>/<fe>-<dev>-<pcm>-<stream>.wav` (`N` counts backend starts from 1) |
//! | other `KEY=VALUE` | kept in [`Spec::extra`] for the program (e.g. the module's control socket) |

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xen_access::fake::{wait_readable, FakeXen, ToolstackDevice};
use xen_access::{DomId, StoreOps, XenStore};
use xen_snd_backend::{
    Backend, BackendOptions, Clock, Level, LogRecord, LogWhat, Misbehave, StreamId as BeStreamId,
    StreamStats,
};

use crate::Services;

/// The guest's domain id in the fake world.
pub const GUEST: DomId = 1;
/// The backend's domain id.
pub const BACKEND: DomId = 0;

/// Backend log records kept at most (the oldest are dropped beyond).
const MAX_RECORDS: usize = 20_000;

const TWO_STREAM: [(&str, &str); 12] = [
    ("short-name", "VCard"),
    ("long-name", "Virtual card"),
    ("sample-formats", "s16_le,s24_le,s32_le,float_le,u8"),
    ("sample-rates", "44100,48000"),
    ("channels-min", "1"),
    ("channels-max", "2"),
    ("buffer-size", "32768"),
    ("0/name", "dev0"),
    ("0/0/type", "p"),
    ("0/0/unique-id", "pulse"),
    ("0/1/type", "c"),
    ("0/1/unique-id", "pattern"),
];

/// A rejected item of a specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item {item:?}: {reason}")]
pub struct SpecError {
    /// The item.
    pub item: String,
    /// Why.
    pub reason: String,
}

/// Something the world could not do.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// A xenstore operation of the toolstack failed.
    #[error("test world: {what}: {source}")]
    Store {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: xen_access::StoreError,
    },
    /// The backend could not be started or stopped.
    #[error("test world: backend: {0}")]
    Backend(#[from] xen_snd_backend::BackendError),
    /// A card that the specification does not describe.
    #[error("test world: card {0} is not part of the specification")]
    UnknownCard(u32),
    /// The world has no backend running.
    #[error("test world: no backend is running")]
    NoBackend,
    /// The world already has a backend running.
    #[error("test world: a backend is running already")]
    BackendRunning,
}

/// A parsed specification (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Cards and their configuration keys (relative to the card directory).
    pub cards: BTreeMap<u32, Vec<(String, String)>>,
    /// Run the backend.
    pub backend: bool,
    /// Clock scale of the backend (1.0 = real time).
    pub clock_scale: f64,
    /// Misbehaving streams.
    pub misbehave: Vec<(BeStreamId, Misbehave)>,
    /// The backend serves the volume operations.
    pub volume: bool,
    /// Where the backend writes WAV files.
    pub wav_dir: Option<PathBuf>,
    /// Cards described but not attached at start.
    pub detached: Vec<u32>,
    /// Items the world does not know, in order.
    pub extra: Vec<(String, String)>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            cards: BTreeMap::new(),
            backend: true,
            clock_scale: 1.0,
            misbehave: Vec::new(),
            volume: false,
            wav_dir: None,
            detached: Vec::new(),
            extra: Vec::new(),
        }
    }
}

fn bad(item: &str, reason: &str) -> SpecError {
    SpecError {
        item: item.to_owned(),
        reason: reason.to_owned(),
    }
}

fn on_off(item: &str, v: &str) -> Result<bool, SpecError> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(bad(item, "on or off")),
    }
}

fn parse_misbehave(item: &str, v: &str) -> Result<(BeStreamId, Misbehave), SpecError> {
    let (path, what) = v
        .split_once(':')
        .ok_or_else(|| bad(item, "expected C/P/S:WHAT"))?;
    let nums: Vec<u32> = path
        .split('/')
        .map(|n| {
            n.parse::<u32>()
                .map_err(|_| bad(item, "C/P/S must be numbers"))
        })
        .collect::<Result<_, _>>()?;
    let [c, p, s] = nums[..] else {
        return Err(bad(item, "expected C/P/S:WHAT"));
    };
    let m = match what.split_once('=') {
        None if what == "stall" => Misbehave::Stall,
        None if what == "wrong-id" => Misbehave::WrongId,
        Some(("error", n)) => {
            Misbehave::ErrorStatus(n.parse().map_err(|_| bad(item, "error=STATUS"))?)
        }
        Some(("late-ms", n)) => Misbehave::Late(Duration::from_millis(
            n.parse().map_err(|_| bad(item, "late-ms=MS"))?,
        )),
        _ => return Err(bad(item, "unknown misbehaviour")),
    };
    Ok((BeStreamId::new(GUEST, c, p, s), m))
}

impl Spec {
    /// Parses `;`-separated items (see the module documentation); items the world does not know
    /// are kept in [`Spec::extra`].
    pub fn parse(spec: &str) -> Result<Spec, SpecError> {
        Self::parse_items(spec, None)
    }

    /// Parses `;`-separated items like [`Spec::parse`], but refuses (`unknown item`) every item
    /// the world does not know whose key is not one of `extra_keys` (a program with no items of
    /// its own passes `&[]`).
    pub fn parse_only(spec: &str, extra_keys: &[&str]) -> Result<Spec, SpecError> {
        Self::parse_items(spec, Some(extra_keys))
    }

    fn parse_items(spec: &str, extra_keys: Option<&[&str]>) -> Result<Spec, SpecError> {
        let mut s = Spec::default();
        for item in spec.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad(item, "expected KEY=VALUE"))?;
            let (key, value) = (key.trim(), value.trim());
            match key {
                "preset" => {
                    let formats = match value {
                        "two-stream" => None,
                        "s16-duplex" => Some("s16_le"),
                        _ => return Err(bad(item, "unknown preset")),
                    };
                    let card = s.cards.entry(0).or_default();
                    for (k, v) in TWO_STREAM {
                        let v = match (k, formats) {
                            ("sample-formats", Some(f)) => f,
                            _ => v,
                        };
                        card.push((k.to_owned(), v.to_owned()));
                    }
                }
                "card" => {
                    let c = value.parse().map_err(|_| bad(item, "not a card number"))?;
                    s.cards.entry(c).or_default();
                }
                "detached" => {
                    let c = value.parse().map_err(|_| bad(item, "not a card number"))?;
                    s.detached.push(c);
                }
                "backend" => s.backend = on_off(item, value)?,
                "volume" => s.volume = on_off(item, value)?,
                "clock-scale" => {
                    let f: f64 = value.parse().map_err(|_| bad(item, "not a number"))?;
                    Clock::scaled(f).map_err(|e| bad(item, &e.to_string()))?;
                    s.clock_scale = f;
                }
                "misbehave" => s.misbehave.push(parse_misbehave(item, value)?),
                "wav-dir" => {
                    if !value.starts_with('/') {
                        return Err(bad(item, "an absolute path"));
                    }
                    s.wav_dir = Some(PathBuf::from(value));
                }
                path if path.contains('/') => {
                    let (card, rel) = path
                        .split_once('/')
                        .ok_or_else(|| bad(item, "unknown item"))?;
                    let c: u32 = card.parse().map_err(|_| bad(item, "unknown item"))?;
                    if rel.is_empty() {
                        return Err(bad(item, "empty key"));
                    }
                    s.cards
                        .entry(c)
                        .or_default()
                        .push((rel.to_owned(), value.to_owned()));
                }
                other => match extra_keys {
                    Some(known) if !known.contains(&other) => {
                        return Err(bad(item, "unknown item"))
                    }
                    _ => s.extra.push((other.to_owned(), value.to_owned())),
                },
            }
        }
        Ok(s)
    }
}

/// `/local/domain/1/device/vsnd/<card>`.
pub fn frontend_dir(card: u32) -> String {
    format!("/local/domain/{GUEST}/device/vsnd/{card}")
}

/// `/local/domain/0/backend/vsnd/1/<card>`.
pub fn backend_dir(card: u32) -> String {
    format!("/local/domain/{BACKEND}/backend/vsnd/{GUEST}/{card}")
}

/// Writes card `card` the way libxl does: both directories in one transaction, states 1, the
/// configuration keys (relative to the frontend directory), and libxl's permissions (the
/// frontend directory belongs to the guest and is readable by the backend, the backend
/// directory the other way round).
pub fn add_card(
    world: &Arc<FakeXen>,
    card: u32,
    config: &[(String, String)],
) -> Result<(), WorldError> {
    let device = ToolstackDevice {
        frontend: GUEST,
        backend: BACKEND,
        kind: "vsnd",
        dev: card,
        backend_state: Some("1"),
    };
    world
        .add_device(&device, config)
        .map_err(|source| WorldError::Store {
            what: format!("creating card {card}"),
            source,
        })
}

/// Waits (at most 5 s) until the backend shows InitWait (2) for every card in `cards`, as a
/// backend that was already running in dom0 would.
fn settle(world: &Arc<FakeXen>, cards: impl Iterator<Item = u32>) {
    let store = world.domain(BACKEND).store();
    let paths: Vec<String> = cards.map(|c| format!("{}/state", backend_dir(c))).collect();
    for p in &paths {
        let _ = store.watch(p, "test-world:settle");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        while store.take_watch_event().is_some() {}
        if paths
            .iter()
            .all(|p| world.read(p).is_some_and(|v| v.trim() == "2"))
        {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !wait_readable(store.watch_fd(), left) {
            break;
        }
    }
    for p in &paths {
        let _ = store.unwatch(p, "test-world:settle");
    }
}

/// The backend's log records worth keeping: Info and more important, plus every volume request.
#[derive(Debug, Default)]
struct RecordLog {
    records: Vec<LogRecord>,
    dropped: u64,
}

fn keep(r: &LogRecord) -> bool {
    r.level <= Level::Info
        || matches!(&r.what, LogWhat::Request { op, .. }
            if matches!(op.as_str(), "SET_VOLUME" | "GET_VOLUME" | "MUTE" | "UNMUTE"))
}

/// The fake world, its cards and its backend.
pub struct TestWorld {
    world: Arc<FakeXen>,
    spec: Spec,
    backend: Option<Backend>,
    /// Backends started so far (the current one's number).
    generation: u32,
    /// Statistics of backends that crashed or stopped, for the report.
    past: Vec<(u32, Vec<StreamStats>)>,
    records: Arc<Mutex<RecordLog>>,
}

impl core::fmt::Debug for TestWorld {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TestWorld")
            .field("cards", &self.spec.cards.keys().collect::<Vec<_>>())
            .field("backend", &self.backend.is_some())
            .field("generation", &self.generation)
            .finish()
    }
}

impl TestWorld {
    /// Builds the world of `spec`: its cards, then (unless `backend=off`) the backend, waiting
    /// (at most 5 s) until it shows InitWait for every card.
    pub fn start(spec: &Spec) -> Result<TestWorld, WorldError> {
        let world = FakeXen::new();
        world.domain(BACKEND);
        world.domain(GUEST);
        for (card, config) in &spec.cards {
            if !spec.detached.contains(card) {
                add_card(&world, *card, config)?;
            }
        }
        let mut w = TestWorld {
            world,
            spec: spec.clone(),
            backend: None,
            generation: 0,
            past: Vec::new(),
            records: Arc::new(Mutex::new(RecordLog::default())),
        };
        if spec.backend {
            w.start_backend()?;
        }
        Ok(w)
    }

    /// The specification the world was built from.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The fake world itself.
    pub fn world(&self) -> &Arc<FakeXen> {
        &self.world
    }

    /// The guest's xenstore connection.
    pub fn store(&self) -> Arc<dyn XenStore> {
        self.world.domain(GUEST).store()
    }

    /// The guest's services (a new xenstore connection each time).
    pub fn services(&self) -> Services {
        let d = self.world.domain(GUEST);
        Services {
            store: d.store(),
            grants: d.grant_share(),
            events: d.event_channels(),
        }
    }

    /// The running backend, if any.
    pub fn backend(&self) -> Option<&Backend> {
        self.backend.as_ref()
    }

    /// How many backends were started so far (the running one's number).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Starts a backend (again, after [`TestWorld::crash_backend`] or
    /// [`TestWorld::stop_backend`]), like a restarted `snd_be` process.
    pub fn start_backend(&mut self) -> Result<(), WorldError> {
        if self.backend.is_some() {
            return Err(WorldError::BackendRunning);
        }
        let generation = self.generation + 1;
        let wav_dir = match &self.spec.wav_dir {
            Some(d) => {
                let dir = d.join(format!("backend{generation}"));
                std::fs::create_dir_all(&dir).map_err(|source| {
                    WorldError::Backend(xen_snd_backend::BackendError::Os {
                        what: "creating the WAV directory",
                        source,
                    })
                })?;
                Some(dir)
            }
            None => None,
        };
        let records = Arc::clone(&self.records);
        let logger: xen_snd_backend::Logger = Arc::new(move |r: &LogRecord| {
            if !keep(r) {
                return;
            }
            if let Ok(mut g) = records.lock() {
                if g.records.len() >= MAX_RECORDS {
                    g.records.remove(0);
                    g.dropped += 1;
                }
                g.records.push(r.clone());
            }
        });
        let options = BackendOptions {
            clock: Clock::scaled(self.spec.clock_scale).unwrap_or_else(|_| Clock::real()),
            volume: self.spec.volume,
            wav_dir,
            logger: Some(logger),
            ..BackendOptions::default()
        };
        let b = Backend::start(
            xen_snd_backend::Services::fake(&self.world.domain(BACKEND)),
            options,
        )?;
        for (id, m) in &self.spec.misbehave {
            b.set_misbehave(*id, *m);
        }
        self.generation = generation;
        self.backend = Some(b);
        settle(&self.world, self.cards_present().into_iter());
        Ok(())
    }

    /// Kills the backend like a killed process: mappings and ports are dropped, xenstore is not
    /// touched (its states stay, e.g. Connected).
    pub fn crash_backend(&mut self) -> Result<(), WorldError> {
        let b = self.backend.take().ok_or(WorldError::NoBackend)?;
        self.past.push((self.generation, b.all_stats()));
        b.crash()?;
        Ok(())
    }

    /// Stops the backend like snd_be on SIGTERM (every device closed, 5 → 6).
    pub fn stop_backend(&mut self) -> Result<(), WorldError> {
        let mut b = self.backend.take().ok_or(WorldError::NoBackend)?;
        let r = b.stop();
        self.past.push((self.generation, b.all_stats()));
        r.map_err(WorldError::from)
    }

    /// Cards whose directories exist.
    pub fn cards_present(&self) -> Vec<u32> {
        self.world
            .domain(BACKEND)
            .store()
            .directory(&format!("/local/domain/{GUEST}/device/vsnd"))
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    }

    /// Removes card `card` like a forced `xl vsnd-detach`: both directories go at once.
    pub fn remove_card(&self, card: u32) -> Result<(), WorldError> {
        if !self.spec.cards.contains_key(&card) {
            return Err(WorldError::UnknownCard(card));
        }
        let store = self.world.domain(BACKEND).store();
        let (fe, be) = (frontend_dir(card), backend_dir(card));
        store
            .transaction(&mut |t: &dyn StoreOps| {
                t.rm(&fe)?;
                t.rm(&be)
            })
            .map_err(|source| WorldError::Store {
                what: format!("removing card {card}"),
                source,
            })
    }

    /// Adds card `card` of the specification (again), like `xl vsnd-attach`.
    pub fn add_card(&self, card: u32) -> Result<(), WorldError> {
        let config = self
            .spec
            .cards
            .get(&card)
            .ok_or(WorldError::UnknownCard(card))?;
        add_card(&self.world, card, config)?;
        if self.backend.is_some() {
            settle(&self.world, std::iter::once(card));
        }
        Ok(())
    }

    /// Statistics of every stream the running backend saw.
    pub fn backend_stats(&self) -> Vec<StreamStats> {
        self.backend
            .as_ref()
            .map(Backend::all_stats)
            .unwrap_or_default()
    }

    /// Statistics of the running backend, or of the last one that crashed or stopped.
    pub fn last_stats(&self) -> Vec<StreamStats> {
        match &self.backend {
            Some(b) => b.all_stats(),
            None => self.past.last().map(|(_, s)| s.clone()).unwrap_or_default(),
        }
    }

    /// The backend log records kept so far (Info and more important, and every volume
    /// request), of every backend started.
    pub fn records(&self) -> Vec<LogRecord> {
        self.records
            .lock()
            .map(|g| g.records.clone())
            .unwrap_or_default()
    }

    /// `card <C> frontend-state <S> backend-state <S>` for every card of the specification.
    pub fn state_lines(&self) -> Vec<String> {
        self.spec
            .cards
            .keys()
            .map(|card| {
                let fe = self.world.read(&format!("{}/state", frontend_dir(*card)));
                let be = self.world.read(&format!("{}/state", backend_dir(*card)));
                format!(
                    "card {card} frontend-state {} backend-state {}",
                    fe.as_deref().unwrap_or("-"),
                    be.as_deref().unwrap_or("-")
                )
            })
            .collect()
    }

    /// `stream <id> <kind> received <bytes> sha256 <hex> sent <bytes> underruns <n> opens <n>
    /// closes <n>` for every stream in `stats`.
    pub fn stats_lines(stats: &[StreamStats]) -> Vec<String> {
        stats
            .iter()
            .map(|s| {
                let kind = match s.kind {
                    Some(k) => k.to_string(),
                    None => "unbound".to_owned(),
                };
                format!(
                    "stream {} {kind} received {} sha256 {} sent {} underruns {} opens {} closes {}",
                    s.id,
                    s.bytes_received,
                    s.sha256_hex,
                    s.bytes_sent,
                    s.underruns,
                    s.opens,
                    s.closes
                )
            })
            .collect()
    }

    /// Stops the backend (if running) and returns the report: [`TestWorld::state_lines`] (as
    /// the frontend left them), then the statistics of the last backend.
    pub fn finish(mut self) -> Vec<String> {
        let mut lines = self.state_lines();
        if self.backend.is_some() {
            if let Err(e) = self.stop_backend() {
                lines.push(format!("backend stop failed: {e}"));
            }
        }
        lines.extend(Self::stats_lines(&self.last_stats()));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_items_build_the_world() {
        let spec = Spec::parse(
            "preset=two-stream; 1/0/0/type=p ; 1/0/0/unique-id=x; backend=off; card=4; \
             control=/tmp/x; volume=on; card=5; detached=5",
        )
        .expect("spec");
        assert!(spec.volume);
        assert_eq!(
            spec.extra,
            vec![("control".to_owned(), "/tmp/x".to_owned())]
        );
        let w = TestWorld::start(&spec).expect("world");
        assert_eq!(
            w.spec().cards.keys().copied().collect::<Vec<_>>(),
            [0, 1, 4, 5]
        );
        assert!(w.backend().is_none());
        let store = w.store();
        assert_eq!(
            store
                .read("/local/domain/1/device/vsnd/1/0/0/type")
                .expect("read")
                .as_deref(),
            Some("p")
        );
        assert_eq!(
            store
                .read("/local/domain/1/device/vsnd/0/short-name")
                .expect("read")
                .as_deref(),
            Some("VCard")
        );
        assert_eq!(
            store
                .read("/local/domain/0/backend/vsnd/1/4/state")
                .expect("guest may read the backend state")
                .as_deref(),
            Some("1")
        );
        let mut cards = w.cards_present();
        cards.sort_unstable();
        assert_eq!(cards, [0, 1, 4], "card 5 is detached");
        w.add_card(5).expect("attach later");
        assert!(w.cards_present().contains(&5));
        w.remove_card(4).expect("remove");
        assert!(!w.cards_present().contains(&4));
        w.add_card(4).expect("add again");
        assert!(w.cards_present().contains(&4));
        assert!(matches!(w.remove_card(9), Err(WorldError::UnknownCard(9))));
    }

    #[test]
    fn s16_preset_restricts_the_formats() {
        let spec = Spec::parse("preset=s16-duplex").expect("spec");
        let card = spec.cards.get(&0).expect("card 0");
        assert!(card
            .iter()
            .any(|(k, v)| k == "sample-formats" && v == "s16_le"));
    }

    #[test]
    fn bad_items_are_refused() {
        for spec in [
            "nonsense",
            "preset=three",
            "backend=maybe",
            "x/y=1",
            "0/=1",
            "misbehave=0/0:stall",
            "misbehave=0/0/0:dance",
            "clock-scale=-1",
            "wav-dir=relative",
            "volume=2",
            "detached=x",
        ] {
            assert!(Spec::parse(spec).is_err(), "{spec}");
        }
        let (id, m) = parse_misbehave("i", "0/0/1:error=-22").expect("ok");
        assert_eq!(id, BeStreamId::new(1, 0, 0, 1));
        assert_eq!(m, Misbehave::ErrorStatus(-22));
        assert_eq!(
            parse_misbehave("i", "2/0/0:late-ms=5").expect("ok").1,
            Misbehave::Late(Duration::from_millis(5))
        );
    }

    #[test]
    fn parse_only_refuses_unknown_items() {
        let spec = "preset=two-stream; control=/tmp/x";
        assert_eq!(
            Spec::parse_only(spec, &[]),
            Err(bad("control=/tmp/x", "unknown item"))
        );
        let s = Spec::parse_only(spec, &["control"]).expect("control is known");
        assert_eq!(s.extra, vec![("control".to_owned(), "/tmp/x".to_owned())]);
        assert_eq!(
            Spec::parse_only("report=/r; control=/c", &["control"])
                .expect_err("report is not")
                .to_string(),
            "item \"report=/r\": unknown item"
        );
        let s = Spec::parse_only("preset=two-stream; volume=on; 0/0/0/type=c", &[])
            .expect("world items only");
        assert!(s.volume && s.extra.is_empty());
    }

    #[test]
    fn the_backend_settles_crashes_and_restarts() {
        let spec = Spec::parse("preset=two-stream").expect("spec");
        let mut w = TestWorld::start(&spec).expect("world");
        assert_eq!(w.generation(), 1);
        assert_eq!(
            w.world()
                .read(&format!("{}/state", backend_dir(0)))
                .as_deref(),
            Some("2"),
            "InitWait once started"
        );
        assert!(matches!(w.start_backend(), Err(WorldError::BackendRunning)));
        w.crash_backend().expect("crash");
        assert!(w.backend().is_none());
        assert!(matches!(w.crash_backend(), Err(WorldError::NoBackend)));
        w.start_backend().expect("restart");
        assert_eq!(w.generation(), 2);
        w.stop_backend().expect("stop");
        assert!(w.backend().is_none());
        let lines = w.finish();
        assert!(
            lines.iter().any(|l| l.starts_with("card 0 frontend-state")),
            "{lines:?}"
        );
    }
}
