//! The XenBus control plane against a scripted backend over the fakes: handshake order,
//! teardown and restart, frontend restart over a connected backend, shutdown, unresponsive
//! backends, removal, reconnect after a protocol error.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sndif::config::keys;
use sndif::formats::{FormatSet, PcmFormat};
use sndif::wire::{Operation, RequestBody, Response, ResponseBody};
use xen_access::fake::{FakeXen, FaultError, FaultOp, FIRST_GREF, FIRST_PORT, LAST_PORT};
use xen_access::{Access, Perm, StoreErrno, XenStore};
use xen_snd_engine::{
    BusError, CardInfo, Clock, DisconnectReason, Frontend, FrontendEvent, FrontendOptions,
    ManualClock, PcmParams, QueryFallback, Stream, StreamError, StreamOp, StreamOptions,
    StreamState, TransportKeys, XenbusState,
};

/// Waits (bounded) for an event matching `f`; earlier events are skipped (and shown on
/// failure).
fn wait_event(
    fe: &Frontend,
    what: &str,
    mut f: impl FnMut(&FrontendEvent) -> bool,
) -> FrontendEvent {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match fe.next_event(left) {
            Some(ev) if f(&ev) => return ev,
            Some(ev) => seen.push(format!("{ev:?}")),
            None => panic!("no {what} within {WAIT:?}; saw {seen:#?}"),
        }
    }
}

/// Every event until `Stopped` (bounded).
fn events_until_stopped(fe: &Frontend) -> Vec<FrontendEvent> {
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match fe.next_event(left) {
            Some(FrontendEvent::Stopped) => return out,
            Some(ev) => out.push(ev),
            None => panic!("no Stopped event; saw {out:?}"),
        }
    }
}

/// The backend's view: a dom0 store connection watching the frontend's state.
struct Toolstack {
    world: Arc<FakeXen>,
    store: Arc<dyn XenStore>,
}

impl Toolstack {
    fn new(config: &[(&str, &str)]) -> Self {
        let world = FakeXen::new();
        add_card(&world, 0, config);
        let store = world.domain(BE).store();
        store
            .watch(&format!("{}/state", fe_dir(0)), "fe-state")
            .expect("watch fe state");
        Toolstack { world, store }
    }

    fn start(&self, options: FrontendOptions) -> Frontend {
        Frontend::start(fe_services(&self.world), options).expect("start frontend")
    }

    fn fe_state(&self) -> Option<String> {
        fe_state(&self.world, 0)
    }

    fn wait_fe_state(&self, want: XenbusState) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.fe_state().as_deref() == Some(want.as_str()) {
                return;
            }
            assert!(
                Instant::now() < deadline && wait_watch(&*self.store),
                "frontend state {:?}, expected {want}",
                self.fe_state()
            );
        }
    }

    fn be(&self, state: XenbusState) {
        set_be_state(&self.world, 0, u32::from(state.code()));
    }

    fn keys(&self, stream: &str) -> Option<TransportKeys> {
        let k = |name: &str| -> Option<u32> {
            self.world
                .read(&format!("{}/{stream}/{name}", fe_dir(0)))
                .and_then(|v| v.parse().ok())
        };
        Some(TransportKeys {
            ring_ref: k(keys::RING_REF)?,
            event_channel: k(keys::EVENT_CHANNEL)?,
            evt_ring_ref: k(keys::EVT_RING_REF)?,
            evt_event_channel: k(keys::EVT_EVENT_CHANNEL)?,
        })
    }

    fn key_count(&self, streams: &[&str]) -> usize {
        streams
            .iter()
            .flat_map(|s| {
                [
                    keys::RING_REF,
                    keys::EVENT_CHANNEL,
                    keys::EVT_RING_REF,
                    keys::EVT_EVENT_CHANNEL,
                ]
                .map(|k| format!("{}/{s}/{k}", fe_dir(0)))
            })
            .filter(|p| self.world.read(p).is_some())
            .count()
    }

    /// The backend side of a full connection: InitWait, bind every stream in `streams`, Connected,
    /// answer the queries of the `usable` ones by echoing them. Returns the owner's event.
    fn connect(
        &self,
        fe: &Frontend,
        streams: &[&str],
        usable: &[usize],
    ) -> (CardInfo, Vec<Stream>, Vec<BackStream>) {
        self.be(XenbusState::InitWait);
        self.wait_fe_state(XenbusState::Initialised);
        let mut backs: Vec<BackStream> = streams
            .iter()
            .map(|s| {
                let keys = self.keys(s).expect("transport keys published");
                BackStream::bind(&self.world.domain(BE), FE, keys)
            })
            .collect();
        self.be(XenbusState::Connected);
        for i in usable {
            let req = backs[*i].next_request();
            let RequestBody::HwParamQuery(space) = req.body else {
                panic!("expected HW_PARAM_QUERY, got {req:?}");
            };
            backs[*i].respond(Response {
                id: req.id,
                operation: Operation::HwParamQuery,
                status: 0,
                body: ResponseBody::HwParam(space),
            });
        }
        self.wait_fe_state(XenbusState::Connected);
        let ev = wait_event(fe, "CardConnected", |e| {
            matches!(e, FrontendEvent::CardConnected { .. })
        });
        let FrontendEvent::CardConnected {
            card,
            info,
            streams,
        } = ev
        else {
            unreachable!()
        };
        assert_eq!(card, 0);
        (info, streams, backs)
    }
}

