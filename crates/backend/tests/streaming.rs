//! Requests, data and CUR_POS against a hand-written frontend.

mod common;

use std::time::Duration;

use common::*;
use sndif::layout::{REQ_OP, RING_REQ_PROD, RING_SLOTS, RING_SLOT_SIZE};
use sndif::wire::{HwParam, Interval, OpenParams, RwParams};
use sndif::{EventKind, FormatSet, Operation, PcmFormat, RequestBody, TriggerType};
use xen_snd_backend::{
    pattern_bytes, sha256_hex, stream_seed, Clock, LogWhat, StreamId, WritePacing,
};

const PLAY: StreamId = StreamId::new(1, 0, 0, 0);
const CAP: StreamId = StreamId::new(1, 0, 0, 1);
/// S16_LE stereo at 48 kHz: 4 bytes per frame; 4800 bytes = 1200 frames = 25 ms.
const PERIOD: u32 = 4800;
const BUF: u32 = 4 * PERIOD;
const MS25: Duration = Duration::from_millis(25);

fn data(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 7 + usize::from(salt)) % 251).unwrap_or(0))
        .collect()
}

fn cur_pos(ev: Option<sndif::Event>) -> (u16, u64) {
    let ev = ev.expect("an event");
    let EventKind::CurPos { position } = ev.kind;
    (ev.id, position)
}

#[test]
fn write_data_reaches_sha256_and_wav() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav_dir = dir.path().to_owned();
    let mut c = connected_with(
        move |o| o.wav_dir = Some(wav_dir),
        &basic_config(),
        &["0/0", "0/1"],
    );
    let s = c.fe.s(0);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    let mut all = Vec::new();
    // Writes at various offsets, including the end of the buffer.
    for (k, (off, len)) in [(0u32, 4800usize), (4800, 100), (4900, 14296), (0, 4)]
        .into_iter()
        .enumerate()
    {
        let d = data(len, u8::try_from(k).unwrap_or(0));
        assert_eq!(s.write(off, &d).status, 0);
        all.extend_from_slice(&d);
    }
    let st = c.backend.stream_stats(PLAY).expect("stats");
    assert_eq!(st.bytes_received, u64::try_from(all.len()).expect("len"));
    assert_eq!(st.sha256_hex, sha256_hex(&all));
    assert_eq!(st.writes, 4);
    assert_eq!(st.opens, 1);
    let path = st.wav_path.expect("wav path");
    assert_eq!(path, dir.path().join("1-0-0-0.wav"));
    let wav = std::fs::read(&path).expect("read wav");
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[36..40], b"data");
    assert_eq!(&wav[22..24], &2u16.to_le_bytes());
    assert_eq!(&wav[24..28], &48000u32.to_le_bytes());
    assert_eq!(
        &wav[40..44],
        &u32::try_from(all.len()).expect("len").to_le_bytes()
    );
    assert_eq!(&wav[44..], &all[..]);
    // The report line.
    let report = c.backend.sha256_report();
    let line = format!("sha256 1/0/0/0 {} {}", all.len(), sha256_hex(&all));
    assert!(report.lines().any(|l| l == line), "{report}");
}

#[test]
fn open_with_a_two_page_directory() {
    let mut c = connected();
    c.env.world.set_grant_limit(4096);
    // 1025 data pages: the directory needs two pages.
    let buffer_sz = 1025 * 4096;
    let s = c.fe.s(0);
    let r = s.open(PcmFormat::S16Le, 48000, 2, buffer_sz, PERIOD);
    assert_eq!(r.status, 0);
    assert_eq!(s.buffer.as_ref().map(|b| b.dir.grefs.len()), Some(2));
    // The last page is reachable only through the second directory page.
    let tail = data(4096, 9);
    assert_eq!(s.write(1024 * 4096, &tail).status, 0);
    let head = data(64, 3);
    assert_eq!(s.write(0, &head).status, 0);
    let st = c.backend.stream_stats(PLAY).expect("stats");
    let mut all = tail.clone();
    all.extend_from_slice(&head);
    assert_eq!(st.sha256_hex, sha256_hex(&all));
    assert_eq!(
        st.last_open.map(|o| o.buffer_sz),
        Some(buffer_sz),
        "last open recorded"
    );
    // One mapping of all data pages + 2 rings + 2 event pages (the directory pages were
    // unmapped after reading); closing unmaps the buffer.
    assert_eq!(c.env.world.live_mappings(0), 5);
    assert_eq!(s.request(RequestBody::Close).status, 0);
    assert_eq!(c.env.world.live_mappings(0), 4);
}

