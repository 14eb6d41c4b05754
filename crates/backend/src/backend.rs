//! The backend: discovery of vsnd devices below `/local/domain/<own>/backend/vsnd` and one
//! control thread that runs every device handler (libxenbe's `BackendBase`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use xen_access::{EventChannels, GrantMap, StoreError, XenStore};

use crate::clock::Clock;
use crate::device::{parse_fe_token, DeviceEnv, DeviceHandler};
use crate::ids::{DeviceKey, StreamId};
use crate::log::{Level, Log, LogWhat, Logger};
use crate::media::{lock, CaptureSource, Loops, Registry, StreamSetup, StreamStats};
use crate::misbehave::Misbehave;
use crate::stream::WritePacing;
use crate::wake::{poll_readable, WakeFd};

/// The watch token of the backend root directory.
const ROOT_TOKEN: &str = "vsnd-backend";

/// The Xen services a backend runs on (real devices or `xen_access::fake`).
#[derive(Clone)]
pub struct Services {
    /// A xenstore connection of the backend's domain.
    pub store: Arc<dyn XenStore>,
    /// Grant mapping.
    pub grants: Arc<dyn GrantMap>,
    /// Event channels.
    pub evtchn: Arc<dyn EventChannels>,
}

impl Services {
    /// The services of a domain of the in-memory fake (`xen_access::fake`), for tests.
    pub fn fake(domain: &xen_access::fake::FakeDomain) -> Services {
        Services {
            store: domain.store(),
            grants: domain.grant_map(),
            evtchn: domain.event_channels(),
        }
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Services { .. }")
    }
}

/// How the backend behaves.
#[derive(Clone)]
pub struct BackendOptions {
    /// The stream clock (real, scaled, manual).
    pub clock: Clock,
    /// Directory for WAV files (one per playback stream); none when `None`.
    pub wav_dir: Option<PathBuf>,
    /// Default capture source.
    pub capture: CaptureSource,
    /// Loopbacks: playback stream → capture stream (take precedence over `unique-id`).
    pub loopbacks: Vec<(StreamId, StreamId)>,
    /// Explicit per-stream setups (take precedence over `unique-id`; loopbacks still apply).
    pub stream_setups: BTreeMap<StreamId, StreamSetup>,
    /// Serve SET_VOLUME/GET_VOLUME/MUTE/UNMUTE (snd_be answers `-EINVAL`).
    pub volume: bool,
    /// Refuse to bind a stream without `unique-id` (snd_be does).
    pub require_unique_id: bool,
    /// When a WRITE is answered.
    pub write_pacing: WritePacing,
    /// Where records go.
    pub logger: Option<Logger>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            clock: Clock::real(),
            wav_dir: None,
            capture: CaptureSource::Pattern,
            loopbacks: Vec::new(),
            stream_setups: BTreeMap::new(),
            volume: false,
            require_unique_id: true,
            write_pacing: WritePacing::Queue,
            logger: None,
        }
    }
}

impl std::fmt::Debug for BackendOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendOptions")
            .field("clock", &self.clock)
            .field("wav_dir", &self.wav_dir)
            .field("capture", &self.capture)
            .field("loopbacks", &self.loopbacks)
            .field("stream_setups", &self.stream_setups)
            .field("volume", &self.volume)
            .field("require_unique_id", &self.require_unique_id)
            .field("write_pacing", &self.write_pacing)
            .field("logger", &self.logger.is_some())
            .finish()
    }
}

/// Errors of the backend as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A xenstore operation needed to start or run failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A thread or an eventfd could not be created.
    #[error("{what}: {source}")]
    Os {
        /// What was being created.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The control thread panicked.
    #[error("the backend control thread panicked")]
    Panicked,
}

enum Ctl {
    Shutdown,
    Crash,
}

/// A running backend. Dropping it shuts it down like [`Backend::shutdown`].
pub struct Backend {
    registry: Arc<Registry>,
    states: Arc<Mutex<BTreeMap<DeviceKey, u32>>>,
    ctl_tx: Sender<Ctl>,
    wake: Arc<WakeFd>,
    thread: Option<JoinHandle<Result<(), BackendError>>>,
    own_domid: u16,
    clock: Clock,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("own_domid", &self.own_domid)
            .finish()
    }
}

