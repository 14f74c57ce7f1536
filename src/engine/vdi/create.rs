//! `vdi create` and `vdi destroy`: thin LVs in the pool, or preallocated LVs zeroed with
//! progress, and their removal.

use std::path::PathBuf;

use super::{free_lv_name, lvcreate, now, refuse_template, space_detail, vdi_tag, Volume};
use crate::cancel;
use crate::crash;
use crate::engine::context::{Ctx, Locked};
use crate::engine::hooks::Hook;
use crate::engine::known;
use crate::engine::meta::{Pending, VdiKind, VdiMeta};
use crate::engine::names;
use crate::engine::registry::Entry;
use crate::error::{Error, Result};
use crate::host::lvm::{cmd, dev_path};
use crate::host::zero;
use crate::ids::{LvName, LvPath, VdiUuid, VgName};
use crate::progress::Progress;
use crate::units::Bytes;

impl Ctx {
    /// `vdi create`: a thin LV in the pool, or a preallocated LV zeroed completely.
    pub fn vdi_create(
        &self,
        sr: Option<&str>,
        label: &str,
        size: Bytes,
        description: &str,
        preallocate: bool,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        let mut v = self.create(sr, label, size, description, preallocate, false, progress)?;
        self.after(Hook::PostVdiCreate, &mut v)?;
        Ok(v)
    }

