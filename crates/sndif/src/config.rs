//! The xenstore configuration of a vsnd card, as a typed description.
//!
//! The toolstack writes the configuration below the frontend device directory
//! `/local/domain/<fe>/device/vsnd/<dev-id>/`: card-level keys, PCM devices `<N>/` and streams
//! `<N>/<M>/` (sndif.md §1). [`parse_card`] reads it through a [`ConfigSource`] (xenstore in the
//! engine, a [`MapSource`] in tests) and returns a [`CardConfig`]. It is pure: no I/O beyond the
//! source, no global state, and it never panics, whatever the values.
//!
//! # Documented fallback
//!
//! The rules below follow the Linux frontend (`sound/xen/xen_snd_front_cfg.c`) where it is sound
//! and are more liberal where the toolstack and the spec disagree (sndif.md §1.5, §7 items 11–14).
//!
//! **Enumeration.** PCM devices are `0, 1, 2, ...` and stop at the first missing index; so do the
//! streams of a device, as both real peers enumerate. A name in a directory listing that is neither
//! in that contiguous run nor a key known at that level produces a warning naming it and is
//! otherwise ignored: an index-like (all-digit) name gives [`WarningKind::NonContiguousIndex`]
//! (`2` when `1` is missing, or `01`), any other name [`WarningKind::UnknownNode`] (`foo`). Known
//! keys, never warned about, are the configuration keys of the level plus the protocol keys other
//! parties write there: `backend`, `backend-id`, `state`, `version` on the card; `ring-ref`,
//! `event-channel`, `evt-ring-ref`, `evt-event-channel` on a stream.
//!
//! **Empty card.** A card without PCM device `0` is an error ([`ConfigError::NoDevice`]). A PCM
//! device without stream `0` is kept with no streams and a [`WarningKind::DeviceWithoutStreams`]
//! warning, unless no device of the card has a stream, which is an error
//! ([`ConfigError::NoStream`]): there would be nothing to bind.
//!
//! **Per-stream errors.** A stream whose configuration is unusable gets an `Err` in
//! [`StreamEntry::config`]; the other streams and the card stay usable (the engine still publishes
//! the transport keys of every stream, because the backend binds all of them). Only a failing
//! source (a xenstore read or listing that fails, as opposed to a node that is absent) fails the
//! whole card with [`ConfigError::Source`].
//!
//! **Inheritance.** The PCM parameters `sample-formats`, `sample-rates`, `channels-min`,
//! `channels-max` and `buffer-size` may be set on the card, on a PCM device and on a stream. A
//! stream uses, per key, the value of the most specific level that defines it; a lower level
//! *replaces* the upper one, it is not intersected with it (Linux behaviour, §7 item 12). A level
//! "defines" a key unless the key is absent there or its value falls back as described below.
//! `channels-min` and `channels-max` inherit independently of each other.
//!
//! **Built-in defaults** (when no level defines a key):
//! - formats: `s16_le` only ([`DEFAULT_FORMATS`]). Not Linux's `u8,s16_le`: `u8` would never be
//!   chosen by a PipeWire node that prefers the widest format it is offered, and `s16_le` is the
//!   one format every backend path takes and the engine's fallback when HW_PARAM_QUERY fails
//!   (§7 item 22). Configure `float_le`/`s32_le` explicitly to offer more.
//! - rates: 8000, 11025, 16000, 22050, 32000, 44100, 48000 ([`DEFAULT_RATES`]).
//! - channels: 1 ..= 2.
//! - buffer-size: 65536 octets.
//!
//! **Lists** (`sample-formats`, `sample-rates`) split on `,` and on `;` (xl syntax and
//! pre-upstream drafts), each item trimmed, empty items ignored. Formats are accepted in the
//! header's spelling and in libxl's (`float_le` / `f32_le`), in any case. An unknown name is
//! dropped with [`WarningKind::UnknownFormat`]; a compressed format (`ima_adpcm`, `mpeg`, `gsm`)
//! is dropped with [`WarningKind::UnsupportedFormat`], so every format of a [`PcmHw`] has a sample
//! size. A rate must be a decimal integer in `1..=768000` (any rate, not only Linux's 12), others
//! are dropped with [`WarningKind::InvalidRate`]. Rates are sorted and deduplicated. A list left
//! with no item (including an empty value) does not define the key: the parent's value is used,
//! with a [`WarningKind::EmptyList`] warning.
//!
//! **Numbers** are plain decimal: optional surrounding whitespace, digits only (no sign, no
//! `0x`, no fraction).
//! - `channels-min` / `channels-max`: `0` does not define the key (Linux); a value that is not a
//!   number does not define it either and warns ([`WarningKind::Unparsable`]); a value above 255
//!   is invalid ([`ConfigError::Invalid`]). An invalid value is an error for every stream that
//!   would use it (a stream that overrides it is unaffected). If a stream's effective minimum
//!   exceeds its effective maximum the stream gets [`ConfigError::ChannelRange`], naming the nodes
//!   both values came from (Linux silently clamps instead).
//! - `buffer-size` (octets): `0` does not define the key; not a number → [`WarningKind::Unparsable`],
//!   does not define it; below 4096 → raised to 4096 ([`WarningKind::BufferRaised`]); above 1 MiB
//!   → clamped to 1 MiB ([`WarningKind::BufferClamped`]), because a huge buffer would exhaust the
//!   guest's 1024-grant gntalloc limit (§7 item 28).
//!
//! **Stream keys.** `type` is `p` (playback) or `c` (capture), case-insensitive, surrounding
//! whitespace ignored; missing or anything else is an error for that stream. `unique-id` is
//! optional here (the backend may require it), kept verbatim and never interpreted (§7 item 13).
//!
//! **Names.** `short-name`, `long-name` and a device's `name` are trimmed; an empty or blank value
//! counts as absent. They are not truncated to the spec's `char[32]`/`char[80]`.
//!
//! Warnings about a card or device level are reported once, not per stream. All paths in errors
//! and warnings are relative to the device directory (`0/1/type`).

