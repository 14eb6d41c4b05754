//! The io areas PipeWire gives a stream (`io_changed`, main thread) and the realtime thread reads
//! and writes: the graph position and clock, and the resampler's rate match.
//!
//! The pointers are published through atomics; the areas themselves are written with volatile
//! stores followed by a release fence (other nodes, possibly in other processes, read them).

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{fence, AtomicPtr, Ordering};

use super::spa;
use crate::driver::ClockUpdate;

/// The stream's io areas. Set on the main thread, used on the data thread.
#[derive(Debug, Default)]
pub struct IoAreas {
    position: AtomicPtr<spa::spa_io_position>,
    rate_match: AtomicPtr<spa::spa_io_rate_match>,
}

impl IoAreas {
    /// Record an `io_changed` event (main thread). Areas that are too small count as removed.
    ///
    /// # Safety
    /// `area` must be NULL or point to an io area of type `id` of at least `size` bytes that
    /// stays valid until the next `io_changed` for `id` (PipeWire's contract).
    pub unsafe fn set(&self, id: u32, area: *mut c_void, size: u32) {
        let size = usize::try_from(size).unwrap_or(0);
        match id {
            spa::SPA_IO_Position => {
                let p = if size >= core::mem::size_of::<spa::spa_io_position>() {
                    area.cast()
                } else {
                    core::ptr::null_mut()
                };
                self.position.store(p, Ordering::Release);
            }
            spa::SPA_IO_RateMatch => {
                let p = if size >= core::mem::size_of::<spa::spa_io_rate_match>() {
                    area.cast()
                } else {
                    core::ptr::null_mut()
                };
                self.rate_match.store(p, Ordering::Release);
            }
            _ => {}
        }
    }

    /// The graph's current quantum and rate from the position clock: `(duration, rate)`, if
    /// known (both non-zero).
    pub fn quantum(&self) -> Option<(u64, u32)> {
        let p = self.position.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-NULL pointer is a live spa_io_position (see `set`); plain-old-data reads.
        let (duration, rate) = unsafe {
            (
                addr_of!((*p).clock.duration).read_volatile(),
                addr_of!((*p).clock.rate.denom).read_volatile(),
            )
        };
        (duration > 0 && rate > 0).then_some((duration, rate))
    }

    /// The position clock's `position` (0 without a position area).
    pub fn clock_position(&self) -> u64 {
        let p = self.position.load(Ordering::Acquire);
        if p.is_null() {
            return 0;
        }
        // SAFETY: as in `quantum`.
        unsafe { addr_of!((*p).clock.position).read_volatile() }
    }

    /// Driver: write this cycle's clock (data thread, only while driving).
    pub fn write_clock(&self, u: &ClockUpdate) {
        let p = self.position.load(Ordering::Acquire);
        if p.is_null() {
            return;
        }
        // SAFETY: as in `quantum`; while this stream drives, its data thread is the only writer
        // of these fields.
        unsafe {
            let c = addr_of_mut!((*p).clock);
            addr_of_mut!((*c).nsec).write_volatile(u.nsec);
            addr_of_mut!((*c).rate).write_volatile(spa::spa_fraction {
                num: 1,
                denom: u.rate,
            });
            addr_of_mut!((*c).position).write_volatile(u.position);
            addr_of_mut!((*c).duration).write_volatile(u.duration);
            addr_of_mut!((*c).delay).write_volatile(u.delay);
            addr_of_mut!((*c).rate_diff).write_volatile(u.rate_diff);
            addr_of_mut!((*c).next_nsec).write_volatile(u.next_nsec);
        }
        fence(Ordering::Release);
    }

