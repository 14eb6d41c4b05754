use super::*;

#[test]
fn relative_paths_resolve_below_the_home_and_own_domid_is_the_identity() {
    let world = FakeXen::new();
    let guest = world.domain(7);
    let store = guest.store();
    assert_eq!(store.own_domid().unwrap(), 7);
    store.write("data/a/b", "x").unwrap();
    assert_eq!(world.read("/local/domain/7/data/a/b").as_deref(), Some("x"));
    assert_eq!(
        store.read("/local/domain/7/data/a/b").unwrap().as_deref(),
        Some("x")
    );
    assert_eq!(store.read("domid").unwrap().as_deref(), Some("7"));
    // mkdir -p: the intermediate node exists with an empty value.
    assert_eq!(store.read("data/a").unwrap().as_deref(), Some(""));
    assert_eq!(store.directory("data").unwrap(), vec!["a".to_owned()]);
}

#[test]
fn new_domains_get_a_libxl_like_home() {
    let world = FakeXen::new();
    world.domain(3);
    let home = "/local/domain/3";
    assert_eq!(
        world.perms(home).unwrap(),
        vec![perm(0, Access::None), perm(3, Access::Read)]
    );
    assert_eq!(
        world.perms(&format!("{home}/data")).unwrap(),
        vec![perm(3, Access::None)]
    );
    let dump = world.dump(home);
    let paths: Vec<&str> = dump.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            home,
            "/local/domain/3/data",
            "/local/domain/3/device",
            "/local/domain/3/domid"
        ]
    );
    assert_eq!(dump.get(3).map(|(_, v)| v.as_str()), Some("3"));
    // The prefix matches whole path components only.
    world.domain(30);
    assert!(world
        .dump(home)
        .iter()
        .all(|(p, _)| !p.starts_with("/local/domain/30")));
}

#[test]
fn guests_cannot_write_outside_what_they_own() {
    let world = vsnd_world();
    let guest = world.domain(5).store();
    assert_eq!(
        errno(guest.write("x", "1")),
        StoreErrno::Access,
        "home is dom0's"
    );
    assert_eq!(
        errno(guest.write("device/vbd/0/x", "1")),
        StoreErrno::Access
    );
    assert_eq!(
        errno(guest.write("/local/domain/0/x", "1")),
        StoreErrno::Access
    );
    // Its own frontend directory is writable, the backend's only readable.
    guest.write("device/vsnd/0/state", "3").unwrap();
    assert_eq!(
        guest
            .read("/local/domain/0/backend/vsnd/5/0/state")
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        errno(guest.write("/local/domain/0/backend/vsnd/5/0/state", "6")),
        StoreErrno::Access
    );
    assert_eq!(
        errno(guest.rm("/local/domain/0/backend/vsnd/5/0")),
        StoreErrno::Access
    );
    // Another guest sees neither.
    let other = world.domain(6).store();
    assert_eq!(
        errno(other.read("/local/domain/5/device/vsnd/0/state")),
        StoreErrno::Access
    );
    assert_eq!(
        errno(other.directory("/local/domain/0/backend/vsnd/5")),
        StoreErrno::Access
    );
    // dom0 may do anything.
    let dom0 = world.domain(0).store();
    dom0.write("/local/domain/5/device/vsnd/0/state", "4")
        .unwrap();
    dom0.rm("/local/domain/5/data").unwrap();
}

#[test]
fn permission_lists_follow_xenstored_rules() {
    let world = FakeXen::new();
    for d in [0, 1, 2, 3] {
        world.domain(d);
    }
    let p = "/shared/node";
    world.write_as(0, p, "v").unwrap();
    // Owner 1; 2 may read; everyone else (first entry) may write only.
    world
        .set_perms_as(0, p, &[perm(1, Access::Write), perm(2, Access::Read)])
        .unwrap();
    let s1 = world.domain(1).store();
    let s2 = world.domain(2).store();
    let s3 = world.domain(3).store();
    assert_eq!(s1.read(p).unwrap().as_deref(), Some("v"), "owner reads");
    s1.write(p, "w1").unwrap();
    assert_eq!(s2.read(p).unwrap().as_deref(), Some("w1"));
    assert_eq!(
        errno(s2.write(p, "x")),
        StoreErrno::Access,
        "listed read-only"
    );
    assert_eq!(
        errno(s3.read(p)),
        StoreErrno::Access,
        "unlisted: first entry's w"
    );
    s3.write(p, "w3").unwrap();
    assert_eq!(errno(s3.get_perms(p)), StoreErrno::Access);
    assert_eq!(
        s2.get_perms(p).unwrap(),
        vec![perm(1, Access::Write), perm(2, Access::Read)]
    );
}

