//! What `play` and `record` share: finding and connecting the stream, choosing buffer sizes,
//! waiting on the stream with the signal pipe and the engine's events, stopping and closing,
//! progress on stderr, and turning engine errors into one-line errors.

use std::time::{Duration, Instant};

use sndif::config::{PcmHw, StreamKind};
use sndif::formats::PcmFormat;
use xen_snd_engine::{
    ActiveParams, Clock, MonotonicClock, PcmParams, ServiceReport, Stream, StreamError, StreamOp,
    StreamOptions, StreamState,
};

use crate::args::{Geometry, Target};
use crate::cards::{pick_card, pick_stream, Guest};
use crate::env::Env;
use crate::error::CliError;
use crate::link::{reason_text, Link};
use crate::sys::{poll_readable, stderr_is_tty, Signals};

/// The engine's request timeout (the engine default, like the Linux frontend).
pub fn request_timeout() -> Duration {
    StreamOptions::default().request_timeout
}

/// `card 0 stream 0/1`.
pub fn stream_name(card: u32, device: u32, stream: u32) -> String {
    format!("card {card} stream {device}/{stream}")
}

/// A stream error as the tool reports it.
pub fn stream_error(e: &StreamError) -> CliError {
    match e {
        StreamError::Timeout {
            stream,
            op,
            timeout_ms,
        } => CliError::Timeout(format!(
            "{stream}: backend not answering: no response to {op} within {timeout_ms} ms"
        )),
        StreamError::Revoked { stream, .. } => CliError::Failed(format!(
            "{stream}: the card disconnected (the backend closed or restarted)"
        )),
        other => CliError::Failed(other.to_string()),
    }
}

/// The stream's health: an error if it failed or its card disconnected.
pub fn health(stream: &Stream) -> Result<(), CliError> {
    match stream.state() {
        StreamState::Failed(e) => Err(match e {
            StreamError::Timeout { .. } => stream_error(e),
            other => CliError::Failed(format!("{}: stream failed: {other}", stream.id())),
        }),
        StreamState::Revoked => Err(stream_error(&StreamError::Revoked {
            stream: stream.id(),
            op: StreamOp::Service,
        })),
        _ => Ok(()),
    }
}

/// `formats s16_le, float_le; rates 44100, 48000 Hz; 1-2 channels`.
pub fn describe_hw(hw: &PcmHw) -> String {
    let formats: Vec<String> = hw.formats.iter().map(|f| f.to_string()).collect();
    let rates: Vec<String> = hw.rates.iter().map(u32::to_string).collect();
    let channels = if hw.channels_min == hw.channels_max {
        format!(
            "{} channel{}",
            hw.channels_min,
            if hw.channels_min == 1 { "" } else { "s" }
        )
    } else {
        format!("{}-{} channels", hw.channels_min, hw.channels_max)
    };
    format!(
        "formats {}; rates {} Hz; {channels}",
        formats.join(", "),
        rates.join(", ")
    )
}

/// What the stream does not allow of `format`/`rate`/`channels`, if anything.
pub fn not_allowed(hw: &PcmHw, formats: &[PcmFormat], rate: u32, channels: u8) -> Vec<String> {
    let mut v = Vec::new();
    if !formats.iter().any(|f| hw.formats.contains(*f)) {
        let names: Vec<String> = formats.iter().map(|f| f.to_string()).collect();
        v.push(format!("format {}", names.join(" or ")));
    }
    if hw.rates.binary_search(&rate).is_err() {
        v.push(format!("rate {rate} Hz"));
    }
    if !(hw.channels_min..=hw.channels_max).contains(&channels) {
        v.push(format!("{channels} channels"));
    }
    v
}

/// The OPEN parameters: `--period-ms` (default 20 ms) and `--buffer-ms` (default 4 periods),
/// fitted into the stream's allocated buffer (at least two periods when possible).
pub fn geometry(
    capacity_bytes: u32,
    format: PcmFormat,
    rate: u32,
    channels: u8,
    g: Geometry,
) -> Option<PcmParams> {
    let frame = format.bytes_per_sample()? * u32::from(channels);
    let cap_frames = u64::from(capacity_bytes / frame.max(1));
    if cap_frames == 0 {
        return None;
    }
    let ms_frames = |ms: u32| (u64::from(rate) * u64::from(ms) / 1000).max(1);
    let mut period = ms_frames(g.period_ms.unwrap_or(20));
    if cap_frames >= 2 {
        period = period.min(cap_frames / 2);
    } else {
        period = 1;
    }
    let buffer = g
        .buffer_ms
        .map_or(period * 4, ms_frames)
        .max(period)
        .min(cap_frames);
    Some(PcmParams {
        format,
        rate,
        channels,
        buffer_frames: u32::try_from(buffer).ok()?,
        period_frames: u32::try_from(period).ok()?,
    })
}

