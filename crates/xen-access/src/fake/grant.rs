//! Fake grant tables: [`FakeGrantShare`] (the granting side) and [`FakeGrantMap`] (the mapping
//! side).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Weak};

use sndif::layout::XEN_PAGE_SIZE;
use sndif::shm::{HeapRegion, MappedRegion};

use super::faults::FaultOp;
use super::world::FakeXen;
use crate::{DomId, GrantError, GrantMap, GrantRef, GrantShare, GrantedPages, SharedMem};

/// The first grant reference a domain hands out; later ones count up and are never reused.
pub const FIRST_GREF: GrantRef = 1000;

/// How many pages a domain may have granted at once by default (gntalloc's default `limit`).
pub const DEFAULT_GRANT_LIMIT: usize = 1024;

#[derive(Debug)]
struct GrantEntry {
    grantee: DomId,
    share: u64,
    /// Page index within the share.
    page: usize,
    /// Live mappings of this page.
    maps: usize,
}

#[derive(Debug)]
struct DomGrants {
    next_ref: GrantRef,
    refs: BTreeMap<GrantRef, GrantEntry>,
    /// Refs whose grant has ended (for error messages).
    ended: BTreeSet<GrantRef>,
}

impl Default for DomGrants {
    fn default() -> DomGrants {
        DomGrants {
            next_ref: FIRST_GREF,
            refs: BTreeMap::new(),
            ended: BTreeSet::new(),
        }
    }
}

#[derive(Debug)]
struct ShareRec {
    granter: DomId,
    region: Arc<HeapRegion>,
    refs: Vec<GrantRef>,
    /// The granting side still holds its memory (some clone of the [`GrantedPages`] lives and
    /// the domain was not killed).
    sharer_holds: bool,
}

#[derive(Debug)]
struct MapRec {
    grantee: DomId,
    granter: DomId,
    refs: Vec<GrantRef>,
}

/// Every domain's grants and every mapping.
#[derive(Debug)]
pub(crate) struct GrantTable {
    doms: HashMap<DomId, DomGrants>,
    shares: HashMap<u64, ShareRec>,
    maps: HashMap<u64, MapRec>,
    next_id: u64,
    limit: usize,
}

/// A successful map: the region, and the run of pages in it.
pub(crate) struct MapGrant {
    id: u64,
    region: Arc<HeapRegion>,
    first_page: usize,
    pages: usize,
}

impl GrantTable {
    pub(crate) fn new() -> GrantTable {
        GrantTable {
            doms: HashMap::new(),
            shares: HashMap::new(),
            maps: HashMap::new(),
            next_id: 1,
            limit: DEFAULT_GRANT_LIMIT,
        }
    }

    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub(crate) fn live_grants(&self, domid: DomId) -> usize {
        self.doms.get(&domid).map_or(0, |d| d.refs.len())
    }

    pub(crate) fn live_mappings(&self, grantee: DomId) -> usize {
        self.maps.values().filter(|m| m.grantee == grantee).count()
    }

    fn share(
        &mut self,
        granter: DomId,
        grantee: DomId,
        pages: usize,
    ) -> Result<(u64, Vec<GrantRef>, Arc<HeapRegion>), String> {
        if pages == 0 {
            return Err("EINVAL: zero pages requested".to_owned());
        }
        let live = self.live_grants(granter);
        if live.saturating_add(pages) > self.limit {
            return Err(format!(
                "ENOSPC: {live} pages already granted, limit is {}",
                self.limit
            ));
        }
        let dom = self.doms.entry(granter).or_default();
        let first = dom.next_ref;
        let count = GrantRef::try_from(pages).map_err(|_| "EINVAL: too many pages".to_owned())?;
        let next = first
            .checked_add(count)
            .ok_or_else(|| "ENOSPC: grant references exhausted".to_owned())?;
        let region = Arc::new(HeapRegion::new(pages).map_err(|e| format!("ENOMEM: {e}"))?);
        let id = self.next_id;
        self.next_id += 1;
        dom.next_ref = next;
        let refs: Vec<GrantRef> = (first..next).collect();
        for (page, r) in refs.iter().enumerate() {
            dom.refs.insert(
                *r,
                GrantEntry {
                    grantee,
                    share: id,
                    page,
                    maps: 0,
                },
            );
        }
        self.shares.insert(
            id,
            ShareRec {
                granter,
                region: Arc::clone(&region),
                refs: refs.clone(),
                sharer_holds: true,
            },
        );
        Ok((id, refs, region))
    }