#[test]
fn missing_nodes_read_as_none_only_where_the_parent_is_readable() {
    let world = vsnd_world();
    let guest = world.domain(5).store();
    assert_eq!(guest.read("data/nope").unwrap(), None);
    assert_eq!(guest.directory("data/nope").unwrap(), Vec::<String>::new());
    guest.rm("data/nope").unwrap();
    // Below an unreadable node, a missing node is EACCES (xenstored hides what it hides).
    assert_eq!(
        errno(guest.read("/local/domain/0/nope")),
        StoreErrno::Access
    );
    assert_eq!(
        errno(guest.directory("/local/domain/0/nope")),
        StoreErrno::Access
    );
    assert_eq!(errno(guest.get_perms("data/nope")), StoreErrno::NoEnt);
    // rm of a missing node needs write access where it would be (xenstored's rule).
    let be = "/local/domain/0/backend/vsnd/5/0";
    assert_eq!(guest.read(&format!("{be}/nope")).unwrap(), None);
    assert_eq!(errno(guest.rm(&format!("{be}/nope"))), StoreErrno::Access);
}

#[test]
fn new_nodes_inherit_permissions_and_guests_own_what_they_create() {
    let world = vsnd_world();
    let guest = world.domain(5).store();
    guest.write("device/vsnd/0/0/0/ring-ref", "1000").unwrap();
    let fe = [perm(5, Access::None), perm(0, Access::Read)];
    assert_eq!(guest.get_perms("device/vsnd/0/0/0/ring-ref").unwrap(), fe);
    assert_eq!(world.perms("/local/domain/5/device/vsnd/0/0").unwrap(), fe);
    // Created by a guest below a dom0-owned node: the guest becomes the owner.
    world.write_as(0, "/pub", "").unwrap();
    world
        .set_perms_as(0, "/pub", &[perm(0, Access::Both)])
        .unwrap();
    guest.write("/pub/mine", "1").unwrap();
    assert_eq!(
        world.perms("/pub/mine").unwrap(),
        vec![perm(5, Access::Both)]
    );
    // Created by dom0 below a guest-owned node: dom0 keeps the inherited owner (xenstored).
    world.write_as(0, "/local/domain/5/data/by0", "1").unwrap();
    assert_eq!(
        world.perms("/local/domain/5/data/by0").unwrap(),
        vec![perm(5, Access::None)]
    );
}

#[test]
fn set_perms_rules() {
    let world = vsnd_world();
    let guest = world.domain(5).store();
    guest.write("data/n", "1").unwrap();
    let mine = [
        perm(5, Access::None),
        perm(0, Access::Read),
        perm(9, Access::Read),
    ];
    guest.set_perms("data/n", &mine).unwrap();
    assert_eq!(world.perms("/local/domain/5/data/n").unwrap(), mine);
    assert_eq!(
        errno(guest.set_perms("data/n", &[perm(9, Access::None)])),
        StoreErrno::Other("EPERM".into()),
        "a guest cannot give its node away"
    );
    assert_eq!(errno(guest.set_perms("data/n", &[])), StoreErrno::Invalid);
    assert_eq!(
        errno(guest.set_perms("/local/domain/0/backend/vsnd/5/0", &[perm(5, Access::Both)])),
        StoreErrno::Access
    );
    world
        .set_perms_as(0, "/local/domain/5/data/n", &[perm(9, Access::None)])
        .unwrap();
    assert_eq!(
        errno(guest.read("data/n")),
        StoreErrno::Access,
        "dom0 gave it away"
    );
}

#[test]
fn rm_removes_subtrees_and_mkdir_is_idempotent() {
    let world = FakeXen::new();
    let store = world.domain(0).store();
    store.write("/a/b/c", "1").unwrap();
    store.write("/a/b/d", "2").unwrap();
    store.write("/a/bb", "3").unwrap();
    store.rm("/a/b").unwrap();
    assert_eq!(
        world.dump("/a"),
        vec![("/a".into(), "".into()), ("/a/bb".into(), "3".into())]
    );
    store.rm("/a/b").unwrap();
    store.mkdir("/a/bb").unwrap();
    assert_eq!(
        world.read("/a/bb").as_deref(),
        Some("3"),
        "mkdir keeps the value"
    );
    store.mkdir("/m/n").unwrap();
    assert_eq!(world.read("/m/n").as_deref(), Some(""));
    assert_eq!(errno(store.rm("/")), StoreErrno::Invalid);
}

#[test]
fn invalid_paths_are_einval_and_name_the_path() {
    let world = FakeXen::new();
    let store = world.domain(4).store();
    for bad in [
        "",
        "a//b",
        "data/",
        "/x/",
        "data/a b",
        "data/\u{e9}",
        "@releaseDomain",
    ] {
        let e = store.write(bad, "1").unwrap_err();
        assert_eq!(e.errno(), Some(&StoreErrno::Invalid), "{bad:?}");
        assert!(e.to_string().contains("write"), "{e}");
    }
    let e = world
        .domain(0)
        .store()
        .read("/local/domain/4/data//x")
        .unwrap_err();
    assert!(e.to_string().contains("/local/domain/4/data//x"), "{e}");
}

#[test]
fn values_over_the_payload_limit_are_rejected() {
    let world = FakeXen::new();
    let store = world.domain(0).store();
    let big = "x".repeat(4097);
    assert_eq!(
        errno(store.write("/big", &big)),
        StoreErrno::Other("E2BIG".into())
    );
    store.write("/big", &big[..4096]).unwrap();
}
