//! Module arguments: the SPA-JSON object given to `pipewire__module_init`, already split into
//! key/value pairs by `pw_properties_new_string`, checked and turned into [`ModuleArgs`].
//!
//! Pure: no I/O, no PipeWire. Every key is known; an unknown key or an invalid value is an
//! [`ArgError`] that names the key and what is accepted, and the module refuses to load.

use core::fmt;
use std::path::PathBuf;

/// Default `node.name.prefix`.
pub const DEFAULT_PREFIX: &str = "xen_snd";
/// Default `node.latency`.
pub const DEFAULT_LATENCY: Latency = Latency {
    frames: 1024,
    rate: 48_000,
};
/// Default `priority.driver`.
pub const DEFAULT_PRIORITY_DRIVER: i32 = 1000;
/// Default `priority.session`.
pub const DEFAULT_PRIORITY_SESSION: i32 = 1000;
/// Default xenstore device when neither `xen.xenstore-path` nor `XENSTORED_PATH` is set.
pub const DEFAULT_XENSTORE_DEVICE: &str = "/dev/xen/xenbus";
/// Environment variable that names xenstored's unix socket (libxenstore's convention).
pub const XENSTORED_PATH_ENV: &str = "XENSTORED_PATH";
/// Default `remote.name`: the in-process connection to the daemon's own core.
pub const DEFAULT_REMOTE: &str = "internal";

/// Every key the module accepts, with its default, for the usage string and error messages.
pub const KEYS: &[(&str, &str)] = &[
    ("xen.cards", "all"),
    ("node.name.prefix", DEFAULT_PREFIX),
    ("node.latency", "1024/48000"),
    ("xen.driver", "true"),
    ("xen.period-frames", "0 (auto: 20 ms)"),
    ("xen.buffer-frames", "0 (auto: 4 periods)"),
    ("xen.xenstore-path", "$XENSTORED_PATH or /dev/xen/xenbus"),
    ("priority.driver", "1000"),
    ("priority.session", "1000"),
    ("remote.name", DEFAULT_REMOTE),
    ("log.level", "PipeWire's level"),
    ("xen.test-world", "unset (test hook)"),
];

/// Which vsnd cards (`device/vsnd/<dev-id>`) the module drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardFilter {
    /// Every card under `device/vsnd`.
    All,
    /// Only these dev-ids.
    Only(Vec<u32>),
}

impl CardFilter {
    /// Whether the card `dev_id` is selected.
    pub fn selects(&self, dev_id: u32) -> bool {
        match self {
            CardFilter::All => true,
            CardFilter::Only(ids) => ids.contains(&dev_id),
        }
    }
}

/// A `node.latency` value: `frames/rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Quantum in frames.
    pub frames: u32,
    /// Rate the quantum is expressed in, Hz.
    pub rate: u32,
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.frames, self.rate)
    }
}

/// A PipeWire log level (`log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    None = 0,
    /// Errors.
    Error = 1,
    /// Warnings.
    Warn = 2,
    /// Information.
    Info = 3,
    /// Debugging.
    Debug = 4,
    /// Tracing.
    Trace = 5,
}

/// Where xenstore is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XenstorePath {
    /// A character device (`/dev/xen/xenbus`).
    Device(PathBuf),
    /// xenstored's unix socket (from `XENSTORED_PATH` or a `.sock`/socket path given).
    Socket(PathBuf),
}

impl XenstorePath {
    /// The path.
    pub fn path(&self) -> &std::path::Path {
        match self {
            XenstorePath::Device(p) | XenstorePath::Socket(p) => p,
        }
    }
}

/// The checked module arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleArgs {
    /// `xen.cards`.
    pub cards: CardFilter,
    /// `node.name.prefix`.
    pub prefix: String,
    /// `node.latency`.
    pub latency: Latency,
    /// `xen.driver`: offer to drive the graph (a timer paced by the backend's clock).
    pub driver: bool,
    /// `xen.period-frames` (0 = automatic).
    pub period_frames: u32,
    /// `xen.buffer-frames` (0 = automatic).
    pub buffer_frames: u32,
    /// Where xenstore is (`xen.xenstore-path`, else `XENSTORED_PATH`, else the device).
    pub xenstore: XenstorePath,
    /// `priority.driver`.
    pub priority_driver: i32,
    /// `priority.session`.
    pub priority_session: i32,
    /// `remote.name`.
    pub remote: String,
    /// `log.level`, if set.
    pub log_level: Option<LogLevel>,
    /// `xen.test-world`: run against an in-process fake Xen with the reference backend
    /// instead of Xen (a test hook; the specification of `xen_snd_engine::testworld`).
    pub test_world: Option<String>,
}

