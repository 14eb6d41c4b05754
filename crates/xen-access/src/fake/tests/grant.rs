use super::*;
use crate::fake::FIRST_GREF;
use crate::{GrantError, SharedMem};

const PAGE: usize = 4096;

fn reason(e: GrantError) -> String {
    let GrantError::Failed { reason, .. } = &e;
    reason.clone()
}

fn read_u32(mem: &SharedMem, off: usize) -> u32 {
    mem.load_u32(off).unwrap()
}

#[test]
fn shared_pages_are_zeroed_and_numbered_from_first_gref() {
    let world = FakeXen::new();
    world.domain(0);
    let fe = world.domain(5).grant_share();
    let a = fe.share(0, 3).unwrap();
    assert_eq!(a.grefs, vec![FIRST_GREF, FIRST_GREF + 1, FIRST_GREF + 2]);
    assert_eq!(a.mem.len(), 3 * PAGE);
    let mut buf = vec![0xffu8; 3 * PAGE];
    a.mem.read_bytes(0, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
    let b = fe.share(0, 1).unwrap();
    assert_eq!(b.grefs, vec![FIRST_GREF + 3]);
    // Refs are per granting domain.
    let other = world.domain(6).grant_share().share(0, 1).unwrap();
    assert_eq!(other.grefs, vec![FIRST_GREF]);
    assert_eq!(world.live_grants(5), 4);
    assert_eq!(world.live_grants(6), 1);
}

#[test]
fn grant_refs_and_ports_never_coincide() {
    let world = FakeXen::new();
    world.domain(0);
    let fe = world.domain(5);
    let g = fe.grant_share().share(0, 1).unwrap();
    let h = fe.event_channels().open().unwrap();
    let port = h.bind_unbound(0).unwrap();
    assert!(g.grefs.iter().all(|r| *r != port.0));
    // Mixing them up fails loudly on both sides.
    let be = world.domain(0);
    assert!(be.grant_map().map(5, &[port.0]).is_err());
    let be_h = be.event_channels().open().unwrap();
    let gref_as_port = crate::Port(g.grefs[0]);
    assert!(be_h.bind_interdomain(5, gref_as_port).is_err());
}

#[test]
fn the_mapping_is_the_same_memory() {
    let world = FakeXen::new();
    let be = world.domain(0);
    let fe = world.domain(5);
    let shared = fe.grant_share().share(0, 4).unwrap();
    let whole = be.grant_map().map(5, &shared.grefs).unwrap();
    assert_eq!(whole.len(), 4 * PAGE);
    shared.mem.store_u32(2 * PAGE + 8, 0xdead_beef).unwrap();
    assert_eq!(read_u32(&whole, 2 * PAGE + 8), 0xdead_beef);
    whole.write_bytes(PAGE - 2, b"abcd").unwrap();
    let mut out = [0u8; 4];
    shared.mem.read_bytes(PAGE - 2, &mut out).unwrap();
    assert_eq!(&out, b"abcd");
    // A single page, and a run of the middle pages, map at the right offsets.
    let page2 = be.grant_map().map(5, &shared.grefs[2..3]).unwrap();
    assert_eq!(page2.len(), PAGE);
    assert_eq!(read_u32(&page2, 8), 0xdead_beef);
    let mid = be.grant_map().map(5, &shared.grefs[1..3]).unwrap();
    assert_eq!(read_u32(&mid, PAGE + 8), 0xdead_beef);
    mid.store_u32(0, 7).unwrap();
    assert_eq!(read_u32(&shared.mem, PAGE), 7);
    assert_eq!(world.live_mappings(0), 3);
}

#[test]
fn refs_that_are_not_one_in_order_run_are_refused_by_the_fake() {
    let world = FakeXen::new();
    let be = world.domain(0).grant_map();
    let fe = world.domain(5).grant_share();
    let a = fe.share(0, 3).unwrap();
    let b = fe.share(0, 1).unwrap();
    let reversed = [a.grefs[1], a.grefs[0]];
    assert!(reason(be.map(5, &reversed).unwrap_err()).contains("fake limitation"));
    let across = [a.grefs[2], b.grefs[0]];
    assert!(reason(be.map(5, &across).unwrap_err()).contains("fake limitation"));
    assert!(reason(be.map(5, &[]).unwrap_err()).contains("EINVAL"));
    assert_eq!(
        world.live_mappings(0),
        0,
        "failed maps leave nothing mapped"
    );
}

#[test]
fn wrong_domain_and_unknown_refs_fail_with_errors_naming_them() {
    let world = FakeXen::new();
    world.domain(0);
    let fe = world.domain(5).grant_share();
    let g = fe.share(0, 1).unwrap();
    let intruder = world.domain(6).grant_map();
    let e = intruder.map(5, &g.grefs).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&g.grefs[0].to_string()) && msg.contains("not 6"),
        "{msg}"
    );
    assert!(msg.contains("map") && msg.contains("domain 5"), "{msg}");
    // Right ref, wrong granting domain.
    let be = world.domain(0).grant_map();
    assert!(reason(be.map(6, &g.grefs).unwrap_err()).contains("does not exist"));
    assert!(reason(be.map(5, &[FIRST_GREF + 77]).unwrap_err()).contains("does not exist"));
}

#[test]
fn sharing_ends_when_the_sharer_drops_and_nothing_maps() {
    let world = FakeXen::new();
    let be = world.domain(0).grant_map();
    let fe = world.domain(5).grant_share();
    let g = fe.share(0, 2).unwrap();
    let refs = g.grefs.clone();
    let clone = g.mem.clone();
    let mapped = be.map(5, &refs[..1]).unwrap();
    drop(g);
    assert_eq!(world.live_grants(5), 2, "a clone still holds the pages");
    drop(clone);
    // Page 0 is still mapped: its grant lives on; page 1 ended.
    assert_eq!(world.live_grants(5), 1);
    mapped.store_u32(0, 42).unwrap();
    assert_eq!(read_u32(&mapped, 0), 42, "the mapping stays valid");
    let e = be.map(5, &refs[..1]).unwrap_err();
    assert!(reason(e).contains("revoked"));
    assert!(reason(be.map(5, &refs[1..]).unwrap_err()).contains("revoked"));
    let sub = mapped.sub(0, 4).unwrap();
    drop(mapped);
    assert_eq!(world.live_grants(5), 1, "a sub-view keeps the mapping");
    drop(sub);
    assert_eq!(world.live_grants(5), 0);
    assert_eq!(world.live_mappings(0), 0);
}

#[test]
fn unmapping_first_then_dropping_ends_the_grants() {
    let world = FakeXen::new();
    let be = world.domain(0).grant_map();
    let fe = world.domain(5).grant_share();
    let g = fe.share(0, 2).unwrap();
    let m = be.map(5, &g.grefs).unwrap();
    drop(m);
    assert_eq!(world.live_mappings(0), 0);
    assert_eq!(world.live_grants(5), 2);
    drop(g);
    assert_eq!(world.live_grants(5), 0);
}

#[test]
fn the_grant_limit_gives_enospc() {
    let world = FakeXen::new();
    world.domain(0);
    let fe = world.domain(5).grant_share();
    world.set_grant_limit(4);
    let a = fe.share(0, 3).unwrap();
    let e = fe.share(0, 2).unwrap_err();
    assert!(reason(e).contains("ENOSPC"));
    let b = fe.share(0, 1).unwrap();
    drop((a, b));
    assert!(fe.share(0, 4).is_ok());
    assert!(reason(fe.share(0, 0).unwrap_err()).contains("EINVAL"));
}
