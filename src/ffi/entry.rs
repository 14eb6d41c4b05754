//! `pipewire__module_init`: the library's only exported symbol.

use core::ffi::{c_char, c_int};

use super::{guard, parse_args, pw, ModulePtr};

/// Called by PipeWire when the module is loaded (`context.modules`, `pw-cli -m load-module`).
/// Returns 0, or a negative errno and the module is not loaded (`-EINVAL` for bad arguments).
///
/// # Safety
/// PipeWire calls this on its main thread with the module being loaded and the argument string
/// (NULL or NUL-terminated), as for every module.
#[no_mangle]
pub unsafe extern "C" fn pipewire__module_init(
    module: *mut pw::pw_impl_module,
    args: *const c_char,
) -> c_int {
    guard("module init", -libc::EIO, || {
        crate::log::init(None);
        // SAFETY: PipeWire passes the live module being loaded, on the main thread.
        let Some(m) = (unsafe { ModulePtr::from_raw(module) }) else {
            crate::log::error("refusing to load: no module handle");
            return -libc::EINVAL;
        };
        // SAFETY: PipeWire passes NULL or a NUL-terminated argument string.
        let pairs = match unsafe { parse_args(args) } {
            Ok(p) => p,
            Err(e) => {
                crate::log::error(&format!("refusing to load: bad arguments: {e}"));
                return -libc::EINVAL;
            }
        };
        match crate::module::init(m, &pairs) {
            Ok(()) => 0,
            Err(e) => {
                crate::log::error(&format!("refusing to load: {e}"));
                e.errno()
            }
        }
    })
}
