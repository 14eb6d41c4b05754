//! `xen-snd status`: the guest's vsnd cards as xenstore shows them, and with `--connect` what
//! the backend allows after a full handshake.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sndif::config::{keys, CardConfig, PcmHw, StreamKind};
use sndif::wire::{HwParam, Interval};
use xen_snd_engine::{QueryFallback, XenbusState};

use crate::args::StatusArgs;
use crate::cards::{pick_card, Guest};
use crate::env::Env;
use crate::error::CliError;
use crate::json::Json;
use crate::link::{Connected, Link};
use crate::sys::Signals;

/// A `state` node as read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StateView {
    Absent,
    State(XenbusState),
    Invalid(String),
    Unreadable(String),
}

impl StateView {
    fn text(&self) -> String {
        match self {
            StateView::Absent => "absent".into(),
            StateView::State(s) => s.to_string(),
            StateView::Invalid(v) => format!("invalid value {v:?}"),
            StateView::Unreadable(e) => format!("unreadable ({e})"),
        }
    }

    fn json(&self) -> Json {
        match self {
            StateView::State(s) => Json::object([
                ("value", Json::uint(s.code())),
                ("name", Json::Str(name_of(*s).into())),
            ]),
            StateView::Absent => Json::Null,
            StateView::Invalid(v) => Json::object([("invalid", Json::Str(v.clone()))]),
            StateView::Unreadable(e) => Json::object([("error", Json::Str(e.clone()))]),
        }
    }
}

fn name_of(s: XenbusState) -> &'static str {
    match s {
        XenbusState::Unknown => "Unknown",
        XenbusState::Initialising => "Initialising",
        XenbusState::InitWait => "InitWait",
        XenbusState::Initialised => "Initialised",
        XenbusState::Connected => "Connected",
        XenbusState::Closing => "Closing",
        XenbusState::Closed => "Closed",
        XenbusState::Reconfiguring => "Reconfiguring",
        XenbusState::Reconfigured => "Reconfigured",
    }
}

/// What `--connect` learnt about one stream.
#[derive(Debug, Clone)]
struct Negotiated {
    /// What is offered (xenstore ∩ backend answer, or xenstore alone).
    offered: PcmHw,
    /// The backend's HW_PARAM_QUERY answer.
    backend: Option<HwParam>,
    /// Why the answer was not used.
    fallback: Option<String>,
    /// Shared buffer allocated, bytes.
    capacity: u32,
}

