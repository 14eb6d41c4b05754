//! What the backend reports: state transitions, binds, errors, requests.
//!
//! The backend calls a [`Logger`] callback with a [`LogRecord`] for everything worth knowing.
//! Tests collect the records (e.g. into a channel) to check exact state sequences; the binary
//! prints them to stderr with `-v`.

use core::fmt;
use std::sync::Arc;

use sndif::wire::OpenParams;

use crate::ids::{DeviceKey, StreamId};

/// Importance of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something unusual (a dropped event, a refused request).
    Warn,
    /// State transitions, binds, opens.
    Info,
    /// Every request and event.
    Debug,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        })
    }
}

/// The name of a XenBus state value.
pub fn state_name(state: u32) -> &'static str {
    match state {
        0 => "Unknown",
        1 => "Initialising",
        2 => "InitWait",
        3 => "Initialised",
        4 => "Connected",
        5 => "Closing",
        6 => "Closed",
        7 => "Reconfiguring",
        8 => "Reconfigured",
        _ => "invalid",
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogWhat {
    /// The backend started, watching the given path.
    Started {
        /// `/local/domain/<own>/backend/vsnd`.
        path: String,
    },
    /// A device handler was created.
    DeviceAdded {
        /// The frontend path read from the backend's `frontend` key.
        frontend: String,
    },
    /// The device's backend directory disappeared; its handler was dropped.
    DeviceRemoved,
    /// The frontend state changed (deduplicated, as libxenbe).
    FrontendState(u32),
    /// Someone else wrote the backend state.
    BackendStateExternal(u32),
    /// The backend wrote its state.
    StateWritten(u32),
    /// The backend would have written its state but the `state` node does not exist.
    StateNotWritten(u32),
    /// All streams were bound.
    Bound {
        /// Number of streams.
        streams: usize,
    },
    /// Binding failed; the device goes to Closed.
    BindFailed(String),
    /// Rings, mappings and ports were released.
    Released,
    /// A stream worker failed (ring overflow, notify failure); the device goes to Closed.
    StreamFailed(String),
    /// The backend crashed on request (mappings and ports dropped, xenstore untouched).
    Crashed,
    /// The backend stopped.
    Stopped,
    /// A request was served.
    Request {
        /// Request id.
        id: u16,
        /// Operation name (or raw code).
        op: String,
        /// Response status.
        status: i32,
        /// Detail (parameters or refusal reason).
        detail: String,
    },
    /// A stream was opened.
    Opened(OpenParams),
    /// An event was dropped because the event page was full.
    EventDropped {
        /// The id the event had.
        id: u16,
    },
    /// Anything else.
    Message(String),
}

/// One report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Importance.
    pub level: Level,
    /// The device it is about, if any.
    pub device: Option<DeviceKey>,
    /// The stream it is about, if any.
    pub stream: Option<StreamId>,
    /// What happened.
    pub what: LogWhat,
}

impl fmt::Display for LogRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:5} ", self.level)?;
        if let Some(s) = self.stream {
            write!(f, "[{s}] ")?;
        } else if let Some(d) = self.device {
            write!(f, "[{d}] ")?;
        }
        match &self.what {
            LogWhat::Started { path } => write!(f, "backend started, watching {path}"),
            LogWhat::DeviceAdded { frontend } => {
                write!(f, "new device, frontend {frontend}")
            }
            LogWhat::DeviceRemoved => write!(f, "device directory removed, handler dropped"),
            LogWhat::FrontendState(s) => {
                write!(f, "frontend state changed to {s} ({})", state_name(*s))
            }
            LogWhat::BackendStateExternal(s) => write!(
                f,
                "backend state changed by someone else to {s} ({})",
                state_name(*s)
            ),
            LogWhat::StateWritten(s) => {
                write!(f, "set backend state to {s} ({})", state_name(*s))
            }
            LogWhat::StateNotWritten(s) => write!(
                f,
                "backend state {s} ({}) not written: state node missing",
                state_name(*s)
            ),
            LogWhat::Bound { streams } => write!(f, "bound {streams} stream(s)"),
            LogWhat::BindFailed(e) => write!(f, "bind failed: {e}"),
            LogWhat::Released => write!(f, "released rings, mappings and ports"),
            LogWhat::StreamFailed(e) => write!(f, "stream failed: {e}"),
            LogWhat::Crashed => write!(f, "crashed (on request)"),
            LogWhat::Stopped => write!(f, "stopped"),
            LogWhat::Request {
                id,
                op,
                status,
                detail,
            } => write!(f, "request id {id} {op} -> status {status} {detail}"),
            LogWhat::Opened(p) => write!(
                f,
                "opened: {} Hz, {}, {} ch, buffer {} B, period {} B, directory gref {}",
                p.rate, p.format, p.channels, p.buffer_sz, p.period_sz, p.gref_directory
            ),
            LogWhat::EventDropped { id } => {
                write!(f, "event id {id} dropped: event page full")
            }
            LogWhat::Message(m) => f.write_str(m),
        }
    }
}

/// The callback receiving every record (from several threads).
pub type Logger = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// A logger printing records up to `max` importance to stderr.
pub fn stderr_logger(max: Level) -> Logger {
    Arc::new(move |r: &LogRecord| {
        if r.level <= max {
            eprintln!("xen-snd-backend: {r}");
        }
    })
}

/// Sends a record to an optional logger.
#[derive(Clone)]
pub(crate) struct Log {
    logger: Option<Logger>,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("enabled", &self.logger.is_some())
            .finish()
    }
}

impl Log {
    pub(crate) fn new(logger: Option<Logger>) -> Self {
        Log { logger }
    }

    pub(crate) fn emit(
        &self,
        level: Level,
        device: Option<DeviceKey>,
        stream: Option<StreamId>,
        what: LogWhat,
    ) {
        if let Some(l) = &self.logger {
            l(&LogRecord {
                level,
                device,
                stream,
                what,
            });
        }
    }

    pub(crate) fn dev(&self, level: Level, device: DeviceKey, what: LogWhat) {
        self.emit(level, Some(device), None, what);
    }

    pub(crate) fn stream(&self, level: Level, stream: StreamId, what: LogWhat) {
        self.emit(level, Some(stream.device()), Some(stream), what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_display_with_their_subject() {
        let r = LogRecord {
            level: Level::Info,
            device: Some(DeviceKey { fe: 1, dev: 0 }),
            stream: None,
            what: LogWhat::StateWritten(2),
        };
        assert_eq!(
            r.to_string(),
            "info  [1/0] set backend state to 2 (InitWait)"
        );
        assert_eq!(state_name(9), "invalid");
    }
}
