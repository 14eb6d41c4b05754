//! `xen-snd play FILE.wav`: WAV → sndif playback stream, with pre-fill, drain and a summary.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sndif::config::{PcmHw, StreamKind};
use sndif::formats::PcmFormat;
use xen_snd_engine::{
    ActiveParams, Clock, MonotonicClock, PcmParams, Stream, StreamOp, StreamState,
};

use crate::args::PlayArgs;
use crate::env::Env;
use crate::error::CliError;
use crate::session::{
    connect_stream, describe_hw, geometry, health, not_allowed, open, reopen, request_timeout,
    stop_and_close, stream_error, tick, Break, Opened, Progress,
};
use crate::sys::{signal_name, Signals};
use crate::wav::{Conversion, WavInfo, WavReader};

/// How long the loop sleeps at most between services (timeouts, progress).
const TICK: Duration = Duration::from_millis(100);

/// The sndif format for the file's samples that `hw` allows, with its conversion.
fn pick_format(
    file: &Path,
    wav: &WavInfo,
    name: &str,
    hw: &PcmHw,
) -> Result<(PcmFormat, Conversion), CliError> {
    let candidates = wav.samples.candidates();
    let formats: Vec<PcmFormat> = candidates.iter().map(|c| c.0).collect();
    let missing = not_allowed(hw, &formats, wav.rate, wav.channels);
    if missing.is_empty() {
        if let Some(c) = candidates.iter().find(|c| hw.formats.contains(c.0)) {
            return Ok(*c);
        }
    }
    Err(CliError::Unsupported(format!(
        "{name} cannot play {} ({}): {} not allowed; the stream allows {}",
        file.display(),
        wav.describe(),
        missing.join(", "),
        describe_hw(hw)
    )))
}

/// Hashes the accepted bytes the backend(s) got: while playing, what the current stream's
/// backend acknowledged; at the end, what was sent in WRITE requests. Across a reconnect the
/// hash goes on: the old stream's acknowledged bytes, then the new stream's.
#[derive(Debug, Default)]
struct SentHash {
    hasher: Sha256,
    /// Accepted by `write`, not hashed yet (oldest first).
    unsent: Vec<u8>,
    hashed: u64,
    /// Bytes hashed before the current stream (reconnects).
    base: u64,
}

impl SentHash {
    fn accepted(&mut self, bytes: &[u8]) {
        self.unsent.extend_from_slice(bytes);
    }

    /// A new stream takes over: returns the accepted bytes not hashed (to write again into the
    /// new stream) and counts the new stream's bytes after what was hashed so far.
    fn restart(&mut self) -> Vec<u8> {
        self.base = self.hashed;
        core::mem::take(&mut self.unsent)
    }

    /// Hashes up to `upto` bytes of the current stream (acknowledged or submitted).
    fn sent_up_to(&mut self, upto: u64) {
        let want = self.base.saturating_add(upto).saturating_sub(self.hashed);
        let n = usize::try_from(want)
            .unwrap_or(usize::MAX)
            .min(self.unsent.len());
        if n == 0 {
            return;
        }
        self.hasher.update(self.unsent.get(..n).unwrap_or(&[]));
        self.unsent.drain(..n);
        self.hashed += u64::try_from(n).unwrap_or(0);
    }
}

/// What reconnects cost, over the whole run.
#[derive(Debug, Default, Clone, Copy)]
struct Recovery {
    /// Times the card disconnected and the stream was reopened.
    reconnects: u64,
    /// Bytes old backends acknowledged beyond their last reported position (never played).
    lost_bytes: u64,
    /// Bytes old backends acknowledged.
    acknowledged: u64,
    /// Underruns counted on old streams.
    underruns: u64,
    /// Bytes written again into a new stream because the old backend had not acknowledged
    /// them.
    resent: u64,
}

/// What the summary reports.
#[derive(Debug)]
struct Outcome {
    params: ActiveParams,
    underruns: u64,
    delay_ms: Option<f64>,
    interrupted: Option<i32>,
}

fn open_input(path: &Path) -> Result<Box<dyn Read>, CliError> {
    if path == Path::new("-") {
        return Ok(Box::new(io::stdin()));
    }
    let f = File::open(path).map_err(|e| CliError::file(path, format!("cannot open: {e}")))?;
    Ok(Box::new(f))
}

