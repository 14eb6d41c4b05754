//! The fake xenstore against the real one: the same scenario runs on [`FakeXen`] and on Debian's
//! C xenstored 4.17 (through `xenstored-harness` and [`RealStore`]), and both must give the same
//! results, so the fake's permission, watch, transaction and domain-death rules are xenstored's.
//!
//! Needs `scripts/fetch-xen-tools` to have been run once (the harness says so if not).

use std::fmt::Debug;
use std::sync::Arc;

use xen_access::fake::FakeXen;
use xen_access::real::RealStore;
use xen_access::{Access, Perm, StoreError, WatchEvent, XenStore};
use xenstored_harness::Xenstored;

const FE: &str = "/local/domain/5/device/vsnd/0";
const BE: &str = "/local/domain/0/backend/vsnd/5/0";

fn perm(domid: u16, access: Access) -> Perm {
    Perm { domid, access }
}

/// One side of the comparison: dom0 and guest 5 connections plus a way to kill guest 5.
struct World {
    dom0: Arc<dyn XenStore>,
    guest: Arc<dyn XenStore>,
    kill_guest: Box<dyn FnOnce()>,
}

#[derive(Default)]
struct Log(Vec<String>);

impl Log {
    fn note<T: Debug>(&mut self, what: &str, r: Result<T, StoreError>) {
        let outcome = match r {
            Ok(v) => format!("ok {v:?}"),
            Err(e) => match e.errno() {
                Some(errno) => format!("err {errno}"),
                None => "err connection".to_owned(),
            },
        };
        self.0.push(format!("{what}: {outcome}"));
    }

    /// Every event queued on `store`, deduplicated and sorted (xenstored may report a removed
    /// watched node twice). A read first makes sure events caused by earlier requests on any
    /// connection have arrived: xenstored queues them before it answers later requests.
    fn events(&mut self, what: &str, store: &dyn XenStore) {
        let _ = store.read("/");
        let mut evs: Vec<WatchEvent> = std::iter::from_fn(|| store.take_watch_event()).collect();
        evs.sort_by(|a, b| (&a.path, &a.token).cmp(&(&b.path, &b.token)));
        evs.dedup();
        let evs: Vec<String> = evs
            .iter()
            .map(|e| format!("{}|{}", e.path, e.token))
            .collect();
        self.0.push(format!("{what}: events {evs:?}"));
    }
}

