//! Time sources. Streams measure request timeouts and position timestamps in nanoseconds of a
//! [`Clock`]; production uses [`MonotonicClock`] (CLOCK_MONOTONIC, the clock PipeWire uses), tests
//! can inject a [`ManualClock`].

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of nanosecond timestamps. `now_ns` must be cheap, lock-free and never go backwards;
/// the realtime thread calls it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time in nanoseconds.
    fn now_ns(&self) -> u64;
}

/// CLOCK_MONOTONIC.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        crate::sys::monotonic_ns()
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock showing `start_ns`.
    pub fn new(start_ns: u64) -> Self {
        ManualClock {
            now: AtomicU64::new(start_ns),
        }
    }

    /// Sets the time (ignored if it would go backwards).
    pub fn set(&self, now_ns: u64) {
        self.now.fetch_max(now_ns, Ordering::AcqRel);
    }

    /// Moves the time forward by `delta_ns`.
    pub fn advance(&self, delta_ns: u64) {
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(delta_ns))
            });
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let c = ManualClock::new(100);
        assert_eq!(c.now_ns(), 100);
        c.advance(50);
        assert_eq!(c.now_ns(), 150);
        c.set(120);
        assert_eq!(c.now_ns(), 150);
        c.set(1000);
        assert_eq!(c.now_ns(), 1000);
        c.advance(u64::MAX);
        assert_eq!(c.now_ns(), u64::MAX);
    }

    #[test]
    fn monotonic_clock_is_monotonic() {
        let c = MonotonicClock;
        let a = c.now_ns();
        let b = c.now_ns();
        assert!(b >= a && a > 0);
    }
}
