//! A stream against a scripted backend over the fakes: control requests, the data path's ring
//! arithmetic, pacing, capture, and every validation failure.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use sndif::config::StreamKind;
use sndif::event::EventError;
use sndif::formats::PcmFormat;
use sndif::layout::{EVT_PAGE_IN_PROD, EVT_RING_LEN, RING_RSP_PROD};
use sndif::ring::RingError;
use sndif::wire::{
    Event, EventKind, HwParam, Interval, Operation, RequestBody, Response, ResponseBody, RwParams,
    TriggerType,
};
use xen_access::fake::{wait_readable, FakeXen};
use xen_snd_engine::{
    ControlReply, ManualClock, PcmParams, ProtocolError, Stream, StreamError, StreamOp,
    StreamOptions, StreamState,
};

const T0: u64 = 1_000_000_000;
const BUF: u32 = 16_384;

/// S16_LE stereo 48 kHz: 4-byte frames; 1024-frame (4096-byte) periods; the whole 16 KiB buffer.
fn params() -> PcmParams {
    PcmParams {
        format: PcmFormat::S16Le,
        rate: 48_000,
        channels: 2,
        buffer_frames: 4096,
        period_frames: 1024,
    }
}

fn setup(kind: StreamKind) -> (Arc<FakeXen>, Arc<ManualClock>, Stream, BackStream) {
    let world = FakeXen::new();
    let clock = Arc::new(ManualClock::new(T0));
    let (s, b) = standalone_pair(&world, kind, BUF, manual_options(&clock));
    (world, clock, s, b)
}

/// Opens the stream (non-blocking submit, scripted answer).
fn open(s: &mut Stream, b: &mut BackStream, now: u64) {
    s.submit_open(params(), now).expect("submit open");
    let req = b.next_request();
    assert!(matches!(req.body, RequestBody::Open(_)), "{req:?}");
    b.ok(&req);
    assert!(pump(s, now));
    let (op, result) = s.take_control_result().expect("open done");
    assert_eq!(op, StreamOp::Open);
    assert_eq!(result, Ok(ControlReply::Done));
    assert_eq!(*s.state(), StreamState::Stopped);
}

fn start(s: &mut Stream, b: &mut BackStream, now: u64) {
    s.submit_start(now).expect("submit start");
    let req = b.next_request();
    assert_eq!(req.body, RequestBody::Trigger(TriggerType::Start));
    b.ok(&req);
    assert!(pump(s, now));
    assert_eq!(*s.state(), StreamState::Running);
    s.take_control_result();
}

/// Lets the backend complete every WRITE until none is left.
fn drain_writes(s: &mut Stream, b: &mut BackStream) {
    loop {
        let mut any = false;
        while let Some(req) = b.try_request() {
            assert!(matches!(req.body, RequestBody::Write(_)), "{req:?}");
            b.ok(&req);
            any = true;
        }
        if !any {
            return;
        }
        assert!(pump(s, T0));
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
            (x >> 13) as u8
        })
        .collect()
}

fn failed_protocol(s: &Stream) -> ProtocolError {
    match s.state() {
        StreamState::Failed(StreamError::Protocol { error, stream }) => {
            assert_eq!(*stream, s.id());
            error.clone()
        }
        other => panic!("expected a protocol failure, state is {other}"),
    }
}

