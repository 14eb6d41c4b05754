//! Measurements (ignored by default; run with `--ignored --nocapture`): per graph quantum, the
//! delay the playback node reports (frames written toward the backend but not played) against
//! what the backend itself holds (bytes received minus its position), and the CPU time the
//! daemon (with the module, the engine and the in-process reference backend) uses while
//! playing.

#![cfg(feature = "test-hook")]

mod support;

use std::time::{Duration, Instant};

use support::{clip_of, serial, wait_for, world, write_pattern_wav, Daemon, DaemonBuilder, SINK};

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after `) `.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// The newest "port delay" the module logged for the sink.
fn node_delay(d: &Daemon) -> Option<u64> {
    d.daemon_log()
        .lines()
        .rev()
        .find(|l| l.contains(&format!("{SINK}: port delay")))
        .and_then(|l| l.split("port delay ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The backend's fill level (frames received, not yet played) from the control socket.
fn backend_fill(d: &Daemon) -> Option<u64> {
    let stats = d.control("stats");
    let received: u64 = stats
        .iter()
        .find(|l| l.starts_with("stream 1/0/0/0 "))?
        .split(" received ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let position: u64 = stats
        .iter()
        .find(|l| l.starts_with("position 1/0/0/0 "))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()?;
    Some(received.saturating_sub(position) / 4)
}

fn measure(quantum: u32) {
    let _s = serial();
    let mut d = DaemonBuilder::new()
        .module(&format!(
            "{} node.latency = {quantum}/48000 log.level = debug",
            world("preset=s16-duplex")
        ))
        .start();
    let wav = d.root.join("long.wav");
    write_pattern_wav(&wav, 0, 48_000 * 16 / 1024 * 1024);
    let latency = format!("{quantum}/48000");
    let _play = d.spawn_helper(
        "pw-play",
        &[
            "--latency",
            &latency,
            "-P",
            "{ node.name = testplay }",
            wav.to_str().unwrap(),
        ],
    );
    d.port_config("testplay", "Output");
    d.port_config(SINK, "Input");
    d.link("testplay:output_FL", &format!("{SINK}:playback_FL"));
    d.link("testplay:output_FR", &format!("{SINK}:playback_FR"));
    if wait_for(Duration::from_secs(20), || {
        (clip_of(&d.backend_wav(1)).bytes.len() > 48_000 * 4).then_some(())
    })
    .is_none()
    {
        d.fail("no audio reached the backend");
    }
    let pid = d.pid(0).expect("daemon pid");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    let mut node = Vec::new();
    let mut backend = Vec::new();
    while t0.elapsed() < Duration::from_secs(10) {
        if let (Some(n), Some(b)) = (node_delay(&d), backend_fill(&d)) {
            node.push(n as f64);
            backend.push(b as f64);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - c0) as f64 / hz;
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (n, b) = (avg(&node), avg(&backend));
    eprintln!(
        "quantum {quantum}: node delay {n:.0} frames ({:.1} ms), backend holds {b:.0} frames \
         ({:.1} ms), difference {:.0} frames; daemon CPU {:.1} % of one core ({cpu:.2} s in \
         {secs:.1} s); {} samples",
        n / 48.0,
        b / 48.0,
        n - b,
        100.0 * cpu / secs,
        node.len()
    );
    assert!(!node.is_empty(), "no samples");
    assert!(n > 0.0 && n < 3840.0 + f64::from(quantum), "node delay {n}");
}

#[test]
#[ignore]
fn measure_quantum_256() {
    measure(256);
}

#[test]
#[ignore]
fn measure_quantum_1024() {
    measure(1024);
}

#[test]
#[ignore]
fn measure_quantum_2048() {
    measure(2048);
}
