//! The guest's vsnd cards as xenstore shows them (read-only), and choosing a card and stream.

use std::sync::Arc;

use sndif::config::{parse_card, CardConfig, ConfigError, ConfigSource, StreamKind};
use xen_access::{DomId, StoreError, XenStore};

use crate::args::Target;
use crate::error::CliError;

/// This domain's view of xenstore.
#[derive(Clone)]
pub struct Guest {
    /// The connection.
    pub store: Arc<dyn XenStore>,
    /// This domain's id.
    pub domid: DomId,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest").field("domid", &self.domid).finish()
    }
}

/// Reads the card configuration relative to the card directory.
struct Source<'a> {
    store: &'a dyn XenStore,
    dir: &'a str,
}

impl ConfigSource for Source<'_> {
    type Error = StoreError;

    fn read(&self, path: &str) -> Result<Option<String>, StoreError> {
        self.store.read(&join(self.dir, path))
    }

    fn list(&self, path: &str) -> Result<Vec<String>, StoreError> {
        self.store.directory(&join(self.dir, path))
    }
}

fn join(dir: &str, rel: &str) -> String {
    let rel = rel.trim_matches('/');
    if rel.is_empty() {
        dir.to_owned()
    } else {
        format!("{dir}/{rel}")
    }
}

fn store_err(e: StoreError) -> CliError {
    if e.is_access() {
        CliError::Permission(format!("{e}: this domain may not read it"))
    } else {
        CliError::Failed(e.to_string())
    }
}

impl Guest {
    /// Reads the own domain id.
    pub fn new(store: Arc<dyn XenStore>) -> Result<Guest, CliError> {
        let domid = store
            .own_domid()
            .map_err(|e| CliError::Failed(format!("reading this domain's id: {e}")))?;
        Ok(Guest { store, domid })
    }

    /// `/local/domain/<domid>/device/vsnd`.
    pub fn base(&self) -> String {
        format!("/local/domain/{}/device/vsnd", self.domid)
    }

    /// A card's frontend directory.
    pub fn card_dir(&self, card: u32) -> String {
        format!("{}/{card}", self.base())
    }

