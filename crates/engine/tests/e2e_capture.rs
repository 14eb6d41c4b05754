//! End to end, item 3: capture through the engine delivers the backend's pattern bit-exact, and a
//! backend loopback (playback stream A → capture stream B) returns A's data bit-exact.

mod e2e;

use e2e::*;
use xen_access::fake::FakeXen;
use xen_snd_engine::StreamState;

fn card() -> Vec<(&'static str, &'static str)> {
    vec![
        ("sample-rates", "48000"),
        ("sample-formats", "s16_le"),
        ("buffer-size", "65536"),
        ("0/0/type", "p"),
        ("0/0/unique-id", "pulse"),
        ("0/1/type", "c"),
        ("0/1/unique-id", "pulse"),
    ]
}

#[test]
fn ten_seconds_of_capture_arrive_bit_exact() {
    let world = FakeXen::new();
    add_card(&world, 0, &card());
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), frontend_options());
    let stream = events.connected(0).take(0, 1);
    let id = stream.id();
    let params = s16_stereo_48k();
    let want = audio_bytes(&params, 10.0);
    let mut jobs = vec![Job::capture(stream, params, want)];
    run_jobs(&mut jobs, |_| Flow::Continue);
    let job = jobs.pop().expect("job");
    assert_eq!(*job.stream().state(), StreamState::Running);
    assert!(job.as_capture().control_errors.is_empty());
    assert_capture_pattern(job.as_capture());
    let c = counters(&job);
    assert_eq!(
        (c.timeouts, c.protocol_errors, c.backend_errors),
        (0, 0, 0),
        "{c:?}"
    );
    let be = backend.stream_stats(be_id(id)).expect("backend stats");
    assert!(be.bytes_sent >= want as u64, "{be:?}");
    let mut stream = job.into_stream();
    stop_and_close(&mut stream);
    drop(stream);
    finish(events, backend);
}

/// Where `needle` starts in `hay` (the first occurrence).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn loopback_returns_the_playback_data_bit_exact() {
    let world = FakeXen::new();
    add_card(&world, 0, &card());
    let (mut options, _records) = backend_options(SCALE);
    options.loopbacks = vec![(
        xen_snd_backend::StreamId::new(FE, 0, 0, 0),
        xen_snd_backend::StreamId::new(FE, 0, 0, 1),
    )];
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), frontend_options());
    let mut card = events.connected(0);
    let a = card.take(0, 0);
    let b = card.take(0, 1);
    let params = s16_stereo_48k();
    let data = playback_data(7, audio_bytes(&params, 10.0));
    let play = Job::play(a, params, data.clone());
    let source = play.stream().stats_handle();
    let base = source.snapshot().bytes_written;
    let mut capture = Job::capture(b, params, data.len());
    if let Job::Capture(c) = &mut capture {
        // Capture may start once A has delivered a buffer, and never reads ahead of A: the
        // backend fills a READ that finds the loop empty with zeros, which would punch holes
        // into the data.
        c.gate = Some(Gate {
            source,
            base,
            total: data.len() as u64,
        });
        // Room for leading silence: read a little more than was played.
        c.want = data.len() + 65_536;
    }
    let mut jobs = vec![play, capture];
    run_jobs(&mut jobs, |_| Flow::Continue);
    let got = &jobs[1].as_capture().got;
    let head = &data[..64];
    let start = find(got, head).unwrap_or_else(|| {
        panic!(
            "A's first 64 bytes never appear in B's {} bytes; {}",
            got.len(),
            describe(&jobs)
        )
    });
    assert!(
        got[..start].iter().all(|&b| b == 0),
        "only silence may precede A's data (found at byte {start})"
    );
    let body = got.get(start..start + data.len()).unwrap_or_else(|| {
        panic!(
            "B ends before all of A's data: start {start}, {} bytes",
            got.len()
        )
    });
    if let Some(i) = body.iter().zip(&data).position(|(x, y)| x != y) {
        panic!(
            "loopback differs at byte {i} of {} (leading silence {start})",
            data.len()
        );
    }
    eprintln!(
        "loopback: {} bytes bit-exact after {start} bytes of leading silence",
        data.len()
    );
    assert_backend_received(&backend, jobs[0].stream().id(), &data);
    for j in &jobs {
        let c = counters(j);
        assert_eq!(
            (c.timeouts, c.protocol_errors, c.backend_errors),
            (0, 0, 0),
            "{c:?}"
        );
    }
    drop(jobs);
    finish(events, backend);
}
