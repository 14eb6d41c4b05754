//! Checks every ioctl number, struct size and field offset in `xen_evtchn::sys` against
//! the Linux UAPI header: `tests/c/uapi.c` is compiled with the system C compiler (`$CC`, else
//! `cc`) and prints `NAME VALUE` lines, which must match the Rust values one for one. (The `_IOC`
//! encoding itself is checked by the `xen-ioctl` crate.)

use c_probe::{assert_same, consts, layout, Probe, Values};
use xen_evtchn::sys::*;

/// The names the probe prints, computed from the Rust definitions.
fn rust_values() -> Values {
    let mut v = Values::new();
    consts!(
        v;
        IOCTL_EVTCHN_BIND_VIRQ,
        IOCTL_EVTCHN_BIND_INTERDOMAIN,
        IOCTL_EVTCHN_BIND_UNBOUND_PORT,
        IOCTL_EVTCHN_UNBIND,
        IOCTL_EVTCHN_NOTIFY,
        IOCTL_EVTCHN_RESET,
        IOCTL_EVTCHN_RESTRICT_DOMID,
    );
    layout!(v; "ioctl_evtchn_bind_virq", IoctlEvtchnBindVirq, [virq]);
    layout!(
        v;
        "ioctl_evtchn_bind_interdomain",
        IoctlEvtchnBindInterdomain,
        [remote_domain, remote_port]
    );
    layout!(
        v;
        "ioctl_evtchn_bind_unbound_port",
        IoctlEvtchnBindUnboundPort,
        [remote_domain]
    );
    layout!(v; "ioctl_evtchn_unbind", IoctlEvtchnUnbind, [port]);
    layout!(v; "ioctl_evtchn_notify", IoctlEvtchnNotify, [port]);
    layout!(
        v;
        "ioctl_evtchn_restrict_domid",
        IoctlEvtchnRestrictDomid,
        [domid]
    );
    v.put_usize("PORT_SIZE", PORT_SIZE);
    v
}

#[test]
fn rust_definitions_match_the_kernel_headers() {
    let c = Probe::new(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/uapi.c"),
        concat!(env!("CARGO_TARGET_TMPDIR"), "/xen-evtchn-uapi"),
    )
    .flag("-std=c11")
    .package("linux-libc-dev")
    .numbers();
    assert_same("xen-evtchn UAPI", &c, &rust_values());
    // The probe really ran: the numbers the design notes quote are among its output.
    assert_eq!(c.get("IOCTL_EVTCHN_BIND_UNBOUND_PORT"), Some(&0x0004_4502));
    assert_eq!(c.get("IOCTL_EVTCHN_NOTIFY"), Some(&0x0004_4504));
}
