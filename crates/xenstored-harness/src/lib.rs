//! Test harness: Debian's real C `xenstored` (4.17) running as an ordinary process on a machine
//! without Xen, plus guest-domain connections to it.
//!
//! - [`Xenstored::start`] runs `xenstored -N` from `scripts/fetch-xen-tools`' unpacked
//!   `xen-utils-4.17` under our LD_PRELOAD shim (`shim/fakexen.c`, compiled on first use with
//!   `cc`), in a private temporary directory, and kills it on drop.
//! - [`Xenstored::client`] is our `xen_store::Xs` connected to its socket: dom0, privileged.
//! - [`Xenstored::tool`] runs Debian's real `xenstore-read`/`-write`/`-ls`/`-chmod`/… against it.
//! - [`Xenstored::guest`] creates a domain as libxl would and returns a [`GuestBridge`]: a unix
//!   socket that is a connection **as that domain**, with guest permissions, through the
//!   domain's ring page (see [`bridge`]).
//! - [`Xenstored::kill_domain`] makes a domain die (`@releaseDomain` fires).
//! - [`Xenstored::write_vsnd`] writes a `vsnd` device exactly as libxl does, with the real tools
//!   ([`vsnd`]).
//!
//! Host requirements: `libxen-dev xenstore-utils gcc` (Debian packages) and
//! `scripts/fetch-xen-tools` having been run once (`XEN_TOOLS_DIR` overrides where it unpacked).
//!
//! Each [`Xenstored`] lives in its own `$TMPDIR/xsd-XXXXXX/`: `socket`, `trace.log` (every
//! request, `-T`), `xenstored.log` (its stderr), and per guest domain N `domN.ring` (the ring
//! page), `domN.evtchn` (kicks from xenstored), `domN.xenbus` (the guest socket) and, once
//! killed, `domN.dying`. Daemons are independent, so tests may each start their own and run in
//! parallel (start-up takes a few milliseconds). Do not keep one in a `static`: statics are never
//! dropped, so the daemon would outlive the test process. Set `FAKEXEN_DEBUG=1` in the
//! environment to have the shim log every hypervisor call to `xenstored.log`.

pub mod bridge;
mod daemon;
pub mod ring;
mod shim;
pub mod vsnd;
pub mod wire;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use bridge::GuestBridge;
pub(crate) use daemon::Inner;
pub use daemon::Xenstored;
pub use vsnd::{PcmParams, StreamType, VsndCard, VsndPcm, VsndStream};

/// Upper bound on one request the harness sends to xenstored itself.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the harness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The unpacked xenstored binary is not there.
    #[error(
        "xenstored not found at {}: run scripts/fetch-xen-tools (it unpacks Debian's \
         xen-utils-4.17 into <repo>/.cache/xen-tools, or into $XEN_TOOLS_DIR if set)",
        path.display()
    )]
    XenstoredMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Compiling `shim/fakexen.c` failed.
    #[error("building the fakexen LD_PRELOAD shim: {0}")]
    Shim(String),
    /// An I/O operation of the harness failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (names the path).
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// xenstored failed to start, died, or did not answer.
    #[error("xenstored {why}\n--- xenstored log tail ---\n{log}")]
    Daemon {
        /// What happened.
        why: String,
        /// The end of its log and trace.
        log: String,
    },
    /// A Debian `xenstore-*` tool exited with an error.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Tool {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// xenstored answered one of the harness's own requests with an error.
    #[error("xenstore {op} {arg:?}: {errno}")]
    Xenstore {
        /// The request (`"INTRODUCE"`).
        op: &'static str,
        /// Its first argument.
        arg: String,
        /// The error name xenstored sent (`"EACCES"`).
        errno: String,
    },
    /// Malformed data from xenstored.
    #[error("{what}: protocol error: {msg}")]
    Protocol {
        /// What was being done.
        what: String,
        /// What was wrong.
        msg: String,
    },
    /// Our xen-store client could not connect.
    #[error("connecting the xen-store client to {}: {source}", path.display())]
    Client {
        /// The socket.
        path: PathBuf,
        /// The client's error.
        #[source]
        source: xen_store::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// The condition waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// A unix socket path would not fit in `sun_path`.
    #[error("unix socket path too long ({len} bytes, max 107): {}; set TMPDIR to a shorter directory", path.display())]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn protocol(what: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Protocol {
            what: what.into(),
            msg: msg.into(),
        }
    }
}

/// Unix socket paths must fit `sockaddr_un.sun_path` (108 bytes with the NUL).
pub(crate) fn check_socket_path(path: &Path) -> Result<()> {
    let len = path.as_os_str().len();
    if len > 107 {
        return Err(Error::SocketPathTooLong {
            path: path.to_owned(),
            len,
        });
    }
    Ok(())
}
