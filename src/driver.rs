//! Clocking: the driver timer's arithmetic (when the next graph cycle is due and what goes into
//! `spa_io_position.clock`), and the follower's rate matching. Pure arithmetic in nanoseconds and
//! frames (no millisecond rounding), realtime-safe.
//!
//! Both keep the fill level toward the backend near a target with a [`Dll`]:
//!
//! - playback: error = delay − target (too much queued → slow down);
//! - capture: error = target − delay (too much captured → speed up).
//!
//! The driver runs its timer at `duration / (rate × correction)` (times the port's own estimate
//! of the backend rate, as feed-forward); a follower hands the correction to the resampler
//! (`rate` for playback, `1 / rate` for capture).

use sndif::config::StreamKind;

use crate::dll::{Dll, DEFAULT_BANDWIDTH};

/// What the driver writes into `spa_io_position.clock` for one cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockUpdate {
    /// Start of this cycle, CLOCK_MONOTONIC ns.
    pub nsec: u64,
    /// Graph rate, Hz (the clock rate is `1/rate`).
    pub rate: u32,
    /// Position after this cycle, frames.
    pub position: u64,
    /// Frames in this cycle.
    pub duration: u64,
    /// Frames between the graph position and the backend (queued for playback, captured but
    /// unread for capture).
    pub delay: i64,
    /// Rate correction of this clock against CLOCK_MONOTONIC.
    pub rate_diff: f64,
    /// When the next cycle starts, CLOCK_MONOTONIC ns.
    pub next_nsec: u64,
}

/// The fill level to keep toward the backend: playback, half the buffer but at least one
/// quantum; capture, one quantum plus one period. Never more than the buffer.
pub fn target_fill(kind: StreamKind, buffer: u32, period: u32, quantum: u64) -> u64 {
    let buffer = u64::from(buffer);
    let t = match kind {
        StreamKind::Playback => (buffer / 2).max(quantum),
        StreamKind::Capture => quantum.saturating_add(u64::from(period)),
    };
    t.min(buffer)
}

fn fill_error(kind: StreamKind, delay: u64, target: u64, clamp: u64) -> f64 {
    let e = match kind {
        StreamKind::Playback => delay as f64 - target as f64,
        StreamKind::Capture => target as f64 - delay as f64,
    };
    let c = clamp.max(1) as f64;
    e.clamp(-c, c)
}

/// Nanoseconds of `frames` at `rate` Hz, scaled by `1 / corr`.
fn cycle_ns(frames: u64, rate: u32, corr: f64) -> u64 {
    let ns = frames as f64 * 1e9 / (f64::from(rate.max(1)) * corr);
    if ns.is_finite() && ns > 0.0 {
        ns as u64
    } else {
        frames.saturating_mul(1_000_000_000) / u64::from(rate.max(1))
    }
}

/// The driver timer's state.
#[derive(Debug, Clone)]
pub struct DriverClock {
    kind: StreamKind,
    dll: Dll,
    configured: (u64, u32),
    next_ns: u64,
    /// Times the timer had to resynchronise (started late by more than two cycles).
    pub resyncs: u64,
}

impl DriverClock {
    /// A stopped clock for a stream of `kind`.
    pub fn new(kind: StreamKind) -> Self {
        DriverClock {
            kind,
            dll: Dll::new(DEFAULT_BANDWIDTH, 1024, 48000),
            configured: (1024, 48000),
            next_ns: 0,
            resyncs: 0,
        }
    }

    /// Start: the first cycle is due at `now_ns`.
    pub fn start(&mut self, now_ns: u64) -> u64 {
        self.next_ns = now_ns.max(1);
        self.dll.reset();
        self.next_ns
    }

    /// Stop (the next `tick` starts over at its `now`).
    pub fn stop(&mut self) {
        self.next_ns = 0;
    }

    /// Move the next cycle to `until_ns` if it was due earlier (the cycle waited for the
    /// backend): the schedule continues from there instead of catching up.
    pub fn postpone(&mut self, until_ns: u64) {
        if self.next_ns != 0 {
            self.next_ns = self.next_ns.max(until_ns);
        }
    }

    /// When the next cycle is due (0 when stopped).
    pub fn next_ns(&self) -> u64 {
        self.next_ns
    }