/// Runs `play`.
pub fn run(env: &Env, a: &PlayArgs, signals: &Signals) -> Result<(), CliError> {
    let input = open_input(&a.file)?;
    let mut wav = WavReader::new(BufReader::with_capacity(1 << 16, input))
        .map_err(|e| CliError::file(&a.file, e))?;
    let info = wav.info().clone();
    let Opened {
        mut link,
        mut stream,
        card,
    } = connect_stream(
        env,
        &a.target,
        StreamKind::Playback,
        a.timeout,
        signals,
        |name, hw| pick_format(&a.file, &info, name, hw).map(|_| ()),
    )?;
    let id = stream.id();
    let name = crate::session::stream_name(card, id.device, id.stream);
    let (format, conversion) = pick_format(&a.file, &info, &name, &stream.info().hw)?;
    let params = geometry(
        stream.info().capacity_bytes,
        format,
        info.rate,
        info.channels,
        a.geometry,
    )
    .ok_or_else(|| {
        CliError::Unsupported(format!(
            "{name}: its buffer ({} bytes) cannot hold one frame of {format} × {}",
            stream.info().capacity_bytes,
            info.channels
        ))
    })?;
    let active = open(&mut stream, params)?;
    link.set_reconnect(!a.reconnect_timeout.is_zero());
    eprintln!(
        "playing {} ({}) on {name}: {}, period {} frames, buffer {} frames",
        a.file.display(),
        info.describe(),
        active.format,
        active.period_frames(),
        active.buffer_frames()
    );
    let mut progress = Progress::new(a.progress);
    let mut hash = SentHash::default();
    let mut recovery = Recovery::default();
    let result = stream_file(
        &mut stream,
        &mut link,
        card,
        signals,
        &mut wav,
        conversion,
        (params, active),
        a.reconnect_timeout,
        &mut progress,
        &mut hash,
        &mut recovery,
    );
    let cleanup = stop_and_close(&mut stream);
    // Only now is the amount sent final: WRITEs may still go out while a pending START is
    // awaited before STOP, and STOP discards what was written but never sent.
    hash.sent_up_to(stream.byte_counters().1);
    let bytes = hash.hashed;
    let acknowledged = recovery.acknowledged + stream.stats().bytes_written;
    let sha256 = crate::hex(&hash.hasher.finalize());
    drop(stream);
    link.shutdown();
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            progress.clear();
            return Err(e);
        }
    };
    cleanup?;
    let secs = bytes as f64 / f64::from(active.frame_bytes.max(1)) / f64::from(active.rate.max(1));
    let frames = bytes / u64::from(active.frame_bytes.max(1));
    let verb = if outcome.interrupted.is_some() {
        "interrupted after playing"
    } else {
        "played"
    };
    progress.finish(&format!(
        "{verb} {secs:.2} s ({frames} frames) of {} on {name}",
        a.file.display()
    ));
    if wav.dropped_tail() > 0 {
        eprintln!(
            "xen-snd: note: {}: {} trailing bytes (a partial frame) were not played",
            a.file.display(),
            wav.dropped_tail()
        );
    }
    if wav.missing_bytes() > 0 && outcome.interrupted.is_none() {
        eprintln!(
            "xen-snd: note: {}: the file ended {} bytes before the end its header declares",
            a.file.display(),
            wav.missing_bytes()
        );
    }
    if recovery.reconnects > 0 {
        eprintln!(
            "xen-snd: note: the card reconnected {} time{}: {} bytes the old backend{} had not \
             acknowledged were sent again; {} bytes {} acknowledged were not played (lost)",
            recovery.reconnects,
            if recovery.reconnects == 1 { "" } else { "s" },
            recovery.resent,
            if recovery.reconnects == 1 { "" } else { "s" },
            recovery.lost_bytes,
            if recovery.reconnects == 1 {
                "it"
            } else {
                "they"
            },
        );
    }
    if acknowledged != bytes {
        eprintln!(
            "xen-snd: note: the backend acknowledged {acknowledged} of the {bytes} bytes sent"
        );
    }
    let p = outcome.params;
    println!("card {card}");
    println!("stream {}/{}", id.device, id.stream);
    println!("direction playback");
    println!("file {}", a.file.display());
    println!("format {}", p.format);
    println!("rate {}", p.rate);
    println!("channels {}", p.channels);
    println!("period_frames {}", p.period_frames());
    println!("buffer_frames {}", p.buffer_frames());
    println!("seconds {secs:.3}");
    println!("underruns {}", outcome.underruns);
    match outcome.delay_ms {
        Some(d) => println!("delay_ms {d:.1}"),
        None => println!("delay_ms unknown"),
    }
    println!("reconnects {}", recovery.reconnects);
    println!("lost_bytes {}", recovery.lost_bytes);
    if let Some(sig) = outcome.interrupted {
        println!("interrupted {}", signal_name(sig));
    }
    println!("bytes {bytes}");
    println!("frames {frames}");
    println!("sha256 {sha256}");
    match outcome.interrupted {
        Some(sig) => Err(CliError::Interrupted(sig)),
        None => Ok(()),
    }
}