mod error;
mod source;

pub use error::{ConfigError, ConfigWarning, SourceOp, WarningKind, BUILT_IN};
pub use source::{ConfigSource, MapSource, MapSourceError};

use crate::formats::{FormatSet, PcmFormat};
use core::fmt;
use std::collections::HashSet;
use std::sync::Arc;

/// Formats used when no level sets `sample-formats`: `s16_le` only.
pub const DEFAULT_FORMATS: FormatSet = FormatSet(PcmFormat::S16Le.mask_bit());
/// Rates used when no level sets `sample-rates`.
pub const DEFAULT_RATES: [u32; 7] = [8000, 11025, 16000, 22050, 32000, 44100, 48000];
/// `channels-min` when no level sets it.
pub const DEFAULT_CHANNELS_MIN: u8 = 1;
/// `channels-max` when no level sets it.
pub const DEFAULT_CHANNELS_MAX: u8 = 2;
/// `buffer-size` (octets) when no level sets it.
pub const DEFAULT_BUFFER_SIZE: u32 = 65536;
/// Smallest accepted `buffer-size`; smaller values are raised to it.
pub const MIN_BUFFER_SIZE: u32 = 4096;
/// Largest accepted `buffer-size`; larger values are clamped to it.
pub const MAX_BUFFER_SIZE: u32 = 1 << 20;
/// Largest accepted sample rate.
pub const MAX_RATE: u32 = 768_000;

