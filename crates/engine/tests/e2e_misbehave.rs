//! End to end, item 7: each misbehaviour of the reference backend on one stream (the victim,
//! playback 0/0) while two other streams of the same card (playback 0/1, capture 0/2) keep
//! running. The victim ends or recovers as the engine documents (crate docs, `stream` module
//! docs):
//!
//! | Misbehaviour | Engine behaviour |
//! | --- | --- |
//! | late, within the request timeout | only slower; bit-exact |
//! | late, beyond the request timeout | timeouts counted, then the late response fails the stream |
//! | error status | counted per request, the data of failed WRITEs is lost, the stream goes on; a failed control request names operation and status |
//! | stall | timeouts counted; a control request behind it times out naming the operation; the answer that finally comes fails the stream |
//! | bogus `rsp_prod` / bogus `in_prod` / wrong id | the stream fails with a protocol error naming the index or id |
//! | position backwards | counted as a restart, not fatal; bit-exact |
//! | position ahead | counted as an underrun, not fatal; bit-exact |
//! | event flood | consumed in bounded batches, not fatal; bit-exact |
//!
//! A failed stream is recovered with `Frontend::reconnect`, after which new data on the victim
//! arrives bit-exact. The other streams always finish bit-exact, and no thread of either peer
//! panics.

mod e2e;

use std::sync::Arc;
use std::time::Duration;

use e2e::*;
use xen_access::fake::FakeXen;
use xen_snd_backend::{Backend, Misbehave};
use xen_snd_engine::{
    DisconnectReason, FrontendEvent, FrontendOptions, ProtocolError, StreamError, StreamOp,
    StreamOptions, StreamState,
};

const VICTIM: usize = 0;
const HEALTHY: usize = 1;
const CAPTURE: usize = 2;
/// Request timeout of the engine in these tests (real time; generous, so that a loaded machine
/// does not make the healthy streams time out).
const TIMEOUT: Duration = Duration::from_millis(1000);

struct Rig {
    _world: Arc<FakeXen>,
    backend: Backend,
    events: Events,
    jobs: Vec<Job>,
    victim_data: Vec<u8>,
    healthy_data: Vec<u8>,
}

fn rig() -> Rig {
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
            ("0/1/type", "p"),
            ("0/1/unique-id", "pulse"),
            ("0/2/type", "c"),
            ("0/2/unique-id", "pulse"),
        ],
    );
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let fe_options = FrontendOptions {
        stream: StreamOptions {
            request_timeout: TIMEOUT,
            ..StreamOptions::default()
        },
        // One stream's timeouts must not take the card down while the others answer.
        unresponsive_after: 1000,
        ..frontend_options()
    };
    let mut events = start_frontend(fe_services(&world), fe_options);
    let mut card = events.connected(0);
    let params = s16_stereo_48k();
    let len = audio_bytes(&params, 4.0);
    let victim_data = playback_data(10, len);
    let healthy_data = playback_data(11, len);
    let jobs = vec![
        Job::play(card.take(0, 0), params, victim_data.clone()),
        Job::play(card.take(0, 1), params, healthy_data.clone()),
        Job::capture(card.take(0, 2), params, len),
    ];
    Rig {
        _world: world,
        backend,
        events,
        jobs,
        victim_data,
        healthy_data,
    }
}

impl Rig {
    fn victim(&self) -> &Job {
        &self.jobs[VICTIM]
    }

    fn victim_play(&mut self) -> &mut PlayJob {
        match &mut self.jobs[VICTIM] {
            Job::Play(p) => p,
            Job::Capture(_) => unreachable!("the victim plays"),
        }
    }

    fn victim_be(&self) -> xen_snd_backend::StreamId {
        be_id(self.victim().stream().id())
    }

    fn set(&self, m: Misbehave) {
        self.backend.set_misbehave(self.victim_be(), m);
    }

