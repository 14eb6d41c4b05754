//! Each misbehaviour produces the documented bytes on the ring or event page.

mod common;

use std::time::Duration;

use common::*;
use sndif::layout::{EVT_PAGE_IN_PROD, RING_RSP_PROD};
use sndif::{EventError, EventKind, PcmFormat, RequestBody, RingError, TriggerType};
use xen_access::fake::wait_readable;
use xen_snd_backend::{LogWhat, Misbehave, StreamId};

const PLAY: StreamId = StreamId::new(1, 0, 0, 0);
const CAP: StreamId = StreamId::new(1, 0, 0, 1);
const PERIOD: u32 = 4800;
const BUF: u32 = 4 * PERIOD;
const MS25: Duration = Duration::from_millis(25);

fn pos(ev: Option<sndif::Event>) -> (u16, u64) {
    let ev = ev.expect("an event");
    let EventKind::CurPos { position } = ev.kind;
    (ev.id, position)
}

/// Connected, capture stream open and running (a clock advance then yields an event, which
/// proves the worker has seen the advance).
fn running_capture() -> Connected {
    let mut c = connected();
    let s = c.fe.s(1);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    assert_eq!(s.trigger(TriggerType::Start).status, 0);
    c
}

#[test]
fn late_answers_after_the_delay() {
    let mut c = running_capture();
    let clock = c.env.clock.clone();
    c.backend
        .set_misbehave(CAP, Misbehave::Late(Duration::from_millis(60)));
    let s = c.fe.s(1);
    let id = s.send(RequestBody::HwParamQuery(full_space()));
    c.records.until(
        "held",
        |r| matches!(&r.what, LogWhat::Message(m) if m.contains("held until clock 60ms")),
    );
    clock.advance(MS25);
    assert_eq!(pos(s.wait_event(T)), (0, 4800));
    clock.advance(MS25);
    assert_eq!(pos(s.wait_event(T)), (1, 9600));
    assert!(s.no_response_now(), "answered before the delay");
    clock.advance(MS25);
    let r = s.wait_response(T).expect("late response").expect("valid");
    assert_eq!((r.id, r.status), (id, 0));
    // Back to normal.
    c.backend.set_misbehave(CAP, Misbehave::None);
    assert_eq!(s.request(RequestBody::Close).status, 0);
}

#[test]
fn error_status_is_forced_and_nothing_executes() {
    let mut c = connected();
    c.backend.set_misbehave(PLAY, Misbehave::ErrorStatus(-5));
    assert_eq!(c.backend.misbehave(PLAY), Misbehave::ErrorStatus(-5));
    let s = c.fe.s(0);
    let r = s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD);
    assert_eq!(r.status, -5);
    assert_eq!(r.body, sndif::ResponseBody::Empty);
    let st = c.backend.stream_stats(PLAY).expect("stats");
    assert_eq!(st.opens, 0);
    assert_eq!(st.error_responses, 1);
    // The other stream is unaffected.
    assert_eq!(c.fe.s(1).request(RequestBody::Close).status, 0);
}

#[test]
fn stall_never_answers_until_released() {
    let mut c = connected();
    c.backend.set_misbehave(PLAY, Misbehave::Stall);
    let s = c.fe.s(0);
    let first = s.send(RequestBody::HwParamQuery(full_space()));
    c.records.until(
        "stall",
        |r| matches!(&r.what, LogWhat::Message(m) if m.contains("stalling request id 0")),
    );
    let second = s.send(RequestBody::Close);
    assert!(s.no_response_now());
    // Clearing the setting executes and answers the stalled request, then the next one.
    c.backend.set_misbehave(PLAY, Misbehave::None);
    let r = s.wait_response(T).expect("released").expect("valid");
    assert_eq!((r.id, r.status), (first, 0));
    let r = s.wait_response(T).expect("next").expect("valid");
    assert_eq!((r.id, r.status), (second, 0));
}

