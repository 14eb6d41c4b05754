//! Behaviour that can be checked without Xen. Missing devices and files that are not the
//! event-channel device must give errors naming the path, the operation, the port and the domain.
//! A FIFO stands in for the device's `read`/`write` side: like `/dev/xen/evtchn` it is a stream
//! of native-endian `u32` ports that polls readable while data is pending.

use std::{
    ffi::CString,
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use xen_evtchn::{Error, EventChannel, Port};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A FIFO in a fresh directory, the handle under test on it, and a peer handle on it.
fn fifo() -> (tempfile::TempDir, PathBuf, EventChannel, File) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evtchn");
    let cpath = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `cpath` is a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
    // Opening a FIFO read-write never blocks on Linux.
    let ev = EventChannel::open_path(&path).unwrap();
    let peer = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    (dir, path, ev, peer)
}

fn write_ports(peer: &mut File, ports: &[u32]) {
    let bytes: Vec<u8> = ports.iter().flat_map(|p| p.to_ne_bytes()).collect();
    peer.write_all(&bytes).unwrap();
}

/// Waits (bounded) until `fd` is readable.
fn wait_readable(fd: &impl AsRawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::c_int::try_from(TIMEOUT.as_millis()).unwrap();
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout) };
    rc == 1 && pfd.revents & libc::POLLIN != 0
}

fn read_ports(peer: &mut File, n: usize) -> Vec<u32> {
    assert!(wait_readable(peer), "nothing was written to the device");
    let mut bytes = vec![0u8; n * 4];
    peer.read_exact(&mut bytes).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn opening_a_missing_device_names_the_path_and_the_module() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xen").join("evtchn");
    let err = EventChannel::open_path(&path).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(err.operation(), "open");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot open", path.display())),
        "{msg}"
    );
    assert!(msg.contains("xen_evtchn"), "{msg}");
}

#[test]
fn open_uses_the_kernel_device_path() {
    match EventChannel::open() {
        Ok(ev) => assert_eq!(ev.path(), Path::new("/dev/xen/evtchn")),
        Err(err) => {
            let msg = err.to_string();
            assert!(msg.starts_with("/dev/xen/evtchn: cannot open"), "{msg}");
        }
    }
}

#[test]
fn ioctls_on_a_regular_file_fail_with_enotty_naming_op_port_and_domain() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let ev = EventChannel::open_path(file.path()).unwrap();
    let shown = file.path().display().to_string();

    let cases: [(Error, &str); 5] = [
        (
            ev.bind_unbound_port(0).unwrap_err(),
            "IOCTL_EVTCHN_BIND_UNBOUND_PORT for domain 0 failed",
        ),
        (
            ev.bind_interdomain(3, Port(7)).unwrap_err(),
            "IOCTL_EVTCHN_BIND_INTERDOMAIN for domain 3 port 7 failed",
        ),
        (
            ev.notify(Port(5)).unwrap_err(),
            "IOCTL_EVTCHN_NOTIFY on port 5 failed",
        ),
        (
            ev.unbind(Port(6)).unwrap_err(),
            "IOCTL_EVTCHN_UNBIND on port 6 failed",
        ),
        (ev.reset().unwrap_err(), "IOCTL_EVTCHN_RESET failed"),
    ];
    for (err, expected) in cases {
        assert!(matches!(err, Error::Op { .. }), "{err:?}");
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY), "{err}");
        assert!(expected.starts_with(err.operation()), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{shown}: {expected}: ")), "{msg}");
        assert!(msg.contains("not a Xen event-channel device"), "{msg}");
    }
}

#[test]
fn pending_on_an_empty_regular_file_is_an_error_not_none() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let ev = EventChannel::open_path(file.path()).unwrap();
    let err = ev.pending().unwrap_err();
    assert_eq!(err.operation(), "read (pending ports)");
    assert!(err.to_string().contains("end of file"), "{err}");
}

