//! The test hook: with `XEN_SND_TEST_WORLD` set, the tool runs against the engine's test world
//! (`xen_snd_engine::testworld`: an in-process fake Xen with the reference backend in domain 0,
//! the guest in domain 1) instead of the real devices. It exists so that the tool can be tested
//! on machines without Xen; it is compiled only with the `test-hook` feature (on by default;
//! build with `--no-default-features` to leave it out).
//!
//! The variable holds the world's `;`-separated items (`preset=two-stream`, `C/KEY=VALUE`,
//! `card=C`, `backend=on|off`, `clock-scale=F`, `misbehave=C/P/S:WHAT`, `wav-dir=PATH`, …; see
//! `xen_snd_engine::testworld`) and the tool's own:
//!
//! | Item | Meaning |
//! | --- | --- |
//! | `restart-backend=BYTES` | once a stream of the running backend has received (playback) or sent (capture) `BYTES` bytes, kill that backend (like a killed process: xenstore untouched) and start a new one at once (it walks 5 → 6 → 1 like libxenbe); repeat the item for more restarts, each counted on the backend then running |
//!
//! Any other item is a usage error.
//!
//! At exit the hook prints to standard error, each line starting with `test-hook: `, every
//! restart (`restarted the backend: backend <n> had received <bytes> sent <bytes> on stream
//! <id>`), the frontend and backend state of every card and the last backend's statistics of
//! every stream (`stream 1/0/0/0 playback received <bytes> sha256 <hex> sent <bytes> underruns
//! <n> …`).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use xen_snd_engine::testworld::{Spec, WorldError};

pub use xen_snd_engine::testworld::TestWorld;

use crate::env::TEST_WORLD_ENV;
use crate::error::CliError;

/// The tool's own items (see the module documentation).
const ITEMS: [&str; 1] = ["restart-backend"];

/// How often the restarter looks at the backend's counters.
const RESTART_POLL: Duration = Duration::from_millis(2);

fn lock(w: &Mutex<TestWorld>) -> MutexGuard<'_, TestWorld> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// The world and the thread that restarts its backend (`restart-backend=`).
#[derive(Debug)]
pub struct Hook {
    world: Arc<Mutex<TestWorld>>,
    restarter: Option<(mpsc::Sender<()>, JoinHandle<Vec<String>>)>,
}

impl Hook {
    /// The guest's xenstore connection.
    pub fn store(&self) -> Arc<dyn xen_access::XenStore> {
        lock(&self.world).store()
    }

    /// The guest's services.
    pub fn services(&self) -> xen_snd_engine::Services {
        lock(&self.world).services()
    }
}

fn world_error(e: WorldError) -> CliError {
    CliError::Failed(match e {
        WorldError::Store { what, source } => format!("{TEST_WORLD_ENV}: {what}: {source}"),
        WorldError::Backend(e) => format!("{TEST_WORLD_ENV}: backend: {e}"),
        other => format!("{TEST_WORLD_ENV}: {other}"),
    })
}

/// Builds the world described by `spec` and starts its backend (unless `backend=off`), and
/// the restarter if the spec asks for restarts.
pub fn start(spec: &str) -> Result<Hook, CliError> {
    let spec = Spec::parse_only(spec, &ITEMS)
        .map_err(|e| CliError::Usage(format!("{TEST_WORLD_ENV}: {e}")))?;
    let mut restarts = Vec::new();
    for (k, v) in &spec.extra {
        if k == "restart-backend" {
            let n: u64 = v.parse().map_err(|_| {
                CliError::Usage(format!(
                    "{TEST_WORLD_ENV}: item \"{k}={v}\": not a number of bytes"
                ))
            })?;
            restarts.push(n);
        }
    }
    let world = Arc::new(Mutex::new(TestWorld::start(&spec).map_err(world_error)?));
    let restarter = if restarts.is_empty() {
        None
    } else {
        let (tx, rx) = mpsc::channel();
        let w = Arc::clone(&world);
        let thread = std::thread::Builder::new()
            .name("test-hook-restarter".into())
            .spawn(move || restart_backend(&w, &restarts, &rx))
            .map_err(|e| CliError::Failed(format!("{TEST_WORLD_ENV}: starting a thread: {e}")))?;
        Some((tx, thread))
    };
    Ok(Hook { world, restarter })
}