fn params() -> PcmParams {
    PcmParams {
        format: PcmFormat::S16Le,
        rate: 48_000,
        channels: 2,
        buffer_frames: 4096,
        period_frames: 1024,
    }
}

const STREAMS: [&str; 2] = ["0/0", "0/1"];

/// Default options, but a short shutdown wait (most tests drop the frontend with a backend
/// that does not answer the shutdown).
fn quick() -> FrontendOptions {
    FrontendOptions {
        shutdown_timeout: Duration::from_millis(100),
        ..FrontendOptions::default()
    }
}

#[test]
fn handshake_publishes_all_keys_in_one_transaction_before_initialised() {
    let ts = Toolstack::new(&simple_card());
    let mut fe = ts.start(quick());
    wait_event(&fe, "CardFound", |e| {
        matches!(
            e,
            FrontendEvent::CardFound {
                card: 0,
                backend_id: 0,
                ..
            }
        )
    });
    // libxenbe's constructor writes 5, 6, 1 before InitWait: the frontend must not publish.
    for s in [
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::Initialising,
    ] {
        ts.be(s);
        wait_event(
            &fe,
            "backend state change",
            |e| matches!(e, FrontendEvent::StateChanged { card: 0, backend: Some(b), .. } if *b == s),
        );
    }
    assert_eq!(ts.fe_state().as_deref(), Some("1"));
    assert_eq!(
        ts.key_count(&STREAMS),
        0,
        "no transport keys before InitWait"
    );

    ts.be(XenbusState::InitWait);
    // Whenever we look, the keys are all there or none is, and state 3 implies all of them.
    let deadline = Instant::now() + WAIT;
    loop {
        let state = ts.fe_state();
        let n = ts.key_count(&STREAMS);
        assert!(n == 0 || n == 8, "a partial set of {n} keys is visible");
        if state.as_deref() == Some("3") {
            assert_eq!(n, 8, "state 3 written before the keys");
            break;
        }
        assert!(Instant::now() < deadline && wait_watch(&*ts.store));
    }
    assert_eq!(
        ts.world.read(&format!("{}/version", fe_dir(0))).as_deref(),
        Some("2")
    );
    let k0 = ts.keys("0/0").expect("keys 0/0");
    let k1 = ts.keys("0/1").expect("keys 0/1");
    for k in [k0, k1] {
        assert!(k.ring_ref >= FIRST_GREF && k.evt_ring_ref >= FIRST_GREF);
        assert!((FIRST_PORT..=LAST_PORT).contains(&k.event_channel));
        assert!((FIRST_PORT..=LAST_PORT).contains(&k.evt_event_channel));
        assert_ne!(k.event_channel, k.evt_event_channel);
        assert_ne!(k.ring_ref, k.evt_ring_ref);
    }
    assert_ne!(k0.event_channel, k1.event_channel);

    let mut backs: Vec<BackStream> = [k0, k1]
        .into_iter()
        .map(|k| BackStream::bind(&ts.world.domain(BE), FE, k))
        .collect();
    ts.be(XenbusState::Connected);
    for b in backs.iter_mut() {
        let req = b.next_request();
        let RequestBody::HwParamQuery(space) = req.body else {
            panic!("expected a query, got {req:?}");
        };
        assert_eq!(space.rates.min, 44_100);
        assert_eq!(space.rates.max, 48_000);
        assert!(space.formats.contains(PcmFormat::F32Le));
        b.respond(Response {
            id: req.id,
            operation: Operation::HwParamQuery,
            status: 0,
            body: ResponseBody::HwParam(space),
        });
    }
    let ev = wait_event(&fe, "CardConnected", |e| {
        matches!(e, FrontendEvent::CardConnected { .. })
    });
    assert_eq!(ts.fe_state().as_deref(), Some("4"));
    let FrontendEvent::CardConnected {
        info, mut streams, ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(info.short_name.as_deref(), Some("VCard"));
    assert_eq!(info.devices, vec![(0, Some("dev0".to_owned()))]);
    assert_eq!(info.backend_path, be_dir(0));
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0].info().device_name.as_deref(), Some("dev0"));
    assert_eq!(streams[1].kind(), sndif::config::StreamKind::Capture);
    // The streams work.
    streams[0].submit_open(params(), 0).expect("open");
    backs[0].serve_ok();
    assert!(pump(&mut streams[0], 0));
    assert_eq!(*streams[0].state(), StreamState::Stopped);
    fe.shutdown().expect("shutdown");
}