    /// Follower: steer the resampler (`Some(rate)`) or leave it alone (`None`). Data thread.
    pub fn set_rate_match(&self, rate: Option<f64>) {
        let p = self.rate_match.load(Ordering::Acquire);
        if p.is_null() {
            return;
        }
        // SAFETY: a non-NULL pointer is a live spa_io_rate_match (see `set`).
        unsafe {
            let flags = addr_of!((*p).flags).read_volatile();
            match rate {
                Some(r) => {
                    addr_of_mut!((*p).rate).write_volatile(r);
                    addr_of_mut!((*p).flags)
                        .write_volatile(flags | spa::SPA_IO_RATE_MATCH_FLAG_ACTIVE);
                }
                None => {
                    if flags & spa::SPA_IO_RATE_MATCH_FLAG_ACTIVE != 0 {
                        addr_of_mut!((*p).rate).write_volatile(1.0);
                        addr_of_mut!((*p).flags)
                            .write_volatile(flags & !spa::SPA_IO_RATE_MATCH_FLAG_ACTIVE);
                    }
                }
            }
        }
        fence(Ordering::Release);
    }

    /// Whether a rate-match area is present.
    #[cfg(test)]
    pub fn has_rate_match(&self) -> bool {
        !self.rate_match.load(Ordering::Acquire).is_null()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_are_read_and_written_through_the_pointers() {
        let io = IoAreas::default();
        assert_eq!(io.quantum(), None);
        // SAFETY: a plain C struct of integers; all-zero is valid.
        let mut pos: spa::spa_io_position = unsafe { core::mem::zeroed() };
        pos.clock.duration = 1024;
        pos.clock.rate = spa::spa_fraction {
            num: 1,
            denom: 48000,
        };
        pos.clock.position = 77;
        let size = u32::try_from(core::mem::size_of_val(&pos)).unwrap();
        // SAFETY: `pos` outlives every use of `io` in this test.
        unsafe { io.set(spa::SPA_IO_Position, addr_of_mut!(pos).cast(), size) };
        assert_eq!(io.quantum(), Some((1024, 48000)));
        assert_eq!(io.clock_position(), 77);
        io.write_clock(&ClockUpdate {
            nsec: 5,
            rate: 44100,
            position: 1101,
            duration: 512,
            delay: 9,
            rate_diff: 1.001,
            next_nsec: 6,
        });
        // SAFETY: reading our own local through a valid pointer.
        let written = unsafe { addr_of!(pos.clock).read_volatile() };
        assert_eq!(
            (
                written.nsec,
                written.rate.denom,
                written.position,
                written.duration
            ),
            (5, 44100, 1101, 512)
        );
        assert_eq!((written.delay, written.next_nsec), (9, 6));
        assert!((written.rate_diff - 1.001).abs() < 1e-12);
        // A too-small area counts as none.
        // SAFETY: as above.
        // SAFETY: as above.
        unsafe { io.set(spa::SPA_IO_Position, addr_of_mut!(pos).cast(), 8) };
        assert_eq!(io.quantum(), None);

        // SAFETY: a plain C struct of numbers; all-zero is valid.
        let mut rm: spa::spa_io_rate_match = unsafe { core::mem::zeroed() };
        let size = u32::try_from(core::mem::size_of_val(&rm)).unwrap();
        assert!(!io.has_rate_match());
        // SAFETY: `rm` outlives every use of `io` in this test.
        unsafe { io.set(spa::SPA_IO_RateMatch, addr_of_mut!(rm).cast(), size) };
        io.set_rate_match(Some(0.999));
        // SAFETY: reading our own local through a valid pointer.
        let r = unsafe { addr_of!(rm).read_volatile() };
        assert_eq!(r.flags & spa::SPA_IO_RATE_MATCH_FLAG_ACTIVE, 1);
        assert!((r.rate - 0.999).abs() < 1e-12);
        io.set_rate_match(None);
        // SAFETY: reading our own local through a valid pointer.
        let r = unsafe { addr_of!(rm).read_volatile() };
        assert_eq!(r.flags, 0);
        assert_eq!(r.rate, 1.0);
    }
}
