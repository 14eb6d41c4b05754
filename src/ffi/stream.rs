//! A `pw_stream` owned by the module, with its listener, its optional data-loop timer, and the
//! §5.5 teardown rules: the context may destroy the stream first (daemon shutdown); the `destroy`
//! event then removes our hook and timer and the wrapper forgets the pointer.

use core::ffi::{c_char, c_void, CStr};
use core::ptr::NonNull;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

use pipewire::spa::pod::Pod;

use super::cells::RtCell;
use super::context::CoreConnection;
use super::io::IoAreas;
use super::loops::{DataLoop, IoSource, TimerSource};
use super::{cstring, guard, pw, spa, Props};

/// `SPA_DIRECTION_INPUT`: a stream that consumes (a sink).
pub const DIRECTION_INPUT: u32 = spa::SPA_DIRECTION_INPUT;
/// `SPA_DIRECTION_OUTPUT`: a stream that produces (a source).
pub const DIRECTION_OUTPUT: u32 = spa::SPA_DIRECTION_OUTPUT;
/// `PW_STREAM_FLAG_MAP_BUFFERS`.
pub const FLAG_MAP_BUFFERS: u32 = pw::pw_stream_flags_PW_STREAM_FLAG_MAP_BUFFERS;
/// `PW_STREAM_FLAG_RT_PROCESS`.
pub const FLAG_RT_PROCESS: u32 = pw::pw_stream_flags_PW_STREAM_FLAG_RT_PROCESS;
/// `PW_STREAM_FLAG_DRIVER`.
pub const FLAG_DRIVER: u32 = pw::pw_stream_flags_PW_STREAM_FLAG_DRIVER;

/// A stream state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStateKind {
    /// Error.
    Error,
    /// Not connected.
    Unconnected,
    /// Connecting.
    Connecting,
    /// Connected, not running.
    Paused,
    /// Running.
    Streaming,
}

impl StreamStateKind {
    fn from_raw(s: pw::pw_stream_state) -> Self {
        match s {
            pw::pw_stream_state_PW_STREAM_STATE_UNCONNECTED => StreamStateKind::Unconnected,
            pw::pw_stream_state_PW_STREAM_STATE_CONNECTING => StreamStateKind::Connecting,
            pw::pw_stream_state_PW_STREAM_STATE_PAUSED => StreamStateKind::Paused,
            pw::pw_stream_state_PW_STREAM_STATE_STREAMING => StreamStateKind::Streaming,
            _ => StreamStateKind::Error,
        }
    }
}

/// What to do with the stream's data-loop timer after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerCmd {
    /// Leave it as it is.
    Keep,
    /// Fire once at this CLOCK_MONOTONIC time (ns).
    ArmAt(u64),
    /// Stop it.
    Disarm,
}

fn apply_timer(t: &TimerSource, cmd: TimerCmd) {
    match cmd {
        TimerCmd::Keep => {}
        TimerCmd::ArmAt(ns) => {
            t.arm_at(ns);
        }
        TimerCmd::Disarm => {
            t.disarm();
        }
    }
}