#[test]
fn bogus_rsp_prod_is_1000_ahead() {
    let mut c = connected();
    let s = c.fe.s(0);
    assert_eq!(s.request(RequestBody::Close).status, 0);
    assert_eq!(s.ring.mem().load_u32(RING_RSP_PROD).expect("load"), 1);
    c.backend.set_misbehave(PLAY, Misbehave::BogusRspProd);
    assert!(wait_readable(s.evtchn.fd(), T), "notified");
    let deadline = std::time::Instant::now() + T;
    while s.ring.mem().load_u32(RING_RSP_PROD).expect("load") == 1 {
        assert!(std::time::Instant::now() < deadline);
        wait_readable(s.evtchn.fd(), Duration::from_millis(10));
    }
    assert_eq!(s.ring.mem().load_u32(RING_RSP_PROD).expect("load"), 1001);
    assert!(matches!(
        s.ring.take_response(),
        Err(RingError::ResponseOverflow { rsp_prod: 1001, .. })
    ));
    // One-shot.
    assert_eq!(c.backend.misbehave(PLAY), Misbehave::None);
}

#[test]
fn bogus_in_prod_is_1000_ahead() {
    let mut c = connected();
    let s = c.fe.s(1);
    c.backend.set_misbehave(CAP, Misbehave::BogusInProd);
    let deadline = std::time::Instant::now() + T;
    while s.events.mem().load_u32(EVT_PAGE_IN_PROD).expect("load") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "in_prod never changed"
        );
        wait_readable(s.evtchn.fd(), Duration::from_millis(10));
    }
    assert_eq!(
        s.events.mem().load_u32(EVT_PAGE_IN_PROD).expect("load"),
        1000
    );
    assert!(matches!(
        s.events.take(),
        Err(EventError::Overflow { in_prod: 1000, .. })
    ));
    assert_eq!(c.backend.misbehave(CAP), Misbehave::None);
}

#[test]
fn wrong_id_flips_the_top_bit() {
    let mut c = connected();
    c.backend.set_misbehave(PLAY, Misbehave::WrongId);
    let s = c.fe.s(0);
    let id = s.send(RequestBody::Close);
    let r = s.wait_response(T).expect("response").expect("valid");
    assert_eq!(r.id, id ^ 0x8000);
    assert_eq!(r.status, 0);
}

#[test]
fn position_offsets_go_backwards_and_past_the_data() {
    let mut c = connected();
    let clock = c.env.clock.clone();
    let s = c.fe.s(0);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    assert_eq!(s.write(0, &vec![1u8; 19200]).status, 0);
    assert_eq!(s.trigger(TriggerType::Start).status, 0);
    clock.advance(MS25);
    assert_eq!(pos(s.wait_event(T)), (0, 4800));
    c.backend
        .set_misbehave(PLAY, Misbehave::PositionOffset(-7000));
    clock.advance(MS25);
    assert_eq!(pos(s.wait_event(T)), (1, 2600), "9600 − 7000: backwards");
    c.backend
        .set_misbehave(PLAY, Misbehave::PositionOffset(100_000));
    clock.advance(MS25);
    assert_eq!(pos(s.wait_event(T)), (2, 114_400), "past the 19200 written");
    c.backend.set_misbehave(PLAY, Misbehave::None);
    clock.advance(MS25);
    assert_eq!(pos(s.wait_event(T)), (3, 19200));
}

#[test]
fn event_flood_fills_the_page_and_drops_with_ids() {
    let mut c = running_capture();
    let clock = c.env.clock.clone();
    c.backend.set_misbehave(CAP, Misbehave::EventFlood(100));
    let s = c.fe.s(1);
    // Wait until the flood is done (the stats show all 100).
    let deadline = std::time::Instant::now() + T;
    loop {
        let st = c.backend.stream_stats(CAP).expect("stats");
        if st.events_sent + st.events_dropped == 100 {
            assert_eq!((st.events_sent, st.events_dropped), (63, 37));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flood incomplete: {st:?}"
        );
        wait_readable(s.evtchn.fd(), Duration::from_millis(10));
    }
    for k in 0..63u16 {
        assert_eq!(pos(s.wait_event(T)), (k, 0));
    }
    assert!(s.wait_event(Duration::ZERO).is_none());
    // Dropped events consumed ids 63..=99: the next one is 100.
    clock.advance(MS25);
    assert_eq!(pos(s.wait_event(T)), (100, 4800));
}

#[test]
fn misbehave_set_before_bind_applies_at_bind() {
    let env = Env::new();
    let (opts, _rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("1"), &basic_config());
    let mut fe = Fe::new(&env.world, 1, 0);
    let backend = env.start(opts);
    backend.set_misbehave(PLAY, Misbehave::ErrorStatus(-95));
    fe.connect(&["0/0", "0/1"]);
    assert_eq!(fe.s(0).request(RequestBody::Close).status, -95);
    assert_eq!(fe.s(1).request(RequestBody::Close).status, 0);
}
