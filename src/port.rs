//! What a PipeWire node needs from a PCM stream: the [`PcmPort`] trait, and the cards and events a
//! frontend hands to the module.
//!
//! The frontend engine (`xen-snd-engine`) provides the real ports ([`crate::engine_port`]); unit
//! tests use their own. A port is `Send` and owned by one thread at a time: the module creates the node
//! on the main thread, then the port lives in the node's realtime state and every call to it —
//! the control calls included — runs on the data-loop thread (control calls are forwarded there
//! with a blocking invoke, so they must not block: they submit and return).

use core::fmt;
use std::os::fd::RawFd;

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

    /// The file descriptor to watch on the data loop: readable when the backend answered or
    /// reported a position; [`PcmPort::service`] is called then. `None`: nothing to watch.
    fn fd(&self) -> Option<RawFd> {
        None
    }

    /// Realtime: the volume the node has (every channel in 0.001 dB, and mute). A port whose
    /// backend controls the volume ([`VolumeSupport::Backend`]) forwards it; others ignore it.
    fn set_volume(&mut self, _volume: &PortVolume) {}

    /// Whether the backend controls the volume (known once the stream was opened).
    fn volume_support(&self) -> VolumeSupport {
        VolumeSupport::Software
    }

    /// Whether the backend runs the stream (its fill level means something: rate matching
    /// watches it only then).
    fn is_running(&self) -> bool {
        true
    }

    /// Whether the port was started and is on its way to running (opening, pre-filling,
    /// starting, or restarting with new parameters): a driver waits for it instead of running
    /// cycles whose data it would have to drop.
    fn is_starting(&self) -> bool {
        false
    }

    /// Whether the port can carry audio at all (false once its card disconnected or the stream
    /// failed; the module then replaces the port when the card connects again).
    fn is_alive(&self) -> bool {
        true
    }
}

/// Most channels a [`PortVolume`] carries.
pub const MAX_CHANNELS: usize = 64;

/// Quietest volume sent to a backend, 0.001 dB (-144 dB: below 24-bit resolution).
pub const MIN_VOLUME_MDB: i32 = -144_000;
/// Loudest volume sent to a backend, 0.001 dB (+24 dB).
pub const MAX_VOLUME_MDB: i32 = 24_000;

/// A volume for the backend: one value per channel in 0.001 dB (0 = unity), and mute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortVolume {
    /// Channels in use.
    pub channels: u8,
    /// Per channel, 0.001 dB.
    pub mdb: [i32; MAX_CHANNELS],
    /// Muted.
    pub mute: bool,
}

impl PortVolume {
    /// From PipeWire's linear channel volumes (`channelVolumes`, 1.0 = unity) and mute. At most
    /// [`MAX_CHANNELS`] channels are kept.
    pub fn from_linear(volumes: &[f32], mute: bool) -> PortVolume {
        let mut mdb = [0; MAX_CHANNELS];
        let mut n = 0;
        for (slot, v) in mdb.iter_mut().zip(volumes) {
            *slot = linear_to_mdb(*v);
            n += 1;
        }
        PortVolume {
            channels: u8::try_from(n).unwrap_or(u8::MAX),
            mdb,
            mute,
        }
    }

    /// The values of the channels in use.
    pub fn values(&self) -> &[i32] {
        self.mdb.get(..usize::from(self.channels)).unwrap_or(&[])
    }

    /// The same volume for `channels` channels: missing channels repeat the last value (or 0 dB
    /// if there is none), extra ones are dropped.
    pub fn fitted(&self, channels: u8) -> PortVolume {
        let mut out = *self;
        let last = self.values().last().copied().unwrap_or(0);
        for (i, slot) in out.mdb.iter_mut().enumerate() {
            if i >= usize::from(self.channels) {
                *slot = last;
            }
        }
        out.channels = channels.min(u8::try_from(MAX_CHANNELS).unwrap_or(u8::MAX));
        out
    }
}

/// A linear gain (1.0 = unity) in 0.001 dB, clamped to [`MIN_VOLUME_MDB`]..=[`MAX_VOLUME_MDB`].
pub fn linear_to_mdb(v: f32) -> i32 {
    if v.is_nan() || v <= 0.0 {
        return MIN_VOLUME_MDB;
    }
    let mdb = 20_000.0 * f64::from(v).log10();
    if !mdb.is_finite() {
        return MIN_VOLUME_MDB;
    }
    mdb.round()
        .clamp(f64::from(MIN_VOLUME_MDB), f64::from(MAX_VOLUME_MDB)) as i32
}

/// Who applies the volume of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeSupport {
    /// Not known yet (the stream was not opened yet).
    Unknown,
    /// PipeWire, in software (the backend has no volume control).
    Software,
    /// The backend (SET_VOLUME/MUTE); PipeWire's own volume stays at unity.
    Backend,
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

/// What a frontend tells the module, in order (the module takes them on its main loop).
#[derive(Debug)]
pub enum FrontendEvent {
    /// A card is connected: its usable streams as ports. Nodes of the card that exist already
    /// (the card connected before and its backend came back) get the new port of the same
    /// stream and keep their identity; new streams get new nodes; nodes whose stream is gone are
    /// removed.
    CardConnected {
        /// The card.
        card: CardInfo,
        /// Its usable streams.
        ports: Vec<Box<dyn PcmPort>>,
    },
    /// The card's backend went away or is reconnecting: its ports can no longer carry audio.
    /// The nodes stay (they get new ports when the card connects again).
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
    /// Something the user should know (logged as a warning).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_volumes_become_millibels() {
        assert_eq!(linear_to_mdb(1.0), 0);
        assert_eq!(linear_to_mdb(0.5), -6021);
        assert_eq!(linear_to_mdb(0.125), -18_062);
        assert_eq!(linear_to_mdb(2.0), 6021);
        assert_eq!(linear_to_mdb(0.0), MIN_VOLUME_MDB);
        assert_eq!(linear_to_mdb(-1.0), MIN_VOLUME_MDB);
        assert_eq!(linear_to_mdb(f32::NAN), MIN_VOLUME_MDB);
        assert_eq!(linear_to_mdb(1e-30), MIN_VOLUME_MDB);
        assert_eq!(linear_to_mdb(1e30), MAX_VOLUME_MDB);
    }

    #[test]
    fn port_volume_fits_the_channel_count() {
        let v = PortVolume::from_linear(&[1.0, 0.5], true);
        assert_eq!(v.values(), &[0, -6021]);
        assert!(v.mute);
        assert_eq!(v.fitted(3).values(), &[0, -6021, -6021]);
        assert_eq!(v.fitted(1).values(), &[0]);
        let none = PortVolume::from_linear(&[], false);
        assert_eq!(none.fitted(2).values(), &[0, 0]);
        let many = PortVolume::from_linear(&[1.0; 100], false);
        assert_eq!(usize::from(many.channels), MAX_CHANNELS);
    }
}
