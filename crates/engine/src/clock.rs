//! The stream clock: backend positions (CUR_POS) turned into a monotonic position and a delay, and
//! a delay-locked loop that estimates the backend's rate against CLOCK_MONOTONIC.
//!
//! Everything here is pure arithmetic (no I/O, no allocation, no panics) and runs on the realtime
//! thread.
//!
//! # Positions (sndif.md §5.5, §5.6, pitfall 3, appendix)
//!
//! CUR_POS carries a cumulative byte count since OPEN. Real backends freeze it (ALSA `null`
//! device, backend xrun), move it backwards (ALSA backend after STOP/START) and move it past the
//! data the frontend wrote (PulseAudio backend: the position is wall-clock derived and keeps
//! running while the backend plays silence). [`PositionTracker`] keeps a position that never goes
//! backwards and never passes what was submitted:
//!
//! * a repeated position is *frozen*: counted, no change;
//! * a smaller position is a backend *restart*: the tracker rebases (our position stays where it
//!   is, later reports count from the new base) and counts it;
//! * a position beyond `limit` (the bytes submitted to the backend, for playback) is an
//!   *underrun* the backend covered with silence: the position is clamped to `limit`, the missing
//!   bytes are counted, and later reports count from the clamped value.
//!
//! # Delay-locked loop
//!
//! [`Dll`] is a second-order loop filter (a proportional-integral controller, the classic
//! "DLL" of audio drivers) with a bandwidth in Hz and a nominal update period; [`RateEstimator`]
//! feeds `(position, timestamp)` pairs through it to estimate the backend's rate relative to the
//! nominal rate ([`RateEstimator::rate_ratio`]) and to predict the position at any instant
//! ([`RateEstimator::predicted_position`]). A PipeWire driver uses the prediction to time its
//! graph cycles; a follower uses [`Dll`] directly on its fill-level error for rate matching.

use core::f64::consts::{PI, SQRT_2};

/// What one position report did to a [`PositionTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionUpdate {
    /// The position advanced by `bytes`.
    Advanced {
        /// Bytes played since the previous report.
        bytes: u64,
    },
    /// The same position as the previous report.
    Frozen,
    /// The reported position went backwards (a backend restart); the tracker rebased and its
    /// position did not change.
    Restarted {
        /// The previous raw position.
        from: u64,
        /// The new raw position.
        to: u64,
    },
    /// The reported position ran past the limit (an underrun the backend filled with silence):
    /// the tracker advanced by `bytes` to the limit and `missing` bytes were played without data.
    Underrun {
        /// Bytes the position advanced (up to the limit).
        bytes: u64,
        /// Bytes beyond the limit.
        missing: u64,
    },
}

/// Turns raw CUR_POS byte positions into a monotonic position bounded by what was submitted.
#[derive(Debug, Clone)]
pub struct PositionTracker {
    frame_bytes: u64,
    last_raw: u64,
    position: u64,
    reports: u64,
    frozen: u64,
    restarts: u64,
    underruns: u64,
    missing_bytes: u64,
}

impl PositionTracker {
    /// A tracker at position 0 for frames of `frame_bytes` bytes (0 is treated as 1).
    pub fn new(frame_bytes: u32) -> Self {
        PositionTracker {
            frame_bytes: u64::from(frame_bytes.max(1)),
            last_raw: 0,
            position: 0,
            reports: 0,
            frozen: 0,
            restarts: 0,
            underruns: 0,
            missing_bytes: 0,
        }
    }

    /// Back to position 0 with a new frame size (at OPEN: the backend counts from 0 again).
    /// Counters are kept.
    pub fn reset(&mut self, frame_bytes: u32) {
        self.frame_bytes = u64::from(frame_bytes.max(1));
        self.last_raw = 0;
        self.position = 0;
    }

