//! The desktop path on the test hook: WirePlumber (headless) + pipewire-pulse see the module's
//! sink like a sound card: `pactl list sinks`, `pactl set-default-sink`, `paplay` bit-exact to
//! the backend.

#![cfg(feature = "test-hook")]

mod support;

use std::time::Duration;

use support::{
    check_capture, clip_of, serial, sha256, wait_for, world, write_pattern_wav, DaemonBuilder, SINK,
};

#[test]
fn pactl_lists_and_selects_the_sink_and_paplay_is_bit_exact() {
    let _s = serial();
    let d = DaemonBuilder::new()
        .module(&format!("{} log.level = info", world("preset=s16-duplex")))
        .wireplumber()
        .pulse()
        .start();
    // Listed, and configured by WirePlumber (stereo, the node's preferred format).
    let listing = wait_for(Duration::from_secs(20), || {
        let out = d.run("pactl", &["list", "sinks"], Duration::from_secs(10));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains(&format!("Name: {SINK}"))
            && text.contains("Sample Specification: s16le 2ch 48000Hz"))
        .then_some(text)
    })
    .unwrap_or_else(|| {
        let out = d.run("pactl", &["list", "sinks"], Duration::from_secs(10));
        d.fail(&format!(
            "pactl never listed the configured sink:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ))
    });
    assert!(
        listing.contains("Description: Xen sound: dev0 (playback)"),
        "{listing}"
    );
    assert!(listing.contains("HARDWARE"), "a hardware sink: {listing}");

    d.ok("pactl", &["set-default-sink", SINK]);
    let default = wait_for(Duration::from_secs(10), || {
        let out = d.run("pactl", &["get-default-sink"], Duration::from_secs(10));
        let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (s == SINK).then_some(s)
    });
    assert_eq!(default.as_deref(), Some(SINK), "{}", d.logs());

    let wav = d.root.join("clip.wav");
    let expected = write_pattern_wav(&wav, 0, 94 * 1024);
    let out = d.run("paplay", &[wav.to_str().unwrap()], Duration::from_secs(30));
    assert!(out.status.success(), "paplay: {out:?}");
    let got = wait_for(Duration::from_secs(10), || {
        let c = clip_of(&d.backend_wav(1));
        (c.bytes.len() >= expected.len()).then_some(c)
    })
    .unwrap_or_else(|| {
        let got = clip_of(&d.backend_wav(1)).bytes;
        d.fail(&format!(
            "the backend got {} clip bytes of {}: {:?}",
            got.len(),
            expected.len(),
            check_capture(&got, &expected)
        ))
    });
    assert_eq!(got.bytes.len(), expected.len());
    assert_eq!(
        sha256(&got.bytes),
        sha256(&expected),
        "paplay's audio changed on the way"
    );
}
