//! Changed block tracking as xapi and Xen Orchestra use it: `vdi cbt on|off`,
//! `vdi data-destroy` (a snapshot's data freed, its block map kept for later
//! `changed-blocks` against it) and `vdi revert` (a VDI's contents replaced by a snapshot's,
//! its identity kept). What changed is computed from dm-thin's maps (`changes.rs`).

use std::io::Write;

use super::context::{tagged_thin_lvcreate, Ctx, Locked};
use super::hooks::Hook;
use super::meta::{VdiKind, VdiMeta};
use super::vdi::{lvcreate, refuse_pending, Volume};
use crate::crash;
use crate::error::{Error, Result};
use crate::host::lvm::{dev_path, Vg, TAG_CBT, TAG_ORIGIN};
use crate::host::thin;
use crate::ids::LvPath;
use crate::units::Bytes;

impl Ctx {
    /// `vdi cbt VDI on|off`: what `Volume.stat` says as `cbt_enabled`, and what snapshots
    /// taken from now on inherit. dm-thin's maps hold the changes either way.
    pub fn vdi_set_cbt(&self, key: &str, sr: Option<&str>, on: bool) -> Result<Volume> {
        let found = self.resolve(key, sr)?;
        let mut op = self.lock_sr(&found.entry)?;
        let v = op.vdi(&found.uuid)?;
        if on {
            super::changes::refuse_untracked(v)?;
        }
        if v.cbt != on {
            op.vdi_mut(&found.uuid)?.cbt = on;
            op.save()?;
        }
        self.vdi_show(&found.uuid, Some(&found.entry.uuid))
    }

    /// `vdi data-destroy SNAPSHOT`: frees the snapshot's data and keeps its block map in a
    /// small thin LV of its own. Steps, each safe to stop after: the map LV is made and
    /// written (a crash leaves an orphan map LV, which `sr check --repair` removes), then
    /// the metadata names it (from then on the snapshot counts as data-destroyed), then
    /// the data LV goes (a crash leaves it for `sr check --repair` or the next destroy).
    pub fn vdi_data_destroy(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        let found = self.resolve(key, sr)?;
        let mut op = self.lock_sr(&found.entry)?;
        let v = op.vdi(&found.uuid)?.clone();
        if v.cbt_map.is_some() {
            let vg = self.lvm.report_vg(&op.entry.vg)?;
            return self.finish_data_destroy(&op, &vg, &v);
        }
        refuse_pending(&v)?;
        if v.kind != VdiKind::Snapshot {
            return Err(Error::InvalidArgument(format!(
                "'{}' is not a snapshot: data-destroy frees a snapshot's data (a VM's disk is destroyed with 'thinsr vdi destroy')",
                v.name
            )));
        }
        let vg = self.lvm.report_vg(&op.entry.vg)?;
        let lv = vg.vdi_lv(&v.uuid).ok_or_else(|| {
            Error::LvNotFound(format!("{}/{} (of VDI '{}')", vg.name, v.lv, v.name))
        })?;
        self.refuse_attached(&vg, &v, lv)?;
        let id = super::changes::thin_id(&vg, lv)?;
        let pool = op.entry.pool.clone();
        let map = thin::block_maps(&vg.name, &pool, &[id])?
            .and_then(|m| m.into_iter().next())
            .ok_or_else(|| Error::DmFailed(format!("the pool {}/{pool} is not active", vg.name)))?;
        let bytes = map.encode();
        let map_lv = super::vdi::free_lv_name(&vg, &format!("{} cbt", v.name), None);
        let size = Bytes(bytes.len() as u64).round_up(vg.extent_size.0);
        self.lvm.run(&tagged_thin_lvcreate(
            &vg.name,
            &pool,
            &map_lv,
            size,
            &op.entry.uuid,
            TAG_CBT,
            &v.uuid,
        ))?;
        let name = LvPath::new(&vg.name, &map_lv);
        let written = write_synced(&dev_path(&vg.name, &map_lv), &bytes)
            .and_then(|_| self.set_active(&name, false));
        if let Err(e) = written {
            return Err(e.undo(&format!("removing the new map LV {name}"), || {
                self.remove_lv(&name)
            }));
        }
        crash::point("data-destroy.map-written");
        op.vdi_mut(&v.uuid)?.cbt_map = Some(map_lv);
        op.save()?;
        crash::point("data-destroy.recorded");
        let v = op.vdi(&v.uuid)?.clone();
        self.finish_data_destroy(&op, &vg, &v)
    }

    /// The last step of a data-destroy: the snapshot's data LV removed, if `vg` (a report
    /// from before) still has it.
    fn finish_data_destroy(&self, op: &Locked, vg: &Vg, v: &VdiMeta) -> Result<Volume> {
        if let Some(lv) = vg.vdi_lv(&v.uuid) {
            self.remove_lv(&LvPath::new(&vg.name, &lv.name))?;
        }
        let vg = self.lvm.report_vg(&op.entry.vg)?;
        let mut vol = self.volume(&op.entry, &op.meta, &vg, v, None);
        vol.sr_name = op.meta.name.clone();
        Ok(vol)
    }

