//! The test hook: with `XEN_SND_TEST_WORLD` set, the tool runs against the engine's test world
//! (`xen_snd_engine::testworld`: an in-process fake Xen with the reference backend in domain 0,
//! the guest in domain 1) instead of the real devices. It exists so that the tool can be tested
//! on machines without Xen; it is compiled only with the `test-hook` feature (on by default;
//! build with `--no-default-features` to leave it out).
//!
//! The variable holds the world's `;`-separated items (`preset=two-stream`, `C/KEY=VALUE`,
//! `card=C`, `backend=on|off`, `clock-scale=F`, `misbehave=C/P/S:WHAT`, …; see
//! `xen_snd_engine::testworld`). The tool has no items of its own: any other item is a usage
//! error.
//!
//! At exit the hook prints to standard error, each line starting with `test-hook: `, the
//! frontend and backend state of every card and the backend's statistics of every stream
//! (`stream 1/0/0/0 playback received <bytes> sha256 <hex> sent <bytes> underruns <n> …`).

use xen_snd_engine::testworld::{Spec, WorldError};

pub use xen_snd_engine::testworld::TestWorld;

use crate::env::TEST_WORLD_ENV;
use crate::error::CliError;

/// Builds the world described by `spec` and starts its backend (unless `backend=off`).
pub fn start(spec: &str) -> Result<TestWorld, CliError> {
    let spec = Spec::parse_only(spec, &[])
        .map_err(|e| CliError::Usage(format!("{TEST_WORLD_ENV}: {e}")))?;
    TestWorld::start(&spec).map_err(|e| {
        CliError::Failed(match e {
            WorldError::Store { what, source } => format!("{TEST_WORLD_ENV}: {what}: {source}"),
            WorldError::Backend(e) => format!("{TEST_WORLD_ENV}: backend: {e}"),
            other => format!("{TEST_WORLD_ENV}: {other}"),
        })
    })
}

/// Stops the backend and prints the report (see the module documentation).
pub fn finish(world: TestWorld) {
    for l in world.finish() {
        eprintln!("test-hook: {l}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use xen_snd_backend::{Misbehave, StreamId};

    use super::*;

    #[test]
    fn spec_items_build_the_world() {
        let w = start("preset=two-stream; 1/0/0/type=p ; 1/0/0/unique-id=x; backend=off; card=4")
            .expect("world");
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
        let w = start("backend=off; misbehave=0/0/1:error=-22; misbehave=2/0/0:late-ms=5")
            .expect("world");
        let [(id, m), (_, late)] = w.spec().misbehave[..] else {
            panic!("two misbehaviours: {:?}", w.spec().misbehave);
        };
        assert_eq!(id, StreamId::new(1, 0, 0, 1));
        assert_eq!(m, Misbehave::ErrorStatus(-22));
        assert_eq!(late, Misbehave::Late(Duration::from_millis(5)));
    }
}
