//! The whole sndif conversation over Debian's **real** xenstored, in one process:
//!
//! 1. start Debian's C xenstored (`xenstored-harness`, under its fakexen shim), create guest
//!    domain 1 and write a vsnd card with the real `xenstore-write`/`xenstore-chmod`, exactly as
//!    libxl does;
//! 2. start the reference backend as dom0 on xenstored's socket, writing a WAV file per playback
//!    stream into the output directory;
//! 3. start the frontend engine as domain 1 through the guest's ring bridge (so xenstored
//!    enforces guest permissions on everything it does);
//! 4. grants and event channels of both sides come from one in-process `FakeXen` (there is no
//!    hypervisor);
//! 5. play a short melody of sine tones through the engine in real time, then print a summary:
//!    frames played, frames the backend received, bit-exact or not (SHA-256 of both sides), the
//!    delay the engine measured, the backend's rate as the engine's DLL estimated it.
//!
//! Run: `scripts/fetch-xen-tools && cargo run -p xen-snd-engine --example xenstored_playback --
//! <output-dir> [seconds]` (default 4 s). `scripts/demo` runs it.

use std::error::Error;
use std::f64::consts::TAU;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sndif::formats::PcmFormat;
use xen_access::fake::{wait_readable, FakeXen};
use xen_access::real::RealStore;
use xen_snd_backend::{Backend, BackendOptions, Clock, Services as BeServices, StreamId};
use xen_snd_engine::{
    Frontend, FrontendEvent, FrontendOptions, PcmParams, Services, Stream, StreamState,
};
use xenstored_harness::{
    PcmParams as VsndParams, StreamType, VsndCard, VsndPcm, VsndStream, Xenstored,
};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const GUEST: u16 = 1;
const RATE: u32 = 48_000;
const CHANNELS: u8 = 2;
const FRAME_BYTES: usize = 4;
const PERIOD_FRAMES: u32 = 1024;
/// Bound of every wait for the other side.
const WAIT: Duration = Duration::from_secs(10);

/// What one run produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Frames the engine played (written and confirmed by the backend).
    pub frames_played: u64,
    /// Frames the backend received.
    pub frames_received: u64,
    /// SHA-256 of what the frontend played.
    pub sha256_sent: String,
    /// SHA-256 of what the backend received.
    pub sha256_received: String,
    /// Mean delay (written − played) the engine measured while running, ms.
    pub delay_ms_mean: f64,
    /// Largest delay measured, ms.
    pub delay_ms_max: f64,
    /// The backend's rate relative to nominal, as the engine's DLL estimated it.
    pub rate_ratio: Option<f64>,
    /// The WAV file the backend wrote.
    pub wav: Option<PathBuf>,
    /// Wall-clock time of the playback, s.
    pub seconds: f64,
}

impl Summary {
    /// Whether the backend received exactly what was played.
    pub fn bit_exact(&self) -> bool {
        self.frames_played == self.frames_received && self.sha256_sent == self.sha256_received
    }
}

/// "Twinkle, twinkle, little star": (frequency in Hz, beats).
const MELODY: [(f64, u32); 14] = [
    (261.63, 1),
    (261.63, 1),
    (392.00, 1),
    (392.00, 1),
    (440.00, 1),
    (440.00, 1),
    (392.00, 2),
    (349.23, 1),
    (349.23, 1),
    (329.63, 1),
    (329.63, 1),
    (293.66, 1),
    (293.66, 1),
    (261.63, 2),
];

