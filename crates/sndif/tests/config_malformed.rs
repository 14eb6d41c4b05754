//! Every malformed case gives an error or a warning that names the node.

use sndif::config::{
    parse_card, CardConfig, ConfigError, ConfigWarning, MapSource, PcmHw, SourceOp, WarningKind,
    BUILT_IN, MAX_BUFFER_SIZE, MIN_BUFFER_SIZE,
};
use sndif::{FormatSet, PcmFormat};

fn parse(pairs: &[(&str, &str)]) -> CardConfig {
    parse_card(&MapSource::from_pairs(pairs)).unwrap()
}

fn warning(path: &str, value: &str, kind: WarningKind) -> ConfigWarning {
    ConfigWarning {
        path: path.into(),
        value: value.into(),
        kind,
    }
}

fn hw(card: &CardConfig, device: u32, index: u32) -> PcmHw {
    card.stream(device, index)
        .unwrap()
        .config
        .clone()
        .unwrap()
        .hw
}

fn err(card: &CardConfig, device: u32, index: u32) -> ConfigError {
    card.stream(device, index)
        .unwrap()
        .config
        .clone()
        .unwrap_err()
}

// ---- type ----

#[test]
fn missing_type_fails_that_stream_only() {
    let card = parse(&[("0/0/type", "p"), ("0/1/unique-id", "x"), ("0/2/type", "c")]);
    let e = err(&card, 0, 1);
    assert_eq!(
        e,
        ConfigError::Missing {
            path: "0/1/type".into()
        }
    );
    assert_eq!(e.to_string(), "0/1/type: missing");
    assert!(card.stream(0, 0).unwrap().config.is_ok());
    assert!(card.stream(0, 2).unwrap().config.is_ok());
    // The broken stream still has its entry, so the engine can publish its transport keys.
    assert_eq!(card.streams().count(), 3);
    assert_eq!(card.stream(0, 1).unwrap().path, "0/1");
}

#[test]
fn invalid_type_names_path_and_value() {
    for bad in ["", "x", "pc", "1", "playback", "ρ"] {
        let card = parse(&[("0/0/type", bad), ("0/1/type", "p")]);
        let e = err(&card, 0, 0);
        assert_eq!(e.path(), "0/0/type");
        assert!(
            matches!(&e, ConfigError::Invalid { value, .. } if value == bad),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.starts_with("0/0/type: invalid value "), "{msg}");
        assert!(msg.contains("\"p\""), "{msg}");
    }
}

// ---- formats ----

#[test]
fn unknown_and_compressed_formats_are_dropped_with_warnings() {
    let card = parse(&[
        ("0/0/type", "p"),
        ("0/0/sample-formats", "s16_le,s16le,GSM,float_le,pcm,mpeg"),
    ]);
    let expected: FormatSet = [PcmFormat::S16Le, PcmFormat::F32Le].into_iter().collect();
    assert_eq!(hw(&card, 0, 0).formats, expected);
    let p = "0/0/sample-formats";
    assert_eq!(
        card.warnings,
        [
            warning(p, "s16le", WarningKind::UnknownFormat),
            warning(p, "GSM", WarningKind::UnsupportedFormat),
            warning(p, "pcm", WarningKind::UnknownFormat),
            warning(p, "mpeg", WarningKind::UnsupportedFormat),
        ]
    );
    assert_eq!(
        card.warnings[0].to_string(),
        "0/0/sample-formats: \"s16le\": unknown sample format, dropped"
    );
}

#[test]
fn only_unknown_formats_fall_back_to_the_parent() {
    let card = parse(&[("sample-formats", "bogus"), ("0/0/type", "p")]);
    assert_eq!(hw(&card, 0, 0).formats, PcmHw::default().formats);
    assert_eq!(
        card.warnings,
        [
            warning("sample-formats", "bogus", WarningKind::UnknownFormat),
            warning("sample-formats", "bogus", WarningKind::EmptyList),
        ]
    );
}

// ---- rates ----

