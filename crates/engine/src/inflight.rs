//! The fixed-size table of requests in flight on one stream (no allocation).
//!
//! The ring holds at most [`RING_SIZE`] requests whose responses have not been taken, so the
//! table has as many entries. An entry stays in the table after it timed out: the ring still
//! counts it, and a response that arrives later is recognised as a late response (a protocol
//! error) instead of being mistaken for another request's.

use sndif::layout::RING_SIZE;
use sndif::wire::Operation;

use crate::error::StreamOp;

/// Number of entries.
pub(crate) const TABLE_SIZE: usize = RING_SIZE as usize;

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A control request; `last` marks the request whose response completes the pending control
    /// operation (a CLOSE sent before an OPEN is not `last`).
    Control { op: StreamOp, last: bool },
    /// A WRITE of `len` bytes starting at byte `start` of the stream (cumulative counter).
    Write { start: u64, len: u32 },
    /// A READ of `len` bytes starting at byte `start` of the stream (cumulative counter).
    Read { start: u64, len: u32 },
}

/// One request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: u16,
    pub(crate) operation: Operation,
    pub(crate) purpose: Purpose,
    /// The OPEN generation the request belongs to (data requests of an older one are ignored).
    pub(crate) epoch: u32,
    pub(crate) deadline_ns: u64,
    pub(crate) timed_out: bool,
}

/// The table.
#[derive(Debug)]
pub(crate) struct InFlight {
    slots: [Option<Entry>; TABLE_SIZE],
}

impl InFlight {
    pub(crate) fn new() -> Self {
        InFlight {
            slots: [None; TABLE_SIZE],
        }
    }

    /// Adds an entry; `false` if the table is full (cannot happen while the ring has room).
    pub(crate) fn insert(&mut self, entry: Entry) -> bool {
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(entry);
                true
            }
            None => false,
        }
    }

    /// Whether an entry (timed out or not) uses `id`.
    pub(crate) fn contains_id(&self, id: u16) -> bool {
        self.iter().any(|e| e.id == id)
    }

    /// Removes and returns the entry with `id`.
    pub(crate) fn take(&mut self, id: u16) -> Option<Entry> {
        self.slots
            .iter_mut()
            .find(|s| matches!(s, Some(e) if e.id == id))
            .and_then(Option::take)
    }

    /// The entry with `id`.
    pub(crate) fn get(&self, id: u16) -> Option<&Entry> {
        self.iter().find(|e| e.id == id)
    }

    /// All entries.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.slots.iter().flatten()
    }

    /// All entries, mutable.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> + '_ {
        self.slots.iter_mut().flatten()
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.iter().count()
    }

    /// Data requests (READ/WRITE) of `epoch` not yet answered (timed-out ones included).
    pub(crate) fn data_requests(&self, epoch: u32) -> u32 {
        let n = self
            .iter()
            .filter(|e| e.epoch == epoch && !matches!(e.purpose, Purpose::Control { .. }))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The lowest start of a data request of `epoch` in flight (the oldest region the backend
    /// may still be using).
    pub(crate) fn oldest_data_start(&self, epoch: u32) -> Option<u64> {
        self.iter()
            .filter(|e| e.epoch == epoch)
            .filter_map(|e| match e.purpose {
                Purpose::Write { start, .. } | Purpose::Read { start, .. } => Some(start),
                Purpose::Control { .. } => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u16, purpose: Purpose, epoch: u32) -> Entry {
        let operation = match purpose {
            Purpose::Control { .. } => Operation::Trigger,
            Purpose::Write { .. } => Operation::Write,
            Purpose::Read { .. } => Operation::Read,
        };
        Entry {
            id,
            operation,
            purpose,
            epoch,
            deadline_ns: 0,
            timed_out: false,
        }
    }

    #[test]
    fn insert_take_and_capacity() {
        let mut t = InFlight::new();
        for id in 0..TABLE_SIZE as u16 {
            assert!(t.insert(entry(id, Purpose::Write { start: 0, len: 4 }, 1)));
        }
        assert!(!t.insert(entry(99, Purpose::Write { start: 0, len: 4 }, 1)));
        assert_eq!(t.len(), TABLE_SIZE);
        assert!(t.contains_id(5));
        assert_eq!(t.take(5).map(|e| e.id), Some(5));
        assert!(t.take(5).is_none());
        assert!(!t.contains_id(5));
        assert!(t.insert(entry(99, Purpose::Write { start: 0, len: 4 }, 1)));
        assert!(t.get(99).is_some());
    }

    #[test]
    fn data_accounting_is_per_epoch() {
        let mut t = InFlight::new();
        t.insert(entry(1, Purpose::Write { start: 100, len: 4 }, 1));
        t.insert(entry(2, Purpose::Write { start: 40, len: 4 }, 2));
        t.insert(entry(3, Purpose::Read { start: 60, len: 4 }, 2));
        t.insert(entry(
            4,
            Purpose::Control {
                op: StreamOp::Start,
                last: true,
            },
            2,
        ));
        assert_eq!(t.data_requests(2), 2);
        assert_eq!(t.data_requests(1), 1);
        assert_eq!(t.oldest_data_start(2), Some(40));
        assert_eq!(t.oldest_data_start(1), Some(100));
        assert_eq!(t.oldest_data_start(3), None);
        for e in t.iter_mut() {
            e.timed_out = true;
        }
        assert!(t.iter().all(|e| e.timed_out));
    }
}
