//! Client tests against a scripted fake xenstored on a `UnixStream` pair: the test thread plays
//! the server, checks the exact bytes the client sends, and answers.

use super::*;
use crate::perm::Access;
use crate::wire::{Header, HEADER_LEN};
use std::os::unix::net::UnixListener;
use std::sync::atomic::AtomicUsize;
use std::thread;

/// Bound for anything that should happen "at once" in these tests.
const SOON: Duration = Duration::from_secs(5);

struct Server {
    sock: UnixStream,
    decoder: MessageReader,
}

impl Server {
    fn new(sock: UnixStream) -> Server {
        sock.set_read_timeout(Some(SOON)).unwrap();
        Server {
            sock,
            decoder: MessageReader::new(),
        }
    }

    /// Next message from the client (panics if none arrives within `SOON`).
    fn recv(&mut self) -> Message {
        loop {
            if let Some(m) = self.decoder.next_message().unwrap() {
                return m;
            }
            let mut buf = [0u8; 8192];
            let n = self
                .sock
                .read(&mut buf)
                .expect("server: no message from the client in time");
            assert!(n > 0, "server: client closed the connection");
            self.decoder.push(&buf[..n]);
        }
    }

    /// Next message, which must be `ty` with `tx_id` and exactly `payload`.
    fn expect(&mut self, ty: MsgType, tx_id: u32, payload: &[u8]) -> Header {
        let m = self.recv();
        assert_eq!(
            m.msg_type(),
            Some(ty),
            "unexpected message type {} (payload {:?})",
            m.header.msg_type,
            String::from_utf8_lossy(&m.payload)
        );
        assert_eq!(m.header.tx_id, tx_id, "tx_id of {ty}");
        assert_eq!(
            String::from_utf8_lossy(&m.payload),
            String::from_utf8_lossy(payload),
            "payload of {ty}"
        );
        assert_eq!(m.header.len as usize, m.payload.len());
        m.header
    }

    fn send_raw(&mut self, ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) {
        let h = Header {
            msg_type: ty,
            req_id,
            tx_id,
            len: payload.len() as u32,
        };
        let mut bytes = h.encode().to_vec();
        bytes.extend_from_slice(payload);
        self.sock.write_all(&bytes).unwrap();
    }

    fn reply(&mut self, req: &Header, payload: &[u8]) {
        self.send_raw(req.msg_type, req.req_id, req.tx_id, payload);
    }

    fn ok(&mut self, req: &Header) {
        self.reply(req, b"OK\0");
    }

    fn error(&mut self, req: &Header, name: &str) {
        let payload = wire::nul_joined([name]);
        self.send_raw(MsgType::Error.code(), req.req_id, req.tx_id, &payload);
    }

    /// A watch event, with the garbage req_id the kernel device may leave in it.
    fn event(&mut self, path: &str, token: &str) {
        let payload = wire::nul_joined([path, token]);
        self.send_raw(MsgType::WatchEvent.code(), 0xdead_beef, 0, &payload);
    }
}

fn pair() -> (Xs, Server) {
    let (a, b) = UnixStream::pair().unwrap();
    (Xs::from_unix_stream(a).unwrap(), Server::new(b))
}

fn fd_readable(fd: std::os::fd::RawFd, timeout: Duration) -> bool {
    let mut fds = [sys::pollfd(fd, sys::POLLIN)];
    sys::poll(&mut fds, Some(timeout)).unwrap() > 0
}

#[test]
fn read_sends_exact_bytes_and_returns_the_value() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| xs.read("/local/domain/5/x"));
        let m = srv.recv();
        let mut expected = Header {
            msg_type: 2,
            req_id: m.header.req_id,
            tx_id: 0,
            len: 18,
        }
        .encode()
        .to_vec();
        expected.extend_from_slice(b"/local/domain/5/x\0");
        let mut got = m.header.encode().to_vec();
        got.extend_from_slice(&m.payload);
        assert_eq!(got, expected);
        assert_eq!(got.len(), HEADER_LEN + 18);
        assert_ne!(m.header.req_id, 0);
        srv.reply(&m.header, b"hello");
        assert_eq!(client.join().unwrap().unwrap(), b"hello");
    });
}

