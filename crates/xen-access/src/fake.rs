//! In-memory fakes of the three Xen services, for tests that run a frontend and a backend in one
//! process.
//!
//! [`FakeXen`] is the world: one xenstore tree, one grant table per domain and one event-channel
//! broker. [`FakeXen::domain`] hands out the services as one domain sees them:
//!
//! ```
//! use xen_access::fake::FakeXen;
//! use xen_access::{StoreOps, XenStore};
//!
//! let world = FakeXen::new();
//! let guest = world.domain(5);
//! let store = guest.store();
//! // Guests may write below their `data` node (libxl creates it writable for them).
//! store.write("data/x", "1").unwrap();
//! assert_eq!(world.read("/local/domain/5/data/x").as_deref(), Some("1"));
//! ```
//!
//! What behaves like Xen (and what deliberately does not) is documented on each service:
//! [`FakeStore`], [`FakeGrantShare`]/[`FakeGrantMap`], [`FakeEvtchnHandle`], [`Faults`].
//!
//! Numbering: grant references count up from [`FIRST_GREF`] per granting domain and are never
//! reused; event-channel ports are allocated lowest-free from [`FIRST_PORT`] up to
//! [`LAST_PORT`] per domain. The ranges are disjoint on purpose, so a gref used as a port (or
//! the reverse) fails instead of silently working as it might on real Xen.

mod evtchn;
mod faults;
mod grant;
mod signal;
mod store;
mod toolstack;
mod tree;
mod world;

#[cfg(test)]
mod tests;

pub use evtchn::{FakeEventChannels, FakeEvtchnHandle, FIRST_PORT, LAST_PORT};
pub use faults::{FaultError, FaultOp, Faults};
pub use grant::{FakeGrantMap, FakeGrantShare, DEFAULT_GRANT_LIMIT, FIRST_GREF};
pub use signal::wait_readable;
pub use store::{FakeStore, TRANSACTION_ATTEMPTS};
pub use toolstack::ToolstackDevice;
pub use world::{FakeDomain, FakeXen};

// Ports and grant references must never coincide, and port 0 is never valid.
const _: () = assert!(FIRST_PORT > 0 && LAST_PORT < FIRST_GREF);
