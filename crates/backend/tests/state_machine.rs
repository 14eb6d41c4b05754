//! The libxenbe state machine (sndif.md §2.4, §2.6) against a hand-written frontend.

mod common;

use common::*;
use sndif::RequestBody;
use xen_snd_backend::{LogWhat, StreamId};

#[test]
fn fresh_device_goes_5_6_1_then_initwait_then_connected() {
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("1"), &basic_config());
    let mut fe = Fe::new(&env.world, 1, 0);
    let backend = env.start(opts);
    let key = fe.key();
    // Creation over an existing state 1: 5, 6, 1; then FE Initialising → InitWait.
    assert_eq!(rec.states(key, 4), vec![5, 6, 1, 2]);
    fe.wait_be_state(2);
    fe.publish(&["0/0", "0/1"]);
    fe.set_state(3);
    let recs = rec.until("Connected", |r| r.what == LogWhat::StateWritten(4));
    assert!(
        recs.iter().any(|r| r.what == LogWhat::Bound { streams: 2 }),
        "{recs:?}"
    );
    fe.wait_be_state(4);
    fe.set_state(4);
    // Everything is mapped: 2 ring pages + 2 event pages.
    assert_eq!(env.world.live_mappings(0), 4);
    assert_eq!(backend.device_state(key), Some(4));
    // The streams answer.
    let r = fe.s(0).request(RequestBody::Close);
    assert_eq!(r.status, 0);
    backend.shutdown().expect("shutdown");
}

#[test]
fn stale_connected_state_is_reset_5_6_1() {
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("4"), &basic_config());
    let fe = Fe::new(&env.world, 1, 0);
    let _b = env.start(opts);
    assert_eq!(rec.states(fe.key(), 4), vec![5, 6, 1, 2]);
    fe.wait_be_state(2);
}

#[test]
fn closed_state_goes_straight_to_initialising() {
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("6"), &basic_config());
    let fe = Fe::new(&env.world, 1, 0);
    let _b = env.start(opts);
    assert_eq!(rec.states(fe.key(), 2), vec![1, 2]);
}

#[test]
fn missing_state_node_is_never_created() {
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, None, &basic_config());
    let fe = Fe::new(&env.world, 1, 0);
    let _b = env.start(opts);
    rec.until("state 1 not written", |r| {
        r.what == LogWhat::StateNotWritten(1)
    });
    rec.until("state 2 not written", |r| {
        r.what == LogWhat::StateNotWritten(2)
    });
    assert_eq!(env.world.read(&format!("{}/state", fe.be_path)), None);
}

#[test]
fn repeated_frontend_state_is_ignored() {
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("1"), &basic_config());
    let mut fe = Fe::new(&env.world, 1, 0);
    let _b = env.start(opts);
    fe.wait_be_state(2);
    rec.until("InitWait", |r| r.what == LogWhat::StateWritten(2));
    // Rewriting 1 is a no-op (libxenbe dedupes); the next record is about state 3.
    fe.set_state(1);
    fe.publish(&["0/0", "0/1"]);
    fe.set_state(3);
    let recs = rec.until("frontend state", |r| {
        matches!(r.what, LogWhat::FrontendState(_))
    });
    assert_eq!(
        recs.last().map(|r| r.what.clone()),
        Some(LogWhat::FrontendState(3)),
        "{recs:?}"
    );
    fe.wait_be_state(4);
}

#[test]
fn frontend_connected_without_initialised_also_binds() {
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("1"), &basic_config());
    let mut fe = Fe::new(&env.world, 1, 0);
    let _b = env.start(opts);
    fe.wait_be_state(2);
    fe.publish(&["0/0", "0/1"]);
    fe.set_state(4);
    fe.wait_be_state(4);
    rec.until("bound", |r| r.what == LogWhat::Bound { streams: 2 });
}

