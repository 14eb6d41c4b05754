//! Real and documented xenstore trees parse to the expected card description.

use sndif::config::{
    parse_card, CardConfig, DeviceConfig, MapSource, PcmHw, StreamConfig, StreamEntry, StreamKind,
};
use sndif::{FormatSet, PcmFormat};

fn s16() -> FormatSet {
    [PcmFormat::S16Le].into_iter().collect()
}

/// sndif.md §1.6: what libxl + the Linux frontend produce for
/// `[ 'card, backend=0, buffer-size=65536, short-name=VCard, sample-rates=48000,
/// sample-formats=s16_le', 'pcm, name=dev1', 'stream, unique-id=pulse, type=P' ]`.
#[test]
fn sndif_md_example_1_6() {
    let src = MapSource::from_pairs(&[
        ("backend", "/local/domain/0/backend/vsnd/1/0"),
        ("backend-id", "0"),
        ("state", "4"),
        ("short-name", "VCard"),
        ("buffer-size", "65536"),
        ("sample-rates", "48000"),
        ("sample-formats", "s16_le"),
        ("0/name", "dev1"),
        ("0/0/unique-id", "pulse"),
        ("0/0/type", "p"),
        ("0/0/ring-ref", "321"),
        ("0/0/event-channel", "31"),
        ("0/0/evt-ring-ref", "1437"),
        ("0/0/evt-event-channel", "32"),
    ]);
    let card = parse_card(&src).unwrap();
    let expected = CardConfig {
        short_name: Some("VCard".into()),
        long_name: None,
        devices: vec![DeviceConfig {
            index: 0,
            name: Some("dev1".into()),
            streams: vec![StreamEntry {
                device: 0,
                index: 0,
                path: "0/0".into(),
                config: Ok(StreamConfig {
                    kind: StreamKind::Playback,
                    unique_id: Some("pulse".into()),
                    hw: PcmHw {
                        formats: s16(),
                        rates: vec![48000],
                        channels_min: 1,
                        channels_max: 2,
                        buffer_size: 65536,
                    },
                }),
            }],
        }],
        warnings: vec![],
    };
    assert_eq!(card, expected);
}

/// xen-testbed.md "`vsnd` in xl 4.17 and what it writes": the tree dumped from dom0 after the
/// kernel frontend connected (two streams, `;` in xl turned into `,` by libxl).
#[test]
fn xen_testbed_tree_from_xl_4_17() {
    let src = MapSource::from_pairs(&[
        ("backend", "/local/domain/0/backend/vsnd/1/0"),
        ("backend-id", "0"),
        ("state", "4"),
        ("long-name", "Xen vsnd test"),
        ("short-name", "Main"),
        ("sample-rates", "44100,48000"),
        ("sample-formats", "s16_le"),
        ("channels-min", "1"),
        ("channels-max", "2"),
        ("buffer-size", "65536"),
        ("0/name", "Main"),
        ("0/0/unique-id", "0"),
        ("0/0/type", "p"),
        ("0/0/ring-ref", "8"),
        ("0/0/event-channel", "8"),
        ("0/0/evt-ring-ref", "9"),
        ("0/0/evt-event-channel", "9"),
        ("0/1/unique-id", "1"),
        ("0/1/type", "c"),
        ("0/1/ring-ref", "10"),
        ("0/1/event-channel", "10"),
        ("0/1/evt-ring-ref", "11"),
        ("0/1/evt-event-channel", "11"),
    ]);
    let card = parse_card(&src).unwrap();
    let hw = PcmHw {
        formats: s16(),
        rates: vec![44100, 48000],
        channels_min: 1,
        channels_max: 2,
        buffer_size: 65536,
    };
    let stream = |index: u32, kind, id: &str| StreamEntry {
        device: 0,
        index,
        path: format!("0/{index}"),
        config: Ok(StreamConfig {
            kind,
            unique_id: Some(id.into()),
            hw: hw.clone(),
        }),
    };
    let expected = CardConfig {
        short_name: Some("Main".into()),
        long_name: Some("Xen vsnd test".into()),
        devices: vec![DeviceConfig {
            index: 0,
            name: Some("Main".into()),
            streams: vec![
                stream(0, StreamKind::Playback, "0"),
                stream(1, StreamKind::Capture, "1"),
            ],
        }],
        warnings: vec![],
    };
    assert_eq!(card, expected);
}

/// Before the frontend has published anything, the same tree without transport keys parses the
/// same way.
#[test]
fn tree_without_transport_keys_is_the_same_card() {
    let with = MapSource::from_pairs(&[
        ("0/0/type", "p"),
        ("0/0/ring-ref", "8"),
        ("0/0/event-channel", "8"),
    ]);
    let without = MapSource::from_pairs(&[("0/0/type", "p")]);
    assert_eq!(parse_card(&with).unwrap(), parse_card(&without).unwrap());
}

