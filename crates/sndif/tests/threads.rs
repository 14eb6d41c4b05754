//! Frontend and backend ends on separate threads over one shared heap page, with channels
//! standing in for event channels. Each side sleeps only when `rearm()` reports no more work and
//! is woken only when the peer's publish says "notify", so a wrong hold-off check or a missing
//! barrier shows up as a lost wake-up (a bounded wait times out) or as corrupted messages.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use sndif::{
    BackRing, Event, EventError, EventKind, EventReader, EventWriter, FrontRing, Operation,
    Request, RequestBody, Response, RwParams, SharedMem,
};

const WAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn wait(rx: &Receiver<()>, who: &str, progress: u32) {
    match rx.recv_timeout(WAKE_TIMEOUT) {
        Ok(()) => {}
        Err(RecvTimeoutError::Timeout) => {
            panic!("{who}: lost wake-up after {progress} messages (no notification in {WAKE_TIMEOUT:?})")
        }
        Err(RecvTimeoutError::Disconnected) => panic!("{who}: peer thread ended early"),
    }
}

fn request(n: u32) -> Request {
    Request {
        id: u16::try_from(n % 65536).expect("fits"),
        body: RequestBody::Write(RwParams {
            offset: n,
            length: n.wrapping_mul(2_654_435_761),
        }),
    }
}

#[test]
fn request_response_traffic_with_hold_off_across_threads() {
    const N: u32 = 50_000;
    let mem = SharedMem::heap_pages(1).expect("page");
    let mut front = FrontRing::init(mem.clone()).expect("init");
    let mut back = BackRing::attach(mem).expect("attach");
    let (to_back, back_rx) = channel::<()>();
    let (to_front, front_rx) = channel::<()>();

    let backend = thread::spawn(move || {
        let mut answered = 0u32;
        let mut batch = 0u32;
        while answered < N {
            while let Some(req) = back.take_request().expect("take_request") {
                assert_eq!(req, request(answered), "request {answered} corrupted");
                // Echo the request number in the status so the frontend can check the slot.
                let status = i32::try_from(answered % 1000).expect("small");
                back.push_response(&Response::error(req.id, Operation::Write, status))
                    .expect("push_response");
                answered += 1;
                batch += 1;
                // Publish in uneven batches.
                if batch % 7 == 0 && back.publish_responses().expect("publish") {
                    to_front.send(()).expect("notify front");
                }
            }
            if back.publish_responses().expect("publish") {
                to_front.send(()).expect("notify front");
            }
            if answered < N && !back.rearm().expect("rearm") {
                wait(&back_rx, "backend", answered);
            }
        }
    });

    let mut sent = 0u32;
    let mut received = 0u32;
    while received < N {
        while sent < N && front.free_requests() > 0 {
            front.push_request(&request(sent)).expect("push_request");
            sent += 1;
            if sent % 5 == 0 && front.publish().expect("publish") {
                to_back.send(()).expect("notify back");
            }
        }
        if front.publish().expect("publish") {
            to_back.send(()).expect("notify back");
        }
        loop {
            while let Some(rsp) = front.take_response().expect("take_response") {
                let want = request(received);
                assert_eq!(rsp.id, want.id, "response {received}");
                assert_eq!(rsp.status, i32::try_from(received % 1000).expect("small"));
                received += 1;
            }
            if !front.rearm().expect("rearm") {
                break;
            }
        }
        let can_send = sent < N && front.free_requests() > 0;
        if received < N && !can_send {
            wait(&front_rx, "frontend", received);
        }
    }
    backend.join().expect("backend thread");
    assert_eq!(front.in_flight(), 0);
}

#[test]
fn event_stream_across_threads_without_loss() {
    const N: u64 = 100_000;
    let mem = SharedMem::heap_pages(1).expect("page");
    let mut reader = EventReader::init(mem.clone()).expect("init");
    let mut writer = EventWriter::attach(mem).expect("attach");
    let deadline = Instant::now() + Duration::from_secs(30);

    let producer = thread::spawn(move || {
        let mut full = 0u64;
        for position in 0..N {
            let ev = Event {
                id: u16::try_from(position % 65536).expect("fits"),
                kind: EventKind::CurPos { position },
            };
            loop {
                match writer.push(&ev) {
                    Ok(()) => break,
                    Err(EventError::Full { .. }) => {
                        full += 1;
                        assert!(Instant::now() < deadline, "reader stopped consuming");
                        thread::yield_now();
                    }
                    Err(e) => panic!("push: {e}"),
                }
            }
        }
        full
    });

    let mut next = 0u64;
    while next < N {
        match reader.take().expect("take") {
            Some(ev) => {
                assert_eq!(
                    ev.kind,
                    EventKind::CurPos { position: next },
                    "event {next}"
                );
                next += 1;
            }
            None => {
                assert!(Instant::now() < deadline, "writer stalled at {next}");
                thread::yield_now();
            }
        }
    }
    producer.join().expect("producer thread");
    assert_eq!(reader.take(), Ok(None));
}
