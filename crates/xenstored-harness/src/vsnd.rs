//! A `vsnd` device written into xenstore exactly as libxl 4.17 writes it
//! (`libxl__device_generic_add` + `libxl__set_xenstore_vsnd`), using Debian's real
//! `xenstore-write`, `xenstore-chmod` and `xenstore-rm`.
//!
//! What ends up in the store (§B of the testbed notes, sndif.md §1.2):
//!
//! ```text
//! /libxl/<fe>/device/vsnd/<dev>/{frontend,backend,frontend-id,online,state}      (n0)
//! /local/domain/<fe>/device/vsnd/<dev>                 (n<fe>,r<be>)  owned by the guest
//!     backend, backend-id, state=1,
//!     long-name, short-name, sample-rates, sample-formats, channels-min, channels-max,
//!     buffer-size, <pcm>/name, <pcm>/<params>, <pcm>/<stream>/{unique-id,type,<params>}
//! /local/domain/<be>/backend/vsnd/<fe>/<dev>           (n<be>,r<fe>)  owned by the backend
//!     frontend, frontend-id, online=1, state=1
//! ```
//!
//! Parameters are written only when set (libxl skips empty lists and zeros); rates are joined
//! with `,` (xl's `;` never reaches xenstore); the stream type is `p` or `c`.

use crate::{Result, Xenstored};

/// PCM parameters of a card, device or stream (`libxl_vsnd_params`). Empty / zero = not written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcmParams {
    /// `sample-rates`, written as `"44100,48000"`.
    pub sample_rates: Vec<u32>,
    /// `sample-formats`, written as given, joined with `,` (libxl writes lower-case names such as
    /// `s16_le` and `f32_le`).
    pub sample_formats: Vec<String>,
    /// `channels-min`.
    pub channels_min: u32,
    /// `channels-max`.
    pub channels_max: u32,
    /// `buffer-size` in bytes.
    pub buffer_size: u32,
}

impl PcmParams {
    /// `(key, value)` pairs in libxl's order, keys prefixed with `prefix` (`""` or `"0/"`).
    fn entries(&self, prefix: &str, out: &mut Vec<(String, String)>) {
        if !self.sample_rates.is_empty() {
            let v: Vec<String> = self.sample_rates.iter().map(u32::to_string).collect();
            out.push((format!("{prefix}sample-rates"), v.join(",")));
        }
        if !self.sample_formats.is_empty() {
            out.push((
                format!("{prefix}sample-formats"),
                self.sample_formats.join(","),
            ));
        }
        for (key, v) in [
            ("channels-min", self.channels_min),
            ("channels-max", self.channels_max),
            ("buffer-size", self.buffer_size),
        ] {
            if v != 0 {
                out.push((format!("{prefix}{key}"), v.to_string()));
            }
        }
    }
}

/// Direction of a stream (`libxl_vsnd_stream_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamType {
    /// `p`.
    Playback,
    /// `c`.
    Capture,
}

impl StreamType {
    /// The xenstore value libxl writes.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamType::Playback => "p",
            StreamType::Capture => "c",
        }
    }
}

/// One stream (`STREAM, unique-id=…, type=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsndStream {
    /// `unique-id`.
    pub unique_id: String,
    /// `type`.
    pub kind: StreamType,
    /// Stream-level parameters.
    pub params: PcmParams,
}

/// One PCM device (`PCM, name=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsndPcm {
    /// `name`, if set.
    pub name: Option<String>,
    /// Device-level parameters.
    pub params: PcmParams,
    /// Its streams, indexed 0, 1, … in order.
    pub streams: Vec<VsndStream>,
}

/// One virtual sound card (`CARD, …` of `vsnd=[[…]]`) and where it is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsndCard {
    /// The guest (frontend) domain.
    pub frontend_domid: u32,
    /// The backend domain (0 by default in xl).
    pub backend_domid: u32,
    /// The device id (`<dev-id>` in the paths; 0 for the first card).
    pub devid: u32,
    /// `short-name`.
    pub short_name: Option<String>,
    /// `long-name`.
    pub long_name: Option<String>,
    /// Card-level parameters.
    pub params: PcmParams,
    /// PCM devices, indexed 0, 1, … in order.
    pub pcms: Vec<VsndPcm>,
}

impl VsndCard {
    /// The card of the testbed notes (§B), for guest `frontend_domid`, backend dom0:
    /// `CARD, short-name=Main, long-name=Xen vsnd test, sample-rates=44100;48000,
    /// sample-formats=s16_le, channels-min=1, channels-max=2, buffer-size=65536`, `PCM, name=Main`,
    /// `STREAM, unique-id=0, type=p`, `STREAM, unique-id=1, type=c`.
    pub fn testbed_example(frontend_domid: u32) -> VsndCard {
        let stream = |id: &str, kind| VsndStream {
            unique_id: id.to_owned(),
            kind,
            params: PcmParams::default(),
        };
        VsndCard {
            frontend_domid,
            backend_domid: 0,
            devid: 0,
            short_name: Some("Main".to_owned()),
            long_name: Some("Xen vsnd test".to_owned()),
            params: PcmParams {
                sample_rates: vec![44100, 48000],
                sample_formats: vec!["s16_le".to_owned()],
                channels_min: 1,
                channels_max: 2,
                buffer_size: 65536,
            },
            pcms: vec![VsndPcm {
                name: Some("Main".to_owned()),
                params: PcmParams::default(),
                streams: vec![
                    stream("0", StreamType::Playback),
                    stream("1", StreamType::Capture),
                ],
            }],
        }
    }

