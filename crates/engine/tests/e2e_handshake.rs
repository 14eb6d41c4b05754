//! End to end, item 1: the frontend engine and the reference backend reach Connected over the
//! fakes, and the xenstore tree then matches sndif.md §1.6 key for key.

mod e2e;

use e2e::*;
use xen_access::fake::{FakeXen, FIRST_GREF, FIRST_PORT, LAST_PORT};
use xen_access::{Access, Perm};
use xen_snd_backend::{DeviceKey, LogWhat};
use xen_snd_engine::{FrontendEvent, XenbusState};

/// The card of sndif.md §1.6: `card, backend=0, buffer-size=65536, short-name=VCard,
/// sample-rates=48000, sample-formats=s16_le`, `pcm, name=dev1`, `stream, unique-id=pulse, type=P`.
fn section_1_6_card() -> Vec<(&'static str, &'static str)> {
    vec![
        ("short-name", "VCard"),
        ("buffer-size", "65536"),
        ("sample-rates", "48000"),
        ("sample-formats", "s16_le"),
        ("0/name", "dev1"),
        ("0/0/unique-id", "pulse"),
        ("0/0/type", "p"),
    ]
}

fn number(v: &str, what: &str) -> u32 {
    v.parse()
        .unwrap_or_else(|_| panic!("{what} = {v:?} is not a decimal number"))
}

