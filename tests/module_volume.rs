//! Volume on the desktop path (WirePlumber + pipewire-pulse, `pactl`), on the test hook:
//! with a backend that serves SET_VOLUME/MUTE the node's volume goes to the backend (0.001 dB
//! steps) and the audio stays bit-exact; with a backend that refuses them (snd_be's default)
//! PipeWire scales the audio itself.

#![cfg(feature = "test-hook")]

mod support;

use std::time::Duration;

use support::{
    check_capture, clip_of, pattern_bytes, serial, wait_for, world, write_pattern_wav, Daemon,
    DaemonBuilder, SINK,
};

fn desktop(items: &str) -> Daemon {
    let d = DaemonBuilder::new()
        .module(&format!("{} log.level = info", world(items)))
        .wireplumber()
        .pulse()
        .start();
    if wait_for(Duration::from_secs(20), || {
        let out = d.run(
            "pactl",
            &["list", "sinks", "short"],
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&out.stdout)
            .contains(SINK)
            .then_some(())
    })
    .is_none()
    {
        d.fail("pactl never listed the sink");
    }
    d.ok("pactl", &["set-default-sink", SINK]);
    d
}

/// The backend's records of volume requests: `(operation, status, detail)`.
fn volume_requests(d: &Daemon) -> Vec<String> {
    d.control("records")
        .into_iter()
        .filter(|l| {
            ["SET_VOLUME", "GET_VOLUME", "MUTE", "UNMUTE"]
                .iter()
                .any(|op| l.contains(&format!(" {op} ")) || l.contains(&format!("({op})")))
        })
        .collect()
}

/// Play `frames` of the pattern from `start` with paplay (waits for it).
fn paplay(d: &Daemon, name: &str, start: u64, frames: u64) -> Vec<u8> {
    let wav = d.root.join(name);
    let clip = write_pattern_wav(&wav, start, frames);
    let out = d.run("paplay", &[wav.to_str().unwrap()], Duration::from_secs(60));
    assert!(out.status.success(), "paplay: {out:?}");
    clip
}

/// Whether `clip` arrived, frame by frame, somewhere in what the backend received (silent frames
/// left out).
fn arrived_exactly(d: &Daemon, clip: &[u8]) -> bool {
    let got = clip_of(&d.backend_wav(1)).bytes;
    let Some(head) = clip.get(..16) else {
        return false;
    };
    got.chunks_exact(4)
        .enumerate()
        .filter(|(_, f)| *f == &head[..4])
        .any(|(i, _)| got.get(i * 4..i * 4 + clip.len()) == Some(clip))
}

#[test]
fn pactl_volume_and_mute_go_to_a_backend_that_controls_them() {
    let _s = serial();
    let mut d = desktop("preset=s16-duplex; volume=on");
    // Something plays (the stream is open: volume requests need an open stream).
    let wav = d.root.join("long.wav");
    write_pattern_wav(&wav, 0, 400 * 1024);
    let play = d.spawn_helper("paplay", &[wav.to_str().unwrap()]);
    if wait_for(Duration::from_secs(20), || {
        (clip_of(&d.backend_wav(1)).bytes.len() > 24_000 * 4).then_some(())
    })
    .is_none()
    {
        d.fail("paplay's audio did not reach the backend");
    }
    assert!(
        d.wait_log("the backend controls the volume", Duration::from_secs(10)),
        "{}",
        d.logs()
    );
    d.ok("pactl", &["set-sink-volume", SINK, "50%"]);
    // Pulse's 50 % is a linear gain of 0.5³ = 0.125: -18.062 dB.
    let set = wait_for(Duration::from_secs(10), || {
        volume_requests(&d)
            .into_iter()
            .find(|l| l.contains("volume [-18062, -18062]"))
    });
    assert!(set.is_some(), "{:?}", volume_requests(&d));
    d.ok("pactl", &["set-sink-mute", SINK, "1"]);
    let muted = wait_for(Duration::from_secs(10), || {
        volume_requests(&d).into_iter().find(|l| {
            l.contains("MUTE") && !l.contains("UNMUTE") && l.contains("mute [true, true]")
        })
    });
    assert!(muted.is_some(), "{:?}", volume_requests(&d));
    d.ok("pactl", &["set-sink-mute", SINK, "0"]);
    let unmuted = wait_for(Duration::from_secs(10), || {
        volume_requests(&d)
            .into_iter()
            .find(|l| l.contains("UNMUTE") && l.contains("mute [false, false]"))
    });
    assert!(unmuted.is_some(), "{:?}", volume_requests(&d));
    let _ = d.signal(play, libc::SIGINT, Duration::from_secs(10));
    // PipeWire's own volume stays at unity: a clip played now arrives bit-exact.
    let clip = paplay(&d, "after.wav", 300_000, 94 * 1024);
    if wait_for(Duration::from_secs(10), || {
        arrived_exactly(&d, &clip).then_some(())
    })
    .is_none()
    {
        let got = clip_of(&d.backend_wav(1)).bytes;
        d.fail(&format!(
            "with the backend's volume the audio must arrive unscaled and bit-exact: {:?}",
            check_capture(&got, &clip)
        ));
    }
    let all = volume_requests(&d);
    assert!(
        all.iter().all(|l| !l.contains("status -")),
        "no refused volume request: {all:?}"
    );
}

#[test]
fn without_backend_volume_pipewire_scales_the_audio() {
    let _s = serial();
    let d = desktop("preset=s16-duplex");
    d.ok("pactl", &["set-sink-volume", SINK, "50%"]);
    let clip = paplay(&d, "clip.wav", 0, 141 * 1024);
    let got = wait_for(Duration::from_secs(10), || {
        let c = clip_of(&d.backend_wav(1));
        (c.bytes.len() >= clip.len() * 9 / 10).then_some(c)
    })
    .unwrap_or_else(|| d.fail("the clip did not reach the backend"));
    // The pattern spans the whole 16-bit range; scaled by 0.125 its peak is 4096.
    let peak = |b: &[u8]| {
        b.chunks_exact(2)
            .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])).abs())
            .max()
            .unwrap_or(0)
    };
    assert!(peak(&clip) >= 32_000, "the pattern is loud");
    let p = peak(&got.bytes);
    assert!((3500..=4200).contains(&p), "peak {p}: not scaled by 0.125");
    assert!(
        !arrived_exactly(&d, &pattern_bytes(0, 4)),
        "nothing unscaled"
    );
    let all = volume_requests(&d);
    assert!(
        all.iter()
            .any(|l| l.contains("GET_VOLUME") && l.contains("-22")),
        "the probe was refused: {all:?}"
    );
    assert!(
        !all.iter().any(|l| l.contains("SET_VOLUME")),
        "nothing forwarded: {all:?}"
    );
}
