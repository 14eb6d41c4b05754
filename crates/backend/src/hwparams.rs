//! HW_PARAM_QUERY answers and OPEN validation against a stream's xenstore configuration.
//!
//! The configuration space of a stream (from [`PcmHw`]):
//! - formats: the configured set;
//! - rates: the configured (discrete) list, seen as the interval from its smallest to its largest
//!   entry; a requested interval is narrowed to the configured rates inside it;
//! - channels: `channels-min ..= channels-max`;
//! - buffer, in frames: `1 ..= buffer-size / smallest frame`, where the smallest frame is the
//!   smallest sample size among the answered formats times the smallest answered channel count;
//! - period, in frames: `1 ..= the buffer maximum`.
//!
//! The answer intersects each part of the request with that space; an empty part makes the
//! query fail with `-EINVAL`, like an ALSA-based snd_be that cannot satisfy it.

use sndif::wire::{HwParam, Interval, OpenParams};
use sndif::{FormatSet, PcmHw};

use crate::errno::EINVAL;

/// Why a query or an OPEN is refused (the status is always `-EINVAL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// No requested format is configured.
    #[error("no requested format is configured (requested mask {requested:#x}, configured {configured:#x})")]
    Formats {
        /// Requested mask.
        requested: u64,
        /// Configured mask.
        configured: u64,
    },
    /// An interval of the request does not meet the configuration.
    #[error(
        "{what}: requested {req_min}..={req_max} does not meet configured {cfg_min}..={cfg_max}"
    )]
    Interval {
        /// `rates`, `channels`, `buffer` or `period`.
        what: &'static str,
        /// Requested minimum.
        req_min: u32,
        /// Requested maximum.
        req_max: u32,
        /// Configured minimum.
        cfg_min: u32,
        /// Configured maximum.
        cfg_max: u32,
    },
    /// An OPEN parameter is outside the configuration.
    #[error("OPEN {what} {value} is not allowed by the stream configuration")]
    Open {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: u64,
    },
}

impl ParamError {
    /// The response status for this error.
    pub fn status(&self) -> i32 {
        -EINVAL
    }
}

fn intersect(what: &'static str, req: Interval, cfg: Interval) -> Result<Interval, ParamError> {
    let min = req.min.max(cfg.min);
    let max = req.max.min(cfg.max);
    if min > max {
        return Err(ParamError::Interval {
            what,
            req_min: req.min,
            req_max: req.max,
            cfg_min: cfg.min,
            cfg_max: cfg.max,
        });
    }
    Ok(Interval::new(min, max))
}

/// Answers a HW_PARAM_QUERY for a stream configured as `hw`.
pub fn answer_query(hw: &PcmHw, req: &HwParam) -> Result<HwParam, ParamError> {
    let formats = FormatSet(req.formats.0 & hw.formats.0 & FormatSet::VALID_BITS);
    if formats.is_empty() {
        return Err(ParamError::Formats {
            requested: req.formats.0,
            configured: hw.formats.0,
        });
    }
    // Rates: the configured rates inside the requested interval.
    let cfg_rates = Interval::new(
        hw.rates.first().copied().unwrap_or(0),
        hw.rates.last().copied().unwrap_or(0),
    );
    let inside: Vec<u32> = hw
        .rates
        .iter()
        .copied()
        .filter(|r| *r >= req.rates.min && *r <= req.rates.max)
        .collect();
    let rates = match (inside.first(), inside.last()) {
        (Some(lo), Some(hi)) => Interval::new(*lo, *hi),
        _ => {
            return Err(ParamError::Interval {
                what: "rates",
                req_min: req.rates.min,
                req_max: req.rates.max,
                cfg_min: cfg_rates.min,
                cfg_max: cfg_rates.max,
            })
        }
    };
    let channels = intersect(
        "channels",
        req.channels,
        Interval::new(u32::from(hw.channels_min), u32::from(hw.channels_max)),
    )?;
    let min_sample = formats
        .iter()
        .filter_map(|f| f.bytes_per_sample())
        .min()
        .unwrap_or(1);
    let min_frame = min_sample.saturating_mul(channels.min.max(1));
    let max_frames = (hw.buffer_size / min_frame.max(1)).max(1);
    let buffer = intersect("buffer", req.buffer, Interval::new(1, max_frames))?;
    let period = intersect("period", req.period, Interval::new(1, buffer.max))?;
    Ok(HwParam {
        formats,
        rates,
        channels,
        buffer,
        period,
    })
}

/// Largest OPEN buffer accepted (16 MiB). snd_be does not compare `buffer_sz` with the
/// configured `buffer-size` (its audio API just rounds), so neither does this backend; the cap
/// only bounds the mapping.
pub const MAX_BUFFER_BYTES: u32 = 16 << 20;

