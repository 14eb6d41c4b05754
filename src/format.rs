//! Formats between sndif and SPA: the sample-format mapping, the `EnumFormat` pods a node offers,
//! the negotiated `Format` turned back into [`PortParams`], the `Latency` pod, silence.
//!
//! Pure Rust (libspa's pod serializer); no PipeWire objects.

use std::io::Cursor;

use pipewire::spa;
use spa::param::audio::{AudioFormat, AudioInfoRaw};
use spa::pod::serialize::PodSerializer;
use spa::pod::{ChoiceValue, Object, Pod, Property, PropertyFlags, Value, ValueArray};
use spa::sys as spa_sys;
use spa::utils::{Choice, ChoiceEnum, ChoiceFlags, Id};

use sndif::config::{PcmHw, StreamKind};
use sndif::formats::PcmFormat;

use crate::port::PortParams;

/// Most `EnumFormat` pods one node offers (the first ones are what PipeWire picks anyway).
pub const MAX_ENUM_PODS: usize = 64;

/// Most channels SPA describes in a raw audio format.
pub const MAX_CHANNELS: u8 = 64;

/// The SPA format for an sndif format, if PipeWire can carry it. sndif's 24-bit formats are
/// ALSA's: 24 bits in a 4-byte container, which SPA calls `S24_32`. IEC958 subframes and the
/// compressed formats have no raw SPA equivalent.
pub fn spa_format(f: PcmFormat) -> Option<AudioFormat> {
    Some(match f {
        PcmFormat::S8 => AudioFormat::S8,
        PcmFormat::U8 => AudioFormat::U8,
        PcmFormat::S16Le => AudioFormat::S16LE,
        PcmFormat::S16Be => AudioFormat::S16BE,
        PcmFormat::U16Le => AudioFormat::U16LE,
        PcmFormat::U16Be => AudioFormat::U16BE,
        PcmFormat::S24Le => AudioFormat::S24_32LE,
        PcmFormat::S24Be => AudioFormat::S24_32BE,
        PcmFormat::U24Le => AudioFormat::U24_32LE,
        PcmFormat::U24Be => AudioFormat::U24_32BE,
        PcmFormat::S32Le => AudioFormat::S32LE,
        PcmFormat::S32Be => AudioFormat::S32BE,
        PcmFormat::U32Le => AudioFormat::U32LE,
        PcmFormat::U32Be => AudioFormat::U32BE,
        PcmFormat::F32Le => AudioFormat::F32LE,
        PcmFormat::F32Be => AudioFormat::F32BE,
        PcmFormat::F64Le => AudioFormat::F64LE,
        PcmFormat::F64Be => AudioFormat::F64BE,
        PcmFormat::MuLaw => AudioFormat::ULAW,
        PcmFormat::ALaw => AudioFormat::ALAW,
        PcmFormat::Iec958SubframeLe
        | PcmFormat::Iec958SubframeBe
        | PcmFormat::ImaAdpcm
        | PcmFormat::Mpeg
        | PcmFormat::Gsm => return None,
    })
}

/// The sndif format for a SPA format (the inverse of [`spa_format`]).
pub fn pcm_format(f: AudioFormat) -> Option<PcmFormat> {
    sndif::formats::ALL_FORMATS
        .into_iter()
        .find(|p| spa_format(*p) == Some(f))
}

/// Preference order when a stream allows several formats: float and wide integer formats first
/// (PipeWire mixes in F32, so they lose nothing), native little-endian before big-endian,
/// companded formats last.
const PREFERENCE: [PcmFormat; 20] = [
    PcmFormat::F32Le,
    PcmFormat::S32Le,
    PcmFormat::S24Le,
    PcmFormat::S16Le,
    PcmFormat::F64Le,
    PcmFormat::U32Le,
    PcmFormat::U24Le,
    PcmFormat::U16Le,
    PcmFormat::S8,
    PcmFormat::U8,
    PcmFormat::F32Be,
    PcmFormat::S32Be,
    PcmFormat::S24Be,
    PcmFormat::S16Be,
    PcmFormat::F64Be,
    PcmFormat::U32Be,
    PcmFormat::U24Be,
    PcmFormat::U16Be,
    PcmFormat::MuLaw,
    PcmFormat::ALaw,
];

