//! The only place with `unsafe`: the thin layer over PipeWire's C API.
//!
//! Everything above this module is safe Rust. The rules this layer encodes:
//!
//! - **Panics never cross into C.** Every `extern "C"` function here runs its body through
//!   [`guard`], which catches a panic, logs it once and returns a neutral value.
//! - **Borrowed vs owned.** The module, its context and the context's loops are *borrowed*: they
//!   outlive the module. The core connection, the streams and the loop sources are *owned* by
//!   the module, but the context may destroy the core and its streams behind our back (daemon
//!   shutdown, `pipewire-module.md` §5.5); their `destroy` events are watched and the wrappers then
//!   forget the pointer instead of freeing it again.
//! - **Threads.** Main-loop objects are touched on the main thread only. Data-loop sources are
//!   added and removed *on* the data thread through a blocking invoke ([`DataLoop::invoke`]),
//!   which runs in the caller's thread when the data loop is not running.

mod cells;
mod context;
mod entry;
mod io;
mod log;
mod loops;
mod module;
mod stream;

pub use self::cells::{MainCell, RtCell};
pub use self::context::{Context, CoreConnection};
pub use self::entry::pipewire__module_init;
pub use self::io::IoAreas;
pub use self::log::{enabled as log_enabled, log_write, set_topic_level, topic_init};
pub use self::loops::{DataLoop, EventSource, TimerSource};
pub use self::module::{attach, ModuleOwner, ModulePtr};
pub use self::stream::{
    Stream, StreamEvents, StreamPtr, StreamStateKind, TimerCmd, DIRECTION_INPUT, DIRECTION_OUTPUT,
    FLAG_DRIVER, FLAG_MAP_BUFFERS, FLAG_RT_PROCESS,
};

use core::ffi::{c_char, CStr};
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use pipewire::spa::sys as spa;
pub(crate) use pipewire::sys as pw;

/// Panics caught at the C boundary since the library was loaded.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Panics caught at the C boundary so far.
pub fn panics_caught() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Run `f`, catching a panic: the panic is counted and logged (at most the first ten) and
/// `fallback` is returned. Used around every callback PipeWire makes into Rust.
pub fn guard<R>(what: &str, fallback: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let n = PANICS.fetch_add(1, Ordering::Relaxed);
            if n < 10 {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                crate::log::error(&format!("internal error in {what}: {msg} (caught)"));
            }
            fallback
        }
    }
}

/// An unlinked `spa_hook` (all fields NULL), ready to be added to a hook list.
pub(crate) fn new_hook() -> spa::spa_hook {
    // SAFETY: spa_hook is a C struct of pointers and optional function pointers, for which the
    // all-zero bit pattern is valid (NULL / None): an unlinked hook.
    unsafe { core::mem::zeroed() }
}

/// An events table of type `T` with every callback unset.
///
/// # Safety
/// `T` must be a C struct made only of integers and optional function pointers (a PipeWire
/// `*_events` table), for which all-zero is a valid value.
pub(crate) unsafe fn empty_events<T>() -> T {
    // SAFETY: guaranteed by the caller.
    unsafe { core::mem::zeroed() }
}

/// CLOCK_MONOTONIC in nanoseconds (the clock PipeWire's graph uses).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// A C string from Rust text; interior NUL bytes (which C cannot carry) become `?`.
pub(crate) fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

/// An owned `pw_properties`, handed to PipeWire (which takes ownership) with [`Props::into_raw`].
#[derive(Debug)]
pub struct Props(*mut pw::pw_properties);

impl Props {
    /// Properties with `pairs`. `None` if PipeWire cannot allocate them.
    pub fn new<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Option<Props> {
        // SAFETY: `pw_properties_new` is variadic; a NULL first key ends the (empty) list.
        let p = unsafe { pw::pw_properties_new(core::ptr::null::<c_char>()) };
        if p.is_null() {
            return None;
        }
        let props = Props(p);
        for (k, v) in pairs {
            let (k, v) = (cstring(k.as_ref()), cstring(v.as_ref()));
            // SAFETY: `props.0` is a live pw_properties we own; key and value are valid C
            // strings that PipeWire copies.
            unsafe { pw::pw_properties_set(props.0, k.as_ptr(), v.as_ptr()) };
        }
        Some(props)
    }

    /// Give up ownership (to a PipeWire call that takes it).
    pub(crate) fn into_raw(self) -> *mut pw::pw_properties {
        let p = self.0;
        core::mem::forget(self);
        p
    }
}

impl Drop for Props {
    fn drop(&mut self) {
        // SAFETY: we own `self.0` (not given away, see `into_raw`).
        unsafe { pw::pw_properties_free(self.0) };
    }
}

/// The key/value pairs of a `pw_properties`, copied out.
///
/// # Safety
/// `props` must point to live properties.
unsafe fn dict_pairs(props: *const pw::pw_properties) -> Vec<(String, String)> {
    // SAFETY: the caller guarantees `props` is live; its dict holds `n_items` items.
    let dict = unsafe { &(*props).dict };
    if dict.items.is_null() {
        return Vec::new();
    }
    let n = usize::try_from(dict.n_items).unwrap_or(0);
    // SAFETY: `items` points to `n_items` consecutive items owned by `props`.
    let items = unsafe { core::slice::from_raw_parts(dict.items, n) };
    items
        .iter()
        .filter(|i| !i.key.is_null())
        .map(|i| {
            // SAFETY: keys and values are NUL-terminated strings owned by `props`.
            let k = unsafe { CStr::from_ptr(i.key) }
                .to_string_lossy()
                .into_owned();
            let v = if i.value.is_null() {
                String::new()
            } else {
                // SAFETY: as above.
                unsafe { CStr::from_ptr(i.value) }
                    .to_string_lossy()
                    .into_owned()
            };
            (k, v)
        })
        .collect()
}

/// Split a module argument string (SPA-JSON object) into key/value pairs with PipeWire's own
/// parser, `pw_properties_new_string`.
///
/// # Safety
/// `args` must be NULL or a NUL-terminated string.
pub unsafe fn parse_args(args: *const c_char) -> Result<Vec<(String, String)>, String> {
    if args.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(args) };
    if text.to_bytes().iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    // SAFETY: `text` is a valid C string.
    let props = unsafe { pw::pw_properties_new_string(text.as_ptr()) };
    if props.is_null() {
        return Err(format!(
            "cannot parse {:?} (errno {})",
            text.to_string_lossy(),
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `props` is live until freed below.
    let pairs = unsafe { dict_pairs(props) };
    // SAFETY: we own `props`.
    unsafe { pw::pw_properties_free(props) };
    Ok(pairs)
}
