//! `xen-snd play` against the test hook's reference backend: the bytes the backend received
//! hash to what the summary says, for every WAV encoding.
#![cfg(feature = "test-hook")]

mod common;

use common::*;

/// Plays `wav` on the two-stream card; checks the common parts of the summary and returns it.
fn play(wav: &[u8], extra_world: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.wav");
    std::fs::write(&path, wav).expect("write wav");
    let path = path.to_str().expect("utf-8").to_owned();
    let mut argv = vec!["play", path.as_str()];
    argv.extend_from_slice(args);
    let world = format!("{TWO_STREAM};{extra_world}");
    xen_snd(&argv, &[("XEN_SND_TEST_WORLD", world.as_str())])
}

#[test]
fn play_sends_exactly_the_file_and_the_hashes_agree() {
    let pcm = noise(48_000 * 4 * 2 / 5, 1); // 0.4 s of s16_le stereo at 48 kHz
    let r = play(&wav_file(1, 2, 48_000, 16, &pcm), "", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let back = r.backend("1/0/0/0");
    // The summary's hash is the hash of the file's PCM data, and of what the backend received.
    assert_eq!(r.get("sha256"), sha256(&pcm));
    assert_eq!(back.sha256, r.get("sha256"));
    assert_eq!(back.received, pcm.len() as u64);
    assert_eq!(r.get("bytes"), pcm.len().to_string());
    assert_eq!(r.get("frames"), (pcm.len() / 4).to_string());
    assert_eq!(r.get("format"), "s16_le");
    assert_eq!(r.get("rate"), "48000");
    assert_eq!(r.get("channels"), "2");
    assert_eq!(r.get("underruns"), "0");
    let delay: f64 = r.get("delay_ms").parse().expect("a measured delay");
    assert!(
        delay > 0.0 && delay <= 80.0 + 1.0,
        "delay {delay} ms within the 80 ms buffer"
    );
    // The summary ends with frames and sha256, for scripts.
    let last: Vec<&str> = r.stdout.lines().rev().take(2).collect();
    assert!(
        last[0].starts_with("sha256 ") && last[1].starts_with("frames "),
        "{}",
        r.stdout
    );
    // One OPEN, one CLOSE, and the frontend shut down (6); the backend is ready again (2).
    assert_eq!((back.opens, back.closes), (1, 1));
    assert_closed(&r);
    // Without a terminal: the start line and one final line, no carriage returns.
    assert!(!r.stderr.contains('\r'));
    let m = r.messages();
    assert!(
        m[0].starts_with("playing ") && m[0].contains("on card 0 stream 0/0: s16_le"),
        "{m:?}"
    );
    assert!(
        m[1].starts_with("played 0.40 s (19200 frames) of "),
        "{m:?}"
    );
    assert_eq!(m.len(), 2, "{m:?}");
}

#[test]
fn every_encoding_is_sent_in_its_sndif_format() {
    // (tag, channels, rate, bits, sndif format, file data, bytes the stream must carry)
    let s24: Vec<u8> = noise(3 * 2 * 4410, 2);
    let s24_as_s24le: Vec<u8> = s24
        .chunks(3)
        .flat_map(|s| [s[0], s[1], s[2], if s[2] & 0x80 != 0 { 0xFF } else { 0 }])
        .collect();
    let s24_as_s32le: Vec<u8> = s24.chunks(3).flat_map(|s| [0, s[0], s[1], s[2]]).collect();
    let u8_mono = noise(4410, 3);
    let f32_stereo = noise(8 * 4410, 4);
    let s32_mono = noise(4 * 4410, 5);
    let cases: Vec<(&str, Vec<u8>, &str, Vec<u8>)> = vec![
        ("", wav_file(1, 2, 44_100, 24, &s24), "s24_le", s24_as_s24le),
        (
            "0/0/sample-formats=s32_le",
            wav_file(1, 2, 44_100, 24, &s24),
            "s32_le",
            s24_as_s32le,
        ),
        (
            "",
            wav_file(1, 1, 44_100, 8, &u8_mono),
            "u8",
            u8_mono.clone(),
        ),
        (
            "",
            wav_file(3, 2, 44_100, 32, &f32_stereo),
            "float_le",
            f32_stereo.clone(),
        ),
        (
            "",
            wav_file(1, 1, 48_000, 32, &s32_mono),
            "s32_le",
            s32_mono.clone(),
        ),
    ];
    for (world, wav, format, sent) in cases {
        let r = play(&wav, world, &["--period-ms", "10"]);
        assert_eq!(r.code, 0, "{format}: {r:?}");
        assert_eq!(r.get("format"), format);
        assert_eq!(r.get("sha256"), sha256(&sent), "{format}");
        assert_eq!(r.backend("1/0/0/0").sha256, sha256(&sent), "{format}");
        assert_eq!(r.get("bytes"), sent.len().to_string(), "{format}");
        assert_eq!(
            r.get("period_frames"),
            if r.get("rate") == "48000" {
                "480"
            } else {
                "441"
            }
        );
    }
}

#[test]
fn a_file_shorter_than_the_prefill_still_plays() {
    // 5 ms: far less than half of the 80 ms buffer the pre-fill waits for.
    let pcm = noise(240 * 4, 6);
    let r = play(&wav_file(1, 2, 48_000, 16, &pcm), "", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.get("frames"), "240");
    assert_eq!(r.backend("1/0/0/0").sha256, sha256(&pcm));
}

#[test]
fn stdin_and_a_truncated_file_play_what_there_is() {
    // Header declares 4000 bytes, only 1002 follow: 250 whole frames are played, the rest noted.
    let pcm = noise(1002, 7);
    let mut wav = wav_file(1, 2, 48_000, 16, &pcm);
    let at = wav.len() - pcm.len() - 4;
    wav[at..at + 4].copy_from_slice(&4000u32.to_le_bytes());
    let r = play(&wav, "", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.get("frames"), "250");
    assert_eq!(r.backend("1/0/0/0").sha256, sha256(&pcm[..1000]));
    assert!(
        r.stderr
            .contains("the file ended 2998 bytes before the end its header declares"),
        "{}",
        r.stderr
    );

    // '-' reads standard input.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.wav");
    let pcm = noise(4 * 2000, 8);
    std::fs::write(&path, wav_file(1, 2, 44_100, 16, &pcm)).expect("write");
    let mut cmd = command(&["play", "-"], &[("XEN_SND_TEST_WORLD", TWO_STREAM)]);
    cmd.stdin(std::fs::File::open(&path).expect("open"));
    let mut child = cmd.spawn().expect("spawn");
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = se.read_to_string(&mut e);
        e
    });
    so.read_to_string(&mut out).expect("stdout");
    err.push_str(&t.join().expect("stderr thread"));
    let (_, status) = wait_bounded(child, RUN_LIMIT);
    let r = Run {
        code: status.code().unwrap_or(-1),
        stdout: out,
        stderr: err,
    };
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.get("sha256"), sha256(&pcm));
    assert_eq!(r.backend("1/0/0/0").sha256, sha256(&pcm));
}

