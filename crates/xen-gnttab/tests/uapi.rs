//! Checks every ioctl number, flag, struct size and field offset in `xen_gnttab::sys` against
//! the Linux UAPI headers: `tests/c/uapi.c` is compiled with the system C compiler (`$CC`, else
//! `cc`) and prints `NAME VALUE` lines, which must match the Rust values one for one. (The `_IOC`
//! encoding itself is checked by the `xen-ioctl` crate.)

use c_probe::{assert_same, consts, layout, Probe, Values};
use xen_gnttab::sys::*;

/// The names the probe prints, computed from the Rust definitions.
fn rust_values() -> Values {
    let mut v = Values::new();
    consts!(
        v;
        IOCTL_GNTALLOC_ALLOC_GREF,
        IOCTL_GNTALLOC_DEALLOC_GREF,
        IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
        GNTALLOC_FLAG_WRITABLE,
        UNMAP_NOTIFY_CLEAR_BYTE,
        UNMAP_NOTIFY_SEND_EVENT,
    );
    layout!(
        v;
        "ioctl_gntalloc_alloc_gref",
        IoctlGntallocAllocGref,
        [domid, flags, count, index, gref_ids]
    );
    layout!(
        v;
        "ioctl_gntalloc_dealloc_gref",
        IoctlGntallocDeallocGref,
        [index, count]
    );
    layout!(
        v;
        "ioctl_gntalloc_unmap_notify",
        IoctlGntallocUnmapNotify,
        [index, action, event_channel_port]
    );

    consts!(
        v;
        IOCTL_GNTDEV_MAP_GRANT_REF,
        IOCTL_GNTDEV_UNMAP_GRANT_REF,
        IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
    );
    layout!(v; "ioctl_gntdev_grant_ref", IoctlGntdevGrantRef, [domid, r#ref]);
    layout!(
        v;
        "ioctl_gntdev_map_grant_ref",
        IoctlGntdevMapGrantRef,
        [count, pad, index, refs]
    );
    layout!(
        v;
        "ioctl_gntdev_unmap_grant_ref",
        IoctlGntdevUnmapGrantRef,
        [index, count, pad]
    );
    layout!(
        v;
        "ioctl_gntdev_unmap_notify",
        IoctlGntdevUnmapNotify,
        [index, action, event_channel_port]
    );
    v
}

#[test]
fn rust_definitions_match_the_kernel_headers() {
    let c = Probe::new(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/uapi.c"),
        concat!(env!("CARGO_TARGET_TMPDIR"), "/xen-gnttab-uapi"),
    )
    .flag("-std=c11")
    .package("linux-libc-dev")
    .numbers();
    assert_same("xen-gnttab UAPI", &c, &rust_values());
    // The probe really ran: the numbers the design notes quote are among its output.
    assert_eq!(c.get("IOCTL_GNTALLOC_ALLOC_GREF"), Some(&0x0018_4705));
    assert_eq!(c.get("IOCTL_GNTDEV_MAP_GRANT_REF"), Some(&0x0018_4700));
}
