//! Checks every ioctl number, struct size and field offset in `xen_evtchn::sys` against
//! the Linux UAPI header: `tests/c/uapi.c` is compiled with the system C compiler (`$CC`, else
//! `cc`) and prints `NAME VALUE` lines, which must match the Rust values one for one.

use std::{
    collections::BTreeMap,
    mem::{offset_of, size_of},
    path::PathBuf,
    process::Command,
};

use xen_evtchn::sys::{self, *};

const INSTALL_HINT: &str = "apt-get install gcc linux-libc-dev";

/// Compiles and runs the C probe, returning its `NAME VALUE` pairs.
fn c_values() -> BTreeMap<String, u64> {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/c/uapi.c");
    let binary = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xen-evtchn-uapi");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let compiled = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` ({e}): {INSTALL_HINT}"));
    assert!(
        compiled.status.success(),
        "compiling {} with `{cc}` failed (missing kernel headers? {INSTALL_HINT}):\n{}",
        source.display(),
        String::from_utf8_lossy(&compiled.stderr)
    );
    let run = Command::new(&binary)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    assert!(run.status.success(), "{} failed", binary.display());
    let stdout = String::from_utf8(run.stdout).expect("the probe prints ASCII");
    let mut values = BTreeMap::new();
    for line in stdout.lines() {
        let (name, value) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("malformed probe line {line:?}"));
        let value = value
            .parse()
            .unwrap_or_else(|e| panic!("malformed value in {line:?}: {e}"));
        assert!(
            values.insert(name.to_owned(), value).is_none(),
            "{name} printed twice"
        );
    }
    values
}

/// The same names, computed from the Rust definitions.
fn rust_values() -> BTreeMap<String, u64> {
    let mut v = BTreeMap::new();
    let mut put = |name: String, value: u64| {
        assert!(
            v.insert(name.clone(), value).is_none(),
            "{name} listed twice"
        );
    };
    macro_rules! num {
        ($($name:ident),* $(,)?) => {
            $( put(stringify!($name).to_owned(), u64::from(sys::$name)); )*
        };
    }
    macro_rules! layout {
        ($c:literal, $ty:ty, [$($field:tt),* $(,)?]) => {
            put(format!("sizeof.{}", $c), size_of::<$ty>() as u64);
            $(
                put(
                    format!("offsetof.{}.{}", $c, stringify!($field).trim_start_matches("r#")),
                    offset_of!($ty, $field) as u64,
                );
            )*
        };
    }

    num!(
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
    put(
        "ioc_probe".to_owned(),
        u64::from(ioc(IOC_READ | IOC_WRITE, b'Z', 0xab, 0x1234)),
    );

    num!(
        IOCTL_EVTCHN_BIND_VIRQ,
        IOCTL_EVTCHN_BIND_INTERDOMAIN,
        IOCTL_EVTCHN_BIND_UNBOUND_PORT,
        IOCTL_EVTCHN_UNBIND,
        IOCTL_EVTCHN_NOTIFY,
        IOCTL_EVTCHN_RESET,
        IOCTL_EVTCHN_RESTRICT_DOMID,
    );
    layout!("ioctl_evtchn_bind_virq", IoctlEvtchnBindVirq, [virq]);
    layout!(
        "ioctl_evtchn_bind_interdomain",
        IoctlEvtchnBindInterdomain,
        [remote_domain, remote_port]
    );
    layout!(
        "ioctl_evtchn_bind_unbound_port",
        IoctlEvtchnBindUnboundPort,
        [remote_domain]
    );
    layout!("ioctl_evtchn_unbind", IoctlEvtchnUnbind, [port]);
    layout!("ioctl_evtchn_notify", IoctlEvtchnNotify, [port]);
    layout!(
        "ioctl_evtchn_restrict_domid",
        IoctlEvtchnRestrictDomid,
        [domid]
    );
    put("PORT_SIZE".to_owned(), PORT_SIZE as u64);
    v
}

#[test]
fn rust_definitions_match_the_kernel_headers() {
    let c = c_values();
    let rust = rust_values();
    let mut problems = Vec::new();
    for (name, &value) in &c {
        match rust.get(name) {
            None => problems.push(format!("{name}: in the C probe but not checked in Rust")),
            Some(&r) if r != value => problems.push(format!(
                "{name}: Rust {r} ({r:#x}) != C {value} ({value:#x})"
            )),
            Some(_) => {}
        }
    }
    for name in rust.keys().filter(|n| !c.contains_key(*n)) {
        problems.push(format!(
            "{name}: checked in Rust but not printed by the C probe"
        ));
    }
    assert!(
        problems.is_empty(),
        "xen-evtchn UAPI mismatch:\n{}",
        problems.join("\n")
    );
    // The probe really ran: the numbers the design notes quote are among its output.
    assert_eq!(c.get("IOCTL_EVTCHN_BIND_UNBOUND_PORT"), Some(&0x0004_4502));
    assert_eq!(c.get("IOCTL_EVTCHN_NOTIFY"), Some(&0x0004_4504));
}