/// A rejected argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A key the module does not know.
    #[error("unknown argument `{key}` (known: {known})")]
    Unknown {
        /// The key.
        key: String,
        /// The known keys, comma-separated.
        known: String,
    },
    /// A value that does not parse.
    #[error("invalid value {value:?} for `{key}`: expected {expected}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// Values that contradict each other.
    #[error("{0}")]
    Conflict(String),
    /// The argument string itself is not a SPA-JSON object.
    #[error("module arguments are not a SPA-JSON object: {0}")]
    Syntax(String),
}

impl ModuleArgs {
    /// Parse the key/value pairs. `env_xenstored` is the value of `XENSTORED_PATH` (passed in so
    /// the function stays pure).
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        env_xenstored: Option<&str>,
    ) -> Result<ModuleArgs, ArgError> {
        let mut a = ModuleArgs {
            cards: CardFilter::All,
            prefix: DEFAULT_PREFIX.to_owned(),
            latency: DEFAULT_LATENCY,
            driver: true,
            period_frames: 0,
            buffer_frames: 0,
            xenstore: default_xenstore(env_xenstored),
            priority_driver: DEFAULT_PRIORITY_DRIVER,
            priority_session: DEFAULT_PRIORITY_SESSION,
            remote: DEFAULT_REMOTE.to_owned(),
            log_level: None,
            test_world: None,
        };
        for (key, value) in pairs {
            let v = value.trim();
            match key {
                "xen.cards" => a.cards = parse_cards(v)?,
                "node.name.prefix" => a.prefix = parse_prefix(v)?,
                "node.latency" => a.latency = parse_latency(v)?,
                "xen.driver" => a.driver = parse_bool("xen.driver", v)?,
                "xen.period-frames" => a.period_frames = parse_frames("xen.period-frames", v)?,
                "xen.buffer-frames" => a.buffer_frames = parse_frames("xen.buffer-frames", v)?,
                "xen.xenstore-path" => a.xenstore = parse_xenstore(v)?,
                "priority.driver" => a.priority_driver = parse_priority("priority.driver", v)?,
                "priority.session" => a.priority_session = parse_priority("priority.session", v)?,
                "remote.name" => a.remote = parse_remote(v)?,
                "log.level" => a.log_level = Some(parse_log_level(v)?),
                "xen.test-world" => a.test_world = Some(parse_test_world(v)?),
                other => {
                    return Err(ArgError::Unknown {
                        key: other.to_owned(),
                        known: KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
                    })
                }
            }
        }
        if a.period_frames != 0 && a.buffer_frames != 0 && a.buffer_frames < 2 * a.period_frames {
            return Err(ArgError::Conflict(format!(
                "xen.buffer-frames ({}) must hold at least two periods of xen.period-frames ({})",
                a.buffer_frames, a.period_frames
            )));
        }
        Ok(a)
    }
}

fn default_xenstore(env: Option<&str>) -> XenstorePath {
    match env {
        Some(p) if !p.trim().is_empty() => XenstorePath::Socket(PathBuf::from(p.trim())),
        _ => XenstorePath::Device(PathBuf::from(DEFAULT_XENSTORE_DEVICE)),
    }
}

fn invalid(key: &'static str, value: &str, expected: &'static str) -> ArgError {
    ArgError::Invalid {
        key,
        value: value.to_owned(),
        expected,
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, case-insensitive).
fn parse_bool(key: &'static str, v: &str) -> Result<bool, ArgError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(invalid(key, v, "true or false")),
    }
}

/// Plain decimal digits only.
fn parse_u32(v: &str) -> Option<u32> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn parse_cards(v: &str) -> Result<CardFilter, ArgError> {
    const EXPECTED: &str = "\"all\" or a list of vsnd dev-ids such as [ 0 1 ]";
    if v.eq_ignore_ascii_case("all") {
        return Ok(CardFilter::All);
    }
    let inner = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    let mut ids = Vec::new();
    for item in inner
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
    {
        let id =
            parse_u32(item.trim_matches('"')).ok_or_else(|| invalid("xen.cards", v, EXPECTED))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(invalid("xen.cards", v, EXPECTED));
    }
    Ok(CardFilter::Only(ids))
}

