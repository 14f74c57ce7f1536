//! A VDI's label (and the LV name made from it), description and keys.

use super::{free_lv_name, vdi_lv, Volume};
use crate::crash;
use crate::engine::context::{Ctx, Locked};
use crate::engine::meta::VdiMeta;
use crate::engine::names;
use crate::error::Result;
use crate::host::lvm::{cmd, Vg};

impl Ctx {
    /// `vdi rename`: a new label and a new friendly LV name; the uuid stays. The label
    /// changes at once, attached or not (xapi renames running VMs' disks); an attached
    /// VDI's LV keeps its name until it is detached, so the device a VM holds, and every
    /// path to it, stay as they are. Templates have no LV: only their label changes.
    pub fn vdi_rename(&self, key: &str, sr: Option<&str>, label: &str) -> Result<Volume> {
        names::check_label(label)?;
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            let v = op.vdi(uuid)?.clone();
            let Some(lv) = vg.vdi_lv(uuid).filter(|_| !v.is_template()).cloned() else {
                if !v.is_template() {
                    vdi_lv(vg, &v)?; // names the missing LV
                }
                op.vdi_mut(uuid)?.name = label.into();
                op.save()?;
                let m = op.vdi(uuid)?.clone();
                return Ok(ctx.volume(&op.entry, &op.meta, vg, &m, None));
            };
            let mut new_lv = free_lv_name(vg, label, Some(&lv.name));
            if new_lv != lv.name && ctx.refuse_attached(vg, &v, &lv).is_err() {
                new_lv = lv.name.clone(); // at detach (`rename_lv_to_label`)
            }
            if new_lv != lv.name {
                ctx.lvm.run(&cmd::rename(&vg.name, &lv.name, &new_lv))?;
                crash::point("vdi-rename.after-lvrename");
            }
            let m = op.vdi_mut(uuid)?;
            m.name = label.into();
            m.lv = new_lv.clone();
            let m = m.clone();
            op.save().map_err(|e| {
                // The metadata keeps the old name: so does the LV.
                let what = format!("renaming the LV {} back to {}", new_lv, lv.name);
                e.undo(&what, || match new_lv != lv.name {
                    true => ctx.lvm.run(&cmd::rename(&vg.name, &new_lv, &lv.name)),
                    false => Ok(String::new()),
                })
            })?;
            let mut renamed = lv.clone();
            renamed.name = new_lv;
            let mut vg2 = vg.clone();
            vg2.set_vdi_lv(uuid, renamed);
            Ok(ctx.volume(&op.entry, &op.meta, &vg2, &m, None))
        })
    }

    /// After a detach: an LV renamed while attached takes the name its label gives. Best
    /// effort: the name is cosmetic (LVs are found by tag), the detach has succeeded.
    pub(crate) fn rename_lv_to_label(&self, op: &mut Locked, vg: &Vg, uuid: &str) {
        let Ok(v) = op.vdi(uuid).cloned() else { return };
        let Some(lv) = vg.vdi_lv(uuid) else { return };
        let wanted = free_lv_name(vg, &v.name, Some(&lv.name));
        if wanted == lv.name {
            return;
        }
        if self
            .lvm
            .run(&cmd::rename(&vg.name, &lv.name, &wanted))
            .is_err()
        {
            return;
        }
        // A crash here leaves what one in `vdi rename` does: `sr check` repairs it.
        if let Ok(m) = op.vdi_mut(uuid) {
            m.lv = wanted.clone();
        }
        if op.save().is_err() {
            // Best effort, as the whole rename is (the device is gone; no VM is on it): an
            // LV left under the new name is found by its tag, and `sr check` records it.
            let _ = self.lvm.run(&cmd::rename(&vg.name, &wanted, &lv.name));
        }
    }

    /// Metadata-only changes: description and keys.
    fn vdi_update(
        &self,
        key: &str,
        sr: Option<&str>,
        f: impl FnOnce(&mut VdiMeta) -> Result<()>,
    ) -> Result<Volume> {
        // Keys, descriptions and labels are the higher layer's: templates and read-only
        // snapshots take them too.
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            f(op.vdi_mut(uuid)?)?;
            op.save()?;
            let v = op.vdi(uuid)?.clone();
            Ok(ctx.volume(&op.entry, &op.meta, vg, &v, None))
        })
    }

    pub fn vdi_set_description(&self, key: &str, sr: Option<&str>, text: &str) -> Result<Volume> {
        names::check_description(text)?;
        self.vdi_update(key, sr, |v| {
            v.description = text.into();
            Ok(())
        })
    }

    pub fn vdi_set_key(&self, key: &str, sr: Option<&str>, k: &str, value: &str) -> Result<Volume> {
        names::check_key(k)?;
        names::check_value(value)?;
        self.vdi_update(key, sr, |v| {
            v.keys.insert(k.into(), value.into());
            Ok(())
        })
    }

    /// Removing a key that is not set is not an error (as for xapi).
    pub fn vdi_unset_key(&self, key: &str, sr: Option<&str>, k: &str) -> Result<Volume> {
        names::check_key(k)?;
        self.vdi_update(key, sr, |v| {
            v.keys.remove(k);
            Ok(())
        })
    }
}