#[test]
fn open_sends_aligned_sizes_and_a_valid_directory() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    let active = s
        .submit_open(
            PcmParams {
                buffer_frames: 5000, // more than the 16 KiB allocated, not a period multiple
                ..params()
            },
            T0,
        )
        .expect("open");
    assert_eq!(active.buffer_bytes, 16_384);
    assert_eq!(active.period_bytes, 4096);
    assert_eq!(active.frame_bytes, 4);
    let req = b.next_request();
    let RequestBody::Open(o) = req.body else {
        panic!("expected OPEN, got {req:?}");
    };
    assert_eq!(o.rate, 48_000);
    assert_eq!(o.format, PcmFormat::S16Le);
    assert_eq!(o.channels, 2);
    assert_eq!(o.buffer_sz, 16_384);
    assert_eq!(o.period_sz, 4096);
    assert_ne!(o.gref_directory, 0);
    // The directory leads to 4 data pages the backend can map and that are the stream's buffer.
    b.ok(&req);
    assert!(pump(&mut s, T0));
    assert_eq!(*s.state(), StreamState::Stopped);
    assert_eq!(s.write(&pattern(64, 1)), 64);
    let w = b.next_request();
    assert_eq!(
        w.body,
        RequestBody::Write(RwParams {
            offset: 0,
            length: 64
        })
    );
    assert_eq!(b.buffer_bytes(0, 64), pattern(64, 1));
}

#[test]
fn open_rejects_unusable_parameters() {
    let (_w, _c, mut s, _b) = setup(StreamKind::Playback);
    let bad = [
        PcmParams {
            period_frames: 0,
            ..params()
        },
        PcmParams {
            rate: 22_050,
            ..params()
        },
        PcmParams {
            format: PcmFormat::U8,
            ..params()
        },
        PcmParams {
            channels: 3,
            ..params()
        },
        PcmParams {
            period_frames: 8192, // 32 KiB > the 16 KiB buffer
            ..params()
        },
        PcmParams {
            format: PcmFormat::Mpeg,
            ..params()
        },
    ];
    for p in bad {
        let err = s.submit_open(p, T0).expect_err("must be rejected");
        assert!(
            matches!(
                err,
                StreamError::InvalidParams {
                    op: StreamOp::Open,
                    ..
                }
            ),
            "{p:?}: {err}"
        );
        assert!(err.to_string().contains("card 0 stream 0/0"), "{err}");
    }
    assert_eq!(s.stats().requests, 0);
}

#[test]
fn reopen_closes_first() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    s.submit_open(params(), T0).expect("reopen");
    let close = b.next_request();
    assert_eq!(close.body, RequestBody::Close);
    let open2 = b.next_request();
    assert!(matches!(open2.body, RequestBody::Open(_)));
    b.ok(&close);
    b.ok(&open2);
    assert!(pump(&mut s, T0));
    assert_eq!(
        s.take_control_result(),
        Some((StreamOp::Open, Ok(ControlReply::Done)))
    );
    assert_eq!(*s.state(), StreamState::Stopped);
}

#[test]
fn control_requests_are_one_at_a_time_and_state_checked() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    assert!(matches!(
        s.submit_start(T0),
        Err(StreamError::InvalidState {
            op: StreamOp::Start,
            state: "closed",
            ..
        })
    ));
    s.submit_open(params(), T0).expect("open");
    assert!(matches!(
        s.submit_stop(T0),
        Err(StreamError::Busy {
            pending: StreamOp::Open,
            ..
        })
    ));
    let req = b.next_request();
    b.ok(&req);
    assert!(pump(&mut s, T0));
    assert!(matches!(
        s.submit_pause(T0),
        Err(StreamError::InvalidState {
            op: StreamOp::Pause,
            ..
        })
    ));
    // CLOSE of a closed stream completes without a request.
    s.submit_close(T0).expect("close");
    assert_eq!(b.next_request().body, RequestBody::Close);
}

#[test]
fn backend_error_status_is_reported_per_request() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    s.submit_open(params(), T0).expect("open");
    let req = b.next_request();
    b.respond(Response::error(req.id, Operation::Open, -3));
    assert!(pump(&mut s, T0));
    assert_eq!(
        s.take_control_result(),
        Some((
            StreamOp::Open,
            Err(StreamError::Backend {
                stream: s.id(),
                op: StreamOp::Open,
                status: -3
            })
        ))
    );
    assert_eq!(*s.state(), StreamState::Closed);
    assert_eq!(s.stats().backend_errors, 1);
    // The stream still works.
    open(&mut s, &mut b, T0);
}

