//! Xen errno values (`xen/include/public/errno.h`) used in response statuses, which are
//! `-errno`.

/// I/O error: the stream is not open, or the backend failed internally.
pub const EIO: i32 = 5;
/// Bad address: the PCM buffer could not be mapped.
pub const EFAULT: i32 = 14;
/// Invalid argument: unknown or malformed request, parameters outside the configuration.
pub const EINVAL: i32 = 22;
