//! `xen-snd play` and `record` survive a backend restart: the test hook's `restart-backend=BYTES`
//! kills the reference backend in mid-stream and starts a new one (5 → 6 → 1, like libxenbe);
//! the tool waits for the card, reopens the stream and carries on.
#![cfg(feature = "test-hook")]

mod common;

use std::path::Path;

use common::*;
use xen_snd_backend::{pattern_bytes, stream_seed, StreamId};

/// 80 ms of s16_le stereo at 48 kHz: the default buffer (4 periods of 20 ms).
const BUFFER_BYTES: usize = 80 * 192;

/// The data chunk of a WAV file the backend wrote (any header layout).
fn wav_data(path: &Path) -> Vec<u8> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[0..4], b"RIFF", "{}", path.display());
    let mut at = 12;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
        if id == b"data" {
            return b[at + 8..(at + 8 + len).min(b.len())].to_vec();
        }
        at += 8 + len + len % 2;
    }
    panic!("no data chunk in {}", path.display());
}

fn num(r: &Run, key: &str) -> u64 {
    r.get(key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number:\n{}", r.stdout))
}

#[test]
fn play_goes_on_after_the_backend_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1.2 s of s16_le stereo at 48 kHz; the backend is killed after 0.4 s of it arrived.
    let pcm = noise(192 * 1200, 7);
    let input = dir.path().join("in.wav");
    std::fs::write(&input, wav_file(1, 2, 48_000, 16, &pcm)).expect("write wav");
    let out = dir.path().join("backend");
    let world = format!(
        "{TWO_STREAM}; wav-dir={}; restart-backend={}",
        out.display(),
        192 * 400
    );
    let r = xen_snd(
        &["play", input.to_str().expect("utf-8")],
        &[("XEN_SND_TEST_WORLD", world.as_str())],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("test-hook: restarted the backend: backend 1 ")),
        "{}",
        r.stderr
    );
    assert_eq!(num(&r, "reconnects"), 1, "{r:?}");
    // The whole file arrived once, in order, as far as the summary is concerned.
    assert_eq!(r.get("sha256"), sha256(&pcm));
    assert_eq!(num(&r, "bytes"), pcm.len() as u64);
    assert_eq!(num(&r, "frames"), pcm.len() as u64 / 4);

    // What the backends got: the first a prefix of the file, the second the rest from where
    // the first stopped acknowledging (what the first took without acknowledging, if anything,
    // was sent again: at most one buffer).
    let first = wav_data(&out.join("backend1/1-0-0-0.wav"));
    let second = wav_data(&out.join("backend2/1-0-0-0.wav"));
    assert!(
        first.len() >= 192 * 400 && first.len() < pcm.len(),
        "{}",
        first.len()
    );
    assert_eq!(
        first[..],
        pcm[..first.len()],
        "backend 1 got the file's start"
    );
    assert!(!second.is_empty() && second.len() < pcm.len());
    let resume = pcm.len() - second.len();
    assert_eq!(
        second[..],
        pcm[resume..],
        "backend 2 got the rest of the file"
    );
    assert!(
        first.len() >= resume && first.len() - resume <= BUFFER_BYTES,
        "overlap {} bytes (backend 1 got {}, backend 2 started at {resume})",
        first.len() as i64 - resume as i64,
        first.len()
    );
    // The summary's hash is what the backends received: backend 1 up to what it acknowledged,
    // then backend 2.
    let mut received = first[..resume].to_vec();
    received.extend_from_slice(&second);
    assert_eq!(r.get("sha256"), sha256(&received));
    let back = r.backend("1/0/0/0");
    assert_eq!(back.received, second.len() as u64);
    assert_eq!(back.sha256, sha256(&second));
    assert_eq!((back.opens, back.closes), (1, 1));
    // Lost: what backend 1 acknowledged but had not played (at most its buffer).
    let lost = num(&r, "lost_bytes");
    assert!(lost <= BUFFER_BYTES as u64, "lost_bytes {lost}");
    // The summary still ends with frames and sha256.
    let last: Vec<&str> = r.stdout.lines().rev().take(2).collect();
    assert!(
        last[0].starts_with("sha256 ") && last[1].starts_with("frames "),
        "{}",
        r.stdout
    );
    let m = r.messages();
    assert!(
        m.iter()
            .any(|l| l.starts_with("xen-snd: card 0 disconnected (")
                && l.contains("waiting up to 30.0 s")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|l| l.starts_with("xen-snd: card 0 connected again after ")),
        "{m:?}"
    );
    assert_closed(&r);
}

#[test]
fn play_without_reconnecting_fails_at_the_disconnect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcm = noise(192 * 1000, 8);
    let input = dir.path().join("in.wav");
    std::fs::write(&input, wav_file(1, 2, 48_000, 16, &pcm)).expect("write wav");
    let world = format!("{TWO_STREAM}; restart-backend={}", 192 * 200);
    let r = xen_snd(
        &[
            "play",
            input.to_str().expect("utf-8"),
            "--reconnect-timeout",
            "0",
        ],
        &[("XEN_SND_TEST_WORLD", world.as_str())],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let errors = r.error_lines();
    assert!(
        errors
            .iter()
            .any(|l| l.starts_with("xen-snd: card 0 disconnected: ")),
        "{}",
        r.stderr
    );
    assert!(r.summary("sha256").is_none(), "no summary on failure");
}

/// The pattern the backend delivers on capture stream 0/1 of card 0 of guest 1, from OPEN on.
fn pattern(len: usize) -> Vec<u8> {
    pattern_bytes(stream_seed(StreamId::new(1, 0, 0, 1)), 0, len)
}

#[test]
fn record_goes_on_into_the_same_file_after_the_backend_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.wav");
    // The backend is killed after it sent 0.3 s of the 1 s recording.
    let world = format!("{TWO_STREAM}; restart-backend={}", 192 * 300);
    let r = xen_snd(
        &["record", path.to_str().expect("utf-8"), "--seconds", "1"],
        &[("XEN_SND_TEST_WORLD", world.as_str())],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(num(&r, "reconnects"), 1, "{r:?}");
    let (_, channels, rate, bits, data) = read_wav(&path);
    assert_eq!((channels, rate, bits), (2, 48_000, 16));
    assert_eq!(data.len(), 192_000, "a full second, across the restart");
    assert_eq!(r.get("sha256"), sha256(&data));
    assert_eq!(num(&r, "bytes"), 192_000);
    // The file holds the first backend's pattern from its OPEN, then the second backend's
    // pattern from its OPEN: find where the second starts (a whole frame).
    let whole = pattern(data.len());
    let same = data
        .iter()
        .zip(whole.iter())
        .take_while(|(a, b)| a == b)
        .count();
    let split = (0..=same / 4)
        .rev()
        .map(|f| f * 4)
        .find(|k| data[*k..] == pattern(data.len() - k)[..])
        .unwrap_or_else(|| panic!("no split point; the first {same} bytes match backend 1"));
    assert!(
        split > 0 && split < data.len(),
        "both backends contributed (split at {split})"
    );
    let lost = num(&r, "lost_bytes");
    assert!(lost <= 192 * 1000, "lost_bytes {lost}");
    let back = r.backend("1/0/0/1");
    assert_eq!(
        (back.opens, back.closes),
        (1, 1),
        "the new backend's stream"
    );
    assert!(back.sent >= (data.len() - split) as u64);
    assert_closed(&r);
}
