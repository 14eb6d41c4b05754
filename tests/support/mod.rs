//! A private, headless PipeWire daemon for the module's integration tests.
//!
//! Each [`Daemon`] runs `pipewire` (optionally `wireplumber` headless and `pipewire-pulse`) in its
//! own temporary `XDG_RUNTIME_DIR`/`XDG_CONFIG_HOME`, with `PIPEWIRE_MODULE_DIR` pointing at the
//! built module, loads the module through a `context.modules` drop-in, waits for readiness by
//! polling (socket + `pw-cli info 0`, bounded), dumps the logs when a test fails and kills
//! everything on drop. Tests hold [`serial`] so only one daemon runs at a time (also across test
//! binaries and concurrent `cargo test` runs: a file lock).
//!
//! The module runs on its test hook ([`world`]: an in-process fake Xen with the reference
//! backend); [`Daemon::control`] talks to the hook's control socket (crash or restart the
//! backend, detach or attach the card, statistics), [`Daemon::backend_wav`] reads what the
//! backend received, [`Daemon::report`] what the hook wrote at unload.
//!
//! No `sleep` is used to synchronise: every wait polls a real condition with a deadline.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The module's file name in the module directory.
pub const MODULE_FILE: &str = "libpipewire-module-xen-snd.so";
/// The module's name.
pub const MODULE: &str = "libpipewire-module-xen-snd";

/// The test world card's playback node (default prefix): card 0, device 0, stream 0.
pub const SINK: &str = "xen_snd.card0.dev0.playback0";
/// The test world card's capture node: card 0, device 0, stream 1.
pub const SOURCE: &str = "xen_snd.card0.dev0.capture1";

/// The module argument that runs the test world with `items` (e.g. `preset=s16-duplex`), its
/// control socket, report and WAV directory in the daemon's temporary root (`@ROOT@`).
pub fn world(items: &str) -> String {
    format!(
        "xen.test-world = \"{items}; control=@ROOT@/ctl; report=@ROOT@/report; \
         wav-dir=@ROOT@/wav\""
    )
}

/// A private daemon with the module on a test world of `items` and the module arguments `args`,
/// once the world's sink node exists (at most 10 s).
pub fn daemon_on_world(items: &str, args: &str) -> Daemon {
    let d = DaemonBuilder::new()
        .module(&format!("{} {args}", world(items)))
        .start();
    if wait_for(Duration::from_secs(10), || d.node_id(SINK)).is_none() {
        d.fail("the module made no sink node");
    }
    d
}

static IN_PROCESS: Mutex<()> = Mutex::new(());

/// Held while a test runs a daemon: one at a time in this process and machine-wide.
#[derive(Debug)]
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
    /// `@ROOT@` is replaced by the daemon's temporary root directory.
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
            let args = args.replace("@ROOT@", &root.display().to_string());
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
    /// A scratch directory.
    pub stats: PathBuf,
    children: Vec<Proc>,
    dumped: bool,
    sysdir: String,
    env: Vec<(String, String)>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("root", &self.root)
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
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

    /// The process id of child `index` (0: the daemon).
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.children.get(index).map(|p| p.child.id())
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

    /// Send a command to the test hook's control socket; the reply lines (ending with `ok`).
    pub fn control(&self, cmd: &str) -> Vec<String> {
        let path = self.root.join("ctl");
        let mut sock = UnixStream::connect(&path)
            .unwrap_or_else(|e| self.fail(&format!("connect {}: {e}", path.display())));
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        sock.write_all(format!("{cmd}\n").as_bytes())
            .expect("write command");
        sock.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let lines: Vec<String> = BufReader::new(sock)
            .lines()
            .map(|l| l.unwrap_or_else(|e| self.fail(&format!("{cmd}: {e}"))))
            .collect();
        if lines.last().map(String::as_str) != Some("ok") {
            self.fail(&format!("control {cmd:?} failed: {lines:?}"));
        }
        lines
    }

    /// What the test hook wrote at unload (`None` before).
    pub fn report(&self) -> Option<String> {
        fs::read_to_string(self.root.join("report")).ok()
    }

    /// The bytes the `generation`-th backend received on the playback stream (its WAV file's
    /// data, whole frames).
    pub fn backend_wav(&self, generation: u32) -> Vec<u8> {
        let path = self
            .root
            .join(format!("wav/backend{generation}/1-0-0-0.wav"));
        wav_data(&fs::read(&path).unwrap_or_default())
    }

    /// The `stream ...` line of the control socket's `stats` for `stream` (`1/0/0/0`).
    pub fn backend_stream(&self, stream: &str) -> Option<String> {
        self.control("stats")
            .into_iter()
            .find(|l| l.starts_with(&format!("stream {stream} ")))
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

/// Sample `channel` of frame `n` of the playback test pattern, as a signed 16-bit value.
/// Never 0, so no frame of the pattern is silent; the first channel gives `n` back modulo 65535.
pub fn pattern_sample(n: u64, channel: u32) -> i16 {
    let c = u64::from(channel);
    let m = (n % 65535).wrapping_mul(2 * c + 1).wrapping_add(c * 101) % 65535;
    (m + 1) as u16 as i16
}

/// Frames of silence before the pattern in [`write_pattern_wav`]: while `pw-link` links one
/// channel after the other, the clip is still silent (48 quanta, 1 s).
pub const LEAD_IN_FRAMES: u64 = 48 * 1024;

/// The bytes (16-bit stereo) of the pattern's frames `start..start+frames`.
pub fn pattern_bytes(start: u64, frames: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(usize::try_from(frames * 4).unwrap_or(0));
    for n in start..start + frames {
        for ch in 0..2 {
            data.extend_from_slice(&pattern_sample(n, ch).to_le_bytes());
        }
    }
    data
}

/// A 16-bit stereo 48 kHz WAV: [`LEAD_IN_FRAMES`] of silence, then the pattern's frames
/// `start..start+frames`. Returns the pattern's bytes (what must arrive).
pub fn write_pattern_wav(path: &Path, start: u64, frames: u64) -> Vec<u8> {
    let mut data = vec![0u8; usize::try_from(LEAD_IN_FRAMES * 4).unwrap_or(0)];
    let clip = pattern_bytes(start, frames);
    data.extend_from_slice(&clip);
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
    clip
}

/// The `data` chunk of a WAV file (up to the end of the file if its size field lags), whole
/// 4-byte frames.
pub fn wav_data(d: &[u8]) -> Vec<u8> {
    let mut i = 12;
    while i + 8 <= d.len() {
        let id = &d[i..i + 4];
        let size = u32::from_le_bytes([d[i + 4], d[i + 5], d[i + 6], d[i + 7]]) as usize;
        let body = i + 8;
        if id == b"data" {
            let end = d.len().max(body);
            let whole = (end - body) / 4 * 4;
            return d[body..body + whole].to_vec();
        }
        i = body + size + (size & 1);
    }
    Vec::new()
}

/// The 16-bit stereo frames of a WAV file's `data` chunk.
pub fn read_wav_frames(path: &Path) -> Vec<(i16, i16)> {
    frames(&wav_data(&fs::read(path).expect("read wav")))
}

/// 16-bit stereo frames of `bytes`.
pub fn frames(bytes: &[u8]) -> Vec<(i16, i16)> {
    bytes
        .chunks_exact(4)
        .map(|c| {
            (
                i16::from_le_bytes([c[0], c[1]]),
                i16::from_le_bytes([c[2], c[3]]),
            )
        })
        .collect()
}

/// What [`clip_of`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clip {
    /// The sound: from the first to the last frame with both channels non-silent, silent
    /// frames left out.
    pub bytes: Vec<u8>,
    /// Silent frames left out inside (a graph xrun under load inserts silence while the data
    /// waits).
    pub gaps: u64,
}

