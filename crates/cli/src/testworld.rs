//! The test hook: with `XEN_SND_TEST_WORLD` set, the tool runs against an in-process fake Xen
//! (`xen_access::fake`) with the reference backend (`xen-snd-backend`) in domain 0, instead of
//! the real devices. It exists so that the tool can be tested on machines without Xen; it is
//! compiled only with the `test-hook` feature (on by default; build with
//! `--no-default-features` to leave it out).
//!
//! The guest is domain 1. The variable holds `;`-separated items:
//!
//! | Item | Meaning |
//! | --- | --- |
//! | `preset=two-stream` | card 0: `VCard`, formats `s16_le,s24_le,s32_le,float_le,u8`, rates `44100,48000`, 1–2 channels, buffer 32768; device 0 `dev0` with playback stream `0/0` (unique-id `pulse`) and capture stream `0/1` (unique-id `pattern`) |
//! | `C/KEY=VALUE` | xenstore key `KEY` of card `C` below `device/vsnd/C` (e.g. `0/0/0/type=p`); creates the card like libxl |
//! | `card=C` | card `C` with no configuration keys |
//! | `backend=on\|off` | run the reference backend (default `on`) |
//! | `clock-scale=F` | the backend's stream clock runs `F` times as fast as real time |
//! | `misbehave=C/P/S:WHAT` | stream `P/S` of card `C` misbehaves: `stall`, `error=STATUS`, `late-ms=MS`, `wrong-id` |
//!
//! At exit the hook prints to standard error, each line starting with `test-hook: `, the
//! frontend and backend state of every card and the backend's statistics of every stream
//! (`stream 1/0/0/0 playback received <bytes> sha256 <hex> sent <bytes> underruns <n>`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xen_access::fake::{wait_readable, FakeXen};
use xen_access::{Access, DomId, Perm, StoreOps, XenStore};
use xen_snd_backend::{Backend, BackendOptions, Clock, Misbehave, StreamId};
use xen_snd_engine::Services;

use crate::env::TEST_WORLD_ENV;
use crate::error::CliError;

/// The guest's domain id in the fake world.
pub const GUEST: DomId = 1;
/// The backend's domain id.
pub const BACKEND: DomId = 0;

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

/// The fake world and its backend.
pub struct TestWorld {
    world: Arc<FakeXen>,
    backend: Option<Backend>,
    cards: Vec<u32>,
}

impl std::fmt::Debug for TestWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestWorld")
            .field("cards", &self.cards)
            .field("backend", &self.backend.is_some())
            .finish()
    }
}

fn bad(item: &str, why: &str) -> CliError {
    CliError::Usage(format!("{TEST_WORLD_ENV}: item {item:?}: {why}"))
}

fn parse_misbehave(item: &str, v: &str) -> Result<(StreamId, Misbehave), CliError> {
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
    Ok((StreamId::new(GUEST, c, p, s), m))
}

/// Writes card `card` the way libxl does: both directories in one transaction, states 1, the
/// configuration keys, and libxl's permissions.
fn add_card(world: &Arc<FakeXen>, card: u32, config: &[(String, String)]) -> Result<(), CliError> {
    let store = world.domain(BACKEND).store();
    let fe = format!("/local/domain/{GUEST}/device/vsnd/{card}");
    let be = format!("/local/domain/{BACKEND}/backend/vsnd/{GUEST}/{card}");
    let fe_perms = [
        Perm {
            domid: GUEST,
            access: Access::None,
        },
        Perm {
            domid: BACKEND,
            access: Access::Read,
        },
    ];
    let be_perms = [
        Perm {
            domid: BACKEND,
            access: Access::None,
        },
        Perm {
            domid: GUEST,
            access: Access::Read,
        },
    ];
    let mut fe_nodes = vec![
        (fe.clone(), String::new()),
        (format!("{fe}/backend"), be.clone()),
        (format!("{fe}/backend-id"), BACKEND.to_string()),
        (format!("{fe}/state"), "1".to_owned()),
    ];
    for (k, v) in config {
        fe_nodes.push((format!("{fe}/{k}"), v.clone()));
    }
    let be_nodes = [
        (be.clone(), String::new()),
        (format!("{be}/frontend"), fe.clone()),
        (format!("{be}/frontend-id"), GUEST.to_string()),
        (format!("{be}/online"), "1".to_owned()),
        (format!("{be}/state"), "1".to_owned()),
    ];
    store
        .transaction(&mut |t: &dyn StoreOps| {
            for (p, v) in &fe_nodes {
                t.write(p, v)?;
                t.set_perms(p, &fe_perms)?;
                // Intermediate directories (`0`, `0/0`) belong to the guest too.
                let mut q = p.clone();
                while let Some(i) = q.rfind('/') {
                    q.truncate(i);
                    if q.len() <= fe.len() {
                        break;
                    }
                    t.set_perms(&q, &fe_perms)?;
                }
            }
            for (p, v) in &be_nodes {
                t.write(p, v)?;
                t.set_perms(p, &be_perms)?;
            }
            Ok(())
        })
        .map_err(|e| CliError::Failed(format!("{TEST_WORLD_ENV}: creating card {card}: {e}")))
}