/// Xenstore key names used by the configuration (`XENSND_FIELD_*` in `sndif.h`).
pub mod keys {
    /// Card short name.
    pub const SHORT_NAME: &str = "short-name";
    /// Card long name.
    pub const LONG_NAME: &str = "long-name";
    /// PCM device name.
    pub const DEVICE_NAME: &str = "name";
    /// Stream type, `p` or `c`.
    pub const TYPE: &str = "type";
    /// Stream id for the backend.
    pub const UNIQUE_ID: &str = "unique-id";
    /// List of sample formats.
    pub const SAMPLE_FORMATS: &str = "sample-formats";
    /// List of sample rates.
    pub const SAMPLE_RATES: &str = "sample-rates";
    /// Minimum channel count.
    pub const CHANNELS_MIN: &str = "channels-min";
    /// Maximum channel count.
    pub const CHANNELS_MAX: &str = "channels-max";
    /// Buffer size in octets.
    pub const BUFFER_SIZE: &str = "buffer-size";
    /// Request ring grant reference (written by the frontend).
    pub const RING_REF: &str = "ring-ref";
    /// Request ring event channel (written by the frontend).
    pub const EVENT_CHANNEL: &str = "event-channel";
    /// Event page grant reference (written by the frontend).
    pub const EVT_RING_REF: &str = "evt-ring-ref";
    /// Event page event channel (written by the frontend).
    pub const EVT_EVENT_CHANNEL: &str = "evt-event-channel";
}

use keys::*;

const PCM_KEYS: [&str; 5] = [
    SAMPLE_FORMATS,
    SAMPLE_RATES,
    CHANNELS_MIN,
    CHANNELS_MAX,
    BUFFER_SIZE,
];
const CARD_KEYS: [&str; 6] = [
    SHORT_NAME,
    LONG_NAME,
    "backend",
    "backend-id",
    "state",
    "version",
];
const DEVICE_KEYS: [&str; 1] = [DEVICE_NAME];
const STREAM_KEYS: [&str; 6] = [
    TYPE,
    UNIQUE_ID,
    RING_REF,
    EVENT_CHANNEL,
    EVT_RING_REF,
    EVT_EVENT_CHANNEL,
];

/// Playback or capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `type = "p"`: guest → backend.
    Playback,
    /// `type = "c"`: backend → guest.
    Capture,
}

impl StreamKind {
    /// The xenstore value: `"p"` or `"c"`.
    pub const fn xenstore_value(self) -> &'static str {
        match self {
            StreamKind::Playback => "p",
            StreamKind::Capture => "c",
        }
    }

    /// Parse a `type` value: `p`/`c`, case-insensitive, surrounding whitespace ignored.
    pub fn from_xenstore(value: &str) -> Option<Self> {
        match value.trim() {
            v if v.eq_ignore_ascii_case("p") => Some(StreamKind::Playback),
            v if v.eq_ignore_ascii_case("c") => Some(StreamKind::Capture),
            _ => None,
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamKind::Playback => "playback",
            StreamKind::Capture => "capture",
        })
    }
}

/// The hardware parameters a stream may be opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcmHw {
    /// Allowed sample formats (never empty, linear PCM only, when produced by [`parse_card`]).
    pub formats: FormatSet,
    /// Allowed rates in Hz, sorted ascending, deduplicated, never empty.
    pub rates: Vec<u32>,
    /// Minimum channel count, ≥ 1.
    pub channels_min: u8,
    /// Maximum channel count, ≥ `channels_min`.
    pub channels_max: u8,
    /// Maximum buffer size in octets, in `MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE`.
    pub buffer_size: u32,
}

impl Default for PcmHw {
    /// The built-in defaults.
    fn default() -> Self {
        PcmHw {
            formats: DEFAULT_FORMATS,
            rates: DEFAULT_RATES.to_vec(),
            channels_min: DEFAULT_CHANNELS_MIN,
            channels_max: DEFAULT_CHANNELS_MAX,
            buffer_size: DEFAULT_BUFFER_SIZE,
        }
    }
}

impl PcmHw {
    /// Octets of the largest frame this stream may use: the widest allowed format times
    /// `channels_max`. Formats without a fixed sample size are skipped; 0 if none has one.
    pub fn max_frame_bytes(&self) -> u32 {
        let widest = self
            .formats
            .iter()
            .filter_map(PcmFormat::bytes_per_sample)
            .max()
            .unwrap_or(0);
        widest * u32::from(self.channels_max)
    }

