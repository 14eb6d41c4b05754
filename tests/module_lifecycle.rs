//! Teardown: `pw-cli destroy <module-id>`, daemon SIGTERM and the hosting `pw-cli -m` exiting,
//! each while audio flows.

mod support;

use std::time::Duration;

use support::{serial, wait_for, write_pattern_wav, Daemon, DaemonBuilder, SINK};

const MODULE: &str = "libpipewire-module-xen-snd";

/// No crash traces in a log.
fn assert_clean(log: &str) {
    for bad in [
        "panicked",
        "double free",
        "corrupted",
        "Aborted",
        "Segmentation",
        "internal error",
    ] {
        assert!(!log.contains(bad), "`{bad}` in the log:\n{log}");
    }
}

/// Start playing a long pattern into the fake sink and wait until data arrives.
fn start_playback(d: &mut Daemon) -> usize {
    let wav = d.root.join("long.wav");
    write_pattern_wav(&wav, 0, 48_000 * 20);
    let idx = d.spawn_helper(
        "pw-play",
        &["-P", "{ node.name = testplay }", wav.to_str().unwrap()],
    );
    d.port_config("testplay", "Output");
    d.port_config(SINK, "Input");
    d.link("testplay:output_FL", &format!("{SINK}:playback_FL"));
    d.link("testplay:output_FR", &format!("{SINK}:playback_FR"));
    if wait_for(Duration::from_secs(10), || {
        d.fake_stats(SINK).filter(|s| s.frames > 4800)
    })
    .is_none()
    {
        d.fail("no audio reached the fake sink");
    }
    idx
}

#[test]
fn destroying_the_module_while_streaming_is_clean() {
    let _s = serial();
    let mut d = DaemonBuilder::new()
        .module("xen.fake-card = true xen.fake-card.stats-dir = @STATS@ log.level = info")
        .start();
    let _play = start_playback(&mut d);
    let id = d.module_id(MODULE).expect("module loaded");
    d.ok("pw-cli", &["destroy", &id.to_string()]);
    if wait_for(Duration::from_secs(10), || {
        (d.node_id(SINK).is_none() && d.module_id(MODULE).is_none()).then_some(())
    })
    .is_none()
    {
        d.fail("the module's nodes outlived it");
    }
    assert!(d.wait_log("unloaded (module", Duration::from_secs(5)));
    assert!(d.daemon_alive(), "the daemon survived");
    d.ok("pw-cli", &["info", "0"]);
    assert_clean(&d.daemon_log());
    let st = d.terminate().expect("exit");
    assert!(st.success(), "exit status {st}");
    assert_clean(&d.daemon_log());
}

#[test]
fn daemon_sigterm_while_streaming_is_clean() {
    let _s = serial();
    let mut d = DaemonBuilder::new()
        .module("xen.fake-card = true xen.fake-card.stats-dir = @STATS@ log.level = info")
        .start();
    let play = start_playback(&mut d);
    // Stop only the daemon: the player is still connected while the context goes down.
    let st = d
        .signal(0, libc::SIGTERM, Duration::from_secs(15))
        .unwrap_or_else(|| d.fail("the daemon did not exit on SIGTERM"));
    assert!(st.success(), "exit status {st}");
    let log = d.daemon_log();
    assert!(log.contains("stream destroyed"), "{log}");
    assert!(log.contains("unloaded (module"), "{log}");
    assert_clean(&log);
    let _ = d.wait_exit(play, Duration::from_secs(10));
}

#[test]
fn the_hosting_pw_cli_exiting_is_clean() {
    let _s = serial();
    let mut d = DaemonBuilder::new().start();
    let host = d.spawn_helper(
        "pw-cli",
        &[
            "-m",
            "load-module",
            MODULE,
            "{ xen.fake-card = true remote.name = pipewire-0 log.level = info }",
        ],
    );
    if wait_for(Duration::from_secs(10), || d.node_id(SINK)).is_none() {
        d.fail("the module in pw-cli created no node in the daemon");
    }
    let st = d
        .signal(host, libc::SIGINT, Duration::from_secs(15))
        .unwrap_or_else(|| d.fail("pw-cli did not exit on SIGINT"));
    assert!(
        st.code().is_some(),
        "pw-cli ended by signal {st} (abort?):\n{}",
        d.logs()
    );
    if wait_for(Duration::from_secs(10), || {
        d.node_id(SINK).is_none().then_some(())
    })
    .is_none()
    {
        d.fail("the nodes outlived pw-cli");
    }
    let logs = d.logs();
    assert!(logs.contains("unloaded (module"), "{logs}");
    assert_clean(&logs);
    assert!(d.daemon_alive());
}
