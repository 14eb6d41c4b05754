//! `xen-snd record` against the test hook's reference backend, whose capture streams deliver a
//! deterministic pattern.
#![cfg(feature = "test-hook")]

mod common;

use common::*;
use xen_snd_backend::{pattern_bytes, stream_seed, StreamId};

/// The pattern the backend delivers on capture stream 0/1 of card 0 of guest 1.
fn pattern(len: usize) -> Vec<u8> {
    pattern_bytes(stream_seed(StreamId::new(1, 0, 0, 1)), 0, len)
}

#[test]
fn record_writes_the_backends_pattern() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.wav");
    let p = path.to_str().expect("utf-8");
    let r = xen_snd(
        &["record", p, "--seconds", "0.25"],
        &[("XEN_SND_TEST_WORLD", TWO_STREAM)],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let (tag, channels, rate, bits, data) = read_wav(&path);
    assert_eq!((tag, channels, rate, bits), (1, 2, 48_000, 16));
    // 0.25 s of s16_le stereo at 48 kHz.
    assert_eq!(data.len(), 12_000 * 4);
    assert_eq!(
        data,
        pattern(data.len()),
        "the file holds the backend's pattern"
    );
    assert_eq!(r.get("sha256"), sha256(&data));
    assert_eq!(r.get("frames"), "12000");
    assert_eq!(r.get("bytes"), "48000");
    assert_eq!(r.get("overruns"), "0");
    assert_eq!(r.get("stream"), "0/1");
    let back = r.backend("1/0/0/1");
    assert_eq!(
        (back.kind.as_str(), back.opens, back.closes),
        ("capture", 1, 1)
    );
    assert!(
        back.sent >= 48_000,
        "the backend sent at least what was recorded"
    );
    assert_closed(&r);
    let m = r.messages();
    assert!(
        m[0].starts_with("recording 0.25 s from card 0 stream 0/1 into "),
        "{m:?}"
    );
    assert!(
        m[1].starts_with("recorded 0.25 s (12000 frames) from card 0 stream 0/1"),
        "{m:?}"
    );
}

#[test]
fn record_in_other_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (format, rate, channels, WAV tag, WAV bits, bytes per stream sample)
    let cases = [
        ("float_le", "44100", "1", 3u16, 32u16, 4usize),
        ("u8", "48000", "2", 1, 8, 1),
        ("s24_le", "44100", "2", 1, 24, 4),
    ];
    for (format, rate, channels, tag, bits, bps) in cases {
        let path = dir.path().join(format!("{format}.wav"));
        let r = xen_snd(
            &[
                "record",
                path.to_str().expect("utf-8"),
                "--seconds",
                "0.1",
                "--format",
                format,
                "--rate",
                rate,
                "--channels",
                channels,
            ],
            &[("XEN_SND_TEST_WORLD", TWO_STREAM)],
        );
        assert_eq!(r.code, 0, "{format}: {r:?}");
        let (t, c, rt, b, data) = read_wav(&path);
        assert_eq!(
            (t, c.to_string(), rt.to_string(), b),
            (tag, channels.to_owned(), rate.to_owned(), bits)
        );
        let frames: usize = rate.parse::<usize>().unwrap() / 10;
        let ch: usize = channels.parse().unwrap();
        let raw = pattern(frames * ch * bps);
        // The hash is over the stream's samples; s24_le is stored packed in the file.
        assert_eq!(r.get("sha256"), sha256(&raw), "{format}");
        let stored: Vec<u8> = if format == "s24_le" {
            raw.chunks(4).flat_map(|s| s[..3].to_vec()).collect()
        } else {
            raw
        };
        assert_eq!(data, stored, "{format}");
    }
}