#[test]
fn frontend_restart_releases_and_reconnects() {
    let mut c = connected();
    let key = c.fe.key();
    c.records
        .until("Connected", |r| r.what == LogWhat::StateWritten(4));
    assert_eq!(c.env.world.live_mappings(0), 4);
    // The frontend restarts: writes Initialising over its Connected.
    c.fe.set_state(1);
    assert_eq!(c.records.states(key, 3), vec![5, 6, 2]);
    assert_eq!(c.env.world.live_mappings(0), 0, "old rings unmapped");
    // Fresh rings, reconnect.
    c.fe.connect(&["0/0", "0/1"]);
    assert_eq!(c.env.world.live_mappings(0), 4);
    let r = c.fe.s(1).request(RequestBody::Close);
    assert_eq!(r.status, 0);
}

#[test]
fn frontend_closing_closes_to_initwait() {
    let mut c = connected();
    let key = c.fe.key();
    c.records
        .until("Connected", |r| r.what == LogWhat::StateWritten(4));
    c.fe.set_state(5);
    assert_eq!(c.records.states(key, 3), vec![5, 6, 2]);
    assert_eq!(c.env.world.live_mappings(0), 0);
    c.fe.set_state(6);
    // FE Closed while BE InitWait: nothing to do; FE Initialising: already InitWait.
    c.fe.set_state(1);
    c.fe.connect(&["0/0", "0/1"]);
}

#[test]
fn toolstack_close_and_removal() {
    let c = connected();
    let Connected {
        env,
        backend,
        mut records,
        fe,
    } = c;
    let key = fe.key();
    records.until("Connected", |r| r.what == LogWhat::StateWritten(4));
    // `xl vsnd-detach`: online=0, state=5 by the toolstack.
    env.world
        .write_as(0, &format!("{}/online", fe.be_path), "0")
        .expect("online");
    env.world
        .write_as(0, &format!("{}/state", fe.be_path), "5")
        .expect("state 5");
    records.until("external Closing", |r| {
        r.what == LogWhat::BackendStateExternal(5)
    });
    assert_eq!(records.states(key, 1), vec![6]);
    fe.wait_be_state(6);
    assert_eq!(env.world.live_mappings(0), 0);
    // The toolstack removes both directories: the handler goes, nothing is rewritten.
    env.world.rm_as(0, &fe.be_path).expect("rm be");
    records.until("removed", |r| r.what == LogWhat::DeviceRemoved);
    assert_eq!(env.world.read(&fe.be_path), None);
    assert_eq!(backend.device_state(key), None);
    backend.shutdown().expect("shutdown");
    assert_eq!(
        env.world.read(&fe.be_path),
        None,
        "shutdown recreated nothing"
    );
}

#[test]
fn bind_error_closes_until_frontend_initialises_again() {
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("1"), &basic_config());
    let mut fe = Fe::new(&env.world, 1, 0);
    let _b = env.start(opts);
    let key = fe.key();
    assert_eq!(rec.states(key, 4), vec![5, 6, 1, 2]);
    fe.wait_be_state(2);
    fe.publish(&["0/0", "0/1"]);
    // Break one key: ring-ref of stream 0/1 is not a number.
    fe.store
        .write(&format!("{}/0/1/ring-ref", fe.fe_path), "bogus")
        .expect("break key");
    fe.set_state(3);
    let recs = rec.until("bind failure", |r| matches!(r.what, LogWhat::BindFailed(_)));
    let msg = recs.last().map(|r| r.to_string()).unwrap_or_default();
    assert!(msg.contains("0/1/ring-ref"), "{msg}");
    assert_eq!(rec.states(key, 2), vec![5, 6]);
    fe.wait_be_state(6);
    assert_eq!(env.world.live_mappings(0), 0, "partial bind released");
    // Frontend (Linux: on 6) goes back to Initialising → InitWait; then a good connect.
    fe.set_state(1);
    assert_eq!(rec.states(key, 1), vec![2]);
    fe.connect(&["0/0", "0/1"]);
}

