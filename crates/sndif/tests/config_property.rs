//! Property test: over many generated trees, parsing never panics, is deterministic, and every
//! description it returns keeps the documented guarantees.

use sndif::config::{
    parse_card, CardConfig, ConfigError, ConfigWarning, MapSource, MAX_BUFFER_SIZE, MAX_RATE,
    MIN_BUFFER_SIZE,
};
use std::collections::BTreeSet;

/// xorshift64*: small, deterministic, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "sample-formats",
    "sample-rates",
    "channels-min",
    "channels-max",
    "buffer-size",
    "type",
    "unique-id",
    "name",
    "short-name",
    "long-name",
    "ring-ref",
    "state",
    "foo",
    "",
];

const VALUES: &[&str] = &[
    "",
    " ",
    "p",
    "c",
    "P",
    "C",
    " x ",
    "0",
    "1",
    "2",
    "8",
    "255",
    "256",
    "-1",
    "+3",
    "4095",
    "4096",
    "65536",
    "1048576",
    "1048577",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "48000",
    "44100;48000",
    "48000, 44100,,",
    "0,768000,768001",
    "s16_le",
    "f32_le,FLOAT_LE",
    "s16le",
    "gsm,mpeg",
    "u8;s24_be ; float64_le",
    ",;,",
    "ρ",
    "日本語",
    "é,ü",
    "\u{0}",
    "\u{feff}48000",
    "1e3",
    "0x10",
    "48000.0",
    "alsa<hw:0;0>",
];

const INDICES: &[&str] = &["0", "0", "0", "1", "1", "2", "3", "01", "x", "9"];

fn random_value(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => {
            // A long random list, possibly non-ASCII.
            let n = rng.below(200);
            (0..n)
                .map(|_| rng.pick(VALUES))
                .collect::<Vec<_>>()
                .join(if rng.chance(50) { "," } else { ";" })
        }
        1 => {
            // Arbitrary code points.
            let n = rng.below(40);
            (0..n)
                .filter_map(|_| char::from_u32((rng.next() % 0x11_0000) as u32))
                .collect()
        }
        2 => rng.next().to_string(),
        3 => "9".repeat(rng.below(5000)),
        _ => rng.pick(VALUES).to_owned(),
    }
}

fn random_tree(rng: &mut Rng) -> MapSource {
    let mut src = MapSource::new();
    let nodes = rng.below(40);
    for _ in 0..nodes {
        let depth = rng.below(4);
        let mut path: Vec<&str> = (0..depth).map(|_| rng.pick(INDICES)).collect();
        path.push(rng.pick(KEYS));
        let path = path.join("/");
        if path.is_empty() {
            continue;
        }
        src.insert(path, random_value(rng));
    }
    // Bias towards mostly-valid cards so the stream-level checks get exercised.
    if rng.chance(70) {
        src.insert("0/0/type", rng.pick(&["p", "c", "P", " c ", "x"]));
    }
    src
}

/// Every node a message may name: stored keys and the directories they imply.
fn known_paths(src: &MapSource) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for key in src.entries().keys() {
        let parts: Vec<&str> = key.split('/').collect();
        for n in 1..=parts.len() {
            paths.insert(parts[..n].join("/"));
        }
    }
    paths
}

fn check_error(e: &ConfigError, paths: &BTreeSet<String>) {
    let path = e.path();
    // A missing `type` or device/stream 0 names a node that is absent by definition.
    let absent_ok = matches!(
        e,
        ConfigError::Missing { .. } | ConfigError::NoDevice { .. } | ConfigError::NoStream { .. }
    );
    assert!(
        absent_ok || paths.contains(path),
        "error names unknown node {path:?}: {e}"
    );
    assert!(
        e.to_string().starts_with(&format!("{path}: ")) || path.is_empty(),
        "{e}"
    );
}

fn check_warning(w: &ConfigWarning, paths: &BTreeSet<String>) {
    let absent_ok = w.kind == sndif::config::WarningKind::DeviceWithoutStreams;
    assert!(
        absent_ok || paths.contains(&w.path),
        "warning names unknown node {:?}: {w}",
        w.path
    );
    assert!(w.to_string().starts_with(&format!("{}: ", w.path)), "{w}");
}

fn check_card(card: &CardConfig, paths: &BTreeSet<String>) {
    assert!(!card.devices.is_empty());
    assert!(card.streams().next().is_some());
    for (i, d) in card.devices.iter().enumerate() {
        assert_eq!(d.index as usize, i);
        for (j, s) in d.streams.iter().enumerate() {
            assert_eq!((s.device, s.index as usize), (d.index, j));
            assert_eq!(s.path, format!("{}/{}", d.index, j));
            match &s.config {
                Ok(cfg) => {
                    let hw = &cfg.hw;
                    assert!(!hw.formats.is_empty());
                    assert!(hw.formats.iter().all(|f| f.bytes_per_sample().is_some()));
                    assert!(!hw.rates.is_empty());
                    assert!(hw.rates.windows(2).all(|w| w[0] < w[1]), "{:?}", hw.rates);
                    assert!(hw.rates.iter().all(|r| (1..=MAX_RATE).contains(r)));
                    assert!(1 <= hw.channels_min && hw.channels_min <= hw.channels_max);
                    assert!((MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&hw.buffer_size));
                    assert!(hw.max_frame_bytes() > 0);
                    let f = hw.formats.iter().next().unwrap();
                    assert!(hw.supports(f, hw.rates[0], hw.channels_max));
                }
                Err(e) => check_error(e, paths),
            }
        }
    }
    for w in &card.warnings {
        check_warning(w, paths);
    }
}

#[test]
fn generated_trees_never_panic_and_keep_the_guarantees() {
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    let (mut ok, mut failed, mut stream_errors) = (0, 0, 0);
    for _ in 0..3000 {
        let src = random_tree(&mut rng);
        let paths = known_paths(&src);
        let first = parse_card(&src);
        // Deterministic.
        assert_eq!(first, parse_card(&src));
        match &first {
            Ok(card) => {
                ok += 1;
                stream_errors += card.streams().filter(|s| s.config.is_err()).count();
                check_card(card, &paths);
            }
            Err(e) => {
                failed += 1;
                check_error(e, &paths);
            }
        }
    }
    eprintln!("{ok} cards parsed, {failed} failed, {stream_errors} stream errors");
    // The generator must reach both outcomes, or this test proves little.
    assert!(ok > 300, "only {ok} cards parsed");
    assert!(failed > 100, "only {failed} cards failed");
    assert!(stream_errors > 100, "only {stream_errors} stream errors");
}

#[test]
fn huge_and_odd_values_everywhere_do_not_panic() {
    let huge = "9".repeat(100_000);
    let odd = "\u{10ffff}é\u{0};,".repeat(10_000);
    for value in [huge.as_str(), odd.as_str()] {
        let mut src = MapSource::from_pairs(&[("0/0/type", "p")]);
        for dir in ["", "0/", "0/0/"] {
            for key in [
                "sample-formats",
                "sample-rates",
                "channels-min",
                "channels-max",
                "buffer-size",
                "unique-id",
                "name",
                "short-name",
            ] {
                src.insert(format!("{dir}{key}"), value);
            }
        }
        let card = parse_card(&src).unwrap();
        check_card(&card, &known_paths(&src));
        for w in &card.warnings {
            assert!(w.to_string().len() < 400);
        }
    }
}
