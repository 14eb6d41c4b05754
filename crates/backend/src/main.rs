//! `xen-snd-backend`: the reference sndif backend on the real Xen devices of a driver domain.

use std::path::PathBuf;
use std::process::ExitCode;

use xen_snd_backend::{
    pattern_sha256_hex, stderr_logger, stream_seed, Backend, BackendOptions, CaptureSource, Clock,
    Level, Services, StreamId, WritePacing,
};

const USAGE: &str = "\
xen-snd-backend — reference Xen para-virtual sound (sndif) backend

Serves every vsnd device below /local/domain/<own-domid>/backend/vsnd the way xen-troops
snd_be (on libxenbe) does: the same XenBus state sequence, one worker per stream serving one
request at a time, time-driven CUR_POS events. Instead of a sound card it hashes (SHA-256) every
byte played, optionally writes WAV files, and delivers a deterministic pattern (or silence, or a
loopback of a playback stream) for capture. Needs root in dom0 or a driver domain
(/dev/xen/xenbus or XENSTORED_PATH, /dev/xen/gntdev, /dev/xen/evtchn).

USAGE:
    xen-snd-backend [OPTIONS]

OPTIONS:
    -o, --output-dir DIR     Write one WAV file per playback stream into DIR, named
                             <fe>-<dev>-<pcm>-<stream>.wav (a later OPEN with another format
                             starts <...>-open<N>.wav). Without it no audio is written.
        --capture SOURCE     Default capture source: 'pattern' (default; the generator
                             documented in the library's `pattern` module, seeded per stream)
                             or 'silence'.
        --loopback P=C       Feed the bytes written to playback stream P into capture stream C
                             (stream ids are <fe-domid>/<dev-id>/<pcm-index>/<stream-index>,
                             e.g. 1/0/0/0=1/0/0/1). Repeatable.
        --clock-scale F      Stream time runs F times as fast as real time (default 1): CUR_POS
                             events come F times as often and WRITE pacing is F times faster.
        --immediate-writes   Answer WRITE at once (like the PulseAudio snd_be) instead of when a
                             simulated device queue of buffer_sz bytes has room (ALSA-like).
        --volume             Serve SET_VOLUME/GET_VOLUME/MUTE/UNMUTE (snd_be answers -EINVAL).
        --no-require-unique-id
                             Bind streams without a unique-id key (snd_be refuses them).
    -v, --verbose            Print state transitions and binds to stderr; twice (-vv) also
                             every request and event.
        --print-pattern-sha256 STREAM:BYTES
                             Do not serve anything: print the report line a capture of BYTES
                             bytes of STREAM's pattern (from its OPEN on) must match,
                             `sha256 STREAM BYTES <hex>`, and exit (e.g. 1/0/0/1:960000).
    -h, --help               Print this help.
    -V, --version            Print the version.

STREAM SETUP FROM unique-id:
    Tokens of a stream's unique-id (split on spaces, '+' and ','): 'wav'/'nowav' (WAV file or
    not), 'pattern', 'silence', 'loop=NAME' (a playback and a capture stream with the same NAME
    form a loopback). Other tokens, e.g. snd_be's 'pulse' or 'alsa<hw:0;0>', are ignored.

SIGNALS:
    SIGUSR1          Print the SHA-256 report to stdout.
    SIGTERM, SIGINT  Close every device (backend state 5 then 6), print the report, exit.
    The report has one line per stream:
        sha256 <fe>/<dev>/<pcm>/<stream> <bytes-received> <sha256-hex>
";

/// Parsed command line.
#[derive(Debug, PartialEq)]
struct Cli {
    output_dir: Option<PathBuf>,
    capture: CaptureSource,
    loopbacks: Vec<(StreamId, StreamId)>,
    clock_scale: f64,
    immediate_writes: bool,
    volume: bool,
    require_unique_id: bool,
    verbose: u8,
}

