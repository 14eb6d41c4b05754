//! A second-order loop filter (a proportional-integral controller on a fill-level error, the
//! "DLL" of audio drivers) that turns "how many frames too many are buffered" into a rate
//! correction factor around 1.0.
//!
//! Used by the driver timer (how fast to run the graph) and by followers (how to steer the
//! resampler through `SPA_IO_RateMatch`). Pure arithmetic; realtime-safe.

use core::f64::consts::{PI, SQRT_2};

/// Default loop bandwidth, Hz: settles within a few seconds, smooths scheduling jitter.
pub const DEFAULT_BANDWIDTH: f64 = 0.128;

/// Largest correction applied: ±5 %.
pub const MAX_CORRECTION: f64 = 0.05;

/// The loop filter.
#[derive(Debug, Clone, Copy)]
pub struct Dll {
    kp: f64,
    ki: f64,
    integral: f64,
}

impl Dll {
    /// A loop with `bandwidth` Hz, updated once per `period` frames at `rate` Hz, critically
    /// damped (ζ = 1/√2).
    pub fn new(bandwidth: f64, period: u32, rate: u32) -> Dll {
        let mut d = Dll {
            kp: 0.0,
            ki: 0.0,
            integral: 0.0,
        };
        d.configure(bandwidth, period, rate);
        d
    }

    /// Change bandwidth or update period, keeping the accumulated correction.
    pub fn configure(&mut self, bandwidth: f64, period: u32, rate: u32) {
        let rate = f64::from(rate.max(1));
        let dt = f64::from(period.max(1)) / rate;
        let w = 2.0 * PI * bandwidth.max(0.0);
        // Error e in frames; the frames it changes by per second are rate × (correction):
        // e'' + rate·kp·e' + rate·ki/dt·e = 0 gives ω² = rate·ki/dt and 2ζω = rate·kp.
        self.kp = SQRT_2 * w / rate;
        self.ki = w * w * dt / rate;
    }

    /// Forget the accumulated correction.
    pub fn reset(&mut self) {
        self.integral = 0.0;
    }

    /// Feed one error sample (frames; positive = too much buffered for the producer side, so
    /// slow down) and get the correction factor: < 1.0 to go slower, > 1.0 faster.
    pub fn update(&mut self, error: f64) -> f64 {
        if !error.is_finite() {
            return self.correction(0.0);
        }
        self.integral = (self.integral + self.ki * error).clamp(-MAX_CORRECTION, MAX_CORRECTION);
        self.correction(error)
    }

    fn correction(&self, error: f64) -> f64 {
        (1.0 - (self.kp * error + self.integral)).clamp(1.0 - MAX_CORRECTION, 1.0 + MAX_CORRECTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulate a producer paced by the loop and a consumer running at `consumer` × nominal:
    /// returns the fill error after `seconds` and the final correction.
    fn simulate(consumer: f64, seconds: f64, bandwidth: f64) -> (f64, f64) {
        let (period, rate) = (1024u32, 48000u32);
        let mut dll = Dll::new(bandwidth, period, rate);
        let target = 2048.0;
        let mut fill = target + 500.0; // start off target
        let mut corr = 1.0;
        let cycles = (seconds * f64::from(rate) / f64::from(period)) as usize;
        for _ in 0..cycles {
            corr = dll.update(fill - target);
            // One period of the producer at nominal × corr, while the consumer drains at its
            // own rate for the same wall time.
            let wall = f64::from(period) / (f64::from(rate) * corr);
            fill += f64::from(period) - consumer * f64::from(rate) * wall;
        }
        (fill - target, corr)
    }

    #[test]
    fn locks_on_a_fast_and_a_slow_consumer() {
        for drift in [1.0, 1.001, 0.999, 1.005] {
            let (err, corr) = simulate(drift, 60.0, DEFAULT_BANDWIDTH);
            assert!(err.abs() < 5.0, "drift {drift}: residual error {err}");
            assert!((corr - drift).abs() < 1e-4, "drift {drift}: corr {corr}");
        }
    }

    #[test]
    fn a_wider_loop_settles_faster() {
        let (slow, _) = simulate(1.002, 8.0, 0.05);
        let (fast, _) = simulate(1.002, 8.0, 0.5);
        assert!(fast.abs() < slow.abs(), "fast {fast} slow {slow}");
    }

    #[test]
    fn correction_is_bounded_and_nan_safe() {
        let mut d = Dll::new(DEFAULT_BANDWIDTH, 1024, 48000);
        for _ in 0..10_000 {
            let c = d.update(1e9);
            assert!((1.0 - MAX_CORRECTION..=1.0 + MAX_CORRECTION).contains(&c));
        }
        assert!(d.update(f64::NAN).is_finite());
        d.reset();
        assert_eq!(d.update(0.0), 1.0);
    }
}
