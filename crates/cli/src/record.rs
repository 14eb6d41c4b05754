//! `xen-snd record FILE.wav --seconds S`: sndif capture stream → WAV, with a summary.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sndif::config::{PcmHw, StreamKind};
use sndif::formats::PcmFormat;
use xen_snd_engine::{ActiveParams, PcmParams, Stream};

use crate::args::RecordArgs;
use crate::env::Env;
use crate::error::CliError;
use crate::link::Link;
use crate::session::{
    connect_stream, describe_hw, geometry, not_allowed, open, reopen, request_timeout,
    stop_and_close, stream_error, stream_name, tick, Break, Opened, Progress,
};
use crate::sys::{signal_name, Signals};
use crate::wav::{WavWriter, WAV_FORMATS};

const TICK: Duration = Duration::from_millis(100);

/// Format, rate and channels: as asked, else s16_le / 48000 / 2 when allowed, else the
/// stream's first format, nearest rate and nearest channel count.
fn pick_params(a: &RecordArgs, name: &str, hw: &PcmHw) -> Result<(PcmFormat, u32, u8), CliError> {
    let format = a.format.unwrap_or_else(|| {
        if hw.formats.contains(PcmFormat::S16Le) {
            PcmFormat::S16Le
        } else {
            hw.formats
                .iter()
                .find(|f| WAV_FORMATS.contains(f))
                .unwrap_or(PcmFormat::S16Le)
        }
    });
    let rate = a.rate.unwrap_or_else(|| {
        hw.rates
            .iter()
            .copied()
            .min_by_key(|r| r.abs_diff(48_000))
            .unwrap_or(48_000)
    });
    let channels = a
        .channels
        .unwrap_or_else(|| 2u8.clamp(hw.channels_min.max(1), hw.channels_max.max(1)));
    if !WAV_FORMATS.contains(&format) {
        let names: Vec<String> = WAV_FORMATS.iter().map(|f| f.to_string()).collect();
        return Err(CliError::Unsupported(format!(
            "{format} cannot be stored in a WAV file (use one of {})",
            names.join(", ")
        )));
    }
    let missing = not_allowed(hw, &[format], rate, channels);
    if !missing.is_empty() {
        return Err(CliError::Unsupported(format!(
            "{name} cannot record {format} {rate} Hz {channels} channels: {} not allowed; the \
             stream allows {}",
            missing.join(", "),
            describe_hw(hw)
        )));
    }
    Ok((format, rate, channels))
}

