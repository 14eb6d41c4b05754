//! The most real thing the xenstore layer can do without Xen, step by step for a human:
//!
//! 1. start Debian's real C xenstored (under the fakexen shim),
//! 2. create guest domain 1 and write its vsnd device with the real `xenstore-write`/`-chmod`,
//!    exactly as libxl does for `vsnd = [[ 'CARD, short-name=Main, …' ]]`,
//! 3. connect our own xenstore client **as domain 1** through the ring bridge,
//! 4. read the device into the sndif configuration model and print it,
//! 5. publish the frontend's transport keys back (one transaction) while a dom0 "backend" watches,
//! 6. show the result with the real `xenstore-ls -fp`,
//! 7. kill the domain and watch xenstored clean up.
//!
//! Run: `scripts/fetch-xen-tools && cargo run -p xenstored-harness --example vsnd-roundtrip`

use std::error::Error;
use std::time::Duration;

use sndif::config::{parse_card, ConfigSource};
use xen_store::Xs;
use xenstored_harness::{VsndCard, Xenstored};

const GUEST: u32 = 1;

/// The sndif configuration source over our xenstore client, relative to one device directory.
struct XsSource<'a> {
    xs: &'a Xs,
    dir: &'a str,
}

impl XsSource<'_> {
    fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.dir.to_owned()
        } else {
            format!("{}/{rel}", self.dir)
        }
    }
}

impl ConfigSource for XsSource<'_> {
    type Error = xen_store::Error;

    fn read(&self, rel: &str) -> Result<Option<String>, Self::Error> {
        self.xs.try_read_string(&self.path(rel))
    }

    fn list(&self, rel: &str) -> Result<Vec<String>, Self::Error> {
        match self.xs.directory(&self.path(rel)) {
            Err(e) if e.is_enoent() => Ok(Vec::new()),
            other => other,
        }
    }
}

fn step(n: u32, what: &str) {
    println!("\n=== {n}. {what}");
}

