//! One device handler: libxenbe's `FrontendHandlerBase` state machine (sndif.md §2.4) plus
//! snd_be's bind.
//!
//! | Trigger | Action |
//! | --- | --- |
//! | handler created | backend `state` exists and ≠ Closed: write 5 → 6 → 1; else write 1 |
//! | FE Initialising, BE Connected | "frontend restarted": release, write 5 → 6 → 2 |
//! | FE Initialising, BE Initialising or Closed | write 2 (InitWait) |
//! | FE Initialised or Connected, BE Initialising or InitWait | bind every stream, write 4; a bind error: release, 5 → 6 (stays Closed) |
//! | FE Closing or Closed, BE Initialised or Connected | release, write 5 → 6 → 2 |
//! | BE state written by someone else: Closing or Closed | release, write 6 if it is not 6 already |
//! | BE state written by someone else: Initialising | write 2 |
//! | a stream worker fails | release, 5 → 6 |
//! | device directory removed | release, drop the handler (no writes) |
//!
//! States are re-read on every watch event and a value equal to the last one seen (or written)
//! is ignored, so rapid changes coalesce exactly as with libxenbe. The backend writes its state
//! only while the `state` node exists (checked in the same transaction as the write), like
//! libxenbe's `setBackendState`.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use sndif::{parse_card, BackRing, ConfigError, EventError, EventWriter, RingError};
use xen_access::{
    EventChannels, EvtchnError, GrantError, GrantMap, Port, StoreConfigSource, StoreError,
    StoreOps, XenStore,
};

use crate::ids::{DeviceKey, StreamId};
use crate::log::{Level, Log, LogWhat};
use crate::media::{setup_from_unique_id, CaptureSource, Loops, Registry, StreamSetup};
use crate::stream::{self, BoundRings, StreamContext, StreamHandle};
use crate::wake::WakeFd;
use crate::BackendOptions;

/// XenBus states (`xen/include/public/io/xenbus.h`).
pub mod xenbus {
    /// Unknown.
    pub const UNKNOWN: u32 = 0;
    /// Initialising.
    pub const INITIALISING: u32 = 1;
    /// InitWait.
    pub const INIT_WAIT: u32 = 2;
    /// Initialised.
    pub const INITIALISED: u32 = 3;
    /// Connected.
    pub const CONNECTED: u32 = 4;
    /// Closing.
    pub const CLOSING: u32 = 5;
    /// Closed.
    pub const CLOSED: u32 = 6;
}

use xenbus::{CLOSED, CLOSING, CONNECTED, INITIALISED, INITIALISING, INIT_WAIT, UNKNOWN};

