//! The event page of one stream (`struct xensnd_event_page`): backend → frontend only.
//!
//! 63 slots after a 64-byte header; the slot of free-running counter `c` is `c % 63` (not a
//! mask: at `u32` wrap-around the slot sequence jumps by `2^32 mod 63 = 4`). There is no
//! notification hold-off. The frontend must advance `in_cons`, or a libxenbe backend stops after
//! 63 events (sndif.md pitfall 5); event ids are not required to be sequential.

use core::sync::atomic::Ordering;

use crate::layout::{
    EVT_PAGE_BYTES, EVT_PAGE_IN_CONS, EVT_PAGE_IN_PROD, EVT_PAGE_SLOTS, EVT_RING_LEN, MSG_SIZE,
};
use crate::shm::{fence, SharedMem, ShmError};
use crate::wire::{Event, Msg, WireError};

/// Errors of the event page ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The shared memory view is smaller than an event page.
    #[error("event page too small: {len} bytes, need {need}")]
    TooSmall {
        /// View length.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The backend claims more than 63 unconsumed events.
    #[error(
        "backend published in_prod {in_prod} with in_cons {in_cons}: more than {EVT_RING_LEN} \
         events pending"
    )]
    Overflow {
        /// The shared `in_prod` read.
        in_prod: u32,
        /// The frontend's consumer counter.
        in_cons: u32,
    },
    /// All 63 slots hold unconsumed events; the event was dropped (as libxenbe does).
    #[error("event page full: {pending} events not consumed by the frontend")]
    Full {
        /// Unconsumed events (`in_prod - in_cons`).
        pending: u32,
    },
    /// The slot did not decode; `in_cons` has advanced past it.
    #[error("event counter {counter}: {source}")]
    Malformed {
        /// Free-running counter of the slot.
        counter: u32,
        /// What was wrong.
        source: WireError,
    },
    /// A shared-memory access failed (cannot happen on a view that passed the size check).
    #[error(transparent)]
    Shm(#[from] ShmError),
}

fn check_size(mem: &SharedMem) -> Result<(), EventError> {
    if mem.len() < EVT_PAGE_BYTES {
        return Err(EventError::TooSmall {
            len: mem.len(),
            need: EVT_PAGE_BYTES,
        });
    }
    Ok(())
}

/// Byte offset of the slot for counter `counter` (`XENSND_IN_RING_REF`).
fn slot_offset(counter: u32) -> usize {
    // `counter % 63` < 63; the fallback only exists to avoid a cast.
    let slot = usize::try_from(counter % EVT_RING_LEN).unwrap_or(0);
    EVT_PAGE_SLOTS + slot * MSG_SIZE
}

/// The frontend's end: consumes events.
#[derive(Debug)]
pub struct EventReader {
    mem: SharedMem,
    /// Consumer counter (`in_cons`; the shared copy is written, never trusted back).
    cons: u32,
}

impl EventReader {
    /// Zero the page (both counters 0) and start consuming at 0.
    pub fn init(mem: SharedMem) -> Result<Self, EventError> {
        check_size(&mem)?;
        mem.fill(0, mem.len(), 0)?;
        Ok(EventReader { mem, cons: 0 })
    }

    /// The shared page.
    pub fn mem(&self) -> &SharedMem {
        &self.mem
    }

    /// The consumer counter.
    pub fn in_cons(&self) -> u32 {
        self.cons
    }