fn parse_prefix(v: &str) -> Result<String, ArgError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(invalid(
            "node.name.prefix",
            v,
            "1 to 64 characters from A-Z a-z 0-9 _ - .",
        ))
    }
}

fn parse_latency(v: &str) -> Result<Latency, ArgError> {
    const EXPECTED: &str = "frames/rate such as 1024/48000 (frames 1..=65536, rate 1..=768000)";
    let (n, d) = v
        .split_once('/')
        .ok_or_else(|| invalid("node.latency", v, EXPECTED))?;
    let frames = parse_u32(n.trim()).filter(|f| (1..=65536).contains(f));
    let rate = parse_u32(d.trim()).filter(|r| (1..=768_000).contains(r));
    match (frames, rate) {
        (Some(frames), Some(rate)) => Ok(Latency { frames, rate }),
        _ => Err(invalid("node.latency", v, EXPECTED)),
    }
}

fn parse_frames(key: &'static str, v: &str) -> Result<u32, ArgError> {
    parse_u32(v)
        .filter(|f| *f == 0 || (16..=1 << 20).contains(f))
        .ok_or_else(|| invalid(key, v, "0 (automatic) or a frame count from 16 to 1048576"))
}

fn parse_priority(key: &'static str, v: &str) -> Result<i32, ArgError> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    parse_u32(digits)
        .and_then(|n| i32::try_from(n).ok())
        .map(|n| if v.starts_with('-') { -n } else { n })
        .ok_or_else(|| invalid(key, v, "an integer"))
}

fn parse_abs_path(key: &'static str, v: &str) -> Result<PathBuf, ArgError> {
    if v.starts_with('/') && !v.contains('\0') {
        Ok(PathBuf::from(v))
    } else {
        Err(invalid(key, v, "an absolute path"))
    }
}

fn parse_test_world(v: &str) -> Result<String, ArgError> {
    if cfg!(feature = "test-hook") && !v.is_empty() {
        Ok(v.to_owned())
    } else if v.is_empty() {
        Err(invalid(
            "xen.test-world",
            v,
            "a test-world specification such as \"preset=two-stream\"",
        ))
    } else {
        Err(invalid(
            "xen.test-world",
            v,
            "nothing: this build has no test hook (cargo feature `test-hook`)",
        ))
    }
}

fn parse_xenstore(v: &str) -> Result<XenstorePath, ArgError> {
    let p = parse_abs_path("xen.xenstore-path", v)?;
    // A path under /dev is the kernel's xenbus device, anything else xenstored's socket.
    if p.starts_with("/dev") {
        Ok(XenstorePath::Device(p))
    } else {
        Ok(XenstorePath::Socket(p))
    }
}

fn parse_remote(v: &str) -> Result<String, ArgError> {
    if !v.is_empty() && v.len() <= 108 && !v.contains('\0') {
        Ok(v.to_owned())
    } else {
        Err(invalid(
            "remote.name",
            v,
            "\"internal\" or a PipeWire socket name such as pipewire-0",
        ))
    }
}

