//! Audio through the module's nodes in a private daemon, without a session manager (PortConfig +
//! pw-link), on the test hook: PipeWire → the module → the frontend engine → the reference
//! backend (in-process fake Xen). Bit-exact playback (the backend's received bytes against the
//! played pattern, SHA-256) in driver and follower mode, and capture of the backend's pattern.

#![cfg(feature = "test-hook")]

mod support;

use std::time::Duration;

use support::{
    check_capture, clip_of, daemon_on_world, read_wav_frames, serial, sha256, wait_for, world,
    write_pattern_wav, Daemon, DaemonBuilder, SINK, SOURCE,
};

/// 141 quanta of 1024 frames (after the lead-in): pw-cat drops a trailing partial quantum.
const CLIP_FRAMES: u64 = 141 * 1024;

/// Play a pattern clip into the sink, calling `during` once the pattern flows; returns the
/// clip's bytes.
pub fn play_clip(d: &Daemon, during: impl FnOnce(&Daemon)) -> Vec<u8> {
    let wav = d.root.join("clip.wav");
    let expected = write_pattern_wav(&wav, 0, CLIP_FRAMES);
    let mut play = d
        .cmd("pw-play")
        .args(["-P", "{ node.name = testplay }", wav.to_str().unwrap()])
        .spawn()
        .expect("spawn pw-play");
    d.port_config("testplay", "Output");
    d.port_config(SINK, "Input");
    d.link("testplay:output_FL", &format!("{SINK}:playback_FL"));
    d.link("testplay:output_FR", &format!("{SINK}:playback_FR"));
    if wait_for(Duration::from_secs(20), || {
        (clip_of(&d.backend_wav(1)).bytes.len() > 24_000 * 4).then_some(())
    })
    .is_none()
    {
        let _ = play.kill();
        let _ = play.wait();
        d.fail("the pattern did not reach the backend");
    }
    during(d);
    let st = wait_for(Duration::from_secs(40), || play.try_wait().ok().flatten());
    let Some(st) = st else {
        let _ = play.kill();
        let _ = play.wait();
        d.fail("pw-play did not finish within 40 s");
    };
    assert!(st.success(), "pw-play: {st}");
    expected
}

/// The backend received exactly `expected` (silence around and inside aside).
pub fn assert_bit_exact(d: &Daemon, expected: &[u8]) {
    let got = wait_for(Duration::from_secs(10), || {
        let c = clip_of(&d.backend_wav(1));
        (c.bytes.len() >= expected.len()).then_some(c)
    })
    .unwrap_or_else(|| {
        let got = clip_of(&d.backend_wav(1)).bytes;
        d.fail(&format!(
            "the backend got {} clip bytes, expected {}: {:?}",
            got.len(),
            expected.len(),
            check_capture(&got, expected)
        ))
    });
    assert_eq!(got.bytes.len(), expected.len());
    assert_eq!(
        sha256(&got.bytes),
        sha256(expected),
        "the audio that reached the backend differs from what was played"
    );
    if got.gaps > 0 {
        // Not a failure: under CPU load the graph xruns and PipeWire inserts silence while the
        // player's data waits; every frame of the clip still arrived, unchanged and in order.
        eprintln!("note: {} silent frames inserted by graph xruns", got.gaps);
    }
}

