//! Checks the `_IOC` encoding of `xen_ioctl` against the Linux UAPI header: `tests/c/ioc.c` is
//! compiled with the system C compiler (`$CC`, else `cc`) and prints `NAME VALUE` lines, which
//! must match the Rust values one for one.

use c_probe::{assert_same, consts, Probe, Values};
use xen_ioctl::*;

#[test]
fn the_ioc_encoding_matches_the_kernel_header() {
    let c = Probe::new(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/ioc.c"),
        concat!(env!("CARGO_TARGET_TMPDIR"), "/xen-ioctl-uapi"),
    )
    .flag("-std=c11")
    .package("linux-libc-dev")
    .numbers();

    let mut rust = Values::new();
    consts!(
        rust;
        IOC_NONE,
        IOC_READ,
        IOC_WRITE,
        IOC_NRBITS,
        IOC_TYPEBITS,
        IOC_SIZEBITS,
        IOC_NRSHIFT,
        IOC_TYPESHIFT,
        IOC_SIZESHIFT,
        IOC_DIRSHIFT,
    );
    rust.put(
        "ioc_probe",
        u64::from(ioc(IOC_READ | IOC_WRITE, b'Z', 0xab, 0x1234)),
    );

    assert_same("xen-ioctl UAPI", &c, &rust);
    // The probe really ran: it printed every name, and the direction bits differ.
    assert_eq!(c.len(), 11, "{c:?}");
    assert_ne!(c.get("IOC_READ"), c.get("IOC_WRITE"));
}
