//! Where the Xen services come from: the real devices (with one-line errors that say what is
//! missing and what to do), or the test hook's in-process fake world.

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use xen_access::real::{RealEventChannels, RealGrantShare, RealStore};
use xen_access::XenStore;
use xen_snd_engine::Services;

use crate::error::CliError;

/// Environment variable naming the directory of the Xen devices (default `/dev/xen`).
pub const DEVICE_DIR_ENV: &str = "XEN_SND_DEVICE_DIR";
/// Environment variable of the test hook (see [`crate::testworld`]).
pub const TEST_WORLD_ENV: &str = "XEN_SND_TEST_WORLD";
/// The default device directory.
pub const DEFAULT_DEVICE_DIR: &str = "/dev/xen";

/// The source of the Xen services.
#[derive(Debug)]
pub enum Env {
    /// The kernel devices below `dir` (or xenstored's socket named by `XENSTORED_PATH`).
    Real {
        /// The device directory.
        dir: PathBuf,
    },
    /// The test hook's fake world.
    #[cfg(feature = "test-hook")]
    Test(Box<crate::testworld::Hook>),
}

/// Which device, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Device {
    Xenbus,
    Gntalloc,
    Evtchn,
}

impl Device {
    fn file(self) -> &'static str {
        match self {
            Device::Xenbus => "xenbus",
            Device::Gntalloc => "gntalloc",
            Device::Evtchn => "evtchn",
        }
    }

    fn module(self) -> &'static str {
        match self {
            Device::Xenbus => "xenfs",
            Device::Gntalloc => "xen-gntalloc",
            Device::Evtchn => "xen-evtchn",
        }
    }
}

/// The OS error somewhere in `err`'s source chain.
fn os_errno(err: &(dyn StdError + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        cur = e.source();
    }
    None
}

/// Turns a failure to open a Xen device into the tool's one-line error.
fn open_error(dir: &Path, dev: Device, path: &Path, err: &(dyn StdError + 'static)) -> CliError {
    match os_errno(err) {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) if dev == Device::Xenbus => {
            CliError::NoXen(format!(
                "not running on Xen: {} does not exist (this is not a Xen guest, or the kernel \
                 lacks its Xen support)",
                path.display()
            ))
        }
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => CliError::NoXen(format!(
            "{} does not exist: load the kernel module (`modprobe {}`)",
            path.display(),
            dev.module()
        )),
        Some(libc::EACCES | libc::EPERM) => CliError::Permission(format!(
            "permission denied on {}: run xen-snd as root, or give this user read-write access \
             to {d}/xenbus, {d}/gntalloc and {d}/evtchn",
            path.display(),
            d = dir.display()
        )),
        _ => CliError::Failed(format!("cannot open {}: {err}", path.display())),
    }
}

impl Env {
    /// Reads the environment: the test hook if `XEN_SND_TEST_WORLD` is set (and compiled in),
    /// else the real devices.
    pub fn from_process() -> Result<Env, CliError> {
        if let Some(spec) = std::env::var_os(TEST_WORLD_ENV) {
            #[cfg(feature = "test-hook")]
            {
                let spec = spec.to_str().ok_or_else(|| {
                    CliError::Usage(format!("{TEST_WORLD_ENV} is not valid UTF-8"))
                })?;
                return crate::testworld::start(spec).map(|w| Env::Test(Box::new(w)));
            }
            #[cfg(not(feature = "test-hook"))]
            {
                let _ = spec;
                return Err(CliError::Usage(format!(
                    "{TEST_WORLD_ENV} is set, but this xen-snd was built without the test hook"
                )));
            }
        }
        let dir = std::env::var_os(DEVICE_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_DEVICE_DIR), PathBuf::from);
        Ok(Env::Real { dir })
    }

    fn real_store(dir: &Path) -> Result<Arc<dyn XenStore>, CliError> {
        let socket = std::env::var_os("XENSTORED_PATH").filter(|p| !p.is_empty());
        if let Some(sock) = socket {
            let store = RealStore::open().map_err(|e| match os_errno(&e) {
                Some(libc::EACCES | libc::EPERM) => CliError::Permission(format!(
                    "permission denied on xenstored's socket {} (XENSTORED_PATH): run as root",
                    Path::new(&sock).display()
                )),
                Some(_) => CliError::NoXen(format!(
                    "cannot connect to xenstored at {} (XENSTORED_PATH): {e}",
                    Path::new(&sock).display()
                )),
                None => CliError::Failed(e.to_string()),
            })?;
            return Ok(Arc::new(store));
        }
        let path = dir.join(Device::Xenbus.file());
        let store = RealStore::open_device(&path)
            .map_err(|e| open_error(dir, Device::Xenbus, &path, &e))?;
        Ok(Arc::new(store))
    }

    /// A xenstore connection of this domain (all `status` needs without `--connect`).
    pub fn store(&self) -> Result<Arc<dyn XenStore>, CliError> {
        match self {
            Env::Real { dir } => Self::real_store(dir),
            #[cfg(feature = "test-hook")]
            Env::Test(w) => Ok(w.store()),
        }
    }

    /// Everything a frontend needs: xenstore, grant sharing, event channels.
    pub fn services(&self) -> Result<Services, CliError> {
        match self {
            Env::Real { dir } => {
                let store = Self::real_store(dir)?;
                let gntalloc = dir.join(Device::Gntalloc.file());
                let grants = RealGrantShare::open_path(&gntalloc)
                    .map_err(|e| open_error(dir, Device::Gntalloc, &gntalloc, &e))?;
                let evtchn = dir.join(Device::Evtchn.file());
                let events = RealEventChannels::open_path(&evtchn)
                    .map_err(|e| open_error(dir, Device::Evtchn, &evtchn, &e))?;
                Ok(Services {
                    store,
                    grants: Arc::new(grants),
                    events: Arc::new(events),
                })
            }
            #[cfg(feature = "test-hook")]
            Env::Test(w) => Ok(w.services()),
        }
    }

    /// Ends the run: the test hook stops its backend and reports to stderr.
    pub fn finish(self) {
        match self {
            Env::Real { .. } => {}
            #[cfg(feature = "test-hook")]
            Env::Test(w) => crate::testworld::finish(*w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer {
        #[source]
        source: io::Error,
    }

    fn err(errno: i32) -> Outer {
        Outer {
            source: io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn open_errors_are_classified_and_name_the_device() {
        let dir = Path::new("/dev/xen");
        let p = dir.join("xenbus");
        let e = open_error(dir, Device::Xenbus, &p, &err(libc::ENOENT));
        assert!(
            matches!(&e, CliError::NoXen(m) if m.starts_with("not running on Xen: /dev/xen/xenbus"))
        );
        let p = dir.join("gntalloc");
        let e = open_error(dir, Device::Gntalloc, &p, &err(libc::ENOENT));
        assert!(
            matches!(&e, CliError::NoXen(m) if m.contains("modprobe xen-gntalloc")),
            "{e}"
        );
        let p = dir.join("evtchn");
        let e = open_error(dir, Device::Evtchn, &p, &err(libc::EACCES));
        assert!(
            matches!(&e, CliError::Permission(m) if m.starts_with("permission denied on /dev/xen/evtchn: run xen-snd as root")),
            "{e}"
        );
        let e = open_error(dir, Device::Evtchn, &p, &err(libc::EIO));
        assert!(matches!(&e, CliError::Failed(m) if m.contains("/dev/xen/evtchn")));
        assert_eq!(os_errno(&err(libc::EPERM)), Some(libc::EPERM));
    }
}
