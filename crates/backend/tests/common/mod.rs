//! Test harness: a toolstack, a minimal hand-written frontend (xenstore writes + `FrontRing` /
//! `EventReader` over pages shared through the fake) and a log collector.
#![allow(dead_code)]

use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sndif::layout::{MSG_SIZE, RING_SLOTS, RING_SLOT_SIZE};
use sndif::wire::{HwParam, Interval, OpenParams, RwParams};
use sndif::{
    data_pages, dir_pages, write_directory, Event, EventReader, FormatSet, FrontRing, PcmFormat,
    Request, RequestBody, Response, RingError, SharedMem, TriggerType,
};
use xen_access::fake::{wait_readable, FakeDomain, FakeXen, ToolstackDevice};
use xen_access::{
    DomId, EvtchnHandle, GrantShare, GrantedPages, Port, StoreError, StoreOps, XenStore,
};
use xen_snd_backend::{
    Backend, BackendOptions, Clock, DeviceKey, LogRecord, LogWhat, ManualClock, Services,
};

/// Bound for every wait.
pub const T: Duration = Duration::from_secs(10);

pub fn be_path(fe: DomId, dev: u32) -> String {
    format!("/local/domain/0/backend/vsnd/{fe}/{dev}")
}

pub fn fe_path(fe: DomId, dev: u32) -> String {
    format!("/local/domain/{fe}/device/vsnd/{dev}")
}

/// A card with a playback stream `0/0` and a capture stream `0/1`, S16_LE/48000/stereo,
/// buffer-size 65536.
pub fn basic_config() -> Vec<(&'static str, &'static str)> {
    vec![
        ("short-name", "Test"),
        ("sample-formats", "s16_le,float_le"),
        ("sample-rates", "44100,48000"),
        ("channels-min", "1"),
        ("channels-max", "2"),
        ("buffer-size", "65536"),
        ("0/name", "dev0"),
        ("0/0/type", "p"),
        ("0/0/unique-id", "pulse"),
        ("0/1/type", "c"),
        ("0/1/unique-id", "pattern"),
    ]
}

/// What libxl does for `vsnd = [...]` (`FakeXen::add_device`): both directories in one
/// transaction, with the permissions of `libxl__device_generic_add`.
pub fn toolstack_add(
    world: &Arc<FakeXen>,
    fe: DomId,
    dev: u32,
    be_state: Option<&str>,
    config: &[(&str, &str)],
) {
    let device = ToolstackDevice {
        frontend: fe,
        backend: 0,
        kind: "vsnd",
        dev,
        backend_state: be_state,
    };
    world
        .add_device(&device, config)
        .expect("toolstack transaction");
}

/// Collects the backend's log records.
pub struct Records {
    rx: Receiver<LogRecord>,
    seen: Vec<LogRecord>,
}

impl Records {
    /// Waits for the next record matching `pred`; returns it with everything before it.
    pub fn until(&mut self, what: &str, pred: impl Fn(&LogRecord) -> bool) -> Vec<LogRecord> {
        let deadline = Instant::now() + T;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(r) => {
                    self.seen.push(r.clone());
                    let hit = pred(&r);
                    got.push(r);
                    if hit {
                        return got;
                    }
                }
                Err(_) => panic!(
                    "timed out waiting for {what}; records so far:\n{}",
                    got.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// Collects the next `n` states written for `key`.
    pub fn states(&mut self, key: DeviceKey, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        while out.len() < n {
            let recs = self.until("a state write", |r| {
                r.device == Some(key) && matches!(r.what, LogWhat::StateWritten(_))
            });
            for r in recs {
                if let (Some(k), LogWhat::StateWritten(s)) = (r.device, &r.what) {
                    if k == key {
                        out.push(*s);
                    }
                }
            }
        }
        out
    }

    /// Every record received so far that has not been returned by `until`.
    pub fn drain_now(&mut self) -> Vec<LogRecord> {
        let mut v = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            self.seen.push(r.clone());
            v.push(r);
        }
        v
    }
}

/// A world with dom0 (backend) and a guest.
pub struct Env {
    pub world: Arc<FakeXen>,
    pub clock: ManualClock,
}

impl Env {
    pub fn new() -> Env {
        let world = FakeXen::new();
        world.domain(0);
        Env {
            world,
            clock: ManualClock::new(),
        }
    }

