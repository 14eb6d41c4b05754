//! A private, headless PipeWire daemon for the module's integration tests.
//!
//! Each [`Daemon`] runs `pipewire` (optionally `wireplumber` headless and `pipewire-pulse`) in its
//! own temporary `XDG_RUNTIME_DIR`/`XDG_CONFIG_HOME`, with `PIPEWIRE_MODULE_DIR` pointing at the
//! built module, loads the module through a `context.modules` drop-in, waits for readiness by
//! polling (socket + `pw-cli info 0`, bounded), dumps the logs when a test fails and kills
//! everything on drop. Tests hold [`serial`] so only one daemon runs at a time (also across test
//! binaries and concurrent `cargo test` runs: a file lock).
//!
//! No `sleep` is used to synchronise: every wait polls a real condition with a deadline.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pipewire_xen_snd::fake::{pattern_sample, FakeSnapshot, TrimmedChecksum};

/// The module's file name in the module directory.
pub const MODULE_FILE: &str = "libpipewire-module-xen-snd.so";

/// Names of the fake card's nodes (default prefix).
pub const SINK: &str = "xen_snd.card0.dev0.playback0";
/// The fake card's source.
pub const SOURCE: &str = "xen_snd.card0.dev0.capture1";

static IN_PROCESS: Mutex<()> = Mutex::new(());

/// Held while a test runs a daemon: one at a time in this process and machine-wide.
pub struct Serial {
    _guard: MutexGuard<'static, ()>,
    lock: fs::File,
}

impl Drop for Serial {
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(self.lock.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Take the test lock.
pub fn serial() -> Serial {
    let guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let path = std::env::temp_dir().join("pipewire-xen-snd-module-tests.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("open the test lock file");
    // SAFETY: flock on a descriptor we own; blocks until other test runs finish.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {}", path.display());
    Serial {
        _guard: guard,
        lock,
    }
}

/// The built module (`libpipewire_xen_snd.so` next to the test binary's `deps/`).
pub fn module_so() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    for dir in [deps, deps.parent().unwrap_or(deps)] {
        let p = dir.join("libpipewire_xen_snd.so");
        if p.exists() {
            return p;
        }
    }
    panic!("libpipewire_xen_snd.so not found near {}", exe.display());
}

/// Poll `f` every 20 ms until it returns `Some`, at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct DaemonBuilder {
    args: Option<String>,
    dropin: Option<String>,
    nofail: bool,
    wireplumber: bool,
    pulse: bool,
    env: Vec<(String, String)>,
}

impl Default for DaemonBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DaemonBuilder {
    /// A daemon without the module.
    pub fn new() -> Self {
        DaemonBuilder {
            args: None,
            dropin: None,
            nofail: false,
            wireplumber: false,
            pulse: false,
            env: Vec::new(),
        }
    }

    /// Set an environment variable for every process (after the defaults).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Load the module with these SPA-JSON arguments (the text between the braces).
    /// `@STATS@` is replaced by the daemon's stats directory.
    pub fn module(mut self, args: &str) -> Self {
        self.args = Some(args.to_owned());
        self
    }

    /// Use this text as the drop-in (`pipewire.conf.d/50-xen-snd.conf`) instead of generating one.
    pub fn dropin(mut self, text: &str) -> Self {
        self.dropin = Some(text.to_owned());
        self
    }

    /// Load the module with `flags = [ nofail ]`.
    pub fn nofail(mut self) -> Self {
        self.nofail = true;
        self
    }

    /// Also run WirePlumber (headless).
    pub fn wireplumber(mut self) -> Self {
        self.wireplumber = true;
        self
    }

    /// Also run pipewire-pulse.
    pub fn pulse(mut self) -> Self {
        self.pulse = true;
        self
    }

    /// Start and wait until the daemon answers.
    pub fn start(self) -> Daemon {
        let mut d = self.spawn();
        d.wait_ready();
        d
    }