#[test]
fn pending_returns_fired_ports_in_order() {
    let (_dir, _path, ev, mut peer) = fifo();
    ev.set_nonblocking(true).unwrap();
    write_ports(&mut peer, &[7, 8, 9, 0x8000_0001]);
    assert_eq!(ev.pending().unwrap(), Some(Port(7)));
    let mut batch = [Port(0); 8];
    assert_eq!(ev.pending_into(&mut batch).unwrap(), 3);
    assert_eq!(&batch[..3], &[Port(8), Port(9), Port(0x8000_0001)]);
    assert_eq!(ev.pending().unwrap(), None);
    assert_eq!(ev.pending_into(&mut batch).unwrap(), 0);
    assert_eq!(ev.pending_into(&mut []).unwrap(), 0);
}

#[test]
fn pending_into_reads_at_most_the_buffer() {
    let (_dir, _path, ev, mut peer) = fifo();
    ev.set_nonblocking(true).unwrap();
    write_ports(&mut peer, &[1, 2, 3]);
    let mut two = [Port(0); 2];
    assert_eq!(ev.pending_into(&mut two).unwrap(), 2);
    assert_eq!(two, [Port(1), Port(2)]);
    assert_eq!(ev.pending().unwrap(), Some(Port(3)));
}

#[test]
fn unmask_writes_the_port_back() {
    let (_dir, _path, ev, mut peer) = fifo();
    ev.unmask(Port(42)).unwrap();
    assert_eq!(read_ports(&mut peer, 1), [42]);
    ev.unmask_ports(&[Port(1), Port(2), Port(3)]).unwrap();
    assert_eq!(read_ports(&mut peer, 3), [1, 2, 3]);
    ev.unmask_ports(&[]).unwrap();
}

#[test]
fn a_partial_port_is_reported_with_the_byte_counts() {
    let (_dir, _path, ev, mut peer) = fifo();
    ev.set_nonblocking(true).unwrap();
    peer.write_all(&[1, 0, 0, 0, 2, 0]).unwrap();
    let mut buf = [Port(0); 4];
    let err = ev.pending_into(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Partial {
                got: 6,
                wanted: 16,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("transferred 6 of 16 bytes"),
        "{err}"
    );
}

#[test]
fn set_nonblocking_toggles_the_descriptor_flag() {
    let (_dir, _path, ev, _peer) = fifo();
    assert!(!ev.is_nonblocking().unwrap());
    ev.set_nonblocking(true).unwrap();
    assert!(ev.is_nonblocking().unwrap());
    ev.set_nonblocking(true).unwrap();
    assert!(ev.is_nonblocking().unwrap());
    ev.set_nonblocking(false).unwrap();
    assert!(!ev.is_nonblocking().unwrap());
}

#[test]
fn a_blocking_pending_waits_for_the_next_port() {
    let (_dir, _path, ev, mut peer) = fifo();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let got = ev.pending();
        let _ = tx.send(got.map_err(|e| e.to_string()));
    });
    // Nothing is pending yet, so the reader cannot have finished on its own.
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(100)),
        Err(mpsc::RecvTimeoutError::Timeout)
    ));
    write_ports(&mut peer, &[11]);
    let got = rx
        .recv_timeout(TIMEOUT)
        .expect("the blocking read did not return after a port was written");
    assert_eq!(got, Ok(Some(Port(11))));
    reader.join().unwrap();
}

#[test]
fn the_raw_fd_polls_readable_while_ports_are_pending() {
    let (_dir, _path, ev, mut peer) = fifo();
    ev.set_nonblocking(true).unwrap();
    write_ports(&mut peer, &[3]);
    assert!(wait_readable(&ev));
    assert_eq!(ev.pending().unwrap(), Some(Port(3)));
    assert_eq!(ev.pending().unwrap(), None);
}

#[test]
fn ports_display_as_plain_numbers() {
    assert_eq!(Port(17).to_string(), "17");
    assert_eq!(format!("{:>4}", Port(5)), "   5");
    assert_eq!(u32::from(Port::from(9)), 9);
}
