//! `libpipewire-module-xen-snd`: a Xen para-virtual sound frontend as a PipeWire module.
//!
//! The module itself arrives with the PipeWire glue; the layers it stands on live in the
//! workspace crates (`sndif`, `xen-store`, `xen-gnttab`, `xen-evtchn`).