impl Backend {
    /// Reads the own domain id, watches `/local/domain/<own>/backend/vsnd` and starts the
    /// control thread. Devices present already are picked up by the watch's initial firing.
    pub fn start(services: Services, options: BackendOptions) -> Result<Backend, BackendError> {
        let own = services.store.own_domid()?;
        let base = format!("/local/domain/{own}/backend/vsnd");
        let log = Log::new(options.logger.clone());
        let wake = Arc::new(WakeFd::new().map_err(|source| BackendError::Os {
            what: "creating the control eventfd",
            source,
        })?);
        services.store.watch(&base, ROOT_TOKEN)?;
        let (ctl_tx, ctl_rx) = channel();
        let (fail_tx, fail_rx) = channel();
        let registry = Arc::new(Registry::default());
        let states = Arc::new(Mutex::new(BTreeMap::new()));
        let clock = options.clock.clone();
        log.emit(
            Level::Info,
            None,
            None,
            LogWhat::Started { path: base.clone() },
        );
        let env = DeviceEnv {
            store: Arc::clone(&services.store),
            grants: Arc::clone(&services.grants),
            evtchn: Arc::clone(&services.evtchn),
            options,
            registry: Arc::clone(&registry),
            loops: Arc::new(Loops::default()),
            log,
            failures: fail_tx,
            control_wake: Arc::clone(&wake),
            crashed: false,
            states: Arc::clone(&states),
        };
        let control = Control {
            env,
            base,
            devices: BTreeMap::new(),
            ctl_rx,
            fail_rx,
            wake: Arc::clone(&wake),
        };
        let thread = std::thread::Builder::new()
            .name("vsnd-backend".to_owned())
            .spawn(move || control.run())
            .map_err(|source| BackendError::Os {
                what: "starting the control thread",
                source,
            })?;
        Ok(Backend {
            registry,
            states,
            ctl_tx,
            wake,
            thread: Some(thread),
            own_domid: own,
            clock,
        })
    }

    /// The backend's own domain id.
    pub fn own_domid(&self) -> u16 {
        self.own_domid
    }

    /// The stream clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Statistics of a stream that was bound at least once (or had a misbehaviour set).
    pub fn stream_stats(&self, id: StreamId) -> Option<StreamStats> {
        self.registry.find(id).map(|s| s.snapshot())
    }

    /// Statistics of every stream seen, in id order.
    pub fn all_stats(&self) -> Vec<StreamStats> {
        self.registry.all().iter().map(|s| s.snapshot()).collect()
    }

    /// One line per stream: `sha256 <fe>/<dev>/<pcm>/<stream> <bytes> <hex>`.
    pub fn sha256_report(&self) -> String {
        let mut out = String::new();
        for s in self.all_stats() {
            out.push_str(&format!(
                "sha256 {} {} {}\n",
                s.id, s.bytes_received, s.sha256_hex
            ));
        }
        out
    }

    /// Sets a stream's misbehaviour (takes effect at once if the stream is bound, else at its
    /// next bind).
    pub fn set_misbehave(&self, id: StreamId, m: Misbehave) {
        let shared = self.registry.get(id);
        let waker = {
            let mut g = shared.lock();
            g.stats.misbehave = m;
            g.waker.clone()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The misbehaviour in force for a stream.
    pub fn misbehave(&self, id: StreamId) -> Misbehave {
        self.registry
            .find(id)
            .map_or(Misbehave::None, |s| s.lock().stats.misbehave)
    }

    /// The backend state last written or seen for a device, if it has a handler.
    pub fn device_state(&self, key: DeviceKey) -> Option<u32> {
        lock(&self.states).get(&key).copied()
    }

    /// Devices with a handler.
    pub fn devices(&self) -> Vec<DeviceKey> {
        lock(&self.states).keys().copied().collect()
    }

    fn stop_with(&mut self, c: Ctl) -> Result<(), BackendError> {
        let _ = self.ctl_tx.send(c);
        self.wake.wake();
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| BackendError::Panicked)?,
            None => Ok(()),
        }
    }

    /// Stops like snd_be on SIGTERM: every device is closed (`5 → 6`), workers stop, mappings
    /// and ports are released.
    pub fn shutdown(mut self) -> Result<(), BackendError> {
        self.stop()
    }

    /// Like [`Backend::shutdown`], keeping the object so that its statistics can still be read.
    /// Calling it again does nothing.
    pub fn stop(&mut self) -> Result<(), BackendError> {
        self.stop_with(Ctl::Shutdown)
    }

    /// Dies like a killed process: every mapping and port is dropped, xenstore is not touched
    /// (backend states stay as they were, e.g. Connected).
    pub fn crash(mut self) -> Result<(), BackendError> {
        self.stop_with(Ctl::Crash)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.stop_with(Ctl::Shutdown);
    }
}

struct Control {
    env: DeviceEnv,
    base: String,
    devices: BTreeMap<DeviceKey, DeviceHandler>,
    ctl_rx: Receiver<Ctl>,
    fail_rx: Receiver<(StreamId, String)>,
    wake: Arc<WakeFd>,
}