#[test]
fn read_returns_the_pattern() {
    let mut c = connected();
    let s = c.fe.s(1);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    let (r, got) = s.read(0, 1000);
    assert_eq!(r.status, 0);
    assert_eq!(got, pattern_bytes(stream_seed(CAP), 0, 1000));
    let (r, got) = s.read(18000, 1200);
    assert_eq!(r.status, 0);
    assert_eq!(got, pattern_bytes(stream_seed(CAP), 1000, 1200));
    // A new OPEN restarts the pattern.
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    let (_, got) = s.read(0, 16);
    assert_eq!(got, pattern_bytes(stream_seed(CAP), 0, 16));
    let st = c.backend.stream_stats(CAP).expect("stats");
    assert_eq!(st.bytes_sent, 2216);
    assert_eq!(st.reads, 3);
    assert_eq!(st.opens, 2);
}

#[test]
fn loopback_feeds_playback_into_capture() {
    let mut c = connected_with(
        |o| o.loopbacks = vec![(PLAY, CAP)],
        &basic_config(),
        &["0/0", "0/1"],
    );
    assert_eq!(
        c.fe.s(0)
            .open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD)
            .status,
        0
    );
    assert_eq!(
        c.fe.s(1)
            .open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD)
            .status,
        0
    );
    let d = data(3000, 1);
    assert_eq!(c.fe.s(0).write(100, &d).status, 0);
    let (r, got) = c.fe.s(1).read(0, 2000);
    assert_eq!(r.status, 0);
    assert_eq!(got, d[..2000]);
    // Only 1000 bytes left: the rest is zeros and counts as an underrun.
    let (_, got) = c.fe.s(1).read(0, 1500);
    assert_eq!(&got[..1000], &d[2000..]);
    assert!(got[1000..].iter().all(|b| *b == 0));
    assert_eq!(c.backend.stream_stats(CAP).expect("stats").underruns, 1);
}

#[test]
fn loopback_from_unique_ids() {
    let mut cfg = basic_config();
    for (k, v) in cfg.iter_mut() {
        if *k == "0/0/unique-id" || *k == "0/1/unique-id" {
            *v = "loop=x";
        }
    }
    let mut c = connected_with(|_| {}, &cfg, &["0/0", "0/1"]);
    assert_eq!(
        c.fe.s(0)
            .open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD)
            .status,
        0
    );
    assert_eq!(
        c.fe.s(1)
            .open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD)
            .status,
        0
    );
    let d = data(64, 2);
    assert_eq!(c.fe.s(0).write(0, &d).status, 0);
    assert_eq!(c.fe.s(1).read(0, 64).1, d);
}

#[test]
fn hw_param_query_intersects_with_xenstore() {
    let mut c = connected();
    let s = c.fe.s(0);
    let r = s.request(RequestBody::HwParamQuery(full_space()));
    assert_eq!(r.status, 0);
    let sndif::ResponseBody::HwParam(a) = r.body else {
        panic!("no payload: {r:?}");
    };
    let cfg_formats: FormatSet = [PcmFormat::S16Le, PcmFormat::F32Le].into_iter().collect();
    assert_eq!(a.formats, cfg_formats);
    assert_eq!(a.rates, Interval::new(44100, 48000));
    assert_eq!(a.channels, Interval::new(1, 2));
    assert_eq!(a.buffer, Interval::new(1, 32768));
    assert_eq!(a.period, Interval::new(1, 32768));
    let q = HwParam {
        formats: FormatSet(PcmFormat::F32Le.mask_bit() | PcmFormat::U8.mask_bit()),
        rates: Interval::new(46000, 96000),
        channels: Interval::new(2, 6),
        buffer: Interval::new(256, 1 << 20),
        period: Interval::new(64, 1 << 20),
    };
    let r = s.request(RequestBody::HwParamQuery(q));
    let sndif::ResponseBody::HwParam(a) = r.body else {
        panic!("no payload: {r:?}");
    };
    assert_eq!(a.formats, FormatSet(PcmFormat::F32Le.mask_bit()));
    assert_eq!(a.rates, Interval::new(48000, 48000));
    assert_eq!(a.channels, Interval::new(2, 2));
    assert_eq!(a.buffer, Interval::new(256, 8192));
    assert_eq!(a.period, Interval::new(64, 8192));
    let mut empty = full_space();
    empty.rates = Interval::new(8000, 16000);
    let r = s.request(RequestBody::HwParamQuery(empty));
    assert_eq!(r.status, -22);
    assert_eq!(r.body, sndif::ResponseBody::Empty);
    assert_eq!(c.backend.stream_stats(PLAY).expect("stats").queries, 3);
}

