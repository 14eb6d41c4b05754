//! End to end, item 8: malformed card configurations. Each bad stream gets a clear error (or the
//! documented fallback of `sndif::config`), the backend still binds the card, and the rest of the
//! card plays bit-exact.

mod e2e;

use e2e::*;
use sndif::config::{ConfigError, WarningKind, MAX_BUFFER_SIZE};
use sndif::formats::PcmFormat;
use xen_access::fake::FakeXen;
use xen_snd_engine::{FrontendEvent, StreamError, StreamOp, StreamState};

#[test]
fn bad_streams_are_reported_and_the_rest_of_the_card_plays() {
    let world = FakeXen::new();
    add_card(
        &world,
        0,
        &[
            ("sample-rates", "48000"),
            ("sample-formats", "s16_le"),
            ("buffer-size", "65536"),
            // 0/0: fine.
            ("0/0/type", "p"),
            ("0/0/unique-id", "pulse"),
            // 0/1: no `type`.
            ("0/1/unique-id", "pulse"),
            // 0/2: only unknown formats → the card's formats (documented fallback).
            ("0/2/type", "p"),
            ("0/2/unique-id", "pulse"),
            ("0/2/sample-formats", "s17_le,dsd"),
            // 0/3: channels-min > channels-max.
            ("0/3/type", "p"),
            ("0/3/unique-id", "pulse"),
            ("0/3/channels-min", "2"),
            ("0/3/channels-max", "1"),
            // 0/4: a huge buffer → clamped to 1 MiB (documented fallback).
            ("0/4/type", "p"),
            ("0/4/unique-id", "pulse"),
            ("0/4/buffer-size", "4294967295"),
            // 0/6 after a gap (no 0/5): not a stream of this card.
            ("0/6/type", "p"),
            ("0/6/unique-id", "pulse"),
        ],
    );
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), frontend_options());
    let mut card = events.connected(0);
    let fe = fe_dir(0);

    // Unusable streams, each with an error naming the node.
    let unusable: Vec<(String, ConfigError)> = card
        .info
        .unusable
        .iter()
        .map(|(id, e)| (format!("{}/{}", id.device, id.stream), e.clone()))
        .collect();
    assert_eq!(unusable.len(), 2, "{unusable:#?}");
    assert_eq!(unusable[0].0, "0/1");
    assert_eq!(
        unusable[0].1,
        ConfigError::Missing {
            path: "0/1/type".into()
        }
    );
    assert_eq!(unusable[0].1.to_string(), "0/1/type: missing");
    assert_eq!(unusable[1].0, "0/3");
    assert!(
        matches!(
            &unusable[1].1,
            ConfigError::ChannelRange { min: 2, max: 1, .. }
        ),
        "{:?}",
        unusable[1].1
    );
    let msg = unusable[1].1.to_string();
    assert!(
        msg.contains("channels-min 2") && msg.contains("channels-max 1"),
        "{msg}"
    );

    // Warnings for the fallbacks and the gap.
    let warned = |path: &str, f: &dyn Fn(&WarningKind) -> bool| {
        card.info
            .warnings
            .iter()
            .any(|w| w.path == path && f(&w.kind))
    };
    assert!(
        warned("0/2/sample-formats", &|k| *k == WarningKind::UnknownFormat),
        "{:#?}",
        card.info.warnings
    );
    assert!(warned("0/2/sample-formats", &|k| *k == WarningKind::EmptyList));
    assert!(warned("0/4/buffer-size", &|k| matches!(
        k,
        WarningKind::BufferClamped { to } if *to == MAX_BUFFER_SIZE
    )));
    assert!(warned("0/6", &|k| matches!(
        k,
        WarningKind::NonContiguousIndex { run: 5 }
    )));

    // The usable streams, handed over; 0/6 is not a stream at all.
    let mut usable: Vec<(u32, u32)> = card.streams.keys().copied().collect();
    usable.sort_unstable();
    assert_eq!(usable, vec![(0, 0), (0, 2), (0, 4)]);
    let s2 = card.take(0, 2);
    assert_eq!(
        s2.info().hw.formats.iter().collect::<Vec<_>>(),
        vec![PcmFormat::S16Le],
        "0/2 falls back to the card's formats"
    );
    let s4 = card.take(0, 4);
    assert_eq!(s4.info().capacity_bytes, MAX_BUFFER_SIZE);
    let s0 = card.take(0, 0);

    // Transport keys: every stream of the contiguous run (the backend binds them all, usable or
    // not), none for the stream after the gap.
    for s in 0..5 {
        assert!(
            world.read(&format!("{fe}/0/{s}/ring-ref")).is_some(),
            "0/{s} has no ring-ref"
        );
    }
    assert!(world.read(&format!("{fe}/0/6/ring-ref")).is_none());
    let bound: Vec<String> = backend
        .all_stats()
        .iter()
        .filter(|s| s.bound)
        .map(|s| format!("{}/{}", s.id.pcm, s.id.stream))
        .collect();
    assert_eq!(bound, vec!["0/0", "0/1", "0/2", "0/3", "0/4"]);

    // Everything usable plays bit-exact, together; the 1 MiB stream with a buffer to match.
    let params = s16_stereo_48k();
    let big = xen_snd_engine::PcmParams {
        buffer_frames: MAX_BUFFER_SIZE / 4,
        period_frames: 4096,
        ..params
    };
    let len = audio_bytes(&params, 3.0);
    let data: Vec<Vec<u8>> = (0..3).map(|i| playback_data(20 + i, len)).collect();
    let ids = [s0.id(), s2.id(), s4.id()];
    let mut jobs = vec![
        Job::play(s0, params, data[0].clone()),
        Job::play(s2, params, data[1].clone()),
        Job::play(s4, big, data[2].clone()),
    ];
    assert_eq!(
        jobs[2].stream().params().map(|p| p.buffer_bytes),
        Some(MAX_BUFFER_SIZE)
    );
    run_jobs(&mut jobs, |_| Flow::Continue);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            *jobs[i].stream().state(),
            StreamState::Running,
            "{}",
            describe(&jobs)
        );
        assert_backend_received(&backend, *id, &data[i]);
    }
    assert!(
        events
            .seen
            .iter()
            .all(|e| !e.starts_with("CardError") && !e.starts_with("StreamFailed")),
        "{:#?}",
        events.seen
    );
    drop(jobs);
    assert!(events
        .drain()
        .iter()
        .all(|e| !matches!(e, FrontendEvent::CardError { .. })));
    finish(events, backend);
}

