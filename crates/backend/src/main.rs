//! `xen-snd-backend`: the reference sndif backend on the real Xen devices of a driver domain.

use std::path::PathBuf;
use std::process::ExitCode;

use xen_snd_backend::{
    locate, pattern_sha256_hex, stderr_logger, stream_seed, summarize, Backend, BackendOptions,
    CaptureSource, Clock, Level, Run, Services, StreamId, Summary, WritePacing,
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
        --locate-pattern STREAM FILE [--frame-bytes N]
                             Do not serve anything: find where the bytes of FILE (raw PCM as
                             recorded, not a WAV file; frames of N bytes, default 4) lie in
                             STREAM's pattern, print one line and exit: 0 if they are one
                             contiguous piece of it (starting anywhere; silence before, inside
                             and after allowed), 1 if not, 2 on usage or I/O errors. The line:
                             pattern STREAM contiguous|broken from=<pattern offset of the first
                             pattern byte, or none> bytes=<pattern bytes> gaps=<jumps forward>/
                             <bytes missing> repeats=<bytes again> silence=<frames before>/
                             <frames between>in<places>/<frames after> other=<frames>
                             runs: <first 12 runs: 'silence xN', '@OFFSET+BYTES', 'other xN'>
                             (the line has no line breaks; offsets count bytes from the OPEN).
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
    Locate {
        id: StreamId,
        file: PathBuf,
        frame_bytes: usize,
    },
}

/// The largest `--frame-bytes` (a frame of 64 channels of 16 bytes).
const MAX_FRAME_BYTES: usize = 1024;

/// How many runs the `--locate-pattern` line names.
const LOCATE_LINE_RUNS: usize = 12;

fn default_cli() -> Cli {
    Cli {
        output_dir: None,
        capture: CaptureSource::Pattern,
        loopbacks: Vec::new(),
        clock_scale: 1.0,
        immediate_writes: false,
        volume: false,
        require_unique_id: true,
        verbose: 0,
    }
}

fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut cli = default_cli();
    let mut locate_args: Option<(StreamId, PathBuf)> = None;
    let mut frame_bytes: Option<usize> = None;
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
            "--locate-pattern" => {
                let id = value(name)?;
                let id: StreamId = id.parse().map_err(|e| format!("{name}: {e}"))?;
                let file = it
                    .next()
                    .ok_or_else(|| format!("{name} needs STREAM and FILE"))?;
                locate_args = Some((id, PathBuf::from(file)));
            }
            "--frame-bytes" => {
                let v = value(name)?;
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_FRAME_BYTES).contains(n))
                    .ok_or_else(|| {
                        format!("{name} {v:?}: not a frame size (1..={MAX_FRAME_BYTES})")
                    })?;
                frame_bytes = Some(n);
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    match locate_args {
        Some((id, file)) => {
            if cli != default_cli() {
                return Err("--locate-pattern takes no option but --frame-bytes".to_owned());
            }
            Ok(Parsed::Locate {
                id,
                file,
                frame_bytes: frame_bytes.unwrap_or(4),
            })
        }
        None if frame_bytes.is_some() => {
            Err("--frame-bytes only goes with --locate-pattern".to_owned())
        }
        None => Ok(Parsed::Run(cli)),
    }
}

/// The `--locate-pattern` line for the runs of a recording of stream `id` (see USAGE).
fn locate_line(id: StreamId, runs: &[Run], s: &Summary) -> String {
    let from = s
        .first_pattern_offset
        .map_or_else(|| "none".to_owned(), |o| o.to_string());
    let mut named: Vec<String> = runs
        .iter()
        .take(LOCATE_LINE_RUNS)
        .map(ToString::to_string)
        .collect();
    if runs.len() > LOCATE_LINE_RUNS {
        named.push(format!("... ({} runs)", runs.len()));
    }
    if named.is_empty() {
        named.push("none".to_owned());
    }
    format!(
        "pattern {id} {} from={from} bytes={} gaps={}/{} repeats={} silence={}/{}in{}/{} other={} runs: {}",
        if s.is_contiguous() { "contiguous" } else { "broken" },
        s.pattern_bytes,
        s.gaps,
        s.missing_bytes,
        s.repeated_bytes,
        s.silence_lead,
        s.silence_inserted,
        s.silence_places,
        s.silence_after,
        s.other_frames,
        named.join(", "),
    )
}