    pub fn services(&self) -> Services {
        Services::fake(&self.world.domain(0))
    }

    /// Options with the manual clock and a logger feeding the returned collector.
    pub fn options(&self) -> (BackendOptions, Records) {
        let (tx, rx) = channel();
        let opts = BackendOptions {
            clock: Clock::manual(&self.clock),
            logger: Some(Arc::new(move |r: &LogRecord| {
                let _ = tx.send(r.clone());
            })),
            ..BackendOptions::default()
        };
        (
            opts,
            Records {
                rx,
                seen: Vec::new(),
            },
        )
    }

    pub fn start(&self, opts: BackendOptions) -> Backend {
        Backend::start(self.services(), opts).expect("backend start")
    }
}

/// The frontend side of one card.
pub struct Fe {
    pub dom: FakeDomain,
    pub store: Arc<dyn XenStore>,
    pub fe: DomId,
    pub dev: u32,
    pub fe_path: String,
    pub be_path: String,
    pub streams: Vec<FeStream>,
}

impl Fe {
    pub fn new(world: &Arc<FakeXen>, fe: DomId, dev: u32) -> Fe {
        let dom = world.domain(fe);
        let store = dom.store();
        let be_path = be_path(fe, dev);
        store
            .watch(&format!("{be_path}/state"), "be-state")
            .expect("watch be state");
        Fe {
            dom,
            store,
            fe,
            dev,
            fe_path: fe_path(fe, dev),
            be_path,
            streams: Vec::new(),
        }
    }

    pub fn key(&self) -> DeviceKey {
        DeviceKey {
            fe: self.fe,
            dev: self.dev,
        }
    }

    pub fn set_state(&self, s: u32) {
        self.store
            .write(&format!("{}/state", self.fe_path), &s.to_string())
            .expect("write fe state");
    }

    pub fn be_state(&self) -> Option<u32> {
        self.store
            .read(&format!("{}/state", self.be_path))
            .expect("read be state")
            .and_then(|v| v.parse().ok())
    }

    /// Waits until the backend state reads `s` (on the watch fd, bounded).
    pub fn wait_be_state(&self, s: u32) {
        let deadline = Instant::now() + T;
        loop {
            while self.store.take_watch_event().is_some() {}
            if self.be_state() == Some(s) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "backend state never became {s} (is {:?})",
                self.be_state()
            );
            wait_readable(self.store.watch_fd(), left);
        }
    }

    /// Allocates rings and ports for the given stream paths (`"0/0"`) and publishes the four
    /// keys of each in one transaction.
    pub fn publish(&mut self, paths: &[&str]) {
        let share = self.dom.grant_share();
        let evtchn = self.dom.event_channels();
        let mut streams = Vec::new();
        let mut keys: Vec<(String, String)> = Vec::new();
        for p in paths {
            let ring_pages = share.share(0, 1).expect("share ring");
            let evt_pages = share.share(0, 1).expect("share event page");
            let ring = FrontRing::init(ring_pages.mem.clone()).expect("ring init");
            let events = EventReader::init(evt_pages.mem.clone()).expect("event init");
            let h = evtchn.open().expect("evtchn open");
            let req_port = h.bind_unbound(0).expect("bind unbound");
            let evt_port = h.bind_unbound(0).expect("bind unbound");
            let sp = format!("{}/{p}", self.fe_path);
            keys.push((format!("{sp}/ring-ref"), ring_pages.grefs[0].to_string()));
            keys.push((format!("{sp}/event-channel"), req_port.0.to_string()));
            keys.push((format!("{sp}/evt-ring-ref"), evt_pages.grefs[0].to_string()));
            keys.push((format!("{sp}/evt-event-channel"), evt_port.0.to_string()));
            streams.push(FeStream {
                ring,
                events,
                evtchn: h,
                req_port,
                evt_port,
                ring_pages,
                evt_pages,
                grants: Arc::clone(&share),
                next_id: 0,
                buffer: None,
            });
        }
        self.store
            .transaction(&mut |t: &dyn StoreOps| {
                for (k, v) in &keys {
                    t.write(k, v)?;
                }
                Ok(())
            })
            .expect("publish transaction");
        self.streams = streams;
    }

