//! The injectable stream clock: real time, scaled real time, or a manual clock a test advances.
//!
//! Everything time-related in the backend — the CUR_POS cadence, the position model, the delay
//! of a "late" misbehaviour — reads [`Clock::now`], a [`Duration`] since the clock's origin.
//! Workers sleep in `poll(2)`; `Clock::real_wait` converts a clock deadline into the real time
//! to wait, and a [`ManualClock`] wakes the registered workers whenever it is advanced, so tests
//! never sleep.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::wake::WakeFd;

/// A clock for stream time. Cheap to clone; clones share the origin (and, for the manual clock,
/// the time).
#[derive(Debug, Clone)]
pub struct Clock {
    kind: ClockKind,
}

#[derive(Debug, Clone)]
enum ClockKind {
    Real { origin: Instant },
    Scaled { origin: Instant, factor: f64 },
    Manual(ManualClock),
}

/// Invalid clock parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("clock scale {0} is invalid: it must be a finite number > 0")]
pub struct ClockScaleError(pub f64);

impl Clock {
    /// Real (monotonic) time.
    pub fn real() -> Self {
        Clock {
            kind: ClockKind::Real {
                origin: Instant::now(),
            },
        }
    }

    /// Real time multiplied by `factor` (e.g. 20: a 10 s stream takes 0.5 s).
    pub fn scaled(factor: f64) -> Result<Self, ClockScaleError> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(ClockScaleError(factor));
        }
        if factor == 1.0 {
            return Ok(Self::real());
        }
        Ok(Clock {
            kind: ClockKind::Scaled {
                origin: Instant::now(),
                factor,
            },
        })
    }

    /// A clock that only moves when `manual` is advanced.
    pub fn manual(manual: &ManualClock) -> Self {
        Clock {
            kind: ClockKind::Manual(manual.clone()),
        }
    }

    /// Stream time since the origin.
    pub fn now(&self) -> Duration {
        match &self.kind {
            ClockKind::Real { origin } => origin.elapsed(),
            ClockKind::Scaled { origin, factor } => origin.elapsed().mul_f64(*factor),
            ClockKind::Manual(m) => m.now(),
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self.kind, ClockKind::Manual(_))
    }

    /// How long to wait in real time until the clock reads `until`; `None` means "until woken"
    /// (manual clock: it wakes registered workers when advanced).
    pub(crate) fn real_wait(&self, until: Duration) -> Option<Duration> {
        match &self.kind {
            ClockKind::Real { .. } => Some(until.saturating_sub(self.now())),
            ClockKind::Scaled { factor, .. } => {
                Some(until.saturating_sub(self.now()).div_f64(*factor))
            }
            ClockKind::Manual(m) => {
                if until <= m.now() {
                    Some(Duration::ZERO)
                } else {
                    None
                }
            }
        }
    }

    /// Registers a worker's wake fd, to be woken whenever a manual clock moves. No-op for real
    /// clocks.
    pub(crate) fn register(&self, waker: &Arc<WakeFd>) {
        if let ClockKind::Manual(m) = &self.kind {
            m.register(waker);
        }
    }
}

/// The handle a test uses to move a manual [`Clock`].
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug, Default)]
struct ManualInner {
    now: Mutex<Duration>,
    wakers: Mutex<Vec<Weak<WakeFd>>>,
}

impl ManualClock {
    /// A manual clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current time.
    pub fn now(&self) -> Duration {
        match self.inner.now.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }

    /// Moves the clock forward by `by` and wakes every worker using it.
    pub fn advance(&self, by: Duration) {
        {
            let mut g = match self.inner.now.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *g = g.saturating_add(by);
        }
        self.wake_all();
    }

    fn register(&self, waker: &Arc<WakeFd>) {
        let mut w = match self.inner.wakers.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        w.retain(|x| x.strong_count() > 0);
        w.push(Arc::downgrade(waker));
    }

    fn wake_all(&self) {
        let w = match self.inner.wakers.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for waker in w.iter().filter_map(Weak::upgrade) {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake::poll_readable;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_wakes() {
        let m = ManualClock::new();
        let c = Clock::manual(&m);
        let w = Arc::new(WakeFd::new().expect("eventfd"));
        c.register(&w);
        assert_eq!(c.now(), Duration::ZERO);
        assert_eq!(c.real_wait(Duration::from_millis(5)), None);
        m.advance(Duration::from_millis(7));
        assert_eq!(c.now(), Duration::from_millis(7));
        assert_eq!(c.real_wait(Duration::from_millis(5)), Some(Duration::ZERO));
        let r = poll_readable(&[w.raw_fd()], Some(Duration::from_secs(5))).expect("poll");
        assert_eq!(r, vec![true]);
    }

    #[test]
    fn scaled_clock_runs_faster_and_waits_shorter() {
        let c = Clock::scaled(1000.0).expect("scale");
        let wait = c
            .real_wait(c.now() + Duration::from_secs(10))
            .expect("finite");
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
        let t0 = c.now();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2) {}
        assert!(c.now() - t0 >= Duration::from_secs(1));
    }

    #[test]
    fn bad_scale_is_rejected() {
        assert!(Clock::scaled(0.0).is_err());
        assert!(Clock::scaled(f64::NAN).is_err());
        assert!(Clock::scaled(-2.0).is_err());
        assert!(!Clock::scaled(1.0).expect("1.0").is_manual());
    }
}
