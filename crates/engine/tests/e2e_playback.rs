//! End to end, item 2: playback through the engine arrives bit-exact at the reference backend —
//! 10 s of S16_LE stereo 48 kHz, then every format × rate × channel count the card advertises.
//! The backend's clock runs 50× faster than real time.

mod e2e;

use e2e::*;
use xen_access::fake::FakeXen;
use xen_snd_engine::{PcmParams, StreamState};

#[test]
fn ten_seconds_of_s16_stereo_48k_arrive_bit_exact() {
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
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), frontend_options());
    let stream = events.connected(0).take(0, 0);
    let id = stream.id();
    let params = s16_stereo_48k();
    let data = playback_data(1, audio_bytes(&params, 10.0));
    assert_eq!(data.len(), 48_000 * 4 * 10);
    let mut jobs = vec![Job::play(stream, params, data.clone())];
    run_jobs(&mut jobs, |_| Flow::Continue);
    let job = jobs.pop().expect("job");
    assert_eq!(*job.stream().state(), StreamState::Running);
    assert!(
        job.as_play().control_errors.is_empty(),
        "{:?}",
        job.as_play().control_errors
    );
    let c = counters(&job);
    assert_eq!(c.bytes_written, data.len() as u64);
    assert_eq!(
        (c.timeouts, c.protocol_errors, c.backend_errors),
        (0, 0, 0),
        "{c:?}"
    );
    assert!(c.events > 0, "no CUR_POS consumed: {c:?}");
    assert_backend_received(&backend, id, &data);
    let mut stream = job.into_stream();
    stop_and_close(&mut stream);
    drop(stream);
    finish(events, backend);
}

#[test]
fn every_advertised_format_rate_and_channel_count_arrives_bit_exact() {
    let world = FakeXen::new();
    add_card(
        &world,
        0,
        &[
            ("sample-rates", "44100,48000"),
            // libxl's spelling of float_le is accepted too (sndif.md §1.5).
            ("sample-formats", "s16_le,s32_le,f32_le"),
            ("channels-min", "1"),
            ("channels-max", "2"),
            ("buffer-size", "65536"),
            ("0/0/type", "p"),
            ("0/0/unique-id", "pulse"),
        ],
    );
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), frontend_options());
    let mut stream = events.connected(0).take(0, 0);
    let id = stream.id();
    let hw = stream.info().hw.clone();
    let mut combos = Vec::new();
    for format in hw.formats.iter() {
        for &rate in &hw.rates {
            for channels in hw.channels_min..=hw.channels_max {
                combos.push((format, rate, channels));
            }
        }
    }
    // What the card advertises survived the backend's HW_PARAM_QUERY answer unchanged.
    assert_eq!(combos.len(), 3 * 2 * 2, "{hw:?}");

    // The backend hashes everything a stream ever received; keep the concatenation.
    let mut all = Vec::new();
    for (i, &(format, rate, channels)) in combos.iter().enumerate() {
        let params = PcmParams {
            format,
            rate,
            channels,
            buffer_frames: 4096,
            period_frames: 1024,
        };
        let data = playback_data(100 + i as u64, audio_bytes(&params, 2.0));
        let mut jobs = vec![Job::play(stream, params, data.clone())];
        run_jobs(&mut jobs, |_| Flow::Continue);
        let job = jobs.pop().expect("job");
        let what = format!("{format} {rate} Hz {channels} ch");
        assert!(!job.is_dead(), "{what}: {}", job.stream().state());
        assert!(
            job.as_play().control_errors.is_empty(),
            "{what}: {:?}",
            job.as_play().control_errors
        );
        all.extend_from_slice(&data);
        let be = backend.stream_stats(be_id(id)).expect("backend stats");
        let open = be.last_open.expect("backend saw an OPEN");
        assert_eq!(
            (open.format, open.rate, open.channels),
            (format, rate, channels),
            "{what}: OPEN the backend saw"
        );
        assert_eq!(
            be.bytes_received,
            all.len() as u64,
            "{what}: bytes received"
        );
        assert_eq!(
            be.sha256_hex,
            xen_snd_backend::sha256_hex(&all),
            "{what}: SHA-256 of everything received"
        );
        stream = job.into_stream();
        stop_and_close(&mut stream);
    }
    let c = stream.stats();
    assert_eq!(
        (c.timeouts, c.protocol_errors, c.backend_errors),
        (0, 0, 0),
        "{c:?}"
    );
    drop(stream);
    finish(events, backend);
}