    /// Take the next event, if any. `in_prod` is validated (`in_prod - in_cons <= 63`), the slot
    /// is copied out, then `in_cons` is advanced (Release) so the backend may reuse the slot.
    /// An event that does not decode is still consumed and reported as
    /// [`EventError::Malformed`].
    pub fn take(&mut self) -> Result<Option<Event>, EventError> {
        let in_prod = self.mem.load_u32(EVT_PAGE_IN_PROD)?;
        let pending = in_prod.wrapping_sub(self.cons);
        if pending == 0 {
            return Ok(None);
        }
        if pending > EVT_RING_LEN {
            return Err(EventError::Overflow {
                in_prod,
                in_cons: self.cons,
            });
        }
        // libxenbe issues its barrier only after bumping in_prod, so on weakly ordered CPUs a full
        // fence between reading the index and reading the slot is the best the frontend can do.
        fence(Ordering::SeqCst);
        let counter = self.cons;
        let mut bytes: Msg = [0u8; MSG_SIZE];
        self.mem.read_bytes(slot_offset(counter), &mut bytes)?;
        self.cons = counter.wrapping_add(1);
        self.mem.store_u32(EVT_PAGE_IN_CONS, self.cons)?;
        Event::decode(&bytes)
            .map(Some)
            .map_err(|source| EventError::Malformed { counter, source })
    }
}

/// The backend's end: produces events.
#[derive(Debug)]
pub struct EventWriter {
    mem: SharedMem,
    /// Producer counter (`in_prod`).
    prod: u32,
}

impl EventWriter {
    /// Attach to a page the frontend initialised; continues from the shared `in_prod`.
    pub fn attach(mem: SharedMem) -> Result<Self, EventError> {
        check_size(&mem)?;
        let prod = mem.load_u32(EVT_PAGE_IN_PROD)?;
        Ok(EventWriter { mem, prod })
    }

    /// The shared page.
    pub fn mem(&self) -> &SharedMem {
        &self.mem
    }

    /// Forget unconsumed events: `in_prod = in_cons` (what libxenbe does at bind time).
    pub fn reset(&mut self) -> Result<(), EventError> {
        let cons = self.mem.load_u32(EVT_PAGE_IN_CONS)?;
        self.mem.store_u32(EVT_PAGE_IN_PROD, cons)?;
        self.prod = cons;
        Ok(())
    }

    /// Events published but not yet consumed by the frontend.
    pub fn pending(&self) -> Result<u32, EventError> {
        let cons = self.mem.load_u32(EVT_PAGE_IN_CONS)?;
        Ok(self.prod.wrapping_sub(cons))
    }

    /// Publish `event`. With 63 events unconsumed it is dropped and [`EventError::Full`] is
    /// returned (the caller decides whether to log; libxenbe warns and continues). The caller
    /// notifies the event channel after every successful push.
    pub fn push(&mut self, event: &Event) -> Result<(), EventError> {
        self.push_bytes(&event.encode())
    }

