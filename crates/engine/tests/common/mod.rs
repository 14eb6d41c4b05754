//! Test helpers: a libxl-like toolstack over the fake xenstore, a scripted backend end of one
//! stream, and bounded waits (no sleeps).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sndif::config::{PcmHw, StreamConfig, StreamKind};
use sndif::event::EventWriter;
use sndif::formats::PcmFormat;
use sndif::pgdir::read_directory;
use sndif::ring::BackRing;
use sndif::shm::SharedMem;
use sndif::wire::{Event, EventKind, Msg, OpenParams, Request, RequestBody, Response};
use xen_access::fake::{wait_readable, FakeDomain, FakeXen};
use xen_access::{Access, DomId, EvtchnHandle, GrantMap, Perm, Port, StoreOps, XenStore};
use xen_snd_engine::{ManualClock, Services, Stream, StreamId, StreamOptions, TransportKeys};

/// The guest (frontend) domain.
pub const FE: DomId = 1;
/// The backend domain.
pub const BE: DomId = 0;

/// A bound for every wait.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn fe_dir(card: u32) -> String {
    format!("/local/domain/{FE}/device/vsnd/{card}")
}

pub fn be_dir(card: u32) -> String {
    format!("/local/domain/{BE}/backend/vsnd/{FE}/{card}")
}

/// The frontend's services.
pub fn fe_services(world: &Arc<FakeXen>) -> Services {
    let d = world.domain(FE);
    Services {
        store: d.store(),
        grants: d.grant_share(),
        events: d.event_channels(),
    }
}

/// Writes a card the way libxl does: backend and frontend directories with their
/// permissions, state 1 on both sides, and the configuration keys `config` (relative to the
/// frontend directory).
pub fn add_card(world: &Arc<FakeXen>, card: u32, config: &[(&str, &str)]) {
    world.domain(BE);
    world.domain(FE);
    let fe = fe_dir(card);
    let be = be_dir(card);
    let w = |p: &str, v: &str| world.write_as(0, p, v).expect("toolstack write");
    w(&format!("{be}/frontend"), &fe);
    w(&format!("{be}/frontend-id"), &FE.to_string());
    w(&format!("{be}/online"), "1");
    w(&format!("{be}/state"), "1");
    w(&format!("{fe}/backend"), &be);
    w(&format!("{fe}/backend-id"), &BE.to_string());
    w(&format!("{fe}/state"), "1");
    for (k, v) in config {
        w(&format!("{fe}/{k}"), v);
    }
    let fe_perms = [
        Perm {
            domid: FE,
            access: Access::None,
        },
        Perm {
            domid: BE,
            access: Access::Read,
        },
    ];
    let be_perms = [
        Perm {
            domid: BE,
            access: Access::None,
        },
        Perm {
            domid: FE,
            access: Access::Read,
        },
    ];
    for (p, _) in world.dump(&fe) {
        world.set_perms_as(0, &p, &fe_perms).expect("fe perms");
    }
    for (p, _) in world.dump(&be) {
        world.set_perms_as(0, &p, &be_perms).expect("be perms");
    }
}

/// A one-device card: playback stream 0/0 and capture stream 0/1, s16_le and float_le, 48 kHz,
/// 1–2 channels, 16 KiB buffers.
pub fn simple_card() -> Vec<(&'static str, &'static str)> {
    vec![
        ("short-name", "VCard"),
        ("sample-rates", "44100,48000"),
        ("sample-formats", "s16_le,float_le"),
        ("buffer-size", "16384"),
        ("0/name", "dev0"),
        ("0/0/type", "p"),
        ("0/0/unique-id", "pulse"),
        ("0/1/type", "c"),
        ("0/1/unique-id", "pulse"),
    ]
}

/// A stream configuration for standalone streams.
pub fn stream_config(kind: StreamKind, buffer_size: u32) -> StreamConfig {
    StreamConfig {
        kind,
        unique_id: Some("test".into()),
        hw: PcmHw {
            formats: [PcmFormat::S16Le, PcmFormat::F32Le].into_iter().collect(),
            rates: vec![44_100, 48_000],
            channels_min: 1,
            channels_max: 2,
            buffer_size,
        },
    }
}

pub fn sid(card_index: u32) -> StreamId {
    StreamId {
        card: 0,
        device: 0,
        stream: card_index,
        card_index,
    }
}

/// Stream options with a manual clock and a short timeout for the blocking helpers.
pub fn manual_options(clock: &Arc<ManualClock>) -> StreamOptions {
    StreamOptions {
        clock: clock.clone(),
        ..StreamOptions::default()
    }
}

/// A standalone frontend stream plus the scripted backend end bound to it.
pub fn standalone_pair(
    world: &Arc<FakeXen>,
    kind: StreamKind,
    buffer_size: u32,
    options: StreamOptions,
) -> (Stream, BackStream) {
    world.domain(BE);
    let services = fe_services(world);
    let stream = Stream::standalone(
        &services,
        BE,
        sid(0),
        &stream_config(kind, buffer_size),
        options,
    )
    .expect("standalone stream");
    let back = BackStream::bind(&world.domain(BE), FE, stream.transport_keys());
    (stream, back)
}

/// Waits (bounded) until the stream's event-channel fd is readable, then services it at
/// `now_ns`. Returns whether the fd became readable.
pub fn pump(stream: &mut Stream, now_ns: u64) -> bool {
    let readable = wait_readable(stream.fd(), WAIT);
    stream.service(now_ns);
    readable
}

