//! `libpipewire-module-xen-snd`: a Xen para-virtual sound (vsnd) frontend as a PipeWire module.
//!
//! Every playback stream of a guest's vsnd card becomes an `Audio/Sink` node and every capture
//! stream an `Audio/Source` node of the PipeWire daemon the module is loaded into.
//!
//! # Module name
//!
//! `libpipewire-module-xen-snd` (the file `libpipewire-module-xen-snd.so` in a PipeWire module
//! directory).
//!
//! # Module options
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `xen.cards` | `all` | which cards `device/vsnd/<dev-id>` to drive: `all` or `[ 0 1 ]` |
//! | `node.name.prefix` | `xen_snd` | node names are `<prefix>.card<C>.dev<D>.<playback\|capture><S>` |
//! | `node.latency` | `1024/48000` | the quantum the nodes ask for |
//! | `xen.driver` | `true` | the nodes may drive the graph, paced by the backend's clock; `false`: always follow, with rate matching |
//! | `xen.period-frames` | `0` (20 ms) | period toward the backend (position-report cadence) |
//! | `xen.buffer-frames` | `0` (4 periods) | buffer toward the backend |
//! | `xen.xenstore-path` | `$XENSTORED_PATH`, else `/dev/xen/xenbus` | where xenstore is |
//! | `priority.driver` | `1000` | driver priority of the nodes |
//! | `priority.session` | `1000` | session priority (WirePlumber's default-device choice) |
//! | `remote.name` | `internal` | the core to create nodes on; use `pipewire-0` when hosting the module in a client such as `pw-cli -m` |
//! | `log.level` | PipeWire's | the level of the module's log topic `mod.xen-snd` (0–5 or a name) |
//! | `xen.test-world` | unset | **test hook only**: run against an in-process fake Xen with the reference backend (see [`testhook`]); needs the `test-hook` cargo feature (default) |
//!
//! Unknown keys and invalid values are refused with one error line and the module does not load
//! (`-EINVAL`); with `flags = [ nofail ]` the daemon carries on without it.
//!
//! # Behaviour
//!
//! - **No Xen, no permission, no card**: the module loads, logs one warning that says what is
//!   missing and how to fix it, creates no nodes, and keeps checking (every 5 s while the Xen
//!   devices are missing or refused; a watch on `device/vsnd` afterwards), so a card attached
//!   later with `xl vsnd-attach` gets its nodes without a restart.
//! - **Backend restart**: the nodes stay (same id, name and volume); they go idle while the card
//!   is disconnected and play again by themselves once the backend is back (the new stream is
//!   handed to the node's data thread). **Card removed**: its nodes go away.
//! - **Volume**: PipeWire's software volume, unless the backend answers GET_VOLUME at the first
//!   OPEN: then `channelVolumes`/`mute` go to the backend as SET_VOLUME/MUTE/UNMUTE (0.001 dB
//!   steps) and PipeWire's own volume stays at unity.
//! - **Unload** (`pw-cli destroy`, daemon SIGTERM, a hosting `pw-cli -m` exiting): streams are
//!   stopped and closed, then every card is closed toward its backend (Closing, then Closed),
//!   each step bounded.
//!
//! # Example configuration
//!
//! `~/.config/pipewire/pipewire.conf.d/50-xen-snd.conf` (see `plugin-conf/pipewire.conf.d/`):
//!
//! ```text
//! context.modules = [
//!     { name = libpipewire-module-xen-snd
//!       args = { xen.cards = all  node.latency = 1024/48000 }
//!       flags = [ nofail ]
//!     }
//! ]
//! ```
//!
//! # Layout
//!
//! - [`args`]: the arguments; [`naming`]: node names and properties; [`format`]: sndif ↔ SPA
//!   formats and pods;
//! - [`port`]: the [`port::PcmPort`] trait a node drives and the frontend events;
//!   [`frontend`]: where cards come from (the frontend engine on Xen); [`engine_port`]: a port
//!   over an engine stream; [`testhook`]: the test world;
//! - [`node`]: one stream per port; [`process`]: the realtime copy; [`driver`] and [`dll`]:
//!   driver timing and rate matching;
//! - [`module`]: lifecycle; [`log`]: logging; `ffi`: the only `unsafe` code, over PipeWire's C API.

pub mod args;
pub mod dll;
pub mod driver;
pub mod engine_port;
mod ffi;
pub mod format;
pub mod frontend;
pub mod log;
pub mod module;
pub mod naming;
pub mod node;
pub mod port;
pub mod process;
#[cfg(feature = "test-hook")]
pub mod testhook;

pub use ffi::pipewire__module_init;
