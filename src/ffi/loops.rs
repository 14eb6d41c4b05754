//! Loops and loop sources: the daemon's main loop (events, timers) and the realtime data loop
//! (blocking invoke, timers added and removed on the data thread).

use core::ffi::{c_int, c_void};
use core::ptr::NonNull;
use std::os::fd::RawFd;

use super::{guard, pw, spa};

/// The interface methods and object of a loop's `spa_loop_utils`.
///
/// # Safety
/// `lp` must be a live `pw_loop`.
unsafe fn utils(
    lp: NonNull<pw::pw_loop>,
) -> Option<(&'static spa::spa_loop_utils_methods, *mut c_void)> {
    // SAFETY: the caller guarantees `lp` is live; its utils interface lives as long.
    unsafe {
        let u = (*lp.as_ptr()).utils;
        if u.is_null() {
            return None;
        }
        let cb = (*u).iface.cb;
        let m = cb.funcs.cast::<spa::spa_loop_utils_methods>();
        if m.is_null() {
            return None;
        }
        Some((&*m, cb.data))
    }
}

fn timespec(ns: u64) -> spa::timespec {
    spa::timespec {
        tv_sec: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
        tv_nsec: i64::try_from(ns % 1_000_000_000).unwrap_or(0),
    }
}

/// The daemon's main loop. Borrowed; main thread.
#[derive(Debug, Clone, Copy)]
pub struct MainLoop(NonNull<pw::pw_loop>);

impl MainLoop {
    /// # Safety
    /// `p` must be NULL or a loop that outlives every use of the wrapper.
    pub(crate) unsafe fn from_raw(p: *mut pw::pw_loop) -> Option<MainLoop> {
        NonNull::new(p).map(MainLoop)
    }

    /// An event source: `cb` runs on the main thread after [`Waker::wake`] (from any thread).
    pub fn add_event(self, cb: Box<dyn FnMut()>) -> Result<EventSource, String> {
        // SAFETY: the loop is live (type invariant).
        let (m, obj) = unsafe { utils(self.0) }.ok_or("main loop has no utils")?;
        let add = m.add_event.ok_or("main loop cannot add events")?;
        let mut cb = Box::new(cb);
        let data: *mut Box<dyn FnMut()> = &mut *cb;
        // SAFETY: `data` points into the heap box kept in the returned source until the source
        // is destroyed (Drop), so the callback never sees freed memory.
        let source = unsafe { add(obj, Some(on_event), data.cast()) };
        let source = NonNull::new(source).ok_or("cannot add an event source to the main loop")?;
        Ok(EventSource {
            lp: self.0,
            source,
            _cb: cb,
        })
    }

    /// A timer on the main loop; arm it with [`TimerSource::arm`].
    pub fn add_timer(self, cb: Box<dyn FnMut(u64)>) -> Result<TimerSource, String> {
        // SAFETY: the loop is live.
        unsafe { add_timer(self.0, cb) }
    }
}

unsafe extern "C" fn on_event(data: *mut c_void, _count: u64) {
    guard("main-loop event", (), || {
        // SAFETY: `data` is the boxed callback of a live EventSource (see `add_event`).
        let cb = unsafe { &mut *data.cast::<Box<dyn FnMut()>>() };
        cb();
    });
}

unsafe extern "C" fn on_timer(data: *mut c_void, expirations: u64) {
    guard("timer", (), || {
        // SAFETY: `data` is the boxed callback of a live TimerSource (see `add_timer`).
        let cb = unsafe { &mut *data.cast::<Box<dyn FnMut(u64)>>() };
        cb(expirations);
    });
}

/// # Safety
/// `lp` must be live, and this must run on the loop's thread (or while it is not running).
unsafe fn add_timer(
    lp: NonNull<pw::pw_loop>,
    cb: Box<dyn FnMut(u64)>,
) -> Result<TimerSource, String> {
    // SAFETY: the caller guarantees `lp` is live.
    let (m, obj) = unsafe { utils(lp) }.ok_or("loop has no utils")?;
    let add = m.add_timer.ok_or("loop cannot add timers")?;
    let mut cb = Box::new(cb);
    let data: *mut Box<dyn FnMut(u64)> = &mut *cb;
    // SAFETY: as in `add_event`: the callback box lives in the source until it is destroyed.
    let source = unsafe { add(obj, Some(on_timer), data.cast()) };
    let source = NonNull::new(source).ok_or("cannot add a timer")?;
    Ok(TimerSource {
        lp,
        source,
        _cb: cb,
    })
}