/// What a stream's owner handles. Every method runs inside a panic guard.
pub trait StreamEvents: Send + Sync + 'static {
    /// The io areas to record `io_changed` in.
    fn io_areas(&self) -> &IoAreas;
    /// The stream is being destroyed (by us or by the context). Main thread.
    fn destroyed(&self);
    /// The state changed. Main thread.
    fn state_changed(
        &self,
        s: StreamPtr<'_>,
        old: StreamStateKind,
        new: StreamStateKind,
        error: Option<&str>,
    ) -> TimerCmd;
    /// A param changed (`SPA_PARAM_Format` with the negotiated format, or `None` when cleared).
    /// Main thread.
    fn param_changed(&self, s: StreamPtr<'_>, id: u32, param: Option<&Pod>) -> TimerCmd;
    /// An io area changed (already recorded in [`StreamEvents::io_areas`]). Main thread.
    fn io_changed(&self, s: StreamPtr<'_>, id: u32) -> TimerCmd;
    /// A graph cycle: move data. Data thread (`RT_PROCESS`).
    fn process(&self, s: StreamPtr<'_>);
    /// The stream's data-loop timer fired. Data thread.
    fn timer(&self, s: StreamPtr<'_>, expirations: u64) -> TimerCmd;
    /// The fd given to [`Stream::watch_fd`] is readable. Data thread.
    fn fd_ready(&self);
}

/// The stream inside a callback. Not `Send`: it cannot be kept beyond the callback.
#[derive(Debug, Clone, Copy)]
pub struct StreamPtr<'a> {
    ptr: NonNull<pw::pw_stream>,
    _life: core::marker::PhantomData<&'a ()>,
}

impl<'a> StreamPtr<'a> {
    /// Whether this stream drives its graph now.
    pub fn is_driving(self) -> bool {
        // SAFETY: the stream is live for the callback's duration ('a).
        unsafe { pw::pw_stream_is_driving(self.ptr.as_ptr()) }
    }

    /// Start a graph cycle (driver). Data thread or main thread only. Returns 0 or -errno.
    pub fn trigger_process(self) -> i32 {
        // SAFETY: as above.
        unsafe { pw::pw_stream_trigger_process(self.ptr.as_ptr()) }
    }

    /// Set PipeWire's software volume of this stream (the adapter's `softVolumes`, one value
    /// per channel, and `softMute`), leaving `channelVolumes` to the backend. Main thread.
    pub fn set_soft_volume(self, volumes: &[f32], mute: bool) -> i32 {
        let mut v: Vec<f32> = volumes.to_vec();
        let mut m = [if mute { 1.0f32 } else { 0.0 }];
        let n = u32::try_from(v.len()).unwrap_or(0);
        // SAFETY: the stream is live; the variadic list is (id, count, float*) triples ended by
        // a 0 id, as pw_stream_set_control reads it; the arrays outlive the call.
        unsafe {
            pw::pw_stream_set_control(
                self.ptr.as_ptr(),
                spa::SPA_PROP_softVolumes,
                n,
                v.as_mut_ptr(),
                spa::SPA_PROP_softMute,
                1u32,
                m.as_mut_ptr(),
                0u32,
            )
        }
    }

    /// Replace the params with the ids of `params` (e.g. `SPA_PARAM_Latency`). Main thread.
    pub fn update_params(self, params: &[&Pod]) -> i32 {
        let mut raw: Vec<*const spa::spa_pod> =
            params.iter().map(|p| p.as_raw_ptr().cast_const()).collect();
        // SAFETY: the stream is live; the pods outlive the call (PipeWire copies them).
        unsafe {
            pw::pw_stream_update_params(
                self.ptr.as_ptr(),
                raw.as_mut_ptr(),
                u32::try_from(raw.len()).unwrap_or(0),
            )
        }
    }

    /// Take a buffer to fill (output) or to read (input); it is queued back when dropped.
    pub fn dequeue(self) -> Option<ProcessBuffer<'a>> {
        // SAFETY: the stream is live; dequeue is RT-safe.
        let b = unsafe { pw::pw_stream_dequeue_buffer(self.ptr.as_ptr()) };
        NonNull::new(b).map(|buf| ProcessBuffer {
            stream: self.ptr,
            buf,
            _life: core::marker::PhantomData,
        })
    }
}

/// A dequeued buffer; queued back on drop.
#[derive(Debug)]
pub struct ProcessBuffer<'a> {
    stream: NonNull<pw::pw_stream>,
    buf: NonNull<pw::pw_buffer>,
    _life: core::marker::PhantomData<&'a ()>,
}