    /// `vdi revert VDI SNAPSHOT`: the VDI's contents become the snapshot's; its uuid, key,
    /// URI, LV name, label, keys and CBT state stay. Refused while the VDI is attached.
    /// The intent is recorded first; then the old LV goes and a thin snapshot of the
    /// snapshot takes its name and tags. A crash in between leaves the intent, which this
    /// command (run again) or `sr check --repair` finishes; nothing is lost that the admin
    /// did not ask to replace.
    pub fn vdi_revert(&self, key: &str, snapshot: &str, sr: Option<&str>) -> Result<Volume> {
        let found = self.resolve(key, sr)?;
        let snap = self.resolve(snapshot, sr)?;
        super::changes::same_sr(&snap, &found)?;
        // Before the lock: a hook may call thinsr.
        self.before(Hook::PreVdiRevert, &found.entry, || self.show_found(&found))?;
        let mut v = self.revert_found(&found, &snap)?;
        self.after(Hook::PostVdiRevert, &mut v)?;
        Ok(v)
    }

    /// `vdi revert` under the SR's lock, without hooks.
    fn revert_found(&self, found: &super::vdi::Found, snap: &super::vdi::Found) -> Result<Volume> {
        let mut op = self.lock_sr(&found.entry)?;
        let v = op.vdi(&found.uuid)?.clone();
        let s = op.vdi(&snap.uuid)?.clone();
        if v.reverting.as_deref().is_some_and(|r| r != s.uuid) {
            return Err(Error::VdiIncomplete {
                vdi: v.name.clone(),
                why: format!(
                    "a revert to snapshot {} began: finish it first",
                    v.reverting.clone().unwrap_or_default()
                ),
            });
        }
        if v.reverting.is_none() {
            let why = if v.uuid == s.uuid {
                Some("it is the VDI itself")
            } else if v.is_template() || s.is_template() {
                Some("templates are not reverted")
            } else if v.kind == VdiKind::Preallocated {
                Some("the VDI is preallocated: only thin VDIs take a snapshot's blocks")
            } else if s.kind != VdiKind::Snapshot {
                Some("it is not a snapshot")
            } else if s.parent.as_deref() != Some(v.uuid.as_str()) {
                Some("it is not a snapshot of this VDI")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(Error::InvalidArgument(format!(
                    "'{}' cannot be reverted to '{}': {why}",
                    v.name, s.name
                )));
            }
            refuse_pending(&v)?;
            refuse_pending(&s)?;
            self.refuse_in_use(&op, &v)?;
            op.vdi_mut(&v.uuid)?.reverting = Some(s.uuid.clone());
            op.save()?;
            crash::point("revert.recorded");
        } else {
            self.refuse_in_use(&op, &v)?;
        }
        self.finish_revert(&mut op, &v.uuid)
    }

    pub(crate) fn refuse_in_use(&self, op: &Locked, v: &VdiMeta) -> Result<()> {
        let device = match self.our_device(&v.uuid) {
            Some(d) => Some(d.path().display().to_string()),
            None => crate::engine::known::lv_active(&op.entry.vg, &v.lv)
                .then(|| dev_path(&op.entry.vg, &v.lv)),
        };
        match device {
            Some(device) => Err(Error::VdiAttached {
                vdi: v.name.clone(),
                device,
            }),
            None => Ok(()),
        }
    }

    /// The steps of a recorded revert of VDI `uuid`, from wherever a crash stopped them.
    pub(crate) fn finish_revert(&self, op: &mut Locked, uuid: &str) -> Result<Volume> {
        let v = op.vdi(uuid)?.clone();
        let to = v.reverting.clone().ok_or_else(|| {
            Error::InvalidArgument(format!("no revert of '{}' is under way", v.name))
        })?;
        let s = op
            .vdi(&to)
            .map_err(|_| Error::VdiIncomplete {
                vdi: v.name.clone(),
                why: format!("the snapshot {to} it was being reverted to is gone"),
            })?
            .clone();
        let vg = self.lvm.report_vg(&op.entry.vg)?;
        let slv = vg.vdi_lv(&s.uuid).ok_or_else(|| {
            Error::LvNotFound(format!("{}/{} (of snapshot '{}')", vg.name, s.lv, s.name))
        })?;
        // The VDI's LV is the old one or, after a crash past the create, the new one: both
        // are replaced, as asked (the new one held only the snapshot's blocks).
        let old = vg.vdi_lv(&v.uuid).map(|l| l.name.clone());
        if let Some(o) = &old {
            self.remove_lv(&LvPath::new(&vg.name, o))?;
        }
        crash::point("revert.old-removed");
        // The VDI keeps its LV name unless something else took it meanwhile.
        let name = if vg.lv(&v.lv).is_none() || old.as_deref() == Some(v.lv.as_str()) {
            v.lv.clone()
        } else {
            super::vdi::free_lv_name(&vg, &v.name, old.as_deref())
        };
        let tags: Vec<String> = s
            .origin
            .iter()
            .map(|o| format!("{TAG_ORIGIN}{o}"))
            .collect();
        let args = lvcreate(&op.entry.uuid, &v.uuid, &name, &tags)
            .writable(true)
            .snapshot(&LvPath::new(&vg.name, &slv.name));
        self.lvm.run(&args)?;
        crash::point("revert.created");
        // A new thin snapshot maps exactly what its origin does.
        let physical = slv.mapped().unwrap_or(Bytes(0));
        let size = s.size;
        {
            let e = op.vdi_mut(&v.uuid)?;
            e.lv = name;
            e.size = size;
            e.origin = s.origin.clone();
            e.reverting = None;
        }
        op.save()?;
        self.forget_devices();
        self.made_volume(op, &v.uuid, physical)
    }
}

fn write_synced(path: &str, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
