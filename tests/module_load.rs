//! Loading the module into a private daemon: no Xen on this machine, bad arguments.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{serial, DaemonBuilder, MODULE};

fn no_xen_nodes(names: &[String]) -> bool {
    !names.iter().any(|n| n.starts_with("xen_snd"))
}

#[test]
fn without_xen_the_module_loads_says_what_is_missing_and_creates_no_nodes() {
    let _s = serial();
    // The default is /dev/xen/xenbus; should this machine be a Xen guest, name a missing path
    // instead so the test still checks the message.
    let (args, path) = if Path::new("/dev/xen/xenbus").exists() {
        (
            "xen.xenstore-path = /nonexistent/xenbus",
            "/nonexistent/xenbus",
        )
    } else {
        ("", "/dev/xen/xenbus")
    };
    let mut d = DaemonBuilder::new().module(args).start();
    assert!(
        d.wait_log("no Xen:", Duration::from_secs(10)),
        "no explanation in the log:\n{}",
        d.logs()
    );
    let log = d.daemon_log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("mod.xen-snd")).collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line from the module: {lines:#?}"
    );
    let line = lines[0];
    assert!(line.starts_with("[W]"), "a warning: {line}");
    assert!(line.contains(&format!("{path} does not exist")), "{line}");
    assert!(line.contains("not a Xen guest"), "{line}");
    assert!(
        line.contains("xen.xenstore-path"),
        "says how to fix it: {line}"
    );
    assert!(line.contains("no sound nodes created"), "{line}");
    assert!(line.contains("checking again"), "keeps watching: {line}");
    assert!(d.module_id(MODULE).is_some(), "the module is loaded");
    assert!(no_xen_nodes(&d.node_names()));
    assert!(d.daemon_alive());
    let st = d.terminate().expect("the daemon exits on SIGTERM");
    assert!(st.success(), "exit status {st}");
}

#[test]
fn xenstored_path_from_the_environment_is_honoured() {
    let _s = serial();
    let d = DaemonBuilder::new()
        .module("")
        .env("XENSTORED_PATH", "/nonexistent/xenstored/socket")
        .start();
    assert!(
        d.wait_log("no Xen:", Duration::from_secs(10)),
        "{}",
        d.logs()
    );
    let log = d.daemon_log();
    assert!(
        log.contains("the xenstored socket /nonexistent/xenstored/socket does not exist"),
        "{log}"
    );
    assert!(no_xen_nodes(&d.node_names()));
}

#[test]
fn an_invalid_argument_refuses_the_module_and_a_mandatory_module_stops_the_daemon() {
    let _s = serial();
    let mut d = DaemonBuilder::new().module("node.latency = fast").spawn();
    let st = d
        .wait_exit(0, Duration::from_secs(15))
        .unwrap_or_else(|| d.fail("the daemon kept running without its mandatory module"));
    assert!(!st.success(), "exit status {st}");
    let log = d.daemon_log();
    let ours: Vec<&str> = log.lines().filter(|l| l.contains("mod.xen-snd")).collect();
    assert_eq!(ours.len(), 1, "one error line: {ours:#?}");
    assert!(ours[0].starts_with("[E]"), "{}", ours[0]);
    assert!(
        ours[0].contains("refusing to load: invalid value \"fast\" for `node.latency`"),
        "{}",
        ours[0]
    );
    assert!(
        ours[0].contains("frames/rate such as 1024/48000"),
        "{}",
        ours[0]
    );
}

#[test]
fn an_unknown_argument_with_nofail_leaves_the_daemon_running_without_the_module() {
    let _s = serial();
    let mut d = DaemonBuilder::new()
        .module("xen.cards = all xen.bogus = 1")
        .nofail()
        .start();
    assert!(
        d.wait_log("unknown argument `xen.bogus`", Duration::from_secs(10)),
        "{}",
        d.logs()
    );
    assert!(d.daemon_alive());
    assert_eq!(d.module_id(MODULE), None, "not loaded");
    assert!(no_xen_nodes(&d.node_names()), "no nodes");
    let log = d.daemon_log();
    assert_eq!(
        log.lines().filter(|l| l.contains("mod.xen-snd")).count(),
        1,
        "{log}"
    );
    let st = d.terminate().expect("exit");
    assert!(st.success(), "exit status {st}");
}

/// The shipped drop-in, as is and with every documented default uncommented (test hooks
/// excepted), loads the module.
#[test]
fn the_shipped_drop_in_loads_with_its_documented_defaults() {
    let _s = serial();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin-conf/pipewire.conf.d/50-xen-snd.conf");
    let shipped = std::fs::read_to_string(&path).expect("read the shipped drop-in");
    let uncommented: String = shipped
        .lines()
        .map(|l| {
            let t = l.trim_start();
            match t.strip_prefix('#') {
                Some(rest)
                    if rest.contains(" = ")
                        && !rest.starts_with(' ')
                        && !rest.starts_with("xen.test-world") =>
                {
                    format!("            {rest}")
                }
                _ => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        uncommented.matches("\n            xen.").count() >= 5,
        "the defaults were uncommented:\n{uncommented}"
    );
    let xen_here = Path::new("/dev/xen/xenbus").exists();
    for text in [shipped.as_str(), uncommented.as_str()] {
        let mut d = DaemonBuilder::new().dropin(text).start();
        assert!(
            d.wait_log("mod.xen-snd", Duration::from_secs(10)),
            "{}",
            d.logs()
        );
        assert!(d.module_id(MODULE).is_some(), "not loaded:\n{}", d.logs());
        if !xen_here {
            assert!(d.daemon_log().contains("no Xen:"), "{}", d.logs());
        }
        assert!(!d.daemon_log().contains("refusing to load"), "{}", d.logs());
        let st = d.terminate().expect("exit");
        assert!(st.success(), "exit status {st}");
    }
}