    /// The cards (numeric `<dev-id>`s below `device/vsnd`), ascending.
    pub fn card_ids(&self) -> Result<Vec<u32>, CliError> {
        let base = self.base();
        let names = self.store.directory(&base).map_err(store_err)?;
        let mut ids: Vec<u32> = names.iter().filter_map(|n| n.parse().ok()).collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The cards, or the "no vsnd device" error.
    pub fn require_cards(&self) -> Result<Vec<u32>, CliError> {
        let ids = self.card_ids()?;
        if ids.is_empty() {
            return Err(CliError::NoDevice(format!(
                "no vsnd device in this guest ({} is empty or absent): give the guest a sound \
                 card with vsnd = [...] in its xl.cfg",
                self.base()
            )));
        }
        Ok(ids)
    }

    /// The card's configuration.
    pub fn config(&self, card: u32) -> Result<CardConfig, ConfigError> {
        let dir = self.card_dir(card);
        parse_card(&Source {
            store: &*self.store,
            dir: &dir,
        })
    }
}

fn list(ids: &[u32]) -> String {
    ids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The card asked for, or the first one.
pub fn pick_card(ids: &[u32], wanted: Option<u32>) -> Result<u32, CliError> {
    match wanted {
        Some(c) if ids.contains(&c) => Ok(c),
        Some(c) => Err(CliError::NoDevice(format!(
            "no vsnd card {c} in this guest (cards: {})",
            list(ids)
        ))),
        None => ids
            .first()
            .copied()
            .ok_or_else(|| CliError::NoDevice("no vsnd card in this guest".into())),
    }
}

fn verb(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Playback => "play",
        StreamKind::Capture => "record",
    }
}

/// The stream `(device, index)` of `kind` that `target` names, or the first one of that kind
/// (within `target.device` if given).
pub fn pick_stream(
    config: &CardConfig,
    card: u32,
    target: &Target,
    kind: StreamKind,
) -> Result<(u32, u32), CliError> {
    let of_kind: Vec<String> = config
        .streams()
        .filter(|s| s.config.as_ref().is_ok_and(|c| c.kind == kind))
        .map(|s| s.path.clone())
        .collect();
    let alternatives = if of_kind.is_empty() {
        format!("card {card} has no usable {kind} stream")
    } else {
        format!("{kind} streams: {}", of_kind.join(", "))
    };
    if let Some(d) = target.device {
        if !config.devices.iter().any(|dev| dev.index == d) {
            let devs: Vec<u32> = config.devices.iter().map(|dev| dev.index).collect();
            return Err(CliError::NoDevice(format!(
                "card {card} has no PCM device {d} (devices: {})",
                list(&devs)
            )));
        }
    }
    if let Some(s) = target.stream {
        let d = target.device.unwrap_or(0);
        let entry = config.stream(d, s).ok_or_else(|| {
            CliError::NoDevice(format!(
                "card {card} has no stream {d}/{s} ({alternatives})"
            ))
        })?;
        return match &entry.config {
            Ok(c) if c.kind == kind => Ok((d, s)),
            Ok(c) => Err(CliError::NoDevice(format!(
                "card {card} stream {d}/{s} is a {} stream; {} needs a {kind} stream ({alternatives})",
                c.kind,
                verb(kind)
            ))),
            Err(e) => Err(CliError::NoDevice(format!(
                "card {card} stream {d}/{s} cannot be used: its configuration is invalid: {e}"
            ))),
        };
    }
    config
        .streams()
        .filter(|s| target.device.map_or(true, |d| s.device == d))
        .find(|s| s.config.as_ref().is_ok_and(|c| c.kind == kind))
        .map(|s| (s.device, s.index))
        .ok_or_else(|| {
            let scope = match target.device {
                Some(d) => format!("PCM device {d} of card {card}"),
                None => format!("card {card}"),
            };
            CliError::NoDevice(format!(
                "{scope} has no usable {kind} stream ({alternatives})"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sndif::config::MapSource;

    fn config() -> CardConfig {
        parse_card(&MapSource::from_pairs(&[
            ("0/0/type", "p"),
            ("0/1/type", "c"),
            ("1/0/type", "c"),
            ("1/1/type", "x"),
        ]))
        .expect("config")
    }

    fn t(device: Option<u32>, stream: Option<u32>) -> Target {
        Target {
            card: None,
            device,
            stream,
        }
    }

    #[test]
    fn picks_the_first_stream_of_the_kind() {
        let c = config();
        assert_eq!(
            pick_stream(&c, 0, &t(None, None), StreamKind::Playback).expect("p"),
            (0, 0)
        );
        assert_eq!(
            pick_stream(&c, 0, &t(None, None), StreamKind::Capture).expect("c"),
            (0, 1)
        );
        assert_eq!(
            pick_stream(&c, 0, &t(Some(1), None), StreamKind::Capture).expect("c"),
            (1, 0)
        );
        assert_eq!(
            pick_stream(&c, 0, &t(Some(1), Some(0)), StreamKind::Capture).expect("c"),
            (1, 0)
        );
    }

    #[test]
    fn explains_what_is_there_instead() {
        let c = config();
        let e = pick_stream(&c, 0, &t(None, Some(1)), StreamKind::Playback).expect_err("capture");
        assert_eq!(
            e.to_string(),
            "card 0 stream 0/1 is a capture stream; play needs a playback stream (playback streams: 0/0)"
        );
        let e = pick_stream(&c, 0, &t(Some(1), None), StreamKind::Playback).expect_err("none");
        assert!(
            e.to_string()
                .starts_with("PCM device 1 of card 0 has no usable playback stream"),
            "{e}"
        );
        let e = pick_stream(&c, 0, &t(Some(7), None), StreamKind::Playback).expect_err("dev");
        assert_eq!(e.to_string(), "card 0 has no PCM device 7 (devices: 0, 1)");
        let e = pick_stream(&c, 0, &t(Some(1), Some(1)), StreamKind::Capture).expect_err("bad");
        assert!(e.to_string().contains("configuration is invalid"), "{e}");
        let e = pick_stream(&c, 0, &t(None, Some(9)), StreamKind::Capture).expect_err("no");
        assert!(
            e.to_string()
                .starts_with("card 0 has no stream 0/9 (capture streams: 0/1, 1/0)"),
            "{e}"
        );
        assert!(matches!(e, CliError::NoDevice(_)));
    }

    #[test]
    fn picks_cards() {
        assert_eq!(pick_card(&[2, 5], None).expect("first"), 2);
        assert_eq!(pick_card(&[2, 5], Some(5)).expect("5"), 5);
        let e = pick_card(&[2, 5], Some(3)).expect_err("3");
        assert_eq!(e.to_string(), "no vsnd card 3 in this guest (cards: 2, 5)");
    }
}
