//! The real adapters: `status` through Debian's real xenstored (the workspace's
//! `xenstored-harness`, a guest connection with guest permissions) with a card written exactly
//! as libxl writes it; and the device errors past xenstore.

mod common;

use common::*;
use xenstored_harness::{VsndCard, Xenstored};

#[test]
fn status_reads_a_libxl_card_through_the_real_xenstored() {
    let xsd = Xenstored::start().expect("xenstored harness (run scripts/fetch-xen-tools)");
    let guest = xsd.guest(5).expect("guest domain 5");
    xsd.write_vsnd(&VsndCard::testbed_example(5))
        .expect("vsnd card");
    let sock = guest.socket_path().to_str().expect("utf-8").to_owned();
    let r = xen_snd(&["status"], &[("XENSTORED_PATH", sock.as_str())]);
    assert_eq!(r.code, 0, "{r:?}");
    for want in [
        "card 0: Main (Xen vsnd test)",
        "  frontend  /local/domain/5/device/vsnd/0  state Initialising (1)",
        "  backend   domain 0  /local/domain/0/backend/vsnd/5/0  state Initialising (1)",
        "  device 0: Main",
        "    stream 0/0  playback  unique-id \"0\"",
        "    stream 0/1  capture  unique-id \"1\"",
        "      formats   s16_le",
        "      rates     44100, 48000 Hz",
        "      buffer    65536 bytes",
    ] {
        assert!(
            r.stdout.lines().any(|l| l == want),
            "missing {want:?} in:\n{}",
            r.stdout
        );
    }
    let r = xen_snd(
        &["status", "--json", "--card", "0"],
        &[("XENSTORED_PATH", sock.as_str())],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("\"domid\": 5"), "{}", r.stdout);
    let r = xen_snd(
        &["status", "--card", "4"],
        &[("XENSTORED_PATH", sock.as_str())],
    );
    assert_eq!(r.code, 5);
    assert_eq!(
        r.the_error(),
        "xen-snd: no vsnd card 4 in this guest (cards: 0)"
    );
}

#[test]
fn no_vsnd_device_and_missing_grant_device_past_a_real_xenstore() {
    let xsd = Xenstored::start().expect("xenstored harness (run scripts/fetch-xen-tools)");
    let guest = xsd.guest(6).expect("guest domain 6");
    let sock = guest.socket_path().to_str().expect("utf-8").to_owned();
    let r = xen_snd(&["status"], &[("XENSTORED_PATH", sock.as_str())]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(
        r.the_error().starts_with(
            "xen-snd: no vsnd device in this guest (/local/domain/6/device/vsnd is empty or absent)"
        ),
        "{}",
        r.stderr
    );
    // xenstore works, but this machine has no grant-sharing device: play says which and how.
    xsd.write_vsnd(&VsndCard::testbed_example(6))
        .expect("vsnd card");
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("x.wav");
    std::fs::write(&wav, wav_file(1, 2, 48_000, 16, &[0; 64])).expect("write");
    let d = dir.path().to_str().expect("utf-8");
    let r = xen_snd(
        &["play", wav.to_str().expect("utf-8")],
        &[("XENSTORED_PATH", sock.as_str()), ("XEN_SND_DEVICE_DIR", d)],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(
        r.the_error(),
        format!(
            "xen-snd: {d}/gntalloc does not exist: load the kernel module (`modprobe \
             xen-gntalloc`)"
        )
    );
    // A socket nobody listens on.
    let gone = dir.path().join("no-such-socket");
    let r = xen_snd(
        &["status"],
        &[("XENSTORED_PATH", gone.to_str().expect("utf-8"))],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.the_error().starts_with(&format!(
            "xen-snd: cannot connect to xenstored at {} (XENSTORED_PATH): ",
            gone.display()
        )),
        "{}",
        r.stderr
    );
}