#[test]
fn write_mkdir_rm_wire_format() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| {
            xs.write("/a/b", b"v\0x")?;
            xs.mkdir("rel/dir")?;
            xs.rm("/a")
        });
        let h = srv.expect(MsgType::Write, 0, b"/a/b\0v\0x");
        srv.ok(&h);
        let h = srv.expect(MsgType::Mkdir, 0, b"rel/dir\0");
        srv.ok(&h);
        let h = srv.expect(MsgType::Rm, 0, b"/a\0");
        srv.ok(&h);
        client.join().unwrap().unwrap();
    });
}

#[test]
fn directory_perms_domain_and_watch_requests() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| {
            let kids = xs.directory("/d")?;
            let none = xs.directory("/empty")?;
            let perms = xs.get_perms("/p")?;
            xs.set_perms(
                "/p",
                &[Perm::new(0, Access::None), Perm::new(5, Access::Both)],
            )?;
            let home = xs.get_domain_path(5)?;
            xs.introduce(5, 0, 7)?;
            let intro = xs.is_domain_introduced(5)?;
            xs.release(5)?;
            xs.watch("/w", "tok")?;
            xs.unwatch("/w", "tok")?;
            Ok::<_, Error>((kids, none, perms, home, intro))
        });
        let h = srv.expect(MsgType::Directory, 0, b"/d\0");
        srv.reply(&h, b"a\0bb\0");
        let h = srv.expect(MsgType::Directory, 0, b"/empty\0");
        srv.reply(&h, b"");
        let h = srv.expect(MsgType::GetPerms, 0, b"/p\0");
        srv.reply(&h, b"n0\0r5\0w1\0");
        let h = srv.expect(MsgType::SetPerms, 0, b"/p\0n0\0b5\0");
        srv.ok(&h);
        let h = srv.expect(MsgType::GetDomainPath, 0, b"5\0");
        srv.reply(&h, b"/local/domain/5\0");
        let h = srv.expect(MsgType::Introduce, 0, b"5\x000\x007\0");
        srv.ok(&h);
        let h = srv.expect(MsgType::IsDomainIntroduced, 0, b"5\0");
        srv.reply(&h, b"T\0");
        let h = srv.expect(MsgType::Release, 0, b"5\0");
        srv.ok(&h);
        let h = srv.expect(MsgType::Watch, 0, b"/w\0tok\0");
        srv.ok(&h);
        let h = srv.expect(MsgType::Unwatch, 0, b"/w\0tok\0");
        srv.ok(&h);
        let (kids, none, perms, home, intro) = client.join().unwrap().unwrap();
        assert_eq!(kids, ["a", "bb"]);
        assert!(none.is_empty());
        assert_eq!(
            perms,
            [
                Perm::new(0, Access::None),
                Perm::new(5, Access::Read),
                Perm::new(1, Access::Write)
            ]
        );
        assert_eq!(home, "/local/domain/5");
        assert!(intro);
    });
}