/// The restarter: for each threshold, waits until a stream of the running backend moved that
/// many bytes, then kills the backend and starts a new one. Returns its report lines.
fn restart_backend(
    world: &Mutex<TestWorld>,
    thresholds: &[u64],
    stop: &mpsc::Receiver<()>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for limit in thresholds {
        loop {
            {
                let mut w = lock(world);
                let hit = w
                    .backend_stats()
                    .into_iter()
                    .find(|s| s.bytes_received.max(s.bytes_sent) >= *limit);
                if let Some(s) = hit {
                    let generation = w.generation();
                    let outcome = w.crash_backend().and_then(|()| w.start_backend());
                    lines.push(match outcome {
                        Ok(()) => format!(
                            "restarted the backend: backend {generation} had received {} sent {} \
                             on stream {}",
                            s.bytes_received, s.bytes_sent, s.id
                        ),
                        Err(e) => format!("restarting the backend failed: {e}"),
                    });
                    break;
                }
            }
            match stop.recv_timeout(RESTART_POLL) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return lines,
            }
        }
    }
    lines
}

/// Stops the restarter and the backend and prints the report (see the module documentation).
pub fn finish(hook: Hook) {
    let Hook { world, restarter } = hook;
    if let Some((stop, thread)) = restarter {
        let _ = stop.send(());
        match thread.join() {
            Ok(lines) => {
                for l in lines {
                    eprintln!("test-hook: {l}");
                }
            }
            Err(_) => eprintln!("test-hook: the restarter thread panicked"),
        }
    }
    match Arc::try_unwrap(world) {
        Ok(w) => {
            let w = w.into_inner().unwrap_or_else(|e| e.into_inner());
            for l in w.finish() {
                eprintln!("test-hook: {l}");
            }
        }
        Err(_) => eprintln!("test-hook: the world is still in use; no report"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use xen_snd_backend::{Misbehave, StreamId};

    use super::*;

    #[test]
    fn spec_items_build_the_world() {
        let hook =
            start("preset=two-stream; 1/0/0/type=p ; 1/0/0/unique-id=x; backend=off; card=4")
                .expect("world");
        let w = lock(&hook.world);
        assert_eq!(
            w.spec().cards.keys().copied().collect::<Vec<_>>(),
            [0, 1, 4]
        );
        assert!(w.backend().is_none());
        let store = w.store();
        for (path, value) in [
            ("/local/domain/1/device/vsnd/1/0/0/type", "p"),
            ("/local/domain/1/device/vsnd/0/short-name", "VCard"),
            // The guest may read the backend's state.
            ("/local/domain/0/backend/vsnd/1/4/state", "1"),
        ] {
            assert_eq!(
                store.read(path).map_err(|e| e.to_string()),
                Ok(Some(value.to_owned())),
                "{path}"
            );
        }
    }

    #[test]
    fn bad_items_are_usage_errors() {
        // Each is refused with the item and the reason, as a usage error (exit code 2).
        for (spec, reason) in [
            ("nonsense", "expected KEY=VALUE"),
            ("preset=three", "unknown preset"),
            ("backend=maybe", "on or off"),
            ("x/y=1", "unknown item"),
            ("0/=1", "empty key"),
            ("misbehave=0/0:stall", "expected C/P/S:WHAT"),
            ("misbehave=0/0/0:dance", "unknown misbehaviour"),
            ("clock-scale=-1", ""),
            // An item of the PipeWire module's hook is not one of the tool's.
            ("report=/r", "unknown item"),
            ("restart-backend=lots", "not a number of bytes"),
        ] {
            let Err(e) = start(spec) else {
                panic!("{spec} accepted");
            };
            assert!(matches!(e, CliError::Usage(_)), "{spec}: {e:?}");
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("XEN_SND_TEST_WORLD: item {spec:?}: {reason}"))
                    && message.ends_with(" (see xen-snd --help)"),
                "{message}"
            );
        }
        let hook = start("backend=off; misbehave=0/0/1:error=-22; misbehave=2/0/0:late-ms=5")
            .expect("world");
        let w = lock(&hook.world);
        let [(id, m), (_, late)] = w.spec().misbehave[..] else {
            panic!("two misbehaviours: {:?}", w.spec().misbehave);
        };
        assert_eq!(id, StreamId::new(1, 0, 0, 1));
        assert_eq!(m, Misbehave::ErrorStatus(-22));
        assert_eq!(late, Misbehave::Late(Duration::from_millis(5)));
    }
}
