//! Behaviour that can be checked without Xen: missing devices and files that are not Xen grant
//! devices must give errors naming the path and the operation, never a panic.

use std::path::Path;

use xen_gnttab::{Error, Gntalloc, Gntdev};

fn missing_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("xen").join("no-such-device")
}

#[test]
fn opening_a_missing_gntalloc_names_the_path_and_the_module() {
    let dir = tempfile::tempdir().unwrap();
    let path = missing_path(&dir);
    let err = Gntalloc::open_path(&path).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(err.operation(), "open");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot open", path.display())),
        "{msg}"
    );
    assert!(msg.contains("xen_gntalloc"), "{msg}");
    assert!(msg.contains("Xen"), "{msg}");
}

#[test]
fn opening_a_missing_gntdev_names_the_path_and_the_module() {
    let dir = tempfile::tempdir().unwrap();
    let path = missing_path(&dir);
    let err = Gntdev::open_path(&path).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("xen_gntdev"), "{msg}");
}

#[test]
fn open_uses_the_kernel_device_paths() {
    for (result, path) in [
        (
            Gntalloc::open().map(|g| g.path().to_owned()),
            "/dev/xen/gntalloc",
        ),
        (
            Gntdev::open().map(|g| g.path().to_owned()),
            "/dev/xen/gntdev",
        ),
    ] {
        match result {
            Ok(opened) => assert_eq!(opened, Path::new(path)),
            Err(err) => {
                let msg = err.to_string();
                assert!(msg.starts_with(&format!("{path}: cannot open")), "{msg}");
            }
        }
    }
}

#[test]
fn share_on_a_regular_file_fails_cleanly_with_enotty() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let gnt = Gntalloc::open_path(file.path()).unwrap();
    assert_eq!(gnt.path(), file.path());
    let err = gnt.share(0, 19, true).unwrap_err();
    assert!(matches!(err, Error::Pages { .. }), "{err:?}");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
    assert_eq!(err.operation(), "IOCTL_GNTALLOC_ALLOC_GREF");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: IOCTL_GNTALLOC_ALLOC_GREF of 19 page(s) for domain 0 failed",
            file.path().display()
        )),
        "{msg}"
    );
    assert!(msg.contains("not a Xen grant device"), "{msg}");
    // Nothing was written into the file by the failed attempt.
    assert_eq!(std::fs::metadata(file.path()).unwrap().len(), 0);
}

#[test]
fn map_on_a_regular_file_fails_cleanly_with_enotty() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let gnt = Gntdev::open_path(file.path()).unwrap();
    let err = gnt.map(3, &[8, 9], false).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
    assert_eq!(err.operation(), "IOCTL_GNTDEV_MAP_GRANT_REF");
    let msg = err.to_string();
    assert!(
        msg.contains("IOCTL_GNTDEV_MAP_GRANT_REF of 2 page(s) for domain 3 failed"),
        "{msg}"
    );
    let io: std::io::Error = err.into();
    assert!(
        io.to_string().contains("IOCTL_GNTDEV_MAP_GRANT_REF"),
        "{io}"
    );
}

#[test]
fn bad_counts_are_rejected_before_any_system_call() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let gnt = Gntalloc::open_path(file.path()).unwrap();
    for count in [
        0,
        xen_gnttab::MAX_PAGES + 1,
        usize::MAX,
        usize::MAX / 4096 + 1,
    ] {
        let err = gnt.share(1, count, true).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{count}: {err:?}"
        );
        assert_eq!(err.raw_os_error(), None);
        assert!(err.to_string().contains("for domain 1 rejected"), "{err}");
    }
    let dev = Gntdev::open_path(file.path()).unwrap();
    let too_many = vec![0u32; xen_gnttab::MAX_PAGES + 1];
    let err = dev.map(1, &too_many, true).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let err = dev.map(1, &[], true).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
}
