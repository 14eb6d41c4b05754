//! End to end, items 5 and 6: the backend crashes and restarts in mid-stream, and the frontend
//! process dies and restarts over a backend that still shows Connected. In both cases the engine
//! reconnects by itself and new data arrives bit-exact.

mod e2e;

use std::time::{Duration, Instant};

use e2e::*;
use xen_access::fake::FakeXen;
use xen_snd_backend::{DeviceKey, LogWhat};
use xen_snd_engine::{
    DisconnectReason, FrontendEvent, FrontendOptions, Services, StreamOptions, XenbusState,
};

fn card() -> Vec<(&'static str, &'static str)> {
    vec![
        ("sample-rates", "48000"),
        ("sample-formats", "s16_le"),
        ("buffer-size", "65536"),
        ("0/0/type", "p"),
        ("0/0/unique-id", "pulse"),
    ]
}

const KEY: DeviceKey = DeviceKey { fe: FE, dev: 0 };

fn millis(bytes: u64) -> f64 {
    // S16_LE stereo 48 kHz: 192 bytes per millisecond.
    bytes as f64 / 192.0
}

#[test]
fn backend_crash_and_restart_mid_stream_reconnects_by_itself() {
    let world = FakeXen::new();
    add_card(&world, 0, &card());
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), crash_options());
    let stream = events.connected(0).take(0, 0);
    let id = stream.id();
    let params = s16_stereo_48k();
    let d1 = playback_data(1, audio_bytes(&params, 8.0));
    let quarter = d1.len() as u64 / 4;
    let mut jobs = vec![Job::play(stream, params, d1.clone())];
    run_jobs(&mut jobs, |j| {
        if j[0].as_play().completed() >= quarter {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    let before = backend.stream_stats(be_id(id)).expect("stats");
    backend.crash().expect("crash");
    // The backend's state stays Connected: nothing in xenstore tells the frontend.
    assert_eq!(
        world.read(&format!("{}/state", be_dir(0))).as_deref(),
        Some("4")
    );
    let old = jobs.pop().expect("job");
    let written = old.as_play().offset as u64;
    let confirmed = old.as_play().completed();
    let (_, submitted) = old.stream().byte_counters();

    // A new backend process on the same store: 5 → 6 → 1, and the engine reconnects by itself.
    let (options, mut records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let ev = events.wait("CardDisconnected", |e| {
        matches!(e, FrontendEvent::CardDisconnected { card: 0, .. })
    });
    let FrontendEvent::CardDisconnected { reason, .. } = ev else {
        unreachable!()
    };
    assert!(
        matches!(
            reason,
            DisconnectReason::Unresponsive
                | DisconnectReason::BackendClosing
                | DisconnectReason::BackendState(_)
        ),
        "{reason:?}"
    );
    assert!(old.stream().is_revoked());
    drop(old);
    let stream = events.connected(0).take(0, 0);
    records.wait_for(0, "Connected", |r| r.what == LogWhat::StateWritten(4));
    assert_eq!(records.states_written(KEY, 0)[..3], [5, 6, 1]);

    let d2 = playback_data(2, audio_bytes(&params, 2.0));
    let mut jobs = vec![Job::play(stream, params, d2.clone())];
    run_jobs(&mut jobs, |_| Flow::Continue);
    // The new backend received exactly the new data.
    assert_backend_received(&backend, id, &d2);

    // What was lost: data the owner wrote that never reached the old backend (at most what was
    // not confirmed), and data the old backend had accepted but not played yet (its queue).
    let received = before.bytes_received.max(confirmed);
    let unsent = written - received;
    let unplayed = received.saturating_sub(before.position);
    eprintln!(
        "backend crash: the owner wrote {written} bytes into the old stream ({submitted} \
         submitted, {confirmed} confirmed); the old backend had received {received} and played \
         {}; lost: ≤ {unsent} bytes never sent ({:.0} ms) + ~{unplayed} bytes queued in the \
         backend ({:.0} ms); disconnect reason {reason:?}",
        before.position,
        millis(unsent),
        millis(unplayed)
    );
    // Never more than the shared buffer can hold.
    assert!(written - confirmed <= 65_536, "{written} - {confirmed}");
    let mut stream = jobs.pop().expect("job").into_stream();
    stop_and_close(&mut stream);
    drop(stream);
    finish(events, backend);
}

/// The options of the crash tests: 1 s timeouts (not shorter: a loaded machine must not make a
/// live backend look dead), two consecutive ones make the backend unresponsive.
fn crash_options() -> FrontendOptions {
    FrontendOptions {
        stream: StreamOptions {
            request_timeout: Duration::from_millis(1000),
            ..StreamOptions::default()
        },
        unresponsive_after: 2,
        ..frontend_options()
    }
}

#[test]
fn a_crashed_backend_is_declared_unresponsive_through_capture_timeouts() {
    let world = FakeXen::new();
    add_card(
        &world,
        0,
        &[
            ("sample-rates", "48000"),
            ("sample-formats", "s16_le"),
            ("0/0/type", "c"),
            ("0/0/unique-id", "pulse"),
        ],
    );
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), crash_options());
    let stream = events.connected(0).take(0, 0);
    let params = s16_stereo_48k();
    let want = audio_bytes(&params, 8.0);
    let mut jobs = vec![Job::capture(stream, params, want)];
    run_jobs(&mut jobs, |j| {
        if j[0].as_capture().got.len() >= want / 4 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    backend.crash().expect("crash");
    // Capture keeps READs in flight: they time out, and the card is declared unresponsive.
    run_jobs(&mut jobs, |j| {
        if j[0].is_dead() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    assert!(counters(&jobs[0]).timeouts >= 2, "{:?}", counters(&jobs[0]));
    events.wait(
        "BackendUnresponsive",
        |e| matches!(e, FrontendEvent::BackendUnresponsive { card: 0, timeouts } if *timeouts >= 2),
    );
    events.wait("CardDisconnected(Unresponsive)", |e| {
        matches!(
            e,
            FrontendEvent::CardDisconnected {
                card: 0,
                reason: DisconnectReason::Unresponsive
            }
        )
    });
    drop(jobs);
    // The restarted backend walks through 5, 6, 1 and the card connects again.
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let stream = events.connected(0).take(0, 0);
    let mut jobs = vec![Job::capture(stream, params, audio_bytes(&params, 1.0))];
    run_jobs(&mut jobs, |_| Flow::Continue);
    assert_capture_pattern(jobs[0].as_capture());
    drop(jobs);
    finish(events, backend);
}

/// Engine gap found by the end-to-end suite: playback is paced by CUR_POS, so while the stream
/// waits for the position to advance it has no request in flight; when the backend dies then,
/// nothing ever times out and the stream waits forever (until the backend's state changes).
#[test]
fn a_crashed_backend_is_detected_while_playback_waits_for_positions() {
    let world = FakeXen::new();
    add_card(&world, 0, &card());
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), crash_options());
    let stream = events.connected(0).take(0, 0);
    let params = s16_stereo_48k();
    let data = playback_data(1, audio_bytes(&params, 8.0));
    let quarter = data.len() as u64 / 4;
    let mut jobs = vec![Job::play(stream, params, data)];
    run_jobs(&mut jobs, |j| {
        if j[0].as_play().completed() >= quarter {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    backend.crash().expect("crash");
    // Three request timeouts later, the engine should have noticed.
    let deadline = Instant::now() + Duration::from_secs(3);
    run_jobs(&mut jobs, |j| {
        if counters(&j[0]).timeouts > 0 || j[0].is_dead() || Instant::now() > deadline {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    assert!(
        counters(&jobs[0]).timeouts > 0 || jobs[0].is_dead(),
        "3 s after the backend died the stream has noticed nothing: {}",
        describe(&jobs)
    );
    drop(jobs);
    events.fe.shutdown().expect("shutdown");
}

#[test]
fn frontend_restart_over_a_connected_backend_reconnects_both() {
    let world = FakeXen::new();
    add_card(&world, 0, &card());
    let (options, mut records) = backend_options(SCALE);
    let backend = start_backend(&world, options);

    // The first frontend process, on a connection that can die.
    let store = KillableStore::new(world.domain(FE).store());
    let d = world.domain(FE);
    let services = Services {
        store: store.clone(),
        grants: d.grant_share(),
        events: d.event_channels(),
    };
    let mut first = start_frontend(services, frontend_options());
    let stream = first.connected(0).take(0, 0);
    let id = stream.id();
    let params = s16_stereo_48k();
    let d1 = playback_data(1, audio_bytes(&params, 8.0));
    let half = d1.len() as u64 / 2;
    let mut jobs = vec![Job::play(stream, params, d1.clone())];
    run_jobs(&mut jobs, |j| {
        if j[0].as_play().completed() >= half {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });

    // Kill it: the xenstore connection dies first (nothing it does on the way out reaches the
    // store), then its event channels close (the backend's ends become unbound) and its threads
    // go.
    records.drain();
    let mark = records.seen.len();
    store.kill();
    drop(jobs);
    drop(first);
    let fe_state = format!("{}/state", fe_dir(0));
    let be_state = format!("{}/state", be_dir(0));
    assert_eq!(world.read(&fe_state).as_deref(), Some("4"));
    assert_eq!(world.read(&be_state).as_deref(), Some("4"));
    records.drain();
    assert!(
        records.states_written(KEY, mark).is_empty(),
        "the backend noticed the crash by itself:\n{}",
        records.dump()
    );

    // The second frontend process forces a state change; the backend sees "frontend restarted"
    // and closes (5, 6, 2); both connect again.
    let mut second = start_frontend(fe_services(&world), frontend_options());
    let stream = second.connected(0).take(0, 0);
    let restarted = records.wait_for(mark, "FrontendState(1)", |r| {
        r.what == LogWhat::FrontendState(1)
    });
    records.wait_for(restarted, "Connected", |r| {
        r.what == LogWhat::StateWritten(4)
    });
    assert_eq!(records.states_written(KEY, restarted), vec![5, 6, 2, 4]);
    assert_eq!(
        world.read(&fe_state).as_deref(),
        Some(XenbusState::Connected.as_str())
    );
    assert_eq!(backend.device_state(KEY), Some(4));

    // The old binding is gone, so the backend's count is final: it received a prefix of d1.
    let n = backend
        .stream_stats(be_id(id))
        .expect("stats")
        .bytes_received as usize;
    assert!(n as u64 >= half && n <= d1.len(), "{n}");
    let d2 = playback_data(2, audio_bytes(&params, 2.0));
    let mut jobs = vec![Job::play(stream, params, d2.clone())];
    run_jobs(&mut jobs, |_| Flow::Continue);
    let mut all = d1[..n].to_vec();
    all.extend_from_slice(&d2);
    // The backend hashes everything a stream received over its life: d1's prefix, then d2.
    assert_backend_received(&backend, id, &all);
    eprintln!(
        "frontend restart: the backend had received {n} of the first frontend's {} bytes",
        d1.len()
    );
    let mut stream = jobs.pop().expect("job").into_stream();
    stop_and_close(&mut stream);
    drop(stream);
    finish(second, backend);
}
