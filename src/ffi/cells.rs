//! Interior-mutability cells for state shared by the main thread and the data thread under a
//! thread-ownership discipline, checked at run time instead of trusted.
//!
//! - [`RtCell`]: state used by one thread at a time (the data thread, or the main thread through
//!   a blocking invoke while the data thread waits). Access is a try-borrow on an atomic flag: it
//!   never blocks, never allocates; a contended or re-entrant access gets `None`.
//! - [`MainCell`]: state of the main thread only; an access from any other thread gets `None`.

use core::cell::{RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;

/// State owned by one thread at a time; see the module documentation.
#[derive(Debug)]
pub struct RtCell<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through `with`, which hands out one `&mut T` at a time
// (guarded by `busy` with acquire/release ordering), so moving accesses between threads is
// like moving the value: `T: Send` suffices.
unsafe impl<T: Send> Sync for RtCell<T> {}

impl<T> RtCell<T> {
    /// A cell holding `value`.
    pub const fn new(value: T) -> Self {
        RtCell {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Run `f` with exclusive access, or return `None` (without waiting) if another access is
    /// in progress.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _release = Release(&self.busy);
        // SAFETY: `busy` was false and is now ours until `_release` drops, so no other `&mut T`
        // exists; the acquire above orders us after the previous holder's release.
        Some(f(unsafe { &mut *self.value.get() }))
    }

    /// The value, consuming the cell.
    #[cfg(test)]
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

/// State of the thread that created it (the main thread); see the module documentation.
#[derive(Debug)]
pub struct MainCell<T> {
    owner: ThreadId,
    value: RefCell<T>,
}

// SAFETY: the RefCell is only reached by `with`, which checks that the caller is the owner
// thread; other threads can hold a `&MainCell` but never touch the value. `T: Send` because the
// value may be dropped on whatever thread drops the cell.
unsafe impl<T: Send> Sync for MainCell<T> {}

impl<T> MainCell<T> {
    /// A cell owned by the calling thread.
    pub fn new(value: T) -> Self {
        MainCell {
            owner: std::thread::current().id(),
            value: RefCell::new(value),
        }
    }

    /// Run `f` with the value if called on the owner thread and not re-entrantly; else `None`.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if std::thread::current().id() != self.owner {
            return None;
        }
        let mut v = self.value.try_borrow_mut().ok()?;
        Some(f(&mut v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn rt_cell_is_exclusive_and_reentrancy_is_refused() {
        let c = RtCell::new(1);
        assert_eq!(c.with(|v| *v + 1), Some(2));
        let inner = c.with(|v| {
            *v = 5;
            c.with(|_| ())
        });
        assert_eq!(inner, Some(None), "re-entrant access refused");
        assert_eq!(c.with(|v| *v), Some(5), "released after use");
        assert_eq!(c.into_inner(), 5);
    }

    #[test]
    fn rt_cell_moves_between_threads() {
        let c = Arc::new(RtCell::new(Vec::<u32>::new()));
        let c2 = Arc::clone(&c);
        std::thread::spawn(move || c2.with(|v| v.push(7)))
            .join()
            .unwrap();
        assert_eq!(c.with(|v| v.clone()), Some(vec![7]));
    }

    #[test]
    fn main_cell_refuses_other_threads_and_reentrancy() {
        let c = Arc::new(MainCell::new(3));
        let c2 = Arc::clone(&c);
        let other = std::thread::spawn(move || c2.with(|v| *v)).join().unwrap();
        assert_eq!(other, None);
        assert_eq!(c.with(|v| *v), Some(3));
        assert_eq!(c.with(|_| c.with(|_| ())), Some(None));
    }
}