    /// Plays until the victim has delivered a quarter of its data.
    fn run_to_quarter(&mut self) {
        let quarter = self.victim_data.len() as u64 / 4;
        run_jobs(&mut self.jobs, |j| {
            if j[VICTIM].as_play().completed() >= quarter {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        assert!(!self.victim().is_dead(), "{}", describe(&self.jobs));
    }

    /// Runs every job until all are done (a dead or abandoned victim counts as done).
    fn run_to_end(&mut self) {
        run_jobs(&mut self.jobs, |_| Flow::Continue);
    }

    /// Drives every job until the victim has failed; returns its error.
    fn wait_victim_failed(&mut self) -> StreamError {
        run_jobs(&mut self.jobs, |j| {
            if matches!(j[VICTIM].stream().state(), StreamState::Failed(_)) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        let id = self.victim().stream().id();
        let StreamState::Failed(e) = self.victim().stream().state().clone() else {
            panic!("victim not failed: {}", describe(&self.jobs));
        };
        // The control thread reports it too.
        self.events.wait(
            "StreamFailed of the victim",
            |ev| matches!(ev, FrontendEvent::StreamFailed { card: 0, stream } if *stream == id),
        );
        assert_eq!(e.stream(), id, "the error names the stream: {e}");
        e
    }

    /// The other two streams finish bit-exact, untouched by the victim's trouble.
    fn check_others(&mut self) {
        // Let them finish (the victim may be dead or abandoned).
        if !self.victim().is_dead() {
            self.victim_play().abandoned = true;
        }
        self.run_to_end();
        for i in [HEALTHY, CAPTURE] {
            let j = &self.jobs[i];
            assert_eq!(
                *j.stream().state(),
                StreamState::Running,
                "{}",
                describe(&self.jobs)
            );
            let c = counters(j);
            assert_eq!(
                (c.timeouts, c.protocol_errors, c.backend_errors),
                (0, 0, 0),
                "{c:?}"
            );
        }
        let healthy = self.jobs[HEALTHY].stream().id();
        assert_backend_received(&self.backend, healthy, &self.healthy_data);
        assert_capture_pattern(self.jobs[CAPTURE].as_capture());
    }

    /// The victim played everything bit-exact after all.
    fn check_victim_bit_exact(&self) {
        let j = self.victim();
        assert_eq!(
            *j.stream().state(),
            StreamState::Running,
            "{}",
            describe(&self.jobs)
        );
        assert!(
            j.as_play().control_errors.is_empty(),
            "{:?}",
            j.as_play().control_errors
        );
        assert_backend_received(&self.backend, j.stream().id(), &self.victim_data);
    }

    /// Recovery after a failure: reconnect the card, then new data on the victim arrives
    /// bit-exact (after the prefix of the old data the backend had received).
    fn recover_and_finish(mut self) {
        self.set(Misbehave::None);
        let id = self.victim().stream().id();
        self.events.fe.reconnect(0).expect("reconnect");
        self.events.wait("CardDisconnected(Requested)", |e| {
            matches!(
                e,
                FrontendEvent::CardDisconnected {
                    card: 0,
                    reason: DisconnectReason::Requested
                }
            )
        });
        assert!(self.jobs.iter().all(|j| j.stream().is_revoked()));
        self.jobs.clear();
        let stream = self.events.connected(0).take(0, 0);
        assert_eq!(stream.id(), id);
        // The old binding is released by now: the backend's count is final, and what it got is a
        // prefix of the old data (WRITEs are served in order).
        let n = self
            .backend
            .stream_stats(be_id(id))
            .expect("stats")
            .bytes_received as usize;
        assert!(n < self.victim_data.len(), "{n}");
        let params = s16_stereo_48k();
        let fresh = playback_data(12, audio_bytes(&params, 1.0));
        let mut jobs = vec![Job::play(stream, params, fresh.clone())];
        run_jobs(&mut jobs, |_| Flow::Continue);
        let mut all = self.victim_data[..n].to_vec();
        all.extend_from_slice(&fresh);
        assert_backend_received(&self.backend, id, &all);
        let c = counters(&jobs[0]);
        assert_eq!(
            (c.timeouts, c.protocol_errors, c.backend_errors),
            (0, 0, 0),
            "{c:?}"
        );
        drop(jobs);
        finish(self.events, self.backend);
    }

    fn finish(mut self) {
        self.jobs.clear();
        finish(self.events, self.backend);
    }

    /// Stops feeding the victim and waits until nothing of it is in flight.
    fn pause_victim(&mut self) {
        self.victim_play().paused = true;
        run_jobs(&mut self.jobs, |j| {
            if j[VICTIM].stream().requests_in_flight() == 0 {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
    }

    /// Pauses and stops the victim, so that the backend sends it nothing (no response, no
    /// CUR_POS) until the test acts.
    fn quiesce_victim(&mut self) {
        self.pause_victim();
        let s = self.victim_play();
        s.stream.stop().expect("STOP of the victim");
        assert_eq!(s.stream.requests_in_flight(), 0);
    }

    /// Makes the backend fail the victim's next WRITEs until `bytes` of its data were lost;
    /// returns where in the data the loss starts and how much was lost. The victim goes on
    /// afterwards.
    fn lose_writes(&mut self, bytes: usize) -> (usize, usize) {
        self.pause_victim();
        self.set(Misbehave::ErrorStatus(-5));
        let period = self
            .victim()
            .stream()
            .params()
            .map_or(0, |p| p.period_bytes as usize);
        let at = self.victim().as_play().offset;
        let errors = counters(self.victim()).backend_errors;
        let mut lost = 0;
        while lost < bytes {
            let frames = u32::try_from(period / 4).unwrap_or(u32::MAX);
            run_jobs(&mut self.jobs, |j| {
                if j[VICTIM].stream().writable_frames() >= frames {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            });
            let p = self.victim_play();
            let n = period.min(bytes - lost);
            let took = p.stream.write(&p.data[p.offset..p.offset + n]);
            assert_eq!(took, n);
            p.offset += n;
            lost += n;
        }
        // Everything written is submitted and answered (a write may have been split in two
        // WRITEs at the end of the buffer).
        run_jobs(&mut self.jobs, |j| {
            let s = j[VICTIM].stream();
            let (written, submitted) = s.byte_counters();
            if written == submitted
                && s.requests_in_flight() == 0
                && counters(&j[VICTIM]).backend_errors > errors
            {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        self.set(Misbehave::None);
        self.victim_play().paused = false;
        (at, lost)
    }
}

#[test]
fn late_within_the_timeout_is_only_slower() {
    let mut rig = rig();
    rig.run_to_quarter();
    // 2 s of backend clock = 40 ms of real time, well inside the 1 s timeout.
    rig.set(Misbehave::Late(Duration::from_secs(2)));
    let before = counters(rig.victim()).responses;
    run_jobs(&mut rig.jobs, |j| {
        if counters(&j[VICTIM]).responses >= before + 5 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    rig.set(Misbehave::None);
    rig.run_to_end();
    let c = counters(rig.victim());
    assert_eq!((c.timeouts, c.protocol_errors), (0, 0), "{c:?}");
    rig.check_victim_bit_exact();
    rig.check_others();
    rig.finish();
}

#[test]
fn late_beyond_the_timeout_times_out_then_fails_the_stream() {
    let mut rig = rig();
    rig.run_to_quarter();
    // 100 s of backend clock = 2 s of real time: twice the timeout.
    rig.set(Misbehave::Late(Duration::from_secs(100)));
    let e = rig.wait_victim_failed();
    assert!(
        counters(rig.victim()).timeouts > 0,
        "{:?}",
        counters(rig.victim())
    );
    assert!(
        matches!(e.protocol(), Some(ProtocolError::LateResponse { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("late response"), "{e}");
    rig.check_others();
    rig.recover_and_finish();
}

#[test]
fn error_status_is_counted_and_the_stream_goes_on() {
    let mut rig = rig();
    rig.run_to_quarter();
    // Exactly one WRITE fails: its period of data is lost, nothing else.
    let (at, lost) = rig.lose_writes(4096);
    assert_eq!(lost, 4096);
    rig.victim_play().tolerate_loss = true;
    rig.run_to_end();
    let id = rig.victim().stream().id();
    let c = counters(rig.victim());
    // One or two WRITEs (split at the end of the buffer).
    assert!((1..=2).contains(&c.backend_errors), "{c:?}");
    assert_eq!((c.timeouts, c.protocol_errors), (0, 0), "{c:?}");
    assert_eq!(*rig.victim().stream().state(), StreamState::Running);
    // The backend got everything but the failed WRITE's data.
    let mut expected = rig.victim_data[..at].to_vec();
    expected.extend_from_slice(&rig.victim_data[at + lost..]);
    assert_backend_received(&rig.backend, id, &expected);
    assert_eq!(c.bytes_written, expected.len() as u64);
    // A failed control request names stream, operation and status.
    rig.set(Misbehave::ErrorStatus(-5));
    let e = rig.victim_play().stream.stop().expect_err("STOP must fail");
    assert_eq!(
        e,
        StreamError::Backend {
            stream: id,
            op: StreamOp::Stop,
            status: -5
        }
    );
    assert_eq!(
        e.to_string(),
        "card 0 stream 0/0: TRIGGER STOP: backend answered status -5"
    );
    rig.set(Misbehave::None);
    rig.victim_play()
        .stream
        .stop()
        .expect("STOP once the backend behaves");
    rig.check_others();
    rig.finish();
}

/// Engine bug found by the end-to-end suite: the engine counts the data of a failed WRITE as
/// submitted, so it waits for the backend's position to pass it — but the backend never got
/// it, and an ALSA-like backend's position stops at the data it got. Once failed WRITEs add up
/// to a buffer, the stream can never write again.
#[test]
fn playback_goes_on_after_a_buffer_of_failed_writes() {
    let mut rig = rig();
    rig.run_to_quarter();
    let buffer = rig
        .victim()
        .stream()
        .params()
        .map_or(0, |p| p.buffer_bytes as usize);
    let (_, lost) = rig.lose_writes(buffer);
    assert_eq!(lost, buffer);
    rig.victim_play().tolerate_loss = true;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    run_jobs(&mut rig.jobs, |_| {
        if std::time::Instant::now() > deadline {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    assert!(
        rig.victim().is_done(),
        "3 s after losing {lost} bytes to failed WRITEs the stream is stuck:\n{}",
        describe(&rig.jobs)
    );
    rig.finish();
}

#[test]
fn a_stall_times_out_and_the_answer_that_finally_comes_fails_the_stream() {
    let mut rig = rig();
    rig.run_to_quarter();
    rig.set(Misbehave::Stall);
    run_jobs(&mut rig.jobs, |j| {
        if counters(&j[VICTIM]).timeouts > 0 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    let id = rig.victim().stream().id();
    // The other streams are not held up by the stalled one.
    rig.check_others();
    // A control request queued behind the stall times out and says what and how long.
    let e = rig
        .victim_play()
        .stream
        .stop()
        .expect_err("STOP must time out");
    assert_eq!(
        e,
        StreamError::Timeout {
            stream: id,
            op: StreamOp::Stop,
            timeout_ms: 1000
        }
    );
    assert_eq!(
        e.to_string(),
        "card 0 stream 0/0: TRIGGER STOP: no response within 1000 ms"
    );
    // The backend wakes up and answers requests the engine has given up on.
    rig.set(Misbehave::None);
    rig.victim_play().abandoned = false;
    let e = rig.wait_victim_failed();
    assert!(
        matches!(e.protocol(), Some(ProtocolError::LateResponse { .. })),
        "{e:?}"
    );
    rig.recover_and_finish();
}

#[test]
fn a_bogus_rsp_prod_fails_the_stream_naming_the_index() {
    let mut rig = rig();
    rig.run_to_quarter();
    rig.quiesce_victim();
    rig.set(Misbehave::BogusRspProd);
    let e = rig.wait_victim_failed();
    assert!(
        matches!(e.protocol(), Some(ProtocolError::Ring(_))),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("rsp_prod") && msg.contains("card 0 stream 0/0"),
        "{msg}"
    );
    rig.check_others();
    rig.recover_and_finish();
}

#[test]
fn a_bogus_in_prod_fails_the_stream_naming_the_index() {
    let mut rig = rig();
    rig.run_to_quarter();
    rig.quiesce_victim();
    rig.set(Misbehave::BogusInProd);
    let e = rig.wait_victim_failed();
    assert!(
        matches!(e.protocol(), Some(ProtocolError::EventPage(_))),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("in_prod") && msg.contains("card 0 stream 0/0"),
        "{msg}"
    );
    rig.check_others();
    rig.recover_and_finish();
}

#[test]
fn a_wrong_response_id_fails_the_stream_naming_the_id() {
    let mut rig = rig();
    rig.run_to_quarter();
    rig.set(Misbehave::WrongId);
    let e = rig.wait_victim_failed();
    let Some(ProtocolError::UnknownId { id, .. }) = e.protocol() else {
        panic!("{e:?}");
    };
    assert!(*id >= 0x8000, "{id}");
    assert!(
        e.to_string().contains(&format!(
            "response id {id} (WRITE) matches no request in flight"
        )),
        "{e}"
    );
    rig.check_others();
    rig.recover_and_finish();
}

#[test]
fn a_position_going_backwards_is_a_counted_restart() {
    let mut rig = rig();
    rig.run_to_quarter();
    rig.set(Misbehave::PositionOffset(-32_768));
    rig.run_to_end();
    let c = counters(rig.victim());
    assert!(c.position_restarts >= 1, "{c:?}");
    assert_eq!(
        (c.timeouts, c.protocol_errors, c.backend_errors),
        (0, 0, 0),
        "{c:?}"
    );
    rig.check_victim_bit_exact();
    rig.check_others();
    rig.set(Misbehave::None);
    rig.finish();
}

#[test]
fn a_position_running_ahead_is_a_counted_underrun() {
    let mut rig = rig();
    rig.run_to_quarter();
    let before = counters(rig.victim()).underruns;
    rig.set(Misbehave::PositionOffset(131_072));
    rig.run_to_end();
    let c = counters(rig.victim());
    assert!(c.underruns > before && c.underrun_bytes > 0, "{c:?}");
    assert_eq!(
        (c.timeouts, c.protocol_errors, c.backend_errors),
        (0, 0, 0),
        "{c:?}"
    );
    rig.check_victim_bit_exact();
    rig.check_others();
    rig.set(Misbehave::None);
    rig.finish();
}

#[test]
fn an_event_flood_is_survived() {
    let mut rig = rig();
    rig.run_to_quarter();
    let id = rig.victim_be();
    let be_before = rig.backend.stream_stats(id).expect("stats");
    let fe_before = counters(rig.victim()).events;
    rig.set(Misbehave::EventFlood(500));
    rig.run_to_end();
    let be = rig.backend.stream_stats(id).expect("stats");
    let pushed =
        (be.events_sent + be.events_dropped) - (be_before.events_sent + be_before.events_dropped);
    assert!(pushed >= 500, "the flood happened: {pushed} events");
    let c = counters(rig.victim());
    assert!(c.events - fe_before >= 63, "{c:?}");
    assert_eq!(
        (c.timeouts, c.protocol_errors, c.backend_errors),
        (0, 0, 0),
        "{c:?}"
    );
    rig.check_victim_bit_exact();
    rig.check_others();
    rig.finish();
}