#[test]
fn transaction_conflicts_are_retried_and_a_failing_commit_is_reported() {
    let ts = Toolstack::new(&simple_card());
    ts.world.faults().fail_next_for(
        FE,
        FaultOp::StoreCommit,
        3,
        FaultError::Errno(StoreErrno::Again),
    );
    let fe = ts.start(quick());
    ts.be(XenbusState::InitWait);
    ts.wait_fe_state(XenbusState::Initialised);
    assert_eq!(ts.key_count(&STREAMS), 8);
    drop(fe);

    let ts = Toolstack::new(&simple_card());
    ts.world.faults().fail_next_for(
        FE,
        FaultOp::StoreCommit,
        1000,
        FaultError::Errno(StoreErrno::Again),
    );
    let fe = ts.start(quick());
    ts.be(XenbusState::InitWait);
    let ev = wait_event(&fe, "CardError", |e| {
        matches!(e, FrontendEvent::CardError { .. })
    });
    let FrontendEvent::CardError { card: 0, error } = ev else {
        panic!("{ev:?}")
    };
    assert!(matches!(error, BusError::Store { card: 0, .. }), "{error}");
    assert_eq!(
        ts.fe_state().as_deref(),
        Some("1"),
        "never 3 without the keys"
    );
    assert_eq!(ts.key_count(&STREAMS), 0);
    ts.world.faults().clear();
}

