//! The loaded module: its handle, and the owner object whose life ends with the module's
//! `destroy` event.

use core::ffi::c_void;
use core::ptr::NonNull;

use super::context::Context;
use super::{cstring, guard, pw, spa};

/// The `pw_impl_module` this library was loaded as. Borrowed: PipeWire owns it. Main thread.
#[derive(Debug, Clone, Copy)]
pub struct ModulePtr(NonNull<pw::pw_impl_module>);

impl ModulePtr {
    /// Wrap the pointer `pipewire__module_init` received.
    ///
    /// # Safety
    /// `p` must be NULL or the live module passed to `pipewire__module_init`, and the wrapper
    /// must only be used on the main thread while the module lives.
    pub unsafe fn from_raw(p: *mut pw::pw_impl_module) -> Option<ModulePtr> {
        NonNull::new(p).map(ModulePtr)
    }

    /// The context the module is loaded into.
    pub fn context(self) -> Option<Context> {
        // SAFETY: the module is live (type invariant).
        let ctx = unsafe { pw::pw_impl_module_get_context(self.0.as_ptr()) };
        // SAFETY: the module's context outlives the module.
        unsafe { Context::from_raw(ctx) }
    }

    /// The module's global id (for messages), if it has a global.
    pub fn id(self) -> Option<u32> {
        // SAFETY: the module is live.
        let g = unsafe { pw::pw_impl_module_get_global(self.0.as_ptr()) };
        if g.is_null() {
            return None;
        }
        // SAFETY: `g` is the module's live global.
        Some(unsafe { pw::pw_global_get_id(g) })
    }

    /// Ask the context to destroy the module from its work queue (safe to call from inside a
    /// callback; repeated calls are ignored by PipeWire).
    pub fn schedule_destroy(self) {
        // SAFETY: the module is live.
        unsafe { pw::pw_impl_module_schedule_destroy(self.0.as_ptr()) };
    }

    /// Update the module's properties (`module.author`, `module.description`, …).
    pub fn update_properties(self, props: &[(&str, &str)]) {
        let owned: Vec<_> = props
            .iter()
            .map(|(k, v)| (cstring(k), cstring(v)))
            .collect();
        let items: Vec<spa::spa_dict_item> = owned
            .iter()
            .map(|(k, v)| spa::spa_dict_item {
                key: k.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        let dict = spa::spa_dict {
            flags: 0,
            n_items: u32::try_from(items.len()).unwrap_or(0),
            items: items.as_ptr(),
        };
        // SAFETY: the module is live; `dict` and the strings it points to outlive the call
        // (PipeWire copies them).
        unsafe { pw::pw_impl_module_update_properties(self.0.as_ptr(), &dict) };
    }
}

/// The state of a loaded module, destroyed with it.
pub trait ModuleOwner: 'static {
    /// The module is being destroyed (unloaded, or its context is going away): tear everything
    /// down. Called once, on the main thread.
    fn destroyed(self: Box<Self>);
}

/// The module listener and the owner it keeps alive. Heap-allocated at a stable address (the
/// hook and the events table are referenced by PipeWire while registered).
struct Attached<T: ModuleOwner> {
    hook: spa::spa_hook,
    events: pw::pw_impl_module_events,
    owner: Option<Box<T>>,
}

unsafe extern "C" fn on_module_destroy<T: ModuleOwner>(data: *mut c_void) {
    guard("module destroy", (), || {
        let p = data.cast::<Attached<T>>();
        if p.is_null() {
            return;
        }
        // SAFETY: `data` is the `Attached<T>` leaked in `attach`, reclaimed exactly once here
        // (the module emits `destroy` once). The hook is removed before the memory holding it
        // is freed; removing the hook being emitted is allowed by spa_hook_list_call.
        let mut attached = unsafe { Box::from_raw(p) };
        // SAFETY: the hook is linked into the module's listener list.
        unsafe { spa::spa_hook_remove(&mut attached.hook) };
        if let Some(owner) = attached.owner.take() {
            owner.destroyed();
        }
    });
}

/// Tie `owner`'s life to the module: when the module is destroyed, `owner.destroyed()` runs.
pub fn attach<T: ModuleOwner>(module: ModulePtr, owner: Box<T>) {
    // SAFETY: pw_impl_module_events is a version number and optional callbacks.
    let events = unsafe { super::empty_events::<pw::pw_impl_module_events>() };
    let mut attached = Box::new(Attached {
        hook: super::new_hook(),
        events,
        owner: Some(owner),
    });
    attached.events.version = pw::PW_VERSION_IMPL_MODULE_EVENTS;
    attached.events.destroy = Some(on_module_destroy::<T>);
    let p = Box::into_raw(attached);
    // SAFETY: `p` stays valid until `on_module_destroy` reclaims it; the hook and the events
    // are inside it at stable addresses; the module is live.
    unsafe {
        pw::pw_impl_module_add_listener(
            module.0.as_ptr(),
            core::ptr::addr_of_mut!((*p).hook),
            core::ptr::addr_of!((*p).events),
            p.cast(),
        );
    }
}