fn scenario(w: World) -> Vec<String> {
    let World {
        dom0,
        guest,
        kill_guest,
    } = w;
    let mut log = Log::default();
    let fe_perms = [perm(5, Access::None), perm(0, Access::Read)];
    let be_perms = [perm(0, Access::None), perm(5, Access::Read)];

    // The toolstack's part, as libxl does it.
    log.note(
        "dom0 write fe state",
        dom0.write(&format!("{FE}/state"), "1"),
    );
    log.note("dom0 chmod fe", dom0.set_perms(FE, &fe_perms));
    log.note(
        "dom0 chmod fe state",
        dom0.set_perms(&format!("{FE}/state"), &fe_perms),
    );
    log.note(
        "dom0 write be state",
        dom0.write(&format!("{BE}/state"), "1"),
    );
    log.note("dom0 chmod be", dom0.set_perms(BE, &be_perms));
    log.note(
        "dom0 chmod be state",
        dom0.set_perms(&format!("{BE}/state"), &be_perms),
    );
    log.note("dom0 perms of home", dom0.get_perms("/local/domain/5"));
    log.note(
        "dom0 perms of device",
        dom0.get_perms("/local/domain/5/device"),
    );
    log.note("dom0 perms of data", dom0.get_perms("/local/domain/5/data"));

    // Permissions as the guest sees them.
    log.note("guest read own state", guest.read("device/vsnd/0/state"));
    log.note(
        "guest write own state",
        guest.write("device/vsnd/0/state", "2"),
    );
    log.note("guest read be state", guest.read(&format!("{BE}/state")));
    log.note(
        "guest write be state",
        guest.write(&format!("{BE}/state"), "6"),
    );
    log.note(
        "guest read missing in be",
        guest.read(&format!("{BE}/nope")),
    );
    log.note("guest rm missing in be", guest.rm(&format!("{BE}/nope")));
    log.note("guest rm be", guest.rm(BE));
    log.note(
        "guest read missing in dom0 home",
        guest.read("/local/domain/0/nope"),
    );
    log.note(
        "guest dir missing in dom0 home",
        guest.directory("/local/domain/0/nope"),
    );
    log.note("guest write home", guest.write("x", "1"));
    log.note("guest write device", guest.write("device/vbd/0/x", "1"));
    log.note("guest write data", guest.write("data/a/b", "1"));
    log.note("guest read data dir", guest.read("data/a"));
    log.note("guest dir data", guest.directory("data"));
    log.note("guest dir missing", guest.directory("data/nope"));
    log.note("guest rm missing", guest.rm("data/nope"));
    log.note("guest perms data/a/b", guest.get_perms("data/a/b"));
    log.note("guest perms missing", guest.get_perms("data/nope"));
    log.note(
        "guest new ring-ref",
        guest.write("device/vsnd/0/0/0/ring-ref", "1000"),
    );
    log.note(
        "guest perms ring-ref",
        guest.get_perms("device/vsnd/0/0/0/ring-ref"),
    );
    log.note("guest perms 0/0", guest.get_perms("device/vsnd/0/0"));
    log.note(
        "guest gives node away",
        guest.set_perms("data/a/b", &[perm(0, Access::None)]),
    );
    log.note(
        "guest shares own node",
        guest.set_perms("data/a/b", &[perm(5, Access::None), perm(0, Access::Read)]),
    );
    log.note("guest mkdir existing", guest.mkdir("data/a"));
    log.note("guest mkdir new", guest.mkdir("data/m/n"));
    log.note("guest read mkdir'd", guest.read("data/m/n"));
    log.note(
        "dom0 write into guest data",
        dom0.write("/local/domain/5/data/by0", "1"),
    );
    log.note(
        "dom0 perms of that",
        dom0.get_perms("/local/domain/5/data/by0"),
    );
    log.note("invalid path", guest.write("data//x", "1"));
    log.note("trailing slash", guest.write("data/x/", "1"));

    // Watches.
    log.note(
        "guest watch be state",
        guest.watch(&format!("{BE}/state"), "be"),
    );
    log.note("guest watch own dev", guest.watch("device/vsnd/0", "dev"));
    log.note(
        "guest watch secret",
        guest.watch("/local/domain/0/secret", "secret"),
    );
    log.note("dom0 watch fe", dom0.watch(FE, "fe"));
    log.note("dom0 watch release", dom0.watch("@releaseDomain", "rel"));
    log.note("guest watch dup", guest.watch("device/vsnd/0", "dev"));
    log.events("guest after registering", &*guest);
    log.events("dom0 after registering", &*dom0);
    log.note(
        "dom0 write be state",
        dom0.write(&format!("{BE}/state"), "2"),
    );
    log.note(
        "dom0 write secret",
        dom0.write("/local/domain/0/secret", "s"),
    );
    log.note(
        "guest write own deep",
        guest.write("device/vsnd/0/0/0/event-channel", "10"),
    );
    log.events("guest after writes", &*guest);
    log.events("dom0 after writes", &*dom0);
    log.note("dom0 rm be", dom0.rm(BE));
    log.events("guest after rm be", &*guest);
    log.note("guest unwatch", guest.unwatch("device/vsnd/0", "dev"));
    log.note("guest unwatch again", guest.unwatch("device/vsnd/0", "dev"));
    log.note(
        "guest write after unwatch",
        guest.write("device/vsnd/0/state", "3"),
    );
    log.events("guest after unwatch", &*guest);
    log.events("dom0 sees guest writes", &*dom0);

    // Transactions: a conflicting write makes the first attempt fail.
    let mut runs = 0;
    let other = Arc::clone(&dom0);
    let r = guest.transaction(&mut |t| {
        runs += 1;
        let v = t.read("device/vsnd/0/state")?;
        if runs == 1 {
            other.write(&format!("{FE}/state"), "4")?;
        }
        t.write("device/vsnd/0/seen", v.as_deref().unwrap_or("-"))?;
        t.write("device/vsnd/0/state", "5")
    });
    log.note("transaction", r);
    log.0.push(format!("transaction attempts: {runs}"));
    log.note("after transaction seen", dom0.read(&format!("{FE}/seen")));
    log.note("after transaction state", dom0.read(&format!("{FE}/state")));
    log.events("dom0 after transaction", &*dom0);
    let r = guest.transaction(&mut |t| t.write(&format!("{BE}/x"), "1"));
    log.note("transaction without permission", r);

    // Domain death.
    kill_guest();
    log.note("guest read after death", guest.read("data"));
    log.events("dom0 after death", &*dom0);
    log.note("dead guest's fe state", dom0.read(&format!("{FE}/state")));
    log.note("dead guest's fe dir", dom0.read(FE));
    log.note("dead guest's data", dom0.read("/local/domain/5/data"));
    log.note(
        "dead guest's domid node",
        dom0.read("/local/domain/5/domid"),
    );
    log.note(
        "dead guest's device node",
        dom0.read("/local/domain/5/device"),
    );
    log.0
}

fn fake_world() -> World {
    let world = FakeXen::new();
    let dom0 = world.domain(0).store();
    let guest = world.domain(5).store();
    World {
        dom0,
        guest,
        kill_guest: Box::new(move || world.kill_domain(5)),
    }
}

#[test]
fn the_fake_store_behaves_like_cxenstored() {
    let xsd = match Xenstored::start() {
        Ok(x) => Arc::new(x),
        Err(e) => panic!("{e}"),
    };
    let bridge = xsd.guest(5).unwrap();
    let real = World {
        dom0: Arc::new(RealStore::from_xs(xsd.client().unwrap())),
        guest: Arc::new(RealStore::from_xs(bridge.client().unwrap())),
        kill_guest: {
            let xsd = Arc::clone(&xsd);
            Box::new(move || xsd.kill_domain(5).unwrap())
        },
    };
    let real_log = scenario(real);
    let fake_log = scenario(fake_world());
    let mut diffs = Vec::new();
    for (i, (r, f)) in real_log.iter().zip(&fake_log).enumerate() {
        if r != f {
            diffs.push(format!("step {i}:\n  xenstored: {r}\n  fake:      {f}"));
        }
    }
    assert_eq!(real_log.len(), fake_log.len());
    assert!(
        diffs.is_empty(),
        "the fake differs from xenstored:\n{}\n\nfull xenstored log:\n{}",
        diffs.join("\n"),
        real_log.join("\n")
    );
    drop(bridge);
}
