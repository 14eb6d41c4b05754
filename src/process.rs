//! The realtime copy between a PipeWire buffer and a port, as plain functions over byte slices
//! (the node's `process` callback supplies the buffer memory). No lock, no allocation, no log,
//! no panic: every slice access is checked.

use sndif::formats::PcmFormat;

use crate::format::fill_silence;
use crate::port::PcmPort;

/// What one playback cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCycle {
    /// Frames handed to the port.
    pub frames: u64,
    /// Frames the port refused (its buffer was full): dropped.
    pub dropped: u64,
    /// No data from the graph this cycle: silence was queued instead.
    pub underrun: bool,
}

/// Playback: hand the valid part of a buffer (`chunk` within `memory`) to the port. `data` is
/// `None` when the graph had no buffer for us; then up to `silence_frames` frames of silence
/// (from the preallocated `silence` slice) keep the backend fed.
pub fn sink_cycle(
    port: &mut dyn PcmPort,
    data: Option<(&[u8], u32, u32)>,
    frame_bytes: usize,
    silence: &[u8],
    silence_frames: u64,
) -> SinkCycle {
    let fb = frame_bytes.max(1);
    let mut out = SinkCycle::default();
    match data {
        Some((memory, offset, size)) => {
            let off = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(memory.len());
            let len = usize::try_from(size)
                .unwrap_or(usize::MAX)
                .min(memory.len() - off);
            let whole = len - len % fb;
            let Some(bytes) = memory.get(off..off + whole) else {
                return out;
            };
            let taken = port.write(bytes);
            out.frames = (taken / fb) as u64;
            out.dropped = ((whole - taken.min(whole)) / fb) as u64;
        }
        None => {
            out.underrun = true;
            let want = usize::try_from(silence_frames)
                .unwrap_or(usize::MAX)
                .saturating_mul(fb)
                .min(silence.len());
            let whole = want - want % fb;
            if let Some(bytes) = silence.get(..whole) {
                out.frames = (port.write(bytes) / fb) as u64;
            }
        }
    }
    out
}

/// What one capture cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCycle {
    /// Bytes of valid data in the buffer (`chunk.size`), captured or silence.
    pub size: u32,
    /// Frames that came from the port.
    pub frames: u64,
    /// The port had fewer frames than asked: the rest is silence.
    pub underrun: bool,
}