    /// Ends the grants of a share that are no longer held by the sharer nor mapped.
    fn end_unmapped(&mut self, share: u64) {
        let Some(rec) = self.shares.get(&share) else {
            return;
        };
        if rec.sharer_holds {
            return;
        }
        let Some(dom) = self.doms.get_mut(&rec.granter) else {
            return;
        };
        for r in &rec.refs {
            if dom.refs.get(r).is_some_and(|e| e.maps == 0) {
                dom.refs.remove(r);
                dom.ended.insert(*r);
            }
        }
        if rec.refs.iter().all(|r| !dom.refs.contains_key(r)) {
            self.shares.remove(&share);
        }
    }

    fn sharer_dropped(&mut self, share: u64) {
        if let Some(rec) = self.shares.get_mut(&share) {
            rec.sharer_holds = false;
        }
        self.end_unmapped(share);
    }

    fn map(
        &mut self,
        grantee: DomId,
        granter: DomId,
        refs: &[GrantRef],
    ) -> Result<MapGrant, String> {
        let Some((&first_ref, rest)) = refs.split_first() else {
            return Err("EINVAL: no grant references given".to_owned());
        };
        let dom = self.doms.get(&granter);
        let lookup = |r: GrantRef| -> Result<&GrantEntry, String> {
            match dom.and_then(|d| d.refs.get(&r)) {
                Some(e) if e.grantee != grantee => Err(format!(
                    "EPERM: grant ref {r} of domain {granter} is granted to domain {}, not {grantee}",
                    e.grantee
                )),
                Some(e) => Ok(e),
                None if dom.is_some_and(|d| d.ended.contains(&r)) => Err(format!(
                    "EINVAL: grant ref {r} of domain {granter} was revoked"
                )),
                None => Err(format!(
                    "EINVAL: grant ref {r} of domain {granter} does not exist"
                )),
            }
        };
        let first = lookup(first_ref)?;
        for (i, &r) in rest.iter().enumerate() {
            let e = lookup(r)?;
            if e.share != first.share || e.page != first.page + i + 1 {
                return Err(format!(
                    "fake limitation: grant refs {refs:?} are not one in-order run of pages shared \
                     by a single share() call, so they cannot be mapped contiguously here"
                ));
            }
        }
        let share = first.share;
        let first_page = first.page;
        let rec = self.shares.get(&share).ok_or_else(|| {
            format!("EINVAL: grant ref {first_ref} of domain {granter} was revoked")
        })?;
        if !rec.sharer_holds {
            return Err(format!(
                "EINVAL: grant ref {first_ref} of domain {granter} was revoked (the granting side released it)"
            ));
        }
        let region = Arc::clone(&rec.region);
        if let Some(d) = self.doms.get_mut(&granter) {
            for r in refs {
                if let Some(e) = d.refs.get_mut(r) {
                    e.maps += 1;
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.maps.insert(
            id,
            MapRec {
                grantee,
                granter,
                refs: refs.to_vec(),
            },
        );
        Ok(MapGrant {
            id,
            region,
            first_page,
            pages: refs.len(),
        })
    }

    fn unmap(&mut self, map: u64) {
        let Some(rec) = self.maps.remove(&map) else {
            return;
        };
        let mut shares = BTreeSet::new();
        if let Some(d) = self.doms.get_mut(&rec.granter) {
            for r in &rec.refs {
                if let Some(e) = d.refs.get_mut(r) {
                    e.maps = e.maps.saturating_sub(1);
                    shares.insert(e.share);
                }
            }
        }
        for s in shares {
            self.end_unmapped(s);
        }
    }

    /// A killed domain's shares end once unmapped; its own mappings are released.
    pub(crate) fn kill(&mut self, domid: DomId) {
        let own_maps: Vec<u64> = self
            .maps
            .iter()
            .filter(|(_, m)| m.grantee == domid)
            .map(|(id, _)| *id)
            .collect();
        for id in own_maps {
            self.unmap(id);
        }
        let shares: Vec<u64> = self
            .shares
            .iter()
            .filter(|(_, s)| s.granter == domid)
            .map(|(id, _)| *id)
            .collect();
        for id in shares {
            self.sharer_dropped(id);
        }
    }
}

/// The granting side's view of shared pages; dropping it (the last clone of the
/// [`SharedMem`]) ends the sharing once nobody maps the pages.
#[derive(Debug)]
struct SharerRegion {
    region: Arc<HeapRegion>,
    world: Weak<FakeXen>,
    share: u64,
}

// SAFETY: delegates to the `HeapRegion`, which this object keeps alive; pointer and length never
// change and the allocation is page aligned.
unsafe impl MappedRegion for SharerRegion {
    fn as_ptr(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    fn len(&self) -> usize {
        self.region.len()
    }
}

impl Drop for SharerRegion {
    fn drop(&mut self) {
        if let Some(world) = self.world.upgrade() {
            world.grants().sharer_dropped(self.share);
        }
    }
}

/// The mapping side's view; dropping it (the last clone of the [`SharedMem`]) unmaps.
#[derive(Debug)]
struct MapperRegion {
    region: Arc<HeapRegion>,
    world: Weak<FakeXen>,
    map: u64,
}

// SAFETY: delegates to the `HeapRegion`, which this object keeps alive; pointer and length never
// change and the allocation is page aligned.
unsafe impl MappedRegion for MapperRegion {
    fn as_ptr(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    fn len(&self) -> usize {
        self.region.len()
    }
}

impl Drop for MapperRegion {
    fn drop(&mut self) {
        if let Some(world) = self.world.upgrade() {
            world.grants().unmap(self.map);
        }
    }
}

/// Shares pages of one domain (from [`super::FakeDomain::grant_share`]).
///
/// Like gntalloc: each `share` allocates fresh zeroed pages and grants them read-write to one
/// domain; refs count up from [`FIRST_GREF`] per granting domain. The grants end when every clone
/// of the returned memory is dropped *and* no mapping of them is left (see
/// [`FakeXen::live_grants`]); after that, mapping them fails with "revoked". A domain may have at
/// most [`DEFAULT_GRANT_LIMIT`] pages granted at once (see [`FakeXen::set_grant_limit`]),
/// beyond that `share` fails with ENOSPC.
pub struct FakeGrantShare {
    pub(crate) world: Arc<FakeXen>,
    pub(crate) domid: DomId,
    pub(crate) incarnation: u64,
}

impl fmt::Debug for FakeGrantShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGrantShare")
            .field("domid", &self.domid)
            .finish()
    }
}

impl GrantShare for FakeGrantShare {
    fn share(&self, domid: DomId, pages: usize) -> Result<GrantedPages, GrantError> {
        let fail = |reason: String| GrantError::Failed {
            op: "share",
            domid,
            count: pages,
            reason,
        };
        let doms = self.world.domains();
        if !doms.is_current(self.domid, self.incarnation) {
            return Err(fail(format!("domain {} is not running", self.domid)));
        }
        if let Some(e) = self.world.faults().take(self.domid, FaultOp::GrantShare) {
            return Err(fail(e.to_string()));
        }
        let (share, grefs, region) = self
            .world
            .grants()
            .share(self.domid, domid, pages)
            .map_err(fail)?;
        drop(doms);
        let mem = SharedMem::new(Arc::new(SharerRegion {
            region,
            world: Arc::downgrade(&self.world),
            share,
        }));
        Ok(GrantedPages { grefs, mem })
    }
}

/// Maps other domains' grants into one domain (from [`super::FakeDomain::grant_map`]).
///
/// The mapping is the very memory the granter shares (no copy). A ref that does not exist, was
/// revoked, or is granted to another domain fails with a [`GrantError`] naming it.
/// **Limitation:** the refs of one `map` call must be one in-order run of pages from a single
/// `share` call (any single page qualifies), because the fake cannot place separate allocations
/// side by side; other combinations fail with a "fake limitation" error.
pub struct FakeGrantMap {
    pub(crate) world: Arc<FakeXen>,
    pub(crate) domid: DomId,
    pub(crate) incarnation: u64,
}

impl fmt::Debug for FakeGrantMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGrantMap")
            .field("domid", &self.domid)
            .finish()
    }
}

impl GrantMap for FakeGrantMap {
    fn map(&self, domid: DomId, refs: &[GrantRef]) -> Result<SharedMem, GrantError> {
        let fail = |reason: String| GrantError::Failed {
            op: "map",
            domid,
            count: refs.len(),
            reason,
        };
        let doms = self.world.domains();
        if !doms.is_current(self.domid, self.incarnation) {
            return Err(fail(format!("domain {} is not running", self.domid)));
        }
        if let Some(e) = self.world.faults().take(self.domid, FaultOp::GrantMap) {
            return Err(fail(e.to_string()));
        }
        let grant = self
            .world
            .grants()
            .map(self.domid, domid, refs)
            .map_err(fail)?;
        drop(doms);
        let whole = SharedMem::new(Arc::new(MapperRegion {
            region: grant.region,
            world: Arc::downgrade(&self.world),
            map: grant.id,
        }));
        let offset = grant.first_page.saturating_mul(XEN_PAGE_SIZE);
        let len = grant.pages.saturating_mul(XEN_PAGE_SIZE);
        whole
            .sub(offset, len)
            .ok_or_else(|| fail(format!("internal: pages {offset}+{len} outside the share")))
    }
}