    /// Applies one raw position report. `limit` is the highest position that is plausible: the
    /// bytes submitted to the backend for playback, `u64::MAX` when there is no bound.
    pub fn update(&mut self, raw: u64, limit: u64) -> PositionUpdate {
        self.reports = self.reports.saturating_add(1);
        let last = self.last_raw;
        self.last_raw = raw;
        if raw == last {
            self.frozen = self.frozen.saturating_add(1);
            return PositionUpdate::Frozen;
        }
        if raw < last {
            self.restarts = self.restarts.saturating_add(1);
            return PositionUpdate::Restarted {
                from: last,
                to: raw,
            };
        }
        let delta = raw - last;
        let target = self.position.saturating_add(delta);
        if target > limit {
            let bytes = limit.saturating_sub(self.position);
            let missing = target - limit.max(self.position);
            self.position = self.position.max(limit);
            self.underruns = self.underruns.saturating_add(1);
            self.missing_bytes = self.missing_bytes.saturating_add(missing);
            return PositionUpdate::Underrun { bytes, missing };
        }
        self.position = target;
        PositionUpdate::Advanced { bytes: delta }
    }

    /// Moves the position forward to `bytes` (no change if it is already there or beyond);
    /// later reports count from the current raw base. Used after STOP, when everything
    /// submitted counts as consumed.
    pub fn advance_to(&mut self, bytes: u64) {
        self.position = self.position.max(bytes);
    }

    /// Counts `bytes` as consumed without a report, up to `limit`: data the backend refused (a
    /// failed WRITE) will never show up in its positions, so it must not hold back pacing or
    /// inflate the delay. Later reports keep counting from the current raw base.
    pub fn skip(&mut self, bytes: u64, limit: u64) {
        self.position = self
            .position
            .saturating_add(bytes)
            .min(limit.max(self.position));
    }

    /// The monotonic position, bytes.
    pub fn position_bytes(&self) -> u64 {
        self.position
    }

    /// The monotonic position, whole frames.
    pub fn position_frames(&self) -> u64 {
        self.position / self.frame_bytes
    }

    /// The last raw position the backend reported.
    pub fn last_raw(&self) -> u64 {
        self.last_raw
    }

    /// Bytes submitted but not yet played: `submitted − position` (0 if the position is ahead).
    pub fn delay_bytes(&self, submitted: u64) -> u64 {
        submitted.saturating_sub(self.position)
    }

    /// [`Self::delay_bytes`] in whole frames.
    pub fn delay_frames(&self, submitted: u64) -> u64 {
        self.delay_bytes(submitted) / self.frame_bytes
    }

    /// Position reports applied.
    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// Reports that repeated the previous position.
    pub fn frozen(&self) -> u64 {
        self.frozen
    }

    /// Reports that went backwards (rebased).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Reports that ran past the limit.
    pub fn underruns(&self) -> u64 {
        self.underruns
    }

    /// Total bytes the backend reported beyond the limit.
    pub fn missing_bytes(&self) -> u64 {
        self.missing_bytes
    }
}

/// A second-order delay-locked loop filter (proportional-integral), updated once per period.
///
/// `update(error)` returns a correction factor around 1.0. The loop is designed for a plant in
/// which running one period with correction `c` changes the next error by `−(c − 1) · period`
/// frames (the error is "measured minus predicted", in frames): it settles with zero error and
/// the integral term equal to the relative rate difference, critically damped (ζ ≈ 0.707) with
/// the configured bandwidth.
#[derive(Debug, Clone)]
pub struct Dll {
    bandwidth: f64,
    period: f64,
    kp: f64,
    ki: f64,
    integral: f64,
}

impl Dll {
    /// Largest bandwidth accepted, Hz (as a fraction of the update rate it stays well inside the
    /// stable region).
    pub const MAX_BANDWIDTH: f64 = 1.0;
    /// Smallest bandwidth accepted, Hz.
    pub const MIN_BANDWIDTH: f64 = 0.001;

