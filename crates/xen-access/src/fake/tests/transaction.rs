use super::*;
use crate::fake::TRANSACTION_ATTEMPTS;

#[test]
fn a_transaction_commits_atomically_and_fires_watches_at_commit() {
    let world = vsnd_world();
    let guest = world.domain(5).store();
    let dom0 = world.domain(0).store();
    let fe = "/local/domain/5/device/vsnd/0";
    dom0.watch(fe, "fe").unwrap();
    drain(&*dom0);
    guest
        .transaction(&mut |t| {
            t.write("device/vsnd/0/0/0/ring-ref", "1000")?;
            t.write("device/vsnd/0/0/0/event-channel", "10")?;
            // The transaction sees its own writes, nobody else does yet.
            assert_eq!(
                t.read("device/vsnd/0/0/0/ring-ref")?.as_deref(),
                Some("1000")
            );
            assert_eq!(world.read(&format!("{fe}/0/0/ring-ref")), None);
            assert_eq!(dom0.take_watch_event(), None);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        world.read(&format!("{fe}/0/0/ring-ref")).as_deref(),
        Some("1000")
    );
    assert_eq!(
        world.read(&format!("{fe}/0/0/event-channel")).as_deref(),
        Some("10")
    );
    assert_eq!(
        drain(&*dom0),
        vec![
            ev(&format!("{fe}/0/0/ring-ref"), "fe"),
            ev(&format!("{fe}/0/0/event-channel"), "fe")
        ]
    );
}

#[test]
fn a_failing_closure_changes_nothing() {
    let world = FakeXen::new();
    let store = world.domain(0).store();
    let r = store.transaction(&mut |t| {
        t.write("/t/a", "1")?;
        t.write("/t//bad", "2")?;
        Ok(())
    });
    assert_eq!(errno(r), StoreErrno::Invalid);
    assert_eq!(world.read("/t/a"), None);
}

#[test]
fn a_conflicting_change_makes_the_commit_fail_with_eagain_and_the_retry_succeed() {
    let world = FakeXen::new();
    let dom0 = world.domain(0);
    let store = dom0.store();
    let other = dom0.store();
    store.write("/counter", "0").unwrap();
    let mut runs = 0;
    store
        .transaction(&mut |t| {
            runs += 1;
            let n: u32 = t
                .read("/counter")?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if runs == 1 {
                // Someone else increments meanwhile: this attempt must not commit.
                other.write("/counter", "10")?;
            }
            t.write("/counter", &(n + 1).to_string())
        })
        .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(world.read("/counter").as_deref(), Some("11"));
}

#[test]
fn changes_to_nodes_the_transaction_did_not_touch_do_not_conflict() {
    let world = FakeXen::new();
    let dom0 = world.domain(0);
    let store = dom0.store();
    let other = dom0.store();
    store.write("/a/x", "0").unwrap();
    store.write("/b/y", "0").unwrap();
    let mut runs = 0;
    store
        .transaction(&mut |t| {
            runs += 1;
            t.read("/a/x")?;
            other.write("/b/y", "1")?;
            t.write("/a/x", "1")
        })
        .unwrap();
    assert_eq!(runs, 1);
}

#[test]
fn creating_a_sibling_conflicts_with_a_directory_listing() {
    let world = FakeXen::new();
    let dom0 = world.domain(0);
    let store = dom0.store();
    let other = dom0.store();
    store.mkdir("/dir").unwrap();
    let mut runs = 0;
    let mut seen = Vec::new();
    store
        .transaction(&mut |t| {
            runs += 1;
            seen = t.directory("/dir")?;
            if runs == 1 {
                other.write("/dir/new", "1")?;
            }
            t.write("/count", &seen.len().to_string())
        })
        .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(seen, vec!["new".to_owned()]);
    assert_eq!(world.read("/count").as_deref(), Some("1"));
}

#[test]
fn persistent_conflicts_give_up_with_eagain() {
    let world = FakeXen::new();
    let dom0 = world.domain(0);
    let store = dom0.store();
    let other = dom0.store();
    let mut runs = 0u32;
    let r = store.transaction(&mut |t| {
        runs += 1;
        t.read("/hot")?;
        other.write("/hot", &runs.to_string())?;
        t.write("/cold", "x")
    });
    let e = r.unwrap_err();
    assert!(e.is_again(), "{e}");
    assert_eq!(runs, TRANSACTION_ATTEMPTS);
    assert_eq!(world.read("/cold"), None);
}

#[test]
fn transactions_enforce_permissions() {
    let world = vsnd_world();
    let guest = world.domain(5).store();
    let r = guest.transaction(&mut |t| t.write("/local/domain/0/backend/vsnd/5/0/state", "4"));
    assert_eq!(errno(r), StoreErrno::Access);
    let r = guest.transaction(&mut |t| t.read("/local/domain/0/x").map(drop));
    assert_eq!(errno(r), StoreErrno::Access);
}