    /// `/local/domain/<fe>/device/vsnd/<dev>`.
    pub fn frontend_path(&self) -> String {
        format!(
            "/local/domain/{}/device/vsnd/{}",
            self.frontend_domid, self.devid
        )
    }

    /// `/local/domain/<be>/backend/vsnd/<fe>/<dev>`.
    pub fn backend_path(&self) -> String {
        format!(
            "/local/domain/{}/backend/vsnd/{}/{}",
            self.backend_domid, self.frontend_domid, self.devid
        )
    }

    /// `/libxl/<fe>/device/vsnd/<dev>`: libxl's private copy.
    pub fn libxl_path(&self) -> String {
        format!("/libxl/{}/device/vsnd/{}", self.frontend_domid, self.devid)
    }

    /// The frontend keys after `backend` (relative to [`frontend_path`](Self::frontend_path)),
    /// in the order libxl writes them: the generic `backend-id`, `state`, then the card.
    pub fn frontend_entries(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("backend-id".to_owned(), self.backend_domid.to_string()),
            ("state".to_owned(), "1".to_owned()),
        ];
        if let Some(n) = &self.long_name {
            out.push(("long-name".to_owned(), n.clone()));
        }
        if let Some(n) = &self.short_name {
            out.push(("short-name".to_owned(), n.clone()));
        }
        self.params.entries("", &mut out);
        for (i, pcm) in self.pcms.iter().enumerate() {
            if let Some(n) = &pcm.name {
                out.push((format!("{i}/name"), n.clone()));
            }
            pcm.params.entries(&format!("{i}/"), &mut out);
            for (j, s) in pcm.streams.iter().enumerate() {
                out.push((format!("{i}/{j}/unique-id"), s.unique_id.clone()));
                out.push((format!("{i}/{j}/type"), s.kind.as_str().to_owned()));
                s.params.entries(&format!("{i}/{j}/"), &mut out);
            }
        }
        out
    }

    /// The backend keys after `frontend` (relative to [`backend_path`](Self::backend_path)).
    pub fn backend_entries(&self) -> Vec<(String, String)> {
        vec![
            ("frontend-id".to_owned(), self.frontend_domid.to_string()),
            ("online".to_owned(), "1".to_owned()),
            ("state".to_owned(), "1".to_owned()),
        ]
    }
}

impl Xenstored {
    /// Write `card` as libxl does when `xl create` adds a vsnd device, with the real
    /// `xenstore-rm`/`xenstore-write`/`xenstore-chmod` (see the [module docs](crate::vsnd)).
    /// The frontend domain's home should exist ([`Xenstored::create_domain`] or
    /// [`Xenstored::guest`]), otherwise the intermediate nodes inherit `/`'s permissions.
    pub fn write_vsnd(&self, card: &VsndCard) -> Result<()> {
        let fe = card.frontend_path();
        let be = card.backend_path();
        let lx = card.libxl_path();
        let fe_perms = [
            format!("n{}", card.frontend_domid),
            format!("r{}", card.backend_domid),
        ];
        let be_perms = [
            format!("n{}", card.backend_domid),
            format!("r{}", card.frontend_domid),
        ];

        for p in [&lx, &fe, &be] {
            if self.exists(p)? {
                self.tool_ok("xenstore-rm", [p])?;
            }
        }
        // libxl's private copy.
        self.tool_ok(
            "xenstore-write",
            [
                format!("{lx}/frontend"),
                fe.clone(),
                format!("{lx}/backend"),
                be.clone(),
            ],
        )?;

        // Frontend: mkdir, chown to the guest (backend may read), then each key with those perms.
        self.tool_ok("xenstore-write", [fe.as_str(), ""])?;
        self.chmod(&fe, &fe_perms)?;
        let mut kv = vec![format!("{fe}/backend"), be.clone()];
        let entries = card.frontend_entries();
        for (k, v) in &entries {
            kv.push(format!("{fe}/{k}"));
            kv.push(v.clone());
        }
        self.tool_ok("xenstore-write", &kv)?;
        for (k, _) in &entries {
            self.chmod(&format!("{fe}/{k}"), &fe_perms)?;
        }

        // Backend: mkdir, owned by the backend (guest may read); keys inherit.
        self.tool_ok("xenstore-write", [be.as_str(), ""])?;
        self.chmod(&be, &be_perms)?;
        let mut kv = vec![format!("{be}/frontend"), fe.clone()];
        for (k, v) in card.backend_entries() {
            kv.push(format!("{be}/{k}"));
            kv.push(v.clone());
            kv.push(format!("{lx}/{k}"));
            kv.push(v);
        }
        self.tool_ok("xenstore-write", &kv)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testbed_example_matches_the_libxl_dump() {
        let card = VsndCard::testbed_example(1);
        assert_eq!(card.frontend_path(), "/local/domain/1/device/vsnd/0");
        assert_eq!(card.backend_path(), "/local/domain/0/backend/vsnd/1/0");
        let expected: Vec<(String, String)> = [
            ("backend-id", "0"),
            ("state", "1"),
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
            ("0/1/unique-id", "1"),
            ("0/1/type", "c"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(card.frontend_entries(), expected);
    }

    #[test]
    fn stream_params_are_written_under_the_stream() {
        let mut card = VsndCard::testbed_example(3);
        card.params = PcmParams::default();
        card.pcms[0].streams[1].params.sample_rates = vec![8000];
        card.pcms[0].params.channels_max = 6;
        let keys: Vec<String> = card
            .frontend_entries()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(keys.contains(&"0/1/sample-rates".to_owned()));
        assert!(keys.contains(&"0/channels-max".to_owned()));
        assert!(!keys
            .iter()
            .any(|k| k == "sample-rates" || k == "buffer-size"));
    }
}