/// OPEN, with its errors explained.
pub fn open(stream: &mut Stream, params: PcmParams) -> Result<ActiveParams, CliError> {
    stream.open(params).map_err(|e| match &e {
        StreamError::Backend {
            stream: id, status, ..
        } => CliError::Unsupported(format!(
            "{id}: the backend refused OPEN with {} {} Hz {} channels, buffer {} frames, \
             period {} frames (status {status})",
            params.format, params.rate, params.channels, params.buffer_frames, params.period_frames
        )),
        StreamError::InvalidParams {
            stream: id, reason, ..
        } => CliError::Unsupported(format!(
            "{id}: cannot open with {} {} Hz {} channels: {reason}",
            params.format, params.rate, params.channels
        )),
        _ => stream_error(&e),
    })
}

/// A connected card's stream, with the frontend that keeps the card connected.
#[derive(Debug)]
pub struct Opened {
    /// The frontend.
    pub link: Link,
    /// The stream (dropped before the link shuts down).
    pub stream: Stream,
    /// The card.
    pub card: u32,
}

/// Finds the stream `target` names (or the first of `kind`), checks the xenstore configuration
/// with `precheck` (before touching the backend), connects the card and takes the stream.
pub fn connect_stream(
    env: &Env,
    target: &Target,
    kind: StreamKind,
    timeout: Duration,
    signals: &Signals,
    precheck: impl FnOnce(&str, &PcmHw) -> Result<(), CliError>,
) -> Result<Opened, CliError> {
    let services = env.services()?;
    let guest = Guest::new(services.store.clone())?;
    let ids = guest.require_cards()?;
    let card = pick_card(&ids, target.card)?;
    let config = guest
        .config(card)
        .map_err(|e| CliError::NoDevice(format!("card {card}: unusable configuration: {e}")))?;
    let (device, index) = pick_stream(&config, card, target, kind)?;
    let name = stream_name(card, device, index);
    if let Some(Ok(c)) = config.stream(device, index).map(|s| &s.config) {
        precheck(&name, &c.hw)?;
    }
    let mut link = Link::start(services, guest.domid, &[card])?;
    let mut outcome = link.connect_all(&[card], timeout, signals)?;
    let connected = outcome
        .remove(&card)
        .unwrap_or_else(|| Err(CliError::Failed(format!("card {card}: no outcome"))))?;
    let stream = connected
        .streams
        .into_iter()
        .find(|s| s.id().device == device && s.id().stream == index)
        .ok_or_else(|| {
            let why = connected
                .info
                .unusable
                .iter()
                .find(|(id, _)| id.device == device && id.stream == index)
                .map_or_else(
                    || "the engine did not offer it".to_owned(),
                    |(_, e)| e.to_string(),
                );
            CliError::NoDevice(format!("{name} cannot be used: {why}"))
        })?;
    Ok(Opened { link, stream, card })
}

/// What ended a [`tick`] besides its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// SIGINT or SIGTERM came.
    Signal(i32),
    /// The card disconnected (the backend closed or restarted) and the link waits for it to
    /// connect again (see [`Link::set_reconnect`]); why, for messages.
    Disconnected(String),
}

/// One wait on the stream: poll its fd, the engine's events and the signal pipe (at most
/// `timeout`), then service the stream. Returns the service report and what happened, if
/// anything: a signal, or (with reconnecting on) a disconnect of the card.
pub fn tick(
    stream: &mut Stream,
    link: &mut Link,
    card: u32,
    signals: &Signals,
    timeout: Duration,
) -> Result<(ServiceReport, Option<Break>), CliError> {
    poll_readable(&[stream.fd(), link.fd(), signals.fd()], Some(timeout))
        .map_err(|e| CliError::Failed(format!("poll: {e}")))?;
    let mut total = ServiceReport::default();
    for _ in 0..16 {
        let r = stream.service(MonotonicClock.now_ns());
        total.responses += r.responses;
        total.events += r.events;
        total.issued += r.issued;
        total.timed_out += r.timed_out;
        total.control_done |= r.control_done;
        if !r.more_pending {
            break;
        }
    }
    link.check(card)?;
    if link.reconnects() {
        if let Some(reason) = link.take_disconnect(card) {
            return Ok((total, Some(Break::Disconnected(reason_text(reason)))));
        }
        if stream.is_revoked() {
            // The engine revoked the stream; its event is on the way.
            return Ok((
                total,
                Some(Break::Disconnected("the card disconnected".to_owned())),
            ));
        }
    }
    health(stream)?;
    if let Some((_, Err(e))) = stream.take_control_result() {
        return Err(stream_error(&e));
    }
    Ok((total, signals.received().map(Break::Signal)))
}

/// After a disconnect: waits (at most `timeout`) for the card to connect again, takes the same
/// stream from it in place of the revoked `stream` and opens it with `params`. Messages on
/// stderr say what happens. Errors: `Interrupted` on a signal, the wait's timeout, the stream
/// not offered any more, OPEN refused.
pub fn reopen(
    link: &mut Link,
    card: u32,
    stream: &mut Stream,
    params: PcmParams,
    why: &str,
    timeout: Duration,
    signals: &Signals,
) -> Result<ActiveParams, CliError> {
    let id = stream.id();
    let name = stream_name(card, id.device, id.stream);
    eprintln!(
        "xen-snd: card {card} disconnected ({why}); waiting up to {:.1} s for it to connect again",
        timeout.as_secs_f64()
    );
    let since = Instant::now();
    let connected = link.wait_reconnect(card, timeout, signals)?;
    let fresh = connected
        .streams
        .into_iter()
        .find(|s| s.id() == id)
        .ok_or_else(|| {
            CliError::NoDevice(format!(
                "{name} is not offered any more after card {card} connected again"
            ))
        })?;
    *stream = fresh;
    let active = open(stream, params)?;
    eprintln!(
        "xen-snd: card {card} connected again after {:.2} s; {name} reopened",
        since.elapsed().as_secs_f64()
    );
    Ok(active)
}

