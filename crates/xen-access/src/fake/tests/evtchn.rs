use super::*;
use crate::fake::FIRST_PORT;
use crate::{EvtchnError, EvtchnHandle, Port};

fn reason(e: EvtchnError) -> String {
    let EvtchnError::Failed { reason, .. } = &e;
    reason.clone()
}

/// A frontend (5) and backend (0) handle connected by one channel: (fe, fe_port, be, be_port).
fn pair(world: &FakeXen) -> (Box<dyn EvtchnHandle>, Port, Box<dyn EvtchnHandle>, Port) {
    let fe = world.domain(5).event_channels().open().unwrap();
    let be = world.domain(0).event_channels().open().unwrap();
    let fe_port = fe.bind_unbound(0).unwrap();
    let be_port = be.bind_interdomain(5, fe_port).unwrap();
    (fe, fe_port, be, be_port)
}

#[test]
fn notify_makes_the_peer_readable_and_pending_returns_its_port() {
    let world = FakeXen::new();
    let (fe, fe_port, be, be_port) = pair(&world);
    assert_eq!(fe_port, Port(FIRST_PORT));
    assert_eq!(be_port, Port(FIRST_PORT), "ports are per domain");
    assert!(!wait_readable(be.fd(), NOW));
    fe.notify(fe_port).unwrap();
    assert!(wait_readable(be.fd(), LONG));
    assert!(!wait_readable(fe.fd(), NOW), "the sender is not signalled");
    assert_eq!(be.pending().unwrap(), Some(be_port));
    assert!(!wait_readable(be.fd(), NOW));
    assert_eq!(be.pending().unwrap(), None);
    // And the other way round.
    be.unmask(be_port).unwrap();
    be.notify(be_port).unwrap();
    assert!(wait_readable(fe.fd(), LONG));
    assert_eq!(fe.pending().unwrap(), Some(fe_port));
}

#[test]
fn a_fired_port_stays_masked_and_notifications_meanwhile_count_as_one() {
    let world = FakeXen::new();
    let (fe, fe_port, be, be_port) = pair(&world);
    fe.notify(fe_port).unwrap();
    fe.notify(fe_port).unwrap(); // still queued: merged
    assert_eq!(be.pending().unwrap(), Some(be_port));
    assert_eq!(be.pending().unwrap(), None);
    fe.notify(fe_port).unwrap();
    fe.notify(fe_port).unwrap();
    fe.notify(fe_port).unwrap();
    assert!(!wait_readable(be.fd(), NOW), "masked: nothing delivered");
    be.unmask(be_port).unwrap();
    assert!(
        wait_readable(be.fd(), LONG),
        "the remembered notification arrives at unmask"
    );
    assert_eq!(be.pending().unwrap(), Some(be_port));
    assert_eq!(
        be.pending().unwrap(),
        None,
        "three notifications, one delivery"
    );
    be.unmask(be_port).unwrap();
    assert!(!wait_readable(be.fd(), NOW));
    be.unmask(be_port).unwrap(); // unmasking an unmasked port is harmless
    fe.notify(fe_port).unwrap();
    assert_eq!(be.pending().unwrap(), Some(be_port));
}

#[test]
fn several_ports_on_one_handle_fire_independently() {
    let world = FakeXen::new();
    let fe = world.domain(5).event_channels().open().unwrap();
    let be = world.domain(0).event_channels().open().unwrap();
    let f1 = fe.bind_unbound(0).unwrap();
    let f2 = fe.bind_unbound(0).unwrap();
    assert_eq!(f2, Port(FIRST_PORT + 1));
    let b1 = be.bind_interdomain(5, f1).unwrap();
    let b2 = be.bind_interdomain(5, f2).unwrap();
    fe.notify(f2).unwrap();
    fe.notify(f1).unwrap();
    assert_eq!(be.pending().unwrap(), Some(b2));
    assert_eq!(be.pending().unwrap(), Some(b1));
    assert_eq!(be.pending().unwrap(), None);
}

#[test]
fn notifications_on_an_unbound_port_are_dropped() {
    let world = FakeXen::new();
    let fe = world.domain(5).event_channels().open().unwrap();
    let be = world.domain(0).event_channels().open().unwrap();
    let fe_port = fe.bind_unbound(0).unwrap();
    fe.notify(fe_port).unwrap(); // nobody bound yet: silently dropped, like Xen
    let be_port = be.bind_interdomain(5, fe_port).unwrap();
    assert!(!wait_readable(be.fd(), NOW));
    assert_eq!(be.pending().unwrap(), None);
    fe.notify(fe_port).unwrap();
    assert_eq!(be.pending().unwrap(), Some(be_port));
}