/// The module's "stopped (…)" line of `node`, once it is in the daemon log (at most 10 s).
pub fn stop_line(d: &Daemon, node: &str) -> String {
    wait_for(Duration::from_secs(10), || {
        d.daemon_log()
            .lines()
            .find(|l| l.contains(&format!("{node}: stopped (")))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| d.fail(&format!("no stop line of {node}")))
}

/// No caught panics or errors from the module.
pub fn assert_no_errors(d: &Daemon) {
    let log = d.daemon_log();
    for l in log.lines().filter(|l| l.contains("mod.xen-snd")) {
        assert!(!l.starts_with("[E]"), "{l}");
    }
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn playback_is_bit_exact_through_the_engine_and_the_sink_drives_the_graph() {
    let _s = serial();
    let d = DaemonBuilder::new()
        .module(&format!("{} log.level = info", world("preset=s16-duplex")))
        .start();
    assert!(
        wait_for(Duration::from_secs(10), || d.node_id(SINK)).is_some(),
        "{}",
        d.logs()
    );
    assert_eq!(
        d.node_prop(SINK, "media.class").as_deref(),
        Some("Audio/Sink")
    );
    assert_eq!(
        d.node_prop(SINK, "node.description").as_deref(),
        Some("Xen sound: dev0 (playback)")
    );
    assert_eq!(d.node_prop(SINK, "api.xen.domid").as_deref(), Some("1"));
    assert_eq!(d.node_prop(SINK, "node.driver").as_deref(), Some("true"));
    let expected = play_clip(&d, |d| {
        // Mid-clip: our node runs and the Dummy-Driver has nothing to drive.
        assert_eq!(d.node_state(SINK).as_deref(), Some("running"));
        assert_eq!(d.node_state("Dummy-Driver").as_deref(), Some("suspended"));
    });
    assert_bit_exact(&d, &expected);
    // The node's own timer drove the cycles; the stream was stopped and closed afterwards.
    let line = stop_line(&d, SINK);
    let driven: u64 = line
        .split('(')
        .nth(2)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the driven cycles in {line}"));
    assert!(
        driven >= CLIP_FRAMES / 1024,
        "{driven} cycles driven for {CLIP_FRAMES} frames: {line}"
    );
    let closed = wait_for(Duration::from_secs(10), || {
        d.backend_stream("1/0/0/0")
            .filter(|l| l.contains(" opens 1 closes 1"))
    });
    assert!(closed.is_some(), "{:?}", d.backend_stream("1/0/0/0"));
    assert_no_errors(&d);
}

/// A backend that answers late (every response comes 6 ms after its request, OPEN and START
/// included): the driving sink holds the graph while its stream opens and starts instead of
/// running cycles whose data it would drop (without that wait the first cycle's quantum is
/// dropped: the module counts it, and the test fails).
#[test]
fn playback_start_waits_for_a_slow_backend_and_drops_nothing() {
    let _s = serial();
    let d = daemon_on_world(
        "preset=s16-duplex; misbehave=0/0/0:late-ms=6",
        "log.level = info",
    );
    let expected = play_clip(&d, |_| {});
    let line = stop_line(&d, SINK);
    assert!(line.contains(" 0 dropped frames"), "{line}");
    assert_bit_exact(&d, &expected);
    assert_no_errors(&d);
}

/// The graph's quantum grows past what the automatic buffer holds (two quanta): within a
/// second the node restarts its stream toward the backend with a larger buffer and plays on.
/// The restart costs at most what the backend had queued (the old buffer), nothing after it.
#[test]
fn the_buffer_grows_with_the_graph_quantum() {
    let _s = serial();
    let d = daemon_on_world("preset=s16-duplex", "log.level = info");
    let expected = play_clip(&d, |d| {
        let st = d
            .cmd("pw-metadata")
            .args(["-n", "settings", "0", "clock.force-quantum", "2048"])
            .status()
            .expect("pw-metadata");
        assert!(st.success(), "pw-metadata: {st}");
        assert!(
            d.wait_log(
                "graph quantum 2048: restarted with a buffer of 4800 frames (was 3840)",
                Duration::from_secs(10)
            ),
            "{}",
            d.logs()
        );
    });
    let got = wait_for(Duration::from_secs(10), || {
        let c = clip_of(&d.backend_wav(1));
        (c.bytes.len() + 3840 * 4 >= expected.len()).then_some(c)
    })
    .unwrap_or_else(|| d.fail("the clip did not arrive (more than the old buffer is missing)"));
    let c = check_capture(&got.bytes, &expected).unwrap_or_else(|e| d.fail(&e));
    assert!(c.lost <= 3840, "{c:?}");
    assert!(
        d.backend_stream("1/0/0/0")
            .is_some_and(|l| l.contains(" opens 2 ")),
        "one restart: {:?}",
        d.backend_stream("1/0/0/0")
    );
    assert_no_errors(&d);
}

/// A follower keeps the fill level it started with (half the buffer): a large buffer gives the
/// in-process backend's threads room for scheduling delays on a loaded machine. A backend that
/// still runs dry (its threads are not realtime) plays later from then on: the fill level grows,
/// and rate matching — a resampler, not bit-exact — must engage to bring it back. Then the test
/// only checks that the clip arrived in full (and says so).
#[test]
fn playback_in_follower_mode_is_bit_exact() {
    let _s = serial();
    let d = daemon_on_world(
        "preset=s16-duplex",
        "xen.driver = false xen.buffer-frames = 7680 log.level = info",
    );
    assert_eq!(d.node_prop(SINK, "node.driver"), None);
    let expected = play_clip(&d, |d| {
        // Mid-clip: the Dummy-Driver drives, our node follows.
        assert_eq!(d.node_state(SINK).as_deref(), Some("running"));
        assert_eq!(d.node_state("Dummy-Driver").as_deref(), Some("running"));
    });
    let line = stop_line(&d, SINK);
    assert!(
        line.contains("(0 driven cycles"),
        "a follower drives nothing: {line}"
    );
    let stream = d.backend_stream("1/0/0/0").expect("backend stream");
    let underruns: u64 = stream
        .split(" underruns ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no underruns in {stream}"));
    if underruns == 0 {
        assert!(
            line.contains(" 0 rate-matched cycles"),
            "the clocks agree, the resampler stayed out: {line}"
        );
        assert_bit_exact(&d, &expected);
    } else {
        eprintln!(
            "note: the in-process backend ran dry {underruns} times (a loaded machine); rate \
             matching engaged, so only the clip's length is checked: {line}"
        );
        let got = clip_of(&d.backend_wav(1)).bytes.len() as f64;
        let want = expected.len() as f64;
        assert!(
            (got - want).abs() < want * 0.05,
            "got {got} of {want} bytes"
        );
    }
    assert_no_errors(&d);
}

#[test]
fn capture_delivers_the_backend_pattern_exactly_and_in_order() {
    let _s = serial();
    let mut d = DaemonBuilder::new()
        .module(&format!("{} log.level = info", world("preset=s16-duplex")))
        .start();
    assert!(wait_for(Duration::from_secs(10), || d.node_id(SOURCE)).is_some());
    assert_eq!(
        d.node_prop(SOURCE, "media.class").as_deref(),
        Some("Audio/Source")
    );
    let wav = d.root.join("rec.wav");
    let rec = d.spawn_helper(
        "pw-record",
        &[
            "-P",
            "{ node.name = testrec }",
            "--format",
            "s16",
            "--rate",
            "48000",
            "--channels",
            "2",
            wav.to_str().unwrap(),
        ],
    );
    d.port_config("testrec", "Input");
    d.port_config(SOURCE, "Output");
    d.link(&format!("{SOURCE}:capture_FL"), "testrec:input_FL");
    d.link(&format!("{SOURCE}:capture_FR"), "testrec:input_FR");
    let want = 3 * 48_000 * 4 + 44;
    if wait_for(Duration::from_secs(20), || {
        std::fs::metadata(&wav).ok().filter(|m| m.len() >= want)
    })
    .is_none()
    {
        d.fail("pw-record recorded too little");
    }
    let st = d
        .signal(rec, libc::SIGINT, Duration::from_secs(10))
        .unwrap_or_else(|| d.fail("pw-record did not stop"));
    assert!(st.code().is_some(), "pw-record: {st}");
    let recorded: Vec<u8> = read_wav_frames(&wav)
        .into_iter()
        .flat_map(|(l, r)| {
            let mut b = l.to_le_bytes().to_vec();
            b.extend_from_slice(&r.to_le_bytes());
            b
        })
        .collect();
    let seed = xen_snd_backend::stream_seed(xen_snd_backend::StreamId::new(1, 0, 0, 1));
    let pattern = xen_snd_backend::pattern_bytes(seed, 0, 48_000 * 4 * 30);
    let c = check_capture(&recorded, &pattern).unwrap_or_else(|e| d.fail(&e));
    assert!(
        c.frames >= 2 * 48_000,
        "only {} pattern frames: {c:?}",
        c.frames
    );
    assert!(c.longest_run >= 48_000, "no second without a break: {c:?}");
    if c.lost > 0 || c.silent > 0 {
        // Not a failure: under CPU load the recorder misses graph cycles (their frames are lost
        // downstream) or the graph inserts silence; what arrived is exact and in order.
        eprintln!("note: capture under load: {c:?}");
    }
    assert_no_errors(&d);
}
