//! The volume operations against the reference backend in the test world: values reach the
//! backend, a backend without volume control refuses (the probe), and the scratch region never
//! mixes with audio.

use std::time::{Duration, Instant};

use sndif::config::StreamKind;
use sndif::formats::PcmFormat;
use xen_snd_backend::{LogRecord, LogWhat};

use crate::error::{StreamError, StreamOp};
use crate::stream::{PcmParams, Stream, StreamState};
use crate::testworld::{Spec, TestWorld};
use crate::{Frontend, FrontendEvent, FrontendOptions};

const WAIT: Duration = Duration::from_secs(10);

fn connect(spec: &str) -> (TestWorld, Frontend, Vec<Stream>) {
    let world = TestWorld::start(&Spec::parse(spec).expect("spec")).expect("world");
    let fe = Frontend::start(world.services(), FrontendOptions::default()).expect("frontend");
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match fe.next_event(left) {
            Some(FrontendEvent::CardConnected { streams, .. }) => return (world, fe, streams),
            Some(_) => {}
            None => panic!("no CardConnected within {WAIT:?}"),
        }
    }
}

fn take(streams: &mut Vec<Stream>, kind: StreamKind) -> Stream {
    let i = streams
        .iter()
        .position(|s| s.kind() == kind)
        .expect("a stream of that kind");
    streams.swap_remove(i)
}

fn params() -> PcmParams {
    PcmParams {
        format: PcmFormat::S16Le,
        rate: 48_000,
        channels: 2,
        buffer_frames: 4 * 960,
        period_frames: 960,
    }
}

/// The detail strings of the backend's records of `op` requests, in order.
fn details(world: &TestWorld, op: &str) -> Vec<(i32, String)> {
    world
        .records()
        .into_iter()
        .filter_map(|r: LogRecord| match r.what {
            LogWhat::Request {
                op: o,
                status,
                detail,
                ..
            } if o == op => Some((status, detail)),
            _ => None,
        })
        .collect()
}

#[test]
fn volume_and_mute_reach_a_backend_that_serves_them() {
    let (world, mut fe, mut streams) = connect("preset=two-stream; volume=on");
    let mut s = take(&mut streams, StreamKind::Playback);
    assert!(matches!(
        s.set_volume(&[0, 0]),
        Err(StreamError::InvalidState {
            op: StreamOp::SetVolume,
            ..
        })
    ));
    s.open(params()).expect("open");
    assert!(matches!(
        s.set_volume(&[1]),
        Err(StreamError::InvalidParams { .. })
    ));
    assert_eq!(s.get_volume().expect("get"), vec![0, 0], "0 dB initially");
    s.set_volume(&[-6000, -12_500]).expect("set");
    assert_eq!(s.get_volume().expect("get"), vec![-6000, -12_500]);
    s.mute(true, &[true, false]).expect("mute");
    s.mute(false, &[true, true]).expect("unmute");
    let set = details(&world, "SET_VOLUME");
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(set[0].0, 0);
    assert!(set[0].1.contains("volume [-6000, -12500]"), "{set:?}");
    let mute = details(&world, "MUTE");
    assert!(mute[0].1.contains("mute [true, false]"), "{mute:?}");
    let unmute = details(&world, "UNMUTE");
    assert!(unmute[0].1.contains("mute [false, false]"), "{unmute:?}");
    assert_eq!(s.stats().backend_errors, 0);
    s.close().expect("close");
    drop(s);
    drop(streams);
    fe.shutdown().expect("shutdown");
}

#[test]
fn a_backend_without_volume_control_refuses_the_probe() {
    let (_world, mut fe, mut streams) = connect("preset=two-stream");
    let mut s = take(&mut streams, StreamKind::Playback);
    s.open(params()).expect("open");
    match s.get_volume() {
        Err(StreamError::Backend {
            op: StreamOp::GetVolume,
            status,
            ..
        }) => assert_eq!(status, -22, "snd_be's -EINVAL"),
        other => panic!("unexpected {other:?}"),
    }
    // The stream is fine afterwards.
    assert_eq!(*s.state(), StreamState::Stopped);
    s.close().expect("close");
    drop(s);
    drop(streams);
    fe.shutdown().expect("shutdown");
}

fn now() -> u64 {
    crate::time::Clock::now_ns(&crate::time::MonotonicClock)
}

/// Services `s` until its pending control request (if any) completes (bounded); `each` runs
/// after every service call (e.g. to keep the data flowing).
fn settle(s: &mut Stream, mut each: impl FnMut(&mut Stream)) -> Result<(), StreamError> {
    let deadline = Instant::now() + WAIT;
    if s.control_pending().is_none() {
        return match s.take_control_result() {
            Some((_, r)) => r.map(|_| ()),
            None => Ok(()),
        };
    }
    loop {
        s.service(now());
        each(s);
        if let Some((_, r)) = s.take_control_result() {
            return r.map(|_| ());
        }
        assert!(Instant::now() < deadline, "no control response");
        let _ = crate::sys::wait_readable(s.fd(), Some(Duration::from_millis(20)));
    }
}