#[test]
fn binding_rules() {
    let world = FakeXen::new();
    let fe = world.domain(5).event_channels().open().unwrap();
    let be = world.domain(0).event_channels().open().unwrap();
    let other = world.domain(6).event_channels().open().unwrap();
    let offered = fe.bind_unbound(0).unwrap();
    let e = other.bind_interdomain(5, offered).unwrap_err();
    assert!(reason(e).contains("not an unbound port offered to domain 6"));
    let e = be.bind_interdomain(5, Port(999)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("bind_interdomain") && msg.contains("999"),
        "{msg}"
    );
    let e = be.bind_interdomain(9, Port(FIRST_PORT)).unwrap_err();
    assert!(reason(e).contains("ESRCH"));
    be.bind_interdomain(5, offered).unwrap();
    let e = other.bind_interdomain(5, offered).unwrap_err();
    assert!(reason(e).contains("EINVAL"), "already connected");
    // Loopback within one domain works as on Xen.
    let l1 = fe.bind_unbound(5).unwrap();
    let l2 = fe.bind_interdomain(5, l1).unwrap();
    fe.notify(l2).unwrap();
    assert_eq!(fe.pending().unwrap(), Some(l1));
}

#[test]
fn ports_of_other_handles_are_einval() {
    let world = FakeXen::new();
    let (fe, fe_port, be, be_port) = pair(&world);
    let fe2 = world.domain(5).event_channels().open().unwrap();
    for e in [
        fe2.notify(fe_port).unwrap_err(),
        fe2.unmask(fe_port).unwrap_err(),
        fe2.unbind(fe_port).unwrap_err(),
        be.notify(Port(FIRST_PORT + 5)).unwrap_err(),
    ] {
        assert!(reason(e).contains("not bound by this handle"));
    }
    drop((fe, be_port));
}

#[test]
fn closing_a_handle_unbinds_and_the_peer_port_becomes_unbound() {
    let world = FakeXen::new();
    let (fe, fe_port, be, be_port) = pair(&world);
    assert_eq!(world.bound_ports(5), 1);
    fe.notify(fe_port).unwrap();
    drop(be);
    assert_eq!(world.bound_ports(0), 0);
    // The frontend's notifications now go nowhere, without an error (as on Xen).
    fe.notify(fe_port).unwrap();
    // The frontend's port is unbound again: the backend domain may bind it anew.
    let be2 = world.domain(0).event_channels().open().unwrap();
    let again = be2.bind_interdomain(5, fe_port).unwrap();
    assert_eq!(again, be_port, "lowest free port is reused");
    assert!(!wait_readable(be2.fd(), NOW), "nothing stale arrives");
    fe.notify(fe_port).unwrap();
    assert_eq!(be2.pending().unwrap(), Some(again));
}

#[test]
fn unbind_closes_one_port_and_drops_its_queued_delivery() {
    let world = FakeXen::new();
    let (fe, fe_port, be, be_port) = pair(&world);
    fe.notify(fe_port).unwrap();
    assert!(wait_readable(be.fd(), LONG));
    be.unbind(be_port).unwrap();
    assert!(
        !wait_readable(be.fd(), NOW),
        "the closed port's event is gone"
    );
    assert_eq!(be.pending().unwrap(), None);
    assert!(be.notify(be_port).is_err());
    fe.notify(fe_port).unwrap();
    assert_eq!(world.bound_ports(0), 0);
}

#[test]
fn notify_from_another_thread_wakes_a_poller() {
    let world = FakeXen::new();
    let (fe, fe_port, be, be_port) = pair(&world);
    let fd = be.fd();
    let waiter = std::thread::spawn(move || wait_readable(fd, LONG));
    let sender = std::thread::spawn(move || {
        fe.notify(fe_port).unwrap();
        fe
    });
    assert!(waiter.join().unwrap());
    let _fe = sender.join().unwrap();
    assert_eq!(be.pending().unwrap(), Some(be_port));
}

#[test]
fn held_notifications_arrive_at_release() {
    let world = FakeXen::new();
    let (fe, fe_port, be, be_port) = pair(&world);
    world.hold_notifications(0);
    fe.notify(fe_port).unwrap();
    fe.notify(fe_port).unwrap();
    assert!(!wait_readable(be.fd(), NOW));
    // The other direction is not held.
    be.notify(be_port).unwrap();
    assert_eq!(fe.pending().unwrap(), Some(fe_port));
    world.release_notifications(0);
    assert!(wait_readable(be.fd(), LONG));
    assert_eq!(be.pending().unwrap(), Some(be_port));
    assert_eq!(be.pending().unwrap(), None);
}