#[test]
fn hw_param_query_returns_the_answer() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    let space = HwParam {
        formats: [PcmFormat::S16Le].into_iter().collect(),
        rates: Interval::new(8000, 48_000),
        channels: Interval::new(1, 2),
        buffer: Interval::new(64, 4096),
        period: Interval::new(64, 4096),
    };
    s.submit_hw_param_query(space, T0).expect("query");
    let req = b.next_request();
    assert_eq!(req.body, RequestBody::HwParamQuery(space));
    let answer = HwParam {
        rates: Interval::new(48_000, 48_000),
        ..space
    };
    b.respond(Response {
        id: req.id,
        operation: Operation::HwParamQuery,
        status: 0,
        body: ResponseBody::HwParam(answer),
    });
    assert!(pump(&mut s, T0));
    assert_eq!(
        s.take_control_result(),
        Some((StreamOp::HwParamQuery, Ok(ControlReply::HwParam(answer))))
    );
}

/// Runs a playback stream for many cycles of irregular writes against a backend that
/// completes WRITEs in order and advances the position; checks every request and the data.
#[test]
fn playback_ring_arithmetic_wraps_bounds_and_delivers_every_byte() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    let fb = 4usize;
    let sizes = [
        4096usize,
        1000 * fb,
        3 * fb,
        2500 * fb,
        17 * fb,
        4096,
        777 * fb,
    ];
    let source = pattern(2_000_000, 7);
    let mut fed = 0usize; // bytes accepted by write()
    let mut received: Vec<u8> = Vec::new(); // bytes the backend read, in WRITE order
    let mut position = 0u64;
    let mut split_at_wrap = 0;
    let mut last_end: Option<u32> = None;
    s.arm_start(T0).expect("arm start");
    let mut started = false;
    let mut cycle = 0;
    while received.len() < 400_000 {
        cycle += 1;
        assert!(cycle < 10_000, "no progress");
        let want = sizes[cycle % sizes.len()];
        let n = s.write(&source[fed..fed + want]);
        assert_eq!(n % fb, 0, "whole frames only");
        fed += n;
        // The backend takes every request that is there, checks and completes it.
        let mut in_flight = Vec::new();
        while let Some(req) = b.try_request() {
            in_flight.push(req);
        }
        let writes = in_flight
            .iter()
            .filter(|r| matches!(r.body, RequestBody::Write(_)))
            .count();
        assert!(writes <= 2, "at most 2 data requests in flight");
        for req in &in_flight {
            match req.body {
                RequestBody::Write(rw) => {
                    assert!(rw.length > 0 && rw.length % 4 == 0);
                    assert!(
                        rw.offset + rw.length <= BUF,
                        "WRITE crosses the end: {rw:?}"
                    );
                    if rw.offset == 0 && last_end == Some(BUF) {
                        split_at_wrap += 1;
                    }
                    last_end = Some(rw.offset + rw.length);
                    received.extend(b.buffer_bytes(rw.offset, rw.length));
                }
                RequestBody::Trigger(TriggerType::Start) => {
                    assert!(!started);
                    assert!(received.len() >= 8192, "START after the pre-fill");
                    started = true;
                }
                _ => panic!("unexpected {req:?}"),
            }
            b.ok(req);
        }
        // Pacing: never more than the buffer ahead of the position.
        let (written, submitted) = s.byte_counters();
        assert!(submitted <= written);
        assert!(
            written <= position + u64::from(BUF),
            "{written} vs position {position}"
        );
        // The backend plays up to what it received, a period at a time.
        let mut notified = !in_flight.is_empty();
        if started && position < received.len() as u64 {
            position = (position + 4096).min(received.len() as u64);
            b.position(position);
            notified = true;
        }
        if notified {
            assert!(pump(&mut s, T0));
        }
    }
    assert!(started);
    assert_eq!(
        &received[..],
        &source[..received.len()],
        "data arrives intact, in order"
    );
    assert!(split_at_wrap > 3, "writes were split at the buffer end");
    let st = s.stats();
    assert_eq!(st.protocol_errors, 0);
    assert_eq!(st.timeouts, 0);
    assert_eq!(st.bytes_written, received.len() as u64);
}