#[test]
fn volume_ops_are_einval_by_default() {
    let mut c = connected();
    let s = c.fe.s(0);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    let rw = RwParams {
        offset: 0,
        length: 8,
    };
    for body in [
        RequestBody::SetVolume(rw),
        RequestBody::GetVolume(rw),
        RequestBody::Mute(rw),
        RequestBody::Unmute(rw),
    ] {
        assert_eq!(s.request(body).status, -22, "{body:?}");
    }
}

#[test]
fn volume_ops_when_enabled() {
    let mut c = connected_with(|o| o.volume = true, &basic_config(), &["0/0", "0/1"]);
    let s = c.fe.s(0);
    let rw = RwParams {
        offset: 100,
        length: 8,
    };
    assert_eq!(s.request(RequestBody::SetVolume(rw)).status, -5, "not open");
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    let mut vols = Vec::new();
    vols.extend_from_slice(&(-1500i32).to_le_bytes());
    vols.extend_from_slice(&(-250i32).to_le_bytes());
    s.buf().write_bytes(100, &vols).expect("fill");
    assert_eq!(s.request(RequestBody::SetVolume(rw)).status, 0);
    s.buf().fill(200, 8, 0xee).expect("clear");
    let get = RwParams {
        offset: 200,
        length: 8,
    };
    assert_eq!(s.request(RequestBody::GetVolume(get)).status, 0);
    let mut back = [0u8; 8];
    s.buf().read_bytes(200, &mut back).expect("read");
    assert_eq!(back.to_vec(), vols);
    let short = RwParams {
        offset: 0,
        length: 4,
    };
    assert_eq!(s.request(RequestBody::GetVolume(short)).status, -22);
    assert_eq!(s.request(RequestBody::Mute(short)).status, 0);
}

#[test]
fn invalid_requests_get_errors_with_their_ids() {
    let mut c = connected();
    let s = c.fe.s(0);
    let rw = |offset, length| RwParams { offset, length };
    assert_eq!(
        s.request(RequestBody::Write(rw(0, 4))).status,
        -5,
        "not open"
    );
    assert_eq!(
        s.request(RequestBody::Trigger(TriggerType::Start)).status,
        -5
    );
    assert_eq!(
        s.open(PcmFormat::S16Le, 8000, 2, BUF, PERIOD).status,
        -22,
        "rate"
    );
    assert_eq!(
        s.open(PcmFormat::U8, 48000, 2, BUF, PERIOD).status,
        -22,
        "format"
    );
    assert_eq!(
        s.open(PcmFormat::S16Le, 48000, 3, BUF, PERIOD).status,
        -22,
        "channels"
    );
    // A directory gref the frontend never granted.
    let r = s.request(RequestBody::Open(OpenParams {
        rate: 48000,
        format: PcmFormat::S16Le,
        channels: 2,
        buffer_sz: BUF,
        gref_directory: 4_000_000,
        period_sz: PERIOD,
    }));
    assert_eq!(r.status, -14);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    assert_eq!(
        s.request(RequestBody::Write(rw(BUF, 1))).status,
        -22,
        "offset"
    );
    assert_eq!(
        s.request(RequestBody::Write(rw(BUF - 4, 8))).status,
        -22,
        "past end"
    );
    assert_eq!(
        s.request(RequestBody::Read(rw(0, 4))).status,
        -22,
        "read playback"
    );
    // Unknown operation 42: answered with the slot's id, the raw op byte and -EINVAL.
    let id = s.send_raw_op(RequestBody::Close, 42);
    let before = s.ring.rsp_cons();
    let r = s.wait_response(T).expect("a response");
    let Err(sndif::RingError::Malformed { index, source }) = r else {
        panic!("expected an undecodable response, got {r:?}");
    };
    assert_eq!(index, before);
    assert_eq!(source.id(), id);
    let raw = s.raw_slot(index);
    assert_eq!(u16::from_le_bytes([raw[0], raw[1]]), id);
    assert_eq!(raw[2], 42);
    assert_eq!(i32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]), -22);
    let st = c.backend.stream_stats(PLAY).expect("stats");
    assert_eq!(st.error_responses, 10, "{st:?}");
}

