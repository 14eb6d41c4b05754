use super::*;

#[test]
fn a_watch_fires_on_registration_and_the_fd_follows_the_queue() {
    let world = FakeXen::new();
    let store = world.domain(0).store();
    let fd = store.watch_fd();
    assert!(fd >= 0);
    assert!(!wait_readable(fd, NOW));
    store.watch("/w", "tok").unwrap();
    assert!(wait_readable(fd, LONG));
    assert_eq!(store.take_watch_event(), Some(ev("/w", "tok")));
    assert!(
        !wait_readable(fd, NOW),
        "queue drained, fd must not stay readable"
    );
    assert_eq!(store.take_watch_event(), None);
}

#[test]
fn watches_fire_for_the_node_and_descendants_only() {
    let world = FakeXen::new();
    let dom0 = world.domain(0);
    let watcher = dom0.store();
    let writer = dom0.store();
    watcher.watch("/a/b", "t").unwrap();
    drain(&*watcher);
    writer.write("/a/b", "1").unwrap();
    writer.write("/a/b", "1").unwrap(); // same value again: still an event
    writer.write("/a/b/c/d", "2").unwrap();
    writer.write("/a/bc", "3").unwrap(); // sibling with a common prefix: no event
    writer.write("/a", "4").unwrap(); // parent: no event
    writer.mkdir("/a/b/c").unwrap(); // exists already: no change, no event
    writer.set_perms("/a/b", &[perm(0, Access::Read)]).unwrap();
    assert!(wait_readable(watcher.watch_fd(), LONG));
    assert_eq!(
        drain(&*watcher),
        vec![
            ev("/a/b", "t"),
            ev("/a/b", "t"),
            ev("/a/b/c/d", "t"),
            ev("/a/b", "t")
        ]
    );
}

#[test]
fn removing_a_node_or_an_ancestor_fires_with_the_right_paths() {
    let world = FakeXen::new();
    let dom0 = world.domain(0);
    let watcher = dom0.store();
    let writer = dom0.store();
    writer.write("/a/b/c/d", "1").unwrap();
    watcher.watch("/a/b/c", "deep").unwrap();
    watcher.watch("/a/b/c/d/e", "never-existed").unwrap();
    watcher.watch("/a", "top").unwrap();
    drain(&*watcher);
    writer.rm("/a/b").unwrap();
    let mut got = drain(&*watcher);
    got.sort_by(|x, y| x.token.cmp(&y.token));
    assert_eq!(
        got,
        vec![
            ev("/a/b/c", "deep"), // a removed descendant reports its own path
            ev("/a/b", "top"),    // a watched ancestor hears the removed path
        ],
        "a watch on a node that never existed does not fire (as in cxenstored)"
    );
    writer.rm("/a/b").unwrap();
    assert_eq!(
        drain(&*watcher),
        vec![],
        "removing a missing node changes nothing"
    );
}

#[test]
fn relative_watches_report_relative_paths() {
    let world = FakeXen::new();
    let guest = world.domain(5).store();
    guest.watch("data/x", "rel").unwrap();
    guest.watch("/local/domain/5/data/x", "abs").unwrap();
    assert_eq!(
        drain(&*guest),
        vec![ev("data/x", "rel"), ev("/local/domain/5/data/x", "abs")]
    );
    guest.write("data/x/y", "1").unwrap();
    assert_eq!(
        drain(&*guest),
        vec![ev("data/x/y", "rel"), ev("/local/domain/5/data/x/y", "abs")]
    );
}