#[test]
fn writes_are_paced_by_the_backend_position_not_by_completion() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    assert_eq!(s.writable_frames(), 4096);
    // A PulseAudio-like backend completes WRITEs at once but plays slowly.
    let data = pattern(BUF as usize, 3);
    let mut fed = 0;
    for _ in 0..100 {
        fed += s.write(&data[fed..]);
        drain_writes(&mut s, &mut b);
        if fed == data.len() {
            break;
        }
    }
    assert_eq!(s.byte_counters(), (16_384, 16_384));
    assert_eq!(s.requests_in_flight(), 0, "every WRITE completed");
    assert_eq!(s.writable_frames(), 0, "but nothing was played yet");
    assert_eq!(s.write(&data[..64]), 0);
    start(&mut s, &mut b, T0);
    b.position(4096);
    assert!(pump(&mut s, T0 + 21_000_000));
    assert_eq!(s.writable_frames(), 1024);
    assert_eq!(s.delay_frames(), 3072);
    assert_eq!(s.position_frames(), 1024);
}

#[test]
fn armed_start_follows_the_prefill_writes() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    s.arm_start(T0).expect("arm");
    assert_eq!(s.control_pending(), Some(StreamOp::Start));
    assert!(b.try_request().is_none(), "no START before the pre-fill");
    // Half the buffer (8 KiB) is the default target; write 6 KiB first.
    assert_eq!(s.write(&pattern(6144, 1)), 6144);
    let w1 = b.next_request();
    let w2 = b.next_request();
    assert!(matches!(w1.body, RequestBody::Write(_)));
    assert!(matches!(w2.body, RequestBody::Write(_)));
    b.ok(&w1);
    b.ok(&w2);
    assert!(pump(&mut s, T0));
    assert!(b.try_request().is_none(), "still below the target");
    assert_eq!(s.write(&pattern(2048, 2)), 2048);
    let w3 = b.next_request();
    assert_eq!(
        w3.body,
        RequestBody::Write(RwParams {
            offset: 6144,
            length: 2048
        })
    );
    let st = b.next_request();
    assert_eq!(st.body, RequestBody::Trigger(TriggerType::Start));
    b.ok(&w3);
    b.ok(&st);
    assert!(pump(&mut s, T0));
    assert_eq!(*s.state(), StreamState::Running);
    assert_eq!(
        s.take_control_result(),
        Some((StreamOp::Start, Ok(ControlReply::Done)))
    );
}

#[test]
fn stop_discards_unsubmitted_data_and_restarts_cleanly() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    start(&mut s, &mut b, T0);
    // Two WRITEs in flight, 4 KiB more waiting.
    assert_eq!(s.write(&pattern(12_288, 5)), 12_288);
    let w1 = b.next_request();
    let w2 = b.next_request();
    s.submit_stop(T0).expect("stop");
    let stop = b.next_request();
    assert_eq!(stop.body, RequestBody::Trigger(TriggerType::Stop));
    b.ok(&w1);
    b.ok(&w2);
    b.ok(&stop);
    assert!(pump(&mut s, T0));
    assert_eq!(*s.state(), StreamState::Stopped);
    assert_eq!(
        s.byte_counters(),
        (8192, 8192),
        "the unsubmitted 4 KiB are dropped"
    );
    assert!(b.try_request().is_none());
    assert_eq!(
        s.writable_frames(),
        4096,
        "stopped: the whole buffer is free again"
    );
}