#[test]
fn error_strings_map_to_xs_errno_and_name_op_and_path() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| {
            (
                xs.write("/local/domain/0/name", b"x"),
                xs.try_read_string("/missing"),
                xs.try_read_string("/secret"),
                xs.read("/q"),
                xs.read_string("/gone"),
            )
        });
        let h = srv.expect(MsgType::Write, 0, b"/local/domain/0/name\0x");
        srv.error(&h, "EACCES");
        let h = srv.expect(MsgType::Read, 0, b"/missing\0");
        srv.error(&h, "ENOENT");
        let h = srv.expect(MsgType::Read, 0, b"/secret\0");
        srv.error(&h, "EACCES");
        let h = srv.expect(MsgType::Read, 0, b"/q\0");
        srv.error(&h, "EQUOTA");
        let h = srv.expect(MsgType::Read, 0, b"/gone\0");
        srv.error(&h, "ENOENT");
        let (w, missing, secret, q, gone) = client.join().unwrap();
        match w {
            Err(Error::Xenstore { op, path, errno }) => {
                assert_eq!(
                    (op, path.as_str(), errno),
                    ("WRITE", "/local/domain/0/name", XsErrno::EACCES)
                );
            }
            other => panic!("expected EACCES, got {other:?}"),
        }
        assert_eq!(missing.unwrap(), None);
        assert!(secret.unwrap_err().is_eacces());
        assert_eq!(
            q.unwrap_err().xs_errno(),
            Some(&XsErrno::Other("EQUOTA".into()))
        );
        let gone = gone.unwrap_err();
        assert!(gone.is_enoent());
        assert!(gone.to_string().contains("READ") && gone.to_string().contains("/gone"));
    });
}

#[test]
fn watch_events_between_request_and_reply_and_fd_readiness() {
    let (xs, mut srv) = pair();
    let events = xs.watch_events();
    assert!(!fd_readable(events.fd(), Duration::from_millis(20)));
    thread::scope(|s| {
        let client = s.spawn(|| xs.read_string("/v"));
        let h = srv.expect(MsgType::Read, 0, b"/v\0");
        srv.event("/w/a", "tok1");
        srv.event("rel/b", "tok2");
        srv.reply(&h, b"42\0");
        assert_eq!(client.join().unwrap().unwrap(), "42");
    });
    assert!(fd_readable(events.fd(), SOON), "fd must become readable");
    assert_eq!(
        events.try_recv(),
        Some(WatchEvent {
            path: "/w/a".into(),
            token: "tok1".into()
        })
    );
    assert!(fd_readable(events.fd(), SOON), "one event left");
    assert_eq!(
        events.try_recv(),
        Some(WatchEvent {
            path: "rel/b".into(),
            token: "tok2".into()
        })
    );
    assert_eq!(events.try_recv(), None);
    assert!(!fd_readable(events.fd(), Duration::from_millis(20)));
    // An event with no reply pending at all, consumed with recv_timeout.
    srv.event("/solo", "t");
    assert_eq!(
        events.recv_timeout(SOON).map(|e| e.path),
        Some("/solo".to_owned())
    );
}

#[test]
fn two_threads_in_flight_answered_in_reverse_order() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let a = s.spawn(|| xs.read_string("/a"));
        let b = s.spawn(|| xs.read_string("/b"));
        // Both requests must be outstanding at once: the server reads both before answering.
        let first = srv.recv();
        let second = srv.recv();
        assert_ne!(first.header.req_id, second.header.req_id);
        for m in [&second, &first] {
            let path = String::from_utf8_lossy(&m.payload)
                .trim_end_matches('\0')
                .to_owned();
            srv.event(&path, "interleaved");
            srv.reply(&m.header, format!("value of {path}").as_bytes());
        }
        assert_eq!(a.join().unwrap().unwrap(), "value of /a");
        assert_eq!(b.join().unwrap().unwrap(), "value of /b");
    });
    assert_eq!(xs.watch_events().len(), 2);
}

#[test]
fn many_threads_many_requests_with_interleaved_events() {
    const THREADS: usize = 6;
    const PER_THREAD: usize = 40;
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let xs = &xs;
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        let path = format!("/t{t}/n{i}");
                        assert_eq!(xs.read_string(&path).unwrap(), format!("v{path}"));
                    }
                })
            })
            .collect();
        // Every thread has exactly one request in flight while it still has work: collect one
        // from each active thread, then answer the batch newest first, each reply followed by a
        // watch event.
        let mut left = [PER_THREAD; THREADS];
        while left.iter().any(|&n| n > 0) {
            let active = left.iter().filter(|&&n| n > 0).count();
            let mut batch: Vec<Message> = (0..active).map(|_| srv.recv()).collect();
            while let Some(m) = batch.pop() {
                let path = String::from_utf8_lossy(&m.payload)
                    .trim_end_matches('\0')
                    .to_owned();
                let t: usize = path
                    .strip_prefix("/t")
                    .and_then(|r| r.split('/').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap();
                left[t] -= 1;
                srv.reply(&m.header, format!("v{path}").as_bytes());
                srv.event(&path, "storm");
            }
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    // The last events may still be in transit after the last reply: wait for each.
    let mut paths: Vec<String> = (0..THREADS * PER_THREAD)
        .map(|_| {
            xs.watch_events()
                .recv_timeout(SOON)
                .expect("missing watch event")
                .path
        })
        .collect();
    paths.sort();
    let mut expected: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..PER_THREAD).map(move |i| format!("/t{t}/n{i}")))
        .collect();
    expected.sort();
    assert_eq!(paths, expected);
    assert_eq!(xs.watch_events().try_recv(), None);
}

