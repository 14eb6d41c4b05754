//! The command line: a small hand-written parser and the help texts.

use std::path::PathBuf;
use std::time::Duration;

use sndif::formats::PcmFormat;

use crate::error::CliError;

/// `xen-snd --help`.
pub const USAGE: &str = "\
xen-snd — inspect, play to and record from Xen para-virtual sound cards (vsnd) in a guest

USAGE:
    xen-snd status [--connect] [--json] [--card N] [--timeout S]
    xen-snd play FILE.wav [--card N] [--device N] [--stream N] [OPTIONS]
    xen-snd record FILE.wav --seconds S [--card N] [--device N] [--stream N] [OPTIONS]
    xen-snd help [COMMAND] | --help | --version

    Run `xen-snd COMMAND --help` for the options of a command.

Runs in a Xen guest as root (or as a user with read-write access to /dev/xen/xenbus,
/dev/xen/gntalloc and /dev/xen/evtchn; `status` without --connect needs only xenbus). It talks
to the backend directly (it is a userspace sndif frontend): blacklist the kernel driver
snd_xen_front, or it and this tool fight over the card.

EXIT CODES:
    0  success                      5  no vsnd card, or no such card or stream
    1  other failure                6  the backend did not answer in time
    2  bad command line             7  the stream does not allow the format/rate/channels
    3  not on Xen (device missing)  8  the WAV file cannot be read or written
    4  permission denied            130/143  interrupted by SIGINT/SIGTERM (after a clean stop)

SIGNALS:
    SIGINT, SIGTERM  stop and close the stream, disconnect the card (frontend state 5, then 6),
                     print the summary of what was sent or captured, exit 130/143. A second
                     signal ends the process at once.

ENVIRONMENT:
    XENSTORED_PATH      connect to xenstored's unix socket instead of /dev/xen/xenbus
    XEN_SND_DEVICE_DIR  directory of the xenbus, gntalloc and evtchn devices (default /dev/xen)
    XEN_SND_TEST_WORLD  test hook: run against an in-process fake Xen with the reference backend
                        instead of the real devices (see the crate documentation)
";

/// `xen-snd status --help`.
pub const STATUS_HELP: &str = "\
xen-snd status — show the vsnd cards of this guest

USAGE:
    xen-snd status [--connect] [--json] [--card N] [--timeout S]

Lists every card below device/vsnd: backend domain, path and state; the frontend state; PCM
devices and their names; streams with direction, formats, rates, channels, buffer size and
unique-id, as configured in xenstore. Read-only: nothing is written.

OPTIONS:
    --connect      Also connect (full XenBus handshake) and show what the backend allows for each
                   stream (its HW_PARAM_QUERY answer) and what is offered as a result; the cards
                   are disconnected again (frontend state 5, then 6) before exiting.
    --json         Print JSON instead of text.
    --card N       Only card N (its <dev-id> below device/vsnd).
    --timeout S    With --connect: how long to wait for each backend (default 10 s).
    -h, --help     Print this help.
";

/// `xen-snd play --help`.
pub const PLAY_HELP: &str = "\
xen-snd play — play a WAV file on a vsnd playback stream

USAGE:
    xen-snd play FILE.wav [--card N] [--device N] [--stream N] [OPTIONS]

Reads FILE.wav ('-' = standard input): integer PCM 8/16/24/32-bit, float 32/64-bit, A-law or
mu-law, any channel count and rate. Picks the matching sndif format (24-bit: s24_le, else
s32_le), connects the card, opens the stream with it, pre-fills half the buffer, starts, plays,
waits until the backend's position reaches the end of the data, stops and closes.

Progress goes to standard error (a live line on a terminal, one final line otherwise). The
summary goes to standard output, one `key value` per line: card, stream, direction, file,
format, rate, channels, period_frames, buffer_frames, seconds, underruns (positions beyond the
data sent, as counted by the frontend), delay_ms (average of data written minus the backend's
position at each position event while playing), interrupted (only if a signal stopped it),
reconnects (times the card disconnected and connected again), lost_bytes (bytes a restarted
backend had acknowledged but not yet played, by its last position report), bytes (sent in
WRITE requests and, before a reconnect, acknowledged), and last
    frames <frames sent>
    sha256 <SHA-256 of the PCM bytes sent, as the stream carried them>

