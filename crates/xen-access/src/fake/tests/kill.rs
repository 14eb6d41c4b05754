use super::*;
use crate::{EvtchnError, Port};

#[test]
fn killing_a_domain_breaks_its_store_connections_and_removes_its_nodes() {
    let world = vsnd_world();
    let guest = world.domain(5).store();
    let dom0 = world.domain(0).store();
    guest.write("device/vsnd/0/0/0/ring-ref", "1000").unwrap();
    guest.watch("data", "mine").unwrap();
    drain(&*guest);
    dom0.watch("@releaseDomain", "rel").unwrap();
    dom0.watch("/local/domain/5/device/vsnd/0", "fe").unwrap();
    drain(&*dom0);

    world.kill_domain(5);
    assert!(!world.is_alive(5));
    // The guest's connection is dead, and says so through its fd.
    assert!(wait_readable(guest.watch_fd(), LONG));
    assert_eq!(guest.take_watch_event(), None);
    let e = guest.read("data").unwrap_err();
    assert!(
        matches!(e, StoreError::Connection { op: "read", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("killed"), "{e}");
    assert!(guest.own_domid().is_err());
    assert!(guest.transaction(&mut |_| Ok(())).is_err());
    // dom0 hears @releaseDomain and the removal of the frontend directory (owned by 5).
    let got = drain(&*dom0);
    assert!(got.contains(&ev("@releaseDomain", "rel")), "{got:?}");
    assert!(
        got.contains(&ev("/local/domain/5/device/vsnd/0", "fe")),
        "{got:?}"
    );
    // Owned nodes are gone; dom0's nodes in the home stay.
    assert_eq!(world.read("/local/domain/5/device/vsnd/0/state"), None);
    assert_eq!(world.read("/local/domain/5/data"), None);
    assert_eq!(world.read("/local/domain/5/domid").as_deref(), Some("5"));
    assert_eq!(
        world
            .read("/local/domain/0/backend/vsnd/5/0/state")
            .as_deref(),
        Some("1")
    );
}

#[test]
fn killing_a_domain_closes_its_ports() {
    let world = FakeXen::new();
    let fe = world.domain(5).event_channels().open().unwrap();
    let be = world.domain(0).event_channels().open().unwrap();
    let fe_port = fe.bind_unbound(0).unwrap();
    let be_port = be.bind_interdomain(5, fe_port).unwrap();
    world.kill_domain(5);
    assert_eq!(world.bound_ports(5), 0);
    // The backend's end is unbound: its notifications vanish without error.
    be.notify(be_port).unwrap();
    // The dead domain's handle fails.
    let e: EvtchnError = fe.notify(fe_port).unwrap_err();
    assert!(e.to_string().contains("killed"), "{e}");
    assert!(fe.bind_unbound(0).is_err());
    assert!(fe.pending().is_err());
    // Nobody can bind to a dead domain.
    assert!(be.bind_interdomain(5, Port(fe_port.0)).is_err());
}

#[test]
fn a_killed_frontends_grants_end_once_the_backend_unmaps() {
    let world = FakeXen::new();
    let be = world.domain(0).grant_map();
    let fe = world.domain(5).grant_share();
    let g = fe.share(0, 2).unwrap();
    let m = be.map(5, &g.grefs[..1]).unwrap();
    world.kill_domain(5);
    assert_eq!(world.live_grants(5), 1, "the mapped page stays granted");
    assert!(
        be.map(5, &g.grefs[..1]).is_err(),
        "no new mappings of a dead domain's pages"
    );
    m.store_u32(0, 1).unwrap();
    drop(m);
    assert_eq!(world.live_grants(5), 0);
    drop(g); // the dead process's memory going away later is harmless
    assert_eq!(world.live_grants(5), 0);
    assert!(fe.share(0, 1).is_err(), "a dead domain cannot share");
}

#[test]
fn a_killed_backends_mappings_are_released() {
    let world = FakeXen::new();
    let be = world.domain(0).grant_map();
    let fe = world.domain(5).grant_share();
    let g = fe.share(0, 1).unwrap();
    let m = be.map(5, &g.grefs).unwrap();
    world.kill_domain(0);
    assert_eq!(world.live_mappings(0), 0);
    drop(g);
    assert_eq!(world.live_grants(5), 0, "nothing maps the page any more");
    drop(m);
    assert!(be.map(5, &[1000]).is_err());
}

#[test]
fn a_restarted_domain_works_but_old_services_stay_dead() {
    let world = FakeXen::new();
    let old = world.domain(5);
    let old_store = old.store();
    world.kill_domain(5);
    let new = world.domain(5);
    let store = new.store();
    store.write("data/x", "1").unwrap();
    assert!(old_store.read("data/x").is_err());
    assert!(
        old.store().read("data/x").is_err(),
        "new connections of the old incarnation"
    );
    assert!(old.event_channels().open().is_err());
    assert!(old.grant_share().share(0, 1).is_err());
    assert!(new.event_channels().open().is_ok());
    assert!(new.grant_share().share(0, 1).is_ok());
}