#[test]
fn transaction_retries_after_eagain_on_commit() {
    let (xs, mut srv) = pair();
    let calls = AtomicUsize::new(0);
    thread::scope(|s| {
        let client = s.spawn(|| {
            xs.transaction(|t| {
                calls.fetch_add(1, Ordering::SeqCst);
                let n: u32 = t.read_string("/c")?.parse().unwrap_or(0);
                t.write("/c", (n + 1).to_string().as_bytes())?;
                Ok(n + 1)
            })
        });
        for (tx, value, commit_reply) in [(17u32, "1", "EAGAIN"), (18, "5", "OK")] {
            let h = srv.expect(MsgType::TransactionStart, 0, b"\0");
            srv.reply(&h, format!("{tx}\0").as_bytes());
            let h = srv.expect(MsgType::Read, tx, b"/c\0");
            srv.reply(&h, value.as_bytes());
            let next = value.parse::<u32>().unwrap() + 1;
            let h = srv.expect(MsgType::Write, tx, format!("/c\0{next}").as_bytes());
            srv.ok(&h);
            let h = srv.expect(MsgType::TransactionEnd, tx, b"T\0");
            if commit_reply == "OK" {
                srv.ok(&h);
            } else {
                srv.error(&h, commit_reply);
            }
        }
        assert_eq!(client.join().unwrap().unwrap(), 6);
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn transaction_eagain_forever_gives_a_bounded_error() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| {
            let r = xs.transaction(|t| t.write("/x", b"1"));
            // The next request must be this read: no further transaction attempt.
            (r, xs.read("/after"))
        });
        for i in 0..TRANSACTION_ATTEMPTS {
            let tx = 100 + i;
            let h = srv.expect(MsgType::TransactionStart, 0, b"\0");
            srv.reply(&h, format!("{tx}\0").as_bytes());
            let h = srv.expect(MsgType::Write, tx, b"/x\x001");
            srv.ok(&h);
            let h = srv.expect(MsgType::TransactionEnd, tx, b"T\0");
            srv.error(&h, "EAGAIN");
        }
        let h = srv.expect(MsgType::Read, 0, b"/after\0");
        srv.reply(&h, b"");
        let (r, after) = client.join().unwrap();
        assert!(
            matches!(r, Err(Error::TransactionConflict { attempts }) if attempts == TRANSACTION_ATTEMPTS),
            "{r:?}"
        );
        assert_eq!(after.unwrap(), b"");
    });
}

#[test]
fn transaction_error_in_closure_aborts_without_waiting() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| {
            let r = xs.transaction(|t| t.read("/nope"));
            (r, xs.read_string("/next"))
        });
        let h = srv.expect(MsgType::TransactionStart, 0, b"\0");
        srv.reply(&h, b"9\0");
        let h = srv.expect(MsgType::Read, 9, b"/nope\0");
        srv.error(&h, "ENOENT");
        // Abort sent on drop; the client does not wait for its reply, so the next request comes
        // before we answer the abort.
        let abort = srv.expect(MsgType::TransactionEnd, 9, b"F\0");
        let next = srv.expect(MsgType::Read, 0, b"/next\0");
        srv.ok(&abort);
        srv.reply(&next, b"fine");
        let (r, next) = client.join().unwrap();
        assert!(r.unwrap_err().is_enoent());
        assert_eq!(next.unwrap(), "fine");
    });
}