/// Pre-fills, starts, streams the file, drains. Returns the outcome (also when interrupted).
/// When the card disconnects (with `reconnect_timeout` non-zero), waits for it to connect
/// again, reopens the stream with the same parameters and goes on from the last byte the old
/// backend acknowledged.
#[allow(clippy::too_many_arguments)]
fn stream_file<R: Read>(
    stream: &mut Stream,
    link: &mut crate::link::Link,
    card: u32,
    signals: &Signals,
    wav: &mut WavReader<R>,
    conversion: Conversion,
    (params, active): (PcmParams, ActiveParams),
    reconnect_timeout: Duration,
    progress: &mut Progress,
    hash: &mut SentHash,
    recovery: &mut Recovery,
) -> Result<Outcome, CliError> {
    let clock = MonotonicClock;
    let name = crate::session::stream_name(card, stream.id().device, stream.id().stream);
    let fb = u64::from(active.frame_bytes.max(1));
    let rate = f64::from(active.rate.max(1));
    let total_secs = wav.info().declared_frames().map(|f| f as f64 / rate);
    let file_frame = usize::try_from(wav.info().block_align).unwrap_or(1);
    let mut raw =
        vec![0u8; file_frame * usize::try_from(active.period_frames().max(1)).unwrap_or(1) * 2];
    let mut pending: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    let mut eof = false;
    let (mut delay_sum, mut delay_n) = (0u64, 0u64);
    let stall_limit = request_timeout() + Duration::from_secs(1);
    let mut interrupted = None;
    let mut underruns;
    let again = Again {
        card,
        signals,
        params,
        active,
        timeout: reconnect_timeout,
        name: &name,
    };

    // One pass per connection of the card: a reconnect starts the next one.
    'connection: loop {
        let mut prefill_fixed = false;
        let mut last_seen = (0u64, 0u64, 0u64);
        let mut last_change = Instant::now();
        stream
            .arm_start(clock.now_ns())
            .map_err(|e| stream_error(&e))?;
        // Play: feed whatever fits, then wait for room.
        loop {
            loop {
                if pos == pending.len() {
                    if eof {
                        break;
                    }
                    let n = wav
                        .read_frames(&mut raw)
                        .map_err(|e| CliError::File(format!("reading the WAV data: {e}")))?;
                    if n == 0 {
                        eof = true;
                        break;
                    }
                    pending.clear();
                    pos = 0;
                    conversion.convert(raw.get(..n).unwrap_or(&[]), &mut pending);
                }
                let n = stream.write(pending.get(pos..).unwrap_or(&[]));
                if n == 0 {
                    break;
                }
                hash.accepted(pending.get(pos..pos + n).unwrap_or(&[]));
                pos += n;
            }
            // Hash what the backend acknowledged: after a disconnect, the rest is sent again.
            hash.sent_up_to(stream.stats().bytes_written);
            if eof && pos == pending.len() {
                break;
            }
            let (report, event) = tick(stream, link, card, signals, TICK)?;
            match again.after_tick(event, stream, link, hash, recovery, &mut pending, &mut pos)? {
                Next::Go => {}
                Next::Reopened => continue 'connection,
                Next::Interrupted(sig) => {
                    interrupted = Some(sig);
                    break;
                }
            }
            if report.events > 0 && *stream.state() == StreamState::Running {
                delay_sum += stream.delay_frames();
                delay_n += 1;
            }
            watchdog(stream, &mut last_seen, &mut last_change, stall_limit, &name)?;
            progress.update(|| {
                let at = stream.position_frames() as f64 / rate;
                let of = total_secs.map_or(String::new(), |t| format!(" / {t:.2} s"));
                format!(
                    "playing {name}: {at:.2} s{of}, delay {:.0} ms, underruns {}",
                    stream.delay_frames() as f64 * 1000.0 / rate,
                    stream.stats().underruns
                )
            });
        }
        // Drain: the backend's position must reach what was written.
        underruns = stream.stats().underruns;
        if interrupted.is_none() {
            let written = stream.byte_counters().0;
            let buffer_time =
                Duration::from_secs_f64(f64::from(active.buffer_bytes) / fb as f64 / rate);
            let deadline =
                Instant::now() + buffer_time + request_timeout() + Duration::from_millis(500);
            loop {
                if !prefill_fixed
                    && stream.control_pending() == Some(StreamOp::Start)
                    && *stream.state() == StreamState::Stopped
                {
                    // The file was shorter than the pre-fill target: start with what there is.
                    let frames = u32::try_from(written / fb).unwrap_or(u32::MAX);
                    stream.set_prefill_frames(Some(frames));
                    prefill_fixed = true;
                }
                hash.sent_up_to(stream.stats().bytes_written);
                let (w, submitted) = stream.byte_counters();
                let drained = *stream.state() == StreamState::Running
                    && w == submitted
                    && stream.requests_in_flight() == 0
                    && stream.delay_frames() == 0;
                if drained {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(CliError::Timeout(format!(
                        "{name}: backend not answering: its position stopped at {} of {} frames \
                         while draining",
                        stream.position_frames(),
                        written / fb
                    )));
                }
                let before = stream.stats().underruns;
                let (_, event) = tick(stream, link, card, signals, TICK)?;
                match again.after_tick(
                    event,
                    stream,
                    link,
                    hash,
                    recovery,
                    &mut pending,
                    &mut pos,
                )? {
                    Next::Go => {}
                    Next::Reopened => continue 'connection,
                    Next::Interrupted(sig) => {
                        interrupted = Some(sig);
                        break;
                    }
                }
                // If this service completed the drain, an underrun it counted is only the end
                // of the data (the backend ran dry once everything was played): keep the count
                // before it.
                underruns = before;
                progress.update(|| {
                    let at = stream.position_frames() as f64 / rate;
                    format!("draining {name}: {at:.2} s")
                });
            }
            if interrupted.is_some() {
                underruns = stream.stats().underruns;
            }
        }
        break;
    }
    // A stream revoked while a signal ended the wait for the card is not a failure.
    if interrupted.is_none() || !stream.is_revoked() {
        health(stream)?;
    }
    let delay_ms = (delay_n > 0).then(|| delay_sum as f64 / delay_n as f64 * 1000.0 / rate);
    Ok(Outcome {
        params: active,
        underruns: recovery.underruns + underruns,
        delay_ms,
        interrupted,
    })
}