#[test]
fn capture_reads_ahead_returns_data_in_order_and_counts_overruns() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Capture);
    open(&mut s, &mut b, T0);
    start(&mut s, &mut b, T0);
    let captured = pattern(1_000_000, 11);
    let mut produced = 0usize;
    let mut got: Vec<u8> = Vec::new();
    // Serve 40 periods; the reader takes everything each round.
    for _ in 0..40 {
        let mut reqs = Vec::new();
        while let Some(r) = b.try_request() {
            reqs.push(r);
        }
        assert!(!reqs.is_empty() && reqs.len() <= 2, "{} READs", reqs.len());
        for req in reqs {
            let RequestBody::Read(rw) = req.body else {
                panic!("unexpected {req:?}");
            };
            assert!(rw.offset + rw.length <= BUF);
            assert_eq!(rw.length, 4096, "one period per READ");
            b.write_buffer(
                rw.offset,
                &captured[produced..produced + rw.length as usize],
            );
            produced += rw.length as usize;
            b.ok(&req);
        }
        assert!(pump(&mut s, T0));
        let mut out = vec![0u8; 10_000];
        let avail = s.readable_frames() as usize * 4;
        let n = s.read(&mut out);
        assert_eq!(n, avail.min(10_000 / 4 * 4));
        got.extend_from_slice(&out[..n]);
    }
    while s.readable_frames() > 0 {
        let mut out = vec![0u8; 4096];
        let n = s.read(&mut out);
        got.extend_from_slice(&out[..n]);
    }
    assert_eq!(got.len(), produced);
    assert_eq!(&got[..], &captured[..produced]);
    assert_eq!(s.stats().overruns, 0);
    assert_eq!(s.stats().bytes_read, produced as u64);

    // Now the reader stops reading: READs continue until the buffer is full, then stop.
    for _ in 0..10 {
        while let Some(req) = b.try_request() {
            b.ok(&req);
        }
        if !wait_readable(s.fd(), Duration::from_millis(200)) {
            break;
        }
        s.service(T0);
    }
    assert_eq!(
        s.readable_frames(),
        4096,
        "the whole buffer holds unread data"
    );
    assert_eq!(
        s.stats().overruns,
        0,
        "full, but the backend holds nothing beyond the READs yet"
    );
    // The backend's position passes what was requested: it holds data there is no room for.
    let (requested, _) = s.byte_counters();
    b.position(requested + 4096);
    assert!(pump(&mut s, T0));
    assert_eq!(s.stats().overruns, 1, "one overrun episode");
    b.position(requested + 8192);
    assert!(pump(&mut s, T0));
    assert_eq!(s.stats().overruns, 1, "still the same episode");
    assert!(
        b.try_request().is_none(),
        "no READ while the buffer is full"
    );
    let mut out = vec![0u8; 4096];
    assert_eq!(s.read(&mut out), 4096);
    assert!(
        b.try_request().is_some(),
        "reading frees space, READs resume"
    );
}

#[test]
fn a_failed_read_yields_silence() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Capture);
    open(&mut s, &mut b, T0);
    start(&mut s, &mut b, T0);
    let r1 = b.next_request();
    let RequestBody::Read(rw) = r1.body else {
        panic!("expected READ");
    };
    b.write_buffer(rw.offset, &vec![0x55; rw.length as usize]);
    b.respond(Response::error(r1.id, Operation::Read, -5));
    assert!(pump(&mut s, T0));
    let mut out = vec![0xffu8; 4096];
    assert_eq!(s.read(&mut out), 4096);
    assert!(out.iter().all(|b| *b == 0), "S16 silence is zero");
    assert_eq!(s.stats().backend_errors, 1);
    assert_eq!(*s.state(), StreamState::Running);
}

