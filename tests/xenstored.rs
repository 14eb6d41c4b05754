//! Our xenstore client (`xen-store`) against Debian's real C xenstored 4.17, run by
//! `xenstored-harness` (LD_PRELOAD shim, no Xen needed), with Debian's real `xenstore-*` tools as
//! the toolstack. Needs `scripts/fetch-xen-tools` to have been run (scripts/test does it).
//!
//! Every test starts its own daemon in its own temporary directory, so they run in parallel.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use sndif::config::{parse_card, ConfigSource, StreamKind};
use sndif::PcmFormat;
use xen_store::{Access, Perm, WatchEvent, Xs};
use xenstored_harness::{VsndCard, Xenstored};

/// Upper bound for anything we wait for; reached only when something is broken.
const WAIT: Duration = Duration::from_secs(5);

fn start() -> Xenstored {
    Xenstored::start().unwrap_or_else(|e| panic!("{e}"))
}

/// poll(2) `fd` for input for at most `timeout`.
fn readable(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, exclusively borrowed for the call.
    let rc = unsafe { libc::poll(&mut p, 1, ms) };
    assert!(rc >= 0, "poll: {}", std::io::Error::last_os_error());
    rc == 1 && p.revents & libc::POLLIN != 0
}

/// The next watch event, waiting on the pollable fd (not on the client's own blocking call).
fn next_event(xs: &Xs) -> WatchEvent {
    let events = xs.watch_events();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(ev) = events.try_recv() {
            return ev;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero() && readable(events.fd(), left),
            "no watch event within {WAIT:?}"
        );
    }
}