    /// One timer expiry at `now_ns`: compute this cycle's clock and the next wake-up.
    /// `prev_position` is the clock position before this cycle; `duration`/`rate` the graph's
    /// quantum; `delay` the port's fill level, `target` the wanted level; `backend_ratio` the
    /// port's rate estimate (1.0 if unknown).
    #[allow(clippy::too_many_arguments)]
    pub fn tick(
        &mut self,
        now_ns: u64,
        prev_position: u64,
        duration: u64,
        rate: u32,
        delay: u64,
        target: u64,
        backend_ratio: f64,
    ) -> ClockUpdate {
        let duration = duration.max(1);
        let rate = rate.max(1);
        if self.configured != (duration, rate) {
            self.dll.configure(
                DEFAULT_BANDWIDTH,
                u32::try_from(duration).unwrap_or(u32::MAX),
                rate,
            );
            self.configured = (duration, rate);
        }
        let period_ns = cycle_ns(duration, rate, 1.0);
        let mut current = self.next_ns;
        if current == 0
            || now_ns > current.saturating_add(2 * period_ns)
            || now_ns.saturating_add(period_ns) < current
        {
            // First tick, or a stall of more than two cycles: restart from now.
            if current != 0 {
                self.resyncs += 1;
            }
            current = now_ns;
            self.dll.reset();
        }
        let err = fill_error(self.kind, delay, target, duration);
        let ratio = if backend_ratio.is_finite() {
            backend_ratio.clamp(0.9, 1.1)
        } else {
            1.0
        };
        let corr = self.dll.update(err) * ratio;
        let next = current.saturating_add(cycle_ns(duration, rate, corr));
        self.next_ns = next;
        ClockUpdate {
            nsec: current,
            rate,
            position: prev_position.wrapping_add(duration),
            duration,
            delay: i64::try_from(delay).unwrap_or(i64::MAX),
            rate_diff: corr,
            next_nsec: next,
        }
    }
}

/// Cycles a follower watches the fill level before it picks its target.
pub const FOLLOWER_WARMUP_CYCLES: u32 = 32;

/// The time constant, in cycles, of the averaged fill level that decides whether a follower
/// engages rate matching.
pub const FOLLOWER_SMOOTHING_CYCLES: u32 = 32;

/// The follower's rate matching.
///
/// The target fill level is the average seen during the first [`FOLLOWER_WARMUP_CYCLES`] after
/// a start (the latency the stream settled at). Matching engages only once the level, averaged
/// over about [`FOLLOWER_SMOOTHING_CYCLES`] cycles, drifts more than half a quantum from it,
/// and then stays engaged until the next start: a resampler that is not needed stays out of the
/// path, so equal clocks stay bit-exact — also when late graph cycles (a loaded machine) make
/// the level jitter by a quantum or more.
#[derive(Debug, Clone)]
pub struct RateMatcher {
    kind: StreamKind,
    dll: Dll,
    configured: (u64, u32),
    cycles: u32,
    sum: u64,
    target: u64,
    /// The averaged fill level (after the warm-up).
    average: f64,
    active: bool,
}

impl RateMatcher {
    /// A matcher for a stream of `kind`.
    pub fn new(kind: StreamKind) -> Self {
        RateMatcher {
            kind,
            dll: Dll::new(DEFAULT_BANDWIDTH, 1024, 48000),
            configured: (1024, 48000),
            cycles: 0,
            sum: 0,
            target: 0,
            average: 0.0,
            active: false,
        }
    }

    /// Start over (on start).
    pub fn reset(&mut self) {
        self.dll.reset();
        self.cycles = 0;
        self.sum = 0;
        self.target = 0;
        self.average = 0.0;
        self.active = false;
    }