    /// The §2.7 handshake: wait InitWait, publish, Initialised, wait Connected, Connected.
    pub fn connect(&mut self, paths: &[&str]) {
        self.wait_be_state(2);
        self.publish(paths);
        self.set_state(3);
        self.wait_be_state(4);
        self.set_state(4);
    }

    pub fn s(&mut self, i: usize) -> &mut FeStream {
        &mut self.streams[i]
    }
}

/// A PCM buffer shared with the backend, with its page directory.
pub struct FeBuffer {
    pub dir: GrantedPages,
    pub data: GrantedPages,
    pub buffer_sz: u32,
}

impl FeBuffer {
    pub fn gref_directory(&self) -> u32 {
        self.dir.grefs[0]
    }
}

/// The frontend side of one stream.
pub struct FeStream {
    pub ring: FrontRing,
    pub events: EventReader,
    pub evtchn: Box<dyn EvtchnHandle>,
    pub req_port: Port,
    pub evt_port: Port,
    pub ring_pages: GrantedPages,
    pub evt_pages: GrantedPages,
    pub grants: Arc<dyn GrantShare>,
    pub next_id: u16,
    pub buffer: Option<FeBuffer>,
}

impl FeStream {
    /// Pushes, publishes and (if needed) notifies; returns the id.
    pub fn send(&mut self, body: RequestBody) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.ring
            .push_request(&Request { id, body })
            .expect("push request");
        if self.ring.publish().expect("publish") {
            self.evtchn.notify(self.req_port).expect("notify");
        }
        id
    }

    /// Like `send`, then overwrites the operation byte of the slot before publishing.
    pub fn send_raw_op(&mut self, body: RequestBody, op_code: u8) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.ring
            .push_request(&Request { id, body })
            .expect("push request");
        let idx = self.ring.req_prod_pvt().wrapping_sub(1);
        let off = RING_SLOTS + usize::try_from(idx & 31).expect("small") * RING_SLOT_SIZE + 2;
        self.ring.mem().write_bytes(off, &[op_code]).expect("poke");
        if self.ring.publish().expect("publish") {
            self.evtchn.notify(self.req_port).expect("notify");
        }
        id
    }

    /// The raw 64 bytes of response slot `index`.
    pub fn raw_slot(&self, index: u32) -> [u8; MSG_SIZE] {
        let mut b = [0u8; MSG_SIZE];
        let off = RING_SLOTS + usize::try_from(index & 31).expect("small") * RING_SLOT_SIZE;
        self.ring.mem().read_bytes(off, &mut b).expect("read slot");
        b
    }

    fn drain_ports(&self) {
        while let Some(p) = self.evtchn.pending().expect("pending") {
            self.evtchn.unmask(p).expect("unmask");
        }
    }

    /// Waits up to `timeout` for the next response.
    pub fn wait_response(&mut self, timeout: Duration) -> Option<Result<Response, RingError>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.ring.take_response() {
                Ok(Some(r)) => return Some(Ok(r)),
                Err(e) => return Some(Err(e)),
                Ok(None) => {}
            }
            match self.ring.rearm() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Some(Err(e)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(self.evtchn.fd(), left) {
                return None;
            }
            self.drain_ports();
        }
    }

    /// Whether a response is already published (without waiting).
    pub fn no_response_now(&mut self) -> bool {
        self.wait_response(Duration::ZERO).is_none()
    }

    /// Sends and waits for the matching response.
    pub fn request(&mut self, body: RequestBody) -> Response {
        let id = self.send(body);
        let r = self
            .wait_response(T)
            .unwrap_or_else(|| panic!("no response to request {id} {body:?}"))
            .expect("valid response");
        assert_eq!(r.id, id, "response id");
        assert_eq!(r.operation, body.operation(), "response operation");
        r
    }

    /// Waits up to `timeout` for the next event.
    pub fn wait_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.take().expect("event take") {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(self.evtchn.fd(), left) {
                return None;
            }
            self.drain_ports();
        }
    }

    /// Allocates and shares a PCM buffer with its directory.
    pub fn alloc_buffer(&mut self, buffer_sz: u32) -> u32 {
        let n = data_pages(buffer_sz);
        let d = dir_pages(n);
        let data = self.grants.share(0, n).expect("share data");
        let dir = self.grants.share(0, d).expect("share directory");
        let views: Vec<SharedMem> = (0..d).map(|i| dir.mem.page(i).expect("page")).collect();
        write_directory(&views, &dir.grefs, &data.grefs).expect("write directory");
        let b = FeBuffer {
            dir,
            data,
            buffer_sz,
        };
        let g = b.gref_directory();
        self.buffer = Some(b);
        g
    }

    pub fn open(
        &mut self,
        format: PcmFormat,
        rate: u32,
        channels: u8,
        buffer_sz: u32,
        period_sz: u32,
    ) -> Response {
        let gref_directory = self.alloc_buffer(buffer_sz);
        self.request(RequestBody::Open(OpenParams {
            rate,
            format,
            channels,
            buffer_sz,
            gref_directory,
            period_sz,
        }))
    }

    pub fn buf(&self) -> &SharedMem {
        &self.buffer.as_ref().expect("buffer").data.mem
    }

    pub fn write(&mut self, offset: u32, data: &[u8]) -> Response {
        self.buf()
            .write_bytes(usize::try_from(offset).expect("offset"), data)
            .expect("fill buffer");
        self.request(RequestBody::Write(RwParams {
            offset,
            length: u32::try_from(data.len()).expect("len"),
        }))
    }

    pub fn read(&mut self, offset: u32, len: u32) -> (Response, Vec<u8>) {
        let r = self.request(RequestBody::Read(RwParams {
            offset,
            length: len,
        }));
        let mut out = vec![0u8; usize::try_from(len).expect("len")];
        self.buf()
            .read_bytes(usize::try_from(offset).expect("offset"), &mut out)
            .expect("read buffer");
        (r, out)
    }

    pub fn trigger(&mut self, t: TriggerType) -> Response {
        self.request(RequestBody::Trigger(t))
    }
}