#[test]
fn positions_frozen_backwards_and_ahead_are_counted_not_fatal() {
    let (_w, clock, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    assert_eq!(s.write(&pattern(8192, 1)), 8192);
    for _ in 0..2 {
        let r = b.next_request();
        b.ok(&r);
    }
    start(&mut s, &mut b, T0);
    let mut now = T0;
    let mut step = |s: &mut Stream, b: &mut BackStream, pos: u64| {
        now += 21_333_333;
        clock.set(now);
        b.position(pos);
        assert!(pump(s, now));
    };
    step(&mut s, &mut b, 4096);
    assert_eq!(s.position_frames(), 1024);
    step(&mut s, &mut b, 4096); // frozen
    step(&mut s, &mut b, 1000); // backwards: rebased
    assert_eq!(s.position_frames(), 1024);
    step(&mut s, &mut b, 2000); // +1000 from the new base
    assert_eq!(s.tracker().position_bytes(), 5096);
    step(&mut s, &mut b, 1_000_000); // far ahead of the 8192 bytes submitted
    assert_eq!(s.tracker().position_bytes(), 8192);
    let st = s.stats();
    assert_eq!(st.frozen_positions, 1);
    assert_eq!(st.position_restarts, 1);
    assert_eq!(st.underruns, 1);
    assert_eq!(st.underrun_bytes, 1_000_000 - 2000 - 3096);
    assert_eq!(*s.state(), StreamState::Running);
    assert_eq!(s.delay_frames(), 0);
}

#[test]
fn bogus_rsp_prod_fails_the_stream() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    s.submit_open(params(), T0).expect("open");
    let _ = b.next_request();
    b.ring_mem.store_u32(RING_RSP_PROD, 1000).expect("poke");
    b.evtchn.notify(b.req_port).expect("notify");
    assert!(pump(&mut s, T0));
    assert!(matches!(
        failed_protocol(&s),
        ProtocolError::Ring(RingError::ResponseOverflow { rsp_prod: 1000, .. })
    ));
    // The pending OPEN fails with the same error; further operations are refused.
    let (op, result) = s.take_control_result().expect("result");
    assert_eq!(op, StreamOp::Open);
    assert!(matches!(result, Err(StreamError::Protocol { .. })));
    assert!(matches!(
        s.submit_close(T0),
        Err(StreamError::Failed { .. })
    ));
    assert_eq!(s.write(&[0; 64]), 0);
    assert_eq!(s.stats().protocol_errors, 1);
}

#[test]
fn response_with_unknown_id_fails_the_stream() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    s.submit_open(params(), T0).expect("open");
    let req = b.next_request();
    b.respond(Response::ok(req.id.wrapping_add(7), Operation::Open));
    assert!(pump(&mut s, T0));
    assert_eq!(
        failed_protocol(&s),
        ProtocolError::UnknownId {
            id: req.id.wrapping_add(7),
            operation: Operation::Open
        }
    );
}

#[test]
fn response_with_wrong_operation_fails_the_stream() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    s.submit_open(params(), T0).expect("open");
    let req = b.next_request();
    b.respond(Response::ok(req.id, Operation::Close));
    assert!(pump(&mut s, T0));
    assert_eq!(
        failed_protocol(&s),
        ProtocolError::WrongOperation {
            id: req.id,
            expected: Operation::Open,
            got: Operation::Close
        }
    );
}

#[test]
fn undecodable_response_fails_the_stream() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    s.submit_open(params(), T0).expect("open");
    let req = b.next_request();
    b.respond_raw(&Response::encode_raw(req.id, 77, 0));
    assert!(pump(&mut s, T0));
    assert!(matches!(
        failed_protocol(&s),
        ProtocolError::Ring(RingError::Malformed { .. })
    ));
}