#[test]
fn the_stream_can_be_chosen() {
    // A second playback stream 1/0 on device 1.
    let pcm = noise(4 * 1000, 9);
    let r = play(
        &wav_file(1, 2, 48_000, 16, &pcm),
        "0/1/name=dev1;0/1/0/type=p;0/1/0/unique-id=pulse",
        &["--device", "1", "--stream", "0"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.get("stream"), "1/0");
    assert_eq!(r.backend("1/0/1/0").sha256, sha256(&pcm));
    assert_eq!(r.backend("1/0/0/0").received, 0);
}

#[test]
fn progress_is_a_live_line_only_on_a_terminal() {
    // `script` (util-linux) runs the tool with a pseudo-terminal as its stderr.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.wav");
    std::fs::write(&path, wav_file(1, 2, 48_000, 16, &noise(4 * 12_000, 14))).expect("write");
    let run_on_tty = |extra: &str| {
        let inner = format!("'{BIN}' play '{}' {extra} >/dev/null", path.display());
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &inner, "/dev/null"])
            .env("XEN_SND_TEST_WORLD", TWO_STREAM)
            .env_remove("XEN_SND_DEVICE_DIR")
            .env_remove("XENSTORED_PATH")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("script(1) from util-linux");
        let mut out = String::new();
        use std::io::Read;
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read");
        let (_, status) = wait_bounded(child, RUN_LIMIT);
        assert!(status.success(), "{out}");
        out
    };
    let live = run_on_tty("");
    assert!(live.contains("\rplaying card 0 stream 0/0: "), "{live:?}");
    assert!(
        live.contains("played 0.25 s (12000 frames) of "),
        "{live:?}"
    );
    let quiet = run_on_tty("--no-progress");
    assert!(!quiet.contains("\rplaying"), "{quiet:?}");
    assert!(
        quiet.contains("played 0.25 s (12000 frames) of "),
        "{quiet:?}"
    );
}
