use super::perm;
use crate::fake::{FakeXen, ToolstackDevice};
use crate::Access;

#[test]
fn add_device_writes_what_libxl_writes_with_its_permissions() {
    let world = FakeXen::new();
    let dev = ToolstackDevice {
        frontend: 3,
        backend: 0,
        kind: "vsnd",
        dev: 1,
        backend_state: Some("1"),
    };
    world
        .add_device(&dev, &[("0/name", "Main"), ("0/0/type", "p")])
        .expect("add");
    let fe = "/local/domain/3/device/vsnd/1";
    let be = "/local/domain/0/backend/vsnd/3/1";
    assert_eq!(
        (dev.frontend_dir().as_str(), dev.backend_dir().as_str()),
        (fe, be)
    );
    for (path, value) in [
        (format!("{fe}/backend"), be),
        (format!("{fe}/backend-id"), "0"),
        (format!("{fe}/state"), "1"),
        (format!("{fe}/0/name"), "Main"),
        (format!("{fe}/0/0/type"), "p"),
        (format!("{be}/frontend"), fe),
        (format!("{be}/frontend-id"), "3"),
        (format!("{be}/online"), "1"),
        (format!("{be}/state"), "1"),
    ] {
        assert_eq!(world.read(&path).as_deref(), Some(value), "{path}");
    }
    let guest = vec![perm(3, Access::None), perm(0, Access::Read)];
    for dir in [
        fe.to_owned(),
        format!("{fe}/0"),
        format!("{fe}/0/0"),
        format!("{fe}/0/0/type"),
    ] {
        assert_eq!(world.perms(&dir), Some(guest.clone()), "{dir}");
    }
    let backend = vec![perm(0, Access::None), perm(3, Access::Read)];
    assert_eq!(world.perms(be), Some(backend));
    // The guest reads and writes its own configuration.
    let store = world.domain(3).store();
    assert_eq!(
        store
            .read(&format!("{fe}/0/name"))
            .expect("read")
            .as_deref(),
        Some("Main")
    );
    store.write(&format!("{fe}/state"), "2").expect("write");
}

#[test]
fn add_device_without_a_backend_state_writes_none() {
    let world = FakeXen::new();
    let dev = ToolstackDevice {
        frontend: 2,
        backend: 0,
        kind: "vsnd",
        dev: 0,
        backend_state: None,
    };
    world.add_device::<&str, &str>(&dev, &[]).expect("add");
    assert_eq!(world.read(&format!("{}/state", dev.backend_dir())), None);
    assert_eq!(
        world
            .read(&format!("{}/online", dev.backend_dir()))
            .as_deref(),
        Some("1")
    );
}