impl ProcessBuffer<'_> {
    fn data0(&self) -> Option<NonNull<spa::spa_data>> {
        // SAFETY: `buf` is a dequeued, live pw_buffer; its spa_buffer and datas array are owned
        // by the stream while dequeued.
        unsafe {
            let sb = (*self.buf.as_ptr()).buffer;
            if sb.is_null() || (*sb).n_datas == 0 {
                return None;
            }
            NonNull::new((*sb).datas)
        }
    }

    /// Frames the graph asks for (0 = no suggestion).
    pub fn requested(&self) -> u64 {
        // SAFETY: as in `data0`.
        unsafe { (*self.buf.as_ptr()).requested }
    }

    /// The mapped memory of the first data block (`maxsize` bytes).
    pub fn memory(&mut self) -> Option<&mut [u8]> {
        let d = self.data0()?;
        // SAFETY: with MAP_BUFFERS `data` points to `maxsize` mapped bytes owned by the stream
        // while the buffer is dequeued; `&mut self` makes the slice unique.
        unsafe {
            let data = (*d.as_ptr()).data;
            if data.is_null() {
                return None;
            }
            let len = usize::try_from((*d.as_ptr()).maxsize).ok()?;
            Some(core::slice::from_raw_parts_mut(data.cast::<u8>(), len))
        }
    }

    /// The chunk: `(offset, size, stride)` of the valid data.
    pub fn chunk(&self) -> Option<(u32, u32, i32)> {
        let d = self.data0()?;
        // SAFETY: as in `data0`; the chunk pointer is checked.
        unsafe {
            let c = (*d.as_ptr()).chunk;
            if c.is_null() {
                return None;
            }
            Some(((*c).offset, (*c).size, (*c).stride))
        }
    }

    /// Set the chunk after writing.
    pub fn set_chunk(&mut self, offset: u32, size: u32, stride: i32) {
        let Some(d) = self.data0() else { return };
        // SAFETY: as in `chunk`.
        unsafe {
            let c = (*d.as_ptr()).chunk;
            if c.is_null() {
                return;
            }
            (*c).offset = offset;
            (*c).size = size;
            (*c).stride = stride;
            (*c).flags = 0;
        }
    }
}

impl Drop for ProcessBuffer<'_> {
    fn drop(&mut self) {
        // SAFETY: the buffer was dequeued from this live stream and is queued exactly once.
        unsafe { pw::pw_stream_queue_buffer(self.stream.as_ptr(), self.buf.as_ptr()) };
    }
}

struct Inner<H: StreamEvents> {
    /// Written by PipeWire and by `on_destroy` (main thread) while the data thread may hold a
    /// shared reference to `Inner`, hence the cell.
    hook: core::cell::UnsafeCell<spa::spa_hook>,
    events: pw::pw_stream_events,
    /// NULL once destroyed.
    ptr: AtomicPtr<pw::pw_stream>,
    handler: Arc<H>,
    data_loop: DataLoop,
    /// The data-loop timer: created, armed and destroyed on the data thread.
    timer: RtCell<Option<TimerSource>>,
    /// The watched fd's io source: created and destroyed on the data thread.
    io: RtCell<Option<IoSource>>,
}

/// A raw pointer that may cross to the data thread (the pointee outlives every use there).
struct SendPtr<T>(*const T);
// SAFETY: only used to reach the parts of `Inner` that may be shared between threads — the
// atomic stream pointer, the RtCell timer slot, the `Arc<H: Sync>` handler and the Copy data-loop
// handle (the hook cell is touched on the main thread only) — and `Inner` outlives the timer and
// the blocking invokes that carry this pointer (see `Stream`).
unsafe impl<T> Send for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole Send wrapper, not the raw field).
    fn get(&self) -> *const T {
        self.0
    }
}