/// The full configuration space for HW_PARAM_QUERY.
pub fn full_space() -> HwParam {
    HwParam {
        formats: FormatSet(FormatSet::VALID_BITS),
        rates: Interval::new(1, u32::MAX),
        channels: Interval::new(1, u32::MAX),
        buffer: Interval::new(1, u32::MAX),
        period: Interval::new(1, u32::MAX),
    }
}

/// A started backend with one connected card (`basic_config`), streams 0/0 and 0/1.
pub struct Connected {
    pub env: Env,
    pub backend: Backend,
    pub records: Records,
    pub fe: Fe,
}

pub fn connected_with(
    opts_fn: impl FnOnce(&mut BackendOptions),
    config: &[(&str, &str)],
    paths: &[&str],
) -> Connected {
    let env = Env::new();
    let (mut opts, records) = env.options();
    opts_fn(&mut opts);
    toolstack_add(&env.world, 1, 0, Some("1"), config);
    let mut fe = Fe::new(&env.world, 1, 0);
    let backend = env.start(opts);
    fe.connect(paths);
    Connected {
        env,
        backend,
        records,
        fe,
    }
}

pub fn connected() -> Connected {
    connected_with(|_| {}, &basic_config(), &["0/0", "0/1"])
}

/// Maps a store error to a string (for tests asserting on permissions).
pub fn err_str(e: StoreError) -> String {
    e.to_string()
}