#[test]
fn manual_transaction_commit_and_abort() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| {
            let t = xs.begin()?;
            assert_eq!(t.id(), 4);
            t.mkdir("/m")?;
            let kids = t.directory("/m")?;
            t.set_perms("/m", &[Perm::new(0, Access::Read)])?;
            t.commit()?;
            let t2 = xs.begin()?;
            t2.rm("/m")?;
            t2.abort()?;
            Ok::<_, Error>(kids)
        });
        let h = srv.expect(MsgType::TransactionStart, 0, b"\0");
        srv.reply(&h, b"4\0");
        let h = srv.expect(MsgType::Mkdir, 4, b"/m\0");
        srv.ok(&h);
        let h = srv.expect(MsgType::Directory, 4, b"/m\0");
        srv.reply(&h, b"k\0");
        let h = srv.expect(MsgType::SetPerms, 4, b"/m\0r0\0");
        srv.ok(&h);
        let h = srv.expect(MsgType::TransactionEnd, 4, b"T\0");
        srv.ok(&h);
        let h = srv.expect(MsgType::TransactionStart, 0, b"\0");
        srv.reply(&h, b"5\0");
        let h = srv.expect(MsgType::Rm, 5, b"/m\0");
        srv.ok(&h);
        let h = srv.expect(MsgType::TransactionEnd, 5, b"F\0");
        srv.ok(&h);
        assert_eq!(client.join().unwrap().unwrap(), ["k"]);
    });
}

#[test]
fn bad_transaction_id_is_a_protocol_error() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| xs.begin().map(|t| t.id()));
        let h = srv.expect(MsgType::TransactionStart, 0, b"\0");
        srv.reply(&h, b"abc\0");
        assert!(matches!(client.join().unwrap(), Err(Error::Protocol(_))));
    });
}

#[test]
fn oversize_payload_is_rejected_before_sending() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| {
            let too_big = xs.write("/big", &[b'x'; PAYLOAD_MAX]);
            // Exactly at the limit: "/p\0" + 4093 bytes = 4096.
            let at_limit = xs.write("/p", &[b'y'; PAYLOAD_MAX - 3]);
            let long_path = "/".repeat(PAYLOAD_MAX);
            let too_long_path = xs.read(&long_path);
            (too_big, at_limit, too_long_path, xs.read("/after"))
        });
        // The first thing on the wire is the at-limit write: nothing was sent for the oversize one.
        let m = srv.recv();
        assert_eq!(m.msg_type(), Some(MsgType::Write));
        assert_eq!(m.payload.len(), PAYLOAD_MAX);
        assert!(m.payload.starts_with(b"/p\0y"));
        srv.ok(&m.header);
        let h = srv.expect(MsgType::Read, 0, b"/after\0");
        srv.reply(&h, b"still connected");
        let (too_big, at_limit, too_long_path, after) = client.join().unwrap();
        match too_big {
            Err(Error::PayloadTooLarge { op, path, len, max }) => {
                assert_eq!(
                    (op, path.as_str(), len, max),
                    ("WRITE", "/big", 4 + 1 + PAYLOAD_MAX, PAYLOAD_MAX)
                );
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        at_limit.unwrap();
        assert!(matches!(
            too_long_path,
            Err(Error::PayloadTooLarge { op: "READ", .. })
        ));
        assert_eq!(after.unwrap(), b"still connected");
    });
    assert!(!xs.is_closed());
}