impl<H: StreamEvents> Inner<H> {
    fn stream_ptr(&self) -> Option<StreamPtr<'_>> {
        NonNull::new(self.ptr.load(Ordering::Acquire)).map(|ptr| StreamPtr {
            ptr,
            _life: core::marker::PhantomData,
        })
    }

    /// Apply `cmd` to the timer from the main thread (through a blocking invoke).
    fn command_timer(&self, cmd: TimerCmd) {
        if cmd == TimerCmd::Keep {
            return;
        }
        let target = SendPtr(self as *const Inner<H>);
        let mut f = move || {
            // SAFETY: `self` is alive for this blocking call.
            let inner = unsafe { &*target.get() };
            inner.timer.with(|t| {
                if let Some(t) = t.as_ref() {
                    apply_timer(t, cmd);
                }
            });
        };
        let rc = self.data_loop.invoke(&mut f);
        if rc < 0 {
            crate::log::warn(&format!("cannot command the driver timer: error {rc}"));
        }
    }

    /// Destroy the timer and the io source on the data thread (or here if the data loop is
    /// not running).
    fn remove_timer(&self) {
        let target = SendPtr(self as *const Inner<H>);
        let mut f = move || {
            // SAFETY: `self` is alive for this blocking call.
            let inner = unsafe { &*target.get() };
            inner.timer.with(|t| t.take());
            inner.io.with(|t| t.take());
        };
        let rc = self.data_loop.invoke(&mut f);
        if rc < 0 {
            crate::log::warn(&format!("cannot remove the driver timer: error {rc}"));
        }
    }
}

unsafe extern "C" fn on_destroy<H: StreamEvents>(data: *mut c_void) {
    guard("stream destroy", (), || {
        // SAFETY: `data` is the stream's `Inner<H>`, alive while the hook is registered.
        let inner = unsafe { &*data.cast::<Inner<H>>() };
        // SAFETY: our hook is linked; removing the hook being emitted is allowed, and it is
        // never removed again (pw_stream_destroy cleans the list after this).
        unsafe { spa::spa_hook_remove(inner.hook.get()) };
        inner.remove_timer();
        inner.ptr.store(core::ptr::null_mut(), Ordering::Release);
        inner.handler.destroyed();
    });
}