/// `--locate-pattern`: the line and the exit status (0 contiguous, 1 not, 2 unreadable file).
fn run_locate(id: StreamId, file: &std::path::Path, frame_bytes: usize) -> ExitCode {
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "xen-snd-backend: --locate-pattern: reading {}: {e}",
                file.display()
            );
            return ExitCode::from(2);
        }
    };
    let runs = locate(stream_seed(id), &data, frame_bytes);
    let summary = summarize(&runs);
    println!("{}", locate_line(id, &runs, &summary));
    if summary.is_contiguous() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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
        Ok(Parsed::Locate {
            id,
            file,
            frame_bytes,
        }) => run_locate(id, &file, frame_bytes),
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
    fn locate_line_format() {
        let id = StreamId::new(1, 0, 0, 1);
        let runs = [
            Run::Silence { frames: 1024 },
            Run::Pattern {
                file_offset: 4096,
                pattern_offset: 8192,
                bytes: 4096,
            },
            Run::Silence { frames: 2 },
            Run::Pattern {
                file_offset: 8200,
                pattern_offset: 12_288,
                bytes: 800,
            },
        ];
        let s = summarize(&runs);
        assert_eq!(
            locate_line(id, &runs, &s),
            "pattern 1/0/0/1 contiguous from=8192 bytes=4896 gaps=0/0 repeats=0 \
             silence=1024/2in1/0 other=0 runs: silence x1024, @8192+4096, silence x2, @12288+800"
        );
        assert_eq!(
            locate_line(id, &[], &summarize(&[])),
            "pattern 1/0/0/1 broken from=none bytes=0 gaps=0/0 repeats=0 silence=0/0in0/0 \
             other=0 runs: none"
        );
        let many: Vec<Run> = (0..20u64)
            .map(|i| {
                if i % 2 == 0 {
                    Run::Other { frames: 1 }
                } else {
                    Run::Pattern {
                        file_offset: i * 100,
                        pattern_offset: i * 1000,
                        bytes: 96,
                    }
                }
            })
            .collect();
        let line = locate_line(id, &many, &summarize(&many));
        assert!(
            line.starts_with("pattern 1/0/0/1 broken from=1000 bytes=960 gaps=9/"),
            "{line}"
        );
        assert!(
            line.contains(" other=10 runs: other x1, @1000+96, "),
            "{line}"
        );
        assert!(line.ends_with(", @11000+96, ... (20 runs)"), "{line}");
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
        let located = |id: StreamId, file: &str, frame_bytes| {
            Ok(Parsed::Locate {
                id,
                file: PathBuf::from(file),
                frame_bytes,
            })
        };
        assert_eq!(
            parse_args(&args(&["--locate-pattern", "2/0/0/1", "/tmp/r.raw"])),
            located(StreamId::new(2, 0, 0, 1), "/tmp/r.raw", 4)
        );
        assert_eq!(
            parse_args(&args(&[
                "--locate-pattern=3/1/0/2",
                "r",
                "--frame-bytes",
                "6"
            ])),
            located(StreamId::new(3, 1, 0, 2), "r", 6)
        );
        assert_eq!(
            parse_args(&args(&[
                "--frame-bytes=2",
                "--locate-pattern",
                "1/0/0/1",
                "r"
            ])),
            located(StreamId::new(1, 0, 0, 1), "r", 2)
        );
        assert!(parse_args(&args(&["--locate-pattern", "1/0/0/1"])).is_err());
        assert!(parse_args(&args(&["--locate-pattern", "1/0/1", "r"])).is_err());
        assert!(parse_args(&args(&["--locate-pattern"])).is_err());
        for bad in ["0", "-1", "x", "1025"] {
            assert!(
                parse_args(&args(&[
                    "--locate-pattern",
                    "1/0/0/1",
                    "r",
                    "--frame-bytes",
                    bad
                ]))
                .is_err(),
                "--frame-bytes {bad}"
            );
        }
        assert!(parse_args(&args(&["--frame-bytes", "4"])).is_err());
        assert!(parse_args(&args(&["--locate-pattern", "1/0/0/1", "r", "--volume"])).is_err());
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
            "--locate-pattern",
            "--frame-bytes",
            "SIGUSR1",
        ] {
            assert!(USAGE.contains(opt), "help lacks {opt}");
        }
    }
}