/// Why binding a device failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The card configuration cannot be used at all.
    #[error("card configuration below {path}: {source}")]
    Config {
        /// The frontend device directory.
        path: String,
        /// What the parser reported.
        #[source]
        source: ConfigError,
    },
    /// A xenstore operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A mandatory key is missing.
    #[error("{path}: missing")]
    MissingKey {
        /// The node.
        path: String,
    },
    /// A key does not hold a number.
    #[error("{path}: invalid value {value:?}: not a 32-bit unsigned number")]
    BadKey {
        /// The node.
        path: String,
        /// Its value.
        value: String,
    },
    /// A ring or event page could not be mapped.
    #[error("mapping {what} of stream {stream}: {source}")]
    Map {
        /// `ring-ref` or `evt-ring-ref`.
        what: &'static str,
        /// The stream.
        stream: StreamId,
        /// The grant error.
        #[source]
        source: GrantError,
    },
    /// A port could not be bound.
    #[error("binding {what} of stream {stream}: {source}")]
    Evtchn {
        /// `event-channel` or `evt-event-channel` (or `open`).
        what: &'static str,
        /// The stream.
        stream: StreamId,
        /// The event-channel error.
        #[source]
        source: EvtchnError,
    },
    /// The ring page is unusable.
    #[error("request ring of stream {stream}: {source}")]
    Ring {
        /// The stream.
        stream: StreamId,
        /// What failed.
        #[source]
        source: RingError,
    },
    /// The event page is unusable.
    #[error("event page of stream {stream}: {source}")]
    Event {
        /// The stream.
        stream: StreamId,
        /// What failed.
        #[source]
        source: EventError,
    },
    /// The worker thread could not be started.
    #[error("starting the worker of stream {stream}: {source}")]
    Spawn {
        /// The stream.
        stream: StreamId,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What every handler of one backend shares.
pub(crate) struct DeviceEnv {
    pub(crate) store: Arc<dyn XenStore>,
    pub(crate) grants: Arc<dyn GrantMap>,
    pub(crate) evtchn: Arc<dyn EventChannels>,
    pub(crate) options: BackendOptions,
    pub(crate) registry: Arc<Registry>,
    pub(crate) loops: Arc<Loops>,
    pub(crate) log: Log,
    pub(crate) failures: Sender<(StreamId, String)>,
    pub(crate) control_wake: Arc<WakeFd>,
    /// After a crash nothing is written to xenstore any more.
    pub(crate) crashed: bool,
    /// Last state per device, for [`crate::Backend::device_state`].
    pub(crate) states: Arc<std::sync::Mutex<std::collections::BTreeMap<DeviceKey, u32>>>,
}

/// The xenstore watch token of a device's frontend state.
pub(crate) fn fe_token(key: DeviceKey) -> String {
    format!("fe/{}/{}", key.fe, key.dev)
}

/// Parses a token made by [`fe_token`].
pub(crate) fn parse_fe_token(token: &str) -> Option<DeviceKey> {
    let mut it = token.strip_prefix("fe/")?.split('/');
    let fe = it.next()?.parse().ok()?;
    let dev = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some(DeviceKey { fe, dev })
}

/// One device handler.
pub(crate) struct DeviceHandler {
    pub(crate) key: DeviceKey,
    be_path: String,
    fe_path: String,
    be_state: u32,
    fe_state: u32,
    streams: Vec<StreamHandle>,
}

fn parse_state(v: &str) -> Option<u32> {
    v.trim().parse().ok()
}

impl DeviceHandler {
    /// Creates the handler (writing the initial states) and watches the frontend state.
    pub(crate) fn create(
        env: &DeviceEnv,
        key: DeviceKey,
        be_path: String,
        fe_path: String,
    ) -> Self {
        let mut h = DeviceHandler {
            key,
            be_path,
            fe_path,
            be_state: UNKNOWN,
            fe_state: UNKNOWN,
            streams: Vec::new(),
        };
        env.log.dev(
            Level::Info,
            key,
            LogWhat::DeviceAdded {
                frontend: h.fe_path.clone(),
            },
        );
        let current = match env.store.read(&h.be_state_path()) {
            Ok(v) => v.as_deref().and_then(parse_state),
            Err(e) => {
                env.log
                    .dev(Level::Error, key, LogWhat::Message(e.to_string()));
                None
            }
        };
        match current {
            Some(s) if s != CLOSED => {
                h.be_state = s;
                h.close(env, INITIALISING);
            }
            Some(s) => {
                h.be_state = s;
                h.set_state(env, INITIALISING);
            }
            None => h.set_state(env, INITIALISING),
        }
        if let Err(e) = env.store.watch(&h.fe_state_path(), &fe_token(key)) {
            env.log.dev(
                Level::Error,
                key,
                LogWhat::Message(format!("cannot watch the frontend state: {e}")),
            );
        }
        h
    }

    fn be_state_path(&self) -> String {
        format!("{}/state", self.be_path)
    }

    fn fe_state_path(&self) -> String {
        format!("{}/state", self.fe_path)
    }

    fn set_state(&mut self, env: &DeviceEnv, state: u32) {
        if state == self.be_state {
            return;
        }
        self.be_state = state;
        crate::media::lock(&env.states).insert(self.key, state);
        if env.crashed {
            return;
        }
        let path = self.be_state_path();
        let value = state.to_string();
        let mut written = false;
        let res = env.store.transaction(&mut |t: &dyn StoreOps| {
            written = false;
            if t.read(&path)?.is_some() {
                t.write(&path, &value)?;
                written = true;
            }
            Ok(())
        });
        match res {
            Ok(()) if written => env
                .log
                .dev(Level::Info, self.key, LogWhat::StateWritten(state)),
            Ok(()) => env
                .log
                .dev(Level::Warn, self.key, LogWhat::StateNotWritten(state)),
            Err(e) => env.log.dev(
                Level::Error,
                self.key,
                LogWhat::Message(format!("writing backend state {state}: {e}")),
            ),
        }
    }

    /// libxenbe's `close(stateAfterClose)`.
    fn close(&mut self, env: &DeviceEnv, after: u32) {
        if self.be_state != CLOSED {
            self.set_state(env, CLOSING);
        }
        self.release(env);
        self.set_state(env, CLOSED);
        self.set_state(env, after);
    }

    /// Stops every stream worker; mappings and ports go with them.
    pub(crate) fn release(&mut self, env: &DeviceEnv) {
        if self.streams.is_empty() {
            return;
        }
        for s in self.streams.drain(..) {
            s.stop();
        }
        env.log.dev(Level::Info, self.key, LogWhat::Released);
    }

    /// An error of a stream or of the bind: close to Closed.
    pub(crate) fn on_error(&mut self, env: &DeviceEnv, what: LogWhat) {
        env.log.dev(Level::Error, self.key, what);
        self.close(env, CLOSED);
    }

    /// Whether the stream belongs to a live worker of this handler.
    pub(crate) fn has_stream(&self, id: StreamId) -> bool {
        self.streams.iter().any(|s| s.id == id)
    }

    /// The frontend state watch fired.
    pub(crate) fn frontend_state_changed(&mut self, env: &DeviceEnv) {
        let raw = match env.store.read(&self.fe_state_path()) {
            Ok(Some(v)) => v,
            Ok(None) => return,
            Err(e) => {
                env.log
                    .dev(Level::Error, self.key, LogWhat::Message(e.to_string()));
                return;
            }
        };
        let Some(state) = parse_state(&raw) else {
            self.on_error(
                env,
                LogWhat::Message(format!(
                    "{}: invalid frontend state {raw:?}",
                    self.fe_state_path()
                )),
            );
            return;
        };
        if state == self.fe_state {
            return;
        }
        self.fe_state = state;
        env.log
            .dev(Level::Info, self.key, LogWhat::FrontendState(state));
        match state {
            INITIALISING => {
                if self.be_state == CONNECTED {
                    env.log.dev(
                        Level::Warn,
                        self.key,
                        LogWhat::Message("frontend restarted".to_owned()),
                    );
                    self.close(env, INIT_WAIT);
                }
                if self.be_state == INITIALISING || self.be_state == CLOSED {
                    self.set_state(env, INIT_WAIT);
                }
            }
            INITIALISED | CONNECTED
                if self.be_state == INITIALISING || self.be_state == INIT_WAIT =>
            {
                match self.bind(env) {
                    Ok(()) => self.set_state(env, CONNECTED),
                    Err(e) => self.on_error(env, LogWhat::BindFailed(e.to_string())),
                }
            }
            CLOSING | CLOSED if self.be_state == INITIALISED || self.be_state == CONNECTED => {
                self.close(env, INIT_WAIT);
            }
            _ => {}
        }
    }

    /// Something below the backend directory changed: look at the backend state.
    pub(crate) fn backend_state_changed(&mut self, env: &DeviceEnv) {
        let raw = match env.store.read(&self.be_state_path()) {
            Ok(Some(v)) => v,
            Ok(None) => return,
            Err(e) => {
                env.log
                    .dev(Level::Error, self.key, LogWhat::Message(e.to_string()));
                return;
            }
        };
        let Some(state) = parse_state(&raw) else {
            env.log.dev(
                Level::Warn,
                self.key,
                LogWhat::Message(format!(
                    "{}: invalid backend state {raw:?} ignored",
                    self.be_state_path()
                )),
            );
            return;
        };
        if state == self.be_state {
            return;
        }
        self.be_state = state;
        crate::media::lock(&env.states).insert(self.key, state);
        env.log
            .dev(Level::Info, self.key, LogWhat::BackendStateExternal(state));
        if state == CLOSING || state == CLOSED {
            self.close(env, CLOSED);
        } else if state == INITIALISING {
            self.set_state(env, INIT_WAIT);
        }
    }

    /// Backend shutdown: libxenbe's `stop()` = `close(Closed)`, then stop watching.
    pub(crate) fn shutdown(&mut self, env: &DeviceEnv) {
        self.close(env, CLOSED);
        let _ = env
            .store
            .unwatch(&self.fe_state_path(), &fe_token(self.key));
    }

    /// The device directory disappeared: release without writing.
    pub(crate) fn remove(&mut self, env: &DeviceEnv) {
        self.release(env);
        crate::media::lock(&env.states).remove(&self.key);
        if !env.crashed {
            let _ = env
                .store
                .unwatch(&self.fe_state_path(), &fe_token(self.key));
        }
        env.log.dev(Level::Info, self.key, LogWhat::DeviceRemoved);
    }

    fn read_key(env: &DeviceEnv, path: String) -> Result<String, BindError> {
        env.store.read(&path)?.ok_or(BindError::MissingKey { path })
    }

    fn read_u32(env: &DeviceEnv, path: String) -> Result<u32, BindError> {
        let v = Self::read_key(env, path.clone())?;
        v.trim()
            .parse()
            .map_err(|_| BindError::BadKey { path, value: v })
    }

    fn setup_for(env: &DeviceEnv, id: StreamId, unique_id: Option<&str>) -> StreamSetup {
        let o = &env.options;
        let defaults = StreamSetup {
            wav: o.wav_dir.is_some(),
            loop_out: None,
            capture: o.capture.clone(),
        };
        let mut s = setup_from_unique_id(unique_id, &defaults);
        if let Some(explicit) = o.stream_setups.get(&id) {
            s = explicit.clone();
        }
        for (a, b) in &o.loopbacks {
            let name = format!("{a}->{b}");
            if *a == id {
                s.loop_out = Some(name.clone());
            }
            if *b == id {
                s.capture = CaptureSource::Loop(name);
            }
        }
        s
    }

    /// snd_be's `onBind`: every stream of the card, in card order.
    fn bind(&mut self, env: &DeviceEnv) -> Result<(), BindError> {
        let src = StoreConfigSource::new(env.store.as_ref(), &self.fe_path);
        let card = parse_card(&src).map_err(|source| BindError::Config {
            path: self.fe_path.clone(),
            source,
        })?;
        let fe = self.key.fe;
        let mut handles = Vec::new();
        for entry in card.streams() {
            let id = StreamId::new(fe, self.key.dev, entry.device, entry.index);
            let sp = format!("{}/{}", self.fe_path, entry.path);
            let unique_id = env.store.read(&format!("{sp}/unique-id"))?;
            if env.options.require_unique_id && unique_id.is_none() {
                return Err(BindError::MissingKey {
                    path: format!("{sp}/unique-id"),
                });
            }
            let ring_ref = Self::read_u32(env, format!("{sp}/ring-ref"))?;
            let chn = Self::read_u32(env, format!("{sp}/event-channel"))?;
            let evt_ref = Self::read_u32(env, format!("{sp}/evt-ring-ref"))?;
            let evt_chn = Self::read_u32(env, format!("{sp}/evt-event-channel"))?;
            let ring_mem = env
                .grants
                .map(fe, &[ring_ref])
                .map_err(|source| BindError::Map {
                    what: "ring-ref",
                    stream: id,
                    source,
                })?;
            let evt_mem = env
                .grants
                .map(fe, &[evt_ref])
                .map_err(|source| BindError::Map {
                    what: "evt-ring-ref",
                    stream: id,
                    source,
                })?;
            let handle = env.evtchn.open().map_err(|source| BindError::Evtchn {
                what: "open",
                stream: id,
                source,
            })?;
            // snd_be binds the event port first, then the request port.
            let evt_port = handle
                .bind_interdomain(fe, Port(evt_chn))
                .map_err(|source| BindError::Evtchn {
                    what: "evt-event-channel",
                    stream: id,
                    source,
                })?;
            let req_port =
                handle
                    .bind_interdomain(fe, Port(chn))
                    .map_err(|source| BindError::Evtchn {
                        what: "event-channel",
                        stream: id,
                        source,
                    })?;
            let ring = BackRing::attach(ring_mem)
                .map_err(|source| BindError::Ring { stream: id, source })?;
            let mut events = EventWriter::attach(evt_mem)
                .map_err(|source| BindError::Event { stream: id, source })?;
            events
                .reset()
                .map_err(|source| BindError::Event { stream: id, source })?;
            let config = match &entry.config {
                Ok(c) => Ok(c.clone()),
                Err(e) => {
                    env.log.stream(
                        Level::Warn,
                        id,
                        LogWhat::Message(format!(
                            "configuration unusable, every OPEN and query will fail: {e}"
                        )),
                    );
                    Err(e.to_string())
                }
            };
            let setup = Self::setup_for(env, id, unique_id.as_deref());
            let ctx = StreamContext {
                id,
                fe,
                config,
                setup,
                grants: Arc::clone(&env.grants),
                clock: env.options.clock.clone(),
                volume: env.options.volume,
                pacing: env.options.write_pacing,
                wav_dir: env.options.wav_dir.clone(),
                shared: env.registry.get(id),
                loops: Arc::clone(&env.loops),
                log: env.log.clone(),
                failures: env.failures.clone(),
                control_wake: Arc::clone(&env.control_wake),
            };
            let rings = BoundRings {
                ring,
                events,
                evtchn: handle,
                req_port,
                evt_port,
            };
            let h = stream::spawn(ctx, rings)
                .map_err(|source| BindError::Spawn { stream: id, source })?;
            handles.push(h);
        }
        env.log.dev(
            Level::Info,
            self.key,
            LogWhat::Bound {
                streams: handles.len(),
            },
        );
        self.streams = handles;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fe_tokens_round_trip() {
        let k = DeviceKey { fe: 7, dev: 3 };
        assert_eq!(parse_fe_token(&fe_token(k)), Some(k));
        assert_eq!(parse_fe_token("vsnd"), None);
        assert_eq!(parse_fe_token("fe/1/2/3"), None);
        assert_eq!(parse_fe_token("fe/x/2"), None);
    }
}
