//! What the toolstack (libxl) writes for a para-virtual device, on the fake world.

use std::sync::Arc;

use super::world::FakeXen;
use crate::{Access, DomId, Perm, StoreError, StoreOps};

/// One para-virtual device as `xl create` adds it (`libxl__device_generic_add`).
#[derive(Debug, Clone, Copy)]
pub struct ToolstackDevice<'a> {
    /// The guest (frontend) domain.
    pub frontend: DomId,
    /// The backend domain.
    pub backend: DomId,
    /// Device kind, e.g. `vsnd`.
    pub kind: &'a str,
    /// Device id.
    pub dev: u32,
    /// The backend `state` to write (libxl writes `1`); `None` writes none.
    pub backend_state: Option<&'a str>,
}

impl ToolstackDevice<'_> {
    /// `/local/domain/<frontend>/device/<kind>/<dev>`.
    pub fn frontend_dir(&self) -> String {
        format!(
            "/local/domain/{}/device/{}/{}",
            self.frontend, self.kind, self.dev
        )
    }

    /// `/local/domain/<backend>/backend/<kind>/<frontend>/<dev>`.
    pub fn backend_dir(&self) -> String {
        format!(
            "/local/domain/{}/backend/{}/{}/{}",
            self.backend, self.kind, self.frontend, self.dev
        )
    }
}

impl FakeXen {
    /// Adds `device` the way libxl does, as dom0 in one transaction: the frontend directory
    /// (`backend`, `backend-id`, `state` = 1, and the configuration keys `config`, relative to
    /// it) owned by the guest and readable by the backend, every directory in between included;
    /// the backend directory (`frontend`, `frontend-id`, `online` = 1, and `state` if given)
    /// owned by the backend and readable by the guest (sndif.md §1.2).
    pub fn add_device<K: AsRef<str>, V: AsRef<str>>(
        self: &Arc<Self>,
        device: &ToolstackDevice<'_>,
        config: &[(K, V)],
    ) -> Result<(), StoreError> {
        let fe = device.frontend_dir();
        let be = device.backend_dir();
        let perm = |domid, access| Perm { domid, access };
        let fe_perms = [
            perm(device.frontend, Access::None),
            perm(device.backend, Access::Read),
        ];
        let be_perms = [
            perm(device.backend, Access::None),
            perm(device.frontend, Access::Read),
        ];
        let mut fe_nodes = vec![
            (fe.clone(), String::new()),
            (format!("{fe}/backend"), be.clone()),
            (format!("{fe}/backend-id"), device.backend.to_string()),
            (format!("{fe}/state"), "1".to_owned()),
        ];
        for (k, v) in config {
            fe_nodes.push((format!("{fe}/{}", k.as_ref()), v.as_ref().to_owned()));
        }
        // Directories of the configuration (`0`, `0/0`) belong to the guest too.
        let mut dirs: Vec<String> = Vec::new();
        for (p, _) in &fe_nodes {
            let mut q = p.clone();
            while let Some(i) = q.rfind('/') {
                q.truncate(i);
                if q.len() <= fe.len() {
                    break;
                }
                if !dirs.contains(&q) {
                    dirs.push(q.clone());
                }
            }
        }
        let mut be_nodes = vec![
            (be.clone(), String::new()),
            (format!("{be}/frontend"), fe.clone()),
            (format!("{be}/frontend-id"), device.frontend.to_string()),
            (format!("{be}/online"), "1".to_owned()),
        ];
        if let Some(s) = device.backend_state {
            be_nodes.push((format!("{be}/state"), s.to_owned()));
        }
        self.domain(0).store().transaction(&mut |t: &dyn StoreOps| {
            for (p, v) in &fe_nodes {
                t.write(p, v)?;
                t.set_perms(p, &fe_perms)?;
            }
            for d in &dirs {
                t.set_perms(d, &fe_perms)?;
            }
            for (p, v) in &be_nodes {
                t.write(p, v)?;
                t.set_perms(p, &be_perms)?;
            }
            Ok(())
        })
    }
}