#[test]
fn invalid_rates_are_dropped_with_warnings() {
    let card = parse(&[
        ("0/0/type", "p"),
        (
            "0/0/sample-rates",
            "0,48000,768001,-44100,44.1k,0x1F40,99999999999999999999999,768000,+8000",
        ),
    ]);
    assert_eq!(hw(&card, 0, 0).rates, [48000, 768000]);
    let dropped: Vec<&str> = card
        .warnings
        .iter()
        .map(|w| {
            assert_eq!(w.path, "0/0/sample-rates");
            assert_eq!(w.kind, WarningKind::InvalidRate);
            w.value.as_str()
        })
        .collect();
    assert_eq!(
        dropped,
        [
            "0",
            "768001",
            "-44100",
            "44.1k",
            "0x1F40",
            "99999999999999999999999",
            "+8000"
        ]
    );
}

// ---- channels ----

#[test]
fn unparsable_channels_warn_and_inherit() {
    let card = parse(&[
        ("channels-max", "6"),
        ("0/0/type", "p"),
        ("0/0/channels-min", "-1"),
        ("0/0/channels-max", "two"),
    ]);
    let s = hw(&card, 0, 0);
    assert_eq!((s.channels_min, s.channels_max), (1, 6));
    assert_eq!(
        card.warnings,
        [
            warning("0/0/channels-min", "-1", WarningKind::Unparsable),
            warning("0/0/channels-max", "two", WarningKind::Unparsable),
        ]
    );
}

#[test]
fn channels_above_255_are_errors() {
    for bad in ["256", "1000", "99999999999999999999999999"] {
        let card = parse(&[
            ("0/0/type", "p"),
            ("0/0/channels-max", bad),
            ("0/1/type", "p"),
            ("0/1/channels-max", "255"),
        ]);
        let e = err(&card, 0, 0);
        assert!(
            matches!(&e, ConfigError::Invalid { path, value, .. }
                if path == "0/0/channels-max" && value == bad),
            "{e:?}"
        );
        assert!(e.to_string().contains("above 255"), "{e}");
        assert_eq!(hw(&card, 0, 1).channels_max, 255);
    }
}

#[test]
fn an_invalid_upper_level_value_fails_only_streams_that_use_it() {
    let card = parse(&[
        ("channels-min", "300"),
        ("0/0/type", "p"),
        ("0/1/type", "p"),
        ("0/1/channels-min", "1"),
        ("1/channels-min", "2"),
        ("1/0/type", "c"),
    ]);
    assert_eq!(err(&card, 0, 0).path(), "channels-min");
    assert_eq!(hw(&card, 0, 1).channels_min, 1);
    assert_eq!(hw(&card, 1, 0).channels_min, 2);
}

#[test]
fn min_above_max_at_the_stream_is_a_stream_error() {
    let card = parse(&[
        ("0/0/type", "p"),
        ("0/0/channels-min", "4"),
        ("0/0/channels-max", "3"),
        ("0/1/type", "c"),
    ]);
    let e = err(&card, 0, 0);
    assert_eq!(
        e,
        ConfigError::ChannelRange {
            path: "0/0/channels-min".into(),
            min: 4,
            min_from: "0/0/channels-min".into(),
            max: 3,
            max_from: "0/0/channels-max".into(),
        }
    );
    assert_eq!(
        e.to_string(),
        "0/0/channels-min: empty channel range: channels-min 4 (from 0/0/channels-min) > \
         channels-max 3 (from 0/0/channels-max)"
    );
    assert!(card.stream(0, 1).unwrap().config.is_ok());
}

#[test]
fn min_above_max_at_the_card_fails_every_stream_that_inherits_it() {
    let card = parse(&[
        ("channels-min", "6"),
        ("channels-max", "2"),
        ("0/0/type", "p"),
        ("0/1/type", "c"),
        ("0/1/channels-min", "1"),
    ]);
    let e = err(&card, 0, 0);
    assert!(
        matches!(&e, ConfigError::ChannelRange { min: 6, max: 2, min_from, max_from, .. }
        if min_from == "channels-min" && max_from == "channels-max")
    );
    assert_eq!(e.path(), "channels-min");
    assert_eq!(hw(&card, 0, 1).channels_min, 1);
}