    /// Like [`Self::push`] with pre-encoded bytes (for tests of malformed events).
    pub fn push_bytes(&mut self, bytes: &Msg) -> Result<(), EventError> {
        let pending = self.pending()?;
        // A frontend counter ahead of ours (wrapping to a huge distance) also counts as full:
        // writing would overwrite slots the frontend may be reading.
        if pending >= EVT_RING_LEN {
            return Err(EventError::Full { pending });
        }
        self.mem.write_bytes(slot_offset(self.prod), bytes)?;
        self.prod = self.prod.wrapping_add(1);
        // Release: the slot is visible before the counter.
        self.mem.store_u32(EVT_PAGE_IN_PROD, self.prod)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::EVT_PAGE_SIZE;
    use crate::wire::EventKind;

    fn pair() -> (EventReader, EventWriter) {
        let mem = SharedMem::heap_pages(1).expect("page");
        let r = EventReader::init(mem.clone()).expect("init");
        let w = EventWriter::attach(mem).expect("attach");
        (r, w)
    }

    fn pos(id: u16, position: u64) -> Event {
        Event {
            id,
            kind: EventKind::CurPos { position },
        }
    }

    /// Put both counters at `start`.
    fn pair_at(start: u32) -> (EventReader, EventWriter) {
        let (mut r, mut w) = pair();
        r.mem().store_u32(EVT_PAGE_IN_PROD, start).expect("store");
        r.mem().store_u32(EVT_PAGE_IN_CONS, start).expect("store");
        r.cons = start;
        w.prod = start;
        (r, w)
    }

    #[test]
    fn init_zeroes_the_page() {
        let mem = SharedMem::heap_pages(1).expect("page");
        mem.fill(0, EVT_PAGE_SIZE, 0x55).expect("dirty");
        let r = EventReader::init(mem.clone()).expect("init");
        assert_eq!(mem.load_u32(EVT_PAGE_IN_CONS), Ok(0));
        assert_eq!(mem.load_u32(EVT_PAGE_IN_PROD), Ok(0));
        assert_eq!(r.in_cons(), 0);
        let mut b = vec![1u8; EVT_PAGE_SIZE];
        mem.read_bytes(0, &mut b).expect("read");
        assert!(b.iter().all(|x| *x == 0));
    }

    #[test]
    fn too_small_page_is_rejected() {
        let mem = SharedMem::heap_pages(1).expect("page");
        let small = mem.sub(0, EVT_PAGE_BYTES - 1).expect("sub");
        assert!(matches!(
            EventReader::init(small.clone()),
            Err(EventError::TooSmall { .. })
        ));
        assert!(matches!(
            EventWriter::attach(small),
            Err(EventError::TooSmall { .. })
        ));
    }

    #[test]
    fn events_flow_and_in_cons_advances() {
        let (mut r, mut w) = pair();
        assert_eq!(r.take(), Ok(None));
        w.push(&pos(0, 4096)).expect("push");
        w.push(&pos(7, 8192)).expect("push");
        assert_eq!(w.pending(), Ok(2));
        assert_eq!(r.take(), Ok(Some(pos(0, 4096))));
        assert_eq!(r.mem().load_u32(EVT_PAGE_IN_CONS), Ok(1));
        // Non-sequential ids are accepted.
        assert_eq!(r.take(), Ok(Some(pos(7, 8192))));
        assert_eq!(r.take(), Ok(None));
        assert_eq!(w.pending(), Ok(0));
    }

    #[test]
    fn more_than_63_events_with_consumption() {
        let (mut r, mut w) = pair();
        let mut next_expected = 0u64;
        for i in 0..1000u64 {
            w.push(&pos(u16::try_from(i % 65536).unwrap_or(0), i))
                .expect("push");
            if i % 3 == 2 {
                while let Some(ev) = r.take().expect("take") {
                    assert_eq!(
                        ev.kind,
                        EventKind::CurPos {
                            position: next_expected
                        }
                    );
                    next_expected += 1;
                }
            }
        }
        while let Some(ev) = r.take().expect("take") {
            assert_eq!(
                ev.kind,
                EventKind::CurPos {
                    position: next_expected
                }
            );
            next_expected += 1;
        }
        assert_eq!(next_expected, 1000);
        assert_eq!(r.in_cons(), 1000);
    }

    #[test]
    fn writer_drops_when_63_pending() {
        let (mut r, mut w) = pair();
        for i in 0..63 {
            w.push(&pos(i, u64::from(i))).expect("push");
        }
        assert_eq!(w.push(&pos(63, 63)), Err(EventError::Full { pending: 63 }));
        assert_eq!(r.take(), Ok(Some(pos(0, 0))));
        w.push(&pos(64, 64)).expect("one slot free");
        for i in 1..63 {
            assert_eq!(r.take(), Ok(Some(pos(i, u64::from(i)))));
        }
        assert_eq!(
            r.take(),
            Ok(Some(pos(64, 64))),
            "dropped event 63 is skipped"
        );
        assert_eq!(r.take(), Ok(None));
    }

    #[test]
    fn reader_rejects_a_flood() {
        let (mut r, _w) = pair();
        r.mem().store_u32(EVT_PAGE_IN_PROD, 64).expect("store");
        assert_eq!(
            r.take(),
            Err(EventError::Overflow {
                in_prod: 64,
                in_cons: 0
            })
        );
        assert_eq!(r.in_cons(), 0, "nothing consumed");
        r.mem()
            .store_u32(EVT_PAGE_IN_PROD, u32::MAX)
            .expect("store");
        assert!(matches!(r.take(), Err(EventError::Overflow { .. })));
        r.mem().store_u32(EVT_PAGE_IN_PROD, 63).expect("store");
        // 63 zeroed slots are valid CUR_POS events at position 0.
        for _ in 0..63 {
            assert_eq!(r.take(), Ok(Some(pos(0, 0))));
        }
        assert_eq!(r.take(), Ok(None));
    }

    #[test]
    fn counter_wrap_around_jumps_slots_consistently() {
        // 2^32 mod 63 = 4: slot of u32::MAX is 3, slot of 0 (= 2^32) is 0, not 4.
        assert_eq!(slot_offset(u32::MAX), EVT_PAGE_SLOTS + 3 * MSG_SIZE);
        assert_eq!(slot_offset(0), EVT_PAGE_SLOTS);
        assert_eq!(slot_offset(62), EVT_PAGE_SLOTS + 62 * MSG_SIZE);
        assert_eq!(slot_offset(63), EVT_PAGE_SLOTS);

        // Consumed promptly, events cross the wrap intact: counters MAX-10..=MAX use slots
        // 56..=62 and 0..=3, counter 0 (= 2^32) uses slot 0 again.
        let (mut r, mut w) = pair_at(u32::MAX - 10);
        for i in 0..30u16 {
            w.push(&pos(i, u64::from(i))).expect("push");
            assert_eq!(r.take(), Ok(Some(pos(i, u64::from(i)))), "event {i}");
        }
        assert_eq!(r.in_cons(), 19);
        assert_eq!(r.take(), Ok(None));

        // With many events pending at the wrap, the slot jump makes a new event land in a slot
        // that still holds an unconsumed one (a property of the protocol, shared by libxenbe and
        // Linux): counter 0 overwrites counter MAX-3 (both slot 0). Counters stay consistent.
        let (mut r, mut w) = pair_at(u32::MAX - 10);
        for i in 0..12u16 {
            w.push(&pos(i, u64::from(i))).expect("push");
        }
        let got: Vec<u16> = std::iter::from_fn(|| r.take().expect("take"))
            .map(|e| e.id)
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5, 6, 11, 8, 9, 10, 11]);
        assert_eq!(r.in_cons(), 1);
    }

    #[test]
    fn unknown_event_type_is_an_error_but_is_consumed() {
        let (mut r, mut w) = pair();
        let mut bad = pos(9, 1).encode();
        bad[2] = 17;
        w.push_bytes(&bad).expect("push");
        w.push(&pos(10, 2)).expect("push");
        assert_eq!(
            r.take(),
            Err(EventError::Malformed {
                counter: 0,
                source: WireError::UnknownEventType { id: 9, code: 17 }
            })
        );
        assert_eq!(r.mem().load_u32(EVT_PAGE_IN_CONS), Ok(1));
        assert_eq!(r.take(), Ok(Some(pos(10, 2))));
    }

    #[test]
    fn reset_discards_pending_events() {
        let (mut r, mut w) = pair();
        for i in 0..5 {
            w.push(&pos(i, 0)).expect("push");
        }
        assert_eq!(r.take(), Ok(Some(pos(0, 0))));
        w.reset().expect("reset");
        assert_eq!(w.pending(), Ok(0));
        assert_eq!(r.take(), Ok(None));
        // A writer attached later continues from the shared in_prod.
        let mut w2 = EventWriter::attach(r.mem().clone()).expect("attach");
        w2.push(&pos(42, 1)).expect("push");
        assert_eq!(r.take(), Ok(Some(pos(42, 1))));
    }

    #[test]
    fn frontend_counter_ahead_of_producer_counts_as_full() {
        let (r, mut w) = pair();
        r.mem().store_u32(EVT_PAGE_IN_CONS, 5).expect("store");
        assert!(matches!(w.push(&pos(0, 0)), Err(EventError::Full { .. })));
    }
}