/// # Safety
/// `lp` and `source` must be live, and this must run on the loop's thread (or while the loop is
/// not running). `source` must not be used afterwards.
unsafe fn destroy_source(lp: NonNull<pw::pw_loop>, source: NonNull<spa::spa_source>) {
    // SAFETY: the caller guarantees `lp` is live.
    if let Some((m, obj)) = unsafe { utils(lp) } {
        if let Some(destroy) = m.destroy_source {
            // SAFETY: `source` belongs to this loop and is destroyed once.
            unsafe { destroy(obj, source.as_ptr()) };
        }
    }
}

/// An event source on the main loop. Dropping it removes it (main thread).
pub struct EventSource {
    lp: NonNull<pw::pw_loop>,
    source: NonNull<spa::spa_source>,
    _cb: Box<Box<dyn FnMut()>>,
}

impl core::fmt::Debug for EventSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventSource").finish_non_exhaustive()
    }
}

impl EventSource {
    /// A handle that signals this source from any thread. It must not be used after the source
    /// is dropped: whoever holds it (a frontend thread) is stopped before that.
    pub fn waker(&self) -> Waker {
        Waker {
            lp: self.lp,
            source: self.source,
        }
    }
}

impl Drop for EventSource {
    fn drop(&mut self) {
        // SAFETY: main loop and source are live; we are on the main thread (owner's thread).
        unsafe { destroy_source(self.lp, self.source) };
    }
}

/// Signals an [`EventSource`] from any thread (an eventfd write).
#[derive(Debug, Clone)]
pub struct Waker {
    lp: NonNull<pw::pw_loop>,
    source: NonNull<spa::spa_source>,
}

// SAFETY: `signal_event` only writes to the source's eventfd, which is thread-safe; the module
// stops every thread holding a Waker before it destroys the source (see `EventSource::waker`).
unsafe impl Send for Waker {}
// SAFETY: as above; `wake` takes `&self` and does nothing but the eventfd write.
unsafe impl Sync for Waker {}

impl Waker {
    /// Wake the main loop: the event source's callback runs there soon.
    pub fn wake(&self) {
        // SAFETY: loop and source are live (see the Send impl).
        unsafe {
            if let Some((m, obj)) = utils(self.lp) {
                if let Some(signal) = m.signal_event {
                    signal(obj, self.source.as_ptr());
                }
            }
        }
    }
}

unsafe extern "C" fn on_io(data: *mut c_void, _fd: c_int, _mask: u32) {
    guard("io", (), || {
        // SAFETY: `data` is the boxed callback of a live IoSource (see `add_io_in_thread`).
        let cb = unsafe { &mut *data.cast::<Box<dyn FnMut() + Send>>() };
        cb();
    });
}

/// An io source on the data loop; dropped on the data thread (inside [`DataLoop::invoke`]).
pub struct IoSource {
    lp: NonNull<pw::pw_loop>,
    source: NonNull<spa::spa_source>,
    _cb: Box<Box<dyn FnMut() + Send>>,
}

impl core::fmt::Debug for IoSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IoSource").finish_non_exhaustive()
    }
}

// SAFETY: the source is created, used and destroyed on the data thread only (the owner keeps
// it in an RtCell reached through blocking invokes); moving the handle does nothing by itself.
unsafe impl Send for IoSource {}

impl Drop for IoSource {
    fn drop(&mut self) {
        // SAFETY: loop and source are live; the owner drops it on the data thread (type
        // contract).
        unsafe { destroy_source(self.lp, self.source) };
    }
}

/// A timer source. A main-loop timer is dropped on the main thread; a data-loop timer must be
/// dropped on the data thread (inside [`DataLoop::invoke`]).
pub struct TimerSource {
    lp: NonNull<pw::pw_loop>,
    source: NonNull<spa::spa_source>,
    _cb: Box<Box<dyn FnMut(u64)>>,
}

impl core::fmt::Debug for TimerSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TimerSource").finish_non_exhaustive()
    }
}

impl TimerSource {
    fn update(&self, value_ns: u64, interval_ns: u64, absolute: bool) -> c_int {
        let mut value = timespec(value_ns);
        let mut interval = timespec(interval_ns);
        // SAFETY: loop and source are live; the timespecs are valid for the call; called on the
        // loop's thread (type contract).
        unsafe {
            match utils(self.lp) {
                Some((m, obj)) => match m.update_timer {
                    Some(update) => update(
                        obj,
                        self.source.as_ptr(),
                        &mut value,
                        &mut interval,
                        absolute,
                    ),
                    None => -libc::ENOTSUP,
                },
                None => -libc::ENOTSUP,
            }
        }
    }

    /// Fire once at CLOCK_MONOTONIC time `at_ns` (0 is bumped to 1: 0 disarms).
    pub fn arm_at(&self, at_ns: u64) -> c_int {
        self.update(at_ns.max(1), 0, true)
    }

