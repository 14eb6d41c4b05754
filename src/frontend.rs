//! Where cards come from: a frontend runs on its own thread(s) and hands the module
//! [`FrontendEvent`]s through a channel, waking the main loop after each.
//!
//! Two frontends exist today: the fake card (`xen.fake-card`, a test hook) and a Xen probe that
//! checks xenstore and reports what it finds. The frontend engine (`xen-snd-engine`) will take
//! the probe's place: it implements [`Frontend`] around its control thread and sends the same
//! events with real ports.

use core::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::args::{ModuleArgs, XenstorePath};
use crate::fake::{FakeCard, FakeStats};
use crate::naming;
use crate::port::FrontendEvent;

/// Wakes the module's main loop (thread-safe).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// A running frontend.
pub trait Frontend: fmt::Debug {
    /// Stop: join every thread. No event is sent and the waker is not used after this returns.
    fn shutdown(&mut self);
}

/// Start the frontend `args` ask for. `Err` is a message for the log (the module still loads,
/// with no nodes).
pub fn start(
    args: &ModuleArgs,
    tx: Sender<FrontendEvent>,
    wake: Wake,
) -> Result<Box<dyn Frontend>, String> {
    if args.fake_card {
        return Ok(Box::new(FakeFrontend::start(args, tx, wake)));
    }
    XenProbe::start(args, tx, wake).map(|p| Box::new(p) as Box<dyn Frontend>)
}

/// The fake card, plus a thread that writes its ports' statistics to files.
#[derive(Debug)]
pub struct FakeFrontend {
    stop: Option<Sender<()>>,
    writer: Option<JoinHandle<()>>,
}

impl FakeFrontend {
    fn start(args: &ModuleArgs, tx: Sender<FrontendEvent>, wake: Wake) -> FakeFrontend {
        let fake = FakeCard::new();
        let mut files: Vec<(PathBuf, Arc<FakeStats>)> = Vec::new();
        let mut ports = Vec::new();
        for (port, stats) in fake.ports {
            let i = port.info();
            let name = naming::node_name(&args.prefix, fake.card.dev_id, i.device, i.kind, i.index);
            if let Some(dir) = &args.fake_stats_dir {
                files.push((dir.join(format!("{name}.stats")), stats));
            }
            ports.push(port);
        }
        // The receiver lives as long as the module; a send can only fail during teardown.
        let _ = tx.send(FrontendEvent::CardConnected {
            card: fake.card,
            ports,
        });
        wake();
        let (stop, writer) = if files.is_empty() {
            (None, None)
        } else {
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            let handle = std::thread::Builder::new()
                .name("xen-snd-fake-stats".into())
                .spawn(move || stats_writer(&files, &stop_rx))
                .ok();
            (Some(stop_tx), handle)
        };
        FakeFrontend { stop, writer }
    }
}

