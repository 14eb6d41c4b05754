//! Tests of the fakes, through the public traits wherever possible.

mod evtchn;
mod faults;
mod grant;
mod kill;
mod store;
mod toolstack;
mod transaction;
mod watch;

use std::time::Duration;

use super::{wait_readable, FakeXen};
use crate::{Access, DomId, Perm, StoreErrno, StoreError, WatchEvent, XenStore};

/// Events are queued synchronously, so a zero timeout is enough to see "not readable"; a long
/// one only bounds a wait that should succeed at once.
const NOW: Duration = Duration::from_millis(0);
const LONG: Duration = Duration::from_secs(5);

fn perm(domid: DomId, access: Access) -> Perm {
    Perm { domid, access }
}

fn errno(r: Result<impl std::fmt::Debug, StoreError>) -> StoreErrno {
    match r {
        Err(StoreError::Xs { errno, .. }) => errno,
        other => panic!("expected an xenstore error, got {other:?}"),
    }
}

fn ev(path: &str, token: &str) -> WatchEvent {
    WatchEvent {
        path: path.to_owned(),
        token: token.to_owned(),
    }
}

/// Takes every queued watch event.
fn drain(store: &dyn XenStore) -> Vec<WatchEvent> {
    std::iter::from_fn(|| store.take_watch_event()).collect()
}

/// A world with dom0 and a guest (domid 5) and the libxl-style vsnd frontend and backend
/// directories (frontend owned by 5 and readable by 0; backend owned by 0 and readable by 5).
fn vsnd_world() -> std::sync::Arc<FakeXen> {
    let world = FakeXen::new();
    world.domain(0);
    world.domain(5);
    let fe = "/local/domain/5/device/vsnd/0";
    let be = "/local/domain/0/backend/vsnd/5/0";
    world.write_as(0, &format!("{fe}/state"), "1").unwrap();
    world
        .set_perms_as(0, fe, &[perm(5, Access::None), perm(0, Access::Read)])
        .unwrap();
    world
        .set_perms_as(
            0,
            &format!("{fe}/state"),
            &[perm(5, Access::None), perm(0, Access::Read)],
        )
        .unwrap();
    world.write_as(0, &format!("{be}/state"), "1").unwrap();
    world
        .set_perms_as(0, be, &[perm(0, Access::None), perm(5, Access::Read)])
        .unwrap();
    world
        .set_perms_as(
            0,
            &format!("{be}/state"),
            &[perm(0, Access::None), perm(5, Access::Read)],
        )
        .unwrap();
    world
}

#[test]
fn wait_readable_times_out_on_a_quiet_fd() {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    use std::os::fd::AsRawFd;
    assert!(!wait_readable(a.as_raw_fd(), Duration::from_millis(10)));
    assert!(!wait_readable(-1, NOW));
}