/// `seconds` of the melody (looped), S16_LE stereo at 48 kHz, 0.3 s per beat, each note with
/// 10 ms fade-in and fade-out.
pub fn melody(seconds: f64) -> Vec<u8> {
    let total = (seconds * f64::from(RATE)).round() as usize;
    let beat = (0.3 * f64::from(RATE)) as usize;
    let fade = (0.01 * f64::from(RATE)) as usize;
    let mut out = Vec::with_capacity(total * FRAME_BYTES);
    let mut notes = MELODY.iter().cycle();
    while out.len() < total * FRAME_BYTES {
        let Some(&(freq, beats)) = notes.next() else {
            break;
        };
        let len = beat * beats as usize;
        for i in 0..len {
            if out.len() >= total * FRAME_BYTES {
                break;
            }
            let env = (i.min(len - 1 - i) as f64 / fade as f64).min(1.0);
            let v = (TAU * freq * i as f64 / f64::from(RATE)).sin() * env * 0.25;
            let s = (v * f64::from(i16::MAX)) as i16;
            for _ in 0..CHANNELS {
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
    }
    out
}

/// The vsnd card the toolstack writes: one PCM device with one playback stream.
fn card() -> VsndCard {
    VsndCard {
        frontend_domid: u32::from(GUEST),
        backend_domid: 0,
        devid: 0,
        short_name: Some("Demo".to_owned()),
        long_name: Some("sndif over the real xenstored".to_owned()),
        params: VsndParams {
            sample_rates: vec![44_100, 48_000],
            sample_formats: vec!["s16_le".to_owned()],
            channels_min: 1,
            channels_max: 2,
            buffer_size: 65_536,
        },
        pcms: vec![VsndPcm {
            name: Some("Speakers".to_owned()),
            params: VsndParams::default(),
            streams: vec![VsndStream {
                unique_id: "pulse".to_owned(),
                kind: StreamType::Playback,
                params: VsndParams::default(),
            }],
        }],
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    xen_snd_backend::sha256_hex(bytes)
}

/// Waits (bounded) for the card to connect; returns its playback stream.
fn connected_stream(fe: &Frontend) -> Result<Stream> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match fe.next_event(left) {
            Some(FrontendEvent::CardConnected { mut streams, .. }) => {
                return streams
                    .pop()
                    .ok_or_else(|| "the card has no usable stream".into());
            }
            Some(FrontendEvent::CardError { error, .. }) => {
                return Err(format!("card error: {error}").into())
            }
            Some(_) => {}
            None => return Err(format!("the card did not connect within {WAIT:?}").into()),
        }
    }
}

/// Plays `seconds` of the melody through the engine over the real xenstored, the backend writing
/// its WAV into `out_dir`, with the backend's clock running `clock_scale` times real time (1.0
/// for a real-time demo).
pub fn run(out_dir: &Path, seconds: f64, clock_scale: f64) -> Result<Summary> {
    let xsd = Xenstored::start()?;
    let guest = xsd.guest(u32::from(GUEST))?;
    xsd.write_vsnd(&card())?;

    // One in-process "hypervisor" for grants and event channels.
    let world = FakeXen::new();
    let dom0 = world.domain(0);
    let dom1 = world.domain(GUEST);

    let backend = Backend::start(
        BeServices {
            store: Arc::new(RealStore::from_xs(xsd.client()?)),
            grants: dom0.grant_map(),
            evtchn: dom0.event_channels(),
        },
        BackendOptions {
            clock: Clock::scaled(clock_scale)?,
            wav_dir: Some(out_dir.to_owned()),
            ..BackendOptions::default()
        },
    )?;
    let mut frontend = Frontend::start(
        Services {
            store: Arc::new(RealStore::from_xs(guest.client()?)),
            grants: dom1.grant_share(),
            events: dom1.event_channels(),
        },
        FrontendOptions::default(),
    )?;
    let mut stream = connected_stream(&frontend)?;
    let id = stream.id();
    let be_id = StreamId::new(GUEST, id.card, id.device, id.stream);

    let data = melody(seconds);
    stream.open(PcmParams {
        format: PcmFormat::S16Le,
        rate: RATE,
        channels: CHANNELS,
        buffer_frames: 4 * PERIOD_FRAMES,
        period_frames: PERIOD_FRAMES,
    })?;
    let base = stream.stats().bytes_written;
    let now = || xen_snd_engine::Clock::now_ns(&xen_snd_engine::MonotonicClock);
    stream.arm_start(now())?;

    // The data loop: write one period at a time as room allows, service on every wake-up.
    let started = Instant::now();
    let limit = Duration::from_secs_f64(seconds / clock_scale) + WAIT;
    let quantum = PERIOD_FRAMES as usize * FRAME_BYTES;
    let mut offset = 0usize;
    let (mut delay_sum, mut delay_n, mut delay_max) = (0u64, 0u64, 0u64);
    loop {
        stream.service(now());
        if let Some((op, Err(e))) = stream.take_control_result() {
            return Err(format!("{op} failed: {e}").into());
        }
        if let StreamState::Failed(e) = stream.state() {
            return Err(format!("the stream failed: {e}").into());
        }
        // The delay a new quantum would see: what is buffered (here and in the backend).
        if *stream.state() == StreamState::Running && offset < data.len() {
            let d = stream.delay_frames();
            delay_sum += d;
            delay_n += 1;
            delay_max = delay_max.max(d);
        }
        while offset < data.len() {
            let end = (offset + quantum).min(data.len());
            let chunk = data.get(offset..end).unwrap_or(&[]);
            let took = stream.write(chunk);
            offset += took;
            if took < chunk.len() {
                break;
            }
        }
        let done = stream.stats().bytes_written - base;
        if offset == data.len() && done == data.len() as u64 {
            break;
        }
        if started.elapsed() > limit {
            return Err(format!(
                "playback did not finish within {limit:?}: {} of {} bytes confirmed",
                done,
                data.len()
            )
            .into());
        }
        wait_readable(stream.fd(), Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    let rate_ratio = stream.rate_estimator().map(|e| e.rate_ratio());
    stream.stop()?;
    stream.close()?;
    let played = stream.stats().bytes_written - base;
    let stats = backend
        .stream_stats(be_id)
        .ok_or("the backend has no record of the stream")?;
    drop(stream);
    frontend.shutdown()?;
    backend.shutdown()?;
    let ms = |frames: u64| frames as f64 * 1000.0 / f64::from(RATE);
    Ok(Summary {
        frames_played: played / FRAME_BYTES as u64,
        frames_received: stats.bytes_received / FRAME_BYTES as u64,
        sha256_sent: sha256_hex(&data),
        sha256_received: stats.sha256_hex,
        delay_ms_mean: ms(delay_sum.checked_div(delay_n).unwrap_or(0)),
        delay_ms_max: ms(delay_max),
        rate_ratio,
        wav: stats.wav_path,
        seconds: elapsed.as_secs_f64(),
    })
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let out_dir = PathBuf::from(
        args.next()
            .ok_or("usage: xenstored_playback <output-dir> [seconds]")?,
    );
    let seconds: f64 = match args.next() {
        Some(s) => s
            .parse()
            .map_err(|_| format!("not a number of seconds: {s:?}"))?,
        None => 4.0,
    };
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    println!("==> playing {seconds} s of a melody through the engine over the real xenstored");
    let s = run(&out_dir, seconds, 1.0)?;
    println!("frames played by the frontend:  {}", s.frames_played);
    println!("frames received by the backend: {}", s.frames_received);
    println!("sha256 sent:     {}", s.sha256_sent);
    println!("sha256 received: {}", s.sha256_received);
    println!("bit-exact: {}", if s.bit_exact() { "yes" } else { "NO" });
    println!(
        "measured delay: mean {:.1} ms, max {:.1} ms (written − played per CUR_POS, before each \
         quantum)",
        s.delay_ms_mean, s.delay_ms_max
    );
    if let Some(r) = s.rate_ratio {
        println!("backend rate / nominal (DLL): {r:.5}");
    }
    println!("wall-clock time: {:.2} s", s.seconds);
    match &s.wav {
        Some(p) => println!("WAV written by the backend: {}", p.display()),
        None => println!("the backend wrote no WAV file"),
    }
    if !s.bit_exact() {
        return Err("the backend did not receive exactly what was played".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_second_over_the_real_xenstored_is_bit_exact_and_lands_in_a_wav() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let s = run(dir.path(), 0.5, 1.0).unwrap_or_else(|e| panic!("demo failed: {e}"));
        assert_eq!(s.frames_played, 24_000, "{s:?}");
        assert!(s.bit_exact(), "{s:?}");
        assert!(s.delay_ms_max > 0.0, "no delay was measured: {s:?}");
        let wav = s.wav.clone().expect("a WAV file");
        assert!(wav.starts_with(dir.path()), "{wav:?}");
        let bytes = std::fs::read(&wav).expect("read the WAV file");
        assert!(bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(&b"WAVE"[..]));
        // The PCM data is the tail of the file, unchanged for S16_LE.
        let pcm = melody(0.5);
        assert!(
            bytes.ends_with(&pcm),
            "the WAV does not end with the played samples"
        );
    }

    #[test]
    fn the_melody_is_what_it_claims() {
        let m = melody(1.0);
        assert_eq!(m.len(), 48_000 * 4);
        // Both channels carry the same sample; the first note starts from silence.
        assert_eq!(&m[0..2], &m[2..4]);
        assert_eq!(&m[0..4], &[0, 0, 0, 0]);
        assert!(m
            .chunks_exact(2)
            .any(|s| i16::from_le_bytes([s[0], s[1]]) > 8000));
    }
}