If the card disconnects while playing (its backend restarts), play waits up to
--reconnect-timeout for it to connect again, reopens the stream with the same parameters and
goes on from the last byte the old backend acknowledged: what it had not acknowledged is sent
again to the new one. `bytes` and `sha256` then cover each old backend's acknowledged bytes
followed by what the last backend was sent: every byte of the file once, in order.

OPTIONS:
    --card N        Card (<dev-id> below device/vsnd); default: the first card.
    --device N      PCM device; default: the first one with a playback stream.
    --stream N      Stream within the device; default: its first playback stream.
    --period-ms MS  Period (CUR_POS cadence and longest WRITE), default 20.
    --buffer-ms MS  Buffer, default 4 periods (never more than the stream's buffer-size).
    --timeout S     How long to wait for the backend to connect (default 10 s).
    --reconnect-timeout S
                    How long to wait for a card that disconnected (its backend restarted) to
                    connect again (default 30 s; 0 = fail at once).
    --no-progress   No live progress line.
    -h, --help      Print this help.
";

/// `xen-snd record --help`.
pub const RECORD_HELP: &str = "\
xen-snd record — record from a vsnd capture stream into a WAV file

USAGE:
    xen-snd record FILE.wav --seconds S [--card N] [--device N] [--stream N] [OPTIONS]

Connects the card, opens the capture stream, starts it, reads S seconds, stops, closes and
writes FILE.wav. The summary goes to standard output, one `key value` per line: card, stream,
direction, file, format, rate, channels, period_frames, buffer_frames, seconds, overruns (times
the buffer filled up before it was read), interrupted (only if a signal stopped it),
reconnects (times the card disconnected and connected again), lost_bytes (bytes the backend had
captured that could not be read any more when its card disconnected), bytes, and last
    frames <frames captured>
    sha256 <SHA-256 of the captured bytes, as the stream carried them>
(s24_le is stored packed in 3 bytes in the WAV file; the hash is over the 4-byte samples the
stream delivered.)

If the card disconnects while recording (its backend restarts), record waits up to
--reconnect-timeout for it to connect again, reopens the stream with the same parameters and
goes on writing into the same file until S seconds of audio were captured in total (the time
the card was away is not in the file).

OPTIONS:
    --seconds S     How long to record (required).
    --format F      Sample format (xenstore spelling, e.g. s16_le, s24_le, s32_le, float_le,
                    u8); default s16_le if the stream allows it, else its first format.
    --rate R        Rate in Hz; default 48000 if allowed, else the nearest allowed rate.
    --channels C    Channels; default 2, clamped to what the stream allows.
    --card N        Card; default: the first card.
    --device N      PCM device; default: the first one with a capture stream.
    --stream N      Stream within the device; default: its first capture stream.
    --period-ms MS  Period, default 20.
    --buffer-ms MS  Buffer, default 4 periods (never more than the stream's buffer-size).
    --timeout S     How long to wait for the backend to connect (default 10 s).
    --reconnect-timeout S
                    How long to wait for a card that disconnected to connect again (default
                    30 s; 0 = fail at once).
    --no-progress   No live progress line.
    -h, --help      Print this help.
";

/// Default wait for a backend during the handshake.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default wait for a disconnected card to connect again (`--reconnect-timeout`).
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which stream: card, PCM device, stream index (`None` = pick one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target {
    /// Card `<dev-id>`.
    pub card: Option<u32>,
    /// PCM device index.
    pub device: Option<u32>,
    /// Stream index within the device.
    pub stream: Option<u32>,
}

/// Buffer geometry asked for on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Geometry {
    /// `--period-ms`.
    pub period_ms: Option<u32>,
    /// `--buffer-ms`.
    pub buffer_ms: Option<u32>,
}

/// `status` options.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusArgs {
    /// `--connect`.
    pub connect: bool,
    /// `--json`.
    pub json: bool,
    /// `--card`.
    pub card: Option<u32>,
    /// `--timeout`.
    pub timeout: Duration,
}

/// `play` options.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayArgs {
    /// The WAV file (`-` = stdin).
    pub file: PathBuf,
    /// Which stream.
    pub target: Target,
    /// Period and buffer.
    pub geometry: Geometry,
    /// Handshake timeout.
    pub timeout: Duration,
    /// `--reconnect-timeout` (zero: a disconnect fails at once).
    pub reconnect_timeout: Duration,
    /// Live progress line (on a terminal).
    pub progress: bool,
}

