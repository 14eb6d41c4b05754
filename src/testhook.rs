//! The test hook `xen.test-world = "<spec>"` (cargo feature `test-hook`, on by default): the
//! module runs the frontend engine against an in-process fake Xen with the reference backend
//! (`xen_snd_engine::testworld`, shared with the `xen-snd` tool's `XEN_SND_TEST_WORLD`) instead
//! of this guest's Xen, so the whole path — PipeWire, the module, the engine, the backend — can be
//! tested on a machine without Xen. Not for production use.
//!
//! Besides the world's items (`preset=…`, `C/KEY=VALUE`, `volume=on`, `wav-dir=PATH`, …) the
//! specification takes:
//!
//! | Item | Meaning |
//! | --- | --- |
//! | `control=PATH` | listen on the unix socket `PATH` for commands, one per line, each answered by lines ending with `ok` or `error: …`: `crash` (kill the backend), `start` (start a backend again), `stop` (stop it like SIGTERM), `remove C` / `add C` (detach / attach card `C`), `stats` (the backend's per-stream statistics and the cards' states), `records` (the backend's log records), `generation` (backends started so far) |
//! | `report=PATH` | at unload, write the cards' states as the frontend left them, the last backend's statistics and its log records to `PATH` |

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use xen_snd_engine as engine;
use xen_snd_engine::testworld::{Spec, TestWorld};

use crate::frontend::{drain_connector, Connector, EngineDriver, Frontend, Wake};
use crate::port::FrontendEvent;

fn lock(w: &Mutex<TestWorld>) -> MutexGuard<'_, TestWorld> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// Realtime priority (SCHED_FIFO) of the backend's threads: below PipeWire's data thread (88 as
/// root), above everything ordinary.
const BACKEND_RT_PRIORITY: i32 = 50;

/// Give the calling thread (and the threads it creates from now on, which inherit it) realtime
/// priority; `false` if the system refuses (no privilege).
fn make_realtime() -> bool {
    let param = libc::sched_param {
        sched_priority: BACKEND_RT_PRIORITY,
    };
    // SAFETY: pthread_self() is the calling thread; `param` is a valid sched_param.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

/// Run `f` on a helper thread with realtime priority (best effort), so that the backend threads
/// `f` starts inherit it: the in-process backend then keeps time like a device in another
/// domain would, instead of stalling whenever the machine is busy.
fn on_realtime_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    std::thread::Builder::new()
        .name("xen-snd-testhook".into())
        .spawn(move || {
            make_realtime();
            f()
        })
        .map_err(|e| format!("xen.test-world: cannot start a thread: {e}"))?
        .join()
        .map_err(|_| "xen.test-world: the world's thread panicked".to_owned())
}

/// The world, its control socket and its report.
#[derive(Debug)]
struct TestHook {
    world: Arc<Mutex<TestWorld>>,
    server: Option<ControlServer>,
    report: Option<PathBuf>,
}

fn abs(item: &str, v: &str) -> Result<PathBuf, String> {
    if v.starts_with('/') {
        Ok(PathBuf::from(v))
    } else {
        Err(format!("xen.test-world: item {item:?}: an absolute path"))
    }
}

impl TestHook {
    fn start(spec: &str) -> Result<TestHook, String> {
        let spec = Spec::parse(spec).map_err(|e| format!("xen.test-world: {e}"))?;
        let mut control = None;
        let mut report = None;
        for (k, v) in &spec.extra {
            match k.as_str() {
                "control" => control = Some(abs(k, v)?),
                "report" => report = Some(abs(k, v)?),
                other => {
                    return Err(format!(
                        "xen.test-world: item {other:?}: unknown (known: preset, card, C/KEY, \
                         backend, clock-scale, misbehave, volume, wav-dir, control, report)"
                    ))
                }
            }
        }
        let world =
            on_realtime_thread(move || TestWorld::start(&spec))?.map_err(|e| e.to_string())?;
        let world = Arc::new(Mutex::new(world));
        let server = match control {
            Some(path) => Some(ControlServer::start(&path, Arc::clone(&world))?),
            None => None,
        };
        Ok(TestHook {
            world,
            server,
            report,
        })
    }