/// The formats of `hw` PipeWire can carry, most preferred first.
pub fn offered_formats(hw: &PcmHw) -> Vec<PcmFormat> {
    PREFERENCE
        .into_iter()
        .filter(|f| hw.formats.contains(*f))
        .collect()
}

/// The rate a node prefers: the graph rate if allowed, else the nearest allowed rate (the higher
/// one on a tie). `None` if `hw` allows no rate.
pub fn preferred_rate(hw: &PcmHw, graph_rate: u32) -> Option<u32> {
    hw.rates
        .iter()
        .copied()
        .min_by_key(|r| (r.abs_diff(graph_rate), u32::MAX - r))
}

/// The channel count a node prefers: 2 within the allowed range, else the nearest bound.
pub fn preferred_channels(hw: &PcmHw) -> u8 {
    let lo = hw.channels_min.clamp(1, MAX_CHANNELS);
    let hi = hw.channels_max.clamp(lo, MAX_CHANNELS);
    2u8.clamp(lo, hi)
}

/// The channel counts offered, preferred first, then the others from many to few.
pub fn offered_channels(hw: &PcmHw) -> Vec<u8> {
    let lo = hw.channels_min.clamp(1, MAX_CHANNELS);
    let hi = hw.channels_max.clamp(lo, MAX_CHANNELS);
    let pref = preferred_channels(hw);
    let mut v = vec![pref];
    v.extend((lo..=hi).rev().filter(|c| *c != pref));
    v
}

/// The channel positions for `channels` channels: the usual layouts up to 7.1, auxiliary
/// channels beyond.
pub fn positions(channels: u8) -> Vec<u32> {
    use spa_sys::*;
    let fixed: &[u32] = match channels {
        1 => &[SPA_AUDIO_CHANNEL_MONO],
        2 => &[SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR],
        3 => &[
            SPA_AUDIO_CHANNEL_FL,
            SPA_AUDIO_CHANNEL_FR,
            SPA_AUDIO_CHANNEL_LFE,
        ],
        4 => &[
            SPA_AUDIO_CHANNEL_FL,
            SPA_AUDIO_CHANNEL_FR,
            SPA_AUDIO_CHANNEL_RL,
            SPA_AUDIO_CHANNEL_RR,
        ],
        5 => &[
            SPA_AUDIO_CHANNEL_FL,
            SPA_AUDIO_CHANNEL_FR,
            SPA_AUDIO_CHANNEL_RL,
            SPA_AUDIO_CHANNEL_RR,
            SPA_AUDIO_CHANNEL_FC,
        ],
        6 => &[
            SPA_AUDIO_CHANNEL_FL,
            SPA_AUDIO_CHANNEL_FR,
            SPA_AUDIO_CHANNEL_RL,
            SPA_AUDIO_CHANNEL_RR,
            SPA_AUDIO_CHANNEL_FC,
            SPA_AUDIO_CHANNEL_LFE,
        ],
        7 => &[
            SPA_AUDIO_CHANNEL_FL,
            SPA_AUDIO_CHANNEL_FR,
            SPA_AUDIO_CHANNEL_RL,
            SPA_AUDIO_CHANNEL_RR,
            SPA_AUDIO_CHANNEL_FC,
            SPA_AUDIO_CHANNEL_LFE,
            SPA_AUDIO_CHANNEL_RC,
        ],
        8 => &[
            SPA_AUDIO_CHANNEL_FL,
            SPA_AUDIO_CHANNEL_FR,
            SPA_AUDIO_CHANNEL_RL,
            SPA_AUDIO_CHANNEL_RR,
            SPA_AUDIO_CHANNEL_FC,
            SPA_AUDIO_CHANNEL_LFE,
            SPA_AUDIO_CHANNEL_SL,
            SPA_AUDIO_CHANNEL_SR,
        ],
        _ => &[],
    };
    if !fixed.is_empty() || channels == 0 {
        return fixed.to_vec();
    }
    (0..u32::from(channels))
        .map(|i| SPA_AUDIO_CHANNEL_AUX0 + i)
        .collect()
}

