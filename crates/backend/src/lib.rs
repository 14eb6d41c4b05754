//! A reference Xen para-virtual sound (sndif) backend that behaves like the peer people actually
//! run: xen-troops `snd_be` on `libxenbe` (sndif.md §2.4, §5.3–§5.6, §6.a).
//!
//! It is generic over the [`xen_access`] traits, so the same code runs in-process against
//! `xen_access::fake` in tests and on the real devices in a dom0 (binary `xen-snd-backend`).
//!
//! - [`Backend::start`] watches `/local/domain/<own>/backend/vsnd`, creates one handler per
//!   `<fe-domid>/<dev-id>` and runs libxenbe's state machine ([`device`] documents it).
//! - Each bound stream has one worker thread ([`stream`] documents the request semantics and the
//!   CUR_POS clock).
//! - Playback data goes into a running SHA-256 ([`Backend::stream_stats`]), optionally a WAV file
//!   ([`wav`]) and a loop; capture data comes from the deterministic [`pattern`], silence or a
//!   loop ([`media`]).
//! - Time comes from an injectable [`Clock`]: real, scaled, or manual.
//! - Each stream can be told to misbehave ([`misbehave`]); the whole backend can
//!   [`crash`](Backend::crash) and be started again.
//!
//! ```no_run
//! use xen_snd_backend::{Backend, BackendOptions, Services};
//! # fn services() -> Services { unimplemented!() }
//! let backend = Backend::start(services(), BackendOptions::default()).expect("start");
//! print!("{}", backend.sha256_report());
//! backend.shutdown().expect("shutdown");
//! ```

pub mod backend;
pub mod clock;
pub mod device;
pub mod errno;
pub mod hwparams;
pub mod ids;
pub mod log;
pub mod media;
pub mod misbehave;
pub mod pattern;
pub mod stream;
pub mod wake;
pub mod wav;

pub use backend::{Backend, BackendError, BackendOptions, Services};
pub use clock::{Clock, ClockScaleError, ManualClock};
pub use device::BindError;
pub use ids::{DeviceKey, StreamId, StreamIdParseError};
pub use log::{stderr_logger, Level, LogRecord, LogWhat, Logger};
pub use media::{sha256_hex, CaptureSource, StreamSetup, StreamStats};
pub use misbehave::Misbehave;
pub use pattern::{
    locate, pattern_bytes, pattern_fill, pattern_sha256_hex, stream_seed, summarize, unsplitmix64,
    Run, Summary,
};
pub use stream::{StreamError, WritePacing};