#[derive(Debug, Clone)]
struct StreamView {
    device: u32,
    index: u32,
    config: Result<(StreamKind, Option<String>, PcmHw), String>,
    transport: Vec<(&'static str, Option<String>)>,
    negotiated: Option<Negotiated>,
}

#[derive(Debug, Clone)]
struct CardView {
    card: u32,
    path: String,
    backend_path: Option<String>,
    backend_id: Option<String>,
    backend_state: StateView,
    frontend_state: StateView,
    version: Option<String>,
    short_name: Option<String>,
    long_name: Option<String>,
    devices: Vec<(u32, Option<String>)>,
    streams: Vec<StreamView>,
    warnings: Vec<String>,
    config_error: Option<String>,
    /// `--connect`: the frontend state reached, or why connecting failed.
    connection: Option<Result<XenbusState, String>>,
}

const TRANSPORT: [&str; 4] = [
    keys::RING_REF,
    keys::EVENT_CHANNEL,
    keys::EVT_RING_REF,
    keys::EVT_EVENT_CHANNEL,
];

fn read_state(guest: &Guest, path: &str) -> StateView {
    match guest.store.read(path) {
        Ok(None) => StateView::Absent,
        Ok(Some(v)) => XenbusState::parse(&v).map_or(StateView::Invalid(v), StateView::State),
        Err(e) => StateView::Unreadable(e.to_string()),
    }
}

fn read_opt(guest: &Guest, path: &str) -> Option<String> {
    guest.store.read(path).ok().flatten()
}

fn view_card(guest: &Guest, card: u32) -> CardView {
    let path = guest.card_dir(card);
    let backend_path = read_opt(guest, &format!("{path}/backend"));
    let backend_state = match &backend_path {
        Some(be) => read_state(guest, &format!("{}/state", be.trim().trim_end_matches('/'))),
        None => StateView::Absent,
    };
    let mut v = CardView {
        card,
        backend_id: read_opt(guest, &format!("{path}/backend-id")),
        frontend_state: read_state(guest, &format!("{path}/state")),
        version: read_opt(guest, &format!("{path}/version")),
        backend_path,
        backend_state,
        short_name: None,
        long_name: None,
        devices: Vec::new(),
        streams: Vec::new(),
        warnings: Vec::new(),
        config_error: None,
        connection: None,
        path,
    };
    match guest.config(card) {
        Ok(cfg) => fill_config(guest, &mut v, &cfg),
        Err(e) => {
            v.config_error = Some(e.to_string());
            let name = |k: &str| {
                read_opt(guest, &format!("{}/{k}", v.path))
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
            };
            v.short_name = name(keys::SHORT_NAME);
            v.long_name = name(keys::LONG_NAME);
        }
    }
    v
}

fn fill_config(guest: &Guest, v: &mut CardView, cfg: &CardConfig) {
    v.short_name = cfg.short_name.clone();
    v.long_name = cfg.long_name.clone();
    v.devices = cfg
        .devices
        .iter()
        .map(|d| (d.index, d.name.clone()))
        .collect();
    v.warnings = cfg.warnings.iter().map(ToString::to_string).collect();
    for s in cfg.streams() {
        let transport = TRANSPORT
            .iter()
            .map(|k| (*k, read_opt(guest, &format!("{}/{}/{k}", v.path, s.path))))
            .collect();
        v.streams.push(StreamView {
            device: s.device,
            index: s.index,
            config: s
                .config
                .as_ref()
                .map(|c| (c.kind, c.unique_id.clone(), c.hw.clone()))
                .map_err(ToString::to_string),
            transport,
            negotiated: None,
        });
    }
}

fn fallback_text(f: &QueryFallback) -> String {
    match f {
        QueryFallback::Failed(e) => format!("HW_PARAM_QUERY failed: {e}"),
        QueryFallback::Empty(_) => {
            "the backend's HW_PARAM_QUERY answer has nothing in common with xenstore".into()
        }
    }
}

fn apply_connection(v: &mut CardView, c: &Connected) {
    v.connection = Some(Ok(c.frontend_state));
    for s in &c.streams {
        let id = s.id();
        let info = s.info();
        let fallback = c
            .fallbacks
            .iter()
            .find(|(sid, _)| sid.device == id.device && sid.stream == id.stream)
            .map(|(_, f)| fallback_text(f));
        if let Some(view) = v
            .streams
            .iter_mut()
            .find(|x| x.device == id.device && x.index == id.stream)
        {
            view.negotiated = Some(Negotiated {
                offered: info.hw.clone(),
                backend: info.backend_hw,
                fallback,
                capacity: info.capacity_bytes,
            });
        }
    }
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn interval(i: Interval) -> String {
    if i.min == i.max {
        i.min.to_string()
    } else {
        format!("{}-{}", i.min, i.max)
    }
}

fn hw_lines(out: &mut String, indent: &str, hw: &PcmHw) {
    let _ = writeln!(out, "{indent}formats   {}", join(hw.formats.iter()));
    let _ = writeln!(out, "{indent}rates     {} Hz", join(hw.rates.iter()));
    let _ = writeln!(
        out,
        "{indent}channels  {}",
        interval(Interval::new(
            u32::from(hw.channels_min),
            u32::from(hw.channels_max)
        ))
    );
    let _ = writeln!(out, "{indent}buffer    {} bytes", hw.buffer_size);
}

fn render_text(cards: &[CardView], connect: bool) -> String {
    let mut out = String::new();
    for (i, c) in cards.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let names = match (&c.short_name, &c.long_name) {
            (Some(s), Some(l)) => format!(": {s} ({l})"),
            (Some(s), None) | (None, Some(s)) => format!(": {s}"),
            (None, None) => String::new(),
        };
        let _ = writeln!(out, "card {}{names}", c.card);
        let _ = write!(
            out,
            "  frontend  {}  state {}",
            c.path,
            c.frontend_state.text()
        );
        if let Some(v) = &c.version {
            let _ = write!(out, "  version {v}");
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "  backend   domain {}  {}  state {}",
            c.backend_id.as_deref().unwrap_or("?"),
            c.backend_path.as_deref().unwrap_or("(no backend path)"),
            c.backend_state.text()
        );
        if !connect && c.frontend_state == StateView::State(XenbusState::Connected) {
            let _ = writeln!(
                out,
                "  note      the frontend is Connected: another frontend (the kernel's \
                 snd_xen_front, or a running xen-snd) owns this card"
            );
        }
        match &c.connection {
            Some(Ok(s)) => {
                let _ = writeln!(
                    out,
                    "  connected frontend state {s} (disconnected again on exit)"
                );
            }
            Some(Err(e)) => {
                let _ = writeln!(out, "  connect   failed: {e}");
            }
            None => {}
        }
        if let Some(e) = &c.config_error {
            let _ = writeln!(out, "  config    unusable: {e}");
        }
        for (d, name) in &c.devices {
            let _ = writeln!(
                out,
                "  device {d}{}",
                name.as_ref().map_or(String::new(), |n| format!(": {n}"))
            );
            for s in c.streams.iter().filter(|s| s.device == *d) {
                let _ = write!(out, "    stream {}/{}", s.device, s.index);
                match &s.config {
                    Ok((kind, uid, hw)) => {
                        let _ = write!(out, "  {kind}");
                        match uid {
                            Some(u) => {
                                let _ = writeln!(out, "  unique-id {u:?}");
                            }
                            None => out.push_str("  (no unique-id)\n"),
                        }
                        hw_lines(&mut out, "      ", hw);
                    }
                    Err(e) => {
                        let _ = writeln!(out, "  unusable: {e}");
                    }
                }
                let present: Vec<String> = s
                    .transport
                    .iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
                    .collect();
                if !present.is_empty() {
                    let _ = writeln!(out, "      transport {}", present.join(", "));
                }
                if let Some(n) = &s.negotiated {
                    match &n.backend {
                        Some(b) => {
                            let _ = writeln!(
                                out,
                                "      backend allows formats {}; rates {} Hz; channels {}; \
                                 buffer {} frames; period {} frames",
                                join(b.formats.iter()),
                                interval(b.rates),
                                interval(b.channels),
                                interval(b.buffer),
                                interval(b.period)
                            );
                        }
                        None => out.push_str("      backend allows (no HW_PARAM_QUERY answer)\n"),
                    }
                    if let Some(f) = &n.fallback {
                        let _ = writeln!(out, "      fallback  {f}");
                    }
                    let _ = writeln!(
                        out,
                        "      offered   formats {}; rates {} Hz; channels {}; buffer {} bytes",
                        join(n.offered.formats.iter()),
                        join(n.offered.rates.iter()),
                        interval(Interval::new(
                            u32::from(n.offered.channels_min),
                            u32::from(n.offered.channels_max)
                        )),
                        n.capacity
                    );
                }
            }
        }
        for w in &c.warnings {
            let _ = writeln!(out, "  warning   {w}");
        }
    }
    out
}

fn hw_json(hw: &PcmHw) -> Json {
    Json::object([
        (
            "formats",
            Json::Array(
                hw.formats
                    .iter()
                    .map(|f| Json::Str(f.to_string()))
                    .collect(),
            ),
        ),
        (
            "rates",
            Json::Array(hw.rates.iter().map(|r| Json::uint(*r)).collect()),
        ),
        ("channels_min", Json::uint(hw.channels_min)),
        ("channels_max", Json::uint(hw.channels_max)),
        ("buffer_size", Json::uint(hw.buffer_size)),
    ])
}

fn interval_json(i: Interval) -> Json {
    Json::object([("min", Json::uint(i.min)), ("max", Json::uint(i.max))])
}

fn render_json(domid: u16, cards: &[CardView]) -> Json {
    let cards = cards
        .iter()
        .map(|c| {
            let devices = c
                .devices
                .iter()
                .map(|(d, name)| {
                    let streams = c
                        .streams
                        .iter()
                        .filter(|s| s.device == *d)
                        .map(|s| {
                            let mut o = Json::object([
                                ("device", Json::uint(s.device)),
                                ("stream", Json::uint(s.index)),
                            ]);
                            match &s.config {
                                Ok((kind, uid, hw)) => {
                                    o.push("type", Json::Str(kind.to_string()));
                                    o.push("unique_id", Json::opt_str(uid.as_deref()));
                                    o.push("config", hw_json(hw));
                                    o.push("error", Json::Null);
                                }
                                Err(e) => {
                                    o.push("type", Json::Null);
                                    o.push("unique_id", Json::Null);
                                    o.push("config", Json::Null);
                                    o.push("error", Json::Str(e.clone()));
                                }
                            }
                            o.push(
                                "transport",
                                Json::Object(
                                    s.transport
                                        .iter()
                                        .map(|(k, v)| {
                                            ((*k).to_owned(), Json::opt_str(v.as_deref()))
                                        })
                                        .collect(),
                                ),
                            );
                            if let Some(n) = &s.negotiated {
                                o.push(
                                    "backend_allows",
                                    n.backend.map_or(Json::Null, |b| {
                                        Json::object([
                                            (
                                                "formats",
                                                Json::Array(
                                                    b.formats
                                                        .iter()
                                                        .map(|f| Json::Str(f.to_string()))
                                                        .collect(),
                                                ),
                                            ),
                                            ("rates", interval_json(b.rates)),
                                            ("channels", interval_json(b.channels)),
                                            ("buffer_frames", interval_json(b.buffer)),
                                            ("period_frames", interval_json(b.period)),
                                        ])
                                    }),
                                );
                                o.push("fallback", Json::opt_str(n.fallback.as_deref()));
                                let mut offered = hw_json(&n.offered);
                                offered.push("buffer_allocated", Json::uint(n.capacity));
                                o.push("offered", offered);
                            }
                            o
                        })
                        .collect();
                    Json::object([
                        ("index", Json::uint(*d)),
                        ("name", Json::opt_str(name.as_deref())),
                        ("streams", Json::Array(streams)),
                    ])
                })
                .collect();
            let mut o = Json::object([
                ("card", Json::uint(c.card)),
                ("path", Json::Str(c.path.clone())),
                ("short_name", Json::opt_str(c.short_name.as_deref())),
                ("long_name", Json::opt_str(c.long_name.as_deref())),
                (
                    "backend",
                    Json::object([
                        (
                            "domid",
                            c.backend_id
                                .as_deref()
                                .and_then(|d| d.trim().parse::<u16>().ok())
                                .map_or(Json::Null, Json::uint),
                        ),
                        ("path", Json::opt_str(c.backend_path.as_deref())),
                        ("state", c.backend_state.json()),
                    ]),
                ),
                (
                    "frontend",
                    Json::object([
                        ("state", c.frontend_state.json()),
                        ("version", Json::opt_str(c.version.as_deref())),
                    ]),
                ),
                ("config_error", Json::opt_str(c.config_error.as_deref())),
                ("devices", Json::Array(devices)),
                (
                    "warnings",
                    Json::Array(c.warnings.iter().map(|w| Json::Str(w.clone())).collect()),
                ),
            ]);
            if let Some(conn) = &c.connection {
                o.push(
                    "connect",
                    match conn {
                        Ok(s) => Json::object([
                            ("ok", Json::Bool(true)),
                            ("frontend_state", StateView::State(*s).json()),
                            ("error", Json::Null),
                        ]),
                        Err(e) => Json::object([
                            ("ok", Json::Bool(false)),
                            ("frontend_state", Json::Null),
                            ("error", Json::Str(e.clone())),
                        ]),
                    },
                );
            }
            o
        })
        .collect();
    Json::object([("domid", Json::uint(domid)), ("cards", Json::Array(cards))])
}

/// Runs `status`.
pub fn run(env: &Env, a: &StatusArgs, signals: &Signals) -> Result<(), CliError> {
    let (guest, services) = if a.connect {
        let services = env.services()?;
        (Guest::new(services.store.clone())?, Some(services))
    } else {
        (Guest::new(env.store()?)?, None)
    };
    let ids = guest.require_cards()?;
    let shown = match a.card {
        Some(c) => vec![pick_card(&ids, Some(c))?],
        None => ids,
    };
    let mut views: Vec<CardView> = shown.iter().map(|c| view_card(&guest, *c)).collect();
    let mut first_error = None;
    if let Some(services) = services {
        // Only cards with a usable configuration can connect.
        let wanted: Vec<u32> = views
            .iter()
            .filter(|v| v.config_error.is_none())
            .map(|v| v.card)
            .collect();
        let mut link = Link::start(services, guest.domid, &wanted)?;
        let outcome: BTreeMap<u32, Result<Connected, CliError>> =
            link.connect_all(&wanted, a.timeout, signals)?;
        // Read xenstore again while connected: states and transport keys as the handshake left
        // them.
        views = shown.iter().map(|c| view_card(&guest, *c)).collect();
        for (card, result) in outcome {
            let Some(v) = views.iter_mut().find(|v| v.card == card) else {
                continue;
            };
            match result {
                Ok(c) => apply_connection(v, &c),
                Err(e) => {
                    v.connection = Some(Err(e.to_string()));
                    first_error.get_or_insert(e);
                }
            }
        }
        // Dropping the streams and shutting down disconnects (frontend state 5, then 6).
        link.shutdown();
        if let Some(sig) = signals.received() {
            return Err(CliError::Interrupted(sig));
        }
    }
    if a.json {
        println!("{}", render_json(guest.domid, &views));
    } else {
        print!("{}", render_text(&views, a.connect));
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sndif::formats::PcmFormat;

    fn view() -> CardView {
        let hw = PcmHw {
            formats: [PcmFormat::S16Le].into_iter().collect(),
            rates: vec![48_000],
            channels_min: 2,
            channels_max: 2,
            buffer_size: 4096,
        };
        CardView {
            card: 3,
            path: "/local/domain/1/device/vsnd/3".into(),
            backend_path: Some("/local/domain/0/backend/vsnd/1/3".into()),
            backend_id: Some("0".into()),
            backend_state: StateView::State(XenbusState::InitWait),
            frontend_state: StateView::Invalid("x".into()),
            version: None,
            short_name: Some("S".into()),
            long_name: None,
            devices: vec![(0, None)],
            streams: vec![StreamView {
                device: 0,
                index: 0,
                config: Ok((StreamKind::Capture, None, hw)),
                transport: vec![("ring-ref", Some("8".into())), ("event-channel", None)],
                negotiated: None,
            }],
            warnings: vec!["w1".into()],
            config_error: None,
            connection: Some(Err("boom".into())),
        }
    }

    #[test]
    fn text_shows_every_part() {
        let t = render_text(&[view()], true);
        for want in [
            "card 3: S\n",
            "state invalid value \"x\"",
            "backend   domain 0  /local/domain/0/backend/vsnd/1/3  state InitWait (2)",
            "connect   failed: boom",
            "    stream 0/0  capture  (no unique-id)\n",
            "      channels  2\n",
            "      transport ring-ref 8\n",
            "  warning   w1\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
    }

    #[test]
    fn json_shows_every_part() {
        let j = render_json(1, &[view()]).to_string();
        for want in [
            "\"domid\": 1",
            "\"card\": 3",
            "\"name\": \"InitWait\"",
            "\"invalid\": \"x\"",
            "\"type\": \"capture\"",
            "\"ring-ref\": \"8\"",
            "\"event-channel\": null",
            "\"error\": \"boom\"",
        ] {
            assert!(j.contains(want), "missing {want:?} in\n{j}");
        }
    }
}