    /// Whether `format` at `rate` Hz with `channels` channels is allowed.
    pub fn supports(&self, format: PcmFormat, rate: u32, channels: u8) -> bool {
        self.formats.contains(format)
            && self.rates.binary_search(&rate).is_ok()
            && (self.channels_min..=self.channels_max).contains(&channels)
    }
}

/// The configuration of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Playback or capture.
    pub kind: StreamKind,
    /// `unique-id`, verbatim; meaningful to the backend only.
    pub unique_id: Option<String>,
    /// Effective PCM parameters after inheritance.
    pub hw: PcmHw,
}

/// One stream `<device>/<index>` of the card, usable or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// PCM device index.
    pub device: u32,
    /// Stream index within the device.
    pub index: u32,
    /// Path relative to the device directory, `"<device>/<index>"`; the transport keys go here.
    pub path: String,
    /// The stream's configuration, or why it is unusable.
    pub config: Result<StreamConfig, ConfigError>,
}

/// One PCM device `<index>/` of the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// PCM device index.
    pub index: u32,
    /// `name`, trimmed; `None` if absent or blank.
    pub name: Option<String>,
    /// Its streams `0, 1, ...` (possibly none).
    pub streams: Vec<StreamEntry>,
}

/// The configuration of a vsnd card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardConfig {
    /// `short-name`, trimmed; `None` if absent or blank.
    pub short_name: Option<String>,
    /// `long-name`, trimmed; `None` if absent or blank.
    pub long_name: Option<String>,
    /// PCM devices `0, 1, ...`, at least one.
    pub devices: Vec<DeviceConfig>,
    /// Everything dropped, replaced or ignored, in reading order.
    pub warnings: Vec<ConfigWarning>,
}

impl CardConfig {
    /// All streams in card-global order (device 0's streams first), usable or not. The position
    /// in this iteration is the card-global stream index.
    pub fn streams(&self) -> impl Iterator<Item = &StreamEntry> + '_ {
        self.devices.iter().flat_map(|d| d.streams.iter())
    }

    /// The stream `<device>/<index>`, if the card has it.
    pub fn stream(&self, device: u32, index: u32) -> Option<&StreamEntry> {
        self.streams()
            .find(|s| s.device == device && s.index == index)
    }
}

/// Read the configuration of a vsnd card from `src` (see the module documentation for the rules).
///
/// Fails as a whole only if the source fails or the card has no PCM device or no stream; a
/// malformed stream yields an error in its own [`StreamEntry`].
pub fn parse_card(src: &(impl ConfigSource + ?Sized)) -> Result<CardConfig, ConfigError> {
    Parser {
        src,
        warnings: Vec::new(),
    }
    .card()
}

/// A key's value at one level after parsing.
#[derive(Debug, Clone)]
enum Setting<T> {
    /// The level does not define the key.
    Inherit,
    /// The level defines it, at `path`.
    Set { value: T, path: String },
    /// The level defines it with an unusable value.
    Invalid(ConfigError),
}

/// The PCM parameters one level (card, device or stream) defines.
#[derive(Debug, Clone)]
struct Level {
    formats: Option<FormatSet>,
    rates: Option<Vec<u32>>,
    channels_min: Setting<u8>,
    channels_max: Setting<u8>,
    buffer_size: Option<u32>,
}

/// A decimal number as found in xenstore.
enum Decimal {
    Value(u64),
    /// All digits, but more than `u64` holds.
    TooLarge,
    NotANumber,
}

fn parse_decimal(value: &str) -> Decimal {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Decimal::NotANumber;
    }
    let mut n: u64 = 0;
    for b in digits.bytes() {
        let next = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')));
        match next {
            Some(v) => n = v,
            None => return Decimal::TooLarge,
        }
    }
    Decimal::Value(n)
}

fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value
        .split([',', ';'])
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn is_index_like(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// Length of the run `0, 1, 2, ...` of canonical decimal names present in `names`.
fn contiguous_run(names: &[String]) -> u32 {
    let present: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut run: u32 = 0;
    while present.contains(run.to_string().as_str()) {
        match run.checked_add(1) {
            Some(next) => run = next,
            None => break,
        }
    }
    run
}

struct Parser<'a, S: ?Sized> {
    src: &'a S,
    warnings: Vec<ConfigWarning>,
}

