//! SIGINT and SIGTERM stop the stream cleanly: STOP, CLOSE, frontend 5 → 6, a summary of what
//! was really sent or captured, and exit code 128 + signal.
#![cfg(feature = "test-hook")]

mod common;

use std::time::Duration;

use common::*;
use xen_snd_backend::{pattern_bytes, stream_seed, StreamId};

const START_LIMIT: Duration = Duration::from_secs(20);

#[test]
fn sigint_during_play() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.wav");
    // 20 s: far longer than the test waits.
    let pcm = noise(4 * 48_000 * 20, 12);
    std::fs::write(&path, wav_file(1, 2, 48_000, 16, &pcm)).expect("write");
    let mut live = Live::spawn(
        &["play", path.to_str().expect("utf-8")],
        &[("XEN_SND_TEST_WORLD", TWO_STREAM)],
    );
    live.wait_line("playing ", START_LIMIT);
    live.signal(libc::SIGINT);
    let r = live.finish();
    assert_eq!(r.code, 130, "{r:?}");
    assert_eq!(r.get("interrupted"), "SIGINT");
    // Exactly what the backend received is summarised and hashed: a prefix of the file.
    let back = r.backend("1/0/0/0");
    let bytes: usize = r.get("bytes").parse().expect("bytes");
    assert!(bytes > 0 && bytes < pcm.len(), "{bytes}");
    assert_eq!(back.received, bytes as u64);
    assert_eq!(r.get("sha256"), sha256(&pcm[..bytes]));
    assert_eq!(back.sha256, r.get("sha256"));
    // STOP and CLOSE were sent, and the frontend went through Closing to Closed.
    assert_eq!((back.opens, back.closes), (1, 1));
    assert_eq!(r.states(0).0, "6");
    assert!(
        r.stderr.contains("xen-snd: interrupted by SIGINT"),
        "{}",
        r.stderr
    );
}

#[test]
fn sigterm_during_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rec.wav");
    let mut live = Live::spawn(
        &["record", path.to_str().expect("utf-8"), "--seconds", "30"],
        &[("XEN_SND_TEST_WORLD", TWO_STREAM)],
    );
    live.wait_line("recording ", START_LIMIT);
    live.signal(libc::SIGTERM);
    let r = live.finish();
    assert_eq!(r.code, 143, "{r:?}");
    assert_eq!(r.get("interrupted"), "SIGTERM");
    // The file is complete (sizes fixed up) and holds the pattern captured so far.
    let (_, _, _, _, data) = read_wav(&path);
    assert_eq!(r.get("bytes"), data.len().to_string());
    assert_eq!(
        data,
        pattern_bytes(stream_seed(StreamId::new(1, 0, 0, 1)), 0, data.len())
    );
    assert_eq!(r.get("sha256"), sha256(&data));
    let back = r.backend("1/0/0/1");
    assert_eq!((back.opens, back.closes), (1, 1));
    assert_eq!(r.states(0).0, "6");
}

#[test]
fn sigint_while_a_slow_backend_has_start_pending() {
    // Every response comes 300 ms late: the interrupt lands while START is still pending, and
    // WRITEs keep going out until it completes and STOP can be sent. The summary must count
    // exactly what the backend received anyway.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.wav");
    let pcm = noise(2 * 44_100 * 10, 15);
    std::fs::write(&path, wav_file(1, 1, 44_100, 16, &pcm)).expect("write");
    let world = format!("{TWO_STREAM};misbehave=0/0/0:late-ms=300");
    let mut live = Live::spawn(
        &["play", path.to_str().expect("utf-8")],
        &[("XEN_SND_TEST_WORLD", world.as_str())],
    );
    live.wait_line("playing ", START_LIMIT);
    live.signal(libc::SIGINT);
    let r = live.finish();
    assert_eq!(r.code, 130, "{r:?}");
    let back = r.backend("1/0/0/0");
    let bytes: usize = r.get("bytes").parse().expect("bytes");
    assert_eq!(back.received, bytes as u64, "{r:?}");
    assert_eq!(r.get("sha256"), sha256(&pcm[..bytes]));
    assert_eq!(back.sha256, r.get("sha256"));
    assert_eq!((back.opens, back.closes), (1, 1));
    assert_eq!(r.states(0).0, "6");
}
