//! Xen event channels from Linux user space, over `/dev/xen/evtchn`.
//!
//! An [`EventChannel`] is one open handle on the device. Ports bound through it
//! ([`EventChannel::bind_unbound_port`] on a frontend, [`EventChannel::bind_interdomain`] on a
//! backend) belong to that handle:
//!
//! * **Closing the handle unbinds every port bound through it** (the kernel does this when the
//!   file is released). [`Port`] is a plain number and unbinds nothing when dropped; call
//!   [`EventChannel::unbind`] to drop a single port early.
//! * A port that fired is reported once by [`EventChannel::pending`] /
//!   [`EventChannel::pending_into`] and then stays **masked until [`EventChannel::unmask`]** is
//!   called for it: unmask after handling every delivery or no further events arrive.
//! * The descriptor ([`AsRawFd`]) polls readable while events are pending, so it plugs into a
//!   `poll` loop (PipeWire's `pw_loop_add_io`). With a non-blocking descriptor, poll before
//!   reading; let one thread read a given handle.
//!
//! The ioctl numbers and argument layouts live in [`sys`] and are checked against the kernel
//! header by the crate's `uapi` test.

mod error;
#[doc(hidden)]
pub mod sys;

use std::{
    ffi::c_void,
    fmt, io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    path::Path,
};

pub use error::{Error, Result};

use error::op_hint;
use sys::{
    IoctlEvtchnBindInterdomain, IoctlEvtchnBindUnboundPort, IoctlEvtchnNotify, IoctlEvtchnUnbind,
    IOCTL_EVTCHN_BIND_INTERDOMAIN, IOCTL_EVTCHN_BIND_UNBOUND_PORT, IOCTL_EVTCHN_NOTIFY,
    IOCTL_EVTCHN_RESET, IOCTL_EVTCHN_UNBIND, MAX_PORTS_PER_TRANSFER, PORT_SIZE,
};
use xen_ioctl::{missing_module_hint, DeviceFile};

/// Default path of the event-channel device.
pub const EVTCHN_PATH: &str = "/dev/xen/evtchn";

const MISSING_HINT: &str = missing_module_hint!("xen_evtchn");

/// A local event-channel port number (`evtchn_port_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct Port(pub u32);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u32> for Port {
    fn from(port: u32) -> Self {
        Port(port)
    }
}

impl From<Port> for u32 {
    fn from(port: Port) -> Self {
        port.0
    }
}

/// An open `/dev/xen/evtchn` handle. Every port bound through it is unbound when it is dropped.
#[derive(Debug)]
pub struct EventChannel {
    dev: DeviceFile,
}

impl EventChannel {
    /// Opens [`EVTCHN_PATH`] (blocking reads; see [`EventChannel::set_nonblocking`]).
    pub fn open() -> Result<Self> {
        Self::open_path(EVTCHN_PATH)
    }

