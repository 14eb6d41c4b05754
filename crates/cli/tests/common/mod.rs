//! Helpers: run the `xen-snd` binary with a bounded wait, build WAV files, read the summary and
//! the test hook's report.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Bound for one run of the binary.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_xen-snd");

/// What one run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The backend's statistics of one stream, from the test hook's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStream {
    pub kind: String,
    pub received: u64,
    pub sha256: String,
    pub sent: u64,
    pub underruns: u64,
    pub opens: u64,
    pub closes: u64,
}

impl Run {
    /// The value of summary line `key value` on stdout.
    pub fn summary(&self, key: &str) -> Option<String> {
        self.stdout.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_owned)
        })
    }

    /// A summary value that must be there.
    pub fn get(&self, key: &str) -> String {
        self.summary(key).unwrap_or_else(|| {
            panic!(
                "no `{key}` in the summary:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Stderr lines that are not the test hook's.
    pub fn messages(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.starts_with("test-hook: "))
            .collect()
    }

    /// The lines of stderr starting with `xen-snd: ` (errors and notes).
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("xen-snd: "))
            .collect()
    }

    /// The one error line, asserted to be the only message of the run.
    pub fn the_error(&self) -> &str {
        let m = self.messages();
        assert_eq!(
            m.len(),
            1,
            "expected exactly one error line, got:\n{}",
            self.stderr
        );
        let line = m[0];
        assert!(line.starts_with("xen-snd: "), "not an error line: {line}");
        line
    }

    /// The backend's report of stream `fe/dev/pcm/stream`.
    pub fn backend(&self, id: &str) -> BackendStream {
        let prefix = format!("test-hook: stream {id} ");
        let line = self
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no backend report for {id}:\n{}", self.stderr));
        let w: Vec<&str> = line.split_whitespace().collect();
        let field = |name: &str| -> String {
            let i = w
                .iter()
                .position(|x| *x == name)
                .unwrap_or_else(|| panic!("no {name} in {line}"));
            w[i + 1].to_owned()
        };
        let num = |name: &str| field(name).parse::<u64>().expect("number");
        BackendStream {
            kind: w[0].to_owned(),
            received: num("received"),
            sha256: field("sha256"),
            sent: num("sent"),
            underruns: num("underruns"),
            opens: num("opens"),
            closes: num("closes"),
        }
    }

    /// The frontend and backend state of `card` at exit, from the test hook.
    pub fn states(&self, card: u32) -> (String, String) {
        let prefix = format!("test-hook: card {card} frontend-state ");
        let line = self
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no state report for card {card}:\n{}", self.stderr));
        let (fe, be) = line.split_once(" backend-state ").expect("backend-state");
        (fe.to_owned(), be.to_owned())
    }
}

/// A command for the binary with a clean environment (no hook, no device overrides).
pub fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("XEN_SND_TEST_WORLD")
        .env_remove("XEN_SND_DEVICE_DIR")
        .env_remove("XENSTORED_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Waits for `child` at most `limit` (killing it and failing the test after that).
pub fn wait_bounded(child: Child, limit: Duration) -> (Child, ExitStatus) {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut child = child;
        let status = child.wait();
        let _ = tx.send(());
        (child, status)
    });
    if rx.recv_timeout(limit).is_err() {
        // SAFETY: signals the child process this test started, by its id.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        panic!("xen-snd did not finish within {limit:?}");
    }
    let (child, status) = waiter.join().expect("waiter thread");
    (child, status.expect("wait"))
}

/// Runs the binary to completion (bounded).
pub fn xen_snd(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut child = command(args, envs).spawn().expect("spawn xen-snd");
    let out = read_all(child.stdout.take().expect("stdout"));
    let err = read_all(child.stderr.take().expect("stderr"));
    let (_, status) = wait_bounded(child, RUN_LIMIT);
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().expect("stdout thread"),
        stderr: err.join().expect("stderr thread"),
    }
}

/// A running binary whose stderr is read line by line.
pub struct Live {
    pub child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Live {
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Live {
        let mut child = command(args, envs).spawn().expect("spawn xen-snd");
        let stdout = read_all(child.stdout.take().expect("stdout"));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Live {
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
            stdout: Some(stdout),
        }
    }

    /// Waits (bounded) for a stderr line starting with `prefix`.
    pub fn wait_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no stderr line starting with {prefix:?} within {limit:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Sends `sig` to the process (by its id).
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: signals the child process this test started, by its id.
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill");
    }

    /// Waits (bounded) for the exit and returns everything.
    pub fn finish(mut self) -> Run {
        let child = self.child.take().expect("running");
        let (_, status) = wait_bounded(child, RUN_LIMIT);
        let mut stderr = self.seen.join("\n");
        // The reader thread ends at EOF; take what it still has.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            stderr.push('\n');
            stderr.push_str(&l);
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: self
                .stdout
                .take()
                .expect("stdout")
                .join()
                .expect("stdout thread"),
            stderr,
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // SAFETY: signals the child process this test started, by its id.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// A WAV file: `tag` 1 (PCM) or 3 (float), the given bits per sample, and `data`.
pub fn wav_file(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = channels * bits / 8;
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// Deterministic, non-repeating test bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Lower-case hex SHA-256.
pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The data chunk of a WAV file this tool wrote (44-byte header) and its header fields.
pub fn read_wav(path: &Path) -> (u16, u16, u32, u16, Vec<u8>) {
    let b = std::fs::read(path).expect("read wav");
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(&b[8..16], b"WAVEfmt ");
    assert_eq!(&b[36..40], b"data");
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let len = u32_at(40) as usize;
    assert_eq!(u32_at(4) as usize, 36 + len + len % 2, "RIFF size");
    (
        u16_at(20),
        u16_at(22),
        u32_at(24),
        u16_at(34),
        b[44..44 + len].to_vec(),
    )
}

/// The world spec of a two-stream card.
pub const TWO_STREAM: &str = "preset=two-stream";

/// The frontend ended Closed (6) and the backend saw it: Closed (6), or already back in InitWait
/// (2) waiting for the next frontend (the hook reads it right after the tool exits).
pub fn assert_closed(r: &Run) {
    let (fe, be) = r.states(0);
    assert_eq!(fe, "6", "frontend state at exit:\n{}", r.stderr);
    assert!(
        be == "6" || be == "2",
        "backend state {be} at exit:\n{}",
        r.stderr
    );
}