#[test]
fn events_are_filtered_like_xenstored_does() {
    let world = vsnd_world();
    let guest = world.domain(5).store();
    let state = "/local/domain/0/backend/vsnd/5/0/state";
    world.write_as(0, "/local/domain/0/secret/x", "s").unwrap();
    guest.watch(state, "be").unwrap();
    guest.watch("/local/domain/0/secret/x", "secret").unwrap();
    assert_eq!(drain(&*guest).len(), 2, "registration always fires");
    world.write_as(0, state, "2").unwrap();
    world.write_as(0, "/local/domain/0/secret/x", "t").unwrap();
    assert_eq!(
        drain(&*guest),
        vec![ev(state, "be")],
        "node nor parent readable: no event"
    );
    // Losing read access to the node is still heard (the old permissions count).
    world
        .set_perms_as(0, state, &[perm(0, Access::None)])
        .unwrap();
    assert_eq!(drain(&*guest), vec![ev(state, "be")]);
    // xenstored also lets through events for nodes whose parent the watcher can read.
    world.write_as(0, state, "3").unwrap();
    assert_eq!(drain(&*guest), vec![ev(state, "be")]);
    world
        .set_perms_as(
            0,
            "/local/domain/0/backend/vsnd/5/0",
            &[perm(0, Access::None)],
        )
        .unwrap();
    drain(&*guest);
    world.write_as(0, state, "4").unwrap();
    assert_eq!(
        drain(&*guest),
        vec![],
        "neither node nor parent readable any more"
    );
}

#[test]
fn unwatch_stops_events_and_purges_queued_ones() {
    let world = FakeXen::new();
    let store = world.domain(0).store();
    store.watch("/x", "a").unwrap();
    store.watch("/y", "b").unwrap();
    assert_eq!(errno(store.watch("/x", "a")), StoreErrno::Exist);
    store.write("/x", "1").unwrap();
    store.unwatch("/x", "a").unwrap();
    assert_eq!(
        drain(&*store),
        vec![ev("/y", "b")],
        "events of the removed watch are purged"
    );
    store.write("/x", "2").unwrap();
    assert_eq!(drain(&*store), vec![]);
    assert!(!wait_readable(store.watch_fd(), NOW));
    assert_eq!(errno(store.unwatch("/x", "a")), StoreErrno::NoEnt);
}

#[test]
fn connections_have_separate_queues_and_dropping_one_removes_its_watches() {
    let world = FakeXen::new();
    let dom0 = world.domain(0);
    let a = dom0.store();
    let b = dom0.store();
    a.watch("/n", "a").unwrap();
    b.watch("/n", "b").unwrap();
    assert_eq!(drain(&*a), vec![ev("/n", "a")]);
    assert_eq!(drain(&*b), vec![ev("/n", "b")]);
    drop(a);
    world.write_as(0, "/n", "1").unwrap();
    assert_eq!(drain(&*b), vec![ev("/n", "b")]);
}

#[test]
fn special_watches_fire_on_domain_start_and_death() {
    let world = FakeXen::new();
    let dom0 = world.domain(0).store();
    dom0.watch("@introduceDomain", "intro").unwrap();
    dom0.watch("@releaseDomain", "release").unwrap();
    drain(&*dom0);
    world.domain(3);
    world.domain(3); // already running: no event
    assert_eq!(drain(&*dom0), vec![ev("@introduceDomain", "intro")]);
    world.kill_domain(3);
    assert_eq!(drain(&*dom0), vec![ev("@releaseDomain", "release")]);
    // Guests may register, but only dom0 hears them (default special-node permissions).
    let guest = world.domain(4).store();
    guest.watch("@releaseDomain", "g").unwrap();
    assert_eq!(drain(&*guest), vec![ev("@releaseDomain", "g")]);
    drain(&*dom0); // domain 4 was introduced
    world.domain(6);
    world.kill_domain(6);
    assert_eq!(drain(&*guest), vec![]);
    assert_eq!(
        drain(&*dom0),
        vec![
            ev("@introduceDomain", "intro"),
            ev("@releaseDomain", "release")
        ]
    );
    assert_eq!(errno(dom0.watch("@bad name", "x")), StoreErrno::Invalid);
}

#[test]
fn a_watch_wakes_a_poller_in_another_thread() {
    let world = FakeXen::new();
    let dom0 = world.domain(0);
    let watcher = dom0.store();
    watcher.watch("/go", "go").unwrap();
    drain(&*watcher);
    let fd = watcher.watch_fd();
    let waiter = std::thread::spawn(move || wait_readable(fd, LONG));
    dom0.store().write("/go", "1").unwrap();
    assert!(waiter.join().unwrap());
    assert_eq!(drain(&*watcher), vec![ev("/go", "go")]);
}