#[test]
fn missing_unique_id_fails_the_bind_like_snd_be() {
    let mut cfg = basic_config();
    cfg.retain(|(k, _)| *k != "0/1/unique-id");
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("1"), &cfg);
    let mut fe = Fe::new(&env.world, 1, 0);
    let _b = env.start(opts);
    fe.wait_be_state(2);
    fe.publish(&["0/0", "0/1"]);
    fe.set_state(3);
    let recs = rec.until("bind failure", |r| matches!(r.what, LogWhat::BindFailed(_)));
    assert!(
        recs.last()
            .is_some_and(|r| r.to_string().contains("0/1/unique-id: missing")),
        "{recs:?}"
    );
    fe.wait_be_state(6);
}

#[test]
fn unique_id_can_be_optional() {
    let mut cfg = basic_config();
    cfg.retain(|(k, _)| *k != "0/1/unique-id");
    let mut c = connected_with(|o| o.require_unique_id = false, &cfg, &["0/0", "0/1"]);
    assert_eq!(c.fe.s(1).request(RequestBody::Close).status, 0);
}

#[test]
fn crash_leaves_state_and_restart_writes_5_6_1() {
    let c = connected();
    let Connected {
        env,
        backend,
        mut records,
        mut fe,
    } = c;
    let key = fe.key();
    records.until("Connected", |r| r.what == LogWhat::StateWritten(4));
    backend.crash().expect("crash");
    records.until("crashed", |r| r.what == LogWhat::Crashed);
    // Like a killed process: xenstore untouched, everything unmapped and unbound.
    assert_eq!(fe.be_state(), Some(4));
    assert_eq!(env.world.live_mappings(0), 0);
    assert_eq!(env.world.bound_ports(0), 0);
    // A request now goes nowhere.
    fe.s(0).send(RequestBody::Close);
    assert!(fe
        .s(0)
        .wait_response(std::time::Duration::from_millis(50))
        .is_none());
    // Restart: a new backend writes 5, 6, 1 over the stale 4.
    let (opts, mut rec2) = env.options();
    let b2 = env.start(opts);
    assert_eq!(rec2.states(key, 3), vec![5, 6, 1]);
    // Frontend (§2.6): tears down on 6/1 and writes 1 (it reads 4 as its own state → change).
    // The new backend may have seen the frontend's stale 4 before that 1 (libxenbe binds a
    // frontend it finds Connected, and the old grants are still there): then it is Connected
    // for a moment and the frontend's 1 is a frontend restart to it (5, 6, 2).
    fe.set_state(1);
    let first = rec2.states(key, 1);
    if first == vec![4] {
        assert_eq!(rec2.states(key, 3), vec![5, 6, 2]);
    } else {
        assert_eq!(first, vec![2]);
    }
    fe.connect(&["0/0", "0/1"]);
    assert_eq!(fe.s(0).request(RequestBody::Close).status, 0);
    b2.shutdown().expect("shutdown");
}

#[test]
fn shutdown_closes_every_device() {
    let c = connected();
    let Connected {
        env: _env,
        backend,
        mut records,
        fe,
    } = c;
    let key = fe.key();
    records.until("Connected", |r| r.what == LogWhat::StateWritten(4));
    backend.shutdown().expect("shutdown");
    assert_eq!(records.states(key, 2), vec![5, 6]);
    fe.wait_be_state(6);
}