/// Runs `record`.
pub fn run(env: &Env, a: &RecordArgs, signals: &Signals) -> Result<(), CliError> {
    let Opened {
        mut link,
        mut stream,
        card,
    } = connect_stream(
        env,
        &a.target,
        StreamKind::Capture,
        a.timeout,
        signals,
        |name, hw| pick_params(a, name, hw).map(|_| ()),
    )?;
    let id = stream.id();
    let name = stream_name(card, id.device, id.stream);
    let (format, rate, channels) = pick_params(a, &name, &stream.info().hw)?;
    let params = geometry(
        stream.info().capacity_bytes,
        format,
        rate,
        channels,
        a.geometry,
    )
    .ok_or_else(|| {
        CliError::Unsupported(format!(
            "{name}: its buffer ({} bytes) cannot hold one frame",
            stream.info().capacity_bytes
        ))
    })?;
    let mut wav = WavWriter::create(&a.file, format, rate, channels)
        .map_err(|e| CliError::file(&a.file, e))?;
    let active = match open(&mut stream, params) {
        Ok(p) => p,
        Err(e) => {
            drop(wav);
            let _ = std::fs::remove_file(&a.file);
            return Err(e);
        }
    };
    link.set_reconnect(!a.reconnect_timeout.is_zero());
    eprintln!(
        "recording {:.2} s from {name} into {}: {} {} Hz {} channel{}, period {} frames, buffer {} \
         frames",
        a.seconds,
        a.file.display(),
        active.format,
        active.rate,
        active.channels,
        if active.channels == 1 { "" } else { "s" },
        active.period_frames(),
        active.buffer_frames()
    );
    let mut progress = Progress::new(a.progress);
    let mut recovery = Recovery::default();
    let result = capture(
        &mut stream,
        &mut link,
        card,
        signals,
        &mut wav,
        (params, active),
        a.seconds,
        a.reconnect_timeout,
        &mut progress,
        &mut recovery,
    );
    let cleanup = stop_and_close(&mut stream);
    let overruns = recovery.overruns + stream.stats().overruns;
    drop(stream);
    link.shutdown();
    let written = wav.finish().map_err(|e| CliError::file(&a.file, e));
    let (bytes, sha256, interrupted) = match result {
        Ok(r) => r,
        Err(e) => {
            progress.clear();
            // A failed recording leaves no file behind.
            let _ = std::fs::remove_file(&a.file);
            return Err(e);
        }
    };
    cleanup?;
    written?;
    let frames = bytes / u64::from(active.frame_bytes.max(1));
    let secs = frames as f64 / f64::from(active.rate.max(1));
    let verb = if interrupted.is_some() {
        "interrupted after recording"
    } else {
        "recorded"
    };
    progress.finish(&format!(
        "{verb} {secs:.2} s ({frames} frames) from {name} into {}",
        a.file.display()
    ));
    println!("card {card}");
    println!("stream {}/{}", id.device, id.stream);
    println!("direction capture");
    println!("file {}", a.file.display());
    println!("format {}", active.format);
    println!("rate {}", active.rate);
    println!("channels {}", active.channels);
    println!("period_frames {}", active.period_frames());
    println!("buffer_frames {}", active.buffer_frames());
    println!("seconds {secs:.3}");
    println!("overruns {overruns}");
    println!("reconnects {}", recovery.reconnects);
    println!("lost_bytes {}", recovery.lost_bytes);
    if let Some(sig) = interrupted {
        println!("interrupted {}", signal_name(sig));
    }
    println!("bytes {bytes}");
    println!("frames {frames}");
    println!("sha256 {sha256}");
    match interrupted {
        Some(sig) => Err(CliError::Interrupted(sig)),
        None => Ok(()),
    }
}

/// What reconnects cost, over the whole run.
#[derive(Debug, Default, Clone, Copy)]
struct Recovery {
    /// Times the card disconnected and the stream was reopened.
    reconnects: u64,
    /// Bytes the backend had captured (READs completed) that could not be read any more.
    lost_bytes: u64,
    /// Overruns counted on old streams.
    overruns: u64,
}

