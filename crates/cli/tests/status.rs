//! `xen-snd status` against the test hook's fake Xen with the reference backend.
#![cfg(feature = "test-hook")]

mod common;

use common::*;

#[test]
fn status_lists_a_two_stream_card_without_touching_it() {
    let r = xen_snd(&["status"], &[("XEN_SND_TEST_WORLD", TWO_STREAM)]);
    assert_eq!(r.code, 0, "{r:?}");
    let want = [
        "card 0: VCard (Virtual card)",
        "  frontend  /local/domain/1/device/vsnd/0  state Initialising (1)",
        "  backend   domain 0  /local/domain/0/backend/vsnd/1/0  state InitWait (2)",
        "  device 0: dev0",
        "    stream 0/0  playback  unique-id \"pulse\"",
        "    stream 0/1  capture  unique-id \"pattern\"",
        "      formats   u8, s16_le, s24_le, s32_le, float_le",
        "      rates     44100, 48000 Hz",
        "      channels  1-2",
        "      buffer    32768 bytes",
    ];
    for w in want {
        assert!(
            r.stdout.lines().any(|l| l == w),
            "missing line {w:?} in:\n{}",
            r.stdout
        );
    }
    // Both streams are listed, each with its own parameter block.
    assert_eq!(
        r.stdout.matches("      formats ").count(),
        2,
        "{}",
        r.stdout
    );
    // Read-only: no transport keys, no handshake, the frontend state is still the toolstack's.
    assert!(!r.stdout.contains("transport"), "{}", r.stdout);
    assert!(!r.stdout.contains("backend allows"), "{}", r.stdout);
    assert_eq!(r.states(0).0, "1");
    assert!(r.messages().is_empty(), "{}", r.stderr);
}

#[test]
fn status_json_for_scripts() {
    let r = xen_snd(
        &["status", "--json"],
        &[(
            "XEN_SND_TEST_WORLD",
            "preset=two-stream;0/0/1/sample-rates=16000;0/0/0/bogus=1",
        )],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let j = &r.stdout;
    assert!(
        j.trim_start().starts_with('{') && j.trim_end().ends_with('}'),
        "{j}"
    );
    for want in [
        "\"domid\": 1",
        "\"card\": 0",
        "\"short_name\": \"VCard\"",
        "\"path\": \"/local/domain/0/backend/vsnd/1/0\"",
        "\"name\": \"InitWait\"",
        "\"type\": \"playback\"",
        "\"type\": \"capture\"",
        "\"unique_id\": \"pattern\"",
        "\"ring-ref\": null",
        // The capture stream's own rate list replaces the card's.
        "\"rates\": [\n                  16000\n                ]",
    ] {
        assert!(j.contains(want), "missing {want:?} in:\n{j}");
    }
    // The unknown key is reported as a warning naming it.
    assert!(j.contains("0/0/bogus: unknown node, ignored"), "{j}");
    // Balanced braces and brackets outside strings: a cheap well-formedness check.
    let (mut depth, mut in_str, mut esc) = (0i32, false, false);
    for c in j.chars() {
        match (in_str, esc, c) {
            (true, true, _) => esc = false,
            (true, false, '\\') => esc = true,
            (true, false, '"') => in_str = false,
            (false, _, '"') => in_str = true,
            (false, _, '{' | '[') => depth += 1,
            (false, _, '}' | ']') => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "unbalanced JSON");
    }
    assert_eq!(depth, 0, "unbalanced JSON:\n{j}");
}

#[test]
fn status_connect_shows_the_backend_answer_and_disconnects() {
    let r = xen_snd(
        &["status", "--connect"],
        &[(
            "XEN_SND_TEST_WORLD",
            "preset=two-stream;0/0/0/sample-formats=s16_le,float_le;0/0/1/channels-max=1",
        )],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let out = &r.stdout;
    assert!(
        out.contains("  connected frontend state Connected (4) (disconnected again on exit)"),
        "{out}"
    );
    // HW_PARAM_QUERY answers per stream: the playback stream's formats, the capture stream's
    // single channel.
    assert!(
        out.contains(
            "      backend allows formats s16_le, float_le; rates 44100-48000 Hz; channels 1-2;"
        ),
        "{out}"
    );
    assert!(
        out.contains("      backend allows formats u8, s16_le, s24_le, s32_le, float_le; rates 44100-48000 Hz; channels 1;"),
        "{out}"
    );
    assert_eq!(out.matches("      offered ").count(), 2, "{out}");
    // Read while connected: both sides Connected, the transport keys published.
    assert!(
        out.contains("  frontend  /local/domain/1/device/vsnd/0  state Connected (4)  version 2"),
        "{out}"
    );
    assert!(out.contains("state Connected (4)\n  connected"), "{out}");
    assert_eq!(out.matches("      transport ring-ref ").count(), 2, "{out}");
    // The handshake happened and was undone: the frontend ends Closed (6), the backend went back
    // to waiting for a frontend.
    assert_closed(&r);
}

#[test]
fn status_shows_a_card_with_a_broken_configuration() {
    let r = xen_snd(
        &["status"],
        &[(
            "XEN_SND_TEST_WORLD",
            "preset=two-stream;card=2;2/short-name=Empty",
        )],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("card 2: Empty\n"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("  config    unusable: 0: missing: a vsnd card needs PCM device 0"),
        "{}",
        r.stdout
    );
    // --card selects one card.
    let r = xen_snd(
        &["status", "--card", "2"],
        &[("XEN_SND_TEST_WORLD", "preset=two-stream;card=2")],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("card 0"), "{}", r.stdout);
    assert!(r.stdout.starts_with("card 2\n"), "{}", r.stdout);
}