/// The short names of the positions (`FL,FR`), for `audio.position`.
pub fn position_names(channels: u8) -> String {
    use spa_sys::*;
    positions(channels)
        .into_iter()
        .map(|p| match p {
            SPA_AUDIO_CHANNEL_MONO => "MONO".to_owned(),
            SPA_AUDIO_CHANNEL_FL => "FL".to_owned(),
            SPA_AUDIO_CHANNEL_FR => "FR".to_owned(),
            SPA_AUDIO_CHANNEL_FC => "FC".to_owned(),
            SPA_AUDIO_CHANNEL_LFE => "LFE".to_owned(),
            SPA_AUDIO_CHANNEL_SL => "SL".to_owned(),
            SPA_AUDIO_CHANNEL_SR => "SR".to_owned(),
            SPA_AUDIO_CHANNEL_RC => "RC".to_owned(),
            SPA_AUDIO_CHANNEL_RL => "RL".to_owned(),
            SPA_AUDIO_CHANNEL_RR => "RR".to_owned(),
            aux => format!("AUX{}", aux.saturating_sub(SPA_AUDIO_CHANNEL_AUX0)),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The short SPA name of a format (`S16LE`), for `audio.format`.
pub fn spa_format_name(f: PcmFormat) -> &'static str {
    match f {
        PcmFormat::S8 => "S8",
        PcmFormat::U8 => "U8",
        PcmFormat::S16Le => "S16LE",
        PcmFormat::S16Be => "S16BE",
        PcmFormat::U16Le => "U16LE",
        PcmFormat::U16Be => "U16BE",
        PcmFormat::S24Le => "S24_32LE",
        PcmFormat::S24Be => "S24_32BE",
        PcmFormat::U24Le => "U24_32LE",
        PcmFormat::U24Be => "U24_32BE",
        PcmFormat::S32Le => "S32LE",
        PcmFormat::S32Be => "S32BE",
        PcmFormat::U32Le => "U32LE",
        PcmFormat::U32Be => "U32BE",
        PcmFormat::F32Le => "F32LE",
        PcmFormat::F32Be => "F32BE",
        PcmFormat::F64Le => "F64LE",
        PcmFormat::F64Be => "F64BE",
        PcmFormat::MuLaw => "ULAW",
        PcmFormat::ALaw => "ALAW",
        PcmFormat::Iec958SubframeLe
        | PcmFormat::Iec958SubframeBe
        | PcmFormat::ImaAdpcm
        | PcmFormat::Mpeg
        | PcmFormat::Gsm => "UNKNOWN",
    }
}

/// A serialized pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodBytes(Vec<u8>);

impl PodBytes {
    fn serialize(value: &Value) -> Option<PodBytes> {
        let (cursor, _) = PodSerializer::serialize(Cursor::new(Vec::new()), value).ok()?;
        Some(PodBytes(cursor.into_inner()))
    }

    /// The pod.
    pub fn pod(&self) -> Option<&Pod> {
        Pod::from_bytes(&self.0)
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

fn prop(key: u32, value: Value) -> Property {
    Property {
        key,
        flags: PropertyFlags::empty(),
        value,
    }
}

/// One `EnumFormat` object: `format` fixed, `channels` fixed with positions, the rate fixed or an
/// enumeration whose default is `rate`.
fn enum_format_object(format: AudioFormat, channels: u8, rates: &[u32], rate: u32) -> Object {
    let rate_value = if rates.len() <= 1 {
        Value::Int(i32::try_from(rate).unwrap_or(i32::MAX))
    } else {
        let alternatives = rates
            .iter()
            .map(|r| i32::try_from(*r).unwrap_or(i32::MAX))
            .collect();
        Value::Choice(ChoiceValue::Int(Choice(
            ChoiceFlags::empty(),
            ChoiceEnum::Enum {
                default: i32::try_from(rate).unwrap_or(i32::MAX),
                alternatives,
            },
        )))
    };
    let mut properties = vec![
        prop(
            spa_sys::SPA_FORMAT_mediaType,
            Value::Id(Id(spa_sys::SPA_MEDIA_TYPE_audio)),
        ),
        prop(
            spa_sys::SPA_FORMAT_mediaSubtype,
            Value::Id(Id(spa_sys::SPA_MEDIA_SUBTYPE_raw)),
        ),
        prop(spa_sys::SPA_FORMAT_AUDIO_format, Value::Id(Id(format.0))),
        prop(spa_sys::SPA_FORMAT_AUDIO_rate, rate_value),
        prop(
            spa_sys::SPA_FORMAT_AUDIO_channels,
            Value::Int(i32::from(channels)),
        ),
    ];
    let pos = positions(channels);
    if !pos.is_empty() {
        properties.push(prop(
            spa_sys::SPA_FORMAT_AUDIO_position,
            Value::ValueArray(ValueArray::Id(pos.into_iter().map(Id).collect())),
        ));
    }
    Object {
        type_: spa_sys::SPA_TYPE_OBJECT_Format,
        id: spa_sys::SPA_PARAM_EnumFormat,
        properties,
    }
}

/// Every `EnumFormat` pod a port with `hw` offers, most preferred first: per format (in
/// [`offered_formats`] order) one pod per channel count (preferred count first), each with every
/// allowed rate and `graph_rate` (or the nearest allowed rate) as default. At most
/// [`MAX_ENUM_PODS`].
///
/// When there are several, the first (preferred) pod is repeated at the end: PipeWire's
/// negotiation takes the first pod, while pipewire-pulse shows the *last* one as the sample spec
/// of a sink that has not run yet.
pub fn enum_formats(hw: &PcmHw, graph_rate: u32) -> Vec<PodBytes> {
    let Some(rate) = preferred_rate(hw, graph_rate) else {
        return Vec::new();
    };
    let channels = offered_channels(hw);
    let mut pods = Vec::new();
    'all: for f in offered_formats(hw) {
        let Some(af) = spa_format(f) else { continue };
        for c in &channels {
            if pods.len() + 1 >= MAX_ENUM_PODS {
                break 'all;
            }
            let obj = enum_format_object(af, *c, &hw.rates, rate);
            if let Some(p) = PodBytes::serialize(&Value::Object(obj)) {
                pods.push(p);
            }
        }
    }
    if pods.len() > 1 {
        if let Some(first) = pods.first().cloned() {
            pods.push(first);
        }
    }
    pods
}

/// Why a negotiated format was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The pod is not a raw audio format.
    #[error("not a raw audio format")]
    NotRawAudio,
    /// The SPA format has no sndif equivalent.
    #[error("sample format {0} has no sndif equivalent")]
    UnknownFormat(u32),
    /// The stream does not allow the combination.
    #[error("{format} at {rate} Hz with {channels} channels is not allowed by the stream")]
    NotAllowed {
        /// Format.
        format: PcmFormat,
        /// Rate.
        rate: u32,
        /// Channels.
        channels: u32,
    },
}

/// The format part of a negotiated `Format` pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Sample format.
    pub format: PcmFormat,
    /// Rate, Hz.
    pub rate: u32,
    /// Channels.
    pub channels: u8,
}

/// Parse a negotiated `Format` pod and check it against `hw`.
pub fn parse_format(pod: &Pod, hw: &PcmHw) -> Result<Negotiated, FormatError> {
    let (mt, mst) =
        spa::param::format_utils::parse_format(pod).map_err(|_| FormatError::NotRawAudio)?;
    if mt != spa::param::format::MediaType::Audio || mst != spa::param::format::MediaSubtype::Raw {
        return Err(FormatError::NotRawAudio);
    }
    let mut info = AudioInfoRaw::new();
    info.parse(pod).map_err(|_| FormatError::NotRawAudio)?;
    let af = info.format();
    let format = pcm_format(af).ok_or(FormatError::UnknownFormat(af.0))?;
    let not_allowed = FormatError::NotAllowed {
        format,
        rate: info.rate(),
        channels: info.channels(),
    };
    let channels = u8::try_from(info.channels()).map_err(|_| not_allowed.clone())?;
    if !hw.supports(format, info.rate(), channels) {
        return Err(not_allowed);
    }
    Ok(Negotiated {
        format,
        rate: info.rate(),
        channels,
    })
}

/// The buffer geometry toward the backend for a negotiated format: `period_frames` (0 = 20 ms)
/// and `buffer_frames` (0 = automatic: four periods, but at least two graph quanta of `quantum`
/// frames rounded up to whole periods, so a cycle never finds less than a quantum of room or
/// data), the buffer rounded down to whole periods and to what `hw.buffer_size` octets hold, and
/// at least two periods (the period shrinks if needed).
pub fn port_params(
    n: Negotiated,
    hw: &PcmHw,
    period_frames: u32,
    buffer_frames: u32,
    quantum: u64,
) -> PortParams {
    let frame = (n.format.bytes_per_sample().unwrap_or(1) * u32::from(n.channels)).max(1);
    let capacity = (hw.buffer_size / frame).max(2);
    let mut period = if period_frames == 0 {
        (n.rate / 50).max(1)
    } else {
        period_frames
    };
    let wanted = if buffer_frames == 0 {
        let quanta = u32::try_from(quantum.saturating_mul(2)).unwrap_or(u32::MAX);
        let periods = quanta.div_ceil(period.max(1)).max(4);
        period.saturating_mul(periods)
    } else {
        buffer_frames
    };
    let mut buffer = wanted.min(capacity);
    if buffer < 2 * period {
        period = (buffer / 2).max(1);
    }
    buffer = (buffer / period) * period;
    PortParams {
        format: n.format,
        rate: n.rate,
        channels: n.channels,
        buffer_frames: buffer,
        period_frames: period,
    }
}

/// The volume in a `Props` pod: `channelVolumes` (linear, one per channel) and `mute`, each
/// `None` when absent; `None` when the pod carries neither (or is not a `Props` object).
pub fn parse_volume(pod: &Pod) -> Option<(Option<Vec<f32>>, Option<bool>)> {
    let (_, value) =
        spa::pod::deserialize::PodDeserializer::deserialize_any_from(pod.as_bytes()).ok()?;
    let Value::Object(obj) = value else {
        return None;
    };
    if obj.type_ != spa_sys::SPA_TYPE_OBJECT_Props {
        return None;
    }
    let mut volumes = None;
    let mut mute = None;
    for p in obj.properties {
        match (p.key, p.value) {
            (spa_sys::SPA_PROP_channelVolumes, Value::ValueArray(ValueArray::Float(v))) => {
                volumes = Some(v);
            }
            (spa_sys::SPA_PROP_mute, Value::Bool(b)) => mute = Some(b),
            _ => {}
        }
    }
    (volumes.is_some() || mute.is_some()).then_some((volumes, mute))
}

/// A `Props` pod with `channelVolumes` and `mute` (what a session manager or pipewire-pulse
/// sends), for tests.
pub fn volume_pod(volumes: &[f32], mute: bool) -> Option<PodBytes> {
    let obj = Object {
        type_: spa_sys::SPA_TYPE_OBJECT_Props,
        id: spa_sys::SPA_PARAM_Props,
        properties: vec![
            prop(
                spa_sys::SPA_PROP_channelVolumes,
                Value::ValueArray(ValueArray::Float(volumes.to_vec())),
            ),
            prop(spa_sys::SPA_PROP_mute, Value::Bool(mute)),
        ],
    };
    PodBytes::serialize(&Value::Object(obj))
}

/// A `Latency` pod reporting `frames` of buffering toward the backend: in the input direction
/// for a playback node (a sink), in the output direction for a capture node (a source).
pub fn latency_pod(kind: StreamKind, frames: u32) -> Option<PodBytes> {
    let direction = match kind {
        StreamKind::Playback => spa_sys::SPA_DIRECTION_INPUT,
        StreamKind::Capture => spa_sys::SPA_DIRECTION_OUTPUT,
    };
    let frames = i32::try_from(frames).unwrap_or(i32::MAX);
    let obj = Object {
        type_: spa_sys::SPA_TYPE_OBJECT_ParamLatency,
        id: spa_sys::SPA_PARAM_Latency,
        properties: vec![
            prop(
                spa_sys::SPA_PARAM_LATENCY_direction,
                Value::Id(Id(direction)),
            ),
            prop(spa_sys::SPA_PARAM_LATENCY_minQuantum, Value::Float(0.0)),
            prop(spa_sys::SPA_PARAM_LATENCY_maxQuantum, Value::Float(0.0)),
            prop(spa_sys::SPA_PARAM_LATENCY_minRate, Value::Int(frames)),
            prop(spa_sys::SPA_PARAM_LATENCY_maxRate, Value::Int(frames)),
            prop(spa_sys::SPA_PARAM_LATENCY_minNs, Value::Long(0)),
            prop(spa_sys::SPA_PARAM_LATENCY_maxNs, Value::Long(0)),
        ],
    };
    PodBytes::serialize(&Value::Object(obj))
}

/// Fill `out` with silence of `format` (no allocation, no panic).
pub fn fill_silence(out: &mut [u8], format: PcmFormat) {
    let pat = format.silence();
    if pat.len() <= 1 {
        out.fill(pat.first().copied().unwrap_or(0));
        return;
    }
    for chunk in out.chunks_mut(pat.len()) {
        for (d, s) in chunk.iter_mut().zip(pat) {
            *d = *s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sndif::formats::{FormatSet, ALL_FORMATS};

    fn hw(formats: &[PcmFormat], rates: &[u32], cmin: u8, cmax: u8) -> PcmHw {
        PcmHw {
            formats: formats.iter().copied().collect::<FormatSet>(),
            rates: rates.to_vec(),
            channels_min: cmin,
            channels_max: cmax,
            buffer_size: 65536,
        }
    }

    #[test]
    fn format_mapping_round_trips_and_sizes_agree() {
        let mut mapped = 0;
        for f in ALL_FORMATS {
            if let Some(af) = spa_format(f) {
                mapped += 1;
                assert_eq!(pcm_format(af), Some(f), "{f}");
                assert!(f.bytes_per_sample().is_some(), "{f}");
                assert_ne!(spa_format_name(f), "UNKNOWN");
            }
        }
        assert_eq!(mapped, 20);
        assert_eq!(spa_format(PcmFormat::S24Le), Some(AudioFormat::S24_32LE));
        assert_eq!(
            pcm_format(AudioFormat::S24LE),
            None,
            "packed 24-bit is not sndif's"
        );
        assert_eq!(spa_format(PcmFormat::Gsm), None);
    }

    #[test]
    fn preferences() {
        let h = hw(
            &[PcmFormat::S16Le, PcmFormat::F32Le, PcmFormat::U8],
            &[44100, 96000],
            1,
            6,
        );
        assert_eq!(
            offered_formats(&h),
            vec![PcmFormat::F32Le, PcmFormat::S16Le, PcmFormat::U8]
        );
        assert_eq!(preferred_rate(&h, 48000), Some(44100));
        assert_eq!(preferred_rate(&h, 96000), Some(96000));
        assert_eq!(
            preferred_rate(&hw(&[], &[44000, 52000], 1, 1), 48000),
            Some(52000)
        );
        assert_eq!(preferred_rate(&hw(&[], &[], 1, 1), 48000), None);
        assert_eq!(offered_channels(&h), vec![2, 6, 5, 4, 3, 1]);
        assert_eq!(preferred_channels(&hw(&[], &[1], 4, 8)), 4);
        assert_eq!(preferred_channels(&hw(&[], &[1], 1, 1)), 1);
        // A nonsensical range never panics.
        assert_eq!(offered_channels(&hw(&[], &[1], 9, 3)), vec![9]);
    }

    #[test]
    fn positions_are_complete() {
        for c in 1..=MAX_CHANNELS {
            assert_eq!(positions(c).len(), usize::from(c), "{c}");
        }
        assert_eq!(position_names(2), "FL,FR");
        assert_eq!(position_names(1), "MONO");
        assert_eq!(position_names(10).split(',').count(), 10);
        assert!(position_names(10).starts_with("AUX0,AUX1"));
    }

    #[test]
    fn enum_formats_parse_back_with_the_preferred_defaults() {
        let h = hw(&[PcmFormat::S16Le, PcmFormat::S32Le], &[44100, 48000], 1, 2);
        let pods = enum_formats(&h, 48000);
        assert_eq!(
            pods.len(),
            5,
            "2 formats x 2 channel counts, then the first again"
        );
        assert_eq!(pods[4], pods[0]);
        // Fixating the first pod (taking defaults) must give S32LE, 48000 Hz, stereo.
        let first = pods[0].pod().unwrap();
        let (_, value) =
            spa::pod::deserialize::PodDeserializer::deserialize_any_from(first.as_bytes()).unwrap();
        let Value::Object(obj) = value else {
            panic!("not an object")
        };
        assert_eq!(obj.id, spa_sys::SPA_PARAM_EnumFormat);
        let get = |k| {
            obj.properties
                .iter()
                .find(|p| p.key == k)
                .map(|p| p.value.clone())
        };
        assert_eq!(
            get(spa_sys::SPA_FORMAT_AUDIO_format),
            Some(Value::Id(Id(AudioFormat::S32LE.0)))
        );
        assert_eq!(get(spa_sys::SPA_FORMAT_AUDIO_channels), Some(Value::Int(2)));
        match get(spa_sys::SPA_FORMAT_AUDIO_rate) {
            Some(Value::Choice(ChoiceValue::Int(Choice(
                _,
                ChoiceEnum::Enum {
                    default,
                    alternatives,
                },
            )))) => {
                assert_eq!(default, 48000);
                assert_eq!(alternatives, vec![44100, 48000]);
            }
            other => panic!("rate: {other:?}"),
        }
        // The last distinct pod is S16LE mono.
        let last = pods[3].pod().unwrap();
        let (_, Value::Object(obj)) =
            spa::pod::deserialize::PodDeserializer::deserialize_any_from(last.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert!(obj
            .properties
            .iter()
            .any(|p| p.key == spa_sys::SPA_FORMAT_AUDIO_format
                && p.value == Value::Id(Id(AudioFormat::S16LE.0))));
        assert!(obj
            .properties
            .iter()
            .any(|p| p.key == spa_sys::SPA_FORMAT_AUDIO_channels && p.value == Value::Int(1)));
    }

    #[test]
    fn enum_formats_are_capped_and_single_rate_is_fixed() {
        let all: Vec<PcmFormat> = ALL_FORMATS.to_vec();
        let h = hw(&all, &[48000], 1, 64);
        let pods = enum_formats(&h, 48000);
        assert_eq!(pods.len(), MAX_ENUM_PODS);
        let (_, Value::Object(obj)) =
            spa::pod::deserialize::PodDeserializer::deserialize_any_from(pods[0].bytes()).unwrap()
        else {
            panic!()
        };
        assert!(obj
            .properties
            .iter()
            .any(|p| p.key == spa_sys::SPA_FORMAT_AUDIO_rate && p.value == Value::Int(48000)));
        assert!(enum_formats(&hw(&[PcmFormat::S16Le], &[], 1, 2), 48000).is_empty());
        assert_eq!(
            enum_formats(&hw(&[PcmFormat::S16Le], &[8000], 2, 2), 48000).len(),
            1
        );
        assert!(enum_formats(&hw(&[PcmFormat::Gsm], &[8000], 1, 2), 48000).is_empty());
    }

    fn format_pod(f: AudioFormat, rate: u32, channels: u32) -> PodBytes {
        let mut info = AudioInfoRaw::new();
        info.set_format(f);
        info.set_rate(rate);
        info.set_channels(channels);
        let obj = Object {
            type_: spa_sys::SPA_TYPE_OBJECT_Format,
            id: spa_sys::SPA_PARAM_Format,
            properties: info.into(),
        };
        PodBytes::serialize(&Value::Object(obj)).unwrap()
    }

    #[test]
    fn negotiated_format_is_parsed_and_checked() {
        let h = hw(&[PcmFormat::S16Le], &[44100, 48000], 1, 2);
        let p = format_pod(AudioFormat::S16LE, 48000, 2);
        assert_eq!(
            parse_format(p.pod().unwrap(), &h),
            Ok(Negotiated {
                format: PcmFormat::S16Le,
                rate: 48000,
                channels: 2
            })
        );
        let p = format_pod(AudioFormat::F32LE, 48000, 2);
        assert!(matches!(
            parse_format(p.pod().unwrap(), &h),
            Err(FormatError::NotAllowed { .. })
        ));
        let p = format_pod(AudioFormat::S16LE, 96000, 2);
        assert!(parse_format(p.pod().unwrap(), &h).is_err());
        let p = format_pod(AudioFormat::S16LE, 48000, 300);
        assert!(parse_format(p.pod().unwrap(), &h).is_err());
        let p = format_pod(AudioFormat::S24LE, 48000, 2);
        assert_eq!(
            parse_format(p.pod().unwrap(), &h),
            Err(FormatError::UnknownFormat(AudioFormat::S24LE.0))
        );
        let lat = latency_pod(StreamKind::Playback, 100).unwrap();
        assert_eq!(
            parse_format(lat.pod().unwrap(), &h),
            Err(FormatError::NotRawAudio)
        );
    }

    #[test]
    fn buffer_geometry() {
        let h = hw(&[PcmFormat::S16Le], &[48000], 1, 2);
        let n = Negotiated {
            format: PcmFormat::S16Le,
            rate: 48000,
            channels: 2,
        };
        let p = port_params(n, &h, 0, 0, 1024);
        assert_eq!((p.period_frames, p.buffer_frames), (960, 3840));
        assert_eq!(p.frame_bytes(), 4);
        // The automatic buffer holds two quanta of a large graph quantum (whole periods).
        let p = port_params(n, &h, 0, 0, 2048);
        assert_eq!((p.period_frames, p.buffer_frames), (960, 4800));
        let p = port_params(n, &h, 0, 0, 8192);
        assert_eq!((p.period_frames, p.buffer_frames), (960, 16320));
        // An explicit buffer is taken as it is.
        let p = port_params(n, &h, 0, 1920, 8192);
        assert_eq!((p.period_frames, p.buffer_frames), (960, 1920));
        let p = port_params(n, &h, 1000, 3500, 1024);
        assert_eq!((p.period_frames, p.buffer_frames), (1000, 3000));
        // 65536 octets hold 16384 frames: a big request is clamped to whole periods of it.
        let p = port_params(n, &h, 4096, 100_000, 1024);
        assert_eq!((p.period_frames, p.buffer_frames), (4096, 16384));
        // A small buffer forces a smaller period.
        let small = PcmHw {
            buffer_size: 4096,
            ..h.clone()
        };
        let p = port_params(n, &small, 960, 0, 1024);
        assert_eq!((p.period_frames, p.buffer_frames), (512, 1024));
        assert!(p.buffer_frames >= 2 * p.period_frames);
    }

    #[test]
    fn latency_pod_has_direction_and_frames() {
        let pod = latency_pod(StreamKind::Capture, 1920).unwrap();
        let (_, Value::Object(obj)) =
            spa::pod::deserialize::PodDeserializer::deserialize_any_from(pod.bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(obj.type_, spa_sys::SPA_TYPE_OBJECT_ParamLatency);
        assert_eq!(obj.id, spa_sys::SPA_PARAM_Latency);
        assert!(obj
            .properties
            .iter()
            .any(|p| p.key == spa_sys::SPA_PARAM_LATENCY_direction
                && p.value == Value::Id(Id(spa_sys::SPA_DIRECTION_OUTPUT))));
        assert!(obj
            .properties
            .iter()
            .any(|p| p.key == spa_sys::SPA_PARAM_LATENCY_maxRate && p.value == Value::Int(1920)));
    }

    #[test]
    fn silence_patterns() {
        let mut b = [1u8; 7];
        fill_silence(&mut b, PcmFormat::U16Le);
        assert_eq!(b, [0, 0x80, 0, 0x80, 0, 0x80, 0]);
        fill_silence(&mut b, PcmFormat::S32Le);
        assert_eq!(b, [0; 7]);
        fill_silence(&mut b, PcmFormat::MuLaw);
        assert_eq!(b, [0xff; 7]);
    }

    #[test]
    fn volume_props_parse() {
        let pod = volume_pod(&[0.5, 0.25], true).expect("pod");
        let (v, m) = parse_volume(pod.pod().expect("pod")).expect("volume");
        assert_eq!(v, Some(vec![0.5, 0.25]));
        assert_eq!(m, Some(true));
        // A format pod carries no volume.
        let f = enum_formats(&hw(&[PcmFormat::S16Le], &[48000], 2, 2), 48000);
        assert_eq!(parse_volume(f[0].pod().expect("pod")), None);
        // Only mute.
        let obj = Object {
            type_: spa_sys::SPA_TYPE_OBJECT_Props,
            id: spa_sys::SPA_PARAM_Props,
            properties: vec![prop(spa_sys::SPA_PROP_mute, Value::Bool(false))],
        };
        let only = PodBytes::serialize(&Value::Object(obj)).expect("pod");
        assert_eq!(
            parse_volume(only.pod().expect("pod")),
            Some((None, Some(false)))
        );
    }
}
