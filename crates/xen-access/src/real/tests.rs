//! The adapters cannot reach Xen here; these tests cover opening missing devices and the
//! xenstore adapter end to end against a scripted server speaking the xenstore wire protocol.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use xen_store::wire::{encode_message, split_nul, Message, MessageReader, MsgType};

use super::*;
use crate::fake::wait_readable;

fn missing(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

#[test]
fn a_missing_xenbus_device_says_we_are_not_in_a_xen_guest() {
    let (_dir, path) = missing("xenbus");
    let e = RealStore::open_device(&path).unwrap_err();
    assert!(matches!(e, OpenError::Store { .. }));
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not running in a Xen guest"), "{msg}");
}

#[test]
fn missing_grant_and_evtchn_devices_name_the_device() {
    let (_dir, path) = missing("gntalloc");
    let e = RealGrantShare::open_path(&path).unwrap_err();
    assert!(matches!(e, OpenError::GrantShare { .. }));
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert!(
        e.to_string()
            .starts_with("cannot open the grant-sharing device"),
        "{e}"
    );

    let (_dir, path) = missing("gntdev");
    let e = RealGrantMap::open_path(&path).unwrap_err();
    assert!(matches!(e, OpenError::GrantMap { .. }));
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");

    let (_dir, path) = missing("evtchn");
    let e = RealEventChannels::open_path(&path).unwrap_err();
    assert!(matches!(e, OpenError::EventChannels { .. }));
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

#[test]
fn a_file_that_is_not_an_evtchn_device_fails_at_the_first_ioctl() {
    // /dev/null opens fine, so the opener succeeds; binding then fails with an error naming the
    // operation and the remote domain.
    let opener = RealEventChannels::open_path("/dev/null").unwrap();
    let h = opener.open().unwrap();
    let e = h.bind_unbound(3).unwrap_err();
    let EvtchnError::Failed { op, domid, .. } = &e;
    assert_eq!((*op, *domid), ("bind_unbound", Some(3)));
    assert!(e.to_string().contains("/dev/null"), "{e}");
}

#[test]
fn client_errors_map_to_store_errors() {
    let xs_err = |errno| xen_store::Error::Xenstore {
        op: "READ",
        path: "p".into(),
        errno,
    };
    for (wire, ours) in [
        (XsErrno::ENOENT, StoreErrno::NoEnt),
        (XsErrno::EACCES, StoreErrno::Access),
        (XsErrno::EAGAIN, StoreErrno::Again),
        (XsErrno::EEXIST, StoreErrno::Exist),
        (XsErrno::EINVAL, StoreErrno::Invalid),
        (XsErrno::EPERM, StoreErrno::Other("EPERM".into())),
        (
            XsErrno::Other("EQUOTA".into()),
            StoreErrno::Other("EQUOTA".into()),
        ),
    ] {
        let e = store_err("read", "/a/b", xs_err(wire));
        assert_eq!(e.errno(), Some(&ours));
        assert!(e.to_string().contains("read /a/b"), "{e}");
    }
    let e = store_err("write", "/x", xen_store::Error::Closed);
    assert!(
        matches!(e, StoreError::Connection { op: "write", .. }),
        "{e}"
    );
    let e = store_err(
        "transaction_end",
        "",
        xen_store::Error::TransactionConflict { attempts: 16 },
    );
    assert!(e.is_again());
}

/// A scripted xenstored: answers each request with what `reply` returns (type and payload),
/// echoing the request id and transaction id.
struct Server {
    requests: Arc<Mutex<Vec<Request>>>,
    thread: Option<JoinHandle<()>>,
}

type Replies = Vec<(MsgType, Vec<u8>)>;

/// A request as the server saw it: type, transaction id, NUL-separated arguments.
type Request = (MsgType, u32, Vec<String>);

impl Server {
    fn start(
        mut reply: impl FnMut(MsgType, &[String]) -> Replies + Send + 'static,
    ) -> (RealStore, Server) {
        let (client, mut server) = UnixStream::pair().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        let thread = std::thread::spawn(move || {
            let mut reader = MessageReader::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = match server.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                reader.push(&buf[..n]);
                while let Ok(Some(Message { header, payload })) = reader.next_message() {
                    let Some(ty) = MsgType::from_code(header.msg_type) else {
                        return;
                    };
                    let args: Vec<String> = split_nul(&payload)
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect();
                    log.lock().unwrap().push((ty, header.tx_id, args.clone()));
                    for (rty, rpayload) in reply(ty, &args) {
                        let req_id = if rty == MsgType::WatchEvent {
                            0
                        } else {
                            header.req_id
                        };
                        let msg = encode_message(rty, req_id, header.tx_id, &rpayload).unwrap();
                        if server.write_all(&msg).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let xs = Xs::from_unix_stream(client).unwrap();
        xs.set_timeout(Duration::from_secs(10));
        (
            RealStore::from_xs(xs),
            Server {
                requests,
                thread: Some(thread),
            },
        )
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn stop(mut self, store: RealStore) {
        drop(store);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn ok(ty: MsgType) -> Replies {
    vec![(ty, b"OK\0".to_vec())]
}

fn error(name: &str) -> Replies {
    vec![(MsgType::Error, format!("{name}\0").into_bytes())]
}

#[test]
fn missing_nodes_are_none_empty_and_ok() {
    let (store, server) = Server::start(|ty, args| match (ty, args.first().map(String::as_str)) {
        (MsgType::Read, Some("x")) => vec![(ty, b"val".to_vec())],
        (MsgType::Directory, Some("d")) => vec![(ty, b"a\0b\0".to_vec())],
        (MsgType::Write, Some("denied")) => error("EACCES"),
        (MsgType::Mkdir, _) => ok(ty),
        _ => error("ENOENT"),
    });
    assert_eq!(store.read("x").unwrap().as_deref(), Some("val"));
    assert_eq!(store.read("missing").unwrap(), None);
    assert_eq!(
        store.directory("d").unwrap(),
        vec!["a".to_owned(), "b".to_owned()]
    );
    assert_eq!(store.directory("missing").unwrap(), Vec::<String>::new());
    store.rm("missing").unwrap();
    store.mkdir("m").unwrap();
    let e = store.write("denied", "1").unwrap_err();
    assert!(
        e.is_access() && e.to_string().contains("write denied"),
        "{e}"
    );
    let e = store.get_perms("missing").unwrap_err();
    assert!(e.is_noent(), "{e}");
    let sent = server.requests();
    assert!(
        sent.contains(&(MsgType::Write, 0, vec!["denied".into(), "1".into()])),
        "{sent:?}"
    );
    server.stop(store);
}

#[test]
fn permissions_convert_both_ways() {
    let (store, server) = Server::start(|ty, args| match (ty, args.first().map(String::as_str)) {
        (MsgType::GetPerms, Some("big")) => vec![(ty, b"r70000\0".to_vec())],
        (MsgType::GetPerms, _) => vec![(ty, b"n5\0r0\0b7\0w9\0".to_vec())],
        _ => ok(ty),
    });
    assert_eq!(
        store.get_perms("p").unwrap(),
        vec![
            Perm {
                domid: 5,
                access: Access::None
            },
            Perm {
                domid: 0,
                access: Access::Read
            },
            Perm {
                domid: 7,
                access: Access::Both
            },
            Perm {
                domid: 9,
                access: Access::Write
            },
        ]
    );
    let e = store.get_perms("big").unwrap_err();
    assert!(e.to_string().contains("70000"), "{e}");
    store
        .set_perms(
            "p",
            &[
                Perm {
                    domid: 5,
                    access: Access::None,
                },
                Perm {
                    domid: 0,
                    access: Access::Read,
                },
            ],
        )
        .unwrap();
    let sent = server.requests();
    assert!(
        sent.contains(&(
            MsgType::SetPerms,
            0,
            vec!["p".into(), "n5".into(), "r0".into()]
        )),
        "{sent:?}"
    );
    server.stop(store);
}

#[test]
fn own_domid_reads_the_domid_node_once() {
    let (store, server) = Server::start(|ty, _| match ty {
        MsgType::Read => vec![(ty, b"12".to_vec())],
        _ => ok(ty),
    });
    assert_eq!(store.own_domid().unwrap(), 12);
    assert_eq!(store.own_domid().unwrap(), 12);
    let reads: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.0 == MsgType::Read)
        .collect();
    assert_eq!(reads, vec![(MsgType::Read, 0, vec!["domid".to_owned()])]);
    server.stop(store);
}

#[test]
fn watch_events_arrive_through_the_fd() {
    let (store, server) = Server::start(|ty, args| match ty {
        MsgType::Watch => {
            let mut r = ok(ty);
            r.push((MsgType::WatchEvent, xen_store::wire::nul_joined(args)));
            r
        }
        _ => ok(ty),
    });
    assert!(!wait_readable(store.watch_fd(), Duration::from_millis(0)));
    store.watch("device/vsnd", "tok").unwrap();
    assert!(wait_readable(store.watch_fd(), Duration::from_secs(5)));
    assert_eq!(
        store.take_watch_event(),
        Some(WatchEvent {
            path: "device/vsnd".into(),
            token: "tok".into()
        })
    );
    assert_eq!(store.take_watch_event(), None);
    store.unwatch("device/vsnd", "tok").unwrap();
    server.stop(store);
}

#[test]
fn transactions_retry_on_eagain_and_use_the_transaction_id() {
    let mut commits = 0;
    let (store, server) = Server::start(move |ty, args| match ty {
        MsgType::TransactionStart => vec![(ty, b"7\0".to_vec())],
        MsgType::TransactionEnd if args.first().map(String::as_str) == Some("T") => {
            commits += 1;
            if commits == 1 {
                error("EAGAIN")
            } else {
                ok(ty)
            }
        }
        MsgType::Read => error("ENOENT"),
        _ => ok(ty),
    });
    let mut runs = 0;
    store
        .transaction(&mut |t| {
            runs += 1;
            assert_eq!(t.read("n")?, None);
            t.write("n", "1")
        })
        .unwrap();
    assert_eq!(runs, 2);
    let sent = server.requests();
    assert!(
        sent.contains(&(MsgType::Write, 7, vec!["n".into(), "1".into()])),
        "{sent:?}"
    );
    // A failing closure aborts (sends "F") and returns its error.
    let r = store.transaction(&mut |t| {
        t.write("n", "2")?;
        Err(StoreError::Xs {
            op: "check",
            path: "n".into(),
            errno: StoreErrno::Invalid,
        })
    });
    assert_eq!(r.unwrap_err().errno(), Some(&StoreErrno::Invalid));
    server.stop(store);
}

#[test]
fn a_closed_connection_is_a_connection_error_and_the_fd_says_so() {
    let (client, peer) = UnixStream::pair().unwrap();
    drop(peer);
    let closed = RealStore::from_xs(Xs::from_unix_stream(client).unwrap());
    let e = closed.read("x").unwrap_err();
    assert!(
        matches!(e, StoreError::Connection { op: "read", .. }),
        "{e}"
    );
    assert!(wait_readable(closed.watch_fd(), Duration::from_secs(5)));
    assert!(closed.transaction(&mut |_| Ok(())).is_err());
}