#[test]
fn nul_bytes_in_paths_and_tokens_are_rejected() {
    let (xs, mut srv) = pair();
    assert!(matches!(
        xs.read("a\0b"),
        Err(Error::InvalidArgument { op: "READ", .. })
    ));
    assert!(matches!(
        xs.watch("/w", "t\0k"),
        Err(Error::InvalidArgument { op: "WATCH", .. })
    ));
    assert!(matches!(
        xs.set_perms("/w", &[]),
        Err(Error::InvalidArgument {
            op: "SET_PERMS",
            ..
        })
    ));
    thread::scope(|s| {
        let client = s.spawn(|| xs.read("/ok"));
        // Nothing of the rejected calls reached the wire.
        let h = srv.expect(MsgType::Read, 0, b"/ok\0");
        srv.reply(&h, b"1");
        assert_eq!(client.join().unwrap().unwrap(), b"1");
    });
}

#[test]
fn peer_closing_mid_request_fails_fast_with_closed() {
    let (xs, mut srv) = pair();
    xs.set_timeout(Duration::from_secs(60));
    let events = xs.watch_events();
    thread::scope(|s| {
        let client = s.spawn(|| {
            let start = Instant::now();
            (xs.read("/never"), start.elapsed())
        });
        srv.expect(MsgType::Read, 0, b"/never\0");
        drop(srv);
        let (r, took) = client.join().unwrap();
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        assert!(
            took < SOON,
            "took {took:?}, must not wait for the 60 s timeout"
        );
    });
    assert!(xs.is_closed());
    assert!(xs.close_reason().unwrap().contains("closed the connection"));
    let start = Instant::now();
    assert!(matches!(xs.write("/later", b"x"), Err(Error::Closed)));
    assert!(start.elapsed() < SOON);
    assert!(
        fd_readable(events.fd(), SOON),
        "watch fd must signal the close"
    );
    assert!(events.is_closed());
    assert_eq!(events.recv_timeout(Duration::from_secs(60)), None);
}

#[test]
fn close_wakes_threads_waiting_for_replies_and_events() {
    let (xs, mut srv) = pair();
    xs.set_timeout(Duration::from_secs(60));
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let start = Instant::now();
            (xs.read("/slow"), start.elapsed())
        });
        let event_waiter = s.spawn(|| xs.watch_events().recv_timeout(Duration::from_secs(60)));
        srv.expect(MsgType::Read, 0, b"/slow\0");
        xs.close();
        let (r, took) = waiter.join().unwrap();
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        assert!(took < SOON);
        assert_eq!(event_waiter.join().unwrap(), None);
    });
    assert!(xs.is_closed());
    // The reader stopped and the client keeps the socket until drop; dropping closes it.
    drop(xs);
    let mut buf = [0u8; 16];
    assert_eq!(
        srv.sock.read(&mut buf).unwrap(),
        0,
        "server must see EOF after drop"
    );
}

