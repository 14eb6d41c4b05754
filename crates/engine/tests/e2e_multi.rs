//! End to end, item 4: two cards × two PCM devices × (one playback + one capture stream), all
//! running at once from one data loop, every stream bit-exact.

mod e2e;

use e2e::*;
use xen_access::fake::FakeXen;
use xen_snd_engine::StreamState;

fn card(name: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("short-name", name),
        ("sample-rates", "48000"),
        ("sample-formats", "s16_le"),
        ("buffer-size", "32768"),
        ("0/name", "front"),
        ("0/0/type", "p"),
        ("0/0/unique-id", "pulse"),
        ("0/1/type", "c"),
        ("0/1/unique-id", "pulse"),
        ("1/name", "rear"),
        ("1/0/type", "p"),
        ("1/0/unique-id", "pulse"),
        ("1/1/type", "c"),
        ("1/1/unique-id", "pulse"),
    ]
}

#[test]
fn two_cards_two_devices_playback_and_capture_all_bit_exact() {
    let world = FakeXen::new();
    add_card(&world, 0, &card("First"));
    add_card(&world, 1, &card("Second"));
    let (options, _records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), frontend_options());
    let cards = events.connected_all(&[0, 1]);
    let params = s16_stereo_48k();
    let len = audio_bytes(&params, 3.0);
    let mut jobs = Vec::new();
    let mut expected = Vec::new();
    for (card_id, card) in cards {
        assert_eq!(card.streams.len(), 4, "card {card_id}: {:?}", card.info);
        for ((device, index), stream) in card.streams {
            assert_eq!(stream.id().card, card_id);
            if is_playback(&stream) {
                let seed = u64::from(card_id * 100 + device * 10 + index);
                let data = playback_data(seed, len);
                expected.push((stream.id(), data.clone()));
                jobs.push(Job::play(stream, params, data));
            } else {
                jobs.push(Job::capture(stream, params, len));
            }
        }
    }
    assert_eq!(jobs.len(), 8);
    run_jobs(&mut jobs, |_| Flow::Continue);
    for j in &jobs {
        assert_eq!(
            *j.stream().state(),
            StreamState::Running,
            "{}",
            describe(&jobs)
        );
        let c = counters(j);
        assert_eq!(
            (c.timeouts, c.protocol_errors, c.backend_errors),
            (0, 0, 0),
            "{c:?}"
        );
        if let Job::Capture(c) = j {
            assert_capture_pattern(c);
        }
    }
    for (id, data) in &expected {
        assert_backend_received(&backend, *id, data);
    }
    // Every stream of both cards was bound and served by the backend.
    assert_eq!(backend.all_stats().len(), 8);
    assert!(backend.all_stats().iter().all(|s| s.bound && s.opens == 1));
    drop(jobs);
    finish(events, backend);
}
