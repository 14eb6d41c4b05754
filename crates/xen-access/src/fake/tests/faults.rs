use super::*;
use crate::fake::{FaultError, FaultOp};
use crate::{EvtchnError, GrantError};

fn eio() -> FaultError {
    FaultError::Errno(StoreErrno::Other("EIO".into()))
}

#[test]
fn store_read_and_write_faults_fail_the_next_calls_only() {
    let world = FakeXen::new();
    let store = world.domain(0).store();
    store.write("/n", "1").unwrap();
    world.faults().fail_next(FaultOp::StoreRead, 2, eio());
    assert_eq!(world.faults().pending(FaultOp::StoreRead), 2);
    assert_eq!(errno(store.read("/n")), StoreErrno::Other("EIO".into()));
    assert_eq!(errno(store.directory("/")), StoreErrno::Other("EIO".into()));
    assert_eq!(store.read("/n").unwrap().as_deref(), Some("1"));
    world.faults().fail_next(
        FaultOp::StoreWrite,
        1,
        FaultError::Errno(StoreErrno::Access),
    );
    let e = store.write("/n", "2").unwrap_err();
    assert!(e.is_access() && e.to_string().contains("/n"), "{e}");
    assert_eq!(
        world.read("/n").as_deref(),
        Some("1"),
        "a failed write changes nothing"
    );
    store.write("/n", "2").unwrap();
    world
        .faults()
        .fail_next(FaultOp::StoreWrite, 1, FaultError::ConnectionLost);
    assert!(matches!(
        store.rm("/n"),
        Err(StoreError::Connection { op: "rm", .. })
    ));
    assert_eq!(world.faults().pending(FaultOp::StoreWrite), 0);
}

#[test]
fn commit_faults_make_the_transaction_retry() {
    let world = FakeXen::new();
    let store = world.domain(0).store();
    world.faults().fail_next(
        FaultOp::StoreCommit,
        2,
        FaultError::Errno(StoreErrno::Again),
    );
    let mut runs = 0;
    store
        .transaction(&mut |t| {
            runs += 1;
            t.write("/t", &runs.to_string())
        })
        .unwrap();
    assert_eq!(runs, 3);
    assert_eq!(world.read("/t").as_deref(), Some("3"));
    // A non-EAGAIN commit failure is returned as is.
    world.faults().fail_next(FaultOp::StoreCommit, 1, eio());
    let r = store.transaction(&mut |t| t.write("/t", "x"));
    assert_eq!(errno(r), StoreErrno::Other("EIO".into()));
    assert_eq!(world.read("/t").as_deref(), Some("3"));
}

#[test]
fn faults_can_target_one_domain() {
    let world = FakeXen::new();
    let s5 = world.domain(5).store();
    let s6 = world.domain(6).store();
    world
        .faults()
        .fail_next_for(5, FaultOp::StoreRead, 1, eio());
    assert_eq!(s6.read("data").unwrap().as_deref(), Some(""));
    assert!(s5.read("data").is_err());
    assert!(s5.read("data").is_ok());
}

#[test]
fn grant_faults() {
    let world = FakeXen::new();
    let be = world.domain(0).grant_map();
    let fe = world.domain(5).grant_share();
    world.faults().fail_next(
        FaultOp::GrantShare,
        1,
        FaultError::Errno(StoreErrno::Other("ENOSPC".into())),
    );
    let GrantError::Failed { op, reason, .. } = fe.share(0, 2).unwrap_err();
    assert_eq!(op, "share");
    assert!(reason.contains("ENOSPC"), "{reason}");
    assert_eq!(world.live_grants(5), 0);
    let g = fe.share(0, 2).unwrap();
    world.faults().fail_next(FaultOp::GrantMap, 1, eio());
    let GrantError::Failed { op, .. } = be.map(5, &g.grefs).unwrap_err();
    assert_eq!(op, "map");
    assert_eq!(world.live_mappings(0), 0);
    assert!(be.map(5, &g.grefs).is_ok());
}

#[test]
fn evtchn_faults() {
    let world = FakeXen::new();
    let fe = world.domain(5).event_channels().open().unwrap();
    let be = world.domain(0).event_channels().open().unwrap();
    world.faults().fail_next(FaultOp::EvtchnBind, 1, eio());
    let EvtchnError::Failed { op, reason, .. } = fe.bind_unbound(0).unwrap_err();
    assert_eq!(op, "bind_unbound");
    assert!(reason.contains("EIO"));
    assert_eq!(world.bound_ports(5), 0);
    let fe_port = fe.bind_unbound(0).unwrap();
    world.faults().fail_next(FaultOp::EvtchnBind, 1, eio());
    assert!(be.bind_interdomain(5, fe_port).is_err());
    let be_port = be.bind_interdomain(5, fe_port).unwrap();
    world
        .faults()
        .fail_next(FaultOp::EvtchnNotify, 1, FaultError::ConnectionLost);
    let EvtchnError::Failed { op, port, .. } = fe.notify(fe_port).unwrap_err();
    assert_eq!((op, port), ("notify", Some(fe_port)));
    assert!(
        !wait_readable(be.fd(), NOW),
        "a failed notify delivers nothing"
    );
    fe.notify(fe_port).unwrap();
    assert_eq!(be.pending().unwrap(), Some(be_port));
}

#[test]
fn clear_drops_pending_faults() {
    let world = FakeXen::new();
    let store = world.domain(0).store();
    world.faults().fail_next(FaultOp::StoreRead, 5, eio());
    world.faults().fail_next(FaultOp::EvtchnNotify, 0, eio());
    assert_eq!(world.faults().pending(FaultOp::EvtchnNotify), 0);
    world.faults().clear();
    assert_eq!(world.faults().pending(FaultOp::StoreRead), 0);
    assert!(store.read("/").is_ok());
}