/// Write each stats file when its content changes, every 20 ms, until told to stop.
fn stats_writer(files: &[(PathBuf, Arc<FakeStats>)], stop: &mpsc::Receiver<()>) {
    let mut last: Vec<String> = vec![String::new(); files.len()];
    loop {
        for ((path, stats), prev) in files.iter().zip(last.iter_mut()) {
            let text = stats.snapshot().to_text();
            if *prev != text && write_atomically(path, &text).is_ok() {
                *prev = text;
            }
        }
        match stop.recv_timeout(Duration::from_millis(20)) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    for (path, stats) in files {
        let _ = write_atomically(path, &stats.snapshot().to_text());
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("stats.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

impl Frontend for FakeFrontend {
    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl Drop for FakeFrontend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Checks that xenstore is there and lists the vsnd cards (until the engine is wired in).
#[derive(Debug)]
pub struct XenProbe {
    thread: Option<JoinHandle<()>>,
}

/// The one line that says Xen is missing and what to do.
pub fn no_xen_message(xs: &XenstorePath) -> String {
    match xs {
        XenstorePath::Device(p) => format!(
            "no Xen: {} does not exist, so this is not a Xen guest (or its kernel lacks the \
             xenbus device); no sound nodes created. Run PipeWire in a Xen guest that has a vsnd \
             device, or point xen.xenstore-path (or XENSTORED_PATH) at a xenstored socket",
            p.display()
        ),
        XenstorePath::Socket(p) => format!(
            "no Xen: the xenstored socket {} does not exist; no sound nodes created. Start \
             xenstored or fix xen.xenstore-path / XENSTORED_PATH",
            p.display()
        ),
    }
}

impl XenProbe {
    fn start(args: &ModuleArgs, tx: Sender<FrontendEvent>, wake: Wake) -> Result<XenProbe, String> {
        let xs_path = args.xenstore.clone();
        if !xs_path.path().exists() {
            return Err(no_xen_message(&xs_path));
        }
        let cards = args.cards.clone();
        let thread = std::thread::Builder::new()
            .name("xen-snd-probe".into())
            .spawn(move || {
                let ev = probe(&xs_path, &cards);
                let _ = tx.send(ev);
                wake();
            })
            .map_err(|e| format!("cannot start the xenstore probe thread: {e}"))?;
        Ok(XenProbe {
            thread: Some(thread),
        })
    }
}

fn probe(xs_path: &XenstorePath, cards: &crate::args::CardFilter) -> FrontendEvent {
    let opened = match xs_path {
        XenstorePath::Device(p) => xen_store::Xs::open_device(p),
        XenstorePath::Socket(p) => xen_store::Xs::open_unix(p),
    };
    let xs = match opened {
        Ok(xs) => xs,
        Err(e) => {
            let hint = if matches!(&e, xen_store::Error::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied)
            {
                ": give the PipeWire user access to /dev/xen/xenbus, /dev/xen/gntalloc and \
                 /dev/xen/evtchn (a udev rule or group)"
            } else {
                ""
            };
            return FrontendEvent::Problem {
                message: format!("cannot open xenstore: {e}{hint}; no sound nodes created"),
            };
        }
    };
    xs.set_timeout(Duration::from_secs(2));
    match xs.directory("device/vsnd") {
        Err(e) if e.is_enoent() => FrontendEvent::Problem {
            message: "this Xen guest has no vsnd card (device/vsnd is absent in xenstore); no \
                      sound nodes created. Add vsnd = [ ... ] to the guest's xl.cfg"
                .into(),
        },
        Err(e) => FrontendEvent::Problem {
            message: format!("cannot list the vsnd cards: {e}; no sound nodes created"),
        },
        Ok(list) => {
            let ids: Vec<u32> = list
                .iter()
                .filter_map(|s| s.parse().ok())
                .filter(|id| cards.selects(*id))
                .collect();
            FrontendEvent::Problem {
                message: format!(
                    "vsnd cards {ids:?} found, but this build has no frontend engine yet; no \
                     sound nodes created"
                ),
            }
        }
    }
}

impl Frontend for XenProbe {
    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for XenProbe {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting_wake() -> (Wake, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = Arc::clone(&n);
        (
            Arc::new(move || {
                n2.fetch_add(1, Ordering::SeqCst);
            }),
            n,
        )
    }

    #[test]
    fn missing_xenstore_is_reported_without_a_thread() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-socket");
        let args =
            ModuleArgs::parse([("xen.xenstore-path", missing.to_str().unwrap())], None).unwrap();
        let (tx, rx) = mpsc::channel();
        let (wake, woken) = counting_wake();
        let err = start(&args, tx, wake).unwrap_err();
        assert!(err.contains("no Xen"), "{err}");
        assert!(err.contains("no-such-socket"), "{err}");
        assert!(rx.try_recv().is_err());
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        let dev = no_xen_message(&XenstorePath::Device("/dev/xen/xenbus".into()));
        assert!(dev.contains("/dev/xen/xenbus does not exist"), "{dev}");
        assert!(dev.contains("no sound nodes created"), "{dev}");
    }

    #[test]
    fn a_socket_that_is_not_xenstored_is_a_problem_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xs.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // Accept and close at once: the probe's request fails instead of hanging.
        let acceptor = std::thread::spawn(move || {
            let _ = listener.accept();
        });
        let args =
            ModuleArgs::parse([("xen.xenstore-path", path.to_str().unwrap())], None).unwrap();
        let (tx, rx) = mpsc::channel();
        let (wake, woken) = counting_wake();
        let mut fe = start(&args, tx, wake).unwrap();
        let ev = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        fe.shutdown();
        acceptor.join().unwrap();
        match ev {
            FrontendEvent::Problem { message } => {
                assert!(message.contains("no sound nodes created"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn fake_frontend_sends_its_card_and_writes_stats() {
        let dir = tempfile::tempdir().unwrap();
        let args = ModuleArgs::parse(
            [
                ("xen.fake-card", "true"),
                ("xen.fake-card.stats-dir", dir.path().to_str().unwrap()),
            ],
            None,
        )
        .unwrap();
        let (tx, rx) = mpsc::channel();
        let (wake, woken) = counting_wake();
        let mut fe = start(&args, tx, wake).unwrap();
        let ev = rx.try_recv().unwrap();
        let FrontendEvent::CardConnected { card, ports } = ev else {
            panic!("unexpected {ev:?}");
        };
        assert_eq!(card.dev_id, 0);
        assert_eq!(ports.len(), 2);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        fe.shutdown();
        let text =
            std::fs::read_to_string(dir.path().join("xen_snd.card0.dev0.playback0.stats")).unwrap();
        assert_eq!(
            crate::fake::FakeSnapshot::from_text(&text),
            Some(crate::fake::FakeSnapshot::default()),
            "nothing played yet"
        );
        assert!(dir
            .path()
            .join("xen_snd.card0.dev0.capture1.stats")
            .exists());
    }
}
