//! The request/response ring of one stream (`DEFINE_RING_TYPES(xen_sndif, ...)` of `ring.h`).
//!
//! [`FrontRing`] is the frontend's end (pushes requests, takes responses), [`BackRing`] the
//! backend's. Both keep their private indices in the struct and touch the shared page only
//! through [`SharedMem`]: index words atomically, slots by copying all 64 bytes out (or in) before
//! decoding (`RING_COPY_RESPONSE`). Indices are free-running `u32`s; the slot of index `i` is
//! `i & (RING_SIZE - 1)` and a response reuses the slot of its request.
//!
//! Notification hold-off follows `ring.h`: a producer publishes its index, issues a full fence
//! and notifies only if the peer's event threshold lies inside the newly published range; a
//! consumer that has drained the ring re-arms the threshold ([`FrontRing::rearm`],
//! [`BackRing::rearm`]) and must check again afterwards. A consumer that forgets to re-arm
//! receives exactly one notification (sndif.md pitfall 4).

use core::sync::atomic::Ordering;

use crate::layout::{
    MSG_SIZE, RING_BYTES, RING_REQ_EVENT, RING_REQ_PROD, RING_RSP_EVENT, RING_RSP_PROD, RING_SIZE,
    RING_SLOTS, RING_SLOT_SIZE,
};
use crate::shm::{fence, SharedMem, ShmError};
use crate::wire::{Msg, Request, Response, WireError};

/// Errors of the ring ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The shared memory view is smaller than a ring.
    #[error("ring page too small: {len} bytes, need {need}")]
    TooSmall {
        /// View length.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// All `RING_SIZE` slots hold requests that have not been answered yet.
    #[error("request ring full: {in_flight} requests in flight")]
    Full {
        /// Requests pushed but not yet answered.
        in_flight: u32,
    },
    /// The backend claims more responses than there are requests outstanding.
    #[error(
        "backend published rsp_prod {rsp_prod} with rsp_cons {rsp_cons}: more responses than the \
         {outstanding} outstanding requests"
    )]
    ResponseOverflow {
        /// The shared `rsp_prod` read.
        rsp_prod: u32,
        /// The frontend's consumer index.
        rsp_cons: u32,
        /// Published requests not yet answered.
        outstanding: u32,
    },
    /// The frontend claims more requests than the ring can hold.
    #[error(
        "frontend published req_prod {req_prod} with {unanswered_base} answered: more than \
         {RING_SIZE} requests pending"
    )]
    RequestOverflow {
        /// The shared `req_prod` read.
        req_prod: u32,
        /// The backend's private response producer index.
        unanswered_base: u32,
    },
    /// `push_response` without a consumed, unanswered request.
    #[error("no unanswered request to respond to ({answered} of {consumed} already answered)")]
    NoRequestToAnswer {
        /// Responses pushed so far (private index).
        answered: u32,
        /// Requests consumed so far (private index).
        consumed: u32,
    },
    /// A slot did not decode. The index has advanced past it; the error carries the message id
    /// (and, for requests, the operation byte) so the peer can still be answered.
    #[error("ring slot of index {index}: {source}")]
    Malformed {
        /// Free-running index of the slot.
        index: u32,
        /// What was wrong.
        source: WireError,
    },
    /// A shared-memory access failed (cannot happen on a view that passed the size check).
    #[error(transparent)]
    Shm(#[from] ShmError),
}

fn check_size(mem: &SharedMem) -> Result<(), RingError> {
    if mem.len() < RING_BYTES {
        return Err(RingError::TooSmall {
            len: mem.len(),
            need: RING_BYTES,
        });
    }
    Ok(())
}

/// Byte offset of the slot for free-running index `idx`.
fn slot_offset(idx: u32) -> usize {
    // `idx & (RING_SIZE - 1)` < 32, so the product is tiny; `usize::try_from` cannot fail for it,
    // the fallback only exists to avoid a cast.
    let slot = usize::try_from(idx & (RING_SIZE - 1)).unwrap_or(0);
    RING_SLOTS + slot * RING_SLOT_SIZE
}