/// The clip in 16-bit stereo `bytes` received by a backend: silence before and after does not
/// count, nor do the frames at its edges where only one channel is linked yet (`pw-link` links
/// one port at a time); silent frames inside are counted and left out. Any changed, dropped,
/// repeated or reordered frame of a never-silent pattern changes the result.
pub fn clip_of(bytes: &[u8]) -> Clip {
    let fr: Vec<&[u8]> = bytes.chunks_exact(4).collect();
    let complete = |f: &&[u8]| f[0..2] != [0, 0] && f[2..4] != [0, 0];
    let (Some(first), Some(last)) = (fr.iter().position(complete), fr.iter().rposition(complete))
    else {
        return Clip::default();
    };
    let mut c = Clip::default();
    for f in &fr[first..=last] {
        if *f == [0, 0, 0, 0] {
            c.gaps += 1;
        } else {
            c.bytes.extend_from_slice(f);
        }
    }
    c
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What [`check_capture`] found in a capture.
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
    /// The pattern frame the capture starts at.
    pub start: u64,
}

/// Check a 16-bit stereo capture against the backend's capture `pattern` (its bytes from OPEN
/// on): from the first place where four consecutive frames are pattern frames, every frame is
/// either full silence or the next pattern frame, possibly after a skip forward (frames lost by a
/// recorder that missed graph cycles). At the very end (the last 2048 frames) a frame with a
/// silent channel is tolerated (the links go one by one). Anything else — a wrong sample, a
/// repeated or backwards frame — is an error.
pub fn check_capture(capture: &[u8], pattern: &[u8]) -> Result<PatternCheck, String> {
    let cap: Vec<&[u8]> = capture.chunks_exact(4).collect();
    let pat: Vec<&[u8]> = pattern.chunks_exact(4).collect();
    let mut index: std::collections::HashMap<&[u8], Vec<usize>> = Default::default();
    for (j, f) in pat.iter().enumerate() {
        index.entry(*f).or_default().push(j);
    }
    let find = |window: &[&[u8]], from: usize| -> Option<usize> {
        let first = window.first()?;
        index.get(first)?.iter().copied().find(|&j| {
            j >= from
                && window
                    .iter()
                    .enumerate()
                    .all(|(k, f)| pat.get(j + k) == Some(f))
        })
    };
    let mut c = PatternCheck::default();
    let begin = (0..cap.len().saturating_sub(4))
        .find_map(|i| find(&cap[i..i + 4], 0).map(|j| (i, j)))
        .ok_or("no pattern frames in the capture")?;
    let (mut i, mut next) = begin;
    c.start = next as u64;
    let mut run = 0u64;
    while i < cap.len() {
        let f = cap[i];
        if pat.get(next) == Some(&f) {
            next += 1;
            run += 1;
            c.frames += 1;
            c.longest_run = c.longest_run.max(run);
        } else if f == [0, 0, 0, 0] {
            c.silent += 1;
        } else if let Some(j) = cap
            .get(i..i + 4)
            .filter(|w| w.len() == 4)
            .and_then(|w| find(w, next + 1))
        {
            c.lost += (j - next) as u64;
            c.jumps += 1;
            next = j;
            run = 0;
            continue;
        } else if cap.len() - i <= 2048 && (f[0..2] == [0, 0] || f[2..4] == [0, 0]) {
            // The last frames, with one channel unlinked already.
        } else {
            return Err(format!(
                "capture frame {i} {f:?} is not the pattern frame {next} {:?} ({c:?})",
                pat.get(next)
            ));
        }
        i += 1;
    }
    Ok(c)
}