#[derive(Debug, PartialEq)]
enum Parsed {
    Run(Cli),
    Help,
    Version,
    PrintPattern(StreamId, u64),
}

fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut cli = Cli {
        output_dir: None,
        capture: CaptureSource::Pattern,
        loopbacks: Vec::new(),
        clock_scale: 1.0,
        immediate_writes: false,
        volume: false,
        require_unique_id: true,
        verbose: 0,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{what} needs a value")),
            }
        };
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "-v" | "--verbose" => cli.verbose = cli.verbose.saturating_add(1),
            "-vv" => cli.verbose = cli.verbose.saturating_add(2),
            "-o" | "--output-dir" => cli.output_dir = Some(PathBuf::from(value(name)?)),
            "--capture" => {
                cli.capture = match value(name)?.as_str() {
                    "pattern" => CaptureSource::Pattern,
                    "silence" => CaptureSource::Silence,
                    other => {
                        return Err(format!(
                            "--capture: unknown source {other:?} (pattern or silence)"
                        ))
                    }
                }
            }
            "--loopback" => {
                let v = value(name)?;
                let (p, c) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--loopback {v:?}: expected P=C"))?;
                let p: StreamId = p.parse().map_err(|e| format!("--loopback: {e}"))?;
                let c: StreamId = c.parse().map_err(|e| format!("--loopback: {e}"))?;
                cli.loopbacks.push((p, c));
            }
            "--clock-scale" => {
                let v = value(name)?;
                let f: f64 = v
                    .parse()
                    .map_err(|_| format!("--clock-scale {v:?}: not a number"))?;
                Clock::scaled(f).map_err(|e| format!("--clock-scale: {e}"))?;
                cli.clock_scale = f;
            }
            "--immediate-writes" => cli.immediate_writes = true,
            "--volume" => cli.volume = true,
            "--no-require-unique-id" => cli.require_unique_id = false,
            "--print-pattern-sha256" => {
                let v = value(name)?;
                let (id, bytes) = v
                    .split_once(':')
                    .ok_or_else(|| format!("{name} {v:?}: expected STREAM:BYTES"))?;
                let id: StreamId = id.parse().map_err(|e| format!("{name}: {e}"))?;
                let bytes: u64 = bytes
                    .parse()
                    .map_err(|_| format!("{name} {v:?}: {bytes:?} is not a byte count"))?;
                return Ok(Parsed::PrintPattern(id, bytes));
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    Ok(Parsed::Run(cli))
}

fn options(cli: &Cli) -> Result<BackendOptions, String> {
    let clock = Clock::scaled(cli.clock_scale).map_err(|e| e.to_string())?;
    let level = match cli.verbose {
        0 => Level::Warn,
        1 => Level::Info,
        _ => Level::Debug,
    };
    Ok(BackendOptions {
        clock,
        wav_dir: cli.output_dir.clone(),
        capture: cli.capture.clone(),
        loopbacks: cli.loopbacks.clone(),
        volume: cli.volume,
        require_unique_id: cli.require_unique_id,
        write_pacing: if cli.immediate_writes {
            WritePacing::Immediate
        } else {
            WritePacing::Queue
        },
        logger: Some(stderr_logger(level)),
        ..BackendOptions::default()
    })
}

/// The signals the main thread waits for (blocked in every thread).
fn signal_set() -> libc::sigset_t {
    // SAFETY: `sigset_t` is plain data; it is initialised by `sigemptyset` before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    set
}

fn print_report(backend: &Backend) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(backend.sha256_report().as_bytes());
    let _ = out.flush();
}

