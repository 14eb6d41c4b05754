//! PipeWire's log with the module's own topic, `mod.xen-snd`.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int};

use super::{cstring, pw, spa};

/// The topic: a C struct PipeWire reads (and `topic_init` writes) through a pointer.
struct Topic(UnsafeCell<spa::spa_log_topic>);

// SAFETY: the topic is written only on the main thread (module init, which PipeWire serialises)
// and otherwise only read; a torn read of `level` would at worst log one message more or less.
unsafe impl Sync for Topic {}

static TOPIC: Topic = Topic(UnsafeCell::new(spa::spa_log_topic {
    version: spa::SPA_VERSION_LOG_TOPIC,
    topic: c"mod.xen-snd".as_ptr(),
    level: spa::SPA_LOG_LEVEL_NONE,
    has_custom_level: false,
}));

/// Let PipeWire's logger set the topic's level from its configuration (`PIPEWIRE_DEBUG`,
/// `log.level` patterns), as `PW_LOG_TOPIC_INIT` does. Main thread.
pub fn topic_init() {
    // SAFETY: `pw_log_get` returns the global logger (never freed while the library is in use).
    let log = unsafe { pw::pw_log_get() };
    if log.is_null() {
        return;
    }
    // SAFETY: `log` is a live spa_log; its interface's callbacks point to spa_log_methods.
    unsafe {
        let cb = (*log).iface.cb;
        let methods = cb.funcs.cast::<spa::spa_log_methods>();
        if methods.is_null() || (*methods).version < 1 {
            return;
        }
        if let Some(init) = (*methods).topic_init {
            init(cb.data, TOPIC.0.get());
        }
    }
}

/// Give the topic its own level (the module's `log.level` argument). Main thread.
pub fn set_topic_level(level: u32) {
    // SAFETY: main thread only (see `Topic`); the pointer is to our static.
    unsafe {
        let t = TOPIC.0.get();
        (*t).level = level.min(spa::SPA_LOG_LEVEL_TRACE);
        (*t).has_custom_level = true;
    }
}

/// Whether a message at `level` would be written.
pub fn enabled(level: u32) -> bool {
    // SAFETY: reading our static topic and PipeWire's global level (plain integers).
    unsafe {
        let t = TOPIC.0.get();
        if (*t).has_custom_level {
            (*t).level >= level
        } else {
            pw::pw_log_level >= level
        }
    }
}

/// Write `msg` at `level` (an `SPA_LOG_LEVEL_*`) under the module's topic. Not for the
/// realtime thread (it formats and may lock).
pub fn log_write(level: u32, file: &str, line: u32, func: &str, msg: &str) {
    if !enabled(level) {
        return;
    }
    let (file, func, msg) = (cstring(file), cstring(func), cstring(msg));
    let fmt: *const c_char = c"%s".as_ptr();
    // SAFETY: all strings are valid C strings alive for the call; "%s" consumes exactly the one
    // string argument passed; the topic is our static.
    unsafe {
        pw::pw_log_logt(
            level,
            TOPIC.0.get(),
            file.as_ptr(),
            c_int::try_from(line).unwrap_or(0),
            func.as_ptr(),
            fmt,
            msg.as_ptr(),
        );
    }
}