#[test]
fn timeout_then_late_response() {
    let (_w, clock, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    s.submit_start(T0).expect("start");
    let req = b.next_request();
    // Before the deadline nothing happens.
    let r = s.service(T0 + 2_999_000_000);
    assert_eq!(r.timed_out, 0);
    assert_eq!(s.control_pending(), Some(StreamOp::Start));
    clock.set(T0 + 3_000_000_000);
    let r = s.service(T0 + 3_000_000_000);
    assert_eq!(r.timed_out, 1);
    assert!(r.control_done);
    assert_eq!(
        s.take_control_result(),
        Some((
            StreamOp::Start,
            Err(StreamError::Timeout {
                stream: s.id(),
                op: StreamOp::Start,
                timeout_ms: 3000
            })
        ))
    );
    assert_eq!(s.stats().timeouts, 1);
    assert_eq!(
        *s.state(),
        StreamState::Stopped,
        "a timeout alone does not fail the stream"
    );
    // The backend answers after all: a late response is a protocol violation.
    b.ok(&req);
    assert!(pump(&mut s, T0 + 3_100_000_000));
    assert_eq!(
        failed_protocol(&s),
        ProtocolError::LateResponse {
            id: req.id,
            operation: Operation::Trigger
        }
    );
}

#[test]
fn event_flood_is_consumed_in_bounded_batches() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    assert_eq!(s.write(&pattern(16_384, 1)), 16_384);
    drain_writes(&mut s, &mut b);
    start(&mut s, &mut b, T0);
    // Hundreds of events at once: the page holds 63, the rest are dropped by the backend.
    let mut dropped = 0;
    for i in 1..=300u64 {
        let ev = Event {
            id: i as u16,
            kind: EventKind::CurPos { position: i * 4 },
        };
        match b.events.push(&ev) {
            Ok(()) => b.evtchn.notify(b.evt_port).expect("notify"),
            Err(EventError::Full { .. }) => dropped += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(dropped, 300 - EVT_RING_LEN as usize);
    let r = {
        assert!(wait_readable(s.fd(), WAIT));
        s.service(T0)
    };
    assert_eq!(r.events, EVT_RING_LEN);
    assert_eq!(s.tracker().position_bytes(), 63 * 4);
    assert_eq!(*s.state(), StreamState::Running);
    // The backend can send again (in_cons advanced).
    b.position(1000);
    assert!(pump(&mut s, T0));
    assert_eq!(s.tracker().position_bytes(), 1000);
    assert_eq!(s.stats().events, 64);
}

#[test]
fn bogus_in_prod_fails_the_stream() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    b.evt_mem.store_u32(EVT_PAGE_IN_PROD, 5000).expect("poke");
    b.evtchn.notify(b.evt_port).expect("notify");
    assert!(pump(&mut s, T0));
    assert!(matches!(
        failed_protocol(&s),
        ProtocolError::EventPage(EventError::Overflow { in_prod: 5000, .. })
    ));
}

#[test]
fn unknown_event_types_are_skipped() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    let mut bytes = Event {
        id: 1,
        kind: EventKind::CurPos { position: 8 },
    }
    .encode();
    bytes[2] = 9; // no such event type
    b.events.push_bytes(&bytes).expect("push");
    b.evtchn.notify(b.evt_port).expect("notify");
    assert!(pump(&mut s, T0));
    assert_eq!(*s.state(), StreamState::Stopped);
    assert_eq!(s.stats().ignored_events, 1);
}

#[test]
fn a_failed_stream_does_not_affect_another() {
    let world = FakeXen::new();
    let clock = Arc::new(ManualClock::new(T0));
    let (mut a, mut ba) =
        standalone_pair(&world, StreamKind::Playback, BUF, manual_options(&clock));
    let (mut c, mut bc) =
        standalone_pair(&world, StreamKind::Playback, BUF, manual_options(&clock));
    a.submit_open(params(), T0).expect("open a");
    c.submit_open(params(), T0).expect("open c");
    let ra = ba.next_request();
    let rc = bc.next_request();
    ba.respond(Response::ok(ra.id ^ 0x100, Operation::Open));
    bc.ok(&rc);
    assert!(pump(&mut a, T0));
    assert!(pump(&mut c, T0));
    assert!(matches!(a.state(), StreamState::Failed(_)));
    assert_eq!(*c.state(), StreamState::Stopped);
    assert_eq!(c.write(&pattern(64, 0)), 64);
    assert!(matches!(bc.next_request().body, RequestBody::Write(_)));
}

