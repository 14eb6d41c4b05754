//! Node identity: stable names, human descriptions and the property list of a node.
//!
//! Names are derived only from things that survive a guest reboot — the card's dev-id, the PCM
//! device and stream indices — never from the guest's domain id (which changes), so WirePlumber
//! restores volumes and default-device choices across restarts.

use sndif::config::StreamKind;

use crate::args::ModuleArgs;
use crate::format;
use crate::port::{CardInfo, PortInfo};

/// `<prefix>.card<dev-id>.dev<device>.<playback|capture><index>`.
pub fn node_name(prefix: &str, dev_id: u32, device: u32, kind: StreamKind, index: u32) -> String {
    format!("{prefix}.card{dev_id}.dev{device}.{kind}{index}")
}

/// What the user sees: the PCM device's name, else the card's short name, else `card <dev-id>`.
fn display_name(card: &CardInfo, port: &PortInfo) -> String {
    port.device_name
        .clone()
        .or_else(|| card.short_name.clone())
        .unwrap_or_else(|| format!("card {}", card.dev_id))
}

/// `Xen sound: Main (playback)`; a stream index other than 0 is appended (`playback 1`).
pub fn description(card: &CardInfo, port: &PortInfo) -> String {
    let name = display_name(card, port);
    if port.index == 0 {
        format!("Xen sound: {name} ({})", port.kind)
    } else {
        format!("Xen sound: {name} ({} {})", port.kind, port.index)
    }
}

/// The short name shown where space is scarce.
pub fn nick(card: &CardInfo, port: &PortInfo) -> String {
    display_name(card, port)
}

/// `Audio/Sink` for playback, `Audio/Source` for capture.
pub fn media_class(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Playback => "Audio/Sink",
        StreamKind::Capture => "Audio/Source",
    }
}

/// Every property of the node's stream. `graph_rate` picks the default rate.
pub fn node_properties(
    args: &ModuleArgs,
    card: &CardInfo,
    port: &PortInfo,
    graph_rate: u32,
) -> Vec<(String, String)> {
    let name = node_name(
        &args.prefix,
        card.dev_id,
        port.device,
        port.kind,
        port.index,
    );
    let mut p: Vec<(String, String)> = vec![
        ("node.name".into(), name.clone()),
        ("node.description".into(), description(card, port)),
        ("node.nick".into(), nick(card, port)),
        ("media.name".into(), name),
        ("media.class".into(), media_class(port.kind).into()),
        ("node.latency".into(), args.latency.to_string()),
        ("priority.driver".into(), args.priority_driver.to_string()),
        ("priority.session".into(), args.priority_session.to_string()),
        ("node.want-driver".into(), "true".into()),
        // The guest's sound hardware: Pulse clients see a HARDWARE sink/source.
        ("device.api".into(), "xen".into()),
        ("api.xen.domid".into(), card.domid.to_string()),
        ("api.xen.backend-id".into(), card.backend_id.to_string()),
        ("api.xen.device-path".into(), card.path.clone()),
        ("api.xen.card".into(), card.dev_id.to_string()),
        ("api.xen.pcm-device".into(), port.device.to_string()),
        ("api.xen.stream".into(), port.index.to_string()),
    ];
    if let Some(u) = &port.unique_id {
        p.push(("api.xen.unique-id".into(), u.clone()));
    }
    if let Some(n) = &card.long_name {
        p.push(("api.xen.card.long-name".into(), n.clone()));
    }
    if let Some(f) = format::offered_formats(&port.hw).first() {
        p.push(("audio.format".into(), format::spa_format_name(*f).into()));
    }
    if let Some(r) = format::preferred_rate(&port.hw, graph_rate) {
        p.push(("audio.rate".into(), r.to_string()));
    }
    let ch = format::preferred_channels(&port.hw);
    p.push(("audio.channels".into(), ch.to_string()));
    p.push(("audio.position".into(), format::position_names(ch)));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use sndif::config::PcmHw;

    fn card() -> CardInfo {
        CardInfo {
            dev_id: 0,
            domid: 7,
            backend_id: 0,
            path: "/local/domain/7/device/vsnd/0".into(),
            short_name: Some("VCard".into()),
            long_name: Some("Virtual sound card".into()),
        }
    }

    fn port(kind: StreamKind, device: u32, index: u32, name: Option<&str>) -> PortInfo {
        PortInfo {
            kind,
            device,
            index,
            device_name: name.map(Into::into),
            unique_id: Some("pulse:1".into()),
            hw: PcmHw::default(),
        }
    }

    #[test]
    fn names_are_stable_and_readable() {
        assert_eq!(
            node_name("xen_snd", 0, 0, StreamKind::Playback, 0),
            "xen_snd.card0.dev0.playback0"
        );
        assert_eq!(
            node_name("p", 3, 1, StreamKind::Capture, 2),
            "p.card3.dev1.capture2"
        );
        let c = card();
        assert_eq!(
            description(&c, &port(StreamKind::Playback, 0, 0, Some("Main"))),
            "Xen sound: Main (playback)"
        );
        assert_eq!(
            description(&c, &port(StreamKind::Capture, 0, 1, None)),
            "Xen sound: VCard (capture 1)"
        );
        let anon = CardInfo {
            short_name: None,
            ..c
        };
        assert_eq!(
            nick(&anon, &port(StreamKind::Capture, 0, 0, None)),
            "card 0"
        );
    }

    #[test]
    fn properties_carry_identity_and_audio_defaults() {
        let args = ModuleArgs::parse([("priority.session", "1200")], None).unwrap();
        let props = node_properties(
            &args,
            &card(),
            &port(StreamKind::Capture, 0, 1, Some("Mic")),
            48000,
        );
        let get = |k: &str| {
            props
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("node.name"), Some("xen_snd.card0.dev0.capture1"));
        assert_eq!(get("media.class"), Some("Audio/Source"));
        assert_eq!(get("node.description"), Some("Xen sound: Mic (capture 1)"));
        assert_eq!(get("node.latency"), Some("1024/48000"));
        assert_eq!(get("priority.session"), Some("1200"));
        assert_eq!(get("api.xen.domid"), Some("7"));
        assert_eq!(get("api.xen.unique-id"), Some("pulse:1"));
        assert_eq!(
            get("api.xen.device-path"),
            Some("/local/domain/7/device/vsnd/0")
        );
        assert_eq!(get("audio.format"), Some("S16LE"));
        assert_eq!(get("audio.rate"), Some("48000"));
        assert_eq!(get("audio.channels"), Some("2"));
        assert_eq!(get("audio.position"), Some("FL,FR"));
        assert_eq!(
            get("node.virtual"),
            None,
            "a PV card is hardware to its users"
        );
        assert_eq!(get("device.api"), Some("xen"));
        let mut keys: Vec<_> = props.iter().map(|(k, _)| k).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), props.len(), "no duplicate keys");
    }
}