    /// Start without waiting (for daemons expected to exit).
    pub fn spawn(self) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("xen-snd-pw-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        let run = root.join("run");
        let xdg = root.join("xdg");
        let mods = root.join("mods");
        let stats = root.join("stats");
        for d in [&run, &xdg, &mods, &stats] {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod run");
        std::os::unix::fs::symlink(module_so(), mods.join(MODULE_FILE)).expect("symlink module");
        if let Some(text) = &self.dropin {
            let conf = xdg.join("pipewire/pipewire.conf.d");
            fs::create_dir_all(&conf).expect("mkdir conf");
            fs::write(conf.join("50-xen-snd.conf"), text).expect("write drop-in");
        } else if let Some(args) = &self.args {
            let conf = xdg.join("pipewire/pipewire.conf.d");
            fs::create_dir_all(&conf).expect("mkdir conf");
            let args = args.replace("@STATS@", &stats.display().to_string());
            let flags = if self.nofail {
                "flags = [ nofail ]"
            } else {
                ""
            };
            fs::write(
                conf.join("50-xen-snd.conf"),
                format!(
                    "context.modules = [\n  {{ name = libpipewire-module-xen-snd\n    args = {{ {args} }}\n    {flags}\n  }}\n]\n"
                ),
            )
            .expect("write drop-in");
        }
        if self.wireplumber {
            let wp = xdg.join("wireplumber/main.lua.d");
            fs::create_dir_all(&wp).expect("mkdir wp");
            fs::write(
                wp.join("51-headless.lua"),
                "alsa_monitor.properties[\"alsa.reserve\"] = false\n\
                 default_access.properties[\"enable-flatpak-portal\"] = false\n",
            )
            .expect("write wp config");
        }
        let sysdir = Command::new("pkg-config")
            .args(["--variable=moduledir", "libpipewire-0.3"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu/pipewire-0.3".to_owned());
        let mut d = Daemon {
            dir,
            root,
            run,
            xdg,
            mods,
            stats,
            children: Vec::new(),
            dumped: false,
            sysdir,
            env: self.env.clone(),
        };
        d.spawn_child("pipewire", &[]);
        if self.wireplumber || self.pulse {
            d.wait_ready();
        }
        if self.wireplumber {
            d.spawn_child("wireplumber", &[]);
        }
        if self.pulse {
            d.spawn_child("pipewire-pulse", &[]);
        }
        d
    }
}

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// A running private daemon.
pub struct Daemon {
    dir: tempfile::TempDir,
    /// The temporary root.
    pub root: PathBuf,
    run: PathBuf,
    xdg: PathBuf,
    mods: PathBuf,
    /// Where the fake ports write their stats.
    pub stats: PathBuf,
    children: Vec<Proc>,
    dumped: bool,
    sysdir: String,
    env: Vec<(String, String)>,
}

impl Daemon {
    /// A command with the daemon's environment.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        let sysdir = &self.sysdir;
        c.env("XDG_RUNTIME_DIR", &self.run)
            .env("XDG_CONFIG_HOME", &self.xdg)
            .env(
                "PIPEWIRE_MODULE_DIR",
                format!("{sysdir}:{}", self.mods.display()),
            )
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XENSTORED_PATH")
            .env_remove("PIPEWIRE_REMOTE")
            .env_remove("PIPEWIRE_CONFIG_DIR")
            .env_remove("PULSE_SERVER")
            .env("HOME", &self.root)
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn spawn_child(&mut self, program: &str, args: &[&str]) {
        let log = self.root.join(format!("{program}.log"));
        let out = fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = self
            .cmd(program)
            .args(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        self.children.push(Proc {
            name: program.to_owned(),
            child,
            log,
        });
    }

    /// Start a helper (e.g. `pw-cli -m`) with the daemon's environment, logged like the others.
    pub fn spawn_helper(&mut self, program: &str, args: &[&str]) -> usize {
        self.spawn_child(program, args);
        self.children.len() - 1
    }

    /// Wait until the socket exists and `pw-cli info 0` answers (10 s at most).
    pub fn wait_ready(&mut self) {
        let sock = self.run.join("pipewire-0");
        let ok = wait_for(Duration::from_secs(10), || {
            if !sock.exists() {
                return None;
            }
            let ok = self
                .cmd("pw-cli")
                .args(["info", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()?
                .success();
            ok.then_some(())
        });
        if ok.is_none() {
            self.fail("the daemon did not become ready within 10 s");
        }
    }

    /// Run a command to completion with a deadline; returns its output.
    pub fn run(&self, program: &str, args: &[&str], timeout: Duration) -> Output {
        let mut child = self
            .cmd(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let status = wait_for(timeout, || child.try_wait().ok().flatten());
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            self.fail(&format!(
                "{program} {args:?} did not finish within {timeout:?}"
            ));
        }
        child.wait_with_output().expect("output")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args, Duration::from_secs(20));
        if !out.status.success() {
            self.fail(&format!(
                "{program} {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Objects of `kind` (`Node`, `Module`, …) from `pw-cli ls`: `(id, properties)`.
    pub fn objects(&self, kind: &str) -> Vec<(u32, Vec<(String, String)>)> {
        let out = self.run("pw-cli", &["ls", kind], Duration::from_secs(10));
        parse_ls(&String::from_utf8_lossy(&out.stdout))
    }

    /// The id of the node named `name`.
    pub fn node_id(&self, name: &str) -> Option<u32> {
        self.objects("Node")
            .into_iter()
            .find(|(_, p)| p.iter().any(|(k, v)| k == "node.name" && v == name))
            .map(|(id, _)| id)
    }

    /// A property of the node named `name`.
    pub fn node_prop(&self, name: &str, key: &str) -> Option<String> {
        let id = self.node_id(name)?;
        let out = self.run(
            "pw-cli",
            &["info", &id.to_string()],
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find_map(|l| {
            let l = l.trim_start_matches('*').trim();
            let (k, v) = l.split_once(" = ")?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
    }

    /// The state (`running`, `idle`, `suspended`, …) of the node named `name`.
    pub fn node_state(&self, name: &str) -> Option<String> {
        let id = self.node_id(name)?;
        let out = self.run(
            "pw-cli",
            &["info", &id.to_string()],
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find_map(|l| {
            let l = l.trim_start_matches('*').trim();
            l.strip_prefix("state:")
                .map(|s| s.trim().trim_matches('"').to_owned())
        })
    }

    /// Names of all nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.objects("Node")
            .into_iter()
            .filter_map(|(_, p)| {
                p.into_iter()
                    .find(|(k, _)| k == "node.name")
                    .map(|(_, v)| v)
            })
            .collect()
    }

    /// The id of the module whose `module.name` is `name`.
    pub fn module_id(&self, name: &str) -> Option<u32> {
        self.objects("Module")
            .into_iter()
            .find(|(_, p)| p.iter().any(|(k, v)| k == "module.name" && v == name))
            .map(|(id, _)| id)
    }

    /// Configure a node's ports in DSP mode (F32P, 48 kHz, stereo) as a session manager would.
    pub fn port_config(&self, node: &str, direction: &str) {
        let id = wait_for(Duration::from_secs(10), || self.node_id(node))
            .unwrap_or_else(|| self.fail(&format!("node {node} did not appear")));
        let fmt = "format: { mediaType: audio, mediaSubtype: raw, format: F32P, rate: 48000, \
                   channels: 2, position: [ FL, FR ] }";
        self.ok(
            "pw-cli",
            &[
                "s",
                &id.to_string(),
                "PortConfig",
                &format!("{{ direction: {direction}, mode: dsp, monitor: false, control: false, {fmt} }}"),
            ],
        );
    }

    /// Wait for port `port` (as listed by `pw-link -o` or `-i`) and link `out` → `inp`.
    pub fn link(&self, out: &str, inp: &str) {
        let listed = |flag: &str, port: &str| {
            let o = self.run("pw-link", &[flag], Duration::from_secs(10));
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == port)
        };
        if wait_for(Duration::from_secs(10), || {
            (listed("-o", out) && listed("-i", inp)).then_some(())
        })
        .is_none()
        {
            self.fail(&format!("ports {out} / {inp} did not appear"));
        }
        self.ok("pw-link", &[out, inp]);
    }

    /// The combined log of all processes so far.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for p in &self.children {
            s.push_str(&format!("===== {} =====\n", p.name));
            s.push_str(&fs::read_to_string(&p.log).unwrap_or_default());
        }
        s
    }

    /// The daemon's log.
    pub fn daemon_log(&self) -> String {
        self.children
            .first()
            .map(|p| fs::read_to_string(&p.log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Wait until the daemon's log contains `needle` (bounded).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.daemon_log().contains(needle).then_some(())).is_some()
    }

    /// Whether the daemon process still runs.
    pub fn daemon_alive(&mut self) -> bool {
        match self.children.first_mut() {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Wait for child `index` to exit by itself (bounded).
    pub fn wait_exit(&mut self, index: usize, timeout: Duration) -> Option<ExitStatus> {
        let p = self.children.get_mut(index)?;
        wait_for(timeout, || p.child.try_wait().ok().flatten())
    }

    /// Send `signal` to child `index` and wait for it to exit (bounded).
    pub fn signal(&mut self, index: usize, signal: i32, timeout: Duration) -> Option<ExitStatus> {
        let p = self.children.get_mut(index)?;
        let pid = i32::try_from(p.child.id()).ok()?;
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid, signal) };
        wait_for(timeout, || p.child.try_wait().ok().flatten())
    }

    /// Stop the daemon with SIGTERM (helpers first) and return its exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        for i in (1..self.children.len()).rev() {
            self.signal(i, libc::SIGTERM, Duration::from_secs(10));
        }
        self.signal(0, libc::SIGTERM, Duration::from_secs(15))
    }

    /// The stats a fake port wrote (`None` before the first write).
    pub fn fake_stats(&self, node: &str) -> Option<FakeSnapshot> {
        let text = fs::read_to_string(self.stats.join(format!("{node}.stats"))).ok()?;
        FakeSnapshot::from_text(&text)
    }

    /// Dump the logs and fail the test.
    pub fn fail(&self, msg: &str) -> ! {
        eprintln!("{}", self.logs());
        panic!("{msg}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.dumped {
            self.dumped = true;
            eprintln!("{}", self.logs());
        }
        for p in self.children.iter_mut().rev() {
            if matches!(p.child.try_wait(), Ok(None)) {
                if let Ok(pid) = i32::try_from(p.child.id()) {
                    // SAFETY: signalling our own child by pid.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
                let done = wait_for(Duration::from_secs(5), || p.child.try_wait().ok().flatten());
                if done.is_none() {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                }
            }
        }
        let _ = &self.dir;
    }
}

/// Parse `pw-cli ls` output into `(id, properties)`.
pub fn parse_ls(text: &str) -> Vec<(u32, Vec<(String, String)>)> {
    let mut out: Vec<(u32, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("id ") {
            if let Some(id) = rest.split(',').next().and_then(|s| s.trim().parse().ok()) {
                out.push((id, Vec::new()));
            }
        } else if let Some((k, v)) = t.split_once(" = ") {
            if let Some(last) = out.last_mut() {
                last.1
                    .push((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()));
            }
        }
    }
    out
}

/// Frames of silence before the pattern in [`write_pattern_wav`]: while `pw-link` links one
/// channel after the other, the clip is still silent (48 quanta, 1 s).
pub const LEAD_IN_FRAMES: u64 = 48 * 1024;

/// A 16-bit stereo 48 kHz WAV: [`LEAD_IN_FRAMES`] of silence, then the fake pattern's frames
/// `start..start+frames`. Returns the trimmed checksum the fake sink must report.
pub fn write_pattern_wav(path: &Path, start: u64, frames: u64) -> TrimmedChecksum {
    let mut data = vec![0u8; usize::try_from(LEAD_IN_FRAMES * 4).unwrap_or(0)];
    let lead = data.len();
    for n in start..start + frames {
        for ch in 0..2 {
            data.extend_from_slice(&pattern_sample(n, ch).to_le_bytes());
        }
    }
    let mut sum = TrimmedChecksum::new();
    sum.update(&data[lead..], 4, 2, &[0]);
    let mut f = fs::File::create(path).expect("create wav");
    let len = u32::try_from(data.len()).expect("wav size");
    f.write_all(b"RIFF").unwrap();
    f.write_all(&(36 + len).to_le_bytes()).unwrap();
    f.write_all(b"WAVEfmt ").unwrap();
    f.write_all(&16u32.to_le_bytes()).unwrap();
    f.write_all(&1u16.to_le_bytes()).unwrap(); // PCM
    f.write_all(&2u16.to_le_bytes()).unwrap(); // channels
    f.write_all(&48000u32.to_le_bytes()).unwrap();
    f.write_all(&(48000u32 * 4).to_le_bytes()).unwrap();
    f.write_all(&4u16.to_le_bytes()).unwrap();
    f.write_all(&16u16.to_le_bytes()).unwrap();
    f.write_all(b"data").unwrap();
    f.write_all(&len.to_le_bytes()).unwrap();
    f.write_all(&data).unwrap();
    sum
}

/// The 16-bit stereo frames of a WAV file's `data` chunk.
pub fn read_wav_frames(path: &Path) -> Vec<(i16, i16)> {
    let d = fs::read(path).expect("read wav");
    let mut i = 12;
    while i + 8 <= d.len() {
        let id = &d[i..i + 4];
        let size = u32::from_le_bytes([d[i + 4], d[i + 5], d[i + 6], d[i + 7]]) as usize;
        let body = i + 8;
        if id == b"data" {
            let end = (body + size).min(d.len());
            return d[body..end]
                .chunks_exact(4)
                .map(|c| {
                    (
                        i16::from_le_bytes([c[0], c[1]]),
                        i16::from_le_bytes([c[2], c[3]]),
                    )
                })
                .collect();
        }
        i = body + size + (size & 1);
    }
    Vec::new()
}

/// What [`check_pattern`] found in a capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatternCheck {
    /// Pattern frames found, all exact.
    pub frames: u64,
    /// Silent frames inside the run (inserted while the source had nothing or the graph xrun).
    pub silent: u64,
    /// Pattern frames skipped (lost downstream when the recorder missed graph cycles).
    pub lost: u64,
    /// Number of places where frames were lost.
    pub jumps: u64,
    /// The longest run of consecutive pattern frames.
    pub longest_run: u64,
}

/// Check a capture of the fake pattern: from the first to the last frame with both channels
/// non-silent (at the edges `pw-link` has linked one channel only), every frame is either full
/// silence or an exact pattern frame whose index is larger than the previous one. Frames that
/// skip ahead are counted as lost (a recorder that misses graph cycles under load loses them);
/// anything else — a wrong sample, a half-silent frame, a repeated or backwards frame — is an
/// error.
pub fn check_pattern(frames: &[(i16, i16)]) -> Result<PatternCheck, String> {
    let complete = |f: &(i16, i16)| f.0 != 0 && f.1 != 0;
    let first = frames
        .iter()
        .position(complete)
        .ok_or("the capture has no complete frame")?;
    let last = frames
        .iter()
        .rposition(complete)
        .ok_or("the capture has no complete frame")?;
    let mut c = PatternCheck::default();
    let mut next: Option<u64> = None;
    let mut run = 0u64;
    for (i, f) in frames[first..=last].iter().enumerate() {
        if *f == (0, 0) {
            c.silent += 1;
            continue;
        }
        let at = |n: u64| (pattern_sample(n, 0), pattern_sample(n, 1));
        match next {
            Some(n) if *f == at(n) => {
                next = Some(n + 1);
                run += 1;
            }
            _ => {
                // Where is this frame in the pattern? The first channel gives n mod 65535.
                let m = u64::from(f.0 as u16).wrapping_sub(1);
                let n = match next {
                    None => m,
                    Some(expect) => {
                        let base = expect - expect % 65535;
                        let cand = base + m;
                        if cand > expect {
                            cand
                        } else {
                            cand + 65535
                        }
                    }
                };
                if *f != at(n) || m >= 65535 {
                    return Err(format!(
                        "frame {} is not a pattern frame after index {:?}: {f:?}",
                        first + i,
                        next
                    ));
                }
                if let Some(expect) = next {
                    c.lost += n - expect;
                    c.jumps += 1;
                }
                next = Some(n + 1);
                run = 1;
            }
        }
        c.frames += 1;
        c.longest_run = c.longest_run.max(run);
    }
    Ok(c)
}