#[test]
fn two_devices_with_playback_and_capture() {
    let src = MapSource::from_pairs(&[
        ("short-name", "Two"),
        ("sample-formats", "s16_le,float_le"),
        ("sample-rates", "44100,48000"),
        ("0/name", "music"),
        ("0/0/type", "p"),
        ("0/0/unique-id", "pulse<sink>media.role:music"),
        ("0/1/type", "c"),
        ("0/1/unique-id", "pulse<source>"),
        ("0/1/channels-max", "1"),
        ("1/name", "voice"),
        ("1/sample-rates", "16000"),
        ("1/0/type", "p"),
        ("1/0/unique-id", "alsa<hw:0;0>"),
        ("1/1/type", "c"),
        ("1/1/unique-id", "alsa<hw:0;1>"),
        ("1/1/buffer-size", "16384"),
    ]);
    let card = parse_card(&src).unwrap();
    assert!(card.warnings.is_empty(), "{:?}", card.warnings);
    assert_eq!(card.devices.len(), 2);
    assert_eq!(card.devices[0].name.as_deref(), Some("music"));
    assert_eq!(card.devices[1].name.as_deref(), Some("voice"));

    // Card-global order: device 0's streams first.
    let order: Vec<(&str, StreamKind)> = card
        .streams()
        .map(|s| (s.path.as_str(), s.config.as_ref().unwrap().kind))
        .collect();
    assert_eq!(
        order,
        [
            ("0/0", StreamKind::Playback),
            ("0/1", StreamKind::Capture),
            ("1/0", StreamKind::Playback),
            ("1/1", StreamKind::Capture),
        ]
    );

    let cfg = |d, i| card.stream(d, i).unwrap().config.as_ref().unwrap();
    let both: FormatSet = [PcmFormat::S16Le, PcmFormat::F32Le].into_iter().collect();
    assert_eq!(cfg(0, 0).hw.formats, both);
    assert_eq!(cfg(0, 0).hw.rates, [44100, 48000]);
    assert_eq!(
        (cfg(0, 0).hw.channels_min, cfg(0, 0).hw.channels_max),
        (1, 2)
    );
    assert_eq!(
        (cfg(0, 1).hw.channels_min, cfg(0, 1).hw.channels_max),
        (1, 1)
    );
    assert_eq!(cfg(1, 0).hw.rates, [16000]);
    assert_eq!(cfg(1, 1).hw.rates, [16000]);
    assert_eq!(cfg(1, 0).hw.buffer_size, 65536);
    assert_eq!(cfg(1, 1).hw.buffer_size, 16384);
    assert_eq!(cfg(1, 0).unique_id.as_deref(), Some("alsa<hw:0;0>"));
    assert!(cfg(0, 0).hw.supports(PcmFormat::F32Le, 48000, 2));
    assert!(!cfg(0, 1).hw.supports(PcmFormat::F32Le, 48000, 2));
    assert_eq!(cfg(0, 0).hw.max_frame_bytes(), 8);
    assert!(card.stream(2, 0).is_none());
    assert!(card.stream(0, 2).is_none());
}

#[test]
fn minimal_card_gets_the_built_in_defaults() {
    let card = parse_card(&MapSource::from_pairs(&[("0/0/type", "c")])).unwrap();
    assert!(card.warnings.is_empty());
    assert_eq!(card.short_name, None);
    assert_eq!(card.devices[0].name, None);
    let cfg = card.streams().next().unwrap().config.clone().unwrap();
    assert_eq!(cfg.kind, StreamKind::Capture);
    assert_eq!(cfg.unique_id, None);
    assert_eq!(cfg.hw, PcmHw::default());
    assert_eq!(cfg.hw.formats, s16());
    assert_eq!(
        cfg.hw.rates,
        [8000, 11025, 16000, 22050, 32000, 44100, 48000]
    );
    assert_eq!((cfg.hw.channels_min, cfg.hw.channels_max), (1, 2));
    assert_eq!(cfg.hw.buffer_size, 65536);
}

/// The engine may hold its source as a trait object.
#[test]
fn parses_through_a_trait_object() {
    use sndif::config::{ConfigSource, MapSourceError};
    let src = MapSource::from_pairs(&[("0/0/type", "p")]);
    let dynamic: &dyn ConfigSource<Error = MapSourceError> = &src;
    assert_eq!(parse_card(dynamic).unwrap(), parse_card(&src).unwrap());
}
