//! `xen-snd-backend --locate-pattern` run as a program on files.

use std::path::Path;
use std::process::Command;

use xen_snd_backend::{pattern_bytes, stream_seed, StreamId};

const CAP: StreamId = StreamId::new(3, 0, 0, 1);

/// Runs the binary with `args`: (exit code, stdout, stderr).
fn backend(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xen-snd-backend"))
        .args(args)
        .output()
        .expect("run xen-snd-backend");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn locate_file(dir: &Path, name: &str, data: &[u8], extra: &[&str]) -> (Option<i32>, String) {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write the recording");
    let path = path.to_str().expect("utf-8 temp path").to_owned();
    let id = CAP.to_string();
    let mut args = vec!["--locate-pattern", id.as_str(), path.as_str()];
    args.extend_from_slice(extra);
    let (code, out, err) = backend(&args);
    assert!(err.is_empty(), "stderr: {err}");
    (code, out)
}

#[test]
fn a_late_recording_with_silence_is_contiguous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = stream_seed(CAP);
    let mut data = vec![0u8; 4096];
    data.extend_from_slice(&pattern_bytes(seed, 16_384, 40_000));
    data.extend_from_slice(&[0; 400]);
    data.extend_from_slice(&pattern_bytes(seed, 56_384, 8000));
    let (code, out) = locate_file(dir.path(), "late.raw", &data, &[]);
    assert_eq!(
        out,
        "pattern 3/0/0/1 contiguous from=16384 bytes=48000 gaps=0/0 repeats=0 \
         silence=1024/100in1/0 other=0 runs: silence x1024, @16384+40000, silence x100, \
         @56384+8000\n"
    );
    assert_eq!(code, Some(0));
}

#[test]
fn a_gap_is_broken_and_says_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = stream_seed(CAP);
    let mut data = pattern_bytes(seed, 0, 4096);
    data.extend_from_slice(&pattern_bytes(seed, 8192, 4096));
    let (code, out) = locate_file(dir.path(), "gap.raw", &data, &[]);
    assert_eq!(
        out,
        "pattern 3/0/0/1 broken from=0 bytes=8192 gaps=1/4096 repeats=0 silence=0/0in0/0 \
         other=0 runs: @0+4096, @8192+4096\n"
    );
    assert_eq!(code, Some(1));
}

#[test]
fn frame_bytes_and_other_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Another stream's pattern is not this one's.
    let other = pattern_bytes(stream_seed(StreamId::new(3, 0, 0, 0)), 0, 4000);
    let (code, out) = locate_file(dir.path(), "other.raw", &other, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with("pattern 3/0/0/1 broken from=none bytes=0 "),
        "{out}"
    );
    assert!(out.contains(" other=1000 runs: other x1000\n"), "{out}");
    // Mono S16: 2-byte frames, the recording starting at an odd word alignment.
    let mut data = vec![0u8; 6];
    data.extend_from_slice(&pattern_bytes(stream_seed(CAP), 1002, 2000));
    let (code, out) = locate_file(dir.path(), "mono.raw", &data, &["--frame-bytes", "2"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(" from=1002 bytes=2000 ") && out.contains(" silence=3/0in0/0 "),
        "{out}"
    );
    // An empty file holds no pattern.
    let (code, out) = locate_file(dir.path(), "empty.raw", &[], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.ends_with(" runs: none\n"), "{out}");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.raw");
    let missing = missing.to_str().expect("utf-8 temp path");
    let (code, out, err) = backend(&["--locate-pattern", "3/0/0/1", missing]);
    assert_eq!(code, Some(2));
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("missing.raw"), "{err}");
    let (code, _, err) = backend(&["--locate-pattern", "3/0/0/1"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = backend(&["--locate-pattern", "3/0/0/1", missing, "--frame-bytes", "0"]);
    assert_eq!(code, Some(2), "{err}");
}
