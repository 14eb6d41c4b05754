//! Benchmark of the realtime data path (`cargo bench -p xen-snd-engine --bench data_path`).
//!
//! 1. **Cost of one quantum**: `Stream::write` of N frames of S16_LE stereo plus
//!    `Stream::service`, for N = 256 and 1024, measured one quantum at a time with `Instant`
//!    around every engine call of that quantum: per wake-up `service`, `writable_frames` and,
//!    once there is room, `write` (a quantum may take several wake-ups); only the waits in
//!    poll(2) are not counted. The
//!    backend end is a minimal responder on another thread (answers every request at once and
//!    reports the data as played with one CUR_POS per WRITE), so its work is not counted.
//!    Everything runs over the in-memory fakes of `xen_access`: a notification is a mutex plus
//!    an eventfd write there, an ioctl on real Xen.
//! 2. **Event-channel notifications per second of playback** at 48 kHz with periods of 1024 and
//!    256 frames: the real engine (`Frontend`) against the reference backend (real-time clock,
//!    ALSA-like WRITE pacing), both on event channels that count `notify` calls. One second of
//!    audio is played in quanta of one period; the counts cover START to the last WRITE answered.

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::*;
use sndif::config::{PcmHw, StreamConfig, StreamKind};
use sndif::event::EventWriter;
use sndif::formats::PcmFormat;
use sndif::ring::BackRing;
use sndif::wire::{Event, EventKind, RequestBody, Response};
use xen_access::fake::{wait_readable, FakeXen};
use xen_access::{DomId, Port};
use xen_snd_backend::{BackendOptions, Clock, Services as BeServices};
use xen_snd_engine::{PcmParams, Services, Stream, StreamId, StreamOptions};

const WARMUP: usize = 2_000;
const QUANTA: usize = 20_000;

/// The backend end of one stream: answers everything at once on its own thread.
struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Responder {
    fn start(world: &Arc<FakeXen>, fe: DomId, stream: &Stream) -> Responder {
        let be = world.domain(BE);
        let keys = stream.transport_keys();
        let map = be.grant_map();
        let ring_mem = map.map(fe, &[keys.ring_ref]).expect("map ring");
        let evt_mem = map.map(fe, &[keys.evt_ring_ref]).expect("map event page");
        let mut ring = BackRing::attach(ring_mem).expect("attach ring");
        let mut events = EventWriter::attach(evt_mem).expect("attach event page");
        events.reset().expect("reset event page");
        let evtchn = be.event_channels().open().expect("evtchn");
        let evt_port = evtchn
            .bind_interdomain(fe, Port(keys.evt_event_channel))
            .expect("bind event port");
        let req_port = evtchn
            .bind_interdomain(fe, Port(keys.event_channel))
            .expect("bind request port");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut position = 0u64;
            let mut event_id = 0u16;
            let mut answered = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                wait_readable(evtchn.fd(), Duration::from_millis(50));
                while let Ok(Some(p)) = evtchn.pending() {
                    let _ = evtchn.unmask(p);
                }
                loop {
                    let req = match ring.take_request() {
                        Ok(Some(r)) => r,
                        Ok(None) => {
                            if ring.rearm().unwrap_or(false) {
                                continue;
                            }
                            break;
                        }
                        Err(e) => panic!("responder: {e}"),
                    };
                    ring.push_response(&Response::ok(req.id, req.operation()))
                        .expect("push response");
                    answered += 1;
                    if let RequestBody::Write(rw) = req.body {
                        position += u64::from(rw.length);
                        let ev = Event {
                            id: event_id,
                            kind: EventKind::CurPos { position },
                        };
                        event_id = event_id.wrapping_add(1);
                        if events.push(&ev).is_ok() {
                            let _ = evtchn.notify(evt_port);
                        }
                    }
                }
                if ring.publish_responses().expect("publish") {
                    let _ = evtchn.notify(req_port);
                }
            }
            answered
        });
        Responder {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("responder"))
            .unwrap_or(0)
    }
}

