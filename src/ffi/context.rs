//! The context (borrowed) and the module's own core connection (owned, but destroyable by the
//! context behind our back).

use core::cell::{Cell, RefCell};
use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr::NonNull;

use super::loops::{DataLoop, MainLoop};
use super::{cstring, guard, pw, spa, Props};

/// The `pw_context` the module lives in. Borrowed: it outlives the module. Main thread.
#[derive(Debug, Clone, Copy)]
pub struct Context(NonNull<pw::pw_context>);

impl Context {
    /// # Safety
    /// `p` must be NULL or a context that outlives every use of the wrapper.
    pub(crate) unsafe fn from_raw(p: *mut pw::pw_context) -> Option<Context> {
        NonNull::new(p).map(Context)
    }

    pub(crate) fn as_ptr(self) -> *mut pw::pw_context {
        self.0.as_ptr()
    }

    /// The daemon's main loop.
    pub fn main_loop(self) -> Option<MainLoop> {
        // SAFETY: the context is live; its main loop outlives it.
        let l = unsafe { pw::pw_context_get_main_loop(self.as_ptr()) };
        // SAFETY: as above.
        unsafe { MainLoop::from_raw(l) }
    }

    /// The realtime data loop.
    pub fn data_loop(self) -> Option<DataLoop> {
        // SAFETY: the context is live; its data loop is destroyed only after the modules.
        let dl = unsafe { pw::pw_context_get_data_loop(self.as_ptr()) };
        // SAFETY: as above.
        unsafe { DataLoop::from_raw(dl) }
    }

    /// A context property (`default.clock.rate`, …).
    pub fn property(self, key: &str) -> Option<String> {
        let key = cstring(key);
        // SAFETY: the context is live; the returned properties belong to it.
        let props = unsafe { pw::pw_context_get_properties(self.as_ptr()) };
        if props.is_null() {
            return None;
        }
        // SAFETY: `props` is live; `key` is a valid C string.
        let v = unsafe { pw::pw_properties_get(props, key.as_ptr()) };
        if v.is_null() {
            return None;
        }
        // SAFETY: PipeWire returns a NUL-terminated value owned by `props`.
        Some(unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned())
    }

    /// Connect a core to this context (`remote.name` = `remote`; `internal` is the in-process
    /// connection). `on_lost` runs (main thread, once) if the context destroys the core or the
    /// connection breaks.
    pub fn connect(
        self,
        remote: &str,
        on_lost: Box<dyn FnMut(&str)>,
    ) -> Result<CoreConnection, String> {
        let props = Props::new(&[("remote.name", remote)]).ok_or("cannot allocate properties")?;
        // SAFETY: the context is live; `pw_context_connect` takes ownership of the properties.
        let core = unsafe { pw::pw_context_connect(self.as_ptr(), props.into_raw(), 0) };
        let Some(core) = NonNull::new(core) else {
            return Err(format!(
                "cannot connect to {remote:?}: {}",
                std::io::Error::last_os_error()
            ));
        };
        // SAFETY: pw_proxy_events is a version number and optional callbacks.
        let events = unsafe { super::empty_events::<pw::pw_proxy_events>() };
        let mut inner = Box::new(CoreInner {
            hook: super::new_hook(),
            events,
            core: Cell::new(core.as_ptr()),
            on_lost: RefCell::new(Some(on_lost)),
        });
        inner.events.version = pw::PW_VERSION_PROXY_EVENTS;
        inner.events.destroy = Some(on_core_destroy);
        inner.events.error = Some(on_core_error);
        let p: *mut CoreInner = &mut *inner;
        // SAFETY: a pw_core is a pw_proxy (its first member); the hook, events and data live in
        // `inner`, which is kept until the hook is removed (on destroy or in Drop).
        unsafe {
            pw::pw_proxy_add_listener(
                core.as_ptr().cast::<pw::pw_proxy>(),
                core::ptr::addr_of_mut!((*p).hook),
                core::ptr::addr_of!((*p).events),
                p.cast(),
            );
        }
        Ok(CoreConnection { inner })
    }
}

struct CoreInner {
    hook: spa::spa_hook,
    events: pw::pw_proxy_events,
    /// NULL once the context destroyed the core.
    core: Cell<*mut pw::pw_core>,
    on_lost: RefCell<Option<OnLost>>,
}

/// What runs when the core goes away.
type OnLost = Box<dyn FnMut(&str)>;

impl CoreInner {
    fn lost(&self, why: &str) {
        let cb = self.on_lost.borrow_mut().take();
        if let Some(mut cb) = cb {
            cb(why);
        }
    }
}

unsafe extern "C" fn on_core_destroy(data: *mut c_void) {
    guard("core destroy", (), || {
        // SAFETY: `data` is the `CoreInner` registered with this hook, alive while registered.
        let inner = unsafe { &mut *data.cast::<CoreInner>() };
        // SAFETY: our hook is linked in the proxy's listener list; removing it while it is
        // being emitted is allowed. It is never removed again (`core` becomes NULL).
        unsafe { spa::spa_hook_remove(&mut inner.hook) };
        inner.core.set(core::ptr::null_mut());
        inner.lost("the core connection was destroyed");
    });
}

unsafe extern "C" fn on_core_error(data: *mut c_void, seq: c_int, res: c_int, msg: *const c_char) {
    guard("core error", (), || {
        // SAFETY: as in `on_core_destroy`.
        let inner = unsafe { &*data.cast::<CoreInner>() };
        let text = if msg.is_null() {
            String::new()
        } else {
            // SAFETY: PipeWire passes a NUL-terminated message.
            unsafe { CStr::from_ptr(msg) }
                .to_string_lossy()
                .into_owned()
        };
        crate::log::warn(&format!(
            "core error (seq {seq}): {} ({res}): {text}",
            std::io::Error::from_raw_os_error(-res)
        ));
        if res == -libc::EPIPE {
            inner.lost("the core connection broke");
        }
    });
}

/// The module's core connection. Dropping it disconnects the core (which destroys streams still
/// on it); if the context already destroyed the core, dropping it does nothing.
pub struct CoreConnection {
    inner: Box<CoreInner>,
}

impl core::fmt::Debug for CoreConnection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CoreConnection")
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl CoreConnection {
    /// Whether the core still exists.
    pub fn is_alive(&self) -> bool {
        !self.inner.core.get().is_null()
    }

    /// The raw core, if alive.
    pub(crate) fn raw(&self) -> Option<NonNull<pw::pw_core>> {
        NonNull::new(self.inner.core.get())
    }
}

impl Drop for CoreConnection {
    fn drop(&mut self) {
        let core = self.inner.core.replace(core::ptr::null_mut());
        if core.is_null() {
            return;
        }
        // SAFETY: the core is alive, so our hook is still linked: remove it first so the
        // disconnect below does not call back into memory being dropped; then disconnect the
        // core we created.
        unsafe {
            spa::spa_hook_remove(&mut self.inner.hook);
            pw::pw_core_disconnect(core);
        }
    }
}