    /// Opens the event-channel device at `path`, read-write and close-on-exec.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        Ok(EventChannel {
            dev: DeviceFile::open(path.as_ref(), MISSING_HINT)?,
        })
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        self.dev.path()
    }

    /// Allocates a new port that `remote_domain` may bind to, bound to this handle
    /// (`IOCTL_EVTCHN_BIND_UNBOUND_PORT`; the ioctl returns the port). The frontend side.
    pub fn bind_unbound_port(&self, remote_domain: u16) -> Result<Port> {
        let mut arg = IoctlEvtchnBindUnboundPort {
            remote_domain: remote_domain.into(),
        };
        // SAFETY: `arg` is the struct this request encodes and lives across the call.
        let rc = unsafe {
            self.dev.ioctl(
                IOCTL_EVTCHN_BIND_UNBOUND_PORT,
                core::ptr::addr_of_mut!(arg).cast::<c_void>(),
            )
        }
        .map_err(|source| {
            self.op_error(
                "IOCTL_EVTCHN_BIND_UNBOUND_PORT",
                None,
                Some(remote_domain),
                source,
            )
        })?;
        Ok(port_from_return(rc))
    }

    /// Binds a local port to `remote_port` of `remote_domain` (`IOCTL_EVTCHN_BIND_INTERDOMAIN`;
    /// the ioctl returns the local port). The backend side.
    pub fn bind_interdomain(&self, remote_domain: u16, remote_port: Port) -> Result<Port> {
        let mut arg = IoctlEvtchnBindInterdomain {
            remote_domain: remote_domain.into(),
            remote_port: remote_port.0,
        };
        // SAFETY: `arg` is the struct this request encodes and lives across the call.
        let rc = unsafe {
            self.dev.ioctl(
                IOCTL_EVTCHN_BIND_INTERDOMAIN,
                core::ptr::addr_of_mut!(arg).cast::<c_void>(),
            )
        }
        .map_err(|source| {
            self.op_error(
                "IOCTL_EVTCHN_BIND_INTERDOMAIN",
                Some(remote_port),
                Some(remote_domain),
                source,
            )
        })?;
        Ok(port_from_return(rc))
    }

    /// Sends an event to the other end of `port` (`IOCTL_EVTCHN_NOTIFY`).
    pub fn notify(&self, port: Port) -> Result<()> {
        let mut arg = IoctlEvtchnNotify { port: port.0 };
        // SAFETY: `arg` is the struct this request encodes and lives across the call.
        unsafe {
            self.dev.ioctl(
                IOCTL_EVTCHN_NOTIFY,
                core::ptr::addr_of_mut!(arg).cast::<c_void>(),
            )
        }
        .map_err(|source| self.op_error("IOCTL_EVTCHN_NOTIFY", Some(port), None, source))?;
        Ok(())
    }

    /// Unbinds `port` from this handle (`IOCTL_EVTCHN_UNBIND`). Closing the handle unbinds every
    /// port anyway.
    pub fn unbind(&self, port: Port) -> Result<()> {
        let mut arg = IoctlEvtchnUnbind { port: port.0 };
        // SAFETY: `arg` is the struct this request encodes and lives across the call.
        unsafe {
            self.dev.ioctl(
                IOCTL_EVTCHN_UNBIND,
                core::ptr::addr_of_mut!(arg).cast::<c_void>(),
            )
        }
        .map_err(|source| self.op_error("IOCTL_EVTCHN_UNBIND", Some(port), None, source))?;
        Ok(())
    }

    /// Empties the pending-event ring and clears its overflow error (`IOCTL_EVTCHN_RESET`).
    /// Events pending at that moment are lost: re-check the state of every port afterwards.
    pub fn reset(&self) -> Result<()> {
        // SAFETY: this request takes no argument (size 0); the kernel ignores the pointer.
        unsafe { self.dev.ioctl(IOCTL_EVTCHN_RESET, core::ptr::null_mut()) }
            .map_err(|source| self.op_error("IOCTL_EVTCHN_RESET", None, None, source))?;
        Ok(())
    }

    /// Reads one port that fired. Blocks on a blocking handle; returns `None` on a non-blocking
    /// handle with nothing pending. The port stays masked until [`EventChannel::unmask`].
    pub fn pending(&self) -> Result<Option<Port>> {
        let mut one = [Port(0)];
        Ok(match self.pending_into(&mut one)? {
            0 => None,
            _ => Some(one[0]),
        })
    }

    /// Reads as many fired ports as fit into `ports` (at most 1024 per call) and returns how many
    /// were stored; 0 on a non-blocking handle with nothing pending. Blocks on a blocking handle
    /// until at least one port fired.
    pub fn pending_into(&self, ports: &mut [Port]) -> Result<usize> {
        const OP: &str = "read (pending ports)";
        let wanted = ports.len().min(MAX_PORTS_PER_TRANSFER) * PORT_SIZE;
        if wanted == 0 {
            return Ok(0);
        }
        let got = loop {
            // SAFETY: `Port` is `repr(transparent)` over `u32`, so `ports` is `wanted` (or more)
            // writable bytes in which any bit pattern is a valid value.
            let rc = unsafe {
                libc::read(
                    self.dev.as_raw_fd(),
                    ports.as_mut_ptr().cast::<c_void>(),
                    wanted,
                )
            };
            match usize::try_from(rc) {
                Ok(got) => break got,
                Err(_) => {
                    let source = io::Error::last_os_error();
                    match source.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => return Ok(0),
                        _ => return Err(self.op_error(OP, None, None, source)),
                    }
                }
            }
        };
        if got == 0 {
            let source = io::Error::new(io::ErrorKind::UnexpectedEof, "end of file");
            return Err(self.op_error(OP, None, None, source));
        }
        if got % PORT_SIZE != 0 {
            return Err(Error::Partial {
                path: self.dev.path().to_path_buf(),
                op: OP,
                port: None,
                got,
                wanted,
            });
        }
        Ok(got / PORT_SIZE)
    }

    /// Re-enables delivery on `port` after it fired (writes the port number to the device).
    pub fn unmask(&self, port: Port) -> Result<()> {
        self.unmask_ports(std::slice::from_ref(&port))
    }

    /// Re-enables delivery on several ports with as few `write`s as possible.
    pub fn unmask_ports(&self, ports: &[Port]) -> Result<()> {
        const OP: &str = "write (unmask)";
        for chunk in ports.chunks(MAX_PORTS_PER_TRANSFER) {
            let wanted = chunk.len() * PORT_SIZE;
            let port = (chunk.len() == 1).then_some(chunk[0]);
            let written = loop {
                // SAFETY: `Port` is `repr(transparent)` over `u32`, so `chunk` is `wanted`
                // readable bytes.
                let rc = unsafe {
                    libc::write(
                        self.dev.as_raw_fd(),
                        chunk.as_ptr().cast::<c_void>(),
                        wanted,
                    )
                };
                match usize::try_from(rc) {
                    Ok(written) => break written,
                    Err(_) => {
                        let source = io::Error::last_os_error();
                        if source.kind() != io::ErrorKind::Interrupted {
                            return Err(self.op_error(OP, port, None, source));
                        }
                    }
                }
            };
            if written != wanted {
                return Err(Error::Partial {
                    path: self.dev.path().to_path_buf(),
                    op: OP,
                    port,
                    got: written,
                    wanted,
                });
            }
        }
        Ok(())
    }

    /// Makes [`EventChannel::pending`] return `None` instead of blocking when nothing is pending.
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<()> {
        let flags = self.status_flags()?;
        let wanted = if nonblocking {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if wanted != flags {
            // SAFETY: F_SETFL with an int argument on a descriptor we own.
            let rc = unsafe { libc::fcntl(self.dev.as_raw_fd(), libc::F_SETFL, wanted) };
            if rc < 0 {
                let source = io::Error::last_os_error();
                return Err(self.op_error("fcntl(F_SETFL, O_NONBLOCK)", None, None, source));
            }
        }
        Ok(())
    }

    /// Whether the handle is non-blocking.
    pub fn is_nonblocking(&self) -> Result<bool> {
        Ok(self.status_flags()? & libc::O_NONBLOCK != 0)
    }

    fn status_flags(&self) -> Result<libc::c_int> {
        // SAFETY: F_GETFL takes no argument and only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(self.dev.as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            let source = io::Error::last_os_error();
            return Err(self.op_error("fcntl(F_GETFL)", None, None, source));
        }
        Ok(flags)
    }

    fn op_error(
        &self,
        op: &'static str,
        port: Option<Port>,
        domain: Option<u16>,
        source: io::Error,
    ) -> Error {
        Error::Op {
            path: self.dev.path().to_path_buf(),
            op,
            port,
            domain,
            hint: op_hint(&source),
            source,
        }
    }
}

impl AsFd for EventChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dev.as_fd()
    }
}

impl AsRawFd for EventChannel {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}

/// The port a successful bind ioctl returned (`rc >= 0`, so the conversion keeps the value).
fn port_from_return(rc: libc::c_int) -> Port {
    Port(rc.unsigned_abs())
}

// The handle is shared between the control and realtime threads: keep it Send + Sync.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<EventChannel>();
    send_sync::<Error>();
    // `pending_into`/`unmask_ports` transfer `[Port]` as the kernel's stream of u32 ports.
    assert!(core::mem::size_of::<Port>() == PORT_SIZE);
    assert!(core::mem::align_of::<Port>() == core::mem::align_of::<u32>());
};