#[test]
fn backend_closed_revokes_and_the_card_reconnects_with_fresh_pages() {
    let ts = Toolstack::new(&simple_card());
    let fe = ts.start(quick());
    let (_info, mut streams, backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    let old = ts.keys("0/0").expect("keys");
    ts.be(XenbusState::Closed);
    wait_event(&fe, "CardDisconnected", |e| {
        matches!(
            e,
            FrontendEvent::CardDisconnected {
                card: 0,
                reason: DisconnectReason::BackendState(XenbusState::Closed)
            }
        )
    });
    ts.wait_fe_state(XenbusState::Initialising);
    // The owner's streams are revoked: no more requests, pages still valid until dropped.
    let s = &mut streams[0];
    assert!(s.is_revoked());
    assert!(matches!(
        s.submit_open(params(), 0),
        Err(StreamError::Revoked {
            op: StreamOp::Open,
            ..
        })
    ));
    s.service(0);
    assert_eq!(*s.state(), StreamState::Revoked);
    assert_eq!(s.write(&[0u8; 64]), 0);
    drop(streams);
    drop(backs);
    // The backend restarts its handshake: the frontend publishes fresh pages and ports.
    let (_info, streams, _backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    let new = ts.keys("0/0").expect("keys");
    assert_ne!(old.ring_ref, new.ring_ref);
    assert_eq!(streams.len(), 2);
    // Nothing leaked: 2 streams × (ring + event page + 4 data pages + 1 directory page).
    assert_eq!(ts.world.live_grants(FE), 14);
}

#[test]
fn backend_closing_revokes_then_closed_restarts() {
    let ts = Toolstack::new(&simple_card());
    let fe = ts.start(quick());
    let (_info, streams, _backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    ts.be(XenbusState::Closing);
    wait_event(&fe, "CardDisconnected", |e| {
        matches!(
            e,
            FrontendEvent::CardDisconnected {
                card: 0,
                reason: DisconnectReason::BackendClosing
            }
        )
    });
    assert!(streams.iter().all(Stream::is_revoked));
    assert_eq!(
        ts.fe_state().as_deref(),
        Some("4"),
        "Closing alone changes nothing else"
    );
    ts.be(XenbusState::Closed);
    ts.wait_fe_state(XenbusState::Initialising);
    ts.be(XenbusState::InitWait);
    ts.wait_fe_state(XenbusState::Initialised);
    // Only one disconnect was reported for the connection.
    let mut n = 0;
    while let Some(ev) = fe.try_event() {
        if matches!(ev, FrontendEvent::CardDisconnected { .. }) {
            n += 1;
        }
    }
    assert_eq!(n, 0);
}

#[test]
fn frontend_restart_over_a_connected_backend_forces_a_state_change() {
    // Stale state from a crashed frontend: FE 1, BE 4 → the frontend writes 6 then 1.
    let ts = Toolstack::new(&simple_card());
    ts.be(XenbusState::Connected);
    let fe = ts.start(quick());
    let mut written = Vec::new();
    wait_event(&fe, "FE Initialising", |e| {
        if let FrontendEvent::StateChanged { frontend, .. } = e {
            if written.last() != Some(frontend) {
                written.push(*frontend);
            }
            return *frontend == XenbusState::Initialising;
        }
        false
    });
    assert_eq!(written, [XenbusState::Closed, XenbusState::Initialising]);
    // libxenbe's "frontend restarted": 5, 6, 2; the frontend publishes.
    for s in [
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::InitWait,
    ] {
        ts.be(s);
    }
    ts.wait_fe_state(XenbusState::Initialised);
    drop(fe);

    // FE 4, BE 4 (crashed while connected) → the frontend writes 1 only.
    let ts = Toolstack::new(&simple_card());
    ts.be(XenbusState::Connected);
    ts.world
        .write_as(0, &format!("{}/state", fe_dir(0)), "4")
        .expect("stale fe state");
    let fe = ts.start(quick());
    let mut written = Vec::new();
    wait_event(&fe, "FE Initialising", |e| {
        if let FrontendEvent::StateChanged { frontend, .. } = e {
            if written.last() != Some(frontend) {
                written.push(*frontend);
            }
            return *frontend == XenbusState::Initialising;
        }
        false
    });
    assert_eq!(written, [XenbusState::Initialising]);
    assert_eq!(ts.fe_state().as_deref(), Some("1"));
}

#[test]
fn shutdown_closes_waits_for_the_backend_and_ends_closed() {
    let ts = Toolstack::new(&simple_card());
    let mut fe = ts.start(FrontendOptions::default());
    let (_info, streams, _backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    let world = ts.world.clone();
    let backend = std::thread::spawn(move || {
        // libxenbe on FE Closing while connected: close(InitWait) = 5, 6, 2.
        ts.wait_fe_state(XenbusState::Closing);
        for s in [
            XenbusState::Closing,
            XenbusState::Closed,
            XenbusState::InitWait,
        ] {
            ts.be(s);
        }
        ts
    });
    let t = Instant::now();
    fe.shutdown().expect("shutdown");
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "did not need the timeout"
    );
    let _ts = backend.join().expect("backend");
    assert_eq!(fe_state(&world, 0).as_deref(), Some("6"));
    assert!(streams.iter().all(Stream::is_revoked));
    let events = events_until_stopped(&fe);
    assert!(events.iter().any(|e| matches!(
        e,
        FrontendEvent::CardDisconnected {
            reason: DisconnectReason::Shutdown,
            ..
        }
    )));
    assert!(!events
        .iter()
        .any(|e| matches!(e, FrontendEvent::CardError { .. })));
    assert!(matches!(fe.reconnect(0), Err(BusError::Gone)));
}

#[test]
fn shutdown_gives_up_after_the_timeout() {
    let ts = Toolstack::new(&simple_card());
    let mut fe = ts.start(FrontendOptions {
        shutdown_timeout: Duration::from_millis(200),
        ..FrontendOptions::default()
    });
    let (_info, _streams, _backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    let t = Instant::now();
    fe.shutdown().expect("shutdown");
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(ts.fe_state().as_deref(), Some("6"));
    let events = events_until_stopped(&fe);
    assert!(events.iter().any(|e| matches!(
        e,
        FrontendEvent::CardError {
            error: BusError::ShutdownTimeout {
                state: XenbusState::Connected,
                ..
            },
            ..
        }
    )));
}

#[test]
fn unresponsive_backend_is_declared_and_a_restarted_backend_reconnects() {
    let ts = Toolstack::new(&simple_card());
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let fe = ts.start(FrontendOptions {
        unresponsive_after: 2,
        stream: StreamOptions {
            clock: clock.clone(),
            ..StreamOptions::default()
        },
        ..quick()
    });
    let (_info, mut streams, backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    // The backend process dies silently: nothing answers, xenstore still says 4.
    drop(backs);
    let s = &mut streams[0];
    let mut now = clock.now_ns();
    s.submit_open(params(), now).expect("open");
    now += 3_500_000_000;
    clock.set(now);
    assert_eq!(s.service(now).timed_out, 1);
    s.take_control_result();
    s.submit_close(now).ok();
    s.submit_hw_param_query(xen_snd_engine::query_space(&s.info().hw), now)
        .expect("query");
    now += 3_500_000_000;
    clock.set(now);
    assert_eq!(s.service(now).timed_out, 1);
    let ev = wait_event(&fe, "BackendUnresponsive", |e| {
        matches!(e, FrontendEvent::BackendUnresponsive { card: 0, .. })
    });
    let FrontendEvent::BackendUnresponsive { timeouts, .. } = ev else {
        unreachable!()
    };
    assert!(timeouts >= 2);
    wait_event(&fe, "CardDisconnected", |e| {
        matches!(
            e,
            FrontendEvent::CardDisconnected {
                reason: DisconnectReason::Unresponsive,
                ..
            }
        )
    });
    s.service(now);
    assert_eq!(*s.state(), StreamState::Revoked);
    assert_eq!(
        ts.fe_state().as_deref(),
        Some("4"),
        "waits for the backend to move"
    );
    drop(streams);
    // snd_be restarts: 5, 6, 1, and then the usual handshake.
    for st in [
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::Initialising,
    ] {
        ts.be(st);
    }
    ts.wait_fe_state(XenbusState::Initialising);
    let (_info, streams, _backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    assert_eq!(streams.len(), 2);
}

#[test]
fn removing_the_card_directory_revokes_and_reports() {
    let ts = Toolstack::new(&simple_card());
    let fe = ts.start(quick());
    let (_info, streams, _backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    ts.world.rm_as(0, &fe_dir(0)).expect("rm");
    wait_event(&fe, "CardDisconnected", |e| {
        matches!(
            e,
            FrontendEvent::CardDisconnected {
                reason: DisconnectReason::Removed,
                ..
            }
        )
    });
    wait_event(&fe, "CardRemoved", |e| {
        matches!(e, FrontendEvent::CardRemoved { card: 0 })
    });
    assert!(streams.iter().all(Stream::is_revoked));
}

#[test]
fn an_unusable_stream_is_bound_but_not_offered() {
    let mut cfg = simple_card();
    cfg.retain(|(k, _)| *k != "0/1/type");
    cfg.push(("0/1/type", "x"));
    let ts = Toolstack::new(&cfg);
    let fe = ts.start(quick());
    let (info, streams, _backs) = ts.connect(&fe, &STREAMS, &[0]);
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].id().stream, 0);
    assert_eq!(info.unusable.len(), 1);
    assert_eq!(info.unusable[0].0.stream, 1);
    assert_eq!(info.unusable[0].1.path(), "0/1/type");
    assert!(ts.keys("0/1").is_some(), "the backend binds every stream");
}

#[test]
fn query_answers_narrow_the_offer_or_fall_back() {
    let ts = Toolstack::new(&simple_card());
    let fe = ts.start(quick());
    ts.be(XenbusState::InitWait);
    ts.wait_fe_state(XenbusState::Initialised);
    let mut backs: Vec<BackStream> = STREAMS
        .iter()
        .map(|s| BackStream::bind(&ts.world.domain(BE), FE, ts.keys(s).expect("keys")))
        .collect();
    ts.be(XenbusState::Connected);
    // Stream 0: an ALSA-like backend narrows to S16_LE.
    let req = backs[0].next_request();
    let RequestBody::HwParamQuery(mut space) = req.body else {
        panic!("{req:?}")
    };
    space.formats = FormatSet(PcmFormat::S16Le.mask_bit());
    backs[0].respond(Response {
        id: req.id,
        operation: Operation::HwParamQuery,
        status: 0,
        body: ResponseBody::HwParam(space),
    });
    // Stream 1: the query fails.
    let req = backs[1].next_request();
    backs[1].respond(Response::error(req.id, Operation::HwParamQuery, -22));
    let ev = wait_event(&fe, "QueryFallback", |e| {
        matches!(e, FrontendEvent::QueryFallback { .. })
    });
    let FrontendEvent::QueryFallback { stream, reason, .. } = ev else {
        unreachable!()
    };
    assert_eq!(stream.stream, 1);
    assert!(matches!(
        reason,
        QueryFallback::Failed(StreamError::Backend { status: -22, .. })
    ));
    let ev = wait_event(&fe, "CardConnected", |e| {
        matches!(e, FrontendEvent::CardConnected { .. })
    });
    let FrontendEvent::CardConnected { streams, .. } = ev else {
        unreachable!()
    };
    assert_eq!(
        streams[0].info().hw.formats,
        FormatSet(PcmFormat::S16Le.mask_bit())
    );
    assert!(streams[0].info().backend_hw.is_some());
    assert_eq!(streams[1].info().hw, streams[1].info().xenstore_hw);
}

#[test]
fn a_protocol_error_fails_one_stream_and_reconnect_recovers() {
    let ts = Toolstack::new(&simple_card());
    let fe = ts.start(quick());
    let (_info, mut streams, mut backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    streams[0].submit_open(params(), 0).expect("open");
    let req = backs[0].next_request();
    backs[0].respond(Response::ok(req.id.wrapping_add(1), Operation::Open));
    assert!(pump(&mut streams[0], 0));
    assert!(matches!(streams[0].state(), StreamState::Failed(_)));
    let ev = wait_event(&fe, "StreamFailed", |e| {
        matches!(e, FrontendEvent::StreamFailed { .. })
    });
    let FrontendEvent::StreamFailed { stream, .. } = ev else {
        unreachable!()
    };
    assert_eq!(stream, streams[0].id());
    // The other stream is unaffected.
    streams[1].submit_open(params(), 0).expect("open capture");
    backs[1].serve_ok();
    assert!(pump(&mut streams[1], 0));
    assert_eq!(*streams[1].state(), StreamState::Stopped);

    fe.reconnect(0).expect("reconnect");
    wait_event(&fe, "CardDisconnected", |e| {
        matches!(
            e,
            FrontendEvent::CardDisconnected {
                reason: DisconnectReason::Requested,
                ..
            }
        )
    });
    ts.wait_fe_state(XenbusState::Initialising);
    drop(streams);
    drop(backs);
    // libxenbe: frontend restarted → 5, 6, then InitWait (driven by connect()).
    ts.be(XenbusState::Closing);
    ts.be(XenbusState::Closed);
    let (_info, streams, _backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    assert!(streams
        .iter()
        .all(|s| *s.state() == StreamState::Closed && !s.is_revoked()));
}

#[test]
fn a_backend_without_protocol_version_2_is_refused() {
    let ts = Toolstack::new(&simple_card());
    ts.world
        .write_as(0, &format!("{}/versions", be_dir(0)), "1")
        .expect("versions");
    let fe = ts.start(quick());
    ts.be(XenbusState::InitWait);
    let ev = wait_event(&fe, "CardError", |e| {
        matches!(e, FrontendEvent::CardError { .. })
    });
    assert!(
        matches!(
            ev,
            FrontendEvent::CardError {
                error: BusError::Version { .. },
                ..
            }
        ),
        "{ev:?}"
    );
    assert_eq!(ts.fe_state().as_deref(), Some("1"));
}

#[test]
fn the_card_filter_ignores_other_cards() {
    let ts = Toolstack::new(&simple_card());
    let mut fe = ts.start(FrontendOptions {
        cards: Some(vec![7]),
        ..quick()
    });
    ts.be(XenbusState::InitWait);
    fe.shutdown().expect("shutdown");
    let events = events_until_stopped(&fe);
    assert!(
        events.is_empty(),
        "card 0 is not ours, nothing may happen: {events:?}"
    );
    assert_eq!(ts.fe_state().as_deref(), Some("1"));
}

#[test]
fn the_waker_is_called_for_every_event() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ts = Toolstack::new(&simple_card());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut fe = ts.start(FrontendOptions {
        waker: Some(Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        })),
        ..quick()
    });
    let (_info, _streams, _backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    fe.shutdown().expect("shutdown");
    let mut events = 0;
    while fe.try_event().is_some() {
        events += 1;
    }
    // connect() consumed some events already; every event (consumed or not) woke the owner.
    assert!(events > 0);
    assert!(calls.load(Ordering::SeqCst) > events);
}

#[test]
fn grant_exhaustion_is_reported_and_reconnect_retries() {
    let ts = Toolstack::new(&simple_card());
    // 2 streams need 14 grants; allow 10.
    ts.world.set_grant_limit(10);
    let fe = ts.start(quick());
    ts.be(XenbusState::InitWait);
    let ev = wait_event(&fe, "CardError", |e| {
        matches!(e, FrontendEvent::CardError { .. })
    });
    assert!(
        matches!(
            &ev,
            FrontendEvent::CardError {
                card: 0,
                error: BusError::Grant { .. }
            }
        ),
        "{ev:?}"
    );
    assert_eq!(ts.fe_state().as_deref(), Some("1"));
    assert_eq!(
        ts.world.live_grants(FE),
        0,
        "a failed setup releases what it shared"
    );
    ts.world.set_grant_limit(1024);
    fe.reconnect(0).expect("reconnect");
    ts.wait_fe_state(XenbusState::Initialised);
    assert_eq!(ts.key_count(&STREAMS), 8);
}

#[test]
fn a_failed_read_of_the_backend_state_keeps_the_card_connected() {
    let ts = Toolstack::new(&simple_card());
    let fe = ts.start(quick());
    let (_info, mut streams, mut backs) = ts.connect(&fe, &STREAMS, &[0, 1]);
    // The read must fail on the backend state itself. An injected `FaultOp::StoreRead` cannot
    // get there: every pass of the engine lists device/vsnd first, and that listing takes the
    // fault. So the toolstack takes the guest's read permission away: that fires the guest's
    // watch (it could read the node before) and the engine's read of the state fails (EACCES).
    let state = format!("{}/state", be_dir(0));
    ts.store
        .set_perms(
            &state,
            &[Perm {
                domid: BE,
                access: Access::None,
            }],
        )
        .expect("revoke the guest's read permission");
    let ev = wait_event(&fe, "CardError", |e| {
        matches!(
            e,
            FrontendEvent::CardError { .. } | FrontendEvent::CardDisconnected { .. }
        )
    });
    assert!(
        matches!(
            &ev,
            FrontendEvent::CardError {
                card: 0,
                error: BusError::Store { card: 0, .. }
            }
        ),
        "the failed read is reported, not acted on: {ev:?}"
    );
    if let FrontendEvent::CardError { error, .. } = &ev {
        assert!(
            error.to_string().contains(&state),
            "the error names the state node: {error}"
        );
    }
    // Readable again (another watch, a successful read of the unchanged state).
    ts.store
        .set_perms(
            &state,
            &[
                Perm {
                    domid: BE,
                    access: Access::None,
                },
                Perm {
                    domid: FE,
                    access: Access::Read,
                },
            ],
        )
        .expect("restore the permission");
    // The streams were not revoked and still work: OPEN goes to the backend and completes.
    assert!(streams.iter().all(|s| !s.is_revoked()));
    streams[0].submit_open(params(), 0).expect("open");
    backs[0].serve_ok();
    assert!(pump(&mut streams[0], 0));
    assert_eq!(*streams[0].state(), StreamState::Stopped);
    assert_eq!(
        ts.fe_state().as_deref(),
        Some("4"),
        "the frontend stays Connected"
    );
    while let Some(ev) = fe.try_event() {
        assert!(
            !matches!(ev, FrontendEvent::CardDisconnected { .. }),
            "no disconnect after a failed read: {ev:?}"
        );
    }
    // A later real change is still seen (the watch survived): Closing disconnects.
    ts.be(XenbusState::Closing);
    let ev = wait_event(&fe, "CardDisconnected", |e| {
        matches!(e, FrontendEvent::CardDisconnected { .. })
    });
    assert!(
        matches!(
            ev,
            FrontendEvent::CardDisconnected {
                card: 0,
                reason: DisconnectReason::BackendClosing
            }
        ),
        "{ev:?}"
    );
}
