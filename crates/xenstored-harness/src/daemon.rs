//! Starting, stopping and driving one real xenstored.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::bridge::{Control, GuestBridge, KICK_VIRQ};
use crate::wire::{self, XS_DIRECTORY, XS_IS_DOMAIN_INTRODUCED};
use crate::{check_socket_path, shim, Error, Result, REQUEST_TIMEOUT};

/// How long xenstored may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a killed domain may take to disappear from xenstored.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of the bounded readiness polls.
const POLL_STEP: Duration = Duration::from_millis(2);
/// Where xenstored lives inside the unpacked xen-utils-4.17.
const XENSTORED_IN_TREE: &str = "root/usr/lib/xen-4.17/bin/xenstored";

/// State shared by the daemon handle and its guest bridges (which keep the directory alive).
#[derive(Debug)]
pub(crate) struct Inner {
    dir: TempDir,
    socket: PathBuf,
    log: PathBuf,
    trace: PathBuf,
    tools_dir: PathBuf,
    bridges: Mutex<HashMap<u32, Weak<Control>>>,
}

impl Inner {
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    pub(crate) fn register_bridge(&self, domid: u32, ctl: &Arc<Control>) {
        if let Ok(mut m) = self.bridges.lock() {
            m.insert(domid, Arc::downgrade(ctl));
        }
    }

    pub(crate) fn unregister_bridge(&self, domid: u32) {
        if let Ok(mut m) = self.bridges.lock() {
            m.remove(&domid);
        }
    }

    fn bridge(&self, domid: u32) -> Option<Arc<Control>> {
        self.bridges.lock().ok()?.get(&domid)?.upgrade()
    }

    /// Path of a Debian `xenstore-*` tool: from `PATH`, else from the unpacked tools.
    fn tool_path(&self, name: &str) -> PathBuf {
        let in_path = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|c| c.is_file())
        });
        in_path.unwrap_or_else(|| self.tools_dir.join("root/usr/bin").join(name))
    }

    /// Run tool `name` with `XENSTORED_PATH=socket`.
    pub(crate) fn run_tool<I, S>(&self, socket: &Path, name: &str, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let path = self.tool_path(name);
        Command::new(&path)
            .args(args)
            .env("XENSTORED_PATH", socket)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                Error::io(
                    format!(
                        "running {} (install xenstore-utils: apt-get install xenstore-utils)",
                        path.display()
                    ),
                    e,
                )
            })
    }

    /// The last `lines` lines of xenstored's stderr and of its trace log.
    fn log_tail(&self, lines: usize) -> String {
        let tail = |p: &Path| -> String {
            match std::fs::read(p) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let all: Vec<&str> = text.lines().collect();
                    all[all.len().saturating_sub(lines)..].join("\n")
                }
                Err(e) => format!("({}: {e})", p.display()),
            }
        };
        format!(
            "[{}]\n{}\n[{}]\n{}",
            self.log.display(),
            tail(&self.log),
            self.trace.display(),
            tail(&self.trace)
        )
    }
}

/// A running Debian xenstored with the fakexen shim, in its own temporary directory.
///
/// Killed (SIGKILL) on drop; if the thread is panicking (a failing test), the tail of its log and
/// trace is printed to stderr first.
#[derive(Debug)]
pub struct Xenstored {
    inner: Arc<Inner>,
    child: Child,
}

/// `XEN_TOOLS_DIR`, or `<repo>/.cache/xen-tools`.
fn tools_dir() -> PathBuf {
    match std::env::var_os("XEN_TOOLS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/xen-tools"),
    }
}

impl Xenstored {
    /// Locate xenstored, build the shim, start `xenstored -N -T <trace>` in a fresh temporary
    /// directory and wait (bounded) until it answers a request. Then create dom0's home
    /// (`/local/domain/0/{name,domid}`) as `xen-init-dom0` does on a real host.
    pub fn start() -> Result<Xenstored> {
        Self::start_with_tools_dir(&tools_dir())
    }