fn indent(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("vsnd-roundtrip failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    step(
        1,
        "start Debian's xenstored 4.17 under the fakexen LD_PRELOAD shim",
    );
    let xsd = Xenstored::start()?;
    println!(
        "    pid {} , socket {}",
        xsd.pid(),
        xsd.socket_path().display()
    );
    indent(&xsd.tool_ok("xenstore-ls", ["-fp", "/local/domain/0"])?);

    step(2, "toolstack (real xenstore-write/-chmod): domain 1 and its vsnd device, as libxl writes them");
    let guest = xsd.guest(GUEST)?;
    let card = VsndCard::testbed_example(GUEST);
    println!("    vsnd = [[ 'CARD, short-name=Main, long-name=Xen vsnd test, sample-rates=44100;48000, sample-formats=s16_le, channels-min=1, channels-max=2, buffer-size=65536', 'PCM, name=Main', 'STREAM, unique-id=0, type=p', 'STREAM, unique-id=1, type=c' ]]");
    xsd.write_vsnd(&card)?;
    indent(&xsd.tool_ok("xenstore-ls", ["-fp", &card.frontend_path()])?);
    indent(&xsd.tool_ok("xenstore-ls", ["-fp", &card.backend_path()])?);

    step(
        3,
        "our xen-store client connects AS DOMAIN 1 through the ring bridge",
    );
    let xs = guest.client()?;
    println!(
        "    socket {} (plays /dev/xen/xenbus)",
        guest.socket_path().display()
    );
    println!(
        "    relative 'name' reads {:?}, home is {:?}",
        xs.read_string("name")?,
        xs.get_domain_path(GUEST)?
    );
    match xs.write("/local/domain/0/name", b"guest was here") {
        Err(e) if e.is_eacces() => println!("    writing dom0's name is refused: {e}"),
        other => return Err(format!("expected EACCES, got {other:?}").into()),
    }

    step(4, "read device/vsnd/0 into the sndif configuration model");
    let cfg = parse_card(&XsSource {
        xs: &xs,
        dir: "device/vsnd/0",
    })?;
    println!(
        "    card: short-name {:?}, long-name {:?}, {} warning(s)",
        cfg.short_name,
        cfg.long_name,
        cfg.warnings.len()
    );
    for dev in &cfg.devices {
        println!("    pcm device {}: name {:?}", dev.index, dev.name);
        for s in &dev.streams {
            match &s.config {
                Ok(c) => {
                    let formats: Vec<String> = c.hw.formats.iter().map(|f| f.to_string()).collect();
                    println!(
                        "      stream {} ({}): {}, unique-id {:?}, rates {:?}, formats {:?}, channels {}..={}, buffer {} bytes",
                        s.index, s.path, c.kind, c.unique_id, c.hw.rates, formats,
                        c.hw.channels_min, c.hw.channels_max, c.hw.buffer_size
                    );
                }
                Err(e) => println!("      stream {} ({}): unusable: {e}", s.index, s.path),
            }
        }
    }

    step(
        5,
        "frontend publishes its transport keys in one transaction; a dom0 backend watches",
    );
    let backend = xsd.client()?;
    let fe_state = format!("{}/state", card.frontend_path());
    backend.watch(&fe_state, "fe-state")?;
    let first = backend.watch_events().recv_timeout(Duration::from_secs(5));
    println!("    backend watch registered, initial event: {first:?}");
    xs.transaction(|t| {
        for (i, s) in cfg.streams().enumerate() {
            let base = format!("device/vsnd/0/{}", s.path);
            // Distinct made-up numbers: grants and ports must never be confused.
            let n = 100 + 10 * i as u32;
            t.write(&format!("{base}/ring-ref"), n.to_string().as_bytes())?;
            t.write(
                &format!("{base}/event-channel"),
                (n + 1).to_string().as_bytes(),
            )?;
            t.write(
                &format!("{base}/evt-ring-ref"),
                (n + 2).to_string().as_bytes(),
            )?;
            t.write(
                &format!("{base}/evt-event-channel"),
                (n + 3).to_string().as_bytes(),
            )?;
        }
        t.write("device/vsnd/0/state", b"3")
    })?;
    match backend.watch_events().recv_timeout(Duration::from_secs(5)) {
        Some(ev) => println!(
            "    backend saw {} (token {}) = {:?}",
            ev.path,
            ev.token,
            backend.read_string(&ev.path)?
        ),
        None => return Err("the backend's watch did not fire".into()),
    }

    step(6, "what the real xenstore-ls -fp shows now");
    indent(&xsd.tool_ok("xenstore-ls", ["-fp", &card.frontend_path()])?);

    step(
        7,
        "the domain dies: @releaseDomain, its connection closes, its nodes go",
    );
    backend.watch("@releaseDomain", "released")?;
    let _initial = backend.watch_events().recv_timeout(Duration::from_secs(5));
    xsd.kill_domain(GUEST)?;
    // xenstored deletes the dead domain's nodes (firing the backend's state watch), then fires
    // @releaseDomain.
    loop {
        match backend.watch_events().recv_timeout(Duration::from_secs(5)) {
            Some(ev) => {
                println!("    backend got {} (token {})", ev.path, ev.token);
                if ev.path == "@releaseDomain" {
                    break;
                }
            }
            None => return Err("no @releaseDomain".into()),
        }
    }
    match xs.read("name") {
        Err(e) => println!("    the guest's client now fails: {e}"),
        Ok(v) => println!("    unexpected: the guest still reads {v:?}"),
    }
    let left = xsd.tool("xenstore-ls", ["-fp", &card.frontend_path()])?;
    if left.status.success() {
        println!("    frontend directory left (owned by the dead domain, now dom0's):");
        indent(&String::from_utf8_lossy(&left.stdout));
    } else {
        println!("    frontend directory is gone");
    }
    println!("\nvsnd-roundtrip: OK");
    Ok(())
}