impl<S: ConfigSource + ?Sized> Parser<'_, S> {
    fn read(&self, path: &str) -> Result<Option<String>, ConfigError> {
        self.src.read(path).map_err(|e| ConfigError::Source {
            op: SourceOp::Read,
            path: path.to_owned(),
            source: Arc::new(e),
        })
    }

    fn list(&self, path: &str) -> Result<Vec<String>, ConfigError> {
        self.src.list(path).map_err(|e| ConfigError::Source {
            op: SourceOp::List,
            path: path.to_owned(),
            source: Arc::new(e),
        })
    }

    fn warn(&mut self, path: &str, value: &str, kind: WarningKind) {
        self.warnings.push(ConfigWarning {
            path: path.to_owned(),
            value: value.to_owned(),
            kind,
        });
    }

    fn card(mut self) -> Result<CardConfig, ConfigError> {
        let names = self.list("")?;
        let run = contiguous_run(&names);
        if run == 0 {
            let strays = names.into_iter().filter(|n| is_index_like(n)).collect();
            return Err(ConfigError::NoDevice {
                path: "0".to_owned(),
                strays,
            });
        }
        self.warn_strays("", &names, Some(run), &CARD_KEYS);
        let short_name = self.read_name(SHORT_NAME)?;
        let long_name = self.read_name(LONG_NAME)?;
        let card = self.level("")?;

        let mut devices = Vec::new();
        for index in 0..run {
            devices.push(self.device(index, &card)?);
        }
        if devices.iter().all(|d| d.streams.is_empty()) {
            return Err(ConfigError::NoStream {
                path: "0/0".to_owned(),
            });
        }
        Ok(CardConfig {
            short_name,
            long_name,
            devices,
            warnings: self.warnings,
        })
    }

    fn device(&mut self, index: u32, card: &Level) -> Result<DeviceConfig, ConfigError> {
        let dir = index.to_string();
        let names = self.list(&dir)?;
        let run = contiguous_run(&names);
        self.warn_strays(&dir, &names, Some(run), &DEVICE_KEYS);
        if run == 0 {
            self.warn(&join(&dir, "0"), "", WarningKind::DeviceWithoutStreams);
        }
        let name = self.read_name(&join(&dir, DEVICE_NAME))?;
        let device = self.level(&dir)?;
        let mut streams = Vec::new();
        for stream in 0..run {
            streams.push(self.stream(index, stream, card, &device)?);
        }
        Ok(DeviceConfig {
            index,
            name,
            streams,
        })
    }

    fn stream(
        &mut self,
        device: u32,
        index: u32,
        card: &Level,
        dev: &Level,
    ) -> Result<StreamEntry, ConfigError> {
        let dir = format!("{device}/{index}");
        let names = self.list(&dir)?;
        self.warn_strays(&dir, &names, None, &STREAM_KEYS);
        let type_path = join(&dir, TYPE);
        let kind = match self.read(&type_path)? {
            None => Err(ConfigError::Missing { path: type_path }),
            Some(value) => StreamKind::from_xenstore(&value).ok_or(ConfigError::Invalid {
                path: type_path,
                value,
                reason: "expected \"p\" (playback) or \"c\" (capture)",
            }),
        };
        let unique_id = self.read(&join(&dir, UNIQUE_ID))?;
        let stream = self.level(&dir)?;
        let config = kind.and_then(|kind| {
            resolve([card, dev, &stream]).map(|hw| StreamConfig {
                kind,
                unique_id,
                hw,
            })
        });
        Ok(StreamEntry {
            device,
            index,
            path: dir,
            config,
        })
    }

    /// Warn about the names in `names` that are neither in the index run `0..run` nor known keys.
    fn warn_strays(&mut self, dir: &str, names: &[String], run: Option<u32>, known: &[&str]) {
        let mut strays: Vec<&String> = names
            .iter()
            .filter(|n| !known.contains(&n.as_str()) && !PCM_KEYS.contains(&n.as_str()))
            .filter(|n| match run {
                Some(run) => !in_run(n, run),
                None => true,
            })
            .collect();
        strays.sort();
        strays.dedup();
        for name in strays {
            let kind = match run {
                Some(run) if is_index_like(name) => WarningKind::NonContiguousIndex { run },
                _ => WarningKind::UnknownNode,
            };
            self.warn(&join(dir, name), "", kind);
        }
    }

    fn read_name(&self, path: &str) -> Result<Option<String>, ConfigError> {
        Ok(self
            .read(path)?
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()))
    }

    /// Read and parse the PCM parameters defined in directory `dir`.
    fn level(&mut self, dir: &str) -> Result<Level, ConfigError> {
        let path = join(dir, SAMPLE_FORMATS);
        let formats = match self.read(&path)? {
            None => None,
            Some(value) => self.formats(&path, &value),
        };
        let path = join(dir, SAMPLE_RATES);
        let rates = match self.read(&path)? {
            None => None,
            Some(value) => self.rates(&path, &value),
        };
        let path = join(dir, CHANNELS_MIN);
        let channels_min = match self.read(&path)? {
            None => Setting::Inherit,
            Some(value) => self.channels(path, value),
        };
        let path = join(dir, CHANNELS_MAX);
        let channels_max = match self.read(&path)? {
            None => Setting::Inherit,
            Some(value) => self.channels(path, value),
        };
        let path = join(dir, BUFFER_SIZE);
        let buffer_size = match self.read(&path)? {
            None => None,
            Some(value) => self.buffer_size(&path, &value),
        };
        Ok(Level {
            formats,
            rates,
            channels_min,
            channels_max,
            buffer_size,
        })
    }

    fn formats(&mut self, path: &str, value: &str) -> Option<FormatSet> {
        let mut set = FormatSet::empty();
        for item in list_items(value) {
            match PcmFormat::from_xenstore(item) {
                Some(f) if f.bytes_per_sample().is_some() => set.insert(f),
                Some(_) => self.warn(path, item, WarningKind::UnsupportedFormat),
                None => self.warn(path, item, WarningKind::UnknownFormat),
            }
        }
        if set.is_empty() {
            self.warn(path, value, WarningKind::EmptyList);
            None
        } else {
            Some(set)
        }
    }

    fn rates(&mut self, path: &str, value: &str) -> Option<Vec<u32>> {
        let mut rates = Vec::new();
        for item in list_items(value) {
            match parse_decimal(item) {
                Decimal::Value(r) if (1..=u64::from(MAX_RATE)).contains(&r) => {
                    // In range, so it fits.
                    rates.push(u32::try_from(r).unwrap_or(MAX_RATE));
                }
                _ => self.warn(path, item, WarningKind::InvalidRate),
            }
        }
        rates.sort_unstable();
        rates.dedup();
        if rates.is_empty() {
            self.warn(path, value, WarningKind::EmptyList);
            None
        } else {
            Some(rates)
        }
    }

    fn channels(&mut self, path: String, value: String) -> Setting<u8> {
        match parse_decimal(&value) {
            Decimal::Value(0) => Setting::Inherit,
            Decimal::Value(n) => match u8::try_from(n) {
                Ok(n) => Setting::Set { value: n, path },
                Err(_) => Setting::Invalid(ConfigError::Invalid {
                    path,
                    value,
                    reason: "channel count above 255",
                }),
            },
            Decimal::TooLarge => Setting::Invalid(ConfigError::Invalid {
                path,
                value,
                reason: "channel count above 255",
            }),
            Decimal::NotANumber => {
                self.warn(&path, &value, WarningKind::Unparsable);
                Setting::Inherit
            }
        }
    }

    fn buffer_size(&mut self, path: &str, value: &str) -> Option<u32> {
        match parse_decimal(value) {
            Decimal::Value(0) => None,
            Decimal::Value(n) if n < u64::from(MIN_BUFFER_SIZE) => {
                let to = MIN_BUFFER_SIZE;
                self.warn(path, value, WarningKind::BufferRaised { to });
                Some(to)
            }
            Decimal::Value(n) if n <= u64::from(MAX_BUFFER_SIZE) => {
                // In range, so it fits.
                Some(u32::try_from(n).unwrap_or(MAX_BUFFER_SIZE))
            }
            Decimal::Value(_) | Decimal::TooLarge => {
                let to = MAX_BUFFER_SIZE;
                self.warn(path, value, WarningKind::BufferClamped { to });
                Some(to)
            }
            Decimal::NotANumber => {
                self.warn(path, value, WarningKind::Unparsable);
                None
            }
        }
    }
}

