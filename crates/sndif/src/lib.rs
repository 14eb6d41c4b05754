//! The sndif protocol: wire formats, shared rings, event page, page directory and the xenstore
//! configuration model. Pure code, no I/O.

pub mod config;
pub mod event;
pub mod formats;
pub mod layout;
pub mod pgdir;
pub mod ring;
pub mod shm;
pub mod wire;

pub use config::{
    parse_card, CardConfig, ConfigError, ConfigSource, ConfigWarning, DeviceConfig, MapSource,
    PcmHw, StreamConfig, StreamEntry, StreamKind,
};
pub use event::{EventError, EventReader, EventWriter};
pub use formats::{FormatSet, PcmFormat, ALL_FORMATS};
pub use pgdir::{
    data_pages, dir_pages, read_directory, read_directory_page, write_directory, PgdirError,
};
pub use ring::{BackRing, FrontRing, RingError};
pub use shm::{HeapRegion, MappedRegion, SharedMem, ShmError};
pub use wire::{
    Event, EventKind, EventType, HwParam, Interval, OpenParams, Operation, Request, RequestBody,
    Response, ResponseBody, RwParams, TriggerType, WireError,
};