/// What a play loop does after a wait on the stream.
enum Next {
    /// Carry on.
    Go,
    /// The card disconnected and the stream was reopened: start over with it.
    Reopened,
    /// A signal came.
    Interrupted(i32),
}

/// What a reconnect needs to know.
struct Again<'a> {
    card: u32,
    signals: &'a Signals,
    params: PcmParams,
    active: ActiveParams,
    timeout: Duration,
    name: &'a str,
}

impl Again<'_> {
    /// What the loops do after a wait on the stream: go on, go on with a reopened stream after a
    /// disconnect (see [`Again::recover`]), or stop because a signal came.
    #[allow(clippy::too_many_arguments)]
    fn after_tick(
        &self,
        event: Option<Break>,
        stream: &mut Stream,
        link: &mut crate::link::Link,
        hash: &mut SentHash,
        recovery: &mut Recovery,
        pending: &mut Vec<u8>,
        pos: &mut usize,
    ) -> Result<Next, CliError> {
        Ok(match event {
            None => Next::Go,
            Some(Break::Signal(sig)) => Next::Interrupted(sig),
            Some(Break::Disconnected(why)) => {
                match self.recover(stream, link, hash, recovery, pending, pos, &why)? {
                    None => Next::Reopened,
                    Some(sig) => Next::Interrupted(sig),
                }
            }
        })
    }

    /// After a disconnect: counts what the old backend acknowledged and played, queues what it
    /// did not acknowledge to be written again, waits for the card and reopens the stream.
    /// `None`: go on with the reopened stream; `Some(signal)`: a signal ended the wait.
    #[allow(clippy::too_many_arguments)]
    fn recover(
        &self,
        stream: &mut Stream,
        link: &mut crate::link::Link,
        hash: &mut SentHash,
        recovery: &mut Recovery,
        pending: &mut Vec<u8>,
        pos: &mut usize,
        why: &str,
    ) -> Result<Option<i32>, CliError> {
        let fb = u64::from(self.active.frame_bytes.max(1));
        let stats = stream.stats();
        let acked = stats.bytes_written;
        let played = stream.position_frames().saturating_mul(fb);
        hash.sent_up_to(acked);
        let again = hash.restart();
        recovery.reconnects += 1;
        recovery.acknowledged += acked;
        recovery.lost_bytes += acked.saturating_sub(played);
        recovery.underruns += stats.underruns;
        recovery.resent += u64::try_from(again.len()).unwrap_or(u64::MAX);
        let mut queue = again;
        queue.extend_from_slice(pending.get(*pos..).unwrap_or(&[]));
        *pending = queue;
        *pos = 0;
        let a = self.active;
        match reopen(
            link,
            self.card,
            stream,
            self.params,
            why,
            self.timeout,
            self.signals,
        ) {
            Ok(b) if b == a => Ok(None),
            Ok(b) => Err(CliError::Failed(format!(
                "{}: reopened after the card connected again, the stream has {} {} Hz {} \
                 channels, period {} frames, buffer {} frames instead of {} {} Hz {} channels, \
                 period {} frames, buffer {} frames",
                self.name,
                b.format,
                b.rate,
                b.channels,
                b.period_frames(),
                b.buffer_frames(),
                a.format,
                a.rate,
                a.channels,
                a.period_frames(),
                a.buffer_frames()
            ))),
            Err(CliError::Interrupted(sig)) => Ok(Some(sig)),
            Err(e) => Err(e),
        }
    }
}