    /// Fire every `period_ns`, starting `period_ns` from now.
    pub fn arm_periodic(&self, period_ns: u64) -> c_int {
        self.update(period_ns.max(1), period_ns.max(1), false)
    }

    /// Stop firing.
    pub fn disarm(&self) -> c_int {
        self.update(0, 0, false)
    }
}

impl Drop for TimerSource {
    fn drop(&mut self) {
        // SAFETY: loop and source are live; the owner drops it on the loop's thread (type
        // contract, upheld by the node for data-loop timers).
        unsafe { destroy_source(self.lp, self.source) };
    }
}

/// The realtime data loop. Borrowed; the handle may be used from the main thread.
#[derive(Debug, Clone, Copy)]
pub struct DataLoop {
    dl: NonNull<pw::pw_data_loop>,
    lp: NonNull<pw::pw_loop>,
}

// SAFETY: the handle is two pointers to objects that outlive the module; the operations it
// offers (`invoke` from the main thread, `add_timer_in_thread` from within an invoke) state which
// thread may call them, so moving the handle does nothing by itself.
unsafe impl Send for DataLoop {}
// SAFETY: as above: sharing the handle gives access to the same thread-documented operations.
unsafe impl Sync for DataLoop {}

impl DataLoop {
    /// # Safety
    /// `p` must be NULL or a data loop that outlives every use of the wrapper.
    pub(crate) unsafe fn from_raw(p: *mut pw::pw_data_loop) -> Option<DataLoop> {
        let dl = NonNull::new(p)?;
        // SAFETY: the caller guarantees `dl` is live.
        let lp = NonNull::new(unsafe { pw::pw_data_loop_get_loop(dl.as_ptr()) })?;
        Some(DataLoop { dl, lp })
    }

    /// Run `f` on the data thread and wait for it (or run it right here if the data loop is not
    /// running or this is the data thread). Only the main thread may call this (0.3.65's invoke
    /// queue has a single producer). Returns 0 or a negative errno (`f` did not run).
    pub fn invoke<F: FnMut() + Send>(self, f: &mut F) -> c_int {
        let mut dynf: &mut dyn FnMut() = f;
        let user: *mut &mut dyn FnMut() = &mut dynf;
        // SAFETY: the call blocks until `invoke_trampoline` ran (or failed to queue), so `user`
        // and the closure it points to outlive their use; the data loop is live.
        unsafe {
            pw::pw_data_loop_invoke(
                self.dl.as_ptr(),
                Some(invoke_trampoline),
                0,
                core::ptr::null(),
                0,
                true,
                user.cast(),
            )
        }
    }

    /// Watch `fd` for input on the data loop: `cb` runs on the data thread while it is
    /// readable. Call only from inside [`DataLoop::invoke`] (on the data thread); drop the
    /// returned source there too, and before `fd` is closed.
    pub fn add_io_in_thread(
        self,
        fd: RawFd,
        cb: Box<dyn FnMut() + Send>,
    ) -> Result<IoSource, String> {
        // SAFETY: the loop is live (type invariant).
        let (m, obj) = unsafe { utils(self.lp) }.ok_or("loop has no utils")?;
        let add = m.add_io.ok_or("loop cannot add io sources")?;
        let mut cb: Box<Box<dyn FnMut() + Send>> = Box::new(cb);
        let data: *mut Box<dyn FnMut() + Send> = &mut *cb;
        // SAFETY: the caller is on the data thread (contract above); the callback box lives in
        // the returned source until the source is destroyed; the fd is not closed by the loop.
        let source = unsafe { add(obj, fd, spa::SPA_IO_IN, false, Some(on_io), data.cast()) };
        let source = NonNull::new(source).ok_or("cannot add an io source")?;
        Ok(IoSource {
            lp: self.lp,
            source,
            _cb: cb,
        })
    }

    /// A timer on the data loop. Call only from inside [`DataLoop::invoke`] (on the data thread);
    /// drop the returned source there too.
    pub fn add_timer_in_thread(
        self,
        cb: Box<dyn FnMut(u64) + Send>,
    ) -> Result<TimerSource, String> {
        // SAFETY: the loop is live; the caller is on the data thread (contract above).
        unsafe { add_timer(self.lp, cb) }
    }
}

unsafe extern "C" fn invoke_trampoline(
    _loop: *mut spa::spa_loop,
    _async: bool,
    _seq: u32,
    _data: *const c_void,
    _size: usize,
    user_data: *mut c_void,
) -> c_int {
    guard("data-loop invoke", -libc::EIO, || {
        // SAFETY: `user_data` is the `&mut dyn FnMut()` on the stack of the blocked `invoke`.
        let f = unsafe { &mut *user_data.cast::<&mut dyn FnMut()>() };
        f();
        0
    })
}