fn ev(path: &str, token: &str) -> WatchEvent {
    WatchEvent {
        path: path.to_owned(),
        token: token.to_owned(),
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn every_client_operation_against_the_real_daemon() {
    let xsd = start();
    let xs = xsd.client().unwrap();

    // write / read / read_string / try_read_string
    xs.write("/t/a", b"hello").unwrap();
    assert_eq!(xs.read("/t/a").unwrap(), b"hello");
    assert_eq!(xs.read_string("/t/a").unwrap(), "hello");
    assert_eq!(
        xs.try_read_string("/t/a").unwrap().as_deref(),
        Some("hello")
    );
    assert_eq!(xs.try_read_string("/t/nope").unwrap(), None);
    // Values are bytes, not strings.
    xs.write("/t/bin", &[0, 0xff, b'x', 0]).unwrap();
    assert_eq!(xs.read("/t/bin").unwrap(), vec![0, 0xff, b'x', 0]);
    // Writing creates missing parents, which read as empty.
    xs.write("/t/deep/er/node", b"1").unwrap();
    assert_eq!(xs.read("/t/deep/er").unwrap(), b"");

    // mkdir / directory
    xs.mkdir("/t/dir").unwrap();
    assert_eq!(xs.read("/t/dir").unwrap(), b"");
    assert_eq!(xs.directory("/t/dir").unwrap(), Vec::<String>::new());
    assert_eq!(
        sorted(xs.directory("/t").unwrap()),
        vec!["a", "bin", "deep", "dir"]
    );
    // mkdir of an existing node keeps its value.
    xs.mkdir("/t/a").unwrap();
    assert_eq!(xs.read("/t/a").unwrap(), b"hello");

    // rm removes the whole subtree
    xs.rm("/t/deep").unwrap();
    assert!(xs.read("/t/deep/er/node").unwrap_err().is_enoent());
    assert_eq!(sorted(xs.directory("/t").unwrap()), vec!["a", "bin", "dir"]);

    // get_perms / set_perms
    assert_eq!(
        xs.get_perms("/t/a").unwrap(),
        vec![Perm::new(0, Access::None)]
    );
    let perms = vec![
        Perm::new(0, Access::None),
        Perm::new(5, Access::Read),
        Perm::new(6, Access::Write),
        Perm::new(7, Access::Both),
    ];
    xs.set_perms("/t/a", &perms).unwrap();
    assert_eq!(xs.get_perms("/t/a").unwrap(), perms);
    // New nodes inherit their parent's permissions.
    xs.write("/t/a/child", b"c").unwrap();
    assert_eq!(xs.get_perms("/t/a/child").unwrap(), perms);

    // get_domain_path
    assert_eq!(xs.get_domain_path(0).unwrap(), "/local/domain/0");
    assert_eq!(xs.get_domain_path(7).unwrap(), "/local/domain/7");

    // Errors name the operation and the path.
    let e = xs.read("/no/such/node").unwrap_err();
    assert!(e.is_enoent(), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("/no/such/node") && msg.contains("ENOENT"),
        "{msg}"
    );
    assert!(xs.directory("/no/such").unwrap_err().is_enoent());
    assert!(xs.get_perms("/no/such").unwrap_err().is_enoent());
    let e = xs.set_perms("/no/such", &perms).unwrap_err();
    assert!(e.is_enoent(), "{e:?}");
    // A relative path on a dom0 socket connection resolves against /local/domain/0.
    xs.write("data/rel", b"r").unwrap();
    assert_eq!(xs.read("/local/domain/0/data/rel").unwrap(), b"r");
}

#[test]
fn watches_fire_on_registration_change_and_removal_through_the_pollable_fd() {
    let xsd = start();
    let xs = xsd.client().unwrap();
    xs.write("/w/old", b"0").unwrap();

    // Nothing queued yet: the fd is not readable.
    assert!(!readable(xs.watch_events().fd(), Duration::ZERO));
    xs.watch("/w", "tok").unwrap();
    // Fires once on registration.
    assert_eq!(next_event(&xs), ev("/w", "tok"));
    // The queue is empty again, and so the fd is no longer readable.
    assert!(xs.watch_events().try_recv().is_none());
    assert!(!readable(xs.watch_events().fd(), Duration::ZERO));

    // A descendant written by another party (the real tool) fires it.
    xsd.tool_ok("xenstore-write", ["/w/child/x", "1"]).unwrap();
    assert_eq!(next_event(&xs), ev("/w/child/x", "tok"));
    // The node itself.
    xsd.tool_ok("xenstore-write", ["/w", "v"]).unwrap();
    assert_eq!(next_event(&xs), ev("/w", "tok"));
    // Removing a descendant, by our own client this time.
    xs.rm("/w/old").unwrap();
    assert_eq!(next_event(&xs), ev("/w/old", "tok"));
    // Permission changes fire too.
    xs.set_perms("/w/child", &[Perm::new(0, Access::Read)])
        .unwrap();
    assert_eq!(next_event(&xs), ev("/w/child", "tok"));
    // Unrelated nodes do not.
    xsd.tool_ok("xenstore-write", ["/elsewhere", "1"]).unwrap();
    // Two watches on overlapping paths both fire, each with its token.
    xs.watch("/w/child", "second").unwrap();
    assert_eq!(next_event(&xs), ev("/w/child", "second"));
    xsd.tool_ok("xenstore-write", ["/w/child/y", "2"]).unwrap();
    let mut two = vec![next_event(&xs), next_event(&xs)];
    two.sort_by(|a, b| a.token.cmp(&b.token));
    assert_eq!(
        two,
        vec![ev("/w/child/y", "second"), ev("/w/child/y", "tok")]
    );

    // Removing the watched node itself fires (once per watch covering it).
    xs.unwatch("/w/child", "second").unwrap();
    xs.rm("/w").unwrap();
    assert_eq!(next_event(&xs), ev("/w", "tok"));

    // After unwatch nothing fires. Barrier instead of a timeout: xenstored answers in order,
    // so any event caused by the write below would be queued before the initial event of the
    // barrier watch registered after it.
    xs.unwatch("/w", "tok").unwrap();
    xsd.tool_ok("xenstore-write", ["/w/after", "1"]).unwrap();
    xs.watch("/barrier", "barrier").unwrap();
    assert_eq!(next_event(&xs), ev("/barrier", "barrier"));
    assert!(xs.watch_events().try_recv().is_none());
    // Unwatching something never watched is an error from xenstored.
    assert!(xs.unwatch("/w", "tok").is_err());
}

#[test]
fn transactions_conflict_and_retry_to_a_consistent_state() {
    let xsd = start();
    let a = xsd.client().unwrap();
    let b = xsd.client().unwrap();
    a.write("/tx/n", b"0").unwrap();

    // Isolation: a write inside a transaction is invisible outside until commit.
    let t = a.begin().unwrap();
    t.write("/tx/n", b"inside").unwrap();
    assert_eq!(t.read("/tx/n").unwrap(), b"inside");
    assert_eq!(b.read("/tx/n").unwrap(), b"0");
    t.commit().unwrap();
    assert_eq!(b.read("/tx/n").unwrap(), b"inside");

    // Abort (explicit and by drop) discards.
    let t = a.begin().unwrap();
    t.write("/tx/n", b"aborted").unwrap();
    t.abort().unwrap();
    {
        let t = a.begin().unwrap();
        t.write("/tx/n", b"dropped").unwrap();
    }
    assert_eq!(b.read("/tx/n").unwrap(), b"inside");

    // Two clients, overlapping transactions: the second commit gets EAGAIN.
    let ta = a.begin().unwrap();
    let tb = b.begin().unwrap();
    assert_eq!(ta.read("/tx/n").unwrap(), b"inside");
    assert_eq!(tb.read("/tx/n").unwrap(), b"inside");
    ta.write("/tx/n", b"from-a").unwrap();
    tb.write("/tx/n", b"from-b").unwrap();
    ta.commit().unwrap();
    let e = tb.commit().unwrap_err();
    assert!(e.is_eagain(), "{e:?}");
    assert_eq!(a.read("/tx/n").unwrap(), b"from-a");

    // transaction() retries: force one conflict on the first attempt.
    let mut attempts = 0;
    let got = a
        .transaction(|t| {
            attempts += 1;
            let v = t.read_string("/tx/n")?;
            if attempts == 1 {
                b.write("/tx/n", b"interloper")?;
            }
            t.write("/tx/n", format!("{v}+1").as_bytes())?;
            Ok(v)
        })
        .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(got, "interloper");
    assert_eq!(a.read_string("/tx/n").unwrap(), "interloper+1");

    // Two threads incrementing one counter through transactions: no lost update.
    const N: u32 = 40;
    a.write("/tx/counter", b"0").unwrap();
    std::thread::scope(|s| {
        for xs in [&a, &b] {
            s.spawn(move || {
                for _ in 0..N {
                    // transaction() gives up after TRANSACTION_ATTEMPTS conflicts in a row,
                    // which two threads hammering one node can reach under load (the other
                    // thread commits every time); the caller then starts over, as an
                    // application must. Bounded, so a livelock still fails the test.
                    let mut gave_up = 0;
                    loop {
                        let r = xs.transaction(|t| {
                            let n: u32 = t.read_string("/tx/counter")?.parse().unwrap_or(u32::MAX);
                            t.write("/tx/counter", (n + 1).to_string().as_bytes())
                        });
                        match r {
                            Ok(()) => break,
                            Err(xen_store::Error::TransactionConflict { .. }) if gave_up < 20 => {
                                gave_up += 1
                            }
                            Err(e) => panic!("increment failed: {e}"),
                        }
                    }
                }
            });
        }
    });
    assert_eq!(a.read_string("/tx/counter").unwrap(), (2 * N).to_string());
}

#[test]
fn a_guest_through_the_bridge_has_guest_permissions() {
    let xsd = start();
    let guest = xsd.guest(5).unwrap();
    let xs = guest.client().unwrap();
    let dom0 = xsd.client().unwrap();

    // Its own data/ is writable, by relative and absolute path; dom0 sees the writes.
    xs.write("data/x", b"1").unwrap();
    xs.write("/local/domain/5/data/y/z", b"2").unwrap();
    assert_eq!(dom0.read("/local/domain/5/data/x").unwrap(), b"1");
    assert_eq!(dom0.read("/local/domain/5/data/y/z").unwrap(), b"2");
    assert_eq!(xs.get_domain_path(5).unwrap(), "/local/domain/5");
    // It owns what it creates, and may share it.
    assert_eq!(
        xs.get_perms("data/x").unwrap(),
        vec![Perm::new(5, Access::None)]
    );
    xs.set_perms(
        "data/x",
        &[Perm::new(5, Access::None), Perm::new(0, Access::Read)],
    )
    .unwrap();

    // device/ is n0 r5 (as libxl sets it): readable, but no new children.
    assert_eq!(
        xs.get_perms("/local/domain/5/device").unwrap(),
        vec![Perm::new(0, Access::None), Perm::new(5, Access::Read)]
    );
    let e = xs.write("/local/domain/5/device/y", b"x").unwrap_err();
    assert!(e.is_eacces(), "{e:?}");
    assert!(e.to_string().contains("/local/domain/5/device/y"), "{e}");
    // Its name is readable, not writable.
    assert_eq!(xs.read_string("name").unwrap(), "guest5");
    assert!(xs.write("name", b"evil").unwrap_err().is_eacces());
    // dom0's home is off limits.
    let e = xs.write("/local/domain/0/name", b"evil").unwrap_err();
    assert!(e.is_eacces(), "{e:?}");
    assert_eq!(dom0.read("/local/domain/0/name").unwrap(), b"Domain-0");
    // n0 nodes cannot even be read, nor listed, nor can their permissions be changed.
    dom0.write("/private/key", b"secret").unwrap();
    assert!(xs.read("/private/key").unwrap_err().is_eacces());
    assert!(xs.directory("/private").unwrap_err().is_eacces());
    assert!(xs
        .set_perms("/private/key", &[Perm::new(5, Access::Both)])
        .unwrap_err()
        .is_eacces());
    // Another guest's home too.
    xsd.create_domain(6, "guest6").unwrap();
    assert!(xs.read("/local/domain/6/name").unwrap_err().is_eacces());
    // Once dom0 grants read access, the guest can read.
    dom0.set_perms(
        "/private/key",
        &[Perm::new(0, Access::None), Perm::new(5, Access::Read)],
    )
    .unwrap();
    assert_eq!(xs.read("/private/key").unwrap(), b"secret");
    assert!(xs.write("/private/key", b"x").unwrap_err().is_eacces());

    // The guest's watches fire with its relative path; a change by dom0 fires it.
    xs.watch("data", "g").unwrap();
    assert_eq!(next_event(&xs), ev("data", "g"));
    dom0.write("/local/domain/5/data/from-dom0", b"1").unwrap();
    assert_eq!(next_event(&xs), ev("data/from-dom0", "g"));
    // Its transactions work through the ring as well.
    xs.transaction(|t| {
        t.write("data/t1", b"a")?;
        t.write("data/t2", b"b")
    })
    .unwrap();
    assert_eq!(dom0.read("/local/domain/5/data/t2").unwrap(), b"b");
}

/// [`ConfigSource`] over our client: paths relative to one device directory.
struct XsSource<'a> {
    xs: &'a Xs,
    dir: String,
}

impl XsSource<'_> {
    fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.dir.clone()
        } else {
            format!("{}/{rel}", self.dir)
        }
    }
}