#[test]
fn drop_while_the_reader_waits_does_not_hang() {
    let (xs, mut srv) = pair();
    let (done_tx, done_rx) = mpsc::channel();
    let dropper = thread::spawn(move || {
        drop(xs);
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(SOON)
        .expect("dropping Xs must not wait for the server");
    dropper.join().unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(srv.sock.read(&mut buf).unwrap(), 0, "stream closed on drop");
}

#[test]
fn drop_of_an_arc_shared_client_after_waiting_threads_finish() {
    let (xs, mut srv) = pair();
    let xs = Arc::new(xs);
    let worker = {
        let xs = Arc::clone(&xs);
        thread::spawn(move || xs.read("/w"))
    };
    let h = srv.expect(MsgType::Read, 0, b"/w\0");
    // The main thread drops its handle while the worker waits; the worker's handle keeps the
    // connection alive until its reply arrives.
    drop(xs);
    srv.reply(&h, b"v");
    assert_eq!(worker.join().unwrap().unwrap(), b"v");
    let mut buf = [0u8; 16];
    assert_eq!(srv.sock.read(&mut buf).unwrap(), 0, "last handle dropped");
}

#[test]
fn timeout_then_late_reply_is_discarded() {
    let (xs, mut srv) = pair();
    xs.set_timeout(Duration::from_millis(200));
    assert_eq!(xs.timeout(), Duration::from_millis(200));
    thread::scope(|s| {
        let client = s.spawn(|| xs.read("/slow"));
        let slow = srv.expect(MsgType::Read, 0, b"/slow\0");
        match client.join().unwrap() {
            Err(Error::Timeout { op, path, timeout }) => {
                assert_eq!(
                    (op, path.as_str(), timeout),
                    ("READ", "/slow", Duration::from_millis(200))
                );
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        xs.set_timeout(DEFAULT_TIMEOUT);
        srv.reply(&slow, b"late");
        let client = s.spawn(|| xs.read("/next"));
        let h = srv.expect(MsgType::Read, 0, b"/next\0");
        assert_ne!(h.req_id, slow.req_id);
        srv.reply(&h, b"fresh");
        assert_eq!(client.join().unwrap().unwrap(), b"fresh");
    });
    assert!(!xs.is_closed());
}

#[test]
fn oversize_header_from_server_closes_the_connection() {
    let (xs, mut srv) = pair();
    xs.set_timeout(Duration::from_secs(60));
    thread::scope(|s| {
        let client = s.spawn(|| xs.read("/x"));
        let h = srv.expect(MsgType::Read, 0, b"/x\0");
        let bad = Header {
            msg_type: MsgType::Read.code(),
            req_id: h.req_id,
            tx_id: 0,
            len: PAYLOAD_MAX as u32 + 1,
        };
        srv.sock.write_all(&bad.encode()).unwrap();
        assert!(matches!(client.join().unwrap(), Err(Error::Closed)));
    });
    assert!(xs.close_reason().unwrap().contains("protocol"));
    assert!(fd_readable(xs.watch_events().fd(), SOON));
}

#[test]
fn reply_of_the_wrong_type_is_a_protocol_error() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| xs.read("/x"));
        let h = srv.expect(MsgType::Read, 0, b"/x\0");
        srv.send_raw(MsgType::Write.code(), h.req_id, 0, b"OK\0");
        assert!(matches!(client.join().unwrap(), Err(Error::Protocol(m)) if m.contains("READ")));
    });
}

#[test]
fn directory_falls_back_to_directory_part_and_restarts_on_change() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| xs.directory("/big"));
        let h = srv.expect(MsgType::Directory, 0, b"/big\0");
        srv.error(&h, "E2BIG");
        let h = srv.expect(MsgType::DirectoryPart, 0, b"/big\x000\0");
        srv.reply(&h, b"7\0a\0");
        // The node changed between chunks: generation 8, start over.
        let h = srv.expect(MsgType::DirectoryPart, 0, b"/big\x002\0");
        srv.reply(&h, b"8\0x\0");
        let h = srv.expect(MsgType::DirectoryPart, 0, b"/big\x000\0");
        srv.reply(&h, b"8\0a\0bb\0");
        let h = srv.expect(MsgType::DirectoryPart, 0, b"/big\x005\0");
        srv.reply(&h, b"8\0c\0\0");
        assert_eq!(client.join().unwrap().unwrap(), ["a", "bb", "c"]);
    });
}

#[test]
fn directory_e2big_without_directory_part_support() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| xs.directory("/big"));
        let h = srv.expect(MsgType::Directory, 0, b"/big\0");
        srv.error(&h, "E2BIG");
        let h = srv.expect(MsgType::DirectoryPart, 0, b"/big\x000\0");
        srv.error(&h, "ENOSYS");
        let e = client.join().unwrap().unwrap_err();
        assert_eq!(e.xs_errno(), Some(&XsErrno::E2BIG));
        assert!(matches!(
            e,
            Error::Xenstore {
                op: "DIRECTORY",
                ..
            }
        ));
    });
}