/// Waits (at most 5 s) until the backend shows InitWait (2) for every card, as a backend that
/// was already running in dom0 would.
fn settle(world: &Arc<FakeXen>, cards: impl Iterator<Item = u32>) {
    let store = world.domain(BACKEND).store();
    let paths: Vec<String> = cards
        .map(|c| format!("/local/domain/{BACKEND}/backend/vsnd/{GUEST}/{c}/state"))
        .collect();
    for p in &paths {
        let _ = store.watch(p, "test-hook:settle");
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
        let _ = store.unwatch(p, "test-hook:settle");
    }
}

impl TestWorld {
    /// Builds the world described by `spec` and starts the backend.
    pub fn from_spec(spec: &str) -> Result<TestWorld, CliError> {
        let mut cards: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
        let mut backend_on = true;
        let mut clock = Clock::real();
        let mut misbehave = Vec::new();
        for item in spec.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad(item, "expected KEY=VALUE"))?;
            match key {
                "preset" if value == "two-stream" => {
                    cards.entry(0).or_default().extend(
                        TWO_STREAM
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                    );
                }
                "preset" => return Err(bad(item, "unknown preset")),
                "card" => {
                    let c = value.parse().map_err(|_| bad(item, "not a card number"))?;
                    cards.entry(c).or_default();
                }
                "backend" => {
                    backend_on = match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(bad(item, "on or off")),
                    }
                }
                "clock-scale" => {
                    let f: f64 = value.parse().map_err(|_| bad(item, "not a number"))?;
                    clock = Clock::scaled(f).map_err(|e| bad(item, &e.to_string()))?;
                }
                "misbehave" => misbehave.push(parse_misbehave(item, value)?),
                path => {
                    let (card, rel) = path
                        .split_once('/')
                        .ok_or_else(|| bad(item, "unknown item"))?;
                    let c: u32 = card.parse().map_err(|_| bad(item, "unknown item"))?;
                    if rel.is_empty() {
                        return Err(bad(item, "empty key"));
                    }
                    cards
                        .entry(c)
                        .or_default()
                        .push((rel.to_owned(), value.to_owned()));
                }
            }
        }
        let world = FakeXen::new();
        world.domain(BACKEND);
        world.domain(GUEST);
        for (card, config) in &cards {
            add_card(&world, *card, config)?;
        }
        let backend = if backend_on {
            let options = BackendOptions {
                clock,
                ..BackendOptions::default()
            };
            let b = Backend::start(
                xen_snd_backend::Services::fake(&world.domain(BACKEND)),
                options,
            )
            .map_err(|e| CliError::Failed(format!("{TEST_WORLD_ENV}: backend: {e}")))?;
            for (id, m) in misbehave {
                b.set_misbehave(id, m);
            }
            settle(&world, cards.keys().copied());
            Some(b)
        } else {
            None
        };
        Ok(TestWorld {
            world,
            backend,
            cards: cards.keys().copied().collect(),
        })
    }

    /// The guest's xenstore connection.
    pub fn store(&self) -> Arc<dyn XenStore> {
        self.world.domain(GUEST).store()
    }

    /// The guest's services.
    pub fn services(&self) -> Services {
        let d = self.world.domain(GUEST);
        Services {
            store: d.store(),
            grants: d.grant_share(),
            events: d.event_channels(),
        }
    }

    /// Stops the backend and prints the report (see the module documentation).
    pub fn finish(mut self) {
        let mut lines = Vec::new();
        for card in &self.cards {
            let fe = self
                .world
                .read(&format!("/local/domain/{GUEST}/device/vsnd/{card}/state"));
            let be = self.world.read(&format!(
                "/local/domain/{BACKEND}/backend/vsnd/{GUEST}/{card}/state"
            ));
            lines.push(format!(
                "card {card} frontend-state {} backend-state {}",
                fe.as_deref().unwrap_or("-"),
                be.as_deref().unwrap_or("-")
            ));
        }
        if let Some(mut b) = self.backend.take() {
            if let Err(e) = b.stop() {
                lines.push(format!("backend stop failed: {e}"));
            }
            for s in b.all_stats() {
                let kind = match s.kind {
                    Some(k) => k.to_string(),
                    None => "unbound".to_owned(),
                };
                lines.push(format!(
                    "stream {} {kind} received {} sha256 {} sent {} underruns {} opens {} closes {}",
                    s.id, s.bytes_received, s.sha256_hex, s.bytes_sent, s.underruns, s.opens,
                    s.closes
                ));
            }
        }
        for l in lines {
            eprintln!("test-hook: {l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_items_build_the_world() {
        let w = TestWorld::from_spec(
            "preset=two-stream; 1/0/0/type=p ; 1/0/0/unique-id=x; backend=off; card=4",
        )
        .expect("world");
        assert_eq!(w.cards, vec![0, 1, 4]);
        assert!(w.backend.is_none());
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
    }

    #[test]
    fn bad_items_are_usage_errors() {
        for spec in [
            "nonsense",
            "preset=three",
            "backend=maybe",
            "x/y=1",
            "0/=1",
            "misbehave=0/0:stall",
            "misbehave=0/0/0:dance",
            "clock-scale=-1",
        ] {
            assert!(
                matches!(TestWorld::from_spec(spec), Err(CliError::Usage(_))),
                "{spec}"
            );
        }
        let (id, m) = parse_misbehave("i", "0/0/1:error=-22").expect("ok");
        assert_eq!(id, StreamId::new(1, 0, 0, 1));
        assert_eq!(m, Misbehave::ErrorStatus(-22));
        assert_eq!(
            parse_misbehave("i", "2/0/0:late-ms=5").expect("ok").1,
            Misbehave::Late(Duration::from_millis(5))
        );
    }
}
