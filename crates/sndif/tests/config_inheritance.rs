//! Inheritance card → device → stream: a lower level replaces the keys it defines.

use sndif::config::{parse_card, CardConfig, MapSource, PcmHw, WarningKind};
use sndif::{FormatSet, PcmFormat};

fn parse(pairs: &[(&str, &str)]) -> CardConfig {
    parse_card(&MapSource::from_pairs(pairs)).unwrap()
}

fn hw(card: &CardConfig, device: u32, index: u32) -> PcmHw {
    card.stream(device, index)
        .unwrap()
        .config
        .clone()
        .unwrap()
        .hw
}

fn formats(list: &[PcmFormat]) -> FormatSet {
    list.iter().copied().collect()
}

/// Two devices with two streams each; card-level keys from `extra`.
fn tree(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut pairs = vec![
        ("0/0/type", "p"),
        ("0/1/type", "c"),
        ("1/0/type", "p"),
        ("1/1/type", "c"),
    ];
    pairs.extend_from_slice(extra);
    pairs
}

#[test]
fn card_level_keys_reach_every_stream() {
    let card = parse(&tree(&[
        ("sample-formats", "s32_le"),
        ("sample-rates", "96000"),
        ("channels-min", "2"),
        ("channels-max", "8"),
        ("buffer-size", "131072"),
    ]));
    assert!(card.warnings.is_empty(), "{:?}", card.warnings);
    let expected = PcmHw {
        formats: formats(&[PcmFormat::S32Le]),
        rates: vec![96000],
        channels_min: 2,
        channels_max: 8,
        buffer_size: 131072,
    };
    assert_eq!(card.streams().count(), 4);
    for s in card.streams() {
        assert_eq!(s.config.as_ref().unwrap().hw, expected, "{}", s.path);
    }
}

#[test]
fn device_level_replaces_card_level_for_its_streams_only() {
    let card = parse(&tree(&[
        ("sample-formats", "s16_le,s32_le"),
        ("sample-rates", "44100,48000"),
        ("channels-max", "4"),
        ("buffer-size", "32768"),
        ("1/sample-formats", "float_le"),
        // Not a subset of the card's rates: replaced, not intersected (Linux behaviour).
        ("1/sample-rates", "8000"),
        ("1/channels-max", "6"),
        ("1/buffer-size", "8192"),
    ]));
    for i in 0..2 {
        let d0 = hw(&card, 0, i);
        assert_eq!(d0.formats, formats(&[PcmFormat::S16Le, PcmFormat::S32Le]));
        assert_eq!(d0.rates, [44100, 48000]);
        assert_eq!(d0.channels_max, 4);
        assert_eq!(d0.buffer_size, 32768);
        let d1 = hw(&card, 1, i);
        assert_eq!(d1.formats, formats(&[PcmFormat::F32Le]));
        assert_eq!(d1.rates, [8000]);
        assert_eq!(d1.channels_max, 6);
        assert_eq!(d1.buffer_size, 8192);
    }
}

#[test]
fn stream_level_replaces_device_level_for_that_stream_only() {
    let card = parse(&tree(&[
        ("0/sample-rates", "44100,48000"),
        ("0/sample-formats", "s16_le"),
        ("0/channels-min", "2"),
        ("0/buffer-size", "65536"),
        ("0/1/sample-rates", "16000,8000"),
        ("0/1/sample-formats", "u8"),
        ("0/1/channels-min", "1"),
        ("0/1/buffer-size", "4096"),
    ]));
    let s0 = hw(&card, 0, 0);
    let s1 = hw(&card, 0, 1);
    assert_eq!(s0.rates, [44100, 48000]);
    assert_eq!(s1.rates, [8000, 16000]);
    assert_eq!(s0.formats, formats(&[PcmFormat::S16Le]));
    assert_eq!(s1.formats, formats(&[PcmFormat::U8]));
    assert_eq!((s0.channels_min, s0.channels_max), (2, 2));
    assert_eq!((s1.channels_min, s1.channels_max), (1, 2));
    assert_eq!(s0.buffer_size, 65536);
    assert_eq!(s1.buffer_size, 4096);
    // Device 1 defines nothing: built-in defaults.
    assert_eq!(hw(&card, 1, 0), PcmHw::default());
}

#[test]
fn stream_level_replaces_card_level_directly() {
    let card = parse(&tree(&[
        ("sample-rates", "48000"),
        ("1/1/sample-rates", "192000"),
    ]));
    assert_eq!(hw(&card, 1, 0).rates, [48000]);
    assert_eq!(hw(&card, 1, 1).rates, [192000]);
}

#[test]
fn channel_bounds_inherit_independently() {
    let card = parse(&tree(&[
        ("channels-min", "2"),
        ("channels-max", "8"),
        ("0/channels-max", "4"),
        ("0/1/channels-min", "3"),
    ]));
    let s00 = hw(&card, 0, 0);
    let s01 = hw(&card, 0, 1);
    let s10 = hw(&card, 1, 0);
    assert_eq!((s00.channels_min, s00.channels_max), (2, 4));
    assert_eq!((s01.channels_min, s01.channels_max), (3, 4));
    assert_eq!((s10.channels_min, s10.channels_max), (2, 8));
}

#[test]
fn zero_channels_means_inherit() {
    let card = parse(&tree(&[
        ("channels-max", "6"),
        ("0/channels-max", "0"),
        ("0/0/channels-max", "0"),
        ("0/0/channels-min", "0"),
    ]));
    assert!(card.warnings.is_empty(), "{:?}", card.warnings);
    let s = hw(&card, 0, 0);
    assert_eq!((s.channels_min, s.channels_max), (1, 6));
}

#[test]
fn zero_buffer_size_means_inherit() {
    let card = parse(&tree(&[("buffer-size", "8192"), ("0/buffer-size", "0")]));
    assert!(card.warnings.is_empty(), "{:?}", card.warnings);
    assert_eq!(hw(&card, 0, 0).buffer_size, 8192);
}

#[test]
fn a_list_left_empty_inherits_the_parent_with_a_warning() {
    let card = parse(&tree(&[
        ("sample-rates", "44100"),
        ("sample-formats", "s24_le"),
        ("0/sample-rates", "fast, 0"),
        ("0/sample-formats", "s16le"),
        ("1/sample-rates", "8000"),
        ("1/0/sample-rates", ""),
        ("1/1/sample-formats", " , ;"),
    ]));
    assert_eq!(hw(&card, 0, 0).rates, [44100]);
    assert_eq!(hw(&card, 0, 0).formats, formats(&[PcmFormat::S24Le]));
    assert_eq!(hw(&card, 1, 0).rates, [8000]);
    assert_eq!(hw(&card, 1, 1).formats, formats(&[PcmFormat::S24Le]));
    let empties: Vec<(&str, &str)> = card
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::EmptyList)
        .map(|w| (w.path.as_str(), w.value.as_str()))
        .collect();
    assert_eq!(
        empties,
        [
            ("0/sample-formats", "s16le"),
            ("0/sample-rates", "fast, 0"),
            ("1/0/sample-rates", ""),
            ("1/1/sample-formats", " , ;"),
        ]
    );
}

#[test]
fn a_stream_error_does_not_leak_into_siblings_or_the_card() {
    let card = parse(&tree(&[
        ("sample-rates", "48000"),
        ("0/0/channels-min", "5"),
    ]));
    assert!(card.stream(0, 0).unwrap().config.is_err());
    assert_eq!(hw(&card, 0, 1).rates, [48000]);
    assert_eq!(hw(&card, 1, 0).rates, [48000]);
}