/// Starts the stream and reads `seconds` of audio into `wav`. Returns bytes, SHA-256 and the
/// signal that interrupted it, if any. When the card disconnects (with `reconnect_timeout`
/// non-zero), waits for it to connect again, reopens the stream with the same parameters and
/// goes on capturing into the same file.
#[allow(clippy::too_many_arguments)]
fn capture(
    stream: &mut Stream,
    link: &mut Link,
    card: u32,
    signals: &Signals,
    wav: &mut WavWriter,
    (params, active): (PcmParams, ActiveParams),
    seconds: f64,
    reconnect_timeout: Duration,
    progress: &mut Progress,
    recovery: &mut Recovery,
) -> Result<(u64, String, Option<i32>), CliError> {
    let name = stream_name(card, stream.id().device, stream.id().stream);
    let fb = u64::from(active.frame_bytes.max(1));
    let rate = f64::from(active.rate.max(1));
    // Saturating float-to-int conversion; `seconds` is at most a day.
    let want = (seconds * rate).round() as u64 * fb;
    let mut got = 0u64;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; usize::try_from(active.buffer_bytes).unwrap_or(1 << 16)];
    let stall_limit = request_timeout() + Duration::from_secs(1);
    // One pass per connection of the card: a reconnect starts the next one.
    'connection: loop {
        let mut last_change = Instant::now();
        stream.start().map_err(|e| stream_error(&e))?;
        while got < want {
            let room = usize::try_from(want - got)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = stream.read(buf.get_mut(..room).unwrap_or(&mut []));
            if n > 0 {
                let data = buf.get(..n).unwrap_or(&[]);
                hasher.update(data);
                wav.write(data)
                    .map_err(|e| CliError::File(format!("writing the WAV data: {e}")))?;
                got += u64::try_from(n).unwrap_or(0);
                last_change = Instant::now();
                continue;
            }
            if last_change.elapsed() > stall_limit {
                return Err(CliError::Timeout(format!(
                    "{name}: backend not answering: no captured data for {:.1} s",
                    stall_limit.as_secs_f64()
                )));
            }
            let (_, event) = tick(stream, link, card, signals, TICK)?;
            match event {
                Some(Break::Signal(s)) => {
                    return Ok((got, crate::hex(&hasher.finalize()), Some(s)));
                }
                Some(Break::Disconnected(why)) => {
                    // Completed READs the reader had not taken are gone with the old pages.
                    let (_, completed) = stream.byte_counters();
                    recovery.lost_bytes += completed.saturating_sub(stream.consumed_bytes());
                    recovery.overruns += stream.stats().overruns;
                    recovery.reconnects += 1;
                    match reopen(link, card, stream, params, &why, reconnect_timeout, signals) {
                        Ok(b) if b == active => continue 'connection,
                        Ok(b) => {
                            return Err(CliError::Failed(format!(
                                "{name}: reopened after the card connected again, the stream \
                                 has {} {} Hz {} channels, period {} frames, buffer {} frames \
                                 instead of {} {} Hz {} channels, period {} frames, buffer {} \
                                 frames",
                                b.format,
                                b.rate,
                                b.channels,
                                b.period_frames(),
                                b.buffer_frames(),
                                active.format,
                                active.rate,
                                active.channels,
                                active.period_frames(),
                                active.buffer_frames()
                            )))
                        }
                        Err(CliError::Interrupted(s)) => {
                            return Ok((got, crate::hex(&hasher.finalize()), Some(s)));
                        }
                        Err(e) => return Err(e),
                    }
                }
                None => {}
            }
            progress.update(|| {
                format!(
                    "recording {name}: {:.2} s / {seconds:.2} s, overruns {}",
                    (got / fb) as f64 / rate,
                    recovery.overruns + stream.stats().overruns
                )
            });
        }
        break;
    }
    Ok((got, crate::hex(&hasher.finalize()), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Geometry, Target, DEFAULT_RECONNECT_TIMEOUT, DEFAULT_TIMEOUT};

    fn args(format: Option<PcmFormat>, rate: Option<u32>, channels: Option<u8>) -> RecordArgs {
        RecordArgs {
            file: "x.wav".into(),
            seconds: 1.0,
            target: Target::default(),
            format,
            rate,
            channels,
            geometry: Geometry::default(),
            timeout: DEFAULT_TIMEOUT,
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            progress: false,
        }
    }

    fn hw() -> PcmHw {
        PcmHw {
            formats: [PcmFormat::U8, PcmFormat::F32Le].into_iter().collect(),
            rates: vec![8000, 44_100],
            channels_min: 1,
            channels_max: 1,
            buffer_size: 32_768,
        }
    }

    #[test]
    fn defaults_follow_what_the_stream_allows() {
        assert_eq!(
            pick_params(&args(None, None, None), "s", &hw()).expect("ok"),
            (PcmFormat::U8, 44_100, 1)
        );
        assert_eq!(
            pick_params(&args(Some(PcmFormat::F32Le), Some(8000), None), "s", &hw()).expect("ok"),
            (PcmFormat::F32Le, 8000, 1)
        );
        let e = pick_params(
            &args(Some(PcmFormat::S16Le), Some(48_000), Some(2)),
            "card 0 stream 0/1",
            &hw(),
        )
        .expect_err("not allowed");
        assert!(
            matches!(&e, CliError::Unsupported(m) if m.starts_with(
                "card 0 stream 0/1 cannot record s16_le 48000 Hz 2 channels: format s16_le, rate 48000 Hz, 2 channels not allowed"
            )),
            "{e}"
        );
        let e = pick_params(&args(Some(PcmFormat::S16Be), None, None), "s", &hw()).expect_err("be");
        assert!(
            e.to_string()
                .starts_with("s16_be cannot be stored in a WAV file"),
            "{e}"
        );
    }
}