#[test]
fn volume_values_never_mix_with_playback_audio() {
    let (world, mut fe, mut streams) = connect("preset=two-stream; volume=on");
    let mut s = take(&mut streams, StreamKind::Playback);
    let active = s.open(params()).expect("open");
    let buffer = usize::try_from(active.buffer_bytes).expect("size");
    let data: Vec<u8> = (0..8 * buffer).map(|i| (i % 251) as u8 + 1).collect();
    let mut at = s.write(&data[..buffer / 2]);
    assert_eq!(at, buffer / 2);
    // A volume request in flight takes its region out of the writable space.
    let free_before = s.writable_frames();
    s.submit_set_volume(&[i32::MIN, i32::MAX], now())
        .expect("submit");
    assert!(s.writable_frames() < free_before);
    settle(&mut s, |s| at += s.write(&data[at..])).expect("set volume");
    s.start().expect("start");
    // Keep writing, with volume requests in flight again and again.
    let deadline = Instant::now() + WAIT;
    let mut requests = 1;
    while at < data.len() || requests < 5 {
        assert!(Instant::now() < deadline, "playback did not progress");
        s.service(now());
        if let Some((_, r)) = s.take_control_result() {
            r.expect("volume request");
        }
        if s.control_pending().is_none() {
            let v = -requests * 100;
            if s.submit_set_volume(&[v, v], now()).is_ok() {
                requests += 1;
            }
        }
        at += s.write(&data[at..]);
        let _ = crate::sys::wait_readable(s.fd(), Some(Duration::from_millis(20)));
    }
    settle(&mut s, |_| {}).ok();
    s.stop().expect("stop");
    s.close().expect("close");
    let id = s.id();
    drop(s);
    drop(streams);
    let stats = world
        .backend_stats()
        .into_iter()
        .find(|st| st.id.dev == id.card && st.id.pcm == id.device && st.id.stream == id.stream)
        .expect("backend stats");
    assert_eq!(stats.bytes_received, data.len() as u64);
    assert_eq!(
        stats.sha256_hex,
        xen_snd_backend::sha256_hex(&data),
        "exactly the audio written, no volume values"
    );
    let set = details(&world, "SET_VOLUME");
    assert!(
        requests > 3,
        "volume requests overlapped the audio: {requests}"
    );
    assert!(
        set.iter()
            .any(|(st, d)| *st == 0 && d.contains("volume [-2147483648, 2147483647]")),
        "{set:?}"
    );
    assert!(set.iter().all(|(st, _)| *st == 0), "{set:?}");
    fe.shutdown().expect("shutdown");
}

#[test]
fn capture_keeps_the_values_out_of_its_reads_and_reports_no_room() {
    let (_world, mut fe, mut streams) = connect("preset=two-stream; volume=on");
    let mut s = take(&mut streams, StreamKind::Capture);
    let active = s.open(params()).expect("open");
    s.start().expect("start");
    let id = s.id();
    let seed = xen_snd_backend::stream_seed(xen_snd_backend::StreamId::new(
        crate::testworld::GUEST,
        id.card,
        id.device,
        id.stream,
    ));
    // Read about half a second while GET_VOLUME requests come and go: what is read is exactly
    // the backend's pattern (a GET_VOLUME answer in the audio would show as zeros).
    let want = 48_000 * 4 / 2;
    let mut got = Vec::new();
    let mut buf = vec![0u8; usize::try_from(active.period_bytes).expect("size")];
    let mut requests = 0;
    let deadline = Instant::now() + WAIT;
    while got.len() < want || requests < 5 {
        assert!(Instant::now() < deadline, "capture did not progress");
        s.service(now());
        if let Some((_, r)) = s.take_control_result() {
            assert_eq!(r.map(|_| ()), Ok(()));
        }
        if s.control_pending().is_none() && s.submit_get_volume(now()).is_ok() {
            requests += 1;
        }
        let n = s.read(&mut buf);
        got.extend_from_slice(&buf[..n]);
        let _ = crate::sys::wait_readable(s.fd(), Some(Duration::from_millis(20)));
    }
    assert!(requests >= 5, "{requests}");
    assert_eq!(
        got,
        xen_snd_backend::pattern_bytes(seed, 0, got.len()),
        "captured audio is the pattern"
    );
    settle(&mut s, |_| {}).ok();
    // Let the READs fill the whole buffer without reading: no room for values any more.
    let deadline = Instant::now() + WAIT;
    while s.stats().overruns == 0 {
        assert!(Instant::now() < deadline, "the buffer never filled");
        s.service(now());
        let _ = crate::sys::wait_readable(s.fd(), Some(Duration::from_millis(20)));
    }
    // No room for the values — unless an earlier NoRoom during the reads above already made the
    // reads keep room for them (timing-dependent), in which case the request goes out in that
    // room and is answered.
    match s.submit_get_volume(now()) {
        Err(StreamError::NoRoom {
            op: StreamOp::GetVolume,
            ..
        }) => {}
        Ok(()) => assert_eq!(settle(&mut s, |_| {}), Ok(())),
        other => panic!("GET_VOLUME with a full capture buffer: {other:?}"),
    }
    // Stopped, nothing is read ahead: reading frees room for the values.
    s.stop().expect("stop");
    assert_eq!(s.read(&mut buf), buf.len());
    assert_eq!(s.get_volume().expect("get"), vec![0, 0]);
    s.close().expect("close");
    drop(s);
    drop(streams);
    fe.shutdown().expect("shutdown");
}
