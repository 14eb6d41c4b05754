//! The harness itself against the real xenstored: start/stop, the tools, the ring bridge
//! (guest identity, multiplexing, clean-up), domain death and the libxl vsnd writer.
//! Each test starts its own daemon, so they run in parallel.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use xen_store::{Access, Perm};
use xenstored_harness::wire::{self, Header, Msg};
use xenstored_harness::{Error, VsndCard, Xenstored};

const WAIT: Duration = Duration::from_secs(5);

fn start() -> Xenstored {
    match Xenstored::start() {
        Ok(x) => x,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn daemon_starts_answers_the_real_tools_and_dies_on_drop() {
    let xsd = start();
    let pid = xsd.pid();
    assert!(xsd.socket_path().exists());
    assert_eq!(
        xsd.tool_ok("xenstore-read", ["/local/domain/0/name"])
            .unwrap(),
        "Domain-0\n"
    );
    xsd.tool_ok("xenstore-write", ["/t/a", "1", "/t/b", "two"])
        .unwrap();
    assert_eq!(xsd.tool_ok("xenstore-read", ["/t/b"]).unwrap(), "two\n");
    let out = xsd.tool("xenstore-read", ["/t/missing"]).unwrap();
    assert!(!out.status.success());
    let err = xsd.tool_ok("xenstore-read", ["/t/missing"]).unwrap_err();
    assert!(matches!(err, Error::Tool { .. }), "{err}");
    assert!(err.to_string().contains("/t/missing"), "{err}");
    assert!(xsd.log_tail(50).contains("WRITE"), "trace shows requests");

    drop(xsd);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "xenstored {pid} still running after drop"
    );
}

#[test]
fn missing_xenstored_names_the_fetch_script() {
    let empty = tempfile::tempdir().unwrap();
    let err = Xenstored::start_with_tools_dir(empty.path()).unwrap_err();
    assert!(matches!(err, Error::XenstoredMissing { .. }), "{err}");
    assert!(err.to_string().contains("scripts/fetch-xen-tools"), "{err}");
}

#[test]
fn create_domain_sets_libxl_permissions() {
    let xsd = start();
    xsd.create_domain(4, "vm4").unwrap();
    let ls = xsd
        .tool_ok("xenstore-ls", ["-fp", "/local/domain/4"])
        .unwrap();
    for line in [
        "/local/domain/4/name = \"vm4\"   (n0,r4)",
        "/local/domain/4/device = \"\"   (n0,r4)",
        "/local/domain/4/control = \"\"   (n0,r4)",
        "/local/domain/4/control/shutdown = \"\"   (n4)",
        "/local/domain/4/data = \"\"   (n4)",
        "/local/domain/4/error = \"\"   (n4)",
    ] {
        assert!(ls.lines().any(|l| l == line), "missing {line:?} in\n{ls}");
    }
    let top = xsd.tool_ok("xenstore-ls", ["-p", "/local/domain"]).unwrap();
    assert!(
        top.lines()
            .any(|l| l.starts_with("4 = \"\"") && l.ends_with("(n0,r4)")),
        "{top}"
    );
}

#[test]
fn bridge_connection_is_the_guest_domain() {
    let xsd = start();
    let guest = xsd.guest(5).unwrap();
    assert!(xsd.is_domain_introduced(5).unwrap());
    let xs = guest.client().unwrap();

    // Relative paths resolve against the guest's home: only a domain connection has one.
    xs.write("data/hello", b"from dom5").unwrap();
    assert_eq!(
        xsd.tool_ok("xenstore-read", ["/local/domain/5/data/hello"])
            .unwrap(),
        "from dom5\n"
    );
    // A node the guest creates is owned by the guest.
    assert_eq!(
        xs.get_perms("data/hello").unwrap(),
        vec![Perm::new(5, Access::None)]
    );
    // dom0's nodes are not writable, and n0 nodes not even readable.
    let e = xs.write("/local/domain/0/name", b"pwned").unwrap_err();
    assert!(e.is_eacces(), "{e}");
    xsd.tool_ok("xenstore-write", ["/secret", "s"]).unwrap();
    let e = xs.read("/secret").unwrap_err();
    assert!(e.is_eacces(), "{e}");
    // The same operations as dom0 succeed.
    let dom0 = xsd.client().unwrap();
    assert_eq!(dom0.read("/secret").unwrap(), b"s");

    // Debian's own libxenstore clients through the bridge are the guest as well.
    let out = guest.tool("xenstore-read", ["name"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"guest5\n");
    let out = guest
        .tool("xenstore-write", ["/local/domain/0/name", "x"])
        .unwrap();
    assert!(!out.status.success(), "a guest tool wrote dom0's name");
    assert_eq!(dom0.read("/local/domain/0/name").unwrap(), b"Domain-0");
    let out = guest.tool("xenstore-read", ["/secret"]).unwrap();
    assert!(
        !out.status.success(),
        "a guest tool read an n0 node: {out:?}"
    );
    let out = guest.tool("xenstore-write", ["data/by-tool", "t"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(xs.read("data/by-tool").unwrap(), b"t");
}

/// Send raw frames on one socket, so that two "clients" can reuse the same req_id and token.
struct RawClient {
    s: UnixStream,
}

impl RawClient {
    fn connect(p: &Path) -> RawClient {
        let s = UnixStream::connect(p).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        RawClient { s }
    }
    fn send(&mut self, ty: u32, req_id: u32, tx_id: u32, parts: &[&[u8]]) {
        let m = Msg::new(ty, req_id, tx_id, wire::join_strings(parts));
        self.s.write_all(&m.to_bytes()).unwrap();
    }
    fn recv(&mut self) -> Msg {
        let mut h = [0u8; wire::HEADER_LEN];
        self.s.read_exact(&mut h).unwrap();
        let header = Header::decode(&h).unwrap();
        let mut payload = vec![0; header.len as usize];
        self.s.read_exact(&mut payload).unwrap();
        Msg { header, payload }
    }
}

#[test]
fn bridge_multiplexes_clients_with_the_same_req_ids_and_tokens() {
    let xsd = start();
    let guest = xsd.guest(6).unwrap();
    let mut a = RawClient::connect(guest.socket_path());
    let mut b = RawClient::connect(guest.socket_path());

    // Both use req_id 7 and token "t", on different paths.
    a.send(wire::XS_WATCH, 7, 0, &[b"data/a", b"t"]);
    b.send(wire::XS_WATCH, 7, 0, &[b"data/b", b"t"]);
    for (c, path) in [(&mut a, "data/a"), (&mut b, "data/b")] {
        let ack = c.recv();
        assert_eq!((ack.header.ty, ack.header.req_id), (wire::XS_WATCH, 7));
        let ev = c.recv();
        assert_eq!(ev.header.ty, wire::XS_WATCH_EVENT);
        assert_eq!(
            wire::split_strings(&ev.payload),
            vec![path.as_bytes(), b"t"],
            "initial event with the client's own token"
        );
    }
    // A change under data/b reaches b only.
    // WRITE's payload is "path\0value" (no NUL after the value).
    let w = Msg::new(wire::XS_WRITE, 9, 0, b"data/b\0x".to_vec());
    a.s.write_all(&w.to_bytes()).unwrap();
    let ack = a.recv();
    assert_eq!((ack.header.ty, ack.header.req_id), (wire::XS_WRITE, 9));
    let ev = b.recv();
    assert_eq!(wire::split_strings(&ev.payload), vec![&b"data/b"[..], b"t"]);
    // a got nothing else: its next reply is the answer to its next request.
    a.send(wire::XS_READ, 10, 0, &[b"data/b"]);
    let r = a.recv();
    assert_eq!((r.header.ty, r.header.req_id), (wire::XS_READ, 10));
    assert_eq!(r.payload, b"x");
}

/// Open transactions on `xs` until xenstored's per-domain quota refuses one; returns how many
/// were open (and leaks them from the client's point of view: only the bridge can end them).
fn exhaust_transactions(xs: &xen_store::Xs) -> (usize, xen_store::Error) {
    for n in 0..1000 {
        match xs.begin() {
            Ok(t) => std::mem::forget(t),
            Err(e) => return (n, e),
        }
    }
    panic!("xenstored never refused a transaction");
}

/// Register watches until the quota refuses one; returns how many were registered.
fn exhaust_watches(xs: &xen_store::Xs) -> (usize, xen_store::Error) {
    for n in 0..10_000 {
        if let Err(e) = xs.watch(&format!("data/w{n}"), "q") {
            return (n, e);
        }
    }
    panic!("xenstored never refused a watch");
}

#[test]
fn a_departed_clients_transactions_and_watches_are_ended() {
    let xsd = start();
    let guest = xsd.guest(7).unwrap();
    let xs = guest.client().unwrap();
    let (tx_quota, e) = exhaust_transactions(&xs);
    assert!(tx_quota > 0 && e.xs_errno().is_some(), "{tx_quota}: {e}");
    let (watch_quota, e) = exhaust_watches(&xs);
    assert!(
        watch_quota > 0 && e.xs_errno().is_some(),
        "{watch_quota}: {e}"
    );
    // The quota is per domain: a second client of the same guest is refused too.
    let other = guest.client().unwrap();
    assert!(other.begin().is_err());
    drop(other);
    drop(xs);

    // Bounded wait until the bridge's clean-up has reached xenstored: then a new client gets
    // the whole quota again.
    let deadline = Instant::now() + WAIT;
    loop {
        let xs = guest.client().unwrap();
        let (n, _) = exhaust_transactions(&xs);
        let (w, _) = exhaust_watches(&xs);
        if (n, w) == (tx_quota, watch_quota) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed client's transactions/watches were not ended: {n}/{tx_quota}, {w}/{watch_quota}"
        );
    }
}

#[test]
fn kill_domain_releases_it_and_closes_its_clients() {
    let xsd = start();
    let guest = xsd.guest(8).unwrap();
    let xs = guest.client().unwrap();
    xs.write("data/owned", b"1").unwrap();
    let dom0 = xsd.client().unwrap();
    dom0.watch("@releaseDomain", "rel").unwrap();
    let first = dom0.watch_events().recv_timeout(WAIT).unwrap();
    assert_eq!(first.path, "@releaseDomain");

    xsd.kill_domain(8).unwrap();
    let ev = dom0.watch_events().recv_timeout(WAIT).unwrap();
    assert_eq!(
        (ev.path.as_str(), ev.token.as_str()),
        ("@releaseDomain", "rel")
    );
    assert!(!xsd.is_domain_introduced(8).unwrap());
    assert!(guest.is_dead());
    // The guest's connection is gone: calls fail instead of hanging.
    let started = Instant::now();
    let e = xs.read("data/owned").unwrap_err();
    assert!(started.elapsed() < WAIT, "{e}");
    // Without -K xenstored removes the nodes the dead domain owned.
    assert!(!xsd.exists("/local/domain/8/data/owned").unwrap());
}

#[test]
fn vsnd_tree_is_written_with_libxl_layout_and_permissions() {
    let xsd = start();
    xsd.create_domain(1, "guest1").unwrap();
    let card = VsndCard::testbed_example(1);
    xsd.write_vsnd(&card).unwrap();
    let ls = xsd.tool_ok("xenstore-ls", ["-fp"]).unwrap();
    let expect = [
        "/local/domain/1/device/vsnd/0 = \"\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/backend = \"/local/domain/0/backend/vsnd/1/0\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/backend-id = \"0\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/state = \"1\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/long-name = \"Xen vsnd test\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/short-name = \"Main\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/sample-rates = \"44100,48000\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/sample-formats = \"s16_le\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/channels-min = \"1\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/channels-max = \"2\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/buffer-size = \"65536\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/0 = \"\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/0/name = \"Main\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/0/0/unique-id = \"0\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/0/0/type = \"p\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/0/1/unique-id = \"1\"   (n1,r0)",
        "/local/domain/1/device/vsnd/0/0/1/type = \"c\"   (n1,r0)",
        "/local/domain/0/backend/vsnd/1/0 = \"\"   (n0,r1)",
        "/local/domain/0/backend/vsnd/1/0/frontend = \"/local/domain/1/device/vsnd/0\"   (n0,r1)",
        "/local/domain/0/backend/vsnd/1/0/frontend-id = \"1\"   (n0,r1)",
        "/local/domain/0/backend/vsnd/1/0/online = \"1\"   (n0,r1)",
        "/local/domain/0/backend/vsnd/1/0/state = \"1\"   (n0,r1)",
        "/libxl/1/device/vsnd/0/frontend = \"/local/domain/1/device/vsnd/0\"   (n0)",
    ];
    for line in expect {
        assert!(ls.lines().any(|l| l == line), "missing {line:?} in\n{ls}");
    }
    // Writing it again replaces the device instead of failing.
    xsd.write_vsnd(&card).unwrap();
}