impl ConfigSource for XsSource<'_> {
    type Error = xen_store::Error;

    fn read(&self, rel: &str) -> Result<Option<String>, Self::Error> {
        self.xs.try_read_string(&self.path(rel))
    }

    fn list(&self, rel: &str) -> Result<Vec<String>, Self::Error> {
        match self.xs.directory(&self.path(rel)) {
            Err(e) if e.is_enoent() => Ok(Vec::new()),
            other => other,
        }
    }
}

#[test]
fn libxl_vsnd_tree_from_the_real_tools_parses_through_the_guest_client() {
    let xsd = start();
    let guest = xsd.guest(1).unwrap();
    xsd.write_vsnd(&VsndCard::testbed_example(1)).unwrap();
    let xs = guest.client().unwrap();

    // The frontend reads its device relative to its home, as in a real guest.
    let card = parse_card(&XsSource {
        xs: &xs,
        dir: "device/vsnd/0".to_owned(),
    })
    .unwrap();
    assert_eq!(card.short_name.as_deref(), Some("Main"));
    assert_eq!(card.long_name.as_deref(), Some("Xen vsnd test"));
    assert!(card.warnings.is_empty(), "{:?}", card.warnings);
    assert_eq!(card.devices.len(), 1);
    assert_eq!(card.devices[0].name.as_deref(), Some("Main"));
    let streams: Vec<_> = card.streams().collect();
    assert_eq!(streams.len(), 2);
    for (s, (kind, id)) in streams
        .iter()
        .zip([(StreamKind::Playback, "0"), (StreamKind::Capture, "1")])
    {
        let c = s.config.as_ref().unwrap();
        assert_eq!(c.kind, kind);
        assert_eq!(c.unique_id.as_deref(), Some(id));
        assert_eq!(c.hw.rates, vec![44100, 48000]);
        assert_eq!(
            c.hw.formats.iter().collect::<Vec<_>>(),
            vec![PcmFormat::S16Le]
        );
        assert_eq!((c.hw.channels_min, c.hw.channels_max), (1, 2));
        assert_eq!(c.hw.buffer_size, 65536);
    }
    assert_eq!(streams[1].path, "0/1");

    // The guest follows the backend path libxl gave it and may read, not write, the backend.
    let be = xs.read_string("device/vsnd/0/backend").unwrap();
    assert_eq!(be, "/local/domain/0/backend/vsnd/1/0");
    assert_eq!(xs.read_string(&format!("{be}/state")).unwrap(), "1");
    assert_eq!(xs.read_string(&format!("{be}/frontend-id")).unwrap(), "1");
    assert!(xs
        .write(&format!("{be}/state"), b"4")
        .unwrap_err()
        .is_eacces());
    // ... and may write its own frontend keys.
    xs.write("device/vsnd/0/state", b"3").unwrap();
    assert_eq!(
        xsd.tool_ok("xenstore-read", ["/local/domain/1/device/vsnd/0/state"])
            .unwrap(),
        "3\n"
    );
}