unsafe extern "C" fn on_state_changed<H: StreamEvents>(
    data: *mut c_void,
    old: pw::pw_stream_state,
    new: pw::pw_stream_state,
    error: *const c_char,
) {
    guard("stream state", (), || {
        // SAFETY: as in `on_destroy`.
        let inner = unsafe { &*data.cast::<Inner<H>>() };
        let err = if error.is_null() {
            None
        } else {
            // SAFETY: PipeWire passes a NUL-terminated string.
            Some(
                unsafe { CStr::from_ptr(error) }
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        if let Some(s) = inner.stream_ptr() {
            let cmd = inner.handler.state_changed(
                s,
                StreamStateKind::from_raw(old),
                StreamStateKind::from_raw(new),
                err.as_deref(),
            );
            inner.command_timer(cmd);
        }
    });
}

unsafe extern "C" fn on_param_changed<H: StreamEvents>(
    data: *mut c_void,
    id: u32,
    param: *const spa::spa_pod,
) {
    guard("stream param", (), || {
        // SAFETY: as in `on_destroy`.
        let inner = unsafe { &*data.cast::<Inner<H>>() };
        let pod = if param.is_null() {
            None
        } else {
            // SAFETY: PipeWire passes a valid pod for the duration of the call.
            Some(unsafe { Pod::from_raw(param) })
        };
        if let Some(s) = inner.stream_ptr() {
            let cmd = inner.handler.param_changed(s, id, pod);
            inner.command_timer(cmd);
        }
    });
}

unsafe extern "C" fn on_io_changed<H: StreamEvents>(
    data: *mut c_void,
    id: u32,
    area: *mut c_void,
    size: u32,
) {
    guard("stream io", (), || {
        // SAFETY: as in `on_destroy`.
        let inner = unsafe { &*data.cast::<Inner<H>>() };
        // SAFETY: PipeWire's io_changed contract: `area` is NULL or an io area of type `id` and
        // `size` bytes, valid until the next io_changed for `id`.
        unsafe { inner.handler.io_areas().set(id, area, size) };
        if let Some(s) = inner.stream_ptr() {
            let cmd = inner.handler.io_changed(s, id);
            inner.command_timer(cmd);
        }
    });
}

unsafe extern "C" fn on_process<H: StreamEvents>(data: *mut c_void) {
    guard("stream process", (), || {
        // SAFETY: `data` is the `Inner<H>` (also reached through the stream's rt_callbacks after
        // our hook is removed; `Inner` outlives pw_stream_destroy, see `Stream`).
        let inner = unsafe { &*data.cast::<Inner<H>>() };
        if let Some(s) = inner.stream_ptr() {
            inner.handler.process(s);
        }
    });
}

/// A stream of the module. Dropping it destroys the stream (main thread) unless the context
/// already did.
pub struct Stream<H: StreamEvents> {
    inner: Box<Inner<H>>,
}

impl<H: StreamEvents> core::fmt::Debug for Stream<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stream")
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl<H: StreamEvents> Stream<H> {
    /// Create a stream named `name` with `props` on `core`; `handler` gets its events.
    pub fn new(
        core: &CoreConnection,
        name: &str,
        props: Props,
        handler: Arc<H>,
        data_loop: DataLoop,
    ) -> Result<Stream<H>, String> {
        let core_ptr = core.raw().ok_or("the core connection is gone")?;
        let cname = cstring(name);
        // SAFETY: the core is live; pw_stream_new takes ownership of the properties.
        let s = unsafe { pw::pw_stream_new(core_ptr.as_ptr(), cname.as_ptr(), props.into_raw()) };
        let s = NonNull::new(s).ok_or_else(|| {
            format!(
                "cannot create stream {name}: {}",
                std::io::Error::last_os_error()
            )
        })?;
        // SAFETY: pw_stream_events is a version number and optional callbacks.
        let events = unsafe { super::empty_events::<pw::pw_stream_events>() };
        let mut inner = Box::new(Inner {
            hook: core::cell::UnsafeCell::new(super::new_hook()),
            events,
            ptr: AtomicPtr::new(s.as_ptr()),
            handler,
            data_loop,
            timer: RtCell::new(None),
            io: RtCell::new(None),
        });
        inner.events.version = pw::PW_VERSION_STREAM_EVENTS;
        inner.events.destroy = Some(on_destroy::<H>);
        inner.events.state_changed = Some(on_state_changed::<H>);
        inner.events.param_changed = Some(on_param_changed::<H>);
        inner.events.io_changed = Some(on_io_changed::<H>);
        inner.events.process = Some(on_process::<H>);
        let p: *mut Inner<H> = &mut *inner;
        // SAFETY: the stream is live; hook, events and data live in `inner` at stable heap
        // addresses until after the stream is destroyed (see Drop).
        unsafe {
            pw::pw_stream_add_listener(
                s.as_ptr(),
                (*p).hook.get(),
                core::ptr::addr_of!((*p).events),
                p.cast(),
            );
        }
        Ok(Stream { inner })
    }

    /// Whether the stream still exists.
    pub fn is_alive(&self) -> bool {
        !self.inner.ptr.load(Ordering::Acquire).is_null()
    }

    /// Connect in `direction` with `flags`, offering `params`. Returns 0 or -errno.
    pub fn connect(&self, direction: u32, flags: u32, params: &[&Pod]) -> i32 {
        let s = self.inner.ptr.load(Ordering::Acquire);
        if s.is_null() {
            return -libc::ENODEV;
        }
        let mut raw: Vec<*const spa::spa_pod> =
            params.iter().map(|p| p.as_raw_ptr().cast_const()).collect();
        // SAFETY: the stream is live; the pods outlive the call (PipeWire copies them).
        unsafe {
            pw::pw_stream_connect(
                s,
                direction,
                pw::PW_ID_ANY,
                flags,
                raw.as_mut_ptr(),
                u32::try_from(raw.len()).unwrap_or(0),
            )
        }
    }

    /// Watch `fd` on the data loop ([`StreamEvents::fd_ready`] while readable) instead of the fd
    /// watched so far; `None` stops watching. The old source is gone when this returns, so the
    /// old fd may be closed then. Main thread.
    pub fn watch_fd(&self, fd: Option<RawFd>) -> Result<(), String> {
        let target = SendPtr(core::ptr::addr_of!(*self.inner));
        let dl = self.inner.data_loop;
        let mut result: Result<(), String> = Err("the data loop did not run the request".into());
        let res = &mut result;
        let mut f = move || {
            // SAFETY: `self.inner` is alive for this blocking call.
            let inner = unsafe { &*target.get() };
            let Some(old) = inner.io.with(|slot| slot.take()) else {
                *res = Err("io slot busy".to_owned());
                return;
            };
            drop(old);
            let Some(fd) = fd else {
                *res = Ok(());
                return;
            };
            let for_io = SendPtr(target.get());
            let cb = Box::new(move || {
                // SAFETY: `Inner` outlives its io source: the source is destroyed (on this
                // thread) before `Inner` is dropped — on destroy, in `Stream::drop` or here.
                let inner = unsafe { &*for_io.get() };
                inner.handler.fd_ready();
            });
            *res = dl.add_io_in_thread(fd, cb).and_then(|src| {
                inner
                    .io
                    .with(|slot| *slot = Some(src))
                    .ok_or_else(|| "io slot busy".to_owned())
            });
        };
        let rc = dl.invoke(&mut f);
        if rc < 0 {
            return Err(format!("data-loop invoke failed: {rc}"));
        }
        result
    }

    /// Activate or deactivate the stream (an inactive node is not scheduled). Main thread.
    pub fn set_active(&self, active: bool) -> i32 {
        let s = self.inner.ptr.load(Ordering::Acquire);
        if s.is_null() {
            return -libc::ENODEV;
        }
        // SAFETY: the stream is live and ours.
        unsafe { pw::pw_stream_set_active(s, active) }
    }

    /// The stream inside a main-thread call (for [`StreamPtr`] methods), if it is alive.
    pub fn with_ptr<R>(&self, f: impl FnOnce(StreamPtr<'_>) -> R) -> Option<R> {
        self.inner.stream_ptr().map(f)
    }

    /// Create the data-loop timer (disarmed) whose ticks go to [`StreamEvents::timer`].
    pub fn add_timer(&self) -> Result<(), String> {
        let target = SendPtr(core::ptr::addr_of!(*self.inner));
        let dl = self.inner.data_loop;
        let mut result: Result<(), String> = Err("the data loop did not run the request".into());
        let res = &mut result;
        let mut f = move || {
            let for_timer = SendPtr(target.get());
            let cb = Box::new(move |expirations: u64| {
                // SAFETY: `Inner` outlives its timer: the timer is destroyed (on this thread)
                // before `Inner` is dropped — on destroy or in `Stream::drop`.
                let inner = unsafe { &*for_timer.get() };
                if let Some(s) = inner.stream_ptr() {
                    let cmd = inner.handler.timer(s, expirations);
                    inner.timer.with(|t| {
                        if let Some(t) = t.as_ref() {
                            apply_timer(t, cmd);
                        }
                    });
                }
            });
            // SAFETY: `self.inner` is alive for this blocking call.
            let inner = unsafe { &*target.get() };
            *res = dl.add_timer_in_thread(cb).and_then(|t| {
                inner
                    .timer
                    .with(|slot| *slot = Some(t))
                    .ok_or_else(|| "timer slot busy".to_owned())
            });
        };
        let rc = dl.invoke(&mut f);
        if rc < 0 {
            return Err(format!("data-loop invoke failed: {rc}"));
        }
        result
    }
}

impl<H: StreamEvents> Drop for Stream<H> {
    fn drop(&mut self) {
        let s = self.inner.ptr.load(Ordering::Acquire);
        if s.is_null() {
            return;
        }
        // SAFETY: the stream is live and ours; destroying it emits `destroy` to our hook
        // (`on_destroy` removes the hook and the timer and clears `ptr`) and disconnects the
        // node synchronously, so no callback can reach `inner` after this returns.
        unsafe { pw::pw_stream_destroy(s) };
        self.inner
            .ptr
            .store(core::ptr::null_mut(), Ordering::Release);
    }
}
