//! The sndif protocol: wire formats, shared rings, event page, page directory and the xenstore
//! configuration model. Pure code, no I/O.

pub mod formats;

pub use formats::{FormatSet, PcmFormat, ALL_FORMATS};