#[test]
fn cur_pos_follows_the_clock_and_write_pacing() {
    let mut c = connected();
    let clock = c.env.clock.clone();
    let s = c.fe.s(0);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    // Pre-fill the whole buffer: accepted at once.
    assert_eq!(
        s.write(0, &data(usize::try_from(BUF).unwrap_or(0), 0))
            .status,
        0
    );
    assert_eq!(s.trigger(TriggerType::Start).status, 0);
    assert!(
        s.wait_event(Duration::ZERO).is_none(),
        "no event before a period"
    );
    clock.advance(MS25);
    assert_eq!(cur_pos(s.wait_event(T)), (0, 4800));
    clock.advance(MS25);
    assert_eq!(cur_pos(s.wait_event(T)), (1, 9600));
    // Queue: written 19200 − position 9600 leaves room for 9600 bytes.
    assert_eq!(s.write(0, &data(4800, 1)).status, 0);
    assert_eq!(s.write(4800, &data(4800, 2)).status, 0);
    // The next WRITE does not fit: no response until the device has played 4800 more.
    let id = s.send(RequestBody::Write(RwParams {
        offset: 9600,
        length: 4800,
    }));
    assert!(s.no_response_now());
    clock.advance(MS25);
    assert_eq!(cur_pos(s.wait_event(T)), (2, 14400));
    let r = s.wait_response(T).expect("paced response").expect("valid");
    assert_eq!((r.id, r.status), (id, 0));
    // STOP freezes the position; START continues from it (monotonic since OPEN).
    assert_eq!(s.trigger(TriggerType::Stop).status, 0);
    clock.advance(MS25 * 4);
    assert_eq!(s.trigger(TriggerType::Start).status, 0);
    clock.advance(MS25);
    assert_eq!(cur_pos(s.wait_event(T)), (3, 19200));
    let st = c.backend.stream_stats(PLAY).expect("stats");
    assert_eq!(st.events_sent, 4);
    assert_eq!(st.position, 19200);
    assert!(st.running);
}

#[test]
fn playback_position_never_passes_what_was_written() {
    let mut c = connected();
    let clock = c.env.clock.clone();
    let s = c.fe.s(0);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    assert_eq!(s.write(0, &data(6000, 0)).status, 0);
    assert_eq!(s.trigger(TriggerType::Start).status, 0);
    clock.advance(MS25);
    assert_eq!(cur_pos(s.wait_event(T)), (0, 4800));
    clock.advance(MS25);
    assert_eq!(cur_pos(s.wait_event(T)), (1, 6000), "clamped to the data");
    clock.advance(MS25);
    assert_eq!(cur_pos(s.wait_event(T)), (2, 6000), "still starving");
    assert_eq!(c.backend.stream_stats(PLAY).expect("stats").underruns, 1);
    // New data: the device resumes from the moment it arrived.
    assert_eq!(s.write(6000, &data(4800, 1)).status, 0);
    clock.advance(MS25);
    assert_eq!(cur_pos(s.wait_event(T)), (3, 10800));
}

#[test]
fn capture_position_is_time_derived() {
    let mut c = connected();
    let clock = c.env.clock.clone();
    let s = c.fe.s(1);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    assert_eq!(s.trigger(TriggerType::Start).status, 0);
    clock.advance(MS25);
    assert_eq!(cur_pos(s.wait_event(T)), (0, 4800));
    // A jump over several periods gives one event with the full position.
    clock.advance(MS25 * 3);
    assert_eq!(cur_pos(s.wait_event(T)), (1, 19200));
    assert_eq!(s.trigger(TriggerType::Pause).status, 0);
    clock.advance(MS25);
    assert_eq!(s.trigger(TriggerType::Resume).status, 0);
    clock.advance(MS25);
    assert_eq!(cur_pos(s.wait_event(T)), (2, 24000));
}

#[test]
fn period_zero_means_4096_frames() {
    let mut c = connected_with(
        |o| o.write_pacing = WritePacing::Immediate,
        &basic_config(),
        &["0/0", "0/1"],
    );
    let clock = c.env.clock.clone();
    let s = c.fe.s(1);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, 65536, 0).status, 0);
    assert_eq!(s.trigger(TriggerType::Start).status, 0);
    // 4096 frames at 48 kHz = 85 333 333.3 ns.
    clock.advance(Duration::from_nanos(85_333_333));
    assert!(s.wait_event(Duration::from_millis(20)).is_none());
    clock.advance(Duration::from_nanos(1));
    assert_eq!(cur_pos(s.wait_event(T)), (0, 4096 * 4));
}

#[test]
fn immediate_pacing_answers_at_once() {
    let mut c = connected_with(
        |o| o.write_pacing = WritePacing::Immediate,
        &basic_config(),
        &["0/0", "0/1"],
    );
    let s = c.fe.s(0);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    for _ in 0..3 {
        assert_eq!(
            s.write(0, &data(usize::try_from(BUF).unwrap_or(0), 0))
                .status,
            0
        );
    }
    assert_eq!(
        c.backend.stream_stats(PLAY).expect("stats").bytes_received,
        3 * u64::from(BUF)
    );
}