fn in_run(name: &str, run: u32) -> bool {
    // Canonical decimal only: "01" is not index 1.
    match parse_decimal(name) {
        Decimal::Value(n) => n < u64::from(run) && n.to_string() == name,
        _ => false,
    }
}

/// A channel bound after inheritance: its value, the node it came from and how specific that node
/// is (0 = built-in default, 1 = card, 2 = device, 3 = stream).
struct ChannelBound {
    value: u8,
    from: String,
    depth: usize,
}

fn resolve_channels(settings: [&Setting<u8>; 3], default: u8) -> Result<ChannelBound, ConfigError> {
    for (i, setting) in settings.iter().enumerate().rev() {
        match setting {
            Setting::Inherit => continue,
            Setting::Set { value, path } => {
                return Ok(ChannelBound {
                    value: *value,
                    from: path.clone(),
                    depth: i + 1,
                })
            }
            Setting::Invalid(e) => return Err(e.clone()),
        }
    }
    Ok(ChannelBound {
        value: default,
        from: BUILT_IN.to_owned(),
        depth: 0,
    })
}

/// The effective parameters of a stream from its three levels `[card, device, stream]`.
fn resolve(levels: [&Level; 3]) -> Result<PcmHw, ConfigError> {
    let formats = levels
        .iter()
        .rev()
        .find_map(|l| l.formats)
        .unwrap_or(DEFAULT_FORMATS);
    let rates = levels
        .iter()
        .rev()
        .find_map(|l| l.rates.clone())
        .unwrap_or_else(|| DEFAULT_RATES.to_vec());
    let buffer_size = levels
        .iter()
        .rev()
        .find_map(|l| l.buffer_size)
        .unwrap_or(DEFAULT_BUFFER_SIZE);
    let min = resolve_channels(levels.map(|l| &l.channels_min), DEFAULT_CHANNELS_MIN)?;
    let max = resolve_channels(levels.map(|l| &l.channels_max), DEFAULT_CHANNELS_MAX)?;
    if min.value > max.value {
        let path = if min.depth >= max.depth {
            min.from.clone()
        } else {
            max.from.clone()
        };
        return Err(ConfigError::ChannelRange {
            path,
            min: min.value,
            min_from: min.from,
            max: max.value,
            max_from: max.from,
        });
    }
    Ok(PcmHw {
        formats,
        rates,
        channels_min: min.value,
        channels_max: max.value,
        buffer_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(d: Decimal) -> Option<u64> {
        match d {
            Decimal::Value(v) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn decimals_are_plain_digits_only() {
        assert_eq!(value(parse_decimal("48000")), Some(48000));
        assert_eq!(value(parse_decimal(" 007 ")), Some(7));
        assert_eq!(value(parse_decimal("18446744073709551615")), Some(u64::MAX));
        assert!(matches!(
            parse_decimal("18446744073709551616"),
            Decimal::TooLarge
        ));
        for bad in ["", " ", "-1", "+1", "0x10", "1.5", "1e3", "４８"] {
            assert!(
                matches!(parse_decimal(bad), Decimal::NotANumber),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn lists_split_on_both_separators_and_trim() {
        let items: Vec<&str> = list_items(" a, b;c ,, ;d ").collect();
        assert_eq!(items, ["a", "b", "c", "d"]);
        assert_eq!(list_items(" ,; ").count(), 0);
    }

    #[test]
    fn run_stops_at_first_gap_and_needs_canonical_names() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(contiguous_run(&names(&["0", "1", "3", "name"])), 2);
        assert_eq!(contiguous_run(&names(&["1", "2"])), 0);
        assert_eq!(contiguous_run(&names(&["00", "01"])), 0);
        assert!(in_run("1", 2));
        assert!(!in_run("2", 2));
        assert!(!in_run("01", 2));
        assert!(!in_run("x", 2));
    }

    fn level() -> Level {
        Level {
            formats: None,
            rates: None,
            channels_min: Setting::Inherit,
            channels_max: Setting::Inherit,
            buffer_size: None,
        }
    }

    #[test]
    fn resolve_takes_the_most_specific_level_per_key() {
        let mut card = level();
        card.rates = Some(vec![44100, 48000]);
        card.channels_max = Setting::Set {
            value: 8,
            path: "channels-max".into(),
        };
        let mut dev = level();
        dev.rates = Some(vec![8000]);
        dev.buffer_size = Some(8192);
        let mut stream = level();
        stream.channels_min = Setting::Set {
            value: 2,
            path: "0/0/channels-min".into(),
        };
        let hw = resolve([&card, &dev, &stream]).unwrap();
        assert_eq!(hw.rates, [8000]);
        assert_eq!(hw.buffer_size, 8192);
        assert_eq!((hw.channels_min, hw.channels_max), (2, 8));
        assert_eq!(hw.formats, DEFAULT_FORMATS);
        assert_eq!(
            resolve([&level(), &level(), &level()]).unwrap(),
            PcmHw::default()
        );
    }

    #[test]
    fn empty_channel_range_names_the_more_specific_node() {
        let mut card = level();
        card.channels_min = Setting::Set {
            value: 4,
            path: "channels-min".into(),
        };
        let mut stream = level();
        stream.channels_max = Setting::Set {
            value: 3,
            path: "0/0/channels-max".into(),
        };
        let err = resolve([&card, &level(), &stream]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::ChannelRange {
                path: "0/0/channels-max".into(),
                min: 4,
                min_from: "channels-min".into(),
                max: 3,
                max_from: "0/0/channels-max".into(),
            }
        );
        // Against the built-in maximum of 2, the offending node is the minimum.
        let err = resolve([&card, &level(), &level()]).unwrap_err();
        assert_eq!(err.path(), "channels-min");
        assert!(err.to_string().contains(BUILT_IN), "{err}");
    }

    #[test]
    fn hw_helpers() {
        let hw = PcmHw {
            formats: [PcmFormat::S16Le, PcmFormat::F64Le].into_iter().collect(),
            rates: vec![44100, 48000],
            channels_min: 1,
            channels_max: 6,
            buffer_size: 65536,
        };
        assert_eq!(hw.max_frame_bytes(), 48);
        assert!(hw.supports(PcmFormat::S16Le, 48000, 6));
        assert!(hw.supports(PcmFormat::F64Le, 44100, 1));
        assert!(!hw.supports(PcmFormat::S16Le, 48000, 7));
        assert!(!hw.supports(PcmFormat::S16Le, 48000, 0));
        assert!(!hw.supports(PcmFormat::S16Le, 32000, 2));
        assert!(!hw.supports(PcmFormat::F32Le, 48000, 2));
        assert_eq!(PcmHw::default().max_frame_bytes(), 4);
        let none = PcmHw {
            formats: FormatSet::empty(),
            ..PcmHw::default()
        };
        assert_eq!(none.max_frame_bytes(), 0);
    }

    #[test]
    fn stream_kind_parsing() {
        assert_eq!(StreamKind::from_xenstore("p"), Some(StreamKind::Playback));
        assert_eq!(StreamKind::from_xenstore(" C\n"), Some(StreamKind::Capture));
        assert_eq!(StreamKind::from_xenstore("playback"), None);
        assert_eq!(StreamKind::from_xenstore(""), None);
        assert_eq!(StreamKind::Capture.xenstore_value(), "c");
        assert_eq!(StreamKind::Playback.to_string(), "playback");
    }
}