/// `record` options.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordArgs {
    /// The WAV file to write.
    pub file: PathBuf,
    /// How long.
    pub seconds: f64,
    /// Which stream.
    pub target: Target,
    /// `--format`.
    pub format: Option<PcmFormat>,
    /// `--rate`.
    pub rate: Option<u32>,
    /// `--channels`.
    pub channels: Option<u8>,
    /// Period and buffer.
    pub geometry: Geometry,
    /// Handshake timeout.
    pub timeout: Duration,
    /// `--reconnect-timeout` (zero: a disconnect fails at once).
    pub reconnect_timeout: Duration,
    /// Live progress line (on a terminal).
    pub progress: bool,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Print this help text.
    Help(&'static str),
    /// Print the version.
    Version,
    /// `status`.
    Status(StatusArgs),
    /// `play`.
    Play(PlayArgs),
    /// `record`.
    Record(RecordArgs),
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Splits `--name=value` and hands out values.
struct Opts<'a> {
    args: std::slice::Iter<'a, String>,
    cmd: &'static str,
}

impl<'a> Opts<'a> {
    fn value(&mut self, name: &str, inline: Option<&'a str>) -> Result<&'a str, CliError> {
        match inline {
            Some(v) => Ok(v),
            None => self
                .args
                .next()
                .map(String::as_str)
                .ok_or_else(|| usage(format!("{} {name} needs a value", self.cmd))),
        }
    }
}

fn number<T: core::str::FromStr>(cmd: &str, name: &str, v: &str) -> Result<T, CliError> {
    v.trim()
        .parse::<T>()
        .map_err(|_| usage(format!("{cmd} {name}: {v:?} is not a valid number")))
}

fn positive_ms(cmd: &str, name: &str, v: &str) -> Result<u32, CliError> {
    let n: u32 = number(cmd, name, v)?;
    if n == 0 || n > 10_000 {
        return Err(usage(format!("{cmd} {name}: {n} is not in 1..=10000")));
    }
    Ok(n)
}

/// A number of seconds in [0, 86400] (0 allowed).
fn seconds_or_zero(cmd: &str, name: &str, v: &str) -> Result<Duration, CliError> {
    let s: f64 = number(cmd, name, v)?;
    if !s.is_finite() || !(0.0..=86_400.0).contains(&s) {
        return Err(usage(format!(
            "{cmd} {name}: {v:?} is not a number of seconds in [0, 86400]"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

fn seconds(cmd: &str, name: &str, v: &str) -> Result<f64, CliError> {
    let s: f64 = number(cmd, name, v)?;
    if !s.is_finite() || s <= 0.0 || s > 86_400.0 {
        return Err(usage(format!(
            "{cmd} {name}: {v:?} is not a number of seconds in (0, 86400]"
        )));
    }
    Ok(s)
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let Some((first, rest)) = args.split_first() else {
        return Err(usage("no command given: use status, play or record"));
    };
    match first.as_str() {
        "-h" | "--help" => Ok(Command::Help(USAGE)),
        "-V" | "--version" => Ok(Command::Version),
        "help" => Ok(Command::Help(match rest.first().map(String::as_str) {
            None => USAGE,
            Some("status") => STATUS_HELP,
            Some("play") => PLAY_HELP,
            Some("record") => RECORD_HELP,
            Some(other) => return Err(usage(format!("help: unknown command {other:?}"))),
        })),
        "status" => parse_status(rest),
        "play" => parse_stream_cmd("play", rest),
        "record" => parse_stream_cmd("record", rest),
        other => Err(usage(format!(
            "unknown command {other:?}: use status, play or record"
        ))),
    }
}

fn split_inline(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((n, v)) if n.starts_with("--") => (n, Some(v)),
        _ => (arg, None),
    }
}

fn parse_status(rest: &[String]) -> Result<Command, CliError> {
    let mut a = StatusArgs {
        connect: false,
        json: false,
        card: None,
        timeout: DEFAULT_TIMEOUT,
    };
    let mut o = Opts {
        args: rest.iter(),
        cmd: "status",
    };
    while let Some(arg) = o.args.next() {
        let (name, inline) = split_inline(arg);
        match name {
            "-h" | "--help" => return Ok(Command::Help(STATUS_HELP)),
            "--connect" => a.connect = true,
            "--json" => a.json = true,
            "--card" => a.card = Some(number("status", name, o.value(name, inline)?)?),
            "--timeout" => {
                a.timeout =
                    Duration::from_secs_f64(seconds("status", name, o.value(name, inline)?)?)
            }
            other => return Err(usage(format!("status: unknown argument {other:?}"))),
        }
    }
    Ok(Command::Status(a))
}

fn parse_stream_cmd(cmd: &'static str, rest: &[String]) -> Result<Command, CliError> {
    let mut file: Option<PathBuf> = None;
    let mut target = Target::default();
    let mut geometry = Geometry::default();
    let mut timeout = DEFAULT_TIMEOUT;
    let mut reconnect_timeout = DEFAULT_RECONNECT_TIMEOUT;
    let mut progress = true;
    let mut secs: Option<f64> = None;
    let mut format = None;
    let mut rate = None;
    let mut channels = None;
    let recording = cmd == "record";
    let mut o = Opts {
        args: rest.iter(),
        cmd,
    };
    let mut only_positional = false;
    while let Some(arg) = o.args.next() {
        if only_positional || arg == "-" || !arg.starts_with('-') {
            if file.is_some() {
                return Err(usage(format!("{cmd}: more than one file given ({arg:?})")));
            }
            file = Some(PathBuf::from(arg));
            continue;
        }
        let (name, inline) = split_inline(arg);
        match name {
            "--" => only_positional = true,
            "-h" | "--help" => {
                return Ok(Command::Help(if recording {
                    RECORD_HELP
                } else {
                    PLAY_HELP
                }))
            }
            "--card" => target.card = Some(number(cmd, name, o.value(name, inline)?)?),
            "--device" => target.device = Some(number(cmd, name, o.value(name, inline)?)?),
            "--stream" => target.stream = Some(number(cmd, name, o.value(name, inline)?)?),
            "--period-ms" => {
                geometry.period_ms = Some(positive_ms(cmd, name, o.value(name, inline)?)?)
            }
            "--buffer-ms" => {
                geometry.buffer_ms = Some(positive_ms(cmd, name, o.value(name, inline)?)?)
            }
            "--timeout" => {
                timeout = Duration::from_secs_f64(seconds(cmd, name, o.value(name, inline)?)?)
            }
            "--reconnect-timeout" => {
                reconnect_timeout = seconds_or_zero(cmd, name, o.value(name, inline)?)?
            }
            "--no-progress" => progress = false,
            "--seconds" if recording => secs = Some(seconds(cmd, name, o.value(name, inline)?)?),
            "--format" if recording => {
                let v = o.value(name, inline)?;
                let f = PcmFormat::from_xenstore(v).ok_or_else(|| {
                    usage(format!("record --format: unknown sample format {v:?}"))
                })?;
                format = Some(f);
            }
            "--rate" if recording => {
                let r: u32 = number(cmd, name, o.value(name, inline)?)?;
                if r == 0 {
                    return Err(usage("record --rate: 0 is not a rate"));
                }
                rate = Some(r);
            }
            "--channels" if recording => {
                let c: u8 = number(cmd, name, o.value(name, inline)?)?;
                if c == 0 {
                    return Err(usage("record --channels: 0 channels"));
                }
                channels = Some(c);
            }
            other => return Err(usage(format!("{cmd}: unknown option {other:?}"))),
        }
    }
    let file = file.ok_or_else(|| usage(format!("{cmd}: no FILE.wav given")))?;
    if recording {
        let seconds = secs.ok_or_else(|| usage("record: --seconds S is required"))?;
        Ok(Command::Record(RecordArgs {
            file,
            seconds,
            target,
            format,
            rate,
            channels,
            geometry,
            timeout,
            reconnect_timeout,
            progress,
        }))
    } else {
        Ok(Command::Play(PlayArgs {
            file,
            target,
            geometry,
            timeout,
            reconnect_timeout,
            progress,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn p(args: &[&str]) -> Result<Command, CliError> {
        let v: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        parse(&v)
    }

    #[test]
    fn status_options() {
        assert_eq!(
            p(&[
                "status",
                "--connect",
                "--json",
                "--card=3",
                "--timeout",
                "2.5"
            ])
            .expect("ok"),
            Command::Status(StatusArgs {
                connect: true,
                json: true,
                card: Some(3),
                timeout: Duration::from_millis(2500),
            })
        );
        assert_eq!(
            p(&["status", "-h"]).expect("ok"),
            Command::Help(STATUS_HELP)
        );
        assert!(matches!(p(&["status", "--bogus"]), Err(CliError::Usage(_))));
        assert!(matches!(p(&["status", "--card"]), Err(CliError::Usage(_))));
        assert!(matches!(
            p(&["status", "--card", "x"]),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn play_options() {
        let c = p(&[
            "play",
            "a.wav",
            "--card",
            "1",
            "--device=0",
            "--stream",
            "2",
            "--period-ms",
            "10",
            "--buffer-ms=80",
            "--no-progress",
        ])
        .expect("ok");
        assert_eq!(
            c,
            Command::Play(PlayArgs {
                file: PathBuf::from("a.wav"),
                target: Target {
                    card: Some(1),
                    device: Some(0),
                    stream: Some(2)
                },
                geometry: Geometry {
                    period_ms: Some(10),
                    buffer_ms: Some(80)
                },
                timeout: DEFAULT_TIMEOUT,
                reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
                progress: false,
            })
        );
        assert!(matches!(
            p(&["play", "a", "--reconnect-timeout", "0"]).expect("zero"),
            Command::Play(a) if a.reconnect_timeout.is_zero()
        ));
        assert!(matches!(
            p(&["play", "a", "--reconnect-timeout=2.5"]).expect("2.5"),
            Command::Play(a) if a.reconnect_timeout == Duration::from_millis(2500)
        ));
        assert!(matches!(
            p(&["play", "a", "--reconnect-timeout", "-1"]),
            Err(CliError::Usage(m)) if m.contains("--reconnect-timeout")
        ));
        assert!(
            matches!(p(&["play", "-"]).expect("stdin"), Command::Play(a) if a.file == Path::new("-"))
        );
        assert!(
            matches!(p(&["play", "--", "-x.wav"]).expect("dash"), Command::Play(a) if a.file == Path::new("-x.wav"))
        );
        assert!(matches!(p(&["play"]), Err(CliError::Usage(m)) if m.contains("no FILE.wav")));
        assert!(matches!(p(&["play", "a", "b"]), Err(CliError::Usage(_))));
        assert!(matches!(
            p(&["play", "a", "--seconds", "1"]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            p(&["play", "a", "--period-ms", "0"]),
            Err(CliError::Usage(_))
        ));
        assert_eq!(
            p(&["play", "--help"]).expect("help"),
            Command::Help(PLAY_HELP)
        );
    }

    #[test]
    fn record_options() {
        let c = p(&[
            "record",
            "out.wav",
            "--seconds",
            "1.5",
            "--format",
            "FLOAT_LE",
            "--rate",
            "44100",
            "--channels",
            "1",
        ])
        .expect("ok");
        let Command::Record(r) = c else {
            panic!("not record: {c:?}");
        };
        assert_eq!(r.seconds, 1.5);
        assert_eq!(r.format, Some(PcmFormat::F32Le));
        assert_eq!((r.rate, r.channels), (Some(44_100), Some(1)));
        assert!(
            matches!(p(&["record", "o.wav"]), Err(CliError::Usage(m)) if m.contains("--seconds"))
        );
        assert!(matches!(
            p(&["record", "o.wav", "--seconds", "-1"]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            p(&["record", "o.wav", "--seconds", "nan"]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            p(&["record", "o.wav", "--seconds", "1", "--format", "s16"]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            p(&["record", "o.wav", "--seconds", "1", "--channels", "0"]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            p(&["record", "o.wav", "--seconds", "1", "--channels", "256"]),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn top_level() {
        assert_eq!(p(&["--help"]).expect("help"), Command::Help(USAGE));
        assert_eq!(
            p(&["help", "record"]).expect("help"),
            Command::Help(RECORD_HELP)
        );
        assert_eq!(p(&["--version"]).expect("v"), Command::Version);
        assert!(matches!(p(&[]), Err(CliError::Usage(_))));
        assert!(matches!(p(&["dance"]), Err(CliError::Usage(_))));
        assert!(matches!(p(&["help", "dance"]), Err(CliError::Usage(_))));
    }
}