    /// [`start`](Self::start) with the unpacked tools taken from `tools_dir` (the directory
    /// `scripts/fetch-xen-tools` fills) instead of `XEN_TOOLS_DIR` / `<repo>/.cache/xen-tools`.
    pub fn start_with_tools_dir(tools_dir: &Path) -> Result<Xenstored> {
        let tools_dir = tools_dir.to_owned();
        let xenstored = tools_dir.join(XENSTORED_IN_TREE);
        if !xenstored.is_file() {
            return Err(Error::XenstoredMissing { path: xenstored });
        }
        let shim = shim::path()?;
        let dir = tempfile::Builder::new()
            .prefix("xsd-")
            .tempdir()
            .map_err(|e| Error::io("creating xenstored's temporary directory", e))?;
        let d = dir.path();
        let socket = d.join("socket");
        check_socket_path(&d.join("dom00000.evtchn"))?;
        let io = |what: &str| {
            let what = format!("{what} in {}", d.display());
            move |e| Error::io(what, e)
        };
        // dom0's own event channel and ring page, read by xenstored through /proc/xen/xsd_*.
        std::fs::write(d.join("xsd_port"), "1\n").map_err(io("writing xsd_port"))?;
        File::create(d.join("dom0.ring"))
            .and_then(|f| f.set_len(crate::ring::PAGE_SIZE as u64))
            .map_err(io("creating dom0.ring"))?;
        let log = d.join("xenstored.log");
        let trace = d.join("trace.log");
        let log_file = File::create(&log).map_err(io("creating xenstored.log"))?;
        let log_err = log_file.try_clone().map_err(io("duplicating the log fd"))?;

        let mut cmd = Command::new(&xenstored);
        cmd.arg("-N")
            .arg("-T")
            .arg(&trace)
            .env("LD_PRELOAD", &shim)
            .env("FAKEXEN_DIR", d)
            .env("XENSTORED_RUNDIR", d)
            .env_remove("XENSTORED_PATH")
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", xenstored.display()), e))?;
        let inner = Arc::new(Inner {
            dir,
            socket,
            log,
            trace,
            tools_dir,
            bridges: Mutex::new(HashMap::new()),
        });
        let mut xsd = Xenstored { inner, child };
        xsd.wait_ready()?;
        xsd.tool_ok(
            "xenstore-write",
            [
                "/local/domain/0/name",
                "Domain-0",
                "/local/domain/0/domid",
                "0",
            ],
        )?;
        Ok(xsd)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| Error::io("waiting for xenstored", e))?
            {
                return Err(self.daemon_error(format!("exited during start-up ({status})")));
            }
            if self.inner.socket.exists()
                && wire::request(
                    &self.inner.socket,
                    XS_DIRECTORY,
                    "DIRECTORY",
                    &[b"/"],
                    REQUEST_TIMEOUT,
                )
                .is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(self.daemon_error(format!("did not answer within {START_TIMEOUT:?}")));
            }
            std::thread::sleep(POLL_STEP);
        }
    }

    fn daemon_error(&self, why: String) -> Error {
        Error::Daemon {
            why,
            log: self.inner.log_tail(30),
        }
    }

    /// The daemon's unix socket (what `XENSTORED_PATH` must name).
    pub fn socket_path(&self) -> &Path {
        &self.inner.socket
    }

    /// The daemon's private directory (socket, ring pages, event-channel sockets, logs).
    pub fn dir(&self) -> &Path {
        self.inner.dir()
    }

    /// xenstored's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of xenstored's log and of its trace (`-T`), for diagnostics.
    pub fn log_tail(&self, lines: usize) -> String {
        self.inner.log_tail(lines)
    }

    /// A new connection of our xen-store client: dom0, privileged.
    pub fn client(&self) -> Result<xen_store::Xs> {
        xen_store::Xs::open_unix(&self.inner.socket).map_err(|source| Error::Client {
            path: self.inner.socket.clone(),
            source,
        })
    }

    /// Run one of Debian's `xenstore-*` tools (from `xenstore-utils`) against this daemon, with
    /// `XENSTORED_PATH` set to its socket. Returns the raw output, whatever the exit status.
    pub fn tool<I, S>(&self, name: &str, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.run_tool(&self.inner.socket, name, args)
    }

    /// Like [`tool`](Self::tool), but a non-zero exit is an [`Error::Tool`]; returns stdout.
    pub fn tool_ok<I, S>(&self, name: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let out = self.tool(name, &args)?;
        if !out.status.success() {
            let shown: Vec<String> = args.iter().map(|a| format!("{:?}", a.as_ref())).collect();
            return Err(Error::Tool {
                cmd: format!("{name} {}", shown.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether `path` exists, asked with the real `xenstore-exists`.
    pub fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.tool("xenstore-exists", [path])?.status.success())
    }

    /// Create domain `domid`'s home as `libxl__domain_make` does, with the real tools:
    /// `/local/domain/<N>` (`n0 r<N>`) with `name`, `domid`, `device` and `control` (`n0 r<N>`),
    /// the guest-writable `data`, `drivers`, `feature`, `attr`, `error`,
    /// `device/suspend/event-channel` and `control/{shutdown,feature-*,sysrq}` (`n<N>`), and
    /// `/libxl/<N>` (`n0`). Any previous tree of that domain is removed first.
    pub fn create_domain(&self, domid: u32, name: &str) -> Result<()> {
        let dom = format!("/local/domain/{domid}");
        let libxl = format!("/libxl/{domid}");
        let ro = [String::from("n0"), format!("r{domid}")];
        let rw = [format!("n{domid}")];
        for p in [&dom, &libxl] {
            if self.exists(p)? {
                self.tool_ok("xenstore-rm", [p])?;
            }
        }
        self.tool_ok("xenstore-write", [dom.as_str(), ""])?;
        self.chmod(&dom, &ro)?;
        let rw_nodes = [
            "control/shutdown",
            "control/feature-poweroff",
            "control/feature-reboot",
            "control/feature-suspend",
            "control/sysrq",
            "device/suspend/event-channel",
            "data",
            "drivers",
            "feature",
            "attr",
            "error",
        ];
        let mut kv: Vec<String> = Vec::new();
        let mut put = |k: String, v: &str| {
            kv.push(k);
            kv.push(v.to_owned());
        };
        put(format!("{dom}/name"), name);
        put(format!("{dom}/domid"), &domid.to_string());
        put(format!("{dom}/device"), "");
        put(format!("{dom}/control"), "");
        put(
            format!("{dom}/control/platform-feature-multiprocessor-suspend"),
            "1",
        );
        put(
            format!("{dom}/control/platform-feature-xs_reset_watches"),
            "1",
        );
        for n in rw_nodes {
            put(format!("{dom}/{n}"), "");
        }
        put(format!("{libxl}/device"), "");
        put(format!("{libxl}/type"), "pv");
        self.tool_ok("xenstore-write", &kv)?;
        for n in rw_nodes {
            self.chmod(&format!("{dom}/{n}"), &rw)?;
        }
        self.chmod(&libxl, &[String::from("n0")])?;
        Ok(())
    }

    pub(crate) fn chmod(&self, path: &str, perms: &[String]) -> Result<()> {
        let mut args = vec![path.to_owned()];
        args.extend(perms.iter().cloned());
        self.tool_ok("xenstore-chmod", &args).map(drop)
    }

    /// [`create_domain`](Self::create_domain) (named `guest<N>`) and
    /// [`attach_guest`](Self::attach_guest): a fresh guest domain, connected.
    pub fn guest(&self, domid: u32) -> Result<GuestBridge> {
        self.create_domain(domid, &format!("guest{domid}"))?;
        self.attach_guest(domid)
    }

    /// Introduce domain `domid` to xenstored through a new ring page and serve its connection
    /// as a unix socket ([`GuestBridge`]), without touching its home directory.
    pub fn attach_guest(&self, domid: u32) -> Result<GuestBridge> {
        if domid == 0 {
            return Err(Error::protocol(
                "attach_guest",
                "domain 0 is the daemon's master domain; use client() for dom0",
            ));
        }
        GuestBridge::start(Arc::clone(&self.inner), domid)
    }

    /// Make domain `domid` die as Xen would: mark it dying (`dom<N>.dying`, seen by the shim's
    /// `xc_domain_getinfo`) and raise VIRQ_DOM_EXC. xenstored then drops the domain's
    /// connection, fires `@releaseDomain` and removes the nodes the domain owned. Returns once
    /// xenstored no longer knows the domain (bounded wait); its bridge closes its clients.
    pub fn kill_domain(&self, domid: u32) -> Result<()> {
        let d = self.inner.dir();
        let dying = d.join(format!("dom{domid}.dying"));
        File::create(&dying).map_err(|e| Error::io(format!("creating {}", dying.display()), e))?;
        let kicker = UnixDatagram::unbound().map_err(|e| Error::io("kick socket", e))?;
        let target = d.join("xenstored.evtchn");
        kicker
            .send_to(&KICK_VIRQ.to_ne_bytes(), &target)
            .map_err(|e| Error::io(format!("raising VIRQ_DOM_EXC via {}", target.display()), e))?;
        let id = domid.to_string();
        let started = Instant::now();
        loop {
            let answer = wire::request(
                &self.inner.socket,
                XS_IS_DOMAIN_INTRODUCED,
                "IS_DOMAIN_INTRODUCED",
                &[id.as_bytes()],
                REQUEST_TIMEOUT,
            )?;
            if answer.first() == Some(&b'F') {
                break;
            }
            if started.elapsed() > KILL_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("xenstored to release dying domain {domid}"),
                    after: KILL_TIMEOUT,
                });
            }
            std::thread::sleep(POLL_STEP);
        }
        if let Some(ctl) = self.inner.bridge(domid) {
            ctl.mark_dead();
        }
        Ok(())
    }

    /// Whether xenstored currently has domain `domid` introduced (`XS_IS_DOMAIN_INTRODUCED`).
    pub fn is_domain_introduced(&self, domid: u32) -> Result<bool> {
        let id = domid.to_string();
        let answer = wire::request(
            &self.inner.socket,
            XS_IS_DOMAIN_INTRODUCED,
            "IS_DOMAIN_INTRODUCED",
            &[id.as_bytes()],
            REQUEST_TIMEOUT,
        )?;
        Ok(answer.first() == Some(&b'T'))
    }
}

impl Drop for Xenstored {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- xenstored (pid {}) in {} ---\n{}",
                self.child.id(),
                self.inner.dir().display(),
                self.inner.log_tail(40)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