#[test]
fn blocking_helpers_against_a_backend_thread() {
    let world = FakeXen::new();
    let opts = StreamOptions {
        request_timeout: Duration::from_secs(5),
        ..StreamOptions::default()
    };
    let (mut s, mut b) = standalone_pair(&world, StreamKind::Playback, BUF, opts);
    let backend = std::thread::spawn(move || {
        let mut ops = Vec::new();
        for _ in 0..5 {
            let r = b.serve_ok();
            ops.push(r.body);
        }
        ops
    });
    let active = s.open(params()).expect("open");
    assert_eq!(active.buffer_frames(), 4096);
    s.start().expect("start");
    s.pause().expect("pause");
    s.resume().expect("resume");
    s.stop().expect("stop");
    assert_eq!(*s.state(), StreamState::Stopped);
    let ops = backend.join().expect("backend thread");
    assert!(matches!(ops[0], RequestBody::Open(_)));
    assert_eq!(
        &ops[1..],
        &[
            RequestBody::Trigger(TriggerType::Start),
            RequestBody::Trigger(TriggerType::Pause),
            RequestBody::Trigger(TriggerType::Resume),
            RequestBody::Trigger(TriggerType::Stop),
        ]
    );
}

#[test]
fn blocking_helper_times_out_on_a_silent_backend() {
    let world = FakeXen::new();
    let opts = StreamOptions {
        request_timeout: Duration::from_millis(100),
        ..StreamOptions::default()
    };
    let (mut s, mut b) = standalone_pair(&world, StreamKind::Playback, BUF, opts);
    let err = s.open(params()).expect_err("nobody answers");
    assert!(
        matches!(
            err,
            StreamError::Timeout {
                op: StreamOp::Open,
                timeout_ms: 100,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(s.stats().timeouts, 1);
    assert!(matches!(b.next_request().body, RequestBody::Open(_)));
}

#[test]
fn event_ids_need_not_be_sequential() {
    let (_w, _c, mut s, mut b) = setup(StreamKind::Capture);
    open(&mut s, &mut b, T0);
    for (id, pos) in [(5u16, 100u64), (900, 200), (3, 300)] {
        b.events
            .push(&Event {
                id,
                kind: EventKind::CurPos { position: pos },
            })
            .expect("push");
        b.evtchn.notify(b.evt_port).expect("notify");
    }
    assert!(pump(&mut s, T0));
    assert_eq!(s.tracker().position_bytes(), 300);
    assert_eq!(s.stats().events, 3);
}

/// The stream feeds its positions into the DLL: a backend running 0.1 % fast is measured.
#[test]
fn the_stream_clock_measures_a_drifting_backend() {
    let (_w, clock, mut s, mut b) = setup(StreamKind::Playback);
    open(&mut s, &mut b, T0);
    s.arm_start(T0).expect("arm");
    let data = pattern(1 << 22, 9);
    let mut fed = 0;
    let mut received = 0u64;
    let mut now = T0;
    let mut played = 0.0f64;
    // 48 kHz × 4 bytes, 20 ms per step, backend 0.1 % fast.
    let per_step = 48_000.0 * 4.0 * 0.020 * 1.001;
    let mut started = false;
    for _ in 0..1500 {
        let n = s.write(&data[fed % (1 << 21)..fed % (1 << 21) + 8192]);
        fed += n;
        while let Some(req) = b.try_request() {
            match req.body {
                RequestBody::Write(rw) => received += u64::from(rw.length),
                RequestBody::Trigger(TriggerType::Start) => started = true,
                _ => panic!("{req:?}"),
            }
            b.ok(&req);
        }
        now += 20_000_000;
        clock.set(now);
        if started {
            played += per_step;
            let pos = (played as u64).min(received);
            b.position(pos);
        }
        assert!(pump(&mut s, now));
    }
    let est = s.rate_estimator().expect("estimator");
    assert!(est.updates() > 1000);
    assert!(
        (est.rate_ratio() - 1.001).abs() < 5e-5,
        "ratio {}",
        est.rate_ratio()
    );
    assert_eq!(s.stats().underruns, 0);
    // The prediction for "now" is within a few frames of the last reported position.
    let predicted = est.predicted_position(now);
    let reported = s.position_frames() as f64;
    assert!(
        (predicted - reported).abs() < 16.0,
        "{predicted} vs {reported}"
    );
}