/// Waits (bounded by the request timeout) until no control request is pending.
fn settle(stream: &mut Stream) {
    let deadline = Instant::now() + request_timeout() + Duration::from_millis(500);
    while stream.control_pending().is_some() && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = poll_readable(&[stream.fd()], Some(left.min(Duration::from_millis(100))));
        stream.service(MonotonicClock.now_ns());
        if !matches!(
            stream.state(),
            StreamState::Stopped | StreamState::Running | StreamState::Paused | StreamState::Closed
        ) {
            return;
        }
    }
}

/// TRIGGER STOP (if open) and CLOSE, each bounded by the request timeout.
pub fn stop_and_close(stream: &mut Stream) -> Result<(), CliError> {
    let open = |s: &Stream| {
        matches!(
            s.state(),
            StreamState::Stopped | StreamState::Running | StreamState::Paused
        )
    };
    if open(stream) {
        match stream.stop() {
            Err(StreamError::Busy { .. }) => {
                settle(stream);
                let _ = stream.take_control_result();
                stream.stop().map_err(|e| stream_error(&e))?;
            }
            r => r.map_err(|e| stream_error(&e))?,
        }
    }
    let _ = stream.take_control_result();
    if open(stream) {
        stream.close().map_err(|e| stream_error(&e))?;
    }
    Ok(())
}

/// The live progress line (only on a terminal) and the final line.
#[derive(Debug)]
pub struct Progress {
    live: bool,
    shown: bool,
    last: Option<Instant>,
}

impl Progress {
    /// Live updates if `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> Progress {
        Progress {
            live: wanted && stderr_is_tty(),
            shown: false,
            last: None,
        }
    }

    /// Shows `text` (at most ten times a second).
    pub fn update(&mut self, text: impl FnOnce() -> String) {
        if !self.live {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        self.shown = true;
        eprint!("\r{:<78}", text());
    }

    /// Ends the live line and prints `line`.
    pub fn finish(&mut self, line: &str) {
        if self.shown {
            eprint!("\r{:<78}\r", "");
            self.shown = false;
        }
        eprintln!("{line}");
    }

    /// Ends the live line without a final line (before an error is printed).
    pub fn clear(&mut self) {
        if self.shown {
            eprint!("\r{:<78}\r", "");
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hw() -> PcmHw {
        PcmHw {
            formats: [PcmFormat::S16Le, PcmFormat::F32Le].into_iter().collect(),
            rates: vec![44_100, 48_000],
            channels_min: 1,
            channels_max: 2,
            buffer_size: 32_768,
        }
    }

    #[test]
    fn describes_what_a_stream_allows() {
        assert_eq!(
            describe_hw(&hw()),
            "formats s16_le, float_le; rates 44100, 48000 Hz; 1-2 channels"
        );
        assert!(not_allowed(&hw(), &[PcmFormat::S16Le], 48_000, 2).is_empty());
        assert_eq!(
            not_allowed(&hw(), &[PcmFormat::S24Le, PcmFormat::S32Le], 22_050, 3),
            vec![
                "format s24_le or s32_le".to_owned(),
                "rate 22050 Hz".to_owned(),
                "3 channels".to_owned()
            ]
        );
    }

    #[test]
    fn geometry_fits_the_buffer() {
        let g = Geometry::default();
        let p = geometry(65_536, PcmFormat::S16Le, 48_000, 2, g).expect("p");
        assert_eq!((p.period_frames, p.buffer_frames), (960, 3840));
        // 32 KiB of stereo float = 4096 frames: 4 × 960 fits.
        let p = geometry(32_768, PcmFormat::F32Le, 48_000, 2, g).expect("p");
        assert_eq!((p.period_frames, p.buffer_frames), (960, 3840));
        // A buffer that holds less than two 20 ms periods: the period shrinks to half of it.
        let p = geometry(4096, PcmFormat::F32Le, 48_000, 2, g).expect("p");
        assert_eq!((p.period_frames, p.buffer_frames), (256, 512));
        let p = geometry(
            65_536,
            PcmFormat::S16Le,
            44_100,
            1,
            Geometry {
                period_ms: Some(10),
                buffer_ms: Some(100),
            },
        )
        .expect("p");
        assert_eq!((p.period_frames, p.buffer_frames), (441, 4410));
        assert!(geometry(2, PcmFormat::F64Le, 48_000, 2, g).is_none());
        assert!(geometry(65_536, PcmFormat::Gsm, 48_000, 2, g).is_none());
    }
}
