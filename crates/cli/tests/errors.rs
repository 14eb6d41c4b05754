//! Every failure is one clear line on stderr with its own exit code.

mod common;

use common::*;

#[test]
fn no_xen_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    for args in [
        &["status"][..],
        &["status", "--connect"],
        &["play", "x.wav"],
    ] {
        let wav = dir.path().join("x.wav");
        std::fs::write(&wav, wav_file(1, 2, 48_000, 16, &[0; 16])).expect("write");
        let mut argv = args.to_vec();
        let w = wav.to_str().expect("utf-8");
        if argv[0] == "play" {
            argv[1] = w;
        }
        let r = xen_snd(&argv, &[("XEN_SND_DEVICE_DIR", d)]);
        assert_eq!(r.code, 3, "{args:?}: {r:?}");
        assert_eq!(
            r.the_error(),
            format!(
                "xen-snd: not running on Xen: {d}/xenbus does not exist (this is not a Xen \
                 guest, or the kernel lacks its Xen support)"
            )
        );
        assert!(r.stdout.is_empty());
    }
}

#[test]
fn permission_denied_names_the_device_and_what_to_do() {
    // A read-only sysfs attribute cannot be opened read-write even by root (EACCES), so it
    // stands in for a root-only /dev/xen/xenbus whether or not the tests run as root.
    let target = std::path::Path::new("/sys/kernel/uevent_seqnum");
    let denied = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .expect_err("opening a read-only sysfs attribute read-write must fail");
    assert_eq!(denied.raw_os_error(), Some(libc::EACCES), "precondition");
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(target, dir.path().join("xenbus")).expect("symlink");
    let d = dir.path().to_str().expect("utf-8");
    let r = xen_snd(&["status"], &[("XEN_SND_DEVICE_DIR", d)]);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(
        r.the_error(),
        format!(
            "xen-snd: permission denied on {d}/xenbus: run xen-snd as root, or give this user \
             read-write access to {d}/xenbus, {d}/gntalloc and {d}/evtchn"
        )
    );
}

#[test]
fn bad_command_lines_exit_2_and_help_exits_0() {
    let r = xen_snd(&["play", "a.wav", "--volume", "3"], &[]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.the_error(),
        "xen-snd: play: unknown option \"--volume\" (see xen-snd --help)"
    );
    let r = xen_snd(&["record", "a.wav"], &[]);
    assert_eq!(r.code, 2);
    assert!(r.the_error().contains("--seconds S is required"));
    for cmd in ["status", "play", "record"] {
        let r = xen_snd(&[cmd, "--help"], &[]);
        assert_eq!(r.code, 0, "{cmd}");
        assert!(
            r.stdout.starts_with(&format!("xen-snd {cmd} — ")),
            "{cmd}: {}",
            r.stdout
        );
        assert!(r.stdout.contains("USAGE:"), "{cmd}");
        assert!(r.stderr.is_empty());
    }
    let r = xen_snd(&["--help"], &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("EXIT CODES:"));
}

#[cfg(feature = "test-hook")]
mod with_the_test_hook {
    use super::common::*;

    fn world_play(world: &str, wav: &[u8], extra: &[&str]) -> Run {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.wav");
        std::fs::write(&path, wav).expect("write");
        let mut argv = vec!["play", path.to_str().expect("utf-8")];
        argv.extend_from_slice(extra);
        xen_snd(&argv, &[("XEN_SND_TEST_WORLD", world)])
    }

    fn one_second() -> Vec<u8> {
        wav_file(1, 2, 48_000, 16, &noise(4 * 48_000, 11))
    }

    #[test]
    fn no_vsnd_device() {
        let r = xen_snd(&["status"], &[("XEN_SND_TEST_WORLD", "backend=on")]);
        assert_eq!(r.code, 5, "{r:?}");
        assert_eq!(
            r.the_error(),
            "xen-snd: no vsnd device in this guest (/local/domain/1/device/vsnd is empty or \
             absent): give the guest a sound card with vsnd = [...] in its xl.cfg"
        );
        let r = world_play("backend=on", &one_second(), &[]);
        assert_eq!(r.code, 5);
        assert!(r
            .the_error()
            .starts_with("xen-snd: no vsnd device in this guest"));
    }

    #[test]
    fn no_such_card_or_stream() {
        let r = world_play(TWO_STREAM, &one_second(), &["--card", "3"]);
        assert_eq!(r.code, 5);
        assert_eq!(
            r.the_error(),
            "xen-snd: no vsnd card 3 in this guest (cards: 0)"
        );
        let r = world_play(TWO_STREAM, &one_second(), &["--stream", "1"]);
        assert_eq!(r.code, 5);
        assert_eq!(
            r.the_error(),
            "xen-snd: card 0 stream 0/1 is a capture stream; play needs a playback stream \
             (playback streams: 0/0)"
        );
    }