    /// A loop with bandwidth `bandwidth` Hz, updated every `period` frames at `rate` Hz.
    pub fn new(bandwidth: f64, period: u32, rate: u32) -> Self {
        let mut dll = Dll {
            bandwidth: 0.0,
            period: 1.0,
            kp: 0.0,
            ki: 0.0,
            integral: 0.0,
        };
        dll.set_bandwidth(bandwidth, period, rate);
        dll
    }

    /// Changes bandwidth and period, keeping the integral (the current rate estimate). Values
    /// out of range are clamped; a zero period or rate is treated as 1.
    pub fn set_bandwidth(&mut self, bandwidth: f64, period: u32, rate: u32) {
        let bw = if bandwidth.is_finite() {
            bandwidth.clamp(Self::MIN_BANDWIDTH, Self::MAX_BANDWIDTH)
        } else {
            Self::MIN_BANDWIDTH
        };
        let period = f64::from(period.max(1));
        let rate = f64::from(rate.max(1));
        // Loop bandwidth in radians per update, kept inside the stable region (w < √2).
        let w = (2.0 * PI * bw * period / rate).min(1.0);
        self.bandwidth = bw;
        self.period = period;
        self.kp = SQRT_2 * w / period;
        self.ki = w * w / period;
    }

    /// The bandwidth in Hz.
    pub fn bandwidth(&self) -> f64 {
        self.bandwidth
    }

    /// Forgets the integral (back to a correction of 1.0).
    pub fn reset(&mut self) {
        self.integral = 0.0;
    }

    /// One loop update with `error` frames (measured − predicted); returns the correction factor
    /// to apply for the next period. Non-finite errors are ignored.
    pub fn update(&mut self, error: f64) -> f64 {
        if !error.is_finite() {
            return 1.0 + self.integral;
        }
        self.integral += self.ki * error;
        1.0 + self.kp * error + self.integral
    }

    /// The integral term: the estimated relative rate difference (ratio − 1).
    pub fn integral(&self) -> f64 {
        self.integral
    }

    /// Sets the integral term (e.g. to carry a rate estimate over a reconfiguration).
    pub fn set_integral(&mut self, integral: f64) {
        if integral.is_finite() {
            self.integral = integral;
        }
    }

    /// The phase part of a correction for `error`: `kp · error · period` frames.
    fn phase_step(&self, error: f64) -> f64 {
        self.kp * error * self.period
    }
}

/// Estimates a backend's rate from `(position, CLOCK_MONOTONIC timestamp)` pairs with a [`Dll`].
#[derive(Debug, Clone)]
pub struct RateEstimator {
    rate: f64,
    period: u32,
    dll: Dll,
    /// Phase reference: the filtered position (frames) at `t_ref`.
    p_ref: f64,
    t_ref: u64,
    locked: bool,
    max_error: f64,
    updates: u64,
    resyncs: u64,
}

impl RateEstimator {
    /// Bandwidth used by [`RateEstimator::with_defaults`], Hz.
    pub const DEFAULT_BANDWIDTH: f64 = 0.128;

    /// An estimator for a nominal `rate` (frames/s) with updates about every `period` frames and
    /// loop bandwidth `bandwidth` Hz. An error larger than 4 periods re-seeds the phase instead of
    /// steering the loop.
    pub fn new(rate: u32, period: u32, bandwidth: f64) -> Self {
        let period = period.max(1);
        RateEstimator {
            rate: f64::from(rate.max(1)),
            period,
            dll: Dll::new(bandwidth, period, rate),
            p_ref: 0.0,
            t_ref: 0,
            locked: false,
            max_error: 4.0 * f64::from(period),
            updates: 0,
            resyncs: 0,
        }
    }

    /// [`RateEstimator::new`] with [`RateEstimator::DEFAULT_BANDWIDTH`].
    pub fn with_defaults(rate: u32, period: u32) -> Self {
        Self::new(rate, period, Self::DEFAULT_BANDWIDTH)
    }

    /// Changes the loop bandwidth, keeping the estimate.
    pub fn set_bandwidth(&mut self, bandwidth: f64) {
        let rate = u32::try_from(self.rate as u64).unwrap_or(u32::MAX);
        self.dll.set_bandwidth(bandwidth, self.period, rate);
    }