fn parse_log_level(v: &str) -> Result<LogLevel, ArgError> {
    let l = match v.to_ascii_lowercase().as_str() {
        "0" | "none" | "x" => LogLevel::None,
        "1" | "error" | "e" => LogLevel::Error,
        "2" | "warn" | "warning" | "w" => LogLevel::Warn,
        "3" | "info" | "i" => LogLevel::Info,
        "4" | "debug" | "d" => LogLevel::Debug,
        "5" | "trace" | "t" => LogLevel::Trace,
        _ => {
            return Err(invalid(
                "log.level",
                v,
                "0-5 or none, error, warn, info, debug, trace",
            ))
        }
    };
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<ModuleArgs, ArgError> {
        ModuleArgs::parse(pairs.iter().copied(), None)
    }

    #[test]
    fn defaults_when_empty() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.cards, CardFilter::All);
        assert_eq!(a.prefix, "xen_snd");
        assert_eq!(a.latency, DEFAULT_LATENCY);
        assert!(a.driver);
        assert_eq!((a.period_frames, a.buffer_frames), (0, 0));
        assert_eq!(
            a.xenstore,
            XenstorePath::Device(PathBuf::from("/dev/xen/xenbus"))
        );
        assert_eq!(a.remote, "internal");
        assert_eq!(a.log_level, None);
        assert_eq!(a.test_world, None);
    }

    #[test]
    fn every_key_parses() {
        let a = parse(&[
            ("xen.cards", "[ 0, 3 3 ]"),
            ("node.name.prefix", "guest.snd"),
            ("node.latency", "512/44100"),
            ("xen.driver", "false"),
            ("xen.period-frames", "480"),
            ("xen.buffer-frames", "1920"),
            ("xen.xenstore-path", "/run/xenstored/socket"),
            ("priority.driver", "-5"),
            ("priority.session", "2000"),
            ("remote.name", "pipewire-0"),
            ("log.level", "debug"),
            ("xen.test-world", "preset=two-stream; volume=on"),
        ])
        .unwrap();
        assert_eq!(a.cards, CardFilter::Only(vec![0, 3]));
        assert!(a.cards.selects(3) && !a.cards.selects(1));
        assert_eq!(a.prefix, "guest.snd");
        assert_eq!(
            a.latency,
            Latency {
                frames: 512,
                rate: 44100
            }
        );
        assert!(!a.driver);
        assert_eq!((a.period_frames, a.buffer_frames), (480, 1920));
        assert_eq!(
            a.xenstore,
            XenstorePath::Socket(PathBuf::from("/run/xenstored/socket"))
        );
        assert_eq!((a.priority_driver, a.priority_session), (-5, 2000));
        assert_eq!(a.remote, "pipewire-0");
        assert_eq!(a.log_level, Some(LogLevel::Debug));
        assert_eq!(
            a.test_world.as_deref(),
            Some("preset=two-stream; volume=on")
        );
    }

    #[test]
    fn env_socket_is_the_default_and_the_argument_wins() {
        let a = ModuleArgs::parse([], Some("/run/xs.sock")).unwrap();
        assert_eq!(a.xenstore, XenstorePath::Socket("/run/xs.sock".into()));
        let a =
            ModuleArgs::parse([("xen.xenstore-path", "/dev/xen/xenbus")], Some("/run/xs")).unwrap();
        assert_eq!(a.xenstore, XenstorePath::Device("/dev/xen/xenbus".into()));
        let a = ModuleArgs::parse([], Some("  ")).unwrap();
        assert_eq!(a.xenstore.path(), std::path::Path::new("/dev/xen/xenbus"));
    }

    #[test]
    fn unknown_key_is_refused_and_named() {
        let e = parse(&[("node.nmae", "x")]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown argument `node.nmae`"), "{msg}");
        assert!(msg.contains("xen.cards"), "{msg}");
    }

    #[test]
    fn invalid_values_are_refused_with_the_key() {
        let cases: &[(&str, &str)] = &[
            ("xen.cards", "some"),
            ("xen.cards", "[ ]"),
            ("xen.cards", "[ -1 ]"),
            ("node.name.prefix", ""),
            ("node.name.prefix", "a b"),
            ("node.latency", "1024"),
            ("node.latency", "0/48000"),
            ("node.latency", "1024/0"),
            ("node.latency", "abc/48000"),
            ("xen.driver", "maybe"),
            ("xen.period-frames", "8"),
            ("xen.period-frames", "0x10"),
            ("xen.buffer-frames", "-1"),
            ("xen.xenstore-path", "relative/path"),
            ("priority.driver", "1.5"),
            ("priority.session", "99999999999"),
            ("remote.name", ""),
            ("log.level", "loud"),
            ("xen.test-world", ""),
        ];
        for (k, v) in cases {
            let e = parse(&[(k, v)]).unwrap_err();
            assert!(
                matches!(&e, ArgError::Invalid { key, .. } if key == k),
                "{k}={v}: {e:?}"
            );
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn conflicts_are_refused() {
        let e = parse(&[("xen.period-frames", "1024"), ("xen.buffer-frames", "1500")]).unwrap_err();
        assert!(matches!(e, ArgError::Conflict(_)), "{e:?}");
        // Either size alone is fine.
        assert!(parse(&[("xen.buffer-frames", "100")]).is_ok());
    }

    #[test]
    fn log_levels_by_number_and_name() {
        for (s, l) in [
            ("0", LogLevel::None),
            ("E", LogLevel::Error),
            ("warn", LogLevel::Warn),
            ("3", LogLevel::Info),
            ("TRACE", LogLevel::Trace),
        ] {
            assert_eq!(parse_log_level(s).unwrap(), l, "{s}");
        }
    }
}
