//! `sr attach`, `detach`, `forget` and `destroy`.

use super::{refuse_attached, SrDetail};
use crate::crash;
use crate::engine::context::{ours, sr_tag, Ctx};
use crate::engine::hooks::Hook;
use crate::engine::meta::Mode;
use crate::engine::registry::Entry;
use crate::error::{Error, Result};
use crate::host::lock;
use crate::host::loopdev;
use crate::host::lvm::cmd::{self, Activate};
use crate::host::lvm::{Lv, TAG_META, TAG_OWNED};
use crate::ids::LvPath;

impl Ctx {
    /// `sr attach`: re-creates the loop device of a file SR, activates pool and metadata.
    pub fn attach(&self, key: Option<&str>) -> Result<SrDetail> {
        let entry = self.entry(key)?;
        let mut changed = false;
        {
            let _l = lock::acquire(&entry.uuid, &entry.name)?;
            if let Some(file) = &entry.file {
                if loopdev::find(file)?.is_empty() {
                    loopdev::attach(file)?;
                    changed = true;
                }
            }
            let vg = self.lvm.report_vg(&entry.vg)?;
            let inactive: Vec<LvPath> = [&entry.pool, &entry.meta_lv]
                .into_iter()
                .filter(|n| !vg.lv(n).is_some_and(|l| l.active))
                .map(|n| LvPath::new(&entry.vg, n))
                .collect();
            if !inactive.is_empty() {
                self.lvm.run(&cmd::activate(&inactive, Activate::Sr))?;
                changed = true;
            }
        }
        // Outside the lock: a hook may call thinsr. Only an attach that changed something.
        let failed = match changed {
            true => self.after_sr(Hook::PostSrAttach, &entry),
            false => vec![],
        };
        let mut d = self.show(Some(&entry.uuid))?;
        d.warnings.extend(failed);
        Ok(d)
    }

    /// `sr detach`: deactivates pool and metadata (and the loop of a file SR). Refused while
    /// a VDI is attached. Returns the failures of its `post-sr-detach` hooks.
    pub fn detach(&self, key: Option<&str>) -> Result<Vec<String>> {
        let entry = self.entry(key)?;
        let changed = self.detach_locked(&entry)?;
        // Outside the lock: a hook may call thinsr.
        Ok(match changed {
            true => self.after_sr(Hook::PostSrDetach, &entry),
            false => vec![],
        })
    }

    /// `sr detach` under the SR's lock; whether it changed anything.
    fn detach_locked(&self, entry: &Entry) -> Result<bool> {
        let _l = lock::acquire(&entry.uuid, &entry.name)?;
        let vg = match self.lvm.report_vg(&entry.vg) {
            Ok(vg) => vg,
            // A file SR whose loop is gone is already detached.
            Err(Error::VgNotFound(_)) if entry.file.is_some() => return Ok(false),
            Err(e) => return Err(e),
        };
        refuse_attached(self, entry, &vg)?;
        // Only LVs carrying this SR's tag: an adopted pool is the admin's and stays active.
        let active: Vec<LvPath> = ours(&vg, &entry.uuid)
            .filter(|l| l.active)
            .map(|l| LvPath::new(&entry.vg, &l.name))
            .collect();
        let changed = !active.is_empty();
        if changed {
            self.lvm.run(&cmd::activate(&active, Activate::Off))?;
        }
        if let Some(file) = &entry.file {
            for dev in loopdev::find(file)? {
                loopdev::detach(&dev)?;
            }
        }
        Ok(changed)
    }

    /// `sr forget`: unregister only; nothing on disk changes.
    pub fn forget(&self, key: Option<&str>) -> Result<Entry> {
        let entry = self.entry(key)?;
        let _l = lock::acquire(&entry.uuid, &entry.name)?;
        self.update_registry(|reg| {
            reg.srs.retain(|e| e.uuid != entry.uuid);
            Ok(())
        })?;
        Ok(entry)
    }

    /// Checks `sr destroy` would be allowed, before the admin is asked to confirm.
    pub fn check_destroy(&self, entry: &Entry) -> Result<()> {
        match self.lvm.report_vg(&entry.vg) {
            Ok(vg) => refuse_attached(self, entry, &vg),
            Err(_) => Ok(()),
        }
    }

    /// `sr destroy`. Owned: the VG, its PV labels (and a file SR's loop and file). Shared:
    /// only LVs carrying this SR's tag, metadata last; the admin's LVs stay as they were.
    pub fn destroy(&self, entry: &Entry) -> Result<()> {
        let _l = lock::acquire(&entry.uuid, &entry.name)?;
        if let Some(file) = &entry.file {
            if loopdev::find(file)?.is_empty() && file.exists() {
                loopdev::attach(file)?;
            }
        }
        let vg = match self.lvm.report_vg_pvs(&entry.vg) {
            // A destroy that crashed after vgremove: only the registry entry is left.
            Err(Error::VgNotFound(_)) if entry.mode == Mode::Owned => {
                return self.update_registry(|reg| {
                    reg.srs.retain(|e| e.uuid != entry.uuid);
                    Ok(())
                })
            }
            other => other?,
        };
        refuse_attached(self, entry, &vg)?;
        let tag = sr_tag(&entry.uuid);
        match entry.mode {
            Mode::Owned => {
                if !(vg.has_tag(TAG_OWNED) && vg.has_tag(&tag)) {
                    return Err(Error::InvalidArgument(format!(
                        "volume group '{}' does not carry this SR's ownership tags; thinsr will not remove it",
                        vg.name
                    )));
                }
                let foreign: Vec<&str> = vg
                    .lvs
                    .iter()
                    .filter(|l| !l.has_tag(&tag))
                    .map(|l| l.name.as_str())
                    .collect();
                if !foreign.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "volume group '{}' holds LVs thinsr did not create ({}); thinsr will not remove them",
                        vg.name,
                        foreign.join(", ")
                    )));
                }
                self.lvm.run(&cmd::remove_vg(&vg.name))?;
                crash::point("sr-destroy.after-vgremove");
                let pvs: Vec<String> = vg.pvs.iter().map(|p| p.name.clone()).collect();
                self.lvm.run(&cmd::remove_pv_labels(&pvs))?;
            }
            Mode::Shared => {
                let (meta, rest): (Vec<&Lv>, Vec<&Lv>) =
                    ours(&vg, &entry.uuid).partition(|l| l.has_tag(TAG_META));
                let paths = |lvs: &[&Lv]| -> Vec<LvPath> {
                    lvs.iter().map(|l| LvPath::new(&vg.name, &l.name)).collect()
                };
                if !rest.is_empty() {
                    self.lvm.run(&cmd::remove(&paths(&rest)))?;
                }
                crash::point("sr-destroy.before-meta");
                if !meta.is_empty() {
                    self.lvm.run(&cmd::remove(&paths(&meta)))?;
                }
            }
        }
        if let Some(file) = &entry.file {
            for dev in loopdev::find(file)? {
                loopdev::detach(&dev)?;
            }
            std::fs::remove_file(file)
                .map_err(|e| Error::io(format!("removing {}", file.display()), e))?;
        }
        self.update_registry(|reg| {
            reg.srs.retain(|e| e.uuid != entry.uuid);
            Ok(())
        })
    }
}