    /// Forgets everything (rate ratio back to 1).
    pub fn reset(&mut self) {
        self.dll.reset();
        self.locked = false;
    }

    /// Re-seeds the phase at `(t_ns, position)` keeping the rate estimate (after a backend
    /// restart or an underrun clamp made the position jump).
    pub fn resync(&mut self, t_ns: u64, position: f64) {
        if position.is_finite() {
            self.p_ref = position;
            self.t_ref = t_ns;
            self.locked = true;
            self.resyncs = self.resyncs.saturating_add(1);
        }
    }

    /// Feeds one `(t_ns, position in frames)` pair; returns the error (frames, measured −
    /// predicted) that steered the loop, or `None` for the first pair, a re-seed, or a
    /// timestamp that did not advance.
    pub fn update(&mut self, t_ns: u64, position: f64) -> Option<f64> {
        if !position.is_finite() {
            return None;
        }
        if !self.locked {
            self.p_ref = position;
            self.t_ref = t_ns;
            self.locked = true;
            return None;
        }
        if t_ns <= self.t_ref {
            return None;
        }
        let predicted = self.predicted_position(t_ns);
        let error = position - predicted;
        if error.abs() > self.max_error {
            self.resync(t_ns, position);
            return None;
        }
        self.dll.update(error);
        self.p_ref = predicted + self.dll.phase_step(error);
        self.t_ref = t_ns;
        self.updates = self.updates.saturating_add(1);
        Some(error)
    }

    /// The estimated backend rate divided by the nominal rate.
    pub fn rate_ratio(&self) -> f64 {
        1.0 + self.dll.integral()
    }

    /// The estimated backend rate, frames per second.
    pub fn rate(&self) -> f64 {
        self.rate * self.rate_ratio()
    }

    /// The position (frames) predicted for `at_ns`; the last reference position before the first
    /// update.
    pub fn predicted_position(&self, at_ns: u64) -> f64 {
        let dt_ns = i128::from(at_ns) - i128::from(self.t_ref);
        // i128 → f64 is exact enough for any realistic time difference.
        let dt = dt_ns as f64 / 1e9;
        self.p_ref + self.rate() * dt
    }