/// Capture: fill `memory` with `requested` frames (0 = as many as fit) from the port, silence
/// for what the port does not have. The chunk to publish is `0..size`.
pub fn source_cycle(
    port: &mut dyn PcmPort,
    memory: &mut [u8],
    requested: u64,
    frame_bytes: usize,
    format: PcmFormat,
) -> SourceCycle {
    let fb = frame_bytes.max(1);
    let fit = memory.len() / fb;
    let frames = match usize::try_from(requested) {
        Ok(0) | Err(_) => fit,
        Ok(r) => r.min(fit),
    };
    let len = frames * fb;
    let Some(buf) = memory.get_mut(..len) else {
        return SourceCycle::default();
    };
    let got = port.read(buf).min(len);
    let got = got - got % fb;
    if let Some(rest) = buf.get_mut(got..) {
        fill_silence(rest, format);
    }
    SourceCycle {
        size: u32::try_from(len).unwrap_or(u32::MAX),
        frames: (got / fb) as u64,
        underrun: got < len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::{PortCounters, PortError, PortInfo, PortParams};
    use sndif::config::{PcmHw, StreamKind};

    /// A port that accepts up to `room` bytes and records them, or produces `avail` bytes of 7s.
    #[derive(Debug)]
    struct Recorder {
        info: PortInfo,
        room: usize,
        avail: usize,
        got: Vec<u8>,
    }

    impl Recorder {
        fn new(room: usize, avail: usize) -> Self {
            Recorder {
                info: PortInfo {
                    kind: StreamKind::Playback,
                    device: 0,
                    index: 0,
                    device_name: None,
                    unique_id: None,
                    hw: PcmHw::default(),
                },
                room,
                avail,
                got: Vec::new(),
            }
        }
    }

    impl PcmPort for Recorder {
        fn info(&self) -> &PortInfo {
            &self.info
        }
        fn start(&mut self, _: &PortParams, _: u64) -> Result<(), PortError> {
            Ok(())
        }
        fn stop(&mut self, _: u64) -> Result<(), PortError> {
            Ok(())
        }
        fn service(&mut self, _: u64) {}
        fn writable_frames(&self) -> u32 {
            0
        }
        fn write(&mut self, data: &[u8]) -> usize {
            let n = data.len().min(self.room);
            self.got.extend_from_slice(&data[..n]);
            self.room -= n;
            n
        }
        fn readable_frames(&self) -> u32 {
            0
        }
        fn read(&mut self, out: &mut [u8]) -> usize {
            let n = out.len().min(self.avail);
            out[..n].fill(7);
            self.avail -= n;
            n
        }
        fn delay_frames(&self) -> u64 {
            0
        }
        fn rate_ratio(&self) -> f64 {
            1.0
        }
        fn counters(&self) -> PortCounters {
            PortCounters::default()
        }
    }

    #[test]
    fn sink_copies_the_chunk_only() {
        let mut p = Recorder::new(1000, 0);
        let mem: Vec<u8> = (0..64).collect();
        let c = sink_cycle(&mut p, Some((&mem, 8, 16)), 4, &[], 0);
        assert_eq!(
            c,
            SinkCycle {
                frames: 4,
                dropped: 0,
                underrun: false
            }
        );
        assert_eq!(p.got, (8..24).collect::<Vec<u8>>());
    }

    #[test]
    fn sink_survives_hostile_chunks() {
        let mut p = Recorder::new(1000, 0);
        let mem = [1u8; 32];
        // Offset and size beyond the memory: clamped, never a panic.
        assert_eq!(
            sink_cycle(&mut p, Some((&mem, 100, 100)), 4, &[], 0).frames,
            0
        );
        assert_eq!(
            sink_cycle(&mut p, Some((&mem, 30, u32::MAX)), 4, &[], 0).frames,
            0
        );
        // A partial trailing frame is not written.
        assert_eq!(sink_cycle(&mut p, Some((&mem, 0, 10)), 4, &[], 0).frames, 2);
        assert_eq!(
            sink_cycle(&mut p, Some((&mem, 0, 10)), 0, &[], 0).frames,
            10
        );
    }

    #[test]
    fn sink_counts_dropped_frames_and_fills_silence_on_underrun() {
        let mut p = Recorder::new(8, 0);
        let mem = [1u8; 32];
        let c = sink_cycle(&mut p, Some((&mem, 0, 32)), 4, &[], 0);
        assert_eq!((c.frames, c.dropped), (2, 6));
        let mut p = Recorder::new(1000, 0);
        let silence = [0u8; 40];
        let c = sink_cycle(&mut p, None, 4, &silence, 5);
        assert_eq!(
            c,
            SinkCycle {
                frames: 5,
                dropped: 0,
                underrun: true
            }
        );
        assert_eq!(p.got, vec![0u8; 20]);
        // More silence asked than preallocated: bounded by the slice.
        let c = sink_cycle(&mut p, None, 4, &silence, 1000);
        assert_eq!(c.frames, 10);
    }

    #[test]
    fn source_honours_requested_and_pads_with_silence() {
        let mut p = Recorder::new(0, 12);
        let mut mem = [9u8; 64];
        let c = source_cycle(&mut p, &mut mem, 5, 4, PcmFormat::U16Le);
        assert_eq!(
            c,
            SourceCycle {
                size: 20,
                frames: 3,
                underrun: true
            }
        );
        assert_eq!(&mem[..12], &[7u8; 12]);
        assert_eq!(&mem[12..20], &[0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80]);
        assert_eq!(&mem[20..], &[9u8; 44], "beyond the chunk untouched");
        // requested 0 or too large: as many frames as fit.
        let mut p = Recorder::new(0, 1000);
        assert_eq!(
            source_cycle(&mut p, &mut mem, 0, 4, PcmFormat::S16Le).size,
            64
        );
        assert_eq!(
            source_cycle(&mut p, &mut mem, 1 << 40, 4, PcmFormat::S16Le).size,
            64
        );
        let c = source_cycle(&mut p, &mut mem[..3], 1, 4, PcmFormat::S16Le);
        assert_eq!(c.size, 0);
    }
}