    #[test]
    fn backend_not_answering_the_handshake() {
        let r = world_play(
            &format!("{TWO_STREAM};backend=off"),
            &one_second(),
            &["--timeout", "0.5"],
        );
        assert_eq!(r.code, 6, "{r:?}");
        assert_eq!(
            r.the_error(),
            "xen-snd: card 0: backend not answering: waited 0.5 s for the backend (domain 0, \
             /local/domain/0/backend/vsnd/1/0) to reach InitWait (2) (it is Initialising (1)); \
             is a vsnd backend running in domain 0?"
        );
        // It gave up cleanly: the frontend closed the card again.
        assert_eq!(r.states(0).0, "6");
    }

    #[test]
    fn backend_not_answering_a_request() {
        // The backend takes HW_PARAM_QUERY (at connect) and never answers: the engine falls
        // back to the xenstore configuration after 3 s, then OPEN times out after 3 s more.
        let r = world_play(
            &format!("{TWO_STREAM};misbehave=0/0/0:stall"),
            &one_second(),
            &[],
        );
        assert_eq!(r.code, 6, "{r:?}");
        assert_eq!(
            r.the_error(),
            "xen-snd: card 0 stream 0/0: backend not answering: no response to OPEN within 3000 ms"
        );
        assert_eq!(r.states(0).0, "6");
    }

    #[test]
    fn format_rate_or_channels_not_allowed() {
        // 22050 Hz is not among the card's rates: refused before any handshake.
        let r = world_play(TWO_STREAM, &wav_file(1, 2, 22_050, 16, &[0; 64]), &[]);
        assert_eq!(r.code, 7, "{r:?}");
        let e = r.the_error();
        assert!(
            e.ends_with(
                "(16-bit PCM, 2 channels, 22050 Hz): rate 22050 Hz not allowed; the stream \
                 allows formats u8, s16_le, s24_le, s32_le, float_le; rates 44100, 48000 Hz; \
                 1-2 channels"
            ),
            "{e}"
        );
        assert!(
            e.starts_with("xen-snd: card 0 stream 0/0 cannot play "),
            "{e}"
        );
        assert_eq!(r.states(0).0, "1", "nothing was connected");
        // 64-bit float with only integer formats allowed, and 3 channels.
        let r = world_play(
            &format!("{TWO_STREAM};0/0/sample-formats=s16_le"),
            &wav_file(3, 3, 48_000, 64, &[0; 48]),
            &[],
        );
        assert_eq!(r.code, 7);
        assert!(
            r.the_error()
                .contains("format float64_le, 3 channels not allowed"),
            "{}",
            r.stderr
        );
        // Recording in a format the stream does not offer.
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("o.wav");
        let r = xen_snd(
            &[
                "record",
                out.to_str().expect("utf-8"),
                "--seconds",
                "1",
                "--rate",
                "8000",
            ],
            &[("XEN_SND_TEST_WORLD", TWO_STREAM)],
        );
        assert_eq!(r.code, 7);
        assert!(
            r.the_error().contains("rate 8000 Hz not allowed"),
            "{}",
            r.stderr
        );
        assert!(!out.exists());
    }

    #[test]
    fn backend_refuses_open() {
        let r = world_play(
            &format!("{TWO_STREAM};misbehave=0/0/0:error=-22"),
            &one_second(),
            &[],
        );
        assert_eq!(r.code, 7, "{r:?}");
        assert_eq!(
            r.the_error(),
            "xen-snd: card 0 stream 0/0: the backend refused OPEN with s16_le 48000 Hz 2 \
             channels, buffer 3840 frames, period 960 frames (status -22)"
        );
    }

    #[test]
    fn unusable_wav_files() {
        let r = world_play(TWO_STREAM, b"ID3\x03 this is an mp3", &[]);
        assert_eq!(r.code, 8);
        assert!(
            r.the_error()
                .ends_with("in.wav: not a WAV file (no RIFF header)"),
            "{}",
            r.stderr
        );
        let r = world_play(TWO_STREAM, &wav_file(1, 2, 48_000, 12, &[0; 6]), &[]);
        assert_eq!(r.code, 8);
        assert!(
            r.the_error()
                .ends_with("in.wav: unsupported WAV samples: 12-bit integer PCM"),
            "{}",
            r.stderr
        );
        let r = xen_snd(
            &["play", "/nonexistent/x.wav"],
            &[("XEN_SND_TEST_WORLD", TWO_STREAM)],
        );
        assert_eq!(r.code, 8);
        assert!(
            r.the_error()
                .starts_with("xen-snd: /nonexistent/x.wav: cannot open: "),
            "{}",
            r.stderr
        );
    }
}