    /// Whether the resampler is being steered.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// One graph cycle of `duration` frames at `rate` with fill level `delay`: the resampler
    /// rate to set, or `None` to leave the resampler alone.
    pub fn update(&mut self, duration: u64, rate: u32, delay: u64) -> Option<f64> {
        let duration = duration.max(1);
        if self.configured != (duration, rate) {
            self.dll.configure(
                DEFAULT_BANDWIDTH,
                u32::try_from(duration).unwrap_or(u32::MAX),
                rate,
            );
            self.configured = (duration, rate);
        }
        if self.cycles < FOLLOWER_WARMUP_CYCLES {
            self.cycles += 1;
            self.sum = self.sum.saturating_add(delay);
            if self.cycles == FOLLOWER_WARMUP_CYCLES {
                self.target = self.sum / u64::from(FOLLOWER_WARMUP_CYCLES);
                self.average = self.target as f64;
            }
            return None;
        }
        let err = fill_error(self.kind, delay, self.target, duration);
        if !self.active {
            self.average += (delay as f64 - self.average) / f64::from(FOLLOWER_SMOOTHING_CYCLES);
            if (self.average - self.target as f64).abs() <= (duration / 2) as f64 {
                return None;
            }
        }
        self.active = true;
        let corr = self.dll.update(err);
        Some(match self.kind {
            StreamKind::Playback => corr,
            StreamKind::Capture => 1.0 / corr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(target_fill(StreamKind::Playback, 3840, 960, 1024), 1920);
        assert_eq!(target_fill(StreamKind::Playback, 1024, 512, 1024), 1024);
        assert_eq!(target_fill(StreamKind::Playback, 512, 256, 1024), 512);
        assert_eq!(target_fill(StreamKind::Capture, 3840, 960, 1024), 1984);
        assert_eq!(target_fill(StreamKind::Capture, 1500, 960, 1024), 1500);
    }

    #[test]
    fn nominal_cycles_are_exact_in_nanoseconds() {
        let mut d = DriverClock::new(StreamKind::Playback);
        let t0 = 1_000_000_000;
        d.start(t0);
        let u = d.tick(t0, 0, 1024, 48000, 1920, 1920, 1.0);
        assert_eq!(u.nsec, t0);
        assert_eq!(u.position, 1024);
        assert_eq!(u.duration, 1024);
        assert_eq!(u.rate, 48000);
        assert_eq!(u.rate_diff, 1.0);
        // 1024 / 48000 s = 21 333 333.33 ns; truncated, not rounded to milliseconds.
        assert_eq!(u.next_nsec - u.nsec, 21_333_333);
        let u2 = d.tick(
            u.next_nsec + 50_000,
            u.position,
            1024,
            48000,
            1920,
            1920,
            1.0,
        );
        assert_eq!(u2.nsec, u.next_nsec, "cycles are scheduled, not jittered");
        assert_eq!(u2.position, 2048);
    }

    #[test]
    fn driver_follows_a_drifting_backend() {
        // The backend consumes 0.2 % faster than nominal; the timer must speed up to match
        // and hold the fill level near the target.
        let (q, rate, target) = (1024u64, 48000u32, 1920u64);
        let drift = 1.002;
        let mut d = DriverClock::new(StreamKind::Playback);
        let mut now = d.start(1);
        let mut fill = target as f64;
        let mut pos = 0;
        let mut last = None;
        for _ in 0..4000 {
            let u = d.tick(now, pos, q, rate, fill.max(0.0) as u64, target, 1.0);
            pos = u.position;
            fill += q as f64; // the cycle's data arrives
            let dt = (u.next_nsec - u.nsec) as f64 / 1e9;
            fill -= dt * f64::from(rate) * drift; // the backend plays meanwhile
            now = u.next_nsec;
            last = Some(u);
        }
        let u = last.unwrap();
        assert!(
            (u.rate_diff - drift).abs() < 1e-4,
            "rate_diff {}",
            u.rate_diff
        );
        assert!((fill - target as f64).abs() < 64.0, "fill {fill}");
        assert_eq!(d.resyncs, 0);
    }

    #[test]
    fn feed_forward_ratio_is_applied_and_sanitised() {
        let mut d = DriverClock::new(StreamKind::Capture);
        d.start(10);
        let u = d.tick(10, 0, 480, 48000, 1440, 1440, 1.01);
        assert!((u.rate_diff - 1.01).abs() < 1e-12);
        let u = d.tick(u.next_nsec, u.position, 480, 48000, 1440, 1440, f64::NAN);
        assert!((u.rate_diff - 1.0).abs() < 1e-9);
        let u = d.tick(u.next_nsec, u.position, 480, 48000, 1440, 1440, 50.0);
        assert!((u.rate_diff - 1.1).abs() < 1e-9, "clamped");
    }

    #[test]
    fn a_stall_resynchronises() {
        let mut d = DriverClock::new(StreamKind::Playback);
        d.start(1_000);
        let u = d.tick(1_000, 0, 1024, 48000, 0, 0, 1.0);
        // One second late.
        let late = u.next_nsec + 1_000_000_000;
        let u2 = d.tick(late, u.position, 1024, 48000, 0, 0, 1.0);
        assert_eq!(u2.nsec, late);
        assert_eq!(d.resyncs, 1);
        d.stop();
        assert_eq!(d.next_ns(), 0);
        d.postpone(5);
        assert_eq!(d.next_ns(), 0, "a stopped clock stays stopped");
    }

    #[test]
    fn a_postponed_cycle_continues_from_there() {
        let mut d = DriverClock::new(StreamKind::Playback);
        d.start(1_000);
        let u = d.tick(1_000, 0, 1024, 48000, 1920, 1920, 1.0);
        // The cycle waited 3 ms for the backend.
        let late = u.next_nsec + 3_000_000;
        d.postpone(late);
        d.postpone(late - 1);
        assert_eq!(d.next_ns(), late, "never earlier");
        let u2 = d.tick(late, u.position, 1024, 48000, 1920, 1920, 1.0);
        assert_eq!(u2.nsec, late);
        assert_eq!(u2.next_nsec - late, 21_333_333, "no catching up");
        assert_eq!(d.resyncs, 0);
    }

    fn warmed(kind: StreamKind, level: u64) -> RateMatcher {
        let mut m = RateMatcher::new(kind);
        for _ in 0..FOLLOWER_WARMUP_CYCLES {
            assert_eq!(m.update(1024, 48000, level), None);
        }
        m
    }

    #[test]
    fn follower_stays_out_of_the_way_near_its_target() {
        let mut m = warmed(StreamKind::Playback, 2000);
        // Late cycles make the level jitter by more than a quantum: no resampler for that.
        for i in 0..2000 {
            let d = if i % 7 == 3 {
                3200
            } else {
                1800 + (i % 5) * 100
            };
            assert_eq!(m.update(1024, 48000, d), None, "cycle {i}: {d}");
        }
        assert!(!m.is_active());
        // A lasting drift engages it within a few dozen cycles.
        let mut engaged = None;
        for i in 0..200 {
            if m.update(1024, 48000, 2800).is_some() {
                engaged = Some(i);
                break;
            }
        }
        assert!(
            engaged.is_some_and(|i| (10..100).contains(&i)),
            "{engaged:?}"
        );
        assert!(m.is_active());
        // Engaged for good, even back at the target.
        assert!(m.update(1024, 48000, 2000).is_some());
        m.reset();
        assert!(!m.is_active());
        assert_eq!(m.update(1024, 48000, 0), None);
    }

    /// The first correction once a lasting level of `delay` engaged matching.
    fn first_correction(m: &mut RateMatcher, delay: u64) -> f64 {
        (0..500)
            .find_map(|_| m.update(1024, 48000, delay))
            .expect("engaged")
    }

    #[test]
    fn follower_signs() {
        // Playback with too much queued: feed less (rate < 1).
        let mut m = warmed(StreamKind::Playback, 1920);
        let r = first_correction(&mut m, 3000);
        assert!(r < 1.0, "{r}");
        // Capture with too much captured: read more (rate < 1 means a larger input request).
        let mut m = warmed(StreamKind::Capture, 1984);
        let r = first_correction(&mut m, 3000);
        assert!(r < 1.0, "{r}");
    }

    #[test]
    fn follower_converges_on_a_slow_backend() {
        // Graph at nominal rate, backend 0.1 % slow: the sink must be fed less.
        let (q, rate) = (1024u64, 48000u32);
        let target = 1920u64;
        let mut m = warmed(StreamKind::Playback, target);
        let mut fill = target as f64;
        let mut r = 1.0;
        for _ in 0..8000 {
            r = m.update(q, rate, fill.max(0.0) as u64).unwrap_or(1.0);
            fill += q as f64 * r; // the resampler hands us quantum × rate frames
            fill -= q as f64 * 0.999; // the backend plays a cycle's worth at its rate
        }
        assert!(m.is_active());
        assert!((r - 0.999).abs() < 1e-4, "{r}");
        assert!((fill - target as f64).abs() < 600.0, "{fill}");
    }
}