fn read_slot(mem: &SharedMem, idx: u32) -> Result<Msg, ShmError> {
    let mut b = [0u8; MSG_SIZE];
    mem.read_bytes(slot_offset(idx), &mut b)?;
    Ok(b)
}

/// `(new - event) < (new - old)` in ring arithmetic: did the published range `old..new` cross the
/// peer's event threshold?
fn crossed(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// The frontend end of a request/response ring.
#[derive(Debug)]
pub struct FrontRing {
    mem: SharedMem,
    /// Requests written (`req_prod_pvt`).
    req_prod_pvt: u32,
    /// Requests published to the shared `req_prod`.
    req_published: u32,
    /// Responses consumed (`rsp_cons`).
    rsp_cons: u32,
    /// Last validated shared `rsp_prod`.
    rsp_prod_seen: u32,
}

impl FrontRing {
    /// Initialise the shared page (`XEN_FRONT_RING_INIT`): the page is zeroed, `req_event` and
    /// `rsp_event` are set to 1, all private indices start at 0.
    pub fn init(mem: SharedMem) -> Result<Self, RingError> {
        check_size(&mem)?;
        mem.fill(0, mem.len(), 0)?;
        mem.store_u32(RING_REQ_EVENT, 1)?;
        mem.store_u32(RING_RSP_EVENT, 1)?;
        Ok(FrontRing {
            mem,
            req_prod_pvt: 0,
            req_published: 0,
            rsp_cons: 0,
            rsp_prod_seen: 0,
        })
    }

    /// The shared page.
    pub fn mem(&self) -> &SharedMem {
        &self.mem
    }

    /// Requests pushed (published or not) whose responses have not been taken yet.
    pub fn in_flight(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Slots free for new requests.
    pub fn free_requests(&self) -> u32 {
        RING_SIZE.saturating_sub(self.in_flight())
    }

    /// Requests pushed but not yet published.
    pub fn unpublished(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.req_published)
    }

    /// Private request producer index (`req_prod_pvt`).
    pub fn req_prod_pvt(&self) -> u32 {
        self.req_prod_pvt
    }

    /// Private response consumer index (`rsp_cons`).
    pub fn rsp_cons(&self) -> u32 {
        self.rsp_cons
    }

    /// Write `req` into the next slot. It becomes visible to the backend at [`Self::publish`].
    pub fn push_request(&mut self, req: &Request) -> Result<(), RingError> {
        if self.free_requests() == 0 {
            return Err(RingError::Full {
                in_flight: self.in_flight(),
            });
        }
        self.mem
            .write_bytes(slot_offset(self.req_prod_pvt), &req.encode())?;
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publish pushed requests (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`). Returns whether the
    /// backend must be notified through the event channel.
    pub fn publish(&mut self) -> Result<bool, RingError> {
        let old = self.req_published;
        let new = self.req_prod_pvt;
        if old == new {
            return Ok(false);
        }
        // Release store: the slot contents are visible before the index.
        self.mem.store_u32(RING_REQ_PROD, new)?;
        self.req_published = new;
        // The index is visible before we read the backend's threshold (`mb()`).
        fence(Ordering::SeqCst);
        let event = self.mem.load_u32(RING_REQ_EVENT)?;
        Ok(crossed(old, new, event))
    }

    /// Read and validate the shared `rsp_prod`.
    fn refresh_rsp_prod(&mut self) -> Result<u32, RingError> {
        let rsp_prod = self.mem.load_u32(RING_RSP_PROD)?;
        let outstanding = self.req_published.wrapping_sub(self.rsp_cons);
        if rsp_prod.wrapping_sub(self.rsp_cons) > outstanding {
            return Err(RingError::ResponseOverflow {
                rsp_prod,
                rsp_cons: self.rsp_cons,
                outstanding,
            });
        }
        self.rsp_prod_seen = rsp_prod;
        Ok(rsp_prod)
    }

    /// Take the next response, if the backend has published one. `rsp_prod` is read once per
    /// batch (when the previously seen responses are used up) and validated; the slot is copied
    /// out before it is decoded. A slot that does not decode is consumed and reported as
    /// [`RingError::Malformed`].
    pub fn take_response(&mut self) -> Result<Option<Response>, RingError> {
        if self.rsp_cons == self.rsp_prod_seen && self.refresh_rsp_prod()? == self.rsp_cons {
            return Ok(None);
        }
        let index = self.rsp_cons;
        let bytes = read_slot(&self.mem, index)?;
        self.rsp_cons = index.wrapping_add(1);
        Response::decode(&bytes)
            .map(Some)
            .map_err(|source| RingError::Malformed { index, source })
    }

    /// Re-arm the response notification (`RING_FINAL_CHECK_FOR_RESPONSES`): sets `rsp_event =
    /// rsp_cons + 1` and returns whether responses arrived meanwhile (then take them and call
    /// this again before sleeping).
    pub fn rearm(&mut self) -> Result<bool, RingError> {
        if self.rsp_cons != self.rsp_prod_seen {
            return Ok(true);
        }
        self.mem
            .store_u32(RING_RSP_EVENT, self.rsp_cons.wrapping_add(1))?;
        fence(Ordering::SeqCst);
        let rsp_prod = self.mem.load_u32(RING_RSP_PROD)?;
        Ok(rsp_prod != self.rsp_cons)
    }
}

/// The backend end of a request/response ring.
#[derive(Debug)]
pub struct BackRing {
    mem: SharedMem,
    /// Requests consumed (`req_cons`).
    req_cons: u32,
    /// Last validated shared `req_prod`.
    req_prod_seen: u32,
    /// Responses written (`rsp_prod_pvt`).
    rsp_prod_pvt: u32,
    /// Responses published to the shared `rsp_prod`.
    rsp_published: u32,
}

impl BackRing {
    /// Attach to a ring the frontend initialised (`BACK_RING_INIT`; the page is not touched).
    pub fn attach(mem: SharedMem) -> Result<Self, RingError> {
        check_size(&mem)?;
        Ok(BackRing {
            mem,
            req_cons: 0,
            req_prod_seen: 0,
            rsp_prod_pvt: 0,
            rsp_published: 0,
        })
    }

    /// The shared page.
    pub fn mem(&self) -> &SharedMem {
        &self.mem
    }

    /// Requests consumed but not answered yet.
    pub fn unanswered(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Read and validate the shared `req_prod` (`RING_REQUEST_PROD_OVERFLOW`).
    fn refresh_req_prod(&mut self) -> Result<u32, RingError> {
        let req_prod = self.mem.load_u32(RING_REQ_PROD)?;
        let pending = req_prod.wrapping_sub(self.req_cons);
        if req_prod.wrapping_sub(self.rsp_prod_pvt) > RING_SIZE || pending > RING_SIZE {
            return Err(RingError::RequestOverflow {
                req_prod,
                unanswered_base: self.rsp_prod_pvt,
            });
        }
        self.req_prod_seen = req_prod;
        Ok(req_prod)
    }

    /// Take the next request, if any. A slot that does not decode is consumed and reported as
    /// [`RingError::Malformed`] (with its id): answer it with an error status.
    pub fn take_request(&mut self) -> Result<Option<Request>, RingError> {
        if self.req_cons == self.req_prod_seen && self.refresh_req_prod()? == self.req_cons {
            return Ok(None);
        }
        let index = self.req_cons;
        let bytes = read_slot(&self.mem, index)?;
        self.req_cons = index.wrapping_add(1);
        Request::decode(&bytes)
            .map(Some)
            .map_err(|source| RingError::Malformed { index, source })
    }

    /// Write a response into the slot of the oldest unanswered request. It becomes visible at
    /// [`Self::publish_responses`].
    pub fn push_response(&mut self, rsp: &Response) -> Result<(), RingError> {
        self.push_response_bytes(&rsp.encode())
    }

    /// Like [`Self::push_response`] with pre-encoded bytes (e.g. [`Response::encode_raw`]).
    pub fn push_response_bytes(&mut self, bytes: &Msg) -> Result<(), RingError> {
        if self.unanswered() == 0 {
            return Err(RingError::NoRequestToAnswer {
                answered: self.rsp_prod_pvt,
                consumed: self.req_cons,
            });
        }
        self.mem
            .write_bytes(slot_offset(self.rsp_prod_pvt), bytes)?;
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publish pushed responses (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`). Returns whether the
    /// frontend must be notified.
    pub fn publish_responses(&mut self) -> Result<bool, RingError> {
        let old = self.rsp_published;
        let new = self.rsp_prod_pvt;
        if old == new {
            return Ok(false);
        }
        self.mem.store_u32(RING_RSP_PROD, new)?;
        self.rsp_published = new;
        fence(Ordering::SeqCst);
        let event = self.mem.load_u32(RING_RSP_EVENT)?;
        Ok(crossed(old, new, event))
    }

    /// Re-arm the request notification (`RING_FINAL_CHECK_FOR_REQUESTS`): sets `req_event =
    /// req_cons + 1` and returns whether requests arrived meanwhile.
    pub fn rearm(&mut self) -> Result<bool, RingError> {
        if self.req_cons != self.req_prod_seen {
            return Ok(true);
        }
        self.mem
            .store_u32(RING_REQ_EVENT, self.req_cons.wrapping_add(1))?;
        fence(Ordering::SeqCst);
        let req_prod = self.mem.load_u32(RING_REQ_PROD)?;
        Ok(req_prod != self.req_cons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::PcmFormat;
    use crate::wire::{OpenParams, Operation, RequestBody, RwParams, TriggerType};

    fn pair() -> (FrontRing, BackRing) {
        let mem = SharedMem::heap_pages(1).expect("page");
        let front = FrontRing::init(mem.clone()).expect("init");
        let back = BackRing::attach(mem).expect("attach");
        (front, back)
    }

    fn write(id: u16) -> Request {
        Request {
            id,
            body: RequestBody::Write(RwParams {
                offset: u32::from(id),
                length: 4,
            }),
        }
    }

    /// Set both sides' private indices and the shared indices to `start`, as if `start`
    /// request/response pairs had already gone through.
    fn pair_at(start: u32) -> (FrontRing, BackRing) {
        let (mut f, mut b) = pair();
        f.req_prod_pvt = start;
        f.req_published = start;
        f.rsp_cons = start;
        f.rsp_prod_seen = start;
        b.req_cons = start;
        b.req_prod_seen = start;
        b.rsp_prod_pvt = start;
        b.rsp_published = start;
        let m = f.mem().clone();
        m.store_u32(RING_REQ_PROD, start).expect("store");
        m.store_u32(RING_RSP_PROD, start).expect("store");
        m.store_u32(RING_REQ_EVENT, start.wrapping_add(1))
            .expect("store");
        m.store_u32(RING_RSP_EVENT, start.wrapping_add(1))
            .expect("store");
        (f, b)
    }

    #[test]
    fn init_sets_header_like_xen_front_ring_init() {
        let mem = SharedMem::heap_pages(1).expect("page");
        mem.fill(0, mem.len(), 0xab).expect("dirty");
        let f = FrontRing::init(mem.clone()).expect("init");
        assert_eq!(mem.load_u32(RING_REQ_PROD), Ok(0));
        assert_eq!(mem.load_u32(RING_REQ_EVENT), Ok(1));
        assert_eq!(mem.load_u32(RING_RSP_PROD), Ok(0));
        assert_eq!(mem.load_u32(RING_RSP_EVENT), Ok(1));
        let mut pad = [0xffu8; 48];
        mem.read_bytes(16, &mut pad).expect("read");
        assert!(pad.iter().all(|b| *b == 0));
        assert_eq!(f.free_requests(), RING_SIZE);
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn too_small_page_is_rejected() {
        let mem = SharedMem::heap_pages(1).expect("page");
        let small = mem.sub(0, RING_BYTES - 1).expect("sub");
        assert_eq!(
            FrontRing::init(small.clone()).err(),
            Some(RingError::TooSmall {
                len: RING_BYTES - 1,
                need: RING_BYTES
            })
        );
        assert!(BackRing::attach(small).is_err());
        assert!(FrontRing::init(mem.sub(0, RING_BYTES).expect("sub")).is_ok());
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let (mut f, mut b) = pair();
        let open = Request {
            id: 1,
            body: RequestBody::Open(OpenParams {
                rate: 48000,
                format: PcmFormat::S16Le,
                channels: 2,
                buffer_sz: 16384,
                gref_directory: 77,
                period_sz: 4096,
            }),
        };
        let trig = Request {
            id: 2,
            body: RequestBody::Trigger(TriggerType::Start),
        };
        f.push_request(&open).expect("push");
        f.push_request(&trig).expect("push");
        assert_eq!(f.unpublished(), 2);
        // Not visible before publish.
        assert_eq!(b.take_request(), Ok(None));
        assert_eq!(
            f.publish(),
            Ok(true),
            "first publish notifies (req_event = 1)"
        );
        assert_eq!(f.unpublished(), 0);
        assert_eq!(b.take_request(), Ok(Some(open)));
        assert_eq!(b.take_request(), Ok(Some(trig)));
        assert_eq!(b.take_request(), Ok(None));
        assert_eq!(b.unanswered(), 2);

        b.push_response(&Response::ok(1, Operation::Open))
            .expect("rsp");
        b.push_response(&Response::error(2, Operation::Trigger, -22))
            .expect("rsp");
        assert_eq!(f.take_response(), Ok(None), "not published yet");
        assert_eq!(b.publish_responses(), Ok(true));
        assert_eq!(
            f.take_response(),
            Ok(Some(Response::ok(1, Operation::Open)))
        );
        assert_eq!(
            f.take_response(),
            Ok(Some(Response::error(2, Operation::Trigger, -22)))
        );
        assert_eq!(f.take_response(), Ok(None));
        assert_eq!(f.in_flight(), 0);
        assert_eq!(f.rearm(), Ok(false));
        assert_eq!(
            b.push_response(&Response::ok(3, Operation::Close)),
            Err(RingError::NoRequestToAnswer {
                answered: 2,
                consumed: 2
            })
        );
    }

    #[test]
    fn full_ring_rejects_the_33rd_request() {
        let (mut f, mut b) = pair();
        for id in 0..32 {
            f.push_request(&write(id)).expect("push");
        }
        assert_eq!(f.free_requests(), 0);
        assert_eq!(
            f.push_request(&write(32)),
            Err(RingError::Full { in_flight: 32 })
        );
        f.publish().expect("publish");
        // Consuming requests does not free slots; only responses do.
        for id in 0..32 {
            assert_eq!(b.take_request(), Ok(Some(write(id))));
        }
        assert!(f.push_request(&write(32)).is_err());
        b.push_response(&Response::ok(0, Operation::Write))
            .expect("rsp");
        b.publish_responses().expect("publish");
        assert_eq!(f.take_response().map(|r| r.map(|r| r.id)), Ok(Some(0)));
        assert_eq!(f.free_requests(), 1);
        f.push_request(&write(32)).expect("slot freed");
    }

    #[test]
    fn indices_wrap_around_u32_max() {
        let (mut f, mut b) = pair_at(u32::MAX - 5);
        for round in 0..4u16 {
            for k in 0..7u16 {
                f.push_request(&write(round * 10 + k)).expect("push");
            }
            f.publish().expect("publish");
            for k in 0..7u16 {
                let r = b.take_request().expect("take").expect("some");
                assert_eq!(r, write(round * 10 + k));
                b.push_response(&Response::ok(r.id, Operation::Write))
                    .expect("rsp");
            }
            b.publish_responses().expect("publish");
            for k in 0..7u16 {
                let r = f.take_response().expect("take").expect("some");
                assert_eq!(r.id, round * 10 + k);
            }
            assert_eq!(f.take_response(), Ok(None));
            assert_eq!(f.rearm(), Ok(false));
            assert_eq!(b.rearm(), Ok(false));
        }
        assert!(
            f.req_prod_pvt() < 100,
            "index wrapped: {}",
            f.req_prod_pvt()
        );
        assert_eq!(f.rsp_cons(), f.req_prod_pvt());
    }

    #[test]
    fn slot_of_index_is_masked() {
        assert_eq!(slot_offset(0), RING_SLOTS);
        assert_eq!(slot_offset(31), RING_SLOTS + 31 * RING_SLOT_SIZE);
        assert_eq!(slot_offset(32), RING_SLOTS);
        assert_eq!(slot_offset(u32::MAX), RING_SLOTS + 31 * RING_SLOT_SIZE);
    }

    /// sndif.md pitfall 4: without re-arming `rsp_event`, only the first response notifies.
    #[test]
    fn response_hold_off_needs_rearm() {
        let (mut f, mut b) = pair();
        for id in 0..3 {
            f.push_request(&write(id)).expect("push");
        }
        f.publish().expect("publish");
        for _ in 0..3 {
            b.take_request().expect("take").expect("some");
        }

        b.push_response(&Response::ok(0, Operation::Write))
            .expect("rsp");
        assert_eq!(b.publish_responses(), Ok(true), "first response notifies");
        assert!(f.take_response().expect("take").is_some());

        // Frontend forgets to re-arm: the second response does not notify.
        b.push_response(&Response::ok(1, Operation::Write))
            .expect("rsp");
        assert_eq!(b.publish_responses(), Ok(false), "no re-arm, no notify");
        assert!(f.take_response().expect("take").is_some());

        // After re-arming, the third one does.
        assert_eq!(f.rearm(), Ok(false));
        b.push_response(&Response::ok(2, Operation::Write))
            .expect("rsp");
        assert_eq!(b.publish_responses(), Ok(true), "re-armed, notifies");
    }

    #[test]
    fn rearm_reports_responses_that_raced_in() {
        let (mut f, mut b) = pair();
        f.push_request(&write(1)).expect("push");
        f.push_request(&write(2)).expect("push");
        f.publish().expect("publish");
        b.take_request().expect("take");
        b.take_request().expect("take");
        b.push_response(&Response::ok(1, Operation::Write))
            .expect("rsp");
        b.publish_responses().expect("publish");
        assert!(f.take_response().expect("take").is_some());
        assert_eq!(f.take_response(), Ok(None));
        // Response 2 is published after the FE decided to sleep but before it re-armed.
        b.push_response(&Response::ok(2, Operation::Write))
            .expect("rsp");
        assert_eq!(b.publish_responses(), Ok(false));
        assert_eq!(f.rearm(), Ok(true), "final check sees the raced response");
        assert!(f.take_response().expect("take").is_some());
        // Un-taken responses seen earlier also make rearm report more work.
        assert_eq!(f.rearm(), Ok(false));
    }

    #[test]
    fn request_hold_off_follows_req_event() {
        let (mut f, mut b) = pair();
        f.push_request(&write(0)).expect("push");
        assert_eq!(f.publish(), Ok(true));
        f.push_request(&write(1)).expect("push");
        assert_eq!(f.publish(), Ok(false), "backend has not re-armed");
        assert!(b.take_request().expect("take").is_some());
        assert_eq!(b.rearm(), Ok(true), "request 1 still unconsumed");
        assert!(b.take_request().expect("take").is_some());
        assert_eq!(b.rearm(), Ok(false));
        f.push_request(&write(2)).expect("push");
        assert_eq!(f.publish(), Ok(true), "backend re-armed");
        assert_eq!(f.publish(), Ok(false), "nothing new to publish");
    }

    #[test]
    fn bogus_rsp_prod_is_rejected() {
        let (mut f, mut b) = pair();
        f.push_request(&write(0)).expect("push");
        f.publish().expect("publish");
        b.take_request().expect("take");
        b.push_response(&Response::ok(0, Operation::Write))
            .expect("rsp");
        // Backend claims 1000 responses for 1 request.
        f.mem().store_u32(RING_RSP_PROD, 1000).expect("store");
        assert_eq!(
            f.take_response(),
            Err(RingError::ResponseOverflow {
                rsp_prod: 1000,
                rsp_cons: 0,
                outstanding: 1
            })
        );
        // Going backwards (wrapping to a huge distance) is rejected too.
        f.mem().store_u32(RING_RSP_PROD, u32::MAX).expect("store");
        assert!(matches!(
            f.take_response(),
            Err(RingError::ResponseOverflow { .. })
        ));
        // A response for an unpublished request is rejected as well.
        f.push_request(&write(1)).expect("push");
        f.mem().store_u32(RING_RSP_PROD, 2).expect("store");
        assert!(matches!(
            f.take_response(),
            Err(RingError::ResponseOverflow { outstanding: 1, .. })
        ));
        // A sane value recovers.
        f.mem().store_u32(RING_RSP_PROD, 1).expect("store");
        assert_eq!(f.take_response().map(|r| r.map(|r| r.id)), Ok(Some(0)));
    }

    #[test]
    fn bogus_req_prod_is_rejected() {
        let (_f, mut b) = pair();
        b.mem().store_u32(RING_REQ_PROD, 33).expect("store");
        assert_eq!(
            b.take_request(),
            Err(RingError::RequestOverflow {
                req_prod: 33,
                unanswered_base: 0
            })
        );
        b.mem().store_u32(RING_REQ_PROD, 32).expect("store");
        // 32 zeroed slots decode as OPEN with format S8... all valid requests.
        for _ in 0..32 {
            assert!(b.take_request().expect("take").is_some());
        }
        // 32 consumed, none answered: req_prod may not move further.
        b.mem().store_u32(RING_REQ_PROD, 33).expect("store");
        assert!(matches!(
            b.take_request(),
            Err(RingError::RequestOverflow { .. })
        ));
    }

    #[test]
    fn malformed_slots_are_consumed_and_carry_the_id() {
        let (mut f, mut b) = pair();
        f.push_request(&write(5)).expect("push");
        f.push_request(&write(6)).expect("push");
        // Corrupt the operation byte of slot 0.
        f.mem().write_bytes(RING_SLOTS + 2, &[99]).expect("corrupt");
        f.publish().expect("publish");
        let err = b.take_request().expect_err("malformed");
        let RingError::Malformed { index, source } = err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(index, 0);
        assert_eq!(source.id(), 5);
        assert_eq!(source.operation_code(), Some(99));
        // The backend answers it with an error and continues.
        b.push_response_bytes(&Response::encode_raw(5, 99, -22))
            .expect("rsp");
        assert_eq!(b.take_request(), Ok(Some(write(6))));
        b.push_response(&Response::ok(6, Operation::Write))
            .expect("rsp");
        b.publish_responses().expect("publish");
        let err = f.take_response().expect_err("raw response has unknown op");
        assert!(matches!(err, RingError::Malformed { index: 0, .. }));
        assert_eq!(f.take_response().map(|r| r.map(|r| r.id)), Ok(Some(6)));
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn random_shared_pages_never_panic() {
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let (mut f, mut b) = pair();
            let mut junk = vec![0u8; RING_BYTES];
            for c in junk.chunks_exact_mut(8) {
                c.copy_from_slice(&next().to_le_bytes());
            }
            for _ in 0..4 {
                f.push_request(&write(1)).expect("push");
            }
            f.publish().expect("publish");
            f.mem().write_bytes(0, &junk).expect("scribble");
            for _ in 0..40 {
                let _ = f.take_response();
                let _ = f.rearm();
                let _ = b.take_request();
                let _ = b.rearm();
            }
            assert!(f.in_flight() <= RING_SIZE);
            assert!(b.unanswered() <= RING_SIZE);
        }
    }
}