#[test]
fn two_devices_two_frontends() {
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("1"), &basic_config());
    toolstack_add(&env.world, 2, 3, Some("1"), &basic_config());
    let mut a = Fe::new(&env.world, 1, 0);
    let mut b = Fe::new(&env.world, 2, 3);
    let backend = env.start(opts);
    a.connect(&["0/0", "0/1"]);
    b.connect(&["0/0", "0/1"]);
    rec.until("bound", |r| r.what == LogWhat::Bound { streams: 2 });
    assert_eq!(b.s(1).request(RequestBody::Close).status, 0);
    assert_eq!(a.s(0).request(RequestBody::Close).status, 0);
    let mut devs = backend.devices();
    devs.sort();
    assert_eq!(devs, vec![a.key(), b.key()]);
    assert!(backend.stream_stats(StreamId::new(2, 3, 0, 1)).is_some());
    // A device added while running is picked up.
    toolstack_add(&env.world, 1, 1, Some("1"), &basic_config());
    let mut c = Fe::new(&env.world, 1, 1);
    c.connect(&["0/0", "0/1"]);
    assert_eq!(c.s(0).request(RequestBody::Close).status, 0);
}

#[test]
fn frontend_state_written_while_store_perms_are_libxl_like() {
    // Sanity of the harness: the guest cannot write the backend state.
    let env = Env::new();
    toolstack_add(&env.world, 1, 0, Some("1"), &basic_config());
    let fe = Fe::new(&env.world, 1, 0);
    let err = fe
        .store
        .write(&format!("{}/state", fe.be_path), "4")
        .expect_err("guest must not write the backend state");
    assert!(err_str(err).contains("EACCES"));
}

#[test]
fn backend_initialising_written_by_someone_else_goes_initwait() {
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("1"), &basic_config());
    let fe = Fe::new(&env.world, 1, 0);
    let _b = env.start(opts);
    let key = fe.key();
    assert_eq!(rec.states(key, 4), vec![5, 6, 1, 2]);
    env.world
        .write_as(0, &format!("{}/state", fe.be_path), "1")
        .expect("write");
    rec.until("external 1", |r| r.what == LogWhat::BackendStateExternal(1));
    assert_eq!(rec.states(key, 1), vec![2]);
    fe.wait_be_state(2);
}

#[test]
fn grant_map_failure_during_bind_closes() {
    use xen_access::fake::{FaultError, FaultOp};
    use xen_access::StoreErrno;
    let env = Env::new();
    let (opts, mut rec) = env.options();
    toolstack_add(&env.world, 1, 0, Some("1"), &basic_config());
    let mut fe = Fe::new(&env.world, 1, 0);
    let _b = env.start(opts);
    let key = fe.key();
    fe.wait_be_state(2);
    fe.publish(&["0/0", "0/1"]);
    // The first mapping (stream 0/0's ring page) fails.
    env.world.faults().fail_next_for(
        0,
        FaultOp::GrantMap,
        1,
        FaultError::Errno(StoreErrno::Other("EINVAL".into())),
    );
    fe.set_state(3);
    let recs = rec.until("bind failure", |r| matches!(r.what, LogWhat::BindFailed(_)));
    let msg = recs.last().map(|r| r.to_string()).unwrap_or_default();
    assert!(msg.contains("ring-ref of stream 1/0/0/0"), "{msg}");
    assert_eq!(rec.states(key, 2), vec![5, 6]);
    assert_eq!(env.world.live_mappings(0), 0);
    assert_eq!(env.world.bound_ports(0), 0);
}

#[test]
fn notify_failure_fails_the_stream_and_closes() {
    use xen_access::fake::{FaultError, FaultOp};
    let mut c = connected();
    let key = c.fe.key();
    c.records
        .until("Connected", |r| r.what == LogWhat::StateWritten(4));
    c.env
        .world
        .faults()
        .fail_next_for(0, FaultOp::EvtchnNotify, 1, FaultError::ConnectionLost);
    c.fe.s(0).send(RequestBody::Close);
    let recs = c.records.until("stream failure", |r| {
        matches!(r.what, LogWhat::StreamFailed(_))
    });
    assert!(
        recs.last()
            .is_some_and(|r| r.to_string().contains("event channel")),
        "{recs:?}"
    );
    assert_eq!(c.records.states(key, 2), vec![5, 6]);
    assert_eq!(c.env.world.live_mappings(0), 0);
}
