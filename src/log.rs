//! Logging through PipeWire's log under the topic `mod.xen-snd` (main thread only; the realtime
//! path counts instead and the main loop reports, rate-limited).
//!
//! Quiet by default: the module writes errors and warnings, and a few info lines that appear
//! only with a higher level (`log.level` module argument or `PIPEWIRE_DEBUG`).

use std::panic::Location;

use crate::args::LogLevel;
use crate::ffi;

const FUNC: &str = "xen-snd";

fn write(level: LogLevel, loc: &Location<'_>, msg: &str) {
    ffi::log_write(level as u32, loc.file(), loc.line(), FUNC, msg);
}

/// An error.
#[track_caller]
pub fn error(msg: &str) {
    write(LogLevel::Error, Location::caller(), msg);
}

/// A warning.
#[track_caller]
pub fn warn(msg: &str) {
    write(LogLevel::Warn, Location::caller(), msg);
}

/// Information.
#[track_caller]
pub fn info(msg: &str) {
    write(LogLevel::Info, Location::caller(), msg);
}

/// Debugging detail.
#[track_caller]
pub fn debug(msg: &str) {
    write(LogLevel::Debug, Location::caller(), msg);
}

/// Whether debug messages are written (to skip formatting them otherwise).
pub fn enabled_debug() -> bool {
    ffi::log_enabled(LogLevel::Debug as u32)
}

/// Let PipeWire configure the topic, then apply the module's own level if one was given.
pub fn init(level: Option<LogLevel>) {
    ffi::topic_init();
    if let Some(l) = level {
        ffi::set_topic_level(l as u32);
    }
}

/// Rate limiting for repeated warnings: at most one message per `interval_ns`, with the number
/// suppressed in between.
#[derive(Debug, Clone, Default)]
pub struct RateLimit {
    last_ns: u64,
    suppressed: u64,
}

impl RateLimit {
    /// Whether to log now; returns the number of messages suppressed since the last one.
    pub fn check(&mut self, now_ns: u64, interval_ns: u64) -> Option<u64> {
        if self.last_ns == 0 || now_ns.saturating_sub(self.last_ns) >= interval_ns {
            self.last_ns = now_ns.max(1);
            Some(core::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_what_it_suppresses() {
        let mut r = RateLimit::default();
        assert_eq!(r.check(100, 1000), Some(0));
        assert_eq!(r.check(200, 1000), None);
        assert_eq!(r.check(300, 1000), None);
        assert_eq!(r.check(1100, 1000), Some(2));
        assert_eq!(r.check(1200, 1000), None);
    }
}