/// The backend end of one stream, scripted by the test.
pub struct BackStream {
    pub ring: BackRing,
    pub events: EventWriter,
    pub evtchn: Box<dyn EvtchnHandle>,
    pub req_port: Port,
    pub evt_port: Port,
    pub map: Arc<dyn GrantMap>,
    pub fe: DomId,
    pub buffer: Option<SharedMem>,
    pub event_id: u16,
    pub ring_mem: SharedMem,
    pub evt_mem: SharedMem,
}

impl BackStream {
    /// Maps the stream's pages and binds its ports, as snd_be does at bind time.
    pub fn bind(be: &FakeDomain, fe: DomId, keys: TransportKeys) -> Self {
        let map = be.grant_map();
        let ring_mem = map.map(fe, &[keys.ring_ref]).expect("map ring");
        let evt_mem = map.map(fe, &[keys.evt_ring_ref]).expect("map event page");
        let ring = BackRing::attach(ring_mem.clone()).expect("attach ring");
        let mut events = EventWriter::attach(evt_mem.clone()).expect("attach events");
        events.reset().expect("reset events");
        let evtchn = be.event_channels().open().expect("open evtchn");
        let evt_port = evtchn
            .bind_interdomain(fe, Port(keys.evt_event_channel))
            .expect("bind evt port");
        let req_port = evtchn
            .bind_interdomain(fe, Port(keys.event_channel))
            .expect("bind req port");
        BackStream {
            ring,
            events,
            evtchn,
            req_port,
            evt_port,
            map,
            fe,
            buffer: None,
            event_id: 0,
            ring_mem,
            evt_mem,
        }
    }

    fn drain_evtchn(&self) {
        while let Ok(Some(p)) = self.evtchn.pending() {
            self.evtchn.unmask(p).expect("unmask");
        }
    }

    /// The next request, without waiting.
    pub fn try_request(&mut self) -> Option<Request> {
        self.drain_evtchn();
        loop {
            if let Some(r) = self.ring.take_request().expect("take request") {
                return Some(r);
            }
            if !self.ring.rearm().expect("rearm") {
                return None;
            }
        }
    }

    /// The next request, waiting (bounded) for the frontend's notification.
    pub fn next_request(&mut self) -> Request {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(r) = self.try_request() {
                return r;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && wait_readable(self.evtchn.fd(), left),
                "no request from the frontend within {WAIT:?}"
            );
        }
    }

    /// Publishes a response; notifies if the frontend's threshold says so.
    pub fn respond(&mut self, rsp: Response) {
        self.respond_raw(&rsp.encode());
    }

    pub fn respond_raw(&mut self, bytes: &Msg) {
        self.ring.push_response_bytes(bytes).expect("push response");
        if self.ring.publish_responses().expect("publish") {
            self.evtchn.notify(self.req_port).expect("notify");
        }
    }

    /// Answers `req` with success (mapping the buffer on OPEN).
    pub fn ok(&mut self, req: &Request) {
        if let RequestBody::Open(o) = req.body {
            self.map_buffer(&o);
        }
        self.respond(Response::ok(req.id, req.operation()));
    }

    /// Takes the next request, asserts its operation, answers it with success.
    pub fn serve_ok(&mut self) -> Request {
        let req = self.next_request();
        self.ok(&req);
        req
    }

    /// Maps the OPEN buffer through the page directory, as snd_be does.
    pub fn map_buffer(&mut self, o: &OpenParams) {
        let map = self.map.clone();
        let fe = self.fe;
        let refs: Vec<u32> = read_directory(o.gref_directory, o.buffer_sz, |g| {
            map.map(fe, &[g])
                .map_err(|_| sndif::pgdir::PgdirError::MapFailed { gref: g })
        })
        .expect("directory");
        let mem = self.map.map(self.fe, &refs).expect("map buffer");
        self.buffer = Some(mem);
    }

    /// Bytes `[off, off + len)` of the mapped buffer.
    pub fn buffer_bytes(&self, off: u32, len: u32) -> Vec<u8> {
        let mut v = vec![0u8; len as usize];
        self.buffer
            .as_ref()
            .expect("buffer mapped")
            .read_bytes(off as usize, &mut v)
            .expect("read buffer");
        v
    }

    pub fn write_buffer(&self, off: u32, data: &[u8]) {
        self.buffer
            .as_ref()
            .expect("buffer mapped")
            .write_bytes(off as usize, data)
            .expect("write buffer");
    }

    /// Sends a CUR_POS event.
    pub fn position(&mut self, position: u64) {
        let ev = Event {
            id: self.event_id,
            kind: EventKind::CurPos { position },
        };
        self.event_id = self.event_id.wrapping_add(1);
        self.events.push(&ev).expect("push event");
        self.evtchn.notify(self.evt_port).expect("notify event");
    }
}

/// Waits (bounded) until the watch fd of `store` is readable and drains it.
pub fn wait_watch(store: &dyn XenStore) -> bool {
    let r = wait_readable(store.watch_fd(), WAIT);
    while store.take_watch_event().is_some() {}
    r
}

/// Writes the backend state as snd_be does.
pub fn set_be_state(world: &Arc<FakeXen>, card: u32, state: u32) {
    world
        .write_as(BE, &format!("{}/state", be_dir(card)), &state.to_string())
        .expect("backend state");
}

pub fn fe_state(world: &Arc<FakeXen>, card: u32) -> Option<String> {
    world.read(&format!("{}/state", fe_dir(card)))
}

pub fn read_key(store: &dyn StoreOps, path: &str) -> Option<String> {
    store.read(path).expect("read")
}