#[test]
fn min_above_the_built_in_max() {
    let card = parse(&[("0/channels-min", "3"), ("0/0/type", "p")]);
    let e = err(&card, 0, 0);
    assert!(
        matches!(&e, ConfigError::ChannelRange { min: 3, max: 2, max_from, .. }
        if max_from == BUILT_IN)
    );
    assert_eq!(e.path(), "0/channels-min");
}

// ---- buffer-size ----

#[test]
fn buffer_size_bounds_and_fallbacks() {
    let cases: &[(&str, u32, Option<WarningKind>)] = &[
        ("0", 32768, None),
        ("4096", 4096, None),
        ("1048576", 1048576, None),
        (" 65536 ", 65536, None),
        ("abc", 32768, Some(WarningKind::Unparsable)),
        ("-4096", 32768, Some(WarningKind::Unparsable)),
        ("", 32768, Some(WarningKind::Unparsable)),
        (
            "1",
            4096,
            Some(WarningKind::BufferRaised {
                to: MIN_BUFFER_SIZE,
            }),
        ),
        (
            "4095",
            4096,
            Some(WarningKind::BufferRaised {
                to: MIN_BUFFER_SIZE,
            }),
        ),
        (
            "1048577",
            MAX_BUFFER_SIZE,
            Some(WarningKind::BufferClamped {
                to: MAX_BUFFER_SIZE,
            }),
        ),
        (
            "4294967296",
            MAX_BUFFER_SIZE,
            Some(WarningKind::BufferClamped {
                to: MAX_BUFFER_SIZE,
            }),
        ),
        (
            "999999999999999999999999999999",
            MAX_BUFFER_SIZE,
            Some(WarningKind::BufferClamped {
                to: MAX_BUFFER_SIZE,
            }),
        ),
    ];
    for (value, expected, kind) in cases {
        let card = parse(&[
            ("buffer-size", "32768"),
            ("0/0/type", "p"),
            ("0/0/buffer-size", value),
        ]);
        assert_eq!(
            hw(&card, 0, 0).buffer_size,
            *expected,
            "buffer-size {value:?}"
        );
        let expected_warnings: Vec<ConfigWarning> = kind
            .iter()
            .map(|k| warning("0/0/buffer-size", value, *k))
            .collect();
        assert_eq!(card.warnings, expected_warnings, "buffer-size {value:?}");
    }
}

#[test]
fn buffer_warnings_say_what_was_used() {
    let card = parse(&[("buffer-size", "100"), ("0/0/type", "p")]);
    assert_eq!(
        card.warnings[0].to_string(),
        "buffer-size: \"100\": below the minimum, raised to 4096"
    );
}

// ---- card shape ----

#[test]
fn a_card_without_device_0_is_an_error() {
    let e = parse_card(&MapSource::new()).unwrap_err();
    assert_eq!(
        e,
        ConfigError::NoDevice {
            path: "0".into(),
            strays: vec![]
        }
    );
    let src = MapSource::from_pairs(&[
        ("short-name", "x"),
        ("state", "1"),
        ("1/0/type", "p"),
        ("2/0/type", "p"),
    ]);
    let e = parse_card(&src).unwrap_err();
    assert_eq!(
        e,
        ConfigError::NoDevice {
            path: "0".into(),
            strays: vec!["1".into(), "2".into()]
        }
    );
    assert_eq!(
        e.to_string(),
        "0: missing: a vsnd card needs PCM device 0 (ignored: 1, 2)"
    );
}