fn run(cli: &Cli) -> Result<(), String> {
    let opts = options(cli)?;
    if let Some(dir) = &cli.output_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("output directory {}: {e}", dir.display()))?;
    }
    // Block the signals before any thread exists, so every thread inherits the mask and only
    // `sigwait` below receives them.
    let set = signal_set();
    // SAFETY: `set` is a valid sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(format!(
            "blocking signals: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    let s = xen_access::real::backend_services_from_env().map_err(|e| e.to_string())?;
    let services = Services {
        store: s.store,
        grants: s.grants,
        evtchn: s.event_channels,
    };
    let mut backend = Backend::start(services, opts).map_err(|e| e.to_string())?;
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is a valid sigset_t and `sig` a valid out-pointer for the call.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc != 0 {
            let _ = backend.stop();
            print_report(&backend);
            return Err(format!(
                "waiting for signals: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        if sig == libc::SIGUSR1 {
            print_report(&backend);
            continue;
        }
        let stopped = backend.stop();
        print_report(&backend);
        return stopped.map_err(|e| e.to_string());
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Version) => {
            println!("xen-snd-backend {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Parsed::PrintPattern(id, bytes)) => {
            println!(
                "sha256 {id} {bytes} {}",
                pattern_sha256_hex(stream_seed(id), 0, bytes)
            );
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(cli)) => match run(&cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xen-snd-backend: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("xen-snd-backend: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn cli(v: &[&str]) -> Cli {
        match parse_args(&args(v)) {
            Ok(Parsed::Run(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = cli(&[]);
        assert_eq!(c.output_dir, None);
        assert_eq!(c.capture, CaptureSource::Pattern);
        assert!((c.clock_scale - 1.0).abs() < f64::EPSILON);
        assert!(c.require_unique_id);
        assert_eq!(c.verbose, 0);
    }

    #[test]
    fn every_option() {
        let c = cli(&[
            "-o",
            "/tmp/x",
            "--capture=silence",
            "--loopback",
            "1/0/0/0=1/0/0/1",
            "--clock-scale",
            "20",
            "--immediate-writes",
            "--volume",
            "--no-require-unique-id",
            "-v",
            "-v",
        ]);
        assert_eq!(c.output_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(c.capture, CaptureSource::Silence);
        assert_eq!(
            c.loopbacks,
            vec![(StreamId::new(1, 0, 0, 0), StreamId::new(1, 0, 0, 1))]
        );
        assert!((c.clock_scale - 20.0).abs() < f64::EPSILON);
        assert!(c.immediate_writes && c.volume && !c.require_unique_id);
        assert_eq!(c.verbose, 2);
        let o = options(&c).expect("options");
        assert_eq!(o.write_pacing, WritePacing::Immediate);
        assert!(o.logger.is_some());
    }

    #[test]
    fn errors_and_help() {
        assert_eq!(parse_args(&args(&["--help"])), Ok(Parsed::Help));
        assert_eq!(parse_args(&args(&["-V"])), Ok(Parsed::Version));
        assert!(parse_args(&args(&["--bogus"])).is_err());
        assert!(parse_args(&args(&["-o"])).is_err());
        assert!(parse_args(&args(&["--capture", "noise"])).is_err());
        assert!(parse_args(&args(&["--loopback", "1/0/0/0"])).is_err());
        assert!(parse_args(&args(&["--clock-scale", "0"])).is_err());
        assert!(parse_args(&args(&["--clock-scale", "x"])).is_err());
        assert_eq!(
            parse_args(&args(&["--print-pattern-sha256", "2/0/0/1:960000"])),
            Ok(Parsed::PrintPattern(StreamId::new(2, 0, 0, 1), 960_000))
        );
        assert!(parse_args(&args(&["--print-pattern-sha256", "2/0/0/1"])).is_err());
        assert!(parse_args(&args(&["--print-pattern-sha256", "2/0/1:5"])).is_err());
        assert!(parse_args(&args(&["--print-pattern-sha256", "2/0/0/1:-5"])).is_err());
        for opt in [
            "--output-dir",
            "--capture",
            "--loopback",
            "--clock-scale",
            "--immediate-writes",
            "--volume",
            "--no-require-unique-id",
            "--verbose",
            "--print-pattern-sha256",
            "SIGUSR1",
        ] {
            assert!(USAGE.contains(opt), "help lacks {opt}");
        }
    }
}