fn stats(mut ns: Vec<u64>) -> (f64, u64, u64, u64) {
    if ns.is_empty() {
        return (0.0, 0, 0, 0);
    }
    ns.sort_unstable();
    let mean = ns.iter().sum::<u64>() as f64 / ns.len().max(1) as f64;
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q) as usize];
    (mean, at(0.5), at(0.99), ns[0])
}

/// Part 1: ns per quantum of `frames` frames.
fn quantum_cost(frames: u32) {
    let world = FakeXen::new();
    world.domain(BE);
    let fe_dom = world.domain(FE);
    let counting = CountingChannels::new(fe_dom.event_channels());
    let services = Services {
        store: fe_dom.store(),
        grants: fe_dom.grant_share(),
        events: counting.clone(),
    };
    let config = StreamConfig {
        kind: StreamKind::Playback,
        unique_id: Some("bench".into()),
        hw: PcmHw {
            formats: [PcmFormat::S16Le].into_iter().collect(),
            rates: vec![48_000],
            channels_min: 2,
            channels_max: 2,
            buffer_size: 65_536,
        },
    };
    let id = StreamId {
        card: 0,
        device: 0,
        stream: 0,
        card_index: 0,
    };
    let mut stream =
        Stream::standalone(&services, BE, id, &config, StreamOptions::default()).expect("stream");
    let responder = Responder::start(&world, FE, &stream);
    stream
        .open(PcmParams {
            format: PcmFormat::S16Le,
            rate: 48_000,
            channels: 2,
            buffer_frames: 4 * frames,
            period_frames: frames,
        })
        .expect("open");
    stream.start().expect("start");
    let quantum = vec![0x5au8; frames as usize * 4];
    let mut times = Vec::with_capacity(QUANTA);
    let mut with_notify = Vec::with_capacity(QUANTA);
    let mut without_notify = Vec::with_capacity(QUANTA);
    let notifies_before = counting.count();
    for i in 0..WARMUP + QUANTA {
        if i == WARMUP {
            times.clear();
            with_notify.clear();
            without_notify.clear();
        }
        // One data-loop cycle per wake-up: service, check the room, write once there is room.
        // Every engine call is timed; only the waits in poll(2) are not.
        let sent = counting.count();
        let mut ns = 0u64;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let t0 = Instant::now();
            stream.service(now_ns());
            let room = stream.writable_frames();
            let took = if room >= frames {
                stream.write(&quantum)
            } else {
                0
            };
            ns += u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if room >= frames {
                assert_eq!(took, quantum.len());
                break;
            }
            assert!(Instant::now() < deadline, "no room: {:?}", stream.stats());
            wait_readable(stream.fd(), Duration::from_millis(10));
        }
        times.push(ns);
        if counting.count() > sent {
            with_notify.push(ns);
        } else {
            without_notify.push(ns);
        }
    }
    let notifies = counting.count() - notifies_before;
    let c = stream.stats();
    drop(stream);
    let answered = responder.finish();
    // The cost of reading the clock twice, for reference.
    let t0 = Instant::now();
    for _ in 0..10_000 {
        std::hint::black_box(Instant::now());
    }
    let clock_ns = t0.elapsed().as_nanos() as f64 / 10_000.0;
    let (n_with, n_without) = (with_notify.len(), without_notify.len());
    let (mean_with, median_with, _, _) = stats(with_notify);
    let (mean_without, median_without, _, _) = stats(without_notify);
    let (mean, median, p99, min) = stats(times);
    println!(
        "quantum {frames:>4} frames S16_LE stereo: service+write mean {mean:>6.0} ns, median \
         {median:>6} ns, p99 {p99:>6} ns, min {min:>6} ns ({QUANTA} quanta; per quantum \
         {:.2} notifications sent, {:.2} responses and {:.2} events consumed; the responder \
         answered {answered} requests; Instant::now ≈ {clock_ns:.0} ns)",
        notifies as f64 / (WARMUP + QUANTA) as f64,
        c.responses as f64 / (WARMUP + QUANTA) as f64,
        c.events as f64 / (WARMUP + QUANTA) as f64,
    );
    println!(
        "    {n_without} quanta without a notification: mean {mean_without:.0} ns, median \
         {median_without} ns; {n_with} with one: mean {mean_with:.0} ns, median {median_with} ns"
    );
}

