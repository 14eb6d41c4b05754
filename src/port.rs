//! What a PipeWire node needs from a PCM stream: the [`PcmPort`] trait, and the cards and events a
//! frontend hands to the module.
//!
//! The frontend engine (`xen-snd-engine`) provides the real ports; [`crate::fake`] provides fake
//! ones for tests. A port is `Send` and owned by one thread at a time: the module creates the node
//! on the main thread, then the port lives in the node's realtime state and every call to it —
//! the control calls included — runs on the data-loop thread (control calls are forwarded there
//! with a blocking invoke, so they must not block: they submit and return).

use core::fmt;

use sndif::config::{PcmHw, StreamKind};
use sndif::formats::PcmFormat;

/// Identity and capabilities of one stream of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Playback (an `Audio/Sink` node) or capture (an `Audio/Source` node).
    pub kind: StreamKind,
    /// PCM device index within the card.
    pub device: u32,
    /// Stream index within the PCM device.
    pub index: u32,
    /// The PCM device's `name`, if the toolstack set one.
    pub device_name: Option<String>,
    /// The stream's `unique-id`, if set (meaningful to the backend only).
    pub unique_id: Option<String>,
    /// What the stream may be opened with.
    pub hw: PcmHw,
}

/// The parameters a port is started with: the format PipeWire negotiated plus the buffer
/// geometry toward the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortParams {
    /// Sample format.
    pub format: PcmFormat,
    /// Rate, Hz.
    pub rate: u32,
    /// Channels.
    pub channels: u8,
    /// Buffer toward the backend, frames.
    pub buffer_frames: u32,
    /// Period (position-report cadence), frames, never 0.
    pub period_frames: u32,
}

impl PortParams {
    /// Bytes per frame (0 for a format without a fixed sample size).
    pub fn frame_bytes(&self) -> u32 {
        self.format.bytes_per_sample().unwrap_or(0) * u32::from(self.channels)
    }
}

/// Counters a port keeps, readable at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Playback: the backend ran out of data. Capture: the reader found too little.
    pub underruns: u64,
    /// Playback: data dropped because the buffer was full. Capture: data lost.
    pub overruns: u64,
    /// Failed requests and protocol errors.
    pub errors: u64,
}

/// A control operation of a port failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stream}: {op} failed: {reason}")]
pub struct PortError {
    /// Which stream (`card0/0/1`).
    pub stream: String,
    /// The operation (`start`, `stop`).
    pub op: &'static str,
    /// Why.
    pub reason: String,
}

/// One PCM stream as a node sees it.
///
/// Control calls ([`PcmPort::start`], [`PcmPort::stop`]) submit and return; the data-path calls
/// run on the realtime thread every graph cycle and must not lock, allocate, block, log or panic.
pub trait PcmPort: Send + fmt::Debug {
    /// Identity and capabilities.
    fn info(&self) -> &PortInfo;

    /// Open the stream with `params` and start it (playback may pre-fill first). Called when the
    /// node starts streaming with a negotiated format.
    fn start(&mut self, params: &PortParams, now_ns: u64) -> Result<(), PortError>;

    /// Stop and close the stream. Called when the node pauses, loses its format or goes away.
    fn stop(&mut self, now_ns: u64) -> Result<(), PortError>;

    /// Realtime: consume responses and position reports, issue what is due.
    fn service(&mut self, now_ns: u64);

    /// Realtime, playback: frames that [`PcmPort::write`] accepts now.
    fn writable_frames(&self) -> u32;

    /// Realtime, playback: queue whole frames of `data`; returns the bytes taken.
    fn write(&mut self, data: &[u8]) -> usize;

    /// Realtime, capture: frames [`PcmPort::read`] can return now.
    fn readable_frames(&self) -> u32;

    /// Realtime, capture: copy captured whole frames into `out`; returns the bytes written.
    fn read(&mut self, out: &mut [u8]) -> usize;

    /// Realtime: playback, frames written but not played yet; capture, frames captured but not
    /// read yet.
    fn delay_frames(&self) -> u64;

    /// Realtime: the backend's rate relative to nominal, measured against CLOCK_MONOTONIC
    /// (1.0 while unknown).
    fn rate_ratio(&self) -> f64;

    /// Counters.
    fn counters(&self) -> PortCounters;
}

/// A vsnd card as the frontend found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardInfo {
    /// The card's dev-id (`device/vsnd/<dev-id>`).
    pub dev_id: u32,
    /// The guest's domain id (0 when unknown).
    pub domid: u32,
    /// The backend's domain id.
    pub backend_id: u32,
    /// The card's xenstore directory (`/local/domain/<domid>/device/vsnd/<dev-id>`).
    pub path: String,
    /// `short-name`, if set.
    pub short_name: Option<String>,
    /// `long-name`, if set.
    pub long_name: Option<String>,
}

/// What a frontend tells the module, in order, through a channel plus a wake-up of the main loop.
#[derive(Debug)]
pub enum FrontendEvent {
    /// A card is connected: create one node per port.
    CardConnected {
        /// The card.
        card: CardInfo,
        /// Its usable streams.
        ports: Vec<Box<dyn PcmPort>>,
    },
    /// The card's backend went away or is being reconfigured: remove its nodes (the ports are
    /// no longer usable and must be dropped).
    CardDisconnected {
        /// The card's dev-id.
        dev_id: u32,
        /// Why, for the log.
        reason: String,
    },
    /// The card was removed from xenstore: remove its nodes.
    CardRemoved {
        /// The card's dev-id.
        dev_id: u32,
    },
    /// Something the user should know (logged as a warning, once).
    Problem {
        /// The message.
        message: String,
    },
    /// Something worth an info line.
    Info {
        /// The message.
        message: String,
    },
}