#[test]
fn a_device_without_streams_is_kept_with_a_warning() {
    let card = parse(&[("0/name", "empty"), ("1/0/type", "p")]);
    assert_eq!(card.devices.len(), 2);
    assert!(card.devices[0].streams.is_empty());
    assert_eq!(card.devices[0].name.as_deref(), Some("empty"));
    assert_eq!(
        card.warnings,
        [warning("0/0", "", WarningKind::DeviceWithoutStreams)]
    );
    assert_eq!(
        card.warnings[0].to_string(),
        "0/0: PCM device has no stream 0"
    );
    // Global order skips the empty device.
    assert_eq!(card.streams().next().unwrap().path, "1/0");
}

#[test]
fn a_card_without_any_stream_is_an_error() {
    let e = parse_card(&MapSource::from_pairs(&[("0/name", "a"), ("1/name", "b")])).unwrap_err();
    assert_eq!(e, ConfigError::NoStream { path: "0/0".into() });
}

#[test]
fn nodes_outside_the_contiguous_runs_are_named() {
    let card = parse(&[
        ("0/0/type", "p"),
        ("0/2/type", "p"),  // 0/1 missing
        ("0/01/type", "p"), // not canonical
        ("2/0/type", "p"),  // device 1 missing
        ("foo/0/type", "p"),
        ("bar", "1"),
        ("0/extra", "1"),
        ("0/0/3/type", "p"), // streams have no index children
    ]);
    assert_eq!(card.devices.len(), 1);
    assert_eq!(card.devices[0].streams.len(), 1);
    assert_eq!(
        card.warnings,
        [
            warning("2", "", WarningKind::NonContiguousIndex { run: 1 }),
            warning("bar", "", WarningKind::UnknownNode),
            warning("foo", "", WarningKind::UnknownNode),
            warning("0/01", "", WarningKind::NonContiguousIndex { run: 1 }),
            warning("0/2", "", WarningKind::NonContiguousIndex { run: 1 }),
            warning("0/extra", "", WarningKind::UnknownNode),
            warning("0/0/3", "", WarningKind::UnknownNode),
        ]
    );
    assert_eq!(
        card.warnings[0].to_string(),
        "2: index outside the contiguous run (enumeration stops at the first missing index, 1), \
         ignored"
    );
}

#[test]
fn protocol_keys_are_not_warned_about() {
    let card = parse(&[
        ("backend", "/local/domain/0/backend/vsnd/1/0"),
        ("backend-id", "0"),
        ("state", "3"),
        ("version", "2"),
        ("0/0/type", "p"),
        ("0/0/ring-ref", "8"),
        ("0/0/event-channel", "9"),
        ("0/0/evt-ring-ref", "10"),
        ("0/0/evt-event-channel", "11"),
    ]);
    assert!(card.warnings.is_empty(), "{:?}", card.warnings);
}

// ---- source failures ----

#[test]
fn source_failures_fail_the_card_and_name_the_node() {
    let pairs = [("short-name", "x"), ("0/0/type", "p"), ("0/1/type", "c")];
    let cases = [
        ("", SourceOp::List),
        ("short-name", SourceOp::Read),
        ("sample-rates", SourceOp::Read),
        ("0", SourceOp::List),
        ("0/1", SourceOp::List),
        ("0/1/type", SourceOp::Read),
        ("0/1/buffer-size", SourceOp::Read),
    ];
    for (path, op) in cases {
        let mut src = MapSource::from_pairs(&pairs);
        src.fail_at(path);
        let e = parse_card(&src).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Source { op: o, path: p, .. } if *o == op && p == path),
            "{path}: {e:?}"
        );
        assert_eq!(e.path(), path);
        let cause = std::error::Error::source(&e).map(|c| c.to_string());
        assert!(cause.unwrap_or_default().contains("injected"), "{e}");
    }
}

#[test]
fn values_in_messages_are_cut_short() {
    let long = "x".repeat(10_000);
    let card = parse(&[("0/0/type", long.as_str())]);
    let msg = err(&card, 0, 0).to_string();
    assert!(msg.len() < 300, "{} bytes", msg.len());
    assert!(msg.contains("(10000 bytes)"), "{msg}");
}