#[test]
fn open_unix_and_env_selection() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("socket");
    let listener = UnixListener::bind(&sock).unwrap();
    for via_env in [false, true] {
        let xs = if via_env {
            Xs::open_with_env(Some(sock.clone().into_os_string())).unwrap()
        } else {
            Xs::open_unix(&sock).unwrap()
        };
        let (conn, _) = listener.accept().unwrap();
        let mut srv = Server::new(conn);
        thread::scope(|s| {
            let client = s.spawn(|| xs.get_domain_path(0));
            let h = srv.expect(MsgType::GetDomainPath, 0, b"0\0");
            srv.reply(&h, b"/local/domain/0\0");
            assert_eq!(client.join().unwrap().unwrap(), "/local/domain/0");
        });
        assert!(format!("{xs:?}").contains("socket"));
    }
    match Xs::open_unix(&dir.path().join("absent")) {
        Err(Error::Io { op, path, .. }) => {
            assert_eq!(op, "open");
            assert!(path.ends_with("absent"));
        }
        other => panic!("expected an open error, got {other:?}"),
    }
    match Xs::open_device(&dir.path().join("no-xenbus")) {
        Err(Error::Io { op, path, source }) => {
            assert_eq!(op, "open");
            assert!(path.ends_with("no-xenbus"));
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected an open error, got {other:?}"),
    }
}

#[test]
fn device_mode_and_from_fd_work_over_a_stream() {
    // `write(2)` path used for /dev/xen/xenbus, exercised over a socket.
    let (a, b) = UnixStream::pair().unwrap();
    let xs = Xs::from_unix_stream_as_device(a).unwrap();
    let mut srv = Server::new(b);
    thread::scope(|s| {
        let client = s.spawn(|| xs.write("/d", b"1"));
        let h = srv.expect(MsgType::Write, 0, b"/d\x001");
        srv.ok(&h);
        client.join().unwrap().unwrap();
    });
    let (a, b) = UnixStream::pair().unwrap();
    let xs = Xs::from_fd(OwnedFd::from(a)).unwrap();
    assert!(format!("{xs:?}").contains("Socket"));
    let mut srv = Server::new(b);
    thread::scope(|s| {
        let client = s.spawn(|| xs.read("/f"));
        let h = srv.expect(MsgType::Read, 0, b"/f\0");
        srv.reply(&h, b"z");
        assert_eq!(client.join().unwrap().unwrap(), b"z");
    });
}

#[test]
fn watch_registration_fires_and_is_pollable() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| xs.watch("device/vsnd", "vsnd"));
        let h = srv.expect(MsgType::Watch, 0, b"device/vsnd\0vsnd\0");
        // xenstored fires a new watch once, possibly before the WATCH reply.
        srv.event("device/vsnd", "vsnd");
        srv.ok(&h);
        client.join().unwrap().unwrap();
    });
    let fd = xs.watch_events().fd();
    assert!(fd_readable(fd, SOON));
    assert_eq!(
        xs.watch_events().try_recv(),
        Some(WatchEvent {
            path: "device/vsnd".into(),
            token: "vsnd".into()
        })
    );
    assert!(!fd_readable(fd, Duration::from_millis(20)));
}

#[test]
fn manual_commit_reports_eagain_naming_the_transaction() {
    let (xs, mut srv) = pair();
    thread::scope(|s| {
        let client = s.spawn(|| {
            let t = xs.begin()?;
            t.write("/k", b"v")?;
            t.commit()
        });
        let h = srv.expect(MsgType::TransactionStart, 0, b"\0");
        srv.reply(&h, b"31\0");
        let h = srv.expect(MsgType::Write, 31, b"/k\0v");
        srv.ok(&h);
        let h = srv.expect(MsgType::TransactionEnd, 31, b"T\0");
        srv.error(&h, "EAGAIN");
        let e = client.join().unwrap().unwrap_err();
        assert!(e.is_eagain());
        assert!(
            e.to_string().contains("TRANSACTION_END") && e.to_string().contains("transaction 31")
        );
    });
    // A commit answered by xenstored ends the transaction: no abort follows.
    thread::scope(|s| {
        let client = s.spawn(|| xs.read("/after"));
        let h = srv.expect(MsgType::Read, 0, b"/after\0");
        srv.reply(&h, b"");
        client.join().unwrap().unwrap();
    });
}