    /// `vdi create`, or the empty VDI an import fills (`importing`: marked so until the
    /// import finishes, and created active so the import needs no further lvm call).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create(
        &self,
        sr: Option<&str>,
        label: &str,
        size: Bytes,
        description: &str,
        preallocate: bool,
        importing: bool,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        names::check_label(label)?;
        names::check_description(description)?;
        if size.0 == 0 {
            return Err(Error::InvalidSize {
                input: "0".into(),
                why: "a disk must be larger than zero".into(),
            });
        }
        if preallocate {
            cancel::watch();
        }
        let entry = self.entry(sr)?;
        let mut op = self.lock_sr(&entry)?;
        let uuid = VdiUuid::random();
        let args_for = |lv: &LvName, size: Bytes| {
            let new = lvcreate(&entry.uuid, &uuid, lv, &[]);
            if preallocate {
                // Active now, to be zeroed.
                new.preallocated(&entry.vg, size)
            } else if importing {
                new.active().thin(&entry.vg, &entry.pool, size)
            } else {
                new.thin(&entry.vg, &entry.pool, size)
            }
        };
        // One lvm call when the metadata and the kernel can say all a report would.
        let ready = preallocate || Self::thin_ready(&entry, &op.meta);
        let made = match op.meta.geometry.filter(|_| ready) {
            Some(g) => {
                let size = size.round_up(g.extent.0);
                let lv = op.known_free_name(label);
                known::unless_a_report_helps(self.lvm.run(&args_for(&lv, size)))?
                    .map(|_| (lv, size))
            }
            None => None,
        };
        let (lv, size) = match made {
            Some(m) => m,
            None => {
                let vg = self.lvm.report_vg(&entry.vg)?;
                op.learn_geometry(&vg);
                let size = size.round_up(vg.extent_size.0);
                let lv = free_lv_name(&vg, label, None);
                if preallocate && vg.free < size {
                    return Err(Error::NoSpace {
                        vg: vg.name.to_string(),
                        wanted: size.to_string(),
                        free: vg.free.to_string(),
                        detail: space_detail(&vg, &entry),
                    });
                }
                if !preallocate {
                    self.prepare_thin(&entry, &op.meta, &vg, size)?;
                }
                self.lvm.run(&args_for(&lv, size))?;
                (lv, size)
            }
        };
        crash::point("vdi-create.after-lvcreate");
        let kind = if preallocate {
            VdiKind::Preallocated
        } else {
            VdiKind::Thin
        };
        let vdi = VdiMeta {
            description: description.into(),
            created: now(),
            pending: if importing {
                Some(Pending::Importing)
            } else {
                preallocate.then_some(Pending::Zeroing { from: Bytes(0) })
            },
            ..VdiMeta::new(&uuid, label, kind, &lv, size)
        };
        self.record_new(&mut op, &entry.vg, &vdi)?;
        crash::point("vdi-create.after-meta");
        if preallocate {
            // Other commands on this SR go on while the disk is zeroed.
            drop(op);
            self.finish_zeroing(&entry, &vdi, Bytes(0), size, progress)?;
        }
        let mut v = vdi;
        if !importing {
            v.pending = None;
        }
        Ok(self.volume_of(&entry, &entry.vg, &v, None, size, false, None))
    }

    /// Zeroes `[from, to)` of an LV: activated for it (VDIs are inactive unless attached)
    /// and deactivated after, whatever the outcome.
    pub(crate) fn zero_lv(
        &self,
        vg: &VgName,
        lv: &LvName,
        from: Bytes,
        to: Bytes,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<()> {
        let name = LvPath::new(vg, lv);
        self.set_active(&name, true)?;
        let zeroed = zero::zero(
            &PathBuf::from(dev_path(vg, lv)),
            from.0,
            to.0,
            what,
            progress,
        );
        self.set_active(&name, false)?;
        zeroed
    }

    /// Records a VDI whose LV was just made. When the metadata cannot be written the LV
    /// goes again, so no half-made VDI is left behind.
    pub(super) fn record_new(&self, op: &mut Locked, vg: &VgName, vdi: &VdiMeta) -> Result<()> {
        op.meta.vdis.push(vdi.clone());
        let vg_lv = LvPath::new(vg, &vdi.lv);
        op.save().map_err(|e| {
            e.undo(&format!("removing the new LV {vg_lv}"), || {
                self.remove_lv(&vg_lv)
            })
        })
    }

    /// Zeroes a new preallocated VDI (an active LV), deactivates it and clears `pending`; on
    /// cancel or failure removes the LV and its entry.
    fn finish_zeroing(
        &self,
        entry: &Entry,
        vdi: &VdiMeta,
        from: Bytes,
        to: Bytes,
        progress: &dyn Progress,
    ) -> Result<()> {
        let lv = LvPath::new(&entry.vg, &vdi.lv);
        let zeroed = if cancel::requested() {
            Err(Error::Cancelled)
        } else {
            zero::zero(
                &PathBuf::from(dev_path(&entry.vg, &vdi.lv)),
                from.0,
                to.0,
                &format!("zeroing {}", vdi.name),
                progress,
            )
        };
        crash::point("vdi-create.after-zero");
        match zeroed {
            Ok(()) => {
                self.set_active(&lv, false)?;
                let mut op = self.lock_sr(entry)?;
                op.vdi_mut(&vdi.uuid)?.pending = None;
                op.save()
            }
            Err(e) => {
                let mut op = self.lock_sr(entry)?;
                self.remove_lv(&lv)?;
                op.meta.vdis.retain(|v| v.uuid != vdi.uuid);
                op.save()?;
                Err(e)
            }
        }
    }

    /// `vdi destroy`: refused while attached. Thin space returns to the pool. One lvm call:
    /// `lvremove` of the LV the metadata names, selected by the VDI's tag (so it can only
    /// remove thinsr's LV of this VDI); a report only when that LV is not there by that name.
    pub fn vdi_destroy(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        let found = self.resolve(key, sr)?;
        // Before the lock: a hook may call thinsr.
        self.before(Hook::PreVdiDestroy, &found.entry, || {
            self.show_found(&found)
        })?;
        let mut vol = self.destroy_found(&found)?;
        self.after(Hook::PostVdiDestroy, &mut vol)?;
        Ok(vol)
    }

    /// `vdi destroy` without hooks: for what thinsr made itself and undoes (an export's
    /// temporary snapshot, a half-made copy), which no hook was told of.
    pub(crate) fn destroy_quietly(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        self.destroy_found(&self.resolve(key, sr)?)
    }

    fn destroy_found(&self, found: &super::Found) -> Result<Volume> {
        let mut op = self.lock_sr(&found.entry)?;
        let v = op.vdi(&found.uuid)?.clone();
        refuse_template(&v)?;
        if let Some(r) = op
            .meta
            .vdis
            .iter()
            .find(|r| r.reverting.as_deref() == Some(&v.uuid))
        {
            return Err(Error::VdiIncomplete {
                vdi: r.name.clone(),
                why: format!(
                    "its revert to '{}' did not finish: finish it ('thinsr vdi revert' again, or 'thinsr sr check --repair') before destroying the snapshot",
                    v.name
                ),
            });
        }
        if let Some(child) = v.composing_in(&op.meta.vdis) {
            return Err(Error::VdiIncomplete {
                vdi: child,
                why: format!(
                    "its compose did not finish: finish it ('thinsr sr check --repair') before destroying '{}'",
                    v.name
                ),
            });
        }
        let vg_name = op.entry.vg.clone();
        if let Some(d) = self.our_device(&v.uuid) {
            return Err(Error::VdiAttached {
                vdi: v.name.clone(),
                device: d.path().display().to_string(),
            });
        }
        // An active LV by the recorded name is ours attached, or an LV renamed into that
        // name: the report below tells which. Otherwise lvremove without -f (were the LV
        // active after all, lvremove would ask, and with no terminal to answer, refuse).
        // A data-destroyed snapshot's data LV is gone, or left by an interrupted
        // data-destroy: only its tag can find it.
        let removed = v.cbt_map.is_none()
            && !known::lv_active(&vg_name, &v.lv)
            && self
                .lvm
                .run(&cmd::remove_tagged(
                    &LvPath::new(&vg_name, &v.lv).to_string(),
                    &vdi_tag(&v.uuid),
                    false,
                ))?
                .contains("successfully removed");
        let mut vol = self.volume_of(&op.entry, &vg_name, &v, None, v.size, false, None);
        vol.sr_name = op.meta.name.clone();
        if !removed {
            // Not by that name: find it by its tag, if it is anywhere.
            let vg = self.lvm.report_vg(&vg_name)?;
            if let Some(lv) = vg.vdi_lv(&v.uuid) {
                self.refuse_attached(&vg, &v, lv)?;
                self.remove_lv(&LvPath::new(&vg_name, &lv.name))?;
            }
        }
        if v.cbt_map.is_some() {
            // A data-destroyed snapshot's saved map, found by its tag.
            let tag = format!("{}{}", crate::host::lvm::TAG_CBT, v.uuid);
            self.lvm.run(&cmd::remove_tagged(&vg_name, &tag, true))?;
        }
        crash::point("vdi-destroy.after-lvremove");
        op.meta.vdis.retain(|x| x.uuid != v.uuid);
        op.save()?;
        // A migration's leaf given up (xapi's receive_cancel): its log of writes goes too.
        let uuid = crate::ids::VdiUuid::from(v.uuid.as_str());
        crate::engine::datapath_nbd::forget_written(&op.entry.uuid, &uuid);
        crate::engine::compose::live::forget(&op.entry.uuid, &uuid);
        Ok(vol)
    }

    /// Checks that `vdi destroy` would be allowed, before the admin is asked to confirm.
    pub fn vdi_check_destroy(&self, v: &Volume) -> Result<()> {
        if v.kind == VdiKind::Template {
            return Err(Error::VdiIsTemplate(v.name.clone()));
        }
        if v.attached {
            return Err(Error::VdiAttached {
                vdi: v.name.clone(),
                device: v.path.clone(),
            });
        }
        Ok(())
    }
}