impl Control {
    fn run(mut self) -> Result<(), BackendError> {
        let result = self.run_inner();
        if result.is_err() {
            for d in self.devices.values_mut() {
                d.release(&self.env);
            }
        }
        self.env.log.emit(Level::Info, None, None, LogWhat::Stopped);
        result
    }

    fn run_inner(&mut self) -> Result<(), BackendError> {
        loop {
            let fds = [self.env.store.watch_fd(), self.wake.raw_fd()];
            let ready = poll_readable(&fds, None).map_err(|source| BackendError::Os {
                what: "polling the xenstore watch fd",
                source,
            })?;
            if ready.get(1).copied().unwrap_or(false) {
                self.wake.drain();
            }
            if let Ok(c) = self.ctl_rx.try_recv() {
                match c {
                    Ctl::Shutdown => {
                        for d in self.devices.values_mut() {
                            d.shutdown(&self.env);
                        }
                        let _ = self.env.store.unwatch(&self.base, ROOT_TOKEN);
                        return Ok(());
                    }
                    Ctl::Crash => {
                        self.env.crashed = true;
                        for d in self.devices.values_mut() {
                            d.release(&self.env);
                        }
                        self.env.log.emit(Level::Warn, None, None, LogWhat::Crashed);
                        return Ok(());
                    }
                }
            }
            while let Ok((id, msg)) = self.fail_rx.try_recv() {
                if let Some(d) = self.devices.get_mut(&id.device()) {
                    // A report from a worker of an earlier bind is stale.
                    if d.has_stream(id) {
                        d.on_error(&self.env, LogWhat::StreamFailed(msg));
                    }
                }
            }
            let mut taken = 0usize;
            while let Some(ev) = self.env.store.take_watch_event() {
                taken += 1;
                if ev.token == ROOT_TOKEN {
                    self.rescan();
                    for d in self.devices.values_mut() {
                        d.backend_state_changed(&self.env);
                    }
                } else if let Some(key) = parse_fe_token(&ev.token) {
                    if let Some(d) = self.devices.get_mut(&key) {
                        d.frontend_state_changed(&self.env);
                    }
                }
            }
            if ready.first().copied().unwrap_or(false) && taken == 0 {
                // Readable without events: the connection may be gone.
                if let Err(e) = self.env.store.read(&self.base) {
                    if matches!(e, StoreError::Connection { .. }) {
                        for d in self.devices.values_mut() {
                            d.release(&self.env);
                        }
                        return Err(e.into());
                    }
                }
            }
        }
    }

    /// Creates handlers for new device directories and drops those whose directory is gone.
    fn rescan(&mut self) {
        let store = Arc::clone(&self.env.store);
        let mut present: BTreeSet<DeviceKey> = BTreeSet::new();
        let fes = match store.directory(&self.base) {
            Ok(v) => v,
            Err(e) => {
                self.env.log.emit(
                    Level::Error,
                    None,
                    None,
                    LogWhat::Message(format!("listing {}: {e}", self.base)),
                );
                return;
            }
        };
        for fe_name in fes {
            let Ok(fe) = fe_name.parse::<u16>() else {
                continue;
            };
            let fe_dir = format!("{}/{fe_name}", self.base);
            let devs = match store.directory(&fe_dir) {
                Ok(v) => v,
                Err(e) => {
                    self.env.log.emit(
                        Level::Error,
                        None,
                        None,
                        LogWhat::Message(format!("listing {fe_dir}: {e}")),
                    );
                    // Keep what we have below it.
                    present.extend(self.devices.keys().filter(|k| k.fe == fe).copied());
                    continue;
                }
            };
            for dev_name in devs {
                let Ok(dev) = dev_name.parse::<u32>() else {
                    continue;
                };
                let key = DeviceKey { fe, dev };
                present.insert(key);
                if self.devices.contains_key(&key) {
                    continue;
                }
                let be_path = format!("{fe_dir}/{dev_name}");
                match store.read(&format!("{be_path}/frontend")) {
                    Ok(Some(fe_path)) => {
                        let h = DeviceHandler::create(&self.env, key, be_path, fe_path);
                        self.devices.insert(key, h);
                    }
                    Ok(None) => {
                        // The toolstack has not written it yet; the next change retries.
                    }
                    Err(e) => self.env.log.dev(
                        Level::Error,
                        key,
                        LogWhat::Message(format!("reading {be_path}/frontend: {e}")),
                    ),
                }
            }
        }
        let gone: Vec<DeviceKey> = self
            .devices
            .keys()
            .filter(|k| !present.contains(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(mut d) = self.devices.remove(&key) {
                d.remove(&self.env);
            }
        }
    }
}