    fn services(&self) -> engine::Services {
        lock(&self.world).services()
    }

    /// Stop the control socket and the backend; write the report.
    fn finish(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.shutdown();
        }
        let mut w = lock(&self.world);
        let mut lines = w.state_lines();
        if w.backend().is_some() {
            if let Err(e) = w.stop_backend() {
                lines.push(format!("backend stop failed: {e}"));
            }
        }
        lines.extend(TestWorld::stats_lines(&w.last_stats()));
        for r in w.records() {
            lines.push(format!("record {r}"));
        }
        drop(w);
        if let Some(path) = &self.report {
            let mut text = lines.join("\n");
            text.push('\n');
            let tmp = path.with_extension("tmp");
            let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
            if let Err(e) = written {
                crate::log::warn(&format!(
                    "xen.test-world: cannot write {}: {e}",
                    path.display()
                ));
            }
        }
    }
}

/// The control socket's thread.
#[derive(Debug)]
struct ControlServer {
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl ControlServer {
    fn start(path: &Path, world: Arc<Mutex<TestWorld>>) -> Result<ControlServer, String> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("xen.test-world: cannot listen on {}: {e}", path.display()))?;
        let (stop, stop_rx) = UnixStream::pair()
            .map_err(|e| format!("xen.test-world: cannot create a socket pair: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("xen-snd-testhook".into())
            .spawn(move || serve(&listener, &stop_rx, &world))
            .map_err(|e| format!("xen.test-world: cannot start the control thread: {e}"))?;
        Ok(ControlServer {
            stop: Some(stop),
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    fn shutdown(&mut self) {
        // Closing our end makes the other end readable (EOF): the thread returns.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Accept connections until `stop` becomes readable (with realtime priority, which a backend
/// started by `start` inherits).
fn serve(listener: &UnixListener, stop: &UnixStream, world: &Mutex<TestWorld>) {
    make_realtime();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds, exclusively borrowed for the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            if let Ok((conn, _)) = listener.accept() {
                handle(conn, world);
            }
        }
    }
}

fn handle(conn: UnixStream, world: &Mutex<TestWorld>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let reply = match command(line.trim(), world) {
            Ok(mut lines) => {
                lines.push("ok".to_owned());
                lines
            }
            Err(e) => vec![format!("error: {e}")],
        };
        let mut text = reply.join("\n");
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

fn card_arg(arg: Option<&str>) -> Result<u32, String> {
    arg.and_then(|a| a.parse().ok())
        .ok_or_else(|| "expected a card number".to_owned())
}

fn command(line: &str, world: &Mutex<TestWorld>) -> Result<Vec<String>, String> {
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("");
    let arg = words.next();
    let mut w = lock(world);
    let done = |r: Result<(), engine::testworld::WorldError>| {
        r.map(|()| Vec::new()).map_err(|e| e.to_string())
    };
    match cmd {
        "crash" => done(w.crash_backend()),
        "start" => done(w.start_backend()),
        "stop" => done(w.stop_backend()),
        "remove" => done(w.remove_card(card_arg(arg)?)),
        "add" => done(w.add_card(card_arg(arg)?)),
        "stats" => {
            let mut lines = w.state_lines();
            lines.extend(TestWorld::stats_lines(&w.backend_stats()));
            for s in w.backend_stats() {
                lines.push(format!(
                    "position {} {} running {}",
                    s.id, s.position, s.running
                ));
            }
            Ok(lines)
        }
        "records" => Ok(w.records().iter().map(ToString::to_string).collect()),
        "generation" => Ok(vec![w.generation().to_string()]),
        other => Err(format!(
            "unknown command {other:?} (crash, start, stop, remove C, add C, stats, records, \
             generation)"
        )),
    }
}

/// The frontend of the test hook: the engine on the test world's guest services.
#[derive(Debug)]
pub struct TestWorldFrontend {
    hook: Option<TestHook>,
    connector: Option<Connector>,
    driver: EngineDriver,
    early: Vec<FrontendEvent>,
}

impl TestWorldFrontend {
    /// Build the world of `spec` and start the engine on it. Problems become the first events.
    pub fn start(spec: &str, options: engine::FrontendOptions, wake: Wake) -> TestWorldFrontend {
        let mut early = Vec::new();
        let mut connector = None;
        let hook = match TestHook::start(spec) {
            Ok(hook) => {
                early.push(FrontendEvent::Info {
                    message: "xen.test-world: running on an in-process fake Xen with the \
                              reference backend (a test hook)"
                        .to_owned(),
                });
                let services = hook.services();
                match Connector::start(move || Ok(services.clone()), options, wake) {
                    Ok(c) => connector = Some(c),
                    Err(message) => early.push(FrontendEvent::Problem { message }),
                }
                Some(hook)
            }
            Err(message) => {
                early.push(FrontendEvent::Problem { message });
                None
            }
        };
        TestWorldFrontend {
            hook,
            connector,
            driver: EngineDriver::default(),
            early,
        }
    }
}

impl Frontend for TestWorldFrontend {
    fn pump(&mut self, now_ns: u64) -> Vec<FrontendEvent> {
        let mut out = core::mem::take(&mut self.early);
        drain_connector(&mut self.connector, &mut self.driver, &mut out);
        self.driver.pump(now_ns, &mut out);
        out
    }

    fn shutdown(&mut self) {
        if let Some(mut c) = self.connector.take() {
            c.shutdown();
        }
        self.driver.shutdown();
        if let Some(mut h) = self.hook.take() {
            h.finish();
        }
    }
}

impl Drop for TestWorldFrontend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ask(path: &Path, cmd: &str) -> Vec<String> {
        let mut s = UnixStream::connect(path).expect("connect");
        s.write_all(format!("{cmd}\n").as_bytes()).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        BufReader::new(s)
            .lines()
            .map(|l| l.expect("line"))
            .collect()
    }

    #[test]
    fn the_engine_connects_to_the_world_and_the_socket_controls_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("ctl");
        let report = dir.path().join("report");
        let spec = format!(
            "preset=two-stream; control={}; report={}",
            sock.display(),
            report.display()
        );
        let wake: Wake = Arc::new(|| {});
        let mut fe =
            TestWorldFrontend::start(&spec, engine::FrontendOptions::default(), Arc::clone(&wake));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ports = 0;
        while ports == 0 {
            assert!(Instant::now() < deadline, "no card connected");
            for ev in fe.pump(crate::ffi::monotonic_ns()) {
                if let FrontendEvent::CardConnected { card, ports: p } = ev {
                    assert_eq!(card.dev_id, 0);
                    assert_eq!(card.domid, 1);
                    ports = p.len();
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ports, 2);
        assert_eq!(ask(&sock, "generation"), ["1", "ok"]);
        assert!(ask(&sock, "bogus")[0].starts_with("error: unknown command"));
        assert!(ask(&sock, "remove x")[0].starts_with("error:"));
        let stats = ask(&sock, "stats");
        assert!(
            stats
                .iter()
                .any(|l| l.starts_with("card 0 frontend-state 4")),
            "{stats:?}"
        );
        assert_eq!(ask(&sock, "crash"), ["ok"]);
        assert!(ask(&sock, "crash")[0].starts_with("error:"));
        assert_eq!(ask(&sock, "start"), ["ok"]);
        assert_eq!(ask(&sock, "generation"), ["2", "ok"]);
        fe.shutdown();
        let text = std::fs::read_to_string(&report).expect("report");
        assert!(text.contains("card 0 frontend-state 6"), "{text}");
        assert!(!sock.exists(), "the socket is removed");
    }

    #[test]
    fn a_bad_specification_is_one_problem() {
        let wake: Wake = Arc::new(|| {});
        for spec in ["preset=nope", "control=relative", "colour=blue"] {
            let mut fe = TestWorldFrontend::start(
                spec,
                engine::FrontendOptions::default(),
                Arc::clone(&wake),
            );
            let evs = fe.pump(0);
            assert_eq!(evs.len(), 1, "{spec}: {evs:?}");
            assert!(
                matches!(&evs[0], FrontendEvent::Problem { message } if message.contains("xen.test-world")),
                "{spec}: {evs:?}"
            );
        }
    }
}