#[test]
fn scaled_clock_streams_quickly() {
    let mut c = connected_with(
        |o| o.clock = Clock::scaled(20.0).expect("scale"),
        &basic_config(),
        &["0/0", "0/1"],
    );
    let s = c.fe.s(1);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    assert_eq!(s.trigger(TriggerType::Start).status, 0);
    // 10 periods of 25 ms take 12.5 ms of real time at ×20.
    let mut last = 0;
    for k in 0..10u16 {
        let (id, pos) = cur_pos(s.wait_event(T));
        assert_eq!(id, k);
        assert!(pos > last, "{pos} after {last}");
        assert_eq!(pos % 4, 0, "frame aligned");
        last = pos;
    }
}

#[test]
fn ring_overflow_fails_the_stream_and_closes_the_device() {
    let mut c = connected();
    let key = c.fe.key();
    c.records
        .until("Connected", |r| r.what == LogWhat::StateWritten(4));
    let s = c.fe.s(0);
    s.ring.mem().store_u32(RING_REQ_PROD, 100).expect("poke");
    s.evtchn.notify(s.req_port).expect("notify");
    let recs = c.records.until("stream failure", |r| {
        matches!(r.what, LogWhat::StreamFailed(_))
    });
    assert!(
        recs.last()
            .is_some_and(|r| r.to_string().contains("req_prod 100")),
        "{recs:?}"
    );
    assert_eq!(c.records.states(key, 2), vec![5, 6]);
    c.fe.wait_be_state(6);
    assert_eq!(c.env.world.live_mappings(0), 0);
}

#[test]
fn unknown_format_code_in_open() {
    let mut c = connected();
    let s = c.fe.s(0);
    let gref = s.alloc_buffer(BUF);
    // Push an OPEN, poke format byte 99 into its slot before publishing.
    let id = s.next_id;
    s.next_id += 1;
    s.ring
        .push_request(&sndif::Request {
            id,
            body: RequestBody::Open(OpenParams {
                rate: 48000,
                format: PcmFormat::S16Le,
                channels: 2,
                buffer_sz: BUF,
                gref_directory: gref,
                period_sz: PERIOD,
            }),
        })
        .expect("push");
    let idx = s.ring.req_prod_pvt().wrapping_sub(1);
    let off = RING_SLOTS + usize::try_from(idx & 31).expect("small") * RING_SLOT_SIZE + REQ_OP + 4;
    s.ring.mem().write_bytes(off, &[99]).expect("poke");
    if s.ring.publish().expect("publish") {
        s.evtchn.notify(s.req_port).expect("notify");
    }
    let r = s.wait_response(T).expect("response").expect("valid");
    assert_eq!((r.id, r.operation, r.status), (id, Operation::Open, -22));
    assert_eq!(c.backend.stream_stats(PLAY).expect("stats").opens, 0);
}

#[test]
fn wav_follows_the_open_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav_dir = dir.path().to_owned();
    let mut c = connected_with(
        move |o| o.wav_dir = Some(wav_dir),
        &basic_config(),
        &["0/0", "0/1"],
    );
    let s = c.fe.s(0);
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    assert_eq!(s.write(0, &data(400, 1)).status, 0);
    assert_eq!(s.request(RequestBody::Close).status, 0);
    // Same format again: the same file continues.
    assert_eq!(s.open(PcmFormat::S16Le, 48000, 2, BUF, PERIOD).status, 0);
    assert_eq!(s.write(0, &data(400, 2)).status, 0);
    let first = c.backend.stream_stats(PLAY).expect("stats").wav_path;
    assert_eq!(first, Some(dir.path().join("1-0-0-0.wav")));
    // Another format: a new file with a float header.
    assert_eq!(s.open(PcmFormat::F32Le, 44100, 1, BUF, PERIOD).status, 0);
    assert_eq!(s.write(0, &data(800, 3)).status, 0);
    let st = c.backend.stream_stats(PLAY).expect("stats");
    let second = st.wav_path.expect("path");
    assert_eq!(second, dir.path().join("1-0-0-0-open3.wav"));
    let a = std::fs::read(dir.path().join("1-0-0-0.wav")).expect("first");
    assert_eq!(a.len(), 44 + 800);
    let b = std::fs::read(&second).expect("second");
    assert_eq!(&b[20..22], &3u16.to_le_bytes(), "IEEE float");
    assert_eq!(&b[22..24], &1u16.to_le_bytes(), "mono");
    assert_eq!(&b[24..28], &44100u32.to_le_bytes());
    assert_eq!(&b[b.len() - 800..], &data(800, 3)[..]);
    assert_eq!(st.wav_error, None);
}