#[test]
fn both_sides_connect_and_the_tree_matches_section_1_6() {
    let world = FakeXen::new();
    add_card(&world, 0, &section_1_6_card());
    let (options, mut records) = backend_options(SCALE);
    let backend = start_backend(&world, options);
    let mut events = start_frontend(fe_services(&world), frontend_options());
    let mut card = events.connected(0);

    // The owner got the one stream, named as configured.
    assert_eq!(card.info.short_name.as_deref(), Some("VCard"));
    assert_eq!(card.info.devices, vec![(0, Some("dev1".to_owned()))]);
    assert!(card.info.unusable.is_empty(), "{:?}", card.info.unusable);
    let stream = card.take(0, 0);
    assert!(card.streams.is_empty());
    assert_eq!(stream.info().unique_id.as_deref(), Some("pulse"));

    // Both sides Connected, in xenstore and in the backend's own view.
    let key = DeviceKey { fe: FE, dev: 0 };
    assert_eq!(backend.device_state(key), Some(4));
    let mut tree = world.dump(&fe_dir(0));
    tree.extend(world.dump(&be_dir(0)));
    let value = |rel: &str| -> String {
        tree.iter()
            .find(|(p, _)| p == rel)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{rel} missing; tree: {tree:#?}"))
    };
    let fe = fe_dir(0);
    let be = be_dir(0);
    let expected_fixed = [
        (format!("{be}/frontend"), fe.clone()),
        (format!("{be}/frontend-id"), "1".to_owned()),
        (format!("{be}/online"), "1".to_owned()),
        (format!("{be}/state"), "4".to_owned()),
        (format!("{fe}/backend"), be.clone()),
        (format!("{fe}/backend-id"), "0".to_owned()),
        (format!("{fe}/state"), "4".to_owned()),
        (format!("{fe}/short-name"), "VCard".to_owned()),
        (format!("{fe}/buffer-size"), "65536".to_owned()),
        (format!("{fe}/sample-rates"), "48000".to_owned()),
        (format!("{fe}/sample-formats"), "s16_le".to_owned()),
        (format!("{fe}/0/name"), "dev1".to_owned()),
        (format!("{fe}/0/0/unique-id"), "pulse".to_owned()),
        (format!("{fe}/0/0/type"), "p".to_owned()),
        // Not in the Linux trace of §1.6, but what the spec asks a frontend to write (§1.4).
        (format!("{fe}/version"), "2".to_owned()),
    ];
    for (path, want) in &expected_fixed {
        assert_eq!(&value(path), want, "{path}");
    }
    let ring_ref = number(&value(&format!("{fe}/0/0/ring-ref")), "ring-ref");
    let evt_ring_ref = number(&value(&format!("{fe}/0/0/evt-ring-ref")), "evt-ring-ref");
    let event_channel = number(&value(&format!("{fe}/0/0/event-channel")), "event-channel");
    let evt_event_channel = number(
        &value(&format!("{fe}/0/0/evt-event-channel")),
        "evt-event-channel",
    );
    // Grant references and ports come from disjoint ranges in the fake, so a value in the wrong
    // key cannot pass.
    for g in [ring_ref, evt_ring_ref] {
        assert!(g >= FIRST_GREF, "grant reference {g} below {FIRST_GREF}");
    }
    for p in [event_channel, evt_event_channel] {
        assert!(
            (FIRST_PORT..=LAST_PORT).contains(&p),
            "port {p} outside {FIRST_PORT}..={LAST_PORT}"
        );
    }
    assert_ne!(ring_ref, evt_ring_ref);
    assert_ne!(event_channel, evt_event_channel);
    let keys = stream.transport_keys();
    assert_eq!(
        (
            keys.ring_ref,
            keys.evt_ring_ref,
            keys.event_channel,
            keys.evt_event_channel
        ),
        (ring_ref, evt_ring_ref, event_channel, evt_event_channel)
    );

    // Nothing else: every leaf node is one of the above (directories have empty values).
    let transport = [
        "0/0/ring-ref",
        "0/0/evt-ring-ref",
        "0/0/event-channel",
        "0/0/evt-event-channel",
    ]
    .map(|k| format!("{fe}/{k}"));
    let dirs = [
        fe.clone(),
        format!("{fe}/0"),
        format!("{fe}/0/0"),
        be.clone(),
    ];
    for (path, v) in &tree {
        let known = expected_fixed.iter().any(|(p, _)| p == path)
            || transport.contains(path)
            || (dirs.contains(path) && v.is_empty());
        assert!(known, "unexpected node {path} = {v:?}");
    }

    // libxl's permissions: the guest owns its directory (the backend reads), the backend owns its
    // own (the guest reads); the keys the frontend created inherit the guest's.
    let fe_perms = vec![
        Perm {
            domid: FE,
            access: Access::None,
        },
        Perm {
            domid: BE,
            access: Access::Read,
        },
    ];
    let be_perms = vec![
        Perm {
            domid: BE,
            access: Access::None,
        },
        Perm {
            domid: FE,
            access: Access::Read,
        },
    ];
    for p in [fe.clone(), format!("{fe}/0/0/type"), transport[0].clone()] {
        assert_eq!(world.perms(&p), Some(fe_perms.clone()), "{p}");
    }
    for p in [be.clone(), format!("{be}/state")] {
        assert_eq!(world.perms(&p), Some(be_perms.clone()), "{p}");
    }

    // The backend went the libxenbe way: handler created over state 1 → 5, 6, 1; FE 1 → 2;
    // FE 3 → bind → 4.
    records.drain();
    assert_eq!(records.states_written(key, 0), vec![5, 6, 1, 2, 4]);
    assert!(records
        .seen
        .iter()
        .any(|r| r.what == LogWhat::Bound { streams: 1 }));

    // The frontend never wrote Initialised before the backend showed InitWait (sndif.md §2.7).
    let fe_states: Vec<String> = events
        .seen
        .iter()
        .filter(|e| e.starts_with("StateChanged"))
        .cloned()
        .collect();
    let first_initialised = fe_states
        .iter()
        .position(|e| e.contains("frontend: Initialised"))
        .expect("frontend wrote Initialised");
    assert!(
        fe_states[..=first_initialised]
            .iter()
            .any(|e| e.contains("backend: Some(InitWait)")),
        "Initialised before InitWait: {fe_states:#?}"
    );
    assert!(
        events
            .seen
            .iter()
            .all(|e| !e.starts_with("CardError") && !e.starts_with("Error")),
        "{:#?}",
        events.seen
    );
    drop(stream);
    events.fe.shutdown().expect("frontend shutdown");
    // Orderly shutdown: FE 5 → BE 5, 6, 2 → FE 6.
    let stopped = events.drain();
    assert!(
        matches!(stopped.last(), Some(FrontendEvent::Stopped)),
        "{stopped:?}"
    );
    assert_eq!(
        world.read(&format!("{fe}/state")).as_deref(),
        Some(XenbusState::Closed.as_str())
    );
    backend.shutdown().expect("backend shutdown");
}
