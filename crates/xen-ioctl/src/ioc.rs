//! The kernel's `_IOC` encoding of ioctl request numbers (`<asm-generic/ioctl.h>` and the
//! per-architecture variants), checked against `<linux/ioctl.h>` by `tests/uapi.rs`.

/// Width of the command-number field of an ioctl request.
pub const IOC_NRBITS: u32 = 8;
/// Width of the type (magic) field of an ioctl request.
pub const IOC_TYPEBITS: u32 = 8;

/// Whether the target's `<asm/ioctl.h>` overrides the generic encoding with a 13-bit size field
/// and three direction bits.
const OWN_ENCODING: bool = cfg!(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips32r6",
    target_arch = "mips64",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
));

/// Width of the argument-size field of an ioctl request (`_IOC_SIZEBITS`).
pub const IOC_SIZEBITS: u32 = if OWN_ENCODING { 13 } else { 14 };
/// Direction "no data transfer" (`_IOC_NONE`); every Xen device ioctl uses it.
pub const IOC_NONE: u32 = if OWN_ENCODING { 1 } else { 0 };
/// Direction "kernel reads" (`_IOC_WRITE`).
pub const IOC_WRITE: u32 = if OWN_ENCODING { 4 } else { 1 };
/// Direction "kernel writes" (`_IOC_READ`).
pub const IOC_READ: u32 = 2;

/// Bit position of the command number (`_IOC_NRSHIFT`).
pub const IOC_NRSHIFT: u32 = 0;
/// Bit position of the type (`_IOC_TYPESHIFT`).
pub const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
/// Bit position of the size (`_IOC_SIZESHIFT`).
pub const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
/// Bit position of the direction (`_IOC_DIRSHIFT`).
pub const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;

/// The kernel's `_IOC(dir, type, nr, size)` encoding of an ioctl request number.
///
/// Evaluated in constant context, a `size` that does not fit the size field fails the build.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    assert!(
        size < (1 << IOC_SIZEBITS),
        "ioctl argument too large for _IOC"
    );
    // The assert above bounds `size`, so the cast is lossless.
    (dir << IOC_DIRSHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_land_at_their_shifts() {
        let request = ioc(IOC_NONE, b'E', 2, 4);
        assert_eq!((request >> IOC_NRSHIFT) & 0xff, 2);
        assert_eq!((request >> IOC_TYPESHIFT) & 0xff, u32::from(b'E'));
        assert_eq!((request >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1), 4);
        assert_eq!(request >> IOC_DIRSHIFT, IOC_NONE);
    }

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn a_known_request_number() {
        // IOCTL_EVTCHN_BIND_UNBOUND_PORT as the design notes quote it.
        assert_eq!(ioc(IOC_NONE, b'E', 2, 4), 0x0004_4502);
        assert_eq!(ioc(IOC_READ | IOC_WRITE, b'Z', 0xab, 0x1234), 0xd234_5aab);
    }
}