/// Part 2: notifications for one second of playback with `period` frames.
fn notifications_per_second(period: u32) {
    let world = FakeXen::new();
    add_card(
        &world,
        0,
        &[
            ("sample-rates", "48000"),
            ("sample-formats", "s16_le"),
            ("buffer-size", "65536"),
            ("0/0/type", "p"),
            ("0/0/unique-id", "pulse"),
        ],
    );
    let be_dom = world.domain(BE);
    let be_counting = CountingChannels::new(be_dom.event_channels());
    let be_services = BeServices {
        store: be_dom.store(),
        grants: be_dom.grant_map(),
        evtchn: be_counting.clone(),
    };
    let backend = xen_snd_backend::Backend::start(
        be_services,
        BackendOptions {
            clock: Clock::real(),
            ..BackendOptions::default()
        },
    )
    .expect("backend");
    let fe_dom = world.domain(FE);
    let fe_counting = CountingChannels::new(fe_dom.event_channels());
    let services = Services {
        store: fe_dom.store(),
        grants: fe_dom.grant_share(),
        events: fe_counting.clone(),
    };
    let mut events = start_frontend(services, frontend_options());
    let stream = events.connected(0).take(0, 0);
    let params = PcmParams {
        format: PcmFormat::S16Le,
        rate: 48_000,
        channels: 2,
        buffer_frames: 4 * period,
        period_frames: period,
    };
    let data = playback_data(1, 48_000 * 4);
    let mut jobs = vec![Job::play(stream, params, data)];
    let (fe0, be0) = (fe_counting.count(), be_counting.count());
    let started = Instant::now();
    run_jobs(&mut jobs, |_| Flow::Continue);
    let elapsed = started.elapsed();
    let (fe1, be1) = (fe_counting.count(), be_counting.count());
    let c = counters(&jobs[0]);
    println!(
        "1 s of 48 kHz playback, period {period:>4} frames ({:.1} ms), done in {:.2} s: \
         frontend→backend {} notifications, backend→frontend {}; {} requests (incl. \
         HW_PARAM_QUERY, OPEN, START), {} responses, {} CUR_POS events consumed",
        f64::from(period) / 48.0,
        elapsed.as_secs_f64(),
        fe1 - fe0,
        be1 - be0,
        c.requests,
        c.responses,
        c.events,
    );
    drop(jobs);
    let _ = events.fe.shutdown();
    let _ = backend.shutdown();
}

/// The fake's own cost of `notify` when the peer is not woken (its port stays masked).
fn fake_notify_cost() {
    let world = FakeXen::new();
    let fe = world.domain(FE).event_channels().open().expect("evtchn");
    let be = world.domain(BE).event_channels().open().expect("evtchn");
    let port = fe.bind_unbound(BE).expect("bind");
    be.bind_interdomain(FE, port).expect("bind");
    fe.notify(port).expect("notify");
    let n = 100_000u32;
    let t0 = Instant::now();
    for _ in 0..n {
        fe.notify(port).expect("notify");
    }
    let ns = t0.elapsed().as_nanos() as f64 / f64::from(n);
    println!(
        "fake notify with the peer's port masked (no wake-up): {ns:.0} ns; a quantum that \
         notifies a sleeping peer also pays the eventfd write and the peer's wake-up"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special. A filter
    // argument is accepted and ignored.
    println!("# data path benchmark (in-process fakes; see the file header)");
    for frames in [256, 1024] {
        quantum_cost(frames);
    }
    fake_notify_cost();
    for period in [1024, 256] {
        notifications_per_second(period);
    }
}