    /// Whether at least one pair was seen.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Loop updates applied.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Phase re-seeds (explicit or after a too large error).
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// The underlying loop filter.
    pub fn dll(&self) -> &Dll {
        &self.dll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    const PERIOD: u32 = 960; // 20 ms
    const T_NS: u64 = 20_000_000;

    /// A small deterministic PRNG (xorshift64*), for jitter.
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
            (x >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Uniform in [-a, a].
        fn sym(&mut self, a: f64) -> f64 {
            (self.next_f64() * 2.0 - 1.0) * a
        }
    }

    #[test]
    fn skipped_bytes_count_as_consumed_and_later_reports_add_on_top() {
        let mut t = PositionTracker::new(4);
        assert_eq!(t.update(400, 2000), PositionUpdate::Advanced { bytes: 400 });
        t.skip(800, 2000); // a refused WRITE of 800 bytes
        assert_eq!(t.position_bytes(), 1200);
        assert_eq!(t.delay_bytes(2000), 800);
        assert_eq!(t.update(600, 2000), PositionUpdate::Advanced { bytes: 200 });
        assert_eq!(t.position_bytes(), 1400);
        t.skip(10_000, 2000); // never beyond what was submitted
        assert_eq!(t.position_bytes(), 2000);
    }

    #[test]
    fn tracker_advances_and_reports_delay() {
        let mut t = PositionTracker::new(4);
        assert_eq!(t.update(400, 1000), PositionUpdate::Advanced { bytes: 400 });
        assert_eq!(t.update(800, 1000), PositionUpdate::Advanced { bytes: 400 });
        assert_eq!(t.position_bytes(), 800);
        assert_eq!(t.position_frames(), 200);
        assert_eq!(t.delay_bytes(1000), 200);
        assert_eq!(t.delay_frames(1000), 50);
        assert_eq!(t.reports(), 2);
    }

    #[test]
    fn tracker_frozen_position_is_counted_not_moved() {
        let mut t = PositionTracker::new(4);
        t.update(400, u64::MAX);
        assert_eq!(t.update(400, u64::MAX), PositionUpdate::Frozen);
        assert_eq!(t.update(400, u64::MAX), PositionUpdate::Frozen);
        assert_eq!(t.frozen(), 2);
        assert_eq!(t.position_bytes(), 400);
    }

    #[test]
    fn tracker_rebases_on_backwards_position() {
        let mut t = PositionTracker::new(4);
        t.update(4000, u64::MAX);
        assert_eq!(
            t.update(100, u64::MAX),
            PositionUpdate::Restarted {
                from: 4000,
                to: 100
            }
        );
        assert_eq!(t.position_bytes(), 4000, "position never goes backwards");
        // Later reports count from the new base.
        assert_eq!(
            t.update(500, u64::MAX),
            PositionUpdate::Advanced { bytes: 400 }
        );
        assert_eq!(t.position_bytes(), 4400);
        assert_eq!(t.restarts(), 1);
    }

    #[test]
    fn tracker_clamps_a_position_ahead_of_what_was_written() {
        let mut t = PositionTracker::new(4);
        t.update(1000, 4000);
        // The backend claims 10000 bytes played; only 4000 were submitted.
        assert_eq!(
            t.update(10_000, 4000),
            PositionUpdate::Underrun {
                bytes: 3000,
                missing: 6000
            }
        );
        assert_eq!(t.position_bytes(), 4000);
        assert_eq!(t.underruns(), 1);
        assert_eq!(t.missing_bytes(), 6000);
        assert_eq!(t.delay_bytes(4000), 0);
        // More data arrives; the next report counts from the clamped value.
        assert_eq!(
            t.update(10_800, 8000),
            PositionUpdate::Advanced { bytes: 800 }
        );
        assert_eq!(t.position_bytes(), 4800);
    }

    #[test]
    fn tracker_reset_restarts_from_zero_and_handles_zero_frame_size() {
        let mut t = PositionTracker::new(0);
        t.update(10, u64::MAX);
        assert_eq!(t.position_frames(), 10);
        t.reset(8);
        assert_eq!(t.position_bytes(), 0);
        assert_eq!(t.last_raw(), 0);
        assert_eq!(
            t.update(80, u64::MAX),
            PositionUpdate::Advanced { bytes: 80 }
        );
        assert_eq!(t.position_frames(), 10);
        // Extreme values saturate instead of overflowing.
        assert_eq!(
            t.update(u64::MAX, u64::MAX),
            PositionUpdate::Advanced {
                bytes: u64::MAX - 80
            }
        );
        assert_eq!(t.position_bytes(), u64::MAX);
    }

    /// Runs an estimator over `n` periods of a backend running at `ratio`, with optional arrival
    /// jitter (ns); returns the estimator.
    fn run(
        est: &mut RateEstimator,
        start: u64,
        n: u64,
        ratio: f64,
        jitter_ns: f64,
        rng: &mut Rng,
    ) -> u64 {
        let mut k = start;
        for _ in 0..n {
            let t_true = k * T_NS;
            let pos = ratio * f64::from(RATE) * (t_true as f64 / 1e9);
            let t_obs = (t_true as f64 + rng.sym(jitter_ns)).max(0.0) as u64;
            est.update(t_obs + 1_000_000_000, pos);
            k += 1;
        }
        k
    }

    #[test]
    fn dll_locks_exactly_on_the_nominal_rate() {
        let mut est = RateEstimator::with_defaults(RATE, PERIOD);
        let mut rng = Rng(1);
        run(&mut est, 0, 500, 1.0, 0.0, &mut rng);
        assert!(
            (est.rate_ratio() - 1.0).abs() < 1e-9,
            "{}",
            est.rate_ratio()
        );
        let t = 500 * T_NS + 1_000_000_000;
        let expect = 500.0 * f64::from(PERIOD);
        assert!((est.predicted_position(t) - expect).abs() < 1e-3);
        assert_eq!(est.resyncs(), 0);
    }

    #[test]
    fn dll_converges_to_a_drifting_backend() {
        for drift in [1.001, 0.999, 1.0002] {
            let mut est = RateEstimator::with_defaults(RATE, PERIOD);
            let mut rng = Rng(2);
            // 20 s of audio.
            let k = run(&mut est, 0, 1000, drift, 0.0, &mut rng);
            let err = (est.rate_ratio() - drift).abs();
            assert!(
                err < 1e-6,
                "drift {drift}: ratio {} err {err}",
                est.rate_ratio()
            );
            // The prediction one period ahead is within a frame.
            let t = k * T_NS + 1_000_000_000;
            let truth = drift * f64::from(RATE) * (k * T_NS) as f64 / 1e9;
            assert!((est.predicted_position(t) - truth).abs() < 1.0);
        }
    }

    #[test]
    fn dll_settles_within_a_few_seconds_at_default_bandwidth() {
        let mut est = RateEstimator::with_defaults(RATE, PERIOD);
        let mut rng = Rng(3);
        // After 5 s the 0.1 % offset is mostly gone, after 10 s it is below 2 %.
        run(&mut est, 0, 250, 1.001, 0.0, &mut rng);
        let e5 = (est.rate_ratio() - 1.001).abs();
        run(&mut est, 250, 250, 1.001, 0.0, &mut rng);
        let e10 = (est.rate_ratio() - 1.001).abs();
        assert!(e5 < 3e-4, "after 5 s: {e5}");
        assert!(e10 < 2e-5, "after 10 s: {e10}");
        assert!(e10 < e5);
    }

    /// Worst and mean absolute ratio error over 30 s after 30 s of settling, with ±2 ms arrival
    /// jitter on a 20 ms period and a +0.1 % drift.
    fn jitter_run(bandwidth: f64) -> (f64, f64) {
        let mut est = RateEstimator::new(RATE, PERIOD, bandwidth);
        let mut rng = Rng(4);
        let mut k = run(&mut est, 0, 1500, 1.001, 2e6, &mut rng);
        let mut worst: f64 = 0.0;
        let mut sum = 0.0;
        for _ in 0..1500 {
            k = run(&mut est, k, 1, 1.001, 2e6, &mut rng);
            let e = est.rate_ratio() - 1.001;
            worst = worst.max(e.abs());
            sum += e;
        }
        assert_eq!(est.resyncs(), 0);
        (worst, (sum / 1500.0).abs())
    }

    #[test]
    fn dll_filters_jittered_arrival_times() {
        let (worst, mean) = jitter_run(RateEstimator::DEFAULT_BANDWIDTH);
        assert!(worst < 4e-4, "worst ratio error under jitter: {worst}");
        assert!(mean < 5e-5, "mean ratio error under jitter: {mean}");
        // A narrower loop filters more.
        let (narrow_worst, narrow_mean) = jitter_run(0.032);
        assert!(narrow_worst < worst / 2.0, "{narrow_worst} vs {worst}");
        assert!(narrow_worst < 1e-4, "{narrow_worst}");
        assert!(narrow_mean < 5e-5, "{narrow_mean}");
    }

    #[test]
    fn dll_rides_through_a_frozen_period() {
        let mut est = RateEstimator::with_defaults(RATE, PERIOD);
        let mut rng = Rng(5);
        let k = run(&mut est, 0, 1000, 1.0, 0.0, &mut rng);
        // One report repeats the previous position (frozen), the next catches up.
        let frozen_pos = f64::from(RATE) * ((k - 1) * T_NS) as f64 / 1e9;
        est.update(k * T_NS + 1_000_000_000, frozen_pos);
        let mut worst: f64 = 0.0;
        let mut k = k + 1;
        for _ in 0..1000 {
            k = run(&mut est, k, 1, 1.0, 0.0, &mut rng);
            worst = worst.max((est.rate_ratio() - 1.0).abs());
        }
        assert!(worst < 5e-4, "worst disturbance {worst}");
        assert!(
            (est.rate_ratio() - 1.0).abs() < 1e-5,
            "{}",
            est.rate_ratio()
        );
        assert_eq!(est.resyncs(), 0);
    }

    #[test]
    fn backwards_jump_is_rebased_and_the_loop_keeps_its_rate() {
        let mut tracker = PositionTracker::new(4);
        let mut est = RateEstimator::with_defaults(RATE, PERIOD);
        let bytes_per_period = u64::from(PERIOD) * 4;
        let ratio = 1.001;
        let mut raw_base = 0u64;
        let mut worst_after: f64 = 0.0;
        for k in 0..2000u64 {
            if k == 1000 {
                // The backend restarts its count (ALSA backend after STOP/START).
                raw_base = k;
            }
            let raw = ((k - raw_base) as f64 * bytes_per_period as f64 * ratio) as u64;
            let t = k * T_NS + 1_000_000_000;
            match tracker.update(raw, u64::MAX) {
                PositionUpdate::Restarted { .. } | PositionUpdate::Underrun { .. } => {
                    est.resync(t, tracker.position_frames() as f64);
                }
                _ => {
                    est.update(t, tracker.position_bytes() as f64 / 4.0);
                }
            }
            if k > 1000 {
                worst_after = worst_after.max((est.rate_ratio() - ratio).abs());
            }
        }
        assert_eq!(tracker.restarts(), 1);
        assert_eq!(est.resyncs(), 1);
        assert!(worst_after < 1e-4, "worst after restart {worst_after}");
        assert!((est.rate_ratio() - ratio).abs() < 1e-5);
    }

    #[test]
    fn huge_errors_resync_instead_of_steering() {
        let mut est = RateEstimator::with_defaults(RATE, PERIOD);
        let mut rng = Rng(6);
        run(&mut est, 0, 100, 1.0, 0.0, &mut rng);
        let before = est.rate_ratio();
        // A position 10 periods ahead of the prediction.
        let t = 100 * T_NS + 1_000_000_000;
        assert_eq!(est.update(t, 110.0 * f64::from(PERIOD)), None);
        assert_eq!(est.resyncs(), 1);
        assert_eq!(est.rate_ratio(), before);
        // A timestamp that does not advance is ignored; NaN positions too.
        assert_eq!(est.update(t, 1.0), None);
        assert_eq!(est.update(t + 1, f64::NAN), None);
    }

    #[test]
    fn dll_filter_removes_a_constant_rate_offset() {
        // Plant: the error grows by `drift · period` per period and shrinks by `(c − 1) · period`.
        let mut dll = Dll::new(0.5, PERIOD, RATE);
        let drift = 0.002;
        let p = f64::from(PERIOD);
        let mut err = 0.0;
        let mut c = 1.0;
        for _ in 0..2000 {
            err += drift * p - (c - 1.0) * p;
            c = dll.update(err);
        }
        assert!(err.abs() < 1e-6, "error {err}");
        assert!((dll.integral() - drift).abs() < 1e-9, "{}", dll.integral());
        assert!((c - 1.0 - drift).abs() < 1e-6);
        // Reset and out-of-range settings.
        dll.reset();
        assert_eq!(dll.update(0.0), 1.0);
        dll.set_bandwidth(f64::NAN, 0, 0);
        assert_eq!(dll.bandwidth(), Dll::MIN_BANDWIDTH);
        dll.set_bandwidth(100.0, PERIOD, RATE);
        assert_eq!(dll.bandwidth(), Dll::MAX_BANDWIDTH);
        assert_eq!(dll.update(f64::INFINITY), 1.0);
        dll.set_integral(0.25);
        assert_eq!(dll.integral(), 0.25);
    }
}