#[test]
fn an_invalid_type_is_named_and_the_other_stream_uses_the_built_in_defaults() {
    // The engine never hands an unusable stream to the owner; the backend binds it all the same
    // (as snd_be binds every stream), without a usable configuration.
    let world = FakeXen::new();
    add_card(
        &world,
        0,
        &[
            ("0/0/type", "x"),
            ("0/0/unique-id", "pulse"),
            ("0/1/type", "c"),
            ("0/1/unique-id", "pulse"),
        ],
    );
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), frontend_options());
    let mut card = events.connected(0);
    assert_eq!(card.info.unusable.len(), 1);
    let (id, e) = &card.info.unusable[0];
    assert_eq!((id.device, id.stream), (0, 0));
    assert_eq!(
        e.to_string(),
        "0/0/type: invalid value \"x\": expected \"p\" (playback) or \"c\" (capture)"
    );
    assert!(card.streams.keys().all(|k| *k == (0, 1)));
    let bound = backend
        .stream_stats(be_id(*id))
        .expect("the backend bound 0/0");
    assert!(bound.bound && bound.kind.is_none(), "{bound:?}");
    // Built-in defaults apply to the capture stream: s16_le, up to 48 kHz, 1–2 channels.
    let mut capture = card.take(0, 1);
    let p = capture.info().default_params().expect("defaults");
    assert_eq!(
        (p.format, p.rate, p.channels),
        (PcmFormat::S16Le, 48_000, 2)
    );
    // An OPEN outside what the stream offers is refused by the engine, naming the stream.
    let bad = xen_snd_engine::PcmParams {
        format: PcmFormat::F32Le,
        ..p
    };
    let err = capture.open(bad).expect_err("float is not offered");
    assert!(matches!(
        err,
        StreamError::InvalidParams {
            op: StreamOp::Open,
            ..
        }
    ));
    assert!(
        err.to_string()
            .starts_with("card 0 stream 0/1: OPEN: invalid parameters"),
        "{err}"
    );
    let want = audio_bytes(&p, 1.0);
    let mut jobs = vec![Job::capture(capture, p, want)];
    run_jobs(&mut jobs, |_| Flow::Continue);
    assert_capture_pattern(jobs[0].as_capture());
    drop(jobs);
    finish(events, backend);
}
