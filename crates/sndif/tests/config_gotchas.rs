//! The string-format gotchas of sndif.md §1.5 and §7 items 11–14.

use sndif::config::{parse_card, CardConfig, ConfigError, MapSource, StreamKind, WarningKind};
use sndif::{FormatSet, PcmFormat};

fn parse(pairs: &[(&str, &str)]) -> CardConfig {
    parse_card(&MapSource::from_pairs(pairs)).unwrap()
}

fn single_stream(key: &str, value: &str) -> CardConfig {
    let key = format!("0/0/{key}");
    parse(&[("0/0/type", "p"), (key.as_str(), value)])
}

fn formats_of(card: &CardConfig) -> FormatSet {
    card.streams()
        .next()
        .unwrap()
        .config
        .as_ref()
        .unwrap()
        .hw
        .formats
}

fn rates_of(card: &CardConfig) -> Vec<u32> {
    card.streams()
        .next()
        .unwrap()
        .config
        .as_ref()
        .unwrap()
        .hw
        .rates
        .clone()
}

/// libxl writes `f32_le`/`f64_be`, sndif.h says `float_le`/`float64_be`: both are accepted.
#[test]
fn both_float_spellings_are_accepted() {
    let libxl = single_stream("sample-formats", "f32_le,f32_be,f64_le,f64_be");
    let header = single_stream("sample-formats", "float_le,float_be,float64_le,float64_be");
    let expected: FormatSet = [
        PcmFormat::F32Le,
        PcmFormat::F32Be,
        PcmFormat::F64Le,
        PcmFormat::F64Be,
    ]
    .into_iter()
    .collect();
    assert_eq!(formats_of(&libxl), expected);
    assert_eq!(formats_of(&header), expected);
    assert!(libxl.warnings.is_empty() && header.warnings.is_empty());
}

#[test]
fn format_names_are_case_insensitive() {
    let card = single_stream("sample-formats", "S16_LE,Float_LE,MU_LAW");
    let expected: FormatSet = [PcmFormat::S16Le, PcmFormat::F32Le, PcmFormat::MuLaw]
        .into_iter()
        .collect();
    assert_eq!(formats_of(&card), expected);
    assert!(card.warnings.is_empty());
}

/// The docs write `type=P`; snd_be compares case-sensitively but we follow Linux.
#[test]
fn stream_type_is_case_insensitive_and_trimmed() {
    for (value, kind) in [
        ("p", StreamKind::Playback),
        ("P", StreamKind::Playback),
        (" p\n", StreamKind::Playback),
        ("c", StreamKind::Capture),
        ("C", StreamKind::Capture),
        ("\tC ", StreamKind::Capture),
    ] {
        let card = parse(&[("0/0/type", value)]);
        let cfg = card.streams().next().unwrap().config.as_ref().unwrap();
        assert_eq!(cfg.kind, kind, "type {value:?}");
    }
}

/// `;` is the xl separator and the pre-upstream xenstore separator; Linux does not trim.
#[test]
fn lists_accept_semicolons_whitespace_and_empty_items() {
    for value in [
        "44100,48000",
        "44100;48000",
        "48000, 44100",
        " 44100 ;48000 ",
        ",44100,,48000,",
        "48000;44100,48000",
    ] {
        let card = single_stream("sample-rates", value);
        assert_eq!(rates_of(&card), [44100, 48000], "rates {value:?}");
        assert!(card.warnings.is_empty(), "{value:?}: {:?}", card.warnings);
    }
    let card = single_stream("sample-formats", "s16_le; float_le ,,");
    let expected: FormatSet = [PcmFormat::S16Le, PcmFormat::F32Le].into_iter().collect();
    assert_eq!(formats_of(&card), expected);
}

/// Any rate in 1..=768000 is accepted, not only Linux's twelve.
#[test]
fn rates_beyond_the_linux_table_are_accepted() {
    let card = single_stream("sample-rates", "1,24000,88200,352800,768000");
    assert_eq!(rates_of(&card), [1, 24000, 88200, 352800, 768000]);
    assert!(card.warnings.is_empty());
}

/// The backend's own syntax (`pulse<...>`, `alsa<hw:0;0>`) must survive untouched.
#[test]
fn unique_id_is_kept_verbatim_and_never_interpreted() {
    for id in [
        "pulse",
        "alsa<hw:0;0>",
        "pulse<sink>media.role:navi",
        " spaced id ",
        "",
        "0",
        "a,b;c",
        "ünïcödé",
    ] {
        let card = single_stream("unique-id", id);
        let cfg = card.streams().next().unwrap().config.as_ref().unwrap();
        assert_eq!(cfg.unique_id.as_deref(), Some(id));
        assert!(card.warnings.is_empty());
    }
    // Optional for the frontend.
    let card = parse(&[("0/0/type", "p")]);
    assert_eq!(
        card.streams()
            .next()
            .unwrap()
            .config
            .as_ref()
            .unwrap()
            .unique_id,
        None
    );
}

/// Linux ignores the card names; we keep them for PipeWire node descriptions (§7 item 14).
#[test]
fn card_and_device_names_are_read_and_trimmed() {
    let card = parse(&[
        ("short-name", " Main "),
        ("long-name", "Xen vsnd – Küche"),
        ("0/name", "   "),
        ("0/0/type", "p"),
        ("1/name", "voice"),
        ("1/0/type", "p"),
    ]);
    assert_eq!(card.short_name.as_deref(), Some("Main"));
    assert_eq!(card.long_name.as_deref(), Some("Xen vsnd – Küche"));
    assert_eq!(card.devices[0].name, None);
    assert_eq!(card.devices[1].name.as_deref(), Some("voice"));
}

/// xl.cfg(5)'s example writes `id=` for streams; the key is `unique-id`. A stray `id` node is an
/// unknown node, not a unique id.
#[test]
fn man_page_id_key_is_not_unique_id() {
    let card = single_stream("id", "0");
    let cfg = card.streams().next().unwrap().config.as_ref().unwrap();
    assert_eq!(cfg.unique_id, None);
    assert_eq!(card.warnings.len(), 1);
    assert_eq!(card.warnings[0].path, "0/0/id");
    assert_eq!(card.warnings[0].kind, WarningKind::UnknownNode);
}

/// The pre-upstream drafts' `req-` prefix never made it into the header.
#[test]
fn draft_transport_keys_are_unknown_nodes() {
    let card = parse(&[
        ("0/0/type", "p"),
        ("0/0/req-ring-ref", "8"),
        ("0/0/req-event-channel", "8"),
    ]);
    let paths: Vec<&str> = card.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, ["0/0/req-event-channel", "0/0/req-ring-ref"]);
}

/// snd_be treats anything but `c` as playback; we refuse it instead of guessing.
#[test]
fn words_for_the_type_are_refused() {
    let card = parse(&[("0/0/type", "playback"), ("0/1/type", "c")]);
    let err = card.stream(0, 0).unwrap().config.clone().unwrap_err();
    assert!(
        matches!(err, ConfigError::Invalid { ref path, ref value, .. }
        if path == "0/0/type" && value == "playback")
    );
    assert!(card.stream(0, 1).unwrap().config.is_ok());
}