/// Checks an OPEN against the configuration: format, rate and channel count must be configured,
/// the format must have a sample size, and the buffer must hold at least one frame and at most
/// [`MAX_BUFFER_BYTES`].
pub fn check_open(hw: &PcmHw, p: &OpenParams) -> Result<(), ParamError> {
    if !hw.formats.contains(p.format) || p.format.bytes_per_sample().is_none() {
        return Err(ParamError::Open {
            what: "format",
            value: u64::from(p.format.code()),
        });
    }
    if !hw.rates.contains(&p.rate) {
        return Err(ParamError::Open {
            what: "rate",
            value: u64::from(p.rate),
        });
    }
    if p.channels < hw.channels_min || p.channels > hw.channels_max || p.channels == 0 {
        return Err(ParamError::Open {
            what: "channels",
            value: u64::from(p.channels),
        });
    }
    let frame = p
        .format
        .bytes_per_sample()
        .unwrap_or(1)
        .saturating_mul(u32::from(p.channels));
    if p.buffer_sz < frame || p.buffer_sz > MAX_BUFFER_BYTES {
        return Err(ParamError::Open {
            what: "buffer_sz",
            value: u64::from(p.buffer_sz),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sndif::PcmFormat;

    fn hw() -> PcmHw {
        PcmHw {
            formats: [PcmFormat::S16Le, PcmFormat::F32Le].into_iter().collect(),
            rates: vec![44100, 48000],
            channels_min: 1,
            channels_max: 2,
            buffer_size: 65536,
        }
    }

    fn full() -> HwParam {
        HwParam {
            formats: FormatSet(u64::MAX),
            rates: Interval::new(1, u32::MAX),
            channels: Interval::new(1, u32::MAX),
            buffer: Interval::new(1, u32::MAX),
            period: Interval::new(1, u32::MAX),
        }
    }

    #[test]
    fn full_space_gives_the_configuration() {
        let a = answer_query(&hw(), &full()).expect("answer");
        assert_eq!(a.formats, hw().formats);
        assert_eq!(a.rates, Interval::new(44100, 48000));
        assert_eq!(a.channels, Interval::new(1, 2));
        // Smallest frame: s16 mono = 2 bytes.
        assert_eq!(a.buffer, Interval::new(1, 32768));
        assert_eq!(a.period, Interval::new(1, 32768));
    }

    #[test]
    fn narrowed_request_is_intersected() {
        let mut q = full();
        q.formats = FormatSet(PcmFormat::F32Le.mask_bit() | PcmFormat::U8.mask_bit());
        q.rates = Interval::new(45000, 96000);
        q.channels = Interval::new(2, 8);
        q.buffer = Interval::new(1024, 100_000);
        q.period = Interval::new(256, 100_000);
        let a = answer_query(&hw(), &q).expect("answer");
        assert_eq!(a.formats, FormatSet(PcmFormat::F32Le.mask_bit()));
        assert_eq!(a.rates, Interval::new(48000, 48000));
        assert_eq!(a.channels, Interval::new(2, 2));
        // f32 stereo = 8 bytes per frame.
        assert_eq!(a.buffer, Interval::new(1024, 8192));
        assert_eq!(a.period, Interval::new(256, 8192));
    }

    #[test]
    fn empty_parts_are_errors() {
        let mut q = full();
        q.formats = FormatSet(PcmFormat::U8.mask_bit());
        assert!(matches!(
            answer_query(&hw(), &q),
            Err(ParamError::Formats { .. })
        ));
        let mut q = full();
        q.rates = Interval::new(45000, 47000);
        assert!(matches!(
            answer_query(&hw(), &q),
            Err(ParamError::Interval { what: "rates", .. })
        ));
        let mut q = full();
        q.channels = Interval::new(3, 4);
        assert!(matches!(
            answer_query(&hw(), &q),
            Err(ParamError::Interval {
                what: "channels",
                ..
            })
        ));
        let mut q = full();
        q.buffer = Interval::new(40000, 50000);
        assert!(matches!(
            answer_query(&hw(), &q),
            Err(ParamError::Interval { what: "buffer", .. })
        ));
        assert_eq!(
            ParamError::Formats {
                requested: 0,
                configured: 0
            }
            .status(),
            -22
        );
    }

    #[test]
    fn open_checks() {
        let ok = OpenParams {
            rate: 48000,
            format: PcmFormat::S16Le,
            channels: 2,
            buffer_sz: 65536,
            gref_directory: 7,
            period_sz: 4096,
        };
        assert_eq!(check_open(&hw(), &ok), Ok(()));
        let bad = |f: &dyn Fn(&mut OpenParams)| {
            let mut p = ok;
            f(&mut p);
            check_open(&hw(), &p)
        };
        assert!(bad(&|p| p.format = PcmFormat::U8).is_err());
        assert!(bad(&|p| p.rate = 8000).is_err());
        assert!(bad(&|p| p.channels = 3).is_err());
        assert!(bad(&|p| p.channels = 0).is_err());
        assert!(bad(&|p| p.buffer_sz = 0).is_err());
        assert!(bad(&|p| p.buffer_sz = 3).is_err(), "less than one frame");
        assert_eq!(bad(&|p| p.buffer_sz = 4), Ok(()));
        assert!(bad(&|p| p.buffer_sz = MAX_BUFFER_BYTES + 1).is_err());
        // Larger than the configured buffer-size is fine (snd_be does not check it).
        assert_eq!(bad(&|p| p.buffer_sz = 5 << 20), Ok(()));
    }
}