/// Fails when nothing moves (bytes sent, position, bytes acknowledged) for `limit`.
fn watchdog(
    stream: &Stream,
    last: &mut (u64, u64, u64),
    since: &mut Instant,
    limit: Duration,
    name: &str,
) -> Result<(), CliError> {
    let now = (
        stream.byte_counters().1,
        stream.position_frames(),
        stream.stats().bytes_written,
    );
    if now != *last {
        *last = now;
        *since = Instant::now();
        return Ok(());
    }
    if since.elapsed() > limit {
        let waiting = if *stream.state() == StreamState::Running {
            "WRITE completions and positions"
        } else {
            "TRIGGER START"
        };
        return Err(CliError::Timeout(format!(
            "{name}: backend not answering: nothing moved for {:.1} s (waiting for {waiting})",
            limit.as_secs_f64()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wav::Samples;

    fn wav(samples: Samples, rate: u32, channels: u8) -> WavInfo {
        WavInfo {
            samples,
            channels,
            rate,
            block_align: samples.file_bytes() * u32::from(channels),
            data_len: None,
        }
    }

    fn hw(formats: &[PcmFormat]) -> PcmHw {
        PcmHw {
            formats: formats.iter().copied().collect(),
            rates: vec![44_100, 48_000],
            channels_min: 1,
            channels_max: 2,
            buffer_size: 32_768,
        }
    }

    #[test]
    fn picks_the_first_allowed_candidate() {
        let f = Path::new("x.wav");
        let got = pick_format(
            f,
            &wav(Samples::S24Packed, 48_000, 2),
            "s",
            &hw(&[PcmFormat::S32Le]),
        )
        .expect("s32 fallback");
        assert_eq!(got, (PcmFormat::S32Le, Conversion::Packed24ToS32));
        let got = pick_format(
            f,
            &wav(Samples::S24Packed, 48_000, 2),
            "s",
            &hw(&[PcmFormat::S32Le, PcmFormat::S24Le]),
        )
        .expect("s24");
        assert_eq!(got, (PcmFormat::S24Le, Conversion::Packed24ToS24));
        let e = pick_format(
            f,
            &wav(Samples::S16, 22_050, 2),
            "card 0 stream 0/0",
            &hw(&[PcmFormat::S16Le]),
        )
        .expect_err("rate");
        assert_eq!(
            e.to_string(),
            "card 0 stream 0/0 cannot play x.wav (16-bit PCM, 2 channels, 22050 Hz): rate 22050 Hz \
             not allowed; the stream allows formats s16_le; rates 44100, 48000 Hz; 1-2 channels"
        );
        assert!(matches!(e, CliError::Unsupported(_)));
    }

    #[test]
    fn sent_hash_covers_only_submitted_bytes() {
        let mut h = SentHash::default();
        h.accepted(b"hello ");
        h.accepted(b"world");
        h.sent_up_to(3);
        h.sent_up_to(3);
        h.sent_up_to(6);
        assert_eq!(h.hashed, 6);
        assert_eq!(
            crate::hex(&h.hasher.clone().finalize()),
            crate::hex(&Sha256::digest(b"hello "))
        );
        h.sent_up_to(100);
        assert_eq!(h.hashed, 11);
        assert_eq!(
            crate::hex(&h.hasher.finalize()),
            crate::hex(&Sha256::digest(b"hello world"))
        );
    }
}