#[test]
fn the_real_tools_read_what_our_client_writes() {
    let xsd = start();
    let xs = xsd.client().unwrap();
    xs.write("/rt/value", b"hello world").unwrap();
    xs.write("/rt/tree/a/b", b"1").unwrap();
    xs.write("/rt/tree/a/c", b"2").unwrap();
    xs.mkdir("/rt/empty").unwrap();
    xs.set_perms(
        "/rt/tree/a/b",
        &[
            Perm::new(3, Access::None),
            Perm::new(0, Access::Read),
            Perm::new(4, Access::Both),
        ],
    )
    .unwrap();

    assert_eq!(
        xsd.tool_ok("xenstore-read", ["/rt/value"]).unwrap(),
        "hello world\n"
    );
    let list = xsd.tool_ok("xenstore-list", ["/rt/tree/a"]).unwrap();
    assert_eq!(
        sorted(list.lines().map(str::to_owned).collect()),
        vec!["b", "c"]
    );
    assert!(xsd.exists("/rt/empty").unwrap());
    let ls = xsd.tool_ok("xenstore-ls", ["-fp", "/rt"]).unwrap();
    for line in [
        "/rt/value = \"hello world\"   (n0)",
        "/rt/tree/a/b = \"1\"   (n3,r0,b4)",
        "/rt/tree/a/c = \"2\"   (n0)",
        "/rt/empty = \"\"   (n0)",
    ] {
        assert!(ls.lines().any(|l| l == line), "missing {line:?} in\n{ls}");
    }
    xs.rm("/rt/tree").unwrap();
    assert!(!xsd.exists("/rt/tree/a/c").unwrap());

    // A guest publishing its transport keys in one transaction, as a frontend does.
    let guest = xsd.guest(2).unwrap();
    xsd.write_vsnd(&VsndCard::testbed_example(2)).unwrap();
    let g = guest.client().unwrap();
    g.transaction(|t| {
        for (k, v) in [
            ("ring-ref", "8"),
            ("event-channel", "9"),
            ("evt-ring-ref", "10"),
            ("evt-event-channel", "11"),
        ] {
            t.write(&format!("device/vsnd/0/0/0/{k}"), v.as_bytes())?;
        }
        t.write("device/vsnd/0/state", b"3")
    })
    .unwrap();
    let ls = xsd
        .tool_ok("xenstore-ls", ["-fp", "/local/domain/2/device/vsnd/0/0/0"])
        .unwrap();
    for line in [
        "/local/domain/2/device/vsnd/0/0/0/ring-ref = \"8\"   (n2,r0)",
        "/local/domain/2/device/vsnd/0/0/0/evt-event-channel = \"11\"   (n2,r0)",
    ] {
        assert!(ls.lines().any(|l| l == line), "missing {line:?} in\n{ls}");
    }
}
